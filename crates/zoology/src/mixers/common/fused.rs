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
//!
//! [`wkv`]: RWKV-4's WKV recurrence, the same scheme (per-channel state in registers,
//! checkpoints, a backward that recomputes segments) with its three-number state.
//!
//! [`gla`]: GLA's gated linear-attention recurrence with a forget gate per key channel, the same
//! scheme with a `K × V` state per (row, head).

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
    fn zoology_wkv(
        k: *const C_tensor,
        v: *const C_tensor,
        w: *const C_tensor,
        u: *const C_tensor,
        ckpt: i64,
        isa: i64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn zoology_gla(
        q: *const C_tensor,
        k: *const C_tensor,
        v: *const C_tensor,
        g: *const C_tensor,
        ckpt: i64,
        isa: i64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn zoology_scan_isa(isa: i64) -> *const c_char;
}

/// The tensor a C entry point returned, or its error message (freed here).
fn take_result(err: *mut c_char, out: *mut C_tensor) -> Result<Tensor, String> {
    if !err.is_null() {
        let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
        unsafe { libc::free(err as *mut libc::c_void) };
        return Err(msg);
    }
    assert!(!out.is_null(), "a fused kernel returned neither a tensor nor an error");
    // the C side hands over a new heap at::Tensor*; tch's Tensor owns and frees it
    Ok(unsafe { Tensor::from_ptr(out) })
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
    take_result(err, out)
}

/// [`f_selective_scan`] with the best kernels; panics with the C++ message on bad input (as
/// tch's own operations do).
pub fn selective_scan(args: &ScanArgs, checkpoint_every: i64) -> Tensor {
    f_selective_scan(args, checkpoint_every, Isa::Best).unwrap_or_else(|e| panic!("{e}"))
}

/// Positions between the fused WKV's stored states: its state is three numbers per channel, so
/// this only sets the size of the backward's per-segment buffers.
pub const WKV_CHECKPOINT_EVERY: i64 = 32;

/// Fused RWKV-4 WKV: `k, v: [B, L, D]`, decay `w: [D]` (≤ 0, `−exp(time_decay)`), bonus
/// `u: [D]` (`time_first`), on the CPU, one kind (f32 or f64) → `[B, L, D]` with
/// `wkv_t = (a_{t−1} + e^{u+k_t} v_t) / (b_{t−1} + e^{u+k_t})`, `a_t = e^w a_{t−1} + e^{k_t} v_t`,
/// `b_t = e^w b_{t−1} + e^{k_t}` (a, b kept rescaled by their running maximum, as RWKV's kernel
/// does), differentiable in all four. The backward recomputes each `checkpoint_every` segment
/// and carries the state's adjoints rescaled the same way, so nothing overflows in f32.
pub fn f_wkv(
    k: &Tensor,
    v: &Tensor,
    w: &Tensor,
    u: &Tensor,
    checkpoint_every: i64,
    isa: Isa,
) -> Result<Tensor, String> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let err =
        unsafe { zoology_wkv(k.as_ptr(), v.as_ptr(), w.as_ptr(), u.as_ptr(), checkpoint_every, isa as i64, &mut out) };
    take_result(err, out)
}

/// [`f_wkv`] with the best kernels; panics with the C++ message on bad input.
pub fn wkv(k: &Tensor, v: &Tensor, w: &Tensor, u: &Tensor) -> Tensor {
    f_wkv(k, v, w, u, WKV_CHECKPOINT_EVERY, Isa::Best).unwrap_or_else(|e| panic!("{e}"))
}

/// Positions between the fused GLA scan's stored states (`H·d_k·d_v` per row each).
pub const GLA_CHECKPOINT_EVERY: i64 = 16;

/// Fused GLA gated scan: `q, k, g: [B, H, L, K]` (g the log forget gate per key channel, ≤ 0),
/// `v: [B, H, L, V]`, on the CPU, one kind (f32 or f64) → `o: [B, H, L, V]` with
/// `S_t = diag(e^{g_t}) S_{t−1} + k_t v_tᵀ`, `o_t = S_tᵀ q_t`, differentiable in all four. One task
/// per (row, head) holds its `K × V` state in cache; the backward recomputes each
/// `checkpoint_every` segment from its stored state and runs the adjoint back through it.
pub fn f_gla(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Tensor,
    checkpoint_every: i64,
    isa: Isa,
) -> Result<Tensor, String> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let err =
        unsafe { zoology_gla(q.as_ptr(), k.as_ptr(), v.as_ptr(), g.as_ptr(), checkpoint_every, isa as i64, &mut out) };
    take_result(err, out)
}

/// [`f_gla`] with the best kernels; panics with the C++ message on bad input.
pub fn gla(q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor) -> Tensor {
    f_gla(q, k, v, g, GLA_CHECKPOINT_EVERY, Isa::Best).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether [`gla_fp32`] runs on tensors like `q`: on the CPU in f32 or f64, or in bf16 inside a
/// bf16 autocast region (the scan then runs in fp32).
pub fn gla_applies(q: &Tensor) -> bool {
    let dev = q.device();
    let kind = if crate::device::Precision::autocast_active(dev) { tch::Kind::Float } else { q.kind() };
    fused_supported(dev, kind)
}

/// [`gla`] where [`gla_applies`]: under bf16 autocast the inputs arrive in bf16 and the scan runs
/// on their fp32 copies with autocast off (its output is fp32).
pub fn gla_fp32(q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor) -> Tensor {
    use crate::device::{full_precision as f32_, Precision};
    Precision::fp32_region(q.device(), || gla(&f32_(q), &f32_(k), &f32_(v), &f32_(g)))
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

    /// RWKV-4's WKV by its plain double-sum formula (no rescaling; fine in f64 for moderate
    /// keys), sharing nothing with the kernels: `[B, L, D]`.
    fn wkv_plain(k: &Tensor, v: &Tensor, w: &Tensor, u: &Tensor) -> Tensor {
        let l = k.size()[1];
        let mut ys = Vec::with_capacity(l as usize);
        for t in 0..l {
            let e = (u + k.select(1, t)).exp();
            let mut num = &e * v.select(1, t);
            let mut den = e;
            for s in 0..t {
                let e = (w * (t - 1 - s) as f64 + k.select(1, s)).exp();
                num = num + &e * v.select(1, s);
                den = den + e;
            }
            ys.push(num / den);
        }
        Tensor::stack(&ys, 1)
    }

    /// Random WKV inputs (keys scaled by `kscale`), leaves that require grad: k, v, w (< 0), u.
    fn wkv_case(bsz: i64, l: i64, d: i64, kscale: f64, seed: i64) -> [Tensor; 4] {
        let _rng = crate::mixers::testing::seed_guard(seed);
        let o = (Kind::Double, Device::Cpu);
        let leaf = |t: Tensor| t.detach().set_requires_grad(true);
        [
            leaf(Tensor::randn([bsz, l, d], o) * kscale),
            leaf(Tensor::randn([bsz, l, d], o)),
            leaf(-(Tensor::randn([d], o) * 1.5).exp()),
            leaf(Tensor::randn([d], o)),
        ]
    }

    /// ‖a − b‖ / max(‖b‖, 1): relative where the gradient is of order 1 or more, absolute where
    /// it is (analytically) zero, e.g. dk and dw at L = 1, where y = v.
    fn err_floor1(a: &Tensor, b: &Tensor) -> f64 {
        let diff = (a - b).to_kind(Kind::Double).norm().double_value(&[]);
        diff / b.to_kind(Kind::Double).norm().double_value(&[]).max(1.0)
    }

    /// Gradients of `Σ w ⊙ y`; zero where an input is unused (w at L = 1 in the plain formula).
    fn grads_of(y: &Tensor, w: &Tensor, wrt: &[Tensor; 4]) -> Vec<Tensor> {
        let refs: Vec<&Tensor> = wrt.iter().collect();
        let g = Tensor::run_backward(&[(y * w.to_kind(y.kind())).sum(y.kind())], &refs, false, false);
        g.into_iter().zip(wrt).map(|(g, p)| if g.defined() { g } else { p.zeros_like() }).collect()
    }

    /// f64: the fused WKV and the gradients of k, v, w and u against autograd through the plain
    /// formula, for each kernel build, with lengths that leave a partial checkpoint segment,
    /// L = 1, interval 1 and one longer than L, and channel counts that leave a partial lane
    /// block.
    #[test]
    fn fused_wkv_matches_the_plain_formula_values_and_all_gradients_f64() {
        for (si, &(bsz, l, d, k)) in
            [(2, 7, 5, 3), (1, 1, 5, 4), (2, 17, 21, 4), (3, 13, 16, 1), (2, 9, 17, 20)].iter().enumerate()
        {
            let ins = wkv_case(bsz, l, d, 2.0, 50 + si as i64);
            let w = crate::mixers::testing::seeded(60 + si as i64, || {
                Tensor::randn([bsz, l, d], (Kind::Double, Device::Cpu))
            });
            let want = wkv_plain(&ins[0], &ins[1], &ins[2], &ins[3]);
            let want_g = grads_of(&want, &w, &ins);
            for isa in isas() {
                let got = f_wkv(&ins[0], &ins[1], &ins[2], &ins[3], k, isa).unwrap();
                let got_g = grads_of(&got, &w, &ins);
                let tag = format!("{isa:?} B={bsz} L={l} D={d} k={k}");
                let err = rel_err(&got, &want);
                assert!(err < 1e-12, "{tag}: values rel err {err:.2e}");
                for ((name, g), wg) in ["k", "v", "w", "u"].iter().zip(&got_g).zip(&want_g) {
                    let err = err_floor1(g, wg);
                    assert!(err < 1e-11, "{tag}: d{name} rel err {err:.2e}");
                }
            }
        }
    }

    /// f32 with keys up to about ±200 (e^k overflows f32): finite, and values and gradients agree
    /// with the plain formula evaluated in f64.
    #[test]
    fn fused_wkv_f32_is_stable_for_large_keys() {
        let ins = wkv_case(2, 37, 19, 60.0, 70);
        let w = crate::mixers::testing::seeded(71, || Tensor::randn([2, 37, 19], (Kind::Double, Device::Cpu)));
        let want = wkv_plain(&ins[0], &ins[1], &ins[2], &ins[3]);
        let want_g = grads_of(&want, &w, &ins);
        let f32s: [Tensor; 4] = ins.each_ref().map(|t| t.to_kind(Kind::Float).detach().set_requires_grad(true));
        for isa in isas() {
            let got = f_wkv(&f32s[0], &f32s[1], &f32s[2], &f32s[3], 8, isa).unwrap();
            let got_g = grads_of(&got, &w, &f32s);
            assert!(bool::try_from(got.isfinite().all()).unwrap(), "{isa:?}: not finite");
            let err = rel_err(&got.to_kind(Kind::Double), &want);
            assert!(err < 1e-5, "{isa:?}: values rel err {err:.2e}");
            for ((name, g), wg) in ["k", "v", "w", "u"].iter().zip(&got_g).zip(&want_g) {
                assert!(bool::try_from(g.isfinite().all()).unwrap(), "{isa:?}: d{name} not finite");
                let err = rel_err(&g.to_kind(Kind::Double), wg);
                assert!(err < 1e-4, "{isa:?}: d{name} rel err {err:.2e}");
            }
        }
    }

    /// q, k, g (log gates ≤ 0), v as leaves: `[B, H, L, K]` and `[B, H, L, V]`.
    fn gla_case(b: i64, h: i64, l: i64, k: i64, v: i64, seed: i64) -> [Tensor; 4] {
        let _rng = crate::mixers::testing::seed_guard(seed);
        let o = (Kind::Double, Device::Cpu);
        let leaf = |t: Tensor| t.detach().set_requires_grad(true);
        [
            leaf(Tensor::randn([b, h, l, k], o)),
            leaf(Tensor::randn([b, h, l, k], o)),
            leaf(Tensor::randn([b, h, l, v], o)),
            leaf((Tensor::randn([b, h, l, k], o) * 2.0).log_sigmoid() / 4.0),
        ]
    }

    /// f64: the fused GLA scan and the gradients of q, k, v and g against autograd through the
    /// dense reference of `decayed_linear` (an explicit double sum), for each kernel build, with
    /// lengths that leave a partial segment, L = 1, interval 1 and one longer than L, and value
    /// widths that are not a multiple of 16 (the lanes).
    #[test]
    fn fused_gla_matches_the_dense_reference_values_and_all_gradients_f64() {
        use super::super::decayed_linear::linear_attention_reference;
        let shapes =
            [(2, 2, 7, 4, 8, 3), (1, 1, 1, 3, 5, 4), (2, 1, 17, 5, 20, 4), (1, 3, 13, 2, 16, 1), (2, 2, 9, 3, 33, 20)];
        for (si, &(b, h, l, k, v, kc)) in shapes.iter().enumerate() {
            let ins = gla_case(b, h, l, k, v, 80 + si as i64);
            let w = crate::mixers::testing::seeded(90 + si as i64, || {
                Tensor::randn([b, h, l, v], (Kind::Double, Device::Cpu))
            });
            let want = linear_attention_reference(&ins[0], &ins[1], &ins[2], Some(&ins[3]));
            let want_g = grads_of(&want, &w, &ins);
            for isa in isas() {
                let got = f_gla(&ins[0], &ins[1], &ins[2], &ins[3], kc, isa).unwrap();
                let got_g = grads_of(&got, &w, &ins);
                let tag = format!("{isa:?} B={b} H={h} L={l} K={k} V={v} k={kc}");
                let err = rel_err(&got, &want);
                assert!(err < 1e-12, "{tag}: values rel err {err:.2e}");
                for ((name, g), wg) in ["q", "k", "v", "g"].iter().zip(&got_g).zip(&want_g) {
                    let err = err_floor1(g, wg);
                    assert!(err < 1e-11, "{tag}: d{name} rel err {err:.2e}");
                }
            }
        }
    }

    /// f32 against the f64 reference, gates down to e^{−20} per step.
    #[test]
    fn fused_gla_f32_matches_the_f64_reference() {
        use super::super::decayed_linear::linear_attention_reference;
        let mut ins = gla_case(2, 2, 21, 8, 24, 99);
        ins[3] = (&ins[3] * 80.0).detach().set_requires_grad(true);
        let w = crate::mixers::testing::seeded(98, || Tensor::randn([2, 2, 21, 24], (Kind::Double, Device::Cpu)));
        let want = linear_attention_reference(&ins[0], &ins[1], &ins[2], Some(&ins[3]));
        let want_g = grads_of(&want, &w, &ins);
        let f32s: [Tensor; 4] = ins.each_ref().map(|t| t.to_kind(Kind::Float).detach().set_requires_grad(true));
        for isa in isas() {
            let got = f_gla(&f32s[0], &f32s[1], &f32s[2], &f32s[3], 5, isa).unwrap();
            let got_g = grads_of(&got, &w, &f32s);
            let err = rel_err(&got.to_kind(Kind::Double), &want);
            assert!(err < 1e-5, "{isa:?}: values rel err {err:.2e}");
            for ((name, g), wg) in ["q", "k", "v", "g"].iter().zip(&got_g).zip(&want_g) {
                let err = rel_err(&g.to_kind(Kind::Double), wg);
                assert!(err < 1e-4, "{isa:?}: d{name} rel err {err:.2e}");
            }
        }
    }
}
