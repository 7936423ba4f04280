//! Training (layer: training): AdamW ([`optim`]), checkpoints ([`checkpoint`]), metrics and
//! run-directory files ([`metrics`]) and the loop itself ([`trainer`]). The run's config is
//! [`crate::config::RunConfig`].
//!
//! Layer 8 of 11, **training** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

pub mod checkpoint;
pub mod metrics;
pub mod optim;
pub mod probes;
pub mod trainer;

pub use trainer::{train, TrainOptions};
