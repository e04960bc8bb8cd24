// The per-channel math of dplr_untruncated_C written once for the CPU kernel
// (csrc/cpu/cauchy.cpp) and the CUDA kernel (csrc/cuda/cauchy.cu): the frequencies and
// their weights, the Woodbury solve of one frequency and the finish of a channel from
// pass 2's sums. The two Cauchy passes and the loops around them stay with each backend
// (ssmkit.h, DplrUntruncatedCParams, says what is computed).
//
// In the includer's namespace ssmkit::SSMKIT_ISA, like host_device.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "ssmkit/host_device.h"

namespace ssmkit {
namespace SSMKIT_ISA {

// Frequency k < (L + 1)/2 of the paired sum over the L-th roots of unity: its point
// zhat_k = i zh with zh = 2 tan(pi k/L) (in double, rounded once)...
template <typename T>
SSMKIT_HD inline T untruncated_point(int64_t k, int64_t L) {
  return static_cast<T>(2 * std::tan(3.14159265358979323846 * static_cast<double>(k) / static_cast<double>(L)));
}

// ...and its weight (1 + zhat_k/2)/L, halved at k = 0 (z = 1 is its own conjugate: once
// in the paired sum).
template <typename T>
SSMKIT_HD inline Cx<T> untruncated_weight(T zh, int64_t k, int64_t L) {
  const T half = k == 0 ? T(2) : T(1);
  return {T(1) / static_cast<T>(L) / half, zh / 2 / static_cast<T>(L) / half};
}

// Solves M x = y in place by Gaussian elimination with partial pivoting (M: r x r,
// destroyed, M[i][j] at m[i * rs + j * cs]; y[i] at y[i * ys]): the Woodbury solve of
// one frequency for rank r > 1 (the GPU solves in its scratch, transposed, through the
// strides).
template <typename T>
SSMKIT_HD inline void solve_small(Cx<T>* m, int64_t rs, int64_t cs, Cx<T>* y, int64_t ys, int64_t r) {
  auto at = [&](int64_t i, int64_t j) -> Cx<T>& { return m[i * rs + j * cs]; };
  auto size = [](Cx<T> a) { return std::fabs(a.re) + std::fabs(a.im); };
  for (int64_t c = 0; c < r; ++c) {
    int64_t piv = c;
    for (int64_t i = c + 1; i < r; ++i)
      if (size(at(i, c)) > size(at(piv, c))) piv = i;
    if (piv != c) {
      for (int64_t j = 0; j < r; ++j) {
        const Cx<T> t = at(c, j);
        at(c, j) = at(piv, j), at(piv, j) = t;
      }
      const Cx<T> t = y[c * ys];
      y[c * ys] = y[piv * ys], y[piv * ys] = t;
    }
    const Cx<T> inv = cx_inv(at(c, c));
    for (int64_t i = c + 1; i < r; ++i) {
      const Cx<T> f = at(i, c) * inv;
      for (int64_t j = c + 1; j < r; ++j) at(i, j) = at(i, j) - f * at(c, j);
      y[i * ys] = y[i * ys] - f * y[c * ys];
    }
  }
  for (int64_t c = r - 1; c >= 0; --c) {
    Cx<T> acc = y[c * ys];
    for (int64_t j = c + 1; j < r; ++j) acc = acc - at(c, j) * y[j * ys];
    y[c * ys] = acc * cx_inv(at(c, c));
  }
}

// One channel's C from pass 2's sums Tj(j, n) (T0 = Tj(0, .), T1 = Tj(1 + b, .), already
// negated): V = C~ T0 - P^* T1 (+ C~/(2L) for z = -1, which has no zhat), then
// C = V (I - dt/2 A) over the full state, A = diag(Lambda) - P P^*, with w(n) = dt Lambda_n.
// P(b, n), Ct(n) read the inputs; s: r values of scratch. n in order, so the sums over
// the state are deterministic.
template <typename T, class TjAt, class PAt, class CAt, class WAt>
SSMKIT_HD inline void untruncated_finish(int64_t N, int64_t r, int64_t L, T dt, TjAt Tj, PAt P, CAt Ct, WAt w,
                                         Cx<T>* out, T* s) {
  for (int64_t b = 0; b < r; ++b) s[b] = 0;
  for (int64_t n = 0; n < N; ++n) {
    Cx<T> pt{0, 0};
    for (int64_t b = 0; b < r; ++b) pt = pt + conj(P(b, n)) * Tj(1 + b, n);
    Cx<T> v = Ct(n) * Tj(0, n) - pt;
    if (L % 2 == 0) v = v + (T(1) / static_cast<T>(2 * L)) * Ct(n);
    out[n] = v;
    for (int64_t b = 0; b < r; ++b) s[b] += 2 * (v * P(b, n)).re;
  }
  for (int64_t n = 0; n < N; ++n) {
    Cx<T> ps{0, 0};
    for (int64_t b = 0; b < r; ++b) ps = ps + s[b] * conj(P(b, n));
    out[n] = out[n] * (Cx<T>{1, 0} - T(0.5) * w(n)) + (dt / 2) * ps;
  }
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
