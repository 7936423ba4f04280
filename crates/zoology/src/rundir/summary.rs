//! `summary.json`: written once, when a run ends (finished, stopped early, or diverged).

use super::float;
use crate::error::{io_err, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Test accuracy passed `train.early_stop_accuracy`.
    EarlyStop,
    /// Ran every epoch.
    MaxEpochs,
    /// Loss, gradient norm or test loss became NaN or infinite.
    Diverged,
}

impl StopReason {
    pub fn word(self) -> &'static str {
        match self {
            StopReason::EarlyStop => "early_stop",
            StopReason::MaxEpochs => "max_epochs",
            StopReason::Diverged => "diverged",
        }
    }
}

/// The first evaluation whose accuracy reached one of `train.solve_thresholds`: what training
/// had cost up to it. Its resolution is the evaluation interval (`train.eval_every_steps`, else
/// one epoch).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Solved {
    #[serde(with = "float")]
    pub threshold: f64,
    /// The accuracy that evaluation measured (≥ `threshold`).
    #[serde(with = "float")]
    pub accuracy: f64,
    /// Optimiser steps, training examples and training tokens (inputs) up to that evaluation.
    pub step: usize,
    pub examples: u64,
    pub tokens: u64,
    /// Training wall time up to it (evaluations included).
    #[serde(with = "float")]
    pub wall_time_s: f64,
    /// Training FLOPs up to it (forward + backward, see [`crate::flops`]); `None` in runs
    /// recorded before FLOPs were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_flops: Option<f64>,
}

/// The end of a run. Floats that may be non-finite (a diverged run's loss) are written as the
/// strings "NaN" / "inf" / "-inf" (see [`float`]), so every strict JSON parser reads the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// "done" or "diverged".
    pub status: String,
    pub stop_reason: StopReason,
    /// Why the run stopped when that is not the normal end (the step and value of a divergence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub mixer: String,
    pub d_model: i64,
    #[serde(with = "float")]
    pub best_accuracy: f64,
    pub best_epoch: usize,
    #[serde(with = "float")]
    pub final_accuracy: f64,
    /// Which metric the accuracies are (see [`crate::train::metrics::EvalResult::metric`]).
    #[serde(default)]
    pub metric: String,
    /// Every convention on the final evaluation (per-example, micro, MAD macro, perplexity).
    #[serde(default, with = "float::map")]
    pub final_metrics: BTreeMap<String, f64>,
    #[serde(with = "float")]
    pub final_loss: f64,
    #[serde(with = "float::map")]
    pub slices: BTreeMap<String, f64>,
    #[serde(with = "float::map")]
    pub best_slices: BTreeMap<String, f64>,
    pub num_parameters: i64,
    /// Recurrent state elements per sequence, summed over layers, at the longest test length.
    pub state_size: i64,
    pub state_size_seq_len: i64,
    /// FLOPs of one training step, forward + backward, mean over an epoch's steps
    /// ([`crate::flops`]); absent in summaries written before issue 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops_train_per_step: Option<f64>,
    /// FLOPs of a prefill of `state_size_seq_len` tokens (head at the last position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops_prefill_per_seq: Option<f64>,
    /// FLOPs of one decoded token at context `state_size_seq_len` (head included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops_decode_per_token: Option<f64>,
    #[serde(with = "float")]
    pub wall_time_s: f64,
    /// Training throughput: tokens (inputs) per second of training steps (evaluation and
    /// checkpoints excluded), and the training FLOPs ([`crate::flops`]) per second in GFLOP/s;
    /// absent in summaries written before they existed and for constructed models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_tokens_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_gflops_per_s: Option<f64>,
    pub epochs: usize,
    pub steps: usize,
    pub device: String,
    /// The machine it trained on ([`crate::device::machine`]); absent in runs recorded before
    /// this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// One entry per `train.solve_thresholds` value the run reached (empty for a run that
    /// never did; absent in runs recorded before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solved: Option<Vec<Solved>>,
}

impl Summary {
    pub fn is_done(&self) -> bool {
        self.status == "done"
    }
    /// The failure reason of a run that did not end normally (`None` when it is done).
    pub fn failure(&self) -> Option<String> {
        if self.is_done() {
            return None;
        }
        let why = self.reason.clone().unwrap_or_else(|| format!("final loss {}", self.final_loss));
        Some(format!("{}: {why}", self.status))
    }
}

pub fn write_summary(dir: &Path, s: &Summary) -> Result<()> {
    let text = serde_json::to_string_pretty(s).map_err(|e| Error::Other(format!("summary does not serialise: {e}")))?;
    super::write_atomic(&dir.join(super::SUMMARY), text.as_bytes())
}

pub fn read_summary(dir: &Path) -> Result<Summary> {
    let p = dir.join(super::SUMMARY);
    let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Data(format!(
            "{}: not a readable summary ({e}); delete it to let the run be resumed or retrained",
            p.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary written before issue 10 (no FLOPs fields) still reads, with the FLOPs absent;
    /// a new one round-trips them.
    #[test]
    fn summaries_without_flops_still_read() {
        let old = r#"{"status":"done","stop_reason":"max_epochs","mixer":"attention","d_model":64,"best_accuracy":0.5,
            "best_epoch":1,"final_accuracy":0.5,"final_loss":1.0,"slices":{},"best_slices":{},"num_parameters":10,
            "state_size":128,"state_size_seq_len":64,"wall_time_s":1.0,"epochs":1,"steps":2,"device":"cpu"}"#;
        let s: Summary = serde_json::from_str(old).unwrap();
        assert_eq!((s.flops_train_per_step, s.flops_prefill_per_seq, s.flops_decode_per_token), (None, None, None));
        assert_eq!(s.machine, None);
        let new = Summary {
            flops_train_per_step: Some(3e9),
            flops_prefill_per_seq: Some(2e6),
            flops_decode_per_token: Some(1e5),
            ..s
        };
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains("\"flops_train_per_step\":3000000000.0"), "{text}");
        assert_eq!(serde_json::from_str::<Summary>(&text).unwrap(), new);
    }
}
