//! `base_conv`: Zoology's BaseConv gated convolution.
//!
//! ```text
//! y = conv_h(u) ⊙ (W u + b) + u
//! ```
//! `kernel_size = k > 0`: `conv_h` is a causal depthwise short convolution with `k` taps and a
//! bias (PyTorch Conv1d init). `kernel_size = -1`: `conv_h` is a long causal convolution over the
//! whole sequence with Zoology's internal skip, `conv_h(u) = h * u + u`, computed by FFT with
//! zero-padding to 2L (O(L log L)). Its filter `h ∈ ℝ^{D×L}` is either explicit (learned,
//! N(0, 1) init as in Zoology's `LongConvolution`) or implicit (`long_filter = "implicit"`:
//! `h = MLP(z(t))ᵀ`, `z(t) = [t/L, cos(2πf t/L), sin(2πf t/L)]` per Hyena's positional embedding,
//! MLP `d_emb → d_hidden → D` with ReLU, as in Zoology's `ImplicitLongConvolution`).
//!
//! `kernel_size` may be a list, one entry per layer (Zoology Figure 2: `[3, -1]`).
//!
//! Forms: short conv via conv1d / explicit tap sums / a window of the previous k−1 inputs
//! (`conv::fir_step`, state `d·(k−1)`, the FIR convention of every mixer); long conv via FFT /
//! dense Toeplitz matrix / a cache of every input so far (state `d·L`).

use super::conv::{fft_causal_conv, fir_step, long_conv_step, short_conv, short_conv_reference, toeplitz_causal_conv};
use super::layers::Linear;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// One kernel size for every layer, or a list indexed by layer (cycled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KernelSize {
    One(i64),
    PerLayer(Vec<i64>),
}

impl KernelSize {
    pub fn for_layer(&self, i: usize) -> i64 {
        match self {
            KernelSize::One(k) => *k,
            KernelSize::PerLayer(v) => v[i % v.len()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongFilter {
    Explicit,
    Implicit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseConvConfig {
    /// Short kernel size k > 0, or −1 for a long convolution; or a per-layer list.
    pub kernel_size: KernelSize,
    /// Long-filter parametrisation when kernel_size = −1.
    pub long_filter: LongFilter,
    /// Implicit filter: positional features (odd, ≥ 3) and MLP hidden width.
    pub filter_emb_dim: i64,
    pub filter_hidden: i64,
}

impl Default for BaseConvConfig {
    fn default() -> Self {
        BaseConvConfig { kernel_size: KernelSize::One(3), long_filter: LongFilter::Explicit, filter_emb_dim: 3, filter_hidden: 16 }
    }
}

#[derive(Debug)]
enum Conv {
    Short { w: Tensor, b: Tensor },
    Explicit { h: Tensor },
    Implicit { z: Tensor, l1: Linear, l2: Linear },
}

#[derive(Debug)]
pub struct BaseConv {
    proj: Linear,
    conv: Conv,
    d: i64,
    max_len: i64,
}

impl BaseConv {
    /// The long filter `[D, max_len]`.
    fn filter(&self) -> Tensor {
        match &self.conv {
            Conv::Explicit { h } => h.shallow_clone(),
            Conv::Implicit { z, l1, l2 } => l2.forward(&l1.forward(z).relu()).transpose(0, 1),
            Conv::Short { .. } => unreachable!(),
        }
    }
    fn check_len(&self, l: i64) {
        if !matches!(self.conv, Conv::Short { .. }) {
            assert!(l <= self.max_len, "base_conv long filter has {} taps but the input has length {l}", self.max_len);
        }
    }
    fn kernel_size(&self) -> Option<i64> {
        match &self.conv {
            Conv::Short { w, .. } => Some(w.size()[1]),
            _ => None,
        }
    }
}

impl Mixer for BaseConv {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        self.check_len(u.size()[1]);
        let c = match &self.conv {
            Conv::Short { w, b } => short_conv(u, w, Some(b)),
            _ => fft_causal_conv(u, &self.filter()) + u,
        };
        c * self.proj.forward(u) + u
    }

    fn reference(&self, u: &Tensor) -> Tensor {
        self.check_len(u.size()[1]);
        let c = match &self.conv {
            Conv::Short { w, b } => short_conv_reference(u, w, Some(b)),
            _ => toeplitz_causal_conv(u, &self.filter()) + u,
        };
        c * self.proj.forward(u) + u
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.proj.ws.kind(), self.proj.ws.device());
        // short: the previous k−1 inputs (`fir_step`); long: the cache starts empty
        let len = self.kernel_size().map_or(0, |k| k - 1);
        MixerState::new(vec![Tensor::zeros([batch, len, self.d], opts)])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let c = match &self.conv {
            Conv::Short { w, b } => fir_step(&mut state.tensors[0], x_t, w, Some(b)),
            _ => long_conv_step(&mut state.tensors[0], x_t, &self.filter()) + x_t,
        };
        c * self.proj.forward(x_t) + x_t
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        match self.kernel_size() {
            Some(k) => self.d * (k - 1),
            None => self.d * seq_len,
        }
    }
}

impl MixerKind for BaseConv {
    type Config = BaseConvConfig;
    const NAME: &'static str = "base_conv";
    const ABOUT: &'static str = "gated convolution y = conv(u) ⊙ linear(u) + u; short (k>0) or long FFT (k=-1) filter";
    const STATE_FORMULA: &'static str = "d·(k−1) (short), d·L (long)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &BaseConvConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        let ks: Vec<i64> = match &c.kernel_size {
            KernelSize::One(k) => vec![*k],
            KernelSize::PerLayer(v) if v.is_empty() => {
                return Err(config_err(format!("{field}.kernel_size"), "per-layer list is empty"))
            }
            KernelSize::PerLayer(v) => v.clone(),
        };
        for k in ks {
            if k == 0 || k < -1 {
                return Err(config_err(
                    format!("{field}.kernel_size"),
                    format!("must be a positive short kernel size or -1 for a long convolution (got {k})"),
                ));
            }
            if k > ctx.max_seq_len.max(1) && k > 0 && ctx.max_seq_len > 0 {
                return Err(config_err(
                    format!("{field}.kernel_size"),
                    format!("short kernel {k} is longer than the longest sequence {}; use -1 for a long convolution", ctx.max_seq_len),
                ));
            }
        }
        if c.filter_emb_dim < 3 || c.filter_emb_dim % 2 == 0 {
            return Err(config_err(format!("{field}.filter_emb_dim"), format!("must be odd and ≥ 3 (got {})", c.filter_emb_dim)));
        }
        if c.filter_hidden < 1 {
            return Err(config_err(format!("{field}.filter_hidden"), "must be ≥ 1"));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &BaseConvConfig, ctx: &BuildCtx) -> Result<Self> {
        let k = c.kernel_size.for_layer(ctx.layer_idx);
        let max_len = ctx.max_seq_len;
        let conv = if k > 0 {
            let bound = 1.0 / (k as f64).sqrt();
            Conv::Short {
                w: p.var("conv_weight", &[d, k], nn::Init::Uniform { lo: -bound, up: bound }),
                b: p.var("conv_bias", &[d], nn::Init::Uniform { lo: -bound, up: bound }),
            }
        } else if c.long_filter == LongFilter::Explicit {
            Conv::Explicit { h: p.var("filter", &[d, max_len], nn::Init::Randn { mean: 0.0, stdev: 1.0 }) }
        } else {
            let e = c.filter_emb_dim;
            let bands = (e - 1) / 2;
            let t = Tensor::arange(max_len, (tch::Kind::Float, p.device())).unsqueeze(1); // [L,1]
            let f = if bands == 1 {
                Tensor::from_slice(&[1e-4f32]).to_device(p.device())
            } else {
                Tensor::linspace(1e-4, (bands - 1) as f64, bands, (tch::Kind::Float, p.device()))
            };
            let w = &t * f.unsqueeze(0) * (2.0 * std::f64::consts::PI / max_len as f64); // [L, bands]
            let z = Tensor::cat(&[&t / (max_len as f64), w.cos(), w.sin()], 1); // [L, e]
            Conv::Implicit {
                z,
                l1: Linear::new(&p / "filter_mlp1", e, c.filter_hidden, true, ctx.init_std.max(1.0 / (e as f64).sqrt())),
                l2: Linear::new(&p / "filter_mlp2", c.filter_hidden, d, true, 1.0 / (c.filter_hidden as f64).sqrt()),
            }
        };
        Ok(BaseConv { proj: Linear::new(&p / "projection", d, d, true, ctx.init_std), conv, d, max_len })
    }

    fn suite_variants() -> Vec<BaseConvConfig> {
        vec![
            BaseConvConfig::default(),
            BaseConvConfig { kernel_size: KernelSize::One(-1), ..Default::default() },
            BaseConvConfig { kernel_size: KernelSize::One(-1), long_filter: LongFilter::Implicit, ..Default::default() },
        ]
    }
}
