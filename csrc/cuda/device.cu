// CUDA facts of this build and the devices the runtime sees (ssmkit info).
#include <cuda_runtime.h>

#include <string>

#include "common.cuh"
#include "ssmkit/ssmkit.h"

namespace ssmkit {

CudaDeviceFacts cuda_device_facts(int index) {
  CudaDeviceFacts f;
  const char* op = "cuda_device_facts";
  SSMKIT_CUDA_CHECK(cudaDeviceGetAttribute(&f.sm_count, cudaDevAttrMultiProcessorCount, index), op);
  SSMKIT_CUDA_CHECK(cudaDeviceGetAttribute(&f.major, cudaDevAttrComputeCapabilityMajor, index), op);
  SSMKIT_CUDA_CHECK(cudaDeviceGetAttribute(&f.minor, cudaDevAttrComputeCapabilityMinor, index), op);
  SSMKIT_CUDA_CHECK(cudaDeviceGetAttribute(&f.clock_khz, cudaDevAttrClockRate, index), op);
  SSMKIT_CUDA_CHECK(
      cudaDeviceGetAttribute(&f.memory_clock_khz, cudaDevAttrMemoryClockRate, index), op);
  SSMKIT_CUDA_CHECK(
      cudaDeviceGetAttribute(&f.memory_bus_bits, cudaDevAttrGlobalMemoryBusWidth, index), op);
  return f;
}

CudaDeviceGuard::CudaDeviceGuard(int index) {
  SSMKIT_CUDA_CHECK(cudaGetDevice(&previous_), "set device");
  if (previous_ != index) SSMKIT_CUDA_CHECK(cudaSetDevice(index), "set device");
}
CudaDeviceGuard::~CudaDeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
}

bool cuda_compiled() { return true; }
const char* cuda_architectures() { return SSMKIT_CUDA_ARCHS; }
const char* cuda_version() { return SSMKIT_CUDA_VERSION; }

std::string cuda_devices() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return std::string("error: ") + cudaGetErrorString(err);
  }
  std::string out;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    out += std::to_string(i) + ": " + prop.name + " (sm_" + std::to_string(prop.major) +
           std::to_string(prop.minor) + ", " +
           std::to_string(prop.totalGlobalMem >> 30) + " GiB)\n";
  }
  return out;
}

}  // namespace ssmkit
