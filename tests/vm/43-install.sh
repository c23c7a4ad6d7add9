# make install for real, then make uninstall. In the VM, virtme-ng lays
# throw-away overlays over /usr (so /lib, a link to usr/lib), /etc, /var
# and a few more, but the root itself, /root (cargo's home, the kernel
# cache) and the source tree stay the host's, read-only, and what is
# written to the overlays would stay visible to the tests that follow. So
# the test runs in a mount namespace of its own in which /usr, /root and
# the source tree get overlays of their own, their upper layers in a tmpfs:
# `make install` there builds and writes the real paths
# (/usr/sbin/blksnap, /lib/modules/RELEASE/extra/blksnap.ko, ...) and runs
# the real depmod, modprobe, man and bash use what it wrote, and all of it
# vanishes with the namespace. /lib/modules/RELEASE starts empty there (the
# host has no modules for the test kernel), so depmod's index of it is all
# that make uninstall may leave. The module is unloaded at the end, and
# loaded again from the tree (insmod) if it was loaded before. On a Debian
# kernel the install is cli/install.sh's, what make install runs once the
# module is built: make would build it in the build root, which the guest
# cannot set up (test.sh built it on the host, as make install does); the
# release comes from the headers' include/config/kernel.release, their
# Makefile naming the build root's absolute paths. The Debian packages are
# tested by scripts/deb-test.sh.
# shellcheck shell=bash

# --- Helpers (prefixed in_) ---------------------------------------------------

# in_files RELEASE: every file and link below the directories make install
# writes to, sorted.
in_files() {
	{
		find /usr/sbin /usr/include/linux /usr/share/man/man8 /usr/share/bash-completion \
			/usr/share/zsh /usr/share/fish "/lib/modules/$1" -xdev \( -type f -o -type l \) \
			2>/dev/null || true
	} | sort
}

# in_overlay DIR TMP: makes DIR writable for this mount namespace, the
# writes landing in TMP.
in_overlay() {
	local n=${1//\//_}
	mkdir -p "$2/$n/upper" "$2/$n/work"
	mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/$n/upper,workdir=$2/$n/work" "$1"
}

# in_body ROOT KDIR TMP: the test, run in its own mount namespace.
in_body() {
	local root=$1 kdir=$2 tmp=$3 release new want d out
	release=$(uname -r)
	mkdir -p "$tmp/ovl"
	mount -t tmpfs tmpfs "$tmp/ovl"
	for d in /usr /root "$root"; do
		in_overlay "$d" "$tmp/ovl" || fail "cannot make $d writable with an overlay"
	done
	cd "$root"
	in_files "$release" >"$tmp/before"

	if [ "${BLKSNAP_KERNEL:-6.12}" = 6.12 ]; then
		make install KDIR="$kdir"
	else
		KDIR=$kdir cli/install.sh install
	fi >"$tmp/install.log" 2>&1 || fail "make install failed: $(tail -20 "$tmp/install.log")"
	in_files "$release" >"$tmp/installed"
	new=$(comm -13 "$tmp/before" "$tmp/installed" | { grep -v "^/lib/modules/$release/modules\." || true; })
	want=$(printf '%s\n' "/lib/modules/$release/extra/blksnap.ko" /usr/sbin/blksnap \
		/usr/include/linux/blk-filter.h /usr/include/linux/blksnap.h \
		/usr/share/man/man8/blksnap.8 /usr/share/bash-completion/completions/blksnap \
		/usr/share/zsh/site-functions/_blksnap /usr/share/fish/vendor_completions.d/blksnap.fish | sort)
	expect_eq "files make install added" "$want" "$new"
	grep -q "^extra/blksnap.ko:" "/lib/modules/$release/modules.dep" ||
		fail "depmod did not index the module: $(cat "/lib/modules/$release/modules.dep")"

	modprobe blksnap || fail "modprobe blksnap failed"
	[ -d /sys/module/blksnap ] || fail "modprobe did not load blksnap"
	expect_eq "the module modprobe finds" "/lib/modules/$release/extra/blksnap.ko" "$(modinfo -n blksnap)"
	expect_eq "man -w blksnap" /usr/share/man/man8/blksnap.8 "$(man -w blksnap)"
	out=$(MANWIDTH=100 man blksnap 2>&1) || fail "man blksnap failed: $out"
	grep -qi '^blksnap(8)' <<<"$out" || fail "man blksnap shows no blksnap(8) header: $(head -5 <<<"$out")"
	grep -qw 'snapshot_create' <<<"$out" || fail "man blksnap does not describe snapshot_create"
	grep -qw 'status' <<<"$out" || fail "man blksnap does not describe status"
	out=$(bash -c 'source /usr/share/bash-completion/completions/blksnap &&
		complete -p blksnap >/dev/null &&
		COMP_WORDS=(blksnap sta) COMP_CWORD=1 COMP_LINE="blksnap sta" COMP_POINT=11 &&
		_blksnap blksnap sta blksnap && printf "%s\n" "${COMPREPLY[@]}"') ||
		fail "the bash completion did not load: $out"
	grep -qx status <<<"$out" || fail "bash completes 'blksnap sta' to '$out', not status"
	printf '#include <linux/blksnap.h>\nint v = sizeof(struct blksnap_version);\n' |
		gcc -fsyntax-only -x c - || fail "the installed uAPI header does not compile"
	expect_eq "blksnap version (installed CLI)" "$("$root/target/debug/blksnap" version)" \
		"$(/usr/sbin/blksnap version)"
	out=$(/usr/sbin/blksnap status) || fail "blksnap status failed: $out"
	grep -q '^module  blksnap ' <<<"$out" || fail "blksnap status printed: $out"
	rmmod blksnap || fail "rmmod blksnap failed"

	make uninstall KDIR="$kdir" >"$tmp/uninstall.log" 2>&1 ||
		fail "make uninstall failed: $(tail -20 "$tmp/uninstall.log")"
	in_files "$release" >"$tmp/after"
	# depmod's index of the (new, here) module directory is all that may
	# stay, and it no longer names the module.
	new=$(comm -3 "$tmp/before" "$tmp/after" | tr -d '\t' | { grep -v "^/lib/modules/$release/modules\." || true; })
	expect_eq "files left or lost by make uninstall" "" "$new"
	! grep -rqs blksnap "/lib/modules/$release/" || fail "depmod's index still names blksnap"
	! modprobe -n blksnap 2>/dev/null || fail "modprobe still finds blksnap after uninstall"
}

# --- Tests ---------------------------------------------------------------------

test_install_make_install_modprobe_man_completion_uninstall() {
	local kdir tmp was_loaded= rc=0
	kdir=$(cat "$BLKSNAP_ROOT/.module-kdir" 2>/dev/null) || skip "no .module-kdir: build the module first"
	[ -f "$kdir/Makefile" ] || skip "no kernel build tree at $kdir"
	command -v unshare >/dev/null || skip "unshare is missing"
	if module_loaded; then
		was_loaded=1
		rmmod blksnap || fail "the module is in use before the test"
	fi
	tmp=$(mktemp -d /tmp/blksnap-install.XXXXXX)
	unshare --mount --propagation private bash -c \
		"$(declare -f fail expect_eq in_files in_overlay in_body); set -eo pipefail; in_body \"\$@\"" \
		- "$BLKSNAP_ROOT" "$kdir" "$tmp" || rc=$?
	# Whatever happened inside, the module the namespace loaded goes.
	! module_loaded || rmmod blksnap || true
	rm -rf "$tmp"
	[ -z "$was_loaded" ] || load_module
	[ "$rc" -eq 0 ] || return "$rc"
	[ ! -e /usr/sbin/blksnap ] || fail "/usr/sbin/blksnap is visible outside the test's namespace"
}
