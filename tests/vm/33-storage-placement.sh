# Where a difference storage may live (Documentation/blksnap.rst, "Where
# the storage may live"): storage whose bytes end up on a member of its
# snapshot (through a file system, a partition, a dm device or a loop
# device), storage that holds a member's data (a loop member's backing
# file), and one file as the storage of two snapshots are all refused, in
# whichever order storage and members are chosen. Each test also does what
# would harm the original had the set-up been accepted, bounded in time.
# Uses the sm_* helpers of 31-snapshot-more.sh, the sn_* ones of
# 30-snapshot.sh and the ft_* ones of 10-filter.sh.
# shellcheck shell=bash

# sp_within SECONDS WHAT CMD...: runs CMD in the background; it must end,
# successfully, within SECONDS. (A write that waits for ever cannot be
# killed, so it is not waited for.)
sp_within() {
	local secs=$1 what=$2 pid
	shift 2
	"$@" >"$FT_DIR/within.log" 2>&1 &
	pid=$!
	if ! ft_wait "$secs" sn_exited "$pid"; then
		fail "$what: still blocked after $secs s"
		return 1
	fi
	wait "$pid" || { cat "$FT_DIR/within.log"; fail "$what failed"; }
}

# sp_log_names DEV WHAT: the kernel log since sm_begin names DEV (its
# MAJOR:MINOR) in a refusal.
sp_log_names() {
	dmesg | tail -n +$((SM_LOG0 + 1)) | grep -E "device $(sn_devnum "$1")[ ,].*refused" >/dev/null ||
		fail "$2: no refusal naming $(sn_devnum "$1") in the kernel log"
}

test_placement_loop_backing_file_as_storage() {
	sm_begin
	ft_image 16M
	local img=$REPLY loop id other store upper answers=0
	ft_loop_file "$img"
	loop=$REPLY
	sn_fill "$loop" 1
	ft_attach "$loop"
	ln "$img" "$FT_DIR/link"

	# The storage first, the member then: the member is refused.
	sm_q "SNAPSHOT_CREATE with the backing file of $loop" "$SM_UUID" create "$img" 0
	sm_q_run
	id=${SM_OUT[0]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $loop, whose backing file is the storage" EINVAL add "$loop" "$id"
	sm_q "SNAPSHOT_TAKE of the snapshot without members" ENODEV take "$id"
	sm_q_run || answers=1
	# Had it been accepted, these copies would overwrite the original's
	# first megabytes.
	sp_within 60 "a write to $loop" "$TAGBLK" write "$loop" --gen 2 --offset 8M --len 4M --order seq
	ft_drop_caches
	sn_verify "$loop" 1 "$loop before the rewritten range" --len 8M
	sn_verify "$loop" 2 "$loop in the rewritten range" --offset 8M --len 4M
	[ "$answers" = 0 ] || fail "the backing file of a member was accepted as its storage (above)"
	sp_log_names "$loop" "SNAPSHOTADD of $loop"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	sm_q_run
	SN_IDS=()

	# The member first, the storage then, by another name: a snapshot
	# whose storage holds another snapshot's member is refused too.
	sn_tmpfs 32M
	store=$REPLY
	sm_q "SNAPSHOT_CREATE on tmpfs" "$SM_UUID" create "$store" 0
	sm_q_run
	other=${SM_OUT[0]}
	SN_IDS+=("$other")
	sm_q "SNAPSHOTADD of $loop" "" add "$loop" "$other"
	sm_q "SNAPSHOT_CREATE with a hard link to the backing file of $loop" EINVAL create "$FT_DIR/link" 0
	sm_q "SNAPSHOT_CREATE with the backing file of $loop" EINVAL create "$img" 0
	sm_q "SNAPSHOT_COLLECT" "1 $other" collect count=4
	sm_q_run
	sn_destroy "$other"

	# A loop device over a block device (which the loop driver does not
	# open exclusively): that device cannot be its storage.
	ft_loop_file "$loop"
	upper=$REPLY
	ft_attach "$upper"
	sm_q "SNAPSHOT_CREATE with $loop, the backing device of $upper" "$SM_UUID" create "$loop" 0
	sm_q_run
	id=${SM_OUT[0]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $upper, whose backing device is the storage" EINVAL add "$upper" "$id"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	sm_q_run
	SN_IDS=()
	sp_log_names "$upper" "SNAPSHOTADD of $upper"
	sm_log_clean
}

test_placement_one_storage_file_for_two_snapshots() {
	sm_begin
	sn_tmpfs 32M
	local store=$REPLY first
	: >"$store/diff"
	ln "$store/diff" "$store/link"
	sm_q "SNAPSHOT_CREATE with $store/diff" "$SM_UUID" create "$store/diff" 0
	sm_q "a second SNAPSHOT_CREATE with $store/diff" EBUSY create "$store/diff" 0
	sm_q "SNAPSHOT_CREATE with a hard link to $store/diff" EBUSY create "$store/link" 0
	sm_q "SNAPSHOT_CREATE with $store, a directory (a new file)" "$SM_UUID" create "$store" 0
	sm_q "SNAPSHOT_COLLECT" "2 $SM_UUID $SM_UUID" collect count=4
	sm_q_run
	first=${SM_OUT[0]}
	SN_IDS+=("$first" "${SM_OUT[3]}")
	grep -q "overlaps the storage of another snapshot" <(dmesg | tail -n +$((SM_LOG0 + 1))) ||
		fail "no refusal of the shared storage in the kernel log"
	# Once the first snapshot is gone, the file can be used again.
	sn_destroy "$first"
	sm_q "SNAPSHOT_CREATE with $store/diff after destroy" "$SM_UUID" create "$store/diff" 0
	sm_q_run
	SN_IDS+=("${SM_OUT[0]}")
	sn_destroy "${SM_OUT[0]}"
	sm_log_clean
}

test_placement_storage_on_dm_over_member() {
	sm_begin
	ft_loop 64M
	local m=$REPLY id answers=0
	sn_fill "$m" 1
	# A file system on a dm-linear device over the second half of the member.
	sm_dm sp-upper "0 65536 linear $m 65536"
	mkfs.ext4 -q -F /dev/mapper/sp-upper
	mkdir "$FT_DIR/upper"
	ft_mount ext4 /dev/mapper/sp-upper "$FT_DIR/upper"
	: >"$FT_DIR/upper/diff"
	ft_attach "$m"
	# Small growth steps, so that copies make the file system grow the
	# file while writes to the member are held.
	sm_param diff_storage_minimum 2048
	sm_q "SNAPSHOT_CREATE on a file system over $m" "$SM_UUID" create "$FT_DIR/upper/diff" 32768
	sm_q_run
	id=${SM_OUT[0]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $m, below the storage" EINVAL add "$m" "$id"
	sm_q "SNAPSHOT_TAKE of the snapshot without members" ENODEV take "$id"
	sm_q_run || answers=1
	# Had it been accepted, writes to the member would wait for ever.
	sp_within 60 "a write to the first half of $m" "$TAGBLK" write "$m" --gen 2 --len 16M --order seq
	sp_within 60 "a write to a file on the storage's file system" \
		dd if=/dev/zero of="$FT_DIR/upper/data" bs=1M count=4 conv=fsync status=none
	sn_verify "$m" 2 "$m after the write" --len 16M
	[ "$answers" = 0 ] || fail "a member below its storage was accepted (above)"
	sp_log_names "$m" "SNAPSHOTADD of $m"
	sn_destroy "$id"
	umount "$FT_DIR/upper"
	sm_log_clean
}

test_placement_storage_on_a_loop_device_over_a_member_file() {
	sm_begin
	ft_loop 96M
	local m=$REPLY inner id
	mkfs.ext4 -q -F "$m"
	mkdir "$FT_DIR/m" "$FT_DIR/inner"
	ft_mount ext4 "$m" "$FT_DIR/m"
	truncate -s 48M "$FT_DIR/m/inner.img"
	ft_loop_file "$FT_DIR/m/inner.img"
	inner=$REPLY
	mkfs.ext4 -q -F "$inner"
	ft_mount ext4 "$inner" "$FT_DIR/inner"
	: >"$FT_DIR/inner/diff"
	ft_attach "$m"
	ft_attach "$inner"
	sm_q "SNAPSHOT_CREATE on a loop device over a file of $m" "$SM_UUID" create "$FT_DIR/inner/diff" 0
	sm_q_run
	id=${SM_OUT[0]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $m, below the storage through $inner" EINVAL add "$m" "$id"
	sm_q "SNAPSHOTADD of $inner, below the storage" EINVAL add "$inner" "$id"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	sm_q_run
	SN_IDS=()
	sp_log_names "$m" "SNAPSHOTADD of $m"
	umount "$FT_DIR/inner"
	losetup -d "$inner"
	sm_log_clean
}

test_placement_partitions_of_the_member_disk() {
	sm_begin
	ft_image 64M
	local img=$REPLY disk p1 p2 id
	# p1: MiB 1..17, p2: MiB 18..34.
	ft_write_mbr "$img" 2048 32768
	sm_mbr_entry "$img" 1 36864 32768
	ft_loop_file "$img" -P
	disk=$REPLY
	p1=${disk}p1
	p2=${disk}p2
	ft_wait 5 test -b "$p2" || fail "$p2 did not appear after losetup -P"
	ft_settle
	mkfs.ext4 -q -F "$p2"
	mkdir "$FT_DIR/p2"
	ft_mount ext4 "$p2" "$FT_DIR/p2"
	: >"$FT_DIR/p2/diff"
	sm_dm sp-p1 "0 32768 linear $p1 0"
	ft_attach "$disk"
	ft_attach "$p1"
	ft_attach "$p2"
	# A file on a partition: its disk and the partition are refused, the
	# other partition is not.
	sm_q "SNAPSHOT_CREATE on $p2" "$SM_UUID" create "$FT_DIR/p2/diff" 0
	sm_q_run
	id=${SM_OUT[0]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $disk, the disk of the storage's partition" EINVAL add "$disk" "$id"
	sm_q "SNAPSHOTADD of $p2, the storage's partition" EINVAL add "$p2" "$id"
	sm_q "SNAPSHOTADD of $p1, the other partition" "" add "$p1" "$id"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	# A block device over a partition: the partition and its disk are
	# refused.
	sm_q "SNAPSHOT_CREATE on dm over $p1" "$SM_UUID" create /dev/mapper/sp-p1 0
	sm_q_run
	id=${SM_OUT[4]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $disk, below the storage" EINVAL add "$disk" "$id"
	sm_q "SNAPSHOTADD of $p1, below the storage" EINVAL add "$p1" "$id"
	sm_q "SNAPSHOTADD of $p2, beside the storage" "" add "$p2" "$id"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	sm_q_run
	SN_IDS=()
	sm_log_clean
}

# A storage device is written with the module's own bios, which no filter
# sees: a partition of a member of another snapshot as storage would
# change under that snapshot without a copy. Refused in either order. (The
# member itself as storage is refused already: its data would lie in the
# storage.)
test_placement_storage_on_a_partition_of_a_member_of_another_snapshot() {
	sm_begin
	local disk p1 id other store
	sm_disk_p1 64M 65536
	disk=$SM_DISK
	p1=$SM_P1
	ft_attach "$disk"
	sn_tmpfs 64M
	store=$REPLY
	sm_q "SNAPSHOT_CREATE on tmpfs" "$SM_UUID" create "$store" 0
	sm_q_run
	id=${SM_OUT[0]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $disk" "" add "$disk" "$id"
	sm_q "SNAPSHOT_CREATE with $disk, a member of another snapshot" EINVAL create "$disk" 0
	sm_q "SNAPSHOT_CREATE with $p1, a partition of a member of another snapshot" EBUSY create "$p1" 0
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	sm_q "SNAPSHOT_CREATE on tmpfs" "$SM_UUID" create "$store" 0
	sm_q "SNAPSHOT_CREATE with $p1" "$SM_UUID" create "$p1" 0
	sm_q_run
	id=${SM_OUT[4]}
	other=${SM_OUT[5]}
	SN_IDS=("$id" "$other")
	sm_q "SNAPSHOTADD of $disk, whose partition is the storage of another snapshot" EBUSY add "$disk" "$id"
	sm_q "SNAPSHOT_DESTROY of the snapshot whose storage is $p1" "" destroy "$other"
	sm_q "SNAPSHOTADD of $disk once that snapshot is gone" "" add "$disk" "$id"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	sm_q_run
	SN_IDS=()
	grep -q "(a partition of) a member of another snapshot, which would not see its writes: refused" \
		<(dmesg | tail -n +$((SM_LOG0 + 1))) || fail "no refusal of the partition as storage in the kernel log"
	grep -q "the device holds the difference storage of another snapshot: refused" \
		<(dmesg | tail -n +$((SM_LOG0 + 1))) || fail "no refusal of the disk as a member in the kernel log"
	sm_log_clean
}

# sp_unmarked DEV FROM: the blocks of DEV's change map, from byte FROM on,
# that hold data (anything but zeros) yet are not marked in the write copy,
# as "unmarked=[...] data=N", N the number of blocks holding data.
sp_unmarked() {
	local bs map
	bs=$("$BLKSNAP" cbtinfo -d "$1" | sed -n 's/^block_size=//p')
	map=$(ft_devdir "$1")/write_map
	# Read below the page cache: the copies were written with bios.
	dd if="$1" of="$FT_DIR/content" bs="$bs" iflag=direct status=none
	python3 - "$FT_DIR/content" "$2" "$bs" "$map" <<'PY'
import sys
path, first, bs, map_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
marks = open(map_path, "rb").read()
data, unmarked = 0, []
with open(path, "rb") as f:
    f.seek(first // bs * bs)
    block = first // bs
    zero = bytes(bs)
    while chunk := f.read(bs):
        if chunk != zero[: len(chunk)]:
            data += 1
            if marks[block] == 0:
                unmarked.append(block)
        block += 1
print(f"unmarked={unmarked[:8]} data={data}")
PY
}

# A block device under change tracking, or a partition of one, may hold
# another snapshot's difference storage: the copies written there change
# it, so its change map must show them, or an incremental backup of it
# would miss them.
test_placement_storage_under_change_tracking_has_the_copies_marked() {
	sm_begin
	local member store disk p1 storage from id out
	ft_loop 64M
	member=$REPLY
	ft_loop 64M
	store=$REPLY
	sm_disk_p1 64M 65536
	disk=$SM_DISK
	p1=$SM_P1
	ft_attach "$store"
	ft_attach "$disk"
	for storage in "$store" "$p1"; do
		dd if=/dev/urandom of="$member" bs=1M count=16 oflag=direct status=none
		sn_create "$storage" 64M "$member"
		id=$REPLY
		sn_take "$id"
		# Every chunk written is copied: 16 MiB of data to the storage.
		dd if=/dev/urandom of="$member" bs=1M count=16 oflag=direct status=none
		sn_destroy "$id"
		if [ "$storage" = "$store" ]; then
			out=$(sp_unmarked "$store" 0)
		else
			# The disk's map, from the partition on (its table was
			# written before the attach).
			from=$(($(cat "/sys/class/block/${p1##*/}/start") * 512))
			out=$(sp_unmarked "$disk" "$from")
		fi
		[[ $out =~ ^unmarked=\[\]\ data=([0-9]+)$ ]] ||
			fail "copies on $storage left unmarked in its change map: $out"
		[ "${BASH_REMATCH[1]}" -ge 256 ] ||
			fail "only ${BASH_REMATCH[1]} blocks of $storage hold copies, not the 16 MiB written"
	done
}

# Two snapshots whose difference storages each lie on a member of the other
# would copy each other's copies without end: the SNAPSHOTADD that closes
# the ring is refused with EBUSY, the same member is taken once the other
# snapshot is gone, and a storage on another snapshot's member alone stays
# allowed.
test_placement_storages_on_each_others_members_are_refused() {
	sm_begin
	local a b ida idb
	ft_loop 64M
	a=$REPLY
	ft_loop 64M
	b=$REPLY
	mkfs.ext4 -q -F "$a"
	mkfs.ext4 -q -F "$b"
	mkdir "$FT_DIR/a" "$FT_DIR/b"
	ft_mount ext4 "$a" "$FT_DIR/a"
	ft_mount ext4 "$b" "$FT_DIR/b"
	: >"$FT_DIR/a/diff"
	: >"$FT_DIR/b/diff"
	ft_attach "$a"
	ft_attach "$b"
	sm_q "SNAPSHOT_CREATE of A, its storage on $b" "$SM_UUID" create "$FT_DIR/b/diff" 0
	sm_q "SNAPSHOT_CREATE of B, its storage on $a" "$SM_UUID" create "$FT_DIR/a/diff" 0
	sm_q_run
	ida=${SM_OUT[0]}
	idb=${SM_OUT[1]}
	SN_IDS+=("$ida" "$idb")
	sm_q "SNAPSHOTADD of $b to B (A's storage on B's member)" "" add "$b" "$idb"
	sm_q "SNAPSHOTADD of $a to A, closing the ring" EBUSY add "$a" "$ida"
	sm_q "SNAPSHOT_DESTROY of B" "" destroy "$idb"
	sm_q "SNAPSHOTADD of $a to A once B is gone" "" add "$a" "$ida"
	sm_q "SNAPSHOT_DESTROY of A" "" destroy "$ida"
	sm_q_run
	SN_IDS=()
	grep -q "storages of snapshots would lie on each other's members: refused" \
		<(dmesg | tail -n +$((SM_LOG0 + 1))) || fail "no refusal of the ring in the kernel log"
	sm_log_clean
}
