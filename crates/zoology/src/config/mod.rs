//! Run configuration (TOML). Unknown keys are errors; every error names the field's path.
//!
//! ```toml
//! seed = 123
//! device = "cpu"
//! [data]
//! vocab_size = 8192
//! batch_size = 64
//! [[data.train]]
//! task = "mqar"
//! seq_len = 64
//! num_kv_pairs = 4
//! num_examples = 20000
//! [[data.test]]
//! task = "mqar"
//! seq_len = 64
//! num_kv_pairs = 4
//! num_examples = 1000
//! [model]
//! d_model = 64
//! mixer = { name = "attention", num_heads = 1 }
//! [train]
//! epochs = 16
//! lr = 1e-3
//! ```
//!
//! Layer 5 of 11, **config** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use crate::device::{DeviceSpec, Precision};
use crate::error::{config_err, io_err, Error, Result};
use crate::model::ModelConfig;
use crate::tasks::{mix_seed, Segment, Split, TaskConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub mod fuzz;
pub mod memory;
pub mod toml_path;

pub use memory::{mem_total_bytes, MemoryEstimate};

fn seed() -> u64 {
    123
}
fn vocab() -> usize {
    8192
}
fn batch() -> usize {
    64
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Free-form label shown in tables and plots.
    #[serde(default)]
    pub name: String,
    /// Seeds initialisation, data, shuffling and dropout.
    #[serde(default = "seed")]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceSpec,
    /// libtorch intra-op threads (0 = libtorch's default).
    #[serde(default)]
    pub threads: usize,
    pub data: DataConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(default = "vocab")]
    pub vocab_size: usize,
    /// Training batch size (sequences).
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Evaluation batch size (defaults to batch_size).
    #[serde(default)]
    pub test_batch_size: Option<usize>,
    /// Training segments (a mixture of task settings).
    pub train: Vec<TaskConfig>,
    /// Test segments; per-slice accuracy is reported for each.
    pub test: Vec<TaskConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine from `lr` to `lr · min_lr_ratio`, updated every optimiser step.
    #[default]
    Cosine,
    Constant,
    /// Zoology's `CosineAnnealingLR(T_max = epochs, eta_min)` stepped once per epoch: every
    /// step of epoch `e` (from 0) uses `min + (lr − min)·(1 + cos(π·e/epochs))/2`, with
    /// `min = lr · min_lr_ratio` (Zoology: 0). Warmup, if set, still applies first.
    CosinePerEpoch,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Exempt norm weights, biases (and 1-D parameters) from weight decay. Zoology decays all.
    pub no_decay_norms_biases: bool,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub schedule: Schedule,
    /// Linear warmup steps before the schedule.
    pub warmup_steps: usize,
    /// Final lr as a fraction of lr (cosine).
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
    /// Shuffle training batches each epoch.
    pub shuffle: bool,
    /// Stop when test accuracy exceeds this (Zoology: 0.99); set > 1 to never stop early.
    pub early_stop_accuracy: f64,
    /// Write a train line to metrics.jsonl every N steps.
    pub log_every_steps: usize,
    /// Also checkpoint every N steps inside an epoch (0 = only at epoch ends).
    pub checkpoint_every_steps: usize,
    /// Also evaluate on the test data every N optimiser steps inside an epoch (0 = only at
    /// epoch ends, as Zoology). Every evaluation counts for early stopping, the best accuracy
    /// and `solve_thresholds`.
    pub eval_every_steps: usize,
    /// Test accuracies (the task's metric) whose first crossing the run records in
    /// summary.json `solved`: the step, examples, tokens, wall time and training FLOPs spent up
    /// to the first evaluation at or above each. The resolution is the evaluation interval.
    pub solve_thresholds: Vec<f64>,
    /// `"fp32"` (default) or `"bf16"`: the forward pass under libtorch's autocast in bfloat16
    /// (matmuls, linear layers, convolutions), with fp32 master weights, optimiser state,
    /// gradients, loss and reductions ([`crate::device::Precision`]).
    pub precision: Precision,
    /// Sequences in each probe of a text run's evaluations (the copy score and the validation
    /// loss by AR-hit label, [`crate::train::probes`]); 0 = off. Ignored without a text test
    /// segment.
    pub text_probes: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 64,
            lr: 1e-3,
            weight_decay: 0.1,
            no_decay_norms_biases: false,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: Schedule::Cosine,
            warmup_steps: 0,
            min_lr_ratio: 0.0,
            grad_clip: 0.0,
            shuffle: true,
            early_stop_accuracy: 0.99,
            log_every_steps: 50,
            checkpoint_every_steps: 0,
            eval_every_steps: 0,
            solve_thresholds: vec![0.9, 0.99],
            precision: Precision::Fp32,
            text_probes: 64,
        }
    }
}

impl TrainConfig {
    /// Checks the `[train]` settings, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{MAX_EPOCHS, MAX_STEPS};
        let t = self;
        if t.epochs == 0 || t.epochs > MAX_EPOCHS {
            return Err(config_err("train.epochs", format!("must be in [1, {MAX_EPOCHS}] (got {})", t.epochs)));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(config_err("train.lr", format!("must be a positive number (got {})", t.lr)));
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return Err(config_err(
                "train.weight_decay",
                format!("must be a finite number ≥ 0 (got {})", t.weight_decay),
            ));
        }
        for (f, b) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(config_err(f, format!("must be in [0, 1) (got {b})")));
            }
        }
        if !(t.eps > 0.0 && t.eps.is_finite()) {
            return Err(config_err("train.eps", format!("must be a finite number > 0 (got {})", t.eps)));
        }
        if !(0.0..=1.0).contains(&t.min_lr_ratio) {
            return Err(config_err("train.min_lr_ratio", format!("must be in [0, 1] (got {})", t.min_lr_ratio)));
        }
        if !(t.grad_clip >= 0.0 && t.grad_clip.is_finite()) {
            return Err(config_err(
                "train.grad_clip",
                format!("must be a finite number ≥ 0, 0 = off (got {})", t.grad_clip),
            ));
        }
        if !t.early_stop_accuracy.is_finite() {
            return Err(config_err(
                "train.early_stop_accuracy",
                format!("must be a finite number; > 1 never stops early (got {})", t.early_stop_accuracy),
            ));
        }
        for (f, v) in [
            ("train.warmup_steps", t.warmup_steps),
            ("train.log_every_steps", t.log_every_steps),
            ("train.checkpoint_every_steps", t.checkpoint_every_steps),
            ("train.eval_every_steps", t.eval_every_steps),
        ] {
            if v > MAX_STEPS {
                return Err(config_err(f, format!("must be ≤ {MAX_STEPS} (got {v})")));
            }
        }
        if t.text_probes > 1 << 16 {
            return Err(config_err("train.text_probes", format!("must be ≤ 65536 (got {}); 0 = off", t.text_probes)));
        }
        if t.log_every_steps == 0 {
            return Err(config_err("train.log_every_steps", "must be ≥ 1"));
        }
        if t.solve_thresholds.len() > 16 {
            return Err(config_err(
                "train.solve_thresholds",
                format!("at most 16 thresholds (got {})", t.solve_thresholds.len()),
            ));
        }
        for (i, &a) in t.solve_thresholds.iter().enumerate() {
            if !(a > 0.0 && a <= 1.0) {
                return Err(config_err(
                    format!("train.solve_thresholds[{i}]"),
                    format!("must be an accuracy in (0, 1] (got {a})"),
                ));
            }
        }
        Ok(())
    }
}

impl RunConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| config_err(origin, format!("not valid TOML: {e}")))?;
        Self::from_table(value)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| config_err(path.display().to_string(), format!("not valid TOML: {e}")))?;
        Self::from_table(table)
    }

    /// Deserialises a TOML table (after any `--set` overrides), resolves the mixer's defaults
    /// into it (so config.toml is the whole truth) and validates it.
    pub fn from_table(table: toml::Table) -> Result<Self> {
        check_task_entries(&table)?;
        let cfg: RunConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            config_err(if path == "." { "<root>".into() } else { path }, e.into_inner().to_string())
        })?;
        let cfg = cfg.resolved()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The same config with every mixer option its registry default does not set explicitly
    /// filled in (recursively for mixers inside mixers, e.g. `hybrid`'s layers).
    pub fn resolved(&self) -> Result<Self> {
        let mut c = self.clone();
        c.model.mixer = resolve_mixer_defaults(&self.model.mixer, "model.mixer")?;
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }

    pub fn max_seq_len(&self) -> usize {
        self.data.train.iter().chain(self.data.test.iter()).map(|t| t.seq_len()).max().unwrap_or(0)
    }

    pub fn validate(&self) -> Result<()> {
        use crate::limits::*;
        let d = &self.data;
        if !self.name.is_empty() {
            check_path_part(&self.name, "name")?; // runs/<name>-<run id>
        }
        if self.threads > MAX_THREADS {
            return Err(config_err(
                "threads",
                format!("must be ≤ {MAX_THREADS} (got {}); 0 = libtorch's default", self.threads),
            ));
        }
        if d.train.is_empty() {
            return Err(config_err("data.train", "needs at least one [[data.train]] segment"));
        }
        if d.test.is_empty() {
            return Err(config_err("data.test", "needs at least one [[data.test]] segment"));
        }
        if d.vocab_size > MAX_VOCAB {
            return Err(config_err(
                "data.vocab_size",
                format!("must be ≤ {MAX_VOCAB} = 2^31 (got {}): token ids are stored as 32-bit integers", d.vocab_size),
            ));
        }
        for (f, b) in [("data.batch_size", Some(d.batch_size)), ("data.test_batch_size", d.test_batch_size)] {
            match b {
                Some(0) => return Err(config_err(f, "must be ≥ 1")),
                Some(b) if b > MAX_BATCH => return Err(config_err(f, format!("must be ≤ {MAX_BATCH} (got {b})"))),
                _ => {}
            }
        }
        for (part, list) in [("train", &d.train), ("test", &d.test)] {
            for (i, t) in list.iter().enumerate() {
                let field = format!("data.{part}[{i}]");
                // sizes first, so that a task's own checks never see absurd numbers
                if t.seq_len() > MAX_SEQ_LEN {
                    return Err(config_err(
                        format!("{field}.seq_len"),
                        format!("must be ≤ {MAX_SEQ_LEN} (got {})", t.seq_len()),
                    ));
                }
                if t.num_examples() > MAX_EXAMPLES {
                    return Err(config_err(
                        format!("{field}.num_examples"),
                        format!("must be ≤ {MAX_EXAMPLES} (got {})", t.num_examples()),
                    ));
                }
                t.validate(d.vocab_size, &field)?;
            }
        }
        let tasks: Vec<(String, &TaskConfig)> = d
            .train
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("data.train[{i}]"), t))
            .chain(d.test.iter().enumerate().map(|(i, t)| (format!("data.test[{i}]"), t)))
            .collect();
        crate::tasks::check_backbone(&tasks, self.model.backbone)?;
        self.model.validate(d.vocab_size as i64, self.max_seq_len() as i64)?;
        self.train.validate()?;
        let m = self.memory_estimate();
        if m.bytes > MAX_BYTES {
            return Err(m.refusal(MAX_BYTES, "that any single machine has (the validation limit)"));
        }
        self.device.resolve("device")?;
        Ok(())
    }

    /// The run's training and test segments, each task generated with its own seed derived
    /// from `seed` (training segments `1000 + i`, test segments `2 000 000 + i`).
    pub fn generate_data(&self) -> (Vec<Segment>, Vec<Segment>) {
        let v = self.data.vocab_size;
        let train = self
            .data
            .train
            .iter()
            .enumerate()
            .map(|(i, t)| t.generate_split(v, mix_seed(self.seed, 1_000 + i as u64), Split::Train))
            .collect();
        (train, self.generate_test())
    }

    /// The test segments alone, as [`RunConfig::generate_data`] generates them (for `zoology
    /// generate` and constructed run directories, which need no training data).
    pub fn generate_test(&self) -> Vec<Segment> {
        let v = self.data.vocab_size;
        self.data
            .test
            .iter()
            .enumerate()
            .map(|(i, t)| t.generate_split(v, mix_seed(self.seed, 2_000_000 + i as u64), Split::Test))
            .collect()
    }

    /// A lower bound on the memory this run needs (see [`MemoryEstimate`]).
    pub fn memory_estimate(&self) -> MemoryEstimate {
        MemoryEstimate::of(self)
    }
}

/// Checks each `[[data.train]]` / `[[data.test]]` entry on its own, so that a type error names
/// the field (`data.train[0].seq_len`): the task enum is internally tagged, and serde loses the
/// path inside such enums. When it does, the key that alone reproduces the error is named.
fn check_task_entries(table: &toml::Table) -> Result<()> {
    let Some(toml::Value::Table(data)) = table.get("data") else { return Ok(()) };
    for part in ["train", "test"] {
        let Some(toml::Value::Array(entries)) = data.get(part) else { continue };
        for (i, e) in entries.iter().enumerate() {
            let field = format!("data.{part}[{i}]");
            let Some(t) = e.as_table() else {
                return Err(config_err(
                    &field,
                    format!(
                        "must be a table ([[data.{part}]] with task = \"...\" and its options), got a {}",
                        e.type_str()
                    ),
                ));
            };
            if let Err(err) = serde_path_to_error::deserialize::<_, TaskConfig>(e.clone()) {
                let path = err.path().to_string();
                let msg = err.into_inner().to_string();
                if !(path.is_empty() || path == ".") {
                    return Err(config_err(format!("{field}.{path}"), msg));
                }
                return Err(task_entry_error(t, &field, msg));
            }
        }
    }
    Ok(())
}

fn task_entry_error(t: &toml::Table, field: &str, msg: String) -> Error {
    // Deserialising `task` plus one key at a time: a type error or an unknown key shows up on
    // its own, while the other required keys are merely "missing".
    let probe = |keys: &[&str]| -> Option<String> {
        let sub: toml::Table = keys.iter().filter_map(|k| t.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
        match TaskConfig::deserialize(toml::Value::Table(sub)) {
            Ok(_) => None,
            Err(e) => Some(e.to_string()).filter(|m| !m.contains("missing field")),
        }
    };
    if t.contains_key("task") {
        if let Some(m) = probe(&["task"]) {
            return config_err(format!("{field}.task"), m.trim().to_string());
        }
        for k in t.keys().filter(|k| *k != "task") {
            if let Some(m) = probe(&["task", k]) {
                return config_err(format!("{field}.{k}"), m.trim().to_string());
            }
        }
    }
    config_err(field, msg.trim().to_string())
}

/// True when `t` is a mixer table: its `name` is a registered mixer.
fn is_mixer_table(t: &toml::Table) -> bool {
    t.get("name").and_then(|v| v.as_str()).map(|n| crate::mixers::names().contains(&n)).unwrap_or(false)
}

/// Fills in every option of a mixer table that the table leaves out, from the registry
/// (`mixers::resolve_table`: the table is parsed into the mixer's config and written back, so
/// types are canonical, e.g. an integer where the option is a float becomes that float; a
/// hybrid's layers are resolved too). An unknown mixer is an error naming `field`; a table
/// whose options do not parse is returned as is, for validation to name the bad option.
pub fn resolve_mixer_defaults(t: &toml::Table, field: &str) -> Result<toml::Table> {
    crate::mixers::lookup(t, field)?;
    Ok(crate::mixers::resolve_table(t).unwrap_or_else(|| t.clone()))
}

/// The inverse for run ids: drops every option equal to its registry default (compared after
/// resolving both sides), recursively. Tables that are not valid mixer tables are kept as is.
pub fn strip_mixer_defaults(t: &toml::Table) -> toml::Table {
    let Ok(entry) = crate::mixers::lookup(t, "") else { return t.clone() };
    let resolve = |v: &toml::Value| -> toml::Value {
        match v {
            toml::Value::Table(x) if is_mixer_table(x) => {
                resolve_mixer_defaults(x, "").map(toml::Value::Table).unwrap_or_else(|_| v.clone())
            }
            toml::Value::Array(a) => toml::Value::Array(
                a.iter()
                    .map(|x| match x {
                        toml::Value::Table(y) if is_mixer_table(y) => {
                            resolve_mixer_defaults(y, "").map(toml::Value::Table).unwrap_or_else(|_| x.clone())
                        }
                        other => other.clone(),
                    })
                    .collect(),
            ),
            toml::Value::Integer(i) => toml::Value::Float(*i as f64),
            other => other.clone(),
        }
    };
    let defaults = (entry.defaults)();
    let mut out = toml::Table::new();
    for (k, v) in t {
        if k != "name" {
            if let Some(dv) = defaults.get(k) {
                if resolve(v) == resolve(dv) {
                    continue;
                }
            }
        }
        let v = match v {
            toml::Value::Table(x) if is_mixer_table(x) => toml::Value::Table(strip_mixer_defaults(x)),
            toml::Value::Array(a) => toml::Value::Array(
                a.iter()
                    .map(|x| match x {
                        toml::Value::Table(y) if is_mixer_table(y) => toml::Value::Table(strip_mixer_defaults(y)),
                        other => other.clone(),
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        out.insert(k.clone(), v);
    }
    out
}

/// Applies `key=value` overrides to a TOML table. `key` is a dotted path (`train.lr`,
/// `model.mixer.num_heads`, `data.train.0.seq_len` for array entries); `value` is parsed as a
/// TOML value (`3`, `1e-3`, `true`, `[3, -1]`, `"cuda"`), falling back to a bare string.
pub fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| config_err("--set", format!("expected key=value, got {assignment:?}")))?;
    let key = key.trim();
    let value = parse_value(raw.trim());
    set_path(table, key, value)
}

/// Parses a TOML literal; a bare word becomes a string.
pub fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap(),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Sets a dotted path inside a table, creating intermediate tables. Numeric components index
/// arrays.
pub fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(config_err(key, "empty component in dotted key"));
    }
    let mut cur: &mut toml::Value = table_entry(table, parts[0]);
    for (i, part) in parts.iter().enumerate().skip(1) {
        let prefix = parts[..i].join(".");
        cur = match cur {
            toml::Value::Table(t) => table_entry(t, part),
            toml::Value::Array(a) => {
                let idx: usize = part
                    .parse()
                    .map_err(|_| config_err(&prefix, format!("is an array; index it with a number, not {part:?}")))?;
                let n = a.len();
                a.get_mut(idx)
                    .ok_or_else(|| config_err(&prefix, format!("index {idx} out of range (array has {n} entries)")))?
            }
            _ => return Err(config_err(&prefix, "is not a table; cannot set a key inside it")),
        };
    }
    *cur = value;
    Ok(())
}

fn table_entry<'a>(t: &'a mut toml::Table, k: &str) -> &'a mut toml::Value {
    t.entry(k.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
        seed = 1
        [data]
        vocab_size = 256
        [[data.train]]
        task = "mqar"
        seq_len = 32
        num_kv_pairs = 4
        num_examples = 10
        [[data.test]]
        task = "mqar"
        seq_len = 32
        num_kv_pairs = 4
        num_examples = 10
        [model]
        d_model = 32
        mixer = { name = "attention", num_heads = 2 }
    "#;

    fn err_of(text: &str) -> String {
        RunConfig::from_toml_str(text, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn valid_config_parses_and_round_trips() {
        let c = RunConfig::from_toml_str(OK, "t").unwrap();
        assert_eq!(c.data.vocab_size, 256);
        assert_eq!(c.model.mixer_name(), "attention");
        let again = RunConfig::from_toml_str(&c.to_toml(), "t").unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn unknown_keys_are_errors_with_paths() {
        let e = err_of(&OK.replace("seed = 1", "seed = 1\nsede = 2"));
        assert!(e.contains("sede"), "{e}");
        let e = err_of(&OK.replace("d_model = 32", "d_model = 32\nwidth = 3"));
        assert!(e.contains("model") && e.contains("width"), "{e}");
        let e = err_of(&OK.replace("num_heads = 2", "num_heads = 2, heads = 3"));
        assert!(e.contains("model.mixer") && e.contains("heads"), "{e}");
        let e = err_of(&OK.replace(
            "num_examples = 10\n        [[data.test]]",
            "num_examples = 10\n        kv = 3\n        [[data.test]]",
        ));
        assert!(e.contains("data.train") && e.contains("kv"), "{e}");
    }

    #[test]
    fn wrong_types_and_impossible_values_name_the_field() {
        let e = err_of(&OK.replace("d_model = 32", "d_model = \"wide\""));
        assert!(e.contains("model.d_model"), "{e}");
        let e = err_of(&OK.replace("num_heads = 2", "num_heads = 3"));
        assert!(e.contains("model.mixer.num_heads") && e.contains("divide"), "{e}");
        let e = err_of(&OK.replace(
            "seq_len = 32\n        num_kv_pairs = 4\n        num_examples = 10\n        [[data.test]]",
            "seq_len = 33\n        num_kv_pairs = 4\n        num_examples = 10\n        [[data.test]]",
        ));
        assert!(e.contains("data.train[0].seq_len"), "{e}");
        let e = err_of(&OK.replace("name = \"attention\"", "name = \"transformer\""));
        assert!(e.contains("model.mixer.name") && e.contains("attention"), "{e}");
        let e = err_of(&format!("{OK}\n[train]\nlr = -1.0\n"));
        assert!(e.contains("train.lr"), "{e}");
        let e = err_of(&OK.replace("seed = 1", "seed = 1\ndevice = \"tpu\""));
        assert!(e.contains("device"), "{e}");
        let e = err_of("this is not toml");
        assert!(e.contains("test.toml"), "{e}");
    }

    #[test]
    fn set_overrides_paths_and_arrays() {
        let mut t: toml::Table = toml::from_str(OK).unwrap();
        apply_set(&mut t, "train.lr=3e-3").unwrap();
        apply_set(&mut t, "model.mixer.num_heads=4").unwrap();
        apply_set(&mut t, "data.train.0.num_examples=99").unwrap();
        apply_set(&mut t, "device=cpu").unwrap();
        let c = RunConfig::from_table(t.clone()).unwrap();
        assert_eq!(c.train.lr, 3e-3);
        assert_eq!(c.model.mixer["num_heads"].as_integer(), Some(4));
        assert_eq!(c.data.train[0].num_examples(), 99);
        assert!(apply_set(&mut t, "nokey").is_err());
        let e = apply_set(&mut t, "data.train.7.seq_len=3").unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn sizes_are_bounded_with_named_errors_and_no_hang() {
        let cases: &[(&str, &str)] = &[
            ("[model]\nn_layers = 2147483648", "model.n_layers"),
            ("[model]\nd_model = 4294967296", "model.d_model"),
            ("[model]\nmax_position_embeddings = 9223372036854775807", "model.max_position_embeddings"),
            ("threads = 4294967297", "threads"),
            ("[data]\nvocab_size = 4294967552", "data.vocab_size"),
            ("[data]\nbatch_size = 1099511627776", "data.batch_size"),
            ("[data]\ntest_batch_size = 0", "data.test_batch_size"),
            ("[train]\nepochs = 0", "train.epochs"),
            ("[train]\nepochs = 9223372036854775807", "train.epochs"),
            ("[train]\nweight_decay = nan", "train.weight_decay"),
            ("[train]\nweight_decay = inf", "train.weight_decay"),
            ("[train]\ngrad_clip = inf", "train.grad_clip"),
            ("[train]\ngrad_clip = nan", "train.grad_clip"),
            ("[train]\nearly_stop_accuracy = nan", "train.early_stop_accuracy"),
            ("[train]\nsolve_thresholds = [0.9, 1.5]", "train.solve_thresholds[1]"),
            ("[train]\nsolve_thresholds = [nan]", "train.solve_thresholds[0]"),
            ("[train]\neval_every_steps = 9223372036854775807", "train.eval_every_steps"),
            ("[train]\neps = inf", "train.eps"),
            ("[train]\neps = nan", "train.eps"),
            ("[train]\nlr = inf", "train.lr"),
            ("[train]\nbeta1 = nan", "train.beta1"),
            ("[train]\nmin_lr_ratio = nan", "train.min_lr_ratio"),
            ("[train]\nwarmup_steps = 9223372036854775807", "train.warmup_steps"),
            ("[model]\nembed_dropout = nan", "model.embed_dropout"),
        ];
        for (extra, field) in cases {
            // merge the extra keys into OK's tables
            let mut t: toml::Table = toml::from_str(OK).unwrap();
            let x: toml::Table = toml::from_str(extra).unwrap();
            for (k, v) in x {
                match (t.get_mut(&k), v) {
                    (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => dst.extend(src),
                    (_, v) => {
                        t.insert(k, v);
                    }
                }
            }
            let start = std::time::Instant::now();
            let e = RunConfig::from_table(t).unwrap_err().to_string();
            assert!(start.elapsed().as_secs_f64() < 1.0, "{extra}: validation took {:?}", start.elapsed());
            assert!(e.contains(&format!("`{field}`")), "{extra}: error should name {field}: {e}");
        }
        // big data: refused before anything is generated, naming what is large
        let big = OK
            .replace("num_examples = 10\n        [[data.test]]", "num_examples = 4294967296\n        [[data.test]]")
            .replace(
                "seq_len = 32\n        num_kv_pairs = 4\n        num_examples = 4294967296",
                "seq_len = 4096\n        num_kv_pairs = 4\n        num_examples = 4294967296",
            )
            .replace("vocab_size = 256", "vocab_size = 8192");
        let e = err_of(&big);
        assert!(e.contains("`data.train[0].num_examples`") && e.contains("token data"), "{e}");
    }

    #[test]
    fn type_errors_inside_task_entries_name_the_field() {
        let e = err_of(&OK.replacen("seq_len = 32", "seq_len = \"long\"", 1));
        assert!(e.contains("`data.train[0].seq_len`"), "{e}");
        let e = err_of(&OK.replacen("num_examples = 10\n        [model]", "num_examples = [10]\n        [model]", 1));
        assert!(e.contains("`data.test[0].num_examples`"), "{e}");
        let e = err_of(&OK.replacen(
            "num_examples = 10\n        [model]",
            "num_examples = 10\n        power_a = \"flat\"\n        [model]",
            1,
        ));
        assert!(e.contains("`data.test[0].power_a`"), "{e}");
        let e = err_of(&OK.replacen("task = \"mqar\"", "task = \"recall\"", 1));
        assert!(e.contains("`data.train[0].task`") && e.contains("mqar"), "{e}");
        let e = err_of(&OK.replacen("task = \"mqar\"", "task = 3", 1));
        assert!(e.contains("`data.train[0].task`"), "{e}");
        let e = err_of(&OK.replacen("num_kv_pairs = 4\n", "", 1));
        assert!(e.contains("`data.train[0]`") && e.contains("num_kv_pairs"), "{e}");
    }

    #[test]
    fn mixer_defaults_are_resolved_into_the_config() {
        let c = RunConfig::from_toml_str(OK, "t").unwrap();
        let d = (crate::mixers::lookup(&c.model.mixer, "m").unwrap().defaults)();
        for (k, v) in &d {
            if k != "num_heads" {
                assert_eq!(c.model.mixer.get(k), Some(v), "{k}");
            }
        }
        assert_eq!(c.model.mixer["num_heads"].as_integer(), Some(2), "a set option is kept");
        // an integer given for a float option is written as the float default's type
        let t: toml::Table = toml::from_str("name = \"attention\"\nrope_base = 100").unwrap();
        let r = resolve_mixer_defaults(&t, "m").unwrap();
        assert_eq!(r["rope_base"], toml::Value::Float(100.0));
    }
}
