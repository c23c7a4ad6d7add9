#!/usr/bin/env bash
# Installs what building and testing blksnap-rs needs, from the package
# registries only, then makes each kernel of KERNELS (default: all, as lib.sh names them): the
# test kernel (scripts/kernel.sh) or a Debian stock kernel's build root and
# Rust artifacts (scripts/debian-kernel.sh). Every step checks first, so a
# second run does nothing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

debs=(
	rustc-web rust-web-src clang libclang-dev llvm lld
	bc flex bison libelf-dev libssl-dev cpio kmod dwarves xz-utils
	linux-source-6.12 rust-web-clippy qemu-system-x86 udev busybox-static
	fio e2fsprogs xfsprogs util-linux dmsetup mdadm gcc make python3-pip man-db
)
# The kernels to make: those of KERNELS, and the one BLKSNAP_KERNEL names.
kernels=${KERNELS:-$DEFAULT_KERNELS}
case " $kernels " in
*" ${BLKSNAP_KERNEL:-6.12} "*) ;;
*) kernels+=" $BLKSNAP_KERNEL" ;;
esac
# A Debian stock kernel's build root is made with mmdebstrap.
[ "$kernels" = 6.12 ] || debs+=(mmdebstrap)
missing=()
for p in "${debs[@]}"; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	msg "installing Debian packages: ${missing[*]}"
	sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(bindgen --version 2>/dev/null)" != "bindgen $BINDGEN_VERSION" ]; then
	msg "installing bindgen-cli $BINDGEN_VERSION"
	cargo install --quiet --locked bindgen-cli --version "$BINDGEN_VERSION"
fi

if [ "$(python3 -m pip show virtme-ng 2>/dev/null | sed -n 's/^Version: //p')" != "$VIRTME_NG_VERSION" ]; then
	msg "installing virtme-ng $VIRTME_NG_VERSION"
	python3 -m pip install -q --root-user-action=ignore "virtme-ng==$VIRTME_NG_VERSION"
fi

for c in clippy rustfmt; do
	cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || die "cargo $c is missing from the Rust toolchain"
done

for kernel in $kernels; do
	case $kernel in
	6.12) "$BLKSNAP_ROOT/scripts/kernel.sh" ;;
	*) "$BLKSNAP_ROOT/scripts/debian-kernel.sh" "$kernel" ;;
	esac
done
