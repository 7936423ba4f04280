//! Cumulative majority, as HazyResearch Zoology's `cumulative_majority`
//! (`zoology/data/circuits.py`).
//!
//! Tokens 0/1 are bits. An example is `L` uniform random bits; the target at position `t` is 1
//! when the prefix `0..=t` has **at least as many** ones as zeros (Zoology's
//! `cumsum(2·bit − 1) ≥ 0`: a tie gives 1, unlike `majority`), else 0. Train = test. Metric:
//! per-example accuracy. Slice: `seq_len`. Needs `V ≥ 2`.

use super::{
    check_common, fill_examples, random_bits, size_fields, FastRng, Metric, Slice, Split, Task, Token, SEQ_LEN,
};
use crate::error::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CumulativeMajorityConfig {
    pub seq_len: usize,
    pub num_examples: usize,
}

impl Default for CumulativeMajorityConfig {
    /// Zoology's `CumulativeMajorityConfig` defaults: 1000 examples of 16.
    fn default() -> Self {
        CumulativeMajorityConfig { seq_len: 16, num_examples: 1000 }
    }
}

impl Task for CumulativeMajorityConfig {
    const TITLE: &'static str = "Cumulative majority";
    const ABOUT: &'static str = "L random bits; at every position predict whether ones are at least half of the prefix";
    const SOURCE: &'static str = "HazyResearch/zoology zoology/data/circuits.py (cumulative_majority)";
    const SUPERVISION: &'static str = "every position (target: 1 if ones ≥ zeros in bits 0..=t); train = test";
    const SLICES: &'static [Slice] = &[SEQ_LEN];
    const DEFAULT_VOCAB: usize = 3;
    const METRIC: Metric = Metric::PerExample;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(field, self.seq_len, 1, self.num_examples, vocab_size, 2, "bits 0/1")
    }
    fn generate(&self, _vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        fill_examples(
            self.num_examples,
            self.seq_len,
            seed,
            || (),
            |_, rng, inp, tgt| {
                random_bits(rng, inp);
                let mut lead = 0;
                for (b, y) in inp.iter().zip(tgt.iter_mut()) {
                    lead += 2 * b - 1;
                    *y = (lead >= 0) as Token;
                }
            },
        )
    }
    fn naive(&self, _vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let mut rng = FastRng::seed_from_u64(seed);
        let (mut inputs, mut targets) = (vec![], vec![]);
        for _ in 0..self.num_examples {
            let bits: Vec<Token> = (0..self.seq_len).map(|_| rng.gen_range(0..2)).collect();
            for t in 0..bits.len() {
                let ones = bits[..=t].iter().filter(|&&b| b == 1).count();
                targets.push((2 * ones >= t + 1) as Token);
            }
            inputs.extend(bits);
        }
        (inputs, targets)
    }
    fn legend(&self, _vocab_size: usize) -> String {
        "0/1 = bits; [b→m] at every position, m = 1 if ones ≥ zeros in the prefix".into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::TaskConfig;
    use super::*;

    #[test]
    fn targets_are_prefix_majorities_with_ties_to_one() {
        let c = CumulativeMajorityConfig { seq_len: 10, num_examples: 500 };
        let s = TaskConfig::CumulativeMajority(c).generate(3, 4);
        let mut ties = 0;
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            for t in 0..10 {
                let ones = inp[..=t].iter().filter(|&&b| b == 1).count();
                let zeros = t + 1 - ones;
                assert_eq!(tgt[t], (ones >= zeros) as Token, "{inp:?} {tgt:?}");
                if ones == zeros {
                    ties += 1;
                    assert_eq!(tgt[t], 1);
                }
            }
        }
        assert!(ties > 100, "ties must occur and go to 1 ({ties})");
    }
}
