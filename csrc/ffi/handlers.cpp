// XLA FFI handlers of every op of SSMKIT_OPS, for JAX (python/ssmkit/jax): one handler
// per op and platform follows from the list, as a template over the op's params struct.
// A handler turns XLA's buffers into the binding's Array views, runs the op's own checks
// (op_args.h: the messages of the torch and NumPy paths) and calls the same entry point
// name_cpu(p) or name_cuda(p, stream) as the binding, so results are bit for bit those
// of the torch path. Nothing is shared between calls: XLA may run handlers on several
// threads at once.
//
// The call's operands are the op's array arguments (OpArgs<P>::arrays) that the
// attribute `present` (a bit mask over them) names, inputs first, then results. Under
// jax.vmap every operand gains the same leading dimensions, of size 1 or the batch
// size: the broadcasting ops (rank 0) take them as batch dimensions with stride 0 where
// the size is 1. The others fold them into their first dimension where that is exact
// (a vmap over the batch of ssm_scan's inputs, or over every array of discretize), and
// else run once per batch element, reading size-1 dimensions with stride 0 (no
// broadcast copy).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../python/op_args.h"
#include "ssmkit/xla_ffi.h"

namespace py = pybind11;

namespace ssmkit::ffi {
namespace {

using namespace ssmkit::py_arrays;
namespace x = ssmkit::xla_ffi;

// Answers XLA's registration query (the metadata extension) with the API version this
// file is written against; returns whether the call was that query.
bool answer_metadata(x::CallFrame* f) {
  for (x::ExtensionBase* e = f->extension_start; e; e = e->next) {
    if (e->type != x::kExtensionMetadata) continue;
    x::Metadata* m = reinterpret_cast<x::MetadataExtension*>(e)->metadata;
    m->api_version = {sizeof(x::ApiVersion), nullptr, x::kApiMajor, x::kApiMinor};
    m->traits = 0;
    return true;
  }
  return false;
}

x::Error* make_error(x::CallFrame* f, x::ErrorCode code, const std::string& message) {
  x::ErrorCreateArgs args{sizeof(x::ErrorCreateArgs), nullptr, message.c_str(), code};
  return f->api->error_create(&args);
}

void set_kind(Array& a, Kind kind, const char* dtype) {
  a.kind = kind;
  a.dtype = dtype;
}

void set_dtype(Array& a, x::DataType t) {
  switch (t) {
    case x::kC64: return set_kind(a, Kind::complex64, "complex64");
    case x::kC128: return set_kind(a, Kind::complex128, "complex128");
    case x::kF32: return set_kind(a, Kind::float32, "float32");
    case x::kF64: return set_kind(a, Kind::float64, "float64");
    case x::kPred: return set_kind(a, Kind::other, "bool");
    case x::kS8: return set_kind(a, Kind::other, "int8");
    case x::kS16: return set_kind(a, Kind::other, "int16");
    case x::kS32: return set_kind(a, Kind::other, "int32");
    case x::kS64: return set_kind(a, Kind::other, "int64");
    case x::kU8: return set_kind(a, Kind::other, "uint8");
    case x::kU16: return set_kind(a, Kind::other, "uint16");
    case x::kU32: return set_kind(a, Kind::other, "uint32");
    case x::kU64: return set_kind(a, Kind::other, "uint64");
    case x::kF16: return set_kind(a, Kind::other, "float16");
    case x::kBF16: return set_kind(a, Kind::other, "bfloat16");
  }
  set_kind(a, Kind::other, ("XLA type " + std::to_string(static_cast<int>(t))).c_str());
}

size_t item_size(Kind k) {
  switch (k) {
    case Kind::complex128: return 16;
    case Kind::complex64:
    case Kind::float64: return 8;
    case Kind::float32: return 4;
    default: return 0;  // refused by the checks before any data is read
  }
}

// Row-major strides (in elements) of a dense array of this shape.
void set_dense(Array& a, std::vector<int64_t> shape) {
  a.shape = std::move(shape);
  a.strides.assign(a.shape.size(), 1);
  for (int64_t d = a.ndim() - 2; d >= 0; --d) a.strides[d] = a.strides[d + 1] * a.shape[d + 1];
}

// The options of a call from its attributes (sorted by name; an op has those it uses).
Options read_options(const x::Attrs& attrs, int64_t& present) {
  Options o;
  for (int64_t i = 0; i < attrs.size; ++i) {
    const std::string name(attrs.names[i]->ptr, attrs.names[i]->len);
    if (attrs.types[i] == x::kAttrString) {
      const auto* s = static_cast<const x::ByteSpan*>(attrs.attrs[i]);
      if (name == "method") o.method.assign(s->ptr, s->len);
      continue;
    }
    if (attrs.types[i] != x::kAttrScalar) continue;
    const auto* s = static_cast<const x::Scalar*>(attrs.attrs[i]);
    int64_t v = 0;
    switch (s->dtype) {
      case x::kPred:
      case x::kU8:
      case x::kS8: v = *static_cast<const int8_t*>(s->value); break;
      case x::kS32: v = *static_cast<const int32_t*>(s->value); break;
      case x::kS64: v = *static_cast<const int64_t*>(s->value); break;
      default: throw std::runtime_error("attribute " + name + ": expected an integer or bool scalar");
    }
    if (name == "conj_pairs") o.conj_pairs = v != 0;
    else if (name == "L") o.L = v;
    else if (name == "present") present = v;
  }
  return o;
}

// Returns the stream getter's error, if any; bad arguments throw (op_args.h).
template <class P>
x::Error* run(x::CallFrame* f, bool cuda) {
  using Op = OpArgs<P>;
  const std::vector<ArrayArg>& args = Op::arrays;
  int64_t present = -1;
  const Options o = read_options(f->attrs, present);
  // The operands as XLA gives them, in the order of args (absent ones empty).
  std::vector<Array> full(args.size());
  int64_t next_arg = 0, next_ret = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    if (!(present >> i & 1)) {
      if (!args[i].optional)
        throw py::type_error(std::string(args[i].name) + ": expected an array, got None");
      continue;
    }
    const bool input = static_cast<int>(i) < Op::inputs;
    const x::Operands& list = input ? f->args : f->rets;
    int64_t& next = input ? next_arg : next_ret;
    if (next >= list.size)
      throw std::runtime_error(std::string(Op::op) + ": the call has fewer operands than `present` names");
    const auto* b = static_cast<const x::Buffer*>(list.items[next++]);
    Array& a = full[i];
    a.name = args[i].name;
    a.data = b->data;
    a.device_type = cuda ? 2 : 1;
    set_dtype(a, b->dtype);
    set_dense(a, std::vector<int64_t>(b->dims, b->dims + b->rank));
  }
  void* stream = nullptr;
  if (cuda) {
    x::StreamGetArgs s{sizeof(x::StreamGetArgs), nullptr, f->ctx, nullptr};
    if (x::Error* e = f->api->stream_get(&s)) return e;
    stream = s.stream;
  }
  // vmap's leading dimensions, run per element (see the top of this file).
  const int64_t k = Op::rank ? std::max<int64_t>(0, full[0].ndim() - Op::rank) : 0;
  std::vector<int64_t> batch(k, 1);
  for (const Array& a : full) {
    if (a.name.empty()) continue;
    if (a.ndim() < k)
      throw py::value_error(a.name + ": expected the " + std::to_string(k) + " leading (vmap) dimensions of " +
                            full[0].name + ", got shape " + a.shape_str());
    for (int64_t d = 0; d < k; ++d) {
      if (a.shape[d] == 1) continue;
      if (batch[d] != 1 && batch[d] != a.shape[d])
        throw py::value_error(a.name + ": expected leading (vmap) dimensions that broadcast with the other "
                              "operands', got shape " + a.shape_str());
      batch[d] = a.shape[d];
    }
  }
  int64_t count = 1;
  for (int64_t n : batch) count *= n;
  // One call when the batched operands are exactly those whose first dimension is one
  // symbol (and, for channels, which every operand has first), batched in every vmap
  // dimension: the vmap dimensions then fold into that first dimension, in place.
  std::vector<char> batched(full.size(), 0), unbatched(full.size(), 1);
  char fold = 0;
  bool foldable = true;
  for (size_t i = 0; i < full.size(); ++i) {
    if (full[i].name.empty()) continue;
    bool all = true;
    for (int64_t d = 0; d < k; ++d) {
      all = all && full[i].shape[d] == batch[d];
      unbatched[i] = unbatched[i] && full[i].shape[d] == 1;
    }
    batched[i] = all && !unbatched[i];
    if (!batched[i] && !unbatched[i]) foldable = false;
    if (batched[i]) {
      if (!args[i].first || (fold && fold != args[i].first)) foldable = false;
      fold = args[i].first;
    }
  }
  for (size_t i = 0; i < full.size(); ++i) {
    if (full[i].name.empty() || !fold) continue;
    const bool same = args[i].first == fold;
    if (same ? !batched[i] : (fold == 'H' || !unbatched[i])) foldable = false;
  }
  std::vector<Array> one(full.size());
  for (size_t i = 0; i < full.size(); ++i) {
    if (full[i].name.empty()) continue;
    one[i] = full[i];
    std::vector<int64_t> shape(full[i].shape.begin() + k, full[i].shape.end());
    if (foldable && fold && args[i].first == fold) shape[0] *= count;
    set_dense(one[i], std::move(shape));
  }
  for (int64_t e = 0; e < (foldable ? 1 : count); ++e) {
    for (size_t i = 0; i < full.size(); ++i) {
      const Array& a = full[i];
      if (a.name.empty() || foldable) continue;
      int64_t offset = 0;
      for (int64_t d = k - 1, rest = e; d >= 0; --d) {
        const int64_t index = rest % batch[d];
        rest /= batch[d];
        if (a.shape[d] != 1) offset += index * a.strides[d];
      }
      one[i].data = static_cast<char*>(a.data) + offset * static_cast<int64_t>(item_size(a.kind));
    }
    P p;
    Op::prepare(one.data(), o, p);
    run_op(p, cuda, stream);
  }
  return nullptr;
}

template <class P, bool kCuda>
x::Error* handler(x::CallFrame* f) {
  if (answer_metadata(f)) return nullptr;
  if (f->stage != x::kExecute) return nullptr;
  try {
    return run<P>(f, kCuda);
  } catch (const py::builtin_exception& e) {  // a bad argument (op_args.h)
    return make_error(f, x::kInvalidArgument, e.what());
  } catch (const std::exception& e) {
    return make_error(f, x::kInternal, std::string(OpArgs<P>::op) + ": " + e.what());
  } catch (...) {
    return make_error(f, x::kInternal, std::string(OpArgs<P>::op) + ": unknown error");
  }
}

// The checks of op P on shapes and dtypes alone (no data), for JAX's trace.
template <class P>
void check_shapes(const py::list& arrays, const Options& o) {
  const std::vector<ArrayArg>& args = OpArgs<P>::arrays;
  if (arrays.size() != args.size())
    throw py::value_error(std::string(OpArgs<P>::op) + ": expected " + std::to_string(args.size()) +
                          " array descriptions, got " + std::to_string(arrays.size()));
  std::vector<Array> a(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    if (arrays[i].is_none()) {  // results may be left out: the trace checks its inputs first
      if (!args[i].optional && static_cast<int>(i) < OpArgs<P>::inputs)
        throw py::type_error(std::string(args[i].name) + ": expected an array, got None");
      continue;
    }
    const auto desc = arrays[i].cast<std::pair<std::vector<int64_t>, std::string>>();
    a[i].name = args[i].name;
    const std::string& t = desc.second;
    a[i].dtype = t;
    a[i].kind = t == "complex64" ? Kind::complex64 : t == "complex128" ? Kind::complex128
              : t == "float32" ? Kind::float32 : t == "float64" ? Kind::float64 : Kind::other;
    set_dense(a[i], desc.first);
  }
  P p;
  OpArgs<P>::prepare(a.data(), o, p);
}

}  // namespace

void register_ffi(py::module_& m) {
  m.def(
      "ffi_targets",
      [](const std::string& platform) {
        py::dict d;
        const bool cuda = platform == "CUDA";
        if (!cuda && platform != "cpu")
          throw py::value_error("platform: expected \"cpu\" or \"CUDA\", got \"" + platform + "\"");
        if (cuda && !cuda_compiled()) return d;
#define SSMKIT_FFI_TARGET(name, Params)                                                  \
  d["ssmkit_" #name] = py::capsule(reinterpret_cast<void*>(                              \
      cuda ? &handler<Params, true> : &handler<Params, false>));
        SSMKIT_OPS(SSMKIT_FFI_TARGET)
#undef SSMKIT_FFI_TARGET
        return d;
      },
      py::arg("platform"),
      "XLA FFI handlers of every op for platform \"cpu\" or \"CUDA\" ({target name: capsule}; "
      "empty for CUDA in a build without CUDA)");
  m.def(
      "ffi_check",
      [](const std::string& op, const py::list& arrays, bool conj_pairs, int64_t L,
         const std::string& method) {
        Options o;
        o.conj_pairs = conj_pairs, o.L = L, o.method = method;
#define SSMKIT_FFI_CHECK(name, Params) \
  if (op == #name) return check_shapes<Params>(arrays, o);
        SSMKIT_OPS(SSMKIT_FFI_CHECK)
#undef SSMKIT_FFI_CHECK
        throw py::value_error("op: no ssmkit op named \"" + op + "\"");
      },
      py::arg("op"), py::arg("arrays"), py::arg("conj_pairs") = true, py::arg("L") = 0,
      py::arg("method") = "",
      "The checks of op on its arrays' (shape, dtype) pairs (None for an absent one), in the "
      "order of its core function: raises as a call with such arrays would. Results may be "
      "None (not checked)");
}

}  // namespace ssmkit::ffi
