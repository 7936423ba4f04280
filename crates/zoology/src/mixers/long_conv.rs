//! `long_conv`: an S4-style pure long convolution, no gating, no projections.
//!
//! ```text
//! y = K * u + D ⊙ u            (per channel, causal: y[t] = Σ_{s≤t} K[t−s] u[s] + D u[t])
//! ```
//! The filter `K ∈ ℝ^{d×L}` is either
//! - `explicit`: learned directly (`d × max_seq_len`, N(0, 1/√max_seq_len) init so that the
//!   output has roughly unit scale), or
//! - `s4d`: the kernel of a diagonal SSM with state size `N = d_state` per channel:
//!   `K[t] = 2·Re Σ_{n<N/2} C_n (exp(ΔA_n) − 1)/A_n · exp(ΔA_n)^t` (zero-order hold, `B = 1`,
//!   conjugate pairs), S4D-Lin init `A_n = −½ + iπn`, `Δ` log-uniform in [1e-3, 1e-1], all in
//!   f32 (see `modal::S4d`).
//!
//! `D ∈ ℝ^d` is a learned skip (N(0, 1) init, as in S4). `discretization = "bilinear"` swaps
//! zero-order hold for the bilinear transform (H3's default, see `modal::Discretization`).
//!
//! `output = "glu"` adds the output stage of S4D's block (`s4d.py`) and Safari's `LongConv`:
//! ```text
//! out = GLU(W_o · GELU(y) + b_o),   W_o: d → 2d,   GLU([a, g]) = a ⊙ σ(g)
//! ```
//! `W_o` is N(0, 0.02/√(2·n_layers)) (Zoology's name rule gives `output_linear.0.weight` that
//! std), `b_o` U(±1/√d) (PyTorch's Conv1d/Linear bias init, which the rule leaves alone).
//! `output = "none"` (the default) is the bare convolution.
//!
//! FLOPs ([`crate::flops`] convention): `fft_conv(d, L) ≈ 10·L·log₂(2L)·d` per sequence, per
//! batch the kernel's FFT (`2.5·2L·log₂(2L)·d`) and, s4d, its modal kernel `8·d·(N/2)·L`;
//! `output = "glu"` adds `4·d²` per token. Decode at context L: explicit `2·d·L`, s4d
//! `12·d·N/2` (modal step), plus the GLU's `4·d²`. Prefill is the step form.
//!
//! Forms: training by FFT (zero-padded to 2L, O(L log L)); reference by a dense Toeplitz matrix
//! (explicit) or the SSM recurrence run token by token (s4d); step by a cache of every input so
//! far (explicit, state `d·L`) or the constant-size recurrence `s_t = exp(ΔA) ⊙ s_{t−1} + u_t`,
//! `y_t = 2·Re(C′ s_t) + D u_t` (s4d: `N/2` complex per channel = `d·N` real elements). The
//! output stage is per position and adds no state.

use super::common::bounds::{int_in, MAX_SIZE};
use super::common::conv::{fft_causal_conv, long_conv_step, toeplitz_causal_conv};
use super::common::layers::Linear;
use super::common::modal::{Discretization, S4d};
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongConvFilter {
    Explicit,
    S4d,
}

/// What follows the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongConvOutput {
    /// The convolution output as is.
    None,
    /// S4D / Safari `LongConv`: GELU, then a d → 2d linear map and a GLU.
    Glu,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LongConvConfig {
    /// `explicit` (learned d×L filter) or `s4d` (diagonal SSM kernel).
    pub filter: LongConvFilter,
    /// SSM state size N per channel for `s4d` (even: N/2 complex conjugate pairs). S4D: 64.
    pub d_state: i64,
    /// Discretisation of the `s4d` kernel: `zoh` (S4D) or `bilinear` (H3).
    pub discretization: Discretization,
    /// `none` or `glu` (S4D's GELU → linear → GLU output stage).
    pub output: LongConvOutput,
}

impl Default for LongConvConfig {
    fn default() -> Self {
        LongConvConfig {
            filter: LongConvFilter::S4d,
            d_state: 64,
            discretization: Discretization::Zoh,
            output: LongConvOutput::None,
        }
    }
}

#[derive(Debug)]
enum Filter {
    Explicit(Tensor),
    S4d(S4d),
}

#[derive(Debug)]
pub struct LongConv {
    filter: Filter,
    skip: Tensor,
    output: Option<Linear>,
    d: i64,
    n: i64,
    max_len: i64,
}

impl LongConv {
    fn kernel(&self, l: i64) -> Tensor {
        match &self.filter {
            Filter::Explicit(h) => {
                assert!(
                    l <= self.max_len,
                    "long_conv explicit filter has {} taps but the input has length {l}",
                    self.max_len
                );
                h.narrow(1, 0, l)
            }
            Filter::S4d(s) => s.modes().kernel(l),
        }
    }
    /// The output stage on the convolution output `y + D u` (any leading shape).
    fn finish(&self, y: Tensor) -> Tensor {
        match &self.output {
            None => y,
            Some(lin) => lin.forward(&y.gelu("none")).glu(-1),
        }
    }
}

impl Mixer for LongConv {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let l = u.size()[1];
        self.finish(fft_causal_conv(u, &self.kernel(l).to_kind(u.kind())) + u * &self.skip)
    }

    fn reference(&self, u: &Tensor) -> Tensor {
        let y = match &self.filter {
            Filter::Explicit(_) => toeplitz_causal_conv(u, &self.kernel(u.size()[1])),
            Filter::S4d(s) => s.modes().scan_reference(u),
        };
        self.finish(y + u * &self.skip)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        match &self.filter {
            Filter::Explicit(h) => MixerState::new(vec![Tensor::zeros([batch, 0, self.d], (h.kind(), h.device()))]),
            Filter::S4d(s) => {
                let (re, im) = s.modes().zero_state(&[batch]);
                MixerState::new(vec![re, im])
            }
        }
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let y = match &self.filter {
            Filter::Explicit(h) => long_conv_step(&mut state.tensors[0], x_t, h),
            Filter::S4d(s) => {
                let (mut re, mut im) = (state.tensors[0].shallow_clone(), state.tensors[1].shallow_clone());
                let y = s.modes().step(&mut re, &mut im, x_t).to_kind(x_t.kind());
                state.tensors = vec![re, im];
                y
            }
        };
        self.finish(y + x_t * &self.skip)
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, modal_kernel, modal_step, MixerFlops};
        let (d, l) = (self.d, seq_len as f64);
        let out = self.output.as_ref().map_or(0.0, |o| o.flops());
        let (kernel, step): (f64, Box<dyn Fn(i64) -> f64>) = match self.filter {
            Filter::Explicit(_) => (0.0, Box::new(move |t| 2.0 * (d * t) as f64)),
            Filter::S4d(_) => (modal_kernel(d, self.n / 2, seq_len), Box::new(move |_| modal_step(d, self.n / 2))),
        };
        MixerFlops::stepwise(fft_conv(d, seq_len) + l * out, fft_filter(d, seq_len) + kernel, seq_len, |t| {
            step(t) + out
        })
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        match self.filter {
            Filter::Explicit(_) => self.d * seq_len,
            Filter::S4d(_) => self.d * self.n,
        }
    }
}

impl MixerKind for LongConv {
    type Config = LongConvConfig;
    const NAME: &'static str = "long_conv";
    const ABOUT: &'static str =
        "S4-style long convolution y = K*u + D⊙u, explicit or S4D diagonal-SSM filter, no gating";
    const STATE_FORMULA: &'static str = "d·L (explicit), d·N (s4d: N/2 complex per channel)";
    const CONSTANT_STATE: bool = false;

    /// Parameters: the explicit filter (d × max length) or the diagonal SSM, the skip, and the
    /// GLU output's d → 2d map.
    fn memory(c: &LongConvConfig, d: i64, ctx: &BuildCtx, l: i64) -> MixerMemory {
        let filter = match c.filter {
            LongConvFilter::Explicit => d as f64 * ctx.max_seq_len as f64,
            LongConvFilter::S4d => S4d::params(d, c.d_state, false),
        };
        let out = if c.output == LongConvOutput::Glu { linear_params(d, 2 * d, true) } else { 0.0 };
        MixerMemory { params: Some(filter + d as f64 + out), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &LongConvConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "d_state", c.d_state, 2, MAX_SIZE, "64")?;
        if c.filter == LongConvFilter::S4d && c.d_state % 2 != 0 {
            return Err(config_err(
                format!("{field}.d_state"),
                format!("must be even and ≥ 2 (N/2 complex conjugate pairs), got {}", c.d_state),
            ));
        }
        if c.filter == LongConvFilter::Explicit && ctx.max_seq_len < 1 {
            return Err(config_err(
                format!("{field}.filter"),
                "an explicit filter needs the longest sequence length (model.max_position_embeddings / data seq_len) to be ≥ 1",
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &LongConvConfig, ctx: &BuildCtx) -> Result<Self> {
        let max_len = ctx.max_seq_len;
        let filter = match c.filter {
            LongConvFilter::Explicit => Filter::Explicit(p.var(
                "filter",
                &[d, max_len],
                nn::Init::Randn { mean: 0.0, stdev: 1.0 / (max_len as f64).sqrt() },
            )),
            LongConvFilter::S4d => Filter::S4d(S4d::new(&p / "ssm", d, c.d_state, c.discretization, false)),
        };
        let skip = p.var("D", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let output = (c.output == LongConvOutput::Glu).then(|| {
            let lin = Linear::new(&p / "output_linear" / 0, d, 2 * d, true, ctx.out_std);
            let bound = 1.0 / (d as f64).sqrt();
            tch::no_grad(|| {
                let _ = lin.bs.as_ref().unwrap().shallow_clone().uniform_(-bound, bound);
            });
            lin
        });
        Ok(LongConv { filter, skip, output, d, n: c.d_state, max_len })
    }

    fn suite_variants() -> Vec<LongConvConfig> {
        vec![
            LongConvConfig::default(),
            LongConvConfig { d_state: 8, discretization: Discretization::Bilinear, ..Default::default() },
            LongConvConfig { filter: LongConvFilter::Explicit, ..Default::default() },
            LongConvConfig { d_state: 8, output: LongConvOutput::Glu, ..Default::default() },
            LongConvConfig { filter: LongConvFilter::Explicit, output: LongConvOutput::Glu, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{rel_err, seeded, validate_error};
    use super::*;
    use tch::{Device, Kind};

    /// `output = "glu"` is S4D's output stage on the bare convolution: with the same seed the
    /// filter and skip are the same draws, and `GLU(W gelu(y) + b) = a ⊙ σ(g)`, `[a, g] = W gelu(y) + b`,
    /// written out here; W starts N(0, 0.02/√(2·n_layers)), b within ±1/√d.
    #[test]
    fn glu_output_is_s4ds_output_stage() {
        for filter in [LongConvFilter::S4d, LongConvFilter::Explicit] {
            let build = |output| {
                seeded(9, || {
                    let vs = nn::VarStore::new(Device::Cpu);
                    let c = LongConvConfig { filter, d_state: 8, output, ..Default::default() };
                    let m = LongConv::build(vs.root(), 64, &c, &BuildCtx::new(0, 2, 16)).unwrap();
                    (vs, m)
                })
            };
            let ((_v0, bare), (vs, glu)) = (build(LongConvOutput::None), build(LongConvOutput::Glu));
            let x = seeded(1, || Tensor::randn([2, 16, 64], (Kind::Float, Device::Cpu)));
            let vars = vs.variables();
            let (w, b) = (&vars["output_linear.0.weight"], &vars["output_linear.0.bias"]);
            let want = tch::no_grad(|| {
                let y = bare.forward(&x, false).gelu("none").matmul(&w.tr()) + b;
                y.narrow(2, 0, 64) * y.narrow(2, 64, 64).sigmoid()
            });
            let got = tch::no_grad(|| glu.forward(&x, false));
            assert!(rel_err(&got, &want) < 1e-6, "{filter:?}: {:.2e}", rel_err(&got, &want));
            let s = w.std(true).double_value(&[]);
            assert!((s - 0.01).abs() < 0.001, "output_linear.0.weight std {s}");
            let bmax = b.abs().max().double_value(&[]);
            assert!(bmax <= 1.0 / 8.0 && bmax > 0.1, "bias max {bmax}");
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "long_conv", d_state = 7 }"#);
        assert!(e.contains("model.mixer.d_state"), "{e}");
        let e = validate_error(r#"{ name = "long_conv", filter = "fourier" }"#);
        assert!(e.contains("model.mixer.filter"), "{e}");
        let e = validate_error(r#"{ name = "long_conv", kernel = 3 }"#);
        assert!(e.contains("kernel"), "{e}");
        assert!(e.contains("model.mixer"), "{e}");
    }
}
