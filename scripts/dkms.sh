#!/usr/bin/env bash
# Registers blksnap.ko with DKMS, which then builds and installs it for the
# running kernel and again for every kernel installed later; run by
# `make dkms-install` and `make dkms-uninstall`.
#
#   scripts/dkms.sh install|uninstall
#
# install copies the module's sources (Kbuild, src/, include/, the shared
# logic/ and uapi/ sources) and dkms.conf to /usr/src/blksnap-VERSION, then
# runs `dkms install`; uninstall runs `dkms remove --all` and removes that
# directory. Environment:
#   KDIR          build tree of the kernel to build for (default: that of
#                 the running kernel, as dkms finds it)
#   BLKSNAP_RUSTC the rustc the kernel was built with (default: rustc)
#   DKMS_TREES    "SOURCETREE DKMSTREE INSTALLTREE": other directories than
#                 /usr/src, /var/lib/dkms and /lib/modules, for trying it
#                 out without touching the system
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

action=${1:-}
case $action in
install | uninstall) ;;
*) die "usage: $0 install|uninstall" ;;
esac
command -v dkms >/dev/null || die "dkms is not installed (apt-get install dkms)"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$BLKSNAP_ROOT/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "cannot read the version from Cargo.toml"
srctree=/usr/src
opts=()
if [ -n "${DKMS_TREES:-}" ]; then
	read -r srctree dkmstree insttree <<<"$DKMS_TREES"
	opts=(--sourcetree "$srctree" --dkmstree "$dkmstree" --installtree "$insttree")
fi
kopts=()
if [ -n "${KDIR:-}" ]; then
	release=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$KDIR" kernelrelease)
	kopts=(-k "$release" --kernelsourcedir "$KDIR")
fi
dest=$srctree/blksnap-$version

if [ "$action" = install ]; then
	rm -rf "$dest"
	mkdir -p "$dest/logic" "$dest/uapi"
	cp -r "$BLKSNAP_ROOT"/{Kbuild,src,include} "$dest/"
	cp -r "$BLKSNAP_ROOT/logic/src" "$dest/logic/"
	cp -r "$BLKSNAP_ROOT/uapi/src" "$dest/uapi/"
	# Build products of the working tree are not sources.
	find "$dest" \( -name '*.o' -o -name '.*.cmd' -o -name '*.d' \
		-o -name bindings_generated.rs \) -delete
	sed "s/@VERSION@/$version/" "$BLKSNAP_ROOT/dkms.conf" >"$dest/dkms.conf"
	dkms add "${opts[@]}" -m blksnap -v "$version"
	dkms install "${opts[@]}" "${kopts[@]}" -m blksnap -v "$version"
else
	if dkms status "${opts[@]}" -m blksnap -v "$version" | grep -q .; then
		dkms remove "${opts[@]}" -m blksnap -v "$version" --all
	fi
	rm -rf "$dest"
fi
