//! Cutting a sequence into whole chunks, for every chunked training form (linear attention,
//! the delta rule, Mamba's scan, RWKV's WKV, Mega's and the sliding window's blocks): one
//! layout rule and one zero-padding helper, plus the intra-chunk masks the chunked cores share.

use tch::{Kind, Tensor};

/// How `len` positions are cut into `n` chunks of `c` positions: `c` is the nominal chunk
/// clamped to `[1, len]`, `n = ⌈len / c⌉`, and the last chunk is zero-padded at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    /// Positions in the sequence.
    pub len: i64,
    /// Number of chunks.
    pub n: i64,
    /// Positions per chunk.
    pub c: i64,
}

impl ChunkLayout {
    pub fn new(len: i64, chunk: i64) -> Self {
        let c = chunk.min(len).max(1);
        ChunkLayout { len, n: (len + c - 1) / c, c }
    }

    /// `n·c`, the padded length.
    pub fn padded_len(&self) -> i64 {
        self.n * self.c
    }

    /// Zero-pads dimension `dim` of `x` (of length `len`) at its end to `n·c` positions and
    /// splits it into `[n, c]`: `[…, len, …] → […, n, c, …]`.
    pub fn split(&self, x: &Tensor, dim: i64) -> Tensor {
        let mut shape = x.size();
        let nd = shape.len() as i64;
        let dim = if dim < 0 { dim + nd } else { dim };
        assert_eq!(
            shape[dim as usize], self.len,
            "ChunkLayout::split: dimension {dim} of {shape:?} is not the layout's length"
        );
        let pad = self.padded_len() - self.len;
        let x = if pad == 0 {
            x.shallow_clone()
        } else {
            // constant_pad_nd pads from the last dimension backwards, (before, after) per dim
            let mut spec = vec![0i64; (2 * (nd - dim)) as usize];
            spec[(2 * (nd - 1 - dim) + 1) as usize] = pad;
            x.constant_pad_nd(spec)
        };
        shape.splice(dim as usize..dim as usize + 1, [self.n, self.c]);
        x.reshape(shape.as_slice())
    }

    /// Inverse of [`Self::split`]: merges dimensions `dim, dim + 1` (`[n, c]`) and drops the
    /// padding, `[…, n, c, …] → […, len, …]`.
    pub fn merge(&self, y: &Tensor, dim: i64) -> Tensor {
        let mut shape = y.size();
        let nd = shape.len() as i64;
        let dim = if dim < 0 { dim + nd } else { dim };
        assert_eq!(
            (shape[dim as usize], shape[dim as usize + 1]),
            (self.n, self.c),
            "ChunkLayout::merge: dimensions {dim}, {} of {shape:?} are not [n, c]",
            dim + 1
        );
        shape.splice(dim as usize..dim as usize + 2, [self.padded_len()]);
        y.reshape(shape.as_slice()).narrow(dim, 0, self.len)
    }
}

/// Per-head `q, k: [B, H, L, K]` and `v: [B, H, L, V]` cut into chunks along time, as the
/// chunked cores (linear attention, delta rule) start: `q, k, v` become `[B, H, n, C, ·]`.
pub struct ChunkedQkv {
    pub b: i64,
    pub h: i64,
    pub dk: i64,
    pub dv: i64,
    pub lay: ChunkLayout,
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
}

impl ChunkedQkv {
    pub fn new(q: &Tensor, k: &Tensor, v: &Tensor, chunk: i64) -> Self {
        let (b, h, l, dk) = q.size4().unwrap();
        let dv = v.size()[3];
        let lay = ChunkLayout::new(l, chunk);
        ChunkedQkv { b, h, dk, dv, lay, q: lay.split(q, 2), k: lay.split(k, 2), v: lay.split(v, 2) }
    }
}

/// Mask `[C, C]` for `s ≤ t` (`strict = false`) or `s < t` (`strict = true`), true where allowed.
pub fn lower_mask(c: i64, strict: bool, device: tch::Device) -> Tensor {
    Tensor::ones([c, c], (Kind::Bool, device)).tril(if strict { -1 } else { 0 })
}

/// `exp(b_t − b_s)` for allowed pairs (`mask[t, s]`) and 0 elsewhere, from cumulative log decays
/// `b: [..., C]`; the exponent is ≤ 0 wherever it is used, so nothing overflows.
pub fn pair_decay(b: &Tensor, mask: &Tensor) -> Tensor {
    let diff = b.unsqueeze(-1) - b.unsqueeze(-2); // [..., t, s]
    diff.masked_fill(&mask.logical_not(), f64::NEG_INFINITY).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn split_pads_with_zeros_and_merge_inverts_it() {
        let x = Tensor::arange(2 * 7 * 3, (Kind::Float, Device::Cpu)).view([2, 7, 3]) + 1.0;
        let lay = ChunkLayout::new(7, 3);
        assert_eq!((lay.n, lay.c, lay.padded_len()), (3, 3, 9));
        let s = lay.split(&x, 1);
        assert_eq!(s.size(), vec![2, 3, 3, 3]);
        // chunk 1 holds positions 3..6; the last chunk is position 6 then two zero rows
        assert!(s.select(1, 1).equal(&x.narrow(1, 3, 3)));
        assert!(s.select(1, 2).narrow(1, 0, 1).equal(&x.narrow(1, 6, 1)));
        assert_eq!(s.select(1, 2).narrow(1, 1, 2).abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert!(lay.merge(&s, 1).equal(&x));
        // a negative dim, a chunk longer than the sequence, and an exact fit
        assert!(ChunkLayout::new(7, 3).split(&x, -2).equal(&s));
        assert_eq!(ChunkLayout::new(7, 64), ChunkLayout { len: 7, n: 1, c: 7 });
        assert_eq!(ChunkLayout::new(6, 3).split(&x.narrow(1, 0, 6), 1).size(), vec![2, 2, 3, 3]);
    }
}
