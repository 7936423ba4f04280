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
pub const SHARED_MIXERS: &[&str] = &["attention", "sliding_window", "base_conv"];

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

/// Zoology's name for the parameter `ours` (a zoology-rs variable name) of a model whose
/// mixer is `mixer`; `shape` is our shape (used for layout changes).
pub fn to_zoology(ours: &str, mixer: &str, shape: &[i64]) -> Result<Mapped> {
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
    let m = mixer_param(mixer, p, shape).ok_or_else(unknown)?;
    Ok(Mapped { zoology: format!("{pre}.sequence_mixer.{}", m.zoology), zoology_shape: m.zoology_shape })
}

/// A mixer's parameter `p` (after `mixer.`) in Zoology's naming.
fn mixer_param(mixer: &str, p: &str, shape: &[i64]) -> Option<Mapped> {
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
        _ => None,
    }
}

/// Zoology's name of the fixed positional features of layer `layer`'s implicit filter.
pub fn implicit_z_name(layer: usize) -> String {
    format!("backbone.layers.{layer}.sequence_mixer.conv.pos_emb.z")
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
        let z = |o: &str, m: &str, s: &[i64]| to_zoology(o, m, s).unwrap();
        assert_eq!(z("embedding.weight", "attention", &[8, 4]).zoology, WORD_EMBEDDINGS);
        assert_eq!(
            z("layers.1.mixer.wqkv.weight", "attention", &[12, 4]).zoology,
            "backbone.layers.1.sequence_mixer.Wqkv.weight"
        );
        let c = z("layers.0.mixer.conv_weight", "base_conv", &[4, 3]);
        assert_eq!(c.zoology, "backbone.layers.0.sequence_mixer.conv.conv.weight");
        assert_eq!(c.zoology_shape, Some(vec![4, 1, 3]));
        assert_eq!(
            z("layers.0.mixer.filter_mlp2.bias", "base_conv", &[4]).zoology,
            "backbone.layers.0.sequence_mixer.conv.mlp.2.bias"
        );
        assert_eq!(
            z("layers.3.state_mixer.fc2.weight", "attention", &[4, 16]).zoology,
            "backbone.layers.3.state_mixer.fc2.weight"
        );
        // a parameter without a counterpart is a named error, not a guess
        let e = to_zoology("layers.0.mixer.wqkv.weight", "based", &[1]).unwrap_err().to_string();
        assert!(e.contains("no Zoology counterpart") && e.contains("attention"), "{e}");
        assert!(to_zoology("layers.0.state_mixer.gate.weight", "attention", &[1]).is_err());
    }
}
