//! End-to-end tests of issue 10's verbs: `zoology construct --out` writes a run directory that
//! `generate` and `results show` read; `generate` decodes MQAR queries of a trained and of a
//! constructed model and its accuracy equals the parallel evaluation's; `bench decode` writes a
//! table, a JSON and a plot; bad input is a named error, never a panic.

mod common;
use common::{text, tmpdir, zoology};
use std::path::Path;
use std::process::Command;

/// The `decode X   parallel Y` accuracies `generate` printed.
fn accuracies(out: &str) -> (f64, f64) {
    let line = out
        .lines()
        .find(|l| l.contains("decode ") && l.contains("parallel "))
        .unwrap_or_else(|| panic!("no accuracy line:\n{out}"));
    let num =
        |key: &str| -> f64 { line.split(key).nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap() };
    (num("decode "), num("parallel "))
}

#[test]
fn construct_out_writes_a_run_that_generate_and_results_read() {
    let root = tmpdir("construct");
    let run = root.join("attn");
    let r = run.to_str().unwrap();
    let o = zoology(&["construct", "attention", "--seq-len", "64", "--vocab", "512", "--examples", "16", "--out", r]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("run directory") && out.contains("accuracy 1.0000 on the run's own test data"), "{out}");
    for f in ["config.toml", "checkpoint.safetensors", "summary.json"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (s["status"].as_str(), s["steps"].as_u64(), s["final_accuracy"].as_f64()),
        (Some("done"), Some(0), Some(1.0)),
        "{s}"
    );
    // generate: decoding answers every query as the parallel form does
    let o = zoology(&["generate", r, "--num-examples", "10", "--batch", "4"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(accuracies(&out), (1.0, 1.0), "{out}");
    assert!(
        out.contains("10 test examples")
            && out.contains("(0 differ between decode and parallel)")
            && out.contains("tok/s"),
        "{out}"
    );
    assert!(out.contains("per_example_accuracy"), "{out}");
    // results show lists it
    let o = zoology(&["results", "show", root.to_str().unwrap()]);
    let out = text(&o);
    // a constructed run is its own preset (never pooled with trained hybrids)
    assert!(o.status.success() && out.contains("construct-attention"), "{out}");
    // a second construct into the same directory is refused
    let o = zoology(&["construct", "attention", "--seq-len", "64", "--vocab", "512", "--examples", "16", "--out", r]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--out") && text(&o).contains("already holds a run"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&root);
}

const TRAINED: &str = r#"
seed = 3
threads = 1
[data]
vocab_size = 64
batch_size = 32
[[data.train]]
task = "mqar"
seq_len = 24
num_kv_pairs = 3
num_examples = 640
[[data.test]]
task = "mqar"
seq_len = 24
num_kv_pairs = 3
num_examples = 96
[model]
d_model = 32
max_position_embeddings = 24
state_mixer = "glu"
mixer = { name = "attention" }
[train]
epochs = 8
lr = 3e-3
early_stop_accuracy = 2.0
"#;

/// A (partly) trained model: decoding's accuracy equals the parallel evaluation's at whatever
/// accuracy the model has, and is not trivially 0 or 1 under random-init-only guessing.
#[test]
fn generate_on_a_trained_run_matches_the_parallel_evaluation() {
    let root = tmpdir("trained");
    let cfg = root.join("cfg.toml");
    std::fs::write(&cfg, TRAINED).unwrap();
    let run = root.join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_zoology"))
        .args(["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = zoology(&["generate", run.to_str().unwrap(), "--batch", "7"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    println!("{out}");
    let (d, p) = accuracies(&out);
    assert_eq!(d, p, "{out}");
    assert!(out.contains("96 test examples") && out.contains("(0 differ"), "{out}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let trained = s["final_accuracy"].as_f64().unwrap();
    assert!((trained - p).abs() < 1e-4, "the parallel accuracy is the run's own final accuracy ({trained}): {out}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn generate_and_bench_decode_refuse_bad_input_in_words() {
    let root = tmpdir("bad");
    let missing = root.join("nope");
    let no_ckpt = root.join("no-ckpt");
    std::fs::create_dir_all(&no_ckpt).unwrap();
    std::fs::write(no_ckpt.join("config.toml"), TRAINED).unwrap();
    let other = root.join("other-task");
    std::fs::create_dir_all(&other).unwrap();
    let induction = TRAINED
        .replace("task = \"mqar\"\nseq_len = 24\nnum_kv_pairs = 3\n", "task = \"induction_head\"\nseq_len = 24\n")
        .replace("max_position_embeddings = 24", "max_position_embeddings = 32");
    std::fs::write(other.join("config.toml"), &induction).unwrap();
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for (args, want) in [
        (vec!["generate".to_string(), s(&missing)], "not a directory"),
        (vec!["generate".to_string(), s(&empty)], "no config.toml"),
        (vec!["generate".to_string(), s(&no_ckpt)], "no checkpoint.safetensors"),
        (vec!["generate".to_string(), s(&other)], "induction_head"),
        (vec!["generate".to_string(), s(&no_ckpt), "--batch".into(), "0".into()], "--batch"),
        (vec!["generate".to_string(), s(&no_ckpt), "--num-examples".into(), "0".into()], "--num-examples"),
        (vec!["bench".into(), "decode".into(), "--mixers".into(), "nope".into()], "--mixers"),
        (vec!["bench".into(), "decode".into(), "--contexts".into(), "0".into()], "--contexts"),
        (vec!["bench".into(), "decode".into(), "--d-model".into(), "12".into()], "--d-model"),
        (vec!["bench".into(), "decode".into(), "--batch".into(), "0".into()], "--batch"),
        (vec!["bench".into(), "decode".into(), "--reps".into(), "0".into()], "--reps"),
        (vec!["bench".into(), "decode".into(), "--threads".into(), "0".into()], "--threads"),
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = zoology(&a);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}");
        assert!(out.contains(want) && !out.contains("panicked"), "{args:?}: want {want:?} in {out}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bench_decode_writes_table_json_and_plot() {
    let root = tmpdir("bench");
    let o = zoology(&[
        "bench",
        "decode",
        "--mixers",
        "gla",
        "--contexts",
        "16,8",
        "--batch",
        "2",
        "--d-model",
        "16",
        "--steps",
        "3",
        "--reps",
        "1",
        "--out",
        root.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("| attention | 8 |") && out.contains("| gla | 16 |") && out.contains("tok/s vs attn"),
        "{out}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("decode.json")).unwrap()).unwrap();
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{j}");
    // attention's KV cache doubles with the context; gla's state does not change
    let bytes = |m: &str, c: i64| {
        rows.iter().find(|r| r["mixer"] == m && r["context"] == c).unwrap()["state_bytes_per_sequence"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(bytes("attention", 16), 2 * bytes("attention", 8));
    assert_eq!(bytes("gla", 16), bytes("gla", 8));
    assert!(root.join("decode.png").exists() && root.join("decode.svg").exists());
    let _ = std::fs::remove_dir_all(&root);
}
