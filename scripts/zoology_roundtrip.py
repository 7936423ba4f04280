#!/usr/bin/env python3
"""Round trip between zoology-rs and HazyResearch/zoology (issue 24). Run BY HAND, never in CI.

Evaluate a zoology-rs export with Zoology's own code:

    zoology export RUN_DIR --out m.safetensors --test-data
    python scripts/zoology_roundtrip.py eval --zoology /work/zoology-src \
        --weights m.safetensors --config m.json --data m.test.safetensors

Train a model with Zoology's own code (its `Trainer.fit`: AdamW, CosineAnnealingLR per epoch,
its evaluation) on data exported by `zoology data`, and save it for `zoology import`:

    python scripts/zoology_roundtrip.py train --zoology /work/zoology-src --config zcfg.json \
        --train train.safetensors --data m.test.safetensors --epochs 4 --lr 3e-3 --out z.safetensors

Zoology's HEAD (`LanguageModel.forward(..., return_embeddings=True)` by default) trains and
evaluates on hidden states, not logits; a wrapper calls `forward(x, return_embeddings=False)`,
the vocabulary logits Zoology trained on up to commit 8700f46 (zoology-parity.md). Zoology's
`TokenEmbeddings` defaults to `device='cuda'`; the default becomes 'cpu' (zoology_fixtures.py).
Accuracy is Zoology's `compute_metrics` (per example, then the mean), as `Trainer.test` reports.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn


class Logits(nn.Module):
    """Zoology's LanguageModel returning vocabulary logits (see the module doc)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, return_embeddings=False)


class Quiet:
    def log(self, *a, **k):
        pass


def build(config_path):
    from zoology.config import ModelConfig
    from zoology.model import LanguageModel
    with open(config_path) as f:
        cfg = json.load(f)
    return LanguageModel(ModelConfig(**cfg.get("model", cfg)))


def batches(path, batch, prefix=""):
    from safetensors.torch import load_file
    t = load_file(path)
    if "inputs" in t:
        segs = [(t["inputs"], t["targets"])]
    else:
        n = len([k for k in t if k.startswith("inputs/")])
        segs = [(t[f"inputs/{i}"], t[f"targets/{i}"]) for i in range(n)]
    out = []
    for x, y in segs:
        for s in range(0, x.shape[0], batch):
            xb, yb = x[s:s + batch], y[s:s + batch]
            out.append((xb, yb, [{} for _ in range(xb.shape[0])]))
    return out


def trainer(model, train, test, epochs=1, lr=1e-3):
    from zoology.train import Trainer
    return Trainer(model=Logits(model), train_dataloader=train, test_dataloader=test, max_epochs=epochs,
                   learning_rate=lr, weight_decay=0.1, early_stopping_metric=None, device="cpu", logger=Quiet())


def evaluate(model, data):
    t = trainer(model, [], data)
    t.loss_fn = nn.CrossEntropyLoss()
    m = t.test(0)
    return m["valid/accuracy"], m["valid/loss"]


def cmd_eval(a):
    from safetensors.torch import load_file
    model = build(a.config)
    model.load_state_dict(load_file(a.weights), strict=True)
    acc, loss = evaluate(model, batches(a.data, 256))
    print(json.dumps({"zoology_accuracy": acc, "zoology_loss": loss}))


def cmd_train(a):
    from safetensors.torch import save_file
    from zoology.utils import set_determinism
    set_determinism(a.seed)
    model = build(a.config)
    t = trainer(model, batches(a.train, a.batch), batches(a.data, 256), a.epochs, a.lr)
    t.fit()
    acc, loss = evaluate(model, batches(a.data, 256))
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, a.out)
    print(json.dumps({"zoology_accuracy": acc, "zoology_loss": loss, "out": a.out}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    t = sub.add_parser("train")
    for p in (e, t):
        p.add_argument("--zoology", required=True)
        p.add_argument("--config", required=True, help="Zoology ModelConfig JSON (or {'model': ...})")
        p.add_argument("--data", required=True, help="test data (zoology export --test-data, or zoology data --out)")
    e.add_argument("--weights", required=True)
    t.add_argument("--train", required=True, help="training data (zoology data ... --out FILE.safetensors)")
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--seed", type=int, default=123)
    t.add_argument("--out", required=True)
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.zoology))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    torch.set_num_threads(1)
    from zoology_fixtures import cpu_embeddings
    cpu_embeddings()
    {"eval": cmd_eval, "train": cmd_train}[a.cmd](a)


if __name__ == "__main__":
    main()
