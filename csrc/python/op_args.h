// The argument checks of every op of SSMKIT_OPS, once, shared by the Python binding
// (module.cpp: arrays from DLPack or the buffer protocol) and the XLA FFI handlers
// (csrc/ffi/: buffers from XLA, and the same checks on shapes alone when JAX traces a
// call). Each failure is a Python TypeError or ValueError naming the argument, what was
// expected and what was given (arrays.h).
#pragma once
#include <string>
#include <vector>

#include "arrays.h"
#include "ssmkit/ssmkit.h"

namespace ssmkit::py_arrays {

// The options of one call; each op reads those it has.
struct Options {
  bool conj_pairs = true;
  int64_t L = 0;       // vandermonde's length
  std::string method;  // discretize's "zoh" or "bilinear"
};

// An array argument of an op: its name in error messages, whether it may be absent (an
// optional input, or a gradient that is not needed), and for the ops of fixed rank the
// symbol of its first dimension ('b' batch, 'H' channels), along which arrays that
// share it can be stacked into one call (csrc/ffi/handlers.cpp).
struct ArrayArg {
  const char* name;
  bool optional;
  char first = 0;
};

// What an op of SSMKIT_OPS takes. arrays: its array arguments in the compiled core's
// order, the `inputs` inputs first, then the results. prepare: checks a[i], the array
// of arrays[i] (an absent one is an empty Array, without a name), and fills p.
// rank: the rank of arrays[0] as the kernel takes it, or 0 when the op's leading
// dimensions broadcast (the kernel takes per-operand batch strides).
template <class Params>
struct OpArgs;
#define SSMKIT_DECLARE_OP_ARGS(name, Params)                         \
  template <>                                                        \
  struct OpArgs<Params> {                                            \
    static constexpr const char* op = #name;                         \
    static const std::vector<ArrayArg> arrays;                       \
    static const int inputs, rank;                                   \
    static void prepare(const Array* a, const Options& o, Params& p); \
  };
SSMKIT_OPS(SSMKIT_DECLARE_OP_ARGS)
#undef SSMKIT_DECLARE_OP_ARGS

// The op of each params struct (SSMKIT_OPS) on the CPU, or on the current CUDA device
// on `stream` (a cudaStream_t).
#define SSMKIT_DECLARE_RUN_OP(name, Params) void run_op(const Params& p, bool cuda, void* stream);
SSMKIT_OPS(SSMKIT_DECLARE_RUN_OP)
#undef SSMKIT_DECLARE_RUN_OP

}  // namespace ssmkit::py_arrays
