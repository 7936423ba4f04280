//! `rwkv7`: RWKV-7 "Goose" time mixing, the generalised delta rule with a
//! diagonal-plus-low-rank transition (Peng et al. 2025), as Zoology's `rwkv7.RWKV7Attention`
//! (fla's layer of that time; `fla/ops/rwkv7`).
//!
//! With `Δ_t = x_{t−1} − x_t` (x_{−1} = 0), `x_c = x_t + μ_c ⊙ Δ_t` for
//! c ∈ {r, w, k, v, a, g} (`μ = x_x`, `[6, d]`), `H` heads of `N = min(head_dim, d)` channels:
//!
//! ```text
//! r = W_r x_r,  k̃ = W_k x_k,  v = W_v x_v
//! log w_t = −e^{−1/2} · σ(LoRA_w(x_w))                  (tanh inside; w_t ∈ [e^{−0.607}, 1))
//! a_t = σ(LoRA_a(x_a))                                 (in-context learning rate, per channel)
//! g_t = LoRA_g(x_g)                                    (sigmoid inside, no bias)
//! κ̂_t = L2norm_head(k̃_t ⊙ k_k),   k_t = k̃_t ⊙ (1 + (a_t − 1) ⊙ k_a)
//! S_t = (diag(w_t) − κ̂_t (a_t ⊙ κ̂_t)ᵀ)ᵀ-form below,   o_t = S_tᵀ r_t          (N × N per head)
//! y = W_o( (GroupNorm_H(o) + ((r ⊙ k ⊙ r_k)·1_head) v) ⊙ g )
//! ```
//! In our key-major layout (`S: [K, V]`, the transpose of the paper's `S_t ∈ R^{V×K}`), with
//! fla's `α_t = −κ̂_t`, `β_t = κ̂_t ⊙ a_t`:
//! `S_t = diag(w_t) S_{t−1} + β_t (α_tᵀ S_{t−1}) + k_t v_tᵀ`, which is the paper's
//! `S_t = S_{t−1}(diag(w_t) − κ̂_t (a_t ⊙ κ̂_t)ᵀ) + v_t k_tᵀ` transposed. No `1/√N` scale on r
//! (Zoology calls the kernel with scale 1). GroupNorm: per head and token, eps `N·norm_eps`,
//! affine weight and bias over d.
//!
//! Forms:
//! - fast (training): chunked, a WY-like form of the DPLR recurrence. In a chunk with
//!   `b_t = Σ_{j≤t} log w_j` and `b⁻_t = b_t − log w_t`, the pseudo-values `u_t = α_tᵀ S_{t−1}`
//!   satisfy `(I − M_αβ) U = (A ⊙ e^{b⁻}) S₀ + M_αk V` with the strictly lower
//!   `M_αy[t, i] = Σ_c α_tc e^{b⁻_tc − b_ic} y_ic`, so `U = W S₀ + Ũ` (one unit-triangular
//!   solve for all chunks at once); then `O = (R ⊙ e^{b}) S₀ + P_rβ U + P_rk V` with the
//!   inclusive `P_ry[t, i] = Σ_c r_tc e^{b_tc − b_ic} y_ic`, and
//!   `S_C = e^{b_C} ⊙ S₀ + (β ⊙ e^{b_C − b})ᵀ U + (k ⊙ e^{b_C − b})ᵀ V`. The pair decays are
//!   factorised (`x e^{b_t} · y e^{−b_i}`): safe because RWKV-7's decay is bounded,
//!   `|log w| ≤ e^{−1/2}`, so within a chunk of C ≤ 64 every factor lies in `e^{±39}` (f32
//!   reaches `e^{88}`); `chunk_size` is capped at 64 for that reason. Only the hand-off of `S`
//!   loops over chunks.
//! - reference: the recurrence with the dense `N × N` transition `diag(w_t) + β_t α_tᵀ`, one
//!   token at a time (fla's `naive` / fused-recurrent loop).
//! - step: the same update on an explicit state: the last input (token shift) and `S`.
//!
//! State: `d + H·N² = d·(N + 1)` elements, constant in L: exactly what `step` carries. Zoology's
//! `state_size()` is now `H·N²` (`state_size_zoology`; it leaves out the token-shift input).
//! Before Zoology's commits 99afaac and 6e6ac03 (issues #34/#35/#37) it returned
//! `num_heads · key_dim · value_dim = H·d²`, `H²` times the matrix state: 4× at d = 128 and
//! 16× at d = 256 with N = 64, which its plotting scripts undo by hand (÷4, ÷16).
//!
//! FLOPs ([`crate::flops`] convention), per token: r, k, v, o `8·d²`; the LoRAs
//! `4·d·(r_w + r_a + r_g)`; the bonus `H·(2N + 2N)`. The chunked core per position and head
//! (whole `C×C` blocks over `⌈L/C⌉·C`): four score products `8·C·N`, `M_αk V` `2·C·N`, the
//! solve `(C−1)·2N`, `P_rβ U` and `P_rk V` `4·C·N`, `W S₀`, `(R e^b) S₀` and the two state
//! updates `8·N²`: `H·(14·C·N + 2·(C−1)·N + 8·N²)`. Decode per head: `αᵀS` `2N²`, decay `N²`,
//! `β uᵀ` `2N²`, `k vᵀ` `2N²`, readout `2N²`, bonus `4N`: `H·(9·N² + 4·N)` plus the per-token
//! terms. Prefill is the step form.
//!
//! Defaults: Zoology's `models_repo` configs (`head_dim = 64`, LoRA ranks decay 16, gate 64,
//! a 16; the class's own defaults are 64/128/64 and `v_low_rank_dim` 16). Init as Zoology's
//! model leaves it: every Linear (LoRA factors included) N(0, 0.02) with zero bias (its
//! `_init_weights` runs after the layer's xavier init), `x_x`, `k_k`, `k_a`, `r_k` zero (so at
//! init the removal key κ̂ is 0 and the layer is a decayed linear attention), GroupNorm weight 1
//! and bias 0.
//!
//! Departures (docs/DECISIONS.md, "Matrix-state recurrences"): `v_lora` (the value residual
//! to the first layer's v) is not built: Zoology builds it at layers ≥ 1 but its block never
//! passes `v_first`, so `v` is never mixed and `v_lora` never used. A model narrower than
//! `head_dim` gets one head of width d (Zoology's `d // 64` heads would be 0). f32 throughout.

use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::chunking::{lower_mask, ChunkLayout};
use super::common::layers::{l2_norm, merge_heads, split_heads, token_shift, Linear};
use super::rwkv5::{check_head_size, effective_head, head_group_norm};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// `e^{−1/2}`: the bound of RWKV-7's log decay, `log w = −e^{−1/2}·σ(·)`.
const DECAY_BOUND: f64 = 0.606_530_659_712_633_4;
/// Largest chunk the factorised pair decays allow (`e^{DECAY_BOUND·C}` must stay far inside f32).
const MAX_CHUNK: i64 = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rwkv7Config {
    /// Channels per head (Zoology / fla: 64); a model narrower than this gets one head of
    /// width d_model.
    pub head_dim: i64,
    /// Rank of the decay LoRA (Zoology's configs: 16; the class default 64).
    pub decay_low_rank_dim: i64,
    /// Rank of the output-gate LoRA (Zoology's configs: 64; the class default 128).
    pub gate_low_rank_dim: i64,
    /// Rank of the in-context-learning-rate LoRA (Zoology's configs: 16; the class default 64).
    pub a_low_rank_dim: i64,
    /// GroupNorm epsilon per channel of a head (eps = head_dim · norm_eps; fla: 1e-5).
    pub norm_eps: f64,
    /// Chunk length of the training form (≤ 64; fla's kernel: 16).
    pub chunk_size: i64,
}

impl Default for Rwkv7Config {
    fn default() -> Self {
        Rwkv7Config {
            head_dim: 64,
            decay_low_rank_dim: 16,
            gate_low_rank_dim: 64,
            a_low_rank_dim: 16,
            norm_eps: 1e-5,
            chunk_size: 16,
        }
    }
}

/// fla's `LoRA`: `W₂ act(W₁ x) (+ b)`.
#[derive(Debug)]
struct Lora {
    down: Linear,
    up: Linear,
}

impl Lora {
    fn new(p: nn::Path, d_in: i64, d_out: i64, rank: i64, bias: bool, std: f64) -> Self {
        Lora {
            down: Linear::new(&p / "lora_0", d_in, rank, false, std),
            up: Linear::new(&p / "lora_2", rank, d_out, bias, std),
        }
    }
    fn forward(&self, x: &Tensor, act: fn(&Tensor) -> Tensor) -> Tensor {
        self.up.forward(&act(&self.down.forward(x)))
    }
    fn flops(&self) -> f64 {
        self.down.flops() + self.up.flops()
    }
}

#[derive(Debug)]
pub struct Rwkv7 {
    x_x: Tensor,
    k_k: Tensor,
    k_a: Tensor,
    r_k: Tensor,
    wr: Linear,
    wk: Linear,
    wv: Linear,
    out: Linear,
    w_lora: Lora,
    a_lora: Lora,
    g_lora: Lora,
    norm_w: Tensor,
    norm_b: Tensor,
    heads: i64,
    cfg: Rwkv7Config,
    d: i64,
}

/// Per-head `r, log w, k, v, α, β: [B, H, L, N]` and the gate `g: [B, L, d]`.
struct Inputs {
    r: Tensor,
    w: Tensor,
    k: Tensor,
    v: Tensor,
    alpha: Tensor,
    beta: Tensor,
    g: Tensor,
}

impl Rwkv7 {
    fn n(&self) -> i64 {
        self.d / self.heads
    }

    fn inputs(&self, x: &Tensor, x_prev: &Tensor) -> Inputs {
        let h = self.heads;
        let delta = x_prev - x;
        let mix = |c: i64| x + &delta * self.x_x.get(c);
        let r = self.wr.forward(&mix(0));
        let w = self.w_lora.forward(&mix(1), |t| t.tanh()).sigmoid() * (-DECAY_BOUND);
        let k = self.wk.forward(&mix(2));
        let v = self.wv.forward(&mix(3));
        let a = self.a_lora.forward(&mix(4), |t| t.shallow_clone()).sigmoid();
        let g = self.g_lora.forward(&mix(5), |t| t.sigmoid());
        let kk = l2_norm(&split_heads(&(&k * &self.k_k), h), 1e-6);
        let k = &k + &k * (&a - 1.0) * &self.k_a;
        let a = split_heads(&a, h);
        Inputs {
            r: split_heads(&r, h),
            w: split_heads(&w, h),
            k: split_heads(&k, h),
            v: split_heads(&v, h),
            alpha: -&kk,
            beta: kk * a,
            g,
        }
    }

    /// GroupNorm, the `r_k` bonus, the gate and the output projection; `o: [B, H, L, N]`.
    fn finish(&self, o: &Tensor, i: &Inputs) -> Tensor {
        let normed = head_group_norm(o, &self.norm_w, &self.norm_b, self.n() as f64 * self.cfg.norm_eps);
        let rk = (&i.r * &i.k * self.r_k.unsqueeze(1)).sum_dim_intlist([-1i64].as_slice(), true, o.kind());
        self.out.forward(&((normed + merge_heads(&(rk * &i.v))) * &i.g))
    }

    fn token_flops(&self) -> f64 {
        let lin: f64 = [&self.wr, &self.wk, &self.wv, &self.out].iter().map(|l| l.flops()).sum();
        lin + self.w_lora.flops() + self.a_lora.flops() + self.g_lora.flops()
    }
}

/// Chunked RWKV-7 / DPLR recurrence (see the module doc): per head
/// `S_t = diag(e^{g_t}) S_{t−1} + β_t (α_tᵀ S_{t−1}) + k_t v_tᵀ`, `o_t = S_tᵀ r_t`. All inputs
/// `[B, H, L, N]` (`v` may be `[B, H, L, V]`), `g = log w ∈ [−DECAY_BOUND, 0]`. Returns
/// `(o, S_L)`.
pub fn rwkv7_chunked(
    r: &Tensor,
    g: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alpha: &Tensor,
    beta: &Tensor,
    chunk: i64,
) -> (Tensor, Tensor) {
    let (b, h, l, n) = r.size4().unwrap();
    let dv = v.size()[3];
    let lay = ChunkLayout::new(l, chunk);
    let (nc, c) = (lay.n, lay.c);
    let sp = |x: &Tensor| lay.split(x, 2); // [B, H, nc, C, ·], zero-padded (log w = 0 there)
    let (r, k, v, alpha, beta) = (sp(r), sp(k), sp(v), sp(alpha), sp(beta));
    let gc = sp(g);
    let bi = gc.cumsum(3, g.kind()); // inclusive b_t
    let bx = &bi - &gc; // exclusive b⁻_t
    let (e_in, e_ex, e_neg) = (bi.exp(), bx.exp(), (-&bi).exp());
    let last = bi.narrow(3, c - 1, 1); // [B, H, nc, 1, N]
    let e_tail = (&last - &bi).exp(); // e^{b_C − b_i} ≤ 1
    let dev = r.device();
    let strict = lower_mask(c, true, dev).to_kind(r.kind());
    let incl = lower_mask(c, false, dev).to_kind(r.kind());
    let tr = |x: &Tensor| x.transpose(-2, -1);
    let a_ex = &alpha * &e_ex;
    let r_in = &r * &e_in;
    let (beta_neg, k_neg) = (&beta * &e_neg, &k * &e_neg);
    let m_ab = a_ex.matmul(&tr(&beta_neg)) * &strict;
    let m_ak = a_ex.matmul(&tr(&k_neg)) * &strict;
    let p_rb = r_in.matmul(&tr(&beta_neg)) * &incl;
    let p_rk = r_in.matmul(&tr(&k_neg)) * &incl;
    // (I − M_αβ) [W | Ũ] = [A e^{b⁻} | M_αk V]
    let eye = Tensor::eye(c, (r.kind(), dev));
    let rhs = Tensor::cat(&[a_ex, m_ak.matmul(&v)], -1);
    let sol = (eye - m_ab).linalg_solve_triangular(&rhs, false, true, true);
    let (w_all, u_all) = (sol.narrow(-1, 0, n), sol.narrow(-1, n, dv));
    let intra_v = p_rk.matmul(&v); // [B, H, nc, C, V]
    let kv_tail = tr(&(&k * &e_tail)).matmul(&v); // [B, H, nc, N, V]
    let beta_tail = &beta * &e_tail;
    let mut s = Tensor::zeros([b, h, n, dv], (r.kind(), dev));
    let mut outs = Vec::with_capacity(nc as usize);
    // per-chunk views made once (`unbind`; a `select` per chunk costs a full-size zero gradient
    // per chunk in the backward)
    let (ws, us, rs, ps, iv) = (w_all.unbind(2), u_all.unbind(2), r_in.unbind(2), p_rb.unbind(2), intra_v.unbind(2));
    let (ls, bt, kvt) = (last.unbind(2), beta_tail.unbind(2), kv_tail.unbind(2));
    for i in 0..nc as usize {
        let u = ws[i].matmul(&s) + &us[i];
        outs.push(rs[i].matmul(&s) + ps[i].matmul(&u) + &iv[i]);
        let decay = tr(&ls[i].exp()); // [B, H, N, 1]
        s = decay * s + tr(&bt[i]).matmul(&u) + &kvt[i];
    }
    (lay.merge(&Tensor::stack(&outs, 2), 2), s)
}

/// Reference for [`rwkv7_chunked`], sharing no helper with it: the recurrence with the dense
/// `N × N` transition `diag(e^{g_t}) + β_t α_tᵀ`, one token at a time.
pub fn rwkv7_reference(r: &Tensor, g: &Tensor, k: &Tensor, v: &Tensor, alpha: &Tensor, beta: &Tensor) -> Tensor {
    let (b, h, l, n) = r.size4().unwrap();
    let dv = v.size()[3];
    let mut s = Tensor::zeros([b, h, n, dv], (r.kind(), r.device()));
    let mut outs = Vec::with_capacity(l as usize);
    for t in 0..l {
        let transition = g.select(2, t).exp().diag_embed(0, -2, -1)
            + beta.select(2, t).unsqueeze(-1) * alpha.select(2, t).unsqueeze(-2); // [B, H, N, N]
        s = transition.matmul(&s) + k.select(2, t).unsqueeze(-1) * v.select(2, t).unsqueeze(-2);
        outs.push(s.transpose(-2, -1).matmul(&r.select(2, t).unsqueeze(-1)).squeeze_dim(-1));
    }
    Tensor::stack(&outs, 2)
}

/// One token: `r, g, k, α, β: [B, H, N]`, `v: [B, H, V]`; updates `s: [B, H, N, V]`, returns `o`.
pub fn rwkv7_step(
    s: &mut Tensor,
    r: &Tensor,
    g: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alpha: &Tensor,
    beta: &Tensor,
) -> Tensor {
    let sa = alpha.unsqueeze(-2).matmul(&*s); // αᵀS, [B, H, 1, V]
    *s = g.exp().unsqueeze(-1) * &*s + beta.unsqueeze(-1) * sa + k.unsqueeze(-1) * v.unsqueeze(-2);
    r.unsqueeze(-2).matmul(&*s).squeeze_dim(-2)
}

impl Mixer for Rwkv7 {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        use crate::device::{full_precision as f32_, Precision};
        let i = self.inputs(x, &token_shift(x));
        // the chunked form solves a triangular system per chunk: fp32 under bf16 autocast (no
        // bf16 kernel, and its error would compound)
        let (o, _) = Precision::fp32_region(x.device(), || {
            let c = |t: &Tensor| f32_(t);
            rwkv7_chunked(&c(&i.r), &c(&i.w), &c(&i.k), &c(&i.v), &c(&i.alpha), &c(&i.beta), self.cfg.chunk_size)
        });
        self.finish(&o, &i)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let i = self.inputs(x, &token_shift(x));
        self.finish(&rwkv7_reference(&i.r, &i.w, &i.k, &i.v, &i.alpha, &i.beta), &i)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.out.ws.kind(), self.out.ws.device());
        let n = self.n();
        MixerState::new(vec![Tensor::zeros([batch, self.d], opts), Tensor::zeros([batch, self.heads, n, n], opts)])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let x = x_t.unsqueeze(1);
        let i = self.inputs(&x, &state.tensors[0].unsqueeze(1));
        let at = |t: &Tensor| t.select(2, 0);
        let o =
            rwkv7_step(&mut state.tensors[1], &at(&i.r), &at(&i.w), &at(&i.k), &at(&i.v), &at(&i.alpha), &at(&i.beta));
        state.tensors[0] = x_t.shallow_clone();
        self.finish(&o.unsqueeze(2), &i).squeeze_dim(1)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        self.d + self.heads * self.n() * self.n()
    }

    /// Zoology's `RWKV7Attention.state_size`: `num_heads · head_dim²`.
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(self.heads * self.n() * self.n())
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let (h, n, c) = (self.heads as f64, self.n() as f64, self.cfg.chunk_size as f64);
        let tok = self.token_flops() + h * 4.0 * n;
        let core = h * (14.0 * c * n + 2.0 * (c - 1.0) * n + 8.0 * n * n);
        let fwd = seq_len as f64 * tok + crate::flops::padded(seq_len, self.cfg.chunk_size) as f64 * core;
        let step = h * 9.0 * n * n;
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + step)
    }
}

/// Largest accepted LoRA rank.
const MAX_RANK: i64 = 4096;

impl MixerKind for Rwkv7 {
    type Config = Rwkv7Config;
    const NAME: &'static str = "rwkv7";
    const ABOUT: &'static str = "RWKV-7 (Goose): generalised delta rule, state S(diag(w) − κ̂(a⊙κ̂)ᵀ) + vkᵀ with data-dependent decay and in-context learning rate; chunked WY-like form";
    const STATE_FORMULA: &'static str = "d·(N + 1), N = min(head_dim, d) (S: H·N² = d·N, last x: d)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &Rwkv7Config, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        check_head_size(c.head_dim, d, "head_dim", field)?;
        int_in(field, "decay_low_rank_dim", c.decay_low_rank_dim, 1, MAX_RANK, "16")?;
        int_in(field, "gate_low_rank_dim", c.gate_low_rank_dim, 1, MAX_RANK, "64")?;
        int_in(field, "a_low_rank_dim", c.a_low_rank_dim, 1, MAX_RANK, "16")?;
        float_in(field, "norm_eps", c.norm_eps, 0.0, f64::INFINITY, "1e-5")?;
        int_in(field, "chunk_size", c.chunk_size, 1, MAX_CHUNK.min(MAX_SIZE), "16")
    }

    fn build(p: nn::Path, d: i64, c: &Rwkv7Config, ctx: &BuildCtx) -> Result<Self> {
        let s = ctx.init_std;
        let n = effective_head(c.head_dim, d);
        let heads = d / n;
        let zeros = |name: &str, shape: &[i64]| p.var(name, shape, nn::Init::Const(0.0));
        Ok(Rwkv7 {
            x_x: zeros("x_x", &[6, d]),
            k_k: zeros("k_k", &[d]),
            k_a: zeros("k_a", &[d]),
            r_k: zeros("r_k", &[heads, n]),
            wr: Linear::new(&p / "r_proj", d, d, false, s),
            wk: Linear::new(&p / "k_proj", d, d, false, s),
            wv: Linear::new(&p / "v_proj", d, d, false, s),
            out: Linear::new(&p / "o_proj", d, d, false, s),
            w_lora: Lora::new(&p / "w_lora", d, d, c.decay_low_rank_dim, true, s),
            a_lora: Lora::new(&p / "a_lora", d, d, c.a_low_rank_dim, true, s),
            g_lora: Lora::new(&p / "g_lora", d, d, c.gate_low_rank_dim, false, s),
            norm_w: p.var("g_norm_weight", &[d], nn::Init::Const(1.0)),
            norm_b: zeros("g_norm_bias", &[d]),
            heads,
            cfg: c.clone(),
            d,
        })
    }

    fn suite_variants() -> Vec<Rwkv7Config> {
        vec![
            Rwkv7Config::default(),
            Rwkv7Config {
                head_dim: 4,
                decay_low_rank_dim: 3,
                gate_low_rank_dim: 5,
                a_low_rank_dim: 2,
                chunk_size: 5,
                ..Default::default()
            },
            Rwkv7Config { head_dim: 8, chunk_size: 1, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seed_guard, validate_error};
    use tch::{Device, Kind};

    /// Random DPLR inputs of RWKV-7's shape: unit removal keys κ̂, rates a ∈ (0, 1), decays at
    /// both ends of the allowed range.
    fn inputs(b: i64, h: i64, l: i64, n: i64, strong: bool) -> [Tensor; 6] {
        let o = (Kind::Float, Device::Cpu);
        let kk = l2_norm(&Tensor::randn([b, h, l, n], o), 1e-6);
        let a = Tensor::rand([b, h, l, n], o);
        let g = if strong {
            Tensor::full([b, h, l, n], -DECAY_BOUND, o)
        } else {
            -(Tensor::rand([b, h, l, n], o)) * DECAY_BOUND
        };
        [
            Tensor::randn([b, h, l, n], o),
            g,
            Tensor::randn([b, h, l, n], o),
            Tensor::randn([b, h, l, n], o),
            -&kk,
            kk * a,
        ]
    }

    /// The chunked form against the dense loop in f64, at every chunk up to the cap (the
    /// strongest decay included), and the step form; the returned final state too.
    #[test]
    fn chunked_matches_the_dense_loop_up_to_the_largest_chunk() {
        let _rng = seed_guard(7);
        for strong in [false, true] {
            let [r, g, k, v, al, be] = inputs(2, 2, 70, 4, strong);
            let d = |t: &Tensor| t.to_kind(Kind::Double);
            let want = rwkv7_reference(&d(&r), &d(&g), &d(&k), &d(&v), &d(&al), &d(&be));
            let mut s = Tensor::zeros([2, 2, 4, 4], (Kind::Float, Device::Cpu));
            let steps: Vec<Tensor> = (0..70)
                .map(|t| {
                    let at = |x: &Tensor| x.select(2, t);
                    rwkv7_step(&mut s, &at(&r), &at(&g), &at(&k), &at(&v), &at(&al), &at(&be))
                })
                .collect();
            let e = rel_err(&d(&Tensor::stack(&steps, 2)), &want);
            assert!(e < 1e-5, "step (strong {strong}): rel err {e:.2e}");
            for chunk in [1, 3, 16, 64] {
                let (got, last) = rwkv7_chunked(&r, &g, &k, &v, &al, &be, chunk);
                let e = rel_err(&d(&got), &want);
                assert!(e < 1e-5, "chunk {chunk} (strong {strong}): rel err {e:.2e}");
                let es = rel_err(&last, &s);
                assert!(es < 1e-5, "chunk {chunk} (strong {strong}): final state rel err {es:.2e}");
            }
        }
    }

    /// The removal really removes: with w = 1, a = 1 and one key written twice, the second
    /// write replaces the first value (delta rule), rather than adding to it.
    #[test]
    fn a_full_rate_write_replaces_the_value_stored_at_a_key() {
        let o = (Kind::Float, Device::Cpu);
        let key = Tensor::from_slice(&[0.6f32, 0.8, 0.0]).view([1, 1, 1, 3]);
        let k = Tensor::cat(&[&key, &key], 2);
        let v = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0]).view([1, 1, 2, 2]);
        let kk = k.shallow_clone();
        let g = Tensor::zeros([1, 1, 2, 3], o);
        let (out, s) = rwkv7_chunked(&k, &g, &k, &v, &(-&kk), &kk, 4);
        // S after two writes = κ̂ v₂ᵀ, so reading with the key gives v₂ = (0, 2)
        let read = Vec::<f32>::try_from(out.select(2, 1).flatten(0, -1)).unwrap();
        assert!((read[0]).abs() < 1e-6 && (read[1] - 2.0).abs() < 1e-6, "{read:?}");
        let want = key.view([3, 1]) * v.select(2, 1).view([1, 2]);
        assert!(rel_err(&s.view([3, 2]), &want) < 1e-6);
    }

    /// Zoology's counts: `state_size_zoology` is H·N² (Zoology's formula), ours adds the
    /// token-shift input; both from built models at d = 128 (two heads of 64).
    #[test]
    fn state_sizes_and_bad_configs() {
        let _rng = seed_guard(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Rwkv7::build(vs.root(), 128, &Rwkv7Config::default(), &BuildCtx::new(1, 2, 16)).unwrap();
        assert_eq!((m.heads, m.n()), (2, 64));
        assert_eq!(m.state_size_zoology(100), Some(2 * 64 * 64));
        assert_eq!(m.state_size(100), 128 + 2 * 64 * 64);
        let e = validate_error(r#"{ name = "rwkv7", chunk_size = 65 }"#);
        assert!(e.contains("model.mixer.chunk_size") && e.contains("64"), "{e}");
        let e = validate_error(r#"{ name = "rwkv7", head_dim = 5 }"#);
        assert!(e.contains("model.mixer.head_dim"), "{e}");
        let e = validate_error(r#"{ name = "rwkv7", a_low_rank_dim = 0 }"#);
        assert!(e.contains("model.mixer.a_low_rank_dim"), "{e}");
        let e = validate_error(r#"{ name = "rwkv7", v_low_rank_dim = 16 }"#);
        assert!(e.contains("v_low_rank_dim"), "{e}");
    }
}
