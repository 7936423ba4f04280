//! Issue 25, through the binary: sizes refused before they allocate (1), every numeric flag
//! bounded where it enters (3), names that would leave their directory refused (4), one index
//! row per run directory (5), no leftovers or wrong words after faults (6), progress when
//! piped and honest counts when two sweeps share a directory (7). Grids (2) and the report in
//! a browser (8) have their own tests (sweep::grid, report_browser.rs).

mod common;
use common::{streams, text, tmpdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_zoology");

fn zoology(args: &[&str]) -> Command {
    let mut c = Command::new(EXE);
    c.args(args);
    c
}

fn run(mut c: Command) -> Output {
    c.output().unwrap()
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name).display().to_string()
}

/// A config that trains in a second or two; `train` is appended to its [train] table.
fn tiny(train: &str) -> String {
    format!(
        r#"
seed = 11
threads = 1
[data]
vocab_size = 64
batch_size = 16
[[data.train]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 96
[[data.test]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 32
[model]
d_model = 16
max_position_embeddings = 16
state_mixer = "identity"
mixer = {{ name = "attention" }}
[train]
lr = 3e-3
log_every_steps = 2
checkpoint_every_steps = 3
{train}
"#
    )
}

fn mem_total() -> f64 {
    zoology::config::mem_total_bytes().unwrap_or(f64::INFINITY)
}

/// No Rust debug text (`Os { code: …, kind: … }`, `Some(…)`, `TchError`) in a message.
fn assert_no_debug_text(what: &str, s: &str) {
    for pat in ["Os {", "kind: ", "Custom {", "TchError", "SafeTensorError", "IoError("] {
        assert!(!s.contains(pat), "{what}: Rust debug text {pat:?} in:\n{s}");
    }
}

// ---------------------------------------------------------------- 1. sizes

/// The issue's reproducers: d_model = 64000 (attention's 4·d² weights, ~49 GB per layer's
/// projection) and attention at L = 65536, batch 2 (32 GiB of scores per layer) passed
/// validation and then panicked allocating; now both are refused before anything is written,
/// with the estimate and the field to change.
#[test]
fn sizes_beyond_this_machine_are_refused_with_the_field_to_change() {
    let dir = tmpdir("h-sizes");
    let cases: [(&[&str], &str, &str, f64); 2] = [
        (&["--set", "model.d_model=64000"], "`model.d_model`", "parameters", 400e9),
        (
            &[
                "--set",
                "data.vocab_size=65600",
                "--set",
                "data.train.0.seq_len=65536",
                "--set",
                "data.test.0.seq_len=65536",
                "--set",
                "model.max_position_embeddings=65536",
                "--set",
                "data.batch_size=2",
                "--set",
                "data.train.0.num_examples=2",
                "--set",
                "data.test.0.num_examples=2",
            ],
            "`data.batch_size`",
            "attention scores",
            64e9,
        ),
    ];
    for (i, (sets, field, what, needs)) in cases.into_iter().enumerate() {
        if mem_total() > needs {
            println!("SKIPPED case {i}: this machine has more memory than the case needs");
            continue;
        }
        let out = dir.join(format!("D{i}"));
        let mut c = zoology(&["train", &example("mqar-tiny-attention.toml"), "-q", "--out", out.to_str().unwrap()]);
        c.args(sets);
        let o = run(c);
        let (_, err) = streams(&o);
        assert_eq!(o.status.code(), Some(1), "case {i}: {err}");
        assert!(err.contains(field) && err.contains(what) && err.contains("GiB"), "case {i}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        // nor announced: "run directory: D" before the refusal read as if D had been made
        assert!(!err.contains("run directory:"), "case {i}: {err}");
        assert!(!out.exists(), "case {i}: a refused run wrote {}", out.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- 3. numeric flags

/// Numbers are checked in the parent, naming the flag, exit 1 (the reproducers of the issue:
/// `generate --batch 2^64-1` was a tch panic, `sweep run --threads 2^31` failed in the child,
/// `--workers 0` and `--max-mem-gb nan` were accepted).
#[test]
fn numeric_flags_are_bounded_where_they_enter() {
    let dir = tmpdir("h-flags");
    let sweep = dir.join("s.toml");
    std::fs::write(&sweep, tiny("epochs = 1") + "[sweep]\n\"train.lr\" = [1e-3]\n").unwrap();
    let s = sweep.to_str().unwrap();
    let out = dir.join("out");
    let o_arg = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["generate", "/nonexistent", "--batch", "18446744073709551615"], "--batch"),
        (vec!["sweep", "run", s, "--out", o_arg, "--threads", "2147483648"], "--threads"),
        (vec!["sweep", "run", s, "--out", o_arg, "--workers", "0"], "--workers"),
        (vec!["bench", "mixers", "--max-mem-gb", "nan"], "--max-mem-gb"),
        (vec!["bench", "mixers", "--lengths", "256,-1"], "--lengths"),
        (vec!["quickstart", "--out", o_arg, "--workers", "100000"], "--workers"),
        (vec!["bench", "data", "mqar", "--reps", "0"], "--reps"),
        (vec!["results", "show", o_arg, "--cost", "--threshold", "inf"], "--threshold"),
        (vec!["sweep", "run-one", s, "--index", "99999999999"], "--index"),
        (vec!["sweep", "run", s, "--out", o_arg, "--order", "depth"], "--order"),
        (vec!["sweep", "run", s, "--out", o_arg, "--backend", "slurm", "--order", "breadth"], "--order"),
    ];
    for (args, flag) in cases {
        let o = run(zoology(&args));
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(flag) && !t.contains("panicked"), "{args:?}: {t}");
    }
    assert!(!out.exists(), "a refused sweep wrote {}", out.display());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- 4. names as paths

#[test]
fn a_sweep_name_cannot_leave_its_directory() {
    let dir = tmpdir("h-names");
    let cwd = dir.join("a").join("b");
    std::fs::create_dir_all(&cwd).unwrap();
    let sweep = cwd.join("s.toml");
    std::fs::write(&sweep, tiny("epochs = 1") + "[sweep]\nname = \"../../x\"\n\"train.lr\" = [1e-3]\n").unwrap();
    for verb in [&["sweep", "plan"][..], &["sweep", "run", "-q"][..]] {
        let mut c = zoology(verb);
        c.arg(&sweep).current_dir(&cwd);
        let o = run(c);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{verb:?}: {t}");
        assert!(t.contains("`sweep.name`") && t.contains("separator"), "{verb:?}: {t}");
    }
    assert!(!dir.join("x").exists() && !cwd.join("sweeps").exists(), "something was written");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- 5. index rows

/// Two directories trained from one config: the index has both rows, says they share a run id,
/// and `results show` lists the same directories as the index.
#[test]
fn the_index_keeps_a_row_per_run_directory_and_agrees_with_results_show() {
    let dir = tmpdir("h-index");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, tiny("epochs = 1")).unwrap();
    let root = dir.join("results");
    for name in ["first", "second"] {
        let o = run(zoology(&["train", cfg.to_str().unwrap(), "-q", "--out", root.join(name).to_str().unwrap()]));
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = run(zoology(&["results", "index", root.to_str().unwrap()]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("2 run directories indexed (2 rows)") && t.contains("shared by 2 run directories"), "{t}");
    let o = run(zoology(&["results", "show", "--json", root.to_str().unwrap()]));
    assert!(o.status.success(), "{}", text(&o));
    let shown: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut shown: Vec<String> = shown.iter().map(|r| r["run_dir"].as_str().unwrap().to_string()).collect();
    shown.sort();
    let idx = zoology::results::index::Index::open(&root.join("results.sqlite")).unwrap();
    let indexed: Vec<String> = idx.all().unwrap().into_iter().map(|r| r.run_dir).collect();
    assert_eq!(shown, indexed, "results show and the index disagree");
    assert_eq!(indexed.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- 6. faults

fn temporaries(d: &Path) -> Vec<String> {
    std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// A SIGKILL between writing a file's temporary copy and renaming it leaves the copy; the
/// resumed run removes it and ends as the uninterrupted run does.
#[test]
fn a_resumed_run_leaves_no_temporary_file_behind() {
    let dir = tmpdir("h-tmp");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, tiny("epochs = 2\nearly_stop_accuracy = 2.0")).unwrap();
    let clean = dir.join("clean");
    let o = run(zoology(&["train", cfg.to_str().unwrap(), "-q", "--out", clean.to_str().unwrap()]));
    assert!(o.status.success(), "{}", text(&o));
    for file in ["summary.json", "checkpoint.safetensors"] {
        let d = dir.join(file);
        let mut c = zoology(&["train", cfg.to_str().unwrap(), "-q", "--out", d.to_str().unwrap()]);
        c.env("ZOOLOGY_FAULT", format!("kill-before-rename:{file}"));
        let o = run(c);
        assert_eq!(o.status.code(), None, "{file}: the fault did not kill it: {}", text(&o));
        assert!(!temporaries(&d).is_empty(), "{file}: the kill left no temporary file to clean");
        let o = run(zoology(&["train", "-q", "--resume", d.to_str().unwrap()]));
        assert!(o.status.success(), "{file}: {}", text(&o));
        assert_eq!(temporaries(&d), Vec::<String>::new(), "{file}: temporaries left after the resume");
        let s = |p: &Path| {
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p.join("summary.json")).unwrap())
                .unwrap()
        };
        assert_eq!(s(&d)["final_loss"], s(&clean)["final_loss"], "{file}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An early-stopping run killed just before its summary is written, or just before the
/// summary's rename: the resumed summary is the uninterrupted one's, bit for bit, as text
/// (wall time and throughput aside). Its floats used to come back one ULP off, read back from
/// the checkpoint's JSON without serde_json's `float_roundtrip`; that happens to about one float
/// in seven, and seed 16 is one whose perplexity it hit (found by running seeds 1-24 with the
/// feature off; with it on, every seed matches).
#[test]
fn a_resumed_early_stopping_run_writes_the_same_summary() {
    let dir = tmpdir("h-ulp");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, tiny("epochs = 4\nearly_stop_accuracy = -1.0").replace("seed = 11", "seed = 16")).unwrap();
    let a = dir.join("a");
    let o = run(zoology(&["train", cfg.to_str().unwrap(), "-q", "--out", a.to_str().unwrap()]));
    assert!(o.status.success(), "{}", text(&o));
    // the summary's lines, but for the ones that time the run
    let lines = |p: &Path| -> Vec<String> {
        let t = std::fs::read_to_string(p.join("summary.json")).unwrap();
        let timing = ["\"wall_time_s\"", "\"train_tokens_per_s\"", "\"train_gflops_per_s\""];
        t.lines().filter(|l| !timing.iter().any(|k| l.contains(k))).map(str::to_string).collect()
    };
    assert!(lines(&a).iter().any(|l| l.contains("\"stop_reason\": \"early_stop\"")), "{:?}", lines(&a));
    for (k, fault) in ["kill-before-summary", "kill-before-rename:summary.json"].into_iter().enumerate() {
        let b = dir.join(format!("b{k}"));
        let mut c = zoology(&["train", cfg.to_str().unwrap(), "-q", "--out", b.to_str().unwrap()]);
        c.env("ZOOLOGY_FAULT", fault);
        assert_eq!(run(c).status.code(), None, "{fault}: not killed");
        let o = run(zoology(&["train", "-q", "--resume", b.to_str().unwrap()]));
        assert!(o.status.success(), "{fault}: {}", text(&o));
        assert_eq!(lines(&a), lines(&b), "{fault}: the resumed summary differs");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `train --out DIR` where DIR holds another run's config and metrics (no checkpoint) is
/// refused and leaves them as they were.
#[test]
fn train_refuses_a_directory_that_holds_another_run() {
    let dir = tmpdir("h-foreign");
    let (c1, c2) = (dir.join("one.toml"), dir.join("two.toml"));
    std::fs::write(&c1, tiny("epochs = 1")).unwrap();
    std::fs::write(&c2, tiny("epochs = 1").replace("lr = 3e-3", "lr = 1e-3")).unwrap();
    let d = dir.join("D");
    let o = run(zoology(&["train", c1.to_str().unwrap(), "-q", "--out", d.to_str().unwrap()]));
    assert!(o.status.success(), "{}", text(&o));
    for f in ["checkpoint.safetensors", "summary.json"] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    let before: Vec<Vec<u8>> =
        ["config.toml", "metrics.jsonl"].iter().map(|f| std::fs::read(d.join(f)).unwrap()).collect();
    let o = run(zoology(&["train", c2.to_str().unwrap(), "-q", "--out", d.to_str().unwrap()]));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("holds another run"), "{t}");
    let after: Vec<Vec<u8>> =
        ["config.toml", "metrics.jsonl"].iter().map(|f| std::fs::read(d.join(f)).unwrap()).collect();
    assert_eq!(before, after, "the other run's files changed");
    // the same config again is the same run: it trains
    let o = run(zoology(&["train", c1.to_str().unwrap(), "-q", "--out", d.to_str().unwrap()]));
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `script` in a user namespace (as root outside, the process has no capabilities over
/// host files there, so mode bits apply) or a private mount namespace; `None` when this
/// machine does not allow it.
fn sandboxed(ns: &[&str], script: &str) -> Option<Output> {
    let probe = Command::new("unshare").args(ns).args(["sh", "-c", "exit 0"]).output().ok()?;
    if !probe.status.success() {
        return None;
    }
    Command::new("unshare").args(ns).args(["sh", "-c", script]).output().ok()
}

/// An unreadable run directory says permission denied, with the path (it said "config.toml not
/// found"); a read-only target names the path (quickstart) and prints no Rust debug text
/// (`data --out`).
#[test]
fn unreadable_and_read_only_targets_say_so_with_the_path() {
    let dir = tmpdir("h-perm");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, tiny("epochs = 1")).unwrap();
    let run_dir = dir.join("run");
    let o = run(zoology(&["train", cfg.to_str().unwrap(), "-q", "--out", run_dir.to_str().unwrap()]));
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(run_dir.join("summary.json")).unwrap();
    let locked = dir.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::rename(&run_dir, locked.join("run")).unwrap();
    let mode = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&locked, 0o000);
    let r = locked.join("run");
    let script = format!(
        "'{EXE}' train -q --resume '{r}'; echo \"exit $?\"; '{EXE}' generate '{r}'; echo \"exit $?\"",
        r = r.display()
    );
    let got = sandboxed(&["--user"], &script);
    mode(&locked, 0o755);
    match got {
        None => println!("SKIPPED the permission part: no user namespaces here"),
        Some(o) => {
            let t = text(&o);
            assert!(!t.contains("not found") && t.matches("exit 1").count() == 2, "{t}");
            assert!(t.matches("Permission denied").count() >= 2 && t.contains(&r.display().to_string()), "{t}");
            assert_no_debug_text("unreadable run directory", &t);
        }
    }
    let ro = dir.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let script = format!(
        "mount --bind -o ro '{ro}' '{ro}' || exit 97; \
         '{EXE}' quickstart --out '{ro}/q'; echo \"exit $?\"; \
         '{EXE}' data mqar --seq-len 16 --kv 2 --out '{ro}/x.safetensors'; echo \"exit $?\"",
        ro = ro.display()
    );
    match sandboxed(&["--mount", "--propagation", "private"], &script) {
        Some(o) if o.status.code() != Some(97) => {
            let t = text(&o);
            assert_eq!(t.matches("exit 1").count(), 2, "{t}");
            assert!(t.contains(&format!("{}/q", ro.display())) && t.contains("Read-only file system"), "{t}");
            assert!(t.contains(&format!("{}/x.safetensors", ro.display())), "{t}");
            assert_no_debug_text("read-only target", &t);
        }
        _ => println!("SKIPPED the read-only part: cannot make a private read-only bind mount here"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- 7. progress

/// Piped (no terminal), `train` prints a line per epoch and `sweep run` a line per finished
/// run, each saying how long it took.
#[test]
fn progress_lines_when_output_is_not_a_terminal() {
    let dir = tmpdir("h-progress");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, tiny("epochs = 2\nearly_stop_accuracy = 2.0")).unwrap();
    let mut c = zoology(&["train", cfg.to_str().unwrap(), "--out", dir.join("r").to_str().unwrap()]);
    c.env_remove("ZOOLOGY_PROGRESS");
    let o = run(c);
    let (out, _) = streams(&o);
    assert!(o.status.success(), "{}", text(&o));
    let epochs: Vec<&str> = out.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 2, "{out}");
    assert!(
        epochs[1].starts_with("epoch 2/2 done in ") && epochs[1].contains(" s") && epochs[1].contains("test loss"),
        "{out}"
    );
    let sweep = dir.join("s.toml");
    std::fs::write(&sweep, tiny("epochs = 1") + "[sweep]\n\"train.lr\" = [1e-3, 3e-3]\n").unwrap();
    let mut c = zoology(&["sweep", "run", "--threads", "1", "--out", dir.join("sw").to_str().unwrap()]);
    c.arg(&sweep).env_remove("ZOOLOGY_PROGRESS");
    let o = run(c);
    let (out, _) = streams(&o);
    assert!(o.status.success(), "{}", text(&o));
    for k in 1..=2 {
        let line = out.lines().find(|l| l.starts_with(&format!("[{k}/2] ")));
        assert!(line.is_some_and(|l| l.contains(": done") && l.contains(" s)")), "run {k}: {out}");
    }
    // -q is silent
    let o = run(zoology(&["train", cfg.to_str().unwrap(), "-q", "--out", dir.join("r2").to_str().unwrap()]));
    assert!(!streams(&o).0.lines().any(|l| l.starts_with("epoch ")), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sweep does not report as its own a run that another process finished after it queued the
/// run: sweep A trains run 0 slowly (a test hook delays each step) while run 1 is trained to the
/// end by a separate `sweep run-one`; A then reaches run 1, finds it finished, and says so.
/// Run 0's 18 steps take about 11 s at 600 ms each: room for `run-one` to start libtorch and
/// train its 18 steps on a loaded machine before A gets to run 1.
#[test]
fn a_sweep_does_not_count_runs_another_process_finished() {
    let dir = tmpdir("h-concurrent");
    let sweep = dir.join("s.toml");
    std::fs::write(&sweep, tiny("epochs = 3\nearly_stop_accuracy = 2.0") + "[sweep]\n\"train.lr\" = [1e-3, 3e-3]\n")
        .unwrap();
    let out = dir.join("out");
    let a = zoology(&["sweep", "run", "--threads", "1", "--out", out.to_str().unwrap()])
        .arg(&sweep)
        .env("ZOOLOGY_STEP_DELAY_MS", "600")
        .env_remove("ZOOLOGY_PROGRESS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait until A trains run 0, then train run 1 here, to the end
    let t0 = Instant::now();
    let runs = out.join("runs");
    loop {
        let started = std::fs::read_dir(&runs)
            .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.path().join("running.json").exists()))
            .unwrap_or(false);
        if started {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "sweep A never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run(zoology(&[
        "sweep",
        "run-one",
        sweep.to_str().unwrap(),
        "--index",
        "1",
        "-q",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let o = a.wait_with_output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let finished_first = t.contains("ran 2");
    assert!(!finished_first, "sweep A counted run 1, which another process trained: {t}");
    assert!(t.contains("ran 1 (1 done, 0 failed)"), "{t}");
    assert!(t.contains("another process finished it meanwhile"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[allow(dead_code)]
fn unused(_: PathBuf) {}

/// Output piped into a reader that stops early (`zoology mixers | head -1`) ends the program
/// quietly, as other Unix tools do, instead of a "Broken pipe" panic.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let exe = env!("CARGO_BIN_EXE_zoology");
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("for i in 1 2 3 4 5 6 7 8; do '{exe}' mixers --flops; done | head -c 1 >/dev/null"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}
