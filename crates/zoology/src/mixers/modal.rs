//! Diagonal (modal) linear recurrences: a bank of complex modes ([`Modes`]) and the S4D
//! parametrisation that produces one ([`S4d`]). Used by `long_conv`, `h3`, `stripedhyena`
//! and `mega`.

use tch::{nn, Kind, Tensor};

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
