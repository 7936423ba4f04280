//! End-to-end tests of issue 24's verbs: `zoology export` writes a Zoology state dict, its
//! ModelConfig and the run's test data; `zoology import` makes a run directory from them that
//! scores what the original scored and that `generate` decodes; bad input is a named error.

mod common;
use common::{text, tmpdir, zoology};

const CONFIG: &str = r#"seed = 5
[data]
vocab_size = 32
batch_size = 16
[[data.train]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 64
[[data.test]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 32
[model]
d_model = 16
mixer = { name = "base_conv", kernel_size = [3, -1] }
[train]
epochs = 1
schedule = "cosine_per_epoch"
"#;

#[test]
fn export_then_import_round_trips_a_run() {
    let root = tmpdir("interop");
    let cfg = root.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let (run, back, out) = (root.join("run"), root.join("back"), root.join("m.safetensors"));
    let o = zoology(&["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = zoology(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "zoology",
        "--out",
        out.to_str().unwrap(),
        "--test-data",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["m.safetensors", "m.json", "m.test.safetensors"] {
        assert!(root.join(f).exists(), "{f} missing:\n{}", text(&o));
    }
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("m.json")).unwrap()).unwrap();
    assert_eq!(j["model"]["sequence_mixer"]["name"], "zoology.mixers.base_conv.BaseConv", "{j}");
    let o = zoology(&[
        "import",
        out.to_str().unwrap(),
        "--config",
        root.join("m.json").to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let acc = s["final_accuracy"].as_f64().unwrap();
    assert!(t.contains(&format!("{acc:.4}")), "import should score the original's {acc}:\n{t}");
    let o = zoology(&["generate", back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_input_is_a_named_error() {
    let root = tmpdir("interop-bad");
    let o = zoology(&["export", root.to_str().unwrap(), "--out", root.join("m.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("RUN_DIR"), "{}", text(&o));
    let o = zoology(&["export", root.to_str().unwrap(), "--out", root.join("m.pt").to_str().unwrap()]);
    assert!(text(&o).contains("--out") && text(&o).contains(".safetensors"), "{}", text(&o));
    // a bare Zoology ModelConfig has no data settings: --base is required, by name
    let cfg = root.join("z.json");
    std::fs::write(&cfg, r#"{"d_model": 16, "sequence_mixer": {"name": "zoology.mixers.attention.MHA"}}"#).unwrap();
    let st = root.join("z.safetensors");
    std::fs::write(&st, b"not a safetensors file").unwrap();
    let o = zoology(&[
        "import",
        st.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        root.join("r").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--base"), "{}", text(&o));
}
