// The step engine (ssmkit/engine.h), compiled once per instruction set into namespace
// ssmkit::<isa> (cmake/SsmkitCPU.cmake): its parts are in csrc/cpu/engine/.
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "ssmkit/cpu_kernels.h"

namespace ssmkit {
namespace SSMKIT_ISA {

void engine_run(const EngineParams& p) { engine_run_impl(p); }
int64_t sample_token(const float* logits, int64_t n, double temperature, double top_p, double u,
                     double* work) {
  return draw_token(logits, n, temperature, top_p, u, work);
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
