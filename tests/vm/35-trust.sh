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

# tr_write_in_flight DEV: whether a write is in flight on DEV: it passed
# DEV's filter and the driver has it (for a bio-based DEV, as its I/O
# accounting counts it).
tr_write_in_flight() {
	local writes
	read -r _ writes <"/sys/block/${1#/dev/}/inflight"
	[ "$writes" -gt 0 ]
}

# tr_delayed_loop NAME: /dev/mapper/NAME, a dm-delay device that holds
# each write 6 s (reads at once) over a 16 MiB loop device of generation 1.
tr_delayed_loop() {
	local base sz
	ft_loop 16M
	base=$REPLY
	sn_fill "$base" 1
	sz=$(blockdev --getsz "$base")
	sm_dm "$1" "0 $sz delay $base 0 0 $base 0 6000"
}

# tr_delayed_write NAME: dm-delay device NAME holds a write now (its
# status counts the reads, writes and flushes it delays).
tr_delayed_write() {
	local writes
	writes=$(dmsetup status "$1" | awk '{ print $5 }')
	[ "${writes:-0}" -gt 0 ]
}

# tr_take_under_a_write DEV [IN_FLIGHT CMD...]: DEV (holding generation 1,
# attached, its writes held for seconds below its queue) is snapshotted
# while a write of generation 2 at 1 MiB is in flight, as IN_FLIGHT CMD...
# tells (default: tr_write_in_flight DEV): the image's block must read the
# same before and after the write completed, and hold that write (the take
# waited for it); the rest of the image is generation 1.
tr_take_under_a_write() {
	local dev=$1 id img before after t0 t1
	local in_flight=(tr_write_in_flight "$dev")
	[ $# -gt 1 ] && in_flight=("${@:2}")
	sn_tmpfs 32M
	sn_create "$REPLY" 16M "$dev"
	id=$REPLY
	"$TAGBLK" write "$dev" --gen 2 --offset 1M --len 4096 >/dev/null &
	SN_PIDS+=($!)
	# The take waits until the write is in flight (held by dm-delay below
	# DEV); how long it takes to get there does not matter.
	until "${in_flight[@]}"; do
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
}

# A write that passed the filter before the take and completes after it
# (here held 6 s by dm-delay under a direct-I/O loop device) must not
# change the image once the take has returned: the take waits for the
# writes in flight on its members. Without that wait the image first shows
# the old block, then the new one.
test_trust_write_in_flight_at_take_does_not_change_the_image() {
	sm_begin
	local dev
	tr_delayed_loop blksnap-trust-delay
	ft_loop_file /dev/mapper/blksnap-trust-delay --direct-io=on
	dev=$REPLY
	expect_eq "direct I/O of $dev" 1 "$(cat "/sys/block/${dev#/dev/}/loop/dio")"
	ft_attach "$dev"
	tr_take_under_a_write "$dev"
	sm_log_clean
}

# The same for a bio-based member, a logical volume as LVM makes one
# (dm-linear) over dm-delay: device-mapper holds the write below its own
# queue, which a queue freeze does not wait for; the take waits for the
# writes its I/O accounting counts in flight.
test_trust_write_in_flight_at_take_on_a_logical_volume() {
	sm_begin
	local dev
	tr_delayed_loop blksnap-trust-lvdelay
	sm_dm_linear blksnap-trust-lv /dev/mapper/blksnap-trust-lvdelay
	dev=$REPLY
	ft_attach "$dev"
	tr_take_under_a_write "$dev"
	sm_log_clean
}

# The same for a member that is a device-mapper target which keeps writes
# in a worker of its own before its driver counts them (dm-delay here, as
# dm-crypt, dm-thin and dm-cache do): the write is not in the device's
# I/O accounting while dm-delay holds it, so the take waits for the writes
# the filter passed to a bio-based member until they complete.
test_trust_write_in_flight_at_take_in_a_dm_target_worker() {
	sm_begin
	local dev
	tr_delayed_loop blksnap-trust-worker
	dev=$(readlink -f /dev/mapper/blksnap-trust-worker)
	ft_attach "$dev"
	tr_take_under_a_write "$dev" tr_delayed_write blksnap-trust-worker
	sm_log_clean
}

# A member detached (LOOP_CLR_FD, as losetup -d) while the take runs: the
# module holds its members open from SNAPSHOTADD on, so the detach is only
# marked for the last close and the take succeeds with an exact image and
# no event, whenever the detach comes; the device is cleared at the
# destroy. The take and the detach run in two threads of one process, the
# detach a little later each round; the storage grows by 256 MiB at the
# take, which widens the window between the take's first check and the
# publication of copy-on-write.
test_trust_take_racing_member_detach() {
	sm_begin
	sm_param diff_storage_minimum 524288
	local store dev id out round delays=(0 0.01 0.02 0.05 0.1 0.2 0.4) bad=0
	sn_tmpfs 600M
	store=$REPLY
	for round in "${!delays[@]}"; do
		ft_loop 8M
		dev=$REPLY
		sn_fill "$dev" 1
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
rc = libc.ioctl(loop, LOOP_CLR_FD, None)
clr = "OK" if rc == 0 else errno.errorcode[ctypes.get_errno()]
os.close(loop)
t.join()
print(result[0], clr)
PY
		)
		echo "round $round (detach after ${delays[round]} s): take and detach: $out"
		if [ "$out" != "OK OK" ]; then
			echo "round $round: take and LOOP_CLR_FD answered '$out', not 'OK OK'"
			bad=1
		fi
		if sn_loop_unbound "$dev"; then
			echo "round $round: $dev lost its backing file under its snapshot"
			bad=1
		else
			sn_image "$dev"
			sm_image_holds "$REPLY" 1 "round $round: the image of $dev" || bad=1
			expect_eq "round $round: snapshot_info of $dev" "error_code=0" \
				"$("$BLKSNAP" snapshot_info -d "$dev" | grep error_code)" || bad=1
		fi
		sn_destroy "$id"
		sn_wait_cleared "$dev"
	done
	sm_log_clean
	[ "$bad" = 0 ] || fail "a take raced by the detach of its member went wrong (above)"
}

# A member's loop device detached while its snapshot lives stays that
# snapshot's: a new snapshot of the device is refused at SNAPSHOTADD
# (EBUSY) and changes nothing (no change-map switch, no image, nothing in
# the kernel log); once the old snapshot is gone the detach happens, and
# the device set up again over another file can be snapshotted.
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
	sn_detach_held "$dev"
	sn_create "$store/new" 16M
	new=$REPLY
	before=$(cbt_probe info "$dev")
	expect_eq "SNAPSHOTADD of $dev, still in the old snapshot" EBUSY "$(sm_probe add "$dev" "$new")"
	sn_expect_error ENODEV "snapshot_take of a snapshot without members" \
		timeout 60 "$BLKSNAP" snapshot_take -i "$new"
	after=$(cbt_probe info "$dev")
	expect_eq "CBTINFO after the refused add and take" "$before" "$after"
	sm_log_clean
	sn_destroy "$old"
	sn_wait_cleared "$dev"
	ft_image 16M
	losetup "$dev" "$REPLY"
	sn_fill "$dev" 2
	ft_attach "$dev"
	expect_eq "SNAPSHOTADD of $dev set up again" "" "$(sm_probe add "$dev" "$new")"
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

# A full fstrim of a mounted member while its snapshot stands, with a
# storage far smaller than what is trimmed: the discards are completed
# without a copy and without reaching the device, so the storage does not
# fill, no event comes, the image stays the take's byte for byte, and the
# change map marks none of the trimmed blocks.
test_trust_fstrim_under_a_snapshot_costs_no_copy() {
	sm_begin
	sm_param diff_storage_minimum 16384
	local dev mnt=$FT_DIR/trim store id img before after trimmed changed
	ft_loop 256M
	dev=$REPLY
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$dev" >/dev/null
	mkdir -p "$mnt"
	ft_mount ext4 "$dev" "$mnt"
	# Free blocks that still hold data: what a trim gives up.
	dd if=/dev/urandom of="$mnt/gone" bs=1M count=160 conv=fsync status=none
	rm "$mnt/gone"
	sync
	ft_attach "$dev"
	sn_tmpfs 64M
	store=$REPLY
	sn_create "$store" 32M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/cbt0" >/dev/null
	before=$(sha256sum <"$img")
	trimmed=$(fstrim -v "$mnt" | sed -nE 's/.*\(([0-9]+) bytes\) trimmed.*/\1/p')
	[ "${trimmed:-0}" -ge $((128 << 20)) ] || fail "fstrim trimmed ${trimmed:-nothing}, not the 160 MiB freed"
	sync
	expect_eq "snapshot_info -f error_code after fstrim" 0 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	expect_eq "snapshot_waitevent after fstrim" "result=timeout" \
		"$("$BLKSNAP" snapshot_waitevent -i "$id" -t 2000 | head -n 1)"
	ft_drop_caches
	after=$(sha256sum <"$img")
	expect_eq "the image's checksum after fstrim" "$before" "$after"
	"$BLKSNAP" readcbtmap -d "$dev" -f "$FT_DIR/cbt1" >/dev/null
	changed=$(cmp -l "$FT_DIR/cbt0" "$FT_DIR/cbt1" | wc -l)
	# The journal may commit a few blocks meanwhile; the trim covered
	# thousands.
	[ "$changed" -le 64 ] || fail "fstrim marked $changed blocks changed in the change map"
	sn_destroy "$id"
	sm_log_clean
}

# The same for an md RAID1 member whose two mirrors are under dm-delay: md
# holds the write below its own queue until both mirrors completed it; the
# take waits for it by md's I/O accounting.
test_trust_write_in_flight_at_take_on_an_md_raid1() {
	command -v mdadm >/dev/null || skip "mdadm is not installed"
	modprobe raid1 2>/dev/null || true
	grep -q '\[raid1\]' /proc/mdstat 2>/dev/null || skip "this kernel has no RAID1 (CONFIG_MD_RAID1)"
	sm_begin
	local a b sz md dev d
	ft_loop 20M
	a=$REPLY
	ft_loop 20M
	b=$REPLY
	sz=$(blockdev --getsz "$a")
	sm_dm blksnap-trust-mda "0 $sz delay $a 0 0"
	sm_dm blksnap-trust-mdb "0 $sz delay $b 0 0"
	md=/dev/md/blksnap-trust
	mdadm --create "$md" --run --level=1 --raid-devices=2 --metadata=1.2 --assume-clean \
		--bitmap=none /dev/mapper/blksnap-trust-mda /dev/mapper/blksnap-trust-mdb \
		>"$FT_DIR/mdadm.log" 2>&1 || fail "mdadm --create failed: $(cat "$FT_DIR/mdadm.log")"
	SM_MDS+=("$md")
	dev=$(readlink -f "$md")
	# The array stays active (no superblock write before the test's write).
	echo 3600 >"/sys/block/${dev##*/}/md/safe_mode_delay"
	sn_fill "$dev" 1
	for d in a b; do
		sm_dm_table "blksnap-trust-md$d" "0 $sz delay ${!d} 0 0 ${!d} 0 6000"
	done
	ft_attach "$dev"
	tr_take_under_a_write "$dev"
	sm_log_clean
}

# A member's capacity changed (LOOP_SET_CAPACITY after its file grew) while
# the take freezes it: the area the take made for the old capacity must not
# serve an image with no event. The member's file system has dirty data
# and the member is a direct-I/O loop device over a file on dm-delay, so
# the take's freeze (which writes the data back) lasts seconds; the change
# is made once that write-back is in flight on the member, inside the
# freeze, however slow the machine; the snapshot is then corrupted with
# ENODEV.
test_trust_capacity_change_during_the_take_corrupts() {
	sm_begin
	# Storage steps of 8 MiB: no no_space event.
	sm_param diff_storage_minimum 16384
	local base sz lower=$FT_DIR/lower mnt=$FT_DIR/member dev id out ev
	ft_loop 96M
	base=$REPLY
	sz=$(blockdev --getsz "$base")
	sm_dm blksnap-trust-slow "0 $sz delay $base 0 0"
	mkfs.ext4 -q -F /dev/mapper/blksnap-trust-slow >/dev/null
	mkdir -p "$lower" "$mnt"
	ft_mount ext4 /dev/mapper/blksnap-trust-slow "$lower"
	truncate -s 32M "$lower/member.img"
	ft_loop_file "$lower/member.img" --direct-io=on
	dev=$REPLY
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev" >/dev/null
	ft_mount ext4 "$dev" "$mnt"
	ft_attach "$dev"
	sn_tmpfs 64M
	sn_create "$REPLY" 32M "$dev"
	id=$REPLY
	# Writes of the file system below take a second each from now on.
	sm_dm_table blksnap-trust-slow "0 $sz delay $base 0 0 $base 0 1000"
	dd if=/dev/urandom of="$mnt/dirty" bs=64k count=4 status=none
	out=$(python3 - "$id" "$dev" "$lower/member.img" <<'PY'
import ctypes, errno, os, sys, threading, time, uuid
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
TAKE, LOOP_SET_CAPACITY = 0x40105603, 0x4C07
ctl = os.open("/dev/blksnap-control", os.O_RDWR)
loop = os.open(sys.argv[2], os.O_RDONLY)
buf = ctypes.create_string_buffer(uuid.UUID(sys.argv[1]).bytes, 16)
result = []
t0 = time.monotonic()
def take():
    rc = libc.ioctl(ctl, TAKE, ctypes.addressof(buf))
    result.append("OK" if rc == 0 else errno.errorcode[ctypes.get_errno()])
    result.append(time.monotonic() - t0)
t = threading.Thread(target=take)
t.start()
# Inside the take's freeze: its write-back is in flight on the member.
inflight = "/sys/block/%s/inflight" % os.path.basename(sys.argv[2])
while int(open(inflight).read().split()[1]) == 0 and t.is_alive():
    time.sleep(0.01)
os.truncate(sys.argv[3], 48 << 20)
rc = libc.ioctl(loop, LOOP_SET_CAPACITY, None)
changed = time.monotonic() - t0
os.close(loop)
t.join()
print(result[0], "OK" if rc == 0 else errno.errorcode[ctypes.get_errno()],
      "%.2f" % changed, "%.2f" % result[1])
PY
	)
	echo "take, change, change at s, take done at s: $out"
	read -r take change at done <<<"$out"
	expect_eq "take and LOOP_SET_CAPACITY" "OK OK" "$take $change"
	python3 -c 'import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))' "$at" "$done" ||
		fail "the capacity changed after the take had returned: nothing raced"
	sn_wait_event "$id" corrupted 10 || fail "no corrupted event after a capacity change during the take: $(cat "$FT_DIR/events" 2>/dev/null)"
	expect_eq "snapshot_info -f error_code" -19 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	sm_dm_table blksnap-trust-slow "0 $sz delay $base 0 0"
	sn_destroy "$id"
	sm_log_clean
}
