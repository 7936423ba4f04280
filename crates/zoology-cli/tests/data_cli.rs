//! End-to-end tests of the task verbs: `zoology tasks`, `zoology data` (show, export, errors)
//! and a Python script that loads every exported format with numpy and torch/safetensors.

mod common;
use common::{text, tmpdir, zoology};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn tasks_lists_every_registered_task() {
    let o = zoology(&["tasks"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let names = zoology::tasks::names();
    assert!(names.len() >= 14, "{names:?}");
    for n in names {
        assert!(out.lines().any(|l| l.starts_with(&format!("{n} "))), "{n} missing from `zoology tasks`:\n{out}");
    }
    for word in ["supervision:", "metric:", "slices:", "defaults:", "MulticlassAccuracy", "per-example", "micro"] {
        assert!(out.contains(word), "{word}");
    }
}

#[test]
fn readme_data_command_shows_mqar() {
    let o = zoology(&["data", "mqar", "--seq-len", "64", "--kv", "4", "--show", "3"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let examples: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with("queries")).collect();
    assert_eq!(examples.len(), 3, "{out}");
    assert!(examples.iter().all(|l| l.matches('→').count() == 4), "4 marked queries per example:\n{out}");
}

#[test]
fn bad_options_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["data", "mqar", "--kv", "40"], "--kv:"),
        (&["data", "mqar", "--seq-len", "63"], "--seq-len:"),
        (&["data", "mqar", "seq_len=63"], "seq_len:"),
        (&["data", "mqar", "--kvv", "4"], "--kvv:"),
        (&["data", "mqar", "--vocab-size", "16"], "--vocab-size:"),
        (&["data", "mqar", "--show", "100000000"], "--show:"),
        (&["data", "mqar", "--out", "x.csv"], "--out"),
        (&["data", "mqar", "--split", "valid"], "--split"),
        (&["data", "mqar", "--seq-len"], "--seq-len: needs a value"),
        (&["data", "noisy_recall", "--noise", "1.5"], "--noise:"),
        (&["data", "mqarr"], "unknown task"),
        (&["data", "mqar", "--num-examples", "100000000000", "--out", "/tmp/x.npy"], "--num-examples:"),
    ];
    for (args, want) in cases {
        let o = zoology(args);
        let out = text(&o);
        assert!(!o.status.success(), "{args:?} should fail:\n{out}");
        assert!(out.contains(want), "{args:?}: error should name {want:?}:\n{out}");
        assert!(!out.contains("panicked"), "{args:?} panicked:\n{out}");
    }
}

/// Every task shows its examples with targets marked and exports (formats rotate over the
/// tasks; MQAR in all three, and the training split of the tasks whose training targets
/// differ); a Python script loads the files with numpy and with torch/safetensors and checks
/// shapes, dtypes, ids and the task's targets. One `zoology` process per file (each loads
/// libtorch, so the count is kept small).
#[test]
fn every_task_shows_and_exports_for_numpy_and_pytorch() {
    let dir = tmpdir("export");
    let mut jobs: Vec<(&str, &str, &str)> = vec![];
    for (i, n) in zoology::tasks::names().into_iter().enumerate() {
        jobs.push((n, "test", ["safetensors", "npz", "npy"][i % 3]));
    }
    jobs.extend([
        ("mqar", "test", "npz"),
        ("mqar", "test", "npy"),
        ("in_context_recall", "train", "safetensors"),
        ("fuzzy_recall", "train", "npy"),
        ("induction_head", "train", "npz"),
    ]);
    let mut files = vec![];
    for (k, (n, split, ext)) in jobs.iter().enumerate() {
        let f = dir.join(format!("{n}-{split}-{k}.{ext}"));
        let o = zoology(&[
            "data",
            n,
            "--num-examples",
            "6",
            "--seed",
            "5",
            "--split",
            split,
            "--show",
            "2",
            "--out",
            f.to_str().unwrap(),
        ]);
        let out = text(&o);
        assert!(o.status.success(), "{n}: {out}");
        assert!(out.contains("example 0:") && out.contains("example 1:") && !out.contains("example 2:"), "{n}:\n{out}");
        let blocks: Vec<&str> = out.split("\nexample ").skip(1).collect();
        assert_eq!(blocks.len(), 2, "{n}:\n{out}");
        assert!(blocks.iter().all(|b| b.contains('→')), "{n}: an example without a marked target:\n{out}");
        assert!(f.exists() && f.with_extension("json").exists(), "{}", f.display());
        files.push(f);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_export.py");
    let py = std::env::var("ZOOLOGY_PYTHON").unwrap_or_else(|_| "python".into());
    let o = Command::new(&py).arg(&script).args(&files).output().unwrap_or_else(|e| panic!("running {py}: {e} (run the tests through scripts/with-torch, which provides python with numpy, torch and safetensors)"));
    let out = text(&o);
    assert!(o.status.success(), "{}", out);
    assert_eq!(out.lines().filter(|l| l.starts_with("ok ")).count(), files.len(), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
