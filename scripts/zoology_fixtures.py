#!/usr/bin/env python3
"""Golden fixtures from the original Zoology code (issue 24). Run BY HAND, never in CI.

    git --git-dir=<mirror of HazyResearch/zoology> archive HEAD | tar -x -C /work/zoology-src
    python scripts/zoology_fixtures.py --zoology /work/zoology-src \
        --out crates/zoology/fixtures/zoology

Needs a Python with torch and Zoology's own imports (einops, pydantic, pyyaml, wandb, pandas,
torchvision, safetensors); none of this is needed by CI, which only reads the files written here.

What it records, with Zoology's classes (`zoology.model.LanguageModel`, the mixers,
`zoology.train.Trainer`):

* `lr_schedule.json`: the learning rate of every optimiser step of `Trainer.fit` (its
  AdamW + `CosineAnnealingLR(T_max=max_epochs)` stepped once per epoch), captured with a global
  optimizer step hook while the real `fit` loop runs over a dummy model and dummy batches.
* `<case>.safetensors` + `<case>.json` for each mixer case: Zoology's model built from its
  `ModelConfig`, its own init, then every trainable parameter perturbed by N(0, 0.05) (so that
  norm weights are not all 1, biases not 0, and a swapped or transposed tensor shows); a fixed
  batch; the logits (`LanguageModel.forward(..., return_embeddings=False)`: HEAD's default
  returns hidden states, see docs/DECISIONS.md), the loss (`nn.CrossEntropyLoss()`, as
  `Trainer.compute_loss`), every gradient, and every parameter after one
  `optim.AdamW(model.parameters(), lr, weight_decay)` step (as `Trainer.fit`).
  Tensors: `param/<zoology name>` (the whole `state_dict`, tied and frozen entries included),
  `grad/<name>`, `after/<name>` (trainable parameters), `inputs`, `targets`, `logits`, `loss`.
Dropout is 0 everywhere so the step is deterministic.
"""
import argparse
import json
import os
import subprocess
import sys


def cases():
    """(name, model config kwargs) for each mixer case. Tiny: d = 16, V = 32, L = 12."""
    base = dict(d_model=16, n_layers=2, vocab_size=32, embed_dropout=0.0, resid_dropout=0.0)
    ident = {"name": "torch.nn.Identity", "kwargs": {}}
    mlp = {"name": "zoology.mixers.mlp.MLP", "kwargs": {"hidden_mult": 4}}
    L = 12
    return [
        ("attention", dict(base, max_position_embeddings=L, state_mixer=mlp,
                           sequence_mixer={"name": "zoology.mixers.attention.MHA",
                                           "kwargs": {"num_heads": 2, "dropout": 0.0}})),
        ("sliding_window", dict(base, max_position_embeddings=L, state_mixer=mlp,
                                sequence_mixer={"name": "zoology.mixers.slide_attn.SlidingAttn",
                                                "kwargs": {"block_size": 4, "dropout": 0.0}})),
        ("hyena", dict(base, max_position_embeddings=0, state_mixer=mlp,
                       sequence_mixer={"name": "zoology.mixers.hyena.Hyena",
                                       "kwargs": {"l_max": L, "filter_order": 8, "num_inner_mlps": 2, "w": 10}})),
        ("hyena_short", dict(base, max_position_embeddings=0, state_mixer=ident,
                             sequence_mixer={"name": "zoology.mixers.hyena.Hyena",
                                             "kwargs": {"l_max": L, "filter_order": 8, "num_inner_mlps": 1,
                                                        "emb_dim": 5, "short_filter_order": 4}})),
        ("based", dict(base, max_position_embeddings=0, state_mixer=mlp,
                       sequence_mixer={"name": "zoology.mixers.based.Based",
                                       "kwargs": {"l_max": L, "feature_dim": 4, "num_heads": 2,
                                                  "num_key_value_heads": 2, "feature_name": "taylor_exp"}})),
        ("linear_attention_pos_elu", dict(base, max_position_embeddings=L, state_mixer=ident,
                                          sequence_mixer={"name": "zoology.mixers.based.Based",
                                                          "kwargs": {"l_max": L, "feature_dim": 8, "num_heads": 2,
                                                                     "num_key_value_heads": 2, "feature_name": "pos_elu"}})),
        ("linear_attention_relu", dict(base, max_position_embeddings=L, state_mixer=ident,
                                       sequence_mixer={"name": "zoology.mixers.based.Based",
                                                       "kwargs": {"l_max": L, "feature_dim": 8, "num_heads": 2,
                                                                  "num_key_value_heads": 2,
                                                                  "feature_name": "zoology.mixers.feature_maps.base.ReLU"}})),
        ("linear_attention_square", dict(base, max_position_embeddings=L, state_mixer=mlp,
                                         sequence_mixer={"name": "zoology.mixers.based.Based",
                                                         "kwargs": {"l_max": L, "feature_dim": 8, "num_heads": 2,
                                                                    "num_key_value_heads": 2,
                                                                    "feature_name": "zoology.mixers.feature_maps.base.Square"}})),
        ("hybrid", dict(base, n_layers=3, max_position_embeddings=0, state_mixer=mlp,
                        sequence_mixer={"name": "zoology.mixers.hybrid.Hybrid", "kwargs": {"configs": [
                            {"name": "zoology.mixers.base_conv.BaseConv",
                             "kwargs": {"l_max": L, "kernel_size": [3, 3, -1], "implicit_long_conv": True}},
                            {"name": "zoology.mixers.based.Based",
                             "kwargs": {"l_max": L, "feature_dim": 4, "num_heads": 2, "num_key_value_heads": 2,
                                        "feature_name": "taylor_exp"}}]}})),
        ("base_conv_short", dict(base, max_position_embeddings=0, state_mixer=ident,
                                 sequence_mixer={"name": "zoology.mixers.base_conv.BaseConv",
                                                 "kwargs": {"l_max": L, "kernel_size": 3,
                                                            "implicit_long_conv": True}})),
        ("base_conv_implicit", dict(base, max_position_embeddings=0, state_mixer=mlp,
                                    sequence_mixer={"name": "zoology.mixers.base_conv.BaseConv",
                                                    "kwargs": {"l_max": L, "kernel_size": [3, -1],
                                                               "implicit_long_conv": True}})),
        ("base_conv_explicit", dict(base, max_position_embeddings=0, state_mixer=ident,
                                    sequence_mixer={"name": "zoology.mixers.base_conv.BaseConv",
                                                    "kwargs": {"l_max": L, "kernel_size": -1,
                                                               "implicit_long_conv": False}})),
    ]


def cpu_embeddings():
    """Zoology's `TokenEmbeddings.__init__` defaults to `device='cuda'` and `LMBackbone` does not
    pass one, so `LanguageModel` cannot be built on a machine without a GPU. The one change made to
    Zoology's behaviour here: that default becomes 'cpu' (nothing else in the class changes)."""
    import zoology.model as zm
    init = zm.TokenEmbeddings.__init__
    names = init.__code__.co_varnames[1:init.__code__.co_argcount]
    defaults = list(init.__defaults__)
    i = names.index("device") - (len(names) - len(defaults))
    assert defaults[i] == "cuda", defaults
    defaults[i] = "cpu"
    init.__defaults__ = tuple(defaults)


def commit_of(zoology_dir):
    mirror = os.environ.get("ZOOLOGY_GIT_DIR")
    if mirror:
        return subprocess.check_output(["git", "--git-dir", mirror, "rev-parse", "HEAD"], text=True).strip()
    return os.environ.get("ZOOLOGY_COMMIT", "unknown")


def run_case(name, kwargs, out, meta, lr=3e-3, weight_decay=0.1, seed=0):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from safetensors.torch import save_file
    from zoology.config import ModelConfig
    from zoology.model import LanguageModel

    torch.manual_seed(seed)
    cfg = ModelConfig(**kwargs)
    model = LanguageModel(cfg)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:  # not the implicit filter's fixed positional features `z`
                p.add_(0.05 * torch.randn_like(p))
    model.train()
    b, l = 3, 12
    inputs = torch.randint(0, cfg.vocab_size, (b, l))
    targets = torch.randint(0, cfg.vocab_size, (b, l))
    targets[torch.rand(b, l) < 0.5] = -100
    targets[:, -1] = 5  # at least one supervised position per row
    params = {f"param/{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    logits = model(inputs, return_embeddings=False)
    loss = nn.CrossEntropyLoss()(logits.reshape(-1, logits.shape[-1]), targets.flatten())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    opt.zero_grad()
    loss.backward()
    grads = {f"grad/{k}": p.grad.detach().clone().contiguous() for k, p in model.named_parameters() if p.requires_grad}
    opt.step()
    after = {f"after/{k}": p.detach().clone().contiguous() for k, p in model.named_parameters() if p.requires_grad}
    tensors = {**params, **grads, **after, "inputs": inputs, "targets": targets,
               "logits": logits.detach().contiguous(), "loss": loss.detach().reshape(1)}
    save_file(tensors, os.path.join(out, f"{name}.safetensors"))
    g = opt.param_groups[0]
    info = dict(meta, case=name, model=json.loads(cfg.model_dump_json()),
                optimizer=dict(kind="torch.optim.AdamW", lr=lr, weight_decay=weight_decay,
                               betas=list(g["betas"]), eps=g["eps"]),
                trainable=[k for k, p in model.named_parameters() if p.requires_grad],
                note="every trainable parameter = Zoology init + N(0, 0.05) (seed %d); dropout 0" % seed)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    print(f"{name}: loss {loss.item():.6f}, {len(grads)} gradients")


def lr_schedule(out, meta, lr=3e-3, epochs=16, steps_per_epoch=5):
    """Runs Zoology's real `Trainer.fit` and records the lr of every optimiser step."""
    import torch
    import torch.nn as nn
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    from zoology.train import Trainer

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Embedding(8, 8)

        def forward(self, x):
            return self.w(x)

    class Quiet:
        def log(self, *a, **k):
            pass

    x = torch.zeros(2, 4, dtype=torch.long)
    batches = [(x, x, [{}, {}]) for _ in range(steps_per_epoch)]
    trainer = Trainer(model=Tiny(), train_dataloader=batches, test_dataloader=batches[:1],
                      max_epochs=epochs, learning_rate=lr, weight_decay=0.1,
                      early_stopping_metric=None, device="cpu", logger=Quiet())
    lrs = []
    handle = register_optimizer_step_pre_hook(lambda opt, a, k: lrs.append(opt.param_groups[0]["lr"]))
    trainer.fit()
    handle.remove()
    assert len(lrs) == epochs * steps_per_epoch, len(lrs)
    info = dict(meta, lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch, eta_min=0.0, lrs=lrs,
                note="lr of each optimiser step in zoology.train.Trainer.fit (CosineAnnealingLR(T_max=max_epochs), stepped after each epoch)")
    with open(os.path.join(out, "lr_schedule.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"lr_schedule: {len(lrs)} steps, first {lrs[0]}, last {lrs[-1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoology", required=True, help="a checkout of HazyResearch/zoology")
    ap.add_argument("--out", required=True, help="folder for the fixtures")
    ap.add_argument("--only", nargs="*", help="case names (default: all, and the lr schedule)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.zoology))
    import torch
    cpu_embeddings()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    meta = dict(zoology_commit=commit_of(args.zoology), torch=torch.__version__,
                generator="scripts/zoology_fixtures.py")
    if not args.only or "lr_schedule" in args.only:
        lr_schedule(args.out, meta)
    for name, kwargs in cases():
        if not args.only or name in args.only:
            run_case(name, kwargs, args.out, meta)


if __name__ == "__main__":
    main()
