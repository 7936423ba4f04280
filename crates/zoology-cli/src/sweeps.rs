//! Verbs for sweeps, results, plots, the report and the quickstart. Each parses its flags and
//! calls the library.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use zoology::analysis::{plot, report};
use zoology::results::{self, index};
use zoology::sweep::{self, local, slurm, Sweep};

fn e(x: zoology::Error) -> anyhow::Error {
    anyhow!(x.to_string())
}

#[derive(Subcommand)]
pub enum SweepCmd {
    /// Expand a sweep file and print its runs (index, stable run id, settings) and the count.
    Plan { sweep: PathBuf },
    /// Run every unfinished run of a sweep (locally, N at a time, or as a Slurm job array).
    Run(RunArgs),
    /// Run one run of a sweep (what each worker / Slurm array task executes).
    RunOne {
        sweep: PathBuf,
        #[arg(long, value_parser = crate::flags::int(0usize, zoology::limits::MAX_SWEEP_RUNS - 1))]
        index: usize,
        /// Sweep output directory (default: sweeps/<sweep name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// libtorch threads for this run.
        #[arg(long, value_parser = crate::flags::int(1usize, zoology::limits::MAX_THREADS))]
        threads: Option<usize>,
        /// Device override ("cpu", "cuda", "cuda:N"); not part of the run id.
        #[arg(long)]
        device: Option<String>,
        #[arg(long, short)]
        quiet: bool,
        /// Exit with this status (instead of 0) when the run had already finished and nothing
        /// was trained: the local backend passes it, so that a sweep does not count as its own a
        /// run that another process finished.
        #[arg(long, hide = true, value_parser = crate::flags::int(4i32, 125))]
        exit_if_finished: Option<i32>,
    },
    /// Show pending/running/done/failed runs from the run directories (and squeue/sacct).
    Status {
        sweep: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        /// List every run, not only the counts and failures.
        #[arg(long, short)]
        verbose: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Backend {
    Local,
    Slurm,
}

/// The order in which `sweep run` takes a sweep's runs.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum RunOrder {
    /// Index order (`sweep plan`): preset by preset.
    Index,
    /// Every preset at one setting of the other axes (a ladder's axis aside) before the next
    /// setting: a partial grid is a complete table at its first settings.
    Breadth,
}

#[derive(Args)]
pub struct RunArgs {
    sweep: PathBuf,
    /// Runs at a time (local backend).
    #[arg(long, default_value_t = 1, value_parser = crate::flags::int(1usize, crate::flags::MAX_WORKERS))]
    workers: usize,
    /// Output directory (default: sweeps/<sweep name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Threads per run (default: cores / workers).
    #[arg(long, value_parser = crate::flags::int(1usize, zoology::limits::MAX_THREADS))]
    threads: Option<usize>,
    /// Run failed or diverged runs again.
    #[arg(long)]
    retry_failed: bool,
    /// Device for every run ("cpu", "cuda", "cuda:N"); not part of the run ids.
    #[arg(long)]
    device: Option<String>,
    /// Order of the runs (local backend); a ladder's rungs train lowest first either way.
    #[arg(long, value_enum, default_value_t = RunOrder::Index)]
    order: RunOrder,
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    backend: Backend,
    /// Slurm partition (overrides [slurm] partition).
    #[arg(long)]
    partition: Option<String>,
    /// Slurm time limit per task, e.g. 02:00:00.
    #[arg(long)]
    time: Option<String>,
    /// GPUs per array task.
    #[arg(long, value_parser = crate::flags::int(0u32, 64))]
    gpus: Option<u32>,
    /// CPUs per array task.
    #[arg(long, value_parser = crate::flags::int(1u32, 4096))]
    cpus_per_task: Option<u32>,
    /// Array tasks running at once (the %N of --array).
    #[arg(long, value_parser = crate::flags::int(1u32, zoology::limits::MAX_SWEEP_RUNS as u32))]
    max_parallel: Option<u32>,
    /// Slurm: write the sbatch script but do not submit it.
    #[arg(long)]
    dry_run: bool,
    /// Slurm: wait until the array has finished, then index the results.
    #[arg(long)]
    wait: bool,
    /// Slurm: give up waiting after this long (seconds, or [D-]HH:MM:SS); the array keeps running.
    #[arg(long, value_name = "DURATION", default_value = "24:00:00", requires = "wait")]
    wait_timeout: String,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand)]
pub enum ResultsCmd {
    /// Build or refresh DIR/results.sqlite from the run directories under DIR.
    Index { dir: PathBuf },
    /// Print the runs under DIR as a table (refreshes the index first).
    Show(ShowArgs),
}

#[derive(Args)]
pub struct ShowArgs {
    dir: PathBuf,
    /// Keep runs whose field equals the value: --where preset=attention --where d_model=64
    /// (columns, short names like lr, or dotted config keys like model.mixer.num_heads).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    wheres: Vec<String>,
    /// Best accuracy over these keys (comma-separated), e.g. --best-over lr or lr,d_model.
    #[arg(long, value_name = "KEYS", num_args = 0..=1, default_missing_value = "lr")]
    best_over: Option<String>,
    /// Print the MAD score: per task, the mean over its settings of the best final accuracy
    /// over the optimiser grid (lr, weight decay); the mean over tasks.
    #[arg(long = "mad-score", alias = "score")]
    score: bool,
    /// Print the cost to solve: per task setting and mixer, the cheapest run (least training
    /// FLOPs) whose test accuracy reached --threshold, with its width, step, training FLOPs to
    /// solve, decode FLOPs per token, state and parameters.
    #[arg(long, conflicts_with_all = ["score", "best_over"])]
    cost: bool,
    /// Accuracy that counts as solved for --cost.
    #[arg(long, default_value_t = 0.9, requires = "cost", value_parser = crate::flags::real(0.0, 1.0))]
    threshold: f64,
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    #[arg(long)]
    json: bool,
}

fn out_of(s: &Sweep, out: &Option<PathBuf>) -> PathBuf {
    out.clone().unwrap_or_else(|| sweep::default_out(s))
}

fn load(p: &Path) -> Result<Sweep> {
    Sweep::load(p).map_err(e)
}

pub fn cmd_sweep(c: SweepCmd) -> Result<()> {
    match c {
        SweepCmd::Plan { sweep: p } => {
            let s = load(&p)?;
            print!("{}", sweep::plan_table(&s));
            Ok(())
        }
        SweepCmd::Run(a) => cmd_run(a),
        SweepCmd::RunOne { sweep: p, index, out, threads, device, quiet, exit_if_finished } => {
            let s = load(&p)?;
            let out = out_of(&s, &out);
            match sweep::run_one(&s, index, &out, threads, device.as_deref(), quiet) {
                Ok(sweep::RunOutcome::AlreadyFinished(st)) if exit_if_finished.is_some() => {
                    println!("run {index}: already {}; nothing trained", st.word());
                    std::process::exit(exit_if_finished.unwrap_or(0))
                }
                Ok(sweep::RunOutcome::Skipped(why)) => {
                    println!("run {index}: {why}; nothing trained");
                    match exit_if_finished {
                        Some(code) => std::process::exit(code),
                        None => Ok(()),
                    }
                }
                Ok(outcome) => match outcome.state() {
                    sweep::RunState::Failed(why) => {
                        eprintln!("run {index}: failed: {why}");
                        std::process::exit(local::EXIT_FAILED)
                    }
                    st => {
                        println!("run {index}: {}", st.word());
                        Ok(())
                    }
                },
                Err(err @ zoology::Error::Busy(_)) => {
                    eprintln!("run {index}: {err}");
                    std::process::exit(local::EXIT_BUSY)
                }
                Err(err) => match s.runs.get(index).map(|r| sweep::run_state(&sweep::run_dir(&out, r))) {
                    // the trainer recorded it in failed.json
                    Some(sweep::RunState::Failed(_)) => {
                        eprintln!("run {index}: failed: {err}");
                        std::process::exit(local::EXIT_FAILED)
                    }
                    _ => Err(e(err)),
                },
            }
        }
        SweepCmd::Status { sweep: p, out, verbose } => cmd_status(p, out, verbose),
    }
}

/// `sweep status`: the tally, then each failed run (and with `verbose` every run) with its
/// state and reason.
fn cmd_status(p: PathBuf, out: Option<PathBuf>, verbose: bool) -> Result<()> {
    let s = load(&p)?;
    let out = out_of(&s, &out);
    if !out.is_dir() {
        bail!("{}: no such directory; has the sweep run? (`--out` gives another output directory)", out.display());
    }
    let (t, states) = sweep::tally(&s, &out);
    let sq = slurm::squeue_states(&out).unwrap_or_default();
    let queued =
        sq.iter().filter(|(i, st)| st == "PENDING" && !states.get(*i).map(|x| x.is_finished()).unwrap_or(true)).count();
    println!(
        "sweep {} ({} runs) in {}: {} done, {} failed, {} running, {} interrupted, {} pending{}{}",
        s.name,
        s.runs.len(),
        out.display(),
        t.done,
        t.failed,
        t.running,
        t.interrupted,
        t.pending,
        match &s.ladder {
            Some(l) => format!(", {} skipped ({})", t.skipped, skip_rule(l)),
            None => String::new(),
        },
        if queued > 0 { format!(" ({queued} queued in Slurm)") } else { String::new() }
    );
    if let Some(sa) = slurm::sacct_summary(&out) {
        println!("sacct: {sa}");
    }
    for line in s.ladder_lines(&out) {
        println!("  ladder {line}");
    }
    // why each unfinished run is skipped by its ladder (None: not skipped), read once
    let skips: Vec<Option<String>> = s
        .runs
        .iter()
        .zip(&states)
        .map(|(r, st)| if st.is_finished() { None } else { s.ladder_skip(r.index, &out) })
        .collect();
    for (r, st) in s.runs.iter().zip(&states) {
        let dir = sweep::run_dir(&out, r);
        let slurm_state =
            sq.iter().find(|(i, _)| *i == r.index).map(|(_, x)| format!(" [slurm {x}]")).unwrap_or_default();
        match st {
            sweep::RunState::Failed(why) => println!("  [{}] {} FAILED: {why}", r.index, r.label()),
            sweep::RunState::Running if verbose => {
                let who = zoology::rundir::RunningMarker::read(&dir)
                    .map(|m| format!(" ({})", m.describe()))
                    .unwrap_or_default();
                println!("  [{}] {} running{who}{slurm_state}", r.index, r.label())
            }
            sweep::RunState::Pending | sweep::RunState::Interrupted if skips[r.index].is_some() => {
                if verbose {
                    println!("  [{}] {} {}", r.index, r.label(), skips[r.index].as_deref().unwrap_or(""));
                }
            }
            other => {
                let note = zoology::rundir::inspect(&dir).1;
                if verbose || note.is_some() {
                    println!(
                        "  [{}] {} {}{}{slurm_state}",
                        r.index,
                        r.label(),
                        other.word(),
                        note.map(|n| format!(" ({n})")).unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

fn cmd_run(a: RunArgs) -> Result<()> {
    let s = load(&a.sweep)?;
    let out = out_of(&s, &a.out);
    let exe = std::env::current_exe()?;
    match a.backend {
        Backend::Local => run_local_backend(&a, &s, out, exe),
        Backend::Slurm => run_slurm_backend(a, &s, out, exe),
    }
}

/// `sweep run --backend local`: run the runs here, index them, report what happened.
fn run_local_backend(a: &RunArgs, s: &sweep::grid::Sweep, out: PathBuf, exe: PathBuf) -> Result<()> {
    if a.wait || a.dry_run {
        bail!("--wait and --dry-run are for --backend slurm");
    }
    eprintln!("sweep {}: {} runs, {} workers, output in {}", s.name, s.runs.len(), a.workers, out.display());
    let r = local::run_local(
        &s,
        &local::LocalOptions {
            out: out.clone(),
            workers: a.workers,
            threads: a.threads,
            retry_failed: a.retry_failed,
            quiet: a.quiet,
            exe,
            device: a.device.clone(),
            breadth_first: a.order == RunOrder::Breadth,
        },
    )
    .map_err(e)?;
    let (_, note) = index::index_dir(&out).map_err(e)?;
    if let Some(n) = note {
        eprintln!("warning: {n}");
    }
    println!(
        "sweep {}: ran {} ({} done, {} failed), skipped {} already finished, in {}",
        s.name,
        r.ran,
        r.done,
        r.failed.len(),
        r.skipped,
        local::fmt_secs(r.wall_s)
    );
    for (old, new) in &r.adopted {
        println!("  renamed {} to {} (its run id under this version)", old.display(), new.display());
    }
    for (i, note) in &r.retried {
        println!("  retried [{i}] {}: it {note}", s.runs[*i].label());
    }
    if let (false, Some(l)) = (r.ladder_skipped.is_empty(), &s.ladder) {
        println!("  {} runs skipped: {} ([sweep.ladder])", r.ladder_skipped.len(), skip_rule(l));
    }
    for (i, why) in &r.failed {
        println!("  failed [{i}] {}: {why}", s.runs[*i].label());
    }
    for (i, why) in &r.interrupted {
        println!("  interrupted [{i}] {}: {why}", s.runs[*i].label());
    }
    if !r.elsewhere.is_empty() {
        println!("  {} runs were being trained by another process (left alone): {:?}", r.elsewhere.len(), r.elsewhere);
    }
    println!("results: {}", out.join(results::INDEX_FILE).display());
    finish(&s, &out)
}

/// `sweep run --backend slurm`: submit an array job (or say why nothing is submitted), and with
/// `--wait` wait for it and index the results.
fn run_slurm_backend(a: RunArgs, s: &sweep::grid::Sweep, out: PathBuf, exe: PathBuf) -> Result<()> {
    if a.order != RunOrder::Index {
        bail!("--order breadth is for --backend local (a Slurm array starts its tasks in index order)");
    }
    let wait_timeout = slurm::parse_duration(&a.wait_timeout)
        .ok_or_else(|| anyhow!("--wait-timeout: expected seconds or [D-]HH:MM:SS, got {:?}", a.wait_timeout))?;
    let mut o = s.slurm.clone();
    o.partition = a.partition.or(o.partition);
    o.time = a.time.or(o.time);
    o.gpus = a.gpus.or(o.gpus);
    o.cpus_per_task = a.cpus_per_task.or(o.cpus_per_task);
    o.max_parallel = a.max_parallel.or(o.max_parallel);
    let sub = slurm::submit(
        &s,
        &slurm::SlurmSubmit {
            out: out.clone(),
            exe,
            options: o,
            retry_failed: a.retry_failed,
            device: a.device.clone(),
            dry_run: a.dry_run,
        },
    )
    .map_err(e)?;
    println!("sbatch script: {}", sub.script.display());
    for (old, new) in &sub.adopted {
        println!("renamed {} to {} (its run id under this version)", old.display(), new.display());
    }
    for (i, note) in &sub.retried {
        println!("  [{i}] {}: retrying; it {note}", s.runs[*i].label());
    }
    if !sub.queued.is_empty() {
        println!(
            "{} runs are already queued or running in this sweep's jobs: {}",
            sub.queued.len(),
            slurm::compress_ranges(&sub.queued)
        );
    }
    match &sub.job_id {
        None if sub.indices.is_empty() => {
            println!("nothing to submit: every run is finished, running or queued")
        }
        None => println!("dry run: not submitted ({} array tasks)", sub.indices.len()),
        Some(id) => println!(
            "submitted job array {id}: {} tasks (indices {})",
            sub.indices.len(),
            slurm::compress_ranges(&sub.indices)
        ),
    }
    if !a.wait {
        return Ok(());
    }
    if let Some(id) = &sub.job_id {
        if slurm::wait(id, wait_timeout, std::time::Duration::from_secs(2)).map_err(e)? == slurm::Waited::TimedOut {
            println!("stopped waiting after {} (--wait-timeout); job {id} keeps running: `zoology sweep status` shows progress", a.wait_timeout);
        }
    }
    let (path, _) = index::build_index(&out).map_err(e)?;
    let (t, _) = sweep::tally(&s, &out);
    println!(
        "array finished: {} done, {} failed, {} unfinished; index {}",
        t.done,
        t.failed,
        t.pending + t.interrupted + t.running,
        path.display()
    );
    if t.interrupted > 0 {
        println!("{} runs were interrupted (time limit, scancel or a node failure?); run the same command again to resubmit them: they resume from their checkpoints", t.interrupted);
    }
    finish(&s, &out)
}

/// Ends `sweep run` with the sweep's exit status: 0 all done, 2 some failed or diverged,
/// 3 some unfinished.
fn finish(s: &Sweep, out: &Path) -> Result<()> {
    let (t, _) = sweep::tally(s, out);
    let code = t.exit_code();
    if code == 2 {
        eprintln!("{} of {} runs failed or diverged (`zoology sweep status` lists them)", t.failed, s.runs.len());
    } else if code == 3 {
        eprintln!(
            "{} of {} runs are not finished ({} running, {} interrupted, {} pending)",
            t.pending + t.running + t.interrupted,
            s.runs.len(),
            t.running,
            t.interrupted,
            t.pending
        );
    }
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

pub fn cmd_results(c: ResultsCmd) -> Result<()> {
    match c {
        ResultsCmd::Index { dir } => {
            let (path, recs) = index::build_index(&dir).map_err(e)?;
            let n = index::Index::open(&path).and_then(|i| i.count()).map_err(e)?;
            println!("{}: {} run directories indexed ({n} rows)", path.display(), recs.len());
            for d in index::describe_duplicates(&recs) {
                println!("note: {d}");
            }
            Ok(())
        }
        ResultsCmd::Show(a) => {
            let (recs, note) = index::index_dir(&a.dir).map_err(e)?;
            if let Some(n) = note {
                eprintln!("note: {n}");
            }
            if recs.is_empty() {
                bail!("no run directories (with a config.toml) under {}", a.dir.display());
            }
            for d in index::describe_duplicates(&recs) {
                eprintln!("note: {d}");
            }
            let mut wheres = vec![];
            for w in &a.wheres {
                let (k, v) = w.split_once('=').ok_or_else(|| anyhow!("--where expects KEY=VALUE, got {w:?}"))?;
                wheres.push((k.trim().to_string(), v.trim().to_string()));
            }
            let recs = results::filter(recs, &wheres).map_err(e)?;
            if a.cost {
                if !(a.threshold > 0.0 && a.threshold <= 1.0) {
                    bail!("--threshold must be an accuracy in (0, 1] (got {})", a.threshold);
                }
                let rows = results::cost::cost_rows(&recs, a.threshold, &|_, cfg| results::cost::model_cost(cfg))
                    .map_err(e)?;
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                    return Ok(());
                }
                let t = results::cost::cost_table(&rows);
                print!("{}", if a.csv { results::render_csv(&t) } else { results::render_text(&t) });
                if !a.csv {
                    println!("\nsolved = runs of the group that reached accuracy {} / runs; the cheapest is shown (training FLOPs to solve = examples up to the first evaluation at or above it × training FLOPs per sequence).", a.threshold);
                }
                return Ok(());
            }
            if a.score {
                let scores = results::mad_scores(&recs);
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&scores)?);
                    return Ok(());
                }
                let t = results::mad_table(&scores);
                print!("{}", if a.csv { results::render_csv(&t) } else { results::render_text(&t) });
                return Ok(());
            }
            if let Some(keys) = &a.best_over {
                let keys: Vec<String> =
                    keys.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect();
                let rows = results::best_over(&recs, &keys);
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    let t = results::best_table(&rows);
                    print!("{}", if a.csv { results::render_csv(&t) } else { results::render_text(&t) });
                }
            } else if a.json {
                println!("{}", serde_json::to_string_pretty(&recs)?);
            } else {
                let t = results::runs_table(&recs);
                print!("{}", if a.csv { results::render_csv(&t) } else { results::render_text(&t) });
            }
            if !a.json && !a.csv {
                let failed = results::failures(&recs);
                if !failed.is_empty() {
                    println!("\n{} failed or diverged (left out of best-over and scores):", failed.len());
                    for (r, why) in failed {
                        println!(
                            "  {} {} [{}]: {why}",
                            r.status,
                            if r.label.is_empty() { &r.preset } else { &r.label },
                            r.run_id
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// Reads the runs under DIR and writes the plots into `out` (default DIR/plots).
fn plots_of(
    dir: &Path,
    out: Option<PathBuf>,
    curves: bool,
    mixers: &[String],
) -> Result<(Vec<index::RunRecord>, plot::Plots, PathBuf)> {
    let (recs, note) = index::index_dir(dir).map_err(e)?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    if recs.is_empty() {
        bail!("no run directories (with config.toml) under {}", dir.display());
    }
    let recs = only_mixers(recs, mixers, dir)?;
    let out = out.unwrap_or_else(|| dir.join("plots"));
    writable(&out)?;
    let plots = plot::plot_all(&recs, &out, curves).map_err(e)?;
    Ok((recs, plots, out))
}

/// The runs of the named mixers (preset names, as tables and legends show them); every name
/// must have a run, else an error lists the names there are. No names: every run.
fn only_mixers(recs: Vec<index::RunRecord>, mixers: &[String], dir: &Path) -> Result<Vec<index::RunRecord>> {
    if mixers.is_empty() {
        return Ok(recs);
    }
    let have: std::collections::BTreeSet<&str> = recs.iter().map(|r| r.preset.as_str()).collect();
    let missing: Vec<&str> = mixers.iter().map(|m| m.trim()).filter(|m| !have.contains(m)).collect();
    if !missing.is_empty() {
        bail!(
            "--mixers: no run of {} under {}; the mixers there are: {}",
            missing.join(", "),
            dir.display(),
            have.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(recs.into_iter().filter(|r| mixers.iter().any(|m| m.trim() == r.preset)).collect())
}

/// Fails early, with the fix, when `dir` cannot be created or written (a read-only results dir).
fn writable(dir: &Path) -> Result<()> {
    let probe = dir.join(".zoology-write-test");
    let res = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b""))
        .and_then(|_| std::fs::remove_file(&probe));
    res.map_err(|err| {
        anyhow!(
            "cannot write to {} ({err}); the results directory may be read-only: pass --out DIR to write elsewhere",
            dir.display()
        )
    })
}

pub fn cmd_plot(dir: PathBuf, out: Option<PathBuf>, no_curves: bool, mixers: &[String]) -> Result<()> {
    let (_, p, out) = plots_of(&dir, out, !no_curves, mixers)?;
    for (what, x) in [
        ("figure 2", &p.figure2),
        ("state size", &p.state),
        ("MAD scores", &p.mad),
        ("accuracy vs training FLOPs", &p.accuracy_vs_flops),
        ("FLOPs-to-solve frontier", &p.frontier),
        ("width needed vs length", &p.width),
    ] {
        if let Some((png, _)) = x {
            println!("{what}: {} (and .svg)", png.display());
        }
    }
    if !p.curves.is_empty() {
        println!("curves: {} runs in {}", p.curves.len(), out.join("curves").display());
    }
    Ok(())
}

pub fn cmd_report(dir: PathBuf, out: Option<PathBuf>) -> Result<PathBuf> {
    let plots_dir = out.as_ref().map(|o| o.join("plots"));
    let (recs, mut p, _) = plots_of(&dir, plots_dir, true, &[])?;
    plot::attach_arhits(&mut p, &dir).map_err(e)?;
    let path = out.unwrap_or_else(|| dir.clone()).join("report.html");
    let title = recs
        .iter()
        .map(|r| r.sweep.clone())
        .find(|s| !s.is_empty())
        .map(|s| format!("zoology-rs sweep {s}"))
        .unwrap_or_else(|| "zoology-rs results".into());
    report::write_report(&recs, &p, &title, &path).map_err(e)?;
    println!("report: {}", path.display());
    Ok(path)
}

pub fn cmd_quickstart(out: Option<PathBuf>, workers: usize) -> Result<()> {
    let out = out.unwrap_or_else(|| PathBuf::from("sweeps/quickstart"));
    std::fs::create_dir_all(&out).map_err(|err| anyhow!("cannot create {}: {err}; pass --out DIR", out.display()))?;
    let file = out.join("quickstart.toml");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(sweep::QUICKSTART) {
        std::fs::write(&file, sweep::QUICKSTART)
            .map_err(|err| anyhow!("cannot write {}: {err}; pass --out DIR", file.display()))?;
    }
    let s = load(&file)?;
    eprintln!(
        "quickstart: attention vs BaseConv on MQAR, {} runs, {workers} at a time (sweep file {}); re-run to resume",
        s.runs.len(),
        file.display()
    );
    let start = std::time::Instant::now();
    let r = local::run_local(
        &s,
        &local::LocalOptions {
            out: out.clone(),
            workers,
            threads: None,
            retry_failed: false,
            quiet: false,
            exe: std::env::current_exe()?,
            device: None,
            breadth_first: false,
        },
    )
    .map_err(e)?;
    let (path, recs) = index::build_index(&out).map_err(e)?;
    let p = plot::plot_all(&recs, &out.join("plots"), true).map_err(e)?;
    let title = "zoology-rs quickstart: attention vs BaseConv on MQAR";
    report::write_report(&recs, &p, title, &out.join("report.html")).map_err(e)?;
    let rows = results::best_over(&recs, &["lr".to_string()]);
    println!("\nBest test accuracy over learning rate:\n");
    print!("{}", results::render_text(&results::best_table(&rows)));
    println!("\nWhat the plot shows: {}", results::trend_summary(&rows));
    println!(
        "\n{} runs ({} ran now, {} failed) in {}",
        recs.len(),
        r.ran,
        r.failed.len(),
        local::fmt_secs(start.elapsed().as_secs_f64())
    );
    if let Some((png, _)) = &p.figure2 {
        println!("plot:   {}", png.display());
    }
    if let Some((png, _)) = &p.state {
        println!("state:  {}", png.display());
    }
    println!("report: {}", out.join("report.html").display());
    println!(
        "index:  {}  (sqlite3 {} 'select preset, d_model, seq_len, lr, best_accuracy from runs')",
        path.display(),
        path.display()
    );
    if !r.failed.is_empty() {
        std::process::exit(local::EXIT_FAILED);
    }
    Ok(())
}

/// What a ladder skips, for the summary lines of `sweep run` and `sweep status`.
fn skip_rule(l: &zoology::sweep::ladder::Ladder) -> &'static str {
    match l.harder {
        Some(_) => "a lower rung of their ladder solved, or an easier setting's ladder never did",
        None => "a lower rung of their ladder solved",
    }
}
