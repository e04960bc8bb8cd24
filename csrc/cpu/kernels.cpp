// The CPU kernels, compiled once per instruction set (cmake/SsmkitCPU.cmake sets
// SSMKIT_ISA and the matching -m flags). Everything here lives in namespace
// ssmkit::<isa> and, except the entry points at the bottom, in an anonymous
// namespace, so the copies for different instruction sets never mix.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ssmkit/ssmkit.h"
#include "ssmkit/cpu_kernels.h"

#ifndef SSMKIT_ISA
#error "SSMKIT_ISA must name the instruction set of this translation unit"
#endif

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {
#include "simd.h"
#include "common.h"
#include "cauchy.h"
#include "step.h"
#include "dplr.h"
#include "vandermonde.h"

template <typename T>
void cauchy_dispatch(const CauchyParams& p) {
  if (p.conj_pairs)
    cauchy_forward_impl<T, true>(p);
  else
    cauchy_forward_impl<T, false>(p);
}

template <typename T, bool kConj>
void cauchy_backward_dispatch(const CauchyBackwardParams& p) {
  const bool need_s = p.dv || p.dw, need_t = p.dz != nullptr;
  if (need_s && need_t)
    cauchy_backward_impl<T, kConj, true, true>(p);
  else if (need_s)
    cauchy_backward_impl<T, kConj, true, false>(p);
  else if (need_t)
    cauchy_backward_impl<T, kConj, false, true>(p);
}

template <typename T>
void cauchy_backward_dispatch(const CauchyBackwardParams& p) {
  if (p.conj_pairs)
    cauchy_backward_dispatch<T, true>(p);
  else
    cauchy_backward_dispatch<T, false>(p);
}

// Reads n complex values of one row of a into doubles.
template <typename T>
inline void row_to_double(const In& a, int64_t off, int64_t n, double* re, double* im) {
  const T* base = static_cast<const T*>(a.data) + 2 * off;
  for (int64_t i = 0; i < n; ++i) re[i] = base[2 * i * a.stride], im[i] = base[2 * i * a.stride + 1];
}

// u of one row, chunk [l0, l0 + nl), as (re, im) times scale, conjugated when conj.
template <typename T>
inline void load_u_row(const Batch& b, const In& u, bool real, bool conj, T scale, int64_t r,
                       int64_t l0, int64_t nl, T* ur, T* ui) {
  const int64_t off = row_offset(b, u, r);
  if (real) {
    load_real_row(u, off, l0, nl, ur);
    for (int64_t l = 0; l < nl; ++l) ur[l] *= scale, ui[l] = 0;
  } else {
    split_row(u, off, l0, nl, nl, ur, ui);
    const T si = conj ? -scale : scale;
    for (int64_t l = 0; l < nl; ++l) ur[l] *= scale, ui[l] *= si;
  }
}

template <typename T>
void vandermonde_t(const VandermondeParams& p) {
  auto coef = [&](int64_t r, double* cr, double* ci) {
    row_to_double<T>(p.v, row_offset(p.batch, p.v, r), p.N, cr, ci);
  };
  T* out = static_cast<T*>(p.out);
  if (p.conj_pairs)
    vandermonde_forward_impl<T, true>(p.batch, p.x, p.N, p.L, T(2), false, coef, out);
  else
    vandermonde_forward_impl<T, false>(p.batch, p.x, p.N, p.L, T(1), false, coef, out);
}

// dv = conj(P), dx = conj(v Q) with u = conj(grad) (complex output) or 2 grad (real).
template <typename T, bool kRealU, bool kQ>
void vandermonde_backward_t(const VandermondeBackwardParams& p) {
  T* dv = static_cast<T*>(p.dv);
  T* dx = static_cast<T*>(p.dx);
  const int64_t N = p.N;
  auto load = [&](int64_t r, int64_t l0, int64_t nl, T* ur, T* ui) {
    load_u_row<T>(p.batch, p.grad, kRealU, true, kRealU ? T(2) : T(1), r, l0, nl, ur, ui);
  };
  auto finish = [&](int64_t r, int64_t n, const T* s) {
    if (dv) dv[2 * (r * N + n)] = s[0], dv[2 * (r * N + n) + 1] = -s[1];
    if (dx) {
      const T* v = static_cast<const T*>(p.v.data) + 2 * (row_offset(p.batch, p.v, r) + n * p.v.stride);
      dx[2 * (r * N + n)] = v[0] * s[2] - v[1] * s[3];
      dx[2 * (r * N + n) + 1] = -(v[0] * s[3] + v[1] * s[2]);
    }
  };
  vandermonde_reduce_impl<T, kRealU, kQ>(p.batch, p.x, N, p.L, load, finish);
}

template <typename T, bool kRealU>
void vandermonde_backward_t(const VandermondeBackwardParams& p) {
  if (p.dx)
    vandermonde_backward_t<T, kRealU, true>(p);
  else if (p.dv)
    vandermonde_backward_t<T, kRealU, false>(p);
}

template <typename T, bool kRealU>
void vandermonde_transpose_t(const VandermondeTransposeParams& p) {
  T* out = static_cast<T*>(p.out);
  const int64_t N = p.N;
  auto load = [&](int64_t r, int64_t l0, int64_t nl, T* ur, T* ui) {
    load_u_row<T>(p.batch, p.u, kRealU, false, T(1), r, l0, nl, ur, ui);
  };
  auto finish = [&](int64_t r, int64_t n, const T* s) {  // v P
    const T* v = static_cast<const T*>(p.v.data) + 2 * (row_offset(p.batch, p.v, r) + n * p.v.stride);
    out[2 * (r * N + n)] = v[0] * s[0] - v[1] * s[1];
    out[2 * (r * N + n) + 1] = v[0] * s[1] + v[1] * s[0];
  };
  vandermonde_reduce_impl<T, kRealU, false>(p.batch, p.x, N, p.L, load, finish);
}

// dv = H conj(P), dx = H conj(v Q), du = conj(sum_n conj(H_n) v_n E[n, l]) (its real
// part when u is real).
template <typename T, bool kRealU, bool kQ>
void vandermonde_transpose_backward_s(const VandermondeTransposeBackwardParams& p) {
  T* dv = static_cast<T*>(p.dv);
  T* dx = static_cast<T*>(p.dx);
  const int64_t N = p.N;
  auto load = [&](int64_t r, int64_t l0, int64_t nl, T* ur, T* ui) {
    load_u_row<T>(p.batch, p.u, kRealU, false, T(1), r, l0, nl, ur, ui);
  };
  auto finish = [&](int64_t r, int64_t n, const T* s) {
    const T* h = static_cast<const T*>(p.grad.data) + 2 * (row_offset(p.batch, p.grad, r) + n * p.grad.stride);
    if (dv) {
      dv[2 * (r * N + n)] = h[0] * s[0] + h[1] * s[1];
      dv[2 * (r * N + n) + 1] = h[1] * s[0] - h[0] * s[1];
    }
    if (dx) {
      const T* v = static_cast<const T*>(p.v.data) + 2 * (row_offset(p.batch, p.v, r) + n * p.v.stride);
      const T zr = v[0] * s[2] - v[1] * s[3], zi = v[0] * s[3] + v[1] * s[2];
      dx[2 * (r * N + n)] = h[0] * zr + h[1] * zi;
      dx[2 * (r * N + n) + 1] = h[1] * zr - h[0] * zi;
    }
  };
  vandermonde_reduce_impl<T, kRealU, kQ>(p.batch, p.x, N, p.L, load, finish);
}

template <typename T, bool kRealU>
void vandermonde_transpose_backward_t(const VandermondeTransposeBackwardParams& p) {
  if (p.dx)
    vandermonde_transpose_backward_s<T, kRealU, true>(p);
  else if (p.dv)
    vandermonde_transpose_backward_s<T, kRealU, false>(p);
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
      std::memset(du, 0, sizeof(T) * (kRealU ? 1 : 2) * p.batch.rows() * p.L);
      return;
    }
    vandermonde_forward_impl<T, kRealU>(p.batch, p.x, p.N, p.L, T(1), true, coef, du);
  }
}
}  // namespace

void vandermonde(const VandermondeParams& p) {
  if (p.N == 0) {  // empty sum
    const int64_t n = p.batch.rows() * p.L * (p.conj_pairs ? 1 : 2);
    if (p.dtype == DType::complex64) std::memset(p.out, 0, sizeof(float) * n);
    else std::memset(p.out, 0, sizeof(double) * n);
    return;
  }
  if (p.dtype == DType::complex64)
    vandermonde_t<float>(p);
  else
    vandermonde_t<double>(p);
}

void vandermonde_backward(const VandermondeBackwardParams& p) {
  if (p.dtype == DType::complex64) {
    if (p.conj_pairs) vandermonde_backward_t<float, true>(p);
    else vandermonde_backward_t<float, false>(p);
  } else {
    if (p.conj_pairs) vandermonde_backward_t<double, true>(p);
    else vandermonde_backward_t<double, false>(p);
  }
}

void vandermonde_transpose(const VandermondeTransposeParams& p) {
  if (p.dtype == DType::complex64) {
    if (p.u_real) vandermonde_transpose_t<float, true>(p);
    else vandermonde_transpose_t<float, false>(p);
  } else {
    if (p.u_real) vandermonde_transpose_t<double, true>(p);
    else vandermonde_transpose_t<double, false>(p);
  }
}

void vandermonde_transpose_backward(const VandermondeTransposeBackwardParams& p) {
  if (p.dtype == DType::complex64) {
    if (p.u_real) vandermonde_transpose_backward_t<float, true>(p);
    else vandermonde_transpose_backward_t<float, false>(p);
  } else {
    if (p.u_real) vandermonde_transpose_backward_t<double, true>(p);
    else vandermonde_transpose_backward_t<double, false>(p);
  }
}

void cauchy(const CauchyParams& p) {
  if (p.dtype == DType::complex64)
    cauchy_dispatch<float>(p);
  else
    cauchy_dispatch<double>(p);
}

void cauchy_backward(const CauchyBackwardParams& p) {
  if (p.dtype == DType::complex64)
    cauchy_backward_dispatch<float>(p);
  else
    cauchy_backward_dispatch<double>(p);
}

// Real arrays follow the complex dtype: float with complex64, double with complex128.
#define SSMKIT_BY_DTYPE(impl, p) \
  if ((p).dtype == DType::complex64) \
    impl<float>(p);                  \
  else                               \
    impl<double>(p);

void discretize(const DiscretizeParams& p) { SSMKIT_BY_DTYPE(discretize_impl, p) }
void discretize_backward(const DiscretizeBackwardParams& p) {
  SSMKIT_BY_DTYPE(discretize_backward_impl, p)
}
void ssm_step(const StepParams& p) { SSMKIT_BY_DTYPE(ssm_step_impl, p) }
void ssm_scan(const ScanParams& p) { SSMKIT_BY_DTYPE(ssm_scan_impl, p) }
void ssm_scan_backward(const ScanBackwardParams& p) { SSMKIT_BY_DTYPE(ssm_scan_backward_impl, p) }
void dplr_step(const DplrStepParams& p) { SSMKIT_BY_DTYPE(dplr_step_impl, p) }
#undef SSMKIT_BY_DTYPE

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
