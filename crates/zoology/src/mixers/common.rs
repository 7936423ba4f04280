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

/// A bank of `H` channels with `M` complex modes each (all `[H, M]`, f32):
/// `p = exp(log_mag + iθ)`, coefficient `c = c_re + i c_im`, impulse response
/// `h[t] = Σ_m Re(c_m p_m^t)` and the equivalent recurrence
/// `s_t = p ⊙ s_{t−1} + x_t`, `y_t = Σ_m Re(c_m s_{t,m})`. Used by the S4D-type diagonal
/// SSMs (`long_conv`, `h3`), StripedHyena's modal filter and Mega's damped EMA.
/// Complex numbers are kept as (re, im) pairs of real tensors, so the state is `2·H·M` reals.
#[derive(Debug)]
pub struct Modes {
    pub log_mag: Tensor,
    pub theta: Tensor,
    pub c_re: Tensor,
    pub c_im: Tensor,
}

impl Modes {
    /// `h[t] = Σ_m exp(t·log_mag)(c_re cos tθ − c_im sin tθ)` for `t < l`: `[H, l]`.
    pub fn kernel(&self, l: i64) -> Tensor {
        let t = Tensor::arange(l, (Kind::Float, self.log_mag.device())).view([1, 1, l]);
        let mag = (self.log_mag.unsqueeze(-1) * &t).exp();
        let ang = self.theta.unsqueeze(-1) * &t;
        let v = mag * (self.c_re.unsqueeze(-1) * ang.cos() - self.c_im.unsqueeze(-1) * ang.sin());
        v.sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
    }

    /// `p` as (re, im), `[H, M]`.
    fn poles(&self) -> (Tensor, Tensor) {
        let mag = self.log_mag.exp();
        (&mag * self.theta.cos(), mag * self.theta.sin())
    }

    /// Zero state `[lead…, H, M]` (re, im).
    pub fn zero_state(&self, lead: &[i64]) -> (Tensor, Tensor) {
        let mut shape = lead.to_vec();
        shape.extend(self.log_mag.size());
        let z = Tensor::zeros(&shape[..], (Kind::Float, self.log_mag.device()));
        (z.copy(), z)
    }

    /// One recurrence step: `x: [lead…, H]`, state `[lead…, H, M]`; returns `y: [lead…, H]`.
    pub fn step(&self, re: &mut Tensor, im: &mut Tensor, x: &Tensor) -> Tensor {
        let (pr, pi) = self.poles();
        let x = x.to_kind(Kind::Float).unsqueeze(-1);
        let nre = &pr * &*re - &pi * &*im + x;
        let nim = &pr * &*im + &pi * &*re;
        let y = (&self.c_re * &nre - &self.c_im * &nim).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        *re = nre;
        *im = nim;
        y
    }

    /// Reference: the recurrence run token by token over `u: [B, L, lead…, H]` (dim 1 is time).
    pub fn scan_reference(&self, u: &Tensor) -> Tensor {
        let sz = u.size();
        let mut lead = vec![sz[0]];
        lead.extend(&sz[2..sz.len() - 1]);
        let (mut re, mut im) = self.zero_state(&lead);
        let ys: Vec<Tensor> = (0..sz[1]).map(|t| self.step(&mut re, &mut im, &u.select(1, t))).collect();
        Tensor::stack(&ys, 1).to_kind(u.kind())
    }

    /// The state after `u: [B, L, H]` in closed form, `s = Σ_j p^{L−1−j} u_j` (a Vandermonde
    /// contraction, no loop): `([B, H, M], [B, H, M])`.
    pub fn state_after(&self, u: &Tensor) -> (Tensor, Tensor) {
        let l = u.size()[1];
        let back = Tensor::arange(l, (Kind::Float, u.device())).flip([0]).view([1, 1, l]); // L−1−j
        let mag = (self.log_mag.unsqueeze(-1) * &back).exp();
        let ang = self.theta.unsqueeze(-1) * &back;
        let (vr, vi) = (&mag * ang.cos(), mag * ang.sin()); // [H, M, L]
        let u = u.to_kind(Kind::Float);
        let re = Tensor::einsum("blh,hml->bhm", &[&u, &vr], None::<&[i64]>);
        let im = Tensor::einsum("blh,hml->bhm", &[&u, &vi], None::<&[i64]>);
        (re, im)
    }
}

/// S4D diagonal SSM parameters for `H` channels with `N/2` complex-conjugate mode pairs
/// (S4D-Lin init: `A_n = −½ + iπn`, `B = 1`, `C ~ CN(0, 1)`, `Δ` log-uniform in
/// [1e-3, 1e-1]; all f32). Zero-order hold gives the kernel
/// `K[t] = 2·Re Σ_n C_n (exp(ΔA_n) − 1)/A_n · exp(ΔA_n)^t`, i.e. [`Modes`] with
/// `p = exp(ΔA)` and `c = 2C(p − 1)/A`. The state is `N/2` complex = `N` reals per channel.
#[derive(Debug)]
pub struct S4d {
    pub log_dt: Tensor,
    pub log_a_re: Tensor,
    pub a_im: Tensor,
    pub c_re: Tensor,
    pub c_im: Tensor,
}

impl S4d {
    /// `n_state` = N (even): `N/2` complex modes per channel.
    pub fn new(p: nn::Path, h: i64, n_state: i64) -> Self {
        let m = n_state / 2;
        let dev = p.device();
        let log_dt = p.var("log_dt", &[h], nn::Init::Uniform { lo: (1e-3f64).ln(), up: (1e-1f64).ln() });
        let log_a_re = p.var("log_a_re", &[h, m], nn::Init::Const((0.5f64).ln()));
        let im = (Tensor::arange(m, (Kind::Float, dev)) * std::f64::consts::PI).unsqueeze(0).repeat([h, 1]);
        let a_im = p.var_copy("a_im", &im);
        let s = (0.5f64).sqrt();
        let c_re = p.var("c_re", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        let c_im = p.var("c_im", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        S4d { log_dt, log_a_re, a_im, c_re, c_im }
    }

    /// The discretised modes (computed in f32).
    pub fn modes(&self) -> Modes {
        let dt = self.log_dt.to_kind(Kind::Float).exp().unsqueeze(1);
        let ar = -self.log_a_re.to_kind(Kind::Float).exp();
        let ai = self.a_im.to_kind(Kind::Float);
        let log_mag = &dt * &ar;
        let theta = &dt * &ai;
        let mag = log_mag.exp();
        let (pr1, pi) = (&mag * theta.cos() - 1.0, &mag * theta.sin()); // p − 1
        let den = &ar * &ar + &ai * &ai;
        let q_re = (&pr1 * &ar + &pi * &ai) / &den;
        let q_im = (&pi * &ar - &pr1 * &ai) / &den;
        let (cr, ci) = (self.c_re.to_kind(Kind::Float), self.c_im.to_kind(Kind::Float));
        let c_re = (&cr * &q_re - &ci * &q_im) * 2.0;
        let c_im = (&cr * &q_im + &ci * &q_re) * 2.0;
        Modes { log_mag, theta, c_re, c_im }
    }
}

/// Test helper: validates the mixer table written as inline TOML (e.g.
/// `{ name = "h3", head_dim = 3 }`) for `d_model = 16`, `max_seq_len = 48` and returns the
/// error text (panics if the table is accepted).
#[cfg(test)]
pub fn validate_error(inline: &str) -> String {
    let t: toml::Table = toml::from_str(&format!("m = {inline}")).unwrap();
    let m = t["m"].as_table().unwrap().clone();
    match super::validate_table(&m, 16, &super::BuildCtx::new(0, 2, 48), "model.mixer") {
        Ok(()) => panic!("{inline} was accepted"),
        Err(e) => e.to_string(),
    }
}
