//! Synthetic tasks, as a registry like the mixers.
//!
//! A task turns a validated config, a seed and a [`Split`] into a [`Segment`]: `n` sequences of
//! one length with per-position targets, where only supervised positions carry a token id and
//! every other target is [`IGNORE`]. Each task lives in one file whose doc comment states its
//! exact semantics (and the peer code it follows), implements [`Task`] (config with
//! `deny_unknown_fields`, validation with named errors, a generator that is deterministic per
//! seed and independent of the thread count, a plain sequential reference generator, its
//! supervision, metric and slices), and is listed once in [`registry!`] at the bottom of this
//! file. Everything outside the task's file (CLI, results tables, plot captions, sweep labels)
//! reads the task's properties from the registry.
//!
//! Config: `[[data.train]]` / `[[data.test]]` entries with `task = "<name>"` and the task's
//! fields; the vocabulary size is shared (`data.vocab_size`).
//!
//! Layer 2 of 11, **data** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod export;
#[cfg(test)]
mod learn_tests;
#[cfg(test)]
mod mad_configs_test;
pub mod metric;
#[cfg(test)]
pub(crate) mod stats;

pub mod associative_recall;
pub mod compositional_mqar;
pub mod compression;
pub mod cumulative_majority;
pub mod cumulative_parity;
pub mod forgetting_mqar;
pub mod fuzzy_recall;
pub mod in_context_recall;
pub mod induction_head;
pub mod majority;
pub mod memorization;
pub mod mqar;
pub mod noisy_recall;
pub mod parity;
pub mod selective_copying;
pub mod text;
pub mod vocab_majority;

use crate::error::{config_err, Result};
pub use metric::Metric;
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the blocks feed: a causal language model (every task but one) or MAD's autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backbone {
    #[default]
    LanguageModel,
    Autoencoder,
}

impl Backbone {
    pub fn name(self) -> &'static str {
        match self {
            Backbone::LanguageModel => "language_model",
            Backbone::Autoencoder => "autoencoder",
        }
    }
    /// Left out of serialised configs when default, so that existing configs keep their text
    /// and run ids.
    pub fn is_default(&self) -> bool {
        *self == Backbone::LanguageModel
    }
}

/// Token ids are stored as i32 on the host (half the memory of i64; converted to int64 tensors
/// on the device).
pub type Token = i32;

/// Target value of positions that carry no loss and no metric (PyTorch's −100 convention).
pub const IGNORE: Token = -100;

/// Which half of a run a segment is generated for. Most tasks generate both alike; some (MAD's
/// recall tasks, safari's) train on every next token and test on the recalled tokens only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    #[default]
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// `n` sequences of length `seq_len`, stored row-major (`inputs[i * seq_len + t]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub seq_len: usize,
    pub n: usize,
    pub inputs: Vec<Token>,
    pub targets: Vec<Token>,
    /// Labels for per-slice metrics, e.g. `{"num_kv_pairs": "4", "seq_len": "64"}`.
    pub slices: BTreeMap<String, String>,
    /// Registry name of the task that generated it.
    pub task: String,
    /// How predictions on this segment are scored.
    pub metric: Metric,
    pub split: Split,
}

impl Segment {
    pub fn example(&self, i: usize) -> (&[Token], &[Token]) {
        let r = i * self.seq_len..(i + 1) * self.seq_len;
        (&self.inputs[r.clone()], &self.targets[r])
    }
    /// `(inputs, targets)` as int64 tensors `[n, seq_len]` on `device`.
    pub fn to_tensors(&self, device: tch::Device) -> (tch::Tensor, tch::Tensor) {
        let shape = [self.n as i64, self.seq_len as i64];
        let t = |v: &[Token]| tch::Tensor::from_slice(v).view(shape).to_kind(tch::Kind::Int64).to_device(device);
        (t(&self.inputs), t(&self.targets))
    }

    /// The first `n` examples (all of them when `n ≥ self.n`), same settings.
    pub fn first(&self, n: usize) -> Segment {
        let n = n.min(self.n);
        let k = n * self.seq_len;
        Segment { n, inputs: self.inputs[..k].to_vec(), targets: self.targets[..k].to_vec(), ..self.clone() }
    }

    /// Number of supervised positions of each example (where the sparse head runs).
    pub fn supervised_per_example(&self) -> Vec<usize> {
        (0..self.n).map(|i| self.example(i).1.iter().filter(|&&t| t != IGNORE).count()).collect()
    }

    /// Number of supervised positions in the whole segment.
    pub fn num_supervised(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// A slice a task reports results by: a config field (or `vocab_size`, the shared vocabulary),
/// its axis label in plots and its short label in tables and sweep labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Slice {
    pub key: &'static str,
    /// Plot caption / axis words: "kv pairs", "noise fraction".
    pub label: &'static str,
    /// Column and sweep-label abbreviation: "kv", "p".
    pub short: &'static str,
}

/// Shorthands shared by many tasks.
pub const SEQ_LEN: Slice = Slice { key: "seq_len", label: "sequence length", short: "L" };
pub const VOCAB: Slice = Slice { key: "vocab_size", label: "vocabulary size", short: "V" };

/// What a task must provide. See docs/DECISIONS.md ("What a new task must provide").
pub trait Task:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + PartialEq + Default + Send + Sync + 'static
{
    /// Display name for titles and captions ("MQAR", "In-context recall (MAD)").
    const TITLE: &'static str;
    /// One line for `zoology tasks`.
    const ABOUT: &'static str;
    /// The peer code the task follows (repository and file), or "zoology-rs" for our own.
    const SOURCE: &'static str;
    /// Which positions carry a target, in training and at test time.
    const SUPERVISION: &'static str;
    /// The slices results are reported by.
    const SLICES: &'static [Slice];
    /// Short CLI flags for fields: `("kv", "num_kv_pairs")` makes `--kv` mean `--num-kv-pairs`.
    const ALIASES: &'static [(&'static str, &'static str)] = &[];
    /// Vocabulary `zoology data` uses when `--vocab-size` is not given (the peer's baseline).
    const DEFAULT_VOCAB: usize;
    /// The model backbone the task needs (MAD's compression needs its autoencoder).
    const BACKBONE: Backbone = Backbone::LanguageModel;

    /// How test predictions are scored, so that numbers compare with the peer's.
    const METRIC: Metric;

    /// Length of every generated example (the model's sequence length).
    fn seq_len(&self) -> usize;
    fn num_examples(&self) -> usize;
    fn set_num_examples(&mut self, n: usize);
    /// Checks preconditions against the shared vocabulary; `field` prefixes error paths.
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()>;
    /// `(inputs, targets)`, row-major `[n, seq_len]`. Deterministic in `seed`, independent of
    /// the thread count (use [`fill_examples`]). Call `validate` first.
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>);
    /// A plain single-threaded generator of the same task, written the obvious way (one random
    /// stream, allocations per example, the peer's loop structure): the baseline of
    /// `zoology bench data` and an independent oracle for distribution tests.
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>);
    /// The token legend `zoology data` prints (which ids are keys, values, special tokens).
    fn legend(&self, vocab_size: usize) -> String;
    /// One example as text with targets marked; default: tokens with `[x→y]` at supervised
    /// positions.
    fn render(&self, inputs: &[Token], targets: &[Token]) -> String {
        render_tokens(inputs, targets)
    }
}

/// The `num_examples` accessors of a [`Task`] impl whose config has a `num_examples` field.
macro_rules! examples_field {
    () => {
        fn num_examples(&self) -> usize {
            self.num_examples
        }
        fn set_num_examples(&mut self, n: usize) {
            self.num_examples = n;
        }
    };
}
/// `examples_field!()` plus `seq_len()` from a `seq_len` field (the example length).
macro_rules! size_fields {
    () => {
        fn seq_len(&self) -> usize {
            self.seq_len
        }
        $crate::tasks::examples_field!();
    };
}
pub(crate) use {examples_field, size_fields};

/// Tokens separated by spaces; a supervised position shows `[input→target]`.
pub fn render_tokens(inputs: &[Token], targets: &[Token]) -> String {
    inputs
        .iter()
        .zip(targets)
        .map(|(&x, &y)| if y != IGNORE { format!("[{x}→{y}]") } else { x.to_string() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Below this many tokens a segment is generated on the calling thread (rayon's start-up costs
/// more than the work).
const PAR_MIN_TOKENS: usize = 1 << 16;

/// Fills `n` examples of length `l`: inputs start as 0, targets as [`IGNORE`]. Example `i`
/// draws only from its own stream `FastRng::seed_from_u64(mix_seed(seed, i))`, so the data
/// depend on the seed alone, never on the thread count or the order of work. `init` makes
/// per-thread scratch space.
pub fn fill_examples<S, I, F>(n: usize, l: usize, seed: u64, init: I, f: F) -> (Vec<Token>, Vec<Token>)
where
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, &mut FastRng, &mut [Token], &mut [Token]) + Sync + Send,
{
    let mut inputs: Vec<Token> = vec![0; n * l];
    let mut targets = vec![IGNORE; n * l];
    if l == 0 {
        return (inputs, targets);
    }
    if n * l < PAR_MIN_TOKENS {
        let mut s = init();
        for (i, (inp, tgt)) in inputs.chunks_mut(l).zip(targets.chunks_mut(l)).enumerate() {
            let mut rng = FastRng::seed_from_u64(mix_seed(seed, i as u64));
            f(&mut s, &mut rng, inp, tgt);
        }
    } else {
        inputs.par_chunks_mut(l).zip(targets.par_chunks_mut(l)).enumerate().with_min_len(64).for_each_init(
            init,
            |s, (i, (inp, tgt))| {
                let mut rng = FastRng::seed_from_u64(mix_seed(seed, i as u64));
                f(s, &mut rng, inp, tgt);
            },
        );
    }
    (inputs, targets)
}

/// Replaces every example whose (inputs, targets) repeats an earlier one by a fresh draw from
/// stream `n + k` (k = 0, 1, …), until all are distinct — safari's deduplication, made
/// deterministic. Returns how many were redrawn.
pub fn dedup_examples<F>(l: usize, seed: u64, inputs: &mut [Token], targets: &mut [Token], f: F) -> usize
where
    F: Fn(&mut FastRng, &mut [Token], &mut [Token]),
{
    use std::collections::HashSet;
    let n = if l == 0 { 0 } else { inputs.len() / l };
    let mut seen: HashSet<(Vec<Token>, Vec<Token>)> = HashSet::with_capacity(n);
    let mut next = n as u64;
    let mut redrawn = 0;
    for i in 0..n {
        let r = i * l..(i + 1) * l;
        loop {
            let key = (inputs[r.clone()].to_vec(), targets[r.clone()].to_vec());
            if seen.insert(key) {
                break;
            }
            let mut rng = FastRng::seed_from_u64(mix_seed(seed, next));
            next += 1;
            redrawn += 1;
            inputs[r.clone()].fill(0);
            targets[r.clone()].fill(IGNORE);
            f(&mut rng, &mut inputs[r.clone()], &mut targets[r.clone()]);
            if next > 100 * (n as u64 + 100) {
                panic!("dedup_examples: could not draw {n} distinct examples; validate() must reject this config");
            }
        }
    }
    redrawn
}

/// The checks most tasks share: `seq_len ≥ min_len`, `num_examples ≥ 1`,
/// `vocab_size ≥ min_vocab` (`why` says what needs the tokens).
pub fn check_common(
    field: &str,
    seq_len: usize,
    min_len: usize,
    num_examples: usize,
    vocab_size: usize,
    min_vocab: usize,
    why: &str,
) -> Result<()> {
    if seq_len < min_len {
        return Err(config_err(format!("{field}.seq_len"), format!("must be ≥ {min_len} (got {seq_len})")));
    }
    if num_examples == 0 {
        return Err(config_err(format!("{field}.num_examples"), "must be at least 1"));
    }
    if vocab_size < min_vocab {
        return Err(config_err(
            "data.vocab_size",
            format!("must be ≥ {min_vocab} for {field} ({why}; got {vocab_size})"),
        ));
    }
    Ok(())
}

/// Fills `out` with uniform random bits (0/1 tokens), 64 per random draw.
pub fn random_bits(rng: &mut FastRng, out: &mut [Token]) {
    use rand::RngCore;
    for chunk in out.chunks_mut(64) {
        let mut b = rng.next_u64();
        for x in chunk {
            *x = (b & 1) as Token;
            b >>= 1;
        }
    }
}

/// Interprets a task's `SLICES` for a config: `(key, value)` pairs, `vocab_size` taken from the
/// shared vocabulary, every other key from the config's field of that name.
fn slice_values<T: Task>(cfg: &T, vocab_size: usize) -> BTreeMap<String, String> {
    let fields = to_table(cfg);
    T::SLICES
        .iter()
        .map(|s| {
            let v = if s.key == "vocab_size" {
                vocab_size.to_string()
            } else {
                fields
                    .get(s.key)
                    .map(value_text)
                    .unwrap_or_else(|| panic!("slice {:?} is not a field of its task", s.key))
            };
            (s.key.to_string(), v)
        })
        .collect()
}

/// A TOML value as plain text (`4`, `0.2`, `true`, `abc`).
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn to_table<C: Serialize>(c: &C) -> toml::Table {
    match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// The object-safe face of a [`Task`] config, so [`TaskConfig`] can dispatch without a match
/// per method.
trait DynTask {
    fn metric(&self) -> Metric;
    fn seq_len(&self) -> usize;
    fn num_examples(&self) -> usize;
    fn set_num_examples(&mut self, n: usize);
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()>;
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>);
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>);
    fn slices(&self, vocab_size: usize) -> BTreeMap<String, String>;
    fn fields(&self) -> toml::Table;
    fn legend(&self, vocab_size: usize) -> String;
    fn render(&self, inputs: &[Token], targets: &[Token]) -> String;
    fn backbone(&self) -> Backbone;
}

impl<T: Task> DynTask for T {
    fn metric(&self) -> Metric {
        T::METRIC
    }
    fn seq_len(&self) -> usize {
        Task::seq_len(self)
    }
    fn num_examples(&self) -> usize {
        Task::num_examples(self)
    }
    fn set_num_examples(&mut self, n: usize) {
        Task::set_num_examples(self, n)
    }
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        Task::validate(self, vocab_size, field)
    }
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        Task::generate(self, vocab_size, seed, split)
    }
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        Task::naive(self, vocab_size, seed, split)
    }
    fn slices(&self, vocab_size: usize) -> BTreeMap<String, String> {
        slice_values(self, vocab_size)
    }
    fn fields(&self) -> toml::Table {
        to_table(self)
    }
    fn legend(&self, vocab_size: usize) -> String {
        Task::legend(self, vocab_size)
    }
    fn render(&self, inputs: &[Token], targets: &[Token]) -> String {
        Task::render(self, inputs, targets)
    }
    fn backbone(&self) -> Backbone {
        T::BACKBONE
    }
}

/// A registered task as `zoology tasks`, the CLI and the results code see it.
pub struct TaskEntry {
    pub name: &'static str,
    pub title: &'static str,
    pub about: &'static str,
    pub source: &'static str,
    pub supervision: &'static str,
    pub slices: &'static [Slice],
    pub aliases: &'static [(&'static str, &'static str)],
    pub default_vocab: usize,
    pub backbone: Backbone,
    /// The default config (the peer's baseline setting).
    pub defaults: fn() -> TaskConfig,
    /// Parses a config's fields (without `task`); errors are `(path, message)`.
    pub parse: fn(toml::Table) -> std::result::Result<TaskConfig, (String, String)>,
}

fn entry<T: Task>(
    name: &'static str,
    defaults: fn() -> TaskConfig,
    parse: fn(toml::Table) -> std::result::Result<TaskConfig, (String, String)>,
) -> TaskEntry {
    TaskEntry {
        name,
        title: T::TITLE,
        about: T::ABOUT,
        source: T::SOURCE,
        supervision: T::SUPERVISION,
        slices: T::SLICES,
        aliases: T::ALIASES,
        default_vocab: T::DEFAULT_VOCAB,
        backbone: T::BACKBONE,
        defaults,
        parse,
    }
}

impl TaskEntry {
    /// The metric of the default config.
    pub fn metric(&self) -> Metric {
        (self.defaults)().metric()
    }
    /// The default config's fields (without `task`).
    pub fn default_fields(&self) -> toml::Table {
        (self.defaults)().fields()
    }
}

impl TaskConfig {
    /// Checks preconditions against the shared vocabulary size; `field` prefixes error paths.
    pub fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        self.as_dyn().validate(vocab_size, field)
    }
    /// Generates the segment for `split`. Call [`TaskConfig::validate`] first.
    pub fn generate_split(&self, vocab_size: usize, seed: u64, split: Split) -> Segment {
        let t = self.as_dyn();
        let (inputs, targets) = t.generate(vocab_size, seed, split);
        self.segment(vocab_size, split, inputs, targets)
    }
    /// The test-split segment (what `evaluate` scores).
    pub fn generate(&self, vocab_size: usize, seed: u64) -> Segment {
        self.generate_split(vocab_size, seed, Split::Test)
    }
    /// The same task from the plain sequential reference generator (other random numbers,
    /// same distribution).
    pub fn generate_naive(&self, vocab_size: usize, seed: u64, split: Split) -> Segment {
        let (inputs, targets) = self.as_dyn().naive(vocab_size, seed, split);
        self.segment(vocab_size, split, inputs, targets)
    }
    fn segment(&self, vocab_size: usize, split: Split, inputs: Vec<Token>, targets: Vec<Token>) -> Segment {
        let t = self.as_dyn();
        let (l, n) = (t.seq_len(), t.num_examples());
        assert_eq!(inputs.len(), n * l, "{}: generator returned {} tokens for {n} × {l}", self.name(), inputs.len());
        assert_eq!(targets.len(), n * l, "{}: generator returned {} targets for {n} × {l}", self.name(), targets.len());
        Segment {
            seq_len: l,
            n,
            inputs,
            targets,
            slices: t.slices(vocab_size),
            task: self.name().to_string(),
            metric: t.metric(),
            split,
        }
    }
    pub fn seq_len(&self) -> usize {
        self.as_dyn().seq_len()
    }
    pub fn num_examples(&self) -> usize {
        self.as_dyn().num_examples()
    }
    pub fn set_num_examples(&mut self, n: usize) {
        self.as_dyn_mut().set_num_examples(n)
    }
    pub fn metric(&self) -> Metric {
        self.as_dyn().metric()
    }
    pub fn backbone(&self) -> Backbone {
        self.as_dyn().backbone()
    }
    /// `(slice key, value)` for this config at `vocab_size`.
    pub fn slices(&self, vocab_size: usize) -> BTreeMap<String, String> {
        self.as_dyn().slices(vocab_size)
    }
    /// The config's fields (without `task`), defaults filled in.
    pub fn fields(&self) -> toml::Table {
        self.as_dyn().fields()
    }
    pub fn legend(&self, vocab_size: usize) -> String {
        self.as_dyn().legend(vocab_size)
    }
    pub fn render(&self, inputs: &[Token], targets: &[Token]) -> String {
        self.as_dyn().render(inputs, targets)
    }
    /// The registry entry of this config's task.
    pub fn entry(&self) -> TaskEntry {
        lookup(self.name()).expect("every TaskConfig variant is registered")
    }
    /// `mqar seq_len=64 num_kv_pairs=4 …`.
    pub fn describe(&self) -> String {
        let mut s = self.name().to_string();
        for (k, v) in self.fields() {
            s.push_str(&format!(" {k}={}", value_text(&v)));
        }
        s
    }
    /// Builds a config of task `name` from `fields` (missing ones from the task's defaults);
    /// errors name `field.<key>`.
    pub fn from_fields(name: &str, fields: &toml::Table, field: &str) -> Result<TaskConfig> {
        let e = lookup(name).ok_or_else(|| {
            config_err(format!("{field}.task"), format!("unknown task {name:?}; one of: {}", names().join(", ")))
        })?;
        let mut t = e.default_fields();
        for (k, v) in fields {
            if !t.contains_key(k) {
                let known: Vec<String> = e.default_fields().keys().cloned().collect();
                return Err(config_err(
                    format!("{field}.{k}"),
                    format!("{name} has no field {k:?}; its fields: {}", known.join(", ")),
                ));
            }
            t.insert(k.clone(), v.clone());
        }
        (e.parse)(t)
            .map_err(|(p, msg)| config_err(if p.is_empty() { field.to_string() } else { format!("{field}.{p}") }, msg))
    }
}

/// `task = "<name>"` selects the registry entry, which parses the other fields, so that an
/// error names the field inside the task (`data.train[0]: \`seq_len\`: invalid type …`) and an
/// unknown task lists the known ones.
impl<'de> Deserialize<'de> for TaskConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut t = toml::Table::deserialize(d)?;
        let name = match t.remove("task") {
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`task` must be a string naming a task (got {other}); one of: {}",
                    names().join(", ")
                )))
            }
            None => return Err(D::Error::custom(format!("missing `task`; one of: {}", names().join(", ")))),
        };
        let e = lookup(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown task {name:?}; one of: {}", names().join(", "))))?;
        (e.parse)(t).map_err(|(p, msg)| D::Error::custom(if p.is_empty() { msg } else { format!("`{p}`: {msg}") }))
    }
}

/// The names of all registered tasks, in registry order.
pub fn names() -> Vec<&'static str> {
    registry().iter().map(|e| e.name).collect()
}

pub fn lookup(name: &str) -> Option<TaskEntry> {
    registry().into_iter().find(|e| e.name == name)
}

/// The slice with this key in any registered task (`seq_len`, `num_kv_pairs`, `vocab_size`, …).
pub fn find_slice(key: &str) -> Option<Slice> {
    registry().iter().flat_map(|e| e.slices.iter().copied()).find(|s| s.key == key)
}

/// A task entry as a sweep label: `in_context_recall L=256`, the task name and its slices'
/// short labels (`vocab_size` is not in a task entry, so it is left out here).
pub fn describe_entry(t: &toml::Table) -> String {
    let name = t.get("task").and_then(|v| v.as_str()).unwrap_or("?");
    let mut s = name.to_string();
    if let Some(e) = lookup(name) {
        for sl in e.slices {
            if let Some(v) = t.get(sl.key) {
                s.push_str(&format!(" {}={}", sl.short, value_text(v)));
            }
        }
    }
    s
}

/// Checks that every task of a run can be trained with `backbone`: compression needs MAD's
/// autoencoder; every next-token task needs the causal language model (the autoencoder's
/// decoder sees the whole input, so it would read the answers).
pub fn check_backbone(tasks: &[(String, &TaskConfig)], backbone: Backbone) -> Result<()> {
    for (field, t) in tasks {
        let need = t.backbone();
        if need != backbone {
            return Err(config_err(
                "model.backbone",
                format!(
                    "{field} is task {:?}, which needs backbone = {:?}, but the model is {:?}{}",
                    t.name(),
                    need.name(),
                    backbone.name(),
                    match need {
                        Backbone::Autoencoder => "; set model.backbone = \"autoencoder\" (MAD's encoder + MLP decoder)",
                        Backbone::LanguageModel => "; the autoencoder's decoder sees the whole input and would read next-token answers, so set model.backbone = \"language_model\" (the default)",
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// SplitMix64: a seed mixer used to derive independent stream seeds from one run seed.
pub fn mix_seed(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman & Vigna), seeded through SplitMix64: a small, fast, portable generator
/// for per-example data streams. Its output for a given seed is fixed by this code, so data
/// never changes with a dependency upgrade (unlike `rand`'s `SmallRng`).
#[derive(Debug, Clone)]
pub struct FastRng {
    s: [u64; 4],
}

impl FastRng {
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        FastRng { s: [next(), next(), next(), next()] }
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in (0, 1]: 53 random bits, never 0.
    #[inline]
    pub fn unit_open0(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard exponential variate, `−ln U`.
    #[inline]
    pub fn exp1(&mut self) -> f64 {
        -self.unit_open0().ln()
    }

    /// Uniform in `[lo, hi)` (rand's unbiased range sampling).
    #[inline]
    pub fn below(&mut self, lo: usize, hi: usize) -> Token {
        use rand::Rng;
        self.gen_range(lo as Token..hi as Token)
    }

    /// True with probability `p`.
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        use rand::Rng;
        self.gen::<f64>() < p
    }
}

impl rand::RngCore for FastRng {
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.next()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core_fill(self, dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand::Error> {
        rand_core_fill(self, dest);
        Ok(())
    }
}

fn rand_core_fill(r: &mut FastRng, dest: &mut [u8]) {
    for chunk in dest.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Declares the registered tasks: `"name" => Variant(module::Config)`, one line per task. The
/// name is the `task = "..."` of configs and the `zoology data NAME` of the CLI.
macro_rules! registry {
    ($($name:tt => $variant:ident($ty:ty)),* $(,)?) => {
        /// A task generator's config, selected by `task = "..."` in a `[[data.train]]` /
        /// `[[data.test]]` entry.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "task")]
        pub enum TaskConfig {
            $( #[serde(rename = $name)] $variant($ty), )*
        }

        impl TaskConfig {
            /// Registry name (`task = "..."`).
            pub fn name(&self) -> &'static str {
                match self { $( TaskConfig::$variant(_) => $name, )* }
            }
            fn as_dyn(&self) -> &dyn DynTask {
                match self { $( TaskConfig::$variant(c) => c, )* }
            }
            fn as_dyn_mut(&mut self) -> &mut dyn DynTask {
                match self { $( TaskConfig::$variant(c) => c, )* }
            }
        }

        /// Every task zoology-rs knows, in listing order. Adding a task = one file + one line.
        pub fn registry() -> Vec<TaskEntry> {
            vec![ $( entry::<$ty>($name, || TaskConfig::$variant(<$ty>::default()), |t| {
                serde_path_to_error::deserialize::<_, $ty>(toml::Value::Table(t)).map(TaskConfig::$variant).map_err(|e| {
                    let p = e.path().to_string();
                    let msg = e.into_inner().to_string();
                    (if p == "." { String::new() } else { p }, msg.lines().next().unwrap_or("").to_string())
                })
            }), )* ]
        }
    };
}

registry! {
    "mqar" => Mqar(mqar::MqarConfig),
    "compositional_mqar" => CompositionalMqar(compositional_mqar::CompositionalMqarConfig),
    "forgetting_mqar" => ForgettingMqar(forgetting_mqar::ForgettingMqarConfig),
    "parity" => Parity(parity::ParityConfig),
    "majority" => Majority(majority::MajorityConfig),
    "vocab_majority" => VocabMajority(vocab_majority::VocabMajorityConfig),
    "cumulative_parity" => CumulativeParity(cumulative_parity::CumulativeParityConfig),
    "cumulative_majority" => CumulativeMajority(cumulative_majority::CumulativeMajorityConfig),
    "in_context_recall" => InContextRecall(in_context_recall::InContextRecallConfig),
    "fuzzy_recall" => FuzzyRecall(fuzzy_recall::FuzzyRecallConfig),
    "noisy_recall" => NoisyRecall(noisy_recall::NoisyRecallConfig),
    "selective_copying" => SelectiveCopying(selective_copying::SelectiveCopyingConfig),
    "compression" => Compression(compression::CompressionConfig),
    "memorization" => Memorization(memorization::MemorizationConfig),
    "associative_recall" => AssociativeRecall(associative_recall::AssociativeRecallConfig),
    "induction_head" => InductionHead(induction_head::InductionHeadConfig),
    "text" => Text(text::TextConfig),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_match_serde() {
        let reg = registry();
        assert!(reg.len() >= 14, "{} tasks", reg.len());
        let mut names: Vec<&str> = reg.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), reg.len(), "duplicate task names");
        for e in &reg {
            let d = (e.defaults)();
            assert_eq!(d.name(), e.name);
            // the default config round-trips through TOML with its `task` tag
            let text = toml::to_string(&d).unwrap();
            assert!(text.contains(&format!("task = \"{}\"", e.name)), "{text}");
            let back: TaskConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, d);
            // every declared slice is a field of the task or the shared vocabulary
            let s = d.slices(e.default_vocab);
            assert_eq!(s.len(), e.slices.len(), "{}", e.name);
            // every alias names a field
            for (_, f) in e.aliases {
                assert!(d.fields().contains_key(*f), "{}: alias for unknown field {f}", e.name);
            }
        }
    }

    #[test]
    fn every_default_config_validates_and_generates_deterministically() {
        for e in registry() {
            let mut c = (e.defaults)();
            c.set_num_examples(40);
            c.validate(e.default_vocab, "t").unwrap_or_else(|err| panic!("{}: default config invalid: {err}", e.name));
            for split in [Split::Train, Split::Test] {
                let a = c.generate_split(e.default_vocab, 5, split);
                assert_eq!(a, c.generate_split(e.default_vocab, 5, split), "{}: not deterministic", e.name);
                assert_ne!(a.inputs, c.generate_split(e.default_vocab, 6, split).inputs, "{}: seed ignored", e.name);
                assert_eq!((a.n, a.seq_len, a.inputs.len()), (40, c.seq_len(), 40 * c.seq_len()), "{}", e.name);
                assert!(
                    a.inputs.iter().all(|&t| t >= 0 && (t as usize) < e.default_vocab),
                    "{}: input out of vocab",
                    e.name
                );
                assert!(
                    a.targets.iter().all(|&t| t == IGNORE || (t >= 0 && (t as usize) < e.default_vocab)),
                    "{}: target out of vocab",
                    e.name
                );
                assert!(a.num_supervised() > 0, "{} {split:?}: no supervised position", e.name);
                // the naive generator makes the same shapes
                let b = c.generate_naive(e.default_vocab, 5, split);
                assert_eq!((b.n, b.seq_len), (a.n, a.seq_len), "{}", e.name);
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_any_task() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        for e in registry() {
            let mut c = (e.defaults)();
            // big enough for the parallel path
            let n = PAR_MIN_TOKENS / c.seq_len() + 70;
            c.set_num_examples(n);
            let a = c.generate_split(e.default_vocab, 9, Split::Train);
            let b = pool.install(|| c.generate_split(e.default_vocab, 9, Split::Train));
            assert!(a == b, "{}: data depend on the thread count", e.name);
        }
    }

    #[test]
    fn unknown_task_and_fields_are_named_errors() {
        let e = TaskConfig::from_fields("mqarr", &toml::Table::new(), "data.train[0]").unwrap_err().to_string();
        assert!(e.contains("data.train[0].task") && e.contains("mqar"), "{e}");
        let mut f = toml::Table::new();
        f.insert("kv".into(), 3.into());
        let e = TaskConfig::from_fields("mqar", &f, "data").unwrap_err().to_string();
        assert!(e.contains("data.kv") && e.contains("num_kv_pairs"), "{e}");
        let mut f = toml::Table::new();
        f.insert("seq_len".into(), "long".into());
        let e = TaskConfig::from_fields("mqar", &f, "data").unwrap_err().to_string();
        assert!(e.contains("data.seq_len"), "{e}");
        // in a config file: the field inside the task entry, and the list of tasks
        let e = toml::from_str::<TaskConfig>("task = \"mqar\"\nseq_len = \"long\"\nnum_kv_pairs = 4\nnum_examples = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`seq_len`"), "{e}");
        let e = toml::from_str::<TaskConfig>("task = \"parrity\"\nseq_len = 4").unwrap_err().to_string();
        assert!(e.contains("unknown task") && e.contains("parity"), "{e}");
        let e = toml::from_str::<TaskConfig>("seq_len = 4").unwrap_err().to_string();
        assert!(e.contains("missing `task`"), "{e}");
    }

    #[test]
    fn dedup_redraws_repeats_deterministically() {
        // 3-token examples over 2 symbols: 8 possible, so 6 examples repeat often
        let draw = |rng: &mut FastRng, inp: &mut [Token], tgt: &mut [Token]| {
            for (x, y) in inp.iter_mut().zip(tgt.iter_mut()) {
                *x = rng.below(0, 2);
                *y = *x;
            }
        };
        let (mut i, mut t) = fill_examples(6, 3, 1, || (), |_, r, a, b| draw(r, a, b));
        let k = dedup_examples(3, 1, &mut i, &mut t, draw);
        let rows: std::collections::HashSet<&[Token]> = i.chunks(3).collect();
        assert_eq!(rows.len(), 6, "{i:?}");
        let (mut i2, mut t2) = fill_examples(6, 3, 1, || (), |_, r, a, b| draw(r, a, b));
        assert_eq!(dedup_examples(3, 1, &mut i2, &mut t2, draw), k);
        assert_eq!(i, i2);
    }
}
