// Discretization and stepping, compiled once per instruction set into namespace
// ssmkit::<isa> (cmake/SsmkitCPU.cmake): the entry points of the kernels in step.h
// and dplr.h. Their real arrays follow the complex dtype (float with complex64).
#include "dplr.h"
#include "ssmkit/cpu_kernels.h"
#include "ssmkit/static_switch.h"
#include "step.h"

namespace ssmkit {
namespace SSMKIT_ISA {

#define SSMKIT_STEP_ENTRY(name, Params) \
  void name(const Params& p) { SSMKIT_DTYPE_SWITCH(p.dtype, T, name##_impl<T>(p)); }
SSMKIT_STEP_ENTRY(discretize, DiscretizeParams)
SSMKIT_STEP_ENTRY(discretize_backward, DiscretizeBackwardParams)
SSMKIT_STEP_ENTRY(ssm_step, StepParams)
SSMKIT_STEP_ENTRY(ssm_scan, ScanParams)
SSMKIT_STEP_ENTRY(ssm_scan_backward, ScanBackwardParams)
SSMKIT_STEP_ENTRY(dplr_step, DplrStepParams)
#undef SSMKIT_STEP_ENTRY

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
