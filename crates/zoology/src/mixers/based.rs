//! `based`: the linear-attention half of Based (Arora et al. 2024): normalised linear attention
//! with the 2nd-order Taylor feature map
//!
//! ```text
//! φ(x) = [1, x/f^{1/4}, vec(x xᵀ)/(√2·√f)]     (F = 1 + f + f² features; f = feature_dim)
//! φ(q)·φ(k) = 1 + q·k/√f + (q·k)²/(2f) ≈ exp(q·k/√f)
//! y_t = Σ_{s≤t} φ(q_t)·φ(k_s) v_s / (Σ_{s≤t} φ(q_t)·φ(k_s) + eps),   y = concat_heads(y) W_oᵀ
//! ```
//! per head, with q, k projected to f per head and v of width d/H. It is exactly
//! `linear_attention` with `feature_map = "taylor"`, `normalize = true` (this file only fixes
//! those and Based's defaults; all forms are `linear_attention`'s: chunked training form,
//! recurrence loop reference, per-token recurrent step). In Based the model interleaves it with
//! `sliding_window` and `base_conv` layers, e.g.
//! `mixer = { name = "hybrid", layers = [{ name = "base_conv" }, { name = "based" }, { name = "sliding_window" }] }`.
//!
//! State: `H·(F·d_v + F)` elements, F = 1 + f + f² (what `step` carries: its forward, like
//! Based's, materialises all f² second-order terms). Zoology's `Based.state_size()` counts the
//! symmetric terms only, `F_z = 1 + f + f(f+1)/2` (`state_size_zoology`, 1.78× smaller at
//! f = 16); plots that reproduce Based's Figure 2 use that convention.
//!
//! FLOPs: `linear_attention`'s with the Taylor map (F = 1 + f + f²; see `linear_attention.rs`).
//!
//! Init: `proj_q`, `proj_k`, `proj_v`, `proj_o` all N(0, 0.02) (Zoology's name rule leaves
//! `proj_o` unscaled).

use super::linear_attention::{FeatureMap, LinearAttention, LinearAttentionConfig};
use super::{delegate_mixer, BuildCtx, MixerKind, MixerMemory};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::nn;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasedConfig {
    /// Projected q/k width per head before the Taylor expansion (Based: 16; Zoology 8/16/24).
    pub feature_dim: i64,
    /// Number of heads (must divide d_model).
    pub num_heads: i64,
    /// Added to the normaliser (Based: 1e-12).
    pub eps: f64,
    /// Chunk length of the training form.
    pub chunk_size: i64,
}

impl Default for BasedConfig {
    fn default() -> Self {
        BasedConfig { feature_dim: 16, num_heads: 1, eps: 1e-12, chunk_size: 64 }
    }
}

impl BasedConfig {
    fn linear(&self) -> LinearAttentionConfig {
        LinearAttentionConfig {
            feature_map: FeatureMap::Taylor,
            feature_dim: self.feature_dim,
            num_heads: self.num_heads,
            normalize: true,
            eps: self.eps,
            chunk_size: self.chunk_size,
        }
    }
}

#[derive(Debug)]
pub struct Based {
    inner: LinearAttention,
}

delegate_mixer!(Based, inner);

impl MixerKind for Based {
    type Config = BasedConfig;
    const NAME: &'static str = "based";
    const ABOUT: &'static str = "Based: normalised linear attention with the 2nd-order Taylor feature map (pair with sliding_window, base_conv)";
    const STATE_FORMULA: &'static str = "H·(F·d_v + F), F = 1+f+f², d_v = d/H";
    const CONSTANT_STATE: bool = true;

    fn memory(c: &BasedConfig, d: i64, ctx: &BuildCtx, l: i64) -> MixerMemory {
        LinearAttention::memory(&c.linear(), d, ctx, l)
    }

    fn validate(c: &BasedConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        LinearAttention::validate(&c.linear(), d, ctx, field)
    }

    fn build(p: nn::Path, d: i64, c: &BasedConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(Based { inner: LinearAttention::build(p, d, &c.linear(), ctx)? })
    }

    fn suite_variants() -> Vec<BasedConfig> {
        vec![BasedConfig::default(), BasedConfig { feature_dim: 8, num_heads: 2, chunk_size: 4, ..Default::default() }]
    }
}
