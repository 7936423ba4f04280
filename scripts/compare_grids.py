#!/usr/bin/env python3
"""Compares two `zoology results show --csv` files of the same grid (e.g. fp32 vs bf16): per-cell best
accuracy and the smallest width that solves (>= 0.9) per mixer and length, as markdown.

    python3 scripts/compare_grids.py FP32.csv BF16.csv
"""
import csv, sys
def load(p):
    rows = {}
    for r in csv.DictReader(open(p)):
        if r['status'] == 'done':
            rows[(r['mixer'], int(r['seq_len']), int(r['kv']), int(r['d_model']))] = r
    return rows
a, b = load(sys.argv[1]), load(sys.argv[2])
keys = sorted(set(a) | set(b))
print("| mixer | L | kv | d | fp32 best acc | bf16 best acc | Δ | fp32 epochs | bf16 epochs |")
print("|---|---|---|---|---|---|---|---|---|")
for k in keys:
    ra, rb = a.get(k), b.get(k)
    fa = float(ra['best_acc']) if ra else None
    fb = float(rb['best_acc']) if rb else None
    d = f"{fb - fa:+.4f}" if fa is not None and fb is not None else "—"
    g = lambda r, c: r[c] if r else "—"
    print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {fa if fa is not None else '—'} | {fb if fb is not None else '—'} | {d} | {g(ra,'epochs')} | {g(rb,'epochs')} |")
print()
def solve(rows, thr=0.9):
    out = {}
    for (m, L, kv, d), r in rows.items():
        if float(r['best_acc']) >= thr:
            out[(m, L)] = min(out.get((m, L), 10**9), d)
    return out
sa, sb = solve(a), solve(b)
Ls = sorted({k[1] for k in keys}); ms = sorted({k[0] for k in keys})
print("Smallest width that solves (≥ 0.9), fp32 / bf16:\n")
print("| mixer | " + " | ".join(f"L = {L}" for L in Ls) + " |")
print("|---|" + "---|" * len(Ls))
for m in ms:
    cells = []
    for L in Ls:
        x, y = sa.get((m, L), "none"), sb.get((m, L), "none")
        cells.append(f"{x} / {y}" + ("" if x == y else " **differs**"))
    print(f"| {m} | " + " | ".join(cells) + " |")
