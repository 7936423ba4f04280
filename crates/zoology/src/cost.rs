//! Cost accounting of a run (layer: cost): the FLOPs of a model and of a run's training steps,
//! prefill and decode, from shapes (the config's model, its tasks' sequence lengths and
//! supervised positions). The counting convention and the per-operation formulas are in
//! [`crate::flops`]; each mixer's own count is `Mixer::flops`.
//!
//! Layer 6 of 11, **cost** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use crate::config::RunConfig;
use crate::error::Result;
use crate::flops::{MixerFlops, TRAIN_FACTOR};
use crate::model::{LanguageModel, ModelConfig};
use serde::Serialize;

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
pub fn run_flops(cfg: &RunConfig) -> Result<LmFlops> {
    let (train, test) = cfg.generate_data();
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
    use crate::limits::MAX_D_MODEL;
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
                // a mixer whose weights alone would fill this machine is not built
                let params = (e.memory)(&table, d_model, &ctx, seq_len, "mixer")?.params.unwrap_or(0.0);
                if let Some(total) = crate::config::mem_total_bytes().filter(|t| 4.0 * params > t / 2.0) {
                    return Err(config_err(
                        "--d-model",
                        format!(
                            "{params:.3e} parameters ({:.1} GiB) are more than half of this machine's {:.1} GiB; lower --d-model or --seq-len",
                            4.0 * params / 2f64.powi(30),
                            total / 2f64.powi(30)
                        ),
                    ));
                }
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
        // d = 64: the smallest width every default fits (mamba2's and rwkv5's heads are 64 wide)
        let rows = mixer_rows(64, 64).unwrap();
        for n in crate::mixers::names() {
            assert!(rows.iter().any(|r| r.name == n || r.name.starts_with(&format!("{n}["))), "{n} missing");
        }
        for r in &rows {
            let (_, f, _) = r.counts.as_ref().unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert!(f.forward_per_seq > 0.0, "{}", r.name);
        }
        let text = format_mixer_rows(&rows, 64, 64);
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
