// CUDA facts of this build and the devices the runtime sees (ssmkit info).
#include <cuda_runtime.h>

#include <string>

#include "common.cuh"
#include "ssmkit/ssmkit.h"

namespace ssmkit {

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
