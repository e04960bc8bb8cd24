#include "arrays.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <utility>

#include "dlpack.h"

namespace ssmkit::py_arrays {

namespace {

[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }

std::string dlpack_dtype_name(const dlpack::DataType& t) {
  const char* base = "unknown";
  switch (t.code) {
    case dlpack::kInt: base = "int"; break;
    case dlpack::kUInt: base = "uint"; break;
    case dlpack::kFloat: base = "float"; break;
    case dlpack::kBfloat: base = "bfloat"; break;
    case dlpack::kComplex: base = "complex"; break;
    case dlpack::kBool: return "bool";
  }
  std::string s = std::string(base) + std::to_string(t.bits);
  if (t.lanes != 1) s += "x" + std::to_string(t.lanes);
  return s;
}

Kind kind_of(const dlpack::DataType& t) {
  if (t.lanes != 1) return Kind::other;
  if (t.code == dlpack::kComplex && t.bits == 64) return Kind::complex64;
  if (t.code == dlpack::kComplex && t.bits == 128) return Kind::complex128;
  if (t.code == dlpack::kFloat && t.bits == 32) return Kind::float32;
  if (t.code == dlpack::kFloat && t.bits == 64) return Kind::float64;
  return Kind::other;
}

void fill_from_dltensor(Array& a, const dlpack::Tensor& t) {
  a.data = static_cast<char*>(t.data) + t.byte_offset;
  a.device_type = t.device.device_type;
  a.device_id = t.device.device_id;
  a.kind = kind_of(t.dtype);
  a.dtype = dlpack_dtype_name(t.dtype);
  a.shape.assign(t.shape, t.shape + t.ndim);
  a.strides.resize(t.ndim);
  if (t.strides) {
    a.strides.assign(t.strides, t.strides + t.ndim);
  } else {  // compact row-major
    int64_t s = 1;
    for (int d = t.ndim - 1; d >= 0; --d) {
      a.strides[d] = s;
      s *= t.shape[d];
    }
  }
}

bool view_dlpack(py::handle obj, Array& a) {
  if (!py::hasattr(obj, "__dlpack__")) return false;
  // Look at the device first: a CUDA array on a CPU-only build (or any other device)
  // must fail with our message, before any producer is asked for its data.
  if (py::hasattr(obj, "__dlpack_device__")) {
    py::tuple dev = obj.attr("__dlpack_device__")();
    a.device_type = dev[0].cast<int>();
    a.device_id = dev[1].cast<int>();
    const bool readable =
        a.device_type == dlpack::kCPU || (a.device_type == dlpack::kCUDA && cuda_compiled());
    if (!readable) return true;  // device checks reject it
  }
  py::object capsule;
  const bool cuda = a.device_type == dlpack::kCUDA;
  // DLPack's stream -1: no synchronisation (see view() in arrays.h). Naming the op's
  // stream instead would have torch record and wait on an event per array whenever
  // its stream objects for that cudaStream_t do not compare equal, for nothing.
  const py::object s = cuda ? py::object(py::int_(-1)) : py::none();
  try {
    try {
      if (cuda)
        capsule = obj.attr("__dlpack__")(py::arg("stream") = s,
                                         py::arg("max_version") = py::make_tuple(1, 0));
      else
        capsule = obj.attr("__dlpack__")(py::arg("max_version") = py::make_tuple(1, 0));
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      // a producer from before DLPack 1.0
      capsule = cuda ? obj.attr("__dlpack__")(py::arg("stream") = s) : obj.attr("__dlpack__")();
    }
  } catch (py::error_already_set& e) {
    // The producer cannot put this array into DLPack (NumPy: bool, strides that are
    // not whole elements): the buffer protocol reads it, or the checks name the problem.
    if (!e.matches(PyExc_BufferError)) throw;
    if (PyObject_CheckBuffer(obj.ptr())) return false;
    type_error(a.name + ": expected an array that DLPack or the buffer protocol can read; " +
               "its __dlpack__ refused (" + std::string(e.what()) + ")");
  }
  // The capsule is only looked at, never consumed: it stays alive in a.owner and its
  // own destructor frees the producer's handle.
  PyObject* cap = capsule.ptr();
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m = static_cast<dlpack::ManagedTensorVersioned*>(
        PyCapsule_GetPointer(cap, "dltensor_versioned"));
    if (m->version.major != 1)
      type_error(a.name + ": unsupported DLPack version " + std::to_string(m->version.major));
    fill_from_dltensor(a, m->dl_tensor);
    a.read_only = (m->flags & dlpack::kFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* m = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    fill_from_dltensor(a, m->dl_tensor);
  } else {
    type_error(a.name + ": __dlpack__() did not return a DLPack capsule");
  }
  a.owner = std::move(capsule);
  return true;
}

// The dtype a user would name for a buffer-protocol format that is not ours.
std::string buffer_format_name(std::string f) {
  if (!f.empty() && std::strchr("@=<>!", f[0])) f.erase(0, 1);  // byte order
  static const std::pair<const char*, const char*> names[] = {
      {"?", "bool"},   {"b", "int8"},   {"B", "uint8"},  {"h", "int16"}, {"H", "uint16"},
      {"i", "int32"},  {"I", "uint32"}, {"l", "int64"},  {"L", "uint64"}, {"q", "int64"},
      {"Q", "uint64"}, {"e", "float16"}, {"Ze", "complex32"}};
  for (const auto& [code, name] : names)
    if (f == code) return name;
  return "buffer format '" + f + "'";
}

bool view_buffer(py::handle obj, Array& a) {
  if (!PyObject_CheckBuffer(obj.ptr())) return false;
  py::buffer buf = py::reinterpret_borrow<py::buffer>(obj);
  py::buffer_info info = buf.request();
  const std::string& f = info.format;
  if (f == "Zf") a.kind = Kind::complex64, a.dtype = "complex64";
  else if (f == "Zd") a.kind = Kind::complex128, a.dtype = "complex128";
  else if (f == "f") a.kind = Kind::float32, a.dtype = "float32";
  else if (f == "d") a.kind = Kind::float64, a.dtype = "float64";
  else a.kind = Kind::other, a.dtype = buffer_format_name(f);
  a.data = info.ptr;
  a.read_only = info.readonly;
  a.shape = info.shape;
  a.strides.resize(info.ndim);
  for (py::ssize_t d = 0; d < info.ndim; ++d) {
    if (info.strides[d] % info.itemsize != 0)
      value_error(a.name + ": expected strides that are multiples of the item size (" +
                  std::to_string(info.itemsize) + " bytes), got " +
                  std::to_string(info.strides[d]) + " bytes");
    a.strides[d] = info.strides[d] / info.itemsize;
  }
  a.owner = py::reinterpret_borrow<py::object>(obj);
  return true;
}

// Plain CPU torch tensors are read from their attributes: a DLPack export costs about
// 3 us per tensor in torch's Python code, which dominates a per-sample step call.
// Only the exact types torch.Tensor and torch.nn.Parameter qualify (subclasses such
// as fake tensors keep the DLPack path), and only without lazy conj/neg bits. torch is
// never imported from here: until the user has imported it, no object can be a tensor.
struct TorchTypes {
  PyObject* tensor = nullptr;
  PyObject* parameter = nullptr;
  PyObject* dtypes[4] = {};  // complex64, complex128, float32, float64 (Kind's order)
};

const TorchTypes* torch_types() {
  static TorchTypes types;
  static bool ready = false;
  if (ready) return &types;
  PyObject* torch = PyImport_GetModule(py::str("torch").ptr());  // new reference or null
  if (!torch) {
    PyErr_Clear();
    return nullptr;
  }
  py::object mod = py::reinterpret_steal<py::object>(torch);
  if (!py::hasattr(mod, "nn") || !py::hasattr(mod, "complex64")) return nullptr;  // mid-import
  // Kept for the life of the process, like torch's own module objects.
  auto keep = [](py::object o) { return o.release().ptr(); };
  types.tensor = keep(mod.attr("Tensor"));
  types.parameter = keep(mod.attr("nn").attr("Parameter"));
  const char* names[4] = {"complex64", "complex128", "float32", "float64"};
  for (int i = 0; i < 4; ++i) types.dtypes[i] = keep(mod.attr(names[i]));
  ready = true;
  return &types;
}

// Attribute names interned once: building and hashing them per call was most of the
// cost. Raw C API calls, since every method call through pybind11 allocates a bound
// method object.
PyObject* interned(const char* s) { return PyUnicode_InternFromString(s); }

py::object get(PyObject* obj, PyObject* name, bool call) {
  PyObject* r = call ? PyObject_CallMethodNoArgs(obj, name) : PyObject_GetAttr(obj, name);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

std::vector<int64_t> int_tuple(const py::object& t) {  // torch.Size or a tuple of ints
  const Py_ssize_t n = PyTuple_Size(t.ptr());
  if (n < 0) throw py::error_already_set();
  std::vector<int64_t> v(n);
  for (Py_ssize_t i = 0; i < n; ++i) v[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t.ptr(), i));
  if (PyErr_Occurred()) throw py::error_already_set();
  return v;
}

bool view_torch(py::handle obj, Array& a) {
  const TorchTypes* t = torch_types();
  if (!t) return false;
  PyObject* o = obj.ptr();
  PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(o));
  if (type != t->tensor && type != t->parameter) return false;
  static PyObject *is_cpu = interned("is_cpu"), *is_conj = interned("is_conj"),
                  *is_neg = interned("is_neg"), *dtype_ = interned("dtype"),
                  *data_ptr = interned("data_ptr"), *shape = interned("shape"),
                  *stride = interned("stride");
  if (get(o, is_cpu, false).ptr() != Py_True || get(o, is_conj, true).ptr() != Py_False ||
      get(o, is_neg, true).ptr() != Py_False)
    return false;
  py::object dtype = get(o, dtype_, false);
  a.kind = Kind::other;
  for (int i = 0; i < 4; ++i)
    if (dtype.ptr() == t->dtypes[i]) a.kind = static_cast<Kind>(i);
  if (a.kind == Kind::other) {
    a.dtype = py::str(dtype).cast<std::string>();
    if (a.dtype.rfind("torch.", 0) == 0) a.dtype.erase(0, 6);
  } else {
    static const char* names[4] = {"complex64", "complex128", "float32", "float64"};
    a.dtype = names[static_cast<int>(a.kind)];
  }
  a.device_type = dlpack::kCPU, a.device_id = 0;
  a.data = PyLong_AsVoidPtr(get(o, data_ptr, true).ptr());
  if (PyErr_Occurred()) throw py::error_already_set();
  a.shape = int_tuple(get(o, shape, false));
  a.strides = int_tuple(get(o, stride, true));
  a.owner = py::reinterpret_borrow<py::object>(obj);
  return true;
}

std::string kinds_of(const Array& a) {
  return a.dtype + (a.ndim() ? " array of shape " + a.shape_str() : " array");
}

}  // namespace

std::string Array::device() const {
  switch (device_type) {
    case dlpack::kCPU: return "cpu";
    case dlpack::kCUDA: return "cuda:" + std::to_string(device_id);
    case dlpack::kCUDAHost: return "cuda_host";
    case dlpack::kCUDAManaged: return "cuda_managed:" + std::to_string(device_id);
    case dlpack::kROCM: return "rocm:" + std::to_string(device_id);
    default: return "DLPack device type " + std::to_string(device_type);
  }
}

std::string Array::shape_str() const {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << (shape.size() == 1 ? ",)" : ")");
  return s.str();
}

bool Array::contiguous() const {
  for (int64_t n : shape)
    if (n == 0) return true;  // no elements: any strides will do
  int64_t s = 1;
  for (int64_t d = ndim() - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != s) return false;
    s *= shape[d];
  }
  return true;
}

Array view(py::handle obj, const char* name) {
  Array a;
  a.name = name;
  if (obj.is_none()) type_error(std::string(name) + ": expected an array, got None");
  if (!view_torch(obj, a) && !view_dlpack(obj, a) && !view_buffer(obj, a))
    type_error(std::string(name) + ": expected an array (an object with __dlpack__ or the " +
               "buffer protocol), got " + py::str(py::type::handle_of(obj)).cast<std::string>());
  return a;
}

void require_complex(const Array& a) {
  // (An array that was not read, on a device this build cannot use, fails its device check.)
  if (!a.dtype.empty() && a.kind != Kind::complex64 && a.kind != Kind::complex128)
    type_error(a.name + ": expected a complex64 or complex128 array, got " + kinds_of(a));
}

void require_real(const Array& a) {
  if (!a.dtype.empty() && a.kind != Kind::float32 && a.kind != Kind::float64)
    type_error(a.name + ": expected a float32 or float64 array, got " + kinds_of(a));
}

void require_same_dtype(const Array& a, const Array& ref) {
  if (a.kind != ref.kind)
    type_error(a.name + ": expected " + ref.dtype + " like " + ref.name + ", got " + a.dtype);
}

void require_min_ndim(const Array& a, int64_t n, const char* layout) {
  if (a.ndim() < n)
    value_error(a.name + ": expected an array of shape " + layout + ", got shape " +
                a.shape_str());
}

void require_same_device(const Array& a, const Array& ref) {
  if (a.device_type != ref.device_type || a.device_id != ref.device_id)
    value_error(a.name + ": expected an array on " + ref.device() + " like " + ref.name +
                ", got one on " + a.device());
}

void require_cpu_or_cuda_build(const Array& a, const char* op) {
  if (a.device_type == dlpack::kCPU) return;
  if (a.device_type == dlpack::kCUDA) {
    if (cuda_compiled()) return;
    value_error(std::string(op) + ": " + a.name + " is on " + a.device() +
                ", but this build of ssmkit has no CUDA kernels (it was built without a CUDA " +
                "compiler). Reinstall from source on a machine with nvcc on PATH: " +
                "SSMKIT_CUDA=ON pip install --no-binary ssmkit --force-reinstall ssmkit");
  }
  value_error(a.name + ": expected an array on the CPU or a CUDA device, got one on " +
              a.device());
}

void require_writable_output(const Array& out, const Array& ref,
                             const std::vector<int64_t>& shape) {
  require_same_dtype(out, ref);
  require_same_device(out, ref);
  if (out.shape != shape) {
    Array want;
    want.shape = shape;
    value_error(out.name + ": expected an output of shape " + want.shape_str() + ", got " +
                out.shape_str());
  }
  if (!out.contiguous())
    value_error(out.name + ": expected a contiguous output array, got strides that are not");
  if (out.read_only) value_error(out.name + ": expected a writable output, got a read-only one");
}

void require_last_dim(const Array& a, int64_t n, const char* what, const Array& ref) {
  if (a.size(-1) != n)
    value_error(a.name + ": expected the last dimension to be " + what + " = " +
                std::to_string(n) + " as in " + ref.name + " of shape " + ref.shape_str() +
                ", got shape " + a.shape_str());
}

void require_real_like(const Array& a, const Array& ref) {
  const bool single = ref.kind == Kind::complex64;
  const Kind want = single ? Kind::float32 : Kind::float64;
  if (a.kind != want)
    type_error(a.name + ": expected a real " + (single ? "float32" : "float64") +
               " array (the real dtype of " + ref.name + "'s " + ref.dtype + "), got " +
               kinds_of(a));
}

void require_shape(const Array& a, const std::vector<int64_t>& shape, const char* layout) {
  if (a.shape != shape) {
    Array want;
    want.shape = shape;
    value_error(a.name + ": expected shape " + layout + " = " + want.shape_str() + ", got " +
                a.shape_str());
  }
}

void require_contiguous(const Array& a) {
  if (!a.contiguous())
    value_error(a.name + ": expected a contiguous array (the Python layer copies), got shape " +
                a.shape_str() + " with non-contiguous strides");
}

void broadcast_batch(const std::vector<const Array*>& operands, Batch& batch,
                     const std::vector<In*>& ins) {
  int64_t nd = 0;
  for (const Array* a : operands) nd = std::max(nd, a->ndim() - 1);
  if (nd > kMaxBatchDims)
    value_error(operands[0]->name + ": at most " + std::to_string(kMaxBatchDims) +
                " leading dimensions are supported, got " + std::to_string(nd));
  batch.ndim = static_cast<int>(nd);
  for (int64_t d = 0; d < nd; ++d) {
    int64_t size = 1;
    const Array* from = nullptr;
    for (const Array* a : operands) {
      const int64_t k = d - (nd - (a->ndim() - 1));  // right-aligned
      if (k < 0) continue;
      const int64_t s = a->shape[k];
      if (s == 1) continue;
      if (size != 1 && s != size) {
        std::string names, shapes;
        for (const Array* b : operands) {
          names += (names.empty() ? "" : ", ") + b->name;
          shapes += (shapes.empty() ? "" : ", ") + b->shape_str();
        }
        value_error("the leading dimensions of " + names + " must broadcast together; got " +
                    from->name + " of shape " + from->shape_str() + " and " + a->name +
                    " of shape " + a->shape_str() + " (all shapes: " + shapes + ")");
      }
      size = s;
      from = a;
    }
    batch.shape[d] = size;
  }
  for (size_t i = 0; i < operands.size(); ++i) {
    const Array* a = operands[i];
    In* in = ins[i];
    for (int64_t d = 0; d < nd; ++d) {
      const int64_t k = d - (nd - (a->ndim() - 1));
      in->batch_stride[d] = (k < 0 || a->shape[k] == 1) ? 0 : a->strides[k];
    }
  }
}

In as_in(const Array& a) {
  In in;
  in.data = a.data;
  in.stride = a.strides.empty() ? 1 : a.strides.back();
  return in;
}

DType dtype_of(const Array& a) {
  return a.kind == Kind::complex128 || a.kind == Kind::float64 ? DType::complex128 : DType::complex64;
}

}  // namespace ssmkit::py_arrays
