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
//! Forms: parallel (masked `[L, L]` score matrix), reference (one softmax per position from
//! explicit exponentials), recurrent (KV cache: keys and values of every past token). The
//! state grows with the sequence: `2·d·L` elements after `L` tokens.

use super::common::{future_mask, Linear};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionConfig {
    /// Number of heads (must divide d_model).
    pub num_heads: i64,
    /// Dropout on attention weights during training.
    pub dropout: f64,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig { num_heads: 1, dropout: 0.0 }
    }
}

#[derive(Debug)]
pub struct Attention {
    wqkv: Linear,
    out: Linear,
    heads: i64,
    d: i64,
    dropout: f64,
}

impl Attention {
    fn split_heads(&self, x: &Tensor) -> Tensor {
        // [B, L, D] -> [B, H, L, h]
        let (b, l, _) = x.size3().unwrap();
        x.view([b, l, self.heads, self.d / self.heads]).transpose(1, 2)
    }
    fn qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let qkv = self.wqkv.forward(x).chunk(3, -1);
        (qkv[0].shallow_clone(), qkv[1].shallow_clone(), qkv[2].shallow_clone())
    }
    fn scale(&self) -> f64 {
        1.0 / ((self.d / self.heads) as f64).sqrt()
    }
    fn merge(&self, y: &Tensor) -> Tensor {
        // [B, H, L, h] -> [B, L, D]
        let (b, _, l, _) = y.size4().unwrap();
        y.transpose(1, 2).contiguous().view([b, l, self.d])
    }
}

impl Mixer for Attention {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.qkv(x);
        let (q, k, v) = (self.split_heads(&q), self.split_heads(&k), self.split_heads(&v));
        let scores = q.matmul(&k.transpose(-2, -1)) * self.scale();
        let scores = scores.masked_fill(&future_mask(l, x.device()), f64::NEG_INFINITY);
        let attn = scores.softmax(-1, scores.kind()).dropout(self.dropout, train);
        self.out.forward(&self.merge(&attn.matmul(&v)))
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.qkv(x);
        let (q, k, v) = (self.split_heads(&q), self.split_heads(&k), self.split_heads(&v));
        let mut outs = Vec::new();
        for t in 0..l {
            let qt = q.narrow(2, t, 1); // [B,H,1,h]
            let ks = k.narrow(2, 0, t + 1);
            let vs = v.narrow(2, 0, t + 1);
            let s = (qt * &ks).sum_dim_intlist([-1i64].as_slice(), false, x.kind()) * self.scale(); // [B,H,t+1]
            let m = s.amax([-1i64].as_slice(), true);
            let e = (s - m).exp();
            let w = &e / e.sum_dim_intlist([-1i64].as_slice(), true, x.kind());
            outs.push((w.unsqueeze(-1) * vs).sum_dim_intlist([2i64].as_slice(), false, x.kind())); // [B,H,h]
        }
        let y = Tensor::stack(&outs, 2); // [B,H,L,h]
        self.out.forward(&self.merge(&y))
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.out.ws.kind(), self.out.ws.device());
        MixerState::new(vec![Tensor::zeros([batch, 0, self.d], opts), Tensor::zeros([batch, 0, self.d], opts)])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let (q, k, v) = self.qkv(&x_t.unsqueeze(1));
        let kc = Tensor::cat(&[&state.tensors[0], &k], 1);
        let vc = Tensor::cat(&[&state.tensors[1], &v], 1);
        let (qh, kh, vh) = (self.split_heads(&q), self.split_heads(&kc), self.split_heads(&vc));
        let attn = (qh.matmul(&kh.transpose(-2, -1)) * self.scale()).softmax(-1, x_t.kind());
        let y = self.out.forward(&self.merge(&attn.matmul(&vh)));
        state.tensors = vec![kc, vc];
        y.squeeze_dim(1)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        2 * self.d * seq_len
    }
}

impl MixerKind for Attention {
    type Config = AttentionConfig;
    const NAME: &'static str = "attention";
    const ABOUT: &'static str = "multi-head causal softmax attention (KV-cache recurrence)";
    const STATE_FORMULA: &'static str = "2·d·L (KV cache)";
    const CONSTANT_STATE: bool = false;

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
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &AttentionConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(Attention {
            wqkv: Linear::new(&p / "wqkv", d, 3 * d, true, ctx.init_std),
            out: Linear::new(&p / "out_proj", d, d, true, ctx.out_std),
            heads: c.num_heads,
            d,
            dropout: c.dropout,
        })
    }

    fn suite_variants() -> Vec<AttentionConfig> {
        vec![AttentionConfig::default(), AttentionConfig { num_heads: 2, dropout: 0.0 }]
    }
}
