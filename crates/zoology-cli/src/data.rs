//! The task verbs: `zoology tasks`, `zoology data TASK …` and `zoology bench data [TASK …]`.
//! Task options are the task's config fields, given as `key=value`, `--key value`,
//! `--key=value` or `--flag` (a bare flag sets a boolean field to true); dashes and
//! underscores are interchangeable and tasks declare short aliases (`--kv` for
//! `--num-kv-pairs`). Everything is read from the task registry.

use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use zoology::config::parse_value;
use zoology::tasks::{self, export, Split, TaskConfig, TaskEntry};

/// Most examples `--show` prints.
pub const MAX_SHOW: usize = 1000;
/// Most tokens `--out` writes (inputs and targets are int64: 16 bytes a token).
pub const MAX_EXPORT_TOKENS: usize = 1 << 30;

/// Options that are not task fields, each with whether it takes a value.
type Generic = &'static [&'static str];
const DATA_OPTS: Generic = &["vocab-size", "seed", "split", "show", "out"];
const BENCH_OPTS: Generic = &["vocab-size", "split", "reps"];

/// Parsed command line of a task verb.
pub struct TaskArgs {
    pub entry: TaskEntry,
    /// Task field → (value, the flag as typed).
    pub fields: BTreeMap<String, (toml::Value, String)>,
    /// Generic option → value text.
    pub generic: BTreeMap<String, String>,
}

fn lookup(name: &str) -> Result<TaskEntry> {
    tasks::lookup(name).ok_or_else(|| {
        anyhow!("unknown task {name:?}; one of: {} (`zoology tasks` describes them)", tasks::names().join(", "))
    })
}

/// Parses `args` for task `name`; `generic` lists the options that are not task fields.
pub fn parse(name: &str, args: &[String], generic: Generic) -> Result<TaskArgs> {
    let entry = lookup(name)?;
    let fields_known = entry.default_fields();
    let mut fields = BTreeMap::new();
    let mut gen = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        // the key, the value if attached (`k=v`, `--k=v`), and the flag as typed
        let (key, attached, shown, dashed_form) = if let Some(rest) = a.strip_prefix("--") {
            match rest.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string()), format!("--{k}"), true),
                None => (rest.to_string(), None, a.clone(), true),
            }
        } else if let Some((k, v)) = a.split_once('=') {
            (k.to_string(), Some(v.to_string()), k.to_string(), false)
        } else {
            bail!("{a:?}: expected a task option (key=value or --key value); {name}'s fields: {}", field_list(&entry));
        };
        // `--k v`: the next argument is the value, unless it is another option (and for a
        // boolean field, unless it is not true/false: a bare `--flag` means true)
        let mut take_next = |want: &dyn Fn(&str) -> bool| -> Option<String> {
            if attached.is_some() || !dashed_form {
                return attached.clone();
            }
            match args.get(i) {
                Some(n) if !n.starts_with("--") && want(n) => {
                    i += 1;
                    Some(n.clone())
                }
                _ => None,
            }
        };
        let dashed = key.replace('_', "-");
        if generic.contains(&dashed.as_str()) {
            let v = take_next(&|_| true).ok_or_else(|| anyhow!("{shown}: needs a value"))?;
            gen.insert(dashed, v);
            continue;
        }
        let under = key.replace('-', "_");
        let field = entry.aliases.iter().find(|(a, _)| *a == under).map(|(_, f)| f.to_string()).unwrap_or(under);
        let Some(default) = fields_known.get(&field) else {
            bail!(
                "{shown}: {name} has no option {key:?}; its fields: {}; other options: {}",
                field_list(&entry),
                generic.iter().map(|g| format!("--{g}")).collect::<Vec<_>>().join(", ")
            );
        };
        let v = if default.is_bool() {
            match take_next(&|n| n == "true" || n == "false") {
                Some(v) => parse_value(&v),
                None => toml::Value::Boolean(true),
            }
        } else {
            match take_next(&|_| true) {
                Some(v) => parse_value(&v),
                None => bail!("{shown}: needs a value (e.g. {shown} {})", tasks::value_text(default)),
            }
        };
        if let Some((_, prev)) = fields.insert(field.clone(), (v, shown.clone())) {
            bail!("{shown}: {field} given twice (also as {prev})");
        }
    }
    Ok(TaskArgs { entry, fields, generic: gen })
}

fn field_list(e: &TaskEntry) -> String {
    let mut f: Vec<String> = e.default_fields().keys().map(|k| format!("--{}", k.replace('_', "-"))).collect();
    for (a, to) in e.aliases {
        f.push(format!("--{a} (= --{})", to.replace('_', "-")));
    }
    f.join(", ")
}

impl TaskArgs {
    fn flag_for(&self, field: &str) -> String {
        match field {
            "vocab_size" => "--vocab-size".into(),
            f => self.fields.get(f).map(|(_, s)| s.clone()).unwrap_or_else(|| format!("--{}", f.replace('_', "-"))),
        }
    }

    /// A library error about `data.<field>` (or `data.vocab_size`) as an error about the flag.
    pub fn flag_error(&self, e: zoology::Error) -> anyhow::Error {
        match e {
            zoology::Error::Config { field, msg } => {
                let f = field.strip_prefix("data.").unwrap_or(&field).to_string();
                let f = f.split(['.', '[']).next().unwrap_or(&f).to_string();
                anyhow!("{}: {msg}", self.flag_for(&f))
            }
            other => anyhow!(other.to_string()),
        }
    }

    /// A generic option's integer value, checked to lie in `[lo, hi]` (the error names the flag).
    pub fn generic_usize(&self, key: &str, lo: usize, hi: usize) -> Result<Option<usize>> {
        self.generic
            .get(key)
            .map(|v| {
                crate::flags::int(lo, hi)(v).map_err(|why| match why.contains("(got ") {
                    true => anyhow!("--{key}: {why}"),
                    false => anyhow!("--{key}: {why} (got {v:?})"),
                })
            })
            .transpose()
    }

    pub fn vocab_size(&self) -> Result<usize> {
        let max = zoology::limits::MAX_VOCAB;
        let v = self.generic_usize("vocab-size", 2, max)?.unwrap_or(self.entry.default_vocab);
        Ok(v)
    }

    pub fn split(&self) -> Result<Split> {
        match self.generic.get("split") {
            None => Ok(Split::Test),
            Some(s) => export::parse_split(s, "--split")
                .map_err(|e| anyhow!(e.to_string().replace("config: `--split`", "--split"))),
        }
    }

    /// The task config: defaults, then the given fields, validated at `vocab_size`.
    pub fn config(&self, vocab_size: usize) -> Result<TaskConfig> {
        let t: toml::Table = self.fields.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
        let cfg = TaskConfig::from_fields(self.entry.name, &t, "data").map_err(|e| self.flag_error(e))?;
        cfg.validate(vocab_size, "data").map_err(|e| self.flag_error(e))?;
        Ok(cfg)
    }
}

/// `zoology tasks`.
pub fn cmd_tasks() -> Result<()> {
    for e in tasks::registry() {
        let d = (e.defaults)();
        println!("{:<20} {}", e.name, e.about);
        let pad = "";
        println!("{pad:<20} from: {}", e.source);
        println!("{pad:<20} supervision: {}", e.supervision);
        println!("{pad:<20} metric: {}", d.metric().about());
        let slices: Vec<String> = e.slices.iter().map(|s| format!("{} ({})", s.label, s.key)).collect();
        println!("{pad:<20} slices: {}", slices.join(", "));
        let fields: Vec<String> = d.fields().iter().map(|(k, v)| format!("{k}={}", tasks::value_text(v))).collect();
        println!(
            "{pad:<20} defaults: vocab_size={} {}{}",
            e.default_vocab,
            fields.join(" "),
            if e.backbone != tasks::Backbone::LanguageModel {
                format!("; needs model.backbone = \"{}\"", e.backbone.name())
            } else {
                String::new()
            }
        );
        if !e.aliases.is_empty() {
            let al: Vec<String> = e.aliases.iter().map(|(a, f)| format!("--{a} = --{}", f.replace('_', "-"))).collect();
            println!("{pad:<20} short flags: {}", al.join(", "));
        }
    }
    Ok(())
}

/// `zoology data TASK [options]`.
pub fn cmd_data(task: &str, args: &[String]) -> Result<()> {
    let a = parse(task, args, DATA_OPTS)?;
    let vocab = a.vocab_size()?;
    let seed = a
        .generic
        .get("seed")
        .map(|s| s.parse::<u64>().map_err(|_| anyhow!("--seed: expected a non-negative integer, got {s:?}")))
        .transpose()?
        .unwrap_or(123);
    let split = a.split()?;
    let out = a.generic.get("out").map(PathBuf::from);
    if let Some(o) = &out {
        export::Format::of(o, "--out").map_err(|e| anyhow!(e.to_string().replace("config: `--out`", "--out")))?;
    }
    let show = a
        .generic
        .get("show")
        .map(|v| v.parse::<u64>().map_err(|_| anyhow!("--show: expected a non-negative integer, got {v:?}")))
        .transpose()?;
    let show = show.map(|v| v as usize).unwrap_or(if out.is_some() { 0 } else { 3 });
    if show > MAX_SHOW {
        bail!("--show: at most {MAX_SHOW} examples are printed (got {show}); export more with --out FILE.safetensors");
    }
    let mut cfg = a.config(vocab)?;
    if out.is_none() {
        if a.fields.contains_key("num_examples") {
            if show > cfg.num_examples() {
                bail!("--show {show}: more than --num-examples {}", cfg.num_examples());
            }
        } else {
            cfg.set_num_examples(show.max(1));
        }
    } else if show > cfg.num_examples() {
        bail!("--show {show}: more than the {} examples generated; raise --num-examples", cfg.num_examples());
    }
    if cfg.num_examples().saturating_mul(cfg.seq_len()) > MAX_EXPORT_TOKENS {
        bail!(
            "{}: {} examples × {} tokens is over {MAX_EXPORT_TOKENS} tokens; generate fewer",
            a.flag_for("num_examples"),
            cfg.num_examples(),
            cfg.seq_len()
        );
    }
    let seg = cfg.generate_split(vocab, seed, split);
    if show > 0 {
        println!("{}  V={vocab} seed={seed} split={}", cfg.describe(), split.name());
        println!("{}", cfg.legend(vocab));
        println!("supervision: {}", a.entry.supervision);
        println!("metric: {}\n", cfg.metric().about());
        for i in 0..show {
            let (inp, tgt) = seg.example(i);
            println!("example {i}: {}\n", cfg.render(inp, tgt));
        }
    }
    if let Some(o) = out {
        let files = export::export(&seg, &cfg, vocab, seed, &o, "--out").map_err(|e| anyhow!(e.to_string()))?;
        println!(
            "wrote {} ({} examples × {} tokens, {} supervised positions) and {}",
            files[0].display(),
            seg.n,
            seg.seq_len,
            seg.num_supervised(),
            files[1].display()
        );
    }
    Ok(())
}

/// `zoology bench data [TASK [options]] [--all]`.
pub fn cmd_bench_data(task: Option<&str>, args: &[String], all: bool, examples: usize) -> Result<()> {
    let threads = rayon_threads();
    if all {
        println!("bench data: every task, its default config at {examples} examples and 4×/16× longer sequences (fewer examples); medians of 3; {threads} threads");
        println!("{:<20} {:>6} {:>8} {:>11} {:>11} {:>8}", "task", "L", "n", "ours (s)", "naive (s)", "ratio");
        for e in tasks::registry() {
            for c in zoology::bench::gen_sizes(&e, examples) {
                let r = zoology::bench::gen_rate(&c, e.default_vocab, Split::Train, 3)
                    .map_err(|err| anyhow!(err.to_string()))?;
                println!(
                    "{:<20} {:>6} {:>8} {:>11.4} {:>11.4} {:>7.1}x",
                    r.task,
                    r.seq_len,
                    r.n,
                    r.ours_s,
                    r.naive_s,
                    r.ratio()
                );
            }
        }
        return Ok(());
    }
    let (name, args): (&str, Vec<String>) = match task {
        Some(t) => (t, args.to_vec()),
        // the historical default: MQAR at L = 512, kv = 64, 100,000 examples, V = 8192
        None => (
            "mqar",
            ["seq_len=512", "num_kv_pairs=64", "num_examples=100000", "random_non_queries=false"]
                .iter()
                .map(|s| s.to_string())
                .chain(args.iter().cloned())
                .collect(),
        ),
    };
    let a = parse(name, &args, BENCH_OPTS)?;
    let vocab = a.vocab_size()?;
    let cfg = a.config(vocab)?;
    let reps = a.generic_usize("reps", 1, crate::flags::MAX_ITERS)?.unwrap_or(3);
    let split = a.split()?;
    println!(
        "bench data: {}  V={vocab} split={}, {threads} rayon threads, median of {reps}",
        cfg.describe(),
        split.name()
    );
    let r = zoology::bench::gen_rate(&cfg, vocab, split, reps).map_err(|e| anyhow!(e.to_string()))?;
    println!("  zoology-rs generator: {:>12.0} examples/s ({:.4} s for {})", r.n as f64 / r.ours_s, r.ours_s, r.n);
    println!("  naive sequential    : {:>12.0} examples/s ({:.4} s)", r.n as f64 / r.naive_s, r.naive_s);
    println!("  ratio (ours / naive): {:.1}x", r.ratio());
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
