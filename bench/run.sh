#!/usr/bin/env bash
# `make bench`: builds what is needed and runs benchmarks in one boot of the
# test VM.
#   bench/run.sh [snapshot] [filter]   (snapshot when none is named: both
#   take about 17 minutes under TCG with the defaults)
# ROUNDS (default 3) and RUNTIME (seconds per timed fio run, default 5) set
# the length: each condition runs ROUNDS times, in rotating order, and the
# medians are compared.
# Figures are ratios against a baseline measured in the same boot and round,
# so they compare like with like on a shared, emulated machine; absolute
# throughput under TCG emulation says little about real hardware.
# Under TCG the guest clock counts instructions (VM_ICOUNT, default 3: 8 ns
# each, see scripts/vm.sh), so a figure measures the work the guest did and
# not how busy the host was; VM_ICOUNT= (empty) measures wall-clock time.
set -euo pipefail
export VM_ICOUNT=${VM_ICOUNT-3}
source "$(dirname "$0")/../scripts/lib.sh"
cd "$BLKSNAP_ROOT"
cargo build -q
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(snapshot)
cmd=""
for name in "${names[@]}"; do
	[ -f "bench/$name-vm.sh" ] || die "no benchmark named $name"
	rm -f "build/bench-$name.txt"
	cmd+="BLKSNAP_ROOT=$BLKSNAP_ROOT ROUNDS=${ROUNDS:-3} RUNTIME=${RUNTIME:-5}"
	cmd+=" bash bench/$name-vm.sh >$BLKSNAP_ROOT/build/bench-$name.txt 2>&1; "
done
start=$(date +%s)
rc=0
scripts/vm.sh run build/bench.console "$cmd" || rc=$?
for name in "${names[@]}"; do
	echo "==> $name"
	cat "build/bench-$name.txt" 2>/dev/null || echo "(no output: see build/bench.console)"
done
echo "==> $(($(date +%s) - start)) s in the VM (status $rc)"
