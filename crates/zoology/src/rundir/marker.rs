//! Who is training a run: the directory lock, running.json and its heartbeat, failed.json.
//!
//! - `train.lock` is `flock(2)`ed (exclusive, non-blocking) by the one process that trains the
//!   run, for as long as it trains it; a second trainer is refused. The kernel drops the lock
//!   when the process dies, however it dies.
//! - `running.json` names that process (pid, host, start time, Slurm job) and carries a
//!   heartbeat the trainer rewrites every `ZOOLOGY_HEARTBEAT_S` seconds (default 30).
//! - A reader decides whether a running.json is alive ([`liveness`]): if it names a Slurm job
//!   and `squeue` answers, the job must be in the queue in a live state (so a task killed by
//!   its time limit, `scancel` or a node failure is seen as gone from any host); else, on the
//!   same host, the pid must be alive; else (another host, no Slurm) the heartbeat must be
//!   younger than `ZOOLOGY_STALE_AFTER_S` seconds (default 600).

use super::{hostname, now, write_atomic, FAILED, LOCK, RUNNING};
use crate::error::{io_err, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunningMarker {
    pub pid: u32,
    pub host: String,
    pub started: f64,
    /// Last time (Unix seconds, the writer's clock) the trainer said it was alive.
    #[serde(default)]
    pub heartbeat: f64,
    /// `SLURM_JOB_ID` of the task (unique per array task), when run under Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job_id: Option<String>,
    /// `SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID`, for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_task: Option<String>,
}

impl RunningMarker {
    /// A marker for this process (with the Slurm job from the environment, if any).
    pub fn for_this_process() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let slurm_task = match (env("SLURM_ARRAY_JOB_ID"), env("SLURM_ARRAY_TASK_ID")) {
            (Some(a), Some(t)) => Some(format!("{a}_{t}")),
            _ => None,
        };
        let t = now();
        RunningMarker {
            pid: std::process::id(),
            host: hostname(),
            started: t,
            heartbeat: t,
            slurm_job_id: env("SLURM_JOB_ID"),
            slurm_task,
        }
    }
    pub fn read(dir: &Path) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(RUNNING)).ok()?).ok()
    }
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(RUNNING), serde_json::to_string(self).unwrap_or_default().as_bytes())
    }
    pub fn describe(&self) -> String {
        let slurm = self.slurm_job_id.as_ref().map(|j| format!(", Slurm job {j}")).unwrap_or_default();
        format!("pid {} on {}{slurm}, started {:.0} s ago", self.pid, self.host, (now() - self.started).max(0.0))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedMarker {
    pub reason: String,
    pub time: f64,
    #[serde(default)]
    pub host: String,
}

impl FailedMarker {
    pub fn read(dir: &Path) -> Option<Self> {
        let t = std::fs::read_to_string(dir.join(FAILED)).ok()?;
        Some(serde_json::from_str(&t).unwrap_or(FailedMarker {
            reason: t.trim().to_string(),
            time: 0.0,
            host: String::new(),
        }))
    }
}

fn env_secs(key: &str, default: f64) -> f64 {
    std::env::var(key).ok().and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v > 0.0).unwrap_or(default)
}

/// Seconds between heartbeats (`ZOOLOGY_HEARTBEAT_S`, default 30).
pub fn heartbeat_interval() -> Duration {
    Duration::from_secs_f64(env_secs("ZOOLOGY_HEARTBEAT_S", 30.0))
}

/// Heartbeat age after which a marker on another host without Slurm is stale
/// (`ZOOLOGY_STALE_AFTER_S`, default 600).
pub fn stale_after() -> f64 {
    env_secs("ZOOLOGY_STALE_AFTER_S", 600.0)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    Alive(String),
    Dead(String),
}

/// A live (not zombie) process on this host.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .map(|c| c != 'Z' && c != 'X')
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Slurm job states in which the job's processes may still run.
fn slurm_state_alive(state: &str) -> bool {
    matches!(
        state,
        "RUNNING"
            | "PENDING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "STOPPED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
    )
}

type Queue = Option<HashMap<String, String>>;
static SQUEUE: Mutex<Option<(Instant, Queue)>> = Mutex::new(None);

/// Job id → state of this user's jobs in `squeue` (array tasks expanded), cached for 2 s;
/// `None` when squeue is absent or fails.
pub fn squeue_jobs() -> Queue {
    let mut cache = SQUEUE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((t, q)) = cache.as_ref() {
        if t.elapsed() < Duration::from_secs(2) {
            return q.clone();
        }
    }
    let mut cmd = std::process::Command::new("squeue");
    cmd.args(["-h", "-r", "-o", "%A %T"]);
    if let Ok(u) = std::env::var("USER") {
        if !u.is_empty() {
            cmd.args(["-u", &u]);
        }
    }
    let q = cmd.stderr(std::process::Stdio::null()).output().ok().filter(|o| o.status.success()).map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect::<HashMap<_, _>>()
    });
    *cache = Some((Instant::now(), q.clone()));
    q
}

/// Whether the process a running.json names is still training (see the module doc).
pub fn liveness(m: &RunningMarker, dir: &Path) -> Liveness {
    if let Some(job) = &m.slurm_job_id {
        if let Some(q) = squeue_jobs() {
            return match q.get(job) {
                Some(st) if slurm_state_alive(st) => Liveness::Alive(format!("Slurm job {job} is {st}")),
                Some(st) => Liveness::Dead(format!("Slurm job {job} is {st}")),
                None => Liveness::Dead(format!(
                    "Slurm job {job} is no longer in squeue (ended, cancelled, timed out or its node failed)"
                )),
            };
        }
    }
    if m.host == hostname() {
        return if pid_alive(m.pid) {
            Liveness::Alive(format!("pid {} is alive", m.pid))
        } else {
            Liveness::Dead(format!("pid {} on this host has exited", m.pid))
        };
    }
    let mtime = std::fs::metadata(dir.join(RUNNING))
        .and_then(|md| md.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let age = now() - m.heartbeat.max(mtime);
    let limit = stale_after();
    if age <= limit {
        Liveness::Alive(format!("heartbeat {age:.0} s ago"))
    } else {
        Liveness::Dead(format!("no heartbeat from {} for {age:.0} s (> {limit:.0} s, ZOOLOGY_STALE_AFTER_S)", m.host))
    }
}

/// The exclusive lock on a run directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub dir: PathBuf,
}

impl RunLock {
    /// Takes the lock, or returns `None` when another process holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<RunLock>> {
        let path = dir.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(Error::Other(format!(
                "{}: cannot lock ({e}); the filesystem may not support flock",
                path.display()
            )));
        }
        Ok(Some(RunLock { _file: file, dir: dir.to_path_buf() }))
    }

    /// Takes the lock or fails with an error that names the holder.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        match Self::try_acquire(dir)? {
            Some(l) => Ok(l),
            None => Err(busy_error(dir)),
        }
    }
}

/// The error for a run directory another process trains.
pub fn busy_error(dir: &Path) -> Error {
    let who = RunningMarker::read(dir).map(|m| format!(" ({})", m.describe())).unwrap_or_default();
    Error::Busy(format!(
        "{} is being trained by another process{who}; wait for it to end or stop it first",
        dir.display()
    ))
}

/// Writes running.json now and rewrites its heartbeat from a background thread until
/// [`Heartbeat::stop`] (or drop), which removes running.json.
pub struct Heartbeat {
    dir: PathBuf,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(dir: &Path, lock: &RunLock) -> Result<Heartbeat> {
        Self::start_every(dir, lock, heartbeat_interval())
    }

    pub fn start_every(dir: &Path, _lock: &RunLock, every: Duration) -> Result<Heartbeat> {
        let mut marker = RunningMarker::for_this_process();
        marker.write(dir)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (d, s) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let (flag, cv) = &*s;
                let mut stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let (g, _) = cv.wait_timeout(stopped, every).unwrap_or_else(|p| p.into_inner());
                    stopped = g;
                    if *stopped {
                        break;
                    }
                    marker.heartbeat = now();
                    let _ = marker.write(&d); // a missed beat is not worth failing the run
                }
            })
            .map_err(|e| Error::Other(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Heartbeat { dir: dir.to_path_buf(), stop, thread: Some(thread) })
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let (flag, cv) = &*self.stop;
            *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
            let _ = t.join();
            let _ = std::fs::remove_file(self.dir.join(RUNNING));
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zoology-marker-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let d = tmp("lock");
        let a = RunLock::try_acquire(&d).unwrap();
        assert!(a.is_some());
        // a second open file description in the same process conflicts, as another process would
        assert!(RunLock::try_acquire(&d).unwrap().is_none());
        let e = RunLock::acquire(&d).unwrap_err().to_string();
        assert!(e.contains("being trained by another process"), "{e}");
        drop(a);
        assert!(RunLock::try_acquire(&d).unwrap().is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn liveness_by_pid_on_this_host_and_by_heartbeat_elsewhere() {
        let d = tmp("live");
        let mut m = RunningMarker::for_this_process();
        m.slurm_job_id = None;
        m.write(&d).unwrap();
        assert!(matches!(liveness(&m, &d), Liveness::Alive(_)));
        m.pid = u32::MAX - 7; // no such process
        assert!(matches!(liveness(&m, &d), Liveness::Dead(_)));
        // another host: only the heartbeat (and the file's mtime) can tell
        m.host = "some-other-node".into();
        m.heartbeat = now();
        assert!(matches!(liveness(&m, &d), Liveness::Alive(_)));
        m.heartbeat = now() - 10.0 * stale_after();
        let old = std::time::SystemTime::now() - Duration::from_secs_f64(10.0 * stale_after());
        std::fs::File::options().write(true).open(d.join(RUNNING)).unwrap().set_modified(old).unwrap();
        match liveness(&m, &d) {
            Liveness::Dead(why) => assert!(why.contains("no heartbeat"), "{why}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn heartbeat_rewrites_the_marker_and_removes_it_when_stopped() {
        let d = tmp("beat");
        let lock = RunLock::acquire(&d).unwrap();
        let mut hb = Heartbeat::start_every(&d, &lock, Duration::from_millis(50)).unwrap();
        let first = RunningMarker::read(&d).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let later = RunningMarker::read(&d).unwrap();
        assert!(later.heartbeat > first.heartbeat, "{first:?} {later:?}");
        assert_eq!(later.started, first.started);
        hb.stop();
        assert!(!d.join(RUNNING).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
