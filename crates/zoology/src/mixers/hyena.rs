//! `hyena`: the Hyena operator of order 2 (Poli et al. 2023; Safari / Zoology `Hyena`).
//!
//! ```text
//! (x1, x2, v) = split(FIR_k(W_in u + b_in))     W_in: d → 3d, FIR_k depthwise causal, k = 3
//! w = h * (x1 ⊙ v) + β ⊙ (x1 ⊙ v)               long causal conv per channel, bias/D skip β
//! y = W_out (x2 ⊙ w) + b_out
//! ```
//! (Zoology's order: the first third pre-gates v, the second post-gates.)
//! Implicit long filter (Zoology's `Filter`), per channel `c` and position `t < max_seq_len`:
//! ```text
//! z(t)   = [t/(L−1), Re e^{−i2πf t/L}, Im e^{−i2πf t/L}]  f = linspace(1e-4, B−1, B), B = (emb_dim−1)/2
//! FFN    = Linear(emb_dim, F) → Sin → [Linear(F, F) → Sin] × num_inner_mlps → Linear(F, d, no bias)
//! Sin(x) = sin(ω ⊙ x), ω ∈ ℝ^F learned, init `w`, ONE ω shared by every Sin of the FFN
//! h_c(t) = exp(−|δ_c| · t/(L−1)) · FFN(z(t))_c,   δ_c = linspace(ln(target)/slow_decay_pct, ln(target)/fast_decay_pct, d)
//! ```
//! with `L = max_seq_len`, so the filter does not depend on the input length (shorter inputs
//! use its first taps). As in Zoology: z starts at the values above and is a trained parameter
//! (`train_pos_emb = false` keeps it fixed, which is close to Safari, where z trains at lr 1e-5);
//! the decay rates δ and the `t/(L−1)` of the modulation are fixed; Zoology's `Sin` module is
//! created once per filter and appended after every Linear, so its `freq` is one parameter
//! shared by all Sin activations of a layer (each layer has its own filter). Defaults are
//! Zoology's / Safari's: F = `filter_order` = 64, emb_dim 3, 2 inner MLPs, ω = 1, decay target
//! 1e-2 reached at 30 % (fastest channel) … 150 % (slowest) of the length.
//!
//! Init (`filter_init`): `"normal"` (default) is Zoology's `_init_weights`, which re-initialises
//! every `nn.Linear` of the filter FFN to N(0, 0.02) with zero biases (taps ≈ 1e-4 at init);
//! `"fan_in"` gives the FFN's Linears N(0, 1/√fan_in), zero biases (taps of order 0.5·decay).
//! Elsewhere: in_proj N(0, 0.02), out_proj N(0, 0.02/√(2·n_layers)) (Zoology's `out_proj` name
//! rule), zero biases; the short FIR as PyTorch's Conv1d (U(±1/√k)); β ~ N(0, 1).
//!
//! Forms: training by FFT (zero-padded to 2L) for the long conv and conv1d for the FIR;
//! reference by explicit FIR tap sums and a dense Toeplitz matrix. Hyena has no constant-size
//! recurrence (its filter is not given in modal form), so the step form runs the *explicit*
//! filter as a causal convolution over a cache of every past `x1 ⊙ v` (d·L elements) plus the
//! FIR window of the previous k−1 projected inputs (3d·(k−1)): state `d·L + 3d·(k−1)`.
//!
//! FLOPs ([`crate::flops`] convention): per token `in_proj` `6·d²`, FIR `2·3d·k`, `out_proj`
//! `2·d²`; per sequence the long conv `fft_conv(d, L) ≈ 10·L·log₂(2L)·d`; per batch the filter
//! FFN over `L_max` positions (`L_max·(2·e·F + 2·F²·inner + 2·F·d)`) and the filter's FFT.
//! Decode at context L: the per-token terms plus `2·d·L` (cached filter against the cache).
//! Prefill is the parallel form (the final state is a copy of its inputs).
//!
//! Not reproduced: Safari trains the filter with its own learning rate and zero weight decay;
//! our trainer has a single parameter group.

use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::conv::{
    fft_causal_conv, fir_step, fir_window_after, long_conv_step, positional_features, short_conv, short_conv_reference,
    toeplitz_causal_conv, FilterInit,
};
use super::common::layers::Linear;
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
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
    /// Filter FFN init: `normal` (Zoology, N(0, 0.02)) or `fan_in`.
    pub filter_init: FilterInit,
    /// Train the positional features z(t) (Zoology) or keep them fixed.
    pub train_pos_emb: bool,
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
            filter_init: FilterInit::Normal,
            train_pos_emb: true,
        }
    }
}

#[derive(Debug)]
pub struct Hyena {
    in_proj: Linear,
    fir_w: Tensor,
    fir_b: Tensor,
    z: Tensor,
    decay: Tensor,
    ffn: Vec<Linear>,
    freq: Tensor,
    ffn_out: Linear,
    beta: Tensor,
    out_proj: Linear,
    d: i64,
    k: i64,
    max_len: i64,
}

impl Hyena {
    /// The long filter `[d, max_len]`, always in full precision: the sine activations of the
    /// implicit filter amplify the rounding of a bf16 pre-activation (measured: 8 % error at
    /// `w = 10` under bf16 autocast, 0.5 % with the filter in fp32).
    fn filter(&self) -> Tensor {
        crate::device::Precision::fp32_region(self.z.device(), || {
            let mut h = self.z.shallow_clone();
            for lin in &self.ffn {
                h = (lin.forward(&h) * &self.freq).sin();
            }
            (self.ffn_out.forward(&h) * &self.decay).transpose(0, 1)
        })
    }

    fn check_len(&self, l: i64) {
        assert!(l <= self.max_len, "hyena filter has {} taps but the input has length {l}", self.max_len);
    }

    /// Gated long conv on the FIR output `uc: [B, L, 3d]`, conv given as a closure.
    fn mix(&self, uc: &Tensor, mut conv: impl FnMut(&Tensor) -> Tensor) -> Tensor {
        let parts = uc.split(self.d, -1);
        let x1v = &parts[0] * &parts[2];
        let w = conv(&x1v) + &x1v * &self.beta;
        self.out_proj.forward(&(&parts[1] * w))
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

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, fir, MixerFlops};
        let d = self.d;
        let tok = self.in_proj.flops() + fir(3 * d, self.k) + self.out_proj.flops();
        let ffn: f64 = self.ffn.iter().map(|f| f.flops()).sum::<f64>() + self.ffn_out.flops();
        let per_batch = self.max_len as f64 * ffn + fft_filter(d, seq_len);
        MixerFlops::parallel(
            seq_len as f64 * tok + fft_conv(d, seq_len),
            per_batch,
            0.0,
            tok + 2.0 * (d * seq_len) as f64,
        )
    }

    /// Zoology's `Hyena.state_size`: `d·L` (the long conv's input cache; no FIR window).
    fn state_size_zoology(&self, seq_len: i64) -> Option<i64> {
        Some(self.d * seq_len)
    }

    fn prefill(&self, x: &Tensor) -> (Tensor, MixerState) {
        let y = self.forward(x, false);
        let proj = self.in_proj.forward(x);
        let uc = short_conv(&proj, &self.fir_w, Some(&self.fir_b));
        let parts = uc.split(self.d, -1);
        let x1v = &parts[0] * &parts[2];
        (y, MixerState::new(vec![fir_window_after(&proj, self.k), x1v]))
    }
}

impl MixerKind for Hyena {
    type Config = HyenaConfig;
    const NAME: &'static str = "hyena";
    const ABOUT: &'static str =
        "Hyena order 2: FIR-3 on 3d projections, implicit Sin-FFN filter with exponential decay, FFT long conv";
    const STATE_FORMULA: &'static str = "d·L + 3d·(k−1) (cached x1⊙v + FIR window; no constant-size form)";
    const CONSTANT_STATE: bool = false;

    /// Parameters: the input projection (d → 3d) and its short filter, the filter MLP (and
    /// its positional features when trained), the output projection.
    fn memory(c: &HyenaConfig, d: i64, ctx: &BuildCtx, l: i64) -> MixerMemory {
        let (k, o) = (c.short_filter_order, c.filter_order);
        let mut p = linear_params(d, 3 * d, true) + (3 * d * k + 3 * d) as f64;
        if c.train_pos_emb {
            p += ctx.max_seq_len as f64 * c.emb_dim as f64;
        }
        p += linear_params(c.emb_dim, o, true) + c.num_inner_mlps.max(0) as f64 * linear_params(o, o, true);
        p += o as f64 + linear_params(o, d, false) + d as f64 + linear_params(d, d, true);
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &HyenaConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "emb_dim", c.emb_dim, 3, 1025, "3")?;
        if c.emb_dim % 2 == 0 {
            return Err(config_err(format!("{field}.emb_dim"), format!("must be odd and ≥ 3 (got {})", c.emb_dim)));
        }
        int_in(field, "filter_order", c.filter_order, 1, MAX_SIZE, "64")?;
        int_in(field, "num_inner_mlps", c.num_inner_mlps, 0, 64, "2")?;
        float_in(field, "w", c.w, 0.0, f64::INFINITY, "1")?;
        int_in(field, "short_filter_order", c.short_filter_order, 1, MAX_SIZE, "3")?;
        float_in(field, "fast_decay_pct", c.fast_decay_pct, 0.0, f64::INFINITY, "0.3")?;
        float_in(field, "slow_decay_pct", c.slow_decay_pct, 0.0, f64::INFINITY, "1.5")?;
        float_in(field, "decay_target", c.decay_target, 0.0, 1.0, "0.01")?;
        if !(1..=MAX_SIZE).contains(&ctx.max_seq_len) {
            return Err(config_err(
                field.to_string(),
                format!(
                    "hyena needs the longest sequence length in [1, {MAX_SIZE}] to size its filter (got {})",
                    ctx.max_seq_len
                ),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &HyenaConfig, ctx: &BuildCtx) -> Result<Self> {
        let l = ctx.max_seq_len;
        let dev = p.device();
        let fo = Kind::Float;
        // z(t), a parameter (Zoology registers it with lr_pos_emb, which its trainer ignores)
        let z0 = positional_features(l, c.emb_dim, dev); // [L, emb]
        let z = if c.train_pos_emb { p.var_copy("filter_pos_emb_z", &z0) } else { z0 };
        let t01 = Tensor::linspace(0.0, 1.0, l, (fo, dev)).unsqueeze(1); // [L, 1]
                                                                         // exponential modulation
        let ln_t = c.decay_target.ln();
        let deltas = Tensor::linspace(ln_t / c.slow_decay_pct, ln_t / c.fast_decay_pct, d, (fo, dev)).abs();
        let decay = (-(&t01 * deltas.unsqueeze(0))).exp(); // [L, d]
        let k = c.short_filter_order;
        let bound = 1.0 / (k as f64).sqrt();
        let mut ffn = vec![];
        let mut width_in = c.emb_dim;
        for i in 0..=c.num_inner_mlps {
            ffn.push(Linear::new(
                &p / format!("filter_ffn{i}"),
                width_in,
                c.filter_order,
                true,
                c.filter_init.std(width_in),
            ));
            width_in = c.filter_order;
        }
        Ok(Hyena {
            in_proj: Linear::new(&p / "in_proj", d, 3 * d, true, ctx.init_std),
            fir_w: p.var("short_filter_weight", &[3 * d, k], nn::Init::Uniform { lo: -bound, up: bound }),
            fir_b: p.var("short_filter_bias", &[3 * d], nn::Init::Uniform { lo: -bound, up: bound }),
            z,
            decay,
            ffn,
            freq: p.var("filter_sin_freq", &[1, c.filter_order], nn::Init::Const(c.w)),
            ffn_out: Linear::new(&p / "filter_out", c.filter_order, d, false, c.filter_init.std(c.filter_order)),
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
            HyenaConfig {
                emb_dim: 5,
                filter_order: 16,
                num_inner_mlps: 1,
                w: 10.0,
                filter_init: FilterInit::FanIn,
                train_pos_emb: false,
                ..Default::default()
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{seeded, validate_error};
    use super::*;
    use tch::Device;

    fn floats(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    /// The implicit filter in closed form, evaluated with plain f64 loops over the layer's own
    /// parameters (perturbed so that biases, ω and z are not at their init values):
    /// `h_c(t) = exp(−|δ_c| t/(L−1)) · Σ_j W_out[c, j] a_j(t)`, `a = sin(ω ⊙ (W_i a + b_i))`
    /// from `a = z(t)`, with `δ = linspace(ln(target)/slow, ln(target)/fast, d)`.
    #[test]
    fn filter_matches_its_closed_form() {
        let cfg = HyenaConfig { filter_order: 5, num_inner_mlps: 1, emb_dim: 5, ..Default::default() };
        let (d, l) = (4i64, 9i64);
        let (vs, m) = seeded(5, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = Hyena::build(vs.root(), d, &cfg, &BuildCtx::new(0, 2, l)).unwrap();
            tch::no_grad(|| {
                for (name, v) in vs.variables() {
                    if name.starts_with("filter") {
                        let _ = v
                            .shallow_clone()
                            .g_add_(&(Tensor::randn(v.size().as_slice(), (Kind::Float, Device::Cpu)) * 0.5));
                    }
                }
            });
            (vs, m)
        });
        let vars = vs.variables();
        let get = |n: &str| floats(&vars[n]);
        let z = get("filter_pos_emb_z");
        let freq = get("filter_sin_freq");
        let layers = [
            (get("filter_ffn0.weight"), get("filter_ffn0.bias"), 5usize),
            (get("filter_ffn1.weight"), get("filter_ffn1.bias"), 5usize),
        ];
        let w_out = get("filter_out.weight");
        let (f, e) = (5usize, 5usize);
        let h = floats(&tch::no_grad(|| m.filter())); // [d, L]
        let (lo, hi) = ((1e-2f64).ln() / 1.5, (1e-2f64).ln() / 0.3);
        for t in 0..l as usize {
            let mut a: Vec<f64> = z[t * e..(t + 1) * e].to_vec();
            for (w, b, fan_in) in &layers {
                a = (0..f)
                    .map(|k| (freq[k] * ((0..*fan_in).map(|j| w[k * fan_in + j] * a[j]).sum::<f64>() + b[k])).sin())
                    .collect();
            }
            let tt = t as f64 / (l - 1) as f64;
            for c in 0..d as usize {
                let delta = (lo + (hi - lo) * c as f64 / (d - 1) as f64).abs();
                let want = (-delta * tt).exp() * (0..f).map(|j| w_out[c * f + j] * a[j]).sum::<f64>();
                let got = h[c * l as usize + t];
                assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "h[{c}, {t}] = {got}, closed form {want}");
            }
        }
    }

    /// Zoology's init: every Linear of the filter FFN N(0, 0.02) with zero bias, one Sin `freq`
    /// per layer (= w), z a trained parameter; checked on a built 2-layer LM.
    #[test]
    fn filter_init_is_zoologys_by_default() {
        use crate::model::{LanguageModel, ModelConfig};
        let cfg: ModelConfig =
            toml::from_str("d_model = 64\nstate_mixer = \"identity\"\nmixer = { name = \"hyena\" }").unwrap();
        seeded(2, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let _lm = LanguageModel::new(&vs.root(), &cfg, 64, 64).unwrap();
            let vars = vs.variables();
            for layer in 0..2 {
                let v = |n: &str| &vars[&format!("layers.{layer}.mixer.{n}")];
                for n in ["filter_ffn0", "filter_ffn1", "filter_ffn2"] {
                    assert_eq!(v(&format!("{n}.bias")).abs().max().double_value(&[]), 0.0, "{n}.bias");
                }
                for n in ["filter_ffn1.weight", "filter_ffn2.weight", "filter_out.weight"] {
                    let s = v(n).std(true).double_value(&[]);
                    assert!((s - 0.02).abs() < 0.002, "layer {layer} {n}: std {s}");
                }
                let freqs: Vec<&String> =
                    vars.keys().filter(|k| k.starts_with(&format!("layers.{layer}.")) && k.contains("freq")).collect();
                assert_eq!(freqs.len(), 1, "one shared Sin freq per layer, got {freqs:?}");
                assert_eq!(v("filter_sin_freq").size(), vec![1, 64]);
                assert!(v("filter_pos_emb_z").requires_grad(), "z must be trained");
                assert!(v("filter_pos_emb_z").equal(&positional_features(64, 3, Device::Cpu)));
            }
            // out_proj follows Zoology's name rule: 0.02/√(2·2)
            let s = vars["layers.0.mixer.out_proj.weight"].std(true).double_value(&[]);
            assert!((s - 0.01).abs() < 0.001, "out_proj std {s}");
        });
    }

    #[test]
    fn state_sizes_in_both_conventions() {
        let m = seeded(0, || {
            Hyena::build(nn::VarStore::new(Device::Cpu).root(), 8, &HyenaConfig::default(), &BuildCtx::new(0, 2, 32))
                .unwrap()
        });
        assert_eq!(m.state_size(20), 8 * 20 + 3 * 8 * 2);
        assert_eq!(m.state_size_zoology(20), Some(8 * 20));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "hyena", emb_dim = 4 }"#);
        assert!(e.contains("model.mixer.emb_dim"), "{e}");
        let e = validate_error(r#"{ name = "hyena", decay_target = 1.5 }"#);
        assert!(e.contains("model.mixer.decay_target"), "{e}");
        let e = validate_error(r#"{ name = "hyena", short_filter_order = 0 }"#);
        assert!(e.contains("model.mixer.short_filter_order"), "{e}");
        let e = validate_error(r#"{ name = "hyena", w = nan }"#);
        assert!(e.contains("model.mixer.w"), "{e}");
        let e = validate_error(r#"{ name = "hyena", filter_order = 1000000 }"#);
        assert!(e.contains("model.mixer.filter_order"), "{e}");
        let e = validate_error(r#"{ name = "hyena", slow_decay_pct = inf }"#);
        assert!(e.contains("model.mixer.slow_decay_pct"), "{e}");
    }
}
