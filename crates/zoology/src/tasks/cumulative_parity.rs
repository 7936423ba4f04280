//! Cumulative parity, as HazyResearch Zoology's `cumulative_parity`
//! (`zoology/data/circuits.py`).
//!
//! Tokens 0/1 are bits. An example is `L` uniform random bits; the target at every position `t`
//! is the parity of bits `0..=t`. Train = test. Metric: per-example accuracy (the mean over
//! examples of the fraction of positions right). Slice: `seq_len`. Needs `V ≥ 2`.
//!
//! One difference: Zoology's generator makes `input_seq_len − 1` bits for a config of
//! `input_seq_len`; ours makes exactly `seq_len` (the model's sequence length, as every task
//! here). A Zoology config with `input_seq_len = k` is ours with `seq_len = k − 1`.

use super::{
    check_common, fill_examples, random_bits, size_fields, FastRng, Metric, Slice, Split, Task, Token, SEQ_LEN,
};
use crate::error::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CumulativeParityConfig {
    pub seq_len: usize,
    pub num_examples: usize,
}

impl Default for CumulativeParityConfig {
    fn default() -> Self {
        CumulativeParityConfig { seq_len: 16, num_examples: 1000 }
    }
}

/// Running parity of a bit string.
pub(crate) fn running_parity(bits: &[Token], out: &mut [Token]) {
    let mut p = 0;
    for (b, o) in bits.iter().zip(out) {
        p ^= b;
        *o = p;
    }
}

impl Task for CumulativeParityConfig {
    const TITLE: &'static str = "Cumulative parity";
    const ABOUT: &'static str = "L random bits; at every position predict the parity of the prefix";
    const SOURCE: &'static str = "HazyResearch/zoology zoology/data/circuits.py (cumulative_parity)";
    const SUPERVISION: &'static str = "every position (target: parity of bits 0..=t); train = test";
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
                running_parity(inp, tgt);
            },
        )
    }
    fn naive(&self, _vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let mut rng = FastRng::seed_from_u64(seed);
        let (mut inputs, mut targets) = (vec![], vec![]);
        for _ in 0..self.num_examples {
            let mut cur = 0;
            for _ in 0..self.seq_len {
                let b: Token = rng.gen_range(0..2);
                cur = (cur + b) % 2;
                inputs.push(b);
                targets.push(cur);
            }
        }
        (inputs, targets)
    }
    fn legend(&self, _vocab_size: usize) -> String {
        "0/1 = bits; [b→p] at every position, p = parity of the prefix".into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::TaskConfig;
    use super::*;

    #[test]
    fn every_position_carries_the_prefix_parity() {
        let c = CumulativeParityConfig { seq_len: 9, num_examples: 500 };
        let s = TaskConfig::CumulativeParity(c).generate(3, 4);
        assert_eq!(s.num_supervised(), 9 * 500);
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            for t in 0..9 {
                assert_eq!(tgt[t], inp[..=t].iter().sum::<Token>() % 2);
            }
        }
        let ones = s.inputs.iter().filter(|&&b| b == 1).count() as f64 / s.inputs.len() as f64;
        assert!((ones - 0.5).abs() < 0.02, "{ones}");
    }
}
