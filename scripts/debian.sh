# Debian's stock kernels (scripts/kernels/NAME.conf): where their packages,
# their build root and the Rust artifacts their headers lack are cached, and
# how to run a command in that build root. Sourced by lib.sh; never run.
# shellcheck shell=bash

# The packages of the build root: the toolchain Debian built its kernels
# with (the kernel's .config names the versions; scripts/debian-kernel.sh
# checks them), what kbuild needs, and what the headers package depends on.
DEBIAN_ROOT_PACKAGES=(
	rustc rust-src rust-clippy rustfmt bindgen libclang-dev
	gcc-14 gcc-14-for-host gcc make binutils bc flex bison
	libelf-dev libssl-dev openssl pkg-config dwarves kmod cpio xz-utils python3
	perl linux-base
)

# debian_load NAME: reads scripts/kernels/NAME.conf and sets the paths:
#   DK_DIR      cache of this kernel: its .debs, its unpacked image
#   DK_APT      private apt state (sources, lists, cache) for its suites
#   DK_ROOT     the build root of DEBIAN_SUITE
#   DK_KDIR     the headers tree with the Rust artifacts: the KDIR of the
#               module build, a path inside DK_ROOT
#   DK_VMLINUZ  Debian's kernel image; its modules are beside it
debian_load() {
	local conf=$BLKSNAP_ROOT/scripts/kernels/$1.conf
	[ -f "$conf" ] || die "unknown kernel '$1' (no $conf)"
	# shellcheck source=kernels/debian-7.3.conf
	source "$conf"
	DK_NAME=$1
	local base=$BLKSNAP_CACHE/debian key
	DK_DIR=$base/$DEBIAN_KERNEL_RELEASE-$DEBIAN_KERNEL_VERSION
	DK_APT=$base/apt-$DEBIAN_SUITE
	key=$(echo "$DEBIAN_SUITE ${DEBIAN_ROOT_PACKAGES[*]}" | sha256sum | cut -c1-12)
	DK_ROOT=$base/root-$DEBIAN_SUITE-$key
	DK_KDIR=/usr/src/linux-headers-$DEBIAN_KERNEL_RELEASE
	DK_VMLINUZ=$DK_DIR/image/usr/lib/modules/$DEBIAN_KERNEL_RELEASE/vmlinuz
}

# The Debian mirror this machine uses (DEBIAN_MIRROR overrides it).
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && cat "$f"
	done | sed -nE 's,^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)([a-z]+://[^[:space:]]+/debian)/?([[:space:]].*)?$,\3,p' |
		head -n 1
}

# debian_apt CMD ARGS...: apt-get or apt-cache on the private apt state,
# which knows DEBIAN_SUITE and DEBIAN_KERNEL_SUITE only; the machine's own
# sources, lists, pins and installed packages play no part.
debian_apt() {
	local cmd=$1
	shift
	"$cmd" -q -o Dir::Etc::SourceList="$DK_APT/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null \
		-o Dir::Etc::PreferencesParts=/dev/null -o Dir::State::Lists="$DK_APT/lists" \
		-o Dir::Cache="$DK_APT/cache" -o Dir::State::Status=/dev/null \
		-o APT::Sandbox::User=root "$@"
}

# debian_root_run CMD ARGS...: CMD in the build root, as root, with a clean
# environment, /dev, /proc and this repository at its own path; the mounts
# live in a mount namespace of their own and end with it.
debian_root_run() {
	[ -f "$DK_ROOT/.complete" ] || die "no build root in $DK_ROOT: run scripts/debian-kernel.sh $DK_NAME"
	debian_chroot "$DK_ROOT" "" "$@"
}

# debian_overlay_run DIR CMD ARGS...: CMD as debian_root_run runs it, but in
# a copy-on-write overlay of the build root whose writes go to DIR/upper
# (DIR/work is the overlay's own), so that the build root stays as it is.
# The same DIR gives the same copy again.
debian_overlay_run() {
	[ -f "$DK_ROOT/.complete" ] || die "no build root in $DK_ROOT: run scripts/debian-kernel.sh $DK_NAME"
	local dir=$1
	shift
	mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
	debian_chroot "$dir/merged" "lowerdir=$DK_ROOT,upperdir=$dir/upper,workdir=$dir/work" "$@"
}

# debian_chroot ROOT OVERLAY CMD ARGS...: the chroot of the two above; ROOT
# is first made an overlay with the options OVERLAY unless it is empty.
debian_chroot() {
	[ "$(id -u)" -eq 0 ] || die "$DK_NAME's module is built in its build root (a chroot): run as root"
	unshare --mount --propagation private -- /bin/bash -c '
		set -e
		root=$1 overlay=$2 repo=$3
		shift 3
		[ -z "$overlay" ] || mount -t overlay overlay -o "$overlay" "$root"
		mount --rbind /dev "$root/dev"
		mount -t proc proc "$root/proc"
		mkdir -p "$root$repo"
		mount --bind "$repo" "$root$repo"
		exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
			PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
	' debian_chroot "$1" "$2" "$BLKSNAP_ROOT" "${@:3}"
}
