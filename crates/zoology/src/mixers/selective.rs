//! `selective_lookups`, `sigmoid_lookups`, `sma_lookups`: the input-dependent sparse attention
//! of the Zoology paper's section 5 (Zoology's `zoology/mixers/selective.py`: `SelectiveLookups`,
//! `SigmoidLookups`, `SMA`), made causal. One implementation, three registry entries.
//!
//! Every position computes causal softmax attention (the `attention` mixer: `H` heads,
//! `[q, k, v] = x W_qkvᵀ + b`, output projection `W_o`), `a_t`; a learned, input-dependent
//! *selection* decides at which positions that lookup reaches the output:
//!
//! ```text
//! y_t = m_t · g_t · a_t                (add_input = true: y_t = x_t + m_t · g_t · a_t, the source's)
//! ```
//! with a gate `g_t` and, at evaluation, a hard 0/1 mask `m_t` (in training `m_t = 1`):
//!
//! | name | score `u_t` | gate `g_t` |
//! |---|---|---|
//! | `selective_lookups` | `z_t = w·x_t` | `exp(z_t) / Σ_{s≤t} exp(z_s)` (softmax over the positions so far) |
//! | `sigmoid_lookups` | `z_t = w·x_t` | `σ(z_t)` |
//! | `sma_lookups` | `(z¹_t − z⁰_t)/τ`, `[z⁰, z¹] = W_s x_t + b_s` | `softmax([z⁰_t, z¹_t]/τ)₁ = σ(u_t)`, τ learned |
//!
//! `g_t` is an increasing function of `u_t` among the positions of one prefix, so "the positions
//! with the largest gates" are those with the largest scores.
//!
//! **Selection at evaluation** (`eval_selection = "top_k"`, the source's default): position `t`
//! is selected (`m_t = 1`) iff its score is among the `k_t` largest of the prefix `u_0 … u_t`,
//! ties going to the earlier position:
//!
//! ```text
//! rank_t = #{s < t : u_s ≥ u_t},   m_t = [rank_t < k_t],   k_t = ⌈√(t+1)⌉  (or n_lookups)
//! ```
//! Each `y_t` (with `add_input = true`) is what the source computes at the last position of the
//! prefix `x_0 … x_t`: its
//! position softmax over that prefix is our causal normaliser, and its top-⌈√L⌉ over that prefix
//! selects the last position exactly when `rank_t < k_t`. `eval_selection = "soft"` keeps the
//! training form (`m_t = 1`) at evaluation too. `sigmoid_lookups`'s `n_lookups` (source:
//! `None` → ⌈√L⌉; here 0) fixes `k_t = n_lookups`.
//!
//! Where this departs from the source (DECISIONS, "Causal input-dependent sparse attention"):
//! by default the mixer does not add its own input (the source returns `x + m·g·a` inside a
//! pre-norm residual block, so the residual stream gets `norm1(r)` added on top; with it the
//! generic suite's 240-step MQAR smoke test stays above its bar: `add_input = true` restores it).
//! The source normalises `selective_lookups`'s gate and takes its top-k over the whole sequence,
//! so a position's output depends on later tokens; ours uses the prefix (causal). Ties are broken
//! towards the earlier position (torch.topk leaves them unspecified). The bias of
//! `selective_lookups`'s selection layer is left out: a softmax over positions cancels it (it
//! would get no gradient). No wandb logging; the input is not modified in place (the source's
//! eval branch `scatter_add_`s into `x`). `SigmoidLookups`'s auxiliary loss
//! `relu(mean(g) − n/L)·selection_penalty` (mean over the batch and all positions, as the
//! source) is added to the training loss as Zoology's Trainer adds it
//! ([`Mixer::take_auxiliary_loss`]; `selection_penalty`, default 0.001).
//!
//! Forms: parallel (attention's masked `[L, L]` form; gates from a cumulative log-sum-exp;
//! ranks from one masked `[L, L]` comparison of scores); reference (attention's per-position
//! loop; each gate and rank by its own loop over the prefix with explicit exponentials);
//! recurrent (attention's KV cache, plus the past scores `u_0 … u_{t−1}` for the rank and the
//! normaliser). The training form (`forward(x, true)`) is the soft gate, checked against the
//! soft reference by this file's tests (and, as `eval_selection = "soft"`, by the suite).
//!
//! State after L tokens: the KV cache `2·d·L`, plus with `top_k` the past scores (`L`), or with
//! `soft` selection `selective_lookups`'s running max and sum of `exp(z)` (2); `sigmoid_lookups`
//! and `sma_lookups` need nothing more when soft. Zoology defines no `state_size` for these.
//!
//! FLOPs ([`crate::flops`] convention): `attention`'s (`8·L·d² + 4·L²·d`) plus the selection
//! layer `2·d·c·L` (`c` = 1 output, `sma_lookups` 2). Ranks are comparisons (not counted).
//! Decode at context L: `8·d² + 4·d·L + 2·d·c` (the step computes the lookup whether or not the
//! position is selected); prefill is the step form.
//!
//! Init (Zoology's name rule): `wqkv`, `selecting`/`selection_proj` N(0, 0.02) with zero bias;
//! `out_proj` N(0, 0.02/√(2·n_layers)); `temperature` = `alpha·√d` (a raw parameter, kept).

use super::attention::{Attention, AttentionConfig};
use super::common::bounds::{float_in, int_in, MAX_SIZE};
use super::common::layers::Linear;
use super::{delegate_mixer, BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::Result;
use crate::flops::MixerFlops;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// What selection the evaluation form (`forward(x, false)`, `reference`, `step`) applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSelection {
    /// Hard: only the positions whose score ranks among the top `k_t` of their prefix.
    TopK,
    /// The training form's soft gate at every position.
    Soft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateKind {
    /// Softmax over the positions so far (`SelectiveLookups`).
    PositionSoftmax,
    /// `σ(w·x)` (`SigmoidLookups`).
    Sigmoid,
    /// Second entry of a two-way softmax with learned temperature (`SMA`).
    TwoWay,
}

/// The shared implementation of the three lookups mixers.
#[derive(Debug)]
pub struct Lookups {
    attn: Attention,
    select: Linear,
    temperature: Option<Tensor>,
    gate: GateKind,
    eval: EvalSelection,
    /// 0: `k_t = ⌈√(t+1)⌉`; otherwise `k_t = n_lookups`.
    n_lookups: i64,
    /// `y = x + …` (the source) rather than `y = …`.
    add_input: bool,
    d: i64,
    /// `sigmoid_lookups`' `selection_penalty` (0: no auxiliary loss).
    penalty: f64,
    /// The auxiliary loss of the last training forward, until the trainer takes it.
    aux: std::sync::Mutex<Option<Tensor>>,
}

/// `⌈√n⌉` for `n ≥ 0` in integers.
fn ceil_sqrt(n: i64) -> i64 {
    let mut k = (n as f64).sqrt() as i64;
    while k * k < n {
        k += 1;
    }
    while k > 0 && (k - 1) * (k - 1) >= n {
        k -= 1;
    }
    k
}

impl Lookups {
    /// `k_t` for the position `t` (0-based).
    fn k_at(&self, t: i64) -> i64 {
        if self.n_lookups > 0 {
            self.n_lookups
        } else {
            ceil_sqrt(t + 1)
        }
    }

    /// The selection layer's outputs `[B, L, c]`.
    fn raw(&self, x: &Tensor) -> Tensor {
        // the selection scores are normalised over positions: fp32 under bf16 autocast (a d → c
        // layer; in bf16 its weight's gradient was 8 % off)
        crate::device::Precision::fp32_region(x.device(), || self.select.forward(&crate::device::full_precision(x)))
    }

    /// Scores `u: [B, L]` from the selection layer's outputs.
    fn score(&self, z: &Tensor) -> Tensor {
        match self.gate {
            GateKind::PositionSoftmax | GateKind::Sigmoid => z.select(-1, 0),
            GateKind::TwoWay => (z.select(-1, 1) - z.select(-1, 0)) / self.temperature.as_ref().unwrap(),
        }
    }

    /// Gates `g: [B, L]` (fast form).
    fn gate_fast(&self, z: &Tensor) -> Tensor {
        let u = self.score(z);
        match self.gate {
            GateKind::PositionSoftmax => (&u - u.logcumsumexp(1)).exp(),
            GateKind::Sigmoid | GateKind::TwoWay => u.sigmoid(),
        }
    }

    /// Gates by explicit exponentials, one prefix at a time (reference).
    fn gate_reference(&self, z: &Tensor) -> Tensor {
        let (_, l, _) = z.size3().unwrap();
        let cols: Vec<Tensor> = (0..l)
            .map(|t| match self.gate {
                GateKind::PositionSoftmax => {
                    let prefix = z.select(-1, 0).narrow(1, 0, t + 1); // [B, t+1]
                    let m = prefix.amax([1i64].as_slice(), true);
                    let e = (&prefix - m).exp();
                    e.select(1, t) / e.sum_dim_intlist([1i64].as_slice(), false, e.kind())
                }
                GateKind::Sigmoid => 1.0 / (1.0 + (-z.select(1, t).select(-1, 0)).exp()),
                GateKind::TwoWay => {
                    let zt = z.select(1, t) / self.temperature.as_ref().unwrap(); // [B, 2]
                    let m = zt.amax([1i64].as_slice(), true);
                    let e = (zt - m).exp();
                    e.select(1, 1) / e.sum_dim_intlist([1i64].as_slice(), false, e.kind())
                }
            })
            .collect();
        Tensor::stack(&cols, 1)
    }

    /// Hard mask `[B, L]` (1.0 where selected), fast form: one masked `[L, L]` comparison.
    fn mask_fast(&self, u: &Tensor) -> Tensor {
        let (_, l) = u.size2().unwrap();
        let dev = u.device();
        // ahead[b, t, s] = u_s ≥ u_t for s < t
        let ge = u.unsqueeze(1).ge_tensor(&u.unsqueeze(2));
        let past = Tensor::ones([l, l], (Kind::Bool, dev)).tril(-1);
        let rank = ge.logical_and(&past).sum_dim_intlist([2i64].as_slice(), false, Kind::Int64);
        let k: Vec<i64> = (0..l).map(|t| self.k_at(t)).collect();
        rank.lt_tensor(&Tensor::from_slice(&k).to(dev)).to_kind(u.kind())
    }

    /// Hard mask by counting, position by position (reference).
    fn mask_reference(&self, u: &Tensor) -> Tensor {
        let (b, l) = u.size2().unwrap();
        let cols: Vec<Tensor> = (0..l)
            .map(|t| {
                let ut = u.select(1, t);
                let mut rank = Tensor::zeros([b], (Kind::Int64, u.device()));
                for s in 0..t {
                    rank += u.select(1, s).ge_tensor(&ut).to_kind(Kind::Int64);
                }
                rank.lt(self.k_at(t)).to_kind(u.kind())
            })
            .collect();
        Tensor::stack(&cols, 1)
    }

    fn hard(&self, train: bool) -> bool {
        !train && self.eval == EvalSelection::TopK
    }

    /// The combination `[x +] m ⊙ g ⊙ a` (`m ⊙ g`: `w`, `[B, L]`; `a`: `[B, L, D]`).
    fn combine(&self, x: &Tensor, w: &Tensor, a: &Tensor) -> Tensor {
        let y = w.unsqueeze(-1) * a;
        if self.add_input {
            x + y
        } else {
            y
        }
    }

    fn mix(&self, x: &Tensor, train: bool, reference: bool) -> Tensor {
        let z = self.raw(x);
        let (a, g) = if reference {
            (self.attn.reference(x), self.gate_reference(&z))
        } else {
            (self.attn.forward(x, train), self.gate_fast(&z))
        };
        let w = if self.hard(train) {
            let u = self.score(&z);
            let m = if reference { self.mask_reference(&u) } else { self.mask_fast(&u) };
            m * g
        } else {
            g
        };
        self.combine(x, &w, &a)
    }

    /// Extra state tensors beyond the KV cache.
    fn extra_state(&self, batch: i64) -> Vec<Tensor> {
        let opts = self.attn.opts();
        match (self.eval, self.gate) {
            (EvalSelection::TopK, _) => vec![Tensor::zeros([batch, 0], opts)],
            // running max (−∞ before the first token) and Σ exp(z − max)
            (EvalSelection::Soft, GateKind::PositionSoftmax) => {
                vec![Tensor::cat(
                    &[Tensor::full([batch, 1], f64::NEG_INFINITY, opts), Tensor::zeros([batch, 1], opts)],
                    1,
                )]
            }
            (EvalSelection::Soft, _) => vec![],
        }
    }

    /// Soft selection penalty of `SigmoidLookups` for a batch `x: [B, L, D]`:
    /// `relu(mean(σ(w·x)) − n/L) · penalty`, `n` = `n_lookups` or `√L` (not rounded, as the
    /// source). Only meaningful for the sigmoid gate.
    fn selection_penalty(&self, x: &Tensor, penalty: f64) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let n = if self.n_lookups > 0 { self.n_lookups as f64 } else { (l as f64).sqrt() };
        let g = self.raw(x).sigmoid();
        (g.mean(g.kind()) - n / l as f64).relu() * penalty
    }
}

impl Mixer for Lookups {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if self.penalty > 0.0 {
            let aux = train.then(|| self.selection_penalty(x, self.penalty));
            if let Ok(mut slot) = self.aux.lock() {
                *slot = aux;
            }
        }
        self.mix(x, train, false)
    }

    fn take_auxiliary_loss(&self) -> Option<Tensor> {
        self.aux.lock().ok()?.take()
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        self.mix(x, false, true)
    }

    fn init_state(&self, batch: i64) -> MixerState {
        let mut t = self.attn.init_state(batch).tensors;
        t.extend(self.extra_state(batch));
        MixerState::new(t)
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let mut attn_state = MixerState::new(state.tensors.drain(0..2).collect());
        let a = self.attn.step(&mut attn_state, x_t); // [B, D]
        let z = self.raw(&x_t.unsqueeze(1)); // [B, 1, c]
        let u = self.score(&z).squeeze_dim(1); // [B]
        let mut extra: Vec<Tensor> = state.tensors.drain(..).collect();
        let g = match self.gate {
            GateKind::PositionSoftmax => match self.eval {
                EvalSelection::TopK => {
                    let all = Tensor::cat(&[&extra[0], &u.unsqueeze(1)], 1);
                    (&u - all.logsumexp([1i64].as_slice(), false)).exp()
                }
                EvalSelection::Soft => {
                    let (m, s) = (extra[0].select(1, 0), extra[0].select(1, 1));
                    let m2 = m.maximum(&u);
                    let s2 = s * (&m - &m2).exp() + (&u - &m2).exp();
                    let g = (&u - &m2).exp() / &s2;
                    extra[0] = Tensor::stack(&[m2, s2], 1);
                    g
                }
            },
            GateKind::Sigmoid | GateKind::TwoWay => u.sigmoid(),
        };
        let w = if self.eval == EvalSelection::TopK {
            let past = &extra[0];
            let t = past.size()[1];
            let rank = past.ge_tensor(&u.unsqueeze(1)).sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
            let m = rank.lt(self.k_at(t)).to_kind(g.kind());
            extra[0] = Tensor::cat(&[past, &u.unsqueeze(1)], 1);
            m * g
        } else {
            g
        };
        let mut tensors = attn_state.tensors;
        tensors.extend(extra);
        state.tensors = tensors;
        self.combine(x_t, &w, &a)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        let extra = match (self.eval, self.gate) {
            (EvalSelection::TopK, _) => seq_len,
            (EvalSelection::Soft, GateKind::PositionSoftmax) => 2,
            (EvalSelection::Soft, _) => 0,
        };
        2 * self.d * seq_len + extra
    }

    fn flops(&self, seq_len: i64) -> MixerFlops {
        let sel = self.select.flops();
        let a = self.attn.flops(seq_len);
        let (l, d) = (seq_len as f64, self.d as f64);
        let proj = self.attn.proj_flops();
        MixerFlops::stepwise(a.forward_per_seq + l * sel, 0.0, seq_len, |t| proj + 4.0 * d * t as f64 + sel)
    }
}

/// Options shared by the three lookups mixers.
fn check_common(num_heads: i64, dropout: f64, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
    Attention::validate(&attention_config(num_heads, dropout), d, ctx, field)
}

fn attention_config(num_heads: i64, dropout: f64) -> AttentionConfig {
    AttentionConfig { num_heads, dropout, ..Default::default() }
}

fn build_lookups(
    p: nn::Path,
    d: i64,
    ctx: &BuildCtx,
    (num_heads, dropout, eval, add_input): (i64, f64, EvalSelection, bool),
    gate: GateKind,
    (n_lookups, alpha, penalty): (i64, f64, f64),
) -> Result<Lookups> {
    let (select, temperature) = match gate {
        GateKind::PositionSoftmax => (Linear::new(&p / "selecting", d, 1, false, ctx.init_std), None),
        GateKind::Sigmoid => (Linear::new(&p / "selecting", d, 1, false, ctx.init_std), None),
        GateKind::TwoWay => (
            Linear::new(&p / "selection_proj", d, 2, true, ctx.init_std),
            Some(p.var("temperature", &[1], nn::Init::Const(alpha * (d as f64).sqrt()))),
        ),
    };
    let attn = Attention::build(p, d, &attention_config(num_heads, dropout), ctx)?;
    let aux = std::sync::Mutex::new(None);
    Ok(Lookups { attn, select, temperature, gate, eval, n_lookups, add_input, d, penalty, aux })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectiveLookupsConfig {
    /// Heads of the inner attention (must divide d_model; source default 1).
    pub num_heads: i64,
    /// Dropout on the attention weights in training (source default 0).
    pub dropout: f64,
    /// `"top_k"` (source): at evaluation only positions ranked in the top ⌈√(t+1)⌉ of their
    /// prefix get the lookup; `"soft"`: the training gate at evaluation too.
    pub eval_selection: EvalSelection,
    /// `true`: the output adds the mixer's own input, `y = x + m·g·a`, as the source
    /// (`attn_output * selection + x`); default `false`: `y = m·g·a`, the block's residual
    /// already carries x (see DECISIONS: with `true` the suite's 240-step MQAR smoke test fails).
    pub add_input: bool,
}

impl Default for SelectiveLookupsConfig {
    fn default() -> Self {
        SelectiveLookupsConfig { num_heads: 1, dropout: 0.0, eval_selection: EvalSelection::TopK, add_input: false }
    }
}

/// Zoology's `SelectiveLookups`, causal: gate = softmax of `w·x` over the positions so far.
#[derive(Debug)]
pub struct SelectiveLookups {
    inner: Lookups,
}
delegate_mixer!(SelectiveLookups, inner);

impl MixerKind for SelectiveLookups {
    type Config = SelectiveLookupsConfig;
    const NAME: &'static str = "selective_lookups";
    const ABOUT: &'static str = "Zoology §5 SelectiveLookups (causal): attention output gated per position by a softmax over the positions so far; top-⌈√(t+1)⌉ of the prefix at eval";
    const STATE_FORMULA: &'static str = "2·d·L + L (KV cache + past scores; soft eval: 2·d·L + 2)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &SelectiveLookupsConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        check_common(c.num_heads, c.dropout, d, ctx, field)
    }
    fn build(p: nn::Path, d: i64, c: &SelectiveLookupsConfig, ctx: &BuildCtx) -> Result<Self> {
        let inner = build_lookups(
            p,
            d,
            ctx,
            (c.num_heads, c.dropout, c.eval_selection, c.add_input),
            GateKind::PositionSoftmax,
            (0, 0.0, 0.0),
        )?;
        Ok(SelectiveLookups { inner })
    }
    fn suite_variants() -> Vec<SelectiveLookupsConfig> {
        vec![
            SelectiveLookupsConfig::default(),
            SelectiveLookupsConfig { eval_selection: EvalSelection::Soft, ..Default::default() },
            SelectiveLookupsConfig { num_heads: 2, add_input: true, ..Default::default() },
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigmoidLookupsConfig {
    /// Heads of the inner attention (must divide d_model; source default 1).
    pub num_heads: i64,
    /// Dropout on the attention weights in training (source default 0).
    pub dropout: f64,
    /// Positions selected at evaluation per prefix: 0 (the source's `None`) = ⌈√(t+1)⌉.
    pub n_lookups: i64,
    /// `"top_k"` (source) or `"soft"` (see `selective_lookups`).
    pub eval_selection: EvalSelection,
    /// `y = x + m·g·a` (source) when true; `y = m·g·a` by default (see `selective_lookups`).
    pub add_input: bool,
    /// Weight of the auxiliary loss `relu(mean σ(w·x) − n/L)` added to the training loss
    /// (source default 0.001; 0 turns it off).
    pub selection_penalty: f64,
}

impl Default for SigmoidLookupsConfig {
    fn default() -> Self {
        SigmoidLookupsConfig {
            num_heads: 1,
            dropout: 0.0,
            n_lookups: 0,
            eval_selection: EvalSelection::TopK,
            add_input: false,
            selection_penalty: 0.001,
        }
    }
}

/// Zoology's `SigmoidLookups`, causal: gate = `σ(w·x)`.
#[derive(Debug)]
pub struct SigmoidLookups {
    inner: Lookups,
}
delegate_mixer!(SigmoidLookups, inner);

impl SigmoidLookups {
    /// The source's auxiliary loss for a batch `x: [B, L, D]` (what `SigmoidLookups` adds to the
    /// training loss, `selection_penalty` = 0.001 there): `relu(mean_{b,t} σ(w·x) − n/L)·penalty`
    /// with `n = n_lookups`, or `√L` when `n_lookups = 0`. Every `forward(x, true)` computes it
    /// with the config's `selection_penalty` for the trainer ([`Mixer::take_auxiliary_loss`]).
    pub fn auxiliary_loss(&self, x: &Tensor, selection_penalty: f64) -> Tensor {
        self.inner.selection_penalty(x, selection_penalty)
    }
}

impl MixerKind for SigmoidLookups {
    type Config = SigmoidLookupsConfig;
    const NAME: &'static str = "sigmoid_lookups";
    const ABOUT: &'static str = "Zoology §5 SigmoidLookups (causal): attention output gated per position by σ(w·x); top-k of the prefix at eval; the source's selection penalty in training";
    const STATE_FORMULA: &'static str = "2·d·L + L (KV cache + past scores; soft eval: 2·d·L)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &SigmoidLookupsConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        check_common(c.num_heads, c.dropout, d, ctx, field)?;
        if c.selection_penalty != 0.0 {
            float_in(field, "selection_penalty", c.selection_penalty, 0.0, 1e6, "0.001 (the source's) or 0 (off)")?;
        }
        int_in(field, "n_lookups", c.n_lookups, 0, MAX_SIZE, "0 (⌈√(t+1)⌉) or 8")
    }
    fn build(p: nn::Path, d: i64, c: &SigmoidLookupsConfig, ctx: &BuildCtx) -> Result<Self> {
        let spec = (c.num_heads, c.dropout, c.eval_selection, c.add_input);
        Ok(SigmoidLookups {
            inner: build_lookups(p, d, ctx, spec, GateKind::Sigmoid, (c.n_lookups, 0.0, c.selection_penalty))?,
        })
    }
    fn suite_variants() -> Vec<SigmoidLookupsConfig> {
        vec![
            SigmoidLookupsConfig::default(),
            SigmoidLookupsConfig { eval_selection: EvalSelection::Soft, ..Default::default() },
            SigmoidLookupsConfig { n_lookups: 3, num_heads: 2, add_input: true, ..Default::default() },
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmaLookupsConfig {
    /// Heads of the inner attention (must divide d_model; source default 1).
    pub num_heads: i64,
    /// Dropout on the attention weights in training (source default 0).
    pub dropout: f64,
    /// The temperature's init is `alpha·√d` (source default 0.3).
    pub alpha: f64,
    /// `"top_k"` (source) or `"soft"` (see `selective_lookups`).
    pub eval_selection: EvalSelection,
    /// `y = x + m·g·a` (source) when true; `y = m·g·a` by default (see `selective_lookups`).
    pub add_input: bool,
}

impl Default for SmaLookupsConfig {
    fn default() -> Self {
        SmaLookupsConfig {
            num_heads: 1,
            dropout: 0.0,
            alpha: 0.3,
            eval_selection: EvalSelection::TopK,
            add_input: false,
        }
    }
}

/// Zoology's `SMA`, causal: gate = second entry of `softmax(W_s x / τ)` over two outputs.
#[derive(Debug)]
pub struct SmaLookups {
    inner: Lookups,
}
delegate_mixer!(SmaLookups, inner);

impl MixerKind for SmaLookups {
    type Config = SmaLookupsConfig;
    const NAME: &'static str = "sma_lookups";
    const ABOUT: &'static str = "Zoology §5 SMA (causal): attention output gated per position by a two-way softmax with learned temperature; top-⌈√(t+1)⌉ of the prefix at eval";
    const STATE_FORMULA: &'static str = "2·d·L + L (KV cache + past scores; soft eval: 2·d·L)";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &SmaLookupsConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        check_common(c.num_heads, c.dropout, d, ctx, field)?;
        float_in(field, "alpha", c.alpha, 0.0, f64::INFINITY, "0.3")
    }
    fn build(p: nn::Path, d: i64, c: &SmaLookupsConfig, ctx: &BuildCtx) -> Result<Self> {
        let spec = (c.num_heads, c.dropout, c.eval_selection, c.add_input);
        Ok(SmaLookups { inner: build_lookups(p, d, ctx, spec, GateKind::TwoWay, (0, c.alpha, 0.0))? })
    }
    fn suite_variants() -> Vec<SmaLookupsConfig> {
        vec![
            SmaLookupsConfig::default(),
            SmaLookupsConfig {
                eval_selection: EvalSelection::Soft,
                num_heads: 2,
                add_input: true,
                ..Default::default()
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded, validate_error};
    use tch::Device;

    /// The shared implementation inside each registry type.
    trait Inner {
        fn lk(&self) -> &Lookups;
    }
    impl Inner for SelectiveLookups {
        fn lk(&self) -> &Lookups {
            &self.inner
        }
    }
    impl Inner for SigmoidLookups {
        fn lk(&self) -> &Lookups {
            &self.inner
        }
    }
    impl Inner for SmaLookups {
        fn lk(&self) -> &Lookups {
            &self.inner
        }
    }

    /// The lookup part of an output: `y − x` when the mixer adds its input, else `y`.
    fn part(m: &Lookups, y: &Tensor, x: &Tensor) -> Tensor {
        if m.add_input {
            y - x
        } else {
            y.shallow_clone()
        }
    }

    fn build_kind<M: MixerKind>(c: &M::Config, seed: i64) -> (nn::VarStore, M) {
        seeded(seed, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = M::build(vs.root() / "mixer", 16, c, &BuildCtx::new(0, 2, 48)).unwrap();
            (vs, m)
        })
    }

    fn randn(shape: &[i64], seed: i64) -> Tensor {
        seeded(seed, || Tensor::randn(shape, (Kind::Float, Device::Cpu)))
    }

    #[test]
    fn ceil_sqrt_is_exact() {
        let want = |n: i64| (1..).find(|k: &i64| k * k >= n).unwrap();
        for n in 1..2000 {
            assert_eq!(ceil_sqrt(n), want(n), "n = {n}");
        }
        assert_eq!(ceil_sqrt(0), 0);
    }

    /// The training form (`forward(x, true)`, soft gate) equals the soft reference of the same
    /// weights, values and gradients, for each gate; the top-k evaluation form differs from it.
    #[test]
    fn training_form_is_the_soft_gate() {
        fn check<M: MixerKind + Inner>(hard: M::Config, soft: M::Config) {
            let (vs_h, m_h) = build_kind::<M>(&hard, 3);
            let (vs_s, m_s) = build_kind::<M>(&soft, 3);
            let x = randn(&[2, 21, 16], 4);
            let w = randn(&[2, 21, 16], 5);
            let run = |vs: &nn::VarStore, y: Tensor| {
                let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
                vars.sort_by(|a, b| a.0.cmp(&b.0));
                let ts: Vec<&Tensor> = vars.iter().map(|(_, v)| v).collect();
                let g = Tensor::run_backward(&[(&y * &w).sum(Kind::Float)], &ts, false, false);
                (y, g)
            };
            let (y_train, g_train) = run(&vs_h, m_h.forward(&x, true));
            let (y_ref, g_ref) = run(&vs_s, m_s.reference(&x));
            assert!(rel_err(&y_train, &y_ref) < 1e-5, "{}: forward(train) vs soft reference", M::NAME);
            for (a, b) in g_train.iter().zip(g_ref.iter()) {
                assert!(rel_err(a, b) < 1e-4, "{}: gradient {}", M::NAME, rel_err(a, b));
            }
            // the lookup parts of the top-k evaluation form and the soft form differ
            let y_eval = tch::no_grad(|| m_h.forward(&x, false));
            let e = rel_err(&part(m_h.lk(), &y_eval, &x), &part(m_s.lk(), &y_ref.detach(), &x));
            assert!(e > 0.1, "{}: top-k eval should differ from soft (rel {e:.2e})", M::NAME);
        }
        for add_input in [false, true] {
            check::<SelectiveLookups>(
                SelectiveLookupsConfig { add_input, ..Default::default() },
                SelectiveLookupsConfig { eval_selection: EvalSelection::Soft, add_input, ..Default::default() },
            );
            check::<SigmoidLookups>(
                SigmoidLookupsConfig { add_input, ..Default::default() },
                SigmoidLookupsConfig { eval_selection: EvalSelection::Soft, add_input, ..Default::default() },
            );
            check::<SmaLookups>(
                SmaLookupsConfig { add_input, ..Default::default() },
                SmaLookupsConfig { eval_selection: EvalSelection::Soft, add_input, ..Default::default() },
            );
        }
    }

    /// At evaluation exactly the positions whose score ranks in the top ⌈√(t+1)⌉ of their
    /// prefix (earlier wins ties) get the lookup; the others output zero (their input with
    /// `add_input`). Scores with exact ties (repeated inputs) give the same selection in every form.
    #[test]
    fn top_k_selects_by_prefix_rank_with_ties_to_the_earlier() {
        for add_input in [false, true] {
            top_k_case(add_input);
        }
    }

    fn top_k_case(add_input: bool) {
        let (_vs, m) = build_kind::<SigmoidLookups>(&SigmoidLookupsConfig { add_input, ..Default::default() }, 7);
        let l = 12;
        // positions 3, 5 and 9 repeat position 1's input: exact ties in the score
        let x = randn(&[1, l, 16], 8);
        for t in [3i64, 5, 9] {
            x.narrow(1, t, 1).copy_(&x.narrow(1, 1, 1));
        }
        let u: Vec<f64> = tch::no_grad(|| Vec::<f64>::try_from(m.inner.score(&m.inner.raw(&x)).squeeze_dim(0)))
            .unwrap()
            .into_iter()
            .collect();
        let expect: Vec<bool> = (0..l as usize)
            .map(|t| (0..t).filter(|&s| u[s] >= u[t]).count() < ceil_sqrt(t as i64 + 1) as usize)
            .collect();
        assert!(u[3] == u[1] && u[9] == u[1], "the repeated inputs must tie exactly");
        let (y, r) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
        let (y_step, _) = tch::no_grad(|| m.prefill(&x));
        for (name, out) in [("forward", &y), ("reference", &r), ("step", &y_step)] {
            for t in 0..l {
                let lookup = part(&m.inner, out, &x).select(1, t);
                let none = lookup.abs().max().double_value(&[]) == 0.0;
                assert_eq!(!none, expect[t as usize], "{name} (add_input {add_input}): position {t} selected?");
            }
        }
        assert!(expect.iter().filter(|&&e| e).count() >= 2 && expect.iter().any(|&e| !e));
    }

    /// The suite compares whole outputs, which include the input `x` with `add_input`; here the
    /// lookup parts alone must agree (fast, reference, prefill + step) for every suite variant.
    #[test]
    fn lookup_parts_agree_across_forms() {
        fn check<M: MixerKind + Inner>() {
            for (i, c) in M::suite_variants().iter().enumerate() {
                let (_vs, m) = build_kind::<M>(c, 11);
                let x = randn(&[2, 33, 16], 12);
                let (y, r) = tch::no_grad(|| (m.forward(&x, false), m.reference(&x)));
                let s = tch::no_grad(|| {
                    let (pre, mut st) = m.prefill(&x.narrow(1, 0, 10));
                    let mut ys = vec![pre];
                    for t in 10..33 {
                        ys.push(m.step(&mut st, &x.select(1, t)).unsqueeze(1));
                    }
                    Tensor::cat(&ys, 1)
                });
                let lk = m.lk();
                let (ly, lr, ls) = (part(lk, &y, &x), part(lk, &r, &x), part(lk, &s, &x));
                assert!(ly.abs().max().double_value(&[]) > 0.0, "{}#{i}: no lookup at all", M::NAME);
                assert!(rel_err(&ly, &lr) < 1e-5, "{}#{i}: fast vs reference {:.2e}", M::NAME, rel_err(&ly, &lr));
                assert!(rel_err(&ls, &lr) < 1e-5, "{}#{i}: step vs reference {:.2e}", M::NAME, rel_err(&ls, &lr));
            }
        }
        check::<SelectiveLookups>();
        check::<SigmoidLookups>();
        check::<SmaLookups>();
    }

    /// Causality of the lookup part itself: at init the lookups are small next to the
    /// suite's absolute threshold (and next to `x` with `add_input`), so the suite's causality
    /// test alone would miss a small leak. Outputs ≤ t must not move at all when inputs > t do.
    #[test]
    fn lookup_parts_are_causal() {
        fn check<M: MixerKind + Inner>() {
            for (i, c) in M::suite_variants().iter().enumerate() {
                let (_vs, m) = build_kind::<M>(c, 13);
                let x = randn(&[2, 24, 16], 14);
                for t in [0i64, 6, 17] {
                    let x2 = x.copy();
                    let _ = x2.narrow(1, t + 1, 23 - t).g_add_(&(randn(&[2, 23 - t, 16], 15 + t) * 3.0));
                    for train in [false, true] {
                        let (y1, y2) = tch::no_grad(|| (m.forward(&x, train), m.forward(&x2, train)));
                        let (l1, l2) = (part(m.lk(), &y1, &x), part(m.lk(), &y2, &x2));
                        let before = (l1.narrow(1, 0, t + 1) - l2.narrow(1, 0, t + 1)).abs().max().double_value(&[]);
                        let after = (l1.narrow(1, t + 1, 23 - t) - l2.narrow(1, t + 1, 23 - t)).abs().max();
                        assert!(
                            before == 0.0,
                            "{}#{i} train {train} t={t}: lookups ≤ t moved by {before:.2e}",
                            M::NAME
                        );
                        assert!(after.double_value(&[]) > 0.0, "{}#{i} t={t}: later lookups did not move", M::NAME);
                    }
                }
            }
        }
        check::<SelectiveLookups>();
        check::<SigmoidLookups>();
        check::<SmaLookups>();
    }

    #[test]
    fn auxiliary_loss_is_the_sources() {
        let (_vs, m) = build_kind::<SigmoidLookups>(&SigmoidLookupsConfig::default(), 9);
        // a large input pushes some gates near 1 so that the mean exceeds √L / L
        let x = randn(&[2, 16, 16], 10) * 200.0;
        let g = tch::no_grad(|| m.inner.raw(&x).sigmoid());
        let mean = g.mean(Kind::Float).double_value(&[]);
        let want = (mean - 4.0 / 16.0).max(0.0) * 0.001;
        let got = tch::no_grad(|| m.auxiliary_loss(&x, 0.001)).double_value(&[]);
        assert!(mean > 0.25, "the test needs a mean gate above n/L (got {mean})");
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        let small = tch::no_grad(|| m.auxiliary_loss(&(x.zeros_like() - 1.0), 0.001)).double_value(&[]);
        assert!(small >= 0.0);
    }

    /// The trainer's hook: a training forward leaves the penalty for `take_auxiliary_loss` (once);
    /// an evaluation forward, `selection_penalty = 0` and the other two lookups leave none; the
    /// penalty reaches the selection weights' gradient.
    #[test]
    fn training_forward_hands_the_penalty_to_the_trainer_once() {
        let (_vs, m) = build_kind::<SigmoidLookups>(&SigmoidLookupsConfig::default(), 9);
        let x = randn(&[2, 16, 16], 10) * 200.0;
        let _ = m.forward(&x, true);
        let aux = m.take_auxiliary_loss().expect("a training forward leaves the penalty");
        let want = tch::no_grad(|| m.auxiliary_loss(&x, 0.001)).double_value(&[]);
        assert!(want > 0.0 && (aux.double_value(&[]) - want).abs() < 1e-12, "{aux:?} vs {want}");
        assert!(m.take_auxiliary_loss().is_none(), "taken once");
        aux.backward();
        let g = m.inner.select.ws.grad();
        assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "no gradient on the selection");
        let _ = m.forward(&x, false);
        assert!(m.take_auxiliary_loss().is_none(), "evaluation leaves none");
        let off = SigmoidLookupsConfig { selection_penalty: 0.0, ..Default::default() };
        let (_vs, m0) = build_kind::<SigmoidLookups>(&off, 9);
        let _ = m0.forward(&x, true);
        assert!(m0.take_auxiliary_loss().is_none(), "selection_penalty = 0: none");
        let (_vs, s) = build_kind::<SelectiveLookups>(&SelectiveLookupsConfig::default(), 9);
        let _ = s.forward(&x, true);
        assert!(s.take_auxiliary_loss().is_none());
    }

    #[test]
    fn bad_options_name_the_field() {
        let e = validate_error(r#"{ name = "sigmoid_lookups", selection_penalty = -0.1 }"#);
        assert!(e.contains("model.mixer.selection_penalty"), "{e}");
        let e = validate_error(r#"{ name = "sigmoid_lookups", n_lookups = -1 }"#);
        assert!(e.contains("model.mixer.n_lookups"), "{e}");
        let e = validate_error(r#"{ name = "sma_lookups", alpha = 0.0 }"#);
        assert!(e.contains("model.mixer.alpha"), "{e}");
        let e = validate_error(r#"{ name = "selective_lookups", num_heads = 3 }"#);
        assert!(e.contains("model.mixer.num_heads"), "{e}");
        let e = validate_error(r#"{ name = "selective_lookups", eval_selection = "top" }"#);
        assert!(e.contains("model.mixer.eval_selection"), "{e}");
        let e = validate_error(r#"{ name = "selective_lookups", selection_penalty = 0.001 }"#);
        assert!(e.contains("selection_penalty"), "{e}");
    }
}
