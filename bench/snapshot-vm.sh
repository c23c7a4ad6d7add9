#!/usr/bin/env bash
# Runs inside the test VM (see bench/run.sh): what a taken snapshot costs.
# In each round, on a 256 MiB loop device with the module loaded:
#   base   the device without a filter: 1 MiB sequential writes over its
#          first half, 4 KiB random writes over its second half, and a
#          1 MiB sequential read of the whole device;
#   snap   the same device attached, a snapshot (storage in a tmpfs
#          directory) taken, then the same work: the sequential writes
#          meet only chunks never copied (first touch), are repeated over
#          the copied chunks (rewrite), the random writes land on chunks
#          never copied, and the read is of the snapshot image.
# Prints the medians per workload and their ratios to the base figures of
# the same boot, with the spread (max/min) of each.
set -euo pipefail
ROOT=${BLKSNAP_ROOT:-$(pwd)}
ROUNDS=${ROUNDS:-3}
RUNTIME=${RUNTIME:-5}
BLKSNAP=$ROOT/target/debug/blksnap

truncate -s 256M /tmp/bench-snap
dev=$(losetup -f --show /tmp/bench-snap)
store=$(mktemp -d /tmp/bench-store.XXXXXX)
mount -t tmpfs -o size=400M tmpfs "$store"
insmod "$ROOT/blksnap.ko"
# Grow the storage in 64 MiB steps, not the default 1 GiB.
echo 131072 >/sys/module/blksnap/parameters/diff_storage_minimum
dd if=/dev/zero of="$dev" bs=1M count=256 oflag=direct status=none

# fio_mibs NAME RW BS OFFSET SIZE [time]: prints the MiB/s of the job.
fio_mibs() {
	local dir=write timed=() ro=()
	# The image is read-only; --readonly keeps fio from opening it for writing.
	[ "$2" = read ] && dir=read ro=(--readonly)
	[ "${6:-}" = time ] && timed=(--time_based --runtime="$RUNTIME")
	fio --name="$1" --filename="$FIO_DEV" --rw="$2" --bs="$3" --direct=1 \
		--ioengine=libaio --iodepth=16 --offset="$4" --size="$5" \
		"${timed[@]}" "${ro[@]}" --output-format=json |
		python3 -c "import json,sys; print(json.load(sys.stdin)['jobs'][0]['$dir']['bw'] / 1024)"
}

declare -A results
record() {
	results[$1]+="$2 "
}

base_round() {
	FIO_DEV=$dev
	record seqwrite-base "$(fio_mibs seq write 1M 0 128M)"
	record rewrite-base "$(fio_mibs seq write 1M 0 128M)"
	record randwrite-base "$(fio_mibs rand randwrite 4k 128M 128M time)"
	record read-base "$(fio_mibs read read 1M 0 256M)"
	# What storing a chunk costs: buffered writes to a file in the storage.
	FIO_DEV=$store/probe
	record store-base "$(fio --name=store --filename="$FIO_DEV" --rw=write --bs=1M \
		--size=128M --output-format=json |
		python3 -c "import json,sys; print(json.load(sys.stdin)['jobs'][0]['write']['bw'] / 1024)")"
	rm -f "$FIO_DEV"
}

snap_round() {
	local id img
	"$BLKSNAP" attach -d "$dev" >/dev/null
	id=$("$BLKSNAP" snapshot_create -f "$store" -l 384M -d "$dev")
	"$BLKSNAP" snapshot_take -i "$id"
	img=$("$BLKSNAP" snapshot_info -d "$dev" -f image)
	FIO_DEV=$dev
	record seqwrite-snap "$(fio_mibs seq write 1M 0 128M)"
	record rewrite-snap "$(fio_mibs seq write 1M 0 128M)"
	record randwrite-snap "$(fio_mibs rand randwrite 4k 128M 128M time)"
	# fio splits file names at colons unless they are escaped.
	FIO_DEV=${img//:/\\:}
	record read-snap "$(fio_mibs read read 1M 0 256M)"
	"$BLKSNAP" snapshot_destroy -i "$id"
	"$BLKSNAP" detach -d "$dev"
}

for round in $(seq "$ROUNDS"); do
	# Alternate the order, so neither condition always runs first.
	if ((round % 2)); then
		base_round
		snap_round
	else
		snap_round
		base_round
	fi
done
rmmod blksnap
umount "$store"
losetup -d "$dev"

for key in "${!results[@]}"; do
	echo "$key ${results[$key]}"
done | python3 -c '
import statistics, sys
res = {}
for line in sys.stdin:
    key, *values = line.split()
    res[key] = [float(v) for v in values]
rows = [("seqwrite", "1M seq write, first touch"), ("rewrite", "1M seq rewrite of copied chunks"),
        ("randwrite", "4k random write, first touch"), ("read", "1M seq read: image vs original")]
print("%-34s%11s%11s%10s   spread base snap" % ("workload", "base MiB/s", "snap MiB/s", "snap/base"))
for key, label in rows:
    b, s = res[key + "-base"], res[key + "-snap"]
    mb, ms = statistics.median(b), statistics.median(s)
    print(f"{label:<34}{mb:>11.1f}{ms:>11.1f}{ms / mb:>10.3f}   {max(b) / min(b):.2f} {max(s) / min(s):.2f}")
# First touch cannot beat writing the data, reading the chunk from the
# original and writing it to the storage, one after the other.
w, r, st = (statistics.median(res[k]) for k in ("seqwrite-base", "read-base", "store-base"))
bound = 1 / (1 / w + 1 / r + 1 / st)
print(f"first touch bound: write {w:.1f}, chunk read {r:.1f}, chunk store {st:.1f} MiB/s"
      f" -> {bound:.1f} MiB/s, {bound / w:.3f} of base")
'
