# Module parameters: each has a valid range, checked at load and on every
# write through sysfs (EINVAL outside it), and what they size at a take or
# an attach is bounded, so a bad size fails with ENOMEM, never with a
# kernel warning or the OOM killer (Documentation/blksnap.rst, "Module
# parameters"). The sm_*, sn_* and ft_* helpers are those of 31-, 30- and
# 10-*.sh.
# shellcheck shell=bash

# NAME MIN MAX of every parameter, as the documentation lists them.
PR_RANGES="tracking_block_minimum_shift 9 31
tracking_block_maximum_count 1 1073741824
tracking_block_maximum_shift 9 31
chunk_minimum_shift 9 30
chunk_maximum_count_shift 0 63
chunk_maximum_shift 9 30
chunk_maximum_in_queue 1 65536
diff_storage_minimum 2048 2147483648
image_writable 0 1"

# What the kernel log must not show after a bad size, on top of SM_BAD_LOG.
PR_OOM_LOG='invoked oom-killer|Out of memory|oom_reaper|page allocation failure|vmalloc error'

# pr_log_clean: no warning, oops or OOM in the kernel log since sm_begin.
pr_log_clean() {
	local bad
	bad=$(dmesg | tail -n +$((SM_LOG0 + 1)) | grep -E "$SM_BAD_LOG|$PR_OOM_LOG" || true)
	if [ -n "$bad" ]; then
		echo "$bad" | head -20
		fail "the kernel log reports problems"
	fi
}

test_params_writes_outside_the_range_fail_and_keep_the_value() {
	load_module
	# One python3 for all the writes: each value is written alone, with one
	# write(2), as `echo VALUE >FILE` does.
	python3 - "$PR_RANGES" <<'EOF'
import errno, os, sys

DIR = "/sys/module/blksnap/parameters/"
failures = []


def write(name, value):
    fd = os.open(DIR + name, os.O_WRONLY)
    try:
        os.write(fd, (value + "\n").encode())
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        os.close(fd)


def read(name):
    with open(DIR + name) as f:
        return f.read().strip()


for line in sys.argv[1].splitlines():
    name, lo, hi = line.split()
    lo, hi = int(lo), int(hi)
    old = read(name)
    bad = [str(hi + 1), "4294967295", "4294967296", "-1", "abc", ""]
    if lo > 0:
        bad.append(str(lo - 1))
    for value in bad:
        if value == "4294967295" and hi == 4294967295:
            continue
        got = write(name, value)
        if got != "EINVAL":
            failures.append(f"{name}={value!r}: {got}, not EINVAL")
        if read(name) != old:
            failures.append(f"{name}={value!r} changed the value to {read(name)}")
    for value in (lo, hi):
        got = write(name, str(value))
        if got != "ok" or read(name) != str(value):
            failures.append(f"{name}={value}: {got}, reads {read(name)}")
    if write(name, old) != "ok" or read(name) != old:
        failures.append(f"{name}: could not restore {old}")

for f in failures:
    print(f)
sys.exit(1 if failures else 0)
EOF
}

test_params_outside_the_range_fail_insmod() {
	unload_module
	local arg out rc
	for arg in chunk_minimum_shift=31 chunk_minimum_shift=255 chunk_maximum_shift=8 \
		tracking_block_minimum_shift=32 tracking_block_maximum_shift=4294967296 \
		tracking_block_maximum_count=0 tracking_block_maximum_count=1073741825 \
		chunk_maximum_count_shift=64 chunk_maximum_in_queue=0 \
		diff_storage_minimum=0 image_writable=2; do
		rc=0
		out=$(insmod "$MODULE" "$arg" 2>&1) || rc=$?
		if [ "$rc" = 0 ]; then
			unload_module
			fail "insmod blksnap.ko $arg succeeded"
		fi
		module_loaded && fail "blksnap is loaded after insmod $arg failed"
		# EINVAL, which kmod's insmod calls "Invalid parameters".
		[[ $out == *"Invalid parameters"* || $out == *"Invalid argument"* ]] ||
			fail "insmod blksnap.ko $arg: $out"
	done
	# The ends of the ranges load, and stay as given.
	insmod "$MODULE" chunk_minimum_shift=30 chunk_maximum_shift=9 \
		tracking_block_maximum_count=1073741824 diff_storage_minimum=2048 image_writable=1
	expect_eq chunk_minimum_shift 30 "$(cat /sys/module/blksnap/parameters/chunk_minimum_shift)"
	expect_eq chunk_maximum_shift 9 "$(cat /sys/module/blksnap/parameters/chunk_maximum_shift)"
	expect_eq tracking_block_maximum_count 1073741824 \
		"$(cat /sys/module/blksnap/parameters/tracking_block_maximum_count)"
	unload_module
	load_module
	expect_eq "chunk_minimum_shift after a plain load" 18 \
		"$(cat /sys/module/blksnap/parameters/chunk_minimum_shift)"
}

test_params_largest_chunks_on_a_small_device() {
	sm_begin
	# 1 GiB chunks, the top of the range, on a 64 MiB device: the one
	# chunk is the whole device and its buffers need no more than it.
	sm_param chunk_minimum_shift 30
	sm_param chunk_maximum_shift 30
	ft_loop 64M
	local dev=$REPLY store id img out rc=0
	sn_fill "$dev" 1
	ft_attach "$dev"
	sn_tmpfs 160M
	store=$REPLY
	sn_create "$store" 128M "$dev"
	id=$REPLY
	out=$(timeout 120 "$BLKSNAP" snapshot_take -i "$id" 2>&1) || rc=$?
	if [ "$rc" = 0 ]; then
		sn_image "$dev"
		img=$REPLY
		"$TAGBLK" write "$dev" --gen 2 --offset 1M --len 1M >/dev/null
		ft_drop_caches
		sn_verify "$img" 1 "the image of a device in one 64 MiB chunk"
		sn_verify "$dev" 2 "the rewritten original" --offset 1M --len 1M
		expect_eq "snapshot_info -f error_code" 0 "$("$BLKSNAP" snapshot_info -d "$dev" -f error_code)"
	else
		# Allowed, but only as a clean ENOMEM.
		[[ $out == *"Cannot allocate memory"* ]] ||
			fail "take with 1 GiB chunks on a 64 MiB device: $out"
	fi
	sn_destroy "$id"
	pr_log_clean
}

test_params_oversized_allocations_fail_with_enomem() {
	sm_begin
	local dir dev id
	sn_tmpfs 64M
	dir=$REPLY
	# A sparse 1 TiB device.
	truncate -s 1T "$dir/disk"
	ft_loop_file "$dir/disk"
	dev=$REPLY
	# 512-byte tracking blocks, as many as the range allows: 2^31 blocks
	# would be needed, two maps of 2 GiB.
	sm_param tracking_block_minimum_shift 9
	sm_param tracking_block_maximum_shift 9
	sm_param tracking_block_maximum_count 1073741824
	sn_expect_error ENOMEM "attach with 2 GiB maps" "$BLKSNAP" attach -d "$dev"
	sm_restore_params
	ft_attach "$dev"
	# 1 GiB chunks: three one-chunk buffers per member, 3 GiB in a 2 GiB
	# machine.
	sm_param chunk_minimum_shift 30
	sm_param chunk_maximum_shift 30
	sn_create "$dir" 16M "$dev"
	id=$REPLY
	sn_expect_error ENOMEM "take with 1 GiB chunks" timeout 120 "$BLKSNAP" snapshot_take -i "$id"
	sn_destroy "$id"
	# 512-byte chunks: 2^31 of them. The chunk table holds only the chunks
	# written since the take, so the take needs no table of the device's
	# size and succeeds.
	sm_param chunk_minimum_shift 9
	sm_param chunk_maximum_shift 9
	sm_param chunk_maximum_count_shift 63
	sn_create "$dir" 16M "$dev"
	id=$REPLY
	sn_take "$id"
	sn_destroy "$id"
	pr_log_clean
}
