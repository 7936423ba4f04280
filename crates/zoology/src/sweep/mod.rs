//! Sweeps: a grid of run configs ([`grid`]) run locally as child processes ([`local`]) or as a
//! Slurm job array ([`slurm`]). Run directories are the source of truth (the protocol is
//! [`crate::rundir`]):
//!
//! ```text
//! OUT/runs/<preset>-<run id>/  config.toml  metrics.jsonl  summary.json  checkpoint.safetensors
//!                              sweep.json  log.txt  running.json  failed.json  train.lock
//! OUT/results.sqlite           the index, built by one process (crate::results), never by runs
//! ```
//!
//! Every run is executed by `zoology sweep run-one SWEEP --index i` ([`run_one`]): it claims the
//! run by taking its directory's lock (a run another process holds is left alone), returns at
//! once when the run has finished, resumes from a checkpoint when one exists, and records an
//! error or a panic in failed.json. It writes nothing outside its run directory.
//!
//! Layer 10 of 11, **sweeps** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod grid;
pub mod ladder;
pub mod local;
pub mod slurm;

pub use crate::rundir::{run_state, RunState, SweepMeta};
pub use grid::{RunSpec, Sweep};

use crate::config::RunConfig;
use crate::error::{io_err, Error, Result};
use crate::rundir::{self, marker, RunLock};
use crate::train::checkpoint;
use crate::train::trainer::train_locked;
use crate::train::TrainOptions;
use std::path::{Path, PathBuf};

/// The built-in quickstart sweep (`zoology quickstart`).
pub const QUICKSTART: &str = include_str!("../../../../configs/quickstart.toml");

/// Default output directory of a sweep: `sweeps/<name>`.
pub fn default_out(sweep: &Sweep) -> PathBuf {
    Path::new("sweeps").join(&sweep.name)
}

pub fn run_dir(out: &Path, spec: &RunSpec) -> PathBuf {
    out.join("runs").join(spec.dir_name())
}

/// Renames run directories whose name carries an older run id (ids were once a hash of the
/// whole config file) to the name their config has now, so that an upgrade does not retrain
/// finished runs: a directory under `out/runs` that no run of the sweep names, whose config.toml
/// has the id of a run whose directory does not exist yet, becomes that run's directory.
/// Returns (old, new) pairs.
pub fn adopt_renamed(sweep: &Sweep, out: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let runs = out.join("runs");
    let Ok(rd) = std::fs::read_dir(&runs) else { return Ok(vec![]) };
    let wanted: std::collections::HashMap<String, &RunSpec> = sweep.runs.iter().map(|r| (r.id.clone(), r)).collect();
    let names: std::collections::HashSet<String> = sweep.runs.iter().map(|r| r.dir_name()).collect();
    let mut moved = vec![];
    let mut others: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    others.sort();
    for old in others {
        let name = old.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if names.contains(&name) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(old.join(rundir::CONFIG)) else { continue };
        let Ok(mut table) = toml::from_str::<toml::Table>(&text) else { continue };
        table.insert("device".into(), toml::Value::String("cpu".into())); // not part of the id
        let Ok(cfg) = RunConfig::from_table(table) else { continue };
        let Some(spec) = wanted.get(&rundir::run_id(&cfg)) else { continue };
        let new = run_dir(out, spec);
        if new.exists()
            || !name.starts_with(&format!("{}-", spec.dir_name().rsplit_once('-').map(|x| x.0).unwrap_or("")))
        {
            continue;
        }
        if RunLock::try_acquire(&old)?.is_none() {
            continue; // something trains it right now
        }
        std::fs::rename(&old, &new).map_err(io_err(&old))?;
        moved.push((old, new));
    }
    Ok(moved)
}

/// Clears a failed run so that it runs again: a diverged run restarts from scratch (same
/// config, so resuming its checkpoint would only replay the divergence); a failed one resumes
/// from its checkpoint when that checkpoint verifies and belongs to `cfg`, and otherwise (a
/// damaged, foreign or old-format checkpoint) is moved aside to `checkpoint.safetensors.unusable`
/// and the run starts over. Returns a note saying which happened.
pub fn reset_failed(dir: &Path, cfg: &RunConfig) -> Result<String> {
    let Some(_lock) = RunLock::try_acquire(dir)? else { return Err(marker::busy_error(dir)) };
    let mut note = None;
    if let Ok(s) = rundir::read_summary(dir) {
        if !s.is_done() {
            for f in [rundir::SUMMARY, rundir::CHECKPOINT, rundir::METRICS] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            note = Some("restarts from scratch (it diverged)".to_string());
        }
    } else if dir.join(rundir::SUMMARY).exists() {
        let _ = std::fs::remove_file(dir.join(rundir::SUMMARY)); // unreadable: nothing to keep
    }
    let ckpt = dir.join(rundir::CHECKPOINT);
    if ckpt.exists() {
        let id = checkpoint::Identity { config_hash: rundir::run_id(cfg), seed: cfg.seed };
        match checkpoint::load(&ckpt, &id) {
            Ok(_) => note = Some("resumes from its checkpoint".into()),
            Err(e) => {
                let aside = dir.join(format!("{}.unusable", rundir::CHECKPOINT));
                std::fs::rename(&ckpt, &aside).map_err(io_err(&ckpt))?;
                let _ = std::fs::remove_file(dir.join(rundir::METRICS));
                note =
                    Some(format!("starts over: its checkpoint could not be used ({e}); kept as {}", aside.display()));
            }
        }
    }
    let _ = std::fs::remove_file(dir.join(rundir::FAILED));
    Ok(note.unwrap_or_else(|| "starts from scratch (it had no checkpoint)".into()))
}

/// What [`run_one`] did: trained the run (to its final state), or found it already finished
/// (by another process, or an earlier sweep) and left it as it was.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Trained(RunState),
    AlreadyFinished(RunState),
    /// Not trained: a lower rung of its ladder solved (the reason; see [`ladder`]).
    Skipped(String),
}

impl RunOutcome {
    /// The run directory's state (a skipped run's is [`RunState::Pending`]: nothing is written).
    pub fn state(&self) -> &RunState {
        match self {
            RunOutcome::Trained(s) | RunOutcome::AlreadyFinished(s) => s,
            RunOutcome::Skipped(_) => &RunState::Pending,
        }
    }
}

/// Trains run `index` of the sweep into `out` (resuming when possible) and returns its final
/// state, and whether this call trained it; an unfinished run whose ladder has solved below it
/// is skipped and nothing is written. Claims the run with its directory's lock first:
/// when another process holds it (or a live running.json names one), returns [`Error::Busy`] and
/// touches nothing. Errors and panics while training are recorded in failed.json by the trainer.
/// `device` overrides the config's device (not part of the run id).
pub fn run_one(
    sweep: &Sweep,
    index: usize,
    out: &Path,
    threads: Option<usize>,
    device: Option<&str>,
    quiet: bool,
) -> Result<RunOutcome> {
    let spec = sweep.runs.get(index).ok_or_else(|| {
        Error::Other(format!(
            "--index {index} is out of range: {} has {} runs (0..{})",
            sweep.path.display(),
            sweep.runs.len(),
            sweep.runs.len()
        ))
    })?;
    let dir = run_dir(out, spec);
    if !dir.join(rundir::SUMMARY).exists() {
        if let Some(why) = sweep.ladder_skip(index, out) {
            return Ok(RunOutcome::Skipped(why));
        }
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let Some(lock) = RunLock::try_acquire(&dir)? else { return Err(marker::busy_error(&dir)) };
    let state = run_state(&dir);
    if state.is_finished() {
        return Ok(RunOutcome::AlreadyFinished(state));
    }
    if state == RunState::Running
        && rundir::RunningMarker::read(&dir).map(|m| m.host != rundir::hostname()).unwrap_or(true)
    {
        // a live marker from another host although the lock was free: a filesystem whose locks
        // are not shared between hosts. (On this host the lock is the truth: a live pid there is
        // a reused one.)
        return Err(marker::busy_error(&dir));
    }
    let meta = SweepMeta {
        sweep: sweep.name.clone(),
        index,
        preset: spec.preset.clone(),
        label: spec.label(),
        point: spec.point.iter().cloned().collect(),
    };
    rundir::write_atomic(
        &dir.join(rundir::SWEEP_META),
        serde_json::to_string_pretty(&meta).unwrap_or_default().as_bytes(),
    )?;
    let mut cfg = spec.config.clone();
    if let Some(t) = threads {
        cfg.threads = t;
    }
    if let Some(d) = device {
        cfg.device = crate::device::DeviceSpec(d.to_string());
    }
    let resume = dir.join(rundir::CONFIG).exists();
    train_locked(
        &cfg,
        &TrainOptions { out_dir: dir.clone(), resume, quiet, label: format!("[{index}] {}", spec.label()) },
        &lock,
    )?;
    Ok(RunOutcome::Trained(run_state(&dir)))
}

/// Counts of run states.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub pending: usize,
    pub running: usize,
    pub interrupted: usize,
    pub done: usize,
    pub failed: usize,
    /// Unfinished runs that a lower rung of their ladder made unnecessary ([`ladder`]).
    pub skipped: usize,
}

impl Tally {
    /// The exit status of `sweep run` for this outcome: 0 when every run is done, 2 when any
    /// failed or diverged, 3 when none failed but some are unfinished (running elsewhere,
    /// interrupted, or still queued). Ladder-skipped runs count as finished.
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 {
            2
        } else if self.pending + self.running + self.interrupted > 0 {
            3
        } else {
            0
        }
    }
}

/// The tally of the sweep's runs and each run's directory state; an unfinished run that its
/// ladder skips counts in `skipped`, not `pending` or `interrupted`.
pub fn tally(sweep: &Sweep, out: &Path) -> (Tally, Vec<RunState>) {
    let mut t = Tally::default();
    let states: Vec<RunState> = sweep.runs.iter().map(|r| run_state(&run_dir(out, r))).collect();
    for (i, s) in states.iter().enumerate() {
        let skip = || sweep.ladder.is_some() && sweep.ladder_skip(i, out).is_some();
        match s {
            RunState::Pending | RunState::Interrupted if skip() => t.skipped += 1,
            RunState::Pending => t.pending += 1,
            RunState::Running => t.running += 1,
            RunState::Interrupted => t.interrupted += 1,
            RunState::Done => t.done += 1,
            RunState::Failed(_) => t.failed += 1,
        }
    }
    (t, states)
}

/// The plan table: index, id, label, run directory.
pub fn plan_table(sweep: &Sweep) -> String {
    let mut s = format!("{:>5}  {:<12}  {}\n", "index", "run id", "run");
    for r in &sweep.runs {
        s.push_str(&format!("{:>5}  {:<12}  {}\n", r.index, r.id, r.label()));
    }
    s.push_str(&format!("{} runs in sweep {:?}\n", sweep.runs.len(), sweep.name));
    s
}
