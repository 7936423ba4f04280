// Fused CPU scans as libtorch autograd Functions, for tch: Mamba's selective scan (below) and
// RWKV-4's WKV and GLA's gated scan (further down; same scheme: the state of a row / head in
// registers or cache, checkpoints every K steps, a backward that recomputes each segment and runs
// the adjoint back through it).
//
// Selective scan:
//
//   y_t = Σ_n C_tn h_tn + D x_t,   h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t x_t B_t   (per batch row, channel)
//
// Inputs x, Δ: [B, L, E]; A: [E, N]; B, C: [B, L, N]; D: [E]; all CPU, one floating kind (f32 or
// f64). The forward keeps each (row, channel block)'s state in a small buffer while it loops over
// t and writes only y [B, L, E] plus the state every K steps ([B, ⌈L/K⌉, N, E]); the backward
// recomputes each K-segment's states from its checkpoint and runs the adjoint recurrence back
// through it (scan_kernels.h), giving the gradients of all six inputs. Work is split over
// batch rows × channel blocks with at::parallel_for.
//
// C interface for Rust: tensors are `at::Tensor*` (tch's C_tensor); a new result tensor is
// returned through `out` as a heap `at::Tensor*` that tch takes ownership of; the return value
// is null on success or a malloc'd error message (the caller frees it). No exception crosses it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "scan_common.h"

namespace {

using at::Tensor;

// One instruction set's kernels.
struct Kernels {
  const char *name;
  int64_t lanes;
  decltype(&zs_generic::scan_fwd_f32) fwd_f32;
  decltype(&zs_generic::scan_bwd_f32) bwd_f32;
  decltype(&zs_generic::scan_fwd_f64) fwd_f64;
  decltype(&zs_generic::scan_bwd_f64) bwd_f64;
  decltype(&zs_generic::wkv_fwd_f32) wkv_fwd_f32;
  decltype(&zs_generic::wkv_bwd_f32) wkv_bwd_f32;
  decltype(&zs_generic::wkv_fwd_f64) wkv_fwd_f64;
  decltype(&zs_generic::wkv_bwd_f64) wkv_bwd_f64;
  decltype(&zs_generic::gla_fwd_f32) gla_fwd_f32;
  decltype(&zs_generic::gla_bwd_f32) gla_bwd_f32;
  decltype(&zs_generic::gla_fwd_f64) gla_fwd_f64;
  decltype(&zs_generic::gla_bwd_f64) gla_bwd_f64;
};

#define ZS_KERNELS(NS, NAME)                                                                                       \
  Kernels {                                                                                                       \
    NAME, NS::lanes, &NS::scan_fwd_f32, &NS::scan_bwd_f32, &NS::scan_fwd_f64, &NS::scan_bwd_f64, &NS::wkv_fwd_f32,  \
        &NS::wkv_bwd_f32, &NS::wkv_fwd_f64, &NS::wkv_bwd_f64, &NS::gla_fwd_f32, &NS::gla_bwd_f32, &NS::gla_fwd_f64, \
        &NS::gla_bwd_f64                                                                                          \
  }

// isa: 0 = the best this CPU runs, 1 = generic, 2 = AVX2 + FMA, 3 = AVX-512. Null when the CPU
// (or this build) lacks it.
const Kernels *kernels_for(int64_t isa) {
  static const Kernels generic = ZS_KERNELS(zs_generic, "generic");
#if defined(ZS_HAVE_X86_KERNELS)
  static const Kernels avx2 = ZS_KERNELS(zs_avx2, "avx2");
  static const Kernels avx512 = ZS_KERNELS(zs_avx512, "avx512");
  __builtin_cpu_init();
  const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool has512 = has2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  switch (isa) {
  case 0:
    return has512 ? &avx512 : (has2 ? &avx2 : &generic);
  case 1:
    return &generic;
  case 2:
    return has2 ? &avx2 : nullptr;
  case 3:
    return has512 ? &avx512 : nullptr;
  default:
    return nullptr;
  }
#else
  return (isa == 0 || isa == 1) ? &generic : nullptr;
#endif
}

const Kernels &kernels_checked(int64_t isa) {
  const Kernels *k = kernels_for(isa);
  TORCH_CHECK(k != nullptr, "fused selective scan: instruction set ", isa, " is not available on this CPU/build");
  return *k;
}

// Optional inputs are undefined tensors.
struct ScanInputs {
  Tensor x, dt, A, B, C, D, z, dt_bias;
};

void check_inputs(const ScanInputs &in, int64_t K) {
  const Tensor &x = in.x;
  TORCH_CHECK(x.dim() == 3, "fused selective scan: x must be [B, L, E], got ", x.sizes());
  const int64_t b = x.size(0), l = x.size(1), e = x.size(2);
  TORCH_CHECK(in.A.dim() == 2 && in.A.size(0) == e, "fused selective scan: A must be [E, N] with E = ", e, ", got ",
              in.A.sizes());
  const int64_t n = in.A.size(1);
  TORCH_CHECK(in.dt.sizes() == x.sizes(), "fused selective scan: delta must be ", x.sizes(), ", got ",
              in.dt.sizes());
  TORCH_CHECK(in.B.dim() == 3 && in.B.size(0) == b && in.B.size(1) == l && in.B.size(2) == n,
              "fused selective scan: B must be [", b, ", ", l, ", ", n, "], got ", in.B.sizes());
  TORCH_CHECK(in.C.sizes() == in.B.sizes(), "fused selective scan: C must be ", in.B.sizes(), ", got ",
              in.C.sizes());
  TORCH_CHECK(in.D.dim() == 1 && in.D.size(0) == e, "fused selective scan: D must be [", e, "], got ",
              in.D.sizes());
  if (in.z.defined())
    TORCH_CHECK(in.z.sizes() == x.sizes(), "fused selective scan: z must be ", x.sizes(), ", got ", in.z.sizes());
  if (in.dt_bias.defined())
    TORCH_CHECK(in.dt_bias.dim() == 1 && in.dt_bias.size(0) == e, "fused selective scan: delta_bias must be [", e,
                "], got ", in.dt_bias.sizes());
  TORCH_CHECK(K >= 1, "fused selective scan: checkpoint interval must be >= 1, got ", K);
  const auto kind = x.scalar_type();
  TORCH_CHECK(kind == at::kFloat || kind == at::kDouble, "fused selective scan: f32 or f64 only, got ", kind);
  for (const Tensor *t : {&in.dt, &in.A, &in.B, &in.C, &in.D, &in.z, &in.dt_bias}) {
    if (t->defined())
      TORCH_CHECK(t->scalar_type() == kind, "fused selective scan: all inputs must be ", kind, ", got ",
                  t->scalar_type());
  }
  for (const Tensor *t : {&in.x, &in.dt, &in.A, &in.B, &in.C, &in.D, &in.z, &in.dt_bias}) {
    if (t->defined())
      TORCH_CHECK(t->device().is_cpu(), "fused selective scan: CPU tensors only (use the chunked scan on ",
                  t->device(), ")");
  }
}

ScanInputs contiguous(const ScanInputs &in) {
  auto c = [](const Tensor &t) { return t.defined() ? t.contiguous() : t; };
  return {c(in.x), c(in.dt), c(in.A), c(in.B), c(in.C), c(in.D), c(in.z), c(in.dt_bias)};
}

zs::ScanDims dims(const ScanInputs &in, bool softplus, int64_t K, int64_t lanes) {
  zs::ScanDims d;
  d.B = in.x.size(0);
  d.L = in.x.size(1);
  d.E = in.x.size(2);
  d.N = in.A.size(1);
  d.K = K;
  d.S = (d.L + K - 1) / K;
  d.EB = (d.E + lanes - 1) / lanes;
  // the backward sums dB, dC over channels inside a task: one task per row where there are
  // enough rows to keep the threads busy, else rows split into groups of channel blocks
  const int64_t want = 4 * std::max<int64_t>(1, at::get_num_threads());
  d.G = std::min(d.EB, std::max<int64_t>(1, (want + d.B - 1) / std::max<int64_t>(1, d.B)));
  d.softplus = softplus;
  return d;
}

template <typename T> const T *ptr_or_null(const Tensor &t) { return t.defined() ? t.const_data_ptr<T>() : nullptr; }

// The output, and the checkpoints when `ckpt` is given. Inputs must be contiguous.
Tensor scan_forward(const ScanInputs &in, bool softplus, int64_t K, int64_t isa, Tensor *ckpt) {
  const Kernels &k = kernels_checked(isa);
  const zs::ScanDims d = dims(in, softplus, K, k.lanes);
  Tensor out = at::empty_like(in.x);
  if (ckpt) *ckpt = at::empty({d.B, d.S, d.N, d.E}, in.x.options());
  if (d.L == 0 || d.B == 0 || d.E == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "zoology_selective_scan_fwd", [&] {
    auto fwd = [&] {
      if constexpr (std::is_same_v<scalar_t, float>) return k.fwd_f32;
      else return k.fwd_f64;
    }();
    zs::ScanFwdArgs<scalar_t> a;
    a.x = in.x.const_data_ptr<scalar_t>();
    a.dt = in.dt.const_data_ptr<scalar_t>();
    a.A = in.A.const_data_ptr<scalar_t>();
    a.B = in.B.const_data_ptr<scalar_t>();
    a.C = in.C.const_data_ptr<scalar_t>();
    a.D = in.D.const_data_ptr<scalar_t>();
    a.z = ptr_or_null<scalar_t>(in.z);
    a.dt_bias = ptr_or_null<scalar_t>(in.dt_bias);
    a.out = out.data_ptr<scalar_t>();
    a.ckpt = ckpt ? ckpt->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, d.B * d.EB, 1, [&](int64_t begin, int64_t end) { fwd(d, begin, end, a); });
  });
  return out;
}

// Gradients of x, dt, A, B, C, D, z, dt_bias (the last two undefined where the input is).
std::vector<Tensor> scan_backward(const ScanInputs &in, bool softplus, const Tensor &ckpt, const Tensor &dout,
                                  int64_t K, int64_t isa) {
  const Kernels &k = kernels_checked(isa);
  const zs::ScanDims d = dims(in, softplus, K, k.lanes);
  const auto o = in.x.options();
  if (d.L == 0 || d.B == 0 || d.E == 0) {
    auto z = [](const Tensor &t) { return t.defined() ? at::zeros_like(t) : t; };
    return {z(in.x), z(in.dt), z(in.A), z(in.B), z(in.C), z(in.D), z(in.z), z(in.dt_bias)};
  }
  Tensor dx = at::empty_like(in.x), ddt = at::empty_like(in.x);
  Tensor dz = in.z.defined() ? at::empty_like(in.x) : Tensor();
  Tensor dB_part = at::empty({d.B, d.G, d.L, d.N}, o), dC_part = at::empty({d.B, d.G, d.L, d.N}, o);
  Tensor dA_part = at::empty({d.B, d.N, d.E}, o), dD_part = at::empty({d.B, d.E}, o);
  Tensor dbias_part = in.dt_bias.defined() ? at::empty({d.B, d.E}, o) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "zoology_selective_scan_bwd", [&] {
    auto bwd = [&] {
      if constexpr (std::is_same_v<scalar_t, float>) return k.bwd_f32;
      else return k.bwd_f64;
    }();
    auto mut = [](Tensor &t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    zs::ScanBwdArgs<scalar_t> a;
    a.x = in.x.const_data_ptr<scalar_t>();
    a.dt = in.dt.const_data_ptr<scalar_t>();
    a.A = in.A.const_data_ptr<scalar_t>();
    a.B = in.B.const_data_ptr<scalar_t>();
    a.C = in.C.const_data_ptr<scalar_t>();
    a.D = in.D.const_data_ptr<scalar_t>();
    a.z = ptr_or_null<scalar_t>(in.z);
    a.dt_bias = ptr_or_null<scalar_t>(in.dt_bias);
    a.ckpt = ckpt.const_data_ptr<scalar_t>();
    a.dout = dout.const_data_ptr<scalar_t>();
    a.dx = mut(dx);
    a.ddt = mut(ddt);
    a.dz = mut(dz);
    a.dB_part = mut(dB_part);
    a.dC_part = mut(dC_part);
    a.dA_part = mut(dA_part);
    a.dD_part = mut(dD_part);
    a.dbias_part = mut(dbias_part);
    at::parallel_for(0, d.B * d.G, 1, [&](int64_t begin, int64_t end) { bwd(d, begin, end, a); });
  });
  return {dx,
          ddt,
          dA_part.sum(0).t().contiguous(),
          d.G == 1 ? dB_part.view({d.B, d.L, d.N}) : dB_part.sum(1),
          d.G == 1 ? dC_part.view({d.B, d.L, d.N}) : dC_part.sum(1),
          dD_part.sum(0),
          dz,
          dbias_part.defined() ? dbias_part.sum(0) : Tensor()};
}

struct SelectiveScanFn : public torch::autograd::Function<SelectiveScanFn> {
  static Tensor forward(torch::autograd::AutogradContext *ctx, const Tensor &x, const Tensor &dt, const Tensor &A,
                        const Tensor &B, const Tensor &C, const Tensor &D, const std::optional<Tensor> &z,
                        const std::optional<Tensor> &dt_bias, bool softplus, int64_t K, int64_t isa) {
    // (optional tensors: apply() records an undefined Tensor argument as an input and fails)
    const ScanInputs in = contiguous({x, dt, A, B, C, D, z.value_or(Tensor()), dt_bias.value_or(Tensor())});
    Tensor ckpt;
    Tensor out = scan_forward(in, softplus, K, isa, &ckpt);
    ctx->save_for_backward({in.x, in.dt, in.A, in.B, in.C, in.D, in.z, in.dt_bias, ckpt});
    ctx->saved_data["softplus"] = softplus;
    ctx->saved_data["K"] = K;
    ctx->saved_data["isa"] = isa;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const ScanInputs in{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]};
    const bool softplus = ctx->saved_data["softplus"].toBool();
    const int64_t K = ctx->saved_data["K"].toInt(), isa = ctx->saved_data["isa"].toInt();
    Tensor dout = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(in.x);
    auto g = scan_backward(in, softplus, s[8], dout, K, isa);
    return {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], Tensor(), Tensor(), Tensor()};
  }
};

// ---- RWKV-4 WKV ----

void check_wkv(const Tensor &k, const Tensor &v, const Tensor &w, const Tensor &u, int64_t K) {
  TORCH_CHECK(k.dim() == 3, "fused wkv: k must be [B, L, D], got ", k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), "fused wkv: v must be ", k.sizes(), ", got ", v.sizes());
  const int64_t d = k.size(2);
  TORCH_CHECK(w.dim() == 1 && w.size(0) == d, "fused wkv: w must be [", d, "], got ", w.sizes());
  TORCH_CHECK(u.dim() == 1 && u.size(0) == d, "fused wkv: u must be [", d, "], got ", u.sizes());
  TORCH_CHECK(K >= 1, "fused wkv: checkpoint interval must be >= 1, got ", K);
  const auto kind = k.scalar_type();
  TORCH_CHECK(kind == at::kFloat || kind == at::kDouble, "fused wkv: f32 or f64 only, got ", kind);
  for (const Tensor *t : {&v, &w, &u})
    TORCH_CHECK(t->scalar_type() == kind, "fused wkv: all inputs must be ", kind, ", got ", t->scalar_type());
  for (const Tensor *t : {&k, &v, &w, &u})
    TORCH_CHECK(t->device().is_cpu(), "fused wkv: CPU tensors only (use the chunked form on ", t->device(), ")");
}

zs::WkvDims wkv_dims(const Tensor &k, int64_t K, int64_t lanes) {
  zs::WkvDims d;
  d.B = k.size(0);
  d.L = k.size(1);
  d.D = k.size(2);
  d.K = K;
  d.S = (d.L + K - 1) / K;
  d.DB = (d.D + lanes - 1) / lanes;
  return d;
}

Tensor wkv_forward(const Tensor &k, const Tensor &v, const Tensor &w, const Tensor &u, int64_t K, int64_t isa,
                   Tensor *ckpt) {
  const Kernels &ks = kernels_checked(isa);
  const zs::WkvDims d = wkv_dims(k, K, ks.lanes);
  Tensor y = at::empty_like(k);
  if (ckpt) *ckpt = at::empty({d.B, d.S, 3, d.D}, k.options());
  if (d.B == 0 || d.L == 0 || d.D == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "zoology_wkv_fwd", [&] {
    auto fwd = [&] {
      if constexpr (std::is_same_v<scalar_t, float>) return ks.wkv_fwd_f32;
      else return ks.wkv_fwd_f64;
    }();
    zs::WkvFwdArgs<scalar_t> a;
    a.k = k.const_data_ptr<scalar_t>();
    a.v = v.const_data_ptr<scalar_t>();
    a.w = w.const_data_ptr<scalar_t>();
    a.u = u.const_data_ptr<scalar_t>();
    a.y = y.data_ptr<scalar_t>();
    a.ckpt = ckpt ? ckpt->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, d.B * d.DB, 1, [&](int64_t begin, int64_t end) { fwd(d, begin, end, a); });
  });
  return y;
}

struct WkvFn : public torch::autograd::Function<WkvFn> {
  static Tensor forward(torch::autograd::AutogradContext *ctx, const Tensor &k, const Tensor &v, const Tensor &w,
                        const Tensor &u, int64_t K, int64_t isa) {
    Tensor kc = k.contiguous(), vc = v.contiguous(), wc = w.contiguous(), uc = u.contiguous(), ckpt;
    Tensor y = wkv_forward(kc, vc, wc, uc, K, isa, &ckpt);
    ctx->save_for_backward({kc, vc, wc, uc, ckpt});
    ctx->saved_data["K"] = K;
    ctx->saved_data["isa"] = isa;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor &k = s[0], &v = s[1], &w = s[2], &u = s[3], &ckpt = s[4];
    const int64_t K = ctx->saved_data["K"].toInt(), isa = ctx->saved_data["isa"].toInt();
    const Kernels &ks = kernels_checked(isa);
    const zs::WkvDims d = wkv_dims(k, K, ks.lanes);
    Tensor dy = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(k);
    Tensor dk = at::empty_like(k), dv = at::empty_like(k);
    Tensor dw_part = at::zeros({d.B, d.D}, k.options()), du_part = at::zeros({d.B, d.D}, k.options());
    if (d.B > 0 && d.L > 0 && d.D > 0) {
      AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "zoology_wkv_bwd", [&] {
        auto bwd = [&] {
          if constexpr (std::is_same_v<scalar_t, float>) return ks.wkv_bwd_f32;
          else return ks.wkv_bwd_f64;
        }();
        zs::WkvBwdArgs<scalar_t> a;
        a.k = k.const_data_ptr<scalar_t>();
        a.v = v.const_data_ptr<scalar_t>();
        a.w = w.const_data_ptr<scalar_t>();
        a.u = u.const_data_ptr<scalar_t>();
        a.ckpt = ckpt.const_data_ptr<scalar_t>();
        a.dy = dy.const_data_ptr<scalar_t>();
        a.dk = dk.data_ptr<scalar_t>();
        a.dv = dv.data_ptr<scalar_t>();
        a.dw_part = dw_part.data_ptr<scalar_t>();
        a.du_part = du_part.data_ptr<scalar_t>();
        at::parallel_for(0, d.B * d.DB, 1, [&](int64_t begin, int64_t end) { bwd(d, begin, end, a); });
      });
    } else {
      dk.zero_();
      dv.zero_();
    }
    return {dk, dv, dw_part.sum(0), du_part.sum(0), Tensor(), Tensor()};
  }
};

// ---- GLA gated scan ----

void check_gla(const Tensor &q, const Tensor &k, const Tensor &v, const Tensor &g, int64_t Kc) {
  TORCH_CHECK(q.dim() == 4, "fused gla: q must be [B, H, L, K], got ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes(), "fused gla: k must be ", q.sizes(), ", got ", k.sizes());
  TORCH_CHECK(g.sizes() == q.sizes(), "fused gla: g must be ", q.sizes(), " (a gate per key channel), got ",
              g.sizes());
  TORCH_CHECK(v.dim() == 4 && v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2),
              "fused gla: v must be [", q.size(0), ", ", q.size(1), ", ", q.size(2), ", V], got ", v.sizes());
  TORCH_CHECK(Kc >= 1, "fused gla: checkpoint interval must be >= 1, got ", Kc);
  const auto kind = q.scalar_type();
  TORCH_CHECK(kind == at::kFloat || kind == at::kDouble, "fused gla: f32 or f64 only, got ", kind);
  for (const Tensor *t : {&k, &v, &g})
    TORCH_CHECK(t->scalar_type() == kind, "fused gla: all inputs must be ", kind, ", got ", t->scalar_type());
  for (const Tensor *t : {&q, &k, &v, &g})
    TORCH_CHECK(t->device().is_cpu(), "fused gla: CPU tensors only (use the chunked form on ", t->device(), ")");
}

zs::GlaDims gla_dims(const Tensor &q, const Tensor &v, int64_t Kc) {
  zs::GlaDims d;
  d.BH = q.size(0) * q.size(1);
  d.L = q.size(2);
  d.K = q.size(3);
  d.V = v.size(3);
  d.VP = (d.V + 15) / 16 * 16;
  d.Kc = Kc;
  d.S = (d.L + Kc - 1) / Kc;
  return d;
}

Tensor gla_forward(const Tensor &q, const Tensor &k, const Tensor &v, const Tensor &g, int64_t Kc, int64_t isa,
                   Tensor *ckpt) {
  const Kernels &ks = kernels_checked(isa);
  const zs::GlaDims d = gla_dims(q, v, Kc);
  Tensor o = at::empty_like(v);
  if (ckpt) *ckpt = at::empty({d.BH, d.S, d.K, d.V}, q.options());
  if (d.BH == 0 || d.L == 0 || d.V == 0) return o.zero_();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "zoology_gla_fwd", [&] {
    auto fwd = [&] {
      if constexpr (std::is_same_v<scalar_t, float>) return ks.gla_fwd_f32;
      else return ks.gla_fwd_f64;
    }();
    zs::GlaFwdArgs<scalar_t> a;
    a.q = q.const_data_ptr<scalar_t>();
    a.k = k.const_data_ptr<scalar_t>();
    a.v = v.const_data_ptr<scalar_t>();
    a.g = g.const_data_ptr<scalar_t>();
    a.o = o.data_ptr<scalar_t>();
    a.ckpt = ckpt ? ckpt->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, d.BH, 1, [&](int64_t begin, int64_t end) { fwd(d, begin, end, a); });
  });
  return o;
}

struct GlaFn : public torch::autograd::Function<GlaFn> {
  static Tensor forward(torch::autograd::AutogradContext *ctx, const Tensor &q, const Tensor &k, const Tensor &v,
                        const Tensor &g, int64_t Kc, int64_t isa) {
    Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), gc = g.contiguous(), ckpt;
    Tensor o = gla_forward(qc, kc, vc, gc, Kc, isa, &ckpt);
    ctx->save_for_backward({qc, kc, vc, gc, ckpt});
    ctx->saved_data["K"] = Kc;
    ctx->saved_data["isa"] = isa;
    return o;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor &q = s[0], &k = s[1], &v = s[2], &g = s[3], &ckpt = s[4];
    const int64_t Kc = ctx->saved_data["K"].toInt(), isa = ctx->saved_data["isa"].toInt();
    const Kernels &ks = kernels_checked(isa);
    const zs::GlaDims d = gla_dims(q, v, Kc);
    Tensor dout = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(v);
    Tensor dq = at::zeros_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v), dg = at::zeros_like(g);
    if (d.BH > 0 && d.L > 0 && d.V > 0 && d.K > 0) {
      AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "zoology_gla_bwd", [&] {
        auto bwd = [&] {
          if constexpr (std::is_same_v<scalar_t, float>) return ks.gla_bwd_f32;
          else return ks.gla_bwd_f64;
        }();
        zs::GlaBwdArgs<scalar_t> a;
        a.q = q.const_data_ptr<scalar_t>();
        a.k = k.const_data_ptr<scalar_t>();
        a.v = v.const_data_ptr<scalar_t>();
        a.g = g.const_data_ptr<scalar_t>();
        a.ckpt = ckpt.const_data_ptr<scalar_t>();
        a.dout = dout.const_data_ptr<scalar_t>();
        a.dq = dq.data_ptr<scalar_t>();
        a.dk = dk.data_ptr<scalar_t>();
        a.dv = dv.data_ptr<scalar_t>();
        a.dg = dg.data_ptr<scalar_t>();
        at::parallel_for(0, d.BH, 1, [&](int64_t begin, int64_t end) { bwd(d, begin, end, a); });
      });
    }
    return {dq, dk, dv, dg, Tensor(), Tensor()};
  }
};

char *error_copy(const char *what) {
  const size_t n = std::strlen(what) + 1;
  char *out = static_cast<char *>(std::malloc(n));
  if (out) std::memcpy(out, what, n);
  return out;
}

} // namespace

extern "C" {

// out = selective scan of (x, Δ, A, B, C, D), Δ = dt + dt_bias (→ softplus when `softplus`),
// times silu(z) when z is given; checkpoints every K steps; differentiable in every tensor input
// when autograd needs it (no checkpoints are kept otherwise). z and dt_bias may be null.
// `isa` as kernels_for.
char *zoology_selective_scan(const Tensor *x, const Tensor *dt, const Tensor *A, const Tensor *B, const Tensor *C,
                             const Tensor *D, const Tensor *z, const Tensor *dt_bias, int32_t softplus, int64_t K,
                             int64_t isa, Tensor **out) {
  try {
    *out = nullptr;
    const ScanInputs in{*x, *dt, *A, *B, *C, *D, z ? *z : Tensor(), dt_bias ? *dt_bias : Tensor()};
    check_inputs(in, K);
    bool grad = false;
    for (const Tensor *t : {&in.x, &in.dt, &in.A, &in.B, &in.C, &in.D, &in.z, &in.dt_bias})
      grad = grad || (t->defined() && t->requires_grad());
    grad = grad && at::GradMode::is_enabled();
    auto opt = [](const Tensor &t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; };
    Tensor y = grad ? SelectiveScanFn::apply(in.x, in.dt, in.A, in.B, in.C, in.D, opt(in.z), opt(in.dt_bias),
                                             softplus != 0, K, isa)
                    : scan_forward(contiguous(in), softplus != 0, K, isa, nullptr);
    *out = new Tensor(std::move(y));
    return nullptr;
  } catch (const std::exception &e) {
    return error_copy(e.what());
  } catch (...) {
    return error_copy("fused selective scan: unknown C++ exception");
  }
}

// RWKV-4 WKV of k, v [B, L, D] with decay w (≤ 0) and bonus u [D], checkpoints every K steps;
// differentiable in all four when autograd needs it.
char *zoology_wkv(const Tensor *k, const Tensor *v, const Tensor *w, const Tensor *u, int64_t K, int64_t isa,
                  Tensor **out) {
  try {
    *out = nullptr;
    check_wkv(*k, *v, *w, *u, K);
    const bool grad = at::GradMode::is_enabled() &&
                      (k->requires_grad() || v->requires_grad() || w->requires_grad() || u->requires_grad());
    Tensor y = grad ? WkvFn::apply(*k, *v, *w, *u, K, isa)
                    : wkv_forward(k->contiguous(), v->contiguous(), w->contiguous(), u->contiguous(), K, isa, nullptr);
    *out = new Tensor(std::move(y));
    return nullptr;
  } catch (const std::exception &e) {
    return error_copy(e.what());
  } catch (...) {
    return error_copy("fused wkv: unknown C++ exception");
  }
}

// GLA's gated scan of q, k, g [B, H, L, K] and v [B, H, L, V] (S_t = diag(e^{g_t}) S_{t−1} +
// k_t v_tᵀ, o_t = S_tᵀ q_t), checkpoints every Kc steps; differentiable in all four.
char *zoology_gla(const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *g, int64_t Kc, int64_t isa,
                  Tensor **out) {
  try {
    *out = nullptr;
    check_gla(*q, *k, *v, *g, Kc);
    const bool grad = at::GradMode::is_enabled() &&
                      (q->requires_grad() || k->requires_grad() || v->requires_grad() || g->requires_grad());
    Tensor o = grad ? GlaFn::apply(*q, *k, *v, *g, Kc, isa)
                    : gla_forward(q->contiguous(), k->contiguous(), v->contiguous(), g->contiguous(), Kc, isa,
                                  nullptr);
    *out = new Tensor(std::move(o));
    return nullptr;
  } catch (const std::exception &e) {
    return error_copy(e.what());
  } catch (...) {
    return error_copy("fused gla: unknown C++ exception");
  }
}

// Name of the kernels `isa` selects ("generic", "avx2", "avx512"), or null where unavailable.
const char *zoology_scan_isa(int64_t isa) {
  const Kernels *k = kernels_for(isa);
  return k ? k->name : nullptr;
}

} // extern "C"
