#!/usr/bin/env bash
# Makes (once) what building for and booting Debian's stock kernel NAME
# (scripts/kernels/NAME.conf) takes, from Debian's package registry only,
# cached outside the repository:
#   1. its packages, fetched through a private apt state: the headers (with
#      their common part and kbuild), the kernel image and its modules, and
#      the kernel's source package;
#   2. the image and modules unpacked, for the VM (scripts/vm.sh);
#   3. a build root of the release that built the kernel (mmdebstrap), with
#      its rustc, bindgen, gcc and libclang, and the headers installed in it;
#   4. the Rust artifacts the headers package lacks (rust/*.rmeta, the proc
#      macros, scripts/target.json), made from the kernel's source with the
#      headers' .config and release string, and added to the headers tree.
# Each step checks first: when everything is there it prints nothing.
#
#   scripts/debian-kernel.sh NAME
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 NAME (one of: $(kernel_names))"
debian_load "$1"
[ -f "$DK_DIR/.complete" ] && [ -f "$DK_ROOT$DK_KDIR/rust/.complete" ] &&
	[ -f "$DK_DIR/checkpatch/scripts/checkpatch.pl" ] && exit 0
[ "$(id -u)" -eq 0 ] || die "making the build root of $DK_NAME needs root (chroot, mounts)"
# One run at a time: two would build the same root.
mkdir -p "$BLKSNAP_CACHE/debian"
exec 9>"$BLKSNAP_CACHE/debian/.lock"
flock 9

rel=$DEBIAN_KERNEL_RELEASE ver=$DEBIAN_KERNEL_VERSION
abi=${rel%-*}          # 7.3.4+deb13
upstream=${rel%%+*}    # 7.3.4
headers=linux-headers-$rel
src_pkg=linux-source-${upstream%.*}
kernel_debs=("$headers" "linux-headers-$abi-common" "linux-kbuild-$abi" "linux-base-$rel" "$src_pkg")
image_debs=("linux-binary-$rel" "linux-modules-$rel" "linux-base-$rel")

# 1. The packages, at the pinned version.
mkdir -p "$DK_APT/lists/partial" "$DK_APT/cache/archives/partial" "$DK_DIR/debs"
if ! debian_apt apt-cache show "$headers=$ver" >/dev/null 2>&1; then
	mirror=$(debian_mirror)
	[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*: set DEBIAN_MIRROR"
	keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -f "$keyring" ] || die "$keyring missing: apt-get install debian-archive-keyring"
	for suite in "$DEBIAN_SUITE" "$DEBIAN_KERNEL_SUITE"; do
		echo "deb [signed-by=$keyring] $mirror $suite main"
	done | sort -u >"$DK_APT/sources.list"
	msg "reading the package lists of $DEBIAN_SUITE and $DEBIAN_KERNEL_SUITE from $mirror"
	debian_apt apt-get update >"$DK_APT/update.log" 2>&1 ||
		{ tail -5 "$DK_APT/update.log"; die "apt-get update on $DK_APT/sources.list failed (no network to the registry?)"; }
	debian_apt apt-cache show "$headers=$ver" >/dev/null 2>&1 ||
		die "$headers $ver is not in $DEBIAN_KERNEL_SUITE any more: update scripts/kernels/$DK_NAME.conf"
fi
# deb_file PKG: the downloaded .deb of PKG at the pinned version.
deb_file() { compgen -G "$DK_DIR/debs/${1}_${ver//:/%3a}_*.deb" | head -n 1; }
want=()
for p in "${kernel_debs[@]}" "${image_debs[@]}"; do
	[ -n "$(deb_file "$p")" ] || want+=("$p=$ver")
done
if [ ${#want[@]} -gt 0 ]; then
	msg "downloading ${want[*]}"
	(cd "$DK_DIR/debs" && debian_apt apt-get download "${want[@]}" >"$DK_DIR/download.log" 2>&1) ||
		{ tail -5 "$DK_DIR/download.log"; die "downloading the packages of $rel failed"; }
fi

# 2. The kernel image and its modules, as the VM boots them.
if [ ! -f "$DK_DIR/image/.unpacked" ]; then
	rm -rf "$DK_DIR/image"
	for p in "${image_debs[@]}"; do
		dpkg-deb -x "$(deb_file "$p")" "$DK_DIR/image"
	done
	depmod -b "$DK_DIR/image/usr" "$rel"
	touch "$DK_DIR/image/.unpacked"
fi

# 3. The build root, shared by the kernels of one release.
if [ ! -f "$DK_ROOT/.complete" ]; then
	command -v mmdebstrap >/dev/null ||
		die "mmdebstrap is missing (apt-get install mmdebstrap)"
	mirror=$(debian_mirror)
	msg "making a $DEBIAN_SUITE build root in $DK_ROOT (a few minutes, once)"
	rm -rf "$DK_ROOT"
	log=$DK_ROOT.log
	start=$SECONDS
	if ! mmdebstrap --variant=apt --include="$(IFS=,; echo "${DEBIAN_ROOT_PACKAGES[*]}")" \
		"$DEBIAN_SUITE" "$DK_ROOT" "deb $mirror $DEBIAN_SUITE main" >"$log" 2>&1; then
		tail -20 "$log"
		rm -rf "$DK_ROOT"
		die "mmdebstrap could not make the $DEBIAN_SUITE build root (log: $log)"
	fi
	touch "$DK_ROOT/.complete"
	msg "build root made in $((SECONDS - start)) s"
fi

# The kernel's packages, installed in the build root with dpkg.
missing=()
for p in "${kernel_debs[@]}"; do
	[ "$(dpkg-query --admindir="$DK_ROOT/var/lib/dpkg" -W -f='${Version} ${db:Status-Status}' "$p" 2>/dev/null)" = "$ver installed" ] ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	msg "installing ${missing[*]} in the build root"
	mkdir -p "$DK_ROOT/var/cache/blksnap-debs"
	args=()
	for p in "${missing[@]}"; do
		f=$(deb_file "$p")
		cp "$f" "$DK_ROOT/var/cache/blksnap-debs/"
		args+=("/var/cache/blksnap-debs/${f##*/}")
	done
	debian_root_run dpkg -i "${args[@]}" >"$DK_DIR/dpkg.log" 2>&1 ||
		{ tail -20 "$DK_DIR/dpkg.log"; die "installing the kernel packages in the build root failed"; }
	rm -rf "$DK_ROOT/var/cache/blksnap-debs"
fi

# The toolchain must be the one named in the kernel's .config: crates made
# by another rustc have other hashes, and the module would not load.
debian_root_run bash "$BLKSNAP_ROOT/scripts/rust-artifacts.sh" check "$DK_KDIR" ||
	die "the $DEBIAN_SUITE packages changed: set DEBIAN_SUITE (or the packages) in scripts/kernels/$DK_NAME.conf"

# 4. The Rust artifacts, made from the source with the headers' .config
# (scripts/rust-artifacts.sh, which DKMS uses too) and added to the headers.
kdir=$DK_ROOT$DK_KDIR
if [ ! -f "$kdir/rust/.complete" ]; then
	msg "making the Rust artifacts of $rel (make modules_prepare, a few minutes, once)"
	log=$DK_DIR/modules_prepare.log
	out=/var/cache/blksnap/rust-$rel
	start=$SECONDS
	if ! debian_root_run nice bash "$BLKSNAP_ROOT/scripts/rust-artifacts.sh" make \
		"$rel" "/usr/src/$src_pkg.tar.xz" "$DK_KDIR" "$out" >"$log" 2>&1; then
		tail -30 "$log"
		die "making the Rust artifacts of $rel failed (log: $log)"
	fi
	# The headers' Makefile includes that of their common part, the
	# kernel's source tree as kbuild sees it.
	common=$DK_ROOT$(sed -n 's|^include \(.*\)/Makefile$|\1|p' "$kdir/Makefile")
	rm -rf "$kdir/rust" && mkdir -p "$kdir/rust" "$common/rust"
	cp "$DK_ROOT$out"/rust/*.rmeta "$DK_ROOT$out"/rust/*.so "$kdir/rust/"
	cp "$DK_ROOT$out/target.json" "$kdir/scripts/target.json"
	cp "$DK_ROOT$out/rust/bindgen_parameters" "$common/rust/"
	rm -rf "$DK_ROOT$out"
	touch "$kdir/rust/.complete"
	msg "Rust artifacts made in $((SECONDS - start)) s"
fi

# The kernel's checkpatch, for the host checks when no other kernel
# source is at hand.
if [ ! -f "$DK_DIR/checkpatch/scripts/checkpatch.pl" ]; then
	rm -rf "$DK_DIR/checkpatch" && mkdir -p "$DK_DIR/checkpatch"
	dpkg-deb --fsys-tarfile "$(deb_file "$src_pkg")" | tar -xO "./usr/src/$src_pkg.tar.xz" |
		tar -xJ -C "$DK_DIR/checkpatch" --strip-components=1 --wildcards \
			'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch'
fi

touch "$DK_DIR/.complete"
msg "$DK_NAME ready: KDIR $DK_KDIR in the build root $DK_ROOT"
