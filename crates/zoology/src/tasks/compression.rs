//! Compression, as MAD's `generate_compression_instance` (athms/mad-lab
//! `mad/data/instances.py`, `configs/tasks/compression.yml`).
//!
//! Vocabulary: `V − 1` is the compression token, data tokens `[0, V − 1)`. An example is
//! `L − 1` data tokens drawn uniformly with replacement followed by the compression token; the
//! target at every position is the input token itself (MAD returns `inputs, inputs`). That is
//! trivial for a language model, so MAD trains it with its **autoencoder** backbone: the
//! encoder's last position is the only summary of the sequence, and a fixed MLP decoder with
//! sinusoidal positions must rebuild every token from it (`model.backbone = "autoencoder"`, see
//! `model/mod.rs`; the config check requires it). Train = test.
//!
//! MAD's baseline: V = 16, L = 32, 12,800 training examples; variations V ∈ {32, 64, 128},
//! L ∈ {64, 128, 256}, N ∈ {6400, 3200, 1600, 800}. Metric: MAD's macro accuracy. Slices:
//! `vocab_size`, `seq_len`. (MAD's unused noise options are left out.)

use super::{
    check_common, fill_examples, size_fields, Backbone, FastRng, Metric, Slice, Split, Task, Token, SEQ_LEN, VOCAB,
};
use crate::error::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    pub seq_len: usize,
    pub num_examples: usize,
}

impl Default for CompressionConfig {
    /// MAD's baseline (V = 16 goes in `data.vocab_size`).
    fn default() -> Self {
        CompressionConfig { seq_len: 32, num_examples: 12_800 }
    }
}

impl Task for CompressionConfig {
    const TITLE: &'static str = "Compression (MAD)";
    const ABOUT: &'static str =
        "random tokens then a compression token; rebuild the whole sequence from the encoder's last position";
    const SOURCE: &'static str =
        "athms/mad-lab mad/data/instances.py (generate_compression_instance) + mad/model/auto_encoder.py";
    const SUPERVISION: &'static str =
        "every position (target: the input token there), decoded from the last position only; train = test";
    const SLICES: &'static [Slice] = &[VOCAB, SEQ_LEN];
    const DEFAULT_VOCAB: usize = 16;
    const BACKBONE: Backbone = Backbone::Autoencoder;
    const METRIC: Metric = Metric::MAD;

    size_fields!();
    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(
            field,
            self.seq_len,
            2,
            self.num_examples,
            vocab_size,
            2,
            "data tokens and the compression token V−1",
        )
    }
    fn generate(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let l = self.seq_len;
        fill_examples(
            self.num_examples,
            l,
            seed,
            || (),
            |_, rng, inp, tgt| {
                for x in inp[..l - 1].iter_mut() {
                    *x = rng.gen_range(0..vocab_size as Token - 1);
                }
                inp[l - 1] = vocab_size as Token - 1;
                tgt.copy_from_slice(inp);
            },
        )
    }
    fn naive(&self, vocab_size: usize, seed: u64, _split: Split) -> (Vec<Token>, Vec<Token>) {
        let mut rng = FastRng::seed_from_u64(seed);
        let mut inputs = vec![];
        for _ in 0..self.num_examples {
            let mut seq: Vec<Token> =
                (0..self.seq_len - 1).map(|_| rng.gen_range(0..vocab_size as Token - 1)).collect();
            seq.push(vocab_size as Token - 1);
            inputs.extend(seq);
        }
        (inputs.clone(), inputs)
    }
    fn legend(&self, vocab_size: usize) -> String {
        format!("data tokens in [0, {}), {} = compression token; every position's target is its own token (decoded from the last position)", vocab_size - 1, vocab_size - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{assert_fits, histogram, uniform};
    use super::super::TaskConfig;
    use super::*;

    #[test]
    fn targets_are_the_inputs_and_tokens_are_uniform() {
        let c = CompressionConfig { seq_len: 32, num_examples: 2000 };
        c.validate(16, "t").unwrap();
        let s = TaskConfig::Compression(c).generate(16, 1);
        assert_eq!(s.inputs, s.targets);
        for i in 0..s.n {
            assert_eq!(s.example(i).0[31], 15);
        }
        let toks = histogram(s.inputs.iter().enumerate().filter(|(p, _)| p % 32 != 31).map(|(_, &x)| x as usize), 15);
        assert_fits(&toks, &uniform(15), "data tokens");
    }

    /// The config check refuses compression on the language model (a target equal to the input
    /// is a copy there) and next-token tasks on the autoencoder (its decoder sees everything).
    #[test]
    fn backbone_mismatch_is_a_named_error() {
        let c = TaskConfig::Compression(CompressionConfig::default());
        let e = super::super::check_backbone(&[("data.train[0]".into(), &c)], Backbone::LanguageModel)
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.backbone") && e.contains("autoencoder") && e.contains("data.train[0]"), "{e}");
        let m = TaskConfig::Mqar(Default::default());
        let e = super::super::check_backbone(&[("data.test[0]".into(), &m)], Backbone::Autoencoder)
            .unwrap_err()
            .to_string();
        assert!(e.contains("language_model"), "{e}");
        assert!(super::super::check_backbone(&[("x".into(), &c)], Backbone::Autoencoder).is_ok());
    }
}
