// Run-time choice of the CPU kernels' instruction set, and the thread count.
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <stdexcept>

#include "ssmkit/cpu_kernels.h"
#include "ssmkit/ssmkit.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ssmkit {
namespace {

enum class Isa { baseline, avx2, avx512 };

bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      return true;
  }
#else
  return isa == Isa::baseline;
#endif
}

bool compiled(Isa isa) {
  switch (isa) {
#ifdef SSMKIT_HAVE_AVX512
    case Isa::avx512: return true;
#endif
#ifdef SSMKIT_HAVE_AVX2
    case Isa::avx2: return true;
#endif
    case Isa::baseline: return true;
    default: return false;
  }
}

// The widest ISA that is compiled in and supported, no wider than SSMKIT_CPU_ISA asks.
Isa choose_isa() {
  Isa cap = Isa::avx512;
  if (const char* env = std::getenv("SSMKIT_CPU_ISA")) {
    if (!std::strcmp(env, "avx2")) cap = Isa::avx2;
    if (!std::strcmp(env, "baseline")) cap = Isa::baseline;
  }
  for (Isa isa : {Isa::avx512, Isa::avx2}) {
    if (static_cast<int>(isa) <= static_cast<int>(cap) && compiled(isa) && cpu_has(isa)) return isa;
  }
  return Isa::baseline;
}

Isa active_isa() {
  static const Isa isa = choose_isa();
  return isa;
}

}  // namespace

#define SSMKIT_DISPATCH(fn, ...)                                   \
  switch (active_isa()) {                                          \
    SSMKIT_CASE_AVX512(fn, __VA_ARGS__)                            \
    SSMKIT_CASE_AVX2(fn, __VA_ARGS__)                              \
    default: return baseline::fn(__VA_ARGS__);                     \
  }
#ifdef SSMKIT_HAVE_AVX512
#define SSMKIT_CASE_AVX512(fn, ...) case Isa::avx512: return avx512::fn(__VA_ARGS__);
#else
#define SSMKIT_CASE_AVX512(fn, ...)
#endif
#ifdef SSMKIT_HAVE_AVX2
#define SSMKIT_CASE_AVX2(fn, ...) case Isa::avx2: return avx2::fn(__VA_ARGS__);
#else
#define SSMKIT_CASE_AVX2(fn, ...)
#endif

void cauchy_cpu(const CauchyParams& p) { SSMKIT_DISPATCH(cauchy, p) }
void cauchy_backward_cpu(const CauchyBackwardParams& p) { SSMKIT_DISPATCH(cauchy_backward, p) }
void discretize_cpu(const DiscretizeParams& p) { SSMKIT_DISPATCH(discretize, p) }
void discretize_backward_cpu(const DiscretizeBackwardParams& p) {
  SSMKIT_DISPATCH(discretize_backward, p)
}
void ssm_step_cpu(const StepParams& p) { SSMKIT_DISPATCH(ssm_step, p) }
void ssm_scan_cpu(const ScanParams& p) { SSMKIT_DISPATCH(ssm_scan, p) }
void ssm_scan_backward_cpu(const ScanBackwardParams& p) { SSMKIT_DISPATCH(ssm_scan_backward, p) }
void dplr_step_cpu(const DplrStepParams& p) { SSMKIT_DISPATCH(dplr_step, p) }
void vandermonde_cpu(const VandermondeParams& p) { SSMKIT_DISPATCH(vandermonde, p) }
void vandermonde_backward_cpu(const VandermondeBackwardParams& p) {
  SSMKIT_DISPATCH(vandermonde_backward, p)
}
void vandermonde_transpose_cpu(const VandermondeTransposeParams& p) {
  SSMKIT_DISPATCH(vandermonde_transpose, p)
}
void vandermonde_transpose_backward_cpu(const VandermondeTransposeBackwardParams& p) {
  SSMKIT_DISPATCH(vandermonde_transpose_backward, p)
}

const char* cpu_isa() {
  switch (active_isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

const char* cpu_isas_compiled() {
  static const std::string names = [] {
    std::string s;
    for (auto [isa, name] : {std::pair{Isa::avx512, "avx512"}, std::pair{Isa::avx2, "avx2"},
                             std::pair{Isa::baseline, "baseline"}})
      if (compiled(isa)) s += (s.empty() ? "" : ",") + std::string(name);
    return s;
  }();
  return names.c_str();
}

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads: expected a positive thread count, got " +
                                         std::to_string(n));
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

}  // namespace ssmkit
