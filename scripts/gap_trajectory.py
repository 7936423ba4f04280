#!/usr/bin/env python3
"""The perplexity gap to a reference text model over training, from the runs' metrics.

Every evaluation of a text run records its loss on AR hits and on other tokens over the probe's
validation windows (`ar_hit_loss`, `other_loss`; README "Real text"). For each model and each
evaluation step it shares with the reference, this prints the perplexity ratio to the
reference on AR hits and on other tokens, so one can watch the gap open (the paper's shape: the
AR-hit ratio grows, the other-token ratio stays near 1). With --fit it also fits the AR-hit
ratio against log10(tokens seen) by least squares over the evaluations from --fit-from on, and
says at how many tokens that line would reach --target (an extrapolation, not a measurement:
the learning-rate schedule bends real curves).

    scripts/gap_trajectory.py REFERENCE_RUN RUN [RUN ...] [--fit] [--fit-from STEP] [--target 2]

Runs are run directories (with metrics.jsonl and config.toml); tokens per step are read from
the config (`batch_size` × `seq_len` of the first text task).
"""
import argparse
import json
import math
import os
import re
import sys


def evals(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            m = r.get("metrics") or {}
            if r.get("kind") == "eval" and "ar_hit_loss" in m and "other_loss" in m:
                out[r["step"]] = m
    return out


def tokens_per_step(run):
    cfg = open(os.path.join(run, "config.toml")).read()
    b = re.search(r"^batch_size = (\d+)", cfg, re.M)
    l = re.search(r"^seq_len = (\d+)", cfg, re.M)
    if not (b and l):
        sys.exit(f"{run}/config.toml: no batch_size / seq_len")
    return int(b.group(1)) * int(l.group(1))


def label(run):
    return os.path.basename(os.path.normpath(run))


def fit_line(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--fit", action="store_true", help="fit the AR-hit ratio against log10(tokens)")
    ap.add_argument("--fit-from", type=int, default=0, help="first step of the fit")
    ap.add_argument("--target", type=float, default=2.0, help="the AR-hit ratio to extrapolate to")
    a = ap.parse_args()
    ref = evals(a.reference)
    if not ref:
        sys.exit(f"{a.reference}: no evaluation with ar_hit_loss / other_loss (a text run with train.text_probes)")
    tps = tokens_per_step(a.reference)
    for run in a.runs:
        ev = evals(run)
        if tokens_per_step(run) != tps:
            sys.exit(f"{run}: {tokens_per_step(run)} tokens per step, the reference {tps}: compare like with like")
        steps = sorted(set(ref) & set(ev))
        if not steps:
            print(f"\n{label(run)}: no evaluation step shared with {label(a.reference)}")
            continue
        print(f"\n### {label(run)} / {label(a.reference)}\n")
        print("| step | tokens | AR-hit ppl ratio | other-token ppl ratio |")
        print("|---|---|---|---|")
        pts = []
        for s in steps:
            ra = math.exp(ev[s]["ar_hit_loss"] - ref[s]["ar_hit_loss"])
            ro = math.exp(ev[s]["other_loss"] - ref[s]["other_loss"])
            print(f"| {s} | {s * tps / 1e6:.2f}M | {ra:.3f} | {ro:.3f} |")
            if s >= a.fit_from:
                pts.append((math.log10(s * tps), ra))
        if a.fit:
            line = fit_line([p[0] for p in pts], [p[1] for p in pts]) if len(pts) >= 2 else None
            if line is None:
                print("\nfit: fewer than two evaluations (or one step) in range")
            else:
                c, b = line
                msg = f"\nfit over {len(pts)} evaluations from step {a.fit_from}: AR-hit ratio = {c:.3f} + {b:.3f}·log10(tokens)"
                if b > 0:
                    msg += f"; reaches {a.target} at {10 ** ((a.target - c) / b):.3g} tokens (extrapolated)"
                else:
                    msg += f"; not rising, so it never reaches {a.target} on this line"
                print(msg)


if __name__ == "__main__":
    main()
