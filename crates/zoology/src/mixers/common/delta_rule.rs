//! The (gated) delta rule shared by `delta_net` and `gated_delta_net`: a chunked WY/UT form,
//! the one-token step, and a reference written with the dense transition matrix.

use super::chunking::{lower_mask, pair_decay, ChunkedQkv};
use tch::Tensor;

/// Chunked (gated) delta rule, shared by DeltaNet and Gated DeltaNet: per head
/// `S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ`, `o_t = S_tᵀ q_t`, with `α_t = e^{g_t}`.
///
/// `q, k: [B, H, L, K]`, `v: [B, H, L, V]`, `beta: [B, H, L]`, `g: [B, H, L]` (log α ≤ 0) or
/// `None` (α = 1). WY/UT form: writing `S_t = α_t S_{t−1} + k_t u_tᵀ` with
/// `u_t = β_t (v_t − α_t S_{t−1}ᵀ k_t)`, inside a chunk (`γ_t = e^{b_t}`, `b` the cumulative
/// log decay) `(I + A) U = diag(β) V − diag(βγ) K S₀` with the strictly lower
/// `A[t, i] = β_t (γ_t/γ_i) k_tᵀ k_i`; so `U = Ũ − W S₀` with `Ũ = T diag(β) V`,
/// `W = T diag(βγ) K`, `T = (I + A)⁻¹` (one triangular solve per chunk, all chunks at once).
/// Then `O = diag(γ) Q S₀ + (Q Kᵀ ⊙ Γ ⊙ M) U` and `S_C = γ_C S₀ + (K ⊙ γ_C/γ)ᵀ U`.
pub fn chunked_delta_rule(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    beta: &Tensor,
    g: Option<&Tensor>,
    chunk: i64,
) -> (Tensor, Tensor) {
    // The WY/UT form inverts a triangular matrix per chunk: fp32 under bf16 autocast (the
    // triangular solve has no bf16 kernel, and its error would compound).
    use crate::device::{full_precision as f32_, Precision};
    let (q, k, v, beta) = (&f32_(q), &f32_(k), &f32_(v), &f32_(beta));
    let g = g.map(f32_);
    let g = g.as_ref();
    Precision::fp32_region(q.device(), || chunked_delta_rule_fp32(q, k, v, beta, g, chunk))
}

fn chunked_delta_rule_fp32(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    beta: &Tensor,
    g: Option<&Tensor>,
    chunk: i64,
) -> (Tensor, Tensor) {
    let ChunkedQkv { b, h, dk, dv, lay, q: qc, k: kc, v: vc } = ChunkedQkv::new(q, k, v, chunk);
    let (n, c) = (lay.n, lay.c);
    let chunks = |x: &Tensor| lay.split(x, 2);
    let betac = chunks(&beta.unsqueeze(-1)); // [B,H,n,C,1]
    let bc = match g {
        Some(g) => chunks(&g.unsqueeze(-1)).squeeze_dim(-1).cumsum(3, g.kind()), // [B,H,n,C]
        None => Tensor::zeros([b, h, n, c], (q.kind(), q.device())),
    };
    let gamma = bc.exp().unsqueeze(-1); // [B,H,n,C,1]
    let dev = q.device();
    let strict = pair_decay(&bc, &lower_mask(c, true, dev)); // γ_t/γ_i, i < t
    let incl = pair_decay(&bc, &lower_mask(c, false, dev)); // γ_t/γ_i, i ≤ t
    let a = kc.matmul(&kc.transpose(-2, -1)) * strict * &betac;
    let eye = Tensor::eye(c, (q.kind(), dev));
    let ia = a + eye;
    let w = ia.linalg_solve_triangular(&(&kc * (&betac * &gamma)), false, true, true);
    let u_tilde = ia.linalg_solve_triangular(&(&vc * &betac), false, true, true);
    let p = qc.matmul(&kc.transpose(-2, -1)) * incl;
    let mut state = Tensor::zeros([b, h, dk, dv], (q.kind(), dev));
    let mut outs = Vec::with_capacity(n as usize);
    // per-chunk views made once (`unbind`): a `select` per chunk would cost a full-size zero
    // gradient per chunk in the backward
    let (us, ws, gs, qs, ps, bs, ks) =
        (u_tilde.unbind(2), w.unbind(2), gamma.unbind(2), qc.unbind(2), p.unbind(2), bc.unbind(2), kc.unbind(2));
    for i in 0..n as usize {
        let u = &us[i] - ws[i].matmul(&state);
        let gi = &gs[i]; // [B,H,C,1]
        let last = gi.narrow(2, c - 1, 1); // [B,H,1,1]
        outs.push((&qs[i] * gi).matmul(&state) + ps[i].matmul(&u));
        let bi = &bs[i]; // [B,H,C]
        let kd = &ks[i] * (bi.narrow(2, c - 1, 1) - bi).exp().unsqueeze(-1);
        state = &last * state + kd.transpose(-2, -1).matmul(&u);
    }
    let o = lay.merge(&Tensor::stack(&outs, 2), 2);
    (o, state)
}

/// One step of the (gated) delta rule: `S ← α S; S ← S + β k (v − Sᵀk)ᵀ; o = Sᵀ q`.
/// `q, k: [B, H, K]`, `v: [B, H, V]`, `beta, g: [B, H]`.
pub fn delta_rule_step(
    state: &mut Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    beta: &Tensor,
    g: Option<&Tensor>,
) -> Tensor {
    let s = match g {
        Some(g) => g.exp().unsqueeze(-1).unsqueeze(-1) * &*state,
        None => state.shallow_clone(),
    };
    let pred = (k.unsqueeze(-1) * &s).sum_dim_intlist([-2i64].as_slice(), false, k.kind()); // Sᵀk
    let delta = (v - pred) * beta.unsqueeze(-1);
    *state = s + k.unsqueeze(-1) * delta.unsqueeze(-2);
    (q.unsqueeze(-1) * &*state).sum_dim_intlist([-2i64].as_slice(), false, q.kind())
}

/// Reference for [`chunked_delta_rule`]: the recurrence written as in the papers,
/// `S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ`, with the dense `K×K` transition.
pub fn delta_rule_reference(q: &Tensor, k: &Tensor, v: &Tensor, beta: &Tensor, g: Option<&Tensor>) -> Tensor {
    let (b, h, l, dk) = q.size4().unwrap();
    let dv = v.size()[3];
    let mut s = Tensor::zeros([b, h, dk, dv], (q.kind(), q.device()));
    let eye = Tensor::eye(dk, (q.kind(), q.device()));
    let mut outs = Vec::with_capacity(l as usize);
    for t in 0..l {
        let (kt, vt) = (k.select(2, t), v.select(2, t));
        let bt = beta.select(2, t).unsqueeze(-1).unsqueeze(-1);
        let alpha = match g {
            Some(g) => g.select(2, t).exp().unsqueeze(-1).unsqueeze(-1),
            None => Tensor::ones([1], (q.kind(), q.device())),
        };
        let kkt = kt.unsqueeze(-1) * kt.unsqueeze(-2); // [B,H,K,K]
        let transition = alpha * (&eye - &bt * kkt);
        s = transition.matmul(&s) + &bt * kt.unsqueeze(-1) * vt.unsqueeze(-2);
        outs.push(s.transpose(-2, -1).matmul(&q.select(2, t).unsqueeze(-1)).squeeze_dim(-1));
    }
    Tensor::stack(&outs, 2)
}
