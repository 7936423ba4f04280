//! `hybrid`: a per-layer list of mixers. Layer `i` uses `layers[i % len(layers)]` (Zoology's
//! `Hybrid`). The standard recipe is `[base_conv(k=3), X]`: layer 0 a short gated convolution,
//! layer 1 the mixer under test; StripedHyena alternates Hyena and attention the same way.
//!
//! Every form delegates to the chosen layer's mixer, so its math, state and state size are
//! exactly that mixer's.

use super::{build_table, validate_table, BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HybridConfig {
    /// Mixer tables, e.g. `[{ name = "base_conv", kernel_size = 3 }, { name = "attention" }]`.
    pub layers: Vec<toml::Table>,
}

impl Default for HybridConfig {
    fn default() -> Self {
        let mut a = toml::Table::new();
        a.insert("name".into(), "base_conv".into());
        a.insert("kernel_size".into(), 3.into());
        let mut b = toml::Table::new();
        b.insert("name".into(), "attention".into());
        HybridConfig { layers: vec![a, b] }
    }
}

#[derive(Debug)]
pub struct Hybrid {
    inner: Box<dyn Mixer>,
}

impl Mixer for Hybrid {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.inner.forward(x, train)
    }
    fn reference(&self, x: &Tensor) -> Tensor {
        self.inner.reference(x)
    }
    fn init_state(&self, batch: i64) -> MixerState {
        self.inner.init_state(batch)
    }
    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        self.inner.step(state, x_t)
    }
    fn state_size(&self, seq_len: i64) -> i64 {
        self.inner.state_size(seq_len)
    }
    fn prefill(&self, x: &Tensor) -> (Tensor, MixerState) {
        self.inner.prefill(x)
    }
}

impl MixerKind for Hybrid {
    type Config = HybridConfig;
    const NAME: &'static str = "hybrid";
    const ABOUT: &'static str = "per-layer list of mixers, layer i uses layers[i % len] (e.g. [base_conv k=3, attention])";
    const STATE_FORMULA: &'static str = "that of each layer's mixer";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &HybridConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        if c.layers.is_empty() {
            return Err(config_err(format!("{field}.layers"), "needs at least one mixer table"));
        }
        for (i, t) in c.layers.iter().enumerate() {
            if t.get("name").and_then(|v| v.as_str()) == Some("hybrid") {
                return Err(config_err(format!("{field}.layers[{i}].name"), "a hybrid cannot contain a hybrid"));
            }
            validate_table(t, d, ctx, &format!("{field}.layers[{i}]"))?;
        }
        Ok(())
    }

    fn build(p: nn::Path, d: i64, c: &HybridConfig, ctx: &BuildCtx) -> Result<Self> {
        let i = ctx.layer_idx % c.layers.len();
        let inner = build_table(p, &c.layers[i], d, ctx, &format!("model.mixer.layers[{i}]"))?;
        Ok(Hybrid { inner })
    }
}
