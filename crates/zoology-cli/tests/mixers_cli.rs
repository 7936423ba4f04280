//! End-to-end tests of `zoology mixers` (the list and the `--flops` table) and of the flag
//! errors of `zoology bench flops` (the bench itself is timed, so it is not run here).

mod common;
use common::{text, zoology};

#[test]
fn mixers_flops_prints_a_row_per_mixer() {
    let o = zoology(&["mixers", "--flops", "--d-model", "32", "--seq-len", "128"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("d=32, L=128") && out.contains("decode/tok") && out.contains("train/seq"), "{out}");
    for n in zoology::mixers::names() {
        assert!(out.lines().any(|l| l.starts_with(n)), "{n} missing:\n{out}");
    }
    // attention's row: 8·L·d² + 4·L²·d forward per sequence
    let want = 8.0 * 128.0 * 32.0 * 32.0 + 4.0 * 128.0 * 128.0 * 32.0;
    let row = out.lines().find(|l| l.starts_with("attention ")).unwrap();
    let fwd: f64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!((fwd - want).abs() < 1e-3 * want, "{row}: {fwd} vs {want}");
}

#[test]
fn mixers_flags_are_checked() {
    for (args, needle) in [
        (vec!["mixers", "--flops", "--d-model", "0"], "--d-model"),
        (vec!["mixers", "--flops", "--seq-len=-5"], "--seq-len"),
        (vec!["mixers", "--seq-len", "64"], "--flops"),
        (vec!["mixers", "--flops", "--d-model", "abc"], "--d-model"),
        (vec!["bench", "flops", "--seq-len", "0"], "--seq-len"),
        (vec!["bench", "flops", "--mixers", "nope"], "unknown mixer"),
    ] {
        let o = zoology(&args);
        assert!(!o.status.success(), "{args:?} succeeded: {}", text(&o));
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
    }
    let o = zoology(&["mixers"]);
    assert!(o.status.success() && text(&o).contains("state:"), "{}", text(&o));
}
