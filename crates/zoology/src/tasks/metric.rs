//! How test predictions are scored. The three suites average differently, so a number is only
//! comparable with the peer that defined the task when it is computed the peer's way:
//!
//! - [`Metric::PerExample`] (Zoology): for each example, the fraction of its supervised
//!   positions predicted correctly; the mean over examples that have at least one.
//! - [`Metric::Micro`] (safari's `accuracy_ignore_index`): correct / supervised positions over
//!   the whole test set.
//! - [`Metric::MadMacro`] (MAD): `torchmetrics.MulticlassAccuracy(num_classes=V,
//!   ignore_index=-100)` with its default `average="macro"`, computed **per test batch** (MAD's
//!   `PLModelWrap` logs the batch value of the metric with `on_epoch=True`) and averaged over
//!   batches weighted by batch size (Lightning's epoch reduction). Within a batch: positions
//!   whose target is −100 are dropped; for each class c, `tp_c` = positions with target c
//!   predicted c, `fn_c` = target c predicted otherwise, `fp_c` = predicted c with another
//!   target; the score of c is `tp_c / (tp_c + fn_c)` (0 when c never is a target); the macro
//!   average is the mean over the classes with `tp_c + fp_c + fn_c > 0`
//!   (torchmetrics' `_adjust_weights_safe_divide`, since its 2023 macro fix #1821). So a class
//!   that is predicted but never a target counts as a zero, and classes that neither occur nor
//!   are predicted do not count. MAD's test loader has batch 128 and no shuffling: batches are
//!   128 consecutive test examples, the last one possibly shorter.
//! - [`Metric::Perplexity`] (language modelling): `exp` of the mean cross-entropy over
//!   supervised positions; its primary accuracy is the micro token accuracy.
//!
//! Every metric is a ratio of sums, so statistics of several segments (or slices) combine by
//! adding numerators and denominators ([`Stats::add`]).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Metric {
    PerExample,
    Micro,
    MadMacro { batch: usize },
    Perplexity,
}

impl Metric {
    /// MAD's setting: macro accuracy per batch of 128 test examples.
    pub const MAD: Metric = Metric::MadMacro { batch: 128 };

    /// The key under which the value is reported (`metrics.jsonl`, summaries).
    pub fn name(self) -> &'static str {
        match self {
            Metric::PerExample => "per_example_accuracy",
            Metric::Micro => "micro_accuracy",
            Metric::MadMacro { .. } => "mad_macro_accuracy",
            Metric::Perplexity => "perplexity",
        }
    }

    /// One line for `zoology tasks` and reports.
    pub fn about(self) -> String {
        match self {
            Metric::PerExample => "per-example accuracy on supervised positions, mean over examples (Zoology)".into(),
            Metric::Micro => "accuracy over all supervised positions (micro; safari)".into(),
            Metric::MadMacro { batch } => format!(
                "torchmetrics MulticlassAccuracy(average=macro, ignore_index=-100) per batch of {batch} test examples, mean over batches weighted by size (MAD)"
            ),
            Metric::Perplexity => "perplexity exp(mean CE) over supervised positions; accuracy = micro token accuracy".into(),
        }
    }
}

/// A ratio kept as its two sums so that parts combine exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ratio {
    pub num: f64,
    pub den: f64,
}

impl Ratio {
    pub fn value(self) -> f64 {
        if self.den > 0.0 {
            self.num / self.den
        } else {
            0.0
        }
    }
    fn add(&mut self, o: Ratio) {
        self.num += o.num;
        self.den += o.den;
    }
}

/// Sufficient statistics of every metric over some examples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Σ per-example accuracy / examples with a supervised position.
    pub per_example: Ratio,
    /// correct / supervised positions.
    pub micro: Ratio,
    /// Σ batch macro accuracy × batch size / Σ batch size (only for `MadMacro` segments).
    pub mad_macro: Ratio,
    /// Σ cross-entropy / supervised positions.
    pub ce: Ratio,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.per_example.add(o.per_example);
        self.micro.add(o.micro);
        self.mad_macro.add(o.mad_macro);
        self.ce.add(o.ce);
    }

    /// The primary accuracy under `metric` (perplexity tasks: micro token accuracy).
    pub fn accuracy(&self, metric: Metric) -> f64 {
        match metric {
            Metric::PerExample => self.per_example.value(),
            Metric::Micro | Metric::Perplexity => self.micro.value(),
            Metric::MadMacro { .. } => self.mad_macro.value(),
        }
    }

    pub fn perplexity(&self) -> f64 {
        self.ce.value().exp()
    }

    /// Every metric these statistics support, by name.
    pub fn values(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert(Metric::PerExample.name().to_string(), self.per_example.value());
        m.insert(Metric::Micro.name().to_string(), self.micro.value());
        m.insert(Metric::Perplexity.name().to_string(), self.perplexity());
        if self.mad_macro.den > 0.0 {
            m.insert(Metric::MAD.name().to_string(), self.mad_macro.value());
        }
        m
    }
}

/// Feeds examples one at a time, in test order.
#[derive(Debug)]
pub struct Accumulator {
    metric: Metric,
    stats: Stats,
    /// MAD: per-class (tp, fp, fn) of the current batch, and its example count.
    classes: HashMap<i64, (u64, u64, u64)>,
    in_batch: usize,
}

impl Accumulator {
    pub fn new(metric: Metric) -> Self {
        Accumulator { metric, stats: Stats::default(), classes: HashMap::new(), in_batch: 0 }
    }

    /// One example: the predictions, targets and cross-entropies at its supervised positions
    /// (all three empty for an example without any; it still counts in MAD's batch size).
    pub fn add_example(&mut self, preds: &[i64], targets: &[i64], ce: &[f64]) {
        assert!(preds.len() == targets.len() && ce.len() == targets.len(), "add_example: lengths differ");
        let correct = preds.iter().zip(targets).filter(|(p, t)| p == t).count() as f64;
        let m = targets.len() as f64;
        if m > 0.0 {
            self.stats.per_example.num += correct / m;
            self.stats.per_example.den += 1.0;
        }
        self.stats.micro.num += correct;
        self.stats.micro.den += m;
        self.stats.ce.num += ce.iter().sum::<f64>();
        self.stats.ce.den += m;
        if let Metric::MadMacro { batch } = self.metric {
            for (&p, &t) in preds.iter().zip(targets) {
                if p == t {
                    self.classes.entry(t).or_default().0 += 1;
                } else {
                    self.classes.entry(p).or_default().1 += 1;
                    self.classes.entry(t).or_default().2 += 1;
                }
            }
            self.in_batch += 1;
            if self.in_batch == batch {
                self.flush_batch();
            }
        }
    }

    fn flush_batch(&mut self) {
        if self.in_batch == 0 {
            return;
        }
        // every class in the map has tp + fp + fn > 0
        let k = self.classes.len() as f64;
        let macro_acc = if k == 0.0 {
            0.0
        } else {
            self.classes
                .values()
                .map(|&(tp, _, fn_)| if tp + fn_ > 0 { tp as f64 / (tp + fn_) as f64 } else { 0.0 })
                .sum::<f64>()
                / k
        };
        self.stats.mad_macro.num += macro_acc * self.in_batch as f64;
        self.stats.mad_macro.den += self.in_batch as f64;
        self.classes.clear();
        self.in_batch = 0;
    }

    /// The statistics of everything fed (a partial last MAD batch counts with its size).
    pub fn finish(mut self) -> Stats {
        self.flush_batch();
        self.stats
    }
}

/// Scores one evaluation batch: `logits [M, V]` at the supervised positions of `examples`
/// consecutive examples, their targets `[M]` and example index within the batch `[M]`
/// (ascending, as the sparse head gathers them).
pub fn score_batch(acc: &mut Accumulator, logits: &Tensor, targets: &Tensor, example: &Tensor, examples: usize) {
    let preds = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(tch::Device::Cpu)).expect("argmax to host");
    let tg = Vec::<i64>::try_from(targets.to_kind(Kind::Int64).to_device(tch::Device::Cpu)).expect("targets to host");
    let ex =
        Vec::<i64>::try_from(example.to_kind(Kind::Int64).to_device(tch::Device::Cpu)).expect("example index to host");
    let ce = if tg.is_empty() {
        vec![]
    } else {
        let c =
            logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(targets, None, tch::Reduction::None, -100, 0.0);
        Vec::<f64>::try_from(c.to_kind(Kind::Double).to_device(tch::Device::Cpu)).expect("ce to host")
    };
    let mut start = 0;
    for e in 0..examples as i64 {
        let mut end = start;
        while end < ex.len() && ex[end] == e {
            end += 1;
        }
        acc.add_example(&preds[start..end], &tg[start..end], &ce[start..end]);
        start = end;
    }
    assert_eq!(start, ex.len(), "score_batch: example indices not ascending within 0..{examples}");
}

/// The test set's numbers from per-segment statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Primary accuracy: the tasks' metric over all test examples when every segment has the
    /// same metric, else the mean over segments of each segment's value.
    pub accuracy: f64,
    /// Name of the metric `accuracy` is (`"mean_over_segments"` when the metrics differ).
    pub metric: String,
    pub accuracy_micro: f64,
    /// Mean cross-entropy over supervised positions.
    pub loss: f64,
    /// Every metric the statistics support, over all segments.
    pub metrics: BTreeMap<String, f64>,
    /// `"key=value"` → primary accuracy on the segments with that slice value.
    pub slices: BTreeMap<String, f64>,
}

/// The name [`summarize`] gives the primary accuracy of segments scored by these metrics
/// (one metric's name, or `mean_over_segments` when they differ; empty for none).
pub fn name_of(metrics: impl Iterator<Item = Metric>) -> String {
    let m: Vec<Metric> = metrics.collect();
    match m.first() {
        None => String::new(),
        Some(f) if m.iter().all(|x| x == f) => f.name().to_string(),
        Some(_) => "mean_over_segments".to_string(),
    }
}

fn primary(parts: &[(Metric, &Stats)]) -> (f64, String) {
    let first = match parts.first() {
        Some(p) => p.0,
        None => return (0.0, String::new()),
    };
    if parts.iter().all(|p| p.0 == first) {
        let mut s = Stats::default();
        for p in parts {
            s.add(p.1);
        }
        (s.accuracy(first), name_of(parts.iter().map(|p| p.0)))
    } else {
        (parts.iter().map(|p| p.1.accuracy(p.0)).sum::<f64>() / parts.len() as f64, name_of(parts.iter().map(|p| p.0)))
    }
}

/// Combines per-segment statistics: `(metric, slices, stats)` per test segment.
pub fn summarize(segments: &[(Metric, &BTreeMap<String, String>, Stats)]) -> Summary {
    let parts: Vec<(Metric, &Stats)> = segments.iter().map(|s| (s.0, &s.2)).collect();
    let (accuracy, metric) = primary(&parts);
    let mut all = Stats::default();
    for s in segments {
        all.add(&s.2);
    }
    let mut by_slice: BTreeMap<String, Vec<(Metric, &Stats)>> = BTreeMap::new();
    for (m, slices, st) in segments {
        for (k, v) in slices.iter() {
            by_slice.entry(format!("{k}={v}")).or_default().push((*m, st));
        }
    }
    Summary {
        accuracy,
        metric,
        accuracy_micro: all.micro.value(),
        loss: all.ce.value(),
        metrics: all.values(),
        slices: by_slice.into_iter().map(|(k, p)| (k, primary(&p).0)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits `[M, V]` whose argmax is `preds`, with the winning logit 2.0 and the rest 0.
    fn logits_for(preds: &[i64], v: i64) -> Tensor {
        let t = Tensor::zeros([preds.len() as i64, v], (Kind::Float, tch::Device::Cpu));
        for (i, &p) in preds.iter().enumerate() {
            let _ = t.get(i as i64).get(p).fill_(2.0);
        }
        t
    }

    fn run(metric: Metric, examples: &[(&[i64], &[i64])], v: i64, batch_examples: usize) -> Stats {
        let mut acc = Accumulator::new(metric);
        for chunk in examples.chunks(batch_examples) {
            let (mut p, mut t, mut e) = (vec![], vec![], vec![]);
            for (j, (pr, tg)) in chunk.iter().enumerate() {
                p.extend_from_slice(pr);
                t.extend_from_slice(tg);
                e.extend(std::iter::repeat(j as i64).take(tg.len()));
            }
            score_batch(&mut acc, &logits_for(&p, v), &Tensor::from_slice(&t), &Tensor::from_slice(&e), chunk.len());
        }
        acc.finish()
    }

    /// Per-example and micro averages differ when examples have different numbers of targets:
    /// example A has 1 target (right), example B has 3 (all wrong).
    #[test]
    fn per_example_accuracy_differs_from_micro_when_counts_differ() {
        let ex: Vec<(&[i64], &[i64])> = vec![(&[5], &[5]), (&[1, 1, 1], &[2, 3, 4])];
        let s = run(Metric::PerExample, &ex, 8, 2);
        assert!((s.accuracy(Metric::PerExample) - 0.5).abs() < 1e-12, "{s:?}"); // (1 + 0) / 2
        assert!((s.accuracy(Metric::Micro) - 0.25).abs() < 1e-12, "{s:?}"); // 1 of 4
                                                                            // the same whatever the evaluation batch size
        assert_eq!(run(Metric::PerExample, &ex, 8, 1), s);
        // an example without targets does not count in the per-example mean
        let ex2: Vec<(&[i64], &[i64])> = vec![(&[5], &[5]), (&[], &[]), (&[1, 1, 1], &[2, 3, 4])];
        assert!((run(Metric::PerExample, &ex2, 8, 3).accuracy(Metric::PerExample) - 0.5).abs() < 1e-12);
    }

    /// Cross-entropy from the hand-built logits: a right prediction costs −ln(e²/(e²+V−1)).
    #[test]
    fn loss_and_perplexity_from_hand_built_logits() {
        let v = 8i64;
        let ex: Vec<(&[i64], &[i64])> = vec![(&[3], &[3]), (&[3], &[4])];
        let s = run(Metric::Perplexity, &ex, v, 2);
        let z = (2f64).exp() + (v - 1) as f64;
        let right = -((2f64).exp() / z).ln();
        let wrong = -(1.0 / z).ln();
        assert!((s.ce.value() - (right + wrong) / 2.0).abs() < 1e-6, "{s:?}");
        assert!((s.perplexity() - ((right + wrong) / 2.0).exp()).abs() < 1e-5);
        assert_eq!(s.accuracy(Metric::Perplexity), 0.5); // the primary accuracy is micro
    }

    /// torchmetrics' macro average on one batch, by hand:
    /// targets 7 7 7 9, predictions 7 7 3 9 → class 7: tp 2 fn 1 → 2/3; class 9: 1/1;
    /// class 3: predicted, never a target (fp 1) → counts as 0; classes never seen: left out.
    /// Macro = (2/3 + 1 + 0) / 3 = 5/9, while micro = 3/4.
    #[test]
    fn mad_macro_counts_predicted_but_absent_classes_as_zero() {
        let ex: Vec<(&[i64], &[i64])> = vec![(&[7, 7], &[7, 7]), (&[3, 9], &[7, 9])];
        let s = run(Metric::MAD, &ex, 16, 2);
        assert!((s.accuracy(Metric::MAD) - 5.0 / 9.0).abs() < 1e-12, "{s:?}");
        assert!((s.accuracy(Metric::Micro) - 0.75).abs() < 1e-12);
        assert!((s.accuracy(Metric::PerExample) - 0.75).abs() < 1e-12); // (1 + 1/2) / 2
    }

    /// Batches are MAD's (consecutive test examples), not ours: the value depends on the
    /// metric's batch and not on the evaluation batch; a short last batch weighs by its size.
    /// Examples (prediction → target): 1→1, 1→2, 5→5, 2→2.
    #[test]
    fn mad_macro_is_a_size_weighted_mean_over_metric_batches() {
        let ex: Vec<(&[i64], &[i64])> = vec![(&[1], &[1]), (&[1], &[2]), (&[5], &[5]), (&[2], &[2])];
        // metric batch 2: [0,1] → class 1: 1/1 (its false positive does not lower its recall),
        // class 2: 0/1 → 1/2; [2,3] → classes 5 and 2 right → 1. Weighted: (1/2·2 + 1·2)/4 = 3/4
        let m = Metric::MadMacro { batch: 2 };
        for eval_batch in [1, 3, 4] {
            let s = run(m, &ex, 8, eval_batch);
            assert!((s.accuracy(m) - 0.75).abs() < 1e-12, "eval batch {eval_batch}: {s:?}");
        }
        // one metric batch of 4: class 1: 1/1, class 2: 1/2, class 5: 1/1 → 2.5/3
        let m4 = Metric::MadMacro { batch: 4 };
        assert!((run(m4, &ex, 8, 4).accuracy(m4) - 2.5 / 3.0).abs() < 1e-12);
        // metric batch 3: [0,1,2] → (1 + 0 + 1)/3 with weight 3, then [3] → 1 with weight 1
        let m3 = Metric::MadMacro { batch: 3 };
        assert!((run(m3, &ex, 8, 2).accuracy(m3) - (2.0 / 3.0 * 3.0 + 1.0) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn segments_combine_by_sums_and_mixed_metrics_average_segments() {
        let a = run(Metric::PerExample, &[(&[1], &[1])], 4, 1); // 1.0, one example
        let b = run(Metric::PerExample, &[(&[1], &[2]), (&[1], &[2]), (&[1], &[2])], 4, 3); // 0.0, three examples
        let (sa, sb) = (
            BTreeMap::from([("k".to_string(), "1".to_string())]),
            BTreeMap::from([("k".to_string(), "2".to_string())]),
        );
        let s = summarize(&[(Metric::PerExample, &sa, a), (Metric::PerExample, &sb, b)]);
        assert!((s.accuracy - 0.25).abs() < 1e-12, "{s:?}"); // over all four examples
        assert_eq!(s.metric, "per_example_accuracy");
        assert_eq!((s.slices["k=1"], s.slices["k=2"]), (1.0, 0.0));
        let s = summarize(&[(Metric::PerExample, &sa, a), (Metric::Micro, &sb, b)]);
        assert!((s.accuracy - 0.5).abs() < 1e-12, "{s:?}"); // mean of 1.0 and 0.0
        assert_eq!(s.metric, "mean_over_segments");
    }
}
