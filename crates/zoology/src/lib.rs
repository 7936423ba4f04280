//! zoology-rs: a testbed for associative recall in efficient sequence mixers.
//!
//! Data flow of one run: a TOML config ([`config::RunConfig`]) → task generators
//! ([`tasks`]) build train/test [`tasks::Segment`]s → a [`model::LanguageModel`] built from a
//! registered sequence mixer ([`mixers`]) → the training loop ([`train`]) → a run directory
//! (config, metrics.jsonl, summary.json, checkpoint.safetensors; the protocol is [`rundir`]) →
//! results ([`results`]) → plots and reports ([`analysis`]).
//!
//! The modules are layers (docs/ARCHITECTURE.md), bottom to top: foundations ([`error`],
//! [`device`], [`limits`], [`flops`], [`console`]) → data ([`text`], [`tasks`]) → [`mixers`] → [`model`] →
//! [`config`] → [`cost`] → [`rundir`] → [`train`] → uses of trained models ([`generate`],
//! [`construct`], [`bench`], [`results`], [`interop`]) → [`sweep`] → [`analysis`]. Each uses only its own
//! layer and those below; `layering_tests.rs` checks it.

pub mod analysis;
pub mod bench;
pub mod config;
pub mod console;
pub mod construct;
pub mod cost;
pub mod device;
pub mod error;
pub mod flops;
pub mod generate;
pub mod interop;
pub mod limits;
pub mod mixers;
pub mod model;
pub mod results;
pub mod rundir;
pub mod sweep;
pub mod tasks;
pub mod text;
pub mod train;

pub use error::{Error, Result};

#[cfg(test)]
mod layering_tests;
