// Arrays entering the compiled core from Python: any object with __dlpack__ (torch,
// NumPy, CuPy, JAX) or the buffer protocol. All argument checks live here, and each
// failure is a Python TypeError or ValueError naming the argument, what was
// expected and what was given.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ssmkit/ssmkit.h"

namespace ssmkit::py_arrays {

namespace py = pybind11;

enum class Kind { complex64, complex128, float32, float64, other };

struct Array {
  std::string name;  // the argument's name, for messages
  void* data = nullptr;
  int device_type = 1;  // DLPack device type (1 = CPU, 2 = CUDA)
  int device_id = 0;
  Kind kind = Kind::other;
  std::string dtype;  // as a user would write it: "complex64", "float32", ...
  std::vector<int64_t> shape, strides;  // strides in elements
  bool read_only = false;
  py::object owner;  // keeps the producer's memory alive

  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size(int64_t d) const { return shape[d < 0 ? d + ndim() : d]; }
  bool is_cuda() const { return device_type == 2; }
  std::string device() const;        // "cpu", "cuda:0", ...
  std::string shape_str() const;      // "(3, 4)"
  bool contiguous() const;
};

// Reads obj as an array (DLPack first, then the buffer protocol). A CUDA array is
// exported without synchronisation: an op runs on the stream its caller passes, and the
// caller has its arrays ready there (as torch ops and CuPy do on their current stream).
// In a build without CUDA, a CUDA array is only looked at (its device), never read.
Array view(py::handle obj, const char* name);

// Checks, each raising with the argument's name.
void require_complex(const Array& a);                      // complex64 or complex128
void require_real(const Array& a);                         // float32 or float64
void require_same_dtype(const Array& a, const Array& ref);
void require_min_ndim(const Array& a, int64_t n, const char* layout);
void require_same_device(const Array& a, const Array& ref);
void require_cpu_or_cuda_build(const Array& a, const char* op);
void require_writable_output(const Array& out, const Array& ref_dtype,
                             const std::vector<int64_t>& shape);
// a is real of ref's precision: float32 with complex64, float64 with complex128.
void require_real_like(const Array& a, const Array& ref);
// a has exactly this shape; layout names the dimensions, e.g. "(batch, H, N)".
void require_shape(const Array& a, const std::vector<int64_t>& shape, const char* layout);
void require_contiguous(const Array& a);
void require_last_dim(const Array& a, int64_t n, const char* what, const Array& ref);

// Broadcasts the leading dimensions of the operands (all but their last) and fills
// batch plus each operand's per-dimension batch strides (0 where broadcast).
void broadcast_batch(const std::vector<const Array*>& operands, Batch& batch,
                     const std::vector<In*>& ins);

In as_in(const Array& a);  // data and last-dimension stride; batch strides by broadcast_batch
DType dtype_of(const Array& a);  // the precision: complex64 for complex64 and float32 arrays

}  // namespace ssmkit::py_arrays
