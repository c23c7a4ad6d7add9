# Snapshots: point-in-time images under concurrent writes, filesystems
# snapshotted while mounted and written, two devices cut at one moment, the
# three kinds of difference storage, overflow, destroy while the image is in
# use, the error paths of the SNAPSHOT ioctls through the CLI, change
# tracking across takes, and the module reference a snapshot holds.
# Uses the ft_* helpers of 10-filter.sh, cbt_marked of 20-cbt.sh, and
# tagblk (tools/tagblk), which writes 4 KiB blocks tagged with their offset
# and a generation number and verifies them byte for byte.
# shellcheck shell=bash

TAGBLK=$BLKSNAP_ROOT/target/debug/tagblk
SN_IDS=()
SN_MOUNTS=()
SN_PIDS=()
SN_FDS=()

# --- Helpers (prefixed sn_; every test calls sn_begin first) ---------------

# Starts a test like ft_begin, and arranges for sn_cleanup to run on exit
# instead of ft_cleanup.
sn_begin() {
	SN_IDS=()
	SN_MOUNTS=()
	SN_PIDS=()
	SN_FDS=()
	ft_begin
	trap sn_cleanup EXIT
	[ -x "$TAGBLK" ] || fail "$TAGBLK is missing (cargo build -p tagblk)"
}

# Undoes what the test set up: background jobs, descriptors open on images,
# image mounts, then every snapshot (those the test created and any other
# that exists), then what ft_cleanup undoes (mounts of originals and of the
# storage, filters, loop devices, the scratch directory). Silent.
sn_cleanup() {
	set +e
	local i id
	for i in "${SN_PIDS[@]}"; do
		kill "$i"
		wait "$i"
	done >/dev/null 2>&1
	for i in "${SN_FDS[@]}"; do
		exec {i}<&-
	done >/dev/null 2>&1
	for ((i = ${#SN_MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${SN_MOUNTS[i]}" || umount -l "${SN_MOUNTS[i]}"
	done >/dev/null 2>&1
	for id in "${SN_IDS[@]}" $("$BLKSNAP" snapshot_collect 2>/dev/null); do
		timeout 60 "$BLKSNAP" snapshot_destroy -i "$id"
	done >/dev/null 2>&1
	ft_cleanup
}

# sn_devnum DEV: prints MAJOR:MINOR of DEV.
sn_devnum() {
	cat "/sys/class/block/${1##*/}/dev"
}

# sn_detach_held DEV: detaches loop device DEV, a member of a snapshot
# (losetup -d). The module holds its members open, so the detach is only
# marked for the last close (autoclear): DEV stays bound to its file.
sn_detach_held() {
	losetup -d "$1" || fail "losetup -d $1 failed"
	losetup "$1" >/dev/null 2>&1 || fail "$1 lost its backing file while a member of a snapshot"
	expect_eq "autoclear of $1 after losetup -d" 1 "$(cat "/sys/block/${1##*/}/loop/autoclear")"
}

# sn_loop_unbound DEV: whether loop device DEV has no backing file.
sn_loop_unbound() {
	! losetup "$1" >/dev/null 2>&1
}

# sn_wait_cleared DEV: the detach of DEV that sn_detach_held left pending
# happens once its snapshot is destroyed; its filter goes with it.
sn_wait_cleared() {
	ft_wait 10 sn_loop_unbound "$1" || fail "$1 still bound after its snapshot was destroyed"
	ft_wait 10 sm_unfiltered "$1" || fail "the filter of $1 stayed after it was cleared"
}

# sn_image_name DEV: prints the disk name of DEV's image, blksnap-MAJOR-MINOR
# (BLKSNAP_IMAGE_NAME, then DEV's device number joined by a dash).
sn_image_name() {
	local n
	n=$(sn_devnum "$1")
	echo "blksnap-${n/:/-}"
}

# sn_uuid_ok TEXT: whether TEXT is one lowercase 8-4-4-4-12 UUID.
sn_uuid_ok() {
	[[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]
}

# sn_create STORAGE LIMIT [DEV...]: creates a snapshot with the CLI, which
# must print only its UUID -> $REPLY.
sn_create() {
	local storage=$1 limit=$2 out d args=()
	shift 2
	for d in "$@"; do
		args+=(-d "$d")
	done
	out=$("$BLKSNAP" snapshot_create -f "$storage" -l "$limit" "${args[@]}")
	sn_uuid_ok "$out" || fail "snapshot_create printed '$out', not one UUID"
	SN_IDS+=("$out")
	REPLY=$out
}

# sn_take ID: takes the snapshot; the CLI prints nothing.
sn_take() {
	local out
	out=$(timeout 120 "$BLKSNAP" snapshot_take -i "$1")
	expect_eq "output of snapshot_take" "" "$out"
}

# sn_destroy ID: destroys the snapshot (within two minutes); the CLI
# prints nothing.
sn_destroy() {
	local out i keep=()
	out=$(timeout 120 "$BLKSNAP" snapshot_destroy -i "$1")
	expect_eq "output of snapshot_destroy" "" "$out"
	for i in "${SN_IDS[@]}"; do
		[ "$i" = "$1" ] || keep+=("$i")
	done
	SN_IDS=("${keep[@]}")
}

# sn_image DEV: the image of DEV's snapshot, as snapshot_info names it;
# it must be /dev/blksnap-MAJOR-MINOR of DEV and appear as a block device
# -> $REPLY.
sn_image() {
	local want out
	want=/dev/$(sn_image_name "$1")
	out=$("$BLKSNAP" snapshot_info -d "$1" -f image)
	expect_eq "snapshot_info -d $1 -f image" "$want" "$out"
	ft_wait 10 test -b "$want" || fail "$want did not appear"
	REPLY=$want
}

# sn_taken SIZE STORAGE LIMIT: a new loop device of SIZE holding generation
# 1 (-> $SN_DEV), attached, alone in a snapshot with that storage and limit,
# taken -> $REPLY (the snapshot's id).
sn_taken() {
	ft_loop "$1"
	SN_DEV=$REPLY
	sn_fill "$SN_DEV" 1
	ft_attach "$SN_DEV"
	sn_create "$2" "$3" "$SN_DEV"
	sn_take "$REPLY"
}

# sn_tmpfs SIZE: a tmpfs of SIZE mounted in the scratch directory -> $REPLY.
sn_tmpfs() {
	REPLY=$(mktemp -d "$FT_DIR/tmpfs.XXXXXX")
	mount -t tmpfs -o size="$1" tmpfs "$REPLY"
	FT_MOUNTS+=("$REPLY")
}

# sn_mount FSTYPE DEV DIR OPTIONS: mounts an image; sn_cleanup unmounts it.
sn_mount() {
	mkdir -p "$3"
	mount -t "$1" -o "$4" "$2" "$3"
	SN_MOUNTS+=("$3")
}

# sn_umount DIR: unmounts what sn_mount mounted.
sn_umount() {
	local m keep=()
	umount "$1"
	for m in "${SN_MOUNTS[@]}"; do
		[ "$m" = "$1" ] || keep+=("$m")
	done
	SN_MOUNTS=("${keep[@]}")
}

# sn_fill DEV GEN: writes generation GEN over all of DEV, fast.
sn_fill() {
	"$TAGBLK" write "$1" --gen "$2" --order seq --jobs 2 >/dev/null
}

# sn_verify DEV GEN WHAT [tagblk verify option...]: every block (of the
# range) of DEV holds generation GEN.
sn_verify() {
	local dev=$1 gen=$2 what=$3
	shift 3
	"$TAGBLK" verify "$dev" --gen "$gen" "$@" || fail "$what: $dev does not hold generation $gen $*"
}

# sn_expect_error ERRNO WHAT CMD...: CMD exits with status 1, prints
# nothing on stdout and one line on stderr, which names ERRNO (its
# strerror text) unless ERRNO is empty.
sn_expect_error() {
	local errno=$1 what=$2 rc=0 out err text
	shift 2
	out=$("$@" 2>"$FT_DIR/err") || rc=$?
	err=$(cat "$FT_DIR/err")
	expect_eq "exit status of $what" 1 "$rc"
	expect_eq "stdout of $what" "" "$out"
	[ -n "$err" ] || fail "$what printed nothing on stderr"
	expect_eq "stderr lines of $what" 1 "$(wc -l <<<"$err")"
	if [ -n "$errno" ]; then
		text=$(python3 -c 'import errno, os, sys; print(os.strerror(getattr(errno, sys.argv[1])))' "$errno")
		[[ $err == *"$text"* ]] || fail "$what: expected $errno ($text), got: $err"
	fi
}

# sn_wait_event ID EVENT TRIES: waits, one second per try, until the next
# events of snapshot ID include EVENT (corrupted or no_space); every
# answer is appended to $FT_DIR/events.
sn_wait_event() {
	local tries=$3 out
	while ((tries-- > 0)); do
		out=$("$BLKSNAP" snapshot_waitevent -i "$1" -t 1000) || return 1
		echo "$out" >>"$FT_DIR/events"
		if grep -qx "event=$2" <<<"$out"; then
			grep -qx 'result=ok' <<<"$out" || return 1
			grep -qE '^time=[0-9]+$' <<<"$out" || return 1
			return 0
		fi
	done
	return 1
}

# sn_block_written DEV BLOCK: whether 4 KiB block BLOCK of DEV is not all
# zeroes.
sn_block_written() {
	[ "$(dd if="$1" bs=4k skip="$2" count=1 iflag=direct status=none | tr -d '\0' | wc -c)" -gt 0 ]
}

# sn_collect: the UUIDs snapshot_collect prints (each followed by a space
# on its own line, then an empty line, as the upstream tool prints them),
# sorted -> $REPLY.
sn_collect() {
	local out
	out=$("$BLKSNAP" snapshot_collect) || fail "snapshot_collect failed"
	REPLY=$(awk 'NF { print $1 }' <<<"$out" | sort)
}

# sn_used DIR: prints the bytes used on the filesystem of DIR.
sn_used() {
	df --output=used -B1 "$1" | tail -n 1 | tr -d ' '
}

# sn_used_le DIR BYTES: whether the filesystem of DIR uses at most BYTES.
sn_used_le() {
	[ "$(sn_used "$1")" -le "$2" ]
}

# sn_exited PID: whether the process is gone.
sn_exited() {
	! kill -0 "$1" 2>/dev/null
}

# sn_lines_ge FILE N: whether FILE has at least N lines.
sn_lines_ge() {
	[ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]
}

# sn_fs_writer DIR LOG: until killed, writes files DIR/w/fN of random
# content, fsyncs each, then appends "SHA256  w/fN" to LOG.
sn_fs_writer() {
	local dir=$1 log=$2 i=0 data sum
	data=$(mktemp "$FT_DIR/writer.XXXXXX")
	mkdir -p "$dir/w"
	while :; do
		i=$((i + 1))
		head -c $((16384 + i * 4099)) /dev/urandom >"$data"
		sum=$(sha256sum <"$data")
		cp "$data" "$dir/w/f$i"
		sync "$dir/w/f$i"
		echo "${sum%% *}  w/f$i" >>"$log"
	done
}

# sn_xfs_check IMG: the image of a frozen xfs holds the log records of the
# freeze, so `xfs_repair -n` on the image itself reports the spurious
# counter differences it warns about. What a restore would do instead: copy
# the image, let a mount replay the log, then the copy must repair clean.
sn_xfs_check() {
	local copy=$FT_DIR/xfs-copy.img dir=$FT_DIR/xfs-copy
	dd if="$1" of="$copy" bs=1M status=none
	ft_loop_file "$copy"
	mkdir -p "$dir"
	mount -t xfs -o nouuid "$REPLY" "$dir"
	umount "$dir"
	xfs_repair -n "$REPLY"
}

# sn_fs_snapshot FSTYPE SIZE MOUNT-OPTIONS "CHECK-COMMAND" MKFS-COMMAND...:
# a snapshot of a mounted filesystem taken while files are being written
# and fsynced: the image checks clean, mounts read-only, holds the files
# written before the snapshot was created and every file fsynced before
# the take began, and none of the files begun after the take returned.
sn_fs_snapshot() {
	local fstype=$1 size=$2 mopts=$3 check
	read -ra check <<<"$4"
	shift 4
	command -v "$1" >/dev/null || skip "$1 is not installed"
	command -v "${check[0]}" >/dev/null || skip "${check[0]} is not installed"
	command -v xfs_repair >/dev/null || [ "$fstype" != xfs ] || skip "xfs_repair is not installed"
	sn_begin
	ft_loop "$size"
	local dev=$REPLY mnt=$FT_DIR/mnt imnt=$FT_DIR/image src=$FT_DIR/src
	local log=$FT_DIR/written sums=$FT_DIR/sums before=$FT_DIR/before-take
	local pid id img store n0 n1 n2 j
	"$@" "$dev" >"$FT_DIR/mkfs.log" 2>&1 || { cat "$FT_DIR/mkfs.log"; fail "$1 failed"; }
	mkdir "$mnt"
	ft_mount "$fstype" "$dev" "$mnt"
	ft_make_tree "$src/p1"
	cp -a "$src/p1" "$mnt/"
	sync
	ft_sums "$src" p1 >"$sums"

	ft_attach "$dev"
	sn_tmpfs 192M
	store=$REPLY
	sn_create "$store" 128M "$dev"
	id=$REPLY
	sn_fs_writer "$mnt" "$log" >"$FT_DIR/writer.out" 2>&1 &
	pid=$!
	SN_PIDS+=("$pid")
	ft_wait 60 sn_lines_ge "$log" 3 || fail "the writer wrote no files in 60 s"
	# Every file listed now was fsynced before the take began (only whole
	# lines: the writer may be appending one).
	n0=$(wc -l <"$log")
	head -n "$n0" "$log" >"$before"
	sn_take "$id"
	n1=$(wc -l <"$log")
	# Files f(n1+2)... are created after the take returned.
	ft_wait 60 sn_lines_ge "$log" $((n1 + 3)) || fail "the writer stalled after the take"
	kill "$pid"
	wait "$pid" || true
	n2=$(wc -l <"$log")
	echo "files fsynced before the take: $n0, when it returned: $n1, in all: $n2"

	sn_image "$dev"
	img=$REPLY
	"${check[@]}" "$img" >"$FT_DIR/check.log" 2>&1 || {
		tail -n 20 "$FT_DIR/check.log"
		fail "${check[*]} finds the image of the mounted $fstype inconsistent"
	}
	sn_mount "$fstype" "$img" "$imnt" "$mopts"
	ft_verify "$imnt" "$sums" "the files written before the snapshot, in the image"
	(cd "$imnt" && sha256sum -c --quiet "$before") ||
		fail "files fsynced before the take differ or are missing in the image"
	for ((j = n1 + 2; j <= n2; j++)); do
		[ ! -e "$imnt/w/f$j" ] || fail "w/f$j, created after the take, is in the image"
	done
	# The original has everything.
	head -n "$n2" "$log" >"$FT_DIR/all"
	(cd "$mnt" && sha256sum -c --quiet "$FT_DIR/all") || fail "the original lost files"
	ft_verify "$mnt" "$sums" "the files written before the snapshot, in the original"
	sn_umount "$imnt"
	sn_destroy "$id"
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy"
}

# sn_storage_cycle STORAGE LIMIT: on a new 64 MiB device holding
# generation 1, a snapshot with that storage is taken, 8 MiB at 16 MiB
# are overwritten with generation 2, and the image still holds generation
# 1 while the original holds both. Leaves the snapshot in place: its id is
# $REPLY, the device $SN_DEV, the image $SN_IMG.
sn_storage_cycle() {
	local id
	sn_taken 64M "$1" "$2"
	id=$REPLY
	sn_image "$SN_DEV"
	SN_IMG=$REPLY
	"$TAGBLK" write "$SN_DEV" --gen 2 --offset 16M --len 8M --jobs 2 --seed 5 >/dev/null
	sn_verify "$SN_IMG" 1 "the image after 8 MiB were overwritten"
	sn_verify "$SN_DEV" 2 "the overwritten part of the original" --offset 16M --len 8M
	sn_verify "$SN_DEV" 1 "the start of the original" --len 16M
	sn_verify "$SN_DEV" 1 "the end of the original" --offset 24M
	REPLY=$id
}

# --- Tests ------------------------------------------------------------------

test_snapshot_point_in_time_under_concurrent_writes() {
	sn_begin
	ft_loop 64M
	local dev=$REPLY store id img pid q out
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 256M
	store=$REPLY
	sn_create "$store" 160M "$dev"
	id=$REPLY
	out=$("$BLKSNAP" snapshot_info -d "$dev")
	expect_eq "snapshot_info before the take" "error_code=0
image=/dev/" "$out"
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	out=$("$BLKSNAP" snapshot_info -d "$dev")
	expect_eq "snapshot_info after the take" "error_code=0
image=$img" "$out"
	for q in --getsize64 --getss --getpbsz; do
		expect_eq "blockdev $q of the image" "$(blockdev "$q" "$dev")" "$(blockdev "$q" "$img")"
	done

	# Generation 2 over the whole device, four threads in random order,
	# while the image is read and checked.
	"$TAGBLK" write "$dev" --gen 2 --jobs 4 --seed 1 >"$FT_DIR/write.log" 2>&1 &
	pid=$!
	SN_PIDS+=("$pid")
	sn_verify "$img" 1 "the image while generation 2 is written"
	wait "$pid" || { cat "$FT_DIR/write.log"; fail "writing generation 2 failed"; }
	sn_verify "$img" 1 "the image after generation 2 was written"
	sn_verify "$dev" 2 "the original"

	# The image is read-only.
	if dd if=/dev/zero of="$img" bs=4k count=1 oflag=direct conv=notrunc status=none 2>/dev/null; then
		fail "a write to the read-only image succeeded"
	fi
	ft_drop_caches
	sn_verify "$img" 1 "the image after a refused write, from a cold cache"
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"

	sn_destroy "$id"
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy"
	sn_verify "$dev" 2 "the original after destroy"
	expect_eq "snapshot_info after destroy" "error_code=0
image=/dev/" "$("$BLKSNAP" snapshot_info -d "$dev")"
}

test_snapshot_ext4_mounted_and_written() {
	sn_fs_snapshot ext4 128M ro,noload "fsck.ext4 -fn" mkfs.ext4 -q -F
}

test_snapshot_xfs_mounted_and_written() {
	# mkfs.xfs refuses filesystems under 300 MiB.
	sn_fs_snapshot xfs 320M ro,norecovery,nouuid sn_xfs_check mkfs.xfs -q -f
}

test_snapshot_two_devices_cut_at_one_moment() {
	sn_begin
	ft_loop 64M
	local a=$REPLY
	ft_loop 64M
	local b=$REPLY store id pid ia ib out records count=32768
	ft_attach "$a"
	ft_attach "$b"
	sn_tmpfs 256M
	store=$REPLY
	sn_create "$store" 160M "$a" "$b"
	id=$REPLY
	# Records 0, 1, 2, ... alternately to a and b, one write at a time.
	"$TAGBLK" seq "$a" "$b" --count "$count" >"$FT_DIR/seq.log" 2>&1 &
	pid=$!
	SN_PIDS+=("$pid")
	ft_wait 60 sn_block_written "$a" 1 || fail "tagblk seq wrote nothing in 60 s"
	sn_take "$id"
	wait "$pid" || { cat "$FT_DIR/seq.log"; fail "tagblk seq failed"; }
	expect_eq "records on the originals" "records=$count" "$("$TAGBLK" seqcheck "$a" "$b")"

	sn_image "$a"
	ia=$REPLY
	sn_image "$b"
	ib=$REPLY
	[ "$ia" != "$ib" ] || fail "both devices have the image $ia"
	out=$("$TAGBLK" seqcheck "$ia" "$ib") || { echo "$out"; fail "the images were not cut at one moment"; }
	records=${out#records=}
	echo "the take cut the sequence after $records of $count records"
	if [ "$records" -le 2 ] || [ "$records" -ge "$count" ]; then
		fail "the take did not land inside the sequence ($out of $count)"
	fi
	sn_destroy "$id"
}

test_snapshot_storage_regular_file() {
	sn_begin
	sn_tmpfs 128M
	local file=$REPLY/diff size
	: >"$file"
	sn_storage_cycle "$file" 64M
	# Grown for the 8 MiB copied, within the limit.
	size=$(stat -c %s "$file")
	[ "$size" -le $((64 << 20)) ] || fail "the storage file grew to $size bytes, past the 64M limit"
	[ $(($(stat -c %b "$file") * 512)) -ge $((8 << 20)) ] ||
		fail "the storage file holds $(($(stat -c %b "$file") * 512)) bytes, less than the 8 MiB copied"
	sn_destroy "$REPLY"
	[ -f "$file" ] || fail "the storage file is gone after destroy"
	sn_verify "$SN_DEV" 2 "the original after destroy" --offset 16M --len 8M
}

test_snapshot_storage_directory() {
	sn_begin
	sn_tmpfs 128M
	local dir=$REPLY used0 used
	used0=$(sn_used "$dir")
	sn_storage_cycle "$dir" 64M
	expect_eq "names in the storage directory (an unnamed file is used)" "" "$(ls -A "$dir")"
	used=$(sn_used "$dir")
	[ "$used" -ge $((used0 + (8 << 20))) ] ||
		fail "the storage directory's filesystem grew by $((used - used0)) bytes, less than the 8 MiB copied"
	sn_destroy "$REPLY"
	ft_wait 10 sn_used_le "$dir" $((used0 + (1 << 20))) ||
		fail "the storage file was not released: $(sn_used "$dir") bytes used, $used0 before"
}

test_snapshot_storage_block_device() {
	sn_begin
	ft_loop 64M
	local storage=$REPLY
	local excl='import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL))'
	sn_storage_cycle "$storage" 64M
	if python3 -c "$excl" "$storage" 2>/dev/null; then
		fail "$storage, the difference storage, could be opened exclusively"
	fi
	sn_destroy "$REPLY"
	python3 -c "$excl" "$storage" || fail "$storage is still held after destroy"
}

test_snapshot_overflow_corrupts_the_snapshot_not_the_original() {
	sn_begin
	ft_loop 128M
	local dev=$REPLY store file id img err rc=0
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 64M
	store=$REPLY
	file=$store/diff
	: >"$file"
	sn_create "$file" 4M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	sn_verify "$img" 1 "the image before the overflow" --len 8M
	# 64 MiB of changes for 4 MiB of storage; the writes must all succeed.
	"$TAGBLK" write "$dev" --gen 2 --len 64M --order seq --jobs 4 ||
		fail "writes to the original failed while the snapshot overflowed"
	sn_wait_event "$id" corrupted 30 || {
		cat "$FT_DIR/events" 2>/dev/null
		fail "no corrupted event within 30 s"
	}
	expect_eq "snapshot_info -f error_code after the overflow" -28 \
		"$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	err=$(dd if="$img" of=/dev/null bs=4k count=1 iflag=direct 2>&1) && fail "a read of the overflowed image succeeded"
	[[ $err == *"Input/output error"* ]] || fail "a read of the overflowed image failed without EIO: $err"
	"$TAGBLK" verify "$img" --gen 1 --len 1M >/dev/null 2>"$FT_DIR/err" || rc=$?
	expect_eq "exit status of tagblk verify on the overflowed image" 1 "$rc"
	grep -q "Input/output error" "$FT_DIR/err" || fail "tagblk verify on the overflowed image: $(cat "$FT_DIR/err")"
	[ "$(stat -c %s "$file")" -le $((4 << 20)) ] || fail "the storage grew past its 4M limit: $(stat -c %s "$file") bytes"
	# Nothing was lost on the original.
	sn_verify "$dev" 2 "the overwritten part of the original" --len 64M
	sn_verify "$dev" 1 "the rest of the original" --offset 64M
	sn_destroy "$id"
	"$TAGBLK" write "$dev" --gen 3 --offset 96M --len 1M >/dev/null
	sn_verify "$dev" 2 "the original after destroy" --len 64M
	sn_verify "$dev" 3 "a write after destroy" --offset 96M --len 1M
}

test_snapshot_destroy_while_image_is_open() {
	sn_begin
	ft_loop 64M
	local dev=$REPLY store id img fd
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 128M
	store=$REPLY
	sn_create "$store" 64M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	exec {fd}<"$img"
	SN_FDS+=("$fd")
	dd bs=4k count=1 iflag=direct of=/dev/null status=none <&"$fd" ||
		fail "a read through a descriptor open on $img failed before destroy"
	sn_destroy "$id"
	if dd bs=4k skip=100 count=1 iflag=direct of=/dev/null status=none <&"$fd" 2>/dev/null; then
		fail "a read of the destroyed image through an open descriptor succeeded"
	fi
	exec {fd}<&-
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy and close"
	# The device and the module go on working: a new snapshot of it.
	sn_verify "$dev" 1 "the original after destroy"
	sn_create "$store" 64M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	sn_verify "$REPLY" 1 "the image of a second snapshot"
	sn_destroy "$id"
}

test_snapshot_destroy_while_image_is_mounted() {
	sn_begin
	ft_loop 128M
	local dev=$REPLY mnt=$FT_DIR/mnt imnt=$FT_DIR/image sums=$FT_DIR/sums store id img
	mkfs.ext4 -q -F "$dev"
	mkdir "$mnt"
	ft_mount ext4 "$dev" "$mnt"
	ft_make_tree "$FT_DIR/src/p1"
	cp -a "$FT_DIR/src/p1" "$mnt/"
	sync
	ft_sums "$FT_DIR/src" p1 >"$sums"
	ft_attach "$dev"
	sn_tmpfs 128M
	store=$REPLY
	sn_create "$store" 64M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	sn_mount ext4 "$img" "$imnt" ro,noload
	ft_verify "$imnt" "$sums" "the image's files before destroy"
	sn_destroy "$id"
	ft_drop_caches
	if cat "$imnt/p1/big/f2" >/dev/null 2>&1; then
		fail "a file of the destroyed, mounted image could still be read"
	fi
	sn_umount "$imnt"
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy and umount"
	# The original filesystem is unharmed.
	rm -rf "$mnt/p1/small"
	cp -a "$FT_DIR/src/p1/small" "$mnt/p1/"
	umount "$mnt"
	ft_drop_caches
	mount -t ext4 "$dev" "$mnt"
	ft_verify "$mnt" "$sums" "the original's files after destroy"
}

test_snapshot_ioctl_errors_through_the_cli() {
	sn_begin
	ft_loop 64M
	local a=$REPLY
	ft_loop 64M
	local b=$REPLY
	ft_loop 64M
	local c=$REPLY
	ft_loop 64M
	local d=$REPLY store unknown empty taken held before out
	sn_tmpfs 128M
	store=$REPLY
	unknown=$(cat /proc/sys/kernel/random/uuid)

	sn_expect_error ESRCH "snapshot_take of an unknown id" "$BLKSNAP" snapshot_take -i "$unknown"
	sn_expect_error "" "snapshot_destroy of an unknown id" "$BLKSNAP" snapshot_destroy -i "$unknown"
	sn_expect_error ESRCH "snapshot_add to an unknown id" "$BLKSNAP" snapshot_add -i "$unknown" -d "$a"
	FT_ATTACHED+=("$a")
	out=$("$BLKSNAP" snapshot_waitevent -i "$unknown" -t 100 || true)
	grep -qx 'result=not found' <<<"$out" || fail "snapshot_waitevent of an unknown id printed '$out'"

	# A snapshot with no devices cannot be taken.
	sn_create "$store" 16M
	empty=$REPLY
	sn_expect_error ENODEV "snapshot_take with no devices" "$BLKSNAP" snapshot_take -i "$empty"

	# Taken once only; a device belongs to one snapshot.
	ft_attach "$b"
	sn_create "$store" 16M
	taken=$REPLY
	out=$("$BLKSNAP" snapshot_add -i "$taken" -d "$b")
	expect_eq "output of snapshot_add" "" "$out"
	sn_expect_error EALREADY "snapshot_add of a device already in this snapshot" \
		"$BLKSNAP" snapshot_add -i "$taken" -d "$b"
	sn_expect_error EBUSY "snapshot_add of a device in another snapshot" \
		"$BLKSNAP" snapshot_add -i "$empty" -d "$b"
	sn_collect
	before=$REPLY
	sn_expect_error EBUSY "snapshot_create with a device in another snapshot" \
		"$BLKSNAP" snapshot_create -f "$store" -l 16M -d "$b"
	sn_collect
	expect_eq "snapshots after the failed create" "$before" "$REPLY"
	sn_take "$taken"
	sn_expect_error EALREADY "a second snapshot_take" "$BLKSNAP" snapshot_take -i "$taken"
	sn_image "$b"
	# A member of another snapshot as storage: the CLI says the module
	# refused where the storage lies, not its kind, and points at the log.
	sn_expect_error EINVAL "snapshot_create with $b, a member of another snapshot, as storage" \
		"$BLKSNAP" snapshot_create -f "$b" -l 16M
	grep -q "the module refused where the difference storage lies.*kernel log (dmesg)" "$FT_DIR/err" ||
		fail "snapshot_create with $b as storage: no placement hint in: $(cat "$FT_DIR/err")"

	# The storage of a snapshot cannot live on one of its devices.
	mkfs.ext4 -q -F "$c"
	mkdir "$FT_DIR/c"
	ft_mount ext4 "$c" "$FT_DIR/c"
	: >"$FT_DIR/c/diff"
	FT_ATTACHED+=("$c")
	sn_expect_error "" "snapshot_create with its storage file on its device" \
		"$BLKSNAP" snapshot_create -f "$FT_DIR/c/diff" -l 16M -d "$c"
	sn_create "$FT_DIR/c/diff" 16M
	held=$REPLY
	sn_expect_error "" "snapshot_add of the device that holds the storage" \
		"$BLKSNAP" snapshot_add -i "$held" -d "$c"
	FT_ATTACHED+=("$d")
	sn_expect_error "" "snapshot_create with its storage device as a member" \
		"$BLKSNAP" snapshot_create -f "$d" -l 16M -d "$d"

	# Storage that is neither a file, a directory nor a block device.
	sn_expect_error EINVAL "snapshot_create with /dev/null as storage" \
		"$BLKSNAP" snapshot_create -f /dev/null -l 16M
	grep -q "must be an existing regular file, directory or block device, and this is none" "$FT_DIR/err" ||
		fail "snapshot_create with /dev/null as storage: no hint of its kind in: $(cat "$FT_DIR/err")"
	sn_expect_error "" "snapshot_create with a missing storage path" \
		"$BLKSNAP" snapshot_create -f "$FT_DIR/nonexistent/diff" -l 16M

	# Destroyed once only.
	sn_destroy "$held"
	sn_expect_error "" "a second snapshot_destroy" "$BLKSNAP" snapshot_destroy -i "$held"
	sn_destroy "$taken"
	sn_destroy "$empty"
	sn_collect
	expect_eq "snapshots left" "" "$REPLY"
}

test_snapshot_cbt_across_takes() {
	sn_begin
	ft_loop 64M
	local dev=$REPLY store id gen info
	ft_attach "$dev"
	ft_settle
	sn_tmpfs 128M
	store=$REPLY
	info=$("$BLKSNAP" cbtinfo -d "$dev")
	gen=$(sed -n 's/^generation_id=//p' <<<"$info")
	expect_eq "changes_number after attach" 0 "$(sed -n 's/^changes_number=//p' <<<"$info")"
	ft_write "$dev" 0 1 # CBT block 0 (64 KiB blocks)
	ft_write "$dev" 3 1 # block 48

	sn_create "$store" 64M "$dev"
	id=$REPLY
	sn_take "$id"
	info=$("$BLKSNAP" cbtinfo -d "$dev")
	expect_eq "changes_number after the first take" 1 "$(sed -n 's/^changes_number=//p' <<<"$info")"
	expect_eq "generation_id after the first take" "$gen" "$(sed -n 's/^generation_id=//p' <<<"$info")"
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/map1"
	expect_eq "blocks marked at the first take" "0=1 48=1 " "$(cbt_marked "$FT_DIR/map1")"
	# Written while the snapshot is held: the map of this snapshot stays.
	ft_write "$dev" 5 1 # block 80
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/map1b"
	expect_eq "blocks marked after a write under the snapshot" "0=1 48=1 " "$(cbt_marked "$FT_DIR/map1b")"
	sn_destroy "$id"

	sn_create "$store" 64M "$dev"
	id=$REPLY
	sn_take "$id"
	info=$("$BLKSNAP" cbtinfo -d "$dev")
	expect_eq "changes_number after the second take" 2 "$(sed -n 's/^changes_number=//p' <<<"$info")"
	expect_eq "generation_id after the second take" "$gen" "$(sed -n 's/^generation_id=//p' <<<"$info")"
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/map2"
	expect_eq "blocks marked at the second take" "0=1 48=1 80=2 " "$(cbt_marked "$FT_DIR/map2")"
	sn_destroy "$id"
}

test_snapshot_collect_watcher_and_waitevent() {
	sn_begin
	sn_tmpfs 64M
	local store=$REPLY a b pid rc=0 t0 t1 out
	sn_collect
	expect_eq "snapshot_collect with no snapshots" "" "$REPLY"
	# The upstream tool's form, to the byte: only an empty line.
	out=$("$BLKSNAP" snapshot_collect; echo .)
	expect_eq "snapshot_collect output with no snapshots" "$(printf '\n.')" "$out"
	sn_create "$store" 16M
	a=$REPLY
	sn_create "$store" 16M
	b=$REPLY
	[ "$a" != "$b" ] || fail "two snapshots got the same id $a"
	sn_collect
	expect_eq "snapshot_collect with two snapshots" "$(printf '%s\n' "$a" "$b" | sort)" "$REPLY"
	# Each id followed by a space, then an empty line.
	out=$("$BLKSNAP" snapshot_collect; echo .)
	[ "$out" = "$(printf '%s \n%s \n\n.' "$a" "$b")" ] || [ "$out" = "$(printf '%s \n%s \n\n.' "$b" "$a")" ] ||
		fail "snapshot_collect printed '$out'"

	# The watcher of a runs until a is destroyed, then exits 0.
	"$BLKSNAP" snapshot_watcher -i "$a" >"$FT_DIR/watcher.log" 2>&1 &
	pid=$!
	SN_PIDS+=("$pid")
	sleep 1
	kill -0 "$pid" 2>/dev/null || fail "snapshot_watcher exited while its snapshot exists: $(cat "$FT_DIR/watcher.log")"
	sn_destroy "$a"
	ft_wait 10 sn_exited "$pid" || fail "snapshot_watcher still runs 10 s after destroy"
	wait "$pid" || rc=$?
	expect_eq "exit status of snapshot_watcher" 0 "$rc"
	expect_eq "what snapshot_watcher printed" "Start snapshot watcher.
The snapshot no longer exists.
Snapshot watcher finished." "$(cat "$FT_DIR/watcher.log")"
	sn_collect
	expect_eq "snapshot_collect after destroying one" "$b" "$REPLY"

	# No event comes: a timeout after about the time asked for.
	t0=$(date +%s%N)
	out=$("$BLKSNAP" snapshot_waitevent -i "$b" -t 700)
	t1=$(date +%s%N)
	expect_eq "snapshot_waitevent with no event" "result=timeout" "$out"
	[ $(((t1 - t0) / 1000000)) -ge 600 ] || fail "snapshot_waitevent -t 700 returned after $(((t1 - t0) / 1000000)) ms"
	sn_destroy "$b"
	sn_collect
	expect_eq "snapshot_collect at the end" "" "$REPLY"
}

# Unloads and reloads the module: keep it the last test of this file.
test_snapshot_blocks_module_unload() {
	sn_begin
	sn_tmpfs 64M
	local store=$REPLY id dev
	sn_create "$store" 16M
	id=$REPLY
	if rmmod blksnap 2>/dev/null; then
		fail "rmmod blksnap succeeded while a snapshot (with no devices) exists"
	fi
	module_loaded || fail "the module is gone"
	sn_destroy "$id"

	ft_loop 64M
	dev=$REPLY
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_create "$store" 16M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	if rmmod blksnap 2>/dev/null; then
		fail "rmmod blksnap succeeded while a snapshot is taken"
	fi
	sn_verify "$REPLY" 1 "the image after the refused rmmod"
	sn_destroy "$id"
	ft_detach "$dev"
	ft_wait 10 ft_refcnt_is 0 || fail "module refcnt is $(ft_refcnt) with no snapshot and no filter"
	rmmod blksnap || fail "rmmod blksnap failed after the last destroy and detach"
	load_module
}

test_snapshot_writable_image() {
	sn_begin
	local param=/sys/module/blksnap/parameters/image_writable
	[ -w "$param" ] || fail "no image_writable parameter"
	ft_loop 32M
	local dev=$REPLY store id img
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 64M
	store=$REPLY
	sn_create "$store" 48M "$dev"
	id=$REPLY
	echo 1 >"$param"
	sn_take "$id"
	echo 0 >"$param"
	sn_image "$dev"
	img=$REPLY
	expect_eq "read-only flag of the writable image" 0 "$(cat "/sys/class/block/${img##*/}/ro")"
	# 1 MiB at 4 MiB: CBT blocks 64..79 at 64 KiB, chunks never copied.
	"$TAGBLK" write "$img" --gen 3 --offset 4M --len 1M --jobs 2 >/dev/null ||
		fail "writing to the writable image failed"
	sn_verify "$img" 3 "the written part of the image" --offset 4M --len 1M
	sn_verify "$img" 1 "the image before the written part" --len 4M
	sn_verify "$img" 1 "the image after the written part" --offset 5M
	sn_verify "$dev" 1 "the original, which image writes never reach"
	# Writes to the original still copy-on-write around the image's data.
	"$TAGBLK" write "$dev" --gen 2 --offset 4M --len 2M --jobs 2 >/dev/null
	sn_verify "$img" 3 "the image's own data after the original changed" --offset 4M --len 1M
	sn_verify "$img" 1 "the image next to it" --offset 5M --len 1M
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/map"
	local marked
	marked=$(cbt_marked "$FT_DIR/map" | tr ' ' '\n' | grep -c '=2$' || true)
	expect_eq "blocks the image write marked with the active number in the read map" 16 "$marked"
	sn_destroy "$id"
	sn_verify "$dev" 2 "the original after destroy" --offset 4M --len 2M
}

test_snapshot_images_are_read_only_by_default() {
	sn_begin
	local dev id img
	sn_tmpfs 32M
	sn_taken 16M "$REPLY" 16M
	dev=$SN_DEV id=$REPLY
	sn_image "$dev"
	img=$REPLY
	expect_eq "read-only flag of the image" 1 "$(cat "/sys/class/block/${img##*/}/ro")"
	! "$TAGBLK" write "$img" --gen 2 --len 64K >/dev/null 2>&1 || fail "a write to a read-only image succeeded"
	sn_verify "$img" 1 "the image after a refused write"
	sn_destroy "$id"
}

# A member's loop device detached between SNAPSHOTADD and the take stays
# bound (the module holds it from the add on): the take succeeds, the image
# is the device's, and the detach happens at the destroy.
test_snapshot_member_detached_since_add_is_held() {
	sn_begin
	ft_loop 16M
	local dev=$REPLY store id
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 32M
	store=$REPLY
	sn_create "$store" 16M "$dev"
	id=$REPLY
	sn_detach_held "$dev"
	sn_take "$id"
	"$TAGBLK" write "$dev" --gen 2 --len 4M >/dev/null
	sn_image "$dev"
	sn_verify "$REPLY" 1 "the image of $dev, detached since it was added"
	expect_eq "snapshot_info of $dev" "error_code=0" "$("$BLKSNAP" snapshot_info -d "$dev" | grep error_code)"
	sn_destroy "$id"
	sn_wait_cleared "$dev"
}

# The diff area of a member is made at SNAPSHOTADD; a member that grew
# between the add and the take gets one of its new size at the take, so
# its image has the capacity of the moment of the take.
test_snapshot_member_resized_between_add_and_take() {
	sn_begin
	local img dev storage id
	ft_image 64M
	img=$REPLY
	ft_loop_file "$img"
	dev=$REPLY
	ft_loop 128M
	storage=$REPLY
	ft_attach "$dev"
	sn_create "$storage" 128M "$dev"
	id=$REPLY
	truncate -s 96M "$img"
	losetup -c "$dev"
	expect_eq "size of $dev after the resize" $((96 << 20)) "$(blockdev --getsize64 "$dev")"
	sn_fill "$dev" 1
	sn_take "$id"
	sn_image "$dev"
	expect_eq "size of the image" $((96 << 20)) "$(blockdev --getsize64 "$REPLY")"
	sn_fill "$dev" 2
	sn_verify "$REPLY" 1 "the image of the grown member"
	sn_destroy "$id"
}

# A REQ_NOWAIT write (pwritev2 with RWF_NOWAIT on O_DIRECT) to a chunk not
# yet copied would have to wait for the copy: it fails with EAGAIN and the
# device keeps its data; once the chunk is copied, such writes pass.
test_snapshot_nowait_write_gets_eagain_until_copied() {
	sn_begin
	local dev id out
	sn_tmpfs 32M
	sn_taken 16M "$REPLY" 16M
	dev=$SN_DEV id=$REPLY
	# Chunks are 256 KiB: offsets 0 and 4 KiB share chunk 0, 1 MiB is in
	# chunk 4.
	out=$(python3 - "$dev" <<'PY'
import errno, mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
buf.write(b"n" * 4096)
def nowait(offset):
    try:
        os.pwritev(fd, [buf], offset, os.RWF_NOWAIT)
        return "OK"
    except OSError as e:
        return errno.errorcode[e.errno]
results = [nowait(0)]
os.pwritev(fd, [buf], 0)  # an ordinary write copies chunk 0
results += [nowait(0), nowait(4096), nowait(1 << 20)]
print(" ".join(results))
PY
	)
	expect_eq "RWF_NOWAIT writes: uncopied, copied, copied, uncopied" "EAGAIN OK OK EAGAIN" "$out"
	sn_verify "$dev" 1 "the block a refused write aimed at" --offset 1M --len 4096
	sn_image "$dev"
	sn_verify "$REPLY" 1 "the image"
	sn_destroy "$id"
}
