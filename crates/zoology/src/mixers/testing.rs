//! Test helpers shared by the mixer tests (compiled only for tests).

use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Kind, Tensor};

/// Serialises every use of the process-global torch RNG in tests.
static GLOBAL_RNG: Mutex<()> = Mutex::new(());

/// Runs `f` with the global torch RNG seeded by `seed` while holding one process-wide lock, so
/// that no other test (running in another thread) reseeds or draws from the generator between
/// `manual_seed` and the draws that depend on it. Put the seed *and* every draw that must be
/// reproducible (parameter init in `VarStore`s, `Tensor::randn`, …) inside `f`; do not nest.
pub fn seeded<T>(seed: i64, f: impl FnOnce() -> T) -> T {
    let _guard = seed_guard(seed);
    f()
}

/// [`seeded`] as a guard: locks the global torch RNG, seeds it, and keeps it locked until the
/// returned guard is dropped (`let _rng = seed_guard(0);` holds it for the rest of the scope).
pub fn seed_guard(seed: i64) -> MutexGuard<'static, ()> {
    let guard = GLOBAL_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed);
    guard
}

/// Relative error ‖a − b‖ / max(‖b‖, 1e-12), as f64.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).to_kind(Kind::Double).norm().double_value(&[]);
    let base = b.to_kind(Kind::Double).norm().double_value(&[]);
    diff / base.max(1e-12)
}

/// Gradients of `Σ w ⊙ y` (`y` from the fast or the reference form of `m`) with respect to the
/// input (first, named "input") and every trainable parameter of `vs` (sorted by name); `None`
/// where autograd gives none (the parameter is not in that form's graph).
pub fn grads(m: &dyn Mixer, vs: &nn::VarStore, x: &Tensor, w: &Tensor, fast: bool) -> Vec<(String, Option<Tensor>)> {
    let xg = x.copy().set_requires_grad(true);
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
    vars.sort_by(|a, c| a.0.cmp(&c.0));
    let y = if fast { m.forward(&xg, false) } else { m.reference(&xg) };
    let mut wrt = vec![&xg];
    wrt.extend(vars.iter().map(|(_, v)| v));
    let gs = Tensor::run_backward(&[(y * w).sum(Kind::Float)], &wrt, false, false);
    std::iter::once("input".to_string())
        .chain(vars.into_iter().map(|(n, _)| n))
        .zip(gs)
        .map(|(n, g)| (n, g.defined().then_some(g)))
        .collect()
}

/// Test helper: validates the mixer table written as inline TOML (e.g.
/// `{ name = "h3", head_dim = 3 }`) for `d_model = 16`, `max_seq_len = 48` and returns the
/// error text (panics if the table is accepted).
pub fn validate_error(inline: &str) -> String {
    let t: toml::Table = toml::from_str(&format!("m = {inline}")).unwrap();
    let m = t["m"].as_table().unwrap().clone();
    match super::validate_table(&m, 16, &super::BuildCtx::new(0, 2, 48), "model.mixer") {
        Ok(()) => panic!("{inline} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// A no-op mixer for baselines: every form outputs zeros, so a model built with it sees no
/// other position than the current token's. Registered for tests only (`test_zero`).
#[derive(Debug)]
pub struct ZeroMixer;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroMixerConfig {}

impl Mixer for ZeroMixer {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        x.zeros_like()
    }
    fn reference(&self, x: &Tensor) -> Tensor {
        x.zeros_like()
    }
    fn init_state(&self, _batch: i64) -> MixerState {
        MixerState::default()
    }
    fn step(&self, _state: &mut MixerState, x_t: &Tensor) -> Tensor {
        x_t.zeros_like()
    }
    fn state_size(&self, _seq_len: i64) -> i64 {
        0
    }
    /// Zero everywhere: it computes nothing (`zeros_like` is not arithmetic).
    fn flops(&self, _seq_len: i64) -> crate::flops::MixerFlops {
        crate::flops::MixerFlops::default()
    }
}

impl MixerKind for ZeroMixer {
    type Config = ZeroMixerConfig;
    const NAME: &'static str = "test_zero";
    const ABOUT: &'static str = "test only: outputs zeros (the no-op baseline of the learnability test)";
    const STATE_FORMULA: &'static str = "0";
    const CONSTANT_STATE: bool = true;
    fn build(_p: nn::Path, _d: i64, _c: &ZeroMixerConfig, _ctx: &BuildCtx) -> Result<Self> {
        Ok(ZeroMixer)
    }
}
