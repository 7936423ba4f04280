//! `sliding_window`: causal softmax attention over a window of recent tokens (Zoology's
//! `SlidingAttn`).
//!
//! Per head (width `h = D/H`), with `[q, k, v] = x W_qkvᵀ + b` and `n` the number of tokens a
//! position sees (itself included):
//!
//! ```text
//! y_t = Σ_{s=max(0,t−n+1)}^{t} softmax_s(q_t·k_s / √h) v_s,   y = concat_heads(y) W_oᵀ + b_o
//! ```
//! `window = w` gives `n` by `window_convention`: `"zoology"` (default) `n = w + 1`, as Zoology's
//! mask (`mask[i, 0:max(0, i − w)] = −∞` keeps positions `i − w ..= i`); `"exact"` `n = w`;
//! `"based_flash"` `n = ⌊w/2⌋ + 1`, as Based's flash-attention window `(w/2, 0)`.
//! The projections, head split and output projection are the `attention` mixer's (this mixer
//! wraps one), so `sliding_window` with `n ≥ L` equals `attention`.
//!
//! Forms:
//! - parallel: when `n ≥ L`, one masked `[L, L]` score matrix; otherwise chunked banded
//!   attention: the sequence is cut into blocks of `n` positions and each block's queries
//!   attend to the keys of their own block and the previous one (`[n, 2n]` scores per block,
//!   masked to `t − n < s ≤ t`), O(L·n·d);
//! - reference: per position, an explicit softmax over the keys `max(0, t−n+1) ..= t`;
//! - recurrent: a rolling KV cache of at most `n` tokens (oldest dropped first).
//!
//! FLOPs ([`crate::flops`] convention): `n ≥ L`: attention's `8·L·d² + 4·L²·d`. Otherwise
//! each block of `n` queries scores `2n` keys: `8·L·d² + 8·n·d·L_p` with `L_p = ⌈L/n⌉·n`
//! (`QKᵀ` and `AV` over `[n, 2n]` blocks, masked entries counted). Decode at context L:
//! `8·d² + 4·d·min(L, n)`; prefill is the step form.
//!
//! State: `2·d·min(L, n)` elements after `L` tokens (constant `2·d·n` once `L ≥ n`). Zoology's
//! `state_size()` counts `2·w·d` whatever L and the convention (`state_size_zoology`).

use super::attention::{Attention, AttentionConfig};
use super::common::chunking::ChunkLayout;
use super::common::layers::{future_mask, merge_heads, split_heads};
use super::{BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlidingWindowConfig {
    /// Window size w (Zoology's `block_size`; Based: 64); how many tokens it lets a position
    /// see is set by `window_convention`.
    pub window: i64,
    /// `"zoology"`: w + 1 tokens (Zoology's mask); `"exact"`: w tokens; `"based_flash"`:
    /// ⌊w/2⌋ + 1 tokens (Based's flash-attention window (w/2, 0)).
    pub window_convention: WindowConvention,
    /// Number of heads (must divide d_model).
    pub num_heads: i64,
    /// Dropout on attention weights during training.
    pub dropout: f64,
}

impl Default for SlidingWindowConfig {
    fn default() -> Self {
        SlidingWindowConfig { window: 64, window_convention: WindowConvention::Zoology, num_heads: 1, dropout: 0.0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowConvention {
    Zoology,
    Exact,
    BasedFlash,
}

impl SlidingWindowConfig {
    /// Tokens each position sees, itself included.
    pub fn tokens_seen(&self) -> i64 {
        match self.window_convention {
            WindowConvention::Zoology => self.window + 1,
            WindowConvention::Exact => self.window,
            WindowConvention::BasedFlash => self.window / 2 + 1,
        }
    }
}

/// Largest accepted `window` (a config beyond it is almost certainly a typo).
const MAX_WINDOW: i64 = 1 << 20;

#[derive(Debug)]
pub struct SlidingWindow {
    attn: Attention,
    /// Tokens each position sees (n; the code below calls it `w`).
    window: i64,
    /// The configured w (Zoology's `block_size`), for Zoology's state formula.
    block_size: i64,
}

impl Mixer for SlidingWindow {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.attn.heads_qkv(x, 0, false);
        let w = self.window;
        let scale = self.attn.scale();
        let y = if w >= l {
            let s =
                (q.matmul(&k.transpose(-2, -1)) * scale).masked_fill(&future_mask(l, x.device()), f64::NEG_INFINITY);
            s.softmax(-1, s.kind()).dropout(self.attn.dropout(), train).matmul(&v)
        } else {
            let lay = ChunkLayout::new(l, w);
            let n = lay.n;
            let pad = |t: &Tensor| lay.split(t, 2); // [B,H,n,w,e]
            let (qb, kb, vb) = (pad(&q), pad(&k), pad(&v));
            // keys of the previous block (zeros before the first) followed by the block's own
            let prev = |t: &Tensor| Tensor::cat(&[t.zeros_like().narrow(2, 0, 1), t.narrow(2, 0, n - 1)], 2);
            let kx = Tensor::cat(&[prev(&kb), kb.shallow_clone()], 3); // [B,H,n,2w,e]
            let vx = Tensor::cat(&[prev(&vb), vb.shallow_clone()], 3);
            // query i (position nw+i) may see extended key j (position (n−1)w+j) iff i < j ≤ i+w;
            // the first block has no previous block
            let opts = (Kind::Int64, x.device());
            let i = Tensor::arange(w, opts).view([w, 1]);
            let j = Tensor::arange(2 * w, opts).view([1, 2 * w]);
            let band = j.gt_tensor(&i).logical_and(&j.le_tensor(&(&i + w))); // [w, 2w]
            let first = j.ge(w).logical_and(&band);
            let allowed =
                Tensor::stack(&[first].into_iter().chain((1..n).map(|_| band.shallow_clone())).collect::<Vec<_>>(), 0); // [n,w,2w]
            let s = (qb.matmul(&kx.transpose(-2, -1)) * scale).masked_fill(&allowed.logical_not(), f64::NEG_INFINITY);
            let a = s.softmax(-1, s.kind()).dropout(self.attn.dropout(), train);
            lay.merge(&a.matmul(&vx), 2)
        };
        self.attn.project_out(&y)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.attn.heads_qkv(x, 0, true);
        let outs: Vec<Tensor> = (0..l)
            .map(|t| {
                let lo = (t - self.window + 1).max(0);
                let (ks, vs) = (k.narrow(2, lo, t - lo + 1), v.narrow(2, lo, t - lo + 1));
                let s =
                    (q.narrow(2, t, 1) * &ks).sum_dim_intlist([-1i64].as_slice(), false, x.kind()) * self.attn.scale();
                let w = Attention::explicit_softmax(&s); // [B,H,n]
                (w.unsqueeze(-1) * vs).sum_dim_intlist([2i64].as_slice(), false, x.kind())
            })
            .collect();
        self.attn.project_out(&Tensor::stack(&outs, 2))
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let d = self.attn.width();
        let z = Tensor::zeros([batch, 0, d], self.attn.opts());
        MixerState::new(vec![z.shallow_clone(), z])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let heads = self.heads();
        let (q, k, v) = self.attn.heads_qkv(&x_t.unsqueeze(1), 0, false);
        let roll = |cache: &Tensor, new: &Tensor| {
            let c = Tensor::cat(&[cache, &merge_heads(new)], 1);
            let n = c.size()[1];
            if n > self.window {
                c.narrow(1, n - self.window, self.window)
            } else {
                c
            }
        };
        let kc = roll(&state.tensors[0], &k);
        let vc = roll(&state.tensors[1], &v);
        let (kh, vh) = (split_heads(&kc, heads), split_heads(&vc, heads));
        let a = (q.matmul(&kh.transpose(-2, -1)) * self.attn.scale()).softmax(-1, x_t.kind());
        let y = self.attn.project_out(&a.matmul(&vh));
        state.tensors = vec![kc, vc];
        y.squeeze_dim(1)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        2 * self.attn.width() * seq_len.min(self.window)
    }

    /// Zoology's `SlidingAttn.state_size`: `block_size · d · 2`.
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(2 * self.block_size * self.attn.width())
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let (d, l, n, proj) = (self.attn.width() as f64, seq_len as f64, self.window, self.attn.proj_flops());
        let mix =
            if n >= seq_len { 4.0 * l * l * d } else { 8.0 * n as f64 * d * crate::flops::padded(seq_len, n) as f64 };
        crate::flops::MixerFlops::stepwise(l * proj + mix, 0.0, seq_len, |t| proj + 4.0 * d * t.min(n) as f64)
    }
}

impl SlidingWindow {
    fn heads(&self) -> i64 {
        self.attn.num_heads()
    }
}

impl MixerKind for SlidingWindow {
    type Config = SlidingWindowConfig;
    const NAME: &'static str = "sliding_window";
    const ABOUT: &'static str = "causal softmax attention over the last w+1 tokens (Zoology's mask; window_convention exact/based_flash), rolling KV cache";
    const STATE_FORMULA: &'static str =
        "2·d·min(L, n), n = w+1 (zoology), w (exact), ⌊w/2⌋+1 (based_flash) (rolling KV cache)";
    const CONSTANT_STATE: bool = false;

    /// Attention's parameters; the scores are `H·L²` when the window covers the sequence, else
    /// `H·⌈L/w⌉·2w²` (each block of w queries against 2w keys), kept after their softmax too.
    fn memory(c: &SlidingWindowConfig, d: i64, ctx: &BuildCtx, l: i64) -> MixerMemory {
        let full = Attention::memory(&Self::attention_config(c), d, ctx, l);
        let w = c.tokens_seen().max(1);
        if w >= l {
            return full;
        }
        let (h, blocks, wf) = (c.num_heads.max(1) as f64, ((l + w - 1) / w) as f64, w as f64);
        let scores = h * blocks * 2.0 * wf * wf;
        MixerMemory {
            saved_per_seq: 4.0 * d as f64 * l as f64 + scores,
            transient_per_seq: scores,
            transient_what: "banded attention scores (num_heads × ⌈seq_len/window⌉ × 2·window² per sequence)",
            ..full
        }
    }

    fn validate(c: &SlidingWindowConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        if !(1..=MAX_WINDOW).contains(&c.window) {
            return Err(config_err(
                format!("{field}.window"),
                format!("must be between 1 and {MAX_WINDOW} tokens (got {})", c.window),
            ));
        }
        Attention::validate(&Self::attention_config(c), d, ctx, field)
    }

    fn build(p: nn::Path, d: i64, c: &SlidingWindowConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(SlidingWindow {
            attn: Attention::build(p, d, &Self::attention_config(c), ctx)?,
            window: c.tokens_seen(),
            block_size: c.window,
        })
    }

    fn suite_variants() -> Vec<SlidingWindowConfig> {
        vec![
            SlidingWindowConfig::default(),
            SlidingWindowConfig { window: 4, ..Default::default() },
            SlidingWindowConfig { window: 4, window_convention: WindowConvention::Exact, ..Default::default() },
            SlidingWindowConfig {
                window: 7,
                window_convention: WindowConvention::BasedFlash,
                num_heads: 2,
                ..Default::default()
            },
            SlidingWindowConfig { window: 8, num_heads: 2, ..Default::default() },
        ]
    }
}

impl SlidingWindow {
    fn attention_config(c: &SlidingWindowConfig) -> AttentionConfig {
        AttentionConfig { num_heads: c.num_heads, dropout: c.dropout, ..Default::default() }
    }
}
