//! `native_sparse_attention`: DeepSeek's Native Sparse Attention (Yuan et al. 2025, NSA) as
//! Zoology's `zoology/mixers/deepseek_nsa.py` (`SparseAttention`, after lucidrains'
//! native-sparse-attention-pytorch) builds it, made causal in all three branches.
//!
//! With `H` heads of width `h = d/H`, block size `b` (`compress_block_size` =
//! `selection_block_size`), `n` selected blocks, window `w`, `m` memory slots:
//!
//! ```text
//! u = RMSNorm(x) (norm = true),   [q, k, v] = u W_qkvᵀ (no bias), per head, scale 1/√h
//! compressed keys/values of the full blocks j = 0 … ⌊L/b⌋−1 (an MLP shared by the heads):
//!   K̃_j = W₂ relu(W₁ vec(k_{jb … jb+b−1} + P_k) + c₁) + c₂,   Ṽ_j likewise with P_v and its own MLP
//! 1. compressed:  c_t = softmax_j(q_t·[M_k; K̃_j]/√h) [M_v; Ṽ_j]  over the m memory slots and the
//!                 blocks that end before t:  (j+1)·b ≤ t
//! 2. selected:    S_t = the n visible blocks with the largest q_t·K̃_j (ties: earlier block);
//!                 f_t = softmax_s(q̂_t·k̂_s/√h) v_s  over s in the blocks of S_t and in t's own
//!                 block up to t
//! 3. window:      s_t = softmax_s(q̂_t·k̂_s/√h) v_s  over t−w ≤ s ≤ t
//! y_t = W_o concat_heads(γ¹_t c_t + γ²_t f_t + γ³_t s_t),   γ_t = σ(W_γ u_t + b_γ)  (3 per head)
//! ```
//! `q̂, k̂` are q, k rotated by their position (RoPE, base `rope_base` = 10000; the compressed
//! branch uses unrotated q and keys, as the source). The memory slots `M_k, M_v`, the intrablock
//! positions `P_k, P_v` (per head) are parameters.
//!
//! Where this departs from the source (DECISIONS, "Native sparse attention"):
//! - The sliding window is causal, `t−w ≤ s ≤ t` (w + 1 keys: what lucidrains' `LocalAttention`
//!   keeps with `causal = True, exact_windowsize = True`); the source builds it with
//!   `causal = False` (keys up to `t + w`), so its outputs read the future.
//! - Any L: the source asserts L is a multiple of the block size; here only full blocks are
//!   compressed and the last, partial block is always t's own block.
//! - A visible block whose importance softmax is below 1e-10 is still selectable (the source's
//!   `fmask` threshold drops it; its role, masking blocks that are not visible, is kept).
//! - Ties in `q_t·K̃_j` go to the earlier block (torch.topk leaves them unspecified); the
//!   ranking is computed in f64 in every form, so the forms select the same blocks.
//! - RoPE in the rotate-half layout (the source's rotary_embedding_torch rotates interleaved
//!   pairs: the same map up to a fixed permutation of q/k channels).
//! - Not carried over: grouped KV heads (`kv_heads`, default = heads), Triton kernels,
//!   `num_selected_blocks = 0` (the source then runs full causal attention in branch 2).
//! - Init as Zoology's `_init_weights` leaves it: every Linear N(0, 0.02), zero bias, so the
//!   branch gates start at σ(≈0) ≈ 0.5 (the source's own init, zero weight and bias
//!   [−2, −2, 2], is overwritten by Zoology's model init); memory slots and intrablock
//!   positions 0; RMSNorm weight 1 (eps = f32 machine epsilon, nn.RMSNorm's default).
//!
//! Forms: parallel (compressed attention as one masked `[L, m + ⌊L/b⌋]` score matrix; the
//! selection by a stable descending sort of the masked f64 scores; for L ≤ 512
//! (`DENSE_MAX_LEN`) branches 2 and 3 as masked dense attention over one shared `[L, L]` score
//! matrix, the selected blocks scattered into a block mask; for longer L the selected blocks
//! and the own block gathered per query, `(n' + 1)·b` keys, n' = min(n, ⌊L/b⌋), and the window
//! as an unfolded band of w + 1 keys); reference (per position: explicit softmaxes over the
//! visible blocks, ranks by counting, a dense mask over the keys `0 ..= t` for branch 2, the window by
//! slicing; compression block by block; rotations by `rope_reference`); recurrent (below).
//!
//! State (what `step` carries): the selected blocks can lie anywhere in the past, so decoding
//! keeps the **whole KV cache** (unrotated keys and values, `2·d·L`; rotations are recomputed)
//! **plus the compressed keys and values** of the completed blocks (`2·d·⌊L/b⌋`):
//! `2·d·(L + ⌊L/b⌋)` elements after L tokens. A block is compressed by the step that completes
//! it. Zoology's `state_size()` counts compressed + window + selected blocks,
//! `2·d·(⌊L/b⌋ + w + b·n)` (`state_size_zoology`), which is what a decoder would need only if
//! it could fetch the selected blocks from elsewhere.
//!
//! FLOPs ([`crate::flops`] convention; `e_h = ⌊expand·b·h⌋` hidden units of the compression MLP):
//! per token projections `2·d·3d + 2·d² + 2·d·3H`; compression `2·H·⌊L/b⌋·(2·b·h·e_h + 2·e_h·h)`
//! (keys and values); compressed attention `4·L·(m + ⌊L/b⌋)·d` (the masked matrix in full);
//! selection scores `2·L·⌊L/b⌋·d` (when n' > 0); branches 2 and 3: for L ≤ 512 the shared
//! scores and two value mixes in full, `6·L²·d`, otherwise selected + own blocks
//! `4·L·(n' + 1)·b·d` and window `4·L·(w + 1)·d`. Decode at context L (position p = L−1,
//! V = ⌊p/b⌋ visible blocks, n'' = min(n, V)): projections, `4·(m + V)·d`, `2·V·d` when n'' > 0,
//! `4·(n''·b + p mod b + 1)·d`, `4·min(w + 1, L)·d`, and when L is a multiple of b the
//! compression of the block just completed, `2·H·(2·b·h·e_h + 2·e_h·h)`. Prefill is the step
//! form.

use super::attention::Attention;
use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::layers::{merge_heads, rms_norm, rope, rope_reference, split_heads, Linear};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use crate::flops::MixerFlops;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// Longest L at which the fast form computes branches 2 and 3 as masked dense `[L, L]`
/// attention ([`NativeSparseAttention::fine_window_dense`]); longer sequences gather the keys
/// per query. Measured (PERFORMANCE, issue 20; one thread, fwd + bwd of the two branches,
/// B·H = 32): dense 0.48× the gathers' time at L = 512, 0.77× at L = 1024; 512 keeps the
/// `[B, H, L, L]` scores small and every L ≥ 1024 on the gathers' linear cost.
const DENSE_MAX_LEN: i64 = 512;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeSparseAttentionConfig {
    /// Heads (must divide d_model, even head width for RoPE; Zoology's configs: 2).
    pub num_heads: i64,
    /// Window w of branch 3: t sees t−w ..= t (Zoology's configs: 16).
    pub sliding_window_size: i64,
    /// Tokens per compressed block (Zoology's configs: 8).
    pub compress_block_size: i64,
    /// Tokens per selectable block; must equal `compress_block_size` (as the source asserts).
    pub selection_block_size: i64,
    /// Blocks each query selects (Zoology's configs: 4).
    pub num_selected_blocks: i64,
    /// Learned memory key/value slots of the compressed branch (source default 1).
    pub num_compressed_mem_kv: i64,
    /// Hidden width of the compression MLPs as a multiple of b·h (source default 1).
    pub compress_mlp_expand_factor: f64,
    /// RMSNorm on the input (source default true).
    pub norm: bool,
    /// RoPE base of branches 2 and 3 (rotary_embedding_torch's default 10000).
    pub rope_base: f64,
}

impl Default for NativeSparseAttentionConfig {
    fn default() -> Self {
        NativeSparseAttentionConfig {
            num_heads: 2,
            sliding_window_size: 16,
            compress_block_size: 8,
            selection_block_size: 8,
            num_selected_blocks: 4,
            num_compressed_mem_kv: 1,
            compress_mlp_expand_factor: 1.0,
            norm: true,
            rope_base: 10000.0,
        }
    }
}

impl NativeSparseAttentionConfig {
    fn hidden(&self, d: i64) -> i64 {
        let h = d / self.num_heads.max(1);
        (self.compress_mlp_expand_factor * (self.compress_block_size * h) as f64).floor() as i64
    }
}

#[derive(Debug)]
pub struct NativeSparseAttention {
    norm_w: Option<Tensor>,
    to_qkv: Linear,
    /// `[2, H, m, h]`: memory keys and values of the compressed branch.
    mem_kv: Tensor,
    /// `[H, b, h]` each.
    k_pos: Tensor,
    v_pos: Tensor,
    k_compress: (Linear, Linear),
    v_compress: (Linear, Linear),
    combine: Linear,
    out: Linear,
    heads: i64,
    d: i64,
    dh: i64,
    hidden: i64,
    b: i64,
    n: i64,
    w: i64,
    m: i64,
    base: f64,
}

impl NativeSparseAttention {
    fn scale(&self) -> f64 {
        1.0 / (self.dh as f64).sqrt()
    }

    fn normed(&self, x: &Tensor) -> Tensor {
        match &self.norm_w {
            Some(w) => rms_norm(x, w, f32::EPSILON as f64),
            None => x.shallow_clone(),
        }
    }

    /// `(q, k, v)`, each `[B, H, L, h]`, unrotated.
    fn qkv(&self, u: &Tensor) -> (Tensor, Tensor, Tensor) {
        let p = self.to_qkv.forward(u).chunk(3, -1);
        (split_heads(&p[0], self.heads), split_heads(&p[1], self.heads), split_heads(&p[2], self.heads))
    }

    /// Memory keys and values `[B, H, m, h]`.
    fn memory(&self, batch: i64) -> (Tensor, Tensor) {
        let e = |i: i64| self.mem_kv.get(i).unsqueeze(0).expand([batch, self.heads, self.m, self.dh], false);
        (e(0), e(1))
    }

    /// Compressed keys and values of the first `nb` full blocks of `k, v: [B, H, ≥ nb·b, h]`,
    /// all blocks through one batched MLP: `[B, H, nb, h]` each.
    fn compress_blocks(&self, k: &Tensor, v: &Tensor, nb: i64) -> (Tensor, Tensor) {
        let (bsz, heads, _, dh) = k.size4().unwrap();
        let c = |t: &Tensor, pos: &Tensor, mlp: &(Linear, Linear)| {
            let blocks = t.narrow(2, 0, nb * self.b).reshape([bsz, heads, nb, self.b, dh]) + pos.unsqueeze(1);
            mlp.1.forward(&mlp.0.forward(&blocks.reshape([bsz, heads, nb, self.b * dh])).relu())
        };
        (c(k, &self.k_pos, &self.k_compress), c(v, &self.v_pos, &self.v_compress))
    }

    /// The same, one block at a time (reference).
    fn compress_reference(&self, k: &Tensor, v: &Tensor, nb: i64) -> (Tensor, Tensor) {
        let (bsz, heads, _, dh) = k.size4().unwrap();
        let one = |t: &Tensor, pos: &Tensor, mlp: &(Linear, Linear), j: i64| {
            let blk = (t.narrow(2, j * self.b, self.b) + pos).reshape([bsz, heads, self.b * dh]);
            let hid = mlp.0.forward(&blk);
            mlp.1.forward(&hid.maximum(&hid.zeros_like()))
        };
        let ks: Vec<Tensor> = (0..nb).map(|j| one(k, &self.k_pos, &self.k_compress, j)).collect();
        let vs: Vec<Tensor> = (0..nb).map(|j| one(v, &self.v_pos, &self.v_compress, j)).collect();
        (Tensor::stack(&ks, 2), Tensor::stack(&vs, 2))
    }

    /// Branch gates `[B, H, L, 3]` (compressed, selected, window).
    fn gates(&self, u: &Tensor) -> Tensor {
        let (bsz, l, _) = u.size3().unwrap();
        self.combine.forward(u).sigmoid().view([bsz, l, self.heads, 3]).permute([0, 2, 1, 3])
    }

    fn mix_gates(g: &Tensor, c: &Tensor, f: &Tensor, s: &Tensor) -> Tensor {
        let gi = |i: i64| g.select(-1, i).unsqueeze(-1);
        c * gi(0) + f * gi(1) + s * gi(2)
    }

    /// `visible[t, j]`: block j ends before t, `(j + 1)·b ≤ t`. `[L, nb]`.
    fn visible(&self, l: i64, nb: i64, dev: Device) -> Tensor {
        let t = Tensor::arange(l, (Kind::Int64, dev)).view([l, 1]);
        let end = (Tensor::arange(nb, (Kind::Int64, dev)).view([1, nb]) + 1) * self.b;
        end.le_tensor(&t)
    }

    /// Indices `[B, H, L, n']` of the selected blocks and whether each slot is a visible block
    /// (fast form: a stable descending sort of the f64 scores, invisible blocks at −∞).
    fn select_blocks(&self, q: &Tensor, ck: &Tensor, vis: &Tensor, n_eff: i64) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let s = q.to_kind(Kind::Double).matmul(&ck.to_kind(Kind::Double).transpose(-2, -1));
            let s = s.masked_fill(&vis.logical_not(), f64::NEG_INFINITY);
            let order = s.argsort_stable(true, -1, true).narrow(-1, 0, n_eff);
            let ok = vis.expand(s.size(), false).gather(-1, &order, false);
            (order, ok)
        })
    }

    /// Branch 2, fast form: each query attends to the gathered keys of its selected blocks and
    /// of its own block.
    #[allow(clippy::too_many_arguments)]
    fn fine_fast(&self, q: &Tensor, ck: Option<&Tensor>, qr: &Tensor, kr: &Tensor, v: &Tensor, vis: &Tensor) -> Tensor {
        let (bsz, heads, l, dh) = q.size4().unwrap();
        let (b, dev) = (self.b, q.device());
        let nbp = (l + b - 1) / b;
        let pad = |t: &Tensor| {
            let t = if nbp * b > l {
                Tensor::cat(&[t, &Tensor::zeros([bsz, heads, nbp * b - l, dh], (t.kind(), dev))], 2)
            } else {
                t.shallow_clone()
            };
            t.reshape([bsz, heads, nbp, b, dh])
        };
        let (kb, vb) = (pad(kr), pad(v));
        let ar = Tensor::arange(l, (Kind::Int64, dev));
        let own = ar.floor_divide_scalar(b).view([1, 1, l, 1]).expand([bsz, heads, l, 1], false);
        let own_ok = Tensor::arange(b, (Kind::Int64, dev)).view([1, b]).le_tensor(&ar.remainder(b).view([l, 1])); // [L, b]
        let own_ok = own_ok.view([1, 1, l, 1, b]).expand([bsz, heads, l, 1, b], false);
        let n_eff = match ck {
            Some(ck) => self.n.min(ck.size()[2]),
            None => 0,
        };
        let (idx, ok) = if n_eff > 0 {
            let (order, ok) = self.select_blocks(q, ck.unwrap(), vis, n_eff);
            let ok = ok.unsqueeze(-1).expand([bsz, heads, l, n_eff, b], false);
            (Tensor::cat(&[order, own], -1), Tensor::cat(&[ok, own_ok], 3))
        } else {
            (own, own_ok)
        };
        let slots = n_eff + 1;
        let bi = Tensor::arange(bsz, (Kind::Int64, dev)).view([bsz, 1, 1, 1]);
        let hi = Tensor::arange(heads, (Kind::Int64, dev)).view([1, heads, 1, 1]);
        let gather = |t: &Tensor| {
            t.index(&[Some(bi.shallow_clone()), Some(hi.shallow_clone()), Some(idx.shallow_clone())]).view([
                bsz,
                heads,
                l,
                slots * b,
                dh,
            ])
        };
        let (keys, vals) = (gather(&kb), gather(&vb));
        let s = qr.unsqueeze(-2).matmul(&keys.transpose(-2, -1)) * self.scale(); // [B,H,L,1,S]
        let mask = ok.reshape([bsz, heads, l, 1, slots * b]);
        let a = s.masked_fill(&mask.logical_not(), f64::NEG_INFINITY).softmax(-1, s.kind());
        a.matmul(&vals).squeeze_dim(-2)
    }

    /// Branches 2 and 3, dense form (for L ≤ [`DENSE_MAX_LEN`]): one `[L, L]` score matrix of
    /// the rotated q, k shared by both branches, each masked to its keys: branch 2 to the
    /// selected blocks (scattered into a `[L, ⌈L/b⌉]` block mask) and t's own block up to t,
    /// branch 3 to the band `t−w ≤ s ≤ t`. The same keys and softmaxes as
    /// [`Self::fine_fast`] and [`Self::window_fast`], without gathering `(n' + 1)·b` and
    /// `w + 1` keys per query: at short L the dense products are far cheaper than the gathers.
    #[allow(clippy::too_many_arguments)]
    fn fine_window_dense(
        &self,
        q: &Tensor,
        ck: Option<&Tensor>,
        qr: &Tensor,
        kr: &Tensor,
        v: &Tensor,
        vis: &Tensor,
    ) -> (Tensor, Tensor) {
        let (bsz, heads, l, _) = q.size4().unwrap();
        let (b, dev) = (self.b, q.device());
        let pos = Tensor::arange(l, (Kind::Int64, dev));
        let blk = pos.floor_divide_scalar(b); // block of each key
        let (row, col) = (pos.view([l, 1]), pos.view([1, l]));
        let own = blk.view([l, 1]).eq_tensor(&blk.view([1, l])).logical_and(&col.le_tensor(&row)); // [L, L]
        let n_eff = ck.map_or(0, |ck| self.n.min(ck.size()[2]));
        let fine_mask = if n_eff > 0 {
            let (order, ok) = self.select_blocks(q, ck.unwrap(), vis, n_eff);
            let nbp = (l + b - 1) / b;
            let chosen = Tensor::zeros([bsz, heads, l, nbp], (Kind::Bool, dev)).scatter(-1, &order, &ok);
            chosen.index_select(-1, &blk).logical_or(&own)
        } else {
            own
        };
        let lag = row - col; // t − s
        let band = lag.ge(0).logical_and(&lag.le(self.w));
        let s = qr.matmul(&kr.transpose(-2, -1)) * self.scale(); // [B, H, L, L]
        let attend =
            |allowed: &Tensor| s.masked_fill(&allowed.logical_not(), f64::NEG_INFINITY).softmax(-1, s.kind()).matmul(v);
        (attend(&fine_mask), attend(&band))
    }

    /// Branch 3, fast form: the band of w + 1 keys unfolded per query.
    fn window_fast(&self, qr: &Tensor, kr: &Tensor, v: &Tensor) -> Tensor {
        let (bsz, heads, l, dh) = qr.size4().unwrap();
        let (w, dev) = (self.w, qr.device());
        let padded = |t: &Tensor| Tensor::cat(&[&Tensor::zeros([bsz, heads, w, dh], (t.kind(), dev)), t], 2);
        let kw = padded(kr).unfold(2, w + 1, 1); // [B,H,L,h,w+1]
        let vw = padded(v).unfold(2, w + 1, 1).transpose(-2, -1); // [B,H,L,w+1,h]
        let s = qr.unsqueeze(-2).matmul(&kw) * self.scale(); // [B,H,L,1,w+1]

        // key i of query t is position t − w + i
        let pos = Tensor::arange(l, (Kind::Int64, dev)).view([l, 1]) - w
            + Tensor::arange(w + 1, (Kind::Int64, dev)).view([1, w + 1]);
        let valid = pos.ge(0).view([1, 1, l, 1, w + 1]);
        let a = s.masked_fill(&valid.logical_not(), f64::NEG_INFINITY).softmax(-1, s.kind());
        a.matmul(&vw).squeeze_dim(-2)
    }

    /// Compression MLP FLOPs for one block (keys and values, all heads).
    fn compress_flops(&self) -> f64 {
        let (h, e, b) = (self.dh as f64, self.hidden as f64, self.b as f64);
        2.0 * self.heads as f64 * (2.0 * b * h * e + 2.0 * e * h)
    }

    fn token_flops(&self) -> f64 {
        self.to_qkv.flops() + self.out.flops() + self.combine.flops()
    }
}

impl Mixer for NativeSparseAttention {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let (bsz, l, _) = x.size3().unwrap();
        let dev = x.device();
        let u = self.normed(x);
        let (q, k, v) = self.qkv(&u);
        let nb = l / self.b;
        let (mk, mv) = self.memory(bsz);
        let compressed = (nb > 0).then(|| self.compress_blocks(&k, &v, nb));
        let (ckm, cvm) = match &compressed {
            Some((ck, cv)) => (Tensor::cat(&[&mk, ck], 2), Tensor::cat(&[&mv, cv], 2)),
            None => (mk, mv),
        };
        // 1. compressed: memory slots always, blocks once they have ended
        let vis = self.visible(l, nb, dev);
        let allowed = Tensor::cat(&[Tensor::ones([l, self.m], (Kind::Bool, dev)), vis.shallow_clone()], 1);
        let s = q.matmul(&ckm.transpose(-2, -1)) * self.scale();
        let c = s.masked_fill(&allowed.logical_not(), f64::NEG_INFINITY).softmax(-1, s.kind()).matmul(&cvm);
        // 2. selected blocks + own block, 3. window: on rotated q, k
        let (qr, kr) = (rope(&q, 0, self.base), rope(&k, 0, self.base));
        let ck = compressed.as_ref().map(|p| &p.0);
        let (f, sw) = if l <= DENSE_MAX_LEN {
            self.fine_window_dense(&q, ck, &qr, &kr, &v, &vis)
        } else {
            (self.fine_fast(&q, ck, &qr, &kr, &v, &vis), self.window_fast(&qr, &kr, &v))
        };
        let o = Self::mix_gates(&self.gates(&u), &c, &f, &sw);
        self.out.forward(&merge_heads(&o))
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (bsz, l, _) = x.size3().unwrap();
        let (b, dev) = (self.b, x.device());
        let u = self.normed(x);
        let (q, k, v) = self.qkv(&u);
        let nb = l / b;
        let (ck, cv) = if nb > 0 {
            self.compress_reference(&k, &v, nb)
        } else {
            let z = Tensor::zeros([bsz, self.heads, 0, self.dh], (x.kind(), dev));
            (z.shallow_clone(), z)
        };
        let (mk, mv) = self.memory(bsz);
        let (qr, kr) = (rope_reference(&q, 0, self.base), rope_reference(&k, 0, self.base));
        let z = self.combine.forward(&u);
        let g = (z.neg().exp() + 1.0).reciprocal().view([bsz, l, self.heads, 3]); // [B, L, H, 3]
        let dot = |a: &Tensor, keys: &Tensor| (a * keys).sum_dim_intlist([-1i64].as_slice(), false, a.kind());
        let mix =
            |w: &Tensor, vals: &Tensor| (w.unsqueeze(-1) * vals).sum_dim_intlist([2i64].as_slice(), false, w.kind());
        let outs: Vec<Tensor> = (0..l)
            .map(|t| {
                let nv = t / b; // blocks that have ended before t
                let qt = q.narrow(2, t, 1);
                // 1. compressed
                let (ks, vs) = if nv > 0 {
                    (Tensor::cat(&[&mk, &ck.narrow(2, 0, nv)], 2), Tensor::cat(&[&mv, &cv.narrow(2, 0, nv)], 2))
                } else {
                    (mk.shallow_clone(), mv.shallow_clone())
                };
                let c = mix(&Attention::explicit_softmax(&(dot(&qt, &ks) * self.scale())), &vs);
                // 2. selection by counting: rank_j = #{j' : s_j' > s_j} + #{j' < j : s_j' = s_j}
                let own_start = (t / b) * b;
                let mut allowed = vec![];
                if nv > 0 {
                    let sc = dot(&qt.to_kind(Kind::Double), &ck.narrow(2, 0, nv).to_kind(Kind::Double)); // [B,H,V]
                    let (sj, sj2) = (sc.unsqueeze(-1), sc.unsqueeze(-2)); // [.., j, 1], [.., 1, j']
                    let before = Tensor::ones([nv, nv], (Kind::Bool, dev)).tril(-1); // j' < j
                    let ahead = sj2.gt_tensor(&sj).logical_or(&sj2.eq_tensor(&sj).logical_and(&before));
                    let rank = ahead.sum_dim_intlist([-1i64].as_slice(), false, Kind::Int64); // [B,H,V]
                    let sel = rank.lt(self.n);
                    for j in 0..nv {
                        allowed.push(sel.narrow(-1, j, 1).expand([bsz, self.heads, b], false));
                    }
                }
                // keys between the visible blocks and the own block (none: own_start = nv·b)
                allowed.push(Tensor::ones([bsz, self.heads, t - own_start + 1], (Kind::Bool, dev)));
                let allowed = Tensor::cat(&allowed, -1); // [B, H, t+1]
                let qrt = qr.narrow(2, t, 1);
                let sf = (dot(&qrt, &kr.narrow(2, 0, t + 1)) * self.scale())
                    .masked_fill(&allowed.logical_not(), f64::NEG_INFINITY);
                let f = mix(&Attention::explicit_softmax(&sf), &v.narrow(2, 0, t + 1));
                // 3. window t−w ..= t
                let lo = (t - self.w).max(0);
                let sw = dot(&qrt, &kr.narrow(2, lo, t - lo + 1)) * self.scale();
                let s = mix(&Attention::explicit_softmax(&sw), &v.narrow(2, lo, t - lo + 1));
                let gt = g.select(1, t); // [B, H, 3]
                c * gt.select(-1, 0).unsqueeze(-1)
                    + f * gt.select(-1, 1).unsqueeze(-1)
                    + s * gt.select(-1, 2).unsqueeze(-1)
            })
            .collect();
        self.out.forward(&merge_heads(&Tensor::stack(&outs, 2)))
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let z = Tensor::zeros([batch, 0, self.d], (self.out.ws.kind(), self.out.ws.device()));
        MixerState::new(vec![z.shallow_clone(), z.shallow_clone(), z.shallow_clone(), z])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let (bsz, _) = x_t.size2().unwrap();
        let (b, heads, dev) = (self.b, self.heads, x_t.device());
        let p = state.tensors[0].size()[1]; // this token's position
        let u = self.normed(&x_t.unsqueeze(1));
        let (q, k, v) = self.qkv(&u); // [B, H, 1, h]
        let kc = Tensor::cat(&[&state.tensors[0], &merge_heads(&k)], 1);
        let vc = Tensor::cat(&[&state.tensors[1], &merge_heads(&v)], 1);
        let (kh, vh) = (split_heads(&kc, heads), split_heads(&vc, heads)); // [B, H, p+1, h]
        let (ckh, cvh) = (split_heads(&state.tensors[2], heads), split_heads(&state.tensors[3], heads));
        let nv = ckh.size()[2]; // = ⌊p/b⌋: every block in the state has ended before p
                                // 1. compressed
        let (mk, mv) = self.memory(bsz);
        let (ks, vs) = (Tensor::cat(&[&mk, &ckh], 2), Tensor::cat(&[&mv, &cvh], 2));
        let c = (q.matmul(&ks.transpose(-2, -1)) * self.scale()).softmax(-1, q.kind()).matmul(&vs);
        // 2. selected blocks + own block
        let (qr, kr) = (rope(&q, p, self.base), rope(&kh, 0, self.base));
        let own = Tensor::arange_start(p / b * b, p + 1, (Kind::Int64, dev))
            .view([1, 1, -1])
            .expand([bsz, heads, p - p / b * b + 1], false);
        let n_eff = self.n.min(nv);
        let idx = if n_eff > 0 {
            let order = tch::no_grad(|| {
                let s = q.to_kind(Kind::Double).matmul(&ckh.to_kind(Kind::Double).transpose(-2, -1)); // [B,H,1,V]
                s.squeeze_dim(2).argsort_stable(true, -1, true).narrow(-1, 0, n_eff)
            });
            let pos = order.unsqueeze(-1) * b + Tensor::arange(b, (Kind::Int64, dev)).view([1, 1, 1, b]);
            Tensor::cat(&[pos.view([bsz, heads, n_eff * b]), own], -1)
        } else {
            own
        };
        let n_keys = idx.size()[2];
        let gi = idx.unsqueeze(-1).expand([bsz, heads, n_keys, self.dh], false);
        let (keys, vals) = (kr.gather(2, &gi, false), vh.gather(2, &gi, false));
        let f = (qr.matmul(&keys.transpose(-2, -1)) * self.scale()).softmax(-1, q.kind()).matmul(&vals);
        // 3. window
        let lo = (p - self.w).max(0);
        let (kw, vw) = (kr.narrow(2, lo, p - lo + 1), vh.narrow(2, lo, p - lo + 1));
        let s = (qr.matmul(&kw.transpose(-2, -1)) * self.scale()).softmax(-1, q.kind()).matmul(&vw);
        let o = Self::mix_gates(&self.gates(&u), &c, &f, &s);
        let y = self.out.forward(&merge_heads(&o)).squeeze_dim(1);
        // compress the block this token completes
        let (mut ckc, mut cvc) = (state.tensors[2].shallow_clone(), state.tensors[3].shallow_clone());
        if (p + 1) % b == 0 {
            let start = p + 1 - b;
            let (ckn, cvn) = self.compress_blocks(&kh.narrow(2, start, b), &vh.narrow(2, start, b), 1);
            ckc = Tensor::cat(&[&ckc, &merge_heads(&ckn)], 1);
            cvc = Tensor::cat(&[&cvc, &merge_heads(&cvn)], 1);
        }
        state.tensors = vec![kc, vc, ckc, cvc];
        y
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        2 * self.d * (seq_len + seq_len / self.b)
    }

    /// Zoology's `SparseAttention.state_size`: `2·⌊L/b⌋·d + 2·w·d + 2·b·d·n`.
    fn state_size_zoology(&self, seq_len: i64) -> Option<i64> {
        Some(2 * (seq_len / self.b) * self.d + 2 * self.w * self.d + 2 * self.b * self.d * self.n)
    }

    fn flops(&self, seq_len: i64) -> MixerFlops {
        let (d, l, b) = (self.d as f64, seq_len as f64, self.b);
        let nb = seq_len / b;
        let n_eff = self.n.min(nb);
        let mut fwd = l * self.token_flops() + nb as f64 * self.compress_flops();
        fwd += 4.0 * l * (self.m + nb) as f64 * d;
        if n_eff > 0 {
            fwd += 2.0 * l * nb as f64 * d;
        }
        if seq_len <= DENSE_MAX_LEN {
            fwd += 6.0 * l * l * d;
        } else {
            fwd += 4.0 * l * ((n_eff + 1) * b) as f64 * d + 4.0 * l * (self.w + 1) as f64 * d;
        }
        MixerFlops::stepwise(fwd, 0.0, seq_len, |t| {
            let p = t - 1;
            let nv = p / b;
            let n2 = self.n.min(nv);
            let mut f = self.token_flops() + 4.0 * (self.m + nv) as f64 * d;
            if n2 > 0 {
                f += 2.0 * nv as f64 * d;
            }
            f += 4.0 * (n2 * b + p % b + 1) as f64 * d + 4.0 * (self.w + 1).min(t) as f64 * d;
            if t % b == 0 {
                f += self.compress_flops();
            }
            f
        })
    }
}

impl MixerKind for NativeSparseAttention {
    type Config = NativeSparseAttentionConfig;
    const NAME: &'static str = "native_sparse_attention";
    const ABOUT: &'static str = "DeepSeek's native sparse attention (Zoology's deepseek_nsa, causal): compressed blocks + top-n selected blocks + sliding window, mixed by learned gates";
    const STATE_FORMULA: &'static str =
        "2·d·(L + ⌊L/b⌋) (whole KV cache: selected blocks can be anywhere; + compressed k, v)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &NativeSparseAttentionConfig, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.num_heads < 1 || d % c.num_heads != 0 || (d / c.num_heads) % 2 != 0 {
            return Err(config_err(
                format!("{field}.num_heads"),
                format!("must divide d_model = {d} into heads of even width (RoPE), e.g. 2 (got {})", c.num_heads),
            ));
        }
        int_in(field, "sliding_window_size", c.sliding_window_size, 1, MAX_SIZE, "16")?;
        int_in(field, "compress_block_size", c.compress_block_size, 1, MAX_SIZE, "8")?;
        if c.selection_block_size != c.compress_block_size {
            return Err(config_err(
                format!("{field}.selection_block_size"),
                format!(
                    "must equal compress_block_size = {} (the selection ranks the compressed blocks; got {})",
                    c.compress_block_size, c.selection_block_size
                ),
            ));
        }
        int_in(field, "num_selected_blocks", c.num_selected_blocks, 1, MAX_SIZE, "4")?;
        int_in(field, "num_compressed_mem_kv", c.num_compressed_mem_kv, 1, MAX_SIZE, "1")?;
        float_in(field, "compress_mlp_expand_factor", c.compress_mlp_expand_factor, 0.0, f64::INFINITY, "1.0")?;
        let hid = c.hidden(d);
        if !(1..=MAX_SIZE).contains(&hid) {
            return Err(config_err(
                format!("{field}.compress_mlp_expand_factor"),
                format!(
                    "gives ⌊{}·b·h⌋ = {hid} hidden units of the compression MLP; must be between 1 and {MAX_SIZE}",
                    c.compress_mlp_expand_factor
                ),
            ));
        }
        float_in(field, "rope_base", c.rope_base, 1.0, f64::INFINITY, "10000")
    }

    fn build(p: nn::Path, d: i64, c: &NativeSparseAttentionConfig, ctx: &BuildCtx) -> Result<Self> {
        let (heads, b, m) = (c.num_heads, c.compress_block_size, c.num_compressed_mem_kv);
        let dh = d / heads;
        let hidden = c.hidden(d);
        let std = ctx.init_std;
        let mlp = |name: &str| {
            let q = &p / name;
            (Linear::new(&q / "0", b * dh, hidden, true, std), Linear::new(&q / "1", hidden, dh, true, std))
        };
        Ok(NativeSparseAttention {
            norm_w: c.norm.then(|| p.var("norm_weight", &[d], nn::Init::Const(1.0))),
            to_qkv: Linear::new(&p / "to_qkv", d, 3 * d, false, std),
            mem_kv: p.var("compress_mem_kv", &[2, heads, m, dh], nn::Init::Const(0.0)),
            k_pos: p.var("k_intrablock_positions", &[heads, b, dh], nn::Init::Const(0.0)),
            v_pos: p.var("v_intrablock_positions", &[heads, b, dh], nn::Init::Const(0.0)),
            k_compress: mlp("k_compress"),
            v_compress: mlp("v_compress"),
            combine: Linear::new(&p / "to_strategy_combine", d, 3 * heads, true, std),
            out: Linear::new(&p / "combine_heads", d, d, false, std),
            heads,
            d,
            dh,
            hidden,
            b,
            n: c.num_selected_blocks,
            w: c.sliding_window_size,
            m,
            base: c.rope_base,
        })
    }

    fn suite_variants() -> Vec<NativeSparseAttentionConfig> {
        vec![
            NativeSparseAttentionConfig::default(),
            // small blocks: selection among many visible blocks from t = 6 on
            NativeSparseAttentionConfig {
                num_heads: 1,
                sliding_window_size: 3,
                compress_block_size: 2,
                selection_block_size: 2,
                num_selected_blocks: 2,
                num_compressed_mem_kv: 2,
                norm: false,
                ..Default::default()
            },
            NativeSparseAttentionConfig {
                sliding_window_size: 2,
                compress_block_size: 3,
                selection_block_size: 3,
                num_selected_blocks: 1,
                compress_mlp_expand_factor: 0.5,
                ..Default::default()
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded, validate_error};

    fn build(c: &NativeSparseAttentionConfig, seed: i64) -> (nn::VarStore, NativeSparseAttention) {
        seeded(seed, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = NativeSparseAttention::build(vs.root() / "mixer", 16, c, &BuildCtx::new(0, 2, 48)).unwrap();
            (vs, m)
        })
    }

    fn small() -> NativeSparseAttentionConfig {
        NativeSparseAttention::suite_variants()[1].clone()
    }

    /// The fast selection picks, per query, the n visible blocks with the largest scores, the
    /// earlier block on exact ties, and never an invisible block: checked against a count on
    /// hand-made scores with ties.
    #[test]
    fn selection_is_top_n_of_the_visible_blocks_ties_to_the_earlier() {
        let (_vs, m) = build(&small(), 1); // b = 2, n = 2
        let (l, nb) = (12i64, 6i64);
        // q = 1 in one channel, K̃_j = score_j in that channel: q·K̃_j = score_j
        let scores = [0.5f64, 2.0, 0.5, 2.0, -1.0, 3.0];
        let q = Tensor::zeros([1, 1, l, 8], (Kind::Float, Device::Cpu));
        let _ = q.narrow(-1, 0, 1).fill_(1.0);
        let ck = Tensor::zeros([1, 1, nb, 8], (Kind::Float, Device::Cpu));
        for (j, s) in scores.iter().enumerate() {
            let _ = ck.narrow(2, j as i64, 1).narrow(-1, 0, 1).fill_(*s);
        }
        let vis = m.visible(l, nb, Device::Cpu);
        let (order, ok) = m.select_blocks(&q, &ck, &vis, 2);
        for t in 0..l {
            let nv = (t / 2) as usize; // blocks with (j+1)·2 ≤ t
            let mut want: Vec<usize> = (0..nv).collect();
            want.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
            want.truncate(2);
            let got: Vec<usize> = (0..2)
                .filter(|&i| ok.int64_value(&[0, 0, t, i]) != 0)
                .map(|i| order.int64_value(&[0, 0, t, i]) as usize)
                .collect();
            assert_eq!(got, want, "t = {t}");
        }
    }

    /// Branches 2 and 3: the dense masked form (L ≤ `DENSE_MAX_LEN`) and the gathered form
    /// (longer L) give the same outputs and input gradients, at a length with a partial last
    /// block and with ties in the selection scores.
    #[test]
    fn dense_and_gathered_branches_agree() {
        for (c, seed) in [(small(), 6), (NativeSparseAttention::suite_variants()[2].clone(), 7)] {
            let (_vs, m) = build(&c, seed);
            let (l, h, heads) = (13i64, 16 / c.num_heads, c.num_heads);
            let nb = l / c.compress_block_size;
            let r = |s: i64, shape: &[i64]| seeded(s, || Tensor::randn(shape, (Kind::Float, Device::Cpu)));
            let (q, qr, kr, v) =
                (r(1, &[2, heads, l, h]), r(2, &[2, heads, l, h]), r(3, &[2, heads, l, h]), r(4, &[2, heads, l, h]));
            let ck = r(5, &[2, heads, nb, h]);
            let _ = ck.narrow(2, 1, 1).copy_(&ck.narrow(2, 0, 1)); // tied blocks 0 and 1
            let vis = m.visible(l, nb, Device::Cpu);
            let run = |dense: bool| {
                let (qr, kr, v) = (
                    qr.copy().set_requires_grad(true),
                    kr.copy().set_requires_grad(true),
                    v.copy().set_requires_grad(true),
                );
                let (f, s) = if dense {
                    m.fine_window_dense(&q, Some(&ck), &qr, &kr, &v, &vis)
                } else {
                    (m.fine_fast(&q, Some(&ck), &qr, &kr, &v, &vis), m.window_fast(&qr, &kr, &v))
                };
                let loss = (&f * &f.sin()).sum(Kind::Float) + (&s * 2.0 + 1.0).square().sum(Kind::Float);
                let g = Tensor::run_backward(&[loss], &[&qr, &kr, &v], false, false);
                (f, s, g)
            };
            let (fd, sd, gd) = run(true);
            let (fg, sg, gg) = run(false);
            assert!(rel_err(&fd, &fg) < 1e-5, "branch 2: {:.2e}", rel_err(&fd, &fg));
            assert!(rel_err(&sd, &sg) < 1e-5, "branch 3: {:.2e}", rel_err(&sd, &sg));
            for (a, b) in gd.iter().zip(&gg) {
                assert!(rel_err(a, b) < 1e-5, "gradient: {:.2e}", rel_err(a, b));
            }
        }
    }

    /// Identical blocks (a periodic input) tie exactly in every score; fast, reference and
    /// step still agree, at a point where the selection matters (b = 2, n = 2).
    #[test]
    fn forms_agree_on_exactly_tied_blocks() {
        let (_vs, m) = build(&small(), 2);
        let base = seeded(3, || Tensor::randn([2, 2, 16], (Kind::Float, Device::Cpu)));
        let x = base.repeat([1, 12, 1]); // L = 24, period b
        let (y, r) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
        let (s, _) = tch::no_grad(|| m.prefill(&x));
        assert!(rel_err(&y, &r) < 1e-5, "fast vs reference {:.2e}", rel_err(&y, &r));
        assert!(rel_err(&s, &r) < 1e-5, "step vs reference {:.2e}", rel_err(&s, &r));
    }

    /// Output t depends on input s exactly where one of the branches reaches: within the window
    /// and t's own block always; earlier blocks through the compressed branch only once they
    /// have ended before t.
    #[test]
    fn a_blocks_tokens_reach_later_queries_only_after_the_block_ends() {
        let c = NativeSparseAttentionConfig { sliding_window_size: 1, ..small() }; // b = 2, w = 1
        let (_vs, m) = build(&c, 4);
        let l = 9;
        let x = seeded(5, || Tensor::randn([1, l, 16], (Kind::Float, Device::Cpu)));
        for reference in [false, true] {
            let run = |x: &Tensor| tch::no_grad(|| if reference { m.reference(x) } else { m.forward(x, false) });
            let y = run(&x);
            for s in 0..l {
                let x2 = x.copy();
                let _ = x2.narrow(1, s, 1).g_add_(&Tensor::ones([1, 1, 16], (Kind::Float, Device::Cpu)));
                let y2 = run(&x2);
                for t in 0..l {
                    let moved = (y2.select(1, t) - y.select(1, t)).abs().max().double_value(&[]) > 0.0;
                    // s's block ends at e = (s/2)·2 + 1; visible to t iff e < t
                    let reach = s == t || (s + 1 == t) || s / 2 == t / 2 || (s / 2 * 2 + 1) < t;
                    assert_eq!(moved, reach && s <= t, "reference {reference}: t = {t}, s = {s}");
                }
            }
        }
    }

    #[test]
    fn zoology_state_size_is_the_sources_formula() {
        let (_vs, m) = build(&NativeSparseAttentionConfig::default(), 0);
        // 2·⌊L/8⌋·16 + 2·16·16 + 2·8·16·4 at L = 100
        assert_eq!(m.state_size_zoology(100), Some(2 * 12 * 16 + 2 * 16 * 16 + 2 * 8 * 16 * 4));
        assert_eq!(m.state_size(100), 2 * 16 * (100 + 12));
    }

    #[test]
    fn bad_options_name_the_field() {
        for (inline, key) in [
            (r#"{ name = "native_sparse_attention", num_heads = 16 }"#, "num_heads"),
            (r#"{ name = "native_sparse_attention", selection_block_size = 4 }"#, "selection_block_size"),
            (r#"{ name = "native_sparse_attention", num_selected_blocks = 0 }"#, "num_selected_blocks"),
            (r#"{ name = "native_sparse_attention", sliding_window_size = 0 }"#, "sliding_window_size"),
            (
                r#"{ name = "native_sparse_attention", compress_mlp_expand_factor = 0.01 }"#,
                "compress_mlp_expand_factor",
            ),
            (r#"{ name = "native_sparse_attention", kv_heads = 1 }"#, "kv_heads"),
        ] {
            let e = validate_error(inline);
            assert!(e.contains(key), "{inline}: {e}");
        }
    }
}
