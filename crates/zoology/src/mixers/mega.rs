//! `mega`: Moving Average Equipped Gated Attention (Ma et al. 2023), single head, causal.
//!
//! The mixer is Mega's whole layer (`MovingAverageGatedAttention` with `prenorm=True`): it
//! normalises its own input, `X = LayerNorm(R)` (R = the un-normalised residual stream), and its
//! output is a gated residual on R, `R + u ⊙ (Ĥ − R)`. So it declares
//! [`Mixer::takes_raw_residual`]: the block hands it R (no norm1 in front) and adds what it
//! returns, `u ⊙ (Ĥ − R)`, to R once.
//!
//! Multi-dimensional damped EMA, `h = ndim` dimensions per channel (α, δ = σ(·), per channel
//! and dimension; β, γ learned):
//! ```text
//! s_t = α ⊙ β · x_t + (1 − α ⊙ δ) ⊙ s_{t−1}          s_t ∈ ℝ^{d×h}
//! EMA(X)_t = Σ_n γ_n s_{t,n} / √h                     ≡ causal conv with kernel Σ_n γ_n αβ_n (1−αδ_n)^j / √h
//! X′ = silu(EMA(X) + ω ⊙ X)
//! ```
//! Gated attention (single head, softmax, simple relative position bias b[t−s]):
//! ```text
//! u = σ(W_u X′)   Z = silu(W_z X′)   r = silu(W_r X′)   (one projection W_mx split into u, Z, r, hx)
//! Q = κ_q ⊙ Z + μ_q    K = κ_k ⊙ Z + μ_k    V = silu(W_v X)
//! A = softmax(Q Kᵀ / √z_dim + b + M)                  M masks s > t, and s in another chunk
//! Ĥ = silu(W_h X′ + U(r ⊙ A V))                      (W_h X′ is hx)
//! out = u ⊙ (Ĥ − R)                                   (the layer's output is R + out)
//! ```
//! `chunk_size = c > 0` restricts attention to chunks of c positions (chunk = ⌊t/c⌋), which is
//! linear in L; `chunk_size = 0` attends to the whole prefix. The EMA always runs over the
//! whole sequence. Defaults: h = 16 (LRA), z_dim = 64, h_dim = 2·d, no chunking; init as Mega
//! (α, δ ~ N(0, 0.2); β ~ N(±1, 0.02) alternating; γ, ω ~ N(0, 1); linears, U included,
//! N(0, 0.02) with zero biases; κ ~ N(0, 0.02), μ = 0; relative bias N(0, 0.02); the
//! LayerNorm's weight 1, bias 0, eps 1e-5). Mega's code names the EMA's parameters the other
//! way round (its `delta` multiplies β and its `alpha` damps): the same function. Only softmax attention (Mega's LM
//! choice) is provided; laplace/relu² and dropouts are not.
//!
//! FLOPs ([`crate::flops`] convention): per token `v_proj` `2·d·h_dim`, `mx_proj`
//! `2·d·(2d + z + h_dim)`, `h_proj` `2·h_dim·d`; per sequence the EMA `fft_conv(d, L)` and
//! attention over chunks of `c` (`c = L` unchunked) `2·c·(z + h_dim)·L_p`, `L_p = ⌈L/c⌉·c`
//! (quadratic unchunked, counted in full); per batch the EMA kernel `8·d·h·L` and its FFT.
//! Decode at context L: the projections, the EMA step `5·d·h` and attention over the `n(L)`
//! cached entries `2·n(L)·(z + h_dim)`. Prefill is the step form.
//!
//! Forms:
//! - training: EMA by FFT (zero-padded to 2L); attention on padded chunks `[B, ⌈L/c⌉, c, c]`
//!   (one chunk of L when unchunked), O(L·c·(z+h_dim));
//! - reference: the EMA recurrence above token by token, and one explicit softmax per position
//!   over the positions of its chunk up to t;
//! - step: EMA state `s` (`d·h`) plus a KV cache of `K` (z_dim) and `V` (h_dim) for the current
//!   chunk, emptied at chunk boundaries. After L tokens the cache holds `n(L) = L` (unchunked)
//!   or `n(L) = ((L−1) mod c) + 1` entries: state `d·h + (z_dim + h_dim)·n(L)` elements. This
//!   grows with L (bounded by c when chunked), so the mixer declares a non-constant state.

use super::common::bounds::{int_in, MAX_SIZE};
use super::common::chunking::ChunkLayout;
use super::common::conv::fft_causal_conv;
use super::common::layers::Linear;
use super::common::modal::Modes;
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MegaConfig {
    /// EMA dimensions h per channel.
    pub ndim: i64,
    /// Width of the shared query/key representation Z.
    pub z_dim: i64,
    /// Value width as a multiple of d_model (h_dim = h_mult·d).
    pub h_mult: i64,
    /// Attention chunk size c; 0 = attend to the whole prefix.
    pub chunk_size: i64,
}

impl Default for MegaConfig {
    fn default() -> Self {
        MegaConfig { ndim: 16, z_dim: 64, h_mult: 2, chunk_size: 0 }
    }
}

#[derive(Debug)]
pub struct Mega {
    // Mega's own pre-norm
    norm_w: Tensor,
    norm_b: Tensor,
    // EMA
    alpha: Tensor,
    delta: Tensor,
    beta: Tensor,
    gamma: Tensor,
    omega: Tensor,
    // attention
    v_proj: Linear,
    mx_proj: Linear,
    h_proj: Linear,
    qk_scale: Tensor,
    qk_shift: Tensor,
    rel_bias: Tensor,
    d: i64,
    z: i64,
    hd: i64,
    ndim: i64,
    chunk: Option<i64>,
    max_len: i64,
}

impl Mega {
    /// (αβ, 1 − αδ) as `[d, h]`.
    fn ema_coeffs(&self) -> (Tensor, Tensor) {
        let a = self.alpha.sigmoid();
        let dl = self.delta.sigmoid();
        (&a * &self.beta, 1.0 - a * dl)
    }
    fn gamma_scaled(&self) -> Tensor {
        &self.gamma / (self.ndim as f64).sqrt()
    }
    /// EMA kernel `[d, L]` as real modes (θ = 0).
    fn ema_kernel(&self, l: i64) -> Tensor {
        let (ab, q) = self.ema_coeffs();
        let modes = Modes {
            log_mag: q.log().clamp_min(-30.0),
            theta: q.zeros_like(),
            c_re: self.gamma_scaled() * ab,
            c_im: q.zeros_like(),
        };
        modes.kernel(l)
    }
    /// One EMA step in the paper's form: `s ← αβ x + (1 − αδ) s`, returns `Σ γ s / √h`.
    fn ema_step(&self, s: &mut Tensor, x: &Tensor) -> Tensor {
        let (ab, q) = self.ema_coeffs();
        let ns = ab * x.unsqueeze(-1) + q * &*s;
        let y = (&ns * self.gamma_scaled()).sum_dim_intlist([-1i64].as_slice(), false, x.kind());
        *s = ns;
        y
    }
    /// Everything before the attention weights: `(u, q, k, v, r, hx)` from `x` and `ema`.
    fn gates(&self, x: &Tensor, ema: &Tensor) -> [Tensor; 6] {
        let mx = (ema + x * &self.omega).silu();
        let base = self.mx_proj.forward(&mx);
        let parts = base.split_with_sizes([self.d, self.z + self.hd, self.d], -1);
        let u = parts[0].sigmoid();
        let zr = parts[1].silu().split_with_sizes([self.z, self.hd], -1);
        let z = &zr[0];
        let q = z * self.qk_scale.get(0) + self.qk_shift.get(0);
        let k = z * self.qk_scale.get(1) + self.qk_shift.get(1);
        let v = self.v_proj.forward(x).silu();
        [u, q, k, v, zr[1].shallow_clone(), parts[2].shallow_clone()]
    }
    /// Mega's pre-norm `X = LayerNorm(R)` (last dimension, eps 1e-5).
    fn norm(&self, r: &Tensor) -> Tensor {
        r.layer_norm([self.d], Some(&self.norm_w), Some(&self.norm_b), 1e-5, false)
    }
    /// The residual update `u ⊙ (silu(hx + U(r ⊙ AV)) − R)` on the un-normalised input `R`.
    fn output(&self, raw: &Tensor, u: &Tensor, r: &Tensor, hx: &Tensor, av: &Tensor) -> Tensor {
        let h = (hx + self.h_proj.forward(&(r * av))).silu();
        u * (h - raw)
    }
    fn scaling(&self) -> f64 {
        1.0 / (self.z as f64).sqrt()
    }
    fn check_len(&self, l: i64) {
        assert!(
            self.chunk.is_some() || l <= self.max_len,
            "mega relative position bias covers {} positions but the input has length {l}",
            self.max_len
        );
    }
}

impl Mixer for Mega {
    fn forward(&self, raw: &Tensor, _train: bool) -> Tensor {
        let l = raw.size()[1];
        self.check_len(l);
        let x = &self.norm(raw);
        let ema = fft_causal_conv(x, &self.ema_kernel(l).to_kind(x.kind()));
        let [u, q, k, v, r, hx] = self.gates(x, &ema);
        let lay = ChunkLayout::new(l, self.chunk.unwrap_or(l));
        let c = lay.c;
        let chunks = |t: &Tensor| lay.split(t, 1);
        let (qc, kc, vc) = (chunks(&q), chunks(&k), chunks(&v));
        // bias[i, j] = b[i − j] for j ≤ i within a chunk
        let idx = Tensor::arange(c, (Kind::Int64, x.device()));
        let off = (idx.unsqueeze(1) - idx.unsqueeze(0)).clamp_min(0);
        let bias = self.rel_bias.index_select(0, &off.view([-1])).view([c, c]);
        let scores = qc.matmul(&kc.transpose(-2, -1)) * self.scaling() + bias;
        let scores = scores.masked_fill(&super::common::layers::future_mask(c, x.device()), f64::NEG_INFINITY);
        let av = lay.merge(&scores.softmax(-1, scores.kind()).matmul(&vc), 1);
        self.output(raw, &u, &r, &hx, &av)
    }

    fn reference(&self, raw: &Tensor) -> Tensor {
        let (b, l, _) = raw.size3().unwrap();
        self.check_len(l);
        let x = &self.norm(raw);
        let mut s = Tensor::zeros([b, self.d, self.ndim], (x.kind(), x.device()));
        let ema = Tensor::stack(&(0..l).map(|t| self.ema_step(&mut s, &x.select(1, t))).collect::<Vec<_>>(), 1);
        let [u, q, k, v, r, hx] = self.gates(x, &ema);
        let mut outs = vec![];
        for t in 0..l {
            let start = match self.chunk {
                Some(c) => (t / c) * c,
                None => 0,
            };
            let n = t - start + 1;
            let ks = k.narrow(1, start, n);
            let vs = v.narrow(1, start, n);
            let offs: Vec<i64> = (start..=t).map(|s| t - s).collect();
            let bias = self.rel_bias.index_select(0, &Tensor::from_slice(&offs).to_device(x.device()));
            let sc =
                (q.narrow(1, t, 1) * &ks).sum_dim_intlist([-1i64].as_slice(), false, x.kind()) * self.scaling() + bias;
            let e = (&sc - sc.amax([-1i64].as_slice(), true)).exp();
            let w = &e / e.sum_dim_intlist([-1i64].as_slice(), true, x.kind());
            outs.push((w.unsqueeze(-1) * vs).sum_dim_intlist([1i64].as_slice(), false, x.kind()));
        }
        let av = Tensor::stack(&outs, 1);
        self.output(raw, &u, &r, &hx, &av)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.alpha.kind(), self.alpha.device());
        MixerState::new(vec![
            Tensor::zeros([batch, self.d, self.ndim], opts),
            Tensor::zeros([batch, 0, self.z], opts),
            Tensor::zeros([batch, 0, self.hd], opts),
        ])
    }

    fn step(&self, state: &mut MixerState, raw_t: &Tensor) -> Tensor {
        let x_t = &self.norm(raw_t);
        let mut s = state.tensors[0].shallow_clone();
        let ema = self.ema_step(&mut s, x_t);
        let [u, q, k, v, r, hx] = self.gates(x_t, &ema);
        let (mut kc, mut vc) = (state.tensors[1].shallow_clone(), state.tensors[2].shallow_clone());
        if self.chunk == Some(kc.size()[1]) {
            // chunk boundary: the new token starts a fresh chunk
            kc = kc.narrow(1, 0, 0);
            vc = vc.narrow(1, 0, 0);
        }
        let kc = Tensor::cat(&[kc, k.unsqueeze(1)], 1);
        let vc = Tensor::cat(&[vc, v.unsqueeze(1)], 1);
        let n = kc.size()[1];
        self.check_len(n);
        let offs = Tensor::arange(n, (Kind::Int64, x_t.device())).flip([0]); // t − s for cache slot s
        let bias = self.rel_bias.index_select(0, &offs);
        let sc = (q.unsqueeze(1) * &kc).sum_dim_intlist([-1i64].as_slice(), false, x_t.kind()) * self.scaling() + bias;
        let w = sc.softmax(-1, x_t.kind());
        let av = (w.unsqueeze(-1) * &vc).sum_dim_intlist([1i64].as_slice(), false, x_t.kind());
        state.tensors = vec![s, kc, vc];
        self.output(raw_t, &u, &r, &hx, &av)
    }

    fn takes_raw_residual(&self) -> bool {
        true
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, modal_kernel, padded, MixerFlops};
        let (d, l) = (self.d, seq_len as f64);
        let tok = self.v_proj.flops() + self.mx_proj.flops() + self.h_proj.flops();
        let zh = (self.z + self.hd) as f64;
        let c = self.chunk.unwrap_or(seq_len);
        let fwd = l * tok + fft_conv(d, seq_len) + 2.0 * c as f64 * zh * padded(seq_len, c) as f64;
        let per_batch = modal_kernel(d, self.ndim, seq_len) + fft_filter(d, seq_len);
        let ema = 5.0 * (d * self.ndim) as f64;
        let cached = |t: i64| match self.chunk {
            Some(c) => (t - 1) % c + 1,
            None => t,
        };
        MixerFlops::stepwise(fwd, per_batch, seq_len, |t| tok + ema + 2.0 * cached(t) as f64 * zh)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        let cached = match self.chunk {
            _ if seq_len == 0 => 0,
            Some(c) => (seq_len - 1) % c + 1,
            None => seq_len,
        };
        self.d * self.ndim + (self.z + self.hd) * cached
    }
}

impl MixerKind for Mega {
    type Config = MegaConfig;
    const NAME: &'static str = "mega";
    const ABOUT: &'static str =
        "Mega: multi-dimensional damped EMA + single-head gated softmax attention, optionally chunked";
    const STATE_FORMULA: &'static str =
        "d·h + (z_dim + h_dim)·n, n = L (unchunked) or ((L−1) mod c)+1 (chunked KV cache)";
    const CONSTANT_STATE: bool = false;

    /// Parameters: the norm, the EMA's (α, δ, β, γ per channel and dimension, ω), the v, mx and
    /// h projections, the q/k scale and shift, and the relative position bias.
    fn memory(c: &MegaConfig, d: i64, ctx: &BuildCtx, l: i64) -> MixerMemory {
        let (h, z, hd) = (c.ndim, c.z_dim, c.h_mult * d);
        let bias_len = if c.chunk_size > 0 { c.chunk_size } else { ctx.max_seq_len };
        let p = (2 * d + 4 * d * h + d) as f64
            + linear_params(d, hd, true)
            + linear_params(d, 2 * d + z + hd, true)
            + linear_params(hd, d, true)
            + (4 * z + bias_len) as f64;
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &MegaConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "ndim", c.ndim, 1, 1024, "16")?;
        int_in(field, "z_dim", c.z_dim, 1, MAX_SIZE, "64")?;
        int_in(field, "h_mult", c.h_mult, 1, 64, "2")?;
        int_in(field, "chunk_size", c.chunk_size, 0, MAX_SIZE, "0 (no chunking) or 128")?;
        if c.chunk_size == 0 && !(1..=MAX_SIZE).contains(&ctx.max_seq_len) {
            return Err(config_err(
                format!("{field}.chunk_size"),
                format!("unchunked mega needs the longest sequence length in [1, {MAX_SIZE}] to size its position bias (got {})", ctx.max_seq_len),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &MegaConfig, ctx: &BuildCtx) -> Result<Self> {
        let h = c.ndim;
        let sign = Tensor::from_slice(&(0..h).map(|i| if i % 2 == 0 { 1.0f32 } else { -1.0 }).collect::<Vec<_>>())
            .to_device(p.device());
        let beta_init = sign.unsqueeze(0).repeat([d, 1]) + Tensor::randn([d, h], (Kind::Float, p.device())) * 0.02;
        let hd = c.h_mult * d;
        let chunk = (c.chunk_size > 0).then_some(c.chunk_size);
        let bias_len = chunk.unwrap_or(ctx.max_seq_len);
        Ok(Mega {
            norm_w: p.var("norm_weight", &[d], nn::Init::Const(1.0)),
            norm_b: p.var("norm_bias", &[d], nn::Init::Const(0.0)),
            alpha: p.var("ema_alpha", &[d, h], nn::Init::Randn { mean: 0.0, stdev: 0.2 }),
            delta: p.var("ema_delta", &[d, h], nn::Init::Randn { mean: 0.0, stdev: 0.2 }),
            beta: p.var_copy("ema_beta", &beta_init),
            gamma: p.var("ema_gamma", &[d, h], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            omega: p.var("ema_omega", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            v_proj: Linear::new(&p / "v_proj", d, hd, true, ctx.init_std),
            mx_proj: Linear::new(&p / "mx_proj", d, 2 * d + c.z_dim + hd, true, ctx.init_std),
            h_proj: Linear::new(&p / "h_proj", hd, d, true, ctx.init_std),
            qk_scale: p.var("qk_gamma", &[2, c.z_dim], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            qk_shift: p.var("qk_beta", &[2, c.z_dim], nn::Init::Const(0.0)),
            rel_bias: p.var("rel_pos_bias", &[bias_len], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            d,
            z: c.z_dim,
            hd,
            ndim: h,
            chunk,
            max_len: ctx.max_seq_len,
        })
    }

    fn suite_variants() -> Vec<MegaConfig> {
        vec![
            MegaConfig::default(),
            MegaConfig { ndim: 2, z_dim: 8, h_mult: 1, chunk_size: 5 },
            MegaConfig { ndim: 4, z_dim: 8, h_mult: 2, chunk_size: 16 },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{seeded, validate_error};
    use super::*;
    use tch::Device;

    fn build(c: &MegaConfig, d: i64, l: i64) -> Mega {
        seeded(8, || Mega::build(nn::VarStore::new(Device::Cpu).root(), d, c, &BuildCtx::new(0, 2, l)).unwrap())
    }

    /// The EMA kernel in closed form for known parameters, one channel, h = 2 (paper naming:
    /// α multiplies β, δ damps): σ(α) = (1/2, 3/4), σ(δ) = (1/2, 1/4), β = (1, −1), γ = (2, 1):
    /// `K[j] = (2·½·1·(1 − ¼)^j + 1·¾·(−1)·(1 − 3/16)^j)/√2 = (0.75^j − 0.75·0.8125^j)/√2`.
    /// Checked for the FFT form's kernel and for the impulse response of the step form.
    #[test]
    fn ema_coefficients_match_the_closed_form() {
        let m = build(&MegaConfig { ndim: 2, z_dim: 4, h_mult: 1, chunk_size: 0 }, 1, 12);
        tch::no_grad(|| {
            let set = |t: &Tensor, v: &[f32]| {
                let _ = t.shallow_clone().copy_(&Tensor::from_slice(v).view(t.size().as_slice()));
            };
            set(&m.alpha, &[0.0, (3.0f32).ln()]);
            set(&m.delta, &[0.0, -(3.0f32).ln()]);
            set(&m.beta, &[1.0, -1.0]);
            set(&m.gamma, &[2.0, 1.0]);
        });
        let want: Vec<f64> = (0..12).map(|j| (0.75f64.powi(j) - 0.75 * 0.8125f64.powi(j)) / 2f64.sqrt()).collect();
        let kernel = Vec::<f32>::try_from(tch::no_grad(|| m.ema_kernel(12)).flatten(0, -1)).unwrap();
        let mut s = Tensor::zeros([1, 1, 2], (Kind::Float, Device::Cpu));
        let impulse: Vec<f64> = (0..12)
            .map(|j| {
                let x = Tensor::from_slice(&[if j == 0 { 1.0f32 } else { 0.0 }]).view([1, 1]);
                tch::no_grad(|| m.ema_step(&mut s, &x)).double_value(&[0, 0])
            })
            .collect();
        for j in 0..12 {
            assert!(
                (kernel[j] as f64 - want[j]).abs() < 1e-6,
                "FFT kernel K[{j}] = {}, closed form {}",
                kernel[j],
                want[j]
            );
            assert!(
                (impulse[j] - want[j]).abs() < 1e-6,
                "step impulse response [{j}] = {}, closed form {}",
                impulse[j],
                want[j]
            );
        }
    }

    /// Mega's layer is a gated residual on its un-normalised input: `R + out(R) = (1 − u) R + u Ĥ`
    /// where u and Ĥ depend on R only through LayerNorm(R). Shifting every position of R by a
    /// constant b (LayerNorm(R + b) = LayerNorm(R)) must therefore change `R + out(R)` by exactly
    /// `(1 − u) b` with the same `1 − u ∈ (0, 1)` for every b. A double residual (the old block:
    /// `R + LN(R) + u(Ĥ − LN(R))`) changes it by exactly b; a gate on the normalised input by 0.
    #[test]
    fn layer_is_a_gated_residual_on_the_raw_input() {
        let m = build(&MegaConfig { ndim: 4, z_dim: 8, h_mult: 2, chunk_size: 5 }, 8, 16);
        assert!(m.takes_raw_residual());
        let r = seeded(1, || Tensor::randn([2, 11, 8], (Kind::Float, Device::Cpu)) * 2.0);
        let layer = |x: &Tensor| tch::no_grad(|| x + m.forward(x, false));
        let base = layer(&r);
        let one_minus_u = |b: f64| (layer(&(&r + b)) - &base) / b;
        let (g1, g2) = (one_minus_u(3.0), one_minus_u(-2.0));
        let (lo, hi) = (g1.min().double_value(&[]), g1.max().double_value(&[]));
        assert!(lo > 0.0 && hi < 1.0, "1 − u out of (0, 1): [{lo}, {hi}]");
        let spread = (&g1 - &g2).abs().max().double_value(&[]);
        assert!(spread < 2e-3, "1 − u differs between shifts by {spread}: not a gated residual on R");
        // and the gate is not trivially 0 or 1 everywhere
        assert!(hi - lo > 0.01, "1 − u is constant ({lo}..{hi})");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "mega", chunk_size = -2 }"#);
        assert!(e.contains("model.mixer.chunk_size"), "{e}");
        let e = validate_error(r#"{ name = "mega", ndim = 0 }"#);
        assert!(e.contains("model.mixer.ndim"), "{e}");
        let e = validate_error(r#"{ name = "mega", z_dim = 0 }"#);
        assert!(e.contains("model.mixer.z_dim"), "{e}");
        let e = validate_error(r#"{ name = "mega", h_mult = 1000 }"#);
        assert!(e.contains("model.mixer.h_mult"), "{e}");
    }
}
