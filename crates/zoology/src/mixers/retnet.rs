//! `retnet`: multi-scale retention (Sun et al. 2023, RetNet).
//!
//! With `H` heads, key width `h = D/H`, value width `h_v = ⌊D·expand_v⌋/H`, `q = W_q x`,
//! `k = W_k x / √h`, `v = W_v x` and a fixed decay per head `γ_j = 1 − 2^(−5−j)`, `j = 0..H−1`:
//!
//! ```text
//! S_t = γ S_{t−1} + k_t v_tᵀ,   o_t = S_tᵀ q_t          (recurrent)
//! O   = (Q Kᵀ ⊙ D) V,   D[t, s] = γ^{t−s} for s ≤ t, else 0     (parallel)
//! y   = W_o( swish(W_g x) ⊙ Norm_head(concat_heads(o)) )
//! ```
//! `norm = "group_norm"` (default): each head's `o_t` is normalised by the mean and variance
//! over its `h_v` channels (eps `norm_eps`), then a learned affine over all `H·h_v` channels (the
//! paper's GroupNorm with H groups). `norm = "rms_norm"`: `o / √(mean(o²) + eps)` per head with a
//! weight over `h_v` shared by the heads (fla's `MultiScaleRetention`).
//!
//! Defaults: value width d (`expand_v = 1`) and GroupNorm, the field notes' formulation. fla's
//! layer is `expand_v = 2`, `norm = "rms_norm"` plus RoPE on q and k (not offered: the decay
//! already gives relative position); torchscale also uses value width 2d (with xPos).
//!
//! Forms: training = chunked retention (`decayed_linear::chunked_linear_attention` with the scalar
//! log decay `log γ` per head: within a chunk exactly the parallel `(QKᵀ ⊙ D)V`, so with
//! `chunk_size ≥ L` the training form *is* the parallel form; across chunks the state is carried
//! with decay `γ^C`); reference = the dense decayed sum; recurrent = one update per token.
//!
//! State: `H·h·h_v` (`d²/H` by default) elements, constant in L. Zoology has no RetNet, so
//! `state_size_zoology` is None.
//!
//! FLOPs ([`crate::flops`] convention): projections q, k `2·d²` each, v, g `2·d·d_v` each,
//! o `2·d_v·d` per token, plus the chunked core with a scalar decay per head,
//! `H·(2·C·h + C + 2·C·h_v + 4·h·h_v)` per position over `⌈L/C⌉·C` (see `common::decayed_linear`);
//! decode `H·5·h·h_v` plus the projections. Prefill is the step form.
//!
//! Init: every Linear N(0, 0.02) (Zoology's rule applied to fla's names: `o_proj` is not
//! rescaled); norm weight 1, bias 0.

use super::common::decayed_linear::DecayedLinear;
use super::common::layers::{merge_heads, rms_norm, split_heads, Linear};
use super::linear_attention::{check_chunk, check_value_width};
use super::{linear_params, BuildCtx, MixerKind, MixerMemory};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetNetNorm {
    GroupNorm,
    RmsNorm,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetNetConfig {
    /// Number of heads (must divide d_model and the value width); head j decays with
    /// γ_j = 1 − 2^(−5−j).
    pub num_heads: i64,
    /// Value width as a fraction of d_model (1: the default; fla and torchscale: 2).
    pub expand_v: f64,
    /// Output norm per head: "group_norm" (default) or "rms_norm" (fla).
    pub norm: RetNetNorm,
    /// Chunk length of the training form.
    pub chunk_size: i64,
    /// Norm epsilon.
    pub norm_eps: f64,
}

impl Default for RetNetConfig {
    fn default() -> Self {
        RetNetConfig { num_heads: 4, expand_v: 1.0, norm: RetNetNorm::GroupNorm, chunk_size: 64, norm_eps: 1e-5 }
    }
}

impl RetNetConfig {
    fn value_dim(&self, d: i64) -> i64 {
        (d as f64 * self.expand_v).floor() as i64
    }
}

#[derive(Debug)]
pub struct RetNet {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wg: Linear,
    out: Linear,
    norm_weight: Tensor,
    /// GroupNorm's bias (None for RMSNorm).
    norm_bias: Option<Tensor>,
    cfg: RetNetConfig,
    d: i64,
    value_dim: i64,
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
    /// The per-head output norm: `o: [B, H, L, h_v] → [B, L, H·h_v]`.
    pub fn norm(&self, o: &Tensor) -> Tensor {
        match &self.norm_bias {
            Some(bias) => {
                let dims = [-1i64];
                let mean = o.mean_dim(dims.as_slice(), true, o.kind());
                let var = (o - &mean).square().mean_dim(dims.as_slice(), true, o.kind());
                merge_heads(&((o - mean) * (var + self.cfg.norm_eps).rsqrt())) * &self.norm_weight + bias
            }
            None => merge_heads(&rms_norm(o, &self.norm_weight, self.cfg.norm_eps)),
        }
    }
}

impl DecayedLinear for RetNet {
    /// q, k `[B, H, L, h]`, v `[B, H, L, h_v]` and the log decay broadcast to `[B, H, L, 1]`.
    fn qkvg(&self, x: &Tensor) -> (Tensor, Tensor, Tensor, Option<Tensor>) {
        let h = self.cfg.num_heads;
        let q = split_heads(&self.wq.forward(x), h);
        let k = split_heads(&self.wk.forward(x), h) / (self.head_dim() as f64).sqrt();
        let v = split_heads(&self.wv.forward(x), h);
        let (b, _, l, _) = q.size4().unwrap();
        let g = self.log_decay(&q).expand([b, h, l, 1], false);
        (q, k, v, Some(g))
    }
    /// Per-head norm, swish gate, output projection. `o: [B, H, L, h_v]`, `x: [B, L, D]`.
    fn finish(&self, o: &Tensor, x: &Tensor) -> Tensor {
        self.out.forward(&(self.wg.forward(x).silu() * self.norm(o)))
    }
    fn token_flops(&self) -> f64 {
        self.wq.flops() + self.wk.flops() + self.wv.flops() + self.wg.flops() + self.out.flops()
    }
    fn decay_width(&self) -> i64 {
        1
    }
    fn chunk_size(&self) -> i64 {
        self.cfg.chunk_size
    }
    fn state_shape(&self) -> [i64; 3] {
        [self.cfg.num_heads, self.head_dim(), self.value_dim / self.cfg.num_heads]
    }
    fn opts(&self) -> (tch::Kind, tch::Device) {
        (self.out.ws.kind(), self.out.ws.device())
    }
}

impl MixerKind for RetNet {
    type Config = RetNetConfig;
    const NAME: &'static str = "retnet";
    const ABOUT: &'static str =
        "RetNet multi-scale retention: per-head decay 1−2^(−5−h), GroupNorm (or fla's RMSNorm) + swish gate, chunked";
    const STATE_FORMULA: &'static str = "H·h·h_v = d·⌊d·expand_v⌋/H (h = d/H; d²/H by default)";
    const CONSTANT_STATE: bool = true;

    /// Parameters: q, k (d → d), v, g (d → value width), the output projection and the norm.
    fn memory(c: &RetNetConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        let vd = c.value_dim(d);
        let norm = match c.norm {
            RetNetNorm::GroupNorm => 2 * vd,
            RetNetNorm::RmsNorm => vd / c.num_heads.max(1),
        };
        let p = 2.0 * linear_params(d, d, false)
            + 2.0 * linear_params(d, vd, false)
            + linear_params(vd, d, false)
            + norm as f64;
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &RetNetConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        check_value_width(c.num_heads, c.expand_v, d, field)?;
        check_chunk(c.chunk_size, field)?;
        if !(c.norm_eps > 0.0 && c.norm_eps.is_finite()) {
            return Err(config_err(
                format!("{field}.norm_eps"),
                format!("must be a finite number > 0 (got {})", c.norm_eps),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &RetNetConfig, ctx: &BuildCtx) -> Result<Self> {
        let vd = c.value_dim(d);
        let s = ctx.init_std;
        let (norm_weight, norm_bias) = match c.norm {
            RetNetNorm::GroupNorm => (
                p.var("group_norm_weight", &[vd], nn::Init::Const(1.0)),
                Some(p.var("group_norm_bias", &[vd], nn::Init::Const(0.0))),
            ),
            RetNetNorm::RmsNorm => (p.var("g_norm_weight", &[vd / c.num_heads], nn::Init::Const(1.0)), None),
        };
        Ok(RetNet {
            wq: Linear::new(&p / "q_proj", d, d, false, s),
            wk: Linear::new(&p / "k_proj", d, d, false, s),
            wv: Linear::new(&p / "v_proj", d, vd, false, s),
            wg: Linear::new(&p / "g_proj", d, vd, false, s),
            out: Linear::new(&p / "o_proj", vd, d, false, s),
            norm_weight,
            norm_bias,
            cfg: c.clone(),
            d,
            value_dim: vd,
        })
    }

    fn suite_variants() -> Vec<RetNetConfig> {
        vec![
            RetNetConfig::default(),
            RetNetConfig { num_heads: 2, chunk_size: 4, ..Default::default() },
            RetNetConfig {
                num_heads: 2,
                expand_v: 2.0,
                norm: RetNetNorm::RmsNorm,
                chunk_size: 5,
                ..Default::default()
            },
        ]
    }
}
