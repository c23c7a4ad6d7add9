#!/usr/bin/env bash
# `make bench`: builds what is needed and runs the benchmarks in one boot of
# the test VM, then prints their figures (bench/figures.py).
#   bench/run.sh [snapshot] [filter]   (both when none is named: about 11
#   minutes under TCG with the defaults)
# ROUNDS (default 3) and RUNTIME (seconds per timed fio run, default 3) set
# the length: each condition runs ROUNDS times, in rotating order, and the
# medians are compared.
# Figures are ratios against a baseline measured in the same boot and round,
# so they compare like with like on a shared, emulated machine; absolute
# throughput under TCG emulation says little about real hardware.
# Under TCG the guest clock counts instructions (VM_ICOUNT, default 3: 8 ns
# each, see scripts/vm.sh), so a figure measures the work the guest did and
# not how busy the host was; VM_ICOUNT= (empty) measures wall-clock time.
# The records each benchmark wrote are kept in build/bench-NAME.rec, its
# log in build/bench-NAME.txt.
set -euo pipefail
export VM_ICOUNT=${VM_ICOUNT-3}
source "$(dirname "$0")/../scripts/lib.sh"
cd "$BLKSNAP_ROOT"
cargo build -q
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(snapshot filter)
cmd=""
for name in "${names[@]}"; do
	[ -f "bench/$name-vm.sh" ] || die "no benchmark named $name"
	rm -f "build/bench-$name.txt" "build/bench-$name.rec"
	cmd+="BLKSNAP_ROOT=$BLKSNAP_ROOT ROUNDS=${ROUNDS:-3} RUNTIME=${RUNTIME:-3}"
	cmd+=" BENCH_OUT=$BLKSNAP_ROOT/build/bench-$name.rec"
	cmd+=" bash bench/$name-vm.sh >$BLKSNAP_ROOT/build/bench-$name.txt 2>&1; "
done
start=$(date +%s)
rc=0
scripts/vm.sh run build/bench.console "$cmd" || rc=$?
for name in "${names[@]}"; do
	if ! [ -s "build/bench-$name.rec" ]; then
		echo "==> $name: no figures; its log (build/bench-$name.txt):"
		cat "build/bench-$name.txt" 2>/dev/null || echo "(none: see build/bench.console)"
	fi
done
cat build/bench-*.rec 2>/dev/null | python3 bench/figures.py
echo "==> $(($(date +%s) - start)) s in the VM (status $rc)"
