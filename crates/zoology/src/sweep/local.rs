//! Local backend: runs N runs at a time as child processes of the same binary
//! (`zoology sweep run-one SWEEP --index i`), splitting the CPU threads between them, with one
//! progress display. Killing the sweep kills its children (same process group); re-running
//! skips finished runs and resumes interrupted ones.

use super::{run_dir, run_state, reset_failed, RunState, Sweep};
use crate::error::{io_err, Error, Result};
use crate::train::metrics::{read_lines, MetricLine};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalOptions {
    pub out: PathBuf,
    pub workers: usize,
    /// Threads per run (default: available cores / workers, at least 1).
    pub threads: Option<usize>,
    pub retry_failed: bool,
    pub quiet: bool,
    /// Device for every run ("cpu", "cuda", "cuda:N"); default: the config's.
    pub device: Option<String>,
    /// The binary to run (`std::env::current_exe()` in the CLI).
    pub exe: PathBuf,
}

#[derive(Debug, Default)]
pub struct LocalReport {
    pub ran: usize,
    pub skipped: usize,
    pub done: usize,
    pub failed: Vec<(usize, String)>,
    pub wall_s: f64,
}

struct Active {
    index: usize,
    child: Child,
    bar: ProgressBar,
    started: Instant,
}

pub fn run_local(sweep: &Sweep, opts: &LocalOptions) -> Result<LocalReport> {
    let start = Instant::now();
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = opts.workers.max(1);
    let threads = opts.threads.unwrap_or((cores / workers).max(1));
    let mut report = LocalReport::default();
    let mut queue: Vec<usize> = vec![];
    for r in &sweep.runs {
        let dir = run_dir(&opts.out, r);
        match run_state(&dir) {
            RunState::Done => report.skipped += 1,
            RunState::Failed(_) if opts.retry_failed => {
                reset_failed(&dir)?;
                queue.push(r.index);
            }
            RunState::Failed(_) => report.skipped += 1,
            RunState::Running => {
                return Err(Error::Other(format!(
                    "{} is being trained by another live process; is another `zoology sweep run` on {} still going?",
                    dir.display(),
                    opts.out.display()
                )))
            }
            RunState::Pending | RunState::Interrupted => queue.push(r.index),
        }
    }
    queue.reverse(); // pop() takes runs in index order
    let total = queue.len();
    let mp = MultiProgress::with_draw_target(if opts.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    let overall = mp.add(ProgressBar::new(total as u64));
    overall.set_style(ProgressStyle::with_template("sweep {prefix} [{elapsed_precise}] {bar:30.green/white} {pos}/{len} finished  {msg}").unwrap().progress_chars("=> "));
    overall.set_prefix(sweep.name.clone());
    let run_style = ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg}").unwrap();
    let mut active: Vec<Active> = vec![];
    let mut durations: Vec<f64> = vec![];
    let mut failed_now = 0usize;
    loop {
        while active.len() < workers {
            let Some(i) = queue.pop() else { break };
            let spec = &sweep.runs[i];
            let dir = run_dir(&opts.out, spec);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log.txt")).map_err(io_err(dir.join("log.txt")))?;
            let mut cmd = Command::new(&opts.exe);
            cmd.args(["sweep", "run-one"]).arg(&sweep.path).args(["--index", &i.to_string(), "--threads", &threads.to_string(), "-q", "--out"]).arg(&opts.out);
            if let Some(d) = &opts.device {
                cmd.args(["--device", d]);
            }
            let child = cmd
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io_err(dir.join("log.txt")))?)
                .stderr(log)
                .spawn()
                .map_err(io_err(&opts.exe))?;
            let bar = mp.add(ProgressBar::new_spinner());
            bar.set_style(run_style.clone());
            bar.set_prefix(format!("[{i}] {}", spec.label()));
            bar.set_message("starting");
            active.push(Active { index: i, child, bar, started: Instant::now() });
            report.ran += 1;
        }
        if active.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut k = 0;
        while k < active.len() {
            let a = &mut active[k];
            match a.child.try_wait().map_err(|e| Error::Other(format!("waiting for run {}: {e}", a.index)))? {
                None => {
                    a.bar.tick();
                    a.bar.set_message(progress_line(&run_dir(&opts.out, &sweep.runs[a.index]), sweep.runs[a.index].config.train.epochs));
                    k += 1;
                }
                Some(status) => {
                    let a = active.remove(k);
                    let dir = run_dir(&opts.out, &sweep.runs[a.index]);
                    let state = run_state(&dir);
                    let line = match &state {
                        RunState::Done => {
                            report.done += 1;
                            let s = crate::train::metrics::read_summary(&dir)?;
                            format!("done  best acc {:.3}  ({:.0} s)", s.best_accuracy, a.started.elapsed().as_secs_f64())
                        }
                        RunState::Failed(why) => {
                            report.failed.push((a.index, why.clone()));
                            failed_now += 1;
                            format!("FAILED: {why}")
                        }
                        other => {
                            let why = format!("exited with {status} leaving the run {} (see {})", other.word(), dir.join("log.txt").display());
                            report.failed.push((a.index, why.clone()));
                            failed_now += 1;
                            format!("FAILED: {why}")
                        }
                    };
                    durations.push(a.started.elapsed().as_secs_f64());
                    mp.println(format!("  [{}] {}: {line}", a.index, sweep.runs[a.index].label())).ok();
                    a.bar.finish_and_clear();
                    mp.remove(&a.bar);
                    overall.inc(1);
                }
            }
        }
        let finished = overall.position() as usize;
        let remaining = total - finished;
        let eta = if durations.is_empty() {
            "ETA ?".to_string()
        } else {
            let mean = durations.iter().sum::<f64>() / durations.len() as f64;
            let secs = mean * remaining as f64 / workers.min(remaining.max(1)) as f64;
            format!("ETA {}", fmt_secs(secs))
        };
        overall.set_message(format!("{} done, {failed_now} failed, {} running, {} queued, {eta}", finished - failed_now, active.len(), queue.len()));
    }
    overall.finish_and_clear();
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// `ep 3/20 loss 1.23 acc 0.456` from a run's metrics.jsonl.
fn progress_line(dir: &Path, epochs: usize) -> String {
    let lines = read_lines(&dir.join("metrics.jsonl")).unwrap_or_default();
    let mut loss = None;
    let mut acc = None;
    let mut epoch = 0;
    for l in &lines {
        match l {
            MetricLine::Train { loss: x, epoch: e, .. } => {
                loss = Some(*x);
                epoch = epoch.max(*e);
            }
            MetricLine::Eval { result, epoch: e, .. } => {
                acc = Some(result.accuracy);
                epoch = epoch.max(*e);
            }
        }
    }
    match (loss, acc) {
        (None, None) => "generating data / first steps".into(),
        _ => format!(
            "ep {}/{epochs}  loss {}  acc {}",
            (epoch + 1).min(epochs),
            loss.map(|x| format!("{x:.3}")).unwrap_or("-".into()),
            acc.map(|x| format!("{x:.3}")).unwrap_or("-".into())
        ),
    }
}
