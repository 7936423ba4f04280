//! Failed runs are failures everywhere: diverged, panicking and crashing runs inside a sweep are
//! recorded with their reasons, shown by every reader, not rerun without --retry-failed, and make
//! `sweep run` exit non-zero; killing the sweep's parent leaves no orphan; two sweeps on one
//! directory leave each other's runs alone; --retry-failed starts over a run whose checkpoint is
//! damaged; results work on a read-only directory.

mod common;
use common::tmpdir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_zoology");

/// A tiny sweep over learning rates (attention only); `extra` goes into [train].
fn sweep_text(name: &str, lrs: &str, epochs: usize, examples: usize, extra: &str) -> String {
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
num_examples = {examples}
[[data.test]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 32
[model]
d_model = 16
state_mixer = "identity"
mixer = {{ name = "attention" }}
[train]
epochs = {epochs}
early_stop_accuracy = 2.0
checkpoint_every_steps = 5
log_every_steps = 5
{extra}
[sweep]
name = "{name}"
"train.lr" = [{lrs}]
"#
    )
}

struct Sw {
    file: PathBuf,
    out: PathBuf,
}

impl Sw {
    fn new(dir: &Path, text: &str) -> Sw {
        let file = dir.join("sweep.toml");
        std::fs::write(&file, text).unwrap();
        Sw { file, out: dir.join("out") }
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(EXE);
        c.args(args).arg("--out").arg(&self.out).arg(&self.file);
        c
    }
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let o: Output = c.output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
    }
    fn dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.out.join("runs"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn results(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(EXE).arg("results").args(args).arg(dir).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
}

/// `zoology results ARGS --json DIR`, parsed (stdout only).
fn results_json(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let o = Command::new(EXE).arg("results").args(args).arg("--json").arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').map(|(_, r)| !r.trim_start().starts_with(['Z', 'X'])).unwrap_or(false))
        .unwrap_or(false)
}

#[test]
fn diverged_run_in_a_sweep_is_a_failure_everywhere() {
    let dir = tmpdir("diverged");
    let sw = Sw::new(&dir, &sweep_text("div", "3e-3, 1e9", 1, 64, ""));
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[]);
    assert_eq!(code, Some(2), "a sweep with a diverged run exits 2: {text}");
    assert!(text.contains("1 done, 1 failed") && text.contains("diverged: training loss became"), "{text}");
    // sweep status: failed with the reason
    let (code, st) = sw.run(&["sweep", "status"], &[]);
    assert_eq!(code, Some(0));
    assert!(st.contains("1 done, 1 failed") && st.contains("FAILED: diverged: training loss became"), "{st}");
    // results show: table status and the reason; the JSON record carries it too
    let (_, table) = results(&sw.out, &["show"]);
    assert!(
        table.contains("diverged") && table.contains("1 failed or diverged") && table.contains("training loss became"),
        "{table}"
    );
    let rows = results_json(&sw.out, &["show"]);
    let bad = rows.iter().find(|r| r["status"] == "diverged").expect("a diverged row");
    assert!(bad["error"].as_str().unwrap().contains("training loss became"), "{bad}");
    // best over lr leaves it out: the best row is the run that trained
    let best = results_json(&sw.out, &["show", "--best-over", "lr"]);
    assert_eq!(best.len(), 1);
    assert_eq!(best[0]["best_at"]["train.lr"].as_f64(), Some(3e-3), "{best:?}");
    // the index, built by the sweep parent, has it with its status and reason
    let idx = zoology::results::index::Index::open(&sw.out.join("results.sqlite")).unwrap();
    let recs = idx.all().unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().any(|r| r.status == "diverged" && r.error.as_deref().unwrap_or("").contains("training loss")));
    // the report lists it with its reason
    let o = Command::new(EXE).arg("report").arg(&sw.out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(sw.out.join("report.html")).unwrap();
    assert!(html.contains("Failed and diverged runs") && html.contains("training loss became"));
    // a plain re-run does not retrain it; --retry-failed does (and it diverges again)
    let summaries =
        |sw: &Sw| sw.dirs().iter().map(|d| std::fs::read(d.join("summary.json")).unwrap()).collect::<Vec<_>>();
    let before = summaries(&sw);
    // the diverged run's summary still names the metric it is scored by (it diverged before
    // its first evaluation)
    assert!(
        before.iter().all(|b| String::from_utf8_lossy(b).contains("\"metric\": \"per_example_accuracy\"")),
        "{:?}",
        before.iter().map(|b| String::from_utf8_lossy(b).to_string()).collect::<Vec<_>>()
    );
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("ran 0") && text.contains("skipped 2"), "{text}");
    assert_eq!(summaries(&sw), before);
    let (code, text) = sw.run(&["sweep", "run", "--retry-failed", "-q"], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("ran 1") && text.contains("restarts from scratch"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn panicking_and_aborting_runs_are_recorded_with_their_reason() {
    let dir = tmpdir("panic");
    let sw = Sw::new(&dir, &sweep_text("pan", "1e-3, 3e-3", 1, 64, ""));
    // every run panics at step 3 (a test hook); the panic message is the recorded reason
    let (code, text) =
        sw.run(&["sweep", "run", "--workers", "2", "--threads", "1", "-q"], &[("ZOOLOGY_FAULT", "panic@3")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("0 done, 2 failed") && text.contains("panicked: injected fault"), "{text}");
    for d in sw.dirs() {
        let f = std::fs::read_to_string(d.join("failed.json")).unwrap();
        assert!(f.contains("panicked: injected fault ZOOLOGY_FAULT=panic@3"), "{f}");
        assert!(!d.join("running.json").exists(), "{}", d.display());
    }
    let (_, st) = sw.run(&["sweep", "status"], &[]);
    assert!(st.contains("2 failed") && st.contains("panicked"), "{st}");
    // not retried forever: a plain re-run skips them
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[]);
    assert_eq!(code, Some(2));
    assert!(text.contains("ran 0"), "{text}");
    // a run whose process aborts (no chance to record anything) is recorded by the sweep
    let (code, text) = sw.run(&["sweep", "run", "--retry-failed", "-q"], &[("ZOOLOGY_FAULT", "abort@4")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("killed by signal 6"), "{text}");
    for d in sw.dirs() {
        let f = std::fs::read_to_string(d.join("failed.json")).unwrap();
        assert!(f.contains("killed by signal 6") && f.contains("log.txt"), "{f}");
    }
    // fixed: --retry-failed trains them, resuming from their step-0..5 checkpoints
    let (code, text) = sw.run(&["sweep", "run", "--retry-failed", "-q"], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ran 2 (2 done, 0 failed)"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn killing_the_sweep_parent_leaves_no_orphan() {
    let dir = tmpdir("orphan");
    let sw = Sw::new(&dir, &sweep_text("orph", "1e-3", 500, 256, ""));
    let mut parent =
        sw.cmd(&["sweep", "run", "-q", "--threads", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    let child_pid = loop {
        let marker = sw.dirs().first().and_then(|d| std::fs::read_to_string(d.join("running.json")).ok());
        if let Some(m) = marker.and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok()) {
            break m["pid"].as_u64().unwrap() as u32;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(child_pid, parent.id());
    assert!(pid_alive(child_pid));
    parent.kill().unwrap(); // SIGKILL to the parent only, not its process group
    parent.wait().unwrap();
    let t0 = Instant::now();
    while pid_alive(child_pid) {
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = Command::new("kill").args(["-9", &child_pid.to_string()]).status();
            panic!("run process {child_pid} kept training after its sweep was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, st) = sw.run(&["sweep", "status"], &[]);
    assert!(st.contains("0 running"), "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_sweeps_on_one_directory_leave_each_others_runs_alone() {
    let dir = tmpdir("twosweeps");
    // runs of several seconds: B starts once A's first run is training, and must still find it
    // training after its own start-up (with 2 400 examples a run took about 1 s, and on a loaded
    // machine A's run had finished before B looked)
    let sw = Sw::new(&dir, &sweep_text("two", "1e-3, 2e-3, 3e-3, 4e-3", 2, 24_000, ""));
    let a = sw
        .cmd(&["sweep", "run", "-q", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !sw.dirs().iter().any(|d| d.join("running.json").exists()) {
        assert!(t0.elapsed() < Duration::from_secs(120), "sweep A never started a run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code_b, text_b) = sw.run(&["sweep", "run", "-q", "--threads", "1", "--workers", "2"], &[]);
    let o = a.wait_with_output().unwrap();
    let text_a = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    for (who, code, text) in [("A", o.status.code(), &text_a), ("B", code_b, &text_b)] {
        assert!(text.contains(", 0 failed)"), "sweep {who} reported a failure: {text}");
        assert!(matches!(code, Some(0) | Some(3)), "sweep {who}: {code:?} {text}");
    }
    assert!(text_b.contains("another process"), "B saw A's run: {text_b}");
    // every run trained exactly once: each epoch evaluated once
    for d in sw.dirs() {
        let evals: Vec<u64> = std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "eval")
            .map(|v| v["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(evals, vec![1, 2], "{}", d.display());
    }
    let (code, st) = sw.run(&["sweep", "status"], &[]);
    assert_eq!(code, Some(0));
    assert!(st.contains("4 done"), "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn retry_failed_starts_over_a_run_whose_checkpoint_is_damaged() {
    let dir = tmpdir("corrupt");
    let sw = Sw::new(&dir, &sweep_text("cor", "3e-3", 1, 64, ""));
    // killed after its last checkpoint, before its summary: interrupted (resumable), not failed
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[("ZOOLOGY_FAULT", "kill-before-summary")]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    let run = sw.dirs().remove(0);
    let ckpt = run.join("checkpoint.safetensors");
    let mut b = std::fs::read(&ckpt).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x40;
    std::fs::write(&ckpt, &b).unwrap();
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("checksum"), "{text}");
    let (code, text) = sw.run(&["sweep", "run", "--retry-failed", "-q"], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("starts over") && text.contains("1 done"), "{text}");
    assert!(run.join("checkpoint.safetensors.unusable").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `results show` and `plot --out` work on a read-only results directory (a private read-only
/// bind mount); `plot` without --out says to pass it; `--where` on an unknown key is an error.
#[test]
fn results_work_on_a_read_only_directory() {
    let dir = tmpdir("readonly");
    let sw = Sw::new(&dir, &sweep_text("ro", "3e-3", 1, 32, ""));
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = results(&sw.out, &["show", "--where", "d_modle=16"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("d_modle") && text.contains("model.d_model"), "{text}");
    let plots = dir.join("plots-elsewhere");
    let script = format!(
        "mount --bind -o ro '{out}' '{out}' || exit 97; touch '{out}/probe' 2>/dev/null && exit 98; \
         '{EXE}' results show '{out}' > '{d}/show.txt' 2>&1 || exit 10; \
         '{EXE}' plot '{out}' > '{d}/plot.txt' 2>&1 && exit 11; \
         '{EXE}' plot '{out}' --out '{plots}' --no-curves > '{d}/plot2.txt' 2>&1 || exit 12; exit 0",
        out = sw.out.display(),
        d = dir.display(),
        plots = plots.display()
    );
    let st = Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).status();
    match st.map(|s| s.code()) {
        Ok(Some(0)) => {}
        Ok(Some(97)) | Err(_) => {
            println!("SKIPPED the read-only part: cannot make a private read-only bind mount here (needs unshare and CAP_SYS_ADMIN)");
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        Ok(code) => panic!(
            "read-only check failed with {code:?}\nshow: {}\nplot: {}\nplot --out: {}",
            std::fs::read_to_string(dir.join("show.txt")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("plot.txt")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("plot2.txt")).unwrap_or_default()
        ),
    }
    let show = std::fs::read_to_string(dir.join("show.txt")).unwrap();
    assert!(show.contains("not refreshed") && show.contains("done"), "{show}");
    let plot = std::fs::read_to_string(dir.join("plot.txt")).unwrap();
    assert!(plot.contains("--out"), "{plot}");
    assert!(plots.join("figure2.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A finished run whose directory carries the id an older version gave it is renamed to its
/// current id, not retrained.
#[test]
fn finished_runs_under_an_older_run_id_are_adopted_not_retrained() {
    let dir = tmpdir("adopt");
    let sw = Sw::new(&dir, &sweep_text("adopt", "3e-3", 1, 32, ""));
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[]);
    assert_eq!(code, Some(0), "{text}");
    let now = sw.dirs().remove(0);
    let old = now.with_file_name("attention-0123456789ab");
    std::fs::rename(&now, &old).unwrap();
    let summary = std::fs::read(old.join("summary.json")).unwrap();
    let (code, text) = sw.run(&["sweep", "run", "-q"], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("renamed") && text.contains("ran 0") && text.contains("skipped 1"), "{text}");
    assert_eq!(sw.dirs(), vec![now.clone()]);
    assert_eq!(std::fs::read(now.join("summary.json")).unwrap(), summary);
    std::fs::remove_dir_all(&dir).unwrap();
}
