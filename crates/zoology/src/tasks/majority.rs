//! Majority, as HazyResearch Zoology's `majority` (`zoology/data/circuits.py`).
//!
//! Tokens: 0 and 1 are bits, 2 is the end marker. An example is `L − 1` uniform random bits
//! followed by the end token; the only target is at the end position: 1 when **strictly more
//! than half** of the bits are ones (Zoology's `num_ones / (L−1) > 0.5`; a tie gives 0), else 0.
//! Train = test. Metric: per-example accuracy. Slice: `seq_len`. Needs `V ≥ 3`, `L ≥ 2`
//! (Zoology's generator divides by zero at L = 1).

use super::parity::{bits_then_answer, naive_bits_then_answer};
use super::{check_common, size_fields, Metric, Slice, Split, Task, Token, SEQ_LEN};
use crate::error::Result;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MajorityConfig {
    pub seq_len: usize,
    pub num_examples: usize,
}

impl Default for MajorityConfig {
    fn default() -> Self {
        MajorityConfig { seq_len: 16, num_examples: 1000 }
    }
}

fn majority_of(bits: &[Token]) -> Token {
    (2 * bits.iter().filter(|&&b| b == 1).count() > bits.len()) as Token
}

impl Task for MajorityConfig {
    const TITLE: &'static str = "Majority";
    const ABOUT: &'static str = "L−1 random bits then an end token; predict whether ones are a strict majority";
    const SOURCE: &'static str = "HazyResearch/zoology zoology/data/circuits.py (majority)";
    const SUPERVISION: &'static str =
        "the end position only (target: 1 if more than half the bits are 1); train = test";
    const SLICES: &'static [Slice] = &[SEQ_LEN];
    const DEFAULT_VOCAB: usize = 3;
    const METRIC: Metric = Metric::PerExample;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(field, self.seq_len, 2, self.num_examples, vocab_size, 3, "bits 0/1 and the end token 2")
    }
    fn generate(&self, _vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        bits_then_answer(self.num_examples, self.seq_len, seed, majority_of)
    }
    fn naive(&self, _vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        naive_bits_then_answer(self.num_examples, self.seq_len, seed, majority_of)
    }
    fn legend(&self, _vocab_size: usize) -> String {
        "0/1 = bits, 2 = end; [2→m] marks the end token, target m = 1 if ones are a strict majority".into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, histogram};
    use super::super::{TaskConfig, IGNORE};
    use super::*;

    /// Ties go to 0 (11 bits cannot tie; 10 bits tie with probability C(10,5)/2^10).
    #[test]
    fn label_is_strict_majority_and_ties_give_zero() {
        assert_eq!(majority_of(&[1, 1, 0, 0]), 0);
        assert_eq!(majority_of(&[1, 1, 1, 0]), 1);
        let c = MajorityConfig { seq_len: 11, num_examples: 20_000 };
        let s = TaskConfig::Majority(c).generate(3, 2);
        let mut ones = vec![];
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            let k = inp[..10].iter().filter(|&&b| b == 1).count();
            assert_eq!(tgt[10], (k > 5) as Token);
            assert!(tgt[..10].iter().all(|&t| t == IGNORE));
            ones.push(k);
        }
        // number of ones ~ Binomial(10, 1/2)
        let binom: Vec<f64> =
            (0..=10).map(|k| (0..k).fold(1.0, |a, j| a * (10 - j) as f64 / (j + 1) as f64) / 1024.0).collect();
        assert_fits(&histogram(ones, 11), &binom, "ones per example");
    }
}
