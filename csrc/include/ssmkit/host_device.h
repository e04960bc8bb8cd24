// Code that the CPU kernels (csrc/cpu) and the CUDA kernels (csrc/cuda) share: a small
// complex type with interleaved (re, im) loads and stores, and batch-row addressing.
//
// It lives in namespace ssmkit::SSMKIT_ISA, the namespace of the code that includes it:
// each per-ISA CPU copy has its own (so code built for different instruction sets never
// mixes), and the CUDA kernels theirs, ssmkit::cuda (cmake sets SSMKIT_ISA).
#pragma once
#include <cmath>
#include <cstdint>

#include "ssmkit/ssmkit.h"

#ifndef SSMKIT_ISA
#error "SSMKIT_ISA must name the namespace of this translation unit's kernels (cmake/SsmkitCPU.cmake)"
#endif

#ifdef __CUDACC__
#define SSMKIT_HD __host__ __device__
#else
#define SSMKIT_HD
#endif

namespace ssmkit {
namespace SSMKIT_ISA {

// Not std::complex: its out-of-line helpers could be shared between the per-ISA copies,
// and it is not usable in device code.
template <typename T>
struct Cx {
  T re, im;
};
template <typename T>
SSMKIT_HD inline Cx<T> operator+(Cx<T> a, Cx<T> b) { return {a.re + b.re, a.im + b.im}; }
template <typename T>
SSMKIT_HD inline Cx<T> operator-(Cx<T> a, Cx<T> b) { return {a.re - b.re, a.im - b.im}; }
template <typename T>
SSMKIT_HD inline Cx<T> operator*(Cx<T> a, Cx<T> b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
template <typename T>
SSMKIT_HD inline Cx<T> operator*(T s, Cx<T> a) { return {s * a.re, s * a.im}; }
template <typename T>
SSMKIT_HD inline Cx<T> conj(Cx<T> a) { return {a.re, -a.im}; }
template <typename T>
SSMKIT_HD inline Cx<T> cx_inv(Cx<T> a) {  // 1/a, scaled so |a|^2 cannot overflow or underflow
  const T s = std::fabs(a.re) > std::fabs(a.im) ? std::fabs(a.re) : std::fabs(a.im);
  if (s == 0) return {T(1) / s, T(0) * a.im};  // inf, as 1/0
  const Cx<T> b{a.re / s, a.im / s};
  const T d = b.re * b.re + b.im * b.im;
  return {b.re / (d * s), -b.im / (d * s)};
}
template <typename T>
SSMKIT_HD inline Cx<T> cx_exp(Cx<T> z) {
  const T m = std::exp(z.re);
  return {m * std::cos(z.im), m * std::sin(z.im)};
}
template <typename T>
SSMKIT_HD inline Cx<T> cx_load(const void* p, int64_t i) {  // element i of interleaved (re, im)
  const T* q = static_cast<const T*>(p) + 2 * i;
  return {q[0], q[1]};
}
template <typename T>
SSMKIT_HD inline void cx_store(void* p, int64_t i, Cx<T> v) {
  T* q = static_cast<T*>(p) + 2 * i;
  q[0] = v.re;
  q[1] = v.im;
}

// Offset, in complex elements, of row r of operand a, where r is the row-major index
// over the broadcast batch shape.
SSMKIT_HD inline int64_t row_offset(const Batch& b, const In& a, int64_t r) {
  int64_t off = 0;
  for (int d = b.ndim - 1; d >= 0; --d) {
    const int64_t i = r % b.shape[d];
    r /= b.shape[d];
    off += i * a.batch_stride[d];
  }
  return off;
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
