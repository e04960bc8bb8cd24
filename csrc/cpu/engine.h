// The step engine (EngineParams in ssmkit.h): runs straight-line programs of
// primitive instructions over float32 rows, many steps per call, and samples each
// step's token. In the per-ISA namespace ssmkit::SSMKIT_ISA; it calls the step kernels
// of step.h and dplr.h through their params structs.
//
// Two ways to use threads. Rows (batch streams) are independent: when there are at
// least as many rows as threads, each thread owns a contiguous range of rows and runs
// every step for them, with no synchronisation. With fewer rows than threads (batch 1),
// the threads split each instruction by output columns (channels) instead and meet at
// a barrier between instructions: batch 1 is mat-vec work bound by reading the weights
// from L3, and two cores read twice as fast as one. Every output element is computed
// by the same arithmetic in both modes, so the results are the same bits. The kernels
// below are tuned for a few rows at a time.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <thread>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "dplr.h"
#include "simd.h"
#include "ssmkit/ssmkit.h"
#include "step.h"

namespace ssmkit {
namespace SSMKIT_ISA {

// ---- vector math (float32) ----

// exp(x) for float vectors: x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor
// polynomial to r^7 (truncation below 2e-9 relative), then scaled by 2^n through the
// exponent bits. Inputs are clamped to [-104, 88.7]: below, the result is 0 or the
// smallest denormal, as expf's; above, a finite 3.3e38 where expf overflows. The GLU's
// sigmoid 1/(1 + exp(-b)) is then at most 3e-39 for b < -88.7 where the truth is a
// smaller denormal: an absolute error below 3e-39.
template <typename V>
inline V vexp(V x) {
  using S = Simd<float>;
  typedef int32_t I __attribute__((vector_size(sizeof(V))));
  x = x < S::splat(-104.0f) ? S::splat(-104.0f) : x;
  x = x > S::splat(88.7f) ? S::splat(88.7f) : x;
  // round to nearest by the 1.5 * 2^23 trick (|x log2 e| < 2^22)
  const V n = (x * S::splat(1.44269504088896341f) + S::splat(12582912.0f)) - S::splat(12582912.0f);
  const V r = (x - n * S::splat(0.693359375f)) - n * S::splat(-2.12194440e-4f);  // Cody-Waite ln2
  V p = S::splat(1.0f / 5040);
  p = p * r + S::splat(1.0f / 720);
  p = p * r + S::splat(1.0f / 120);
  p = p * r + S::splat(1.0f / 24);
  p = p * r + S::splat(1.0f / 6);
  p = p * r + S::splat(0.5f);
  p = p * r + S::splat(1.0f);
  p = p * r + S::splat(1.0f);
  // 2^n in two factors, so that n down to -150 (denormal results) stays representable
  const I ni = __builtin_convertvector(n, I);
  const I half = ni >> 1;
  const V s1 = (V)((half + 127) << 23), s2 = (V)((ni - half + 127) << 23);
  return p * s1 * s2;
}

// erf(z) for 0 <= z < 1: z times the Taylor series of erf(z)/z in z^2 to z^20
// (truncation below 1e-9 relative at z = 1).
constexpr int kErfSeriesTerms = 11;
constexpr float kErfSeries[kErfSeriesTerms] = {  // 2/sqrt(pi) (-1)^k / (k! (2k + 1))
    1.128379167e+00f, -3.761263890e-01f, 1.128379167e-01f, -2.686617065e-02f,
    5.223977625e-03f, -8.548327023e-04f, 1.205533298e-04f, -1.492565036e-05f,
    1.646211437e-06f, -1.636584469e-07f, 1.480719282e-08f};
// erfc(z) for 1 <= z <= 22: exp(-z^2) Q(t), t = 1/(1 + z/2) in [1/12, 2/3], where Q
// is the degree-10 polynomial fitted to exp(z^2) erfc(z) by least squares of the
// relative error in double precision (Chebyshev nodes in t); with the coefficients
// rounded to float its relative error is 5.5e-9, far below float32's 6e-8.
constexpr int kErfcFitTerms = 11;
constexpr float kErfcFit[kErfcFitTerms] = {
    1.822700746e-08f, 2.820940018e-01f, 2.821084261e-01f, 2.467178702e-01f,
    1.767012924e-01f, 8.489318192e-02f, -2.193612978e-02f, 2.357367985e-02f,
    -2.503172159e-01f, 2.556416690e-01f, -7.970895618e-02f};

template <typename V>
inline V verf_small(V z) {  // 0 <= z < 1
  using S = Simd<float>;
  const V z2 = z * z;
  V p = S::splat(kErfSeries[kErfSeriesTerms - 1]);
  for (int k = kErfSeriesTerms - 2; k >= 0; --k) p = p * z2 + S::splat(kErfSeries[k]);
  return z * p;
}

// erfc(z) for 1 <= z <= 22, z = |x|/sqrt2. exp(-z^2) = exp(-x^2/2) is taken from x,
// split as x = xh + xl with xh holding 12 significant bits: xh^2 is exact, so the
// exponent carries no rounding error (z^2 rounded would cost z^2 eps32 relative).
template <typename V>
inline V verfc_large(V z, V x) {
  using S = Simd<float>;
  typedef int32_t I __attribute__((vector_size(sizeof(V))));
  const V t = S::splat(1.0f) / (S::splat(1.0f) + S::splat(0.5f) * z);
  V q = S::splat(kErfcFit[kErfcFitTerms - 1]);
  for (int k = kErfcFitTerms - 2; k >= 0; --k) q = q * t + S::splat(kErfcFit[k]);
  const V xh = (V)((I)x & I{} + int32_t(0xFFFFF000u));
  const V xl = x - xh;
  const V hi = S::splat(-0.5f) * (xh * xh), lo = S::splat(-0.5f) * (xl * (xh + xh + xl));
  return vexp(hi) * vexp(lo) * q;
}

// GELU(x) = x Phi(x) = x/2 erfc(-x/sqrt2): for x >= 0, x (1 - erfc(z)/2) (no
// cancellation: erfc(z)/2 <= 1/2); for x < 0, x erfc(|z|)/2 (computed directly, so
// the tail keeps its relative accuracy).
template <typename V>
inline V vgelu(V x) {
  using S = Simd<float>;
  const V z = x * S::splat(0.70710678118654752f);
  const V az = z < S::zero() ? -z : z;
  V c;  // erfc(|z|)
  if (S::all_true(az < S::splat(1.0f))) {
    c = S::splat(1.0f) - verf_small(az);
  } else {
    const V small = S::splat(1.0f) - verf_small(az < S::splat(1.0f) ? az : S::zero());
    // erfc(22) ~ 1e-212: 0 in float; z in [1, 22] and x clamped alike
    const V lo = S::splat(1.0f), hi = S::splat(22.0f), sq2 = S::splat(1.41421356237309505f);
    const V zc = az < lo ? lo : (az > hi ? hi : az);
    const V ax = x < S::zero() ? -x : x;
    const V xc = az < lo ? sq2 : (az > hi ? hi * sq2 : ax);
    const V large = verfc_large(zc, xc);
    c = az < S::splat(1.0f) ? small : large;
  }
  const V half_c = S::splat(0.5f) * c;
  V g = z < S::zero() ? x * half_c : x * (S::splat(1.0f) - half_c);
  return x != x ? x : g;  // NaN stays NaN
}

// ---- the instructions ----

struct EngineRows {
  float* const* ptr;
  const int64_t* stride;
  float* at(int64_t view, int64_t row) const { return ptr[view] + row * stride[view]; }
  const float* param(int64_t view) const { return view < 0 ? nullptr : ptr[view]; }
};

// out[lo, hi) of the layer norm of x (n floats); the statistics always over all of x,
// in the same order, so every column range sees the same mean and rstd. lo is a
// multiple of W, hi one or n: each column takes the vector or scalar path it takes
// in a whole row.
inline void engine_layer_norm(const float* x, float* out, const float* w, const float* b,
                              int64_t n, float eps, int64_t lo, int64_t hi) {
  using S = Simd<float>;
  using V = S::V;
  constexpr int W = S::W;
  const int64_t whole = n / W * W;
  V acc = S::zero();
  for (int64_t i = 0; i < whole; i += W) acc += S::load(x + i);
  float sum = S::hsum(acc);
  for (int64_t i = whole; i < n; ++i) sum += x[i];
  const float mean = sum / float(n);
  const V mv = S::splat(mean);
  acc = S::zero();
  for (int64_t i = 0; i < whole; i += W) {
    const V d = S::load(x + i) - mv;
    acc += d * d;
  }
  float var = S::hsum(acc);
  for (int64_t i = whole; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float rstd = 1.0f / std::sqrt(var / float(n) + eps);
  const V rv = S::splat(rstd);
  int64_t i = lo;
  for (; i + W <= hi; i += W)
    S::store(out + i, (S::load(x + i) - mv) * rv * S::load(w + i) + S::load(b + i));
  for (; i < hi; ++i) out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

// Linear layers: out = bias + x Wt, with Wt packed in column blocks of kLinearBlock
// outputs, each (n_in, block width) contiguous at Wt + o0 n_in (the last block may be
// narrower): a block streams through memory in order (the weights mostly come from
// L2/L3 at batch 1), and R rows share each weight load.
constexpr int64_t kLinearBlock = 32;

// R rows, columns [c, c + NV W) of one block (Wb, bw floats per input), NV W
// accumulators per row. Every row is summed in the same order whatever R and NV, so a
// row's result does not depend on the batch or on how rows are split over threads.
// (At batch 1 the weights' bandwidth, not the FMA chains' latency, is the limit.)
template <int R, int NV>
inline void engine_linear_cols(const float* const* x, float* const* out, const float* Wb,
                               int64_t bw, const float* bias, int64_t n_in, int64_t o0, int64_t c) {
  using S = Simd<float>;
  using V = S::V;
  constexpr int W = S::W;
  V acc[R][NV];
  for (int k = 0; k < NV; ++k) {
    const V b = bias ? S::load(bias + o0 + c + k * W) : S::zero();
    for (int r = 0; r < R; ++r) acc[r][k] = b;
  }
  const float* w = Wb + c;
  for (int64_t i = 0; i < n_in; ++i, w += bw) {
    V wv[NV];
    for (int k = 0; k < NV; ++k) wv[k] = S::load(w + k * W);
    for (int r = 0; r < R; ++r) {
      const V xs = S::splat(x[r][i]);
      for (int k = 0; k < NV; ++k) acc[r][k] += xs * wv[k];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < NV; ++k) S::store(out[r] + o0 + c + k * W, acc[r][k]);
}

// R rows of one column block [o0, o0 + bw).
template <int R>
inline void engine_linear_block(const float* const* x, float* const* out, const float* Wt,
                                const float* bias, int64_t n_in, int64_t n_out, int64_t o0) {
  constexpr int W = Simd<float>::W;
  constexpr int NV0 = kLinearBlock / W < 8 / R ? int(kLinearBlock / W) : 8 / R;
  constexpr int NV = NV0 > 0 ? NV0 : 1;  // vectors per pass: R NV <= 8 accumulators
  const int64_t bw = imin(kLinearBlock, n_out - o0);
  const float* Wb = Wt + o0 * n_in;
  int64_t c = 0;
  for (; c + NV * W <= bw; c += NV * W) engine_linear_cols<R, NV>(x, out, Wb, bw, bias, n_in, o0, c);
  for (; c + W <= bw; c += W) engine_linear_cols<R, 1>(x, out, Wb, bw, bias, n_in, o0, c);
  for (; c < bw; ++c)  // the last n_out % W outputs
    for (int r = 0; r < R; ++r) {
      float acc = bias ? bias[o0 + c] : 0.0f;
      for (int64_t i = 0; i < n_in; ++i) acc += x[r][i] * Wb[i * bw + c];
      out[r][o0 + c] = acc;
    }
}

// `rows` rows, x row k at x + k xs, out row k at o + k os; outputs [lo, hi) (lo a
// multiple of kLinearBlock, hi one or n_out): block by block, all rows per block, so
// that a block's weights come from L3 once per call and from L1/L2 for the other rows.
inline void engine_linear(const float* x0, int64_t xs, float* out0, int64_t os, const float* Wt,
                          const float* bias, int64_t n_in, int64_t n_out, int64_t rows,
                          int64_t lo, int64_t hi) {
  const auto X = [&](int64_t r) { return x0 + r * xs; };
  const auto O = [&](int64_t r) { return out0 + r * os; };
  for (int64_t o0 = lo; o0 < hi; o0 += kLinearBlock) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      const float* x[4] = {X(r), X(r + 1), X(r + 2), X(r + 3)};
      float* o[4] = {O(r), O(r + 1), O(r + 2), O(r + 3)};
      engine_linear_block<4>(x, o, Wt, bias, n_in, n_out, o0);
    }
    for (; r + 2 <= rows; r += 2) {
      const float* x[2] = {X(r), X(r + 1)};
      float* o[2] = {O(r), O(r + 1)};
      engine_linear_block<2>(x, o, Wt, bias, n_in, n_out, o0);
    }
    for (; r < rows; ++r) {
      const float* x[1] = {X(r)};
      float* o[1] = {O(r)};
      engine_linear_block<1>(x, o, Wt, bias, n_in, n_out, o0);
    }
  }
}

inline void engine_gelu(float* x, int64_t n) {
  using S = Simd<float>;
  constexpr int W = S::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) S::store(x + i, vgelu(S::load(x + i)));
  if (i < n) {  // the tail through one padded vector
    float tmp[W] = {};
    for (int64_t j = i; j < n; ++j) tmp[j - i] = x[j];
    S::store(tmp, vgelu(S::load(tmp)));
    for (int64_t j = i; j < n; ++j) x[j] = tmp[j - i];
  }
}

inline Simd<float>::V vsigmoid_times(Simd<float>::V a, Simd<float>::V b) {  // a * sigmoid(b)
  using S = Simd<float>;
  return a / (S::splat(1.0f) + vexp(-b));
}

// out[lo, hi) (lo a multiple of W, hi one or n: the scalar tail stays the same columns)
inline void engine_glu(const float* x, float* out, int64_t n, int64_t lo, int64_t hi) {
  using S = Simd<float>;
  constexpr int W = S::W;
  int64_t i = lo;
  for (; i + W <= hi; i += W) S::store(out + i, vsigmoid_times(S::load(x + i), S::load(x + n + i)));
  for (; i < hi; ++i) out[i] = x[i] / (1.0f + std::exp(-x[n + i]));
}

// ---- split mode: the threads of one team divide each instruction ----


// A barrier for a team that meets many thousand times a second (between instructions
// of a step: microseconds apart). Each thread counts its arrivals in its own cache
// line and waits until every thread's count has reached its own: a meeting costs
// each thread one line written and the others' read (a shared counter would add an
// atomic read-modify-write and a second line). Counts only grow, so nothing is
// reset. Waiters spin briefly (the partner is normally microseconds away), then
// yield the core, so a partner descheduled by other load costs little (OpenMP's
// barriers spin long, which is what makes busy machines slow).
class SpinBarrier {
 public:
  explicit SpinBarrier(int64_t threads) : arrived_(threads) {}
  void set_team(int64_t n) { n_ = n; }  // threads [0, n) take part, n <= the constructor's
  // Thread tid's next meeting; round: its count of meetings so far (start at 0).
  void wait(int64_t tid, int64_t& round) {
    ++round;
    // release: this thread's writes reach whoever sees the count (acquire below)
    arrived_[tid].count.store(round, std::memory_order_release);
    for (int64_t t = 0; t < n_; ++t)
      for (int spins = 0; arrived_[t].count.load(std::memory_order_acquire) < round; ++spins) {
        if (spins < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
          _mm_pause();
#endif
        } else {
          std::this_thread::yield();
        }
      }
  }

 private:
  static constexpr int kSpins = 4000;  // about 20-100 us of pause instructions
  struct alignas(64) Slot {
    std::atomic<int64_t> count{0};
  };
  std::vector<Slot> arrived_;
  int64_t n_ = 1;
};

// Thread `part` of `parts`: its columns [lo, hi) of [0, n), in whole units of
// kLinearBlock (the last may be short), contiguous and in order, so that the parts
// cover [0, n) once. One unit for every instruction: a linear's output blocks, and
// elementwise ops and S4 channels on the same width get the same ranges, so that one
// thread reads what it wrote itself and no barrier is needed in between (see
// engine_barriers). kLinearBlock is a multiple of the vector width: each column takes
// the vector or scalar path it takes in a whole row.
struct Part {
  int64_t part = 0, parts = 1;
  void range(int64_t n, int64_t& lo, int64_t& hi) const {
    const int64_t units = (n + kLinearBlock - 1) / kLinearBlock;
    lo = imin(n, units * part / parts * kLinearBlock);
    hi = imin(n, units * (part + 1) / parts * kLinearBlock);
  }
};

// A linear whose output the next instruction's GLU takes (x = [a, b], out = a
// sigmoid(b)) is split as that GLU is: each thread computes its columns of both
// halves, so the GLU reads only what its own thread wrote and needs no barrier
// before it. Returns the number of column ranges (1 or 2) put in lo, hi.
inline int linear_ranges(const int64_t* c, const int64_t* end, const Part& part, int64_t lo[2], int64_t hi[2]) {
  const int64_t* next = c + kEngineOpLength[c[0]];  // kEngineLinear or kEngineNormLinear
  const int64_t half = c[6] / 2;
  if (next < end && next[0] == kEngineGlu && next[1] == c[2] && next[3] == half && half % kLinearBlock == 0) {
    part.range(half, lo[0], hi[0]);
    lo[1] = lo[0] + half, hi[1] = hi[0] + half;
    return 2;
  }
  part.range(c[6], lo[0], hi[0]);
  return 1;
}

// An S4 step instruction (state c[1], u c[2], y c[3]) on channels [lo, hi) of rows
// [r0, r1), p holding the parameters already offset to channel lo. Channels are
// independent: channels [lo, hi) of a row are the sub-problem with H = hi - lo at
// offset pointers (with a split, rows one at a time: their channel ranges are not
// evenly spaced). Per channel the kernel's arithmetic is the same whatever H and the
// rows, so the split gives the same bits.
template <typename Params, typename Kernel>
inline void engine_s4_step(Params& p, const EngineRows& v, const int64_t* c, int64_t r0, int64_t r1,
                           bool whole, int64_t lo, int64_t hi, int64_t n2, Kernel kernel) {
  p.batch = whole ? r1 - r0 : 1, p.H = hi - lo;
  for (int64_t r = r0; r < r1 && lo < hi; r += p.batch) {
    p.state = p.new_state = v.at(c[1], r) + lo * n2;
    p.u = v.at(c[2], r) + lo, p.y = v.at(c[3], r) + lo;
    kernel(p);
  }
}

// The widest input of a norm_linear instruction in code [c, end) (0: none): the
// floats per row of the thread's scratch for its normalised rows.
inline int64_t engine_norm_width(const int64_t* c, const int64_t* end) {
  int64_t width = 0;
  for (; c < end; c += kEngineOpLength[c[0]])
    if (c[0] == kEngineNormLinear) width = width > c[5] ? width : c[5];
  return width;
}

// The instructions [c, stop) of a program that ends at `end` (linears look at the
// instruction after them), over rows [r0, r1), this thread's part of each instruction's
// columns (the whole of each when parts = 1). token: per row (absolute row index). normed:
// this thread's scratch, (r1 - r0) rows of engine_norm_width floats. With parts > 1
// the team meets at `barrier` after the instructions that sync marks (sync[i] for
// the instruction at c + i, c the first one run; see engine_barriers).
inline void engine_program(const int64_t* c, const int64_t* stop, const int64_t* end, const EngineRows& v,
                           int64_t r0, int64_t r1, const int64_t* token, const Part& part,
                           float* normed, SpinBarrier* barrier, const uint8_t* sync, int64_t& round) {
  const int64_t* const begin = c;
  using S = Simd<float>;
  constexpr int W = S::W;
  int64_t lo, hi;  // this thread's columns (channels) of the instruction
  while (c < stop) {
    switch (c[0]) {
      case kEngineEmbed: {
        const int64_t width = c[3];
        const float* table = v.param(c[2]);
        part.range(width, lo, hi);
        for (int64_t r = r0; r < r1; ++r)
          std::memcpy(v.at(c[1], r) + lo, table + token[r] * width + lo, sizeof(float) * (hi - lo));
        break;
      }
      case kEngineLayerNorm: {
        double eps;
        std::memcpy(&eps, &c[6], sizeof eps);
        part.range(c[5], lo, hi);
        for (int64_t r = r0; r < r1; ++r)
          engine_layer_norm(v.at(c[1], r), v.at(c[2], r), v.param(c[3]), v.param(c[4]), c[5], float(eps), lo, hi);
        break;
      }
      case kEngineLinear: {
        int64_t los[2], his[2];
        const int ranges = linear_ranges(c, end, part, los, his);
        for (int k = 0; k < ranges; ++k)
          engine_linear(v.at(c[1], r0), v.stride[c[1]], v.at(c[2], r0), v.stride[c[2]], v.param(c[3]),
                        v.param(c[4]), c[5], c[6], r1 - r0, los[k], his[k]);
        break;
      }
      case kEngineNormLinear: {  // every thread normalises whole rows (as one would), then its columns
        double eps;
        std::memcpy(&eps, &c[9], sizeof eps);
        const int64_t n_in = c[5];
        for (int64_t r = r0; r < r1; ++r)
          engine_layer_norm(v.at(c[1], r), normed + (r - r0) * n_in, v.param(c[7]), v.param(c[8]), n_in, float(eps), 0, n_in);
        int64_t los[2], his[2];
        const int ranges = linear_ranges(c, end, part, los, his);
        for (int k = 0; k < ranges; ++k)
          engine_linear(normed, n_in, v.at(c[2], r0), v.stride[c[2]], v.param(c[3]), v.param(c[4]), n_in,
                        c[6], r1 - r0, los[k], his[k]);
        break;
      }
      case kEngineGelu:
        part.range(c[2], lo, hi);
        for (int64_t r = r0; r < r1; ++r) engine_gelu(v.at(c[1], r) + lo, hi - lo);
        break;
      case kEngineGlu:
        part.range(c[3], lo, hi);
        for (int64_t r = r0; r < r1; ++r) engine_glu(v.at(c[1], r), v.at(c[2], r), c[3], lo, hi);
        break;
      case kEngineAdd: {
        part.range(c[4], lo, hi);
        for (int64_t r = r0; r < r1; ++r) {
          const float *a = v.at(c[1], r), *b = v.at(c[2], r);
          float* o = v.at(c[3], r);
          int64_t i = lo;
          for (; i + W <= hi; i += W) S::store(o + i, S::load(a + i) + S::load(b + i));
          for (; i < hi; ++i) o[i] = a[i] + b[i];
        }
        break;
      }
      case kEngineCopy:
        part.range(c[3], lo, hi);
        for (int64_t r = r0; r < r1; ++r)
          std::memmove(v.at(c[2], r) + lo, v.at(c[1], r) + lo, sizeof(float) * (hi - lo));
        break;
      case kEngineDplrStep: {
        const int64_t H = c[11], N = c[12], rank = c[13], n2 = 2 * N;
        part.range(H, lo, hi);
        const float* D = v.param(c[10]);
        DplrStepParams p;
        p.dtype = DType::complex64;
        p.N = N, p.r = rank;
        p.a = v.param(c[4]) + lo * n2, p.b = v.param(c[5]) + lo * n2;
        p.P = v.param(c[6]) + lo * rank * n2, p.Pd = v.param(c[7]) + lo * rank * n2;
        p.R = v.param(c[8]) + lo * rank * rank, p.C = v.param(c[9]) + lo * n2;
        p.D = D ? D + lo : nullptr;
        engine_s4_step(p, v, c, r0, r1, part.parts == 1, lo, hi, n2, dplr_step_impl<float>);
        break;
      }
      case kEngineDiagStep: {  // as the DPLR step
        const int64_t H = c[8], N = c[9], n2 = 2 * N;
        part.range(H, lo, hi);
        const float* D = v.param(c[7]);
        StepParams p;
        p.dtype = DType::complex64;
        p.N = N;
        p.dA = v.param(c[4]) + lo * n2, p.dB = v.param(c[5]) + lo * n2, p.dC = v.param(c[6]) + lo * n2;
        p.D = D ? D + lo : nullptr;
        engine_s4_step(p, v, c, r0, r1, part.parts == 1, lo, hi, n2, ssm_step_impl<float>);
        break;
      }
      default:
        return;  // unreachable: the binding checks every opcode before a run
    }
    if (barrier && sync[c - begin]) barrier->wait(part.part, round);
    c += kEngineOpLength[c[0]];
  }
}

// A token's probability and index (as a double: exact below 2^53), for the nucleus sort.
struct TokenMass {
  double p, i;
};

// Plain double arithmetic, no a*b+c (so contraction into FMA cannot change it):
// the same operations in the same order as the float64 reference of the tests.
// work: 3n doubles (the probabilities, then n TokenMass).
inline int64_t draw_token(const float* logits, int64_t n, double temperature, double top_p,
                          double u, double* work) {
  double* p = work;
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    p[i] = double(logits[i]) / temperature;
    if (!(std::fabs(p[i]) <= std::numeric_limits<double>::max())) return -1;  // NaN, Inf
    m = p[i] > m ? p[i] : m;
  }
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    p[i] = std::exp(p[i] - m);
    total += p[i];
  }
  for (int64_t i = 0; i < n; ++i) p[i] /= total;
  if (top_p < 1) {
    // The nucleus: most likely first (ties: lower index first); a token stays while
    // the mass of the more likely ones is below top_p (the most likely always does).
    // The 16 most likely first (peaked distributions need no more), then the rest.
    TokenMass* order = reinterpret_cast<TokenMass*>(work + n);
    for (int64_t i = 0; i < n; ++i) order[i] = {p[i], double(i)};
    const auto more_likely = [](const TokenMass& a, const TokenMass& b) {
      return a.p > b.p || (a.p == b.p && a.i < b.i);
    };
    const int64_t first = imin(16, n);
    std::partial_sort(order, order + first, order + n, more_likely);
    int64_t j = 0;
    double before = 0;
    for (; j < first && before < top_p; ++j) before += order[j].p;
    if (before < top_p && first < n) {
      std::sort(order + first, order + n, more_likely);
      for (; j < n && before < top_p; ++j) before += order[j].p;
    }
    for (int64_t k = j; k < n; ++k) p[int64_t(order[k].i)] = 0;
  }
  double kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += p[i];
  const double target = u * kept;
  double acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] == 0) continue;
    acc += p[i];
    last = i;
    if (acc > target) return i;
  }
  return last;  // target rounded up to the whole mass
}

// Where split mode needs barriers. Each instruction's accesses by each thread, as
// address intervals (the ranges engine_program uses, for every row): a barrier goes
// after instruction i when the next one has a thread touch memory that another thread
// wrote, or write memory another thread read, since the last barrier. After the last
// instruction of a program there is always one (then every thread reads the logits,
// which counts as pending at the start of each program; step_end says when that needs
// a barrier right after the sampling). Exact addresses, so views
// that alias (the pooling slots) are covered. Returns false when one instruction has
// such a conflict within itself (in place layer norm: its statistics read columns
// another thread writes): no barrier helps, and the run takes one thread.
struct EngineAccess {
  const float *lo, *hi;
  int64_t part;
  bool write;
};

// The accesses of the instruction at c (its program ends at end) by thread `part`.
inline void engine_accesses(const int64_t* c, const int64_t* end, const EngineRows& v, int64_t batch,
                            const Part& part, std::vector<EngineAccess>& out) {
  int64_t lo, hi;
  const auto add = [&](const float* base, int64_t a, int64_t b, bool write) {
    if (a < b) out.push_back({base + a, base + b, part.part, write});
  };
  const auto param = [&](int64_t view, int64_t n) {  // read-only in practice; counted anyway
    if (view >= 0) add(v.param(view), 0, n, false);
  };
  for (int64_t r = 0; r < batch; ++r) switch (c[0]) {
      case kEngineEmbed:
        part.range(c[3], lo, hi);
        add(v.at(c[1], r), lo, hi, true), param(c[2], c[3] * c[4]);
        break;
      case kEngineLayerNorm:
        part.range(c[5], lo, hi);
        add(v.at(c[1], r), 0, c[5], false), add(v.at(c[2], r), lo, hi, true);
        param(c[3], c[5]), param(c[4], c[5]);
        break;
      case kEngineLinear:
      case kEngineNormLinear: {  // (the normalised rows are the thread's own scratch)
        int64_t los[2], his[2];
        const int ranges = linear_ranges(c, end, part, los, his);
        add(v.at(c[1], r), 0, c[5], false);
        for (int k = 0; k < ranges; ++k) add(v.at(c[2], r), los[k], his[k], true);
        param(c[3], c[5] * c[6]), param(c[4], c[6]);
        if (c[0] == kEngineNormLinear) param(c[7], c[5]), param(c[8], c[5]);
        break;
      }
      case kEngineGelu:
        part.range(c[2], lo, hi);
        add(v.at(c[1], r), lo, hi, true);
        break;
      case kEngineGlu:
        part.range(c[3], lo, hi);
        add(v.at(c[1], r), lo, hi, false), add(v.at(c[1], r), c[3] + lo, c[3] + hi, false);
        add(v.at(c[2], r), lo, hi, true);
        break;
      case kEngineAdd:
        part.range(c[4], lo, hi);
        add(v.at(c[1], r), lo, hi, false), add(v.at(c[2], r), lo, hi, false), add(v.at(c[3], r), lo, hi, true);
        break;
      case kEngineCopy:
        part.range(c[3], lo, hi);
        add(v.at(c[1], r), lo, hi, false), add(v.at(c[2], r), lo, hi, true);
        break;
      case kEngineDplrStep:
      case kEngineDiagStep: {
        const bool dplr = c[0] == kEngineDplrStep;
        const int64_t H = dplr ? c[11] : c[8], n2 = 2 * (dplr ? c[12] : c[9]);
        const int64_t rank = dplr ? c[13] : 0;
        part.range(H, lo, hi);
        add(v.at(c[1], r), lo * n2, hi * n2, true);  // the state, updated in place
        add(v.at(c[2], r), lo, hi, false), add(v.at(c[3], r), lo, hi, true);
        if (dplr) {  // a, b, P, Pd, R, C, D
          param(c[4], H * n2), param(c[5], H * n2), param(c[6], H * rank * n2), param(c[7], H * rank * n2);
          param(c[8], H * rank * rank), param(c[9], H * n2), param(c[10], H);
        } else {  // dA, dB, dC, D
          param(c[4], H * n2), param(c[5], H * n2), param(c[6], H * n2), param(c[7], H);
        }
        break;
      }
      default:
        break;
    }
}

// Fills sync (code words + 1 bytes, see EngineParams::split_marks); false when one
// instruction's parts would touch the same memory (no split gives one thread's bits).
inline bool engine_barriers(const EngineParams& p, int64_t parts, uint8_t* sync) {
  const EngineRows v{p.view_ptr, p.view_stride};
  const int64_t code_end = p.program_start[p.cycle];
  std::memset(sync, 0, code_end + 1);
  uint8_t& step_end = sync[code_end];
  std::vector<EngineAccess> since, next;  // since the last barrier; the next instruction's
  const auto conflict = [](const EngineAccess& a, const EngineAccess& b) {
    return a.part != b.part && (a.write || b.write) && a.lo < b.hi && b.lo < a.hi;
  };
  for (int64_t k = 0; k < p.cycle; ++k) {
    since.clear();
    for (int64_t t = 0; t < parts; ++t)  // every thread drew the last step's token from its logits
      for (int64_t r = 0; r < p.batch; ++r)
        since.push_back({v.at(p.logits_view, r), v.at(p.logits_view, r) + p.n_classes, t, false});
    int64_t prev = -1;
    for (int64_t i = p.program_start[k]; i < p.program_start[k + 1]; i += kEngineOpLength[p.code[i]]) {
      next.clear();
      for (int64_t t = 0; t < parts; ++t) engine_accesses(p.code + i, p.code + p.program_start[k + 1], v, p.batch, Part{t, parts}, next);
      for (const auto& a : next)
        for (const auto& b : next)
          if (conflict(a, b)) return false;
      bool wait = false;
      for (const auto& a : next) {
        for (const auto& b : since)
          if (conflict(a, b)) {
            wait = true;
            break;
          }
        if (wait) break;
      }
      if (wait) {
        if (prev >= 0) sync[prev] = 1;
        else step_end = 1;  // the first instruction writes the logits: a barrier after each step
        since.clear();
      }
      since.insert(since.end(), next.begin(), next.end());
      prev = i;
    }
    if (prev >= 0) sync[prev] = 1;
  }
  return true;
}

// Fills async_joins (code words bytes, EngineParams::async_joins): 1 at the
// instructions that touch what a section writes or write what it reads, taken whole.
inline void engine_joins(const EngineParams& p, uint8_t* joins) {
  const EngineRows v{p.view_ptr, p.view_stride};
  std::memset(joins, 0, p.program_start[p.cycle]);
  std::vector<EngineAccess> section, mine;
  for (int64_t k = 0; k < p.cycle; ++k)
    for (int64_t i = p.section[2 * k]; i >= 0 && i < p.section[2 * k + 1]; i += kEngineOpLength[p.code[i]])
      engine_accesses(p.code + i, p.code + p.program_start[k + 1], v, p.batch, Part{}, section);
  for (auto& a : section) a.part = 1;  // the section's thread; the others' accesses are part 0
  for (int64_t k = 0; k < p.cycle; ++k)
    for (int64_t i = p.program_start[k]; i < p.program_start[k + 1]; i += kEngineOpLength[p.code[i]]) {
      mine.clear();
      engine_accesses(p.code + i, p.code + p.program_start[k + 1], v, p.batch, Part{}, mine);
      for (const auto& a : mine)
        for (const auto& b : section)
          if ((a.write || b.write) && a.lo < b.hi && b.lo < a.hi) joins[i] = 1;
    }
}

// Split mode (batch < threads): one team for the whole run; every thread runs every
// step over all rows, its part of each instruction's columns; every thread draws
// each token itself, thread 0 writes the samples. A program's section (EngineParams::
// section) runs whole on thread 1 while thread 0 runs the instructions after it whole,
// step after step, up to the first one async_joins marks; there the team meets and
// goes on split from that instruction (the plan's barriers after it still hold: the
// meeting is one for everybody). Every instruction is computed whole or by columns,
// as always, so the bits are those of one thread.
inline void engine_run_split(const EngineParams& p, int64_t threads) {
  const EngineRows views{p.view_ptr, p.view_stride};
  const int64_t batch = p.batch;
  // Allocated before the team starts: a throw inside would leave the others waiting
  // at the barrier.
  Scratch<double> prob(threads * 3 * p.n_classes);  // each thread's
  Scratch<int64_t> tokens(threads * batch);  // each thread's copy of the step's tokens
  // (whole cache lines each: no line shared between threads)
  const int64_t norm_floats = round_up(batch * engine_norm_width(p.code, p.code + p.program_start[p.cycle]), 16);
  Scratch<float> normed(threads * norm_floats);  // each thread's normalised rows (norm_linear)
  if (!prob.ok() || !tokens.ok() || !normed.ok()) throw std::bad_alloc();
  SpinBarrier barrier(threads);
  bool split = true;
  int64_t bad_step = -1;  // written by thread 0
  int64_t rejoin_step = 0, rejoin_at = -1;  // see meet() below
  std::atomic<bool> section_done{false};     // thread 1 has run the section and waits to meet
#pragma omp parallel num_threads(int(threads))
  {
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
    omp_set_num_threads(1);  // the step kernels called inside stay on their thread
#else
    const int64_t tid = 0, nt = 1;
#endif
    int64_t* token = tokens.p + tid * batch;
    for (int64_t r = 0; r < batch; ++r) token[r] = p.token[r];  // before single's barrier: before thread 0 writes p.token
    // The barrier plan for the team there is (OpenMP may give fewer threads than
    // asked), made at the first run with that team; single's own barrier publishes it.
    // No split possible: thread 0 runs it all.
#pragma omp single
    {
      if (nt > 1 && *p.split_team != nt && *p.split_team != -nt) {
        try {
          *p.split_team = engine_barriers(p, nt, p.split_marks) ? nt : -nt;
          if (p.section && *p.split_team == nt) engine_joins(p, p.async_joins);
        } catch (...) {  // out of memory: one thread needs no barriers (and no plan is kept)
          *p.split_team = 0;
        }
      }
      split = nt > 1 && *p.split_team == nt;
      barrier.set_team(nt);
    }
    const Part part = split ? Part{tid, nt} : Part{};
    SpinBarrier* const team = split ? &barrier : nullptr;
    const bool sections = split && p.section;  // sections run on thread 1 (see EngineParams)
    double* work = prob.p + tid * 3 * p.n_classes;
    int64_t round = 0, my_bad = -1;
    // Where thread 0 met the others after running alone: the step, the instruction
    // (-1: the run is over) and its tokens (token row 0 of `tokens`). Written before
    // the meeting, read after it.
    const auto meet = [&](int64_t& i, const int64_t*& c, int64_t& k) {
      team->wait(tid, round);
      i = rejoin_step, k = (p.phase + i) % p.cycle;
      c = rejoin_at < 0 ? nullptr : p.code + rejoin_at;
      for (int64_t r = 0; r < batch; ++r) token[r] = tokens.p[r];
    };
    bool alone = false;  // thread 0, while a section runs
    const int64_t* c = nullptr;  // the next instruction of step i (null: the step's first)
    int64_t k = 0;
    for (int64_t i = 0; i < p.steps && my_bad < 0 && (split || tid == 0);) {
      if (!c) {
        if (p.tokens_in)
          for (int64_t r = 0; r < batch; ++r) token[r] = p.tokens_in[i * batch + r];
        k = (p.phase + i) % p.cycle;
        c = p.code + p.program_start[k];
      }
      const int64_t* const end = p.code + p.program_start[k + 1];
      if (alone) {
        // Whole instructions, no barriers, up to the first that must wait for the
        // section, or until the section is done (then the team splits again at once).
        while (c < end && !p.async_joins[c - p.code] && !section_done.load(std::memory_order_acquire)) {
          const int64_t* next = c + kEngineOpLength[c[0]];
          engine_program(c, next, end, views, 0, batch, token, Part{}, normed.p, nullptr, nullptr, round);
          c = next;
        }
        if (c < end) {
          rejoin_step = i, rejoin_at = c - p.code;
          alone = false;
          meet(i, c, k);
          continue;
        }
      } else {
        const int64_t* section = sections && p.section[2 * k] >= 0 ? p.code + p.section[2 * k] : nullptr;
        const int64_t* stop = section && section >= c ? section : end;
        engine_program(c, stop, end, views, 0, batch, token, part, normed.p + tid * norm_floats, team,
                       split ? p.split_marks + (c - p.code) : nullptr, round);
        c = stop;
        if (c == section) {
          if (tid == 0) section_done.store(false, std::memory_order_relaxed);  // (published by the wait)
          team->wait(tid, round);  // the section's inputs are whole
          const int64_t* section_end = p.code + p.section[2 * k + 1];
          if (tid == 0) {
            alone = true, c = section_end;
          } else {
            if (tid == 1) {
              engine_program(section, section_end, end, views, 0, batch, token, Part{}, normed.p + tid * norm_floats,
                             nullptr, nullptr, round);
              section_done.store(true, std::memory_order_release);
            }
            meet(i, c, k);
            if (!c) break;  // thread 0 finished the run alone
          }
          continue;
        }
      }
      // After the last instruction's barrier the logits are whole. Every thread draws
      // the token itself (the same arithmetic on the same logits: the same token), so
      // no thread waits for another's draw; thread 0 writes the results.
      for (int64_t r = 0; r < batch; ++r) {
        const float* logits = views.at(p.logits_view, r);
        if (p.logits_out && tid == 0)
          std::memcpy(p.logits_out + (i * batch + r) * p.n_classes, logits, sizeof(float) * p.n_classes);
        if (p.uniforms) {
          const int64_t s = draw_token(logits, p.n_classes, p.temperature, p.top_p, p.uniforms[i * batch + r], work);
          if (s < 0) {  // every thread stops at this step
            my_bad = i;
            break;
          }
          token[r] = s;
          if (tid == 0) p.samples[i * batch + r] = s, p.token[r] = s;
        }
      }
      if (!alone && team && p.split_marks[p.program_start[p.cycle]]) team->wait(tid, round);  // see engine_barriers
      ++i, c = nullptr;
    }
    if (alone) {  // thread 0: the run is over (or stopped at a bad step); the others are waiting
      rejoin_at = -1;
      team->wait(tid, round);
    }
    if (tid == 0) bad_step = my_bad;
  }
  if (p.bad_step) *p.bad_step = bad_step;
}

inline void engine_run_impl(const EngineParams& p) {
  const EngineRows views{p.view_ptr, p.view_stride};
  const int64_t asked = p.threads > 1 ? p.threads : 1;
  if (p.batch < asked) return engine_run_split(p, asked);
#ifdef _OPENMP
  // The step kernels called inside stay on their thread: one thread, one row range.
  // (One thread runs outside any parallel region: a nested one would build an OpenMP
  // team at every kernel call.)
  const int saved_threads = omp_get_max_threads();
#endif
  const int64_t threads = imin(asked, p.batch);
  const int64_t batch = p.batch;
  bool failed = false;
  int64_t bad_step = -1;
#ifdef _OPENMP
  if (threads == 1) omp_set_num_threads(1);
#endif
#pragma omp parallel num_threads(int(threads)) if (threads > 1)
  {
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
    omp_set_num_threads(1);
#else
    const int64_t tid = 0, nt = 1;
#endif
    const int64_t r0 = batch * tid / nt, r1 = batch * (tid + 1) / nt;
    Scratch<double> prob(3 * p.n_classes);  // this thread's draw scratch
    Scratch<int64_t> token(batch);
    Scratch<float> normed((r1 - r0) * engine_norm_width(p.code, p.code + p.program_start[p.cycle]));
    int64_t my_bad = -1;
    try {
      if (!prob.ok() || !token.ok() || !normed.ok()) throw std::bad_alloc();
      for (int64_t i = 0; i < p.steps && r0 < r1 && my_bad < 0; ++i) {
        for (int64_t r = r0; r < r1; ++r) token.p[r] = p.tokens_in ? p.tokens_in[i * batch + r] : p.token[r];
        const int64_t k = (p.phase + i) % p.cycle;
        int64_t round = 0;  // no barrier: rows are independent
        const int64_t* end = p.code + p.program_start[k + 1];
        engine_program(p.code + p.program_start[k], end, end, views, r0, r1, token.p, Part{}, normed.p, nullptr,
                       nullptr, round);
        for (int64_t r = r0; r < r1; ++r) {
          const float* logits = views.at(p.logits_view, r);
          if (p.logits_out)
            std::memcpy(p.logits_out + (i * batch + r) * p.n_classes, logits, sizeof(float) * p.n_classes);
          if (p.uniforms) {
            const int64_t s = draw_token(logits, p.n_classes, p.temperature, p.top_p,
                                           p.uniforms[i * batch + r], prob.p);
            if (s < 0) {
              my_bad = i;
              break;
            }
            p.samples[i * batch + r] = s;
            p.token[r] = s;
          }
        }
      }
    } catch (...) {
#pragma omp atomic write
      failed = true;
    }
    if (my_bad >= 0) {
#pragma omp critical(ssmkit_engine_bad_step)
      bad_step = bad_step < 0 || my_bad < bad_step ? my_bad : bad_step;
    }
  }
#ifdef _OPENMP
  omp_set_num_threads(saved_threads);
#endif
  if (failed) throw std::bad_alloc();
  if (p.bad_step) *p.bad_step = bad_step;
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
