// Shared declarations of the fused kernels (scan_kernels.h: Mamba's selective scan, RWKV's WKV,
// GLA's gated scan) and of their per-instruction-set
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

// RWKV-4 WKV: k, v, y [B, L, D]; w (the decay, ≤ 0), u [D]; ckpt [B, S, 3, D] (may be null).
struct WkvDims {
  int64_t B, L, D;
  int64_t K;  // checkpoint interval
  int64_t S;  // segments = ceil(L / K)
  int64_t DB; // channel blocks per row = ceil(D / lanes)
};
template <typename T> struct WkvFwdArgs {
  const T *k, *v, *w, *u;
  T *y, *ckpt;
};
// Backward: gradients dk, dv [B, L, D]; per-row partial sums dw_part, du_part [B, D].
template <typename T> struct WkvBwdArgs {
  const T *k, *v, *w, *u, *ckpt, *dy;
  T *dk, *dv, *dw_part, *du_part;
};

// GLA gated scan, per (b, h): q, k, g [B·H, L, K]; v, o [B·H, L, V]; ckpt [B·H, S, K, V].
struct GlaDims {
  int64_t BH, L, K, V;
  int64_t VP; // V rounded up to a multiple of 16
  int64_t Kc; // checkpoint interval
  int64_t S;  // segments = ceil(L / Kc)
};
template <typename T> struct GlaFwdArgs {
  const T *q, *k, *v, *g;
  T *o, *ckpt;
};
template <typename T> struct GlaBwdArgs {
  const T *q, *k, *v, *g, *ckpt, *dout;
  T *dq, *dk, *dv, *dg;
};
} // namespace zs

#define ZS_DECLARE_ENTRIES(NS)                                                                                     \
  namespace NS {                                                                                                  \
  extern const int64_t lanes;                                                                                     \
  void scan_fwd_f32(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanFwdArgs<float> &a);          \
  void scan_bwd_f32(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanBwdArgs<float> &a);          \
  void scan_fwd_f64(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanFwdArgs<double> &a);         \
  void scan_bwd_f64(const zs::ScanDims &d, int64_t begin, int64_t end, const zs::ScanBwdArgs<double> &a);         \
  void wkv_fwd_f32(const zs::WkvDims &d, int64_t begin, int64_t end, const zs::WkvFwdArgs<float> &a);             \
  void wkv_bwd_f32(const zs::WkvDims &d, int64_t begin, int64_t end, const zs::WkvBwdArgs<float> &a);             \
  void wkv_fwd_f64(const zs::WkvDims &d, int64_t begin, int64_t end, const zs::WkvFwdArgs<double> &a);            \
  void wkv_bwd_f64(const zs::WkvDims &d, int64_t begin, int64_t end, const zs::WkvBwdArgs<double> &a);            \
  void gla_fwd_f32(const zs::GlaDims &d, int64_t begin, int64_t end, const zs::GlaFwdArgs<float> &a);             \
  void gla_bwd_f32(const zs::GlaDims &d, int64_t begin, int64_t end, const zs::GlaBwdArgs<float> &a);             \
  void gla_fwd_f64(const zs::GlaDims &d, int64_t begin, int64_t end, const zs::GlaFwdArgs<double> &a);            \
  void gla_bwd_f64(const zs::GlaDims &d, int64_t begin, int64_t end, const zs::GlaBwdArgs<double> &a);            \
  }

ZS_DECLARE_ENTRIES(zs_generic)
#if defined(__x86_64__)
ZS_DECLARE_ENTRIES(zs_avx2)
ZS_DECLARE_ENTRIES(zs_avx512)
#endif
