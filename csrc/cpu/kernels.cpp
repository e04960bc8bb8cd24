// The CPU kernels, compiled once per instruction set (cmake/SsmkitCPU.cmake sets
// SSMKIT_ISA and the matching -m flags). Everything here lives in namespace
// ssmkit::<isa> and, except the entry points at the bottom, in an anonymous
// namespace, so the copies for different instruction sets never mix.
#include <cmath>
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
#include "step.h"
#include "dplr.h"

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
