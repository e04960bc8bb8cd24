// Stand-ins for a build without a CUDA compiler (SSMKIT_CUDA=OFF or none found). The
// binding refuses CUDA arrays before it gets here; these throw in case a caller does not.
#include <stdexcept>
#include <string>

#include "ssmkit/ssmkit.h"

namespace ssmkit {

bool cuda_compiled() { return false; }
const char* cuda_architectures() { return ""; }
const char* cuda_version() { return ""; }
std::string cuda_devices() { return "error: this build of ssmkit has no CUDA support"; }

CudaDeviceFacts cuda_device_facts(int) {
  throw std::runtime_error("cuda_device_facts: this build of ssmkit has no CUDA support");
}

CudaDeviceGuard::CudaDeviceGuard(int) {}
CudaDeviceGuard::~CudaDeviceGuard() {}

namespace {
[[noreturn]] void no_cuda(const char* op) {
  throw std::runtime_error(std::string(op) +
                           ": this build of ssmkit has no CUDA kernels; rebuild with "
                           "SSMKIT_CUDA=ON and nvcc on PATH");
}
}  // namespace

#define SSMKIT_NO_CUDA_ENTRY_POINT(name, Params) \
  void name##_cuda(const Params&, void*) { no_cuda(#name); }
SSMKIT_OPS(SSMKIT_NO_CUDA_ENTRY_POINT)
#undef SSMKIT_NO_CUDA_ENTRY_POINT

}  // namespace ssmkit
