// The CPU kernel headers the engine builds on: the SIMD helpers (simd.h, common.h)
// and the S4 step kernels it calls through their params structs (step.h, dplr.h).
// Those headers are written to be included inside the per-ISA namespace, as
// csrc/cpu/kernels.cpp does, so they are included there here.
#pragma once
#ifndef SSMKIT_ISA
#error "SSMKIT_ISA must name the instruction set of this translation unit (cmake/SsmkitCPU.cmake)"
#endif
#include <cmath>  // the step kernels' math
#include <new>    // std::bad_alloc (common.h)
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // simd.h's horizontal sums and masks
#endif

#include "ssmkit/ssmkit.h"

namespace ssmkit::SSMKIT_ISA {
namespace {
#include "../simd.h"
#include "../common.h"
#include "../step.h"
#include "../dplr.h"
}  // namespace
}  // namespace ssmkit::SSMKIT_ISA
