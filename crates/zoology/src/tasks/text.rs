//! Real text (issue 9): next-token prediction on windows of a tokenized corpus, the full
//! language-model loss.
//!
//! Data: a corpus prepared by `zoology corpus fetch --corpus C --tokenizer T` into the corpus
//! cache (`corpus_dir`, default `${ZOOLOGY_CORPUS_DIR}` or `${XDG_CACHE_HOME:-~/.cache}/zoology-rs/corpus`;
//! see [`crate::text`]). Nothing is downloaded here: a corpus that is not in the cache is an
//! error that names the fetch command. The one exception is the built-in `fixture` corpus (6 KB,
//! built in memory from code, no network), which is prepared in the cache on first use so that
//! tests and demos need no setup.
//!
//! Which split: `split = "auto"` (the default) reads the corpus's **train** split for training
//! segments and its **valid** split for test segments (the corpus is split by document, so no
//! text is in both); `"train"` or `"valid"` forces one.
//!
//! Windows: an example is `L + 1` consecutive tokens `s[p .. p + L + 1]` of the split's token
//! stream (documents in corpus order, each followed by end-of-text); inputs are the first `L`,
//! targets the last `L` (the next token at **every** position: the full LM loss, no ignored
//! position). `windows = "random"` (default) draws the start `p` uniformly from
//! `0 ..= len − L − 1` for each example from the example's own random stream (nanoGPT-style random
//! crops, with replacement; deterministic per seed, independent of the thread count; any number of
//! examples); `windows = "packed"` takes the first `num_examples` non-overlapping windows
//! `p = kL` (the packing of [`crate::text::dataset`], which `zoology arhits` evaluates; the seed
//! is not used, and asking for more windows than the split holds is an error naming the count).
//!
//! `data.vocab_size` must be at least the tokenizer's vocabulary (an error names it). Metric:
//! perplexity (`exp` of the mean cross-entropy over all positions; its accuracy is the micro
//! token accuracy). Slice: `seq_len`.

use super::{
    check_common, examples_field, fill_examples, render_tokens, FastRng, Metric, Slice, Split, Task, Token, SEQ_LEN,
};
use crate::error::{config_err, Error, Result};
use crate::text::corpus::{self, PrepareOptions, Source};
use crate::text::dataset::TokenDataset;
use crate::text::tokenizer::TokenizerSpec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// Corpus name (`zoology corpus fetch --corpus NAME`): `sword-en`, or `fixture`.
    pub corpus: String,
    /// Tokenizer the corpus was tokenized with: `bpe<N>` or `r50k`.
    pub tokenizer: String,
    /// Root of the corpus cache; empty = the default (see the module docs).
    #[serde(default)]
    pub corpus_dir: String,
    /// `auto` (train segments: train split; test segments: valid split), `train` or `valid`.
    #[serde(default = "auto")]
    pub split: String,
    /// `random` crops or `packed` consecutive windows.
    #[serde(default = "random")]
    pub windows: String,
    /// Context length L.
    pub seq_len: usize,
    pub num_examples: usize,
}

fn auto() -> String {
    "auto".into()
}
fn random() -> String {
    "random".into()
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            corpus: "fixture".into(),
            tokenizer: "bpe300".into(),
            corpus_dir: String::new(),
            split: "auto".into(),
            windows: "random".into(),
            seq_len: 32,
            num_examples: 1000,
        }
    }
}

type Key = (PathBuf, String);

/// Datasets opened (and verified) once per process: validation, every generated segment and
/// `zoology data` share them.
fn cache() -> &'static Mutex<HashMap<Key, Arc<TokenDataset>>> {
    static C: OnceLock<Mutex<HashMap<Key, Arc<TokenDataset>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

impl TextConfig {
    /// The corpus cache root this config reads.
    pub fn root(&self) -> Result<PathBuf> {
        if self.corpus_dir.is_empty() {
            corpus::default_corpus_root()
        } else {
            Ok(PathBuf::from(&self.corpus_dir))
        }
    }

    /// The corpus split that `split` (the run half) reads.
    pub fn corpus_split(&self, split: Split) -> corpus::Split {
        match (self.split.as_str(), split) {
            ("train", _) | ("auto", Split::Train) => corpus::Split::Train,
            _ => corpus::Split::Valid,
        }
    }

    /// Opens the tokenized corpus (once per process), preparing the built-in fixture on first
    /// use. `field` prefixes error paths.
    pub fn dataset(&self, field: &str) -> Result<Arc<TokenDataset>> {
        let spec = corpus::corpus_spec(&self.corpus, &format!("{field}.corpus"))?;
        let tok = TokenizerSpec::parse(&self.tokenizer, &format!("{field}.tokenizer"))?;
        let root = self.root()?;
        let key = (root.join(spec.name), tok.name());
        let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = c.get(&key) {
            return Ok(d.clone());
        }
        if spec.name == "fixture" && TokenDataset::open(&key.0, &key.1).is_err() {
            let opts = PrepareOptions {
                root: root.clone(),
                source: Source::Apt,
                any_version: false,
                tokenizers: vec![tok],
                force: false,
                quiet: true,
            };
            corpus::prepare(&spec, &opts)?;
        }
        let d = TokenDataset::open(&key.0, &key.1).map_err(|e| {
            Error::Data(format!(
                "{field} (task text, corpus {}, tokenizer {}, cache {}): {e}",
                spec.name,
                key.1,
                root.display()
            ))
        })?;
        let d = Arc::new(d);
        c.insert(key, d.clone());
        Ok(d)
    }

    fn dataset_or_panic(&self) -> Arc<TokenDataset> {
        self.dataset("data")
            .unwrap_or_else(|e| panic!("text task: the corpus validated earlier could not be read again: {e}"))
    }

    /// `(inputs, targets)` of `n` windows of a token stream.
    fn windows_of(&self, tokens: &[u32], seed: u64) -> (Vec<Token>, Vec<Token>) {
        let l = self.seq_len;
        if self.windows == "packed" {
            // the dataset's packing (validate checked that num_examples windows exist)
            let (mut inputs, mut targets) =
                (Vec::with_capacity(self.num_examples * l), Vec::with_capacity(self.num_examples * l));
            for w in crate::text::dataset::window_sequences(tokens, l).take(self.num_examples) {
                inputs.extend(w[..l].iter().map(|&x| x as Token));
                targets.extend(w[1..].iter().map(|&x| x as Token));
            }
            return (inputs, targets);
        }
        let starts = tokens.len() - l; // valid starts: 0 ..= len − L − 1
        fill_examples(
            self.num_examples,
            l,
            seed,
            || (),
            |_, rng, inp, tgt| {
                let p = random_start(rng, starts);
                for (t, (x, y)) in inp.iter_mut().zip(tgt.iter_mut()).enumerate() {
                    *x = tokens[p + t] as Token;
                    *y = tokens[p + t + 1] as Token;
                }
            },
        )
    }
}

/// Uniform in `0 .. n` for any `n ≥ 1` (token streams exceed `i32`'s range of [`FastRng::below`]).
fn random_start(rng: &mut FastRng, n: usize) -> usize {
    use rand::Rng;
    rng.gen_range(0..n)
}

impl Task for TextConfig {
    const TITLE: &'static str = "Real text";
    const ABOUT: &'static str =
        "next-token prediction on windows of a tokenized real corpus (zoology corpus fetch); full LM loss";
    const SOURCE: &'static str = "zoology-rs (Zoology §3's Pile experiments, at small scale)";
    const SUPERVISION: &'static str = "every position (the next token); train split for training, valid split for test";
    const SLICES: &'static [Slice] = &[SEQ_LEN];
    const DEFAULT_VOCAB: usize = 300;
    const METRIC: Metric = Metric::Perplexity;

    fn seq_len(&self) -> usize {
        self.seq_len
    }
    examples_field!();

    fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        check_common(field, self.seq_len, 1, self.num_examples, vocab_size, 1, "token ids")?;
        if !["auto", "train", "valid"].contains(&self.split.as_str()) {
            return Err(config_err(
                format!("{field}.split"),
                format!("must be \"auto\", \"train\" or \"valid\" (got {:?})", self.split),
            ));
        }
        if !["random", "packed"].contains(&self.windows.as_str()) {
            return Err(config_err(
                format!("{field}.windows"),
                format!(
                    "must be \"random\" (random crops) or \"packed\" (consecutive windows) (got {:?})",
                    self.windows
                ),
            ));
        }
        let d = self.dataset(field)?;
        let v = d.tokenizer.vocab_size();
        if vocab_size < v {
            return Err(config_err("data.vocab_size", format!("must be ≥ {v}, the vocabulary of tokenizer {} of {field} (got {vocab_size}); set data.vocab_size = {v}", self.tokenizer)));
        }
        for s in [Split::Train, Split::Test] {
            let cs = self.corpus_split(s);
            let n = d.tokens(cs).len();
            if n < self.seq_len + 1 {
                return Err(config_err(
                    format!("{field}.seq_len"),
                    format!(
                        "the {} split of {} holds {n} tokens, fewer than one window of L = {} (+1 target)",
                        cs.name(),
                        self.corpus,
                        self.seq_len
                    ),
                ));
            }
            let w = crate::text::dataset::num_windows(n, self.seq_len);
            if self.windows == "packed" && self.num_examples > w {
                return Err(config_err(
                    format!("{field}.num_examples"),
                    format!("{} packed windows asked, but the {} split of {} holds {w} of L = {}; lower num_examples or use windows = \"random\"", self.num_examples, cs.name(), self.corpus, self.seq_len),
                ));
            }
        }
        Ok(())
    }

    fn generate(&self, _vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let d = self.dataset_or_panic();
        self.windows_of(d.tokens(self.corpus_split(split)), seed)
    }

    /// The obvious loop: one example at a time, a `Vec` per window, the crop drawn from the same
    /// per-example stream (so the naive data equal the fast data).
    fn naive(&self, _vocab_size: usize, seed: u64, split: Split) -> (Vec<Token>, Vec<Token>) {
        let d = self.dataset_or_panic();
        let tokens = d.tokens(self.corpus_split(split));
        let l = self.seq_len;
        let (mut inputs, mut targets) = (vec![], vec![]);
        for i in 0..self.num_examples {
            let p = if self.windows == "packed" {
                i * l
            } else {
                let mut rng = FastRng::seed_from_u64(super::mix_seed(seed, i as u64));
                random_start(&mut rng, tokens.len() - l)
            };
            let w: Vec<u32> = tokens[p..p + l + 1].to_vec();
            for t in 0..l {
                inputs.push(w[t] as Token);
                targets.push(w[t + 1] as Token);
            }
        }
        (inputs, targets)
    }

    fn legend(&self, _vocab_size: usize) -> String {
        match self.dataset("data") {
            Ok(d) => format!(
                "token ids of tokenizer {} (vocabulary {}, end-of-text = {}); every position's target is the next token; the text of the window follows the ids",
                self.tokenizer,
                d.tokenizer.vocab_size(),
                d.tokenizer.eot()
            ),
            Err(e) => format!("token ids ({e})"),
        }
    }

    /// The window's ids with every target marked (`[x→y]`, y the next id), then its text.
    fn render(&self, inputs: &[Token], targets: &[Token]) -> String {
        let ids: Vec<u32> = inputs.iter().map(|&x| x as u32).chain(targets.last().map(|&y| y as u32)).collect();
        let text = self.dataset("data").and_then(|d| d.tokenizer.decode(&ids)).unwrap_or_else(|e| format!("({e})"));
        format!("{}\n    text: {:?}", render_tokens(inputs, targets), text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TaskConfig, IGNORE};
    use super::*;

    fn fixture_cfg(dir: &std::path::Path) -> TextConfig {
        TextConfig { corpus_dir: dir.display().to_string(), ..Default::default() }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zoology-text-task-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Every target is the next input; every window is a substring of its split's stream; train
    /// and test segments read different splits; packed windows are the dataset's packing.
    #[test]
    fn windows_are_substrings_of_the_right_split_with_next_token_targets() {
        let dir = tmp("layout");
        let c = fixture_cfg(&dir);
        let tc = TaskConfig::Text(c.clone());
        tc.validate(300, "t").unwrap();
        let d = c.dataset("t").unwrap();
        for (split, cs) in [(Split::Train, corpus::Split::Train), (Split::Test, corpus::Split::Valid)] {
            let s = tc.generate_split(300, 3, split);
            let stream: Vec<Token> = d.tokens(cs).iter().map(|&x| x as Token).collect();
            let mut starts = std::collections::HashSet::new();
            for i in 0..s.n {
                let (x, y) = s.example(i);
                assert!(y.iter().all(|&t| t != IGNORE), "every position is supervised");
                assert_eq!(&x[1..], &y[..y.len() - 1], "targets are the next inputs");
                let mut w = x.to_vec();
                w.push(*y.last().unwrap());
                let p = stream
                    .windows(w.len())
                    .position(|s| s == &w[..])
                    .unwrap_or_else(|| panic!("{split:?} example {i} is not in its split"));
                starts.insert(p);
            }
            assert!(starts.len() > 20, "random crops start in many places ({} distinct)", starts.len());
        }
        let packed = TextConfig { windows: "packed".into(), num_examples: 3, ..c.clone() };
        let s = TaskConfig::Text(packed).generate_split(300, 1, Split::Test);
        let w = d.windows(corpus::Split::Valid, 32).unwrap();
        assert_eq!(s.inputs, w.inputs[..3 * 32]);
        assert_eq!(s.targets, w.targets[..3 * 32]);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Random starts are uniform over the valid range (chi-square over 8 bins).
    #[test]
    fn random_starts_are_uniform() {
        let mut counts = [0f64; 8];
        let n = 1000usize;
        for i in 0..16_000u64 {
            let mut rng = FastRng::seed_from_u64(super::super::mix_seed(7, i));
            let p = random_start(&mut rng, n);
            assert!(p < n);
            counts[p * 8 / n] += 1.0;
        }
        super::super::stats::assert_fits(&counts, &[1.0 / 8.0; 8], "start bins");
    }

    #[test]
    fn bad_configs_are_named_errors() {
        let dir = tmp("bad");
        let c = fixture_cfg(&dir);
        let e = TaskConfig::Text(c.clone()).validate(100, "data.train[0]").unwrap_err().to_string();
        assert!(e.contains("data.vocab_size") && e.contains("bpe300"), "{e}");
        let e = TaskConfig::Text(TextConfig { split: "test".into(), ..c.clone() })
            .validate(300, "data.train[0]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.train[0].split"), "{e}");
        let e = TaskConfig::Text(TextConfig { windows: "packed".into(), num_examples: 100_000, ..c.clone() })
            .validate(300, "d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.num_examples") && e.contains("packed windows"), "{e}");
        let e = TaskConfig::Text(TextConfig { corpus: "pile".into(), ..c.clone() })
            .validate(300, "d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.corpus") && e.contains("sword-en"), "{e}");
        // a real corpus that was never fetched: the error names the fetch command, nothing is downloaded
        let e = TaskConfig::Text(TextConfig { corpus: "sword-en".into(), tokenizer: "bpe4096".into(), ..c })
            .validate(4096, "d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("zoology corpus fetch"), "{e}");
        assert!(!dir.join("sword-en").join("debs").exists(), "nothing was fetched");
        std::fs::remove_dir_all(&dir).ok();
    }
}
