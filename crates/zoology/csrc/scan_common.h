// Shared declarations of the fused scan kernels (scan_kernels.h) and of their per-instruction-set
// builds: plain structs of sizes and pointers, and the entry points each build defines in its
// namespace.
#pragma once
#include <cstdint>

namespace zs {
struct ScanDims {
  int64_t B, L, E, N;
  int64_t K;     // checkpoint interval
  int64_t S;     // segments = ceil(L / K)
  int64_t EB;    // channel blocks per row = ceil(E / lanes)
  int64_t G;     // backward: groups of channel blocks per row (tasks = B·G), 1 ≤ G ≤ EB
  bool softplus; // Δ = softplus(dt + bias) instead of dt + bias
};

// Forward: x, dt, z, out [B, L, E]; A [E, N]; B, C [B, L, N]; D, dt_bias [E]; ckpt
// [B, S, N, E]. z, dt_bias and ckpt may be null (no gate, no bias, no checkpoints).
template <typename T> struct ScanFwdArgs {
  const T *x, *dt, *A, *B, *C, *D, *z, *dt_bias;
  T *out, *ckpt;
};

// Backward: the forward's inputs, its checkpoints and ∂ℓ/∂out; gradients dx, ddt, dz
// [B, L, E] and the per-row / per-group partial sums dB_part, dC_part [B, G, L, N], dA_part
// [B, N, E], dD_part, dbias_part [B, E]. dz is null without z, dbias_part without dt_bias.
template <typename T> struct ScanBwdArgs {
  const T *x, *dt, *A, *B, *C, *D, *z, *dt_bias, *ckpt, *dout;
  T *dx, *ddt, *dz, *dB_part, *dC_part, *dA_part, *dD_part, *dbias_part;
};
} // namespace zs

#define ZS_DECLARE_ENTRIES(NS)                                                                                     \
  namespace NS {                                                                                                  \
  extern const int64_t lanes;                                                                                     \
  void scan_fwd_f32(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanFwdArgs<float> &a);          \
  void scan_bwd_f32(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanBwdArgs<float> &a);          \
  void scan_fwd_f64(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanFwdArgs<double> &a);         \
  void scan_bwd_f64(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanBwdArgs<double> &a);         \
  }

ZS_DECLARE_ENTRIES(zs_generic)
#if defined(__x86_64__)
ZS_DECLARE_ENTRIES(zs_avx2)
ZS_DECLARE_ENTRIES(zs_avx512)
#endif
