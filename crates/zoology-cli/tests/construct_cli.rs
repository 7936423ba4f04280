//! End-to-end tests of `zoology construct`: a tiny hand-set model solves MQAR and prints what
//! it costs; bad flags exit 1 with a message naming the flag, never a panic.

mod common;
use common::{text, zoology};

#[test]
fn construct_attention_prints_accuracy_width_parameters_and_state() {
    let o = zoology(&["construct", "attention", "--seq-len", "64", "--vocab", "512", "--examples", "16"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for word in [
        "mixer attention",
        "L=64",
        "kv=4",
        "V=512",
        "d=128",
        "parameters",
        "state",
        "accuracy 1.0000",
        "16 test examples",
    ] {
        assert!(out.contains(word), "`{word}` missing:\n{out}");
    }
}

#[test]
fn construct_bad_flags_name_the_flag() {
    for (args, flag) in [
        (vec!["construct", "attention", "--d", "12"], "--d"),
        (vec!["construct", "base_conv", "--kv", "0"], "--kv"),
        (vec!["construct", "base_conv", "--seq-len", "64", "--kv", "17"], "--kv"),
        (vec!["construct", "attention", "--seq-len", "63"], "--seq-len"),
        (vec!["construct", "attention", "--vocab", "40"], "--vocab"),
        (vec!["construct", "attention", "--examples", "0"], "--examples"),
        (vec!["construct", "mamba"], "attention"),
    ] {
        let o = zoology(&args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}");
        assert!(out.contains(flag) && !out.contains("panicked"), "{args:?}: {out}");
    }
}
