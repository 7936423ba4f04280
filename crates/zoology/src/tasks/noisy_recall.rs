//! Noisy in-context recall, as MAD's `generate_noisy_in_context_recall_instance`
//! (athms/mad-lab `mad/data/instances.py`, `configs/tasks/noisy-in-context-recall.yml`): the
//! in-context recall task (see `in_context_recall.rs` for the exact layout) where each
//! key-value slot is, with probability `frac_noise`, replaced by two tokens drawn uniformly from
//! a noise vocabulary of `noise_vocab_size` tokens at the top of `[0, V)`. Noise carries no
//! test target; in training its next tokens are targets like every other token (MAD trains on
//! the shifted input).
//!
//! MAD's baseline: V = 32 (16 of them noise), L = 128, `frac_noise = 0.2`, 12,800 training
//! examples; variations V ∈ {48, 80, 144} ("adding 16 for noise vocab"), L ∈ {256, 512, 1024},
//! N ∈ {6400, 3200, 1600, 800}, `frac_noise` ∈ {0.4, 0.6, 0.8}. Metric: MAD's macro accuracy.
//! Slices: `vocab_size`, `seq_len`, `frac_noise`.

use super::in_context_recall::{naive_recall, recall_legend, InContextRecallConfig, Scratch};
use super::{examples_field, fill_examples, Metric, Slice, Split, Task, Token, SEQ_LEN, VOCAB};
use crate::error::Result;
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}
fn sixteen() -> usize {
    16
}
fn fifth() -> f64 {
    0.2
}

pub const NOISE: Slice = Slice { key: "frac_noise", label: "noise fraction", short: "noise" };

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoisyRecallConfig {
    /// MAD's `seq_len` (examples have `seq_len − 1` tokens with `multi_query`).
    pub seq_len: usize,
    pub num_examples: usize,
    #[serde(default = "sixteen")]
    pub noise_vocab_size: usize,
    #[serde(default = "fifth")]
    pub frac_noise: f64,
    #[serde(default = "yes")]
    pub multi_query: bool,
}

impl Default for NoisyRecallConfig {
    /// MAD's baseline (V = 32 goes in `data.vocab_size`).
    fn default() -> Self {
        NoisyRecallConfig {
            seq_len: 128,
            num_examples: 12_800,
            noise_vocab_size: 16,
            frac_noise: 0.2,
            multi_query: true,
        }
    }
}

impl NoisyRecallConfig {
    fn recall(&self) -> InContextRecallConfig {
        InContextRecallConfig {
            seq_len: self.seq_len,
            num_examples: self.num_examples,
            multi_query: self.multi_query,
            noise_vocab_size: self.noise_vocab_size,
            frac_noise: self.frac_noise,
        }
    }
}

impl Task for NoisyRecallConfig {
    const TITLE: &'static str = "Noisy recall (MAD)";
    const ABOUT: &'static str = "in-context recall with a fraction of the key-value slots replaced by noise tokens";
    const SOURCE: &'static str = "athms/mad-lab mad/data/instances.py (generate_noisy_in_context_recall_instance)";
    const SUPERVISION: &'static str = "train: every next token (noise included); test: the value after each key presented before, and the final probe's value";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN, NOISE];
    const ALIASES: &'static [(&'static str, &'static str)] = &[("noise", "frac_noise")];
    const DEFAULT_VOCAB: usize = 32;
    const METRIC: Metric = Metric::MAD;

    fn seq_len(&self) -> usize {
        Task::seq_len(&self.recall())
    }
    examples_field!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        self.recall().check(vocab_size, field)
    }
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let r = self.recall();
        let lay = r.layout(vocab_size);
        fill_examples(self.num_examples, Task::seq_len(self), seed, Scratch::default, |s, rng, inp, tgt| {
            r.fill_one(lay, split, s, rng, inp, tgt)
        })
    }
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        naive_recall(&self.recall(), vocab_size, seed, split)
    }
    fn legend(&self, vocab_size: usize) -> String {
        recall_legend(&self.recall(), vocab_size)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::assert_same_distribution;
    use super::super::stats::histogram;
    use super::super::{Segment, TaskConfig, IGNORE};
    use super::*;

    /// At MAD's baseline vocabulary: keys [0, 8), values [8, 16), noise [16, 32); noise comes in
    /// whole slots without test targets, and the number of noise slots per example is
    /// Binomial(L/2 − 2, p) (one loop slot is forced to be a real pair).
    #[test]
    fn noise_slots_are_whole_unscored_and_binomial() {
        let (l, p, n) = (64usize, 0.4, 4000);
        let c = NoisyRecallConfig { seq_len: l, num_examples: n, frac_noise: p, ..Default::default() };
        c.validate(32, "t").unwrap();
        let s = TaskConfig::NoisyRecall(c.clone()).generate(32, 1);
        let mut slots = vec![];
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            let mut k = 0;
            for t in (0..l - 2).step_by(2) {
                let (a, b) = (inp[t], inp[t + 1]);
                if a >= 16 {
                    assert!(b >= 16, "noise comes in pairs");
                    assert!(tgt[t] == IGNORE && tgt[t + 1] == IGNORE, "noise is never scored");
                    k += 1;
                } else {
                    assert!(a < 8 && (8..16).contains(&b), "pair ({a}, {b})");
                }
            }
            assert!(inp[l - 2] < 8 && tgt[l - 2] != IGNORE, "the probe");
            slots.push(k);
        }
        let m = l / 2 - 2;
        let binom: Vec<f64> = (0..=m)
            .map(|k| {
                let c = (0..k).fold(1.0, |a, j| a * (m - j) as f64 / (j + 1) as f64);
                c * p.powi(k as i32) * (1.0 - p).powi((m - k) as i32)
            })
            .collect();
        super::super::stats::assert_fits(&histogram(slots, m + 1), &binom, "noise slots per example");
        // the training split scores noise like every token; fast and naive agree on the test counts
        let tr = TaskConfig::NoisyRecall(c.clone()).generate_split(32, 1, Split::Train);
        assert_eq!(tr.num_supervised(), n * (l - 1));
        let count =
            |s: &Segment| histogram((0..s.n).map(|i| s.example(i).1.iter().filter(|&&t| t != IGNORE).count()), l);
        let naive = TaskConfig::NoisyRecall(c).generate_naive(32, 1, Split::Test);
        assert_same_distribution(&count(&s), &count(&naive), "test targets per example");
    }
}
