//! Slurm backend: one job array, one array task per unfinished run, `%N` concurrency limit.
//! Each task runs `zoology sweep run-one SWEEP --index $SLURM_ARRAY_TASK_ID --out OUT`; the run
//! directories (on a filesystem shared by the nodes) and the SQLite index are the results.
//! No daemon of our own: Slurm schedules, `sweep status` reads run directories and squeue/sacct.

use super::grid::SlurmOptions;
use super::{run_dir, run_state, reset_failed, RunState, Sweep};
use crate::error::{io_err, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Writes the sbatch script for the runs that are not finished (and not running).
pub fn write_script(sweep: &Sweep, s: &SlurmSubmit) -> Result<(PathBuf, Vec<usize>)> {
    let out = abs(&s.out);
    let mut indices = vec![];
    for r in &sweep.runs {
        let dir = run_dir(&out, r);
        match run_state(&dir) {
            RunState::Done | RunState::Running => {}
            RunState::Failed(_) if !s.retry_failed => {}
            RunState::Failed(_) => {
                reset_failed(&dir)?;
                indices.push(r.index);
            }
            RunState::Pending | RunState::Interrupted => indices.push(r.index),
        }
    }
    let sdir = out.join("slurm");
    std::fs::create_dir_all(&sdir).map_err(io_err(&sdir))?;
    let o = &s.options;
    let array = compress_ranges(&indices);
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
    Ok((script, indices))
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
    let (script, indices) = write_script(sweep, s)?;
    if indices.is_empty() || s.dry_run {
        return Ok(Submitted { script, job_id: None, indices });
    }
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script)
        .output()
        .map_err(|e| Error::Other(format!("cannot run sbatch ({e}); is Slurm installed and on PATH? (--backend local runs without it)")))?;
    if !out.status.success() {
        return Err(Error::Other(format!("sbatch failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
    let jobs = abs(&s.out).join("slurm").join("jobs.txt");
    let mut prev = std::fs::read_to_string(&jobs).unwrap_or_default();
    prev.push_str(&format!("{id}\n"));
    std::fs::write(&jobs, prev).map_err(io_err(&jobs))?;
    Ok(Submitted { script, job_id: Some(id), indices })
}

/// Job ids this sweep submitted (OUT/slurm/jobs.txt).
pub fn job_ids(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("slurm").join("jobs.txt")).unwrap_or_default().lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
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
    fn ranges_compress() {
        assert_eq!(super::compress_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(super::compress_ranges(&[3]), "3");
    }
}
