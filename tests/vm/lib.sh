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
