//! FLOP counts: what a training step, a prefill and a decoded token cost, per mixer
//! ([`crate::mixers::Mixer::flops`]) and per model ([`lm_flops`], [`LmFlops`]).
//!
//! # Convention (issue 10; stated once, here)
//!
//! - **A multiply-add is 2 FLOPs.** A matmul `[m, k] × [k, n]` is `2·m·k·n`; a Linear
//!   `d_in → d_out` on one token is `2·d_in·d_out` ([`linear`]); biases are not counted.
//! - **Counted:** contractions (projections, attention scores and their mix of values, the
//!   products of chunked linear attention and of the chunked delta rule, short convolutions,
//!   FFT convolutions) and the per-element arithmetic of recurrent *state* updates and readouts
//!   (scans, modal recurrences, RWKV's wkv), because these scale with the state.
//!   **Not counted:** element-wise work on activations of size `[L, d]` (activations, gating
//!   products, norms, softmax, dropout, residual adds, RoPE rotations, feature maps such as
//!   Based's Taylor expansion), embedding lookups, the loss and the optimizer.
//! - **Causal masking is not discounted:** terms are counted as the fast (training) form
//!   computes them. Attention's parallel form computes the full `L×L` score matrix and masks it,
//!   so its `L²` terms are counted in full (`2·L²·d` for `QKᵀ`, `2·L²·d` for `AV`), not halved.
//!   Chunked forms count whole `C×C` blocks over the padded length `⌈L/C⌉·C`.
//! - **FFT:** a real FFT (or inverse) of length `n` costs `2.5·n·log₂n` ([`rfft`]: half the
//!   complex radix-2 FFT's `5·n·log₂n`, i.e. `n/2·log₂n` butterflies of 10 FLOPs). A causal FFT
//!   convolution pads to `n = 2L` and costs per channel one forward and one inverse transform
//!   plus the complex product over `n/2 + 1` bins (6 FLOPs each): `5·n·log₂n + 6·(n/2 + 1)`,
//!   about `10·L·log₂(2L)` per channel ([`fft_conv`]); `c = 10` is the constant of
//!   `c·L·log₂L·d`.
//! - **Modal recurrences** (complex diagonal SSMs: `long_conv` s4d, `h3`, `stripedhyena`):
//!   12 FLOPs per complex mode per step (complex multiply-add 8, readout `Re(C·s)` accumulated
//!   4, [`modal_step`]); a kernel `K[t] = Re Σ R·p^t` costs 8 per (channel, mode, position)
//!   ([`modal_kernel`]). **Mamba's selective scan:** 9 FLOPs per (position, E, N), the Mamba
//!   paper's count (`9·L·E·N`).
//! - **Backward = 2 × forward** for every term, so **training = 3 × forward** ([`TRAIN_FACTOR`]).
//! - **Per batch:** work that depends only on the parameters (implicit filters, SSM kernels and
//!   their FFTs) runs once per batch: [`MixerFlops::forward_per_batch`], not multiplied by the
//!   batch size. Decoding treats it as cached (not counted per token).
//! - **Decode per token at context L:** the step that processes the L-th token (the state holds
//!   L tokens after it, the token itself included).
//! - **Prefill per sequence:** what the mixer's prefill form runs: its parallel form (hyena,
//!   stripedhyena: plus the closed-form final state), otherwise the step form at positions
//!   `1..=L` (the sum of the decode costs); per-batch work is counted once (B = 1).
//!
//! The model adds ([`LanguageModel::flops`](crate::model::LanguageModel::flops)): state mixers
//! (`mlp` 2 Linears d↔4d, `glu` 3, `rwkv_channel` 3, `identity` none), MAD's autoencoder decoder
//! (2 Linears d→d per position), and the LM head `2·d·V` per position it is applied at: the
//! trainer's sparse head applies it only at supervised positions (MQAR: the value positions), a
//! full head at every position. Embeddings are lookups (0 FLOPs).

use crate::error::Result;
use crate::model::{LanguageModel, ModelConfig};
use serde::Serialize;

/// Training = forward + backward, backward = 2 × forward.
pub const TRAIN_FACTOR: f64 = 3.0;

/// FLOPs of a Linear `d_in → d_out` on one token.
pub fn linear(d_in: i64, d_out: i64) -> f64 {
    2.0 * d_in as f64 * d_out as f64
}

/// FLOPs of a depthwise FIR with `taps` taps over `channels` channels, one token.
pub fn fir(channels: i64, taps: i64) -> f64 {
    2.0 * channels as f64 * taps as f64
}

/// One real FFT (or inverse) of length `n`: `2.5·n·log₂n`.
pub fn rfft(n: i64) -> f64 {
    let n = n.max(1) as f64;
    2.5 * n * n.log2()
}

/// A causal FFT convolution of one sequence of length `l` over `channels` channels (padded to
/// `n = 2L`): forward + inverse transform and the product over `n/2 + 1` bins.
pub fn fft_conv(channels: i64, l: i64) -> f64 {
    let n = 2 * l;
    channels as f64 * (2.0 * rfft(n) + 6.0 * (n / 2 + 1) as f64)
}

/// The filter's transform of an FFT convolution (once per batch).
pub fn fft_filter(channels: i64, l: i64) -> f64 {
    channels as f64 * rfft(2 * l)
}

/// One step of a modal recurrence: `channels × modes` complex modes.
pub fn modal_step(channels: i64, modes: i64) -> f64 {
    12.0 * channels as f64 * modes as f64
}

/// A modal kernel (or closed-form state) over `l` positions.
pub fn modal_kernel(channels: i64, modes: i64, l: i64) -> f64 {
    8.0 * channels as f64 * modes as f64 * l as f64
}

/// `⌈l/c⌉·c`, the length a chunked form works on.
pub fn padded(l: i64, c: i64) -> i64 {
    let c = c.max(1);
    (l + c - 1) / c * c
}

/// A mixer's FLOPs for sequences of `seq_len` tokens (see the module doc for the convention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MixerFlops {
    /// Forward (training form) per sequence.
    pub forward_per_seq: f64,
    /// Forward work that depends only on the parameters, once per batch.
    pub forward_per_batch: f64,
    /// Prefill of one prompt of `seq_len` tokens (per-batch work included once).
    pub prefill_per_seq: f64,
    /// The step that processes token number `seq_len`.
    pub decode_per_token: f64,
}

impl MixerFlops {
    /// A mixer whose prefill runs the step form token by token: `decode(t)` is the step at
    /// context `t`; prefill = `Σ_{t=1..=L} decode(t)`.
    pub fn stepwise(forward_per_seq: f64, forward_per_batch: f64, seq_len: i64, decode: impl Fn(i64) -> f64) -> Self {
        let prefill_per_seq = (1..=seq_len.max(0)).map(&decode).sum();
        MixerFlops { forward_per_seq, forward_per_batch, prefill_per_seq, decode_per_token: decode(seq_len) }
    }
    /// A mixer whose prefill is its parallel form plus `extra` (e.g. a closed-form final state).
    pub fn parallel(forward_per_seq: f64, forward_per_batch: f64, extra: f64, decode_per_token: f64) -> Self {
        MixerFlops {
            forward_per_seq,
            forward_per_batch,
            prefill_per_seq: forward_per_seq + forward_per_batch + extra,
            decode_per_token,
        }
    }
    /// Forward over a batch of `batch` sequences.
    pub fn forward(&self, batch: i64) -> f64 {
        batch as f64 * self.forward_per_seq + self.forward_per_batch
    }
    /// Forward + backward over a batch of `batch` sequences.
    pub fn train(&self, batch: i64) -> f64 {
        TRAIN_FACTOR * self.forward(batch)
    }
    /// Training FLOPs per sequence (a batch of one).
    pub fn train_per_seq(&self) -> f64 {
        self.train(1)
    }
}

impl std::ops::Add for MixerFlops {
    type Output = MixerFlops;
    fn add(self, o: MixerFlops) -> MixerFlops {
        MixerFlops {
            forward_per_seq: self.forward_per_seq + o.forward_per_seq,
            forward_per_batch: self.forward_per_batch + o.forward_per_batch,
            prefill_per_seq: self.prefill_per_seq + o.prefill_per_seq,
            decode_per_token: self.decode_per_token + o.decode_per_token,
        }
    }
}

/// One kind of training batch: `sequences` sequences of `seq_len` tokens, with the head applied
/// at `head_positions` positions in all (the supervised positions for the sparse head,
/// `sequences·seq_len` for a full head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepShape {
    pub sequences: i64,
    pub seq_len: i64,
    pub head_positions: i64,
}

/// The training steps of one epoch over `segments` in batches of `batch` sequences, with the
/// sparse head's positions (targets that are not `IGNORE`) of each. Shuffling changes which
/// sequences share a batch, not the mean per step.
pub fn step_shapes(segments: &[crate::tasks::Segment], batch: usize) -> Vec<StepShape> {
    let mut out = vec![];
    for s in segments {
        for c in s.supervised_per_example().chunks(batch.max(1)) {
            out.push(StepShape {
                sequences: c.len() as i64,
                seq_len: s.seq_len as i64,
                head_positions: c.iter().sum::<usize>() as i64,
            });
        }
    }
    out
}

/// [`LmFlops`] of a run config as the trainer counts it: its training data (generated as the
/// trainer does) in batches of `data.batch_size` with the sparse head over supervised
/// positions, prefill and decode at the longest test length.
pub fn run_flops(cfg: &crate::train::config::RunConfig) -> Result<LmFlops> {
    let (train, test) = crate::train::trainer::generate_data(cfg);
    let context = test.iter().map(|s| s.seq_len).max().unwrap_or(0).max(1) as i64;
    lm_flops(
        &cfg.model,
        cfg.data.vocab_size as i64,
        cfg.max_seq_len() as i64,
        &step_shapes(&train, cfg.data.batch_size),
        context,
    )
}

/// A model's costs, the numbers a run's summary and the results index carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LmFlops {
    /// Trainable parameters.
    pub params: i64,
    /// Forward + backward of one training step, mean over the given steps (batch × sequences,
    /// the head over the positions it is applied at).
    pub train_per_step: f64,
    /// Prefill of one prompt of `context` tokens (head at its last position).
    pub prefill_per_seq: f64,
    /// One decoded token at context `context` (head included).
    pub decode_per_token: f64,
    /// The context length of `prefill_per_seq` and `decode_per_token`.
    pub context: i64,
}

/// [`LmFlops`] of a built model over the training steps `steps` (mean per step), with prefill
/// and decode at `context` tokens.
pub fn lm_flops_of(model: &LanguageModel, params: i64, steps: &[StepShape], context: i64) -> LmFlops {
    let per_step: Vec<f64> = steps
        .iter()
        .map(|s| {
            let f = model.flops(s.seq_len);
            TRAIN_FACTOR * (f.body.forward(s.sequences) + f.head_per_position * s.head_positions as f64)
        })
        .collect();
    let train_per_step = if per_step.is_empty() { 0.0 } else { per_step.iter().sum::<f64>() / per_step.len() as f64 };
    let f = model.flops(context);
    LmFlops {
        params,
        train_per_step,
        prefill_per_seq: f.body.prefill_per_seq + f.head_per_position,
        decode_per_token: f.body.decode_per_token + f.head_per_position,
        context,
    }
}

/// [`LmFlops`] from configs: builds the model (on the CPU, parameters only) for `vocab_size`
/// and the longest sequence `max_seq_len`, then counts as [`lm_flops_of`]. Errors name the
/// offending config field.
pub fn lm_flops(
    model: &ModelConfig,
    vocab_size: i64,
    max_seq_len: i64,
    steps: &[StepShape],
    context: i64,
) -> Result<LmFlops> {
    model.validate(vocab_size, max_seq_len)?;
    if context < 1 {
        return Err(crate::error::config_err("context", format!("must be ≥ 1 (got {context})")));
    }
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let lm = tch::no_grad(|| LanguageModel::new(&vs.root(), model, vocab_size, max_seq_len))?;
    Ok(lm_flops_of(&lm, crate::model::num_parameters(&vs), steps, context))
}

/// One row of `zoology mixers --flops`: a registered mixer at its default config.
#[derive(Debug, Clone, PartialEq)]
pub struct MixerRow {
    /// Registry name (`hybrid[i]` for layer i of the hybrid).
    pub name: String,
    /// The counts, or why this mixer cannot be built at this width and length.
    pub counts: std::result::Result<(i64, MixerFlops, i64), String>,
}

/// Longest `--seq-len` of `zoology mixers --flops`: the prefill sum runs over every position.
pub const MAX_TABLE_SEQ_LEN: i64 = 1 << 20;

/// Every registered mixer at its default config, width `d_model`, for sequences of `seq_len`
/// (its longest sequence too): parameters, [`MixerFlops`] and state size. A hybrid gives one row
/// per layer of its default pattern. Errors only for out-of-range arguments, naming the flag.
pub fn mixer_rows(d_model: i64, seq_len: i64) -> Result<Vec<MixerRow>> {
    use crate::error::config_err;
    use crate::train::config::limits::MAX_D_MODEL;
    if !(1..=MAX_D_MODEL).contains(&d_model) {
        return Err(config_err("--d-model", format!("must be in [1, {MAX_D_MODEL}] (got {d_model})")));
    }
    if !(1..=MAX_TABLE_SEQ_LEN).contains(&seq_len) {
        return Err(config_err("--seq-len", format!("must be in [1, {MAX_TABLE_SEQ_LEN}] (got {seq_len})")));
    }
    let mut rows = vec![];
    for e in crate::mixers::registry() {
        let mut table = (e.defaults)();
        table.insert("name".into(), toml::Value::String(e.name.into()));
        let layers = if e.name == "hybrid" { 2 } else { 1 };
        for layer in 0..layers {
            let name = if layers > 1 { format!("{}[{layer}]", e.name) } else { e.name.to_string() };
            let ctx = crate::mixers::BuildCtx::new(layer, 2, seq_len);
            let counts = (|| -> Result<(i64, MixerFlops, i64)> {
                (e.validate)(&table, d_model, &ctx, "mixer")?;
                let vs = tch::nn::VarStore::new(tch::Device::Cpu);
                let m = tch::no_grad(|| (e.build)(vs.root(), d_model, &table, &ctx, "mixer"))?;
                Ok((crate::model::num_parameters(&vs), m.flops(seq_len), m.state_size(seq_len)))
            })()
            .map_err(|e| e.to_string());
            rows.push(MixerRow { name, counts });
        }
    }
    Ok(rows)
}

/// The table of [`mixer_rows`] as text.
pub fn format_mixer_rows(rows: &[MixerRow], d_model: i64, seq_len: i64) -> String {
    let mut s = format!(
        "FLOPs per mixer (one layer, default config) at d={d_model}, L={seq_len}; 1 multiply-add = 2 FLOPs, training = 3 × forward, causal L² terms counted in full (see the `flops` module doc)\n"
    );
    s += &format!(
        "{:<18}{:>12}{:>14}{:>14}{:>14}{:>14}{:>14}{:>14}\n",
        "mixer", "params", "fwd/seq", "per batch", "train/seq", "prefill/seq", "decode/tok", "state"
    );
    for r in rows {
        match &r.counts {
            Ok((p, f, st)) => {
                s += &format!(
                    "{:<18}{:>12}{:>14.3e}{:>14.3e}{:>14.3e}{:>14.3e}{:>14.3e}{:>14}\n",
                    r.name,
                    p,
                    f.forward_per_seq,
                    f.forward_per_batch,
                    f.train_per_seq(),
                    f.prefill_per_seq,
                    f.decode_per_token,
                    st
                )
            }
            Err(why) => s += &format!("{:<18}  not buildable here: {why}\n", r.name),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(mixer: &str, state_mixer: &str) -> ModelConfig {
        toml::from_str(&format!("d_model = 8\nn_layers = 2\nstate_mixer = \"{state_mixer}\"\nmixer = {mixer}\n"))
            .unwrap()
    }

    fn close(what: &str, got: f64, want: f64) {
        assert!((got - want).abs() <= 1e-9 * want.abs(), "{what}: {got} vs {want}");
    }

    /// Two attention layers with MLPs, d = 8, V = 16, L = 8, counted here by hand: the blocks,
    /// the head at the positions it is applied at (5 and 16 in two kinds of step), ×3 for
    /// training; decode and prefill at L with the head once; parameters by hand.
    #[test]
    fn lm_flops_adds_state_mixers_and_the_head() {
        let (d, v, l) = (8.0, 16.0, 8.0);
        let cfg = model(r#"{ name = "attention" }"#, "mlp");
        let steps = [
            StepShape { sequences: 4, seq_len: 8, head_positions: 5 },
            StepShape { sequences: 2, seq_len: 8, head_positions: 16 },
        ];
        let f = lm_flops(&cfg, 16, 8, &steps, 8).unwrap();
        let attn = 8.0 * l * d * d + 4.0 * l * l * d; // projections, full L×L scores and mix
        let mlp_tok = 2.0 * d * 4.0 * d * 2.0; // d → 4d → d
        let body = 2.0 * (attn + l * mlp_tok);
        let head = 2.0 * d * v;
        close("train", f.train_per_step, (3.0 * (4.0 * body + 5.0 * head) + 3.0 * (2.0 * body + 16.0 * head)) / 2.0);
        close("decode", f.decode_per_token, 2.0 * (8.0 * d * d + 4.0 * d * l + mlp_tok) + head);
        let steps_sum: f64 = (1..=8).map(|t| 8.0 * d * d + 4.0 * d * t as f64).sum();
        close("prefill", f.prefill_per_seq, 2.0 * (steps_sum + l * mlp_tok) + head);
        // embedding V·d (tied head); per layer two LayerNorms 4d, wqkv 3d²+3d, out d²+d,
        // fc1 4d²+4d, fc2 4d²+d; ln_f 2d
        let per_layer = 4.0 * d + 3.0 * d * d + 3.0 * d + d * d + d + 4.0 * d * d + 4.0 * d + 4.0 * d * d + d;
        assert_eq!(f.params as f64, v * d + 2.0 * per_layer + 2.0 * d);
        assert_eq!(f.context, 8);
        // the full head (every position) costs more than the sparse one
        let full = lm_flops(&cfg, 16, 8, &[StepShape { sequences: 4, seq_len: 8, head_positions: 32 }], 8).unwrap();
        close("full head", full.train_per_step, 3.0 * (4.0 * body + 32.0 * head));
    }

    /// The mamba block with an identity state mixer has no second branch: the model is its
    /// mixers and the head.
    #[test]
    fn identity_state_mixer_adds_nothing() {
        let cfg = model(r#"{ name = "mamba" }"#, "identity");
        let f = lm_flops(&cfg, 16, 8, &[StepShape { sequences: 1, seq_len: 8, head_positions: 8 }], 8).unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let m = {
            let _rng = crate::mixers::testing::seed_guard(0);
            crate::mixers::build_table(vs.root(), &cfg.mixer, 8, &crate::mixers::BuildCtx::new(0, 2, 8), "m").unwrap()
        };
        let mf = m.flops(8);
        close("train", f.train_per_step, 3.0 * (2.0 * mf.forward(1) + 8.0 * 2.0 * 8.0 * 16.0));
        close("decode", f.decode_per_token, 2.0 * mf.decode_per_token + 2.0 * 8.0 * 16.0);
    }

    #[test]
    fn mixer_table_has_every_mixer_and_names_bad_flags() {
        let rows = mixer_rows(16, 64).unwrap();
        for n in crate::mixers::names() {
            assert!(rows.iter().any(|r| r.name == n || r.name.starts_with(&format!("{n}["))), "{n} missing");
        }
        for r in &rows {
            let (_, f, _) = r.counts.as_ref().unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert!(f.forward_per_seq > 0.0, "{}", r.name);
        }
        let text = format_mixer_rows(&rows, 16, 64);
        assert!(text.contains("attention") && text.contains("decode/tok"), "{text}");
        assert!(mixer_rows(0, 64).unwrap_err().to_string().contains("--d-model"));
        assert!(mixer_rows(16, 0).unwrap_err().to_string().contains("--seq-len"));
        assert!(mixer_rows(16, MAX_TABLE_SEQ_LEN + 1).unwrap_err().to_string().contains("--seq-len"));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cfg = model(r#"{ name = "attention", num_heads = 3 }"#, "mlp");
        let e = lm_flops(&cfg, 16, 8, &[], 8).unwrap_err().to_string();
        assert!(e.contains("model.mixer.num_heads"), "{e}");
        let e = lm_flops(&model(r#"{ name = "attention" }"#, "mlp"), 16, 8, &[], 0).unwrap_err().to_string();
        assert!(e.contains("context"), "{e}");
        let e = lm_flops(&model(r#"{ name = "attention" }"#, "mlp"), 1, 8, &[], 8).unwrap_err().to_string();
        assert!(e.contains("vocab_size"), "{e}");
    }
}
