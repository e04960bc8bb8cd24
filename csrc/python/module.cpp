// ssmkit._C: the Python binding of the compiled core. Arrays come in through DLPack
// or the buffer protocol (arrays.h), are checked there, and the kernels run with the
// GIL released. Outputs are allocated by the caller (the Python layer).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "arrays.h"
#include "ssmkit/ssmkit.h"

namespace py = pybind11;
using namespace ssmkit;
using namespace ssmkit::py_arrays;

namespace {

// v, w: (..., N) complex; z: (..., L) complex, same dtype and device; leading
// dimensions broadcast. Fills the shared parts of both Cauchy parameter structs.
template <typename Params>
void check_cauchy_operands(const char* op, const Array& v, const Array& z, const Array& w,
                           std::vector<const Array*> extra, Params& p) {
  for (const Array* a : {&v, &z, &w}) require_cpu_or_cuda_build(*a, op);
  for (const Array* a : extra) require_cpu_or_cuda_build(*a, op);
  require_complex(v);
  require_min_ndim(v, 1, "(..., N)");
  require_same_dtype(w, v);
  require_same_device(w, v);
  require_min_ndim(w, 1, "(..., N)");
  require_last_dim(w, v.size(-1), "N", v);
  require_same_dtype(z, v);
  require_same_device(z, v);
  require_min_ndim(z, 1, "(..., L)");
  p.dtype = dtype_of(v);
  p.N = v.size(-1);
  p.L = z.size(-1);
}

std::vector<int64_t> out_shape(const Batch& b, int64_t last) {
  std::vector<int64_t> s(b.shape, b.shape + b.ndim);
  s.push_back(last);
  return s;
}

void cauchy(py::handle v_, py::handle z_, py::handle w_, py::handle out_, bool conj_pairs) {
  const Array v = view(v_, "v"), z = view(z_, "z"), w = view(w_, "w");
  CauchyParams p;
  check_cauchy_operands("cauchy", v, z, w, {}, p);
  p.conj_pairs = conj_pairs;
  p.v = as_in(v), p.z = as_in(z), p.w = as_in(w);
  broadcast_batch({&v, &z, &w}, p.batch, {&p.v, &p.z, &p.w});
  const Array out = view(out_, "out");
  require_writable_output(out, v, out_shape(p.batch, p.L));
  p.out = out.data;
  py::gil_scoped_release nogil;
  cauchy_cpu(p);
}

void cauchy_backward(py::handle grad_, py::handle v_, py::handle z_, py::handle w_,
                     py::handle dv_, py::handle dz_, py::handle dw_, bool conj_pairs) {
  const Array grad = view(grad_, "grad"), v = view(v_, "v"), z = view(z_, "z"),
              w = view(w_, "w");
  CauchyBackwardParams p;
  check_cauchy_operands("cauchy_backward", v, z, w, {&grad}, p);
  require_same_dtype(grad, v);
  require_same_device(grad, v);
  require_min_ndim(grad, 1, "(..., L)");
  require_last_dim(grad, p.L, "L", z);
  p.conj_pairs = conj_pairs;
  p.grad = as_in(grad), p.v = as_in(v), p.z = as_in(z), p.w = as_in(w);
  broadcast_batch({&grad, &v, &z, &w}, p.batch, {&p.grad, &p.v, &p.z, &p.w});
  // Outputs are optional (None: not needed) and have the full broadcast batch shape.
  Array dv, dz, dw;
  if (!dv_.is_none()) {
    dv = view(dv_, "dv");
    require_writable_output(dv, v, out_shape(p.batch, p.N));
    p.dv = dv.data;
  }
  if (!dw_.is_none()) {
    dw = view(dw_, "dw");
    require_writable_output(dw, v, out_shape(p.batch, p.N));
    p.dw = dw.data;
  }
  if (!dz_.is_none()) {
    dz = view(dz_, "dz");
    require_writable_output(dz, v, out_shape(p.batch, p.L));
    p.dz = dz.data;
  }
  py::gil_scoped_release nogil;
  cauchy_backward_cpu(p);
}

// v, x: (..., N) complex of one dtype and device. Fills the shared parts of the
// log-Vandermonde parameter structs.
template <typename Params>
void check_vandermonde_operands(const char* op, const Array& v, const Array& x,
                                std::vector<const Array*> extra, Params& p) {
  for (const Array* a : {&v, &x}) require_cpu_or_cuda_build(*a, op);
  for (const Array* a : extra) require_cpu_or_cuda_build(*a, op);
  require_complex(v);
  require_min_ndim(v, 1, "(..., N)");
  require_complex(x);
  require_same_dtype(x, v);
  require_same_device(x, v);
  require_min_ndim(x, 1, "(..., N)");
  require_last_dim(x, v.size(-1), "N", v);
  p.dtype = dtype_of(v);
  p.N = v.size(-1);
}

// u: (..., L), complex like v or real of the same precision; returns whether it is real.
bool check_real_or_like(const Array& u, const Array& v) {
  require_same_device(u, v);
  const bool real = u.kind == Kind::float32 || u.kind == Kind::float64;
  if (real) {
    const Kind want = v.kind == Kind::complex64 ? Kind::float32 : Kind::float64;
    if (u.kind != want)
      throw py::type_error(u.name + ": expected " +
                           (want == Kind::float32 ? "float32" : "float64") + " or " + v.dtype +
                           " to match " + v.name + " (" + v.dtype + "), got " + u.dtype);
  } else {
    require_same_dtype(u, v);
  }
  return real;
}

// The real dtype of the same precision as ref (for real outputs and gradients).
void require_real_output(const Array& out, const Array& ref, const std::vector<int64_t>& shape) {
  const Kind want = ref.kind == Kind::complex64 ? Kind::float32 : Kind::float64;
  if (out.kind != want)
    throw py::type_error(out.name + ": expected a " + (want == Kind::float32 ? "float32" : "float64") +
                         " output, got " + out.dtype);
  Array like = out;  // same dtype and device as out: only shape, contiguity, writability
  require_writable_output(out, like, shape);
  require_same_device(out, ref);
}

int64_t check_length(int64_t L) {
  if (L < 0) throw py::value_error("L: expected a non-negative length, got " + std::to_string(L));
  return L;
}

void vandermonde(py::handle v_, py::handle x_, int64_t L, py::handle out_, bool conj_pairs) {
  const Array v = view(v_, "v"), x = view(x_, "x");
  VandermondeParams p;
  check_vandermonde_operands("vandermonde", v, x, {}, p);
  p.L = check_length(L);
  p.conj_pairs = conj_pairs;
  p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&v, &x}, p.batch, {&p.v, &p.x});
  const Array out = view(out_, "out");
  if (conj_pairs)
    require_real_output(out, v, out_shape(p.batch, p.L));
  else
    require_writable_output(out, v, out_shape(p.batch, p.L));
  p.out = out.data;
  py::gil_scoped_release nogil;
  vandermonde_cpu(p);
}

void vandermonde_backward(py::handle grad_, py::handle v_, py::handle x_, py::handle dv_,
                          py::handle dx_, bool conj_pairs) {
  const Array grad = view(grad_, "grad"), v = view(v_, "v"), x = view(x_, "x");
  VandermondeBackwardParams p;
  check_vandermonde_operands("vandermonde_backward", v, x, {&grad}, p);
  require_min_ndim(grad, 1, "(..., L)");
  if (check_real_or_like(grad, v) != conj_pairs)
    throw py::type_error(std::string("grad: expected a ") + (conj_pairs ? "real" : "complex") +
                         " gradient (conj_pairs=" + (conj_pairs ? "True" : "False") + "), got " +
                         grad.dtype);
  p.L = grad.size(-1);
  p.conj_pairs = conj_pairs;
  p.grad = as_in(grad), p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&grad, &v, &x}, p.batch, {&p.grad, &p.v, &p.x});
  Array dv, dx;
  if (!dv_.is_none()) {
    dv = view(dv_, "dv");
    require_writable_output(dv, v, out_shape(p.batch, p.N));
    p.dv = dv.data;
  }
  if (!dx_.is_none()) {
    dx = view(dx_, "dx");
    require_writable_output(dx, v, out_shape(p.batch, p.N));
    p.dx = dx.data;
  }
  py::gil_scoped_release nogil;
  vandermonde_backward_cpu(p);
}

void vandermonde_transpose(py::handle u_, py::handle v_, py::handle x_, py::handle out_) {
  const Array u = view(u_, "u"), v = view(v_, "v"), x = view(x_, "x");
  VandermondeTransposeParams p;
  check_vandermonde_operands("vandermonde_transpose", v, x, {&u}, p);
  require_min_ndim(u, 1, "(..., L)");
  p.u_real = check_real_or_like(u, v);
  p.L = u.size(-1);
  p.u = as_in(u), p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&u, &v, &x}, p.batch, {&p.u, &p.v, &p.x});
  const Array out = view(out_, "out");
  require_writable_output(out, v, out_shape(p.batch, p.N));
  p.out = out.data;
  py::gil_scoped_release nogil;
  vandermonde_transpose_cpu(p);
}

void vandermonde_transpose_backward(py::handle grad_, py::handle u_, py::handle v_,
                                    py::handle x_, py::handle du_, py::handle dv_,
                                    py::handle dx_) {
  const Array grad = view(grad_, "grad"), u = view(u_, "u"), v = view(v_, "v"),
              x = view(x_, "x");
  VandermondeTransposeBackwardParams p;
  check_vandermonde_operands("vandermonde_transpose_backward", v, x, {&u, &grad}, p);
  require_min_ndim(u, 1, "(..., L)");
  p.u_real = check_real_or_like(u, v);
  require_same_dtype(grad, v);
  require_same_device(grad, v);
  require_min_ndim(grad, 1, "(..., N)");
  require_last_dim(grad, p.N, "N", v);
  p.L = u.size(-1);
  p.grad = as_in(grad), p.u = as_in(u), p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&grad, &u, &v, &x}, p.batch, {&p.grad, &p.u, &p.v, &p.x});
  Array du, dv, dx;
  if (!du_.is_none()) {
    du = view(du_, "du");
    if (p.u_real)
      require_real_output(du, v, out_shape(p.batch, p.L));
    else
      require_writable_output(du, v, out_shape(p.batch, p.L));
    p.du = du.data;
  }
  if (!dv_.is_none()) {
    dv = view(dv_, "dv");
    require_writable_output(dv, v, out_shape(p.batch, p.N));
    p.dv = dv.data;
  }
  if (!dx_.is_none()) {
    dx = view(dx_, "dx");
    require_writable_output(dx, v, out_shape(p.batch, p.N));
    p.dx = dx.data;
  }
  py::gil_scoped_release nogil;
  vandermonde_transpose_backward_cpu(p);
}

py::dict build_info() {
  py::dict d;
  d["version"] = SSMKIT_VERSION;
#if defined(__clang__)
  d["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = "gcc " __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["cpu_isa"] = cpu_isa();
  d["cpu_isas_compiled"] = cpu_isas_compiled();
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["num_threads"] = num_threads();
  d["cuda_compiled"] = cuda_compiled();
  d["cuda_version"] = cuda_version();
  d["cuda_architectures"] = cuda_architectures();
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ssmkit compiled core (CPU kernels, CUDA kernels when built with CUDA)";
  m.def("cauchy", &cauchy, py::arg("v"), py::arg("z"), py::arg("w"), py::arg("out"),
        py::arg("conj_pairs") = true,
        "out[..., l] = sum_n v/(z_l - w_n) (+ conjugate pairs) into the preallocated out");
  m.def("cauchy_backward", &cauchy_backward, py::arg("grad"), py::arg("v"), py::arg("z"),
        py::arg("w"), py::arg("dv"), py::arg("dz"), py::arg("dw"), py::arg("conj_pairs") = true,
        "Gradients of cauchy into preallocated dv, dz, dw (each may be None)");
  m.def("vandermonde", &vandermonde, py::arg("v"), py::arg("x"), py::arg("L"), py::arg("out"),
        py::arg("conj_pairs") = true,
        "out[..., l] = sum_n v_n exp(x_n l), l < L (2 Re(...) with conj_pairs) into out");
  m.def("vandermonde_backward", &vandermonde_backward, py::arg("grad"), py::arg("v"),
        py::arg("x"), py::arg("dv"), py::arg("dx"), py::arg("conj_pairs") = true,
        "Gradients of vandermonde into preallocated dv, dx (each may be None)");
  m.def("vandermonde_transpose", &vandermonde_transpose, py::arg("u"), py::arg("v"),
        py::arg("x"), py::arg("out"),
        "out[..., n] = v_n sum_l u_l exp(x_n l) into the preallocated out");
  m.def("vandermonde_transpose_backward", &vandermonde_transpose_backward, py::arg("grad"),
        py::arg("u"), py::arg("v"), py::arg("x"), py::arg("du"), py::arg("dv"), py::arg("dx"),
        "Gradients of vandermonde_transpose into preallocated du, dv, dx (each may be None)");
  m.def("build_info", &build_info, "How this build was made and what it runs with");
  m.def("cuda_devices", &cuda_devices, "CUDA devices visible to ssmkit's CUDA runtime");
  m.def("get_num_threads", &num_threads, "Threads the CPU kernels use");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the threads the CPU kernels use (for calls from this thread)");
}
