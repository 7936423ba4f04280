//! End-to-end tests of `zoology train`: resume after SIGKILL, divergence, config errors.

mod common;
use common::tmpdir;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn zoology() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zoology"))
}

const TINY: &str = r#"
seed = 7
threads = 1
[data]
vocab_size = 128
batch_size = 32
[[data.train]]
task = "mqar"
seq_len = 32
num_kv_pairs = 4
num_examples = 1600
[[data.test]]
task = "mqar"
seq_len = 32
num_kv_pairs = 4
num_examples = 200
[model]
d_model = 32
max_position_embeddings = 32
state_mixer = "identity"
mixer = { name = "attention" }
[train]
epochs = 6
lr = 3e-3
log_every_steps = 5
checkpoint_every_steps = 10
early_stop_accuracy = 2.0
"#;

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// Eval lines of metrics.jsonl without the wall-clock field.
fn evals(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "eval")
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("elapsed_s");
            v
        })
        .collect()
}

fn ckpt_step(dir: &Path) -> Option<u64> {
    // checkpoint metadata is inside the safetensors file; the metrics file tells us progress
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    let last = text.lines().last()?;
    serde_json::from_str::<serde_json::Value>(last).ok()?["step"].as_u64()
}

#[test]
fn resume_after_sigkill_matches_uninterrupted_run() {
    let root = tmpdir("resume");
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();

    let full = root.join("full");
    let st = zoology().args(["train", cfg.to_str().unwrap(), "--out", full.to_str().unwrap(), "-q"]).status().unwrap();
    assert!(st.success());

    // Same config, killed with SIGKILL part-way (after the first mid-epoch checkpoints), then resumed.
    let cut = root.join("cut");
    let mut child = zoology()
        .args(["train", cfg.to_str().unwrap(), "--out", cut.to_str().unwrap(), "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if cut.join("checkpoint.safetensors").exists() && ckpt_step(&cut).unwrap_or(0) >= 75 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "run made no progress");
        assert!(child.try_wait().unwrap().is_none(), "run finished before it could be killed; make it longer");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!cut.join("summary.json").exists(), "killed run must not have a summary");

    // a plain re-run refuses to overwrite
    let out = zoology().args(["train", cfg.to_str().unwrap(), "--out", cut.to_str().unwrap(), "-q"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));

    // what resuming must keep: the metrics lines up to the checkpoint, byte for byte
    let before = std::fs::read(cut.join("metrics.jsonl")).unwrap();
    let ckpt_step = checkpoint_meta(&cut)["step"].as_str().unwrap().parse::<u64>().unwrap();
    let mut kept = 0;
    for line in before.split_inclusive(|&b| b == b'\n') {
        let v: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) if line.ends_with(b"\n") => v,
            _ => break,
        };
        if v["step"].as_u64().unwrap() > ckpt_step {
            break;
        }
        kept += line.len();
    }
    assert!(kept > 0);
    let st = zoology().args(["train", "--resume", cut.to_str().unwrap(), "-q"]).status().unwrap();
    assert!(st.success());
    let after = std::fs::read(cut.join("metrics.jsonl")).unwrap();
    assert_eq!(&after[..kept], &before[..kept], "resume rewrote earlier metrics lines");
    let (a, b) = (summary(&full), summary(&cut));
    assert_eq!(a["final_accuracy"], b["final_accuracy"], "final accuracy differs after resume");
    assert_eq!(a["best_accuracy"], b["best_accuracy"]);
    assert_eq!(a["final_loss"], b["final_loss"]);
    assert_eq!(a["steps"], b["steps"]);
    assert_eq!(evals(&full), evals(&cut), "eval history differs after resume");
    // the machine it ran on: a CPU description with the thread count
    let machine = a["machine"].as_str().unwrap_or_else(|| panic!("no machine in the summary: {a}"));
    assert!(machine.contains("CPUs, ") && machine.contains("libtorch thread"), "{machine}");
    // the model learned something (the test is not comparing two untrained runs)
    assert!(a["final_accuracy"].as_f64().unwrap() > 0.05, "{a}");
    let _ = std::fs::remove_dir_all(&root);
}

/// `zoology train examples/mqar-tiny-attention.toml --set train.lr=1e9`: the run ends diverged
/// with its reason, summary.json is strict JSON that reads back, and `train --resume` on it
/// trains nothing.
#[test]
fn divergence_stops_with_reason_strict_json_and_is_not_retrained() {
    let root = tmpdir("diverge");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mqar-tiny-attention.toml");
    let out = root.join("run");
    let o = zoology()
        .args(["train", example.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q", "--set", "train.lr=1e9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("diverged: training loss became"), "{err}");
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    // serde_json is a strict parser: no NaN, Infinity or other extensions
    let s: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("summary.json is not strict JSON ({e}):\n{text}"));
    assert_eq!(s["stop_reason"], "diverged");
    assert_eq!(s["status"], "diverged");
    assert!(s["reason"].as_str().unwrap().contains("training loss became"), "{s}");
    assert!(
        matches!(s["final_loss"].as_str(), Some("NaN" | "inf" | "-inf")),
        "a non-finite loss is a string, not null: {s}"
    );
    let before: Vec<(String, Vec<u8>)> = files(&out);
    let o = zoology().args(["train", "--resume", out.to_str().unwrap(), "-q"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing was trained"), "{err}");
    assert_eq!(files(&out), before, "resuming a diverged run changed its directory");
    let _ = std::fs::remove_dir_all(&root);
}

/// (name, bytes) of the files of a run directory, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    v.sort();
    v
}

/// The step the checkpoint was written at (from its safetensors header's metadata).
fn checkpoint_meta(dir: &Path) -> serde_json::Value {
    let b = std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    h["__metadata__"].clone()
}

/// Killed after its last checkpoint but before summary.json, an early-stopped run resumes to the
/// same end: the stop decision is in the checkpoint, so no extra epoch is trained.
#[test]
fn early_stop_decision_survives_a_kill_before_the_summary() {
    let root = tmpdir("earlystop");
    let cfg = root.join("tiny.toml");
    // stop after the first epoch (any accuracy beats -1)
    std::fs::write(&cfg, TINY.replace("early_stop_accuracy = 2.0", "early_stop_accuracy = -1.0")).unwrap();
    let full = root.join("full");
    let st = zoology().args(["train", cfg.to_str().unwrap(), "--out", full.to_str().unwrap(), "-q"]).status().unwrap();
    assert!(st.success());
    let cut = root.join("cut");
    let o = zoology()
        .args(["train", cfg.to_str().unwrap(), "--out", cut.to_str().unwrap(), "-q"])
        .env("ZOOLOGY_FAULT", "kill-before-summary")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "the fault hook kills the run: {:?}", o.status);
    assert!(!cut.join("summary.json").exists() && cut.join("checkpoint.safetensors").exists());
    let st = zoology().args(["train", "--resume", cut.to_str().unwrap(), "-q"]).status().unwrap();
    assert!(st.success());
    let (a, b) = (summary(&full), summary(&cut));
    assert_eq!(a["stop_reason"], "early_stop");
    assert_eq!(
        (&b["stop_reason"], &b["epochs"], &b["steps"]),
        (&a["stop_reason"], &a["epochs"], &a["steps"]),
        "{a}\n{b}"
    );
    assert_eq!(b["best_accuracy"], a["best_accuracy"]);
    assert_eq!(evals(&cut).len(), 1, "the resumed run trained another epoch");
    let _ = std::fs::remove_dir_all(&root);
}

/// A second `train --resume DIR` while a process trains DIR is refused (exit 3, naming the
/// holder), and leaves the run and its metrics alone.
#[test]
fn a_run_directory_is_trained_by_one_process_at_a_time() {
    let root = tmpdir("lock");
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, TINY.replace("epochs = 6", "epochs = 400")).unwrap();
    let out = root.join("run");
    let mut first = zoology()
        .args(["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !out.join("checkpoint.safetensors").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint");
        assert!(first.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let marker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("running.json")).unwrap()).unwrap();
    assert_eq!(marker["pid"].as_u64(), Some(first.id() as u64), "{marker}");
    let o = zoology().args(["train", "--resume", out.to_str().unwrap(), "-q"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("being trained by another process") && err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(first.try_wait().unwrap().is_none(), "the first run was disturbed");
    first.kill().unwrap();
    first.wait().unwrap();
    // with the holder gone, the lock is free again
    let o = zoology().args(["train", "--resume", out.to_str().unwrap(), "-q", "--set", "x=1"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--resume DIR continues"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A damaged checkpoint, or one copied from another run, is refused with an error that names
/// the file and says what is wrong; the failure is recorded in failed.json.
#[test]
fn damaged_and_foreign_checkpoints_are_refused_by_resume() {
    let root = tmpdir("badckpt");
    let mk = |name: &str, seed: u64| {
        let cfg = root.join(format!("{name}.toml"));
        std::fs::write(&cfg, TINY.replace("seed = 7", &format!("seed = {seed}")).replace("epochs = 6", "epochs = 1"))
            .unwrap();
        let out = root.join(name);
        let o = zoology()
            .args(["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"])
            .env("ZOOLOGY_FAULT", "kill-before-summary")
            .output()
            .unwrap();
        assert!(!o.status.success());
        out
    };
    let (a, b) = (mk("a", 7), mk("b", 8));
    let resume = |dir: &Path| {
        let o = zoology().args(["train", "--resume", dir.to_str().unwrap(), "-q"]).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    std::fs::copy(a.join("checkpoint.safetensors"), b.join("checkpoint.safetensors")).unwrap();
    let e = resume(&b);
    assert!(
        e.contains(&b.join("checkpoint.safetensors").display().to_string()) && e.contains("belongs to another run"),
        "{e}"
    );
    assert!(std::fs::read_to_string(b.join("failed.json")).unwrap().contains("belongs to another run"));
    let p = a.join("checkpoint.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let e = resume(&a);
    assert!(e.contains(&p.display().to_string()) && e.contains("checksum"), "{e}");
    std::fs::write(&p, &bytes[..100]).unwrap();
    let e = resume(&a);
    assert!(e.contains("cut off") && !e.contains("HeaderTooSmall"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn config_errors_are_messages_with_field_paths() {
    let root = tmpdir("errors");
    let cases = [
        (TINY.replace("d_model = 32", "d_model = 32\ndmodel = 3"), "dmodel"),
        (
            TINY.replace("num_kv_pairs = 4\nnum_examples = 1600", "num_kv_pairs = 9\nnum_examples = 1600"),
            "data.train[0].num_kv_pairs",
        ),
        (TINY.replace("lr = 3e-3", "lr = \"fast\""), "train.lr"),
        (TINY.replace("name = \"attention\"", "name = \"attn\""), "model.mixer.name"),
        (TINY.replace("[model]", "[model]\nmax_position_embeddings = 3"), "max_position_embeddings"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = root.join(format!("c{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let o = zoology()
            .args(["train", p.to_str().unwrap(), "--out", root.join(format!("r{i}")).to_str().unwrap(), "-q"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "case {i}: {err}");
        assert!(err.contains(want), "case {i}: error should name {want:?}: {err}");
        assert!(!err.contains("panicked"), "case {i} panicked: {err}");
    }
    // bad --set and bad device flag
    let p = root.join("ok.toml");
    std::fs::write(&p, TINY).unwrap();
    let o = zoology().args(["train", p.to_str().unwrap(), "--set", "train.epochs", "-q"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("key=value"));
    let o = zoology()
        .args(["train", p.to_str().unwrap(), "--device", "tpu", "-q", "--out", root.join("d").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("device"));
    let o = zoology().args(["train", "/nonexistent.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.toml"));
    let _ = std::fs::remove_dir_all(&root);
}

/// Bad flags and absurd sizes are errors that name the flag or field, quickly, never panics.
#[test]
fn bad_input_is_a_named_error_not_a_panic_or_a_hang() {
    let root = tmpdir("badinput");
    let p = root.join("ok.toml");
    std::fs::write(&p, TINY).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["bench".into(), "step".into(), "--iters".into(), "0".into()], "--iters"),
        (vec!["bench".into(), "step".into(), "--kv".into(), "100".into()], "--kv"),
        (vec!["data".into(), "mqar".into(), "--show".into(), "100000000".into()], "--show"),
        (vec!["data".into(), "mqar".into(), "--vocab-size".into(), "4294967552".into()], "--vocab-size"),
        (
            vec!["train".into(), p.display().to_string(), "--set".into(), "model.n_layers=2147483648".into()],
            "model.n_layers",
        ),
        (vec!["train".into(), p.display().to_string(), "--set".into(), "threads=4294967297".into()], "threads"),
        (
            vec!["train".into(), p.display().to_string(), "--set".into(), "data.vocab_size=4294967552".into()],
            "data.vocab_size",
        ),
        (
            vec!["train".into(), p.display().to_string(), "--set".into(), "data.train.0.seq_len=\"long\"".into()],
            "data.train[0].seq_len",
        ),
        (
            vec!["train".into(), p.display().to_string(), "--set".into(), "train.grad_clip=nan".into()],
            "train.grad_clip",
        ),
        (vec!["results".into(), "show".into(), root.join("nope").display().to_string()], "no such results directory"),
        (vec!["results".into(), "index".into(), root.join("nope").display().to_string()], "no such results directory"),
        (
            vec![
                "sweep".into(),
                "run".into(),
                "--backend".into(),
                "slurm".into(),
                "--wait".into(),
                "--wait-timeout".into(),
                "soon".into(),
                p.display().to_string(),
            ],
            "--wait-timeout",
        ),
    ];
    for (args, want) in cases {
        let t0 = Instant::now();
        let o = zoology().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: the error should name {want:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(60), "{args:?} took {:?}", t0.elapsed());
    }
    assert!(!root.join("nope").exists(), "a missing results directory is not created");
    let _ = std::fs::remove_dir_all(&root);
}

/// A config that validates but cannot fit in this machine's memory is refused before anything
/// is allocated, with the estimate and what drives it.
#[test]
fn a_run_that_cannot_fit_in_memory_is_refused_before_it_allocates() {
    let total_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let total = total_kb * 1024.0;
    // token data alone (24 bytes a token) at twice this machine's memory
    let n = (2.0 * total / (24.0 * 32.0)).ceil() as u64;
    if total > 4e11 || n > 1 << 32 {
        println!("SKIPPED: this machine has {:.0} GiB of memory; the test needs a config above it and below the validation limit", total / 2f64.powi(30));
        return;
    }
    let root = tmpdir("memory");
    let p = root.join("big.toml");
    std::fs::write(&p, TINY.replace("num_examples = 1600", &format!("num_examples = {n}"))).unwrap();
    let t0 = Instant::now();
    let o = zoology()
        .args(["train", p.to_str().unwrap(), "--out", root.join("r").to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`data.train[0].num_examples`") && err.contains("token data") && err.contains("this machine has"),
        "{err}"
    );
    // nothing was written: the check runs before the run directory is created
    assert!(!root.join("r").exists(), "a refused run left {}", root.join("r").display());
    // The named memory error comes only from the check that runs before any data is
    // generated (had it allocated first, 47 GiB of token data on this machine would end in an
    // OOM kill, not this message). The bound is a hang guard, generous because the machine is
    // shared: 1 s alone, 31 s once beside a quickstart and a fuzz campaign.
    assert!(t0.elapsed() < Duration::from_secs(300), "refused only after {:?}", t0.elapsed());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn data_verb_shows_examples() {
    let o = zoology().args(["data", "mqar", "--seq-len", "64", "--kv", "4", "--show", "3"]).output().unwrap();
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(s.lines().filter(|l| l.starts_with("example ")).count(), 3, "{s}");
    assert_eq!(s.matches('→').count(), 12 + 1, "{s}"); // 3 examples × 4 queries, plus the legend
    let o = zoology().args(["data", "mqar", "--seq-len", "64", "--kv", "17"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--kv"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The CI-sized recall check: the shipped tiny example must solve MQAR (≥ 0.99 test accuracy).
#[test]
fn tiny_attention_example_solves_mqar() {
    let root = tmpdir("tiny");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mqar-tiny-attention.toml");
    let out = root.join("run");
    // evaluations every 100 steps as well as at epoch ends; the solve record follows them
    let o = zoology()
        .args([
            "train",
            example.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
            "--set",
            "train.eval_every_steps=100",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&out);
    println!("tiny attention: {s}");
    assert!(s["best_accuracy"].as_f64().unwrap() >= 0.99, "{s}");
    assert_eq!(s["stop_reason"], "early_stop");
    // the run's FLOPs are what `cost::run_flops` counts for its config; the sparse head makes a
    // step cost less than with the full head over every position
    let cfg = zoology::config::RunConfig::load(&example).unwrap();
    let f = zoology::cost::run_flops(&cfg).unwrap();
    assert_eq!(s["flops_train_per_step"].as_f64(), Some(f.train_per_step), "{s}");
    assert_eq!(s["flops_decode_per_token"].as_f64(), Some(f.decode_per_token), "{s}");
    assert_eq!(s["flops_prefill_per_seq"].as_f64(), Some(f.prefill_per_seq), "{s}");
    assert_eq!(s["num_parameters"].as_i64(), Some(f.params), "{s}");
    assert!(f.train_per_step > 0.0 && f.decode_per_token > 0.0);
    let ev = evals(&out);
    let steps_per_epoch = 20000 / 64 + 1; // 313 batches, the last one short
    assert!(
        ev.iter().any(|e| e["step"].as_u64().unwrap() % steps_per_epoch != 0),
        "no evaluation inside an epoch: {ev:?}"
    );
    assert!(ev.iter().filter(|e| e["step"].as_u64().unwrap() % 100 == 0).count() >= 3, "{ev:?}");
    // early stop at the evaluation that passed 0.99, wherever it fell
    let last = ev.last().unwrap();
    assert_eq!(last["step"], s["steps"], "{s}");
    assert!(last["accuracy"].as_f64().unwrap() > 0.99);
    let solved = s["solved"].as_array().unwrap();
    assert_eq!(solved.len(), 2, "{s}");
    for (rec, thr) in solved.iter().zip([0.9, 0.99]) {
        assert_eq!(rec["threshold"].as_f64().unwrap(), thr);
        let first = ev.iter().find(|e| e["accuracy"].as_f64().unwrap() >= thr).unwrap();
        assert_eq!(rec["step"], first["step"], "threshold {thr}: {rec} vs {first}");
        assert_eq!(rec["accuracy"], first["accuracy"]);
        let step = rec["step"].as_u64().unwrap();
        // each epoch has one short batch (20000 % 64 = 32 examples) at a shuffled place: the
        // short batches passed are the completed epochs' and maybe the current epoch's
        let examples = rec["examples"].as_u64().unwrap();
        let epochs_done = step / steps_per_epoch;
        let short = (64 * step - examples) / 32;
        assert!((64 * step - examples) % 32 == 0 && (short == epochs_done || short == epochs_done + 1), "{rec}");
        assert_eq!(rec["tokens"].as_u64().unwrap(), 32 * examples, "{rec}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
