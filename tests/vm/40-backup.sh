# `blksnap backup` and `blksnap verify` against the module: a full backup,
# known writes, an incremental backup that equals the image of a new
# snapshot, the fall back to a full copy when the change tracking starts a
# new generation, several devices at one take, a failure half way that
# leaves no snapshot, and SIGINT/SIGTERM in the middle of a copy, which
# destroy the snapshot too.
# Uses the ft_* helpers of 10-filter.sh and the sn_* helpers (and tagblk)
# of 30-snapshot.sh.
# shellcheck shell=bash

# --- Helpers (prefixed bk_) -------------------------------------------------

# bk_backup OUT ERR ARGS...: runs `blksnap backup ARGS`, stdout to OUT and
# stderr to ERR; fails unless it exits with status 0.
bk_backup() {
	local out=$1 err=$2 rc=0
	shift 2
	timeout 600 "$BLKSNAP" backup "$@" >"$out" 2>"$err" || rc=$?
	[ "$rc" -eq 0 ] || fail "blksnap backup $* exited with $rc: $(cat "$err")"
}

# bk_field FILE KEY: the value of KEY=VALUE in the first line of FILE.
bk_field() {
	sed -n "1s/.*\<$2=\([^ ]*\).*/\1/p" "$1"
}

# bk_json FILE KEY: the value of KEY (a number, or a string without quotes
# or commas) in the one-line JSON object of FILE. (sed, not python3, whose
# start alone takes seconds under TCG.)
bk_json() {
	sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" "$1"
}

# bk_cbt DEV KEY: the value of KEY in `blksnap cbtinfo -d DEV`.
bk_cbt() {
	"$BLKSNAP" cbtinfo -d "$1" | sed -n "s/^$2=//p"
}

# bk_no_snapshot WHAT: no snapshot exists and no image is left.
bk_no_snapshot() {
	sn_collect
	expect_eq "snapshots after $1" "" "$REPLY"
	ft_wait 10 bk_no_image || fail "an image is left after $1: $(ls /dev/blksnap-[0-9]* 2>&1)"
}

# bk_no_image: whether no snapshot image exists (/dev/blksnap-control is
# not one).
bk_no_image() {
	! compgen -G '/dev/blksnap-[0-9]*-[0-9]*' >/dev/null
}

# bk_verify FILE IMAGE WHAT: `blksnap verify` finds FILE equal to IMAGE.
bk_verify() {
	local out rc=0
	out=$("$BLKSNAP" verify -f "$1" -i "$2") || rc=$?
	expect_eq "status of verify ($3)" 0 "$rc" || { echo "$out"; return 1; }
	expect_eq "verify ($3)" "equal size=$(blockdev --getsize64 "$2" 2>/dev/null || stat -c %s "$2")" "$out"
}

# bk_sums_ok FILE [verify]: FILE.sha256 matches FILE, by sha256sum, and
# with a second argument also by `blksnap verify -c`.
bk_sums_ok() {
	(cd "$(dirname "$1")" && sha256sum --quiet -c "$(basename "$1").sha256") ||
		fail "sha256sum -c $1.sha256 failed"
	[ $# -lt 2 ] || "$BLKSNAP" verify -f "$1" -c >/dev/null || fail "blksnap verify -c $1 failed"
}

# bk_interrupt SIGNAL DEV STORE OUT: starts a backup of DEV and sends it
# SIGNAL while it copies; it must exit with status 1 naming the signal and
# the destroyed snapshot, and leave no snapshot, image or file behind.
bk_interrupt() {
	local sig=$1 dev=$2 store=$3 out=$4 pid rc=0 err
	"$BLKSNAP" backup -f "$store" -l 64M -d "$dev" -o "$out" >"$FT_DIR/int.out" 2>"$FT_DIR/int.err" &
	pid=$!
	SN_PIDS+=("$pid")
	ft_wait 60 test -e "$out.partial" || fail "no copy to $out.partial began in 60 s: $(cat "$FT_DIR/int.err")"
	sleep 1
	kill -0 "$pid" 2>/dev/null || fail "the backup ended before the $sig: $(cat "$FT_DIR/int.out" "$FT_DIR/int.err")"
	[ -n "$(sn_collect && echo "$REPLY")" ] || fail "no snapshot exists while the backup copies"
	kill -"$sig" "$pid"
	ft_wait 60 sn_exited "$pid" || fail "the backup still runs 60 s after $sig"
	wait "$pid" || rc=$?
	expect_eq "exit status after $sig" 1 "$rc"
	err=$(cat "$FT_DIR/int.err")
	expect_eq "stderr lines after $sig" 1 "$(wc -l <<<"$err")"
	[[ $err == *"interrupted by SIG$sig"* ]] || fail "stderr after $sig does not name it: $err"
	[[ $err == *"was destroyed"* ]] || fail "stderr after $sig does not say the snapshot was destroyed: $err"
	expect_eq "stdout after $sig" "" "$(cat "$FT_DIR/int.out")"
	bk_no_snapshot "the $sig"
	for f in "$out" "$out.partial" "$out.sha256" "$out.state.json"; do
		[ ! -e "$f" ] || fail "$f exists after the $sig"
	done
}

# --- Tests ------------------------------------------------------------------

test_backup_full_then_incremental_equals_the_new_image() {
	sn_begin
	# 8 MiB and 12 KiB: the last 64 KiB CBT block is partial. (Small: the
	# debug build hashes slowly under TCG.)
	ft_image $(((8 << 20) + 12288))
	ft_loop_file "$REPLY"
	local dev=$REPLY size store dir out id img gen want
	FT_ATTACHED+=("$dev")
	size=$(blockdev --getsize64 "$dev")
	sn_fill "$dev" 1
	sn_tmpfs 64M
	store=$REPLY
	dir=$FT_DIR/backup
	mkdir -p "$dir"
	out=$dir/disk.img

	# Full: the filter is attached by the backup itself.
	bk_backup "$FT_DIR/full.out" "$FT_DIR/full.err" -f "$store" -l 16M -d "$dev" -o "$out"
	expect_eq "stderr of the full backup" "" "$(cat "$FT_DIR/full.err")"
	expect_eq "lines of the full backup" 1 "$(wc -l <"$FT_DIR/full.out")"
	expect_eq "device of the full backup" "$dev" "$(bk_field "$FT_DIR/full.out" device)"
	expect_eq "mode of the full backup" full "$(bk_field "$FT_DIR/full.out" mode)"
	expect_eq "bytes copied by the full backup" "$size" "$(bk_field "$FT_DIR/full.out" copied)"
	expect_eq "changes_number of the full backup" 1 "$(bk_field "$FT_DIR/full.out" changes_number)"
	bk_no_snapshot "the full backup"
	expect_eq "size of the backup file" "$size" "$(stat -c %s "$out")"
	sn_verify "$out" 1 "the full backup"
	cmp "$out" "$dev" || fail "the full backup differs from the quiescent device"
	bk_sums_ok "$out"
	expect_eq "sha256 printed" "$(sha256sum <"$out" | cut -d' ' -f1)" "$(bk_field "$FT_DIR/full.out" sha256)"
	gen=$(bk_cbt "$dev" generation_id)
	expect_eq "generation in the state" "$gen" "$(bk_json "$out.state.json" generation_id)"
	expect_eq "changes_number in the state" 1 "$(bk_json "$out.state.json" changes_number)"
	expect_eq "capacity in the state" "$size" "$(bk_json "$out.state.json" device_capacity)"

	# Known writes: 1 MiB at 1 MiB (16 CBT blocks), 4 KiB at 5 MiB (one
	# block), and the partial last block (12 KiB).
	"$TAGBLK" write "$dev" --gen 2 --offset 1M --len 1M >/dev/null
	"$TAGBLK" write "$dev" --gen 2 --offset 5M --len 4K >/dev/null
	"$TAGBLK" write "$dev" --gen 2 --offset $(((8 << 20) + 8192)) --len 4K >/dev/null
	want=$(((1 << 20) + 65536 + 12288))

	bk_backup "$FT_DIR/inc.out" "$FT_DIR/inc.err" -f "$store" -l 16M -d "$dev" -o "$out" --incremental
	expect_eq "stderr of the incremental backup" "" "$(cat "$FT_DIR/inc.err")"
	expect_eq "mode of the incremental backup" incremental "$(bk_field "$FT_DIR/inc.out" mode)"
	expect_eq "bytes copied by the incremental backup" "$want" "$(bk_field "$FT_DIR/inc.out" copied)"
	expect_eq "changes_number of the incremental backup" 2 "$(bk_field "$FT_DIR/inc.out" changes_number)"
	bk_no_snapshot "the incremental backup"
	sn_verify "$out" 2 "the changed 1 MiB in the backup" --offset 1M --len 1M
	sn_verify "$out" 2 "the changed block at 5 MiB in the backup" --offset 5M --len 4K
	sn_verify "$out" 2 "the changed last block in the backup" --offset $(((8 << 20) + 8192))
	sn_verify "$out" 1 "the unchanged start of the backup" --len 1M
	sn_verify "$out" 1 "the unchanged middle of the backup" --offset 2M --len 3M
	sn_verify "$out" 1 "the unchanged end of the backup" --offset $(((5 << 20) + 4096)) --len $(((3 << 20) + 4096))
	bk_sums_ok "$out" verify
	expect_eq "changes_number in the state" 2 "$(bk_json "$out.state.json" changes_number)"

	# The incremental backup equals the image of a new snapshot.
	sn_create "$store" 16M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_image "$dev"
	img=$REPLY
	bk_verify "$out" "$img" "the incremental backup against a new image"
	# A write after the take changes the device, not the image: verify
	# finds exactly that difference with the device.
	"$TAGBLK" write "$dev" --gen 3 --offset 3M --len 4K >/dev/null
	bk_verify "$out" "$img" "the backup against the image after a write to the device"
	local rc=0 text
	text=$("$BLKSNAP" verify -f "$out" -i "$dev") || rc=$?
	expect_eq "status of verify against the changed device" 1 "$rc"
	expect_eq "verify against the changed device" "differ offset=3145728 length=4096
different ranges=1 bytes=4096" "$text"
	sn_destroy "$id"
	bk_no_snapshot "the check"
}

test_backup_new_generation_falls_back_to_full() {
	sn_begin
	ft_loop 4M
	local dev=$REPLY size store out gen1 gen2 rc=0 text
	FT_ATTACHED+=("$dev")
	size=$(blockdev --getsize64 "$dev")
	sn_fill "$dev" 1
	sn_tmpfs 64M
	store=$REPLY
	out=$FT_DIR/disk.img

	# --incremental without a previous backup: full, and said so.
	bk_backup "$FT_DIR/1.out" "$FT_DIR/1.err" -f "$store" -l 16M -d "$dev" -o "$out" -I
	expect_eq "mode without a state" full "$(bk_field "$FT_DIR/1.out" mode)"
	grep -q "no state of a previous backup" "$FT_DIR/1.err" ||
		fail "no note about the missing state: $(cat "$FT_DIR/1.err")"
	gen1=$(bk_json "$out.state.json" generation_id)

	# Detaching and attaching again starts a new generation.
	ft_detach "$dev"
	ft_attach "$dev"
	gen2=$(bk_cbt "$dev" generation_id)
	[ "$gen1" != "$gen2" ] || fail "the generation stayed $gen1 after detach and attach"
	"$TAGBLK" write "$dev" --gen 2 --offset 1M --len 64K >/dev/null

	bk_backup "$FT_DIR/2.out" "$FT_DIR/2.err" -f "$store" -l 16M -d "$dev" -o "$out" --incremental
	expect_eq "mode after a new generation" full "$(bk_field "$FT_DIR/2.out" mode)"
	expect_eq "bytes copied after a new generation" "$size" "$(bk_field "$FT_DIR/2.out" copied)"
	expect_eq "stderr lines after a new generation" 1 "$(wc -l <"$FT_DIR/2.err")"
	grep -q "^blksnap: $dev: copying all of it, not incrementally: the change tracking has a new generation ($gen2, the backup has $gen1)$" "$FT_DIR/2.err" ||
		fail "unexpected note: $(cat "$FT_DIR/2.err")"
	expect_eq "generation in the new state" "$gen2" "$(bk_json "$out.state.json" generation_id)"
	bk_verify "$out" "$dev" "the fallback backup against the quiescent device"
	bk_sums_ok "$out"

	# Nothing written since: the next incremental backup copies nothing.
	bk_backup "$FT_DIR/3.out" "$FT_DIR/3.err" -f "$store" -l 16M -d "$dev" -o "$out" -I
	expect_eq "mode with nothing changed" incremental "$(bk_field "$FT_DIR/3.out" mode)"
	expect_eq "bytes copied with nothing changed" 0 "$(bk_field "$FT_DIR/3.out" copied)"
	expect_eq "stderr with nothing changed" "" "$(cat "$FT_DIR/3.err")"
	bk_verify "$out" "$dev" "the empty incremental backup"

	# A garbled state: full again; --quiet keeps the note to itself.
	echo garbage >"$out.state.json"
	"$TAGBLK" write "$dev" --gen 3 --offset 2M --len 4K >/dev/null
	bk_backup "$FT_DIR/4.out" "$FT_DIR/4.err" -f "$store" -l 16M -d "$dev" -o "$out" -I -q
	expect_eq "mode with a garbled state" full "$(bk_field "$FT_DIR/4.out" mode)"
	expect_eq "stderr with --quiet" "" "$(cat "$FT_DIR/4.err")"
	bk_verify "$out" "$dev" "the backup after a garbled state"
	bk_no_snapshot "the backups"

	# verify tells a difference from equality.
	"$TAGBLK" write "$dev" --gen 4 --offset 0 --len 4K >/dev/null
	text=$("$BLKSNAP" verify -f "$out" -i "$dev") || rc=$?
	expect_eq "status of verify with a difference" 1 "$rc"
	expect_eq "first line of verify with a difference" "differ offset=0 length=4096" "$(head -n 1 <<<"$text")"
}

test_backup_two_devices_at_one_take_with_json() {
	sn_begin
	ft_loop 4M
	local a=$REPLY
	ft_loop 4M
	local b=$REPLY store dir id
	FT_ATTACHED+=("$a" "$b")
	sn_fill "$a" 1
	sn_fill "$b" 2
	sn_tmpfs 64M
	store=$REPLY
	dir=$FT_DIR/backups
	mkdir -p "$dir"
	bk_backup "$FT_DIR/j.out" "$FT_DIR/j.err" --json -f "$store" -l 16M -d "$a" -d "$b" -D "$dir"
	python3 - "$FT_DIR/j.out" "$a" "$b" "$dir" <<-'EOF' || fail "unexpected JSON: $(cat "$FT_DIR/j.out")"
		import json, os, re, sys
		lines = open(sys.argv[1]).read().splitlines()
		assert len(lines) == 1, lines
		o = json.loads(lines[0])
		assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", o["id"]), o
		devs = o["devices"]
		assert [d["device"] for d in devs] == sys.argv[2:4], devs
		for d, dev in zip(devs, sys.argv[2:4]):
		    assert d["output"] == os.path.join(sys.argv[4], os.path.basename(dev) + ".img"), d
		    assert d["mode"] == "full" and "fallback" not in d, d
		    assert d["copied"] == d["size"] == 4 << 20, d
		    assert d["changes_number"] == 1, d
		    assert len(d["sha256"]) == 64, d
	EOF
	sn_verify "$dir/${a##*/}.img" 1 "the backup of the first device"
	sn_verify "$dir/${b##*/}.img" 2 "the backup of the second device"
	bk_sums_ok "$dir/${a##*/}.img"
	bk_sums_ok "$dir/${b##*/}.img"
	bk_no_snapshot "the backup of two devices"
	id=$(bk_json "$FT_DIR/j.out" id)
	"$BLKSNAP" snapshot_destroy -i "$id" 2>/dev/null && fail "the snapshot $id of the backup still existed"
	return 0
}

test_backup_failure_half_way_leaves_no_snapshot() {
	sn_begin
	ft_loop 4M
	local dev=$REPLY store out rc=0 err
	FT_ATTACHED+=("$dev")
	sn_tmpfs 32M
	store=$REPLY
	out=$FT_DIR/x.img
	# /dev/null opens, but takes no filter: the snapshot exists by then.
	"$BLKSNAP" backup -f "$store" -l 8M -d "$dev" -o "$out" -d /dev/null -o "$out.2" \
		>"$FT_DIR/f.out" 2>"$FT_DIR/f.err" || rc=$?
	expect_eq "status of a backup that cannot add a device" 1 "$rc"
	err=$(cat "$FT_DIR/f.err")
	expect_eq "stderr lines" 1 "$(wc -l <<<"$err")"
	[[ $err == *"attaching the blksnap filter on /dev/null"*"was destroyed"* ]] || fail "unexpected error: $err"
	expect_eq "stdout" "" "$(cat "$FT_DIR/f.out")"
	bk_no_snapshot "a failed add"
	if [ -e "$out" ] || [ -e "$out.2" ]; then
		fail "a backup file was written"
	fi
	# A storage that does not exist: nothing is created.
	rc=0
	"$BLKSNAP" backup -f "$FT_DIR/missing" -d "$dev" -o "$out" >/dev/null 2>"$FT_DIR/f.err" || rc=$?
	expect_eq "status with a bad storage" 1 "$rc"
	grep -q SNAPSHOT_CREATE "$FT_DIR/f.err" || fail "unexpected error: $(cat "$FT_DIR/f.err")"
	bk_no_snapshot "a failed create"
}

test_backup_interrupted_by_signals_leaves_no_snapshot() {
	sn_begin
	# Big enough for the copy to take seconds: the slow path.
	ft_loop 256M
	local dev=$REPLY store out
	FT_ATTACHED+=("$dev")
	sn_tmpfs 96M
	store=$REPLY
	out=$FT_DIR/big.img
	bk_interrupt INT "$dev" "$store" "$out"
	bk_interrupt TERM "$dev" "$store" "$out"
	# The device stays usable for the next backup's snapshot.
	sn_create "$store" 16M "$dev"
	sn_destroy "$REPLY"
}
