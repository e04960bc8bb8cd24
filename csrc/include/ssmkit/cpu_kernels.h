// Declarations of the per-instruction-set CPU kernels: the family sources csrc/cpu/*.cpp
// are compiled once per ISA into namespace ssmkit::<isa>, each op of SSMKIT_OPS
// (ssmkit.h) as ssmkit::<isa>::name. Internal to the core: callers use the entry points
// of ssmkit.h, which pick the ISA at run time (csrc/cpu/dispatch.cpp).
#pragma once
#include <cstdint>

#include "ssmkit/ssmkit.h"

#define SSMKIT_DECLARE_CPU_KERNEL(name, Params) void name(const Params& p);
#define SSMKIT_DECLARE_CPU_KERNELS(isa)                                                   \
  namespace isa {                                                                         \
  SSMKIT_OPS(SSMKIT_DECLARE_CPU_KERNEL)                                                   \
  void engine_run(const EngineParams& p);                                                 \
  int64_t sample_token(const float* logits, int64_t n, double temperature, double top_p, \
                       double u, double* work);                                           \
  CpuPeaks cpu_peaks(int64_t fma_iterations, int64_t stream_floats);                      \
  }

namespace ssmkit {
SSMKIT_DECLARE_CPU_KERNELS(avx512)
SSMKIT_DECLARE_CPU_KERNELS(avx2)
SSMKIT_DECLARE_CPU_KERNELS(baseline)
}  // namespace ssmkit

#undef SSMKIT_DECLARE_CPU_KERNELS
#undef SSMKIT_DECLARE_CPU_KERNEL
