//! `liquid_s4`: Liquid-S4 (Hasani et al. 2023; raminmh/liquid-s4
//! `src/models/sequence/ss/s4.py`), the S4 layer plus input-correlation ("liquid") terms up to
//! order `P = liquid_degree`, in its causal form.
//!
//! With the S4 kernel `K` of [`crate::mixers::common::dplr`] (as in `s4`) and, per channel, the
//! bilinear input weights of the *diagonal* part of the SSM (as the source computes them,
//! leaving the low-rank part out), over the full conjugate-symmetric set of `N` modes:
//!
//! ```text
//! b̄_n = Δ B_n / (1 − Δ Λ_n / 2)
//! s⁽¹⁾_t = u_t,   s⁽ᵖ⁾_t = s⁽ᵖ⁻¹⁾_t · s⁽ᵖ⁻¹⁾_{t−1}   (s_{−1} = 0)      input correlations
//! ũ⁽ᵖ⁾ = lcontract(s⁽ᵖ⁾)                              (identity, tanh, or LeCun 1.7159·tanh(0.666·))
//! PB ("polyb"):  y = K * u + D u + Σ_{p=2}^{P} c_p ũ⁽ᵖ⁾,
//!                c_p = Σ_n C̃_n β⁽ᵖ⁾_n,  β⁽¹⁾ = b̄,  β⁽ᵖ⁾ = β⁽ᵖ⁻¹⁾ · Σ_m β⁽ᵖ⁻¹⁾_m
//! KB ("kb"):     y = K * (u + Σ_{p=2}^{P} β^{p−1} ũ⁽ᵖ⁾) + D u,   β = Σ_n b̄_n
//! out = GLU(W_o · GELU(y) + b_o)                      (as `s4`)
//! ```
//! (The sums over the `N` conjugate-symmetric modes are real: twice the real part over the
//! `N/2` kept ones.) KB's correction is `(βᵖ⁻¹ K) * ũ⁽ᵖ⁾`, the source's "K̄ times B" kernel; by
//! linearity the fast form runs one FFT convolution of the summed input.
//!
//! **Causal form** (DECISIONS, "liquid_s4"): the source reverses the correlation signal in
//! time before adding it (`u_corr.flip(-1)`), and its default `allcombs = True` builds it from
//! products of the *last* positions of the sequence; both make position t depend on later
//! inputs. Here the signal is the source's `allcombs = False` recursion (products of
//! neighbouring positions) without the flip, so every term at t uses inputs ≤ t. The source
//! also reads `B, Λ, C̃, Δ` for these terms through untracked aliases of the parameters (no
//! gradient reaches them; `Re Λ` stays at its init); here they are the trained parameters,
//! differentiated like the kernel. KB's frequency-domain product in the source mixes FFT
//! sizes; here it is the exact causal convolution.
//!
//! Forms: fast = S4's kernel (Cauchy + Woodbury) and one FFT convolution, the correlations by
//! shifted products; reference = the dense recurrence token by token on the (KB-augmented)
//! input and the correlation terms by an explicit loop, coefficients recomputed in real
//! arithmetic; step = the dense real step (state `N` per channel) plus, for each order
//! `p ≥ 2`, the previous `s⁽ᵖ⁻¹⁾_{t−1}` per channel: state `d·N + (P − 1)·d`.
//!
//! FLOPs ([`crate::flops`] convention): as `s4` (the FFT convolution and the output Linear per
//! sequence, the kernel per batch, the dense step and Linear per decoded token); the liquid
//! terms are element-wise products on `[L, d]` activations and O(d·N·P) work on parameters,
//! not counted by the convention.
//!
//! Defaults: liquid-s4's layer config (`d_state` 64, `n_ssm` 1, Δ = exp(log_dt) in
//! [0.001, 0.1], `liquid_degree` 2, `lcontract` none), with `liquid_kernel = "polyb"`, which
//! its README recommends ("PB kernels are faster and perform better than KB"); its config's
//! `null` is plain S4 (the `s4` mixer).

use super::common::conv::fft_causal_conv;
use super::common::dplr::{self, Dplr};
use super::common::layers::Linear;
use super::common::torch_init::torch_linear;
use super::s4::validate_dplr;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiquidKernel {
    /// PB: polynomials of B̄ times the correlation signal, position by position.
    Polyb,
    /// KB: the S4 kernel times powers of ΣB̄, convolved with the correlation signal.
    Kb,
}

/// The source's `lcontract`, applied to the correlation signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lcontract {
    None,
    Tanh,
    /// `1.7159·tanh(0.666·x)`.
    Lecun,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiquidS4Config {
    /// State size N per channel (even). liquid-s4: 64.
    pub d_state: i64,
    /// Δ = exp(log_dt) at init log-uniform in [dt_min, dt_max].
    pub dt_min: f64,
    pub dt_max: f64,
    /// Trained copies of (Λ, B, P) (must divide d); 0 = one per channel. liquid-s4: 1.
    pub n_ssm: i64,
    /// `polyb` (PB) or `kb` (KB).
    pub liquid_kernel: LiquidKernel,
    /// Highest order P of the input correlations (≥ 2).
    pub liquid_degree: i64,
    /// `none`, `tanh` or `lecun`.
    pub lcontract: Lcontract,
}

impl Default for LiquidS4Config {
    fn default() -> Self {
        LiquidS4Config {
            d_state: 64,
            dt_min: 0.001,
            dt_max: 0.1,
            n_ssm: 1,
            liquid_kernel: LiquidKernel::Polyb,
            liquid_degree: 2,
            lcontract: Lcontract::None,
        }
    }
}

#[derive(Debug)]
pub struct LiquidS4 {
    ssm: Dplr,
    skip: Tensor,
    output: Linear,
    d: i64,
    n: i64,
    kernel_kind: LiquidKernel,
    degree: i64,
    lcontract: Lcontract,
}

impl LiquidS4 {
    fn contract(&self, x: Tensor) -> Tensor {
        match self.lcontract {
            Lcontract::None => x,
            Lcontract::Tanh => x.tanh(),
            Lcontract::Lecun => (x * 0.666).tanh() * 1.7159,
        }
    }

    /// Per channel `[H]` (f64): the PB coefficients `c_p` for `p = 2..=P`, or KB's `β^{p−1}`.
    fn coefficients(&self) -> Vec<Tensor> {
        let s = &self.ssm;
        let dt = s.dt().unsqueeze(1); // [H, 1]
        let lam = Tensor::complex(&(-s.per_channel(&s.log_a_re).exp()), &(-s.per_channel(&s.a_im)));
        let b = Tensor::complex(&s.per_channel(&s.b_re), &s.per_channel(&s.b_im));
        let bbar = &b * &dt / ((&lam * &dt) * -0.5 + 1.0); // [H, M] complex
                                                           // Σ over the N conjugate-symmetric modes = 2·Re Σ over the M kept ones
        let full_sum = |z: &Tensor| z.real().sum_dim_intlist([1i64].as_slice(), false, Kind::Double) * 2.0;
        match self.kernel_kind {
            LiquidKernel::Polyb => {
                let c = Tensor::complex(&s.per_channel(&s.c_re), &s.per_channel(&s.c_im));
                let mut beta = bbar;
                (2..=self.degree)
                    .map(|_| {
                        beta = &beta * full_sum(&beta).unsqueeze(1);
                        full_sum(&(&c * &beta))
                    })
                    .collect()
            }
            LiquidKernel::Kb => {
                let total = full_sum(&bbar);
                (2..=self.degree).map(|p| total.pow_tensor_scalar(p - 1)).collect()
            }
        }
    }

    /// The contracted correlation signals `ũ⁽ᵖ⁾`, `p = 2..=P`, of `u: [B, L, H]`.
    fn correlations(&self, u: &Tensor) -> Vec<Tensor> {
        let (b, l, h) = u.size3().unwrap();
        let shift =
            |x: &Tensor| Tensor::cat(&[Tensor::zeros([b, 1, h], (x.kind(), x.device())), x.narrow(1, 0, l - 1)], 1);
        let mut s = u.shallow_clone();
        (2..=self.degree)
            .map(|_| {
                s = &s * shift(&s);
                self.contract(s.shallow_clone())
            })
            .collect()
    }

    fn finish(&self, y: Tensor) -> Tensor {
        self.output.forward(&y.gelu("none")).glu(-1)
    }
}

impl Mixer for LiquidS4 {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let l = u.size()[1];
        assert!(
            l <= self.ssm.l_max,
            "liquid_s4: the kernel is defined up to the model's longest sequence {} but the input has length {l}",
            self.ssm.l_max
        );
        let k = self.ssm.kernel().narrow(1, 0, l).to_kind(u.kind());
        let coef: Vec<Tensor> = self.coefficients().into_iter().map(|c| c.to_kind(u.kind())).collect();
        let corr = self.correlations(u);
        let y = match self.kernel_kind {
            LiquidKernel::Polyb => {
                let mut y = fft_causal_conv(u, &k);
                for (c, s) in coef.iter().zip(&corr) {
                    y = y + s * c;
                }
                y
            }
            LiquidKernel::Kb => {
                let mut v = u.shallow_clone();
                for (c, s) in coef.iter().zip(&corr) {
                    v = v + s * c;
                }
                fft_causal_conv(&v, &k)
            }
        };
        self.finish(y + u * &self.skip)
    }

    /// The dense recurrence token by token (`Dplr::recurrence_reference`), the correlations by
    /// an explicit loop over positions, the coefficients in real arithmetic, the output stage
    /// written out.
    fn reference(&self, u: &Tensor) -> Tensor {
        let l = u.size()[1];
        let s = &self.ssm;
        let u64 = u.to_kind(Kind::Double);
        // correlations: s⁽ᵖ⁾_t = s⁽ᵖ⁻¹⁾_t s⁽ᵖ⁻¹⁾_{t−1}, position by position
        let mut corr: Vec<Vec<Tensor>> = vec![];
        let mut prev: Vec<Tensor> = (0..l).map(|t| u64.select(1, t)).collect();
        for _ in 2..=self.degree {
            let cur: Vec<Tensor> = (0..l)
                .map(|t| if t == 0 { prev[0].zeros_like() } else { &prev[t as usize] * &prev[t as usize - 1] })
                .collect();
            let contracted: Vec<Tensor> = cur
                .iter()
                .map(|x| match self.lcontract {
                    Lcontract::None => x.shallow_clone(),
                    Lcontract::Tanh => x.tanh(),
                    Lcontract::Lecun => (x * 0.666).tanh() * 1.7159,
                })
                .collect();
            corr.push(contracted);
            prev = cur;
        }
        // b̄ = Δ B / (1 − ΔΛ/2) in real arithmetic, Λ = a − i·a_im
        let dt = s.dt().unsqueeze(1);
        let a = -s.per_channel(&s.log_a_re).exp();
        let ai = s.per_channel(&s.a_im);
        let (br, bi) = (s.per_channel(&s.b_re), s.per_channel(&s.b_im));
        let (dr, di) = (-(&a * &dt) * 0.5 + 1.0, &ai * &dt * 0.5); // 1 − ΔΛ/2
        let den = &dr * &dr + &di * &di;
        let (nr, ni) = (&br * &dt, &bi * &dt);
        let bbr = (&nr * &dr + &ni * &di) / &den;
        let bbi = (&ni * &dr - &nr * &di) / &den;
        let two_re_sum = |x: &Tensor| x.sum_dim_intlist([1i64].as_slice(), false, Kind::Double) * 2.0;
        let mut coef = vec![];
        match self.kernel_kind {
            LiquidKernel::Polyb => {
                let (cr, ci) = (s.per_channel(&s.c_re), s.per_channel(&s.c_im));
                let (mut xr, mut xi) = (bbr, bbi);
                for _ in 2..=self.degree {
                    let sum = two_re_sum(&xr).unsqueeze(1);
                    xr = &xr * &sum;
                    xi = &xi * &sum;
                    coef.push(two_re_sum(&(&cr * &xr - &ci * &xi)));
                }
            }
            LiquidKernel::Kb => {
                let beta = two_re_sum(&bbr);
                let mut pw = beta.ones_like();
                for _ in 2..=self.degree {
                    pw = &pw * &beta;
                    coef.push(pw.shallow_clone());
                }
            }
        }
        let mut v = u64.shallow_clone();
        if self.kernel_kind == LiquidKernel::Kb {
            for (c, sig) in coef.iter().zip(&corr) {
                v = v + Tensor::stack(sig, 1) * c;
            }
        }
        let mut y = s.recurrence_reference(&v);
        if self.kernel_kind == LiquidKernel::Polyb {
            for (c, sig) in coef.iter().zip(&corr) {
                y = y + Tensor::stack(sig, 1) * c;
            }
        }
        let y = y.to_kind(u.kind()) + u * &self.skip;
        let g = &y * 0.5 * ((&y / 2f64.sqrt()).erf() + 1.0);
        let z = g.matmul(&self.output.ws.tr()) + self.output.bs.as_ref().unwrap();
        z.narrow(-1, 0, self.d) * z.narrow(-1, self.d, self.d).sigmoid()
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.skip.kind(), self.skip.device());
        let mut t = vec![Tensor::zeros([batch, self.d, self.n], opts)];
        t.extend((2..=self.degree).map(|_| Tensor::zeros([batch, self.d], opts)));
        MixerState::new(t)
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let k = x_t.kind();
        // s⁽ᵖ⁾_t = s⁽ᵖ⁻¹⁾_t · s⁽ᵖ⁻¹⁾_{t−1}; state.tensors[p − 1] holds s⁽ᵖ⁻¹⁾_{t−1}
        let mut s = x_t.shallow_clone();
        let mut corr = vec![];
        for p in 2..=self.degree as usize {
            let next = &s * &state.tensors[p - 1];
            state.tensors[p - 1] = s;
            corr.push(self.contract(next.shallow_clone()));
            s = next;
        }
        let coef: Vec<Tensor> = self.coefficients().into_iter().map(|c| c.to_kind(k)).collect();
        let mut v = x_t.shallow_clone();
        if self.kernel_kind == LiquidKernel::Kb {
            for (c, sig) in coef.iter().zip(&corr) {
                v = v + sig * c;
            }
        }
        let (abar, bbar, c) = self.ssm.dense_real(true);
        let (abar, bbar, c) = (abar.to_kind(k), bbar.to_kind(k), c.to_kind(k));
        let x = abar.unsqueeze(0).matmul(&state.tensors[0].unsqueeze(-1)).squeeze_dim(-1) + bbar * v.unsqueeze(-1);
        let mut y = (&x * c).sum_dim_intlist([-1i64].as_slice(), false, k) + x_t * &self.skip;
        state.tensors[0] = x;
        if self.kernel_kind == LiquidKernel::Polyb {
            for (c, sig) in coef.iter().zip(&corr) {
                y = y + sig * c;
            }
        }
        self.finish(y)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        self.d * self.n + (self.degree - 1) * self.d
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, MixerFlops};
        let out = self.output.flops();
        let fwd = fft_conv(self.d, seq_len) + seq_len as f64 * out;
        let batch = fft_filter(self.d, seq_len) + dplr::kernel_flops(self.d, self.n, self.ssm.l_max);
        let step = dplr::step_flops(self.d, self.n) + out;
        MixerFlops::stepwise(fwd, batch, seq_len, |_| step)
    }
}

impl MixerKind for LiquidS4 {
    type Config = LiquidS4Config;
    const NAME: &'static str = "liquid_s4";
    const ABOUT: &'static str =
        "Liquid-S4: S4 DPLR kernel plus causal input-correlation terms up to order P (PB or KB liquid kernel)";
    const STATE_FORMULA: &'static str = "d·N + (P−1)·d (dense SSM state + previous correlation per order)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &LiquidS4Config, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        validate_dplr(field, c.d_state, c.n_ssm, d, c.dt_min, c.dt_max, ctx, "64")?;
        if !(2..=16).contains(&c.liquid_degree) {
            return Err(config_err(
                format!("{field}.liquid_degree"),
                format!(
                    "must be in [2, 16] (the highest order of input correlations; 2 is the source's default), got {}",
                    c.liquid_degree
                ),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &LiquidS4Config, ctx: &BuildCtx) -> Result<Self> {
        let s = if c.n_ssm == 0 { d } else { c.n_ssm };
        let ssm = Dplr::new(&p / "kernel", d, s, c.d_state, c.dt_min, c.dt_max, false, ctx.max_seq_len);
        let skip = p.var("D", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let output = torch_linear(&p / "output_linear", d, 2 * d, true);
        Ok(LiquidS4 {
            ssm,
            skip,
            output,
            d,
            n: c.d_state,
            kernel_kind: c.liquid_kernel,
            degree: c.liquid_degree,
            lcontract: c.lcontract,
        })
    }

    fn suite_variants() -> Vec<LiquidS4Config> {
        vec![
            LiquidS4Config::default(),
            LiquidS4Config {
                d_state: 4,
                n_ssm: 0,
                liquid_kernel: LiquidKernel::Kb,
                liquid_degree: 3,
                lcontract: Lcontract::Tanh,
                ..Default::default()
            },
            LiquidS4Config { d_state: 8, liquid_degree: 3, lcontract: Lcontract::Lecun, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded, validate_error};
    use tch::Device;

    fn built(cfg: &LiquidS4Config) -> (nn::VarStore, LiquidS4) {
        seeded(2, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = LiquidS4::build(vs.root(), 8, cfg, &BuildCtx::new(0, 2, 32)).unwrap();
            (vs, m)
        })
    }

    /// The liquid terms are there and are what the doc says: with degree 2, PB adds exactly
    /// `c_2 · u_t u_{t−1}` to the S4 output before the output stage (checked against an S4
    /// output computed from the same parameters), and KB feeds `u + β u_t u_{t−1}` to the
    /// kernel. Scaled inputs separate the orders: the liquid part grows as the square. (Δ = 1
    /// here; at the init's Δ ≤ 0.1 PB's term is about 1e-4 of the output.)
    #[test]
    fn liquid_terms_are_the_documented_correlations() {
        let x = seeded(3, || Tensor::randn([2, 20, 8], (Kind::Float, Device::Cpu)));
        for kind in [LiquidKernel::Polyb, LiquidKernel::Kb] {
            let (_vs, m) = built(&LiquidS4Config { d_state: 8, liquid_kernel: kind, ..Default::default() });
            // Δ = 1, so that b̄ is of order 1 and the liquid terms are not tiny (at Δ ≤ 0.1 PB's
            // c_2 ∝ Δ² is about 1e-4 of the output)
            let _ = tch::no_grad(|| m.ssm.inv_dt.shallow_clone().fill_(0.0));
            let pre = |u: &Tensor| {
                // y before the output stage, by the fast pieces
                let k = m.ssm.kernel().narrow(1, 0, u.size()[1]).to_kind(Kind::Float);
                let corr = u * Tensor::cat(&[u.narrow(1, 0, 1).zeros_like(), u.narrow(1, 0, u.size()[1] - 1)], 1);
                let c = m.coefficients()[0].to_kind(Kind::Float);
                let lin = fft_causal_conv(u, &k) + u * &m.skip;
                let liquid = match kind {
                    LiquidKernel::Polyb => &corr * &c,
                    LiquidKernel::Kb => fft_causal_conv(&(&corr * &c), &k),
                };
                (lin, liquid)
            };
            let (lin, liq) = tch::no_grad(|| pre(&x));
            let want = tch::no_grad(|| m.finish(&lin + &liq));
            let got = tch::no_grad(|| m.forward(&x, false));
            assert!(rel_err(&got, &want) < 1e-5, "{kind:?}: {:.2e}", rel_err(&got, &want));
            let share = liq.norm().double_value(&[]) / lin.norm().double_value(&[]);
            assert!(share > 1e-3, "{kind:?}: the liquid term is negligible ({share:.2e})");
            let (lin3, liq3) = tch::no_grad(|| pre(&(&x * 3.0)));
            assert!(rel_err(&lin3, &(&lin * 3.0)) < 1e-5 && rel_err(&liq3, &(&liq * 9.0)) < 1e-5);
        }
    }

    #[test]
    fn state_size_counts_the_correlation_history() {
        let (_vs, m) = built(&LiquidS4Config { d_state: 4, liquid_degree: 3, ..Default::default() });
        assert_eq!(m.state_size(10), 8 * 4 + 2 * 8);
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (bad, key) in [
            (r#"{ name = "liquid_s4", liquid_degree = 1 }"#, "liquid_degree"),
            (r#"{ name = "liquid_s4", liquid_kernel = "pb" }"#, "liquid_kernel"),
            (r#"{ name = "liquid_s4", lcontract = "relu" }"#, "lcontract"),
            (r#"{ name = "liquid_s4", d_state = 3 }"#, "d_state"),
            (r#"{ name = "liquid_s4", n_ssm = 5 }"#, "n_ssm"),
            (r#"{ name = "liquid_s4", allcombs = true }"#, "allcombs"),
        ] {
            let e = validate_error(bad);
            assert!(e.contains("model.mixer") && e.contains(key), "{bad}: {e}");
        }
    }
}
