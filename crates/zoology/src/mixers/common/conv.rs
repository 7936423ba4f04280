//! Causal depthwise convolutions shared by mixers: short FIR filters (parallel, explicit-tap
//! reference, and the step form) and long filters (FFT, dense-Toeplitz reference, and a step
//! form over a cache of every input).
//!
//! One FIR state convention for every mixer: the step form of a `K`-tap filter carries the
//! previous `K−1` inputs ([`fir_step`]); the `K`-th value is never needed again.

use tch::Tensor;

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

/// Step of a depthwise causal FIR with `K` taps (`w: [C, K]`, same tap order as
/// [`short_conv`]) that keeps only what the next step needs: `window: [B, K−1, C]`, the
/// previous `K−1` inputs (oldest first). The state is therefore `(K−1)·C` elements.
pub fn fir_step(window: &mut Tensor, x_t: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let k = w.size()[1];
    let full = Tensor::cat(&[&*window, &x_t.unsqueeze(1)], 1); // [B, K, C]
    let y = (&full * w.transpose(0, 1).unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, full.kind());
    *window = full.narrow(1, 1, k - 1);
    match bias {
        Some(bb) => y + bb,
        None => y,
    }
}

/// The [`fir_step`] window after a prompt `x: [B, L, C]`: its last `K−1` inputs, zero-padded
/// at the front when `L < K−1`.
pub fn fir_window_after(x: &Tensor, k: i64) -> Tensor {
    let (b, l, c) = x.size3().unwrap();
    let keep = k - 1;
    if l >= keep {
        x.narrow(1, l - keep, keep)
    } else {
        Tensor::cat(&[Tensor::zeros([b, keep - l, c], (x.kind(), x.device())), x.shallow_clone()], 1)
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

// ---- Implicit long filters (base_conv, hyena): positional features and MLP init ----

/// Init of an implicit filter's MLP (shared by `base_conv` and `hyena`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterInit {
    /// Zoology's `_init_weights`: every Linear N(0, 0.02), zero bias.
    Normal,
    /// Scaled by fan-in (weights N(0, 1/√fan_in), zero bias): taps of order 1 at init.
    FanIn,
}

impl FilterInit {
    /// Weight std of a filter Linear with `fan_in` inputs.
    pub fn std(self, fan_in: i64) -> f64 {
        match self {
            FilterInit::Normal => 0.02,
            FilterInit::FanIn => 1.0 / (fan_in as f64).sqrt(),
        }
    }
}

/// Zoology's `PositionalEmbedding` for implicit filters over `l` positions, `[l, emb_dim]`:
/// `[t/(l−1), Re e^{−i2πf t/l}, Im e^{−i2πf t/l}]` with `B = (emb_dim − 1)/2` bands
/// `f = linspace(1e-4, B − 1, B)` (`linspace(0, 1, 1) = [0]` when `l = 1`).
pub fn positional_features(l: i64, emb_dim: i64, dev: tch::Device) -> Tensor {
    let opts = (tch::Kind::Float, dev);
    let bands = (emb_dim - 1) / 2;
    let t01 = Tensor::linspace(0.0, 1.0, l, opts).unsqueeze(1); // [L, 1]
    let t = Tensor::arange(l, opts).unsqueeze(1);
    let f = Tensor::linspace(1e-4, (bands - 1) as f64, bands, opts).unsqueeze(0);
    let ang = t * f * (2.0 * std::f64::consts::PI / l as f64); // [L, B]
    Tensor::cat(&[t01, ang.cos(), -ang.sin()], 1)
}
