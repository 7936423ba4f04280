//! Tokenized splits in the cache, and their packing into fixed-length windows.
//!
//! Layout of `<corpus dir>/<tokenizer name>/`: `tokenizer.json`, `train.bin`, `valid.bin` (token
//! ids, little-endian `u16` when the vocabulary fits, else `u32`) and `dataset.json`
//! ([`DatasetManifest`]: corpus and the checksum of the text it was made from, tokenizer and its
//! checksum, counts, checksums of both token files). A split's stream is its documents in corpus
//! order, each followed by the end-of-text token.
//!
//! Packing: window k is `s[kL .. kL + L + 1]` of the stream `s`; inputs are its first L tokens,
//! targets its last L (the next token at every position). Consecutive windows share one token
//! (the last target of window k is the first input of window k + 1), so every token after the
//! first is a target exactly once; the `(len − 1) mod L` tokens at the end are left out.

use crate::error::{io_err, Error, Result};
use crate::text::corpus::{Document, Split};
use crate::text::sha256_hex;
use crate::text::tokenizer::{Tokenizer, TokenizerSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Version of the on-disk layout; a different value means "prepare again".
pub const DATASET_FORMAT: u32 = 1;

/// Number of windows of length `seq_len` in a stream of `n` tokens.
pub fn num_windows(n: usize, seq_len: usize) -> usize {
    if seq_len == 0 || n < 2 {
        0
    } else {
        (n - 1) / seq_len
    }
}

/// The `L + 1` tokens of every window, in order.
pub fn window_sequences(tokens: &[u32], seq_len: usize) -> impl Iterator<Item = &[u32]> {
    (0..num_windows(tokens.len(), seq_len)).map(move |k| &tokens[k * seq_len..k * seq_len + seq_len + 1])
}

/// `n` windows of `seq_len` inputs and targets, row-major (`inputs[i * seq_len + t]`), as i32
/// like the task segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub seq_len: usize,
    pub n: usize,
    pub inputs: Vec<i32>,
    pub targets: Vec<i32>,
}

impl Windows {
    pub fn example(&self, i: usize) -> (&[i32], &[i32]) {
        let r = i * self.seq_len..(i + 1) * self.seq_len;
        (&self.inputs[r.clone()], &self.targets[r])
    }
}

/// Packs a token stream into windows (see the module docs). An error if not one window fits.
pub fn windows(tokens: &[u32], seq_len: usize) -> Result<Windows> {
    if seq_len == 0 {
        return Err(Error::Data("windows: the context length must be ≥ 1".into()));
    }
    let n = num_windows(tokens.len(), seq_len);
    if n == 0 {
        return Err(Error::Data(format!(
            "windows: {} tokens do not fill one window of {seq_len} (+1 target)",
            tokens.len()
        )));
    }
    let mut inputs = Vec::with_capacity(n * seq_len);
    let mut targets = Vec::with_capacity(n * seq_len);
    for w in window_sequences(tokens, seq_len) {
        inputs.extend(w[..seq_len].iter().map(|&x| x as i32));
        targets.extend(w[1..].iter().map(|&x| x as i32));
    }
    Ok(Windows { seq_len, n, inputs, targets })
}

/// One split's token file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFile {
    pub file: String,
    pub documents: usize,
    pub chars: usize,
    pub tokens: usize,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerRecord {
    pub name: String,
    pub vocab_size: usize,
    pub eot: u32,
    pub file: String,
    pub sha256: String,
    /// What it was trained on (BPE) or where its ranks come from (r50k).
    pub source: String,
}

/// `dataset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetManifest {
    pub format: u32,
    pub corpus: String,
    /// Checksum of the corpus's `documents.jsonl` these tokens were made from.
    pub text_sha256: String,
    pub tokenizer: TokenizerRecord,
    /// `u16` or `u32`, little-endian.
    pub dtype: String,
    pub train: SplitFile,
    pub valid: SplitFile,
    /// Characters per token over both splits (UTF-8 characters, end-of-text tokens counted).
    pub chars_per_token: f64,
    pub train_tokenizer_s: f64,
    pub encode_s: f64,
    pub created_by: String,
}

impl DatasetManifest {
    pub fn split(&self, s: Split) -> &SplitFile {
        match s {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
        }
    }
}

fn bar(quiet: bool, len: u64, msg: String) -> ProgressBar {
    let pb = if quiet {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(len)
    };
    pb.set_style(
        ProgressStyle::with_template("{msg:32} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

pub(crate) fn spinner(quiet: bool, msg: String) -> ProgressBar {
    let pb = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

fn encode_ids(ids: &[u32], wide: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * if wide { 4 } else { 2 });
    for &i in ids {
        if wide {
            out.extend(i.to_le_bytes());
        } else {
            out.extend((i as u16).to_le_bytes());
        }
    }
    out
}

fn decode_ids(bytes: &[u8], dtype: &str, what: &Path) -> Result<Vec<u32>> {
    match dtype {
        "u16" if bytes.len() % 2 == 0 => {
            Ok(bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect())
        }
        "u32" if bytes.len() % 4 == 0 => {
            Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        _ => Err(Error::Data(format!(
            "{}: {} bytes is not a whole number of {dtype} tokens",
            what.display(),
            bytes.len()
        ))),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written file under the final name.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Trains or loads the tokenizer, encodes every document (in parallel) and writes the token
/// files and `dataset.json` under `out`. The BPE is trained on the training split only.
pub fn tokenize(
    corpus: &str,
    text_sha256: &str,
    docs: &[Document],
    spec: TokenizerSpec,
    out: &Path,
    quiet: bool,
) -> Result<DatasetManifest> {
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let t0 = Instant::now();
    let (tk, source) = match spec {
        TokenizerSpec::Bpe { vocab_size } => {
            let sp = spinner(quiet, format!("training BPE (vocab {vocab_size}) on the training split"));
            let tk = Tokenizer::train_bpe(
                docs.iter().filter(|d| d.split == Split::Train).map(|d| d.text.as_str()),
                vocab_size,
            )?;
            sp.finish_with_message(format!("trained BPE, vocab {}", tk.vocab_size()));
            (tk, format!("byte-level BPE trained on the training split of {corpus} (min pair count 2)"))
        }
        TokenizerSpec::R50k => (Tokenizer::r50k()?, "GPT-2 r50k_base ranks from the tiktoken-rs crate".to_string()),
    };
    let train_tokenizer_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let pb = bar(quiet, docs.len() as u64, format!("encoding with {}", spec.name()));
    let encoded: Vec<Vec<u32>> = docs
        .par_iter()
        .map(|d| {
            let r = tk.encode(&d.text);
            pb.inc(1);
            r
        })
        .collect::<Result<_>>()?;
    pb.finish();
    let encode_s = t1.elapsed().as_secs_f64();
    let wide = tk.vocab_size() > 65_536;
    let dtype = if wide { "u32" } else { "u16" };
    let mut files = vec![];
    let mut total_chars = 0usize;
    let mut total_tokens = 0usize;
    for split in [Split::Train, Split::Valid] {
        let mut ids = vec![];
        let (mut documents, mut chars) = (0, 0);
        for (d, e) in docs.iter().zip(&encoded).filter(|(d, _)| d.split == split) {
            ids.extend_from_slice(e);
            ids.push(tk.eot());
            documents += 1;
            chars += d.text.chars().count() + 1;
        }
        let bytes = encode_ids(&ids, wide);
        let file = format!("{}.bin", split.name());
        write_atomic(&out.join(&file), &bytes)?;
        total_chars += chars;
        total_tokens += ids.len();
        files.push(SplitFile { file, documents, chars, tokens: ids.len(), sha256: sha256_hex(&bytes) });
    }
    let json = tk.to_json()?;
    write_atomic(&out.join("tokenizer.json"), json.as_bytes())?;
    let valid = files.pop().expect("two splits");
    let train = files.pop().expect("two splits");
    let m = DatasetManifest {
        format: DATASET_FORMAT,
        corpus: corpus.to_string(),
        text_sha256: text_sha256.to_string(),
        tokenizer: TokenizerRecord {
            name: spec.name(),
            vocab_size: tk.vocab_size(),
            eot: tk.eot(),
            file: "tokenizer.json".into(),
            sha256: sha256_hex(json.as_bytes()),
            source,
        },
        dtype: dtype.into(),
        train,
        valid,
        chars_per_token: total_chars as f64 / total_tokens.max(1) as f64,
        train_tokenizer_s,
        encode_s,
        created_by: format!("zoology-rs {}", env!("CARGO_PKG_VERSION")),
    };
    write_atomic(&out.join("dataset.json"), serde_json::to_string_pretty(&m).expect("serialisable").as_bytes())?;
    Ok(m)
}

/// A tokenized corpus loaded from the cache, every checksum verified.
#[derive(Debug)]
pub struct TokenDataset {
    pub dir: PathBuf,
    pub manifest: DatasetManifest,
    pub tokenizer: Tokenizer,
    train: Vec<u32>,
    valid: Vec<u32>,
}

impl TokenDataset {
    /// Opens `<corpus_dir>/<tokenizer>/`. Verifies that the corpus text still has the checksum
    /// the tokens were made from, and the checksums of the tokenizer and both token files.
    /// Never downloads: a missing dataset is an error that says how to prepare it.
    pub fn open(corpus_dir: &Path, tokenizer: &str) -> Result<Self> {
        let spec = TokenizerSpec::parse(tokenizer, "tokenizer")?;
        let corpus = crate::text::corpus::CorpusManifest::load_verified(corpus_dir)?;
        let dir = corpus_dir.join(spec.name());
        let mpath = dir.join("dataset.json");
        let fix = format!("run `zoology corpus fetch --corpus {} --tokenizer {}`", corpus.corpus, spec.name());
        let refix =
            format!("run `zoology corpus fetch --corpus {} --tokenizer {} --force`", corpus.corpus, spec.name());
        if !mpath.exists() {
            return Err(Error::Data(format!(
                "{} not found: the corpus has not been tokenized with {}; {fix}",
                mpath.display(),
                spec.name()
            )));
        }
        let text = std::fs::read_to_string(&mpath).map_err(io_err(&mpath))?;
        let manifest: DatasetManifest =
            serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}; {refix}", mpath.display())))?;
        if manifest.format != DATASET_FORMAT {
            return Err(Error::Data(format!(
                "{}: format {} (this version reads {DATASET_FORMAT}); {refix}",
                mpath.display(),
                manifest.format
            )));
        }
        if manifest.text_sha256 != corpus.text_sha256 {
            return Err(Error::Data(format!(
                "{}: made from corpus text {} but the corpus text is now {}; {refix}",
                mpath.display(),
                short(&manifest.text_sha256),
                short(&corpus.text_sha256)
            )));
        }
        let check = |file: &str, want: &str| -> Result<Vec<u8>> {
            let p = dir.join(file);
            let bytes = std::fs::read(&p).map_err(io_err(&p))?;
            let got = sha256_hex(&bytes);
            if got != want {
                return Err(Error::Data(format!(
                    "{}: checksum {} does not match dataset.json ({}): the file was modified; {refix}",
                    p.display(),
                    short(&got),
                    short(want)
                )));
            }
            Ok(bytes)
        };
        let tjson = check(&manifest.tokenizer.file, &manifest.tokenizer.sha256)?;
        let tokenizer = Tokenizer::from_json(
            &String::from_utf8_lossy(&tjson),
            &dir.join(&manifest.tokenizer.file).display().to_string(),
        )?;
        let mut splits = vec![];
        for s in [Split::Train, Split::Valid] {
            let f = manifest.split(s);
            let ids = decode_ids(&check(&f.file, &f.sha256)?, &manifest.dtype, &dir.join(&f.file))?;
            if ids.len() != f.tokens {
                return Err(Error::Data(format!(
                    "{}: {} tokens, dataset.json says {}",
                    dir.join(&f.file).display(),
                    ids.len(),
                    f.tokens
                )));
            }
            splits.push(ids);
        }
        let valid = splits.pop().expect("two");
        let train = splits.pop().expect("two");
        Ok(TokenDataset { dir, manifest, tokenizer, train, valid })
    }

    pub fn tokens(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
        }
    }

    /// The split packed into windows of `seq_len` (see the module docs).
    pub fn windows(&self, split: Split, seq_len: usize) -> Result<Windows> {
        windows(self.tokens(split), seq_len)
            .map_err(|e| Error::Data(format!("{} {} split: {e}", self.manifest.corpus, split.name())))
    }
}

pub(crate) fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_shift_targets_by_one_and_share_boundary_tokens() {
        let s: Vec<u32> = (10..21).collect(); // 11 tokens
        let w = windows(&s, 3).unwrap();
        assert_eq!((w.n, w.seq_len), (3, 3));
        assert_eq!(w.example(0), (&[10, 11, 12][..], &[11, 12, 13][..]));
        assert_eq!(w.example(1), (&[13, 14, 15][..], &[14, 15, 16][..]));
        assert_eq!(w.example(2), (&[16, 17, 18][..], &[17, 18, 19][..]));
        // every token after the first is a target once, up to the left-out tail (token 20)
        let seqs: Vec<&[u32]> = window_sequences(&s, 3).collect();
        assert_eq!(seqs[1], &[13, 14, 15, 16]);
        assert_eq!(num_windows(4, 3), 1);
        assert_eq!(num_windows(3, 3), 0);
        assert!(windows(&s[..3], 3).unwrap_err().to_string().contains("do not fill one window"));
        assert!(windows(&s, 0).is_err());
    }

    #[test]
    fn token_files_round_trip_in_both_widths() {
        let ids = vec![0u32, 1, 65_535, 300];
        assert_eq!(decode_ids(&encode_ids(&ids, false), "u16", Path::new("x")).unwrap(), ids);
        let wide = vec![0u32, 70_000, 50_256];
        assert_eq!(decode_ids(&encode_ids(&wide, true), "u32", Path::new("x")).unwrap(), wide);
        assert!(decode_ids(&[1, 2, 3], "u16", Path::new("t.bin")).unwrap_err().to_string().contains("t.bin"));
    }
}
