// Log-Vandermonde products on the GPU: forward, transpose and their gradients
// (definitions in ssmkit.h; the CPU twin csrc/cpu/vandermonde.cpp sets the semantics).
//
// As on the CPU, exp(x_n l) is never evaluated term by term: with l = l0 + 64 k + j,
//   E[n, l] = W[n, k] * T[n, j],  W[n, k] = exp(x_n (l0 + 64 k)),  T[n, j] = exp(x_n j),
// so a term costs one complex multiply-add in the kernel's precision (two FMAs when
// only the real part is needed). The tables are built per tile in shared memory, in
// double: twelve exact anchors per n (exp(2^m x) for m < 6, exp(64 2^m x) for m < 5,
// and exp(x l0), each with the FMA-corrected phase of the CPU's cexp_at) and each
// entry the product of the anchors of its set bits (at most 5 products in double, far
// below the kernel precision's rounding). Table work is O(N) per tile of 2048 (forward)
// or 1024 (reductions) values of l.
//
// Forward: a block owns a tile of 2048 l of one row; thread (j, kq) = (t % 64, t / 64)
// sums for l = l0 + 64 k + j, k = kq + 4 m (m < 8), reading T[n, j] (consecutive j:
// no bank conflicts) and W[n, k] (a broadcast). Poles come in slabs of 32 (16 in
// double). Overflow as on the CPU: a (n, k) whose |c| max|E| could come within e^2 of
// the range, or with non-finite x, is summed term by term in double as magnitude times
// unit phase (products by __dmul_rn, which the compiler never fuses into the sum).
//
// Reductions P_n = sum_l u_l E[n, l], Q_n = sum_l l u_l E[n, l] (backward, transpose):
// a block owns a chunk of 1024 l of one row with u staged in shared memory; thread
// (n, jg) computes A_j = sum_k W[n, k] u[k, j] and B_j = sum_k (l0 + 64 k) W[n, k] u[k, j]
// for its JPT values of j (register blocking: one W load feeds JPT FMAs), then
// P = sum_j T[n, j] A_j and Q = sum_j T[n, j] (B_j + j A_j). Groups jg are added in a
// fixed order, chunks by a second kernel in a fixed order: deterministic results.
#include "common.cuh"

namespace ssmkit {
namespace {
using namespace cuda;

constexpr int kThreads = 256;
constexpr int kJ = 64;            // j per block of l: the length of T[n, :]
constexpr int kFwdK = 32;         // forward: blocks of 64 per tile (2048 l)
constexpr int kRedK = 16;         // reductions: blocks of 64 per chunk (1024 l)
constexpr int kAnchors = 12;      // exp(2^m x), m < 6; exp(64 2^m x), m < 5; exp(x l0)

// Poles per pass: the forward's and the reductions' (shared memory stays under 48 KiB).
template <typename T>
__host__ __device__ constexpr int slab() { return sizeof(T) == 4 ? 32 : 16; }
template <typename T>
__host__ __device__ constexpr int red_slab() { return sizeof(T) == 4 ? 32 : 8; }

// The log of the largest finite T, less a margin of e^2.
template <typename T>
__host__ __device__ constexpr double log_max() {
  return (sizeof(T) == 4 ? 88.7228391 : 709.782712) - 2.0;
}

// exp(x l) in double, x = a + ib, with a*l and b*l error-free (FMA residuals).
__device__ inline void cexp_at(double a, double b, double l, double& re, double& im) {
  const double p = a * l, pe = fma(a, l, -p);
  const double q = b * l, qe = fma(b, l, -q);
  double s, c;
  sincos(q, &s, &c);
  const double m = exp(p) * (1 + pe);
  re = m * (c - qe * s);
  im = m * (s + qe * c);
}

// One term c exp(x l) as magnitude times unit phase: a term is Inf exactly when it
// overflows. The last products are __dmul_rn so they are never fused with a sum.
__device__ __noinline__ void slow_term(double cr, double ci, double a, double b, double l,
                                       double& re, double& im) {
  const double p = a * l, pe = fma(a, l, -p);
  const double q = b * l, qe = fma(b, l, -q);
  double s, c;
  sincos(q, &s, &c);
  const double ur = c - qe * s, ui = s + qe * c;
  const double h = exp(0.5 * p) * (1 + 0.5 * pe);
  re = __dmul_rn(__dmul_rn(cr * ur - ci * ui, h), h);
  im = __dmul_rn(__dmul_rn(cr * ui + ci * ur, h), h);
}

struct Cd {
  double re, im;
};

// Two values loaded as one (64- or 128-bit) shared-memory access.
template <typename T>
struct Vec2;
template <>
struct Vec2<float> {
  using type = float2;
};
template <>
struct Vec2<double> {
  using type = double2;
};
__device__ inline Cd cmul(Cd a, Cd b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}

// Anchors of the poles [s0, s0 + ns) of one row: anc[i * kAnchors + m], with
// anc[.. + 11] = coef * exp(x l0). coef(n) gives the coefficient in double.
template <typename T, typename Coef>
__device__ inline void build_anchors(const In& x, int64_t xoff, int64_t s0, int ns, int64_t l0,
                                     Coef coef, double* xa, double* xb, Cd* anc) {
  for (int i = threadIdx.x; i < ns * kAnchors; i += blockDim.x) {
    const int k = i / kAnchors, m = i % kAnchors;
    const int64_t n = s0 + k;
    const Cx<T> xx = cx_load<T>(x.data, xoff + n * x.stride);
    const double a = xx.re, b = xx.im;
    if (m == 0) xa[k] = a, xb[k] = b;
    const double l = m < 6 ? double(1 << m) : m < 11 ? double(kJ << (m - 6)) : double(l0);
    Cd e;
    cexp_at(a, b, l, e.re, e.im);
    if (m == 11) e = cmul(coef(n), e);
    anc[i] = e;
  }
}

// exp(x j) from the anchors of one pole: the product over the set bits of j.
__device__ inline Cd t_entry(const Cd* anc, int j) {
  Cd e{1, 0};
  for (int m = 0; m < 6; ++m)
    if (j >> m & 1) e = cmul(e, anc[m]);
  return e;
}
// B exp(64 k x), B = anc[11]: W[n, k] (times the coefficient in the forward).
__device__ inline Cd w_entry(const Cd* anc, int k) {
  Cd e = anc[11];
  for (int m = 0; m < 5; ++m)
    if (k >> m & 1) e = cmul(e, anc[6 + m]);
  return e;
}

// ---- forward: out[r, l] = scale * sum_n c_n E[n, l] (real part, or complex) ----

// kHv: the coefficient is conj(h_n) v_n (transpose backward's du), else v_n.
template <typename T, bool kReal, bool kHv>
__global__ void __launch_bounds__(kThreads)
    vandermonde_fwd_kernel(Batch batch, int64_t N, int64_t L, In x, In v, In h, T* out, T scale,
                           bool conj_out, int64_t tiles_per_row, int64_t tiles) {
  using V2 = typename Vec2<T>::type;
  constexpr int NS = slab<T>();
  constexpr int KQ = kThreads / kJ;   // k-groups: thread (j, kq) owns k = kq + KQ m
  constexpr int MPT = kFwdK / KQ;     // k per thread
  // Laid out so a thread's loads are few and wide: T[n, j] as (re, im) pairs, W[n, k] as
  // ww[n][kq][m] (its MPT values contiguous, one broadcast per warp), the overflow flags
  // of its MPT blocks as one bit mask per (n, kq).
  __shared__ V2 tt[NS][kJ];
  __shared__ __align__(16) V2 ww[NS][KQ][MPT];
  __shared__ unsigned slow_mask[NS][KQ];
  __shared__ Cd anc[NS * kAnchors];
  __shared__ double xa[NS], xb[NS], cr[NS], ci[NS];
  const int j = threadIdx.x % kJ, kq = threadIdx.x / kJ;
  constexpr double lim = log_max<T>();
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t r = t / tiles_per_row, l0 = (t % tiles_per_row) * (kJ * kFwdK);
    const int64_t xoff = row_offset(batch, x, r), voff = row_offset(batch, v, r);
    const int64_t hoff = kHv ? row_offset(batch, h, r) : 0;
    auto coef = [&](int64_t n) {
      const Cx<T> c = cx_load<T>(v.data, voff + n * v.stride);
      Cd e{double(c.re), double(c.im)};
      if constexpr (kHv) {
        const Cx<T> g = cx_load<T>(h.data, hoff + n * h.stride);
        e = {double(g.re) * e.re + double(g.im) * e.im, double(g.re) * e.im - double(g.im) * e.re};
      }
      return e;
    };
    T tot_r[MPT], tot_i[MPT], mid_r[MPT], mid_i[MPT];
#pragma unroll
    for (int m = 0; m < MPT; ++m) tot_r[m] = tot_i[m] = mid_r[m] = mid_i[m] = 0;
    int slabs_in_mid = 0;
    for (int64_t s0 = 0; s0 < N; s0 += NS) {
      const int ns = static_cast<int>(N - s0 < NS ? N - s0 : NS);
      __syncthreads();  // the previous slab's tables are no longer read
      build_anchors<T>(x, xoff, s0, ns, l0, coef, xa, xb, anc);
      for (int i = threadIdx.x; i < ns; i += blockDim.x) {
        const Cd c = coef(s0 + i);
        cr[i] = c.re, ci[i] = c.im;
      }
      __syncthreads();
      for (int i = threadIdx.x; i < ns * kJ; i += blockDim.x) {
        const int n = i / kJ, jj = i % kJ;
        const Cd e = t_entry(anc + n * kAnchors, jj);
        tt[n][jj] = V2{static_cast<T>(e.re), static_cast<T>(e.im)};
      }
      for (int i = threadIdx.x; i < ns * kFwdK; i += blockDim.x) {
        const int n = i / kFwdK, k = i % kFwdK;
        const Cd e = w_entry(anc + n * kAnchors, k);
        ww[n][k % KQ][k / KQ] = V2{static_cast<T>(e.re), static_cast<T>(e.im)};
      }
      for (int i = threadIdx.x; i < ns * KQ; i += blockDim.x) {
        // The overflow rule of the CPU's task_tables, for the blocks k = q + KQ m.
        const int n = i / KQ, q = i % KQ;
        const double a = xa[n], tail = a * double(kJ - 1);
        const bool finite = isfinite(a) && isfinite(xb[n]);
        const double logc = log(hypot(cr[n], ci[n]));
        unsigned mask = 0;
        for (int m = 0; m < MPT; ++m) {
          const double lb = double(l0 + int64_t(kJ) * (q + KQ * m));
          const double top = logc + a * lb + (tail > 0 ? tail : 0.0);
          if (!(finite && top < lim && tail < lim)) mask |= 1u << m;
        }
        slow_mask[n][q] = mask;
      }
      __syncthreads();
      T acc_r[MPT], acc_i[MPT];
#pragma unroll
      for (int m = 0; m < MPT; ++m) acc_r[m] = acc_i[m] = 0;
      for (int n = 0; n < ns; ++n) {
        const V2 e = tt[n][j];
        const V2* w = ww[n][kq];
        const unsigned sm = slow_mask[n][kq];  // uniform over a warp (same kq)
        if (sm == 0) {
#pragma unroll
          for (int m = 0; m < MPT; ++m) {
            const V2 a = w[m];  // two FMAs into the sum per part (no separate product)
            acc_r[m] = fma(a.x, e.x, fma(-a.y, e.y, acc_r[m]));
            if constexpr (!kReal) acc_i[m] = fma(a.x, e.y, fma(a.y, e.x, acc_i[m]));
          }
          continue;
        }
#pragma unroll
        for (int m = 0; m < MPT; ++m) {
          if (sm >> m & 1) {
            double re, im;
            const int64_t l = l0 + int64_t(kJ) * (kq + KQ * m) + j;
            slow_term(cr[n], ci[n], xa[n], xb[n], double(l), re, im);
            acc_r[m] += static_cast<T>(re);
            if constexpr (!kReal) acc_i[m] += static_cast<T>(im);
          } else {
            const V2 a = w[m];  // two FMAs into the sum per part (no separate product)
            acc_r[m] = fma(a.x, e.x, fma(-a.y, e.y, acc_r[m]));
            if constexpr (!kReal) acc_i[m] = fma(a.x, e.y, fma(a.y, e.x, acc_i[m]));
          }
        }
      }
#pragma unroll
      for (int m = 0; m < MPT; ++m) mid_r[m] += acc_r[m], mid_i[m] += acc_i[m];
      if (++slabs_in_mid == 256 / NS) {  // 256 poles: the CPU's middle level
#pragma unroll
        for (int m = 0; m < MPT; ++m) {
          tot_r[m] += mid_r[m], tot_i[m] += mid_i[m];
          mid_r[m] = mid_i[m] = 0;
        }
        slabs_in_mid = 0;
      }
    }
#pragma unroll
    for (int m = 0; m < MPT; ++m) {
      const int64_t l = l0 + int64_t(kJ) * (kq + KQ * m) + j;
      if (l >= L) continue;
      const T re = scale * (tot_r[m] + mid_r[m]);
      if constexpr (kReal) {
        out[r * L + l] = re;
      } else {
        const T im = scale * (tot_i[m] + mid_i[m]);
        out[2 * (r * L + l)] = re;
        out[2 * (r * L + l) + 1] = conj_out ? -im : im;
      }
    }
  }
}

template <typename T, bool kReal, bool kHv>
void launch_forward(const Batch& batch, int64_t N, int64_t L, const In& x, const In& v,
                    const In& h, T* out, T scale, bool conj_out, cudaStream_t st, const char* op) {
  const int64_t rows = batch.rows();
  if (rows == 0 || L == 0) return;
  const int64_t per_row = ceil_div(L, kJ * kFwdK), tiles = rows * per_row;
  vandermonde_fwd_kernel<T, kReal, kHv><<<grid_for(tiles, 1), kThreads, 0, st>>>(
      batch, N, L, x, v, h, out, scale, conj_out, per_row, tiles);
  SSMKIT_CUDA_CHECK_LAUNCH(op);
}

// ---- reductions: P_n, Q_n per (row, chunk) into partial[(r * chunks + c) * N + n][4] ----

template <typename T, bool kRealU, bool kQ>
__global__ void __launch_bounds__(kThreads)
    vandermonde_reduce_kernel(Batch batch, int64_t N, int64_t L, In x, In u, T u_scale, bool u_conj,
                              T* partial, int64_t chunks, int64_t tasks) {
  constexpr int NS = red_slab<T>();
  constexpr int G = kThreads / NS;  // j-groups
  constexpr int JPT = kJ / G;       // j per thread
  constexpr int kChunk = kJ * kRedK;
  __shared__ T ur[kRedK][kJ], ui[kRealU ? 1 : kRedK][kJ];
  __shared__ T tr[kJ][NS], ti[kJ][NS];
  __shared__ T wr[kRedK][NS], wi[kRedK][NS], lwr[kQ ? kRedK : 1][NS], lwi[kQ ? kRedK : 1][NS];
  __shared__ Cd anc[NS * kAnchors];
  __shared__ double xa[NS], xb[NS];
  __shared__ T red[G][NS][4];
  const int nl_ = threadIdx.x % NS, jg = threadIdx.x / NS;
  auto one = [](int64_t) { return Cd{1, 0}; };
  for (int64_t t = blockIdx.x; t < tasks; t += gridDim.x) {
    const int64_t r = t / chunks, c = t % chunks, l0 = c * kChunk;
    // Blocks of 64 that hold some l < L: past them W could overflow (Re x > 0), and
    // Inf times the zero padding of u would be NaN. (The CPU builds only these too.)
    const int nblk = static_cast<int>(ceil_div(L - l0 < kChunk ? L - l0 : kChunk, kJ));
    const int64_t xoff = row_offset(batch, x, r), uoff = row_offset(batch, u, r);
    __syncthreads();  // the previous task's shared arrays are no longer read
    for (int i = threadIdx.x; i < kChunk; i += blockDim.x) {
      const int64_t l = l0 + i;
      T a = 0, b = 0;
      if (l < L) {
        if constexpr (kRealU) {
          a = static_cast<const T*>(u.data)[uoff + l * u.stride];
        } else {
          const Cx<T> q = cx_load<T>(u.data, uoff + l * u.stride);
          a = q.re, b = u_conj ? -q.im : q.im;
        }
      }
      ur[i / kJ][i % kJ] = u_scale * a;
      if constexpr (!kRealU) ui[i / kJ][i % kJ] = u_scale * b;
    }
    for (int64_t s0 = 0; s0 < N; s0 += NS) {
      const int ns = static_cast<int>(N - s0 < NS ? N - s0 : NS);
      __syncthreads();
      build_anchors<T>(x, xoff, s0, ns, l0, one, xa, xb, anc);
      __syncthreads();
      for (int i = threadIdx.x; i < ns * kJ; i += blockDim.x) {
        const int n = i / kJ, jj = i % kJ;
        const Cd e = t_entry(anc + n * kAnchors, jj);
        tr[jj][n] = static_cast<T>(e.re), ti[jj][n] = static_cast<T>(e.im);
      }
      for (int i = threadIdx.x; i < ns * kRedK; i += blockDim.x) {
        const int n = i / kRedK, k = i % kRedK;
        const Cd e = w_entry(anc + n * kAnchors, k);
        wr[k][n] = static_cast<T>(e.re), wi[k][n] = static_cast<T>(e.im);
        if constexpr (kQ) {
          const double lb = double(l0 + int64_t(kJ) * k);
          lwr[k][n] = static_cast<T>(lb * e.re), lwi[k][n] = static_cast<T>(lb * e.im);
        }
      }
      __syncthreads();
      T pq[4] = {0, 0, 0, 0};
      if (nl_ < ns) {
        T ar[JPT], ai[JPT], br[JPT], bi[JPT];
#pragma unroll
        for (int q = 0; q < JPT; ++q) ar[q] = ai[q] = br[q] = bi[q] = 0;
        for (int k = 0; k < nblk; ++k) {
          const T w_r = wr[k][nl_], w_i = wi[k][nl_];
          T lw_r = 0, lw_i = 0;
          if constexpr (kQ) lw_r = lwr[k][nl_], lw_i = lwi[k][nl_];
#pragma unroll
          for (int q = 0; q < JPT; ++q) {
            const int jj = jg * JPT + q;
            const T xr = ur[k][jj];
            if constexpr (kRealU) {
              ar[q] += w_r * xr, ai[q] += w_i * xr;
              if constexpr (kQ) br[q] += lw_r * xr, bi[q] += lw_i * xr;
            } else {
              const T xi = ui[k][jj];
              ar[q] = fma(w_r, xr, fma(-w_i, xi, ar[q]));
              ai[q] = fma(w_r, xi, fma(w_i, xr, ai[q]));
              if constexpr (kQ) {
                br[q] = fma(lw_r, xr, fma(-lw_i, xi, br[q]));
                bi[q] = fma(lw_r, xi, fma(lw_i, xr, bi[q]));
              }
            }
          }
        }
#pragma unroll
        for (int q = 0; q < JPT; ++q) {
          const int jj = jg * JPT + q;
          const T er = tr[jj][nl_], ei = ti[jj][nl_];
          pq[0] += er * ar[q] - ei * ai[q];
          pq[1] += er * ai[q] + ei * ar[q];
          if constexpr (kQ) {
            const T cr = br[q] + T(jj) * ar[q], ci = bi[q] + T(jj) * ai[q];
            pq[2] += er * cr - ei * ci;
            pq[3] += er * ci + ei * cr;
          }
        }
      }
#pragma unroll
      for (int k = 0; k < 4; ++k) red[jg][nl_][k] = pq[k];
      __syncthreads();
      if (threadIdx.x < ns) {
        T s[4] = {0, 0, 0, 0};
        for (int g = 0; g < G; ++g)
          for (int k = 0; k < 4; ++k) s[k] += red[g][threadIdx.x][k];
        T* o = partial + ((r * chunks + c) * N + s0 + threadIdx.x) * 4;
        for (int k = 0; k < 4; ++k) o[k] = s[k];
      }
    }
  }
}

// What the finish kernel writes from the summed P, Q of (row, n).
enum class Finish { backward, transpose, transpose_backward };

template <typename T, Finish kF>
__global__ void vandermonde_finish_kernel(Batch batch, int64_t rows, int64_t N, In v, In h,
                                          const T* partial, int64_t chunks, T* o1, T* o2) {
  for (int64_t i = grid_thread(); i < rows * N; i += grid_stride()) {
    const int64_t r = i / N, n = i % N;
    T s[4] = {0, 0, 0, 0};
    add_chunks(partial, chunks, N, r, n, s);
    const Cx<T> vv = cx_load<T>(v.data, row_offset(batch, v, r) + n * v.stride);
    if constexpr (kF == Finish::backward) {  // dv = conj(P), dx = conj(v Q)
      if (o1) cx_store<T>(o1, i, {s[0], -s[1]});
      if (o2) cx_store<T>(o2, i, {vv.re * s[2] - vv.im * s[3], -(vv.re * s[3] + vv.im * s[2])});
    } else if constexpr (kF == Finish::transpose) {  // out = v P
      cx_store<T>(o1, i, {vv.re * s[0] - vv.im * s[1], vv.re * s[1] + vv.im * s[0]});
    } else {  // dv = h conj(P), dx = h conj(v Q)
      const Cx<T> g = cx_load<T>(h.data, row_offset(batch, h, r) + n * h.stride);
      if (o1) cx_store<T>(o1, i, {g.re * s[0] + g.im * s[1], g.im * s[0] - g.re * s[1]});
      if (o2) {
        const T zr = vv.re * s[2] - vv.im * s[3], zi = vv.re * s[3] + vv.im * s[2];
        cx_store<T>(o2, i, {g.re * zr + g.im * zi, g.im * zr - g.re * zi});
      }
    }
  }
}

// Sums P (and Q when kQ) of u over l, then the finish kernel. u is scaled by u_scale
// and conjugated when u_conj (complex u only).
template <typename T, bool kRealU, bool kQ, Finish kF>
void reduce(const Batch& batch, int64_t N, int64_t L, const In& x, const In& u, T u_scale,
            bool u_conj, const In& v, const In& h, T* o1, T* o2, cudaStream_t st, const char* op) {
  const int64_t rows = batch.rows();
  if (rows == 0 || N == 0) return;
  const int64_t chunks = ceil_div(L, kJ * kRedK), tasks = rows * chunks;
  Scratch partial(sizeof(T) * 4 * tasks * N, st, op);
  if (tasks > 0) {
    vandermonde_reduce_kernel<T, kRealU, kQ><<<grid_for(tasks, 1), kThreads, 0, st>>>(
        batch, N, L, x, u, u_scale, u_conj, partial.as<T>(), chunks, tasks);
    SSMKIT_CUDA_CHECK_LAUNCH(op);
  }
  vandermonde_finish_kernel<T, kF><<<grid_for(rows * N, 256), 256, 0, st>>>(
      batch, rows, N, v, h, partial.as<T>(), chunks, o1, o2);
  SSMKIT_CUDA_CHECK_LAUNCH(op);
}

template <typename T>
void forward_t(const VandermondeParams& p, cudaStream_t st) {
  const char* op = "vandermonde";
  if (p.N == 0) {  // empty sum
    const size_t n = p.batch.rows() * p.L * (p.conj_pairs ? 1 : 2);
    if (n) SSMKIT_CUDA_CHECK(cudaMemsetAsync(p.out, 0, sizeof(T) * n, st), op);
    return;
  }
  SSMKIT_BOOL_SWITCH(p.conj_pairs, kReal,  // 2 Re(...) with conjugate pairs
                     launch_forward<T, kReal, false>(p.batch, p.N, p.L, p.x, p.v, p.v,
                                                     static_cast<T*>(p.out), T(kReal ? 2 : 1),
                                                     false, st, op));
}

// dv = conj(P), dx = conj(v Q) with u = 2 grad (real output) or conj(grad) (complex).
template <typename T, bool kRealU>
void backward_t(const VandermondeBackwardParams& p, cudaStream_t st) {
  const char* op = "vandermonde_backward";
  if (!p.dv && !p.dx) return;
  SSMKIT_BOOL_SWITCH(p.dx != nullptr, kQ,  // Q only for dx
                     reduce<T, kRealU, kQ, Finish::backward>(
                         p.batch, p.N, p.L, p.x, p.grad, kRealU ? T(2) : T(1), true, p.v, p.v,
                         static_cast<T*>(p.dv), static_cast<T*>(p.dx), st, op));
}

template <typename T, bool kRealU>
void transpose_t(const VandermondeTransposeParams& p, cudaStream_t st) {
  reduce<T, kRealU, false, Finish::transpose>(p.batch, p.N, p.L, p.x, p.u, T(1), false, p.v, p.v,
                                              static_cast<T*>(p.out), nullptr, st,
                                              "vandermonde_transpose");
}

// dv = H conj(P), dx = H conj(v Q); du = conj(sum_n conj(H_n) v_n E[n, l]) (its real
// part when u is real).
template <typename T, bool kRealU>
void transpose_backward_t(const VandermondeTransposeBackwardParams& p, cudaStream_t st) {
  const char* op = "vandermonde_transpose_backward";
  if (p.dv || p.dx)
    SSMKIT_BOOL_SWITCH(p.dx != nullptr, kQ,  // Q only for dx
                       reduce<T, kRealU, kQ, Finish::transpose_backward>(
                           p.batch, p.N, p.L, p.x, p.u, T(1), false, p.v, p.grad,
                           static_cast<T*>(p.dv), static_cast<T*>(p.dx), st, op));
  if (p.du) {
    if (p.N == 0) {
      const size_t n = p.batch.rows() * p.L * (kRealU ? 1 : 2);
      if (n) SSMKIT_CUDA_CHECK(cudaMemsetAsync(p.du, 0, sizeof(T) * n, st), op);
      return;
    }
    launch_forward<T, kRealU, true>(p.batch, p.N, p.L, p.x, p.v, p.grad, static_cast<T*>(p.du),
                                    T(1), true, st, op);
  }
}

}  // namespace

// Real u and gradients with conjugate pairs.
void vandermonde_cuda(const VandermondeParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, forward_t<T>(p, as_stream(s)));
}
void vandermonde_backward_cuda(const VandermondeBackwardParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.conj_pairs, kRealU, backward_t<T, kRealU>(p, as_stream(s))));
}
void vandermonde_transpose_cuda(const VandermondeTransposeParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.u_real, kRealU, transpose_t<T, kRealU>(p, as_stream(s))));
}
void vandermonde_transpose_backward_cuda(const VandermondeTransposeBackwardParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T,
                      SSMKIT_BOOL_SWITCH(p.u_real, kRealU, transpose_backward_t<T, kRealU>(p, as_stream(s))));
}

}  // namespace ssmkit
