//! Bounded parsers for numeric flags: every number a verb takes is checked where it enters,
//! in the parent process, and clap's error names the flag (`invalid value '0' for '--workers
//! <WORKERS>': must be in [1, 256] (got 0)`); `main` exits 1 on it. A test walks every verb's
//! arguments and fails on a numeric flag that accepts an out-of-range value.

use std::fmt::Display;
use std::str::FromStr;

/// An integer in `[lo, hi]`.
pub fn int<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Copy + Display + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s.trim().parse().map_err(|_| format!("expected an integer in [{lo}, {hi}]"))?;
        if v < lo || v > hi {
            return Err(format!("must be in [{lo}, {hi}] (got {v})"));
        }
        Ok(v)
    }
}

/// A finite number in `(lo, hi]` (`lo` excluded: these are sizes and thresholds).
pub fn real(lo: f64, hi: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v: f64 = s.trim().parse().map_err(|_| format!("expected a number in ({lo}, {hi}]"))?;
        if !(v.is_finite() && v > lo && v <= hi) {
            return Err(format!("must be a finite number in ({lo}, {hi}] (got {v})"));
        }
        Ok(v)
    }
}

/// Most runs at a time of `sweep run` and `quickstart` (each is a process).
pub const MAX_WORKERS: usize = 256;
/// Most timed iterations, repetitions or warm-up steps of a benchmark.
pub const MAX_ITERS: usize = 100_000;
/// Largest batch of a benchmark or of decoding (`generate`, `arhits`): larger ones only
/// allocate more.
pub const MAX_BENCH_BATCH: i64 = 1 << 16;
