//! `delta_net` and `gated_delta_net`: the delta rule (Schlag et al. 2021; Yang et al. 2024,
//! "Parallelizing Linear Transformers with the Delta Rule") and its gated form (Yang et al.
//! 2025, Gated DeltaNet). One implementation, two registry entries.
//!
//! With `H` heads of width `h = D/H`, `[q, k, v] = silu(ShortConv₄(W_{q,k,v} x))` (causal
//! depthwise conv with `conv_size` = 4 taps, no bias; `use_short_conv = false` skips the conv
//! but keeps the SiLU), per head `k ← k/‖k‖`, `q ← q/‖q‖/√h`, `β_t = σ(W_β x_t)` per head and
//!
//! ```text
//! S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ,   o_t = S_tᵀ q_t     (h × h per head)
//! DeltaNet:        α_t = 1,                                    y = W_o RMSNorm_head(o)
//! Gated DeltaNet:  log α_t = −exp(A_log)·softplus(W_a x_t + dt_bias) (per head),
//!                  y = W_o( RMSNorm_head(o) ⊙ swish(W_g x) )
//! ```
//! (`A_log = log U(1, 16)`, `dt_bias = softplus⁻¹(dt)`, `dt` log-uniform in [1e-3, 0.1], as in
//! the reference implementation.)
//!
//! Forms: training = chunked WY/UT form (`delta::chunked_delta_rule`: per chunk of
//! `chunk_size`, one unit-lower-triangular solve gives the pseudo-values `U = Ũ − W S₀`; all
//! chunks' solves are batched, only the `S` hand-off loops over chunks; decays in log space);
//! reference = the recurrence with the dense `(I − β k kᵀ)` transition and the explicit-tap
//! short convolution; recurrent = one delta update per token with conv windows of the previous
//! `conv_size − 1` inputs of q, k and v (`conv::fir_step`).
//!
//! State: `H·h² + 3·(conv_size−1)·d` = `d²/H + 9·d` elements by default (`d²/H` without short
//! conv), constant in L.

use super::conv::{fir_step, short_conv, short_conv_reference};
use super::delta::{chunked_delta_rule, delta_rule_reference, delta_rule_step};
use super::layers::{l2_norm, merge_heads, rms_norm, split_heads, Linear};
use super::{delegate_mixer, BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaNetConfig {
    /// Number of heads (must divide d_model; Zoology's configs: 2).
    pub num_heads: i64,
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
        DeltaNetConfig { num_heads: 2, use_short_conv: true, conv_size: 4, chunk_size: 64, norm_eps: 1e-5 }
    }
}

#[derive(Debug)]
struct Gate {
    wa: Linear,
    a_log: Tensor,
    dt_bias: Tensor,
    wg: Linear,
}

/// The shared delta-rule mixer; `gate` is present for Gated DeltaNet.
#[derive(Debug)]
pub struct DeltaRule {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wb: Linear,
    convs: Option<[Tensor; 3]>,
    norm_weight: Tensor,
    out: Linear,
    gate: Option<Gate>,
    cfg: DeltaNetConfig,
    d: i64,
}

/// Per-head inputs of the delta rule: q, k, v `[B, H, L, h]`, β and log α `[B, H, L]`.
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
        let h = self.cfg.num_heads;
        let proj = [&self.wq, &self.wk, &self.wv];
        let qkv: Vec<Tensor> = (0..3).map(|i| split_heads(&conv(i, &proj[i].forward(x)).silu(), h)).collect();
        let hd = (self.d / h) as f64;
        let per_head = |t: Tensor| t.transpose(1, 2); // [B, L, H] -> [B, H, L]
        let g = self.gate.as_ref().map(|gt| {
            let dt = (gt.wa.forward(x) + &gt.dt_bias).softplus();
            per_head(-(gt.a_log.exp()) * dt)
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
        let y = merge_heads(&rms_norm(o, &self.norm_weight, self.cfg.norm_eps));
        let y = match &self.gate {
            Some(gt) => y * gt.wg.forward(x).silu(),
            None => y,
        };
        self.out.forward(&y)
    }
    fn build_rule(p: nn::Path, d: i64, c: &DeltaNetConfig, ctx: &BuildCtx, gated: bool) -> Self {
        let s = ctx.init_std;
        let h = c.num_heads;
        let convs = c.use_short_conv.then(|| {
            let bound = 1.0 / (c.conv_size as f64).sqrt();
            ["q_conv", "k_conv", "v_conv"].map(|n| p.var(n, &[d, c.conv_size], nn::Init::Uniform { lo: -bound, up: bound }))
        });
        let gate = gated.then(|| {
            let a_log = p.var("A_log", &[h], nn::Init::Uniform { lo: 1.0, up: 16.0 });
            let dt_bias = p.var("dt_bias", &[h], nn::Init::Uniform { lo: (1e-3f64).ln(), up: (0.1f64).ln() });
            tch::no_grad(|| {
                let _ = a_log.shallow_clone().copy_(&a_log.log());
                // dt = exp(u) ∈ [1e-3, 0.1]; dt_bias = softplus⁻¹(dt) = dt + log(1 − e^{−dt})
                let dt = dt_bias.exp();
                let _ = dt_bias.shallow_clone().copy_(&(&dt + (-(dt.neg().exp()) + 1.0).log()));
            });
            Gate { wa: Linear::new(&p / "a_proj", d, h, false, s), a_log, dt_bias, wg: Linear::new(&p / "g_proj", d, d, false, s) }
        });
        DeltaRule {
            wq: Linear::new(&p / "q_proj", d, d, false, s),
            wk: Linear::new(&p / "k_proj", d, d, false, s),
            wv: Linear::new(&p / "v_proj", d, d, false, s),
            wb: Linear::new(&p / "b_proj", d, h, false, s),
            convs,
            norm_weight: p.var("o_norm_weight", &[d / h], nn::Init::Const(1.0)),
            out: Linear::new(&p / "o_proj", d, d, false, ctx.out_std),
            gate,
            cfg: c.clone(),
            d,
        }
    }
    fn check(c: &DeltaNetConfig, d: i64, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        if c.use_short_conv && c.conv_size < 1 {
            return Err(config_err(format!("{field}.conv_size"), format!("must be ≥ 1, or set use_short_conv = false (got {})", c.conv_size)));
        }
        if c.chunk_size < 1 {
            return Err(config_err(format!("{field}.chunk_size"), format!("must be ≥ 1 (got {})", c.chunk_size)));
        }
        if !(c.norm_eps > 0.0 && c.norm_eps.is_finite()) {
            return Err(config_err(format!("{field}.norm_eps"), format!("must be a finite number > 0 (got {})", c.norm_eps)));
        }
        Ok(())
    }
    fn variants() -> Vec<DeltaNetConfig> {
        vec![
            DeltaNetConfig::default(),
            DeltaNetConfig { chunk_size: 4, ..Default::default() },
            DeltaNetConfig { num_heads: 1, use_short_conv: false, chunk_size: 8, ..Default::default() },
        ]
    }
}

impl Mixer for DeltaRule {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let i = self.inputs(x, |j, u| match &self.convs {
            Some(w) => short_conv(u, &w[j], None),
            None => u.shallow_clone(),
        });
        let (o, _) = chunked_delta_rule(&i.q, &i.k, &i.v, &i.beta, i.g.as_ref(), self.cfg.chunk_size);
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
        let (h, hd) = (self.cfg.num_heads, self.d / self.cfg.num_heads);
        let mut ts = vec![Tensor::zeros([batch, h, hd, hd], opts)];
        if self.convs.is_some() {
            ts.extend((0..3).map(|_| Tensor::zeros([batch, self.cfg.conv_size - 1, self.d], opts)));
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

    fn state_size(&self, _seq_len: i64) -> i64 {
        let hd = self.d / self.cfg.num_heads;
        let conv = if self.convs.is_some() { 3 * (self.cfg.conv_size - 1) * self.d } else { 0 };
        self.cfg.num_heads * hd * hd + conv
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
    const ABOUT: &'static str = "DeltaNet: delta-rule linear attention, L2-normalised keys, short conv, chunked WY/UT form";
    const STATE_FORMULA: &'static str = "d²/H + 3·(conv_size−1)·d (d²/H without short conv)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &DeltaNetConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        DeltaRule::check(c, d, field)
    }
    fn build(p: nn::Path, d: i64, c: &DeltaNetConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(DeltaNet { rule: DeltaRule::build_rule(p, d, c, ctx, false) })
    }
    fn suite_variants() -> Vec<DeltaNetConfig> {
        DeltaRule::variants()
    }
}

/// Gated DeltaNet: the delta rule with a data-dependent scalar decay per head and an output gate.
#[derive(Debug)]
pub struct GatedDeltaNet {
    rule: DeltaRule,
}
delegate_mixer!(GatedDeltaNet, rule);

impl MixerKind for GatedDeltaNet {
    type Config = DeltaNetConfig;
    const NAME: &'static str = "gated_delta_net";
    const ABOUT: &'static str = "Gated DeltaNet: delta rule with per-head data-dependent decay and swish output gate, chunked WY/UT form";
    const STATE_FORMULA: &'static str = "d²/H + 3·(conv_size−1)·d (d²/H without short conv)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &DeltaNetConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        DeltaRule::check(c, d, field)
    }
    fn build(p: nn::Path, d: i64, c: &DeltaNetConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(GatedDeltaNet { rule: DeltaRule::build_rule(p, d, c, ctx, true) })
    }
    fn suite_variants() -> Vec<DeltaNetConfig> {
        DeltaRule::variants()
    }
}
