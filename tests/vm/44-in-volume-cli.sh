# In-volume difference storage through the command line: snapshot_create
# --in-volume-size on the member's own ext4, whose image equals the disk at
# the take except the storage file's extents, which read as zeroes;
# `blksnap backup` without --file on a mounted ext4 and a mounted xfs (the
# backup checks clean, holds the file tree, and the storage file is gone
# afterwards), an incremental backup after it that copies the storage's
# extents again, a whole-disk member whose partition holds the file system,
# SIGINT and SIGTERM during such a backup (the file is removed), and the
# refusals: no mounted file system, no room, an existing file, a file
# system other than ext4 or xfs, a size below the minimum.
# Uses the ft_* helpers of 10-filter.sh, the sn_* helpers of 30-snapshot.sh,
# sm_begin and sm_param of 31-snapshot-more.sh and the bk_* helpers of
# 40-backup.sh.
# shellcheck shell=bash

# diff_storage_minimum for these tests, in sectors: 8 MiB, so that small
# loop disks can hold in-volume storage.
IVC_MINIMUM=16384

# --- Helpers (prefixed ivc_; those of 38-in-volume.sh are iv_) -----------

# ivc_begin: starts a test like sm_begin, with diff_storage_minimum at
# $IVC_MINIMUM until it ends.
ivc_begin() {
	sm_begin
	sm_param diff_storage_minimum "$IVC_MINIMUM"
}

# ivc_fs FSTYPE DEV DIR: makes a new FSTYPE file system on DEV, mounts it on
# DIR and writes the tree of ft_make_tree to DIR/t; its checksums, relative
# to DIR, go to $FT_DIR/sums.
ivc_fs() {
	local fstype=$1 dev=$2 dir=$3 opts=(-f)
	command -v "mkfs.$fstype" >/dev/null || skip "mkfs.$fstype is not installed"
	# No lazy init: no ext4 thread writes behind the test after the take.
	[ "$fstype" != ext4 ] || opts=(-F -E lazy_itable_init=0,lazy_journal_init=0)
	"mkfs.$fstype" -q "${opts[@]}" "$dev" >"$FT_DIR/mkfs.log" 2>&1 ||
		{ cat "$FT_DIR/mkfs.log"; fail "mkfs.$fstype failed"; }
	mkdir -p "$dir"
	ft_mount "$fstype" "$dev" "$dir"
	ft_make_tree "$dir/t"
	sync
	ft_sums "$dir" t >"$FT_DIR/sums"
}

# ivc_extents ID: the in-volume extents of snapshot ID in the module's
# debugfs list, one "START COUNT" line each (sectors) -> $FT_DIR/extents;
# there must be at least one.
ivc_extents() {
	awk -v id="$1" '
		$1 == "snapshot" { here = ($2 == id) }
		here && $1 == "in_volume_extent" {
			for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			print v["start"], v["count"]
		}' /sys/kernel/debug/blksnap/snapshots/list >"$FT_DIR/extents"
	[ -s "$FT_DIR/extents" ] || fail "no in_volume_extent line for $1: $(cat /sys/kernel/debug/blksnap/snapshots/list)"
}

# ivc_used: the sectors of its storage the one snapshot uses, as status
# tells.
ivc_used() {
	"$BLKSNAP" status --json | sed -n 's/.*"used_sectors":\([0-9]*\).*/\1/p'
}

# ivc_stored: whether the one snapshot stored a copy. The store worker does
# it after the write that needed the copy went on.
ivc_stored() {
	local n
	n=$(ivc_used)
	[ "${n:-0}" -gt 0 ]
}

# ivc_extents_sectors: the sectors of $FT_DIR/extents together.
ivc_extents_sectors() {
	awk '{ n += $2 } END { print n + 0 }' "$FT_DIR/extents"
}

# ivc_punch FILE: makes the extents of $FT_DIR/extents holes of FILE, which
# then read as zeroes.
ivc_punch() {
	local start count
	while read -r start count; do
		fallocate -p -o $((start * 512)) -l $((count * 512)) "$1"
	done <"$FT_DIR/extents"
}

# ivc_no_storage_file DIR WHAT: no .blksnap-diff-* file is left in DIR.
ivc_no_storage_file() {
	! compgen -G "$1/.blksnap-diff-*" >/dev/null ||
		fail "$(ls -a "$1"/.blksnap-diff-*) is left after $2"
}

# ivc_want_size DIR DEV...: the size the backup rule gives in-volume
# storage for these devices when the file system of DIR has room: 10 % of
# their bytes, at least the minimum, in whole blocks of that file system.
ivc_want_size() {
	local total=0 d want bs
	bs=$(stat -f -c %s "$1")
	shift
	for d in "$@"; do
		total=$((total + $(blockdev --getsize64 "$d")))
	done
	want=$((total / 10))
	[ "$want" -ge $((IVC_MINIMUM * 512)) ] || want=$((IVC_MINIMUM * 512))
	echo $(((want + bs - 1) / bs * bs))
}

# ivc_storage_note ERR DEV MNT: the stderr of a backup without --file names
# the in-volume storage it made on MNT, of the size the rule gives DEV ->
# $REPLY (the file).
ivc_storage_note() {
	local line
	line=$(grep '^blksnap: difference storage: ' "$1") ||
		fail "no line about the difference storage on stderr: $(cat "$1")"
	[[ $line =~ ^blksnap:\ difference\ storage:\ ([0-9]+)\ bytes\ of\ in-volume\ storage\ in\ (.*/\.blksnap-diff-[0-9a-f]{16}),\ on\ the\ file\ system\ of\ (.*)$ ]] ||
		fail "unexpected line about the storage: $line"
	expect_eq "size of the in-volume storage" "$(ivc_want_size "$3" "$2")" "${BASH_REMATCH[1]}"
	expect_eq "directory of the in-volume storage" "$3" "$(dirname "${BASH_REMATCH[2]}")"
	expect_eq "device of the in-volume storage" "$2" "${BASH_REMATCH[3]}"
	REPLY=${BASH_REMATCH[2]}
}

# ivc_check_backup FSTYPE OUT STORE WHAT: the backup file OUT checks clean
# (after its log is replayed, for xfs), mounts read-only, holds the tree
# of $FT_DIR/sums, and holds the in-volume storage file STORE (its name
# under the mount point) as zeroes.
ivc_check_backup() {
	local fstype=$1 out=$2 store=$3 what=$4 mnt=$FT_DIR/out-mnt loop= opts=ro,noload
	bk_sums_ok "$out" verify
	if [ "$fstype" = ext4 ]; then
		fsck.ext4 -fn "$out" >"$FT_DIR/fsck.log" 2>&1 ||
			{ tail -n 20 "$FT_DIR/fsck.log"; fail "fsck.ext4 -fn finds $what inconsistent"; }
	else
		# The image of a frozen xfs holds its log: a mount replays it,
		# then the file system must repair clean (as sn_xfs_check).
		ft_loop_file "$out"
		loop=$REPLY
		sn_mount xfs "$loop" "$mnt" nouuid
		sn_umount "$mnt"
		xfs_repair -n "$loop" >"$FT_DIR/fsck.log" 2>&1 ||
			{ tail -n 20 "$FT_DIR/fsck.log"; fail "xfs_repair -n finds $what inconsistent"; }
		opts=ro,norecovery,nouuid
	fi
	sn_mount "$fstype" "${loop:-$out}" "$mnt" "$opts"
	ft_verify "$mnt" "$FT_DIR/sums" "the tree in $what"
	[ -f "$mnt/$store" ] || fail "$what does not hold the storage file $store"
	cmp -n "$(stat -c %s "$mnt/$store")" "$mnt/$store" /dev/zero ||
		fail "the storage file in $what does not read as zeroes"
	sn_umount "$mnt"
}

# ivc_backup_without_file FSTYPE SIZE: backs up a mounted FSTYPE loop disk
# of SIZE without --file while files are written to it, and checks the
# backup, the storage file and the snapshot are gone. Leaves the device in
# $IVC_DEV, the mount in $IVC_MNT and the backup in $IVC_OUT.
ivc_backup_without_file() {
	local fstype=$1 size=$2 pid rc=0 store i
	ivc_begin
	ft_loop "$size"
	IVC_DEV=$REPLY
	IVC_MNT=$FT_DIR/mnt
	IVC_OUT=$FT_DIR/backup.img
	ivc_fs "$fstype" "$IVC_DEV" "$IVC_MNT"
	timeout 900 "$BLKSNAP" backup -d "$IVC_DEV" -o "$IVC_OUT" >"$FT_DIR/b.out" 2>"$FT_DIR/b.err" &
	pid=$!
	SN_PIDS+=("$pid")
	# Written while the backup copies: copies go to the in-volume storage.
	ft_wait 120 test -e "$IVC_OUT.partial" || fail "no copy began in 120 s: $(cat "$FT_DIR/b.err")"
	for i in 1 2 3 4; do
		head -c 512K /dev/urandom >"$IVC_MNT/after-$i"
		sync "$IVC_MNT/after-$i"
	done
	rm -rf "$IVC_MNT/t/small"
	sync
	wait "$pid" || rc=$?
	expect_eq "status of the backup (stderr: $(cat "$FT_DIR/b.err"))" 0 "$rc"
	ivc_storage_note "$FT_DIR/b.err" "$IVC_DEV" "$IVC_MNT"
	store=$(basename "$REPLY")
	expect_eq "stderr lines of the backup" 1 "$(wc -l <"$FT_DIR/b.err")"
	expect_eq "mode of the backup" full "$(bk_field "$FT_DIR/b.out" mode)"
	expect_eq "bytes copied" "$(blockdev --getsize64 "$IVC_DEV")" "$(bk_field "$FT_DIR/b.out" copied)"
	bk_no_snapshot "the backup"
	ivc_no_storage_file "$IVC_MNT" "the backup"
	ivc_check_backup "$fstype" "$IVC_OUT" "$store" "the backup of $fstype"
	# The original holds the files written during the backup.
	for i in 1 2 3 4; do
		expect_eq "size of after-$i" 524288 "$(stat -c %s "$IVC_MNT/after-$i")"
	done
	IVC_STORE=$store
}

# --- Tests ------------------------------------------------------------------

test_in_volume_cli_snapshot_create_image_is_the_disk_but_the_file() {
	ivc_begin
	ft_loop 128M
	local dev=$REPLY mnt=$FT_DIR/mnt file copy=$FT_DIR/copy.img id img out
	ivc_fs ext4 "$dev" "$mnt"
	file=$mnt/.diff
	out=$("$BLKSNAP" snapshot_create -f "$file" --in-volume-size 16M -d "$dev")
	sn_uuid_ok "$out" || fail "snapshot_create printed '$out', not one UUID"
	id=$out
	SN_IDS+=("$id")
	expect_eq "mode of the storage file" 600 "$(stat -c %a "$file")"
	expect_eq "size of the storage file" $((16 << 20)) "$(stat -c %s "$file")"
	ft_expect_ge "allocated bytes of the storage file" $((16 << 20)) "$(($(stat -c %b "$file") * $(stat -c %B "$file")))"
	"$BLKSNAP" status >"$FT_DIR/status.txt"
	grep -q "in-volume $(sn_devnum "$dev") ino $(stat -c %i "$file")" "$FT_DIR/status.txt" ||
		fail "status does not show the in-volume storage: $(cat "$FT_DIR/status.txt")"
	# The copy of the disk at the take: the file system frozen from before
	# the copy until after the take, so nothing changes in between; read
	# direct, since the device's page cache may hold blocks from before
	# the file system wrote them (the file data does not go through it).
	fsfreeze -f "$mnt"
	dd if="$dev" of="$copy" bs=1M iflag=direct status=none conv=sparse ||
		{ fsfreeze -u "$mnt"; fail "copying the disk failed"; }
	sn_take "$id" || { fsfreeze -u "$mnt"; return 1; }
	fsfreeze -u "$mnt"
	sn_image "$dev"
	img=$REPLY
	# Written after the take: the copies land in the storage file.
	head -c 4M /dev/urandom >"$mnt/after"
	rm -rf "$mnt/t/big"
	sync
	ft_wait 60 ivc_stored || fail "the in-volume storage holds no copies after writes ($(ivc_used))"
	ivc_extents "$id"
	expect_eq "sectors of the extents" 32768 "$(ivc_extents_sectors)"
	"$BLKSNAP" status --json | grep "\"kind\":\"in-volume\".*\"extents\":\[{\"start_sector\":$(head -n 1 "$FT_DIR/extents" | cut -d' ' -f1)," >/dev/null ||
		fail "status --json does not show the extents: $("$BLKSNAP" status --json)"
	ivc_punch "$copy"
	bk_verify "$copy" "$img" "the image against the disk at the take with the storage's extents zeroed"
	fsck.ext4 -fn "$img" >"$FT_DIR/fsck.log" 2>&1 || { tail -n 20 "$FT_DIR/fsck.log"; fail "fsck of the image failed"; }
	sn_mount ext4 "$img" "$FT_DIR/image" ro,noload
	ft_verify "$FT_DIR/image" "$FT_DIR/sums" "the tree in the image"
	[ ! -e "$FT_DIR/image/after" ] || fail "the image shows a file written after the take"
	sn_umount "$FT_DIR/image"
	sn_destroy "$id"
	# The file stays after the destroy, an ordinary file again.
	[ -f "$file" ] || fail "the storage file is gone after the destroy"
	rm "$file" || fail "the storage file cannot be removed after the destroy"
}

test_in_volume_cli_backup_without_file_on_ext4() {
	ivc_backup_without_file ext4 128M
	local old=$IVC_STORE size rc=0 store
	size=$(ivc_want_size "$IVC_MNT" "$IVC_DEV")
	# Nothing written since but the storage's extents, which the backup
	# marked as changed: an incremental backup copies at least them (in
	# new in-volume storage), and the result is still the file system.
	head -c 64K /dev/urandom >"$IVC_MNT/later"
	sync
	ft_sums "$IVC_MNT" t later >"$FT_DIR/sums"
	timeout 600 "$BLKSNAP" backup -d "$IVC_DEV" -o "$IVC_OUT" -I >"$FT_DIR/i.out" 2>"$FT_DIR/i.err" || rc=$?
	expect_eq "status of the incremental backup (stderr: $(cat "$FT_DIR/i.err"))" 0 "$rc"
	expect_eq "mode of the incremental backup" incremental "$(bk_field "$FT_DIR/i.out" mode)"
	ft_expect_ge "bytes copied by the incremental backup" "$size" "$(bk_field "$FT_DIR/i.out" copied)"
	ivc_storage_note "$FT_DIR/i.err" "$IVC_DEV" "$IVC_MNT"
	store=$(basename "$REPLY")
	[ "$store" != "$old" ] || fail "the storage file has the same name twice: $store"
	bk_no_snapshot "the incremental backup"
	ivc_no_storage_file "$IVC_MNT" "the incremental backup"
	ivc_check_backup ext4 "$IVC_OUT" "$store" "the incremental backup of ext4"
}

test_in_volume_cli_backup_without_file_on_xfs() {
	# mkfs.xfs refuses file systems under 300 MiB.
	ivc_backup_without_file xfs 320M
}

test_in_volume_cli_backup_of_a_whole_disk_with_the_fs_on_a_partition() {
	ivc_begin
	local disk part mnt=$FT_DIR/mnt out=$FT_DIR/disk.img rc=0 store
	ft_image 96M
	ft_write_mbr "$REPLY" 2048 $((80 << 11))
	ft_loop_file "$REPLY" -P
	disk=$REPLY
	part=${disk}p1
	ft_wait 5 test -b "$part" || fail "$part did not appear after losetup -P"
	# Not recreated under mkfs and mount by udev's re-read after losetup.
	ft_hold "$part"
	ivc_fs ext4 "$part" "$mnt"
	timeout 600 "$BLKSNAP" backup -d "$disk" -o "$out" >"$FT_DIR/b.out" 2>"$FT_DIR/b.err" || rc=$?
	expect_eq "status of the backup (stderr: $(cat "$FT_DIR/b.err"))" 0 "$rc"
	ivc_storage_note "$FT_DIR/b.err" "$disk" "$mnt"
	store=$(basename "$REPLY")
	bk_no_snapshot "the backup"
	ivc_no_storage_file "$mnt" "the backup"
	bk_sums_ok "$out" verify
	# The partition of the backup is the file system. The take froze the
	# whole disk, not the file system on its partition: the image is as
	# after a crash, and the storage file, made just before, may be only
	# in the journal. A read-write mount replays it, then all must be
	# there and check clean.
	ft_loop_file "$out" -P
	ft_wait 5 test -b "${REPLY}p1" || fail "${REPLY}p1 did not appear"
	ft_hold "${REPLY}p1"
	sn_mount ext4 "${REPLY}p1" "$FT_DIR/out-mnt" rw
	ft_verify "$FT_DIR/out-mnt" "$FT_DIR/sums" "the tree in the backup's partition"
	[ -f "$FT_DIR/out-mnt/$store" ] || fail "the backup does not hold the storage file $store"
	sn_umount "$FT_DIR/out-mnt"
	fsck.ext4 -fn "${REPLY}p1" >"$FT_DIR/fsck.log" 2>&1 ||
		{ tail -n 20 "$FT_DIR/fsck.log"; fail "fsck.ext4 -fn finds the backup's partition inconsistent"; }
}

test_in_volume_cli_refusals() {
	ivc_begin
	local dev mnt=$FT_DIR/mnt tmp rc=0 err
	ft_loop 64M
	dev=$REPLY

	# No file system mounted from the device: backup asks for --file, and
	# leaves nothing behind (not even the filter).
	sn_expect_error "" "a backup of an unmounted device without --file" \
		"$BLKSNAP" backup -d "$dev" -o "$FT_DIR/x.img"
	err=$(cat "$FT_DIR/err")
	[[ $err == *"no --device holds a mounted, writable ext4 or xfs file system; give the difference storage with --file"* ]] ||
		fail "unexpected message: $err"
	[ ! -e "$FT_DIR/x.img" ] && [ ! -e "$FT_DIR/x.img.partial" ] || fail "a backup file was made"
	bk_no_snapshot "the refused backup"
	sm_unfiltered "$dev" || fail "the refused backup attached the filter"

	# Mounted read-only: the same.
	ivc_fs ext4 "$dev" "$mnt"
	mount -o remount,ro "$mnt"
	sn_expect_error "" "a backup of a read-only mount without --file" \
		"$BLKSNAP" backup -d "$dev" -o "$FT_DIR/x.img"
	grep -q "give the difference storage with --file" "$FT_DIR/err" || fail "unexpected message: $(cat "$FT_DIR/err")"
	mount -o remount,rw "$mnt"

	# No room: half of the free space is below the minimum.
	sm_param diff_storage_minimum $((64 << 11))
	sn_expect_error "" "a backup without room for in-volume storage" \
		"$BLKSNAP" backup -d "$dev" -o "$FT_DIR/x.img"
	err=$(cat "$FT_DIR/err")
	[[ $err == *"$mnt (on $dev) has no room for it: half of its free space"*"diff_storage_minimum); give the difference storage with --file"* ]] ||
		fail "unexpected message: $err"
	ivc_no_storage_file "$mnt" "the backup without room"
	sm_param diff_storage_minimum "$IVC_MINIMUM"

	# snapshot_create --in-volume-size: a size below the minimum, an
	# existing file, another file system; nothing is created or left.
	sn_expect_error "" "snapshot_create with a size below the minimum" \
		"$BLKSNAP" snapshot_create -f "$mnt/d" -s 4M -d "$dev"
	grep -q "is below the module's diff_storage_minimum, $((IVC_MINIMUM * 512)) bytes" "$FT_DIR/err" ||
		fail "unexpected message: $(cat "$FT_DIR/err")"
	[ ! -e "$mnt/d" ] || fail "$mnt/d was created"
	echo data >"$mnt/d"
	sn_expect_error "" "snapshot_create over an existing file" \
		"$BLKSNAP" snapshot_create -f "$mnt/d" -s 8M -d "$dev"
	grep -q "exists already" "$FT_DIR/err" || fail "unexpected message: $(cat "$FT_DIR/err")"
	expect_eq "the existing file" data "$(cat "$mnt/d")"
	sn_tmpfs 64M
	tmp=$REPLY
	sn_expect_error "" "snapshot_create on tmpfs" \
		"$BLKSNAP" snapshot_create -f "$tmp/d" -s 8M -d "$dev"
	grep -q "it is on tmpfs, and in-volume storage must be on ext4 or xfs" "$FT_DIR/err" ||
		fail "unexpected message: $(cat "$FT_DIR/err")"
	[ ! -e "$tmp/d" ] || fail "$tmp/d is left behind"
	# --limit does not go with it.
	"$BLKSNAP" snapshot_create -f "$mnt/e" -s 8M -l 16M -d "$dev" 2>"$FT_DIR/err" && rc=0 || rc=$?
	expect_eq "status of --in-volume-size with --limit" 1 "$rc"
	grep -q -- "--limit" "$FT_DIR/err" || fail "unexpected message: $(cat "$FT_DIR/err")"
	sn_collect
	expect_eq "snapshots after the refusals" "" "$REPLY"
}

test_in_volume_cli_backup_interrupted_removes_the_file() {
	ivc_begin
	local dev mnt=$FT_DIR/mnt out=$FT_DIR/big.img pid rc=0 err sig
	# Big enough for the copy to take seconds, as in 40-backup.
	ft_loop 256M
	dev=$REPLY
	ivc_fs ext4 "$dev" "$mnt"
	for sig in INT TERM; do
		"$BLKSNAP" backup -d "$dev" -o "$out" >"$FT_DIR/int.out" 2>"$FT_DIR/int.err" &
		pid=$!
		SN_PIDS+=("$pid")
		ft_wait 60 test -e "$out.partial" || fail "no copy to $out.partial began in 60 s: $(cat "$FT_DIR/int.err")"
		compgen -G "$mnt/.blksnap-diff-*" >/dev/null || fail "no storage file in $mnt while the backup copies"
		kill -0 "$pid" 2>/dev/null || fail "the backup ended before the $sig: $(cat "$FT_DIR/int.out" "$FT_DIR/int.err")"
		kill -"$sig" "$pid"
		ft_wait 60 sn_exited "$pid" || fail "the backup still runs 60 s after $sig"
		rc=0
		wait "$pid" || rc=$?
		expect_eq "exit status after $sig" 1 "$rc"
		err=$(grep -v '^blksnap: difference storage: ' "$FT_DIR/int.err")
		expect_eq "error lines after $sig" 1 "$(wc -l <<<"$err")"
		[[ $err == *"interrupted by SIG$sig"*"was destroyed"* ]] ||
			fail "stderr after $sig does not name it and the destroyed snapshot: $err"
		bk_no_snapshot "the $sig"
		ivc_no_storage_file "$mnt" "the $sig"
		[ ! -e "$out" ] && [ ! -e "$out.partial" ] || fail "a backup file is left after the $sig"
	done
}
