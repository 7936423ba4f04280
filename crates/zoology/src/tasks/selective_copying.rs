//! Selective copying, as MAD's `generate_selective_copying_instance` /
//! `generate_copying_instance` (athms/mad-lab `mad/data/instances.py`,
//! `configs/tasks/selective-copying.yml`).
//!
//! Vocabulary: `V − 1` is the copy token, `V − 2` the blank, data tokens `[0, V − 2)`. An
//! example: `n = num_tokens_to_copy` data tokens drawn uniformly with replacement, with
//! `b = L − 2n − 1` blanks inserted among them (each blank before a uniformly chosen data token,
//! as `np.insert(tokens, randint(0, n, b), blank)`: so the last data token is always right
//! before the copy token), then the copy token, then `n` blanks. The targets are on those last
//! `n` positions: the data tokens in their original order; everything else −100. Without
//! `selective` the data tokens come first and all blanks after them. Train = test. Length `L`.
//!
//! MAD's baseline: V = 16, L = 256, 16 tokens to copy, 12,800 training examples; variations
//! V ∈ {32, 64, 128}, L ∈ {512, 1024}, N ∈ {6400, 3200, 1600, 800}, tokens to copy ∈
//! {32, 64, 96}. Metric: MAD's macro accuracy. Slices: `vocab_size`, `seq_len`,
//! `num_tokens_to_copy`.

use super::{
    check_common, fill_examples, size_fields, FastRng, Metric, Slice, Split, Task, Token, IGNORE, SEQ_LEN, VOCAB,
};
use crate::error::{config_err, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}
fn sixteen() -> usize {
    16
}

pub const TO_COPY: Slice = Slice { key: "num_tokens_to_copy", label: "tokens to copy", short: "copy" };

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectiveCopyingConfig {
    pub seq_len: usize,
    pub num_examples: usize,
    #[serde(default = "sixteen")]
    pub num_tokens_to_copy: usize,
    /// Blanks scattered among the data tokens (MAD's benchmark); false = plain copying.
    #[serde(default = "yes")]
    pub selective: bool,
}

impl Default for SelectiveCopyingConfig {
    /// MAD's baseline (V = 16 goes in `data.vocab_size`).
    fn default() -> Self {
        SelectiveCopyingConfig { seq_len: 256, num_examples: 12_800, num_tokens_to_copy: 16, selective: true }
    }
}

impl Task for SelectiveCopyingConfig {
    const TITLE: &'static str = "Selective copying (MAD)";
    const ABOUT: &'static str = "data tokens scattered among blanks; after the copy token, reproduce them in order";
    const SOURCE: &'static str = "athms/mad-lab mad/data/instances.py (generate_selective_copying_instance)";
    const SUPERVISION: &'static str =
        "the num_tokens_to_copy positions after the copy token (target: the data tokens in order); train = test";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN, TO_COPY];
    const ALIASES: &'static [(&'static str, &'static str)] = &[("copy", "num_tokens_to_copy")];
    const DEFAULT_VOCAB: usize = 16;
    const METRIC: Metric = Metric::MAD;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        let n = self.num_tokens_to_copy;
        if n == 0 {
            return Err(config_err(format!("{field}.num_tokens_to_copy"), "must be at least 1"));
        }
        check_common(
            field,
            self.seq_len,
            2 * n + 2,
            self.num_examples,
            vocab_size,
            3,
            "data tokens, the blank V−2 and the copy token V−1",
        )
        .map_err(|e| match e {
            crate::Error::Config { field: f, msg } if f.ends_with("seq_len") => {
                config_err(f, format!("{msg}; MAD needs seq_len > 2·num_tokens_to_copy + 1"))
            }
            other => other,
        })
    }
    fn generate(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let (l, n) = (self.seq_len, self.num_tokens_to_copy);
        let (blank, copy) = (vocab_size as Token - 2, vocab_size as Token - 1);
        let nb = l - 2 * n - 1;
        fill_examples(
            self.num_examples,
            l,
            seed,
            || vec![0usize; n],
            |before, rng, inp, tgt| {
                before.iter_mut().for_each(|c| *c = 0);
                if self.selective {
                    for _ in 0..nb {
                        before[rng.gen_range(0..n)] += 1;
                    }
                }
                let mut p = 0;
                for j in 0..n {
                    for _ in 0..before[j] {
                        inp[p] = blank;
                        p += 1;
                    }
                    let x = rng.gen_range(0..vocab_size as Token - 2);
                    inp[p] = x;
                    tgt[l - n + j] = x;
                    p += 1;
                }
                for x in inp[p..l - n - 1].iter_mut() {
                    *x = blank;
                }
                inp[l - n - 1] = copy;
                for x in inp[l - n..].iter_mut() {
                    *x = blank;
                }
            },
        )
    }
    /// MAD's steps: draw the tokens, draw the insertion indices, insert (a `Vec::insert` per
    /// blank, processing indices as `np.insert` does: in sorted order, stable).
    fn naive(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let (l, n) = (self.seq_len, self.num_tokens_to_copy);
        let (blank, copy) = (vocab_size as Token - 2, vocab_size as Token - 1);
        let nb = l - 2 * n - 1;
        let mut rng = FastRng::seed_from_u64(seed);
        let (mut inputs, mut targets) = (vec![], vec![]);
        for _ in 0..self.num_examples {
            let to_copy: Vec<Token> = (0..n).map(|_| rng.gen_range(0..vocab_size as Token - 2)).collect();
            let mut seq = to_copy.clone();
            if self.selective {
                let mut idx: Vec<usize> = (0..nb).map(|_| rng.gen_range(0..n)).collect();
                idx.sort();
                for (shift, &i) in idx.iter().enumerate() {
                    seq.insert(i + shift, blank);
                }
            } else {
                seq.extend(std::iter::repeat(blank).take(nb));
            }
            seq.push(copy);
            seq.extend(std::iter::repeat(blank).take(n));
            targets.extend(std::iter::repeat(IGNORE).take(n + nb + 1));
            targets.extend(&to_copy);
            inputs.extend(seq);
        }
        (inputs, targets)
    }
    fn legend(&self, vocab_size: usize) -> String {
        format!("data tokens in [0, {}), {} = blank, {} = copy; [x→y] marks the positions after the copy token, target y = the next data token", vocab_size - 2, vocab_size - 2, vocab_size - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, assert_same_distribution, histogram, uniform};
    use super::super::{Segment, TaskConfig};
    use super::*;

    #[test]
    fn layout_targets_and_blank_positions() {
        let c = SelectiveCopyingConfig { seq_len: 64, num_examples: 4000, num_tokens_to_copy: 8, selective: true };
        c.validate(16, "t").unwrap();
        let s = TaskConfig::SelectiveCopying(c.clone()).generate(16, 1);
        let mut gaps = vec![];
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            assert_eq!(inp[64 - 9], 15, "copy token");
            assert!(inp[64 - 8..].iter().all(|&x| x == 14), "blanks after the copy token");
            let data: Vec<Token> = inp[..55].iter().copied().filter(|&x| x != 14).collect();
            assert_eq!(data.len(), 8);
            assert!(data.iter().all(|&x| x < 14));
            assert_eq!(&tgt[56..], &data[..], "targets = data tokens in order");
            assert!(tgt[..56].iter().all(|&t| t == IGNORE));
            assert_ne!(inp[54], 14, "the last data token sits right before the copy token");
            // blanks before data token 0
            gaps.push(inp.iter().take_while(|&&x| x == 14).count());
        }
        // blanks before each data token ~ Binomial(47, 1/8): check the mean and the fast/naive match
        let mean = gaps.iter().sum::<usize>() as f64 / gaps.len() as f64;
        assert!((mean - 47.0 / 8.0).abs() < 0.15, "{mean}");
        let naive = TaskConfig::SelectiveCopying(c).generate_naive(16, 1, Split::Test);
        let lead = |s: &Segment| {
            histogram((0..s.n).map(|i| s.example(i).0.iter().take_while(|&&x| x == 14).count().min(15)), 16)
        };
        assert_same_distribution(&lead(&s), &lead(&naive), "blanks before the first data token");
        let toks = histogram(s.targets.iter().filter(|&&t| t != IGNORE).map(|&t| t as usize), 14);
        assert_fits(&toks, &uniform(14), "data tokens");
    }

    #[test]
    fn plain_copying_and_errors() {
        let c = SelectiveCopyingConfig { seq_len: 20, num_examples: 10, num_tokens_to_copy: 4, selective: false };
        let s = TaskConfig::SelectiveCopying(c).generate(8, 2);
        let (inp, tgt) = s.example(0);
        assert!(inp[..4].iter().all(|&x| x < 6) && inp[4..15].iter().all(|&x| x == 6) && inp[15] == 7);
        assert_eq!(&tgt[16..], &inp[..4]);
        let e = SelectiveCopyingConfig { seq_len: 33, ..Default::default() }.validate(16, "d").unwrap_err().to_string();
        assert!(e.contains("d.seq_len") && e.contains("2·num_tokens_to_copy"), "{e}");
    }
}
