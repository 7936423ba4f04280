//! `attention`: multi-head causal softmax attention (Zoology's `MHA`).
//!
//! With `H` heads of width `h = D/H`, projections `[q, k, v] = x W_qkvᵀ + b` and per head
//!
//! ```text
//! A = softmax(q kᵀ / √h + M),   M[t, s] = −∞ for s > t, else 0
//! y = concat_heads(A v) W_oᵀ + b_o
//! ```
//! Dropout (`dropout`, default 0; Zoology Figure 2 used 0.1) applies to `A` in training only.
//!
//! Optional rotary position embeddings (`rope = true`, base `rope_base` = 10000; off by default
//! as in Zoology's MHA): q and k of each head are rotated by their absolute position `p`,
//! `[x₁, x₂] ↦ [x₁ cos pθ − x₂ sin pθ, x₂ cos pθ + x₁ sin pθ]`, `θ_i = base^(−2i/h)`, before the
//! scores (GPT-NeoX rotate-half layout; needs an even head width).
//!
//! Forms: parallel (masked `[L, L]` score matrix), reference (one softmax per position from
//! explicit exponentials; rotations built per position in f64), recurrent (KV cache: keys,
//! already rotated, and values of every past token; the new token's position is the number of
//! cached tokens). The state grows with the sequence: `2·d·L` elements after `L` tokens.
//!
//! FLOPs ([`crate::flops`] convention): projections `8·L·d²` (`x W_qkvᵀ` 6, `W_o` 2), scores
//! `QKᵀ` `2·L²·d` and `AV` `2·L²·d`, counted in full (the masked `[L, L]` matrix is computed);
//! forward `8·L·d² + 4·L²·d` per sequence. Decode at context L: `8·d² + 4·d·L`; prefill runs
//! the KV-cache step form, `Σ_{t≤L}` of that.
//!
//! Init: `wqkv` N(0, 0.02), `out_proj` N(0, 0.02/√(2·n_layers)), zero biases (Zoology's rule).

use super::common::layers::{future_mask, merge_heads, rope, rope_reference, split_heads, Linear};
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use crate::flops::MixerFlops;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionConfig {
    /// Number of heads (must divide d_model).
    pub num_heads: i64,
    /// Dropout on attention weights during training.
    pub dropout: f64,
    /// Rotary position embeddings on q and k.
    pub rope: bool,
    /// RoPE base (θ_i = base^(−2i/h)).
    pub rope_base: f64,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig { num_heads: 1, dropout: 0.0, rope: false, rope_base: 10000.0 }
    }
}

#[derive(Debug)]
pub struct Attention {
    wqkv: Linear,
    out: Linear,
    heads: i64,
    d: i64,
    dropout: f64,
    rope_base: Option<f64>,
}

impl Attention {
    /// Per-head `(q, k, v)`, each `[B, H, L, h]`, with q and k rotated for positions
    /// `offset..` when RoPE is on (`reference` selects the per-position rotation).
    pub(super) fn heads_qkv(&self, x: &Tensor, offset: i64, reference: bool) -> (Tensor, Tensor, Tensor) {
        let qkv = self.wqkv.forward(x).chunk(3, -1);
        let (q, k, v) =
            (split_heads(&qkv[0], self.heads), split_heads(&qkv[1], self.heads), split_heads(&qkv[2], self.heads));
        match self.rope_base {
            Some(base) if reference => (rope_reference(&q, offset, base), rope_reference(&k, offset, base), v),
            Some(base) => (rope(&q, offset, base), rope(&k, offset, base), v),
            None => (q, k, v),
        }
    }
    pub(super) fn scale(&self) -> f64 {
        1.0 / ((self.d / self.heads) as f64).sqrt()
    }
    /// Merges heads `[B, H, L, h]` and applies the output projection.
    pub(super) fn project_out(&self, y: &Tensor) -> Tensor {
        self.out.forward(&merge_heads(y))
    }
    pub(super) fn dropout(&self) -> f64 {
        self.dropout
    }
    pub(super) fn width(&self) -> i64 {
        self.d
    }
    /// Kind and device of the parameters.
    pub(super) fn opts(&self) -> (tch::Kind, tch::Device) {
        (self.out.ws.kind(), self.out.ws.device())
    }
    /// Projection FLOPs per token (`wqkv` and `out_proj`).
    pub(super) fn proj_flops(&self) -> f64 {
        self.wqkv.flops() + self.out.flops()
    }
    pub(super) fn num_heads(&self) -> i64 {
        self.heads
    }
    /// Softmax over the last axis of `scores`, computed from explicit exponentials.
    pub(super) fn explicit_softmax(s: &Tensor) -> Tensor {
        let m = s.amax([-1i64].as_slice(), true);
        let e = (s - m).exp();
        &e / e.sum_dim_intlist([-1i64].as_slice(), true, s.kind())
    }
}

impl Mixer for Attention {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.heads_qkv(x, 0, false);
        let scores = q.matmul(&k.transpose(-2, -1)) * self.scale();
        let scores = scores.masked_fill(&future_mask(l, x.device()), f64::NEG_INFINITY);
        let attn = scores.softmax(-1, scores.kind()).dropout(self.dropout, train);
        self.project_out(&attn.matmul(&v))
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.heads_qkv(x, 0, true);
        let mut outs = Vec::new();
        for t in 0..l {
            let qt = q.narrow(2, t, 1); // [B,H,1,h]
            let ks = k.narrow(2, 0, t + 1);
            let vs = v.narrow(2, 0, t + 1);
            let s = (qt * &ks).sum_dim_intlist([-1i64].as_slice(), false, x.kind()) * self.scale(); // [B,H,t+1]
            let w = Self::explicit_softmax(&s);
            outs.push((w.unsqueeze(-1) * vs).sum_dim_intlist([2i64].as_slice(), false, x.kind()));
            // [B,H,h]
        }
        let y = Tensor::stack(&outs, 2); // [B,H,L,h]
        self.project_out(&y)
    }

    /// Parallel prefill: the forward form, and the KV cache of the whole prompt in the step
    /// form's layout (`[B, P, D]`, heads merged, keys rotated from position 0).
    fn prefill(&self, x: &Tensor) -> (Tensor, MixerState) {
        let (_, k, v) = self.heads_qkv(x, 0, false);
        (self.forward(x, false), MixerState::new(vec![merge_heads(&k), merge_heads(&v)]))
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = self.opts();
        MixerState::new(vec![Tensor::zeros([batch, 0, self.d], opts), Tensor::zeros([batch, 0, self.d], opts)])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        // cache layout [B, t, D] (heads merged), keys stored already rotated
        let pos = state.tensors[0].size()[1];
        let (q, k, v) = self.heads_qkv(&x_t.unsqueeze(1), pos, false);
        let kc = Tensor::cat(&[&state.tensors[0], &merge_heads(&k)], 1);
        let vc = Tensor::cat(&[&state.tensors[1], &merge_heads(&v)], 1);
        let (kh, vh) = (split_heads(&kc, self.heads), split_heads(&vc, self.heads));
        let attn = (q.matmul(&kh.transpose(-2, -1)) * self.scale()).softmax(-1, x_t.kind());
        let y = self.project_out(&attn.matmul(&vh));
        state.tensors = vec![kc, vc];
        y.squeeze_dim(1)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        2 * self.d * seq_len
    }

    /// Zoology's `MHA.state_size`: `2 · d_model · sequence_length`, the same count.
    fn state_size_zoology(&self, seq_len: i64) -> Option<i64> {
        Some(2 * self.d * seq_len)
    }

    fn flops(&self, seq_len: i64) -> MixerFlops {
        let (d, l, proj) = (self.d as f64, seq_len as f64, self.proj_flops());
        MixerFlops::stepwise(l * proj + 4.0 * l * l * d, 0.0, seq_len, |t| proj + 4.0 * d * t as f64)
    }
}

impl MixerKind for Attention {
    type Config = AttentionConfig;
    const NAME: &'static str = "attention";
    const ABOUT: &'static str = "multi-head causal softmax attention (KV-cache recurrence)";
    const STATE_FORMULA: &'static str = "2·d·L (KV cache)";
    const CONSTANT_STATE: bool = false;

    /// Parameters `4d² + 4d`; kept for the backward pass: q, k, v (`3·d·L`), the softmax
    /// weights (`H·L²`) and the merged heads (`d·L`); the scores before their softmax (`H·L²`)
    /// live while it runs.
    fn memory(c: &AttentionConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        let (df, lf, h) = (d as f64, l as f64, c.num_heads.max(1) as f64);
        MixerMemory {
            params: Some(linear_params(d, 3 * d, true) + linear_params(d, d, true)),
            saved_per_seq: 4.0 * df * lf + h * lf * lf,
            transient_per_seq: h * lf * lf,
            transient_what: "attention scores (num_heads × seq_len² per sequence)",
        }
    }

    fn validate(c: &AttentionConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        if !(0.0..1.0).contains(&c.dropout) {
            return Err(config_err(format!("{field}.dropout"), format!("must be in [0, 1) (got {})", c.dropout)));
        }
        if c.rope && (d / c.num_heads) % 2 != 0 {
            return Err(config_err(
                format!("{field}.rope"),
                format!("needs an even head width, but d_model / num_heads = {d} / {} is odd; change num_heads or set rope = false", c.num_heads),
            ));
        }
        if c.rope && !(c.rope_base > 1.0 && c.rope_base.is_finite()) {
            return Err(config_err(
                format!("{field}.rope_base"),
                format!("must be a finite number > 1 (got {})", c.rope_base),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &AttentionConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(Attention {
            wqkv: Linear::new(&p / "wqkv", d, 3 * d, true, ctx.init_std),
            out: Linear::new(&p / "out_proj", d, d, true, ctx.out_std),
            heads: c.num_heads,
            d,
            dropout: c.dropout,
            rope_base: c.rope.then_some(c.rope_base),
        })
    }

    fn suite_variants() -> Vec<AttentionConfig> {
        vec![
            AttentionConfig::default(),
            AttentionConfig { num_heads: 2, ..Default::default() },
            AttentionConfig { num_heads: 2, rope: true, ..Default::default() },
        ]
    }
}
