#!/usr/bin/env python3
"""Smallest width that solves, per mixer and sequence length, as a Markdown table.

Reads `zoology results show DIR --best-over lr --csv` for every DIR given (later DIRs add
mixers; a mixer present in several keeps the first) and prints one row per mixer:

    | mixer | L = 16 (kv 2) | L = 32 (kv 4) | L = 64 (kv 8) |
    | attention | **32** | **32** | **32** |
    | base_conv | **64** (32: 0.565) | ...

A cell is the smallest width whose best accuracy reached --threshold (bold), followed by the
narrower widths that did not, with their accuracy; "> 256 (best 0.28)" when no width did;
"—" when nothing ran at that length. A run that failed or diverged is named after the cell
("; d = 256: diverged"). Widths a ladder skipped (sweep.ladder) are not listed; a length that
`harder` skipped (a shorter length ran every width of the grid without solving) reads
"skipped (L = 32: > 256)". A last line names the machines the runs trained on (summary.json's
`machine`): results at one seed differ slightly between CPU models.

    scripts/width_table.py /work/runs/zoo [/work/runs/section5 ...] [--threshold 0.9]
"""
import argparse
import csv
import io
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def rows_of(d, exe, *extra):
    out = subprocess.run(
        [os.path.join(HERE, "with-torch"), exe, "results", "show", d, *extra, "--csv"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return list(csv.DictReader(io.StringIO(out)))


def failures_of(d, exe):
    """(mixer, L) -> [(d, status)] of runs that failed or diverged (best-over leaves them out)."""
    out = {}
    for r in rows_of(d, exe):
        if r["status"] in ("failed", "diverged"):
            out.setdefault((r["mixer"], int(r["seq_len"])), []).append((int(r["d_model"]), r["status"]))
    return out


def skipped_after(lens_of, failed, m, L, widest, threshold):
    """The cell of a length nothing ran at: "skipped (L = 32: > 256)" when a shorter length of
    the same mixer tried every width up to the grid's widest without solving (the ladder's
    `harder` rule), else "—" (not run yet)."""
    for L0 in sorted(x for x in lens_of if x < L):
        runs = lens_of[L0]
        tried = [d for d, _ in runs] + [d for d, _ in failed.get((m, L0), [])]
        if tried and max(tried) >= widest and not any(acc >= threshold for _, acc in runs):
            return f"skipped (L = {L0}: > {max(tried)})"
    return "—"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--exe", default=os.path.join(HERE, "..", "target", "release", "zoology"))
    a = ap.parse_args()
    by = {}  # mixer -> L -> [(d, acc)]
    kv_of = {}
    failed = {}
    for d in a.dirs:
        for k, v in failures_of(d, a.exe).items():
            failed.setdefault(k, v)
        seen_here = set()
        for r in rows_of(d, a.exe, "--best-over", "lr"):
            m = r["mixer"]
            if m in by and m not in seen_here:
                continue  # an earlier directory has this mixer
            seen_here.add(m)
            L = int(r["seq_len"])
            kv_of[L] = r["kv"]
            by.setdefault(m, {}).setdefault(L, []).append((int(r["d_model"]), float(r["best_acc"])))
    lens = sorted(kv_of)
    widest = max((d for m in by.values() for runs in m.values() for d, _ in runs), default=0)
    print("| mixer | " + " | ".join(f"L = {L} (kv {kv_of[L]})" for L in lens) + " |")
    print("|---|" + "---|" * len(lens))
    for m in by:
        cells = []
        for L in lens:
            runs = sorted(by[m].get(L, []))
            bad = "".join(f"; d = {d}: {st}" for d, st in sorted(failed.get((m, L), [])))
            if not runs:
                cells.append(bad[2:] if bad else skipped_after(by[m], failed, m, L, widest, a.threshold))
                continue
            solved = [x for x in runs if x[1] >= a.threshold]
            if solved:
                d0 = solved[0][0]
                below = [f"{d}: {acc:.3f}" for d, acc in runs if d < d0]
                cells.append(f"**{d0}**" + (f" ({', '.join(below)})" if below else "") + bad)
            else:
                cells.append(f"> {runs[-1][0]} (best {max(x[1] for x in runs):.3f})" + bad)
        print(f"| {m} | " + " | ".join(cells) + " |")
    machines = machines_of(a.dirs)
    if machines:
        print("\nTrained on: " + "; ".join(f"{m} ({n} runs)" for m, n in machines) + ".")
    return 0


def machines_of(dirs):
    """(machine, runs) over the run summaries under each DIR/runs, most runs first; runs recorded
    before summaries named their machine count as "machine not recorded"."""
    import collections
    import json

    count = collections.Counter()
    for d in dirs:
        runs = os.path.join(d, "runs")
        for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
            try:
                with open(os.path.join(runs, name, "summary.json")) as f:
                    count[json.load(f).get("machine") or "machine not recorded"] += 1
            except (OSError, ValueError):
                continue
    return count.most_common()


if __name__ == "__main__":
    sys.exit(main())
