//! Parallel scan of a diagonal linear recurrence (used by Mamba's chunked selective scan).

use tch::Tensor;

/// Shifts `t` by `off` positions along `dim` (towards higher indices), filling with `fill`.
fn shift_along(t: &Tensor, dim: i64, off: i64, fill: f64) -> Tensor {
    let nd = t.dim() as i64;
    let n = t.size()[dim as usize];
    let mut pads = vec![0i64; (2 * (nd - dim)) as usize];
    pads[(2 * (nd - 1 - dim)) as usize] = off;
    t.narrow(dim, 0, n - off).pad(pads.as_slice(), "constant", Some(fill))
}

/// Inclusive scan of the linear recurrence `h_r = p_r ⊙ h_{r−1} + b_r` (h_{−1} = 0) along `dim`,
/// by log-depth doubling (Hillis–Steele), for decays `p ∈ [0, 1]` (e.g. `p = exp(Δ·A)` with
/// `Δ·A ≤ 0`). The pair (p, b) stands for the map `h ↦ p h + b`; combining a segment with the
/// one before it gives `(p p′, b + p b′)`. Every factor is ≤ 1, so nothing overflows (products
/// only underflow towards 0, which is the right limit). Returns the cumulative decay
/// `P_r = Π_{s≤r} p_s` and `h_r`. O(n log n) work in ⌈log₂ n⌉ autodiff steps.
pub fn linear_scan(p: &Tensor, b: &Tensor, dim: i64) -> (Tensor, Tensor) {
    let n = p.size()[dim as usize];
    let (mut p, mut b) = (p.shallow_clone(), b.shallow_clone());
    let mut off = 1;
    while off < n {
        b = &b + &p * shift_along(&b, dim, off, 0.0);
        p = &p * shift_along(&p, dim, off, 1.0);
        off *= 2;
    }
    (p, b)
}
