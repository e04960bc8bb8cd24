// Declarations of the per-instruction-set CPU kernels (csrc/cpu/kernels.cpp is
// compiled once per ISA into namespace ssmkit::<isa>). Internal to the core:
// callers use the entry points of ssmkit.h, which pick the ISA at run time.
#pragma once
#include "ssmkit/ssmkit.h"

#define SSMKIT_DECLARE_CPU_KERNELS(isa)                     \
  namespace isa {                                            \
  void cauchy(const CauchyParams& p);                        \
  void cauchy_backward(const CauchyBackwardParams& p);       \
  void discretize(const DiscretizeParams& p);                \
  void discretize_backward(const DiscretizeBackwardParams& p); \
  void ssm_step(const StepParams& p);                        \
  void ssm_scan(const ScanParams& p);                        \
  void ssm_scan_backward(const ScanBackwardParams& p);       \
  void dplr_step(const DplrStepParams& p);                   \
  void engine_run(const EngineParams& p);                    \
  int64_t sample_token(const float* logits, int64_t n, double temperature, double top_p, \
                       double u, double* work); \
  void vandermonde(const VandermondeParams& p);              \
  void vandermonde_backward(const VandermondeBackwardParams& p); \
  void vandermonde_transpose(const VandermondeTransposeParams& p); \
  void vandermonde_transpose_backward(const VandermondeTransposeBackwardParams& p); \
  }

namespace ssmkit {
SSMKIT_DECLARE_CPU_KERNELS(avx512)
SSMKIT_DECLARE_CPU_KERNELS(avx2)
SSMKIT_DECLARE_CPU_KERNELS(baseline)
}  // namespace ssmkit
