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

void cauchy_cuda(const CauchyParams&, void*) { no_cuda("cauchy"); }
void cauchy_backward_cuda(const CauchyBackwardParams&, void*) { no_cuda("cauchy_backward"); }
void vandermonde_cuda(const VandermondeParams&, void*) { no_cuda("vandermonde"); }
void vandermonde_backward_cuda(const VandermondeBackwardParams&, void*) {
  no_cuda("vandermonde_backward");
}
void vandermonde_transpose_cuda(const VandermondeTransposeParams&, void*) {
  no_cuda("vandermonde_transpose");
}
void vandermonde_transpose_backward_cuda(const VandermondeTransposeBackwardParams&, void*) {
  no_cuda("vandermonde_transpose_backward");
}
void discretize_cuda(const DiscretizeParams&, void*) { no_cuda("discretize"); }
void discretize_backward_cuda(const DiscretizeBackwardParams&, void*) {
  no_cuda("discretize_backward");
}
void ssm_step_cuda(const StepParams&, void*) { no_cuda("ssm_step"); }
void ssm_scan_cuda(const ScanParams&, void*) { no_cuda("ssm_scan"); }
void ssm_scan_backward_cuda(const ScanBackwardParams&, void*) { no_cuda("ssm_scan_backward"); }
void dplr_step_cuda(const DplrStepParams&, void*) { no_cuda("dplr_step"); }

}  // namespace ssmkit
