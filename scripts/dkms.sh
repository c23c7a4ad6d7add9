#!/usr/bin/env bash
# Registers blksnap.ko with DKMS, which then builds and installs it for the
# running kernel and again for every kernel installed later; run by
# `make dkms-install` and `make dkms-uninstall`.
#
#   scripts/dkms.sh install|uninstall
#   scripts/dkms.sh stage DIR
#
# install copies the module's sources (Kbuild, src/, include/, the shared
# logic/ and uapi/ sources), dkms.conf and the build step DKMS runs
# (scripts/dkms-build.sh, with the scripts/rust-artifacts.sh it uses) to
# /usr/src/blksnap-VERSION, then runs `dkms install`; uninstall runs `dkms
# remove --all` and removes that directory. stage only copies them, to DIR
# (scripts/deb.sh packages them). Environment:
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
stage) [ $# -eq 2 ] || die "usage: $0 stage DIR" ;;
*) die "usage: $0 install|uninstall | stage DIR" ;;
esac

version=$(blksnap_version)

# stage DEST: the module's sources, as DKMS builds them, in DEST.
stage() {
	local dest=$1
	rm -rf "$dest"
	mkdir -p "$dest/logic" "$dest/uapi" "$dest/scripts"
	cp -r "$BLKSNAP_ROOT"/{Kbuild,src,include} "$dest/"
	cp -r "$BLKSNAP_ROOT/logic/src" "$dest/logic/"
	cp -r "$BLKSNAP_ROOT/uapi/src" "$dest/uapi/"
	cp "$BLKSNAP_ROOT"/scripts/{dkms-build.sh,rust-artifacts.sh} "$dest/scripts/"
	# Build products of the working tree are not sources.
	find "$dest" \( -name '*.o' -o -name '.*.cmd' -o -name '*.d' \
		-o -name bindings_generated.rs \) -delete
	sed "s/@VERSION@/$version/" "$BLKSNAP_ROOT/dkms.conf" >"$dest/dkms.conf"
}
if [ "$action" = stage ]; then
	stage "$2"
	exit 0
fi
command -v dkms >/dev/null || die "dkms is not installed (apt-get install dkms)"
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
	stage "$dest"
	dkms add "${opts[@]}" -m blksnap -v "$version"
	dkms install "${opts[@]}" "${kopts[@]}" -m blksnap -v "$version"
else
	if [ -n "$(dkms status "${opts[@]}" -m blksnap -v "$version")" ]; then
		dkms remove "${opts[@]}" -m blksnap -v "$version" --all
	fi
	rm -rf "$dest"
fi
