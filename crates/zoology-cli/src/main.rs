//! `zoology`: command-line interface. Each verb parses its flags and calls the library; no
//! logic of its own lives here.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use zoology::config::{apply_set, RunConfig};
use zoology::train::{self, TrainOptions};

mod bench;
mod corpus;
mod data;
mod flags;
mod interop;
mod sweeps;

#[derive(Parser)]
#[command(
    name = "zoology",
    version,
    about = "Associative-recall testbed for sequence mixers (attention, gated convolutions, SSMs, linear attention, hybrids)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train one model from a TOML config and write a run directory.
    Train(TrainArgs),
    /// Show or export generated task data: `zoology data mqar --seq-len 64 --kv 4 --show 3`,
    /// `zoology data in_context_recall seq_len=256 --vocab-size 32 --out icr.safetensors`.
    Data(DataArgs),
    /// List every registered task: what it is, its supervision, metric, slices and defaults.
    Tasks,
    /// List every registered mixer with its state size and default hyperparameters;
    /// `--flops`: a table of each mixer's parameters, FLOPs and state at --d-model, --seq-len.
    Mixers(MixersArgs),
    /// Benchmarks that print ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Sweeps: expand a grid of runs, run it locally or on Slurm, show its status.
    #[command(subcommand)]
    Sweep(sweeps::SweepCmd),
    /// The SQLite index of run directories, tables, CSV/JSON export.
    #[command(subcommand)]
    Results(sweeps::ResultsCmd),
    /// Plots of the runs under DIR (Figure 2, accuracy vs state size, curves) into DIR/plots.
    Plot {
        dir: PathBuf,
        /// Where to write the plots (default DIR/plots; use it for a read-only DIR).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Skip the per-run loss/accuracy curves.
        #[arg(long)]
        no_curves: bool,
        /// Only these mixers (comma-separated names as the tables show them: a sweep's preset
        /// names), e.g. one family per plot when a sweep has too many lines to read.
        #[arg(long, value_delimiter = ',')]
        mixers: Vec<String>,
    },
    /// One self-contained HTML report of the runs under DIR (DIR/report.html).
    Report {
        dir: PathBuf,
        /// Directory for report.html and its plots (default DIR; use it for a read-only DIR).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Real-text corpus: fetch (packages → text → tokens, into the cache) and info.
    #[command(subcommand)]
    Corpus(corpus::CorpusCmd),
    /// Hand-set MQAR solution (no training): builds the LM with analytic weights, evaluates it
    /// on fresh MQAR test data (filler 0) and prints accuracy, width, parameters, state.
    Construct(ConstructArgs),
    /// Answer a run's MQAR test queries by recurrent decoding (prefill the key-value prompt,
    /// then step through the queries) and print its accuracy next to the parallel evaluation's,
    /// with prefill time and decode tokens/s.
    Generate(GenerateArgs),
    /// Write a run's weights for HazyResearch/zoology: its state dict (safetensors, Zoology's names) and ModelConfig (JSON).
    Export(interop::ExportArgs),
    /// Make a run directory from a Zoology state dict and ModelConfig (evaluated; decodes and appears in results).
    Import(interop::ImportArgs),
    /// Perplexity of trained text models (task = "text") on the corpus's validation split,
    /// sliced into AR hits (the token completes a bigram seen earlier in the window), first
    /// occurrences and other tokens, by training-bigram frequency and by distance; the share of
    /// each model's gap to attention that AR hits explain. Table, and with --out JSON + plots.
    Arhits(ArhitsArgs),
    /// A built-in small sweep (attention vs BaseConv on MQAR, ~10 min on 2 cores): table, plot, report, index.
    Quickstart {
        /// Output directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Runs at a time.
        #[arg(long, default_value_t = 2, value_parser = flags::int(1usize, flags::MAX_WORKERS))]
        workers: usize,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Run config (TOML). Not needed with --resume.
    config: Option<PathBuf>,
    /// Run directory (default: runs/<name or mixer>-<run id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a config value: --set train.lr=3e-3 --set model.mixer.num_heads=2
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue the interrupted run in DIR from its checkpoint.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Override the device ("cpu", "cuda", "cuda:N").
    #[arg(long)]
    device: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
#[command(
    after_help = "Task options are the task's config fields (see `zoology tasks`), as key=value, --key value or --key=value (dashes or underscores; a bare --flag sets a boolean to true). Other options: --vocab-size V (default: the task's), --seed S (123), --split train|test (test), --show N (3, at most 1000; 0 with --out), --out FILE.safetensors|.npz|.npy (writes FILE and a FILE.json sidecar; exports num_examples examples)."
)]
struct DataArgs {
    /// Task name (`zoology tasks` lists them).
    task: String,
    /// Task fields and options, e.g. --seq-len 64 --kv 4 --show 3.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "OPTIONS")]
    options: Vec<String>,
}

#[derive(Args)]
struct ConstructArgs {
    /// `attention` (2-layer hybrid: short-conv shift, then one softmax head; d independent of L)
    /// or `base_conv` (short gated conv, then an all-ones long filter; width grows with kv).
    mixer: String,
    /// Sequence length L (even).
    #[arg(long, default_value_t = 64, value_parser = flags::int(2usize, 1 << 16))]
    seq_len: usize,
    /// Key-value pairs per example (default L/16).
    #[arg(long, value_parser = flags::int(1usize, 1 << 15))]
    kv: Option<usize>,
    /// Vocabulary size V (keys in [1, V/2), values in [V/2, V)).
    #[arg(long, default_value_t = 8192, value_parser = flags::int(4usize, 1 << 20))]
    vocab: usize,
    /// Width d_model, a multiple of 8 (default: attention 128; base_conv the smallest of
    /// 32, 64, …, 8192 that reaches 0.99 on 64 calibration examples of another seed).
    #[arg(long, value_parser = flags::int(8i64, zoology::construct::MAX_D))]
    d: Option<i64>,
    /// Test examples evaluated.
    #[arg(long, default_value_t = 256, value_parser = flags::int(1usize, 1 << 20))]
    examples: usize,
    /// Seed of the test data and of the token codes.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// Also write the model as a run directory (config.toml, checkpoint.safetensors,
    /// summary.json) that `generate`, `results` and `plot` read.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    /// A run directory with a checkpoint (from `zoology train` or `zoology construct --out`).
    run_dir: PathBuf,
    /// Test examples decoded per test segment (default: all of the run's).
    #[arg(long, value_parser = flags::int(1usize, zoology::limits::MAX_EXAMPLES))]
    num_examples: Option<usize>,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 64, value_parser = flags::int(1usize, flags::MAX_BENCH_BATCH as usize))]
    batch: usize,
}

#[derive(Args)]
struct ArhitsArgs {
    /// Run directories of text models, or results directories (their runs/ are all taken).
    #[arg(required = true)]
    run_dirs: Vec<PathBuf>,
    /// Write arhits.json, arhits.md and the plots here (`zoology report` on the same
    /// directory includes them).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Evaluate only the first N validation windows (default: all).
    #[arg(long, value_parser = flags::int(1usize, zoology::limits::MAX_EXAMPLES))]
    max_windows: Option<usize>,
    /// Bucket training-bigram frequency into K quantile buckets of training occurrences
    /// (default: log-spaced counts merged until each bucket holds --min-bucket-hits AR hits).
    #[arg(long, value_parser = flags::int(1usize, 1000))]
    buckets: Option<usize>,
    /// With log-spaced buckets: the fewest AR hits of the evaluated windows in one bucket.
    #[arg(long, default_value_t = 300, value_parser = flags::int(1u64, 1_000_000_000))]
    min_bucket_hits: u64,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 16, value_parser = flags::int(1usize, flags::MAX_BENCH_BATCH as usize))]
    batch: usize,
    /// The model whose perplexity gap to each other model is split (a label or a mixer name;
    /// default: the attention run).
    #[arg(long)]
    reference: Option<String>,
    /// Sequences per copy probe (random tokens, frequent tokens, repeated text; 0: none). One
    /// forward pass each, so memory grows with N·L·V.
    #[arg(long, default_value_t = 64, value_parser = flags::int(0usize, 256))]
    copy_sequences: usize,
    /// Print the JSON instead of the tables.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct MixersArgs {
    /// Print the FLOPs table (params, forward, per batch, training, prefill, decode per token,
    /// state size) instead of the list.
    #[arg(long)]
    flops: bool,
    /// Model width for --flops (default 128).
    #[arg(long, value_parser = flags::int(1i64, zoology::limits::MAX_D_MODEL))]
    d_model: Option<i64>,
    /// Sequence length for --flops, also the longest sequence the mixers are built for (default 1024).
    #[arg(long, value_parser = flags::int(1i64, zoology::cost::MAX_TABLE_SEQ_LEN))]
    seq_len: Option<i64>,
}

fn main() {
    // Like other Unix tools, end quietly when stdout's reader has gone (`zoology sweep status
    // | head`): Rust ignores SIGPIPE, so `println!` would panic with "Broken pipe" instead.
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // libtorch backs CPU tensors of 2 MB and more with transparent huge pages when this is set
    // (read once, at the first allocation). Without it the many large, short-lived tensors of a
    // training step are fresh mmaps that page-fault on every step: `zoology bench mixers` showed
    // more system than user time, and mamba at d=64, L=64, B=64 ran 2.2x slower. See
    // docs/PERFORMANCE.md. A value already in the environment is kept.
    if std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none() {
        std::env::set_var("THP_MEM_ALLOC_ENABLE", "1");
    }
    if std::env::var_os("ZOOLOGY_LIST_NUMERIC_FLAGS").is_some() {
        // test hook (crates/zoology-cli/tests/fuzz_campaign.rs): every numeric flag of every verb
        for f in numeric_flags() {
            println!("{}\t--{}\t{}\t{}", f.verb.join(" "), f.long, f.ty, f.positionals.join(" "));
        }
        return;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print and exit 0; a bad flag is an error in the command itself:
        // exit 1 (README "Exit status"), not clap's 2, which means a failed run here
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            std::process::exit(1);
        }
    };
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Train(a) => cmd_train(a),
        Cmd::Sweep(c) => sweeps::cmd_sweep(c),
        Cmd::Results(c) => sweeps::cmd_results(c),
        Cmd::Plot { dir, out, no_curves, mixers } => sweeps::cmd_plot(dir, out, no_curves, &mixers),
        Cmd::Report { dir, out } => sweeps::cmd_report(dir, out).map(|_| ()),
        Cmd::Quickstart { out, workers } => sweeps::cmd_quickstart(out, workers),
        Cmd::Corpus(c) => corpus::cmd_corpus(c),
        Cmd::Construct(a) => cmd_construct(a),
        Cmd::Generate(a) => cmd_generate(a),
        Cmd::Export(a) => interop::cmd_export(a),
        Cmd::Import(a) => interop::cmd_import(a),
        Cmd::Arhits(a) => cmd_arhits(a),
        Cmd::Data(a) => data::cmd_data(&a.task, &a.options),
        Cmd::Tasks => data::cmd_tasks(),
        Cmd::Mixers(a) => cmd_mixers(a),
        Cmd::Bench(c) => bench::cmd_bench(c),
    }
}

fn cmd_construct(a: ConstructArgs) -> Result<()> {
    use zoology::construct::{self, Spec};
    if a.kv == Some(0) {
        bail!("--kv: must be at least 1");
    }
    let spec = Spec { vocab: a.vocab, d: a.d, examples: a.examples, seed: a.seed, ..Spec::new(a.seq_len, a.kv) };
    if let Some(out) = &a.out {
        if out.join(zoology::rundir::CONFIG).exists() || out.join(zoology::rundir::CHECKPOINT).exists() {
            bail!("--out: {} already holds a run; choose another --out or delete it", out.display());
        }
    }
    let (o, built) = construct::run_built(&a.mixer, &spec).map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let what = match o.mixer {
        "attention" => "2-layer hybrid [base_conv k=3 shift, attention 1 head]",
        _ => "2-layer base_conv [short k=3 gated shift, explicit all-ones long filter]",
    };
    println!("construct {}: {what}, weights set by hand (no training)", o.mixer);
    if !o.search.is_empty() {
        let tried: Vec<String> = o.search.iter().map(|(d, a)| format!("d={d}: {a:.4}")).collect();
        println!(
            "  width search ({} calibration examples, another seed): {}",
            construct::SEARCH_EXAMPLES,
            tried.join(", ")
        );
    }
    println!("  mixer {}  L={}  kv={}  V={}  d={}", o.mixer, o.seq_len, o.kv, o.vocab, o.d);
    println!("  parameters {}  state {} elements per sequence at L={}", o.num_parameters, o.state_size, o.seq_len);
    let f = built.model.flops(o.seq_len as i64);
    println!(
        "  FLOPs: forward {:.3e} per sequence (head at its {} query positions), prefill {:.3e} per sequence, decode {:.3e} per token at L={} (convention: README, Cost: FLOPs)",
        f.body.forward(1) + f.head_per_position * o.kv as f64,
        o.kv,
        f.body.prefill_per_seq + f.head_per_position,
        f.body.decode_per_token + f.head_per_position,
        o.seq_len
    );
    println!("  accuracy {:.4} (Zoology's per-example accuracy on query positions), mean cross-entropy {:.3}, over {} test examples (seed {}), {:.1} s", o.accuracy, o.loss, o.examples, spec.seed, o.seconds);
    if let Some(out) = &a.out {
        let acc = construct::write_run_dir(out, &built, &spec, o.mixer, o.seconds)
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        println!("  run directory {}: accuracy {acc:.4} on the run's own test data ({} examples, generated from its config as training would)", out.display(), o.examples);
    }
    Ok(())
}

fn cmd_arhits(a: ArhitsArgs) -> Result<()> {
    use zoology::analysis::arhits as ev;
    let e = |e: zoology::Error| anyhow::anyhow!(e.to_string());
    let (dirs, unfinished) = ev::expand_run_dirs(&a.run_dirs).map_err(e)?;
    for u in &unfinished {
        eprintln!("left out {} (not finished: no summary.json yet; name it to evaluate its checkpoint)", u.display());
    }
    let opts = ev::ArHitsOptions {
        max_windows: a.max_windows,
        buckets: a.buckets,
        min_bucket_hits: a.min_bucket_hits,
        batch: a.batch,
        reference: a.reference,
        copy_sequences: a.copy_sequences,
        quiet: a.quiet || a.json,
    };
    let o = ev::evaluate_runs(&dirs, &opts).map_err(e)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else {
        print!("{}", o.tables().map_err(e)?);
        let ratios = o.ratios();
        if !ratios.is_empty() {
            println!(
                "perplexity ratio to {} (AR hits / other tokens; the paper's shape: the AR-hit ratio is the larger):",
                o.reference.as_deref().unwrap_or("?")
            );
            for (n, ar, other) in &ratios {
                println!("  {n:<24} AR hits {ar:>6.2}×   other {other:>6.2}×   ({:.1}× larger on AR hits)", ar / other);
            }
        }
    }
    if let Some(out) = &a.out {
        let files = ev::write_outputs(&o, out).map_err(e)?;
        if !a.json {
            println!("wrote {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
        }
    }
    Ok(())
}

fn cmd_generate(a: GenerateArgs) -> Result<()> {
    let e = |e: zoology::Error| anyhow::anyhow!(e.to_string());
    if a.batch == 0 {
        bail!("--batch: must be at least 1 (sequences decoded together)");
    }
    if a.num_examples == Some(0) {
        bail!("--num-examples: must be at least 1 (or leave it out to decode every test example)");
    }
    // a run that is not MQAR is refused before its checkpoint is read
    zoology::generate::check_mqar(&zoology::generate::read_config(&a.run_dir).map_err(e)?).map_err(e)?;
    let run = zoology::generate::load_run(&a.run_dir).map_err(e)?;
    let r = zoology::generate::generate(&run, a.num_examples, a.batch).map_err(e)?;
    println!(
        "generate {}: {} (d={}, {} layers), {} test examples, batch {}",
        a.run_dir.display(),
        run.cfg.model.mixer_name(),
        run.cfg.model.d_model,
        run.cfg.model.n_layers,
        r.examples,
        a.batch
    );
    println!("  accuracy ({}): decode {:.4}   parallel {:.4}", r.metric, r.decode_accuracy, r.parallel_accuracy);
    println!("  supervised predictions: {} ({} differ between decode and parallel)", r.predictions, r.differing);
    println!(
        "  prefill {:.1} ms ({} prompt tokens, {:.0} tok/s)   decode {} tokens in {:.1} ms: {:.1} tok/s",
        r.prefill_s * 1e3,
        r.prefill_tokens,
        r.prefill_tokens as f64 / r.prefill_s.max(1e-12),
        r.decode_tokens,
        r.decode_s * 1e3,
        r.decode_tokens_per_s()
    );
    if r.decode_accuracy != r.parallel_accuracy {
        eprintln!("error: decoding and the parallel evaluation disagree ({:.6} vs {:.6}): the model's step form does not match its parallel form", r.decode_accuracy, r.parallel_accuracy);
        std::process::exit(2);
    }
    Ok(())
}

/// `zoology mixers [--flops]`: the registry, or its FLOPs table.
fn cmd_mixers(a: MixersArgs) -> Result<()> {
    match a {
        MixersArgs { flops: true, d_model, seq_len } => {
            let (d_model, seq_len) = (d_model.unwrap_or(128), seq_len.unwrap_or(1024));
            let rows = zoology::cost::mixer_rows(d_model, seq_len).map_err(|e| anyhow::anyhow!(e.to_string()))?;
            print!("{}", zoology::cost::format_mixer_rows(&rows, d_model, seq_len));
            Ok(())
        }
        MixersArgs { flops: false, d_model, seq_len } => {
            if d_model.is_some() || seq_len.is_some() {
                anyhow::bail!(
                    "--d-model and --seq-len go with --flops (zoology mixers --flops --d-model D --seq-len L)"
                );
            }
            for e in zoology::mixers::registry() {
                println!("{:<18} {}", e.name, e.about);
                println!(
                    "{:<18} state: {}{}",
                    "",
                    e.state_formula,
                    if e.constant_state { " (constant in L)" } else { "" }
                );
                let d = (e.defaults)();
                if !d.is_empty() {
                    let s = toml::Value::Table(d).to_string().replace('\n', ", ");
                    println!("{:<18} defaults: {}", "", s.trim_end_matches(", "));
                }
            }
            Ok(())
        }
    }
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let (cfg, out, resume) = if let Some(dir) = &a.resume {
        if a.config.is_some() || !a.set.is_empty() {
            bail!("--resume DIR continues the run with DIR/config.toml; drop the CONFIG argument and --set");
        }
        let p = dir.join("config.toml");
        match std::fs::metadata(&p) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                bail!("{} not found: is {} a run directory?", p.display(), dir.display())
            }
            // e.g. permission denied: say so, with the path
            Err(err) => bail!("cannot read {}: {err}", p.display()),
        }
        let cfg = RunConfig::load(&p).map_err(|e| anyhow::anyhow!(e.to_string()))?;
        (cfg, dir.clone(), true)
    } else {
        let path = a.config.as_ref().context("give a CONFIG.toml (see examples/), or --resume DIR")?;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not valid TOML: {e}", path.display()))?;
        for s in &a.set {
            apply_set(&mut table, s).map_err(|e| anyhow::anyhow!(e.to_string()))?;
        }
        if let Some(d) = &a.device {
            table.insert("device".into(), toml::Value::String(d.clone()));
        }
        let cfg = RunConfig::from_table(table).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let out = a.out.clone().unwrap_or_else(|| train::trainer::default_out_dir(&cfg));
        (cfg, out, false)
    };
    let mut cfg = cfg;
    if resume {
        if let Some(d) = &a.device {
            cfg.device = zoology::device::DeviceSpec(d.clone());
        }
    }
    // a run too large for this machine is refused before anything is said or written
    cfg.memory_estimate().check_fits_here().map_err(|e| anyhow::anyhow!(e.to_string()))?;
    eprintln!("run directory: {}", out.display());
    let finished_before = resume && out.join(zoology::rundir::SUMMARY).exists();
    let s = match train::train(
        &cfg,
        &TrainOptions { out_dir: out.clone(), resume, quiet: a.quiet, label: String::new() },
    ) {
        Ok(s) => s,
        Err(err @ zoology::Error::Busy(_)) => {
            eprintln!("error: {err}");
            std::process::exit(3);
        }
        Err(err) => return Err(anyhow::anyhow!(err.to_string())),
    };
    if finished_before {
        eprintln!(
            "this run had already ended; nothing was trained (delete {} to train it again)",
            out.join(zoology::rundir::SUMMARY).display()
        );
    }
    println!(
        "{}: {} after {} epochs ({} steps, {:.1} s): best acc {:.4} (epoch {}), final acc {:.4}, {} params, state {} elements",
        out.display(),
        s.stop_reason.word(),
        s.epochs,
        s.steps,
        s.wall_time_s,
        s.best_accuracy,
        s.best_epoch,
        s.final_accuracy,
        s.num_parameters,
        s.state_size
    );
    if s.metric == "perplexity" && s.final_loss.is_finite() {
        println!(
            "  test perplexity {:.2} (exp of the final test loss {:.4}); `zoology arhits {}` slices it",
            s.final_loss.exp(),
            s.final_loss,
            out.display()
        );
    }
    if let Some(why) = s.failure() {
        eprintln!("{why}");
        std::process::exit(2);
    }
    Ok(())
}

/// A numeric flag of a verb, found by walking the clap command tree.
struct NumericFlag {
    /// The verb's words after `zoology` (`["sweep", "run"]`).
    verb: Vec<String>,
    long: String,
    /// The parsed type (`usize`, `i64`, `f64`, …).
    ty: &'static str,
    /// Placeholder values for the verb's required positional arguments.
    positionals: Vec<String>,
}

/// Every flag of every verb whose value parses to a number.
fn numeric_flags() -> Vec<NumericFlag> {
    use clap::CommandFactory;
    use std::any::TypeId;
    let types = [
        (TypeId::of::<usize>(), "usize"),
        (TypeId::of::<u64>(), "u64"),
        (TypeId::of::<u32>(), "u32"),
        (TypeId::of::<i64>(), "i64"),
        (TypeId::of::<i32>(), "i32"),
        (TypeId::of::<f64>(), "f64"),
        (TypeId::of::<f32>(), "f32"),
    ];
    fn walk(
        cmd: &clap::Command,
        verb: Vec<String>,
        types: &[(std::any::TypeId, &'static str)],
        out: &mut Vec<NumericFlag>,
    ) {
        let positionals: Vec<String> =
            cmd.get_positionals().filter(|a| a.is_required_set()).map(|_| "x".to_string()).collect();
        for a in cmd.get_arguments() {
            let id = a.get_value_parser().type_id();
            let (Some(long), Some((_, ty))) = (a.get_long(), types.iter().find(|(t, _)| id == *t)) else { continue };
            out.push(NumericFlag { verb: verb.clone(), long: long.to_string(), ty, positionals: positionals.clone() });
        }
        for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
            let mut v = verb.clone();
            v.push(sub.get_name().to_string());
            walk(sub, v, types, out);
        }
    }
    let mut out = vec![];
    walk(&Cli::command(), vec![], &types, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags whose whole range is meaningful: a seed is any 64-bit number.
    const UNBOUNDED: &[&str] = &["construct --seed"];

    /// Every numeric flag of every verb refuses out-of-range values where it is parsed, with the
    /// flag's name in the error (issue 25: `generate --batch 2^64-1` reached libtorch,
    /// `sweep run --threads 2^31` was refused only in the child, `--workers 0` and
    /// `bench mixers --max-mem-gb nan` were accepted).
    #[test]
    fn every_numeric_flag_is_bounded_where_it_is_parsed() {
        let flags = numeric_flags();
        assert!(flags.len() > 40, "only {} numeric flags found", flags.len());
        let (mut checked, mut bad) = (0, vec![]);
        for f in &flags {
            let key = format!("{} --{}", f.verb.join(" "), f.long);
            if UNBOUNDED.contains(&key.as_str()) {
                continue;
            }
            for v in ["18446744073709551615", "-1", "-9223372036854775809", "nan", "inf", "1e400"] {
                let mut argv = vec!["zoology".to_string()];
                argv.extend(f.verb.iter().cloned());
                argv.extend(f.positionals.iter().cloned());
                argv.push(format!("--{}={v}", f.long));
                match Cli::try_parse_from(&argv) {
                    Ok(_) => bad.push(format!("{key} accepts {v}")),
                    Err(e) => {
                        let msg = e.to_string();
                        let value_error = matches!(
                            e.kind(),
                            clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
                        );
                        if !value_error || !msg.contains(&format!("--{}", f.long)) {
                            bad.push(format!("{key}={v}: {:?}: {msg}", e.kind()));
                        }
                    }
                }
                checked += 1;
            }
        }
        println!("{} numeric flags, {checked} out-of-range values tried", flags.len());
        assert!(bad.is_empty(), "numeric flags without a bound:\n  {}", bad.join("\n  "));
    }
}
