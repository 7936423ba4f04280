//! `hybrid`: a per-layer list of mixers. Layer `i` uses `layers[i % len(layers)]` (Zoology's
//! `Hybrid`). The standard recipe is `[base_conv(k=3), X]`: layer 0 a short gated convolution,
//! layer 1 the mixer under test; StripedHyena alternates Hyena and attention the same way.
//!
//! Every form delegates to the chosen layer's mixer, so its math, state and state size (both
//! conventions, as Zoology's `Hybrid.state_size`) are exactly that mixer's.

use super::{build_table, delegate_mixer, memory_table, validate_table, BuildCtx, Mixer, MixerKind, MixerMemory};
use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::nn;

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

delegate_mixer!(Hybrid, inner);

impl MixerKind for Hybrid {
    type Config = HybridConfig;
    const NAME: &'static str = "hybrid";
    const ABOUT: &'static str =
        "per-layer list of mixers, layer i uses layers[i % len] (e.g. [base_conv k=3, attention])";
    const STATE_FORMULA: &'static str = "that of each layer's mixer";
    const CONSTANT_STATE: bool = false;

    /// That of the layer's own mixer.
    fn memory(c: &HybridConfig, d: i64, ctx: &BuildCtx, l: i64) -> MixerMemory {
        match c.layers.get(ctx.layer_idx % c.layers.len().max(1)) {
            Some(t) if t.get("name").and_then(|v| v.as_str()) != Some("hybrid") => {
                memory_table(t, d, ctx, l).unwrap_or_else(|_| MixerMemory::output_only(d, l))
            }
            _ => MixerMemory::output_only(d, l),
        }
    }

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
