//! `delta_net` and `gated_delta_net`: the delta rule (Schlag et al. 2021; Yang et al. 2024,
//! "Parallelizing Linear Transformers with the Delta Rule") and its gated form (Yang et al.
//! 2025, Gated DeltaNet). One implementation, two registry entries.
//!
//! With `H` heads, key width `h = D/H` per head, value width `h_v = ⌊D·expand_v⌋/H` per head,
//! `[q, k, v] = silu(ShortConv₄(W_{q,k,v} x))` (causal depthwise conv with `conv_size` = 4 taps,
//! no bias; `use_short_conv = false` skips the conv but keeps the SiLU), per head
//! `k ← k/‖k‖`, `q ← q/‖q‖/√h`, `β_t = σ(W_β x_t)` per head and
//!
//! ```text
//! S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ,   o_t = S_tᵀ q_t     (h × h_v per head)
//! DeltaNet:        α_t = 1
//! Gated DeltaNet:  log α_t = −exp(A_log)·softplus(W_a x_t + dt_bias) (per head)
//! y = W_o RMSNorm_head(o)                       (use_gate = false)
//! y = W_o( RMSNorm_head(o) ⊙ swish(W_g x) )     (use_gate = true)
//! ```
//! Gated DeltaNet's init is fla's / Zoology's: `A_log = log A`, `A ~ U(a_init_range)` = U(0, 16),
//! `dt_bias = softplus⁻¹(dt)`, `dt` log-uniform in [1e-3, 0.1] clamped at 1e-4. Its defaults
//! are Zoology's (`GatedDeltaNet` class and `models_repo` configs): `expand_v = 2` (value width
//! 2d, state 2d²/H), `use_gate = false`, 2 heads. Named options keep the earlier choices:
//! `expand_v = 1`, `use_gate = true`, `a_init_range = [1, 16]`. DeltaNet's are Zoology's
//! `DeltaNet` (`expand_v = 1`, no gate).
//!
//! Init: every Linear N(0, 0.02) (Zoology's rule; `o_proj` is not rescaled); short-conv taps
//! U(±1/√conv_size) (PyTorch's Conv1d init, which Zoology keeps); RMSNorm weight 1.
//!
//! Forms: training = chunked WY/UT form (`delta_rule::chunked_delta_rule`: per chunk of
//! `chunk_size`, one unit-lower-triangular solve gives the pseudo-values `U = Ũ − W S₀`; all
//! chunks' solves are batched, only the `S` hand-off loops over chunks; decays in log space);
//! reference = the recurrence with the dense `(I − β k kᵀ)` transition and the explicit-tap
//! short convolution; recurrent = one delta update per token with conv windows of the previous
//! `conv_size − 1` inputs of q, k and v (`conv::fir_step`).
//!
//! FLOPs ([`crate::flops`] convention): projections q, k `2·d²`, v, g `2·d·d_v`, β and α
//! `2·d·H`, o `2·d_v·d` and the short convs `2·(2d + d_v)·conv_size` per token; the chunked
//! core per position and head `4·C·h + (C−1)·(h + h_v) + 2·C·h_v + 6·h·h_v` (`KKᵀ`, two
//! unit-triangular solves with `h` and `h_v` right-hand sides, `QKᵀ`, `P·U`, `W·S₀`, `Q·S₀`,
//! `Kᵀ·U`) over `⌈L/C⌉·C`. Decode per head `6·h·h_v` (`Sᵀk`, the rank-1 update, the readout),
//! `7·h·h_v` with the decay, plus the per-token terms. Prefill is the step form.
//!
//! State: `H·h·h_v + (conv_size−1)·(2d + ⌊d·expand_v⌋)` elements (`d²/H + 9·d` for DeltaNet's
//! defaults; without short conv only `H·h·h_v`), constant in L. Zoology's `state_size()` counts
//! `H·h·h_v` only (`state_size_zoology`).

use super::common::conv::{fir_step, short_conv, short_conv_reference};
use super::common::delta_rule::{chunked_delta_rule, delta_rule_reference, delta_rule_step};
use super::common::layers::{l2_norm, merge_heads, rms_norm, split_heads, Linear};
use super::linear_attention::{check_chunk, check_value_width};
use super::{delegate_mixer, linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Largest accepted short-conv size.
const MAX_CONV: i64 = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaNetConfig {
    /// Number of heads (must divide d_model and the value width; Zoology's configs: 2).
    pub num_heads: i64,
    /// Value width as a fraction of d_model (Zoology's DeltaNet: 1).
    pub expand_v: f64,
    /// Short causal convolution on q, k, v.
    pub use_short_conv: bool,
    /// Taps of the short convolution.
    pub conv_size: i64,
    /// Chunk length of the training form.
    pub chunk_size: i64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
}

impl Default for DeltaNetConfig {
    fn default() -> Self {
        DeltaNetConfig {
            num_heads: 2,
            expand_v: 1.0,
            use_short_conv: true,
            conv_size: 4,
            chunk_size: 64,
            norm_eps: 1e-5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatedDeltaNetConfig {
    /// Number of heads (must divide d_model and the value width; Zoology's configs: 2).
    pub num_heads: i64,
    /// Value width as a fraction of d_model (Zoology's / fla's Gated DeltaNet: 2).
    pub expand_v: f64,
    /// Swish output gate `⊙ swish(W_g x)` (Zoology's configs: off).
    pub use_gate: bool,
    /// `A ~ U(lo, hi)`, `A_log = log A` (fla: [0, 16]).
    pub a_init_range: [f64; 2],
    /// Short causal convolution on q, k, v.
    pub use_short_conv: bool,
    /// Taps of the short convolution.
    pub conv_size: i64,
    /// Chunk length of the training form.
    pub chunk_size: i64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
}

impl Default for GatedDeltaNetConfig {
    fn default() -> Self {
        GatedDeltaNetConfig {
            num_heads: 2,
            expand_v: 2.0,
            use_gate: false,
            a_init_range: [0.0, 16.0],
            use_short_conv: true,
            conv_size: 4,
            chunk_size: 64,
            norm_eps: 1e-5,
        }
    }
}

/// What the two configs have in common, plus the gate (None for DeltaNet).
#[derive(Debug, Clone)]
struct Spec {
    num_heads: i64,
    expand_v: f64,
    use_short_conv: bool,
    conv_size: i64,
    chunk_size: i64,
    norm_eps: f64,
    /// `(use_gate, a_init_range)` for Gated DeltaNet.
    decay: Option<(bool, [f64; 2])>,
}

impl From<&DeltaNetConfig> for Spec {
    fn from(c: &DeltaNetConfig) -> Self {
        Spec {
            num_heads: c.num_heads,
            expand_v: c.expand_v,
            use_short_conv: c.use_short_conv,
            conv_size: c.conv_size,
            chunk_size: c.chunk_size,
            norm_eps: c.norm_eps,
            decay: None,
        }
    }
}

impl From<&GatedDeltaNetConfig> for Spec {
    fn from(c: &GatedDeltaNetConfig) -> Self {
        Spec {
            num_heads: c.num_heads,
            expand_v: c.expand_v,
            use_short_conv: c.use_short_conv,
            conv_size: c.conv_size,
            chunk_size: c.chunk_size,
            norm_eps: c.norm_eps,
            decay: Some((c.use_gate, c.a_init_range)),
        }
    }
}

impl Spec {
    fn value_dim(&self, d: i64) -> i64 {
        (d as f64 * self.expand_v).floor() as i64
    }
}

#[derive(Debug)]
struct Decay {
    wa: Linear,
    a_log: Tensor,
    dt_bias: Tensor,
}

/// The shared delta-rule mixer; `decay` is present for Gated DeltaNet, `wg` when the output
/// gate is on.
#[derive(Debug)]
pub struct DeltaRule {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wb: Linear,
    convs: Option<[Tensor; 3]>,
    norm_weight: Tensor,
    out: Linear,
    decay: Option<Decay>,
    wg: Option<Linear>,
    spec: Spec,
    d: i64,
    value_dim: i64,
}

/// Per-head inputs of the delta rule: q, k `[B, H, L, h]`, v `[B, H, L, h_v]`, β and log α
/// `[B, H, L]`.
struct Inputs {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Option<Tensor>,
}

impl DeltaRule {
    /// Projected, convolved (by `conv`), activated and normalised inputs.
    fn inputs(&self, x: &Tensor, conv: impl Fn(usize, &Tensor) -> Tensor) -> Inputs {
        let h = self.spec.num_heads;
        let proj = [&self.wq, &self.wk, &self.wv];
        let qkv: Vec<Tensor> = (0..3).map(|i| split_heads(&conv(i, &proj[i].forward(x)).silu(), h)).collect();
        let hd = (self.d / h) as f64;
        let per_head = |t: Tensor| t.transpose(1, 2); // [B, L, H] -> [B, H, L]
        let g = self.decay.as_ref().map(|dc| {
            let dt = (dc.wa.forward(x) + &dc.dt_bias).softplus();
            per_head(-(dc.a_log.exp()) * dt)
        });
        Inputs {
            q: l2_norm(&qkv[0], 1e-6) / hd.sqrt(),
            k: l2_norm(&qkv[1], 1e-6),
            v: qkv[2].shallow_clone(),
            beta: per_head(self.wb.forward(x).sigmoid()),
            g,
        }
    }
    fn finish(&self, o: &Tensor, x: &Tensor) -> Tensor {
        let y = merge_heads(&rms_norm(o, &self.norm_weight, self.spec.norm_eps));
        let y = match &self.wg {
            Some(wg) => y * wg.forward(x).silu(),
            None => y,
        };
        self.out.forward(&y)
    }
    fn build_rule(p: nn::Path, d: i64, spec: Spec, ctx: &BuildCtx) -> Self {
        let s = ctx.init_std;
        let h = spec.num_heads;
        let vd = spec.value_dim(d);
        let convs = spec.use_short_conv.then(|| {
            let bound = 1.0 / (spec.conv_size as f64).sqrt();
            let init = nn::Init::Uniform { lo: -bound, up: bound };
            [
                p.var("q_conv", &[d, spec.conv_size], init),
                p.var("k_conv", &[d, spec.conv_size], init),
                p.var("v_conv", &[vd, spec.conv_size], init),
            ]
        });
        let decay = spec.decay.map(|(_, [lo, hi])| {
            let a_log = p.var("A_log", &[h], nn::Init::Uniform { lo, up: hi });
            let dt_bias = p.var("dt_bias", &[h], nn::Init::Uniform { lo: (1e-3f64).ln(), up: (0.1f64).ln() });
            tch::no_grad(|| {
                let _ = a_log.shallow_clone().copy_(&a_log.log());
                // dt = exp(u) ∈ [1e-3, 0.1], floored at 1e-4; dt_bias = softplus⁻¹(dt) = dt + log(1 − e^{−dt})
                let dt = dt_bias.exp().clamp_min(1e-4);
                let _ = dt_bias.shallow_clone().copy_(&(&dt + (-(dt.neg().exp()) + 1.0).log()));
            });
            Decay { wa: Linear::new(&p / "a_proj", d, h, false, s), a_log, dt_bias }
        });
        let wg = matches!(spec.decay, Some((true, _))).then(|| Linear::new(&p / "g_proj", d, vd, false, s));
        DeltaRule {
            wq: Linear::new(&p / "q_proj", d, d, false, s),
            wk: Linear::new(&p / "k_proj", d, d, false, s),
            wv: Linear::new(&p / "v_proj", d, vd, false, s),
            wb: Linear::new(&p / "b_proj", d, h, false, s),
            convs,
            norm_weight: p.var("o_norm_weight", &[vd / h], nn::Init::Const(1.0)),
            out: Linear::new(&p / "o_proj", vd, d, false, s),
            decay,
            wg,
            spec,
            d,
            value_dim: vd,
        }
    }
    /// Parameters of [`DeltaRule::build_rule`]: q, k (d → d), v (d → v), β (d → H), the short
    /// convolutions, the output norm and projection, and Gated DeltaNet's decay and gate.
    fn memory(spec: &Spec, d: i64, l: i64) -> MixerMemory {
        let (h, vd) = (spec.num_heads, spec.value_dim(d));
        let mut p = 2.0 * linear_params(d, d, false)
            + linear_params(d, vd, false)
            + linear_params(d, h, false)
            + (vd / h.max(1)) as f64
            + linear_params(vd, d, false);
        if spec.use_short_conv {
            p += ((2 * d + vd) * spec.conv_size) as f64;
        }
        if let Some((gate, _)) = spec.decay {
            p += linear_params(d, h, false) + 2.0 * h as f64;
            if gate {
                p += linear_params(d, vd, false);
            }
        }
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }
    fn check(c: &Spec, d: i64, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        check_value_width(c.num_heads, c.expand_v, d, field)?;
        if c.use_short_conv && !(1..=MAX_CONV).contains(&c.conv_size) {
            return Err(config_err(
                format!("{field}.conv_size"),
                format!("must be between 1 and {MAX_CONV}, or set use_short_conv = false (got {})", c.conv_size),
            ));
        }
        check_chunk(c.chunk_size, field)?;
        if !(c.norm_eps > 0.0 && c.norm_eps.is_finite()) {
            return Err(config_err(
                format!("{field}.norm_eps"),
                format!("must be a finite number > 0 (got {})", c.norm_eps),
            ));
        }
        if let Some((_, [lo, hi])) = c.decay {
            if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo < hi && hi <= 1e4) {
                return Err(config_err(
                    format!("{field}.a_init_range"),
                    format!("must be [lo, hi] with 0 ≤ lo < hi ≤ 1e4 (A ~ U(lo, hi), A_log = log A; fla: [0, 16]); got [{lo}, {hi}]"),
                ));
            }
        }
        Ok(())
    }
    fn conv_channels(&self) -> [i64; 3] {
        [self.d, self.d, self.value_dim]
    }
}

impl Mixer for DeltaRule {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let i = self.inputs(x, |j, u| match &self.convs {
            Some(w) => short_conv(u, &w[j], None),
            None => u.shallow_clone(),
        });
        let (o, _) = chunked_delta_rule(&i.q, &i.k, &i.v, &i.beta, i.g.as_ref(), self.spec.chunk_size);
        self.finish(&o, x)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let i = self.inputs(x, |j, u| match &self.convs {
            Some(w) => short_conv_reference(u, &w[j], None),
            None => u.shallow_clone(),
        });
        self.finish(&delta_rule_reference(&i.q, &i.k, &i.v, &i.beta, i.g.as_ref()), x)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.out.ws.kind(), self.out.ws.device());
        let h = self.spec.num_heads;
        let mut ts = vec![Tensor::zeros([batch, h, self.d / h, self.value_dim / h], opts)];
        if self.convs.is_some() {
            ts.extend(self.conv_channels().map(|c| Tensor::zeros([batch, self.spec.conv_size - 1, c], opts)));
        }
        MixerState::new(ts)
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let x = x_t.unsqueeze(1);
        let windows = std::cell::RefCell::new(state.tensors.split_off(1));
        let i = self.inputs(&x, |j, u| match &self.convs {
            Some(w) => fir_step(&mut windows.borrow_mut()[j], &u.squeeze_dim(1), &w[j], None).unsqueeze(1),
            None => u.shallow_clone(),
        });
        let o = delta_rule_step(
            &mut state.tensors[0],
            &i.q.select(2, 0),
            &i.k.select(2, 0),
            &i.v.select(2, 0),
            &i.beta.select(2, 0),
            i.g.as_ref().map(|g| g.select(2, 0)).as_ref(),
        );
        state.tensors.extend(windows.into_inner());
        self.finish(&o.unsqueeze(2), &x).squeeze_dim(1)
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let h = self.spec.num_heads;
        let (k, v, c, hf) = ((self.d / h) as f64, (self.value_dim / h) as f64, self.spec.chunk_size as f64, h as f64);
        let mut tok = self.wq.flops() + self.wk.flops() + self.wv.flops() + self.wb.flops() + self.out.flops();
        tok += self.decay.as_ref().map_or(0.0, |dc| dc.wa.flops()) + self.wg.as_ref().map_or(0.0, |g| g.flops());
        if self.convs.is_some() {
            tok += self.conv_channels().iter().map(|&ch| crate::flops::fir(ch, self.spec.conv_size)).sum::<f64>();
        }
        // per position and head: K Kᵀ 2CK, two unit-triangular solves (C−1)(K+V), Q Kᵀ 2CK,
        // P U 2CV, W S₀ + Q S₀ + Kᵀ U 6KV
        let core = hf * (4.0 * c * k + (c - 1.0) * (k + v) + 2.0 * c * v + 6.0 * k * v);
        let fwd = seq_len as f64 * tok + crate::flops::padded(seq_len, self.spec.chunk_size) as f64 * core;
        let step = hf * k * v * if self.decay.is_some() { 7.0 } else { 6.0 };
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + step)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        let conv =
            if self.convs.is_some() { (self.spec.conv_size - 1) * self.conv_channels().iter().sum::<i64>() } else { 0 };
        self.state_size_zoology(0).unwrap() + conv
    }

    /// Zoology's `DeltaNet` / `GatedDeltaNet.state_size`: `num_heads · head_k_dim · head_v_dim`.
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        let h = self.spec.num_heads;
        Some(h * (self.d / h) * (self.value_dim / h))
    }
}

/// DeltaNet: the delta rule without decay (α = 1).
#[derive(Debug)]
pub struct DeltaNet {
    rule: DeltaRule,
}
delegate_mixer!(DeltaNet, rule);

impl MixerKind for DeltaNet {
    type Config = DeltaNetConfig;
    const NAME: &'static str = "delta_net";
    const ABOUT: &'static str =
        "DeltaNet: delta-rule linear attention, L2-normalised keys, short conv, chunked WY/UT form";
    const STATE_FORMULA: &'static str = "d·d_v/H + (conv_size−1)·(2d + d_v), d_v = ⌊d·expand_v⌋ (d²/H + 9d by default)";
    const CONSTANT_STATE: bool = true;

    fn memory(c: &DeltaNetConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        DeltaRule::memory(&c.into(), d, l)
    }

    fn validate(c: &DeltaNetConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        DeltaRule::check(&c.into(), d, field)
    }
    fn build(p: nn::Path, d: i64, c: &DeltaNetConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(DeltaNet { rule: DeltaRule::build_rule(p, d, c.into(), ctx) })
    }
    fn suite_variants() -> Vec<DeltaNetConfig> {
        vec![
            DeltaNetConfig::default(),
            DeltaNetConfig { chunk_size: 4, ..Default::default() },
            DeltaNetConfig { num_heads: 1, use_short_conv: false, chunk_size: 8, ..Default::default() },
        ]
    }
}

/// Gated DeltaNet: the delta rule with a data-dependent scalar decay per head (and optionally
/// an output gate).
#[derive(Debug)]
pub struct GatedDeltaNet {
    rule: DeltaRule,
}
delegate_mixer!(GatedDeltaNet, rule);

impl MixerKind for GatedDeltaNet {
    type Config = GatedDeltaNetConfig;
    const NAME: &'static str = "gated_delta_net";
    const ABOUT: &'static str = "Gated DeltaNet: delta rule with per-head data-dependent decay (value width 2d, optional swish output gate), chunked WY/UT form";
    const STATE_FORMULA: &'static str =
        "d·d_v/H + (conv_size−1)·(2d + d_v), d_v = ⌊d·expand_v⌋ (2d²/H + 12d by default)";
    const CONSTANT_STATE: bool = true;

    fn memory(c: &GatedDeltaNetConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        DeltaRule::memory(&c.into(), d, l)
    }

    fn validate(c: &GatedDeltaNetConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        DeltaRule::check(&c.into(), d, field)
    }
    fn build(p: nn::Path, d: i64, c: &GatedDeltaNetConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(GatedDeltaNet { rule: DeltaRule::build_rule(p, d, c.into(), ctx) })
    }
    fn suite_variants() -> Vec<GatedDeltaNetConfig> {
        vec![
            GatedDeltaNetConfig::default(),
            GatedDeltaNetConfig {
                chunk_size: 4,
                use_gate: true,
                expand_v: 1.0,
                a_init_range: [1.0, 16.0],
                ..Default::default()
            },
            GatedDeltaNetConfig { num_heads: 1, use_short_conv: false, chunk_size: 8, ..Default::default() },
        ]
    }
}
