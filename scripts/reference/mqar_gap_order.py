#!/usr/bin/env python3
"""Reference numbers for `key_to_query_rank_correlation_matches_numpy` (tasks/mqar.rs).

Draws MQAR query gaps exactly as Zoology's `multiquery_ar` does — numpy's legacy
`np.random.choice(space, kv, replace=False, p)` per example with p ∝ a·(g+1)^(a−1) — and prints,
per (L, kv), the mean over examples of Kendall's τ between a pair's context index and its query
slot, with its standard error and the per-example standard deviation.

    python3 -m venv /tmp/py && /tmp/py/bin/pip install numpy scipy
    /tmp/py/bin/python scripts/reference/mqar_gap_order.py
"""
import numpy as np
from scipy.stats import kendalltau


def gaps(seq_len, kv, n, seed, a=0.01):
    np.random.seed(seed)
    space = (seq_len - 2 * kv) // 2
    p = a * np.arange(1, space + 1) ** (a - 1)
    p = p / p.sum()
    x = np.stack([np.arange(space)] * n)
    return np.apply_along_axis(np.random.choice, 1, x, replace=False, p=p, size=kv)


for seq_len, kv in [(256, 16), (512, 64), (64, 16)]:
    g = gaps(seq_len, kv, 20000, seed=1)
    t = np.array([kendalltau(np.arange(kv), gi).statistic for gi in g])
    print(f"L={seq_len} kv={kv}: mean tau {t.mean():.4f} ± {t.std() / np.sqrt(len(t)):.4f} (per-example s.d. {t.std():.3f})")
