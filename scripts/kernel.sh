#!/usr/bin/env bash
# Builds (once) the test kernel from Debian's linux-source-6.12 with the
# project's config fragments, into a cache directory outside the repository.
# Prints nothing and does nothing when a complete build is already cached.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

out=$(kernel_dir)
[ -f "$out/.complete" ] && exit 0

tarball=/usr/src/linux-source-6.12.tar.xz
[ -f "$tarball" ] || die "$tarball missing: run scripts/setup.sh first"
src_ver=$(dpkg-query -W -f='${Version}' linux-source-6.12)
src=$BLKSNAP_CACHE/src/linux-$src_ver
if [ ! -f "$src/.unpacked" ]; then
	msg "unpacking $tarball"
	rm -rf "$src" && mkdir -p "$src"
	tar -xf "$tarball" -C "$src" --strip-components=1
	touch "$src/.unpacked"
fi

frags=("$BLKSNAP_ROOT/scripts/kconfig/test.config")
[ -n "${DEBUG:-}" ] && frags+=("$BLKSNAP_ROOT/scripts/kconfig/debug.config")

mkdir -p "$out"
log=$out/build.log
msg "building the test kernel in $out (log: $log); this takes a while once"
kmake() { make -C "$src" O="$out" RUSTC="$KERNEL_RUSTC" "$@"; }
{
	kmake defconfig
	cat "${frags[@]}" >>"$out/.config"
	kmake olddefconfig
} >"$log" 2>&1 || { tail -30 "$log"; die "kernel configuration failed"; }

# Every option the fragments ask for must have stuck: a dependency that
# olddefconfig silently dropped would otherwise surface much later.
missing=$(grep -hE '^CONFIG_[A-Z0-9_]+=' "${frags[@]}" | sort -u | while read -r line; do
	grep -qxF "$line" "$out/.config" || echo "$line"
done)
if [ -n "$missing" ]; then
	[ "${missing#*CONFIG_RUST=y}" != "$missing" ] && kmake rustavailable >&2 || true
	die "options that did not stick: $(echo "$missing" | tr '\n' ' ')"
fi

kmake -j"$(nproc)" >>"$log" 2>&1 || { tail -40 "$log"; die "kernel build failed"; }
touch "$out/.complete"
msg "test kernel ready: $out"
