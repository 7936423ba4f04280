//! The generic mixer suite: every registered mixer, with each of its suite variants, goes
//! through the same checks. Nothing here names a mixer; adding a registry line adds it here.
//! Each test prints the mixers it ran and fails listing every mixer that failed.

use super::testing::{rel_err, seed_guard, seeded};
use super::{registry, BuildCtx, Mixer, MixerEntry};
use tch::{nn, Device, Kind, Tensor};

const D: i64 = 16;
const MAX_LEN: i64 = 48;
const TOL_FWD: f64 = 1e-4;
const TOL_GRAD: f64 = 1e-3;

struct Built {
    vs: nn::VarStore,
    m: Box<dyn Mixer>,
    label: String,
}

/// Builds every (mixer, variant), at layer 0 and, for per-layer configs, layer 1 too.
fn all_built(seed: i64) -> Vec<Built> {
    let mut out = vec![];
    for e in registry() {
        for (vi, table) in (e.suite_variants)().into_iter().enumerate() {
            for layer in 0..2usize {
                let _rng = seed_guard(seed);
                let vs = nn::VarStore::new(Device::Cpu);
                let ctx = BuildCtx::new(layer, 2, MAX_LEN);
                let m = (e.build)(vs.root() / "mixer", D, &table, &ctx, "model.mixer")
                    .unwrap_or_else(|err| panic!("{} variant {vi}: build failed: {err}", e.name));
                let label = format!("{}#{vi}@layer{layer}", e.name);
                out.push(Built { vs, m, label });
            }
        }
    }
    out
}

fn report(check: &str, ran: Vec<String>, failures: Vec<String>) {
    println!("suite {check}: ran {} configs: {}", ran.len(), ran.join(", "));
    let names: std::collections::BTreeSet<&str> = registry().iter().map(|e: &MixerEntry| e.name).collect::<Vec<_>>().into_iter().collect();
    println!("suite {check}: mixers covered: {}", names.into_iter().collect::<Vec<_>>().join(", "));
    assert!(failures.is_empty(), "suite {check} failed for:\n  {}", failures.join("\n  "));
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

#[test]
fn suite_parallel_matches_reference() {
    let (mut ran, mut fails) = (vec![], vec![]);
    for b in all_built(1) {
        for &l in &[1i64, 7, 16, 33] {
            let x = seeded(100 + l, || randn(&[2, l, D]));
            let (y, r) = tch::no_grad(|| (b.m.forward(&x, false), b.m.reference(&x)));
            let e = rel_err(&y, &r);
            if !(e < TOL_FWD) || y.size() != vec![2, l, D] {
                fails.push(format!("{} L={l}: rel err {e:.2e}, shape {:?}", b.label, y.size()));
            }
        }
        ran.push(b.label);
    }
    report("parallel-vs-reference", ran, fails);
}

#[test]
fn suite_prefill_then_step_matches_parallel() {
    let (mut ran, mut fails) = (vec![], vec![]);
    for b in all_built(2) {
        for &(l, t) in &[(13i64, 5i64), (20, 1), (9, 9)] {
            let x = seeded(7 + l, || randn(&[2, l, D]));
            let res = tch::no_grad(|| {
                let full = b.m.forward(&x, false);
                let (pre, mut state) = b.m.prefill(&x.narrow(1, 0, t));
                let mut ys = vec![pre];
                for s in t..l {
                    ys.push(b.m.step(&mut state, &x.select(1, s)).unsqueeze(1));
                }
                (full, Tensor::cat(&ys, 1))
            });
            let e = rel_err(&res.1, &res.0);
            if !(e < TOL_FWD) {
                fails.push(format!("{} L={l} prefill {t}: rel err {e:.2e}", b.label));
            }
        }
        ran.push(b.label);
    }
    report("prefill+step-vs-parallel", ran, fails);
}

#[test]
fn suite_causality() {
    let (mut ran, mut fails) = (vec![], vec![]);
    for b in all_built(3) {
        let l = 24;
        let _rng = seed_guard(5);
        let x = randn(&[2, l, D]);
        for &t in &[0i64, 6, 17] {
            let x2 = x.copy();
            let noise = randn(&[2, l - t - 1, D]) * 3.0;
            let _ = x2.narrow(1, t + 1, l - t - 1).g_add_(&noise);
            let (y1, y2) = tch::no_grad(|| (b.m.forward(&x, false), b.m.forward(&x2, false)));
            let scale = y1.abs().max().double_value(&[]).max(1.0);
            let diff = (y1.narrow(1, 0, t + 1) - y2.narrow(1, 0, t + 1)).abs().max().double_value(&[]);
            let changed = (y1.narrow(1, t + 1, l - t - 1) - y2.narrow(1, t + 1, l - t - 1)).abs().max().double_value(&[]);
            if diff > 1e-5 * scale {
                fails.push(format!("{} t={t}: output ≤ t changed by {diff:.2e} (scale {scale:.2e})", b.label));
            }
            if changed == 0.0 {
                fails.push(format!("{} t={t}: outputs after t did not change at all (test cannot see the future)", b.label));
            }
        }
        ran.push(b.label);
    }
    report("causality", ran, fails);
}

fn grads(b: &Built, x: &Tensor, w: &Tensor, fast: bool) -> Vec<(String, Tensor)> {
    let xg = x.copy().set_requires_grad(true);
    for (_, v) in b.vs.variables() {
        let mut g = v.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let y = if fast { b.m.forward(&xg, false) } else { b.m.reference(&xg) };
    (y * w).sum(Kind::Float).backward();
    let mut out = vec![("input".to_string(), xg.grad().copy())];
    let mut vars: Vec<(String, Tensor)> = b.vs.variables().into_iter().collect();
    vars.sort_by(|a, c| a.0.cmp(&c.0));
    for (n, v) in vars {
        let g = v.grad();
        out.push((n, if g.defined() { g.copy() } else { v.zeros_like() }));
    }
    out
}

#[test]
fn suite_gradients_match_reference() {
    let (mut ran, mut fails) = (vec![], vec![]);
    for b in all_built(4) {
        let l = 11;
        let _rng = seed_guard(9);
        let x = randn(&[2, l, D]);
        let w = randn(&[2, l, D]);
        let gf = grads(&b, &x, &w, true);
        let gr = grads(&b, &x, &w, false);
        let mut any_nonzero = false;
        for ((n, a), (_, r)) in gf.iter().zip(gr.iter()) {
            let e = rel_err(a, r);
            if r.abs().max().double_value(&[]) > 0.0 {
                any_nonzero = true;
            }
            let tiny = r.norm().double_value(&[]) < 1e-8 && a.norm().double_value(&[]) < 1e-8;
            if !(e < TOL_GRAD) && !tiny {
                fails.push(format!("{} grad {n}: rel err {e:.2e}", b.label));
            }
        }
        if !any_nonzero {
            fails.push(format!("{}: all gradients are zero", b.label));
        }
        ran.push(b.label);
    }
    report("gradients", ran, fails);
}

#[test]
fn suite_state_size_counts_the_real_state() {
    let (mut ran, mut fails) = (vec![], vec![]);
    let entries = registry();
    for b in all_built(5) {
        let name = b.label.split('#').next().unwrap().to_string();
        let constant = entries.iter().find(|e| e.name == name).unwrap().constant_state;
        for &l in &[12i64, 40] {
            let x = randn(&[1, l, D]);
            let carried = tch::no_grad(|| {
                let mut st = b.m.init_state(1);
                for t in 0..l {
                    let _ = b.m.step(&mut st, &x.select(1, t));
                }
                st.elements_per_sequence()
            });
            let claimed = b.m.state_size(l);
            if carried != claimed {
                fails.push(format!("{} L={l}: state_size() = {claimed} but step carries {carried} elements", b.label));
            }
        }
        if constant && b.m.state_size(12) != b.m.state_size(40) {
            fails.push(format!("{}: declared constant-state but state_size depends on L", b.label));
        }
        ran.push(b.label);
    }
    report("state-size", ran, fails);
}

/// Smoke test: every mixer, in a 2-layer LM, lowers the loss on a tiny MQAR (L=32, kv=2, V=64)
/// within 120 AdamW steps, with finite loss throughout. It catches broken gradients, NaNs and
/// mixers that cannot be trained at all; it does not measure recall (see the training tests).
#[test]
fn suite_learnability_smoke() {
    use crate::model::{LanguageModel, ModelConfig};
    use crate::tasks::mqar::MqarConfig;
    use crate::train::optim::AdamW;
    use crate::train::trainer::sparse_head_loss;
    let (mut ran, mut fails) = (vec![], vec![]);
    let seg = MqarConfig::new(32, 2, 1024).generate(64, 11);
    let (xs, ys) = seg.to_tensors(Device::Cpu);
    for e in registry() {
        let mut table = (e.defaults)();
        table.insert("name".into(), toml::Value::String(e.name.into()));
        let cfg = ModelConfig {
            d_model: 32,
            n_layers: 2,
            max_position_embeddings: 32,
            embed_dropout: 0.0,
            mixer: table,
            ..ModelConfig::default()
        };
        if let Err(err) = cfg.validate(64, 32) {
            fails.push(format!("{}: default config invalid at d=32: {err}", e.name));
            continue;
        }
        let _rng = seed_guard(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = LanguageModel::new(&vs.root(), &cfg, 64, 32).unwrap();
        let mut opt = AdamW::new(vs.variables().into_iter().collect(), 0.0, 0.9, 0.999, 1e-8, false);
        let probe = |m: &LanguageModel| tch::no_grad(|| sparse_head_loss(m, &xs.narrow(0, 0, 256), &ys.narrow(0, 0, 256), false).0.double_value(&[]));
        let before = probe(&model);
        let mut finite = true;
        for step in 0..120i64 {
            let start = (step * 32) % 1024;
            opt.zero_grad();
            let loss = sparse_head_loss(&model, &xs.narrow(0, start, 32), &ys.narrow(0, start, 32), true).0;
            if !loss.double_value(&[]).is_finite() {
                finite = false;
                break;
            }
            loss.backward();
            opt.step(3e-3);
        }
        let after = probe(&model);
        println!("suite learnability: {:<18} loss {before:.3} → {after:.3}", e.name);
        if !finite || !after.is_finite() || after > before - 0.5 {
            fails.push(format!("{}: loss {before:.3} → {after:.3} (finite throughout: {finite})", e.name));
        }
        ran.push(e.name.to_string());
    }
    report("learnability", ran, fails);
}

/// With `--features cuda` on a machine with a GPU: every mixer's forward on CUDA matches the CPU
/// (same weights, copied), and the LM trains a step there. Without a GPU it says it skipped.
#[cfg(feature = "cuda")]
#[test]
fn suite_cuda_matches_cpu() {
    if !tch::Cuda::is_available() {
        println!("suite cuda: skipped, tch::Cuda::is_available() is false on this machine");
        return;
    }
    let gpu = Device::Cuda(0);
    let (mut ran, mut fails) = (vec![], vec![]);
    for e in registry() {
        for (vi, table) in (e.suite_variants)().into_iter().enumerate() {
            let ctx = BuildCtx::new(0, 2, MAX_LEN);
            let _rng = seed_guard(1);
            let vs_cpu = nn::VarStore::new(Device::Cpu);
            let m_cpu = (e.build)(vs_cpu.root() / "mixer", D, &table, &ctx, "model.mixer").unwrap();
            let mut vs_gpu = nn::VarStore::new(gpu);
            let m_gpu = (e.build)(vs_gpu.root() / "mixer", D, &table, &ctx, "model.mixer").unwrap();
            vs_gpu.copy(&vs_cpu).unwrap();
            let x = randn(&[2, 33, D]);
            let (a, b) = tch::no_grad(|| (m_cpu.forward(&x, false), m_gpu.forward(&x.to_device(gpu), false).to_device(Device::Cpu)));
            let err = rel_err(&b, &a);
            let label = format!("{}#{vi}", e.name);
            if !(err < 1e-3) {
                fails.push(format!("{label}: cuda vs cpu rel err {err:.2e}"));
            }
            ran.push(label);
        }
    }
    report("cuda-vs-cpu", ran, fails);
}
