//! `s4`: the S4 layer (Gu, Goel & Ré 2022; state-spaces/s4 `models/s4/s4.py`, `S4Block` around
//! `FFTConv` with the `SSMKernelDPLR` kernel, at the repository's defaults).
//!
//! Per channel (`d` channels, state size `N = d_state`), with the DPLR HiPPO-LegS SSM of
//! [`crate::mixers::common::dplr`] (bilinear discretisation, rank-1 low-rank part, `N/2`
//! complex modes kept):
//!
//! ```text
//! K_j = C Ā^j B̄,  j < L_max            (the SSM's impulse response; trained C̃ = C(I − Ā^{L_max}))
//! y   = K * u + D ⊙ u                   (causal convolution per channel; D ~ N(0, 1))
//! out = GLU(W_o · GELU(y) + b_o)        (S4Block's final_act = "glu": W_o d → 2d, a ⊙ σ(g))
//! ```
//! `L_max` is the model's longest sequence (`max_seq_len`, S4's `l_max`); an input may not be
//! longer (the kernel, like S4's, is defined up to `L_max`; the step form has no limit).
//! `W_o, b_o` have PyTorch's Linear init U(±1/√d) (S4's `LinearActivation` with no
//! initializer); the SSM's init is S4's (`dplr`). Defaults are S4's layer config
//! (`configs/model/layer/s4.yaml`: `d_state` 64, `n_ssm` 1, `dt_transform = "softplus"`,
//! Δ ∈ [0.001, 0.1], rank 1, `init = "legs"`); `n_ssm = 0` and `dt_transform = "exp"` give
//! s4.py's module defaults (one SSM per channel, `Δ = exp(inv_dt)`). Not offered: the other
//! inits (`fout`, `hippo`, `diag-*`: `long_conv` has S4D), rank > 1, `channels` > 1,
//! bidirectional kernels, dropout, and S4's per-parameter learning rates (lr 0.001, wd 0 on
//! Δ, A, B: the trainer here has one optimizer group, as Zoology).
//!
//! Forms:
//! - fast (training): the kernel by S4's algorithm (generating function at the `L_max`-th
//!   roots of unity by a Cauchy kernel and the Woodbury identity, inverse real FFT; once per
//!   batch, f64), then an FFT convolution (zero-padded to 2L);
//! - reference: the recurrence `x_t = Ā x_{t−1} + B̄ u_t`, `y_t = C x_t` run token by token with
//!   the dense discretised `Ā` (explicit inverses, `Ā^{L_max}` by repeated products, f64), and
//!   the output stage written out;
//! - step: the same recurrence with the dense real `Ā [N, N]` per channel (S4's `dense` step
//!   mode, in the real coordinates `[Re s; Im s]` of the conjugate-symmetric state): the state
//!   is `N` reals per channel, `d·N` per sequence. The dense system (solves and a matrix
//!   power, f64) is rebuilt from the parameters at every step call; S4 builds it once in
//!   `setup_step`.
//!
//! FLOPs ([`crate::flops`] convention): per sequence the FFT convolution `fft_conv(d, L)` and
//! the output Linear `2·d·2d` per token; per batch the kernel ([`dplr::kernel_flops`]:
//! `d·((⌊L_max/2⌋+1)·(40·N + 24) + 2.5·L_max·log₂L_max)`) and its transform
//! `fft_filter(d, L)`. Decode: `d·(2N² + 4N)` for the dense step plus the output Linear; the
//! dense system is parameter-only work, cached by the convention. Prefill is the step form.

use super::common::bounds::{float_in, int_in};
use super::common::conv::fft_causal_conv;
use super::common::dplr::{self, Dplr};
use super::common::layers::Linear;
use super::common::torch_init::torch_linear;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S4Config {
    /// State size N per channel (even: N/2 complex conjugate pairs). S4: 64.
    pub d_state: i64,
    /// Δ at init is log-uniform in [dt_min, dt_max].
    pub dt_min: f64,
    pub dt_max: f64,
    /// `Δ = softplus(inv_dt)` (`softplus`, S4's layer config) or `exp(inv_dt)` (`exp`, s4.py's
    /// module default).
    pub dt_transform: DtTransform,
    /// Trained copies of (Λ, B, P) shared across channels (must divide d); 0 = one per channel
    /// (s4.py's `None`). S4's layer config: 1.
    pub n_ssm: i64,
}

/// S4's `dt_transform`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtTransform {
    Exp,
    Softplus,
}

impl Default for S4Config {
    fn default() -> Self {
        S4Config { d_state: 64, dt_min: 0.001, dt_max: 0.1, dt_transform: DtTransform::Softplus, n_ssm: 1 }
    }
}

#[derive(Debug)]
pub struct S4 {
    ssm: Dplr,
    skip: Tensor,
    output: Linear,
    d: i64,
    n: i64,
}

/// Checks `d_state` (even, ≥ 2), `n_ssm` (0 or a divisor of the `channels`), the Δ range and
/// that the model has a longest length.
#[allow(clippy::too_many_arguments)]
pub(crate) fn validate_dplr(
    field: &str,
    d_state: i64,
    n_ssm: i64,
    channels: i64,
    dt_min: f64,
    dt_max: f64,
    ctx: &BuildCtx,
    eg_n: &str,
) -> Result<()> {
    if n_ssm < 0 || (n_ssm > 0 && channels % n_ssm != 0) {
        return Err(config_err(
            format!("{field}.n_ssm"),
            format!("must divide the SSM's {channels} channels, or be 0 for one SSM per channel (got {n_ssm})"),
        ));
    }
    int_in(field, "d_state", d_state, 2, 1024, eg_n)?;
    if d_state % 2 != 0 {
        return Err(config_err(
            format!("{field}.d_state"),
            format!("must be even (N/2 complex conjugate pairs), e.g. {eg_n} (got {d_state})"),
        ));
    }
    float_in(field, "dt_min", dt_min, 0.0, f64::INFINITY, "0.001")?;
    float_in(field, "dt_max", dt_max, 0.0, f64::INFINITY, "0.1")?;
    if dt_max < dt_min {
        return Err(config_err(format!("{field}.dt_max"), format!("must be ≥ dt_min = {dt_min} (got {dt_max})")));
    }
    if ctx.max_seq_len < 1 {
        return Err(config_err(
            field.to_string(),
            "the S4 kernel is defined up to the longest sequence length, which must be ≥ 1 (model.max_position_embeddings / data seq_len)",
        ));
    }
    Ok(())
}

impl S4 {
    fn kernel(&self, l: i64, kind: Kind) -> Tensor {
        assert!(
            l <= self.ssm.l_max,
            "s4: the kernel is defined up to the model's longest sequence {} but the input has length {l}",
            self.ssm.l_max
        );
        self.ssm.kernel().narrow(1, 0, l).to_kind(kind)
    }

    fn finish(&self, y: Tensor) -> Tensor {
        self.output.forward(&y.gelu("none")).glu(-1)
    }
}

impl Mixer for S4 {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let l = u.size()[1];
        self.finish(fft_causal_conv(u, &self.kernel(l, u.kind())) + u * &self.skip)
    }

    /// The dense recurrence token by token, then GELU, the Linear and the GLU written out.
    fn reference(&self, u: &Tensor) -> Tensor {
        let y = self.ssm.recurrence_reference(u).to_kind(u.kind()) + u * &self.skip;
        let g = &y * 0.5 * ((&y / 2f64.sqrt()).erf() + 1.0); // exact GELU
        let z = g.matmul(&self.output.ws.tr()) + self.output.bs.as_ref().unwrap();
        z.narrow(-1, 0, self.d) * z.narrow(-1, self.d, self.d).sigmoid()
    }

    fn init_state(&self, batch: i64) -> MixerState {
        MixerState::new(vec![Tensor::zeros([batch, self.d, self.n], (self.skip.kind(), self.skip.device()))])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let (abar, bbar, c) = self.ssm.dense_real(true);
        let k = x_t.kind();
        let (abar, bbar, c) = (abar.to_kind(k), bbar.to_kind(k), c.to_kind(k));
        let x = abar.unsqueeze(0).matmul(&state.tensors[0].unsqueeze(-1)).squeeze_dim(-1) + bbar * x_t.unsqueeze(-1);
        let y = (&x * c).sum_dim_intlist([-1i64].as_slice(), false, k) + x_t * &self.skip;
        state.tensors[0] = x;
        self.finish(y)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        self.d * self.n
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

impl MixerKind for S4 {
    type Config = S4Config;
    const NAME: &'static str = "s4";
    const ABOUT: &'static str =
        "S4: DPLR HiPPO-LegS SSM kernel (Cauchy + Woodbury at roots of unity), FFT conv, GELU → GLU output";
    const STATE_FORMULA: &'static str = "d·N (dense real N×N step per channel)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &S4Config, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        validate_dplr(field, c.d_state, c.n_ssm, d, c.dt_min, c.dt_max, ctx, "64")
    }

    fn build(p: nn::Path, d: i64, c: &S4Config, ctx: &BuildCtx) -> Result<Self> {
        let s = if c.n_ssm == 0 { d } else { c.n_ssm };
        let softplus = c.dt_transform == DtTransform::Softplus;
        let ssm = Dplr::new(&p / "kernel", d, s, c.d_state, c.dt_min, c.dt_max, softplus, ctx.max_seq_len);
        let skip = p.var("D", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let output = torch_linear(&p / "output_linear", d, 2 * d, true);
        Ok(S4 { ssm, skip, output, d, n: c.d_state })
    }

    fn suite_variants() -> Vec<S4Config> {
        vec![
            S4Config::default(),
            S4Config { d_state: 4, dt_min: 0.01, dt_max: 0.5, dt_transform: DtTransform::Exp, n_ssm: 0 },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded, validate_error};
    use tch::Device;

    /// The whole layer at a longer length than the suite's (L_max = 128, inputs of 128 and
    /// 100): the FFT form against the dense recurrence, and the step form after a prompt.
    #[test]
    fn fft_form_matches_the_recurrence_at_length_128() {
        let (m, x) = seeded(8, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = S4Config { d_state: 16, n_ssm: 2, ..Default::default() };
            let m = S4::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 128)).unwrap();
            (m, Tensor::randn([2, 128, 8], (Kind::Float, Device::Cpu)))
        });
        for l in [128i64, 100] {
            let x = x.narrow(1, 0, l);
            let (fast, slow) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
            assert!(rel_err(&fast, &slow) < 1e-5, "L={l}: {:.2e}", rel_err(&fast, &slow));
        }
        let stepped = tch::no_grad(|| {
            let (pre, mut st) = m.prefill(&x.narrow(1, 0, 90));
            let mut ys = vec![pre];
            for t in 90..128 {
                ys.push(m.step(&mut st, &x.select(1, t)).unsqueeze(1));
            }
            Tensor::cat(&ys, 1)
        });
        let fast = tch::no_grad(|| m.forward(&x, false));
        assert!(rel_err(&stepped, &fast) < 1e-4, "step: {:.2e}", rel_err(&stepped, &fast));
    }

    #[test]
    fn output_stage_is_s4blocks_glu() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = seeded(1, || S4::build(vs.root(), 64, &S4Config::default(), &BuildCtx::new(0, 2, 16)).unwrap());
        let v = vs.variables();
        let (w, b) = (&v["output_linear.weight"], &v["output_linear.bias"]);
        assert_eq!(w.size(), vec![128, 64]);
        let bound = 1.0 / 8.0;
        assert!(w.abs().max().double_value(&[]) <= bound && w.abs().max().double_value(&[]) > 0.9 * bound);
        assert!(b.abs().max().double_value(&[]) <= bound);
        assert!((v["D"].std(true).double_value(&[]) - 1.0).abs() < 0.3);
        let dt = v["kernel.inv_dt"].softplus();
        assert_eq!(v["kernel.b_re"].size(), vec![1, 32], "n_ssm = 1: one shared B");
        assert!(dt.min().double_value(&[]) >= 0.999e-3 && dt.max().double_value(&[]) <= 0.1001);
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (bad, key) in [
            (r#"{ name = "s4", d_state = 7 }"#, "d_state"),
            (r#"{ name = "s4", d_state = 0 }"#, "d_state"),
            (r#"{ name = "s4", dt_min = 0.0 }"#, "dt_min"),
            (r#"{ name = "s4", dt_min = 0.5, dt_max = 0.1 }"#, "dt_max"),
            (r#"{ name = "s4", mode = "diag" }"#, "mode"),
            (r#"{ name = "s4", n_ssm = 3 }"#, "n_ssm"),
            (r#"{ name = "s4", dt_transform = "relu" }"#, "dt_transform"),
        ] {
            let e = validate_error(bad);
            assert!(e.contains("model.mixer") && e.contains(key), "{bad}: {e}");
        }
    }
}
