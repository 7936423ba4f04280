//! `monarch_mixer`: the causal sequence mixer of Monarch Mixer (M2; Fu et al. 2023;
//! HazyResearch/m2 `bert/src/mm/monarch_mixer_sequence_mixer.py` with `bidirectional=False`,
//! its filter from `hyena_utils.py`), with the long convolution computed through Monarch
//! matrices.
//!
//! What M2's code computes for a causal model is a gated long convolution (Hyena-like):
//!
//! ```text
//! (x1, x2, v) = split(FIR_3(W_in u + b_in))        W_in: d → 3d, depthwise causal FIR, 3 taps
//! y  = h * (x1 ⊙ v) + β ⊙ (x1 ⊙ v)                 causal long conv per channel, skip β ~ N(0, 1)
//! y  = x2 ⊙ y  [+ h₂ * u + β₂ ⊙ u]                 (`residual_long_conv`: a second filter on u)
//! out = W_out y + b_out
//! ```
//! with M2's implicit filter (per channel `c`, position `t < L_max`, `L_max` = the model's
//! longest sequence): `z(t) = [t/(L_max−1), Re e^{−i2πft/L_max}, Im e^{−i2πft/L_max}]` (trained),
//! `FFN = Linear(emb_dim, F) → Sin → [Linear(F, F) → Sin] × 2 → Linear(F, d, no bias)`,
//! `Sin(x) = sin(w_mod·ω ⊙ x)` (one ω ∈ ℝ^F shared by the FFN's Sins, init `hyena_w`),
//! `h_c(t) = FFN(z(t))_c · (exp(−|δ_c|·t/(L_max−1)) + shift)`, δ spread as Hyena's
//! (target 1e-2 at 30 %…150 % of the length). Defaults are the class's: `hyena_w` 10,
//! `w_mod` 1, `emb_dim` 3, `filter_order` 16, `residual_long_conv` false (M2-BERT's configs:
//! emb_dim 5, order 128, residual true; set them). Init: Linears N(0, 0.02) with zero bias
//! (BERT's `initializer_range`), the FIR as PyTorch's Conv1d (U(±1/√3)), β ~ N(0, 1).
//! Departures (DECISIONS, "monarch_mixer"): M2's per-parameter optimiser settings are not
//! modelled (its z has lr 1e-5, the FFN weight decay 0.1; here z trains at the run's lr);
//! `bidirectional` and `hyena_training_additions` are not offered.
//!
//! **Monarch along the sequence** (`seq_mixing = "monarch"`, the default): the causal
//! convolution is a product of DFTs, `y = IDFT_n(DFT_n(u_pad) ⊙ DFT_n(h_pad))[:L]`, with
//! `n = b₁·b₂ ≥ 2L` (`b₁ = ⌈√(2L)⌉`, `b₂ = ⌈2L/b₁⌉`) and each DFT applied as an order-2 Monarch
//! matrix, two block-diagonal dense factors with a twiddle and a transpose between them (the
//! four-step FFT, M2's "Monarch FFT"): `X[k₁ + b₁k₂] = Σ_{j₂} F_{b₂}[j₂,k₂] ω_n^{j₂k₁}
//! Σ_{j₁} F_{b₁}[k₁,j₁] x[j₁b₂ + j₂]`. These are GEMMs on complex tensors. `seq_mixing =
//! "fft"` uses the FFT instead (the same function; M2's code uses `torch.fft` or FlashFFTConv).
//! **Monarch along the channels** in M2 is its MLP (block-diagonal `BlockdiagLinear`, 4
//! blocks), i.e. the state mixer, which is not part of this sequence mixer (DECISIONS).
//!
//! Forms: fast = the FIR by conv1d and the long convolution by Monarch DFTs (or FFT);
//! reference = explicit FIR taps and a dense Toeplitz matrix; step = the FIR window of the
//! previous 2 projected inputs (`3d·2`) and a cache of every past `x1 ⊙ v` (`d·L`; plus every
//! past `u`, `d·L`, with the residual conv), since the implicit filter has no recurrence:
//! state `3d·2 + d·L (+ d·L)`.
//!
//! FLOPs ([`crate::flops`] convention): per token `in_linear` `6d²`, FIR `2·3d·3`, `out_linear`
//! `2d²`. Monarch DFT of length `n = b₁b₂` per channel: `8·n·(b₁ + b₂)` (complex multiply-adds
//! of the two block factors, 8 each) `+ 6·n` (twiddle); the convolution per channel: two DFTs
//! (input, inverse) and the product `6·n`; per batch the filter's DFT per channel and the filter
//! FFN at `L_max` positions `L_max·(2·e·F + 2·F²·2 + 2·F·d)`; each doubled with the residual
//! conv. (`fft`: `fft_conv(d, L)` and `fft_filter(d, L)` as the other FFT mixers.) Decode at
//! context L: the per-token terms plus `2·d·L` per long filter. Prefill is the step form.

use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::conv::{
    fft_causal_conv, fir_step, long_conv_step, positional_features, short_conv, short_conv_reference,
    toeplitz_causal_conv,
};
use super::common::layers::Linear;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// How the long convolution is computed (the same function either way).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeqMixing {
    /// DFTs as order-2 Monarch matrices (block-diagonal GEMMs).
    Monarch,
    /// The FFT.
    Fft,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonarchMixerConfig {
    /// Sin frequency ω at init (M2: 10).
    pub hyena_w: f64,
    /// Fixed factor on ω (M2: 1).
    pub hyena_w_mod: f64,
    /// Positional features of z(t) (odd, ≥ 3).
    pub hyena_emb_dim: i64,
    /// Width F of the filter FFN.
    pub hyena_filter_order: i64,
    /// A second implicit long convolution on the mixer's input, added after the gate.
    pub residual_long_conv: bool,
    /// `monarch` (Monarch DFTs) or `fft`.
    pub seq_mixing: SeqMixing,
}

impl Default for MonarchMixerConfig {
    fn default() -> Self {
        MonarchMixerConfig {
            hyena_w: 10.0,
            hyena_w_mod: 1.0,
            hyena_emb_dim: 3,
            hyena_filter_order: 16,
            residual_long_conv: false,
            seq_mixing: SeqMixing::Monarch,
        }
    }
}

const FIR_TAPS: i64 = 3;
const INNER_MLPS: usize = 2;

/// M2's `HyenaFilter` (causal half): implicit taps `[d, L_max]` and the skip `β`.
#[derive(Debug)]
struct Filter {
    z: Tensor,
    t: Tensor,
    lins: Vec<Linear>,
    freq: Tensor,
    w_mod: f64,
    deltas: Tensor,
    bias: Tensor,
}

impl Filter {
    fn new(p: nn::Path, d: i64, c: &MonarchMixerConfig, l_max: i64, std: f64) -> Filter {
        let (e, f) = (c.hyena_emb_dim, c.hyena_filter_order);
        let z = p.var_copy("z", &positional_features(l_max, e, p.device()));
        let t = Tensor::linspace(0.0, 1.0, l_max, (Kind::Float, p.device())).unsqueeze(1); // [L, 1]
        let mut lins = vec![Linear::new(&p / "implicit_filter" / 0, e, f, true, std)];
        for i in 0..INNER_MLPS {
            lins.push(Linear::new(&p / "implicit_filter" / (2 * i + 2), f, f, true, std));
        }
        lins.push(Linear::new(&p / "implicit_filter" / (2 * INNER_MLPS + 2), f, d, false, std));
        let freq = p.var("freq", &[1, f], nn::Init::Const(c.hyena_w));
        let target = 1e-2f64.ln();
        let deltas = Tensor::linspace(target / 1.5, target / 0.3, d, (Kind::Float, p.device())).unsqueeze(0);
        let bias = p.var("bias", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        Filter { z, t, lins, freq, w_mod: c.hyena_w_mod, deltas, bias }
    }

    /// `[d, L_max]`.
    fn taps(&self) -> Tensor {
        let mut h = self.z.shallow_clone();
        let last = self.lins.len() - 1;
        for (i, lin) in self.lins.iter().enumerate() {
            h = lin.forward(&h);
            if i < last {
                h = (&self.freq * self.w_mod * h).sin();
            }
        }
        let decay = (-(&self.t * self.deltas.abs())).exp(); // shift 0
        (h * decay).transpose(0, 1)
    }

    /// FLOPs of the FFN at `l` positions.
    fn flops(&self, l: i64) -> f64 {
        l as f64 * self.lins.iter().map(|lin| lin.flops()).sum::<f64>()
    }
}

/// Sizes of the Monarch DFT for a causal convolution of length `l`: `(b₁, b₂)`,
/// `b₁ = ⌈√(2l)⌉`, `b₂ = ⌈2l/b₁⌉`, `n = b₁b₂ ≥ 2l`.
pub fn monarch_sizes(l: i64) -> (i64, i64) {
    let n = 2 * l;
    let mut b1 = (n as f64).sqrt().ceil() as i64;
    while (b1 - 1) * (b1 - 1) >= n {
        b1 -= 1;
    }
    while b1 * b1 < n {
        b1 += 1;
    }
    (b1, (n + b1 - 1) / b1)
}

/// The DFT matrix `F[k, j] = e^{∓2πi jk/m}` (complex f32), `[m, m]`.
fn dft_matrix(m: i64, inverse: bool, dev: tch::Device) -> Tensor {
    let idx = Tensor::arange(m, (Kind::Double, dev));
    let ang =
        idx.unsqueeze(1) * idx.unsqueeze(0) * ((if inverse { 2.0 } else { -2.0 }) * std::f64::consts::PI / m as f64);
    Tensor::complex(&ang.cos(), &ang.sin()).to_kind(Kind::ComplexFloat)
}

/// The DFT of length `n = b₁b₂` along the last dimension of `x` (complex), as an order-2
/// Monarch product (four-step): `[.., n] → [.., n]`; `inverse` gives the unnormalised inverse.
pub fn monarch_dft(x: &Tensor, b1: i64, b2: i64, inverse: bool) -> Tensor {
    let n = b1 * b2;
    let dev = x.device();
    let mut lead = x.size();
    lead.pop();
    let mut shape = lead.clone();
    shape.extend([b1, b2]);
    let xm = x.reshape(shape.as_slice()); // x[j1, j2] = x[j1·b2 + j2]
    let a = dft_matrix(b1, inverse, dev).matmul(&xm); // [.., k1, j2]: the first block factor
    let k1 = Tensor::arange(b1, (Kind::Double, dev)).unsqueeze(1);
    let j2 = Tensor::arange(b2, (Kind::Double, dev)).unsqueeze(0);
    let ang = k1 * j2 * ((if inverse { 2.0 } else { -2.0 }) * std::f64::consts::PI / n as f64);
    let tw = Tensor::complex(&ang.cos(), &ang.sin()).to_kind(Kind::ComplexFloat); // ω_n^{k1·j2}
    let out = (a * tw).matmul(&dft_matrix(b2, inverse, dev)); // [.., k1, k2]: the second factor
    let mut flat = lead;
    flat.push(n);
    out.transpose(-1, -2).reshape(flat.as_slice()) // index k1 + b1·k2
}

/// Causal convolution `y[t] = Σ_{s≤t} h[t−s] u[s]` by Monarch DFTs. `u: [B, L, D]`, `h: [D, ≥L]`.
pub fn monarch_causal_conv(u: &Tensor, h: &Tensor) -> Tensor {
    let (_, l, _) = u.size3().unwrap();
    let (b1, b2) = monarch_sizes(l);
    let n = b1 * b2;
    let pad = |x: &Tensor| {
        let m = x.size()[x.dim() - 1];
        x.to_kind(Kind::Float).constant_pad_nd([0, n - m]).to_kind(Kind::ComplexFloat)
    };
    let uf = monarch_dft(&pad(&u.transpose(1, 2)), b1, b2, false); // [B, D, n]
    let hf = monarch_dft(&pad(&h.narrow(1, 0, l)), b1, b2, false); // [D, n]
    let y = monarch_dft(&(uf * hf), b1, b2, true).real() / n as f64;
    y.narrow(2, 0, l).transpose(1, 2).to_kind(u.kind())
}

/// FLOPs of one Monarch DFT of length `n = b₁b₂` (one channel): `8·n·(b₁ + b₂) + 6·n`.
pub fn monarch_dft_flops(b1: i64, b2: i64) -> f64 {
    let n = (b1 * b2) as f64;
    8.0 * n * (b1 + b2) as f64 + 6.0 * n
}

#[derive(Debug)]
pub struct MonarchMixer {
    in_linear: Linear,
    fir_w: Tensor,
    fir_b: Tensor,
    filter: Filter,
    filter2: Option<Filter>,
    out_linear: Linear,
    d: i64,
    mixing: SeqMixing,
}

impl MonarchMixer {
    fn conv(&self, u: &Tensor, h: &Tensor) -> Tensor {
        match self.mixing {
            SeqMixing::Monarch => monarch_causal_conv(u, h),
            SeqMixing::Fft => fft_causal_conv(u, h),
        }
    }

    fn check_len(&self, l: i64) {
        let l_max = self.filter.z.size()[0];
        assert!(l <= l_max, "monarch_mixer: the filter has {l_max} taps but the input has length {l}");
    }
}

impl Mixer for MonarchMixer {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let (_, l, d) = u.size3().unwrap();
        self.check_len(l);
        let z = short_conv(&self.in_linear.forward(u), &self.fir_w, Some(&self.fir_b));
        let (x1, x2, v) = (z.narrow(2, 0, d), z.narrow(2, d, d), z.narrow(2, 2 * d, d));
        let v = v * x1;
        let k = self.filter.taps().to_kind(u.kind());
        let mut y = (self.conv(&v, &k) + &v * &self.filter.bias) * x2;
        if let Some(f2) = &self.filter2 {
            y = y + self.conv(u, &f2.taps().to_kind(u.kind())) + u * &f2.bias;
        }
        self.out_linear.forward(&y)
    }

    /// Explicit FIR taps, a dense Toeplitz matrix for every long convolution, the projections
    /// written out.
    fn reference(&self, u: &Tensor) -> Tensor {
        let (_, l, d) = u.size3().unwrap();
        self.check_len(l);
        let proj = u.matmul(&self.in_linear.ws.tr()) + self.in_linear.bs.as_ref().unwrap();
        let z = short_conv_reference(&proj, &self.fir_w, Some(&self.fir_b));
        let (x1, x2, v) = (z.narrow(2, 0, d), z.narrow(2, d, d), z.narrow(2, 2 * d, d));
        let v = v * x1;
        let k = self.filter.taps().to_kind(u.kind());
        let mut y = (toeplitz_causal_conv(&v, &k) + &v * &self.filter.bias) * x2;
        if let Some(f2) = &self.filter2 {
            y = y + toeplitz_causal_conv(u, &f2.taps().to_kind(u.kind())) + u * &f2.bias;
        }
        y.matmul(&self.out_linear.ws.tr()) + self.out_linear.bs.as_ref().unwrap()
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.fir_w.kind(), self.fir_w.device());
        let mut t =
            vec![Tensor::zeros([batch, FIR_TAPS - 1, 3 * self.d], opts), Tensor::zeros([batch, 0, self.d], opts)];
        if self.filter2.is_some() {
            t.push(Tensor::zeros([batch, 0, self.d], opts));
        }
        MixerState::new(t)
    }

    fn step(&self, state: &mut MixerState, u_t: &Tensor) -> Tensor {
        let d = self.d;
        let z = fir_step(&mut state.tensors[0], &self.in_linear.forward(u_t), &self.fir_w, Some(&self.fir_b));
        let (x1, x2, v) = (z.narrow(1, 0, d), z.narrow(1, d, d), z.narrow(1, 2 * d, d));
        let v = v * x1;
        let k = self.filter.taps().to_kind(u_t.kind());
        let mut y = (long_conv_step(&mut state.tensors[1], &v, &k) + &v * &self.filter.bias) * x2;
        if let Some(f2) = &self.filter2 {
            let k2 = f2.taps().to_kind(u_t.kind());
            y = y + long_conv_step(&mut state.tensors[2], u_t, &k2) + u_t * &f2.bias;
        }
        self.out_linear.forward(&y)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        let filters = if self.filter2.is_some() { 2 } else { 1 };
        3 * self.d * (FIR_TAPS - 1) + filters * self.d * seq_len
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, fir, MixerFlops};
        let (d, l) = (self.d, seq_len);
        let l_max = self.filter.z.size()[0];
        let tok = self.in_linear.flops() + fir(3 * d, FIR_TAPS) + self.out_linear.flops();
        let filters = if self.filter2.is_some() { 2.0 } else { 1.0 };
        let (conv, filter_dft) = match self.mixing {
            SeqMixing::Monarch => {
                let (b1, b2) = monarch_sizes(l);
                let n = (b1 * b2) as f64;
                let dft = monarch_dft_flops(b1, b2);
                (d as f64 * (2.0 * dft + 6.0 * n), d as f64 * dft)
            }
            SeqMixing::Fft => (fft_conv(d, l), fft_filter(d, l)),
        };
        let fwd = l as f64 * tok + filters * conv;
        let batch = filters * (filter_dft + self.filter.flops(l_max));
        MixerFlops::stepwise(fwd, batch, seq_len, move |t| tok + filters * 2.0 * (d * t) as f64)
    }
}

impl MixerKind for MonarchMixer {
    type Config = MonarchMixerConfig;
    const NAME: &'static str = "monarch_mixer";
    const ABOUT: &'static str =
        "Monarch Mixer (M2) causal sequence mixer: gated implicit long conv, computed by Monarch-matrix DFTs";
    const STATE_FORMULA: &'static str = "6d + d·L (+ d·L with residual_long_conv): FIR window + every past input";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &MonarchMixerConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        float_in(field, "hyena_w", c.hyena_w, 0.0, f64::INFINITY, "10")?;
        float_in(field, "hyena_w_mod", c.hyena_w_mod, 0.0, f64::INFINITY, "1")?;
        int_in(field, "hyena_filter_order", c.hyena_filter_order, 1, MAX_SIZE, "16")?;
        int_in(field, "hyena_emb_dim", c.hyena_emb_dim, 3, 1025, "3")?;
        if c.hyena_emb_dim % 2 == 0 {
            return Err(config_err(
                format!("{field}.hyena_emb_dim"),
                format!("must be odd (t plus cos/sin pairs), e.g. 3 or 5 (got {})", c.hyena_emb_dim),
            ));
        }
        if ctx.max_seq_len < 2 {
            return Err(config_err(
                field.to_string(),
                "the implicit filter is defined over the longest sequence length, which must be ≥ 2",
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &MonarchMixerConfig, ctx: &BuildCtx) -> Result<Self> {
        let std = ctx.init_std;
        let in_linear = Linear::new(&p / "in_linear", d, 3 * d, true, std);
        let cb = 1.0 / (FIR_TAPS as f64).sqrt();
        let fir_w = p.var("short_filter_weight", &[3 * d, FIR_TAPS], nn::Init::Uniform { lo: -cb, up: cb });
        let fir_b = p.var("short_filter_bias", &[3 * d], nn::Init::Uniform { lo: -cb, up: cb });
        let filter = Filter::new(&p / "filter_fn", d, c, ctx.max_seq_len, std);
        let filter2 = c.residual_long_conv.then(|| Filter::new(&p / "filter_fn2", d, c, ctx.max_seq_len, std));
        let out_linear = Linear::new(&p / "out_linear", d, d, true, std);
        Ok(MonarchMixer { in_linear, fir_w, fir_b, filter, filter2, out_linear, d, mixing: c.seq_mixing })
    }

    fn suite_variants() -> Vec<MonarchMixerConfig> {
        vec![
            MonarchMixerConfig::default(),
            MonarchMixerConfig { residual_long_conv: true, hyena_emb_dim: 5, ..Default::default() },
            MonarchMixerConfig { seq_mixing: SeqMixing::Fft, hyena_w: 1.0, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded, validate_error};
    use tch::Device;

    /// The Monarch product is the DFT: against `torch.fft` for square and non-square sizes,
    /// forward and inverse.
    #[test]
    fn monarch_dft_is_the_dft() {
        for (b1, b2) in [(2i64, 2i64), (4, 4), (3, 5), (6, 4), (1, 7), (8, 9)] {
            let n = b1 * b2;
            let x = seeded(n, || Tensor::randn([2, 3, n], (Kind::ComplexFloat, Device::Cpu)));
            let want = x.fft_fft(None, -1, "backward");
            let got = monarch_dft(&x, b1, b2, false);
            assert!(rel_err(&got.view_as_real(), &want.view_as_real()) < 1e-5, "{b1}×{b2}");
            let back = monarch_dft(&got, b1, b2, true) / n as f64;
            assert!(rel_err(&back.view_as_real(), &x.view_as_real()) < 1e-5, "{b1}×{b2} inverse");
        }
        for l in [1i64, 2, 7, 16, 33, 1000] {
            let (b1, b2) = monarch_sizes(l);
            assert!(b1 * b2 >= 2 * l && b1 * b2 < 2 * l + b1 && b2 <= b1, "L={l}: {b1}×{b2}");
        }
    }

    /// The Monarch causal convolution equals the FFT one and the dense Toeplitz product.
    #[test]
    fn monarch_conv_matches_fft_and_toeplitz() {
        for l in [1i64, 5, 16, 37] {
            let (u, h) = seeded(l, || {
                (
                    Tensor::randn([2, l, 3], (Kind::Float, Device::Cpu)),
                    Tensor::randn([3, l + 4], (Kind::Float, Device::Cpu)),
                )
            });
            let m = monarch_causal_conv(&u, &h);
            assert!(rel_err(&m, &fft_causal_conv(&u, &h)) < 1e-5, "L={l} vs FFT");
            assert!(rel_err(&m, &toeplitz_causal_conv(&u, &h)) < 1e-5, "L={l} vs Toeplitz");
        }
    }

    /// M2's filter: Sin frequency shared by the FFN's activations (one parameter), taps decay
    /// with the channel's rate, and the residual conv adds a second filter.
    #[test]
    fn filter_and_parameters_are_m2s() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = MonarchMixerConfig { residual_long_conv: true, ..Default::default() };
        let m = seeded(0, || MonarchMixer::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 32)).unwrap());
        let v = vs.variables();
        assert_eq!(v["filter_fn.freq"].size(), vec![1, 16]);
        assert_eq!(v["filter_fn.freq"].min().double_value(&[]), 10.0);
        assert!(v.contains_key("filter_fn2.bias") && v.contains_key("filter_fn2.implicit_filter.6.weight"));
        assert!(!v.contains_key("filter_fn.implicit_filter.6.bias"), "the last filter Linear has no bias");
        assert_eq!(m.filter.taps().size(), vec![8, 32]);
        assert_eq!(m.state_size(10), 3 * 8 * 2 + 2 * 8 * 10);
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (bad, key) in [
            (r#"{ name = "monarch_mixer", hyena_emb_dim = 4 }"#, "hyena_emb_dim"),
            (r#"{ name = "monarch_mixer", hyena_filter_order = 0 }"#, "hyena_filter_order"),
            (r#"{ name = "monarch_mixer", hyena_w = 0.0 }"#, "hyena_w"),
            (r#"{ name = "monarch_mixer", seq_mixing = "butterfly" }"#, "seq_mixing"),
            (r#"{ name = "monarch_mixer", bidirectional = true }"#, "bidirectional"),
        ] {
            let e = validate_error(bad);
            assert!(e.contains("model.mixer") && e.contains(key), "{bad}: {e}");
        }
    }
}
