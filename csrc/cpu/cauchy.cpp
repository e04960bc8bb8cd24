// Cauchy product kernels, forward and backward (definitions in ssmkit.h and
// python/ssmkit/ops/reference.py), compiled once per instruction set into namespace
// ssmkit::<isa> (cmake/SsmkitCPU.cmake).
//
// Layout: z is vectorised (W values of l per SIMD register), each pair (v_n, w_n) is
// broadcast. A conjugate pair shares the real part of its denominators:
//   z - w = (dr, zi - wi),  z - conj(w) = (dr, zi + wi),  dr = zr - wr,
// and 1/d = conj(d) / |d|^2 by exact division (no reciprocal approximations).
//
// Sums are blocked (16 terms, then 16 blocks, then the rest) so the rounding error
// grows with log(N) rather than with N, as in a pairwise sum.
//
// Rows that share z and w (S4's kernel: the rows of one channel; see RowGroups) are
// computed together: the differences, denominators and reciprocals once for the group,
// the rest per row exactly as for a row alone (the same bits).
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>

#include "common.h"
#include "simd.h"
#include "ssmkit/cpu_kernels.h"
#include "ssmkit/static_switch.h"
#include "ssmkit/untruncated_math.h"

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

constexpr int64_t kFwdLBlock = 512;    // l values per forward task
constexpr int64_t kBwdLChunk = 4096;   // l values per backward task (fixed: results do not
                                       // depend on the thread count)
constexpr int64_t kSumBlock = 16;      // terms per inner accumulation block
constexpr int kMaxGroup = 4;           // rows per forward pass that share z and w
constexpr int kBwdGroup = 4;           // the same for the backward (at most kMaxGroup)

// Rows that share z and w: the batch dimensions along which both are broadcast (stride 0)
// are moved last, so that the rows of a group (`size` of them) are consecutive in
// `batch`; the group's denominators are computed once.
// v, w, z: the permuted operands; row_offset(batch, row, r) is the index of permuted row r
// in the original (output) order.
struct RowGroups {
  Batch batch;
  In v, w, z, grad, row;
  int64_t size = 1;
};

inline RowGroups group_rows(const Batch& b, const In& v, const In& w, const In& z, const In& grad = In()) {
  RowGroups g;
  g.v = v, g.w = w, g.z = z, g.grad = grad;
  int64_t original[kMaxBatchDims], step = 1;  // the output's row strides
  for (int d = b.ndim - 1; d >= 0; --d) original[d] = step, step *= b.shape[d];
  int k = 0;
  for (int shared = 0; shared < 2; ++shared)
    for (int d = 0; d < b.ndim; ++d) {
      const bool s = z.batch_stride[d] == 0 && w.batch_stride[d] == 0;
      if (s != (shared == 1)) continue;
      if (s) g.size *= b.shape[d];
      g.batch.shape[k] = b.shape[d];
      g.v.batch_stride[k] = v.batch_stride[d];
      g.w.batch_stride[k] = w.batch_stride[d];
      g.z.batch_stride[k] = z.batch_stride[d];
      g.grad.batch_stride[k] = grad.batch_stride[d];
      g.row.batch_stride[k] = original[d];
      ++k;
    }
  g.batch.ndim = k;
  return g;
}

// Adds sum_{n in [n0, n1)} of the terms for W values of z to (acc_r[k], acc_i[k]), for the
// G rows k of a group: v of row k at (vr, vi) + k * vs; z and w shared.
//
// kFused (conjugate pairs only) adds each pair as one fraction,
//   v/d1 + conj(v)/d2 = (v d2 + conj(v) d1) / (d1 d2),  d1 = z - w, d2 = z - conj(w),
//   numerator 2 (vr dr - vi wi) + 2i vr zi,  denominator (dr^2 - di1 di2) + 2i dr zi,
// one division per pair instead of two. The denominator is a product of the exact
// differences, so it keeps their accuracy (no cancellation as in z^2 - 2 Re(w) z + |w|^2).
// It needs |d1 d2|^2 to be a normal number: the block records its range and returns
// false (adding nothing) when it is not, and the caller redoes the block exactly.
// The group shares the differences, the denominators and their reciprocals; each row
// does the rest exactly as it would alone, so its bits do not depend on its group.
template <typename T, bool kConj, bool kFused, int G>
inline bool cauchy_block(typename Simd<T>::V zr, typename Simd<T>::V zi, const T* wr,
                         const T* wi, const T* vr, const T* vi, int64_t vs, int64_t n0, int64_t n1,
                         typename Simd<T>::V* acc_r, typename Simd<T>::V* acc_i) {
  using S = Simd<T>;
  using V = typename S::V;
  const V one = S::splat(1);
  V a_r[G], a_i[G], b_r[G], b_i[G];
  for (int k = 0; k < G; ++k) a_r[k] = a_i[k] = b_r[k] = b_i[k] = S::zero();
  if constexpr (kFused) {
    const V zi2 = zi + zi;
    V lo = S::splat(std::numeric_limits<T>::max()), hi = S::zero();
    for (int64_t n = n0; n < n1; ++n) {
      const V dr = zr - wr[n];
      const V di1 = zi - wi[n], di2 = zi + wi[n];
      const V den_r = dr * dr - di1 * di2, den_i = dr * zi2;
      const V den2 = den_r * den_r + den_i * den_i;
      lo = lo < den2 ? lo : den2;
      hi = hi > den2 ? hi : den2;
      const V r = one / den2;
      for (int k = 0; k < G; ++k) {
        const T vrk = vr[k * vs + n], vik = vi[k * vs + n];
        const T vr2 = vrk + vrk;
        const V num_r = vr2 * dr - T(2) * vik * wi[n], num_i = vr2 * zi;
        a_r[k] += (num_r * den_r + num_i * den_i) * r;
        a_i[k] += (num_i * den_r - num_r * den_i) * r;
      }
    }
    if (!S::all_true((lo >= std::numeric_limits<T>::min()) & (hi <= std::numeric_limits<T>::max())))
      return false;
  } else {
    for (int64_t n = n0; n < n1; ++n) {
      const V dr = zr - wr[n];
      const V di1 = zi - wi[n];
      const V dr2 = dr * dr;
      const V r1 = one / (di1 * di1 + dr2);
      V di2 = S::zero(), r2 = S::zero();
      if constexpr (kConj) {
        di2 = zi + wi[n];
        r2 = one / (di2 * di2 + dr2);
      }
      for (int k = 0; k < G; ++k) {
        const T vrk = vr[k * vs + n], vik = vi[k * vs + n];
        const V p = vrk * dr, s = vik * dr;
        // v * conj(z - w) / |z - w|^2
        a_r[k] += (p + vik * di1) * r1;
        a_i[k] += (s - vrk * di1) * r1;
        if constexpr (kConj) {  // conj(v) * conj(z - conj(w)) / |z - conj(w)|^2
          b_r[k] += (p - vik * di2) * r2;
          b_i[k] -= (s + vrk * di2) * r2;
        }
      }
    }
  }
  for (int k = 0; k < G; ++k) acc_r[k] += a_r[k] + b_r[k], acc_i[k] += a_i[k] + b_i[k];
  return true;
}

// out[k] = sum_n v_kn / (z - w_n) [+ conj(v_kn) / (z - conj(w_n))] for W values of z and
// the G rows k of a group (v as in cauchy_block).
template <typename T, bool kConj, int G>
inline void cauchy_lanes(typename Simd<T>::V zr, typename Simd<T>::V zi, const T* wr,
                         const T* wi, const T* vr, const T* vi, int64_t vs, int64_t N,
                         typename Simd<T>::V* out_r, typename Simd<T>::V* out_i) {
  using S = Simd<T>;
  using V = typename S::V;
  for (int k = 0; k < G; ++k) out_r[k] = out_i[k] = S::zero();
  for (int64_t n00 = 0; n00 < N; n00 += kSumBlock * kSumBlock) {
    V mid_r[G], mid_i[G];
    for (int k = 0; k < G; ++k) mid_r[k] = mid_i[k] = S::zero();
    const int64_t n01 = imin(N, n00 + kSumBlock * kSumBlock);
    for (int64_t n0 = n00; n0 < n01; n0 += kSumBlock) {
      const int64_t n1 = imin(n01, n0 + kSumBlock);
      if (!cauchy_block<T, kConj, kConj, G>(zr, zi, wr, wi, vr, vi, vs, n0, n1, mid_r, mid_i))
        cauchy_block<T, kConj, false, G>(zr, zi, wr, wi, vr, vi, vs, n0, n1, mid_r, mid_i);
    }
    for (int k = 0; k < G; ++k) out_r[k] += mid_r[k], out_i[k] += mid_i[k];
  }
}

// Calls f(std::integral_constant<int, G>{}) for the runtime g in [1, kMaxGroup].
template <typename F>
inline void with_group_size(int64_t g, F f) {
  switch (g) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, kMaxGroup>{});
  }
}

// A task is one l-block of up to kMaxGroup rows of a group (a group of G rows is split
// into ceil(G / kMaxGroup) parts of near-equal size).
template <typename T, bool kConj>
void cauchy_forward_impl(const CauchyParams& p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t rows = p.batch.rows(), N = p.N, L = p.L;
  if (rows == 0 || L == 0) return;
  const RowGroups g = group_rows(p.batch, p.v, p.w, p.z);
  const int64_t parts = ceil_div(g.size, kMaxGroup), part = ceil_div(g.size, parts);
  const int64_t blocks = ceil_div(L, kFwdLBlock);
  const int64_t Np = round_up(N, W), Lp = round_up(kFwdLBlock, W);
  T* out = static_cast<T*>(p.out);

  struct Local : Scratch<T> {
    int64_t rows = -1;  // the part whose w and v are loaded
    using Scratch<T>::Scratch;
  };
  parallel_tasks(
      rows / g.size * parts * blocks, rows * L * N, [&] { return Local((2 + 2 * kMaxGroup) * Np + 2 * Lp); },
      [&](Local& buf, int64_t t) {
        const int64_t q = t / blocks, l0 = (t % blocks) * kFwdLBlock;
        const int64_t r0 = q / parts * g.size + q % parts * part;  // first (permuted) row
        const int64_t m = imin(part, g.size - q % parts * part);   // rows in this part
        const int64_t nl = imin(kFwdLBlock, L - l0);
        const int64_t vs = kMaxGroup * Np;  // from row k's v to row k + 1's
        T *wr = buf.p, *wi = wr + Np, *vr = wi + Np, *vi = vr + vs, *zr = vi + vs, *zi = zr + Lp;
        if (buf.rows != q) {
          split_row(p.w, row_offset(g.batch, g.w, r0), 0, N, Np, wr, wi);
          for (int64_t k = 0; k < m; ++k)
            split_row(p.v, row_offset(g.batch, g.v, r0 + k), 0, N, Np, vr + k * Np, vi + k * Np);
          buf.rows = q;
        }
        split_row(p.z, row_offset(g.batch, g.z, r0), l0, nl, round_up(nl, W), zr, zi);
        with_group_size(m, [&](auto group) {
          constexpr int G = decltype(group)::value;
          T* o[G];
          for (int k = 0; k < G; ++k) o[k] = out + 2 * (row_offset(g.batch, g.row, r0 + k) * L + l0);
          for (int64_t j = 0; j < nl; j += W) {
            V acc_r[G], acc_i[G];
            cauchy_lanes<T, kConj, G>(S::load(zr + j), S::load(zi + j), wr, wi, vr, vi, Np, N, acc_r, acc_i);
            const int lanes = static_cast<int>(imin(W, nl - j));
            for (int k = 0; k < G; ++k)
              for (int i = 0; i < lanes; ++i) {
                o[k][2 * (j + i)] = acc_r[k][i];
                o[k][2 * (j + i) + 1] = acc_i[k][i];
              }
          }
        });
      });
}

// Backward. With g the output gradient and PyTorch's conjugate-Wirtinger convention:
//   dv_n = conj(S1_n),  dw_n = conj(v_n * S2_n),  dz_l = -g_l * conj(T_l), where
//   S1_n = sum_l conj(g_l) / (z_l - w_n)   [+ g_l / (conj(z_l) - w_n)]
//   S2_n = sum_l conj(g_l) / (z_l - w_n)^2 [+ g_l / (conj(z_l) - w_n)^2]
//   T_l  = sum_n v_n / (z_l - w_n)^2       [+ conj(v_n) / (z_l - conj(w_n))^2]
// All three share 1/(z_l - w_n) and 1/(z_l - conj(w_n)), so one pass over (l, n)
// computes them together, once for the rows of a group (rows that share z and w, see
// RowGroups): each row adds its S and T sums. A task is up to kBwdGroup rows of a group
// and one chunk of l; the chunks' partial S sums are added in chunk order afterwards.
template <typename T, bool kConj, bool kNeedS, bool kNeedT>
void cauchy_backward_impl(const CauchyBackwardParams& p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int64_t kVecBlock = 16;  // l-vectors per accumulation block
  const int64_t rows = p.batch.rows(), N = p.N, L = p.L;
  if (rows == 0) return;
  if (L == 0 || N == 0) {
    // Empty sums: zero gradients.
    if (p.dv) std::memset(p.dv, 0, sizeof(T) * 2 * rows * N);
    if (p.dw) std::memset(p.dw, 0, sizeof(T) * 2 * rows * N);
    if (p.dz) std::memset(p.dz, 0, sizeof(T) * 2 * rows * L);
    return;
  }
  const RowGroups g = group_rows(p.batch, p.v, p.w, p.z, p.grad);
  const int64_t parts = ceil_div(g.size, kBwdGroup), part = ceil_div(g.size, parts);
  const int64_t chunks = ceil_div(L, kBwdLChunk);
  const int64_t Np = round_up(N, W), Lp = round_up(kBwdLChunk, W);
  // Partial sums per (row, chunk, n): S1 re, im, S2 re, im.
  Scratch<T> partial(rows * chunks * N * 4);
  if (!partial.ok()) throw std::bad_alloc();

  // Per row: v (2 Np), g (2 Lp), T of the current n-block and over all n (2 kVecBlock W
  // each), S over the chunk (4 N W); shared: w (2 Np), z (2 Lp).
  const int64_t per_row = 2 * Np + 2 * Lp + 4 * kVecBlock * W + 4 * N * W;
  const int64_t per_thread = 2 * Np + 2 * Lp + kBwdGroup * per_row;
  parallel_tasks(
      rows / g.size * parts * chunks, rows * L * N, [&] { return Scratch<T>(per_thread); },
      [&](Scratch<T>& buf, int64_t t) {
        const int64_t q = t / chunks, c = t % chunks, l0 = c * kBwdLChunk;
        const int64_t r0 = q / parts * g.size + q % parts * part;  // first (permuted) row
        const int64_t m = imin(part, g.size - q % parts * part);   // rows in this part
        const int64_t nl = imin(kBwdLChunk, L - l0), nlp = round_up(nl, W);
        const int64_t nvec = nlp / W;
        const int tail = static_cast<int>(nl - (nvec - 1) * W);  // lanes used in the last vector
        T *wr = buf.p, *wi = wr + Np, *zr = wi + Np, *zi = zr + Lp;
        split_row(p.w, row_offset(g.batch, g.w, r0), 0, N, Np, wr, wi);
        split_row(p.z, row_offset(g.batch, g.z, r0), l0, nl, nlp, zr, zi);
        with_group_size(m, [&](auto group) {
          constexpr int G = decltype(group)::value;
          int64_t orow[G];  // the rows' indices in the output
          T *vr[G], *vi[G], *gr[G], *gi[G], *tblk[G], *ttot[G], *sacc[G];
          for (int k = 0; k < G; ++k) {
            vr[k] = zi + Lp + k * per_row, vi[k] = vr[k] + Np;
            gr[k] = vi[k] + Np, gi[k] = gr[k] + Lp;
            tblk[k] = gi[k] + Lp;                     // T of the current n-block: (kVecBlock, 2, W)
            ttot[k] = tblk[k] + 2 * kVecBlock * W;    // T over all n: (kVecBlock, 2, W)
            sacc[k] = ttot[k] + 2 * kVecBlock * W;    // S over the chunk: (N, 4, W)
            orow[k] = row_offset(g.batch, g.row, r0 + k);
            split_row(p.v, row_offset(g.batch, g.v, r0 + k), 0, N, Np, vr[k], vi[k]);
            split_row(p.grad, row_offset(g.batch, g.grad, r0 + k), l0, nl, nlp, gr[k], gi[k]);
            if constexpr (kNeedS) std::memset(sacc[k], 0, sizeof(T) * 4 * N * W);
          }
          const V one = S::splat(1);

          for (int64_t j0 = 0; j0 < nvec; j0 += kVecBlock) {
            const int64_t j1 = imin(nvec, j0 + kVecBlock);
            if constexpr (kNeedT)
              for (int k = 0; k < G; ++k) std::memset(ttot[k], 0, sizeof(T) * 2 * kVecBlock * W);
            for (int64_t n0 = 0; n0 < N; n0 += kSumBlock) {
              const int64_t n1 = imin(N, n0 + kSumBlock);
              if constexpr (kNeedT)
                for (int k = 0; k < G; ++k) std::memset(tblk[k], 0, sizeof(T) * 2 * kVecBlock * W);
              for (int64_t n = n0; n < n1; ++n) {
                V s1r[G], s1i[G], s2r[G], s2i[G];
                for (int k = 0; k < G; ++k) s1r[k] = s1i[k] = s2r[k] = s2i[k] = S::zero();
                // Broadcast once: the stores into tblk below could alias these arrays, so
                // the compiler would otherwise reload them every iteration.
                const V wrn = S::splat(wr[n]), win = S::splat(wi[n]);
                V vrn[G], vin[G];
                for (int k = 0; k < G; ++k) vrn[k] = S::splat(vr[k][n]), vin[k] = S::splat(vi[k][n]);
                for (int64_t j = j0; j < j1; ++j) {
                  const V zrv = S::load(zr + j * W), ziv = S::load(zi + j * W);
                  const V dr = zrv - wrn;
                  const V di1 = ziv - win;
                  const V dr2 = dr * dr;
                  // 1/(z - w) = (a1, -e1) and 1/(z - conj(w)) = (a2, -e2): a = dr r, e = di r
                  V r1 = one / (di1 * di1 + dr2), r2 = S::zero(), di2 = S::zero();
                  if constexpr (kConj) {
                    di2 = ziv + win;
                    r2 = one / (di2 * di2 + dr2);
                  }
                  if (j == nvec - 1 && tail < W)  // lanes past L contribute nothing
                    r1 = S::keep_first(r1, tail), r2 = S::keep_first(r2, tail);
                  // 1/d^2 = (x, -p): x = (a - e)(a + e), p = 2 a e
                  const V a1 = dr * r1, e1 = di1 * r1;
                  const V x1 = (a1 - e1) * (a1 + e1), p1 = (a1 + a1) * e1;
                  // Every sum is sum(u_r K - u_i K') for u = g or v and coefficients K that
                  // the rows share (the conjugate pair's two terms already combined).
                  V k1 = a1, k2 = e1, k3 = -e1, k4 = a1, k5 = x1, k6 = p1, k7 = -p1, k8 = x1;
                  if constexpr (kConj) {
                    const V a2 = dr * r2, e2 = di2 * r2;
                    const V x2 = (a2 - e2) * (a2 + e2), p2 = (a2 + a2) * e2;
                    k1 = a1 + a2, k2 = e1 + e2, k3 = e2 - e1, k4 = a1 - a2;
                    k5 = x1 + x2, k6 = p1 + p2, k7 = p2 - p1, k8 = x1 - x2;
                  }
                  for (int k = 0; k < G; ++k) {
                    if constexpr (kNeedS) {  // one FMA per product: one rounding each
                      const V grv = S::load(gr[k] + j * W), giv = S::load(gi[k] + j * W);
                      s1r[k] += grv * k1;
                      s1r[k] -= giv * k2;
                      s1i[k] += grv * k3;
                      s1i[k] -= giv * k4;
                      s2r[k] += grv * k5;
                      s2r[k] -= giv * k6;
                      s2i[k] += grv * k7;
                      s2i[k] -= giv * k8;
                    }
                    if constexpr (kNeedT) {
                      T* tb = tblk[k] + (j - j0) * 2 * W;
                      V tr = S::load(tb), ti = S::load(tb + W);
                      tr += vrn[k] * k5;
                      tr -= vin[k] * k7;
                      ti += vin[k] * k8;
                      ti -= vrn[k] * k6;
                      S::store(tb, tr);
                      S::store(tb + W, ti);
                    }
                  }
                }
                if constexpr (kNeedS) {
                  for (int k = 0; k < G; ++k) {
                    T* sa = sacc[k] + n * 4 * W;
                    S::store(sa, S::load(sa) + s1r[k]);
                    S::store(sa + W, S::load(sa + W) + s1i[k]);
                    S::store(sa + 2 * W, S::load(sa + 2 * W) + s2r[k]);
                    S::store(sa + 3 * W, S::load(sa + 3 * W) + s2i[k]);
                  }
                }
              }
              if constexpr (kNeedT) {
                for (int k = 0; k < G; ++k)
                  for (int64_t i = 0; i < 2 * (j1 - j0); ++i)
                    S::store(ttot[k] + i * W, S::load(ttot[k] + i * W) + S::load(tblk[k] + i * W));
              }
            }
            if constexpr (kNeedT) {  // dz_l = -g_l * conj(T_l)
              for (int k = 0; k < G; ++k) {
                T* dz = static_cast<T*>(p.dz) + 2 * (orow[k] * L + l0);
                for (int64_t j = j0; j < j1; ++j) {
                  const T* tt = ttot[k] + (j - j0) * 2 * W;
                  for (int i = 0; i < W && j * W + i < nl; ++i) {
                    const int64_t l = j * W + i;
                    const T tr = tt[i], ti = tt[W + i];
                    dz[2 * l] = -(gr[k][l] * tr + gi[k][l] * ti);
                    dz[2 * l + 1] = -(gi[k][l] * tr - gr[k][l] * ti);
                  }
                }
              }
            }
          }
          if constexpr (kNeedS) {
            for (int k = 0; k < G; ++k) {
              T* out = partial.p + (orow[k] * chunks + c) * N * 4;
              for (int64_t n = 0; n < N; ++n)
                for (int i = 0; i < 4; ++i) out[4 * n + i] = S::hsum(S::load(sacc[k] + (4 * n + i) * W));
            }
          }
        });
      });

  if constexpr (kNeedS) {
    T* dv = static_cast<T*>(p.dv);
    T* dw = static_cast<T*>(p.dw);
#pragma omp parallel for schedule(static) if (rows * N > 4096)
    for (int64_t r = 0; r < rows; ++r) {
      const T* v = static_cast<const T*>(p.v.data) + 2 * row_offset(p.batch, p.v, r);
      for (int64_t n = 0; n < N; ++n) {
        T s[4] = {0, 0, 0, 0};
        for (int64_t c = 0; c < chunks; ++c)
          for (int k = 0; k < 4; ++k) s[k] += partial.p[((r * chunks + c) * N + n) * 4 + k];
        if (dv) {  // conj(S1)
          dv[2 * (r * N + n)] = s[0];
          dv[2 * (r * N + n) + 1] = -s[1];
        }
        if (dw) {  // conj(v * S2)
          const T vr_ = v[2 * n * p.v.stride], vi_ = v[2 * n * p.v.stride + 1];
          dw[2 * (r * N + n)] = vr_ * s[2] - vi_ * s[3];
          dw[2 * (r * N + n) + 1] = -(vr_ * s[3] + vi_ * s[2]);
        }
      }
    }
  }
}

// Only the sums an output needs: S1, S2 for dv, dw; T for dz.
template <typename T, bool kConj>
void cauchy_backward_sums(const CauchyBackwardParams& p) {
  const bool need_s = p.dv || p.dw, need_t = p.dz != nullptr;
  if (need_s && need_t)
    cauchy_backward_impl<T, kConj, true, true>(p);
  else if (need_s)
    cauchy_backward_impl<T, kConj, true, false>(p);
  else if (need_t)
    cauchy_backward_impl<T, kConj, false, true>(p);
}

// ---- dplr_untruncated_C: two Cauchy products per channel, joined at each frequency ----
// The algorithm of python/ssmkit/nn/ssm_kernel.py's dplr_untruncated_C (which derives it
// and composes it from ops.cauchy and torch): pass 1 sums over the state for each
// frequency k (points zhat_k = 2i tan(pi k/L), nodes dt Lambda_n), the Woodbury weights
// join its rows at each k, and pass 2 sums those weights over the frequencies for each
// state index (points dt Lambda_n, nodes zhat_k). Both passes are cauchy_lanes, so they
// keep the Cauchy product's accuracy; one task per channel keeps every intermediate in
// that task's scratch (no array of size H x L is formed). The per-channel math shared
// with the GPU is in ssmkit/untruncated_math.h.

// Runs cauchy_lanes over `rows` rows (row k's v at vr + k * vs), kMaxGroup at a time,
// storing W lanes of row k's sum at (out_r, out_i) + k * W.
template <typename T>
inline void cauchy_rows(typename Simd<T>::V zr, typename Simd<T>::V zi, const T* wr, const T* wi,
                        const T* vr, const T* vi, int64_t vs, int64_t n, int64_t rows, T* out_r, T* out_i) {
  using S = Simd<T>;
  for (int64_t k0 = 0; k0 < rows; k0 += kMaxGroup)
    with_group_size(imin(kMaxGroup, rows - k0), [&](auto group) {
      constexpr int G = decltype(group)::value;
      typename S::V acc_r[G], acc_i[G];
      cauchy_lanes<T, true, G>(zr, zi, wr, wi, vr + k0 * vs, vi + k0 * vs, vs, n, acc_r, acc_i);
      for (int k = 0; k < G; ++k) S::store(out_r + (k0 + k) * S::W, acc_r[k]), S::store(out_i + (k0 + k) * S::W, acc_i[k]);
    });
}

template <typename T>
void dplr_untruncated_C_impl(const DplrUntruncatedCParams& p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t H = p.H, N = p.N, r = p.r, L = p.L;
  if (H == 0 || N == 0) return;
  const int64_t F = (L + 1) / 2;        // the frequencies k < L/2 (conjugates pair up; no z = -1)
  const int64_t rows1 = (1 + r) * r;    // pass 1: (C~ and P^*) times P
  const int64_t rows2 = 1 + r;          // pass 2: the weights and the Woodbury rows
  const int64_t Np = round_up(N, W), Fp = round_up(F, W);
  // shared by the channels: zhat_k / i (in double, then rounded once) and the weights
  // (1 + zhat_k/2) / L of the paired sum over the L-th roots of unity; padded with the
  // last frequency (a real point, so padding lanes never trip the fused fraction's range check)
  Scratch<T> shared(4 * Fp);
  if (!shared.ok()) throw std::bad_alloc();
  T *zh = shared.p, *zeros = zh + Fp, *weight_r = zeros + Fp, *weight_i = weight_r + Fp;
  for (int64_t k = 0; k < Fp; ++k) {
    zh[k] = untruncated_point<T>(imin(k, F - 1), L);
    const Cx<T> weight = untruncated_weight(zh[k], imin(k, F - 1), L);
    zeros[k] = 0, weight_r[k] = weight.re, weight_i[k] = weight.im;
  }
  const double work = static_cast<double>(H) * static_cast<double>(F) * static_cast<double>(N) * (rows1 + rows2);
  parallel_tasks(
      H, work < 1e18 ? static_cast<int64_t>(work) : int64_t(1e18),
      [&] { return Scratch<T>(2 * (Np + rows1 * Np + rows2 * Fp + rows1 * W + rows2 * Np + r * r + r)); },
      [&](Scratch<T>& buf, int64_t h) {
        T *wr = buf.p, *wi = wr + Np, *vr = wi + Np, *vi = vr + rows1 * Np, *tr = vi + rows1 * Np;
        T *ti = tr + rows2 * Fp, *kr = ti + rows2 * Fp, *ki = kr + rows1 * W, *Tr = ki + rows1 * W;
        T* Ti = Tr + rows2 * Np;
        Cx<T>* m = reinterpret_cast<Cx<T>*>(Ti + rows2 * Np);  // r x r, then r more
        const T dt = static_cast<const T*>(p.dt)[h];
        auto Lambda = [&](int64_t n) { return cx_load<T>(p.Lambda, h * N + n); };
        auto P = [&](int64_t b, int64_t n) { return cx_load<T>(p.P, (h * r + b) * N + n); };
        auto C = [&](int64_t n) { return cx_load<T>(p.C, h * N + n); };
        for (int64_t n = 0; n < Np; ++n) {  // the nodes dt Lambda_n, padded with the last one
          const Cx<T> w = dt * Lambda(imin(n, N - 1));
          wr[n] = w.re, wi[n] = w.im;
        }
        for (int64_t a = 0; a <= r; ++a)
          for (int64_t b = 0; b < r; ++b)
            for (int64_t n = 0; n < N; ++n) {
              const Cx<T> v = dt * ((a == 0 ? C(n) : conj(P(a - 1, n))) * P(b, n));
              vr[(a * r + b) * Np + n] = v.re, vi[(a * r + b) * Np + n] = v.im;
            }
        std::memcpy(tr, weight_r, sizeof(T) * Fp);  // pass 2's row 0: the weights themselves
        std::memcpy(ti, weight_i, sizeof(T) * Fp);
        // pass 1 (k01 = dt C~ R P, k11 = dt P^* R P) and pass 2's other rows, the Woodbury
        // rows ay = weight k01 (I + k11)^{-1}, W frequencies at a time
        for (int64_t j = 0; j < F; j += W) {
          cauchy_rows<T>(S::zero(), S::load(zh + j), wr, wi, vr, vi, Np, N, rows1, kr, ki);
          if (r == 1) {  // ay = y / d, y = weight k01, d = 1 + k11
            const V wgr = S::load(weight_r + j), wgi = S::load(weight_i + j);
            const V k01r = S::load(kr), k01i = S::load(ki), dr = S::splat(1) + S::load(kr + W), di = S::load(ki + W);
            const V yr = wgr * k01r - wgi * k01i, yi = wgr * k01i + wgi * k01r;
            const V q = S::splat(1) / (dr * dr + di * di);
            S::store(tr + Fp + j, (yr * dr + yi * di) * q);
            S::store(ti + Fp + j, (yi * dr - yr * di) * q);
            continue;
          }
          for (int i = 0; i < W; ++i) {  // rank r > 1: solve (I + k11)^T ay = weight k01 per frequency
            const Cx<T> weight{weight_r[j + i], weight_i[j + i]};
            Cx<T>* y = m + r * r;
            for (int64_t b = 0; b < r; ++b) {
              y[b] = weight * Cx<T>{kr[b * W + i], ki[b * W + i]};
              for (int64_t a = 0; a < r; ++a) {
                const int64_t at = ((1 + a) * r + b) * W + i;
                m[b * r + a] = Cx<T>{T(a == b) + kr[at], ki[at]};
              }
            }
            solve_small(m, r, 1, y, 1, r);
            for (int64_t b = 0; b < r; ++b) tr[(1 + b) * Fp + j + i] = y[b].re, ti[(1 + b) * Fp + j + i] = y[b].im;
          }
        }
        // pass 2: T_j[n] = -sum_k (terms_j[k] / (w_n - zhat_k) + conj(terms_j[k]) / (w_n - conj(zhat_k)))
        for (int64_t i = 0; i < N; i += W)
          cauchy_rows<T>(S::load(wr + i), S::load(wi + i), zeros, zh, tr, ti, Fp, F, rows2, Tr + i * rows2, Ti + i * rows2);
        auto Tj = [&](int64_t j, int64_t n) {  // pass 2's rows were stored W lanes at a time
          const int64_t at = (n / W * W) * rows2 + j * W + n % W;
          return Cx<T>{-Tr[at], -Ti[at]};
        };
        untruncated_finish<T>(N, r, L, dt, Tj, P, C, [&](int64_t n) { return Cx<T>{wr[n], wi[n]}; },
                              static_cast<Cx<T>*>(p.out) + h * N, reinterpret_cast<T*>(m));
      });
}
}  // namespace

// The entry points: the kernel for p's dtype and flags.
void cauchy(const CauchyParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.conj_pairs, kConj, cauchy_forward_impl<T, kConj>(p)));
}
void cauchy_backward(const CauchyBackwardParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.conj_pairs, kConj, cauchy_backward_sums<T, kConj>(p)));
}
void dplr_untruncated_C(const DplrUntruncatedCParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, dplr_untruncated_C_impl<T>(p));
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
