//! `gla`: gated linear attention (Yang et al. 2024, GLA Transformer).
//!
//! With `H` heads, key width `d_k = ⌊D·expand_k⌋/H`, value width `d_v = ⌊D·expand_v⌋/H` (fla's
//! `int()`),
//! `q = W_q x / √d_k`, `k = W_k x`, `v = W_v x`, and a data-dependent forget gate per key
//! channel from a low-rank (`gate_low_rank_dim` = 16) projection:
//!
//! ```text
//! log α_t = logsigmoid(W₂ W₁ x_t + b₂) / gate_logit_normalizer        (≤ 0, per key channel)
//! S_t = diag(α_t) S_{t−1} + k_t v_tᵀ,   o_t = S_tᵀ q_t                 (d_k × d_v per head)
//! y   = W_o( swish(W_g x) ⊙ RMSNorm_head(o) )
//! ```
//! RMSNorm is over each head's `d_v` channels with a learned weight shared by the heads.
//!
//! Forms: training, `scan = "fused"` (the default) = the C++ gated scan of
//! [`super::common::fused::gla`] (one task per row and head holding its `d_k × d_v` state, one
//! pass over positions, its own backward from checkpointed states; CPU f32/f64, the chunked form
//! elsewhere); training, `scan = "chunked"` = `decayed_linear::chunked_linear_attention` with
//! per-channel gates (cumulative log gates `b_t` inside each chunk, intra-chunk scores
//! `Σ_k q_tk k_sk e^{b_tk − b_sk}` with every exponent ≤ 0, state carried across chunks);
//! reference = the recurrence loop; recurrent = one gated update per token.
//!
//! State: `H·d_k·d_v` = key_dim·value_dim/H elements, constant in L; Zoology's `state_size()`
//! (`key_dim · head_v_dim`) is the same number.
//!
//! FLOPs ([`crate::flops`] convention): projections q, k `2·d·key_dim`, v, g `2·d·value_dim`,
//! the low-rank gate `2·d·16 + 2·16·key_dim`, o `2·value_dim·d` per token, plus the chunked
//! core with a gate per key channel, `H·(3·C·d_k + 2·C·d_v + 4·d_k·d_v)` per position over
//! `⌈L/C⌉·C` with the chunked scan, the decode step `H·5·d_k·d_v` at every position with the fused
//! one (see `common::decayed_linear`); decode `H·5·d_k·d_v` plus the projections.
//!
//! Init: every Linear N(0, 0.02), zero bias (Zoology's rule; `o_proj` is not an `out_proj`, so
//! it is not rescaled); RMSNorm weight 1.

use super::common::decayed_linear::DecayedLinear;
use super::common::layers::{merge_heads, rms_norm, split_heads, Linear};
use super::linear_attention::check_chunk;
use super::{linear_params, BuildCtx, MixerKind, MixerMemory};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Which gated scan the training form runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlaScan {
    /// The fused C++ scan with its own backward (CPU; the chunked form on other devices).
    Fused,
    /// Chunks of `chunk_size` in tensor operations (any device).
    Chunked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlaConfig {
    /// `fused` (CPU kernel, the default) or `chunked` (tensor operations).
    pub scan: GlaScan,
    /// Key width as a fraction of d_model (GLA: 0.5).
    pub expand_k: f64,
    /// Value width as a fraction of d_model (GLA: 1).
    pub expand_v: f64,
    /// Number of heads (must divide the key and value widths).
    pub num_heads: i64,
    /// Rank of the forget-gate projection (GLA: 16).
    pub gate_low_rank_dim: i64,
    /// Divides logsigmoid of the gate logits (GLA: 16).
    pub gate_logit_normalizer: f64,
    /// Chunk length of the chunked form (16: the per-key-channel decay materialises
    /// `[B, H, L/C, C, C, d_k]`, so its cost grows with C; fla's kernel uses 64 with sub-chunks of
    /// 16; docs/PERFORMANCE.md "GLA chunk size").
    pub chunk_size: i64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
}

impl Default for GlaConfig {
    fn default() -> Self {
        GlaConfig {
            scan: GlaScan::Fused,
            expand_k: 0.5,
            expand_v: 1.0,
            num_heads: 4,
            gate_low_rank_dim: 16,
            gate_logit_normalizer: 16.0,
            chunk_size: 16,
            norm_eps: 1e-5,
        }
    }
}

impl GlaConfig {
    /// `(key_dim, value_dim) = (int(d·expand_k), int(d·expand_v))`, as fla (floor for the
    /// positive widths `validate` admits).
    pub fn widths(&self, d: i64) -> (i64, i64) {
        ((d as f64 * self.expand_k).floor() as i64, (d as f64 * self.expand_v).floor() as i64)
    }
}

/// GLA's forget gate in log space: `log α = logsigmoid(z) / normalizer` (≤ 0) for the gate
/// logits `z` (fla's `F.logsigmoid(gk) / gate_logit_normalizer`).
pub fn gate_log_decay(logits: &Tensor, normalizer: f64) -> Tensor {
    logits.log_sigmoid() / normalizer
}

#[derive(Debug)]
pub struct Gla {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wg: Linear,
    gk1: Linear,
    gk2: Linear,
    norm_weight: Tensor,
    out: Linear,
    cfg: GlaConfig,
    key_dim: i64,
    value_dim: i64,
}

impl DecayedLinear for Gla {
    /// q, k `[B, H, L, d_k]`, v `[B, H, L, d_v]`, log gates `[B, H, L, d_k]`.
    fn qkvg(&self, x: &Tensor) -> (Tensor, Tensor, Tensor, Option<Tensor>) {
        let h = self.cfg.num_heads;
        let dk = self.key_dim / h;
        let q = split_heads(&self.wq.forward(x), h) / (dk as f64).sqrt();
        let k = split_heads(&self.wk.forward(x), h);
        let v = split_heads(&self.wv.forward(x), h);
        let g = gate_log_decay(&self.gk2.forward(&self.gk1.forward(x)), self.cfg.gate_logit_normalizer);
        (q, k, v, Some(split_heads(&g, h)))
    }
    fn finish(&self, o: &Tensor, x: &Tensor) -> Tensor {
        let normed = merge_heads(&rms_norm(o, &self.norm_weight, self.cfg.norm_eps));
        self.out.forward(&(self.wg.forward(x).silu() * normed))
    }
    fn token_flops(&self) -> f64 {
        [&self.wq, &self.wk, &self.wv, &self.wg, &self.gk1, &self.gk2, &self.out].iter().map(|l| l.flops()).sum()
    }
    fn decay_width(&self) -> i64 {
        self.key_dim / self.cfg.num_heads
    }
    fn chunk_size(&self) -> i64 {
        self.cfg.chunk_size
    }
    fn fused_scan(&self) -> bool {
        self.cfg.scan == GlaScan::Fused
    }
    fn state_shape(&self) -> [i64; 3] {
        let h = self.cfg.num_heads;
        [h, self.key_dim / h, self.value_dim / h]
    }
    fn opts(&self) -> (tch::Kind, tch::Device) {
        (self.out.ws.kind(), self.out.ws.device())
    }
    /// Zoology's `GatedLinearAttention.state_size`: `key_dim · head_v_dim` (no short conv).
    fn zoology_state(&self) -> Option<i64> {
        Some(self.key_dim * (self.value_dim / self.cfg.num_heads))
    }
}

/// Largest accepted low-rank gate width.
const MAX_GATE_RANK: i64 = 4096;

impl MixerKind for Gla {
    type Config = GlaConfig;
    const NAME: &'static str = "gla";
    const ABOUT: &'static str = "gated linear attention: per-channel data-dependent forget gate, chunked in log space";
    const STATE_FORMULA: &'static str = "H·d_k·d_v = (d·expand_k)·(d·expand_v)/H";
    const CONSTANT_STATE: bool = true;

    /// Parameters: q, k (d → d·expand_k), v, g (d → d·expand_v), the low-rank gate, the
    /// per-head norm and the output projection.
    fn memory(c: &GlaConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        let (kd, vd) = c.widths(d);
        let r = c.gate_low_rank_dim;
        let p = 2.0 * linear_params(d, kd, false)
            + 2.0 * linear_params(d, vd, false)
            + linear_params(d, r, false)
            + linear_params(r, kd, true)
            + (vd / c.num_heads.max(1)) as f64
            + linear_params(vd, d, false);
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &GlaConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        super::common::bounds::expand_and_heads(field, d, c.expand_k, c.expand_v, c.num_heads, c.widths(d))?;
        if !(1..=MAX_GATE_RANK).contains(&c.gate_low_rank_dim) {
            return Err(config_err(
                format!("{field}.gate_low_rank_dim"),
                format!("must be between 1 and {MAX_GATE_RANK} (got {})", c.gate_low_rank_dim),
            ));
        }
        if !(c.gate_logit_normalizer >= 1.0 && c.gate_logit_normalizer.is_finite()) {
            return Err(config_err(
                format!("{field}.gate_logit_normalizer"),
                format!("must be a finite number ≥ 1 (got {})", c.gate_logit_normalizer),
            ));
        }
        check_chunk(c.chunk_size, field)?;
        if !(c.norm_eps > 0.0 && c.norm_eps.is_finite()) {
            return Err(config_err(
                format!("{field}.norm_eps"),
                format!("must be a finite number > 0 (got {})", c.norm_eps),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &GlaConfig, ctx: &BuildCtx) -> Result<Self> {
        let (kd, vd) = c.widths(d);
        let s = ctx.init_std;
        Ok(Gla {
            wq: Linear::new(&p / "q_proj", d, kd, false, s),
            wk: Linear::new(&p / "k_proj", d, kd, false, s),
            wv: Linear::new(&p / "v_proj", d, vd, false, s),
            wg: Linear::new(&p / "g_proj", d, vd, false, s),
            gk1: Linear::new(&p / "gk_proj1", d, c.gate_low_rank_dim, false, s),
            gk2: Linear::new(&p / "gk_proj2", c.gate_low_rank_dim, kd, true, s),
            norm_weight: p.var("g_norm_weight", &[vd / c.num_heads], nn::Init::Const(1.0)),
            out: Linear::new(&p / "o_proj", vd, d, false, s),
            cfg: c.clone(),
            key_dim: kd,
            value_dim: vd,
        })
    }

    fn suite_variants() -> Vec<GlaConfig> {
        vec![
            GlaConfig::default(),
            GlaConfig { num_heads: 2, ..Default::default() },
            GlaConfig { scan: GlaScan::Chunked, ..Default::default() },
            GlaConfig { num_heads: 2, chunk_size: 4, scan: GlaScan::Chunked, ..Default::default() },
        ]
    }
}
