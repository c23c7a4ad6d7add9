# Shared settings for the scripts in this folder; sourced, never run.
# shellcheck shell=bash

BLKSNAP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BLKSNAP_CACHE=${BLKSNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/blksnap-rs}
BINDGEN_VERSION=0.72.1
VIRTME_NG_VERSION=1.42
# The kernel and the module are built with Debian's rustc-web, whose
# standard library source (rust-web-src) matches it; user-space crates use
# the cargo toolchain on PATH.
KERNEL_RUSTC=${KERNEL_RUSTC:-/usr/bin/rustc}
export PATH="$HOME/.cargo/bin:$PATH"

msg() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Prints the directory of the test kernel build for the selected flavor.
# The name carries the kernel version, a hash of the config fragments and
# the versions of rustc and bindgen, so any change to them selects a new
# build and an old one is never reused by mistake.
kernel_dir() {
	local flavor=${DEBUG:+debug}
	local frags=("$BLKSNAP_ROOT/scripts/kconfig/test.config")
	[ -n "$flavor" ] && frags+=("$BLKSNAP_ROOT/scripts/kconfig/debug.config")
	local src_ver key
	src_ver=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null) || src_ver=none
	key=$( { cat "${frags[@]}"; echo "$src_ver"; "$KERNEL_RUSTC" --version; bindgen --version 2>/dev/null; } | sha256sum | cut -c1-12)
	echo "$BLKSNAP_CACHE/kernel/${src_ver%%-*}-${flavor:-std}-$key"
}

# pip puts virtme-ng's `vng` next to the interpreter.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

# Builds the module against $KDIR (default: the cached test kernel); extra
# arguments go to the kernel's make. The kernel's make is told to use
# Debian's rustc and clippy, which match the rustc the kernel was built with.
module_make() {
	local kdir=${KDIR:-$(kernel_dir)}
	make -C "$kdir" M="$BLKSNAP_ROOT" RUSTC="$KERNEL_RUSTC" \
		CLIPPY_DRIVER=/usr/bin/clippy-driver "$@"
}
