//! Synthetic task generators. A task turns a validated config and a seed into a [`Segment`]:
//! `n` sequences of one length, with per-position targets where only supervised positions
//! carry a token id and every other target is [`IGNORE`].

pub mod mqar;

use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Token ids are stored as i32 on the host (half the memory of i64; converted to int64 tensors
/// on the device).
pub type Token = i32;

/// Target value of positions that carry no loss and no metric (PyTorch's −100 convention).
pub const IGNORE: Token = -100;

/// `n` sequences of length `seq_len`, stored row-major (`inputs[i * seq_len + t]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub seq_len: usize,
    pub n: usize,
    pub inputs: Vec<Token>,
    pub targets: Vec<Token>,
    /// Labels for per-slice metrics, e.g. `{"num_kv_pairs": "4", "seq_len": "64"}`.
    pub slices: BTreeMap<String, String>,
}

impl Segment {
    pub fn example(&self, i: usize) -> (&[Token], &[Token]) {
        let r = i * self.seq_len..(i + 1) * self.seq_len;
        (&self.inputs[r.clone()], &self.targets[r])
    }
    /// `(inputs, targets)` as int64 tensors `[n, seq_len]` on `device`.
    pub fn to_tensors(&self, device: tch::Device) -> (tch::Tensor, tch::Tensor) {
        let shape = [self.n as i64, self.seq_len as i64];
        let t = |v: &[Token]| tch::Tensor::from_slice(v).view(shape).to_kind(tch::Kind::Int64).to_device(device);
        (t(&self.inputs), t(&self.targets))
    }

    /// Number of supervised positions in the whole segment.
    pub fn num_supervised(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// A task generator's config, selected by `task = "..."` in a `[[data.train]]` / `[[data.test]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum TaskConfig {
    Mqar(mqar::MqarConfig),
}

impl TaskConfig {
    /// Checks preconditions against the shared vocabulary size; `field` prefixes error paths.
    pub fn validate(&self, vocab_size: usize, field: &str) -> Result<()> {
        match self {
            TaskConfig::Mqar(c) => c.validate(vocab_size, field),
        }
    }
    pub fn generate(&self, vocab_size: usize, seed: u64) -> Segment {
        match self {
            TaskConfig::Mqar(c) => c.generate(vocab_size, seed),
        }
    }
    pub fn seq_len(&self) -> usize {
        match self {
            TaskConfig::Mqar(c) => c.seq_len,
        }
    }
    pub fn num_examples(&self) -> usize {
        match self {
            TaskConfig::Mqar(c) => c.num_examples,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            TaskConfig::Mqar(c) => c.describe(),
        }
    }
}

/// SplitMix64: a seed mixer used to derive independent stream seeds from one run seed.
pub fn mix_seed(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman & Vigna), seeded through SplitMix64: a small, fast, portable generator
/// for per-example data streams. Its output for a given seed is fixed by this code, so data
/// never changes with a dependency upgrade (unlike `rand`'s `SmallRng`).
#[derive(Debug, Clone)]
pub struct FastRng {
    s: [u64; 4],
}

impl FastRng {
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        FastRng { s: [next(), next(), next(), next()] }
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in (0, 1]: 53 random bits, never 0.
    #[inline]
    pub fn unit_open0(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard exponential variate, `−ln U`.
    #[inline]
    pub fn exp1(&mut self) -> f64 {
        -self.unit_open0().ln()
    }
}

impl rand::RngCore for FastRng {
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.next()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core_fill(self, dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand::Error> {
        rand_core_fill(self, dest);
        Ok(())
    }
}

fn rand_core_fill(r: &mut FastRng, dest: &mut [u8]) {
    for chunk in dest.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}
