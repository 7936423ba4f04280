//! Slurm backend: one job array, one array task per unfinished run, `%N` concurrency limit.
//! Each task runs `zoology sweep run-one SWEEP --index $SLURM_ARRAY_TASK_ID --out OUT` and
//! writes only its run directory (on a filesystem the nodes share); the results index is built
//! afterwards by one process (`--wait`, or `zoology results index`). No daemon of our own:
//! Slurm schedules, `sweep status` reads run directories and squeue/sacct.
//!
//! A task that Slurm kills (time limit, `scancel`, node failure) leaves a running.json whose
//! Slurm job is no longer in squeue: readers on any host see the run as interrupted
//! ([`crate::rundir::marker::liveness`]), and the next `sweep run --backend slurm` resubmits it;
//! it resumes from its last checkpoint.

use super::grid::SlurmOptions;
use super::{reset_failed, run_dir, RunState, Sweep};
use crate::error::{io_err, Error, Result};
use crate::rundir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct SlurmSubmit {
    pub out: PathBuf,
    pub exe: PathBuf,
    pub options: SlurmOptions,
    pub retry_failed: bool,
    /// Device for every run (e.g. "cuda"); default: the config's.
    pub device: Option<String>,
    /// Write the script but do not call sbatch.
    pub dry_run: bool,
}

#[derive(Debug)]
pub struct Submitted {
    pub script: PathBuf,
    pub job_id: Option<String>,
    pub indices: Vec<usize>,
    /// Runs left out because a task of this sweep already has them queued or running.
    pub queued: Vec<usize>,
    /// `--retry-failed` notes: (index, what happens to the run).
    pub retried: Vec<(usize, String)>,
    /// Run directories renamed from an older run id.
    pub adopted: Vec<(PathBuf, PathBuf)>,
}

fn abs(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Which runs to submit: the unfinished ones that no live process trains, no task of this
/// sweep has queued and no solved lower ladder rung skips (failed ones too with
/// `retry_failed`, after resetting them). Rungs of one ladder run in parallel in the array; a
/// task that starts after a lower rung solved skips itself (`sweep run-one`).
fn select(sweep: &Sweep, out: &Path, retry_failed: bool) -> Result<(Vec<usize>, Vec<usize>, Vec<(usize, String)>)> {
    let in_queue: Vec<usize> = squeue_states(out)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, st)| st == "PENDING" || st == "RUNNING" || st == "CONFIGURING")
        .map(|(i, _)| i)
        .collect();
    let (mut indices, mut queued, mut retried) = (vec![], vec![], vec![]);
    for r in &sweep.runs {
        let dir = run_dir(out, r);
        match rundir::run_state(&dir) {
            RunState::Done | RunState::Running => {}
            RunState::Failed(_) if !retry_failed => {}
            _ if in_queue.contains(&r.index) => queued.push(r.index),
            RunState::Failed(_) => match reset_failed(&dir, &r.config) {
                Ok(note) => {
                    retried.push((r.index, note));
                    indices.push(r.index);
                }
                Err(Error::Busy(_)) => {}
                Err(e) => return Err(e),
            },
            RunState::Pending | RunState::Interrupted if sweep.ladder_skip(r.index, out).is_some() => {}
            RunState::Pending | RunState::Interrupted => indices.push(r.index),
        }
    }
    Ok((indices, queued, retried))
}

/// Writes the sbatch script for the runs [`select`] picks.
pub fn write_script(sweep: &Sweep, s: &SlurmSubmit) -> Result<(PathBuf, Vec<usize>)> {
    let out = abs(&s.out);
    let (indices, _, _) = select(sweep, &out, s.retry_failed)?;
    write_script_for(sweep, s, &indices).map(|p| (p, indices))
}

fn write_script_for(sweep: &Sweep, s: &SlurmSubmit, indices: &[usize]) -> Result<PathBuf> {
    let out = abs(&s.out);
    let sdir = out.join("slurm");
    std::fs::create_dir_all(&sdir).map_err(io_err(&sdir))?;
    let o = &s.options;
    let array = compress_ranges(indices);
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=zoology-{}", sweep.name),
        format!("#SBATCH --array={array}{}", o.max_parallel.map(|m| format!("%{m}")).unwrap_or_default()),
        format!("#SBATCH --output={}/%A_%a.out", sdir.display()),
        format!("#SBATCH --cpus-per-task={}", o.cpus_per_task.unwrap_or(1)),
    ];
    if let Some(p) = &o.partition {
        lines.push(format!("#SBATCH --partition={p}"));
    }
    if let Some(t) = &o.time {
        lines.push(format!("#SBATCH --time={t}"));
    }
    if let Some(g) = o.gpus {
        lines.push(format!("#SBATCH --gpus={g}"));
    }
    if let Some(m) = &o.mem {
        lines.push(format!("#SBATCH --mem={m}"));
    }
    if let Some(a) = &o.account {
        lines.push(format!("#SBATCH --account={a}"));
    }
    for e in &o.extra {
        lines.push(format!("#SBATCH {e}"));
    }
    lines.push(String::new());
    lines.push("# Written by `zoology sweep run --backend slurm`; the environment of sbatch (LD_LIBRARY_PATH for libtorch) is exported.".into());
    lines.push("set -euo pipefail".into());
    lines.push("export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}".into());
    lines.push(format!(
        "exec {} sweep run-one {} --index \"$SLURM_ARRAY_TASK_ID\" --out {} --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"{} -q",
        quote(&abs(&s.exe)),
        quote(&abs(&sweep.path)),
        quote(&out),
        s.device.as_ref().map(|d| format!(" --device {d}")).unwrap_or_default()
    ));
    let script = sdir.join("sweep.sbatch");
    std::fs::write(&script, lines.join("\n") + "\n").map_err(io_err(&script))?;
    Ok(script)
}

/// `[0,1,2,5,7,8]` → `0-2,5,7-8`.
pub fn compress_ranges(v: &[usize]) -> String {
    let mut parts = vec![];
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if j == i { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    parts.join(",")
}

pub fn submit(sweep: &Sweep, s: &SlurmSubmit) -> Result<Submitted> {
    let out = abs(&s.out);
    let adopted = if s.dry_run { vec![] } else { super::adopt_renamed(sweep, &out)? };
    let (indices, queued, retried) = select(sweep, &out, s.retry_failed)?;
    let script = write_script_for(sweep, s, &indices)?;
    if indices.is_empty() || s.dry_run {
        return Ok(Submitted { script, job_id: None, indices, queued, retried, adopted });
    }
    let o = Command::new("sbatch").arg("--parsable").arg(&script).output().map_err(|e| {
        Error::Other(format!(
            "cannot run sbatch ({e}); is Slurm installed and on PATH? (--backend local runs without it)"
        ))
    })?;
    if !o.status.success() {
        return Err(Error::Other(format!("sbatch failed: {}", String::from_utf8_lossy(&o.stderr).trim())));
    }
    let id = String::from_utf8_lossy(&o.stdout).trim().split(';').next().unwrap_or("").to_string();
    let jobs = out.join("slurm").join("jobs.txt");
    let mut prev = std::fs::read_to_string(&jobs).unwrap_or_default();
    prev.push_str(&format!("{id}\n"));
    rundir::write_atomic(&jobs, prev.as_bytes())?;
    Ok(Submitted { script, job_id: Some(id), indices, queued, retried, adopted })
}

/// How [`wait`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Waited {
    /// The job left the queue.
    Finished,
    /// The timeout passed first; the job keeps running.
    TimedOut,
}

/// Waits until job `id` has left squeue, polling every `poll`, for at most `timeout`.
/// squeue failing 5 times in a row is an error (not an endless wait).
pub fn wait(id: &str, timeout: Duration, poll: Duration) -> Result<Waited> {
    let deadline = Instant::now() + timeout;
    let mut failures = 0;
    loop {
        match Command::new("squeue").args(["-h", "-j", id, "-o", "%i"]).output() {
            Ok(o) if o.status.success() => {
                failures = 0;
                if String::from_utf8_lossy(&o.stdout).trim().is_empty() {
                    return Ok(Waited::Finished);
                }
            }
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("Invalid job id") => return Ok(Waited::Finished),
            other => {
                failures += 1;
                if failures >= 5 {
                    let why = match other {
                        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Other(format!(
                        "squeue failed 5 times in a row while waiting for job {id}: {why}"
                    )));
                }
            }
        }
        if Instant::now() >= deadline {
            return Ok(Waited::TimedOut);
        }
        std::thread::sleep(poll.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(10)));
    }
}

/// Parses a duration: seconds (`90`), or `[[D-]HH:]MM:SS` as Slurm writes times (`2:00:00`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(x) = s.parse::<f64>() {
        return (x.is_finite() && x >= 0.0).then(|| Duration::from_secs_f64(x));
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let secs = match parts.as_slice() {
        [m, s] => m * 60 + s,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(Duration::from_secs(days * 86400 + secs))
}

/// Job ids this sweep submitted (OUT/slurm/jobs.txt).
pub fn job_ids(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("slurm").join("jobs.txt"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Array-task states from squeue (pending/running tasks): `(array index, state)`.
pub fn squeue_states(out: &Path) -> Option<Vec<(usize, String)>> {
    let ids = job_ids(out);
    if ids.is_empty() {
        return Some(vec![]);
    }
    let o = Command::new("squeue").args(["-h", "-r", "-o", "%K %T", "-j", &ids.join(",")]).output().ok()?;
    if !o.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.parse().ok()?, it.next()?.to_string()))
            })
            .collect(),
    )
}

/// `sacct` summary lines of this sweep's jobs (state counts), when sacct works.
pub fn sacct_summary(out: &Path) -> Option<String> {
    let ids = job_ids(out);
    if ids.is_empty() {
        return None;
    }
    let o = Command::new("sacct").args(["-n", "-X", "-P", "-o", "JobID,State", "-j", &ids.join(",")]).output().ok()?;
    if !o.status.success() {
        return None;
    }
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some((_, st)) = l.split_once('|') {
            *counts.entry(st.split_whitespace().next().unwrap_or("").to_string()).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return None;
    }
    Some(counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(super::parse_duration("2:00:00"), Some(Duration::from_secs(7200)));
        assert_eq!(super::parse_duration("1-00:00:01"), Some(Duration::from_secs(86401)));
        assert_eq!(super::parse_duration("5:30"), Some(Duration::from_secs(330)));
        assert_eq!(super::parse_duration("soon"), None);
        assert_eq!(super::parse_duration("-3"), None);
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(super::compress_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(super::compress_ranges(&[3]), "3");
    }
}
