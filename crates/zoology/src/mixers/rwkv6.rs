//! `rwkv6`: RWKV-6 "Finch" time mixing (Peng et al. 2024, "Eagle and Finch"), as fla's
//! `RWKV6Attention` (`fla/layers/rwkv6.py`, `fla/ops/rwkv6`).
//!
//! With `Δ_t = x_{t−1} − x_t` (x_{−1} = 0), key width `K = ⌊d·expand_k⌋`, value width
//! `V = ⌊d·expand_v⌋`, `H` heads (`K/H`, `V/H` per head), low ranks `r_p = proj_low_rank_dim`,
//! `r_w = gate_low_rank_dim`:
//!
//! ```text
//! data-dependent lerp (ddlerp):
//!   z_t = tanh(A (x_t + μ ⊙ Δ_t)) ∈ R^{5·r_p},  m_{c,t} = B_c z_{c,t} + β_c   c ∈ {r, w, k, v, g}
//!   x_{c,t} = x_t + m_{c,t} ⊙ Δ_t
//! r = W_r x_r,  k = W_k x_k,  v = W_v x_v,  g = W_g x_g
//! log w_t = −exp(W_w2 tanh(W_w1 x_w) + b_w)          (w_t = exp(−exp(·)) ∈ (0, 1), per key channel)
//! o_t = r_tᵀ (S_{t−1} + diag(u) k_t v_tᵀ),   S_t = diag(w_t) S_{t−1} + k_t v_tᵀ   (per head)
//! y = W_o( GroupNorm_H(o) ⊙ swish(g) )
//! ```
//! (`A` is `x_proj[0]`, the five `B_c: r_p → d` are `x_proj[2]` split as fla's einsum splits it,
//! `β = x_bias`, `u = bonus`; no `1/√(K/H)` scale: fla calls the kernel with scale 1.) GroupNorm
//! normalises each head's channels per token (eps `norm_eps`) with an affine over all `V`.
//!
//! Forms: fast, `scan = "fused"` (the default) = `rwkv5::rwkv_wkv_fused` (the fused C++ gated
//! scan of GLA on the query shifted one position, the bonus added on the diagonal; CPU f32/f64,
//! the chunked form elsewhere); fast, `scan = "chunked"` = `rwkv5::rwkv_wkv_chunked` (the
//! decayed-linear chunked core with a decay per key channel, the query read one step late, the
//! bonus added on the diagonal); reference =
//! `rwkv5::rwkv_wkv_reference` (fla's `naive_recurrent_rwkv6` loop); step = one update per token
//! with the last input (for Δ) and `S` carried.
//!
//! State: `d + H·(K/H)·(V/H) = d + K·V/H` elements (`d + d²/8` by default), constant in L;
//! Zoology has no RWKV-6 (`state_size_zoology` None).
//!
//! FLOPs ([`crate::flops`] convention), per token: `A` `2·d·5r_p`, the `B_c` `2·5r_p·d`,
//! r, k `2·d·K`, v, g `2·d·V`, the decay LoRA `2·d·r_w + 2·r_w·K`, o `2·V·d`; the chunked core
//! `H·(3·C·k + 2·C·v + 4·k·v)` per position over `⌈L/C⌉·C` (`k = K/H`, `v = V/H`) and the bonus
//! `H·(2k + 2v)` per position; the fused scan counts the decode step at each of the L positions
//! instead of the chunked core and bonus. Decode: the per-token terms plus `H·(5·k·v + 2k + 2v)`. Prefill
//! is the step form.
//!
//! Init: Zoology's rule as for every fla layer here (GLA, DeltaNet): every Linear N(0, 0.02)
//! with zero bias (the decay LoRA's bias too), `μ`, `β` and `u` zero (fla's own values: its
//! `_initialize_weights` does not reach `nn.Parameter`s), GroupNorm weight 1, bias 0. fla's own
//! Linear init (xavier with gain 2^−2.5, LoRA orthogonal ×0.1 with a zero first factor) is what
//! Zoology's `_init_weights` would overwrite (docs/DECISIONS.md, "Matrix-state recurrences").

use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::layers::{split_heads, token_shift, Linear};
use super::gla::GlaScan;
use super::rwkv5::{head_group_norm, rwkv_wkv, rwkv_wkv_reference, rwkv_wkv_step};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rwkv6Config {
    /// `fused` (the C++ gated scan of `gla`, CPU f32/f64; the default) or `chunked` (tensor
    /// operations, any device).
    pub scan: GlaScan,
    /// Key width as a fraction of d_model (fla: 0.5).
    pub expand_k: f64,
    /// Value width as a fraction of d_model (fla: 1).
    pub expand_v: f64,
    /// Number of heads (fla: 4; must divide the key and value widths).
    pub num_heads: i64,
    /// Rank of the data-dependent lerp, per target (fla: 32).
    pub proj_low_rank_dim: i64,
    /// Rank of the decay LoRA (fla: 64).
    pub gate_low_rank_dim: i64,
    /// GroupNorm epsilon (fla: 1e-5).
    pub norm_eps: f64,
    /// Chunk length of the training form (16, as GLA's and RWKV-5's).
    pub chunk_size: i64,
}

impl Default for Rwkv6Config {
    fn default() -> Self {
        Rwkv6Config {
            scan: GlaScan::Fused,
            expand_k: 0.5,
            expand_v: 1.0,
            num_heads: 4,
            proj_low_rank_dim: 32,
            gate_low_rank_dim: 64,
            norm_eps: 1e-5,
            chunk_size: 16,
        }
    }
}

impl Rwkv6Config {
    /// `(K, V) = (int(d·expand_k), int(d·expand_v))`, as fla.
    pub fn widths(&self, d: i64) -> (i64, i64) {
        ((d as f64 * self.expand_k).floor() as i64, (d as f64 * self.expand_v).floor() as i64)
    }
}

#[derive(Debug)]
pub struct Rwkv6 {
    /// `x_proj[0]`: LerpLinear d → 5·r_p with its μ.
    lerp_a: Linear,
    lerp_mu: Tensor,
    /// `x_proj[2]`: `[d, 5·r_p]`, used as five `r_p → d` maps.
    lerp_b: Linear,
    /// `x_bias`: `[5, d]`.
    lerp_bias: Tensor,
    wr: Linear,
    ww1: Linear,
    ww2: Linear,
    wk: Linear,
    wv: Linear,
    wg: Linear,
    bonus: Tensor,
    norm_w: Tensor,
    norm_b: Tensor,
    out: Linear,
    cfg: Rwkv6Config,
    d: i64,
    key_dim: i64,
    value_dim: i64,
}

/// Per-head r, k, log w `[B, H, L, K/H]`, v `[B, H, L, V/H]` and the gate `[B, L, V]`.
struct Inputs {
    r: Tensor,
    k: Tensor,
    v: Tensor,
    w: Tensor,
    g: Tensor,
}

impl Rwkv6 {
    /// The five data-dependent mixes and the projections, from `x` and its shifted copy.
    fn inputs(&self, x: &Tensor, x_prev: &Tensor) -> Inputs {
        let (b, l, d) = x.size3().unwrap();
        let rp = self.cfg.proj_low_rank_dim;
        let delta = x_prev - x;
        let z = self.lerp_a.forward(&(x + &delta * &self.lerp_mu)).tanh().view([b, l, 5, rp]);
        // m[b, t, c, :] = B_c z[b, t, c, :], with B_c = x_proj[2].weight.view(d, 5, r_p)[:, c, :]
        // one bmm over the five targets ([5, B·L, r_p] × [5, r_p, d]); a broadcast matmul of
        // [B, L, 5, 1, r_p] against bw would expand bw to [B·L·5, r_p, d] and back in the backward
        let bw = self.lerp_b.ws.view([d, 5, rp]).permute([1, 2, 0]); // [5, r_p, d]
        let zt = z.view([b * l, 5, rp]).transpose(0, 1);
        let m = zt.bmm(&bw).transpose(0, 1).reshape([b, l, 5, d]) + &self.lerp_bias; // [B, L, 5, d]
        let mix = |c: i64| x + m.select(2, c) * &delta;
        let h = self.cfg.num_heads;
        let w = -(self.ww2.forward(&self.ww1.forward(&mix(1)).tanh())).exp();
        Inputs {
            r: split_heads(&self.wr.forward(&mix(0)), h),
            w: split_heads(&w, h),
            k: split_heads(&self.wk.forward(&mix(2)), h),
            v: split_heads(&self.wv.forward(&mix(3)), h),
            g: self.wg.forward(&mix(4)),
        }
    }

    fn finish(&self, o: &Tensor, g: &Tensor) -> Tensor {
        self.out.forward(&(head_group_norm(o, &self.norm_w, &self.norm_b, self.cfg.norm_eps) * g.silu()))
    }

    fn head_dims(&self) -> (i64, i64) {
        (self.key_dim / self.cfg.num_heads, self.value_dim / self.cfg.num_heads)
    }

    fn token_flops(&self) -> f64 {
        [&self.lerp_a, &self.lerp_b, &self.wr, &self.ww1, &self.ww2, &self.wk, &self.wv, &self.wg, &self.out]
            .iter()
            .map(|l| l.flops())
            .sum()
    }
}

impl Mixer for Rwkv6 {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let i = self.inputs(x, &token_shift(x));
        let o = rwkv_wkv(&i.r, &i.k, &i.v, &i.w, &self.bonus, self.cfg.scan, self.cfg.chunk_size);
        self.finish(&o, &i.g)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let i = self.inputs(x, &token_shift(x));
        self.finish(&rwkv_wkv_reference(&i.r, &i.k, &i.v, &i.w, &self.bonus), &i.g)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.out.ws.kind(), self.out.ws.device());
        let (k, v) = self.head_dims();
        MixerState::new(vec![
            Tensor::zeros([batch, self.d], opts),
            Tensor::zeros([batch, self.cfg.num_heads, k, v], opts),
        ])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let x = x_t.unsqueeze(1);
        let i = self.inputs(&x, &state.tensors[0].unsqueeze(1));
        let o = rwkv_wkv_step(
            &mut state.tensors[1],
            &i.r.select(2, 0),
            &i.k.select(2, 0),
            &i.v.select(2, 0),
            &i.w.select(2, 0),
            &self.bonus,
        );
        state.tensors[0] = x_t.shallow_clone();
        self.finish(&o.unsqueeze(2), &i.g).squeeze_dim(1)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        let (k, v) = self.head_dims();
        self.d + self.cfg.num_heads * k * v
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let (k, v) = self.head_dims();
        let (h, k, v, c) = (self.cfg.num_heads as f64, k as f64, v as f64, self.cfg.chunk_size as f64);
        let tok = self.token_flops();
        let core = h * (3.0 * c * k + 2.0 * c * v + 4.0 * k * v);
        let bonus = h * (2.0 * k + 2.0 * v);
        let step = h * (5.0 * k * v) + bonus;
        // the fused scan runs the decode step at every position (no chunk padding)
        let fwd = match self.cfg.scan {
            GlaScan::Fused => seq_len as f64 * (tok + step),
            GlaScan::Chunked => {
                seq_len as f64 * (tok + bonus) + crate::flops::padded(seq_len, self.cfg.chunk_size) as f64 * core
            }
        };
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + step)
    }
}

/// Largest accepted low rank.
const MAX_RANK: i64 = 4096;

impl MixerKind for Rwkv6 {
    type Config = Rwkv6Config;
    const NAME: &'static str = "rwkv6";
    const ABOUT: &'static str = "RWKV-6 (Finch) time mixing as fla: data-dependent token-shift lerp and decay exp(−exp(LoRA(x))), matrix state, bonus u, GroupNorm + swish gate; chunked";
    const STATE_FORMULA: &'static str =
        "d + K·V/H, K = ⌊d·expand_k⌋, V = ⌊d·expand_v⌋ (S: H·(K/H)·(V/H), last x: d; d + d²/8 by default)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &Rwkv6Config, d: i64, _ctx: &BuildCtx, field: &str) -> Result<()> {
        super::common::bounds::expand_and_heads(field, d, c.expand_k, c.expand_v, c.num_heads, c.widths(d))?;
        int_in(field, "proj_low_rank_dim", c.proj_low_rank_dim, 1, MAX_RANK, "32")?;
        int_in(field, "gate_low_rank_dim", c.gate_low_rank_dim, 1, MAX_RANK, "64")?;
        float_in(field, "norm_eps", c.norm_eps, 0.0, f64::INFINITY, "1e-5")?;
        int_in(field, "chunk_size", c.chunk_size, 1, MAX_SIZE, "16")
    }

    fn build(p: nn::Path, d: i64, c: &Rwkv6Config, ctx: &BuildCtx) -> Result<Self> {
        let (kd, vd) = c.widths(d);
        let s = ctx.init_std;
        let rp = c.proj_low_rank_dim;
        let zeros = |name: &str, shape: &[i64]| p.var(name, shape, nn::Init::Const(0.0));
        Ok(Rwkv6 {
            lerp_a: Linear::new(&p / "x_proj_0", d, 5 * rp, false, s),
            lerp_mu: zeros("x_proj_0_mu", &[d]),
            lerp_b: Linear::new(&p / "x_proj_2", 5 * rp, d, false, s),
            lerp_bias: zeros("x_bias", &[5, d]),
            wr: Linear::new(&p / "r_proj", d, kd, false, s),
            ww1: Linear::new(&p / "w_proj_lora_0", d, c.gate_low_rank_dim, false, s),
            ww2: Linear::new(&p / "w_proj_lora_2", c.gate_low_rank_dim, kd, true, s),
            wk: Linear::new(&p / "k_proj", d, kd, false, s),
            wv: Linear::new(&p / "v_proj", d, vd, false, s),
            wg: Linear::new(&p / "g_proj", d, vd, false, s),
            bonus: zeros("bonus", &[c.num_heads, kd / c.num_heads]),
            norm_w: p.var("g_norm_weight", &[vd], nn::Init::Const(1.0)),
            norm_b: zeros("g_norm_bias", &[vd]),
            out: Linear::new(&p / "o_proj", vd, d, false, s),
            cfg: c.clone(),
            d,
            key_dim: kd,
            value_dim: vd,
        })
    }

    fn suite_variants() -> Vec<Rwkv6Config> {
        vec![
            Rwkv6Config::default(),
            Rwkv6Config {
                num_heads: 2,
                expand_k: 1.0,
                proj_low_rank_dim: 4,
                gate_low_rank_dim: 8,
                ..Default::default()
            },
            Rwkv6Config {
                scan: GlaScan::Chunked,
                num_heads: 2,
                expand_k: 1.0,
                proj_low_rank_dim: 4,
                gate_low_rank_dim: 8,
                chunk_size: 5,
                ..Default::default()
            },
            Rwkv6Config { scan: GlaScan::Chunked, num_heads: 1, expand_v: 0.5, chunk_size: 1, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seed_guard, validate_error};
    use tch::{Device, Kind};

    /// The ddlerp written out per target with explicit index loops over fla's
    /// `x_proj[2].weight.view(d, 5, r_p)` layout, against `inputs`' batched matmul; and the
    /// decay is exp(−exp(LoRA)) ∈ (0, 1).
    #[test]
    fn ddlerp_and_decay_match_their_closed_forms() {
        let _rng = seed_guard(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let (d, rp) = (8i64, 3i64);
        let cfg = Rwkv6Config { proj_low_rank_dim: rp, num_heads: 2, ..Default::default() };
        let m = Rwkv6::build(vs.root(), d, &cfg, &BuildCtx::new(0, 2, 16)).unwrap();
        tch::no_grad(|| {
            for v in [&m.lerp_mu, &m.lerp_bias, &m.ww2.bs.as_ref().unwrap().shallow_clone()] {
                let _ = v.shallow_clone().copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.5));
            }
        });
        let x = Tensor::randn([1, 5, d], (Kind::Float, Device::Cpu));
        let xp = token_shift(&x);
        let i = tch::no_grad(|| m.inputs(&x, &xp));
        let f = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let (xs, xps, mu, bias, a, bw) =
            (f(&x), f(&xp), f(&m.lerp_mu), f(&m.lerp_bias), f(&m.lerp_a.ws), f(&m.lerp_b.ws));
        let (du, ru) = (d as usize, rp as usize);
        let mut want_k = vec![];
        for t in 0..5usize {
            let xt = &xs[t * du..(t + 1) * du];
            let delta: Vec<f64> = (0..du).map(|c| xps[t * du + c] - xt[c]).collect();
            let zin: Vec<f64> = (0..du).map(|c| xt[c] + mu[c] * delta[c]).collect();
            let z: Vec<f64> =
                (0..5 * ru).map(|j| (0..du).map(|c| a[j * du + c] * zin[c]).sum::<f64>().tanh()).collect();
            // target 2 = k
            let xk: Vec<f64> = (0..du)
                .map(|h| {
                    let mh =
                        (0..ru).map(|r| z[2 * ru + r] * bw[h * 5 * ru + 2 * ru + r]).sum::<f64>() + bias[2 * du + h];
                    xt[h] + mh * delta[h]
                })
                .collect();
            want_k.push(xk);
        }
        let xk = Tensor::from_slice(&want_k.concat()).view([1, 5, d]).to_kind(Kind::Float);
        let want = split_heads(&m.wk.forward(&xk), 2);
        let e = rel_err(&i.k, &want);
        assert!(e < 1e-5, "k via ddlerp: rel err {e:.2e}");
        let w = i.w.exp();
        assert!(w.gt(0.0).all().int64_value(&[]) == 1 && w.lt(1.0).all().int64_value(&[]) == 1, "decay outside (0, 1)");
    }

    #[test]
    fn state_size_and_bad_configs() {
        let _rng = seed_guard(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Rwkv6::build(vs.root(), 64, &Rwkv6Config::default(), &BuildCtx::new(0, 2, 16)).unwrap();
        assert_eq!(m.state_size(5), 64 + 64 * 64 / 8);
        assert_eq!(m.state_size_zoology(5), None);
        let e = validate_error(r#"{ name = "rwkv6", num_heads = 3 }"#);
        assert!(e.contains("model.mixer.num_heads"), "{e}");
        let e = validate_error(r#"{ name = "rwkv6", expand_k = 0.0 }"#);
        assert!(e.contains("model.mixer.expand_k"), "{e}");
        let e = validate_error(r#"{ name = "rwkv6", gate_low_rank_dim = 0 }"#);
        assert!(e.contains("model.mixer.gate_low_rank_dim"), "{e}");
        let e = validate_error(r#"{ name = "rwkv6", norm_eps = -1.0 }"#);
        assert!(e.contains("model.mixer.norm_eps"), "{e}");
        let e = validate_error(r#"{ name = "rwkv6", mode = "chunk" }"#);
        assert!(e.contains("mode"), "{e}");
    }
}
