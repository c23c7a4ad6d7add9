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
	ft_image "$1"
	ft_write_mbr "$REPLY" 2048 "$2"
	ft_loop_file "$REPLY" -P
	IV_DISK=$REPLY
	IV_P1=${IV_DISK}p1
	IV_RAW=$(((2048 + $2) * 512))
	ft_wait 5 test -b "$IV_P1" || fail "$IV_P1 did not appear after losetup -P"
	ft_settle
}

# iv_fs FSTYPE DEV DIR STORAGE-SIZE: a fresh FSTYPE on DEV mounted on DIR,
# with a file tree (its sums in $FT_DIR/sums) and DIR/diff preallocated to
# STORAGE-SIZE.
iv_fs() {
	"mkfs.$1" -q -f "$2" >/dev/null 2>&1 || "mkfs.$1" -q -F "$2" >/dev/null
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

# iv_cbt_untouched DEV OFFSET EXTENTS RAW: the module's own writes are no
# changes of DEV: in the change map of the take after the in-volume
# snapshot's, every block wholly inside EXTENTS (shifted by OFFSET
# sectors) is older than the newest change of the 16 MiB from byte RAW
# on, which were all written while the in-volume snapshot lived.
iv_cbt_untouched() {
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
	expect_eq "change-tracking blocks inside the storage marked since the take (of ${out% *})" 0 "${out#* }"
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

# iv_writer DIR: writes and fsyncs new files in DIR/after until killed.
iv_writer() {
	local i=0
	mkdir -p "$1/after"
	while :; do
		i=$((i + 1))
		dd if=/dev/urandom of="$1/after/f$((i % 24))" bs=64k count=8 conv=fsync status=none
	done
}

test_in_volume_whole_disk_image_exact_but_the_storage() {
	iv_begin
	local mnt=$FT_DIR/p1 id img part ext fe n pid map
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
	iv_writer "$mnt" &
	pid=$!
	SN_PIDS+=("$pid")
	"$TAGBLK" write "$IV_DISK" --gen 2 --offset "$IV_RAW" --len 16M --order random --jobs 4 >/dev/null ||
		fail "writes to the original failed"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	sync
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$IV_DISK" -f error_code)"
	n=$(awk -v id="$id" '$1 == "snapshot" && $2 == id { for (i = 3; i <= NF; i++) if ($i ~ /^used=/) { sub("used=", "", $i); print $i } }' "$IV_LIST")
	[ "${n:-0}" -gt 0 ] || fail "no copy was stored: used=$n"
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
	iv_cbt_untouched "$IV_DISK" 2048 "$ext" "$IV_RAW"
	sn_destroy "$id"
	rm "$mnt/diff" || fail "the storage file cannot be deleted after destroy"
	umount "$mnt"
	e2fsck -fn "$IV_P1" >"$FT_DIR/fsck.log" 2>&1 || { tail "$FT_DIR/fsck.log"; fail "the original p1 does not check clean"; }
	sm_log_clean
}
