// Run-time choice of the CPU kernels' instruction set, and the thread count.
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <stdexcept>

#include "engine/plan.h"
#include "ssmkit/cpu_kernels.h"
#include "ssmkit/ssmkit.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define SSMKIT_HAVE_PTHREAD_ATFORK 1
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

// fork() safety. In a child process, the thread that called fork() still points at
// the parent's OpenMP thread pool, whose threads do not exist in the child: GNU
// OpenMP then waits for them forever in the next parallel region (torch's own ops
// hang the same way). So that thread of a forked child runs the kernels on one
// thread; other threads of the child start fresh pools and are unaffected.
// (DataLoader workers already ask for one thread through torch, which shares the
// OpenMP runtime; this also covers multiprocessing's fork pools and os.fork.)
#ifdef SSMKIT_HAVE_PTHREAD_ATFORK
bool g_forked = false;
pthread_t g_fork_thread;

void after_fork_in_child() {
  g_forked = true;
  g_fork_thread = pthread_self();
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}

[[maybe_unused]] const bool g_atfork_registered = pthread_atfork(nullptr, nullptr, after_fork_in_child) == 0;

bool in_forked_thread() { return g_forked && pthread_equal(pthread_self(), g_fork_thread); }
#else
bool in_forked_thread() { return false; }
#endif

// Called by every entry point: keeps the forked thread on one thread even when
// something (torch.set_num_threads shares the runtime) raised its count again.
void guard_fork() {
#ifdef _OPENMP
  if (in_forked_thread() && omp_get_max_threads() != 1) omp_set_num_threads(1);
#endif
}

}  // namespace

#define SSMKIT_DISPATCH(fn, ...)                                   \
  guard_fork();                                                    \
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

#define SSMKIT_CPU_ENTRY_POINT(name, Params) \
  void name##_cpu(const Params& p) { SSMKIT_DISPATCH(name, p) }
SSMKIT_OPS(SSMKIT_CPU_ENTRY_POINT)
#undef SSMKIT_CPU_ENTRY_POINT

void engine_run_cpu(const EngineParams& p) { SSMKIT_DISPATCH(engine_run, p) }
EnginePlanHandle make_engine_plan() { return EnginePlanHandle(new EnginePlan); }
void EnginePlanDelete::operator()(EnginePlan* plan) const { delete plan; }
int64_t sample_token_cpu(const float* logits, int64_t n, double temperature, double top_p,
                         double u, double* work) {
  SSMKIT_DISPATCH(sample_token, logits, n, temperature, top_p, u, work)
}

CpuPeaks measure_cpu_peaks(int64_t fma_iterations, int64_t stream_floats) {
  SSMKIT_DISPATCH(cpu_peaks, fma_iterations, stream_floats)
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
  omp_set_num_threads(in_forked_thread() ? 1 : n);  // see guard_fork
#endif
}

}  // namespace ssmkit
