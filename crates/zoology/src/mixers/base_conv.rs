//! `base_conv`: Zoology's BaseConv gated convolution.
//!
//! ```text
//! y = conv_h(u) ⊙ (W u + b) + u
//! ```
//! `kernel_size = k > 0`: `conv_h` is a causal depthwise short convolution with `k` taps and a
//! bias (PyTorch Conv1d init). `kernel_size = -1`: `conv_h` is a long causal convolution over the
//! whole sequence with Zoology's internal skip, `conv_h(u) = h * u + u`, computed by FFT with
//! zero-padding to 2L (O(L log L)). Its filter `h ∈ ℝ^{D×L}` (L = the longest sequence) is
//! implicit by default (`long_filter = "implicit"`, Zoology's `implicit_long_conv=True` and
//! `ImplicitLongConvolution`):
//! ```text
//! z(t) = [t/(L−1), cos(2πf t/L), −sin(2πf t/L)]      t = 0..L−1, f = linspace(1e-4, B−1, B), B = (d_emb−1)/2
//! h    = (W₂ relu(W₁ z(t) + b₁) + b₂)ᵀ               W₁: d_emb → d_hidden, W₂: d_hidden → D
//! ```
//! (z is Zoology's `PositionalEmbedding`, `[t, Re e^{−i2πft/L}, Im e^{−i2πft/L}]`, fixed), or
//! explicit (`long_filter = "explicit"`, Zoology's `LongConvolution`: learned, N(0, 1)).
//!
//! Init of the implicit filter's MLP, `filter_init`: `"normal"` (default) is what Zoology's
//! `_init_weights` does to every `nn.Linear`, N(0, 0.02) weights and zero biases, so the taps
//! start near 1e-3 and the long conv is at first almost only its `+u` skip; `"fan_in"` keeps
//! the MLP's own scale (W₁ N(0, 1/√d_emb), W₂ N(0, 1/√d_hidden), zero biases; taps ≈ 0.5). In
//! the original Zoology code a fan-in init trained faster on MQAR (issue 8 §4: 0.46 vs 0.27 at
//! L = 64, d = 128, 20k examples × 16 epochs); here, at that budget, one seed each, it did not
//! (0.327 vs 0.380 with the default; configs/zoology-figure2-cpu-filter-init.toml).
//!
//! `kernel_size` may be a list indexed by layer (Zoology Figure 2: `[3, -1, 3, -1]` for two
//! layers); like Zoology, a list must have an entry for every layer (extra entries are unused).
//!
//! FLOPs ([`crate::flops`] convention): projection `2·d²` per token. Short: `+ 2·d·k` per
//! token (forward and decode alike). Long: `+ fft_conv(d, L) ≈ 10·L·log₂(2L)·d` per sequence;
//! per batch the filter's FFT (`2.5·2L·log₂(2L)·d`) and, implicit, its MLP over the `L_max`
//! filter positions (`L_max·(2·d_emb·d_hidden + 2·d_hidden·d)`); decode at context L
//! `2·d² + 2·d·L` (the cached filter against every cached input). Prefill is the step form.
//!
//! Forms: short conv via conv1d / explicit tap sums / a window of the previous k−1 inputs
//! (`conv::fir_step`, state `d·(k−1)`, the FIR convention of every mixer); long conv via FFT /
//! dense Toeplitz matrix / a cache of every input so far (state `d·L`).

use super::common::bounds::{int_in, MAX_SIZE};
use super::common::conv::{
    fft_causal_conv, fir_step, long_conv_step, positional_features, short_conv, short_conv_reference,
    toeplitz_causal_conv, FilterInit,
};
use super::common::layers::Linear;
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
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
    /// Layer `i`'s kernel size (validation guarantees a list has an entry for every layer).
    pub fn for_layer(&self, i: usize) -> i64 {
        match self {
            KernelSize::One(k) => *k,
            KernelSize::PerLayer(v) => v[i],
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
    /// Long-filter parametrisation when kernel_size = −1: `implicit` (Zoology) or `explicit`.
    pub long_filter: LongFilter,
    /// Implicit filter: positional features (odd, ≥ 3) and MLP hidden width.
    pub filter_emb_dim: i64,
    pub filter_hidden: i64,
    /// Implicit filter MLP init: `normal` (Zoology, N(0, 0.02)) or `fan_in`.
    pub filter_init: FilterInit,
}

impl Default for BaseConvConfig {
    fn default() -> Self {
        BaseConvConfig {
            kernel_size: KernelSize::One(3),
            long_filter: LongFilter::Implicit,
            filter_emb_dim: 3,
            filter_hidden: 16,
            filter_init: FilterInit::Normal,
        }
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

    /// Zoology's `BaseConv.state_size` (its conv's): `d·k` short (`ShortConvolution`, which
    /// counts a k-input window), `d·L` long (explicit or implicit).
    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, fir, MixerFlops};
        let (d, l, proj) = (self.d, seq_len as f64, self.proj.flops());
        match &self.conv {
            Conv::Short { w, .. } => {
                let tok = proj + fir(d, w.size()[1]);
                MixerFlops::stepwise(l * tok, 0.0, seq_len, |_| tok)
            }
            conv => {
                let mlp = match conv {
                    Conv::Implicit { l1, l2, .. } => self.max_len as f64 * (l1.flops() + l2.flops()),
                    _ => 0.0,
                };
                MixerFlops::stepwise(l * proj + fft_conv(d, seq_len), fft_filter(d, seq_len) + mlp, seq_len, |t| {
                    proj + 2.0 * (d * t) as f64
                })
            }
        }
    }

    fn state_size_zoology(&self, seq_len: i64) -> Option<i64> {
        Some(match self.kernel_size() {
            Some(k) => self.d * k,
            None => self.d * seq_len,
        })
    }
}

impl MixerKind for BaseConv {
    type Config = BaseConvConfig;
    const NAME: &'static str = "base_conv";
    const ABOUT: &'static str = "gated convolution y = conv(u) ⊙ linear(u) + u; short (k>0) or long FFT (k=-1) filter";
    const STATE_FORMULA: &'static str = "d·(k−1) (short), d·L (long)";
    const CONSTANT_STATE: bool = false;

    /// Parameters: the projection, and the short kernel, the explicit filter or the filter MLP.
    fn memory(c: &BaseConvConfig, d: i64, ctx: &BuildCtx, l: i64) -> MixerMemory {
        let k = match &c.kernel_size {
            KernelSize::One(k) => *k,
            KernelSize::PerLayer(v) => v.get(ctx.layer_idx).copied().unwrap_or(0),
        };
        let conv = if k > 0 {
            (d * k + d) as f64
        } else if c.long_filter == LongFilter::Explicit {
            d as f64 * ctx.max_seq_len as f64
        } else {
            linear_params(c.filter_emb_dim, c.filter_hidden, true) + linear_params(c.filter_hidden, d, true)
        };
        MixerMemory { params: Some(linear_params(d, d, true) + conv), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &BaseConvConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        let ks: Vec<i64> = match &c.kernel_size {
            KernelSize::One(k) => vec![*k],
            KernelSize::PerLayer(v) if v.len() < ctx.n_layers => {
                return Err(config_err(
                    format!("{field}.kernel_size"),
                    format!(
                        "per-layer list has {} entries but the model has {} layers; give one kernel size per layer (Zoology indexes the list by layer)",
                        v.len(),
                        ctx.n_layers
                    ),
                ))
            }
            KernelSize::PerLayer(v) => v.clone(),
        };
        for k in ks {
            if k == 0 || k < -1 || k > MAX_SIZE {
                return Err(config_err(
                    format!("{field}.kernel_size"),
                    format!("must be a short kernel size in [1, {MAX_SIZE}] or -1 for a long convolution (got {k})"),
                ));
            }
            if k > 0 && k > ctx.max_seq_len.max(1) && ctx.max_seq_len > 0 {
                return Err(config_err(
                    format!("{field}.kernel_size"),
                    format!(
                        "short kernel {k} is longer than the longest sequence {}; use -1 for a long convolution",
                        ctx.max_seq_len
                    ),
                ));
            }
            if k == -1 && !(1..=MAX_SIZE).contains(&ctx.max_seq_len) {
                return Err(config_err(
                    format!("{field}.kernel_size"),
                    format!("a long convolution (-1) needs the longest sequence length in [1, {MAX_SIZE}] to size its filter (got {})", ctx.max_seq_len),
                ));
            }
        }
        int_in(field, "filter_emb_dim", c.filter_emb_dim, 3, 1025, "3")?;
        if c.filter_emb_dim % 2 == 0 {
            return Err(config_err(
                format!("{field}.filter_emb_dim"),
                format!("must be odd and ≥ 3 (got {})", c.filter_emb_dim),
            ));
        }
        int_in(field, "filter_hidden", c.filter_hidden, 1, MAX_SIZE, "16")?;
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
            Conv::Implicit {
                z: positional_features(max_len, e, p.device()),
                l1: Linear::new(&p / "filter_mlp1", e, c.filter_hidden, true, c.filter_init.std(e)),
                l2: Linear::new(&p / "filter_mlp2", c.filter_hidden, d, true, c.filter_init.std(c.filter_hidden)),
            }
        };
        Ok(BaseConv { proj: Linear::new(&p / "projection", d, d, true, ctx.init_std), conv, d, max_len })
    }

    fn suite_variants() -> Vec<BaseConvConfig> {
        vec![
            BaseConvConfig::default(),
            BaseConvConfig { kernel_size: KernelSize::One(-1), ..Default::default() },
            BaseConvConfig {
                kernel_size: KernelSize::One(-1),
                filter_init: FilterInit::FanIn,
                filter_emb_dim: 5,
                ..Default::default()
            },
            BaseConvConfig {
                kernel_size: KernelSize::One(-1),
                long_filter: LongFilter::Explicit,
                ..Default::default()
            },
            BaseConvConfig { kernel_size: KernelSize::PerLayer(vec![3, -1]), ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{seeded, validate_error};
    use super::*;
    use tch::{Device, Kind};

    fn build(cfg: &BaseConvConfig, layer: usize, d: i64, l: i64) -> (nn::VarStore, BaseConv) {
        seeded(7, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = BaseConv::build(vs.root(), d, cfg, &BuildCtx::new(layer, 2, l)).unwrap();
            (vs, m)
        })
    }

    fn floats(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    /// Zoology's `PositionalEmbedding` in closed form: `[t/(L−1), cos(2πft/L), −sin(2πft/L)]`
    /// with f = linspace(1e-4, B−1, B).
    #[test]
    fn positional_features_are_zoologys() {
        let (l, e) = (7i64, 5i64);
        let z = floats(&positional_features(l, e, Device::Cpu));
        let fs = [1e-4, 1.0];
        for t in 0..l as usize {
            let row = &z[t * 5..t * 5 + 5];
            let tt = t as f64;
            let want = [
                tt / (l - 1) as f64,
                (2.0 * std::f64::consts::PI * fs[0] * tt / l as f64).cos(),
                (2.0 * std::f64::consts::PI * fs[1] * tt / l as f64).cos(),
                -(2.0 * std::f64::consts::PI * fs[0] * tt / l as f64).sin(),
                -(2.0 * std::f64::consts::PI * fs[1] * tt / l as f64).sin(),
            ];
            for (g, w) in row.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "t={t}: {row:?} vs {want:?}");
            }
        }
    }

    /// The implicit filter is `(W₂ relu(W₁ z + b₁) + b₂)ᵀ`, evaluated here with plain f64 loops
    /// over the layer's own parameters (non-zero biases, so every term counts).
    #[test]
    fn implicit_filter_is_the_mlp_of_the_positional_features() {
        let cfg =
            BaseConvConfig { kernel_size: KernelSize::One(-1), filter_init: FilterInit::FanIn, ..Default::default() };
        let (vs, m) = build(&cfg, 0, 6, 9);
        seeded(3, || {
            tch::no_grad(|| {
                for (name, v) in vs.variables() {
                    if name.contains("bias") {
                        let _ = v
                            .shallow_clone()
                            .copy_(&(Tensor::randn(v.size().as_slice(), (Kind::Float, Device::Cpu)) * 0.3));
                    }
                }
            })
        });
        let Conv::Implicit { z, l1, l2 } = &m.conv else { panic!("default long filter is not implicit") };
        let (z, w1, b1, w2, b2) = (
            floats(z),
            floats(&l1.ws),
            floats(l1.bs.as_ref().unwrap()),
            floats(&l2.ws),
            floats(l2.bs.as_ref().unwrap()),
        );
        let (e, hdim, d, l) = (3usize, 16usize, 6usize, 9usize);
        let h = floats(&tch::no_grad(|| m.filter())); // [d, L]
        for t in 0..l {
            let hidden: Vec<f64> = (0..hdim)
                .map(|k| ((0..e).map(|j| w1[k * e + j] * z[t * e + j]).sum::<f64>() + b1[k]).max(0.0))
                .collect();
            for c in 0..d {
                let want = (0..hdim).map(|k| w2[c * hdim + k] * hidden[k]).sum::<f64>() + b2[c];
                assert!((h[c * l + t] - want).abs() < 1e-5, "tap c={c} t={t}: {} vs {want}", h[c * l + t]);
            }
        }
    }

    /// Zoology's init (the default): every filter-MLP Linear N(0, 0.02) with zero biases, so the
    /// taps start near 1e-3; `fan_in` gives taps of order 0.1–1. Checked on a built 2-layer model
    /// with Zoology Figure 2's `[3, -1]` (layer 1 holds the implicit filter).
    #[test]
    fn implicit_filter_init_is_zoologys_by_default() {
        use crate::model::{LanguageModel, ModelConfig};
        assert_eq!(BaseConvConfig::default().long_filter, LongFilter::Implicit);
        // `extra` = "" is the default config
        let tap_rms = |extra: &str| {
            let cfg: ModelConfig = toml::from_str(&format!(
                "d_model = 64\nstate_mixer = \"identity\"\nmixer = {{ name = \"base_conv\", kernel_size = [3, -1]{extra} }}"
            ))
            .unwrap();
            seeded(11, || {
                let vs = nn::VarStore::new(Device::Cpu);
                let _lm = LanguageModel::new(&vs.root(), &cfg, 64, 64).unwrap();
                let vars = vs.variables();
                assert!(!vars.keys().any(|k| k.contains("layers.0.mixer.filter")), "layer 0 must be the short conv");
                let w2 = &vars["layers.1.mixer.filter_mlp2.weight"];
                let w1 = &vars["layers.1.mixer.filter_mlp1.weight"];
                for b in ["layers.1.mixer.filter_mlp1.bias", "layers.1.mixer.filter_mlp2.bias"] {
                    assert_eq!(vars[b].abs().max().double_value(&[]), 0.0, "{b} is not zero");
                }
                let std = |t: &Tensor| t.std(true).double_value(&[]);
                let (z, l1, l2) = (positional_features(64, 3, Device::Cpu), w1, w2);
                let taps = (z.matmul(&l1.tr()).relu()).matmul(&l2.tr());
                (std(w1), std(w2), taps.square().mean(Kind::Float).sqrt().double_value(&[]))
            })
        };
        let (s1, s2, rms) = tap_rms("");
        assert!((s2 - 0.02).abs() < 0.002 && (s1 - 0.02).abs() < 0.008, "normal init: weight stds {s1}, {s2}");
        assert!(rms > 2e-4 && rms < 5e-3, "normal init: tap rms {rms} is not ≈ 1e-3");
        let (s1, s2, rms) = tap_rms(", filter_init = \"fan_in\"");
        assert!((s2 - 0.25).abs() < 0.025 && s1 > 0.3, "fan_in init: weight stds {s1}, {s2}");
        assert!(rms > 0.1, "fan_in init: tap rms {rms}");
    }

    #[test]
    fn state_sizes_in_both_conventions() {
        let (_vs, short) = build(&BaseConvConfig::default(), 0, 8, 20);
        assert_eq!((short.state_size(20), short.state_size_zoology(20)), (8 * 2, Some(8 * 3)));
        let (_vs, long) =
            build(&BaseConvConfig { kernel_size: KernelSize::PerLayer(vec![3, -1]), ..Default::default() }, 1, 8, 20);
        assert_eq!((long.state_size(13), long.state_size_zoology(13)), (8 * 13, Some(8 * 13)));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "base_conv", kernel_size = [3] }"#);
        assert!(e.contains("model.mixer.kernel_size") && e.contains("2 layers"), "{e}");
        let e = validate_error(r#"{ name = "base_conv", kernel_size = [3, -2] }"#);
        assert!(e.contains("model.mixer.kernel_size"), "{e}");
        let e = validate_error(r#"{ name = "base_conv", kernel_size = 49 }"#);
        assert!(e.contains("model.mixer.kernel_size") && e.contains("longer"), "{e}");
        let e = validate_error(r#"{ name = "base_conv", filter_emb_dim = 4 }"#);
        assert!(e.contains("model.mixer.filter_emb_dim"), "{e}");
        let e = validate_error(r#"{ name = "base_conv", filter_hidden = 0 }"#);
        assert!(e.contains("model.mixer.filter_hidden"), "{e}");
        let e = validate_error(r#"{ name = "base_conv", filter_init = "xavier" }"#);
        assert!(e.contains("model.mixer.filter_init"), "{e}");
    }
}
