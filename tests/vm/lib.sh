# Helpers for the in-VM tests; sourced by run.sh.
# shellcheck shell=bash

KSFT_SKIP=4
MODULE=$BLKSNAP_ROOT/blksnap.ko
CTL=/dev/blksnap-control
BLKSNAP=$BLKSNAP_ROOT/target/debug/blksnap

# Fails the current test with a message.
fail() {
	echo "$*"
	return 1
}

# Skips the current test with a reason.
skip() {
	echo "$*"
	return "$KSFT_SKIP"
}

# stock_kernel_skip WHAT: on a distribution's stock kernel (BLKSNAP_KERNEL
# other than 6.12), which is tested as it is shipped, skips the current test
# for lacking WHAT; on the test kernel, whose configuration is the
# project's, returns so that the caller fails.
stock_kernel_skip() {
	[ "${BLKSNAP_KERNEL:-6.12}" = 6.12 ] || skip "$BLKSNAP_KERNEL lacks $1: the 6.12 test kernel runs this test"
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
	[ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}

module_loaded() {
	[ -d /sys/module/blksnap ]
}

load_module() {
	module_loaded || insmod "$MODULE"
}

unload_module() {
	! module_loaded || rmmod blksnap
}

# Raw ioctls on the control device, see ioctl_probe.py.
ioctl_probe() {
	python3 "$BLKSNAP_ROOT/tests/vm/ioctl_probe.py" "$@"
}
