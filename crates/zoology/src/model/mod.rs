//! The language model around a sequence mixer (Zoology's `LanguageModel`).
//!
//! ```text
//! h = dropout_emb(E[x] + P[pos])            (P only when max_position_embeddings > 0)
//! residual = h
//! for each block:                           (block 0 starts from residual = h)
//!     residual += dropout(h)   (not in block 0)
//!     h = mixer(LN1(residual))
//!     residual += dropout(h)
//!     h = state_mixer(LN2(residual))        (identity | MLP(GELU, ×4) | GLU | RWKV channel mix)
//! out = LN_f(residual + h)
//! logits = out Eᵀ                           (tied head; or a separate head)
//! ```
//! Weights N(0, 0.02), biases 0, output projections N(0, 0.02/√(2·n_layers)). The head can be
//! applied to all positions ([`LanguageModel::logits`]) or only to gathered supervised
//! positions ([`LanguageModel::hidden`] + [`LanguageModel::head`]); both give the same loss.
//!
//! `backbone = "autoencoder"` is MAD's `AutoEncoder` (`mad/model/auto_encoder.py`, used by its
//! compression task): the blocks above encode the sequence, the residual stream at the **last**
//! position is the code `z`, and a fixed MLP decoder rebuilds every position `i` from
//! `z + sincos(i)` (fairseq's sinusoidal embedding, as MAD's `posemb_sincos_1d`):
//! `x_i = GELU(W₂ LN(GELU(W₁ LN(z + sincos(i)))))`, `out_i = LN_f(x_i)`, then the head. The
//! decoder sees the whole input through `z`, so only tasks whose targets are the input itself
//! may use it (checked at config validation).

pub mod state_mixer;

use crate::error::{config_err, Result};
use crate::mixers::common::Linear;
use crate::mixers::{self, BuildCtx, Mixer};
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
/// What the blocks feed: a causal language model (every task but one) or MAD's autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backbone {
    #[default]
    LanguageModel,
    Autoencoder,
}

impl Backbone {
    pub fn name(self) -> &'static str {
        match self {
            Backbone::LanguageModel => "language_model",
            Backbone::Autoencoder => "autoencoder",
        }
    }
    /// Left out of serialised configs when default, so that existing configs keep their text
    /// and run ids.
    pub fn is_default(&self) -> bool {
        *self == Backbone::LanguageModel
    }
}

fn default_mixer() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("name".into(), "attention".into());
    t
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default = "d_model")]
    pub d_model: i64,
    #[serde(default = "n_layers")]
    pub n_layers: i64,
    /// Learned absolute positions for this many positions; 0 = none.
    #[serde(default)]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub state_mixer: StateMixerKind,
    #[serde(default = "embed_dropout")]
    pub embed_dropout: f64,
    #[serde(default)]
    pub resid_dropout: f64,
    /// LM head shares the token embedding.
    #[serde(default = "yes")]
    pub tie_embeddings: bool,
    /// The sequence mixer: `{ name = "...", <its hyperparameters> }`.
    #[serde(default = "default_mixer")]
    pub mixer: toml::Table,
    /// `language_model` (default) or `autoencoder` (MAD's compression setup).
    #[serde(default, skip_serializing_if = "Backbone::is_default")]
    pub backbone: Backbone,
}

impl Default for ModelConfig {
    fn default() -> Self {
        toml::from_str("").unwrap()
    }
}

impl ModelConfig {
    /// `max_seq_len`: longest sequence in the data.
    pub fn validate(&self, vocab_size: i64, max_seq_len: i64) -> Result<()> {
        if self.d_model < 1 {
            return Err(config_err("model.d_model", format!("must be ≥ 1 (got {})", self.d_model)));
        }
        if self.n_layers < 1 {
            return Err(config_err("model.n_layers", format!("must be ≥ 1 (got {})", self.n_layers)));
        }
        if self.max_position_embeddings < 0 {
            return Err(config_err("model.max_position_embeddings", "must be ≥ 0 (0 = no position embeddings)"));
        }
        if self.max_position_embeddings > 0 && self.max_position_embeddings < max_seq_len {
            return Err(config_err(
                "model.max_position_embeddings",
                format!("{} is shorter than the longest sequence in the data ({max_seq_len}); raise it or set 0", self.max_position_embeddings),
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

#[derive(Debug)]
struct Block {
    ln1: LayerNorm,
    mixer: Box<dyn Mixer>,
    ln2: LayerNorm,
    state_mixer: StateMixer,
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
    ln_f: LayerNorm,
    head: Option<Tensor>,
    decoder: Option<Decoder>,
    pub vocab_size: i64,
}

impl LanguageModel {
    /// Builds the model under `p`. Call [`ModelConfig::validate`] first for named errors.
    pub fn new(p: &nn::Path, cfg: &ModelConfig, vocab_size: i64, max_seq_len: i64) -> Result<Self> {
        let d = cfg.d_model;
        let n = cfg.n_layers as usize;
        let std = 0.02;
        let wte = (p / "embedding").var("weight", &[vocab_size, d], nn::Init::Randn { mean: 0.0, stdev: std });
        let wpe = (cfg.max_position_embeddings > 0).then(|| {
            (p / "position_embedding").var("weight", &[cfg.max_position_embeddings, d], nn::Init::Randn { mean: 0.0, stdev: std })
        });
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let bp = p / "layers" / i;
            let ctx = BuildCtx::new(i, n, max_seq_len);
            blocks.push(Block {
                ln1: LayerNorm::new(&bp / "norm1", d),
                mixer: mixers::build_table(&bp / "mixer", &cfg.mixer, d, &ctx, "model.mixer")?,
                ln2: LayerNorm::new(&bp / "norm2", d),
                state_mixer: StateMixer::new(&bp / "state_mixer", cfg.state_mixer, d, &ctx),
            });
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
        Ok(LanguageModel { cfg: cfg.clone(), wte, wpe, blocks, ln_f: LayerNorm::new(p / "ln_f", d), head, decoder, vocab_size })
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
        for b in &self.blocks {
            let r = match residual {
                None => h.shallow_clone(),
                Some(r) => r + h.dropout(self.cfg.resid_dropout, train),
            };
            let m = b.mixer.forward(&b.ln1.forward(&r), train);
            let r = r + m.dropout(self.cfg.resid_dropout, train);
            h = b.state_mixer.forward(&b.ln2.forward(&r), train);
            residual = Some(r);
        }
        let out = residual.unwrap() + h;
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

    /// Recurrent state elements per sequence, summed over layers, after `seq_len` tokens.
    pub fn state_size(&self, seq_len: i64) -> i64 {
        self.blocks.iter().map(|b| b.mixer.state_size(seq_len) + b.state_mixer.state_size()).sum()
    }
}

/// Number of scalar parameters in a var store.
pub fn num_parameters(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
