#!/usr/bin/env bash
# Installs or removes blksnap-rs; run by `make install` and `make uninstall`.
#
#   cli/install.sh install|uninstall [--no-module]
#
# --no-module leaves the module out (and KDIR, depmod and signing with it):
# what the blksnap package of scripts/deb.sh holds, DKMS installing the
# module. Environment:
#   DESTDIR  staging root prepended to every path (default: none, the system)
#   PREFIX   prefix of everything but the module (default: /usr)
#   KDIR     kernel build tree the module is for (default: the one `make
#            module` builds against, that of BLKSNAP_KERNEL); its release
#            (include/config/kernel.release, else `make kernelrelease`)
#            names the module directory, /lib/modules/RELEASE/extra
#   SIGN_KEY, SIGN_CERT
#            a private key and its X.509 certificate (a Machine Owner Key
#            enrolled with mokutil, for Secure Boot): the installed module
#            is signed with them, by SIGN_FILE (default KDIR/scripts/sign-file,
#            the kernel's tool) with SHA-256; unsigned when neither is set
#
# What is installed (and all that uninstall removes):
#   $DESTDIR/lib/modules/RELEASE/extra/blksnap.ko
#   $DESTDIR$PREFIX/sbin/blksnap
#   $DESTDIR$PREFIX/include/linux/{blk-filter.h,blksnap.h}
#   $DESTDIR$PREFIX/share/man/man8/blksnap.8
#   $DESTDIR$PREFIX/share/bash-completion/completions/blksnap
#   $DESTDIR$PREFIX/share/zsh/site-functions/_blksnap
#   $DESTDIR$PREFIX/share/fish/vendor_completions.d/blksnap.fish
#
# install expects blksnap.ko built for KDIR (`make install` builds it first)
# and builds the CLI and blksnap-gen in release mode; blksnap-gen writes the
# man page and the completions. Both steps end with depmod: `depmod -a
# RELEASE` on the system, `depmod -b DESTDIR -a RELEASE` in a staging tree
# (where a failure is only a warning). In a staging tree, uninstall also
# removes depmod's index files once no module is left for RELEASE, and the
# directories it leaves empty, up to DESTDIR; on the system it leaves
# directories alone.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../scripts
source "$(dirname "$0")/../scripts/lib.sh"

action=${1:-}
case $action in
install | uninstall) ;;
*) die "usage: $0 install|uninstall [--no-module]" ;;
esac
with_module=1
case ${2:-} in
"") ;;
--no-module) with_module= ;;
*) die "usage: $0 install|uninstall [--no-module]" ;;
esac

DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/} # DESTDIR=/ is the system itself
PREFIX=${PREFIX:-/usr}
PREFIX=${PREFIX%/}
release= kdir=
if [ -n "$with_module" ]; then
	kdir=${KDIR:-$(module_target)}
	[ -f "$kdir/Makefile" ] || die "no kernel build tree at $kdir (set KDIR, or run make setup)"
	# The release of the kernel in $kdir: as its build recorded it, else as
	# its make prints it (the parent make's flags dropped, so that only the
	# release is printed). A Debian headers tree outside its root has only
	# the first: its Makefile names the absolute paths of that root.
	if [ -f "$kdir/include/config/kernel.release" ]; then
		release=$(cat "$kdir/include/config/kernel.release")
	else
		release=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$kdir" kernelrelease)
	fi
	[[ $release =~ ^[^[:space:]/]+$ ]] || die "cannot read the kernel release of $kdir: '$release'"
fi

moddir=$DESTDIR/lib/modules/$release
share=$DESTDIR$PREFIX/share
gen= # blksnap-gen's output directory, made by install
trap '[ -z "$gen" ] || rm -rf "$gen"' EXIT

# Fills src, dst and mode: what goes where. Sources below $gen exist only
# during install.
src=() dst=() mode=()
add() { src+=("$1") dst+=("$2") mode+=("$3"); }
target=${CARGO_TARGET_DIR:-$BLKSNAP_ROOT/target}
[ -z "$with_module" ] || add "$BLKSNAP_ROOT/blksnap.ko" "$moddir/extra/blksnap.ko" 644
add "$target/release/blksnap" "$DESTDIR$PREFIX/sbin/blksnap" 755
for h in blk-filter.h blksnap.h; do
	add "$BLKSNAP_ROOT/include/uapi/linux/$h" "$DESTDIR$PREFIX/include/linux/$h" 644
done
add "@/blksnap.8" "$share/man/man8/blksnap.8" 644
add "@/blksnap.bash" "$share/bash-completion/completions/blksnap" 644
add "@/_blksnap" "$share/zsh/site-functions/_blksnap" 644
add "@/blksnap.fish" "$share/fish/vendor_completions.d/blksnap.fish" 644

# Runs depmod for $release: on the system it must work; in a staging tree
# it is tried, and its warnings about the files a staging tree lacks
# (modules.order, modules.builtin) are left out.
run_depmod() {
	local depmod out
	depmod=$(PATH=$PATH:/sbin:/usr/sbin command -v depmod) || depmod=
	if [ -z "$DESTDIR" ]; then
		[ -n "$depmod" ] || die "depmod not found"
		"$depmod" -a "$release"
	elif [ -z "$depmod" ]; then
		msg "warning: depmod not found; the module index in $moddir is not updated"
	elif out=$("$depmod" -b "$DESTDIR" -a "$release" 2>&1); then
		grep -v 'could not open modules\.\(order\|builtin\)' <<<"$out" >&2 || true
	else
		printf '%s\n' "$out" >&2
		msg "warning: depmod -b $DESTDIR failed; the module index in $moddir is not updated"
	fi
}

# The index files depmod writes into a module directory.
depmod_files=(modules.dep modules.dep.bin modules.alias modules.alias.bin
	modules.softdep modules.weakdep modules.symbols modules.symbols.bin
	modules.builtin.bin modules.builtin.alias.bin modules.devname)

# Checks the signing settings before anything is installed; sets $sign.
sign=
check_signing() {
	[ -n "${SIGN_KEY:-}${SIGN_CERT:-}" ] || return 0
	[ -n "${SIGN_KEY:-}" ] && [ -n "${SIGN_CERT:-}" ] || die "set both SIGN_KEY and SIGN_CERT to sign the module"
	[ -r "$SIGN_KEY" ] || die "cannot read the signing key $SIGN_KEY"
	[ -r "$SIGN_CERT" ] || die "cannot read the signing certificate $SIGN_CERT"
	sign=${SIGN_FILE:-$kdir/scripts/sign-file}
	[ -x "$sign" ] || die "$sign not found: set SIGN_FILE to the kernel's sign-file tool"
}

do_install() {
	local vermagic
	if [ -n "$with_module" ]; then
		[ -f "$BLKSNAP_ROOT/blksnap.ko" ] || die "blksnap.ko is not built; run make"
		check_signing
		# A module built for another kernel would install under the wrong release.
		vermagic=$(PATH=$PATH:/sbin:/usr/sbin modinfo -F vermagic "$BLKSNAP_ROOT/blksnap.ko" 2>/dev/null) || vermagic=
		if [ -n "$vermagic" ] && [ "${vermagic%% *}" != "$release" ]; then
			die "blksnap.ko is built for ${vermagic%% *}, not for $release ($kdir); run make"
		fi
	fi

	msg "building the CLI (release)"
	(cd "$BLKSNAP_ROOT" && cargo build --release --locked --quiet -p blksnap --bins)
	gen=$(mktemp -d)
	"$target/release/blksnap-gen" "$gen" >/dev/null

	local i s
	for i in "${!dst[@]}"; do
		s=${src[i]/#@/$gen}
		install -D -m "${mode[i]}" "$s" "${dst[i]}"
		echo "installed ${dst[i]}"
	done
	if [ -n "$sign" ]; then
		"$sign" sha256 "$SIGN_KEY" "$SIGN_CERT" "$moddir/extra/blksnap.ko"
		echo "signed $moddir/extra/blksnap.ko with $SIGN_CERT"
	fi
	[ -z "$with_module" ] || run_depmod
}

do_uninstall() {
	local d f
	for d in "${dst[@]}"; do
		if [ -e "$d" ] || [ -L "$d" ]; then
			rm -f "$d"
			echo "removed $d"
		fi
	done
	if [ -z "$DESTDIR" ]; then
		[ -z "$with_module" ] || run_depmod
		return
	fi
	if [ -n "$with_module" ] && [ -d "$moddir" ]; then
		if [ -n "$(find "$moddir" -name '*.ko*' -print -quit)" ]; then
			run_depmod
		else
			for f in "${depmod_files[@]}"; do rm -f "$moddir/$f"; done
		fi
	fi
	# Prune the directories left empty, up to (not including) DESTDIR.
	for d in "${dst[@]}"; do
		d=$(dirname "$d")
		while [ "$d" != "$DESTDIR" ] && [[ $d == "$DESTDIR"/* ]] && rmdir "$d" 2>/dev/null; do
			d=$(dirname "$d")
		done
	done
}

"do_$action"
