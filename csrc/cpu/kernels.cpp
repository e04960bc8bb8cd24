// The CPU kernels, compiled once per instruction set (cmake/SsmkitCPU.cmake sets
// SSMKIT_ISA and the matching -m flags). Everything here lives in namespace
// ssmkit::<isa> and, except the entry points at the bottom, in an anonymous
// namespace, so the copies for different instruction sets never mix.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
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
}  // namespace

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

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
