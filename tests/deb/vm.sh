#!/usr/bin/env bash
# The guest side of the package test (scripts/deb-test.sh), on the stock
# kernel: loads the blksnap.ko that DKMS built and installed in the overlay
# of the Debian root whose upper layer is UPPER, with modprobe and the
# index depmod made there, then, with the CLI the blksnap package
# installed there, snapshots a mounted ext4 on a loop device: the image
# must read as the device did, frozen, at the take, while the device has
# changed since; then `blksnap status`, destroy, and unload.
#
#   vm.sh UPPER
set -euo pipefail

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf 'ok: %s\n' "$*"; }

upper=$1
cli=$upper/usr/sbin/blksnap
ko=$(compgen -G "$upper/usr/lib/modules/$(uname -r)/updates/dkms/blksnap.ko*" || true)
[ -n "$ko" ] || fail "no DKMS-built blksnap.ko for $(uname -r) in $upper"
[ -x "$cli" ] || fail "no installed CLI at $cli"

tmp=$(mktemp -d)
dev= id= frozen=
cleanup() {
	set +e
	[ -z "$frozen" ] || fsfreeze -u "$tmp/mnt"
	[ -z "$id" ] || "$cli" snapshot_destroy -i "$id"
	[ -z "$dev" ] || "$cli" detach -d "$dev"
	umount "$tmp/mnt" "$tmp/store"
	[ -z "$dev" ] || losetup -d "$dev"
	[ ! -d /sys/module/blksnap ] || rmmod blksnap
	rm -rf "$tmp"
} >/dev/null 2>&1
trap cleanup EXIT

modprobe -q loop || true
[ ! -d /sys/module/blksnap ] || fail "blksnap is loaded before the test"
modprobe -d "$upper/usr" blksnap || fail "modprobe -d $upper/usr blksnap failed"
[ -d /sys/module/blksnap ] || fail "modprobe did not load blksnap"
# The file modprobe loads, and its build id in the module loaded.
deps=$(modprobe -d "$upper/usr" --show-depends blksnap)
[[ $deps == *"insmod $ko "* || $deps == *"insmod $ko" ]] || fail "modprobe loads '$deps', not $ko"
xz -dc "$ko" >"$tmp/blksnap.ko" 2>/dev/null || cp "$ko" "$tmp/blksnap.ko"
objcopy -O binary --only-section=.note.gnu.build-id "$tmp/blksnap.ko" "$tmp/build-id"
[ -s "$tmp/build-id" ] || fail "$ko has no build id"
cmp -s "$tmp/build-id" /sys/module/blksnap/notes/.note.gnu.build-id ||
	fail "the module loaded is not $ko: another build id"
step "modprobe loaded $ko (build id checked; taint $(cat /sys/module/blksnap/taint))"

truncate -s 256M "$tmp/disk"
dev=$(losetup -f --show "$tmp/disk")
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
mkdir "$tmp/mnt" "$tmp/store"
mount -t ext4 "$dev" "$tmp/mnt"
for i in 1 2 3 4; do head -c 4M /dev/urandom >"$tmp/mnt/before-$i"; done
sync
out=$("$cli" attach -d "$dev")
[ "$out" = "Attached successfully" ] || fail "blksnap attach -d $dev printed '$out'"
mount -t tmpfs -o size=192M tmpfs "$tmp/store"
id=$("$cli" snapshot_create -f "$tmp/store" -l 128M -d "$dev")
[[ $id =~ ^[0-9a-f-]{36}$ ]] || fail "snapshot_create printed '$id', not a UUID"
# sum DEV: the checksum of DEV, read direct: the device's page cache may
# hold blocks from before the file system wrote them.
sum() { dd if="$1" bs=1M iflag=direct status=none | sha256sum; }
# The device as it is at the take: the file system frozen around it.
fsfreeze -f "$tmp/mnt"
frozen=1
at_take=$(sum "$dev")
timeout 120 "$cli" snapshot_take -i "$id" || fail "snapshot_take failed"
fsfreeze -u "$tmp/mnt"
frozen=
# Written after the take: on the device, not in the image.
rm "$tmp/mnt/before-1"
for i in 1 2 3; do head -c 4M /dev/urandom >"$tmp/mnt/after-$i"; done
sync
img=$("$cli" snapshot_info -d "$dev" -f image)
for _ in $(seq 100); do [ -b "$img" ] && break; sleep 0.1; done
[ -b "$img" ] || fail "the image $img did not appear"
[ "$(sum "$img")" = "$at_take" ] || fail "the image $img differs from $dev at the take"
[ "$(sum "$dev")" != "$at_take" ] || fail "$dev did not change after the take: the comparison proves nothing"
step "the image $img equals $dev at the take; $dev changed since"
out=$("$cli" status) || fail "blksnap status failed: $out"
grep -q '^module  blksnap ' <<<"$out" || fail "blksnap status names no module: $out"
grep -q "$id" <<<"$out" || fail "blksnap status does not list snapshot $id: $out"
step "blksnap status lists the module and the snapshot"
timeout 120 "$cli" snapshot_destroy -i "$id" || fail "snapshot_destroy failed"
id=
"$cli" detach -d "$dev" || fail "blksnap detach failed"
umount "$tmp/mnt"
rmmod blksnap || fail "rmmod blksnap failed"
step "snapshot destroyed, module unloaded"
