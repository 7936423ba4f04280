//! `hyena`: the Hyena operator of order 2 (Poli et al. 2023; Safari / Zoology `Hyena`).
//!
//! ```text
//! (x0, x1, v) = split(FIR_k(W_in u + b_in))     W_in: d → 3d, FIR_k depthwise causal, k = 3
//! w = h * (x1 ⊙ v) + β ⊙ (x1 ⊙ v)               long causal conv per channel, bias/D skip β
//! y = W_out (x0 ⊙ w) + b_out
//! ```
//! Implicit long filter, per channel `c` and position `t < max_seq_len`:
//! ```text
//! z(t)   = [t/(L−1), Re e^{−i2πf t/L}, Im e^{−i2πf t/L}]  f = linspace(1e-4, B−1, B), B = (emb_dim−1)/2
//! FFN    = Linear(emb_dim, F) → Sin → [Linear(F, F) → Sin] × num_inner_mlps → Linear(F, d, no bias)
//! Sin(x) = sin(ω ⊙ x), ω learned per unit, init `w`
//! h_c(t) = exp(−|δ_c| · t/(L−1)) · FFN(z(t))_c,   δ_c = linspace(ln(target)/slow_decay_pct, ln(target)/fast_decay_pct, d)
//! ```
//! with `L = max_seq_len`, so the filter does not depend on the input length (shorter inputs
//! use its first taps). Defaults are Safari's: F = `filter_order` = 64, emb_dim 3, 2 inner MLPs,
//! ω = 1, decay target 1e-2 reached at 30 % (fastest channel) … 150 % (slowest) of the length.
//!
//! Forms: training by FFT (zero-padded to 2L) for the long conv and conv1d for the FIR;
//! reference by explicit FIR tap sums and a dense Toeplitz matrix. Hyena has no constant-size
//! recurrence (its filter is not given in modal form), so the step form runs the *explicit*
//! filter as a causal convolution over a cache of every past `x1 ⊙ v` (d·L elements) plus the
//! FIR window of the previous k−1 projected inputs (3d·(k−1)): state `d·L + 3d·(k−1)`.
//!
//! Not reproduced: Safari trains the filter with its own learning rate and zero weight decay;
//! our trainer has a single parameter group.

use super::conv::{fft_causal_conv, fir_step, fir_window_after, long_conv_step, short_conv, short_conv_reference, toeplitz_causal_conv};
use super::layers::Linear;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HyenaConfig {
    /// Width F of the filter FFN.
    pub filter_order: i64,
    /// Positional features of z(t) (odd, ≥ 3).
    pub emb_dim: i64,
    /// Hidden Linear+Sin layers after the first.
    pub num_inner_mlps: i64,
    /// Initial frequency ω of the Sin activations.
    pub w: f64,
    /// Taps of the short depthwise FIR on the projections.
    pub short_filter_order: i64,
    /// Exponential modulation: the fastest channel decays to `decay_target` at
    /// `fast_decay_pct`·L, the slowest at `slow_decay_pct`·L.
    pub fast_decay_pct: f64,
    pub slow_decay_pct: f64,
    pub decay_target: f64,
}

impl Default for HyenaConfig {
    fn default() -> Self {
        HyenaConfig {
            filter_order: 64,
            emb_dim: 3,
            num_inner_mlps: 2,
            w: 1.0,
            short_filter_order: 3,
            fast_decay_pct: 0.3,
            slow_decay_pct: 1.5,
            decay_target: 1e-2,
        }
    }
}

#[derive(Debug)]
struct SinLayer {
    lin: Linear,
    freq: Tensor,
}

#[derive(Debug)]
pub struct Hyena {
    in_proj: Linear,
    fir_w: Tensor,
    fir_b: Tensor,
    z: Tensor,
    decay: Tensor,
    ffn: Vec<SinLayer>,
    ffn_out: Linear,
    beta: Tensor,
    out_proj: Linear,
    d: i64,
    k: i64,
    max_len: i64,
}

impl Hyena {
    /// The long filter `[d, max_len]`.
    fn filter(&self) -> Tensor {
        let mut h = self.z.shallow_clone();
        for s in &self.ffn {
            h = (s.lin.forward(&h) * &s.freq).sin();
        }
        (self.ffn_out.forward(&h) * &self.decay).transpose(0, 1)
    }

    fn check_len(&self, l: i64) {
        assert!(l <= self.max_len, "hyena filter has {} taps but the input has length {l}", self.max_len);
    }

    /// Gated long conv on the FIR output `uc: [B, L, 3d]`, conv given as a closure.
    fn mix(&self, uc: &Tensor, mut conv: impl FnMut(&Tensor) -> Tensor) -> Tensor {
        let parts = uc.split(self.d, -1);
        let x1v = &parts[1] * &parts[2];
        let w = conv(&x1v) + &x1v * &self.beta;
        self.out_proj.forward(&(&parts[0] * w))
    }
}

impl Mixer for Hyena {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        self.check_len(u.size()[1]);
        let uc = short_conv(&self.in_proj.forward(u), &self.fir_w, Some(&self.fir_b));
        let h = self.filter();
        self.mix(&uc, |x| fft_causal_conv(x, &h))
    }

    fn reference(&self, u: &Tensor) -> Tensor {
        self.check_len(u.size()[1]);
        let uc = short_conv_reference(&self.in_proj.forward(u), &self.fir_w, Some(&self.fir_b));
        let h = self.filter();
        self.mix(&uc, |x| toeplitz_causal_conv(x, &h))
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.fir_w.kind(), self.fir_w.device());
        MixerState::new(vec![
            Tensor::zeros([batch, self.k - 1, 3 * self.d], opts),
            Tensor::zeros([batch, 0, self.d], opts),
        ])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let mut window = state.tensors[0].shallow_clone();
        let mut cache = state.tensors[1].shallow_clone();
        self.check_len(cache.size()[1] + 1);
        let uc = fir_step(&mut window, &self.in_proj.forward(x_t), &self.fir_w, Some(&self.fir_b));
        let h = self.filter();
        let y = self.mix(&uc.unsqueeze(1), |x| long_conv_step(&mut cache, &x.squeeze_dim(1), &h).unsqueeze(1));
        state.tensors = vec![window, cache];
        y.squeeze_dim(1)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        self.d * seq_len + 3 * self.d * (self.k - 1)
    }

    fn prefill(&self, x: &Tensor) -> (Tensor, MixerState) {
        let y = self.forward(x, false);
        let proj = self.in_proj.forward(x);
        let uc = short_conv(&proj, &self.fir_w, Some(&self.fir_b));
        let parts = uc.split(self.d, -1);
        let x1v = &parts[1] * &parts[2];
        (y, MixerState::new(vec![fir_window_after(&proj, self.k), x1v]))
    }
}

impl MixerKind for Hyena {
    type Config = HyenaConfig;
    const NAME: &'static str = "hyena";
    const ABOUT: &'static str = "Hyena order 2: FIR-3 on 3d projections, implicit Sin-FFN filter with exponential decay, FFT long conv";
    const STATE_FORMULA: &'static str = "d·L + 3d·(k−1) (cached x1⊙v + FIR window; no constant-size form)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &HyenaConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.emb_dim < 3 || c.emb_dim % 2 == 0 {
            return Err(config_err(format!("{field}.emb_dim"), format!("must be odd and ≥ 3 (got {})", c.emb_dim)));
        }
        if c.filter_order < 1 {
            return Err(config_err(format!("{field}.filter_order"), format!("must be ≥ 1 (got {})", c.filter_order)));
        }
        if c.num_inner_mlps < 0 {
            return Err(config_err(format!("{field}.num_inner_mlps"), format!("must be ≥ 0 (got {})", c.num_inner_mlps)));
        }
        if !(c.w.is_finite() && c.w > 0.0) {
            return Err(config_err(format!("{field}.w"), format!("must be a positive frequency (got {})", c.w)));
        }
        if c.short_filter_order < 1 {
            return Err(config_err(format!("{field}.short_filter_order"), format!("must be ≥ 1 (got {})", c.short_filter_order)));
        }
        for (name, v) in [("fast_decay_pct", c.fast_decay_pct), ("slow_decay_pct", c.slow_decay_pct)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(config_err(format!("{field}.{name}"), format!("must be positive (got {v})")));
            }
        }
        if !(c.decay_target > 0.0 && c.decay_target < 1.0) {
            return Err(config_err(format!("{field}.decay_target"), format!("must be in (0, 1) (got {})", c.decay_target)));
        }
        if ctx.max_seq_len < 1 {
            return Err(config_err(format!("{field}"), "hyena needs the longest sequence length to size its filter"));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &HyenaConfig, ctx: &BuildCtx) -> Result<Self> {
        let l = ctx.max_seq_len;
        let dev = p.device();
        let fo = Kind::Float;
        // z(t)
        let bands = (c.emb_dim - 1) / 2;
        let t01 = Tensor::linspace(0.0, 1.0, l, (fo, dev)).unsqueeze(1); // [L, 1]
        let tr = Tensor::arange(l, (fo, dev)).unsqueeze(1);
        let f = Tensor::linspace(1e-4, (bands - 1) as f64, bands, (fo, dev)).unsqueeze(0);
        let ang = tr * f * (2.0 * std::f64::consts::PI / l as f64);
        let z = Tensor::cat(&[&t01, &ang.cos(), &(-ang.sin())], 1); // [L, emb]
        // exponential modulation
        let ln_t = c.decay_target.ln();
        let deltas = Tensor::linspace(ln_t / c.slow_decay_pct, ln_t / c.fast_decay_pct, d, (fo, dev)).abs();
        let decay = (-(&t01 * deltas.unsqueeze(0))).exp(); // [L, d]
        let k = c.short_filter_order;
        let bound = 1.0 / (k as f64).sqrt();
        let mut ffn = vec![];
        let mut width_in = c.emb_dim;
        for i in 0..=c.num_inner_mlps {
            let q = &p / format!("filter_ffn{i}");
            ffn.push(SinLayer {
                lin: Linear::new(&q / "lin", width_in, c.filter_order, true, 1.0 / (width_in as f64).sqrt()),
                freq: q.var("freq", &[1, c.filter_order], nn::Init::Const(c.w)),
            });
            width_in = c.filter_order;
        }
        Ok(Hyena {
            in_proj: Linear::new(&p / "in_proj", d, 3 * d, true, ctx.init_std),
            fir_w: p.var("short_filter_weight", &[3 * d, k], nn::Init::Uniform { lo: -bound, up: bound }),
            fir_b: p.var("short_filter_bias", &[3 * d], nn::Init::Uniform { lo: -bound, up: bound }),
            z,
            decay,
            ffn,
            ffn_out: Linear::new(&p / "filter_out", c.filter_order, d, false, 1.0 / (c.filter_order as f64).sqrt()),
            beta: p.var("bias", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            out_proj: Linear::new(&p / "out_proj", d, d, true, ctx.out_std),
            d,
            k,
            max_len: l,
        })
    }

    fn suite_variants() -> Vec<HyenaConfig> {
        vec![
            HyenaConfig::default(),
            HyenaConfig { emb_dim: 5, filter_order: 16, num_inner_mlps: 1, w: 10.0, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::validate_error;

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "hyena", emb_dim = 4 }"#);
        assert!(e.contains("model.mixer.emb_dim"), "{e}");
        let e = validate_error(r#"{ name = "hyena", decay_target = 1.5 }"#);
        assert!(e.contains("model.mixer.decay_target"), "{e}");
        let e = validate_error(r#"{ name = "hyena", short_filter_order = 0 }"#);
        assert!(e.contains("model.mixer.short_filter_order"), "{e}");
    }
}
