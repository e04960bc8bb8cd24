// The CPU kernel headers the engine builds on: the SIMD helpers (simd.h, common.h)
// and the S4 step kernels it calls through their params structs (step.h, dplr.h).
// Those headers are written to be included inside the per-ISA namespace, as
// csrc/cpu/kernels.cpp does, so they are included there here.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ssmkit/ssmkit.h"

#ifndef SSMKIT_ISA
#error "SSMKIT_ISA must name the instruction set of this translation unit"
#endif

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {
#include "../simd.h"
#include "../common.h"
#include "../step.h"
#include "../dplr.h"
}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
