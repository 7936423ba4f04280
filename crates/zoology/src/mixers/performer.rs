//! `performer`: Performer / FAVOR+ (Choromanski et al. 2021, "Rethinking Attention with
//! Performers"), causal: normalised linear attention whose feature map is FAVOR+'s positive
//! orthogonal random features for the softmax kernel, as Zoology runs it (Zoology's `Based`
//! mixer with `feature_name = "performer"`, `PerformerFeatureMap`).
//!
//! Per head (`H` heads), `q_t = W_q x_t`, `k_t = W_k x_t` projected to `f = feature_dim` per head,
//! `v_t = W_v x_t` of width `d_v = D/H`, and `m = num_features` random features:
//!
//! ```text
//! x' = x / f^{1/4}
//! φ(x) = exp(ω_j·x' − |x'|²/2)_{j<m} / √m                 (positive random features)
//! φ(x) = [exp(ω_j·x' − |x'|²/2), exp(−ω_j·x' − |x'|²/2)]_{j<m/2} / √m   (hyperbolic = true)
//! E[φ(q)·φ(k)] = exp(q·k/√f)                               (ω_j ~ N(0, I_f) marginally)
//! y_t = Σ_{s≤t} φ(q_t)·φ(k_s) v_s / (Σ_{s≤t} φ(q_t)·φ(k_s) + eps),   y = concat_heads(y) W_oᵀ
//! ```
//! i.e. causal softmax attention with `exp(q·k/√f)` replaced by its random-feature estimate, run
//! as linear attention through prefix sums `S_t = Σ_{s≤t} φ(k_s) v_sᵀ`, `z_t = Σ_{s≤t} φ(k_s)`
//! (the paper's causal/unidirectional FAVOR+).
//!
//! **Random features** `ω: [m_rows, f]` (`m_rows = m`, or `m/2` hyperbolic) are drawn once, at
//! construction, from torch's global generator (so a run's seed fixes them: the trainer seeds it
//! before building the model) and kept as a non-trainable buffer `omega` in the VarStore (saved
//! in checkpoints, no gradient, no weight decay). They are never redrawn: Zoology's feature map
//! draws them once too; the paper's periodic redrawing is a training schedule, not offered. Rows
//! come in blocks of `f` exactly orthogonal directions (QR of an `f × f` Gaussian matrix, signs
//! fixed by `diag(R)` so the blocks are Haar-distributed), the last block truncated; row lengths
//! by `row_norms`: `"chi"` (default; each row scaled by the norm of an independent `N(0, I_f)`
//! vector, the paper's and google-research's `scaling = 0`, so each row is marginally Gaussian
//! and the estimator unbiased), `"sqrt_d"` (every row `√f`, the paper's regularised variant,
//! `scaling = 1`; close to, but not exactly, unbiased), or `"zoology"` (every row `√(f/m_rows)`, what Zoology's `orthogonal_gaussian`
//! leaves after the `√d` rescale it comments out; this does not estimate the softmax kernel, it
//! is there to reproduce the peer: docs/DECISIONS.md).
//!
//! **Stabilisation.** The forms that run in f32 keep every exponent ≤ 0 and the normaliser at
//! least 1. Each key feature j is divided by its running maximum over the prefix,
//! `M_tj = max_{s≤t} log φ(k_s)_j`: the state is kept as `S̃_tj = Σ_{s≤t} e^{log φ(k_s)_j − M_tj} v_sᵀ`
//! (likewise `z̃_t`), so `S̃_t = diag(e^{M_{t−1}−M_t}) S̃_{t−1} + e^{log φ(k_t) − M_t} v_tᵀ`: linear
//! attention with a log decay `M_{t−1,j} − M_tj ≤ 0` per key channel, every key feature ≤ 1 and
//! every `z̃_tj ≥ 1`. A query's features are taken against those maxima,
//! `φ̃(q_t)_j = exp(log φ(q_t)_j + M_tj − β_t)`, `β_t = max_j (log φ(q_t)_j + M_tj)`: each term
//! `φ̃(q_t)_j z̃_tj` is ≤ 1 and the largest is ≥ 1, so `φ̃(q_t)·z̃_t ∈ [1, m·t]` however far apart
//! the query's and the keys' features lie. The true sums are the stabilised ones times `e^{β_t}`,
//! which cancels in the ratio; the `eps` term keeps its meaning by being added as `eps·e^{−β_t}`.
//! `M_t` depends on no later token (google-research's key stabiliser is a max over all keys,
//! which is not causal). Two earlier stabilisers failed (docs/DECISIONS.md): a constant bound
//! `K = max_j |ω_j|²/2 − ln(m)/2` grows with `f` (≈ 145 at f = 256) and every key feature
//! `e^{log φ − K}` underflowed f32; one running maximum per head with the query's own maximum
//! left `φ̃(q)·z̃` as small as 1e-39 when the query's and the keys' largest features lie in
//! different directions, and its gradient overflowed.
//!
//! Forms: training = decayed linear attention over `φ̃(q), φ̃(k), [1, v]` with the log decays
//! above (the normaliser is a ones column; `common::decayed_linear::channel_decayed_attention`:
//! the fused C++ gated scan on the CPU, the chunked form with chunk `chunk_size` elsewhere);
//! reference = a plain loop over positions in f64 with the unstabilised features computed
//! straight from the definition (`S_t`, `z_t` accumulated explicitly, no shift); recurrent = one rescale and update of `[S̃ | z̃]` per token
//! (`common::decayed_linear::linear_attention_step`).
//!
//! State: `H·m·(d_v + 2)` elements (`S̃`, `z̃` and `M` per head), constant in L. Zoology's
//! `Based` counts `H·d_v·m + H·m` (`state_size_zoology`): it has no stabiliser.
//!
//! FLOPs ([`crate::flops`] convention): projections `2·d·2·H·f + 4·d²` per token, the random
//! projections `ω·q'` and `ω·k'` `2·2·H·f·m_rows` per token (exp and norms are element-wise, not
//! counted), plus the chunked core with K = m, V = d_v + 1 and a decay per key channel:
//! `H·(3·C·m + 2·C·V + 4·m·V)` per position over `⌈L/C⌉·C` (the count of the device-independent
//! chunked form; the CPU's fused scan does the decode step's `H·5·m·V` at every position).
//! Decode: the per-token terms plus `H·5·m·V` (rescale, update, readout), constant in L; prefill
//! is the step form.
//!
//! Init: `proj_q`, `proj_k`, `proj_v`, `proj_o` N(0, 0.02) (Zoology's `Based`; `proj_o` is not
//! rescaled by its name rule).

use super::common::bounds::int_in;
use super::common::decayed_linear::{channel_decayed_attention, linear_attention_step};
use super::common::layers::{merge_heads, split_heads, Linear};
use super::linear_attention::check_chunk;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use crate::flops::MixerFlops;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// How the lengths of the orthogonal random rows are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowNorms {
    /// Each row scaled by the norm of an independent N(0, I_f) draw (paper, `scaling = 0`).
    Chi,
    /// Each row of length √f (paper's regularised variant, `scaling = 1`).
    SqrtD,
    /// Each row of length √(f/m_rows), as Zoology's `PerformerFeatureMap` leaves them.
    Zoology,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformerConfig {
    /// Projected q/k width per head (f; Based's default 16).
    pub feature_dim: i64,
    /// Random features m (Zoology's `expanded_dim`, 256).
    pub num_features: i64,
    /// Number of heads (must divide d_model).
    pub num_heads: i64,
    /// Row lengths of the random matrix: chi (paper), sqrt_d, zoology.
    pub row_norms: RowNorms,
    /// `[exp(ω·x), exp(−ω·x)]` features (m/2 directions, each used twice) instead of `exp(ω·x)`.
    pub hyperbolic: bool,
    /// Added to the normaliser (Based: 1e-12).
    pub eps: f64,
    /// Chunk length of the training form.
    pub chunk_size: i64,
}

impl Default for PerformerConfig {
    fn default() -> Self {
        PerformerConfig {
            feature_dim: 16,
            num_features: 256,
            num_heads: 1,
            row_norms: RowNorms::Chi,
            hyperbolic: false,
            eps: 1e-12,
            chunk_size: 64,
        }
    }
}

/// FAVOR+ random features for the softmax kernel `exp(q·k/√f)`: a fixed `[m_rows, f]` matrix
/// and the feature maps built on it (shared with `scatterbrain`).
#[derive(Debug)]
pub struct Favor {
    /// `[m_rows, f]`, a non-trainable VarStore buffer.
    pub omega: Tensor,
    pub hyperbolic: bool,
    f: i64,
}

impl Favor {
    /// Draws `ω` (see the module doc) from the global torch generator and registers it as the
    /// non-trainable buffer `p / "omega"`. `m` must be even when `hyperbolic`.
    pub fn new(p: &nn::Path, f: i64, m: i64, row_norms: RowNorms, hyperbolic: bool) -> Self {
        let rows = if hyperbolic { m / 2 } else { m };
        let opts = (Kind::Double, tch::Device::Cpu);
        let blocks = (rows + f - 1) / f;
        let mut parts = Vec::with_capacity(blocks as usize);
        for _ in 0..blocks {
            let g = Tensor::randn([f, f], opts);
            let (q, r) = Tensor::linalg_qr(&g, "reduced");
            // Haar: fix the sign ambiguity of QR by sign(diag R); rows of qᵀ are orthonormal
            let q = q * r.diagonal(0, 0, 1).sign().unsqueeze(0);
            parts.push(q.transpose(0, 1));
        }
        let dirs = Tensor::cat(&parts, 0).narrow(0, 0, rows); // [rows, f], unit rows
        let scale = match row_norms {
            RowNorms::Chi => {
                Tensor::randn([rows, f], opts).square().sum_dim_intlist([1i64].as_slice(), true, Kind::Double).sqrt()
            }
            RowNorms::SqrtD => Tensor::full([rows, 1], (f as f64).sqrt(), opts),
            RowNorms::Zoology => Tensor::full([rows, 1], (f as f64 / rows as f64).sqrt(), opts),
        };
        let omega = (dirs * scale).to_kind(Kind::Float).to_device(p.device());
        Favor { omega: p.add("omega", omega, false), hyperbolic, f }
    }

    /// Total features m.
    pub fn num_features(&self) -> i64 {
        self.omega.size()[0] * if self.hyperbolic { 2 } else { 1 }
    }

    /// Log features `ω_j·x' − |x'|²/2 − ln(m)/2` of `x: [..., f]` → `[..., m]`.
    pub fn log_features(&self, x: &Tensor) -> Tensor {
        let xs = x / (self.f as f64).powf(0.25);
        let proj = xs.matmul(&self.omega.transpose(0, 1).to_kind(x.kind())); // [..., rows]
        let proj = if self.hyperbolic { Tensor::cat(&[&proj, &(-&proj)], -1) } else { proj };
        let half_sq = xs.square().sum_dim_intlist([-1i64].as_slice(), true, x.kind()) * 0.5;
        proj - half_sq - 0.5 * (self.num_features() as f64).ln()
    }

    /// Key features stabilised per feature by the running maximum of their log features `b`
    /// over the prefix (positions on dim 2 of `b: [B, H, L, m]`): `φ̃(k_s)_j = exp(b_sj − M_sj)`,
    /// `M_sj = max_{r≤s} b_rj` (detached; it cancels in every ratio). Every feature is ≤ 1, and
    /// each feature's sum over the prefix is ≥ 1 (its largest key contributes 1). Returns
    /// `(φ̃(k), M)`, both `[B, H, L, m]`.
    pub fn running_key_features(b: &Tensor) -> (Tensor, Tensor) {
        let (run, _) = b.detach().cummax(2);
        ((b - &run).exp(), run)
    }

    /// Log decays `g_s = M_{s−1} − M_s ≤ 0` (`g_0 = 0`) that carry sums of key features
    /// stabilised by `M_{s−1}` to `M_s` (positions on dim 2 of `run: [B, H, L, m]`).
    pub fn rescale_log_decays(run: &Tensor) -> Tensor {
        let l = run.size()[2];
        Tensor::cat(&[run.narrow(2, 0, 1), run.narrow(2, 0, l - 1)], 2) - run
    }

    /// [`Self::running_key_features`] for one key: log features `b` and the running maximum so
    /// far `prev` (same shape; [`RUNNING_MAX_START`] before the first key) → `(φ̃(k), M, g)` with
    /// the new maximum `M` and the log decay `g = prev − M` of the state.
    pub fn step_key_features(b: &Tensor, prev: &Tensor) -> (Tensor, Tensor, Tensor) {
        let run = prev.maximum(&b.detach());
        ((b - &run).exp(), run.shallow_clone(), prev - run)
    }

    /// Query features for keys stabilised by `run` ([`Self::running_key_features`]): from the
    /// query log features `a` (`[..., m]`), `φ̃(q)_j = exp(a_j + M_j − β)` with
    /// `β = max_j (a_j + M_j)` (`[..., 1]`, detached). Every `φ̃(q)_j·z̃_j` is then ≤ 1 and the
    /// largest is ≥ 1·1, so the normaliser `φ̃(q)·z̃` lies in `[1, m·L]` whenever a key is present:
    /// it cannot underflow however far apart the query's and the keys' features are. The
    /// unstabilised sums are the stabilised ones times `e^β`.
    pub fn stabilised_queries(a: &Tensor, run: &Tensor) -> (Tensor, Tensor) {
        let e = a + run;
        let beta = e.amax([-1i64].as_slice(), true).detach();
        ((e - &beta).exp(), beta)
    }

    /// The log features `log φ(x) = ω·x' − |x'|²/2 − ln(m)/2` of `x: [..., f]` in f64, as the
    /// definition reads; for the reference forms (independent of [`Self::log_features`]).
    pub fn log_features_plain(&self, x: &Tensor) -> Tensor {
        let om = self.omega.to_kind(Kind::Double);
        let xs = x.to_kind(Kind::Double) / (self.f as f64).powf(0.25);
        let dots = xs.matmul(&om.transpose(0, 1));
        let dots = if self.hyperbolic { Tensor::cat(&[&dots, &(-&dots)], -1) } else { dots };
        let sq = (&xs * &xs).sum_dim_intlist([-1i64].as_slice(), true, Kind::Double);
        dots - sq * 0.5 - 0.5 * (self.num_features() as f64).ln()
    }

    /// The unstabilised features `φ(x) = exp(log φ(x))` in f64 (no shift); for the reference
    /// forms.
    pub fn features_plain(&self, x: &Tensor) -> Tensor {
        self.log_features_plain(x).exp()
    }

    /// FLOPs of the random projection of one `f`-vector.
    pub fn proj_flops(&self) -> f64 {
        crate::flops::linear(self.f, self.omega.size()[0])
    }
}

#[derive(Debug)]
pub struct Performer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    out: Linear,
    favor: Favor,
    cfg: PerformerConfig,
    d: i64,
}

impl Performer {
    /// Per-head query and key log features (`[B,H,L,m]`) and `v' = [1, v]`.
    /// The projections run in the caller's precision; the exponential features are formed in
    /// fp32 under bf16 autocast (their exponent's rounding moved gradients by 14 % in bf16).
    fn features(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        use crate::device::full_precision as f32_;
        let h = self.cfg.num_heads;
        let (q, k, v) = (f32_(&self.wq.forward(x)), f32_(&self.wk.forward(x)), f32_(&self.wv.forward(x)));
        crate::device::Precision::fp32_region(x.device(), || {
            let aq = self.favor.log_features(&split_heads(&q, h));
            let kb = self.favor.log_features(&split_heads(&k, h));
            let v = split_heads(&v, h);
            let v1 = Tensor::cat(&[v.ones_like().narrow(-1, 0, 1), v], -1);
            (aq, kb, v1)
        })
    }

    /// `o = [z̃ᵀφ̃(q), S̃ᵀφ̃(q)]` `[B,H,L,1+d_v]` and the stabiliser `β` → `[B, L, D]`.
    fn finish(&self, o: &Tensor, shift: &Tensor) -> Tensor {
        let dv = o.size()[3] - 1;
        // eps in unstabilised units: (φ(q)·z + eps) = e^β (φ̃(q)·z̃ + eps·e^{−β})
        // (written as one exponential: eps·e^{−β} may be +∞ for far queries, never 0·∞)
        let den = if self.cfg.eps > 0.0 {
            o.narrow(-1, 0, 1) + (-shift + self.cfg.eps.ln()).exp()
        } else {
            o.narrow(-1, 0, 1)
        };
        let y = o.narrow(-1, 1, dv) / den;
        self.out.forward(&merge_heads(&y))
    }

    fn value_cols(&self) -> i64 {
        self.d / self.cfg.num_heads + 1
    }

    fn token_flops(&self) -> f64 {
        let h = self.cfg.num_heads as f64;
        self.wq.flops() + self.wk.flops() + self.wv.flops() + self.out.flops() + 2.0 * h * self.favor.proj_flops()
    }
}

impl Mixer for Performer {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let (aq, kb, v1) = self.features(x);
        let (o, beta) = crate::device::Precision::fp32_region(x.device(), || {
            let (fk, run) = Favor::running_key_features(&kb);
            let (fq, beta) = Favor::stabilised_queries(&aq, &run);
            let g = Favor::rescale_log_decays(&run);
            (channel_decayed_attention(&fq, &fk, &v1, &g, self.cfg.chunk_size), beta)
        });
        self.finish(&o, &beta)
    }

    /// Plain loop in f64: `S += φ(k_t) v_tᵀ`, `z += φ(k_t)`, `y_t = Sᵀφ(q_t) / (zᵀφ(q_t) + eps)`
    /// with the unstabilised features ([`Favor::features_plain`]).
    fn reference(&self, x: &Tensor) -> Tensor {
        let (b, l, _) = x.size3().unwrap();
        let h = self.cfg.num_heads;
        let m = self.favor.num_features();
        let fq = self.favor.features_plain(&split_heads(&self.wq.forward(x), h)); // [B,H,L,m]
        let fk = self.favor.features_plain(&split_heads(&self.wk.forward(x), h));
        let v = split_heads(&self.wv.forward(x), h).to_kind(Kind::Double);
        let mut s = Tensor::zeros([b, h, m, self.d / h], (Kind::Double, x.device()));
        let mut z = Tensor::zeros([b, h, m], (Kind::Double, x.device()));
        let mut ys = Vec::with_capacity(l as usize);
        for t in 0..l {
            let (kt, qt) = (fk.select(2, t), fq.select(2, t)); // [B,H,m]
            s = s + kt.unsqueeze(-1) * v.select(2, t).unsqueeze(-2);
            z = z + &kt;
            let num = (qt.unsqueeze(-1) * &s).sum_dim_intlist([2i64].as_slice(), false, Kind::Double);
            let den = (&qt * &z).sum_dim_intlist([2i64].as_slice(), true, Kind::Double) + self.cfg.eps;
            ys.push(num / den); // [B,H,d_v]
        }
        let y = Tensor::stack(&ys, 2).to_kind(x.kind());
        self.out.forward(&merge_heads(&y))
    }

    /// `[S̃ | z̃]` per head `[B, H, m, 1 + d_v]` (stabilised by M) and the running key maximum
    /// per feature M `[B, H, m]` ([`RUNNING_MAX_START`] before the first token).
    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.out.ws.kind(), self.out.ws.device());
        let h = self.cfg.num_heads;
        MixerState::new(vec![
            Tensor::zeros([batch, h, self.favor.num_features(), self.value_cols()], opts),
            Tensor::full([batch, h, self.favor.num_features()], RUNNING_MAX_START, opts),
        ])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let (aq, kb, v1) = self.features(&x_t.unsqueeze(1));
        let (fk, run, g) = Favor::step_key_features(&kb.select(2, 0), &state.tensors[1]);
        let (fq, beta) = Favor::stabilised_queries(&aq.select(2, 0), &run);
        let o = linear_attention_step(&mut state.tensors[0], &fq, &fk, &v1.select(2, 0), Some(&g));
        let out = self.finish(&o.unsqueeze(2), &beta.unsqueeze(2)).squeeze_dim(1);
        state.tensors[1] = run;
        out
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        self.cfg.num_heads * self.favor.num_features() * (self.value_cols() + 1)
    }

    /// Zoology's `Based.state_size` with the Performer map: `H·d_v·m + H·m` (without our running
    /// key maximum, one number per feature and head).
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(self.cfg.num_heads * self.favor.num_features() * self.value_cols())
    }

    fn flops(&self, seq_len: i64) -> MixerFlops {
        let (h, m, v) = (self.cfg.num_heads as f64, self.favor.num_features() as f64, self.value_cols() as f64);
        let c = self.cfg.chunk_size as f64;
        // the rescaling by the running key maximum is a decay per feature (key channel)
        let core = h * (3.0 * c * m + 2.0 * c * v + 4.0 * m * v);
        let tok = self.token_flops();
        let fwd = seq_len as f64 * tok + crate::flops::padded(seq_len, self.cfg.chunk_size) as f64 * core;
        MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + h * 5.0 * m * v)
    }
}

/// The running key maximum of a recurrent state before its first key: below any log feature,
/// finite so that the first update's decay `e^{start − M}` is 0 rather than NaN.
pub const RUNNING_MAX_START: f64 = -1e30;

/// Largest accepted `feature_dim` and `num_features`.
const MAX_FEATURE_DIM: i64 = 4096;
const MAX_FEATURES: i64 = 1 << 16;

impl MixerKind for Performer {
    type Config = PerformerConfig;
    const NAME: &'static str = "performer";
    const ABOUT: &'static str =
        "Performer (FAVOR+): causal linear attention with positive orthogonal random features for softmax, fixed at init";
    const STATE_FORMULA: &'static str =
        "H·m·(d_v+2) (S, z and the running key maximum per feature and head; m = num_features, d_v = d/H)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &PerformerConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        int_in(field, "feature_dim", c.feature_dim, 1, MAX_FEATURE_DIM, "16")?;
        int_in(field, "num_features", c.num_features, 1, MAX_FEATURES, "256")?;
        if c.hyperbolic && c.num_features % 2 != 0 {
            return Err(config_err(
                format!("{field}.num_features"),
                format!(
                    "must be even with hyperbolic = true (m/2 directions, each used as ±ω; got {})",
                    c.num_features
                ),
            ));
        }
        check_chunk(c.chunk_size, field)?;
        if !(c.eps >= 0.0 && c.eps.is_finite()) {
            return Err(config_err(
                format!("{field}.eps"),
                format!("must be a finite number ≥ 0, e.g. 1e-12 (got {})", c.eps),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &PerformerConfig, ctx: &BuildCtx) -> Result<Self> {
        let hf = c.num_heads * c.feature_dim;
        Ok(Performer {
            wq: Linear::new(&p / "proj_q", d, hf, false, ctx.init_std),
            wk: Linear::new(&p / "proj_k", d, hf, false, ctx.init_std),
            wv: Linear::new(&p / "proj_v", d, d, false, ctx.init_std),
            out: Linear::new(&p / "proj_o", d, d, false, ctx.init_std),
            favor: Favor::new(&(&p / "feature_map"), c.feature_dim, c.num_features, c.row_norms, c.hyperbolic),
            cfg: c.clone(),
            d,
        })
    }

    fn suite_variants() -> Vec<PerformerConfig> {
        vec![
            PerformerConfig::default(),
            PerformerConfig { feature_dim: 4, num_features: 6, num_heads: 2, chunk_size: 5, ..Default::default() },
            PerformerConfig {
                feature_dim: 8,
                num_features: 20,
                row_norms: RowNorms::SqrtD,
                hyperbolic: true,
                chunk_size: 8,
                ..Default::default()
            },
            PerformerConfig { num_features: 12, row_norms: RowNorms::Zoology, chunk_size: 4, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{seeded, validate_error};
    use super::*;
    use tch::Device;

    fn favor(f: i64, m: i64, norms: RowNorms, hyperbolic: bool, seed: i64) -> (nn::VarStore, Favor) {
        seeded(seed, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let fv = Favor::new(&vs.root(), f, m, norms, hyperbolic);
            (vs, fv)
        })
    }

    /// Rows within a block of f are orthogonal; chi norms are spread, sqrt_d norms all √f,
    /// zoology norms all √(f/m); the matrix is a non-trainable buffer in the VarStore.
    #[test]
    fn random_rows_are_orthogonal_blocks_with_the_chosen_norms() {
        let (vs, fv) = favor(8, 20, RowNorms::Chi, false, 3);
        let om = fv.omega.to_kind(Kind::Double);
        assert_eq!(om.size(), vec![20, 8]);
        for blk in 0..2 {
            let b = om.narrow(0, blk * 8, 8);
            let g = b.matmul(&b.transpose(0, 1));
            let off = (&g - g.diagonal(0, 0, 1).diag_embed(0, 0, 1)).abs().max().double_value(&[]);
            assert!(off < 1e-5, "block {blk}: off-diagonal {off}");
        }
        let norms =
            Vec::<f64>::try_from(om.square().sum_dim_intlist([1i64].as_slice(), false, Kind::Double).sqrt()).unwrap();
        let spread = norms.iter().cloned().fold(0.0, f64::max) - norms.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.5, "chi norms should vary: {norms:?}");
        let (_vs2, sd) = favor(8, 20, RowNorms::SqrtD, false, 3);
        let (_vs3, zo) = favor(8, 20, RowNorms::Zoology, false, 3);
        for (fv, want) in [(sd, 8f64.sqrt()), (zo, (8.0f64 / 20.0).sqrt())] {
            let n =
                fv.omega.to_kind(Kind::Double).square().sum_dim_intlist([1i64].as_slice(), false, Kind::Double).sqrt();
            assert!((n - want).abs().max().double_value(&[]) < 1e-5);
        }
        let vars = vs.variables();
        assert!(vars.contains_key("omega") && !vars["omega"].requires_grad(), "omega must be a non-trainable buffer");
        assert!(vs.trainable_variables().is_empty());
    }

    /// The features estimate the softmax kernel: mean over 8 independent draws of m = 4096
    /// features each is within 4% of exp(q·k/√f) for a few pairs (chi norms, positive and
    /// hyperbolic; sqrt_d within 15%, being a biased approximation); Zoology's row norms do not
    /// estimate it (off by more than 20%).
    #[test]
    fn features_estimate_the_softmax_kernel() {
        let f = 4;
        let pairs = seeded(9, || {
            (
                Tensor::randn([5, f], (Kind::Double, Device::Cpu)) * 0.5,
                Tensor::randn([5, f], (Kind::Double, Device::Cpu)) * 0.5,
            )
        });
        let exact =
            ((&pairs.0 * &pairs.1).sum_dim_intlist([1i64].as_slice(), false, Kind::Double) / (f as f64).sqrt()).exp();
        let estimate = |norms, hyp| {
            let mut acc = exact.zeros_like();
            for s in 0..8 {
                let (_vs, fv) = favor(f, 4096, norms, hyp, 100 + s);
                let (fq, fk) = (fv.log_features(&pairs.0).exp(), fv.log_features(&pairs.1).exp());
                acc = acc + (fq * fk).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
            }
            acc / 8.0
        };
        for (norms, hyp) in [(RowNorms::Chi, false), (RowNorms::Chi, true)] {
            let rel = ((estimate(norms, hyp) - &exact) / &exact).abs().max().double_value(&[]);
            assert!(rel < 0.04, "{norms:?} hyperbolic={hyp}: max rel err {rel}");
        }
        // fixed lengths √f: not exactly unbiased (ω is not Gaussian), a close approximation
        let rel = ((estimate(RowNorms::SqrtD, false) - &exact) / &exact).abs().max().double_value(&[]);
        assert!(rel < 0.15, "sqrt_d: max rel err {rel}");
        let rel = ((estimate(RowNorms::Zoology, false) - &exact) / &exact).abs().max().double_value(&[]);
        assert!(rel > 0.2, "zoology norms unexpectedly estimate the kernel (rel err {rel})");
    }

    /// Queries large enough that every unstabilised query feature underflows to 0 in f32 (log
    /// features below −104; eps = 0, so the unstabilised ratio would be 0/0): the stabilised
    /// forward stays finite and agrees with the f64 reference.
    #[test]
    fn stabilised_forms_survive_far_queries() {
        let (vs, m) = seeded(5, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let c =
                PerformerConfig { feature_dim: 64, num_features: 16, eps: 0.0, chunk_size: 4, ..Default::default() };
            let m = Performer::build(vs.root(), 16, &c, &BuildCtx::new(0, 2, 16)).unwrap();
            (vs, m)
        });
        tch::no_grad(|| {
            for (name, v) in vs.variables() {
                if name.starts_with("proj_q") {
                    let _ = v.shallow_clone().g_mul_scalar_(100.0);
                }
            }
        });
        let x = seeded(6, || Tensor::randn([1, 9, 16], (Kind::Float, Device::Cpu)));
        let top = tch::no_grad(|| m.favor.log_features(&split_heads(&m.wq.forward(&x), 1)).max().double_value(&[]));
        assert!(top < -104.0, "the test queries should underflow unstabilised f32 features (max log feature {top})");
        let (y, r) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
        assert!(bool::try_from(y.isfinite().all()).unwrap(), "forward not finite");
        let e = super::super::testing::rel_err(&y, &r);
        assert!(e < 1e-4, "rel err {e}");
    }

    /// A wide feature map (f = 256): a constant bound `K = max_j |ω_j|²/2 − ln(m)/2` on the key
    /// log features is so far above them that every `e^{log φ(k) − K}` underflows f32 (checked
    /// here), which made the output 0; with the running key maximum the forward and step forms
    /// agree with the f64 reference.
    #[test]
    fn wide_feature_maps_match_the_reference() {
        let (_vs, m) = seeded(5, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let c = PerformerConfig { feature_dim: 256, num_features: 24, chunk_size: 4, ..Default::default() };
            let m = Performer::build(vs.root(), 16, &c, &BuildCtx::new(0, 2, 16)).unwrap();
            (vs, m)
        });
        let x = seeded(6, || Tensor::randn([2, 11, 16], (Kind::Float, Device::Cpu)));
        let bound =
            m.favor.omega.to_kind(Kind::Double).square().sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        let bound = bound.max().double_value(&[]) * 0.5 - 0.5 * 24f64.ln();
        let top = tch::no_grad(|| m.favor.log_features(&split_heads(&m.wk.forward(&x), 1)).max().double_value(&[]));
        assert!(
            top - bound < -104.0,
            "keys should sit far below the constant bound (max log feature {top}, K {bound})"
        );
        let (y, r) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
        let e = super::super::testing::rel_err(&y, &r);
        assert!(e < 1e-4, "forward vs reference: rel err {e}");
        let steps = tch::no_grad(|| {
            let mut st = m.init_state(2);
            Tensor::stack(&(0..11).map(|t| m.step(&mut st, &x.select(1, t))).collect::<Vec<_>>(), 1)
        });
        let e = super::super::testing::rel_err(&steps, &r);
        assert!(e < 1e-4, "step vs reference: rel err {e}");
    }

    /// Both training forms of the per-feature stabilised core (the fused CPU scan that runs here,
    /// the chunked form that runs on other devices) agree on keys whose log features spread
    /// over hundreds (log decays down to about −300 within a chunk).
    #[test]
    fn stabilised_core_agrees_between_scan_and_chunked_forms() {
        use super::super::common::decayed_linear::chunked_linear_attention;
        let (_vs, fv) = favor(8, 12, RowNorms::Chi, true, 4);
        let (q, k, v) = seeded(8, || {
            let r = |n| Tensor::randn([2, 1, 19, n], (Kind::Float, Device::Cpu));
            (r(8) * 30.0, r(8) * 30.0, r(5))
        });
        let (fk, run) = Favor::running_key_features(&fv.log_features(&k));
        let (fq, _) = Favor::stabilised_queries(&fv.log_features(&q), &run);
        let g = Favor::rescale_log_decays(&run);
        assert!(g.min().double_value(&[]) < -100.0, "the test should have steep decays");
        let fused = channel_decayed_attention(&fq, &fk, &v, &g, 4);
        let chunked = chunked_linear_attention(&fq, &fk, &v, Some(&g), 4).0;
        let e = super::super::testing::rel_err(&fused, &chunked);
        assert!(bool::try_from(chunked.isfinite().all()).unwrap() && e < 1e-5, "rel err {e}");
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert!(validate_error(r#"{ name = "performer", num_heads = 3 }"#).contains("model.mixer.num_heads"));
        assert!(validate_error(r#"{ name = "performer", num_features = 0 }"#).contains("model.mixer.num_features"));
        let e = validate_error(r#"{ name = "performer", num_features = 7, hyperbolic = true }"#);
        assert!(e.contains("model.mixer.num_features") && e.contains("even"), "{e}");
        assert!(validate_error(r#"{ name = "performer", eps = -1.0 }"#).contains("model.mixer.eps"));
        assert!(validate_error(r#"{ name = "performer", row_norms = "gauss" }"#).contains("row_norms"));
        assert!(validate_error(r#"{ name = "performer", redraw = 10 }"#).contains("redraw"));
    }
}
