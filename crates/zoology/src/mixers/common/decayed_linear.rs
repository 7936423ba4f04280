//! Decayed linear attention, shared by `linear_attention`, `based`, `retnet` and `gla`: the
//! chunked core, its one-token step, and the [`DecayedLinear`] trait through which those mixers
//! get every [`crate::mixers::Mixer`] form.

use super::chunking::{lower_mask, pair_decay, ChunkedQkv};
use tch::{Kind, Tensor};

/// Decayed linear attention, the recurrence shared by linear attention, Based, RetNet and GLA:
/// per head `S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ`, `o_t = S_tᵀ q_t`.
///
/// `q, k: [B, H, L, K]`, `v: [B, H, L, V]`, `g` (log decays ≤ 0): `None` (no decay),
/// `[B, H, L, 1]` (scalar per head) or `[B, H, L, K]` (per key channel). Chunked form: with
/// `b_t = Σ_{i≤t} g_i` inside a chunk of `chunk` positions (zero-padded at the end),
/// `o_t = Σ_{s≤t} (q_t ⊙ e^{b_t−b_s})·k_s v_s + (q_t ⊙ e^{b_t})ᵀ S₀` and
/// `S_C = diag(e^{b_C}) S₀ + Σ_s (k_s ⊙ e^{b_C−b_s}) v_sᵀ`: quadratic within chunks, recurrent
/// across them, O(L·C·(K+V)) and every exponent ≤ 0. Returns `(o, S_L)`, `S_L: [B, H, K, V]`.
pub fn chunked_linear_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: Option<&Tensor>,
    chunk: i64,
) -> (Tensor, Tensor) {
    let ChunkedQkv { b, h, dk, dv, lay, q: qc, k: kc, v: vc } = ChunkedQkv::new(q, k, v, chunk);
    let (n, c) = (lay.n, lay.c);
    let chunks = |x: &Tensor| lay.split(x, 2);
    let incl = lower_mask(c, false, q.device());
    // intra-chunk scores A[t, s] = Σ_k q_t k_s e^{b_t − b_s}, s ≤ t
    let (scores, bc) = match g {
        None => (qc.matmul(&kc.transpose(-2, -1)) * incl.to_kind(q.kind()), None),
        Some(g) => {
            let bc = chunks(g).cumsum(3, g.kind()); // [B,H,n,C,1|K]
            let s = if bc.size()[4] == 1 {
                qc.matmul(&kc.transpose(-2, -1)) * pair_decay(&bc.squeeze_dim(-1), &incl)
            } else {
                // [B,H,n,C(t),C(s),K], masked to s ≤ t before the exponential
                let diff = bc.unsqueeze(4) - bc.unsqueeze(3);
                let dec = diff.masked_fill(&incl.logical_not().unsqueeze(-1), f64::NEG_INFINITY).exp();
                (qc.unsqueeze(4) * kc.unsqueeze(3) * dec).sum_dim_intlist([-1i64].as_slice(), false, q.kind())
            };
            (s, Some(bc))
        }
    };
    let intra = scores.matmul(&vc); // [B,H,n,C,V]
    let mut state = Tensor::zeros([b, h, dk, dv], (q.kind(), q.device()));
    let mut outs = Vec::with_capacity(n as usize);
    // the chunks as views made once: `select(2, i)` in the loop would cost a full-size zero
    // gradient per chunk in the backward (O(L²/C) memory traffic); `unbind`'s backward is one stack
    let (qs, ks, vs, intras) = (qc.unbind(2), kc.unbind(2), vc.unbind(2), intra.unbind(2));
    let bcs = bc.as_ref().map(|bc| bc.unbind(2));
    for i in 0..n as usize {
        let (qi, ki, vi) = (&qs[i], &ks[i], &vs[i]);
        let oi = &intras[i];
        match &bcs {
            None => {
                outs.push(oi + qi.matmul(&state));
                state = state + ki.transpose(-2, -1).matmul(vi);
            }
            Some(bcs) => {
                let bi = &bcs[i]; // [B,H,C,1|K]
                let last = bi.narrow(2, c - 1, 1); // [B,H,1,1|K]
                outs.push(oi + (qi * bi.exp()).matmul(&state));
                let kd = ki * (&last - bi).exp();
                state = last.transpose(-2, -1).exp() * state + kd.transpose(-2, -1).matmul(vi);
            }
        }
    }
    let o = lay.merge(&Tensor::stack(&outs, 2), 2);
    (o, state)
}

/// Decayed linear attention with a log decay per key channel (`g: [B, H, L, K]`, the shape of
/// `q`): the fused CPU scan ([`super::fused::gla_fp32`]) where it applies, else
/// [`chunked_linear_attention`] with chunk `chunk`. Returns `o: [B, H, L, V]`.
pub fn channel_decayed_attention(q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, chunk: i64) -> Tensor {
    if g.size() == q.size() && super::fused::gla_applies(q) {
        super::fused::gla_fp32(q, k, v, g)
    } else {
        chunked_linear_attention(q, k, v, Some(g), chunk).0
    }
}

/// One step of [`chunked_linear_attention`]'s recurrence: `q_t, k_t: [B, H, K]`, `v_t: [B, H, V]`,
/// `g_t: [B, H, 1|K]`; updates `state: [B, H, K, V]` and returns `o_t: [B, H, V]`.
pub fn linear_attention_step(state: &mut Tensor, q: &Tensor, k: &Tensor, v: &Tensor, g: Option<&Tensor>) -> Tensor {
    let kv = k.unsqueeze(-1) * v.unsqueeze(-2);
    let decayed = match g {
        None => state.shallow_clone(),
        Some(g) => g.exp().unsqueeze(-1) * &*state,
    };
    *state = decayed + kv;
    (q.unsqueeze(-1) * &*state).sum_dim_intlist([-2i64].as_slice(), false, q.kind())
}

/// Reference for [`chunked_linear_attention`], sharing no helper with it or with
/// [`linear_attention_step`]: the dense double sum
/// `o_t = Σ_{s≤t} (Σ_k q_tk k_sk Π_{s<i≤t} α_ik) v_s`, each product of gates taken as `exp` of
/// the explicit sum of log gates over `(s, t]`. O(L²) small tensor operations.
pub fn linear_attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, g: Option<&Tensor>) -> Tensor {
    let l = q.size()[2];
    let kind = q.kind();
    let mut outs = Vec::with_capacity(l as usize);
    for t in 0..l {
        let mut acc = v.select(2, 0).zeros_like(); // [B, H, V]
        for s in 0..=t {
            let mut qk = q.select(2, t) * k.select(2, s); // [B, H, K]
            if let (Some(g), true) = (g, s < t) {
                qk = qk * g.narrow(2, s + 1, t - s).sum_dim_intlist([2i64].as_slice(), false, kind).exp();
                // [B, H, 1|K]
            }
            acc = acc + qk.sum_dim_intlist([-1i64].as_slice(), true, kind) * v.select(2, s);
        }
        outs.push(acc);
    }
    Tensor::stack(&outs, 2)
}

/// FLOPs of the decayed linear attention core ([`crate::flops`] convention), per position and
/// head, with chunk C, key width K, value width V: intra-chunk scores `2·C·K` (full `C×C`
/// blocks), their decay (`C` for a scalar per head, `C·K` per key channel), intra-chunk
/// `AV` `2·C·V`, inter-chunk readout `q·S` `2·K·V` and state update `kᵀv` `2·K·V`, over
/// `L_p = ⌈L/C⌉·C`. Decode per head: update and readout `4·K·V`, plus `K·V` for the decay; the
/// fused scan (GLA) costs the decode step at every position.
/// Each mixer adds its projections ([`DecayedLinear::token_flops`]).
///
/// A mixer built around [`chunked_linear_attention`]: it maps `x` to per-head `q, k, v` and
/// optional log decays `g`, and maps the recurrence output back. Implementing this gives the
/// [`crate::mixers::Mixer`] forms: chunked forward, dense reference, and a step carrying one
/// `[B, H, K, V]` state.
pub trait DecayedLinear: std::fmt::Debug + Send {
    /// `x: [B, L, D]` → q, k `[B, H, L, K]`, v `[B, H, L, V]`, g `[B, H, L, 1|K]` or None.
    fn qkvg(&self, x: &Tensor) -> (Tensor, Tensor, Tensor, Option<Tensor>);
    /// `o: [B, H, L, V]` (and the input `x`) → `[B, L, D]`.
    fn finish(&self, o: &Tensor, x: &Tensor) -> Tensor;
    fn chunk_size(&self) -> i64;
    /// `[H, K, V]` of the state.
    fn state_shape(&self) -> [i64; 3];
    /// Kind and device of the parameters.
    fn opts(&self) -> (Kind, tch::Device);
    /// FLOPs per token of everything around the recurrence (projections, gates, output).
    fn token_flops(&self) -> f64;
    /// Width of the log decay `g`: 0 (none), 1 (one per head) or the key width K.
    fn decay_width(&self) -> i64;
    /// Zoology's `state_size()` for this mixer ([`crate::mixers::Mixer::state_size_zoology`]); None
    /// where Zoology has no formula.
    fn zoology_state(&self) -> Option<i64> {
        None
    }
    /// Whether the training form runs the fused CPU scan ([`super::fused::gla`]) where it can: a
    /// gate per key channel, CPU tensors of f32 or f64. Default: never (the chunked form).
    fn fused_scan(&self) -> bool {
        false
    }
}

impl<T: DecayedLinear> crate::mixers::Mixer for T {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let (q, k, v, g) = self.qkvg(x);
        let o = match g.as_ref().filter(|_| self.fused_scan()) {
            // the fused gated scan where it applies (in fp32: under bf16 autocast q, k, v arrive in bf16)
            Some(g) => channel_decayed_attention(&q, &k, &v, g, self.chunk_size()),
            None => chunked_linear_attention(&q, &k, &v, g.as_ref(), self.chunk_size()).0,
        };
        self.finish(&o, x)
    }
    fn reference(&self, x: &Tensor) -> Tensor {
        let (q, k, v, g) = self.qkvg(x);
        self.finish(&linear_attention_reference(&q, &k, &v, g.as_ref()), x)
    }
    fn init_state(&self, batch: i64) -> crate::mixers::MixerState {
        let [h, k, v] = self.state_shape();
        crate::mixers::MixerState::new(vec![Tensor::zeros([batch, h, k, v], self.opts())])
    }
    fn step(&self, state: &mut crate::mixers::MixerState, x_t: &Tensor) -> Tensor {
        let x = x_t.unsqueeze(1);
        let (q, k, v, g) = self.qkvg(&x);
        let g = g.map(|g| g.select(2, 0));
        let o =
            linear_attention_step(&mut state.tensors[0], &q.select(2, 0), &k.select(2, 0), &v.select(2, 0), g.as_ref());
        self.finish(&o.unsqueeze(2), &x).squeeze_dim(1)
    }
    fn state_size(&self, _seq_len: i64) -> i64 {
        self.state_shape().iter().product()
    }
    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let ([h, k, v], c, tok) = (self.state_shape().map(|x| x as f64), self.chunk_size(), self.token_flops());
        let (cf, g) = (c as f64, self.decay_width());
        let decay_intra = match g {
            0 => 0.0,
            1 => cf,
            _ => cf * k,
        };
        let core = h * (2.0 * cf * k + decay_intra + 2.0 * cf * v + 4.0 * k * v);
        let step = h * (4.0 * k * v + if g > 0 { k * v } else { 0.0 });
        // the fused scan (a gate per key channel) runs the recurrent step at every position
        let fwd = if self.fused_scan() && g > 1 {
            seq_len as f64 * (tok + step)
        } else {
            seq_len as f64 * tok + crate::flops::padded(seq_len, c) as f64 * core
        };
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + step)
    }
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        self.zoology_state()
    }
}
