# In-volume difference storage (Documentation/blksnap.rst, "In-volume
# storage"): a preallocated file on the file system of a member holds the
# copies, written below that file system. The image equals the member at
# the take except the file's extents, which read as zeros; the file is
# pinned while the snapshot lives; the module's own writes to it are
# neither copied nor tracked; it never grows, and filling it corrupts the
# snapshot, not the original. Files it cannot use are refused clearly.
# Uses the sm_* helpers of 31-snapshot-more.sh, the sn_* ones of
# 30-snapshot.sh and the ft_* ones of 10-filter.sh.
# shellcheck shell=bash

IV_LIST=/sys/kernel/debug/blksnap/snapshots/list

# iv_begin: sm_begin with a storage minimum of 16 MiB, so that small test
# file systems can hold in-volume storage.
iv_begin() {
	sm_begin
	sm_param diff_storage_minimum 32768
}

# iv_disk SIZE P1-SECTORS: a loop disk of SIZE with one partition of
# P1-SECTORS from sector 2048 (-> $IV_DISK, $IV_P1), the space after it
# left raw (from $IV_RAW bytes on).
iv_disk() {
	sm_disk_p1 "$1" "$2"
	IV_DISK=$SM_DISK
	IV_P1=$SM_P1
	IV_RAW=$(((2048 + $2) * 512))
}

# iv_fs FSTYPE DEV DIR STORAGE-SIZE: a fresh FSTYPE on DEV mounted on DIR,
# with a file tree (its sums in $FT_DIR/sums) and DIR/diff preallocated to
# STORAGE-SIZE.
iv_fs() {
	# ext4 initialises its inode tables and journal at mkfs, so that no
	# background thread writes them while a test counts the copies.
	case $1 in
	ext4) mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$2" >/dev/null ;;
	*) "mkfs.$1" -q -f "$2" >/dev/null ;;
	esac
	mkdir -p "$3"
	ft_mount "$1" "$2" "$3"
	ft_make_tree "$3/tree"
	fallocate -l "$4" "$3/diff"
	sync
	ft_sums "$3" tree >"$FT_DIR/sums"
}

# iv_extents ID: the in-volume extents of snapshot ID in the debugfs list,
# one "START COUNT" line each (sectors of the storage's file system).
iv_extents() {
	awk -v id="$1" '
		$1 == "snapshot" { mine = ($2 == id); next }
		mine && $1 == "in_volume_extent" {
			sub("start=", "", $2); sub("count=", "", $3); print $2, $3
		}' "$IV_LIST"
}

# iv_used ID: the sectors of its storage snapshot ID uses, from the
# debugfs list.
iv_used() {
	awk -v id="$1" '$1 == "snapshot" && $2 == id {
		for (i = 3; i <= NF; i++) if ($i ~ /^used=/) { sub("used=", "", $i); print $i }
	}' "$IV_LIST"
}

# iv_stored ID: whether snapshot ID stored a copy. The store worker does
# it after the write that needed the copy went on.
iv_stored() {
	local n
	n=$(iv_used "$1")
	[ "${n:-0}" -gt 0 ]
}

# iv_fiemap FILE: the extents of FILE as the file system tells them, in
# 512-byte sectors of its device, one "START COUNT" line each, merged where
# they are contiguous on the device.
iv_fiemap() {
	filefrag -v -b512 "$1" | python3 -c '
import re, sys
out = []
for line in sys.stdin:
    m = re.match(r"\s*\d+:\s*\d+\.\.\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+):", line)
    if not m:
        continue
    start, count = int(m.group(1)), int(m.group(2))
    if out and out[-1][0] + out[-1][1] == start:
        out[-1][1] += count
    else:
        out.append([start, count])
for start, count in out:
    print(start, count)'
}

# iv_zeros DEV OFFSET EXTENTS WHAT: the sectors of EXTENTS ("START COUNT"
# lines), shifted by OFFSET sectors, read as zeros on DEV.
iv_zeros() {
	local dev=$1 offset=$2 what=$4 start count
	while read -r start count; do
		cmp -s -n $((count * 512)) <(dd if="$dev" bs=512 skip=$((offset + start)) \
			count="$count" iflag=direct status=none) /dev/zero ||
			fail "$what: sectors $((offset + start))+$count of $dev are not zeros"
	done <<<"$3"
}

# iv_some_data DEV OFFSET EXTENTS: some sector of EXTENTS, shifted by
# OFFSET sectors, is not zero on DEV.
iv_some_data() {
	local start count
	while read -r start count; do
		cmp -s -n $((count * 512)) <(dd if="$1" bs=512 skip=$(($2 + start)) \
			count="$count" iflag=direct status=none) /dev/zero || return 0
	done <<<"$3"
	return 1
}

# iv_cbt_marked DEV OFFSET EXTENTS RAW: the module's writes changed the
# storage's sectors, so it marks them when the snapshot ends: in the change
# map of the take after the in-volume snapshot's, every block wholly inside
# EXTENTS (shifted by OFFSET sectors) is as new as the newest change of the
# 16 MiB from byte RAW on, which were all written while the in-volume
# snapshot lived.
iv_cbt_marked() {
	local bs out
	"$BLKSNAP" readcbtmap -d "$1" -f "$FT_DIR/cbtmap" >/dev/null
	bs=$("$BLKSNAP" cbtinfo -d "$1" | sed -n 's/^block_size=//p')
	echo "$3" >"$FT_DIR/extents"
	out=$(python3 - "$FT_DIR/cbtmap" "$bs" "$4" "$FT_DIR/extents" "$2" <<'EOF'
import sys
cbt = open(sys.argv[1], "rb").read()
block = int(sys.argv[2]) // 512
raw = int(sys.argv[3]) // 512 // block
newest = max(cbt[raw:raw + (16 << 20) // 512 // block])
inside = marked = 0
for line in open(sys.argv[4]):
    start, count = (int(x) for x in line.split())
    start += int(sys.argv[5])
    for b in range(-(-start // block), (start + count) // block):
        inside += 1
        marked += cbt[b] >= newest
print(inside, marked)
EOF
)
	[ "${out% *}" -gt 0 ] || fail "no change-tracking block lies wholly inside the storage: $out"
	expect_eq "change-tracking blocks inside the storage marked changed after the snapshot" \
		"${out% *}" "${out#* }"
}

# iv_pinned FILE: the file cannot be written, truncated, extended, deleted
# or renamed.
iv_pinned() {
	local err
	err=$(rm -f "$1" 2>&1) && fail "$1 was deleted while it is in-volume storage"
	[[ $err == *"Operation not permitted"* ]] || fail "rm $1: expected EPERM, got: $err"
	err=$(mv "$1" "$1.moved" 2>&1) && fail "$1 was renamed while it is in-volume storage"
	[[ $err == *"Operation not permitted"* ]] || fail "mv $1: expected EPERM, got: $err"
	err=$(truncate -s 4096 "$1" 2>&1) && fail "$1 was truncated while it is in-volume storage"
	[[ $err == *"Text file busy"* ]] || fail "truncate $1: expected ETXTBSY, got: $err"
	err=$(dd if=/dev/zero of="$1" bs=4k count=1 conv=notrunc status=none 2>&1) &&
		fail "$1 was written while it is in-volume storage"
	[[ $err == *"Text file busy"* ]] || fail "a write to $1: expected ETXTBSY, got: $err"
	err=$(fallocate -o 0 -l 1M -p "$1" 2>&1) && fail "a hole was punched in $1 while it is in-volume storage"
	[[ $err == *"Text file busy"* ]] || fail "fallocate -p $1: expected ETXTBSY, got: $err"
}

# iv_image_fs_ok FSTYPE IMAGE-DEV DIR: the file system of the image checks
# clean, mounts read-only and holds the tree of iv_fs as it was, and no
# file written after the take.
iv_image_fs_ok() {
	if [ "$1" = xfs ]; then
		sn_xfs_check "$2" >"$FT_DIR/check.log" 2>&1
	else
		e2fsck -fn "$2" >"$FT_DIR/check.log" 2>&1
	fi || {
		tail -n 20 "$FT_DIR/check.log"
		fail "the file system of the image does not check clean"
	}
	local opts=ro,noload
	[ "$1" = xfs ] && opts=ro,norecovery,nouuid
	sn_mount "$1" "$2" "$3" "$opts"
	ft_verify "$3" "$FT_DIR/sums" "the tree in the image"
	[ ! -e "$3/after" ] || fail "the image shows a file written after the take"
	sn_umount "$3"
}

# iv_writer DIR N: writes and fsyncs N files of 512 KiB in DIR/after, over
# 24 names, so that the copies they cause stay within a known bound.
iv_writer() {
	local i
	mkdir -p "$1/after"
	for ((i = 1; i <= $2; i++)); do
		dd if=/dev/urandom of="$1/after/f$((i % 24))" bs=64k count=8 conv=fsync status=none
	done
}

test_in_volume_whole_disk_image_exact_but_the_storage() {
	iv_begin
	local mnt=$FT_DIR/p1 id img part ext fe pid map
	# p1: 96 MiB of ext4 from MiB 1; MiB 97..160 raw.
	iv_disk 160M 196608
	iv_fs ext4 "$IV_P1" "$mnt" 48M
	"$TAGBLK" write "$IV_DISK" --gen 1 --offset "$IV_RAW" --order seq --jobs 2 >/dev/null
	ft_attach "$IV_DISK"
	sn_create "$mnt/diff" 0 "$IV_DISK"
	id=$REPLY
	grep -qE "^snapshot $id .*storage=in-volume storage_dev=$(sn_devnum "$IV_P1") " "$IV_LIST" ||
		fail "the debugfs list does not show in-volume storage on $IV_P1: $(cat "$IV_LIST")"
	ext=$(iv_extents "$id")
	fe=$(iv_fiemap "$mnt/diff" | sort -n)
	expect_eq "the in-volume extents against filefrag" "$fe" "$(sort -n <<<"$ext")"
	iv_pinned "$mnt/diff"
	sn_take "$id"
	sn_image "$IV_DISK"
	img=$REPLY
	# Random writes over the raw part and files written on p1, at once.
	# At most 16 MiB of raw copies, 12 MiB of file data and the journal:
	# well within the 48 MiB of storage.
	iv_writer "$mnt" 24 &
	pid=$!
	SN_PIDS+=("$pid")
	"$TAGBLK" write "$IV_DISK" --gen 2 --offset "$IV_RAW" --len 16M --order random --jobs 4 >/dev/null ||
		fail "writes to the original failed"
	wait "$pid" || fail "the file writer on $mnt failed"
	sync
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$IV_DISK" -f error_code)"
	ft_wait 60 iv_stored "$id" || fail "no copy was stored: used=$(iv_used "$id")"
	ft_drop_caches
	sn_verify "$img" 1 "the raw part of the image" --offset "$IV_RAW"
	sn_verify "$IV_DISK" 2 "the rewritten raw part of the original" --offset "$IV_RAW" --len 16M
	sn_verify "$IV_DISK" 1 "the rest of the raw part of the original" --offset $((IV_RAW + (16 << 20)))
	iv_zeros "$img" 2048 "$ext" "the image"
	iv_some_data "$IV_DISK" 2048 "$ext" || fail "the storage's sectors on the original hold no copies"
	# The module's own writes are not changes of the device: CBT blocks
	# wholly inside the storage are older than the changes since the take.
	part=$FT_DIR/image-p1
	ft_loop_file "$img" -r -o $((2048 * 512)) --sizelimit $((196608 * 512))
	iv_image_fs_ok ext4 "$REPLY" "$part"
	iv_pinned "$mnt/diff"
	sn_destroy "$id"
	# The change map of the next take shows the changes since this one.
	sn_tmpfs 64M
	sn_create "$REPLY" 32M "$IV_DISK"
	id=$REPLY
	sn_take "$id"
	iv_cbt_marked "$IV_DISK" 2048 "$ext" "$IV_RAW"
	sn_destroy "$id"
	rm "$mnt/diff" || fail "the storage file cannot be deleted after destroy"
	umount "$mnt"
	e2fsck -fn "$IV_P1" >"$FT_DIR/fsck.log" 2>&1 || { tail "$FT_DIR/fsck.log"; fail "the original p1 does not check clean"; }
	sm_log_clean
}

test_in_volume_xfs_on_a_whole_disk_under_file_writes() {
	command -v mkfs.xfs >/dev/null || skip "mkfs.xfs is not installed"
	iv_begin
	local mnt=$FT_DIR/xfs id img ext pid
	# xfs wants 300 MiB at least.
	ft_loop 320M
	local dev=$REPLY
	iv_fs xfs "$dev" "$mnt" 64M
	ft_attach "$dev"
	sn_create "$mnt/diff" 0 "$dev"
	id=$REPLY
	ext=$(iv_extents "$id")
	expect_eq "the in-volume extents against filefrag" "$(iv_fiemap "$mnt/diff" | sort -n)" \
		"$(sort -n <<<"$ext")"
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	# 24 MiB of file data and the log, within the 64 MiB of storage.
	iv_writer "$mnt" 48 &
	pid=$!
	SN_PIDS+=("$pid")
	dd if=/dev/urandom of="$mnt/tree/big/f1" bs=64k count=4 conv=notrunc,fsync status=none
	wait "$pid" || fail "the file writer on $mnt failed"
	sync
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	iv_pinned "$mnt/diff"
	ft_drop_caches
	iv_zeros "$img" 0 "$ext" "the image"
	iv_image_fs_ok xfs "$img" "$FT_DIR/image"
	sn_destroy "$id"
	rm "$mnt/diff" || fail "the storage file cannot be deleted after destroy"
	umount "$mnt"
	xfs_repair -n "$dev" >"$FT_DIR/repair.log" 2>&1 || { tail "$FT_DIR/repair.log"; fail "the original does not check clean"; }
	sm_log_clean
}

test_in_volume_partition_member_with_a_second_member() {
	iv_begin
	local mnt=$FT_DIR/p1 id ext other
	iv_disk 128M 196608
	# 16 MiB of copies from the other member, and what the writes to p1
	# cost (file data, journal, metadata, in chunks of 256 KiB): 40 MiB
	# leave room to spare.
	iv_fs ext4 "$IV_P1" "$mnt" 40M
	ft_loop 16M
	other=$REPLY
	sn_fill "$other" 1
	ft_attach "$IV_P1"
	ft_attach "$other"
	sn_create "$mnt/diff" 0 "$other" "$IV_P1"
	id=$REPLY
	ext=$(iv_extents "$id")
	sn_take "$id"
	"$TAGBLK" write "$other" --gen 2 --order random --jobs 4 >/dev/null || fail "writes to $other failed"
	dd if=/dev/urandom of="$mnt/tree/big/f2" bs=64k count=8 conv=notrunc,fsync status=none
	mkdir "$mnt/after" && head -c 4M /dev/urandom >"$mnt/after/f" && sync
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$other" -f error_code)"
	ft_drop_caches
	sn_image "$other"
	sn_verify "$REPLY" 1 "the image of $other"
	sn_verify "$other" 2 "$other"
	sn_image "$IV_P1"
	iv_zeros "$REPLY" 0 "$ext" "the image of $IV_P1"
	iv_image_fs_ok ext4 "$REPLY" "$FT_DIR/image"
	sn_destroy "$id"
	sm_log_clean
}

test_in_volume_overflow_corrupts_the_snapshot_not_the_original() {
	iv_begin
	local mnt=$FT_DIR/p1 id img err
	iv_disk 128M 65536
	iv_fs ext4 "$IV_P1" "$mnt" 16M
	"$TAGBLK" write "$IV_DISK" --gen 1 --offset "$IV_RAW" --order seq --jobs 2 >/dev/null
	ft_attach "$IV_DISK"
	# A limit, which in-volume storage does not grow to.
	sn_create "$mnt/diff" 64M "$IV_DISK"
	id=$REPLY
	sn_take "$id"
	sn_image "$IV_DISK"
	img=$REPLY
	# 64 MiB of changes for 16 MiB of storage; the writes must all succeed.
	"$TAGBLK" write "$IV_DISK" --gen 2 --offset "$IV_RAW" --len 64M --order seq --jobs 4 >/dev/null ||
		fail "writes to the original failed while the snapshot overflowed"
	sn_wait_event "$id" no_space 30 || { cat "$FT_DIR/events" 2>/dev/null; fail "no no_space event within 30 s"; }
	sn_wait_event "$id" corrupted 30 || { cat "$FT_DIR/events" 2>/dev/null; fail "no corrupted event within 30 s"; }
	expect_eq "snapshot_info -f error_code after the overflow" -28 \
		"$("$BLKSNAP" snapshot_info -d "$IV_DISK" -f error_code)"
	err=$(dd if="$img" of=/dev/null bs=4k count=1 iflag=direct 2>&1) && fail "a read of the overflowed image succeeded"
	[[ $err == *"Input/output error"* ]] || fail "a read of the overflowed image failed without EIO: $err"
	expect_eq "the storage file's size" $((16 << 20)) "$(stat -c %s "$mnt/diff")"
	ft_drop_caches
	sn_verify "$IV_DISK" 2 "the overwritten part of the original" --offset "$IV_RAW" --len 64M
	sn_verify "$IV_DISK" 1 "the rest of the original" --offset $((IV_RAW + (64 << 20)))
	ft_verify "$mnt" "$FT_DIR/sums" "the tree on the original"
	sn_destroy "$id"
	umount "$mnt"
	e2fsck -fn "$IV_P1" >"$FT_DIR/fsck.log" 2>&1 || { tail "$FT_DIR/fsck.log"; fail "the original does not check clean"; }
	sm_log_clean
}

# iv_refused ERRNO WHAT FILE DEV: a snapshot of DEV with FILE as storage is
# refused with ERRNO when DEV is added, and no snapshot is left.
iv_refused() {
	sn_expect_error "$1" "$2" "$BLKSNAP" snapshot_create -f "$3" -d "$4"
	expect_eq "snapshots left after: $2" "" "$("$BLKSNAP" snapshot_collect | tr -d ' \n')"
}

test_in_volume_refuses_files_it_cannot_use() {
	iv_begin
	local mnt=$FT_DIR/p1 p2mnt=$FT_DIR/p2 e2=$FT_DIR/e2 dev2 id
	# p1: ext4 from MiB 1 to 65, p2: ext4 from MiB 66 to 130.
	ft_image 160M
	ft_write_mbr "$REPLY" 2048 131072
	sm_mbr_entry "$REPLY" 1 135168 131072
	ft_loop_file "$REPLY" -P
	IV_DISK=$REPLY
	IV_P1=${IV_DISK}p1
	ft_wait 5 test -b "${IV_DISK}p2" || fail "${IV_DISK}p2 did not appear after losetup -P"
	ft_settle
	iv_fs ext4 "$IV_P1" "$mnt" 16M
	ft_attach "$IV_P1"
	ft_attach "$IV_DISK"
	truncate -s 32M "$mnt/sparse"
	iv_refused EINVAL "a sparse file" "$mnt/sparse" "$IV_P1"
	fallocate -l 8M "$mnt/small"
	iv_refused EINVAL "a file smaller than diff_storage_minimum" "$mnt/small" "$IV_P1"
	fallocate -l 16M "$mnt/swap"
	chmod 600 "$mnt/swap"
	mkswap "$mnt/swap" >/dev/null
	if swapon "$mnt/swap" 2>/dev/null; then
		iv_refused EBUSY "a swap file in use" "$mnt/swap" "$IV_P1"
		swapoff "$mnt/swap"
	fi
	# The files are ordinary again.
	rm "$mnt/sparse" "$mnt/small" "$mnt/swap"
	# ext2 (the ext4 driver serves it): its extents are not pinned.
	mkfs.ext2 -q -F "${IV_DISK}p2"
	mkdir -p "$e2"
	ft_mount ext2 "${IV_DISK}p2" "$e2"
	fallocate -l 16M "$e2/diff" 2>/dev/null || dd if=/dev/zero of="$e2/diff" bs=1M count=16 status=none
	iv_refused EOPNOTSUPP "a file on ext2" "$e2/diff" "${IV_DISK}p2"
	# The whole disk holds both partitions: the file on p1 makes it
	# in-volume storage there too.
	sn_create "$mnt/diff" 0 "$IV_DISK"
	id=$REPLY
	grep -qE "^snapshot $id .*storage=in-volume " "$IV_LIST" || fail "no in-volume storage for the disk: $(cat "$IV_LIST")"
	sn_destroy "$id"
	umount "$e2"
	# A file on p2 is ordinary storage for p1: another file system.
	mkfs.ext4 -q -F "${IV_DISK}p2"
	mkdir -p "$p2mnt"
	ft_mount ext4 "${IV_DISK}p2" "$p2mnt"
	fallocate -l 16M "$p2mnt/diff"
	sn_create "$p2mnt/diff" 0 "$IV_P1"
	id=$REPLY
	grep -qE "^snapshot $id .*storage=file " "$IV_LIST" || fail "storage on p2 for p1 is not a plain file: $(cat "$IV_LIST")"
	sn_take "$id"
	dd if=/dev/urandom of="$mnt/tree/big/f3" bs=64k count=4 conv=notrunc,fsync status=none
	sn_image "$IV_P1"
	iv_image_fs_ok ext4 "$REPLY" "$FT_DIR/image"
	sn_destroy "$id"
	sm_log_clean
}

test_in_volume_storage_and_another_snapshot() {
	iv_begin
	local mnt=$FT_DIR/p1 id other
	iv_disk 128M 65536
	iv_fs ext4 "$IV_P1" "$mnt" 16M
	ft_attach "$IV_DISK"
	ft_attach "$IV_P1"
	sm_q "SNAPSHOT_CREATE with in-volume storage" "$SM_UUID" create "$mnt/diff" 0
	sm_q "SNAPSHOT_CREATE with other storage" "$SM_UUID" create "$FT_DIR" 0
	sm_q_run
	id=${SM_OUT[0]}
	other=${SM_OUT[1]}
	SN_IDS+=("$id" "$other")
	# The storage file lies on a member of another snapshot: it cannot
	# become in-volume storage, whose writes that snapshot would not see.
	sm_q "SNAPSHOTADD of the partition to the other snapshot" "" add "$IV_P1" "$other"
	sm_q "SNAPSHOTADD of the disk holding the storage" EBUSY add "$IV_DISK" "$id"
	sm_q "SNAPSHOT_DESTROY of the other snapshot" "" destroy "$other"
	sm_q "SNAPSHOTADD of the disk holding the storage" "" add "$IV_DISK" "$id"
	sm_q "SNAPSHOT_CREATE with other storage again" "$SM_UUID" create "$FT_DIR" 0
	sm_q_run
	other=${SM_OUT[4]}
	SN_IDS+=("$other")
	# Nor can the partition holding in-volume storage join another one.
	sm_q "SNAPSHOTADD of the partition holding in-volume storage" EBUSY add "$IV_P1" "$other"
	sm_q_run
	grep -qE "^snapshot $id .*storage=in-volume " "$IV_LIST" || fail "no in-volume storage: $(cat "$IV_LIST")"
	sm_log_clean
}

# A write into the in-volume storage's sectors that is not the module's
# own (dd into the member below its file system) overwrites stored copies:
# the snapshot is corrupted, with an event, before the write passes, so
# the image fails with EIO instead of showing other data; the write still
# reaches the original.
test_in_volume_raw_write_into_the_storage_corrupts_the_snapshot() {
	iv_begin
	local mnt=$FT_DIR/p1 id img ext start out
	iv_disk 128M 196608
	iv_fs ext4 "$IV_P1" "$mnt" 40M
	ft_attach "$IV_P1"
	sn_create "$mnt/diff" 0 "$IV_P1"
	id=$REPLY
	ext=$(iv_extents "$id")
	sn_take "$id"
	sn_image "$IV_P1"
	img=$REPLY
	# Copies stored: chunk 0 (the superblock) among them.
	dd if=/dev/urandom of="$mnt/tree/big/f1" bs=64k count=8 conv=notrunc,fsync status=none
	sync
	expect_eq "snapshot_info -f error_code before the raw write" 0 \
		"$("$BLKSNAP" snapshot_info -d "$IV_P1" -f error_code)"
	read -r start _ <<<"$(sort -n <<<"$ext" | head -n 1)"
	dd if=/dev/urandom of="$FT_DIR/raw" bs=64k count=1 status=none
	dd if="$FT_DIR/raw" of="$IV_P1" bs=512 seek="$start" count=128 oflag=direct conv=notrunc status=none ||
		fail "the raw write into the storage's sectors failed"
	out=$("$BLKSNAP" snapshot_waitevent -i "$id" -t 10000 | { grep -E '^(event|err_code)=' || true; } | xargs)
	expect_eq "the event after a raw write into the storage" "event=corrupted err_code=5" "$out"
	expect_eq "snapshot_info -f error_code after the raw write" -5 \
		"$("$BLKSNAP" snapshot_info -d "$IV_P1" -f error_code)"
	! dd if="$img" of=/dev/null bs=64k count=16 iflag=direct status=none 2>/dev/null ||
		fail "the image of a snapshot whose storage was overwritten could still be read"
	cmp -s -n 65536 "$FT_DIR/raw" <(dd if="$IV_P1" bs=512 skip="$start" count=128 iflag=direct status=none) ||
		fail "the raw write did not reach the original"
	dmesg | grep "overwrote the in-volume difference storage" >/dev/null ||
		fail "no kernel-log line says why the snapshot was corrupted"
	sn_destroy "$id"
	rm "$mnt/diff"
	sm_log_clean
}

# The pin refuses to shrink the storage file but not to make it longer:
# truncate(2) to a larger size succeeds, moves none of its blocks, and the
# image stays exact; the destroy says in the kernel log that the file grew.
test_in_volume_storage_file_made_longer_is_told_at_destroy() {
	iv_begin
	local mnt=$FT_DIR/p1 id img part
	iv_disk 128M 196608
	iv_fs ext4 "$IV_P1" "$mnt" 40M
	ft_attach "$IV_P1"
	sn_create "$mnt/diff" 0 "$IV_P1"
	id=$REPLY
	sn_take "$id"
	sn_image "$IV_P1"
	img=$REPLY
	truncate -s 80M "$mnt/diff" || fail "truncate to a larger size was refused"
	dd if=/dev/urandom of="$mnt/tree/big/f1" bs=64k count=8 conv=notrunc,fsync status=none
	sync
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$IV_P1" -f error_code)"
	ft_drop_caches
	part=$FT_DIR/image-p1
	iv_image_fs_ok ext4 "$img" "$part"
	sn_destroy "$id"
	dmesg | tail -n +$((SM_LOG0 + 1)) | grep "in-volume storage: the file was made longer while pinned, from 41943040 to 83886080 bytes" >/dev/null ||
		fail "the destroy did not say that the storage file grew: $(dmesg | tail -n 3)"
	rm "$mnt/diff"
	sm_log_clean
}
