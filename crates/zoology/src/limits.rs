//! Upper bounds of the sizes in a config. Each keeps a value from
//! overflowing an integer type downstream or from hanging validation; what fits in memory is
//! [`crate::config::MemoryEstimate`]'s job.
//!
//! Layer 1 of 11, **foundations** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

/// Token ids are stored as i32 on the host, so the largest id, V − 1, must fit in an i32.
pub const MAX_VOCAB: usize = 1 << 31;
pub const MAX_D_MODEL: i64 = 1 << 16;
/// Validation and construction visit every layer.
pub const MAX_LAYERS: i64 = 1024;
pub const MAX_SEQ_LEN: usize = 1 << 24;
pub const MAX_POSITIONS: i64 = 1 << 24;
pub const MAX_EXAMPLES: usize = 1 << 32;
pub const MAX_BATCH: usize = 1 << 24;
/// libtorch takes an i32; more threads than this is a typo.
pub const MAX_THREADS: usize = 1024;
pub const MAX_EPOCHS: usize = 1_000_000;
pub const MAX_STEPS: usize = 1 << 40;
/// A config whose estimated memory exceeds this cannot run on any single machine.
pub const MAX_BYTES: f64 = (1u64 << 40) as f64;
