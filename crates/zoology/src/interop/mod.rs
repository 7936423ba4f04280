//! Weights both ways between zoology-rs and HazyResearch/zoology (issue 24).
//!
//! - **Export** (`zoology export RUN_DIR --format zoology --out FILE.safetensors`): the run's
//!   parameters under the names and shapes of Zoology's `LanguageModel.state_dict()`
//!   ([`names`]: the tied `lm_head.weight` and BaseConv's fixed `pos_emb.z` included, so that
//!   `load_state_dict(..., strict=True)` accepts it), and next to it `FILE.json` with
//!   `"model"`: the matching Zoology `ModelConfig` ([`zconfig`]) and `"zoology_rs"`: the run's
//!   config.toml, so that the file can be imported back without more flags. In Python:
//!   ```text
//!   cfg = ModelConfig(**json.load(open("FILE.json"))["model"])
//!   model = LanguageModel(cfg); model.load_state_dict(safetensors.torch.load_file("FILE.safetensors"), strict=True)
//!   logits = model(input_ids, return_embeddings=False)
//!   ```
//! - **Import** (`zoology import FILE --config ZOOLOGY_CONFIG.json --out RUN_DIR [--base
//!   CONFIG.toml]`): a Zoology state dict (safetensors) and its `ModelConfig` (JSON: the config
//!   itself, or an object with it under `"model"`) become a run directory: config.toml (the
//!   `[model]` translated, data/train/seed from `--base` or the JSON's `"zoology_rs"`),
//!   checkpoint.safetensors (marked finished, AdamW moments zero) and summary.json with the
//!   model's accuracy on that config's test data. It then evaluates, decodes (`zoology
//!   generate`) and appears in `zoology results` like a trained run. Import is strict: every
//!   parameter of the model must be in the file with Zoology's shape, the file must hold
//!   nothing else, the tied head must equal the embedding, and BaseConv's `pos_emb.z` must equal
//!   ours (it depends only on `l_max`).
//!
//! Covered mixers: [`names::SHARED_MIXERS`] (attention, sliding_window, base_conv short /
//! implicit long / explicit long, hyena, based, linear_attention with Zoology's feature maps, h3,
//! gla, hybrids of these), in Zoology's `TransformerBlock` with identity or MLP state mixers, and
//! mamba in Zoology's `MambaBlock` (the mamba block with an identity state mixer). Other
//! mixers are refused with a named error; docs/DECISIONS.md lists what is not covered and why.
//! `parity_tests.rs` checks logits, loss, every gradient and one AdamW step against fixtures
//! written by Zoology's own code (`scripts/zoology_fixtures.py`).
//!
//! Layer 9 of 11, **uses of trained models** (docs/ARCHITECTURE.md): it uses only modules of
//! its own layer or below; `layering_tests.rs` checks it.

pub mod names;
pub mod zconfig;

#[cfg(test)]
mod parity_tests;

use crate::config::RunConfig;
use crate::error::{config_err, io_err, Result};
use crate::mixers::base_conv::{BaseConvConfig, KernelSize, LongFilter};
use crate::mixers::common::conv::positional_features;
use crate::mixers::hyena::HyenaConfig;
use crate::model::LanguageModel;
use names::{to_zoology, LM_HEAD, WORD_EMBEDDINGS};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// A Zoology state-dict entry that zoology-rs does not store as a parameter.
enum Extra {
    /// Computed from the config (fixed positional features, buffers).
    Computed(Tensor),
    /// The same tensor as another entry (the tied head; Hyena's repeated Sin `freq`).
    CopyOf(String),
}

/// Every Zoology-only entry of this config's state dict.
fn extras(cfg: &RunConfig) -> Vec<(String, Extra)> {
    let m = &cfg.model;
    let l = cfg.max_seq_len() as i64;
    let mut out = vec![(LM_HEAD.to_string(), Extra::CopyOf(WORD_EMBEDDINGS.to_string()))];
    for i in 0..m.n_layers as usize {
        let (mut t, hybrid) = names::layer_mixer(m, i);
        let pre = names::mixer_prefix(i, hybrid);
        let name = t.remove("name").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        if name == "base_conv" {
            let Ok(c) = toml::Value::Table(t).try_into::<BaseConvConfig>() else { continue };
            let long = match &c.kernel_size {
                KernelSize::One(k) => *k == -1,
                KernelSize::PerLayer(v) => v.get(i) == Some(&-1),
            };
            if long && c.long_filter == LongFilter::Implicit {
                out.push((format!("{pre}conv.pos_emb.z"), Extra::Computed(zoology_z(l, 3))));
            }
        } else if name == "hyena" {
            let Ok(c) = toml::Value::Table(t).try_into::<HyenaConfig>() else { continue };
            let f = (Kind::Float, Device::Cpu);
            out.push((
                format!("{pre}filter_fn.pos_emb.t"),
                Extra::Computed(Tensor::linspace(0.0, 1.0, l, f).reshape([1, l, 1])),
            ));
            let ln_t = c.decay_target.ln();
            let deltas = Tensor::linspace(ln_t / c.slow_decay_pct, ln_t / c.fast_decay_pct, m.d_model, f);
            out.push((format!("{pre}filter_fn.modulation.deltas"), Extra::Computed(deltas.reshape([1, 1, m.d_model]))));
            if !c.train_pos_emb {
                out.push((format!("{pre}filter_fn.pos_emb.z"), Extra::Computed(zoology_z(l, c.emb_dim))));
            }
            for j in 1..=c.num_inner_mlps {
                let src = format!("{pre}filter_fn.implicit_filter.1.freq");
                out.push((format!("{pre}filter_fn.implicit_filter.{}.freq", 2 * j + 1), Extra::CopyOf(src)));
            }
        }
    }
    out
}

/// Zoology's `PositionalEmbedding(emb_dim, l_max).z`, `[1, l_max, emb_dim]`.
fn zoology_z(l_max: i64, emb_dim: i64) -> Tensor {
    positional_features(l_max, emb_dim, Device::Cpu).unsqueeze(0)
}

/// A model's parameters as Zoology's state dict, and Zoology's `ModelConfig`.
pub fn export_model(cfg: &RunConfig, named: &[(String, Tensor)]) -> Result<(Vec<(String, Tensor)>, Value)> {
    let l = cfg.max_seq_len() as i64;
    let model = zconfig::to_zoology(&cfg.model, cfg.data.vocab_size as i64, l)?;
    let mut out = Vec::with_capacity(named.len() + 2);
    // split Zoology tensors (real and imaginary parts): name → parts by index
    let mut parts: std::collections::BTreeMap<String, Vec<(i64, Tensor)>> = Default::default();
    for (n, t) in named {
        let m = to_zoology(n, &cfg.model, &t.size())?;
        let t = m.to_zoology_layout(&t.detach().to_device(Device::Cpu).to_kind(Kind::Float));
        match m.part {
            Some(i) => parts.entry(m.zoology).or_default().push((i, t)),
            None => out.push((m.zoology, t.contiguous())),
        }
    }
    for (name, mut p) in parts {
        p.sort_by_key(|(i, _)| *i);
        let idx: Vec<i64> = p.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, (0..names::PARTS).collect::<Vec<_>>(), "{name}: every part of a split tensor is a parameter");
        out.push((name, Tensor::stack(&p.into_iter().map(|(_, t)| t).collect::<Vec<_>>(), -1).contiguous()));
    }
    for (name, e) in extras(cfg) {
        let t = match e {
            Extra::Computed(t) => t,
            Extra::CopyOf(src) => {
                out.iter().find(|(n, _)| *n == src).map(|(_, t)| t.copy()).expect("copied entry exported")
            }
        };
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, model))
}

/// Copies a Zoology state dict (`file` names it in errors) into `model`'s variables `named`,
/// strictly (see the module doc).
pub fn load_zoology_state(
    cfg: &RunConfig,
    named: &[(String, Tensor)],
    state: &HashMap<String, Tensor>,
    file: &str,
) -> Result<()> {
    let bad = |msg: String| config_err(file, msg);
    let mut used = BTreeSet::new();
    for (n, t) in named {
        let m = to_zoology(n, &cfg.model, &t.size())?;
        let src = state.get(&m.zoology).ok_or_else(|| {
            bad(format!(
                "has no tensor {} (zoology-rs's {n}): it is not a Zoology checkpoint of this config",
                m.zoology
            ))
        })?;
        let want = m.full_shape(&t.size());
        if src.size() != want {
            return Err(bad(format!("tensor {} has shape {:?}, this config needs {want:?}", m.zoology, src.size())));
        }
        if !src.is_floating_point() {
            return Err(bad(format!("tensor {} is {:?}, not a floating-point tensor", m.zoology, src.kind())));
        }
        tch::no_grad(|| t.shallow_clone().copy_(&m.from_zoology_layout(&m.select(src), &t.size()).to_kind(t.kind())));
        used.insert(m.zoology);
    }
    check_extras(cfg, state, &mut used, &bad)?;
    if let Some(extra) = state.keys().find(|k| !used.contains(*k)) {
        return Err(bad(format!("holds {extra}, which this config's Zoology model does not have (strict loading): the file was written for another config")));
    }
    Ok(())
}

/// The Zoology-only entries: present, and equal to what they must be (computed ones within
/// 1e-5, copies exactly).
fn check_extras(
    cfg: &RunConfig,
    state: &HashMap<String, Tensor>,
    used: &mut BTreeSet<String>,
    bad: &dyn Fn(String) -> crate::Error,
) -> Result<()> {
    for (name, e) in extras(cfg) {
        let got = state
            .get(&name)
            .ok_or_else(|| bad(format!("has no {name} (Zoology's state dict of this config holds it)")))?;
        match e {
            Extra::CopyOf(src) => {
                let same = state
                    .get(&src)
                    .is_some_and(|s| s.size() == got.size() && s.to_kind(Kind::Float).equal(&got.to_kind(Kind::Float)));
                if !same && name == LM_HEAD {
                    return Err(bad(format!("{LM_HEAD} differs from {WORD_EMBEDDINGS}: Zoology ties them; an untied head cannot be imported")));
                }
                if !same {
                    return Err(bad(format!("{name} differs from {src}: in Zoology they are one parameter")));
                }
            }
            Extra::Computed(want) => {
                if got.size() != want.size() {
                    return Err(bad(format!("{name} has shape {:?}, this config's is {:?}: its l_max or width differs (the run's longest sequence is {})", got.size(), want.size(), cfg.max_seq_len())));
                }
                let diff = (got.to_kind(Kind::Float) - &want).abs().max().double_value(&[]);
                if diff > 1e-5 {
                    return Err(bad(format!("{name} differs from what zoology-rs computes for this config by {diff:.2e} (another l_max, decay or emb_dim?)")));
                }
            }
        }
        used.insert(name);
    }
    Ok(())
}

/// What `export_run` wrote.
pub struct ExportReport {
    pub weights: PathBuf,
    pub config: PathBuf,
    pub tensors: usize,
    /// The test data file, when asked for.
    pub test: Option<PathBuf>,
}

/// `zoology export RUN_DIR --format zoology --out FILE [--test-data]`; with `test_data`, the
/// run's test segments (regenerated from its config, as its evaluation saw them) go to
/// `FILE.test.safetensors` as `inputs/<i>` and `targets/<i>` (int64, ignore index −100).
pub fn export_run(dir: &Path, out: &Path, test_data: bool) -> Result<ExportReport> {
    if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(config_err(
            "--out",
            format!(
                "{} must end in .safetensors (the Zoology state dict; the config goes next to it as .json)",
                out.display()
            ),
        ));
    }
    let run = crate::generate::load_run(dir)?;
    let mut named: Vec<(String, Tensor)> = run.vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let (tensors, model) = export_model(&run.cfg, &named)?;
    Tensor::write_safetensors(&tensors, out)
        .map_err(|e| config_err("--out", format!("cannot write {}: {e}", out.display())))?;
    let config = out.with_extension("json");
    let doc = json!({
        "format": "zoology-state-dict",
        "model": model,
        "load": "model = LanguageModel(ModelConfig(**cfg['model'])); model.load_state_dict(safetensors.torch.load_file(FILE), strict=True); logits = model(x, return_embeddings=False)",
        "zoology_rs": { "run_dir": dir.display().to_string(), "config_toml": run.cfg.to_toml() },
    });
    let text = serde_json::to_string_pretty(&doc).expect("json");
    crate::rundir::write_atomic(&config, text.as_bytes())?;
    let test = test_data.then(|| out.with_extension("test.safetensors"));
    if let Some(p) = &test {
        let mut t = Vec::new();
        for (i, seg) in run.cfg.generate_test().iter().enumerate() {
            let (x, y) = seg.to_tensors(Device::Cpu);
            t.push((format!("inputs/{i}"), x));
            t.push((format!("targets/{i}"), y));
        }
        Tensor::write_safetensors(&t, p)
            .map_err(|e| config_err("--out", format!("cannot write {}: {e}", p.display())))?;
    }
    Ok(ExportReport { weights: out.to_path_buf(), config, tensors: tensors.len(), test })
}

/// Reads a Zoology config JSON: the `ModelConfig` (under `"model"` or the whole object) and,
/// when present, the zoology-rs config it came from.
fn read_zoology_json(path: &Path) -> Result<(Value, Option<String>)> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| config_err("--config", format!("{} is not JSON: {e}", path.display())))?;
    let model = v.get("model").cloned().unwrap_or_else(|| v.clone());
    let base = v.pointer("/zoology_rs/config_toml").and_then(|t| t.as_str()).map(String::from);
    Ok((model, base))
}

/// The run config of an import: `base`'s data, training and seed with the translated model.
fn import_config(model: &Value, base: &RunConfig) -> Result<RunConfig> {
    let imp = zconfig::from_zoology(model, "--config model")?;
    if imp.vocab_size != base.data.vocab_size as i64 {
        return Err(config_err(
            "data.vocab_size",
            format!("the base config's vocabulary ({}) differs from the Zoology model's ({}); give a --base config with vocab_size = {}", base.data.vocab_size, imp.vocab_size, imp.vocab_size),
        ));
    }
    if let Some(l) = imp.long_filter_len {
        if l != base.max_seq_len() as i64 {
            return Err(config_err(
                "--base",
                format!("the model's long filters have l_max = {l} but the base config's longest sequence is {}; zoology-rs sizes the filter by the data, so use data with longest sequence {l}", base.max_seq_len()),
            ));
        }
    }
    let mut table: toml::Table = toml::from_str(&base.to_toml()).map_err(|e| config_err("--base", e.to_string()))?;
    let m = toml::Value::try_from(&imp.model).map_err(|e| config_err("--config", e.to_string()))?;
    table.insert("model".into(), m);
    RunConfig::from_table(table)
}

/// A run config and a model built from it, with a Zoology state dict loaded.
pub fn import_model(
    model: &Value,
    base: &RunConfig,
    state: &HashMap<String, Tensor>,
    file: &str,
) -> Result<(RunConfig, nn::VarStore, LanguageModel)> {
    let cfg = import_config(model, base)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let lm = LanguageModel::new(&vs.root(), &cfg.model, cfg.data.vocab_size as i64, cfg.max_seq_len() as i64)?;
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    load_zoology_state(&cfg, &named, state, file)?;
    Ok((cfg, vs, lm))
}

mod run;
pub use run::{import_run, ImportReport};
