//! Forgetting MQAR: some keys are re-bound later in the context and the query asks for the
//! **latest** value, as HazyResearch Zoology's `forgetting_mqar`
//! (`zoology/data/forgetting_mqar.py`).
//!
//! Vocabulary as MQAR's: keys `[1, V/2)`, values `[V/2, V)`, 0 is filler. Per example: `kv`
//! distinct keys with `kv` distinct original values; `u = num_updates` distinct keys (a uniform
//! random ordered subset) get a new value, uniform over the values **other than that key's
//! original value**; updates may coincide with other keys' values.
//!
//! ```text
//! input:  k₁ v₁ … k_kv v_kv | k_{u₁} v′₁ … k_{u_u} v′_u | query region: ⌊(L−2(kv+u))/2⌋ slots of 2
//! ```
//! Key `j` (context order) is queried at slot `g_j` drawn by successive sampling with
//! `P(g) ∝ a·(g+1)^(a−1)` (MQAR's sampler); the target at the query is the key's final value
//! (its update if it has one). Filler 0 becomes uniform in `[0, V)` when `random_non_queries`
//! (default true, Zoology's). Preconditions (Zoology's): L even, V > L, `u ≤ kv`,
//! `2(kv+u) + 2kv ≤ L`. Train = test. Metric: per-example accuracy. Slices: `num_kv_pairs`,
//! `num_updates`, `seq_len`.
//!
//! One deliberate difference: Zoology draws update `j`'s new value avoiding `original_values[j]`
//! (the j-th pair's value) but assigns it to key `update_indices[j]`, so when those differ the
//! "update" keeps the key's old value with probability 1/(V/2 − 1). We avoid the updated key's
//! own original value, which is what the code's comment says it intends (the effect on numbers
//! is below 0.03% at V = 8192).

use super::mqar::{check_power_law_task, distinct_in, naive_successive, power_weights, GapSampler, KV_PAIRS};
use super::{fill_examples, size_fields, FastRng, Metric, Slice, Split, Task, Token, IGNORE, SEQ_LEN};
use crate::error::{config_err, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

fn default_power_a() -> f64 {
    0.01
}
fn yes() -> bool {
    true
}
fn four() -> usize {
    4
}

pub const UPDATES: Slice = Slice { key: "num_updates", label: "updated keys", short: "upd" };

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgettingMqarConfig {
    pub seq_len: usize,
    /// Number of distinct keys (and of queries).
    pub num_kv_pairs: usize,
    /// How many keys get a new value later in the context.
    #[serde(default = "four")]
    pub num_updates: usize,
    pub num_examples: usize,
    #[serde(default = "default_power_a")]
    pub power_a: f64,
    #[serde(default = "yes")]
    pub random_non_queries: bool,
}

impl Default for ForgettingMqarConfig {
    /// Zoology's config defaults (kv 8, 4 updates) at L = 64, 1000 examples.
    fn default() -> Self {
        ForgettingMqarConfig {
            seq_len: 64,
            num_kv_pairs: 8,
            num_updates: 4,
            num_examples: 1000,
            power_a: 0.01,
            random_non_queries: true,
        }
    }
}

/// Uniform in `[lo, hi)` other than `not`.
fn other_than(rng: &mut FastRng, lo: usize, hi: usize, not: Token) -> Token {
    let x = rng.gen_range(lo as Token..hi as Token - 1);
    if x >= not {
        x + 1
    } else {
        x
    }
}

impl Task for ForgettingMqarConfig {
    const TITLE: &'static str = "Forgetting MQAR";
    const ABOUT: &'static str =
        "MQAR where num_updates keys are re-bound later in the context; queries ask for the latest value";
    const SOURCE: &'static str = "HazyResearch/zoology zoology/data/forgetting_mqar.py";
    const SUPERVISION: &'static str = "the kv query-key positions (target: the key's latest value); train = test";
    const SLICES: &'static [Slice] = &[KV_PAIRS, UPDATES, SEQ_LEN];
    const ALIASES: &'static [(&'static str, &'static str)] = &[("kv", "num_kv_pairs"), ("updates", "num_updates")];
    const DEFAULT_VOCAB: usize = 8192;
    const METRIC: Metric = Metric::PerExample;

    size_fields!();

    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        let (l, kv, u, v) = (self.seq_len, self.num_kv_pairs, self.num_updates, vocab_size);
        let f = |k: &str| format!("{field}.{k}");
        check_power_law_task(field, l, v, self.num_examples, self.power_a)?;
        if kv == 0 {
            return Err(config_err(f("num_kv_pairs"), "must be at least 1"));
        }
        if u > kv {
            return Err(config_err(f("num_updates"), format!("must be ≤ num_kv_pairs = {kv} (got {u})")));
        }
        if 2 * (kv + u) + 2 * kv > l {
            return Err(config_err(
                f("num_kv_pairs"),
                format!(
                    "2·(num_kv_pairs + num_updates) + 2·num_kv_pairs must be ≤ seq_len (got {} > {l})",
                    2 * (kv + u) + 2 * kv
                ),
            ));
        }
        if v / 2 < kv + 1 || v - v / 2 < kv.max(2) {
            return Err(config_err(
                "data.vocab_size",
                format!("too small for {kv} distinct keys in [1, V/2) and values in [V/2, V) (got V={v})"),
            ));
        }
        Ok(())
    }

    fn generate(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let (l, kv, u) = (self.seq_len, self.num_kv_pairs, self.num_updates);
        let h = vocab_size / 2;
        let ctx = 2 * (kv + u);
        let sampler = GapSampler::new((l - ctx) / 2, kv, self.power_a);
        fill_examples(
            self.num_examples,
            l,
            seed,
            || (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()),
            |(ks, vs, upd, last, gaps), rng, inp, tgt| {
                distinct_in(rng, 1, h, kv, ks);
                distinct_in(rng, h, vocab_size, kv, vs);
                distinct_in(rng, 0, kv, u, upd);
                last.clear();
                last.extend_from_slice(vs);
                for j in 0..kv {
                    inp[2 * j] = ks[j];
                    inp[2 * j + 1] = vs[j];
                }
                for j in 0..u {
                    let key = upd[j] as usize;
                    let nv = other_than(rng, h, vocab_size, vs[key]);
                    inp[2 * kv + 2 * j] = ks[key];
                    inp[2 * kv + 2 * j + 1] = nv;
                    last[key] = nv;
                }
                sampler.draw(rng, gaps);
                for j in 0..kv {
                    let q = ctx + 2 * gaps[j].1 as usize;
                    inp[q] = ks[j];
                    tgt[q] = last[j];
                }
                if self.random_non_queries {
                    for x in inp.iter_mut() {
                        if *x == 0 {
                            *x = rng.gen_range(0..vocab_size as Token);
                        }
                    }
                }
            },
        )
    }

    /// Zoology's steps one example at a time, with rejection for distinct draws and a
    /// sequential weighted choice of the gaps.
    fn naive(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let (l, kv, u, n) = (self.seq_len, self.num_kv_pairs, self.num_updates, self.num_examples);
        let h = vocab_size / 2;
        let ctx = 2 * (kv + u);
        let w = power_weights((l - ctx) / 2, self.power_a);
        let mut rng = FastRng::seed_from_u64(seed);
        let (mut inputs, mut targets) = (Vec::with_capacity(n * l), Vec::with_capacity(n * l));
        let distinct = |rng: &mut FastRng, lo: usize, hi: usize, k: usize| {
            let mut out: Vec<Token> = vec![];
            while out.len() < k {
                let x = rng.gen_range(lo as Token..hi as Token);
                if !out.contains(&x) {
                    out.push(x);
                }
            }
            out
        };
        for _ in 0..n {
            let keys = distinct(&mut rng, 1, h, kv);
            let orig = distinct(&mut rng, h, vocab_size, kv);
            let which = distinct(&mut rng, 0, kv, u);
            let mut fin = orig.clone();
            let mut seq = vec![0; l];
            let mut lab = vec![IGNORE; l];
            for j in 0..kv {
                seq[2 * j] = keys[j];
                seq[2 * j + 1] = orig[j];
            }
            for (j, &k) in which.iter().enumerate() {
                let mut nv = rng.gen_range(h as Token..vocab_size as Token);
                while nv == orig[k as usize] {
                    nv = rng.gen_range(h as Token..vocab_size as Token);
                }
                fin[k as usize] = nv;
                seq[2 * kv + 2 * j] = keys[k as usize];
                seq[2 * kv + 2 * j + 1] = nv;
            }
            for (j, g) in naive_successive(&mut rng, &w, kv).into_iter().enumerate() {
                seq[ctx + 2 * g] = keys[j];
                lab[ctx + 2 * g] = fin[j];
            }
            if self.random_non_queries {
                for x in seq.iter_mut().filter(|x| **x == 0) {
                    *x = rng.gen_range(0..vocab_size as Token);
                }
            }
            inputs.extend(seq);
            targets.extend(lab);
        }
        (inputs, targets)
    }

    fn legend(&self, vocab_size: usize) -> String {
        format!(
            "keys in [1, {h}), values in [{h}, {vocab_size}), 0 = filler; the first {} pairs bind, the next {} re-bind; [k→v] marks a query whose target is the latest v",
            self.num_kv_pairs,
            self.num_updates,
            h = vocab_size / 2
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, assert_same_distribution, histogram, uniform};
    use super::super::{Segment, TaskConfig};
    use super::*;
    use std::collections::HashMap;

    fn cfg(l: usize, kv: usize, u: usize, n: usize) -> ForgettingMqarConfig {
        ForgettingMqarConfig {
            seq_len: l,
            num_kv_pairs: kv,
            num_updates: u,
            num_examples: n,
            power_a: 0.01,
            random_non_queries: false,
        }
    }

    #[test]
    fn queries_ask_for_the_latest_value() {
        let (l, kv, u, v) = (64, 8, 4, 256);
        let c = cfg(l, kv, u, 400);
        c.validate(v, "t").unwrap();
        let s = TaskConfig::ForgettingMqar(c).generate(v, 5);
        let mut updated_asked = 0;
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            let mut latest = HashMap::new();
            let mut first = HashMap::new();
            for j in 0..kv + u {
                let (k, val) = (inp[2 * j], inp[2 * j + 1]);
                assert!((1..128).contains(&k) && (128..256).contains(&val));
                if j < kv {
                    assert!(first.insert(k, val).is_none(), "original keys must be distinct");
                } else {
                    assert!(first.contains_key(&k), "an update re-binds an existing key");
                    assert_ne!(first[&k], val, "an update changes the value");
                }
                latest.insert(k, val);
            }
            // updated keys are distinct
            let upd: std::collections::HashSet<Token> = (kv..kv + u).map(|j| inp[2 * j]).collect();
            assert_eq!(upd.len(), u);
            let sup: Vec<usize> = (0..l).filter(|&p| tgt[p] != IGNORE).collect();
            assert_eq!(sup.len(), kv);
            for &p in &sup {
                assert!(p >= 2 * (kv + u) && (p - 2 * (kv + u)) % 2 == 0);
                assert_eq!(tgt[p], latest[&inp[p]], "target must be the latest value");
                if upd.contains(&inp[p]) {
                    updated_asked += 1;
                }
            }
        }
        assert_eq!(updated_asked, 400 * u, "every updated key is queried");
    }

    /// Which keys get updated is uniform over the context pairs; the new value is uniform over
    /// the other values; fast and naive generators agree on the query slot of key 0.
    #[test]
    fn update_choice_and_values_are_uniform() {
        let (l, kv, u, v, n) = (64, 8, 2, 64, 20_000);
        let c = cfg(l, kv, u, n);
        let s = TaskConfig::ForgettingMqar(c.clone()).generate(v, 7);
        let which = histogram(
            (0..n).flat_map(|i| {
                let inp = s.example(i).0.to_vec();
                (kv..kv + u).map(move |j| (0..kv).position(|m| inp[2 * m] == inp[2 * j]).unwrap())
            }),
            kv,
        );
        assert_fits(&which, &uniform(kv), "which pair is updated");
        // the new value's offset from the old (mod 32), never 0, uniform over 1..31
        let off = histogram(
            (0..n).map(|i| {
                let inp = s.example(i).0;
                let m = (0..kv).position(|m| inp[2 * m] == inp[2 * kv]).unwrap();
                ((inp[2 * kv + 1] - inp[2 * m + 1]).rem_euclid(32) - 1) as usize
            }),
            31,
        );
        assert_fits(&off, &uniform(31), "new value relative to the old");
        let slot = |s: &Segment, i: usize| {
            let (inp, tgt) = s.example(i);
            (0..l).find(|&p| tgt[p] != IGNORE && inp[p] == inp[0]).map(|p| (p - 2 * (kv + u)) / 2).unwrap()
        };
        let naive = TaskConfig::ForgettingMqar(c).generate_naive(v, 7, Split::Test);
        let sp = (l - 2 * (kv + u)) / 2;
        assert_same_distribution(
            &histogram((0..n).map(|i| slot(&s, i)), sp),
            &histogram((0..n).map(|i| slot(&naive, i)), sp),
            "slot of key 0",
        );
    }

    #[test]
    fn preconditions_are_named_errors() {
        let e = |c: ForgettingMqarConfig, v| c.validate(v, "d").unwrap_err().to_string();
        assert!(e(cfg(64, 4, 5, 10), 8192).contains("d.num_updates"));
        assert!(e(cfg(64, 12, 12, 10), 8192).contains("2·(num_kv_pairs + num_updates)"));
        assert!(e(cfg(64, 8, 4, 10), 60).contains("data.vocab_size"));
        assert!(cfg(64, 9, 4, 10).validate(8192, "d").is_ok()); // Zoology's L=64, kv=9 setting
    }
}
