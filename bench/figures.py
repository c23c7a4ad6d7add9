#!/usr/bin/env python3
"""Prints the figures of bench/snapshot-vm.sh from its "ROUND KEY CONDITION
VALUE" lines: per figure the median over the rounds of the ratio of each
engine (blksnap, dm) to the base measured in the same round, the spread of
those ratios (max/min), and the medians of the raw values."""
import statistics
import sys

RATIOS = [
    ("cow_first_touch_seq", "MiB/s", "1 MiB sequential writes, first touch"),
    ("cow_first_touch_seq_sync", "MiB/s", "the same, the sync after the run counted"),
    ("cow_first_touch_rand", "IOPS", "4 KiB random writes, 16 in flight, one per chunk"),
    ("cow_first_touch_rand_sync", "IOPS", "the same, the sync after the run counted"),
    ("rewrite_copied", "MiB/s", "1 MiB sequential rewrite of copied chunks"),
    ("image_read_untouched", "MiB/s", "image read, no chunk copied"),
    ("image_read_stored_bdev", "MiB/s", "image read, every chunk stored, block device, cold"),
    ("image_read_stored_file", "MiB/s", "image read, every chunk stored, file on ext4, cold"),
    ("image_read_under_writes", "MiB/s", "image read while the original takes 4 KiB writes"),
]
VALUES = [
    ("take_ms", "ms", "TAKE, 256 MiB member, storage a directory on ext4 (dm: suspend, create, resume)"),
    ("take_ms_tmpfs_dir", "ms", "TAKE, 256 MiB member, storage a directory on tmpfs"),
    ("take_ms_bdev_storage", "ms", "TAKE, 256 MiB member, storage a block device"),
    ("take_ms_1tib", "ms", "TAKE, sparse 1 TiB member, storage a block device"),
    ("sync_ms_after_cow_first_touch_seq", "ms", "sync after the sequential first touch"),
    ("sync_ms_after_cow_first_touch_rand", "ms", "sync after the random first touch"),
    ("memory_take_bytes_per_gib", "B", "held after CREATE+TAKE, per GiB of member"),
    ("memory_take_bytes_1tib", "B", "held after CREATE+TAKE of a 1 TiB member"),
    ("memory_take_memfree_drop_1tib", "B", "fall of MemFree over CREATE+TAKE of a 1 TiB member"),
    ("memory_bytes_per_touched_chunk", "B", "held per chunk touched after the take"),
    ("memory_not_freed_after_destroy", "B", "held after DESTROY, vs before CREATE"),
]
ENGINES = ["blksnap", "dm"]

data = {}
for line in sys.stdin:
    rnd, key, cond, value = line.split()
    data.setdefault(key, {}).setdefault(cond, {})[int(rnd)] = float(value)


def spread(xs):
    return max(xs) / min(xs) if min(xs) > 0 else float("nan")


print("Ratios: median over rounds of engine/base measured in the same round;")
print("spread = max/min of the per-round ratios; raw = medians.")
print(f"{'figure':<28}{'blksnap':>9}{'spread':>8}{'dm-snap':>9}{'spread':>8}   raw medians")
for key, unit, label in RATIOS:
    conds = data.get(key, {})
    base = conds.get("base", {})
    cols, raw = [], []
    for engine in ENGINES:
        runs = conds.get(engine, {})
        ratios = [runs[r] / base[r] for r in runs if r in base and base[r] > 0]
        if ratios:
            cols.append(f"{statistics.median(ratios):>9.3f}{spread(ratios):>8.2f}")
        else:
            cols.append(f"{'-':>9}{'':>8}")
    for cond in ["base"] + ENGINES:
        if conds.get(cond):
            raw.append(f"{cond} {statistics.median(conds[cond].values()):.1f}")
    print(f"{key:<28}{''.join(cols)}   {unit}: {', '.join(raw)}   # {label}")
print()
print(f"{'figure':<34}{'blksnap':>12}{'dm-snap':>12}   (median; min..max)")
for key, unit, label in VALUES:
    conds = data.get(key, {})
    cols, ranges = [], []
    for engine in ENGINES:
        runs = list(conds.get(engine, {}).values())
        if runs:
            cols.append(f"{statistics.median(runs):>12.1f}")
            ranges.append(f"{engine} {min(runs):.1f}..{max(runs):.1f}")
        else:
            cols.append(f"{'-':>12}")
    print(f"{key:<34}{''.join(cols)} {unit:<3} ({'; '.join(ranges)})   # {label}")
