# More snapshots: a partition as a member, two snapshots side by side,
# destroy while the image is read, the module reference after destroy and
# detach, the CBT switch at every take and its wrap after 255, the growth
# of a storage file in steps and its no_space event, every errno of the
# snapshot ioctls (uapi.md §1 SNAPSHOTADD/SNAPSHOTINFO and §2) through raw
# ioctls (snap_probe.py), and members that go away under a taken snapshot.
# Uses the sn_* helpers of 30-snapshot.sh, cbt_probe and cbt_marked of
# 20-cbt.sh and the ft_* helpers of 10-filter.sh.
# shellcheck shell=bash

SM_PARAMS=()
SM_DMS=()
SM_MDS=()
SM_SECTORS=0
SM_LOG0=0
SM_Q_WHAT=()
SM_Q_WANT=()
SM_OUT=()
SM_UUID='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
# What the kernel log must not show (as in 99-kernel-log.sh).
SM_BAD_LOG='Oops|BUG:|WARNING:|Call Trace:|general protection|kernel BUG|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|UBSAN:|refcount_t:|list_(add|del) corruption|Kernel panic|hung_task|soft lockup|blocked for more than'

# --- Helpers (prefixed sm_; every test calls sm_begin first) ---------------

# Raw snapshot ioctls, see snap_probe.py. In the background, run
# python3 "$SM_PROBE" itself, so that $! is its pid (signals, cleanup).
SM_PROBE=$BLKSNAP_ROOT/tests/vm/snap_probe.py
sm_probe() {
	python3 "$SM_PROBE" "$@"
}

# Starts a test like sn_begin; sm_cleanup also restores the module
# parameters sm_param changed. Remembers where the kernel log ends.
sm_begin() {
	SM_PARAMS=()
	SM_DMS=()
	SM_MDS=()
	SM_Q_WHAT=()
	SM_Q_WANT=()
	sn_begin
	trap sm_cleanup EXIT
	SM_LOG0=$(dmesg | wc -l)
}

sm_cleanup() {
	set +e
	local d
	sm_restore_params >/dev/null 2>&1
	# Snapshots first: they hold their members open.
	for d in "${SN_IDS[@]}" $("$BLKSNAP" snapshot_collect 2>/dev/null); do
		timeout 60 "$BLKSNAP" snapshot_destroy -i "$d"
	done >/dev/null 2>&1
	SN_IDS=()
	# md arrays, then device-mapper devices: they hold the devices below.
	for d in "${SM_MDS[@]}"; do
		mdadm --stop "$d"
	done >/dev/null 2>&1
	for d in "${SM_DMS[@]}"; do
		dmsetup remove --retry "$d"
	done >/dev/null 2>&1
	sn_cleanup
}

# sm_dm NAME TABLE: a device-mapper device; sm_cleanup removes it.
sm_dm() {
	dmsetup create "$1" --table "$2"
	SM_DMS+=("$1")
	ft_wait 5 test -b "/dev/mapper/$1" || fail "/dev/mapper/$1 did not appear"
}

# sm_dm_linear NAME DEV: a device-mapper device mapping all of DEV ->
# $REPLY (its /dev/dm-N node); its size in sectors -> $SM_SECTORS.
sm_dm_linear() {
	SM_SECTORS=$(blockdev --getsz "$2")
	sm_dm "$1" "0 $SM_SECTORS linear $2 0"
	REPLY=$(readlink -f "/dev/mapper/$1")
}

# sm_dm_table NAME TABLE: replaces the table of a live device-mapper device.
sm_dm_table() {
	dmsetup suspend "$1"
	dmsetup reload "$1" --table "$2"
	dmsetup resume "$1"
}

# sm_param NAME VALUE: sets a module parameter until the test ends.
sm_param() {
	local f=/sys/module/blksnap/parameters/$1
	SM_PARAMS+=("$1=$(cat "$f")")
	echo "$2" >"$f"
}

# Puts back the module parameters sm_param changed, last change first.
sm_restore_params() {
	local i p
	for ((i = ${#SM_PARAMS[@]} - 1; i >= 0; i--)); do
		p=${SM_PARAMS[i]}
		echo "${p#*=}" >"/sys/module/blksnap/parameters/${p%%=*}"
	done
	SM_PARAMS=()
}

# The kernel log has no oops, warning, lockdep splat... since sm_begin.
sm_log_clean() {
	local bad
	bad=$(dmesg | tail -n +$((SM_LOG0 + 1)) | grep -E "$SM_BAD_LOG" || true)
	if [ -n "$bad" ]; then
		echo "$bad" | head -20
		fail "the kernel log reports problems"
	fi
}

# sm_q WHAT EXPECTED OPERATION [ARGUMENT...]: queues a snap_probe.py
# operation for sm_q_run, which expects its output (an errno name, or the
# output lines of a success joined with spaces) to match the extended
# regex ^(EXPECTED)$.
sm_q() {
	local what=$1 want=$2
	shift 2
	SM_Q_WHAT+=("$what")
	SM_Q_WANT+=("$want")
	(IFS=$'\t' && echo "$*") >>"$FT_DIR/queue"
}

# Runs the queued operations in one snap_probe.py (python starts slowly in
# the VM) and checks each output; the outputs -> SM_OUT.
sm_q_run() {
	local i bad=0
	mapfile -t SM_OUT < <(sm_probe batch <"$FT_DIR/queue" 2>"$FT_DIR/queue.err")
	rm -f "$FT_DIR/queue"
	for i in "${!SM_Q_WHAT[@]}"; do
		if ! [[ ${SM_OUT[i]-<none>} =~ ^(${SM_Q_WANT[i]})$ ]]; then
			echo "${SM_Q_WHAT[i]}: expected '${SM_Q_WANT[i]}', got '${SM_OUT[i]-<none>}'"
			bad=1
		fi
	done
	SM_Q_WHAT=()
	SM_Q_WANT=()
	[ "$bad" = 0 ] || { cat "$FT_DIR/queue.err"; fail "raw ioctls answered wrong (above)"; }
}

# sm_mbr_entry FILE INDEX START SECTORS: partition entry INDEX (0-3) of the
# MS-DOS partition table ft_write_mbr started.
sm_mbr_entry() {
	local entry
	entry="\\x00\\x00\\x02\\x00\\x83\\xfe\\xff\\xff$(ft_le32 "$3")$(ft_le32 "$4")"
	printf '%b' "$entry" | dd of="$1" bs=1 seek=$((446 + 16 * $2)) conv=notrunc status=none
}

# sm_disk_p1 SIZE P1-SECTORS: a loop disk of SIZE with one partition of
# P1-SECTORS from sector 2048 -> $SM_DISK, $SM_P1.
sm_disk_p1() {
	ft_image "$1"
	ft_write_mbr "$REPLY" 2048 "$2"
	ft_loop_file "$REPLY" -P
	SM_DISK=$REPLY
	SM_P1=${SM_DISK}p1
	ft_wait 5 test -b "$SM_P1" || fail "$SM_P1 did not appear after losetup -P"
	ft_settle
}

# sm_size_is FILE BYTES: whether FILE is BYTES long.
sm_size_is() {
	[ "$(stat -c %s "$1")" = "$2" ]
}

# sm_no_event ID WHAT: no event of snapshot ID within half a second.
sm_no_event() {
	local out
	out=$("$BLKSNAP" snapshot_waitevent -i "$1" -t 500)
	expect_eq "snapshot_waitevent $2" "result=timeout" "$out"
}

# sm_image_holds IMAGE GEN WHAT: every block of IMAGE holds generation GEN,
# or the reads fail with EIO from some block on; never other data. (Called
# with ||, where set -e does not apply.)
sm_image_holds() {
	local rc=0
	"$TAGBLK" verify "$1" --gen "$2" >"$FT_DIR/holds" 2>&1 || rc=$?
	[ "$rc" = 0 ] && return 0
	if grep -q mismatch "$FT_DIR/holds" || ! grep -q "Input/output error" "$FT_DIR/holds"; then
		tail -n 4 "$FT_DIR/holds"
		fail "$3: not generation $2, and no EIO either"
		return 1
	fi
	echo "$3: $(tail -n 1 "$FT_DIR/holds")"
}

# sm_filtered_partition: a 64 MiB loop disk with one 16 MiB partition at
# sector 2048, filled with generation 1 and attached -> $REPLY (the disk;
# the partition is ${REPLY}p1), and the module's reference count before the
# attach -> $SM_REFCNT.
sm_filtered_partition() {
	local disk
	ft_image 64M
	ft_write_mbr "$REPLY" 2048 32768
	ft_loop_file "$REPLY" -P
	disk=$REPLY
	ft_wait 5 test -b "${disk}p1" || fail "${disk}p1 did not appear after losetup -P"
	# udev's re-read after losetup is over before the partition is used
	# (the tests re-read the table themselves, so it is not held open).
	ft_settle
	sn_fill "${disk}p1" 1
	SM_REFCNT=$(ft_refcnt)
	ft_attach "${disk}p1"
	ft_settle
	REPLY=$disk
}

# sm_unfiltered DEV: whether no filter is attached to DEV (CBTINFO answers
# ENOENT).
sm_unfiltered() {
	[ "$(cbt_probe info "$1")" = ENOENT ]
}

# sm_cli_cycle DEV STORAGE: writes DEV's first 4 KiB, then creates, takes
# and destroys a snapshot of DEV with the CLI -> $REPLY: "changes_number
# generation_id marked-blocks" as cbtinfo and readcbtmap told after the
# take.
sm_cli_cycle() {
	local id info
	ft_write "$1" 0 1
	sn_create "$2" 4M "$1"
	id=$REPLY
	sn_take "$id"
	info=$("$BLKSNAP" cbtinfo -d "$1")
	"$BLKSNAP" readcbtmap -d "$1" -f "$FT_DIR/map"
	sn_destroy "$id"
	REPLY="$(sed -n 's/^changes_number=//p' <<<"$info") $(sed -n 's/^generation_id=//p' <<<"$info") $(cbt_marked "$FT_DIR/map")"
}

# --- Tests ------------------------------------------------------------------

test_snapshot_more_partition_member() {
	sm_begin
	ft_image 64M
	local img=$REPLY
	# p1: MiB 1..17, p2: MiB 18..34; MiB 40..56 of the disk is in neither.
	ft_write_mbr "$img" 2048 32768
	sm_mbr_entry "$img" 1 36864 32768
	ft_loop_file "$img" -P
	local disk=$REPLY p1=${REPLY}p1 p2=${REPLY}p2 store id pimg pid
	ft_wait 5 test -b "$p2" || fail "$p2 did not appear after losetup -P"
	# No re-read of the partition table while p1 is open (re-reading
	# recreates the partitions: see test_snapshot_more_member_partition_reread).
	ft_hold "$p1"
	sn_fill "$p1" 1
	sn_fill "$p2" 1
	"$TAGBLK" write "$disk" --gen 1 --offset 40M --len 16M --order seq --jobs 2 >/dev/null

	ft_attach "$p1"
	sn_tmpfs 96M
	store=$REPLY
	sn_create "$store" 32M "$p1"
	id=$REPLY
	sn_take "$id"
	sn_image "$p1"
	pimg=$REPLY
	expect_eq "size of the image of $p1" "$(blockdev --getsize64 "$p1")" "$(blockdev --getsize64 "$pimg")"
	expect_eq "size of $p1" $((16 << 20)) "$(blockdev --getsize64 "$p1")"
	[ ! -e "/dev/$(sn_image_name "$disk")" ] || fail "the whole disk $disk got an image"

	# Generation 2 over all of p1 in random order, while the image is read.
	"$TAGBLK" write "$p1" --gen 2 --jobs 2 --seed 3 >"$FT_DIR/write.log" 2>&1 &
	pid=$!
	SN_PIDS+=("$pid")
	sn_verify "$pimg" 1 "the image of $p1 while $p1 is rewritten"
	wait "$pid" || { cat "$FT_DIR/write.log"; fail "writing generation 2 to $p1 failed"; }
	# The other partition and the whole disk outside the partitions.
	"$TAGBLK" write "$p2" --gen 2 --jobs 2 --seed 4 >/dev/null
	"$TAGBLK" write "$disk" --gen 2 --offset 40M --len 16M --jobs 2 --seed 5 >/dev/null
	ft_drop_caches
	sn_verify "$pimg" 1 "the image of $p1 after writes to $p2 and $disk"
	sn_verify "$p1" 2 "$p1"
	sn_verify "$p2" 2 "$p2"
	sn_verify "$disk" 2 "$disk outside the partitions" --offset 40M --len 16M
	expect_eq "snapshot_info -d $p1" "error_code=0
image=$pimg" "$("$BLKSNAP" snapshot_info -d "$p1")"
	sn_destroy "$id"
	ft_wait 10 test ! -e "$pimg" || fail "$pimg still present after destroy"
	sn_verify "$p1" 2 "$p1 after destroy"

	# The storage on a partition: the partition and its whole disk cannot
	# join the snapshot, the other partition can.
	ft_attach "$disk"
	ft_attach "$p2"
	sm_q "SNAPSHOT_CREATE with the storage $p2" "$SM_UUID" create "$p2" 0
	sm_q_run
	id=${SM_OUT[0]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $p2, the storage" EINVAL add "$p2" "$id"
	sm_q "SNAPSHOTADD of $disk, the whole disk of the storage" EINVAL add "$disk" "$id"
	sm_q "SNAPSHOTADD of $p1, next to the storage" "" add "$p1" "$id"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	# The storage on the whole disk: none of its partitions can join.
	sm_q "SNAPSHOT_CREATE with the storage $disk" "$SM_UUID" create "$disk" 0
	sm_q_run
	id=${SM_OUT[4]}
	SN_IDS+=("$id")
	sm_q "SNAPSHOTADD of $p1, a partition of the storage" EINVAL add "$p1" "$id"
	sm_q "SNAPSHOTADD of $p2, a partition of the storage" EINVAL add "$p2" "$id"
	sm_q "SNAPSHOT_DESTROY" "" destroy "$id"
	sm_q "SNAPSHOT_COLLECT" 0 collect
	sm_q_run
	SN_IDS=()
	sm_log_clean
}

test_snapshot_more_two_snapshots_side_by_side() {
	sm_begin
	ft_loop 16M
	local a=$REPLY
	ft_loop 16M
	local b=$REPLY store ida idb ia ib pa pb
	sn_fill "$a" 1
	sn_fill "$b" 1
	ft_attach "$a"
	ft_attach "$b"
	sn_tmpfs 64M
	store=$REPLY
	: >"$store/b.diff"
	# Two snapshots, one storage directory and one storage file.
	sn_create "$store" 16M "$a"
	ida=$REPLY
	sn_create "$store/b.diff" 16M "$b"
	idb=$REPLY
	sn_collect
	expect_eq "snapshot_collect" "$(printf '%s\n' "$ida" "$idb" | sort)" "$REPLY"

	sn_take "$ida"
	sn_image "$a"
	ia=$REPLY
	expect_eq "snapshot_info -d $b before its snapshot is taken" "error_code=0
image=/dev/" "$("$BLKSNAP" snapshot_info -d "$b")"
	"$TAGBLK" write "$a" --gen 2 --jobs 2 --seed 1 >/dev/null
	"$TAGBLK" write "$b" --gen 2 --jobs 2 --seed 2 >/dev/null
	sn_take "$idb"
	sn_image "$b"
	ib=$REPLY
	[ "$ia" != "$ib" ] || fail "both snapshots have the image $ia"

	# Generation 3 on both at once, while both images are read.
	"$TAGBLK" write "$a" --gen 3 --jobs 2 --seed 3 >"$FT_DIR/a.log" 2>&1 &
	pa=$!
	SN_PIDS+=("$pa")
	"$TAGBLK" write "$b" --gen 3 --jobs 2 --seed 4 >"$FT_DIR/b.log" 2>&1 &
	pb=$!
	SN_PIDS+=("$pb")
	sn_verify "$ia" 1 "the image of the first snapshot, under writes"
	sn_verify "$ib" 2 "the image of the second snapshot, under writes"
	wait "$pa" || { cat "$FT_DIR/a.log"; fail "writing generation 3 to $a failed"; }
	wait "$pb" || { cat "$FT_DIR/b.log"; fail "writing generation 3 to $b failed"; }
	ft_drop_caches
	sn_verify "$ia" 1 "the image of the first snapshot"
	sn_verify "$ib" 2 "the image of the second snapshot"
	sn_verify "$a" 3 "$a"
	sn_verify "$b" 3 "$b"

	# Destroying the first leaves the second working.
	sn_destroy "$ida"
	ft_wait 10 test ! -e "$ia" || fail "$ia still present after destroy"
	[ -b "$ib" ] || fail "$ib went away with the other snapshot"
	expect_eq "snapshot_info -d $a after its destroy" "error_code=0
image=/dev/" "$("$BLKSNAP" snapshot_info -d "$a")"
	sn_collect
	expect_eq "snapshot_collect after one destroy" "$idb" "$REPLY"
	"$TAGBLK" write "$b" --gen 4 --offset 4M --len 4M --jobs 2 --seed 5 >/dev/null
	"$TAGBLK" write "$a" --gen 4 --offset 4M --len 4M --jobs 2 --seed 6 >/dev/null
	ft_drop_caches
	sn_verify "$ib" 2 "the second image after the first snapshot was destroyed"
	expect_eq "snapshot_info -d $b" "error_code=0
image=$ib" "$("$BLKSNAP" snapshot_info -d "$b")"
	sn_destroy "$idb"
	ft_wait 10 test ! -e "$ib" || fail "$ib still present after destroy"
	sn_verify "$b" 4 "$b after both destroys" --offset 4M --len 4M
	sn_verify "$b" 3 "$b after both destroys" --len 4M
	sn_verify "$a" 4 "$a after both destroys" --offset 4M --len 4M
	sm_log_clean
}

test_snapshot_more_destroy_under_image_io() {
	sm_begin
	ft_loop 64M
	local dev=$REPLY store id img fd pw r out
	local readers=()
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 128M
	store=$REPLY
	sn_create "$store" 64M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	# Two readers of the image, a writer of the original, and a descriptor
	# open on the image that outlives the destroy.
	for r in 1 2; do
		python3 "$SM_PROBE" read "$img" 300 >"$FT_DIR/reader$r" 2>&1 &
		readers+=($!)
		SN_PIDS+=($!)
	done
	exec {fd}<"$img"
	SN_FDS+=("$fd")
	"$TAGBLK" write "$dev" --gen 2 --jobs 2 --seed 7 >"$FT_DIR/write.log" 2>&1 &
	pw=$!
	SN_PIDS+=("$pw")
	for r in 1 2; do
		ft_wait 60 grep -qx started "$FT_DIR/reader$r" || fail "reader $r did not start: $(cat "$FT_DIR/reader$r")"
	done
	sn_destroy "$id"
	for r in 1 2; do
		ft_wait 30 sn_exited "${readers[r - 1]}" || fail "reader $r still runs 30 s after destroy"
		out=$(tail -n 1 "$FT_DIR/reader$r")
		# del_gendisk() sets the capacity to 0: a read in flight fails
		# with EIO, a later one finds the end of the device.
		[[ $out =~ ^reads=[0-9]+\ error=(EIO|EOF)$ ]] || fail "reader $r after destroy: $(cat "$FT_DIR/reader$r")"
		echo "reader $r: $out"
	done
	wait "$pw" || { cat "$FT_DIR/write.log"; fail "writes to the original failed across the destroy"; }
	sn_verify "$dev" 2 "the original after the writes that crossed the destroy"
	expect_eq "bytes read from the destroyed image through an open descriptor" 0 \
		"$(dd bs=64k count=1 iflag=direct status=none <&"$fd" 2>/dev/null | wc -c)"
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy"

	# The open descriptor of the deleted image still pins the module.
	ft_detach "$dev"
	if rmmod blksnap 2>/dev/null; then
		fail "rmmod blksnap succeeded while a destroyed image is still open"
	fi
	exec {fd}<&-
	ft_wait 10 ft_refcnt_is 0 || fail "module refcnt is $(ft_refcnt) after the image was closed"
	rmmod blksnap || fail "rmmod blksnap failed after destroy, detach and close"
	load_module
	sm_log_clean
}

test_snapshot_more_unload_after_destroy_and_detach() {
	sm_begin
	ft_loop 32M
	local a=$REPLY
	ft_loop 32M
	local b=$REPLY store id watcher waiter rc=0
	sn_fill "$a" 1
	sn_fill "$b" 1
	ft_attach "$a"
	ft_attach "$b"
	sn_tmpfs 64M
	store=$REPLY
	sn_create "$store" 32M "$a" "$b"
	id=$REPLY
	sn_take "$id"
	sn_image "$a"
	sn_image "$b"
	"$TAGBLK" write "$a" --gen 2 --len 4M >/dev/null
	# A watcher and a waiter on the snapshot's events.
	"$BLKSNAP" snapshot_watcher -i "$id" >"$FT_DIR/watcher.log" 2>&1 &
	watcher=$!
	SN_PIDS+=("$watcher")
	python3 "$SM_PROBE" wait "$id" 60000 >"$FT_DIR/wait.out" 2>"$FT_DIR/wait.err" &
	waiter=$!
	SN_PIDS+=("$waiter")
	ft_wait 60 grep -qx waiting "$FT_DIR/wait.err" || fail "the waiter did not start"
	if rmmod blksnap 2>/dev/null; then
		fail "rmmod blksnap succeeded while a snapshot is taken"
	fi
	sn_destroy "$id"
	ft_wait 10 sn_exited "$watcher" || fail "snapshot_watcher still runs 10 s after destroy"
	wait "$watcher" || rc=$?
	expect_eq "exit status of snapshot_watcher" 0 "$rc"
	ft_wait 10 sn_exited "$waiter" || fail "SNAPSHOT_WAIT_EVENT still waits 10 s after destroy"
	expect_eq "SNAPSHOT_WAIT_EVENT when the snapshot is destroyed" ESRCH "$(cat "$FT_DIR/wait.out")"
	ft_detach "$a"
	# Refused while one filter is left.
	if rmmod blksnap 2>/dev/null; then
		fail "rmmod blksnap succeeded while $b is attached"
	fi
	ft_detach "$b"
	ft_wait 10 ft_refcnt_is 0 || fail "module refcnt is $(ft_refcnt) with no snapshot and no filter"
	rmmod blksnap || fail "rmmod blksnap failed after destroy and detach"
	! module_loaded || fail "/sys/module/blksnap still present after rmmod"
	load_module
	sn_verify "$a" 2 "$a after the unload" --len 4M
	sn_verify "$a" 1 "$a after the unload" --offset 4M
	sm_log_clean
}

test_snapshot_more_cbt_switch_at_each_take_and_wrap() {
	sm_begin
	ft_loop 4M
	local dev=$REPLY store info gen gen2 t0 t1 n=253
	ft_attach "$dev"
	sn_tmpfs 32M
	store=$REPLY
	info=$("$BLKSNAP" cbtinfo -d "$dev")
	gen=$(sed -n 's/^generation_id=//p' <<<"$info")
	sn_uuid_ok "$gen" || fail "cbtinfo printed the generation '$gen'"
	expect_eq "changes_number after attach" 0 "$(sed -n 's/^changes_number=//p' <<<"$info")"
	# Takes 1..253 in one process: each writes block 0 first, so the read
	# copy holds the number of the take in block 0.
	t0=$(date +%s)
	sm_probe cycle "$dev" "$store" 8192 "$n" >"$FT_DIR/cycles" 2>"$FT_DIR/cycles.err" || {
		tail -n 5 "$FT_DIR/cycles" "$FT_DIR/cycles.err"
		fail "a take/destroy cycle failed"
	}
	t1=$(date +%s)
	echo "$n take/destroy cycles took $((t1 - t0)) s"
	seq 1 "$n" | awk -v g="$gen" '{ print $1, g, $1 }' >"$FT_DIR/expected"
	diff "$FT_DIR/expected" "$FT_DIR/cycles" | head -n 10
	cmp -s "$FT_DIR/expected" "$FT_DIR/cycles" ||
		fail "changes_number, generation or map after takes 1..$n (expected < > got above)"
	# The last takes with the CLI: 254 still counts; 255 would make the
	# active number pass 255, so it starts a new generation with
	# changes_number 0 and an empty map; 256 is take 1 of it.
	sm_cli_cycle "$dev" "$store"
	expect_eq "take 254: changes_number generation map" "254 $gen 0=254 " "$REPLY"
	sm_cli_cycle "$dev" "$store"
	gen2=$(cut -d ' ' -f 2 <<<"$REPLY")
	sn_uuid_ok "$gen2" || fail "cbtinfo printed the generation '$gen2' after the wrap"
	[ "$gen2" != "$gen" ] || fail "the generation $gen stayed after the wrap"
	expect_eq "take 255: changes_number generation map" "0 $gen2 " "$REPLY"
	sm_cli_cycle "$dev" "$store"
	expect_eq "take 256: changes_number generation map" "1 $gen2 0=1 " "$REPLY"
}

test_snapshot_more_storage_file_grows_in_steps() {
	sm_begin
	# A growth step of 8192 sectors (4 MiB), a limit of three steps.
	sm_param diff_storage_minimum 8192
	ft_loop 64M
	local dev=$REPLY file id img size mib=$((1 << 20))
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 64M
	file=$REPLY/diff
	: >"$file"
	sn_create "$file" 12M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	size=$(stat -c %s "$file")
	[ "$size" = 0 ] || [ "$size" = $((4 * mib)) ] ||
		fail "the storage file holds $size bytes after the take, neither nothing nor one step"
	# The copies are 256 KiB chunks (chunk_minimum_shift 18). The file grows
	# by a step once no more than half a step (2 MiB) is free.
	"$TAGBLK" write "$dev" --gen 2 --len 256K --order seq >/dev/null
	ft_wait 10 sm_size_is "$file" $((4 * mib)) ||
		fail "the storage file holds $(stat -c %s "$file") bytes after one chunk, not one step (4 MiB)"
	"$TAGBLK" write "$dev" --gen 2 --offset 256K --len 3840K --order seq >/dev/null
	ft_wait 10 sm_size_is "$file" $((8 * mib)) ||
		fail "the storage file holds $(stat -c %s "$file") bytes after 4 MiB of chunks, not two steps (8 MiB)"
	"$TAGBLK" write "$dev" --gen 2 --offset 4M --len 4M --order seq >/dev/null
	ft_wait 10 sm_size_is "$file" $((12 * mib)) ||
		fail "the storage file holds $(stat -c %s "$file") bytes after 8 MiB of chunks, not the 12 MiB limit"
	# 9 MiB used: 3 MiB free, more than half a step; no event yet.
	"$TAGBLK" write "$dev" --gen 2 --offset 8M --len 1M --order seq >/dev/null
	sm_no_event "$id" "with 3 MiB of the storage free"
	# 10 MiB used: half a step free and no room to grow: no_space, with the
	# size the storage was asked to grow to, the 24576-sector (12 MiB) limit
	# (not the 20480 sectors used so far).
	"$TAGBLK" write "$dev" --gen 2 --offset 9M --len 1M --order seq >/dev/null
	sn_wait_event "$id" no_space 10 || {
		cat "$FT_DIR/events" 2>/dev/null
		fail "no no_space event within 10 s of reaching the limit"
	}
	grep -qx 'requested_nr_sect=24576' "$FT_DIR/events" ||
		fail "the no_space event does not report the 24576 sectors asked for: $(cat "$FT_DIR/events")"
	# Only one no_space event; the snapshot goes on within the space left.
	"$TAGBLK" write "$dev" --gen 2 --offset 10M --len 1M --order seq >/dev/null
	sm_no_event "$id" "after the no_space event"
	expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	expect_eq "size of the storage file at the end" $((12 * mib)) "$(stat -c %s "$file")"
	ft_drop_caches
	sn_verify "$img" 1 "the image with 11 MiB copied"
	sn_verify "$dev" 2 "the rewritten start of the original" --len 11M
	sn_verify "$dev" 1 "the rest of the original" --offset 11M
	sn_destroy "$id"
	[ -f "$file" ] || fail "the storage file is gone after destroy"
	sm_restore_params
	expect_eq "diff_storage_minimum restored" 2097152 "$(cat /sys/module/blksnap/parameters/diff_storage_minimum)"
}

test_snapshot_more_ioctl_errnos() {
	sm_begin
	ft_loop 32M
	local a=$REPLY
	ft_loop 32M
	local b=$REPLY
	ft_loop 32M
	local c=$REPLY
	ft_loop 32M
	local d=$REPLY store unknown empty taken other held onfs all p long pid tries
	local bad=(0x10 0xffffffff81000000) # nothing mapped; a kernel address
	sn_tmpfs 64M
	store=$REPLY
	unknown=$(cat /proc/sys/kernel/random/uuid)
	mkfs.ext4 -q -F "$c"
	mkdir "$FT_DIR/c"
	ft_mount ext4 "$c" "$FT_DIR/c"
	: >"$FT_DIR/c/diff"
	mkfifo "$FT_DIR/fifo"
	# A path of PATH_MAX - 1 bytes, whose last name is too long.
	long=$store/$(head -c $((4095 - ${#store} - 1)) /dev/zero | tr '\0' a)
	expect_eq "length of the long path" 4095 "${#long}"
	for p in "$a" "$b" "$c" "$d"; do
		ft_attach "$p"
	done

	# Unknown ids (DESTROY may answer ENODEV or ESRCH, uapi.md §2).
	sm_q "SNAPSHOT_TAKE of an unknown id" ESRCH take "$unknown"
	sm_q "SNAPSHOT_WAIT_EVENT of an unknown id" ESRCH wait "$unknown" 100
	sm_q "SNAPSHOT_DESTROY of an unknown id" "ESRCH|ENODEV" destroy "$unknown"
	sm_q "SNAPSHOTADD to an unknown id" ESRCH add "$a" "$unknown"
	# CREATE: the storage kinds, and what is refused.
	sm_q "SNAPSHOT_CREATE with a directory" "$SM_UUID" create "$store" 32768
	sm_q "SNAPSHOT_CREATE with a directory" "$SM_UUID" create "$store" 32768
	sm_q "SNAPSHOT_CREATE with a directory" "$SM_UUID" create "$store" 32768
	sm_q "SNAPSHOT_CREATE with the block device $d" "$SM_UUID" create "$d" 0
	sm_q "SNAPSHOT_CREATE with a file on $c" "$SM_UUID" create "$FT_DIR/c/diff" 32768
	sm_q "SNAPSHOT_CREATE with $d, the storage of another snapshot" EBUSY create "$d" 0
	sm_q "SNAPSHOT_CREATE with /dev/null, a character device" EINVAL create /dev/null 32768
	sm_q "SNAPSHOT_CREATE with a FIFO" EINVAL create "$FT_DIR/fifo" 32768
	sm_q "SNAPSHOT_CREATE with a missing path" ENOENT create "$store/missing/diff" 32768
	# strndup_user() (mm/util.c) answers EINVAL when no NUL comes within
	# PATH_MAX bytes; a path of PATH_MAX - 1 bytes is copied, and its last
	# name is too long for the lookup.
	sm_q "SNAPSHOT_CREATE with a path of 5000 bytes and no NUL" EINVAL create x 32768 nonul=5000
	sm_q "SNAPSHOT_CREATE with a path of PATH_MAX - 1 bytes" ENAMETOOLONG create "$long" 32768
	for p in "${bad[@]}"; do
		sm_q "SNAPSHOT_CREATE at $p" EFAULT create "$store" 32768 arg="$p"
		sm_q "SNAPSHOT_CREATE with the path at $p" EFAULT create "$store" 32768 path="$p"
	done
	sm_q "SNAPSHOT_COLLECT" 5 collect
	sm_q_run
	empty=${SM_OUT[4]}
	taken=${SM_OUT[5]}
	other=${SM_OUT[6]}
	held=${SM_OUT[7]}
	onfs=${SM_OUT[8]}
	SN_IDS+=("$empty" "$taken" "$other" "$held" "$onfs")
	sn_collect
	all=$REPLY
	expect_eq "snapshots after the creates (the failed ones left none)" \
		"$(printf '%s\n' "${SN_IDS[@]}" | sort)" "$all"

	# TAKE with no devices: ENODEV; twice: EALREADY. SNAPSHOTADD of a device
	# in this snapshot: EALREADY; in another one: EBUSY; to a taken one:
	# EBUSY; of the device that holds the storage: EINVAL.
	sm_q "SNAPSHOT_TAKE with no devices" ENODEV take "$empty"
	sm_q "SNAPSHOTADD" "" add "$a" "$taken"
	sm_q "SNAPSHOTADD of a device already in the snapshot" EALREADY add "$a" "$taken"
	sm_q "SNAPSHOTADD of a device in another snapshot" EBUSY add "$a" "$empty"
	sm_q "SNAPSHOT_TAKE" "" take "$taken"
	sm_q "a second SNAPSHOT_TAKE" EALREADY take "$taken"
	sm_q "SNAPSHOTADD to a taken snapshot" EBUSY add "$b" "$taken"
	sm_q "SNAPSHOTADD of the storage device" EINVAL add "$d" "$held"
	sm_q "SNAPSHOTADD of the device whose filesystem holds the storage" EINVAL add "$c" "$onfs"
	# optlen smaller than the struct.
	sm_q "SNAPSHOTADD with optlen 15" EINVAL add "$b" "$other" optlen=15
	sm_q "SNAPSHOTINFO with optlen 35" EINVAL info "$a" optlen=35
	sm_q "SNAPSHOTINFO" "0 $(sn_image_name "$a")" info "$a"
	sm_q "SNAPSHOTINFO of a device in no snapshot" "0 -" info "$b"
	# Bad user pointers.
	for p in "${bad[@]}"; do
		sm_q "SNAPSHOT_DESTROY at $p" EFAULT destroy "$other" arg="$p"
		sm_q "SNAPSHOT_TAKE at $p" EFAULT take "$other" arg="$p"
		sm_q "SNAPSHOT_COLLECT at $p" EFAULT collect arg="$p"
		sm_q "SNAPSHOT_COLLECT into ids at $p" EFAULT collect count=8 ids="$p"
		sm_q "SNAPSHOT_WAIT_EVENT at $p" EFAULT wait "$other" 100 arg="$p"
		sm_q "SNAPSHOTADD with opt at $p" EFAULT add "$b" "$other" opt="$p"
		sm_q "SNAPSHOTINFO with opt at $p" EFAULT info "$a" opt="$p"
	done
	# COLLECT: ENODATA with the total when the array is too small.
	sm_q "SNAPSHOT_COLLECT with ids 0" 5 collect
	sm_q "SNAPSHOT_COLLECT into 2 ids" "ENODATA 5 $SM_UUID $SM_UUID" collect count=2
	sm_q "SNAPSHOT_COLLECT into 0 ids" "ENODATA 5" collect count=0
	sm_q "SNAPSHOT_COLLECT into 5 ids" "5( $SM_UUID){5}" collect count=5
	sm_q "SNAPSHOT_COLLECT into 8 ids" "5( $SM_UUID){5}" collect count=8
	sm_q "SNAPSHOT_WAIT_EVENT with no event" ENOENT wait "$other" 300
	sm_q_run
	# The last outputs: COLLECT into 2, 0, 5, 8 ids, WAIT_EVENT.
	local n=$((${#SM_OUT[@]} - 5)) i ids
	read -ra ids <<<"${SM_OUT[n]}"
	[ "${ids[2]}" != "${ids[3]}" ] || fail "SNAPSHOT_COLLECT into 2 ids copied one id twice: ${SM_OUT[n]}"
	{ grep -qx "${ids[2]}" <<<"$all" && grep -qx "${ids[3]}" <<<"$all"; } ||
		fail "SNAPSHOT_COLLECT into 2 ids copied an unknown id: ${SM_OUT[n]}"
	for i in 2 3; do
		expect_eq "the ids SNAPSHOT_COLLECT copied" "$all" "$(tr ' ' '\n' <<<"${SM_OUT[n + i]#5 }" | sort)"
	done

	# WAIT_EVENT: EINTR on a signal, ESRCH when the snapshot is destroyed
	# while waited on.
	python3 "$SM_PROBE" wait "$other" 30000 >"$FT_DIR/intr.out" 2>"$FT_DIR/intr.err" &
	pid=$!
	SN_PIDS+=("$pid")
	ft_wait 60 grep -qx waiting "$FT_DIR/intr.err" || fail "the waiter did not start"
	tries=100
	while ! sn_exited "$pid" && ((tries-- > 0)); do
		kill -USR1 "$pid" 2>/dev/null || true
		sleep 0.2
	done
	sn_exited "$pid" || fail "SIGUSR1 did not interrupt SNAPSHOT_WAIT_EVENT"
	expect_eq "SNAPSHOT_WAIT_EVENT interrupted by a signal" EINTR "$(cat "$FT_DIR/intr.out")"
	python3 "$SM_PROBE" wait "$other" 30000 >"$FT_DIR/gone.out" 2>"$FT_DIR/gone.err" &
	pid=$!
	SN_PIDS+=("$pid")
	ft_wait 60 grep -qx waiting "$FT_DIR/gone.err" || fail "the waiter did not start"
	sleep 1
	sn_destroy "$other"
	ft_wait 10 sn_exited "$pid" || fail "SNAPSHOT_WAIT_EVENT still waits 10 s after destroy"
	expect_eq "SNAPSHOT_WAIT_EVENT when the snapshot is destroyed" ESRCH "$(cat "$FT_DIR/gone.out")"

	sm_q "a second SNAPSHOT_DESTROY" "ESRCH|ENODEV" destroy "$other"
	for p in "$empty" "$taken" "$held" "$onfs"; do
		sm_q "SNAPSHOT_DESTROY" "" destroy "$p"
	done
	sm_q "SNAPSHOT_COLLECT at the end" 0 collect
	sm_q_run
	SN_IDS=()
	sm_log_clean
}

# A member's loop device detached (losetup -d) under a taken snapshot is
# held by the module: it stays bound to its file (it cannot be set up again
# over another), keeps its filter and copy-on-write, and its image stays
# the take's, with no event; the detach happens at the destroy, and the
# filter and module reference go with the device.
test_snapshot_more_member_loop_detach_waits_for_destroy() {
	sm_begin
	sn_tmpfs 64M
	local store=$REPLY dev other id img
	ft_loop 32M
	dev=$REPLY
	ft_image 32M
	other=$REPLY
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_create "$store" 32M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	"$TAGBLK" write "$dev" --gen 2 --len 4M >/dev/null
	sn_detach_held "$dev"
	! sm_unfiltered "$dev" || fail "the filter of $dev went with a detach that must wait"
	! losetup "$dev" "$other" 2>/dev/null || fail "$dev was set up again over another file while a member of a snapshot"
	"$TAGBLK" write "$dev" --gen 3 --offset 8M --len 4M >/dev/null
	sn_verify "$img" 1 "the image of $dev, detached under the snapshot"
	expect_eq "snapshot_info of $dev after the detach" "error_code=0" \
		"$("$BLKSNAP" snapshot_info -d "$dev" | grep error_code)"
	sn_destroy "$id"
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy"
	sn_wait_cleared "$dev"
	ft_wait 10 ft_refcnt_is 0 || fail "module refcnt is $(ft_refcnt) with no snapshot and no filter left"
	sm_log_clean
}

# A partition removed by a re-read of the partition table (BLKRRPART) goes
# away like a disk: its filter is dropped and the module reference with it.
# While it is a member of a snapshot, the module holds it open, so the
# re-read is refused (EBUSY) and the image stays the take's; after the
# destroy the re-read works again.
test_snapshot_more_member_partition_reread() {
	sm_begin
	sn_tmpfs 64M
	local store=$REPLY disk p1 id img r0 leaked=0
	sm_filtered_partition
	disk=$REPLY
	p1=${REPLY}p1
	r0=$SM_REFCNT
	# Refused while udev has the partition open: try again.
	ft_wait 30 blockdev --rereadpt "$disk" 2>/dev/null || fail "blockdev --rereadpt $disk kept failing"
	ft_wait 10 test -b "$p1" || fail "$p1 did not come back"
	sm_unfiltered "$p1" || fail "the partition created by the re-read has a filter"
	if ! ft_wait 10 ft_refcnt_is "$r0"; then
		echo "module refcnt is $(ft_refcnt), not $r0, after the filtered $p1 was removed by a re-read"
		leaked=1
	fi

	r0=$(ft_refcnt)
	ft_attach "$p1"
	sn_create "$store" 32M "$p1"
	id=$REPLY
	sn_take "$id"
	sn_image "$p1"
	img=$REPLY
	"$TAGBLK" write "$p1" --gen 2 --len 4M >/dev/null
	ft_settle
	! blockdev --rereadpt "$disk" 2>/dev/null || fail "a re-read of the partition table of $disk removed a member of a snapshot"
	test -b "$p1" || fail "$p1 went away under its snapshot"
	"$TAGBLK" write "$p1" --gen 3 --offset 8M --len 1M >/dev/null
	sn_verify "$img" 1 "the image of $p1 after a refused re-read of the partition table"
	sn_destroy "$id"
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy"
	ft_wait 30 blockdev --rereadpt "$disk" 2>/dev/null || fail "blockdev --rereadpt $disk kept failing after the destroy"
	ft_wait 10 test -b "$p1" || fail "$p1 did not come back"
	if ! ft_wait 10 ft_refcnt_is "$r0"; then
		echo "module refcnt is $(ft_refcnt), not $r0, after the destroy and a re-read (the filter of the removed $p1 stayed)"
		leaked=1
	fi
	# Deleting the disk takes the rest away in any case.
	losetup -d "$disk"
	ft_wait 10 ft_refcnt_is 0 || fail "module refcnt is $(ft_refcnt) after $disk was deleted"
	sm_log_clean
	[ "$leaked" = 0 ] || fail "a removed partition kept its filter (above)"
}

# One partition deleted with BLKPG (delpart) goes away like a disk: its
# filter and module reference go. While it is a member of a snapshot the
# module holds it open, so the deletion is refused (EBUSY) with no event,
# and the image stays the take's; after the destroy it can be deleted.
test_snapshot_more_member_partition_deleted() {
	sm_begin
	sn_tmpfs 64M
	local store=$REPLY disk p1 id img r0
	sm_filtered_partition
	disk=$REPLY
	p1=${REPLY}p1
	r0=$SM_REFCNT
	# Refused while udev has the partition open: try again.
	ft_wait 30 delpart "$disk" 1 2>/dev/null || fail "delpart $disk 1 kept failing"
	ft_wait 10 test ! -b "$p1" || fail "$p1 still present after delpart"
	ft_wait 10 ft_refcnt_is "$r0" ||
		fail "module refcnt is $(ft_refcnt), not $r0, after the filtered $p1 was deleted"

	addpart "$disk" 1 2048 32768
	ft_wait 10 test -b "$p1" || fail "$p1 did not come back after addpart"
	sm_unfiltered "$p1" || fail "the partition added again has a filter"
	ft_attach "$p1"
	sn_create "$store" 32M "$p1"
	id=$REPLY
	sn_take "$id"
	sn_image "$p1"
	img=$REPLY
	ft_settle
	! delpart "$disk" 1 2>/dev/null || fail "delpart removed $p1, a member of a snapshot"
	test -b "$p1" || fail "$p1 went away under its snapshot"
	"$TAGBLK" write "$p1" --gen 3 --len 4M >/dev/null
	sn_verify "$img" 1 "the image of $p1 after a refused delpart"
	expect_eq "snapshot_info of $p1 after the refused delpart" "error_code=0" \
		"$("$BLKSNAP" snapshot_info -d "$p1" | grep error_code)"
	sn_destroy "$id"
	ft_wait 10 test ! -e "$img" || fail "$img still present after destroy"
	ft_wait 30 delpart "$disk" 1 2>/dev/null || fail "delpart $disk 1 kept failing after the destroy"
	ft_wait 10 ft_refcnt_is "$r0" ||
		fail "module refcnt is $(ft_refcnt), not $r0, after destroy and delpart (the deleted $p1 kept its filter)"
	losetup -d "$disk"
	ft_wait 10 ft_refcnt_is 0 || fail "module refcnt is $(ft_refcnt) after $disk was deleted"
	sm_log_clean
}

# The copy-on-write read of the original fails (dm-flakey's error_reads
# under the member): the snapshot is corrupted with EIO, one corrupted event
# says so, its image fails with EIO, and the write that needed the copy
# still reaches the original intact.
test_snapshot_more_copy_read_error_spares_the_original() {
	sm_begin
	local loop sectors name dev id img out
	ft_loop 16M
	loop=$REPLY
	sn_fill "$loop" 1
	name=blksnap-test-$$
	sm_dm_linear "$name" "$loop"
	dev=$REPLY
	sectors=$SM_SECTORS
	ft_attach "$dev"
	# Storage steps of 4 MiB: no no_space event comes before the one awaited.
	sm_param diff_storage_minimum 8192
	sn_tmpfs 32M
	sn_create "$REPLY" 16M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	sn_verify "$img" 1 "the image before any error"

	# From now on every read of the original fails; writes still work.
	sm_dm_table "$name" "0 $sectors flakey $loop 0 0 3600 1 error_reads"
	"$TAGBLK" write "$dev" --gen 2 --offset 4M --len 1M >/dev/null ||
		fail "a write to the original failed when its copy could not be read"
	out=$("$BLKSNAP" snapshot_waitevent -i "$id" -t 10000 | grep -E '^(event|dev_id|err_code)=' | xargs)
	expect_eq "the event of the failed copy" \
		"event=corrupted dev_id=$(sn_devnum "$dev") err_code=5" "$out"
	! "$TAGBLK" verify "$img" --gen 1 --len 64K >"$FT_DIR/img" 2>&1 ||
		fail "the image of a corrupted snapshot still reads"
	grep -q "Input/output error" "$FT_DIR/img" || fail "the image failed without EIO: $(tail -1 "$FT_DIR/img")"

	sm_dm_table "$name" "0 $sectors linear $loop 0"
	sn_verify "$dev" 2 "the written range of the original" --offset 4M --len 1M
	sn_verify "$dev" 1 "the original before the written range" --len 4M
	sn_verify "$dev" 1 "the original after the written range" --offset 5M
	sn_destroy "$id"
	sm_log_clean
}

# Storing a copy fails on its way to the disk (a block-device storage under
# dm-flakey's error_writes; the storage is written through the page cache,
# so the failure comes with write-back): the image never serves what the
# disk holds instead, but fails with EIO; the snapshot is corrupted with
# EIO, and the original holds exactly what was written to it.
test_snapshot_more_storage_write_error_spares_the_original() {
	sm_begin
	local dev sloop sectors name store id img out
	ft_loop 16M
	dev=$REPLY
	sn_fill "$dev" 1
	ft_loop 32M
	sloop=$REPLY
	name=blksnap-store-$$
	sm_dm_linear "$name" "$sloop"
	store=$REPLY
	sectors=$SM_SECTORS
	ft_attach "$dev"
	sm_param diff_storage_minimum 8192
	sn_create "$store" 32M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY

	# From now on every write to the storage's disk fails.
	sm_dm_table "$name" "0 $sectors flakey $sloop 0 0 3600 1 error_writes"
	"$TAGBLK" write "$dev" --gen 2 --offset 8M --len 1M >/dev/null ||
		fail "a write to the original failed when its copy could not be stored"
	# Write the copies back (and fail), then drop them from memory: a read
	# of the image now reaches the storage's disk, which never got them.
	sync
	echo 3 >/proc/sys/vm/drop_caches
	! "$TAGBLK" verify "$img" --gen 1 --offset 8M --len 1M >"$FT_DIR/img" 2>&1 ||
		fail "the image read back copies that never reached the disk"
	grep -q "Input/output error" "$FT_DIR/img" ||
		fail "the image served wrong data instead of EIO: $(tail -2 "$FT_DIR/img")"
	out=$("$BLKSNAP" snapshot_waitevent -i "$id" -t 10000 | grep -E '^(event|dev_id|err_code)=' | xargs)
	expect_eq "the event of the failed store" \
		"event=corrupted dev_id=$(sn_devnum "$dev") err_code=5" "$out"
	expect_eq "snapshot_info of the member" "error_code=-5" \
		"$("$BLKSNAP" snapshot_info -d "$dev" | head -1)"
	sn_verify "$dev" 2 "the written range of the original" --offset 8M --len 1M
	sn_verify "$dev" 1 "the original before the written range" --len 8M
	sn_verify "$dev" 1 "the original after the written range" --offset 9M
	sn_destroy "$id"

	# The storage device's mapping remembers that failure: a new snapshot
	# on the same storage, now healthy, must not count it.
	sm_dm_table "$name" "0 $sectors linear $sloop 0"
	sn_create "$store" 32M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	"$TAGBLK" write "$dev" --gen 3 --offset 12M --len 1M >/dev/null
	sync
	echo 3 >/proc/sys/vm/drop_caches
	sn_verify "$img" 2 "the second image, where the first snapshot's write went" --offset 8M --len 1M
	sn_verify "$img" 1 "the second image, where the new write went" --offset 12M --len 1M
	expect_eq "snapshot_info of the second snapshot" "error_code=0" \
		"$("$BLKSNAP" snapshot_info -d "$dev" | head -1)"
	sn_destroy "$id"
	sm_log_clean
}

test_snapshot_more_whole_disk_member_freezes_its_partitions() {
	sm_begin
	local disk p1 mnt=$FT_DIR/p1 id img sum
	sm_disk_p1 96M 131072
	disk=$SM_DISK
	p1=$SM_P1
	mkfs.ext4 -q -F "$p1"
	mkdir "$mnt"
	ft_mount ext4 "$p1" "$mnt"
	ft_attach "$disk"
	sn_tmpfs 64M
	sn_create "$REPLY" 32M "$disk"
	id=$REPLY
	# Written and fsynced just before the take: in the journal only, until
	# a freeze of the file system writes it home.
	dd if=/dev/urandom of="$mnt/f" bs=64k count=16 conv=fsync status=none
	sum=$(sha256sum <"$mnt/f")
	sn_take "$id"
	sn_image "$disk"
	img=$REPLY
	ft_loop_file "$img" -r -o $((2048 * 512)) --sizelimit $((131072 * 512))
	! dumpe2fs -h "$REPLY" 2>/dev/null | grep needs_recovery >/dev/null ||
		fail "the partition's file system in the image of the whole disk needs a journal replay: the take did not freeze it"
	sn_mount ext4 "$REPLY" "$FT_DIR/image" ro,noload
	expect_eq "checksum of the file fsynced before the take, in the image" "$sum" "$(sha256sum <"$FT_DIR/image/f")"
	sn_umount "$FT_DIR/image"
	losetup -d "$REPLY"
	sn_destroy "$id"
	sm_log_clean
}

# A filter detached while one of its ioctls still runs (a CBTMAP whose
# user buffer maps a MiB of a block device whose reads dm-delay holds 30 s
# there, long beyond what the test's next steps take on a slow machine;
# only there, since udev reads the rest of it after each table change)
# gives up its debugfs directory at once: the filter attached next to the
# device gets a directory of its own, and debugfs reports no name clash.
test_snapshot_more_reattach_gets_its_debugfs_dir_under_an_old_ioctl() {
	sm_begin
	local slow sz dev dir pid out
	ft_loop 16M
	slow=$REPLY
	sz=$(blockdev --getsz "$slow")
	sm_dm blksnap-sm-slow "0 $sz delay $slow 0 0"
	ft_loop 16M
	dev=$REPLY
	ft_attach "$dev"
	dir=$(ft_devdir "$dev")
	[ -d "$dir" ] || fail "$dir missing after attach"
	python3 - "$dev" /dev/mapper/blksnap-sm-slow "$FT_DIR/go" >"$FT_DIR/ctl.out" 2>&1 <<'PY' &
import ctypes, mmap, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
BLKFILTER_CTL, CBTMAP = 0xC0301290, 1
fd = os.open(sys.argv[1], os.O_RDONLY)
f = os.open(sys.argv[2], os.O_RDWR)
mm = mmap.mmap(f, 1 << 20, mmap.MAP_SHARED, offset=8 << 20)
addr = ctypes.addressof(ctypes.c_char.from_buffer(mm))
opt = ctypes.create_string_buffer(struct.pack("<IIQ", 0, 64, addr), 16)
arg = ctypes.create_string_buffer(struct.pack("<32sIIQ", b"blksnap", CBTMAP, 16, ctypes.addressof(opt)), 48)
print("mapped", flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
print("started", flush=True)
rc = libc.ioctl(fd, BLKFILTER_CTL, ctypes.addressof(arg))
print("rc", rc, ctypes.get_errno(), flush=True)
PY
	pid=$!
	SN_PIDS+=("$pid")
	ft_wait 100 grep -qx mapped "$FT_DIR/ctl.out" || fail "the CBTMAP caller did not map its buffer: $(cat "$FT_DIR/ctl.out")"
	# Nothing of the mapped device in the page cache; its reads take 30 s
	# from now on.
	blockdev --flushbufs /dev/mapper/blksnap-sm-slow
	ft_drop_caches
	dmsetup suspend blksnap-sm-slow
	printf '%s\n' "0 16384 linear $slow 0" "16384 2048 delay $slow 16384 30000 $slow 16384 0" \
		"18432 $((sz - 18432)) linear $slow 18432" | dmsetup reload blksnap-sm-slow
	dmsetup resume --noudevsync blksnap-sm-slow
	touch "$FT_DIR/go"
	ft_wait 100 grep -qx started "$FT_DIR/ctl.out" || fail "the CBTMAP caller did not start"
	sleep 0.5
	kill -0 "$pid" 2>/dev/null || fail "the CBTMAP returned before the detach ($(cat "$FT_DIR/ctl.out")): nothing held the old filter"
	ft_detach "$dev"
	[ ! -e "$dir" ] || fail "$dir stayed after detach, with the old filter's CBTMAP still running"
	ft_attach "$dev"
	[ -d "$dir" ] || fail "$dir missing after the attach that followed the detach"
	[ -e "$dir/writes" ] || fail "$dir/writes missing after the attach that followed the detach"
	kill -0 "$pid" 2>/dev/null || fail "the old CBTMAP returned before the attach: nothing held the old filter"
	wait "$pid" || true
	sm_dm_table blksnap-sm-slow "0 $sz delay $slow 0 0"
	out=$(grep '^rc' "$FT_DIR/ctl.out")
	echo "the old CBTMAP answered: $out"
	[ -d "$dir" ] || fail "$dir went away with the old filter, under the new one"
	dmesg | tail -n +$((SM_LOG0 + 1)) | grep "already present" >/dev/null &&
		fail "debugfs reported a directory name clash: $(dmesg | grep 'already present' | tail -n 1)"
	sm_log_clean
}
