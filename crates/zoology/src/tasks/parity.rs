//! Parity, as HazyResearch Zoology's `parity` (`zoology/data/circuits.py`, from the Based
//! rebuttal's circuit tasks).
//!
//! Tokens: 0 and 1 are bits, 2 is the end marker. An example is `L − 1` uniform random bits
//! followed by the end token; the only target is at the end position: the parity of the bits
//! (1 when the number of ones is odd). Train = test. Metric: per-example accuracy (one target
//! per example, so it equals the micro accuracy). Slice: `seq_len`. Needs `V ≥ 3`; Zoology's
//! circuit configs use V = 3.

use super::{
    check_common, fill_examples, random_bits, size_fields, FastRng, Metric, Slice, Split, Task, Token, IGNORE, SEQ_LEN,
};
use crate::error::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The end-of-bits marker of the circuit tasks.
pub(crate) const END: Token = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParityConfig {
    pub seq_len: usize,
    pub num_examples: usize,
}

impl Default for ParityConfig {
    fn default() -> Self {
        ParityConfig { seq_len: 16, num_examples: 1000 }
    }
}

/// Zoology's circuit layout: `L − 1` random bits, [`END`], and `label(bits)` as the target at
/// the end position.
pub(crate) fn bits_then_answer(
    n: usize,
    l: usize,
    seed: u64,
    label: impl Fn(&[Token]) -> Token + Sync + Send,
) -> (Vec<Token>, Vec<Token>) {
    fill_examples(
        n,
        l,
        seed,
        || (),
        |_, rng, inp, tgt| {
            random_bits(rng, &mut inp[..l - 1]);
            inp[l - 1] = END;
            tgt[l - 1] = label(&inp[..l - 1]);
        },
    )
}

/// The same, one bit per random draw, one stream.
pub(crate) fn naive_bits_then_answer(
    n: usize,
    l: usize,
    seed: u64,
    label: impl Fn(&[Token]) -> Token,
) -> (Vec<Token>, Vec<Token>) {
    let mut rng = FastRng::seed_from_u64(seed);
    let (mut inputs, mut targets) = (Vec::with_capacity(n * l), Vec::with_capacity(n * l));
    for _ in 0..n {
        let bits: Vec<Token> = (0..l - 1).map(|_| rng.gen_range(0..2)).collect();
        let y = label(&bits);
        inputs.extend(bits);
        inputs.push(END);
        targets.extend(std::iter::repeat(IGNORE).take(l - 1));
        targets.push(y);
    }
    (inputs, targets)
}

pub(crate) fn parity_of(bits: &[Token]) -> Token {
    bits.iter().sum::<Token>() % 2
}

impl Task for ParityConfig {
    const TITLE: &'static str = "Parity";
    const ABOUT: &'static str = "L−1 random bits then an end token; predict their parity";
    const SOURCE: &'static str = "HazyResearch/zoology zoology/data/circuits.py (parity)";
    const SUPERVISION: &'static str = "the end position only (target: parity of the bits); train = test";
    const SLICES: &'static [Slice] = &[SEQ_LEN];
    const DEFAULT_VOCAB: usize = 3;
    const METRIC: Metric = Metric::PerExample;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(field, self.seq_len, 2, self.num_examples, vocab_size, 3, "bits 0/1 and the end token 2")
    }
    fn generate(&self, _vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        bits_then_answer(self.num_examples, self.seq_len, seed, parity_of)
    }
    fn naive(&self, _vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        naive_bits_then_answer(self.num_examples, self.seq_len, seed, parity_of)
    }
    fn legend(&self, _vocab_size: usize) -> String {
        "0/1 = bits, 2 = end; [2→p] marks the end token, target p = parity of the bits".into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, histogram, uniform};
    use super::super::TaskConfig;
    use super::*;

    #[test]
    fn layout_label_and_uniform_bits() {
        let c = ParityConfig { seq_len: 12, num_examples: 4000 };
        c.validate(3, "t").unwrap();
        let s = TaskConfig::Parity(c).generate(3, 1);
        let mut ones = vec![0.0; 11];
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            assert!(inp[..11].iter().all(|&b| b == 0 || b == 1));
            assert_eq!(inp[11], END);
            assert!(tgt[..11].iter().all(|&t| t == IGNORE));
            let count = inp[..11].iter().filter(|&&b| b == 1).count();
            assert_eq!(tgt[11], (count % 2) as Token);
            for (p, &b) in inp[..11].iter().enumerate() {
                ones[p] += b as f64;
            }
        }
        // every bit is a fair coin; parity is balanced
        for (p, &k) in ones.iter().enumerate() {
            assert_fits(&[k, 4000.0 - k], &uniform(2), &format!("bit {p}"));
        }
        let labels = histogram((0..s.n).map(|i| s.example(i).1[11] as usize), 2);
        assert_fits(&labels, &uniform(2), "parity labels");
    }

    #[test]
    fn too_short_or_small_vocab_is_a_named_error() {
        let e = ParityConfig { seq_len: 1, num_examples: 3 }.validate(3, "data.test[1]").unwrap_err().to_string();
        assert!(e.contains("data.test[1].seq_len"), "{e}");
        let e = ParityConfig::default().validate(2, "data.test[1]").unwrap_err().to_string();
        assert!(e.contains("data.vocab_size"), "{e}");
    }
}
