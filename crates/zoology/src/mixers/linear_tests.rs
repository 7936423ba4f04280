//! Unit tests of the shared linear-attention / delta-rule cores and of the new mixers'
//! specifics, each against an independent dense or closed form (the generic suite compares
//! each mixer's forms with each other; these pin the math itself).

use super::common::decayed_linear::*;
use super::common::delta_rule::*;
use super::common::layers::*;
use super::linear_attention::FeatureMap;
use super::testing::{rel_err, seed_guard};
use super::{registry, BuildCtx, MixerEntry};
use tch::{nn, Device, Kind, Tensor};

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn entry(name: &str) -> MixerEntry {
    registry().into_iter().find(|e| e.name == name).unwrap()
}

fn table(src: &str) -> toml::Table {
    src.parse::<toml::Table>().unwrap()
}

#[test]
fn rope_matches_reference_and_depends_only_on_relative_position() {
    let _rng = seed_guard(0);
    let x = randn(&[2, 3, 9, 8]);
    assert!(rel_err(&rope(&x, 5, 10000.0), &rope_reference(&x, 5, 10000.0)) < 1e-5);
    assert!(rel_err(&rope(&x, 0, 10000.0).select(2, 0), &x.select(2, 0)) < 1e-7, "position 0 is not rotated");
    // q at position p+s, k at position p: the score depends on s only
    let (q, k) = (randn(&[1, 1, 1, 8]), randn(&[1, 1, 1, 8]));
    let score = |pq: i64, pk: i64| (rope(&q, pq, 100.0) * rope(&k, pk, 100.0)).sum(Kind::Float).double_value(&[]);
    assert!((score(7, 3) - score(4, 0)).abs() < 1e-4);
    assert!((score(7, 3) - score(3, 3)).abs() > 1e-3, "rotation must change the score");
}

#[test]
fn taylor_feature_map_inner_product_is_second_order_exp() {
    let _rng = seed_guard(1);
    let f = 5;
    let (q, k) = (randn(&[f]), randn(&[f]));
    let phi = |x: &Tensor| FeatureMap::Taylor.apply(x);
    assert_eq!(phi(&q).size(), vec![1 + f + f * f]);
    let got = (phi(&q) * phi(&k)).sum(Kind::Float).double_value(&[]);
    let qk = (&q * &k).sum(Kind::Float).double_value(&[]);
    let want = 1.0 + qk / (f as f64).sqrt() + qk * qk / (2.0 * f as f64);
    assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{got} vs {want}");
}

#[test]
fn chunked_linear_attention_matches_dense_products_of_gates() {
    let _rng = seed_guard(2);
    let (q, k, v) = (randn(&[2, 2, 11, 3]), randn(&[2, 2, 11, 3]), randn(&[2, 2, 11, 4]));
    // per-channel gates, scalar gates, and no decay (g = 0)
    let gk = (randn(&[2, 2, 11, 3]) - 1.0).log_sigmoid();
    let gs = (randn(&[2, 2, 11, 1]) - 1.0).log_sigmoid();
    for (g, name) in [(Some(&gk), "per-channel"), (Some(&gs), "scalar"), (None, "none")] {
        let want = linear_attention_reference(&q, &k, &v, g);
        for chunk in [1, 3, 4, 64] {
            let (o, s) = chunked_linear_attention(&q, &k, &v, g, chunk);
            let e = rel_err(&o, &want);
            assert!(e < 1e-5, "{name} chunk {chunk}: rel err {e:.2e}");
            // the returned state equals the recurrence's final state
            let mut st = Tensor::zeros([2, 2, 3, 4], (Kind::Float, Device::Cpu));
            for t in 0..11 {
                let gt = g.map(|g| g.select(2, t));
                let _ = linear_attention_step(&mut st, &q.select(2, t), &k.select(2, t), &v.select(2, t), gt.as_ref());
            }
            assert!(rel_err(&s, &st) < 1e-5, "{name} chunk {chunk}: final state");
        }
    }
}

#[test]
fn retention_parallel_form_uses_gamma_powers() {
    // (QKᵀ ⊙ D)V with D[t,s] = γ^{t−s}, γ = 1 − 2^{−5}, equals the chunked form with log γ
    let _rng = seed_guard(3);
    let (q, k, v) = (randn(&[1, 1, 9, 4]), randn(&[1, 1, 9, 4]), randn(&[1, 1, 9, 4]));
    let gamma: f64 = 1.0 - 2f64.powi(-5);
    let mut d = vec![0f32; 81];
    for t in 0..9 {
        for s in 0..=t {
            d[t * 9 + s] = gamma.powi((t - s) as i32) as f32;
        }
    }
    let dmat = Tensor::from_slice(&d).view([9, 9]);
    let want = (q.matmul(&k.transpose(-2, -1)) * dmat).matmul(&v);
    let g = Tensor::full([1, 1, 9, 1], gamma.ln(), (Kind::Float, Device::Cpu));
    let (o, _) = chunked_linear_attention(&q, &k, &v, Some(&g), 4);
    assert!(rel_err(&o, &want) < 1e-5);
}

#[test]
fn chunked_delta_rule_state_matches_recurrence_and_solves_recall() {
    let _rng = seed_guard(4);
    let (b, h, l, dk, dv) = (2, 2, 13, 4, 3);
    let q = l2_norm(&randn(&[b, h, l, dk]), 1e-6);
    let k = l2_norm(&randn(&[b, h, l, dk]), 1e-6);
    let v = randn(&[b, h, l, dv]);
    let beta = randn(&[b, h, l]).sigmoid();
    let g = (randn(&[b, h, l]) - 2.0).log_sigmoid();
    for gg in [None, Some(&g)] {
        let want = delta_rule_reference(&q, &k, &v, &beta, gg);
        let mut st = Tensor::zeros([b, h, dk, dv], (Kind::Float, Device::Cpu));
        for t in 0..l {
            let gt = gg.map(|g| g.select(2, t));
            let _ = delta_rule_step(
                &mut st,
                &q.select(2, t),
                &k.select(2, t),
                &v.select(2, t),
                &beta.select(2, t),
                gt.as_ref(),
            );
        }
        for chunk in [1, 4, 5, 64] {
            let (o, s) = chunked_delta_rule(&q, &k, &v, &beta, gg, chunk);
            assert!(rel_err(&o, &want) < 1e-5, "chunk {chunk}");
            assert!(rel_err(&s, &st) < 1e-5, "chunk {chunk}: final state");
        }
    }
    // β = 1 with orthonormal keys: the state stores each value exactly, retrieved by its key
    let keys = Tensor::eye(4, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
    let vals = randn(&[1, 1, 4, 3]);
    let ones = Tensor::ones([1, 1, 4], (Kind::Float, Device::Cpu));
    let (_, s) = chunked_delta_rule(&keys, &keys, &vals, &ones, None, 2);
    assert!(rel_err(&keys.matmul(&s), &vals) < 1e-6);
}

#[test]
fn sliding_window_at_least_as_long_as_the_input_is_attention() {
    let ctx = BuildCtx::new(0, 2, 48);
    let build = |name: &str, t: &str| {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = (entry(name).build)(vs.root() / "m", 16, &table(t), &ctx, "model.mixer").unwrap();
        (vs, m)
    };
    let (a, attn) = build("attention", "num_heads = 2");
    let (mut b, swa) = build("sliding_window", "window = 20\nnum_heads = 2");
    // the same weights by copying (re-seeding the global RNG races with tests in other threads)
    b.copy(&a).unwrap();
    // window = 20 sees 21 tokens (Zoology's mask keeps w + 1)
    let x = randn(&[2, 21, 16]);
    let e = tch::no_grad(|| rel_err(&swa.forward(&x, false), &attn.forward(&x, false)));
    assert!(e < 1e-6, "w + 1 = L: {e:.2e}");
    let x = randn(&[2, 22, 16]);
    let e = tch::no_grad(|| rel_err(&swa.forward(&x, false), &attn.forward(&x, false)));
    assert!(e > 1e-4, "w + 1 < L must differ from full attention");
}

#[test]
fn validate_names_the_field() {
    let ctx = BuildCtx::new(0, 2, 48);
    let cases = [
        ("gla", "num_heads = 3", "model.mixer.num_heads"),
        ("gla", "expand_k = 0.01", "model.mixer.expand_k"),
        ("sliding_window", "window = 0", "model.mixer.window"),
        ("linear_attention", "feature_map = \"cosine\"", "model.mixer.feature_map"),
        ("linear_attention", "feature_dim = 0", "model.mixer.feature_dim"),
        ("based", "num_heads = 5", "model.mixer.num_heads"),
        ("retnet", "chunk_size = 0", "model.mixer.chunk_size"),
        ("delta_net", "conv_size = 0", "model.mixer.conv_size"),
        ("gated_delta_net", "heads = 2", "model.mixer"),
        ("attention", "rope = true\nnum_heads = 16", "model.mixer.rope"),
        // every option is bounded, so that no config panics later (issue 12 fuzzes configs)
        ("sliding_window", "window = 2000000", "model.mixer.window"),
        ("sliding_window", "window_convention = \"half\"", "model.mixer.window_convention"),
        ("linear_attention", "feature_dim = 100000", "model.mixer.feature_dim"),
        ("linear_attention", "chunk_size = 1000000", "model.mixer.chunk_size"),
        ("linear_attention", "eps = nan", "model.mixer.eps"),
        ("based", "feature_dim = 65", "model.mixer.feature_dim"),
        ("based", "eps = inf", "model.mixer.eps"),
        ("retnet", "expand_v = 0.0", "model.mixer.expand_v"),
        ("retnet", "expand_v = inf", "model.mixer.expand_v"),
        ("retnet", "expand_v = 1.25\nnum_heads = 8", "model.mixer.num_heads"),
        ("retnet", "norm = \"layer_norm\"", "model.mixer.norm"),
        ("retnet", "norm_eps = nan", "model.mixer.norm_eps"),
        ("gla", "expand_k = nan", "model.mixer.expand_k"),
        ("gla", "expand_v = 1e300", "model.mixer.expand_v"),
        ("gla", "gate_low_rank_dim = 100000", "model.mixer.gate_low_rank_dim"),
        ("gla", "gate_logit_normalizer = inf", "model.mixer.gate_logit_normalizer"),
        ("delta_net", "conv_size = 1000", "model.mixer.conv_size"),
        ("delta_net", "expand_v = -1.0", "model.mixer.expand_v"),
        ("delta_net", "chunk_size = 0", "model.mixer.chunk_size"),
        ("gated_delta_net", "a_init_range = [16.0, 1.0]", "model.mixer.a_init_range"),
        ("gated_delta_net", "a_init_range = [-1.0, 16.0]", "model.mixer.a_init_range"),
        ("gated_delta_net", "expand_v = 1.5\nnum_heads = 16", "model.mixer.num_heads"),
        ("attention", "dropout = nan", "model.mixer.dropout"),
        ("attention", "num_heads = 0", "model.mixer.num_heads"),
    ];
    for (name, t, field) in cases {
        let err =
            (entry(name).validate)(&table(t), 16, &ctx, "model.mixer").expect_err(&format!("{name} {t} must fail"));
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{field}")), "{name} {t}: {msg}");
    }
    // the defaults of every new mixer validate at D = 16
    for name in ["sliding_window", "linear_attention", "based", "retnet", "gla", "delta_net", "gated_delta_net"] {
        (entry(name).validate)(&toml::Table::new(), 16, &ctx, "model.mixer").unwrap();
    }
}

/// Timing of forward + backward at the tiny-MQAR training shape (B=64, L=32, D=64), and the
/// training form at L=256; `cargo test --release -p zoology mixer_step_times -- --ignored --nocapture`.
#[test]
#[ignore]
fn mixer_step_times() {
    for (l, b) in [(32i64, 64i64), (256, 8)] {
        let ctx = BuildCtx::new(1, 2, l);
        for e in registry() {
            let _rng = seed_guard(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let m = (e.build)(vs.root() / "m", 64, &toml::Table::new(), &ctx, "model.mixer").unwrap();
            let x = randn(&[b, l, 64]).set_requires_grad(true);
            let run = || m.forward(&x, true).square().sum(Kind::Float).backward();
            run();
            let t0 = std::time::Instant::now();
            for _ in 0..5 {
                run();
            }
            println!("L={l} B={b} {:>16}: {:7.1} ms fwd+bwd", e.name, t0.elapsed().as_secs_f64() * 1000.0 / 5.0);
        }
    }
}
