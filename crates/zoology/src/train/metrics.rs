//! Run-directory files: metrics.jsonl lines and summary.json, and evaluation results.

use crate::error::{io_err, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Accuracy and loss on the test segments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EvalResult {
    /// The test tasks' own metric (Zoology's per-example accuracy for MQAR; see `metric`).
    pub accuracy: f64,
    /// Mean over all supervised positions (micro average), for comparison with other suites.
    pub accuracy_micro: f64,
    /// Mean cross-entropy over supervised positions.
    pub loss: f64,
    /// `"num_kv_pairs=4"` / `"seq_len=64"` → primary accuracy on that slice.
    pub slices: BTreeMap<String, f64>,
    /// Which metric `accuracy` is (the tasks' own: `per_example_accuracy` for Zoology's,
    /// `mad_macro_accuracy` for MAD's, `micro_accuracy` for safari's).
    #[serde(default)]
    pub metric: String,
    /// Every averaging convention on the same predictions, by name.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricLine {
    Train { step: usize, epoch: usize, loss: f64, lr: f64, tokens_per_s: f64, grad_norm: f64 },
    Eval { step: usize, epoch: usize, #[serde(flatten)] result: EvalResult, elapsed_s: f64 },
}

impl MetricLine {
    pub fn step(&self) -> usize {
        match self {
            MetricLine::Train { step, .. } | MetricLine::Eval { step, .. } => *step,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Test accuracy passed `train.early_stop_accuracy`.
    EarlyStop,
    /// Ran every epoch.
    MaxEpochs,
    /// Loss became NaN or infinite.
    Diverged,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub status: String,
    pub stop_reason: StopReason,
    pub mixer: String,
    pub d_model: i64,
    pub best_accuracy: f64,
    pub best_epoch: usize,
    pub final_accuracy: f64,
    /// Which metric the accuracies are (see [`EvalResult::metric`]).
    #[serde(default)]
    pub metric: String,
    /// Every convention on the final evaluation (per-example, micro, MAD macro, perplexity).
    #[serde(default)]
    pub final_metrics: BTreeMap<String, f64>,
    pub final_loss: f64,
    pub slices: BTreeMap<String, f64>,
    pub best_slices: BTreeMap<String, f64>,
    pub num_parameters: i64,
    /// Recurrent state elements per sequence, summed over layers, at the longest test length.
    pub state_size: i64,
    pub state_size_seq_len: i64,
    pub wall_time_s: f64,
    pub epochs: usize,
    pub steps: usize,
    pub device: String,
}

pub fn append_line(path: &Path, line: &MetricLine) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
    let s = serde_json::to_string(line).expect("metric lines serialise");
    writeln!(f, "{s}").map_err(io_err(path))?;
    Ok(())
}

pub fn read_lines(path: &Path) -> Result<Vec<MetricLine>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    // A torn final line (killed mid-write) is dropped, not an error.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Keeps only lines up to and including `step` (used when resuming from a checkpoint).
pub fn truncate_after(path: &Path, step: usize) -> Result<()> {
    let keep: Vec<MetricLine> = read_lines(path)?.into_iter().filter(|l| l.step() <= step).collect();
    let mut text = String::new();
    for l in &keep {
        text.push_str(&serde_json::to_string(l).unwrap());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Writes via a temporary file and a rename, so a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

pub fn write_summary(dir: &Path, s: &Summary) -> Result<()> {
    write_atomic(&dir.join("summary.json"), serde_json::to_string_pretty(s).unwrap().as_bytes())
}

pub fn read_summary(dir: &Path) -> Result<Summary> {
    let p = dir.join("summary.json");
    let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
    serde_json::from_str(&text).map_err(|e| crate::Error::Data(format!("{}: {e}", p.display())))
}
