#!/usr/bin/env bash
# `make bench`: builds what is needed and runs a benchmark in the test VM.
#   bench/run.sh [filter|snapshot]   (both when none is named)
# ROUNDS (default 3) and RUNTIME (seconds per fio run, default 5) set the
# length: each condition runs ROUNDS times, interleaved, and the medians are
# compared.
# Figures are ratios against a baseline measured in the same boot, so they
# compare like with like on a shared, emulated machine; absolute IOPS under
# TCG emulation say little about real hardware.
# Under TCG the guest clock counts instructions (VM_ICOUNT, default 3: 8 ns
# each, see scripts/vm.sh), so a figure measures the work the guest did and
# not how busy the host was; VM_ICOUNT= (empty) measures wall-clock time.
set -euo pipefail
export VM_ICOUNT=${VM_ICOUNT-3}
source "$(dirname "$0")/../scripts/lib.sh"
cd "$BLKSNAP_ROOT"
cargo build -q
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(filter snapshot)
for name in "${names[@]}"; do
	[ -f "bench/$name-vm.sh" ] || die "no benchmark named $name"
	out=build/bench-$name.txt
	echo "==> $name"
	scripts/vm.sh run "build/bench-$name.console" \
		"BLKSNAP_ROOT=$BLKSNAP_ROOT ROUNDS=${ROUNDS:-3} RUNTIME=${RUNTIME:-5} bash bench/$name-vm.sh >$BLKSNAP_ROOT/$out 2>&1" || true
	cat "$out"
done
