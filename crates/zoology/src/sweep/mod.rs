//! Sweeps: a grid of run configs ([`grid`]) run locally as child processes ([`local`]) or as a
//! Slurm job array ([`slurm`]). Run directories are the source of truth:
//!
//! ```text
//! OUT/runs/<preset>-<run id>/  config.toml  metrics.jsonl  summary.json  checkpoint.safetensors
//!                              sweep.json (index, preset, label, point)  log.txt
//!                              running.json (while a process trains it)  failed.json (error)
//! OUT/results.sqlite           the index (see crate::results)
//! ```
//!
//! Every run is executed by `zoology sweep run-one SWEEP --index i` ([`run_one`]): it resumes
//! from a checkpoint when one exists, returns at once when summary.json exists, records errors
//! in failed.json, and upserts its row into the index when it ends.

pub mod grid;
pub mod local;
pub mod slurm;

pub use grid::{RunSpec, Sweep};

use crate::error::{io_err, Error, Result};
use crate::train::metrics::{self, write_atomic};
use crate::train::{train, TrainOptions};
use serde::{Deserialize, Serialize};
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

/// What a run directory says about its run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// No directory or nothing trained yet.
    Pending,
    /// A process is training it now (running.json names a live process, or a Slurm task).
    Running,
    /// Has a checkpoint but no summary: resumes from it.
    Interrupted,
    Done,
    /// Diverged (summary status) or failed (failed.json): the reason.
    Failed(String),
}

impl RunState {
    pub fn word(&self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
            RunState::Done => "done",
            RunState::Failed(_) => "failed",
        }
    }
    pub fn is_finished(&self) -> bool {
        matches!(self, RunState::Done | RunState::Failed(_))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningMarker {
    pub pid: u32,
    pub host: String,
    pub started: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedMarker {
    pub reason: String,
    pub time: f64,
}

/// Sweep metadata stored with each run (read by the results index).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepMeta {
    pub sweep: String,
    pub index: usize,
    pub preset: String,
    pub label: String,
    pub point: toml::Table,
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// A live (not zombie) process on this host.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()).map(|c| c != 'Z' && c != 'X').unwrap_or(false),
        Err(_) => false,
    }
}

/// Reads the state of one run directory.
pub fn run_state(dir: &Path) -> RunState {
    if let Ok(s) = metrics::read_summary(dir) {
        return if s.status == "done" { RunState::Done } else { RunState::Failed(format!("{} (final loss {})", s.status, s.final_loss)) };
    }
    if let Ok(t) = std::fs::read_to_string(dir.join("failed.json")) {
        let reason = serde_json::from_str::<FailedMarker>(&t).map(|f| f.reason).unwrap_or(t);
        return RunState::Failed(reason);
    }
    if let Ok(t) = std::fs::read_to_string(dir.join("running.json")) {
        if let Ok(m) = serde_json::from_str::<RunningMarker>(&t) {
            // On another host we cannot check the pid: trust the marker.
            if m.host != hostname() || pid_alive(m.pid) {
                return RunState::Running;
            }
        }
    }
    if dir.join(crate::train::checkpoint::FILE).exists() {
        return RunState::Interrupted;
    }
    RunState::Pending
}

/// Clears a failed run so it runs again: a diverged run restarts from scratch (same config,
/// so resuming would diverge again at the same step only if nothing changed); a failed one
/// resumes from its checkpoint.
pub fn reset_failed(dir: &Path) -> Result<()> {
    if let Ok(s) = metrics::read_summary(dir) {
        if s.status != "done" {
            for f in ["summary.json", crate::train::checkpoint::FILE, "metrics.jsonl"] {
                let _ = std::fs::remove_file(dir.join(f));
            }
        }
    }
    let _ = std::fs::remove_file(dir.join("failed.json"));
    Ok(())
}

/// Trains run `index` of the sweep into `out` (resuming when possible), records failures, and
/// upserts the run's row into `out/results.sqlite`. Returns the final state.
/// `device` overrides the config's device (not part of the run id).
pub fn run_one(sweep: &Sweep, index: usize, out: &Path, threads: Option<usize>, device: Option<&str>, quiet: bool) -> Result<RunState> {
    let spec = sweep.runs.get(index).ok_or_else(|| {
        Error::Other(format!("--index {index} is out of range: {} has {} runs (0..{})", sweep.path.display(), sweep.runs.len(), sweep.runs.len()))
    })?;
    let dir = run_dir(out, spec);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let state = run_state(&dir);
    if state.is_finished() {
        return Ok(state);
    }
    if state == RunState::Running {
        return Err(Error::Other(format!("{} is being trained by another process (running.json); not starting a second one", dir.display())));
    }
    let meta = SweepMeta {
        sweep: sweep.name.clone(),
        index,
        preset: spec.preset.clone(),
        label: spec.label(),
        point: spec.point.iter().cloned().collect(),
    };
    write_atomic(&dir.join("sweep.json"), serde_json::to_string_pretty(&meta).unwrap().as_bytes())?;
    let marker = RunningMarker { pid: std::process::id(), host: hostname(), started: now() };
    write_atomic(&dir.join("running.json"), serde_json::to_string(&marker).unwrap().as_bytes())?;
    let mut cfg = spec.config.clone();
    if let Some(t) = threads {
        cfg.threads = t;
    }
    if let Some(d) = device {
        cfg.device = crate::device::DeviceSpec(d.to_string());
    }
    let resume = dir.join("config.toml").exists();
    let result = train(&cfg, &TrainOptions { out_dir: dir.clone(), resume, quiet, label: format!("[{index}] {}", spec.label()) });
    if let Err(e) = &result {
        let f = FailedMarker { reason: e.to_string(), time: now() };
        write_atomic(&dir.join("failed.json"), serde_json::to_string_pretty(&f).unwrap().as_bytes())?;
    }
    let _ = std::fs::remove_file(dir.join("running.json"));
    let index_path = out.join(crate::results::INDEX_FILE);
    let idx = crate::results::index::Index::open(&index_path)?;
    idx.upsert(&crate::results::index::RunRecord::from_dir(&dir)?)?;
    match result {
        Ok(_) => Ok(run_state(&dir)),
        Err(e) => Err(e),
    }
}

/// Counts of run states.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub pending: usize,
    pub running: usize,
    pub interrupted: usize,
    pub done: usize,
    pub failed: usize,
}

pub fn tally(sweep: &Sweep, out: &Path) -> (Tally, Vec<RunState>) {
    let mut t = Tally::default();
    let states: Vec<RunState> = sweep.runs.iter().map(|r| run_state(&run_dir(out, r))).collect();
    for s in &states {
        match s {
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
