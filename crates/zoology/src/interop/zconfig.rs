//! Model configs: zoology-rs `[model]` ↔ Zoology's `ModelConfig` (pydantic, as JSON).
//!
//! Export writes every field of Zoology's `ModelConfig` explicitly. Import reads a
//! `ModelConfig` as JSON with Zoology's defaults for absent fields; an unknown field, or a value
//! zoology-rs has no equivalent for (another block type, frozen embeddings, drop path, another
//! LayerNorm epsilon, `use_act`, an MLP width other than 4·d, a mixer outside
//! [`super::names::SHARED_MIXERS`], an unknown mixer keyword), is an error naming the field.
//! `embedding_init_type` and `name` only affect initialisation and labels and are ignored.
//!
//! The mamba block is Zoology's `MambaBlock` (`block_type = "MambaBlock"`), which always builds
//! `zoology.mixers.mamba.Mamba` from the sequence mixer's kwargs and has no state mixer and no
//! embedding dropout: export needs the mamba mixer, `state_mixer = "identity"` and
//! `embed_dropout = 0` there; import ignores the config's `state_mixer` and `embed_dropout`
//! (as Zoology does) and gives `block = "mamba"`, `state_mixer = "identity"`.

use super::names::SHARED_MIXERS;
use crate::error::{config_err, Result};
use crate::mixers::base_conv::{BaseConvConfig, KernelSize, LongFilter};
use crate::mixers::common::modal::Discretization;
use crate::mixers::gla::GlaConfig;
use crate::mixers::h3::H3Config;
use crate::mixers::hyena::HyenaConfig;
use crate::mixers::mamba::MambaConfig;
use crate::model::state_mixer::StateMixerKind;
use crate::model::{BlockKind, ModelConfig};
use serde::Deserialize;
use serde_json::{json, Map, Value};

const MHA: &str = "zoology.mixers.attention.MHA";
const SLIDING: &str = "zoology.mixers.slide_attn.SlidingAttn";
const BASE_CONV: &str = "zoology.mixers.base_conv.BaseConv";
const BASED: &str = "zoology.mixers.based.Based";
const HYENA: &str = "zoology.mixers.hyena.Hyena";
const HYBRID: &str = "zoology.mixers.hybrid.Hybrid";
const MAMBA: &str = "zoology.mixers.mamba.Mamba";
const H3: &str = "zoology.mixers.h3.H3";
const GLA: &str = "zoology.mixers.gla.GatedLinearAttention";
const IDENTITY: &str = "torch.nn.Identity";
const MLP: &str = "zoology.mixers.mlp.MLP";

fn get<'a>(t: &'a toml::Table, k: &str) -> Option<&'a toml::Value> {
    t.get(k)
}

/// Zoology's `ModelConfig` (as JSON) for a zoology-rs model config; `max_seq_len` is the
/// longest sequence of the run (BaseConv's `l_max`).
pub fn to_zoology(m: &ModelConfig, vocab_size: i64, max_seq_len: i64) -> Result<Value> {
    let mamba_block = m.block_kind() == BlockKind::Mamba;
    if m.block_kind() != BlockKind::Transformer && !mamba_block {
        return Err(config_err(
            "model.block",
            "only the transformer block (Zoology's TransformerBlock) and the mamba block (MambaBlock) are exported",
        ));
    }
    if mamba_block {
        mamba_block_exportable(m)?;
    }
    if m.backbone != crate::tasks::Backbone::LanguageModel {
        return Err(config_err("model.backbone", "only `language_model` has a Zoology counterpart"));
    }
    if !m.tie_embeddings {
        return Err(config_err(
            "model.tie_embeddings",
            "Zoology ties the head to learnable word embeddings; an untied model has no Zoology counterpart",
        ));
    }
    let state_mixer = match m.state_mixer {
        StateMixerKind::Identity => json!({"name": IDENTITY, "kwargs": {}}),
        StateMixerKind::Mlp => json!({"name": MLP, "kwargs": {"hidden_mult": 4}}),
        other => {
            return Err(config_err(
                "model.state_mixer",
                format!("{other:?} has no Zoology counterpart that computes the same; use \"identity\" or \"mlp\""),
            ))
        }
    };
    Ok(json!({
        "sequence_mixer": mixer_to_zoology(&m.mixer, max_seq_len, m.d_model)?,
        "state_mixer": state_mixer,
        "d_model": m.d_model,
        "n_layers": m.n_layers,
        "max_position_embeddings": m.max_position_embeddings,
        "learnable_word_embeddings": true,
        "embedding_init_type": "default",
        "vocab_size": vocab_size,
        "resid_dropout": m.resid_dropout,
        "embed_dropout": m.embed_dropout,
        "drop_path": 0.0,
        "layer_norm_epsilon": 1e-5,
        "pad_vocab_size_multiple": 1,
        "block_type": if mamba_block { "MambaBlock" } else { "TransformerBlock" },
        "name": "default",
    }))
}

/// What Zoology's `MambaBlock` can express: a Mamba mixer, nothing else in the block.
fn mamba_block_exportable(m: &ModelConfig) -> Result<()> {
    if m.mixer_name() != "mamba" {
        return Err(config_err(
            "model.block",
            "Zoology's MambaBlock always builds a Mamba mixer; the mamba block is exported only with mixer mamba",
        ));
    }
    if m.state_mixer != StateMixerKind::Identity {
        return Err(config_err(
            "model.state_mixer",
            "Zoology's MambaBlock has no state mixer (it ignores `state_mixer`); export of the mamba block needs state_mixer = \"identity\"",
        ));
    }
    if m.embed_dropout != 0.0 {
        return Err(config_err(
            "model.embed_dropout",
            "Zoology's MambaBlock applies no embedding dropout; export of the mamba block needs embed_dropout = 0",
        ));
    }
    Ok(())
}

fn mixer_to_zoology(t: &toml::Table, max_seq_len: i64, d_model: i64) -> Result<Value> {
    let name = get(t, "name").and_then(|v| v.as_str()).unwrap_or("");
    match name {
        "attention" => {
            if get(t, "rope").and_then(|v| v.as_bool()) == Some(true) {
                return Err(config_err(
                    "model.mixer.rope",
                    "Zoology's MHA has no rotary embeddings; export needs rope = false",
                ));
            }
            let heads = get(t, "num_heads").and_then(|v| v.as_integer()).unwrap_or(1);
            let dropout = get(t, "dropout").and_then(|v| v.as_float()).unwrap_or(0.0);
            Ok(json!({"name": MHA, "kwargs": {"num_heads": heads, "dropout": dropout}}))
        }
        "sliding_window" => {
            let heads = get(t, "num_heads").and_then(|v| v.as_integer()).unwrap_or(1);
            let conv = get(t, "window_convention").and_then(|v| v.as_str()).unwrap_or("zoology");
            if heads != 1 || conv != "zoology" {
                return Err(config_err(
                    "model.mixer",
                    "Zoology's SlidingAttn has one head and sees window + 1 tokens; export needs num_heads = 1 and window_convention = \"zoology\"",
                ));
            }
            let w = get(t, "window").and_then(|v| v.as_integer()).unwrap_or(64);
            let dropout = get(t, "dropout").and_then(|v| v.as_float()).unwrap_or(0.0);
            Ok(json!({"name": SLIDING, "kwargs": {"block_size": w, "dropout": dropout}}))
        }
        "base_conv" => {
            let mut c = t.clone();
            c.remove("name");
            let c: BaseConvConfig = toml::Value::Table(c)
                .try_into()
                .map_err(|e| config_err("model.mixer", format!("not a base_conv config: {e}")))?;
            if c.filter_emb_dim != 3 || c.filter_hidden != 16 {
                return Err(config_err(
                    "model.mixer.filter_emb_dim",
                    "Zoology's BaseConv builds its implicit filter with d_emb = 3 and d_hidden = 16 (it does not pass them on); export needs filter_emb_dim = 3, filter_hidden = 16",
                ));
            }
            let ks = match &c.kernel_size {
                KernelSize::One(k) => json!(k),
                KernelSize::PerLayer(v) => json!(v),
            };
            Ok(json!({"name": BASE_CONV, "kwargs": {
                "l_max": max_seq_len, "kernel_size": ks,
                "implicit_long_conv": c.long_filter == LongFilter::Implicit, "use_act": false}}))
        }
        "based" | "linear_attention" => based_to_zoology(t, max_seq_len),
        "hyena" => {
            let mut c = t.clone();
            c.remove("name");
            let c: HyenaConfig = toml::Value::Table(c)
                .try_into()
                .map_err(|e| config_err("model.mixer", format!("not a hyena config: {e}")))?;
            Ok(json!({"name": HYENA, "kwargs": {
                "l_max": max_seq_len, "filter_order": c.filter_order, "short_filter_order": c.short_filter_order,
                "emb_dim": c.emb_dim, "w": c.w, "num_inner_mlps": c.num_inner_mlps,
                "fast_decay_pct": c.fast_decay_pct, "slow_decay_pct": c.slow_decay_pct, "target": c.decay_target}}))
        }
        "hybrid" => {
            let layers = get(t, "layers").and_then(|v| v.as_array()).cloned().unwrap_or_default();
            let mut configs = Vec::with_capacity(layers.len());
            for l in &layers {
                let sub = l.as_table().ok_or_else(|| config_err("model.mixer.layers", "must be mixer tables"))?;
                if get(sub, "name").and_then(|v| v.as_str()) == Some("hybrid") {
                    return Err(config_err(
                        "model.mixer.layers",
                        "a hybrid inside a hybrid has no Zoology counterpart",
                    ));
                }
                configs.push(mixer_to_zoology(sub, max_seq_len, d_model)?);
            }
            Ok(json!({"name": HYBRID, "kwargs": {"configs": configs}}))
        }
        "mamba" => mamba_to_zoology(t, d_model),
        "h3" => h3_to_zoology(t, max_seq_len),
        "gla" => gla_to_zoology(t),
        other => Err(config_err(
            "model.mixer.name",
            format!("{other:?} has no Zoology export yet; export/import cover {SHARED_MIXERS:?}"),
        )),
    }
}

/// h3 → Zoology's `H3` (bilinear, trained B: Zoology's default `SSKernelDiag`).
fn h3_to_zoology(t: &toml::Table, max_seq_len: i64) -> Result<Value> {
    let mut c = t.clone();
    c.remove("name");
    let c: H3Config =
        toml::Value::Table(c).try_into().map_err(|e| config_err("model.mixer", format!("not an h3 config: {e}")))?;
    if c.discretization != Discretization::Bilinear || !c.trained_b {
        return Err(config_err(
            "model.mixer.discretization",
            "Zoology's H3 discretises bilinearly and trains both SSMs' B; export needs discretization = \"bilinear\" and trained_b = true",
        ));
    }
    Ok(json!({"name": H3, "kwargs": {
        "l_max": max_seq_len, "d_state": c.d_state, "head_dim": c.head_dim, "kernel_args": {}}}))
}

/// gla → Zoology's `GatedLinearAttention` with its defaults (the only variant we have).
fn gla_to_zoology(t: &toml::Table) -> Result<Value> {
    let mut c = t.clone();
    c.remove("name");
    let c: GlaConfig =
        toml::Value::Table(c).try_into().map_err(|e| config_err("model.mixer", format!("not a gla config: {e}")))?;
    Ok(json!({"name": GLA, "kwargs": {
        "mode": "chunk", "expand_k": c.expand_k, "expand_v": c.expand_v, "num_heads": c.num_heads,
        "num_kv_heads": null, "feature_map": null, "use_short_conv": false, "use_output_gate": true,
        "gate_fn": "swish", "elementwise_affine": true, "norm_eps": c.norm_eps,
        "gate_logit_normalizer": c.gate_logit_normalizer, "gate_low_rank_dim": c.gate_low_rank_dim,
        "clamp_min": null, "fuse_norm": true}}))
}

/// mamba → Zoology's `Mamba` (`dt_rank` only "auto": Zoology's `validate_call` rejects an
/// integer; `scan`, `chunk_size`, `checkpoint_every` only choose how we compute, `init` only the
/// start).
fn mamba_to_zoology(t: &toml::Table, d_model: i64) -> Result<Value> {
    let mut c = t.clone();
    c.remove("name");
    let c: MambaConfig =
        toml::Value::Table(c).try_into().map_err(|e| config_err("model.mixer", format!("not a mamba config: {e}")))?;
    let auto = (d_model + 15) / 16;
    if c.dt_rank != 0 && c.dt_rank != auto {
        return Err(config_err(
            "model.mixer.dt_rank",
            format!("Zoology's Mamba takes dt_rank only as \"auto\" (⌈d_model/16⌉ = {auto}); export needs dt_rank = 0 or {auto}"),
        ));
    }
    Ok(json!({"name": MAMBA, "kwargs": {
        "d_state": c.d_state, "d_conv": c.d_conv, "expand": c.expand, "dt_rank": "auto",
        "conv_bias": true, "bias": false}}))
}

/// based / linear_attention → Zoology's `Based` with the matching feature map.
fn based_to_zoology(t: &toml::Table, max_seq_len: i64) -> Result<Value> {
    let based = get(t, "name").and_then(|v| v.as_str()) == Some("based");
    let map = if based { "taylor" } else { get(t, "feature_map").and_then(|v| v.as_str()).unwrap_or("elu_plus_one") };
    let normalize = based || get(t, "normalize").and_then(|v| v.as_bool()).unwrap_or(true);
    if !normalize {
        return Err(config_err(
            "model.mixer.normalize",
            "Zoology's Based always normalises; export needs normalize = true",
        ));
    }
    let (zname, _) = FEATURE_MAPS.iter().find(|(_, o)| *o == map).ok_or_else(|| {
        config_err("model.mixer.feature_map", format!("{map:?} has no Zoology feature map that computes the same"))
    })?;
    let heads = get(t, "num_heads").and_then(|v| v.as_integer()).unwrap_or(1);
    Ok(json!({"name": BASED, "kwargs": {
        "l_max": max_seq_len,
        "feature_dim": get(t, "feature_dim").and_then(|v| v.as_integer()).unwrap_or(16),
        "num_heads": heads, "num_key_value_heads": heads,
        "feature_name": zname, "feature_kwargs": {},
        "eps": get(t, "eps").and_then(|v| v.as_float()).unwrap_or(1e-12),
        "causal": true, "apply_rotary": false, "train_view": "linear"}}))
}

fn d_model() -> i64 {
    128
}
fn n_layers() -> i64 {
    2
}
fn positions() -> i64 {
    64
}
fn yes() -> bool {
    true
}
fn vocab() -> i64 {
    8192
}
fn embed_dropout() -> f64 {
    0.1
}
fn eps() -> f64 {
    1e-5
}
fn one() -> i64 {
    1
}
fn transformer() -> String {
    "TransformerBlock".into()
}
fn default_state_mixer() -> Module {
    Module { name: MLP.into(), kwargs: [("hidden_mult".to_string(), json!(4))].into_iter().collect() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Module {
    name: String,
    #[serde(default)]
    kwargs: Map<String, Value>,
}

/// Zoology's `ModelConfig` with its defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZModelConfig {
    sequence_mixer: Option<Module>,
    #[serde(default = "default_state_mixer")]
    state_mixer: Module,
    #[serde(default = "d_model")]
    d_model: i64,
    #[serde(default = "n_layers")]
    n_layers: i64,
    #[serde(default = "positions")]
    max_position_embeddings: i64,
    #[serde(default = "yes")]
    learnable_word_embeddings: bool,
    #[serde(default)]
    #[allow(dead_code)]
    embedding_init_type: Option<String>,
    #[serde(default = "vocab")]
    vocab_size: i64,
    #[serde(default)]
    resid_dropout: f64,
    #[serde(default = "embed_dropout")]
    embed_dropout: f64,
    #[serde(default)]
    drop_path: f64,
    #[serde(default = "eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "one")]
    pad_vocab_size_multiple: i64,
    #[serde(default = "transformer")]
    block_type: String,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

/// What an imported Zoology model config means here.
#[derive(Debug, Clone)]
pub struct Imported {
    pub model: ModelConfig,
    pub vocab_size: i64,
    /// BaseConv's `l_max` when a layer has a long filter (its length must be the run's longest
    /// sequence here).
    pub long_filter_len: Option<i64>,
}

/// Reads Zoology's `ModelConfig` JSON (`field` names it in errors).
pub fn from_zoology(v: &Value, field: &str) -> Result<Imported> {
    let z: ZModelConfig = serde_json::from_value(v.clone())
        .map_err(|e| config_err(field, format!("not a Zoology ModelConfig this build can import: {e}")))?;
    let bad = |f: &str, why: &str| config_err(format!("{field}.{f}"), why.to_string());
    let mamba_block = z.block_type == "MambaBlock";
    if z.block_type != "TransformerBlock" && !mamba_block {
        return Err(bad("block_type", "only TransformerBlock and MambaBlock are imported"));
    }
    if !z.learnable_word_embeddings {
        return Err(bad("learnable_word_embeddings", "frozen, untied embeddings have no zoology-rs counterpart"));
    }
    if z.drop_path != 0.0 {
        return Err(bad("drop_path", "zoology-rs has no stochastic depth; only drop_path = 0 is imported"));
    }
    if (z.layer_norm_epsilon - 1e-5).abs() > 1e-12 {
        return Err(bad("layer_norm_epsilon", "zoology-rs's LayerNorms use eps = 1e-5"));
    }
    if z.pad_vocab_size_multiple < 1 || z.vocab_size % z.pad_vocab_size_multiple != 0 {
        return Err(bad(
            "pad_vocab_size_multiple",
            "Zoology would pad the vocabulary; give the padded vocab_size and pad_vocab_size_multiple = 1",
        ));
    }
    let state_mixer = match (z.state_mixer.name.as_str(), &z.state_mixer.kwargs) {
        _ if mamba_block => "identity", // MambaBlock never reads state_mixer
        (IDENTITY, _) => "identity",
        (MLP, kw) if kw.len() == 1 && kw.get("hidden_mult") == Some(&json!(4)) => "mlp",
        _ => {
            return Err(bad(
                "state_mixer",
                "only torch.nn.Identity and zoology.mixers.mlp.MLP with kwargs {hidden_mult: 4} are imported",
            ))
        }
    };
    let seq = z.sequence_mixer.ok_or_else(|| bad("sequence_mixer", "is missing"))?;
    if mamba_block && seq.name != MAMBA {
        return Err(bad(
            "sequence_mixer.name",
            "Zoology's MambaBlock builds a Mamba from these kwargs whatever the name says; only zoology.mixers.mamba.Mamba is imported with it",
        ));
    }
    let (mixer, long_filter_len) = mixer_from_zoology(&seq, z.n_layers, &format!("{field}.sequence_mixer"))?;
    let mut t = toml::Table::new();
    t.insert("d_model".into(), z.d_model.into());
    t.insert("n_layers".into(), z.n_layers.into());
    t.insert("max_position_embeddings".into(), z.max_position_embeddings.into());
    t.insert("block".into(), if mamba_block { "mamba" } else { "transformer" }.into());
    t.insert("state_mixer".into(), state_mixer.into());
    // MambaBlock applies no embedding dropout
    t.insert("embed_dropout".into(), if mamba_block { 0.0 } else { z.embed_dropout }.into());
    t.insert("resid_dropout".into(), z.resid_dropout.into());
    t.insert("tie_embeddings".into(), true.into());
    t.insert("mixer".into(), toml::Value::Table(mixer));
    let model: ModelConfig =
        toml::Value::Table(t).try_into().map_err(|e| config_err(field, format!("translated model config: {e}")))?;
    Ok(Imported { model, vocab_size: z.vocab_size, long_filter_len })
}

type Kw = Map<String, Value>;

fn mixer_from_zoology(m: &Module, n_layers: i64, field: &str) -> Result<(toml::Table, Option<i64>)> {
    let mut kw = m.kwargs.clone();
    let mut long = None;
    let err = |f: &str, why: &str| config_err(format!("{field}.kwargs.{f}"), why.to_string());
    let t = match m.name.as_str() {
        MHA => attention_from(&mut kw, "attention", &err)?,
        SLIDING => attention_from(&mut kw, "sliding_window", &err)?,
        BASE_CONV => {
            let (t, l) = base_conv_from(&mut kw, n_layers, &err)?;
            long = l;
            t
        }
        BASED => based_from(&mut kw, &err)?,
        MAMBA => mamba_from(&mut kw, &err)?,
        GLA => gla_from(&mut kw, &err)?,
        H3 => {
            let (t, l) = h3_from(&mut kw, &err)?;
            long = Some(l);
            t
        }
        HYENA => {
            let (t, l) = hyena_from(&mut kw, &err)?;
            long = Some(l);
            t
        }
        HYBRID => {
            let configs = kw.remove("configs").and_then(|v| v.as_array().cloned());
            let configs = configs
                .filter(|c| !c.is_empty())
                .ok_or_else(|| err("configs", "must be a non-empty list of {name, kwargs}"))?;
            let mut layers = Vec::with_capacity(configs.len());
            for (i, c) in configs.iter().enumerate() {
                let f = format!("{field}.kwargs.configs[{i}]");
                let sub: Module = serde_json::from_value(c.clone()).map_err(|e| config_err(&f, e.to_string()))?;
                if sub.name == HYBRID {
                    return Err(config_err(f, "a Hybrid inside a Hybrid is not imported"));
                }
                let (t, l) = mixer_from_zoology(&sub, n_layers, &f)?;
                long = long.or(l);
                layers.push(toml::Value::Table(t));
            }
            let mut t = toml::Table::new();
            t.insert("name".into(), "hybrid".into());
            t.insert("layers".into(), toml::Value::Array(layers));
            t
        }
        other => {
            return Err(config_err(
                format!("{field}.name"),
                format!(
                    "{other:?} has no importer yet; import covers {MHA}, {SLIDING}, {BASE_CONV}, {BASED}, {HYENA}, {MAMBA}, {GLA}, {H3} and {HYBRID}"
                ),
            ))
        }
    };
    if let Some(k) = kw.keys().next() {
        return Err(err(
            k,
            &format!("is not a keyword zoology-rs maps for {}; remove it or extend the importer", m.name),
        ));
    }
    Ok((t, long))
}

fn int_or(kw: &mut Kw, k: &str, default: i64, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<i64> {
    kw.remove(k).map_or(Some(default), |v| v.as_i64()).ok_or_else(|| err(k, "must be an integer"))
}

fn required_int(kw: &mut Kw, k: &str, why: &str, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<i64> {
    kw.remove(k).and_then(|v| v.as_i64()).ok_or_else(|| err(k, why))
}

fn float_or(kw: &mut Kw, k: &str, default: f64, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<f64> {
    kw.remove(k).map_or(Some(default), |v| v.as_f64()).ok_or_else(|| err(k, "must be a number"))
}

/// `kw[k]` absent or equal to `want`, else an error saying `why`.
fn only(kw: &mut Kw, k: &str, want: Value, why: &str, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<()> {
    match kw.remove(k) {
        Some(v) if v != want => Err(err(k, why)),
        _ => Ok(()),
    }
}

/// `MHA` → attention, `SlidingAttn` → sliding_window (one head, Zoology's window).
fn attention_from(kw: &mut Kw, name: &str, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<toml::Table> {
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    if name == "sliding_window" {
        t.insert("window".into(), int_or(kw, "block_size", 256, err)?.into());
        t.insert("window_convention".into(), "zoology".into());
        t.insert("num_heads".into(), 1.into());
    } else {
        t.insert("num_heads".into(), int_or(kw, "num_heads", 1, err)?.into());
    }
    t.insert("dropout".into(), float_or(kw, "dropout", 0.0, err)?.into());
    only(kw, "bias", json!(true), "zoology-rs's attention projections have biases; only bias = true is imported", err)?;
    Ok(t)
}

fn base_conv_from(
    kw: &mut Kw,
    n_layers: i64,
    err: &dyn Fn(&str, &str) -> crate::Error,
) -> Result<(toml::Table, Option<i64>)> {
    let mut t = toml::Table::new();
    t.insert("name".into(), "base_conv".into());
    let l_max = required_int(kw, "l_max", "must be an integer (BaseConv requires it)", err)?;
    let ks = kw.remove("kernel_size").unwrap_or(json!(3));
    let list: Vec<i64> = match &ks {
        Value::Number(n) => vec![n.as_i64().unwrap_or(0); n_layers.max(1) as usize],
        Value::Array(a) => a.iter().map(|x| x.as_i64().unwrap_or(0)).collect(),
        _ => return Err(err("kernel_size", "must be an integer or a list of integers")),
    };
    let ksv: toml::Value = match &ks {
        Value::Number(_) => list[0].into(),
        _ => toml::Value::Array(list.iter().map(|&k| k.into()).collect()),
    };
    t.insert("kernel_size".into(), ksv);
    let implicit = kw.remove("implicit_long_conv").map_or(Some(true), |v| v.as_bool());
    let implicit = implicit.ok_or_else(|| err("implicit_long_conv", "must be true or false"))?;
    t.insert("long_filter".into(), if implicit { "implicit" } else { "explicit" }.into());
    only(
        kw,
        "use_act",
        json!(false),
        "zoology-rs's base_conv has no SiLU gates; only use_act = false is imported",
        err,
    )?;
    let long = list.iter().take(n_layers as usize).any(|&k| k == -1).then_some(l_max);
    Ok((t, long))
}

/// `Hyena` (one head, one block, causal, modulated, unnormalised) → hyena with a trained `z`
/// (Zoology's is a parameter). Zoology's per-group `lr`, `lr_pos_emb` and `wd` are dropped: its
/// trainer builds one parameter group and never reads them.
fn hyena_from(kw: &mut Kw, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<(toml::Table, i64)> {
    let l_max = required_int(kw, "l_max", "must be an integer (Hyena requires it)", err)?;
    let mut t = toml::Table::new();
    t.insert("name".into(), "hyena".into());
    t.insert("filter_order".into(), int_or(kw, "filter_order", 64, err)?.into());
    t.insert("short_filter_order".into(), int_or(kw, "short_filter_order", 3, err)?.into());
    t.insert("emb_dim".into(), int_or(kw, "emb_dim", 3, err)?.into());
    t.insert("num_inner_mlps".into(), int_or(kw, "num_inner_mlps", 2, err)?.into());
    t.insert("w".into(), float_or(kw, "w", 1.0, err)?.into());
    t.insert("fast_decay_pct".into(), float_or(kw, "fast_decay_pct", 0.3, err)?.into());
    t.insert("slow_decay_pct".into(), float_or(kw, "slow_decay_pct", 1.5, err)?.into());
    t.insert("decay_target".into(), float_or(kw, "target", 1e-2, err)?.into());
    t.insert("train_pos_emb".into(), true.into());
    for k in ["lr", "lr_pos_emb", "wd", "channels"] {
        kw.remove(k);
    }
    let fixed: [(&str, Value); 12] = [
        ("num_heads", json!(1)),
        ("num_blocks", json!(1)),
        ("outer_mixing", json!(false)),
        ("dropout", json!(0.0)),
        ("filter_dropout", json!(0.0)),
        ("return_state", json!(false)),
        ("bidirectional", json!(false)),
        ("modulate", json!(true)),
        ("normalized", json!(false)),
        ("bias", json!(true)),
        ("linear_mixer", json!(false)),
        ("modulation_lr", json!(0.0)),
    ];
    for (k, v) in fixed {
        if kw.get(k).is_some_and(|x| x.as_f64().zip(v.as_f64()).map_or(*x != v, |(a, b)| a != b)) {
            return Err(err(k, &format!("only {v} is imported (zoology-rs's hyena has no other)")));
        }
        kw.remove(k);
    }
    if kw.get("shift").is_some_and(|x| x.as_f64() != Some(0.0)) {
        return Err(err("shift", "only 0 is imported"));
    }
    kw.remove("shift");
    Ok((t, l_max))
}

/// `Mamba` → mamba with Mamba's own init (`init = "mamba"`; Zoology's Δ-init keywords only set
/// the start and are dropped, as is `use_fast_path`: fused or not, the same function).
fn mamba_from(kw: &mut Kw, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<toml::Table> {
    let mut t = toml::Table::new();
    t.insert("name".into(), "mamba".into());
    t.insert("d_state".into(), int_or(kw, "d_state", 16, err)?.into());
    t.insert("d_conv".into(), int_or(kw, "d_conv", 4, err)?.into());
    t.insert("expand".into(), int_or(kw, "expand", 2, err)?.into());
    t.insert("init".into(), "mamba".into());
    only(kw, "dt_rank", json!("auto"), "Zoology's Mamba accepts only \"auto\" (⌈d_model/16⌉)", err)?;
    only(kw, "conv_bias", json!(true), "zoology-rs's mamba conv has a bias; only conv_bias = true is imported", err)?;
    only(
        kw,
        "bias",
        json!(false),
        "zoology-rs's mamba projections have no biases; only bias = false is imported",
        err,
    )?;
    if kw.remove("use_fast_path").is_some_and(|v| !v.is_boolean()) {
        return Err(err("use_fast_path", "must be true or false"));
    }
    for k in ["dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor"] {
        kw.remove(k);
    }
    Ok(t)
}

/// `H3` → h3 (bilinear, trained B: Zoology's only variant without `kernel_args`). `l_max`
/// truncates Zoology's SSM kernels, so it must be the run's longest sequence, as a long
/// filter's; `use_fast_fftconv` only chooses the kernel; `dropout` is ignored by Zoology.
fn h3_from(kw: &mut Kw, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<(toml::Table, i64)> {
    let l_max = required_int(kw, "l_max", "must be an integer (zoology-rs's h3 kernels span the whole sequence)", err)?;
    let mut t = toml::Table::new();
    t.insert("name".into(), "h3".into());
    t.insert("d_state".into(), int_or(kw, "d_state", 64, err)?.into());
    t.insert("head_dim".into(), int_or(kw, "head_dim", 1, err)?.into());
    t.insert("discretization".into(), "bilinear".into());
    t.insert("trained_b".into(), true.into());
    only(
        kw,
        "kernel_args",
        json!({}),
        "only Zoology's default SSM kernel (diagonal, bilinear, S4D-Lin) is imported",
        err,
    )?;
    if kw.remove("use_fast_fftconv").is_some_and(|v| !v.is_boolean()) {
        return Err(err("use_fast_fftconv", "must be true or false"));
    }
    kw.remove("dropout"); // "just to absorb the kwarg" in Zoology's H3
    Ok((t, l_max))
}

/// `GatedLinearAttention` (fla's GLA layer) → gla. Zoology's defaults are the only variant
/// zoology-rs has: output gate with the fused RMSNorm·swish gate, no short convolution, no
/// feature map, no grouped heads, no clamp. `mode` only chooses fla's kernel (the same function).
fn gla_from(kw: &mut Kw, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<toml::Table> {
    let mut t = toml::Table::new();
    t.insert("name".into(), "gla".into());
    let heads = int_or(kw, "num_heads", 4, err)?;
    t.insert("num_heads".into(), heads.into());
    t.insert("expand_k".into(), float_or(kw, "expand_k", 0.5, err)?.into());
    t.insert("expand_v".into(), float_or(kw, "expand_v", 1.0, err)?.into());
    t.insert("gate_low_rank_dim".into(), int_or(kw, "gate_low_rank_dim", 16, err)?.into());
    t.insert("gate_logit_normalizer".into(), float_or(kw, "gate_logit_normalizer", 16.0, err)?.into());
    t.insert("norm_eps".into(), float_or(kw, "norm_eps", 1e-5, err)?.into());
    if let Some(v) = kw.remove("mode") {
        if !["chunk", "fused_recurrent", "fused_chunk"].iter().any(|m| v == json!(m)) {
            return Err(err("mode", "must be \"chunk\", \"fused_recurrent\" or \"fused_chunk\""));
        }
    }
    if kw.remove("num_kv_heads").is_some_and(|v| !v.is_null() && v != json!(heads)) {
        return Err(err("num_kv_heads", "zoology-rs's gla has no grouped heads: null or num_heads"));
    }
    let fixed: [(&str, Value, &str); 7] = [
        ("feature_map", Value::Null, "zoology-rs's gla applies no feature map to q and k"),
        ("use_short_conv", json!(false), "zoology-rs's gla has no short convolutions"),
        ("use_output_gate", json!(true), "zoology-rs's gla always has the output gate"),
        ("gate_fn", json!("swish"), "zoology-rs's gla gates with swish"),
        ("elementwise_affine", json!(true), "zoology-rs's gla norm has a weight"),
        ("clamp_min", Value::Null, "zoology-rs's gla does not clamp the gate"),
        (
            "fuse_norm",
            json!(true),
            "the unfused norm is named g_norm in Zoology's state dict; only fuse_norm = true is imported",
        ),
    ];
    for (k, v, why) in fixed {
        only(kw, k, v, why, err)?;
    }
    for k in ["conv_size", "conv_bias"] {
        kw.remove(k); // only read with use_short_conv
    }
    Ok(t)
}

/// Zoology's `Based` feature maps and ours (Zoology's `Based` always normalises).
const FEATURE_MAPS: &[(&str, &str)] = &[
    ("taylor_exp", "taylor"),
    ("pos_elu", "elu_plus_one"),
    ("none", "identity"),
    ("zoology.mixers.feature_maps.base.ReLU", "relu"),
    ("zoology.mixers.feature_maps.base.Square", "square"),
];

/// `Based` → based (Taylor map) or linear_attention (another map, normalised).
fn based_from(kw: &mut Kw, err: &dyn Fn(&str, &str) -> crate::Error) -> Result<toml::Table> {
    let heads = int_or(kw, "num_heads", 12, err)?;
    if int_or(kw, "num_key_value_heads", 12, err)? != heads {
        return Err(err("num_key_value_heads", "zoology-rs has no grouped heads: it must equal num_heads"));
    }
    let feature = kw.remove("feature_name").map_or(Some("taylor_exp".to_string()), |v| v.as_str().map(String::from));
    let feature = feature.ok_or_else(|| err("feature_name", "must be a string"))?;
    let ours = FEATURE_MAPS.iter().find(|(z, _)| *z == feature.as_str() || (feature == "identity" && *z == "none"));
    let (_, ours) = ours.ok_or_else(|| {
        err("feature_name", "has no zoology-rs feature map (taylor_exp, pos_elu, none, ReLU, Square are imported)")
    })?;
    let mut t = toml::Table::new();
    t.insert("name".into(), if *ours == "taylor" { "based" } else { "linear_attention" }.into());
    if *ours != "taylor" {
        t.insert("feature_map".into(), (*ours).into());
        t.insert("normalize".into(), true.into());
    }
    t.insert("feature_dim".into(), int_or(kw, "feature_dim", 16, err)?.into());
    t.insert("num_heads".into(), heads.into());
    t.insert("eps".into(), float_or(kw, "eps", 1e-12, err)?.into());
    kw.remove("l_max"); // used by Zoology's rotary embeddings only
    only(kw, "feature_kwargs", json!({}), "only the feature maps' defaults are imported (temp = 1, eps = 1e-12)", err)?;
    only(kw, "causal", json!(true), "only causal Based is imported", err)?;
    only(kw, "apply_rotary", json!(false), "zoology-rs's based has no rotary embeddings", err)?;
    if let Some(v) = kw.remove("train_view") {
        if v != json!("linear") && v != json!("quadratic") {
            return Err(err("train_view", "must be \"linear\" or \"quadratic\" (the same function)"));
        }
    }
    Ok(t)
}
