#!/usr/bin/env python3
"""Prints the figures of bench/snapshot-vm.sh and bench/filter-vm.sh from
their "ROUND KEY CONDITION VALUE" lines, one line per figure:

    NAME RATIO (spread S)    for a ratio: the median over the rounds of
                             engine/base, each base measured in the same
                             round; S = max/min of the per-round ratios
    NAME VALUE UNIT          for a time or a size: the median over rounds

This module's figure comes first; where dm-snapshot ran the same work, its
figure follows on the same line, then the raw medians. The figures the
benchmark is judged by come first, the others after them. A figure without
data (its benchmark not run) is left out."""
import statistics
import sys

# (name, data key, unit of the raw values, what it measures). A key ending
# in _dir has no base of its own: the base of the key without it is used.
RATIOS = [
    ("cow_first_touch_seq", None, "MiB/s", "1 MiB sequential writes, 16 in flight, every chunk untouched"),
    ("cow_first_touch_seq_synced", None, "MiB/s", "the same, the sync after the run counted"),
    ("cow_first_touch_rand", None, "IOPS", "4 KiB writes, 16 in flight, one per fresh chunk, random order"),
    ("cow_first_touch_rand_synced", None, "IOPS", "the same, the sync after the run counted"),
    ("cow_rewrite_seq", None, "MiB/s", "1 MiB sequential rewrites of copied chunks"),
    ("cow_rewrite_rand", None, "IOPS", "4 KiB random rewrites of copied chunks"),
    ("track_rand", None, "IOPS", "filter + CBT, no snapshot, 4 KiB random writes"),
    ("track_seq", None, "IOPS", "filter + CBT, no snapshot, 1 MiB sequential writes"),
    ("loaded_unfiltered", "loaded_unfiltered_rand", "IOPS", "module loaded, device not attached, 4 KiB random"),
    ("image_read_untouched", None, "MiB/s", "image read, no chunk copied"),
    ("image_read_stored", None, "MiB/s", "image read, every chunk stored, block-device storage, cold"),
    ("image_read_under_writes", None, "MiB/s", "image read while the original takes 4 KiB writes at 1000 IOPS"),
    ("cow_first_touch_seq_in_volume", None, "MiB/s", "cow_first_touch_seq, in-volume storage (a file on the member)"),
    ("image_read_stored_in_volume", None, "MiB/s", "image read, every chunk stored, in-volume storage, cold (64 MiB)"),
]
VALUES = [
    ("take_4_devices_ms", None, "ms", "TAKE alone, 4 members of 1 GiB, storage a directory on ext4"),
    ("take_bytes_1tib", None, "B", "held after CREATE+TAKE of a 1 TiB member"),
]
EXTRA_RATIOS = [
    (name + "_dir", None, unit, label.replace(", block-device storage", "") + "; storage a directory on ext4"
     + (" (dm: a file of it, the first half read)" if name == "image_read_stored" else ""))
    for name, _, unit, label in RATIOS
    if name.startswith("cow_") or name.startswith("image_read_stored") or name.endswith("under_writes")
] + [
    ("image_read_under_writes_writer_iops", None, "IOPS", "the rate the writes under the image read reached"),
    ("image_read_under_writes_writer_iops_dir", None, "IOPS", "the same, storage a directory on ext4"),
    ("loaded_unfiltered_seq", None, "IOPS", "module loaded, device not attached, 1 MiB sequential"),
]
EXTRA_VALUES = [
    ("take_ms", None, "ms", "TAKE, 256 MiB member, storage a block device (dm: suspend, create, resume)"),
    ("take_ms_dir", None, "ms", "TAKE, 256 MiB member, storage a directory on ext4 (dm: a file of it)"),
    ("take_ms_tmpfs_dir", None, "ms", "TAKE, 256 MiB member, storage a directory on tmpfs"),
    ("take_ms_1tib_bdev", None, "ms", "TAKE, sparse 1 TiB member, storage a block device"),
    ("sync_ms_after_cow_first_touch_seq", None, "ms", "sync after the sequential first touch"),
    ("sync_ms_after_cow_first_touch_rand", None, "ms", "sync after the random first touch"),
    ("sync_ms_after_cow_first_touch_seq_dir", None, "ms", "the same, storage a directory"),
    ("sync_ms_after_cow_first_touch_rand_dir", None, "ms", "the same, storage a directory"),
    ("memory_take_bytes_per_gib", None, "B", "held after CREATE+TAKE, per GiB of member"),
    ("memory_take_memfree_drop_1tib", None, "B", "fall of MemFree over CREATE+TAKE of a 1 TiB member"),
    ("memory_bytes_per_touched_chunk", None, "B", "held per chunk touched after the take"),
    ("memory_not_freed_after_destroy", None, "B", "held after DESTROY, vs before CREATE"),
]
ENGINES = [("blksnap", ""), ("dm", "dm-snapshot ")]

data = {}
for line in sys.stdin:
    rnd, key, cond, value = line.split()
    data.setdefault(key, {}).setdefault(cond, {})[int(rnd)] = float(value)


def spread(xs):
    return max(xs) / min(xs) if min(xs) > 0 else float("nan")


def ratio_line(name, key, unit, label):
    key = key or name
    conds = data.get(key, {})
    base = conds.get("base") or data.get(key.removesuffix("_dir"), {}).get("base", {})
    cols, raw = [], []
    for engine, prefix in ENGINES:
        runs = conds.get(engine, {})
        ratios = [runs[r] / base[r] for r in runs if base.get(r, 0) > 0]
        if ratios:
            cols.append(f"{prefix}{statistics.median(ratios):.3f} (spread {spread(ratios):.2f})")
    if not cols:
        return
    for cond, runs in [("base", base)] + [(e, conds.get(e)) for e, _ in ENGINES]:
        if runs:
            raw.append(f"{cond} {statistics.median(runs.values()):.1f}")
    print(f"{name + ' ' + cols[0]:<51} {'  '.join(cols[1:]):<36}"
          f"  # {unit}: {', '.join(raw)}; {label}")


def value_line(name, key, unit, label):
    conds = data.get(key or name, {})
    cols, ranges = [], []
    for engine, prefix in ENGINES:
        runs = list(conds.get(engine, {}).values())
        if runs:
            v = statistics.median(runs)
            v = f"{v:.0f}" if unit == "B" else f"{v:.1f}"
            cols.append(f"{prefix}{v} {unit}")
            ranges.append(f"{engine} {min(runs):.1f}..{max(runs):.1f}")
    if not cols:
        return
    print(f"{name + ' ' + cols[0]:<51} {'  '.join(cols[1:]):<36}"
          f"  # {'; '.join(ranges)}; {label}")


for figure in RATIOS:
    ratio_line(*figure)
for figure in VALUES:
    value_line(*figure)
print("-- more figures")
for figure in EXTRA_RATIOS:
    ratio_line(*figure)
for figure in EXTRA_VALUES:
    value_line(*figure)
