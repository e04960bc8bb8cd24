// Helpers shared by the CUDA kernels: error checks, launch sizes, row addressing,
// stream-ordered scratch memory and warp sums.
//
// Every op only enqueues work on the caller's stream: no cudaDeviceSynchronize, no
// cudaStreamSynchronize, no cudaMalloc (scratch comes from cudaMallocAsync, which CUDA
// graphs capture as memory nodes). Grids are sized from the work and capped at
// kMaxGrid blocks; kernels walk their work with grid-stride loops over 64-bit indices,
// so no size (rows up to 2^20, L up to 2^24 and beyond) can exceed grid limits.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "ssmkit/host_device.h"  // Cx, cx_load/cx_store, row_offset: shared with the CPU kernels
#include "ssmkit/ssmkit.h"
#include "ssmkit/static_switch.h"

#define SSMKIT_STR2(x) #x
#define SSMKIT_STR(x) SSMKIT_STR2(x)

// Throws std::runtime_error naming the op, the CUDA error and where it was detected.
#define SSMKIT_CUDA_CHECK(call, op)                                                      \
  do {                                                                                   \
    const cudaError_t ssmkit_err_ = (call);                                              \
    if (ssmkit_err_ != cudaSuccess)                                                      \
      ::ssmkit::cuda::fail(op, ssmkit_err_, __FILE__ ":" SSMKIT_STR(__LINE__));          \
  } while (0)

// After each launch: a bad configuration shows up here (asynchronous faults surface at
// the caller's next synchronising call, as for any CUDA library).
#define SSMKIT_CUDA_CHECK_LAUNCH(op) SSMKIT_CUDA_CHECK(cudaGetLastError(), op)

namespace ssmkit::cuda {

[[noreturn]] inline void fail(const char* op, cudaError_t err, const char* where) {
  throw std::runtime_error(std::string(op) + ": CUDA error " + cudaGetErrorName(err) + ": " +
                           cudaGetErrorString(err) + " (" + where + ")");
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

constexpr int64_t kMaxGrid = 1 << 16;  // blocks per launch; loops cover the rest

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid-stride loops: this thread's first index, and the threads of the grid.
__device__ inline int64_t grid_thread() { return blockIdx.x * int64_t(blockDim.x) + threadIdx.x; }
__device__ inline int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

// Blocks for `items` work items of `per_block` each, at least 1, at most kMaxGrid.
inline unsigned grid_for(int64_t items, int64_t per_block) {
  const int64_t g = ceil_div(items, per_block);
  return static_cast<unsigned>(g < 1 ? 1 : (g > kMaxGrid ? kMaxGrid : g));
}

// Sum over the `width` lanes of an aligned lane group (width a power of two <= 32);
// every lane of the warp must call it. Lanes of a group all get the group's sum.
template <typename T>
__device__ inline T group_sum(T v, int width) {
  for (int o = width / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o, width);
  return v;
}

// The finish kernels of the reductions: adds to s the 4 partial sums of (row r, n) of
// every chunk of the row, in chunk order, from partial[((r * chunks + c) * N + n) * 4 + k].
template <typename T>
__device__ inline void add_chunks(const T* partial, int64_t chunks, int64_t N, int64_t r, int64_t n,
                                  T* s) {
  for (int64_t c = 0; c < chunks; ++c)
    for (int k = 0; k < 4; ++k) s[k] += partial[((r * chunks + c) * N + n) * 4 + k];
}

// The step size of channel h. dt <= 0 cannot be refused without reading dt on the host
// (a sync), so the kernels give such channels NaN (a NaN dt already gives NaN on the CPU).
template <typename T>
__device__ inline T step_size(const T* dt, int64_t h) {
  const T s = dt[h];
  return s > 0 ? s : T(NAN);
}

// Stream-ordered scratch memory: allocated on the stream, freed on it after the work
// enqueued before the free (CUDA graph capture records both as memory nodes).
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t s, const char* op) : stream_(s) {
    if (bytes) SSMKIT_CUDA_CHECK(cudaMallocAsync(&p_, bytes, s), op);
  }
  ~Scratch() {
    if (p_) cudaFreeAsync(p_, stream_);  // a destructor must not throw
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace ssmkit::cuda
