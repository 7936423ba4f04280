//! Single-query associative recall, as safari's `generate_assoc_recall` with its
//! `ICLDataModule` (HazyResearch/safari `src/dataloaders/synthetics.py`,
//! `configs/dataset/icl_synthetics.yaml`, `configs/experiment/synthetics/associative_recall/`).
//!
//! Token ids follow safari's vocabulary (its string tokens sorted, which puts `.` first and
//! `=>` last): 0 is the no-op `.`, `V − 1` is the copy prefix `=>`, and the `V − 2` ordinary
//! tokens `1..V−1` split into keys `[1, 1 + K)`, `K = ⌊(V−2)/2⌋`, and values `[1 + K, V − 1)`.
//! A key is a tuple of `num_keys` key tokens (safari's default 1). Per example a fresh map
//! gives every possible key a value drawn uniformly **with replacement** (values may repeat);
//! then `⌊seq_len/(num_keys+1)⌋` pairs `key… value` with keys drawn uniformly with replacement,
//! then `=>`, a query key and its value. The query key is uniform over all keys; unless
//! `allow_dot`, a key that was not in the context is redrawn uniformly among those that were
//! (safari's loop); with `allow_dot` such a query's answer is the no-op `.`.
//!
//! The model sees the sequence without its last token (`seq_len + num_keys + 1` tokens when
//! `num_keys + 1` divides `seq_len`: 42 at safari's L = 40). **Training** targets: the next
//! token everywhere (safari's full LM loss). **Test** targets: the last position only (the
//! value). Examples are deduplicated within each segment, as safari's `torch.unique`.
//!
//! safari's setting: V = 20, L = 40, 5,000 training and 500 test examples (model: 2 layers,
//! d = 32, lr 5e-4, wd 0.1, 400 epochs, batch 32). Metric: micro accuracy
//! (`accuracy_ignore_index`), which with one target per example is the fraction of examples
//! right. Slices: `vocab_size`, `seq_len`.

use super::{
    check_common, dedup_examples, examples_field, fill_examples, FastRng, Metric, Slice, Split, Task, Token, IGNORE,
    SEQ_LEN, VOCAB,
};
use crate::error::{config_err, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

fn one() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociativeRecallConfig {
    /// safari's `input_seq_len` (the example has `seq_len + num_keys + 1` tokens when
    /// `num_keys + 1` divides it).
    pub seq_len: usize,
    pub num_examples: usize,
    /// Tokens per key.
    #[serde(default = "one")]
    pub num_keys: usize,
    /// Let the query key be absent from the context (answer: the no-op token 0).
    #[serde(default)]
    pub allow_dot: bool,
}

impl Default for AssociativeRecallConfig {
    /// safari's `icl_synthetics` defaults (V = 20 goes in `data.vocab_size`).
    fn default() -> Self {
        AssociativeRecallConfig { seq_len: 40, num_examples: 5000, num_keys: 1, allow_dot: false }
    }
}

impl AssociativeRecallConfig {
    fn pairs(&self) -> usize {
        self.seq_len / (self.num_keys + 1)
    }
    /// Number of distinct keys: `K^num_keys`.
    fn key_space(&self, vocab_size: usize) -> usize {
        ((vocab_size - 2) / 2).pow(self.num_keys as u32)
    }

    /// One full sequence (before the shift) into `seq`; `vals` holds the per-key map.
    fn sequence(
        &self,
        vocab_size: usize,
        rng: &mut FastRng,
        vals: &mut Vec<Token>,
        present: &mut Vec<bool>,
        seq: &mut Vec<Token>,
    ) {
        let k = (vocab_size - 2) / 2;
        let nk = self.num_keys;
        let space = self.key_space(vocab_size);
        vals.clear();
        vals.extend((0..space).map(|_| rng.gen_range(1 + k..vocab_size - 1) as Token));
        present.clear();
        present.resize(space, false);
        seq.clear();
        let push_key = |seq: &mut Vec<Token>, mut code: usize| {
            let start = seq.len();
            for _ in 0..nk {
                seq.push(1 + (code % k) as Token);
                code /= k;
            }
            seq[start..].reverse();
        };
        for _ in 0..self.pairs() {
            let code = rng.gen_range(0..space);
            push_key(seq, code);
            seq.push(vals[code]);
            present[code] = true;
        }
        let mut q = rng.gen_range(0..space);
        if !self.allow_dot && !present[q] {
            // safari redraws among the keys present (uniformly, by position in its dict)
            let n_present = present.iter().filter(|&&p| p).count();
            let r = rng.gen_range(0..n_present);
            q = present.iter().enumerate().filter(|(_, &p)| p).nth(r).unwrap().0;
        }
        seq.push(vocab_size as Token - 1);
        push_key(seq, q);
        seq.push(if present[q] { vals[q] } else { 0 });
    }

    fn split_targets(seq: &[Token], split: Split, inp: &mut [Token], tgt: &mut [Token]) {
        let l = seq.len() - 1;
        inp.copy_from_slice(&seq[..l]);
        match split {
            Split::Train => tgt.copy_from_slice(&seq[1..]),
            Split::Test => {
                tgt.fill(IGNORE);
                tgt[l - 1] = seq[l];
            }
        }
    }
}

impl Task for AssociativeRecallConfig {
    const TITLE: &'static str = "Associative recall (safari)";
    const ABOUT: &'static str = "key-value pairs (keys with replacement), then => and a key: predict its value";
    const SOURCE: &'static str = "HazyResearch/safari src/dataloaders/synthetics.py (generate_assoc_recall)";
    const SUPERVISION: &'static str = "train: every next token; test: the last position only (the queried value)";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN];
    const DEFAULT_VOCAB: usize = 20;
    const METRIC: Metric = Metric::Micro;

    fn seq_len(&self) -> usize {
        self.pairs() * (self.num_keys + 1) + self.num_keys + 1
    }
    examples_field!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(
            field,
            self.seq_len,
            self.num_keys + 1,
            self.num_examples,
            vocab_size,
            4,
            "a key, a value, the no-op 0 and => (V−1)",
        )?;
        if self.num_keys == 0 {
            return Err(config_err(format!("{field}.num_keys"), "must be at least 1"));
        }
        let k = ((vocab_size - 2) / 2) as f64;
        if k.powi(self.num_keys as i32) > 1e6 {
            return Err(config_err(
                format!("{field}.num_keys"),
                format!("{} key tokens ^ {} keys is over 10⁶ possible keys; lower num_keys", k, self.num_keys),
            ));
        }
        // deduplication needs many more possible sequences than examples
        let kv = (vocab_size - 2 - (vocab_size - 2) / 2) as f64;
        let log_seqs = self.pairs() as f64 * (self.num_keys as f64 * k.ln() + kv.ln());
        if log_seqs < (10.0 * self.num_examples as f64).ln() {
            return Err(config_err(format!("{field}.num_examples"), format!("{} distinct examples cannot be drawn from so few possible sequences (V={vocab_size}, seq_len={}); raise seq_len or vocab_size", self.num_examples, self.seq_len)));
        }
        Ok(())
    }
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let draw = |rng: &mut FastRng, inp: &mut [Token], tgt: &mut [Token]| {
            let (mut vals, mut present, mut seq) = (vec![], vec![], vec![]);
            self.sequence(vocab_size, rng, &mut vals, &mut present, &mut seq);
            Self::split_targets(&seq, split, inp, tgt);
        };
        let l = Task::seq_len(self);
        let (mut inputs, mut targets) = fill_examples(
            self.num_examples,
            l,
            seed,
            || (vec![], vec![], vec![]),
            |(vals, present, seq), rng, inp, tgt| {
                self.sequence(vocab_size, rng, vals, present, seq);
                Self::split_targets(seq, split, inp, tgt);
            },
        );
        dedup_examples(l, seed, &mut inputs, &mut targets, draw);
        (inputs, targets)
    }
    /// safari's steps: a dict from key tuples to values, a list of pairs, a dict of present
    /// keys, a redraw loop; then the full sequence is deduplicated with a set.
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let k = (vocab_size - 2) / 2;
        let keys: Vec<Token> = (1..=k as Token).collect();
        let values: Vec<Token> = (1 + k as Token..vocab_size as Token - 1).collect();
        let mut tuples: Vec<Vec<Token>> = keys.iter().map(|&x| vec![x]).collect();
        for _ in 1..self.num_keys {
            tuples = tuples.iter().flat_map(|t| keys.iter().map(move |&x| [t.clone(), vec![x]].concat())).collect();
        }
        let mut rng = FastRng::seed_from_u64(seed);
        let mut seen = std::collections::HashSet::new();
        let (mut inputs, mut targets) = (vec![], vec![]);
        while seen.len() < self.num_examples {
            let kv_map: HashMap<Vec<Token>, Token> =
                tuples.iter().map(|t| (t.clone(), values[rng.gen_range(0..values.len())])).collect();
            let mut present: Vec<Vec<Token>> = vec![];
            let mut seq = vec![];
            for _ in 0..self.pairs() {
                let key = tuples[rng.gen_range(0..tuples.len())].clone();
                seq.extend(&key);
                seq.push(kv_map[&key]);
                if !present.contains(&key) {
                    present.push(key);
                }
            }
            let mut q = tuples[rng.gen_range(0..tuples.len())].clone();
            if !self.allow_dot {
                while !present.contains(&q) {
                    q = present[rng.gen_range(0..present.len())].clone();
                }
            }
            seq.push(vocab_size as Token - 1);
            seq.extend(&q);
            seq.push(if present.contains(&q) { kv_map[&q] } else { 0 });
            if seen.insert(seq.clone()) {
                let l = seq.len() - 1;
                inputs.extend_from_slice(&seq[..l]);
                if split == Split::Train {
                    targets.extend_from_slice(&seq[1..]);
                } else {
                    targets.extend(std::iter::repeat(IGNORE).take(l - 1));
                    targets.push(seq[l]);
                }
            }
        }
        (inputs, targets)
    }
    fn legend(&self, vocab_size: usize) -> String {
        let k = (vocab_size - 2) / 2;
        format!("keys in [1, {}), values in [{}, {}), 0 = no-op '.', {} = '=>'; [k→v] marks the scored position (test: the last), target v", 1 + k, 1 + k, vocab_size - 1, vocab_size - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, assert_same_distribution, histogram, uniform};
    use super::super::{Segment, TaskConfig};
    use super::*;

    fn seg(c: &AssociativeRecallConfig, v: usize, seed: u64, split: Split) -> Segment {
        c.validate(v, "t").unwrap();
        TaskConfig::AssociativeRecall(c.clone()).generate_split(v, seed, split)
    }

    #[test]
    fn layout_query_and_last_token_supervision() {
        let c = AssociativeRecallConfig { num_examples: 2000, ..Default::default() };
        let s = seg(&c, 20, 1, Split::Test);
        assert_eq!(s.seq_len, 42);
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            let mut map = HashMap::new();
            for j in 0..20 {
                let (k, v) = (inp[2 * j], inp[2 * j + 1]);
                assert!((1..10).contains(&k) && (10..19).contains(&v), "({k}, {v})");
                assert_eq!(*map.entry(k).or_insert(v), v, "one value per key within a sequence");
            }
            assert_eq!(inp[40], 19, "=> before the query");
            assert_eq!(tgt.iter().filter(|&&t| t != IGNORE).count(), 1);
            assert_eq!(Some(&tgt[41]), map.get(&inp[41]), "the target is the queried key's value");
        }
        // training: the same sequences, next-token targets
        let tr = seg(&c, 20, 1, Split::Train);
        assert_eq!(tr.inputs, s.inputs);
        for i in 0..tr.n {
            assert_eq!(&tr.example(i).1[..41], &tr.example(i).0[1..]);
        }
    }

    /// Examples are distinct (safari deduplicates); the query key is uniform over keys; with
    /// allow_dot an absent key's answer is the no-op; fast and naive agree on where in the
    /// context the queried key first appears.
    #[test]
    fn dedup_query_distribution_and_allow_dot() {
        let c = AssociativeRecallConfig { seq_len: 8, num_examples: 3000, ..Default::default() };
        let s = seg(&c, 10, 2, Split::Test); // 4 keys × 4 values, 4 pairs: duplicates are common before dedup
        let rows: std::collections::HashSet<(Vec<Token>, Token)> =
            (0..s.n).map(|i| (s.example(i).0.to_vec(), s.example(i).1[9])).collect();
        assert_eq!(rows.len(), s.n, "examples must be distinct");
        let q = histogram((0..s.n).map(|i| s.example(i).0[9] as usize - 1), 4);
        assert_fits(&q, &uniform(4), "query key");
        let first = |s: &Segment| {
            histogram((0..s.n).map(|i| (0..4).find(|&j| s.example(i).0[2 * j] == s.example(i).0[9]).unwrap()), 4)
        };
        let naive = TaskConfig::AssociativeRecall(c.clone()).generate_naive(10, 2, Split::Test);
        assert_same_distribution(&first(&s), &first(&naive), "first position of the queried key");
        let d = AssociativeRecallConfig { seq_len: 4, num_examples: 200, allow_dot: true, num_keys: 1 };
        let s = TaskConfig::AssociativeRecall(d).generate(40, 3);
        let dots = (0..s.n).filter(|&i| s.example(i).1[5] == 0).count();
        assert!(dots > 100, "with 2 pairs of 19 keys most queries are absent: {dots}");
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            let present = inp[0] == inp[5] || inp[2] == inp[5];
            assert_eq!(tgt[5] == 0, !present);
        }
    }

    #[test]
    fn two_token_keys_and_errors() {
        let c = AssociativeRecallConfig { seq_len: 30, num_examples: 100, num_keys: 2, allow_dot: false };
        let s = seg(&c, 20, 4, Split::Test);
        assert_eq!(s.seq_len, 33);
        let (inp, tgt) = s.example(0);
        assert_eq!(inp[30], 19);
        let key = (inp[31], inp[32]);
        let j = (0..10).find(|&j| (inp[3 * j], inp[3 * j + 1]) == key).expect("the query key was presented");
        assert_eq!(tgt[32], inp[3 * j + 2]);
        let e = AssociativeRecallConfig { num_examples: 100_000, seq_len: 4, ..Default::default() }
            .validate(6, "d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.num_examples"), "{e}");
    }
}
