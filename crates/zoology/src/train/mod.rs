//! Training: config ([`config`]), AdamW ([`optim`]), checkpoints ([`checkpoint`]), metrics and
//! run-directory files ([`metrics`]) and the loop itself ([`trainer`]).

pub mod checkpoint;
pub mod config;
pub mod fuzz;
pub mod metrics;
pub mod optim;
pub mod trainer;

pub use config::RunConfig;
pub use trainer::{train, TrainOptions};
