//! Parity of the attention / linear-attention family with Zoology and fla, pinned so that it
//! cannot drift back: init statistics over built models (Zoology's name rule), widths, the
//! sliding window's token count, Gated DeltaNet's defaults, Zoology's state-size formulas
//! (hand-computed from Zoology's code), and closed forms of the helpers that the fast form and
//! the step form share (feature maps, GLA's gate, RetNet's norms), which the generic suite's
//! form-against-form checks cannot see.

use super::common::decayed_linear::DecayedLinear;
use super::gla::{gate_log_decay, Gla, GlaConfig};
use super::linear_attention::{FeatureMap, FEATURE_EPS};
use super::retnet::{RetNet, RetNetConfig, RetNetNorm};
use super::testing::{rel_err, seed_guard, seeded};
use super::{registry, BuildCtx, Mixer, MixerEntry, MixerKind};
use crate::model::{LanguageModel, ModelConfig};
use tch::{nn, Device, Kind, Tensor};

fn entry(name: &str) -> MixerEntry {
    registry().into_iter().find(|e| e.name == name).unwrap()
}

fn table(src: &str) -> toml::Table {
    src.parse::<toml::Table>().unwrap()
}

fn build(name: &str, src: &str, d: i64, layer: usize) -> (nn::VarStore, Box<dyn Mixer>) {
    seeded(1, || {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = (entry(name).build)(vs.root() / "mixer", d, &table(src), &BuildCtx::new(layer, 2, 64), "model.mixer")
            .unwrap();
        (vs, m)
    })
}

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Builds a 2-layer LM (d = 64) with `mixer` and checks every mixer parameter against Zoology's
/// `_init_weights` rule: a Linear weight (every 2-D parameter except short-conv taps) is
/// N(0, 0.02), or N(0, 0.02/√(2·n_layers)) when its full name contains `out_proj.weight`; every
/// `.bias` is zero. Returns the names it checked.
fn check_zoology_init(mixer: &str) -> Vec<String> {
    let mut cfg = ModelConfig { d_model: 64, n_layers: 2, max_position_embeddings: 0, ..ModelConfig::default() };
    cfg.mixer = table(mixer);
    let (vs, _model) = seeded(3, || {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = LanguageModel::new(&vs.root(), &cfg, 64, 64).unwrap();
        (vs, m)
    });
    let mut checked = vec![];
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(n, _)| n.contains(".mixer.")).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, v) in vars {
        let x = f64s(&v);
        let n = x.len() as f64;
        if name.ends_with(".bias") {
            assert!(x.iter().all(|&e| e == 0.0), "{mixer}: {name} must be zero");
        } else if v.dim() == 2 && !name.ends_with("_conv") {
            let want = if name.contains("out_proj.weight") { 0.02 / (2.0f64 * 2.0).sqrt() } else { 0.02 };
            let mean = x.iter().sum::<f64>() / n;
            let std = (x.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n).sqrt();
            // 5 standard errors of a sample std (≈ σ/√(2n)), at least 5 %
            let tol = (5.0 / (2.0 * n).sqrt()).max(0.05);
            assert!(
                (std / want - 1.0).abs() < tol,
                "{mixer}: {name} std {std:.4}, Zoology's rule gives {want:.4} (tol {tol:.2})"
            );
            assert!(mean.abs() < 5.0 * want / n.sqrt(), "{mixer}: {name} mean {mean:.2e}");
        } else {
            continue;
        }
        checked.push(name);
    }
    checked
}

#[test]
fn init_follows_zoologys_name_rule() {
    let cases: [(&str, &[&str]); 8] = [
        (
            "name = \"attention\"",
            &["mixer.wqkv.weight", "mixer.out_proj.weight", "mixer.wqkv.bias", "mixer.out_proj.bias"],
        ),
        ("name = \"sliding_window\"\nwindow = 8", &["mixer.out_proj.weight"]),
        (
            "name = \"based\"",
            &["mixer.proj_q.weight", "mixer.proj_k.weight", "mixer.proj_v.weight", "mixer.proj_o.weight"],
        ),
        ("name = \"linear_attention\"", &["mixer.proj_o.weight"]),
        ("name = \"retnet\"", &["mixer.o_proj.weight", "mixer.g_proj.weight"]),
        (
            "name = \"gla\"",
            &["mixer.o_proj.weight", "mixer.gk_proj1.weight", "mixer.gk_proj2.weight", "mixer.gk_proj2.bias"],
        ),
        ("name = \"delta_net\"", &["mixer.o_proj.weight", "mixer.b_proj.weight"]),
        ("name = \"gated_delta_net\"", &["mixer.o_proj.weight", "mixer.a_proj.weight"]),
    ];
    for (mixer, must) in cases {
        let checked = check_zoology_init(mixer);
        for m in must {
            assert!(
                checked.iter().any(|c| c.ends_with(m)),
                "{mixer}: {m} was not among the checked parameters {checked:?}"
            );
        }
    }
}

#[test]
fn gla_widths_are_floored_as_fla_int() {
    // d = 22, expand_k = 0.3: 6.6 → 6 (round would give 7); expand_v = 0.95: 20.9 → 20
    let (vs, _) = build("gla", "expand_k = 0.3\nexpand_v = 0.95\nnum_heads = 2", 22, 0);
    let vars = vs.variables();
    assert_eq!(vars["mixer.q_proj.weight"].size(), vec![6, 22]);
    assert_eq!(vars["mixer.v_proj.weight"].size(), vec![20, 22]);
    assert_eq!(GlaConfig { expand_k: 0.3, expand_v: 0.95, ..Default::default() }.widths(22), (6, 20));
}

/// Output t of the fast form depends on input s exactly for the window's tokens: count them.
#[test]
fn sliding_window_sees_zoologys_token_count() {
    for (conv, w, seen) in [("zoology", 4i64, 5i64), ("exact", 4, 4), ("based_flash", 8, 5), ("based_flash", 7, 4)] {
        let (_vs, m) = build("sliding_window", &format!("window = {w}\nwindow_convention = \"{conv}\""), 16, 0);
        let l = 16i64;
        let x = seeded(2, || Tensor::randn([1, l, 16], (Kind::Float, Device::Cpu)));
        let t = l - 1;
        for reference in [false, true] {
            let run =
                |x: &Tensor| tch::no_grad(|| if reference { m.reference(x) } else { m.forward(x, false) }).select(1, t);
            let y = run(&x);
            let dependent = (0..l)
                .filter(|&s| {
                    let x2 = x.copy();
                    let _ = x2.narrow(1, s, 1).g_add_(&Tensor::ones([1, 1, 16], (Kind::Float, Device::Cpu)));
                    (run(&x2) - &y).abs().max().double_value(&[]) > 0.0
                })
                .collect::<Vec<_>>();
            assert_eq!(dependent, (l - seen..l).collect::<Vec<_>>(), "{conv} w={w} (reference: {reference})");
        }
    }
}

#[test]
fn gated_delta_net_defaults_are_zoologys() {
    let d = 256;
    let (vs, m) = build("gated_delta_net", "num_heads = 256", d, 0);
    let vars = vs.variables();
    // value width 2d, no output gate
    assert_eq!(vars["mixer.v_proj.weight"].size(), vec![2 * d, d]);
    assert_eq!(vars["mixer.o_proj.weight"].size(), vec![d, 2 * d]);
    assert!(!vars.contains_key("mixer.g_proj.weight"), "the output gate must be off by default");
    // A = exp(A_log) ~ U(0, 16): 256 heads, so some A < 1 (P(none) = (15/16)^256 ≈ 7e-8)
    let a = f64s(&vars["mixer.A_log"].exp());
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    assert!(a.iter().all(|&x| (0.0..16.0).contains(&x)), "A outside [0, 16)");
    assert!(a.iter().any(|&x| x < 1.0), "no A below 1: U(1, 16) rather than fla's U(0, 16)");
    assert!((mean - 8.0).abs() < 1.0, "mean A {mean:.2}, U(0, 16) has 8");
    // state: H·h·h_v = 2d²/H, plus the short-conv windows
    assert_eq!(m.state_size_zoology(10), Some(2 * d * d / 256));
    assert_eq!(m.state_size(10), 2 * d * d / 256 + 3 * (d + d + 2 * d));
    // the named options bring back the earlier choices
    let (vs, _) =
        build("gated_delta_net", "expand_v = 1.0\nuse_gate = true\na_init_range = [1.0, 16.0]\nnum_heads = 256", d, 0);
    let vars = vs.variables();
    assert_eq!(vars["mixer.v_proj.weight"].size(), vec![d, d]);
    assert!(vars.contains_key("mixer.g_proj.weight"));
    assert!(f64s(&vars["mixer.A_log"].exp()).iter().all(|&x| (1.0..16.0).contains(&x)));
}

/// Zoology's `state_size()` formulas, evaluated by hand from its code for these configs.
#[test]
fn zoology_state_sizes_match_zoologys_formulas() {
    let z = |name: &str, src: &str, d: i64, layer: usize, l: i64| build(name, src, d, layer).1.state_size_zoology(l);
    // MHA: 2·d_model·L
    assert_eq!(z("attention", "", 64, 0, 128), Some(2 * 64 * 128));
    // SlidingAttn: block_size·d_model·2, whatever L and our token convention
    assert_eq!(z("sliding_window", "window = 32", 128, 0, 512), Some(32 * 128 * 2));
    assert_eq!(z("sliding_window", "window = 32\nwindow_convention = \"exact\"", 128, 0, 16), Some(32 * 128 * 2));
    // Based (f = 16, 1 head, d = 64): H·head_dim·F + H·F, F = 16·17/2 + 16 + 1 = 153
    assert_eq!(z("based", "feature_dim = 16\nnum_heads = 1", 64, 0, 64), Some(64 * 153 + 153));
    // Based with 2 heads, f = 8 (F = 36 + 8 + 1 = 45), d = 48: head_dim 24
    assert_eq!(z("based", "feature_dim = 8\nnum_heads = 2", 48, 0, 64), Some(2 * 24 * 45 + 2 * 45));
    // Based's formula with PosELU (expanded size f = 16), 1 head, d = 32; unnormalised: none
    assert_eq!(z("linear_attention", "", 32, 0, 64), Some(32 * 16 + 16));
    assert_eq!(z("linear_attention", "normalize = false", 32, 0, 64), None);
    // GatedLinearAttention (d = 64, expand_k 0.5, expand_v 1, 2 heads): key_dim · head_v_dim
    assert_eq!(z("gla", "num_heads = 2", 64, 0, 64), Some(32 * 32));
    // DeltaNet (d = 64, 2 heads): H · head_k · head_v
    assert_eq!(z("delta_net", "", 64, 0, 64), Some(2 * 32 * 32));
    // GatedDeltaNet (d = 64, 2 heads, expand_v 2): H · head_dim · 2·head_dim
    assert_eq!(z("gated_delta_net", "", 64, 0, 64), Some(2 * 32 * 64));
    // no RetNet in Zoology
    assert_eq!(z("retnet", "", 64, 0, 64), None);
    // Hybrid: the layer's own mixer (layer 1 of [base_conv, attention] is attention)
    let hybrid = "layers = [{ name = \"base_conv\", kernel_size = 3 }, { name = \"attention\" }]";
    assert_eq!(z("hybrid", hybrid, 64, 1, 128), Some(2 * 64 * 128));
}

/// The LM sum: 4 bytes × Σ over layers, None as soon as one layer has no formula.
#[test]
fn lm_zoology_state_bytes_sum_the_layers() {
    let lm = |mixer: &str| {
        let cfg = ModelConfig {
            d_model: 32,
            n_layers: 2,
            max_position_embeddings: 0,
            mixer: table(mixer),
            ..ModelConfig::default()
        };
        seeded(0, || LanguageModel::new(&nn::VarStore::new(Device::Cpu).root(), &cfg, 64, 64).unwrap())
    };
    let m = lm("name = \"hybrid\"\nlayers = [{ name = \"attention\" }, { name = \"delta_net\" }]");
    assert_eq!(m.state_size_zoology_bytes(64), Some(4 * (2 * 32 * 64 + 2 * 16 * 16)));
    let m = lm("name = \"hybrid\"\nlayers = [{ name = \"attention\" }, { name = \"retnet\" }]");
    assert_eq!(m.state_size_zoology_bytes(64), None);
}

#[test]
fn feature_maps_match_their_closed_forms() {
    let xs = [-2.0f64, -0.5, 0.0, 0.3, 1.7];
    let x = Tensor::from_slice(&xs).to_kind(Kind::Float);
    let cases: [(FeatureMap, fn(f64) -> f64); 5] = [
        (FeatureMap::Identity, |v| v),
        (FeatureMap::EluPlusOne, |v| if v > 0.0 { v + 1.0 } else { v.exp() }),
        (FeatureMap::Relu, |v| v.max(0.0).max(FEATURE_EPS)),
        (FeatureMap::Square, |v| v * v),
        (FeatureMap::SquaredRelu, |v| v.max(0.0).powi(2)),
    ];
    for (fm, f) in cases {
        let got = f64s(&fm.apply(&x));
        for (g, &v) in got.iter().zip(&xs) {
            let want = f(v);
            assert!((g - want).abs() <= 1e-6 * want.abs().max(1e-6), "{fm:?}({v}) = {g}, want {want}");
        }
    }
    // Zoology's ReLU clamps at eps: negative inputs give eps, not 0
    assert!(f64s(&FeatureMap::Relu.apply(&x))[0] > 0.0);
}

/// GLA's gate, `log α = logsigmoid(W₂ W₁ x + b₂) / 16`, computed on the host in f64 from the
/// projection weights, against what the mixer feeds its recurrence.
#[test]
fn gla_gate_matches_its_closed_form() {
    let _rng = seed_guard(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = GlaConfig { num_heads: 2, ..Default::default() };
    let m = Gla::build(vs.root(), 16, &cfg, &BuildCtx::new(0, 2, 16)).unwrap();
    let vars = vs.variables();
    // a nonzero bias, so that the test sees b₂
    tch::no_grad(|| {
        vars["gk_proj2.bias"].shallow_clone().copy_(&(Tensor::randn([8], (Kind::Float, Device::Cpu)) * 3.0))
    });
    let x = Tensor::randn([1, 3, 16], (Kind::Float, Device::Cpu)) * 20.0;
    let (_, _, _, g) = tch::no_grad(|| m.qkvg(&x));
    let g = g.unwrap(); // [1, H=2, 3, d_k=4]
    let (w1, w2, b2) = (f64s(&vars["gk_proj1.weight"]), f64s(&vars["gk_proj2.weight"]), f64s(&vars["gk_proj2.bias"]));
    let xs = f64s(&x);
    for t in 0..3usize {
        let low: Vec<f64> = (0..16).map(|r| (0..16).map(|i| w1[r * 16 + i] * xs[t * 16 + i]).sum()).collect();
        for c in 0..8usize {
            let z = b2[c] + (0..16).map(|r| w2[c * 16 + r] * low[r]).sum::<f64>();
            let want = -(1.0 + (-z).exp()).ln() / 16.0;
            let got = g.double_value(&[0, (c / 4) as i64, t as i64, (c % 4) as i64]);
            assert!((got - want).abs() < 1e-5 * want.abs().max(1e-3), "t={t} channel {c}: {got} vs {want}");
        }
    }
    // large logits: log σ(z) stays finite and ≤ 0
    let big = Tensor::from_slice(&[-200.0f32, 0.0, 200.0]);
    let v = f64s(&gate_log_decay(&big, 16.0));
    assert!(
        (v[0] - (-200.0 / 16.0)).abs() < 1e-4
            && (v[1] - (0.5f64.ln() / 16.0)).abs() < 1e-7
            && v[2] <= 0.0
            && v[2] > -1e-6
    );
}

/// RetNet's decays and both norms against hand-computed values.
#[test]
fn retnet_decays_and_norms_match_closed_forms() {
    for norm in [RetNetNorm::GroupNorm, RetNetNorm::RmsNorm] {
        let _rng = seed_guard(6);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = RetNetConfig { num_heads: 2, expand_v: 1.5, norm, ..Default::default() };
        let m = RetNet::build(vs.root(), 8, &cfg, &BuildCtx::new(0, 2, 16)).unwrap();
        // non-trivial affine parameters
        for (_, v) in vs.variables().iter().filter(|(n, _)| n.contains("norm")) {
            tch::no_grad(|| v.shallow_clone().copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) + 1.0)));
        }
        let x = Tensor::randn([1, 2, 8], (Kind::Float, Device::Cpu));
        let (_, _, _, g) = m.qkvg(&x);
        for h in 0..2 {
            let want = (1.0 - 2f64.powi(-5 - h as i32)).ln();
            assert!((g.as_ref().unwrap().double_value(&[0, h, 1, 0]) - want).abs() < 1e-7, "γ of head {h}");
        }
        let o = Tensor::randn([1, 2, 2, 6], (Kind::Float, Device::Cpu)) * 3.0 + 1.0; // [B, H, L, h_v]
        let got = f64s(&m.norm(&o)); // [1, 2, 12]
        let vars = vs.variables();
        let os = f64s(&o);
        let eps = 1e-5;
        for t in 0..2usize {
            for h in 0..2usize {
                let seg: Vec<f64> = (0..6).map(|j| os[h * 12 + t * 6 + j]).collect();
                for j in 0..6usize {
                    let want = match norm {
                        RetNetNorm::GroupNorm => {
                            let mean = seg.iter().sum::<f64>() / 6.0;
                            let var = seg.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / 6.0;
                            let (w, b) = (f64s(&vars["group_norm_weight"]), f64s(&vars["group_norm_bias"]));
                            (seg[j] - mean) / (var + eps).sqrt() * w[h * 6 + j] + b[h * 6 + j]
                        }
                        RetNetNorm::RmsNorm => {
                            let ms = seg.iter().map(|e| e * e).sum::<f64>() / 6.0;
                            seg[j] / (ms + eps).sqrt() * f64s(&vars["g_norm_weight"])[j]
                        }
                    };
                    let g = got[t * 12 + h * 6 + j];
                    assert!((g - want).abs() < 1e-4 * want.abs().max(1.0), "{norm:?} t={t} h={h} j={j}: {g} vs {want}");
                }
            }
        }
    }
}

/// The DecayedLinear reference is the dense sum, not the step: they agree on a random input,
/// and the reference alone matches `(QKᵀ ⊙ D)V` written out for retention.
#[test]
fn decayed_linear_reference_is_dense_and_agrees_with_the_step() {
    let (_vs, m) = build("retnet", "num_heads = 2\nchunk_size = 3", 16, 0);
    let x = seeded(8, || Tensor::randn([2, 9, 16], (Kind::Float, Device::Cpu)));
    let (y_ref, (y_step, _)) = tch::no_grad(|| (m.reference(&x), m.prefill(&x)));
    let e = rel_err(&y_step, &y_ref);
    assert!(e < 1e-5, "step vs dense reference {e:.2e}");
}

#[test]
fn zero_mixer_is_not_registered_but_builds_by_name() {
    assert!(!super::names().contains(&super::testing::ZeroMixer::NAME));
    let (_vs, m) = build("hybrid", "layers = [{ name = \"test_zero\" }]", 8, 0);
    let x = Tensor::ones([1, 3, 8], (Kind::Float, Device::Cpu));
    assert_eq!(m.forward(&x, false).abs().sum(Kind::Float).double_value(&[]), 0.0);
}

/// `l2_norm` (shared by DeltaNet's forms) against `x / √(Σx² + eps)` on the host.
#[test]
fn l2_norm_matches_its_closed_form() {
    let xs = [3.0f64, -4.0, 0.0, 1e-4, 2e-4, 0.0];
    let got = f64s(&super::common::layers::l2_norm(&Tensor::from_slice(&xs).view([2, 3]).to_kind(Kind::Double), 1e-6));
    for r in 0..2 {
        let ss: f64 = xs[r * 3..r * 3 + 3].iter().map(|v| v * v).sum();
        for c in 0..3 {
            let want = xs[r * 3 + c] / (ss + 1e-6).sqrt();
            assert!((got[r * 3 + c] - want).abs() < 1e-12, "row {r}: {} vs {want}", got[r * 3 + c]);
        }
    }
}

/// The whole `linear_attention` output (normalised, elu+1, one head) written out on the host
/// from its weights: `y_t = W_o Σ_s (φq_t·φk_s) v_s / (Σ_s φq_t·φk_s + eps)`. This pins what every
/// form shares (projections, φ, the normaliser carried as a column of ones, the division).
#[test]
fn linear_attention_output_matches_its_closed_form() {
    let (d, f, l) = (4usize, 3usize, 5usize);
    let (vs, m) = build("linear_attention", "feature_dim = 3\nchunk_size = 2", d as i64, 0);
    let x = seeded(4, || Tensor::randn([1, l as i64, d as i64], (Kind::Float, Device::Cpu)));
    let y = f64s(&tch::no_grad(|| m.forward(&x, false)));
    let vars = vs.variables();
    let (wq, wk, wv, wo) = (
        f64s(&vars["mixer.proj_q.weight"]),
        f64s(&vars["mixer.proj_k.weight"]),
        f64s(&vars["mixer.proj_v.weight"]),
        f64s(&vars["mixer.proj_o.weight"]),
    );
    let xs = f64s(&x);
    let mv = |w: &[f64], rows: usize, t: usize| -> Vec<f64> {
        (0..rows).map(|r| (0..d).map(|i| w[r * d + i] * xs[t * d + i]).sum()).collect()
    };
    let phi = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|e| if e > 0.0 { e + 1.0 } else { e.exp() }).collect() };
    for t in 0..l {
        let q = phi(mv(&wq, f, t));
        let (mut num, mut den) = (vec![0.0; d], 0.0);
        for s in 0..=t {
            let k = phi(mv(&wk, f, s));
            let a: f64 = q.iter().zip(&k).map(|(a, b)| a * b).sum();
            let v = mv(&wv, d, s);
            for j in 0..d {
                num[j] += a * v[j];
            }
            den += a;
        }
        let o: Vec<f64> = num.iter().map(|n| n / (den + 1e-6)).collect();
        for r in 0..d {
            let want: f64 = (0..d).map(|j| wo[r * d + j] * o[j]).sum();
            let got = y[t * d + r];
            assert!((got - want).abs() < 1e-5 * want.abs().max(1e-3), "t={t} r={r}: {got} vs {want}");
        }
    }
}
