//! `zoology bench …`: the benchmark verbs (training step, mixers vs length, time per FLOP,
//! decoding, data generation), each printing ratios against a baseline measured in the same run.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use zoology::tasks::mqar::MqarConfig;
use zoology::tasks::Task;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Where a training step's time goes, per mixer: data, forward, backward, optimiser and an
    /// evaluation batch; tokens/s; achieved GFLOP/s and its fraction of this machine's matmul
    /// peak in the same precision (measured in the same run). `--heads`: the full vs sparse
    /// (supervised-only) head of an attention LM instead.
    Step(StepArgs),
    /// Forward+backward time of each mixer alone at several lengths, and t(L_max)/t(L_min).
    Mixers {
        /// Comma-separated registry names (default: every registered mixer).
        #[arg(long, value_delimiter = ',')]
        mixers: Vec<String>,
        #[arg(long, default_value_t = 128, value_parser = crate::flags::int(1i64, zoology::limits::MAX_D_MODEL))]
        d_model: i64,
        #[arg(long, default_value_t = 16, value_parser = crate::flags::int(1i64, crate::flags::MAX_BENCH_BATCH))]
        batch: i64,
        #[arg(long, value_delimiter = ',', default_value = "256,1024,4096", value_parser = crate::flags::int(1i64, zoology::limits::MAX_SEQ_LEN as i64))]
        lengths: Vec<i64>,
        #[arg(long, default_value_t = 3, value_parser = crate::flags::int(1usize, crate::flags::MAX_ITERS))]
        iters: usize,
        #[arg(long, default_value_t = 1, value_parser = crate::flags::int(0usize, crate::flags::MAX_ITERS))]
        warmup: usize,
        /// Skip a (mixer, L) predicted to need more peak memory than this (default: half of MemAvailable).
        #[arg(long, value_parser = crate::flags::real(0.0, 1e6))]
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
        #[arg(long, default_value_t = 128, value_parser = crate::flags::int(1i64, zoology::limits::MAX_D_MODEL))]
        d_model: i64,
        #[arg(long, default_value_t = 8, value_parser = crate::flags::int(1i64, crate::flags::MAX_BENCH_BATCH))]
        batch: i64,
        #[arg(long, default_value_t = 1024, value_parser = crate::flags::int(1i64, zoology::limits::MAX_SEQ_LEN as i64))]
        seq_len: i64,
        #[arg(long, default_value_t = 3, value_parser = crate::flags::int(1usize, crate::flags::MAX_ITERS))]
        iters: usize,
        #[arg(long, default_value_t = 1, value_parser = crate::flags::int(0usize, crate::flags::MAX_ITERS))]
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
        #[arg(long, value_delimiter = ',', default_value = zoology::bench::decode::DEFAULT_CONTEXTS, value_parser = crate::flags::int(1i64, zoology::limits::MAX_SEQ_LEN as i64))]
        contexts: Vec<i64>,
        /// Sequences decoded together.
        #[arg(long, default_value_t = 4, value_parser = crate::flags::int(1i64, crate::flags::MAX_BENCH_BATCH))]
        batch: i64,
        #[arg(long, default_value_t = 64, value_parser = crate::flags::int(1i64, zoology::limits::MAX_D_MODEL))]
        d_model: i64,
        /// Greedy decode steps after the prompt.
        #[arg(long, default_value_t = 32, value_parser = crate::flags::int(1i64, zoology::limits::MAX_SEQ_LEN as i64))]
        steps: i64,
        /// Repetitions of each cell; the medians are reported.
        #[arg(long, default_value_t = 3, value_parser = crate::flags::int(1usize, crate::flags::MAX_ITERS))]
        reps: usize,
        /// libtorch threads (1 by default: at these sizes more threads mostly add contention
        /// on a shared machine).
        #[arg(long, default_value_t = 1, value_parser = crate::flags::int(1i32, zoology::limits::MAX_THREADS as i32))]
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
        #[arg(long, default_value_t = 20_000, value_parser = crate::flags::int(1usize, 1 << 24))]
        examples: usize,
        /// Task name (default mqar at the size above).
        task: Option<String>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "OPTIONS")]
        options: Vec<String>,
    },
}

pub fn cmd_bench(c: BenchCmd) -> Result<()> {
    match c {
        BenchCmd::Step(a) => cmd_bench_step(a),
        BenchCmd::Mixers { mixers, d_model, batch, lengths, iters, warmup, max_mem_gb, device } => {
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
        BenchCmd::Flops { mixers, d_model, batch, seq_len, iters, warmup, device } => {
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
        BenchCmd::Decode { mixers, contexts, batch, d_model, steps, reps, threads, out } => {
            cmd_bench_decode(mixers, contexts, batch, d_model, steps, reps, threads, out)
        }
        BenchCmd::Data { all, examples, task, options } => {
            crate::data::cmd_bench_data(task.as_deref(), &options, all, examples)
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

#[derive(clap::Args)]
pub struct StepArgs {
    /// A run config (TOML) whose model, first training segment and batch size are profiled
    /// (default: a 2-layer LM on MQAR, d = 128, L = 64, kv = 4, B = 64, V = 8192, identity
    /// state mixer, learned positions).
    config: Option<PathBuf>,
    /// `key=value` overrides of the config, as for `zoology train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Comma-separated mixers to profile in the config's model, each at its registry defaults
    /// (default: the config's own mixer).
    #[arg(long, value_delimiter = ',')]
    mixers: Vec<String>,
    /// Comma-separated precisions (fp32, bf16); default: the config's `train.precision`.
    #[arg(long, value_delimiter = ',')]
    precision: Vec<String>,
    /// The full vs sparse head comparison of an attention LM (the flags below; defaults
    /// d = 128, L = 256, kv = 16, B = 64, V = 8192).
    #[arg(long)]
    heads: bool,
    #[arg(long, value_parser = crate::flags::int(1i64, zoology::limits::MAX_D_MODEL))]
    d_model: Option<i64>,
    #[arg(long, value_parser = crate::flags::int(1usize, zoology::limits::MAX_SEQ_LEN))]
    seq_len: Option<usize>,
    #[arg(long, value_parser = crate::flags::int(1usize, zoology::limits::MAX_SEQ_LEN))]
    kv: Option<usize>,
    #[arg(long, value_parser = crate::flags::int(1usize, zoology::limits::MAX_BATCH))]
    batch: Option<usize>,
    #[arg(long, value_parser = crate::flags::int(2usize, zoology::limits::MAX_VOCAB))]
    vocab_size: Option<usize>,
    /// Timed steps (medians are reported).
    #[arg(long, default_value_t = 5, value_parser = crate::flags::int(1usize, crate::flags::MAX_ITERS))]
    iters: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2, value_parser = crate::flags::int(0usize, 1000))]
    warmup: usize,
    /// libtorch threads (0 = the config's, else libtorch's default).
    #[arg(long, default_value_t = 0, value_parser = crate::flags::int(0usize, zoology::limits::MAX_THREADS))]
    threads: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn cmd_bench_step(a: StepArgs) -> Result<()> {
    let e = |e: zoology::Error| anyhow::anyhow!(e.to_string());
    let shape = step_shape(&a);
    let (d_model, seq_len, kv, batch, vocab) = shape;
    check_bench_step(d_model, seq_len, kv, batch, vocab, a.iters)?;
    if a.warmup > 1000 {
        bail!("--warmup: must be ≤ 1000 (got {})", a.warmup);
    }
    if a.threads > zoology::limits::MAX_THREADS {
        bail!("--threads: must be ≤ {} (got {})", zoology::limits::MAX_THREADS, a.threads);
    }
    let dev = zoology::device::DeviceSpec(a.device.clone()).resolve("--device").map_err(e)?;
    if a.heads {
        return bench_step_heads(&a, shape, dev);
    }
    let table = step_table(&a, shape)?;
    let base = zoology::config::RunConfig::from_table(table.clone()).map_err(e)?;
    let precisions = step_precisions(&a, &base)?;
    let mixers: Vec<String> = if a.mixers.is_empty() { vec![base.model.mixer_name()] } else { a.mixers.clone() };
    let threads = if a.threads > 0 { a.threads } else { base.threads };
    zoology::device::set_threads(threads);
    let train = &base.data.train[0];
    println!(
        "bench step: {} layers, d={}, V={}, {} L={} B={} on {} ({} threads), median of {} after {} warm-up",
        base.model.n_layers,
        base.model.d_model,
        base.data.vocab_size,
        train.name(),
        train.seq_len(),
        base.data.batch_size,
        a.device,
        tch::get_num_threads(),
        a.iters,
        a.warmup
    );
    let mut rows = vec![];
    for &p in &precisions {
        let peak = zoology::bench::step::matmul_peak(p, dev, 5);
        println!("  matmul peak {}: {:.0} GFLOP/s (best square matmul of 256..2048, same run)", p.name(), peak);
        for m in &mixers {
            let mut t = table.clone();
            if !a.mixers.is_empty() {
                let mut mt = toml::Table::new();
                mt.insert("name".into(), toml::Value::String(m.clone()));
                zoology::config::set_path(&mut t, "model.mixer", toml::Value::Table(mt)).map_err(e)?;
            }
            zoology::config::set_path(&mut t, "train.precision", toml::Value::String(p.name().into())).map_err(e)?;
            let cfg =
                zoology::config::RunConfig::from_table(t).map_err(|err| anyhow::anyhow!("--mixers {m}: {err}"))?;
            let r = zoology::bench::step::profile_step(&cfg, m, a.iters, a.warmup, peak).map_err(e)?;
            println!("  {:<22} {:>6} {:8.1} ms/step", m, p.name(), r.step_s * 1e3);
            rows.push(r);
        }
    }
    println!();
    print!("{}", zoology::bench::step::format_profiles(&rows));
    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_string_pretty(&rows)?).with_context(|| format!("writing {}", j.display()))?;
        println!("wrote {}", j.display());
    }
    Ok(())
}

type StepShape = (i64, usize, usize, usize, usize);

/// The built-in LM's shape: flags, else the defaults of the mode (`--heads` keeps the old comparison's shape).
fn step_shape(a: &StepArgs) -> StepShape {
    let (seq_len, kv) = if a.heads { (256, 16) } else { (64, 4) };
    (
        a.d_model.unwrap_or(128),
        a.seq_len.unwrap_or(seq_len),
        a.kv.unwrap_or(kv),
        a.batch.unwrap_or(64),
        a.vocab_size.unwrap_or(8192),
    )
}

fn bench_step_heads(a: &StepArgs, shape: StepShape, dev: tch::Device) -> Result<()> {
    let e = |e: zoology::Error| anyhow::anyhow!(e.to_string());
    let (d_model, seq_len, kv, batch, vocab) = shape;
    if a.config.is_some() || !a.set.is_empty() || !a.mixers.is_empty() || !a.precision.is_empty() {
        bail!("--heads compares heads of the built-in attention LM: drop CONFIG, --set, --mixers and --precision");
    }
    let rt = zoology::device::Runtime::new(dev);
    let b = zoology::bench::StepBench { d_model, seq_len, kv, batch, vocab, iters: a.iters, mixer: "attention".into() };
    println!("bench step --heads: 2-layer attention LM d={d_model} L={seq_len} B={batch} V={vocab} kv={kv} on {} ({} threads), median of {}", rt.name(), tch::get_num_threads(), a.iters);
    let (full, sparse) = zoology::bench::step_time(&b, &rt).map_err(e)?;
    println!("  full head   : {:8.1} ms/step", full * 1e3);
    println!("  sparse head : {:8.1} ms/step", sparse * 1e3);
    println!("  speedup (full / sparse): {:.2}x", full / sparse);
    Ok(())
}

/// CONFIG read as a TOML table, or the built-in 2-layer MQAR LM of the given shape; `--set` applied.
fn step_table(a: &StepArgs, shape: StepShape) -> Result<toml::Table> {
    let (d_model, seq_len, kv, batch, vocab) = shape;
    let mut table: toml::Table = match &a.config {
        Some(p) => {
            if a.d_model.is_some() || a.seq_len.is_some() || a.kv.is_some() || a.batch.is_some() || a.vocab_size.is_some() {
                bail!("--d-model/--seq-len/--kv/--batch/--vocab-size shape the built-in config; with CONFIG use --set (e.g. --set data.batch_size=16)");
            }
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).map_err(|err| anyhow::anyhow!("{}: not valid TOML: {err}", p.display()))?
        }
        None => toml::from_str(&format!(
            "seed = 1\n[data]\nvocab_size = {vocab}\nbatch_size = {batch}\n[[data.train]]\ntask = \"mqar\"\nseq_len = {seq_len}\nnum_kv_pairs = {kv}\nnum_examples = {batch}\n[[data.test]]\ntask = \"mqar\"\nseq_len = {seq_len}\nnum_kv_pairs = {kv}\nnum_examples = {batch}\n[model]\nd_model = {d_model}\nn_layers = 2\nstate_mixer = \"identity\"\nmax_position_embeddings = {seq_len}\nmixer = {{ name = \"attention\" }}\n"
        ))?,
    };
    // a sweep config profiles its base run; its mixers are chosen with --mixers
    if table.remove("sweep").is_some() && a.mixers.is_empty() {
        println!("bench step: CONFIG is a sweep; profiling its base run (choose the sweep's mixers with --mixers)");
    }
    for s in &a.set {
        zoology::config::apply_set(&mut table, s).map_err(|e| anyhow::anyhow!(e.to_string()))?;
    }
    table.insert("device".into(), toml::Value::String(a.device.clone()));
    Ok(table)
}

fn step_precisions(a: &StepArgs, base: &zoology::config::RunConfig) -> Result<Vec<zoology::device::Precision>> {
    use zoology::device::Precision;
    if a.precision.is_empty() {
        return Ok(vec![base.train.precision]);
    }
    a.precision
        .iter()
        .map(|p| match p.as_str() {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(anyhow::anyhow!("--precision: unknown precision {other:?}; use fp32 or bf16")),
        })
        .collect()
}
