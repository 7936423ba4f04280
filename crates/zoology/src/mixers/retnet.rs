//! `retnet`: multi-scale retention (Sun et al. 2023, RetNet).
//!
//! With `H` heads of width `h = D/H`, `q = W_q x`, `k = W_k x / √h`, `v = W_v x` and a fixed
//! decay per head `γ_j = 1 − 2^(−5−j)`, `j = 0..H−1`:
//!
//! ```text
//! S_t = γ S_{t−1} + k_t v_tᵀ,   o_t = S_tᵀ q_t          (recurrent)
//! O   = (Q Kᵀ ⊙ D) V,   D[t, s] = γ^{t−s} for s ≤ t, else 0     (parallel)
//! y   = W_o( swish(W_g x) ⊙ GroupNorm_H(concat_heads(o)) )
//! ```
//! GroupNorm normalises each head's `o_t` (mean and variance over its `h` channels, eps
//! `norm_eps`) with a learned affine over D.
//!
//! Forms: training = chunked retention (`linear_attn::chunked_linear_attention` with the scalar log
//! decay `log γ` per head: within a chunk exactly the parallel `(QKᵀ ⊙ D)V`, so with
//! `chunk_size ≥ L` the training form *is* the parallel form; across chunks the state is carried
//! with decay `γ^C`); reference = the recurrence loop; recurrent = one update per token.
//! No xPos rotation (RetNet's relative position also comes from the decay; see DECISIONS.md).
//!
//! State: `H·h·h = d²/H` elements, constant in L.

use super::layers::{merge_heads, split_heads, Linear};
use super::linear_attn::DecayedLinear;
use super::{BuildCtx, MixerKind};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetNetConfig {
    /// Number of heads (must divide d_model); head j decays with γ_j = 1 − 2^(−5−j).
    pub num_heads: i64,
    /// Chunk length of the training form.
    pub chunk_size: i64,
    /// GroupNorm epsilon.
    pub norm_eps: f64,
}

impl Default for RetNetConfig {
    fn default() -> Self {
        RetNetConfig { num_heads: 4, chunk_size: 64, norm_eps: 1e-5 }
    }
}

#[derive(Debug)]
pub struct RetNet {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wg: Linear,
    out: Linear,
    gn_weight: Tensor,
    gn_bias: Tensor,
    cfg: RetNetConfig,
    d: i64,
}

impl RetNet {
    fn head_dim(&self) -> i64 {
        self.d / self.cfg.num_heads
    }
    /// `log γ_j` per head, `[1, H, 1, 1]`.
    fn log_decay(&self, like: &Tensor) -> Tensor {
        let g: Vec<f32> = (0..self.cfg.num_heads).map(|j| (1.0 - 2f64.powi(-5 - j as i32)).ln() as f32).collect();
        Tensor::from_slice(&g).to_kind(like.kind()).to_device(like.device()).view([1, -1, 1, 1])
    }
}

impl DecayedLinear for RetNet {
    /// q, k, v `[B, H, L, h]` and the log decay broadcast to `[B, H, L, 1]`.
    fn qkvg(&self, x: &Tensor) -> (Tensor, Tensor, Tensor, Option<Tensor>) {
        let h = self.cfg.num_heads;
        let q = split_heads(&self.wq.forward(x), h);
        let k = split_heads(&self.wk.forward(x), h) / (self.head_dim() as f64).sqrt();
        let v = split_heads(&self.wv.forward(x), h);
        let (b, _, l, _) = q.size4().unwrap();
        let g = self.log_decay(&q).expand([b, h, l, 1], false);
        (q, k, v, Some(g))
    }
    /// Per-head GroupNorm, swish gate, output projection. `o: [B, H, L, h]`, `x: [B, L, D]`.
    fn finish(&self, o: &Tensor, x: &Tensor) -> Tensor {
        let dims = [-1i64];
        let mean = o.mean_dim(dims.as_slice(), true, o.kind());
        let var = (o - &mean).square().mean_dim(dims.as_slice(), true, o.kind());
        let normed = merge_heads(&((o - mean) * (var + self.cfg.norm_eps).rsqrt())) * &self.gn_weight + &self.gn_bias;
        self.out.forward(&(self.wg.forward(x).silu() * normed))
    }
    fn chunk_size(&self) -> i64 {
        self.cfg.chunk_size
    }
    fn state_shape(&self) -> [i64; 3] {
        [self.cfg.num_heads, self.head_dim(), self.head_dim()]
    }
    fn opts(&self) -> (tch::Kind, tch::Device) {
        (self.out.ws.kind(), self.out.ws.device())
    }
}

impl MixerKind for RetNet {
    type Config = RetNetConfig;
    const NAME: &'static str = "retnet";
    const ABOUT: &'static str = "RetNet multi-scale retention: per-head decay 1−2^(−5−h), GroupNorm + swish gate, chunked";
    const STATE_FORMULA: &'static str = "H·h² = d²/H (h = d/H)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &RetNetConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        if c.chunk_size < 1 {
            return Err(config_err(format!("{field}.chunk_size"), format!("must be ≥ 1 (got {})", c.chunk_size)));
        }
        if !(c.norm_eps > 0.0 && c.norm_eps.is_finite()) {
            return Err(config_err(format!("{field}.norm_eps"), format!("must be a finite number > 0 (got {})", c.norm_eps)));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &RetNetConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(RetNet {
            wq: Linear::new(&p / "q_proj", d, d, false, ctx.init_std),
            wk: Linear::new(&p / "k_proj", d, d, false, ctx.init_std),
            wv: Linear::new(&p / "v_proj", d, d, false, ctx.init_std),
            wg: Linear::new(&p / "g_proj", d, d, false, ctx.init_std),
            out: Linear::new(&p / "out_proj", d, d, false, ctx.out_std),
            gn_weight: p.var("group_norm_weight", &[d], nn::Init::Const(1.0)),
            gn_bias: p.var("group_norm_bias", &[d], nn::Init::Const(0.0)),
            cfg: c.clone(),
            d,
        })
    }

    fn suite_variants() -> Vec<RetNetConfig> {
        vec![RetNetConfig::default(), RetNetConfig { num_heads: 2, chunk_size: 4, ..Default::default() }]
    }
}
