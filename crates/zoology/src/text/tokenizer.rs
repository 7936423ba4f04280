//! Byte-level BPE tokenizers: one trained on the corpus (Hugging Face `tokenizers`, GPT-2's
//! pre-tokenizer regex and byte alphabet, a vocabulary of a few thousand), or GPT-2's own
//! `r50k_base` ranks (shipped inside the `tiktoken-rs` crate, no network). Both are lossless on
//! any UTF-8 text and have an end-of-text token that separates documents.
//!
//! Saved as JSON: a trained BPE is Hugging Face's `tokenizer.json` (loadable from Python with
//! `tokenizers.Tokenizer.from_file`); r50k is `{"zoology_tokenizer": "tiktoken", "encoding":
//! "r50k_base"}` (its ranks are fixed by the crate version in Cargo.lock).

use crate::error::{config_err, io_err, Error, Result};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// The end-of-text marker placed after every document.
pub const EOT: &str = "<|endoftext|>";

/// Which tokenizer: `bpe<N>` (trained on the training split, vocabulary N) or `r50k` (GPT-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerSpec {
    Bpe { vocab_size: usize },
    R50k,
}

impl TokenizerSpec {
    /// Parses `bpe4096` / `r50k`; `field` names the flag or config key in errors.
    pub fn parse(s: &str, field: &str) -> Result<Self> {
        if s == "r50k" || s == "r50k_base" || s == "gpt2" {
            return Ok(TokenizerSpec::R50k);
        }
        if let Some(n) = s.strip_prefix("bpe") {
            let vocab_size: usize =
                n.parse().map_err(|_| config_err(field, format!("`{s}`: expected bpe<vocab size>, e.g. bpe4096")))?;
            if !(300..=65_536).contains(&vocab_size) {
                return Err(config_err(field, format!("`{s}`: a BPE vocabulary must be in 300..=65536 (256 bytes + merges + end-of-text; u16 token files)")));
            }
            return Ok(TokenizerSpec::Bpe { vocab_size });
        }
        Err(config_err(
            field,
            format!(
                "unknown tokenizer `{s}`: use bpe<vocab size> (e.g. bpe4096, trained on the corpus) or r50k (GPT-2)"
            ),
        ))
    }
    /// The directory / display name: `bpe4096`, `r50k`.
    pub fn name(&self) -> String {
        match self {
            TokenizerSpec::Bpe { vocab_size } => format!("bpe{vocab_size}"),
            TokenizerSpec::R50k => "r50k".into(),
        }
    }
}

enum Inner {
    Bpe(Box<tokenizers::Tokenizer>),
    Tiktoken(tiktoken_rs::CoreBPE),
}

/// A tokenizer with encode / decode / save / load. Token ids are `u32`.
pub struct Tokenizer {
    inner: Inner,
    spec: TokenizerSpec,
    eot: u32,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({}, vocab {}, eot {})", self.spec.name(), self.vocab_size, self.eot)
    }
}

fn terr(what: &str) -> impl Fn(tokenizers::Error) -> Error + '_ {
    move |e| Error::Other(format!("tokenizer: {what}: {e}"))
}

impl Tokenizer {
    /// GPT-2's byte-level BPE (50,257 tokens, end-of-text 50256).
    pub fn r50k() -> Result<Self> {
        let bpe = tiktoken_rs::r50k_base()
            .map_err(|e| Error::Other(format!("tokenizer: loading r50k_base from tiktoken-rs: {e}")))?;
        Ok(Tokenizer { inner: Inner::Tiktoken(bpe), spec: TokenizerSpec::R50k, eot: 50256, vocab_size: 50257 })
    }

    /// Trains a byte-level BPE with `vocab_size` entries (256 bytes, the merges, end-of-text)
    /// on `docs`. Merges need a pair count ≥ 2. Deterministic for the same documents.
    pub fn train_bpe<S: AsRef<str> + Send>(docs: impl Iterator<Item = S> + Send, vocab_size: usize) -> Result<Self> {
        let mut tk = tokenizers::Tokenizer::new(ModelWrapper::BPE(BPE::default()));
        tk.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        tk.with_decoder(Some(ByteLevel::default()));
        let trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(2)
            .special_tokens(vec![AddedToken::from(EOT, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut trainer = TrainerWrapper::BpeTrainer(trainer);
        tk.train(&mut trainer, docs).map_err(terr("training BPE"))?;
        Self::from_hf(tk)
    }

    fn from_hf(tk: tokenizers::Tokenizer) -> Result<Self> {
        let eot = tk.token_to_id(EOT).ok_or_else(|| Error::Other(format!("tokenizer: the BPE has no {EOT} token")))?;
        let vocab_size = tk.get_vocab_size(true);
        Ok(Tokenizer { inner: Inner::Bpe(Box::new(tk)), spec: TokenizerSpec::Bpe { vocab_size }, eot, vocab_size })
    }

    pub fn spec(&self) -> TokenizerSpec {
        self.spec
    }
    /// Number of token ids (every id is `< vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    /// The end-of-text id placed after each document.
    pub fn eot(&self) -> u32 {
        self.eot
    }

    /// Token ids of `text` (plain text: no special tokens are added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Bpe(tk) => Ok(tk.encode(text, false).map_err(terr("encoding"))?.get_ids().to_vec()),
            Inner::Tiktoken(bpe) => Ok(bpe.encode_ordinary(text)),
        }
    }

    /// The text of `ids`. Byte sequences that are not valid UTF-8 (a window that cuts a
    /// character) become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            return Err(Error::Data(format!(
                "tokenizer {}: id {bad} is outside the vocabulary ({})",
                self.spec.name(),
                self.vocab_size
            )));
        }
        match &self.inner {
            Inner::Bpe(tk) => tk.decode(ids, false).map_err(terr("decoding")),
            Inner::Tiktoken(bpe) => {
                let bytes = bpe.decode_bytes(ids).map_err(|e| Error::Data(format!("tokenizer r50k: {e:?}")))?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }

    /// The JSON this tokenizer is saved as.
    pub fn to_json(&self) -> Result<String> {
        match &self.inner {
            Inner::Bpe(tk) => tk.to_string(false).map_err(terr("serialising")),
            Inner::Tiktoken(_) => {
                Ok(serde_json::json!({"zoology_tokenizer": "tiktoken", "encoding": "r50k_base"}).to_string())
            }
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()?).map_err(io_err(path))
    }

    pub fn from_json(json: &str, what: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Data(format!("{what}: not JSON: {e}")))?;
        if let Some(kind) = v.get("zoology_tokenizer") {
            return match (kind.as_str(), v.get("encoding").and_then(|e| e.as_str())) {
                (Some("tiktoken"), Some("r50k_base")) => Self::r50k(),
                _ => Err(Error::Data(format!("{what}: unknown tokenizer {v}; this version knows tiktoken r50k_base"))),
            };
        }
        let tk: tokenizers::Tokenizer =
            json.parse().map_err(|e| Error::Data(format!("{what}: not a tokenizer.json: {e}")))?;
        Self::from_hf(tk)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_json(&json, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "The keeper of the lighthouse counted the ships. The keeper wrote each name in the book, \
        and the book grew heavy with names. “Naïve” ships — שָׁלוֹם — came too.\nThe keeper of the lighthouse slept.";

    fn small() -> Tokenizer {
        let docs: Vec<String> = (0..20).map(|i| format!("{TEXT} Ship number {i} came to the keeper.")).collect();
        Tokenizer::train_bpe(docs.iter(), 320).unwrap()
    }

    #[test]
    fn bpe_round_trip_save_load_and_determinism() {
        let tk = small();
        assert_eq!(tk.vocab_size(), 320);
        let ids = tk.encode(TEXT).unwrap();
        assert!(ids.len() < TEXT.len() / 2, "merges compress the text: {} ids for {} bytes", ids.len(), TEXT.len());
        assert!(ids.iter().all(|&i| (i as usize) < tk.vocab_size() && i != tk.eot()));
        assert_eq!(tk.decode(&ids).unwrap(), TEXT);
        let dir = std::env::temp_dir().join(format!("zoology-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tokenizer.json");
        tk.save(&p).unwrap();
        let back = Tokenizer::load(&p).unwrap();
        assert_eq!(back.encode(TEXT).unwrap(), ids);
        assert_eq!(back.eot(), tk.eot());
        assert_eq!(small().to_json().unwrap(), tk.to_json().unwrap(), "training twice gives the same tokenizer");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn r50k_is_gpt2() {
        let tk = Tokenizer::r50k().unwrap();
        assert_eq!(tk.encode("Hello world").unwrap(), vec![15496, 995]);
        assert_eq!(tk.decode(&tk.encode(TEXT).unwrap()).unwrap(), TEXT);
        let back = Tokenizer::from_json(&tk.to_json().unwrap(), "t").unwrap();
        assert_eq!((back.eot(), back.vocab_size()), (50256, 50257));
        assert!(tk.decode(&[50257]).unwrap_err().to_string().contains("outside the vocabulary"));
    }

    #[test]
    fn specs_parse_with_named_errors() {
        assert_eq!(TokenizerSpec::parse("bpe4096", "f").unwrap(), TokenizerSpec::Bpe { vocab_size: 4096 });
        assert_eq!(TokenizerSpec::parse("r50k", "f").unwrap().name(), "r50k");
        for bad in ["bpe", "bpe12", "bpe99999", "sentencepiece"] {
            let e = TokenizerSpec::parse(bad, "--tokenizer").unwrap_err().to_string();
            assert!(e.contains("--tokenizer") && e.contains(bad), "{e}");
        }
    }
}
