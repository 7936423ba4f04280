//! `ttt_linear` and `ttt_mlp`: test-time training layers (Sun et al. 2024, "Learning to (Learn
//! at Test Time)"), as Zoology's `ttt.TTT` wrapper around `TTTLinear` / `TTTMLP`. One
//! implementation, two registry entries.
//!
//! With `H` heads of `N = d/H` channels, `q, k, v = W_{q,k,v} x` per head, RoPE on q and k at
//! the position *within its mini-batch* (`t mod b`, `b = mini_batch_size`; interleaved pairs
//! `(2i, 2i+1)`, as the source's `permute_qk` + rotate-half + `undo_permute_qk`), a learning
//! rate per token and head `λ_t = ttt_base_lr · σ(w_hᵀ x_t + c_h) / N`, and per position `i` of
//! a mini-batch the factor `τ_i = max(1/(i+1) + τ̃_i, 0)` (τ̃ learned, 0 at init). The inner
//! model `f_W(z) = z + LN_h(g_W(z))` (per-head LayerNorm, eps 1e-6) with
//!
//! ```text
//! TTT-Linear:  g_W(z) = z W₁ + b₁                      (W₁: N × N)
//! TTT-MLP:     g_W(z) = gelu_tanh(z W₁ + b₁) W₂ + b₂    (W₁: N × 4N, W₂: 4N × N)
//! ```
//! is trained on the self-supervised loss `ℓ_s(W) = ½‖LN_h(g_W(k_s)) − (v_s − k_s)‖²`. Inside a
//! mini-batch every gradient is taken at the mini-batch's initial weights `W_m`, and token i
//! (0-based in its mini-batch) reads with
//!
//! ```text
//! W_t = W_m − τ_i · Σ_{s ≤ i} λ_s ∇ℓ_s(W_m)            (s in the same mini-batch)
//! o_t = q_t + LN_h(g_{W_t}(q_t)),    W_{m+1} = W_t at the mini-batch's last token
//! y   = W_o( PostLN(o) [⊙ gelu_tanh(W_g x)] )           (PostLN over d, eps 1e-6; gate: use_gate)
//! ```
//! Causal: o_t sees k, v, λ of its own mini-batch up to t and the earlier mini-batches (through
//! `W_m`). A trailing partial mini-batch uses `τ_0 … τ_{r−1}`, as the source.
//!
//! Forms:
//! - fast (training): the dual form per mini-batch (the source's `use_dual_form`), e.g. for
//!   TTT-Linear with `G = ∇_Z` (one row per token), `E[t, s] = τ_t λ_s` (s ≤ t):
//!   `Z̄ = Q W_m − (E ⊙ tril(Q Kᵀ)) G − E G + b₁`, `W_{m+1} = W_m − (e_last ⊙ K)ᵀ G`; the
//!   gradients use the closed-form LayerNorm + L2 backward (`ln_l2_grad`) and gelu's derivative.
//!   All mini-batches' `tril(Q Kᵀ)` and `E` are batched; only the weight hand-off loops.
//! - reference: the primal per-token loop: for each token its gradient at `W_m` with the
//!   LayerNorm Jacobian written as an explicit `N × N` matrix, the sum of gradients so far, the
//!   weights `W_t`, the readout; `W_m` replaced at each mini-batch's end.
//! - step: the same primal update on an explicit state: `W_m` and the running gradient sums
//!   `Σ λ_s ∇ℓ_s` of the current mini-batch, plus the position in the mini-batch.
//!
//! State (elements per sequence, constant in L): TTT-Linear `2·H·N·(N+1) + 1`, TTT-MLP
//! `2·H·(8N² + 5N) + 1`: the inner weights `W_m`, the running gradient sums (the source's
//! decode cache keeps them too, `W1_grad`, `b1_grad`, …) and the position counter. Zoology's
//! `state_size()` counts the weights only: `H·N·(N+1)` (linear), `H·(8N² + 5N)` (MLP)
//! (`state_size_zoology`).
//!
//! FLOPs ([`crate::flops`] convention): per token q, k, v, o `8·d²` (+ `2·d²` with the gate)
//! and the learning-rate gate `2·d·H`; per mini-batch of `c = min(b, L)` positions (the last
//! one zero-padded) and head, TTT-Linear: `K W`, `Q W`, the weight update `6·c·N²`,
//! `tril(Q Kᵀ)`, `(E ⊙ A) G`, `E G` `6·c²·N`, the bias update `2·c·N`; TTT-MLP (`F = 4N`):
//! `14·c·N·F` (two forward layers on k and q, the backward through W₂, two updates),
//! `c²·(6N + 6F)`, `2·c·(N + F)`. Decode per head: TTT-Linear `8N² + 4N`, TTT-MLP
//! `18·N·F + 4·(N + F)` (the gradients at `W_m`, the running sums, `W_t` and the readout).
//! Prefill is the step form. LayerNorms, gelu and elementwise gates are not counted.
//!
//! Defaults and init: Zoology's `models_repo` TTT configs (2 heads, `ttt_base_lr` 1,
//! `mini_batch_size` 16, no gate), RoPE base 10000. Init as Zoology's model leaves it: the
//! q, k, v, o (and g) Linears N(0, 0.02) (its `_init_weights`), W₁ (and W₂) N(0, 0.02), biases
//! 0, the learning-rate weights N(0, 0.02) with bias 0, τ̃ = 0, LayerNorm weights 1, biases 0.
//!
//! Departures (docs/DECISIONS.md, "Matrix-state recurrences"): `share_qk` (shared q/k projection
//! with two causal convolutions) is not offered, and neither are `pre_conv` / `conv_kernel`
//! (inert in Zoology's wrapper: only the source's own `Block` applies `pre_conv`). f32 throughout.

use super::common::bounds::{float_in, int_in};
use super::common::chunking::{lower_mask, ChunkLayout};
use super::common::layers::{merge_heads, rope, rope_reference, split_heads, Linear};
use super::{delegate_mixer, BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// LayerNorm epsilon of the inner model and of the post-norm (the source's 1e-6).
const LN_EPS: f64 = 1e-6;
/// Largest accepted mini-batch.
const MAX_MINI_BATCH: i64 = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TttConfig {
    /// Number of heads (Zoology's configs: 2; must divide d_model into even head widths).
    pub num_heads: i64,
    /// Tokens per inner gradient step (Zoology: 16; its configs also sweep 32).
    pub mini_batch_size: i64,
    /// Scale of the inner learning rate `λ = base_lr · σ(·) / N` (Zoology: 1).
    pub ttt_base_lr: f64,
    /// Output gate `⊙ gelu_tanh(W_g x)` (Zoology's configs: off).
    pub use_gate: bool,
    /// RoPE base (Zoology: 10000).
    pub rope_theta: f64,
}

impl Default for TttConfig {
    fn default() -> Self {
        TttConfig { num_heads: 2, mini_batch_size: 16, ttt_base_lr: 1.0, use_gate: false, rope_theta: 10000.0 }
    }
}

/// The inner model's weights: `w1: [H, N, F]`, `b1: [H, 1, F]`, and for the MLP
/// `w2: [H, F, N]`, `b2: [H, 1, N]`.
#[derive(Debug)]
struct Inner {
    w1: Tensor,
    b1: Tensor,
    w2: Option<(Tensor, Tensor)>,
}

/// The shared TTT layer; `inner.w2` is present for TTT-MLP.
#[derive(Debug)]
pub struct Ttt {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    wg: Option<Linear>,
    /// `learnable_ttt_lr_weight`, `[H, d]`, and its bias `[H]`.
    lr_w: Tensor,
    lr_b: Tensor,
    /// `learnable_token_idx`, `[b]`.
    token_idx: Tensor,
    /// `ttt_norm_weight`, `ttt_norm_bias`: `[H, N]`.
    ln_w: Tensor,
    ln_b: Tensor,
    post_w: Tensor,
    post_b: Tensor,
    inner: Inner,
    cfg: TttConfig,
    d: i64,
}

/// Per-head q, k, v `[B, H, L, N]` (RoPE applied) and the learning rates λ `[B, H, L]`.
struct Inputs {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
}

/// `[.., N] → [.., N]`: even channels first, then odd (the source's `permute_qk`), so that
/// rotate-half RoPE rotates the interleaved pairs `(2i, 2i+1)`.
fn deinterleave(x: &Tensor) -> Tensor {
    let mut s = x.size();
    let n = *s.last().unwrap();
    s.pop();
    let mut v = s.clone();
    v.extend([n / 2, 2]);
    s.push(n);
    x.reshape(v.as_slice()).transpose(-2, -1).reshape(s.as_slice())
}

/// Inverse of [`deinterleave`] (`undo_permute_qk`).
fn interleave(x: &Tensor) -> Tensor {
    let mut s = x.size();
    let n = *s.last().unwrap();
    s.pop();
    let mut v = s.clone();
    v.extend([2, n / 2]);
    s.push(n);
    x.reshape(v.as_slice()).transpose(-2, -1).reshape(s.as_slice())
}

/// Per-head LayerNorm over the last dim with `w, b` broadcasting (`[H, 1, N]` against
/// `[B, H, ·, N]`).
fn ln(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let dims = [-1i64];
    let mu = x.mean_dim(dims.as_slice(), true, x.kind());
    let var = (x - &mu).square().mean_dim(dims.as_slice(), true, x.kind());
    (x - mu) * (var + LN_EPS).rsqrt() * w + b
}

/// Gradient of `½‖LN(x)·w + b − target‖²` with respect to `x`, row by row (the source's
/// `ln_fused_l2_bwd`): `(N·ĝ − Σĝ − x̂ Σ(ĝ x̂)) / (N σ)` with `ĝ = w ⊙ (y − target)`.
fn ln_l2_grad(x: &Tensor, target: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let n = *x.size().last().unwrap() as f64;
    let dims = [-1i64];
    let mu = x.mean_dim(dims.as_slice(), true, x.kind());
    let var = (x - &mu).square().mean_dim(dims.as_slice(), true, x.kind());
    let std = (var + LN_EPS).sqrt();
    let xh = (x - mu) / &std;
    let gh = (&xh * w + b - target) * w;
    let s1 = gh.sum_dim_intlist(dims.as_slice(), true, x.kind());
    let s2 = (&gh * &xh).sum_dim_intlist(dims.as_slice(), true, x.kind());
    (gh * n - s1 - xh * s2) / (std * n)
}

/// Derivative of `gelu_tanh` (the source's `gelu_bwd`).
fn gelu_grad(x: &Tensor) -> Tensor {
    let t = (x * 0.797_884_56 * (x * x * 0.044715 + 1.0)).tanh();
    x * 0.5 * ((-&t * &t + 1.0) * (x * x * 0.107_032_224_3 + 0.797_884_56)) + (t + 1.0) * 0.5
}

impl Ttt {
    fn heads(&self) -> i64 {
        self.cfg.num_heads
    }
    fn n(&self) -> i64 {
        self.d / self.heads()
    }
    fn f(&self) -> i64 {
        self.inner.w1.size()[2]
    }
    fn mlp(&self) -> bool {
        self.inner.w2.is_some()
    }

    /// `τ_i = max(1/(i+1) + τ̃_i, 0)`, `[b]`.
    fn tau(&self) -> Tensor {
        let b = self.cfg.mini_batch_size;
        let base = Tensor::arange_start(1, b + 1, (self.token_idx.kind(), self.token_idx.device())).reciprocal();
        (base + &self.token_idx).clamp_min(0.0)
    }

    /// Projections, learning rates, and RoPE by `rot` (given `[B, H, L, N]` in the
    /// deinterleaved layout).
    fn inputs(&self, x: &Tensor, rot: impl Fn(&Tensor) -> Tensor) -> Inputs {
        let h = self.heads();
        let qk = |l: &Linear| interleave(&rot(&deinterleave(&split_heads(&l.forward(x), h))));
        // the inner learning rates gate every inner step: fp32 under bf16 autocast
        let lr = crate::device::Precision::fp32_region(x.device(), || {
            let x = crate::device::full_precision(x);
            (x.matmul(&self.lr_w.transpose(0, 1)) + &self.lr_b).sigmoid() * (self.cfg.ttt_base_lr / self.n() as f64)
        });
        Inputs { q: qk(&self.wq), k: qk(&self.wk), v: split_heads(&self.wv.forward(x), h), lr: lr.transpose(1, 2) }
    }

    /// `o: [B, H, L, N]` → post-norm over d, gate, output projection.
    fn finish(&self, o: &Tensor, x: &Tensor) -> Tensor {
        let y = merge_heads(o);
        let dims = [-1i64];
        let mu = y.mean_dim(dims.as_slice(), true, y.kind());
        let var = (&y - &mu).square().mean_dim(dims.as_slice(), true, y.kind());
        let y = (y - mu) * (var + LN_EPS).rsqrt() * &self.post_w + &self.post_b;
        let y = match &self.wg {
            Some(g) => g.forward(x).gelu("tanh") * y,
            None => y,
        };
        self.wo.forward(&y)
    }

    fn ln_params(&self) -> (Tensor, Tensor) {
        let (h, n) = (self.heads(), self.n());
        (self.ln_w.view([h, 1, n]), self.ln_b.view([h, 1, n]))
    }

    /// The inner weights broadcast to a batch of `b`.
    fn initial_weights(&self, b: i64) -> Vec<Tensor> {
        let tile = |t: &Tensor| t.unsqueeze(0).expand([b, -1, -1, -1], false);
        let mut ws = vec![tile(&self.inner.w1), tile(&self.inner.b1)];
        if let Some((w2, b2)) = &self.inner.w2 {
            ws.extend([tile(w2), tile(b2)]);
        }
        ws
    }

    /// Gradients of the inner loss at `ws` for the tokens `k, v: [.., C, N]`, with respect to the
    /// pre-activations: `[∇Z₁]` (linear) or `[∇Z₁, ∇Z₂]` and the hidden `X₂` (MLP).
    fn inner_grads(&self, ws: &[Tensor], k: &Tensor, v: &Tensor) -> (Vec<Tensor>, Option<Tensor>) {
        let (lw, lb) = self.ln_params();
        let target = v - k;
        let z1 = k.matmul(&ws[0]) + &ws[1];
        if !self.mlp() {
            return (vec![ln_l2_grad(&z1, &target, &lw, &lb)], None);
        }
        let x2 = z1.gelu("tanh");
        let z2 = x2.matmul(&ws[2]) + &ws[3];
        let g2 = ln_l2_grad(&z2, &target, &lw, &lb);
        let g1 = g2.matmul(&ws[2].transpose(-2, -1)) * gelu_grad(&z1);
        (vec![g1, g2], Some(x2))
    }

    /// Dual form over all mini-batches. `q, k, v: [B, H, L, N]`, `lr: [B, H, L]`.
    fn dual(&self, i: &Inputs) -> Tensor {
        let (b, _, l, _) = i.q.size4().unwrap();
        let lay = ChunkLayout::new(l, self.cfg.mini_batch_size);
        let c = lay.c;
        let sp = |t: &Tensor| lay.split(t, 2);
        let (q, k, v) = (sp(&i.q), sp(&i.k), sp(&i.v)); // [B, H, n, C, N]
        let lr = sp(&i.lr); // [B, H, n, C]
        let incl = lower_mask(c, false, q.device()).to_kind(q.kind());
        let tau = self.tau().narrow(0, 0, c);
        let eta = tau.view([c, 1]) * lr.unsqueeze(-2) * &incl; // E[t, s] = τ_t λ_s, s ≤ t
        let e_last = tau.get(c - 1) * &lr; // [B, H, n, C]
        let a1 = q.matmul(&k.transpose(-2, -1)) * &incl; // tril(Q Kᵀ)
        let (lw, lb) = self.ln_params();
        let mut ws = self.initial_weights(b);
        let mut outs = Vec::with_capacity(lay.n as usize);
        for m in 0..lay.n {
            let (qm, km, vm, em, am) =
                (q.select(2, m), k.select(2, m), v.select(2, m), eta.select(2, m), a1.select(2, m));
            let el = e_last.select(2, m).unsqueeze(-1); // [B, H, C, 1]
            let (g, x2) = self.inner_grads(&ws, &km, &vm);
            let z1 = qm.matmul(&ws[0]) - (&em * &am).matmul(&g[0]) - em.matmul(&g[0]) + &ws[1];
            let zbar = match &x2 {
                None => z1,
                Some(x2) => {
                    let x2bar = z1.gelu("tanh");
                    let a2 = x2bar.matmul(&x2.transpose(-2, -1)) * &incl;
                    x2bar.matmul(&ws[2]) - (&em * a2).matmul(&g[1]) - em.matmul(&g[1]) + &ws[3]
                }
            };
            outs.push(&qm + ln(&zbar, &lw, &lb));
            let upd = |w: &Tensor, bias: &Tensor, xin: &Tensor, gr: &Tensor| {
                (
                    w - (&el * xin).transpose(-2, -1).matmul(gr),
                    bias - (&el * gr).sum_dim_intlist([-2i64].as_slice(), true, gr.kind()),
                )
            };
            let (w1, b1) = upd(&ws[0], &ws[1], &km, &g[0]);
            ws = match &x2 {
                None => vec![w1, b1],
                Some(x2) => {
                    let (w2, b2) = upd(&ws[2], &ws[3], x2, &g[1]);
                    vec![w1, b1, w2, b2]
                }
            };
        }
        lay.merge(&Tensor::stack(&outs, 2), 2)
    }

    fn token_flops(&self) -> f64 {
        let lin: f64 = [&self.wq, &self.wk, &self.wv, &self.wo].iter().map(|l| l.flops()).sum();
        lin + self.wg.as_ref().map_or(0.0, |g| g.flops()) + 2.0 * self.lr_w.numel() as f64
    }
}

/// Gradient of `½‖LN(x)·w + b − target‖²` for one vector per row, written with the LayerNorm
/// Jacobian as an explicit matrix: `∇ = J (w ⊙ (y − target))`,
/// `J = (I − 11ᵀ/N − x̂x̂ᵀ/N) / σ`. `x, target: [.., N]`, `w, b: [.., N]`.
fn ln_l2_grad_reference(x: &Tensor, target: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let n = *x.size().last().unwrap();
    let mu = x.mean_dim([-1i64].as_slice(), true, x.kind());
    let sigma = ((x - &mu).square().mean_dim([-1i64].as_slice(), true, x.kind()) + LN_EPS).sqrt();
    let xh = (x - mu) / &sigma;
    let eye = Tensor::eye(n, (x.kind(), x.device()));
    let jac = (eye - 1.0 / n as f64 - xh.unsqueeze(-1) * xh.unsqueeze(-2) / n as f64) / sigma.unsqueeze(-1);
    let gy = (&xh * w + b - target) * w;
    jac.matmul(&gy.unsqueeze(-1)).squeeze_dim(-1)
}

/// `gelu_tanh'(x)` from the formula `½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)`.
fn gelu_grad_reference(x: &Tensor) -> Tensor {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let th = ((x + x.pow_tensor_scalar(3.0) * 0.044715) * c).tanh();
    (&th + 1.0) * 0.5 + x * 0.5 * (1.0 - th.square()) * c * (x.square() * (3.0 * 0.044715) + 1.0)
}

impl Mixer for Ttt {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let lay = ChunkLayout::new(l, self.cfg.mini_batch_size);
        // RoPE at the position within the mini-batch: each mini-batch starts at 0
        let rot = |t: &Tensor| {
            let (b, h, _, n) = t.size4().unwrap();
            let per = lay.split(t, 2).reshape([b, h * lay.n, lay.c, n]);
            lay.merge(&rope(&per, 0, self.cfg.rope_theta).reshape([b, h, lay.n, lay.c, n]), 2)
        };
        let i = self.inputs(x, rot);
        // the inner model's gradient steps (the dual form) in fp32 under bf16 autocast: in bf16
        // the gradients of the inner learning rates and token weights were off by 10-140 %
        let o = crate::device::Precision::fp32_region(x.device(), || {
            use crate::device::full_precision as f32_;
            self.dual(&Inputs { q: f32_(&i.q), k: f32_(&i.k), v: f32_(&i.v), lr: f32_(&i.lr) })
        });
        self.finish(&o, x)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (b, l, _) = x.size3().unwrap();
        let mbs = self.cfg.mini_batch_size;
        let rot = |t: &Tensor| {
            let rows: Vec<Tensor> =
                (0..l).map(|p| rope_reference(&t.narrow(2, p, 1), p % mbs, self.cfg.rope_theta)).collect();
            Tensor::cat(&rows, 2)
        };
        let i = self.inputs(x, rot);
        let (lw, lb) = self.ln_params();
        let tau = self.tau();
        let mut wm = self.initial_weights(b); // W_m
        let mut sums: Vec<Tensor> = wm.iter().map(|w| w.zeros_like()).collect(); // Σ λ_s ∇ℓ_s
        let mut outs = Vec::with_capacity(l as usize);
        for t in 0..l {
            let pos = t % mbs;
            let (qt, kt, vt) = (i.q.narrow(2, t, 1), i.k.narrow(2, t, 1), i.v.narrow(2, t, 1)); // [B, H, 1, N]
            let lam = i.lr.narrow(2, t, 1).unsqueeze(-1); // [B, H, 1, 1]
                                                          // this token's gradients at W_m, by the chain rule through the explicit Jacobian
            let target = &vt - &kt;
            let z1 = kt.matmul(&wm[0]) + &wm[1];
            let grads = if let (Some(w2), Some(b2)) = (wm.get(2), wm.get(3)) {
                let h1 = z1.gelu("tanh");
                let z2 = h1.matmul(w2) + b2;
                let g2 = ln_l2_grad_reference(&z2, &target, &lw, &lb);
                let g1 = g2.matmul(&w2.transpose(-2, -1)) * gelu_grad_reference(&z1);
                vec![kt.transpose(-2, -1).matmul(&g1), g1, h1.transpose(-2, -1).matmul(&g2), g2]
            } else {
                let g1 = ln_l2_grad_reference(&z1, &target, &lw, &lb);
                vec![kt.transpose(-2, -1).matmul(&g1), g1]
            };
            sums = sums.iter().zip(&grads).map(|(s, g)| s + &lam * g).collect();
            let tau_i = tau.get(pos);
            let wt: Vec<Tensor> = wm.iter().zip(&sums).map(|(w, s)| w - &tau_i * s).collect();
            let mut z = qt.matmul(&wt[0]) + &wt[1];
            if wt.len() == 4 {
                z = z.gelu("tanh").matmul(&wt[2]) + &wt[3];
            }
            outs.push(&qt + ln(&z, &lw, &lb));
            if pos == mbs - 1 {
                wm = wt;
                sums = wm.iter().map(|w| w.zeros_like()).collect();
            }
        }
        self.finish(&Tensor::cat(&outs, 2), x)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let ws = self.initial_weights(batch);
        let mut ts: Vec<Tensor> = ws.iter().map(|w| w.copy()).collect();
        ts.extend(ws.iter().map(|w| w.zeros_like()));
        ts.push(Tensor::zeros([batch, 1], (self.inner.w1.kind(), self.inner.w1.device())));
        MixerState::new(ts)
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let x = x_t.unsqueeze(1);
        let np = state.tensors.len() / 2; // weights, then sums, then the counter
        let pos = state.tensors[2 * np].double_value(&[0, 0]) as i64;
        let i = self.inputs(&x, |t| rope(t, pos, self.cfg.rope_theta));
        let (qt, kt, vt) = (&i.q, &i.k, &i.v); // [B, H, 1, N]
        let lam = i.lr.unsqueeze(-1); // [B, H, 1, 1]
        let (wm, sums) = (&state.tensors[..np], &state.tensors[np..2 * np]);
        let (g, x2) = self.inner_grads(wm, kt, vt);
        let mut new_sums = vec![&sums[0] + kt.transpose(-2, -1).matmul(&(&lam * &g[0])), &sums[1] + &lam * &g[0]];
        if let Some(x2) = &x2 {
            new_sums.push(&sums[2] + x2.transpose(-2, -1).matmul(&(&lam * &g[1])));
            new_sums.push(&sums[3] + &lam * &g[1]);
        }
        let tau_i = self.tau().get(pos);
        let wt: Vec<Tensor> = wm.iter().zip(&new_sums).map(|(w, s)| w - &tau_i * s).collect();
        let mut z = qt.matmul(&wt[0]) + &wt[1];
        if self.mlp() {
            z = z.gelu("tanh").matmul(&wt[2]) + &wt[3];
        }
        let (lw, lb) = self.ln_params();
        let o = qt + ln(&z, &lw, &lb);
        let counter = &state.tensors[2 * np];
        state.tensors = if pos + 1 == self.cfg.mini_batch_size {
            let zeros: Vec<Tensor> = wt.iter().map(|w| w.zeros_like()).collect();
            wt.into_iter().chain(zeros).chain([counter.zeros_like()]).collect()
        } else {
            // inside a mini-batch the weights stay W_m; the sums and the position advance
            let next = counter + 1.0;
            state.tensors[..np].iter().map(|w| w.shallow_clone()).chain(new_sums).chain([next]).collect()
        };
        self.finish(&o, &x).squeeze_dim(1)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        2 * self.state_size_zoology(0).unwrap() + 1
    }

    /// Zoology's `TTT.state_size`: `H·N·(N+1)` (linear), `H·(8N² + 5N)` (MLP): the inner weights.
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        let (h, n) = (self.heads(), self.n());
        Some(if self.mlp() { h * (8 * n * n + 5 * n) } else { h * n * (n + 1) })
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let (h, n, f) = (self.heads() as f64, self.n() as f64, self.f() as f64);
        let c = self.cfg.mini_batch_size.min(seq_len.max(1));
        let cf = c as f64;
        let per_chunk = if self.mlp() {
            14.0 * cf * n * f + cf * cf * (6.0 * n + 6.0 * f) + 2.0 * cf * (n + f)
        } else {
            6.0 * cf * n * n + 6.0 * cf * cf * n + 2.0 * cf * n
        };
        let chunks = crate::flops::padded(seq_len, c) / c;
        let tok = self.token_flops();
        let fwd = seq_len as f64 * tok + chunks as f64 * h * per_chunk;
        let step = h * if self.mlp() { 18.0 * n * f + 4.0 * (n + f) } else { 8.0 * n * n + 4.0 * n };
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + step)
    }
}

impl Ttt {
    fn check(c: &TttConfig, d: i64, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 || (d / c.num_heads) % 2 != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!(
                    "must be ≥ 1 and divide d_model = {d} into heads of an even width (RoPE rotates channel pairs); got {}",
                    c.num_heads
                ),
            ));
        }
        int_in(field, "mini_batch_size", c.mini_batch_size, 1, MAX_MINI_BATCH, "16")?;
        float_in(field, "ttt_base_lr", c.ttt_base_lr, 0.0, f64::INFINITY, "1.0")?;
        float_in(field, "rope_theta", c.rope_theta, 1.0, f64::INFINITY, "10000")
    }

    fn build_ttt(p: nn::Path, d: i64, c: &TttConfig, ctx: &BuildCtx, mlp: bool) -> Self {
        let s = ctx.init_std;
        let (h, n) = (c.num_heads, d / c.num_heads);
        let f = if mlp { 4 * n } else { n };
        let normal = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let zeros = nn::Init::Const(0.0);
        let inner = Inner {
            w1: p.var("W1", &[h, n, f], normal),
            b1: p.var("b1", &[h, 1, f], zeros),
            w2: mlp.then(|| (p.var("W2", &[h, f, n], normal), p.var("b2", &[h, 1, n], zeros))),
        };
        Ttt {
            wq: Linear::new(&p / "q_proj", d, d, false, s),
            wk: Linear::new(&p / "k_proj", d, d, false, s),
            wv: Linear::new(&p / "v_proj", d, d, false, s),
            wo: Linear::new(&p / "o_proj", d, d, false, s),
            wg: c.use_gate.then(|| Linear::new(&p / "g_proj", d, d, false, s)),
            lr_w: p.var("learnable_ttt_lr_weight", &[h, d], normal),
            lr_b: p.var("learnable_ttt_lr_bias", &[h], zeros),
            token_idx: p.var("learnable_token_idx", &[c.mini_batch_size], zeros),
            ln_w: p.var("ttt_norm_weight", &[h, n], nn::Init::Const(1.0)),
            ln_b: p.var("ttt_norm_bias", &[h, n], zeros),
            post_w: p.var("post_norm_weight", &[d], nn::Init::Const(1.0)),
            post_b: p.var("post_norm_bias", &[d], zeros),
            inner,
            cfg: c.clone(),
            d,
        }
    }
}

/// TTT-Linear: the inner model is one linear map with bias per head.
#[derive(Debug)]
pub struct TttLinear {
    ttt: Ttt,
}
delegate_mixer!(TttLinear, ttt);

/// TTT-MLP: the inner model is a two-layer GELU MLP (hidden 4N) per head.
#[derive(Debug)]
pub struct TttMlp {
    ttt: Ttt,
}
delegate_mixer!(TttMlp, ttt);

fn variants() -> Vec<TttConfig> {
    vec![
        TttConfig::default(),
        TttConfig { num_heads: 4, mini_batch_size: 4, use_gate: true, ..Default::default() },
        TttConfig { num_heads: 1, mini_batch_size: 1, ttt_base_lr: 0.5, ..Default::default() },
    ]
}

impl MixerKind for TttLinear {
    type Config = TttConfig;
    const NAME: &'static str = "ttt_linear";
    const ABOUT: &'static str = "TTT-Linear: a linear inner model per head trained by one gradient step per mini-batch (dual form), RoPE within mini-batches";
    const STATE_FORMULA: &'static str = "2·H·N·(N+1) + 1, N = d/H (inner weights, running gradient sums, position)";
    const CONSTANT_STATE: bool = true;
    fn validate(c: &TttConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        Ttt::check(c, d, field)
    }
    fn build(p: nn::Path, d: i64, c: &TttConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(TttLinear { ttt: Ttt::build_ttt(p, d, c, ctx, false) })
    }
    fn suite_variants() -> Vec<TttConfig> {
        variants()
    }
}

impl MixerKind for TttMlp {
    type Config = TttConfig;
    const NAME: &'static str = "ttt_mlp";
    const ABOUT: &'static str = "TTT-MLP: a two-layer GELU inner model (hidden 4N) per head trained by one gradient step per mini-batch (dual form)";
    const STATE_FORMULA: &'static str = "2·H·(8N² + 5N) + 1, N = d/H (inner weights, running gradient sums, position)";
    const CONSTANT_STATE: bool = true;
    fn validate(c: &TttConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        Ttt::check(c, d, field)
    }
    fn build(p: nn::Path, d: i64, c: &TttConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(TttMlp { ttt: Ttt::build_ttt(p, d, c, ctx, true) })
    }
    fn suite_variants() -> Vec<TttConfig> {
        variants()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seed_guard, validate_error};
    use tch::{Device, Kind};

    /// The closed-form LayerNorm + L2 gradient, its Jacobian-matrix form, and autograd agree;
    /// and both gelu derivatives match autograd's.
    #[test]
    fn inner_gradients_match_autograd() {
        let _rng = seed_guard(11);
        let o = (Kind::Double, Device::Cpu);
        let x = Tensor::randn([3, 2, 5, 6], o).set_requires_grad(true);
        let (t, w, b) = (Tensor::randn([3, 2, 5, 6], o), Tensor::randn([2, 1, 6], o), Tensor::randn([2, 1, 6], o));
        let loss = (ln(&x, &w, &b) - &t).square().sum(Kind::Double) * 0.5;
        let auto = Tensor::run_backward(&[loss], &[&x], false, false).pop().unwrap();
        let xd = x.detach();
        for (name, g) in
            [("closed form", ln_l2_grad(&xd, &t, &w, &b)), ("jacobian", ln_l2_grad_reference(&xd, &t, &w, &b))]
        {
            let e = rel_err(&g, &auto);
            assert!(e < 1e-9, "{name}: rel err {e:.2e}");
        }
        let z = (Tensor::randn([50], o) * 3.0).set_requires_grad(true);
        let auto = Tensor::run_backward(&[z.gelu("tanh").sum(Kind::Double)], &[&z], false, false).pop().unwrap();
        let zd = z.detach();
        assert!(rel_err(&gelu_grad(&zd), &auto) < 1e-7, "gelu_grad");
        assert!(rel_err(&gelu_grad_reference(&zd), &auto) < 1e-12, "gelu_grad_reference");
    }

    /// `inner_grads` (closed-form LayerNorm backward, gelu's derivative, the chain through W₂)
    /// turned into weight gradients (`kᵀ∇Z₁`, `∇Z₁`, `X₂ᵀ∇Z₂`, `∇Z₂`) equal autograd's gradient
    /// of the inner loss with respect to the inner weights, for both inner models.
    #[test]
    fn inner_weight_gradients_match_autograd() {
        let _rng = seed_guard(5);
        for mlp in [false, true] {
            let vs = nn::VarStore::new(Device::Cpu);
            let c = TttConfig { num_heads: 2, ..Default::default() };
            let m = Ttt::build_ttt(vs.root(), 8, &c, &BuildCtx::new(0, 2, 16), mlp);
            let o = (Kind::Float, Device::Cpu);
            tch::no_grad(|| {
                for t in [&m.ln_w, &m.ln_b, &m.inner.b1] {
                    let _ = t.shallow_clone().copy_(&Tensor::randn(t.size(), o));
                }
            });
            let (k, v) = (Tensor::randn([3, 2, 1, 4], o), Tensor::randn([3, 2, 1, 4], o));
            let ws: Vec<Tensor> = m.initial_weights(3).iter().map(|w| w.copy().set_requires_grad(true)).collect();
            let (lw, lb) = m.ln_params();
            let mut z = k.matmul(&ws[0]) + &ws[1];
            if mlp {
                z = z.gelu("tanh").matmul(&ws[2]) + &ws[3];
            }
            let loss = (ln(&z, &lw, &lb) - (&v - &k)).square().sum(Kind::Float) * 0.5;
            let auto = Tensor::run_backward(&[loss], &ws.iter().collect::<Vec<_>>(), false, false);
            let wd: Vec<Tensor> = ws.iter().map(|w| w.detach()).collect();
            let (g, x2) = tch::no_grad(|| m.inner_grads(&wd, &k, &v));
            let mut ours = vec![k.transpose(-2, -1).matmul(&g[0]), g[0].shallow_clone()];
            if let Some(x2) = x2 {
                ours.extend([x2.transpose(-2, -1).matmul(&g[1]), g[1].shallow_clone()]);
            }
            for (j, (a, b)) in ours.iter().zip(&auto).enumerate() {
                let e = rel_err(a, b);
                assert!(e < 1e-4, "mlp {mlp}, weight {j}: rel err {e:.2e}");
            }
        }
    }

    #[test]
    fn state_sizes_and_bad_configs() {
        let _rng = seed_guard(0);
        for (mlp, zoo) in [(false, 2 * 32 * 33), (true, 2 * (8 * 32 * 32 + 5 * 32))] {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = Ttt::build_ttt(vs.root(), 64, &TttConfig::default(), &BuildCtx::new(0, 2, 16), mlp);
            assert_eq!(m.state_size_zoology(9), Some(zoo));
            assert_eq!(m.state_size(9), 2 * zoo + 1);
        }
        let e = validate_error(r#"{ name = "ttt_linear", num_heads = 3 }"#);
        assert!(e.contains("model.mixer.num_heads"), "{e}");
        let e = validate_error(r#"{ name = "ttt_mlp", num_heads = 16 }"#); // head width 1: odd
        assert!(e.contains("model.mixer.num_heads") && e.contains("even"), "{e}");
        let e = validate_error(r#"{ name = "ttt_linear", mini_batch_size = 0 }"#);
        assert!(e.contains("model.mixer.mini_batch_size"), "{e}");
        let e = validate_error(r#"{ name = "ttt_linear", ttt_base_lr = 0.0 }"#);
        assert!(e.contains("model.mixer.ttt_base_lr"), "{e}");
        let e = validate_error(r#"{ name = "ttt_linear", share_qk = true }"#);
        assert!(e.contains("share_qk"), "{e}");
    }
}
