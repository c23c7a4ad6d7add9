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

# The version of blksnap-rs, from Cargo.toml.
blksnap_version() {
	local v
	v=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$BLKSNAP_ROOT/Cargo.toml")
	v=${v%%$'\n'*}
	[ -n "$v" ] || die "cannot read the version from $BLKSNAP_ROOT/Cargo.toml"
	echo "$v"
}

msg() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The kernel the module is built for and tested on: 6.12, the test kernel
# built here (scripts/kernel.sh), or a Debian stock kernel described by
# scripts/kernels/NAME.conf (scripts/debian-kernel.sh). `make test
# KERNELS="..."` sets it for each kernel in turn.
BLKSNAP_KERNEL=${BLKSNAP_KERNEL:-6.12}
# The kernels `make setup` makes and `make test` tests when KERNELS is not
# set: every supported one, the test kernel first.
DEFAULT_KERNELS="6.12 debian-7.3"
kernel_names() {
	local f names=6.12
	for f in "$BLKSNAP_ROOT"/scripts/kernels/*.conf; do
		names+=" $(basename "$f" .conf)"
	done
	echo "$names"
}
# shellcheck source=debian.sh
source "$BLKSNAP_ROOT/scripts/debian.sh"
[ "$BLKSNAP_KERNEL" = 6.12 ] || debian_load "$BLKSNAP_KERNEL"

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
# A Debian stock kernel's module is built in its build root, with the
# toolchain that built that kernel.
module_make() {
	if [ "$BLKSNAP_KERNEL" != 6.12 ] && [ -z "${KDIR:-}" ]; then
		debian_root_run make -C "$DK_KDIR" M="$BLKSNAP_ROOT" RUSTC=rustc \
			CLIPPY_DRIVER=clippy-driver "$@"
		return
	fi
	local kdir=${KDIR:-$(kernel_dir)}
	make -C "$kdir" M="$BLKSNAP_ROOT" RUSTC="$KERNEL_RUSTC" \
		CLIPPY_DRIVER=/usr/bin/clippy-driver "$@"
}

# Fails, naming them, if blksnap.ko needs symbols that the kernel it was
# built for does not export (its Module.symvers): such a module would only
# fail later, at insmod, with "Unknown symbol".
module_check_symbols() {
	local symvers=$1 ko=$BLKSNAP_ROOT/blksnap.ko missing rust
	[ -f "$symvers" ] || die "no $symvers: cannot check the symbols blksnap.ko needs"
	missing=$(comm -23 <(nm -u "$ko" | awk '{ print $2 }' | sort -u) \
		<(awk '{ print $2 }' "$symvers" | sort -u))
	[ -z "$missing" ] && return 0
	rust=$(grep -c '^_R' <<<"$missing" || true)
	printf '    %s\n' $missing >&2
	if [ "$rust" -gt 0 ]; then
		die "blksnap.ko needs $rust Rust symbols the kernel does not export (above): the
	kernel crate it was built against is not the kernel's own (another rustc, or another
	configuration, gives other crate hashes); remake the Rust artifacts with the
	kernel's rustc and .config"
	fi
	die "blksnap.ko needs kernel functions this kernel does not export (above): a glue
	port to this kernel is missing (src/glue/)"
}

# The Module.symvers of the kernel the module is built for.
module_symvers() {
	echo "$(module_target)/Module.symvers"
}

# Prints the path of the kernel's checkpatch.pl: the test kernel's source
# if it is built, else the copy scripts/debian-kernel.sh keeps from a
# Debian kernel's source.
checkpatch() {
	local k f
	k=$(kernel_dir)
	if [ -f "$k/.complete" ]; then
		echo "$(readlink -f "$k/source")/scripts/checkpatch.pl"
		return
	fi
	for f in "$BLKSNAP_CACHE"/debian/*/checkpatch/scripts/checkpatch.pl; do
		[ -f "$f" ] && { echo "$f"; return; }
	done
	echo checkpatch.pl
}

# Prints what the module is built against, as module.sh records it.
module_target() {
	if [ "$BLKSNAP_KERNEL" != 6.12 ] && [ -z "${KDIR:-}" ]; then
		echo "$DK_ROOT$DK_KDIR"
	else
		echo "${KDIR:-$(kernel_dir)}"
	fi
}
