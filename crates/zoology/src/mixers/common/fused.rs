//! Fused CPU kernels written in C++ against libtorch (`crates/zoology/csrc/`, compiled by the
//! crate's build script), exposed as tch tensors that take part in autograd.
//!
//! [`selective_scan`]: Mamba's S6 recurrence with its input and output transforms, as Mamba's own
//! `selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)`:
//! `Δ = softplus(dt + bias)` (or `dt + bias`), `h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t x_t) B_tᵀ`,
//! `y_t = h_t C_t + D ⊙ x_t`, `out = y ⊙ silu(z)` (or `y`), computed per (batch row, block of
//! channels) with the state kept in a small buffer while the loop runs: no `[B, L, E, N]` tensor
//! is built. The forward stores the state every `checkpoint_every` positions (`[B, ⌈L/k⌉, N,
//! E]`, only when autograd needs it); its backward (a `torch::autograd::Function`) recomputes
//! each k-segment from its checkpoint and runs the adjoint recurrence back through it, giving
//! the gradients of every tensor input. f32 and f64, CPU tensors only ([`fused_supported`]);
//! callers keep a tensor form for other devices.

use std::ffi::{c_char, CStr};
use tch::{Device, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn zoology_selective_scan(
        x: *const C_tensor,
        dt: *const C_tensor,
        a: *const C_tensor,
        b: *const C_tensor,
        c: *const C_tensor,
        d: *const C_tensor,
        z: *const C_tensor,
        dt_bias: *const C_tensor,
        softplus: i32,
        k: i64,
        isa: i64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn zoology_scan_isa(isa: i64) -> *const c_char;
}

/// Which compiled kernels to run: the best the CPU supports, or one named (tests use these to
/// check every build that this CPU can run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Best = 0,
    Generic = 1,
    Avx2 = 2,
    Avx512 = 3,
}

impl Isa {
    /// The kernels' name ("generic", "avx2", "avx512") where this CPU and build have them.
    pub fn name(self) -> Option<&'static str> {
        let p = unsafe { zoology_scan_isa(self as i64) };
        if p.is_null() {
            None
        } else {
            // the C side returns pointers to string literals
            unsafe { CStr::from_ptr(p) }.to_str().ok()
        }
    }
}

/// Whether the fused kernels run on tensors of this device and kind (CPU, f32 or f64).
pub fn fused_supported(device: Device, kind: tch::Kind) -> bool {
    device == Device::Cpu && matches!(kind, tch::Kind::Float | tch::Kind::Double)
}

/// The inputs of [`selective_scan`]: `x, dt: [B, L, E]`, `a: [E, N]`, `b, c: [B, L, N]`,
/// `d: [E]`, optional `z: [B, L, E]` and `dt_bias: [E]`; all on the CPU and of one kind (f32 or
/// f64).
pub struct ScanArgs<'a> {
    pub x: &'a Tensor,
    /// Δ before the bias and softplus (Δ itself when `dt_bias` is None and `softplus` false).
    pub dt: &'a Tensor,
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub c: &'a Tensor,
    pub d: &'a Tensor,
    /// Output gate: `out = y ⊙ silu(z)`.
    pub z: Option<&'a Tensor>,
    pub dt_bias: Option<&'a Tensor>,
    /// `Δ = softplus(dt + dt_bias)` instead of `dt + dt_bias`.
    pub softplus: bool,
}

/// Fused selective scan (see the module doc) → `[B, L, E]`, differentiable in every tensor
/// input. `checkpoint_every ≥ 1` trades backward memory (`B·⌈L/k⌉·N·E`) against the working set
/// of the recomputation (`k·N` states per channel; every state is recomputed once either way).
/// Errors (shapes, kinds, devices) come back as the C++ message.
pub fn f_selective_scan(args: &ScanArgs, checkpoint_every: i64, isa: Isa) -> Result<Tensor, String> {
    let opt = |t: Option<&Tensor>| t.map_or(std::ptr::null(), |t| t.as_ptr());
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let err = unsafe {
        zoology_selective_scan(
            args.x.as_ptr(),
            args.dt.as_ptr(),
            args.a.as_ptr(),
            args.b.as_ptr(),
            args.c.as_ptr(),
            args.d.as_ptr(),
            opt(args.z),
            opt(args.dt_bias),
            args.softplus as i32,
            checkpoint_every,
            isa as i64,
            &mut out,
        )
    };
    if !err.is_null() {
        let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
        unsafe { libc::free(err as *mut libc::c_void) };
        return Err(msg);
    }
    assert!(!out.is_null(), "zoology_selective_scan returned neither a tensor nor an error");
    // the C side hands over a new heap at::Tensor*; tch's Tensor owns and frees it
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// [`f_selective_scan`] with the best kernels; panics with the C++ message on bad input (as
/// tch's own operations do).
pub fn selective_scan(args: &ScanArgs, checkpoint_every: i64) -> Tensor {
    f_selective_scan(args, checkpoint_every, Isa::Best).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixers::testing::rel_err;
    use tch::Kind;

    /// The scan written out per position with plain tensor ops, sharing no helper with the
    /// kernels or with Mamba's forms: `[B, L, E]`. `gate`: use z and the bias; `softplus`.
    fn naive(c: &Case, gate: bool, softplus: bool) -> Tensor {
        let (bsz, l, e) = c.x.size3().unwrap();
        let n = c.a.size()[1];
        let pre = if gate { &c.dt + &c.bias } else { c.dt.shallow_clone() };
        // softplus in its stable form max(v, 0) + log1p(e^{−|v|})
        let delta = if softplus { pre.clamp_min(0.0) + (-pre.abs()).exp().log1p() } else { pre };
        let mut h = Tensor::zeros([bsz, e, n], (c.x.kind(), c.x.device()));
        let mut ys = Vec::with_capacity(l as usize);
        for t in 0..l {
            let (dtt, xt) = (delta.select(1, t).unsqueeze(-1), c.x.select(1, t)); // [B, E, 1], [B, E]
            let decay = (&dtt * c.a.unsqueeze(0)).exp(); // [B, E, N]
            h = decay * h + &dtt * xt.unsqueeze(-1) * c.b.select(1, t).unsqueeze(1);
            let y = (&h * c.c.select(1, t).unsqueeze(1)).sum_dim_intlist([-1i64].as_slice(), false, c.x.kind());
            let y = y + &c.d * &xt;
            ys.push(if gate {
                let zt = c.z.select(1, t);
                y * &zt * zt.sigmoid()
            } else {
                y
            });
        }
        Tensor::stack(&ys, 1)
    }

    struct Case {
        x: Tensor,
        dt: Tensor,
        a: Tensor,
        b: Tensor,
        c: Tensor,
        d: Tensor,
        z: Tensor,
        bias: Tensor,
    }

    /// Random inputs in Mamba's ranges (A < 0; `dt_scale` scales Δ, which is > 0 as a softplus
    /// and, without one, taken as softplus(·) here), leaves that require grad.
    fn case(bsz: i64, l: i64, e: i64, n: i64, kind: Kind, dt_scale: f64, seed: i64) -> Case {
        let _rng = crate::mixers::testing::seed_guard(seed);
        let o = (kind, Device::Cpu);
        let leaf = |t: Tensor| t.detach().set_requires_grad(true);
        Case {
            x: leaf(Tensor::randn([bsz, l, e], o)),
            dt: leaf((Tensor::randn([bsz, l, e], o) - 1.0).softplus() * dt_scale),
            a: leaf(-(Tensor::rand([e, n], o) * 2.0 + 0.1)),
            b: leaf(Tensor::randn([bsz, l, n], o)),
            c: leaf(Tensor::randn([bsz, l, n], o)),
            d: leaf(Tensor::randn([e], o)),
            z: leaf(Tensor::randn([bsz, l, e], o) * 2.0),
            bias: leaf(Tensor::randn([e], o)),
        }
    }

    impl Case {
        fn inputs(&self) -> [&Tensor; 8] {
            [&self.x, &self.dt, &self.a, &self.b, &self.c, &self.d, &self.z, &self.bias]
        }
        fn args(&self, gate: bool, softplus: bool) -> ScanArgs<'_> {
            ScanArgs {
                x: &self.x,
                dt: &self.dt,
                a: &self.a,
                b: &self.b,
                c: &self.c,
                d: &self.d,
                z: gate.then_some(&self.z),
                dt_bias: gate.then_some(&self.bias),
                softplus,
            }
        }
        /// A copy in another kind, as new leaves.
        fn to_kind(&self, kind: Kind) -> Case {
            let f = |t: &Tensor| t.to_kind(kind).detach().set_requires_grad(true);
            Case {
                x: f(&self.x),
                dt: f(&self.dt),
                a: f(&self.a),
                b: f(&self.b),
                c: f(&self.c),
                d: f(&self.d),
                z: f(&self.z),
                bias: f(&self.bias),
            }
        }
        /// Values and the gradients of `Σ w ⊙ y` w.r.t. every input (zero where unused).
        fn run(&self, y: Tensor, w: &Tensor) -> (Tensor, Vec<Tensor>) {
            let ins = self.inputs();
            let g = Tensor::run_backward(&[(&y * w.to_kind(y.kind())).sum(y.kind())], &ins, false, false);
            let g = g.into_iter().zip(ins).map(|(g, p)| if g.defined() { g } else { p.zeros_like() }).collect();
            (y.detach(), g)
        }
    }

    const NAMES: [&str; 8] = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias"];

    fn isas() -> Vec<Isa> {
        let v: Vec<Isa> = [Isa::Generic, Isa::Avx2, Isa::Avx512].into_iter().filter(|i| i.name().is_some()).collect();
        assert!(v.contains(&Isa::Generic));
        v
    }

    /// f64: the fused scan and every gradient (x, dt, A, B, C, D, and z, dt_bias when used)
    /// against autograd through the naive loop, for each kernel build this CPU runs, with and
    /// without the gate / bias and the softplus, over lengths that leave a partial last
    /// checkpoint segment, L = 1, a checkpoint interval of 1 and one longer than L, and channel
    /// counts that leave a partial lane block (E = 5, 21, 17; lanes are 16) and N above 16.
    #[test]
    fn fused_scan_matches_the_naive_loop_values_and_all_gradients_f64() {
        let shapes = [(2, 7, 5, 3, 3), (1, 1, 5, 4, 4), (2, 16, 21, 4, 4), (3, 13, 16, 2, 1), (2, 9, 17, 19, 20)];
        for (si, &(bsz, l, e, n, k)) in shapes.iter().enumerate() {
            let cs = case(bsz, l, e, n, Kind::Double, 1.0, si as i64);
            let w = crate::mixers::testing::seeded(1000 + si as i64, || {
                Tensor::randn([bsz, l, e], (Kind::Double, Device::Cpu))
            });
            for (gate, softplus) in [(false, false), (true, true), (true, false), (false, true)] {
                let (want, want_g) = cs.run(naive(&cs, gate, softplus), &w);
                for isa in isas() {
                    let (got, got_g) = cs.run(f_selective_scan(&cs.args(gate, softplus), k, isa).unwrap(), &w);
                    let tag = format!("{isa:?} B={bsz} L={l} E={e} N={n} k={k} gate {gate} softplus {softplus}");
                    let err = rel_err(&got, &want);
                    assert!(err < 1e-12, "{tag}: values rel err {err:.2e}");
                    for ((name, g), wg) in NAMES.iter().zip(&got_g).zip(&want_g) {
                        let err = rel_err(g, wg);
                        assert!(err < 1e-11, "{tag}: d{name} rel err {err:.2e}");
                    }
                }
            }
        }
    }

    /// f32 (the training kind, with the kernels' own exp, softplus, sigmoid and flush-to-zero)
    /// against the f64 naive loop, including steps large enough that exp(Δ A) underflows.
    #[test]
    fn fused_scan_f32_matches_the_f64_loop() {
        for (dt_scale, seed) in [(1.0, 1), (40.0, 2)] {
            let cs = case(2, 23, 19, 4, Kind::Double, dt_scale, seed);
            let w = crate::mixers::testing::seeded(7, || Tensor::randn([2, 23, 19], (Kind::Double, Device::Cpu)));
            let c32 = cs.to_kind(Kind::Float);
            for (gate, softplus) in [(false, false), (true, true)] {
                let (want, want_g) = cs.run(naive(&cs, gate, softplus), &w);
                for isa in isas() {
                    let (got, got_g) = c32.run(f_selective_scan(&c32.args(gate, softplus), 5, isa).unwrap(), &w);
                    let tag = format!("{isa:?} Δ×{dt_scale} gate {gate} softplus {softplus}");
                    let err = rel_err(&got.to_kind(Kind::Double), &want);
                    assert!(err < 2e-6, "{tag}: values rel err {err:.2e}");
                    for ((name, g), wg) in NAMES.iter().zip(&got_g).zip(&want_g) {
                        let err = rel_err(&g.to_kind(Kind::Double), wg);
                        assert!(err < 2e-5, "{tag}: d{name} rel err {err:.2e}");
                    }
                }
            }
        }
    }

    /// Without autograd (no input requires grad) the forward alone runs and gives the same values.
    #[test]
    fn fused_scan_without_grad_gives_the_same_values() {
        let cs = case(2, 11, 7, 3, Kind::Double, 1.0, 3);
        let with = f_selective_scan(&cs.args(true, true), 4, Isa::Best).unwrap();
        let without = tch::no_grad(|| f_selective_scan(&cs.args(true, true), 4, Isa::Best)).unwrap();
        assert!(with.requires_grad() && !without.requires_grad());
        assert_eq!(rel_err(&with.detach(), &without), 0.0);
    }

    /// Bad input is an error naming what is wrong, not a crash.
    #[test]
    fn fused_scan_rejects_bad_input_with_a_message() {
        let cs = case(2, 5, 4, 3, Kind::Double, 1.0, 4);
        let bad = Tensor::zeros([2, 5, 2], (Kind::Double, Device::Cpu));
        let e = f_selective_scan(&ScanArgs { b: &bad, ..cs.args(false, false) }, 4, Isa::Best).unwrap_err();
        assert!(e.contains("B must be"), "{e}");
        let e = f_selective_scan(&ScanArgs { z: Some(&bad), ..cs.args(false, false) }, 4, Isa::Best).unwrap_err();
        assert!(e.contains("z must be"), "{e}");
        let e = f_selective_scan(&cs.args(false, false), 0, Isa::Best).unwrap_err();
        assert!(e.contains("checkpoint interval"), "{e}");
        let xf = cs.x.to_kind(Kind::Float);
        let e = f_selective_scan(&ScanArgs { x: &xf, ..cs.args(false, false) }, 4, Isa::Best).unwrap_err();
        assert!(e.contains("all inputs must be"), "{e}");
    }
}
