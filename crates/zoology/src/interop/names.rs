//! Parameter names and layouts: zoology-rs ↔ Zoology's `LanguageModel.state_dict()`.
//!
//! | zoology-rs | Zoology |
//! |---|---|
//! | `embedding.weight` | `backbone.embeddings.word_embeddings.weight` and (tied) `lm_head.weight` |
//! | `position_embedding.weight` | `backbone.embeddings.position_embeddings.weight` |
//! | `layers.i.norm1.*`, `layers.i.norm2.*` | `backbone.layers.i.norm1.*`, `…norm2.*` |
//! | `layers.i.state_mixer.fc1.*`, `fc2.*` | `backbone.layers.i.state_mixer.fc1.*`, `fc2.*` (`MLP`) |
//! | `layers.i.mixer.<p>` | `backbone.layers.i.sequence_mixer.<mixer's name for p>` |
//! | `ln_f.*` | `backbone.ln_f.*` |
//!
//! Mixers (the part after `mixer.`):
//! - `attention` (`MHA`): `wqkv.*` ↔ `Wqkv.*` (rows q | k | v, heads contiguous inside each:
//!   Zoology's `(three h d)`), `out_proj.*` ↔ `out_proj.*`.
//! - `sliding_window` (`SlidingAttn`, one head, Zoology's window convention): as attention.
//! - `based` (`Based`, Taylor map) and `linear_attention` (`Based` with another feature map):
//!   `proj_q`, `proj_k`, `proj_v`, `proj_o` (no biases), same names; q and k are `(h f)`,
//!   v `(h d)`, as Zoology's `view(b, l, H, ·)`.
//! - `hyena` (`Hyena`, one head, one block): `in_proj`, `out_proj` same names;
//!   `short_filter_weight` `[3D, k]` ↔ `short_filter.weight` `[3D, 1, k]`, `short_filter_bias`
//!   ↔ `short_filter.bias`; the D skip `bias` ↔ `filter_fn.bias`; `filter_pos_emb_z` `[L, e]` ↔
//!   `filter_fn.pos_emb.z` `[1, L, e]`; `filter_ffn{i}.*` ↔ `filter_fn.implicit_filter.{2i}.*`,
//!   `filter_out.weight` ↔ `filter_fn.implicit_filter.{2(n+1)}.weight` (n = `num_inner_mlps`);
//!   the shared Sin `filter_sin_freq` ↔ `filter_fn.implicit_filter.1.freq`, which Zoology's
//!   state dict repeats as `.3.freq`, `.5.freq`, … (one module appended after every Linear).
//!   Zoology's buffers `filter_fn.pos_emb.t` and `filter_fn.modulation.deltas` are computed.
//! - `hybrid` (`Hybrid`): layer i's mixer as above, under `sequence_mixer.mixer.`.
//! - `base_conv` (`BaseConv`): `projection.*` ↔ `projection.*`; short conv `conv_weight`
//!   `[D, k]` ↔ `conv.conv.weight` `[D, 1, k]` (same tap order: PyTorch's cross-correlation
//!   with k−1 left padding), `conv_bias` ↔ `conv.conv.bias`; explicit long filter `filter`
//!   `[D, L]` ↔ `conv.filter`; implicit filter MLP `filter_mlp1.*` ↔ `conv.mlp.0.*`,
//!   `filter_mlp2.*` ↔ `conv.mlp.2.*`, and Zoology's fixed positional features
//!   `conv.pos_emb.z` `[1, L, 3]` (an `nn.Parameter` with `requires_grad=False`, so it is in the
//!   state dict), which zoology-rs computes and does not store: export writes ours, import checks
//!   that the file's agree with ours (they depend only on `l_max`).

use crate::error::{config_err, Result};

/// The mixers whose parameters have a mapping (export and import refuse the others, naming
/// this list).
pub const SHARED_MIXERS: &[&str] =
    &["attention", "sliding_window", "base_conv", "hyena", "based", "linear_attention", "hybrid"];

/// Layer `i`'s mixer table, and whether it sits inside a `hybrid` (Zoology's `Hybrid` keeps
/// it as `.mixer`).
pub fn layer_mixer(m: &crate::model::ModelConfig, i: usize) -> (toml::Table, bool) {
    if m.mixer_name() == "hybrid" {
        if let Some(layers) = m.mixer.get("layers").and_then(|v| v.as_array()) {
            if let Some(t) = layers.get(i % layers.len().max(1)).and_then(|v| v.as_table()) {
                return (t.clone(), true);
            }
        }
    }
    (m.mixer.clone(), false)
}

/// One zoology-rs parameter's Zoology name and the shape Zoology stores it in.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub zoology: String,
    /// `Some(shape)` when Zoology's layout differs from ours only by shape (a reshape).
    pub zoology_shape: Option<Vec<i64>>,
}

fn plain(z: String) -> Mapped {
    Mapped { zoology: z, zoology_shape: None }
}

/// Zoology's name for the parameter `ours` (a zoology-rs variable name) of a model with config
/// `model`; `shape` is our shape (used for layout changes).
pub fn to_zoology(ours: &str, model: &crate::model::ModelConfig, shape: &[i64]) -> Result<Mapped> {
    let mixer = model.mixer_name();
    let unknown = || {
        config_err(
            "model",
            format!("parameter {ours} of a {mixer} model has no Zoology counterpart (export/import cover the mixers {SHARED_MIXERS:?} with the transformer block and identity or MLP state mixers)"),
        )
    };
    match ours {
        "embedding.weight" => return Ok(plain("backbone.embeddings.word_embeddings.weight".into())),
        "position_embedding.weight" => return Ok(plain("backbone.embeddings.position_embeddings.weight".into())),
        _ => {}
    }
    if let Some(rest) = ours.strip_prefix("ln_f.") {
        return Ok(plain(format!("backbone.ln_f.{rest}")));
    }
    let rest = ours.strip_prefix("layers.").ok_or_else(unknown)?;
    let (layer, rest) = rest.split_once('.').ok_or_else(unknown)?;
    let pre = format!("backbone.layers.{layer}");
    if rest.starts_with("norm1.") || rest.starts_with("norm2.") {
        return Ok(plain(format!("{pre}.{rest}")));
    }
    if let Some(p) = rest.strip_prefix("state_mixer.") {
        if p.starts_with("fc1.") || p.starts_with("fc2.") {
            return Ok(plain(format!("{pre}.state_mixer.{p}")));
        }
        return Err(unknown());
    }
    let p = rest.strip_prefix("mixer.").ok_or_else(unknown)?;
    let (table, hybrid) = layer_mixer(model, layer.parse().map_err(|_| unknown())?);
    let name = table.get("name").and_then(|v| v.as_str()).unwrap_or("");
    let m = mixer_param(name, &table, p, shape).ok_or_else(unknown)?;
    let inner = if hybrid { "mixer." } else { "" };
    Ok(Mapped { zoology: format!("{pre}.sequence_mixer.{inner}{}", m.zoology), zoology_shape: m.zoology_shape })
}

/// The number of hidden Linear+Sin layers of a hyena layer's filter (default 2).
pub fn hyena_inner(table: &toml::Table) -> i64 {
    table.get("num_inner_mlps").and_then(|v| v.as_integer()).unwrap_or(2)
}

/// A mixer's parameter `p` (after `mixer.`) in Zoology's naming; `table` is the layer's mixer.
fn mixer_param(mixer: &str, table: &toml::Table, p: &str, shape: &[i64]) -> Option<Mapped> {
    let (head, tail) = p.split_once('.').unwrap_or((p, ""));
    let dotted = |z: &str| plain(if tail.is_empty() { z.to_string() } else { format!("{z}.{tail}") });
    match (mixer, head) {
        ("attention" | "sliding_window", "wqkv") => Some(dotted("Wqkv")),
        ("attention" | "sliding_window", "out_proj") => Some(dotted("out_proj")),
        ("base_conv", "projection") => Some(dotted("projection")),
        ("base_conv", "conv_weight") => {
            Some(Mapped { zoology: "conv.conv.weight".into(), zoology_shape: Some(vec![shape[0], 1, shape[1]]) })
        }
        ("base_conv", "conv_bias") => Some(plain("conv.conv.bias".into())),
        ("base_conv", "filter") => Some(plain("conv.filter".into())),
        ("base_conv", "filter_mlp1") => Some(dotted("conv.mlp.0")),
        ("base_conv", "filter_mlp2") => Some(dotted("conv.mlp.2")),
        ("based" | "linear_attention", "proj_q" | "proj_k" | "proj_v" | "proj_o") => Some(dotted(head)),
        ("hyena", "in_proj" | "out_proj") => Some(dotted(head)),
        ("hyena", "short_filter_weight") => {
            Some(Mapped { zoology: "short_filter.weight".into(), zoology_shape: Some(vec![shape[0], 1, shape[1]]) })
        }
        ("hyena", "short_filter_bias") => Some(plain("short_filter.bias".into())),
        ("hyena", "bias") => Some(plain("filter_fn.bias".into())),
        ("hyena", "filter_pos_emb_z") => {
            Some(Mapped { zoology: "filter_fn.pos_emb.z".into(), zoology_shape: Some(vec![1, shape[0], shape[1]]) })
        }
        ("hyena", "filter_sin_freq") => Some(plain("filter_fn.implicit_filter.1.freq".into())),
        ("hyena", "filter_out") => Some(dotted(&format!("filter_fn.implicit_filter.{}", 2 * (hyena_inner(table) + 1)))),
        ("hyena", h) if h.starts_with("filter_ffn") => {
            let i: i64 = h["filter_ffn".len()..].parse().ok()?;
            Some(dotted(&format!("filter_fn.implicit_filter.{}", 2 * i)))
        }
        _ => None,
    }
}

/// Zoology's prefix of layer `layer`'s sequence mixer (with `.mixer.` inside a hybrid).
pub fn mixer_prefix(layer: usize, hybrid: bool) -> String {
    let inner = if hybrid { "mixer." } else { "" };
    format!("backbone.layers.{layer}.sequence_mixer.{inner}")
}

/// Zoology's name of the (tied) output head.
pub const LM_HEAD: &str = "lm_head.weight";
/// Zoology's name of the token embedding.
pub const WORD_EMBEDDINGS: &str = "backbone.embeddings.word_embeddings.weight";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_zoologys_modules() {
        let model = |m: &str| -> crate::model::ModelConfig { toml::from_str(&format!("mixer = {m}")).unwrap() };
        let (att, bc) = (model("{ name = \"attention\" }"), model("{ name = \"base_conv\" }"));
        let z = |o: &str, m: &crate::model::ModelConfig, s: &[i64]| to_zoology(o, m, s).unwrap();
        assert_eq!(z("embedding.weight", &att, &[8, 4]).zoology, WORD_EMBEDDINGS);
        assert_eq!(
            z("layers.1.mixer.wqkv.weight", &att, &[12, 4]).zoology,
            "backbone.layers.1.sequence_mixer.Wqkv.weight"
        );
        let c = z("layers.0.mixer.conv_weight", &bc, &[4, 3]);
        assert_eq!(c.zoology, "backbone.layers.0.sequence_mixer.conv.conv.weight");
        assert_eq!(c.zoology_shape, Some(vec![4, 1, 3]));
        assert_eq!(
            z("layers.0.mixer.filter_mlp2.bias", &bc, &[4]).zoology,
            "backbone.layers.0.sequence_mixer.conv.mlp.2.bias"
        );
        assert_eq!(
            z("layers.3.state_mixer.fc2.weight", &att, &[4, 16]).zoology,
            "backbone.layers.3.state_mixer.fc2.weight"
        );
        // a parameter without a counterpart is a named error, not a guess
        let hy = model("{ name = \"hybrid\", layers = [{ name = \"base_conv\" }, { name = \"based\" }] }");
        assert_eq!(
            z("layers.1.mixer.proj_q.weight", &hy, &[16, 4]).zoology,
            "backbone.layers.1.sequence_mixer.mixer.proj_q.weight"
        );
        assert_eq!(
            z("layers.2.mixer.projection.weight", &hy, &[4, 4]).zoology,
            "backbone.layers.2.sequence_mixer.mixer.projection.weight"
        );
        let e = to_zoology("layers.0.mixer.wqkv.weight", &model("{ name = \"based\" }"), &[1]).unwrap_err().to_string();
        assert!(e.contains("no Zoology counterpart") && e.contains("attention"), "{e}");
        assert!(to_zoology("layers.0.state_mixer.gate.weight", &att, &[1]).is_err());
    }
}
