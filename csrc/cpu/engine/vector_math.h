// The engine's float32 vector math: exp, GELU (erf, erfc), GLU, layer norm and the
// packed linear layer, tuned for a few rows at a time (SaShiMi generation at small batch).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../simd.h"  // Simd, imin

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

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

}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
