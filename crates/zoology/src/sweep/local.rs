//! Local backend: runs N runs at a time as child processes of the same binary
//! (`zoology sweep run-one SWEEP --index i`), splitting the CPU threads between them, with one
//! progress display. Each child asks the kernel to SIGTERM it when this process dies
//! (`PR_SET_PDEATHSIG`), so killing the sweep, its process group or only its parent process
//! leaves no run training as an orphan; the runs stay resumable. Re-running skips finished
//! runs, resumes interrupted ones and leaves runs another process trains alone. With a
//! `[sweep.ladder]`, each ladder's rungs start lowest first, one after another, and a rung is
//! skipped once a lower one solved ([`super::ladder`]); a rung whose lower rung another process
//! trains waits for that result too (two `sweep run` processes on one directory, or hosts
//! sharing it, climb a ladder one rung at a time between them).

use super::{reset_failed, run_dir, RunState, Sweep};
use crate::console::Progress;
use crate::error::{io_err, Error, Result};
use crate::rundir::{self, RunLock};
use crate::train::metrics::{read_lines, MetricLine};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
    /// Run the queue breadth-first ([`Sweep::breadth_first`]) instead of in index order.
    pub breadth_first: bool,
}

#[derive(Debug, Default)]
pub struct LocalReport {
    pub ran: usize,
    pub skipped: usize,
    pub done: usize,
    pub failed: Vec<(usize, String)>,
    /// Runs another process was training (skipped, or claimed by it first).
    pub elsewhere: Vec<usize>,
    /// Runs whose process was killed by a signal (resumable).
    pub interrupted: Vec<(usize, String)>,
    /// Notes of `--retry-failed` on the runs it reset.
    pub retried: Vec<(usize, String)>,
    /// Runs not trained because a lower rung of their ladder solved, with the reason
    /// ([`super::ladder`]).
    pub ladder_skipped: Vec<(usize, String)>,
    /// Run directories renamed from an older run id (see [`super::adopt_renamed`]).
    pub adopted: Vec<(PathBuf, PathBuf)>,
    pub wall_s: f64,
}

struct Active {
    index: usize,
    child: Child,
    bar: ProgressBar,
    started: Instant,
}

/// Exit status of `sweep run-one` when another process holds the run.
pub const EXIT_BUSY: i32 = 3;
/// Exit status of `sweep run-one` (and `train`) when the run failed or diverged.
pub const EXIT_FAILED: i32 = 2;
/// Exit status the local backend asks `sweep run-one` for (`--exit-if-finished`) when the run
/// had already finished and the child trained nothing: another process finished it.
pub const EXIT_ALREADY_FINISHED: i32 = 4;

/// Signals that stop a run from outside (a user, a scheduler, this sweep's death): the run is
/// interrupted and resumable, not failed.
fn is_stop_signal(sig: i32) -> bool {
    [libc::SIGKILL, libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT].contains(&sig)
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the parent makes of a child that exited: a state for the report, recording the run as
/// failed (with the exit status and the end of its log) when it crashed without saying why.
fn judge_exit(dir: &Path, status: ExitStatus) -> RunState {
    let state = rundir::run_state(dir);
    if state.is_finished() || state == RunState::Running {
        return state;
    }
    if status.code() == Some(EXIT_BUSY) {
        return RunState::Running;
    }
    if let Some(sig) = status.signal() {
        if is_stop_signal(sig) {
            return state; // interrupted (or pending): resumable
        }
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!(
            "was killed by signal {s}{}",
            if s == libc::SIGABRT {
                " (SIGABRT: an abort, e.g. in libtorch)"
            } else if s == libc::SIGSEGV {
                " (SIGSEGV)"
            } else {
                ""
            }
        ),
        _ => format!("ended with {status}"),
    };
    let log = dir.join(rundir::LOG);
    let why = format!(
        "the run's process {how} without recording a reason; last lines of {}:\n{}",
        log.display(),
        tail(&log, 8)
    );
    // record it only if no process has claimed the run since
    if let Ok(Some(_lock)) = RunLock::try_acquire(dir) {
        let _ = rundir::record_failure(dir, &why);
    }
    RunState::Failed(why)
}

/// Runs the sweep's unfinished runs, `opts.workers` at a time. Phases: sort every run into
/// done / to run / to retry / trained elsewhere ([`queue_runs`]), then keep the workers busy:
/// start runs ([`spawn_run`]), poll them, and report each that ends ([`reap`]).
pub fn run_local(sweep: &Sweep, opts: &LocalOptions) -> Result<LocalReport> {
    let start = Instant::now();
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = opts.workers.max(1);
    let threads = opts.threads.unwrap_or((cores / workers).max(1));
    let mut report = LocalReport { adopted: super::adopt_renamed(sweep, &opts.out)?, ..Default::default() };
    let mut queue = queue_runs(sweep, opts, &mut report)?;
    if opts.breadth_first {
        queue = sweep.breadth_first(&queue);
    }
    let total = queue.len();
    // bars on a terminal; otherwise one plain line per finished run (crate::console)
    let progress = Progress::detect(opts.quiet);
    let (mp, overall) = start_display(sweep, &report, progress, total, workers);
    let mut active: Vec<Active> = vec![];
    let mut durations: Vec<f64> = vec![];
    let mut failed_now = 0usize;
    // runs another process trains: a rung above one of them waits for its result
    let mut waiting: Vec<usize> = report.elsewhere.clone();
    let mut waited_note = false;
    loop {
        for i in refresh_elsewhere(sweep, &opts.out, &mut waiting, &mut queue) {
            report.elsewhere.retain(|&e| e != i);
            overall.inc_length(1);
            say(
                &mp,
                progress,
                &format!("[{i}] {}: its other process stopped; training it here", sweep.runs[i].label()),
            );
        }
        let display = (&mp, progress, &overall);
        start_ready(sweep, opts, (&mut queue, &mut active, &waiting), workers, threads, display, &mut report)?;
        if active.is_empty() {
            if queue.is_empty() || waiting.is_empty() {
                break;
            }
            // every queued run waits for a lower rung that another process trains
            if !std::mem::replace(&mut waited_note, true) {
                let n = queue.len();
                say(
                    &mp,
                    progress,
                    &format!("{n} queued runs wait for lower ladder rungs another process trains ({waiting:?})"),
                );
            }
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut k = 0;
        while k < active.len() {
            let a = &mut active[k];
            let Some(status) =
                a.child.try_wait().map_err(|e| Error::Other(format!("waiting for run {}: {e}", a.index)))?
            else {
                a.bar.tick();
                let spec = &sweep.runs[a.index];
                a.bar.set_message(progress_line(&run_dir(&opts.out, spec), spec.config.train.epochs));
                k += 1;
                continue;
            };
            let a = active.remove(k);
            let claimed_before = report.elsewhere.len();
            let line = reap(sweep, opts, &a, status, &mut report, &mut failed_now)?;
            waiting.extend(report.elsewhere[claimed_before..].iter().copied());
            durations.push(a.started.elapsed().as_secs_f64());
            overall.inc(1);
            let finished = overall.position() as usize;
            let left = format!(
                "{} running, {} queued, {}",
                active.len(),
                queue.len(),
                eta(&durations, total - finished, workers)
            );
            mp.println(format!("  [{}] {}: {line}", a.index, sweep.runs[a.index].label())).ok();
            progress.line(&format!(
                "[{finished}/{total}] [{}] {}: {line}; {left}",
                a.index,
                sweep.runs[a.index].label()
            ));
            a.bar.finish_and_clear();
            mp.remove(&a.bar);
        }
        let finished = overall.position() as usize;
        let eta = eta(&durations, total - finished, workers);
        overall.set_message(format!(
            "{} done, {failed_now} failed, {} running, {} queued, {eta}",
            finished - failed_now,
            active.len(),
            queue.len()
        ));
    }
    overall.finish_and_clear();
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// A note above the bars (on a terminal) or a plain line (piped).
fn say(mp: &MultiProgress, progress: Progress, text: &str) {
    mp.println(format!("  {text}")).ok();
    progress.line(text);
}

/// Starts ready runs ([`next_ready`]) until `workers` run here; a ready rung whose ladder has
/// solved below it is skipped and counted as finished instead.
fn start_ready(
    sweep: &Sweep,
    opts: &LocalOptions,
    (queue, active, waiting): (&mut Vec<usize>, &mut Vec<Active>, &[usize]),
    workers: usize,
    threads: usize,
    (mp, progress, overall): (&MultiProgress, Progress, &ProgressBar),
    report: &mut LocalReport,
) -> Result<()> {
    while active.len() < workers {
        let Some(i) = next_ready(sweep, queue, active, waiting) else { break };
        if let Some(why) = sweep.ladder_skip(i, &opts.out) {
            say(mp, progress, &format!("[{i}] {}: {why}", sweep.runs[i].label()));
            report.ladder_skipped.push((i, why));
            overall.inc(1);
            continue;
        }
        let child = spawn_run(sweep, opts, i, threads)?;
        let bar = mp.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg}").unwrap());
        bar.set_prefix(format!("[{i}] {}", sweep.runs[i].label()));
        bar.set_message("starting");
        active.push(Active { index: i, child, bar, started: Instant::now() });
        report.ran += 1;
    }
    Ok(())
}

/// The progress display of a sweep: the bars (drawn on a terminal only) and, before them, the
/// notes on retried runs and runs another process trains (as plain lines when piped).
fn start_display(
    sweep: &Sweep,
    report: &LocalReport,
    progress: Progress,
    total: usize,
    workers: usize,
) -> (MultiProgress, ProgressBar) {
    let mp = MultiProgress::with_draw_target(if progress == Progress::Bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let say = |text: String| {
        mp.println(&text).ok();
        progress.line(&text);
    };
    for (i, note) in &report.retried {
        say(format!("  [{i}] {}: retrying; it {note}", sweep.runs[*i].label()));
    }
    if !report.elsewhere.is_empty() {
        let n = report.elsewhere.len();
        say(format!("  {n} runs are being trained by another process; leaving them alone"));
    }
    progress.line(&format!(
        "sweep {}: {total} runs to run, {} at a time; a line as each finishes",
        sweep.name,
        workers.min(total.max(1))
    ));
    let overall = mp.add(ProgressBar::new(total as u64));
    overall.set_style(
        ProgressStyle::with_template(
            "sweep {prefix} [{elapsed_precise}] {bar:30.green/white} {pos}/{len} finished  {msg}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    overall.set_prefix(sweep.name.clone());
    (mp, overall)
}

/// The next run to start: the first queued run (in index order) none of whose lower ladder
/// rungs is still queued, running here or trained by another process (`waiting`), removed from
/// the queue; `None` when the queue is
/// empty or every queued run waits for a lower rung. (Without a ladder: the first queued run.)
fn next_ready(sweep: &Sweep, queue: &mut Vec<usize>, active: &[Active], waiting: &[usize]) -> Option<usize> {
    let pos = queue.iter().position(|&i| {
        sweep
            .waits_for(i)
            .iter()
            .all(|j| !queue.contains(j) && !active.iter().any(|a| a.index == *j) && !waiting.contains(j))
    })?;
    Some(queue.remove(pos))
}

/// Updates the runs another process trains (`waiting`): one that finished there (done or
/// failed) leaves the list, and the rungs above it follow the ladder rule when they start; one
/// whose process stopped without finishing it (interrupted, or pending again) leaves the list
/// and goes to the front of this queue. Returns the runs moved to the queue.
fn refresh_elsewhere(sweep: &Sweep, out: &Path, waiting: &mut Vec<usize>, queue: &mut Vec<usize>) -> Vec<usize> {
    let mut requeued = vec![];
    waiting.retain(|&j| match rundir::run_state(&run_dir(out, &sweep.runs[j])) {
        RunState::Running => true,
        RunState::Pending | RunState::Interrupted => {
            requeued.push(j);
            false
        }
        RunState::Done | RunState::Failed(_) => false,
    });
    for &j in requeued.iter().rev() {
        queue.insert(0, j);
    }
    requeued
}

/// Sorts every run of the sweep by its directory's state: finished runs are skipped, failed
/// ones reset when `--retry-failed` asks, runs another process trains are left alone, runs a
/// lower ladder rung has solved are skipped; returns the indices to run, in index order.
fn queue_runs(sweep: &Sweep, opts: &LocalOptions, report: &mut LocalReport) -> Result<Vec<usize>> {
    let mut queue: Vec<usize> = vec![];
    for r in &sweep.runs {
        let dir = run_dir(&opts.out, r);
        match rundir::run_state(&dir) {
            RunState::Done => report.skipped += 1,
            RunState::Failed(_) if opts.retry_failed => match reset_failed(&dir, &r.config) {
                Ok(note) => {
                    report.retried.push((r.index, note));
                    queue.push(r.index);
                }
                Err(Error::Busy(_)) => report.elsewhere.push(r.index),
                Err(e) => return Err(e),
            },
            RunState::Failed(_) => report.skipped += 1,
            RunState::Running => report.elsewhere.push(r.index),
            RunState::Pending | RunState::Interrupted => match sweep.ladder_skip(r.index, &opts.out) {
                Some(why) => report.ladder_skipped.push((r.index, why)),
                None => queue.push(r.index),
            },
        }
    }
    Ok(queue)
}

/// Starts `zoology sweep run-one SWEEP --index i` as a child that the kernel SIGTERMs when this
/// process dies, its output appended to the run's log.
fn spawn_run(sweep: &Sweep, opts: &LocalOptions, i: usize, threads: usize) -> Result<Child> {
    let dir = run_dir(&opts.out, &sweep.runs[i]);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let log_path = dir.join(rundir::LOG);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_err(&log_path))?;
    let mut cmd = Command::new(&opts.exe);
    cmd.args(["sweep", "run-one"])
        .arg(&sweep.path)
        .args(["--index", &i.to_string(), "--threads", &threads.to_string(), "-q", "--out"])
        .arg(&opts.out)
        .args(["--exit-if-finished", &EXIT_ALREADY_FINISHED.to_string()]);
    if let Some(d) = &opts.device {
        cmd.args(["--device", d]);
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // the sweep died between fork and prctl
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd.env("RAYON_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_err(&log_path))?)
        .stderr(log)
        .spawn()
        .map_err(io_err(&opts.exe))
}

/// Records a run whose process has ended in the report and returns the line that says how.
fn reap(
    sweep: &Sweep,
    opts: &LocalOptions,
    a: &Active,
    status: ExitStatus,
    report: &mut LocalReport,
    failed_now: &mut usize,
) -> Result<String> {
    let dir = run_dir(&opts.out, &sweep.runs[a.index]);
    // the child trained nothing: another process holds the run, or finished it before the
    // child could claim it; it is not this sweep's run (whatever its state is now)
    let elsewhere = match status.code() {
        Some(EXIT_BUSY) => Some("another process is training it; left alone"),
        Some(EXIT_ALREADY_FINISHED) => Some("another process finished it meanwhile; left alone"),
        _ => None,
    };
    if let Some(why) = elsewhere {
        report.elsewhere.push(a.index);
        report.ran -= 1;
        return Ok(why.to_string());
    }
    Ok(match judge_exit(&dir, status) {
        RunState::Done => {
            report.done += 1;
            let s = crate::train::metrics::read_summary(&dir)?;
            format!(
                "done  best acc {:.3}  ({})",
                s.best_accuracy,
                crate::console::duration(a.started.elapsed().as_secs_f64())
            )
        }
        RunState::Failed(why) => {
            report.failed.push((a.index, why.clone()));
            *failed_now += 1;
            format!("FAILED: {why}")
        }
        RunState::Running => {
            report.elsewhere.push(a.index);
            report.ran -= 1;
            "another process is training it; left alone".to_string()
        }
        other => {
            let why = format!("{} by {status}; resumable: run the sweep again", other.word());
            report.interrupted.push((a.index, why.clone()));
            why
        }
    })
}

/// `ETA 3m05s` for `remaining` runs on `workers` workers from the mean of finished runs.
fn eta(durations: &[f64], remaining: usize, workers: usize) -> String {
    if durations.is_empty() {
        return "ETA ?".to_string();
    }
    let mean = durations.iter().sum::<f64>() / durations.len() as f64;
    format!("ETA {}", fmt_secs(mean * remaining as f64 / workers.min(remaining.max(1)) as f64))
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
