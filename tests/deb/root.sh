#!/usr/bin/env bash
# The Debian side of the package test (scripts/deb-test.sh), run as root in
# an overlay of the Debian build root, as a Debian user's apt would run:
#
#   root.sh install RELEASE DEBDIR OUT   apt install of DEBDIR's two packages
#   root.sh remove RELEASE OUT           apt purge of them
#
# install first makes the root a system running that kernel: it installs
# the kernel's image and modules, the .debs in /tmp/kernel-debs (the build
# root holds only its headers), and hides the Rust artifacts that
# scripts/debian-kernel.sh added to the headers, so that DKMS sees them as
# Debian ships them, and installs DKMS with its signing key (which DKMS
# makes at its first module build and keeps for all): the user's system.
# Then it takes the file list, installs the packages and checks that DKMS
# built and installed blksnap.ko for RELEASE. The Rust artifacts an earlier
# run made, if scripts/deb-test.sh left them in /tmp/blksnap-dkms-cache,
# become this package's cache (/var/cache/blksnap-dkms) only after the file
# list is taken.
# remove checks that nothing is left of the packages: the root's file list
# equals the one install took before it installed them. Both write their
# logs and file lists to OUT, and fail naming what went wrong.
set -euo pipefail

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# files: every path of the root that a package could leave behind, sorted;
# the state of apt, dpkg's own databases, logs, caches of other tools and
# the scratch directories are left out.
files() {
	find / -xdev -print | grep -vE '^/(proc|sys|dev|run|tmp|root)(/|$)|^/var/(tmp|log|lib/apt|cache/(apt|debconf|man|ldconfig))(/|$)|^/var/lib/dpkg/[^i]|^/etc/ld\.so\.cache$' | sort
}

export DEBIAN_FRONTEND=noninteractive
action=$1 release=$2
case $action in
install) debdir=$3 out=$4 ;;
remove) out=$3 ;;
*) fail "usage: $0 install RELEASE DEBDIR OUT | remove RELEASE OUT" ;;
esac
kdir=/usr/src/linux-headers-$release
mkdir -p "$out"

if [ "$action" = install ]; then
	dpkg -i /tmp/kernel-debs/*.deb >"$out/dpkg-kernel.log" 2>&1 ||
		fail "installing the kernel's image and modules failed: $(tail -20 "$out/dpkg-kernel.log")"
	rm -rf /tmp/kernel-debs
	# The headers as Debian ships them: no Rust artifacts.
	common=$(sed -n 's|^include \(.*\)/Makefile$|\1|p' "$kdir/Makefile")
	rm -rf "$kdir/rust" "$common/rust" "$(readlink -f "$kdir/scripts")/target.json"
	[ ! -e "$kdir/rust/libkernel.rmeta" ] || fail "the headers still hold rust/libkernel.rmeta"
	if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
		apt-get update -q >"$out/apt-update.log" 2>&1 || fail "apt-get update failed: $(tail -5 "$out/apt-update.log")"
	fi
	apt-get install -y -q dkms >"$out/apt-dkms.log" 2>&1 ||
		fail "apt-get install dkms failed: $(tail -20 "$out/apt-dkms.log")"
	dkms generate_mok >>"$out/apt-dkms.log" 2>&1 || fail "dkms generate_mok failed: $(tail -5 "$out/apt-dkms.log")"
	files >"$out/files-before"
	if [ -d /tmp/blksnap-dkms-cache ]; then
		mkdir -p /var/cache/blksnap-dkms
		mv /tmp/blksnap-dkms-cache "/var/cache/blksnap-dkms/$release"
	fi
	debs=("$debdir"/blksnap-dkms_*_all.deb "$debdir"/blksnap_*_amd64.deb)
	[ -f "${debs[0]}" ] && [ -f "${debs[1]}" ] || fail "no packages in $debdir (make deb)"
	start=$SECONDS
	apt-get install -y -q "${debs[@]}" >"$out/apt-install.log" 2>&1 ||
		fail "apt install of the packages failed: $(tail -30 "$out/apt-install.log")"
	echo "apt install (with the DKMS build): $((SECONDS - start)) s"
	version=$(dpkg-query -W -f='${Version}' blksnap-dkms)
	status=$(dkms status -m blksnap -v "$version" -k "$release" 2>&1)
	echo "dkms status: $status"
	[[ $status == *": installed"* ]] ||
		fail "DKMS did not install blksnap $version for $release: $status; $(tail -30 "$out/apt-install.log")"
	# Built against the artifacts DKMS's build step made, the headers having none.
	[ -f "/var/cache/blksnap-dkms/$release/artifacts/.complete" ] && [ -f "/var/cache/blksnap-dkms/$release/build/Makefile" ] ||
		fail "DKMS's build step left no Rust artifacts in /var/cache/blksnap-dkms/$release"
	ko=$(compgen -G "/lib/modules/$release/updates/dkms/blksnap.ko*" || true)
	[ -n "$ko" ] || fail "no /lib/modules/$release/updates/dkms/blksnap.ko*"
	vermagic=$(modinfo -F vermagic "$ko")
	[ "${vermagic%% *}" = "$release" ] || fail "$ko is built for '${vermagic%% *}', not $release"
	grep -q "^updates/dkms/blksnap.ko" "/lib/modules/$release/modules.dep" ||
		fail "depmod's index of $release does not name the module"
	[ -x /usr/sbin/blksnap ] || fail "/usr/sbin/blksnap is not installed"
	/usr/sbin/blksnap --help >/dev/null || fail "the installed CLI does not run"
	echo "installed $ko (signer: $(modinfo -F signer "$ko"))"
	exit 0
fi

apt-get purge -y -q blksnap blksnap-dkms >"$out/apt-purge.log" 2>&1 ||
	fail "apt purge failed: $(tail -30 "$out/apt-purge.log")"
files >"$out/files-after"
left=$(compgen -G "/usr/src/blksnap-*" || true)
left+=$(compgen -G "/lib/modules/*/updates/dkms/blksnap.ko*" || true)
[ ! -e /var/lib/dkms/blksnap ] || left+=" /var/lib/dkms/blksnap"
[ ! -e /var/cache/blksnap-dkms ] || left+=" /var/cache/blksnap-dkms"
[ -z "$left" ] || fail "left behind: $left"
diff=$(diff "$out/files-before" "$out/files-after" || true)
[ -z "$diff" ] || fail "the purge did not restore the root's file list: $diff"
! grep -qs blksnap "/lib/modules/$release/modules.dep" || fail "depmod's index still names blksnap"
echo "purged: the file list is as before the install"
