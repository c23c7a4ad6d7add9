#!/usr/bin/env bash
# The whole test run, as `make test` and CI do it:
#   1. host checks, once: cargo test, clippy, rustfmt, checkpatch on the C
#      helpers, the user-space builds;
#   2. for each kernel of KERNELS (default: every supported one, as lib.sh
#      names them): the module build with the kernel's clippy and no
#      warnings, and the in-VM tests (tests/vm, KTAP) on that kernel,
#      shared out among VM_SHARDS guests run at once (default: one per
#      core), then a scan of their console logs; on a Debian kernel, the
#      Debian packages installed with apt, DKMS building the module, and
#      removed (scripts/deb-test.sh); a line "KERNEL: N passed, N failed,
#      N skipped";
#   3. the total line last: "total: N passed, N failed, N skipped".
#
#   scripts/test.sh [--host-only] [PATTERN]   PATTERN selects in-VM tests
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BLKSNAP_ROOT"

host_only=
[ "${1:-}" = --host-only ] && { host_only=1; shift; }
pattern=${1:-.}
KERNELS=${KERNELS:-$DEFAULT_KERNELS}
passed=0 failed=0 skipped=0
results=$BLKSNAP_ROOT/build/test
rm -rf "$results" && mkdir -p "$results"

lines=()
# The summary line of the current kernel: what was counted since kp/kf/ks.
kernel_line() {
	lines+=("$kernel: $((passed - kp)) passed, $((failed - kf)) failed, $((skipped - ks)) skipped")
}
pass() { passed=$((passed + 1)); printf 'ok     %s\n' "$1"; }
failc() { failed=$((failed + 1)); printf 'FAILED %s\n' "$1"; }

# check NAME CMD...: one host check; its output is shown only on failure.
check() {
	local name=$1 log=$results/${1// /_}.log
	shift
	if "$@" >"$log" 2>&1; then
		pass "$name"
	else
		failc "$name"
		tail -40 "$log" | sed 's/^/    /'
	fi
}

msg "host checks"
# cargo test: every test case counts on its own.
if cargo test --workspace --color never >"$results/cargo-test.log" 2>&1; then :; fi
read -r cp cf < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$results/cargo-test.log")
if ! grep -q '^test result:' "$results/cargo-test.log" || grep -q '^error' "$results/cargo-test.log"; then
	failc "cargo test (did not run)"
	tail -40 "$results/cargo-test.log" | sed 's/^/    /'
fi
passed=$((passed + cp)); failed=$((failed + cf))
printf '%-6s cargo test: %d passed, %d failed\n' "$([ "$cf" -eq 0 ] && echo ok || echo FAILED)" "$cp" "$cf"
[ "$cf" -eq 0 ] || grep -E '^(test .* FAILED|---- |thread .* panicked)' "$results/cargo-test.log" | sed 's/^/    /'

check "cargo clippy -D warnings" cargo clippy --workspace --all-targets --color never -- -D warnings
check "rustfmt (user space)" cargo fmt --all --check
check "rustfmt (module)" rustfmt --check --edition 2021 src/blksnap_rs.rs
check "checkpatch (C helpers)" "$(checkpatch)" --no-tree --strict -q -f src/glue/*.c include/blksnap_glue.h
# The in-VM tests run target/debug/blksnap, tagblk and racer.
check "user-space build (blksnap, tagblk, racer)" cargo build --workspace --color never
# The install test (tests/vm/43-install.sh) runs make install, which needs
# the release CLI: built here, it is up to date in the VM.
check "user-space release build (blksnap, blksnap-gen)" cargo build --release --locked -p blksnap --bins --color never

for kernel in $KERNELS; do
	export BLKSNAP_KERNEL=$kernel
	[ "$kernel" = 6.12 ] || debian_load "$kernel"
	kp=$passed kf=$failed ks=$skipped
	msg "kernel $kernel"
	check "$kernel: module build: no warnings, kernel clippy" scripts/module.sh --check
	# Built again without clippy, as `make install` builds it: otherwise the
	# install test (tests/vm/43-install.sh) rebuilds it in the VM, slowly.
	check "$kernel: module build (as make install makes it)" scripts/module.sh
	if [ -n "$host_only" ]; then
		kernel_line
		continue
	fi
	# The test files are shared out among VM_SHARDS guests run at once: a
	# TCG guest uses one host thread, so each core runs one.
	shards=${VM_SHARDS:-$(nproc)}
	[ "$shards" -ge 1 ] 2>/dev/null || shards=1
	msg "in-VM tests on $kernel ($shards guests at once)"
	pids=()
	for ((k = 0; k < shards; k++)); do
		scripts/vm.sh run "$results/$kernel-console-$k.log" \
			"BLKSNAP_ROOT=$BLKSNAP_ROOT BLKSNAP_KERNEL=$kernel VM_SHARD=$k/$shards bash tests/vm/run.sh '$pattern' >$results/$kernel-ktap-$k.txt 2>&1; dmesg >$results/$kernel-dmesg-$k.txt" &
		pids+=($!)
	done
	for ((k = 0; k < shards; k++)); do
		rc=0
		wait "${pids[k]}" || rc=$?
		vmlog=$results/$kernel-console-$k.log
		ktap=$results/$kernel-ktap-$k.txt
		plan=$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' "$ktap" 2>/dev/null | head -1)
		if [ -z "$plan" ]; then
			failc "$kernel: VM run $k produced no KTAP plan (vng status $rc)"
			plan=0
		fi
		sed -nE '/^(ok|not ok|#) /p' "$ktap" 2>/dev/null | sed 's/^/    /'
		vp=$(grep -cE '^ok [0-9]+ ' "$ktap" 2>/dev/null)
		vs=$(grep -cE '^ok [0-9]+ .*# SKIP' "$ktap" 2>/dev/null)
		vf=$(grep -cE '^not ok [0-9]+ ' "$ktap" 2>/dev/null)
		missing=$((plan - vp - vf))
		passed=$((passed + vp - vs)); skipped=$((skipped + vs)); failed=$((failed + vf))
		if [ "$missing" -gt 0 ]; then
			failed=$((failed + missing))
			printf 'FAILED %s: %d in-VM tests of VM run %d never reported (vng status %d)\n' "$kernel" "$missing" "$k" "$rc"
		fi
		# The guest may die before its own log check runs: scan the console too.
		if grep -qE 'Kernel panic|Oops|BUG:|general protection fault|WARNING: CPU' "$vmlog"; then
			failc "$kernel: console log of VM run $k shows a kernel failure"
		else
			pass "$kernel: console log of VM run $k free of kernel failures"
		fi
		if [ "$rc" -ne 0 ] || [ "$missing" -gt 0 ] || [ "$vf" -gt 0 ]; then
			echo "---- tail of the VM console ($vmlog) ----"
			tail -60 "$vmlog"
		fi
	done
	# On a Debian kernel, the Debian packages as a user installs them
	# (scripts/deb-test.sh): apt and DKMS natively in an overlay of the
	# build root, the module and the CLI in one more guest. PATTERN selects
	# them as if they were an in-VM test named deb.
	if [ "$kernel" != 6.12 ] && [[ deb =~ $pattern ]]; then
		msg "the Debian packages on $kernel"
		check "$kernel: deb: apt install of both packages, DKMS builds and installs blksnap.ko" scripts/deb-test.sh install
		check "$kernel: deb: the DKMS-built module loads, the installed CLI snapshots a mounted ext4" scripts/deb-test.sh vm
		check "$kernel: deb: apt purge leaves nothing behind" scripts/deb-test.sh remove
	fi
	kernel_line
done

printf '%s\n' "${lines[@]}"
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
