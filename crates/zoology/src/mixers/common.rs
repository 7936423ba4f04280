//! Building blocks shared by mixers: initialised linear layers, causal convolutions (direct,
//! FFT and dense-Toeplitz reference), and small tensor utilities. Put a helper here the second
//! time it is needed, not in a mixer file.

use tch::{nn, Kind, Tensor};

/// Linear layer `y = x Wᵀ + b` with weights N(0, std) and zero bias (Zoology's init).
#[derive(Debug)]
pub struct Linear {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
}

impl Linear {
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, bias: bool, std: f64) -> Self {
        let ws = p.var("weight", &[d_out, d_in], nn::Init::Randn { mean: 0.0, stdev: std });
        let bs = bias.then(|| p.var("bias", &[d_out], nn::Init::Const(0.0)));
        Linear { ws, bs }
    }
    /// Works on any leading shape `[..., d_in]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.ws, self.bs.as_ref())
    }
}

/// Depthwise causal convolution with a short kernel `w: [D, K]` (tap `K−1` multiplies the
/// current input, tap `K−1−j` the input `j` steps back) and optional bias `[D]`.
/// `x: [B, L, D] → [B, L, D]`.
pub fn short_conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (_, l, d) = x.size3().unwrap();
    let k = w.size()[1];
    let xt = x.transpose(1, 2); // [B, D, L]
    let y = xt.conv1d(&w.view([d, 1, k]), bias, [1], [k - 1], [1], d);
    y.narrow(2, 0, l).transpose(1, 2)
}

/// Reference for [`short_conv`]: explicit sum over taps.
pub fn short_conv_reference(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (b, l, d) = x.size3().unwrap();
    let k = w.size()[1];
    let mut outs = Vec::with_capacity(l as usize);
    for t in 0..l {
        let mut acc = Tensor::zeros([b, d], (x.kind(), x.device()));
        for j in 0..k {
            // tap k-1-j sees x[t-j]
            if t - j >= 0 {
                acc = acc + x.select(1, t - j) * w.select(1, k - 1 - j);
            }
        }
        if let Some(bb) = bias {
            acc = acc + bb;
        }
        outs.push(acc);
    }
    Tensor::stack(&outs, 1)
}

/// Step form of [`short_conv`]: `window: [B, K, D]` holds the last K inputs (oldest first);
/// it is shifted and `x_t` appended, then the taps are applied.
pub fn short_conv_step(window: &mut Tensor, x_t: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let k = w.size()[1];
    let shifted = Tensor::cat(&[window.narrow(1, 1, k - 1), x_t.unsqueeze(1)], 1);
    *window = shifted;
    // y = Σ_j window[:, j] * w[:, j]
    let y = (&*window * w.transpose(0, 1).unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, window.kind());
    match bias {
        Some(bb) => y + bb,
        None => y,
    }
}

/// Causal long convolution by FFT, zero-padded to 2L so that nothing wraps around:
/// `y[t] = Σ_{s≤t} h[t−s] · u[s]`, per channel. `u: [B, L, D]`, `h: [D, L']` with L' ≥ L
/// (only the first L taps are used). O(L log L).
pub fn fft_causal_conv(u: &Tensor, h: &Tensor) -> Tensor {
    let (_, l, _) = u.size3().unwrap();
    let n = 2 * l;
    let h = h.narrow(1, 0, l);
    let uf = u.transpose(1, 2).fft_rfft(Some(n), -1, "backward"); // [B, D, n/2+1]
    let hf = h.fft_rfft(Some(n), -1, "backward"); // [D, n/2+1]
    let y = (uf * hf).fft_irfft(Some(n), -1, "backward"); // [B, D, n]
    y.narrow(2, 0, l).transpose(1, 2)
}

/// Reference for [`fft_causal_conv`]: the dense lower-triangular Toeplitz matrix
/// `T[t, s] = h[t−s]` applied per channel.
pub fn toeplitz_causal_conv(u: &Tensor, h: &Tensor) -> Tensor {
    let (_, l, d) = u.size3().unwrap();
    let h = h.narrow(1, 0, l); // [D, L]
    let mut rows = Vec::with_capacity(l as usize);
    for t in 0..l {
        // row t: [D, L] with entries h[:, t-s] for s ≤ t, else 0
        let row = Tensor::zeros([d, l], (u.kind(), u.device()));
        for s in 0..=t {
            let _ = row.narrow(1, s, 1).copy_(&h.narrow(1, t - s, 1));
        }
        rows.push(row);
    }
    let toeplitz = Tensor::stack(&rows, 1); // [D, L(t), L(s)]
    // y[b, t, d] = Σ_s T[d, t, s] u[b, s, d]
    Tensor::einsum("dts,bsd->btd", &[toeplitz, u.shallow_clone()], None::<&[i64]>)
}

/// Step form of a causal long convolution with a cached input window: `cache: [B, t, D]`
/// holds all inputs so far (state grows as D·L). Returns `y_t = Σ_s h[t−s] u[s]`.
pub fn long_conv_step(cache: &mut Tensor, x_t: &Tensor, h: &Tensor) -> Tensor {
    let new = if cache.size()[1] == 0 { x_t.unsqueeze(1) } else { Tensor::cat(&[&*cache, &x_t.unsqueeze(1)], 1) };
    *cache = new;
    let t = cache.size()[1];
    // taps h[t-1-s] for s = 0..t  → reversed first t taps
    let taps = h.narrow(1, 0, t).flip([1]); // [D, t]: taps[:, s] = h[t-1-s]
    (&*cache * taps.transpose(0, 1).unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, cache.kind())
}

/// Relative error ‖a − b‖ / max(‖b‖, 1e-12), as f64.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).to_kind(Kind::Double).norm().double_value(&[]);
    let base = b.to_kind(Kind::Double).norm().double_value(&[]);
    diff / base.max(1e-12)
}

/// Causal mask `[L, L]` of booleans, true where attention is *not* allowed (s > t).
pub fn future_mask(l: i64, device: tch::Device) -> Tensor {
    Tensor::ones([l, l], (Kind::Bool, device)).triu(1)
}

/// Token shift (RWKV): `x_{t−1}` at position t, zeros at t = 0. `x: [B, L, D] → [B, L, D]`.
pub fn token_shift(x: &Tensor) -> Tensor {
    let (b, l, d) = x.size3().unwrap();
    let zero = Tensor::zeros([b, 1, d], (x.kind(), x.device()));
    Tensor::cat(&[zero, x.narrow(1, 0, l - 1)], 1)
}

/// RWKV token-shift interpolation `μ ⊙ x + (1 − μ) ⊙ x_prev` (any shape broadcasting with `μ`).
pub fn time_mix(x: &Tensor, x_prev: &Tensor, mu: &Tensor) -> Tensor {
    x * mu + x_prev * (1.0 - mu)
}

/// Shifts `t` by `off` positions along `dim` (towards higher indices), filling with `fill`.
fn shift_along(t: &Tensor, dim: i64, off: i64, fill: f64) -> Tensor {
    let nd = t.dim() as i64;
    let n = t.size()[dim as usize];
    let mut pads = vec![0i64; (2 * (nd - dim)) as usize];
    pads[(2 * (nd - 1 - dim)) as usize] = off;
    t.narrow(dim, 0, n - off).pad(pads.as_slice(), "constant", Some(fill))
}

/// Inclusive scan of the linear recurrence `h_r = p_r ⊙ h_{r−1} + b_r` (h_{−1} = 0) along `dim`,
/// by log-depth doubling (Hillis–Steele), for decays `p ∈ [0, 1]` (e.g. `p = exp(Δ·A)` with
/// `Δ·A ≤ 0`). The pair (p, b) stands for the map `h ↦ p h + b`; combining a segment with the
/// one before it gives `(p p′, b + p b′)`. Every factor is ≤ 1, so nothing overflows (products
/// only underflow towards 0, which is the right limit). Returns the cumulative decay
/// `P_r = Π_{s≤r} p_s` and `h_r`. O(n log n) work in ⌈log₂ n⌉ autodiff steps.
pub fn linear_scan(p: &Tensor, b: &Tensor, dim: i64) -> (Tensor, Tensor) {
    let n = p.size()[dim as usize];
    let (mut p, mut b) = (p.shallow_clone(), b.shallow_clone());
    let mut off = 1;
    while off < n {
        b = &b + &p * shift_along(&b, dim, off, 0.0);
        p = &p * shift_along(&p, dim, off, 1.0);
        off *= 2;
    }
    (p, b)
}
