//! `gss`: Gated State Spaces (Mehta, Gupta, Cutkosky & Neyshabur 2022, pseudocode 3.2;
//! lucidrains/gated-state-spaces-pytorch `GSS` with its `DSS` kernel).
//!
//! With the gate width `F = dim_expansion_factor·d` and the reduced SSM width `H`:
//!
//! ```text
//! u   = GELU(W_u x)                   W_u: d → F (no bias)       the gate branch
//! v   = GELU(W_v x)                   W_v: d → H (no bias)       the reduced SSM branch
//! w   = LayerNorm(v)                  (DSS's own norm, eps 1e-5)
//! y   = K * w + D ⊙ w                 (causal per-channel convolution, D ~ N(0, 1))
//! out = W_o ((W_g y) ⊙ u)             W_g: H → F (no bias), W_o: F → d (bias)
//! ```
//! The DSS kernel (DSS-EXP as lucidrains writes it: no Δ, one set of N complex poles shared by
//! the H channels, a complex `C` per channel):
//! `Λ_n = −exp(Λ_re,n) + i·exp(Λ_im,n)` (`dss_kernel_lambda_imag_exp = false`: `+ i·Λ_im,n`),
//! `c_hn = C_hn (e^{Λ_n} − 1)/Λ_n`, `K_h[l] = Re Σ_n c_hn e^{lΛ_n}`. Init as lucidrains:
//! `Λ_re, Λ_im, C_re, C_im, D ~ N(0, 1)`, LayerNorm weight 1 / bias 0, Linears PyTorch's default
//! U(±1/√fan_in) (and W_o's bias).
//!
//! Departures (DECISIONS, "gss"): the GSS layer's own LayerNorm and residual
//! (`x ← x + out(LayerNorm(x))`) are zoology-rs's block around the mixer (LN1 and the residual
//! add), so the mixer starts at `u, v`; `reverse_seq` (a flipped, anti-causal layer) is left
//! out. `H` defaults to `d/4` (`dss_kernel_h = 0`), the paper's ratio (E = 1024, H = 256);
//! lucidrains fixes `H = 256` whatever the width, which is not a reduction at the widths used
//! here.
//!
//! Forms: fast = the kernel (f64, `O(H·N·L)`) and an FFT convolution; reference = the modal
//! recurrence `s_t = e^{Λ} ⊙ s_{t−1} + w_t`, `y_t = Re(c·s_t) + D w_t`, token by token in f64
//! with its own complex arithmetic, and the projections written out; step = the same
//! recurrence (`modal::Modes::step`): the state is N complex = 2N reals per SSM channel,
//! `2·H·N` per sequence.
//!
//! FLOPs ([`crate::flops`] convention): per token `2·d·F + 2·d·H + 2·H·F + 2·F·d`; per
//! sequence `fft_conv(H, L)`; per batch the kernel `modal_kernel(H, N, L) = 8·H·N·L` and its
//! transform `fft_filter(H, L)`. Decode: the per-token terms plus `modal_step(H, N) = 12·H·N`.
//! Prefill is the step form.

use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::conv::fft_causal_conv;
use super::common::diag64::Modes64;
use super::common::layers::Linear;
use super::common::torch_init::torch_linear;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GssConfig {
    /// Gate width F = dim_expansion_factor·d (lucidrains and the paper: 4).
    pub dim_expansion_factor: f64,
    /// Reduced SSM width H; 0 = d/4 (the paper's ratio).
    pub dss_kernel_h: i64,
    /// Complex poles N of the DSS kernel (lucidrains: 512).
    pub dss_kernel_n: i64,
    /// Im Λ = exp(Λ_im) (true, lucidrains' default) or Λ_im.
    pub dss_kernel_lambda_imag_exp: bool,
}

impl Default for GssConfig {
    fn default() -> Self {
        GssConfig { dim_expansion_factor: 4.0, dss_kernel_h: 0, dss_kernel_n: 512, dss_kernel_lambda_imag_exp: true }
    }
}

#[derive(Debug)]
pub struct Gss {
    to_u: Linear,
    to_v: Linear,
    norm_w: Tensor,
    norm_b: Tensor,
    lambda_re: Tensor,
    lambda_im: Tensor,
    c_re: Tensor,
    c_im: Tensor,
    skip: Tensor,
    to_gate: Linear,
    to_out: Linear,
    h: i64,
    n: i64,
    imag_exp: bool,
}

impl Gss {
    fn modes(&self) -> Modes64 {
        let a = -self.lambda_re.to_kind(Kind::Double).exp().unsqueeze(0); // [1, N]
        let li = self.lambda_im.to_kind(Kind::Double);
        let b = if self.imag_exp { li.exp() } else { li }.unsqueeze(0);
        let (a, b) = (a.expand([self.h, self.n], false), b.expand([self.h, self.n], false));
        Modes64::zoh(&a, &b, &self.c_re.to_kind(Kind::Double), &self.c_im.to_kind(Kind::Double))
    }

    fn branches(&self, x: &Tensor) -> (Tensor, Tensor) {
        let u = self.to_u.forward(x).gelu("none");
        let v = self.to_v.forward(x).gelu("none");
        let w = v.layer_norm([self.h].as_slice(), Some(&self.norm_w), Some(&self.norm_b), 1e-5, false);
        (u, w)
    }

    fn finish(&self, y: &Tensor, u: &Tensor) -> Tensor {
        self.to_out.forward(&(self.to_gate.forward(y) * u))
    }
}

impl Mixer for Gss {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let l = x.size()[1];
        let (u, w) = self.branches(x);
        let k = self.modes().kernel(l).to_kind(x.kind());
        let y = fft_causal_conv(&w, &k) + &w * &self.skip;
        self.finish(&y, &u)
    }

    /// Projections, GELU and LayerNorm written out, the DSS recurrence token by token (f64).
    fn reference(&self, x: &Tensor) -> Tensor {
        let gelu = |t: Tensor| &t * 0.5 * ((&t / 2f64.sqrt()).erf() + 1.0);
        let u = gelu(x.matmul(&self.to_u.ws.tr()));
        let v = gelu(x.matmul(&self.to_v.ws.tr()));
        let mean = v.mean_dim([-1i64].as_slice(), true, v.kind());
        let var = (&v - &mean).square().mean_dim([-1i64].as_slice(), true, v.kind());
        let w = (&v - mean) / (var + 1e-5).sqrt() * &self.norm_w + &self.norm_b;
        // poles and coefficients in real arithmetic: c = C (e^Λ − 1)/Λ
        let a = -self.lambda_re.to_kind(Kind::Double).exp();
        let li = self.lambda_im.to_kind(Kind::Double);
        let b = if self.imag_exp { li.exp() } else { li };
        let modes = Modes64::zoh(
            &a.unsqueeze(0),
            &b.unsqueeze(0),
            &self.c_re.to_kind(Kind::Double),
            &self.c_im.to_kind(Kind::Double),
        );
        let y = modes.recurrence(&w).to_kind(x.kind()) + &w * &self.skip;
        let g = y.matmul(&self.to_gate.ws.tr()) * u;
        g.matmul(&self.to_out.ws.tr()) + self.to_out.bs.as_ref().unwrap()
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let z = Tensor::zeros([batch, self.h, self.n], (Kind::Float, self.skip.device()));
        MixerState::new(vec![z.copy(), z])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let (u, w) = self.branches(x_t);
        let modes = self.modes().to_modes(self.h);
        let (mut re, mut im) = (state.tensors[0].shallow_clone(), state.tensors[1].shallow_clone());
        let y = modes.step(&mut re, &mut im, &w).to_kind(x_t.kind()) + &w * &self.skip;
        state.tensors = vec![re, im];
        self.finish(&y, &u)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        2 * self.h * self.n
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, modal_kernel, modal_step, MixerFlops};
        let tok = self.to_u.flops() + self.to_v.flops() + self.to_gate.flops() + self.to_out.flops();
        let fwd = seq_len as f64 * tok + fft_conv(self.h, seq_len);
        let batch = fft_filter(self.h, seq_len) + modal_kernel(self.h, self.n, seq_len);
        let step = tok + modal_step(self.h, self.n);
        MixerFlops::stepwise(fwd, batch, seq_len, |_| step)
    }
}

impl MixerKind for Gss {
    type Config = GssConfig;
    const NAME: &'static str = "gss";
    const ABOUT: &'static str =
        "Gated State Spaces: DSS kernel on a reduced width H inside a GELU-gated unit of width F = 4d";
    const STATE_FORMULA: &'static str = "2·H·N, H = d/4 (N complex DSS modes per SSM channel)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &GssConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        float_in(field, "dim_expansion_factor", c.dim_expansion_factor, 0.0, 64.0, "4")?;
        if ((c.dim_expansion_factor * d as f64) as i64) < 1 {
            return Err(config_err(
                format!("{field}.dim_expansion_factor"),
                format!("gives a gate width ⌊{} · {d}⌋ < 1", c.dim_expansion_factor),
            ));
        }
        int_in(field, "dss_kernel_n", c.dss_kernel_n, 1, 8192, "512")?;
        if c.dss_kernel_h == 0 && d < 4 {
            return Err(config_err(
                format!("{field}.dss_kernel_h"),
                format!("0 means d/4, which is 0 at d_model = {d}: set it to at least 1"),
            ));
        }
        if c.dss_kernel_h != 0 {
            int_in(field, "dss_kernel_h", c.dss_kernel_h, 1, MAX_SIZE, "0 (d/4)")?;
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &GssConfig, _ctx: &BuildCtx) -> Result<Self> {
        let f = (c.dim_expansion_factor * d as f64) as i64;
        let h = if c.dss_kernel_h == 0 { d / 4 } else { c.dss_kernel_h };
        let n = c.dss_kernel_n;
        let r = |name: &str, shape: &[i64]| p.var(name, shape, nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let to_u = torch_linear(&p / "to_u", d, f, false);
        let to_v = torch_linear(&p / "to_v", d, h, false);
        let dss = &p / "dss";
        let norm_w = dss.var("norm_weight", &[h], nn::Init::Const(1.0));
        let norm_b = dss.var("norm_bias", &[h], nn::Init::Const(0.0));
        let (lambda_re, lambda_im) = (r("dss_lambda_real", &[n]), r("dss_lambda_imag", &[n]));
        let (c_re, c_im) = (r("dss_c_real", &[h, n]), r("dss_c_imag", &[h, n]));
        let skip = r("dss_param_d", &[h]);
        let to_gate = torch_linear(&p / "to_gate", h, f, false);
        let to_out = torch_linear(&p / "to_out", f, d, true);
        Ok(Gss {
            to_u,
            to_v,
            norm_w,
            norm_b,
            lambda_re,
            lambda_im,
            c_re,
            c_im,
            skip,
            to_gate,
            to_out,
            h,
            n,
            imag_exp: c.dss_kernel_lambda_imag_exp,
        })
    }

    fn suite_variants() -> Vec<GssConfig> {
        vec![
            GssConfig::default(),
            GssConfig {
                dim_expansion_factor: 2.0,
                dss_kernel_h: 8,
                dss_kernel_n: 16,
                dss_kernel_lambda_imag_exp: false,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded, validate_error};
    use tch::Device;

    /// The DSS kernel against its closed form written per tap with complex numbers on the host:
    /// `K_h[l] = Re Σ_n C_hn (e^{Λ_n} − 1)/Λ_n e^{lΛ_n}`.
    #[test]
    fn dss_kernel_is_the_closed_form() {
        let (_vs, m) = seeded(1, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = GssConfig { dss_kernel_n: 3, dss_kernel_h: 2, ..Default::default() };
            let m = Gss::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 8)).unwrap();
            (vs, m)
        });
        let k = Vec::<f64>::try_from(m.modes().kernel(5).flatten(0, -1)).unwrap();
        let v = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let (lr, li, cr, ci) = (v(&m.lambda_re), v(&m.lambda_im), v(&m.c_re), v(&m.c_im));
        for h in 0..2 {
            for l in 0..5 {
                let mut want = 0.0;
                for n in 0..3 {
                    // complex arithmetic by hand: z = Λ, c = C (e^z − 1)/z, term = c e^{lz}
                    let (a, b) = (-lr[n].exp(), li[n].exp());
                    let ez = (a.exp() * b.cos(), a.exp() * b.sin());
                    let num = (ez.0 - 1.0, ez.1);
                    let den = a * a + b * b;
                    let w = ((num.0 * a + num.1 * b) / den, (num.1 * a - num.0 * b) / den);
                    let c = (cr[h * 3 + n] * w.0 - ci[h * 3 + n] * w.1, cr[h * 3 + n] * w.1 + ci[h * 3 + n] * w.0);
                    let el = ((l as f64 * a).exp() * (l as f64 * b).cos(), (l as f64 * a).exp() * (l as f64 * b).sin());
                    want += c.0 * el.0 - c.1 * el.1;
                }
                let got = k[h * 5 + l];
                assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "h={h} l={l}: {got} vs {want}");
            }
        }
    }

    /// Widths: F = 4d, H = d/4; parameter shapes as lucidrains'.
    #[test]
    fn widths_follow_the_paper() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = seeded(0, || Gss::build(vs.root(), 64, &GssConfig::default(), &BuildCtx::new(0, 2, 8)).unwrap());
        let v = vs.variables();
        assert_eq!(v["to_u.weight"].size(), vec![256, 64]);
        assert_eq!(v["to_v.weight"].size(), vec![16, 64]);
        assert_eq!(v["to_gate.weight"].size(), vec![256, 16]);
        assert_eq!(v["to_out.weight"].size(), vec![64, 256]);
        assert_eq!(v["dss_c_real"].size(), vec![16, 512]);
        assert_eq!(v["dss_lambda_real"].size(), vec![512]);
        assert!(v["to_u.weight"].abs().max().double_value(&[]) <= 1.0 / 8.0);
        let x = seeded(2, || Tensor::randn([1, 6, 64], (Kind::Float, Device::Cpu)));
        let m = seeded(0, || {
            Gss::build(nn::VarStore::new(Device::Cpu).root(), 64, &GssConfig::default(), &BuildCtx::new(0, 2, 8))
                .unwrap()
        });
        let (fast, slow) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
        assert!(rel_err(&fast, &slow) < 1e-5, "{:.2e}", rel_err(&fast, &slow));
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (bad, key) in [
            (r#"{ name = "gss", dss_kernel_n = 0 }"#, "dss_kernel_n"),
            (r#"{ name = "gss", dss_kernel_h = -2 }"#, "dss_kernel_h"),
            (r#"{ name = "gss", dim_expansion_factor = 0.0 }"#, "dim_expansion_factor"),
            (r#"{ name = "gss", dim_expansion_factor = 0.01 }"#, "dim_expansion_factor"),
            (r#"{ name = "gss", reverse_seq = true }"#, "reverse_seq"),
        ] {
            let e = validate_error(bad);
            assert!(e.contains("model.mixer") && e.contains(key), "{bad}: {e}");
        }
    }
}
