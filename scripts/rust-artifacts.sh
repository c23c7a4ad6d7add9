#!/usr/bin/env bash
# Makes the Rust artifacts that a distribution kernel's headers lack and an
# out-of-tree Rust module is built against: rust/*.rmeta, the proc-macro
# .so files, scripts/target.json and the kernel's rust/bindgen_parameters.
# They are remade from the kernel's source with the headers' .config and
# release string, by the toolchain the .config names (crates made by
# another rustc have other hashes, and the module would not load). Run by
# scripts/debian-kernel.sh in its build root, and on a Debian system by
# dkms-build.sh, with which the blksnap-dkms package installs it.
#
#   rust-artifacts.sh check KDIR
#   rust-artifacts.sh make RELEASE TARBALL KDIR OUT
#
# check fails, naming what to install, unless rustc, bindgen and the C
# compiler are those the kernel of the headers tree KDIR was built with.
# make checks the same, unpacks TARBALL (the kernel's source) and runs
# `make modules_prepare` there with KDIR's .config (olddefconfig must
# change nothing) and RELEASE as the release, then writes OUT/rust/ (the
# .rmeta and .so files, bindgen_parameters) and OUT/target.json and marks
# OUT/.complete. Its work tree, OUT.work (3 GB), is removed afterwards.
set -euo pipefail

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# conf_text KDIR NAME: the string value of NAME in KDIR's .config.
conf_text() { sed -n "s/^$2=\"\(.*\)\"$/\1/p" "$1/.config"; }

# check_tool NAME PACKAGES WANTED CMD...: CMD's first line of output must be
# WANTED, the version text the kernel recorded.
check_tool() {
	local name=$1 pkgs=$2 want=$3 out
	shift 3
	command -v "$1" >/dev/null ||
		die "$1 is missing: the kernel was built with \"$want\"; install $pkgs"
	out=$("$@" 2>/dev/null) || true
	out=${out%%$'\n'*}
	[ "$out" = "$want" ] || die "$name is \"$out\" but the kernel was built with \"$want\":
	install that version ($pkgs of the release that built the kernel)"
}

# check_tools KDIR: the toolchain of KDIR's .config is the one on PATH.
check_tools() {
	local kdir=$1 cc
	[ -f "$kdir/.config" ] || die "no .config in $kdir: not a kernel build tree"
	cc=$(conf_text "$kdir" CONFIG_CC_VERSION_TEXT)
	cc=${cc%% *}
	check_tool rustc "rustc and rust-src" "$(conf_text "$kdir" CONFIG_RUSTC_VERSION_TEXT)" rustc --version
	check_tool bindgen bindgen "$(conf_text "$kdir" CONFIG_BINDGEN_VERSION_TEXT)" bindgen --version
	check_tool "$cc" "${cc#*-linux-gnu-}" "$(conf_text "$kdir" CONFIG_CC_VERSION_TEXT)" "$cc" --version
}

# make_artifacts RELEASE TARBALL KDIR OUT
make_artifacts() {
	local rel=$1 tarball=$2 kdir=$3 out=$4 work=$4.work cc upstream got
	check_tools "$kdir"
	[ -f "$tarball" ] || die "$tarball is missing: install the kernel's source package"
	cc=$(conf_text "$kdir" CONFIG_CC_VERSION_TEXT)
	cc=${cc%% *}
	rm -rf "$work" "$out"
	mkdir -p "$work/src" "$work/build"
	tar -xf "$tarball" -C "$work/src" --strip-components=1
	cp "$kdir/.config" "$work/build/.config"
	# The release string of the stock kernel, not the bare version. The
	# compiler is named as the kernel's build named it, so that the
	# configuration (which records it) does not change.
	upstream=$(make -s -C "$work/src" kernelversion)
	kmake() {
		make -C "$work/src" O="$work/build" ARCH=x86 CROSS_COMPILE="${cc%gcc*}" \
			CC="$cc" HOSTCC="$cc" LOCALVERSION="${rel#"$upstream"}" "$@"
	}
	kmake olddefconfig
	if ! cmp -s <(grep -E "^(# )?CONFIG_" "$kdir/.config") <(grep -E "^(# )?CONFIG_" "$work/build/.config"); then
		diff <(grep -E "^(# )?CONFIG_" "$kdir/.config") <(grep -E "^(# )?CONFIG_" "$work/build/.config") >&2 || true
		die "olddefconfig changed the configuration of $rel (above): another toolchain or source"
	fi
	got=$(kmake -s kernelrelease)
	[ "$got" = "$rel" ] || die "the source gives release $got, not $rel"
	kmake -j"$(nproc)" modules_prepare
	cmp "$kdir/include/generated/rustc_cfg" "$work/build/include/generated/rustc_cfg" ||
		die "the remade rustc_cfg differs from the headers' one"
	mkdir -p "$out/rust"
	cp "$work/build"/rust/*.rmeta "$work/build"/rust/*.so "$out/rust/"
	cp "$work/build/scripts/target.json" "$out/target.json"
	# What a module's own bindgen run takes from the kernel source.
	cp "$work/src/rust/bindgen_parameters" "$out/rust/"
	touch "$out/.complete"
	rm -rf "$work"
}

case ${1:-} in
check) [ $# -eq 2 ] || die "usage: $0 check KDIR"; check_tools "$2" ;;
make) [ $# -eq 5 ] || die "usage: $0 make RELEASE TARBALL KDIR OUT"; make_artifacts "$2" "$3" "$4" "$5" ;;
*) die "usage: $0 check KDIR | make RELEASE TARBALL KDIR OUT" ;;
esac
