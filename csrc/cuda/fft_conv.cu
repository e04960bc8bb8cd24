// The long convolution (FftConvParams in ssmkit.h) on the GPU, forward and backward,
// by its defining sums: one thread per output, the sum over lags in a double
// accumulator (so float32 results are the exact sums rounded once, at least as
// accurate as the CPU's FFT, csrc/cpu/fft_conv.cpp). O(L^2) per channel: simple and
// right by construction; threads of a warp take neighbouring channels, so every read
// of u, gy and y is coalesced along H.
//   y[b,t,h]  = sum_{s<=t} k0[h,s] u[b,t-s,h] + sum_{j<L-1-t} k1[h,j] u[b,t+1+j,h]
//   du[b,m,h] = sum_{t>=m} k0[h,t-m] gy[b,t,h] + sum_{j<m} k1[h,j] gy[b,m-1-j,h]
//   dk0[h,s]  = sum_b sum_{t>=s} gy[b,t,h] u[b,t-s,h]
//   dk1[h,j]  = sum_b sum_{t<L-1-j} gy[b,t,h] u[b,t+1+j,h]
// (the k1 terms when c = 2).
#include "common.cuh"

namespace ssmkit {
namespace {
using namespace cuda;

constexpr int kThreads = 256;

// y (or, with kAdjoint, du from gy): one thread per (b, t, h).
template <typename T, bool kAdjoint>
__global__ void conv_kernel(FftConvInputs p, const T* in, T* out) {
  const T* k = static_cast<const T*>(p.k);
  const int64_t L = p.L, H = p.H, total = p.batch * L * H;
  for (int64_t i = grid_thread(); i < total; i += grid_stride()) {
    const int64_t h = i % H, t = (i / H) % L, b = i / (H * L);
    const T* x = in + b * L * H + h;  // the row of channel h: x[s * H]
    const T* k0 = k + h * L;
    const T* k1 = k + (H + h) * L;
    double acc = 0;
    if (!kAdjoint) {
      for (int64_t s = 0; s <= t; ++s) acc += double(k0[s]) * double(x[(t - s) * H]);
      if (p.c == 2)
        for (int64_t j = 0; j < L - 1 - t; ++j) acc += double(k1[j]) * double(x[(t + 1 + j) * H]);
    } else {
      for (int64_t s = t; s < L; ++s) acc += double(k0[s - t]) * double(x[s * H]);
      if (p.c == 2)
        for (int64_t j = 0; j < t; ++j) acc += double(k1[j]) * double(x[(t - 1 - j) * H]);
    }
    out[i] = T(acc);
  }
}

// dk: one thread per (c, h, lag); the sum over batch and time in that order.
template <typename T>
__global__ void dk_kernel(FftConvBackwardParams p) {
  const T* u = static_cast<const T*>(p.u);
  const T* gy = static_cast<const T*>(p.gy);
  T* dk = static_cast<T*>(p.dk);
  const int64_t L = p.L, H = p.H, total = p.c * H * L;
  for (int64_t i = grid_thread(); i < total; i += grid_stride()) {
    const int64_t lag = i % L, h = (i / L) % H, c = i / (H * L);
    double acc = 0;
    for (int64_t b = 0; b < p.batch; ++b) {
      const T* ub = u + b * L * H + h;
      const T* gb = gy + b * L * H + h;
      if (c == 0)
        for (int64_t t = lag; t < L; ++t) acc += double(gb[t * H]) * double(ub[(t - lag) * H]);
      else
        for (int64_t t = 0; t < L - 1 - lag; ++t) acc += double(gb[t * H]) * double(ub[(t + 1 + lag) * H]);
    }
    dk[i] = T(acc);
  }
}

template <typename T>
void forward(const FftConvParams& p, cudaStream_t s) {
  const int64_t total = p.batch * p.L * p.H;
  if (total == 0) return;
  conv_kernel<T, false><<<grid_for(total, kThreads), kThreads, 0, s>>>(
      p, static_cast<const T*>(p.u), static_cast<T*>(p.y));
  SSMKIT_CUDA_CHECK_LAUNCH("fft_conv");
}

template <typename T>
void backward(const FftConvBackwardParams& p, cudaStream_t s) {
  const int64_t total = p.batch * p.L * p.H, ktotal = p.c * p.H * p.L;
  if (p.du && total) {
    conv_kernel<T, true><<<grid_for(total, kThreads), kThreads, 0, s>>>(
        p, static_cast<const T*>(p.gy), static_cast<T*>(p.du));
    SSMKIT_CUDA_CHECK_LAUNCH("fft_conv_backward");
  }
  if (p.dk && ktotal) {  // an empty batch gives zero sums
    dk_kernel<T><<<grid_for(ktotal, kThreads), kThreads, 0, s>>>(p);
    SSMKIT_CUDA_CHECK_LAUNCH("fft_conv_backward");
  }
}

}  // namespace

void fft_conv_cuda(const FftConvParams& p, void* stream) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, forward<T>(p, as_stream(stream)));
}

void fft_conv_backward_cuda(const FftConvBackwardParams& p, void* stream) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, backward<T>(p, as_stream(stream)));
}

}  // namespace ssmkit
