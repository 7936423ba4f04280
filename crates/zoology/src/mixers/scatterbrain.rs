//! `scatterbrain`: ScatterBrain (Chen et al. 2021, "Scatterbrain: Unifying Sparse and Low-rank
//! Attention"), causal: exact softmax scores on a sliding window (the sparse part) and Performer
//! random features everywhere else in the past (the low-rank part), under one normaliser
//! (Zoology's `SBLocalAttention`, after HazyResearch/scatterbrain's `SBLocalAttention`).
//!
//! Per head (width `h = D/H`, `[q, k, v] = x W_qkvᵀ + b`), window `w` (the last `w + 1` tokens,
//! Zoology's mask), `φ` the FAVOR+ feature map of `performer` for `exp(q·k/√h)` (input width `h`,
//! `m = feature_dim` features, hyperbolic `[e^{ω·x}, e^{−ω·x}]` by default as ScatterBrain's
//! `cosh` map, chi row norms):
//!
//! ```text
//! A[t, s] = exp(q_t·k_s/√h)      for t − w ≤ s ≤ t        (sparse: exact on the window)
//!         = φ(q_t)·φ(k_s)        for s < t − w            (low-rank: random features)
//! y_t = Σ_s A[t, s] v_s / Σ_s A[t, s],   y = concat_heads(y) W_oᵀ + b_o
//! ```
//! i.e. ScatterBrain's `S + L − L∘supp(S)` (low-rank everywhere in the causal past, its entries on
//! the sparse support replaced by the exact ones), normalised.
//!
//! Forms:
//! - parallel: the window part in blocks of `w + 1` queries against their own and the previous
//!   block's keys (masked to the band), giving the window's log-sum-exp and scores; the low-rank
//!   part is causal linear attention against the keys and values *delayed by `w + 1` positions*
//!   (`Σ_{s ≤ t−w−1} φ(q_t)·φ(k_s) [1, v_s]`, `common::decayed_linear::chunked_linear_attention`,
//!   chunk `chunk_size`), so nothing is subtracted. Both are combined in log space:
//!   `log Z_t = logaddexp(lse_t, log(φ̃(q_t)·z̃_t) + α_t + K)`, window weights
//!   `exp(ℓ_ts − log Z_t)` (dropout applies to these in training, as ScatterBrain drops the exact
//!   part), low-rank weight `exp(α_t + K − log Z_t)`; the feature stabilisers `α_t` (per query)
//!   and `K` (a constant) are `performer`'s, so every exponent is bounded.
//! - reference: dense `[L, L]` matrices in f64, `exp(QKᵀ/√h)∘W + (Φ_Q Φ_Kᵀ)∘C − (Φ_Q Φ_Kᵀ)∘W`
//!   (W the window mask, C the causal mask) with unstabilised features, normalised by row sums.
//! - recurrent: the last `w` tokens' keys and values and the low-rank state `[z̃ | S̃]` of the
//!   tokens that left the window; a token's features are added to the state when it leaves.
//!
//! State: `2·d·min(L, w) + H·m·(d_v + 1)` elements (constant once `L ≥ w`). Zoology's
//! `state_size()` counts `2·w·d + H·d_v·m + H·m` (`state_size_zoology`), the same once `L ≥ w`.
//!
//! FLOPs ([`crate::flops`] convention): projections `8·d²` per token; the random projections of
//! q and k `2·2·H·h·m_rows` per token (`m_rows = m/2` hyperbolic); the window part
//! `8·n·d·L_p` (`n = min(w + 1, L)` block, `L_p = ⌈L/n⌉·n`, `[n, 2n]` scores and mix per block);
//! the low-rank core `H·(2·C·m + 2·C·V + 4·m·V)` per position over `⌈L/C⌉·C` (V = d_v + 1) when
//! `L > w + 1`. Decode at context L: `8·d² + 2·H·h·m_rows + 4·d·min(L, w + 1) + 2·H·m·V`
//! (projections, query features, window, low-rank readout) plus, once `L > w`,
//! `2·H·h·m_rows + 2·H·m·V` (the leaving token's features and its state update). Prefill is the
//! step form.
//!
//! Departures from Zoology's `SBLocalAttention` (docs/DECISIONS.md): its key stabiliser is a max
//! over *all* keys and its features add `eps = 1e-4`, which together make outputs depend on
//! future tokens; it multiplies the featurised scores by the softmax scale a second time; it
//! needs a CUDA kernel (`causal_dot_product`) at import. Here the math is the paper's.
//!
//! Init: `wqkv` N(0, 0.02), `out_proj` N(0, 0.02/√(2·n_layers)), zero biases; `ω` as `performer`
//! (a non-trainable buffer drawn once at construction from the run's seed; ScatterBrain also
//! draws it once).

use super::attention::{Attention, AttentionConfig};
use super::common::bounds::int_in;
use super::common::chunking::ChunkLayout;
use super::common::decayed_linear::chunked_linear_attention;
use super::common::layers::{merge_heads, split_heads};
use super::linear_attention::check_chunk;
use super::performer::{Favor, RowNorms};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use crate::flops::MixerFlops;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScatterBrainConfig {
    /// Window w: the last w + 1 tokens are scored exactly (Zoology's `window_size`; its configs
    /// use 4 … 1024; its code default `(-1, -1)` does not run).
    pub window_size: i64,
    /// Random features m (Zoology's `feature_dim`, 24).
    pub feature_dim: i64,
    /// Number of heads (must divide d_model; Zoology's configs: 1).
    pub num_heads: i64,
    /// Dropout on the exact window weights in training (Zoology's default 0.1).
    pub dropout: f64,
    /// Row lengths of the random matrix (ScatterBrain: chi, `ortho_scaling = 0`).
    pub row_norms: RowNorms,
    /// `[exp(ω·x), exp(−ω·x)]` features (ScatterBrain's `cosh = True`).
    pub hyperbolic: bool,
    /// Chunk length of the low-rank part's training form.
    pub chunk_size: i64,
}

impl Default for ScatterBrainConfig {
    fn default() -> Self {
        ScatterBrainConfig {
            window_size: 64,
            feature_dim: 24,
            num_heads: 1,
            dropout: 0.1,
            row_norms: RowNorms::Chi,
            hyperbolic: true,
            chunk_size: 64,
        }
    }
}

#[derive(Debug)]
pub struct ScatterBrain {
    attn: Attention,
    favor: Favor,
    w: i64,
    chunk: i64,
}

/// `log Z = logaddexp(lse, log(n) + α + K)` with `n = 0` (no token left the window yet) giving
/// `log Z = lse` and no gradient through `log 0`; returns `(log Z, exp(α + K − log Z))`.
fn combine(lse: &Tensor, n: &Tensor, alpha: &Tensor, shift: f64) -> (Tensor, Tensor) {
    let pos = n.gt(0.0);
    let safe = n.where_self(&pos, &n.ones_like());
    let lr = (safe.log() + alpha + shift).where_self(&pos, &n.full_like(f64::NEG_INFINITY));
    let log_z = lse.logaddexp(&lr);
    let w_lr = (alpha + shift - &log_z).exp();
    (log_z, w_lr)
}

impl ScatterBrain {
    fn value_cols(&self) -> i64 {
        self.attn.width() / self.attn.num_heads() + 1
    }
    fn heads(&self) -> i64 {
        self.attn.num_heads()
    }
}

impl Mixer for ScatterBrain {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.attn.heads_qkv(x, 0, false);
        let w = self.w;
        // window part: blocks of n = w + 1 queries against the previous and own block's keys
        let lay = ChunkLayout::new(l, w + 1);
        let (nb, c) = (lay.n, lay.c);
        let (qb, kb, vb) = (lay.split(&q, 2), lay.split(&k, 2), lay.split(&v, 2)); // [B,H,nb,c,h]
        let prev = |t: &Tensor| Tensor::cat(&[t.zeros_like().narrow(2, 0, 1), t.narrow(2, 0, nb - 1)], 2);
        let kx = Tensor::cat(&[prev(&kb), kb.shallow_clone()], 3); // [B,H,nb,2c,h]
        let vx = Tensor::cat(&[prev(&vb), vb.shallow_clone()], 3);
        let opts = (Kind::Int64, x.device());
        let i = Tensor::arange(c, opts).view([c, 1]);
        let j = Tensor::arange(2 * c, opts).view([1, 2 * c]);
        // key j of block bi is position (bi−1)c + j, query i is bi·c + i: t − w ≤ s ≤ t
        let band = j.le_tensor(&(&i + c)).logical_and(&j.ge_tensor(&(&i + c - w)));
        let first = band.logical_and(&j.ge(c));
        let allowed =
            Tensor::stack(&[first].into_iter().chain((1..nb).map(|_| band.shallow_clone())).collect::<Vec<_>>(), 0);
        let scores = (qb.matmul(&kx.transpose(-2, -1)) * self.attn.scale())
            .masked_fill(&allowed.logical_not(), f64::NEG_INFINITY); // [B,H,nb,c,2c]
        let lse = lay.merge(&scores.logsumexp([-1i64].as_slice(), true), 2); // [B,H,L,1]
                                                                             // low-rank part: keys and values delayed by w + 1 positions
        let (fq, alpha) = self.favor.query_features(&q);
        let lr = if l > w + 1 {
            let delay = |t: &Tensor| Tensor::cat(&[t.zeros_like().narrow(2, 0, w + 1), t.narrow(2, 0, l - w - 1)], 2);
            let fk = self.favor.key_features(&k);
            let v1 = Tensor::cat(&[v.ones_like().narrow(-1, 0, 1), v.shallow_clone()], -1);
            chunked_linear_attention(&fq, &delay(&fk), &delay(&v1), None, self.chunk).0
        } else {
            Tensor::zeros([q.size()[0], q.size()[1], l, self.value_cols()], (q.kind(), q.device()))
        };
        let (log_z, w_lr) = combine(&lse, &lr.narrow(-1, 0, 1), &alpha, self.favor.key_shift());
        let wts = (scores - lay.split(&log_z, 2)).exp().dropout(self.attn.dropout(), train);
        let local = lay.merge(&wts.matmul(&vx), 2);
        let y = local + w_lr * lr.narrow(-1, 1, self.value_cols() - 1);
        self.attn.project_out(&y)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.attn.heads_qkv(x, 0, true);
        let (qd, kd, vd) = (q.to_kind(Kind::Double), k.to_kind(Kind::Double), v.to_kind(Kind::Double));
        let exact = (qd.matmul(&kd.transpose(-2, -1)) * self.attn.scale()).exp(); // [B,H,L,L]
        let lowrank = self.favor.features_plain(&q).matmul(&self.favor.features_plain(&k).transpose(-2, -1));
        let mut causal = vec![0f64; (l * l) as usize];
        let mut window = vec![0f64; (l * l) as usize];
        for t in 0..l {
            for s in 0..=t {
                causal[(t * l + s) as usize] = 1.0;
                if s >= t - self.w {
                    window[(t * l + s) as usize] = 1.0;
                }
            }
        }
        let as_mat = |m: Vec<f64>| Tensor::from_slice(&m).view([l, l]).to_device(x.device());
        let (cm, wm) = (as_mat(causal), as_mat(window));
        let a = &exact * &wm + &lowrank * &cm - &lowrank * &wm;
        let y = a.matmul(&vd) / a.sum_dim_intlist([-1i64].as_slice(), true, Kind::Double);
        self.attn.project_out(&y.to_kind(x.kind()))
    }

    /// `[window keys [B,n,D], window values [B,n,D], low-rank state [B,H,m,1+d_v]]`.
    fn init_state(&self, batch: i64) -> MixerState {
        let opts = self.attn.opts();
        let e = Tensor::zeros([batch, 0, self.attn.width()], opts);
        let s = Tensor::zeros([batch, self.heads(), self.favor.num_features(), self.value_cols()], opts);
        MixerState::new(vec![e.shallow_clone(), e, s])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let hd = self.heads();
        let (q, k, v) = self.attn.heads_qkv(&x_t.unsqueeze(1), 0, false); // [B,H,1,h]
        let st = &mut state.tensors;
        let kc = Tensor::cat(&[&st[0], &merge_heads(&k)], 1);
        let vc = Tensor::cat(&[&st[1], &merge_heads(&v)], 1);
        let scores = q.matmul(&split_heads(&kc, hd).transpose(-2, -1)) * self.attn.scale(); // [B,H,1,n]
        let lse = scores.logsumexp([-1i64].as_slice(), true);
        let (fq, alpha) = self.favor.query_features(&q);
        let lr = fq.matmul(&st[2]); // [B,H,1,1+d_v]
        let (log_z, w_lr) = combine(&lse, &lr.narrow(-1, 0, 1), &alpha, self.favor.key_shift());
        let local = (scores - &log_z).exp().matmul(&split_heads(&vc, hd));
        let y = local + w_lr * lr.narrow(-1, 1, self.value_cols() - 1);
        // the token at t − w leaves the window: its features join the low-rank state
        let n = kc.size()[1];
        if n > self.w {
            let (ko, vo) = (split_heads(&kc.narrow(1, 0, 1), hd), split_heads(&vc.narrow(1, 0, 1), hd));
            let fk = self.favor.key_features(&ko).select(2, 0);
            let v1 = Tensor::cat(&[vo.ones_like().narrow(-1, 0, 1), vo], -1).select(2, 0);
            st[2] = &st[2] + fk.unsqueeze(-1) * v1.unsqueeze(-2);
            st[0] = kc.narrow(1, 1, n - 1);
            st[1] = vc.narrow(1, 1, n - 1);
        } else {
            st[0] = kc;
            st[1] = vc;
        }
        self.attn.project_out(&y).squeeze_dim(1)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        2 * self.attn.width() * seq_len.min(self.w) + self.heads() * self.favor.num_features() * self.value_cols()
    }

    /// Zoology's `SBLocalAttention.state_size`: `2·w·d + H·d_v·m + H·m`.
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(2 * self.w * self.attn.width() + self.heads() * self.favor.num_features() * self.value_cols())
    }

    fn flops(&self, seq_len: i64) -> MixerFlops {
        let (d, l) = (self.attn.width() as f64, seq_len as f64);
        let (h, m, vcols) = (self.heads() as f64, self.favor.num_features() as f64, self.value_cols() as f64);
        let feat = h * self.favor.proj_flops(); // one x → φ(x) projection for every head
        let tok = self.attn.proj_flops() + 2.0 * feat;
        let n = (self.w + 1).min(seq_len);
        let window = 8.0 * n as f64 * d * crate::flops::padded(seq_len, n) as f64;
        let c = self.chunk as f64;
        let core = if seq_len > self.w + 1 {
            crate::flops::padded(seq_len, self.chunk) as f64 * h * (2.0 * c * m + 2.0 * c * vcols + 4.0 * m * vcols)
        } else {
            0.0
        };
        let read = 2.0 * h * m * vcols;
        MixerFlops::stepwise(l * tok + window + core, 0.0, seq_len, |ctx| {
            let base = self.attn.proj_flops() + feat + 4.0 * d * ctx.min(self.w + 1) as f64 + read;
            base + if ctx > self.w { feat + read } else { 0.0 }
        })
    }
}

/// Largest accepted window and feature count.
const MAX_WINDOW: i64 = 1 << 20;
const MAX_FEATURES: i64 = 1 << 16;

impl MixerKind for ScatterBrain {
    type Config = ScatterBrainConfig;
    const NAME: &'static str = "scatterbrain";
    const ABOUT: &'static str = "ScatterBrain, causal: exact softmax on the last w+1 tokens + Performer random features on the rest of the past, one normaliser";
    const STATE_FORMULA: &'static str = "2·d·min(L, w) + H·m·(d_v+1) (window KV cache + low-rank state)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &ScatterBrainConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "window_size", c.window_size, 0, MAX_WINDOW, "64")?;
        int_in(field, "feature_dim", c.feature_dim, 1, MAX_FEATURES, "24")?;
        if c.hyperbolic && c.feature_dim % 2 != 0 {
            return Err(config_err(
                format!("{field}.feature_dim"),
                format!("must be even with hyperbolic = true (m/2 directions, each used as ±ω; got {})", c.feature_dim),
            ));
        }
        check_chunk(c.chunk_size, field)?;
        Attention::validate(
            &AttentionConfig { num_heads: c.num_heads, dropout: c.dropout, ..Default::default() },
            d,
            ctx,
            field,
        )
    }

    fn build(p: nn::Path, d: i64, c: &ScatterBrainConfig, ctx: &BuildCtx) -> Result<Self> {
        let attn = Attention::build(
            &p / "attn",
            d,
            &AttentionConfig { num_heads: c.num_heads, dropout: c.dropout, ..Default::default() },
            ctx,
        )?;
        let favor = Favor::new(&(&p / "feature_map"), d / c.num_heads, c.feature_dim, c.row_norms, c.hyperbolic);
        Ok(ScatterBrain { attn, favor, w: c.window_size, chunk: c.chunk_size })
    }

    fn suite_variants() -> Vec<ScatterBrainConfig> {
        let small = |w, m, heads, hyperbolic, chunk| ScatterBrainConfig {
            window_size: w,
            feature_dim: m,
            num_heads: heads,
            hyperbolic,
            chunk_size: chunk,
            dropout: 0.0,
            ..Default::default()
        };
        vec![ScatterBrainConfig::default(), small(4, 8, 2, true, 5), small(0, 6, 1, false, 4), small(7, 16, 1, true, 8)]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{rel_err, seeded, validate_error};
    use super::*;
    use tch::Device;

    fn build(c: &ScatterBrainConfig) -> (nn::VarStore, ScatterBrain) {
        seeded(0, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = ScatterBrain::build(vs.root(), 8, c, &BuildCtx::new(0, 2, 64)).unwrap();
            (vs, m)
        })
    }

    /// With the window covering the sequence, ScatterBrain is causal softmax attention; with
    /// many random features it is close to it at any window (the low-rank part estimates the
    /// scores it replaces), and closer with a larger window.
    #[test]
    fn approximates_softmax_attention() {
        let x = seeded(2, || Tensor::randn([2, 24, 8], (Kind::Float, Device::Cpu)));
        let cfg = |w, m| ScatterBrainConfig { window_size: w, feature_dim: m, dropout: 0.0, ..Default::default() };
        let (_va, full) = build(&cfg(64, 8));
        let exact = seeded(0, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let a = Attention::build(&vs.root() / "attn", 8, &AttentionConfig::default(), &BuildCtx::new(0, 2, 64))
                .unwrap();
            tch::no_grad(|| a.forward(&x, false))
        });
        let e = rel_err(&tch::no_grad(|| full.forward(&x, false)), &exact);
        assert!(e < 1e-5, "window ≥ L: rel err {e} vs attention");
        let err_at = |w| {
            let (_v, m) = build(&cfg(w, 4096));
            rel_err(&tch::no_grad(|| m.forward(&x, false)), &exact)
        };
        let (e0, e8) = (err_at(0), err_at(8));
        assert!(e0 < 0.05 && e8 < e0, "random features should approximate the rest: w=0 {e0}, w=8 {e8}");
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert!(validate_error(r#"{ name = "scatterbrain", window_size = -1 }"#).contains("model.mixer.window_size"));
        assert!(validate_error(r#"{ name = "scatterbrain", feature_dim = 5 }"#).contains("model.mixer.feature_dim"));
        assert!(validate_error(r#"{ name = "scatterbrain", num_heads = 3 }"#).contains("model.mixer.num_heads"));
        assert!(validate_error(r#"{ name = "scatterbrain", dropout = 1.5 }"#).contains("model.mixer.dropout"));
        assert!(validate_error(r#"{ name = "scatterbrain", local_context = 4 }"#).contains("local_context"));
    }
}
