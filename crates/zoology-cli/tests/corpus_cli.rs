//! End-to-end tests of `zoology corpus fetch|info` on the built-in fixture corpus (offline).

use std::path::PathBuf;
use std::process::{Command, Output};

fn zoology(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zoology")).args(args).env_remove("ZOOLOGY_CORPUS_DIR").output().unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zoology-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn fetch_then_info_on_the_fixture() {
    let d = tmpdir("corpus");
    let ds = d.to_str().unwrap();
    let o = zoology(&["corpus", "fetch", "--corpus", "fixture", "--dir", ds, "--tokenizer", "bpe300", "-q"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("tokenizer bpe300") && out.contains("FixtureNotes"), "{out}");
    assert!(d.join("fixture/bpe300/train.bin").exists() && d.join("fixture/documents.jsonl").exists());

    let o = zoology(&["corpus", "fetch", "--corpus", "fixture", "--dir", ds, "--tokenizer", "bpe300", "-q"]);
    let (out, _) = text(&o);
    assert_eq!(out.matches("(cached, verified)").count(), 3, "{out}");

    let plots = d.join("plots");
    let o = zoology(&["corpus", "info", "--corpus", "fixture", "--dir", ds, "--windows", "32,128", "--plot", plots.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("AR hits in the train split") && out.contains("Bigram frequency buckets"), "{out}");
    let row = out.lines().find(|l| l.trim_start().starts_with("128 ")).unwrap_or_else(|| panic!("a row for L = 128: {out}"));
    assert!(row.contains('%'), "{row}");
    assert!(plots.join("gaps-fixture-bpe300-train.png").exists() && plots.join("gaps-fixture-bpe300-train.svg").exists());
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
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("no sword-comm-tdavid_2.1-1_*.deb") && err.contains("apt-get download sword-comm-tdavid=2.1-1"), "{err}");

    for (args, want) in [
        (vec!["corpus", "fetch", "--corpus", "fixture", "--dir", ds, "--tokenizer", "bpe12"], "--tokenizer"),
        (vec!["corpus", "fetch", "--corpus", "pile", "--dir", ds], "unknown corpus `pile`"),
        (vec!["corpus", "info", "--corpus", "fixture", "--dir", ds], "zoology corpus fetch"),
        (vec!["corpus", "info", "--corpus", "fixture", "--dir", ds, "--split", "test"], "--split"),
        (vec!["corpus", "info", "--corpus", "fixture", "--dir", ds, "--windows", "0"], "--windows"),
    ] {
        let o = zoology(&args);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&d).ok();
}
