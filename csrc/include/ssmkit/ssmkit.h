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

// Cauchy product (see python/ssmkit/ops/reference.py for the definition):
//   out[r, l] = sum_n v[r,n] / (z[r,l] - w[r,n])  (+ conj(v[r,n]) / (z[r,l] - conj(w[r,n])))
struct CauchyParams {
  DType dtype = DType::complex64;
  Batch batch;
  int64_t N = 0, L = 0;
  bool conj_pairs = true;
  In v, w;      // v, w: (batch..., N)
  In z;         // z: (batch..., L)
  void* out = nullptr;  // out: (rows, L), contiguous
};

// Gradients of the Cauchy product, PyTorch's convention for complex inputs
// (conjugate Wirtinger derivative). Any output pointer may be null (not needed).
struct CauchyBackwardParams {
  DType dtype = DType::complex64;
  Batch batch;
  int64_t N = 0, L = 0;
  bool conj_pairs = true;
  In grad;      // grad: (batch..., L), the gradient of the output
  In v, w;      // v, w: (batch..., N)
  In z;         // z: (batch..., L)
  void* dv = nullptr;  // dv: (rows, N), contiguous
  void* dw = nullptr;  // dw: (rows, N), contiguous
  void* dz = nullptr;  // dz: (rows, L), contiguous
};

// Log-Vandermonde product (see python/ssmkit/ops/reference.py):
//   out[r, l] = sum_n v[r,n] exp(x[r,n] l),  l = 0..L-1;  the real 2 Re(...) when conj_pairs.
struct VandermondeParams {
  DType dtype = DType::complex64;
  Batch batch;
  int64_t N = 0, L = 0;
  bool conj_pairs = true;
  In v, x;              // v, x: (batch..., N)
  void* out = nullptr;  // out: (rows, L), contiguous; real when conj_pairs, else complex
};

// Gradients of the log-Vandermonde product (conjugate Wirtinger convention).
// dv or dx may be null (not needed).
struct VandermondeBackwardParams {
  DType dtype = DType::complex64;
  Batch batch;
  int64_t N = 0, L = 0;
  bool conj_pairs = true;
  In grad;             // grad: (batch..., L); real when conj_pairs, else complex
  In v, x;             // v, x: (batch..., N)
  void* dv = nullptr;  // dv: (rows, N), contiguous complex
  void* dx = nullptr;  // dx: (rows, N), contiguous complex
};

// Transposed log-Vandermonde product (state forwarding):
//   out[r, n] = v[r,n] sum_l u[r,l] exp(x[r,n] l)
struct VandermondeTransposeParams {
  DType dtype = DType::complex64;
  Batch batch;
  int64_t N = 0, L = 0;
  bool u_real = false;  // u is real of the same precision (float for complex64)
  In u;                 // u: (batch..., L)
  In v, x;              // v, x: (batch..., N)
  void* out = nullptr;  // out: (rows, N), contiguous complex
};

// Gradients of the transpose; du, dv, dx may each be null (not needed).
struct VandermondeTransposeBackwardParams {
  DType dtype = DType::complex64;
  Batch batch;
  int64_t N = 0, L = 0;
  bool u_real = false;
  In grad;             // grad: (batch..., N) complex
  In u;                // u: (batch..., L), real when u_real
  In v, x;             // v, x: (batch..., N)
  void* du = nullptr;  // du: (rows, L), contiguous; real when u_real
  void* dv = nullptr;  // dv: (rows, N), contiguous complex
  void* dx = nullptr;  // dx: (rows, N), contiguous complex
};

// CPU entry points (csrc/cpu/dispatch.cpp). They run on the calling thread's
// OpenMP pool and never touch Python.
void cauchy_cpu(const CauchyParams& p);
void cauchy_backward_cpu(const CauchyBackwardParams& p);
void vandermonde_cpu(const VandermondeParams& p);
void vandermonde_backward_cpu(const VandermondeBackwardParams& p);
void vandermonde_transpose_cpu(const VandermondeTransposeParams& p);
void vandermonde_transpose_backward_cpu(const VandermondeTransposeBackwardParams& p);

// The instruction set the CPU kernels use: "avx512", "avx2" or "baseline". Chosen once
// from what the CPU supports; the environment variable SSMKIT_CPU_ISA can lower it.
const char* cpu_isa();
// The instruction sets compiled into this build, comma separated.
const char* cpu_isas_compiled();
int num_threads();
void set_num_threads(int n);

// CUDA facts of this build (csrc/cuda/device.cu or no_cuda.cpp).
bool cuda_compiled();
const char* cuda_architectures();  // "" when CUDA was not compiled
const char* cuda_version();        // "" when CUDA was not compiled
// Devices visible to the CUDA runtime, as "index: name (sm_XY, N GiB)" lines; on
// failure a single line starting with "error:".
std::string cuda_devices();

}  // namespace ssmkit
