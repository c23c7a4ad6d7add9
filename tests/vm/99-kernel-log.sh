# The kernel log check: always the last test of a run.
# shellcheck shell=bash

test_kernel_log_is_clean() {
	local kmemleak=/sys/kernel/debug/kmemleak
	if [ -w "$kmemleak" ]; then
		echo scan >"$kmemleak"
		sleep 1
		echo scan >"$kmemleak"
		if [ -s "$kmemleak" ]; then
			head -40 "$kmemleak"
			fail "kmemleak reports leaks"
		fi
	fi
	local bad
	bad=$(dmesg | grep -nE 'Oops|BUG:|WARNING:|Call Trace:|general protection|kernel BUG|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|UBSAN:|kmemleak:.*new suspected|refcount_t:|list_(add|del) corruption|Kernel panic|hung_task|soft lockup|blocked for more than' || true)
	if [ -n "$bad" ]; then
		echo "$bad" | head -20
		fail "the kernel log reports problems"
	fi
}
