# Unloading: runs after every other module test.
# shellcheck shell=bash

test_module_unloads_cleanly() {
	load_module
	rmmod blksnap
	! module_loaded || fail "/sys/module/blksnap still present after rmmod"
	[ ! -e "$CTL" ] || fail "$CTL still present after rmmod"
	# A second load after an unload must work as well as the first.
	insmod "$MODULE"
	[ -c "$CTL" ] || fail "$CTL missing after reload"
	rmmod blksnap
}
