//! Learnability: a small 2-layer attention model solves a small instance of every task on the
//! CPU in seconds (release build), scored by the task's own metric on fresh test data.
//! Each threshold sits far above what a model that ignores the context can reach (stated per
//! task). These check that a task is learnable as generated (layout, targets and supervision
//! consistent with each other), not how hard it is at the peers' sizes.

use super::{Split, TaskConfig};
use crate::device::Runtime;
use crate::model::{LanguageModel, ModelConfig};
use crate::train::metrics::EvalResult;
use crate::train::optim::AdamW;
use crate::train::trainer::{evaluate, sparse_head_loss, DeviceData};
use tch::nn;

struct Case {
    task: &'static str,
    /// Task fields (TOML), without `num_examples`.
    fields: &'static str,
    vocab: usize,
    train: usize,
    model: &'static str,
    steps: usize,
    batch: i64,
    lr: f64,
    /// Test accuracy (the task's metric) the model must exceed.
    threshold: f64,
    /// Whose supervision to train on: the task's training split (its own), or its test split
    /// (only the scored positions) for tasks whose training supervision is a full LM loss that
    /// learns the scored skill only after tens of thousands of steps (safari's).
    train_on: Split,
}

fn task_cfg(c: &Case, n: usize) -> TaskConfig {
    let mut t: toml::Table = toml::from_str(c.fields).unwrap();
    t.insert("num_examples".into(), toml::Value::Integer(n as i64));
    let cfg = TaskConfig::from_fields(c.task, &t, "test").unwrap();
    cfg.validate(c.vocab, "test").unwrap();
    cfg
}

/// Trains with AdamW (linear warmup over ≤ 100 steps, constant, linear decay to 0 over the last
/// quarter: recall tasks leave their plateau at full rate, then settle) on `c.train` examples and evaluates on 512 fresh ones.
fn learn(c: &Case, seed: i64) -> EvalResult {
    // one intra-op thread per test (OpenMP's setting is per calling thread): two tests at a
    // time on two cores, instead of each test oversubscribing them
    tch::set_num_threads(1);
    let t0 = std::time::Instant::now();
    let train = task_cfg(c, c.train).generate_split(c.vocab, 1, c.train_on);
    let test = task_cfg(c, 512).generate_split(c.vocab, 2, Split::Test);
    let l = train.seq_len.max(test.seq_len) as i64;
    let cfg: ModelConfig = toml::from_str(c.model).unwrap();
    cfg.validate(c.vocab as i64, l).unwrap();
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let model = LanguageModel::new(&vs.root(), &cfg, c.vocab as i64, l).unwrap();
    let mut opt = AdamW::new(vs.variables().into_iter().collect(), 0.0, 0.9, 0.999, 1e-8, false);
    let (xs, ys) = train.to_tensors(tch::Device::Cpu);
    let n = train.n as i64;
    let warm = (c.steps / 10).min(100);
    let decay = c.steps * 3 / 4;
    let trace = std::env::var("TRACE").is_ok();
    for step in 0..c.steps {
        if trace && step % 250 == 0 {
            let ev = evaluate(
                &model,
                &DeviceData::new(vec![task_cfg(c, 256).generate_split(c.vocab, 2, Split::Test)], &Runtime::cpu()),
                256,
            );
            println!("  step {step}: {:.3} ({:.1} s)", ev.accuracy, t0.elapsed().as_secs_f64());
        }
        let start = (step as i64 * c.batch) % (n - c.batch + 1);
        opt.zero_grad();
        let loss = sparse_head_loss(&model, &xs.narrow(0, start, c.batch), &ys.narrow(0, start, c.batch), true).0;
        loss.backward();
        let lr = if step < warm {
            c.lr * (step + 1) as f64 / warm as f64
        } else if step < decay {
            c.lr
        } else {
            c.lr * (c.steps - step) as f64 / (c.steps - decay) as f64
        };
        opt.step(lr);
    }
    let ev = evaluate(&model, &DeviceData::new(vec![test], &Runtime::cpu()), 256);
    println!(
        "learn {} (init seed {seed}): {} {:.4} (threshold {}) in {:.1} s",
        c.task,
        ev.metric,
        ev.accuracy,
        c.threshold,
        t0.elapsed().as_secs_f64()
    );
    ev
}

/// Initialisations tried, in order, before a task counts as not learnable at its budget.
const INIT_SEEDS: [i64; 3] = [0, 1, 2];

/// Passes when one of [`INIT_SEEDS`] (same data, another initialisation) passes the threshold.
/// Whether and when a small model leaves a recall task's plateau is a tipping point that the
/// CPU's rounding moves: tuned on an Intel CPU with AMX, mqar at seed 0 stayed on its plateau
/// (0.24 after 3000 steps) on an AMD EPYC, and in_context_recall reached 0.96 and fell back to
/// 0.37. A task whose layout, targets or supervision disagree fails at every seed.
fn check(c: Case) {
    let (mut reached, mut metric) = (vec![], String::new());
    for seed in INIT_SEEDS {
        let ev = learn(&c, seed);
        if ev.accuracy > c.threshold {
            return;
        }
        reached.push(format!("{:.4} (seed {seed})", ev.accuracy));
        metric = ev.metric;
    }
    panic!("{}: attention reached {metric} {} ≤ {} on a small instance", c.task, reached.join(", "), c.threshold);
}

/// 2-layer one-head softmax attention, d = 64, learned positions, no MLP (Zoology's paper
/// configs; the recipe of `examples/mqar-tiny-attention.toml`).
const ATTN: &str = "d_model = 64\nn_layers = 2\nmax_position_embeddings = 64\nembed_dropout = 0.0\nstate_mixer = \"identity\"\nmixer = { name = \"attention\", num_heads = 1 }";
/// The Based recipe (the quickstart's "attention"): a short convolution (BaseConv k = 3) in
/// layer 0, one-head softmax attention in layer 1. Plain 2-layer attention stays on its recall
/// plateau far longer than these budgets.
const BASED_RECIPE: &str = "d_model = 64\nn_layers = 2\nmax_position_embeddings = 64\nembed_dropout = 0.0\nstate_mixer = \"identity\"\nmixer = { name = \"hybrid\", layers = [{ name = \"base_conv\", kernel_size = 3 }, { name = \"attention\", num_heads = 1 }] }";
/// The same with the MLP state mixer (the circuit tasks need a nonlinearity per position).
const ATTN_MLP: &str = "d_model = 64\nn_layers = 2\nmax_position_embeddings = 64\nembed_dropout = 0.0\nstate_mixer = \"mlp\"\nmixer = { name = \"attention\", num_heads = 1 }";

macro_rules! learn_test {
    ($name:ident, $case:expr) => {
        #[test]
        fn $name() {
            check($case);
        }
    };
}

/// A case whose budget is not tuned yet: the small attention model does not pass its threshold
/// at this budget (the value it reached is in the reason). Run by hand with `--ignored`.
macro_rules! untuned_learn_test {
    ($name:ident, $why:literal, $case:expr) => {
        #[test]
        #[ignore = $why]
        fn $name() {
            check($case);
        }
    };
}

// Recall tasks leave a plateau ("one of the context's values", ≈ 1/kv) after 1–2k steps.
// chance: 1/kv among the context's values (the plateau), 1/64 over the value half (V = 128)
learn_test!(
    mqar,
    Case {
        task: "mqar",
        fields: "seq_len = 32\nnum_kv_pairs = 4\nrandom_non_queries = false",
        vocab: 128,
        train: 8000,
        model: BASED_RECIPE,
        steps: 1000,
        batch: 64,
        lr: 3e-3,
        threshold: 0.9,
        train_on: Split::Train
    }
);
untuned_learn_test!(
    compositional_mqar,
    "budget not tuned: attention reached 0.268 at these settings (the Based recipe too)",
    Case {
        task: "compositional_mqar",
        fields: "seq_len = 48\nnum_kv_pairs = 4\nrandom_non_queries = false",
        vocab: 256,
        train: 20_000,
        model: ATTN,
        steps: 2500,
        batch: 64,
        lr: 3e-3,
        threshold: 0.9,
        train_on: Split::Train
    }
);
learn_test!(
    forgetting_mqar,
    Case {
        task: "forgetting_mqar",
        fields: "seq_len = 40\nnum_kv_pairs = 4\nnum_updates = 2\nrandom_non_queries = false",
        vocab: 256,
        train: 20_000,
        model: BASED_RECIPE,
        steps: 2500,
        batch: 64,
        lr: 3e-3,
        threshold: 0.9,
        train_on: Split::Train
    }
);
// chance 0.5
untuned_learn_test!(
    parity,
    "budget not tuned: attention reached 0.525 at these settings",
    Case {
        task: "parity",
        fields: "seq_len = 6",
        vocab: 3,
        train: 4000,
        model: ATTN_MLP,
        steps: 1500,
        batch: 64,
        lr: 3e-3,
        threshold: 0.95,
        train_on: Split::Train
    }
);
learn_test!(
    majority,
    Case {
        task: "majority",
        fields: "seq_len = 8",
        vocab: 3,
        train: 2000,
        model: ATTN_MLP,
        steps: 300,
        batch: 64,
        lr: 3e-3,
        threshold: 0.95,
        train_on: Split::Train
    }
);
// predicting the smallest token (ties) is right about a third of the time
learn_test!(
    vocab_majority,
    Case {
        task: "vocab_majority",
        fields: "seq_len = 8",
        vocab: 6,
        train: 4000,
        model: ATTN_MLP,
        steps: 400,
        batch: 64,
        lr: 3e-3,
        threshold: 0.85,
        train_on: Split::Train
    }
);
untuned_learn_test!(
    cumulative_parity,
    "budget not tuned: attention reached 0.745 at these settings",
    Case {
        task: "cumulative_parity",
        fields: "seq_len = 6",
        vocab: 3,
        train: 4000,
        model: ATTN_MLP,
        steps: 1500,
        batch: 64,
        lr: 3e-3,
        threshold: 0.95,
        train_on: Split::Train
    }
);
// always 1 is right about 60% of the time at L = 16
learn_test!(
    cumulative_majority,
    Case {
        task: "cumulative_majority",
        fields: "seq_len = 16",
        vocab: 3,
        train: 4000,
        model: ATTN_MLP,
        steps: 300,
        batch: 64,
        lr: 3e-3,
        threshold: 0.95,
        train_on: Split::Train
    }
);
// chance: 1/8 values (MAD's macro average; the marginal of the values gives ≈ 0.13). At lr 3e-3
// (2500 steps) it passed on an Intel CPU; on an AMD EPYC all three seeds ended at 0.32–0.40, seed
// 0 after reaching 0.96 and falling back. At lr 1e-3 and 3000 steps seeds 0 and 1 pass there
// (0.99, 0.98) and seed 2 does not (0.52).
learn_test!(
    in_context_recall,
    Case {
        task: "in_context_recall",
        fields: "seq_len = 64",
        vocab: 16,
        train: 20_000,
        model: ATTN,
        steps: 3000,
        batch: 64,
        lr: 1e-3,
        threshold: 0.9,
        train_on: Split::Train
    }
);
untuned_learn_test!(
    noisy_recall,
    "budget not tuned: attention reached 0.398 at these settings",
    Case {
        task: "noisy_recall",
        fields: "seq_len = 64",
        vocab: 32,
        train: 20_000,
        model: ATTN,
        steps: 2500,
        batch: 64,
        lr: 3e-3,
        threshold: 0.9,
        train_on: Split::Train
    }
);
untuned_learn_test!(
    fuzzy_recall,
    "budget not tuned: attention reached 0.073 at these settings",
    Case {
        task: "fuzzy_recall",
        fields: "seq_len = 64\nk_motif_size = 2\nv_motif_size = 2",
        vocab: 16,
        train: 20_000,
        model: ATTN,
        steps: 2500,
        batch: 64,
        lr: 3e-3,
        threshold: 0.6,
        train_on: Split::Train
    }
);
// chance: 1/6 data tokens
learn_test!(
    selective_copying,
    Case {
        task: "selective_copying",
        fields: "seq_len = 24\nnum_tokens_to_copy = 4",
        vocab: 8,
        train: 4000,
        model: ATTN_MLP,
        steps: 400,
        batch: 64,
        lr: 3e-3,
        threshold: 0.9,
        train_on: Split::Train
    }
);
// chance: 1/7 tokens; the decoder sees only the encoder's last position
learn_test!(compression, Case { task: "compression", fields: "seq_len = 6", vocab: 8, train: 4000, model: "d_model = 64\nn_layers = 2\nmax_position_embeddings = 64\nembed_dropout = 0.0\ntie_embeddings = false\nbackbone = \"autoencoder\"\nmixer = { name = \"attention\", num_heads = 1 }", steps: 400, batch: 64, lr: 3e-3, threshold: 0.9, train_on: Split::Train });
// chance 1/16: the values are in the weights only
learn_test!(
    memorization,
    Case {
        task: "memorization",
        fields: "seq_len = 16",
        vocab: 32,
        train: 512,
        model: ATTN_MLP,
        steps: 300,
        batch: 32,
        lr: 1e-2,
        threshold: 0.95,
        train_on: Split::Train
    }
);
// chance 1/9
// as induction_head: on safari's every-next-token loss the model stays near 0.3 for 2,500 steps;
// on the queried value alone the Based recipe solves it by step 750 (plain attention: 0.31 at
// 1,500 steps, it first needs a previous-token head)
learn_test!(
    associative_recall,
    Case {
        task: "associative_recall",
        fields: "seq_len = 20",
        vocab: 20,
        train: 20_000,
        model: BASED_RECIPE,
        steps: 1200,
        batch: 64,
        lr: 3e-3,
        threshold: 0.9,
        train_on: Split::Test
    }
);
// safari trains on every next token (400 epochs); with that loss this model is still at chance
// (0.061) after 2,500 steps, while on the scored position alone it solves the task by step 750:
// the check trains on the test split's supervision (the training split is next-token targets,
// checked by the task's own tests)
learn_test!(
    induction_head,
    Case {
        task: "induction_head",
        fields: "seq_len = 20",
        vocab: 20,
        train: 20_000,
        model: ATTN,
        steps: 1000,
        batch: 64,
        lr: 3e-3,
        threshold: 0.9,
        train_on: Split::Test
    }
);

// real text (the built-in fixture corpus, bpe300, 1,383 training / 883 held-out tokens), token
// accuracy on the held-out split: a model that ignores the context predicts the most frequent
// token (0.075); the training split's bigram table (argmax next token given the previous one)
// scores 0.192; attention reached 0.306 here
learn_test!(
    text,
    Case {
        task: "text",
        fields: "seq_len = 32",
        vocab: 300,
        train: 4000,
        model: ATTN_MLP,
        steps: 400,
        batch: 32,
        lr: 3e-3,
        threshold: 0.2,
        train_on: Split::Train
    }
);

/// The learnability cases declared in this file: (task, `None` for a running test or
/// `Some(reason)` for an ignored, untuned one). Read from the macro invocations, so that a
/// case counts only as what it is.
fn declared_cases() -> Vec<(String, Option<String>)> {
    let src = include_str!("learn_tests.rs");
    let mut out = vec![];
    for (at, _) in src.match_indices("learn_test!(") {
        let untuned = src[..at].ends_with("untuned_");
        if !untuned && src[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let args = src[at + "learn_test!(".len()..].trim_start();
        let name: String = args.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if name.is_empty() {
            continue; // the macro definitions (`($name:ident, …)`)
        }
        let reason = untuned.then(|| {
            let rest = args[name.len()..].trim_start().trim_start_matches(',').trim_start();
            rest.strip_prefix('"').and_then(|r| r.split_once('"')).map(|(why, _)| why.to_string()).unwrap_or_default()
        });
        out.push((name, reason));
    }
    out
}

#[test]
fn every_task_has_a_running_or_documented_learnability_check() {
    let cases = declared_cases();
    let (mut running, mut ignored, mut missing, mut bad) = (vec![], vec![], vec![], vec![]);
    for n in super::names() {
        let mine: Vec<&Option<String>> = cases.iter().filter(|(t, _)| t == n).map(|(_, r)| r).collect();
        match mine.as_slice() {
            [None] => running.push(n.to_string()),
            [Some(why)] if why.trim().len() >= 20 => ignored.push(format!("{n}: {why}")),
            [Some(why)] => bad.push(format!("{n}: ignored without a reason that says why ({why:?})")),
            [] => missing.push(n.to_string()),
            _ => bad.push(format!("{n}: declared {} times", mine.len())),
        }
    }
    println!("learnability checks that run ({}): {}", running.len(), running.join(", "));
    println!("ignored, untuned ({}):\n  {}", ignored.len(), ignored.join("\n  "));
    assert!(missing.is_empty(), "tasks with no learnability check in learn_tests.rs: {}", missing.join(", "));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(!running.is_empty());
}

#[test]
fn the_case_reader_tells_running_from_ignored() {
    let cases = declared_cases();
    assert!(cases.contains(&("mqar".to_string(), None)), "{cases:?}");
    assert!(cases.iter().any(|(_, r)| r.as_ref().is_some_and(|w| !w.is_empty())), "no ignored case read: {cases:?}");
    assert!(!cases.iter().any(|(t, _)| t == "name"), "macro definitions read as cases");
}

#[test]
#[ignore]
fn explore() {
    let get = |k: &str, d: &str| std::env::var(k).unwrap_or(d.to_string());
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let c = Case {
        task: leak(get("T", "mqar")),
        fields: leak(get("F", "seq_len = 32;num_kv_pairs = 4").replace(';', "\n")),
        vocab: get("V", "64").parse().unwrap(),
        train: get("N", "4000").parse().unwrap(),
        model: leak(get("M", ATTN)),
        steps: get("S", "400").parse().unwrap(),
        batch: get("B", "64").parse().unwrap(),
        lr: get("LR", "3e-3").parse().unwrap(),
        threshold: 0.0,
        // `SUP=test`: train on the test split's supervision
        train_on: if get("SUP", "train") == "test" { Split::Test } else { Split::Train },
    };
    learn(&c, get("SEED", "0").parse().unwrap());
}
