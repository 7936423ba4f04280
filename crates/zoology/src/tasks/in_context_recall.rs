//! In-context recall, as MAD's `generate_in_context_recall_instance`
//! (athms/mad-lab `mad/data/instances.py`; baseline and variations in
//! `configs/tasks/in-context-recall.yml`).
//!
//! Vocabulary `V`: with `multi_query` (MAD's benchmark setting) the non-special tokens are
//! `[0, V − noise_vocab_size)`, else the last token `V − 1` is a copy prefix and they are
//! `[0, V − 1 − noise_vocab_size)`; keys are the first half `[0, ⌊ns/2⌋)`, values the rest, and
//! noise tokens follow them. An example is built as `seq_len/2` two-token slots:
//! - the first `seq_len/2 − 1` slots are each, with probability `frac_noise`, two uniform noise
//!   tokens (target −100), else a key drawn **uniformly with replacement** and its value: the
//!   first time a key appears its value is drawn uniformly from the value half (values may
//!   repeat across keys), later appearances reuse it (the map is fixed within a sequence,
//!   fresh per sequence);
//! - the last slot is the probe: a uniformly drawn key among those already presented, and its
//!   value (without `multi_query`, preceded by the copy prefix).
//!
//! The sequence (length `seq_len`, or `seq_len + 1` with the copy prefix) is shifted: inputs are
//! all tokens but the last. **Training** targets are the next token at every position (MAD
//! returns `inputs[1:]`). **Test** targets are, with `multi_query`, the value after every key
//! that was presented before (at the key's position), and always the probe's value; everything
//! else is −100. So with `multi_query` an example has `seq_len − 1` tokens (127 at MAD's
//! baseline L = 128).
//!
//! MAD's baseline: V = 16, L = 128, 12,800 training examples, `multi_query = true`, no noise;
//! variations V ∈ {32, 64, 128}, L ∈ {256, 512, 1024}, N ∈ {6400, 3200, 1600, 800}. Metric:
//! MAD's macro accuracy (`Metric::MAD`). Slices: `vocab_size`, `seq_len`.
//!
//! One difference, for noisy settings only: MAD forces one slot to be a real pair, drawn among
//! all `seq_len/2` slots including the probe slot, where forcing does nothing; when every other
//! slot turned to noise MAD's generator then fails (no key to probe). We draw the forced slot
//! among the `seq_len/2 − 1` slots that can be noise, so an example always has a key to probe.

use super::{
    check_common, examples_field, fill_examples, FastRng, Metric, Slice, Split, Task, Token, IGNORE, SEQ_LEN, VOCAB,
};
use crate::error::{config_err, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InContextRecallConfig {
    /// MAD's `seq_len` (the example has `seq_len − 1` tokens with `multi_query`, `seq_len`
    /// without).
    pub seq_len: usize,
    pub num_examples: usize,
    /// Probe the value of every repeated key (MAD's benchmark), not only the final one.
    #[serde(default = "yes")]
    pub multi_query: bool,
    /// Tokens reserved for noise, taken from the top of the vocabulary.
    #[serde(default)]
    pub noise_vocab_size: usize,
    /// Probability that a slot is noise instead of a key-value pair.
    #[serde(default)]
    pub frac_noise: f64,
}

impl Default for InContextRecallConfig {
    /// MAD's baseline (V = 16 goes in `data.vocab_size`).
    fn default() -> Self {
        InContextRecallConfig {
            seq_len: 128,
            num_examples: 12_800,
            multi_query: true,
            noise_vocab_size: 0,
            frac_noise: 0.0,
        }
    }
}

/// Token ranges of one config at one vocabulary size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Keys `[0, keys)`, values `[keys, values)`, noise `[values, values + noise)`.
    keys: usize,
    values: usize,
    noise: usize,
    copy: Token,
}

impl InContextRecallConfig {
    pub(crate) fn layout(&self, vocab_size: usize) -> Layout {
        let ns = vocab_size.saturating_sub(if self.multi_query { 0 } else { 1 }).saturating_sub(self.noise_vocab_size);
        Layout { keys: ns / 2, values: ns, noise: self.noise_vocab_size, copy: vocab_size as Token - 1 }
    }

    /// Length of the raw (unshifted) sequence.
    fn raw_len(&self) -> usize {
        self.seq_len + if self.multi_query { 0 } else { 1 }
    }

    pub(crate) fn check(&self, vocab_size: usize, field: &str) -> Result<()> {
        let f = |k: &str| format!("{field}.{k}");
        check_common(field, self.seq_len, 4, self.num_examples, vocab_size, 2, "keys and values")?;
        if self.seq_len % 2 != 0 {
            return Err(config_err(
                f("seq_len"),
                format!("must be even: key-value slots are two tokens (got {})", self.seq_len),
            ));
        }
        if !(0.0..1.0).contains(&self.frac_noise) {
            return Err(config_err(f("frac_noise"), format!("must be in [0, 1) (got {})", self.frac_noise)));
        }
        if self.frac_noise > 0.0 && self.noise_vocab_size == 0 {
            return Err(config_err(f("noise_vocab_size"), "must be > 0 when frac_noise > 0"));
        }
        let lay = self.layout(vocab_size);
        if lay.keys < 1 || lay.values - lay.keys < 1 {
            return Err(config_err(
                "data.vocab_size",
                format!(
                    "{vocab_size} leaves {} non-special tokens after {} noise tokens{}; keys and values need at least 2 (raise vocab_size or lower noise_vocab_size)",
                    lay.values,
                    self.noise_vocab_size,
                    if self.multi_query { "" } else { " and the copy prefix" }
                ),
            ));
        }
        Ok(())
    }

    /// One example into `inp`/`tgt` (length `seq_len()`), drawing only from `rng`.
    pub(crate) fn fill_one(
        &self,
        lay: Layout,
        split: Split,
        s: &mut Scratch,
        rng: &mut FastRng,
        inp: &mut [Token],
        tgt: &mut [Token],
    ) {
        let pairs = self.seq_len / 2;
        s.seq.clear();
        s.lab.clear();
        s.value.clear();
        s.value.resize(lay.keys, -1);
        s.order.clear();
        let forced = rng.gen_range(0..pairs - 1);
        for i in 0..pairs - 1 {
            if self.frac_noise > 0.0 && i != forced && rng.gen::<f64>() < self.frac_noise {
                for _ in 0..2 {
                    s.seq.push(rng.gen_range(lay.values..lay.values + lay.noise) as Token);
                    s.lab.push(IGNORE);
                }
                continue;
            }
            let k = rng.gen_range(0..lay.keys);
            let seen = s.value[k] >= 0;
            if !seen {
                s.value[k] = rng.gen_range(lay.keys..lay.values) as Token;
                s.order.push(k as Token);
            }
            let v = s.value[k];
            s.seq.extend_from_slice(&[k as Token, v]);
            s.lab.extend_from_slice(&[IGNORE, if seen && self.multi_query { v } else { IGNORE }]);
        }
        let k = s.order[rng.gen_range(0..s.order.len())];
        let v = s.value[k as usize];
        if !self.multi_query {
            s.seq.push(lay.copy);
            s.lab.push(IGNORE);
        }
        s.seq.extend_from_slice(&[k, v]);
        s.lab.extend_from_slice(&[IGNORE, v]);
        shift_into(&s.seq, &s.lab, split, inp, tgt);
    }
}

/// MAD's shift: inputs are `seq[..−1]`; training targets `seq[1..]`, test targets `lab[1..]`.
pub(crate) fn shift_into(seq: &[Token], lab: &[Token], split: Split, inp: &mut [Token], tgt: &mut [Token]) {
    let n = seq.len() - 1;
    inp.copy_from_slice(&seq[..n]);
    tgt.copy_from_slice(match split {
        Split::Train => &seq[1..],
        Split::Test => &lab[1..],
    });
}

/// Per-thread buffers of the recall generators.
#[derive(Default)]
pub(crate) struct Scratch {
    seq: Vec<Token>,
    lab: Vec<Token>,
    /// Value bound to each key in this sequence, −1 when not yet presented.
    value: Vec<Token>,
    /// Keys in order of first presentation.
    order: Vec<Token>,
}

/// MAD's loop, literally: Python-style lists, a dict for the map and one for the presented keys.
pub(crate) fn naive_recall(
    c: &InContextRecallConfig,
    vocab_size: usize,
    seed: u64,
    split: Split,
) -> (Vec<Token>, Vec<Token>) {
    let lay = c.layout(vocab_size);
    let mut rng = FastRng::seed_from_u64(seed);
    let (mut inputs, mut targets) = (vec![], vec![]);
    let pairs = c.seq_len / 2;
    for _ in 0..c.num_examples {
        let mut kv_map: HashMap<Token, Token> = HashMap::new();
        let mut presented: Vec<Token> = vec![];
        let (mut seq, mut lab): (Vec<Token>, Vec<Token>) = (vec![], vec![]);
        let not_noise = rng.gen_range(0..pairs - 1);
        for i in 0..pairs - 1 {
            let is_noise = if i != not_noise && c.frac_noise > 0.0 { rng.gen::<f64>() < c.frac_noise } else { false };
            if is_noise {
                let a = rng.gen_range(lay.values..lay.values + lay.noise) as Token;
                let b = rng.gen_range(lay.values..lay.values + lay.noise) as Token;
                seq.extend([a, b]);
                lab.extend([IGNORE, IGNORE]);
            } else {
                let k = rng.gen_range(0..lay.keys) as Token;
                let v = match kv_map.get(&k) {
                    Some(&v) => v,
                    None => {
                        let v = rng.gen_range(lay.keys..lay.values) as Token;
                        kv_map.insert(k, v);
                        v
                    }
                };
                seq.extend([k, v]);
                lab.push(IGNORE);
                lab.push(if presented.contains(&k) && c.multi_query { v } else { IGNORE });
                if !presented.contains(&k) {
                    presented.push(k);
                }
            }
        }
        let k = presented[rng.gen_range(0..presented.len())];
        if !c.multi_query {
            seq.push(lay.copy);
            lab.push(IGNORE);
        }
        seq.extend([k, kv_map[&k]]);
        lab.extend([IGNORE, kv_map[&k]]);
        inputs.extend_from_slice(&seq[..seq.len() - 1]);
        targets.extend_from_slice(if split == Split::Train { &seq[1..] } else { &lab[1..] });
    }
    (inputs, targets)
}

pub(crate) fn recall_legend(c: &InContextRecallConfig, vocab_size: usize) -> String {
    let lay = c.layout(vocab_size);
    let mut s = format!("keys in [0, {}), values in [{}, {})", lay.keys, lay.keys, lay.values);
    if lay.noise > 0 {
        s.push_str(&format!(", noise in [{}, {})", lay.values, lay.values + lay.noise));
    }
    if !c.multi_query {
        s.push_str(&format!(", {} = copy prefix", lay.copy));
    }
    s.push_str("; [x→y] marks a supervised position with target y (test: the value after a repeated key)");
    s
}

impl Task for InContextRecallConfig {
    const TITLE: &'static str = "In-context recall (MAD)";
    const ABOUT: &'static str =
        "key-value pairs with keys repeating (drawn with replacement); recall each repeated key's value";
    const SOURCE: &'static str = "athms/mad-lab mad/data/instances.py (generate_in_context_recall_instance)";
    const SUPERVISION: &'static str =
        "train: every next token; test: the value after each key presented before, and the final probe's value";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN];
    const DEFAULT_VOCAB: usize = 16;
    const METRIC: Metric = Metric::MAD;

    fn seq_len(&self) -> usize {
        self.raw_len() - 1
    }
    examples_field!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        self.check(vocab_size, field)
    }
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let lay = self.layout(vocab_size);
        fill_examples(self.num_examples, Task::seq_len(self), seed, Scratch::default, |s, rng, inp, tgt| {
            self.fill_one(lay, split, s, rng, inp, tgt)
        })
    }
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        naive_recall(self, vocab_size, seed, split)
    }
    fn legend(&self, vocab_size: usize) -> String {
        recall_legend(self, vocab_size)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::stats::{assert_fits, assert_same_distribution, histogram, uniform};
    use super::super::{Segment, TaskConfig};
    use super::*;

    pub(crate) fn seg(c: &InContextRecallConfig, v: usize, seed: u64, split: Split) -> Segment {
        c.check(v, "t").unwrap();
        TaskConfig::InContextRecall(c.clone()).generate_split(v, seed, split)
    }

    /// Checks one multi-query example without noise: key/value alternation, a consistent map,
    /// test targets exactly after repeated keys and at the probe. Returns the number of targets.
    fn check_example(inp: &[Token], tgt: &[Token], keys: Token, values: Token) -> usize {
        let l = inp.len();
        let mut map: HashMap<Token, Token> = HashMap::new();
        let mut n = 0;
        for t in (0..l).step_by(2) {
            let k = inp[t];
            assert!((0..keys).contains(&k), "key {k} at {t}");
            let seen = map.contains_key(&k);
            if t + 1 < l {
                let v = inp[t + 1];
                assert!((keys..values).contains(&v), "value {v}");
                assert_eq!(*map.entry(k).or_insert(v), v, "the map changed within a sequence");
                assert_eq!(tgt[t + 1], IGNORE, "values carry no test target");
            }
            if seen {
                assert_eq!(tgt[t], map[&k], "a repeated key's target is its value");
                n += 1;
            } else {
                assert_eq!(tgt[t], IGNORE, "a new key has no target");
            }
        }
        assert_ne!(tgt[l - 1], IGNORE, "the probe (last input) is always scored");
        n
    }

    #[test]
    fn layout_and_test_supervision() {
        let c = InContextRecallConfig { num_examples: 500, ..Default::default() };
        let s = seg(&c, 16, 1, Split::Test);
        assert_eq!(s.seq_len, 127);
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            check_example(inp, tgt, 8, 16);
        }
        // training targets are the next token everywhere, the same inputs for the same seed
        let tr = seg(&c, 16, 1, Split::Train);
        assert_eq!(tr.inputs, s.inputs);
        for i in 0..tr.n {
            let (inp, tgt) = tr.example(i);
            assert_eq!(&tgt[..126], &inp[1..], "train target = next input");
            assert_eq!(tgt[126], s.example(i).1[126], "last train target = probe value");
        }
        // larger vocabularies: targets appear where keys repeat
        let s =
            seg(&InContextRecallConfig { seq_len: 64, num_examples: 200, ..Default::default() }, 128, 2, Split::Test);
        let total: usize = (0..s.n).map(|i| check_example(s.example(i).0, s.example(i).1, 64, 128)).sum();
        assert!(total > 200, "{total}");
    }

    /// Keys are uniform with replacement; a key's value is uniform over the value half; the fast
    /// and the naive generator agree on the number of test targets per example.
    #[test]
    fn keys_values_and_target_counts_are_distributed_as_mad() {
        let c = InContextRecallConfig { seq_len: 32, num_examples: 6000, ..Default::default() };
        let v = 32;
        let s = seg(&c, v, 3, Split::Test);
        let keys = histogram(
            (0..s.n).flat_map(|i| s.example(i).0.iter().step_by(2).map(|&k| k as usize).collect::<Vec<_>>()),
            16,
        );
        assert_fits(&keys, &uniform(16), "keys");
        let first_values = histogram((0..s.n).map(|i| s.example(i).0[1] as usize - 16), 16);
        assert_fits(&first_values, &uniform(16), "values");
        let count =
            |s: &Segment| histogram((0..s.n).map(|i| s.example(i).1.iter().filter(|&&t| t != IGNORE).count()), 17);
        let naive = TaskConfig::InContextRecall(c).generate_naive(v, 3, Split::Test);
        assert_same_distribution(&count(&s), &count(&naive), "test targets per example");
    }

    #[test]
    fn without_multi_query_only_the_probe_is_scored_after_a_copy_prefix() {
        let c = InContextRecallConfig { seq_len: 16, num_examples: 300, multi_query: false, ..Default::default() };
        let s = seg(&c, 16, 4, Split::Test);
        assert_eq!(s.seq_len, 16);
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            assert_eq!(inp[14], 15, "copy prefix before the probe key");
            assert!(inp[..14].iter().all(|&x| x < 15));
            assert_eq!(tgt.iter().filter(|&&t| t != IGNORE).count(), 1);
            assert_ne!(tgt[15], IGNORE);
            let k = inp[15];
            let bound = (0..14).step_by(2).find(|&t| inp[t] == k).map(|t| inp[t + 1]);
            assert_eq!(bound, Some(tgt[15]), "the probe asks for a presented key's value");
        }
    }

    #[test]
    fn preconditions_are_named_errors() {
        let e = |c: InContextRecallConfig, v| c.check(v, "data.train[0]").unwrap_err().to_string();
        assert!(e(InContextRecallConfig { seq_len: 127, ..Default::default() }, 16).contains("data.train[0].seq_len"));
        assert!(e(InContextRecallConfig { frac_noise: 0.2, ..Default::default() }, 16).contains("noise_vocab_size"));
        assert!(e(InContextRecallConfig { frac_noise: 1.0, noise_vocab_size: 4, ..Default::default() }, 16)
            .contains("frac_noise"));
        assert!(e(InContextRecallConfig { noise_vocab_size: 15, ..Default::default() }, 16).contains("data.vocab_size"));
    }
}
