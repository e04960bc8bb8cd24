// ssmkit kernel API: plain C++ on pointers, shapes and strides. No Python, no torch.
//
// Complex numbers are stored interleaved (re, im) as std::complex and every array
// format does. Strides count complex elements, not bytes, and may be zero
// (broadcast) or negative. Leading ("batch") dimensions are already broadcast by the
// caller: each operand carries its own stride per batch dimension (0 where it is
// broadcast), so kernels never need a materialised copy.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ssmkit/engine.h"  // the step engine

namespace ssmkit {

constexpr int kMaxBatchDims = 8;

enum class DType { complex64, complex128 };

// The batch dimensions shared by every operand of one call.
struct Batch {
  int ndim = 0;
  int64_t shape[kMaxBatchDims] = {};
  int64_t rows() const {
    int64_t r = 1;
    for (int i = 0; i < ndim; ++i) r *= shape[i];
    return r;
  }
};

// A read-only operand of shape (batch..., n). Strides count elements of the operand's
// own type: complex elements for complex operands, real ones for real operands.
struct In {
  const void* data = nullptr;
  int64_t batch_stride[kMaxBatchDims] = {};
  int64_t stride = 1;  // along the last dimension
};

// The common part of the batched products (Cauchy, log-Vandermonde): N terms per row
// over the batch rows, L points.
struct ProductShape {
  DType dtype = DType::complex64;
  Batch batch;
  int64_t N = 0, L = 0;
};

// Cauchy product (see python/ssmkit/ops/reference.py for the definition):
//   out[r, l] = sum_n v[r,n] / (z[r,l] - w[r,n])  (+ conj(v[r,n]) / (z[r,l] - conj(w[r,n])))
struct CauchyParams : ProductShape {
  bool conj_pairs = true;
  In v, w;      // v, w: (batch..., N)
  In z;         // z: (batch..., L)
  void* out = nullptr;  // out: (rows, L), contiguous
};

// Gradients of the Cauchy product, PyTorch's convention for complex inputs
// (conjugate Wirtinger derivative). Any output pointer may be null (not needed).
struct CauchyBackwardParams : ProductShape {
  bool conj_pairs = true;
  In grad;      // grad: (batch..., L), the gradient of the output
  In v, w;      // v, w: (batch..., N)
  In z;         // z: (batch..., L)
  void *dv = nullptr, *dw = nullptr;  // dv, dw: (rows, N), contiguous
  void* dz = nullptr;                 // dz: (rows, L), contiguous
};

// ---- Discretization and stateful stepping of diagonal SSMs ----
// These arrays are contiguous (the Python layer copies where needed); real arrays
// (dt, u, y, D, R) are float32 with complex64 operands and float64 with complex128.
// Complex state uses conjugate-pair storage: N stored values stand for 2N.

enum class Discretization { zoh, bilinear };

// zoh:      dA = exp(dt A),                dB = (exp(dt A) - 1) / A * B  (-> dt B as A -> 0)
// bilinear: dA = (1 + dt A/2)/(1 - dt A/2), dB = dt B / (1 - dt A/2)
struct DiscretizeInputs {
  DType dtype = DType::complex64;
  Discretization method = Discretization::zoh;
  int64_t H = 0, N = 0;
  const void* dt = nullptr;                    // dt: (H,) real
  const void *A = nullptr, *B = nullptr;       // A, B: (H, N)
};
struct DiscretizeParams : DiscretizeInputs {
  void *dA = nullptr, *dB = nullptr;           // dA, dB: (H, N) out
};

// Gradients of discretize (conjugate Wirtinger). gdA or gdB may be null (zero); the
// outputs may be null (not needed).
struct DiscretizeBackwardParams : DiscretizeInputs {
  const void *gdA = nullptr, *gdB = nullptr;   // gdA, gdB: (H, N), gradients of the outputs
  void* gdt = nullptr;                         // gdt: (H,) real out
  void *gA = nullptr, *gB = nullptr;           // gA, gB: (H, N) out
};

// A diagonal SSM's discretized parameters, shared by its step, scan and scan backward.
struct DiagonalSSM {
  DType dtype = DType::complex64;
  int64_t batch = 0, H = 0, N = 0;
  const void *dA = nullptr, *dB = nullptr, *dC = nullptr;  // dA, dB, dC: (H, N)
  const void* D = nullptr;                                 // D: (H,) real, or null (0)
};

// One step: state' = dA * state + dB * u,  y = 2 Re(sum_n dC * state') + D * u.
// new_state may equal state (in place): each element is read before it is written,
// by the same thread.
struct StepParams : DiagonalSSM {
  const void* state = nullptr;  // state: (batch, H, N)
  const void* u = nullptr;      // u: (batch, H) real
  void* y = nullptr;            // y: (batch, H) real out
  void* new_state = nullptr;    // new_state: (batch, H, N) out, may alias state
};

// The step over a sequence: u (batch, L, H) -> y (batch, L, H) and the final state.
struct ScanInputs : DiagonalSSM {
  int64_t L = 0;
  const void* u = nullptr;       // u: (batch, L, H) real
  const void* state0 = nullptr;  // state0: (batch, H, N), or null (zero)
};
struct ScanParams : ScanInputs {
  void* y = nullptr;             // y: (batch, L, H) real out
  void* state = nullptr;         // state: (batch, H, N) out, the state after step L-1
};

// Gradients of ssm_scan by a reverse scan. The forward states are recomputed from
// checkpoints every few steps (no (batch, L, H, N) array). Gradients of the
// per-channel parameters are written per batch element; the caller sums over batch
// (a fixed order, so results are deterministic). Outputs may be null (not needed).
struct ScanBackwardParams : ScanInputs {
  const void* gy = nullptr;      // gy: (batch, L, H) real
  const void* gstate = nullptr;  // gstate: (batch, H, N), gradient of the final state, or null
  void* gu = nullptr;            // gu: (batch, L, H) real out
  void *gdA = nullptr, *gdB = nullptr, *gdC = nullptr;  // (batch, H, N) out, per batch element
  void* gD = nullptr;            // gD: (batch, H) real out, per batch element
  void* gstate0 = nullptr;       // gstate0: (batch, H, N) out
};

// One bilinear step of a DPLR system A = diag(Lambda) - P P^* (rank r, conjugate
// pairs), from the factors of ops.dplr_setup: its dA is diag(a) - Pd Q^* (derivation in
// csrc/cpu/dplr.h), so
//   sigma = 2 Re(Q^* x),  x' = a x + b u - Pd^T sigma,  y = 2 Re(sum_n C x') + D u.
struct DplrStepParams {
  DType dtype = DType::complex64;
  int64_t batch = 0, H = 0, N = 0, r = 0;
  const void* state = nullptr;            // state: (batch, H, N)
  const void* u = nullptr;                // u: (batch, H) real
  const void *a = nullptr, *b = nullptr;  // a, b: (H, N), dA's diagonal part and the system's dB
  const void *Pd = nullptr, *Q = nullptr; // Pd, Q: (H, r, N); Pd = P / (2/dt - Lambda)
  const void* C = nullptr;                // C: (H, N)
  const void* D = nullptr;                // D: (H,) real, or null
  void* y = nullptr;                      // y: (batch, H) real out
  void* new_state = nullptr;              // new_state: (batch, H, N) out, may alias state
};


// The C that the DPLR step needs from the C~ that S4 learns for kernel length L:
//   out = C (I - dA^L)^{-1} over the full state (stored half), dA the bilinear dA of
//   A = diag(Lambda) - P P^* with step dt (python/ssmkit/ops/reference.py defines it densely).
// Computed without matrices or powers (python/ssmkit/nn/ssm_kernel.py, dplr_untruncated_C,
// derives it): per channel two Cauchy products over the (L + 1)/2 frequencies k < L/2,
// joined by the Woodbury weights at each frequency. Arrays are contiguous.
struct DplrUntruncatedCParams {
  DType dtype = DType::complex128;
  int64_t H = 0, N = 0, r = 0, L = 0;  // L >= 1
  const void* dt = nullptr;        // dt: (H,) real
  const void* Lambda = nullptr;    // Lambda: (H, N)
  const void* P = nullptr;         // P: (H, r, N)
  const void* C = nullptr;         // C: (H, N), the learned C~
  void* out = nullptr;             // out: (H, N)
};

// Log-Vandermonde product (see python/ssmkit/ops/reference.py):
//   out[r, l] = sum_n v[r,n] exp(x[r,n] l),  l = 0..L-1;  the real 2 Re(...) when conj_pairs.
struct VandermondeParams : ProductShape {
  bool conj_pairs = true;
  In v, x;              // v, x: (batch..., N)
  void* out = nullptr;  // out: (rows, L), contiguous; real when conj_pairs, else complex
};

// Gradients of the log-Vandermonde product (conjugate Wirtinger convention).
// dv or dx may be null (not needed).
struct VandermondeBackwardParams : ProductShape {
  bool conj_pairs = true;
  In grad;             // grad: (batch..., L); real when conj_pairs, else complex
  In v, x;             // v, x: (batch..., N)
  void *dv = nullptr, *dx = nullptr;  // dv, dx: (rows, N), contiguous complex
};

// Transposed log-Vandermonde product (state forwarding):
//   out[r, n] = v[r,n] sum_l u[r,l] exp(x[r,n] l)
struct VandermondeTransposeInputs : ProductShape {
  bool u_real = false;  // u is real of the same precision (float for complex64)
  In u;                 // u: (batch..., L)
  In v, x;              // v, x: (batch..., N)
};
struct VandermondeTransposeParams : VandermondeTransposeInputs {
  void* out = nullptr;  // out: (rows, N), contiguous complex
};

// Gradients of the transpose; du, dv, dx may each be null (not needed).
struct VandermondeTransposeBackwardParams : VandermondeTransposeInputs {
  In grad;             // grad: (batch..., N) complex
  void* du = nullptr;  // du: (rows, L), contiguous; real when u_real
  void *dv = nullptr, *dx = nullptr;  // dv, dx: (rows, N), contiguous complex
};

// Causal convolution along the length of u with one kernel per channel (see
// python/ssmkit/ops/reference.py), the S4 layer's long convolution:
//   y[b,t,h] = sum_{s<=t} k[0,h,s] u[b,t-s,h]
//            (+ sum_{s<L-1-t} k[1,h,s] u[b,t+1+s,h] when c = 2: a second, anticausal kernel)
// Arrays are contiguous and real: float32 with dtype complex64, float64 with complex128.
struct FftConvInputs {
  DType dtype = DType::complex64;
  int64_t batch = 0, L = 0, H = 0, c = 1;  // c: 1 (causal) or 2 (bidirectional)
  const void* u = nullptr;  // u: (batch, L, H)
  const void* k = nullptr;  // k: (c, H, L)
};
struct FftConvParams : FftConvInputs {
  void* y = nullptr;  // y: (batch, L, H) out
};
// Gradients of fft_conv; du or dk may be null (not needed).
struct FftConvBackwardParams : FftConvInputs {
  const void* gy = nullptr;  // gy: (batch, L, H), the gradient of y
  void* du = nullptr;        // du: (batch, L, H) out
  void* dk = nullptr;        // dk: (c, H, L) out
};

// Every op of the core, once: X(name, its params struct). This list declares, for each
// op, the CPU entry point name_cpu(p) (csrc/cpu/dispatch.cpp: runs the kernel of the
// widest instruction set, ssmkit::<isa>::name in csrc/cpu/<family>.cpp) and the CUDA
// entry point name_cuda(p, stream) (csrc/cuda/<family>.cu; csrc/cuda/no_cuda.cpp in a
// build without CUDA). The CPU entry points run on the calling thread's OpenMP pool
// and never touch Python. The CUDA ones take the same structs, every pointer on the
// current CUDA device, and the stream to launch on (a cudaStream_t; null = the legacy
// default stream). They only enqueue work: no device or host synchronisation, so they
// may be captured in a CUDA graph. Scratch memory, where needed, is stream-ordered
// (cudaMallocAsync). Errors throw std::runtime_error naming the op, the CUDA error and
// file:line. In a build without CUDA they throw saying so.
#define SSMKIT_OPS(X)                                                   \
  X(cauchy, CauchyParams)                                               \
  X(cauchy_backward, CauchyBackwardParams)                              \
  X(vandermonde, VandermondeParams)                                     \
  X(vandermonde_backward, VandermondeBackwardParams)                    \
  X(vandermonde_transpose, VandermondeTransposeParams)                  \
  X(vandermonde_transpose_backward, VandermondeTransposeBackwardParams) \
  X(discretize, DiscretizeParams)                                       \
  X(discretize_backward, DiscretizeBackwardParams)                      \
  X(ssm_step, StepParams)                                               \
  X(ssm_scan, ScanParams)                                               \
  X(ssm_scan_backward, ScanBackwardParams)                              \
  X(dplr_step, DplrStepParams)                                          \
  X(dplr_untruncated_C, DplrUntruncatedCParams)                         \
  X(fft_conv, FftConvParams)                                            \
  X(fft_conv_backward, FftConvBackwardParams)

#define SSMKIT_DECLARE_ENTRY_POINTS(name, Params) \
  void name##_cpu(const Params& p);               \
  void name##_cuda(const Params& p, void* stream);
SSMKIT_OPS(SSMKIT_DECLARE_ENTRY_POINTS)
#undef SSMKIT_DECLARE_ENTRY_POINTS

// The instruction set the CPU kernels use: "avx512", "avx2" or "baseline". Chosen once
// from what the CPU supports; the environment variable SSMKIT_CPU_ISA can lower it.
const char* cpu_isa();
// The instruction sets compiled into this build, comma separated.
const char* cpu_isas_compiled();
int num_threads();
void set_num_threads(int n);

// The machine's limits as the CPU kernels can use them (csrc/cpu/probe.cpp): FP32
// operations per second of FMAs with the chosen ISA's vectors on num_threads() threads
// (an FMA counts 2), and STREAM triad bandwidth over arrays of stream_floats floats each.
struct CpuPeaks {
  double flops;
  double bytes_per_s;
  int threads;
};
CpuPeaks measure_cpu_peaks(int64_t fma_iterations, int64_t stream_floats);

// Makes CUDA device `index` current for its lifetime and restores the previous one
// (callers launch on the device that holds their arrays). A no-op without CUDA.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int index);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// CUDA facts of this build (csrc/cuda/device.cu or no_cuda.cpp).
bool cuda_compiled();
const char* cuda_architectures();  // "" when CUDA was not compiled
const char* cuda_version();        // "" when CUDA was not compiled
// Devices visible to the CUDA runtime, as "index: name (sm_XY, N GiB)" lines; on
// failure a single line starting with "error:".
std::string cuda_devices();

// What a device's peak throughput follows from (ssmkit bench's fraction of peak).
// Throws std::runtime_error on failure or in a build without CUDA.
struct CudaDeviceFacts {
  int sm_count = 0, major = 0, minor = 0;
  int clock_khz = 0, memory_clock_khz = 0, memory_bus_bits = 0;
};
CudaDeviceFacts cuda_device_facts(int index);

}  // namespace ssmkit
