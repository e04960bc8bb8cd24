// Stand-ins for a build without a CUDA compiler (SSMKIT_CUDA=OFF or none found).
#include "ssmkit/ssmkit.h"

namespace ssmkit {

bool cuda_compiled() { return false; }
const char* cuda_architectures() { return ""; }
const char* cuda_version() { return ""; }
std::string cuda_devices() { return "error: this build of ssmkit has no CUDA support"; }

}  // namespace ssmkit
