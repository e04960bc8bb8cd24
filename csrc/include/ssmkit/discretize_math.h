// The per-element math of discretize, forward and backward, written once for the CPU
// kernels (csrc/cpu/step.h) and the CUDA kernels (csrc/cuda/step.cu): phi1 and its
// derivative, and one (h, n) element of each direction. The loops
// around it (threads, grid strides, the sum of gdt over n) stay with each backend.
//
// In the includer's namespace ssmkit::SSMKIT_ISA, like host_device.h.
#pragma once

#include "ssmkit/host_device.h"

namespace ssmkit {
namespace SSMKIT_ISA {

// phi1(z) = (exp(z) - 1)/z and its derivative phi1'(z) = (exp(z) - phi1(z))/z.
// Both cancel badly for small |z| (and are 0/0 at z = 0), so below |z| = 1/2 they are
// summed from their Taylor series, 16 terms: the first omitted term is below
// 0.5^16/17! ~ 4e-20 relative, under double precision's rounding. Above 1/2 the
// closed forms lose at most a few ulp.
constexpr int kSeriesTerms = 16;
SSMKIT_HD inline double factorial(int k) {  // exact in double for k <= 18
  double f = 1;
  for (int i = 2; i <= k; ++i) f *= i;
  return f;
}
template <typename T>
SSMKIT_HD inline Cx<T> phi1(Cx<T> z, Cx<T> ez) {
  if (z.re * z.re + z.im * z.im >= T(0.25)) return (ez - Cx<T>{1, 0}) * cx_inv(z);
  // sum_k z^k / (k+1)!, Horner from the highest term
  Cx<T> s{T(1 / factorial(kSeriesTerms)), 0};
  for (int k = kSeriesTerms - 2; k >= 0; --k) s = s * z + Cx<T>{T(1 / factorial(k + 1)), 0};
  return s;
}
template <typename T>
SSMKIT_HD inline Cx<T> phi1_prime(Cx<T> z, Cx<T> ez, Cx<T> f) {
  if (z.re * z.re + z.im * z.im >= T(0.25)) return (ez - f) * cx_inv(z);
  // sum_{k>=1} k z^(k-1) / (k+1)!
  Cx<T> s{T(kSeriesTerms / factorial(kSeriesTerms + 1)), 0};
  for (int k = kSeriesTerms - 1; k >= 1; --k) s = s * z + Cx<T>{T(k / factorial(k + 1)), 0};
  return s;
}

// One element: dA, dB from dt (s), A and B.
template <typename T>
SSMKIT_HD inline void discretize_element(Discretization method, T s, Cx<T> A, Cx<T> B, Cx<T>& dA,
                                         Cx<T>& dB) {
  const Cx<T> z = s * A;
  if (method == Discretization::zoh) {
    dA = cx_exp(z);
    dB = s * (phi1(z, dA) * B);  // = (exp(dt A) - 1)/A * B, exact dt B at A = 0
  } else {
    const Cx<T> w = cx_inv(Cx<T>{1 - z.re / 2, -z.im / 2});
    dA = Cx<T>{1 + z.re / 2, z.im / 2} * w;
    dB = s * (B * w);
  }
}

// One element of the backward: gA, gB and this element's share of gdt from the
// gradients ga, gb of dA, dB. With z = dt A:
//   zoh:      ddA/dA = dt e^z,  ddA/ddt = A e^z,  ddB/dB = dt phi1(z),
//             ddB/dA = dt^2 phi1'(z) B,  ddB/ddt = e^z B
//   bilinear: w = 1/(1 - z/2): ddA/dA = dt w^2, ddA/ddt = A w^2, ddB/dB = dt w,
//             ddB/dA = dt^2 B w^2 / 2, ddB/ddt = B w^2
// and, for PyTorch's convention, g_x = conj(dy/dx) g_y (Re(...) summed for real dt).
template <typename T>
SSMKIT_HD inline void discretize_element_backward(Discretization method, T s, Cx<T> A, Cx<T> B, Cx<T> ga,
                                                  Cx<T> gb, Cx<T>& gA, Cx<T>& gB, T& gdt) {
  const Cx<T> z = s * A;
  Cx<T> dA_dA, dA_ddt, dB_dB, dB_dA, dB_ddt;
  if (method == Discretization::zoh) {
    const Cx<T> e = cx_exp(z), f = phi1(z, e), fp = phi1_prime(z, e, f);
    dA_dA = s * e, dA_ddt = A * e, dB_dB = s * f;
    dB_dA = (s * s) * (fp * B), dB_ddt = e * B;
  } else {
    const Cx<T> w = cx_inv(Cx<T>{1 - z.re / 2, -z.im / 2}), w2 = w * w;
    dA_dA = s * w2, dA_ddt = A * w2, dB_dB = s * w;
    dB_dA = (s * s / 2) * (B * w2), dB_ddt = B * w2;
  }
  gA = conj(dA_dA) * ga + conj(dB_dA) * gb;
  gB = conj(dB_dB) * gb;
  gdt = (conj(dA_ddt) * ga + conj(dB_ddt) * gb).re;
}

// Element i of discretize with step size s (dt[h] for i's channel h), read from and
// written to the params' arrays: the loop body of the CPU and the CUDA kernels.
template <typename T>
SSMKIT_HD inline void discretize_at(const DiscretizeParams& p, T s, int64_t i) {
  Cx<T> dA, dB;
  discretize_element(p.method, s, cx_load<T>(p.A, i), cx_load<T>(p.B, i), dA, dB);
  cx_store(p.dA, i, dA);
  cx_store(p.dB, i, dB);
}

// Element i of the backward: stores gA, gB (where asked) and returns its share of gdt.
template <typename T>
SSMKIT_HD inline T discretize_backward_at(const DiscretizeBackwardParams& p, T s, int64_t i) {
  const Cx<T> ga = p.gdA ? cx_load<T>(p.gdA, i) : Cx<T>{0, 0};
  const Cx<T> gb = p.gdB ? cx_load<T>(p.gdB, i) : Cx<T>{0, 0};
  Cx<T> gA, gB;
  T gdt;
  discretize_element_backward(p.method, s, cx_load<T>(p.A, i), cx_load<T>(p.B, i), ga, gb, gA, gB, gdt);
  if (p.gA) cx_store(p.gA, i, gA);
  if (p.gB) cx_store(p.gB, i, gB);
  return gdt;
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
