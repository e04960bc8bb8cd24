// Discretization, one recurrent step, and the scan (forward and backward) of a
// diagonal SSM (definitions in ssmkit.h and python/ssmkit/ops/reference.py).
// Included inside the per-ISA namespace.
//
// Layouts:
// - discretize: elementwise over (H, N), scalar complex arithmetic (exp/sin/cos do
//   not vectorise here; the op is O(H N) and runs once per forward).
// - ssm_step: the state is (batch, H, N) with n contiguous, so SIMD runs over n
//   (interleaved complex; `omp simd` because the state may be updated in place).
// - ssm_scan: SIMD lanes are W consecutive channels h of one batch element, so the
//   sum over n is a lane-wise accumulation (no horizontal sums), and u[b, l, h0:h0+W],
//   y[b, l, h0:h0+W] are contiguous. The state lives in per-thread scratch as
//   (n, re/im, lane); (batch, H, N) is read once at the start and written once at the end.
//
// In the per-ISA namespace ssmkit::SSMKIT_ISA: the entry points are in step.cpp, and the
// step engine (engine.h) calls ssm_step_impl and dplr_step_impl (dplr.h) directly.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common.h"
#include "simd.h"
#include "ssmkit/discretize_math.h"  // Cx, phi1 and the per-element math, shared with CUDA
#include "ssmkit/ssmkit.h"

namespace ssmkit {
namespace SSMKIT_ISA {

template <typename T>
void discretize_impl(const DiscretizeParams& p) {
  const T* dt = static_cast<const T*>(p.dt);
  parallel_for(p.H, p.H * p.N * 16, [&](int64_t h) {  // 16: exp, sin, cos per element
    for (int64_t n = 0; n < p.N; ++n) discretize_at(p, dt[h], h * p.N + n);
  });
}

template <typename T>
void discretize_backward_impl(const DiscretizeBackwardParams& p) {
  const T* dt = static_cast<const T*>(p.dt);
  parallel_for(p.H, p.H * p.N * 32, [&](int64_t h) {
    T gdt = 0;
    for (int64_t n = 0; n < p.N; ++n) gdt += discretize_backward_at(p, dt[h], h * p.N + n);
    if (p.gdt) static_cast<T*>(p.gdt)[h] = gdt;
  });
}

// Interleaved complex vectors (re, im, re, im, ...): the in-lane shuffles that a
// complex product needs, written per lane (compilers turn them into one permute).
template <typename V>
inline V real_parts_twice(V v) {  // (re, re) of each pair
  V r;
  for (int i = 0; i < int(sizeof(V) / sizeof(v[0])); ++i) r[i] = v[i & ~1];
  return r;
}
template <typename V>
inline V imag_parts_twice(V v) {  // (im, im) of each pair
  V r;
  for (int i = 0; i < int(sizeof(V) / sizeof(v[0])); ++i) r[i] = v[i | 1];
  return r;
}
template <typename V>
inline V swap_pairs(V v) {  // (im, re) of each pair
  V r;
  for (int i = 0; i < int(sizeof(V) / sizeof(v[0])); ++i) r[i] = v[i ^ 1];
  return r;
}
template <typename T>
inline typename Simd<T>::V alternate(T even, T odd) {
  typename Simd<T>::V v;
  for (int i = 0; i < Simd<T>::W; ++i) v[i] = (i & 1) ? odd : even;
  return v;
}

// Rows stepped together by ssm_step and dplr_step: up to kRows batch elements of one
// channel h of the (batch, H, 2N) state. The channel's parameters are loaded (and
// shuffled) once for all of them, and their dependency chains interleave. Each row's
// arithmetic is the same whatever the block's size, so results do not depend on the
// batch size, the blocking or the thread count. (Blocking the rows of a lone batch
// element across channels instead was measured: no faster, as each row then needs
// its own parameters.)
template <typename T, int kRows>
struct RowBlock {
  int rows = 0;
  int64_t h = 0;
  const T* x[kRows];
  T* xo[kRows];  // may be x
  T u[kRows];
  T* y[kRows];
};

// Calls body(block) over all rows, on the OpenMP team when `work` is worth it. A task
// is a run of kChannels channels of one block of batch elements: each row's state is
// streamed in order while the channels' parameters stay in cache.
template <typename T, int kRows, int64_t kChannels, typename Body>
inline void for_row_blocks(int64_t batch, int64_t H, int64_t n2, int64_t work, const void* state,
                           void* new_state, const void* u, void* y, Body body) {
  const int64_t chunks = ceil_div(H, kChannels);
  parallel_for(ceil_div(batch, kRows) * chunks, work, [&](int64_t task) {
    const int64_t b0 = task / chunks * kRows, h0 = task % chunks * kChannels;
    RowBlock<T, kRows> blk;
    blk.rows = static_cast<int>(imin(kRows, batch - b0));
    for (int64_t h = h0; h < imin(H, h0 + kChannels); ++h) {
      blk.h = h;
      for (int k = 0; k < blk.rows; ++k) {
        const int64_t row = (b0 + k) * H + h;
        blk.x[k] = static_cast<const T*>(state) + row * n2;
        blk.xo[k] = static_cast<T*>(new_state) + row * n2;
        blk.u[k] = static_cast<const T*>(u)[row];
        blk.y[k] = static_cast<T*>(y) + row;
      }
      body(blk);
    }
  });
}

// Calls kernel(Const<K>()) with K = rows (1..kRows), so the row loops unroll.
template <auto v>
struct Const {
  static constexpr auto value = v;
};
template <int kRows, typename Kernel>
inline void by_rows(int rows, Kernel&& kernel) {
  if constexpr (kRows > 1) {
    if (rows < kRows) return by_rows<kRows - 1>(rows, kernel);
  }
  kernel(Const<kRows>());
}

// One step. Bound by the arithmetic on the state and its traffic (dA, dB, dC stay in cache).
constexpr int kStepRows = 4;
constexpr int64_t kStepChannels = 32;

// The one-real "vector" of the scalar tails, for code written for Simd<T> (see step_rows).
template <typename T>
struct Scalar {
  using V = T;
  static T load(const T* p) { return *p; }
  static T splat(T x) { return x; }
};

// x' = a x + (b u + correction), y = 2 Re(c x') + D u for the K rows of blk (a, b, c:
// the channel's 2N reals; D: the channel's D or null). correction(Lane, i) is called
// once per vector (Lane = Simd<T>) or real (Lane = Scalar<T>) at offset i and returns
// a function of (row k, b u term) giving that row's drive: the identity for the
// diagonal step, b u - Pd^T sigma for the DPLR step (dplr.h). Within one vector step all
// rows are loaded before any is stored: batch rows often lie a multiple of 4 KiB apart,
// where a load after a store at the same offset would stall as if dependent (4K
// aliasing). Each vector of x is read before the same vector of x' is written: safe in
// place.
template <typename T, int K, int kRows, typename Correction>
inline void step_rows(const T* a, const T* b, const T* c, const T* D, int64_t n2, const RowBlock<T, kRows>& blk,
                      Correction&& correction) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t whole = n2 / W * W;  // reals in whole vectors; the rest is scalar
  const V minus_plus = alternate(T(-1), T(1)), plus_minus = alternate(T(1), T(-1));
  // Local copies: the stores below (memcpy) could otherwise alias them, forcing reloads.
  const T* x[K];
  T* xo[K];
  T u[K];
  for (int k = 0; k < K; ++k) x[k] = blk.x[k], xo[k] = blk.xo[k], u[k] = blk.u[k];
  V acc[K];
  for (int k = 0; k < K; ++k) acc[k] = S::zero();
  for (int64_t i = 0; i < whole; i += W) {
    // x' = a x + d: (ar xr - ai xi, ar xi + ai xr) = ar (xr, xi) + ai (-xi, xr)
    const V av = S::load(a + i), bv = S::load(b + i);
    const V ar = real_parts_twice(av), ai = imag_parts_twice(av) * minus_plus;
    const V cv = S::load(c + i) * plus_minus;  // Re(c x') = cr xr' - ci xi'
    const auto drive = correction(S(), i);
    V xv[K];
    for (int k = 0; k < K; ++k) xv[k] = S::load(x[k] + i);
    for (int k = 0; k < K; ++k) {
      // the drive first: it does not wait for x, so x's chain is two FMAs
      const V nx = (drive(k, bv * S::splat(u[k])) + ai * swap_pairs(xv[k])) + ar * xv[k];
      S::store(xo[k] + i, nx);
      acc[k] += cv * nx;
    }
  }
  for (int k = 0; k < K; ++k) {
    const T* xk = x[k];
    T* ok = xo[k];
    T sum = S::hsum(acc[k]);
    for (int64_t i = whole; i < n2; i += 2) {
      const T xr = xk[i], xi = xk[i + 1];
      const T nr = (correction(Scalar<T>(), i)(k, b[i] * u[k]) - a[i + 1] * xi) + a[i] * xr;
      const T ni = (correction(Scalar<T>(), i + 1)(k, b[i + 1] * u[k]) + a[i + 1] * xr) + a[i] * xi;
      ok[i] = nr, ok[i + 1] = ni;
      sum += c[i] * nr - c[i + 1] * ni;
    }
    *blk.y[k] = D ? 2 * sum + *D * u[k] : 2 * sum;  // no D: no D u term (0 * NaN is NaN)
  }
}

template <typename T>
void ssm_step_impl(const StepParams& p) {
  for_row_blocks<T, kStepRows, kStepChannels>(
      p.batch, p.H, 2 * p.N, p.batch * p.H * p.N, p.state, p.new_state, p.u, p.y,
      [&](const RowBlock<T, kStepRows>& blk) {
        const int64_t n2 = 2 * p.N, off = blk.h * n2;
        const T* D = static_cast<const T*>(p.D);
        by_rows<kStepRows>(blk.rows, [&](auto K) {
          step_rows<T, K.value>(static_cast<const T*>(p.dA) + off, static_cast<const T*>(p.dB) + off,
                                static_cast<const T*>(p.dC) + off, D ? D + blk.h : nullptr, n2, blk,
                                [](auto, int64_t) { return [](int, auto bu) { return bu; }; });
        });
      });
}

// ---- scan: lanes = W consecutive channels ----

constexpr int64_t kScanChunk = 128;  // steps whose u and y are staged in L1 at a time
constexpr int64_t kScanNBlock = 4;   // state pairs kept in registers across a chunk
constexpr int64_t kCkptEvery = 64;   // backward: a state checkpoint every this many steps

// Per-lane copies of the channel parameters of lanes [h0, h0 + W): planar (n, lane),
// zero for lanes past H and for n past N (those states stay 0 and add nothing).
template <typename T>
struct LaneParams {
  T *ar, *ai, *br, *bi, *cr, *ci, *d;
};

template <typename T>
inline void load_lane_params(const void* dA, const void* dB, const void* dC, const void* D,
                             int64_t H, int64_t N, int64_t Np, int64_t h0, LaneParams<T> q) {
  constexpr int W = Simd<T>::W;
  for (int64_t n = 0; n < Np; ++n)
    for (int k = 0; k < W; ++k) {
      const int64_t h = h0 + k, i = n * W + k;
      const bool in = h < H && n < N;
      const Cx<T> a = in ? cx_load<T>(dA, h * N + n) : Cx<T>{0, 0};
      const Cx<T> b = in ? cx_load<T>(dB, h * N + n) : Cx<T>{0, 0};
      const Cx<T> c = in ? cx_load<T>(dC, h * N + n) : Cx<T>{0, 0};
      q.ar[i] = a.re, q.ai[i] = a.im, q.br[i] = b.re, q.bi[i] = b.im;
      q.cr[i] = c.re, q.ci[i] = c.im;
    }
  for (int k = 0; k < W; ++k)
    q.d[k] = (D && h0 + k < H) ? static_cast<const T*>(D)[h0 + k] : T(0);
}

// state (batch, H, N) of batch element bi, lanes [h0, h0 + W) -> planar xr, xi (n, lane)
template <typename T>
inline void load_lane_state(const void* state, int64_t bi, int64_t H, int64_t N, int64_t Np,
                            int64_t h0, T* xr, T* xi) {
  constexpr int W = Simd<T>::W;
  for (int64_t n = 0; n < Np; ++n)
    for (int k = 0; k < W; ++k) {
      const int64_t h = h0 + k;
      const Cx<T> v = (state && h < H && n < N) ? cx_load<T>(state, (bi * H + h) * N + n)
                                                : Cx<T>{0, 0};
      xr[n * W + k] = v.re, xi[n * W + k] = v.im;
    }
}

template <typename T>
inline void store_lane_state(void* state, int64_t bi, int64_t H, int64_t N, int64_t h0,
                             const T* xr, const T* xi) {
  constexpr int W = Simd<T>::W;
  for (int k = 0; k < W && h0 + k < H; ++k)
    for (int64_t n = 0; n < N; ++n)
      cx_store(state, (bi * H + h0 + k) * N + n, Cx<T>{xr[n * W + k], xi[n * W + k]});
}

// Real (batch, L, H) array rows [l0, l0 + nl), lanes [h0, h0 + W) <-> buf (l, lane).
template <typename T>
inline void gather_lanes(const T* src, int64_t bi, int64_t L, int64_t H, int64_t l0,
                         int64_t nl, int64_t h0, T* buf) {
  constexpr int W = Simd<T>::W;
  const int64_t nk = imin(W, H - h0);
  for (int64_t j = 0; j < nl; ++j) {
    const T* row = src + (bi * L + l0 + j) * H + h0;
    for (int k = 0; k < W; ++k) buf[j * W + k] = k < nk ? row[k] : T(0);
  }
}
template <typename T>
inline void scatter_lanes(T* dst, int64_t bi, int64_t L, int64_t H, int64_t l0, int64_t nl,
                          int64_t h0, const T* buf) {
  constexpr int W = Simd<T>::W;
  const int64_t nk = imin(W, H - h0);
  for (int64_t j = 0; j < nl; ++j) {
    T* row = dst + (bi * L + l0 + j) * H + h0;
    for (int64_t k = 0; k < nk; ++k) row[k] = buf[j * W + k];
  }
}

template <typename T>
void ssm_scan_impl(const ScanParams& p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int64_t NB = kScanNBlock;
  const int64_t H = p.H, L = p.L, N = p.N, Np = round_up(N > 0 ? N : 1, NB);
  const int64_t groups = ceil_div(H, W);
  if (p.batch == 0 || H == 0) return;
  parallel_tasks(
      p.batch * groups, p.batch * L * H * N,
      [&] { return Scratch<T>(8 * Np * W + W + 2 * kScanChunk * W); },
      [&](Scratch<T>& buf, int64_t t) {
        const int64_t bi = t / groups, h0 = (t % groups) * W;
        LaneParams<T> q;
        q.ar = buf.p, q.ai = q.ar + Np * W, q.br = q.ai + Np * W, q.bi = q.br + Np * W;
        q.cr = q.bi + Np * W, q.ci = q.cr + Np * W, q.d = q.ci + Np * W;
        T* xr = q.d + W;
        T* xi = xr + Np * W;
        T* ub = xi + Np * W;       // ub, yb: (kScanChunk, lane)
        T* yb = ub + kScanChunk * W;
        load_lane_params<T>(p.dA, p.dB, p.dC, p.D, H, N, Np, h0, q);
        for (int64_t i = 0; i < Np * W; ++i) q.cr[i] *= 2, q.ci[i] *= 2;  // y = 2 Re(...)
        load_lane_state<T>(p.state0, bi, H, N, Np, h0, xr, xi);
        const V dv = S::load(q.d);
        for (int64_t l0 = 0; l0 < L; l0 += kScanChunk) {
          const int64_t nl = imin(kScanChunk, L - l0);
          gather_lanes(static_cast<const T*>(p.u), bi, L, H, l0, nl, h0, ub);
          // no D: no D u term at all (0 * NaN or 0 * Inf in u would make y NaN)
          for (int64_t j = 0; j < nl; ++j)
            S::store(yb + j * W, p.D ? dv * S::load(ub + j * W) : S::zero());
          for (int64_t n0 = 0; n0 < Np; n0 += NB) {
            // NB state pairs and their parameters stay in registers over the chunk.
            V sr[NB], si[NB], ar[NB], ai[NB], br[NB], bim[NB], cr[NB], ci[NB];
            for (int64_t k = 0; k < NB; ++k) {
              const int64_t o = (n0 + k) * W;
              sr[k] = S::load(xr + o), si[k] = S::load(xi + o);
              ar[k] = S::load(q.ar + o), ai[k] = S::load(q.ai + o);
              br[k] = S::load(q.br + o), bim[k] = S::load(q.bi + o);
              cr[k] = S::load(q.cr + o), ci[k] = S::load(q.ci + o);
            }
            for (int64_t j = 0; j < nl; ++j) {
              const V uu = S::load(ub + j * W);
              V acc_r = S::load(yb + j * W), acc_i = S::zero();
              for (int64_t k = 0; k < NB; ++k) {
                // dB u is a plain product, off the state's dependency chain, fused into
                // the ai term: the chain is two FMAs per step (written the other way,
                // the compiler fuses dB u instead and the chain is mul + 2 FMAs).
                const V nr = ar[k] * sr[k] - (ai[k] * si[k] - br[k] * uu);
                const V ni = ar[k] * si[k] + (ai[k] * sr[k] + bim[k] * uu);
                sr[k] = nr, si[k] = ni;
                acc_r += cr[k] * nr;  // two accumulators: two short chains
                acc_i += ci[k] * ni;
              }
              S::store(yb + j * W, acc_r - acc_i);
            }
            for (int64_t k = 0; k < NB; ++k) {
              S::store(xr + (n0 + k) * W, sr[k]);
              S::store(xi + (n0 + k) * W, si[k]);
            }
          }
          scatter_lanes(static_cast<T*>(p.y), bi, L, H, l0, nl, h0, yb);
        }
        store_lane_state<T>(p.state, bi, H, N, h0, xr, xi);
      });
}

// One step of a state vector: (x_r, x_i) = dA x + dB u. The scan's backward writes
// every step of the state this way, so its recomputed states are the forward's bits.
template <typename V>
inline void step_value(V a_r, V a_i, V b_r, V b_i, V uu, V& x_r, V& x_i) {
  const V nr = a_r * x_r - a_i * x_i + b_r * uu;
  const V ni = a_r * x_i + a_i * x_r + b_i * uu;
  x_r = nr, x_i = ni;
}

// Calls f(std::integral_constant<int, kB>, n0) over the state vectors [0, Np) in blocks
// of kB, then single vectors for the rest: a block's vectors live in registers.
template <int kB, typename F>
inline void for_state_blocks(int64_t Np, F f) {
  int64_t n0 = 0;
  for (; n0 + kB <= Np; n0 += kB) f(std::integral_constant<int, kB>{}, n0);
  for (; n0 < Np; ++n0) f(std::integral_constant<int, 1>{}, n0);
}

// Steps state vectors [n0, n0 + kB) of one lane group `steps` times from (xr, xi)
// (planar (n, lane)), with u from ub (l, lane), keeping them in registers. The state
// after step j is stored in seg + 2 M (j + 1) (re, then im at + M) when seg is given,
// the last one in (end_r, end_i) when those are.
template <typename T, int kB>
inline void advance_states(const LaneParams<T>& q, int64_t n0, int64_t M, const T* ub, int64_t steps,
                           const T* xr, const T* xi, T* seg, T* end_r, T* end_i) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  V sr[kB], si[kB], ar[kB], ai[kB], br[kB], bi[kB];
  for (int k = 0; k < kB; ++k) {
    const int64_t o = (n0 + k) * W;
    sr[k] = S::load(xr + o), si[k] = S::load(xi + o);
    ar[k] = S::load(q.ar + o), ai[k] = S::load(q.ai + o);
    br[k] = S::load(q.br + o), bi[k] = S::load(q.bi + o);
  }
  for (int64_t j = 0; j < steps; ++j) {
    const V uu = S::load(ub + j * W);
    for (int k = 0; k < kB; ++k) {
      step_value(ar[k], ai[k], br[k], bi[k], uu, sr[k], si[k]);
      if (seg) {
        T* next = seg + 2 * M * (j + 1) + (n0 + k) * W;
        S::store(next, sr[k]);
        S::store(next + M, si[k]);
      }
    }
  }
  if (end_r) {
    for (int k = 0; k < kB; ++k) {
      S::store(end_r + (n0 + k) * W, sr[k]);
      S::store(end_i + (n0 + k) * W, si[k]);
    }
  }
}

// Reverse scan. With g_l = dL/dy_l and lambda_l the gradient of state_l:
//   lambda_l = 2 g_l conj(dC) + (l == L-1 ? gstate : conj(dA) lambda_{l+1})
//   g_u[l] = sum_n Re(lambda_l conj(dB)) + D g_l,   g_dA += conj(state_{l-1}) lambda_l,
//   g_dB += u_l lambda_l,   g_dC += 2 g_l conj(state_l),   g_D += g_l u_l,
//   g_state0 = conj(dA) lambda_0.
// A forward pass stores the state every kCkptEvery steps; the reverse pass recomputes
// each segment's states from its checkpoint. Sums over l are taken per segment, then
// added up (rounding grows with L / kCkptEvery + kCkptEvery, not with L).
//
// The reverse pass over one segment for state vectors [n0, n0 + kB), given the states
// seg[0..nl] (seg[j]: before the segment's step j): lambda (lr, li) and the segment's
// sums stay in registers over the segment's steps (the parameters are reloaded from L1),
// then the sums are added to the totals `tot` (dA, dB, dC; re, im). gub[j] gets the
// vectors' terms of g_u in order of n.
template <typename T, int kB>
inline void reverse_states(const LaneParams<T>& q, int64_t n0, int64_t M, const T* seg, const T* ub,
                           const T* gyb, int64_t nl, T* lr, T* li, T* const* tot, T* gub) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  const V two = S::splat(2);
  V carry_r[kB], carry_i[kB], sum[6][kB];
  for (int k = 0; k < kB; ++k) {
    const int64_t o = (n0 + k) * W;
    carry_r[k] = S::load(lr + o), carry_i[k] = S::load(li + o);  // conj(dA) lambda_{l+1}
    for (auto& s : sum) s[k] = S::zero();
  }
  for (int64_t j = nl - 1; j >= 0; --j) {
    const V uu = S::load(ub + j * W), g = S::load(gyb + j * W), g2 = two * g;
    const T *pr = seg + 2 * M * j, *pi = pr + M, *xr = pi + M, *xi = xr + M;
    V gu = S::load(gub + j * W);
    for (int k = 0; k < kB; ++k) {
      const int64_t o = (n0 + k) * W;
      const V a_r = S::load(q.ar + o), a_i = S::load(q.ai + o);
      const V b_r = S::load(q.br + o), b_i = S::load(q.bi + o);
      const V c_r = S::load(q.cr + o), c_i = S::load(q.ci + o);
      const V p_r = S::load(pr + o), p_i = S::load(pi + o);
      const V lam_r = carry_r[k] + g2 * c_r;  // lambda_l
      const V lam_i = carry_i[k] - g2 * c_i;
      gu += lam_r * b_r + lam_i * b_i;
      sum[0][k] = sum[0][k] + p_r * lam_r + p_i * lam_i;
      sum[1][k] = sum[1][k] + p_r * lam_i - p_i * lam_r;
      sum[2][k] = sum[2][k] + uu * lam_r;
      sum[3][k] = sum[3][k] + uu * lam_i;
      const V x_r = S::load(xr + o), x_i = S::load(xi + o);  // state_l
      sum[4][k] = sum[4][k] + g2 * x_r;
      sum[5][k] = sum[5][k] - g2 * x_i;
      carry_r[k] = a_r * lam_r + a_i * lam_i;  // conj(dA) lambda_l
      carry_i[k] = a_r * lam_i - a_i * lam_r;
    }
    S::store(gub + j * W, gu);
  }
  for (int k = 0; k < kB; ++k) {
    const int64_t o = (n0 + k) * W;
    S::store(lr + o, carry_r[k]);
    S::store(li + o, carry_i[k]);
    for (int c = 0; c < 6; ++c) S::store(tot[c] + o, S::load(tot[c] + o) + sum[c][k]);
  }
}

template <typename T>
void ssm_scan_backward_impl(const ScanBackwardParams& p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int kForwardBlock = kScanNBlock;  // states in registers when stepping forward
  constexpr int kReverseBlock = 2;            // ... in the reverse pass (more values each)
  const int64_t H = p.H, L = p.L, N = p.N, Np = N > 0 ? N : 1;
  const int64_t groups = ceil_div(H, W), segs = ceil_div(L, kCkptEvery);
  if (p.batch == 0 || H == 0) return;
  const int64_t M = Np * W;  // one planar (n, lane) array
  const int64_t per_thread =
      6 * M + W + 2 * M          // parameters, state
      + 2 * M                    // carry (lambda)
      + 6 * M + 2 * W            // gradient totals (dA, dB, dC; D) and the segment's D sum
      + 2 * M * (segs + 1)       // checkpoints and the final state
      + 2 * M * (kCkptEvery + 1) // the states of one segment
      + 3 * kCkptEvery * W;      // u, gy, gu of one segment
  parallel_tasks(
      p.batch * groups, p.batch * L * H * N, [&] { return Scratch<T>(per_thread); },
      [&](Scratch<T>& buf, int64_t t) {
        const int64_t bi = t / groups, h0 = (t % groups) * W;
        T* cur = buf.p;
        auto take = [&](int64_t n) { T* r = cur; cur += n; return r; };
        LaneParams<T> q;
        q.ar = take(M), q.ai = take(M), q.br = take(M), q.bi = take(M);
        q.cr = take(M), q.ci = take(M), q.d = take(W);
        T *xr = take(M), *xi = take(M), *lr = take(M), *li = take(M);
        T *gar = take(M), *gai = take(M), *gbr = take(M), *gbi = take(M), *gcr = take(M),
          *gci = take(M), *gd = take(W), *sd = take(W);
        T* ckpt = take(2 * M * (segs + 1));
        T* seg = take(2 * M * (kCkptEvery + 1));
        T *ub = take(kCkptEvery * W), *gyb = take(kCkptEvery * W), *gub = take(kCkptEvery * W);
        load_lane_params<T>(p.dA, p.dB, p.dC, p.D, H, N, Np, h0, q);
        load_lane_state<T>(p.state0, bi, H, N, Np, h0, xr, xi);
        load_lane_state<T>(p.gstate, bi, H, N, Np, h0, lr, li);
        T* const tot[] = {gar, gai, gbr, gbi, gcr, gci};  // plain arrays: no std templates here
        for (T* a : tot) std::memset(a, 0, sizeof(T) * M);
        std::memset(gd, 0, sizeof(T) * W);
        const T* u = static_cast<const T*>(p.u);
        const T* gy = static_cast<const T*>(p.gy);

        // Forward: checkpoint k holds the state before step k * kCkptEvery, the last
        // one the final state.
        for (int64_t s = 0; s <= segs; ++s) {
          std::memcpy(ckpt + 2 * M * s, xr, sizeof(T) * M);
          std::memcpy(ckpt + 2 * M * s + M, xi, sizeof(T) * M);
          if (s == segs) break;
          const int64_t l0 = s * kCkptEvery, nl = imin(kCkptEvery, L - l0);
          gather_lanes(u, bi, L, H, l0, nl, h0, ub);
          for_state_blocks<kForwardBlock>(Np, [&](auto B, int64_t n0) {
            advance_states<T, decltype(B)::value>(q, n0, M, ub, nl, xr, xi, nullptr, xr, xi);
          });
        }

        const V dv = S::load(q.d);
        for (int64_t s = segs - 1; s >= 0; --s) {
          const int64_t l0 = s * kCkptEvery, nl = imin(kCkptEvery, L - l0);
          gather_lanes(u, bi, L, H, l0, nl, h0, ub);
          gather_lanes(gy, bi, L, H, l0, nl, h0, gyb);
          // seg[j] = the state before step l0 + j, j <= nl (the recomputed states are the
          // forward's bits: the same steps from the same checkpoint)
          std::memcpy(seg, ckpt + 2 * M * s, sizeof(T) * 2 * M);
          for_state_blocks<kForwardBlock>(Np, [&](auto B, int64_t n0) {
            advance_states<T, decltype(B)::value>(q, n0, M, ub, nl - 1, seg, seg + M, seg, nullptr, nullptr);
          });
          std::memcpy(seg + 2 * M * nl, ckpt + 2 * M * (s + 1), sizeof(T) * 2 * M);
          std::memset(gub, 0, sizeof(T) * nl * W);
          for_state_blocks<kReverseBlock>(Np, [&](auto B, int64_t n0) {
            reverse_states<T, decltype(B)::value>(q, n0, M, seg, ub, gyb, nl, lr, li, tot, gub);
          });
          std::memset(sd, 0, sizeof(T) * W);
          for (int64_t j = nl - 1; j >= 0; --j) {
            const V g = S::load(gyb + j * W);
            if (p.D) S::store(gub + j * W, S::load(gub + j * W) + dv * g);
            S::store(sd, S::load(sd) + g * S::load(ub + j * W));
          }
          if (p.gu) scatter_lanes(static_cast<T*>(p.gu), bi, L, H, l0, nl, h0, gub);
          S::store(gd, S::load(gd) + S::load(sd));
        }
        if (p.gdA) store_lane_state<T>(p.gdA, bi, H, N, h0, gar, gai);
        if (p.gdB) store_lane_state<T>(p.gdB, bi, H, N, h0, gbr, gbi);
        if (p.gdC) store_lane_state<T>(p.gdC, bi, H, N, h0, gcr, gci);
        if (p.gstate0) store_lane_state<T>(p.gstate0, bi, H, N, h0, lr, li);
        if (p.gD)
          for (int k = 0; k < W && h0 + k < H; ++k) static_cast<T*>(p.gD)[bi * H + h0 + k] = gd[k];
      });
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
