// Log-Vandermonde product kernels, forward, transpose and backward (definitions in
// ssmkit.h and python/ssmkit/ops/reference.py), compiled once per instruction set into
// namespace ssmkit::<isa> (cmake/SsmkitCPU.cmake).
//
// Scheme: E[n, l] = exp(x_n l) is never evaluated term by term. A task is one row and one
// chunk of kVChunk values of l starting at l0; the chunk is cut into blocks of kVB, and
// with l = l0 + kVB k + j (j < kVB):
//   E[n, l] = W[n, k] * T[n, j],   W[n, k] = exp(x_n (l0 + kVB k)),   T[n, j] = exp(x_n j).
// W and T are formed in double precision: exp(x_n l0) is one exact complex exp per chunk
// (a*l0 and b*l0 corrected by their FMA residual, so the phase at l0 up to 2^20 is not
// rounded); T by at most kVB-1 successive products of exact exp(x_n), W by at most
// kVChunk/kVB-1 products of exact exp(kVB x_n). The drift of those products is bounded
// (under 100 ulp of double, 2e-14) and never carries over from one chunk to the next.
// A term then costs one complex multiply-add in the kernel's precision (half of one when
// only the real part is needed).
//
// Forward   out[l] = sum_n c_n E[n, l]: vectorised over j, c_n W[n, k] broadcast; sums over
//           n in blocks of 16, then 16 blocks, then the rest (error grows like log N).
// Reduction P_n = sum_l u_l E[n, l] and Q_n = sum_l l u_l E[n, l]: vectorised over j,
//           A_j = sum_k W[n, k] u[k, j],  B_j = sum_k (l0 + kVB k) W[n, k] u[k, j],
//           P_n = sum_j T[n, j] A_j,      Q_n = sum_j T[n, j] (B_j + j A_j);
//           per-chunk partials are added pairwise in a fixed order (deterministic).
//
// Overflow (forward): with Re(x) > 0 a factor can overflow while the term does not, and
// Inf times a zero table component is NaN in a complex multiply. A (n, block) where
// |c_n| max|E| could come within e^2 of the type's range, or where x_n is not finite, is
// evaluated term by term in double as magnitude times unit phase,
// (Re, Im)(c e^{i b l}) * e^{a l/2} * e^{a l/2}, so a term is Inf exactly when it
// overflows, and NaN only from 0 * Inf or NaN inputs, as in the reference.
#include <cmath>
#include <cstdint>
#include <new>

#include "common.h"
#include "simd.h"
#include "ssmkit/cpu_kernels.h"
#include "ssmkit/static_switch.h"

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

constexpr int64_t kVB = 64;                   // l per block: the length of T[n, :]
constexpr int64_t kVChunk = 2048;             // l per task (fixed: results do not depend
constexpr int64_t kVBlocks = kVChunk / kVB;   // on the thread count)
constexpr int64_t kVSum = 16;                 // n per inner accumulation block

template <typename T>
constexpr double log_max() {  // log of the largest finite T, less a margin of e^2
  return (sizeof(T) == 4 ? 88.7228391 : 709.782712) - 2.0;
}

// exp(x l) in double, x = a + ib, with a*l and b*l error-free (FMA residuals).
inline void cexp_at(double a, double b, double l, double& re, double& im) {
  const double p = a * l, pe = std::fma(a, l, -p);
  const double q = b * l, qe = std::fma(b, l, -q);
  const double c = std::cos(q), s = std::sin(q);
  const double m = std::exp(p) * (1 + pe);
  re = m * (c - qe * s);
  im = m * (s + qe * c);
}

// One term c exp(x l) as magnitude times unit phase (see the overflow note above).
// Not inlined: with -ffp-contract=fast the last product would fuse with the caller's sum
// into one FMA, which never overflows, and Inf - Inf between terms would be lost.
__attribute__((noinline)) void slow_term(double cr, double ci, double a, double b, double l, double& re,
                      double& im) {
  const double p = a * l, pe = std::fma(a, l, -p);
  const double q = b * l, qe = std::fma(b, l, -q);
  const double c = std::cos(q), s = std::sin(q);
  const double ur = c - qe * s, ui = s + qe * c;
  const double h = std::exp(0.5 * p) * (1 + 0.5 * pe);
  re = (cr * ur - ci * ui) * h * h;
  im = (cr * ui + ci * ur) * h * h;
}

// Views into a thread's scratch. Per row: a, b, e64, c, logc, T. Per task: the rest.
template <typename T>
struct VTables {
  double *a, *b;        // a, b: (N,) real and imaginary parts of x
  double *e1r, *e1i;    // e1: (N,) exp(x)
  double *e64r, *e64i;  // e64: (N,) exp(kVB x)
  double *cr, *ci;      // c: (N,) forward coefficients
  double* logc;         // logc: (N,) log |c|
  double *curr, *curi;  // cur: (N,) running W
  T *tr, *ti;           // T: (N, kVB)
  T *wr, *wi;           // W: (N, kVBlocks), times c in the forward
  T *lwr, *lwi;         // (l0 + kVB k) W: (N, kVBlocks), reduction only
  unsigned char* slow;  // slow: (N, kVBlocks), forward only

  static int64_t doubles(int64_t Np) { return 11 * Np; }
  static int64_t reals(int64_t Np) { return 2 * Np * kVB + 4 * Np * kVBlocks; }
  void bind(double* d, T* t, unsigned char* f, int64_t Np) {
    a = d, b = a + Np, e1r = b + Np, e1i = e1r + Np, e64r = e1i + Np, e64i = e64r + Np;
    cr = e64i + Np, ci = cr + Np, logc = ci + Np, curr = logc + Np, curi = curr + Np;
    tr = t, ti = tr + Np * kVB, wr = ti + Np * kVB, wi = wr + Np * kVBlocks;
    lwr = wi + Np * kVBlocks, lwi = lwr + Np * kVBlocks;
    slow = f;
  }
};

template <typename T>
struct VScratch {
  Scratch<double> d;
  Scratch<T> t;
  Scratch<unsigned char> f;
  VTables<T> tab;
  int64_t row = -1;
  explicit VScratch(int64_t N, int64_t extra)
      // extra: reals after the tables, for the reduction's u chunk
      : d(VTables<T>::doubles(round_up(N, 8))),
        t(VTables<T>::reals(round_up(N, 8)) + extra),
        f(round_up(N, 8) * kVBlocks) {
    if (ok()) tab.bind(d.p, t.p, f.p, round_up(N, 8));
  }
  bool ok() const { return d.ok() && t.ok() && f.ok(); }
};

// Reads x of one row and forms e1, e64 and the table T.
template <typename T>
void row_tables(const In& x, int64_t off, int64_t N, VTables<T>& t) {
  const T* xp = static_cast<const T*>(x.data) + 2 * off;
  for (int64_t n = 0; n < N; ++n) {
    t.a[n] = xp[2 * n * x.stride];
    t.b[n] = xp[2 * n * x.stride + 1];
    cexp_at(t.a[n], t.b[n], 1.0, t.e1r[n], t.e1i[n]);
    cexp_at(t.a[n], t.b[n], double(kVB), t.e64r[n], t.e64i[n]);
    t.curr[n] = 1, t.curi[n] = 0;
  }
  // T[n, j] = e1^j by successive products, j outer so the n loop vectorises.
  for (int64_t j = 0; j < kVB; ++j) {
    for (int64_t n = 0; n < N; ++n) {
      const double r = t.curr[n], i = t.curi[n];
      t.tr[n * kVB + j] = static_cast<T>(r);
      t.ti[n * kVB + j] = static_cast<T>(i);
      t.curr[n] = r * t.e1r[n] - i * t.e1i[n];
      t.curi[n] = r * t.e1i[n] + i * t.e1r[n];
    }
  }
}

// W[n, k] for the chunk at l0 (nblk blocks), times c when kCoef, and (l0 + kVB k) W when
// kLw. With kCoef, also the slow flags of the overflow note.
template <typename T, bool kCoef, bool kLw>
void task_tables(int64_t N, int64_t l0, int64_t nblk, VTables<T>& t) {
  for (int64_t n = 0; n < N; ++n) {
    double br, bi;
    cexp_at(t.a[n], t.b[n], double(l0), br, bi);
    if constexpr (kCoef) {
      t.curr[n] = t.cr[n] * br - t.ci[n] * bi;
      t.curi[n] = t.cr[n] * bi + t.ci[n] * br;
    } else {
      t.curr[n] = br, t.curi[n] = bi;
    }
  }
  for (int64_t k = 0; k < nblk; ++k) {
    const double lb = double(l0 + kVB * k);
    for (int64_t n = 0; n < N; ++n) {
      const double r = t.curr[n], i = t.curi[n];
      t.wr[n * kVBlocks + k] = static_cast<T>(r);
      t.wi[n * kVBlocks + k] = static_cast<T>(i);
      if constexpr (kLw) {
        t.lwr[n * kVBlocks + k] = static_cast<T>(lb * r);
        t.lwi[n * kVBlocks + k] = static_cast<T>(lb * i);
      }
      t.curr[n] = r * t.e64r[n] - i * t.e64i[n];
      t.curi[n] = r * t.e64i[n] + i * t.e64r[n];
    }
  }
  if constexpr (kCoef) {
    constexpr double lim = log_max<T>();
    for (int64_t n = 0; n < N; ++n) {
      const double a = t.a[n], tail = a * double(kVB - 1);
      const bool finite = std::isfinite(a) && std::isfinite(t.b[n]);
      for (int64_t k = 0; k < nblk; ++k) {
        const double top = t.logc[n] + a * double(l0 + kVB * k) + (tail > 0 ? tail : 0.0);
        t.slow[n * kVBlocks + k] = !(finite && top < lim && tail < lim);
      }
    }
  }
}

// out[l] = sum_n c_n E[n, l] for l in [l0, l0 + nl). kReal: out is real, scale * Re(...);
// otherwise complex, conjugated when conj_out. out points at l0.
template <typename T, bool kReal>
void forward_chunk(const VTables<T>& t, int64_t N, int64_t l0, int64_t nl, T scale,
                   bool conj_out, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int kR0 = kReal ? 8 : 4;  // vectors of l in registers (x2 when complex)
  constexpr int kR = kR0 * W > kVB ? int(kVB / W) : kR0;
  constexpr int64_t kTile = kR * W;
  const int64_t nblk = ceil_div(nl, kVB);
  for (int64_t k = 0; k < nblk; ++k) {
    const int64_t jn = imin(kVB, nl - k * kVB);
    for (int64_t j0 = 0; j0 < jn; j0 += kTile) {
      V tot_r[kR], tot_i[kR];
      for (int r = 0; r < kR; ++r) tot_r[r] = tot_i[r] = S::zero();
      for (int64_t n00 = 0; n00 < N; n00 += kVSum * kVSum) {
        const int64_t n01 = imin(N, n00 + kVSum * kVSum);
        V mid_r[kR], mid_i[kR];
        for (int r = 0; r < kR; ++r) mid_r[r] = mid_i[r] = S::zero();
        for (int64_t n0 = n00; n0 < n01; n0 += kVSum) {
          const int64_t n1 = imin(n01, n0 + kVSum);
          V acc_r[kR], acc_i[kR];
          for (int r = 0; r < kR; ++r) acc_r[r] = acc_i[r] = S::zero();
          for (int64_t n = n0; n < n1; ++n) {
            const int64_t nk = n * kVBlocks + k;
            if (t.slow[nk]) {
              for (int r = 0; r < kR; ++r)
                for (int i = 0; i < W; ++i) {
                  const int64_t j = j0 + r * W + i;
                  if (j >= jn) break;
                  double re, im;
                  slow_term(t.cr[n], t.ci[n], t.a[n], t.b[n], double(l0 + k * kVB + j), re, im);
                  acc_r[r][i] += static_cast<T>(re);
                  if constexpr (!kReal) acc_i[r][i] += static_cast<T>(im);
                }
              continue;
            }
            const V wr = S::splat(t.wr[nk]), wi = S::splat(t.wi[nk]);
            const T* tr = t.tr + n * kVB + j0;
            const T* ti = t.ti + n * kVB + j0;
#pragma GCC unroll 8
            for (int r = 0; r < kR; ++r) {
              const V er = S::load(tr + r * W), ei = S::load(ti + r * W);
              acc_r[r] += wr * er - wi * ei;
              if constexpr (!kReal) acc_i[r] += wr * ei + wi * er;
            }
          }
          for (int r = 0; r < kR; ++r) mid_r[r] += acc_r[r], mid_i[r] += acc_i[r];
        }
        for (int r = 0; r < kR; ++r) tot_r[r] += mid_r[r], tot_i[r] += mid_i[r];
      }
      const int64_t jend = imin(jn, j0 + kTile);
      T* o = kReal ? out + (k * kVB) : out + 2 * (k * kVB);
      for (int64_t j = j0; j < jend; ++j) {
        const int r = int((j - j0) / W), i = int((j - j0) % W);
        if constexpr (kReal) {
          o[j] = scale * tot_r[r][i];
        } else {
          o[2 * j] = scale * tot_r[r][i];
          o[2 * j + 1] = conj_out ? -scale * tot_i[r][i] : scale * tot_i[r][i];
        }
      }
    }
  }
}

// Partial sums of one chunk for one n: P = sum_l u_l E[n, l] and, when kQ,
// Q = sum_l l u_l E[n, l]. u: (nblk, kVB) zero-padded, ui unused when kRealU.
template <typename T, bool kRealU, bool kQ>
void reduce_chunk(const VTables<T>& t, int64_t n, int64_t nblk, const T* ur, const T* ui,
                  const T* jidx, T* pq /* (4,) P re, im, Q re, im */) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int kR = 2 * W > kVB ? int(kVB / W) : 2;
  V pr = S::zero(), pi = S::zero(), qr = S::zero(), qi = S::zero();
  const T* wr = t.wr + n * kVBlocks;
  const T* wi = t.wi + n * kVBlocks;
  const T* lwr = t.lwr + n * kVBlocks;
  const T* lwi = t.lwi + n * kVBlocks;
  for (int64_t j0 = 0; j0 < kVB; j0 += kR * W) {
    V ar[kR], ai[kR], br[kR], bi[kR];
    for (int r = 0; r < kR; ++r) ar[r] = ai[r] = br[r] = bi[r] = S::zero();
    for (int64_t k = 0; k < nblk; ++k) {
      const V w_r = S::splat(wr[k]), w_i = S::splat(wi[k]);
      V lw_r = S::zero(), lw_i = S::zero();
      if constexpr (kQ) lw_r = S::splat(lwr[k]), lw_i = S::splat(lwi[k]);
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const V xr = S::load(ur + k * kVB + j0 + r * W);
        if constexpr (kRealU) {
          ar[r] += w_r * xr;
          ai[r] += w_i * xr;
          if constexpr (kQ) br[r] += lw_r * xr, bi[r] += lw_i * xr;
        } else {
          const V xi = S::load(ui + k * kVB + j0 + r * W);
          ar[r] += w_r * xr - w_i * xi;
          ai[r] += w_r * xi + w_i * xr;
          if constexpr (kQ) {
            br[r] += lw_r * xr - lw_i * xi;
            bi[r] += lw_r * xi + lw_i * xr;
          }
        }
      }
    }
    for (int r = 0; r < kR; ++r) {
      const V er = S::load(t.tr + n * kVB + j0 + r * W);
      const V ei = S::load(t.ti + n * kVB + j0 + r * W);
      pr += er * ar[r] - ei * ai[r];
      pi += er * ai[r] + ei * ar[r];
      if constexpr (kQ) {
        const V jv = S::load(jidx + j0 + r * W);
        const V cr = br[r] + jv * ar[r], ci = bi[r] + jv * ai[r];
        qr += er * cr - ei * ci;
        qi += er * ci + ei * cr;
      }
    }
  }
  pq[0] = S::hsum(pr), pq[1] = S::hsum(pi), pq[2] = S::hsum(qr), pq[3] = S::hsum(qi);
}

// Reads the real operand a (strides in real elements): n values of row `off` from i0.
template <typename T>
inline void load_real_row(const In& a, int64_t off, int64_t i0, int64_t n, T* re) {
  const T* base = static_cast<const T*>(a.data) + off + i0 * a.stride;
  for (int64_t i = 0; i < n; ++i) re[i] = base[i * a.stride];
}

// Forward driver: out[r, l] = sum_n c[r, n] E[r, n, l], with coef(r, cr, ci) filling the
// row's coefficients in double. kReal: out (rows, L) real = scale Re(...); else complex
// (rows, L), conjugated when conj_out.
template <typename T, bool kReal, typename Coef>
void vandermonde_forward_impl(const Batch& batch, const In& x, int64_t N, int64_t L, T scale,
                              bool conj_out, Coef coef, T* out) {
  const int64_t rows = batch.rows();
  if (rows == 0 || L == 0) return;
  const int64_t chunks = ceil_div(L, kVChunk);
  parallel_tasks(
      rows * chunks, rows * L * N, [&] { return VScratch<T>(N, 0); },
      [&](VScratch<T>& buf, int64_t task) {
        const int64_t r = task / chunks, l0 = (task % chunks) * kVChunk;
        const int64_t nl = imin(kVChunk, L - l0);
        VTables<T>& t = buf.tab;
        if (buf.row != r) {
          row_tables(x, row_offset(batch, x, r), N, t);
          coef(r, t.cr, t.ci);
          for (int64_t n = 0; n < N; ++n) t.logc[n] = std::log(std::hypot(t.cr[n], t.ci[n]));
          buf.row = r;
        }
        task_tables<T, true, false>(N, l0, ceil_div(nl, kVB), t);
        T* o = kReal ? out + r * L + l0 : out + 2 * (r * L + l0);
        forward_chunk<T, kReal>(t, N, l0, nl, scale, conj_out, o);
      });
}

// Reduction driver: for every row and n, P and Q (when kQ) of u, then
// finish(r, n, P, Q) with P, Q as (re, im) pairs. u is read by load_u(r, l0, nl, ur, ui).
template <typename T, bool kRealU, bool kQ, typename LoadU, typename Finish>
void vandermonde_reduce_impl(const Batch& batch, const In& x, int64_t N, int64_t L,
                             LoadU load_u, Finish finish) {
  const int64_t rows = batch.rows();
  if (rows == 0 || N == 0) return;
  const int64_t chunks = L > 0 ? ceil_div(L, kVChunk) : 0;
  Scratch<T> partial(rows * chunks * N * 4);  // (rows, chunks, N, 4)
  if (!partial.ok()) throw std::bad_alloc();
  if (chunks > 0) {
    parallel_tasks(
        rows * chunks, rows * L * N, [&] { return VScratch<T>(N, 3 * kVChunk); },
        [&](VScratch<T>& buf, int64_t task) {
          const int64_t r = task / chunks, c = task % chunks, l0 = c * kVChunk;
          const int64_t nl = imin(kVChunk, L - l0), nblk = ceil_div(nl, kVB);
          VTables<T>& t = buf.tab;
          T* ur = t.lwi + round_up(N, 8) * kVBlocks;  // the extra space after the tables
          T* ui = ur + kVChunk;
          T* jidx = ui + kVChunk;
          if (buf.row != r) {
            row_tables(x, row_offset(batch, x, r), N, t);
            buf.row = r;
          }
          for (int64_t j = 0; j < kVB; ++j) jidx[j] = T(j);
          load_u(r, l0, nl, ur, ui);
          for (int64_t l = nl; l < nblk * kVB; ++l) ur[l] = ui[l] = 0;
          task_tables<T, false, kQ>(N, l0, nblk, t);
          T* pq = partial.p + (r * chunks + c) * N * 4;
          for (int64_t n = 0; n < N; ++n)
            reduce_chunk<T, kRealU, kQ>(t, n, nblk, ur, ui, jidx, pq + 4 * n);
        });
  }
  // Pairwise sum over chunks, in place and in a fixed order.
#pragma omp parallel for schedule(static) if (rows * N * chunks > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    T* base = partial.p + r * chunks * N * 4;
    for (int64_t step = 1; step < chunks; step *= 2)
      for (int64_t c = 0; c + step < chunks; c += 2 * step)
        for (int64_t i = 0; i < N * 4; ++i) base[c * N * 4 + i] += base[(c + step) * N * 4 + i];
    for (int64_t n = 0; n < N; ++n) {
      const T zero4[4] = {0, 0, 0, 0};
      const T* s = chunks > 0 ? base + 4 * n : zero4;
      finish(r, n, s);
    }
  }
}

// Reads n complex values of one row of a into doubles.
template <typename T>
inline void row_to_double(const In& a, int64_t off, int64_t n, double* re, double* im) {
  const T* base = static_cast<const T*>(a.data) + 2 * off;
  for (int64_t i = 0; i < n; ++i) re[i] = base[2 * i * a.stride], im[i] = base[2 * i * a.stride + 1];
}

// The load_u of vandermonde_reduce_impl for the operand u: a row's chunk [l0, l0 + nl)
// as (re, im) times scale, conjugated when conj (real u: imaginary parts 0).
template <typename T, bool kRealU>
inline auto u_loader(const Batch& b, const In& u, bool conj, T scale) {
  return [&b, &u, conj, scale](int64_t r, int64_t l0, int64_t nl, T* ur, T* ui) {
    const int64_t off = row_offset(b, u, r);
    if (kRealU) {
      load_real_row(u, off, l0, nl, ur);
      for (int64_t l = 0; l < nl; ++l) ur[l] *= scale, ui[l] = 0;
    } else {
      split_row(u, off, l0, nl, nl, ur, ui);
      const T si = conj ? -scale : scale;
      for (int64_t l = 0; l < nl; ++l) ur[l] *= scale, ui[l] *= si;
    }
  };
}

// Element n of row r of the complex operand a, as (re, im).
template <typename T>
inline const T* element(const Batch& b, const In& a, int64_t r, int64_t n) {
  return static_cast<const T*>(a.data) + 2 * (row_offset(b, a, r) + n * a.stride);
}

template <typename T>
void vandermonde_t(const VandermondeParams& p) {
  if (p.N == 0) {  // empty sum
    zero_fill<T>(p.out, p.batch.rows() * p.L * (p.conj_pairs ? 1 : 2));
    return;
  }
  auto coef = [&](int64_t r, double* cr, double* ci) {
    row_to_double<T>(p.v, row_offset(p.batch, p.v, r), p.N, cr, ci);
  };
  SSMKIT_BOOL_SWITCH(p.conj_pairs, kReal,  // 2 Re(...) with conjugate pairs
                     vandermonde_forward_impl<T, kReal>(p.batch, p.x, p.N, p.L, T(kReal ? 2 : 1),
                                                        false, coef, static_cast<T*>(p.out)));
}

// dv = conj(P), dx = conj(v Q) with u = conj(grad) (complex output) or 2 grad (real).
template <typename T, bool kRealU, bool kQ>
void vandermonde_backward_t(const VandermondeBackwardParams& p) {
  T* dv = static_cast<T*>(p.dv);
  T* dx = static_cast<T*>(p.dx);
  auto finish = [&](int64_t r, int64_t n, const T* s) {
    const int64_t o = 2 * (r * p.N + n);
    if (dv) dv[o] = s[0], dv[o + 1] = -s[1];
    if (dx) {
      const T* v = element<T>(p.batch, p.v, r, n);
      dx[o] = v[0] * s[2] - v[1] * s[3];
      dx[o + 1] = -(v[0] * s[3] + v[1] * s[2]);
    }
  };
  vandermonde_reduce_impl<T, kRealU, kQ>(p.batch, p.x, p.N, p.L,
                                         u_loader<T, kRealU>(p.batch, p.grad, true, kRealU ? T(2) : T(1)), finish);
}

template <typename T, bool kRealU>
void vandermonde_backward_t(const VandermondeBackwardParams& p) {
  if (p.dv || p.dx) SSMKIT_BOOL_SWITCH(p.dx != nullptr, kQ, vandermonde_backward_t<T, kRealU, kQ>(p));
}

template <typename T, bool kRealU>
void vandermonde_transpose_t(const VandermondeTransposeParams& p) {
  T* out = static_cast<T*>(p.out);
  auto finish = [&](int64_t r, int64_t n, const T* s) {  // v P
    const T* v = element<T>(p.batch, p.v, r, n);
    const int64_t o = 2 * (r * p.N + n);
    out[o] = v[0] * s[0] - v[1] * s[1];
    out[o + 1] = v[0] * s[1] + v[1] * s[0];
  };
  vandermonde_reduce_impl<T, kRealU, false>(p.batch, p.x, p.N, p.L,
                                            u_loader<T, kRealU>(p.batch, p.u, false, T(1)), finish);
}

// dv = H conj(P), dx = H conj(v Q), du = conj(sum_n conj(H_n) v_n E[n, l]) (its real
// part when u is real).
template <typename T, bool kRealU, bool kQ>
void vandermonde_transpose_backward_s(const VandermondeTransposeBackwardParams& p) {
  T* dv = static_cast<T*>(p.dv);
  T* dx = static_cast<T*>(p.dx);
  auto finish = [&](int64_t r, int64_t n, const T* s) {
    const T* h = element<T>(p.batch, p.grad, r, n);
    const int64_t o = 2 * (r * p.N + n);
    if (dv) {
      dv[o] = h[0] * s[0] + h[1] * s[1];
      dv[o + 1] = h[1] * s[0] - h[0] * s[1];
    }
    if (dx) {
      const T* v = element<T>(p.batch, p.v, r, n);
      const T zr = v[0] * s[2] - v[1] * s[3], zi = v[0] * s[3] + v[1] * s[2];
      dx[o] = h[0] * zr + h[1] * zi;
      dx[o + 1] = h[1] * zr - h[0] * zi;
    }
  };
  vandermonde_reduce_impl<T, kRealU, kQ>(p.batch, p.x, p.N, p.L,
                                         u_loader<T, kRealU>(p.batch, p.u, false, T(1)), finish);
}

template <typename T, bool kRealU>
void vandermonde_transpose_backward_t(const VandermondeTransposeBackwardParams& p) {
  if (p.dv || p.dx)
    SSMKIT_BOOL_SWITCH(p.dx != nullptr, kQ, vandermonde_transpose_backward_s<T, kRealU, kQ>(p));
  if (p.du) {
    auto coef = [&](int64_t r, double* cr, double* ci) {  // conj(H) v
      row_to_double<T>(p.v, row_offset(p.batch, p.v, r), p.N, cr, ci);
      const T* h = static_cast<const T*>(p.grad.data) + 2 * row_offset(p.batch, p.grad, r);
      for (int64_t n = 0; n < p.N; ++n) {
        const double hr = h[2 * n * p.grad.stride], hi = h[2 * n * p.grad.stride + 1];
        const double vr = cr[n], vi = ci[n];
        cr[n] = hr * vr + hi * vi;
        ci[n] = hr * vi - hi * vr;
      }
    };
    T* du = static_cast<T*>(p.du);
    if (p.N == 0) {
      zero_fill<T>(du, (kRealU ? 1 : 2) * p.batch.rows() * p.L);
      return;
    }
    vandermonde_forward_impl<T, kRealU>(p.batch, p.x, p.N, p.L, T(1), true, coef, du);
  }
}
}  // namespace

// The entry points: the kernel for p's dtype and flags (real u and gradients with
// conjugate pairs).
void vandermonde(const VandermondeParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, vandermonde_t<T>(p));
}
void vandermonde_backward(const VandermondeBackwardParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.conj_pairs, kRealU, vandermonde_backward_t<T, kRealU>(p)));
}
void vandermonde_transpose(const VandermondeTransposeParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.u_real, kRealU, vandermonde_transpose_t<T, kRealU>(p)));
}
void vandermonde_transpose_backward(const VandermondeTransposeBackwardParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T,
                      SSMKIT_BOOL_SWITCH(p.u_real, kRealU, vandermonde_transpose_backward_t<T, kRealU>(p)));
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
