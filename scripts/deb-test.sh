#!/usr/bin/env bash
# The install test of the Debian packages on the Debian kernel BLKSNAP_KERNEL
# names, in three steps that scripts/test.sh counts one by one:
#
#   scripts/deb-test.sh install   make deb; in a fresh copy-on-write overlay
#                                 of the build root, with the kernel's image
#                                 and modules installed and the Rust
#                                 artifacts taken from its headers, `apt
#                                 install` of the two
#                                 packages: DKMS must build and install
#                                 blksnap.ko for the kernel (tests/deb/root.sh)
#   scripts/deb-test.sh vm        the stock kernel in the VM loads that
#                                 module and the installed CLI snapshots a
#                                 mounted ext4 with it (tests/deb/vm.sh)
#   scripts/deb-test.sh remove    `apt purge` of both packages in the same
#                                 overlay: nothing may be left
#
# apt runs where a Debian user's apt runs: natively, in the root (a chroot),
# not in the slow TCG guest. The overlay and the state kept between runs
# live in BLKSNAP_CACHE/debian/deb-test-RELEASE/: apt's package lists and
# downloads (so that a second run needs no network), and the Rust artifacts
# DKMS made (/var/cache/blksnap-dkms/RELEASE of the root). Making those
# takes minutes (make modules_prepare): the first run makes them, as a
# user's DKMS does; later runs give the cached ones to DKMS, whose build
# step then only checks them and builds against them. BLKSNAP_DEB_FRESH=1
# makes them again. The logs go to build/test/deb/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ "$BLKSNAP_KERNEL" != 6.12 ] || die "the package test runs on a Debian kernel (BLKSNAP_KERNEL=debian-...)"
step=${1:-}
rel=$DEBIAN_KERNEL_RELEASE
state=$BLKSNAP_CACHE/debian/deb-test-$rel
upper=$state/root/upper
out=$BLKSNAP_ROOT/build/test/deb
mkdir -p "$out"

case $step in
install)
	"$BLKSNAP_ROOT/scripts/deb.sh"
	rm -rf "$state/root"
	mkdir -p "$upper/var/lib/apt" "$upper/var/cache/apt" "$upper/tmp"
	chmod 1777 "$upper/tmp"
	[ ! -d "$state/apt/lists" ] || cp -a "$state/apt/lists" "$upper/var/lib/apt/"
	[ ! -d "$state/apt/archives" ] || cp -a "$state/apt/archives" "$upper/var/cache/apt/"
	# The kernel's image and modules, for root.sh to install.
	mkdir -p "$upper/tmp/kernel-debs"
	cp "$DK_DIR"/debs/linux-{binary,modules}-"$rel"_*.deb "$upper/tmp/kernel-debs/"
	cached=
	if [ -z "${BLKSNAP_DEB_FRESH:-}" ] && [ -f "$state/artifacts/artifacts/.complete" ]; then
		cp -a "$state/artifacts" "$upper/tmp/blksnap-dkms-cache"
		cached=1
		echo "the Rust artifacts DKMS made in an earlier run are given to it again"
	else
		echo "DKMS makes the Rust artifacts (make modules_prepare: minutes)"
	fi
	rc=0
	debian_overlay_run "$state/root" bash "$BLKSNAP_ROOT/tests/deb/root.sh" install "$rel" \
		"$BLKSNAP_ROOT/build/deb" "$out" || rc=$?
	# Kept for the next run, whatever the result.
	mkdir -p "$state/apt"
	rm -rf "$state/apt/lists" "$state/apt/archives"
	cp -a "$upper/var/lib/apt/lists" "$state/apt/"
	cp -a "$upper/var/cache/apt/archives" "$state/apt/"
	if [ -z "$cached" ] && [ -f "$upper/var/cache/blksnap-dkms/$rel/artifacts/.complete" ]; then
		rm -rf "$state/artifacts"
		cp -a "$upper/var/cache/blksnap-dkms/$rel" "$state/artifacts"
	fi
	exit "$rc"
	;;
vm)
	[ -d "$upper" ] || die "no installed root in $state/root: run $0 install first"
	rm -f "$out/vm.log" "$out/vm.rc"
	rc=0
	"$BLKSNAP_ROOT/scripts/vm.sh" run "$out/console.log" \
		"bash tests/deb/vm.sh $upper >$out/vm.log 2>&1; echo \$? >$out/vm.rc; dmesg >$out/dmesg.txt" || rc=$?
	cat "$out/vm.log" 2>/dev/null || true
	[ "$(cat "$out/vm.rc" 2>/dev/null)" = 0 ] || die "the guest test failed (vng status $rc; console: $out/console.log)"
	if grep -E 'Kernel panic|Oops|BUG:|general protection fault|WARNING: CPU' "$out/dmesg.txt"; then
		die "the kernel log of the guest shows a failure ($out/dmesg.txt)"
	fi
	;;
remove)
	[ -d "$upper" ] || die "no installed root in $state/root: run $0 install first"
	debian_overlay_run "$state/root" bash "$BLKSNAP_ROOT/tests/deb/root.sh" remove "$rel" "$out"
	;;
*)
	die "usage: $0 install|vm|remove"
	;;
esac
