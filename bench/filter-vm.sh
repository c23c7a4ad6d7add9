#!/usr/bin/env bash
# Runs inside the test VM (see bench/run.sh): fio on a loop device with
#   (a) the module not loaded,
#   (b) the module loaded and a filter attached to another device,
#   (c) the pass-through filter attached to the measured device,
# interleaving the three over several rounds in rotating order; 4 KiB
# random and 1 MiB sequential direct writes, 16 in flight. The figures
# (bench/figures.py) are the medians over the rounds of (c)/(a) (track_rand,
# track_seq) and (b)/(a) (loaded_unfiltered_rand, loaded_unfiltered_seq).
set -euo pipefail
ROOT=${BLKSNAP_ROOT:-$(pwd)}
ROUNDS=${ROUNDS:-3}
RUNTIME=${RUNTIME:-3}
BLKSNAP=$ROOT/target/debug/blksnap

truncate -s 256M /tmp/bench-a /tmp/bench-b
dev=$(losetup -f --show /tmp/bench-a)
other=$(losetup -f --show /tmp/bench-b)
# Fill the device once so no run pays for first-touch allocation in tmpfs.
dd if=/dev/zero of="$dev" bs=1M count=256 oflag=direct status=none

# fio_run NAME RW BS -> prints write IOPS
fio_run() {
	fio --name="$1" --filename="$dev" --rw="$2" --bs="$3" --direct=1 \
		--ioengine=libaio --iodepth=16 --size=256M --runtime="$RUNTIME" \
		--time_based --output-format=json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["write"]["iops"])'
}

setup() {
	case $1 in
	a) ! [ -d /sys/module/blksnap ] || rmmod blksnap ;;
	b) [ -d /sys/module/blksnap ] || insmod "$ROOT/blksnap.ko"
	   "$BLKSNAP" attach -d "$other" >/dev/null ;;
	c) [ -d /sys/module/blksnap ] || insmod "$ROOT/blksnap.ko"
	   "$BLKSNAP" attach -d "$dev" >/dev/null ;;
	esac
}

teardown() {
	case $1 in
	b) "$BLKSNAP" detach -d "$other" ;;
	c) "$BLKSNAP" detach -d "$dev" ;;
	esac
}

OUT=$(mktemp /tmp/bench-results.XXXXXX)
# record KEY CONDITION VALUE: one "ROUND KEY CONDITION VALUE" line for
# bench/figures.py; (c) is the engine of the track_* figures, (b) that of
# the loaded_unfiltered* ones, each against (a) of the same round.
record() {
	echo "$round $1 $2 $3" >>"$OUT"
}

orders=("a b c" "b c a" "c a b")
for workload in "randwrite 4k rand" "write 1M seq"; do
	set -- $workload
	RUNTIME=1 fio_run warmup "$1" "$2" >/dev/null
	for round in $(seq "$ROUNDS"); do
		# Rotate the order, so no condition always runs first or last.
		for cond in ${orders[round % 3]}; do
			setup $cond
			iops=$(fio_run "$1" "$1" "$2")
			teardown $cond
			case $cond in
			a) record "track_$3" base "$iops"
			   record "loaded_unfiltered_$3" base "$iops" ;;
			b) record "loaded_unfiltered_$3" blksnap "$iops" ;;
			c) record "track_$3" blksnap "$iops" ;;
			esac
		done
	done
done
! [ -d /sys/module/blksnap ] || rmmod blksnap
losetup -d "$dev" "$other"

if [ -n "${BENCH_OUT:-}" ]; then
	cp "$OUT" "$BENCH_OUT"
else
	python3 "$ROOT/bench/figures.py" <"$OUT"
fi
rm -f "$OUT"
