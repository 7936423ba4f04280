//! `nystromformer`: Nyström-approximated softmax attention (Xiong et al. 2021), in a causal form
//! (Zoology's `NystromAttention`, whose landmark masks are not causal; docs/DECISIONS.md).
//!
//! Per head (width `h = D/H`, scale `1/√h`, `[q, k, v] = x W_qkvᵀ`), the sequence is cut into
//! segments of `c` tokens (`segment_size`, or `⌈max_seq_len / num_landmarks⌉` so that the longest
//! sequence has `num_landmarks` of them, as Zoology's `num_landmarks` segments of `L/m`). Segment
//! `j` (positions `jc … (j+1)c − 1`) gives the landmarks `q̃_j`, `k̃_j` (segment means of q and k,
//! Zoology's `AvgPool`) once it is complete. With `J_t = ⌊(t+1)/c⌋` landmarks complete at `t`:
//!
//! ```text
//! K1[t, j] = softmax_{j < J_t}(q_t·k̃_j/√h)                query t → landmarks complete by t
//! K2[i, j] = softmax_{j ≤ i}(q̃_i·k̃_j/√h)                  landmarks → earlier landmarks (lower-triangular)
//! K3[i, s] = softmax_{s < (i+1)c}(q̃_i·k_s/√h)             landmark i → keys up to its segment's end
//! y_t = K1[t, :J_t] · (K2[:J_t, :J_t])⁻¹ · K3[:J_t] V  +  conv(V)_t
//!     = Σ_{j < J_t} K1[t, j] H_j,   H = K2⁻¹ (K3 V)       (one triangular solve serves every t)
//! y = concat_heads(y) W_oᵀ
//! ```
//! This is Nyström's `softmax(Q K̃ᵀ) · pinv(softmax(Q̃ K̃ᵀ)) · softmax(Q̃ Kᵀ) V` with every factor
//! restricted to the past: query `t` uses only landmarks whose segments end at or before `t`,
//! landmark `i` only keys up to the end of its segment, and the landmark kernel is causal among
//! landmarks. Because `K2` is lower-triangular with a positive diagonal, the inverse of its
//! leading `J × J` block is the leading block of `K2⁻¹`, so `H` is computed once and query `t`
//! reads its first `J_t` rows.
//!
//! `K2⁻¹` is approximated as Zoology does by default (`use_razavi_pinverse`, `inv_iterations = 6`):
//! Razavi et al.'s iteration `Z ← ¼·Z·(13I − K2·Z(15I − K2·Z(7I − K2·Z)))`, but started from
//! `Z₀ = I` (`= I/‖K2‖_∞`, rows of softmax weights) instead of Zoology's `K2ᵀ/‖K2‖₁`, which is
//! upper-triangular and would let a landmark's row read later landmarks. Every iterate is then a
//! polynomial in `K2`: lower-triangular, its leading blocks the iteration on `K2`'s leading
//! blocks (causal), and bounded however small `K2`'s diagonal gets (the spectrum of `I − K2·Z₀`
//! is `1 − K2[i,i] ∈ [0, 1)`, so it converges to `K2⁻¹`, slowly where a diagonal is near 0).
//! With `use_razavi_pinverse = false`, `H = K2⁻¹ G` is the exact triangular solve, which
//! divides by those diagonals and can overflow once attention is sharp (a zoo run diverged
//! so; docs/DECISIONS.md). With `c = 1` (e.g.
//! `num_landmarks ≥ max_seq_len`, Zoology's exact-attention case) `K1 = K2 = K3` is the causal
//! softmax matrix and `y = K3 V` is exactly causal softmax attention; every form computes it so,
//! without the solve (Zoology's `num_landmarks >= seq_len` branch: the substitution divides by
//! `K2`'s diagonal softmax weights, which shrink as attention sharpens, and overflows). Queries see nothing of their own
//! incomplete segment through the landmarks (the first `c − 1` positions see no landmark); the
//! optional depthwise causal convolution of `V` (`conv_kernel_size` taps, one filter per head
//! shared by its channels: Zoology's/Nyströmformer's skip connection, made causal) covers them.
//!
//! Forms:
//! - parallel: the matrices above (`K1` only for rows `t ≥ c − 1`), `H = Z·G` by batched matmuls
//!   (or one `linalg_solve_triangular`), the conv by `common::conv::short_conv`; O(L²·d/c + L·d²).
//! - reference: per position, explicit softmaxes over landmarks and keys from explicitly summed
//!   segment means, the iteration with every matrix product written out row by row (or `H` by
//!   forward substitution written out), the conv by its explicit taps.
//! - recurrent: the whole KV cache (a landmark completed later attends to every key up to its
//!   segment's end, so decoding must keep them all), the running sum of the current segment's
//!   queries, the completed landmarks' keys `k̃_j` and rows `H_j`, the conv window, and the
//!   position; with the iteration also the landmark queries and the rows `G_j`. When a segment
//!   completes, its `K3` row over the cache gives `G_j`, and `H_j` is row `j` of `Z·G`, from the
//!   iteration on `K2`'s leading `J × J` block (or `(G_j − Σ_{i<j} K2[j,i] H_i) / K2[j,j]`).
//!
//! State after L tokens: `1 + 2·d·L + d + 4·d·⌊L/c⌋ + (K−1)·d` (K = conv taps, the last term only
//! with a conv; `2·d·⌊L/c⌋` with the exact solve, which keeps no landmark queries or G rows; with
//! `c = 1` no landmarks are kept, so the term is 0): it
//! grows with L. Zoology's `state_size()` is `2·d·num_landmarks`
//! (`state_size_zoology`), which leaves out the KV cache its `K3` needs.
//!
//! FLOPs ([`crate::flops`] convention), with `n = ⌊L/c⌋`: projections `8·d²` per token; conv
//! `2·d·K` per token; `K1` scores and mix `4·d·n·(L − c + 1)` (when n ≥ 1); `K2` `2·d·n²`; `K3`
//! scores and `K3 V` `4·d·n·L`; the inverse `8·I·n³` per head (I iterations of four `n × n`
//! products) `+ 2·d·n²` (`Z·G`), or the exact solve `d·n·(n−1)`. Decode at context L (token
//! `t = L − 1`): `8·d² + 2·d·K + 4·d·J` with `J = ⌊L/c⌋`, plus, when the token completes a
//! segment, `4·d·L` (its K3 row and mix) and `2·d·J² + 8·I·J³` per head `+ 2·d·J` (K2's leading
//! block, its inverse, the H row), or with the exact solve `2·d·J` (its K2 row) `+ 2·d·(J − 1)`
//! (its H row). Prefill is the step form. With `c = 1` the cost is causal attention's, as `attention` counts it: `4·L²·d` for
//! the scores and mix, `4·d·L` per decoded token.
//!
//! Init: `wqkv` N(0, 0.02), `out_proj` N(0, 0.02/√(2·n_layers)), no biases (Zoology's
//! `bias=False`); the conv taps U(−1/√K, 1/√K) (PyTorch's Conv2d default, which Zoology keeps).

use super::common::bounds::int_in;
use super::common::conv::{fir_step, short_conv, short_conv_reference};
use super::common::layers::{merge_heads, split_heads, Linear};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use crate::flops::MixerFlops;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NystromformerConfig {
    /// Landmarks over the longest sequence (Zoology's `num_landmarks`, 64): the segment length
    /// is `⌈max_seq_len / num_landmarks⌉` unless `segment_size` is set.
    pub num_landmarks: i64,
    /// Segment length c (tokens per landmark); 0 = from `num_landmarks`.
    pub segment_size: i64,
    /// Number of heads (must divide d_model; Zoology's code attends over the full width, i.e. 1).
    pub num_heads: i64,
    /// Taps of the causal depthwise conv skip on V (Zoology's `conv_kernel_size`; 0 = none, as
    /// Zoology's default None; the Nyströmformer paper uses 33).
    pub conv_kernel_size: i64,
    /// Dropout on the attention output in training (Zoology's `attn_drop`, 0).
    pub dropout: f64,
    /// Approximate `K2⁻¹` by Razavi et al.'s iteration (Zoology's default, `true`), started from
    /// the causal `Z₀ = I`; `false`: the exact triangular solve.
    pub use_razavi_pinverse: bool,
    /// Iterations of that approximation (Zoology's `inv_iterations`, 6).
    pub inv_iterations: i64,
}

impl Default for NystromformerConfig {
    fn default() -> Self {
        NystromformerConfig {
            num_landmarks: 64,
            segment_size: 0,
            num_heads: 1,
            conv_kernel_size: 0,
            dropout: 0.0,
            use_razavi_pinverse: true,
            inv_iterations: 6,
        }
    }
}

impl NystromformerConfig {
    fn segment(&self, max_seq_len: i64) -> i64 {
        if self.segment_size > 0 {
            self.segment_size
        } else {
            ((max_seq_len.max(1) + self.num_landmarks - 1) / self.num_landmarks).max(1)
        }
    }
}

#[derive(Debug)]
pub struct Nystromformer {
    wqkv: Linear,
    out: Linear,
    /// `[H, K]` taps of the conv skip (tap K−1 multiplies the current token).
    conv: Option<Tensor>,
    heads: i64,
    d: i64,
    c: i64,
    dropout: f64,
    num_landmarks: i64,
    /// Iterations of the causal Razavi inverse; `None`: the exact triangular solve.
    inv_iterations: Option<i64>,
}

impl Nystromformer {
    fn qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let qkv = self.wqkv.forward(x).chunk(3, -1);
        (split_heads(&qkv[0], self.heads), split_heads(&qkv[1], self.heads), split_heads(&qkv[2], self.heads))
    }
    fn scale(&self) -> f64 {
        1.0 / ((self.d / self.heads) as f64).sqrt()
    }
    /// The conv taps per channel `[D, K]` (each head's filter repeated over its channels).
    fn conv_per_channel(&self) -> Option<Tensor> {
        self.conv.as_ref().map(|w| w.repeat_interleave_self_int(self.d / self.heads, 0, None::<i64>))
    }
    fn taps(&self) -> i64 {
        self.conv.as_ref().map_or(0, |w| w.size()[1])
    }
    fn opts(&self) -> (Kind, tch::Device) {
        (self.out.ws.kind(), self.out.ws.device())
    }
    /// `y` heads-merged `[B, L, D]` (+ the conv skip of `v` merged) → output.
    fn finish(&self, y: &Tensor, train: bool) -> Tensor {
        self.out.forward(&y.dropout(self.dropout, train))
    }

    /// The landmark mix `y = K1 · K2⁻¹ (K3 V)` of per-head `q, k, v` `[B, H, L, h]` (zeros
    /// for queries that see no complete segment).
    fn landmark_mix(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
        let (b, _, l, _) = q.size4().unwrap();
        let (c, sc) = (self.c, self.scale());
        let n = l / c;
        let dev = q.device();
        if c == 1 {
            // one token per segment: K1 = K2, so K1·K2⁻¹ = I and y = K3 V, causal softmax
            // attention (Zoology's `num_landmarks >= seq_len` branch). Solving with K2 instead is
            // exact only on paper: its diagonal softmax weights shrink as attention sharpens, and
            // the substitution overflows (a zoo run diverged this way; docs/DECISIONS.md).
            let s = Tensor::arange(l, (Kind::Int64, dev));
            let causal = s.unsqueeze(1).ge_tensor(&s.unsqueeze(0));
            return masked_softmax(&(q.matmul(&k.transpose(-2, -1)) * sc), &causal).matmul(v);
        }
        let mut y = v.zeros_like(); // [B,H,L,h]
        if n > 0 {
            let seg = |t: &Tensor| {
                let (_, hh, _, e) = t.size4().unwrap();
                t.narrow(2, 0, n * c).view([b, hh, n, c, e]).mean_dim([3i64].as_slice(), false, t.kind())
            };
            let (ql, kl) = (seg(&q), seg(&k)); // [B,H,n,h]
            let opts = (Kind::Int64, dev);
            let j = Tensor::arange(n, opts);
            // K2: landmarks → earlier landmarks (lower-triangular)
            let k2 =
                masked_softmax(&(ql.matmul(&kl.transpose(-2, -1)) * sc), &j.unsqueeze(1).ge_tensor(&j.unsqueeze(0)));
            // K3: landmark i → keys s < (i+1)c
            let s = Tensor::arange(l, opts);
            let ends = (&j + 1) * c; // [n]
            let k3 =
                masked_softmax(&(ql.matmul(&k.transpose(-2, -1)) * sc), &s.unsqueeze(0).lt_tensor(&ends.unsqueeze(1)));
            let g = k3.matmul(&v); // [B,H,n,h]
            let hmat = match self.inv_iterations {
                Some(iters) => razavi_inverse(&k2, iters).matmul(&g),
                None => k2.linalg_solve_triangular(&g, false, true, false),
            };
            // K1 for queries t ≥ c − 1: landmarks j with (j+1)c − 1 ≤ t
            let rows = l - c + 1;
            let t = Tensor::arange_start(c - 1, l, opts);
            let k1 = masked_softmax(
                &(q.narrow(2, c - 1, rows).matmul(&kl.transpose(-2, -1)) * sc),
                &(&ends - 1).unsqueeze(0).le_tensor(&t.unsqueeze(1)),
            );
            let part = k1.matmul(&hmat); // [B,H,rows,h]
            y = Tensor::cat(&[y.narrow(2, 0, c - 1), part], 2);
        }
        y
    }
}

/// Razavi et al.'s iteration for `K⁻¹` of lower-triangular `K` `[…, n, n]` (rows softmax
/// weights), from the causal start `Z₀ = I = I/‖K‖_∞`: `Z ← ¼·Z·(13I − KZ(15I − KZ(7I − KZ)))`.
/// Every iterate is a polynomial in `K`, so lower-triangular, and its leading `J × J` block is
/// the iteration on `K`'s leading block.
fn razavi_inverse(k: &Tensor, iters: i64) -> Tensor {
    let n = k.size()[k.dim() - 1];
    let i = Tensor::eye(n, (k.kind(), k.device()));
    let mut z = i.expand_as(k).contiguous();
    for _ in 0..iters {
        let kz = k.matmul(&z);
        let inner = kz.matmul(&(&i * 7.0 - &kz));
        z = (&z * 0.25).matmul(&(&i * 13.0 - kz.matmul(&(&i * 15.0 - inner))));
    }
    z
}

/// The reference of [`razavi_inverse`] applied to `G`: matrices as lists of rows (`[B,H,n]`
/// each), every product written out row by row (`(AB)_i = Σ_k A[i,k] B_k`), then
/// `H_i = Σ_j Z[i,j] G_j` (`G` rows `[B,H,h]`).
fn reference_razavi(k: &[Tensor], g: &[Tensor], iters: i64) -> Vec<Tensor> {
    let n = k.len();
    let mul = |a: &[Tensor], b: &[Tensor]| -> Vec<Tensor> {
        (0..n)
            .map(|i| {
                let mut acc = b[0].zeros_like();
                for (kk, bk) in b.iter().enumerate() {
                    acc = acc + a[i].select(2, kk as i64).unsqueeze(-1) * bk;
                }
                acc
            })
            .collect()
    };
    let unit = |i: usize| {
        let e = k[0].zeros_like();
        let _ = e.narrow(2, i as i64, 1).fill_(1.0);
        e
    };
    // c·I − M, row by row
    let shift = |c: f64, m: &[Tensor]| -> Vec<Tensor> { (0..n).map(|i| unit(i) * c - &m[i]).collect() };
    let mut z: Vec<Tensor> = (0..n).map(unit).collect();
    for _ in 0..iters {
        let kz = mul(k, &z);
        let inner = mul(&kz, &shift(7.0, &kz));
        let outer = mul(&kz, &shift(15.0, &inner));
        let quarter: Vec<Tensor> = z.iter().map(|r| r * 0.25).collect();
        z = mul(&quarter, &shift(13.0, &outer));
    }
    (0..n)
        .map(|i| {
            let mut h = g[0].zeros_like();
            for (j, gj) in g.iter().enumerate() {
                h = h + z[i].select(2, j as i64).unsqueeze(-1) * gj;
            }
            h
        })
        .collect()
}

/// Softmax over the last axis where `allowed` (broadcastable) is true; every row must allow at
/// least one entry.
fn masked_softmax(s: &Tensor, allowed: &Tensor) -> Tensor {
    let s = s.masked_fill(&allowed.logical_not(), f64::NEG_INFINITY);
    s.softmax(-1, s.kind())
}

impl Mixer for Nystromformer {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        use crate::device::{full_precision as f32_, Precision};
        let (q, k, v) = self.qkv(x);
        // landmark kernels and their triangular solve in fp32 under bf16 autocast (no bf16
        // triangular solve on the CPU, and its error would compound)
        let (q, k, v) = (f32_(&q), f32_(&k), f32_(&v));
        let y = Precision::fp32_region(x.device(), || self.landmark_mix(&q, &k, &v));
        let mut y = merge_heads(&y);
        if let Some(w) = self.conv_per_channel() {
            y = y + short_conv(&merge_heads(&v), &w, None);
        }
        self.finish(&y, train)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.qkv(x);
        let (c, sc) = (self.c, self.scale());
        let n = l / c;
        let dot = |a: &Tensor, b: &Tensor| (a * b).sum_dim_intlist([-1i64].as_slice(), false, a.kind()); // [B,H]
        let softmax = |scores: Vec<Tensor>| {
            let s = Tensor::stack(&scores, -1); // [B,H,n]
            let m = s.amax([-1i64].as_slice(), true);
            let e = (s - m).exp();
            &e / e.sum_dim_intlist([-1i64].as_slice(), true, e.kind())
        };
        // segment means by explicit sums
        let mean_of = |t: &Tensor, j: i64| {
            let mut acc = t.select(2, j * c);
            for u in 1..c {
                acc = acc + t.select(2, j * c + u);
            }
            acc / c as f64
        };
        if c == 1 {
            // K1·K2⁻¹ = I: y_t = Σ_{s ≤ t} softmax_s(q_t·k_s/√h) v_s
            let outs: Vec<Tensor> = (0..l)
                .map(|t| {
                    let w = softmax((0..=t).map(|s| dot(&q.select(2, t), &k.select(2, s)) * sc).collect());
                    let mut y = v.select(2, 0).zeros_like();
                    for s in 0..=t {
                        y = y + w.select(2, s).unsqueeze(-1) * v.select(2, s);
                    }
                    y
                })
                .collect();
            let mut y = merge_heads(&Tensor::stack(&outs, 2));
            if let Some(w) = self.conv_per_channel() {
                y = y + short_conv_reference(&merge_heads(&v), &w, None);
            }
            return self.finish(&y, false);
        }
        let ql: Vec<Tensor> = (0..n).map(|j| mean_of(&q, j)).collect();
        let kl: Vec<Tensor> = (0..n).map(|j| mean_of(&k, j)).collect();
        // K2 rows (zero above the diagonal, [B,H,n] each) and G = K3 V rows ([B,H,h] each)
        let (mut k2rows, mut grows): (Vec<Tensor>, Vec<Tensor>) = (vec![], vec![]);
        for i in 0..n {
            let k2 = softmax((0..=i).map(|j| dot(&ql[i as usize], &kl[j as usize]) * sc).collect()); // [B,H,i+1]
            k2rows.push(if i + 1 < n {
                Tensor::cat(&[&k2, &k2.zeros_like().narrow(2, 0, 1).repeat([1, 1, n - i - 1])], 2)
            } else {
                k2
            });
            let end = (i + 1) * c;
            let k3 = softmax((0..end).map(|s| dot(&ql[i as usize], &k.select(2, s)) * sc).collect()); // [B,H,end]
            let mut g = v.select(2, 0).zeros_like();
            for s in 0..end {
                g = g + k3.select(2, s).unsqueeze(-1) * v.select(2, s);
            }
            grows.push(g);
        }
        let hrows = match self.inv_iterations {
            Some(iters) => reference_razavi(&k2rows, &grows, iters),
            None => {
                // forward substitution: H_i = (G_i − Σ_{j<i} K2[i,j] H_j) / K2[i,i]
                let mut h: Vec<Tensor> = Vec::with_capacity(n as usize);
                for i in 0..n as usize {
                    let mut g = grows[i].shallow_clone();
                    for j in 0..i {
                        g = g - k2rows[i].select(2, j as i64).unsqueeze(-1) * &h[j];
                    }
                    h.push(g / k2rows[i].select(2, i as i64).unsqueeze(-1));
                }
                h
            }
        };
        let mut outs = Vec::with_capacity(l as usize);
        for t in 0..l {
            let jt = (t + 1) / c;
            if jt == 0 {
                outs.push(v.select(2, 0).zeros_like());
                continue;
            }
            let k1 = softmax((0..jt).map(|j| dot(&q.select(2, t), &kl[j as usize]) * sc).collect());
            let mut y = v.select(2, 0).zeros_like();
            for j in 0..jt {
                y = y + k1.select(2, j).unsqueeze(-1) * &hrows[j as usize];
            }
            outs.push(y);
        }
        let mut y = merge_heads(&Tensor::stack(&outs, 2));
        if let Some(w) = self.conv_per_channel() {
            y = y + short_conv_reference(&merge_heads(&v), &w, None);
        }
        self.finish(&y, false)
    }

    /// `[position [B,1], k cache, v cache, query sum of the open segment [B,1,D], landmark keys
    /// [B,J,D], H rows [B,J,D], landmark queries [B,J,D] and G = K3·V rows [B,J,D] (both empty
    /// with the exact solve), conv window [B,K−1,D] (with a conv)]`, heads merged.
    fn init_state(&self, batch: i64) -> MixerState {
        let (d, opts) = (self.d, self.opts());
        let e = Tensor::zeros([batch, 0, d], opts);
        let mut t = vec![
            Tensor::zeros([batch, 1], (Kind::Int64, opts.1)),
            e.shallow_clone(),
            e.shallow_clone(),
            Tensor::zeros([batch, 1, d], opts),
            e.shallow_clone(),
            e.shallow_clone(),
            e.shallow_clone(),
            e,
        ];
        if self.conv.is_some() {
            t.push(Tensor::zeros([batch, self.taps() - 1, d], opts));
        }
        MixerState::new(t)
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let st = &mut state.tensors;
        let t = st[0].int64_value(&[0, 0]);
        let (q, k, v) = self.qkv(&x_t.unsqueeze(1)); // [B,H,1,h]
        let (qm, km, vm) = (merge_heads(&q), merge_heads(&k), merge_heads(&v)); // [B,1,D]
        st[1] = Tensor::cat(&[&st[1], &km], 1);
        st[2] = Tensor::cat(&[&st[2], &vm], 1);
        st[3] = &st[3] + &qm;
        let (hd, sc) = (self.heads, self.scale());
        if self.c == 1 {
            // K1·K2⁻¹ = I: the token's K3 row over the cache is its output (no landmarks, no H)
            let w = (q.matmul(&split_heads(&st[1], hd).transpose(-2, -1)) * sc).softmax(-1, x_t.kind());
            let mut y = merge_heads(&w.matmul(&split_heads(&st[2], hd))).squeeze_dim(1);
            st[3] = st[3].zeros_like();
            if let Some(w) = self.conv_per_channel() {
                y = y + fir_step(&mut st[CONV], &vm.squeeze_dim(1), &w, None);
            }
            st[0] = &st[0] + 1i64;
            return self.finish(&y, false);
        }
        if (t + 1) % self.c == 0 {
            // segment j = t / c completes: its landmarks, K2 row, K3 row and H row
            let ql = split_heads(&(&st[3] / self.c as f64), hd); // [B,H,1,h]
            let kseg = st[1].narrow(1, t + 1 - self.c, self.c).mean_dim([1i64].as_slice(), true, x_t.kind());
            let lk = Tensor::cat(&[&st[4], &kseg], 1); // [B,J,D]
            let lkh = split_heads(&lk, hd);
            let k3 = (ql.matmul(&split_heads(&st[1], hd).transpose(-2, -1)) * sc).softmax(-1, x_t.kind());
            let g = k3.matmul(&split_heads(&st[2], hd)); // [B,H,1,h]
            let jn = lk.size()[1];
            let hrow = match self.inv_iterations {
                Some(iters) => {
                    // the leading J × J block of K2 again, its inverse's last row times G
                    let lq = Tensor::cat(&[&st[6], &(&st[3] / self.c as f64)], 1); // [B,J,D]
                    st[7] = Tensor::cat(&[&st[7], &merge_heads(&g)], 1);
                    let j = Tensor::arange(jn, (Kind::Int64, x_t.device()));
                    let k2 = masked_softmax(
                        &(split_heads(&lq, hd).matmul(&lkh.transpose(-2, -1)) * sc),
                        &j.unsqueeze(1).ge_tensor(&j.unsqueeze(0)),
                    );
                    st[6] = lq;
                    razavi_inverse(&k2, iters).narrow(-2, jn - 1, 1).matmul(&split_heads(&st[7], hd))
                }
                None => {
                    let k2 = (ql.matmul(&lkh.transpose(-2, -1)) * sc).softmax(-1, x_t.kind()); // [B,H,1,J]
                    let prev = split_heads(&st[5], hd); // [B,H,J−1,h]
                    let num = g - k2.narrow(-1, 0, jn - 1).matmul(&prev);
                    num / k2.narrow(-1, jn - 1, 1)
                }
            };
            st[4] = lk;
            st[5] = Tensor::cat(&[&st[5], &merge_heads(&hrow)], 1);
            st[3] = st[3].zeros_like();
        }
        let jn = st[4].size()[1];
        let mut y = if jn > 0 {
            let k1 = (q.matmul(&split_heads(&st[4], hd).transpose(-2, -1)) * sc).softmax(-1, x_t.kind());
            merge_heads(&k1.matmul(&split_heads(&st[5], hd))).squeeze_dim(1)
        } else {
            x_t.zeros_like()
        };
        if let Some(w) = self.conv_per_channel() {
            y = y + fir_step(&mut st[CONV], &vm.squeeze_dim(1), &w, None);
        }
        st[0] = &st[0] + 1i64;
        self.finish(&y, false)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        let d = self.d;
        let conv = if self.conv.is_some() { (self.taps() - 1) * d } else { 0 };
        // landmark keys and H rows; with the Razavi inverse also landmark queries and G rows
        let per = if self.inv_iterations.is_some() { 4 } else { 2 };
        let landmarks = if self.c == 1 { 0 } else { per * d * (seq_len / self.c) };
        1 + 2 * d * seq_len + d + landmarks + conv
    }

    /// Zoology's `NystromAttention.state_size`: `2 · d_model · num_landmarks`.
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(2 * self.d * self.num_landmarks)
    }

    fn flops(&self, seq_len: i64) -> MixerFlops {
        let (d, l, c) = (self.d as f64, seq_len as f64, self.c);
        let tok = self.wqkv.flops() + self.out.flops() + crate::flops::fir(self.d, self.taps());
        if c == 1 {
            // causal softmax attention, priced as `attention` prices it (4·L²·d, 4·d·t per step)
            return MixerFlops::stepwise(l * tok + 4.0 * l * l * d, 0.0, seq_len, |t| tok + 4.0 * d * t as f64);
        }
        let n = (seq_len / c) as f64;
        // K2⁻¹·G: the exact solve, or per head 4 n × n products per iteration and Z·G
        let inverse = |n: f64| match self.inv_iterations {
            Some(it) => self.heads as f64 * 8.0 * it as f64 * n * n * n + 2.0 * d * n * n,
            None => d * n * (n - 1.0),
        };
        let landmarks = if n > 0.0 {
            4.0 * d * n * (l - c as f64 + 1.0) + 2.0 * d * n * n + 4.0 * d * n * l + inverse(n)
        } else {
            0.0
        };
        MixerFlops::stepwise(l * tok + landmarks, 0.0, seq_len, |ctx| {
            let j = (ctx / c) as f64;
            // a completed segment: its K2 row (exact) or K2's leading block, its inverse and one
            // row of Z·G (Razavi); its K3 row over the cache and K3·V
            let k2_inv = match self.inv_iterations {
                Some(it) => 2.0 * d * j * j + self.heads as f64 * 8.0 * it as f64 * j * j * j + 2.0 * d * j,
                None => 2.0 * d * j + 2.0 * d * (j - 1.0),
            };
            let done = if ctx % c == 0 { k2_inv + 4.0 * d * ctx as f64 } else { 0.0 };
            tok + 4.0 * d * j + done
        })
    }
}

/// Index of the conv window in the step state ([`Mixer::init_state`]).
const CONV: usize = 8;

/// Largest accepted landmark count, segment length and conv taps.
const MAX_LANDMARKS: i64 = 1 << 16;
const MAX_TAPS: i64 = 1024;
const MAX_ITERATIONS: i64 = 64;

impl MixerKind for Nystromformer {
    type Config = NystromformerConfig;
    const NAME: &'static str = "nystromformer";
    const ABOUT: &'static str = "Nyströmformer, causal: segment-mean landmarks of complete past segments, triangular landmark kernel inverted by Razavi's iteration from a causal start (or solved exactly), optional causal conv skip on V";
    const STATE_FORMULA: &'static str =
        "1 + 2·d·L + d + 4·d·⌊L/c⌋ (2·d·⌊L/c⌋ with the exact solve; 0 for c = 1) (+ (K−1)·d with the conv) (KV cache, landmark keys and queries, G and H rows)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &NystromformerConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must be ≥ 1 and divide d_model = {d} (got {})", c.num_heads),
            ));
        }
        int_in(field, "num_landmarks", c.num_landmarks, 1, MAX_LANDMARKS, "64")?;
        int_in(field, "segment_size", c.segment_size, 0, MAX_LANDMARKS, "0 (from num_landmarks) or 4")?;
        int_in(field, "conv_kernel_size", c.conv_kernel_size, 0, MAX_TAPS, "0 (none) or 33")?;
        int_in(field, "inv_iterations", c.inv_iterations, 1, MAX_ITERATIONS, "6")?;
        if !(0.0..1.0).contains(&c.dropout) {
            return Err(config_err(format!("{field}.dropout"), format!("must be in [0, 1) (got {})", c.dropout)));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &NystromformerConfig, ctx: &BuildCtx) -> Result<Self> {
        let k = c.conv_kernel_size;
        let bound = 1.0 / (k.max(1) as f64).sqrt();
        Ok(Nystromformer {
            wqkv: Linear::new(&p / "wqkv", d, 3 * d, false, ctx.init_std),
            out: Linear::new(&p / "out_proj", d, d, false, ctx.out_std),
            conv: (k > 0)
                .then(|| (&p / "conv").var("weight", &[c.num_heads, k], nn::Init::Uniform { lo: -bound, up: bound })),
            heads: c.num_heads,
            d,
            c: c.segment(ctx.max_seq_len),
            dropout: c.dropout,
            num_landmarks: c.num_landmarks,
            inv_iterations: c.use_razavi_pinverse.then_some(c.inv_iterations),
        })
    }

    fn suite_variants() -> Vec<NystromformerConfig> {
        vec![
            NystromformerConfig::default(),
            NystromformerConfig { num_landmarks: 12, ..Default::default() },
            NystromformerConfig { segment_size: 3, num_heads: 2, conv_kernel_size: 4, ..Default::default() },
            // segment ends at both 40 and 64: the flops test compares the decode step at those two
            // contexts, and a step that closes a segment costs 4·d·L more than one that does not
            NystromformerConfig { segment_size: 8, conv_kernel_size: 1, ..Default::default() },
            // the exact triangular solve instead of the Razavi iteration
            NystromformerConfig {
                segment_size: 3,
                num_heads: 2,
                use_razavi_pinverse: false,
                conv_kernel_size: 4,
                ..Default::default()
            },
            NystromformerConfig {
                num_landmarks: 12,
                use_razavi_pinverse: false,
                inv_iterations: 2,
                ..Default::default()
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::attention::{Attention, AttentionConfig};
    use super::super::testing::{rel_err, seeded, validate_error};
    use super::*;
    use tch::Device;

    fn build(c: &NystromformerConfig, max_len: i64) -> (nn::VarStore, Nystromformer) {
        seeded(0, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = Nystromformer::build(vs.root(), 8, c, &BuildCtx::new(0, 2, max_len)).unwrap();
            (vs, m)
        })
    }

    /// With one token per segment (num_landmarks ≥ max_seq_len) the causal Nyström form is
    /// exactly causal softmax attention (same q, k, v weights, no biases).
    #[test]
    fn one_token_segments_give_causal_attention() {
        let (_vs, m) = build(&NystromformerConfig::default(), 32); // c = ⌈32/64⌉ = 1
        assert_eq!(m.c, 1);
        let (_va, a) = seeded(0, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let a = Attention::build(vs.root(), 8, &AttentionConfig::default(), &BuildCtx::new(0, 2, 32)).unwrap();
            (vs, a)
        });
        // same seed, same draws in the same order (Attention's zero biases draw nothing)
        let x = seeded(4, || Tensor::randn([2, 19, 8], (Kind::Float, Device::Cpu)));
        let e = rel_err(&tch::no_grad(|| m.forward(&x, false)), &tch::no_grad(|| a.forward(&x, false)));
        assert!(e < 1e-5, "rel err {e}");
    }

    /// The mixer built from `c` with every weight multiplied by `factor`, an input `[2, 24, 8]`,
    /// and its forward output (and the var store, which owns the weights).
    fn sharpened(c: &NystromformerConfig, max_len: i64, factor: f64) -> (Nystromformer, Tensor, Tensor, nn::VarStore) {
        let (vs, m) = build(c, max_len);
        tch::no_grad(|| {
            for (_, w) in vs.variables() {
                let _ = w.shallow_clone().g_mul_scalar_(factor);
            }
        });
        let x = seeded(5, || Tensor::randn([2, 24, 8], (Kind::Float, Device::Cpu)));
        let y = tch::no_grad(|| m.forward(&x, false));
        (m, x, y, vs)
    }

    /// Forward output `y`, the reference and the step form of `m` on `x` are finite and agree.
    fn check_forms(m: &Nystromformer, x: &Tensor, y: &Tensor) {
        let r = tch::no_grad(|| m.reference(x));
        let mut st = m.init_state(2);
        let s: Vec<Tensor> = (0..24).map(|t| tch::no_grad(|| m.step(&mut st, &x.select(1, t)))).collect();
        let s = Tensor::stack(&s, 1);
        for (name, t) in [("forward", y), ("reference", &r), ("step", &s)] {
            assert!(t.isfinite().all().int64_value(&[]) == 1, "{name} output not finite");
        }
        assert!(rel_err(y, &r) < 1e-4, "forward vs reference {}", rel_err(y, &r));
        assert!(rel_err(&s, &r) < 1e-4, "step vs reference {}", rel_err(&s, &r));
    }

    /// Sharp attention with one token per segment (c = 1) stays finite in every form: the
    /// substitution through `K2⁻¹` divides by diagonal softmax weights near 0 and overflowed
    /// (the zoo's nystromformer run at L = 16, d = 32 diverged to NaN at step 336).
    #[test]
    fn sharp_one_token_segments_stay_finite() {
        let (m, x, y, _vs) = sharpened(&NystromformerConfig::default(), 32, 40.0);
        check_forms(&m, &x, &y);
        // the weights are sharp enough that the old route through K2⁻¹ overflows
        let (q, k, _) = m.qkv(&x);
        let k2 = masked_softmax(
            &(q.matmul(&k.transpose(-2, -1)) * m.scale()),
            &Tensor::ones([24, 24], (Kind::Bool, Device::Cpu)).tril(0),
        );
        let tiny = k2.diagonal(0, -2, -1).min().double_value(&[]);
        assert!(tiny < 1e-6, "test not sharp enough: smallest K2 diagonal {tiny}");
    }

    /// The causal Razavi iteration converges to the exact inverse: at ordinary weights, 20
    /// iterations agree with the triangular solve, and 6 (the default) are already close.
    #[test]
    fn razavi_iteration_converges_to_the_exact_solve() {
        let cfg = |razavi: bool, it: i64| NystromformerConfig {
            segment_size: 4,
            use_razavi_pinverse: razavi,
            inv_iterations: it,
            ..Default::default()
        };
        let x = seeded(6, || Tensor::randn([2, 24, 8], (Kind::Float, Device::Cpu)));
        let y = |c: &NystromformerConfig| tch::no_grad(|| build(c, 48).1.forward(&x, false));
        let exact = y(&cfg(false, 6));
        let e20 = rel_err(&y(&cfg(true, 20)), &exact);
        let e6 = rel_err(&y(&cfg(true, 6)), &exact);
        let e1 = rel_err(&y(&cfg(true, 1)), &exact);
        assert!(e20 < 1e-4, "20 iterations: rel err {e20}");
        assert!(e6 < 1e-2 && e6 < e1, "6 iterations: rel err {e6} (1 iteration: {e1})");
    }

    /// Sharp attention with several tokens per segment: the exact solve divides by `K2`
    /// diagonals near 0 and blows up (the zoo's nystromformer_m8 run at L = 32, d = 256 diverged
    /// so), while the Razavi iterate stays bounded in every form, and the forms agree.
    #[test]
    fn sharp_landmarks_stay_bounded_with_the_razavi_inverse() {
        let run = |razavi: bool| {
            let c = NystromformerConfig { segment_size: 3, use_razavi_pinverse: razavi, ..Default::default() };
            sharpened(&c, 48, 100.0)
        };
        let (m, x, y, _vs) = run(true);
        check_forms(&m, &x, &y);
        // sharp enough: K2's smallest diagonal is tiny, and the exact solve's output explodes
        let (q, k, _) = m.qkv(&x);
        let seg = |t: &Tensor| t.view([2, 1, 8, 3, 8]).mean_dim([3i64].as_slice(), false, Kind::Float);
        let k2 = masked_softmax(
            &(seg(&q).matmul(&seg(&k).transpose(-2, -1)) * m.scale()),
            &Tensor::ones([8, 8], (Kind::Bool, Device::Cpu)).tril(0),
        );
        let tiny = k2.diagonal(0, -2, -1).min().double_value(&[]);
        assert!(tiny < 1e-6, "test not sharp enough: smallest K2 diagonal {tiny}");
        let (_, _, exact, _) = run(false);
        let big = exact.abs().max().double_value(&[]);
        let bounded = y.abs().max().double_value(&[]);
        assert!(!big.is_finite() || big > 1e3 * bounded, "exact solve {big} vs Razavi {bounded}");
    }

    /// The segment length follows max_seq_len / num_landmarks (or segment_size); landmarks
    /// are used only once their segment is complete: perturbing a token moves no output before
    /// it, and a query inside a segment is not moved by later tokens of the same segment.
    #[test]
    fn segments_and_landmark_visibility() {
        assert_eq!(build(&NystromformerConfig { num_landmarks: 8, ..Default::default() }, 48).1.c, 6);
        assert_eq!(build(&NystromformerConfig { num_landmarks: 7, ..Default::default() }, 48).1.c, 7);
        assert_eq!(build(&NystromformerConfig { segment_size: 3, ..Default::default() }, 48).1.c, 3);
        let (_vs, m) = build(&NystromformerConfig { segment_size: 4, ..Default::default() }, 48);
        let x = seeded(8, || Tensor::randn([1, 16, 8], (Kind::Float, Device::Cpu)));
        let y = tch::no_grad(|| m.forward(&x, false));
        // positions 0..2 see no landmark and there is no conv: output is the zero vector
        assert_eq!(y.narrow(1, 0, 3).abs().max().double_value(&[]), 0.0);
        assert!(y.select(1, 3).abs().max().double_value(&[]) > 0.0);
        // token 5 changes: outputs 0..=4 fixed, 5 and 6 (inside segment 1, before it completes) fixed,
        // output 7 (segment 1 complete) moves
        let x2 = x.copy();
        let _ = x2.narrow(1, 5, 1).g_add_(&Tensor::ones([1, 1, 8], (Kind::Float, Device::Cpu)));
        let y2 = tch::no_grad(|| m.forward(&x2, false));
        let diff = |t: i64| (y.select(1, t) - y2.select(1, t)).abs().max().double_value(&[]);
        for t in 0..7 {
            assert_eq!(diff(t), 0.0, "output {t} moved");
        }
        assert!(diff(7) > 0.0, "output 7 should see segment 1's landmark");
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert!(
            validate_error(r#"{ name = "nystromformer", num_landmarks = 0 }"#).contains("model.mixer.num_landmarks")
        );
        assert!(validate_error(r#"{ name = "nystromformer", segment_size = -1 }"#).contains("model.mixer.segment_size"));
        assert!(validate_error(r#"{ name = "nystromformer", conv_kernel_size = -3 }"#)
            .contains("model.mixer.conv_kernel_size"));
        assert!(validate_error(r#"{ name = "nystromformer", num_heads = 3 }"#).contains("model.mixer.num_heads"));
        assert!(
            validate_error(r#"{ name = "nystromformer", inv_iterations = 0 }"#).contains("model.mixer.inv_iterations")
        );
        // Zoology's non-causal start Z₀ = Kᵀ/‖K‖ has no causal counterpart to choose
        assert!(validate_error(r#"{ name = "nystromformer", pinverse_original_init = true }"#)
            .contains("pinverse_original_init"));
    }
}
