//! `zoology`: command-line interface. Each verb parses its flags and calls the library; no
//! logic of its own lives here.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use zoology::config::{apply_set, RunConfig};
use zoology::tasks::mqar::MqarConfig;
use zoology::tasks::Task;
use zoology::train::{self, TrainOptions};

mod corpus;
mod data;
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
    Bench(BenchCmd),
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
        #[arg(long, default_value_t = 2)]
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
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Key-value pairs per example (default L/16).
    #[arg(long)]
    kv: Option<usize>,
    /// Vocabulary size V (keys in [1, V/2), values in [V/2, V)).
    #[arg(long, default_value_t = 8192)]
    vocab: usize,
    /// Width d_model, a multiple of 8 (default: attention 128; base_conv the smallest of
    /// 32, 64, …, 8192 that reaches 0.99 on 64 calibration examples of another seed).
    #[arg(long)]
    d: Option<i64>,
    /// Test examples evaluated.
    #[arg(long, default_value_t = 256)]
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
    #[arg(long)]
    num_examples: Option<usize>,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 64)]
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
    #[arg(long)]
    max_windows: Option<usize>,
    /// Quantile buckets of training-bigram frequency.
    #[arg(long, default_value_t = 5)]
    buckets: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// The model whose perplexity gap to each other model is split (a label or a mixer name;
    /// default: the attention run).
    #[arg(long)]
    reference: Option<String>,
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
    #[arg(long)]
    d_model: Option<i64>,
    /// Sequence length for --flops, also the longest sequence the mixers are built for (default 1024).
    #[arg(long)]
    seq_len: Option<i64>,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Training-step time of an attention LM with the full head vs the sparse (supervised-only) head.
    Step {
        #[arg(long, default_value_t = 128)]
        d_model: i64,
        #[arg(long, default_value_t = 256)]
        seq_len: usize,
        #[arg(long, default_value_t = 16)]
        kv: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 8192)]
        vocab_size: usize,
        #[arg(long, default_value_t = 5)]
        iters: usize,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Forward+backward time of each mixer alone at several lengths, and t(L_max)/t(L_min).
    Mixers {
        /// Comma-separated registry names (default: every registered mixer).
        #[arg(long, value_delimiter = ',')]
        mixers: Vec<String>,
        #[arg(long, default_value_t = 128)]
        d_model: i64,
        #[arg(long, default_value_t = 16)]
        batch: i64,
        #[arg(long, value_delimiter = ',', default_value = "256,1024,4096")]
        lengths: Vec<i64>,
        #[arg(long, default_value_t = 3)]
        iters: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Skip a (mixer, L) predicted to need more peak memory than this (default: half of MemAvailable).
        #[arg(long)]
        max_mem_gb: Option<f64>,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Each mixer's measured time per counted FLOP (forward+backward at one length), and that
    /// over attention's in the same run: formulas far off stand out.
    Flops {
        /// Comma-separated registry names (default: every registered mixer; attention is always run).
        #[arg(long, value_delimiter = ',')]
        mixers: Vec<String>,
        #[arg(long, default_value_t = 128)]
        d_model: i64,
        #[arg(long, default_value_t = 8)]
        batch: i64,
        #[arg(long, default_value_t = 1024)]
        seq_len: i64,
        #[arg(long, default_value_t = 3)]
        iters: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Recurrent decoding cost per mixer and context length: prefill time, decode tokens/s and
    /// LM-state bytes per sequence, with ratios to attention measured in the same run; writes a
    /// table, a plot and a JSON. The defaults are small (about 3 minutes on 2 busy CPU cores);
    /// e.g. `--contexts 256,1024,4096,16384 --batch 8 --d-model 128` measures longer contexts.
    Decode {
        /// Comma-separated registry names (attention is always measured: it is the baseline).
        #[arg(long, value_delimiter = ',', default_value = zoology::bench::decode::DEFAULT_MIXERS)]
        mixers: Vec<String>,
        /// Prompt lengths.
        #[arg(long, value_delimiter = ',', default_value = zoology::bench::decode::DEFAULT_CONTEXTS)]
        contexts: Vec<i64>,
        /// Sequences decoded together.
        #[arg(long, default_value_t = 4)]
        batch: i64,
        #[arg(long, default_value_t = 64)]
        d_model: i64,
        /// Greedy decode steps after the prompt.
        #[arg(long, default_value_t = 32)]
        steps: i64,
        /// Repetitions of each cell; the medians are reported.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// libtorch threads (1 by default: at these sizes more threads mostly add contention
        /// on a shared machine).
        #[arg(long, default_value_t = 1)]
        threads: i32,
        /// Where to write decode.json and decode.png/.svg.
        #[arg(long, default_value = "bench-decode")]
        out: PathBuf,
    },
    /// A task's generation time vs its plain sequential generator, on the same segment
    /// (default: MQAR, L=512, kv=64, 100,000 examples). `--all`: every task at three lengths.
    #[command(
        after_help = "Options as for `zoology data` (task fields as key=value or --key value), plus --vocab-size, --split train|test and --reps N (3)."
    )]
    Data {
        /// Every registered task at its default config and 4×/16× longer sequences.
        #[arg(long)]
        all: bool,
        /// Examples per task with --all (at the default length; fewer at longer ones).
        #[arg(long, default_value_t = 20_000)]
        examples: usize,
        /// Task name (default mqar at the size above).
        task: Option<String>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "OPTIONS")]
        options: Vec<String>,
    },
}

fn main() {
    // libtorch backs CPU tensors of 2 MB and more with transparent huge pages when this is set
    // (read once, at the first allocation). Without it the many large, short-lived tensors of a
    // training step are fresh mmaps that page-fault on every step: `zoology bench mixers` showed
    // more system than user time, and mamba at d=64, L=64, B=64 ran 2.2x slower. See
    // docs/PERFORMANCE.md. A value already in the environment is kept.
    if std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none() {
        std::env::set_var("THP_MEM_ALLOC_ENABLE", "1");
    }
    let cli = Cli::parse();
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
        Cmd::Plot { dir, out, no_curves } => sweeps::cmd_plot(dir, out, no_curves),
        Cmd::Report { dir, out } => sweeps::cmd_report(dir, out).map(|_| ()),
        Cmd::Quickstart { out, workers } => sweeps::cmd_quickstart(out, workers),
        Cmd::Corpus(c) => corpus::cmd_corpus(c),
        Cmd::Construct(a) => cmd_construct(a),
        Cmd::Generate(a) => cmd_generate(a),
        Cmd::Arhits(a) => cmd_arhits(a),
        Cmd::Data(a) => data::cmd_data(&a.task, &a.options),
        Cmd::Tasks => data::cmd_tasks(),
        Cmd::Mixers(MixersArgs { flops: true, d_model, seq_len }) => {
            let (d_model, seq_len) = (d_model.unwrap_or(128), seq_len.unwrap_or(1024));
            let rows = zoology::cost::mixer_rows(d_model, seq_len).map_err(|e| anyhow::anyhow!(e.to_string()))?;
            print!("{}", zoology::cost::format_mixer_rows(&rows, d_model, seq_len));
            Ok(())
        }
        Cmd::Mixers(MixersArgs { flops: false, d_model, seq_len }) => {
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
        Cmd::Bench(BenchCmd::Step { d_model, seq_len, kv, batch, vocab_size, iters, device }) => {
            check_bench_step(d_model, seq_len, kv, batch, vocab_size, iters)?;
            let dev =
                zoology::device::DeviceSpec(device).resolve("--device").map_err(|e| anyhow::anyhow!(e.to_string()))?;
            let rt = zoology::device::Runtime::new(dev);
            let b = zoology::bench::StepBench {
                d_model,
                seq_len,
                kv,
                batch,
                vocab: vocab_size,
                iters,
                mixer: "attention".into(),
            };
            println!("bench step: 2-layer attention LM d={d_model} L={seq_len} B={batch} V={vocab_size} kv={kv} on {} ({} threads), median of {iters}", rt.name(), tch::get_num_threads());
            let (full, sparse) = zoology::bench::step_time(&b, &rt).map_err(|e| anyhow::anyhow!(e.to_string()))?;
            println!("  full head   : {:8.1} ms/step", full * 1e3);
            println!("  sparse head : {:8.1} ms/step", sparse * 1e3);
            println!("  speedup (full / sparse): {:.2}x", full / sparse);
            Ok(())
        }
        Cmd::Bench(BenchCmd::Mixers { mixers, d_model, batch, lengths, iters, warmup, max_mem_gb, device }) => {
            let dev =
                zoology::device::DeviceSpec(device).resolve("--device").map_err(|e| anyhow::anyhow!(e.to_string()))?;
            let rt = zoology::device::Runtime::new(dev);
            let max_mem = match max_mem_gb {
                Some(g) => g * 1e9,
                None => zoology::bench::mem_available().map(|m| m / 2.0).unwrap_or(8e9),
            };
            let b = zoology::bench::MixerBench {
                mixers,
                d_model,
                batch,
                lengths: lengths.clone(),
                warmup,
                iters,
                max_mem_bytes: max_mem,
            };
            println!(
                "bench mixers: each mixer alone, d={d_model} B={batch}, forward+backward, median of {iters} after {warmup} warmup, on {} ({} threads), memory budget {:.1} GB",
                rt.name(),
                tch::get_num_threads(),
                max_mem / 1e9
            );
            let rows = zoology::bench::mixer_scaling(&b, &rt, |line| println!("{line}"))
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            println!();
            print!("{}", zoology::bench::format_mixer_table(&rows, &lengths));
            Ok(())
        }
        Cmd::Bench(BenchCmd::Flops { mixers, d_model, batch, seq_len, iters, warmup, device }) => {
            let dev =
                zoology::device::DeviceSpec(device).resolve("--device").map_err(|e| anyhow::anyhow!(e.to_string()))?;
            let rt = zoology::device::Runtime::new(dev);
            let b = zoology::bench::MixerBench {
                mixers,
                d_model,
                batch,
                lengths: vec![seq_len],
                warmup,
                iters,
                max_mem_bytes: f64::INFINITY,
            };
            println!(
                "bench flops: each mixer alone, d={d_model} B={batch} L={seq_len}, forward+backward, median of {iters} after {warmup} warmup, on {} ({} threads)",
                rt.name(),
                tch::get_num_threads()
            );
            let rows = zoology::bench::flops_bench(&b, &rt, |line| println!("{line}"))
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            println!();
            print!("{}", zoology::bench::format_flops_table(&rows));
            Ok(())
        }
        Cmd::Bench(BenchCmd::Decode { mixers, contexts, batch, d_model, steps, reps, threads, out }) => {
            cmd_bench_decode(mixers, contexts, batch, d_model, steps, reps, threads, out)
        }
        Cmd::Bench(BenchCmd::Data { all, examples, task, options }) => {
            data::cmd_bench_data(task.as_deref(), &options, all, examples)
        }
    }
}

/// Flag checks of `bench step`, each error naming its flag.
fn check_bench_step(
    d_model: i64,
    seq_len: usize,
    kv: usize,
    batch: usize,
    vocab_size: usize,
    iters: usize,
) -> Result<()> {
    use zoology::limits;
    if iters == 0 || iters > 100_000 {
        bail!("--iters: must be in [1, 100000] (got {iters}); the time is the median over iterations");
    }
    if !(1..=limits::MAX_D_MODEL).contains(&d_model) {
        bail!("--d-model: must be in [1, {}] (got {d_model})", limits::MAX_D_MODEL);
    }
    if batch == 0 || batch > limits::MAX_BATCH {
        bail!("--batch: must be in [1, {}] (got {batch})", limits::MAX_BATCH);
    }
    if seq_len > limits::MAX_SEQ_LEN || vocab_size > limits::MAX_VOCAB {
        bail!(
            "--seq-len must be ≤ {} and --vocab-size ≤ {} (got {seq_len}, {vocab_size})",
            limits::MAX_SEQ_LEN,
            limits::MAX_VOCAB
        );
    }
    MqarConfig::new(seq_len, kv, batch).validate(vocab_size, "bench").map_err(|err| {
        let msg = err.to_string();
        let flag = [
            ("bench.seq_len", "--seq-len"),
            ("bench.num_kv_pairs", "--kv"),
            ("data.vocab_size", "--vocab-size"),
            ("bench.num_examples", "--batch"),
        ]
        .iter()
        .find(|(f, _)| msg.contains(&format!("`{f}`")))
        .map(|(_, fl)| *fl)
        .unwrap_or("bench step");
        anyhow::anyhow!("{flag}: {}", msg.splitn(2, "`: ").nth(1).unwrap_or(&msg))
    })?;
    let bytes = 4.0 * batch as f64 * seq_len as f64 * d_model as f64 * 16.0 + 16.0 * vocab_size as f64 * d_model as f64;
    if let Some(total) = zoology::config::mem_total_bytes() {
        if bytes > total {
            bail!("bench step: these sizes need at least {:.1} GiB, more than the {:.1} GiB this machine has; lower --batch, --seq-len, --d-model or --vocab-size", bytes / 2f64.powi(30), total / 2f64.powi(30));
        }
    }
    Ok(())
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
    let dirs = ev::expand_run_dirs(&a.run_dirs).map_err(e)?;
    let opts = ev::ArHitsOptions {
        max_windows: a.max_windows,
        buckets: a.buckets,
        batch: a.batch,
        reference: a.reference,
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

#[allow(clippy::too_many_arguments)]
fn cmd_bench_decode(
    mixers: Vec<String>,
    contexts: Vec<i64>,
    batch: i64,
    d_model: i64,
    steps: i64,
    reps: usize,
    threads: i32,
    out: PathBuf,
) -> Result<()> {
    use zoology::bench::decode::{format_table, DecodeBench};
    let e = |e: zoology::Error| anyhow::anyhow!(e.to_string());
    if !(1..=1024).contains(&threads) {
        bail!("--threads: must be in [1, 1024] (got {threads})");
    }
    let b = DecodeBench { mixers, contexts, batch, d_model, steps, vocab: 256, n_layers: 2, reps };
    b.validate().map_err(e)?;
    tch::set_num_threads(threads);
    println!(
        "bench decode: 2-layer LM per mixer, d={d_model}, batch {batch}, V=256, {steps} greedy steps after the prompt, median of {reps}, on cpu ({} threads)",
        tch::get_num_threads()
    );
    let r = b.run(|line| println!("{line}")).map_err(e)?;
    println!();
    print!("{}", format_table(&r));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join("decode.json");
    std::fs::write(&json, serde_json::to_string_pretty(&r)?).with_context(|| format!("writing {}", json.display()))?;
    zoology::analysis::decode_plot::plot_decode(&r, &out.join("decode")).map_err(e)?;
    println!("wrote {}, {} and {}", json.display(), out.join("decode.png").display(), out.join("decode.svg").display());
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let (cfg, out, resume) = if let Some(dir) = &a.resume {
        if a.config.is_some() || !a.set.is_empty() {
            bail!("--resume DIR continues the run with DIR/config.toml; drop the CONFIG argument and --set");
        }
        let p = dir.join("config.toml");
        if !p.exists() {
            bail!("{} not found: is {} a run directory?", p.display(), dir.display());
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
