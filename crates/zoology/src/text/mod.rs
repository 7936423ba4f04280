//! Real text: a corpus obtained offline from Debian packages, a tokenizer, token datasets packed
//! into windows, and the AR-hit analysis of Zoology's section 3 (issue 9).
//!
//! - [`deb`]: `.deb` files read (and, for fixtures, written) in memory.
//! - [`sword`]: compressed SWORD modules (`.bzs/.bzv/.bzz`), entries in index order.
//! - [`markup`]: OSIS/ThML to plain text; book and chapter markers.
//! - [`corpus`]: corpus specs, segmentation into documents, the split by chapter, and
//!   [`corpus::prepare`] (fetch → derive → tokenize into `${XDG_CACHE_HOME:-~/.cache}/zoology-rs/corpus/`).
//! - [`tokenizer`]: a byte-level BPE trained on the corpus, or GPT-2's r50k.
//! - [`dataset`]: token files with checksums; windows `(inputs, targets)` of a context length.
//! - [`arhits`]: AR-hit / first-occurrence / other labels, bigram-frequency and distance
//!   buckets, per-slice perplexity, the share of a perplexity gap that AR hits explain, and the
//!   corpus's gap distribution against MQAR's power law.
//! - [`fixture`]: a tiny synthetic corpus in the same package formats, for offline tests.
//!
//! Nothing here downloads at training time: [`dataset::TokenDataset::open`] only reads the
//! cache and verifies it.
//!
//! Layer 2 of 11, **data** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod arhits;
pub mod corpus;
pub mod dataset;
pub mod deb;
pub mod fixture;
pub mod markup;
pub mod sword;
pub mod tokenizer;

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
