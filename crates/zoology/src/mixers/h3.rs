//! `h3`: Hungry Hungry Hippos (Fu et al. 2023; Zoology `H3`).
//!
//! With `q, k, v = W_q u, W_k u, W_v u` (d → d, bias), `H = d / head_dim` heads of width
//! `p = head_dim` and `N = d_state`:
//! ```text
//! k̃      = SSM_shift(k) + D_k ⊙ k             shift SSM = causal FIR with N taps (its C), per channel
//! kv[i,j] = k̃_{h,i} · v_{h,j}                   outer product per head: H·p² channels
//! s       = SSM_diag(kv) + D_h ⊙ kv             S4D kernel per head, shared by the head's p² channels
//! y_{h,j} = Σ_i q_{h,i} · s[i, j]
//! out     = W_o y + b_o
//! ```
//! The shift SSM has `A` = shift matrix, input vector `B` and output vector `C` (both `[d, N]`),
//! so its kernel is the correlation `k[j] = Σ_{n<N−j} B_n C_{n+j}` (N taps) and its state is the
//! shift register of past inputs. As in Zoology's `SSKernelShift`, `B` starts at `e₁` (so
//! `k = C`) and is trained, and the diagonal SSM's `B` (`SSKernelDiag`, starts at 1) is trained
//! too; `trained_b = false` fixes both at their initial values (`k = C`, `B = 1`), the
//! parametrisation of S4D and of most reimplementations. The diagonal SSM is S4D
//! (`modal::S4d`: N/2 complex-conjugate mode pairs, S4D-Lin init, f32) discretised, as H3's and
//! Zoology's `SSKernelDiag` do by default (`disc='bilinear'`), by the bilinear transform:
//! `K_h[t] = 2·Re Σ_n C_n Δ/(1 − ΔA_n/2) · ((1 + ΔA_n/2)/(1 − ΔA_n/2))^t`;
//! `discretization = "zoh"` gives zero-order hold, `2·Re Σ_n C_n (e^{ΔA_n} − 1)/A_n · e^{ΔA_n t}`
//! (S4D's `s4d.py`). The two differ most for the fast-rotating high modes, which
//! `d_state = L` (Zoology Figure 2) has many of. Defaults follow H3 / Zoology (`d_state` 64,
//! `head_dim` 1); Zoology Figure 2 used `d_state = L`, `head_dim = 2`.
//!
//! Init as Zoology's `_init_weights` leaves it: q, k, v and the output projection
//! (`output_linear`, whose name escapes Zoology's `out_proj` rule) N(0, 0.02), zero bias; the
//! shift SSM's C as a Conv1d (U(±1/√N)); both D skips N(0, 1).
//!
//! Forms: training by FFT (both convolutions zero-padded to 2L: the shift FIR has N taps, and
//! N may be as long as L, where a direct depthwise conv1d is slow on CPU);
//! reference by explicit FIR tap sums and the diagonal recurrence run token by token; step by
//! the SSM recurrences with explicit state: the shift register (previous N−1 values of k, d·(N−1))
//! and the diagonal state (N/2 complex = N reals per kv channel, H·p²·N = d·p·N), i.e.
//! `d·(N−1) + d·p·N` real elements, independent of L.
//!
//! FLOPs ([`crate::flops`] convention): per token 4 projections `8·d²` and the readout
//! `Σ_i q_i s_ij` `2·d·p`; per sequence two FFT convolutions, the shift (`fft_conv(d, L)`) and
//! the diagonal SSM over `d·p` channels (`fft_conv(d·p, L)`), each `≈ 10·L·log₂(2L)` per
//! channel; per batch the shift kernel (`2·d·N²` when B is trained), the SSM kernel
//! `8·H·(N/2)·L` and the kernels' FFTs. Decode: `8·d² + 2·d·p` plus the shift FIR `2·d·N` and
//! the modal step `12·d·p·N/2`, constant in L. Prefill is the step form.

use super::common::bounds::{int_in, MAX_SIZE};
use super::common::conv::{fft_causal_conv, fir_step, short_conv_reference};
use super::common::layers::Linear;
use super::common::modal::{Discretization, S4d};
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H3Config {
    /// State size N of both SSMs (even; the diagonal SSM has N/2 complex pairs).
    pub d_state: i64,
    /// Head width p (divides d_model); the diagonal SSM runs on H·p² = d·p channels.
    pub head_dim: i64,
    /// Discretisation of the diagonal SSM: `bilinear` (H3 / Zoology) or `zoh`.
    pub discretization: Discretization,
    /// Train both SSMs' `B` (Zoology's H3) or keep them at `e₁` and 1.
    pub trained_b: bool,
}

impl Default for H3Config {
    fn default() -> Self {
        H3Config { d_state: 64, head_dim: 1, discretization: Discretization::Bilinear, trained_b: true }
    }
}

#[derive(Debug)]
pub struct H3 {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    shift_c: Tensor,
    shift_b: Option<Tensor>,
    shift_d: Tensor,
    ssm: S4d,
    skip: Tensor,
    d: i64,
    p: i64,
    n: i64,
}

impl H3 {
    fn heads(&self) -> i64 {
        self.d / self.p
    }
    /// `k̃ ⊗ v` per head: `[B, L, H, p, p]`.
    fn outer(&self, kt: &Tensor, v: &Tensor) -> Tensor {
        let (b, l, _) = kt.size3().unwrap();
        let (h, p) = (self.heads(), self.p);
        kt.view([b, l, h, p, 1]) * v.view([b, l, h, 1, p])
    }
    /// `Σ_i q_{h,i} s[h, i, j]` → `[B, L, d]`, then the output projection.
    fn readout(&self, q: &Tensor, s: &Tensor) -> Tensor {
        let (b, l, _) = q.size3().unwrap();
        let y = (q.view([b, l, self.heads(), self.p, 1]) * s).sum_dim_intlist([3i64].as_slice(), false, q.kind());
        self.out_proj.forward(&y.reshape([b, l, self.d]))
    }
    /// The shift SSM's impulse response `k[j] = Σ_{n<N−j} B_n C_{n+j}`, `[d, N]` (`k = C` when
    /// B is fixed at `e₁`), computed as a depthwise cross-correlation.
    fn shift_kernel(&self) -> Tensor {
        match &self.shift_b {
            None => self.shift_c.shallow_clone(),
            Some(b) => {
                let c = self.shift_c.unsqueeze(0).constant_pad_nd([0, self.n - 1]); // [1, d, 2N−1]
                c.conv1d(&b.unsqueeze(1), None::<&Tensor>, [1], [0], [1], self.d).squeeze_dim(0)
            }
        }
    }
    /// The same kernel as FIR taps (tap `N−1−j` multiplies the input `j` steps back).
    fn shift_taps(&self) -> Tensor {
        self.shift_kernel().flip([1])
    }
    /// Per-head skip broadcast over `[.., H, p, p]`.
    fn skip5(&self) -> Tensor {
        self.skip.view([self.heads(), 1, 1])
    }
}

impl Mixer for H3 {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let (b, l, _) = u.size3().unwrap();
        let (q, k, v) = (self.q_proj.forward(u), self.k_proj.forward(u), self.v_proj.forward(u));
        // shift SSM impulse response h[j] = C tap (N−1−j), zero-padded to L taps, by FFT
        let shift_h = self.shift_kernel().constant_pad_nd([0, (l - self.n).max(0)]);
        let kt = fft_causal_conv(&k, &shift_h) + &k * &self.shift_d;
        let kv = self.outer(&kt, &v);
        let pp = self.p * self.p;
        let kern = self.ssm.modes().kernel(l).to_kind(u.kind()).repeat_interleave_self_int(pp, 0, None::<i64>);
        let s =
            fft_causal_conv(&kv.reshape([b, l, self.heads() * pp]), &kern).view([b, l, self.heads(), self.p, self.p]);
        self.readout(&q, &(s + &kv * self.skip5()))
    }

    fn reference(&self, u: &Tensor) -> Tensor {
        let (q, k, v) = (self.q_proj.forward(u), self.k_proj.forward(u), self.v_proj.forward(u));
        let kt = short_conv_reference(&k, &self.shift_taps(), None) + &k * &self.shift_d;
        let kv = self.outer(&kt, &v); // [B, L, H, p, p]
        let s = self.ssm.modes().scan_reference(&kv.permute([0, 1, 3, 4, 2])).permute([0, 1, 4, 2, 3]);
        self.readout(&q, &(s + &kv * self.skip5()))
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let shift = Tensor::zeros([batch, self.n - 1, self.d], (self.shift_c.kind(), self.shift_c.device()));
        let (re, im) = self.ssm.modes().zero_state(&[batch, self.p, self.p]);
        MixerState::new(vec![shift, re, im])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let u = x_t.unsqueeze(1);
        let (q, k, v) = (self.q_proj.forward(&u), self.k_proj.forward(&u), self.v_proj.forward(&u));
        let mut window = state.tensors[0].shallow_clone();
        let kt = fir_step(&mut window, &k.squeeze_dim(1), &self.shift_taps(), None) + k.squeeze_dim(1) * &self.shift_d;
        let kv = self.outer(&kt.unsqueeze(1), &v).squeeze_dim(1); // [B, H, p, p]
        let (mut re, mut im) = (state.tensors[1].shallow_clone(), state.tensors[2].shallow_clone());
        let s = self
            .ssm
            .modes()
            .step(&mut re, &mut im, &kv.permute([0, 2, 3, 1]))
            .permute([0, 3, 1, 2])
            .to_kind(x_t.kind());
        state.tensors = vec![window, re, im];
        self.readout(&q, &(s + &kv * self.skip5()).unsqueeze(1)).squeeze_dim(1)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        self.d * (self.n - 1) + self.d * self.p * self.n
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        use crate::flops::{fft_conv, fft_filter, fir, modal_kernel, modal_step, MixerFlops};
        let (d, dp, n, l) = (self.d, self.d * self.p, self.n, seq_len as f64);
        let proj = self.q_proj.flops() + self.k_proj.flops() + self.v_proj.flops() + self.out_proj.flops();
        let readout = 2.0 * dp as f64;
        let fwd = l * (proj + readout) + fft_conv(d, seq_len) + fft_conv(dp, seq_len);
        let shift_kernel = if self.shift_b.is_some() { 2.0 * (d * n * n) as f64 } else { 0.0 };
        let per_batch = shift_kernel
            + fft_filter(d, seq_len)
            + modal_kernel(self.heads(), n / 2, seq_len)
            + fft_filter(dp, seq_len);
        let tok = proj + readout + fir(d, n) + modal_step(dp, n / 2);
        MixerFlops::stepwise(fwd, per_batch, seq_len, |_| tok)
    }

    /// Zoology's `H3.state_size`: `d_model · d_state` (whatever `head_dim`).
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(self.d * self.n)
    }
}

impl MixerKind for H3 {
    type Config = H3Config;
    const NAME: &'static str = "h3";
    const ABOUT: &'static str =
        "H3: q ⊙ diagSSM(shiftSSM(k) ⊗ v) with S4D diagonal SSM, head_dim outer product, FFT training";
    const STATE_FORMULA: &'static str =
        "d·(N−1) + d·p·N (shift register + N/2 complex diag modes per kv channel, p = head_dim)";
    const CONSTANT_STATE: bool = true;

    /// Parameters: four d → d projections, the shift SSM's C (and B when trained) and D, the
    /// diagonal SSM over d / head_dim channels and its skip.
    fn memory(c: &H3Config, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        let (n, ch) = (c.d_state, d / c.head_dim.max(1));
        let shift = (d * n * if c.trained_b { 2 } else { 1 } + d) as f64;
        let p = 4.0 * linear_params(d, d, true) + shift + S4d::params(ch, n, c.trained_b) + ch as f64;
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &H3Config, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "d_state", c.d_state, 2, MAX_SIZE, "64")?;
        if c.d_state % 2 != 0 {
            return Err(config_err(
                format!("{field}.d_state"),
                format!("must be even and ≥ 2 (N/2 complex conjugate pairs), got {}", c.d_state),
            ));
        }
        if c.head_dim < 1 || d % c.head_dim != 0 {
            return Err(config_err(
                format!("{field}.head_dim"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.head_dim),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &H3Config, ctx: &BuildCtx) -> Result<Self> {
        let n = c.d_state;
        let bound = 1.0 / (n as f64).sqrt();
        Ok(H3 {
            q_proj: Linear::new(&p / "q_proj", d, d, true, ctx.init_std),
            k_proj: Linear::new(&p / "k_proj", d, d, true, ctx.init_std),
            v_proj: Linear::new(&p / "v_proj", d, d, true, ctx.init_std),
            out_proj: Linear::new(&p / "output_linear", d, d, true, ctx.init_std),
            shift_c: p.var("shift_C", &[d, n], nn::Init::Uniform { lo: -bound, up: bound }),
            shift_b: c.trained_b.then(|| {
                let e1 = Tensor::zeros([d, n], (Kind::Float, p.device()));
                let _ = e1.narrow(1, 0, 1).fill_(1.0);
                p.var_copy("shift_B", &e1)
            }),
            shift_d: p.var("shift_D", &[d], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            ssm: S4d::new(&p / "ssm", d / c.head_dim, n, c.discretization, c.trained_b),
            skip: p.var("D", &[d / c.head_dim], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            d,
            p: c.head_dim,
            n,
        })
    }

    fn suite_variants() -> Vec<H3Config> {
        vec![
            H3Config::default(),
            H3Config { d_state: 8, head_dim: 2, ..Default::default() },
            H3Config { d_state: 2, head_dim: 4, ..Default::default() },
            H3Config { d_state: 16, discretization: Discretization::Zoh, trained_b: false, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{seeded, validate_error};
    use super::*;
    use tch::Device;

    /// Zoology's H3 on a built 2-layer LM: bilinear diagonal SSM by default, q/k/v and
    /// `output_linear` N(0, 0.02) (the output escapes the `out_proj` rule), zero biases; the
    /// kernel is the bilinear one (ZOH is the named option) and Zoology's state is d·N.
    #[test]
    fn defaults_are_zoologys() {
        use crate::model::{LanguageModel, ModelConfig};
        assert_eq!(H3Config::default().discretization, Discretization::Bilinear);
        let cfg: ModelConfig = toml::from_str(
            "d_model = 64\nstate_mixer = \"identity\"\nmixer = { name = \"h3\", d_state = 8, head_dim = 2 }",
        )
        .unwrap();
        seeded(3, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let lm = LanguageModel::new(&vs.root(), &cfg, 64, 32).unwrap();
            let v = vs.variables();
            for n in ["q_proj", "k_proj", "v_proj", "output_linear"] {
                let s = v[&format!("layers.1.mixer.{n}.weight")].std(true).double_value(&[]);
                assert!((s - 0.02).abs() < 0.0015, "{n}: std {s}");
                assert_eq!(v[&format!("layers.1.mixer.{n}.bias")].abs().max().double_value(&[]), 0.0);
            }
            assert!(!v.keys().any(|k| k.contains("out_proj")));
            // both B's are trained parameters starting at e₁ (shift) and 1 (diagonal)
            let e1 = Tensor::zeros([64, 8], (tch::Kind::Float, Device::Cpu));
            let _ = e1.narrow(1, 0, 1).fill_(1.0);
            assert!(v["layers.1.mixer.shift_B"].equal(&e1) && v["layers.1.mixer.shift_B"].requires_grad());
            assert_eq!(v["layers.1.mixer.ssm.b_re"].min().double_value(&[]), 1.0);
            assert_eq!(v["layers.1.mixer.ssm.b_im"].abs().max().double_value(&[]), 0.0);
            assert_eq!(lm.state_size_zoology_bytes(32), Some(4 * 2 * 64 * 8));
        });
        let build = |disc| {
            seeded(4, || {
                let m = H3::build(
                    nn::VarStore::new(Device::Cpu).root(),
                    8,
                    &H3Config { d_state: 8, discretization: disc, ..Default::default() },
                    &BuildCtx::new(0, 2, 16),
                )
                .unwrap();
                tch::no_grad(|| m.ssm.modes().kernel(16))
            })
        };
        let (zoh, bil) = (build(Discretization::Zoh), build(Discretization::Bilinear));
        let gap = super::super::testing::rel_err(&zoh, &bil);
        assert!(gap > 1e-4, "bilinear and ZOH kernels coincide ({gap:.2e})");
    }

    /// The shift SSM's kernel is Zoology's `irfft(conj(B_f)·C_f)[:N]`, the correlation
    /// `k[j] = Σ_{n<N−j} B_n C_{n+j}`, written out here for known B and C (channel 1's B = e₂
    /// shifts C by one tap); with `trained_b = false` it is C itself.
    #[test]
    fn shift_kernel_is_the_correlation_of_b_and_c() {
        let m = seeded(0, || {
            H3::build(
                nn::VarStore::new(Device::Cpu).root(),
                2,
                &H3Config { d_state: 4, ..Default::default() },
                &BuildCtx::new(0, 2, 8),
            )
            .unwrap()
        });
        let (c, b) =
            ([[1.0f32, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]], [[1.0f32, 0.5, 0.0, -1.0], [0.0, 1.0, 0.0, 0.0]]);
        tch::no_grad(|| {
            let _ = m.shift_c.shallow_clone().copy_(&Tensor::from_slice(c.concat().as_slice()).view([2, 4]));
            let _ = m
                .shift_b
                .as_ref()
                .unwrap()
                .shallow_clone()
                .copy_(&Tensor::from_slice(b.concat().as_slice()).view([2, 4]));
        });
        let k = Vec::<f32>::try_from(tch::no_grad(|| m.shift_kernel()).flatten(0, -1)).unwrap();
        for ch in 0..2 {
            for j in 0..4 {
                let want: f32 = (0..4 - j).map(|n| b[ch][n] * c[ch][n + j]).sum();
                assert!((k[ch * 4 + j] - want).abs() < 1e-6, "k[{ch}][{j}] = {}, want {want}", k[ch * 4 + j]);
            }
        }
        assert_eq!(&k[4..8], &[-1.0, 0.0, 2.0, 0.0]);
        let fixed = seeded(0, || {
            H3::build(
                nn::VarStore::new(Device::Cpu).root(),
                2,
                &H3Config { d_state: 4, trained_b: false, ..Default::default() },
                &BuildCtx::new(0, 2, 8),
            )
            .unwrap()
        });
        assert!(fixed.shift_b.is_none() && fixed.ssm.b.is_none() && fixed.shift_kernel().equal(&fixed.shift_c));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "h3", head_dim = 3 }"#);
        assert!(e.contains("model.mixer.head_dim"), "{e}");
        let e = validate_error(r#"{ name = "h3", d_state = 0 }"#);
        assert!(e.contains("model.mixer.d_state"), "{e}");
        let e = validate_error(r#"{ name = "h3", heads = 2 }"#);
        assert!(e.contains("heads"), "{e}");
        assert!(e.contains("model.mixer"), "{e}");
    }
}
