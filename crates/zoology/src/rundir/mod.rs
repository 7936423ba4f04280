//! The run-directory protocol: what the files of a run directory mean, who writes them, and how
//! a reader tells a finished, failed, running, interrupted or pending run apart. Training
//! ([`crate::train`]) writes run directories; sweeps ([`crate::sweep`]) and results
//! ([`crate::results`]) read them through this module, which imports neither.
//!
//! ```text
//! DIR/config.toml             the resolved config (every default, mixer options included)
//! DIR/metrics.jsonl           one JSON line per log step / evaluation (append-only)
//! DIR/checkpoint.safetensors  parameters, AdamW state, trainer state; format version, config
//!                             hash, seed and a SHA-256 checksum (train::checkpoint)
//! DIR/summary.json            written once at the end: status "done" or "diverged" (+ reason)
//! DIR/failed.json             an error or panic ended the run: its reason
//! DIR/running.json            pid, host, Slurm job and a heartbeat of the process training it
//! DIR/train.lock              flock(2)ed by the process training the run
//! DIR/sweep.json              sweep name, index, preset, label and point (sweeps only)
//! DIR/log.txt                 the run's stdout/stderr (sweeps only)
//! ```
//!
//! States ([`RunState`]), in order of precedence: a readable summary.json is *done* (status
//! "done") or *failed* (status "diverged", with its reason); failed.json is *failed*;
//! running.json whose process is alive is *running* ([`marker`] says how liveness is decided
//! across hosts); otherwise a checkpoint is *interrupted* (resumable) and nothing is *pending*.
//!
//! Layer 7 of 11, **run directories** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod float;
pub mod id;
pub mod marker;
pub mod summary;

pub use id::run_id;
pub use marker::{FailedMarker, Heartbeat, RunLock, RunningMarker};
pub use summary::{read_summary, write_summary, Solved, StopReason, Summary};

use crate::error::{io_err, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const CONFIG: &str = "config.toml";
pub const METRICS: &str = "metrics.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const FAILED: &str = "failed.json";
pub const RUNNING: &str = "running.json";
pub const LOCK: &str = "train.lock";
pub const SWEEP_META: &str = "sweep.json";
pub const LOG: &str = "log.txt";

/// Sweep metadata stored with each run of a sweep (read by the results index).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepMeta {
    pub sweep: String,
    pub index: usize,
    pub preset: String,
    pub label: String,
    pub point: toml::Table,
}

pub fn read_sweep_meta(dir: &Path) -> Option<SweepMeta> {
    std::fs::read_to_string(dir.join(SWEEP_META)).ok().and_then(|t| serde_json::from_str(&t).ok())
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Writes via a temporary file, fsync and a rename, so a reader (or a crash) never sees a
/// half-written file: the old content or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fault_before_rename(path);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// Test hook: `ZOOLOGY_FAULT=kill-before-rename:<file name>` SIGKILLs this process after the
/// temporary copy of that file is written and before it is renamed into place (what a crash
/// at that instant leaves). Unset in normal use.
pub fn fault_before_rename(path: &Path) {
    let Ok(spec) = std::env::var("ZOOLOGY_FAULT") else { return };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if spec.split(',').any(|f| f.trim().strip_prefix("kill-before-rename:") == Some(name)) {
        // SAFETY: sends a signal to this process; nothing is shared.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Is `name` a temporary file of [`write_atomic`] or of a checkpoint save (`.<file>.tmp-<pid>`)?
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.rsplit_once(".tmp-").is_some_and(|(_, pid)| pid.parse::<u32>().is_ok())
}

/// Removes the temporary files a killed writer left in a run directory (its summary, config or
/// checkpoint half-written, or whole but not yet renamed). Only the holder of the directory's
/// lock may call it: every writer of a run directory holds that lock. Returns what it removed.
pub fn remove_temporaries(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    let mut removed = vec![];
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        if is_temporary(&name) && e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            if std::fs::remove_file(e.path()).is_ok() {
                removed.push(e.path());
            }
        }
    }
    removed
}

/// When `dir` holds the files of a run other than `run_id` (its config.toml names another run,
/// or cannot be read as one): a description of it. `None` for an empty directory or the same run.
pub fn foreign_run(dir: &Path, this_run: &str) -> Option<String> {
    let path = dir.join(CONFIG);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // no config: no run to protect (a metrics.jsonl alone is a run's leftover, or a
        // fault a test plants; training here records its own failure if it cannot write)
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let id = toml::from_str::<toml::Table>(&text).ok().and_then(|mut t| {
        t.insert("device".into(), toml::Value::String("cpu".into()));
        crate::config::RunConfig::from_table(t).ok().map(|c| run_id(&c))
    });
    match id {
        Some(id) if id == this_run => None,
        Some(id) => Some(format!("its {CONFIG} is run {id}")),
        None => Some(format!("its {CONFIG} cannot be read as a run config")),
    }
}

/// What a run directory says about its run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// No directory, or nothing trained yet.
    Pending,
    /// A live process is training it (running.json; see [`marker::liveness`]).
    Running,
    /// Has a checkpoint but no summary and nobody trains it: resumes from the checkpoint.
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

/// Reads the state of one run directory, with a note when a running.json was found stale
/// (its process is gone: which check said so).
pub fn inspect(dir: &Path) -> (RunState, Option<String>) {
    if dir.join(SUMMARY).exists() {
        match read_summary(dir) {
            Ok(s) => return (s.failure().map(RunState::Failed).unwrap_or(RunState::Done), None),
            Err(e) => return (RunState::Failed(e.to_string()), None),
        }
    }
    if let Some(f) = FailedMarker::read(dir) {
        return (RunState::Failed(f.reason), None);
    }
    let mut note = None;
    if let Some(m) = RunningMarker::read(dir) {
        match marker::liveness(&m, dir) {
            marker::Liveness::Alive(_) => return (RunState::Running, None),
            marker::Liveness::Dead(why) => note = Some(format!("stale running.json: {why}")),
        }
    }
    if dir.join(CHECKPOINT).exists() {
        return (RunState::Interrupted, note);
    }
    (RunState::Pending, note)
}

pub fn run_state(dir: &Path) -> RunState {
    inspect(dir).0
}

/// Records a failure (failed.json), unless the run already has a summary.
pub fn record_failure(dir: &Path, reason: &str) -> Result<()> {
    if dir.join(SUMMARY).exists() {
        return Ok(());
    }
    let f = FailedMarker { reason: reason.to_string(), time: now(), host: hostname() };
    write_atomic(&dir.join(FAILED), serde_json::to_string_pretty(&f).unwrap_or_default().as_bytes())
}
