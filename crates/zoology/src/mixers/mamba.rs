//! `mamba`: the Mamba (S6) selective state-space block (Gu & Dao 2023; Zoology's `mamba.Mamba`).
//!
//! With inner width `E = expand·D`, state size `N = d_state` and rank `R = ⌈D/16⌉`:
//!
//! ```text
//! [x, z] = W_in u                                   (no bias)
//! x      = silu(conv_k(x))                          (causal depthwise conv, k = d_conv, bias)
//! [δ, B_t, C_t] = W_x x,   δ ∈ ℝ^R, B_t, C_t ∈ ℝ^N
//! Δ_t    = softplus(W_Δ δ + b_Δ)                    ∈ ℝ^E
//! A      = −exp(A_log)                              ∈ ℝ^{E×N},  A_log init ln(n+1) → A = −(n+1)
//! h_t    = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t x_t) B_tᵀ    ∈ ℝ^{E×N}
//! y_t    = h_t C_t + D ⊙ x_t
//! out    = W_out (y ⊙ silu(z))                      (no bias)
//! ```
//! Always `A_log = ln(n+1)` (S4D-real), `D = 1`, the conv as PyTorch's Conv1d (U(±1/√k)).
//! The Linear layers follow `init`:
//! - `"normal"` (default): Zoology Figure 2's. Until d66b046 (2025-01-15) Zoology's
//!   `_init_weights` re-initialised every `nn.Linear` of the model, Mamba's included, to
//!   N(0, 0.02) with zero bias, and `dt_proj.bias` too (its `_no_reinit` mark was ignored), so
//!   `Δ ≈ softplus(0) ≈ 0.69` at init; `out_proj` matches the name rule: N(0, 0.02/√(2·n_layers)).
//! - `"mamba"`: Mamba's own (state-spaces/mamba, and Zoology since d66b046): in_proj and x_proj
//!   PyTorch's default U(±1/√fan_in); `W_Δ ~ U(±R^{−1/2})`, `b_Δ = softplus⁻¹(dt)` with dt
//!   log-uniform in [1e-3, 0.1] (floor 1e-4); out_proj U(±1/√E)/√n_layers (kaiming-uniform,
//!   one residual per layer).
//!
//! FLOPs ([`crate::flops`] convention): per token `in_proj` `2·d·2E`, conv `2·E·k`, `x_proj`
//! `2·E·(R + 2N)`, `dt_proj` `2·R·E`, `out_proj` `2·E·d`; the selective scan `9·E·N` per
//! position (the Mamba paper's count) over `L` with the fused scan, `L_p = ⌈L/chunk⌉·chunk`
//! with the chunked one. Decode: the same per-token terms, constant in L. Prefill is the step
//! form.
//!
//! Forms:
//! - reference: one plain loop over positions that does everything itself (conv taps, SiLU,
//!   Δ, B, C, the recurrence, the gate), sharing no helper with the fast and step forms;
//! - fast (training), `scan = "fused"` (the default): the C++ selective scan of
//!   [`super::common::fused`], which keeps each (row, channel)'s state in cache while it loops
//!   over positions, stores it every `checkpoint_every` positions, and has its own backward
//!   (recomputing each segment from its checkpoint); no `[B, L, E, N]` tensor is built. It runs
//!   on CPU tensors (f32, f64); on other devices the chunked scan below is used instead;
//! - fast, `scan = "chunked"`: a chunked selective scan in tensor operations. The sequence is cut into chunks of
//!   `chunk_size`; all chunks advance together through `chunk_size` recurrence steps on
//!   `[B, L/chunk, E, N]` states from a zero start, emitting `h_t C_t` as they go (so the
//!   `[B, L, E, N]` state history is never built inside the chunks); the chunk-end states are
//!   combined by a log-depth doubling scan over the pairs `(exp((Σ_chunk Δ) A), h_end)`, and
//!   each chunk adds `C_t · exp((Σ_{s≤t} Δ_s) A) ⊙ h_in` for the state carried into it (`A` is
//!   time-invariant, so the cumulative decay is the cumulative Δ times `A`). Every exponent is
//!   `Δ A ≤ 0`: factors are ≤ 1 and nothing overflows. Sequential depth is `chunk_size + log₂
//!   (L/chunk_size)` whatever L is;
//! - step: the previous k−1 inner inputs of the conv (`E·(k−1)`, `conv::fir_step`) and the
//!   SSM state (`E·N`).

use super::common::bounds::{int_in, MAX_SIZE};
use super::common::chunking::ChunkLayout;
use super::common::conv::{fir_step, short_conv};
use super::common::fused::{fused_supported, selective_scan, ScanArgs};
use super::common::layers::Linear;
use super::common::scan::linear_scan;
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Which selective scan the training form runs (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MambaScan {
    /// The fused C++ scan with its own backward (CPU; the chunked scan on other devices).
    Fused,
    /// Chunks of `chunk_size` in tensor operations (any device).
    Chunked,
}

/// Which init the Linear layers get (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MambaInit {
    /// Zoology Figure 2: every Linear N(0, 0.02), zero bias (dt bias too); out_proj by the name rule.
    Normal,
    /// state-spaces/mamba: PyTorch default Linears, Mamba's Δ init, scaled kaiming out_proj.
    Mamba,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MambaConfig {
    /// State size N per inner channel.
    pub d_state: i64,
    /// Short convolution taps.
    pub d_conv: i64,
    /// Inner width E = expand·d_model.
    pub expand: i64,
    /// Rank of the Δ projection; 0 = ⌈d_model/16⌉.
    pub dt_rank: i64,
    /// `fused` (CPU kernel, the default) or `chunked` (tensor operations).
    pub scan: MambaScan,
    /// Positions between stored states in the fused scan's forward (its backward recomputes the
    /// states in between): backward memory `B·⌈L/k⌉·E·N` against a `k·E·N` working set.
    pub checkpoint_every: i64,
    /// Positions per chunk of the chunked scan (also used by the fused scan's fallback).
    pub chunk_size: i64,
    /// `normal` (Zoology Figure 2) or `mamba` (Mamba's own).
    pub init: MambaInit,
}

impl Default for MambaConfig {
    fn default() -> Self {
        MambaConfig {
            d_state: 16,
            d_conv: 4,
            expand: 2,
            dt_rank: 0,
            scan: MambaScan::Fused,
            checkpoint_every: 16,
            chunk_size: 64,
            init: MambaInit::Normal,
        }
    }
}

#[derive(Debug)]
pub struct Mamba {
    in_proj: Linear,
    conv_w: Tensor,
    conv_b: Tensor,
    x_proj: Linear,
    dt_proj: Linear,
    a_log: Tensor,
    d_skip: Tensor,
    out_proj: Linear,
    d: i64,
    e: i64,
    n: i64,
    r: i64,
    chunk: i64,
    scan: MambaScan,
    checkpoint_every: i64,
}

/// What the SSM needs per position (any leading shape `[..]`): conv output `x [.., E]`,
/// gate `z [.., E]`, `dt = W_Δ δ [.., E]` (Δ = softplus(dt + b_Δ)), `B, C [.., N]`.
struct Inputs {
    x: Tensor,
    z: Tensor,
    dt: Tensor,
    b: Tensor,
    c: Tensor,
}

/// What the tensor scans take: `x, Δ [B, L, E]`, `B, C [B, L, N]`.
struct ScanIn {
    x: Tensor,
    delta: Tensor,
    b: Tensor,
    c: Tensor,
}

impl Mamba {
    fn a(&self) -> Tensor {
        -self.a_log.exp()
    }

    /// Everything after the convolution, shared by all forms; `x` is the (activated) conv output.
    fn inputs(&self, x: Tensor, z: Tensor) -> Inputs {
        let parts = self.x_proj.forward(&x).split_with_sizes([self.r, self.n, self.n], -1);
        let dt = parts[0].linear(&self.dt_proj.ws, None::<Tensor>);
        Inputs { x, z, dt, b: parts[1].shallow_clone(), c: parts[2].shallow_clone() }
    }

    fn dt_bias(&self) -> &Tensor {
        self.dt_proj.bs.as_ref().expect("dt_proj has a bias")
    }

    /// `Δ = softplus(dt + b_Δ)`.
    fn delta(&self, inp: &Inputs) -> Tensor {
        (&inp.dt + self.dt_bias()).softplus()
    }

    fn split_in(&self, u: &Tensor) -> (Tensor, Tensor) {
        let xz = self.in_proj.forward(u).chunk(2, -1);
        (xz[0].shallow_clone(), xz[1].shallow_clone())
    }

    /// `(y + D x) ⊙ silu(z)` with `y = h·C`, the SSM's gated output before `out_proj`.
    fn gate(&self, y: Tensor, inp: &Inputs) -> Tensor {
        (y + &self.d_skip * &inp.x) * inp.z.silu()
    }

    /// Whether the training form runs the fused kernel on these inputs.
    fn uses_fused(&self, inp: &Inputs) -> bool {
        self.scan == MambaScan::Fused && fused_supported(inp.x.device(), inp.x.kind())
    }

    /// The training form's selective scan with its gate, `(h·C + D x) ⊙ silu(z)` as `[B, L, E]`:
    /// the fused kernel (Δ's bias and softplus, D and the gate inside it) where it runs, the
    /// chunked scan otherwise.
    fn gated_scan(&self, inp: &Inputs) -> Tensor {
        // under bf16 autocast the projections arrive in bf16: the scan runs in fp32 (the fused
        // kernel is f32/f64), as every mixer's scan does
        if self.scan == MambaScan::Fused && crate::device::Precision::autocast_active(inp.x.device()) {
            use crate::device::full_precision as f32_;
            let up = Inputs { x: f32_(&inp.x), z: f32_(&inp.z), dt: f32_(&inp.dt), b: f32_(&inp.b), c: f32_(&inp.c) };
            return crate::device::Precision::fp32_region(inp.x.device(), || self.gated_scan(&up));
        }
        if self.uses_fused(inp) {
            let a = self.a();
            let args = ScanArgs {
                x: &inp.x,
                dt: &inp.dt,
                a: &a,
                b: &inp.b,
                c: &inp.c,
                d: &self.d_skip,
                z: Some(&inp.z),
                dt_bias: Some(self.dt_bias()),
                softplus: true,
            };
            selective_scan(&args, self.checkpoint_every)
        } else {
            let s = ScanIn {
                x: inp.x.shallow_clone(),
                delta: self.delta(inp),
                b: inp.b.shallow_clone(),
                c: inp.c.shallow_clone(),
            };
            self.gate(self.scan_chunked(&s), inp)
        }
    }

    /// Chunked selective scan over `[B, L, ..]` inputs: returns `Σ_n h_t C_t` as `[B, L, E]`.
    ///
    /// All chunks advance together through a loop of `chunk` steps on `[B, nc, E, N]` states
    /// (from a zero state, so only `chunk` sequential steps whatever L is); the chunk-end states
    /// are combined by a doubling scan over chunks, and the carried-in state reaches position
    /// `t` of a chunk through `exp((Σ_{s≤t} Δ_s) A)`, since `A` does not depend on time.
    fn scan_chunked(&self, inp: &ScanIn) -> Tensor {
        let (bsz, l, e) = inp.x.size3().unwrap();
        let lay = ChunkLayout::new(l, self.chunk);
        let (nc, c) = (lay.n, lay.c);
        // zero padding at the end: Δ = 0 there, so the decay is 1 and the input 0
        let chunked = |t: &Tensor| lay.split(t, 1);
        let a = self.a(); // [E, N]
        let (delta, x) = (chunked(&inp.delta), chunked(&inp.x)); // [B, nc, c, E]
        let (bm, cm) = (chunked(&inp.b), chunked(&inp.c)); // [B, nc, c, N]
        let mut h = Tensor::zeros([bsz, nc, e, self.n], (x.kind(), x.device())); // every chunk from zero
        let mut ys = Vec::with_capacity(c as usize);
        for t in 0..c {
            let (next, y) = self.ssm_step(&h, &delta.select(2, t), &x.select(2, t), &bm.select(2, t), &cm.select(2, t));
            h = next;
            ys.push(y);
        }
        let mut y = Tensor::stack(&ys, 2); // [B, nc, c, E]
        if nc > 1 {
            let h_last = h; // chunk-end states from zero
            let p_chunk = (delta.sum_dim_intlist([2i64].as_slice(), false, delta.kind()).unsqueeze(-1) * &a).exp();
            let (_, h_end) = linear_scan(&p_chunk, &h_last, 1); // [B, nc, E, N] true chunk-end states
                                                                // state carried into chunks 1..nc, applied to their positions only
            let h_in = h_end.narrow(1, 0, nc - 1).unsqueeze(2); // [B, nc-1, 1, E, N]
            let cum = delta.narrow(1, 1, nc - 1).cumsum(2, delta.kind()); // [B, nc-1, c, E]
            let decay = (cum.unsqueeze(-1) * &a).exp(); // [B, nc-1, c, E, N]
            let carry = (decay * h_in * cm.narrow(1, 1, nc - 1).unsqueeze(3)).sum_dim_intlist(
                [-1i64].as_slice(),
                false,
                y.kind(),
            );
            let zero = Tensor::zeros([bsz, 1, c, e], (y.kind(), y.device()));
            y = y + Tensor::cat(&[zero, carry], 1);
        }
        lay.merge(&y, 1)
    }

    #[cfg(test)]
    /// Reference scan over prepared inputs, written out per position (it does not call
    /// [`Self::ssm_step`]): `h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t x_t) B_tᵀ`, `y_t = h_t C_t`. `[B, L, E]`.
    fn scan_loop(&self, inp: &ScanIn) -> Tensor {
        let (bsz, l, _) = inp.x.size3().unwrap();
        let a = -self.a_log.exp(); // [E, N]
        let mut h = Tensor::zeros([bsz, self.e, self.n], (inp.x.kind(), inp.x.device()));
        let mut ys = Vec::with_capacity(l as usize);
        for t in 0..l {
            let (dt, xt) = (inp.delta.select(1, t), inp.x.select(1, t)); // [B, E]
            let (bt, ct) = (inp.b.select(1, t), inp.c.select(1, t)); // [B, N]
            h = (dt.view([bsz, self.e, 1]) * &a).exp() * h
                + (dt * xt).view([bsz, self.e, 1]) * bt.view([bsz, 1, self.n]);
            ys.push(h.matmul(&ct.view([bsz, self.n, 1])).view([bsz, self.e]));
        }
        Tensor::stack(&ys, 1)
    }

    /// One SSM step on inputs with any leading shape `[..]`: `Δ, x: [.., E]`, `B, C: [.., N]`;
    /// updates `h: [.., E, N]` and returns it with `h C` as `[.., E]`.
    fn ssm_step(&self, h: &Tensor, delta: &Tensor, x: &Tensor, b: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
        let a = (delta.unsqueeze(-1) * self.a()).exp();
        let h = a * h + (delta * x).unsqueeze(-1) * b.unsqueeze(-2);
        let y = (&h * c.unsqueeze(-2)).sum_dim_intlist([-1i64].as_slice(), false, h.kind());
        (h, y)
    }
}

impl Mixer for Mamba {
    fn forward(&self, u: &Tensor, _train: bool) -> Tensor {
        let (x, z) = self.split_in(u);
        let inp = self.inputs(short_conv(&x, &self.conv_w, Some(&self.conv_b)).silu(), z);
        self.out_proj.forward(&self.gated_scan(&inp))
    }

    /// Naive form: one loop over positions, every step written out with plain tensor ops
    /// (no `short_conv`, `inputs`, `ssm_step`, `finish` or Linear helper).
    fn reference(&self, u: &Tensor) -> Tensor {
        let (bsz, l, _) = u.size3().unwrap();
        let (e, n, r) = (self.e, self.n, self.r);
        let k = self.conv_w.size()[1];
        let xz = u.matmul(&self.in_proj.ws.tr()); // [B, L, 2E]
        let (x, z) = (xz.narrow(2, 0, e), xz.narrow(2, e, e));
        let a = -self.a_log.exp(); // [E, N]
        let mut h = Tensor::zeros([bsz, e, n], (u.kind(), u.device()));
        let mut outs = Vec::with_capacity(l as usize);
        for t in 0..l {
            // causal depthwise conv: tap k−1−j multiplies x_{t−j}
            let mut c = self.conv_b.view([1, e]).expand([bsz, e], false).shallow_clone();
            for j in 0..k.min(t + 1) {
                c = c + x.select(1, t - j) * self.conv_w.select(1, k - 1 - j);
            }
            let xc = &c * c.sigmoid(); // SiLU
            let dbl = xc.matmul(&self.x_proj.ws.tr()); // [B, R + 2N]
            let (dt_in, bt, ct) = (dbl.narrow(1, 0, r), dbl.narrow(1, r, n), dbl.narrow(1, r + n, n));
            let pre = dt_in.matmul(&self.dt_proj.ws.tr()) + self.dt_proj.bs.as_ref().unwrap(); // [B, E]
            let delta = pre.clamp_min(0.0) + (-pre.abs()).exp().log1p(); // softplus, stable
            h = (delta.view([bsz, e, 1]) * &a).exp() * h + (&delta * &xc).view([bsz, e, 1]) * bt.view([bsz, 1, n]);
            let y =
                (&h * ct.view([bsz, 1, n])).sum_dim_intlist([2i64].as_slice(), false, h.kind()) + &xc * &self.d_skip;
            let zt = z.select(1, t);
            outs.push((y * &zt * zt.sigmoid()).matmul(&self.out_proj.ws.tr()));
        }
        Tensor::stack(&outs, 1)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.a_log.kind(), self.a_log.device());
        let k = self.conv_w.size()[1];
        MixerState::new(vec![Tensor::zeros([batch, k - 1, self.e], opts), Tensor::zeros([batch, self.e, self.n], opts)])
    }

    fn step(&self, state: &mut MixerState, u_t: &Tensor) -> Tensor {
        let (x, z) = self.split_in(u_t);
        let xc = fir_step(&mut state.tensors[0], &x, &self.conv_w, Some(&self.conv_b)).silu();
        let inp = self.inputs(xc, z);
        let (h, y) = self.ssm_step(&state.tensors[1], &self.delta(&inp), &inp.x, &inp.b, &inp.c);
        state.tensors[1] = h;
        self.out_proj.forward(&self.gate(y, &inp))
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        self.e * (self.conv_w.size()[1] - 1) + self.e * self.n
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let tok = self.in_proj.flops()
            + crate::flops::fir(self.e, self.conv_w.size()[1])
            + self.x_proj.flops()
            + self.dt_proj.flops()
            + self.out_proj.flops();
        let scan = 9.0 * (self.e * self.n) as f64;
        let scanned = match self.scan {
            MambaScan::Fused => seq_len,
            MambaScan::Chunked => crate::flops::padded(seq_len, self.chunk),
        };
        let fwd = seq_len as f64 * tok + scanned as f64 * scan;
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + scan)
    }

    /// Zoology's `Mamba.state_size`: `2 · d_model · d_state` (the SSM state with expand 2;
    /// Zoology writes 2, not `expand`, and leaves out the conv state).
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(2 * self.d * self.n)
    }
}

impl MixerKind for Mamba {
    type Config = MambaConfig;
    const NAME: &'static str = "mamba";
    const ABOUT: &'static str = "Mamba S6 selective SSM (input-dependent Δ, B, C; fused CPU scan or chunked scan)";
    const STATE_FORMULA: &'static str = "E·(k−1) + E·N, E = expand·d (previous conv inputs + SSM state)";
    const CONSTANT_STATE: bool = true;

    /// Parameters with E = expand·d: in (d → 2E), x (E → R + 2N), Δ (R → E), out (E → d), A,
    /// the short convolution and D.
    fn memory(c: &MambaConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        let e = c.expand * d;
        let (n, k) = (c.d_state, c.d_conv);
        let r = if c.dt_rank == 0 { (d + 15) / 16 } else { c.dt_rank };
        let p = linear_params(d, 2 * e, false)
            + linear_params(e, r + 2 * n, false)
            + linear_params(r, e, true)
            + linear_params(e, d, false)
            + (e * n + e * k + 2 * e) as f64;
        MixerMemory { params: Some(p), ..MixerMemory::output_only(d, l) }
    }

    fn validate(c: &MambaConfig, _d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "d_state", c.d_state, 1, 4096, "16")?;
        int_in(field, "d_conv", c.d_conv, 1, 1024, "4")?;
        int_in(field, "expand", c.expand, 1, 64, "2")?;
        int_in(field, "chunk_size", c.chunk_size, 1, MAX_SIZE, "64")?;
        int_in(field, "checkpoint_every", c.checkpoint_every, 1, MAX_SIZE, "16")?;
        if c.dt_rank < 0 || c.dt_rank > MAX_SIZE {
            return Err(config_err(
                format!("{field}.dt_rank"),
                format!("must be in [1, {MAX_SIZE}], or 0 for ⌈d_model/16⌉ (got {})", c.dt_rank),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &MambaConfig, ctx: &BuildCtx) -> Result<Self> {
        let e = c.expand * d;
        let (n, k) = (c.d_state, c.d_conv);
        let r = if c.dt_rank == 0 { (d + 15) / 16 } else { c.dt_rank };
        let dev = p.device();
        let cb = 1.0 / (k as f64).sqrt();
        let std = ctx.init_std;
        let in_proj = Linear::new(&p / "in_proj", d, 2 * e, false, std);
        let x_proj = Linear::new(&p / "x_proj", e, r + 2 * n, false, std);
        let dt_proj = Linear::new(&p / "dt_proj", r, e, true, std);
        let out_proj = Linear::new(&p / "out_proj", e, d, false, ctx.out_std);
        let a_log = p.var("A_log", &[e, n], nn::Init::Const(0.0));
        tch::no_grad(|| {
            let a = Tensor::arange_start(1, n + 1, (Kind::Float, dev)).log().unsqueeze(0).expand([e, n], false);
            let _ = a_log.shallow_clone().copy_(&a);
            if c.init == MambaInit::Mamba {
                // PyTorch's Linear default: U(±1/√fan_in)
                let _ = in_proj.ws.shallow_clone().uniform_(-1.0 / (d as f64).sqrt(), 1.0 / (d as f64).sqrt());
                let _ = x_proj.ws.shallow_clone().uniform_(-1.0 / (e as f64).sqrt(), 1.0 / (e as f64).sqrt());
                // W_Δ ~ U(±R^{-1/2}); b_Δ = softplus⁻¹(dt), dt log-uniform in [1e-3, 0.1], floor 1e-4
                let rb = 1.0 / (r as f64).sqrt();
                let _ = dt_proj.ws.shallow_clone().uniform_(-rb, rb);
                let (lo, hi) = (1e-3f64.ln(), 0.1f64.ln());
                let dt = (Tensor::rand([e], (Kind::Float, dev)) * (hi - lo) + lo).exp().clamp_min(1e-4);
                let inv = &dt + (-(-&dt).expm1()).log();
                let _ = dt_proj.bs.as_ref().unwrap().shallow_clone().copy_(&inv);
                // kaiming_uniform(a=√5) = U(±1/√fan_in), divided by √(n_layers)
                let ob = 1.0 / (e as f64).sqrt() / (ctx.n_layers.max(1) as f64).sqrt();
                let _ = out_proj.ws.shallow_clone().uniform_(-ob, ob);
            }
        });
        Ok(Mamba {
            in_proj,
            conv_w: p.var("conv_weight", &[e, k], nn::Init::Uniform { lo: -cb, up: cb }),
            conv_b: p.var("conv_bias", &[e], nn::Init::Uniform { lo: -cb, up: cb }),
            x_proj,
            dt_proj,
            a_log,
            d_skip: p.var("D", &[e], nn::Init::Const(1.0)),
            out_proj,
            d,
            e,
            n,
            r,
            chunk: c.chunk_size,
            scan: c.scan,
            checkpoint_every: c.checkpoint_every,
        })
    }

    fn suite_variants() -> Vec<MambaConfig> {
        let chunked = MambaScan::Chunked;
        vec![
            MambaConfig::default(),
            MambaConfig { d_state: 4, checkpoint_every: 3, init: MambaInit::Mamba, ..Default::default() },
            MambaConfig { d_state: 4, chunk_size: 4, init: MambaInit::Mamba, scan: chunked, ..Default::default() },
            MambaConfig { chunk_size: 1, dt_rank: 3, init: MambaInit::Mamba, scan: chunked, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::rel_err;
    use tch::Device;

    /// Large step sizes (Δ A down to about −1000 per step) must not overflow the chunked scan,
    /// and it must agree with the per-step recurrence.
    #[test]
    fn chunked_scan_is_stable_for_large_steps() {
        let _rng = crate::mixers::testing::seed_guard(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = MambaConfig { d_state: 4, chunk_size: 8, ..Default::default() };
        let m = Mamba::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 64)).unwrap();
        let (b, l, e, n) = (2i64, 29i64, m.e, m.n);
        let r = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu));
        let inp =
            ScanIn { x: r(&[b, l, e]), delta: (r(&[b, l, e]) * 20.0).softplus(), b: r(&[b, l, n]), c: r(&[b, l, n]) };
        let fast = tch::no_grad(|| m.scan_chunked(&inp));
        let slow = tch::no_grad(|| m.scan_loop(&inp));
        assert!(bool::try_from(fast.isfinite().all()).unwrap(), "chunked scan not finite");
        let err = rel_err(&fast, &slow);
        assert!(err < 1e-5, "chunked vs per-step rel err {err:.2e}");
    }

    /// Small steps (decays near 1), where the state carried across chunks dominates the output:
    /// the generic suite compares whole-block outputs, in which the skip term `D x` hides most
    /// of the scan, so the scan itself is compared here, values and gradients, across chunk
    /// sizes and lengths that leave a partial last chunk.
    #[test]
    fn chunked_scan_matches_recurrence_when_state_carries_across_chunks() {
        for &(chunk, l) in &[(4i64, 1i64), (4, 7), (4, 16), (8, 33), (16, 64), (5, 64), (64, 40)] {
            let _rng = crate::mixers::testing::seed_guard(chunk * 100 + l);
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = MambaConfig { d_state: 4, chunk_size: chunk, ..Default::default() };
            let m = Mamba::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 64)).unwrap();
            let (b, e, n) = (2i64, m.e, m.n);
            let leaf =
                |s: &[i64], scale: f64| (Tensor::randn(s, (Kind::Double, Device::Cpu)) * scale).set_requires_grad(true);
            // (the second draw, once the gate z, is unused; kept so the inputs stay as they were)
            let (x, _, dl, bb, cc) = (
                leaf(&[b, l, e], 1.0),
                leaf(&[b, l, e], 1.0),
                leaf(&[b, l, e], 1.0),
                leaf(&[b, l, n], 1.0),
                leaf(&[b, l, n], 1.0),
            );
            let a_log = m.a_log.to_kind(Kind::Double).detach().set_requires_grad(true);
            let mk = || ScanIn {
                x: x.shallow_clone(),
                delta: dl.softplus() * 0.02,
                b: bb.shallow_clone(),
                c: cc.shallow_clone(),
            };
            let m64 = Mamba { a_log: a_log.shallow_clone(), ..m };
            let w = Tensor::randn([b, l, e], (Kind::Double, Device::Cpu));
            let grads = |y: Tensor| {
                let wrt = [&x, &dl, &bb, &cc, &a_log];
                let g = Tensor::run_backward(&[(y * &w).sum(Kind::Double)], &wrt, false, false);
                // a parameter a graph never used has an undefined gradient: count it as zero
                let g: Vec<Tensor> = g
                    .iter()
                    .zip(wrt)
                    .map(|(g, p)| if g.defined() { g.flatten(0, -1) } else { p.zeros_like().flatten(0, -1) })
                    .collect();
                Tensor::cat(&g, 0)
            };
            let (fast, slow) = (m64.scan_chunked(&mk()), m64.scan_loop(&mk()));
            let err = rel_err(&fast, &slow);
            assert!(err < 1e-10, "chunk {chunk} L={l}: chunked vs per-step rel err {err:.2e}");
            let gerr = rel_err(&grads(fast), &grads(slow));
            assert!(gerr < 1e-10, "chunk {chunk} L={l}: gradient rel err {gerr:.2e}");
        }
    }

    /// The fused kernel as Mamba calls it (`gated_scan`: A = −exp(A_log), Δ = softplus(dt +
    /// b_Δ), D and the gate silu(z) inside the kernel) against the per-step loop with those
    /// written out, in f64: values and the gradients of x, z, dt, B, C, A_log, D and b_Δ, with
    /// small steps (state carried far) and large ones, at checkpoint intervals that do and do
    /// not divide L (and L = 1).
    #[test]
    fn fused_gated_scan_matches_the_recurrence_values_and_gradients_f64() {
        for &(k, l, shift) in &[(4i64, 1i64, -4.0), (4, 7, -4.0), (16, 64, -4.0), (5, 33, 0.0), (3, 40, 3.0)] {
            let _rng = crate::mixers::testing::seed_guard(k * 100 + l);
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = MambaConfig { d_state: 4, checkpoint_every: k, ..Default::default() };
            let m = Mamba::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 64)).unwrap();
            let (b, e, n) = (2i64, m.e, m.n);
            let leaf = |s: &[i64]| Tensor::randn(s, (Kind::Double, Device::Cpu)).set_requires_grad(true);
            let (x, z, dt, bb, cc) =
                (leaf(&[b, l, e]), leaf(&[b, l, e]), leaf(&[b, l, e]), leaf(&[b, l, n]), leaf(&[b, l, n]));
            let a_log = (m.a_log.to_kind(Kind::Double) + Tensor::randn([e, n], (Kind::Double, Device::Cpu)) * 0.1)
                .detach()
                .set_requires_grad(true);
            let (d_skip, bias) = (leaf(&[e]), (leaf(&[e]) + shift).detach().set_requires_grad(true));
            let dt_proj = Linear { ws: m.dt_proj.ws.to_kind(Kind::Double), bs: Some(bias.shallow_clone()) };
            let m64 = Mamba { a_log: a_log.shallow_clone(), d_skip: d_skip.shallow_clone(), dt_proj, ..m };
            let inp = Inputs {
                x: x.shallow_clone(),
                z: z.shallow_clone(),
                dt: dt.shallow_clone(),
                b: bb.shallow_clone(),
                c: cc.shallow_clone(),
            };
            assert!(m64.uses_fused(&inp));
            let w = Tensor::randn([b, l, e], (Kind::Double, Device::Cpu));
            let wrt = [&x, &z, &dt, &bb, &cc, &a_log, &d_skip, &bias];
            let grads = |y: &Tensor| Tensor::run_backward(&[(y * &w).sum(Kind::Double)], &wrt, false, false);
            let fast = m64.gated_scan(&inp);
            let delta = (&dt + &bias).clamp_min(0.0) + (-(&dt + &bias).abs()).exp().log1p();
            let s = ScanIn { x: x.shallow_clone(), delta, b: bb.shallow_clone(), c: cc.shallow_clone() };
            let slow = (m64.scan_loop(&s) + &d_skip * &x) * &z * z.sigmoid();
            let err = rel_err(&fast, &slow);
            assert!(err < 1e-12, "k {k} L={l}: fused vs per-step rel err {err:.2e}");
            let names = ["x", "z", "dt", "B", "C", "A_log", "D", "dt bias"];
            for ((name, gf), gs) in names.iter().zip(grads(&fast)).zip(grads(&slow)) {
                let gerr = rel_err(&gf, &gs);
                assert!(gerr < 1e-11, "k {k} L={l} bias shift {shift}: gradient of {name} rel err {gerr:.2e}");
            }
        }
    }

    /// The whole mixer's fast forms (chunked with the default chunk 64, fused with the default
    /// checkpoint interval) against the naive per-token loop across chunk and segment
    /// boundaries (L = 150: two full chunks and a partial one), with Mamba's own init (small Δ,
    /// so state carried across chunks matters), then with Zoology's.
    #[test]
    fn forward_matches_the_naive_loop_across_chunk_boundaries() {
        for (init, scan) in [MambaInit::Mamba, MambaInit::Normal]
            .into_iter()
            .flat_map(|i| [(i, MambaScan::Chunked), (i, MambaScan::Fused)])
        {
            let (m, x) = crate::mixers::testing::seeded(21, || {
                let vs = nn::VarStore::new(Device::Cpu);
                let cfg = MambaConfig { d_state: 4, init, scan, ..Default::default() };
                (
                    Mamba::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 160)).unwrap(),
                    Tensor::randn([2, 150, 8], (Kind::Float, Device::Cpu)),
                )
            });
            let (fast, slow) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
            let err = rel_err(&fast, &slow);
            assert!(err < 1e-4, "{init:?} {scan:?}: forward vs naive loop rel err {err:.2e}");
            // the positions after the first chunk really depend on the carried state (Mamba init)
            if init == MambaInit::Mamba {
                let x2 = x.copy();
                let _ = x2.narrow(1, 0, 64).g_mul_scalar_(-1.0);
                let y2 = tch::no_grad(|| m.forward(&x2, false));
                let moved = rel_err(&y2.narrow(1, 100, 50), &fast.narrow(1, 100, 50));
                assert!(moved > 1e-3, "{scan:?}: outputs 100..150 do not see chunk 0 (rel change {moved:.2e})");
            }
        }
    }

    /// A built 2-layer mamba LM's variables; `extra` = "" is the default mixer config.
    fn lm_vars(extra: &str) -> std::collections::HashMap<String, Tensor> {
        use crate::model::{LanguageModel, ModelConfig};
        let cfg: ModelConfig =
            toml::from_str(&format!("d_model = 64\nstate_mixer = \"identity\"\nmixer = {{ name = \"mamba\"{extra} }}"))
                .unwrap();
        crate::mixers::testing::seeded(4, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let _lm = LanguageModel::new(&vs.root(), &cfg, 64, 64).unwrap();
            vs.variables()
        })
    }

    /// Zoology Figure 2's init (the default), on a built 2-layer LM: every Linear N(0, 0.02),
    /// `dt_proj.bias` zero (Δ = softplus(W_Δ δ) ≈ 0.69), out_proj N(0, 0.02/√(2·2)), A = −(n+1), D = 1.
    #[test]
    fn init_is_zoology_figure2s_by_default() {
        let v = lm_vars("");
        let std = |n: &str| v[n].std(true).double_value(&[]);
        for layer in 0..2 {
            let p = |n: &str| format!("layers.{layer}.mixer.{n}");
            for n in ["in_proj.weight", "x_proj.weight", "dt_proj.weight"] {
                assert!((std(&p(n)) - 0.02).abs() < 0.0015, "layer {layer} {n}: std {}", std(&p(n)));
            }
            assert!((std(&p("out_proj.weight")) - 0.01).abs() < 0.0008, "out_proj std {}", std(&p("out_proj.weight")));
            assert_eq!(v[&p("dt_proj.bias")].abs().max().double_value(&[]), 0.0, "dt bias must be zero");
            let want_a = Tensor::arange_start(1, 17, (Kind::Float, Device::Cpu)).expand([128, 16], false);
            assert!(rel_err(&v[&p("A_log")].exp(), &want_a) < 1e-6, "A = −exp(A_log) is not −(n+1)");
            assert_eq!(v[&p("D")].min().double_value(&[]), 1.0);
        }
    }

    /// Mamba's own init: PyTorch-default in_proj/x_proj, Δ bias with softplus(b) in [1e-3, 0.1],
    /// out_proj within U(±1/√E)/√n_layers.
    #[test]
    fn mamba_init_option_is_mambas_own() {
        let v = lm_vars(", init = \"mamba\"");
        let (d, e, r) = (64f64, 128f64, 4f64);
        let p = |n: &str| format!("layers.1.mixer.{n}");
        let maxabs = |n: &str| v[&p(n)].abs().max().double_value(&[]);
        let std = |n: &str| v[&p(n)].std(true).double_value(&[]);
        assert!(
            maxabs("in_proj.weight") <= 1.0 / d.sqrt()
                && (std("in_proj.weight") - 1.0 / (3.0 * d).sqrt()).abs() < 0.003
        );
        assert!(
            maxabs("x_proj.weight") <= 1.0 / e.sqrt() && (std("x_proj.weight") - 1.0 / (3.0 * e).sqrt()).abs() < 0.003
        );
        assert!(maxabs("dt_proj.weight") <= 1.0 / r.sqrt());
        let ob = 1.0 / e.sqrt() / 2f64.sqrt();
        assert!(maxabs("out_proj.weight") <= ob && maxabs("out_proj.weight") > 0.9 * ob);
        let dt = v[&p("dt_proj.bias")].softplus();
        let (lo, hi) = (dt.min().double_value(&[]), dt.max().double_value(&[]));
        assert!(lo >= 0.99e-3 && hi <= 0.1001 && hi > 0.05, "softplus(dt bias) in [{lo}, {hi}]");
    }

    #[test]
    fn state_sizes_in_both_conventions() {
        let m = crate::mixers::testing::seeded(0, || {
            Mamba::build(nn::VarStore::new(Device::Cpu).root(), 8, &MambaConfig::default(), &BuildCtx::new(0, 2, 32))
                .unwrap()
        });
        assert_eq!(m.state_size(20), 16 * 3 + 16 * 16);
        assert_eq!(m.state_size_zoology(20), Some(2 * 8 * 16));
    }

    #[test]
    fn bad_configs_name_the_field() {
        use crate::mixers::testing::validate_error;
        for (bad, key) in [
            (r#"{ name = "mamba", d_state = 0 }"#, "d_state"),
            (r#"{ name = "mamba", d_conv = 100000 }"#, "d_conv"),
            (r#"{ name = "mamba", expand = 0 }"#, "expand"),
            (r#"{ name = "mamba", dt_rank = -1 }"#, "dt_rank"),
            (r#"{ name = "mamba", chunk_size = 0 }"#, "chunk_size"),
            (r#"{ name = "mamba", checkpoint_every = 0 }"#, "checkpoint_every"),
            (r#"{ name = "mamba", scan = "parallel" }"#, "scan"),
            (r#"{ name = "mamba", init = "xavier" }"#, "init"),
        ] {
            let e = validate_error(bad);
            assert!(e.contains(&format!("model.mixer.{key}")), "{bad}: {e}");
        }
    }
}
