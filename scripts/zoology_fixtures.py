#!/usr/bin/env python3
"""Golden fixtures from the original Zoology code (issue 24). Run BY HAND, never in CI.

    git --git-dir=<mirror of HazyResearch/zoology> archive HEAD | tar -x -C /work/zoology-src
    git --git-dir=<mirror of fla-org/flash-linear-attention> archive v0.2.1 fla | tar -x -C /tmp/fla-0.2.1
    python scripts/zoology_fixtures.py --zoology /work/zoology-src --fla /tmp/fla-0.2.1 \
        --out crates/zoology/fixtures/zoology

Needs a Python with torch and Zoology's own imports (einops, pydantic, pyyaml, wandb, pandas,
torchvision, safetensors; scipy and opt_einsum for h3); for gla, `--fla` with a source tree of
flash-linear-attention v0.2.1 (the second `archive` line above).
None of this is needed by CI, which only reads the files written here.

mamba, gla and h3 run Zoology's code on a CPU with each CUDA/Triton kernel replaced by the pure-
PyTorch reference its own library ships (mamba_ssm's, vendored by Zoology; fla's) or by Zoology's
own fallback branch; each fixture's JSON lists them under "kernels" (see `cpu_mamba`, `cpu_gla`,
`cpu_h3`).

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
        # Zoology's Mamba runs only in its MambaBlock (block_type = "MambaBlock", which builds
        # `Mamba` itself and ignores `state_mixer`); `use_fast_path = False` is Zoology's own
        # unfused path (`mamba_inner_fn` needs causal_conv1d's CUDA kernel, with no reference in
        # mamba_ssm); see `cpu_mamba` for the kernels substituted.
        ("mamba", dict(base, max_position_embeddings=0, block_type="MambaBlock", state_mixer=ident,
                       sequence_mixer={"name": "zoology.mixers.mamba.Mamba",
                                       "kwargs": {"d_state": 8, "d_conv": 3, "expand": 2,
                                                  "use_fast_path": False}})),
        # Zoology's GatedLinearAttention with its defaults (output gate, fused RMSNorm+swish
        # gate, no short conv) but 2 heads and a rank-4 gate; L <= 64, so it calls
        # `fused_recurrent_gla` (see `cpu_fla`).
        # Zoology's H3 runs on a CPU as shipped (its diagonal SSM's Vandermonde product falls back
        # to `log_vandermonde_naive` without pykeops; `use_fast_fftconv` is off by default); its
        # import of `hippo.py` needs scipy.
        ("h3", dict(base, max_position_embeddings=0, state_mixer=mlp,
                    sequence_mixer={"name": "zoology.mixers.h3.H3",
                                    "kwargs": {"l_max": L, "d_state": 8, "head_dim": 2}})),
        ("gla", dict(base, max_position_embeddings=0, state_mixer=mlp,
                     sequence_mixer={"name": "zoology.mixers.gla.GatedLinearAttention",
                                     "kwargs": {"num_heads": 2, "gate_low_rank_dim": 4}})),
    ]


def cpu_mamba():
    """Zoology's `mamba.py` calls CUDA/Triton kernels; each is replaced by the pure-PyTorch
    reference that the same library (the mamba_ssm code Zoology vendors) ships beside it and tests
    the kernel against. Nothing of Zoology's model code changes. Returns what was substituted (for
    the fixture's metadata).

    * `causal_conv1d` (a CUDA package, not vendored) is given as a module whose
      `causal_conv1d_fn` is None: `Mamba.forward` (unfused path) then takes its own branch
      `self.act(self.conv1d(x)[..., :seqlen])` (nn.Conv1d + SiLU). `causal_conv1d_cuda` and
      `selective_scan_cuda`, imported at the top of the vendored `selective_scan_interface.py`,
      are modules that raise if anything in them is used.
    * `selective_scan_fn` (CUDA) → `selective_scan_ref` (same file).
    * `rms_norm_fn` (Triton fused add + RMSNorm, used by `MambaBlock`) → `rms_norm_ref` (same
      file as the kernel, `triton/layernorm.py`), called with `upcast=True` and the same
      arguments; its `residual_in_fp32` has no counterpart in the reference and does nothing in
      fp32, which is all the fixtures use.
    """
    import types
    import torch

    class Absent(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError(f"{self.__name__}.{name} is a CUDA kernel; it must not run here")

    cc = types.ModuleType("causal_conv1d")
    cc.causal_conv1d_fn = None
    sys.modules.setdefault("causal_conv1d", cc)
    for name in ("causal_conv1d_cuda", "selective_scan_cuda"):
        sys.modules.setdefault(name, Absent(name))
    import zoology.mixers.mamba as zm
    import zoology.mixers.mamba_ssm.selective_scan_interface as ssi
    import zoology.mixers.mamba_ssm.triton.layernorm as ln
    assert zm.causal_conv1d_fn is None
    assert callable(ssi.selective_scan_ref) and zm.selective_scan_fn is ssi.selective_scan_fn
    assert callable(ln.rms_norm_ref) and zm.rms_norm_fn is ln.rms_norm_fn

    def rms_norm(x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6):
        assert x.dtype == torch.float32
        return ln.rms_norm_ref(x, weight, bias, residual=residual, eps=eps, prenorm=prenorm, upcast=True)

    zm.selective_scan_fn = ssi.selective_scan_ref
    zm.rms_norm_fn = rms_norm
    return {"selective_scan_fn": "mamba_ssm selective_scan_ref (zoology/mixers/mamba_ssm/selective_scan_interface.py)",
            "rms_norm_fn": "mamba_ssm rms_norm_ref (zoology/mixers/mamba_ssm/triton/layernorm.py), upcast=True",
            "causal_conv1d_fn": "None: Zoology's Mamba falls back to nn.Conv1d + SiLU (its own branch)",
            "mamba_inner_fn": "not called: use_fast_path = False (Zoology's unfused path)"}


FLA_DIR = None  # --fla: a source tree of fla (flash-linear-attention)


def fla_package():
    """Makes `import fla.<sub>` load from FLA_DIR without running `fla/__init__.py`, which
    imports fla's model zoo and with it `transformers` (not needed by any module Zoology uses).
    Returns fla's version (from its `__init__.py`)."""
    import re
    import types
    assert FLA_DIR, "this case needs --fla (a source tree of flash-linear-attention, e.g. v0.2.1)"
    init = open(os.path.join(FLA_DIR, "fla", "__init__.py")).read()
    version = re.search(r"__version__ = '([^']+)'|__version__ = \"([^\"]+)\"", init)
    if "fla" not in sys.modules:
        pkg = types.ModuleType("fla")
        pkg.__path__ = [os.path.join(FLA_DIR, "fla")]
        sys.modules["fla"] = pkg
    return next(g for g in version.groups() if g)


def cpu_gla():
    """Zoology's `gla.py` runs fla's Triton kernels; each is replaced by fla's own pure-PyTorch
    reference (what fla's tests check the kernels against). Nothing of Zoology's code changes.

    * `fused_recurrent_gla` (Triton; Zoology calls it for L <= 64) → `fla.ops.gla.naive.
      naive_recurrent_gla`, same layout `[B, T, H, ·]` (`head_first=False`), same default scale
      K^-1/2; the wrapper only checks that the arguments the reference lacks are unused
      (`cu_seqlens`, `initial_state`, `output_final_state`, `head_first`).
    * `FusedRMSNormSwishGate.forward` (Triton) → `fla.modules.layernorm_gated.rms_norm_ref(o,
      weight, bias, z=g, eps, norm_before_gate=True)`: RMSNorm(o)·weight·silu(g).
    * `chunk_gla`, `fused_chunk_gla`: made to raise (not called for L <= 64).
    """
    version = fla_package()
    import zoology.mixers.gla as zg
    from fla.ops.gla.naive import naive_recurrent_gla
    from fla.modules import FusedRMSNormSwishGate
    from fla.modules.layernorm_gated import rms_norm_ref

    def recurrent(q, k, v, gk, initial_state=None, output_final_state=False, cu_seqlens=None, head_first=False):
        assert initial_state is None and not output_final_state and cu_seqlens is None and not head_first
        return naive_recurrent_gla(q, k, v, gk)

    def gated_norm(self, x, g, residual=None, prenorm=False, residual_in_fp32=False):
        assert residual is None and not prenorm and self.activation == "swish"
        return rms_norm_ref(x, self.weight, self.bias, z=g, eps=self.eps, norm_before_gate=True)

    def absent(*a, **k):
        raise RuntimeError("a chunked GLA kernel was called; the fixture expects fused_recurrent (L <= 64)")

    zg.fused_recurrent_gla = recurrent
    zg.chunk_gla = zg.fused_chunk_gla = absent
    FusedRMSNormSwishGate.forward = gated_norm
    return {"fla_version": version,
            "fused_recurrent_gla": "fla naive_recurrent_gla (fla/ops/gla/naive.py)",
            "FusedRMSNormSwishGate": "fla rms_norm_ref (fla/modules/layernorm_gated.py), z = gate, norm_before_gate=True"}


def cpu_h3():
    """Zoology's H3 needs no substitution on a CPU: it is checked here that its SSM kernel takes
    Zoology's own fallbacks (no `cauchy_mult` CUDA extension, so `log_vandermonde_fast` is
    None; no pykeops, so `log_vandermonde` is `log_vandermonde_naive`) and that the fast
    FFT convolution is off (`use_fast_fftconv` defaults to False)."""
    import inspect
    import zoology.mixers.h3.ss_kernel_diag as sk
    import zoology.mixers.h3.ops.vandermonde as vd
    from zoology.mixers.h3 import H3
    assert sk.log_vandermonde_fast is None and sk.log_vandermonde is vd.log_vandermonde_naive
    assert inspect.signature(H3.__init__).parameters["use_fast_fftconv"].default is False
    return {"log_vandermonde": "log_vandermonde_naive (Zoology's own fallback: no cauchy_mult, no pykeops)",
            "fftconv": "not used (use_fast_fftconv = False, Zoology's default): torch.fft"}


# the kernel substitutions each case needs (a function returning the metadata)
KERNELS = {"mamba": cpu_mamba, "gla": cpu_gla, "h3": cpu_h3}


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
    if name in KERNELS:
        meta = dict(meta, kernels=KERNELS[name]())
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
    ap.add_argument("--fla", help="a source tree of flash-linear-attention (for gla: v0.2.1, the last "
                    "release whose fused_recurrent_gla takes Zoology's head_first argument)")
    args = ap.parse_args()
    global FLA_DIR
    FLA_DIR = args.fla
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
