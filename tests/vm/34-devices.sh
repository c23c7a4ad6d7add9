# Device layouts and media under a snapshot: a whole disk sees the writes
# issued through its partitions (copy-on-write and change tracking, at the
# partition's place on the disk), also when the partition has a filter of
# its own, and a partition sees the writes issued through its whole disk at
# its sectors; a new medium under a member (LOOP_CHANGE_FD) or a new capacity
# (losetup -c) corrupts the snapshot with an event instead of showing other
# data. Uses the sm_* helpers of 31-snapshot-more.sh, the sn_* helpers of
# 30-snapshot.sh, cbt_write_map of 20-cbt.sh and the ft_* helpers of
# 10-filter.sh.
# shellcheck shell=bash

# --- Helpers (prefixed dv_) -------------------------------------------------

# dv_disk: a 64 MiB loop disk whose bytes from 1 MiB on hold generation 1
# (written to the backing file, so no filter sees it), with one 16 MiB
# partition at MiB 1 (sector 2048) -> $REPLY (the disk; the partition is
# ${REPLY}p1). The partition stays open until the test ends: a writer of the
# whole disk closing it makes udev re-read the partition table, which the
# kernel refuses while a partition is open (a re-read would recreate the
# partition and drop its filter).
dv_disk() {
	local img
	ft_image 64M
	img=$REPLY
	"$TAGBLK" write "$img" --gen 1 --offset 1M --order seq --jobs 2 >/dev/null
	ft_write_mbr "$img" 2048 32768
	ft_loop_file "$img" -P
	ft_wait 5 test -b "${REPLY}p1" || fail "${REPLY}p1 did not appear after losetup -P"
	ft_hold "${REPLY}p1"
}

# dv_blocks DEV FROM TO VALUE: "FROM=VALUE ... TO-1=VALUE " over the
# tracking blocks of DEV's map that hold the bytes [FROM, TO) (in MiB).
dv_blocks() {
	local bs first last
	bs=$("$BLKSNAP" cbtinfo -d "$1" | sed -n 's/^block_size=//p')
	first=$(($2 * 1048576 / bs))
	last=$(($3 * 1048576 / bs - 1))
	seq "$first" "$last" | awk -v v="$4" '{ printf "%d=%d ", $1, v }'
}

# dv_event ID: the next event of snapshot ID within ten seconds, as
# "event=... dev_id=... err_code=...".
dv_event() {
	"$BLKSNAP" snapshot_waitevent -i "$1" -t 10000 | grep -E '^(event|dev_id|err_code)=' | xargs
}

# dv_image_eio IMAGE WHAT: reading IMAGE fails with EIO (a corrupted
# snapshot), never returns data.
dv_image_eio() {
	! "$TAGBLK" verify "$1" --gen 1 --len 1M >"$FT_DIR/eio" 2>&1 || fail "$2: the image still reads"
	grep -q "Input/output error" "$FT_DIR/eio" || fail "$2: the image failed without EIO: $(tail -2 "$FT_DIR/eio")"
}

# dv_generation DEV: the generation_id of DEV's change tracking.
dv_generation() {
	"$BLKSNAP" cbtinfo -d "$1" | sed -n 's/^generation_id=//p'
}

# --- Tests ------------------------------------------------------------------

# A whole disk in a snapshot, written through its partition after the take
# (with many writers, so copies and held writes overlap): the image of the
# disk is still the disk at the take, the original holds the new data, and
# the disk's change tracking marks those blocks at their place on the disk.
test_devices_disk_member_sees_partition_writes() {
	sm_begin
	local disk p1 store id img want
	dv_disk
	disk=$REPLY
	p1=${REPLY}p1
	ft_attach "$disk"
	sn_tmpfs 96M
	store=$REPLY
	sn_create "$store" 64M "$disk"
	id=$REPLY
	sn_take "$id"
	sn_image "$disk"
	img=$REPLY
	sn_verify "$img" 1 "the image of $disk before any write" --offset 1M

	# Partition MiB 0..4 is disk MiB 1..5.
	"$TAGBLK" write "$p1" --gen 2 --len 4M --jobs 4 >/dev/null
	sn_verify "$p1" 2 "the written range of $p1" --len 4M
	sn_verify "$img" 1 "the image of $disk after writes to $p1" --offset 1M
	want=$(dv_blocks "$disk" 1 5 2)
	expect_eq "blocks of $disk marked by writes to $p1" "$want" "$(cbt_write_map "$disk")"
	expect_eq "snapshot_info of $disk" "error_code=0" "$("$BLKSNAP" snapshot_info -d "$disk" | head -1)"
	sn_destroy "$id"
	sm_log_clean
}

# A partition and its whole disk, both filtered and both in one snapshot:
# each write to the partition reaches both filters (the partition's with
# partition sectors, the disk's with disk sectors), whichever of them held
# it back first; both images stay as at the take and both maps mark the
# blocks.
test_devices_partition_and_disk_filters_both_see_writes() {
	sm_begin
	local disk p1 store id dimg pimg
	dv_disk
	disk=$REPLY
	p1=${REPLY}p1
	# The partition's own tags: its blocks carry partition offsets.
	"$TAGBLK" write "$p1" --gen 1 --order seq --jobs 2 >/dev/null
	ft_attach "$p1"
	ft_attach "$disk"
	sn_tmpfs 128M
	store=$REPLY
	sn_create "$store" 96M "$p1" "$disk"
	id=$REPLY
	sn_take "$id"
	sn_image "$p1"
	pimg=$REPLY
	sn_image "$disk"
	dimg=$REPLY
	# Direct reads: the image's page cache must not answer the second time.
	dd if="$dimg" of="$FT_DIR/disk-at-take" bs=1M iflag=direct status=none

	"$TAGBLK" write "$p1" --gen 2 --offset 8M --len 4M --jobs 4 >/dev/null
	sn_verify "$p1" 2 "the written range of $p1" --offset 8M --len 4M
	sn_verify "$pimg" 1 "the image of $p1 after writes to it"
	dd if="$dimg" bs=1M iflag=direct status=none | cmp - "$FT_DIR/disk-at-take" >/dev/null ||
		fail "the image of $disk changed after writes to $p1"
	expect_eq "blocks of $p1 marked" "$(dv_blocks "$p1" 8 12 2)" "$(cbt_write_map "$p1")"
	expect_eq "blocks of $disk marked" "$(dv_blocks "$disk" 9 13 2)" "$(cbt_write_map "$disk")"
	sn_destroy "$id"
	# Detaching the partition's filter leaves the disk's seeing its writes.
	ft_detach "$p1"
	"$TAGBLK" write "$p1" --gen 3 --offset 12M --len 1M >/dev/null
	expect_eq "blocks of $disk marked with $p1 detached" "$(dv_blocks "$disk" 9 14 2)" \
		"$(cbt_write_map "$disk")"
	sm_log_clean
}

# LOOP_CHANGE_FD swaps the backing file of a read-only loop device (same
# size) under a taken snapshot: the snapshot is corrupted with ENODEV and
# one event, its image fails with EIO instead of showing the new file, and
# the change tracking starts a new generation.
test_devices_loop_change_fd_corrupts() {
	sm_begin
	local a b dev store id img devnum gen0
	ft_image 32M
	a=$REPLY
	"$TAGBLK" write "$a" --gen 1 --order seq --jobs 2 >/dev/null
	ft_image 32M
	b=$REPLY
	"$TAGBLK" write "$b" --gen 5 --order seq --jobs 2 >/dev/null
	ft_loop_file "$a" -r
	dev=$REPLY
	devnum=$(sn_devnum "$dev")
	ft_attach "$dev"
	gen0=$(dv_generation "$dev")
	sn_tmpfs 64M
	store=$REPLY
	# Storage steps of 8 MiB: no no_space event comes before the one awaited.
	sm_param diff_storage_minimum 16384
	sn_create "$store" 32M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	sn_verify "$img" 1 "the image of $dev before LOOP_CHANGE_FD"

	python3 -c '
import fcntl, os, sys
dev = os.open(sys.argv[1], os.O_RDONLY)
new = os.open(sys.argv[2], os.O_RDONLY)
fcntl.ioctl(dev, 0x4C06, new)  # LOOP_CHANGE_FD
' "$dev" "$b"
	sn_verify "$dev" 5 "$dev after LOOP_CHANGE_FD"
	expect_eq "the event after LOOP_CHANGE_FD" "event=corrupted dev_id=$devnum err_code=19" \
		"$(dv_event "$id")"
	dv_image_eio "$img" "the image of $dev after LOOP_CHANGE_FD"
	expect_eq "snapshot_info of $dev" "error_code=-19" "$("$BLKSNAP" snapshot_info -d "$dev" | head -1)"
	[ "$(dv_generation "$dev")" != "$gen0" ] || fail "the CBT generation of $dev stayed after LOOP_CHANGE_FD"
	sn_destroy "$id"
	sm_log_clean
}

# The capacity of a member changes under a taken snapshot (its backing file
# grew, then losetup -c): the snapshot is corrupted with ENODEV and one
# event, and its image fails with EIO.
test_devices_capacity_change_corrupts() {
	sm_begin
	local f dev store id img devnum
	ft_image 32M
	f=$REPLY
	ft_loop_file "$f"
	dev=$REPLY
	devnum=$(sn_devnum "$dev")
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 64M
	store=$REPLY
	# Storage steps of 8 MiB: no no_space event comes before the one awaited.
	sm_param diff_storage_minimum 16384
	sn_create "$store" 32M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	sm_no_event "$id" "before the capacity changed"

	truncate -s 48M "$f"
	losetup -c "$dev"
	expect_eq "size of $dev after losetup -c" $((48 << 20)) "$(blockdev --getsize64 "$dev")"
	expect_eq "the event after the capacity changed" "event=corrupted dev_id=$devnum err_code=19" \
		"$(dv_event "$id")"
	dv_image_eio "$img" "the image of $dev after losetup -c"
	sn_destroy "$id"
	sm_log_clean
}

# A partition in a snapshot, written through its whole disk after the take
# (tagged writes inside it, and one direct 1 MiB bio that starts before the
# partition and ends inside it): the partition's filter sees those writes
# at their place in the partition, so its image stays the partition at the
# take and its change tracking marks the blocks; the writes reach the disk.
test_devices_partition_member_sees_whole_disk_writes() {
	sm_begin
	local disk p1 store id img
	dv_disk
	disk=$REPLY
	p1=${REPLY}p1
	"$TAGBLK" write "$p1" --gen 1 --order seq --jobs 2 >/dev/null
	ft_attach "$p1"
	sn_tmpfs 64M
	store=$REPLY
	sn_create "$store" 32M "$p1"
	id=$REPLY
	sn_take "$id"
	sn_image "$p1"
	img=$REPLY
	dd if="$img" of="$FT_DIR/p1-at-take" bs=1M iflag=direct status=none

	# Disk MiB 5..9 is partition MiB 4..8; one bio over disk bytes
	# 512K..2M crosses the partition's start (sector 2048) and covers its
	# first MiB.
	"$TAGBLK" write "$disk" --gen 2 --offset 5M --len 4M --jobs 4 >/dev/null
	dd if=/dev/urandom of="$FT_DIR/cross" bs=512K count=3 status=none
	dd if="$FT_DIR/cross" of="$disk" bs=1536K seek=524288 count=1 oflag=seek_bytes,direct conv=notrunc status=none
	cmp -s "$FT_DIR/cross" <(dd if="$disk" bs=512K skip=1 count=3 iflag=direct status=none) ||
		fail "the crossing write did not reach $disk"
	dd if="$img" bs=1M iflag=direct status=none | cmp - "$FT_DIR/p1-at-take" >/dev/null ||
		fail "the image of $p1 changed after writes to $disk at its sectors"
	expect_eq "blocks of $p1 marked by writes to $disk" \
		"$(dv_blocks "$p1" 0 1 2)$(dv_blocks "$p1" 4 8 2)" "$(cbt_write_map "$p1")"
	expect_eq "snapshot_info of $p1" "error_code=0" "$("$BLKSNAP" snapshot_info -d "$p1" | head -1)"
	sn_destroy "$id"
	sm_log_clean
}
