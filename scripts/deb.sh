#!/usr/bin/env bash
# Builds the Debian packages of blksnap-rs with dpkg-deb (`make deb`), in
# build/deb/:
#   blksnap-dkms_VERSION_all.deb  the module's sources in
#       /usr/src/blksnap-VERSION as scripts/dkms.sh stages them (with
#       dkms.conf and the build step, scripts/dkms-build.sh); installing it
#       registers the module with DKMS, which builds and installs it for
#       every kernel whose headers are installed, and for kernels installed
#       later; removing it removes the module from DKMS and the Rust
#       artifacts DKMS made (/var/cache/blksnap-dkms);
#   blksnap_VERSION_amd64.deb  the CLI, /usr/sbin/blksnap, with its man
#       page, its shell completions and the uAPI headers, as cli/install.sh
#       installs them (--no-module).
# VERSION is that of Cargo.toml.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"
version=$(blksnap_version)
out=$BLKSNAP_ROOT/build/deb
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
rm -rf "$out" && mkdir -p "$out"

# control DIR NAME ARCH FIELDS: DIR/DEBIAN/control of package NAME, with
# the common fields and FIELDS (lines), and the md5sums of DIR's files.
control() {
	local dir=$1 name=$2 arch=$3 fields=$4 size
	mkdir -p "$dir/DEBIAN"
	size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
	cat >"$dir/DEBIAN/control" <<-EOF
		Package: $name
		Version: $version
		Architecture: $arch
		Maintainer: blksnap-rs developers <blksnap-rs@localhost>
		Installed-Size: $size
		Section: admin
		Priority: optional
		$fields
	EOF
	(cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
		xargs -0 -r md5sum >DEBIAN/md5sums)
}

# script DIR NAME BODY: the maintainer script DIR/DEBIAN/NAME.
script() {
	printf '#!/bin/sh\nset -e\n%s\n' "$3" >"$1/DEBIAN/$2"
	chmod 755 "$1/DEBIAN/$2"
}

# The module's sources, for DKMS. The kernel's Rust artifacts are made by
# the build step from linux-source-X.Y when the headers lack them; which
# X.Y depends on the kernel, so that package is only suggested (the build
# step names it when it is missing).
dkms=$stage/dkms
"$BLKSNAP_ROOT/scripts/dkms.sh" stage "$dkms/usr/src/blksnap-$version"
control "$dkms" blksnap-dkms all "Depends: dkms, rustc, rust-src, bindgen, libclang-dev, gcc, make, bc, bison, flex, libelf-dev, libssl-dev, dwarves, xz-utils, perl, python3
Suggests: linux-source
Description: block-device snapshots and change tracking (kernel module, DKMS)
 blksnap.ko, written in Rust, snapshots block devices while they are in use
 and tracks the blocks changed between snapshots, for backups. This package
 holds its sources, which DKMS builds for each kernel built with Rust
 support (CONFIG_RUST=y) whose headers are installed. Debian's headers lack
 the Rust artifacts a Rust module is built against: they are made once per
 kernel from its source package, linux-source-X.Y."
script "$dkms" postinst "version=$version"'
# Registers the module and builds it for every kernel whose headers are
# installed; a kernel it cannot be built for is named, and the others go on.
[ "$1" = configure ] || exit 0
[ -e "/var/lib/dkms/blksnap/$version/source" ] || dkms add -m blksnap -v "$version"
for build in /lib/modules/*/build; do
	[ -d "$build" ] || continue
	kernel=${build%/build}
	kernel=${kernel##*/}
	dkms install -m blksnap -v "$version" -k "$kernel" && continue
	# What the build step said, which dkms keeps in its log.
	sed -n "/^error: blksnap:/,/^\$/p" "/var/lib/dkms/blksnap/$version/build/make.log" >&2 2>/dev/null || true
	echo "blksnap-dkms: blksnap.ko was not built for $kernel (see above); once that is fixed: dkms install -m blksnap -v $version -k $kernel" >&2
done'
script "$dkms" prerm "version=$version"'
# The module leaves DKMS (and every kernel it was installed for).
case "$1" in
remove | upgrade | deconfigure)
	[ ! -e "/var/lib/dkms/blksnap/$version" ] || dkms remove -m blksnap -v "$version" --all
	;;
esac'
script "$dkms" postrm '
# The Rust artifacts the build step made are a cache of this package.
case "$1" in
remove | purge) rm -rf /var/cache/blksnap-dkms ;;
esac'

# The CLI and the rest of what `make install` installs but the module.
cli=$stage/cli
DESTDIR=$cli PREFIX=/usr "$BLKSNAP_ROOT/cli/install.sh" install --no-module >"$stage/install.log" 2>&1 ||
	{ cat "$stage/install.log" >&2; die "cli/install.sh failed"; }
# The newest glibc symbol version the CLI needs.
glibc=$(objdump -T "$cli/usr/sbin/blksnap" | grep -o 'GLIBC_[0-9.]*' | sort -uV)
glibc=${glibc##*$'\n'}
[ -n "$glibc" ] || die "objdump shows no glibc symbol versions in the CLI"
libs="libc6 (>= ${glibc#GLIBC_})"
needed=$(objdump -p "$cli/usr/sbin/blksnap")
! grep -q 'NEEDED *libgcc_s' <<<"$needed" || libs+=", libgcc-s1"
control "$cli" blksnap amd64 "Depends: $libs
Recommends: blksnap-dkms (= $version)
Description: block-device snapshots and change tracking (command line)
 blksnap drives the blksnap.ko kernel module (package blksnap-dkms): it
 attaches the change tracker to block devices, creates and takes snapshots,
 reads the changed-block maps and makes full and incremental backups. With
 its man page, bash, zsh and fish completions, and the module's uAPI
 headers."

for p in dkms:blksnap-dkms_${version}_all cli:blksnap_${version}_amd64; do
	dpkg-deb --root-owner-group -Zxz --build "$stage/${p%%:*}" "$out/${p#*:}.deb" >/dev/null
	echo "$out/${p#*:}.deb"
done
