//! Training (layer: training): AdamW ([`optim`]), checkpoints ([`checkpoint`]), metrics and
//! run-directory files ([`metrics`]) and the loop itself ([`trainer`]). The run's config is
//! [`crate::config::RunConfig`].

pub mod checkpoint;
pub mod metrics;
pub mod optim;
pub mod trainer;

pub use trainer::{train, TrainOptions};
