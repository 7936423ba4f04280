//! `linear_attention`: Katharopoulos et al.'s linear attention with a choice of feature maps.
//!
//! Per head (`H` heads), `q_t = φ(W_q x_t)`, `k_t = φ(W_k x_t)` (projected to `feature_dim = f`
//! per head, then expanded by φ to `F` features), `v_t = W_v x_t` (width `d_v = D/H`):
//!
//! ```text
//! S_t = S_{t−1} + k_t v_tᵀ        (F × d_v)
//! z_t = z_{t−1} + k_t             (F)
//! y_t = S_tᵀ q_t / (z_tᵀ q_t + eps)     normalised (default)
//! y_t = S_tᵀ q_t                        unnormalised
//! y   = concat_heads(y) W_oᵀ
//! ```
//! Feature maps φ: `identity` (F = f), `elu_plus_one` (elu(x)+1, Katharopoulos; Zoology's
//! `PosELU`; default), `relu` (Zoology's `ReLU`: relu(x) clamped below at 1e-12, Zoology's
//! feature-map eps), `square` (Zoology's `Square`: x²), `squared_relu` (relu(x)², a named option),
//! and `taylor`, Based's 2nd-order Taylor map
//! `φ(x) = [1, x/f^{1/4}, vec(x xᵀ)/(√2·√f)]` (F = 1 + f + f²), for which
//! `φ(q)·φ(k) = 1 + q·k/√f + (q·k)²/(2f) ≈ exp(q·k/√f)`.
//!
//! The normaliser is carried as one more value column: with `v' = [v, 1]`, `S'ᵀq = [Sᵀq, zᵀq]`,
//! so every form runs one recurrence `S'_t = S'_{t−1} + k_t v'_tᵀ`.
//!
//! Forms: training = chunked (quadratic `(Q Kᵀ ⊙ M) V'` within chunks of `chunk_size`, state
//! passed across chunks; `decayed_linear::chunked_linear_attention`), reference = the explicit
//! recurrence loop, recurrent = one update of `S'` per token.
//!
//! State: `H·F·(d_v + 1)` elements (normalised) or `H·F·d_v` (unnormalised), constant in L.
//! Zoology's `state_size()` (Based's formula) counts `H·d_v·F_z + H·F_z` with `F_z = f`, or
//! `1 + f + f(f+1)/2` for the Taylor map (its symmetric second-order terms); it has no
//! unnormalised form (`state_size_zoology` is None then).
//!
//! FLOPs ([`crate::flops`] convention): projections `2·d·(2·H·f) + 4·d²` per token (the
//! feature map φ is element-wise, not counted), plus the chunked core with K = F, V = d_v (+1):
//! `H·(2·C·F + 2·C·V + 4·F·V)` per position over `⌈L/C⌉·C` (see `common::decayed_linear`); decode
//! `H·4·F·V` plus the projections, constant in L. Prefill is the step form.
//!
//! Init: every projection N(0, 0.02) (Zoology's rule; the output projection is `proj_o`, as in
//! Zoology's `Based`, so it is not rescaled).
//! `based` is this mixer with the Taylor map and normalisation (see `based.rs`).

use super::common::decayed_linear::DecayedLinear;
use super::common::layers::{merge_heads, split_heads, Linear};
use super::{linear_params, BuildCtx, MixerKind, MixerMemory};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureMap {
    Identity,
    EluPlusOne,
    Relu,
    Square,
    SquaredRelu,
    Taylor,
}

/// Zoology's feature-map eps (`Based` passes `eps = 1e-12`): the `relu` map's lower clamp.
pub const FEATURE_EPS: f64 = 1e-12;

impl FeatureMap {
    /// Expanded feature count F for a projection of width f.
    pub fn expanded_dim(self, f: i64) -> i64 {
        match self {
            FeatureMap::Taylor => 1 + f + f * f,
            _ => f,
        }
    }
    /// The feature count Zoology's `expanded_size()` reports: the Taylor map's symmetric
    /// `1 + f + f(f+1)/2` (what its memory-saving form keeps), f otherwise.
    pub fn zoology_expanded_dim(self, f: i64) -> i64 {
        match self {
            FeatureMap::Taylor => 1 + f + f * (f + 1) / 2,
            _ => f,
        }
    }
    /// φ applied to the last axis of `x: [..., f]`.
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            FeatureMap::Identity => x.shallow_clone(),
            FeatureMap::EluPlusOne => x.elu() + 1.0,
            FeatureMap::Relu => x.relu().clamp_min(FEATURE_EPS),
            FeatureMap::Square => x.square(),
            FeatureMap::SquaredRelu => x.relu().square(),
            FeatureMap::Taylor => {
                let f = *x.size().last().unwrap();
                let mut shape = x.size();
                shape.pop();
                let outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2, -1) / (2f64.sqrt() * (f as f64).sqrt());
                let ones = Tensor::ones([1], (x.kind(), x.device())).expand([shape.as_slice(), &[1]].concat(), false);
                Tensor::cat(&[ones, x / (f as f64).powf(0.25), outer], -1)
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearAttentionConfig {
    /// φ: identity, elu_plus_one, relu, square, squared_relu or taylor.
    pub feature_map: FeatureMap,
    /// Projected q/k width per head before φ (f).
    pub feature_dim: i64,
    /// Number of heads (must divide d_model).
    pub num_heads: i64,
    /// Divide by the normaliser zᵀφ(q) + eps.
    pub normalize: bool,
    /// Added to the normaliser.
    pub eps: f64,
    /// Chunk length of the training form.
    pub chunk_size: i64,
}

impl Default for LinearAttentionConfig {
    fn default() -> Self {
        LinearAttentionConfig {
            feature_map: FeatureMap::EluPlusOne,
            feature_dim: 16,
            num_heads: 1,
            normalize: true,
            eps: 1e-6,
            chunk_size: 64,
        }
    }
}

#[derive(Debug)]
pub struct LinearAttention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    out: Linear,
    cfg: LinearAttentionConfig,
    d: i64,
}

impl LinearAttention {
    fn big_f(&self) -> i64 {
        self.cfg.feature_map.expanded_dim(self.cfg.feature_dim)
    }
    fn value_cols(&self) -> i64 {
        self.d / self.cfg.num_heads + i64::from(self.cfg.normalize)
    }
}

impl DecayedLinear for LinearAttention {
    /// Per-head φ(q), φ(k) `[B, H, L, F]` and v' `[B, H, L, d_v (+1)]` (ones column when
    /// normalised); no decay.
    fn qkvg(&self, x: &Tensor) -> (Tensor, Tensor, Tensor, Option<Tensor>) {
        let h = self.cfg.num_heads;
        let q = self.cfg.feature_map.apply(&split_heads(&self.wq.forward(x), h));
        let k = self.cfg.feature_map.apply(&split_heads(&self.wk.forward(x), h));
        let v = split_heads(&self.wv.forward(x), h);
        let v = if self.cfg.normalize { Tensor::cat(&[v.ones_like().narrow(-1, 0, 1), v], -1) } else { v };
        (q, k, v, None)
    }
    /// `[B, H, L, d_v (+1)] → [B, L, D]`: normalisation and output projection.
    fn finish(&self, o: &Tensor, _x: &Tensor) -> Tensor {
        let y = if self.cfg.normalize {
            let dv = o.size()[3] - 1;
            o.narrow(-1, 1, dv) / (o.narrow(-1, 0, 1) + self.cfg.eps)
        } else {
            o.shallow_clone()
        };
        self.out.forward(&merge_heads(&y))
    }
    fn chunk_size(&self) -> i64 {
        self.cfg.chunk_size
    }
    fn state_shape(&self) -> [i64; 3] {
        [self.cfg.num_heads, self.big_f(), self.value_cols()]
    }
    fn opts(&self) -> (tch::Kind, tch::Device) {
        (self.out.ws.kind(), self.out.ws.device())
    }
    fn token_flops(&self) -> f64 {
        self.wq.flops() + self.wk.flops() + self.wv.flops() + self.out.flops()
    }
    fn decay_width(&self) -> i64 {
        0
    }
    fn zoology_state(&self) -> Option<i64> {
        let h = self.cfg.num_heads;
        let fz = self.cfg.feature_map.zoology_expanded_dim(self.cfg.feature_dim);
        self.cfg.normalize.then(|| h * (self.d / h) * fz + h * fz)
    }
}

/// Largest accepted `feature_dim` without the Taylor expansion, and with it.
const MAX_FEATURE_DIM: i64 = 4096;
const MAX_TAYLOR_FEATURE_DIM: i64 = 64;
/// Largest accepted `chunk_size` of the chunked linear-attention family.
pub const MAX_CHUNK: i64 = 1 << 16;

impl MixerKind for LinearAttention {
    type Config = LinearAttentionConfig;
    const NAME: &'static str = "linear_attention";
    const ABOUT: &'static str =
        "Katharopoulos linear attention, feature maps identity/elu_plus_one/relu/square/squared_relu/taylor, chunked";
    const STATE_FORMULA: &'static str =
        "H·F·(d_v+1) normalised, H·F·d_v unnormalised (F = f, or 1+f+f² for taylor; d_v = d/H)";
    const CONSTANT_STATE: bool = true;

    /// Parameters `2·d·H·f + 2d²` (q and k to H heads of f features, v and the output d → d).
    fn memory(c: &LinearAttentionConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        let hf = c.num_heads * c.feature_dim;
        let params = 2.0 * linear_params(d, hf, false) + 2.0 * linear_params(d, d, false);
        MixerMemory { params: Some(params), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &LinearAttentionConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        if !(1..=MAX_FEATURE_DIM).contains(&c.feature_dim) {
            return Err(config_err(
                format!("{field}.feature_dim"),
                format!("must be between 1 and {MAX_FEATURE_DIM} (got {})", c.feature_dim),
            ));
        }
        if c.feature_map == FeatureMap::Taylor && c.feature_dim > MAX_TAYLOR_FEATURE_DIM {
            return Err(config_err(
                format!("{field}.feature_dim"),
                format!(
                    "taylor expands f = {} to 1+f+f² = {} features per head; use f ≤ 64 (Based: 16)",
                    c.feature_dim,
                    1 + c.feature_dim * (1 + c.feature_dim)
                ),
            ));
        }
        check_chunk(c.chunk_size, field)?;
        if !(c.eps >= 0.0 && c.eps.is_finite()) {
            return Err(config_err(format!("{field}.eps"), format!("must be a finite number ≥ 0 (got {})", c.eps)));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &LinearAttentionConfig, ctx: &BuildCtx) -> Result<Self> {
        let hf = c.num_heads * c.feature_dim;
        Ok(LinearAttention {
            wq: Linear::new(&p / "proj_q", d, hf, false, ctx.init_std),
            wk: Linear::new(&p / "proj_k", d, hf, false, ctx.init_std),
            wv: Linear::new(&p / "proj_v", d, d, false, ctx.init_std),
            out: Linear::new(&p / "proj_o", d, d, false, ctx.init_std),
            cfg: c.clone(),
            d,
        })
    }

    fn suite_variants() -> Vec<LinearAttentionConfig> {
        let small = |feature_map, normalize| LinearAttentionConfig {
            feature_map,
            normalize,
            feature_dim: 4,
            chunk_size: 4,
            ..Default::default()
        };
        vec![
            LinearAttentionConfig::default(),
            small(FeatureMap::Identity, false),
            small(FeatureMap::EluPlusOne, false),
            small(FeatureMap::Relu, true),
            small(FeatureMap::Square, true),
            small(FeatureMap::SquaredRelu, true),
            small(FeatureMap::Taylor, true),
            LinearAttentionConfig { num_heads: 2, chunk_size: 4, ..Default::default() },
        ]
    }
}

/// Checks a chunked form's `chunk_size` (1 ..= [`MAX_CHUNK`]).
pub fn check_chunk(chunk: i64, field: &str) -> Result<()> {
    if !(1..=MAX_CHUNK).contains(&chunk) {
        return Err(config_err(
            format!("{field}.chunk_size"),
            format!("must be between 1 and {MAX_CHUNK} (got {chunk})"),
        ));
    }
    Ok(())
}

/// Largest accepted `expand_k` / `expand_v` of the linear-attention family.
pub const MAX_EXPAND: f64 = 16.0;

/// Checks `expand_v` (finite, in (0, [`MAX_EXPAND`]], `⌊d·expand_v⌋ ≥ 1`) and that `num_heads`
/// (already checked to divide d) divides the value width; returns the value width.
pub fn check_value_width(num_heads: i64, expand_v: f64, d: i64, field: &str) -> Result<i64> {
    let vd = (d as f64 * expand_v).floor();
    if !(expand_v > 0.0 && expand_v <= MAX_EXPAND && vd >= 1.0) {
        return Err(config_err(
            format!("{field}.expand_v"),
            format!("must be a finite number in (0, {MAX_EXPAND}] with ⌊d_model·expand_v⌋ ≥ 1 (d_model {d}, got {expand_v})"),
        ));
    }
    let vd = vd as i64;
    if vd % num_heads != 0 {
        return Err(config_err(
            format!("{field}.num_heads"),
            format!("must divide the value width ⌊d_model·expand_v⌋ = {vd} (got {num_heads})"),
        ));
    }
    Ok(vd)
}
