//! End-to-end sweep tests through the `zoology` binary: a local sweep killed mid-way and
//! re-run ends with exactly one result per run; a sweep through a real Slurm (skipped with a
//! printed reason when `sbatch` is absent; `.ci/run` installs and starts one).

mod common;
use common::tmpdir;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_zoology");

/// A tiny sweep: 4 runs of a few hundred steps, checkpointing often.
fn tiny_sweep(name: &str, epochs: usize) -> String {
    format!(
        r#"
seed = 7
[data]
vocab_size = 64
batch_size = 16
[[data.train]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 480
[[data.test]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 64
[model]
d_model = 16
n_layers = 2
state_mixer = "identity"
[train]
epochs = {epochs}
lr = 3e-3
early_stop_accuracy = 2.0
checkpoint_every_steps = 10
log_every_steps = 10
[sweep]
name = "{name}"
"train.lr" = [1e-3, 3e-3]
[sweep.mixers.attention]
mixer = {{ name = "attention", num_heads = 1 }}
[sweep.mixers.base_conv]
mixer = {{ name = "base_conv", kernel_size = [3, -1] }}
"#
    )
}

fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Eval lines of a run's metrics.jsonl: their epochs must be 1..=n, each once.
fn eval_epochs(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "eval")
        .map(|v| v["epoch"].as_u64().unwrap())
        .collect()
}

fn check_complete(out: &Path, runs: usize, epochs: u64) {
    let dirs = run_dirs(out);
    assert_eq!(dirs.len(), runs, "one directory per run: {dirs:?}");
    for d in &dirs {
        let s: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join("summary.json"))
                .unwrap_or_else(|_| panic!("{} has no summary.json", d.display())),
        )
        .unwrap();
        assert_eq!(s["status"], "done", "{}", d.display());
        assert_eq!(s["epochs"].as_u64(), Some(epochs), "{}", d.display());
        assert_eq!(
            eval_epochs(d),
            (1..=epochs).collect::<Vec<_>>(),
            "{}: each epoch evaluated exactly once",
            d.display()
        );
        assert!(!d.join("running.json").exists() && !d.join("failed.json").exists());
    }
    // the index: exactly one row per run
    let o = Command::new(EXE).args(["results", "show", "--json"]).arg(out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.len(), runs, "index rows");
    let mut ids: Vec<&str> = rows.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), runs);
    assert!(rows.iter().all(|r| r["status"] == "done" && r["best_accuracy"].as_f64().is_some()));
}

#[test]
fn local_sweep_killed_midway_resumes_to_one_result_per_run() {
    let dir = tmpdir("sweep-kill");
    let sweep = dir.join("tiny.toml");
    std::fs::write(&sweep, tiny_sweep("tiny-kill", 4)).unwrap();
    let out = dir.join("out");
    let plan = Command::new(EXE).args(["sweep", "plan"]).arg(&sweep).output().unwrap();
    assert!(String::from_utf8_lossy(&plan.stdout).contains("4 runs"), "{}", String::from_utf8_lossy(&plan.stdout));

    // Start, wait for the first checkpoint, then SIGKILL the whole process group.
    let mut child = Command::new(EXE)
        .args(["sweep", "run", "--workers", "2", "--threads", "1", "-q", "--out"])
        .arg(&out)
        .arg(&sweep)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let has_ckpt = run_dirs(&out).iter().any(|d| d.join("checkpoint.safetensors").exists());
        if has_ckpt || start.elapsed() > Duration::from_secs(120) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pgid = child.id();
    let killed = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status().unwrap();
    assert!(killed.success());
    let _ = child.wait();
    let finished_before = run_dirs(&out).iter().filter(|d| d.join("summary.json").exists()).count();
    assert!(finished_before < 4, "the sweep finished before it could be killed; make the tiny sweep longer");
    // Nothing is training now; markers of killed runs name dead processes.
    let st = Command::new(EXE).args(["sweep", "status", "--out"]).arg(&out).arg(&sweep).output().unwrap();
    let st = String::from_utf8_lossy(&st.stdout).to_string();
    assert!(st.contains("0 running"), "{st}");

    // Re-run: finishes everything, skipping and resuming.
    let o = Command::new(EXE)
        .args(["sweep", "run", "--workers", "2", "--threads", "1", "-q", "--out"])
        .arg(&out)
        .arg(&sweep)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    check_complete(&out, 4, 4);
    // A third run does nothing and duplicates nothing.
    let o = Command::new(EXE).args(["sweep", "run", "-q", "--out"]).arg(&out).arg(&sweep).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("ran 0") && text.contains("skipped 4"), "{text}");
    check_complete(&out, 4, 4);
    // best over lr: one row per mixer
    let o = Command::new(EXE).args(["results", "show", "--best-over", "lr", "--csv"]).arg(&out).output().unwrap();
    let csv = String::from_utf8_lossy(&o.stdout);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // plots and report
    let o = Command::new(EXE).arg("report").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("plots/figure2.png").exists() && out.join("plots/figure2.svg").exists());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Best over learning rate") && html.contains("base_conv"));
    // one mixer's plots, and an unknown name refused with the names there are
    let only = dir.join("only-base-conv");
    let o = Command::new(EXE)
        .args(["plot", "--no-curves", "--mixers", "base_conv", "--out"])
        .arg(&only)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the legend's names are text lines of their own in the SVG
    let names = |p: PathBuf| -> Vec<String> {
        let svg = std::fs::read_to_string(p).unwrap();
        svg.lines().map(|l| l.trim().to_string()).filter(|l| l == "base_conv" || l == "attention").collect()
    };
    assert_eq!(names(only.join("figure2.svg")), ["base_conv"]);
    assert_eq!(names(out.join("plots/figure2.svg")), ["attention", "base_conv"]);
    let o =
        Command::new(EXE).args(["plot", "--mixers", "base_conv,mamba", "--out"]).arg(&only).arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--mixers: no run of mamba"), "{err}");
    assert!(err.contains("the mixers there are: attention, base_conv"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether a Slurm cluster can run the test now; prints why not (the test is then skipped).
fn slurm_ready(test: &str) -> bool {
    if Command::new("sbatch").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        println!("SKIPPED {test}: `sbatch` is not on PATH (run .ci/slurm-setup.sh to start a one-node Slurm)");
        return false;
    }
    let ok = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).contains("idle") || String::from_utf8_lossy(&o.stdout).contains("mix")
        })
        .unwrap_or(false);
    if !ok {
        println!("SKIPPED {test}: sbatch exists but no Slurm node is idle (is slurmctld/slurmd running? .ci/slurm-setup.sh starts them)");
    }
    ok
}

#[test]
fn slurm_backend_runs_every_run() {
    if !slurm_ready("slurm_backend_runs_every_run") {
        return;
    }
    let dir = tmpdir("sweep-slurm");
    let sweep = dir.join("tiny.toml");
    std::fs::write(
        &sweep,
        tiny_sweep("tiny-slurm", 1) + "[slurm]\ncpus_per_task = 1\nmax_parallel = 2\ntime = \"00:10:00\"\n",
    )
    .unwrap();
    let out = dir.join("out");
    let mut child = Command::new(EXE)
        .args(["sweep", "run", "--backend", "slurm", "--wait", "--out"])
        .arg(&out)
        .arg(&sweep)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = Command::new("scancel").args(["-n", "zoology-tiny-slurm"]).status();
            let logs: Vec<String> = std::fs::read_dir(out.join("slurm"))
                .map(|rd| {
                    rd.filter_map(|e| e.ok()).map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect()
                })
                .unwrap_or_default();
            panic!("the Slurm array did not finish in 240 s; logs:\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("submitted job array"), "{text}");
    let script = std::fs::read_to_string(out.join("slurm/sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2") && script.contains("run-one"), "{script}");
    check_complete(&out, 4, 1);
    let st = Command::new(EXE).args(["sweep", "status", "--out"]).arg(&out).arg(&sweep).output().unwrap();
    let st = String::from_utf8_lossy(&st.stdout).to_string();
    assert!(st.contains("4 done"), "{st}");
    // Submitting again has nothing to do.
    let o =
        Command::new(EXE).args(["sweep", "run", "--backend", "slurm", "--out"]).arg(&out).arg(&sweep).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to submit"), "{}", String::from_utf8_lossy(&o.stdout));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run that fails is recorded with its reason, the sweep goes on, a plain re-run leaves it
/// failed, and `--retry-failed` trains it again: one result per run, one index row per run.
#[test]
fn failed_run_is_recorded_skipped_and_retried_with_retry_failed() {
    let dir = tmpdir("sweep-retry");
    let sweep = dir.join("tiny.toml");
    std::fs::write(&sweep, tiny_sweep("tiny-retry", 2)).unwrap();
    let out = dir.join("out");
    let zoology = |args: &[&str], code: i32| {
        let o = Command::new(EXE).args(args).arg("--out").arg(&out).arg(&sweep).output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };
    // Make run 0 fail: a directory where its metrics.jsonl must be written.
    let plan = Command::new(EXE).args(["sweep", "plan"]).arg(&sweep).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout).to_string();
    let id0 = plan
        .lines()
        .find_map(|l| {
            l.split_whitespace().collect::<Vec<_>>().get(..2).filter(|w| w[0] == "0").map(|w| w[1].to_string())
        })
        .unwrap();
    let blocked = out.join("runs").join(format!("attention-{id0}"));
    std::fs::create_dir_all(blocked.join("metrics.jsonl")).unwrap();

    // a sweep with a failed run exits 2
    let text = zoology(&["sweep", "run", "--workers", "2", "--threads", "1", "-q"], 2);
    assert!(text.contains("3 done, 1 failed") && text.contains("Is a directory"), "{text}");
    let st = zoology(&["sweep", "status"], 0);
    assert!(st.contains("3 done, 1 failed"), "{st}");
    assert!(blocked.join("failed.json").exists());
    // A plain re-run does not retry it.
    let text = zoology(&["sweep", "run", "-q"], 2);
    assert!(text.contains("ran 0") && text.contains("skipped 4"), "{text}");
    // Remove the cause; --retry-failed trains it and the sweep is complete.
    std::fs::remove_dir(blocked.join("metrics.jsonl")).unwrap();
    let text = zoology(&["sweep", "run", "--retry-failed", "-q"], 0);
    assert!(text.contains("ran 1 (1 done, 0 failed)") && text.contains("skipped 3"), "{text}");
    check_complete(&out, 4, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Rewrites a run's running.json as if another node had written it (a host where no pid can be
/// checked), with a fresh heartbeat: only Slurm can then tell whether its task still runs.
fn as_if_from_another_node(run: &Path) -> serde_json::Value {
    let p = run.join("running.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    m["host"] = "node-that-went-away".into();
    m["heartbeat"] = now().into();
    std::fs::write(&p, m.to_string()).unwrap();
    m
}

fn squeue_has(job: &str) -> bool {
    let o = Command::new("squeue").args(["-h", "-j", job, "-o", "%i"]).output().unwrap();
    o.status.success() && !String::from_utf8_lossy(&o.stdout).trim().is_empty()
}

/// A Slurm task cancelled mid-run (as a time limit or a node failure would) leaves a
/// running.json behind. Readers must not trust it forever: its Slurm job is gone from squeue, so
/// `sweep status` shows the run interrupted, and submitting again resumes it to the end.
#[test]
fn slurm_task_cancelled_mid_run_is_detected_and_resubmitted() {
    if !slurm_ready("slurm_task_cancelled_mid_run_is_detected_and_resubmitted") {
        return;
    }
    let dir = tmpdir("sweep-scancel");
    let sweep = dir.join("one.toml");
    let text = tiny_sweep("tiny-scancel", 4)
        .replace("num_examples = 480", "num_examples = 2400")
        .replace("[sweep.mixers.base_conv]\nmixer = { name = \"base_conv\", kernel_size = [3, -1] }\n", "")
        .replace("\"train.lr\" = [1e-3, 3e-3]", "\"train.lr\" = [3e-3]");
    std::fs::write(&sweep, text + "[slurm]\ncpus_per_task = 1\ntime = \"00:10:00\"\n").unwrap();
    let out = dir.join("out");
    let status = || {
        let o = Command::new(EXE).args(["sweep", "status", "-v", "--out"]).arg(&out).arg(&sweep).output().unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // the trainer's heartbeat must not rewrite the marker this test edits
    // ... and each step is slowed so that the cancel lands mid-run on a fast or a loaded machine
    // (without it the run could finish between its first checkpoint and the scancel)
    let o = Command::new(EXE)
        .args(["sweep", "run", "--backend", "slurm", "--out"])
        .arg(&out)
        .arg(&sweep)
        .env("ZOOLOGY_HEARTBEAT_S", "3600")
        .env("ZOOLOGY_STEP_DELAY_MS", "20")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success() && said.contains("submitted job array") && said.contains("1 tasks"),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let job = std::fs::read_to_string(out.join("slurm/jobs.txt")).unwrap().lines().next().unwrap().trim().to_string();
    let t0 = Instant::now();
    let run = loop {
        let run = run_dirs(&out).into_iter().next();
        if let Some(r) = run.filter(|r| r.join("checkpoint.safetensors").exists() && r.join("running.json").exists()) {
            break r;
        }
        if t0.elapsed() > Duration::from_secs(240) || (t0.elapsed() > Duration::from_secs(5) && !squeue_has(&job)) {
            let _ = Command::new("scancel").arg(&job).status();
            panic!("the task never checkpointed while running (job {job}); logs in {}", out.join("slurm").display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // a live task on "another node": Slurm says it runs, so the run is running
    let m = as_if_from_another_node(&run);
    assert!(m["slurm_job_id"].as_str().is_some(), "the marker names the Slurm task: {m}");
    let st = status();
    assert!(st.contains("1 running"), "{st}");
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    let t0 = Instant::now();
    while squeue_has(&job) {
        assert!(t0.elapsed() < Duration::from_secs(60), "scancel did not end job {job}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        run.join("running.json").exists() && !run.join("summary.json").exists(),
        "the cancelled task left its marker (what a time limit or a node failure leaves)"
    );
    as_if_from_another_node(&run);
    let st = status();
    assert!(st.contains("0 running") && st.contains("1 interrupted") && st.contains("no longer in squeue"), "{st}");
    // submitting again resumes it from its checkpoint to the end
    let o = Command::new(EXE)
        .args(["sweep", "run", "--backend", "slurm", "--wait", "--wait-timeout", "300", "--out"])
        .arg(&out)
        .arg(&sweep)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
    assert!(said.contains("submitted job array") && said.contains("1 done, 0 failed"), "{said}");
    assert_eq!(eval_epochs(&run), vec![1, 2, 3, 4], "each epoch evaluated once across the cancel and the resubmission");
    assert!(!run.join("running.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `zoology ARGS --out OUT SWEEP`: its exit code and its stdout and stderr together.
fn zoology_on(out: &Path, sweep: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(EXE).args(args).arg("--out").arg(out).arg(sweep).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code(), text)
}

/// A ladder over d_model (listed out of order) for two learning rates: with threshold 0 (any
/// finished run solves), only each ladder's lowest rung trains, even with two workers (the next
/// rung waits for it); the skipped rungs have no directory, count as finished, and a file with a
/// threshold no run reaches (same run ids) trains them on the same output directory.
#[test]
fn ladder_trains_rungs_lowest_first_and_skips_above_a_solved_one() {
    let dir = tmpdir("sweep-ladder");
    let out = dir.join("out");
    let write = |name: &str, threshold: &str| {
        let text = tiny_sweep("tiny-ladder", 1)
            .replace("\"train.lr\" = [1e-3, 3e-3]", "\"train.lr\" = [1e-3, 3e-3]\n\"model.d_model\" = [24, 8, 16]")
            .replace("[sweep.mixers.attention]\nmixer = { name = \"attention\", num_heads = 1 }\n", "")
            + &format!("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = {threshold}\n");
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let low = write("low.toml", "0.0");
    let high = write("high.toml", "1.0");
    let zoology = |sweep: &Path, args: &[&str]| zoology_on(&out, sweep, args);
    let (code, text) = zoology(&low, &["sweep", "run", "--workers", "2", "--threads", "1", "-q"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ran 2 (2 done") && text.contains("4 runs skipped: a lower rung"), "{text}");
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2, "only the d = 8 rungs have directories: {dirs:?}");
    for d in &dirs {
        let cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
        assert!(cfg.contains("d_model = 8"), "{}: {cfg}", d.display());
    }
    let (code, st) = zoology(&low, &["sweep", "status", "--verbose"]);
    assert_eq!(code, Some(0), "{st}");
    assert!(
        st.contains("2 done")
            && st.contains("0 pending, 4 skipped")
            && st.contains("d=8")
            && st.contains("solved at best accuracy"),
        "{st}"
    );
    assert_eq!(st.matches("  ladder base_conv lr=").count(), 2, "one line per ladder: {st}");
    assert!(st.contains(": solved at d=8 (") && st.contains("); 2 wider skipped"), "{st}");
    // `run-one` on a skipped rung trains nothing
    let (code, one) = zoology(&low, &["sweep", "run-one", "--index", "5", "-q"]);
    assert_eq!(code, Some(0), "{one}");
    assert!(one.contains("skipped: ["), "{one}");
    assert_eq!(run_dirs(&out).len(), 2);
    // the same runs under a threshold nobody reaches: the skipped rungs train now
    let (code, text) = zoology(&high, &["sweep", "run", "--workers", "2", "--threads", "1", "-q"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ran 4 (4 done") && text.contains("skipped 2 already finished"), "{text}");
    check_complete(&out, 6, 1);
    let (_, st) = zoology(&high, &["sweep", "status"]);
    assert_eq!(st.matches(": not solved up to d=24 (best ").count(), 2, "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `harder` (the key along which the task gets harder): with a threshold no run reaches, the
/// L = 16 ladder (d = 8, 16) trains in full and the whole L = 24 ladder is skipped without a
/// directory, even with two workers (its rungs wait for the easier ladder's); `sweep status`
/// says why; the same file without `harder` (same run ids) then trains the L = 24 ladder.
#[test]
fn a_harder_setting_is_skipped_when_the_easier_ladder_never_solved() {
    let dir = tmpdir("sweep-harder");
    let out = dir.join("out");
    let write = |name: &str, harder: &str| {
        let text = tiny_sweep("tiny-harder", 1)
            .replace(
                "\"train.lr\" = [1e-3, 3e-3]",
                "\"model.d_model\" = [16, 8]\n[[sweep.zip]]\n\"data.train.0.seq_len\" = [24, 16]\n\"data.train.0.num_kv_pairs\" = [3, 2]",
            )
            .replace("[sweep.mixers.attention]\nmixer = { name = \"attention\", num_heads = 1 }\n", "")
            + &format!("[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 1.0\n{harder}");
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let harder = write("harder.toml", "harder = \"data.train.0.seq_len\"\n");
    let plain = write("plain.toml", "");
    let zoology = |sweep: &Path, args: &[&str]| zoology_on(&out, sweep, args);
    let (code, text) = zoology(&harder, &["sweep", "run", "--workers", "2", "--threads", "1", "-q"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ran 2 (2 done") && text.contains("2 runs skipped: a lower rung"), "{text}");
    assert!(text.contains("or an easier setting's ladder never did"), "{text}");
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2, "only the L = 16 ladder has directories: {dirs:?}");
    for d in &dirs {
        let cfg = std::fs::read_to_string(d.join("config.toml")).unwrap();
        assert!(cfg.contains("seq_len = 16"), "{}: {cfg}", d.display());
    }
    let (code, st) = zoology(&harder, &["sweep", "status"]);
    assert_eq!(code, Some(0), "{st}");
    assert!(st.contains(": not solved up to d=16 (best "), "{st}");
    assert!(st.contains(": skipped: base_conv") && st.contains("did not solve up to d=16"), "{st}");
    assert!(st.contains("and a larger data.train.0.seq_len is harder"), "{st}");
    // without `harder` the same runs are pending, and train
    let (code, text) = zoology(&plain, &["sweep", "run", "--workers", "2", "--threads", "1", "-q"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ran 2 (2 done") && text.contains("skipped 2 already finished"), "{text}");
    check_complete(&out, 4, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rung whose lower rung another process trains waits for that run: here the "other process"
/// is a `sleep` named by the lowest rung's running.json. The sweep trains the other ladder, then
/// waits (the rung above must not start); when the other process dies without a result, the
/// rung comes back into this sweep's queue, is trained, solves, and the rungs above it are
/// skipped.
#[test]
fn ladder_waits_for_a_lower_rung_another_process_trains() {
    let dir = tmpdir("sweep-ladder-elsewhere");
    let out = dir.join("out");
    let text = tiny_sweep("tiny-ladder-elsewhere", 1)
        .replace("\"train.lr\" = [1e-3, 3e-3]", "\"train.lr\" = [1e-3, 3e-3]\n\"model.d_model\" = [24, 8, 16]")
        .replace("[sweep.mixers.attention]\nmixer = { name = \"attention\", num_heads = 1 }\n", "")
        + "[sweep.ladder]\naxis = \"model.d_model\"\nthreshold = 0.0\n";
    let sweep = dir.join("ladder.toml");
    std::fs::write(&sweep, text).unwrap();
    // the lowest rung (d = 8) of the first ladder (lr = 1e-3)
    let o = Command::new(EXE).args(["sweep", "plan"]).arg(&sweep).output().unwrap();
    let plan = String::from_utf8_lossy(&o.stdout).to_string();
    let id = plan
        .lines()
        .find(|l| l.contains("d=8") && l.contains("lr=1e-3"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no d=8 lr=1e-3 run in the plan:\n{plan}"))
        .to_string();
    let low = out.join("runs").join(format!("base_conv-{id}"));
    std::fs::create_dir_all(&low).unwrap();
    let mut other = Command::new("sleep").arg("300").spawn().unwrap();
    let marker = format!(
        r#"{{"pid": {}, "host": "{}", "started": {}, "heartbeat": {}}}"#,
        other.id(),
        zoology::rundir::hostname(),
        now(),
        now()
    );
    std::fs::write(low.join("running.json"), marker).unwrap();
    let log = dir.join("sweep.log");
    let mut run = Command::new(EXE)
        .args(["sweep", "run", "--workers", "1", "--threads", "1", "--out"])
        .arg(&out)
        .arg(&sweep)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let t0 = Instant::now();
    while !read().contains("wait for lower ladder rungs another process trains") {
        assert!(run.try_wait().unwrap().is_none(), "the sweep ended without waiting:\n{}", read());
        assert!(t0.elapsed() < Duration::from_secs(120), "no wait note after 120 s:\n{}", read());
        std::thread::sleep(Duration::from_millis(200));
    }
    // waiting: the other ladder is finished, nothing above the busy rung has started
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2, "the busy rung and the other ladder's d = 8 only: {dirs:?}");
    // the other process dies without a result: the rung is trained here
    other.kill().unwrap();
    other.wait().unwrap();
    let status = run.wait().unwrap();
    let text = read();
    assert!(status.success(), "{text}");
    assert!(text.contains("its other process stopped; training it here"), "{text}");
    assert!(text.contains("ran 2 (2 done") && !text.contains("left alone"), "{text}");
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2, "the wider rungs of both ladders are skipped: {dirs:?}");
    assert!(low.join("summary.json").exists(), "the busy rung was not trained here:\n{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
