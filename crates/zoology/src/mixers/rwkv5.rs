//! `rwkv5`: RWKV-5 "Eagle" time mixing with matrix-valued state (Peng et al. 2024, "Eagle and
//! Finch"; Zoology's `rwkv5.RWKVTimeMixer`, RWKV-LM v5.2).
//!
//! Token shift `x′_c = μ_c ⊙ x_t + (1 − μ_c) ⊙ x_{t−1}` (x_{−1} = 0) with its own μ for
//! c ∈ {r, k, v, g}; `r = W_r x′_r`, `k = W_k x′_k`, `v = W_v x′_v`, `g = silu(W_g x′_g)` (no
//! biases). With `H` heads of `N = head_size` channels, per head a constant decay per key channel
//! `w = exp(−exp(time_decay)) ∈ (0, 1)` and a bonus `u = time_faaaa`:
//!
//! ```text
//! o_t = r_tᵀ (S_{t−1} + diag(u) k_t v_tᵀ)                  (N × N state per head)
//! S_t = diag(w) S_{t−1} + k_t v_tᵀ                          (S_{−1} = 0)
//! y   = W_o( GroupNorm_H(o / 8) ⊙ g )                        (8 = head_size_divisor)
//! ```
//! GroupNorm normalises each head's `N` channels per token (eps 1e-5) with a learned affine over
//! all `d` channels (weight 1, bias 0 at init). No `1/√N` scale on r (RWKV's kernel has none).
//!
//! Forms:
//! - fast (training), `scan = "fused"` (the default): [`rwkv_wkv_fused`], the same shifts and
//!   bonus as the chunked form below around the fused C++ gated scan of GLA
//!   ([`fused::gla`], the constant decay expanded over time), on CPU f32/f64 tensors (under bf16
//!   autocast the scan runs in fp32); other devices and kinds run the chunked form.
//! - fast (training), `scan = "chunked"`: [`rwkv_wkv_chunked`]. `r_tᵀ S_{t−1}` is gated linear attention read one
//!   step late: with the query shifted one position left (`q′_s = r_{s+1}`) the chunked
//!   decayed-linear core (`common::decayed_linear`, a decay per key channel, exponents ≤ 0)
//!   gives `q′_sᵀ S_s = r_{s+1}ᵀ S_s`, which is shifted back one position right; the bonus
//!   `(r_t ⊙ u ⊙ k_t)·1 v_t` (the diagonal) is added separately. Causal: position t reads
//!   `S_{t−1}` and its own k, v, r only.
//! - reference: [`rwkv_wkv_reference`], the kernel's per-token loop over an explicit state.
//! - step: state = the last input (token shift, `d`) and `S` (`H·N·N`).
//!
//! State: `d + H·N² = d·(N + 1)` elements, constant in L (`N = min(head_size, d)`). Zoology's
//! RWKV-5 defines no `state_size` (`state_size_zoology` is None).
//!
//! FLOPs ([`crate::flops`] convention): r, k, v, g, o Linears `10·d²` per token; the fused scan
//! counts the decode step's `H·(5N² + 4N)` at each of the L positions; the chunked core
//! with a decay per key channel `H·(3·C·N + 2·C·N + 4·N²)` per position over `⌈L/C⌉·C` (as
//! `common::decayed_linear`), and the bonus `H·(2N + 2N)` per position. Decode: `10·d²` plus per
//! head `r·S` `2N²`, decay `N²`, update `2N²` and the bonus `4N`, i.e. `H·(5N² + 4N)`. Prefill is
//! the step form.
//!
//! Init as Zoology's `RWKVTimeMixer` (v5): `time_decay = −6 + 5·(c/(d−1))^{0.7+1.3·ρ₀}`,
//! `time_faaaa = ρ₀·(1 − c/(d−1)) + 0.1·((c+1) mod 3 − 1)`, mixes `μ_k = (c/d)^{ρ₁}`,
//! `μ_v = μ_k + 0.3·ρ₀`, `μ_r = μ_g = (c/d)^{0.5·ρ₁}` with `ρ₀ = layer/(n−1)`, `ρ₁ = 1 − layer/n`,
//! `n = n_layer` (Zoology's default 12, never passed; 0 = the model's depth), as for `rwkv`.
//! Linear layers (`linear_init`): `"pytorch"` (default) U(±1/√fan_in): the mixer is a
//! `torch.jit.ScriptModule` like RWKV-4's, so Zoology's `_init_weights` does not reach them;
//! `"normal"`: N(0, 0.02), output N(0, 0.02/√(2·n_layers)) (as `rwkv`).
//!
//! Departures from the source (docs/DECISIONS.md, "Matrix-state recurrences"): Zoology fixes
//! the head size at 64 (a compiled CUDA constant) and asserts it; `head_size` is an option here
//! (default 64) and a model narrower than the head size gets one head of width d
//! (`N = min(head_size, d)`), where Zoology cannot build at all. The computation is f32
//! throughout (Zoology casts r, k, v, w, u to bf16 for its kernel).

use super::common::bounds::{int_in, MAX_SIZE};
use super::common::decayed_linear::chunked_linear_attention;
use super::common::fused;
use super::common::layers::{merge_heads, split_heads, time_mix, token_shift, Linear};
use super::gla::GlaScan;
use super::rwkv::{rwkv_ratios, RwkvLinearInit};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// RWKV-5's `head_size_divisor`: the wkv output is divided by it before the GroupNorm.
const HEAD_SIZE_DIVISOR: f64 = 8.0;
/// `nn.GroupNorm`'s default epsilon.
const GROUP_NORM_EPS: f64 = 1e-5;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rwkv5Config {
    /// `fused` (the C++ gated scan of `gla`, CPU f32/f64; the default) or `chunked` (tensor
    /// operations, any device).
    pub scan: GlaScan,
    /// Channels per head (RWKV-5 / Zoology: 64); a model narrower than this gets one head of
    /// width d_model.
    pub head_size: i64,
    /// Chunk length of the training form (16: the per-channel decay materialises
    /// `[B, H, L/C, C, C, N]`, as GLA's).
    pub chunk_size: i64,
    /// Depth the layer-dependent init assumes (Zoology: 12, never passed); 0 = the model's.
    pub n_layer: i64,
    /// `pytorch` (Zoology: its ScriptModule keeps PyTorch's default) or `normal`.
    pub linear_init: RwkvLinearInit,
}

impl Default for Rwkv5Config {
    fn default() -> Self {
        Rwkv5Config {
            scan: GlaScan::Fused,
            head_size: 64,
            chunk_size: 16,
            n_layer: 12,
            linear_init: RwkvLinearInit::Pytorch,
        }
    }
}

/// `N = min(head_size, d)`: the head width actually used.
pub(crate) fn effective_head(head_size: i64, d: i64) -> i64 {
    head_size.min(d).max(1)
}

/// Checks `head_size` against the width: `1 ≤ head_size` and `min(head_size, d)` divides `d`.
pub(crate) fn check_head_size(head_size: i64, d: i64, key: &str, field: &str) -> Result<()> {
    int_in(field, key, head_size, 1, MAX_SIZE, "64")?;
    let n = effective_head(head_size, d);
    if d % n != 0 {
        return Err(config_err(
            format!("{field}.{key}"),
            format!("must divide d_model = {d} (or be ≥ it for a single head); got {head_size}"),
        ));
    }
    Ok(())
}

/// Checks the RWKV init depth as `rwkv` does.
pub(crate) fn check_n_layer(n_layer: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
    if n_layer != 0 && !(2..=MAX_SIZE).contains(&n_layer) {
        return Err(config_err(
            format!("{field}.n_layer"),
            format!("must be ≥ 2 (the depth RWKV's init divides by n − 1; Zoology: 12), or 0 for the model's n_layers (got {n_layer})"),
        ));
    }
    if n_layer != 0 && ctx.layer_idx as i64 >= n_layer {
        return Err(config_err(
            format!("{field}.n_layer"),
            format!(
                "is {n_layer} but this is layer {} of {}: RWKV's init needs layer < n_layer; raise it or set 0 for the model's depth",
                ctx.layer_idx, ctx.n_layers
            ),
        ));
    }
    Ok(())
}

/// Per-head GroupNorm of RWKV-5/6/7: `o: [B, H, L, V]` normalised over each head's `V`
/// channels per token (biased variance, `eps`), then the affine `w, b: [H·V]`; returns
/// `[B, L, H·V]`.
pub(crate) fn head_group_norm(o: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let dims = [-1i64];
    let mean = o.mean_dim(dims.as_slice(), true, o.kind());
    let var = (o - &mean).square().mean_dim(dims.as_slice(), true, o.kind());
    merge_heads(&((o - mean) * (var + eps).rsqrt())) * w + b
}

/// The RWKV-5/6 wkv, chunked: per head `o_t = r_tᵀ(S_{t−1} + diag(u) k_t v_tᵀ)`,
/// `S_t = diag(e^{g_t}) S_{t−1} + k_t v_tᵀ`. `r, k, g: [B, H, L, K]` (`g` the log decay ≤ 0
/// applied at step t), `v: [B, H, L, V]`, `u: [H, K]`. Returns `[B, H, L, V]`.
///
/// `r_tᵀ S_{t−1}` is the decayed linear attention `q′_sᵀ S_s` at `s = t − 1` with
/// `q′_s = r_{s+1}`: the query is shifted one position left (a zero query at the end), the chunked
/// core runs unchanged, and its output is shifted one position right (zero at t = 0).
pub fn rwkv_wkv_chunked(r: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, u: &Tensor, chunk: i64) -> Tensor {
    read_late_with_bonus(r, k, v, u, |q_next| chunked_linear_attention(q_next, k, v, Some(g), chunk).0)
}

/// [`rwkv_wkv_chunked`] with the fused C++ gated scan ([`fused::gla`]) as the core in place of the
/// chunked one (same shifts, same bonus); only where [`fused::gla_applies`] (CPU f32/f64, or bf16
/// under autocast, the scan then in fp32). `g` must be `[B, H, L, K]` (expand a constant decay).
pub fn rwkv_wkv_fused(r: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, u: &Tensor) -> Tensor {
    read_late_with_bonus(r, k, v, u, |q_next| fused::gla_fp32(q_next, k, v, g))
}

/// The training forms' wkv: fused where `scan` asks for it and [`fused::gla_applies`], else
/// chunked (other devices and kinds).
pub fn rwkv_wkv(r: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, u: &Tensor, scan: GlaScan, chunk: i64) -> Tensor {
    if scan == GlaScan::Fused && fused::gla_applies(r) {
        rwkv_wkv_fused(r, k, v, g, u)
    } else {
        rwkv_wkv_chunked(r, k, v, g, u, chunk)
    }
}

/// `o_t = r_tᵀ S_{t−1} + (r_t ⊙ u ⊙ k_t)·1 v_t` from a decayed-linear `core` that maps queries
/// `q′` to `o′_s = q′_sᵀ S_s` (`S` from k, v and the decay): it gets `q′_s = r_{s+1}` (zero at the
/// end) and its output is shifted one position right (zero at t = 0).
fn read_late_with_bonus(
    r: &Tensor,
    k: &Tensor,
    v: &Tensor,
    u: &Tensor,
    core: impl FnOnce(&Tensor) -> Tensor,
) -> Tensor {
    let (b, h, l, kd) = r.size4().unwrap();
    let dv = v.size()[3];
    let zq = Tensor::zeros([b, h, 1, kd], (r.kind(), r.device()));
    let q_next = Tensor::cat(&[r.narrow(2, 1, l - 1), zq], 2);
    let o_next = core(&q_next);
    let zo = Tensor::zeros([b, h, 1, dv], (o_next.kind(), o_next.device()));
    let o_state = Tensor::cat(&[zo, o_next.narrow(2, 0, l - 1)], 2);
    let bonus = (r * u.unsqueeze(1) * k).sum_dim_intlist([-1i64].as_slice(), true, r.kind());
    o_state + bonus * v
}

/// Reference for [`rwkv_wkv_chunked`], sharing no helper with it: the kernel's loop over an
/// explicit `[B, H, K, V]` state, one token at a time.
pub fn rwkv_wkv_reference(r: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, u: &Tensor) -> Tensor {
    let (b, h, l, kd) = r.size4().unwrap();
    let dv = v.size()[3];
    let mut s = Tensor::zeros([b, h, kd, dv], (r.kind(), r.device()));
    let u = u.unsqueeze(0).unsqueeze(-1); // [1, H, K, 1]
    let mut outs = Vec::with_capacity(l as usize);
    for t in 0..l {
        let (rt, kt, vt) = (r.select(2, t), k.select(2, t), v.select(2, t));
        let kv = kt.unsqueeze(-1) * vt.unsqueeze(-2); // [B, H, K, V]
        let read = &s + &u * &kv;
        outs.push((rt.unsqueeze(-1) * read).sum_dim_intlist([-2i64].as_slice(), false, r.kind()));
        s = g.select(2, t).exp().unsqueeze(-1) * s + kv;
    }
    Tensor::stack(&outs, 2)
}

/// One token of the wkv: `r, k, g: [B, H, K]`, `v: [B, H, V]`, `u: [H, K]`; updates
/// `s: [B, H, K, V]` and returns `o: [B, H, V]`.
pub fn rwkv_wkv_step(s: &mut Tensor, r: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, u: &Tensor) -> Tensor {
    let read = r.unsqueeze(-2).matmul(&*s).squeeze_dim(-2); // r·S, [B, H, V]
    let bonus = (r * u * k).sum_dim_intlist([-1i64].as_slice(), true, r.kind());
    *s = g.exp().unsqueeze(-1) * &*s + k.unsqueeze(-1) * v.unsqueeze(-2);
    read + bonus * v
}

#[derive(Debug)]
pub struct Rwkv5 {
    receptance: Linear,
    key: Linear,
    value: Linear,
    gate: Linear,
    output: Linear,
    time_mix_k: Tensor,
    time_mix_v: Tensor,
    time_mix_r: Tensor,
    time_mix_g: Tensor,
    time_decay: Tensor,
    time_faaaa: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    heads: i64,
    chunk: i64,
    scan: GlaScan,
    d: i64,
}

impl Rwkv5 {
    fn n(&self) -> i64 {
        self.d / self.heads
    }

    /// r, k, v `[B, H, L, N]`, the gate `[B, L, d]`, the log decay `[1, H, 1, N]` and u `[H, N]`
    /// from `x` and its shifted copy (`[B, L, d]` each).
    fn inputs(&self, x: &Tensor, x_prev: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
        let h = self.heads;
        let r = split_heads(&self.receptance.forward(&time_mix(x, x_prev, &self.time_mix_r)), h);
        let k = split_heads(&self.key.forward(&time_mix(x, x_prev, &self.time_mix_k)), h);
        let v = split_heads(&self.value.forward(&time_mix(x, x_prev, &self.time_mix_v)), h);
        let g = self.gate.forward(&time_mix(x, x_prev, &self.time_mix_g)).silu();
        (r, k, v, g)
    }

    /// `log w = −exp(time_decay)`, `[1, H, 1, N]`.
    fn log_decay(&self) -> Tensor {
        (-self.time_decay.exp()).view([1, self.heads, 1, self.n()])
    }

    fn u(&self) -> Tensor {
        self.time_faaaa.view([self.heads, self.n()])
    }

    fn finish(&self, o: &Tensor, g: &Tensor) -> Tensor {
        let normed = head_group_norm(&(o / HEAD_SIZE_DIVISOR), &self.ln_w, &self.ln_b, GROUP_NORM_EPS);
        self.output.forward(&(normed * g))
    }

    fn token_flops(&self) -> f64 {
        [&self.receptance, &self.key, &self.value, &self.gate, &self.output].iter().map(|l| l.flops()).sum()
    }
}

impl Mixer for Rwkv5 {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let (r, k, v, g) = self.inputs(x, &token_shift(x));
        let w = self.log_decay().expand(r.size(), false);
        self.finish(&rwkv_wkv(&r, &k, &v, &w, &self.u(), self.scan, self.chunk), &g)
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (r, k, v, g) = self.inputs(x, &token_shift(x));
        let w = self.log_decay().expand(r.size(), false);
        self.finish(&rwkv_wkv_reference(&r, &k, &v, &w, &self.u()), &g)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.time_decay.kind(), self.time_decay.device());
        let n = self.n();
        MixerState::new(vec![Tensor::zeros([batch, self.d], opts), Tensor::zeros([batch, self.heads, n, n], opts)])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let x = x_t.unsqueeze(1);
        let (r, k, v, g) = self.inputs(&x, &state.tensors[0].unsqueeze(1));
        let w = self.log_decay().select(2, 0);
        let o = rwkv_wkv_step(&mut state.tensors[1], &r.select(2, 0), &k.select(2, 0), &v.select(2, 0), &w, &self.u());
        state.tensors[0] = x_t.shallow_clone();
        self.finish(&o.unsqueeze(2), &g).squeeze_dim(1)
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        self.d + self.heads * self.n() * self.n()
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let (h, n, c) = (self.heads as f64, self.n() as f64, self.chunk as f64);
        let tok = self.token_flops();
        let core = h * (3.0 * c * n + 2.0 * c * n + 4.0 * n * n);
        let bonus = h * 4.0 * n;
        let step = h * (5.0 * n * n + 4.0 * n);
        // the fused scan runs the decode step at every position (no chunk padding)
        let fwd = match self.scan {
            GlaScan::Fused => seq_len as f64 * (tok + step),
            GlaScan::Chunked => {
                seq_len as f64 * (tok + bonus) + crate::flops::padded(seq_len, self.chunk) as f64 * core
            }
        };
        crate::flops::MixerFlops::stepwise(fwd, 0.0, seq_len, |_| tok + step)
    }
}

/// A `[d]` parameter initialised to `init`.
pub(crate) fn var_from(p: &nn::Path, name: &str, init: &Tensor) -> Tensor {
    let t = p.var(name, &init.size(), nn::Init::Const(0.0));
    tch::no_grad(|| t.shallow_clone().copy_(init));
    t
}

/// A bias-free Linear `d_in → d_out` under RWKV's `linear_init`.
pub(crate) fn rwkv_linear(p: nn::Path, d_in: i64, d_out: i64, std: f64, init: RwkvLinearInit) -> Linear {
    let lin = Linear::new(p, d_in, d_out, false, std);
    if init == RwkvLinearInit::Pytorch {
        let b = 1.0 / (d_in as f64).sqrt();
        tch::no_grad(|| {
            let _ = lin.ws.shallow_clone().uniform_(-b, b);
        });
    }
    lin
}

impl MixerKind for Rwkv5 {
    type Config = Rwkv5Config;
    const NAME: &'static str = "rwkv5";
    const ABOUT: &'static str = "RWKV-5 (Eagle) time mixing: matrix state per head, constant per-channel decay, bonus u, GroupNorm + SiLU gate; chunked";
    const STATE_FORMULA: &'static str = "d·(N + 1), N = min(head_size, d) (S: H·N² = d·N, last x: d)";
    const CONSTANT_STATE: bool = true;

    fn validate(c: &Rwkv5Config, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        check_head_size(c.head_size, d, "head_size", field)?;
        int_in(field, "chunk_size", c.chunk_size, 1, MAX_SIZE, "16")?;
        check_n_layer(c.n_layer, ctx, field)
    }

    fn build(p: nn::Path, d: i64, c: &Rwkv5Config, ctx: &BuildCtx) -> Result<Self> {
        let dev = p.device();
        let depth = if c.n_layer == 0 { ctx.n_layers } else { c.n_layer as usize };
        let (r0, r1, ddd) = rwkv_ratios(ctx.layer_idx, depth, d, dev);
        let ch = Tensor::arange(d, (Kind::Float, dev));
        let frac = &ch / (d.max(2) - 1) as f64;
        let decay = frac.pow_tensor_scalar(0.7 + 1.3 * r0) * 5.0 - 6.0;
        let zigzag = ((&ch + 1.0).remainder(3.0) - 1.0) * 0.1;
        let faaaa = (-&frac + 1.0) * r0 + zigzag;
        let n = effective_head(c.head_size, d);
        let lin = |name: &str, std: f64| rwkv_linear(&p / name, d, d, std, c.linear_init);
        Ok(Rwkv5 {
            receptance: lin("receptance", ctx.init_std),
            key: lin("key", ctx.init_std),
            value: lin("value", ctx.init_std),
            gate: lin("gate", ctx.init_std),
            output: lin("output", ctx.out_std),
            time_mix_k: var_from(&p, "time_mix_k", &ddd.pow_tensor_scalar(r1)),
            time_mix_v: var_from(&p, "time_mix_v", &(ddd.pow_tensor_scalar(r1) + 0.3 * r0)),
            time_mix_r: var_from(&p, "time_mix_r", &ddd.pow_tensor_scalar(0.5 * r1)),
            time_mix_g: var_from(&p, "time_mix_g", &ddd.pow_tensor_scalar(0.5 * r1)),
            time_decay: var_from(&p, "time_decay", &decay),
            time_faaaa: var_from(&p, "time_faaaa", &faaaa),
            ln_w: p.var("ln_x_weight", &[d], nn::Init::Const(1.0)),
            ln_b: p.var("ln_x_bias", &[d], nn::Init::Const(0.0)),
            heads: d / n,
            chunk: c.chunk_size,
            scan: c.scan,
            d,
        })
    }

    fn suite_variants() -> Vec<Rwkv5Config> {
        vec![
            Rwkv5Config::default(),
            Rwkv5Config { head_size: 4, n_layer: 0, linear_init: RwkvLinearInit::Normal, ..Default::default() },
            Rwkv5Config {
                scan: GlaScan::Chunked,
                head_size: 4,
                chunk_size: 5,
                n_layer: 0,
                linear_init: RwkvLinearInit::Normal,
            },
            Rwkv5Config { scan: GlaScan::Chunked, head_size: 8, chunk_size: 1, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seed_guard, validate_error};
    use tch::Device;

    /// Strong decays (log w down to −30 per step, w ≈ 1e-13) and long chunks: the chunked wkv
    /// stays finite and matches the explicit loop evaluated in f64.
    #[test]
    fn chunked_wkv_matches_the_loop_in_f64_for_strong_decays() {
        let _rng = seed_guard(3);
        let (b, h, l, k, v) = (2, 2, 29, 4, 3);
        let o = (Kind::Float, Device::Cpu);
        let (r, kk, vv) =
            (Tensor::randn([b, h, l, k], o), Tensor::randn([b, h, l, k], o), Tensor::randn([b, h, l, v], o));
        let g = -(Tensor::rand([b, h, l, k], o) * 30.0);
        let u = Tensor::randn([h, k], o);
        let want = rwkv_wkv_reference(
            &r.to_kind(Kind::Double),
            &kk.to_kind(Kind::Double),
            &vv.to_kind(Kind::Double),
            &g.to_kind(Kind::Double),
            &u.to_kind(Kind::Double),
        );
        for chunk in [1, 4, 16, 64] {
            let got = rwkv_wkv_chunked(&r, &kk, &vv, &g, &u, chunk);
            assert!(bool::try_from(got.isfinite().all()).unwrap(), "chunk {chunk}: not finite");
            let e = rel_err(&got.to_kind(Kind::Double), &want);
            assert!(e < 1e-5, "chunk {chunk}: rel err {e:.2e}");
        }
        let got = rwkv_wkv_fused(&r, &kk, &vv, &g, &u);
        assert!(bool::try_from(got.isfinite().all()).unwrap(), "fused: not finite");
        let e = rel_err(&got.to_kind(Kind::Double), &want);
        assert!(e < 1e-5, "fused: rel err {e:.2e}");
        // the step form, token by token, from an empty state
        let mut s = Tensor::zeros([b, h, k, v], o);
        let steps: Vec<Tensor> = (0..l)
            .map(|t| rwkv_wkv_step(&mut s, &r.select(2, t), &kk.select(2, t), &vv.select(2, t), &g.select(2, t), &u))
            .collect();
        let e = rel_err(&Tensor::stack(&steps, 2).to_kind(Kind::Double), &want);
        assert!(e < 1e-5, "step: rel err {e:.2e}");
    }

    /// f64: the fused wkv (the GLA kernel on the shifted query, plus the bonus) and its gradients
    /// in r, k, v, the decay and u against autograd through the explicit loop; L = 1 and a length
    /// past the kernel's checkpoint interval (16).
    #[test]
    fn fused_wkv_matches_the_loop_values_and_all_gradients_f64() {
        let o = (Kind::Double, Device::Cpu);
        for (seed, (b, h, l, k, v)) in [(2, 2, 21, 4, 3), (1, 1, 1, 3, 2), (1, 3, 7, 5, 6)].into_iter().enumerate() {
            let _rng = seed_guard(10 + seed as i64);
            let leaf = |t: Tensor| t.set_requires_grad(true);
            let ins = [
                leaf(Tensor::randn([b, h, l, k], o)),
                leaf(Tensor::randn([b, h, l, k], o)),
                leaf(Tensor::randn([b, h, l, v], o)),
                leaf(-(Tensor::rand([b, h, l, k], o) * 3.0)),
                leaf(Tensor::randn([h, k], o)),
            ];
            let w = Tensor::randn([b, h, l, v], o);
            let grads = |y: Tensor| {
                let refs: Vec<&Tensor> = ins.iter().collect();
                let gs = Tensor::run_backward(&[(&y * &w).sum(Kind::Double)], &refs, false, false);
                // zero where an input is unused (the decay at L = 1)
                let gs: Vec<Tensor> =
                    gs.into_iter().zip(&ins).map(|(g, p)| if g.defined() { g } else { p.zeros_like() }).collect();
                (y.detach(), gs)
            };
            let (want, want_g) = grads(rwkv_wkv_reference(&ins[0], &ins[1], &ins[2], &ins[3], &ins[4]));
            let (got, got_g) = grads(rwkv_wkv_fused(&ins[0], &ins[1], &ins[2], &ins[3], &ins[4]));
            let e = rel_err(&got, &want);
            assert!(e < 1e-12, "L={l}: values rel err {e:.2e}");
            for ((name, g), wg) in ["r", "k", "v", "g", "u"].iter().zip(&got_g).zip(&want_g) {
                let scale = wg.norm().double_value(&[]).max(1.0);
                let e = (g - wg).norm().double_value(&[]) / scale;
                assert!(e < 1e-11, "L={l}: d{name} err {e:.2e}");
            }
        }
    }

    /// The bonus is the only path from (k_t, v_t) to o_t: with u = 0, o_0 = 0 and o_t does not
    /// depend on v_t; with u ≠ 0 it does.
    #[test]
    fn the_current_token_enters_only_through_the_bonus() {
        let _rng = seed_guard(4);
        let o = (Kind::Float, Device::Cpu);
        let (r, k, v) =
            (Tensor::randn([1, 1, 6, 3], o), Tensor::randn([1, 1, 6, 3], o), Tensor::randn([1, 1, 6, 2], o));
        let g = Tensor::full([1, 1, 6, 3], -0.5, o);
        let zero_u = Tensor::zeros([1, 3], o);
        let y = rwkv_wkv_chunked(&r, &k, &v, &g, &zero_u, 4);
        assert_eq!(y.select(2, 0).abs().max().double_value(&[]), 0.0);
        let v2 = v.copy();
        let _ = v2.narrow(2, 5, 1).fill_(7.0);
        let y2 = rwkv_wkv_chunked(&r, &k, &v2, &g, &zero_u, 4);
        assert!(y.allclose(&y2, 0.0, 0.0, false), "without bonus, o_t must not see v_t");
        let u = Tensor::ones([1, 3], o);
        let (a, b2) = (rwkv_wkv_chunked(&r, &k, &v, &g, &u, 4), rwkv_wkv_chunked(&r, &k, &v2, &g, &u, 4));
        assert!(!a.select(2, 5).allclose(&b2.select(2, 5), 1e-6, 1e-6, false));
    }

    /// Zoology's init vectors (layer 1 of n_layer = 12), PyTorch-default Linears, GroupNorm at
    /// weight 1 / bias 0, the head split, and the state size.
    #[test]
    fn init_and_shapes_are_zoologys() {
        let _rng = seed_guard(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let d = 128i64;
        let m = Rwkv5::build(vs.root(), d, &Rwkv5Config::default(), &BuildCtx::new(1, 2, 64)).unwrap();
        assert_eq!((m.heads, m.n()), (2, 64));
        assert_eq!(m.state_size(10), d + 2 * 64 * 64);
        assert_eq!(m.state_size_zoology(10), None);
        let (r0, r1) = (1.0 / 11.0, 1.0 - 1.0 / 12.0);
        let f = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap();
        let (dec, faa, mk, mv, mr, mg) = (
            f(&m.time_decay),
            f(&m.time_faaaa),
            f(&m.time_mix_k),
            f(&m.time_mix_v),
            f(&m.time_mix_r),
            f(&m.time_mix_g),
        );
        for c in 0..d as usize {
            let fr = c as f64 / (d - 1) as f64;
            let dd = c as f64 / d as f64;
            let want = [
                -6.0 + 5.0 * fr.powf(0.7 + 1.3 * r0),
                r0 * (1.0 - fr) + (((c + 1) % 3) as f64 - 1.0) * 0.1,
                dd.powf(r1),
                dd.powf(r1) + 0.3 * r0,
                dd.powf(0.5 * r1),
                dd.powf(0.5 * r1),
            ];
            for (got, w) in [dec[c], faa[c], mk[c], mv[c], mr[c], mg[c]].iter().zip(want) {
                assert!((got - w).abs() < 1e-5, "channel {c}: {got} vs {w}");
            }
        }
        let b = 1.0 / (d as f64).sqrt();
        for lin in [&m.receptance, &m.key, &m.value, &m.gate, &m.output] {
            let (mx, sd) = (lin.ws.abs().max().double_value(&[]), lin.ws.std(true).double_value(&[]));
            assert!(mx <= b && mx > 0.95 * b && (sd - b / 3f64.sqrt()).abs() < 0.005, "max {mx}, std {sd}");
        }
        // a narrow model: one head of width d
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Rwkv5::build(vs.root(), 16, &Rwkv5Config::default(), &BuildCtx::new(0, 2, 64)).unwrap();
        assert_eq!((m.heads, m.n(), m.state_size(3)), (1, 16, 16 + 256));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = validate_error(r#"{ name = "rwkv5", head_size = 6 }"#);
        assert!(e.contains("model.mixer.head_size") && e.contains("divide"), "{e}");
        let e = validate_error(r#"{ name = "rwkv5", head_size = 0 }"#);
        assert!(e.contains("model.mixer.head_size"), "{e}");
        let e = validate_error(r#"{ name = "rwkv5", chunk_size = 0 }"#);
        assert!(e.contains("model.mixer.chunk_size"), "{e}");
        let e = validate_error(r#"{ name = "rwkv5", n_layer = 1 }"#);
        assert!(e.contains("model.mixer.n_layer"), "{e}");
        let e = validate_error(r#"{ name = "rwkv5", head_dim = 4 }"#);
        assert!(e.contains("head_dim"), "{e}");
    }
}
