//! The generic mixer suite: every registered mixer, with each of its suite variants, goes
//! through the same checks. Nothing here names a mixer; adding a registry line adds it here.
//! Each test prints the mixers it ran and fails listing every mixer that failed.

use super::testing::{grads, rel_err, seed_guard, seeded};
use super::MixerKind;
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
    let names: std::collections::BTreeSet<&str> =
        registry().iter().map(|e: &MixerEntry| e.name).collect::<Vec<_>>().into_iter().collect();
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
            let changed =
                (y1.narrow(1, t + 1, l - t - 1) - y2.narrow(1, t + 1, l - t - 1)).abs().max().double_value(&[]);
            if diff > 1e-5 * scale {
                fails.push(format!("{} t={t}: output ≤ t changed by {diff:.2e} (scale {scale:.2e})", b.label));
            }
            if changed == 0.0 {
                fails.push(format!(
                    "{} t={t}: outputs after t did not change at all (test cannot see the future)",
                    b.label
                ));
            }
        }
        ran.push(b.label);
    }
    report("causality", ran, fails);
}

/// "undefined", "zero" or "nonzero": what a form's gradient for one tensor is.
fn grad_kind(g: &Option<Tensor>) -> &'static str {
    match g {
        None => "undefined",
        Some(g) if g.abs().max().double_value(&[]) == 0.0 => "zero",
        Some(_) => "nonzero",
    }
}

/// Lengths of the gradient check: the short one crosses the suite variants' small chunks
/// (4, 5) and windows (4), the long one spans several chunks of 8 with a partial last chunk.
const GRAD_LENGTHS: [i64; 2] = [7, 21];

/// Moves every trainable parameter to a nearby generic point: `p += 0.05·(rms(p) + 0.05)·N(0, 1)`.
/// An init can be a symmetric point where a gradient is exactly zero although the parameter is
/// used (S4D's mode with θ = 0 zeroes `c_im`'s gradient; zero-initialised biases and unit norm
/// weights can do the same); the dead-parameter check runs after this.
fn perturb(b: &Built, seed: i64) {
    seeded(seed, || {
        tch::no_grad(|| {
            let mut vars: Vec<(String, Tensor)> =
                b.vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
            vars.sort_by(|a, c| a.0.cmp(&c.0));
            for (_, v) in vars {
                let rms = v.square().mean(Kind::Float).sqrt().double_value(&[]);
                let noise = Tensor::randn(v.size(), (v.kind(), v.device())) * (0.05 * (rms + 0.05));
                let _ = v.shallow_clone().g_add_(&noise);
            }
        })
    });
}

/// Fast-form gradients match the reference's, for the input and every parameter: at the init
/// for the short length, and at a perturbed point ([`perturb`]) for the long one. A tensor whose
/// gradient is undefined or zero in one form but not in the other fails at either point; at the
/// perturbed point a parameter that gets no gradient in either form (dead in both) fails too,
/// unless the mixer declares it unused at this config ([`Mixer::unused_parameters`]).
#[test]
fn suite_gradients_match_reference() {
    let (mut ran, mut fails) = (vec![], vec![]);
    for b in all_built(4) {
        let unused = b.m.unused_parameters();
        for (i, &l) in GRAD_LENGTHS.iter().enumerate() {
            let generic = i == 1;
            if generic {
                perturb(&b, 40);
            }
            let (x, w) = seeded(9 + l, || (randn(&[2, l, D]), randn(&[2, l, D])));
            let gf = grads(&*b.m, &b.vs, &x, &w, true);
            let gr = grads(&*b.m, &b.vs, &x, &w, false);
            for ((n, a), (_, r)) in gf.iter().zip(gr.iter()) {
                let declared = unused.iter().any(|u| n.ends_with(&format!(".{u}")));
                match (grad_kind(a), grad_kind(r)) {
                    ("nonzero", "nonzero") => {
                        let e = rel_err(a.as_ref().unwrap(), r.as_ref().unwrap());
                        if !(e < TOL_GRAD) {
                            fails.push(format!("{} L={l} grad {n}: rel err {e:.2e}", b.label));
                        }
                        if declared {
                            fails.push(format!("{} L={l} {n}: declared unused but gets a gradient", b.label));
                        }
                    }
                    (ka, kr) if ka == "nonzero" || kr == "nonzero" => {
                        fails.push(format!("{} L={l} grad {n}: {ka} in the fast form, {kr} in the reference", b.label));
                    }
                    (ka, kr) if generic && !declared => {
                        fails.push(format!(
                            "{} L={l} grad {n}: {ka} in the fast form and {kr} in the reference at a perturbed point (a dead parameter; declare it in unused_parameters if this config does not use it)",
                            b.label
                        ));
                    }
                    _ => {}
                }
            }
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

/// Training examples and AdamW steps (batch 32) of the learnability test: 240 steps see each
/// of the 4096 examples about twice, so little can be memorised.
const LEARN_EXAMPLES: i64 = 4096;
const LEARN_STEPS: i64 = 240;
const LEARN_PROBE: i64 = 40;

/// Trains a 2-layer LM (d = 32, no embedding dropout) with the mixer `table` on a tiny MQAR
/// (L = 32, kv = 2, V = 64, [`LEARN_EXAMPLES`]) for [`LEARN_STEPS`] AdamW steps at lr 3e-3, and
/// returns the loss on 256 held-out examples before and after, the steps it took, and whether
/// every step's loss was finite. Training stops early once the held-out loss (probed every
/// [`LEARN_PROBE`] steps) is under [`learn_bar`]. `Err` when the config does not validate at
/// d = 32.
fn learn(table: &toml::Table) -> std::result::Result<(f64, f64, i64, bool), String> {
    let (n_ex, steps, lr) = (LEARN_EXAMPLES, LEARN_STEPS, 3e-3);
    use crate::model::{LanguageModel, ModelConfig};
    use crate::tasks::mqar::MqarConfig;
    use crate::train::optim::AdamW;
    use crate::train::trainer::sparse_head_loss;
    let seg = MqarConfig::new(32, 2, n_ex as usize).generate(64, 11);
    let (xs, ys) = seg.to_tensors(Device::Cpu);
    let (tx, ty) = MqarConfig::new(32, 2, 256).generate(64, 12).to_tensors(Device::Cpu);
    let cfg = ModelConfig {
        d_model: 32,
        n_layers: 2,
        max_position_embeddings: 32,
        embed_dropout: 0.0,
        mixer: table.clone(),
        ..ModelConfig::default()
    };
    cfg.validate(64, 32).map_err(|e| e.to_string())?;
    let (vs, model) = seeded(0, || {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = LanguageModel::new(&vs.root(), &cfg, 64, 32).unwrap();
        (vs, model)
    });
    let mut opt = AdamW::new(vs.variables().into_iter().collect(), 0.0, 0.9, 0.999, 1e-8, false);
    let probe = |m: &LanguageModel| tch::no_grad(|| sparse_head_loss(m, &tx, &ty, false).0.double_value(&[]));
    let before = probe(&model);
    let mut finite = true;
    let mut after = before;
    for step in 0..steps {
        // stop as soon as the held-out loss is under the bar (probed every LEARN_PROBE steps)
        if step > 0 && step % LEARN_PROBE == 0 {
            after = probe(&model);
            if after < learn_bar() {
                return Ok((before, after, step, finite));
            }
        }
        let start = (step * 32) % n_ex;
        opt.zero_grad();
        let loss = sparse_head_loss(&model, &xs.narrow(0, start, 32), &ys.narrow(0, start, 32), true).0;
        if !loss.double_value(&[]).is_finite() {
            finite = false;
            break;
        }
        loss.backward();
        opt.step(lr);
    }
    if finite {
        after = probe(&model);
    }
    Ok((before, after, steps, finite))
}

/// The learnability bar: the held-out loss after training must be below
/// `ln(V/2) − LEARN_MARGIN`. `ln(V/2)` (= ln 32 here) is the best a model without a sequence
/// mixer can do on held-out examples: it can learn that answers are values (the upper half of
/// the vocabulary) but, seeing only the query token, nothing about which value (values are
/// uniform and the key→value map is drawn per example). So passing needs information moved
/// across positions. (On training examples the no-op can memorise below ln 32: 3.43 was seen.)
const LEARN_MARGIN: f64 = 0.1;

fn learn_bar() -> f64 {
    32f64.ln() - LEARN_MARGIN
}

/// Smoke test: every mixer, in a 2-layer LM, gets the held-out loss on a tiny MQAR below what a
/// model without a mixer can reach ([`learn_bar`]) within [`LEARN_STEPS`] steps, with finite loss
/// throughout. It catches broken gradients, NaNs, mixers that cannot be trained at all and
/// mixers that move no information across positions; it does not measure full recall (see the
/// training tests).
#[test]
fn suite_learnability_smoke() {
    let (mut ran, mut fails) = (vec![], vec![]);
    for e in registry() {
        let mut table = (e.defaults)();
        table.insert("name".into(), toml::Value::String(e.name.into()));
        match learn(&table) {
            Err(err) => fails.push(format!("{}: default config invalid at d=32: {err}", e.name)),
            Ok((before, after, steps, finite)) => {
                println!(
                    "suite learnability: {:<18} loss {before:.3} → {after:.3} in {steps} steps (bar {:.3})",
                    e.name,
                    learn_bar()
                );
                if !finite || !after.is_finite() || after > learn_bar() {
                    fails.push(format!(
                        "{}: loss {before:.3} → {after:.3}, bar {:.3} (finite throughout: {finite})",
                        e.name,
                        learn_bar()
                    ));
                }
            }
        }
        ran.push(e.name.to_string());
    }
    report("learnability", ran, fails);
}

/// The no-op baseline: an LM whose mixer outputs zeros must fail the learnability bar, and it
/// must still learn the value prior (so the bar is not failed for lack of training).
#[test]
fn learnability_bar_is_above_what_a_zero_mixer_reaches() {
    let mut table = toml::Table::new();
    table.insert("name".into(), toml::Value::String(super::testing::ZeroMixer::NAME.into()));
    let (before, after, steps, finite) = learn(&table).unwrap();
    println!(
        "learnability baseline (zero mixer): loss {before:.3} → {after:.3} in {steps} steps, bar {:.3}",
        learn_bar()
    );
    assert!(finite);
    assert!(after > learn_bar(), "a mixer that outputs zeros reached {after:.3} < bar {:.3}", learn_bar());
    assert!(after < before - 0.5, "the zero-mixer LM did not even learn the value prior ({before:.3} → {after:.3})");
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
            let (a, b) = tch::no_grad(|| {
                (m_cpu.forward(&x, false), m_gpu.forward(&x.to_device(gpu), false).to_device(Device::Cpu))
            });
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

/// Tolerances of the bf16-vs-fp32 check: bfloat16 keeps 8 significant bits (relative rounding
/// 2⁻⁸ ≈ 0.4 %), matmuls accumulate in fp32, and an output is a few roundings deep.
const TOL_BF16_FWD: f64 = 4e-2;
const TOL_BF16_GRAD: f64 = 8e-2;

/// Mixed precision (`train.precision = "bf16"`): every mixer's fast form run under bf16
/// autocast agrees with its fp32 run — the output, and the gradients of the input and of every
/// parameter (backward outside the autocast region, as the trainer runs it) — within bf16
/// tolerances, and gives fp32-or-bf16 values that are finite.
#[test]
fn suite_bf16_matches_fp32() {
    use crate::device::Precision;
    let (mut ran, mut fails) = (vec![], vec![]);
    for b in all_built(5) {
        let l = GRAD_LENGTHS[1];
        let (x, w) = seeded(31 + l, || (randn(&[2, l, D]), randn(&[2, l, D])));
        let run = |p: Precision| {
            let xg = x.copy().set_requires_grad(true);
            let mut vars: Vec<(String, Tensor)> =
                b.vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
            vars.sort_by(|a, c| a.0.cmp(&c.0));
            let y = p.autocast(Device::Cpu, || b.m.forward(&xg, false)).to_kind(Kind::Float);
            let mut wrt = vec![&xg];
            wrt.extend(vars.iter().map(|(_, v)| v));
            let gs = Tensor::run_backward(&[(&y * &w).sum(Kind::Float)], &wrt, false, false);
            let names: Vec<String> =
                std::iter::once("input".to_string()).chain(vars.into_iter().map(|(n, _)| n)).collect();
            (y.detach(), names.into_iter().zip(gs).collect::<Vec<_>>())
        };
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (run(Precision::Fp32), run(Precision::Bf16))));
        let Ok(((y32, g32), (y16, g16))) = outcome else {
            fails.push(format!("{}: the bf16 forward or backward panicked", b.label));
            continue;
        };
        let e = rel_err(&y16, &y32);
        if !(e < TOL_BF16_FWD) {
            fails.push(format!("{} output: rel err {e:.2e} (bf16 vs fp32)", b.label));
        }
        for ((n, a), (_, r)) in g16.iter().zip(g32.iter()) {
            if !a.defined() || !r.defined() {
                if a.defined() != r.defined() {
                    fails.push(format!("{} grad {n}: defined in one precision only", b.label));
                }
                continue;
            }
            if r.abs().max().double_value(&[]) == 0.0 {
                continue;
            }
            let e = rel_err(&a.to_kind(Kind::Float), r);
            if !(e < TOL_BF16_GRAD) {
                fails.push(format!("{} grad {n}: rel err {e:.2e} (bf16 vs fp32)", b.label));
            }
        }
        ran.push(format!("{} ({e:.1e})", b.label));
    }
    report("bf16-vs-fp32", ran, fails);
}
