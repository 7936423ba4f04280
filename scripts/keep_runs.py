#!/usr/bin/env python3
"""Copies the records of a sweep's finished runs from one output directory to another, without
their checkpoints, so that a long sweep survives the loss of the machine it runs on.

    scripts/keep_runs.py /work/runs/zoo docs/results/mqar-zoo-cpu     # keep: into the repository
    scripts/keep_runs.py docs/results/mqar-zoo-cpu /work/runs/zoo     # restore: before resuming

A run is finished when its directory has summary.json (done or diverged) or failed.json; for each,
config.toml, metrics.jsonl, summary.json, failed.json, sweep.json and log.txt are copied (those
that exist) into DEST/runs/<the same name>/. `zoology sweep run` on DEST (or on a directory they
are restored into) counts these runs as finished and trains only the rest; `zoology results`,
`zoology plot` and scripts/width_table.py read them as they are. Runs still in progress, and
checkpoints, locks and running markers, are not copied. Files that are already equal are left
alone; the script prints how many runs it copied.
"""
import filecmp
import os
import shutil
import sys

KEEP = ["config.toml", "metrics.jsonl", "summary.json", "failed.json", "sweep.json", "log.txt"]


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    src, dst = os.path.join(argv[1], "runs"), os.path.join(argv[2], "runs")
    if not os.path.isdir(src):
        print(f"keep_runs: {src} does not exist; give a sweep's output directory (it has runs/)", file=sys.stderr)
        return 2
    copied = finished = 0
    for name in sorted(os.listdir(src)):
        run = os.path.join(src, name)
        if not (os.path.isfile(os.path.join(run, "summary.json")) or os.path.isfile(os.path.join(run, "failed.json"))):
            continue
        finished += 1
        changed = False
        for f in KEEP:
            a, b = os.path.join(run, f), os.path.join(dst, name, f)
            if not os.path.isfile(a) or (os.path.isfile(b) and filecmp.cmp(a, b, shallow=False)):
                continue
            os.makedirs(os.path.dirname(b), exist_ok=True)
            shutil.copyfile(a, b + ".tmp")
            os.replace(b + ".tmp", b)
            changed = True
        copied += changed
    print(f"keep_runs: {finished} finished runs in {src}; copied {copied} to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
