//! End-to-end tests of `zoology train`: resume after SIGKILL, divergence, config errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn zoology() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zoology"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zoology-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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

    let st = zoology().args(["train", "--resume", cut.to_str().unwrap(), "-q"]).status().unwrap();
    assert!(st.success());
    let (a, b) = (summary(&full), summary(&cut));
    assert_eq!(a["final_accuracy"], b["final_accuracy"], "final accuracy differs after resume");
    assert_eq!(a["best_accuracy"], b["best_accuracy"]);
    assert_eq!(a["final_loss"], b["final_loss"]);
    assert_eq!(a["steps"], b["steps"]);
    assert_eq!(evals(&full), evals(&cut), "eval history differs after resume");
    // the model learned something (the test is not comparing two untrained runs)
    assert!(a["final_accuracy"].as_f64().unwrap() > 0.05, "{a}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn divergence_stops_with_reason_not_panic() {
    let root = tmpdir("diverge");
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let out = root.join("run");
    let o = zoology()
        .args(["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q", "--set", "train.lr=1e30", "--set", "train.epochs=2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&out);
    assert_eq!(s["stop_reason"], "diverged");
    assert_eq!(s["status"], "diverged");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn config_errors_are_messages_with_field_paths() {
    let root = tmpdir("errors");
    let cases = [
        (TINY.replace("d_model = 32", "d_model = 32\ndmodel = 3"), "dmodel"),
        (TINY.replace("num_kv_pairs = 4\nnum_examples = 1600", "num_kv_pairs = 9\nnum_examples = 1600"), "data.train[0].num_kv_pairs"),
        (TINY.replace("lr = 3e-3", "lr = \"fast\""), "train.lr"),
        (TINY.replace("name = \"attention\"", "name = \"attn\""), "model.mixer.name"),
        (TINY.replace("[model]", "[model]\nmax_position_embeddings = 3"), "max_position_embeddings"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = root.join(format!("c{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let o = zoology().args(["train", p.to_str().unwrap(), "--out", root.join(format!("r{i}")).to_str().unwrap(), "-q"]).output().unwrap();
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
    let o = zoology().args(["train", p.to_str().unwrap(), "--device", "tpu", "-q", "--out", root.join("d").to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("device"));
    let o = zoology().args(["train", "/nonexistent.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.toml"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn data_verb_shows_examples() {
    let o = zoology().args(["data", "mqar", "--seq-len", "64", "--kv", "4", "--show", "3"]).output().unwrap();
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(s.matches("example ").count(), 3, "{s}");
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
    let o = zoology().args(["train", example.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&out);
    println!("tiny attention: {s}");
    assert!(s["best_accuracy"].as_f64().unwrap() >= 0.99, "{s}");
    assert_eq!(s["stop_reason"], "early_stop");
    let _ = std::fs::remove_dir_all(&root);
}
