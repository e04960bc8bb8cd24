// One bilinear step of a DPLR system, A = diag(Lambda) - P P^* (rank r) with
// conjugate-pair storage, in O(N r) per channel from the factors of ops.dplr_setup.
// In the per-ISA namespace ssmkit::SSMKIT_ISA; uses step.h's complex-vector helpers.
//
// Derivation (full 2N space, then the stored half): with E = diag(2/dt - Lambda),
// I - dt/2 A = dt/2 (E + P P^*), and Woodbury gives
//   (E + P P^*)^-1 = E^-1 - E^-1 P R P^* E^-1,  R = (I_r + P^* E^-1 P)^-1.
// For conjugate-pair vectors v, P^* v = 2 Re(sum_n conj(P_n) v_n) is real, so R is a
// real r x r matrix and the step is
//   s = 2 Re(P^* x),  w = a x + b u - Pd^T s,  t = 2 Re(P^* w),  x' = w - Pd^T (R t)
// with a = (2/dt + Lambda)/(2/dt - Lambda), b = 2 B/(2/dt - Lambda), Pd = P/(2/dt - Lambda).
//
// Three passes over a row's 2N reals (Re(conj(p) v) summed over n is the plain dot
// product of the interleaved (re, im) arrays):
//   (1) s = 2 Re(P^* x);  (2) w = a x + b u - Pd^T s, written to the output row, and
//   t = 2 Re(P^* w);  (3) x' = w - Pd^T (R t) in place, and y = 2 Re(C x') + D u.
// The row is read fully in pass 1 before pass 2 writes it, so new_state may be state.
// Rank 1 (S4's case) has its own kernel that steps up to kDplrRows batch rows of one
// channel together: the channel's parameters are loaded and shuffled once for all of
// them, and their dependency chains interleave. Each row's arithmetic is the same
// whatever the number of rows stepped with it, so results do not depend on the batch
// size, the blocking or the thread count.
#pragma once
#include <cstdint>

#include "simd.h"
#include "ssmkit/ssmkit.h"
#include "step.h"  // RowBlock, for_row_blocks, by_rows, the complex-vector helpers

namespace ssmkit {
namespace SSMKIT_ISA {

constexpr int64_t kMaxDplrRank = 64;   // per-row stack arrays for s, t, R t
constexpr int kDplrRows = 4;           // batch rows of one channel stepped together
constexpr int64_t kDplrChannels = 16;  // channels per task (see for_row_blocks in step.h)

// Sum of the products p[i] q[i], i in [0, n): SIMD with two accumulators (two short
// dependency chains), then the scalar tail.
template <typename T>
inline T dot(const T* p, const T* q, int64_t n) {
  using S = Simd<T>;
  constexpr int W = S::W;
  const int64_t whole = n / W * W;
  typename S::V acc0 = S::zero(), acc1 = S::zero();
  int64_t i = 0;
  for (; i + 2 * W <= whole; i += 2 * W) {
    acc0 += S::load(p + i) * S::load(q + i);
    acc1 += S::load(p + i + W) * S::load(q + i + W);
  }
  if (i < whole) acc0 += S::load(p + i) * S::load(q + i);
  T sum = S::hsum(acc0 + acc1);
  for (i = whole; i < n; ++i) sum += p[i] * q[i];
  return sum;
}

// Rank 1: the K rows of blk (see RowBlock and ssm_step_rows in step.h: the channel's
// parameters loaded once for all rows, all rows loaded before any is stored).
template <typename T, int K>
inline void dplr_rank1_rows(const DplrStepParams& p, const RowBlock<T, kDplrRows>& blk) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t n2 = 2 * p.N, whole = n2 / W * W, off = blk.h * n2;  // rank 1: P, Pd are (H, N)
  const V minus_plus = alternate(T(-1), T(1)), plus_minus = alternate(T(1), T(-1));
  const T* a = static_cast<const T*>(p.a) + off;
  const T* b = static_cast<const T*>(p.b) + off;
  const T* P = static_cast<const T*>(p.P) + off;
  const T* Pd = static_cast<const T*>(p.Pd) + off;
  const T* c = static_cast<const T*>(p.C) + off;
  const T R = static_cast<const T*>(p.R)[blk.h];
  // Local copies: the stores below (memcpy) could otherwise alias them, forcing reloads.
  const T* x[K];
  T* xo[K];
  T u[K], s[K], rt[K];
  for (int k = 0; k < K; ++k) x[k] = blk.x[k], xo[k] = blk.xo[k], u[k] = blk.u[k];
  V acc[K];

  // (1) s = 2 Re(P^* x)
  for (int k = 0; k < K; ++k) acc[k] = S::zero();
  for (int64_t i = 0; i < whole; i += W) {
    const V pv = S::load(P + i);
    for (int k = 0; k < K; ++k) acc[k] += pv * S::load(x[k] + i);
  }
  for (int k = 0; k < K; ++k) {
    T sum = S::hsum(acc[k]);
    for (int64_t i = whole; i < n2; ++i) sum += P[i] * x[k][i];
    s[k] = 2 * sum;
  }

  // (2) w = a x + b u - Pd s -> xo, t = 2 Re(P^* w)
  for (int k = 0; k < K; ++k) acc[k] = S::zero();
  for (int64_t i = 0; i < whole; i += W) {
    const V av = S::load(a + i), bv = S::load(b + i), pdv = S::load(Pd + i), pv = S::load(P + i);
    const V ar = real_parts_twice(av), ai = imag_parts_twice(av) * minus_plus;
    V xv[K];
    for (int k = 0; k < K; ++k) xv[k] = S::load(x[k] + i);
    for (int k = 0; k < K; ++k) {
      // the terms that do not depend on x first: x's chain is two FMAs
      const V wv = ((bv * S::splat(u[k]) - pdv * S::splat(s[k])) + ai * swap_pairs(xv[k])) + ar * xv[k];
      S::store(xo[k] + i, wv);
      acc[k] += pv * wv;
    }
  }
  for (int k = 0; k < K; ++k) {
    const T* xk = x[k];
    T* wk = xo[k];
    T sum = S::hsum(acc[k]);
    for (int64_t i = whole; i < n2; i += 2) {
      const T xr = xk[i], xi = xk[i + 1];
      const T wr = ((b[i] * u[k] - Pd[i] * s[k]) - a[i + 1] * xi) + a[i] * xr;
      const T wi = ((b[i + 1] * u[k] - Pd[i + 1] * s[k]) + a[i + 1] * xr) + a[i] * xi;
      wk[i] = wr, wk[i + 1] = wi;
      sum += P[i] * wr + P[i + 1] * wi;
    }
    rt[k] = R * (2 * sum);
  }

  // (3) x' = w - Pd (R t) in place, y = 2 Re(C x') + D u
  for (int k = 0; k < K; ++k) acc[k] = S::zero();
  for (int64_t i = 0; i < whole; i += W) {
    const V pdv = S::load(Pd + i), cv = S::load(c + i) * plus_minus;  // Re(c x') = cr xr' - ci xi'
    V wv[K];
    for (int k = 0; k < K; ++k) wv[k] = S::load(xo[k] + i);
    for (int k = 0; k < K; ++k) {
      const V nx = wv[k] - pdv * S::splat(rt[k]);
      S::store(xo[k] + i, nx);
      acc[k] += cv * nx;
    }
  }
  const T* D = static_cast<const T*>(p.D);
  for (int k = 0; k < K; ++k) {
    T* wk = xo[k];
    T sum = S::hsum(acc[k]);
    for (int64_t i = whole; i < n2; i += 2) {
      const T nr = wk[i] - Pd[i] * rt[k], ni = wk[i + 1] - Pd[i + 1] * rt[k];
      wk[i] = nr, wk[i + 1] = ni;
      sum += c[i] * nr - c[i + 1] * ni;
    }
    *blk.y[k] = D ? 2 * sum + D[blk.h] * u[k] : 2 * sum;  // no D: no D u term (0 * NaN is NaN)
  }
}

// Any rank, one row (same three passes, one rank-r term at a time).
template <typename T>
inline void dplr_row(const T* a, const T* b, const T* P, const T* Pd, const T* R, const T* c,
                     const T* D, int64_t n2, int64_t r, const T* x, T* xo, T u, T* y) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t whole = n2 / W * W;
  T s[kMaxDplrRank], t[kMaxDplrRank], rt[kMaxDplrRank];
  for (int64_t k = 0; k < r; ++k) s[k] = 2 * dot(P + k * n2, x, n2);  // s = 2 Re(P^* x)
  const V minus_plus = alternate(T(-1), T(1)), plus_minus = alternate(T(1), T(-1));
  const V uv = S::splat(u);
  for (int64_t i = 0; i < whole; i += W) {  // w = a x + b u - Pd^T s -> xo
    const V av = S::load(a + i), xv = S::load(x + i);
    V wv = S::load(b + i) * uv;
    for (int64_t k = 0; k < r; ++k) wv -= S::load(Pd + k * n2 + i) * S::splat(s[k]);
    wv = (wv + (imag_parts_twice(av) * minus_plus) * swap_pairs(xv)) + real_parts_twice(av) * xv;
    S::store(xo + i, wv);
  }
  for (int64_t i = whole; i < n2; i += 2) {
    const T xr = x[i], xi = x[i + 1];
    T wr = b[i] * u, wi = b[i + 1] * u;
    for (int64_t k = 0; k < r; ++k) wr -= Pd[k * n2 + i] * s[k], wi -= Pd[k * n2 + i + 1] * s[k];
    xo[i] = (wr - a[i + 1] * xi) + a[i] * xr;
    xo[i + 1] = (wi + a[i + 1] * xr) + a[i] * xi;
  }
  for (int64_t k = 0; k < r; ++k) t[k] = 2 * dot(P + k * n2, xo, n2);  // t = 2 Re(P^* w)
  for (int64_t i = 0; i < r; ++i) {                                     // R t
    T acc = 0;
    for (int64_t j = 0; j < r; ++j) acc += R[i * r + j] * t[j];
    rt[i] = acc;
  }
  V acc = S::zero();
  for (int64_t i = 0; i < whole; i += W) {  // x' = w - Pd^T (R t), y = 2 Re(C x') + D u
    V nx = S::load(xo + i);
    for (int64_t k = 0; k < r; ++k) nx -= S::load(Pd + k * n2 + i) * S::splat(rt[k]);
    S::store(xo + i, nx);
    acc += (S::load(c + i) * plus_minus) * nx;
  }
  T sum = S::hsum(acc);
  for (int64_t i = whole; i < n2; i += 2) {
    T nr = xo[i], ni = xo[i + 1];
    for (int64_t k = 0; k < r; ++k) nr -= Pd[k * n2 + i] * rt[k], ni -= Pd[k * n2 + i + 1] * rt[k];
    xo[i] = nr, xo[i + 1] = ni;
    sum += c[i] * nr - c[i + 1] * ni;
  }
  *y = D ? 2 * sum + *D * u : 2 * sum;  // no D: no D u term (0 * NaN would be NaN)
}

template <typename T>
void dplr_step_impl(const DplrStepParams& p) {
  const int64_t r = p.r, n2 = 2 * p.N;
  for_row_blocks<T, kDplrRows, kDplrChannels>(
      p.batch, p.H, n2, p.batch * p.H * p.N * (r + 1), p.state, p.new_state, p.u, p.y,
      [&](const RowBlock<T, kDplrRows>& blk) {
        if (r == 1) {
          by_rows<kDplrRows>(blk.rows, [&](auto K) { dplr_rank1_rows<T, K.value>(p, blk); });
          return;
        }
        const int64_t h = blk.h;
        const T* D = static_cast<const T*>(p.D);
        for (int k = 0; k < blk.rows; ++k)
          dplr_row(static_cast<const T*>(p.a) + h * n2, static_cast<const T*>(p.b) + h * n2,
                   static_cast<const T*>(p.P) + h * r * n2, static_cast<const T*>(p.Pd) + h * r * n2,
                   static_cast<const T*>(p.R) + h * r * r, static_cast<const T*>(p.C) + h * n2,
                   D ? D + h : nullptr, n2, r, blk.x[k], blk.xo[k], blk.u[k], blk.y[k]);
      });
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
