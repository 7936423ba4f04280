//! `configs/mad.toml` expands to MAD's benchmark: its 66 task settings (athms/mad-lab
//! `configs/tasks/*.yml`, written out again here by hand from those files, independently of
//! `scripts/make-mad-configs.py`) × its optimiser grid (`mad/configs.py`), per mixer, with MAD's
//! training settings; `configs/mad-cpu.toml` is a subset of those settings at reduced size.

use crate::sweep::grid::Sweep;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// (task, vocab, seq_len, num_train, extra field) for every MAD setting.
fn mad_settings() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |task: &str, v: i64, l: i64, n: i64, extra: &str| {
        out.insert(format!("{task} V={v} L={l} N={n} {extra}"));
    };
    // in-context-recall.yml, fuzzy-in-context-recall.yml, compression.yml: baseline + changes
    for (task, l0, extra) in [("in_context_recall", 128, ""), ("fuzzy_recall", 128, "k=3 v=3"), ("compression", 32, "")]
    {
        add(task, 16, l0, 12800, extra);
        for v in [32, 64, 128] {
            add(task, v, l0, 12800, extra);
        }
        let ls: &[i64] = if task == "compression" { &[64, 128, 256] } else { &[256, 512, 1024] };
        for &l in ls {
            add(task, 16, l, 12800, extra);
        }
        for n in [6400, 3200, 1600, 800] {
            add(task, 16, l0, n, extra);
        }
    }
    // noisy-in-context-recall.yml
    add("noisy_recall", 32, 128, 12800, "noise=16 p=0.2");
    for v in [48, 80, 144] {
        add("noisy_recall", v, 128, 12800, "noise=16 p=0.2");
    }
    for l in [256, 512, 1024] {
        add("noisy_recall", 32, l, 12800, "noise=16 p=0.2");
    }
    for n in [6400, 3200, 1600, 800] {
        add("noisy_recall", 32, 128, n, "noise=16 p=0.2");
    }
    for p in ["0.4", "0.6", "0.8"] {
        add("noisy_recall", 32, 128, 12800, &format!("noise=16 p={p}"));
    }
    // selective-copying.yml
    add("selective_copying", 16, 256, 12800, "copy=16");
    for v in [32, 64, 128] {
        add("selective_copying", v, 256, 12800, "copy=16");
    }
    for l in [512, 1024] {
        add("selective_copying", 16, l, 12800, "copy=16");
    }
    for n in [6400, 3200, 1600, 800] {
        add("selective_copying", 16, 256, n, "copy=16");
    }
    for c in [32, 64, 96] {
        add("selective_copying", 16, 256, 12800, &format!("copy={c}"));
    }
    // memorization.yml
    add("memorization", 256, 32, 256, "");
    for v in [512, 1024, 2048, 4096, 8192] {
        add("memorization", v, 32, 256, "");
    }
    out
}

/// The same description of a run's training segment.
fn describe(cfg: &crate::config::RunConfig) -> String {
    let t = &cfg.data.train[0];
    let f = t.fields();
    let g = |k: &str| f.get(k).map(super::value_text).unwrap_or_default();
    let extra = match t.name() {
        "fuzzy_recall" => format!("k={} v={}", g("k_motif_size"), g("v_motif_size")),
        "noisy_recall" => format!("noise={} p={}", g("noise_vocab_size"), g("frac_noise")),
        "selective_copying" => format!("copy={}", g("num_tokens_to_copy")),
        _ => String::new(),
    };
    format!("{} V={} L={} N={} {extra}", t.name(), cfg.data.vocab_size, g("seq_len"), t.num_examples())
}

fn load(name: &str) -> Sweep {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs").join(name);
    Sweep::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn mad_toml_is_mads_settings_times_its_optimiser_grid() {
    let s = load("mad.toml");
    let want = mad_settings();
    assert_eq!(want.len(), 66, "MAD has 66 settings");
    let presets: BTreeSet<&str> = s.runs.iter().map(|r| r.preset.as_str()).collect();
    assert_eq!(s.runs.len(), presets.len() * 66 * 6, "{} runs for {} mixers", s.runs.len(), presets.len());
    // per mixer and setting: exactly the 6 optimiser points
    let mut grid: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in &s.runs {
        let c = &r.config;
        let setting = describe(c);
        assert!(want.contains(&setting), "not a MAD setting: {setting}");
        let t = &c.train;
        assert!((t.lr * t.min_lr_ratio - 1e-6).abs() < 1e-12, "cosine floor {} at lr {}", t.lr * t.min_lr_ratio, t.lr);
        grid.entry((r.preset.clone(), setting.clone())).or_default().insert(format!("{:e}/{}", t.lr, t.weight_decay));
        // MAD's common settings
        assert_eq!(
            (c.seed, c.data.batch_size, t.epochs, c.model.d_model, c.model.n_layers, c.model.max_position_embeddings),
            (12345, 128, 200, 128, 2, 0)
        );
        assert_eq!(t.early_stop_accuracy, 0.999);
        assert_eq!((c.model.embed_dropout, c.model.tie_embeddings), (0.0, false));
        // the test segment is the same task and setting with MAD's 1,280 test examples
        let (tr, te) = (&c.data.train[0], &c.data.test[0]);
        assert_eq!((c.data.test.len(), te.name(), te.num_examples()), (1, tr.name(), 1280));
        let mut a = tr.fields();
        let mut b = te.fields();
        a.remove("num_examples");
        b.remove("num_examples");
        assert_eq!(a, b, "{setting}: test segment differs");
        assert_eq!(c.model.backbone == crate::tasks::Backbone::Autoencoder, tr.name() == "compression");
    }
    let opt: BTreeSet<String> =
        ["1e-4/0", "1e-4/0.1", "5e-4/0", "5e-4/0.1", "1e-3/0", "1e-3/0.1"].iter().map(|s| s.to_string()).collect();
    for p in &presets {
        for w in &want {
            assert_eq!(grid.get(&(p.to_string(), w.clone())), Some(&opt), "{p}: {w}");
        }
    }
}
