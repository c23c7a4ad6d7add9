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
# The benchmarks run on each kernel of KERNELS (default: every supported
# one), one boot each, and each figure is printed as "KERNEL: NAME RATIO
# ...". The records each benchmark wrote are kept in
# build/bench-KERNEL-NAME.rec, the log of the last kernel's run in
# build/bench-NAME.txt.
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
	cmd+="BLKSNAP_ROOT=$BLKSNAP_ROOT ROUNDS=${ROUNDS:-3} RUNTIME=${RUNTIME:-3}"
	cmd+=" BENCH_OUT=$BLKSNAP_ROOT/build/bench-$name.rec"
	cmd+=" bash bench/$name-vm.sh >$BLKSNAP_ROOT/build/bench-$name.txt 2>&1; "
done
# Each kernel of KERNELS in turn (default: every supported one), in a boot
# of its own, with the module built for it; a distribution kernel has loop
# and device-mapper (dm-snapshot, the baseline, among it) as modules,
# loaded first.
kernels=${KERNELS:-$DEFAULT_KERNELS}
status=0
for kernel in $kernels; do
	export BLKSNAP_KERNEL=$kernel
	[ "$kernel" = 6.12 ] || debian_load "$kernel"
	msg "kernel $kernel"
	scripts/module.sh >/dev/null || die "the module does not build for $kernel"
	for name in "${names[@]}"; do
		rm -f "build/bench-$name.txt" "build/bench-$name.rec"
	done
	start=$(date +%s)
	rc=0
	scripts/vm.sh run "build/bench-$kernel.console" "modprobe -qa loop dm_mod dm_snapshot 2>/dev/null; $cmd" || rc=$?
	for name in "${names[@]}"; do
		if [ -s "build/bench-$name.rec" ]; then
			cp "build/bench-$name.rec" "build/bench-$kernel-$name.rec"
		else
			status=1
			echo "==> $kernel: $name: no figures; its log (build/bench-$name.txt):"
			cat "build/bench-$name.txt" 2>/dev/null || echo "(none: see build/bench-$kernel.console)"
		fi
	done
	cat "build/bench-$kernel"-*.rec 2>/dev/null | python3 bench/figures.py | sed "s/^/$kernel: /"
	echo "==> $kernel: $(($(date +%s) - start)) s in the VM (status $rc)"
done
exit $status
