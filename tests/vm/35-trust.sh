# Trust: what a snapshot must never do silently (issue "trustworthy
# snapshots"). A write already in flight at the take cannot change the
# image afterwards; a member removed while the take runs fails the take or
# corrupts the snapshot, never leaves an image of another device; a take
# that fails changes nothing (no change-map switch, no image, no warning);
# the state-changing ioctls of the control device need CAP_SYS_ADMIN.
# Uses the ft_* helpers of 10-filter.sh, sn_* of 30-snapshot.sh, sm_* of
# 31-snapshot-more.sh and cbt_probe of 20-cbt.sh.
# shellcheck shell=bash

# tr_gen_at DEV OFFSET: prints the generation of the tagged block of DEV
# at byte OFFSET ("gen N"), or what else it holds.
tr_gen_at() {
	local g
	for g in 1 2; do
		if "$TAGBLK" verify "$1" --gen "$g" --offset "$2" --len 4096 >/dev/null 2>&1; then
			echo "gen $g"
			return 0
		fi
	done
	echo "neither generation 1 nor 2"
}

# tr_write_in_flight DEV: whether a write is in flight on the request-based
# DEV: it passed DEV's filter and the driver has it.
tr_write_in_flight() {
	local writes
	read -r _ writes <"/sys/block/${1#/dev/}/inflight"
	[ "$writes" -gt 0 ]
}

# A write that passed the filter before the take and completes after it
# (here held 6 s by dm-delay under a direct-I/O loop device) must not
# change the image once the take has returned: the take waits for the
# writes in flight on its members. Without that wait the image first shows
# the old block, then the new one.
test_trust_write_in_flight_at_take_does_not_change_the_image() {
	sm_begin
	local base sz dev id img before after t0 t1
	ft_loop 16M
	base=$REPLY
	sn_fill "$base" 1
	sz=$(blockdev --getsz "$base")
	sm_dm blksnap-trust-delay "0 $sz delay $base 0 0 $base 0 6000"
	ft_loop_file /dev/mapper/blksnap-trust-delay --direct-io=on
	dev=$REPLY
	expect_eq "direct I/O of $dev" 1 "$(cat "/sys/block/${dev#/dev/}/loop/dio")"
	ft_attach "$dev"
	sn_tmpfs 32M
	sn_create "$REPLY" 16M "$dev"
	id=$REPLY
	"$TAGBLK" write "$dev" --gen 2 --offset 1M --len 4096 >/dev/null &
	SN_PIDS+=($!)
	# The take waits until the write is in flight (held by dm-delay, below
	# the loop device); how long it takes to get there does not matter.
	until tr_write_in_flight "$dev"; do
		if sn_exited "${SN_PIDS[-1]}"; then
			skip "the write ended before it was seen in flight: no take ran under it"
		fi
		sleep 0.1
	done
	t0=$(date +%s%N)
	sn_take "$id"
	t1=$(date +%s%N)
	sn_image "$dev"
	img=$REPLY
	before=$(tr_gen_at "$img" 1M)
	wait "${SN_PIDS[-1]}" || fail "the write in flight failed"
	after=$(tr_gen_at "$img" 1M)
	echo "take took $(((t1 - t0) / 1000000)) ms; the block read $before, then $after"
	expect_eq "the image's block written during the take, read again after the write completed" \
		"$before" "$after"
	expect_eq "the image's block written during the take" "gen 2" "$after"
	sn_verify "$img" 1 "the rest of the image" --len 1M
	sn_destroy "$id"
	sm_log_clean
}

# A member removed (LOOP_CLR_FD, as losetup -d) while the take runs: the
# take fails with ENODEV, or succeeds and the snapshot is corrupted with
# ENODEV; never a taken snapshot that does not know its member is gone. The
# take and the removal run in two threads of one process, the removal a
# little later each round; the storage grows by 256 MiB at the take, which
# widens the window between the take's first check and the publication of
# copy-on-write.
test_trust_take_racing_member_removal() {
	sm_begin
	sm_param diff_storage_minimum 524288
	local store dev id out round delays=(0 0.01 0.02 0.05 0.1 0.2 0.4) bad=0
	sn_tmpfs 600M
	store=$REPLY
	for round in "${!delays[@]}"; do
		ft_loop 8M
		dev=$REPLY
		ft_attach "$dev"
		mkdir "$store/$round"
		id=$(sm_probe create "$store/$round" 524288)
		sn_uuid_ok "$id" || fail "create printed '$id'"
		SN_IDS+=("$id")
		expect_eq "SNAPSHOTADD of $dev" "" "$(sm_probe add "$dev" "$id")"
		out=$(python3 - "$id" "$dev" "${delays[round]}" <<'PY'
import ctypes, errno, os, sys, threading, time, uuid
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
TAKE, LOOP_CLR_FD = 0x40105603, 0x4C01
ctl = os.open("/dev/blksnap-control", os.O_RDWR)
loop = os.open(sys.argv[2], os.O_RDONLY)
buf = ctypes.create_string_buffer(uuid.UUID(sys.argv[1]).bytes, 16)
result = []
def take():
    rc = libc.ioctl(ctl, TAKE, ctypes.addressof(buf))
    result.append("OK" if rc == 0 else errno.errorcode[ctypes.get_errno()])
t = threading.Thread(target=take)
t.start()
time.sleep(float(sys.argv[3]))
libc.ioctl(loop, LOOP_CLR_FD, None)
os.close(loop)
t.join()
print(result[0])
PY
		)
		ft_wait 10 sm_unfiltered "$dev" || fail "the filter of $dev stayed after its removal"
		if [ "$out" = OK ]; then
			# The filter is gone with the device: the error is read
			# through the event.
			if ! sn_wait_event "$id" corrupted 5 2>/dev/null; then
				echo "round $round: take succeeded and no corrupted event came after $dev went away"
				bad=1
			fi
		elif [ "$out" != ENODEV ]; then
			echo "round $round: take answered '$out', not ENODEV"
			bad=1
		fi
		echo "round $round (removal after ${delays[round]} s): take $out"
		sn_destroy "$id"
	done
	sm_log_clean
	[ "$bad" = 0 ] || fail "a take raced by the removal of its member was not refused or corrupted"
}

# After a member was detached (losetup -d) and set up again while its old
# snapshot still lives, that snapshot's image still holds the device's
# name. A take of a new snapshot of the device fails cleanly (EBUSY): no
# change-map switch, no image, nothing in the kernel log; once the old
# snapshot is gone, the same take succeeds.
test_trust_failed_take_changes_nothing() {
	sm_begin
	local dev store old new before after
	sn_tmpfs 64M
	store=$REPLY
	mkdir "$store/old" "$store/new"
	ft_loop 16M
	dev=$REPLY
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_create "$store/old" 16M "$dev"
	old=$REPLY
	sn_take "$old"
	losetup -d "$dev"
	ft_wait 10 sm_unfiltered "$dev" || fail "the filter of $dev stayed after losetup -d"
	ft_image 16M
	losetup "$dev" "$REPLY"
	sn_fill "$dev" 2
	ft_attach "$dev"
	sn_create "$store/new" 16M "$dev"
	new=$REPLY
	before=$(cbt_probe info "$dev")
	sn_expect_error EBUSY "snapshot_take while the old image of $dev exists" \
		timeout 60 "$BLKSNAP" snapshot_take -i "$new"
	after=$(cbt_probe info "$dev")
	expect_eq "CBTINFO after the failed take" "$before" "$after"
	expect_eq "snapshot_info of $dev after the failed take" "error_code=0
image=/dev/" "$("$BLKSNAP" snapshot_info -d "$dev")"
	sm_log_clean
	sn_destroy "$old"
	sn_take "$new"
	sn_image "$dev"
	sn_verify "$REPLY" 2 "the image of the new snapshot"
	sn_destroy "$new"
	sm_log_clean
}

# The control device's commands that change state need CAP_SYS_ADMIN, as
# the block-device filter ioctls do: root without it gets EPERM.
test_trust_control_commands_need_cap_sys_admin() {
	sm_begin
	local store id
	sn_tmpfs 32M
	store=$REPLY
	ft_loop 8M
	ft_attach "$REPLY"
	sn_create "$store" 8M "$REPLY"
	id=$REPLY
	local drop=(setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin)
	sn_expect_error EPERM "snapshot_create without CAP_SYS_ADMIN" \
		"${drop[@]}" "$BLKSNAP" snapshot_create -f "$store" -l 8M
	sn_expect_error EPERM "snapshot_take without CAP_SYS_ADMIN" \
		"${drop[@]}" "$BLKSNAP" snapshot_take -i "$id"
	sn_expect_error EPERM "snapshot_destroy without CAP_SYS_ADMIN" \
		"${drop[@]}" "$BLKSNAP" snapshot_destroy -i "$id"
	# Reading the state needs no privilege beyond the node's mode.
	expect_eq "snapshot_collect without CAP_SYS_ADMIN" "$id" \
		"$("${drop[@]}" "$BLKSNAP" snapshot_collect | tr -d ' \n')"
	expect_eq "snapshots after the refused create" "$id" \
		"$("$BLKSNAP" snapshot_collect | tr -d ' \n')"
	sn_take "$id"
	sn_destroy "$id"
}
