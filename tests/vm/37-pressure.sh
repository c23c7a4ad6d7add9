# Memory pressure: snapshots held while writers hammer the member, with the
# writers and the CLI in a memory cgroup with a tight limit, and with the
# slab and page allocations made under the module's code failing
# (failslab and fail_page_alloc, restricted to the module's text by their
# stack-trace filter). Every case ends in bounded time with the original
# equal to a shadow copy that received the same writes, and the image
# either exactly the device at the take, with no corrupted event, or the
# snapshot corrupted, with a corrupted event and an image that fails with
# EIO. (A very low dirty
# limit is the case of 36-engine.sh.) The test kernel is built with the
# memory controller and fault injection (scripts/kconfig/test.config):
# without them these tests fail, they do not skip.
# Uses the ft_*, sn_*, sm_*, dv_* and en_* helpers.
# shellcheck shell=bash

PR_CG=
PR_CG_ROOT=
PR_FAULTS=(failslab fail_page_alloc)
PR_FAULT_PROBE=$BLKSNAP_ROOT/tests/vm/fault_probe.py

# --- Helpers (prefixed pr_; every test calls pr_begin first) ---------------

pr_begin() {
	PR_CG=
	PR_CG_ROOT=
	sm_begin
	trap pr_cleanup EXIT
}

# Injection off, out of the cgroup and the cgroup removed (its processes
# killed), then what sm_cleanup undoes. Silent.
pr_cleanup() {
	set +e
	local i
	pr_inject_off >/dev/null 2>&1
	for i in "${SN_PIDS[@]}"; do
		kill "$i"
		wait "$i"
	done >/dev/null 2>&1
	SN_PIDS=()
	if [ -n "$PR_CG" ] && [ -d "$PR_CG" ]; then
		pr_leave_cgroup
		echo 1 >"$PR_CG/cgroup.kill"
		ft_wait 10 pr_cgroup_empty
		rmdir "$PR_CG"
	fi >/dev/null 2>&1
	sm_cleanup
}

# --- Memory cgroup ----------------------------------------------------------

# pr_cgroup LIMIT: a memory cgroup v2 (cgroup2 mounted if it is not) whose
# memory.max is LIMIT, without swap -> $PR_CG.
pr_cgroup() {
	PR_CG_ROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	if [ -z "$PR_CG_ROOT" ]; then
		PR_CG_ROOT=/sys/fs/cgroup
		if mountpoint -q "$PR_CG_ROOT"; then
			PR_CG_ROOT=$FT_DIR/cgroup2
			mkdir -p "$PR_CG_ROOT"
			FT_MOUNTS+=("$PR_CG_ROOT")
		fi
		mount -t cgroup2 none "$PR_CG_ROOT" || fail "cannot mount cgroup2 on $PR_CG_ROOT"
	fi
	grep -qw memory "$PR_CG_ROOT/cgroup.controllers" ||
		fail "no memory controller in cgroup2: the test kernel needs CONFIG_MEMCG (scripts/kconfig/test.config)"
	grep -qw memory "$PR_CG_ROOT/cgroup.subtree_control" ||
		echo +memory >"$PR_CG_ROOT/cgroup.subtree_control"
	PR_CG=$PR_CG_ROOT/blksnap-pressure-$BASHPID
	mkdir "$PR_CG"
	echo "$1" >"$PR_CG/memory.max"
	[ ! -e "$PR_CG/memory.swap.max" ] || echo 0 >"$PR_CG/memory.swap.max"
}

# Moves the test's shell into the cgroup: what it starts from now on (the
# CLI, the writers) is charged to it and reclaimed at its limit.
pr_enter_cgroup() {
	echo "$BASHPID" >"$PR_CG/cgroup.procs"
}

pr_leave_cgroup() {
	echo "$BASHPID" >"$PR_CG_ROOT/cgroup.procs"
}

pr_cgroup_empty() {
	[ -z "$(cat "$PR_CG/cgroup.procs")" ]
}

# pr_cgroup_event NAME: a counter of the cgroup's memory.events.
pr_cgroup_event() {
	awk -v n="$1" '$1 == n { print $2 }' "$PR_CG/memory.events"
}

# The cgroup reached its limit (so the run was under pressure) and killed
# nothing.
pr_cgroup_check() {
	local max oom
	max=$(pr_cgroup_event max)
	oom=$(pr_cgroup_event oom_kill)
	echo "memory cgroup: limit reached $max times, peak $(cat "$PR_CG/memory.peak" 2>/dev/null || echo ?) bytes, $oom killed"
	expect_eq "processes the memory cgroup's OOM killer killed" 0 "$oom"
	[ "$max" -gt 0 ] || fail "the writers never reached the cgroup's limit: no memory pressure"
}

# --- Fault injection --------------------------------------------------------

# pr_module_text: prints "START END" (hex, no 0x) of the module's code: the
# lowest and the highest address of its text symbols, the end rounded up to
# a page past the last.
pr_module_text() {
	local range
	range=$(awk '$NF == "[blksnap]" && $2 ~ /^[tT]$/ { print $1 }' /proc/kallsyms | sort | sed -n '1p;$p' | xargs)
	[ -n "$range" ] || fail "no text symbols of blksnap in /proc/kallsyms"
	[[ ${range%% *} != 0000000000000000 ]] || fail "/proc/kallsyms hides the addresses"
	printf '%x %x\n' $((16#${range%% *})) $(((16#${range##* } + 8192) & ~4095))
}

# pr_fault_setup: failslab and fail_page_alloc restricted to allocations
# with the module's code on the stack, sleeping ones included, pages of
# every order; nothing injected yet (probability 0).
pr_fault_setup() {
	local f d text
	text=$(pr_module_text)
	echo "module text for the filter: 0x${text% *}-0x${text#* } (.text at $(cat /sys/module/blksnap/sections/.text))"
	for f in "${PR_FAULTS[@]}"; do
		d=/sys/kernel/debug/$f
		[ -d "$d" ] || stock_kernel_skip "fault injection ($d)" || return
		[ -d "$d" ] || fail "no $d: the test kernel needs CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC and CONFIG_FAULT_INJECTION_DEBUG_FS (scripts/kconfig/test.config)"
		[ -e "$d/require-start" ] || stock_kernel_skip "fault injection's stack-trace filter" || return
		[ -e "$d/require-start" ] ||
			fail "no $d/require-start: the test kernel needs CONFIG_FAULT_INJECTION_STACKTRACE_FILTER (scripts/kconfig/test.config)"
		echo 0 >"$d/probability"
		echo "0x${text% *}" >"$d/require-start"
		echo "0x${text#* }" >"$d/require-end"
		echo 32 >"$d/stacktrace-depth"
		echo N >"$d/ignore-gfp-wait"
		echo 1 >"$d/verbose"
		echo 0 >"$d/space"
		echo N >"$d/task-filter"
	done
	echo N >/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem
	echo 0 >/sys/kernel/debug/fail_page_alloc/min-order
}

# pr_inject INTERVAL TIMES: from now on every INTERVAL-th allocation under
# the module's code fails, TIMES times at most, for slabs and pages each.
pr_inject() {
	local f d
	for f in "${PR_FAULTS[@]}"; do
		d=/sys/kernel/debug/$f
		echo "$1" >"$d/interval"
		echo "$2" >"$d/times"
		echo 100 >"$d/probability"
	done
}

# Stops the injection; puts back the defaults of what pr_fault_setup set.
pr_inject_off() {
	local f d
	for f in "${PR_FAULTS[@]}"; do
		d=/sys/kernel/debug/$f
		[ -d "$d" ] || continue
		echo 0 >"$d/probability"
		echo 1 >"$d/interval"
		echo 1 >"$d/times"
		echo 2 >"$d/verbose"
		echo Y >"$d/ignore-gfp-wait"
		echo 0 >"$d/require-start"
		echo 0xffffffffffffffff >"$d/require-end"
	done
	[ ! -d /sys/kernel/debug/fail_page_alloc ] || {
		echo Y >/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem
		echo 1 >/sys/kernel/debug/fail_page_alloc/min-order
	}
}

# pr_injected TIMES: prints how many failures were injected since pr_inject
# with TIMES, as "slab+page".
pr_injected() {
	echo "$(($1 - $(cat /sys/kernel/debug/failslab/times)))+$(($1 - $(cat /sys/kernel/debug/fail_page_alloc/times)))"
}

# pr_sweep STAGE DEV STORAGE LIMIT: fault_probe.py's sweep of STAGE (see
# there); prints its summary line and the rounds that failed with another
# errno than ENOMEM.
pr_sweep() {
	local rc=0
	timeout 900 python3 "$PR_FAULT_PROBE" sweep "$@" 100000 >"$FT_DIR/sweep-$1" 2>&1 || rc=$?
	if [ "$rc" != 0 ]; then
		tail -n 8 "$FT_DIR/sweep-$1"
		[ "$rc" != 124 ] || fail "the sweep of $1 did not end within 900 s"
		fail "the sweep of $1 failed (above)"
	fi
	echo "$1: $(tail -n 1 "$FT_DIR/sweep-$1")"
	grep -v -E 'result=(OK|ENOMEM)$' "$FT_DIR/sweep-$1" | head -n -1 || true
}

# --- Writers, shadow copy, outcome ------------------------------------------

# pr_member SIZE: a loop device of SIZE holding generation 1, attached
# (-> $PR_DEV), its shadow copy (-> $PR_SHADOW), and a file of generation 2
# for the same offsets (-> $PR_GEN2), both on tmpfs.
pr_member() {
	local t
	ft_loop "$1"
	PR_DEV=$REPLY
	sn_fill "$PR_DEV" 1
	ft_attach "$PR_DEV"
	sn_tmpfs $((2 * $(blockdev --getsize64 "$PR_DEV") + (16 << 20)))
	t=$REPLY
	PR_SHADOW=$t/shadow
	PR_GEN2=$t/gen2
	dd if="$PR_DEV" of="$PR_SHADOW" bs=1M iflag=direct status=none
	truncate -s "$(blockdev --getsize64 "$PR_DEV")" "$PR_GEN2"
	"$TAGBLK" write "$PR_GEN2" --gen 2 --order seq --jobs 2 >/dev/null 2>&1
}

# pr_writers TARGET DIRECT-MIB BUFFERED-MIB: generation 2 over the first
# DIRECT-MIB MiB of TARGET with O_DIRECT, four threads in a fixed random
# order, and over the next BUFFERED-MIB MiB through the page cache (dd,
# then fsync). In the background on the member (each bounded by a timeout;
# pids -> PR_WRITERS); in the foreground on the shadow copy.
pr_writers() {
	local t=$1 d=$2 b=$3
	if [ "$t" = "$PR_SHADOW" ]; then
		"$TAGBLK" write "$t" --gen 2 --len "${d}M" --order seq >/dev/null 2>&1
		dd if="$PR_GEN2" of="$t" bs=1M skip="$d" seek="$d" count="$b" conv=notrunc status=none
		return
	fi
	PR_WRITERS=()
	timeout 300 "$TAGBLK" write "$t" --gen 2 --len "${d}M" --order random --jobs 4 --seed 37 \
		>"$FT_DIR/direct.log" 2>&1 &
	PR_WRITERS+=($!)
	timeout 300 dd if="$PR_GEN2" of="$t" bs=1M skip="$d" seek="$d" count="$b" conv=notrunc,fsync \
		status=none >"$FT_DIR/buffered.log" 2>&1 &
	PR_WRITERS+=($!)
	SN_PIDS+=("${PR_WRITERS[@]}")
}

# pr_reader IMG: reads and checks the image (generation 1) in the
# background while the writers run -> $PR_READER.
pr_reader() {
	timeout 300 "$TAGBLK" verify "$1" --gen 1 >"$FT_DIR/reader.log" 2>&1 &
	PR_READER=$!
	SN_PIDS+=("$PR_READER")
}

# pr_wait_writers: every writer ended in time and wrote all it had to.
pr_wait_writers() {
	local p rc bad=0
	for p in "${PR_WRITERS[@]}"; do
		rc=0
		wait "$p" || rc=$?
		if [ "$rc" = 124 ]; then
			echo "a writer to the original did not finish within 300 s"
			bad=1
		elif [ "$rc" != 0 ]; then
			echo "a writer to the original failed with status $rc"
			bad=1
		fi
	done
	[ "$bad" = 0 ] || {
		cat "$FT_DIR/direct.log" "$FT_DIR/buffered.log"
		fail "writes to the original did not all complete (above)"
	}
}

# pr_original_ok: the member equals its shadow copy.
pr_original_ok() {
	cmp "$PR_DEV" "$PR_SHADOW" >"$FT_DIR/cmp.log" 2>&1 || {
		cat "$FT_DIR/cmp.log"
		fail "the original differs from its shadow copy"
	}
}

# pr_no_corrupted_event ID: the events queued for snapshot ID (no_space
# ones, when the storage reached its limit) include no corrupted one.
pr_no_corrupted_event() {
	local out i
	for i in 1 2 3 4 5 6 7 8; do
		out=$("$BLKSNAP" snapshot_waitevent -i "$1" -t 500)
		[ "$out" != result=timeout ] || return 0
		grep -qx 'event=no_space' <<<"$out" ||
			fail "an event of a snapshot that is not corrupted: $(xargs <<<"$out")"
	done
	fail "more than 8 events queued for a snapshot that is not corrupted"
}

# pr_outcome ID DEV IMG: the snapshot is intact and its image is exactly
# generation 1 with no corrupted event queued; or it is corrupted:
# error_code negative, a corrupted event naming DEV with that error (after
# no_space events, if any), and the image fails with EIO. Prints which.
# With IMG empty the image is not read.
pr_outcome() {
	local code out i
	code=$("$BLKSNAP" snapshot_info -d "$2" -f error_code)
	if [ "$code" = 0 ]; then
		[ -z "$3" ] || sn_verify "$3" 1 "the image of a snapshot that is not corrupted"
		pr_no_corrupted_event "$1"
		echo "outcome: the snapshot is intact, its image exact"
	else
		[[ $code =~ ^-[0-9]+$ ]] || fail "snapshot_info error_code is '$code'"
		for i in 1 2 3 4 5 6 7 8; do
			out=$(dv_event "$1")
			[ "$out" != event=no_space ] || continue
			break
		done
		expect_eq "the event of the corrupted snapshot" \
			"event=corrupted dev_id=$(sn_devnum "$2") err_code=$((-code))" "$out"
		[ -z "$3" ] || dv_image_eio "$3" "a corrupted snapshot"
		echo "outcome: the snapshot is corrupted with error $code, and the event says so"
	fi
}

# pr_reader_ok: the image read during the writes held generation 1, or
# (when the snapshot is corrupted) failed with EIO from some block on.
pr_reader_ok() {
	local rc=0
	wait "$PR_READER" || rc=$?
	[ "$rc" != 124 ] || fail "the reader of the image did not finish within 300 s"
	[ "$rc" = 0 ] && return 0
	if grep -q mismatch "$FT_DIR/reader.log" || ! grep -q "Input/output error" "$FT_DIR/reader.log"; then
		tail -n 4 "$FT_DIR/reader.log"
		fail "the image read during the writes was not generation 1, and did not fail with EIO"
	fi
	[ "$("$BLKSNAP" snapshot_info -d "$PR_DEV" -f error_code)" != 0 ] ||
		fail "the image read during the writes failed with EIO, but the snapshot is not corrupted"
}

# pr_block_case STORAGE-KIND: a 64 MiB member in a taken snapshot whose
# storage is a directory on ext4 over a loop disk (dir) or a loop block
# device (bdev) -> PR_DEV, PR_ID, PR_IMG.
pr_block_case() {
	local store
	pr_member 64M
	if [ "$1" = dir ]; then
		en_ext4 256M "$FT_DIR/store"
		store=$FT_DIR/store
	else
		ft_loop 96M
		store=$REPLY
	fi
	sn_create "$store" 96M "$PR_DEV"
	PR_ID=$REPLY
	sn_take "$PR_ID"
	sn_image "$PR_DEV"
	PR_IMG=$REPLY
}

# --- Tests: memory cgroup ---------------------------------------------------

# The CLI and the writers in a 32 MiB memory cgroup without swap: the
# snapshot of a 96 MiB member is created and taken from it, then 24 MiB are
# written with O_DIRECT and 56 MiB through the page cache of the member,
# while the image is read; the storage is a directory on ext4 over a loop
# disk.
test_pressure_memory_cgroup_storage_on_ext4() {
	pr_begin
	local store
	pr_cgroup 32M
	pr_member 96M
	en_ext4 256M "$FT_DIR/store"
	store=$FT_DIR/store
	pr_enter_cgroup
	sn_create "$store" 128M "$PR_DEV"
	PR_ID=$REPLY
	sn_take "$PR_ID"
	sn_image "$PR_DEV"
	PR_IMG=$REPLY
	pr_reader "$PR_IMG"
	pr_writers "$PR_DEV" 24 56
	pr_wait_writers
	pr_reader_ok
	pr_leave_cgroup
	pr_cgroup_check
	pr_writers "$PR_SHADOW" 24 56
	pr_original_ok
	pr_outcome "$PR_ID" "$PR_DEV" "$PR_IMG"
	sn_destroy "$PR_ID"
	pr_original_ok
	sm_log_clean
}

# The same cgroup over an ext4 member whose files are written (64 MiB
# buffered and 16 MiB with O_DIRECT into new files, the file from before the take overwritten in
# place), the storage a loop block device: the original's files match
# their shadow copies, the image holds the file from before the take as it
# was, none of the new ones, and checks clean.
test_pressure_memory_cgroup_ext4_member_storage_on_block_device() {
	pr_begin
	local src store want_b want_d want_o p rc
	pr_cgroup 32M
	sn_tmpfs 128M
	src=$REPLY
	head -c 64M /dev/urandom >"$src/buffered"
	head -c 16M /dev/urandom >"$src/direct"
	head -c 8M /dev/urandom >"$src/over"
	want_b=$(sha256sum <"$src/buffered")
	want_d=$(sha256sum <"$src/direct")
	EN_MEMBER=$FT_DIR/member
	en_ext4 192M "$EN_MEMBER"
	EN_DEV=$REPLY
	head -c 16M /dev/urandom >"$EN_MEMBER/before"
	sync
	EN_BEFORE=$(sha256sum <"$EN_MEMBER/before")
	# The file from before the take, with its first 8 MiB overwritten.
	cp "$EN_MEMBER/before" "$src/before"
	dd if="$src/over" of="$src/before" bs=1M conv=notrunc status=none
	want_o=$(sha256sum <"$src/before")
	ft_attach "$EN_DEV"
	ft_loop 160M
	store=$REPLY
	pr_enter_cgroup
	sn_create "$store" 160M "$EN_DEV"
	EN_ID=$REPLY
	sn_take "$EN_ID"
	sn_image "$EN_DEV"
	EN_IMG=$REPLY
	PR_WRITERS=()
	timeout 300 dd if="$src/buffered" of="$EN_MEMBER/after" bs=1M conv=fsync status=none &
	PR_WRITERS+=($!)
	timeout 300 dd if="$src/direct" of="$EN_MEMBER/direct" bs=1M oflag=direct status=none &
	PR_WRITERS+=($!)
	timeout 300 dd if="$src/over" of="$EN_MEMBER/before" bs=1M oflag=direct conv=notrunc status=none &
	PR_WRITERS+=($!)
	SN_PIDS+=("${PR_WRITERS[@]}")
	for p in "${PR_WRITERS[@]}"; do
		rc=0
		wait "$p" || rc=$?
		[ "$rc" = 0 ] || fail "a writer to the member's files exited with $rc (124: not within 300 s)"
	done
	timeout 120 sync "$EN_MEMBER/after" || fail "sync of the member did not finish within 120 s"
	pr_leave_cgroup
	pr_cgroup_check
	expect_eq "the buffered file, against its shadow" "$want_b" "$(sha256sum <"$EN_MEMBER/after")"
	expect_eq "the O_DIRECT file, against its shadow" "$want_d" "$(sha256sum <"$EN_MEMBER/direct")"
	expect_eq "the file overwritten in place, against its shadow" "$want_o" "$(sha256sum <"$EN_MEMBER/before")"
	if [ "$("$BLKSNAP" snapshot_info -d "$EN_DEV" -f error_code)" = 0 ]; then
		sn_mount ext4 "$EN_IMG" "$FT_DIR/image" ro,noload
		[ ! -e "$FT_DIR/image/direct" ] || fail "the image shows a file written after the take"
		sn_umount "$FT_DIR/image"
		# Checks the file from before and the absence of "after", runs
		# fsck, destroys.
		en_ext4_image_ok
		echo "outcome: the snapshot is intact, its image exact"
	else
		pr_outcome "$EN_ID" "$EN_DEV" "$EN_IMG"
		sn_destroy "$EN_ID"
	fi
	sm_log_clean
}

# --- Tests: fault injection -------------------------------------------------

# Attach, create, add and take, each with its 1st, 2nd, ... allocation under
# the module's code failing (per-task fail-nth), until one goes through:
# each either fails with an errno and leaves nothing behind, or succeeds;
# then a snapshot works as usual and the module's references are back.
test_pressure_faults_in_attach_create_add_take() {
	pr_begin
	local dev store refcnt
	pr_fault_setup
	ft_loop 32M
	dev=$REPLY
	sn_fill "$dev" 1
	en_ext4 128M "$FT_DIR/store"
	store=$FT_DIR/store
	refcnt=$(ft_refcnt)
	FT_ATTACHED+=("$dev")
	pr_sweep attach "$dev" "$store" 65536
	expect_eq "module references after the attach sweep" "$refcnt" "$(ft_refcnt)"
	ft_attach "$dev"
	refcnt=$(ft_refcnt)
	pr_sweep create "$dev" "$store" 65536
	pr_sweep add "$dev" "$store" 65536
	pr_sweep take "$dev" "$store" 65536
	pr_inject_off
	ft_wait 10 ft_refcnt_is "$refcnt" || fail "module references $(ft_refcnt) after the sweeps, $refcnt before"
	sn_collect
	expect_eq "snapshots left after the sweeps" "" "$REPLY"
	# Whatever failed on the way, a snapshot of the device still works.
	sn_storage_cycle "$store" 16M
	sn_destroy "$REPLY"
	sm_log_clean
}

# pr_faults_while_copying STORAGE-KIND INTERVAL TIMES: a taken snapshot,
# then every INTERVAL-th allocation under the module's code fails (at most
# TIMES of each kind) while 40 MiB are written with O_DIRECT and 24 MiB
# through the page cache and the image is read: every write reaches the
# original, and the snapshot is either intact with an exact image or
# corrupted with its event.
pr_faults_while_copying() {
	pr_begin
	local n
	pr_fault_setup
	pr_block_case "$1"
	pr_reader "$PR_IMG"
	pr_inject "$2" "$3"
	pr_writers "$PR_DEV" 40 24
	pr_wait_writers
	pr_reader_ok
	n=$(pr_injected "$3")
	pr_inject_off
	echo "allocation failures injected (slab+page): $n"
	[ "$n" != 0+0 ] || fail "no allocation under the module's code failed: the filter missed it"
	pr_writers "$PR_SHADOW" 40 24
	pr_original_ok
	pr_outcome "$PR_ID" "$PR_DEV" "$PR_IMG"
	sn_destroy "$PR_ID"
	pr_original_ok
	sm_log_clean
}

test_pressure_faults_while_copying_storage_on_ext4() {
	pr_faults_while_copying dir 4 400
}

test_pressure_faults_while_copying_storage_on_block_device() {
	pr_faults_while_copying bdev 4 400
}

# A few failures far apart: the allocations the engine can do without
# (mempools, retries) are seen failing too, not only the first that
# corrupts.
test_pressure_sparse_faults_while_copying_storage_on_block_device() {
	pr_faults_while_copying bdev 97 8
}

# One allocation failure, the first under the module's code after the
# take, when a write reaches an untouched chunk and nothing else is in
# flight: the copy waits the shortage out, the snapshot stays intact.
test_pressure_one_allocation_failure_spares_the_snapshot() {
	pr_begin
	local n
	pr_fault_setup
	pr_block_case bdev
	pr_inject 1 1
	dd if="$PR_GEN2" of="$PR_DEV" bs=4k count=1 oflag=direct conv=notrunc status=none ||
		fail "the write to the original failed"
	n=$(pr_injected 1)
	pr_inject_off
	echo "allocation failures injected (slab+page): $n"
	[ "${n%+*}" = 1 ] || fail "the slab allocation under the module's code did not fail once: $n"
	expect_eq "snapshot_info -f error_code after one allocation failure" 0 \
		"$("$BLKSNAP" snapshot_info -d "$PR_DEV" -f error_code)"
	sn_verify "$PR_IMG" 1 "the image after one allocation failure" --len 1M
	dd if="$PR_GEN2" of="$PR_SHADOW" bs=4k count=1 conv=notrunc status=none
	pr_original_ok
	sn_destroy "$PR_ID"
	sm_log_clean
}
