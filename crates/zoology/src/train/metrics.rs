//! metrics.jsonl lines and evaluation results. Floats that can be non-finite (a diverging
//! loss) are written as the strings "NaN" / "inf" / "-inf" ([`crate::rundir::float`]), so every
//! line is strict JSON and reads back. The file is append-only; resuming cuts it back to the
//! byte length the checkpoint recorded, so earlier lines are kept byte for byte.

use crate::error::{io_err, Error, Result};
use crate::rundir::float;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub use crate::rundir::summary::{read_summary, write_summary, StopReason, Summary};
pub use crate::rundir::write_atomic;

/// Accuracy and loss on the test segments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EvalResult {
    /// The test tasks' own metric (Zoology's per-example accuracy for MQAR; see `metric`).
    #[serde(with = "float")]
    pub accuracy: f64,
    /// Mean over all supervised positions (micro average), for comparison with other suites.
    #[serde(with = "float")]
    pub accuracy_micro: f64,
    /// Mean cross-entropy over supervised positions.
    #[serde(with = "float")]
    pub loss: f64,
    /// `"num_kv_pairs=4"` / `"seq_len=64"` → primary accuracy on that slice.
    #[serde(with = "float::map")]
    pub slices: BTreeMap<String, f64>,
    /// Which metric `accuracy` is (the tasks' own: `per_example_accuracy` for Zoology's,
    /// `mad_macro_accuracy` for MAD's, `micro_accuracy` for safari's).
    #[serde(default)]
    pub metric: String,
    /// Every averaging convention on the same predictions, by name.
    #[serde(default, with = "float::map")]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricLine {
    Train {
        step: usize,
        epoch: usize,
        #[serde(with = "float")]
        loss: f64,
        #[serde(with = "float")]
        lr: f64,
        #[serde(with = "float")]
        tokens_per_s: f64,
        #[serde(with = "float")]
        grad_norm: f64,
    },
    Eval {
        step: usize,
        epoch: usize,
        #[serde(flatten)]
        result: EvalResult,
        #[serde(with = "float")]
        elapsed_s: f64,
    },
}

impl MetricLine {
    pub fn step(&self) -> usize {
        match self {
            MetricLine::Train { step, .. } | MetricLine::Eval { step, .. } => *step,
        }
    }
}

/// Appends one line; returns the file's length after it (what a checkpoint records).
pub fn append_line(path: &Path, line: &MetricLine) -> Result<u64> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
    let s = serde_json::to_string(line).map_err(|e| Error::Other(format!("a metrics line does not serialise: {e}")))?;
    writeln!(f, "{s}").map_err(io_err(path))?;
    f.metadata().map(|m| m.len()).map_err(io_err(path))
}

pub fn read_lines(path: &Path) -> Result<Vec<MetricLine>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    // A torn final line (killed mid-write) is dropped, not an error.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Cuts the file back to its first `len` bytes (the length when the checkpoint being resumed
/// was written), keeping those bytes exactly as they are.
pub fn truncate_to(path: &Path, len: u64) -> Result<()> {
    let have = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if have < len {
        return Err(Error::Data(format!(
            "{}: has {have} bytes but the checkpoint was written after {len}; it was shortened or replaced since, so the run's history is lost (delete the run directory to start over)",
            path.display()
        )));
    }
    if have > len {
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
        f.set_len(len).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_losses_are_strict_json_and_read_back() {
        let d = std::env::temp_dir().join(format!("zoology-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("m.jsonl");
        let a = MetricLine::Train { step: 1, epoch: 0, loss: 2.5, lr: 1e-3, tokens_per_s: 10.0, grad_norm: 0.5 };
        let b = MetricLine::Train {
            step: 2,
            epoch: 0,
            loss: f64::NAN,
            lr: 1e-3,
            tokens_per_s: 10.0,
            grad_norm: f64::INFINITY,
        };
        let c = MetricLine::Eval {
            step: 2,
            epoch: 1,
            result: EvalResult { loss: f64::NAN, ..Default::default() },
            elapsed_s: 1.0,
        };
        let n1 = append_line(&p, &a).unwrap();
        append_line(&p, &b).unwrap();
        append_line(&p, &c).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
            assert!(!l.contains("null"), "{l}");
        }
        let back = read_lines(&p).unwrap();
        assert_eq!(back.len(), 3, "{text}");
        assert!(
            matches!(back[1], MetricLine::Train { loss, grad_norm, .. } if loss.is_nan() && grad_norm.is_infinite())
        );
        // truncation keeps the prefix byte for byte
        truncate_to(&p, n1).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text.lines().next().unwrap().to_string() + "\n");
        assert!(truncate_to(&p, n1 + 1).unwrap_err().to_string().contains("shortened"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
