// Helpers shared by the CPU kernels: de-interleaving, threads. In the per-ISA
// namespace ssmkit::SSMKIT_ISA.
#pragma once
#include <cstdint>
#include <cstring>
#include <new>

#include "ssmkit/host_device.h"  // Cx, row_offset

namespace ssmkit {
namespace SSMKIT_ISA {

// Zeros n values of type T at p. An empty output may have no storage (a null pointer),
// which memset must not be given even for zero bytes.
template <typename T>
inline void zero_fill(void* p, int64_t n) {
  if (n > 0) std::memset(p, 0, sizeof(T) * n);
}

// Copies n complex values of row `off` of a, starting at index i0, into separate
// real and imaginary arrays (SIMD-friendly), and zero-fills up to `padded`.
template <typename T>
inline void split_row(const In& a, int64_t off, int64_t i0, int64_t n, int64_t padded, T* re,
                      T* im) {
  const T* base = static_cast<const T*>(a.data) + 2 * (off + i0 * a.stride);
  if (a.stride == 1) {
    for (int64_t i = 0; i < n; ++i) {
      re[i] = base[2 * i];
      im[i] = base[2 * i + 1];
    }
  } else {
    const int64_t s = 2 * a.stride;
    for (int64_t i = 0; i < n; ++i) {
      re[i] = base[i * s];
      im[i] = base[i * s + 1];
    }
  }
  for (int64_t i = n; i < padded; ++i) re[i] = im[i] = 0;
}

// Calls with less work than this (complex elements updated, or terms summed) run on
// the calling thread: waking the OpenMP team costs microseconds, and much more when
// the cores are busy with other work.
constexpr int64_t kMinParallelWork = 1 << 14;

// Runs body(scratch, t) for t in [0, tasks), on the OpenMP team when `work` is worth
// it. Each task owns its outputs, so results do not depend on the thread count or
// schedule. make_scratch() is called once per thread; an allocation failure is
// reported, never dereferenced.
template <typename MakeScratch, typename Body>
inline void parallel_tasks(int64_t tasks, int64_t work, MakeScratch make_scratch, Body body) {
  bool out_of_memory = false;
#pragma omp parallel if (tasks > 1 && work >= kMinParallelWork)
  {
    auto scratch = make_scratch();
    if (!scratch.ok()) {
#pragma omp atomic write
      out_of_memory = true;
    }
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      if (scratch.ok()) body(scratch, t);
    }
  }
  if (out_of_memory) throw std::bad_alloc();
}

// parallel_tasks for bodies that need no scratch: body(t).
template <typename Body>
inline void parallel_for(int64_t tasks, int64_t work, Body body) {
  if (tasks <= 1 || work < kMinParallelWork) {  // not even a team of one: a step is microseconds
    for (int64_t t = 0; t < tasks; ++t) body(t);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tasks; ++t) body(t);
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
