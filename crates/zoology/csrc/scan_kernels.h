// Fused CPU kernels for Mamba's selective scan, RWKV's WKV and GLA's gated scan: plain C++ on raw
// pointers, no ATen.
//
// This file is included by one translation unit per instruction set (scan_kernels_*.cpp), each
// compiled with its own flags and defining ZS_NS, the namespace everything here goes into:
// every function is either `static` or inside that namespace, and no standard-library template
// is used, so no inline code compiled for one instruction set can be merged by the linker into
// another's (buffers come from calloc, min/max are local).
//
// Everything is a template over the element type T (float or double) and a lane count W: a
// task owns one batch row b and a block of W consecutive inner channels e0..e0+W (the last
// block of a row may be partial: its missing lanes run with Δ = 0, A = 0, x = 0, so their state
// stays 0 and nothing is written for them). Inside a task the state is h[N][W] (lanes
// innermost, so the compiler vectorises over channels; Δ, x, y of W consecutive channels are
// contiguous in [B, L, E]).
//
// Recurrence (per b, e, n):  a_t = exp(Δ_t A_en),  h_t = a_t h_{t−1} + Δ_t x_t B_tn,
//                            y_t = Σ_n C_tn h_t + D_e x_t.
#include "scan_common.h"
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#ifndef ZS_NS
#error "define ZS_NS (the namespace of this instruction set's kernels) before including scan_kernels.h"
#endif

namespace ZS_NS {
using zs::ScanBwdArgs;
using zs::ScanDims;
using zs::ScanFwdArgs;
using zs::GlaBwdArgs;
using zs::GlaDims;
using zs::GlaFwdArgs;
using zs::WkvBwdArgs;
using zs::WkvDims;
using zs::WkvFwdArgs;

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline float fclamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Zero-initialised scratch of n elements, freed on scope exit.
template <typename T> struct Scratch {
  T *p;
  explicit Scratch(size_t n) : p(static_cast<T *>(std::calloc(n ? n : 1, sizeof(T)))) {
    if (!p) throw std::bad_alloc();
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
};


// exp for the f32 path: Cephes-style range reduction x = n ln2 + r, |r| ≤ ln2/2, and a degree-5
// polynomial for e^r (about 1 ulp); branch-free so that it vectorises (this needs floorf to be
// an instruction, SSE4.1 or later, and -fno-trapping-math, so that the selects may be
// evaluated on both sides). Below −87 (e^x < 1.7e-38, the smallest normal float) it returns 0,
// so no denormal is ever produced here.
static inline float fast_exp(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  xc = xc > 88.0f ? 88.0f : xc;
  const float fl = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
  const float r = xc - fl * 0.693359375f + fl * 2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r2 + r + 1.0f;
  const int32_t bits = ((int32_t)fl + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : p * scale;
}

// Sums of 16 rows of 16 lanes: out[r] = Σ_i rows[r][i], by a shuffle-and-add tree (45
// vector operations for the 16 sums instead of 16 horizontal reductions). Rows past `nrows`
// count as zero.
typedef float zs_vf16 __attribute__((vector_size(16 * sizeof(float))));
typedef double zs_vd16 __attribute__((vector_size(16 * sizeof(double))));
template <typename T> struct Vec16;
template <> struct Vec16<float> { typedef zs_vf16 type; };
template <> struct Vec16<double> { typedef zs_vd16 type; };

template <typename T> static inline void sum_rows16(const T *rows, int64_t nrows, T *out, bool add) {
  typedef typename Vec16<T>::type V;
  V r[16];
  for (int i = 0; i < 16; ++i) {
    if (i < nrows) std::memcpy(&r[i], rows + i * 16, sizeof(V));
    else r[i] = V{} ;
  }
  V s1[8], s2[4], s3[2];
  for (int i = 0; i < 8; ++i) {
    const V a = r[2 * i], b = r[2 * i + 1];
    s1[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
            __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  }
  for (int i = 0; i < 4; ++i) {
    const V a = s1[2 * i], b = s1[2 * i + 1];
    s2[i] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
            __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  }
  for (int i = 0; i < 2; ++i) {
    const V a = s2[2 * i], b = s2[2 * i + 1];
    s3[i] = __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
            __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  }
  const V s4 = __builtin_shufflevector(s3[0], s3[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
               __builtin_shufflevector(s3[0], s3[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  T res[16];
  std::memcpy(res, &s4, sizeof(V));
  if (nrows >= 16) {
    if (add)
      for (int i = 0; i < 16; ++i) out[i] += res[i];
    else
      for (int i = 0; i < 16; ++i) out[i] = res[i];
  } else {
    for (int64_t i = 0; i < nrows; ++i) out[i] = add ? out[i] + res[i] : res[i];
  }
}

// out[r] (+)= Σ_i rows[r][i] for `nrows` rows of W = 16 lanes; added to out when `add`.
template <typename T> static inline void sum_rows(const T *rows, int64_t nrows, T *out, bool add) {
  for (int64_t r0 = 0; r0 < nrows; r0 += 16) sum_rows16<T>(rows + r0 * 16, nrows - r0, out + r0, add);
}

template <typename T> static inline T scan_exp(T x) { return std::exp(x); }
template <> inline float scan_exp<float>(float x) { return fast_exp(x); }

// Copy W lanes of row `src` (valid lanes `w`) into `dst`, zero-filling the rest.
template <typename T, int W> static inline void load_lanes(T *dst, const T *src, int64_t w) {
  if (w == W) {
    for (int i = 0; i < W; ++i) dst[i] = src[i];
  } else {
    for (int i = 0; i < W; ++i) dst[i] = i < w ? src[i] : T(0);
  }
}

template <typename T, int W> static inline void store_lanes(T *dst, const T *src, int64_t w) {
  if (w == W) {
    for (int i = 0; i < W; ++i) dst[i] = src[i];
  } else {
    for (int64_t i = 0; i < w; ++i) dst[i] = src[i];
  }
}

// A^T of the block: aw[n][w] = A[e0 + w, n] (0 for missing lanes); dw[w] = D[e0 + w].
template <typename T, int W>
static inline void load_params(const ScanDims &d, int64_t e0, int64_t w, const T *A, const T *D, T *aw, T *dw) {
  for (int64_t n = 0; n < d.N; ++n)
    for (int i = 0; i < W; ++i) aw[n * W + i] = i < w ? A[(e0 + i) * d.N + n] : T(0);
  for (int i = 0; i < W; ++i) dw[i] = i < w ? D[e0 + i] : T(0);
}

// Softplus and its derivative (the sigmoid) of v, and the sigmoid alone: branch-free. f32 uses
// fast_exp and log1p(u) = 2·atanh(u / (2 + u)) by its series (u = e^{−|v|} ∈ (0, 1], so the
// series variable is ≤ 1/3 and seven terms give f32 precision, small u included); f64 the
// library functions.
static inline void softplus_sig(float v, float &sp, float &sig) {
  const float av = v < 0.0f ? -v : v;
  const float u = fast_exp(-av);
  const float s = u / (2.0f + u), s2 = s * s;
  float p = 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  sp = (v > 0.0f ? v : 0.0f) + 2.0f * s * p;
  const float inv = 1.0f / (1.0f + u);
  sig = v >= 0.0f ? inv : u * inv;
}
static inline void softplus_sig(double v, double &sp, double &sig) {
  const double u = std::exp(-std::fabs(v));
  sp = (v > 0.0 ? v : 0.0) + std::log1p(u);
  sig = v >= 0.0 ? 1.0 / (1.0 + u) : u / (1.0 + u);
}
static inline float sigmoid(float v) {
  const float u = fast_exp(v < 0.0f ? v : -v);
  const float inv = 1.0f / (1.0f + u);
  return v >= 0.0f ? inv : u * inv;
}
static inline double sigmoid(double v) {
  const double u = std::exp(-std::fabs(v));
  return v >= 0.0 ? 1.0 / (1.0 + u) : u / (1.0 + u);
}

// Δ of W lanes at one position: dt (+ bias) (→ softplus); `dsp` gets ∂Δ/∂dt (1 without softplus).
// Not inlined: inlined into the backward's loop nest, GCC 12 left the softplus scalar there.
template <typename T, int W>
__attribute__((noinline)) static void delta_lanes(const ScanDims &d, const T *dt_row, const T *biasw, int64_t w, T *dtw, T *dsp) {
  load_lanes<T, W>(dtw, dt_row, w);
  for (int i = 0; i < W; ++i) dtw[i] += biasw[i];
  if (d.softplus) {
#pragma omp simd
    for (int i = 0; i < W; ++i) {
      T sp, sg;
      softplus_sig(dtw[i], sp, sg);
      dtw[i] = i < w ? sp : T(0); // missing lanes keep Δ = 0
      dsp[i] = sg;
    }
  } else {
    for (int i = 0; i < W; ++i) dsp[i] = T(1);
  }
}

// The output gate on W lanes: forward y ← y·silu(z); backward, from ∂ℓ/∂out in dy and y before
// the gate: dz = dy·y·silu′(z), dy ← dy·silu(z). Not inlined, for the reason above.
template <typename T, int W> __attribute__((noinline)) static void gate_fwd_lanes(T *yw, const T *zw) {
#pragma omp simd
  for (int i = 0; i < W; ++i) yw[i] *= zw[i] * sigmoid(zw[i]);
}
template <typename T, int W>
__attribute__((noinline)) static void gate_bwd_lanes(T *dyw, const T *yw, const T *zw, T *dzw) {
#pragma omp simd
  for (int i = 0; i < W; ++i) {
    const T sg = sigmoid(zw[i]);
    dzw[i] = dyw[i] * yw[i] * sg * (T(1) + zw[i] * (T(1) - sg));
    dyw[i] *= zw[i] * sg;
  }
}

// Forward of one task (b, channel block eb). a.ckpt, when not null, is [B, S, N, E] and gets the
// state entering every segment (segment s starts at t = s·K; segment 0's is zero).
template <typename T, int W> void scan_fwd_task(const ScanDims &d, int64_t b, int64_t eb, const ScanFwdArgs<T> &a) {
  const int64_t N = d.N, E = d.E, L = d.L;
  const int64_t e0 = eb * W, w = imin(W, E - e0);
  Scratch<T> buf((size_t)(2 * N * W + 8 * W));
  T *h = buf.p, *aw = h + N * W, *dw = aw + N * W, *biasw = dw + W, *dtw = biasw + W, *xw = dtw + W, *yw = xw + W;
  T *dsp = yw + W, *zw = dsp + W, *dx = zw + W;
  load_params<T, W>(d, e0, w, a.A, a.D, aw, dw);
  if (a.dt_bias) load_lanes<T, W>(biasw, a.dt_bias + e0, w);
  for (int64_t t = 0; t < L; ++t) {
    if (a.ckpt && t % d.K == 0) {
      T *c = a.ckpt + ((b * d.S + t / d.K) * N) * E + e0;
      for (int64_t n = 0; n < N; ++n) store_lanes<T, W>(c + n * E, h + n * W, w);
    }
    const int64_t row = (b * L + t) * E + e0;
    delta_lanes<T, W>(d, a.dt + row, biasw, w, dtw, dsp);
    load_lanes<T, W>(xw, a.x + row, w);
    for (int i = 0; i < W; ++i) {
      dx[i] = dtw[i] * xw[i];
      yw[i] = dw[i] * xw[i];
    }
    const T *bt = a.B + (b * L + t) * N, *ct = a.C + (b * L + t) * N;
    for (int64_t n = 0; n < N; ++n) {
      const T bn = bt[n], cn = ct[n];
      T *__restrict hn = h + n * W;
      const T *__restrict an = aw + n * W;
#pragma omp simd
      for (int i = 0; i < W; ++i) {
        const T hv = scan_exp<T>(dtw[i] * an[i]) * hn[i] + dx[i] * bn;
        hn[i] = hv;
        yw[i] += hv * cn;
      }
    }
    if (a.z) {
      load_lanes<T, W>(zw, a.z + row, w);
      gate_fwd_lanes<T, W>(yw, zw);
    }
    store_lanes<T, W>(a.out + row, yw, w);
  }
}

// Backward of one task. Recomputes each segment's states from its checkpoint, then runs the
// adjoint backwards through it. With dy_t = ∂ℓ/∂y_t (y before the gate; through the gate
// dy = dout·silu(z), dz = dout·y·silu′(z)) and G_t = ∂ℓ/∂h_t = dy_t C_t + a_{t+1} ⊙ G_{t+1}:
//   dC_t += Σ_e dy_t h_t,   dB_t += Σ_e G_t Δ_t x_t,   ∂ℓ/∂(Δ_t x_t) = Σ_n G_t B_t,
//   ∂ℓ/∂(Δ_t A) = G_t ⊙ h_{t−1} ⊙ a_t  (→ dΔ_t += Σ_n (·) A,  dA += (·) Δ_t),
//   dx_t = Δ_t ∂ℓ/∂(Δx) + D dy_t,  dΔ_t += x_t ∂ℓ/∂(Δx),  dD += dy_t x_t,
//   d(dt)_t = dΔ_t · softplus′ (1 without softplus),  d(bias) += d(dt)_t.
// Writes dx, ddt, dz ([B, L, E], owned by this task), dB_part/dC_part [B, G, L, N] (the share of
// block group g, which this block, the group's `first` or not, adds to; summed over groups by
// the caller), dA_part [B, N, E], dD_part and dbias_part [B, E] (this row's share, summed over
// rows by the caller).
template <typename T, int W>
void scan_bwd_task(const ScanDims &d, int64_t b, int64_t g, int64_t eb, bool first, const ScanBwdArgs<T> &a) {
  static_assert(W == 16, "the backward's lane sums (sum_rows) are written for 16 lanes");
  const int64_t N = d.N, E = d.E, L = d.L, K = d.K;
  const int64_t e0 = eb * W, w = imin(W, E - e0);
  const size_t NW = (size_t)(N * W), KW = (size_t)(K * W);
  // hs, as: [K][N][W] states and decays of the current segment; h0: the state entering it;
  // dts, dsps, ys: [K][W] Δ, ∂Δ/∂dt and y (before the gate) of the segment
  Scratch<T> buf(2 * (size_t)K * NW + 6 * NW + 3 * KW + 4 * W);
  T *hs = buf.p, *as = hs + K * NW, *h0 = as + K * NW, *gc = h0 + NW, *aw = gc + NW, *dacc = aw + NW;
  T *pcb = dacc + NW, *dts = pcb + 2 * NW, *dsps = dts + KW, *ys = dsps + KW;
  T *dw = ys + KW, *biasw = dw + W, *dd = biasw + W, *dbias = dd + W;
  load_params<T, W>(d, e0, w, a.A, a.D, aw, dw);
  if (a.dt_bias) load_lanes<T, W>(biasw, a.dt_bias + e0, w);
  for (int64_t s = d.S - 1; s >= 0; --s) {
    const int64_t t0 = s * K, t1 = imin(L, t0 + K);
    const T *c = a.ckpt + ((b * d.S + s) * N) * E + e0;
    for (int64_t n = 0; n < N; ++n) load_lanes<T, W>(h0 + n * W, c + n * E, w);
    // recompute the segment
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row = (b * L + t) * E + e0;
      T *dtw = dts + (t - t0) * W, *yw = ys + (t - t0) * W;
      T xw[W], dxw[W];
      delta_lanes<T, W>(d, a.dt + row, biasw, w, dtw, dsps + (t - t0) * W);
      load_lanes<T, W>(xw, a.x + row, w);
      for (int i = 0; i < W; ++i) {
        dxw[i] = dtw[i] * xw[i];
        yw[i] = dw[i] * xw[i];
      }
      const T *bt = a.B + (b * L + t) * N, *ct = a.C + (b * L + t) * N;
      const T *hp = t == t0 ? h0 : hs + (t - t0 - 1) * NW;
      T *hc = hs + (t - t0) * NW, *ac = as + (t - t0) * NW;
      for (int64_t n = 0; n < N; ++n) {
        const T bn = bt[n], cn = ct[n];
        const T *__restrict hpn = hp + n * W, *__restrict awn = aw + n * W;
        T *__restrict hcn = hc + n * W, *__restrict acn = ac + n * W;
#pragma omp simd
        for (int i = 0; i < W; ++i) {
          const T av = scan_exp<T>(dtw[i] * awn[i]);
          const T hv = av * hpn[i] + dxw[i] * bn;
          acn[i] = av;
          hcn[i] = hv;
          yw[i] += hv * cn;
        }
      }
    }
    // adjoint, backwards through the segment
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t row = (b * L + t) * E + e0;
      const T *dtw = dts + (t - t0) * W, *dspw = dsps + (t - t0) * W, *yw = ys + (t - t0) * W;
      T xw[W], dyw[W], dxw[W], gdx[W], gdt[W];
      load_lanes<T, W>(xw, a.x + row, w);
      load_lanes<T, W>(dyw, a.dout + row, w);
      if (a.z) {
        T zw[W], dzw[W];
        load_lanes<T, W>(zw, a.z + row, w);
        gate_bwd_lanes<T, W>(dyw, yw, zw, dzw);
        store_lanes<T, W>(a.dz + row, dzw, w);
      }
      for (int i = 0; i < W; ++i) {
        dxw[i] = dtw[i] * xw[i];
        gdx[i] = T(0);
        gdt[i] = T(0);
      }
      const T *bt = a.B + (b * L + t) * N, *ct = a.C + (b * L + t) * N;
      const T *hp = t == t0 ? h0 : hs + (t - t0 - 1) * NW;
      const T *hc = hs + (t - t0) * NW, *ac = as + (t - t0) * NW;
      T *pc = pcb, *pb = pcb + NW; // per-lane terms of dC_t and dB_t, [N][W] each
      for (int64_t n = 0; n < N; ++n) {
        const T bn = bt[n], cn = ct[n];
        T *__restrict gn = gc + n * W, *__restrict dan = dacc + n * W;
        T *__restrict pcn = pc + n * W, *__restrict pbn = pb + n * W;
        const T *__restrict hpn = hp + n * W, *__restrict hcn = hc + n * W;
        const T *__restrict acn = ac + n * W, *__restrict awn = aw + n * W;
#pragma omp simd
        for (int i = 0; i < W; ++i) {
          const T G = dyw[i] * cn + gn[i];
          pcn[i] = dyw[i] * hcn[i];
          pbn[i] = G * dxw[i];
          gdx[i] += G * bn;
          const T da = G * hpn[i] * acn[i];
          gdt[i] += da * awn[i];
          dan[i] += da * dtw[i];
          gn[i] = G * acn[i];
        }
      }
      sum_rows<T>(pc, N, a.dC_part + ((b * d.G + g) * L + t) * N, !first);
      sum_rows<T>(pb, N, a.dB_part + ((b * d.G + g) * L + t) * N, !first);
      T outx[W], outdt[W];
      for (int i = 0; i < W; ++i) {
        outdt[i] = (gdt[i] + gdx[i] * xw[i]) * dspw[i];
        outx[i] = gdx[i] * dtw[i] + dyw[i] * dw[i];
        dd[i] += dyw[i] * xw[i];
        dbias[i] += outdt[i];
      }
      store_lanes<T, W>(a.ddt + row, outdt, w);
      store_lanes<T, W>(a.dx + row, outx, w);
    }
  }
  for (int64_t n = 0; n < N; ++n) store_lanes<T, W>(a.dA_part + (b * N + n) * E + e0, dacc + n * W, w);
  store_lanes<T, W>(a.dD_part + b * E + e0, dd, w);
  if (a.dbias_part) store_lanes<T, W>(a.dbias_part + b * E + e0, dbias, w);
}

// ---------------------------------------------------------------------------------------------
// RWKV-4's WKV (per channel, w ≤ 0 the decay, u the bonus):
//   y_t = (a_{t−1} + e^{u+k_t} v_t) / (b_{t−1} + e^{u+k_t}),  a_t = e^w a_{t−1} + e^{k_t} v_t,
//   b_t = e^w b_{t−1} + e^{k_t},  a_{−1} = b_{−1} = 0,
// with (a, b) kept as (aa, bb)·e^{pp} and rescaled by the running maximum pp, as RWKV's kernel
// does. Lanes are channels; a task is (row b, block of W channels). The state is three numbers
// per channel, so the checkpoints ([B, S, 3, D]: aa, bb, pp entering each segment) are small.

static const double kWkvNeg = -1e30; // log-weight of "nothing yet" (finite: no inf − inf)

template <typename T, int W> struct WkvState {
  T aa[W], bb[W], pp[W];
};

// One step: y (and, for the backward, the output's normaliser as den·e^{p}) then the state.
template <typename T, int W>
static inline void wkv_step(WkvState<T, W> &s, const T *kw, const T *vw, const T *ww, const T *uw, T *y, T *pout,
                            T *dout_) {
#pragma omp simd
  for (int i = 0; i < W; ++i) {
    const T wk = uw[i] + kw[i];
    const T p = s.pp[i] > wk ? s.pp[i] : wk;
    const T e1 = scan_exp<T>(s.pp[i] - p), e2 = scan_exp<T>(wk - p);
    const T den = e1 * s.bb[i] + e2;
    y[i] = (e1 * s.aa[i] + e2 * vw[i]) / den;
    pout[i] = p;
    dout_[i] = den;
    const T w2 = s.pp[i] + ww[i];
    const T p2 = w2 > kw[i] ? w2 : kw[i];
    const T f1 = scan_exp<T>(w2 - p2), f2 = scan_exp<T>(kw[i] - p2);
    s.aa[i] = f1 * s.aa[i] + f2 * vw[i];
    s.bb[i] = f1 * s.bb[i] + f2;
    s.pp[i] = p2;
  }
}

template <typename T, int W>
static inline void wkv_ckpt_io(const WkvDims &d, int64_t b, int64_t seg, int64_t e0, int64_t w, T *ck,
                               WkvState<T, W> &s, bool store) {
  T *base = ck + (b * d.S + seg) * 3 * d.D + e0;
  T *rows[3] = {s.aa, s.bb, s.pp};
  for (int r = 0; r < 3; ++r) {
    if (store) store_lanes<T, W>(base + r * d.D, rows[r], w);
    else load_lanes<T, W>(rows[r], base + r * d.D, w);
  }
}

template <typename T, int W> void wkv_fwd_task(const WkvDims &d, int64_t b, int64_t eb, const WkvFwdArgs<T> &a) {
  const int64_t e0 = eb * W, w = imin(W, d.D - e0);
  WkvState<T, W> s;
  T ww[W], uw[W], kw[W], vw[W], y[W], p[W], den[W];
  load_lanes<T, W>(ww, a.w + e0, w);
  load_lanes<T, W>(uw, a.u + e0, w);
  for (int i = 0; i < W; ++i) {
    s.aa[i] = s.bb[i] = T(0);
    s.pp[i] = T(kWkvNeg);
  }
  for (int64_t t = 0; t < d.L; ++t) {
    if (a.ckpt && t % d.K == 0) wkv_ckpt_io<T, W>(d, b, t / d.K, e0, w, a.ckpt, s, true);
    const int64_t row = (b * d.L + t) * d.D + e0;
    load_lanes<T, W>(kw, a.k + row, w);
    load_lanes<T, W>(vw, a.v + row, w);
    wkv_step<T, W>(s, kw, vw, ww, uw, y, p, den);
    store_lanes<T, W>(a.y + row, y, w);
  }
}

// Backward. With M_t = den_t·e^{p_t} the output's normaliser, the adjoints of the state,
// α_t = ∂ℓ/∂a_t = Σ_{t'>t} e^{(t'−1−t)w} gy_{t'} / M_{t'} and β_t (the same with −gy_{t'} y_{t'}),
// are carried as (ᾱ, β̄)·e^{−r} with −r_{t−1} = max(−p_t, w − r_t); every exponent used below is
// ≤ 0 (p_t bounds every log-weight of row t). Then
//   gv_t = gy_t e^{u+k_t}/M_t + α_t e^{k_t},   gk_t = gy_t e^{u+k_t}(v_t − y_t)/M_t + e^{k_t}(α_t v_t + β_t),
//   gu  += gy_t e^{u+k_t}(v_t − y_t)/M_t,      gw  += e^w (α_t a_{t−1} + β_t b_{t−1}).
template <typename T, int W> void wkv_bwd_task(const WkvDims &d, int64_t b, int64_t eb, const WkvBwdArgs<T> &a) {
  const int64_t e0 = eb * W, w = imin(W, d.D - e0), K = d.K;
  // per position of a segment: y, p, den and the state entering it
  Scratch<T> buf((size_t)(6 * K * W));
  T *ys = buf.p, *ps = ys + K * W, *dens = ps + K * W, *sa = dens + K * W, *sb = sa + K * W, *sp = sb + K * W;
  T ww[W], uw[W], abar[W], bbar[W], r[W], gu[W], gw[W];
  load_lanes<T, W>(ww, a.w + e0, w);
  load_lanes<T, W>(uw, a.u + e0, w);
  for (int i = 0; i < W; ++i) {
    abar[i] = bbar[i] = gu[i] = gw[i] = T(0);
    r[i] = T(-kWkvNeg);
  }
  for (int64_t seg = d.S - 1; seg >= 0; --seg) {
    const int64_t t0 = seg * K, t1 = imin(d.L, t0 + K);
    WkvState<T, W> s;
    wkv_ckpt_io<T, W>(d, b, seg, e0, w, const_cast<T *>(a.ckpt), s, false);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row = (b * d.L + t) * d.D + e0, j = (t - t0) * W;
      T kw[W], vw[W];
      load_lanes<T, W>(kw, a.k + row, w);
      load_lanes<T, W>(vw, a.v + row, w);
      for (int i = 0; i < W; ++i) {
        sa[j + i] = s.aa[i];
        sb[j + i] = s.bb[i];
        sp[j + i] = s.pp[i];
      }
      wkv_step<T, W>(s, kw, vw, ww, uw, ys + j, ps + j, dens + j);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t row = (b * d.L + t) * d.D + e0, j = (t - t0) * W;
      T kw[W], vw[W], gy[W], gk[W], gv[W];
      load_lanes<T, W>(kw, a.k + row, w);
      load_lanes<T, W>(vw, a.v + row, w);
      load_lanes<T, W>(gy, a.dy + row, w);
#pragma omp simd
      for (int i = 0; i < W; ++i) {
        const T p = ps[j + i], den = dens[j + i], y = ys[j + i];
        const T gyM = gy[i] / den; // gy/M_t · e^{p_t}
        const T direct = gyM * scan_exp<T>(uw[i] + kw[i] - p);
        const T es = scan_exp<T>(kw[i] - r[i]);
        gv[i] = direct + es * abar[i];
        gk[i] = direct * (vw[i] - y) + es * (abar[i] * vw[i] + bbar[i]);
        gu[i] += direct * (vw[i] - y);
        gw[i] += scan_exp<T>(ww[i] + sp[j + i] - r[i]) * (abar[i] * sa[j + i] + bbar[i] * sb[j + i]);
        const T rn = p < r[i] - ww[i] ? p : r[i] - ww[i];
        const T c1 = scan_exp<T>(rn - p), c2 = scan_exp<T>(ww[i] - r[i] + rn);
        abar[i] = gyM * c1 + abar[i] * c2;
        bbar[i] = -gyM * y * c1 + bbar[i] * c2;
        r[i] = rn;
      }
      store_lanes<T, W>(a.dk + row, gk, w);
      store_lanes<T, W>(a.dv + row, gv, w);
    }
  }
  store_lanes<T, W>(a.dw_part + b * d.D + e0, gw, w);
  store_lanes<T, W>(a.du_part + b * d.D + e0, gu, w);
}

// ---------------------------------------------------------------------------------------------
// GLA's gated scan (per row b and head h; K key channels, V value channels):
//   S_t = diag(e^{g_t}) S_{t−1} + k_t v_tᵀ  (K × V),   o_t = S_tᵀ q_t,
// with g ≤ 0 the log forget gate per key channel. A task is one (b, h); the state is held as
// K rows of VP = V rounded up to a multiple of 16 lanes (the padding stays 0), vectorised over
// value channels. Checkpoints: the state entering every segment, [B·H, S, K, V].

template <typename T> static inline void gla_load_row(T *dst, const T *src, int64_t V, int64_t VP) {
  for (int64_t j = 0; j < VP; ++j) dst[j] = j < V ? src[j] : T(0);
}

template <typename T> void gla_fwd_task(const GlaDims &d, int64_t bh, const GlaFwdArgs<T> &a) {
  const int64_t K = d.K, V = d.V, VP = d.VP, L = d.L;
  Scratch<T> buf((size_t)(K * VP + 2 * VP));
  T *S = buf.p, *vt = S + K * VP, *ot = vt + VP;
  for (int64_t t = 0; t < L; ++t) {
    if (a.ckpt && t % d.Kc == 0) {
      T *c = a.ckpt + ((bh * d.S + t / d.Kc) * K) * V;
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < V; ++j) c[i * V + j] = S[i * VP + j];
    }
    const T *qt = a.q + (bh * L + t) * K, *kt = a.k + (bh * L + t) * K, *gt = a.g + (bh * L + t) * K;
    gla_load_row<T>(vt, a.v + (bh * L + t) * V, V, VP);
    for (int64_t j = 0; j < VP; ++j) ot[j] = T(0);
    for (int64_t i = 0; i < K; ++i) {
      const T ai = scan_exp<T>(gt[i]), ki = kt[i], qi = qt[i];
      T *__restrict Si = S + i * VP;
#pragma omp simd
      for (int64_t j = 0; j < VP; ++j) {
        const T sv = ai * Si[j] + ki * vt[j];
        Si[j] = sv;
        ot[j] += qi * sv;
      }
    }
    T *o = a.o + (bh * L + t) * V;
    for (int64_t j = 0; j < V; ++j) o[j] = ot[j];
  }
}

// Σ over the value lanes of K rows of VP lanes each: folds each row to 16 lanes, then sums.
template <typename T>
static inline void gla_row_sums(const T *rows, int64_t K, int64_t VP, T *fold, T *out, bool add) {
  for (int64_t i = 0; i < K; ++i) {
    T *f = fold + i * 16;
    const T *r = rows + i * VP;
    for (int l = 0; l < 16; ++l) f[l] = r[l];
    for (int64_t c = 16; c < VP; c += 16)
      for (int l = 0; l < 16; ++l) f[l] += r[c + l];
  }
  sum_rows<T>(fold, K, out, add);
}

// Backward. With the adjoint dS_t = q_t do_tᵀ + diag(e^{g_{t+1}}) dS_{t+1}:
//   dq_t = S_t do_t,  dk_t = dS_t v_t,  dv_t = dS_tᵀ k_t,  dg_t = e^{g_t} ⊙ rowsum(dS_t ⊙ S_{t−1}).
template <typename T> void gla_bwd_task(const GlaDims &d, int64_t bh, const GlaBwdArgs<T> &a) {
  const int64_t K = d.K, V = d.V, VP = d.VP, L = d.L, Kc = d.Kc;
  const size_t KV = (size_t)(K * VP);
  // Ss: [Kc][K][VP] states of the segment; as: [Kc][K] gates; S0: the state entering it;
  // carry: diag(e^{g_{t+1}}) dS_{t+1}; G: dS_t; p1..p3: per-row products; fold: [K][16]
  Scratch<T> buf((size_t)(Kc * KV + Kc * K + 6 * KV + 16 * K + 3 * VP + 3 * K));
  T *Ss = buf.p, *as = Ss + Kc * KV, *S0 = as + Kc * K, *carry = S0 + KV, *G = carry + KV, *p1 = G + KV;
  T *p2 = p1 + KV, *p3 = p2 + KV, *fold = p3 + KV, *vt = fold + 16 * K, *dot = vt + VP, *dvt = dot + VP;
  T *dq = dvt + VP, *dk = dq + K, *dg = dk + K;
  for (int64_t seg = d.S - 1; seg >= 0; --seg) {
    const int64_t t0 = seg * Kc, t1 = imin(L, t0 + Kc);
    const T *c = a.ckpt + ((bh * d.S + seg) * K) * V;
    for (int64_t i = 0; i < K; ++i) gla_load_row<T>(S0 + i * VP, c + i * V, V, VP);
    for (int64_t t = t0; t < t1; ++t) {
      const T *kt = a.k + (bh * L + t) * K, *gt = a.g + (bh * L + t) * K;
      gla_load_row<T>(vt, a.v + (bh * L + t) * V, V, VP);
      const T *Sp = t == t0 ? S0 : Ss + (t - t0 - 1) * KV;
      T *Sc = Ss + (t - t0) * KV, *at = as + (t - t0) * K;
      for (int64_t i = 0; i < K; ++i) {
        const T ai = scan_exp<T>(gt[i]), ki = kt[i];
        at[i] = ai;
        const T *__restrict Spi = Sp + i * VP;
        T *__restrict Sci = Sc + i * VP;
#pragma omp simd
        for (int64_t j = 0; j < VP; ++j) Sci[j] = ai * Spi[j] + ki * vt[j];
      }
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const T *qt = a.q + (bh * L + t) * K, *kt = a.k + (bh * L + t) * K;
      gla_load_row<T>(vt, a.v + (bh * L + t) * V, V, VP);
      gla_load_row<T>(dot, a.dout + (bh * L + t) * V, V, VP);
      const T *Sp = t == t0 ? S0 : Ss + (t - t0 - 1) * KV, *Sc = Ss + (t - t0) * KV, *at = as + (t - t0) * K;
      for (int64_t j = 0; j < VP; ++j) dvt[j] = T(0);
      for (int64_t i = 0; i < K; ++i) {
        const T qi = qt[i], ki = kt[i], ai = at[i];
        T *__restrict Gi = G + i * VP, *__restrict ci = carry + i * VP;
        T *__restrict p1i = p1 + i * VP, *__restrict p2i = p2 + i * VP, *__restrict p3i = p3 + i * VP;
        const T *__restrict Sci = Sc + i * VP, *__restrict Spi = Sp + i * VP;
#pragma omp simd
        for (int64_t j = 0; j < VP; ++j) {
          const T gij = qi * dot[j] + ci[j];
          Gi[j] = gij;
          p1i[j] = Sci[j] * dot[j];
          p2i[j] = gij * vt[j];
          p3i[j] = gij * Spi[j];
          dvt[j] += gij * ki;
          ci[j] = ai * gij;
        }
      }
      gla_row_sums<T>(p1, K, VP, fold, dq, false);
      gla_row_sums<T>(p2, K, VP, fold, dk, false);
      gla_row_sums<T>(p3, K, VP, fold, dg, false);
      T *dqo = a.dq + (bh * L + t) * K, *dko = a.dk + (bh * L + t) * K, *dgo = a.dg + (bh * L + t) * K;
      for (int64_t i = 0; i < K; ++i) {
        dqo[i] = dq[i];
        dko[i] = dk[i];
        dgo[i] = dg[i] * at[i];
      }
      T *dvo = a.dv + (bh * L + t) * V;
      for (int64_t j = 0; j < V; ++j) dvo[j] = dvt[j];
    }
  }
}

// Entry points (declared in scan_common.h): forward tasks [begin, end) of B·EB, task = b·EB + eb
// (one channel block); backward tasks of B·G, task = b·G + g, the channel blocks of group g in
// turn (they add into the group's dB, dC partial sums).
// The f32 ones run with flush-to-zero / denormals-are-zero on x86: a decayed state that
// underflows becomes 0 instead of a denormal (whose arithmetic is about 100× slower).
namespace {
struct FlushDenormals {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};
} // namespace

#define ZS_DEFINE_ENTRIES(T, SUFFIX, FLUSH)                                                                        \
  void scan_fwd_##SUFFIX(const ScanDims &d, int64_t begin, int64_t end, const zs::ScanFwdArgs<T> &a) {              \
    FLUSH;                                                                                                        \
    for (int64_t task = begin; task < end; ++task) scan_fwd_task<T, ZS_LANES>(d, task / d.EB, task % d.EB, a);     \
  }                                                                                                               \
  void scan_bwd_##SUFFIX(const ScanDims &d, int64_t begin, int64_t end, const zs::ScanBwdArgs<T> &a) {              \
    FLUSH;                                                                                                        \
    for (int64_t task = begin; task < end; ++task) {                                                              \
      const int64_t b = task / d.G, g = task % d.G;                                                               \
      for (int64_t eb = g * d.EB / d.G; eb < (g + 1) * d.EB / d.G; ++eb)                                          \
        scan_bwd_task<T, ZS_LANES>(d, b, g, eb, eb == g * d.EB / d.G, a);                                          \
    }                                                                                                             \
  }

ZS_DEFINE_ENTRIES(float, f32, FlushDenormals flush_guard)
ZS_DEFINE_ENTRIES(double, f64, (void)0)

#define ZS_DEFINE_WKV_ENTRIES(T, SUFFIX, FLUSH)                                                                    \
  void wkv_fwd_##SUFFIX(const WkvDims &d, int64_t begin, int64_t end, const zs::WkvFwdArgs<T> &a) {                 \
    FLUSH;                                                                                                        \
    for (int64_t task = begin; task < end; ++task) wkv_fwd_task<T, ZS_LANES>(d, task / d.DB, task % d.DB, a);     \
  }                                                                                                               \
  void wkv_bwd_##SUFFIX(const WkvDims &d, int64_t begin, int64_t end, const zs::WkvBwdArgs<T> &a) {                 \
    FLUSH;                                                                                                        \
    for (int64_t task = begin; task < end; ++task) wkv_bwd_task<T, ZS_LANES>(d, task / d.DB, task % d.DB, a);     \
  }

ZS_DEFINE_WKV_ENTRIES(float, f32, FlushDenormals flush_guard)
ZS_DEFINE_WKV_ENTRIES(double, f64, (void)0)
#undef ZS_DEFINE_WKV_ENTRIES

#define ZS_DEFINE_GLA_ENTRIES(T, SUFFIX, FLUSH)                                                                    \
  void gla_fwd_##SUFFIX(const GlaDims &d, int64_t begin, int64_t end, const zs::GlaFwdArgs<T> &a) {                 \
    FLUSH;                                                                                                        \
    for (int64_t task = begin; task < end; ++task) gla_fwd_task<T>(d, task, a);                                   \
  }                                                                                                               \
  void gla_bwd_##SUFFIX(const GlaDims &d, int64_t begin, int64_t end, const zs::GlaBwdArgs<T> &a) {                 \
    FLUSH;                                                                                                        \
    for (int64_t task = begin; task < end; ++task) gla_bwd_task<T>(d, task, a);                                   \
  }

ZS_DEFINE_GLA_ENTRIES(float, f32, FlushDenormals flush_guard)
ZS_DEFINE_GLA_ENTRIES(double, f64, (void)0)
#undef ZS_DEFINE_GLA_ENTRIES
#undef ZS_DEFINE_ENTRIES

} // namespace ZS_NS
