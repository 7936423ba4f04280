#!/usr/bin/env python3
"""zoology-rs's training step next to PyTorch eager's, on the same language model (issue 20 §5).

Run it from the repository root with the project's torch environment:

    scripts/with-torch python3 scripts/torch_step_compare.py \
        [--zoology target/release/zoology] [--iters 5] [--threads 2] \
        [--precision fp32,bf16] [--shapes mqar,text] [--mixers attention,base_conv,hyena]

`scripts/with-torch` puts its virtualenv's `bin/` first on PATH, so `python3` there is the venv's
Python with torch 2.11.0 (by default `${XDG_CACHE_HOME:-~/.cache}/zoology-rs/torch-2.11.0/bin/python3`,
or `$ZOOLOGY_TORCH_VENV/bin/python3`); it also exports LD_LIBRARY_PATH for libtorch. Calling that
python directly works too: the script puts torch's own `lib/` on the zoology binary's
LD_LIBRARY_PATH itself. Both sides therefore run the *same* libtorch (zoology-rs links the venv's
libtorch through tch with LIBTORCH_USE_PYTORCH=1), so a difference is the framework around the
kernels (Rust + tch vs Python eager, our AdamW vs torch.optim.AdamW) and the ops each side picks.

What it does, per shape × mixer × precision (a "cell"):

1. zoology-rs: runs `<zoology> bench step [CONFIG] --mixers M --precision P --iters N --warmup 2
   --threads T --json FILE` and reads the row (step, data, forward, backward, optimiser medians,
   parameters).
2. PyTorch eager, in this process, right after (so both see the same machine load): the same LM,
   written here from zoology-rs's Rust sources (crates/zoology/src/model/mod.rs, mixers/attention.rs,
   mixers/base_conv.rs, mixers/hyena.rs, mixers/common/{conv,layers}.rs, train/trainer.rs
   `sparse_head_loss`), not from Zoology's Python. The parameter count must equal zoology-rs's;
   the script stops with an error if it does not. `--check-forward` checks more, before timing:
   that the two are the same *function* (PyTorch's loss from zoology-rs's trained weights equals
   zoology-rs's eval loss to 1e-5; see `check_forward`).
3. One training step on both sides, phase by phase as `zoology bench step` times it:
   data (index_select of the batch), forward (zero_grad, forward with the sparse head and the
   cross-entropy under autocast for bf16, `loss.item()`), backward, optimiser (grad-norm clip
   only if the config's grad_clip > 0, then AdamW with the config's wd, betas, eps and lr 1e-4,
   zoology bench's constant lr). Medians over --iters steps after 2 warm-up steps,
   torch.set_num_threads(--threads). bf16 = `torch.autocast("cpu", dtype=torch.bfloat16)` around
   forward + loss, the logits cast to fp32 before the loss (as zoology-rs's trainer).
4. Prints, per shape, a table: parameters (both), ms/step (both), the ratio zoology/PyTorch
   (≤ 1: zoology-rs is faster) and both sides' data/forward/backward/optimiser split.
   `--rounds R` repeats every cell R times, alternating which side goes first, and reports each
   side's median round (the machine is shared: a load change during a cell shifts one side).

Shapes:
- `mqar`: zoology bench step's built-in model (no CONFIG): d = 128, 2 layers, identity state
  mixer, learned positions (64), V = 8192, MQAR L = 64, kv = 4, B = 64. The data here are random
  tokens with kv supervised positions per sequence in the query region (content does not matter
  for timing; shapes and supervised counts do).
- `text`: configs/arhits-small.toml (d = 128, 4 layers, MLP state mixer, learned positions 512,
  V = 4096, L = 512, B = 8, every position supervised; its [sweep] tables are dropped before
  zoology-rs reads it, as a run config does not take them). `--mixers M` puts `{ name = M }` at the
  registry defaults in the model (zoology bench's rule), so attention has 1 head here, not the
  sweep's 4. If the sword-en corpus is not in zoology-rs's corpus cache, the zoology side runs
  the same config on the built-in `fixture` corpus (`--set data.*.corpus=fixture`, tokenizer
  bpe300; V, L and B unchanged) and says so: the step's cost depends on the shapes, not the text.

PyTorch's AdamW: `--torch-adamw default` (what `torch.optim.AdamW(params, ...)` picks; on CPU in
torch 2.11 that is the single-tensor for-loop implementation, neither foreach nor fused: the
script prints which), `foreach` or `fused`.

Huge pages: the `zoology` binary sets THP_MEM_ALLOC_ENABLE=1 (libtorch backs CPU allocations of
2 MB and more with transparent huge pages) unless the environment already sets it; PyTorch reads
the same variable and leaves it off by default. So by default each side runs as it would on its
own; `THP_MEM_ALLOC_ENABLE=1 scripts/with-torch python3 …` (or `=0`) gives both sides the same
setting. The header prints each side's.

Known differences from zoology-rs's step, by design (printed in the header too):
- zoology-rs's optimiser phase always computes the global gradient norm (its trainer logs it and
  stops on a non-finite one), even with grad_clip = 0; PyTorch computes it only when clipping
  (`--torch-grad-norm` adds it, for the like-for-like accounting).
- zoology-rs zeroes gradients in place; PyTorch's zero_grad() sets them to None (its default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = -100  # tasks::IGNORE
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT_CONFIG = os.path.join("configs", "arhits-small.toml")


# ----------------------------------------------------------------------------------------------
# Configs: what zoology-rs builds for each shape (the fields the model and the step use)
# ----------------------------------------------------------------------------------------------


@dataclass
class Shape:
    name: str
    vocab: int
    batch: int
    seq_len: int
    supervised_per_seq: int  # kv for MQAR, L for text
    d_model: int
    n_layers: int
    max_pos: int
    state_mixer: str
    embed_dropout: float
    resid_dropout: float
    tie_embeddings: bool
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    grad_clip: float
    no_decay_1d: bool
    seed: int  # the config's seed (the run's data seeds derive from it)
    test_task: list  # `zoology data` arguments for the first test segment (--check-forward)
    config_text: str  # the run config as TOML, [sweep] tables dropped
    config_label: str  # what to call it in the output
    builtin: bool  # `zoology bench step` without CONFIG (its built-in MQAR model)
    zoology_sets: list = field(default_factory=list)
    note: str = ""
    config_path: str = ""  # config_text written to a file (main does it)


TRAIN_DEFAULTS = dict(weight_decay=0.1, beta1=0.9, beta2=0.999, eps=1e-8, grad_clip=0.0, no_decay_norms_biases=False)


# zoology-cli bench.rs `cmd_bench_step`'s built-in config, with its defaults filled in
MQAR_BUILTIN = """seed = 1
[data]
vocab_size = 8192
batch_size = 64
[[data.train]]
task = "mqar"
seq_len = 64
num_kv_pairs = 4
num_examples = 64
[[data.test]]
task = "mqar"
seq_len = 64
num_kv_pairs = 4
num_examples = 64
[model]
d_model = 128
n_layers = 2
state_mixer = "identity"
max_position_embeddings = 64
mixer = { name = "attention" }
"""


def without_sweep(text: str, label: str) -> str:
    """The config without its `[sweep…]` / `[[sweep…]]` tables (a run config does not accept
    them). Checked: the result parses to the original minus its `sweep` key."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        m = re.match(r"\s*\[\[?\s*([A-Za-z_\"][^\]]*)\]", line)
        if m:
            skip = m.group(1).strip().strip('"').split(".")[0] == "sweep"
        if not skip:
            out.append(line)
    stripped = "".join(out)
    want = tomllib.loads(text)
    want.pop("sweep", None)
    if tomllib.loads(stripped) != want:
        sys.exit(f"torch_step_compare: {label}: could not drop its [sweep] tables cleanly; pass a config without them")
    return stripped


def mqar_shape() -> Shape:
    # zoology-cli bench.rs `cmd_bench_step`'s built-in config (d 128, L 64, kv 4, B 64, V 8192)
    t = TRAIN_DEFAULTS
    return Shape(
        name="mqar",
        vocab=8192,
        batch=64,
        seq_len=64,
        supervised_per_seq=4,
        d_model=128,
        n_layers=2,
        max_pos=64,
        state_mixer="identity",
        embed_dropout=0.1,  # transformer block default (model/mod.rs)
        resid_dropout=0.0,
        tie_embeddings=True,
        weight_decay=t["weight_decay"],
        beta1=t["beta1"],
        beta2=t["beta2"],
        eps=t["eps"],
        grad_clip=t["grad_clip"],
        no_decay_1d=t["no_decay_norms_biases"],
        seed=1,
        test_task=["mqar", "seq_len=64", "num_kv_pairs=4", "num_examples=64"],
        config_text=MQAR_BUILTIN,
        config_label="(none: bench step's built-in MQAR model)",
        builtin=True,
    )


def corpus_dir() -> str:
    # text/corpus.rs: ${ZOOLOGY_CORPUS_DIR}, else ${XDG_CACHE_HOME:-$HOME/.cache}/zoology-rs/corpus
    if os.environ.get("ZOOLOGY_CORPUS_DIR"):
        return os.environ["ZOOLOGY_CORPUS_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "zoology-rs", "corpus")


def text_shape(path: str, corpus_mode: str) -> Shape:
    if tomllib is None:
        sys.exit("torch_step_compare: reading the text config needs Python ≥ 3.11 (tomllib)")
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        text = f.read()
    cfg = tomllib.loads(text)
    if cfg.get("model", {}).get("block", "auto") not in ("auto", "transformer"):
        sys.exit(f"torch_step_compare: {path}: model.block {cfg['model']['block']!r}: only the transformer block is written here")
    data, model, train = cfg["data"], cfg.get("model", {}), {**TRAIN_DEFAULTS, **cfg.get("train", {})}
    seg = data["train"][0]
    if seg.get("task") != "text":
        sys.exit(f"torch_step_compare: {path}: data.train[0] is not a text segment")
    n = seg.get("num_examples", 0)
    batch = min(data.get("batch_size", 64), n) if n else data.get("batch_size", 64)
    sets, note = [], ""
    corpus, tok = seg.get("corpus"), seg.get("tokenizer")
    have = os.path.isdir(os.path.join(corpus_dir(), corpus or "?"))
    if corpus_mode == "fixture" or (corpus_mode == "auto" and corpus != "fixture" and not have):
        for split in ("train", "test"):
            for i in range(len(data.get(split, []))):
                sets += [f"data.{split}.{i}.corpus=fixture", f"data.{split}.{i}.tokenizer=bpe300"]
        note = (
            f"zoology side on the built-in fixture corpus (bpe300): {corpus}/{tok} is not in "
            f"{corpus_dir()}; V, L, B unchanged"
        )
    block_mamba = False  # --mixers attention/base_conv/hyena: the transformer block
    return Shape(
        name="text",
        vocab=data["vocab_size"],
        batch=batch,
        seq_len=seg["seq_len"],
        supervised_per_seq=seg["seq_len"],
        d_model=model.get("d_model", 128),
        n_layers=model.get("n_layers", 2),
        max_pos=model.get("max_position_embeddings", 0),
        state_mixer=model.get("state_mixer", "mlp"),
        embed_dropout=model.get("embed_dropout", 0.0 if block_mamba else 0.1),
        resid_dropout=model.get("resid_dropout", 0.0),
        tie_embeddings=model.get("tie_embeddings", True),
        weight_decay=train["weight_decay"],
        beta1=train["beta1"],
        beta2=train["beta2"],
        eps=train["eps"],
        grad_clip=train["grad_clip"],
        no_decay_1d=train["no_decay_norms_biases"],
        seed=cfg.get("seed", 123),  # config/mod.rs default
        test_task=test_task(data["test"][0], sets),
        config_text=without_sweep(text, path) if "sweep" in cfg else text,
        config_label=path + (" (its [sweep] tables dropped: a run config does not take them)" if "sweep" in cfg else ""),
        builtin=False,
        zoology_sets=sets,
        note=note,
    )


def test_task(seg: dict, sets: list) -> list:
    """`zoology data` arguments for a test segment, with the `data.test.0.*` overrides applied."""
    seg = dict(seg)
    for s_ in sets:
        k, v = s_.split("=", 1)
        if k.startswith("data.test.0."):
            seg[k[len("data.test.0."):]] = v
    args = [seg.pop("task")]
    for k, v in seg.items():
        args.append(f"{k}={str(v).lower() if isinstance(v, bool) else v}")
    return args


# ----------------------------------------------------------------------------------------------
# The model, written from zoology-rs's Rust sources
# ----------------------------------------------------------------------------------------------


def linear(d_in: int, d_out: int, bias: bool, std: float) -> nn.Linear:
    """mixers/common/layers.rs `Linear`: weights N(0, std), zero bias."""
    m = nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        m.weight.normal_(0.0, std)
        if bias:
            m.bias.zero_()
    return m


def short_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """common/conv.rs `short_conv`: depthwise causal conv1d, padding k−1, first L outputs."""
    _, l, d = x.shape
    k = w.shape[1]
    y = F.conv1d(x.transpose(1, 2), w.view(d, 1, k), b, 1, k - 1, 1, d)
    return y.narrow(2, 0, l).transpose(1, 2)


def fft_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """common/conv.rs `fft_causal_conv`: rfft/irfft zero-padded to 2L, first L outputs."""
    l = u.shape[1]
    n = 2 * l
    uf = torch.fft.rfft(u.transpose(1, 2), n=n, dim=-1, norm="backward")
    hf = torch.fft.rfft(h.narrow(1, 0, l), n=n, dim=-1, norm="backward")
    y = torch.fft.irfft(uf * hf, n=n, dim=-1, norm="backward")
    return y.narrow(2, 0, l).transpose(1, 2)


def positional_features(l: int, emb_dim: int) -> torch.Tensor:
    """common/conv.rs `positional_features`: [t/(L−1), cos(2πft/L), −sin(2πft/L)]."""
    bands = (emb_dim - 1) // 2
    t01 = torch.linspace(0.0, 1.0, l).unsqueeze(1)
    t = torch.arange(l, dtype=torch.float32).unsqueeze(1)
    f = torch.linspace(1e-4, float(bands - 1), bands).unsqueeze(0)
    ang = t * f * (2.0 * math.pi / l)
    return torch.cat([t01, ang.cos(), -ang.sin()], 1)


class Attention(nn.Module):
    """mixers/attention.rs `Attention::forward` (parallel form, registry defaults: 1 head, no
    dropout, no RoPE): masked [L, L] scores, softmax, AV, out_proj."""

    def __init__(self, d: int, init_std: float, out_std: float, num_heads: int = 1, dropout: float = 0.0):
        super().__init__()
        self.wqkv = linear(d, 3 * d, True, init_std)
        self.out_proj = linear(d, d, True, out_std)
        self.h, self.d, self.p = num_heads, d, dropout
        self.scale = 1.0 / math.sqrt(d / num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        q, k, v = self.wqkv(x).chunk(3, -1)
        q, k, v = (t.view(b, l, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))
        scores = q.matmul(k.transpose(-2, -1)) * self.scale
        scores = scores.masked_fill(torch.ones(l, l, dtype=torch.bool).triu(1), float("-inf"))
        attn = scores.softmax(-1, dtype=scores.dtype)
        if self.p > 0 and self.training:
            attn = F.dropout(attn, self.p, True)
        y = attn.matmul(v).transpose(1, 2).contiguous().view(b, l, d)
        return self.out_proj(y)


class BaseConv(nn.Module):
    """mixers/base_conv.rs: y = conv(u) ⊙ (W u + b) + u; short conv (k > 0, PyTorch Conv1d init
    U(±1/√k)) or, k = −1, the implicit long filter by FFT with Zoology's +u skip."""

    def __init__(self, d: int, k: int, max_len: int, init_std: float, emb_dim: int = 3, hidden: int = 16):
        super().__init__()
        self.projection = linear(d, d, True, init_std)
        self.k = k
        if k > 0:
            bound = 1.0 / math.sqrt(k)
            self.conv_weight = nn.Parameter(torch.empty(d, k).uniform_(-bound, bound))
            self.conv_bias = nn.Parameter(torch.empty(d).uniform_(-bound, bound))
        else:
            self.register_buffer("z", positional_features(max_len, emb_dim))
            self.filter_mlp1 = linear(emb_dim, hidden, True, 0.02)  # filter_init "normal"
            self.filter_mlp2 = linear(hidden, d, True, 0.02)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.k > 0:
            c = short_conv(u, self.conv_weight, self.conv_bias)
        else:
            h = self.filter_mlp2(self.filter_mlp1(self.z).relu()).transpose(0, 1)
            c = fft_causal_conv(u, h) + u
        return c * self.projection(u) + u


class Hyena(nn.Module):
    """mixers/hyena.rs (registry defaults: filter_order 64, emb_dim 3, 2 inner MLPs, ω = 1,
    FIR 3, decay 0.3…1.5 to 1e-2, filter_init normal, trained z)."""

    def __init__(self, d: int, max_len: int, init_std: float, out_std: float):
        super().__init__()
        order, emb, inner, w, k = 64, 3, 2, 1.0, 3
        fast, slow, target = 0.3, 1.5, 1e-2
        self.d = d
        self.in_proj = linear(d, 3 * d, True, init_std)
        bound = 1.0 / math.sqrt(k)
        self.short_filter_weight = nn.Parameter(torch.empty(3 * d, k).uniform_(-bound, bound))
        self.short_filter_bias = nn.Parameter(torch.empty(3 * d).uniform_(-bound, bound))
        self.filter_pos_emb_z = nn.Parameter(positional_features(max_len, emb))
        t01 = torch.linspace(0.0, 1.0, max_len).unsqueeze(1)
        deltas = torch.linspace(math.log(target) / slow, math.log(target) / fast, d).abs()
        self.register_buffer("decay", (-(t01 * deltas.unsqueeze(0))).exp())  # [L, d]
        self.filter_ffn = nn.ModuleList(
            [linear(emb if i == 0 else order, order, True, 0.02) for i in range(inner + 1)]
        )
        self.filter_sin_freq = nn.Parameter(torch.full((1, order), w))
        self.filter_out = linear(order, d, False, 0.02)
        self.bias = nn.Parameter(torch.randn(d))
        self.out_proj = linear(d, d, True, out_std)

    def filter(self) -> torch.Tensor:
        h = self.filter_pos_emb_z
        for lin in self.filter_ffn:
            h = (lin(h) * self.filter_sin_freq).sin()
        return (self.filter_out(h) * self.decay).transpose(0, 1)  # [d, L]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        uc = short_conv(self.in_proj(u), self.short_filter_weight, self.short_filter_bias)
        h = self.filter()
        x1, x2, v = uc.split(self.d, -1)
        x1v = x1 * v
        w = fft_causal_conv(x1v, h) + x1v * self.bias
        return self.out_proj(x2 * w)


class StateMixer(nn.Module):
    """model/state_mixer.rs: identity, or MLP Linear d→4d, GELU, Linear 4d→d."""

    def __init__(self, kind: str, d: int, init_std: float, out_std: float):
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.fc1 = linear(d, 4 * d, True, init_std)
            self.fc2 = linear(4 * d, d, True, out_std)
        elif kind != "identity":
            raise SystemExit(f"torch_step_compare: state_mixer {kind!r} is not written here (identity, mlp)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.kind == "identity" else self.fc2(F.gelu(self.fc1(x)))


def build_mixer(name: str, d: int, layer: int, n_layers: int, max_len: int) -> nn.Module:
    init_std, out_std = 0.02, 0.02 / math.sqrt(2.0 * max(n_layers, 1))  # mixers BuildCtx
    if name == "attention":
        return Attention(d, init_std, out_std)
    if name == "base_conv":
        return BaseConv(d, 3, max_len, init_std)  # registry default kernel_size 3
    if name == "hyena":
        return Hyena(d, max_len, init_std, out_std)
    raise SystemExit(f"torch_step_compare: mixer {name!r} is not written here (attention, base_conv, hyena)")


class Block(nn.Module):
    """One layer of the transformer block (Zoology's TransformerBlock): LN1 → mixer, LN2 →
    state mixer (LN2 exists with the identity state mixer too)."""

    def __init__(self, shape: Shape, mixer: str, i: int):
        super().__init__()
        d, n = shape.d_model, shape.n_layers
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.mixer = build_mixer(mixer, d, i, n, shape.seq_len)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.state_mixer = StateMixer(shape.state_mixer, d, 0.02, 0.02 / math.sqrt(2.0 * n))


class LanguageModel(nn.Module):
    """model/mod.rs `LanguageModel` with the transformer block:

        h = dropout_emb(E[x] + P[pos])
        for each block: residual += dropout(h) (not in block 0); h = mixer(LN1(residual));
                        residual += dropout(h); h = state_mixer(LN2(residual))
        out = LN_f(residual + dropout(h)); logits = out Eᵀ (tied)
    """

    def __init__(self, shape: Shape, mixer: str):
        super().__init__()
        d = shape.d_model
        self.shape = shape
        self.embedding = nn.Embedding(shape.vocab, d)
        nn.init.normal_(self.embedding.weight, 0.0, 0.02)
        self.position_embedding = None
        if shape.max_pos > 0:
            self.position_embedding = nn.Embedding(shape.max_pos, d)
            nn.init.normal_(self.position_embedding.weight, 0.0, 0.02)
        self.layers = nn.ModuleList([Block(shape, mixer, i) for i in range(shape.n_layers)])
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.lm_head = None
        if not shape.tie_embeddings:
            self.lm_head = nn.Parameter(torch.randn(shape.vocab, d) * 0.02)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        l = tokens.shape[1]
        h = self.embedding(tokens)
        if self.position_embedding is not None:
            h = h + self.position_embedding(torch.arange(l)).unsqueeze(0)
        h = F.dropout(h, self.shape.embed_dropout, self.training)
        p = self.shape.resid_dropout
        residual = None
        for b in self.layers:
            r = h if residual is None else residual + F.dropout(h, p, self.training)
            h = b.mixer(b.norm1(r))
            r = r + F.dropout(h, p, self.training)
            h = b.state_mixer(b.norm2(r))
            residual = r
        return self.ln_f(residual + F.dropout(h, p, self.training))

    def sparse_head_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """train/trainer.rs `sparse_head_loss`: the head only at supervised positions; the
        logits in fp32 whatever the forward's precision; log-softmax + NLL (tch's
        `cross_entropy_for_logits`, the kernels F.cross_entropy runs)."""
        h = self.hidden(x)
        d = h.shape[2]
        flat_y = y.reshape(-1)
        idx = flat_y.ne(IGNORE).nonzero().squeeze(1)
        hs = h.reshape(-1, d).index_select(0, idx)
        w = self.embedding.weight if self.lm_head is None else self.lm_head
        logits = hs.matmul(w.transpose(0, 1)).float()
        tg = flat_y.index_select(0, idx)
        return F.nll_loss(logits.log_softmax(-1, dtype=torch.float32), tg)


def num_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------
# Data and the timed step
# ----------------------------------------------------------------------------------------------


def make_data(shape: Shape, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` sequences (zoology bench step takes examples 0..B of the first segment). MQAR:
    random tokens, kv supervised positions per sequence in the query region (≥ 2·kv), targets
    from the value half of the vocabulary. Text: random tokens, every position supervised."""
    b, l, v = shape.batch, shape.seq_len, shape.vocab
    x = torch.randint(0, v, (b, l), generator=gen)
    if shape.supervised_per_seq >= l:
        y = torch.randint(0, v, (b, l), generator=gen)
    else:
        kv = shape.supervised_per_seq
        y = torch.full((b, l), IGNORE, dtype=torch.int64)
        for i in range(b):
            pos = 2 * kv + torch.randperm(l - 2 * kv, generator=gen)[:kv]
            y[i, pos] = torch.randint(v // 2, v, (kv,), generator=gen)
    return x, y


def adamw(params, shape: Shape, impl: str) -> tuple[torch.optim.Optimizer, str]:
    kw = dict(lr=1e-4, betas=(shape.beta1, shape.beta2), eps=shape.eps, weight_decay=shape.weight_decay)
    params = list(params)
    if shape.no_decay_1d:
        groups = [
            {"params": [p for p in params if p.dim() > 1]},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
        ]
    else:
        groups = params
    if impl == "foreach":
        return torch.optim.AdamW(groups, foreach=True, **kw), "foreach"
    if impl == "fused":
        return torch.optim.AdamW(groups, fused=True, **kw), "fused"
    from torch.optim.optimizer import _default_to_fused_or_foreach

    fused, foreach = _default_to_fused_or_foreach(params, False, False)
    picked = "fused" if fused else "foreach" if foreach else "for-loop (single-tensor)"
    return torch.optim.AdamW(groups, **kw), picked


def median(v: list[float]) -> float:
    # the same median as zoology bench step (the upper middle for an even count)
    return sorted(v)[len(v) // 2]


def torch_step(shape: Shape, mixer: str, precision: str, iters: int, warmup: int, impl: str, grad_norm: bool) -> dict:
    torch.manual_seed(0)
    model = LanguageModel(shape, mixer)
    model.train()
    opt, picked = adamw(model.parameters(), shape, impl)
    x_all, y_all = make_data(shape, torch.Generator().manual_seed(1))
    idx_list = list(range(shape.batch))
    bf16 = precision == "bf16"
    phases = {k: [] for k in ("data", "forward", "backward", "optimiser", "step")}
    loss_v = float("nan")
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        it = torch.tensor(idx_list, dtype=torch.int64)
        x = x_all.index_select(0, it)
        y = y_all.index_select(0, it)
        t1 = time.perf_counter()
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.sparse_head_loss(x, y)
        loss_v = loss.item()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        if shape.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), shape.grad_clip)
        elif grad_norm:
            torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None]).item()
        opt.step()
        t4 = time.perf_counter()
        if i >= warmup:
            for k, a, b in (("data", t0, t1), ("forward", t1, t2), ("backward", t2, t3), ("optimiser", t3, t4), ("step", t0, t4)):
                phases[k].append(b - a)
    if not math.isfinite(loss_v):
        raise SystemExit(f"torch_step_compare: PyTorch {shape.name}/{mixer}/{precision}: loss {loss_v}")
    out = {f"{k}_s": median(v) for k, v in phases.items()}
    out.update(parameters=num_parameters(model), adamw=picked, loss=loss_v)
    return out


# ----------------------------------------------------------------------------------------------
# zoology-rs's side
# ----------------------------------------------------------------------------------------------


def zoology_env() -> dict:
    env = dict(os.environ)
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def zoology_step(zoology: str, shape: Shape, mixer: str, precision: str, iters: int, warmup: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "step.json")
        cmd = [zoology, "bench", "step"]
        if not shape.builtin:
            cmd.append(shape.config_path)
        for s in shape.zoology_sets:
            cmd += ["--set", s]
        cmd += ["--mixers", mixer, "--precision", precision, "--iters", str(iters), "--warmup", str(warmup)]
        cmd += ["--threads", str(threads), "--json", out]
        r = subprocess.run(cmd, cwd=REPO, env=zoology_env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        with open(out) as f:
            rows = json.load(f)
    row = [x for x in rows if x["precision"] == precision]
    if len(row) != 1:
        raise RuntimeError(f"`{' '.join(cmd)}`: expected one {precision} row in its JSON, got {rows}")
    row = row[0]
    if (row["batch"], row["seq_len"]) != (shape.batch, shape.seq_len):
        raise RuntimeError(
            f"zoology ran B={row['batch']} L={row['seq_len']} but PyTorch runs B={shape.batch} L={shape.seq_len}"
        )
    row["command"] = " ".join(cmd)
    return row


M64 = (1 << 64) - 1


def mix_seed(a: int, b: int) -> int:
    """tasks/mod.rs `mix_seed` (SplitMix64 finaliser): a run's segment seeds."""
    z = a ^ ((b * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & M64)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def check_forward(zoology: str, shape: Shape, mixer: str, threads: int) -> tuple[float, float]:
    """The models are the same function, not only the same size: `zoology train` runs two steps
    (fp32, lr 0.05) and evaluates on one test batch of B; this loads its checkpoint's weights
    (names and shapes must match this model's parameters exactly), exports the same test batch
    with `zoology data --seed mix_seed(seed, 2000000)` (the run's test-segment seed,
    config/mod.rs `generate_data`), and computes the loss here in eval mode. Returns (PyTorch's
    loss, zoology-rs's eval loss); the caller compares them."""
    from safetensors.torch import load_file

    b = shape.batch
    with tempfile.TemporaryDirectory() as d:
        run = os.path.join(d, "run")
        cmd = [zoology, "train", shape.config_path, "--out", run]
        sets = shape.zoology_sets + [
            f'model.mixer={{ name = "{mixer}" }}',
            "train.epochs=1",
            # a large constant lr so that two steps move the weights far from their init: at
            # init every model predicts ≈ uniformly, and a wrong model would hide in a loss ≈ ln V
            "train.lr=0.05",
            "train.warmup_steps=0",
            'train.schedule="constant"',
            f"threads={threads}",
            f"data.train.0.num_examples={2 * b}",
            f"data.test.0.num_examples={b}",
            f"data.test_batch_size={b}",
        ]
        for s_ in sets:
            cmd += ["--set", s_]
        r = subprocess.run(cmd, cwd=REPO, env=zoology_env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        task = [a_ for a_ in shape.test_task if not a_.startswith("num_examples=")] + [f"num_examples={b}"]
        data = os.path.join(d, "test.safetensors")
        cmd2 = [zoology, "data", *task, "--vocab-size", str(shape.vocab), "--seed", str(mix_seed(shape.seed, 2_000_000))]
        cmd2 += ["--split", "test", "--out", data]
        r = subprocess.run(cmd2, cwd=REPO, env=zoology_env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd2)}` failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        xy = load_file(data)
        ck = load_file(os.path.join(run, "checkpoint.safetensors"))
        with open(os.path.join(run, "metrics.jsonl")) as f:
            evals = [json.loads(line) for line in f if '"kind":"eval"' in line]
    sd = {re.sub(r"filter_ffn(\d+)", r"filter_ffn.\1", k[len("model/"):]): v for k, v in ck.items() if k.startswith("model/")}
    model = LanguageModel(shape, mixer)
    mine = {k: tuple(p.shape) for k, p in model.named_parameters()}
    theirs = {k: tuple(v.shape) for k, v in sd.items()}
    if mine != theirs:
        raise SystemExit(
            f"torch_step_compare: {shape.name}/{mixer}: parameters differ from zoology-rs's checkpoint: "
            f"only here {sorted(set(mine.items()) - set(theirs.items()))}, "
            f"only in zoology-rs {sorted(set(theirs.items()) - set(mine.items()))}"
        )
    model.load_state_dict(sd, strict=False)  # the buffers (fixed z, decay) are computed here
    model.eval()
    with torch.no_grad():
        loss = model.sparse_head_loss(xy["inputs"].long(), xy["targets"].long()).item()
    return loss, evals[-1]["loss"]


# ----------------------------------------------------------------------------------------------


def by_step_median(rows: list[dict]) -> dict:
    """Of several rounds' rows, the one with the median step time (the upper middle)."""
    return sorted(rows, key=lambda r: r["step_s"])[len(rows) // 2]


def ms(s: float) -> str:
    return f"{s * 1e3:.1f}"


def split(r: dict) -> str:
    return "/".join(ms(r[k]) for k in ("data_s", "forward_s", "backward_s", "optimiser_s"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoology", default="target/release/zoology", help="zoology binary (default: %(default)s)")
    ap.add_argument("--iters", type=int, default=5, help="timed steps per side (medians)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2, help="libtorch threads on both sides")
    ap.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16")
    ap.add_argument("--shapes", default="mqar,text", help="comma-separated: mqar, text")
    ap.add_argument("--mixers", default="attention,base_conv,hyena", help="comma-separated")
    ap.add_argument("--text-config", default=TEXT_CONFIG, help="the text shape's config (default: %(default)s)")
    ap.add_argument(
        "--text-corpus",
        choices=["auto", "config", "fixture"],
        default="auto",
        help="zoology side's corpus for the text shape: the config's, the built-in fixture, or auto "
        "(the config's if it is in the corpus cache, else fixture)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat each cell this many times, alternating which side runs first; report each side's median round",
    )
    ap.add_argument("--torch-adamw", choices=["default", "foreach", "fused"], default="default")
    ap.add_argument(
        "--torch-grad-norm",
        action="store_true",
        help="also compute the global grad norm in PyTorch's optimiser phase, as zoology-rs always does",
    )
    ap.add_argument(
        "--check-forward",
        action="store_true",
        help="before timing, check per shape and mixer that this PyTorch model computes zoology-rs's loss "
        "from zoology-rs's weights (one `zoology train` step + `zoology data` export each)",
    )
    ap.add_argument("--torch-only", action="store_true", help="skip zoology-rs (develop/check the PyTorch half)")
    ap.add_argument("--json", help="also write every cell's numbers here")
    a = ap.parse_args()

    precisions = [p for p in a.precision.split(",") if p]
    for p in precisions:
        if p not in ("fp32", "bf16"):
            ap.error(f"--precision: unknown precision {p!r}; use fp32 or bf16")
    shape_names = [s for s in a.shapes.split(",") if s]
    for s in shape_names:
        if s not in ("mqar", "text"):
            ap.error(f"--shapes: unknown shape {s!r}; use mqar or text")
    mixers = [m for m in a.mixers.split(",") if m]
    for m in mixers:
        if m not in ("attention", "base_conv", "hyena"):
            ap.error(f"--mixers: {m!r} is not written in PyTorch here; use attention, base_conv, hyena")
    if a.iters < 1 or a.warmup < 0 or a.threads < 1 or a.rounds < 1:
        ap.error("--iters ≥ 1, --warmup ≥ 0, --threads ≥ 1, --rounds ≥ 1")
    zoology = None
    if not a.torch_only:
        zoology = a.zoology if os.path.isabs(a.zoology) else os.path.join(REPO, a.zoology)
        if not os.access(zoology, os.X_OK):
            ap.error(f"--zoology: {zoology} is not an executable; build it (scripts/with-torch cargo build --release) or pass --torch-only")

    torch.set_num_threads(a.threads)
    shapes = [mqar_shape() if s == "mqar" else text_shape(a.text_config, a.text_corpus) for s in shape_names]
    print(
        f"torch {torch.__version__} (Python {sys.version.split()[0]}), {torch.get_num_threads()} threads; "
        f"zoology: {zoology or '(skipped)'}; median of {a.iters} steps after {a.warmup} warm-up, per side; "
        f"{a.rounds} round(s) per cell"
    )
    print(
        "PyTorch side: eager, written from zoology-rs's sources; AdamW lr 1e-4 (zoology bench's); "
        f"grad norm in PyTorch's optimiser phase: {'yes' if a.torch_grad_norm else 'only when clipping'} "
        "(zoology-rs computes it every step); zero_grad sets grads to None"
    )
    workdir = tempfile.TemporaryDirectory()
    for shape in shapes:
        shape.config_path = os.path.join(workdir.name, f"{shape.name}.toml")
        with open(shape.config_path, "w", encoding="utf-8") as f:
            f.write(shape.config_text)
    checks = []
    if a.check_forward and zoology:
        print("\nforward check: PyTorch's loss from zoology-rs's trained weights vs zoology-rs's eval loss (fp32)")
        for shape in shapes:
            for m in mixers:
                tl, zl = check_forward(zoology, shape, m, a.threads)
                rel = abs(tl - zl) / max(abs(zl), 1e-12)
                print(f"   {shape.name:<5} {m:<10} torch {tl:.7f}  zoology {zl:.7f}  rel diff {rel:.1e}", flush=True)
                checks.append(dict(shape=shape.name, mixer=m, torch_loss=tl, zoology_loss=zl, rel_diff=rel))
                if not rel < 1e-5:
                    raise SystemExit(f"torch_step_compare: {shape.name}/{m}: the losses differ by {rel:.1e} (> 1e-5): not the same model")
    thp = os.environ.get("THP_MEM_ALLOC_ENABLE")
    print(
        f"huge pages (THP_MEM_ALLOC_ENABLE): PyTorch {'on' if thp == '1' else 'off'}, "
        f"zoology-rs {'on' if thp in (None, '1') else 'off'} (env {'unset' if thp is None else repr(thp)}; zoology turns it on when unset)"
    )
    cells = []
    for shape in shapes:
        print(
            f"\n== {shape.name}: d={shape.d_model}, {shape.n_layers} layers, state mixer {shape.state_mixer}, "
            f"V={shape.vocab}, L={shape.seq_len}, B={shape.batch}, {shape.supervised_per_seq} supervised/seq, "
            f"positions {shape.max_pos}, embed dropout {shape.embed_dropout}, wd {shape.weight_decay}, grad_clip {shape.grad_clip}"
        )
        print(f"   zoology CONFIG: {shape.config_label}")
        if shape.note:
            print(f"   note: {shape.note}")
        for p in precisions:
            for m in mixers:
                zs_, ts_ = [], []
                for rnd in range(a.rounds):
                    # alternate which side goes first, so that a load change favours neither
                    order = ("zoology", "torch") if rnd % 2 == 0 else ("torch", "zoology")
                    for side in order:
                        if side == "zoology" and zoology:
                            zs_.append(zoology_step(zoology, shape, m, p, a.iters, a.warmup, a.threads))
                        elif side == "torch":
                            ts_.append(torch_step(shape, m, p, a.iters, a.warmup, a.torch_adamw, a.torch_grad_norm))
                z, t = (by_step_median(zs_) if zs_ else None), by_step_median(ts_)
                if a.rounds > 1:
                    t["rounds_step_s"] = [r["step_s"] for r in ts_]
                    if z:
                        z["rounds_step_s"] = [r["step_s"] for r in zs_]
                if z is not None and z["parameters"] != t["parameters"]:
                    raise SystemExit(
                        f"torch_step_compare: {shape.name}/{m}: PyTorch's model has {t['parameters']} parameters, "
                        f"zoology-rs's {z['parameters']}: the models differ, the comparison would be meaningless"
                    )
                cell = dict(shape=shape.name, mixer=m, precision=p, torch=t, zoology=z)
                cells.append(cell)
                zs = f"zoology {ms(z['step_s'])} ms, ratio {z['step_s'] / t['step_s']:.2f}" if z else "zoology -"
                print(f"   {m:<10} {p}: torch {ms(t['step_s'])} ms (AdamW {t['adamw']}), {zs}", flush=True)

    for shape in shapes:
        rows = [c for c in cells if c["shape"] == shape.name]
        print(f"\n{shape.name}: V={shape.vocab} L={shape.seq_len} B={shape.batch} d={shape.d_model} "
              f"{shape.n_layers} layers; ms per step, split = data/forward/backward/optimiser ms")
        hdr = ("mixer", "prec", "params torch", "params zoology", "torch ms", "zoology ms", "zoo/torch",
               "torch split", "zoology split")
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for c in rows:
            t, z = c["torch"], c["zoology"]
            vals = [c["mixer"], c["precision"], f"{t['parameters']:,}",
                    f"{z['parameters']:,}" if z else "-", ms(t["step_s"]), ms(z["step_s"]) if z else "-",
                    f"**{z['step_s'] / t['step_s']:.2f}**" if z else "-", split(t), split(z) if z else "-"]
            print("| " + " | ".join(vals) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), thp_env=thp, forward_checks=checks, cells=cells), f, indent=2)
        print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
