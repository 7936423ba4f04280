"""Loads `zoology data TASK ... --out FILE` exports with numpy and with torch/safetensors, as a
user who never runs the trainer would, and checks shapes, dtypes and targets against the JSON
sidecar. Usage: python scripts/check_export.py FILE [FILE ...]  (.safetensors, .npz, .npy).
Files of the same task, seed, split and size must hold the same arrays. Run by
crates/zoology-cli/tests/data_cli.rs; exits non-zero with a message on the first failure."""
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file as load_torch


def load(path):
    """(inputs, targets) as int64 numpy arrays, through every loader that reads the format."""
    p = str(path)
    if p.endswith(".safetensors"):
        t = load_torch(p)
        n = load_numpy(p)
        assert t["inputs"].dtype == torch.int64 and t["targets"].dtype == torch.int64, (p, t["inputs"].dtype)
        assert np.array_equal(t["inputs"].numpy(), n["inputs"]) and np.array_equal(t["targets"].numpy(), n["targets"]), p
        return n["inputs"], n["targets"]
    if p.endswith(".npz"):
        z = np.load(p)
        return z["inputs"], z["targets"]
    if p.endswith(".npy"):
        a = np.load(p)
        assert a.ndim == 3 and a.shape[0] == 2, (p, a.shape)
        return a[0], a[1]
    raise SystemExit(f"unknown format: {p}")


def task_checks(task, side, inputs, targets):
    """What the task promises, checked on the arrays."""
    ignore = side["ignore_index"]
    sup = targets != ignore
    cfg = side["config"]
    if side["split"] == "train" and task in ("in_context_recall", "noisy_recall", "fuzzy_recall", "associative_recall", "induction_head"):
        assert np.array_equal(targets[:, :-1], inputs[:, 1:]), f"{task}: training targets must be the next token"
        return
    if task == "text":
        # next-token prediction: every position is scored and each target is the next input
        assert sup.all(), "text: every position carries a target"
        assert np.array_equal(targets[:, :-1], inputs[:, 1:]), "text: targets must be the next token"
    if task == "mqar":
        kv = cfg["num_kv_pairs"]
        for x, y, s in zip(inputs, targets, sup):
            assert s.sum() == kv, (task, s.sum())
            keys = {int(x[2 * j]): int(x[2 * j + 1]) for j in range(kv)}
            for t in np.flatnonzero(s):
                assert keys[int(x[t])] == y[t], f"mqar: target at {t} is not the key's value"
    elif task == "compression":
        assert np.array_equal(inputs, targets), "compression: targets must equal inputs"
    elif task == "in_context_recall":
        for x, y, s in zip(inputs, targets, sup):
            for t in np.flatnonzero(s):
                earlier = [p for p in range(0, t, 2) if x[p] == x[t]]
                assert earlier and x[earlier[0] + 1] == y[t], f"in_context_recall: target at {t} is not the recalled value"
    elif task == "selective_copying":
        n = cfg["num_tokens_to_copy"]
        blank = side["vocab_size"] - 2
        for x, y in zip(inputs, targets):
            data = [int(v) for v in x[: len(x) - n - 1] if v != blank]
            assert data == [int(v) for v in y[-n:]], "selective_copying: targets must be the data tokens in order"
    elif task in ("parity", "majority", "vocab_majority", "associative_recall", "induction_head"):
        assert (sup.sum(axis=1) >= 1).all() and sup[:, -1].all(), f"{task}: the last position is scored"
        if task == "parity":
            assert np.array_equal(targets[:, -1], inputs[:, :-1].sum(axis=1) % 2), "parity"


def main(paths):
    seen = {}
    for path in map(pathlib.Path, paths):
        side = json.loads(path.with_suffix(".json").read_text())
        inputs, targets = load(path)
        n, L, V = side["num_examples"], side["seq_len"], side["vocab_size"]
        for name, a in (("inputs", inputs), ("targets", targets)):
            assert a.dtype == np.int64, (path, name, a.dtype)
            assert a.shape == (n, L), (path, name, a.shape, (n, L))
        ignore = side["ignore_index"]
        sup = targets != ignore
        assert int(sup.sum()) == side["num_supervised"], (path, int(sup.sum()), side["num_supervised"])
        assert ((inputs >= 0) & (inputs < V)).all(), f"{path}: input ids outside [0, {V})"
        assert ((targets[sup] >= 0) & (targets[sup] < V)).all(), f"{path}: target ids outside [0, {V})"
        task_checks(side["task"], side, inputs, targets)
        # the arrays feed PyTorch's loss as they are: uniform logits cost ln V per scored token
        loss = F.cross_entropy(torch.zeros(n, V, L), torch.from_numpy(targets), ignore_index=ignore)
        assert abs(loss.item() - np.log(V)) < 1e-4, (path, loss.item())
        key = (side["task"], side["seed"], side["split"], n, L, json.dumps(side["config"], sort_keys=True))
        if key in seen:
            a, b = seen[key]
            assert np.array_equal(a, inputs) and np.array_equal(b, targets), f"{path}: differs from the same data in another format"
        seen[key] = (inputs, targets)
        print(f"ok {path.name}: {side['task']} {side['split']} {n}x{L}, {int(sup.sum())} scored")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
