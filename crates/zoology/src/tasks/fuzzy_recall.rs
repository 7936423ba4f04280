//! Fuzzy in-context recall, as MAD's `generate_fuzzy_in_context_recall_instance`
//! (athms/mad-lab `mad/data/instances.py`, `configs/tasks/fuzzy-in-context-recall.yml`).
//!
//! Keys and values are *motifs*: ordered tuples of distinct tokens, of length 1..=`k_motif_size`
//! (keys) and 1..=`v_motif_size` (values), each tuple uniform among all tuples of its length
//! (MAD draws from the shuffled list of all permutations). Vocabulary (with `multi_query`, MAD's
//! benchmark setting): `V − 1` is the pad token and the non-special tokens are
//! `[0, V − 1 − noise_vocab_size)`, keys from the first half, values from the rest (without
//! `multi_query`: `V − 1` is a copy prefix, `V − 2` the pad, one fewer non-special token).
//!
//! Per example: a probe key (length uniform in 1..=k in training, always `k_motif_size` at test)
//! and a probe value (length uniform), and an insertion point uniform in
//! `[0, seq_len − 2·(|probe key| + |probe value|))`. Then, while the sequence is shorter than
//! `seq_len − |probe| − (k_motif_size + v_motif_size)`: draw a key length (training: uniform;
//! test: the maximum) and a value length; if the insertion point is reached and the probe is
//! not in yet, append the probe pair; else (with probability `frac_noise`, a run of noise
//! tokens) append a uniform key motif and its value — the probe's value when the key is the
//! probe key (which then counts as inserted), the key's earlier value when it appeared before,
//! else a fresh uniform value motif. Finally the probe pair again (after the copy prefix
//! without `multi_query`), left-padding to `seq_len + 1`, and MAD's shift. **Training**
//! targets: every next token. **Test** targets: the value tokens after every key presented
//! before (with `multi_query`) and the final probe's value tokens. Keys of different lengths
//! are different keys. As in MAD, when the insertion point falls in the last few tokens the
//! probe pair may never be inserted before the final query (then its value is not in context).
//!
//! MAD's baseline: V = 16, L = 128, motifs of up to 3, 12,800 training examples; variations
//! V ∈ {32, 64, 128}, L ∈ {256, 512, 1024}, N ∈ {6400, 3200, 1600, 800}. Metric: MAD's macro
//! accuracy. Slices: `vocab_size`, `seq_len`.

use super::in_context_recall::shift_into;
use super::{
    check_common, fill_examples, size_fields, FastRng, Metric, Slice, Split, Task, Token, IGNORE, SEQ_LEN, VOCAB,
};
use crate::error::{config_err, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

fn yes() -> bool {
    true
}
fn three() -> usize {
    3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuzzyRecallConfig {
    pub seq_len: usize,
    pub num_examples: usize,
    /// Longest key motif.
    #[serde(default = "three")]
    pub k_motif_size: usize,
    /// Longest value motif.
    #[serde(default = "three")]
    pub v_motif_size: usize,
    #[serde(default = "yes")]
    pub multi_query: bool,
    #[serde(default)]
    pub noise_vocab_size: usize,
    #[serde(default)]
    pub frac_noise: f64,
}

impl Default for FuzzyRecallConfig {
    /// MAD's baseline (V = 16 goes in `data.vocab_size`).
    fn default() -> Self {
        FuzzyRecallConfig {
            seq_len: 128,
            num_examples: 12_800,
            k_motif_size: 3,
            v_motif_size: 3,
            multi_query: true,
            noise_vocab_size: 0,
            frac_noise: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    keys: usize,
    values: usize,
    noise: usize,
    pad: Token,
    copy: Token,
}

/// A motif as one hashable number: 16 bits per token (token + 1), at most 8 tokens.
fn pack(t: &[Token]) -> u128 {
    t.iter().fold(0u128, |a, &x| (a << 16) | (x as u128 + 1))
}

/// A uniform ordered tuple of `k` distinct tokens from `[lo, hi)`, appended to `out`.
fn motif(rng: &mut FastRng, lo: usize, hi: usize, k: usize, out: &mut Vec<Token>) {
    let start = out.len();
    while out.len() - start < k {
        let x = rng.gen_range(lo..hi) as Token;
        if !out[start..].contains(&x) {
            out.push(x);
        }
    }
}

/// Per-thread buffers.
#[derive(Default)]
struct Scratch {
    seq: Vec<Token>,
    lab: Vec<Token>,
    kbuf: Vec<Token>,
    /// Value motif of each key (packed key → range in `vals`).
    map: HashMap<u128, (usize, usize)>,
    vals: Vec<Token>,
    presented: HashSet<u128>,
    out: Vec<Token>,
    olab: Vec<Token>,
}

impl FuzzyRecallConfig {
    fn layout(&self, vocab_size: usize) -> Layout {
        let special = if self.multi_query { 1 } else { 2 };
        let ns = vocab_size.saturating_sub(special).saturating_sub(self.noise_vocab_size);
        Layout {
            keys: ns / 2,
            values: ns,
            noise: self.noise_vocab_size,
            pad: vocab_size as Token - if self.multi_query { 1 } else { 2 },
            copy: vocab_size as Token - 1,
        }
    }

    fn fill_one(
        &self,
        lay: Layout,
        split: Split,
        s: &mut Scratch,
        rng: &mut FastRng,
        inp: &mut [Token],
        tgt: &mut [Token],
    ) {
        let (l, km, vm) = (self.seq_len, self.k_motif_size, self.v_motif_size);
        let train = split == Split::Train;
        s.seq.clear();
        s.lab.clear();
        s.map.clear();
        s.vals.clear();
        s.presented.clear();
        let kps = if train { rng.gen_range(1..=km) } else { km };
        let vps = rng.gen_range(1..=vm);
        s.kbuf.clear();
        motif(rng, 0, lay.keys, kps, &mut s.kbuf);
        let k_probe: Vec<Token> = s.kbuf.clone();
        motif(rng, lay.keys, lay.values, vps, &mut s.vals);
        let probe_key = pack(&k_probe);
        s.map.insert(probe_key, (0, vps));
        let kvps = kps + vps;
        let probe_idx = rng.gen_range(0..l - 2 * kvps);
        let mut added = false;
        while s.seq.len() < l - kvps - (km + vm) {
            let ks = if train { rng.gen_range(1..=km) } else { km };
            let vs = rng.gen_range(1..=vm);
            if s.seq.len() >= probe_idx && !added {
                s.seq.extend_from_slice(&k_probe);
                s.seq.extend_from_slice(&s.vals[..vps]);
                s.lab.extend(std::iter::repeat(IGNORE).take(kvps));
                s.presented.insert(probe_key);
                added = true;
                continue;
            }
            if self.frac_noise > 0.0 && rng.gen::<f64>() < self.frac_noise {
                for _ in 0..ks + vs {
                    s.seq.push(rng.gen_range(lay.values..lay.values + lay.noise) as Token);
                    s.lab.push(IGNORE);
                }
                continue;
            }
            s.kbuf.clear();
            motif(rng, 0, lay.keys, ks, &mut s.kbuf);
            let key = pack(&s.kbuf);
            if key == probe_key {
                added = true;
            }
            let (a, b) = match s.map.get(&key) {
                Some(&r) => r,
                None => {
                    let a = s.vals.len();
                    motif(rng, lay.keys, lay.values, vs, &mut s.vals);
                    s.map.insert(key, (a, vs));
                    (a, vs)
                }
            };
            s.seq.extend_from_slice(&s.kbuf);
            s.seq.extend_from_slice(&s.vals[a..a + b]);
            s.lab.extend(std::iter::repeat(IGNORE).take(ks));
            if self.multi_query && s.presented.contains(&key) {
                s.lab.extend_from_slice(&s.vals[a..a + b]);
            } else {
                s.lab.extend(std::iter::repeat(IGNORE).take(b));
            }
            s.presented.insert(key);
        }
        if !self.multi_query {
            s.seq.push(lay.copy);
            s.lab.push(IGNORE);
        }
        s.seq.extend_from_slice(&k_probe);
        s.seq.extend_from_slice(&s.vals[..vps]);
        s.lab.extend(std::iter::repeat(IGNORE).take(kps));
        s.lab.extend_from_slice(&s.vals[..vps]);
        let pad = l + 1 - s.seq.len();
        s.out.clear();
        s.out.extend(std::iter::repeat(lay.pad).take(pad));
        s.out.extend_from_slice(&s.seq);
        s.olab.clear();
        s.olab.extend(std::iter::repeat(IGNORE).take(pad));
        s.olab.extend_from_slice(&s.lab);
        shift_into(&s.out, &s.olab, split, inp, tgt);
    }
}

impl Task for FuzzyRecallConfig {
    const TITLE: &'static str = "Fuzzy recall (MAD)";
    const ABOUT: &'static str =
        "in-context recall where keys and values are motifs of 1..k tokens (always k for test keys)";
    const SOURCE: &'static str = "athms/mad-lab mad/data/instances.py (generate_fuzzy_in_context_recall_instance)";
    const SUPERVISION: &'static str =
        "train: every next token; test: the value tokens after each key presented before, and the final probe's value";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN];
    const DEFAULT_VOCAB: usize = 16;
    const METRIC: Metric = Metric::MAD;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        let f = |k: &str| format!("{field}.{k}");
        let (km, vm) = (self.k_motif_size, self.v_motif_size);
        for (name, m) in [("k_motif_size", km), ("v_motif_size", vm)] {
            if !(1..=8).contains(&m) {
                return Err(config_err(f(name), format!("must be in 1..=8 (got {m})")));
            }
        }
        check_common(
            field,
            self.seq_len,
            2 * (km + vm) + 1,
            self.num_examples,
            vocab_size,
            3,
            "keys, values and the pad token",
        )?;
        if !(0.0..1.0).contains(&self.frac_noise) {
            return Err(config_err(f("frac_noise"), format!("must be in [0, 1) (got {})", self.frac_noise)));
        }
        if self.frac_noise > 0.0 && self.noise_vocab_size == 0 {
            return Err(config_err(f("noise_vocab_size"), "must be > 0 when frac_noise > 0"));
        }
        let lay = self.layout(vocab_size);
        if lay.keys < km || lay.values - lay.keys < vm || vocab_size > 65_000 {
            return Err(config_err(
                "data.vocab_size",
                format!("{vocab_size} gives {} key and {} value tokens; motifs of distinct tokens need ≥ k_motif_size = {km} and ≥ v_motif_size = {vm} (and V ≤ 65000)", lay.keys, lay.values - lay.keys),
            ));
        }
        Ok(())
    }
    fn generate(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let lay = self.layout(vocab_size);
        fill_examples(self.num_examples, self.seq_len, seed, Scratch::default, |s, rng, inp, tgt| {
            self.fill_one(lay, split, s, rng, inp, tgt)
        })
    }

    /// MAD's loop with Python-style containers: dicts of motif tuples, lists, a final pad.
    fn naive(&self, vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let lay = self.layout(vocab_size);
        let (l, km, vm) = (self.seq_len, self.k_motif_size, self.v_motif_size);
        let train = split == Split::Train;
        let mut rng = FastRng::seed_from_u64(seed);
        let draw = |rng: &mut FastRng, lo: usize, hi: usize, k: usize| {
            let mut v = vec![];
            motif(rng, lo, hi, k, &mut v);
            v
        };
        let (mut inputs, mut targets) = (vec![], vec![]);
        for _ in 0..self.num_examples {
            let kps = if train { rng.gen_range(1..=km) } else { km };
            let vps = rng.gen_range(1..=vm);
            let k_probe = draw(&mut rng, 0, lay.keys, kps);
            let v_probe = draw(&mut rng, lay.keys, lay.values, vps);
            let probe_idx = rng.gen_range(0..l - 2 * (kps + vps));
            let mut added = false;
            let mut kv_map: HashMap<Vec<Token>, Vec<Token>> = HashMap::new();
            let mut presented: HashMap<Vec<Token>, Vec<Token>> = HashMap::new();
            let (mut seq, mut lab): (Vec<Token>, Vec<Token>) = (vec![], vec![]);
            while seq.len() < l - (kps + vps) - (km + vm) {
                let ks = if train { rng.gen_range(1..=km) } else { km };
                let vs = rng.gen_range(1..=vm);
                if seq.len() >= probe_idx && !added {
                    seq.extend(&k_probe);
                    seq.extend(&v_probe);
                    lab.extend(vec![IGNORE; kps + vps]);
                    kv_map.insert(k_probe.clone(), v_probe.clone());
                    presented.insert(k_probe.clone(), v_probe.clone());
                    added = true;
                    continue;
                }
                if self.frac_noise > 0.0 && rng.gen::<f64>() < self.frac_noise {
                    for _ in 0..ks + vs {
                        seq.push(rng.gen_range(lay.values..lay.values + lay.noise) as Token);
                        lab.push(IGNORE);
                    }
                    continue;
                }
                let k = draw(&mut rng, 0, lay.keys, ks);
                seq.extend(&k);
                let v = if k == k_probe {
                    added = true;
                    v_probe.clone()
                } else if let Some(v) = kv_map.get(&k) {
                    v.clone()
                } else {
                    let v = draw(&mut rng, lay.keys, lay.values, vs);
                    kv_map.insert(k.clone(), v.clone());
                    v
                };
                seq.extend(&v);
                lab.extend(vec![IGNORE; ks]);
                if presented.contains_key(&k) && self.multi_query {
                    lab.extend(&v);
                } else {
                    lab.extend(vec![IGNORE; v.len()]);
                }
                presented.insert(k, v);
            }
            if !self.multi_query {
                seq.push(lay.copy);
                lab.push(IGNORE);
            }
            seq.extend(&k_probe);
            seq.extend(&v_probe);
            lab.extend(vec![IGNORE; kps]);
            lab.extend(&v_probe);
            let pad = l + 1 - seq.len();
            let seq: Vec<Token> = std::iter::repeat(lay.pad).take(pad).chain(seq).collect();
            let lab: Vec<Token> = std::iter::repeat(IGNORE).take(pad).chain(lab).collect();
            inputs.extend_from_slice(&seq[..l]);
            targets.extend_from_slice(if train { &seq[1..] } else { &lab[1..] });
        }
        (inputs, targets)
    }
    fn legend(&self, vocab_size: usize) -> String {
        let lay = self.layout(vocab_size);
        format!(
            "key tokens in [0, {}), value tokens in [{}, {}), {} = pad{}; [x→y] marks a supervised position with target y (test: the value motif after a repeated key)",
            lay.keys,
            lay.keys,
            lay.values,
            lay.pad,
            if self.multi_query { String::new() } else { format!(", {} = copy prefix", lay.copy) }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, assert_same_distribution, histogram, uniform};
    use super::super::{Segment, TaskConfig};
    use super::*;

    fn seg(c: &FuzzyRecallConfig, v: usize, seed: u64, split: Split) -> Segment {
        c.validate(v, "t").unwrap();
        TaskConfig::FuzzyRecall(c.clone()).generate_split(v, seed, split)
    }

    /// Test targets are value tokens of repeated keys, each equal to the next input; the
    /// sequence is left-padded with V − 1; training targets are the next tokens.
    #[test]
    fn test_layout_padding_and_targets() {
        let c = FuzzyRecallConfig { num_examples: 300, ..Default::default() };
        let s = seg(&c, 16, 1, Split::Test);
        let tr = seg(&c, 16, 1, Split::Train);
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            assert_eq!(inp.len(), 128);
            let pads = inp.iter().take_while(|&&x| x == 15).count();
            assert!(pads >= 1, "left padding");
            assert!(inp[pads..].iter().all(|&x| x < 15), "no pad after the start");
            for t in 0..127 {
                if tgt[t] != IGNORE {
                    assert_eq!(tgt[t], inp[t + 1], "a target is the next token");
                    assert!((7..15).contains(&tgt[t]), "targets are value tokens");
                }
            }
            assert!((7..15).contains(&tgt[127]), "the probe's last value token is scored");
            // every scored run starts at the last token of a 3-token key (test keys have the
            // maximal motif length) and covers a 1–3 token value
            let mut t = 0;
            while t < 128 {
                if tgt[t] == IGNORE {
                    t += 1;
                    continue;
                }
                assert!(t >= 2 && inp[t - 2..=t].iter().all(|&x| x < 7), "key before a run at {t}: {inp:?}");
                assert!(t < 3 || inp[t - 3] >= 7, "test keys are exactly 3 tokens: {inp:?}");
                let run = (t..128).take_while(|&u| tgt[u] != IGNORE).count();
                assert!((1..=3).contains(&run), "value motif of {run}");
                t += run;
            }
            // training split (other key lengths, so other sequences): next-token targets
            assert_eq!(&tr.example(i).1[..127], &tr.example(i).0[1..]);
        }
    }

    /// Motif lengths: value motifs uniform over 1..=3 at test (parsed from targets of repeated
    /// keys is awkward, so check the probe's value length, the scored tail); fast and naive
    /// agree on the number of test targets per example, in both splits' layouts.
    #[test]
    fn probe_value_length_is_uniform_and_naive_agrees() {
        let c = FuzzyRecallConfig { seq_len: 64, num_examples: 6000, ..Default::default() };
        let s = seg(&c, 16, 2, Split::Test);
        let tail = |t: &[Token]| t.iter().rev().take_while(|&&y| y != IGNORE).count();
        // the tail of scored tokens is the probe value (1..=3 tokens), unless the key before it
        // was scored too — it never is, keys are not targets
        let lens = histogram((0..s.n).map(|i| tail(s.example(i).1) - 1), 3);
        assert_fits(&lens, &uniform(3), "probe value length");
        let count =
            |s: &Segment| histogram((0..s.n).map(|i| s.example(i).1.iter().filter(|&&t| t != IGNORE).count()), 64);
        let naive = TaskConfig::FuzzyRecall(c).generate_naive(16, 2, Split::Test);
        assert_same_distribution(&count(&s), &count(&naive), "test targets per example");
    }

    #[test]
    fn preconditions_are_named_errors() {
        let e = |c: FuzzyRecallConfig, v| c.validate(v, "d").unwrap_err().to_string();
        assert!(e(FuzzyRecallConfig { k_motif_size: 0, ..Default::default() }, 16).contains("d.k_motif_size"));
        assert!(e(FuzzyRecallConfig { seq_len: 12, ..Default::default() }, 16).contains("d.seq_len"));
        assert!(e(FuzzyRecallConfig { k_motif_size: 8, ..Default::default() }, 16).contains("data.vocab_size"));
    }
}
