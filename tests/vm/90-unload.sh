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

test_cli_without_module_fails_with_one_line() {
	unload_module
	local err rc=0
	err=$("$BLKSNAP" version 2>&1 >/dev/null) || rc=$?
	expect_eq "exit status of blksnap version without the module" 1 "$rc"
	expect_eq "lines on stderr" 1 "$(wc -l <<<"$err")"
	[[ $err == *"$CTL"* ]] || fail "the error does not name $CTL: $err"
}
