// Probes of the machine's limits for the roofline column of `ssmkit bench`: FP32 FMA
// throughput with this ISA's vectors on the kernels' threads, and STREAM's triad
// bandwidth. Compiled once per instruction set, like the kernels (cmake/SsmkitCPU.cmake).
#include <chrono>
#include <cstdint>

#include "simd.h"
#include "ssmkit/cpu_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds of the fastest of `rounds` calls of fn.
template <typename Fn>
double best_seconds(int rounds, Fn fn) {
  double best = 1e300;
  for (int i = 0; i < rounds; ++i) {
    const double t0 = now();
    fn();
    const double t = now() - t0;
    best = t < best ? t : best;
  }
  return best;
}

}  // namespace

// kChains independent accumulators hide the FMA latency (4-5 cycles x 2 pipes on current
// x86); the sum of the chains is returned so the loop cannot be optimised away.
CpuPeaks cpu_peaks(int64_t fma_iterations, int64_t stream_floats) {
  using S = Simd<float>;
  using V = S::V;
  constexpr int kChains = 12;
  CpuPeaks r{};
#ifdef _OPENMP
  r.threads = omp_get_max_threads();
#else
  r.threads = 1;
#endif
  volatile float sink = 0;
  const double fma_s = best_seconds(3, [&] {
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      V acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = S::splat(1.0f + 1e-3f * c);
      const V a = S::splat(0.999999f), b = S::splat(1e-7f);
      for (int64_t i = 0; i < fma_iterations; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
      V s = S::zero();
      for (int c = 0; c < kChains; ++c) s += acc[c];
      total += S::hsum(s);
    }
    sink = total;
  });
  (void)sink;
  r.flops = 2.0 * S::W * kChains * static_cast<double>(fma_iterations) * r.threads / fma_s;

  // Triad a = b + s c over arrays far larger than the caches, first touched by the
  // threads that stream them (static schedule both times); bytes as STREAM counts them.
  Scratch<float> a(stream_floats), b(stream_floats), c(stream_floats);
  if (!a.ok() || !b.ok() || !c.ok()) return r;  // bytes_per_s stays 0: not measured
  float *pa = a.p, *pb = b.p, *pc = c.p;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < stream_floats; ++i) pa[i] = 0, pb[i] = 1, pc[i] = 2;
  const float s = 3;
  const double triad_s = best_seconds(5, [&] {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < stream_floats; ++i) pa[i] = pb[i] + s * pc[i];
  });
  r.bytes_per_s = 3.0 * sizeof(float) * static_cast<double>(stream_floats) / triad_s;
  return r;
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
