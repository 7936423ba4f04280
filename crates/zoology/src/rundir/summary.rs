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
    #[serde(with = "float")]
    pub wall_time_s: f64,
    pub epochs: usize,
    pub steps: usize,
    pub device: String,
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
    serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: not a readable summary ({e}); delete it to let the run be resumed or retrained", p.display())))
}
