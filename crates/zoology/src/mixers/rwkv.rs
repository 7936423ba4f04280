//! `rwkv`: RWKV-4 time mixing (Zoology's `rwkv.RWKVTimeMixer`, Peng et al. 2023).
//!
//! Token shift `x′ = μ ⊙ x_t + (1 − μ) ⊙ x_{t−1}` (x_{−1} = 0), with separate μ for r, k, v;
//! `r = W_r x′_r`, `k = W_k x′_k`, `v = W_v x′_v` (no biases). Per channel, with the decay
//! `w = −exp(time_decay)` and the bonus `u = time_first`:
//!
//! ```text
//! wkv_t = (a_{t−1} + e^{u+k_t} v_t) / (b_{t−1} + e^{u+k_t})
//! a_t   = e^w a_{t−1} + e^{k_t} v_t,     b_t = e^w b_{t−1} + e^{k_t}     (a_{−1} = b_{−1} = 0)
//! out   = W_o (σ(r) ⊙ wkv)
//! ```
//! i.e. `wkv_t = Σ_{s<t} e^{(t−1−s)w + k_s} v_s + e^{u+k_t} v_t`, normalised by the same sum
//! without `v`. Every form keeps `a` and `b` as `(aa, bb, p)` with `a = aa·e^p` and rescales by a
//! running maximum (log-sum-exp), as the RWKV CUDA kernel does, so nothing overflows in f32.
//!
//! Forms:
//! - reference: the kernel's per-step recurrence over `(aa, bb, p)`, one step per position;
//! - fast (training), `scan = "fused"` (the default): the C++ WKV of
//!   [`super::common::fused::wkv`], one pass over positions per (row, block of channels) with
//!   the `(aa, bb, p)` state in registers and its own backward (checkpointed state, the state's
//!   adjoints carried with the same rescaling); CPU tensors (f32, f64) only, the chunked form
//!   elsewhere. O(L·d) work and memory;
//! - fast, `scan = "chunked"`: chunks of `chunk_size` positions. Within a chunk, a masked pairwise
//!   log-weight tensor `[C, C]` per channel (`(i−1−j)w + k_j` below the diagonal, `u + k_i` on
//!   it), plus one column for the state carried into the chunk (`i·w + p`), all normalised by
//!   their maximum; across chunks the `(aa, bb, p)` state is carried by a loop over the L/C
//!   chunks on `[B, D]` tensors. Work O(L·C·D); autodiff ops O(L/C);
//! - step: state = last input (token shift) and `(aa, bb, p)`: `4·d` elements per sequence.
//!
//! FLOPs ([`crate::flops`] convention): 4 Linears `8·d²` per token; the fused wkv the step's
//! `12·d` per position; the chunked wkv `4·C·d` per position over `L_p = ⌈L/C⌉·C` (numerator and denominator multiply-adds over
//! every pair of a `C×C` block, masked ones included) plus `4·d` for the carried state. Decode:
//! `8·d² + 12·d` (the stabilised wkv step, 12 per channel), constant in L. Prefill is the step
//! form.
//!
//! Init as in RWKV-4 / Zoology: decay speeds `−5 + 8·(c/(d−1))^{0.7+1.3·ρ₀}`, `time_first =
//! ln 0.3 + zigzag`, mixes `(c/d)^{ρ₁}` with `ρ₀ = layer/(n−1)`, `ρ₁ = 1 − layer/n`, where n is
//! `n_layer`: Zoology's `RWKVTimeMixer` takes `n_layer=12` by default and its model never passes
//! one, so its 2-layer models use n = 12 (the default here); `n_layer = 0` uses the model's
//! depth instead. Linear layers (`linear_init`): `"pytorch"` (default) is PyTorch's default
//! U(±1/√fan_in) — the mixer is a `torch.jit.ScriptModule`, whose Linear submodules escape
//! Zoology's `_init_weights` (and `init_rwkv` is never called); `"normal"` applies Zoology's rule
//! for every other mixer, N(0, 0.02) with the output N(0, 0.02/√(2·n_layers)).

use super::common::bounds::{int_in, MAX_SIZE};
use super::common::chunking::ChunkLayout;
use super::common::fused::{fused_supported, wkv};
use super::common::layers::{time_mix, token_shift, Linear};
use super::{linear_params, BuildCtx, Mixer, MixerKind, MixerMemory, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Log-weight of "nothing yet": finite so that differences never produce NaN.
const NEG: f64 = -1e30;

/// Init of the r, k, v and output Linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RwkvLinearInit {
    /// PyTorch's default U(±1/√fan_in) (what Zoology's ScriptModule keeps).
    Pytorch,
    /// Zoology's rule for other mixers: N(0, 0.02), output N(0, 0.02/√(2·n_layers)).
    Normal,
}

/// Which WKV the training form runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RwkvScan {
    /// The fused C++ WKV with its own backward (CPU; the chunked form on other devices).
    Fused,
    /// Chunks of `chunk_size` in tensor operations (any device).
    Chunked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RwkvConfig {
    /// `fused` (CPU kernel, the default) or `chunked` (tensor operations).
    pub scan: RwkvScan,
    /// Positions per chunk of the chunked form (memory grows as B·L·chunk_size·d).
    pub chunk_size: i64,
    /// Depth the layer-dependent init assumes (Zoology: 12, never passed); 0 = the model's.
    pub n_layer: i64,
    /// `pytorch` (Zoology) or `normal`.
    pub linear_init: RwkvLinearInit,
}

impl Default for RwkvConfig {
    fn default() -> Self {
        RwkvConfig { scan: RwkvScan::Fused, chunk_size: 8, n_layer: 12, linear_init: RwkvLinearInit::Pytorch }
    }
}

#[derive(Debug)]
pub struct Rwkv {
    key: Linear,
    value: Linear,
    receptance: Linear,
    output: Linear,
    time_decay: Tensor,
    time_first: Tensor,
    mix_k: Tensor,
    mix_v: Tensor,
    mix_r: Tensor,
    chunk: i64,
    scan: RwkvScan,
    d: i64,
}

/// The RWKV-4 per-channel init vectors for layer `layer` of `n`: (ρ₀, ρ₁, c/d). (`n = 1`
/// is treated as 2 in ρ₀, where RWKV divides by n − 1.)
pub(crate) fn rwkv_ratios(layer: usize, n: usize, d: i64, dev: tch::Device) -> (f64, f64, Tensor) {
    let r0 = layer as f64 / (n.max(2) - 1) as f64;
    let r1 = 1.0 - layer as f64 / n.max(1) as f64;
    let ddd = Tensor::arange(d, (Kind::Float, dev)) / d as f64;
    (r0, r1, ddd)
}

/// One step of the stabilised WKV recurrence on `[B, D]` tensors. Returns `wkv_t` and the
/// state after absorbing `(k_t, v_t)`.
fn wkv_step(
    st: (&Tensor, &Tensor, &Tensor),
    k: &Tensor,
    v: &Tensor,
    w: &Tensor,
    u: &Tensor,
) -> (Tensor, Tensor, Tensor, Tensor) {
    let (aa, bb, pp) = st;
    // output: (a + e^{u+k} v) / (b + e^{u+k}), a = aa·e^pp
    let ww = u + k;
    let p = pp.maximum(&ww);
    let (e1, e2) = ((pp - &p).exp(), (&ww - &p).exp());
    let y = (&e1 * aa + &e2 * v) / (&e1 * bb + &e2);
    // state: a ← e^w a + e^k v
    let ww = pp + w;
    let p = ww.maximum(k);
    let (e1, e2) = ((&ww - &p).exp(), (k - &p).exp());
    let aa = &e1 * aa + &e2 * v;
    let bb = &e1 * bb + &e2;
    (y, aa, bb, p)
}

impl Rwkv {
    fn w(&self) -> Tensor {
        -self.time_decay.exp()
    }

    /// r, k, v from the input and its shifted copy (any leading shape).
    fn rkv(&self, x: &Tensor, x_prev: &Tensor) -> (Tensor, Tensor, Tensor) {
        (
            self.receptance.forward(&time_mix(x, x_prev, &self.mix_r)),
            self.key.forward(&time_mix(x, x_prev, &self.mix_k)),
            self.value.forward(&time_mix(x, x_prev, &self.mix_v)),
        )
    }

    /// Whether the training form runs the fused WKV on these tensors.
    fn uses_fused(&self, k: &Tensor) -> bool {
        self.scan == RwkvScan::Fused && fused_supported(k.device(), k.kind())
    }

    /// Chunked WKV: `k, v: [B, L, D] → [B, L, D]`.
    fn wkv_chunked(&self, k: &Tensor, v: &Tensor) -> Tensor {
        let (b, l, d) = k.size3().unwrap();
        let lay = ChunkLayout::new(l, self.chunk);
        let (n, c) = (lay.n, lay.c);
        let (k4, v4) = (lay.split(k, 1), lay.split(v, 1)); // [B, n, C, D], zero-padded
        let opts = (k.kind(), k.device());
        let w = self.w();
        let u = &self.time_first;
        let idx = Tensor::arange(c, opts);
        let (i, j) = (idx.view([c, 1]), idx.view([1, c]));
        // pairwise log decay per channel: (i−1−j)w below the diagonal, u on it, NEG above
        let rel = (&i - &j - 1.0).unsqueeze(-1) * &w; // [C, C, D]
        let below = i.gt_tensor(&j).unsqueeze(-1);
        let diag = i.eq_tensor(&j).unsqueeze(-1);
        let neg = Tensor::full([1, 1, 1], NEG, opts);
        let dec = rel.where_self(&below, &u.view([1, 1, d]).expand([c, c, d], false).where_self(&diag, &neg));
        let logits = k4.unsqueeze(2) + dec; // [B, n, C(i), C(j), D]

        // per-chunk summaries: log weights (C−1−j)w + k_j of each position at the chunk's end
        let lc = &k4 + (c as f64 - 1.0 - idx.view([c, 1])) * &w; // [B, n, C, D]
        let pl = lc.amax([2i64].as_slice(), false).detach(); // [B, n, D]
        let el = (lc - pl.unsqueeze(2)).exp();
        let aal = (&el * &v4).sum_dim_intlist([2i64].as_slice(), false, k.kind());
        let bbl = el.sum_dim_intlist([2i64].as_slice(), false, k.kind());

        // carry (aa, bb, p) across chunks; states[c] = state before chunk c
        let mut aa = Tensor::zeros([b, d], opts);
        let mut bb = Tensor::zeros([b, d], opts);
        let mut pp = Tensor::full([b, d], NEG, opts);
        let cw = &w * c as f64;
        let (mut s_aa, mut s_bb, mut s_pp) = (vec![], vec![], vec![]);
        for ci in 0..n {
            s_aa.push(aa.shallow_clone());
            s_bb.push(bb.shallow_clone());
            s_pp.push(pp.shallow_clone());
            if ci + 1 == n {
                break;
            }
            let (plc, aac, bbc) = (pl.select(1, ci), aal.select(1, ci), bbl.select(1, ci));
            let pd = &pp + &cw;
            let p = pd.maximum(&plc).detach();
            let (e1, e2) = ((&pd - &p).exp(), (&plc - &p).exp());
            aa = &e1 * &aa + &e2 * &aac;
            bb = &e1 * &bb + &e2 * &bbc;
            pp = p;
        }
        let (s_aa, s_bb, s_pp) = (Tensor::stack(&s_aa, 1), Tensor::stack(&s_bb, 1), Tensor::stack(&s_pp, 1)); // [B, n, D]

        // the state's weight for query i of a chunk: e^{i·w} a
        let ls = idx.view([c, 1]) * &w + s_pp.unsqueeze(2); // [B, n, C, D]
        let m = logits.amax([3i64].as_slice(), false).maximum(&ls).detach();
        let e = (logits - m.unsqueeze(3)).exp(); // [B, n, C, C, D]
        let es = (ls - &m).exp();
        let num = (&e * v4.unsqueeze(2)).sum_dim_intlist([3i64].as_slice(), false, k.kind()) + &es * s_aa.unsqueeze(2);
        let den = e.sum_dim_intlist([3i64].as_slice(), false, k.kind()) + es * s_bb.unsqueeze(2);
        lay.merge(&(num / den), 1)
    }
}

impl Mixer for Rwkv {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        let (r, k, v) = self.rkv(x, &token_shift(x));
        // the WKV scan in fp32 under bf16 autocast (the fused kernel is f32/f64)
        let y = crate::device::Precision::fp32_region(x.device(), || {
            let (k, v) = (crate::device::full_precision(&k), crate::device::full_precision(&v));
            if self.uses_fused(&k) {
                wkv(&k, &v, &self.w(), &self.time_first)
            } else {
                self.wkv_chunked(&k, &v)
            }
        });
        self.output.forward(&(r.sigmoid() * y))
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (b, l, d) = x.size3().unwrap();
        let (r, k, v) = self.rkv(x, &token_shift(x));
        let (w, u) = (self.w(), &self.time_first);
        let opts = (x.kind(), x.device());
        let (mut aa, mut bb, mut pp) =
            (Tensor::zeros([b, d], opts), Tensor::zeros([b, d], opts), Tensor::full([b, d], NEG, opts));
        let mut ys = Vec::with_capacity(l as usize);
        for t in 0..l {
            let (y, a2, b2, p2) = wkv_step((&aa, &bb, &pp), &k.select(1, t), &v.select(1, t), &w, u);
            (aa, bb, pp) = (a2, b2, p2);
            ys.push(y);
        }
        self.output.forward(&(r.sigmoid() * Tensor::stack(&ys, 1)))
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let opts = (self.time_decay.kind(), self.time_decay.device());
        let z = || Tensor::zeros([batch, self.d], opts);
        MixerState::new(vec![z(), z(), z(), Tensor::full([batch, self.d], NEG, opts)])
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let (r, k, v) = self.rkv(x_t, &state.tensors[0]);
        let (y, aa, bb, pp) =
            wkv_step((&state.tensors[1], &state.tensors[2], &state.tensors[3]), &k, &v, &self.w(), &self.time_first);
        state.tensors = vec![x_t.shallow_clone(), aa, bb, pp];
        self.output.forward(&(r.sigmoid() * y))
    }

    fn state_size(&self, _seq_len: i64) -> i64 {
        4 * self.d
    }

    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops {
        let d = self.d as f64;
        let tok = self.key.flops() + self.value.flops() + self.receptance.flops() + self.output.flops();
        let wkv = match self.scan {
            RwkvScan::Fused => seq_len as f64 * 12.0 * d,
            RwkvScan::Chunked => {
                crate::flops::padded(seq_len, self.chunk) as f64 * (4.0 * self.chunk as f64 * d + 4.0 * d)
            }
        };
        crate::flops::MixerFlops::stepwise(seq_len as f64 * tok + wkv, 0.0, seq_len, |_| tok + 12.0 * d)
    }
}

impl MixerKind for Rwkv {
    type Config = RwkvConfig;
    const NAME: &'static str = "rwkv";
    const ABOUT: &'static str =
        "RWKV-4 time mixing: token shift + per-channel decaying WKV average (fused CPU kernel or chunked; log-sum-exp stabilised)";
    const STATE_FORMULA: &'static str = "4·d (last x, a, b, running max)";
    const CONSTANT_STATE: bool = true;

    /// Parameters `4d² + 5d`: key, value, receptance and output (d → d), decay, bonus and the
    /// three token-shift mixes.
    fn memory(_c: &RwkvConfig, d: i64, _ctx: &BuildCtx, l: i64) -> MixerMemory {
        MixerMemory {
            params: Some(4.0 * linear_params(d, d, false) + 5.0 * d as f64),
            ..MixerMemory::output_only(d, l)
        }
    }

    fn validate(c: &RwkvConfig, _d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "chunk_size", c.chunk_size, 1, MAX_SIZE, "8")?;
        if c.n_layer != 0 && !(2..=MAX_SIZE).contains(&c.n_layer) {
            return Err(config_err(
                format!("{field}.n_layer"),
                format!("must be ≥ 2 (the depth RWKV's init divides by n − 1; Zoology: 12), or 0 for the model's n_layers (got {})", c.n_layer),
            ));
        }
        if c.n_layer != 0 && ctx.layer_idx as i64 >= c.n_layer {
            return Err(config_err(
                format!("{field}.n_layer"),
                format!(
                    "is {} but this is layer {} of {}: RWKV's init needs layer < n_layer (its mixes would be (c/d)^negative); raise it or set 0 for the model's depth",
                    c.n_layer, ctx.layer_idx, ctx.n_layers
                ),
            ));
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &RwkvConfig, ctx: &BuildCtx) -> Result<Self> {
        let dev = p.device();
        let depth = if c.n_layer == 0 { ctx.n_layers } else { c.n_layer as usize };
        let (r0, r1, ddd) = rwkv_ratios(ctx.layer_idx, depth, d, dev);
        let h = Tensor::arange(d, (Kind::Float, dev));
        let decay = (&h / (d.max(2) - 1) as f64).pow_tensor_scalar(0.7 + 1.3 * r0) * 8.0 - 5.0;
        let zigzag = ((&h + 1.0).remainder(3.0) - 1.0) * 0.5;
        let first = zigzag + 0.3f64.ln();
        let var = |name: &str, init: Tensor| {
            let t = p.var(name, &[d], nn::Init::Const(0.0));
            tch::no_grad(|| t.shallow_clone().copy_(&init));
            t
        };
        let linear = |name: &str, std: f64| {
            let lin = Linear::new(&p / name, d, d, false, std);
            if c.linear_init == RwkvLinearInit::Pytorch {
                let b = 1.0 / (d as f64).sqrt();
                tch::no_grad(|| {
                    let _ = lin.ws.shallow_clone().uniform_(-b, b);
                });
            }
            lin
        };
        Ok(Rwkv {
            key: linear("key", ctx.init_std),
            value: linear("value", ctx.init_std),
            receptance: linear("receptance", ctx.init_std),
            output: linear("output", ctx.out_std),
            time_decay: var("time_decay", decay),
            time_first: var("time_first", first),
            mix_k: var("time_mix_k", ddd.pow_tensor_scalar(r1)),
            mix_v: var("time_mix_v", ddd.pow_tensor_scalar(r1) + 0.3 * r0),
            mix_r: var("time_mix_r", ddd.pow_tensor_scalar(0.5 * r1)),
            chunk: c.chunk_size,
            scan: c.scan,
            d,
        })
    }

    fn suite_variants() -> Vec<RwkvConfig> {
        let chunked = RwkvScan::Chunked;
        vec![
            RwkvConfig::default(),
            RwkvConfig { linear_init: RwkvLinearInit::Normal, n_layer: 0, ..Default::default() },
            RwkvConfig { chunk_size: 8, scan: chunked, ..Default::default() },
            RwkvConfig { chunk_size: 5, linear_init: RwkvLinearInit::Normal, n_layer: 0, scan: chunked },
            RwkvConfig { chunk_size: 1, scan: chunked, ..Default::default() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::rel_err;
    use tch::Device;

    /// Keys up to ±200 would overflow e^k in f32; the stabilised chunked and step forms must
    /// stay finite and agree with the plain formula evaluated in f64 (where e^200 is fine).
    #[test]
    fn wkv_is_stable_for_large_keys_and_matches_the_plain_formula_in_f64() {
        let _rng = crate::mixers::testing::seed_guard(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let (d, l) = (8i64, 37i64);
        let m =
            Rwkv::build(vs.root(), d, &RwkvConfig { chunk_size: 8, ..Default::default() }, &BuildCtx::new(1, 2, 64))
                .unwrap();
        let k = Tensor::randn([2, l, d], (Kind::Float, Device::Cpu)) * 60.0;
        let v = Tensor::randn([2, l, d], (Kind::Float, Device::Cpu));
        let (w, u) = (m.w(), m.time_first.shallow_clone());
        let fast = tch::no_grad(|| m.wkv_chunked(&k, &v));
        let mut st = (
            Tensor::zeros([2, d], (Kind::Float, Device::Cpu)),
            Tensor::zeros([2, d], (Kind::Float, Device::Cpu)),
            Tensor::full([2, d], NEG, (Kind::Float, Device::Cpu)),
        );
        let mut steps = vec![];
        for t in 0..l {
            let (y, a, b, p) = wkv_step((&st.0, &st.1, &st.2), &k.select(1, t), &v.select(1, t), &w, &u);
            st = (a, b, p);
            steps.push(y);
        }
        let steps = Tensor::stack(&steps, 1);
        // plain formula in f64, no stabilisation
        let (k64, v64, w64, u64_) =
            (k.to_kind(Kind::Double), v.to_kind(Kind::Double), w.to_kind(Kind::Double), u.to_kind(Kind::Double));
        let mut plain = vec![];
        for t in 0..l {
            let e = (&u64_ + k64.select(1, t)).exp();
            let mut num = &e * v64.select(1, t);
            let mut den = e;
            for s in 0..t {
                let e = (&w64 * (t - 1 - s) as f64 + k64.select(1, s)).exp();
                num = num + &e * v64.select(1, s);
                den = den + e;
            }
            plain.push(num / den);
        }
        let plain = Tensor::stack(&plain, 1);
        assert!(bool::try_from(fast.isfinite().all()).unwrap(), "chunked form not finite");
        assert!(bool::try_from(steps.isfinite().all()).unwrap(), "step form not finite");
        let (ef, es) = (rel_err(&fast.to_kind(Kind::Double), &plain), rel_err(&steps.to_kind(Kind::Double), &plain));
        assert!(ef < 1e-5 && es < 1e-5, "rel err vs f64 formula: chunked {ef:.2e}, step {es:.2e}");
    }

    /// Zoology's init on a built 2-layer LM: the layer-dependent vectors with n_layer = 12
    /// (layer 1: ρ₀ = 1/11, ρ₁ = 11/12, not the 2-layer values 1 and 1/2), and PyTorch's
    /// default U(±1/√d) Linears; the named options give the 2-layer vectors and N(0, 0.02).
    #[test]
    fn init_is_zoologys_by_default() {
        use crate::model::{LanguageModel, ModelConfig};
        let vars = |mixer: &str| {
            let cfg: ModelConfig =
                toml::from_str(&format!("d_model = 64\nstate_mixer = \"identity\"\nmixer = {mixer}")).unwrap();
            crate::mixers::testing::seeded(6, || {
                let vs = nn::VarStore::new(Device::Cpu);
                let _lm = LanguageModel::new(&vs.root(), &cfg, 64, 64).unwrap();
                vs.variables()
            })
        };
        let d = 64usize;
        let expect = |n_layer: f64| {
            let (r0, r1) = (1.0 / (n_layer - 1.0), 1.0 - 1.0 / n_layer);
            let decay: Vec<f64> =
                (0..d).map(|h| -5.0 + 8.0 * (h as f64 / (d - 1) as f64).powf(0.7 + 1.3 * r0)).collect();
            let mix_k: Vec<f64> = (0..d).map(|i| (i as f64 / d as f64).powf(r1)).collect();
            let mix_v: Vec<f64> = (0..d).map(|i| (i as f64 / d as f64).powf(r1) + 0.3 * r0).collect();
            let mix_r: Vec<f64> = (0..d).map(|i| (i as f64 / d as f64).powf(0.5 * r1)).collect();
            [decay, mix_k, mix_v, mix_r]
        };
        let floats = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        for (mixer, n_layer, pytorch) in [
            (r#"{ name = "rwkv" }"#, 12.0, true),
            (r#"{ name = "rwkv", n_layer = 0, linear_init = "normal" }"#, 2.0, false),
        ] {
            let v = vars(mixer);
            for (name, want) in ["time_decay", "time_mix_k", "time_mix_v", "time_mix_r"].iter().zip(expect(n_layer)) {
                let got = floats(&v[&format!("layers.1.mixer.{name}")]);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "{mixer} {name}: {g} vs {w}");
                }
            }
            for name in ["key", "value", "receptance", "output"] {
                let w = &v[&format!("layers.1.mixer.{name}.weight")];
                let (mx, sd) = (w.abs().max().double_value(&[]), w.std(true).double_value(&[]));
                if pytorch {
                    let b = 1.0 / (d as f64).sqrt();
                    assert!(
                        mx <= b && mx > 0.95 * b && (sd - b / 3f64.sqrt()).abs() < 0.005,
                        "{name}: max {mx}, std {sd}"
                    );
                } else {
                    let want = if name == "output" { 0.01 } else { 0.02 };
                    assert!((sd - want).abs() < 0.1 * want, "{name}: std {sd} vs {want}");
                }
            }
        }
    }

    #[test]
    fn no_zoology_state_formula_and_bad_configs_name_the_field() {
        use crate::mixers::testing::validate_error;
        let m = crate::mixers::testing::seeded(0, || {
            Rwkv::build(nn::VarStore::new(Device::Cpu).root(), 8, &RwkvConfig::default(), &BuildCtx::new(0, 2, 32))
                .unwrap()
        });
        assert_eq!((m.state_size(9), m.state_size_zoology(9)), (32, None));
        let e = validate_error(r#"{ name = "rwkv", n_layer = 1 }"#);
        assert!(e.contains("model.mixer.n_layer"), "{e}");
        let e = validate_error(r#"{ name = "rwkv", chunk_size = 0 }"#);
        assert!(e.contains("model.mixer.chunk_size"), "{e}");
        let e = validate_error(r#"{ name = "rwkv", linear_init = "orthogonal" }"#);
        assert!(e.contains("model.mixer.linear_init"), "{e}");
        let e = validate_error(r#"{ name = "rwkv", scan = "parallel" }"#);
        assert!(e.contains("model.mixer.scan"), "{e}");
        // a 16-layer model with Zoology's n_layer = 12
        let t: toml::Table = toml::from_str(r#"name = "rwkv""#).unwrap();
        let e =
            crate::mixers::validate_table(&t, 16, &BuildCtx::new(13, 16, 32), "model.mixer").unwrap_err().to_string();
        assert!(e.contains("model.mixer.n_layer") && e.contains("layer 13"), "{e}");
    }
}
