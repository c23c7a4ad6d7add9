#!/usr/bin/env bash
# DKMS's build step of blksnap.ko (dkms.conf's MAKE): builds the module in
# BUILD_DIR against the kernel build tree KSRC of the kernel RELEASE.
#
#   dkms-build.sh RELEASE KSRC BUILD_DIR
#
# A Rust module is built against the kernel's Rust artifacts (rust/*.rmeta,
# the proc macros, scripts/target.json, rust/bindgen_parameters), which a
# full build tree holds and Debian's headers packages lack. When KSRC lacks
# them, they are made once for RELEASE by rust-artifacts.sh from the
# kernel's source, /usr/src/linux-source-X.Y.tar.xz (the linux-source-X.Y
# package), with the toolchain the kernel was built with, and kept in
# BLKSNAP_DKMS_CACHE/RELEASE (default /var/cache/blksnap-dkms; removing the
# blksnap-dkms package removes it). The module is then built against a tree
# of links there: the headers with the artifacts added, nothing of the
# headers' own packages changed. Any missing piece fails the build early,
# naming the package to install. BLKSNAP_RUSTC names the rustc (default:
# rustc on PATH); it must be the kernel's own.
set -euo pipefail

die() { printf 'error: blksnap: %s\n' "$*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: $0 RELEASE KSRC BUILD_DIR"
release=$1 ksrc=$2 build=$3
here=$(cd "$(dirname "$0")" && pwd)
rustc=${BLKSNAP_RUSTC:-rustc}
[ -f "$ksrc/Makefile" ] || die "no kernel build tree at $ksrc: install linux-headers-$release"

# The kernel's source tree as kbuild sees it: for headers (and any O= build
# tree), what the build tree's Makefile includes; else the tree itself.
srctree=$(sed -n 's|^include \(/.*\)/Makefile$|\1|p' "$ksrc/Makefile")
srctree=${srctree:-$ksrc}

kdir=$ksrc
if [ ! -f "$ksrc/rust/libkernel.rmeta" ] || [ ! -f "$srctree/rust/bindgen_parameters" ]; then
	grep -qx 'CONFIG_RUST=y' "$ksrc/.config" ||
		die "$release is built without CONFIG_RUST=y: blksnap.ko is written in Rust"
	cache=${BLKSNAP_DKMS_CACHE:-/var/cache/blksnap-dkms}/$release
	art=$cache/artifacts
	# The artifacts are made for one configuration: another .config (a
	# rebuilt headers package) makes them again.
	sum=$(sha256sum <"$ksrc/.config")
	if [ ! -f "$art/.complete" ] || [ "$(cat "$cache/config.sha256" 2>/dev/null)" != "$sum" ]; then
		upstream=${release%%[-+]*} # 7.3.4
		version=${upstream%.*}     # 7.3
		tarball=/usr/src/linux-source-$version.tar.xz
		[ -f "$tarball" ] || die "$ksrc lacks the Rust artifacts (rust/*.rmeta) and $tarball,
	from which they are made, is missing: install linux-source-$version (of the same
	version as the headers), then run dkms again"
		bash "$here/rust-artifacts.sh" check "$ksrc"
		echo "blksnap: making the Rust artifacts of $release from $tarball (make modules_prepare, a few minutes, once)"
		rm -rf "$cache"
		mkdir -p "$cache"
		nice bash "$here/rust-artifacts.sh" make "$release" "$tarball" "$ksrc" "$art" >"$cache/make.log" 2>&1 || {
			tail -30 "$cache/make.log" >&2
			die "making the Rust artifacts of $release failed (log: $cache/make.log)"
		}
		echo "$sum" >"$cache/config.sha256"
	fi
	# link_tree FROM TO: TO, a directory of links to FROM's entries.
	link_tree() {
		local e
		rm -rf "$2" && mkdir -p "$2"
		for e in "$1"/* "$1"/.[!.]*; do
			[ -e "$e" ] || [ -L "$e" ] || continue
			ln -s "$e" "$2/"
		done
	}
	# The source tree: that of the headers plus rust/bindgen_parameters.
	link_tree "$(readlink -f "$srctree")" "$cache/source"
	rm -rf "$cache/source/rust" && mkdir "$cache/source/rust"
	ln -s "$art/rust/bindgen_parameters" "$cache/source/rust/"
	# The build tree: the headers' one plus rust/ and scripts/target.json,
	# its Makefile naming the two new trees.
	link_tree "$(readlink -f "$ksrc")" "$cache/build"
	rm -f "$cache/build/Makefile" "$cache/build/rust" "$cache/build/scripts"
	ln -s "$art/rust" "$cache/build/rust"
	link_tree "$(readlink -f "$ksrc/scripts")" "$cache/build/scripts"
	ln -sf "$art/target.json" "$cache/build/scripts/target.json"
	printf 'KBUILD_OUTPUT=%s\ninclude %s/Makefile\n' "$cache/build" "$cache/source" >"$cache/build/Makefile"
	kdir=$cache/build
fi

exec make -C "$kdir" M="$build" RUSTC="$rustc" modules
