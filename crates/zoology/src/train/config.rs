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

use crate::device::DeviceSpec;
use crate::error::{config_err, io_err, Result};
use crate::model::ModelConfig;
use crate::tasks::TaskConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    #[default]
    Cosine,
    Constant,
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
        }
    }
}

impl RunConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let value: toml::Table = toml::from_str(text).map_err(|e| config_err(origin, format!("not valid TOML: {e}")))?;
        Self::from_table(value)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| config_err(path.display().to_string(), format!("not valid TOML: {e}")))?;
        Self::from_table(table)
    }

    /// Deserialises and validates a TOML table (after any `--set` overrides).
    pub fn from_table(table: toml::Table) -> Result<Self> {
        let cfg: RunConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            config_err(if path == "." { "<root>".into() } else { path }, e.into_inner().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }

    pub fn max_seq_len(&self) -> usize {
        self.data.train.iter().chain(self.data.test.iter()).map(|t| t.seq_len()).max().unwrap_or(0)
    }

    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        if d.train.is_empty() {
            return Err(config_err("data.train", "needs at least one [[data.train]] segment"));
        }
        if d.test.is_empty() {
            return Err(config_err("data.test", "needs at least one [[data.test]] segment"));
        }
        if d.batch_size == 0 {
            return Err(config_err("data.batch_size", "must be ≥ 1"));
        }
        if d.test_batch_size == Some(0) {
            return Err(config_err("data.test_batch_size", "must be ≥ 1"));
        }
        for (i, t) in d.train.iter().enumerate() {
            t.validate(d.vocab_size, &format!("data.train[{i}]"))?;
        }
        for (i, t) in d.test.iter().enumerate() {
            t.validate(d.vocab_size, &format!("data.test[{i}]"))?;
        }
        let tasks: Vec<(String, &TaskConfig)> = d.train.iter().enumerate().map(|(i, t)| (format!("data.train[{i}]"), t)).chain(d.test.iter().enumerate().map(|(i, t)| (format!("data.test[{i}]"), t))).collect();
        crate::tasks::check_backbone(&tasks, self.model.backbone)?;
        self.model.validate(d.vocab_size as i64, self.max_seq_len() as i64)?;
        let t = &self.train;
        if t.epochs == 0 {
            return Err(config_err("train.epochs", "must be ≥ 1"));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(config_err("train.lr", format!("must be a positive number (got {})", t.lr)));
        }
        if t.weight_decay < 0.0 {
            return Err(config_err("train.weight_decay", "must be ≥ 0"));
        }
        for (f, b) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(config_err(f, format!("must be in [0, 1) (got {b})")));
            }
        }
        if !(t.eps > 0.0) {
            return Err(config_err("train.eps", "must be > 0"));
        }
        if !(0.0..=1.0).contains(&t.min_lr_ratio) {
            return Err(config_err("train.min_lr_ratio", "must be in [0, 1]"));
        }
        if t.grad_clip < 0.0 {
            return Err(config_err("train.grad_clip", "must be ≥ 0 (0 = off)"));
        }
        if t.log_every_steps == 0 {
            return Err(config_err("train.log_every_steps", "must be ≥ 1"));
        }
        self.device.resolve("device")?;
        Ok(())
    }
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
                let idx: usize = part.parse().map_err(|_| config_err(&prefix, format!("is an array; index it with a number, not {part:?}")))?;
                let n = a.len();
                a.get_mut(idx).ok_or_else(|| config_err(&prefix, format!("index {idx} out of range (array has {n} entries)")))?
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
        let e = err_of(&OK.replace("num_examples = 10\n        [[data.test]]", "num_examples = 10\n        kv = 3\n        [[data.test]]"));
        assert!(e.contains("data.train") && e.contains("kv"), "{e}");
    }

    #[test]
    fn wrong_types_and_impossible_values_name_the_field() {
        let e = err_of(&OK.replace("d_model = 32", "d_model = \"wide\""));
        assert!(e.contains("model.d_model"), "{e}");
        let e = err_of(&OK.replace("num_heads = 2", "num_heads = 3"));
        assert!(e.contains("model.mixer.num_heads") && e.contains("divide"), "{e}");
        let e = err_of(&OK.replace("seq_len = 32\n        num_kv_pairs = 4\n        num_examples = 10\n        [[data.test]]", "seq_len = 33\n        num_kv_pairs = 4\n        num_examples = 10\n        [[data.test]]"));
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
}

/// Stable run id: FNV-1a (64-bit) of the resolved config's canonical TOML, 12 hex digits.
pub fn run_id(cfg: &RunConfig) -> String {
    let text = cfg.to_toml();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}
