// One bilinear step of a DPLR system, A = diag(Lambda) - P P^* (rank r) with
// conjugate-pair storage, in O(N r) per channel from the factors of ops.dplr_setup.
// In the per-ISA namespace ssmkit::SSMKIT_ISA; uses step.h's step_rows.
//
// Derivation (full 2N space, then the stored half): with E = diag(2/dt - Lambda),
// I - dt/2 A = dt/2 (E + P P^*), and Woodbury gives
//   (E + P P^*)^-1 = E^-1 - E^-1 P R P^* E^-1,  R = (I_r + Gamma)^-1,  Gamma = P^* E^-1 P.
// For conjugate-pair vectors v, P^* v = 2 Re(sum_n conj(P_n) v_n) is real, so Gamma and
// R are real r x r matrices. With a = (2/dt + Lambda)/(2/dt - Lambda), b = 2 B/(2/dt -
// Lambda) (the diagonal part's bilinear dA, dB) and Pd = E^-1 P, the Woodbury step is
//   s = 2 Re(P^* x),  w = a x + b u - Pd^T s,  x' = w - Pd^T R 2 Re(P^* w).
// Since 2 Re(P^* w) = 2 Re(P^* a x) + beta u - Gamma s (beta = 2 Re(P^* b)) and
// I - R Gamma = R, this is
//   x' = a x + dB u - Pd^T sigma,  sigma = R 2 Re(P^* (1 + a) x) = 2 Re(Q^* x),
// with Q_k = sum_j R_kj P_j conj(1 + a) and dB = b - Pd^T R beta (the system's dB): dA =
// diag(a) - Pd Q^*, a rank-r correction of the diagonal. ops.dplr_setup forms a, dB,
// Pd and Q.
//
// Two passes over a row's 2N reals (Re(conj(q) x) summed over n is the plain dot
// product of the interleaved (re, im) arrays): (1) sigma = 2 Re(Q^* x); (2) x' = a x +
// dB u - Pd^T sigma, stored, and y = 2 Re(C x') + D u (step.h's step_rows, the
// diagonal step's pass with the correction). The row is read fully in pass 1 before
// pass 2 writes it, so new_state may be state. Up to kDplrRows batch rows of one
// channel are stepped together (see RowBlock in step.h): each row's arithmetic is the
// same whatever the number of rows stepped with it, so results do not depend on the
// batch size, the blocking or the thread count.
#pragma once
#include <cstdint>

#include "simd.h"
#include "ssmkit/ssmkit.h"
#include "step.h"  // RowBlock, for_row_blocks, by_rows, step_rows

namespace ssmkit {
namespace SSMKIT_ISA {

constexpr int64_t kMaxDplrRank = 64;   // per-row stack arrays for sigma
constexpr int kDplrRows = 4;           // batch rows of one channel stepped together
constexpr int64_t kDplrChannels = 16;  // channels per task (see for_row_blocks in step.h)

// The K rows of blk; kRank = 1 (S4's case, unrolled), or 0 for the rank p.r.
template <typename T, int K, int kRank>
inline void dplr_rows(const DplrStepParams& p, const RowBlock<T, kDplrRows>& blk) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t r = kRank ? kRank : p.r, n2 = 2 * p.N, whole = n2 / W * W, off = blk.h * n2;
  const T* Pd = static_cast<const T*>(p.Pd) + off * r;
  const T* Q = static_cast<const T*>(p.Q) + off * r;
  const T* x[K];
  for (int k = 0; k < K; ++k) x[k] = blk.x[k];
  T sigma[K][kRank ? kRank : kMaxDplrRank];

  // (1) sigma = 2 Re(Q^* x): two accumulators per row (two short dependency chains)
  for (int64_t j = 0; j < r; ++j) {
    const T* q = Q + j * n2;
    V acc0[K], acc1[K];
    for (int k = 0; k < K; ++k) acc0[k] = S::zero(), acc1[k] = S::zero();
    int64_t i = 0;
    for (; i + 2 * W <= whole; i += 2 * W) {
      const V q0 = S::load(q + i), q1 = S::load(q + i + W);
      for (int k = 0; k < K; ++k) acc0[k] += q0 * S::load(x[k] + i), acc1[k] += q1 * S::load(x[k] + i + W);
    }
    if (i < whole) {
      const V q0 = S::load(q + i);
      for (int k = 0; k < K; ++k) acc0[k] += q0 * S::load(x[k] + i);
    }
    for (int k = 0; k < K; ++k) {
      T sum = S::hsum(acc0[k] + acc1[k]);
      for (i = whole; i < n2; ++i) sum += q[i] * x[k][i];
      sigma[k][j] = 2 * sum;
    }
  }

  // (2) x' = a x + dB u - Pd^T sigma, y = 2 Re(C x') + D u
  const T* D = static_cast<const T*>(p.D);
  step_rows<T, K>(static_cast<const T*>(p.a) + off, static_cast<const T*>(p.b) + off,
                  static_cast<const T*>(p.C) + off, D ? D + blk.h : nullptr, n2, blk,
                  [&](auto lane, int64_t i) {
                    using L = decltype(lane);
                    if constexpr (kRank == 1) {  // Pd loaded once for all rows
                      const auto pd = L::load(Pd + i);
                      return [&sigma, pd](int k, auto bu) { return bu - pd * L::splat(sigma[k][0]); };
                    } else {
                      return [&sigma, Pd, i, r, n2](int k, auto bu) {
                        for (int64_t j = 0; j < r; ++j) bu -= L::load(Pd + j * n2 + i) * L::splat(sigma[k][j]);
                        return bu;
                      };
                    }
                  });
}

template <typename T>
void dplr_step_impl(const DplrStepParams& p) {
  for_row_blocks<T, kDplrRows, kDplrChannels>(
      p.batch, p.H, 2 * p.N, p.batch * p.H * p.N * (p.r + 1), p.state, p.new_state, p.u, p.y,
      [&](const RowBlock<T, kDplrRows>& blk) {
        by_rows<kDplrRows>(blk.rows, [&](auto K) {
          if (p.r == 1)
            dplr_rows<T, K.value, 1>(p, blk);
          else
            dplr_rows<T, K.value, 0>(p, blk);
        });
      });
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
