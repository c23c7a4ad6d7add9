# Loading the module and what it registers.
# shellcheck shell=bash

test_module_loads() {
	unload_module
	insmod "$MODULE"
	module_loaded || fail "/sys/module/blksnap missing after insmod"
	dmesg | grep 'blksnap interface 2.0 loaded' >/dev/null || fail "no load message in the kernel log"
}

test_control_device_node() {
	load_module
	[ -c "$CTL" ] || fail "$CTL is not a character device"
	expect_eq "mode of $CTL" 600 "$(stat -c %a "$CTL")"
	expect_eq "owner of $CTL" root "$(stat -c %U "$CTL")"
	local misc_major
	misc_major=$(awk '$2 == "misc" { print $1 }' /proc/devices)
	expect_eq "major of $CTL" "$misc_major" "$((0x$(stat -c %t "$CTL")))"
	grep -q ' blksnap-control$' /proc/misc || fail "blksnap-control not in /proc/misc"
}

test_version_ioctl() {
	load_module
	local v
	v=$("$BLKSNAP" version)
	[[ $v =~ ^2\.0\.[0-9]+\.[0-9]+$ ]] || fail "version '$v' is not 2.0.r.b"
	v=$(ioctl_probe version)
	expect_eq "VERSION through the raw ioctl" "2 0" "${v% * *}"
}

test_unknown_ioctls_get_enotty() {
	load_module
	local out
	out=$(ioctl_probe unknown)
	expect_eq "errnos of unknown control ioctls" "ENOTTY ENOTTY ENOTTY ENOTTY" "$out"
}

test_parameters_have_their_defaults() {
	load_module
	local p expected=(
		tracking_block_minimum_shift=16
		tracking_block_maximum_count=2097152
		tracking_block_maximum_shift=26
		chunk_minimum_shift=18
		chunk_maximum_count_shift=40
		chunk_maximum_shift=26
		chunk_maximum_in_queue=256
		diff_storage_minimum=2097152
		image_writable=0
	)
	for p in "${expected[@]}"; do
		local f=/sys/module/blksnap/parameters/${p%%=*}
		[ -f "$f" ] || fail "parameter ${p%%=*} missing"
		expect_eq "${p%%=*}" "${p#*=}" "$(cat "$f")"
		expect_eq "mode of ${p%%=*}" 644 "$(stat -c %a "$f")"
	done
	expect_eq "number of parameters" "${#expected[@]}" "$(ls /sys/module/blksnap/parameters | wc -l)"
}
