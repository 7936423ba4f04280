//! Hand-set gated-convolution solution of MQAR: a 2-layer `base_conv` LM with
//! `kernel_size = [3, -1]` (a short gated convolution, then a long one with an explicit
//! filter), Zoology's BaseConv `y = conv(u) ⊙ (W u + β) + u`. Its width has to grow with the
//! number of pairs it stores (so with L at kv = L/16).
//!
//! Channels `d = 2m` (m even): `P = [0, m)` the memory, `X = [m, 2m)` the token's own code.
//! Codes: `c(k) ∈ {±1}^m` for keys, `g(v) ∈ {±1}^m` for values, balanced and seeded; the
//! filler 0 is 0.
//!
//! ```text
//! embedding   E(k) = [c(k), c(k)]        E(v) = [0, g(v)]        E(0) = 0
//! layer 0     u = LN(E) with weight −1/s_k on P, 1 on X   (s_k = 1/√(1+ε), s_v = 1/√(1/2+ε))
//!               → u_P = −c(x_t) for a key, 0 otherwise;  u_X = s_k c(k) or s_v g(v)
//!             short conv on P: lag-1 tap −1 (→ c(x_{t−1})), gate W: X_i → P_i with 1/s_v;
//!             X: taps 0, gate 0 (y_X = u_X)
//!             r1 = E + y:  P: E_P + c(x_{t−1}) ⊙ gate + u_P = c(x_{t−1}) ⊙ g(x_t)   (the +u skip
//!                              and the embedding cancel; nonzero only at value positions)
//!                          X: (1+s)·code(x_t)
//! layer 1     u' = λ_t (r1_t − μ_t)   (LN1(r1 + LN2(r1)): a positive scale and a small mean)
//!             long conv on P: explicit filter h = [0, 1, 1, …] plus BaseConv's internal +u
//!               = the causal cumulative sum Σ_{j≤t} u'_P(j);  X: filter 0 (→ u'_X)
//!             gate W: X_i → P_i with 1  (→ λ_t (1+s_k) c(q) at a query q);  X: gate 0
//!             y_P(t) = λ_t(1+s_k) c(q) ⊙ Σ_{j≤t} λ_j c(k_j) ⊙ g(v_j)  (+ u'_P(t) = 0 at a query)
//! head        logit_v = g(v)·h_P for values v, 0 for keys and the filler
//! ```
//!
//! So the query's logit for value v is, up to a positive factor,
//! `Σ_p Σ_i c_i(q) c_i(k_p) g_i(v_p) g_i(v)`: the pair with `k_p = q` gives
//! `Σ_i g_i(v_p) g_i(v)` = m for `v = v_p`; every other pair is an elementwise product of
//! independent balanced codes, noise of sd √m, and another value v overlaps `g(v_p)` by
//! sd √m. The margin m against a noise of sd ≈ √(kv·m) plus the largest overlap among V/2
//! values (≈ √(2m ln(V/2))) is why the width must grow with kv: roughly
//! `m ≳ c·(√kv + √(2 ln(V/2)))²` for a fixed error rate. This is the linear-attention
//! (outer-product) memory of Zoology's gated-convolution construction restricted to its
//! diagonal, the form a depthwise convolution times a linear gate writes directly into m
//! channels (the full outer product `a ⊗ b` would need m_a·m_b channels for the same margin;
//! docs/DECISIONS.md).
//!
//! LayerNorm means: `c ⊙ g` has mean `c·g/m ≠ 0`, so the layer-1 norms subtract a small
//! constant at value positions; after the gate it becomes `c(q)·g(v)·Σμ`, of order √kv/2,
//! small against m. The final LN's mean never reaches a logit (balanced head rows). The
//! layer-0 cancellation uses a negative LayerNorm weight on P, an ordinary parameter value.

use super::{
    balanced_codes, build_lm, code_seed, evaluate, key_range, ln_scale, rows, search_seed, set, value_range, Built,
    Spec, BASE_CONV_WIDTHS, MAX_D, SEARCH_EXAMPLES,
};
use crate::error::{config_err, Result};
use tch::{Device, Kind, Tensor};

/// Accuracy a width must reach on the calibration examples to be chosen.
pub const TARGET: f64 = 0.99;

pub fn build(spec: &Spec, d: i64) -> Result<Built> {
    assert!(d % 8 == 0 && d >= 8, "base_conv construction: d must be a multiple of 8");
    let (l, v) = (spec.seq_len as i64, spec.vocab);
    let m = d / 2;
    let mixer = "{ name = \"base_conv\", kernel_size = [3, -1], long_filter = \"explicit\" }";
    let (mut built, vars) = build_lm(mixer, d, v as i64, l)?;
    let (k0, k1) = key_range(v);
    let (v0, v1) = value_range(v);
    let c = balanced_codes((k1 - k0) as usize, m as usize, code_seed(spec.seed, 3));
    let g = balanced_codes((v1 - v0) as usize, m as usize, code_seed(spec.seed, 4));
    let f = (Kind::Float, Device::Cpu);
    let eye = Tensor::eye(m, f);

    // embedding [V, d] = [P | X]
    let key_p = rows(v, k0, k1, &c);
    let emb = Tensor::cat(&[&key_p, &(key_p.shallow_clone() + rows(v, v0, v1, &g))], 1);
    set(&vars, "embedding.weight", &emb);

    // layer 0: LN1 cancels the key code on P (weight −1/s_k), the short conv shifts it, the
    // gate multiplies it by the value code
    let s_k = ln_scale((2 * m) as f64, d);
    let s_v = ln_scale(m as f64, d);
    let w = Tensor::ones([d], f);
    let _ = w.narrow(0, 0, m).fill_(-1.0 / s_k);
    set(&vars, "layers.0.norm1.weight", &w);
    let taps = Tensor::zeros([d, 3], f); // columns: lag 2, lag 1, lag 0
    let _ = taps.narrow(0, 0, m).narrow(1, 1, 1).fill_(-1.0);
    set(&vars, "layers.0.mixer.conv_weight", &taps);
    let proj0 = Tensor::zeros([d, d], f);
    let _ = proj0.narrow(0, 0, m).narrow(1, m, m).copy_(&(&eye / s_v));
    set(&vars, "layers.0.mixer.projection.weight", &proj0);

    // layer 1: the cumulative sum on P, gated by the query's key code from X
    let filter = Tensor::zeros([d, l], f);
    if l > 1 {
        let _ = filter.narrow(0, 0, m).narrow(1, 1, l - 1).fill_(1.0);
    }
    set(&vars, "layers.1.mixer.filter", &filter);
    let proj1 = Tensor::zeros([d, d], f);
    let _ = proj1.narrow(0, 0, m).narrow(1, m, m).copy_(&eye);
    set(&vars, "layers.1.mixer.projection.weight", &proj1);

    // head: value codes on P
    let head = Tensor::cat(&[rows(v, v0, v1, &g), Tensor::zeros([v as i64, m], f)], 1);
    set(&vars, "lm_head.weight", &head);

    // the FFT's [B, d, 2L] buffers dominate memory: about 2^25 elements per batch
    built.batch = ((1i64 << 25) / (d * l)).clamp(1, 64) as usize;
    built.fast = Some(Fast::new(vars, m, d));
    Ok(built)
}

/// The construction's forward pass written out with the model's own variables and
/// operations (LayerNorm, `short_conv`, `fft_causal_conv`), except that each BaseConv
/// projection `W u + β` is computed from its one nonzero block, the diagonal `X_i → P_i`
/// (checked when built): O(d) per position instead of O(d²). At d = 8192 the dense
/// projections were ≈ 270 GFLOP per L = 1024 sequence. A test checks it equals
/// `LanguageModel::hidden`.
#[derive(Debug)]
pub(crate) struct Fast {
    vars: std::collections::HashMap<String, Tensor>,
    m: i64,
    d: i64,
}

impl Fast {
    fn new(vars: std::collections::HashMap<String, Tensor>, m: i64, d: i64) -> Self {
        for layer in 0..2 {
            let w = &vars[&format!("layers.{layer}.mixer.projection.weight")];
            let diag = w.narrow(0, 0, m).narrow(1, m, m).diagonal(0, 0, 1);
            let off = w.abs().sum(Kind::Double).double_value(&[]) - diag.abs().sum(Kind::Double).double_value(&[]);
            assert!(off == 0.0, "base_conv construction: projection {layer} has entries outside its X→P diagonal");
        }
        let head = &vars["lm_head.weight"];
        let v = head.size()[0];
        let block = head.narrow(0, v / 2, v - v / 2).narrow(1, 0, m);
        let off = head.abs().sum(Kind::Double).double_value(&[]) - block.abs().sum(Kind::Double).double_value(&[]);
        assert!(off == 0.0, "base_conv construction: the head has entries outside value rows × P");
        Fast { vars, m, d }
    }
    /// The head's logits `[M, V]` from its value-rows × P block.
    pub(crate) fn head(&self, hidden: &Tensor) -> Tensor {
        let head = self.var("lm_head.weight");
        let v = head.size()[0];
        let logits = Tensor::zeros([hidden.size()[0], v], (hidden.kind(), hidden.device()));
        let block = head.narrow(0, v / 2, v - v / 2).narrow(1, 0, self.m);
        let _ = logits.narrow(1, v / 2, v - v / 2).copy_(&hidden.narrow(1, 0, self.m).matmul(&block.transpose(0, 1)));
        logits
    }
    fn var(&self, name: &str) -> &Tensor {
        &self.vars[name]
    }
    fn ln(&self, x: &Tensor, name: &str) -> Tensor {
        x.layer_norm(
            [self.d],
            Some(self.var(&format!("{name}.weight"))),
            Some(self.var(&format!("{name}.bias"))),
            super::LN_EPS,
            false,
        )
    }
    /// `W u + β` of layer `layer`'s BaseConv, from W's diagonal X→P block.
    fn gate(&self, u: &Tensor, layer: usize) -> Tensor {
        let m = self.m;
        let w = self.var(&format!("layers.{layer}.mixer.projection.weight"));
        let diag = w.narrow(0, 0, m).narrow(1, m, m).diagonal(0, 0, 1);
        let gp = u.narrow(2, m, m) * diag;
        Tensor::cat(&[gp, u.narrow(2, m, m).zeros_like()], 2)
            + self.var(&format!("layers.{layer}.mixer.projection.bias"))
    }
    /// Final hidden states, as `LanguageModel::hidden` in evaluation mode.
    pub(crate) fn hidden(&self, tokens: &Tensor) -> Tensor {
        use crate::mixers::common::conv::{fft_causal_conv, short_conv};
        let mut r = Tensor::embedding(self.var("embedding.weight"), tokens, -1, false, false);
        // block 0: BaseConv short
        let u = self.ln(&r, "layers.0.norm1");
        let c = short_conv(&u, self.var("layers.0.mixer.conv_weight"), Some(self.var("layers.0.mixer.conv_bias")));
        r = r + c * self.gate(&u, 0) + &u;
        let h = self.ln(&r, "layers.0.norm2");
        // block 1: BaseConv long (explicit filter, internal skip)
        r = r + h;
        let u = self.ln(&r, "layers.1.norm1");
        let c = fft_causal_conv(&u, self.var("layers.1.mixer.filter")) + &u;
        r = r + c * self.gate(&u, 1) + &u;
        let h = self.ln(&r, "layers.1.norm2");
        self.ln(&(r + h), "ln_f")
    }
}

/// The smallest width of [`BASE_CONV_WIDTHS`] whose construction reaches [`TARGET`] on
/// [`SEARCH_EXAMPLES`] calibration examples (a seed other than the evaluation's), with every
/// width tried and its calibration accuracy. The largest width is returned if none reaches it.
pub fn smallest_width(spec: &Spec) -> Result<(Built, Vec<(i64, f64)>)> {
    let mut tried = vec![];
    let widths: Vec<i64> = BASE_CONV_WIDTHS.iter().copied().filter(|&d| d <= MAX_D).collect();
    for (i, &d) in widths.iter().enumerate() {
        let b = build(spec, d)?;
        let a = evaluate(&b, spec, SEARCH_EXAMPLES, search_seed(spec.seed))?;
        tried.push((d, a));
        if a >= TARGET || i + 1 == widths.len() {
            return Ok((b, tried));
        }
    }
    Err(config_err("--d", "no width to try"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(spec: &Spec, d: i64) -> f64 {
        let b = build(spec, d).unwrap();
        evaluate(&b, spec, spec.examples, spec.seed).unwrap()
    }

    /// The block-structured forward used for evaluation is the LM's own forward.
    #[test]
    fn base_conv_fast_forward_is_the_models_forward() {
        let mut spec = Spec::new(64, Some(4));
        spec.vocab = 256;
        let b = build(&spec, 64).unwrap();
        let seg = spec.mqar(4).unwrap().generate(spec.vocab, 5);
        let (x, _) = seg.to_tensors(Device::Cpu);
        let (fast, full) = tch::no_grad(|| (b.hidden(&x), b.model.hidden(&x, false)));
        let err = crate::mixers::testing::rel_err(&fast, &full);
        assert!(err < 1e-5, "fast forward differs from LanguageModel::hidden: {err:.2e}");
        let h = full.reshape([-1, 64]);
        let (fast, full) = tch::no_grad(|| (b.head(&h), b.model.head(&h)));
        let err = crate::mixers::testing::rel_err(&fast, &full);
        assert!(err < 1e-5, "fast head differs from LanguageModel::head: {err:.2e}");
    }

    /// At L = 64 (kv 4) and L = 256 (kv 16) a wide enough construction solves MQAR; a quarter
    /// of the width does clearly worse, and L = 256 needs more width than L = 64.
    #[test]
    fn base_conv_construction_solves_mqar_and_needs_width() {
        let mut s64 = Spec::new(64, None);
        s64.vocab = 2048;
        s64.examples = 64;
        let mut s256 = Spec::new(256, None);
        s256.vocab = 2048;
        s256.examples = 64;
        let (wide64, wide256) = (acc(&s64, 512), acc(&s256, 2048));
        assert!(wide64 >= 0.99 && wide256 >= 0.99, "L=64 d=512: {wide64}; L=256 d=2048: {wide256}");
        let narrow = acc(&s64, 32);
        assert!(narrow < 0.8, "L=64 at d=32 should not solve MQAR, got {narrow}");
        let (_, t64) = smallest_width(&s64).unwrap();
        let (_, t256) = smallest_width(&s256).unwrap();
        assert!(t256.last().unwrap().0 > t64.last().unwrap().0, "width needed did not grow: {t64:?} vs {t256:?}");
    }
}
