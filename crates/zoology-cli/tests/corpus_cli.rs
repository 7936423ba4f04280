//! End-to-end tests of `zoology corpus fetch|info` on the built-in fixture corpus (offline).

mod common;
use common::{streams, tmpdir};
use std::process::{Command, Output};

fn zoology(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zoology")).args(args).env_remove("ZOOLOGY_CORPUS_DIR").output().unwrap()
}

#[test]
fn fetch_then_info_on_the_fixture() {
    let d = tmpdir("corpus");
    let ds = d.to_str().unwrap();
    let o = zoology(&["corpus", "fetch", "--corpus", "fixture", "--dir", ds, "--tokenizer", "bpe300", "-q"]);
    let (out, err) = streams(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("tokenizer bpe300") && out.contains("FixtureNotes"), "{out}");
    assert!(d.join("fixture/bpe300/train.bin").exists() && d.join("fixture/documents.jsonl").exists());

    let o = zoology(&["corpus", "fetch", "--corpus", "fixture", "--dir", ds, "--tokenizer", "bpe300", "-q"]);
    let (out, _) = streams(&o);
    assert_eq!(out.matches("(cached, verified)").count(), 3, "{out}");

    let plots = d.join("plots");
    let o = zoology(&[
        "corpus",
        "info",
        "--corpus",
        "fixture",
        "--dir",
        ds,
        "--windows",
        "32,128",
        "--plot",
        plots.to_str().unwrap(),
    ]);
    let (out, err) = streams(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("AR hits in the train split") && out.contains("Bigram frequency buckets"), "{out}");
    let row =
        out.lines().find(|l| l.trim_start().starts_with("128 ")).unwrap_or_else(|| panic!("a row for L = 128: {out}"));
    assert!(row.contains('%'), "{row}");
    assert!(
        plots.join("gaps-fixture-bpe300-train.png").exists() && plots.join("gaps-fixture-bpe300-train.svg").exists()
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_input_is_a_named_error() {
    let d = tmpdir("corpus-bad");
    let ds = d.to_str().unwrap();
    let empty = d.join("no-debs");
    std::fs::create_dir_all(&empty).unwrap();
    // the real corpus from a directory that lacks its packages: no network is touched
    let o = zoology(&["corpus", "fetch", "--dir", ds, "--debs", empty.to_str().unwrap(), "-q"]);
    let (_, err) = streams(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("no sword-comm-tdavid_2.1-1_*.deb") && err.contains("apt-get download sword-comm-tdavid=2.1-1"),
        "{err}"
    );

    for (args, want) in [
        (vec!["corpus", "fetch", "--corpus", "fixture", "--dir", ds, "--tokenizer", "bpe12"], "--tokenizer"),
        (vec!["corpus", "fetch", "--corpus", "pile", "--dir", ds], "unknown corpus `pile`"),
        (vec!["corpus", "info", "--corpus", "fixture", "--dir", ds], "zoology corpus fetch"),
        (vec!["corpus", "info", "--corpus", "fixture", "--dir", ds, "--split", "test"], "--split"),
        (vec!["corpus", "info", "--corpus", "fixture", "--dir", ds, "--windows", "0"], "--windows"),
    ] {
        let o = zoology(&args);
        let (_, err) = streams(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&d).ok();
}

fn zoology_in(corpus_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zoology")).args(args).env("ZOOLOGY_CORPUS_DIR", corpus_dir).output().unwrap()
}

/// Issue 9 end to end on the fixture corpus (prepared on first use, offline): a sweep of two
/// tiny text LMs, `zoology arhits` on its results directory, `zoology report` including the
/// AR-hit section; and the named errors for runs that are not text models.
#[test]
fn text_sweep_then_arhits_and_report() {
    let d = tmpdir("arhits");
    let corpus = d.join("corpus");
    let cfg = d.join("text.toml");
    std::fs::write(
        &cfg,
        r#"seed = 3
[data]
vocab_size = 300
batch_size = 16
[[data.train]]
task = "text"
corpus = "fixture"
tokenizer = "bpe300"
seq_len = 32
num_examples = 256
[[data.test]]
task = "text"
corpus = "fixture"
tokenizer = "bpe300"
seq_len = 32
num_examples = 32
[model]
d_model = 32
n_layers = 2
max_position_embeddings = 32
[train]
epochs = 2
lr = 3e-3
[sweep]
name = "text-tiny"
[sweep.mixers.attention]
mixer = { name = "attention", num_heads = 1 }
[sweep.mixers.base_conv]
mixer = { name = "base_conv" }
"#,
    )
    .unwrap();
    let out = d.join("res");
    let o =
        zoology_in(&corpus, &["sweep", "run", cfg.to_str().unwrap(), "--workers", "1", "--out", out.to_str().unwrap()]);
    let (so, se) = streams(&o);
    assert!(o.status.success(), "{so}\n{se}");

    let o = zoology_in(&corpus, &["arhits", out.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    let (so, se) = streams(&o);
    assert!(o.status.success(), "{so}\n{se}");
    assert!(so.contains("fixture valid split, L = 32"), "{so}");
    let row = |name: &str| {
        so.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no row {name}: {so}")).to_string()
    };
    // the reference (attention) has no gap; base_conv's gap share is a percentage
    assert!(row("attention ").contains('–'), "{so}");
    assert!(row("base_conv ").trim_end().ends_with('%'), "{so}");
    assert!(so.contains("perplexity by training-bigram count") && so.contains("perplexity ratio to attention"), "{so}");
    // by distance: base_conv's cells carry their ratio to attention, attention's do not
    assert!(so.contains("AR-hit perplexity by distance back"), "{so}");
    let dist = so.split("by distance back").nth(1).unwrap();
    let dist_row = |name: &str| dist.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {so}"));
    assert!(dist_row("base_conv").contains('×') && !dist_row("attention").contains('×'), "{so}");
    for f in [
        "arhits.json",
        "arhits.md",
        "arhits_frequency.png",
        "arhits_frequency.svg",
        "arhits_ar_vs_other.png",
        "arhits_gap_distance.png",
        "arhits_gap_trajectory.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("arhits.json")).unwrap()).unwrap();
    let models = j["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    // every window's targets are counted once per model, and the slices partition them
    let windows = j["windows"].as_u64().unwrap();
    for m in models {
        let r = &m["report"];
        let all = r["all"]["tokens"].as_u64().unwrap();
        assert_eq!(all, windows * 32);
        let parts: u64 =
            ["ar_hit", "first_occurrence", "other"].iter().map(|k| r[*k]["tokens"].as_u64().unwrap()).sum();
        assert_eq!(parts, all);
        let ppl = r["all"]["perplexity"].as_f64().unwrap();
        assert!(ppl > 1.0 && ppl < 300.0, "perplexity {ppl} of a model over 300 tokens after some training");
    }
    assert_eq!(j["reference"].as_str(), Some("attention"));
    // the gap over training: base_conv's ratios to attention at every evaluation both made
    assert!(so.contains("perplexity ratio to attention over training"), "{so}");
    let t = j["trajectories"].as_array().unwrap_or_else(|| panic!("no trajectories: {j}"));
    assert_eq!(t.len(), 1, "{j}");
    assert_eq!(t[0]["model"].as_str(), Some("base_conv"));
    let pts = t[0]["points"].as_array().unwrap();
    assert!(!pts.is_empty() && pts.iter().all(|p| p["ar_hit_ratio"].as_f64().unwrap() > 0.0), "{}", t[0]);
    // the copy probes: one score per source and model, each half on its own targets
    assert!(so.contains("copy probes") && so.contains("repeated text"), "{so}");
    // the text repeat by distance: p = 4, 8, 16 at L = 32, a "repeat | first" cell per model
    assert!(so.contains("text chunk repeated p tokens later"), "{so}");
    let rep = so.split("text chunk repeated p tokens later").nth(1).unwrap();
    assert_eq!(rep.lines().find(|l| l.starts_with("base_conv")).unwrap().matches('|').count(), 3, "{so}");
    for m in models {
        let c = m["copy"].as_object().unwrap_or_else(|| panic!("no copy probes: {m}"));
        let mut sources: Vec<&str> = c.keys().map(|k| k.as_str()).collect();
        sources.sort();
        assert_eq!(sources, ["frequent", "text", "uniform"]);
        assert_eq!(m["copy_by_distance"].as_object().map(|o| o.len()), Some(3), "{m}");
        for s in c.values() {
            let (acc, first) = (s["accuracy"].as_f64().unwrap(), s["first_half_loss"].as_f64().unwrap());
            assert!((0.0..=1.0).contains(&acc) && first > 0.0 && first < 20.0, "{s}");
        }
    }

    let o = zoology_in(&corpus, &["report", out.to_str().unwrap()]);
    let (so, se) = streams(&o);
    assert!(o.status.success(), "{so}\n{se}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("Real text: perplexity on AR hits") && html.contains("<svg"),
        "report lacks the AR-hit section"
    );

    // bad input: a reference that is not there, a directory that is not a run, an MQAR run
    let o = zoology_in(&corpus, &["arhits", out.to_str().unwrap(), "--reference", "mamba", "-q"]);
    assert!(!o.status.success() && streams(&o).1.contains("--reference"), "{}", streams(&o).1);
    let o = zoology_in(&corpus, &["arhits", d.to_str().unwrap()]);
    assert!(!o.status.success() && streams(&o).1.contains("RUN_DIR"), "{}", streams(&o).1);
    let mqar = d.join("mqar.toml");
    std::fs::write(&mqar, "[data]\nvocab_size = 32\nbatch_size = 8\n[[data.train]]\ntask = \"mqar\"\nseq_len = 16\nnum_kv_pairs = 2\nnum_examples = 16\n[[data.test]]\ntask = \"mqar\"\nseq_len = 16\nnum_kv_pairs = 2\nnum_examples = 8\n[model]\nd_model = 16\nn_layers = 1\n[train]\nepochs = 1\n").unwrap();
    let run = d.join("mqar-run");
    let o = zoology_in(&corpus, &["train", mqar.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", streams(&o).1);
    let o = zoology_in(&corpus, &["arhits", run.to_str().unwrap()]);
    let (_, se) = streams(&o);
    assert!(!o.status.success() && se.contains("task = \"text\""), "{se}");

    // a run still in progress (a checkpoint, no summary) is left out of a results directory,
    // with a note, and evaluated when named
    let bc = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("base_conv"))
        .unwrap();
    std::fs::remove_file(bc.join("summary.json")).unwrap();
    let o =
        zoology_in(&corpus, &["arhits", out.to_str().unwrap(), "-q", "--max-windows", "2", "--copy-sequences", "0"]);
    let (so, se) = streams(&o);
    assert!(o.status.success(), "{so}\n{se}");
    assert!(se.contains("left out") && se.contains("base_conv"), "{se}");
    assert!(!so.lines().any(|l| l.starts_with("base_conv ")) && !so.contains("copy probes"), "{so}");
    let o = zoology_in(&corpus, &["arhits", bc.to_str().unwrap(), "-q", "--max-windows", "2"]);
    let (so, se) = streams(&o);
    assert!(o.status.success() && so.lines().any(|l| l.starts_with("base_conv ")), "{so}\n{se}");
    std::fs::remove_dir_all(&d).ok();
}
