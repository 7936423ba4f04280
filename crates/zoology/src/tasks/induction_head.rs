//! Induction head, as safari's `generate_induction_head` with its `ICLDataModule`
//! (HazyResearch/safari `src/dataloaders/synthetics.py`,
//! `configs/pipeline/induction_head.yaml`).
//!
//! Token ids as safari's sorted vocabulary: 0 is the no-op `.` (never generated here),
//! `V − 1` the trigger `=>`, ordinary tokens `1..V−1`. An example: `seq_len` ordinary tokens
//! uniform with replacement, then `=>`. With probability ½ there is 1 trigger, else
//! `num_triggers`; trigger positions are uniform in `[0, seq_len − 1 − induction_len)` (sorted;
//! one closer than `induction_len + 1` to the previous kept one is dropped). The first trigger's
//! `induction_len` following tokens are the pattern; every kept trigger position becomes `=>`
//! followed by the pattern. The pattern is appended after the final `=>`. The model sees all
//! but the last token (`seq_len + induction_len` tokens: 31 at safari's L = 30). **Training**
//! targets: the next token everywhere. **Test** targets: the last `induction_len` positions
//! (the pattern after the final `=>`). Examples are deduplicated within each segment.
//!
//! safari's setting: V = 20, L = 30, induction_len 1, 1 trigger; 5,000 training and 500 test
//! examples (`icl_synthetics` defaults). Metric: micro accuracy. Slices: `vocab_size`,
//! `seq_len`.

use super::{
    check_common, dedup_examples, examples_field, fill_examples, FastRng, Metric, Slice, Split, Task, Token, IGNORE,
    SEQ_LEN, VOCAB,
};
use crate::error::{config_err, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

fn one() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InductionHeadConfig {
    /// safari's `input_seq_len` (the example has `seq_len + induction_len` tokens).
    pub seq_len: usize,
    pub num_examples: usize,
    /// Tokens after the trigger to copy.
    #[serde(default = "one")]
    pub induction_len: usize,
    /// Triggers inserted (half of the examples get exactly 1 whatever this is).
    #[serde(default = "one")]
    pub num_triggers: usize,
}

impl Default for InductionHeadConfig {
    /// safari's induction-head pipeline (V = 20 goes in `data.vocab_size`).
    fn default() -> Self {
        InductionHeadConfig { seq_len: 30, num_examples: 5000, induction_len: 1, num_triggers: 1 }
    }
}

impl InductionHeadConfig {
    fn sequence(&self, vocab_size: usize, rng: &mut FastRng, pos: &mut Vec<usize>, seq: &mut Vec<Token>) {
        let (l, il) = (self.seq_len, self.induction_len);
        let trigger = vocab_size as Token - 1;
        seq.clear();
        seq.extend((0..l).map(|_| rng.gen_range(1..vocab_size as Token - 1)));
        seq.push(trigger);
        let nt = if rng.gen::<f64>() < 0.5 { 1 } else { self.num_triggers };
        pos.clear();
        pos.extend((0..nt).map(|_| rng.gen_range(0..l - 1 - il)));
        pos.sort_unstable();
        let mut kept = 0;
        for i in 0..pos.len() {
            if i == 0 || pos[i] - pos[kept - 1] > il {
                pos[kept] = pos[i];
                kept += 1;
            }
        }
        pos.truncate(kept);
        let first = pos[0];
        let pattern: Vec<Token> = seq[first + 1..first + 1 + il].to_vec();
        for &p in pos.iter() {
            seq[p] = trigger;
            seq[p + 1..p + 1 + il].copy_from_slice(&pattern);
        }
        seq.extend_from_slice(&pattern);
    }

    fn split_targets(&self, seq: &[Token], split: Split, inp: &mut [Token], tgt: &mut [Token]) {
        let l = seq.len() - 1;
        inp.copy_from_slice(&seq[..l]);
        tgt.copy_from_slice(&seq[1..]);
        if split == Split::Test {
            tgt[..l - self.induction_len].fill(IGNORE);
        }
    }
}

impl Task for InductionHeadConfig {
    const TITLE: &'static str = "Induction head (safari)";
    const ABOUT: &'static str =
        "random tokens with a trigger => followed by a token; after a final =>, predict that token";
    const SOURCE: &'static str = "HazyResearch/safari src/dataloaders/synthetics.py (generate_induction_head)";
    const SUPERVISION: &'static str =
        "train: every next token; test: the last induction_len positions (the token(s) after the final =>)";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN];
    const DEFAULT_VOCAB: usize = 20;
    const METRIC: Metric = Metric::Micro;

    fn seq_len(&self) -> usize {
        self.seq_len + self.induction_len
    }
    examples_field!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        if self.induction_len == 0 || self.num_triggers == 0 {
            let k = if self.induction_len == 0 { "induction_len" } else { "num_triggers" };
            return Err(config_err(format!("{field}.{k}"), "must be at least 1"));
        }
        check_common(
            field,
            self.seq_len,
            self.induction_len + 2,
            self.num_examples,
            vocab_size,
            3,
            "ordinary tokens, the no-op 0 and => (V−1)",
        )?;
        let log_seqs = (self.seq_len - self.induction_len - 1) as f64 * ((vocab_size - 2) as f64).ln();
        if log_seqs < (10.0 * self.num_examples as f64).ln() {
            return Err(config_err(format!("{field}.num_examples"), format!("{} distinct examples cannot be drawn from so few possible sequences (V={vocab_size}, seq_len={}); raise seq_len or vocab_size", self.num_examples, self.seq_len)));
        }
        Ok(())
    }
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let l = Task::seq_len(self);
        let (mut inputs, mut targets) = fill_examples(
            self.num_examples,
            l,
            seed,
            || (vec![], vec![]),
            |(pos, seq), rng, inp, tgt| {
                self.sequence(vocab_size, rng, pos, seq);
                self.split_targets(seq, split, inp, tgt);
            },
        );
        dedup_examples(l, seed, &mut inputs, &mut targets, |rng, inp, tgt| {
            let (mut pos, mut seq) = (vec![], vec![]);
            self.sequence(vocab_size, rng, &mut pos, &mut seq);
            self.split_targets(&seq, split, inp, tgt);
        });
        (inputs, targets)
    }
    /// safari's steps with lists, then a set for deduplication.
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let (l, il) = (self.seq_len, self.induction_len);
        let trigger = vocab_size as Token - 1;
        let mut rng = FastRng::seed_from_u64(seed);
        let mut seen = std::collections::HashSet::new();
        let (mut inputs, mut targets) = (vec![], vec![]);
        while seen.len() < self.num_examples {
            let mut seq: Vec<Token> = (0..l).map(|_| rng.gen_range(1..trigger)).collect();
            seq.push(trigger);
            let nt = if rng.gen::<f64>() < 0.5 { 1 } else { self.num_triggers };
            let mut pos: Vec<usize> = (0..nt).map(|_| rng.gen_range(0..l - 1 - il)).collect();
            pos.sort();
            let mut kept: Vec<usize> = vec![];
            for p in pos {
                if kept.last().map_or(true, |&q| p - q > il) {
                    kept.push(p);
                }
            }
            let to_copy: Vec<Token> = (0..il).map(|i| seq[kept[0] + 1 + i]).collect();
            for &p in &kept {
                seq[p] = trigger;
                for i in 0..il {
                    seq[p + 1 + i] = to_copy[i];
                }
            }
            seq.extend(&to_copy);
            if seen.insert(seq.clone()) {
                let n = seq.len() - 1;
                inputs.extend_from_slice(&seq[..n]);
                let mut t = seq[1..].to_vec();
                if split == Split::Test {
                    t[..n - il].fill(IGNORE);
                }
                targets.extend(t);
            }
        }
        (inputs, targets)
    }
    fn legend(&self, vocab_size: usize) -> String {
        format!(
            "tokens in [1, {}), {} = '=>'; [x→y] marks a scored position (test: after the final =>), target y",
            vocab_size - 1,
            vocab_size - 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, assert_same_distribution, histogram, uniform};
    use super::super::{Segment, TaskConfig};
    use super::*;

    #[test]
    fn trigger_pattern_and_supervision() {
        let c = InductionHeadConfig { num_examples: 3000, ..Default::default() };
        c.validate(20, "t").unwrap();
        let s = TaskConfig::InductionHead(c.clone()).generate(20, 1);
        assert_eq!(s.seq_len, 31);
        let mut trig = vec![];
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            assert_eq!(inp[30], 19, "the final trigger");
            let t: Vec<usize> = (0..30).filter(|&p| inp[p] == 19).collect();
            assert_eq!(t.len(), 1, "one trigger in the body with num_triggers = 1");
            assert!(t[0] < 28);
            assert_eq!(tgt[30], inp[t[0] + 1], "target = the token after the earlier trigger");
            assert!(tgt[..30].iter().all(|&y| y == IGNORE));
            assert!(inp.iter().all(|&x| x >= 1));
            trig.push(t[0]);
        }
        assert_fits(&histogram(trig, 28), &uniform(28), "trigger position");
        let rows: std::collections::HashSet<&[Token]> = (0..s.n).map(|i| s.example(i).0).collect();
        assert_eq!(rows.len(), s.n, "deduplicated");
    }

    /// With 3 triggers asked, half of the examples have one; the rest up to 3 (closer ones
    /// dropped); every kept trigger is followed by the pattern. Fast and naive agree on the
    /// number of triggers.
    #[test]
    fn several_triggers_and_naive_agreement() {
        let c = InductionHeadConfig { seq_len: 24, num_examples: 4000, induction_len: 2, num_triggers: 3 };
        let s = TaskConfig::InductionHead(c.clone()).generate_split(20, 2, Split::Train);
        assert_eq!(s.seq_len, 26);
        let count =
            |s: &Segment| histogram((0..s.n).map(|i| s.example(i).0[..24].iter().filter(|&&x| x == 19).count()), 4);
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            assert_eq!(&tgt[..25], &inp[1..], "train targets = next token");
            let pat = (tgt[24], tgt[25]);
            for p in (0..22).filter(|&p| inp[p] == 19) {
                assert_eq!((inp[p + 1], inp[p + 2]), pat);
            }
        }
        let a = count(&s);
        assert!(a[1] > 0.5 * s.n as f64 && a[0] == 0.0, "{a:?}");
        let naive = TaskConfig::InductionHead(c).generate_naive(20, 2, Split::Train);
        assert_same_distribution(&a, &count(&naive), "triggers per example");
    }
}
