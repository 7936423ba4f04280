//! Compositional MQAR: recall keyed by a *pair* of tokens, as HazyResearch Zoology's
//! `compositional_mqar` (`zoology/data/compositional_mqar.py`).
//!
//! Vocabulary `V` split in thirds (`t = ⌊V/3⌋`): first keys `K1 ∈ [1, t)`, second keys
//! `K2 ∈ [t, 2t)`, values `[2t, V)`; token 0 is filler. `kv` must be a perfect square `g²`.
//! Per example: `g` distinct K1s and `g` distinct K2s; the `kv` compound keys are their full
//! grid `(K1_a, K2_b)` (so neither half alone determines the value), in a uniformly random
//! order; `kv` distinct values, one per compound key.
//!
//! ```text
//! position: 0   1   2   3   4   5  …  3kv−1 | 3kv … L−1
//! input:    A₁  B₁  v₁  A₂  B₂  v₂ …  v_kv  | query region: ⌊(L−3kv)/3⌋ slots of 3 positions
//! ```
//! Pair `j` is queried at slot `g_j` (region offsets `3g_j`, `3g_j+1` hold `A_j B_j`, the third
//! position is filler); the slots are drawn by successive sampling with
//! `P(g) ∝ a·(g+1)^(a−1)` exactly as MQAR's (pair `j` gets the `j`-th draw). The target at the
//! query's **second** key position is `v_j`; every other target is [`IGNORE`]. With
//! `random_non_queries` (default true, as Zoology's config) filler 0 becomes a uniform token in
//! `[0, V)`. Preconditions (Zoology's): L even, V > L, `6·kv ≤ L`, `kv` a perfect square.
//! Train and test alike. Metric: per-example accuracy. Slices: `num_kv_pairs`, `seq_len`.

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositionalMqarConfig {
    pub seq_len: usize,
    /// Number of compound keys; a perfect square (4, 9, 16, …).
    pub num_kv_pairs: usize,
    pub num_examples: usize,
    #[serde(default = "default_power_a")]
    pub power_a: f64,
    #[serde(default = "yes")]
    pub random_non_queries: bool,
}

impl Default for CompositionalMqarConfig {
    /// Zoology's config defaults (kv 4) at L = 64, 1000 examples.
    fn default() -> Self {
        CompositionalMqarConfig {
            seq_len: 64,
            num_kv_pairs: 4,
            num_examples: 1000,
            power_a: 0.01,
            random_non_queries: true,
        }
    }
}

impl CompositionalMqarConfig {
    fn grid(&self) -> usize {
        (self.num_kv_pairs as f64).sqrt().round() as usize
    }
}

impl Task for CompositionalMqarConfig {
    const TITLE: &'static str = "Compositional MQAR";
    const ABOUT: &'static str =
        "MQAR with compound keys (K1, K2) on a √kv×√kv grid: neither half alone gives the value";
    const SOURCE: &'static str = "HazyResearch/zoology zoology/data/compositional_mqar.py";
    const SUPERVISION: &'static str =
        "the second key of each of the kv queries (target: the pair's value); train = test";
    const SLICES: &'static [Slice] = &[KV_PAIRS, SEQ_LEN];
    const ALIASES: &'static [(&'static str, &'static str)] = &[("kv", "num_kv_pairs")];
    const DEFAULT_VOCAB: usize = 8192;
    const METRIC: Metric = Metric::PerExample;

    size_fields!();

    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        let (l, kv, v) = (self.seq_len, self.num_kv_pairs, vocab_size);
        let f = |k: &str| format!("{field}.{k}");
        check_power_law_task(field, l, v, self.num_examples, self.power_a)?;
        let g = self.grid();
        if kv == 0 || g * g != kv {
            return Err(config_err(
                f("num_kv_pairs"),
                format!("must be a perfect square ≥ 1 (4, 9, 16, …) to form the key grid (got {kv})"),
            ));
        }
        if 6 * kv > l {
            return Err(config_err(
                f("num_kv_pairs"),
                format!("6·num_kv_pairs must be ≤ seq_len (3 context + 3 query tokens per pair; got 6·{kv} > {l})"),
            ));
        }
        let t = v / 3;
        if t < g + 1 || v - 2 * t < kv {
            return Err(config_err("data.vocab_size", format!("too small for {g} first keys in [1, V/3), {g} second keys and {kv} distinct values in [2V/3, V) (got V={v})")));
        }
        Ok(())
    }

    fn generate(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let (l, kv, g) = (self.seq_len, self.num_kv_pairs, self.grid());
        let t = vocab_size / 3;
        let ctx = 3 * kv;
        let sampler = GapSampler::new((l - ctx) / 3, kv, self.power_a);
        fill_examples(
            self.num_examples,
            l,
            seed,
            || (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()),
            |(a, b, vals, perm, gaps), rng, inp, tgt| {
                distinct_in(rng, 1, t, g, a);
                distinct_in(rng, t, 2 * t, g, b);
                // a uniformly random order of the grid cells (cell c = (c / g, c % g))
                distinct_in(rng, 0, kv, kv, perm);
                distinct_in(rng, 2 * t, vocab_size, kv, vals);
                sampler.draw(rng, gaps);
                for j in 0..kv {
                    let c = perm[j] as usize;
                    let (k1, k2) = (a[c / g], b[c % g]);
                    inp[3 * j] = k1;
                    inp[3 * j + 1] = k2;
                    inp[3 * j + 2] = vals[j];
                    let q = ctx + 3 * gaps[j].1 as usize;
                    inp[q] = k1;
                    inp[q + 1] = k2;
                    tgt[q + 1] = vals[j];
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

    /// Zoology's array order, one example at a time: K1 set, K2 set, grid, permutation, values,
    /// gaps by sequential weighted choice, filler.
    fn naive(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let (l, kv, g, n) = (self.seq_len, self.num_kv_pairs, self.grid(), self.num_examples);
        let t = vocab_size / 3;
        let ctx = 3 * kv;
        let w = power_weights((l - ctx) / 3, self.power_a);
        let mut rng = FastRng::seed_from_u64(seed);
        let (mut inputs, mut targets) = (Vec::with_capacity(n * l), Vec::with_capacity(n * l));
        let pick = |rng: &mut FastRng, lo: usize, hi: usize, k: usize| {
            let mut pool: Vec<Token> = (lo as Token..hi as Token).collect();
            let mut out = vec![];
            for _ in 0..k {
                let i = rng.gen_range(0..pool.len());
                out.push(pool.swap_remove(i));
            }
            out
        };
        for _ in 0..n {
            let (a, b) = (pick(&mut rng, 1, t, g), pick(&mut rng, t, 2 * t, g));
            let mut k1s: Vec<Token> = a.iter().flat_map(|&x| std::iter::repeat(x).take(g)).collect();
            let mut k2s: Vec<Token> = (0..g).flat_map(|_| b.iter().copied()).collect();
            let perm = pick(&mut rng, 0, kv, kv);
            k1s = perm.iter().map(|&p| k1s[p as usize]).collect();
            k2s = perm.iter().map(|&p| k2s[p as usize]).collect();
            let vals = pick(&mut rng, 2 * t, vocab_size, kv);
            let mut seq = vec![0; l];
            let mut lab = vec![IGNORE; l];
            for j in 0..kv {
                seq[3 * j..3 * j + 3].copy_from_slice(&[k1s[j], k2s[j], vals[j]]);
            }
            for (j, gap) in naive_successive(&mut rng, &w, kv).into_iter().enumerate() {
                seq[ctx + 3 * gap] = k1s[j];
                seq[ctx + 3 * gap + 1] = k2s[j];
                lab[ctx + 3 * gap + 1] = vals[j];
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
        let t = vocab_size / 3;
        format!("first keys in [1, {t}), second keys in [{t}, {}), values in [{}, {vocab_size}), 0 = filler; [k2→v] marks a query's second key, target v", 2 * t, 2 * t)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, assert_same_distribution, histogram};
    use super::super::{Segment, TaskConfig};
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn gen(l: usize, kv: usize, n: usize, v: usize, seed: u64, random: bool) -> Segment {
        let c = CompositionalMqarConfig {
            seq_len: l,
            num_kv_pairs: kv,
            num_examples: n,
            power_a: 0.01,
            random_non_queries: random,
        };
        c.validate(v, "t").unwrap();
        TaskConfig::CompositionalMqar(c).generate(v, seed)
    }

    #[test]
    fn layout_grid_and_labels() {
        let (l, kv, v) = (64, 9, 150);
        let t = (v / 3) as Token;
        let s = gen(l, kv, 300, v, 1, false);
        for i in 0..s.n {
            let (inp, tgt) = s.example(i);
            let mut map = HashMap::new();
            for j in 0..kv {
                let (k1, k2, val) = (inp[3 * j], inp[3 * j + 1], inp[3 * j + 2]);
                assert!(
                    (1..t).contains(&k1) && (t..2 * t).contains(&k2) && (2 * t..v as Token).contains(&val),
                    "{inp:?}"
                );
                assert!(map.insert((k1, k2), val).is_none(), "compound key repeated");
                assert!(tgt[3 * j..3 * j + 3].iter().all(|&y| y == IGNORE));
            }
            // a full 3×3 grid: 3 distinct K1s, 3 distinct K2s, each combination once
            let k1s: BTreeSet<Token> = map.keys().map(|k| k.0).collect();
            let k2s: BTreeSet<Token> = map.keys().map(|k| k.1).collect();
            assert_eq!((k1s.len(), k2s.len()), (3, 3));
            let vals: BTreeSet<Token> = map.values().copied().collect();
            assert_eq!(vals.len(), kv, "values must be distinct");
            // queries: K1 K2 at slot starts, labelled at K2 with the value; everything else filler
            let sup: Vec<usize> = (0..l).filter(|&p| tgt[p] != IGNORE).collect();
            assert_eq!(sup.len(), kv);
            let mut asked = BTreeSet::new();
            for &p in &sup {
                assert!(p > 3 * kv && (p - 3 * kv) % 3 == 1, "label at {p}");
                let key = (inp[p - 1], inp[p]);
                assert_eq!(tgt[p], map[&key]);
                asked.insert(key);
            }
            assert_eq!(asked.len(), kv, "each compound key queried once");
            let filler = (3 * kv..l).filter(|&p| !sup.contains(&p) && !sup.contains(&(p + 1))).all(|p| inp[p] == 0);
            assert!(filler);
        }
    }

    /// With one pair (a 1×1 grid) the query slot follows P(g) ∝ a(g+1)^(a−1); the naive
    /// generator draws the same distribution for the slot of pair 0 at kv = 4.
    #[test]
    fn query_slots_follow_the_power_law() {
        let (l, n) = (96, 20_000);
        let s = gen(l, 1, n, 200, 3, false);
        let space = (l - 3) / 3;
        let w = power_weights(space, 0.01);
        let tot: f64 = w.iter().sum();
        // slot of pair 0: the labelled position whose (K1, K2) is the first context pair's
        let slot = |s: &Segment, i: usize, kv: usize| {
            let (inp, tgt) = s.example(i);
            (0..s.seq_len)
                .find(|&p| tgt[p] != IGNORE && inp[p - 1] == inp[0] && inp[p] == inp[1])
                .map(|p| (p - 1 - 3 * kv) / 3)
                .unwrap()
        };
        let obs = histogram((0..n).map(|i| slot(&s, i, 1)), space);
        assert_fits(&obs, &w.iter().map(|x| x / tot).collect::<Vec<_>>(), "slot of the single pair");
        let c = CompositionalMqarConfig {
            seq_len: l,
            num_kv_pairs: 4,
            num_examples: 20_000,
            power_a: 0.01,
            random_non_queries: false,
        };
        let fast = TaskConfig::CompositionalMqar(c.clone()).generate(200, 4);
        let naive = TaskConfig::CompositionalMqar(c).generate_naive(200, 4, Split::Test);
        let sp = (l - 12) / 3;
        let a = histogram((0..fast.n).map(|i| slot(&fast, i, 4)), sp);
        let b = histogram((0..naive.n).map(|i| slot(&naive, i, 4)), sp);
        assert_same_distribution(&a, &b, "slot of pair 0, fast vs naive");
    }

    #[test]
    fn preconditions_are_named_errors() {
        let c = |l, kv| CompositionalMqarConfig { seq_len: l, num_kv_pairs: kv, ..Default::default() };
        let e = |c: CompositionalMqarConfig, v| c.validate(v, "data.train[0]").unwrap_err().to_string();
        assert!(
            e(c(64, 5), 8192).contains("data.train[0].num_kv_pairs") && e(c(64, 5), 8192).contains("perfect square")
        );
        assert!(e(c(48, 9), 8192).contains("6·num_kv_pairs"));
        assert!(e(c(63, 4), 8192).contains("seq_len"));
        assert!(e(c(64, 4), 64).contains("data.vocab_size"));
        assert!(c(54, 9).validate(8192, "x").is_ok());
    }

    #[test]
    fn random_filler_leaves_labels() {
        let s = gen(64, 4, 200, 8192, 2, true);
        assert!(s.inputs.iter().filter(|&&x| x == 0).count() < 10);
        assert_eq!(s.num_supervised(), 4 * 200);
    }
}
