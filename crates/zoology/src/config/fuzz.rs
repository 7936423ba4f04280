//! Mutated configs for the tests that keep "bad input never panics" true: a fixed-seed sample
//! runs in the suite (`config::fuzz::tests`), a larger campaign through the CLI is an ignored test
//! (`crates/zoology-cli/tests/fuzz_campaign.rs`). Both draw from [`Fuzzer`].
//!
//! Mutations: drop a key; give a key a value of the wrong type; give a number an extreme value
//! (0, −1, 2^31, 2^32+1, i64::MAX, 1e308, ±inf, NaN, …); add an unknown key to a table; switch
//! the mixer; set a mixer option to an extreme or wrong-typed value or add an unknown option;
//! give a size (width, layers, batch, vocabulary, length, examples) a value that validation
//! accepts but no machine of this kind can hold ([`big_sizes`]). [`Fuzzer::next_sweep`] draws
//! sweep files whose grids range from one run to far beyond the runs limit.
//! Mixer-option mutations are drawn only for the mixers in [`fuzzed_mixers`]: those whose
//! `validate` bounds every option. Flip [`FUZZ_EVERY_MIXER`] to include every registered mixer.

use crate::config::toml_path::{get_mut, paths, remove};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Include every registered mixer's options in the mutations. On since every mixer's `validate`
/// bounds all its options (issue 8's parity work; an all-mixer campaign of 3 000 configs and 300
/// trains then found one unbounded option, stripedhyena's `short_filter_order`, now bounded).
pub const FUZZ_EVERY_MIXER: bool = true;

/// Mixers fuzzed when [`FUZZ_EVERY_MIXER`] is off (the first mixer whose options were bounded).
pub const MIXERS_WITH_BOUNDED_OPTIONS: &[&str] = &["attention"];

/// The mixers whose options the fuzzer mutates.
pub fn fuzzed_mixers() -> Vec<&'static str> {
    let all = crate::mixers::names();
    if FUZZ_EVERY_MIXER {
        all
    } else {
        all.into_iter().filter(|n| MIXERS_WITH_BOUNDED_OPTIONS.contains(n)).collect()
    }
}

/// A small valid config every mutation starts from.
pub const BASE: &str = r#"
name = "fuzz"
seed = 3
threads = 1
[data]
vocab_size = 64
batch_size = 8
[[data.train]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 16
[[data.test]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 8
[model]
d_model = 16
n_layers = 2
max_position_embeddings = 16
state_mixer = "identity"
embed_dropout = 0.0
mixer = { name = "attention", num_heads = 1 }
[train]
epochs = 1
lr = 3e-3
log_every_steps = 1
"#;

fn extremes() -> Vec<toml::Value> {
    use toml::Value::{Float as F, Integer as I};
    vec![
        I(0),
        I(-1),
        I(1),
        I(3),
        I(1 << 31),
        I((1 << 32) + 1),
        I(1 << 53),
        I(i64::MAX),
        I(i64::MIN),
        F(0.0),
        F(-0.0),
        F(0.5),
        F(1e308),
        F(-1e308),
        F(1e-320),
        F(f64::INFINITY),
        F(f64::NEG_INFINITY),
        F(f64::NAN),
    ]
}

fn wrong_types() -> Vec<toml::Value> {
    let mut t = toml::Table::new();
    t.insert("a".into(), toml::Value::Integer(1));
    vec![
        toml::Value::String("x".into()),
        toml::Value::String(String::new()),
        toml::Value::Boolean(true),
        toml::Value::Array(vec![toml::Value::Integer(1), toml::Value::Integer(2)]),
        toml::Value::Array(vec![]),
        toml::Value::Table(t),
        toml::Value::Float(2.5),
        toml::Value::Integer(7),
    ]
}

/// Sizes that pass validation's bounds (crate::limits) but, alone or together, need more memory
/// than a machine of this kind has: the estimate must refuse them before anything is allocated.
pub fn big_sizes() -> Vec<(&'static str, i64)> {
    vec![
        ("model.d_model", 1 << 14),
        ("model.d_model", 64_000),
        ("model.d_model", 1 << 16),
        ("model.n_layers", 1024),
        ("data.batch_size", 1 << 16),
        ("data.batch_size", 1 << 24),
        ("data.vocab_size", 1 << 28),
        ("data.train.0.seq_len", 1 << 16),
        ("data.train.0.seq_len", 1 << 20),
        ("data.test.0.seq_len", 1 << 18),
        ("data.train.0.num_examples", 1 << 30),
        ("data.test.0.num_examples", 1 << 28),
        ("model.max_position_embeddings", 1 << 24),
    ]
}

/// Draws mutated configs from a fixed seed.
pub struct Fuzzer {
    rng: ChaCha8Rng,
    base: toml::Value,
    mixers: Vec<&'static str>,
}

impl Fuzzer {
    pub fn new(seed: u64) -> Self {
        Self::with_mixers(seed, fuzzed_mixers())
    }

    /// A fuzzer that mutates the options of these mixers (e.g. every registered one, to find
    /// which still lack bounds).
    pub fn with_mixers(seed: u64, mixers: Vec<&'static str>) -> Self {
        Fuzzer {
            rng: ChaCha8Rng::seed_from_u64(seed),
            base: toml::Value::Table(toml::from_str(BASE).expect("the fuzz base parses")),
            mixers,
        }
    }

    /// One mutated config and a description of its mutations (1 to 3 of them).
    pub fn next_config(&mut self) -> (toml::Table, Vec<String>) {
        let mut v = self.base.clone();
        let mut what = vec![];
        // start from a mixer the fuzzer covers, with its defaults spelled out half of the time
        if let Some(&m) = self.mixers.choose(&mut self.rng) {
            let mut t = toml::Table::new();
            t.insert("name".into(), m.into());
            if self.rng.gen_bool(0.5) {
                if let Ok(e) = crate::mixers::lookup(&t, "m") {
                    t.extend((e.defaults)());
                }
            }
            if let Some(slot) = get_mut(&mut v, &["model".into(), "mixer".into()]) {
                *slot = toml::Value::Table(t);
            }
        }
        let n = [1, 1, 1, 1, 1, 1, 2, 2, 2, 3][self.rng.gen_range(0..10)];
        for _ in 0..n {
            let all = paths(&v, true);
            let kind = self.rng.gen_range(0..100);
            if kind < 25 && !self.mixers.is_empty() {
                // a mixer option
                let mixer_paths: Vec<&Vec<String>> = all
                    .iter()
                    .filter(|p| p.len() >= 3 && p[0] == "model" && p[1] == "mixer" && p[2] != "name")
                    .collect();
                let pick: Vec<String> = match mixer_paths.choose(&mut self.rng) {
                    Some(p) if self.rng.gen_bool(0.8) => (*p).clone(),
                    _ => vec![
                        "model".into(),
                        "mixer".into(),
                        ["fuzz_option", "num_heads", "d_state", "chunk_size", "feature_dim"]
                            .choose(&mut self.rng)
                            .unwrap()
                            .to_string(),
                    ],
                };
                let val = if self.rng.gen_bool(0.7) {
                    extremes().choose(&mut self.rng).unwrap().clone()
                } else {
                    wrong_types().choose(&mut self.rng).unwrap().clone()
                };
                if let Some((last, parent)) = pick.split_last() {
                    if let Some(toml::Value::Table(t)) = get_mut(&mut v, parent) {
                        what.push(format!("{} = {val}", pick.join(".")));
                        t.insert(last.clone(), val);
                    }
                }
                continue;
            }
            let Some(path) = all.choose(&mut self.rng).cloned() else { break };
            let key = path.join(".");
            match kind {
                25..=44 => {
                    if remove(&mut v, &path) {
                        what.push(format!("drop {key}"));
                    }
                }
                45..=64 => {
                    let val = wrong_types().choose(&mut self.rng).unwrap().clone();
                    what.push(format!("{key} = {val} (type)"));
                    *get_mut(&mut v, &path).unwrap() = val;
                }
                65..=84 => {
                    let val = extremes().choose(&mut self.rng).unwrap().clone();
                    what.push(format!("{key} = {val}"));
                    *get_mut(&mut v, &path).unwrap() = val;
                }
                85..=92 => {
                    // a size beyond this machine's memory (and sometimes a second one with it)
                    let (k, n) = *big_sizes().choose(&mut self.rng).unwrap();
                    let p: Vec<String> = k.split('.').map(str::to_string).collect();
                    if let Some(slot) = get_mut(&mut v, &p) {
                        what.push(format!("{k} = {n} (big)"));
                        *slot = toml::Value::Integer(n);
                    }
                }
                _ => {
                    // an unknown key in the table holding `path`, or in the root
                    let parent = &path[..path.len() - 1];
                    if let Some(toml::Value::Table(t)) = get_mut(&mut v, parent) {
                        t.insert("fuzz_unknown".into(), toml::Value::Integer(1));
                        what.push(format!(
                            "unknown key in {}",
                            if parent.is_empty() { "<root>".into() } else { parent.join(".") }
                        ));
                    }
                }
            }
        }
        match v {
            toml::Value::Table(t) => (t, what),
            _ => unreachable!("the base is a table"),
        }
    }
}

impl Fuzzer {
    /// A sweep file over the base config: 1 to 12 product axes (and sometimes mixer presets),
    /// each list 1 to 100 000 values long, so that grids range from one run to
    /// far beyond [`crate::limits::MAX_SWEEP_RUNS`]; its name is sometimes a path. Returns the
    /// text, a description and the number of runs the grid expands to (before validation).
    pub fn next_sweep(&mut self) -> (String, String, u128) {
        let keys =
            ["train.lr", "seed", "train.epochs", "model.d_model", "data.train.0.num_examples", "train.weight_decay"];
        let axes = self.rng.gen_range(1..=12usize);
        let mut text = toml::to_string(&self.base).unwrap_or_default();
        text.push_str("\n[sweep]\n");
        let name = ["grid", "grid2", "ok-name_1.2", "../../escape", "/abs", "a/b", ".."].choose(&mut self.rng).unwrap();
        text.push_str(&format!("name = {name:?}\n"));
        let mut count: u128 = 1;
        let mut what = vec![format!("name {name:?}")];
        for a in 0..axes {
            let len = *[1usize, 1, 2, 3, 10, 100_000].choose(&mut self.rng).unwrap();
            // distinct values, so that small grids are valid; the key repeats under another
            // spelling (a numeric path component) so that axes never collide
            let key = if a < keys.len() { keys[a].to_string() } else { format!("train.solve_thresholds.{a}") };
            let vals: Vec<String> = (0..len)
                .map(|i| match key.as_str() {
                    "train.lr" => format!("{:e}", 1e-4 * (1.0 + i as f64)),
                    "train.weight_decay" => format!("{:e}", 1e-6 * i as f64),
                    k if k.starts_with("train.solve_thresholds") => format!("{:e}", (i + 1) as f64 / (len + 1) as f64),
                    "model.d_model" => (8 * (i + 1)).to_string(),
                    _ => (i + 1).to_string(),
                })
                .collect();
            text.push_str(&format!("{key:?} = [{}]\n", vals.join(", ")));
            count = count.saturating_mul(len as u128);
            what.push(format!("{key} × {len}"));
        }
        if self.rng.gen_bool(0.3) {
            let n = self.rng.gen_range(2..=3usize);
            text.push_str("[sweep.mixers.attention]\nmixer = { name = \"attention\" }\n");
            text.push_str("[sweep.mixers.conv]\nmixer = { name = \"base_conv\", kernel_size = 3 }\n");
            if n == 3 {
                text.push_str("[sweep.mixers.rwkv]\nmixer = { name = \"rwkv\" }\n");
            }
            count = count.saturating_mul(n as u128);
            what.push(format!("{n} presets"));
        }
        (text, what.join(", "), count)
    }
}

/// Shrinks an accepted config so that one epoch is a step or two (for "runs that finish"):
/// at most 2 batches of training data and 1 of test data, one epoch, one thread.
pub fn make_short(cfg: &mut crate::config::RunConfig) {
    cfg.train.epochs = 1;
    cfg.threads = 1;
    let b = cfg.data.batch_size;
    let t = cfg.data.test_batch_size.unwrap_or(b);
    let shrink = |list: &mut Vec<crate::tasks::TaskConfig>, n: usize| {
        for e in list.iter_mut() {
            if let Ok(toml::Value::Table(mut tab)) = toml::Value::try_from(&*e) {
                let cur = tab.get("num_examples").and_then(|v| v.as_integer()).unwrap_or(1);
                tab.insert("num_examples".into(), toml::Value::Integer(cur.min(n as i64).max(1)));
                if let Ok(x) = toml::Value::Table(tab).try_into() {
                    *e = x;
                }
            }
        }
    };
    shrink(&mut cfg.data.train, 2 * b);
    shrink(&mut cfg.data.test, t);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::error::{catch_panic, Error};
    use crate::train::{train, TrainOptions};

    /// A fixed-seed sample of mutated configs: validation gives a config or an error naming a
    /// field, never a panic; a few accepted ones train an epoch of one or two steps and finish.
    #[test]
    fn mutated_configs_give_named_errors_or_runs_that_finish() {
        let mut f = Fuzzer::new(20240611);
        let (mut accepted, mut named, mut trained) = (vec![], 0, 0);
        for i in 0..400 {
            let (table, what) = f.next_config();
            let text = toml::to_string(&table).unwrap_or_default();
            match std::panic::catch_unwind(|| RunConfig::from_table(table.clone())) {
                Ok(Ok(cfg)) => accepted.push((cfg, what)),
                Ok(Err(Error::Config { field, msg })) => {
                    assert!(!field.is_empty() && !msg.is_empty(), "config {i} ({what:?}): empty error");
                    named += 1;
                }
                Ok(Err(e)) => panic!("config {i} ({what:?}) gave an error that is not a config error: {e}\n{text}"),
                Err(_) => panic!("config {i} ({what:?}) panicked in validation:\n{text}"),
            }
        }
        assert!(
            named > 100 && accepted.len() > 20,
            "the sample should hit both outcomes: {named} errors, {} accepted",
            accepted.len()
        );
        let dir = std::env::temp_dir().join(format!("zoology-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (k, (mut cfg, what)) in accepted.into_iter().enumerate().filter(|(k, _)| k % 6 == 0).take(5) {
            make_short(&mut cfg);
            if cfg.memory_estimate().bytes > 2e8 {
                continue;
            }
            let out = dir.join(format!("r{k}"));
            match catch_panic(|| {
                train(&cfg, &TrainOptions { out_dir: out.clone(), resume: false, quiet: true, label: String::new() })
            }) {
                Ok(s) => assert!(s.steps >= 1 || s.status == "diverged", "{what:?}: {s:?}"),
                Err(e @ (Error::Panic(_) | Error::Torch(_))) => {
                    panic!("accepted config {k} ({what:?}) crashed in training: {e}\n{}", cfg.to_toml())
                }
                Err(e) => println!("accepted config {k} ({what:?}) ended with an error: {e}"),
            }
            trained += 1;
        }
        println!("fuzz sample: {named} named errors, {trained} trained");
        assert!(trained >= 3, "only {trained} accepted configs were small enough to train");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Sizes beyond this machine: configs the sample's big-size mutation makes that validation
    /// accepts, but whose estimate exceeds this machine's memory, are refused by `train` with a
    /// config error naming a field, before the run directory is created (none allocates).
    #[test]
    fn sizes_beyond_this_machine_are_refused_before_anything_is_written() {
        let Some(total) = crate::config::mem_total_bytes() else { return };
        let dir = std::env::temp_dir().join(format!("zoology-fuzz-big-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut f = Fuzzer::new(25);
        let (mut refused, mut big) = (0, 0);
        for i in 0..1000 {
            let (table, what) = f.next_config();
            if !what.iter().any(|w| w.ends_with("(big)")) {
                continue;
            }
            big += 1;
            let Ok(Ok(cfg)) = std::panic::catch_unwind(|| RunConfig::from_table(table.clone())) else { continue };
            if cfg.memory_estimate().bytes <= total {
                continue; // fits (or might): not this test's business
            }
            let out = dir.join(format!("r{i}"));
            let opts = TrainOptions { out_dir: out.clone(), resume: false, quiet: true, label: String::new() };
            match catch_panic(|| train(&cfg, &opts)) {
                Err(Error::Config { field, msg }) => {
                    assert!(msg.contains("GiB") && !field.is_empty(), "{what:?}: {field}: {msg}");
                }
                other => panic!("config {i} {what:?} needs more than this machine has, yet train gave {other:?}"),
            }
            assert!(!out.exists(), "config {i} {what:?}: a refused run wrote {}", out.display());
            refused += 1;
        }
        println!("big sizes: {big} configs with a big size, {refused} refused before anything was written");
        assert!(refused >= 10, "the sample should reach sizes beyond this machine: {refused} of {big}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Sweep grids from one run to astronomically many: each is counted before it is expanded;
    /// above the limit it is refused quickly with the count, names that are paths are refused,
    /// and nothing panics.
    #[test]
    fn sweep_grids_of_any_size_are_counted_before_they_expand() {
        let mut f = Fuzzer::new(7);
        let (mut over, mut parsed, mut named) = (0, 0, 0);
        let t0 = std::time::Instant::now();
        for i in 0..150 {
            let (text, what, count) = f.next_sweep();
            let started = std::time::Instant::now();
            let r = std::panic::catch_unwind(|| crate::sweep::Sweep::parse(&text, &format!("g{i}.toml"), "g"));
            let dt = started.elapsed().as_secs_f64();
            match r {
                Err(_) => panic!("sweep {i} ({what}) panicked"),
                Ok(Ok(s)) => {
                    assert!(count <= crate::limits::MAX_SWEEP_RUNS as u128 && s.runs.len() as u128 == count, "{what}");
                    parsed += 1;
                }
                Ok(Err(e)) => {
                    let m = e.to_string();
                    assert!(m.contains("config: `") || m.contains("same config"), "sweep {i} ({what}): {m}");
                    if count > crate::limits::MAX_SWEEP_RUNS as u128 && !m.contains("`sweep.name`") {
                        assert!(m.contains("more than the limit") && dt < 5.0, "sweep {i} ({what}): {dt:.1} s: {m}");
                        over += 1;
                    }
                    named += 1;
                }
            }
        }
        println!(
            "sweeps: {parsed} expanded, {named} refused ({over} over the limit) in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        assert!(over >= 10 && parsed >= 5, "the sample should hit both: {over} over the limit, {parsed} expanded");
    }
}
