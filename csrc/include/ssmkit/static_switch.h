// Run-time values to compile-time parameters, for the CPU and the CUDA kernels alike:
// each switch runs its body (a statement) once with the name bound to a constant.
//
//   SSMKIT_DTYPE_SWITCH(p.dtype, T, SSMKIT_BOOL_SWITCH(p.conj_pairs, kConj, run<T, kConj>(p)));
//
// T is the real type of the complex dtype (float for complex64, double for complex128),
// which is also the type of the op's real arrays. The body may hold commas (template
// arguments, kernel launches) and other switches.
#pragma once

#include "ssmkit/ssmkit.h"

#define SSMKIT_DTYPE_SWITCH(dtype, T, ...)          \
  do {                                              \
    if ((dtype) == ::ssmkit::DType::complex64) {    \
      using T = float;                              \
      __VA_ARGS__;                                  \
    } else {                                        \
      using T = double;                             \
      __VA_ARGS__;                                  \
    }                                               \
  } while (0)

#define SSMKIT_BOOL_SWITCH(cond, NAME, ...) \
  do {                                      \
    if (cond) {                             \
      constexpr bool NAME = true;           \
      __VA_ARGS__;                          \
    } else {                                \
      constexpr bool NAME = false;          \
      __VA_ARGS__;                          \
    }                                       \
  } while (0)
