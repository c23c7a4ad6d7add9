# blksnap status: the live state of the module in one view. Attached devices
# with their change tracking, snapshots with their members, state and
# storage, a corrupted snapshot with its errno, in text and JSON, and what
# is left unknown when debugfs is not mounted.
# Uses the ft_* helpers of 10-filter.sh and the sn_* helpers of
# 30-snapshot.sh.
# shellcheck shell=bash

# --- Helpers (prefixed st_) --------------------------------------------------

# st_status: runs `blksnap status --json` into $FT_DIR/status.json and the
# text form into $FT_DIR/status.txt; both must succeed.
st_status() {
	"$BLKSNAP" status --json >"$FT_DIR/status.json" || fail "status --json failed"
	"$BLKSNAP" status >"$FT_DIR/status.txt" || fail "status failed"
}

# st_get EXPR: prints the Python expression EXPR over the status object `s`
# (JSON null prints as None).
st_get() {
	python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$FT_DIR/status.json" "$1"
}

# st_expect WHAT EXPR EXPECTED: EXPR over the status object must print
# EXPECTED.
st_expect() {
	local got
	got=$(st_get "$2") || fail "$1: cannot evaluate $2: $(cat "$FT_DIR/status.json")"
	expect_eq "$1" "$3" "$got"
}

# st_dev DEVNUM: a Python expression for the device DEVNUM of the status.
st_dev() {
	echo "[d for d in s['devices'] if d['dev_id'] == '$1'][0]"
}

# st_snap ID: a Python expression for snapshot ID of the status.
st_snap() {
	echo "[x for x in s['snapshots'] if x['id'] == '$1'][0]"
}

# st_stored ID SECTORS: whether the storage of snapshot ID holds at least
# SECTORS of copies (in $FT_DIR/status.json then). The store worker writes
# a copy after the write that needed it went on.
st_stored() {
	local n
	st_status && n=$(st_get "$(st_snap "$1")['storage']['used_sectors']") && [ "$n" -ge "$2" ]
}

# --- Tests ---------------------------------------------------------------------

test_status_shows_devices_snapshots_and_storage() {
	sn_begin
	local a b na nb ia store file id1 id2 d s
	ft_loop 64M
	a=$REPLY
	ft_loop 64M
	b=$REPLY
	na=$(sn_devnum "$a")
	nb=$(sn_devnum "$b")
	ia=/dev/$(sn_image_name "$a")
	ft_attach "$a"
	ft_attach "$b"
	# Before the take: 2 MiB, 32 blocks of 64 KiB, in interval 1.
	dd if=/dev/urandom of="$a" bs=1M count=2 seek=8 oflag=direct status=none
	sn_tmpfs 64M
	store=$REPLY
	file=$store/diff
	: >"$file"
	sn_create "$file" 32M "$a"
	id1=$REPLY
	sn_take "$id1"
	sn_image "$a" >/dev/null
	# After the take: 1 MiB, 16 blocks, copied on write to the storage.
	dd if=/dev/urandom of="$a" bs=1M count=1 oflag=direct status=none
	sn_create "$store" 16M "$b"
	id2=$REPLY
	ft_wait 60 st_stored "$id1" 2048 ||
		fail "the storage of $id1 does not hold the 1 MiB copied: $(cat "$FT_DIR/status.json")"
	st_status

	st_expect "module version" "s['module']['version']" "$("$BLKSNAP" version)"
	st_expect "parameter tracking_block_minimum_shift" \
		"s['module']['parameters']['tracking_block_minimum_shift']" \
		"$(cat /sys/module/blksnap/parameters/tracking_block_minimum_shift)"
	st_expect "number of parameters" "len(s['module']['parameters'])" \
		"$(find /sys/module/blksnap/parameters -type f | wc -l)"
	d=$(st_dev "$na")
	st_expect "device node of $a" "$d['device']" "$a"
	st_expect "block size of $a" "$d['cbt']['block_size']" 65536
	st_expect "block count of $a" "$d['cbt']['block_count']" 1024
	st_expect "capacity of $a" "$d['cbt']['device_capacity']" $((64 << 20))
	st_expect "changes number of $a" "$d['cbt']['changes_number']" 1
	st_expect "generation of $a" "$d['cbt']['generation_id']" \
		"$("$BLKSNAP" cbtinfo -d "$a" | sed -n 's/^generation_id=//p')"
	st_expect "blocks changed before the take on $a" "$d['cbt']['changed_blocks']" 32
	st_expect "blocks written since the take on $a" "$d['cbt']['dirty_blocks']" 16
	st_expect "snapshot of $a" "$d['snapshot']" "$id1"
	st_expect "image of $a" "$d['image']" "$ia"
	st_expect "error code of $a" "$d['error_code']" 0
	st_expect "snapshot of $b" "$(st_dev "$nb")['snapshot']" "$id2"
	st_expect "image of $b" "$(st_dev "$nb")['image']" None
	st_expect "dirty blocks of $b" "$(st_dev "$nb")['cbt']['dirty_blocks']" 0

	s=$(st_snap "$id1")
	st_expect "state of $id1" "$s['state']" taken
	st_expect "error of $id1" "$s['error_code']" 0
	st_expect "members of $id1" "[(m['dev_id'], m['device'], m['image']) for m in $s['members']]" \
		"[('$na', '$a', '$ia')]"
	st_expect "storage kind of $id1" "$s['storage']['kind']" file
	st_expect "storage inode of $id1" "$s['storage']['inode']" "$(stat -c %i "$file")"
	st_expect "storage limit of $id1" "$s['storage']['limit_sectors']" $((32 << 11))
	st_expect "storage used by $id1 holds the 1 MiB copied, within its size and limit" \
		"2048 <= $s['storage']['used_sectors'] <= $s['storage']['capacity_sectors'] <= $((32 << 11))" True
	s=$(st_snap "$id2")
	st_expect "state of $id2" "$s['state']" created
	st_expect "members of $id2" "[(m['dev_id'], m['image']) for m in $s['members']]" "[('$nb', None)]"
	st_expect "storage limit of $id2" "$s['storage']['limit_sectors']" $((16 << 11))
	st_expect "notes" "s['notes']" "[]"

	# The text form: one aligned row per device and per snapshot.
	grep -qE "^  $a +$na +64MiB +64KiB +1024 +1 +32 +16 .* ${id1:0:8} +$ia\$" \
		"$FT_DIR/status.txt" || fail "no row for $a in: $(cat "$FT_DIR/status.txt")"
	grep -qE "^  $id1 +taken +$na +file " "$FT_DIR/status.txt" ||
		fail "no row for $id1 in: $(cat "$FT_DIR/status.txt")"
	grep -qE "^  $id2 +created +$nb +file .* 16MiB\$" "$FT_DIR/status.txt" ||
		fail "no row for $id2 in: $(cat "$FT_DIR/status.txt")"

	# Destroyed, the snapshots are gone from the view; the filters stay.
	sn_destroy "$id1"
	sn_destroy "$id2"
	st_status
	st_expect "snapshots after destroy" "s['snapshots']" "[]"
	st_expect "snapshot of $a after destroy" "$(st_dev "$na")['snapshot']" None
	st_expect "image of $a after destroy" "$(st_dev "$na")['image']" None
	grep -qx '  none' "$FT_DIR/status.txt" || fail "no 'none' under snapshots: $(cat "$FT_DIR/status.txt")"
}

test_status_shows_a_corrupted_snapshot_with_its_errno() {
	sn_begin
	local dev n store file id s
	ft_loop 128M
	dev=$REPLY
	n=$(sn_devnum "$dev")
	ft_attach "$dev"
	sn_tmpfs 64M
	store=$REPLY
	file=$store/diff
	: >"$file"
	sn_create "$file" 4M "$dev"
	id=$REPLY
	sn_take "$id"
	# 64 MiB of changes for 4 MiB of storage.
	"$TAGBLK" write "$dev" --gen 2 --len 64M --order seq --jobs 4 ||
		fail "writes to the original failed while the snapshot overflowed"
	sn_wait_event "$id" corrupted 30 || fail "no corrupted event within 30 s"
	st_status
	s=$(st_snap "$id")
	st_expect "state of $id" "$s['state']" corrupted
	st_expect "error of $id" "$s['error_code']" -28
	st_expect "device of the error of $id" "$s['error_dev']" "$n"
	st_expect "storage limit of $id" "$s['storage']['limit_sectors']" $((4 << 11))
	st_expect "error code of $dev" "$(st_dev "$n")['error_code']" -28
	grep -qE "^  $id +corrupted +$n " "$FT_DIR/status.txt" ||
		fail "no corrupted row for $id in: $(cat "$FT_DIR/status.txt")"
	grep -qxF "  $id corrupted on $n: No space left on device (error -28)" "$FT_DIR/status.txt" ||
		fail "no errno line for $id in: $(cat "$FT_DIR/status.txt")"
}

test_status_without_debugfs_leaves_details_unknown() {
	sn_begin
	local dev n id
	ft_loop 32M
	dev=$REPLY
	n=$(sn_devnum "$dev")
	ft_attach "$dev"
	sn_tmpfs 16M
	sn_create "$REPLY" 8M "$dev"
	id=$REPLY
	# debugfs is unmounted in a mount namespace of the command alone.
	unshare --mount --propagation private bash -c 'umount -l /sys/kernel/debug &&
		"$1" status --json >"$2/status.json" && "$1" status >"$2/status.txt"' - "$BLKSNAP" "$FT_DIR" ||
		fail "status failed without debugfs"
	# The device is found by asking every block device.
	st_expect "device $n found without debugfs" "$(st_dev "$n")['device']" "$dev"
	st_expect "changes number of $dev" "$(st_dev "$n")['cbt']['changes_number']" 0
	st_expect "dirty blocks of $dev" "$(st_dev "$n")['cbt']['dirty_blocks']" None
	st_expect "snapshot $id listed" "[x['id'] for x in s['snapshots']]" "['$id']"
	st_expect "state of $id" "$(st_snap "$id")['state']" None
	st_expect "notes" "len(s['notes'])" 2
	# Its snapshot is unknown too: '?', not '-'.
	grep -qE "^  $dev +$n +32MiB +64KiB +512 +0 +0 +\? +[0-9a-f-]{36} +\? +-\$" "$FT_DIR/status.txt" ||
		fail "no row for $dev with unknowns in: $(cat "$FT_DIR/status.txt")"
	grep -q "^note: snapshot members, state and storage are unknown" "$FT_DIR/status.txt" ||
		fail "no note in: $(cat "$FT_DIR/status.txt")"
}
