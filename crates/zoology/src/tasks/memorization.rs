//! Memorization, as MAD's `generate_memorization_instance` (athms/mad-lab
//! `mad/data/instances.py`, `configs/tasks/memorization.yml`).
//!
//! Vocabulary: `V − 1` is the insert token; keys `[0, ⌊(V−1)/2⌋)`, values
//! `[⌊(V−1)/2⌋, V − 1)`. A key→value map is fixed once for the whole task by `map_seed` (MAD:
//! the config seed 12345): both halves are shuffled and zipped, so the map is a uniformly random
//! one-to-one assignment of keys to values. It is the **same in training and test** (the seed is
//! a config field, not the segment's data seed): the task measures what the weights remember,
//! since nothing in the context gives the value. An example is `L/2` pairs `k, insert` with keys
//! drawn uniformly with replacement; the target at each insert token is `map[k]`. Train = test.
//!
//! The map is drawn with our generator, so for `map_seed = 12345` it is a different random map
//! from MAD's numpy one (same distribution). MAD's baseline: V = 256, L = 32, **256** training
//! examples; variations V ∈ {512, 1024, 2048, 4096, 8192}. Metric: MAD's macro accuracy.
//! Slices: `vocab_size`, `seq_len`. (MAD's unused noise options are left out.)

use super::{
    check_common, fill_examples, size_fields, FastRng, Metric, Slice, Split, Task, Token, IGNORE, SEQ_LEN, VOCAB,
};
use crate::error::{config_err, Result};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

fn mad_seed() -> u64 {
    12345
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorizationConfig {
    pub seq_len: usize,
    pub num_examples: usize,
    /// Seed of the fixed key→value map (MAD's default seed).
    #[serde(default = "mad_seed")]
    pub map_seed: u64,
}

impl Default for MemorizationConfig {
    /// MAD's baseline (V = 256 goes in `data.vocab_size`).
    fn default() -> Self {
        MemorizationConfig { seq_len: 32, num_examples: 256, map_seed: 12345 }
    }
}

impl MemorizationConfig {
    /// `map[k]` for every key `k < ⌊(V−1)/2⌋`.
    pub fn map(&self, vocab_size: usize) -> Vec<Token> {
        let ns = vocab_size - 1;
        let mut rng = FastRng::seed_from_u64(self.map_seed);
        let mut keys: Vec<Token> = (0..(ns / 2) as Token).collect();
        let mut vals: Vec<Token> = ((ns / 2) as Token..ns as Token).collect();
        keys.shuffle(&mut rng);
        vals.shuffle(&mut rng);
        let mut map = vec![0; ns / 2];
        for (k, v) in keys.iter().zip(&vals) {
            map[*k as usize] = *v;
        }
        map
    }
}

impl Task for MemorizationConfig {
    const TITLE: &'static str = "Memorization (MAD)";
    const ABOUT: &'static str =
        "a key→value map fixed for the whole task; after each key an insert token asks for its value";
    const SOURCE: &'static str = "athms/mad-lab mad/data/instances.py (generate_memorization_instance)";
    const SUPERVISION: &'static str = "every insert token (target: the fixed value of the key before it); train = test";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN];
    const DEFAULT_VOCAB: usize = 256;
    const METRIC: Metric = Metric::MAD;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(
            field,
            self.seq_len,
            2,
            self.num_examples,
            vocab_size,
            4,
            "keys, values and the insert token V−1",
        )?;
        if self.seq_len % 2 != 0 {
            return Err(config_err(
                format!("{field}.seq_len"),
                format!("must be even: (key, insert) pairs (got {})", self.seq_len),
            ));
        }
        Ok(())
    }
    fn generate(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let map = self.map(vocab_size);
        let insert = vocab_size as Token - 1;
        fill_examples(
            self.num_examples,
            self.seq_len,
            seed,
            || (),
            |_, rng, inp, tgt| {
                for j in 0..inp.len() / 2 {
                    let k = rng.gen_range(0..map.len());
                    inp[2 * j] = k as Token;
                    inp[2 * j + 1] = insert;
                    tgt[2 * j + 1] = map[k];
                }
            },
        )
    }
    fn naive(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let map: std::collections::HashMap<Token, Token> =
            self.map(vocab_size).into_iter().enumerate().map(|(k, v)| (k as Token, v)).collect();
        let keys: Vec<Token> = (0..map.len() as Token).collect();
        let mut rng = FastRng::seed_from_u64(seed);
        let (mut inputs, mut targets) = (vec![], vec![]);
        for _ in 0..self.num_examples {
            for _ in 0..self.seq_len / 2 {
                let k = keys[rng.gen_range(0..keys.len())];
                inputs.extend([k, vocab_size as Token - 1]);
                targets.extend([IGNORE, map[&k]]);
            }
        }
        (inputs, targets)
    }
    fn legend(&self, vocab_size: usize) -> String {
        let h = (vocab_size - 1) / 2;
        format!("keys in [0, {h}), values in [{h}, {}), {} = insert; [{}→v] marks an insert token, target v = the key's fixed value", vocab_size - 1, vocab_size - 1, vocab_size - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, histogram, uniform};
    use super::super::TaskConfig;
    use super::*;

    /// The map is one-to-one into the value half, the same for any data seed and split, and
    /// changes with map_seed; keys are uniform.
    #[test]
    fn one_fixed_map_across_seeds_and_splits() {
        let c = MemorizationConfig { seq_len: 32, num_examples: 3000, map_seed: 12345 };
        c.validate(256, "t").unwrap();
        let map = c.map(256);
        assert_eq!(map.len(), 127);
        let mut vals = map.clone();
        vals.sort();
        vals.dedup();
        assert_eq!(vals.len(), 127, "one-to-one");
        assert!(map.iter().all(|&v| (127..255).contains(&v)));
        for (seed, split) in [(1, Split::Train), (2, Split::Test)] {
            let s = TaskConfig::Memorization(c.clone()).generate_split(256, seed, split);
            for i in 0..s.n {
                let (inp, tgt) = s.example(i);
                for j in 0..16 {
                    assert_eq!(inp[2 * j + 1], 255);
                    assert_eq!(tgt[2 * j], IGNORE);
                    assert_eq!(tgt[2 * j + 1], map[inp[2 * j] as usize]);
                }
            }
            let keys = histogram(s.inputs.iter().step_by(2).map(|&k| k as usize), 127);
            assert_fits(&keys, &uniform(127), "keys");
        }
        assert_ne!(MemorizationConfig { map_seed: 1, ..c }.map(256), map);
    }
}
