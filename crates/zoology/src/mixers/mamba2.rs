//! `mamba2`: the Mamba-2 block, state-space duality (SSD; Dao & Gu 2024; Zoology's
//! `mamba2.Mamba2`, state-spaces/mamba's `Mamba2Simple` and `ssd_minimal.py`).
//!
//! With inner width `E = expand·D`, `H = E/P` heads of `P = headdim` channels, `G = ngroups`
//! groups of `B, C ∈ ℝ^N` (`N = d_state`; head `h` reads group `⌊h/(H/G)⌋`):
//!
//! ```text
//! [z, xBC, dt] = W_in u                                (no bias; widths E, E + 2GN, H)
//! [x, B, C]    = silu(conv_k(xBC))                     (causal depthwise conv over E + 2GN channels, bias)
//! Δ_t          = softplus(dt_t + b_Δ)                  ∈ ℝ^H
//! a_h          = −exp(A_log_h)                         (one scalar per head)
//! h_t          = exp(Δ_t a_h) h_{t−1} + Δ_t x_t B_tᵀ   ∈ ℝ^{P×N} per head
//! y_t          = h_t C_t + D_h x_t                     (D per head; `d_has_hdim`: per channel)
//! out          = W_out RMSNorm_G(y ⊙ silu(z))          (gated RMSNorm over groups of E/G channels,
//!                                                       weight, eps 1e-5; `norm_before_gate`:
//!                                                       RMSNorm_G(y) ⊙ silu(z); `rmsnorm = false`:
//!                                                       y ⊙ silu(z))
//! ```
//! The decay is a scalar per head (Mamba-1's is per channel and state entry): the recurrence is
//! decayed linear attention with `q = C`, `k = B`, `v = Δ x` and log decay `Δ a`.
//!
//! Init (`init`): A_log = ln U(1, 16) per head (`a_init_range`), `b_Δ = softplus⁻¹(dt)` with
//! dt log-uniform in [`dt_min`, `dt_max`] (floor `dt_init_floor`), D = 1, norm weight 1, conv
//! as PyTorch's Conv1d (U(±1/√k) weights and bias). The Linears:
//! - `"mamba"` (default): Mamba-2's own, which Zoology's HEAD keeps for `Mamba2Block`
//!   (`_init_weights` leaves Mamba Linears alone): W_in U(±1/√D) (PyTorch's Linear default),
//!   W_out U(±1/√E)/√n_layers (kaiming-uniform, one residual per layer);
//! - `"normal"`: Zoology's `_init_weights` when Mamba2 arrived (e1f3380, 2024-12-28, until
//!   d66b046): W_in N(0, 0.02), W_out N(0, 0.02/√(2·n_layers)).
//!
//! FLOPs ([`crate::flops`] convention): per token `in_proj` `2·D·(2E + 2GN + H)`, conv
//! `2·(E + 2GN)·k`, `out_proj` `2·E·D`; the SSD core per head and position with the effective
//! chunk `c = min(chunk_size, L)` over `L_p = ⌈L/c⌉·c`: scores `C·Bᵀ` `2·c·N`, their decay `c`,
//! scores × `Δx` `2·c·P`, the carried state's readout `2·N·P` and the chunk state update
//! `2·N·P` (the decayed-linear core's count, [`chunked_linear_attention`]). Decode: the same
//! per-token terms plus per head `5·N·P` (decay, update, readout). Prefill is the step form. The
//! fused scan counts the decode step at each of the L positions (no chunk padding).
//!
//! Forms:
//! - reference: one plain loop over positions that does everything itself (conv taps, SiLU,
//!   softplus, the per-head recurrence on `[B, H, P, N]`, the skip, the gated RMSNorm), sharing
//!   no helper with the fast form;
//! - fast (training), `scan = "fused"`: the fused C++ gated scan of GLA
//!   ([`fused::gla`]) with `q = C`, `k = B`, `v = Δx` and the head's log decay `Δ a` on each of
//!   its N state channels; then the same skip, gate and norm. CPU f32/f64 tensors (under bf16
//!   autocast the scan runs in fp32); other devices and kinds run the chunked form;
//! - fast (training), `scan = "chunked"` (the default; at N = 128 its matmuls beat the fused
//!   scan's `N × P` state per head on the CPU, DECISIONS "Issue 20: rwkv5/rwkv6/mamba2"): the
//!   chunked SSD form: quadratic (masked `C·Bᵀ` with pairwise decays)
//!   within chunks of `chunk_size`, recurrent across chunks (one `[N, P]` state per head
//!   carried from chunk to chunk), every exponent ≤ 0 ([`chunked_linear_attention`]);
//! - step: the previous `k−1` conv inputs (`(k−1)·(E + 2GN)`) and the SSM state (`H·N·P =
//!   E·N`).
//!
//! Departures from the source (DECISIONS, "mamba2"): Zoology's `Mamba2Block` is RMSNorm +
//! mixer without an MLP; here the mixer sits in zoology-rs's block like every other. Options
//! that Zoology's runs never set are left out (`d_ssm`, `conv_init`, `dt_limit`,
//! `learnable_init_states`, `bias`, `conv_bias`: always no bias / conv bias).

use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::conv::{fir_step, short_conv};
use super::common::decayed_linear::{chunked_linear_attention, linear_attention_step};
use super::common::fused;
use super::common::layers::Linear;
use super::gla::GlaScan;
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Which init the Linear layers get (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mamba2Init {
    /// Mamba-2's own (and Zoology HEAD's): PyTorch-default in_proj, scaled kaiming out_proj.
    Mamba,
    /// Zoology's `_init_weights` of e1f3380: N(0, 0.02) Linears, out_proj by the name rule.
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mamba2Config {
    /// `chunked` (the SSD form in tensor operations, any device; the default: faster on the CPU
    /// at N = 128, docs/PERFORMANCE.md "Issue 20: rwkv5/rwkv6/mamba2") or `fused` (the C++ gated
    /// scan of `gla` with the head's decay on every state channel, CPU f32/f64).
    pub scan: GlaScan,
    /// State size N per head channel (Zoology's default 128; its configs use 8/16/24).
    pub d_state: i64,
    /// Short convolution taps.
    pub d_conv: i64,
    /// Inner width E = expand·d_model.
    pub expand: i64,
    /// Channels per head P (E must be a multiple).
    pub headdim: i64,
    /// Groups of B, C shared by H/G heads each (H must be a multiple).
    pub ngroups: i64,
    /// A = −U(lo, hi) per head at init.
    pub a_init_range: [f64; 2],
    /// Δ at init is log-uniform in [dt_min, dt_max], then at least dt_init_floor.
    pub dt_min: f64,
    pub dt_max: f64,
    pub dt_init_floor: f64,
    /// D per channel (true) or per head (false).
    pub d_has_hdim: bool,
    /// Gated RMSNorm before out_proj (false: y ⊙ silu(z)).
    pub rmsnorm: bool,
    /// RMSNorm(y) ⊙ silu(z) (true) or RMSNorm(y ⊙ silu(z)) (false).
    pub norm_before_gate: bool,
    /// Positions per chunk of the SSD form.
    pub chunk_size: i64,
    /// `mamba` (Mamba-2's own, Zoology HEAD) or `normal` (Zoology e1f3380).
    pub init: Mamba2Init,
}

impl Default for Mamba2Config {
    fn default() -> Self {
        Mamba2Config {
            scan: GlaScan::Chunked,
            d_state: 128,
            d_conv: 4,
            expand: 2,
            headdim: 64,
            ngroups: 1,
            a_init_range: [1.0, 16.0],
            dt_min: 0.001,
            dt_max: 0.1,
            dt_init_floor: 1e-4,
            d_has_hdim: false,
            rmsnorm: true,
            norm_before_gate: false,
            chunk_size: 256,
            init: Mamba2Init::Mamba,
        }
    }
}

#[derive(Debug)]
pub struct Mamba2 {
    in_proj: Linear,
    /// `[E + 2GN, k]`, `[E + 2GN]`.
    conv_w: Tensor,
    conv_b: Tensor,
    /// `[H]` each.
    dt_bias: Tensor,
    a_log: Tensor,
    /// `[H]` or `[E]` (`d_has_hdim`).
    d_skip: Tensor,
    /// `[E]` when `rmsnorm`.
    norm_w: Option<Tensor>,
    out_proj: Linear,
    d: i64,
    e: i64,
    n: i64,
    g: i64,
    h: i64,
    p: i64,
    k: i64,
    chunk: i64,
    scan: GlaScan,
    norm_before_gate: bool,
}

const NORM_EPS: f64 = 1e-5;

impl Mamba2 {
    /// Channels of the convolution: x, B, C.
    fn conv_dim(&self) -> i64 {
        self.e + 2 * self.g * self.n
    }

    /// `W_in u` split into `z [.., E]`, `xBC [.., E + 2GN]`, `dt [.., H]`.
    fn split_in(&self, u: &Tensor) -> (Tensor, Tensor, Tensor) {
        let parts = self.in_proj.forward(u).split_with_sizes([self.e, self.conv_dim(), self.h], -1);
        (parts[0].shallow_clone(), parts[1].shallow_clone(), parts[2].shallow_clone())
    }

    /// The activated conv output `[.., E + 2GN]` → `x [.., H, P]`, `B, C [.., H, N]` (groups
    /// repeated to their heads), and `Δ [.., H]` from `dt`.
    fn ssm_inputs(&self, xbc: &Tensor, dt: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
        let parts = xbc.split_with_sizes([self.e, self.g * self.n, self.g * self.n], -1);
        let mut lead = xbc.size();
        lead.pop();
        let shape = |tail: [i64; 2]| [lead.as_slice(), tail.as_slice()].concat();
        let x = parts[0].reshape(shape([self.h, self.p]));
        let per_head =
            |t: &Tensor| t.reshape(shape([self.g, self.n])).repeat_interleave_self_int(self.h / self.g, -2, None);
        let delta = (dt + &self.dt_bias).softplus();
        (x, per_head(&parts[1]), per_head(&parts[2]), delta)
    }

    /// `D x` for `x [.., H, P]`.
    fn skip(&self, x: &Tensor) -> Tensor {
        if self.d_skip.size()[0] == self.e {
            x * self.d_skip.view([self.h, self.p])
        } else {
            x * self.d_skip.view([self.h, 1])
        }
    }

    /// Gate, norm and output projection on `y, z: [.., E]`.
    fn finish(&self, y: Tensor, z: &Tensor) -> Tensor {
        let gate = z.silu();
        let y = match &self.norm_w {
            None => y * gate,
            Some(w) => {
                let pre = if self.norm_before_gate { y } else { y * &gate };
                let shape = pre.size();
                let mut grouped = shape.clone();
                grouped.pop();
                grouped.extend([self.g, self.e / self.g]);
                let pg = pre.reshape(grouped.as_slice());
                let ms = pg.square().mean_dim([-1i64].as_slice(), true, pg.kind());
                let normed = (pg * (ms + NORM_EPS).rsqrt()).reshape(shape.as_slice()) * w;
                if self.norm_before_gate {
                    normed * gate
                } else {
                    normed
                }
            }
        };
        self.out_proj.forward(&y)
    }
}

impl Mixer for Mamba2 {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let (bsz, l, _) = u.size3().unwrap();
        let (z, xbc, dt) = self.split_in(u);
        let xbc = short_conv(&xbc, &self.conv_w, Some(&self.conv_b)).silu();
        let (x, bm, cm, delta) = self.ssm_inputs(&xbc, &dt); // [B,L,H,P], [B,L,H,N] ×2, [B,L,H]
        let a = -self.a_log.exp();
        let q = cm.transpose(1, 2); // [B,H,L,N]
        let k = bm.transpose(1, 2);
        let v = (&x * delta.unsqueeze(-1)).transpose(1, 2); // [B,H,L,P]
        let g = (&delta * &a).transpose(1, 2).unsqueeze(-1); // [B,H,L,1]
        let o = if self.scan == GlaScan::Fused && fused::gla_applies(&q) {
            // the per-head decay on each of the N state channels: the fused gated scan
            fused::gla_fp32(&q, &k, &v, &g.expand_as(&q))
        } else {
            chunked_linear_attention(&q, &k, &v, Some(&g), self.chunk).0
        };
        let y = o.transpose(1, 2) + self.skip(&x); // [B,L,H,P]
        self.finish(y.reshape([bsz, l, self.e]), &z)
    }

    /// Naive form: one loop over positions with every step written out in plain tensor ops
    /// (no `short_conv`, chunked core, `ssm_inputs`, `finish` or Linear helper).
    fn reference(&self, u: &Tensor) -> Tensor {
        let (bsz, l, _) = u.size3().unwrap();
        let (e, n, g, h, p, k) = (self.e, self.n, self.g, self.h, self.p, self.k);
        let cd = e + 2 * g * n;
        let proj = u.matmul(&self.in_proj.ws.tr()); // [B, L, E + cd + H]
        let (z, xbc, dt) = (proj.narrow(2, 0, e), proj.narrow(2, e, cd), proj.narrow(2, e + cd, h));
        let a = -self.a_log.exp(); // [H]
        let group_of: Vec<i64> = (0..h).map(|i| i / (h / g)).collect();
        let group_of = Tensor::from_slice(&group_of).to_device(u.device());
        let mut s = Tensor::zeros([bsz, h, p, n], (u.kind(), u.device()));
        let mut outs = Vec::with_capacity(l as usize);
        for t in 0..l {
            // causal depthwise conv: tap k−1−j multiplies xBC_{t−j}
            let mut c = self.conv_b.view([1, cd]).expand([bsz, cd], false).shallow_clone();
            for j in 0..k.min(t + 1) {
                c = c + xbc.select(1, t - j) * self.conv_w.select(1, k - 1 - j);
            }
            let act = &c * c.sigmoid(); // SiLU
            let xt = act.narrow(1, 0, e).reshape([bsz, h, p]);
            let bt = act.narrow(1, e, g * n).reshape([bsz, g, n]).index_select(1, &group_of); // [B,H,N]
            let ct = act.narrow(1, e + g * n, g * n).reshape([bsz, g, n]).index_select(1, &group_of);
            let pre = dt.select(1, t) + &self.dt_bias; // [B, H]
            let delta = pre.clamp_min(0.0) + (-pre.abs()).exp().log1p(); // softplus, stable
            let decay = (&delta * &a).exp().view([bsz, h, 1, 1]);
            s = decay * s + (delta.view([bsz, h, 1]) * &xt).unsqueeze(-1) * bt.unsqueeze(2);
            let mut y = (&s * ct.unsqueeze(2)).sum_dim_intlist([-1i64].as_slice(), false, s.kind()); // [B,H,P]
            y = if self.d_skip.size()[0] == e {
                y + &xt * self.d_skip.view([h, p])
            } else {
                y + &xt * self.d_skip.view([h, 1])
            };
            let y = y.reshape([bsz, e]);
            let zt = z.select(1, t);
            let gate = &zt * zt.sigmoid();
            let out = match &self.norm_w {
                None => y * gate,
                Some(w) => {
                    let pre = if self.norm_before_gate { y } else { y * &gate };
                    let pg = pre.reshape([bsz, g, e / g]);
                    let rms = (pg.square().sum_dim_intlist([-1i64].as_slice(), true, pg.kind()) / (e / g) as f64
                        + NORM_EPS)
                        .sqrt();
                    let normed = (pg / rms).reshape([bsz, e]) * w;
                    if self.norm_before_gate {
                        normed * gate
                    } else {
                        normed
                    }
                }
            };
            outs.push(out.matmul(&self.out_proj.ws.tr()));
        }
        Tensor::stack(&outs, 1)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.a_log.kind(), self.a_log.device());
        MixerState::new(vec![
            Tensor::zeros([batch, self.k - 1, self.conv_dim()], opts),
            Tensor::zeros([batch, self.h, self.n, self.p], opts),
        ])
    }

    fn step(&self, state: &mut MixerState, u_t: &Tensor) -> Tensor {
        let (z, xbc, dt) = self.split_in(u_t);
        let xbc = fir_step(&mut state.tensors[0], &xbc, &self.conv_w, Some(&self.conv_b)).silu();
        let (x, bm, cm, delta) = self.ssm_inputs(&xbc, &dt); // [B,H,P], [B,H,N] ×2, [B,H]
        let g = (&delta * -self.a_log.exp()).unsqueeze(-1); // [B,H,1]
        let v = &x * delta.unsqueeze(-1);
        let o = linear_attention_step(&mut state.tensors[1], &cm, &bm, &v, Some(&g)); // [B,H,P]
        let y = (o + self.skip(&x)).reshape([-1, self.e]);
        self.finish(y, &z)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        (self.k - 1) * self.conv_dim() + self.h * self.n * self.p
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let tok = self.in_proj.flops() + crate::flops::fir(self.conv_dim(), self.k) + self.out_proj.flops();
        let c = self.chunk.min(seq_len).max(1);
        let (cf, nf, pf, hf) = (c as f64, self.n as f64, self.p as f64, self.h as f64);
        let core = hf * (2.0 * cf * nf + cf + 2.0 * cf * pf + 4.0 * nf * pf);
        let step = tok + hf * 5.0 * nf * pf;
        // the fused scan runs the decode step at every position (no chunk padding)
        let fwd = match self.scan {
            GlaScan::Fused => seq_len as f64 * step,
            GlaScan::Chunked => seq_len as f64 * tok + crate::flops::padded(seq_len, c) as f64 * core,
        };
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| step)
    }

    /// Zoology's `Mamba2.state_size`: `2 · d_model · d_state` (the SSM state with expand 2;
    /// the conv state left out).
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(2 * self.d * self.n)
    }
}

impl MixerKind for Mamba2 {
    type Config = Mamba2Config;
    const NAME: &'static str = "mamba2";
    const ABOUT: &'static str =
        "Mamba-2 (SSD): scalar-decay-per-head selective SSM, chunked SSD matmul form, gated RMSNorm";
    const STATE_FORMULA: &'static str = "(k−1)·(E+2GN) + E·N, E = expand·d (conv inputs + H heads of P×N)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &Mamba2Config, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "d_state", c.d_state, 1, 4096, "128")?;
        int_in(field, "d_conv", c.d_conv, 1, 1024, "4")?;
        int_in(field, "expand", c.expand, 1, 64, "2")?;
        int_in(field, "headdim", c.headdim, 1, MAX_SIZE, "64")?;
        int_in(field, "ngroups", c.ngroups, 1, MAX_SIZE, "1")?;
        int_in(field, "chunk_size", c.chunk_size, 1, MAX_SIZE, "256")?;
        let e = c.expand * d;
        if e % c.headdim != 0 {
            return Err(config_err(
                format!("{field}.headdim"),
                format!(
                    "must divide the inner width expand·d_model = {e} (got {}); e.g. headdim = {} at this width",
                    c.headdim,
                    (1..=c.headdim.min(e)).rev().find(|p| e % p == 0).unwrap_or(1)
                ),
            ));
        }
        let heads = e / c.headdim;
        if heads % c.ngroups != 0 {
            return Err(config_err(
                format!("{field}.ngroups"),
                format!("must divide the number of heads expand·d_model/headdim = {heads} (got {})", c.ngroups),
            ));
        }
        let [lo, hi] = c.a_init_range;
        float_in(field, "a_init_range[0]", lo, 0.0, f64::INFINITY, "1")?;
        if !(hi.is_finite() && hi >= lo) {
            return Err(config_err(
                format!("{field}.a_init_range"),
                format!("must be [lo, hi] with 0 < lo ≤ hi, e.g. [1, 16] (got [{lo}, {hi}])"),
            ));
        }
        float_in(field, "dt_min", c.dt_min, 0.0, f64::INFINITY, "0.001")?;
        float_in(field, "dt_max", c.dt_max, 0.0, f64::INFINITY, "0.1")?;
        if c.dt_max < c.dt_min {
            return Err(config_err(
                format!("{field}.dt_max"),
                format!("must be ≥ dt_min = {} (got {})", c.dt_min, c.dt_max),
            ));
        }
        float_in(field, "dt_init_floor", c.dt_init_floor, 0.0, f64::INFINITY, "1e-4")?;
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &Mamba2Config, ctx: &BuildCtx) -> Result<Self> {
        let e = c.expand * d;
        let (n, g, k, hd) = (c.d_state, c.ngroups, c.d_conv, c.headdim);
        let h = e / hd;
        let cd = e + 2 * g * n;
        let dev = p.device();
        let (std, out_std) = (ctx.init_std, ctx.out_std);
        let in_proj = Linear::new(&p / "in_proj", d, e + cd + h, false, std);
        let out_proj = Linear::new(&p / "out_proj", e, d, false, out_std);
        let cb = 1.0 / (k as f64).sqrt();
        let conv_w = p.var("conv_weight", &[cd, k], nn::Init::Uniform { lo: -cb, up: cb });
        let conv_b = p.var("conv_bias", &[cd], nn::Init::Uniform { lo: -cb, up: cb });
        let dt_bias = p.var("dt_bias", &[h], nn::Init::Const(0.0));
        let a_log = p.var("A_log", &[h], nn::Init::Const(0.0));
        tch::no_grad(|| {
            let (lo, hi) = (c.dt_min.ln(), c.dt_max.ln());
            let dt = (Tensor::rand([h], (Kind::Float, dev)) * (hi - lo) + lo).exp().clamp_min(c.dt_init_floor);
            let inv = &dt + (-(-&dt).expm1()).log(); // softplus⁻¹
            let _ = dt_bias.shallow_clone().copy_(&inv);
            let [alo, ahi] = c.a_init_range;
            let a = Tensor::rand([h], (Kind::Float, dev)) * (ahi - alo) + alo;
            let _ = a_log.shallow_clone().copy_(&a.log());
            if c.init == Mamba2Init::Mamba {
                let ib = 1.0 / (d as f64).sqrt();
                let _ = in_proj.ws.shallow_clone().uniform_(-ib, ib);
                let ob = 1.0 / (e as f64).sqrt() / (ctx.n_layers.max(1) as f64).sqrt();
                let _ = out_proj.ws.shallow_clone().uniform_(-ob, ob);
            }
        });
        let d_skip = p.var("D", &[if c.d_has_hdim { e } else { h }], nn::Init::Const(1.0));
        let norm_w = c.rmsnorm.then(|| p.var("norm_weight", &[e], nn::Init::Const(1.0)));
        Ok(Mamba2 {
            in_proj,
            conv_w,
            conv_b,
            dt_bias,
            a_log,
            d_skip,
            norm_w,
            out_proj,
            d,
            e,
            n,
            g,
            h,
            p: hd,
            k,
            chunk: c.chunk_size,
            scan: c.scan,
            norm_before_gate: c.norm_before_gate,
        })
    }

    /// The default (headdim 64) needs expand·d ≥ 64, i.e. d ≥ 32; the suite's d = 16 runs it
    /// with smaller heads (the learnability test, at d = 32, runs the default itself; the unit
    /// tests below run it at d = 64).
    fn suite_variants() -> Vec<Mamba2Config> {
        vec![
            Mamba2Config { scan: GlaScan::Fused, headdim: 16, d_state: 16, ..Default::default() },
            Mamba2Config {
                scan: GlaScan::Fused,
                headdim: 8,
                ngroups: 2,
                d_state: 4,
                rmsnorm: false,
                d_has_hdim: true,
                init: Mamba2Init::Normal,
                ..Default::default()
            },
            Mamba2Config { scan: GlaScan::Chunked, headdim: 16, d_state: 16, chunk_size: 8, ..Default::default() },
            Mamba2Config {
                scan: GlaScan::Chunked,
                headdim: 8,
                ngroups: 2,
                d_state: 4,
                chunk_size: 4,
                rmsnorm: false,
                d_has_hdim: true,
                init: Mamba2Init::Normal,
                ..Default::default()
            },
            Mamba2Config { headdim: 4, d_state: 8, chunk_size: 5, norm_before_gate: true, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded, validate_error};
    use tch::Device;

    fn built(d: i64, cfg: &Mamba2Config, seed: i64) -> (nn::VarStore, Mamba2) {
        seeded(seed, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = Mamba2::build(vs.root(), d, cfg, &BuildCtx::new(0, 2, 256)).unwrap();
            (vs, m)
        })
    }

    /// The default config (d = 64: 2 heads of 64, N = 128, chunk 256) and a 2-group config
    /// with chunk 64, each with the chunked (the default) and the fused scan, against the naive
    /// loop across chunk boundaries (L = 150), and the step
    /// form after a prompt; the outputs just after a chunk boundary really depend on the state
    /// carried across it.
    #[test]
    fn default_and_grouped_configs_match_the_naive_loop_across_chunks() {
        let grouped = Mamba2Config { ngroups: 2, d_state: 16, chunk_size: 64, ..Default::default() };
        let fused = |c: &Mamba2Config| Mamba2Config { scan: GlaScan::Fused, ..c.clone() };
        for cfg in [fused(&Mamba2Config::default()), fused(&grouped), Mamba2Config::default(), grouped] {
            let (_vs, m) = built(64, &cfg, 3);
            let x = seeded(4, || Tensor::randn([2, 150, 64], (Kind::Float, Device::Cpu)));
            let (fast, slow) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
            let err = rel_err(&fast, &slow);
            assert!(err < 1e-4, "{cfg:?}: chunked vs naive rel err {err:.2e}");
            let stepped = tch::no_grad(|| {
                let (pre, mut st) = m.prefill(&x.narrow(1, 0, 100));
                let mut ys = vec![pre];
                for t in 100..150 {
                    ys.push(m.step(&mut st, &x.select(1, t)).unsqueeze(1));
                }
                Tensor::cat(&ys, 1)
            });
            assert!(rel_err(&stepped, &fast) < 1e-4, "{cfg:?}: step vs chunked {:.2e}", rel_err(&stepped, &fast));
            let x2 = x.copy();
            let _ = x2.narrow(1, 0, 64).g_mul_scalar_(-1.0);
            let y2 = tch::no_grad(|| m.forward(&x2, false));
            let moved = rel_err(&y2.narrow(1, 64, 16), &fast.narrow(1, 64, 16));
            assert!(moved > 1e-3, "{cfg:?}: outputs 64..80 do not see positions < 64 (rel change {moved:.2e})");
        }
    }

    /// The init: A = −exp(A_log) in [−16, −1], softplus(dt_bias) in [1e-3, 0.1], D = 1, norm
    /// weight 1; `mamba` Linears within PyTorch's bounds, `normal` ones N(0, 0.02).
    #[test]
    fn init_follows_mamba2() {
        let (vs, _m) = built(64, &Mamba2Config::default(), 5);
        let v = vs.variables();
        let a = v["A_log"].exp();
        assert!(a.min().double_value(&[]) >= 1.0 && a.max().double_value(&[]) <= 16.0);
        let dt = v["dt_bias"].softplus();
        assert!(dt.min().double_value(&[]) >= 0.99e-3 && dt.max().double_value(&[]) <= 0.1001);
        assert_eq!(v["D"].size(), vec![2]);
        assert_eq!(v["D"].min().double_value(&[]), 1.0);
        assert_eq!(v["norm_weight"].min().double_value(&[]), 1.0);
        let maxabs = |t: &Tensor| t.abs().max().double_value(&[]);
        assert!(maxabs(&v["in_proj.weight"]) <= 1.0 / 8.0 && maxabs(&v["in_proj.weight"]) > 0.12);
        let ob = 1.0 / (128f64).sqrt() / 2f64.sqrt();
        assert!(maxabs(&v["out_proj.weight"]) <= ob && maxabs(&v["out_proj.weight"]) > 0.9 * ob);
        // in_proj rows: z E, xBC E + 2N, dt H
        assert_eq!(v["in_proj.weight"].size(), vec![128 + 128 + 256 + 2, 64]);
        let (vs, _m) = built(64, &Mamba2Config { init: Mamba2Init::Normal, ..Default::default() }, 5);
        let s = vs.variables()["in_proj.weight"].std(true).double_value(&[]);
        assert!((s - 0.02).abs() < 0.001, "normal init std {s}");
    }

    #[test]
    fn state_sizes_in_both_conventions() {
        let (_vs, m) = built(64, &Mamba2Config::default(), 0);
        assert_eq!(m.state_size(20), 3 * (128 + 2 * 128) + 128 * 128);
        assert_eq!(m.state_size_zoology(20), Some(2 * 64 * 128));
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (bad, key) in [
            (r#"{ name = "mamba2", headdim = 64 }"#, "headdim"), // E = 32 at d = 16
            (r#"{ name = "mamba2", headdim = 8, ngroups = 3 }"#, "ngroups"),
            (r#"{ name = "mamba2", headdim = 8, d_state = 0 }"#, "d_state"),
            (r#"{ name = "mamba2", headdim = 8, a_init_range = [0.0, 16.0] }"#, "a_init_range"),
            (r#"{ name = "mamba2", headdim = 8, a_init_range = [4.0, 2.0] }"#, "a_init_range"),
            (r#"{ name = "mamba2", headdim = 8, dt_min = 0.5 }"#, "dt_max"),
            (r#"{ name = "mamba2", headdim = 8, chunk_size = 0 }"#, "chunk_size"),
            (r#"{ name = "mamba2", headdim = 8, init = "xavier" }"#, "init"),
            (r#"{ name = "mamba2", headdim = 8, d_ssm = 8 }"#, "d_ssm"),
        ] {
            let e = validate_error(bad);
            assert!(e.contains(&format!("model.mixer")) && e.contains(key), "{bad}: {e}");
        }
    }
}
