//! Building blocks shared by mixers: initialised linear layers, causal convolutions (direct,
//! FFT and dense-Toeplitz reference), and small tensor utilities. Put a helper here the second
//! time it is needed, not in a mixer file.

use tch::{nn, Kind, Tensor};

/// Linear layer `y = x Wᵀ + b` with weights N(0, std) and zero bias (Zoology's init).
#[derive(Debug)]
pub struct Linear {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
}

impl Linear {
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, bias: bool, std: f64) -> Self {
        let ws = p.var("weight", &[d_out, d_in], nn::Init::Randn { mean: 0.0, stdev: std });
        let bs = bias.then(|| p.var("bias", &[d_out], nn::Init::Const(0.0)));
        Linear { ws, bs }
    }
    /// Works on any leading shape `[..., d_in]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.ws, self.bs.as_ref())
    }
}

/// Depthwise causal convolution with a short kernel `w: [D, K]` (tap `K−1` multiplies the
/// current input, tap `K−1−j` the input `j` steps back) and optional bias `[D]`.
/// `x: [B, L, D] → [B, L, D]`.
pub fn short_conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (_, l, d) = x.size3().unwrap();
    let k = w.size()[1];
    let xt = x.transpose(1, 2); // [B, D, L]
    let y = xt.conv1d(&w.view([d, 1, k]), bias, [1], [k - 1], [1], d);
    y.narrow(2, 0, l).transpose(1, 2)
}

/// Reference for [`short_conv`]: explicit sum over taps.
pub fn short_conv_reference(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (b, l, d) = x.size3().unwrap();
    let k = w.size()[1];
    let mut outs = Vec::with_capacity(l as usize);
    for t in 0..l {
        let mut acc = Tensor::zeros([b, d], (x.kind(), x.device()));
        for j in 0..k {
            // tap k-1-j sees x[t-j]
            if t - j >= 0 {
                acc = acc + x.select(1, t - j) * w.select(1, k - 1 - j);
            }
        }
        if let Some(bb) = bias {
            acc = acc + bb;
        }
        outs.push(acc);
    }
    Tensor::stack(&outs, 1)
}

/// Step form of [`short_conv`]: `window: [B, K, D]` holds the last K inputs (oldest first);
/// it is shifted and `x_t` appended, then the taps are applied.
pub fn short_conv_step(window: &mut Tensor, x_t: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let k = w.size()[1];
    let shifted = Tensor::cat(&[window.narrow(1, 1, k - 1), x_t.unsqueeze(1)], 1);
    *window = shifted;
    // y = Σ_j window[:, j] * w[:, j]
    let y = (&*window * w.transpose(0, 1).unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, window.kind());
    match bias {
        Some(bb) => y + bb,
        None => y,
    }
}

/// Causal long convolution by FFT, zero-padded to 2L so that nothing wraps around:
/// `y[t] = Σ_{s≤t} h[t−s] · u[s]`, per channel. `u: [B, L, D]`, `h: [D, L']` with L' ≥ L
/// (only the first L taps are used). O(L log L).
pub fn fft_causal_conv(u: &Tensor, h: &Tensor) -> Tensor {
    let (_, l, _) = u.size3().unwrap();
    let n = 2 * l;
    let h = h.narrow(1, 0, l);
    let uf = u.transpose(1, 2).fft_rfft(Some(n), -1, "backward"); // [B, D, n/2+1]
    let hf = h.fft_rfft(Some(n), -1, "backward"); // [D, n/2+1]
    let y = (uf * hf).fft_irfft(Some(n), -1, "backward"); // [B, D, n]
    y.narrow(2, 0, l).transpose(1, 2)
}

/// Reference for [`fft_causal_conv`]: the dense lower-triangular Toeplitz matrix
/// `T[t, s] = h[t−s]` applied per channel.
pub fn toeplitz_causal_conv(u: &Tensor, h: &Tensor) -> Tensor {
    let (_, l, d) = u.size3().unwrap();
    let h = h.narrow(1, 0, l); // [D, L]
    let mut rows = Vec::with_capacity(l as usize);
    for t in 0..l {
        // row t: [D, L] with entries h[:, t-s] for s ≤ t, else 0
        let row = Tensor::zeros([d, l], (u.kind(), u.device()));
        for s in 0..=t {
            let _ = row.narrow(1, s, 1).copy_(&h.narrow(1, t - s, 1));
        }
        rows.push(row);
    }
    let toeplitz = Tensor::stack(&rows, 1); // [D, L(t), L(s)]
    // y[b, t, d] = Σ_s T[d, t, s] u[b, s, d]
    Tensor::einsum("dts,bsd->btd", &[toeplitz, u.shallow_clone()], None::<&[i64]>)
}

/// Step form of a causal long convolution with a cached input window: `cache: [B, t, D]`
/// holds all inputs so far (state grows as D·L). Returns `y_t = Σ_s h[t−s] u[s]`.
pub fn long_conv_step(cache: &mut Tensor, x_t: &Tensor, h: &Tensor) -> Tensor {
    let new = if cache.size()[1] == 0 { x_t.unsqueeze(1) } else { Tensor::cat(&[&*cache, &x_t.unsqueeze(1)], 1) };
    *cache = new;
    let t = cache.size()[1];
    // taps h[t-1-s] for s = 0..t  → reversed first t taps
    let taps = h.narrow(1, 0, t).flip([1]); // [D, t]: taps[:, s] = h[t-1-s]
    (&*cache * taps.transpose(0, 1).unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, cache.kind())
}

/// Relative error ‖a − b‖ / max(‖b‖, 1e-12), as f64.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).to_kind(Kind::Double).norm().double_value(&[]);
    let base = b.to_kind(Kind::Double).norm().double_value(&[]);
    diff / base.max(1e-12)
}

/// Causal mask `[L, L]` of booleans, true where attention is *not* allowed (s > t).
pub fn future_mask(l: i64, device: tch::Device) -> Tensor {
    Tensor::ones([l, l], (Kind::Bool, device)).triu(1)
}

/// Rotary position embedding (GPT-NeoX "rotate half") on `x: [B, H, L, h]` (h even) for the
/// absolute positions `offset .. offset + L`: with `θ_i = base^(−2i/h)`, `i < h/2`,
/// `[x₁, x₂] ↦ [x₁ cos(pθ) − x₂ sin(pθ), x₂ cos(pθ) + x₁ sin(pθ)]`.
pub fn rope(x: &Tensor, offset: i64, base: f64) -> Tensor {
    let (_, _, l, h) = x.size4().unwrap();
    let half = h / 2;
    let opts = (Kind::Float, x.device());
    let inv = (Tensor::arange(half, opts) * (-2.0 * base.ln() / h as f64)).exp();
    let pos = Tensor::arange_start(offset, offset + l, opts);
    let ang = pos.unsqueeze(1) * inv.unsqueeze(0); // [L, h/2]
    let (c, s) = (ang.cos().to_kind(x.kind()), ang.sin().to_kind(x.kind()));
    let (x1, x2) = (x.narrow(-1, 0, half), x.narrow(-1, half, half));
    Tensor::cat(&[&x1 * &c - &x2 * &s, &x2 * &c + &x1 * &s], -1)
}

/// Reference for [`rope`]: each position's rotation angles computed in f64 on the host and
/// applied pair by pair (`x[i]`, `x[i + h/2]`) with an explicit 2×2 rotation.
pub fn rope_reference(x: &Tensor, offset: i64, base: f64) -> Tensor {
    let (_, _, l, h) = x.size4().unwrap();
    let half = h / 2;
    let mut rows = Vec::with_capacity(l as usize);
    for t in 0..l {
        let p = (offset + t) as f64;
        let angles: Vec<f64> = (0..half).map(|i| p * base.powf(-2.0 * i as f64 / h as f64)).collect();
        let c: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
        let s: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
        let c = Tensor::from_slice(&c).to_device(x.device()).to_kind(x.kind());
        let s = Tensor::from_slice(&s).to_device(x.device()).to_kind(x.kind());
        let xt = x.select(2, t);
        let (a, b) = (xt.narrow(-1, 0, half), xt.narrow(-1, half, half));
        rows.push(Tensor::cat(&[&a * &c - &b * &s, &a * &s + &b * &c], -1));
    }
    Tensor::stack(&rows, 2)
}

/// RMS normalisation over the last dimension with a weight: `x / √(mean(x²) + eps) · w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let ms = x.square().mean_dim([-1i64].as_slice(), true, x.kind());
    x * (ms + eps).rsqrt() * w
}

/// L2 normalisation over the last dimension: `x / √(Σx² + eps)`.
pub fn l2_norm(x: &Tensor, eps: f64) -> Tensor {
    let ss = x.square().sum_dim_intlist([-1i64].as_slice(), true, x.kind());
    x * (ss + eps).rsqrt()
}

/// `[B, L, H·h] → [B, H, L, h]`.
pub fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let (b, l, d) = x.size3().unwrap();
    x.view([b, l, heads, d / heads]).transpose(1, 2)
}

/// `[B, H, L, h] → [B, L, H·h]`.
pub fn merge_heads(y: &Tensor) -> Tensor {
    let (b, h, l, e) = y.size4().unwrap();
    y.transpose(1, 2).contiguous().view([b, l, h * e])
}

/// Pads dimension 2 of a `[B, H, L, ...]` tensor with zeros up to `len`.
fn pad_time(x: &Tensor, len: i64) -> Tensor {
    let l = x.size()[2];
    if l == len {
        return x.shallow_clone();
    }
    let mut spec = vec![0i64; 2 * (x.dim() - 3)];
    spec.extend([0, len - l]);
    x.constant_pad_nd(spec)
}

/// `(number of chunks, chunk length)` for a sequence of `l` positions and a nominal `chunk`.
fn chunk_layout(l: i64, chunk: i64) -> (i64, i64) {
    let c = chunk.min(l).max(1);
    ((l + c - 1) / c, c)
}

/// `[B, H, L, E] → [B, H, n, C, E]`, zero-padded at the end to `n·C` positions.
fn to_chunks(x: &Tensor, n: i64, c: i64) -> Tensor {
    let s = x.size();
    pad_time(x, n * c).view([s[0], s[1], n, c, s[3]])
}

/// Mask `[C, C]` for `s ≤ t` (`strict = false`) or `s < t` (`strict = true`), true where allowed.
fn lower_mask(c: i64, strict: bool, device: tch::Device) -> Tensor {
    Tensor::ones([c, c], (Kind::Bool, device)).tril(if strict { -1 } else { 0 })
}

/// `exp(b_t − b_s)` for allowed pairs (`mask[t, s]`) and 0 elsewhere, from cumulative log decays
/// `b: [..., C]`; the exponent is ≤ 0 wherever it is used, so nothing overflows.
fn pair_decay(b: &Tensor, mask: &Tensor) -> Tensor {
    let diff = b.unsqueeze(-1) - b.unsqueeze(-2); // [..., t, s]
    diff.masked_fill(&mask.logical_not(), f64::NEG_INFINITY).exp()
}

/// Decayed linear attention, the recurrence shared by linear attention, Based, RetNet and GLA:
/// per head `S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ`, `o_t = S_tᵀ q_t`.
///
/// `q, k: [B, H, L, K]`, `v: [B, H, L, V]`, `g` (log decays ≤ 0): `None` (no decay),
/// `[B, H, L, 1]` (scalar per head) or `[B, H, L, K]` (per key channel). Chunked form: with
/// `b_t = Σ_{i≤t} g_i` inside a chunk of `chunk` positions (zero-padded at the end),
/// `o_t = Σ_{s≤t} (q_t ⊙ e^{b_t−b_s})·k_s v_s + (q_t ⊙ e^{b_t})ᵀ S₀` and
/// `S_C = diag(e^{b_C}) S₀ + Σ_s (k_s ⊙ e^{b_C−b_s}) v_sᵀ`: quadratic within chunks, recurrent
/// across them, O(L·C·(K+V)) and every exponent ≤ 0. Returns `(o, S_L)`, `S_L: [B, H, K, V]`.
pub fn chunked_linear_attention(q: &Tensor, k: &Tensor, v: &Tensor, g: Option<&Tensor>, chunk: i64) -> (Tensor, Tensor) {
    let (b, h, l, dk) = q.size4().unwrap();
    let dv = v.size()[3];
    let (n, c) = chunk_layout(l, chunk);
    let chunks = |x: &Tensor| to_chunks(x, n, c);
    let (qc, kc, vc) = (chunks(q), chunks(k), chunks(v));
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
    for i in 0..n {
        let (qi, ki, vi) = (qc.select(2, i), kc.select(2, i), vc.select(2, i));
        let oi = intra.select(2, i);
        match &bc {
            None => {
                outs.push(oi + qi.matmul(&state));
                state = state + ki.transpose(-2, -1).matmul(&vi);
            }
            Some(bc) => {
                let bi = bc.select(2, i); // [B,H,C,1|K]
                let last = bi.narrow(2, c - 1, 1); // [B,H,1,1|K]
                outs.push(oi + (&qi * bi.exp()).matmul(&state));
                let kd = &ki * (&last - &bi).exp();
                state = last.transpose(-2, -1).exp() * state + kd.transpose(-2, -1).matmul(&vi);
            }
        }
    }
    let o = Tensor::stack(&outs, 2).view([b, h, n * c, dv]).narrow(2, 0, l);
    (o, state)
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

/// Reference for [`chunked_linear_attention`]: the recurrence, one position at a time.
pub fn linear_attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, g: Option<&Tensor>) -> Tensor {
    let (b, h, l, dk) = q.size4().unwrap();
    let dv = v.size()[3];
    let mut state = Tensor::zeros([b, h, dk, dv], (q.kind(), q.device()));
    let outs: Vec<Tensor> = (0..l)
        .map(|t| {
            let gt = g.map(|g| g.select(2, t));
            linear_attention_step(&mut state, &q.select(2, t), &k.select(2, t), &v.select(2, t), gt.as_ref())
        })
        .collect();
    Tensor::stack(&outs, 2)
}

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
pub fn chunked_delta_rule(q: &Tensor, k: &Tensor, v: &Tensor, beta: &Tensor, g: Option<&Tensor>, chunk: i64) -> (Tensor, Tensor) {
    let (b, h, l, dk) = q.size4().unwrap();
    let dv = v.size()[3];
    let (n, c) = chunk_layout(l, chunk);
    let chunks = |x: &Tensor| to_chunks(x, n, c);
    let (qc, kc, vc) = (chunks(q), chunks(k), chunks(v));
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
    for i in 0..n {
        let u = u_tilde.select(2, i) - w.select(2, i).matmul(&state);
        let gi = gamma.select(2, i); // [B,H,C,1]
        let last = gi.narrow(2, c - 1, 1); // [B,H,1,1]
        outs.push((qc.select(2, i) * &gi).matmul(&state) + p.select(2, i).matmul(&u));
        let bi = bc.select(2, i); // [B,H,C]
        let kd = kc.select(2, i) * (bi.narrow(2, c - 1, 1) - &bi).exp().unsqueeze(-1);
        state = &last * state + kd.transpose(-2, -1).matmul(&u);
    }
    let o = Tensor::stack(&outs, 2).view([b, h, n * c, dv]).narrow(2, 0, l);
    (o, state)
}

/// One step of the (gated) delta rule: `S ← α S; S ← S + β k (v − Sᵀk)ᵀ; o = Sᵀ q`.
/// `q, k: [B, H, K]`, `v: [B, H, V]`, `beta, g: [B, H]`.
pub fn delta_rule_step(state: &mut Tensor, q: &Tensor, k: &Tensor, v: &Tensor, beta: &Tensor, g: Option<&Tensor>) -> Tensor {
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

/// A mixer built around [`chunked_linear_attention`]: it maps `x` to per-head `q, k, v` and
/// optional log decays `g`, and maps the recurrence output back. Implementing this gives the
/// [`super::Mixer`] forms: chunked forward, recurrence-loop reference, and a step carrying one
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
}

impl<T: DecayedLinear> super::Mixer for T {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let (q, k, v, g) = self.qkvg(x);
        self.finish(&chunked_linear_attention(&q, &k, &v, g.as_ref(), self.chunk_size()).0, x)
    }
    fn reference(&self, x: &Tensor) -> Tensor {
        let (q, k, v, g) = self.qkvg(x);
        self.finish(&linear_attention_reference(&q, &k, &v, g.as_ref()), x)
    }
    fn init_state(&self, batch: i64) -> super::MixerState {
        let [h, k, v] = self.state_shape();
        super::MixerState::new(vec![Tensor::zeros([batch, h, k, v], self.opts())])
    }
    fn step(&self, state: &mut super::MixerState, x_t: &Tensor) -> Tensor {
        let x = x_t.unsqueeze(1);
        let (q, k, v, g) = self.qkvg(&x);
        let g = g.map(|g| g.select(2, 0));
        let o = linear_attention_step(&mut state.tensors[0], &q.select(2, 0), &k.select(2, 0), &v.select(2, 0), g.as_ref());
        self.finish(&o.unsqueeze(2), &x).squeeze_dim(1)
    }
    fn state_size(&self, _seq_len: i64) -> i64 {
        self.state_shape().iter().product()
    }
}

/// Step of a depthwise causal FIR with `K` taps (`w: [C, K]`, same tap order as
/// [`short_conv`]) that keeps only what the next step needs: `window: [B, K−1, C]`, the
/// previous `K−1` inputs (oldest first). The state is therefore `(K−1)·C` elements.
pub fn fir_step(window: &mut Tensor, x_t: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let k = w.size()[1];
    let full = Tensor::cat(&[&*window, &x_t.unsqueeze(1)], 1); // [B, K, C]
    let y = (&full * w.transpose(0, 1).unsqueeze(0)).sum_dim_intlist([1i64].as_slice(), false, full.kind());
    *window = full.narrow(1, 1, k - 1);
    match bias {
        Some(bb) => y + bb,
        None => y,
    }
}

/// The [`fir_step`] window after a prompt `x: [B, L, C]`: its last `K−1` inputs, zero-padded
/// at the front when `L < K−1`.
pub fn fir_window_after(x: &Tensor, k: i64) -> Tensor {
    let (b, l, c) = x.size3().unwrap();
    let keep = k - 1;
    if l >= keep {
        x.narrow(1, l - keep, keep)
    } else {
        Tensor::cat(&[Tensor::zeros([b, keep - l, c], (x.kind(), x.device())), x.shallow_clone()], 1)
    }
}

/// A bank of `H` channels with `M` complex modes each (all `[H, M]`, f32):
/// `p = exp(log_mag + iθ)`, coefficient `c = c_re + i c_im`, impulse response
/// `h[t] = Σ_m Re(c_m p_m^t)` and the equivalent recurrence
/// `s_t = p ⊙ s_{t−1} + x_t`, `y_t = Σ_m Re(c_m s_{t,m})`. Used by the S4D-type diagonal
/// SSMs (`long_conv`, `h3`), StripedHyena's modal filter and Mega's damped EMA.
/// Complex numbers are kept as (re, im) pairs of real tensors, so the state is `2·H·M` reals.
#[derive(Debug)]
pub struct Modes {
    pub log_mag: Tensor,
    pub theta: Tensor,
    pub c_re: Tensor,
    pub c_im: Tensor,
}

impl Modes {
    /// `h[t] = Σ_m exp(t·log_mag)(c_re cos tθ − c_im sin tθ)` for `t < l`: `[H, l]`.
    pub fn kernel(&self, l: i64) -> Tensor {
        let t = Tensor::arange(l, (Kind::Float, self.log_mag.device())).view([1, 1, l]);
        let mag = (self.log_mag.unsqueeze(-1) * &t).exp();
        let ang = self.theta.unsqueeze(-1) * &t;
        let v = mag * (self.c_re.unsqueeze(-1) * ang.cos() - self.c_im.unsqueeze(-1) * ang.sin());
        v.sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
    }

    /// `p` as (re, im), `[H, M]`.
    fn poles(&self) -> (Tensor, Tensor) {
        let mag = self.log_mag.exp();
        (&mag * self.theta.cos(), mag * self.theta.sin())
    }

    /// Zero state `[lead…, H, M]` (re, im).
    pub fn zero_state(&self, lead: &[i64]) -> (Tensor, Tensor) {
        let mut shape = lead.to_vec();
        shape.extend(self.log_mag.size());
        let z = Tensor::zeros(&shape[..], (Kind::Float, self.log_mag.device()));
        (z.copy(), z)
    }

    /// One recurrence step: `x: [lead…, H]`, state `[lead…, H, M]`; returns `y: [lead…, H]`.
    pub fn step(&self, re: &mut Tensor, im: &mut Tensor, x: &Tensor) -> Tensor {
        let (pr, pi) = self.poles();
        let x = x.to_kind(Kind::Float).unsqueeze(-1);
        let nre = &pr * &*re - &pi * &*im + x;
        let nim = &pr * &*im + &pi * &*re;
        let y = (&self.c_re * &nre - &self.c_im * &nim).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        *re = nre;
        *im = nim;
        y
    }

    /// Reference: the recurrence run token by token over `u: [B, L, lead…, H]` (dim 1 is time).
    pub fn scan_reference(&self, u: &Tensor) -> Tensor {
        let sz = u.size();
        let mut lead = vec![sz[0]];
        lead.extend(&sz[2..sz.len() - 1]);
        let (mut re, mut im) = self.zero_state(&lead);
        let ys: Vec<Tensor> = (0..sz[1]).map(|t| self.step(&mut re, &mut im, &u.select(1, t))).collect();
        Tensor::stack(&ys, 1).to_kind(u.kind())
    }

    /// The state after `u: [B, L, H]` in closed form, `s = Σ_j p^{L−1−j} u_j` (a Vandermonde
    /// contraction, no loop): `([B, H, M], [B, H, M])`.
    pub fn state_after(&self, u: &Tensor) -> (Tensor, Tensor) {
        let l = u.size()[1];
        let back = Tensor::arange(l, (Kind::Float, u.device())).flip([0]).view([1, 1, l]); // L−1−j
        let mag = (self.log_mag.unsqueeze(-1) * &back).exp();
        let ang = self.theta.unsqueeze(-1) * &back;
        let (vr, vi) = (&mag * ang.cos(), mag * ang.sin()); // [H, M, L]
        let u = u.to_kind(Kind::Float);
        let re = Tensor::einsum("blh,hml->bhm", &[&u, &vr], None::<&[i64]>);
        let im = Tensor::einsum("blh,hml->bhm", &[&u, &vi], None::<&[i64]>);
        (re, im)
    }
}

/// S4D diagonal SSM parameters for `H` channels with `N/2` complex-conjugate mode pairs
/// (S4D-Lin init: `A_n = −½ + iπn`, `B = 1`, `C ~ CN(0, 1)`, `Δ` log-uniform in
/// [1e-3, 1e-1]; all f32). Zero-order hold gives the kernel
/// `K[t] = 2·Re Σ_n C_n (exp(ΔA_n) − 1)/A_n · exp(ΔA_n)^t`, i.e. [`Modes`] with
/// `p = exp(ΔA)` and `c = 2C(p − 1)/A`. The state is `N/2` complex = `N` reals per channel.
#[derive(Debug)]
pub struct S4d {
    pub log_dt: Tensor,
    pub log_a_re: Tensor,
    pub a_im: Tensor,
    pub c_re: Tensor,
    pub c_im: Tensor,
}

impl S4d {
    /// `n_state` = N (even): `N/2` complex modes per channel.
    pub fn new(p: nn::Path, h: i64, n_state: i64) -> Self {
        let m = n_state / 2;
        let dev = p.device();
        let log_dt = p.var("log_dt", &[h], nn::Init::Uniform { lo: (1e-3f64).ln(), up: (1e-1f64).ln() });
        let log_a_re = p.var("log_a_re", &[h, m], nn::Init::Const((0.5f64).ln()));
        let im = (Tensor::arange(m, (Kind::Float, dev)) * std::f64::consts::PI).unsqueeze(0).repeat([h, 1]);
        let a_im = p.var_copy("a_im", &im);
        let s = (0.5f64).sqrt();
        let c_re = p.var("c_re", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        let c_im = p.var("c_im", &[h, m], nn::Init::Randn { mean: 0.0, stdev: s });
        S4d { log_dt, log_a_re, a_im, c_re, c_im }
    }

    /// The discretised modes (computed in f32).
    pub fn modes(&self) -> Modes {
        let dt = self.log_dt.to_kind(Kind::Float).exp().unsqueeze(1);
        let ar = -self.log_a_re.to_kind(Kind::Float).exp();
        let ai = self.a_im.to_kind(Kind::Float);
        let log_mag = &dt * &ar;
        let theta = &dt * &ai;
        let mag = log_mag.exp();
        let (pr1, pi) = (&mag * theta.cos() - 1.0, &mag * theta.sin()); // p − 1
        let den = &ar * &ar + &ai * &ai;
        let q_re = (&pr1 * &ar + &pi * &ai) / &den;
        let q_im = (&pi * &ar - &pr1 * &ai) / &den;
        let (cr, ci) = (self.c_re.to_kind(Kind::Float), self.c_im.to_kind(Kind::Float));
        let c_re = (&cr * &q_re - &ci * &q_im) * 2.0;
        let c_im = (&cr * &q_im + &ci * &q_re) * 2.0;
        Modes { log_mag, theta, c_re, c_im }
    }
}

/// Test helper: validates the mixer table written as inline TOML (e.g.
/// `{ name = "h3", head_dim = 3 }`) for `d_model = 16`, `max_seq_len = 48` and returns the
/// error text (panics if the table is accepted).
#[cfg(test)]
pub fn validate_error(inline: &str) -> String {
    let t: toml::Table = toml::from_str(&format!("m = {inline}")).unwrap();
    let m = t["m"].as_table().unwrap().clone();
    match super::validate_table(&m, 16, &super::BuildCtx::new(0, 2, 48), "model.mixer") {
        Ok(()) => panic!("{inline} was accepted"),
        Err(e) => e.to_string(),
    }
}
