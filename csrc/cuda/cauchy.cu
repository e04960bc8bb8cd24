// Cauchy product on the GPU, forward and backward (definitions in ssmkit.h; the CPU
// twin in csrc/cpu/cauchy.cpp sets the semantics, including the summation order).
//
// Forward and dz (sums over n for each l): a block owns a tile of kTile = 1024 values
// of l of one row, kLpt = 4 per thread at l0 + threadIdx.x + 256 k (coalesced loads
// and stores). The row's poles (w, v) are staged in shared memory in slabs of 256 and
// read as broadcasts, so the inner loop is FMAs and one exact division per term (per
// conjugate pair in the fused form; -prec-div stays on: no approximate reciprocals).
// With 4 independent l per thread the dependent chains interleave, and the register
// count stays low enough for full occupancy.
//
// The fused pair form and its overflow fallback, and the blocked sums (16 terms, 16
// blocks, then the rest: error grows like log N), are those of the CPU kernel.
//
// dv, dw (sums over l for each n): a block owns a chunk of 1024 l of one row with z and
// grad staged in shared memory; its threads are (n, group) slots, each summing every
// G-th l of the chunk for one n (no atomics); groups are added in a fixed order, chunks
// by a second kernel in a fixed order, so results are deterministic.
#include <new>

#include "common.cuh"
#include "ssmkit/untruncated_math.h"

namespace ssmkit {
namespace {
using namespace cuda;

constexpr int kThreads = 256;
constexpr int kLpt = 4;
constexpr int64_t kTile = kThreads * kLpt;
constexpr int kSlab = 256;   // poles staged per pass (= 16 blocks of 16)
constexpr int kSum = 16;     // terms per inner accumulation block
constexpr int64_t kChunk = 1024;  // l per block in the dv/dw reduction

template <typename T>
struct Lim;
template <>
struct Lim<float> {
  static constexpr float tiny = 1.17549435e-38f, huge = 3.40282347e+38f;
};
template <>
struct Lim<double> {
  static constexpr double tiny = 2.2250738585072014e-308, huge = 1.7976931348623157e+308;
};

template <typename T>
struct Pole {
  T wr, wi, vr, vi;
};

// Adds the terms of poles [n0, n1) for this thread's kLpt values of z (see the CPU's
// cauchy_block). kFused: one division per conjugate pair; returns false (adding
// nothing) when a denominator |d1 d2|^2 left the normal range, and the caller redoes
// the block with kFused = false.
template <typename T, bool kConj, bool kFused>
__device__ inline bool fwd_block(const T (&zr)[kLpt], const T (&zi)[kLpt], const Pole<T>* s,
                                 int n0, int n1, T (&acc_r)[kLpt], T (&acc_i)[kLpt]) {
  T a_r[kLpt], a_i[kLpt];
#pragma unroll
  for (int k = 0; k < kLpt; ++k) a_r[k] = a_i[k] = 0;
  if constexpr (kFused) {
    // The range of |d1 d2|^2 per l, kept as the CPU keeps it per SIMD lane (the same
    // comparisons, so a NaN is remembered or forgotten exactly as there).
    T lo[kLpt], hi[kLpt], zi2[kLpt];
#pragma unroll
    for (int k = 0; k < kLpt; ++k) lo[k] = Lim<T>::huge, hi[k] = 0, zi2[k] = zi[k] + zi[k];
    for (int n = n0; n < n1; ++n) {
      const Pole<T> q = s[n];
      const T vr2 = q.vr + q.vr, k2 = T(2) * q.vi * q.wi;
#pragma unroll
      for (int k = 0; k < kLpt; ++k) {
        const T dr = zr[k] - q.wr, di1 = zi[k] - q.wi, di2 = zi[k] + q.wi;
        const T num_r = vr2 * dr - k2, num_i = vr2 * zi[k];
        const T den_r = dr * dr - di1 * di2, den_i = dr * zi2[k];
        const T den2 = den_r * den_r + den_i * den_i;
        lo[k] = lo[k] < den2 ? lo[k] : den2;
        hi[k] = hi[k] > den2 ? hi[k] : den2;
        const T r = T(1) / den2;
        a_r[k] += (num_r * den_r + num_i * den_i) * r;
        a_i[k] += (num_i * den_r - num_r * den_i) * r;
      }
    }
#pragma unroll
    for (int k = 0; k < kLpt; ++k)
      if (!(lo[k] >= Lim<T>::tiny && hi[k] <= Lim<T>::huge)) return false;
  } else {
    for (int n = n0; n < n1; ++n) {
      const Pole<T> q = s[n];
#pragma unroll
      for (int k = 0; k < kLpt; ++k) {
        const T dr = zr[k] - q.wr, di1 = zi[k] - q.wi, dr2 = dr * dr;
        const T p = q.vr * dr, sv = q.vi * dr;
        const T r1 = T(1) / (di1 * di1 + dr2);
        a_r[k] += (p + q.vi * di1) * r1;  // v conj(z - w) / |z - w|^2
        a_i[k] += (sv - q.vr * di1) * r1;
        if constexpr (kConj) {
          const T di2 = zi[k] + q.wi;
          const T r2 = T(1) / (di2 * di2 + dr2);
          a_r[k] += (p - q.vi * di2) * r2;  // conj(v) conj(z - conj(w)) / |z - conj(w)|^2
          a_i[k] -= (sv + q.vr * di2) * r2;
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kLpt; ++k) acc_r[k] += a_r[k], acc_i[k] += a_i[k];
  return true;
}

// T_l terms for dz: v/(z - w)^2 [+ conj(v)/(z - conj(w))^2] (the CPU's formulas).
template <typename T, bool kConj>
__device__ inline void dz_block(const T (&zr)[kLpt], const T (&zi)[kLpt], const Pole<T>* s,
                                int n0, int n1, T (&acc_r)[kLpt], T (&acc_i)[kLpt]) {
  T a_r[kLpt], a_i[kLpt];
#pragma unroll
  for (int k = 0; k < kLpt; ++k) a_r[k] = a_i[k] = 0;
  for (int n = n0; n < n1; ++n) {
    const Pole<T> q = s[n];
#pragma unroll
    for (int k = 0; k < kLpt; ++k) {
      const T dr = zr[k] - q.wr, di1 = zi[k] - q.wi, dr2 = dr * dr;
      const T r1 = T(1) / (di1 * di1 + dr2);
      const T a1 = dr * r1, b1 = -di1 * r1;
      // 1/d^2 = (x, 2y): x = (a - b)(a + b), y = a b
      const T x1 = (a1 - b1) * (a1 + b1), y1 = T(2) * a1 * b1;
      a_r[k] += q.vr * x1 - q.vi * y1;
      a_i[k] += q.vr * y1 + q.vi * x1;
      if constexpr (kConj) {
        const T di2 = zi[k] + q.wi;
        const T r2 = T(1) / (di2 * di2 + dr2);
        const T a2 = dr * r2, b2 = -di2 * r2;
        const T x2 = (a2 - b2) * (a2 + b2), y2 = T(2) * a2 * b2;
        a_r[k] += q.vr * x2 + q.vi * y2;
        a_i[k] += q.vr * y2 - q.vi * x2;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kLpt; ++k) acc_r[k] += a_r[k], acc_i[k] += a_i[k];
}

// kDz = false: out[r, l] = sum_n (the forward terms); true: dz[r, l] = -g conj(T_l).
// grid-stride over (row, tile); p_grad is unused in the forward.
template <typename T, bool kConj, bool kDz>
__global__ void __launch_bounds__(kThreads)
    cauchy_l_kernel(Batch batch, int64_t N, int64_t L, In v, In w, In z, In grad, T* out,
                    int64_t tiles_per_row, int64_t tiles) {
  __shared__ Pole<T> s[kSlab];
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t r = t / tiles_per_row, l0 = (t % tiles_per_row) * kTile;
    const int64_t zoff = row_offset(batch, z, r);
    const int64_t voff = row_offset(batch, v, r), woff = row_offset(batch, w, r);
    T zr[kLpt], zi[kLpt], tot_r[kLpt], tot_i[kLpt];
#pragma unroll
    for (int k = 0; k < kLpt; ++k) {
      int64_t l = l0 + threadIdx.x + int64_t(kThreads) * k;
      if (l >= L) l = L - 1;  // computed, never stored
      const Cx<T> zz = cx_load<T>(z.data, zoff + l * z.stride);
      zr[k] = zz.re, zi[k] = zz.im;
      tot_r[k] = tot_i[k] = 0;
    }
    for (int64_t s0 = 0; s0 < N; s0 += kSlab) {
      const int ns = static_cast<int>(N - s0 < kSlab ? N - s0 : kSlab);
      __syncthreads();  // the previous slab is no longer read
      if (threadIdx.x < ns) {
        const int64_t n = s0 + threadIdx.x;
        const Cx<T> ww = cx_load<T>(w.data, woff + n * w.stride);
        const Cx<T> vv = cx_load<T>(v.data, voff + n * v.stride);
        s[threadIdx.x] = {ww.re, ww.im, vv.re, vv.im};
      }
      __syncthreads();
      T mid_r[kLpt], mid_i[kLpt];
#pragma unroll
      for (int k = 0; k < kLpt; ++k) mid_r[k] = mid_i[k] = 0;
      for (int n0 = 0; n0 < ns; n0 += kSum) {
        const int n1 = n0 + kSum < ns ? n0 + kSum : ns;
        if constexpr (kDz) {
          dz_block<T, kConj>(zr, zi, s, n0, n1, mid_r, mid_i);
        } else if (!fwd_block<T, kConj, kConj>(zr, zi, s, n0, n1, mid_r, mid_i)) {
          fwd_block<T, kConj, false>(zr, zi, s, n0, n1, mid_r, mid_i);
        }
      }
#pragma unroll
      for (int k = 0; k < kLpt; ++k) tot_r[k] += mid_r[k], tot_i[k] += mid_i[k];
    }
    const int64_t goff = kDz ? row_offset(batch, grad, r) : 0;
#pragma unroll
    for (int k = 0; k < kLpt; ++k) {
      const int64_t l = l0 + threadIdx.x + int64_t(kThreads) * k;
      if (l >= L) continue;
      Cx<T> o{tot_r[k], tot_i[k]};
      if constexpr (kDz) {  // dz = -g conj(T)
        const Cx<T> g = cx_load<T>(grad.data, goff + l * grad.stride);
        o = {-(g.re * tot_r[k] + g.im * tot_i[k]), -(g.im * tot_r[k] - g.re * tot_i[k])};
      }
      cx_store<T>(out, r * L + l, o);
    }
  }
}

// Partial S1, S2 (see the CPU's cauchy_backward_impl) of one chunk of l for every n:
// partial[(r * chunks + c) * N + n] = (S1 re, S1 im, S2 re, S2 im).
template <typename T, bool kConj>
__global__ void __launch_bounds__(kThreads)
    cauchy_s_kernel(Batch batch, int64_t N, int64_t L, In v, In w, In z, In grad, T* partial,
                    int64_t chunks, int64_t tasks) {
  __shared__ T zs[2][kChunk], gs[2][kChunk];
  __shared__ T red[kThreads][4];
  const int64_t G = N >= kThreads ? 1 : kThreads / N;  // l-groups per n
  const int64_t slots = G * N;
  for (int64_t t = blockIdx.x; t < tasks; t += gridDim.x) {
    const int64_t r = t / chunks, c = t % chunks, l0 = c * kChunk;
    const int nl = static_cast<int>(L - l0 < kChunk ? L - l0 : kChunk);
    const int64_t zoff = row_offset(batch, z, r), goff = row_offset(batch, grad, r);
    const int64_t woff = row_offset(batch, w, r);
    __syncthreads();
    for (int i = threadIdx.x; i < nl; i += kThreads) {
      const Cx<T> zz = cx_load<T>(z.data, zoff + (l0 + i) * z.stride);
      const Cx<T> gg = cx_load<T>(grad.data, goff + (l0 + i) * grad.stride);
      zs[0][i] = zz.re, zs[1][i] = zz.im, gs[0][i] = gg.re, gs[1][i] = gg.im;
    }
    __syncthreads();
    for (int64_t sl = threadIdx.x; sl < ((slots + kThreads - 1) / kThreads) * kThreads;
         sl += kThreads) {
      T tot[4] = {0, 0, 0, 0};
      const bool active = sl < slots;
      const int64_t n = active ? sl % N : 0, grp = sl / N;
      if (active) {
        const Cx<T> ww = cx_load<T>(w.data, woff + n * w.stride);
        for (int64_t i0 = grp; i0 < nl; i0 += G * kSum) {
          T s[4] = {0, 0, 0, 0};
          for (int64_t i = i0; i < nl && i < i0 + G * kSum; i += G) {
            const T zr = zs[0][i], zi = zs[1][i], gr = gs[0][i], gi = gs[1][i];
            const T dr = zr - ww.re, di1 = zi - ww.im, dr2 = dr * dr;
            const T r1 = T(1) / (di1 * di1 + dr2);
            const T a1 = dr * r1, b1 = -di1 * r1;
            const T x1 = (a1 - b1) * (a1 + b1), y1 = a1 * b1;
            if constexpr (kConj) {
              const T di2 = zi + ww.im;
              const T r2 = T(1) / (di2 * di2 + dr2);
              const T a2 = dr * r2, b2 = -di2 * r2;
              const T x2 = (a2 - b2) * (a2 + b2), y2 = a2 * b2;
              s[0] += gr * (a1 + a2) + gi * (b1 + b2);
              s[1] += gr * (b1 - b2) + gi * (a2 - a1);
              s[2] += gr * (x1 + x2) + T(2) * gi * (y1 + y2);
              s[3] += T(2) * gr * (y1 - y2) + gi * (x2 - x1);
            } else {
              s[0] += gr * a1 + gi * b1;
              s[1] += gr * b1 - gi * a1;
              s[2] += gr * x1 + T(2) * gi * y1;
              s[3] += T(2) * gr * y1 - gi * x1;
            }
          }
#pragma unroll
          for (int k = 0; k < 4; ++k) tot[k] += s[k];
        }
      }
      T* out = partial + ((r * chunks + c) * N + n) * 4;
      if (G == 1) {
        if (active)
          for (int k = 0; k < 4; ++k) out[k] = tot[k];
      } else {  // N < kThreads: one slot per thread; add the groups in order
        for (int k = 0; k < 4; ++k) red[threadIdx.x][k] = tot[k];
        __syncthreads();
        if (threadIdx.x < N) {
          T sum[4] = {0, 0, 0, 0};
          for (int64_t g = 0; g < G; ++g)
            for (int k = 0; k < 4; ++k) sum[k] += red[g * N + threadIdx.x][k];
          T* o = partial + ((r * chunks + c) * N + threadIdx.x) * 4;
          for (int k = 0; k < 4; ++k) o[k] = sum[k];
        }
        __syncthreads();
      }
    }
  }
}

// dv = conj(S1), dw = conj(v S2), the chunks added in order. One thread per (row, n).
template <typename T>
__global__ void cauchy_finish_kernel(Batch batch, int64_t rows, int64_t N, In v,
                                     const T* partial, int64_t chunks, T* dv, T* dw) {
  for (int64_t i = grid_thread(); i < rows * N; i += grid_stride()) {
    const int64_t r = i / N, n = i % N;
    T s[4] = {0, 0, 0, 0};
    add_chunks(partial, chunks, N, r, n, s);
    if (dv) cx_store<T>(dv, i, {s[0], -s[1]});
    if (dw) {
      const Cx<T> vv = cx_load<T>(v.data, row_offset(batch, v, r) + n * v.stride);
      cx_store<T>(dw, i, {vv.re * s[2] - vv.im * s[3], -(vv.re * s[3] + vv.im * s[2])});
    }
  }
}

template <typename T, bool kConj>
void cauchy_forward_t(const CauchyParams& p, cudaStream_t st) {
  const int64_t rows = p.batch.rows();
  if (rows == 0 || p.L == 0) return;
  const int64_t per_row = ceil_div(p.L, kTile), tiles = rows * per_row;
  cauchy_l_kernel<T, kConj, false><<<grid_for(tiles, 1), kThreads, 0, st>>>(
      p.batch, p.N, p.L, p.v, p.w, p.z, p.z, static_cast<T*>(p.out), per_row, tiles);
  SSMKIT_CUDA_CHECK_LAUNCH("cauchy");
}

template <typename T, bool kConj>
void cauchy_backward_t(const CauchyBackwardParams& p, cudaStream_t st) {
  const char* op = "cauchy_backward";
  const int64_t rows = p.batch.rows(), N = p.N, L = p.L;
  if (rows == 0) return;
  if (L == 0 || N == 0) {  // empty sums: zero gradients
    const size_t c = 2 * sizeof(T);
    if (p.dv) SSMKIT_CUDA_CHECK(cudaMemsetAsync(p.dv, 0, c * rows * N, st), op);
    if (p.dw) SSMKIT_CUDA_CHECK(cudaMemsetAsync(p.dw, 0, c * rows * N, st), op);
    if (p.dz) SSMKIT_CUDA_CHECK(cudaMemsetAsync(p.dz, 0, c * rows * L, st), op);
    return;
  }
  if (p.dz) {
    const int64_t per_row = ceil_div(L, kTile), tiles = rows * per_row;
    cauchy_l_kernel<T, kConj, true><<<grid_for(tiles, 1), kThreads, 0, st>>>(
        p.batch, N, L, p.v, p.w, p.z, p.grad, static_cast<T*>(p.dz), per_row, tiles);
    SSMKIT_CUDA_CHECK_LAUNCH(op);
  }
  if (p.dv || p.dw) {
    const int64_t chunks = ceil_div(L, kChunk), tasks = rows * chunks;
    Scratch partial(sizeof(T) * 4 * tasks * N, st, op);
    cauchy_s_kernel<T, kConj><<<grid_for(tasks, 1), kThreads, 0, st>>>(
        p.batch, N, L, p.v, p.w, p.z, p.grad, partial.as<T>(), chunks, tasks);
    SSMKIT_CUDA_CHECK_LAUNCH(op);
    cauchy_finish_kernel<T><<<grid_for(rows * N, 256), 256, 0, st>>>(
        p.batch, rows, N, p.v, partial.as<T>(), chunks, static_cast<T*>(p.dv),
        static_cast<T*>(p.dw));
    SSMKIT_CUDA_CHECK_LAUNCH(op);
  }
}

// ---- dplr_untruncated_C: the CPU twin (csrc/cpu/cauchy.cpp) sets the semantics ----
// Its two passes are Cauchy products (cauchy_forward_t) over scratch operands: pass 1
// (points z_k = i zhat_k, nodes dt Lambda_n, the (1 + r) r rows dt C~ P and dt P^* P of
// each channel), pass 2 (points dt Lambda_n, nodes z_k, the 1 + r rows of weights and
// Woodbury terms). Small kernels around them build the operands, join pass 1's rows by
// the Woodbury solve at each frequency, and finish each channel in a fixed order (the
// per-channel math is the CPU's, from ssmkit/untruncated_math.h).

// The operands of pass 1 (nodes w, rows v), the frequencies' points z (= i zhat_k) and
// row 0 of each channel's pass-2 terms t: the weights (1 + zhat_k/2)/L, halved at k = 0.
template <typename T>
__global__ void untruncated_operands_kernel(DplrUntruncatedCParams p, int64_t F, Cx<T>* w, Cx<T>* v,
                                            Cx<T>* z, Cx<T>* t) {
  const int64_t H = p.H, N = p.N, r = p.r, rows1 = (1 + r) * r, rows2 = 1 + r;
  const T* dt = static_cast<const T*>(p.dt);
  for (int64_t i = grid_thread(); i < H * N; i += grid_stride())
    w[i] = step_size(dt, i / N) * cx_load<T>(p.Lambda, i);
  for (int64_t i = grid_thread(); i < H * rows1 * N; i += grid_stride()) {
    const int64_t h = i / (rows1 * N), a = i / N % rows1 / r, b = i / N % r, n = i % N;
    const Cx<T> left = a == 0 ? cx_load<T>(p.C, h * N + n) : conj(cx_load<T>(p.P, (h * r + a - 1) * N + n));
    v[i] = step_size(dt, h) * (left * cx_load<T>(p.P, (h * r + b) * N + n));
  }
  for (int64_t i = grid_thread(); i < H * F; i += grid_stride()) {
    const int64_t h = i / F, k = i % F;
    const T zh = untruncated_point<T>(k, p.L);
    if (h == 0) z[k] = {T(0), zh};
    t[h * rows2 * F + k] = untruncated_weight(zh, k, p.L);
  }
}

// Rows 1..r of t at (h, k): the solution ay of (I + k11)^T ay = weight k01, solved in
// place in pass 1's output kp (rows k01[b] = kp[b], k11[a][b] = kp[(1 + a) r + b]).
template <typename T>
__global__ void untruncated_woodbury_kernel(int64_t H, int64_t r, int64_t F, Cx<T>* kp, Cx<T>* t) {
  const int64_t rows1 = (1 + r) * r, rows2 = 1 + r;
  for (int64_t i = grid_thread(); i < H * F; i += grid_stride()) {
    const int64_t h = i / F, k = i % F;
    Cx<T>* y = kp + h * rows1 * F + k;  // y[b] at y[b F]
    Cx<T>* m = y + r * F;               // k11[a][b] at m[(a r + b) F]: M[b][a] = 1[a = b] + k11[a][b]
    Cx<T>* tk = t + h * rows2 * F + k;
    for (int64_t b = 0; b < r; ++b) {
      y[b * F] = tk[0] * y[b * F];
      m[b * (r + 1) * F].re += T(1);
    }
    solve_small(m, F, r * F, y, F, r);
    for (int64_t b = 0; b < r; ++b) tk[(1 + b) * F] = y[b * F];
  }
}

// out[h] from pass 2's sums tp (row j of channel h at tp[(h rows2 + j) N]): one thread
// per channel, n in order (the CPU's order).
template <typename T>
__global__ void untruncated_finish_kernel(DplrUntruncatedCParams p, const Cx<T>* w, const Cx<T>* tp) {
  const int64_t N = p.N, r = p.r, rows2 = 1 + r;
  for (int64_t h = grid_thread(); h < p.H; h += grid_stride()) {
    auto Tj = [&](int64_t j, int64_t n) { const Cx<T> s = tp[(h * rows2 + j) * N + n]; return Cx<T>{-s.re, -s.im}; };
    auto P = [&](int64_t b, int64_t n) { return cx_load<T>(p.P, (h * r + b) * N + n); };
    auto Ct = [&](int64_t n) { return cx_load<T>(p.C, h * N + n); };
    T s[64];  // r <= 64 (the binding checks)
    untruncated_finish<T>(N, r, p.L, step_size(static_cast<const T*>(p.dt), h), Tj, P, Ct,
                          [&](int64_t n) { return w[h * N + n]; }, static_cast<Cx<T>*>(p.out) + h * N, s);
  }
}

// A contiguous (H, rows, n) operand of a batched product over batch (H, rows); rows_stride
// 0 broadcasts one row per channel, h_stride 0 one array for every channel.
inline In operand(const void* data, int64_t h_stride, int64_t rows_stride) {
  In a;
  a.data = data;
  a.batch_stride[0] = h_stride, a.batch_stride[1] = rows_stride;
  return a;
}

template <typename T>
void dplr_untruncated_C_t(const DplrUntruncatedCParams& p, cudaStream_t st) {
  const char* op = "dplr_untruncated_C";
  const int64_t H = p.H, N = p.N, r = p.r, F = (p.L + 1) / 2, rows1 = (1 + r) * r, rows2 = 1 + r;
  if (H == 0 || N == 0) return;
  auto bytes = [](int64_t a, int64_t b, int64_t n) {  // a b n complex values; too many fail as out of memory
    int64_t ab = 0, abn = 0, total = 0;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, n, &abn) ||
        __builtin_mul_overflow(abn, int64_t(sizeof(Cx<T>)), &total))
      throw std::bad_alloc();
    return static_cast<size_t>(total);
  };
  Scratch w(bytes(H, 1, N), st, op), v(bytes(H, rows1, N), st, op), z(bytes(1, 1, F), st, op);
  Scratch t(bytes(H, rows2, F), st, op), kp(bytes(H, rows1, F), st, op), tp(bytes(H, rows2, N), st, op);
  untruncated_operands_kernel<T><<<grid_for(H * (rows1 + 1) * N + H * F, 256), 256, 0, st>>>(
      p, F, w.as<Cx<T>>(), v.as<Cx<T>>(), z.as<Cx<T>>(), t.as<Cx<T>>());
  SSMKIT_CUDA_CHECK_LAUNCH(op);
  CauchyParams c1;  // pass 1: (H, rows1) rows over N nodes at F points
  c1.dtype = p.dtype, c1.conj_pairs = true;
  c1.batch.ndim = 2, c1.batch.shape[0] = H, c1.batch.shape[1] = rows1;
  c1.N = N, c1.L = F;
  c1.v = operand(v.as<void>(), rows1 * N, N), c1.w = operand(w.as<void>(), N, 0), c1.z = operand(z.as<void>(), 0, 0);
  c1.out = kp.as<void>();
  cauchy_forward_t<T, true>(c1, st);
  if (r > 0) {
    untruncated_woodbury_kernel<T><<<grid_for(H * F, 256), 256, 0, st>>>(H, r, F, kp.as<Cx<T>>(), t.as<Cx<T>>());
    SSMKIT_CUDA_CHECK_LAUNCH(op);
  }
  CauchyParams c2;  // pass 2: (H, rows2) rows over F nodes at N points
  c2.dtype = p.dtype, c2.conj_pairs = true;
  c2.batch.ndim = 2, c2.batch.shape[0] = H, c2.batch.shape[1] = rows2;
  c2.N = F, c2.L = N;
  c2.v = operand(t.as<void>(), rows2 * F, F), c2.w = operand(z.as<void>(), 0, 0), c2.z = operand(w.as<void>(), N, 0);
  c2.out = tp.as<void>();
  cauchy_forward_t<T, true>(c2, st);
  untruncated_finish_kernel<T><<<grid_for(H, 128), 128, 0, st>>>(p, w.as<Cx<T>>(), tp.as<Cx<T>>());
  SSMKIT_CUDA_CHECK_LAUNCH(op);
}

}  // namespace

void cauchy_cuda(const CauchyParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.conj_pairs, kConj, cauchy_forward_t<T, kConj>(p, as_stream(s))));
}
void cauchy_backward_cuda(const CauchyBackwardParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.conj_pairs, kConj, cauchy_backward_t<T, kConj>(p, as_stream(s))));
}
void dplr_untruncated_C_cuda(const DplrUntruncatedCParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, dplr_untruncated_C_t<T>(p, as_stream(s)));
}

}  // namespace ssmkit
