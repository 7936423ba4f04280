//! FLOP counts: what a training step, a prefill and a decoded token cost, per mixer
//! ([`crate::mixers::Mixer::flops`]) and per model ([`crate::cost::lm_flops`], [`crate::cost::LmFlops`]).
//!
//! # Convention (issue 10; stated once, here)
//!
//! - **A multiply-add is 2 FLOPs.** A matmul `[m, k] × [k, n]` is `2·m·k·n`; a Linear
//!   `d_in → d_out` on one token is `2·d_in·d_out` ([`linear`]); biases are not counted.
//! - **Counted:** contractions (projections, attention scores and their mix of values, the
//!   products of chunked linear attention and of the chunked delta rule, short convolutions,
//!   FFT convolutions) and the per-element arithmetic of recurrent *state* updates and readouts
//!   (scans, modal recurrences, RWKV's wkv), because these scale with the state.
//!   **Not counted:** element-wise work on activations of size `[L, d]` (activations, gating
//!   products, norms, softmax, dropout, residual adds, RoPE rotations, feature maps such as
//!   Based's Taylor expansion), embedding lookups, the loss and the optimizer.
//! - **Causal masking is not discounted:** terms are counted as the fast (training) form
//!   computes them. Attention's parallel form computes the full `L×L` score matrix and masks it,
//!   so its `L²` terms are counted in full (`2·L²·d` for `QKᵀ`, `2·L²·d` for `AV`), not halved.
//!   Chunked forms count whole `C×C` blocks over the padded length `⌈L/C⌉·C`.
//! - **FFT:** a real FFT (or inverse) of length `n` costs `2.5·n·log₂n` ([`rfft`]: half the
//!   complex radix-2 FFT's `5·n·log₂n`, i.e. `n/2·log₂n` butterflies of 10 FLOPs). A causal FFT
//!   convolution pads to `n = 2L` and costs per channel one forward and one inverse transform
//!   plus the complex product over `n/2 + 1` bins (6 FLOPs each): `5·n·log₂n + 6·(n/2 + 1)`,
//!   about `10·L·log₂(2L)` per channel ([`fft_conv`]); `c = 10` is the constant of
//!   `c·L·log₂L·d`.
//! - **Modal recurrences** (complex diagonal SSMs: `long_conv` s4d, `h3`, `stripedhyena`):
//!   12 FLOPs per complex mode per step (complex multiply-add 8, readout `Re(C·s)` accumulated
//!   4, [`modal_step`]); a kernel `K[t] = Re Σ R·p^t` costs 8 per (channel, mode, position)
//!   ([`modal_kernel`]). **Mamba's selective scan:** 9 FLOPs per (position, E, N), the Mamba
//!   paper's count (`9·L·E·N`).
//! - **Backward = 2 × forward** for every term, so **training = 3 × forward** ([`TRAIN_FACTOR`]).
//! - **Per batch:** work that depends only on the parameters (implicit filters, SSM kernels and
//!   their FFTs) runs once per batch: [`MixerFlops::forward_per_batch`], not multiplied by the
//!   batch size. Decoding treats it as cached (not counted per token).
//! - **Decode per token at context L:** the step that processes the L-th token (the state holds
//!   L tokens after it, the token itself included).
//! - **Prefill per sequence:** what the mixer's prefill form runs: its parallel form (hyena,
//!   stripedhyena: plus the closed-form final state), otherwise the step form at positions
//!   `1..=L` (the sum of the decode costs); per-batch work is counted once (B = 1).
//!
//! The model adds ([`LanguageModel::flops`](crate::model::LanguageModel::flops)): state mixers
//! (`mlp` 2 Linears d↔4d, `glu` 3, `rwkv_channel` 3, `identity` none), MAD's autoencoder decoder
//! (2 Linears d→d per position), and the LM head `2·d·V` per position it is applied at: the
//! trainer's sparse head applies it only at supervised positions (MQAR: the value positions), a
//! full head at every position. Embeddings are lookups (0 FLOPs).
//!
//! This module (layer: foundations) holds the convention and the per-operation formulas only;
//! the cost of a whole model or run is [`crate::cost`].
//!
//! Layer 1 of 11, **foundations** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use serde::Serialize;

/// Training = forward + backward, backward = 2 × forward.
pub const TRAIN_FACTOR: f64 = 3.0;

/// FLOPs of a Linear `d_in → d_out` on one token.
pub fn linear(d_in: i64, d_out: i64) -> f64 {
    2.0 * d_in as f64 * d_out as f64
}

/// FLOPs of a depthwise FIR with `taps` taps over `channels` channels, one token.
pub fn fir(channels: i64, taps: i64) -> f64 {
    2.0 * channels as f64 * taps as f64
}

/// One real FFT (or inverse) of length `n`: `2.5·n·log₂n`.
pub fn rfft(n: i64) -> f64 {
    let n = n.max(1) as f64;
    2.5 * n * n.log2()
}

/// A causal FFT convolution of one sequence of length `l` over `channels` channels (padded to
/// `n = 2L`): forward + inverse transform and the product over `n/2 + 1` bins.
pub fn fft_conv(channels: i64, l: i64) -> f64 {
    let n = 2 * l;
    channels as f64 * (2.0 * rfft(n) + 6.0 * (n / 2 + 1) as f64)
}

/// The filter's transform of an FFT convolution (once per batch).
pub fn fft_filter(channels: i64, l: i64) -> f64 {
    channels as f64 * rfft(2 * l)
}

/// One step of a modal recurrence: `channels × modes` complex modes.
pub fn modal_step(channels: i64, modes: i64) -> f64 {
    12.0 * channels as f64 * modes as f64
}

/// A modal kernel (or closed-form state) over `l` positions.
pub fn modal_kernel(channels: i64, modes: i64, l: i64) -> f64 {
    8.0 * channels as f64 * modes as f64 * l as f64
}

/// `⌈l/c⌉·c`, the length a chunked form works on.
pub fn padded(l: i64, c: i64) -> i64 {
    let c = c.max(1);
    (l + c - 1) / c * c
}

/// A mixer's FLOPs for sequences of `seq_len` tokens (see the module doc for the convention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MixerFlops {
    /// Forward (training form) per sequence.
    pub forward_per_seq: f64,
    /// Forward work that depends only on the parameters, once per batch.
    pub forward_per_batch: f64,
    /// Prefill of one prompt of `seq_len` tokens (per-batch work included once).
    pub prefill_per_seq: f64,
    /// The step that processes token number `seq_len`.
    pub decode_per_token: f64,
}

impl MixerFlops {
    /// A mixer whose prefill runs the step form token by token: `decode(t)` is the step at
    /// context `t`; prefill = `Σ_{t=1..=L} decode(t)`.
    pub fn stepwise(forward_per_seq: f64, forward_per_batch: f64, seq_len: i64, decode: impl Fn(i64) -> f64) -> Self {
        let prefill_per_seq = (1..=seq_len.max(0)).map(&decode).sum();
        MixerFlops { forward_per_seq, forward_per_batch, prefill_per_seq, decode_per_token: decode(seq_len) }
    }
    /// A mixer whose prefill is its parallel form plus `extra` (e.g. a closed-form final state).
    pub fn parallel(forward_per_seq: f64, forward_per_batch: f64, extra: f64, decode_per_token: f64) -> Self {
        MixerFlops {
            forward_per_seq,
            forward_per_batch,
            prefill_per_seq: forward_per_seq + forward_per_batch + extra,
            decode_per_token,
        }
    }
    /// Forward over a batch of `batch` sequences.
    pub fn forward(&self, batch: i64) -> f64 {
        batch as f64 * self.forward_per_seq + self.forward_per_batch
    }
    /// Forward + backward over a batch of `batch` sequences.
    pub fn train(&self, batch: i64) -> f64 {
        TRAIN_FACTOR * self.forward(batch)
    }
    /// Training FLOPs per sequence (a batch of one).
    pub fn train_per_seq(&self) -> f64 {
        self.train(1)
    }
}

impl std::ops::Add for MixerFlops {
    type Output = MixerFlops;
    fn add(self, o: MixerFlops) -> MixerFlops {
        MixerFlops {
            forward_per_seq: self.forward_per_seq + o.forward_per_seq,
            forward_per_batch: self.forward_per_batch + o.forward_per_batch,
            prefill_per_seq: self.prefill_per_seq + o.prefill_per_seq,
            decode_per_token: self.decode_per_token + o.decode_per_token,
        }
    }
}
