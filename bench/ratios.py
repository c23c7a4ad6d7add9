#!/usr/bin/env python3
"""Reads "<workload>-<condition> value value ..." lines and prints, per
workload, the median of each condition and its ratio to condition (a)."""
import statistics
import sys

LABELS = {"randwrite": "4k randwrite", "write": "1M seq write"}

res = {}
for line in sys.stdin:
    key, *values = line.split()
    res[key] = [float(x) for x in values]
conds = sorted({k.rsplit("-", 1)[1] for k in res})
head = f"{'workload':<16}" + "".join(f"{'(' + c + ') IOPS':>12}" for c in conds)
head += "".join(f"{'(' + c + ')/(a)':>10}" for c in conds if c != "a")
head += "   spread max/min " + " ".join(f"({c})" for c in conds)
print(head)
for wl, label in LABELS.items():
    med = {c: statistics.median(res[f"{wl}-{c}"]) for c in conds if f"{wl}-{c}" in res}
    row = f"{label:<16}" + "".join(f"{med[c]:>12.0f}" for c in conds)
    row += "".join(f"{med[c] / med['a']:>10.3f}" for c in conds if c != "a")
    row += "   " + " ".join(
        f"{max(res[f'{wl}-{c}']) / min(res[f'{wl}-{c}']):.2f}" for c in conds)
    print(row)
