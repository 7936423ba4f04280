//! Hand-set attention solution of MQAR: a 2-layer `hybrid [base_conv k=3, attention]` LM
//! (the Based recipe's layer 0 as the shift, Zoology's paper construction) whose width does not
//! depend on L.
//!
//! Channels of the residual stream, `d = 4m` (m even): `K = [0, m)` holds "which key is this
//! token", `S = [m, 2m)` the previous token's key code (after layer 0), `W = [2m, 4m)` value
//! codes. Codes: `a(k) ∈ {±1}^m` for keys `k ∈ [1, V/2)`, `b(v) ∈ {±1}^{2m}` for values
//! `v ∈ [V/2, V)`, balanced and seeded; token 0 (filler) is 0.
//!
//! ```text
//! embedding   E(k) = [a(k), a(k), 0]     E(v) = [0, 0, b(v)]     E(0) = 0      (‖E‖² = 2m)
//! layer 0     u = LN(E) = s·E,  s = 1/√(2m/d + ε)
//!             base_conv y = conv(u) ⊙ (W u + β) + u with W = 0, gate β = 1 on S and W, 0 on K;
//!             taps (lag 1, lag 0): S: (1/s, −(1+s)/s);  W: (0, (δ−1)/s − 1);  K: 0
//!             r1 = E + y = [(1+s)·a(x_t), a(x_{t−1}), δ·b(x_t)]        (a, b read as 0 for other tokens)
//! layer 1     u' = λ_t·r1_t  (LN1(r1 + LN2(r1)); r1 has zero mean, so this is a positive scale)
//!             q = α·u'_K,  k = u'_S,  v = u'_W;  one head, scores q·k/√d, causal (j ≤ t)
//!             out_proj = identity on W
//! head        logit_v = b(v)·h_W for values v, 0 for keys and the filler
//! ```
//!
//! At a query position t (token q, preceded by filler) the score of position j is
//! `α λ_t λ_j (1+s) a(q)·a(x_{j−1}) / √d`: it is nonzero only where `x_{j−1}` is a key. At the
//! value position of q's pair this is `a(q)·a(q) = m`, and α is set so that this score is
//! `β = 30` exactly (λ from [`super::layer1_scale`] for the query's and the value position's
//! norms). Elsewhere: at the other value positions and right after earlier queries, `a(q)·a(k')`
//! is a balanced-code overlap (mean 0, sd √m, scores sd β/√m ≈ 5.3 at m = 32); key positions
//! (previous token a value), query positions (previous token filler, the query's own position
//! t included) and filler positions have key 0, score 0, value 0. So the attention returns
//! ≈ δλ·b(v*) and the head's argmax is v*. δ = 1/4 keeps the value code small in the residual,
//! so that a value position's norm (m + δ²·2m) is close to that of a position holding only a
//! shifted key (m), and their λ differ by 6%: the score noise is not amplified where the value
//! is absent.
//!
//! Nothing here grows with L: one head and d = 4m channels (default d = 128, m = 32) at every
//! L; the failure mode is a key-code collision `a(q)·a(k') ≈ m`, whose chance falls with m.
//! Without the shift (S's lag-1 tap 0) every key is 0, attention is uniform and returns the
//! mean of the context's values: accuracy falls to ≈ 1/kv.

use super::{
    balanced_codes, build_lm, code_seed, key_range, layer1_scale, ln_scale, rows, set, value_range, Built, Spec,
};
use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// Default width: m = 32 key dims, 64 value dims.
pub const DEFAULT_D: i64 = 128;
/// Score of the matching position.
pub const BETA: f64 = 30.0;
/// Weight of the value code in the residual stream after layer 0.
pub const DELTA: f64 = 0.25;

/// Options that can be switched off to show that an ingredient matters (tests).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The short convolution shifts the key code (without it the keys are empty).
    pub shift: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { shift: true }
    }
}

pub fn build(spec: &Spec, d: i64) -> Result<Built> {
    build_with(spec, d, Options::default())
}

pub fn build_with(spec: &Spec, d: i64, opt: Options) -> Result<Built> {
    assert!(d % 8 == 0 && d >= 8, "attention construction: d must be a multiple of 8");
    let (l, v) = (spec.seq_len as i64, spec.vocab);
    let m = d / 4;
    let mixer = "{ name = \"hybrid\", layers = [{ name = \"base_conv\", kernel_size = 3 }, { name = \"attention\", num_heads = 1 }] }";
    let (mut built, vars) = build_lm(mixer, d, v as i64, l)?;
    let (k0, k1) = key_range(v);
    let (v0, v1) = value_range(v);
    let a = balanced_codes((k1 - k0) as usize, m as usize, code_seed(spec.seed, 1)); // [V/2−1, m]
    let b = balanced_codes((v1 - v0) as usize, 2 * m as usize, code_seed(spec.seed, 2)); // [V/2, 2m]
    let f = (Kind::Float, Device::Cpu);

    // embedding [V, d] = [K | S | W]
    let emb = Tensor::cat(&[rows(v, k0, k1, &a), rows(v, k0, k1, &a), rows(v, v0, v1, &b)], 1);
    set(&vars, "embedding.weight", &emb);

    // layer 0: the shift on S, δ on W, the identity on K
    let s = ln_scale((2 * m) as f64, d);
    let taps = Tensor::zeros([d, 3], f); // columns: lag 2, lag 1, lag 0
    if opt.shift {
        let _ = taps.narrow(0, m, m).narrow(1, 1, 1).fill_(1.0 / s);
    }
    let _ = taps.narrow(0, m, m).narrow(1, 2, 1).fill_(-(1.0 + s) / s);
    let _ = taps.narrow(0, 2 * m, 2 * m).narrow(1, 2, 1).fill_((DELTA - 1.0) / s - 1.0);
    set(&vars, "layers.0.mixer.conv_weight", &taps);
    let gate = Tensor::zeros([d], f);
    let _ = gate.narrow(0, m, 3 * m).fill_(1.0);
    set(&vars, "layers.0.mixer.projection.bias", &gate);

    // layer 1: q from K (scaled so that the match scores β), k from S, v from W
    let lam_q = layer1_scale((1.0 + s).powi(2) * m as f64, d);
    let lam_v = layer1_scale(m as f64 + DELTA * DELTA * (2 * m) as f64, d);
    let alpha = BETA * (d as f64).sqrt() / (lam_q * lam_v * (1.0 + s) * m as f64);
    let wqkv = Tensor::zeros([3 * d, d], f);
    let eye = |n: i64| Tensor::eye(n, f);
    let _ = wqkv.narrow(0, 0, m).narrow(1, 0, m).copy_(&(eye(m) * alpha));
    let _ = wqkv.narrow(0, d, m).narrow(1, m, m).copy_(&eye(m));
    let _ = wqkv.narrow(0, 2 * d + 2 * m, 2 * m).narrow(1, 2 * m, 2 * m).copy_(&eye(2 * m));
    set(&vars, "layers.1.mixer.wqkv.weight", &wqkv);
    let out = Tensor::zeros([d, d], f);
    let _ = out.narrow(0, 2 * m, 2 * m).narrow(1, 2 * m, 2 * m).copy_(&eye(2 * m));
    set(&vars, "layers.1.mixer.out_proj.weight", &out);

    // head: value codes on W
    let head = Tensor::cat(&[Tensor::zeros([v as i64, 2 * m], f), rows(v, v0, v1, &b)], 1);
    set(&vars, "lm_head.weight", &head);

    // scores [B, 1, L, L] dominate memory: about 2^26 floats per batch
    built.batch = ((1i64 << 26) / (l * l)).clamp(1, 64) as usize;
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::evaluate_stats;
    use crate::tasks::metric::Metric;

    fn acc(spec: &Spec, d: i64, opt: Options) -> f64 {
        acc_loss(spec, d, opt).0
    }

    fn acc_loss(spec: &Spec, d: i64, opt: Options) -> (f64, f64) {
        let b = build_with(spec, d, opt).unwrap();
        let s = evaluate_stats(&b, spec, spec.examples, spec.seed).unwrap();
        (s.accuracy(Metric::PerExample), s.ce.value())
    }

    /// The same width solves MQAR at two lengths (kv = L/16), confidently (the attention
    /// mass sits on the pair's value position, not only the argmax), and needs the shift.
    #[test]
    fn attention_construction_solves_mqar_at_a_width_independent_of_l() {
        for l in [64, 512] {
            let mut spec = Spec::new(l, None);
            spec.vocab = 2048;
            spec.examples = 32;
            let (a, loss) = acc_loss(&spec, DEFAULT_D, Options::default());
            assert!(a >= 0.99, "L={l}: accuracy {a} at d={DEFAULT_D}");
            assert!(loss < 0.5, "L={l}: mean cross-entropy {loss} at the queries: the retrieved value is weak");
        }
        let mut spec = Spec::new(64, None);
        spec.vocab = 2048;
        spec.examples = 32;
        // without the shift every key is 0: attention is uniform, returns the mean of the
        // context's kv values, and the head picks one of them (≈ 1/kv = 0.25)
        let a = acc(&spec, DEFAULT_D, Options { shift: false });
        assert!(a < 0.5, "without the shift the keys are empty, yet accuracy is {a}");
    }

    /// What is built is the registered hybrid: its parameter count is the LM's.
    #[test]
    fn attention_construction_is_the_project_lm() {
        let mut spec = Spec::new(64, Some(4));
        spec.vocab = 256;
        let b = build(&spec, 32).unwrap();
        let d = 32;
        let v = 256;
        // embedding + head, 5 LayerNorms (norm1, norm2 per layer, ln_f), base_conv (taps, bias, projection), attention
        let want = 2 * v * d + 5 * 2 * d + (3 * d + d + d * d + d) + (3 * d * d + 3 * d + d * d + d);
        assert_eq!(b.num_parameters(), want);
        assert_eq!(b.state_size(64), d * 2 + 2 * d * 64);
    }
}
