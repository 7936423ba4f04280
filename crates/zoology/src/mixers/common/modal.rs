//! Diagonal (modal) linear recurrences: a bank of complex modes ([`Modes`]) and the S4D
//! parametrisation that produces one ([`S4d`]). Used by `long_conv`, `h3`, `stripedhyena`
//! and `mega`.

use serde::{Deserialize, Serialize};
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

/// How a continuous diagonal SSM `x' = A x + B u` is discretised with step `Δ`.
/// `Zoh` (zero-order hold, S4D's `s4d.py`): `p = exp(ΔA)`, input weight `(exp(ΔA) − 1)/A`.
/// `Bilinear` (Tustin; the default of H3's and Zoology's `SSKernelDiag`, `disc='bilinear'`):
/// `p = (1 + ΔA/2)/(1 − ΔA/2)`, input weight `Δ/(1 − ΔA/2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discretization {
    Zoh,
    Bilinear,
}

/// S4D diagonal SSM parameters for `H` channels with `N/2` complex-conjugate mode pairs
/// (S4D-Lin init: `A_n = −½ + iπn`, `B = 1`, `C ~ CN(0, 1)`, `Δ` log-uniform in
/// [1e-3, 1e-1]; all f32). `B` is a constant 1 (S4D's `s4d.py`), or a trained complex
/// parameter starting at 1 ([`S4d::new`]'s `trained_b`; H3's / Zoology's `SSKernelDiag`
/// registers it), which only enters as the product `C·B`. The kernel is
/// `K[t] = 2·Re Σ_n C_n B_n w_n p_n^t`, i.e. [`Modes`] with pole `p` and coefficient
/// `c = 2·C·B·w`, where `(p, w)` come from the [`Discretization`]:
/// ZOH `p = exp(ΔA)`, `w = (p − 1)/A`; bilinear `p = (1 + ΔA/2)/(1 − ΔA/2)`,
/// `w = Δ/(1 − ΔA/2)`. The state is `N/2` complex = `N` reals per channel.
#[derive(Debug)]
pub struct S4d {
    pub log_dt: Tensor,
    pub log_a_re: Tensor,
    pub a_im: Tensor,
    pub c_re: Tensor,
    pub c_im: Tensor,
    /// Trained `B` as (re, im), `[H, N/2]`; `None` = the constant 1.
    pub b: Option<(Tensor, Tensor)>,
    pub disc: Discretization,
}

impl S4d {
    /// Parameters of [`S4d::new`]`(_, h, n_state, _, trained_b)`: log Δ per channel, and per
    /// channel and mode (m = n_state / 2) log(−Re A), Im A, C (re, im), and B (re, im) when trained.
    pub fn params(h: i64, n_state: i64, trained_b: bool) -> f64 {
        let m = n_state / 2;
        (h + 4 * h * m + if trained_b { 2 * h * m } else { 0 }) as f64
    }
    /// `n_state` = N (even): `N/2` complex modes per channel.
    pub fn new(p: nn::Path, h: i64, n_state: i64, disc: Discretization, trained_b: bool) -> Self {
        let m = n_state / 2;
        let dev = p.device();
        let log_dt = p.var("log_dt", &[h], nn::Init::Uniform { lo: (1e-3f64).ln(), up: (1e-1f64).ln() });
        let log_a_re = p.var("log_a_re", &[h, m], nn::Init::Const((0.5f64).ln()));
        let im = (Tensor::arange(m, (Kind::Float, dev)) * std::f64::consts::PI).unsqueeze(0).repeat([h, 1]);
        let a_im = p.var_copy("a_im", &im);
        let s = (0.5f64).sqrt();
        let c_re = p.var("c_re", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        let c_im = p.var("c_im", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        let b = trained_b
            .then(|| (p.var("b_re", &[h, m], nn::Init::Const(1.0)), p.var("b_im", &[h, m], nn::Init::Const(0.0))));
        S4d { log_dt, log_a_re, a_im, c_re, c_im, b, disc }
    }

    /// The discretised modes (computed in f32).
    pub fn modes(&self) -> Modes {
        let dt = self.log_dt.to_kind(Kind::Float).exp().unsqueeze(1);
        let ar = -self.log_a_re.to_kind(Kind::Float).exp();
        let ai = self.a_im.to_kind(Kind::Float);
        let (zr, zi) = (&dt * &ar, &dt * &ai); // ΔA
                                               // (log|p|, arg p) and the input weight w = (w_re, w_im)
        let (log_mag, theta, w_re, w_im) = match self.disc {
            Discretization::Zoh => {
                let mag = zr.exp();
                let (pr1, pi) = (&mag * zi.cos() - 1.0, &mag * zi.sin()); // p − 1
                let den = &ar * &ar + &ai * &ai;
                // (p − 1)/A
                let w_re = (&pr1 * &ar + &pi * &ai) / &den;
                let w_im = (&pi * &ar - &pr1 * &ai) / &den;
                (zr, zi, w_re, w_im)
            }
            Discretization::Bilinear => {
                // p = (1 + z/2)/(1 − z/2), w = Δ/(1 − z/2), z = ΔA
                let (nr, ni) = (&zr * 0.5 + 1.0, &zi * 0.5);
                let (dr, di) = (1.0 - &zr * 0.5, -(&zi * 0.5));
                let den = &dr * &dr + &di * &di;
                let pr = (&nr * &dr + &ni * &di) / &den;
                let pi = (&ni * &dr - &nr * &di) / &den;
                let log_mag = (&pr * &pr + &pi * &pi).log() * 0.5;
                let theta = pi.atan2(&pr);
                let w_re = &dr * &dt / &den;
                let w_im = -(&di * &dt) / &den;
                (log_mag, theta, w_re, w_im)
            }
        };
        let (mut cr, mut ci) = (self.c_re.to_kind(Kind::Float), self.c_im.to_kind(Kind::Float));
        if let Some((br, bi)) = &self.b {
            let (br, bi) = (br.to_kind(Kind::Float), bi.to_kind(Kind::Float));
            (cr, ci) = (&cr * &br - &ci * &bi, &cr * &bi + &ci * &br);
        }
        let c_re = (&cr * &w_re - &ci * &w_im) * 2.0;
        let c_im = (&cr * &w_im + &ci * &w_re) * 2.0;
        Modes { log_mag, theta, c_re, c_im }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// An S4D bank with one channel and three modes set to known values:
    /// `Δ = 0.1`, `A_n = −0.5 + i·{0, π, 3π}`, `C = {1, 0.5 − 0.25i, −0.3 + 0.7i}`.
    fn known(disc: Discretization) -> (nn::VarStore, S4d) {
        let vs = nn::VarStore::new(Device::Cpu);
        let s = S4d::new(vs.root(), 1, 6, disc, false);
        let pi = std::f64::consts::PI;
        tch::no_grad(|| {
            let set = |t: &Tensor, v: &[f32]| {
                let _ = t.shallow_clone().copy_(&Tensor::from_slice(v).view(t.size().as_slice()));
            };
            set(&s.log_dt, &[(0.1f64).ln() as f32]);
            set(&s.log_a_re, &[(0.5f64).ln() as f32; 3]);
            set(&s.a_im, &[0.0, pi as f32, (3.0 * pi) as f32]);
            set(&s.c_re, &[1.0, 0.5, -0.3]);
            set(&s.c_im, &[0.0, -0.25, 0.7]);
        });
        (vs, s)
    }

    /// Poles, coefficients `c = 2·C·w` and kernel taps against values computed independently
    /// with Python's `cmath` from the closed forms (ZOH: `p = e^{ΔA}`, `w = (p − 1)/A`;
    /// bilinear: `p = (1 + ΔA/2)/(1 − ΔA/2)`, `w = Δ/(1 − ΔA/2)`; `K[t] = Re Σ c p^t`).
    #[test]
    fn s4d_modes_match_the_closed_forms_for_zoh_and_bilinear() {
        // per mode: (p_re, p_im, c_re, c_im), then K[0], K[1], K[5] summed over the modes
        let zoh = [
            [0.951229424500714, 0.0, 0.19508230199714394, 0.0],
            [0.9046729426630928, 0.2939460577202216, 0.10349961715105778, -0.0329118989951118],
            [0.5591186272681762, 0.7695607699705787, -0.10959832037776879, 0.09206109874632741],
        ];
        let zoh_k = [
            0.19508230199714394 + 0.10349961715105778 - 0.10959832037776879,
            0.18556802585901772 + 0.10330762617425018 - 0.13212507247607708,
            0.151930249558748 + 0.025631812709760053 + 0.0716972557940537,
        ];
        let bil = [
            [0.951219512195122, 0.0, 0.19512195121951223, 0.0],
            [0.9064464665399085, 0.2921599128655608, 0.10262632114863446, -0.033053166020219675],
            [0.6107600670510538, 0.7405393160990332, -0.10016055413846395, 0.09053702521060276],
        ];
        let bil_k = [
            0.19512195121951223 + 0.10262632114863446 - 0.10016055413846395,
            0.18560380725758482 + 0.10268207628356789 - 0.12822029349257963,
            0.1519532109990174 + 0.02684270978017183 + 0.09498661859487442,
        ];
        for (disc, modes_want, k_want) in [(Discretization::Zoh, zoh, zoh_k), (Discretization::Bilinear, bil, bil_k)] {
            let (_vs, s) = known(disc);
            let m = tch::no_grad(|| s.modes());
            let v = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
            let (lm, th, cr, ci) = (v(&m.log_mag), v(&m.theta), v(&m.c_re), v(&m.c_im));
            for (n, want) in modes_want.iter().enumerate() {
                let mag = (lm[n] as f64).exp();
                let got = [mag * (th[n] as f64).cos(), mag * (th[n] as f64).sin(), cr[n] as f64, ci[n] as f64];
                for (g, w) in got.iter().zip(want) {
                    assert!((g - w).abs() < 2e-6, "{disc:?} mode {n}: got {got:?}, want {want:?}");
                }
            }
            let k = v(&tch::no_grad(|| m.kernel(6)));
            for (i, &t) in [0usize, 1, 5].iter().enumerate() {
                assert!((k[t] as f64 - k_want[i]).abs() < 2e-6, "{disc:?} K[{t}] = {}, want {}", k[t], k_want[i]);
            }
        }
    }

    /// A trained B enters as the complex product C·B: the coefficients with
    /// B = (1, 2 + i, −0.5 + 0.25i) are those with B = 1 times B.
    #[test]
    fn trained_b_multiplies_c() {
        let (_vs, plain) = known(Discretization::Bilinear);
        let vs = nn::VarStore::new(Device::Cpu);
        let s = S4d::new(vs.root(), 1, 6, Discretization::Bilinear, true);
        tch::no_grad(|| {
            for (dst, src) in [
                (&s.log_dt, &plain.log_dt),
                (&s.log_a_re, &plain.log_a_re),
                (&s.a_im, &plain.a_im),
                (&s.c_re, &plain.c_re),
                (&s.c_im, &plain.c_im),
            ] {
                let _ = dst.shallow_clone().copy_(src);
            }
            let (br, bi) = s.b.as_ref().unwrap();
            let _ = br.shallow_clone().copy_(&Tensor::from_slice(&[1.0f32, 2.0, -0.5]).view([1, 3]));
            let _ = bi.shallow_clone().copy_(&Tensor::from_slice(&[0.0f32, 1.0, 0.25]).view([1, 3]));
        });
        let v = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        let (m0, m1) = tch::no_grad(|| (plain.modes(), s.modes()));
        let (r0, i0, r1, i1) = (v(&m0.c_re), v(&m0.c_im), v(&m1.c_re), v(&m1.c_im));
        let b = [(1.0f32, 0.0f32), (2.0, 1.0), (-0.5, 0.25)];
        for n in 0..3 {
            let (wr, wi) = (r0[n] * b[n].0 - i0[n] * b[n].1, r0[n] * b[n].1 + i0[n] * b[n].0);
            assert!(
                (r1[n] - wr).abs() < 1e-6 && (i1[n] - wi).abs() < 1e-6,
                "mode {n}: ({}, {}) vs ({wr}, {wi})",
                r1[n],
                i1[n]
            );
        }
        assert!(v(&m1.log_mag) == v(&m0.log_mag) && v(&m1.theta) == v(&m0.theta), "B must not move the poles");
    }

    /// The two discretisations agree to first order in ΔA and differ for fast-rotating modes:
    /// at the third mode (|ΔA| ≈ 0.94) the poles differ by more than 0.05.
    #[test]
    fn bilinear_and_zoh_differ_for_high_modes() {
        let p = |disc| {
            let (_vs, s) = known(disc);
            let m = tch::no_grad(|| s.modes());
            (m.log_mag.exp() * m.theta.cos(), m.log_mag.exp() * m.theta.sin())
        };
        let ((zr, zi), (br, bi)) = (p(Discretization::Zoh), p(Discretization::Bilinear));
        let gap = ((zr - br).square() + (zi - bi).square()).sqrt();
        let gap = Vec::<f32>::try_from(gap.flatten(0, -1)).unwrap();
        assert!(gap[0] < 1e-4 && gap[2] > 0.05, "pole gaps {gap:?}");
    }
}
