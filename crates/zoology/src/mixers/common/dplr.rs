//! S4's diagonal-plus-low-rank (DPLR) state-space kernel with the HiPPO-LegS init
//! (state-spaces/s4 `models/s4/s4.py`: `nplr('legs')`, `SSMKernelDPLR`), used by `s4` and
//! `liquid_s4`.
//!
//! Per channel `h` (`H` channels), with `M = N/2` complex modes kept (conjugate pairs):
//!
//! ```text
//! Λ = −exp(A_re) − i·A_im ∈ ℂ^M,  P, B, C̃ ∈ ℂ^M,  Δ = exp(inv_dt) (or softplus(inv_dt))
//! full system (size N, conjugate-symmetric): Λ_f = [Λ; Λ̄], p = [P; P̄], q = [P̄; P] = p̄,
//!   B_f = [B; B̄], C̃_f = [C̃; C̃̄],  A = diag(Λ_f) − p qᵀ  (= Λ_f − p pᴴ)
//! bilinear:  Ā = (I − Δ/2·A)⁻¹(I + Δ/2·A),  B̄ = (I − Δ/2·A)⁻¹ Δ B_f
//! kernel (length L = l_max):  K_j = C Ā^j B̄,  j < L,  with C = C̃ (I − Ā^L)⁻¹
//! ```
//! The trained parameter is S4's `C̃ = C(I − Ā^L)` (S4's `_setup_C` at the kernel length `L`):
//! it makes the generating function at the L-th roots of unity the exact truncated kernel,
//! `K̂(ω) = Σ_{j<L} K_j ω^j = C̃ (I − Āω)⁻¹ B̄`.
//!
//! **Fast form** ([`Dplr::kernel`]): the generating function at `ω_k = e^{−2πik/L}`,
//! `k = 0..⌊L/2⌋`, through a Cauchy kernel and the Woodbury identity, then an inverse real FFT.
//! With `g_n(ω) = 2Δ / (2(1 − ω) − (1 + ω)ΔΛ_n)` (the resolvent `(z/Δ − Λ_n)⁻¹` at
//! `z = 2(1−ω)/(1+ω)` times the bilinear factor `2/(1+ω)`), `r_XY = Σ_{n<N} X_n Y_n g_n` and
//! `c = (1 + ω)/2`:
//! `K̂(ω) = r_CB − c·r_Cp·r_qB / (1 + c·r_qp)`. This is S4's rank-1 Woodbury with the factor
//! `2/(1+ω)` folded into the Cauchy terms, so the Nyquist bin `ω = −1` needs no division by
//! `1 + ω ≈ 0` (S4 divides by it in single precision). Computed in f64.
//!
//! **Real coordinates** (step and reference): the conjugate-symmetric state `[s; s̄]` is the
//! real vector `r = [Re s; Im s] ∈ ℝ^N`, in which
//! `A_r = [[a, A_im], [−A_im, a]] − 2·p_r p_rᵀ` (blocks of diagonals, `a = −exp(A_re)`,
//! `p_r = [Re P; Im P]`), `B_r = [Re B; Im B]`, `C_r = [2 Re C, −2 Im C]`; the real dense
//! system is similar to the complex one, so the kernel is the same. The state is `N` reals
//! per channel.
//!
//! Init (S4's defaults: `init = "legs"`, rank 1, `dt_tie`, `dt_transform = "exp"`): HiPPO-LegS
//! `A_nk = −√(2n+1)√(2k+1)` (n > k), `−(n+1)` (n = k), `B_n = √(2n+1)`, rank-1 correction
//! `P_n = √(n + ½)`; `A + PPᵀ = −½I + S` with `S` skew-symmetric, so its eigenvectors `V` come
//! from `eigh(−iS)`; the `M` eigenvalues with negative imaginary part are kept,
//! `Λ = −½ + iλ`, `B = Vᴴ B`, `P = Vᴴ P`, `Im B` clipped to [−2, 2]; `Δ` log-uniform in
//! [dt_min, dt_max]; C ~ complex N(0, 1) (re, im ~ N(0, ½)) and then `C̃ = C(I − Ā^L)`.

use tch::{nn, Kind, Tensor};

/// One bank of `H` DPLR SSMs with `N = 2M` real state dimensions each (parameters f32): `Δ`
/// and `C̃` per channel (`[H]`, `[H, M]`), `Λ, B, P` in `S = n_ssm` trained copies (`[S, M]`,
/// channel `h` uses copy `h mod S`, S4's `repeat('t n -> (v t) n')`).
#[derive(Debug)]
pub struct Dplr {
    /// `Δ = exp(inv_dt)` or, `dt_softplus`, `softplus(inv_dt)` (S4's `dt_transform`).
    pub inv_dt: Tensor,
    pub dt_softplus: bool,
    /// `log(−Re Λ)` (S4's `A_real` under the `exp` transform).
    pub log_a_re: Tensor,
    /// `−Im Λ` (S4's `A_imag`, ≥ 0 at init).
    pub a_im: Tensor,
    pub b_re: Tensor,
    pub b_im: Tensor,
    pub p_re: Tensor,
    pub p_im: Tensor,
    /// `C̃` at length `l_max`.
    pub c_re: Tensor,
    pub c_im: Tensor,
    /// Kernel length `L` the parameter `C̃` refers to.
    pub l_max: i64,
}

const D64: Kind = Kind::Double;

/// HiPPO-LegS in S4's normal-plus-low-rank form for state size `n` (even), in f64:
/// `(λ, B, P)` with `Λ = −½ + iλ` (`λ < 0`, `n/2` of them) and `B, P` as (re, im), each `[n/2]`.
pub fn legs_nplr(n: i64, dev: tch::Device) -> (Tensor, (Tensor, Tensor), (Tensor, Tensor)) {
    let m = n / 2;
    let q = Tensor::arange(n, (D64, dev));
    let r = (&q * 2.0 + 1.0).sqrt(); // √(2n+1)
    let (row, col) = (q.view([n, 1]), q.view([1, n]));
    // HiPPO-LegS A: −√(2i+1)√(2j+1) below the diagonal, −(i+1) on it, 0 above
    let outer = r.view([n, 1]) * r.view([1, n]);
    let a = -(outer * row.gt_tensor(&col).to_kind(D64)) - Tensor::diag_embed(&(&q + 1.0), 0, -2, -1);
    let p = (&q + 0.5).sqrt();
    let ap = a + p.view([n, 1]) * p.view([1, n]); // −½ I + skew-symmetric
    let skew = &ap + Tensor::eye(n, (D64, dev)) * 0.5;
    let herm = Tensor::complex(&skew.zeros_like(), &(-&skew)); // −i·S, Hermitian
    let (lam, v) = herm.linalg_eigh("L"); // ascending: the first m are negative
    let (lam, v) = (lam.narrow(0, 0, m), v.narrow(1, 0, m)); // [m], [n, m]
    let vh = v.conj_physical().transpose(0, 1); // [m, n]
    let cplx = |x: &Tensor| Tensor::complex(x, &x.zeros_like());
    let b = vh.matmul(&cplx(&r)); // Vᴴ B
    let pp = vh.matmul(&cplx(&p));
    let b = (b.real(), b.imag().clamp(-2.0, 2.0)); // S4's B_clip = 2
    (lam, b, (pp.real(), pp.imag()))
}

/// All `n` eigenvalues `λ` (ascending) of `−i·S`, where `S = A + PPᵀ + ½I` is the
/// skew-symmetric part of HiPPO-LegS's normal form, so that HiPPO-LegS's normal part has the
/// eigenvalues `−½ + iλ` (both halves of each conjugate pair; BiGS's `make_DPLR_HiPPO`). f64.
pub fn legs_skew_eigenvalues(n: i64, dev: tch::Device) -> Tensor {
    let q = Tensor::arange(n, (D64, dev));
    let r = (&q * 2.0 + 1.0).sqrt();
    let (row, col) = (q.view([n, 1]), q.view([1, n]));
    // S_ij = −√(2i+1)√(2j+1) + √(i+½)√(j+½) below the diagonal, its negative above, 0 on it
    let p = (&q + 0.5).sqrt();
    let lower = -(r.view([n, 1]) * r.view([1, n])) + p.view([n, 1]) * p.view([1, n]);
    let below = row.gt_tensor(&col).to_kind(D64);
    let skew = &lower * &below - (&lower * &below).transpose(0, 1);
    Tensor::complex(&skew.zeros_like(), &(-skew)).linalg_eigvalsh("L")
}

impl Dplr {
    /// `h` channels, `n_ssm` trained copies of `(Λ, B, P)` (must divide `h`), state size `n`
    /// (even), `C̃` defined at kernel length `l_max`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: nn::Path,
        h: i64,
        n_ssm: i64,
        n: i64,
        dt_min: f64,
        dt_max: f64,
        dt_softplus: bool,
        l_max: i64,
    ) -> Self {
        let m = n / 2;
        let dev = p.device();
        let (lam, (br, bi), (pr, pi)) = legs_nplr(n, dev);
        let rep = |t: &Tensor| t.to_kind(Kind::Float).unsqueeze(0).repeat([n_ssm, 1]);
        let inv_dt = p.var("inv_dt", &[h], nn::Init::Const(0.0));
        tch::no_grad(|| {
            let (lo, hi) = (dt_min.ln(), dt_max.ln());
            let dt = (Tensor::rand([h], (Kind::Float, dev)) * (hi - lo) + lo).exp();
            // S4's inv_transform: clamp at 1e-4, then the transform's inverse
            let inv = if dt_softplus { dt.clamp_min(1e-4).exp().g_sub_scalar(1.0).log() } else { dt.log() };
            let _ = inv_dt.shallow_clone().copy_(&inv);
        });
        let log_a_re = p.var("log_a_re", &[n_ssm, m], nn::Init::Const(0.5f64.ln()));
        let a_im = p.var_copy("a_im", &rep(&(-lam)));
        let b_re = p.var_copy("b_re", &rep(&br));
        let b_im = p.var_copy("b_im", &rep(&bi));
        let p_re = p.var_copy("p_re", &rep(&pr));
        let p_im = p.var_copy("p_im", &rep(&pi));
        let s = 0.5f64.sqrt();
        let c_re = p.var("c_re", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        let c_im = p.var("c_im", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        let out = Dplr { inv_dt, dt_softplus, log_a_re, a_im, b_re, b_im, p_re, p_im, c_re, c_im, l_max };
        // C̃ = C (I − Ā^L), in real coordinates: C_r = [2 Re C, −2 Im C]
        tch::no_grad(|| {
            let (abar, _, _) = out.dense_real(false);
            let cr = out.c_real();
            let pw = matrix_power(&abar, l_max);
            let ct = &cr - cr.unsqueeze(1).matmul(&pw).squeeze_dim(1);
            let _ = out.c_re.shallow_clone().copy_(&(ct.narrow(1, 0, m) * 0.5));
            let _ = out.c_im.shallow_clone().copy_(&(ct.narrow(1, m, m) * -0.5));
        });
        out
    }

    /// Channels `H`.
    pub fn channels(&self) -> i64 {
        self.inv_dt.size()[0]
    }

    /// `Δ` per channel, `[H]` f64.
    pub fn dt(&self) -> Tensor {
        let x = Self::f64(&self.inv_dt);
        if self.dt_softplus {
            x.softplus()
        } else {
            x.exp()
        }
    }

    /// A per-copy parameter `[S, M]` as f64 per channel `[H, M]` (channel h ← copy h mod S).
    pub fn per_channel(&self, t: &Tensor) -> Tensor {
        let s = t.size()[0];
        Self::f64(t).repeat([self.channels() / s, 1])
    }

    /// Real state size `N` per channel.
    pub fn state_dim(&self) -> i64 {
        2 * self.a_im.size()[1]
    }

    fn f64(t: &Tensor) -> Tensor {
        t.to_kind(D64)
    }

    /// `C̃_r = [2 Re C̃, −2 Im C̃]`, `[H, N]` f64.
    fn c_real(&self) -> Tensor {
        Tensor::cat(&[Self::f64(&self.c_re) * 2.0, Self::f64(&self.c_im) * -2.0], 1)
    }

    /// The continuous real system `(A_r [H, N, N], B_r [H, N])` in f64 (see the module doc).
    pub fn continuous_real(&self) -> (Tensor, Tensor) {
        let a = -self.per_channel(&self.log_a_re).exp();
        let ai = self.per_channel(&self.a_im);
        let de = |t: &Tensor| t.diag_embed(0, -2, -1);
        let top = Tensor::cat(&[de(&a), de(&ai)], 2);
        let bottom = Tensor::cat(&[de(&(-&ai)), de(&a)], 2);
        let pr = Tensor::cat(&[self.per_channel(&self.p_re), self.per_channel(&self.p_im)], 1); // [H, N]
        let a_r = Tensor::cat(&[top, bottom], 1) - pr.unsqueeze(2) * pr.unsqueeze(1) * 2.0;
        let b_r = Tensor::cat(&[self.per_channel(&self.b_re), self.per_channel(&self.b_im)], 1);
        (a_r, b_r)
    }

    /// The bilinear discretisation in real coordinates: `Ā [H, N, N]`, `B̄ [H, N]`, and
    /// (`with_c`) the output row `C_r = C̃_r (I − Ā^L)⁻¹ [H, N]` (else an empty tensor); f64,
    /// by linear solves and a matrix power by squaring. Used by the step form.
    pub fn dense_real(&self, with_c: bool) -> (Tensor, Tensor, Tensor) {
        let (a_r, b_r) = self.continuous_real();
        let n = a_r.size()[1];
        let dt = self.dt().view([-1, 1, 1]);
        let eye = Tensor::eye(n, (D64, a_r.device())).unsqueeze(0);
        let lhs = &eye - &a_r * (&dt * 0.5);
        let rhs = &eye + &a_r * (&dt * 0.5);
        let abar = Tensor::linalg_solve(&lhs, &rhs, true);
        let bbar = Tensor::linalg_solve(&lhs, &(b_r * dt.view([-1, 1])).unsqueeze(-1), true).squeeze_dim(-1);
        let c = if with_c {
            let pw = matrix_power(&abar, self.l_max);
            // C_r (I − Ā^L) = C̃_r  ⇔  (I − Ā^L)ᵀ C_rᵀ = C̃_rᵀ
            let m = (eye - pw).transpose(1, 2);
            Tensor::linalg_solve(&m, &self.c_real().unsqueeze(-1), true).squeeze_dim(-1)
        } else {
            Tensor::empty([0], (D64, a_r.device()))
        };
        (abar, bbar, c)
    }

    /// The kernel `K [H, l_max]` (f64) by the generating function at the roots of unity:
    /// Cauchy sums, rank-1 Woodbury, inverse real FFT (see the module doc).
    pub fn kernel(&self) -> Tensor {
        let l = self.l_max;
        let dev = self.inv_dt.device();
        let cplx = |re: &Tensor, im: &Tensor| Tensor::complex(&self.per_channel(re), &self.per_channel(im));
        let full = |z: Tensor| Tensor::cat(&[&z, &z.conj_physical()], 1); // [H, M] → [H, N]
        let lam = full(Tensor::complex(&(-self.per_channel(&self.log_a_re).exp()), &(-self.per_channel(&self.a_im))));
        let b = full(cplx(&self.b_re, &self.b_im));
        let c = full(cplx(&self.c_re, &self.c_im));
        let p = full(cplx(&self.p_re, &self.p_im));
        let q = p.conj_physical();
        let w = Tensor::stack(&[&c * &b, &c * &p, &q * &b, &q * &p], -1); // [H, N, 4]
        let dt = self.dt().view([-1, 1, 1]); // [H, 1, 1]
        let k = l / 2 + 1;
        let ang = Tensor::arange(k, (D64, dev)) * (-2.0 * std::f64::consts::PI / l as f64);
        let omega = Tensor::complex(&ang.cos(), &ang.sin()).view([1, k, 1]); // [1, K, 1]
        let one_minus = (-&omega + 1.0) * 2.0;
        let one_plus = &omega + 1.0;
        let den = one_minus - &one_plus * (&lam * dt.view([-1, 1])).unsqueeze(1); // [H, K, N]
        let g = (&dt * 2.0) / den; // Cauchy matrix with the bilinear factor folded in
        let r = g.matmul(&w); // [H, K, 4]
        let (cb, cp, qb, qp) = (r.select(2, 0), r.select(2, 1), r.select(2, 2), r.select(2, 3));
        let half = one_plus.view([1, k]) * 0.5;
        let khat = cb - &half * cp * qb / (&half * qp + 1.0);
        khat.fft_irfft(Some(l), -1, "backward")
    }

    /// Reference: the SSM run step by step with the dense discretised matrices, written out
    /// without [`Self::dense_real`] or [`Self::kernel`]: explicit inverses, `Ā^L` by repeated
    /// products, `x_t = Ā x_{t−1} + B̄ u_t`, `y_t = C x_t`. `u: [B, L, H]` → `[B, L, H]` (f64).
    pub fn recurrence_reference(&self, u: &Tensor) -> Tensor {
        let (bsz, l, h) = u.size3().unwrap();
        let (a_r, b_r) = self.continuous_real();
        let n = a_r.size()[1];
        let dt = self.dt().view([h, 1, 1]);
        let eye = Tensor::eye(n, (D64, u.device())).unsqueeze(0);
        let inv = Tensor::linalg_inv(&(&eye - &a_r * (&dt * 0.5)));
        let abar = inv.matmul(&(&eye + &a_r * (&dt * 0.5)));
        let bbar = inv.matmul(&(b_r * dt.view([h, 1])).unsqueeze(-1)).squeeze_dim(-1); // [H, N]
        let mut pw = eye.repeat([h, 1, 1]);
        for _ in 0..self.l_max {
            pw = pw.matmul(&abar);
        }
        let c = self.c_real().unsqueeze(1).matmul(&Tensor::linalg_inv(&(eye - pw))).squeeze_dim(1); // [H, N]
        let u = u.to_kind(D64);
        let mut x = Tensor::zeros([bsz, h, n], (D64, u.device()));
        let mut ys = Vec::with_capacity(l as usize);
        for t in 0..l {
            x = abar.unsqueeze(0).matmul(&x.unsqueeze(-1)).squeeze_dim(-1) + &bbar * u.select(1, t).unsqueeze(-1);
            ys.push((&x * &c).sum_dim_intlist([-1i64].as_slice(), false, D64));
        }
        Tensor::stack(&ys, 1)
    }
}

/// `A^p` for `A: [.., N, N]` by repeated squaring.
pub fn matrix_power(a: &Tensor, p: i64) -> Tensor {
    let n = a.size()[a.dim() - 1];
    let mut result = Tensor::eye(n, (a.kind(), a.device())).expand_as(a).contiguous();
    let (mut base, mut e) = (a.shallow_clone(), p);
    while e > 0 {
        if e & 1 == 1 {
            result = result.matmul(&base);
        }
        e >>= 1;
        if e > 0 {
            base = base.matmul(&base);
        }
    }
    result
}

/// FLOPs of [`Dplr::kernel`] for `h` channels, state `n`, kernel length `l`
/// ([`crate::flops`] convention): per (channel, bin) with `⌊l/2⌋ + 1` bins, the Cauchy matrix
/// (8 per full mode), its four weighted sums (a complex multiply-add, 8, per full mode and sum)
/// and the Woodbury combination (24); then the inverse real FFT of length `l`. The O(H·N)
/// work on the parameters (discretisation constants, weight products) is not counted.
pub fn kernel_flops(h: i64, n: i64, l: i64) -> f64 {
    let bins = (l / 2 + 1) as f64;
    h as f64 * (bins * (40.0 * n as f64 + 24.0) + crate::flops::rfft(l))
}

/// FLOPs of one dense real step per channel (`x ← Ā x + B̄ u`, `y = C x`): `2N² + 4N`.
pub fn step_flops(h: i64, n: i64) -> f64 {
    h as f64 * (2.0 * (n * n) as f64 + 4.0 * n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn bank(h: i64, n: i64, l: i64, seed: i64) -> (nn::VarStore, Dplr) {
        bank_with(h, h, false, n, l, seed)
    }

    fn bank_with(h: i64, s: i64, softplus: bool, n: i64, l: i64, seed: i64) -> (nn::VarStore, Dplr) {
        crate::mixers::testing::seeded(seed, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let d = Dplr::new(vs.root(), h, s, n, 1e-3, 1e-1, softplus, l);
            (vs, d)
        })
    }

    /// The NPLR form is HiPPO-LegS in another basis: the real continuous matrix `A_r` built
    /// from it is similar to HiPPO-LegS (triangular, eigenvalues `−1, …, −N`), so the traces of
    /// its powers are `Σ_k (−k)^j`; checked in f64 on [`legs_nplr`] and on the f32 parameters.
    /// (The eigenvalues themselves are too ill-conditioned in this non-normal matrix to compare.)
    #[test]
    fn legs_init_is_similar_to_hippo_legs() {
        for n in [4i64, 8, 16, 64] {
            let (_vs, d) = bank(2, n, 16, 0);
            let (lam, (br, bi), (pr, pi)) = legs_nplr(n, Device::Cpu);
            let exact = Dplr {
                inv_dt: d.inv_dt.to_kind(D64),
                dt_softplus: false,
                log_a_re: d.log_a_re.to_kind(D64).narrow(0, 0, 1) * 0.0 + 0.5f64.ln(),
                a_im: -lam.unsqueeze(0),
                b_re: br.unsqueeze(0),
                b_im: bi.unsqueeze(0),
                p_re: pr.unsqueeze(0),
                p_im: pi.unsqueeze(0),
                c_re: d.c_re.narrow(0, 0, 1).to_kind(D64),
                c_im: d.c_im.narrow(0, 0, 1).to_kind(D64),
                l_max: 16,
            };
            for (what, bank, tol) in [("f64", &exact, 1e-9), ("f32 params", &d, 1e-3)] {
                let (a_r, _) = tch::no_grad(|| bank.continuous_real());
                let mut pw = a_r.select(0, 0);
                for j in 1..=3u32 {
                    let tr = pw.trace().double_value(&[]);
                    let want: f64 = (1..=n).map(|k| (-(k as f64)).powi(j as i32)).sum();
                    assert!((tr - want).abs() < tol * want.abs(), "N={n} {what}: tr(A^{j}) = {tr}, want {want}");
                    pw = pw.matmul(&a_r.select(0, 0));
                }
            }
            // every channel starts from the same SSM; A_im ≥ 0 (S4 keeps Im Λ ≤ 0)
            assert!(d.a_im.min().double_value(&[]) > 0.0);
            assert_eq!(crate::mixers::testing::rel_err(&d.b_re.select(0, 1), &d.b_re.select(0, 0)), 0.0);
        }
    }

    /// The Cauchy + Woodbury kernel equals the dense Krylov kernel `C Ā^j B̄` with
    /// `C = C̃ (I − Ā^L)⁻¹`, at even lengths (with the Nyquist bin ω = −1) and odd ones, for
    /// generic parameters (perturbed away from the init, large Δ included), with one SSM per
    /// channel or one shared (`n_ssm = 1`, softplus Δ).
    #[test]
    fn cauchy_woodbury_kernel_matches_the_dense_krylov_kernel() {
        for &(n, l, scale, s, sp) in &[
            (4i64, 8i64, 0.0, 3i64, false),
            (16, 64, 0.3, 3, false),
            (16, 33, 0.3, 3, false),
            (8, 2, 0.1, 3, false),
            (8, 1, 0.1, 3, false),
            (8, 16, 0.2, 1, true),
        ] {
            let (_vs, d) = bank_with(3, s, sp, n, l, l);
            tch::no_grad(|| {
                for t in [&d.b_re, &d.b_im, &d.p_re, &d.p_im, &d.a_im, &d.inv_dt] {
                    let _ = t.shallow_clone().g_add_(&(t.randn_like() * scale));
                }
                let _ = d.inv_dt.shallow_clone().narrow(0, 0, 1).fill_(1.0); // Δ = e
            });
            let fast = tch::no_grad(|| d.kernel());
            let (abar, bbar, c) = tch::no_grad(|| d.dense_real(true));
            let mut x = bbar.unsqueeze(-1);
            let mut taps = vec![];
            for _ in 0..l {
                taps.push(c.unsqueeze(1).matmul(&x).view([3]));
                x = abar.matmul(&x);
            }
            let slow = Tensor::stack(&taps, 1);
            let err = crate::mixers::testing::rel_err(&fast, &slow);
            assert!(err < 1e-9, "N={n} L={l} S={s}: Cauchy kernel vs dense Krylov rel err {err:.2e}");
            // and the dense reference recurrence's impulse response is that kernel too
            let imp = Tensor::zeros([1, l, 3], (D64, Device::Cpu));
            let _ = imp.narrow(1, 0, 1).fill_(1.0);
            let resp = tch::no_grad(|| d.recurrence_reference(&imp)).squeeze_dim(0).transpose(0, 1);
            let err = crate::mixers::testing::rel_err(&resp, &slow);
            assert!(err < 1e-8, "N={n} L={l}: reference impulse response rel err {err:.2e}");
        }
    }

    /// BiGS's full eigenvalue list holds `legs_nplr`'s half and its negatives (conjugate pairs).
    #[test]
    fn skew_eigenvalues_come_in_pairs_and_contain_the_kept_half() {
        for n in [4i64, 8, 64] {
            let all = legs_skew_eigenvalues(n, Device::Cpu);
            let (half, _, _) = legs_nplr(n, Device::Cpu);
            let m = n / 2;
            assert!(crate::mixers::testing::rel_err(&all.narrow(0, 0, m), &half) < 1e-12, "N={n}");
            assert!(crate::mixers::testing::rel_err(&all.narrow(0, m, m), &(-half.flip([0]))) < 1e-10, "N={n}");
        }
    }

    #[test]
    fn matrix_power_by_squaring() {
        let a = Tensor::randn([2, 3, 3], (D64, Device::Cpu)) * 0.5;
        for p in [0i64, 1, 2, 5, 8, 13] {
            let mut want = Tensor::eye(3, (D64, Device::Cpu)).unsqueeze(0).repeat([2, 1, 1]);
            for _ in 0..p {
                want = want.matmul(&a);
            }
            assert!(crate::mixers::testing::rel_err(&matrix_power(&a, p), &want) < 1e-12, "p={p}");
        }
    }
}
