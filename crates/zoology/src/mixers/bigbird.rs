//! `bigbird`: BigBird's sparse attention (Zaheer et al. 2020), causal: every query attends, with
//! one softmax, to a sliding window, a few global tokens and a few random blocks of the past
//! (Zoology's `BigBIRDAttention`, with a deterministic, decodable random pattern).
//!
//! With block size `b`, window `w = num_window_blocks·b`, `g = num_global_blocks`,
//! `r = num_random_blocks`, per head (width `h = D/H`, `[q, k, v] = x W_qkvᵀ + b`), query `t`
//! (in block `i = ⌊t/b⌋`) sees key `s` iff `s ≤ t` and
//!
//! ```text
//! t − w ≤ s                  (window: the last w+1 tokens, Zoology's 3b)
//! or s < g·b                 (global: the first g blocks, Zoology's first 2b tokens)
//! or ⌊s/b⌋ ∈ R(i)            (random: r blocks of the past, chosen per query block)
//! y_t = Σ_{s seen} softmax_s(q_t·k_s/√h) v_s,   y = concat_heads(y) W_oᵀ + b_o
//! ```
//!
//! **The random blocks.** `R(i)` is drawn from the blocks that are neither global nor in any
//! window of block `i`: `E(i) = {j : g ≤ j ≤ i − nw − 1}` (nw = `num_window_blocks`). It is the
//! content of a *reservoir* of `r` slots after the blocks `g, g+1, …, i − nw − 1` have been
//! offered to it in order (Vitter's algorithm R): the `k`-th offered block (from 0) takes slot
//! `k` while `k < r`, else slot `u = hash(seed, layer, k) mod (k+1)` when `u < r`, and is
//! dropped otherwise. So each `R(i)` is a uniformly random `min(r, |E(i)|)`-subset of `E(i)`
//! (BigBird's per-block distribution), fixed by `seed` and the layer index, identical in every
//! form and shared by the heads, and decoding needs only the `r` blocks the reservoir holds, not
//! the whole KV cache. Unlike BigBird's independent draws, consecutive query blocks share most
//! of their random blocks (docs/DECISIONS.md).
//!
//! Forms:
//! - parallel: the sequence is cut into blocks of `b` (one block of L when `L < b`); each query
//!   block gathers its `(min(nw+1, n))·b` window keys (positions `≥ g·b`), the `min(g·b, L)`
//!   global keys and, when some block has an eligible random block (`n > nw + 1 + g`), `r·b`
//!   random keys (empty slots masked): `K_w = min(nw+1, n)·c + min(g·b, L) + [n > nw+1+g]·r·b`
//!   keys per query block, masked to the rule above, one softmax. O(L·K_w·d).
//! - reference: the dense `[L, L]` mask of the rule above on the full score matrix, explicit
//!   softmax per row (the reservoir pattern computed by its own loop).
//! - recurrent: the first `g·b` tokens' keys and values, the recent tokens from the start of
//!   block `i − nw` (those still in some window, or not yet offered to the reservoir), the
//!   reservoir's blocks, and the position. At the first token of block `i` the block
//!   `i − nw − 1` leaves the recent buffer and is offered to the reservoir.
//!
//! State after L tokens (`i = ⌊(L−1)/b⌋`): `1 + 2·d·(min(L, g·b) + R_L + b·min(r, o_L))` with
//! the recent tokens `R_L = L − max(g·b, (i − nw)·b)` (0 when `L ≤ g·b`) and the blocks offered
//! `o_L = max(0, i − nw − g)`; bounded by `1 + 2·d·((g + nw + 1 + r)·b)`, so it does not grow
//! with L once `L > (g + nw + 1 + r)·b` (it saw-tooths within a block). Zoology's
//! `state_size()` is `2·7·b·d` (`state_size_zoology`).
//!
//! FLOPs ([`crate::flops`] convention): projections `8·d²` per token; scores and mix over the
//! gathered keys, masked entries included: `4·d·K_w` per position over `⌈L/c⌉·c`. Decode at
//! context L: `8·d² + 4·d·N_L`, `N_L` the keys the L-th token sees (`min(L, g·b)` global,
//! `L − max(g·b, L−1−w)` window when `L > g·b`, `b·min(r, o_L)` random); prefill is the step form.
//!
//! Departures from Zoology's code (docs/DECISIONS.md): Zoology redraws `3b` random 2×2 squares
//! of the `[L, L]` mask with `torch.randint` at every call (train and eval), so its function is
//! random and cannot be decoded; here the random part is BigBird's `r` random blocks per query
//! block, fixed by the seed. Zoology's `−10000` additive masks are exact `−∞` here.
//!
//! Init: `wqkv` N(0, 0.02), `out_proj` N(0, 0.02/√(2·n_layers)), zero biases (Zoology's rule).

use super::attention::{Attention, AttentionConfig};
use super::common::bounds::int_in;
use super::common::chunking::ChunkLayout;
use super::common::layers::{merge_heads, split_heads};
use super::{BuildCtx, Mixer, MixerKind, MixerState};
use crate::error::Result;
use crate::flops::MixerFlops;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BigBirdConfig {
    /// Block size b (Zoology's `block_size`, 128; its configs use 4 … 128).
    pub block_size: i64,
    /// Window in blocks: the last `num_window_blocks·b + 1` tokens (Zoology: 3b).
    pub num_window_blocks: i64,
    /// Global blocks: the first `num_global_blocks·b` tokens (Zoology: 2b).
    pub num_global_blocks: i64,
    /// Random blocks per query block (BigBird: 3).
    pub num_random_blocks: i64,
    /// Number of heads (must divide d_model; Zoology: 1).
    pub num_heads: i64,
    /// Dropout on the attention weights in training (Zoology: 0).
    pub dropout: f64,
    /// Seed of the random-block pattern (mixed with the layer index).
    pub seed: u64,
}

impl Default for BigBirdConfig {
    fn default() -> Self {
        BigBirdConfig {
            block_size: 128,
            num_window_blocks: 3,
            num_global_blocks: 2,
            num_random_blocks: 3,
            num_heads: 1,
            dropout: 0.0,
            seed: 0,
        }
    }
}

/// splitmix64 (Steele et al.): a fixed, platform-independent 64-bit mix.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The reservoir rule of the random blocks: where the `k`-th offered block goes.
#[derive(Debug, Clone, Copy)]
struct Reservoir {
    slots: i64,
    key: u64,
}

impl Reservoir {
    fn new(slots: i64, seed: u64, layer: usize) -> Self {
        Reservoir { slots, key: splitmix64(seed ^ splitmix64(0xB16B_12D5 ^ layer as u64)) }
    }
    /// Slot taken by the `k`-th offered block (0-based), or None when it is dropped.
    fn slot_for(&self, k: i64) -> Option<i64> {
        if k < self.slots {
            return Some(k);
        }
        let u = (splitmix64(self.key ^ splitmix64(k as u64)) % (k as u64 + 1)) as i64;
        (u < self.slots).then_some(u)
    }
}

/// `R(i)`: the blocks a reservoir holds after the blocks `g ..= i − nw − 1` were offered, by
/// its own loop over the offers (used by the reference).
fn reservoir_blocks(res: &Reservoir, g: i64, nw: i64, i: i64) -> Vec<i64> {
    let mut held: Vec<Option<i64>> = vec![None; res.slots as usize];
    for (k, j) in (g..=(i - nw - 1)).enumerate() {
        if let Some(u) = res.slot_for(k as i64) {
            held[u as usize] = Some(j);
        }
    }
    held.into_iter().flatten().collect()
}

#[derive(Debug)]
pub struct BigBird {
    attn: Attention,
    b: i64,
    nw: i64,
    g: i64,
    r: i64,
    res: Reservoir,
    block_size_cfg: i64,
}

impl BigBird {
    fn w(&self) -> i64 {
        self.nw * self.b
    }
    fn gb(&self) -> i64 {
        self.g * self.b
    }

    /// The reservoir slots (block index per filled slot, slot order) for each query block
    /// `0..n`: the fast form's table, built by offering blocks in order.
    fn random_table(&self, n: i64) -> Vec<Vec<i64>> {
        let mut slots: Vec<i64> = vec![];
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let j = i - self.nw - 1; // offered at the start of block i
            if j >= self.g {
                if let Some(u) = self.res.slot_for(j - self.g) {
                    if u as usize == slots.len() {
                        slots.push(j);
                    } else {
                        slots[u as usize] = j;
                    }
                }
            }
            out.push(slots.clone());
        }
        out
    }

    /// For the reference: `R(i)`, recomputed from scratch by [`reservoir_blocks`].
    fn random_blocks_of(&self, i: i64) -> Vec<i64> {
        reservoir_blocks(&self.res, self.g, self.nw, i)
    }

    /// Whether the parallel form has a random part at `n` blocks.
    fn has_random(&self, n: i64) -> bool {
        self.r > 0 && n > self.nw + 1 + self.g
    }

    /// Key width per query block of the parallel form and the chunk it runs with.
    fn layout(&self, l: i64) -> (ChunkLayout, i64, i64, i64) {
        let lay = ChunkLayout::new(l, self.b);
        let nwin = (self.nw + 1).min(lay.n) * lay.c;
        let glob = self.gb().min(l);
        let rnd = if self.has_random(lay.n) { self.r * self.b } else { 0 };
        (lay, nwin, glob, rnd)
    }

    /// Keys the token at position `t` sees (for the decode FLOPs).
    fn keys_seen(&self, t: i64) -> i64 {
        let glob = (t + 1).min(self.gb());
        let win = if t >= self.gb() { t - self.gb().max(t - self.w()) + 1 } else { 0 };
        glob + win + self.b * self.r.min(self.offered_after(t + 1))
    }

    /// Blocks offered to the reservoir after `l` tokens.
    fn offered_after(&self, l: i64) -> i64 {
        if l == 0 {
            return 0;
        }
        ((l - 1) / self.b - self.nw - self.g).max(0)
    }

    /// Recent tokens held after `l` tokens.
    fn recent_after(&self, l: i64) -> i64 {
        if l <= self.gb() {
            return 0;
        }
        let i = (l - 1) / self.b;
        l - self.gb().max((i - self.nw) * self.b)
    }
}

impl Mixer for BigBird {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.attn.heads_qkv(x, 0, false);
        let (lay, nwin, glob, rnd) = self.layout(l);
        let (n, c) = (lay.n, lay.c);
        let kw = nwin + glob + rnd;
        let table = if rnd > 0 { self.random_table(n) } else { vec![] };
        // key positions per block (into the padded sequence) and the mask per (block, query, key)
        let mut idx = Vec::with_capacity((n * kw) as usize);
        let mut allowed = Vec::with_capacity((n * c * kw) as usize);
        for i in 0..n {
            let mut keys: Vec<(i64, u8)> = Vec::with_capacity(kw as usize); // (position, part)
            let first = (i + 1) * c - nwin;
            keys.extend((0..nwin).map(|u| (first + u, 0u8)));
            keys.extend((0..glob).map(|p| (p, 1u8)));
            if rnd > 0 {
                let held = &table[i as usize];
                for s in 0..self.r {
                    match held.get(s as usize) {
                        Some(&j) => keys.extend((0..self.b).map(|u| (j * self.b + u, 2u8))),
                        None => keys.extend((0..self.b).map(|_| (-1, 2u8))),
                    }
                }
            }
            idx.extend(keys.iter().map(|&(p, _)| p.max(0)));
            for qi in 0..c {
                let t = i * c + qi;
                allowed.extend(keys.iter().map(|&(p, part)| match part {
                    0 => p >= 0 && p <= t && p >= t - self.w() && p >= self.gb(),
                    1 => p <= t,
                    _ => p >= 0,
                }));
            }
        }
        let dev = x.device();
        let idx = Tensor::from_slice(&idx).to_device(dev);
        let allowed = Tensor::from_slice(&allowed).view([n, c, kw]).to_device(dev);
        let pad = |t: &Tensor| lay.split(t, 2).flatten(2, 3); // [B,H,n·c,h], zero-padded
        let (kp, vp) = (pad(&k), pad(&v));
        let (b, h, _, e) = kp.size4().unwrap();
        let kg = kp.index_select(2, &idx).view([b, h, n, kw, e]);
        let vg = vp.index_select(2, &idx).view([b, h, n, kw, e]);
        let qb = lay.split(&q, 2); // [B,H,n,c,h]
        let s = (qb.matmul(&kg.transpose(-2, -1)) * self.attn.scale())
            .masked_fill(&allowed.logical_not(), f64::NEG_INFINITY);
        let a = s.softmax(-1, s.kind()).dropout(self.attn.dropout(), train);
        self.attn.project_out(&lay.merge(&a.matmul(&vg), 2))
    }

    fn reference(&self, x: &Tensor) -> Tensor {
        let (_, l, _) = x.size3().unwrap();
        let (q, k, v) = self.attn.heads_qkv(x, 0, true);
        let mut mask = vec![false; (l * l) as usize];
        for t in 0..l {
            let rand = self.random_blocks_of(t / self.b);
            for s in 0..=t {
                let seen = s >= t - self.w() || s < self.gb() || rand.contains(&(s / self.b));
                mask[(t * l + s) as usize] = seen;
            }
        }
        let mask = Tensor::from_slice(&mask).view([l, l]).to_device(x.device());
        let s =
            (q.matmul(&k.transpose(-2, -1)) * self.attn.scale()).masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
        self.attn.project_out(&Attention::explicit_softmax(&s).matmul(&v))
    }

    /// `[position, global k, global v, recent k, recent v, reservoir k, reservoir v]`, the
    /// caches `[B, n, D]` with heads merged, the position `[B, 1]`.
    fn init_state(&self, batch: i64) -> MixerState {
        let z = Tensor::zeros([batch, 0, self.attn.width()], self.attn.opts());
        let mut t = vec![Tensor::zeros([batch, 1], (Kind::Int64, self.attn.opts().1))];
        t.extend((0..6).map(|_| z.shallow_clone()));
        MixerState::new(t)
    }

    fn step(&self, state: &mut MixerState, x_t: &Tensor) -> Tensor {
        let t = state.tensors[0].int64_value(&[0, 0]);
        let (q, k, v) = self.attn.heads_qkv(&x_t.unsqueeze(1), 0, false);
        let (k1, v1) = (merge_heads(&k), merge_heads(&v)); // [B,1,D]
        let st = &mut state.tensors;
        if t < self.gb() {
            st[1] = Tensor::cat(&[&st[1], &k1], 1);
            st[2] = Tensor::cat(&[&st[2], &v1], 1);
        } else {
            let i = t / self.b;
            let j = i - self.nw - 1;
            if t % self.b == 0 && j >= self.g {
                // block j leaves the recent buffer (it is its first b tokens) for the reservoir
                let (bk, bv) = (st[3].narrow(1, 0, self.b), st[4].narrow(1, 0, self.b));
                if let Some(u) = self.res.slot_for(j - self.g) {
                    let held = st[5].size()[1] / self.b;
                    let put = |cache: &Tensor, blk: &Tensor| {
                        if u == held {
                            Tensor::cat(&[cache, blk], 1)
                        } else {
                            let rest = (held - u - 1) * self.b;
                            Tensor::cat(
                                &[&cache.narrow(1, 0, u * self.b), blk, &cache.narrow(1, (u + 1) * self.b, rest)],
                                1,
                            )
                        }
                    };
                    st[5] = put(&st[5], &bk);
                    st[6] = put(&st[6], &bv);
                }
                let keep = st[3].size()[1] - self.b;
                st[3] = st[3].narrow(1, self.b, keep);
                st[4] = st[4].narrow(1, self.b, keep);
            }
            st[3] = Tensor::cat(&[&st[3], &k1], 1);
            st[4] = Tensor::cat(&[&st[4], &v1], 1);
        }
        // window: the recent tokens at positions ≥ t − w (the buffer ends at t)
        let n_recent = st[3].size()[1];
        let in_win = n_recent.min(self.w() + 1);
        let win = |c: &Tensor| c.narrow(1, n_recent - in_win, in_win);
        let kc = Tensor::cat(&[&st[1], &win(&st[3]), &st[5]], 1);
        let vc = Tensor::cat(&[&st[2], &win(&st[4]), &st[6]], 1);
        let heads = self.attn.num_heads();
        let (kh, vh) = (split_heads(&kc, heads), split_heads(&vc, heads));
        let a = (q.matmul(&kh.transpose(-2, -1)) * self.attn.scale()).softmax(-1, x_t.kind());
        st[0] = &st[0] + 1i64;
        self.attn.project_out(&a.matmul(&vh)).squeeze_dim(1)
    }

    fn state_size(&self, seq_len: i64) -> i64 {
        let l = seq_len;
        let kept = l.min(self.gb()) + self.recent_after(l) + self.b * self.r.min(self.offered_after(l));
        1 + 2 * self.attn.width() * kept
    }

    /// Zoology's `BigBIRDAttention.state_size`: `2 · 7 · block_size · d_model`.
    fn state_size_zoology(&self, _seq_len: i64) -> Option<i64> {
        Some(2 * 7 * self.block_size_cfg * self.attn.width())
    }

    fn flops(&self, seq_len: i64) -> MixerFlops {
        let (d, proj) = (self.attn.width() as f64, self.attn.proj_flops());
        let (lay, nwin, glob, rnd) = self.layout(seq_len);
        let fwd = seq_len as f64 * proj + 4.0 * d * (nwin + glob + rnd) as f64 * lay.padded_len() as f64;
        MixerFlops::stepwise(fwd, 0.0, seq_len, |l| proj + 4.0 * d * self.keys_seen(l - 1) as f64)
    }
}

/// Largest accepted block size and block counts.
const MAX_BLOCK: i64 = 1 << 14;
const MAX_BLOCKS: i64 = 64;

impl MixerKind for BigBird {
    type Config = BigBirdConfig;
    const NAME: &'static str = "bigbird";
    const ABOUT: &'static str =
        "BigBird sparse attention, causal: window + global blocks + random past blocks (seeded reservoir, decodable)";
    const STATE_FORMULA: &'static str =
        "1 + 2·d·(min(L, g·b) + recent + b·min(r, blocks offered)) ≤ 1 + 2·d·(g + nw + 1 + r)·b";
    const CONSTANT_STATE: bool = false;

    fn validate(c: &BigBirdConfig, d: i64, ctx: &BuildCtx, field: &str) -> Result<()> {
        int_in(field, "block_size", c.block_size, 1, MAX_BLOCK, "128")?;
        int_in(field, "num_window_blocks", c.num_window_blocks, 0, MAX_BLOCKS, "3")?;
        int_in(field, "num_global_blocks", c.num_global_blocks, 0, MAX_BLOCKS, "2")?;
        int_in(field, "num_random_blocks", c.num_random_blocks, 0, MAX_BLOCKS, "3")?;
        Attention::validate(&Self::attention_config(c), d, ctx, field)
    }

    fn build(p: nn::Path, d: i64, c: &BigBirdConfig, ctx: &BuildCtx) -> Result<Self> {
        Ok(BigBird {
            attn: Attention::build(p, d, &Self::attention_config(c), ctx)?,
            b: c.block_size,
            nw: c.num_window_blocks,
            g: c.num_global_blocks,
            r: c.num_random_blocks,
            res: Reservoir::new(c.num_random_blocks, c.seed, ctx.layer_idx),
            block_size_cfg: c.block_size,
        })
    }

    fn suite_variants() -> Vec<BigBirdConfig> {
        let small = |b, nw, g, r, heads| BigBirdConfig {
            block_size: b,
            num_window_blocks: nw,
            num_global_blocks: g,
            num_random_blocks: r,
            num_heads: heads,
            ..Default::default()
        };
        vec![
            BigBirdConfig::default(),
            small(4, 1, 1, 2, 2),
            small(3, 2, 1, 1, 1),
            small(2, 0, 0, 3, 1),
            small(8, 1, 2, 1, 2),
        ]
    }
}

impl BigBird {
    fn attention_config(c: &BigBirdConfig) -> AttentionConfig {
        AttentionConfig { num_heads: c.num_heads, dropout: c.dropout, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{seeded, validate_error};
    use super::*;
    use tch::Device;

    fn build(c: &BigBirdConfig, layer: usize) -> (nn::VarStore, BigBird) {
        seeded(0, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = BigBird::build(vs.root(), 8, c, &BuildCtx::new(layer, 2, 64)).unwrap();
            (vs, m)
        })
    }

    /// Every R(i) is a subset of the eligible blocks E(i) of size min(r, |E(i)|); the fast
    /// form's table, the reference's per-block recomputation and the step's reservoir (replayed
    /// through `slot_for`) agree; over many seeds each eligible block is chosen about r/|E(i)|
    /// of the time (uniform subsets).
    #[test]
    fn random_blocks_are_uniform_subsets_of_the_eligible_past() {
        let c = BigBirdConfig {
            block_size: 2,
            num_window_blocks: 1,
            num_global_blocks: 1,
            num_random_blocks: 2,
            ..Default::default()
        };
        let (_vs, m) = build(&c, 0);
        let n = 30;
        let table = m.random_table(n);
        for i in 0..n {
            let eligible: Vec<i64> = (m.g..=(i - m.nw - 1)).collect();
            let mut got = table[i as usize].clone();
            got.sort();
            let mut again = m.random_blocks_of(i);
            again.sort();
            assert_eq!(got, again, "block {i}: table vs reference");
            assert_eq!(got.len() as i64, m.r.min(eligible.len() as i64), "block {i}");
            assert!(got.iter().all(|j| eligible.contains(j)), "block {i}: {got:?} not in {eligible:?}");
            got.dedup();
            assert_eq!(got.len() as i64, m.r.min(eligible.len() as i64), "block {i}: repeated blocks");
        }
        // frequency of each eligible block in R(20) (18 eligible: 1..=18) over 3000 seeds
        let i = 20;
        let mut counts = vec![0f64; 19];
        let trials = 3000;
        for seed in 0..trials {
            for j in reservoir_blocks(&Reservoir::new(2, seed, 0), 1, 1, i) {
                counts[j as usize] += 1.0;
            }
        }
        let expect = trials as f64 * 2.0 / 18.0;
        for (j, &cnt) in counts.iter().enumerate().skip(1) {
            assert!((cnt - expect).abs() < 0.25 * expect, "block {j}: chosen {cnt} times, expected ≈ {expect:.0}");
        }
        // a different layer draws a different pattern
        let (_v2, m2) = build(&c, 1);
        assert_ne!(m2.random_table(n), table, "layers should not share a random pattern");
    }

    /// A mixer whose window and globals cover everything is causal softmax attention; with
    /// every random block removed (r = 0) it is Zoology's window + globals mask.
    #[test]
    fn covers_attention_and_the_zoology_mask() {
        let x = seeded(3, || Tensor::randn([2, 20, 8], (Kind::Float, Device::Cpu)));
        let (_vs, bb) = build(&BigBirdConfig { block_size: 8, ..Default::default() }, 0); // w = 24 ≥ L
        let (_va, at) = seeded(0, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let a = Attention::build(vs.root(), 8, &AttentionConfig::default(), &BuildCtx::new(0, 2, 64)).unwrap();
            (vs, a)
        });
        let e = super::super::testing::rel_err(
            &tch::no_grad(|| bb.forward(&x, false)),
            &tch::no_grad(|| at.forward(&x, false)),
        );
        assert!(e < 1e-5, "full-coverage bigbird vs attention: {e}");
        // r = 0, b = 2: query t sees s ≥ t − 6 and s < 4 only
        let (_v3, m) = build(&BigBirdConfig { block_size: 2, num_random_blocks: 0, ..Default::default() }, 0);
        let xt = x.copy();
        // changing token 10 must not move output 19 (19 − 6 = 13 > 10 and 10 ≥ 4), but moves 16
        let _ = xt.narrow(1, 10, 1).g_add_(&Tensor::ones([2, 1, 8], (Kind::Float, Device::Cpu)));
        let (y1, y2) = tch::no_grad(|| (m.forward(&x, false), m.forward(&xt, false)));
        let d19 = (y1.select(1, 19) - y2.select(1, 19)).abs().max().double_value(&[]);
        let d16 = (y1.select(1, 16) - y2.select(1, 16)).abs().max().double_value(&[]);
        assert!(d19 == 0.0 && d16 > 0.0, "window: d19 {d19}, d16 {d16}");
        // changing token 2 (global) moves output 19
        let xg = x.copy();
        let _ = xg.narrow(1, 2, 1).g_add_(&Tensor::ones([2, 1, 8], (Kind::Float, Device::Cpu)));
        let y3 = tch::no_grad(|| m.forward(&xg, false));
        assert!((y1.select(1, 19) - y3.select(1, 19)).abs().max().double_value(&[]) > 0.0, "global token ignored");
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert!(validate_error(r#"{ name = "bigbird", block_size = 0 }"#).contains("model.mixer.block_size"));
        assert!(
            validate_error(r#"{ name = "bigbird", num_random_blocks = -1 }"#).contains("model.mixer.num_random_blocks")
        );
        assert!(validate_error(r#"{ name = "bigbird", num_heads = 3 }"#).contains("model.mixer.num_heads"));
        assert!(validate_error(r#"{ name = "bigbird", random_toks = 3 }"#).contains("random_toks"));
    }
}
