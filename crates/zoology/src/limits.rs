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
/// Runs one sweep file may expand to: far more than any shipped grid (zoology-figure2.toml has
/// 448), and few enough that `sweep plan` and `sweep status` of the largest take seconds.
pub const MAX_SWEEP_RUNS: usize = 10_000;
/// Longest name that becomes part of a path (a sweep's `name`, a run config's `name`).
pub const MAX_NAME: usize = 128;

/// Checks a name that becomes a path component (`sweeps/<sweep name>`, `runs/<name>-<id>`):
/// non-empty, at most [`MAX_NAME`] bytes, no `/` or `\`, no control characters, and not `.` or
/// `..` (so it can neither leave its parent directory nor name it); the error names `field`.
pub fn check_path_part(name: &str, field: &str) -> crate::error::Result<()> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_NAME {
        Some("is longer than 128 bytes")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name == "." || name == ".." {
        Some("names a directory itself")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(w) => Err(crate::error::config_err(
            field,
            format!("{name:?} {w}; it becomes a directory name, so use letters, digits, '-', '_' and '.' (e.g. \"figure2\")"),
        )),
    }
}
