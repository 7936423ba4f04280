//! A bank of complex diagonal modes in double precision (`gss`'s DSS kernel, `bigs`'s S4D
//! kernel): the kernel `K[l] = Re Σ_n c_n p_n^l` with the `O(rows·N·L)` Vandermonde sum, the
//! recurrence written out for references, and the f32 [`Modes`] for step forms. Double
//! precision because these kernels have many slowly decaying, fast-rotating modes (angles
//! `l·θ` in the hundreds of radians), where f32 phases lose about 1e-4.

use super::modal::Modes;
use tch::{Kind, Tensor};

/// A bank of complex diagonal modes in f64, `[H or 1, N]` each: `p = exp(log_mag + iθ)`,
/// coefficient `c`; kernel `K[l] = Re Σ_n c_n p_n^l`.
pub struct Modes64 {
    pub log_mag: Tensor,
    pub theta: Tensor,
    pub c_re: Tensor,
    pub c_im: Tensor,
}

impl Modes64 {
    /// ZOH-style coefficient `c = C (p − 1)/z` for poles `p = e^z`, `z = a + ib` (f64).
    pub fn zoh(a: &Tensor, b: &Tensor, c_re: &Tensor, c_im: &Tensor) -> Modes64 {
        let mag = a.exp();
        let (pr1, pi) = (&mag * b.cos() - 1.0, &mag * b.sin()); // p − 1
        let den = a * a + b * b;
        let (wr, wi) = ((&pr1 * a + &pi * b) / &den, (&pi * a - &pr1 * b) / &den); // (p − 1)/z
        Modes64 {
            log_mag: a.shallow_clone(),
            theta: b.shallow_clone(),
            c_re: c_re * &wr - c_im * &wi,
            c_im: c_re * &wi + c_im * &wr,
        }
    }

    /// `K [rows, l]` (f64).
    pub fn kernel(&self, l: i64) -> Tensor {
        let t = Tensor::arange(l, (Kind::Double, self.log_mag.device())).view([1, 1, l]);
        let mag = (self.log_mag.unsqueeze(-1) * &t).exp();
        let ang = self.theta.unsqueeze(-1) * &t;
        let v = mag * (self.c_re.unsqueeze(-1) * ang.cos() - self.c_im.unsqueeze(-1) * ang.sin());
        v.sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
    }

    /// As [`Modes`] (f32) for the step form, rows expanded to `h`.
    pub fn to_modes(&self, h: i64) -> Modes {
        let f = |t: &Tensor| t.to_kind(Kind::Float).expand([h, t.size()[1]], false);
        Modes { log_mag: f(&self.log_mag), theta: f(&self.theta), c_re: f(&self.c_re), c_im: f(&self.c_im) }
    }

    /// Reference: `s_t = p ⊙ s_{t−1} + x_t`, `y_t = Re Σ c s_t`, in f64 with explicit complex
    /// arithmetic, for `x: [B, L, H]` (rows broadcast over H). `[B, L, H]` f64.
    pub fn recurrence(&self, x: &Tensor) -> Tensor {
        let (b, l, h) = x.size3().unwrap();
        let n = self.log_mag.size()[1];
        let mag = self.log_mag.exp();
        let (pr, pi) = (&mag * self.theta.cos(), &mag * self.theta.sin());
        let x = x.to_kind(Kind::Double);
        let mut re = Tensor::zeros([b, h, n], (Kind::Double, x.device()));
        let mut im = re.zeros_like();
        let mut ys = vec![];
        for t in 0..l {
            let xt = x.select(1, t).unsqueeze(-1);
            let nre = &pr * &re - &pi * &im + xt;
            let nim = &pr * &im + &pi * &re;
            re = nre;
            im = nim;
            ys.push((&self.c_re * &re - &self.c_im * &im).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double));
        }
        Tensor::stack(&ys, 1)
    }
}
