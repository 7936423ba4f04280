//! Sequence mixers: the part of a block that moves information across positions.
//!
//! Every mixer implements [`Mixer`] (its forms) and [`MixerKind`] (its name, config and
//! constructor), lives in one file whose doc comment states its math, and is listed once in
//! [`registry`]. The generic suite (`suite.rs`) runs every registered mixer through the same
//! checks: fast form vs naive reference, prefill + step vs the parallel form, causality,
//! gradients against the reference, and `state_size` against the state `step` really carries.
//!
//! Shapes: `x` is `[B, L, D]` (batch, length, model width); `x_t` is `[B, D]`.
//!
//! Layer 3 of 11, **mixers** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod common;

pub mod attention;
pub mod base_conv;
pub mod based;
pub mod bigbird;
pub mod bigs;
pub mod delta_net;
#[cfg(test)]
mod flops_tests;
pub mod gla;
pub mod gss;
pub mod h3;
pub mod hybrid;
pub mod hyena;
pub mod linear_attention;
#[cfg(test)]
mod linear_tests;
pub mod liquid_s4;
pub mod long_conv;
pub mod mamba;
pub mod mamba2;
pub mod mega;
#[cfg(test)]
mod memory_tests;
pub mod monarch_mixer;
pub mod native_sparse_attention;
pub mod nystromformer;
#[cfg(test)]
mod parity_tests;
pub mod performer;
pub mod retnet;
pub mod rwkv;
pub mod rwkv5;
pub mod rwkv6;
pub mod rwkv7;
pub mod s4;
pub mod scatterbrain;
pub mod selective;
pub mod sliding_window;
pub mod stripedhyena;
#[cfg(test)]
mod suite;
#[cfg(test)]
pub(crate) mod testing;
pub mod ttt;

use crate::error::{config_err, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::{nn, Tensor};

/// The recurrent state a mixer carries between [`Mixer::step`] calls. Tensors have the batch
/// as their first dimension; the element count per sequence is what `state_size` reports.
#[derive(Debug, Default)]
pub struct MixerState {
    pub tensors: Vec<Tensor>,
}

impl MixerState {
    pub fn new(tensors: Vec<Tensor>) -> Self {
        MixerState { tensors }
    }
    /// Elements carried per sequence (total elements divided by the batch size).
    pub fn elements_per_sequence(&self) -> i64 {
        self.tensors
            .iter()
            .map(|t| {
                let s = t.size();
                let b = *s.first().unwrap_or(&1);
                t.numel() as i64 / b.max(1)
            })
            .sum()
    }
}

/// What a mixer's constructor may need to know about where it sits in the model.
#[derive(Debug, Clone)]
pub struct BuildCtx {
    /// Index of the layer this mixer belongs to (0-based).
    pub layer_idx: usize,
    pub n_layers: usize,
    /// Longest sequence the model will see (train and test); sizes explicit long filters.
    pub max_seq_len: i64,
    /// Standard deviation for ordinary weights (Zoology: 0.02).
    pub init_std: f64,
    /// Standard deviation for output projections (Zoology: 0.02/√(2·n_layers)).
    pub out_std: f64,
}

impl BuildCtx {
    pub fn new(layer_idx: usize, n_layers: usize, max_seq_len: i64) -> Self {
        BuildCtx {
            layer_idx,
            n_layers,
            max_seq_len,
            init_std: 0.02,
            out_std: 0.02 / (2.0 * n_layers.max(1) as f64).sqrt(),
        }
    }
}

/// The forms of a sequence mixer. Only `forward` is used in training; the rest exist so that
/// the suite can check the mixer and so that decoding and state accounting are honest.
pub trait Mixer: std::fmt::Debug + Send {
    /// Fast training form (parallel, chunked or FFT). `x: [B, L, D] → [B, L, D]`. `train`
    /// enables dropout.
    fn forward(&self, x: &Tensor, train: bool) -> Tensor;
    /// Naive reference form: plain loops or dense matrices, obviously right, same parameters.
    fn reference(&self, x: &Tensor) -> Tensor;
    /// Empty state for `batch` sequences.
    fn init_state(&self, batch: i64) -> MixerState;
    /// One recurrent step: `x_t: [B, D] → y_t: [B, D]`, updating `state`.
    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor;
    /// Elements of the recurrent state per sequence after `seq_len` tokens: what `step` really
    /// carries (checked by the suite).
    fn state_size(&self, seq_len: i64) -> i64;
    /// FLOPs for sequences of `seq_len` tokens under the convention of [`crate::flops`]:
    /// forward (training form) per sequence, parameter-only work per batch, prefill of one
    /// prompt, and the decode step at context `seq_len`. Each mixer's doc states its formula.
    fn flops(&self, seq_len: i64) -> crate::flops::MixerFlops;
    /// The same mixer's state as Zoology's `state_size(sequence_length)` counts it (Zoology's own
    /// per-mixer formula, in its units: elements; its logger reports 4 bytes per element), after
    /// `seq_len` tokens. `None` where Zoology defines no formula (e.g. RWKV-4) or has no such
    /// mixer. Differs from [`Mixer::state_size`] where Zoology leaves out carried state (short
    /// convolutions) or counts it otherwise (Based's symmetric features).
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        None
    }
    /// True for a mixer that is a whole residual layer of its own model: it normalises its own
    /// input and computes its update from the un-normalised residual stream `r` (Mega's gated
    /// residual `r + u ⊙ (h − r)`). The block then feeds it `r` instead of `norm1(r)` and adds
    /// its output to `r`. Default false: the block normalises, the mixer sees `norm1(r)`.
    fn takes_raw_residual(&self) -> bool {
        false
    }
    /// Names (relative to the mixer's own path, e.g. `"g_proj.weight"`) of parameters that this
    /// config builds but none of its forms uses, so that they get no gradient. The gradient
    /// suite fails on a parameter that gets none in both forms unless it is listed here.
    fn unused_parameters(&self) -> Vec<String> {
        vec![]
    }
    /// A training-only loss term that the mixer's last `forward(x, true)` produced, handed over
    /// once (the next call returns `None`): Zoology's `get_auxiliary_loss` (only
    /// `sigmoid_lookups` has one). The trainer adds every layer's to the task loss. Default:
    /// none.
    fn take_auxiliary_loss(&self) -> Option<Tensor> {
        None
    }
    /// Processes a prompt and returns its outputs and the state after its last token.
    /// Default: the step form token by token. Mixers with a parallel prefill override it.
    fn prefill(&self, x: &Tensor) -> (Tensor, MixerState) {
        let (b, l, _) = x.size3().expect("prefill expects [B, L, D]");
        let mut state = self.init_state(b);
        let ys: Vec<Tensor> = (0..l).map(|t| self.step(&mut state, &x.select(1, t))).collect();
        (Tensor::stack(&ys, 1), state)
    }
}

/// Implements [`Mixer`] for a wrapper type by delegating every form to its field `$inner`
/// (for mixers that are another mixer with fixed settings, or a per-layer choice of one).
macro_rules! delegate_mixer {
    ($ty:ty, $inner:ident) => {
        impl $crate::mixers::Mixer for $ty {
            fn forward(&self, x: &tch::Tensor, train: bool) -> tch::Tensor {
                self.$inner.forward(x, train)
            }
            fn reference(&self, x: &tch::Tensor) -> tch::Tensor {
                self.$inner.reference(x)
            }
            fn init_state(&self, batch: i64) -> $crate::mixers::MixerState {
                self.$inner.init_state(batch)
            }
            fn step(&self, state: &mut $crate::mixers::MixerState, x_t: &tch::Tensor) -> tch::Tensor {
                self.$inner.step(state, x_t)
            }
            fn state_size(&self, seq_len: i64) -> i64 {
                self.$inner.state_size(seq_len)
            }
            fn state_size_zoology(&self, seq_len: i64) -> Option<i64> {
                self.$inner.state_size_zoology(seq_len)
            }
            fn flops(&self, seq_len: i64) -> $crate::flops::MixerFlops {
                self.$inner.flops(seq_len)
            }
            fn takes_raw_residual(&self) -> bool {
                self.$inner.takes_raw_residual()
            }
            fn unused_parameters(&self) -> Vec<String> {
                self.$inner.unused_parameters()
            }
            fn prefill(&self, x: &tch::Tensor) -> (tch::Tensor, $crate::mixers::MixerState) {
                self.$inner.prefill(x)
            }
            fn take_auxiliary_loss(&self) -> Option<tch::Tensor> {
                self.$inner.take_auxiliary_loss()
            }
        }
    };
}
pub(crate) use delegate_mixer;

/// What one layer of a mixer holds in memory while it trains, from its config and sizes alone
/// (no tensor is built): the input of [`crate::config::MemoryEstimate`]. Every number is a lower
/// bound (an estimate that refuses a run must never refuse one that fits), in elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixerMemory {
    /// Parameters of the layer's mixer; `None` when the mixer states no count (the estimate then
    /// counts none).
    pub params: Option<f64>,
    /// Elements per sequence of `seq_len` tokens that the layer keeps for the backward pass,
    /// its output included (the default: the output, `d·L`).
    pub saved_per_seq: f64,
    /// Elements per sequence of the largest intermediate that lives only while the layer's
    /// forward runs (attention: the `H·L²` scores before their softmax); 0 when none is known.
    pub transient_per_seq: f64,
    /// What that intermediate is, for the message that refuses a run.
    pub transient_what: &'static str,
}

impl MixerMemory {
    /// The conservative default: no parameters counted, the output kept, nothing transient.
    pub fn output_only(d_model: i64, seq_len: i64) -> Self {
        MixerMemory {
            params: None,
            saved_per_seq: d_model.max(0) as f64 * seq_len.max(0) as f64,
            transient_per_seq: 0.0,
            transient_what: "",
        }
    }
}

/// Parameters of a [`common::layers::Linear`] `d_in → d_out` (for [`MixerKind::memory`]).
pub fn linear_params(d_in: i64, d_out: i64, bias: bool) -> f64 {
    d_in as f64 * d_out as f64 + if bias { d_out as f64 } else { 0.0 }
}

/// A mixer type as the registry sees it: name, config and constructor.
pub trait MixerKind: Mixer + Sized + 'static {
    /// Hyperparameters, with paper defaults in `Default`. Deserialised with unknown keys denied.
    type Config: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug;
    /// Config `name`.
    const NAME: &'static str;
    /// One line for `zoology mixers`.
    const ABOUT: &'static str;
    /// State size formula in elements per sequence (d = width, L = sequence length, …).
    const STATE_FORMULA: &'static str;
    /// True when the state does not grow with the sequence length.
    const CONSTANT_STATE: bool;
    /// Checks the config for this width and position; `field` prefixes error paths.
    fn validate(_cfg: &Self::Config, _d_model: i64, _ctx: &BuildCtx, _field: &str) -> Result<()> {
        Ok(())
    }
    fn build(p: nn::Path, d_model: i64, cfg: &Self::Config, ctx: &BuildCtx) -> Result<Self>;
    /// The layer's memory while it trains on sequences of `seq_len` tokens, from its config
    /// alone (a lower bound; see [`MixerMemory`]). The default counts no parameters and keeps
    /// only the output; a mixer whose parameters or intermediates are large says so here (a
    /// test checks every stated parameter count against a built mixer).
    fn memory(_cfg: &Self::Config, d_model: i64, _ctx: &BuildCtx, seq_len: i64) -> MixerMemory {
        MixerMemory::output_only(d_model, seq_len)
    }
    /// Configs the generic suite runs (always includes the default). Override to cover
    /// variants such as feature maps or filter kinds.
    fn suite_variants() -> Vec<Self::Config> {
        vec![Self::Config::default()]
    }
}

/// Type-erased registry entry.
pub struct MixerEntry {
    pub name: &'static str,
    pub about: &'static str,
    pub state_formula: &'static str,
    pub constant_state: bool,
    /// The default config as TOML (without `name`).
    pub defaults: fn() -> toml::Table,
    pub validate: fn(&toml::Table, i64, &BuildCtx, &str) -> Result<()>,
    pub build: fn(nn::Path, i64, &toml::Table, &BuildCtx, &str) -> Result<Box<dyn Mixer>>,
    pub suite_variants: fn() -> Vec<toml::Table>,
    /// The table with every field of the mixer's config written out (defaults filled in).
    pub resolve: fn(&toml::Table) -> Result<toml::Table>,
    /// [`MixerKind::memory`] of a table (width, position, sequence length).
    pub memory: fn(&toml::Table, i64, &BuildCtx, i64, &str) -> Result<MixerMemory>,
}

/// Every mixer zoology-rs knows. Adding a mixer = one file + one line here.
pub fn registry() -> Vec<MixerEntry> {
    vec![
        entry::<attention::Attention>(),
        entry::<base_conv::BaseConv>(),
        entry::<hybrid::Hybrid>(),
        entry::<long_conv::LongConv>(),
        entry::<hyena::Hyena>(),
        entry::<h3::H3>(),
        entry::<stripedhyena::StripedHyena>(),
        entry::<mega::Mega>(),
        entry::<sliding_window::SlidingWindow>(),
        entry::<linear_attention::LinearAttention>(),
        entry::<based::Based>(),
        entry::<retnet::RetNet>(),
        entry::<gla::Gla>(),
        entry::<delta_net::DeltaNet>(),
        entry::<delta_net::GatedDeltaNet>(),
        entry::<rwkv::Rwkv>(),
        entry::<rwkv5::Rwkv5>(),
        entry::<rwkv6::Rwkv6>(),
        entry::<rwkv7::Rwkv7>(),
        entry::<mamba::Mamba>(),
        entry::<performer::Performer>(),
        entry::<bigbird::BigBird>(),
        entry::<nystromformer::Nystromformer>(),
        entry::<scatterbrain::ScatterBrain>(),
        entry::<selective::SelectiveLookups>(),
        entry::<selective::SigmoidLookups>(),
        entry::<selective::SmaLookups>(),
        entry::<native_sparse_attention::NativeSparseAttention>(),
        entry::<ttt::TttLinear>(),
        entry::<ttt::TttMlp>(),
        entry::<mamba2::Mamba2>(),
        entry::<s4::S4>(),
        entry::<liquid_s4::LiquidS4>(),
        entry::<gss::Gss>(),
        entry::<bigs::Bigs>(),
        entry::<monarch_mixer::MonarchMixer>(),
    ]
}

/// Mixers that only tests can build (by name, through [`lookup`]); the generic suite and
/// `zoology mixers` do not see them.
#[cfg(test)]
fn test_only_entries() -> Vec<MixerEntry> {
    vec![entry::<testing::ZeroMixer>()]
}
#[cfg(not(test))]
fn test_only_entries() -> Vec<MixerEntry> {
    vec![]
}

pub fn names() -> Vec<&'static str> {
    registry().iter().map(|e| e.name).collect()
}

/// Looks up a mixer config table (`{ name = "...", ... }`) in the registry.
pub fn lookup(table: &toml::Table, field: &str) -> Result<MixerEntry> {
    let name = match table.get("name") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(config_err(format!("{field}.name"), format!("must be a string, got {}", other.type_str())))
        }
        None => return Err(config_err(format!("{field}.name"), format!("missing; one of: {}", names().join(", ")))),
    };
    registry().into_iter().chain(test_only_entries()).find(|e| e.name == name).ok_or_else(|| {
        config_err(format!("{field}.name"), format!("unknown mixer {name:?}; one of: {}", names().join(", ")))
    })
}

/// A mixer table with every default of its config written out, so that a saved config names
/// the whole mixer (a later change of a default cannot change what it means); a hybrid's
/// `layers` are resolved too. `None` when the table does not parse: validation says why.
pub fn resolve_table(table: &toml::Table) -> Option<toml::Table> {
    let e = lookup(table, "model.mixer").ok()?;
    let mut r = (e.resolve)(table).ok()?;
    if e.name == "hybrid" {
        if let Some(toml::Value::Array(layers)) = r.get_mut("layers") {
            for l in layers.iter_mut() {
                if let toml::Value::Table(t) = l {
                    *t = resolve_table(t)?;
                }
            }
        }
    }
    Some(r)
}

/// Validates a mixer table without building it.
pub fn validate_table(table: &toml::Table, d_model: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
    let e = lookup(table, field)?;
    (e.validate)(table, d_model, ctx, field)
}

/// Builds the mixer a table describes.
pub fn build_table(
    p: nn::Path,
    table: &toml::Table,
    d_model: i64,
    ctx: &BuildCtx,
    field: &str,
) -> Result<Box<dyn Mixer>> {
    let e = lookup(table, field)?;
    (e.build)(p, d_model, table, ctx, field)
}

/// The memory of the mixer a table describes, at layer `ctx.layer_idx` (see [`MixerMemory`]).
pub fn memory_table(table: &toml::Table, d_model: i64, ctx: &BuildCtx, seq_len: i64) -> Result<MixerMemory> {
    let e = lookup(table, "model.mixer")?;
    (e.memory)(table, d_model, ctx, seq_len, "model.mixer")
}

/// Parses `table` (minus `name`) into a mixer config, naming the offending path on error.
pub fn parse_config<C: DeserializeOwned>(table: &toml::Table, field: &str) -> Result<C> {
    let mut t = table.clone();
    t.remove("name");
    let v = toml::Value::Table(t);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let full = if path == "." || path.is_empty() { field.to_string() } else { format!("{field}.{path}") };
        config_err(full, e.into_inner().to_string())
    })
}

fn to_table<C: Serialize>(c: &C) -> toml::Table {
    match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

fn entry<M: MixerKind>() -> MixerEntry {
    MixerEntry {
        name: M::NAME,
        about: M::ABOUT,
        state_formula: M::STATE_FORMULA,
        constant_state: M::CONSTANT_STATE,
        defaults: || to_table(&M::Config::default()),
        validate: |t, d, ctx, field| {
            let c: M::Config = parse_config(t, field)?;
            M::validate(&c, d, ctx, field)
        },
        build: |p, d, t, ctx, field| {
            let c: M::Config = parse_config(t, field)?;
            M::validate(&c, d, ctx, field)?;
            Ok(Box::new(M::build(p, d, &c, ctx)?) as Box<dyn Mixer>)
        },
        memory: |t, d, ctx, l, field| {
            let c: M::Config = parse_config(t, field)?;
            Ok(M::memory(&c, d, ctx, l))
        },
        resolve: |t| {
            let c: M::Config = parse_config(t, "model.mixer")?;
            let mut r = to_table(&c);
            r.insert("name".into(), toml::Value::String(M::NAME.into()));
            Ok(r)
        },
        suite_variants: || {
            M::suite_variants()
                .iter()
                .map(|c| {
                    let mut t = to_table(c);
                    t.insert("name".into(), toml::Value::String(M::NAME.into()));
                    t
                })
                .collect()
        },
    }
}
