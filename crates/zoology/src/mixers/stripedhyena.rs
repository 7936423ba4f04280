//! `stripedhyena`: StripedHyena's modal Hyena operator (Together AI, 2023).
//!
//! ```text
//! (x2, x1, v) = split(FIR_k(W u + b))             W: d → 3d, FIR_k depthwise causal, k = 3
//! w = x1 ⊙ v
//! y = W_o (x2 ⊙ (h * w + D ⊙ w)) + b_o
//! h_c[t] = Re Σ_{n<P} R_{c,n} p_{c,n}^t             P = `poles` complex poles per channel
//! p = exp(−exp(ρ)) · e^{iθ}                         so |p| < 1 for every parameter value
//! ```
//! Poles (ρ, θ) and residues R are kept in f32 (StripedHyena needs fp32 poles). Init: decay
//! rates exp(ρ) log-uniform in [5e-3, 0.5], θ uniform in [0, π], R ~ N(0, 1/P) (re and im).
//! This init is ours: StripedHyena's `ParallelHyenaFilter` (stripedhyena/model.py) creates
//! placeholders that its checkpoints overwrite (poles N(0, 1e-2) + i·N(0, 1e-3), i.e. filters
//! that vanish after one step; residues N(0, 1); D = 0; FIR taps N(0, 1)), and it has no
//! training init to match. Zoology has no such mixer, so there is no Zoology state formula.
//!
//! FLOPs ([`crate::flops`] convention): per token `in_proj` `6·d²`, FIR `2·3d·k`, `out_proj`
//! `2·d²`; per sequence `fft_conv(d, L) ≈ 10·L·log₂(2L)·d`; per batch the modal kernel
//! `8·d·P·L` and its FFT. Decode: the per-token terms plus the modal step `12·d·P`, constant
//! in L. Prefill: the parallel form plus the closed-form final state (`8·d·P·L`).
//!
//! Forms:
//! - training: FIR by conv1d, `h * w` by FFT zero-padded to 2L (O(L log L));
//! - reference: explicit FIR tap sums and the modal recurrence run token by token;
//! - step (constant size): `s_t = p ⊙ s_{t−1} + w_t`, `y_t = W_o(x2 ⊙ (Re Σ_n R_n s_{t,n} + D w_t))`,
//!   with the FIR state = the previous k−1 projected inputs. State `3d·(k−1) + 2·d·P` real
//!   elements (P complex numbers per channel, counted as 2 reals each);
//! - prefill (`modal-fft`): outputs by the FFT form, and the final modal state at the last
//!   position in closed form `s_{L−1} = Σ_j p^{L−1−j} w_j` (a Vandermonde contraction), so a
//!   long prompt never runs the recurrence token by token.

use super::common::conv::{fft_causal_conv, fir_step, fir_window_after, short_conv, short_conv_reference};
use super::common::layers::Linear;
use super::common::modal::Modes;
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripedHyenaConfig {
    /// Complex poles per channel (StripedHyena `state_size`: 2).
    pub poles: i64,
    /// Taps of the short FIR on the projections.
    pub short_filter_order: i64,
}

impl Default for StripedHyenaConfig {
    fn default() -> Self {
        StripedHyenaConfig { poles: 2, short_filter_order: 3 }
    }
}

#[derive(Debug)]
pub struct StripedHyena {
    in_proj: Linear,
    fir_w: Tensor,
    fir_b: Tensor,
    log_rate: Tensor,
    theta: Tensor,
    r_re: Tensor,
    r_im: Tensor,
    skip: Tensor,
    out_proj: Linear,
    d: i64,
    k: i64,
    poles: i64,
}

impl StripedHyena {
    fn modes(&self) -> Modes {
        Modes {
            log_mag: -self.log_rate.to_kind(Kind::Float).exp(),
            theta: self.theta.to_kind(Kind::Float),
            c_re: self.r_re.to_kind(Kind::Float),
            c_im: self.r_im.to_kind(Kind::Float),
        }
    }
    /// `(x2, w = x1 ⊙ v)` from the FIR output `[.., 3d]`.
    fn gates(&self, z: &Tensor) -> (Tensor, Tensor) {
        let parts = z.split(self.d, -1);
        (parts[0].shallow_clone(), &parts[1] * &parts[2])
    }
    fn finish(&self, x2: &Tensor, hw: Tensor, w: &Tensor) -> Tensor {
        self.out_proj.forward(&(x2 * (hw + w * &self.skip)))
    }
}

impl Mixer for StripedHyena {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let l = u.size()[1];
        let (x2, w) = self.gates(&short_conv(&self.in_proj.forward(u), &self.fir_w, Some(&self.fir_b)));
        let hw = fft_causal_conv(&w, &self.modes().kernel(l).to_kind(u.kind()));
        self.finish(&x2, hw, &w)
    }

    fn reference(&self, u: &Tensor) -> Tensor {
        let (x2, w) = self.gates(&short_conv_reference(&self.in_proj.forward(u), &self.fir_w, Some(&self.fir_b)));
        let hw = self.modes().scan_reference(&w);
        self.finish(&x2, hw, &w)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let window = Tensor::zeros([batch, self.k - 1, 3 * self.d], (self.fir_w.kind(), self.fir_w.device()));
        let (re, im) = self.modes().zero_state(&[batch]);
        MixerState::new(vec![window, re, im])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let mut window = state.tensors[0].shallow_clone();
        let (mut re, mut im) = (state.tensors[1].shallow_clone(), state.tensors[2].shallow_clone());
        let (x2, w) = self.gates(&fir_step(&mut window, &self.in_proj.forward(x_t), &self.fir_w, Some(&self.fir_b)));
        let hw = self.modes().step(&mut re, &mut im, &w).to_kind(x_t.kind());
        state.tensors = vec![window, re, im];
        self.finish(&x2, hw, &w)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        3 * self.d * (self.k - 1) + 2 * self.d * self.poles
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, fir, modal_kernel, modal_step, MixerFlops};
        let (d, p) = (self.d, self.poles);
        let tok = self.in_proj.flops() + fir(3 * d, self.k) + self.out_proj.flops();
        let fwd = seq_len as f64 * tok + fft_conv(d, seq_len);
        MixerFlops::parallel(
            fwd,
            modal_kernel(d, p, seq_len) + fft_filter(d, seq_len),
            modal_kernel(d, p, seq_len),
            tok + modal_step(d, p),
        )
    }

    /// `modal-fft` prefill: FFT outputs plus the closed-form final state.
    fn prefill(&self, x: &Tensor) -> (Tensor, MixerState) {
        let l = x.size()[1];
        let proj = self.in_proj.forward(x);
        let (x2, w) = self.gates(&short_conv(&proj, &self.fir_w, Some(&self.fir_b)));
        let modes = self.modes();
        let hw = fft_causal_conv(&w, &modes.kernel(l).to_kind(x.kind()));
        let (re, im) = modes.state_after(&w);
        (self.finish(&x2, hw, &w), MixerState::new(vec![fir_window_after(&proj, self.k), re, im]))
    }
}

impl MixerKind for StripedHyena {
    type Config = StripedHyenaConfig;
    const NAME: &'static str = "stripedhyena";
    const ABOUT: &'static str =
        "StripedHyena modal Hyena: x2 ⊙ (h*(x1⊙v) + D x1⊙v), h = Re Σ R p^t, constant-size state, modal-fft prefill";
    const STATE_FORMULA: &'static str = "3d·(k−1) + 2·d·P (FIR window + P complex poles per channel)";
    const CONSTANT_STATE: bool = true;

    /// Parameters: the input projection (d → 3d) and its short filter, four d × poles tensors of
    /// the modal filter, D and the output projection.
    fn memory(c: &StripedHyenaConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        let (k, m) = (c.short_filter_order, c.poles);
        let p = linear_params(d, 3 * d, true) + (3 * d * k + 3 * d + 4 * d * m + d) as f64 + linear_params(d, d, true);
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &StripedHyenaConfig, _d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        // StripedHyena uses a handful of poles per channel and a FIR of order 3; the upper
        // bounds keep absurd values a named error instead of an allocation failure at build
        super::common::bounds::int_in(field, "poles", c.poles, 1, 1024, "2 complex poles per channel")?;
        super::common::bounds::int_in(field, "short_filter_order", c.short_filter_order, 1, 256, "3")
    }

    fn build(p: nn::Path, d: i64, c: &StripedHyenaConfig, ctx: &BuildCtx) -> Result<Self> {
        let (k, m) = (c.short_filter_order, c.poles);
        let bound = 1.0 / (k as f64).sqrt();
        let rs = 1.0 / (m as f64).sqrt();
        Ok(StripedHyena {
            in_proj: Linear::new(&p / "in_proj", d, 3 * d, true, ctx.init_std),
            fir_w: p.var("short_filter_weight", &[3 * d, k], nn::Init::Uniform { lo: -bound, up: bound }),
            fir_b: p.var("short_filter_bias", &[3 * d], nn::Init::Uniform { lo: -bound, up: bound }),
            log_rate: p.var("log_rate", &[d, m], nn::Init::Uniform { lo: (5e-3f64).ln(), up: (0.5f64).ln() }),
            theta: p.var("theta", &[d, m], nn::Init::Uniform { lo: 0.0, up: std::f64::consts::PI }),
            r_re: p.var("residues_re", &[d, m], nn::Init::Randn { mean: 0.0, stdev: rs }),
            r_im: p.var("residues_im", &[d, m], nn::Init::Randn { mean: 0.0, stdev: rs }),
            skip: p.var("D", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            out_proj: Linear::new(&p / "out_proj", d, d, true, ctx.out_std),
            d,
            k,
            poles: m,
        })
    }

    fn suite_variants() -> Vec<StripedHyenaConfig> {
        vec![StripedHyenaConfig::default(), StripedHyenaConfig { poles: 4, short_filter_order: 1 }]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::validate_error;

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "stripedhyena", poles = 0 }"#);
        assert!(e.contains("model.mixer.poles"), "{e}");
        let e = validate_error(r#"{ name = "stripedhyena", short_filter_order = -1 }"#);
        assert!(e.contains("model.mixer.short_filter_order"), "{e}");
        // found by the fuzz campaign: 2^31 taps were accepted and failed at allocation
        let e = validate_error(r#"{ name = "stripedhyena", short_filter_order = 2147483648 }"#);
        assert!(e.contains("model.mixer.short_filter_order") && e.contains("[1, 256]"), "{e}");
        let e = validate_error(r#"{ name = "stripedhyena", poles = 1048576 }"#);
        assert!(e.contains("model.mixer.poles"), "{e}");
    }
}
