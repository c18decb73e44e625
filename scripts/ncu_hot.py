"""Rank the SASS instructions of an ncu source page (scripts/gpu_check.sh ncu-src=T) by warp-stall samples.

    python scripts/ncu_hot.py ncu_src_w4a16.csv [top]

Prints the ``top`` (default 40) instructions with the most samples, each with its share of all samples,
its stall-reason columns that hold samples, and the instruction; then the samples summed by opcode.
"""

import csv
import sys
from collections import Counter


def rows(path):
    """The CSV's header and rows (ncu prints some lines before the header; it starts at "Address")."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('"Address"') or l.startswith("Address"))
    table = list(csv.reader(lines[start:]))
    return table[0], [r for r in table[1:] if len(r) == len(table[0])]


def number(v) -> float:
    try:
        return float(v.replace(",", ""))
    except ValueError:
        return 0.0


def main(argv) -> int:
    head, body = rows(argv[0])
    top = int(argv[1]) if len(argv) > 1 else 40
    col = {h: i for i, h in enumerate(head)}
    total_col = next(h for h in head if h.startswith("Warp Stall Sampling (All"))
    src = col.get("Source", 1)
    stall_cols = [h for h in head if h.startswith("stall_") or "Stall" in h and h != total_col and "Not" not in h]
    total = sum(number(r[col[total_col]]) for r in body) or 1.0
    print(f"{len(body)} instructions, {total:.0f} samples ({total_col})")
    ranked = sorted(body, key=lambda r: -number(r[col[total_col]]))
    for r in ranked[:top]:
        n = number(r[col[total_col]])
        why = sorted(((number(r[col[h]]), h) for h in stall_cols if number(r[col[h]]) > 0), reverse=True)[:3]
        reasons = " ".join(f"{h.replace('stall_', '')}={v:.0f}" for v, h in why)
        print(f"{100 * n / total:5.1f}%  {r[col['Address']]:>6}  {r[src][:70]:<70} {reasons}")
    ops = Counter()
    for r in body:
        ops[r[src].split()[0] if r[src].split() else "?"] += number(r[col[total_col]])
    print("by opcode:", ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in ops.most_common(15)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
