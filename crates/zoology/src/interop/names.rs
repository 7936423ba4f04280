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
//! - `h3` (`H3`): `q_proj`, `k_proj`, `v_proj`, `output_linear`, `D` same names; the shift
//!   SSM's `shift_C` `[D, N]` ↔ `ssm_k_kernel.kernel.C` `[1, D, N]`, `shift_B` ↔
//!   `ssm_k_kernel.kernel.B`, `shift_D` ↔ `ssm_k_D`; the diagonal SSM `ssm.log_dt`,
//!   `ssm.log_a_re`, `ssm.a_im` ↔ `kernel.kernel.log_dt`, `.inv_A_real`, `.A_imag`, and
//!   `ssm.c_re`/`ssm.c_im` `[H, N/2]` ↔ `kernel.kernel.C[0, :, :, 0/1]`, `ssm.b_re`/`ssm.b_im`
//!   ↔ `kernel.kernel.B[:, :, 0/1]` (Zoology stores the complex parameters as real pairs: one
//!   Zoology tensor, two of ours, [`Mapped::part`]). Zoology's H3 hands `output_linear` its
//!   heads' outputs in the order `(head_dim, heads)`, ours `(heads, head_dim)`: the weight's
//!   input columns are permuted ([`Mapped::regroup`]).
//! - `gla` (`GatedLinearAttention`): `q_proj`, `k_proj`, `v_proj`, `g_proj`, `o_proj` same
//!   names; the low-rank gate `gk_proj1.weight` ↔ `gk_proj.0.weight`, `gk_proj2.*` ↔
//!   `gk_proj.1.*`; the per-head RMSNorm weight `g_norm_weight` ↔ `g_norm_swish_gate.weight`.
//! - `mamba` (`Mamba`): `in_proj`, `x_proj`, `dt_proj`, `out_proj`, `A_log`, `D` same names;
//!   `conv_weight` `[E, k]` ↔ `conv1d.weight` `[E, 1, k]`, `conv_bias` ↔ `conv1d.bias`. In the
//!   mamba block (Zoology's `MambaBlock`) the mixer sits under `backbone.layers.i.mixer.` and the
//!   block's RMSNorm `layers.i.norm.weight` ↔ `backbone.layers.i.norm.weight`; in the
//!   transformer block it is a `sequence_mixer` like the others.
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
    &["attention", "sliding_window", "base_conv", "hyena", "based", "linear_attention", "hybrid", "mamba", "gla", "h3"];

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
    /// `Some(shape)` when Zoology's layout differs from ours only by shape (a reshape); with
    /// `part`, the shape of the slice `[..., part]`.
    pub zoology_shape: Option<Vec<i64>>,
    /// `Some(i)`: ours is `zoology[..., i]` of a tensor whose last dimension holds
    /// [`PARTS`] of them (a complex parameter Zoology stores as real and imaginary part,
    /// `torch.view_as_real`; ours are two real tensors).
    pub part: Option<i64>,
    /// `Some((a, b))`: this weight's input columns are ours in the order `(a b)` (a outer) and
    /// Zoology's in the order `(b a)` (H3's output: ours `(heads, head_dim)`, Zoology's
    /// `(head_dim, heads)`, so `output_linear`'s columns are permuted; the same function).
    pub regroup: Option<(i64, i64)>,
}

/// How many parts a split Zoology tensor's last dimension holds (real, imaginary).
pub const PARTS: i64 = 2;

fn plain(z: String) -> Mapped {
    Mapped { zoology: z, zoology_shape: None, part: None, regroup: None }
}

fn reshaped(z: &str, shape: Vec<i64>) -> Mapped {
    Mapped { zoology: z.into(), zoology_shape: Some(shape), part: None, regroup: None }
}

fn part(z: &str, shape: Vec<i64>, i: i64) -> Mapped {
    Mapped { zoology: z.into(), zoology_shape: Some(shape), part: Some(i), regroup: None }
}

impl Mapped {
    /// Our tensor `t` in Zoology's layout (for a part: the slice's).
    pub fn to_zoology_layout(&self, t: &tch::Tensor) -> tch::Tensor {
        if let Some((a, b)) = self.regroup {
            let rows = t.size()[0];
            return t.view([rows, a, b]).transpose(1, 2).reshape([rows, a * b]);
        }
        match &self.zoology_shape {
            Some(s) => t.reshape(s.as_slice()),
            None => t.shallow_clone(),
        }
    }
    /// Zoology's tensor `z` (or its slice, [`Mapped::select`]) in our layout and `shape`.
    pub fn from_zoology_layout(&self, z: &tch::Tensor, shape: &[i64]) -> tch::Tensor {
        match self.regroup {
            Some((a, b)) => z.view([shape[0], b, a]).transpose(1, 2).reshape(shape),
            None => z.reshape(shape),
        }
    }
    /// The entry of Zoology's tensor `z` that is ours (the slice, for a part).
    pub fn select(&self, z: &tch::Tensor) -> tch::Tensor {
        match self.part {
            Some(i) => z.select(-1, i),
            None => z.shallow_clone(),
        }
    }
    /// The shape of Zoology's whole tensor, given ours.
    pub fn full_shape(&self, ours: &[i64]) -> Vec<i64> {
        let mut s = self.zoology_shape.clone().unwrap_or_else(|| ours.to_vec());
        if self.part.is_some() {
            s.push(PARTS);
        }
        s
    }
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
    let mamba_block = model.block_kind() == crate::model::BlockKind::Mamba;
    if rest.starts_with("norm1.") || rest.starts_with("norm2.") || (mamba_block && rest.starts_with("norm.")) {
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
    // Zoology's MambaBlock calls its mixer `mixer`, the TransformerBlock `sequence_mixer`
    let outer = if mamba_block { "mixer" } else { "sequence_mixer" };
    Ok(Mapped { zoology: format!("{pre}.{outer}.{inner}{}", m.zoology), ..m })
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
        ("base_conv", "conv_weight") => Some(reshaped("conv.conv.weight", vec![shape[0], 1, shape[1]])),
        ("base_conv", "conv_bias") => Some(plain("conv.conv.bias".into())),
        ("base_conv", "filter") => Some(plain("conv.filter".into())),
        ("base_conv", "filter_mlp1") => Some(dotted("conv.mlp.0")),
        ("base_conv", "filter_mlp2") => Some(dotted("conv.mlp.2")),
        ("based" | "linear_attention", "proj_q" | "proj_k" | "proj_v" | "proj_o") => Some(dotted(head)),
        ("hyena", "in_proj" | "out_proj") => Some(dotted(head)),
        ("mamba", "in_proj" | "x_proj" | "dt_proj" | "out_proj" | "A_log" | "D") => Some(dotted(head)),
        ("mamba", "conv_weight") => Some(reshaped("conv1d.weight", vec![shape[0], 1, shape[1]])),
        ("mamba", "conv_bias") => Some(plain("conv1d.bias".into())),
        ("h3", "output_linear") if tail == "weight" => {
            let p = table.get("head_dim").and_then(|v| v.as_integer()).unwrap_or(1).max(1);
            Some(Mapped { regroup: Some((shape[1] / p, p)), ..plain("output_linear.weight".into()) })
        }
        ("h3", "q_proj" | "k_proj" | "v_proj" | "output_linear" | "D") => Some(dotted(head)),
        ("h3", "shift_C") => Some(reshaped("ssm_k_kernel.kernel.C", vec![1, shape[0], shape[1]])),
        ("h3", "shift_B") => Some(plain("ssm_k_kernel.kernel.B".into())),
        ("h3", "shift_D") => Some(plain("ssm_k_D".into())),
        ("h3", "ssm") => h3_ssm_param(tail, shape),
        ("gla", "q_proj" | "k_proj" | "v_proj" | "g_proj" | "o_proj") => Some(dotted(head)),
        ("gla", "gk_proj1") => Some(dotted("gk_proj.0")),
        ("gla", "gk_proj2") => Some(dotted("gk_proj.1")),
        ("gla", "g_norm_weight") => Some(plain("g_norm_swish_gate.weight".into())),
        ("hyena", "short_filter_weight") => Some(reshaped("short_filter.weight", vec![shape[0], 1, shape[1]])),
        ("hyena", "short_filter_bias") => Some(plain("short_filter.bias".into())),
        ("hyena", "bias") => Some(plain("filter_fn.bias".into())),
        ("hyena", "filter_pos_emb_z") => Some(reshaped("filter_fn.pos_emb.z", vec![1, shape[0], shape[1]])),
        ("hyena", "filter_sin_freq") => Some(plain("filter_fn.implicit_filter.1.freq".into())),
        ("hyena", "filter_out") => Some(dotted(&format!("filter_fn.implicit_filter.{}", 2 * (hyena_inner(table) + 1)))),
        ("hyena", h) if h.starts_with("filter_ffn") => {
            let i: i64 = h["filter_ffn".len()..].parse().ok()?;
            Some(dotted(&format!("filter_fn.implicit_filter.{}", 2 * i)))
        }
        _ => None,
    }
}

/// H3's diagonal SSM (`ssm.*`, our [`crate::mixers::common::modal::S4d`]) in Zoology's
/// `SSKernelDiag` (`kernel.kernel.*`): `C` `[1, H, N/2, 2]` and `B` `[H, N/2, 2]` hold real and
/// imaginary parts; `inv_A_real` is our `log_a_re` (`A_re = −exp(·)`, Zoology's `real_type = "exp"`).
fn h3_ssm_param(p: &str, shape: &[i64]) -> Option<Mapped> {
    let k = |n: &str| format!("kernel.kernel.{n}");
    Some(match p {
        "log_dt" => plain(k("log_dt")),
        "log_a_re" => plain(k("inv_A_real")),
        "a_im" => plain(k("A_imag")),
        "c_re" | "c_im" => part(&k("C"), vec![1, shape[0], shape[1]], (p == "c_im") as i64),
        "b_re" | "b_im" => part(&k("B"), shape.to_vec(), (p == "b_im") as i64),
        _ => return None,
    })
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
        // the mamba block: Zoology's MambaBlock names its mixer `mixer` and its RMSNorm `norm`
        let mb = model("{ name = \"mamba\" }");
        let c = z("layers.1.mixer.conv_weight", &mb, &[32, 3]);
        assert_eq!(c.zoology, "backbone.layers.1.mixer.conv1d.weight");
        assert_eq!(c.zoology_shape, Some(vec![32, 1, 3]));
        assert_eq!(z("layers.0.norm.weight", &mb, &[16]).zoology, "backbone.layers.0.norm.weight");
        assert_eq!(z("layers.0.mixer.A_log", &mb, &[32, 8]).zoology, "backbone.layers.0.mixer.A_log");
        assert!(to_zoology("layers.0.norm.weight", &att, &[16]).is_err());
        // H3's complex C: our real and imaginary parts are slices of one Zoology tensor
        let h3 = model("{ name = \"h3\", head_dim = 2, d_state = 8 }");
        let c = z("layers.0.mixer.ssm.c_im", &h3, &[8, 4]);
        assert_eq!(c.zoology, "backbone.layers.0.sequence_mixer.kernel.kernel.C");
        assert_eq!((c.zoology_shape, c.part), (Some(vec![1, 8, 4]), Some(1)));
        assert_eq!(z("layers.0.mixer.ssm.b_re", &h3, &[8, 4]).part, Some(0));
    }
}
