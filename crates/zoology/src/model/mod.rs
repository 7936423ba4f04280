//! The language model around a sequence mixer (Zoology's `LanguageModel`), with one of three
//! blocks (`block`):
//!
//! ```text
//! h = dropout_emb(E[x] + P[pos])            (P only when max_position_embeddings > 0)
//! transformer (Zoology's TransformerBlock):
//!   for each block:                         (block 0 starts from residual = h)
//!       residual += dropout(h)   (not in block 0)
//!       h = mixer(LN1(residual))
//!       residual += dropout(h)
//!       h = state_mixer(LN2(residual))      (identity | MLP(GELU, ×4) | GLU | RWKV channel mix)
//! mamba (Zoology's MambaBlock = mamba_ssm's Block):
//!   for each block:
//!       residual += h            (not in block 0)
//!       h = mixer(RMSNorm(residual))
//!       if state_mixer ≠ identity:          (mamba_ssm's Block with an MLP; not in Figure 2)
//!           residual += h;  h = state_mixer(RMSNorm2(residual))
//! llama (a Llama-style pre-norm block):
//!   as transformer, with RMSNorm for LN1, LN2 and LN_f; state_mixer defaults to swiglu
//!   (W₂(silu(W₁x) ⊙ W₃x), no biases); Llama's positions are the attention mixer's rope = true
//!   with max_position_embeddings = 0
//! out = LN_f(residual + dropout(h))
//! logits = out Eᵀ                           (tied head; or a separate head)
//! ```
//! A mixer that is a residual layer of its own ([`Mixer::takes_raw_residual`], Mega) gets the
//! residual stream itself instead of its normalised copy, in either block.
//!
//! `block = "auto"` (the default) resolves, when the config is read, to `mamba` for the mamba
//! mixer and `transformer` otherwise, as Zoology's configs choose `block_type`; `embed_dropout`
//! left unset resolves to 0.1 (Zoology's default) for the transformer block and 0 for the mamba
//! block (Zoology's MambaBlock has no dropout). The mixer table is stored with every default of
//! its config written out. So a written config.toml names the block, the dropout and every
//! mixer hyperparameter, and a later change of a default cannot change what it means.
//!
//! Init (Zoology's `_init_weights`): embeddings and Linear weights N(0, 0.02), biases 0, output
//! projections N(0, 0.02/√(2·n_layers)), norm weights 1; mixers document their exceptions.
//! The head can be applied to all positions ([`LanguageModel::logits`]) or only to gathered
//! supervised positions ([`LanguageModel::hidden`] + [`LanguageModel::head`]); both give the
//! same loss.
//!
//! `backbone = "autoencoder"` is MAD's `AutoEncoder` (`mad/model/auto_encoder.py`, used by its
//! compression task): the blocks above encode the sequence, the residual stream at the **last**
//! position is the code `z`, and a fixed MLP decoder rebuilds every position `i` from
//! `z + sincos(i)` (fairseq's sinusoidal embedding, as MAD's `posemb_sincos_1d`):
//! `x_i = GELU(W₂ LN(GELU(W₁ LN(z + sincos(i)))))`, `out_i = LN_f(x_i)`, then the head. The
//! decoder sees the whole input through `z`, so only tasks whose targets are the input itself
//! may use it (checked at config validation).
//!
//! Layer 4 of 11, **model** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod decode;
pub mod state_mixer;

use crate::error::{config_err, Result};
use crate::flops::MixerFlops;
use crate::mixers::common::layers::rms_norm;
use crate::mixers::common::layers::Linear;
use crate::mixers::{self, BuildCtx, Mixer};
use crate::tasks::Backbone;
use serde::{Deserialize, Serialize};
use state_mixer::{StateMixer, StateMixerKind};
use tch::{nn, Tensor};

fn d_model() -> i64 {
    128
}
fn n_layers() -> i64 {
    2
}
fn embed_dropout() -> f64 {
    0.1
}
fn yes() -> bool {
    true
}
fn default_mixer() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("name".into(), "attention".into());
    t
}

/// The block around each layer's mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// `mamba` for the mamba mixer, `transformer` otherwise (resolved when a config is read).
    #[default]
    Auto,
    /// Zoology's `TransformerBlock`: LayerNorms, two residual branches (mixer, state mixer).
    Transformer,
    /// Zoology's `MambaBlock` (mamba_ssm's `Block`): RMSNorm → mixer → one residual; a
    /// non-identity state mixer adds mamba_ssm's second RMSNorm → MLP branch.
    Mamba,
    /// A Llama-style pre-norm block: RMSNorm → mixer → residual, RMSNorm → state mixer →
    /// residual, and a final RMSNorm (`ln_f`) instead of the LayerNorm; the state mixer
    /// defaults to `swiglu`. With attention, set the mixer's `rope = true` and
    /// `max_position_embeddings = 0` for Llama's positions.
    Llama,
}

impl BlockKind {
    /// The concrete block for a model whose mixer is called `mixer_name`.
    pub fn resolve(self, mixer_name: &str) -> BlockKind {
        match self {
            BlockKind::Auto if mixer_name == "mamba" => BlockKind::Mamba,
            BlockKind::Auto => BlockKind::Transformer,
            k => k,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "ModelConfigSpec")]
pub struct ModelConfig {
    pub d_model: i64,
    pub n_layers: i64,
    /// Learned absolute positions for this many positions; 0 = none.
    pub max_position_embeddings: i64,
    /// `transformer` or `mamba` (`auto` only in configs built in code; reading resolves it).
    pub block: BlockKind,
    pub state_mixer: StateMixerKind,
    pub embed_dropout: f64,
    pub resid_dropout: f64,
    /// LM head shares the token embedding.
    pub tie_embeddings: bool,
    /// The sequence mixer: `{ name = "...", <its hyperparameters> }`.
    pub mixer: toml::Table,
    /// `language_model` (default) or `autoencoder` (MAD's compression setup).
    #[serde(skip_serializing_if = "Backbone::is_default")]
    pub backbone: Backbone,
}

/// `[model]` as written: `block = "auto"` and an unset `embed_dropout` are resolved into
/// [`ModelConfig`]'s concrete values, so the config a run writes is the whole truth.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelConfigSpec {
    #[serde(default = "d_model")]
    d_model: i64,
    #[serde(default = "n_layers")]
    n_layers: i64,
    #[serde(default)]
    max_position_embeddings: i64,
    #[serde(default)]
    block: BlockKind,
    #[serde(default)]
    state_mixer: Option<StateMixerKind>,
    #[serde(default)]
    embed_dropout: Option<f64>,
    #[serde(default)]
    resid_dropout: f64,
    #[serde(default = "yes")]
    tie_embeddings: bool,
    #[serde(default = "default_mixer")]
    mixer: toml::Table,
    #[serde(default)]
    backbone: Backbone,
}

impl From<ModelConfigSpec> for ModelConfig {
    fn from(s: ModelConfigSpec) -> Self {
        let name = s.mixer.get("name").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let block = s.block.resolve(&name);
        let embed_dropout = s.embed_dropout.unwrap_or(if block == BlockKind::Mamba { 0.0 } else { embed_dropout() });
        ModelConfig {
            d_model: s.d_model,
            n_layers: s.n_layers,
            max_position_embeddings: s.max_position_embeddings,
            block,
            state_mixer: s.state_mixer.unwrap_or(if block == BlockKind::Llama {
                StateMixerKind::SwiGlu
            } else {
                StateMixerKind::default()
            }),
            embed_dropout,
            resid_dropout: s.resid_dropout,
            tie_embeddings: s.tie_embeddings,
            mixer: mixers::resolve_table(&s.mixer).unwrap_or(s.mixer),
            backbone: s.backbone,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        toml::from_str("").unwrap()
    }
}

impl ModelConfig {
    /// `max_seq_len`: longest sequence in the data.
    pub fn validate(&self, vocab_size: i64, max_seq_len: i64) -> Result<()> {
        use crate::limits::{MAX_D_MODEL, MAX_LAYERS, MAX_POSITIONS};
        if !(1..=MAX_D_MODEL).contains(&self.d_model) {
            return Err(config_err("model.d_model", format!("must be in [1, {MAX_D_MODEL}] (got {})", self.d_model)));
        }
        // bounded before the per-layer checks below, which visit every layer
        if !(1..=MAX_LAYERS).contains(&self.n_layers) {
            return Err(config_err("model.n_layers", format!("must be in [1, {MAX_LAYERS}] (got {})", self.n_layers)));
        }
        if !(0..=MAX_POSITIONS).contains(&self.max_position_embeddings) {
            return Err(config_err(
                "model.max_position_embeddings",
                format!(
                    "must be in [0, {MAX_POSITIONS}] (got {}); 0 = no position embeddings",
                    self.max_position_embeddings
                ),
            ));
        }
        if self.max_position_embeddings > 0 && self.max_position_embeddings < max_seq_len {
            return Err(config_err(
                "model.max_position_embeddings",
                format!(
                    "{} is shorter than the longest sequence in the data ({max_seq_len}); raise it or set 0",
                    self.max_position_embeddings
                ),
            ));
        }
        for (f, p) in [("model.embed_dropout", self.embed_dropout), ("model.resid_dropout", self.resid_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(config_err(f, format!("must be in [0, 1) (got {p})")));
            }
        }
        if vocab_size < 2 {
            return Err(config_err("data.vocab_size", "must be ≥ 2"));
        }
        for i in 0..self.n_layers as usize {
            let ctx = BuildCtx::new(i, self.n_layers as usize, max_seq_len);
            mixers::validate_table(&self.mixer, self.d_model, &ctx, "model.mixer")?;
        }
        Ok(())
    }

    pub fn mixer_name(&self) -> String {
        self.mixer.get("name").and_then(|v| v.as_str()).unwrap_or("?").to_string()
    }

    /// The concrete block (`auto` resolved by the mixer's name).
    pub fn block_kind(&self) -> BlockKind {
        self.block.resolve(&self.mixer_name())
    }
}

#[derive(Debug)]
struct LayerNorm {
    w: Tensor,
    b: Tensor,
    d: i64,
}

impl LayerNorm {
    fn new(p: nn::Path, d: i64) -> Self {
        LayerNorm { w: p.var("weight", &[d], nn::Init::Const(1.0)), b: p.var("bias", &[d], nn::Init::Const(0.0)), d }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.d], Some(&self.w), Some(&self.b), 1e-5, false)
    }
}

/// RMSNorm as mamba_ssm's (`x / √(mean(x²) + eps) · w`, w = 1 at init, eps 1e-5).
#[derive(Debug)]
struct RmsNorm {
    w: Tensor,
}

impl RmsNorm {
    fn new(p: nn::Path, d: i64) -> Self {
        RmsNorm { w: p.var("weight", &[d], nn::Init::Const(1.0)) }
    }
}

#[derive(Debug)]
enum Norm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Norm {
    fn new(p: nn::Path, kind: BlockKind, d: i64) -> Self {
        match kind {
            BlockKind::Mamba | BlockKind::Llama => Norm::Rms(RmsNorm::new(p, d)),
            _ => Norm::Layer(LayerNorm::new(p, d)),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => rms_norm(x, &n.w, 1e-5),
        }
    }
}

/// One layer. `norm1` is absent for a mixer that normalises its own input
/// ([`Mixer::takes_raw_residual`]); `second` is the state-mixer branch (absent in the mamba
/// block with an identity state mixer, Zoology's MambaBlock).
#[derive(Debug)]
struct Block {
    norm1: Option<Norm>,
    mixer: Box<dyn Mixer>,
    second: Option<(Norm, StateMixer)>,
}

impl Block {
    /// What the mixer sees of the residual stream `r`: `norm1(r)`, or `r` itself for a mixer
    /// that normalises its own input.
    fn mixer_input(&self, r: &Tensor) -> Tensor {
        match &self.norm1 {
            Some(n) => n.forward(r),
            None => r.shallow_clone(),
        }
    }
    /// The mixer branch on the residual stream `r`.
    fn mix(&self, r: &Tensor, train: bool) -> Tensor {
        self.mixer.forward(&self.mixer_input(r), train)
    }
}

/// MAD's non-expanding MLP decoder with fixed sinusoidal positions.
#[derive(Debug)]
struct Decoder {
    n1: LayerNorm,
    fc1: Linear,
    n2: LayerNorm,
    fc2: Linear,
    /// `[max_len, D]`, not trained.
    pos: Tensor,
}

/// fairseq's sinusoidal embedding, as MAD's `posemb_sincos_1d(n, d)`: `[sin(p·f) | cos(p·f)]`
/// with `f_j = exp(−j·ln(10000)/(d/2 − 1))`, `j < d/2`, a zero column when d is odd.
pub fn posemb_sincos_1d(n: i64, d: i64, device: tch::Device) -> Tensor {
    let half = d / 2;
    let step = (10000f64).ln() / ((half - 1).max(1)) as f64;
    let opts = (tch::Kind::Float, device);
    let freqs = (Tensor::arange(half, opts) * -step).exp();
    let ang = Tensor::arange(n, opts).unsqueeze(1) * freqs.unsqueeze(0);
    let emb = Tensor::cat(&[ang.sin(), ang.cos()], 1);
    if d % 2 == 1 {
        Tensor::cat(&[emb, Tensor::zeros([n, 1], opts)], 1)
    } else {
        emb
    }
}

#[derive(Debug)]
pub struct LanguageModel {
    pub cfg: ModelConfig,
    wte: Tensor,
    wpe: Option<Tensor>,
    blocks: Vec<Block>,
    /// LayerNorm, RMSNorm in the llama block.
    ln_f: Norm,
    head: Option<Tensor>,
    decoder: Option<Decoder>,
    pub vocab_size: i64,
}

impl LanguageModel {
    /// The sum of the auxiliary losses that the layers' last training forward produced
    /// ([`Mixer::take_auxiliary_loss`]), taken once; `None` when no layer has one.
    pub fn take_auxiliary_loss(&self) -> Option<Tensor> {
        self.blocks.iter().filter_map(|b| b.mixer.take_auxiliary_loss()).reduce(|a, b| a + b)
    }

    /// Builds the model under `p`. Call [`ModelConfig::validate`] first for named errors.
    pub fn new(p: &nn::Path, cfg: &ModelConfig, vocab_size: i64, max_seq_len: i64) -> Result<Self> {
        let d = cfg.d_model;
        let n = cfg.n_layers as usize;
        let std = 0.02;
        let wte = (p / "embedding").var("weight", &[vocab_size, d], nn::Init::Randn { mean: 0.0, stdev: std });
        let wpe = (cfg.max_position_embeddings > 0).then(|| {
            (p / "position_embedding").var(
                "weight",
                &[cfg.max_position_embeddings, d],
                nn::Init::Randn { mean: 0.0, stdev: std },
            )
        });
        let kind = cfg.block_kind();
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let bp = p / "layers" / i;
            let ctx = BuildCtx::new(i, n, max_seq_len);
            let mixer = mixers::build_table(&bp / "mixer", &cfg.mixer, d, &ctx, "model.mixer")?;
            // Zoology names the mamba block's norm `norm`, the transformer block's `norm1`
            let norm1_name = if kind == BlockKind::Mamba { "norm" } else { "norm1" };
            let norm1 = (!mixer.takes_raw_residual()).then(|| Norm::new(&bp / norm1_name, kind, d));
            let second = (kind != BlockKind::Mamba || cfg.state_mixer != StateMixerKind::Identity).then(|| {
                (Norm::new(&bp / "norm2", kind, d), StateMixer::new(&bp / "state_mixer", cfg.state_mixer, d, &ctx))
            });
            blocks.push(Block { norm1, mixer, second });
        }
        let head = (!cfg.tie_embeddings)
            .then(|| (p / "lm_head").var("weight", &[vocab_size, d], nn::Init::Randn { mean: 0.0, stdev: std }));
        let decoder = (cfg.backbone == Backbone::Autoencoder).then(|| {
            let dp = p / "decoder";
            Decoder {
                n1: LayerNorm::new(&dp / "norm1", d),
                fc1: Linear::new(&dp / "fc1", d, d, true, std),
                n2: LayerNorm::new(&dp / "norm2", d),
                fc2: Linear::new(&dp / "fc2", d, d, true, std),
                pos: posemb_sincos_1d(max_seq_len.max(1), d, p.device()),
            }
        });
        Ok(LanguageModel {
            cfg: cfg.clone(),
            wte,
            wpe,
            blocks,
            ln_f: match kind {
                BlockKind::Llama => Norm::Rms(RmsNorm::new(p / "ln_f", d)),
                _ => Norm::Layer(LayerNorm::new(p / "ln_f", d)),
            },
            head,
            decoder,
            vocab_size,
        })
    }

    /// Final hidden states `[B, L, D]` (after LN_f), before the head.
    pub fn hidden(&self, tokens: &Tensor, train: bool) -> Tensor {
        let (_, l) = tokens.size2().unwrap();
        let mut h = Tensor::embedding(&self.wte, tokens, -1, false, false);
        if let Some(wpe) = &self.wpe {
            let pos = Tensor::arange(l, (tch::Kind::Int64, tokens.device()));
            h = h + Tensor::embedding(wpe, &pos, -1, false, false).unsqueeze(0);
        }
        let mut h = h.dropout(self.cfg.embed_dropout, train);
        let mut residual: Option<Tensor> = None;
        let p = self.cfg.resid_dropout;
        // the mamba block (Zoology's MambaBlock) has no dropout inside; the transformer block's
        // are Zoology's dropout1/dropout2
        let inner_p = if self.cfg.block_kind() == BlockKind::Mamba { 0.0 } else { p };
        for b in &self.blocks {
            let mut r = match residual {
                None => h.shallow_clone(),
                Some(r) => r + h.dropout(inner_p, train),
            };
            h = b.mix(&r, train);
            if let Some((norm2, state_mixer)) = &b.second {
                r = r + h.dropout(inner_p, train);
                h = state_mixer.forward(&norm2.forward(&r), train);
            }
            residual = Some(r);
        }
        // Zoology's LMBackbone: residual + drop_f(h), then ln_f
        let out = residual.unwrap() + h.dropout(p, train);
        match &self.decoder {
            None => self.ln_f.forward(&out),
            Some(dec) => {
                let z = out.select(1, l - 1).unsqueeze(1); // [B, 1, D]
                let x = z + dec.pos.narrow(0, 0, l).unsqueeze(0);
                let x = dec.fc1.forward(&dec.n1.forward(&x)).gelu("none");
                let x = dec.fc2.forward(&dec.n2.forward(&x)).gelu("none");
                self.ln_f.forward(&x)
            }
        }
    }

    /// Vocabulary logits for hidden states of any leading shape.
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        hidden.matmul(&self.head.as_ref().unwrap_or(&self.wte).transpose(0, 1))
    }

    /// Logits at every position `[B, L, V]` (the full head).
    pub fn logits(&self, tokens: &Tensor, train: bool) -> Tensor {
        self.head(&self.hidden(tokens, train))
    }

    /// FLOPs of the model without its head for sequences of `seq_len` tokens ([`crate::flops`]
    /// convention): every layer's mixer and state mixer (per token), MAD's decoder (2 Linears
    /// per position), and the head's cost per position it is applied at (`2·d·V`).
    pub fn flops(&self, seq_len: i64) -> ModelFlops {
        let l = seq_len as f64;
        let mut body = MixerFlops::default();
        for b in &self.blocks {
            let sm = b.second.as_ref().map_or(0.0, |(_, s)| s.flops_per_token());
            body = body
                + b.mixer.flops(seq_len)
                + MixerFlops {
                    forward_per_seq: l * sm,
                    forward_per_batch: 0.0,
                    prefill_per_seq: l * sm,
                    decode_per_token: sm,
                };
        }
        if let Some(dec) = &self.decoder {
            body.forward_per_seq += l * (dec.fc1.flops() + dec.fc2.flops());
        }
        ModelFlops { body, head_per_position: 2.0 * (self.cfg.d_model * self.vocab_size) as f64 }
    }

    /// Recurrent state elements per sequence, summed over layers, after `seq_len` tokens.
    pub fn state_size(&self, seq_len: i64) -> i64 {
        self.blocks
            .iter()
            .map(|b| b.mixer.state_size(seq_len) + b.second.as_ref().map_or(0, |(_, s)| s.state_size()))
            .sum()
    }

    /// The state size Zoology logs (`LanguageModel.state_size`, zoology/model.py): each layer's
    /// sequence mixer's [`Mixer::state_size_zoology`] summed over layers (state mixers are not
    /// counted), times 4 bytes per element. `None` when any layer's mixer has no Zoology formula,
    /// as Zoology returns None then.
    pub fn state_size_zoology_bytes(&self, seq_len: i64) -> Option<i64> {
        self.blocks.iter().map(|b| b.mixer.state_size_zoology(seq_len)).sum::<Option<i64>>().map(|e| 4 * e)
    }
}

/// [`LanguageModel::flops`]: the body (embeddings, blocks, decoder) as a [`MixerFlops`] and
/// the head per position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelFlops {
    pub body: MixerFlops,
    pub head_per_position: f64,
}

/// Number of scalar parameters in a var store.
pub fn num_parameters(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::{rel_err, seeded};
    use tch::{Device, Kind};

    fn cfg(text: &str) -> ModelConfig {
        toml::from_str(text).unwrap()
    }

    /// Every layer's auxiliary loss reaches the model's sum once: two sigmoid_lookups layers of a
    /// hybrid give the sum of their penalties, a model without one gives none.
    #[test]
    fn auxiliary_losses_of_all_layers_are_summed_once() {
        let c = cfg("d_model = 16\nn_layers = 2\nmixer = { name = \"sigmoid_lookups\", selection_penalty = 0.5 }");
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let model = seeded(3, || LanguageModel::new(&vs.root(), &c, 11, 8).unwrap());
        let x = Tensor::from_slice(&[1i64, 4, 2, 9, 9, 0, 3, 3]).view([1, 8]);
        let _ = seeded(5, || model.hidden(&x, true)); // the same dropout masks both times
        let per_layer: Vec<Tensor> = model.blocks.iter().map(|b| b.mixer.take_auxiliary_loss().unwrap()).collect();
        let _ = seeded(5, || model.hidden(&x, true));
        let sum = model.take_auxiliary_loss().unwrap().double_value(&[]);
        let want: f64 = per_layer.iter().map(|t| t.double_value(&[])).sum();
        assert!(want > 0.0 && (sum - want).abs() < 1e-9, "{sum} vs {want}");
        assert!(model.take_auxiliary_loss().is_none());
        let plain = cfg("d_model = 16\nn_layers = 2\nmixer = { name = \"base_conv\" }");
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let model = LanguageModel::new(&vs.root(), &plain, 11, 8).unwrap();
        let _ = model.hidden(&x, true);
        assert!(model.take_auxiliary_loss().is_none());
    }

    /// The llama block, written out by hand from the variables: RMSNorm (`x/√(mean x² + ε)·w`)
    /// before the mixer and before a bias-free SwiGLU, a final RMSNorm; no LayerNorm and no bias
    /// anywhere outside the mixer; `swiglu` is the default state mixer of the block.
    #[test]
    fn llama_block_is_rmsnorm_swiglu_prenorm() {
        let c = cfg("block = \"llama\"\nd_model = 16\nn_layers = 1\nmixer = { name = \"attention\", rope = true }");
        assert_eq!((c.block, c.state_mixer), (BlockKind::Llama, StateMixerKind::SwiGlu));
        assert_eq!(cfg("block = \"llama\"\nstate_mixer = \"mlp\"").state_mixer, StateMixerKind::Mlp);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let model = seeded(3, || LanguageModel::new(&vs.root(), &c, 11, 8).unwrap());
        let vars = vs.variables();
        let names: Vec<&String> = vars.keys().filter(|n| !n.contains(".mixer.")).collect();
        assert!(names.iter().all(|n| !n.ends_with("bias")), "{names:?}");
        let h = state_mixer::swiglu_hidden(16);
        assert_eq!(h, 64);
        assert_eq!(vars["layers.0.state_mixer.w1.weight"].size(), [h, 16]);
        assert_eq!(vars["layers.0.state_mixer.w2.weight"].size(), [16, h]);
        // random norm gains so that a missing one shows
        tch::no_grad(|| {
            for (n, v) in &vars {
                if n.ends_with("norm1.weight") || n.ends_with("norm2.weight") || n == "ln_f.weight" {
                    let _ = v.shallow_clone().copy_(&(Tensor::rand([16], (Kind::Float, Device::Cpu)) + 0.5));
                }
            }
        });
        let rms = |x: &Tensor, w: &Tensor| x / (x.square().mean_dim(-1, true, Kind::Float) + 1e-5).sqrt() * w;
        let x = Tensor::from_slice(&[1i64, 4, 2, 9, 9, 0, 3]).view([1, 7]);
        let got = tch::no_grad(|| model.hidden(&x, false));
        let want = tch::no_grad(|| {
            let e = Tensor::embedding(&vars["embedding.weight"], &x, -1, false, false);
            let a = model.blocks[0].mixer.forward(&rms(&e, &vars["layers.0.norm1.weight"]), false);
            let r = e + a;
            let u = rms(&r, &vars["layers.0.norm2.weight"]);
            let w = |n: &str| vars[&format!("layers.0.state_mixer.{n}.weight")].shallow_clone();
            let f = (u.matmul(&w("w1").tr()).silu() * u.matmul(&w("w3").tr())).matmul(&w("w2").tr());
            rms(&(r + f), &vars["ln_f.weight"])
        });
        let err = rel_err(&got, &want);
        assert!(err < 1e-5, "llama block vs hand-written: {err:.2e}");
    }

    /// `block = "auto"` and an unset `embed_dropout` resolve when a config is read, and what is
    /// written back names the concrete values.
    #[test]
    fn block_and_embed_dropout_resolve_when_read() {
        let m = cfg("mixer = { name = \"mamba\" }");
        assert_eq!((m.block, m.embed_dropout), (BlockKind::Mamba, 0.0));
        let a = cfg("mixer = { name = \"attention\" }");
        assert_eq!((a.block, a.embed_dropout), (BlockKind::Transformer, 0.1));
        let h = cfg("mixer = { name = \"hybrid\", layers = [{ name = \"mamba\" }] }");
        assert_eq!(h.block, BlockKind::Transformer, "auto picks by the model's mixer name, as Zoology's configs");
        let t = cfg("block = \"transformer\"\nmixer = { name = \"mamba\" }");
        assert_eq!((t.block, t.embed_dropout), (BlockKind::Transformer, 0.1));
        let e = cfg("embed_dropout = 0.2\nmixer = { name = \"mamba\" }");
        assert_eq!((e.block, e.embed_dropout), (BlockKind::Mamba, 0.2));
        let text = toml::to_string(&m).unwrap();
        assert!(text.contains("block = \"mamba\"") && text.contains("embed_dropout = 0.0"), "{text}");
        assert_eq!(cfg(&text), m);
        // the mixer table is written with its defaults, a hybrid's layers too
        assert_eq!(m.mixer["init"].as_str(), Some("normal"));
        let b = cfg("mixer = { name = \"hybrid\", layers = [{ name = \"base_conv\", kernel_size = [3, -1] }, { name = \"h3\" }] }");
        let layers = b.mixer["layers"].as_array().unwrap();
        assert_eq!(layers[0]["long_filter"].as_str(), Some("implicit"));
        assert_eq!(layers[1]["discretization"].as_str(), Some("bilinear"));
        assert_eq!(cfg(&toml::to_string(&b).unwrap()), b);
        // a table that does not parse is kept as written (validation names the field)
        let bad = cfg("mixer = { name = \"mamba\", d_sate = 4 }");
        assert!(bad.mixer.contains_key("d_sate") && bad.validate(64, 32).unwrap_err().to_string().contains("d_sate"));
        assert!(toml::from_str::<ModelConfig>("block = \"rnn\"").unwrap_err().to_string().contains("block"));
    }

    fn rms(x: &Tensor, w: &Tensor) -> Tensor {
        x / (x.square().mean_dim([-1i64].as_slice(), true, Kind::Float) + 1e-5).sqrt() * w
    }

    fn ln(x: &Tensor, vars: &std::collections::HashMap<String, Tensor>, name: &str) -> Tensor {
        let mu = x.mean_dim([-1i64].as_slice(), true, Kind::Float);
        let var = (x - &mu).square().mean_dim([-1i64].as_slice(), true, Kind::Float);
        (x - mu) / (var + 1e-5).sqrt() * &vars[&format!("{name}.weight")] + &vars[&format!("{name}.bias")]
    }

    /// Builds an LM, gives every norm random affine parameters (so that using the wrong one
    /// shows), and returns it with its variables and a token batch.
    fn lm(
        text: &str,
        vocab: i64,
        l: i64,
    ) -> (nn::VarStore, LanguageModel, std::collections::HashMap<String, Tensor>, Tensor) {
        seeded(12, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let model = LanguageModel::new(&vs.root(), &cfg(text), vocab, l).unwrap();
            let vars = vs.variables();
            tch::no_grad(|| {
                for (name, v) in &vars {
                    if name.contains("norm") || name.starts_with("ln_f") {
                        let _ = v
                            .shallow_clone()
                            .g_add_(&(Tensor::randn(v.size().as_slice(), (Kind::Float, Device::Cpu)) * 0.3));
                    }
                }
            });
            let tokens = Tensor::randint(vocab, [2, l], (Kind::Int64, Device::Cpu));
            (vs, model, vars, tokens)
        })
    }

    /// Zoology Figure 2's Mamba LM: embedding (no dropout, no positions) → per layer
    /// `residual += h; h = mamba(RMSNorm(residual))` → LayerNorm_f(residual + h), tied head;
    /// its parameters are exactly the embedding, per layer `norm` + `mixer`, and `ln_f`.
    #[test]
    fn mamba_lm_is_zoologys_mamba_block_composition() {
        let (_vs, model, vars, tokens) =
            lm("d_model = 16\nstate_mixer = \"identity\"\nmixer = { name = \"mamba\", d_state = 4 }", 32, 10);
        let mut names: Vec<&String> = vars.keys().filter(|k| !k.contains(".mixer.")).collect();
        names.sort();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["embedding.weight", "layers.0.norm.weight", "layers.1.norm.weight", "ln_f.bias", "ln_f.weight"]
        );
        assert!(vars.contains_key("layers.0.mixer.in_proj.weight") && vars.contains_key("layers.1.mixer.dt_proj.bias"));
        let got = tch::no_grad(|| model.hidden(&tokens, true)); // train = true: still no dropout
        let want = tch::no_grad(|| {
            let mut r = Tensor::embedding(&vars["embedding.weight"], &tokens, -1, false, false);
            let mut h: Option<Tensor> = None;
            for (i, b) in model.blocks.iter().enumerate() {
                if let Some(h) = h.take() {
                    r = r + h;
                }
                h = Some(b.mixer.forward(&rms(&r, &vars[&format!("layers.{i}.norm.weight")]), false));
            }
            ln(&(r + h.unwrap()), &vars, "ln_f")
        });
        assert!(
            rel_err(&got, &want) < 1e-6,
            "mamba LM differs from RMSNorm → mixer → residual: {:.2e}",
            rel_err(&got, &want)
        );
    }

    /// The transformer block (Zoology's TransformerBlock) with the identity state mixer adds
    /// LN2(residual) each layer; a Mega mixer gets the residual itself (no norm1) and its own
    /// gated update is added once.
    #[test]
    fn transformer_block_composition_and_megas_raw_residual() {
        for (mixer, raw) in
            [("{ name = \"base_conv\", kernel_size = 3 }", false), ("{ name = \"mega\", z_dim = 8, ndim = 2 }", true)]
        {
            let (_vs, model, vars, tokens) =
                lm(&format!("d_model = 16\nstate_mixer = \"identity\"\nembed_dropout = 0.0\nmixer = {mixer}"), 32, 10);
            assert_eq!(model.cfg.block, BlockKind::Transformer);
            assert_eq!(
                vars.contains_key("layers.0.norm1.weight"),
                !raw,
                "{mixer}: norm1 must exist iff the mixer does not normalise itself"
            );
            let got = tch::no_grad(|| model.hidden(&tokens, false));
            let want = tch::no_grad(|| {
                let mut r = Tensor::embedding(&vars["embedding.weight"], &tokens, -1, false, false);
                let mut h: Option<Tensor> = None;
                for (i, b) in model.blocks.iter().enumerate() {
                    if let Some(h) = h.take() {
                        r = r + h;
                    }
                    let inp = if raw { r.shallow_clone() } else { ln(&r, &vars, &format!("layers.{i}.norm1")) };
                    r = &r + b.mixer.forward(&inp, false);
                    h = Some(ln(&r, &vars, &format!("layers.{i}.norm2")));
                }
                ln(&(r + h.unwrap()), &vars, "ln_f")
            });
            assert!(rel_err(&got, &want) < 1e-6, "{mixer}: block composition differs: {:.2e}", rel_err(&got, &want));
        }
    }

    /// The mamba block with a non-identity state mixer is mamba_ssm's `Block` with an MLP:
    /// `residual += h; h = mlp(RMSNorm2(residual))` after the mixer.
    #[test]
    fn mamba_block_with_an_mlp_is_mamba_ssms_block() {
        let (_vs, model, vars, tokens) = lm(
            "d_model = 16\nblock = \"mamba\"\nstate_mixer = \"mlp\"\nmixer = { name = \"mamba\", d_state = 4 }",
            32,
            10,
        );
        assert!(
            vars.contains_key("layers.1.norm2.weight") && !vars.contains_key("layers.1.norm2.bias"),
            "norm2 must be an RMSNorm"
        );
        let got = tch::no_grad(|| model.hidden(&tokens, false));
        let want = tch::no_grad(|| {
            let mut r = Tensor::embedding(&vars["embedding.weight"], &tokens, -1, false, false);
            let mut h: Option<Tensor> = None;
            for (i, b) in model.blocks.iter().enumerate() {
                if let Some(h) = h.take() {
                    r = r + h;
                }
                r = &r + b.mixer.forward(&rms(&r, &vars[&format!("layers.{i}.norm.weight")]), false);
                let x = rms(&r, &vars[&format!("layers.{i}.norm2.weight")]);
                let p = |n: &str| &vars[&format!("layers.{i}.state_mixer.{n}")];
                h = Some(
                    x.linear(p("fc1.weight"), Some(p("fc1.bias")))
                        .gelu("none")
                        .linear(p("fc2.weight"), Some(p("fc2.bias"))),
                );
            }
            ln(&(r + h.unwrap()), &vars, "ln_f")
        });
        assert!(rel_err(&got, &want) < 1e-6, "{:.2e}", rel_err(&got, &want));
    }

    /// Zoology's state-size convention summed over layers, × 4 bytes.
    #[test]
    fn zoology_state_bytes_sum_the_mixers_formulas() {
        let (_vs, m, _, _) =
            lm("d_model = 16\nstate_mixer = \"identity\"\nmixer = { name = \"mamba\", d_state = 4 }", 32, 10);
        assert_eq!(m.state_size_zoology_bytes(10), Some(4 * 2 * (2 * 16 * 4)));
        let (_vs, b, _, _) = lm(
            "d_model = 16\nstate_mixer = \"identity\"\nmixer = { name = \"base_conv\", kernel_size = [3, -1] }",
            32,
            10,
        );
        assert_eq!(b.state_size_zoology_bytes(10), Some(4 * (16 * 3 + 16 * 10)));
        let (_vs, r, _, _) = lm("d_model = 16\nstate_mixer = \"identity\"\nmixer = { name = \"rwkv\" }", 32, 10);
        assert_eq!(r.state_size_zoology_bytes(10), None);
    }
}
