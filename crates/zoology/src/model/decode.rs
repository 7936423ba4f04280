//! Recurrent decoding of the whole language model (issue 10, "Inference cost, measured"):
//! [`LanguageModel::prefill`] runs a prompt `[B, P]` through every layer's
//! [`Mixer::prefill`](crate::mixers::Mixer::prefill) and returns the logits and an [`LmState`];
//! [`LanguageModel::step`] feeds one more token per sequence (`[B]`) through every layer's
//! [`Mixer::step`](crate::mixers::Mixer::step) and returns its logits `[B, V]`.
//!
//! What the state holds per layer: the mixer's [`MixerState`] and, for the `rwkv_channel`
//! state mixer, the previous token's normalised input (its token shift). The position index of
//! the next token (for learned positions) is the number of tokens fed so far. Decoding is
//! evaluation mode (no dropout), the same computation as [`LanguageModel::hidden`] with
//! `train = false`; the test `decode_equals_parallel_for_every_mixer` checks that for every
//! registered mixer. The autoencoder backbone has no decoding form (its decoder reads the code of
//! the whole sequence at its last position) and is refused with an error.

use super::state_mixer::StateMixer;
use super::{Backbone, LanguageModel};
use crate::error::{Error, Result};
use crate::mixers::MixerState;
use tch::Tensor;

/// One layer's recurrent state.
#[derive(Debug)]
pub struct LayerState {
    pub mixer: MixerState,
    /// `rwkv_channel`'s token shift: the previous token's state-mixer input `[B, D]`.
    pub channel_prev: Option<Tensor>,
}

/// The state of a batch of sequences being decoded.
#[derive(Debug)]
pub struct LmState {
    /// Tokens fed so far (the position index of the next token).
    pub pos: i64,
    pub batch: i64,
    pub layers: Vec<LayerState>,
}

impl LmState {
    /// Bytes of every tensor in the state, per sequence (total bytes / batch).
    pub fn bytes_per_sequence(&self) -> i64 {
        let bytes: i64 = self
            .layers
            .iter()
            .flat_map(|l| l.mixer.tensors.iter().chain(l.channel_prev.iter()))
            .map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as i64)
            .sum();
        bytes / self.batch.max(1)
    }
}

impl StateMixer {
    /// One position of the state mixer: `x_t: [B, D]`; `prev` is `rwkv_channel`'s carried input
    /// (None before the first token, which shifts in zeros as the parallel form does).
    fn step(&self, prev: &mut Option<Tensor>, x_t: &Tensor) -> Tensor {
        match self {
            StateMixer::RwkvChannel { .. } => {
                // the parallel form on a length-2 window [prev, x_t] gives exactly output t
                let p = prev.take().unwrap_or_else(|| x_t.zeros_like());
                let y = self.forward(&Tensor::stack(&[&p, x_t], 1), false).select(1, 1);
                *prev = Some(x_t.shallow_clone());
                y
            }
            _ => self.forward(x_t, false),
        }
    }
}

/// The residual stream entering a block: the embedding in block 0, else residual + h.
fn add_residual(residual: Option<Tensor>, h: &Tensor) -> Tensor {
    match residual {
        None => h.shallow_clone(),
        Some(r) => r + h,
    }
}

impl LanguageModel {
    fn check_decodable(&self) -> Result<()> {
        if self.cfg.backbone == Backbone::Autoencoder {
            return Err(Error::Other(
                "this model's backbone is MAD's autoencoder, which has no token-by-token decoding form (its decoder reads the code at the last position of the whole sequence); decode a language_model backbone instead".into(),
            ));
        }
        Ok(())
    }

    fn embed(&self, tokens: &Tensor, pos0: i64) -> Result<Tensor> {
        let h = Tensor::embedding(&self.wte, tokens, -1, false, false);
        let Some(wpe) = &self.wpe else { return Ok(h) };
        let l = tokens.size()[1];
        let max = wpe.size()[0];
        if pos0 + l > max {
            return Err(Error::Other(format!(
                "decoding position {} is past the model's learned positions (max_position_embeddings = {max}); decode at most {max} tokens per sequence",
                pos0 + l - 1
            )));
        }
        let pos = Tensor::arange_start(pos0, pos0 + l, (tch::Kind::Int64, tokens.device()));
        Ok(h + Tensor::embedding(wpe, &pos, -1, false, false).unsqueeze(0))
    }

    /// Runs the prompt `tokens: [B, P]` (P ≥ 1) and returns the final hidden states `[B, P, D]`
    /// (after LN_f, before the head) and the state after its last token.
    pub fn prefill_hidden(&self, tokens: &Tensor) -> Result<(Tensor, LmState)> {
        self.check_decodable()?;
        let (b, p) = tokens.size2().map_err(|e| Error::Other(format!("prefill expects tokens [B, P]: {e}")))?;
        if p < 1 {
            return Err(Error::Other("prefill needs a prompt of at least one token".into()));
        }
        let mut h = self.embed(tokens, 0)?;
        let mut residual: Option<Tensor> = None;
        let mut layers = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            let mut r = add_residual(residual, &h);
            let (y, mixer) = blk.mixer.prefill(&blk.mixer_input(&r));
            h = y;
            let mut channel_prev = None;
            if let Some((norm2, sm)) = &blk.second {
                r = r + &h;
                let x = norm2.forward(&r);
                h = sm.forward(&x, false);
                if matches!(sm, StateMixer::RwkvChannel { .. }) {
                    channel_prev = Some(x.select(1, p - 1));
                }
            }
            residual = Some(r);
            layers.push(LayerState { mixer, channel_prev });
        }
        let out = self.ln_f.forward(&(residual.unwrap() + h));
        Ok((out, LmState { pos: p, batch: b, layers }))
    }

    /// [`LanguageModel::prefill_hidden`] with the head: logits `[B, P, V]` of every prompt
    /// position (the last one predicts the first generated token) and the state.
    pub fn prefill(&self, tokens: &Tensor) -> Result<(Tensor, LmState)> {
        let (h, st) = self.prefill_hidden(tokens)?;
        Ok((self.head(&h), st))
    }

    /// Final hidden state `[B, D]` of one more token per sequence (`token: [B]`), updating `st`.
    pub fn step_hidden(&self, st: &mut LmState, token: &Tensor) -> Result<Tensor> {
        self.check_decodable()?;
        if token.size() != [st.batch] {
            return Err(Error::Other(format!(
                "step expects one token per sequence, shape [{}]; got {:?}",
                st.batch,
                token.size()
            )));
        }
        let mut h = self.embed(&token.unsqueeze(1), st.pos)?.squeeze_dim(1);
        let mut residual: Option<Tensor> = None;
        for (blk, ls) in self.blocks.iter().zip(st.layers.iter_mut()) {
            let mut r = add_residual(residual, &h);
            h = blk.mixer.step(&mut ls.mixer, &blk.mixer_input(&r));
            if let Some((norm2, sm)) = &blk.second {
                r = r + &h;
                h = sm.step(&mut ls.channel_prev, &norm2.forward(&r));
            }
            residual = Some(r);
        }
        st.pos += 1;
        Ok(self.ln_f.forward(&(residual.unwrap() + h)))
    }

    /// Logits `[B, V]` of one more token per sequence (`token: [B]`), updating `st`.
    pub fn step(&self, st: &mut LmState, token: &Tensor) -> Result<Tensor> {
        let h = self.step_hidden(st, token)?;
        Ok(self.head(&h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::registry;
    use crate::mixers::testing::{rel_err, seed_guard};
    use crate::model::ModelConfig;
    use tch::{nn, Device, Kind};

    /// The generic mixer suite's tolerance for prefill + step vs the parallel form.
    const TOL: f64 = 1e-4;
    /// The longest sequence the test models are built for (and their learned positions).
    const MAX_LEN: i64 = 24;

    /// Logits of prefill(P tokens) + step over the rest vs the parallel forward, for `cfg`.
    fn decode_error(cfg: &ModelConfig, vocab: i64, l: i64, p: i64, seed: i64) -> f64 {
        let _rng = seed_guard(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = LanguageModel::new(&vs.root(), cfg, vocab, MAX_LEN).unwrap();
        // random norm affines and biases: a wrong norm or a missing bias shows; state-mixer
        // weights ×4, so that their branch is not lost under the tolerance at init scale (a
        // dropped rwkv_channel token shift gave rel errors of only 2e-4..1e-2 without it)
        tch::no_grad(|| {
            for (name, v) in vs.variables() {
                if name.contains("norm") || name.starts_with("ln_f") || name.ends_with("bias") {
                    let _ = v
                        .shallow_clone()
                        .g_add_(&(Tensor::randn(v.size().as_slice(), (Kind::Float, Device::Cpu)) * 0.3));
                } else if name.contains("state_mixer") && name.ends_with("weight") {
                    let _ = v.shallow_clone().g_mul_scalar_(4.0);
                }
            }
        });
        let tokens = Tensor::randint(vocab, [2, l], (Kind::Int64, Device::Cpu));
        tch::no_grad(|| {
            let full = model.logits(&tokens, false);
            let (pre, mut st) = model.prefill(&tokens.narrow(1, 0, p)).unwrap();
            let mut parts = vec![pre];
            for t in p..l {
                parts.push(model.step(&mut st, &tokens.select(1, t)).unwrap().unsqueeze(1));
            }
            assert_eq!(st.pos, l);
            rel_err(&Tensor::cat(&parts, 1), &full)
        })
    }

    /// Decode-equals-parallel: for every registered mixer and each of its suite variants, a
    /// tiny random LM (learned positions, MLP state mixer, 2 layers) gives the same logits from
    /// prefill + step as from the parallel forward. Blocks, state mixers and the head are
    /// varied over the mixers so that every path of `prefill`/`step` is taken.
    #[test]
    fn decode_equals_parallel_for_every_mixer() {
        // "swiglu" runs in the llama block (RMSNorms, final RMSNorm), the others in their mixer's
        let state_mixers = ["mlp", "glu", "rwkv_channel", "identity", "swiglu"];
        let (mut ran, mut fails) = (vec![], vec![]);
        for (i, e) in registry().into_iter().enumerate() {
            for (vi, mut table) in (e.suite_variants)().into_iter().enumerate() {
                table.insert("name".into(), e.name.into());
                let sm = state_mixers[(i + vi) % state_mixers.len()];
                let tie = (i + vi) % 2 == 0;
                let block = if sm == "swiglu" { "llama" } else { "auto" };
                let text = format!("d_model = 16\nn_layers = 2\nmax_position_embeddings = 24\nstate_mixer = \"{sm}\"\ntie_embeddings = {tie}\nblock = \"{block}\"\n");
                let mut t: toml::Table = toml::from_str(&text).unwrap();
                t.insert("mixer".into(), toml::Value::Table(table.clone()));
                let cfg: ModelConfig =
                    toml::Value::Table(t).try_into().unwrap_or_else(|err| panic!("{}#{vi}: {err}", e.name));
                for (l, p) in [(20i64, 7i64), (9, 1)] {
                    let err = decode_error(&cfg, 32, l, p, 40 + vi as i64);
                    if !(err < TOL) {
                        fails.push(format!(
                            "{}#{vi} ({sm}, block {:?}) L={l} P={p}: rel err {err:.2e}",
                            e.name,
                            cfg.block_kind()
                        ));
                    }
                }
                ran.push(format!("{}#{vi}", e.name));
            }
        }
        println!("decode-equals-parallel: ran {} configs: {}", ran.len(), ran.join(", "));
        assert!(fails.is_empty(), "decode differs from the parallel forward for:\n  {}", fails.join("\n  "));
    }

    /// The mamba block with an MLP branch and without positions, and a Mega (raw residual) model.
    #[test]
    fn decode_equals_parallel_for_other_blocks() {
        for text in [
            "d_model = 16\nblock = \"mamba\"\nstate_mixer = \"mlp\"\nmixer = { name = \"mamba\", d_state = 4 }",
            "d_model = 16\nblock = \"mamba\"\nstate_mixer = \"identity\"\nmixer = { name = \"mamba\", d_state = 4 }",
            "d_model = 16\nstate_mixer = \"rwkv_channel\"\nmixer = { name = \"mega\", z_dim = 8, ndim = 2 }",
        ] {
            let cfg: ModelConfig = toml::from_str(text).unwrap();
            let err = decode_error(&cfg, 32, 15, 4, 3);
            assert!(err < TOL, "{text}: rel err {err:.2e}");
        }
    }

    #[test]
    fn autoencoder_and_positions_past_the_table_are_refused_in_words() {
        let _rng = seed_guard(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg: ModelConfig =
            toml::from_str("d_model = 8\nbackbone = \"autoencoder\"\nmixer = { name = \"attention\" }").unwrap();
        let m = LanguageModel::new(&vs.root(), &cfg, 16, 8).unwrap();
        let e = m.prefill(&Tensor::zeros([1, 4], (Kind::Int64, Device::Cpu))).unwrap_err().to_string();
        assert!(e.contains("autoencoder"), "{e}");
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg: ModelConfig =
            toml::from_str("d_model = 8\nmax_position_embeddings = 4\nmixer = { name = \"attention\" }").unwrap();
        let m = LanguageModel::new(&vs.root(), &cfg, 16, 4).unwrap();
        let (_, mut st) = tch::no_grad(|| m.prefill(&Tensor::zeros([2, 4], (Kind::Int64, Device::Cpu)))).unwrap();
        let e =
            tch::no_grad(|| m.step(&mut st, &Tensor::zeros([2], (Kind::Int64, Device::Cpu)))).unwrap_err().to_string();
        assert!(e.contains("max_position_embeddings"), "{e}");
        assert!(m.prefill(&Tensor::zeros([2, 5], (Kind::Int64, Device::Cpu))).is_err());
    }

    /// Attention's state grows with the context, a recurrent mixer's does not.
    #[test]
    fn state_bytes_grow_only_for_attention() {
        let _rng = seed_guard(2);
        let bytes = |mixer: &str, p: i64| {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg: ModelConfig = toml::from_str(&format!("d_model = 16\nmixer = {mixer}")).unwrap();
            let m = LanguageModel::new(&vs.root(), &cfg, 16, 64).unwrap();
            tch::no_grad(|| m.prefill(&Tensor::zeros([3, p], (Kind::Int64, Device::Cpu))))
                .unwrap()
                .1
                .bytes_per_sequence()
        };
        // 2 layers × (K and V) × p × d × 4 bytes
        assert_eq!(bytes("{ name = \"attention\" }", 10), 2 * 2 * 10 * 16 * 4);
        assert_eq!(bytes("{ name = \"attention\" }", 40), 2 * 2 * 40 * 16 * 4);
        let g = bytes("{ name = \"gla\" }", 10);
        assert!(g > 0 && g == bytes("{ name = \"gla\" }", 40), "{g}");
    }
}
