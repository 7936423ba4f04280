// Fused CPU kernels for Mamba's selective scan: plain C++ on raw pointers, no ATen.
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
#undef ZS_DEFINE_ENTRIES

} // namespace ZS_NS
