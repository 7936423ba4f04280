//! Vocabulary majority, as HazyResearch Zoology's `vocab_majority` (`zoology/data/circuits.py`).
//!
//! Token 0 is the end marker. An example is `L − 1` tokens uniform in `[1, V)` followed by the
//! end token; the only target is at the end position: the most frequent token. Ties are broken
//! as Zoology does: the tied token with the smallest id wins, and the first position holding a
//! token other than the winner is overwritten with the winner, so the answer is a strict mode
//! of the input as shown. Train = test. Metric: per-example accuracy. Slices: `vocab_size`
//! (Zoology's), `seq_len`. No published config fixes V; `zoology data` uses 16.

use super::{
    check_common, fill_examples, size_fields, FastRng, Metric, Slice, Split, Task, Token, IGNORE, SEQ_LEN, VOCAB,
};
use crate::error::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocabMajorityConfig {
    pub seq_len: usize,
    pub num_examples: usize,
}

impl Default for VocabMajorityConfig {
    fn default() -> Self {
        VocabMajorityConfig { seq_len: 16, num_examples: 1000 }
    }
}

/// Makes the mode of `seq` unique (Zoology's rule) and returns it; `counts` is scratch of
/// length ≥ V, left zeroed.
fn settle_mode(seq: &mut [Token], counts: &mut [u32]) -> Token {
    let mut best = (0u32, Token::MAX);
    for &x in seq.iter() {
        counts[x as usize] += 1;
    }
    let mut ties = 0;
    for &x in seq.iter() {
        let c = counts[x as usize];
        if c > best.0 || (c == best.0 && x < best.1) {
            best = (c, x);
        }
    }
    for &x in seq.iter() {
        if counts[x as usize] == best.0 {
            ties += 1; // counts every occurrence of every tied token
        }
    }
    for &x in seq.iter() {
        counts[x as usize] = 0;
    }
    if ties > best.0 as usize {
        if let Some(p) = seq.iter().position(|&x| x != best.1) {
            seq[p] = best.1;
        }
    }
    best.1
}

impl Task for VocabMajorityConfig {
    const TITLE: &'static str = "Vocabulary majority";
    const ABOUT: &'static str =
        "L−1 tokens from the whole vocabulary then an end token; predict the most frequent token";
    const SOURCE: &'static str = "HazyResearch/zoology zoology/data/circuits.py (vocab_majority)";
    const SUPERVISION: &'static str = "the end position only (target: the unique most frequent token); train = test";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN];
    const DEFAULT_VOCAB: usize = 16;
    const METRIC: Metric = Metric::PerExample;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(field, self.seq_len, 2, self.num_examples, vocab_size, 2, "tokens [1, V) and the end token 0")
    }
    fn generate(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let l = self.seq_len;
        fill_examples(
            self.num_examples,
            l,
            seed,
            || vec![0u32; vocab_size],
            |counts, rng, inp, tgt| {
                for x in inp[..l - 1].iter_mut() {
                    *x = rng.gen_range(1..vocab_size as Token);
                }
                tgt[l - 1] = settle_mode(&mut inp[..l - 1], counts);
                inp[l - 1] = 0;
            },
        )
    }
    /// Zoology's steps: a counter in first-appearance order, the smallest tied key, the first
    /// other key's first occurrence overwritten.
    fn naive(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let l = self.seq_len;
        let mut rng = FastRng::seed_from_u64(seed);
        let (mut inputs, mut targets) = (vec![], vec![]);
        for _ in 0..self.num_examples {
            let mut seq: Vec<Token> = (0..l - 1).map(|_| rng.gen_range(1..vocab_size as Token)).collect();
            let mut order: Vec<Token> = vec![];
            let mut counter: HashMap<Token, usize> = HashMap::new();
            for &x in &seq {
                if !counter.contains_key(&x) {
                    order.push(x);
                }
                *counter.entry(x).or_default() += 1;
            }
            let max = *counter.values().max().unwrap();
            let tied: Vec<Token> = order.iter().copied().filter(|k| counter[k] == max).collect();
            let most = *tied.iter().min().unwrap();
            if tied.len() > 1 {
                let other = *order.iter().find(|&&k| k != most).unwrap();
                let idx = seq.iter().position(|&x| x == other).unwrap();
                seq[idx] = most;
            }
            inputs.extend(seq);
            inputs.push(0);
            targets.extend(std::iter::repeat(IGNORE).take(l - 1));
            targets.push(most);
        }
        (inputs, targets)
    }
    fn legend(&self, vocab_size: usize) -> String {
        format!("tokens in [1, {vocab_size}), 0 = end; [0→m] marks the end token, target m = the most frequent token")
    }
}

#[cfg(test)]
mod tests {
    use super::super::TaskConfig;
    use super::*;

    #[test]
    fn answer_is_the_strict_mode_and_matches_the_naive_rule() {
        for v in [3, 8, 64] {
            let c = VocabMajorityConfig { seq_len: 12, num_examples: 3000 };
            let s = TaskConfig::VocabMajority(c.clone()).generate(v, 3);
            for i in 0..s.n {
                let (inp, tgt) = s.example(i);
                assert_eq!(inp[11], 0);
                let mut counts = vec![0; v];
                for &x in &inp[..11] {
                    assert!(x >= 1 && (x as usize) < v);
                    counts[x as usize] += 1;
                }
                let m = tgt[11] as usize;
                assert!(
                    counts.iter().enumerate().all(|(k, &c)| k == m || c < counts[m]),
                    "V={v}: {inp:?} → {m} is not a strict mode"
                );
            }
            // the fast tie rule equals Zoology's counter rule on the same inputs
            let mut rng = FastRng::seed_from_u64(v as u64);
            let mut counts = vec![0; v];
            for _ in 0..2000 {
                let raw: Vec<Token> = (0..11).map(|_| rng.gen_range(1..v as Token)).collect();
                let mut a = raw.clone();
                let m = settle_mode(&mut a, &mut counts);
                let mut order = vec![];
                for &x in &raw {
                    if !order.contains(&x) {
                        order.push(x);
                    }
                }
                let cnt = |k: Token| raw.iter().filter(|&&x| x == k).count();
                let max = order.iter().map(|&k| cnt(k)).max().unwrap();
                let tied: Vec<Token> = order.iter().copied().filter(|&k| cnt(k) == max).collect();
                let most = *tied.iter().min().unwrap();
                let mut b = raw.clone();
                if tied.len() > 1 {
                    let other = *order.iter().find(|&&k| k != most).unwrap();
                    let idx = raw.iter().position(|&x| x == other).unwrap();
                    b[idx] = most;
                }
                assert_eq!((m, &a), (most, &b), "{raw:?}");
            }
        }
    }
}
