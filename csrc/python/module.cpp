// ssmkit._C: the Python binding of the compiled core. Arrays come in through DLPack
// or the buffer protocol (arrays.h), are checked there, and the kernels run with the
// GIL released. Outputs are allocated by the caller (the Python layer).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "arrays.h"
#include "ssmkit/ssmkit.h"

namespace py = pybind11;
using namespace ssmkit;
using namespace ssmkit::py_arrays;

namespace {

// v, w: (..., N) complex; z: (..., L) complex, same dtype and device; leading
// dimensions broadcast. Fills the shared parts of both Cauchy parameter structs.
void check_cauchy_operands(const char* op, const Array& v, const Array& z, const Array& w,
                           std::vector<const Array*> extra, ProductShape& p) {
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

// The op of each params struct (SSMKIT_OPS) on the CPU, or on the current CUDA device.
#define SSMKIT_RUN_OP(name, Params)                        \
  void run_op(const Params& p, bool cuda, void* stream) { \
    if (cuda)                                              \
      name##_cuda(p, stream);                              \
    else                                                   \
      name##_cpu(p);                                       \
  }
SSMKIT_OPS(SSMKIT_RUN_OP)
#undef SSMKIT_RUN_OP

// Runs the op of p where ref's data lives, with the GIL released: on the CPU, or on
// ref's CUDA device (made current for the call) on `stream` (a cudaStream_t as an
// integer, 0 = the legacy default stream; ignored for CPU arrays).
template <typename P>
void launch(const Array& ref, int64_t stream, const P& p) {
  py::gil_scoped_release nogil;
  if (ref.is_cuda()) {
    CudaDeviceGuard device(ref.device_id);
    run_op(p, true, reinterpret_cast<void*>(static_cast<intptr_t>(stream)));
  } else {
    run_op(p, false, nullptr);
  }
}

std::vector<int64_t> out_shape(const Batch& b, int64_t last) {
  std::vector<int64_t> s(b.shape, b.shape + b.ndim);
  s.push_back(last);
  return s;
}

// An output: checked (like's dtype and device, the shape, contiguous, writable), its
// pointer stored in dst. Returns the view, which keeps the array alive.
Array output(py::handle obj, const char* name, const Array& like, const std::vector<int64_t>& shape,
             void*& dst) {
  Array a = view(obj, name);
  require_writable_output(a, like, shape);
  dst = a.data;
  return a;
}

// An output that may be None (not needed; dst left null).
Array optional_output(py::handle obj, const char* name, const Array& like,
                      const std::vector<int64_t>& shape, void*& dst) {
  return obj.is_none() ? Array{} : output(obj, name, like, shape, dst);
}

void cauchy(py::handle v_, py::handle z_, py::handle w_, py::handle out_, bool conj_pairs,
            int64_t stream) {
  const Array v = view(v_, "v"), z = view(z_, "z"), w = view(w_, "w");
  CauchyParams p;
  check_cauchy_operands("cauchy", v, z, w, {}, p);
  p.conj_pairs = conj_pairs;
  p.v = as_in(v), p.z = as_in(z), p.w = as_in(w);
  broadcast_batch({&v, &z, &w}, p.batch, {&p.v, &p.z, &p.w});
  const Array out = output(out_, "out", v, out_shape(p.batch, p.L), p.out);
  launch(v, stream, p);
}

void cauchy_backward(py::handle grad_, py::handle v_, py::handle z_, py::handle w_,
                     py::handle dv_, py::handle dz_, py::handle dw_, bool conj_pairs,
                     int64_t stream) {
  const Array grad = view(grad_, "grad"), v = view(v_, "v"),
              z = view(z_, "z"),
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
  dv = optional_output(dv_, "dv", v, out_shape(p.batch, p.N), p.dv);
  dw = optional_output(dw_, "dw", v, out_shape(p.batch, p.N), p.dw);
  dz = optional_output(dz_, "dz", v, out_shape(p.batch, p.L), p.dz);
  launch(v, stream, p);
}

// ---- discretization and stepping ----
// Every array is checked for device, dtype (complex operands share one dtype, real
// ones are its real partner), exact shape and contiguity, each error naming the
// argument. The optional ones may be None.

Array view_opt(py::handle obj, const char* name) {
  return obj.is_none() ? Array{} : view(obj, name);
}

struct Checked {
  const Array* ref;  // the complex operand that fixes dtype and device
  const char* op;
  void complex_(const Array& a, const std::vector<int64_t>& shape, const char* layout) const {
    require_cpu_or_cuda_build(a, op);
    require_complex(a);
    require_same_dtype(a, *ref);
    require_same_device(a, *ref);
    require_shape(a, shape, layout);
    require_contiguous(a);
  }
  void real_(const Array& a, const std::vector<int64_t>& shape, const char* layout) const {
    require_cpu_or_cuda_build(a, op);
    require_real_like(a, *ref);
    require_same_device(a, *ref);
    require_shape(a, shape, layout);
    require_contiguous(a);
  }
  void out_(const Array& a, const Array& like, const std::vector<int64_t>& shape) const {
    require_cpu_or_cuda_build(a, op);
    require_writable_output(a, like, shape);
  }
  // An output that may be None (not needed): checked as out_, its pointer stored in dst
  // (left null for None). Returns the view, which keeps the array alive.
  Array opt_out_(py::handle obj, const char* name, const Array& like,
                 const std::vector<int64_t>& shape, void*& dst) const {
    Array a = view_opt(obj, name);
    if (!a.name.empty()) out_(a, like, shape), dst = a.data;
    return a;
  }
  // A complex input that may be None (null).
  Array opt_complex_(py::handle obj, const char* name, const std::vector<int64_t>& shape,
                     const char* layout, const void*& dst) const {
    Array a = view_opt(obj, name);
    if (!a.name.empty()) complex_(a, shape, layout), dst = a.data;
    return a;
  }
};

Discretization method_of(const std::string& m) {
  if (m == "zoh") return Discretization::zoh;
  if (m == "bilinear") return Discretization::bilinear;
  throw py::value_error("method: expected \"zoh\" or \"bilinear\", got \"" + m + "\"");
}

// dt, A, B of discretize and its backward. The complex operand A: (H, N) is checked
// first; everything else follows it.
struct DiscretizeArrays {
  Array dt, A, B;
  DiscretizeArrays(py::handle dt_, py::handle A_, py::handle B_)
      : dt(view(dt_, "dt")), A(view(A_, "A")), B(view(B_, "B")) {}

  Checked check(const std::string& method, const char* op, DiscretizeInputs& p) const {
    p.method = method_of(method);
    require_cpu_or_cuda_build(A, op);
    require_complex(A);
    if (A.ndim() != 2)
      throw py::value_error("A: expected shape (H, N), got " + A.shape_str());
    Checked c{&A, op};
    c.complex_(A, A.shape, "(H, N)");
    c.complex_(B, A.shape, "(H, N) like A");
    c.real_(dt, {A.shape[0]}, "(H,) like A's first dimension");
    p.dtype = dtype_of(A);
    p.H = A.shape[0], p.N = A.shape[1];
    p.dt = dt.data, p.A = A.data, p.B = B.data;
    // dt is a step size: it must be positive (NaN passes through as NaN). CUDA data
    // cannot be read here without a sync: the kernels turn dt <= 0 into NaN instead.
    for (int64_t h = 0; h < (A.is_cuda() ? 0 : p.H); ++h) {
      const double v = A.kind == Kind::complex64 ? static_cast<const float*>(dt.data)[h]
                                                 : static_cast<const double*>(dt.data)[h];
      if (v <= 0)
        throw py::value_error("dt: expected positive step sizes, got dt[" + std::to_string(h) +
                              "] = " + std::to_string(v));
    }
    return c;
  }
};

void discretize(py::handle dt_, py::handle A_, py::handle B_, py::handle dA_, py::handle dB_,
                const std::string& method, int64_t stream) {
  const DiscretizeArrays in(dt_, A_, B_);
  DiscretizeParams p;
  const Checked c = in.check(method, "discretize", p);
  const Array dA = view(dA_, "dA"), dB = view(dB_, "dB");
  c.out_(dA, in.A, in.A.shape);
  c.out_(dB, in.A, in.A.shape);
  p.dA = dA.data, p.dB = dB.data;
  launch(in.A, stream, p);
}

void discretize_backward(py::handle dt_, py::handle A_, py::handle B_, py::handle gdA_,
                         py::handle gdB_, py::handle gdt_, py::handle gA_, py::handle gB_,
                         const std::string& method, int64_t stream) {
  const DiscretizeArrays in(dt_, A_, B_);
  DiscretizeBackwardParams p;
  const Checked c = in.check(method, "discretize_backward", p);
  const Array& A = in.A;
  const Array gdA = c.opt_complex_(gdA_, "gdA", A.shape, "(H, N) like A", p.gdA);
  const Array gdB = c.opt_complex_(gdB_, "gdB", A.shape, "(H, N) like A", p.gdB);
  const Array gdt = c.opt_out_(gdt_, "gdt", in.dt, in.dt.shape, p.gdt);
  const Array gA = c.opt_out_(gA_, "gA", A, A.shape, p.gA);
  const Array gB = c.opt_out_(gB_, "gB", A, A.shape, p.gB);
  launch(A, stream, p);
}

// dA: (H, N) fixes H, N, dtype and device; dB, dC follow it; D: (H,) real or None.
// (dplr_step's a, b, C are named dA, dB, C.)
Checked check_params(const Array& dA, const Array& dB, const Array& dC, const Array& D,
                     const char* op) {
  require_cpu_or_cuda_build(dA, op);
  require_complex(dA);
  if (dA.ndim() != 2) throw py::value_error("dA: expected shape (H, N), got " + dA.shape_str());
  Checked c{&dA, op};
  c.complex_(dA, dA.shape, "(H, N)");
  c.complex_(dB, dA.shape, "(H, N) like dA");
  c.complex_(dC, dA.shape, "(H, N) like dA");
  if (!D.name.empty()) c.real_(D, {dA.shape[0]}, "(H,) like dA's first dimension");
  return c;
}

// u: real (batch, H) for a step (ndim 2) or (batch, L, H) for a scan (ndim 3), H as in dA.
void check_u(const Checked& c, const Array& u, int64_t H, int64_t ndim) {
  const char* layout = ndim == 2 ? "(batch, H)" : "(batch, L, H)";
  if (u.ndim() != ndim || u.shape[ndim - 1] != H)
    throw py::value_error(std::string("u: expected shape ") + layout + " with H = " +
                          std::to_string(H) + " as in dA, got " + u.shape_str());
  c.real_(u, u.shape, layout);
}

// The parameters of a diagonal SSM (dA, dB, dC, D) and the input u.
struct DiagonalArrays {
  Array dA, dB, dC, D, u;
  DiagonalArrays(py::handle dA_, py::handle dB_, py::handle dC_, py::handle D_, py::handle u_)
      : dA(view(dA_, "dA")), dB(view(dB_, "dB")), dC(view(dC_, "dC")), D(view_opt(D_, "D")),
        u(view(u_, "u")) {}

  Checked check(const char* op, int64_t u_ndim, DiagonalSSM& p) const {
    const Checked c = check_params(dA, dB, dC, D, op);
    p.dtype = dtype_of(dA);
    p.H = dA.shape[0], p.N = dA.shape[1];
    check_u(c, u, p.H, u_ndim);
    p.batch = u.shape[0];
    p.dA = dA.data, p.dB = dB.data, p.dC = dC.data, p.D = D.data;
    return c;
  }
  std::vector<int64_t> state_shape() const { return {u.shape[0], dA.shape[0], dA.shape[1]}; }
};

void ssm_step(py::handle state_, py::handle u_, py::handle dA_, py::handle dB_, py::handle dC_,
              py::handle D_, py::handle y_, py::handle new_state_, int64_t stream) {
  const DiagonalArrays in(dA_, dB_, dC_, D_, u_);
  StepParams p;
  const Checked c = in.check("ssm_step", 2, p);
  const Array state = view(state_, "state");
  c.complex_(state, in.state_shape(), "(batch, H, N) with batch from u and H, N from dA");
  const Array y = view(y_, "y"), ns = view(new_state_, "out");
  c.out_(y, in.u, in.u.shape);
  c.out_(ns, state, state.shape);
  p.state = state.data, p.u = in.u.data, p.y = y.data, p.new_state = ns.data;
  launch(in.dA, stream, p);
}

// The inputs of a scan (forward or backward) into p; returns the checks.
Checked check_scan(const DiagonalArrays& in, const Array& state0, const char* op, ScanInputs& p) {
  const Checked c = in.check(op, 3, p);
  p.L = in.u.shape[1];
  p.u = in.u.data;
  if (!state0.name.empty()) c.complex_(state0, in.state_shape(), "(batch, H, N) with batch from u");
  p.state0 = state0.data;
  return c;
}

void ssm_scan(py::handle u_, py::handle dA_, py::handle dB_, py::handle dC_, py::handle D_,
              py::handle state0_, py::handle y_, py::handle state_, int64_t stream) {
  const DiagonalArrays in(dA_, dB_, dC_, D_, u_);
  const Array state0 = view_opt(state0_, "state");
  ScanParams p;
  const Checked c = check_scan(in, state0, "ssm_scan", p);
  const Array y = view(y_, "y"), st = view(state_, "final_state");
  c.out_(y, in.u, in.u.shape);
  c.out_(st, in.dA, in.state_shape());
  p.y = y.data, p.state = st.data;
  launch(in.dA, stream, p);
}

void ssm_scan_backward(py::handle u_, py::handle dA_, py::handle dB_, py::handle dC_,
                       py::handle D_, py::handle state0_, py::handle gy_, py::handle gstate_,
                       py::handle gu_, py::handle gdA_, py::handle gdB_, py::handle gdC_,
                       py::handle gD_, py::handle gstate0_, int64_t stream) {
  const DiagonalArrays in(dA_, dB_, dC_, D_, u_);
  const Array state0 = view_opt(state0_, "state");
  ScanBackwardParams p;
  const Checked c = check_scan(in, state0, "ssm_scan_backward", p);
  const Array &u = in.u, &dA = in.dA;
  const std::vector<int64_t> sshape = in.state_shape(), pshape{p.batch, p.H};
  const Array gy = view(gy_, "gy");
  c.real_(gy, u.shape, "(batch, L, H) like u");
  p.gy = gy.data;
  const Array gstate = c.opt_complex_(gstate_, "gstate", sshape, "(batch, H, N)", p.gstate);
  const Array gu = c.opt_out_(gu_, "gu", u, u.shape, p.gu);
  const Array gdA = c.opt_out_(gdA_, "gdA", dA, sshape, p.gdA);
  const Array gdB = c.opt_out_(gdB_, "gdB", dA, sshape, p.gdB);
  const Array gdC = c.opt_out_(gdC_, "gdC", dA, sshape, p.gdC);
  const Array gD = c.opt_out_(gD_, "gD", u, pshape, p.gD);
  const Array gs0 = c.opt_out_(gstate0_, "gstate0", dA, sshape, p.gstate0);
  launch(dA, stream, p);
}

void dplr_step(py::handle state_, py::handle u_, py::handle a_, py::handle b_, py::handle P_,
               py::handle Pd_, py::handle R_, py::handle C_, py::handle D_, py::handle y_,
               py::handle new_state_, int64_t stream) {
  const Array a = view(a_, "dA"), b = view(b_, "dB"), C = view(C_, "C");
  const Array D = view_opt(D_, "D");
  const Checked c = check_params(a, b, C, D, "dplr_step");
  const int64_t H = a.shape[0], N = a.shape[1];
  const Array P = view(P_, "P"), Pd = view(Pd_, "Pd"), R = view(R_, "R");
  if (P.ndim() != 3 || P.shape[0] != H || P.shape[2] != N)
    throw py::value_error("P: expected shape (H, r, N) with H, N as in dA, got " + P.shape_str());
  const int64_t r = P.shape[1];
  if (r > 64) throw py::value_error("P: ranks up to 64 are supported, got r = " + std::to_string(r));
  c.complex_(P, P.shape, "(H, r, N)");
  c.complex_(Pd, P.shape, "(H, r, N) like P");
  c.real_(R, {H, r, r}, "(H, r, r)");
  const Array state = view(state_, "state"), u = view(u_, "u");
  check_u(c, u, H, 2);
  const int64_t batch = u.shape[0];
  c.complex_(state, {batch, H, N}, "(batch, H, N) with batch from u and H, N from dA");
  const Array y = view(y_, "y"), ns = view(new_state_, "out");
  c.out_(y, u, u.shape);
  c.out_(ns, state, state.shape);
  DplrStepParams p;
  p.dtype = dtype_of(a);
  p.batch = batch, p.H = H, p.N = N, p.r = r;
  p.state = state.data, p.u = u.data, p.a = a.data, p.b = b.data, p.P = P.data;
  p.Pd = Pd.data, p.R = R.data, p.C = C.data, p.D = D.data, p.y = y.data;
  p.new_state = ns.data;
  launch(a, stream, p);
}

// v, x: (..., N) complex of one dtype and device. Fills the shared parts of the
// log-Vandermonde parameter structs.
void check_vandermonde_operands(const char* op, const Array& v, const Array& x,
                                std::vector<const Array*> extra, ProductShape& p) {
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

void vandermonde(py::handle v_, py::handle x_, int64_t L, py::handle out_, bool conj_pairs, int64_t stream) {
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
  launch(v, stream, p);
}

void vandermonde_backward(py::handle grad_, py::handle v_, py::handle x_, py::handle dv_,
                          py::handle dx_, bool conj_pairs, int64_t stream) {
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
  dv = optional_output(dv_, "dv", v, out_shape(p.batch, p.N), p.dv);
  dx = optional_output(dx_, "dx", v, out_shape(p.batch, p.N), p.dx);
  launch(v, stream, p);
}

void vandermonde_transpose(py::handle u_, py::handle v_, py::handle x_, py::handle out_, int64_t stream) {
  const Array u = view(u_, "u"), v = view(v_, "v"), x = view(x_, "x");
  VandermondeTransposeParams p;
  check_vandermonde_operands("vandermonde_transpose", v, x, {&u}, p);
  require_min_ndim(u, 1, "(..., L)");
  p.u_real = check_real_or_like(u, v);
  p.L = u.size(-1);
  p.u = as_in(u), p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&u, &v, &x}, p.batch, {&p.u, &p.v, &p.x});
  const Array out = output(out_, "out", v, out_shape(p.batch, p.N), p.out);
  launch(v, stream, p);
}

void vandermonde_transpose_backward(py::handle grad_, py::handle u_, py::handle v_,
                                    py::handle x_, py::handle du_, py::handle dv_,
                                    py::handle dx_, int64_t stream) {
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
  dv = optional_output(dv_, "dv", v, out_shape(p.batch, p.N), p.dv);
  dx = optional_output(dx_, "dx", v, out_shape(p.batch, p.N), p.dx);
  launch(v, stream, p);
}

// The draw's options, as StepEngine.run and sample_tokens take them.
void check_draw_options(double temperature, double top_p) {
  if (!(temperature > 0) || !std::isfinite(temperature)) throw py::value_error("temperature: expected a positive number");
  if (!(top_p > 0 && top_p <= 1)) throw py::value_error("top_p: expected a probability in (0, 1]");
}

// ---- the step engine (EngineParams) ----
// Everything a program can touch is checked once here, when the engine is built: each
// operand's rows (or parameter extent) lie inside its array, so a run cannot read or
// write out of bounds whatever the program says.
class StepEngine {
 public:
  StepEngine(py::list buffers, std::vector<int64_t> code, std::vector<int64_t> program_start,
             std::vector<std::vector<int64_t>> views, int64_t batch, int64_t logits_view,
             int64_t n_classes, std::vector<int64_t> sections)
      : code_(std::move(code)), start_(std::move(program_start)), batch_(batch),
        logits_view_(logits_view), n_classes_(n_classes), section_(std::move(sections)) {
    if (batch < 1) throw py::value_error("batch: expected a positive integer, got " + std::to_string(batch));
    std::vector<int64_t> numel;
    for (size_t i = 0; i < buffers.size(); ++i) {
      const std::string name = "buffers[" + std::to_string(i) + "]";
      buffers_.push_back(view(buffers[i], name.c_str()));
      const Array& a = buffers_.back();
      if (a.is_cuda() || a.device_type != 1) throw py::value_error(name + ": expected a CPU array, got one on " + a.device());
      if (a.kind != Kind::float32) throw py::type_error(name + ": expected float32, got " + a.dtype);
      require_contiguous(a);
      if (a.read_only) throw py::value_error(name + ": expected a writable array, got a read-only one");
      int64_t n = 1;
      for (int64_t d : a.shape) n *= d;
      numel.push_back(n);
    }
    for (size_t i = 0; i < views.size(); ++i) {
      const auto& v = views[i];
      if (v.size() != 3 || v[0] < 0 || v[0] >= int64_t(buffers_.size()) || v[1] < 0 || v[2] < 0)
        throw py::value_error("views[" + std::to_string(i) + "]: expected (buffer, offset >= 0, row stride >= 0) naming one of " +
                              std::to_string(buffers_.size()) + " buffers");
      ptr_.push_back(static_cast<float*>(buffers_[v[0]].data) + v[1]);
      stride_.push_back(v[2]);
      view_buffer_.push_back(v[0]);
      view_end_.push_back(numel[v[0]] - v[1]);  // floats from the view's start to its buffer's end
    }
    const int64_t cycle = int64_t(start_.size()) - 1;
    if (cycle < 1 || start_[0] != 0 || start_.back() != int64_t(code_.size()))
      throw py::value_error("program_start: expected (cycle + 1) offsets from 0 to len(code)");
    for (int64_t k = 0; k < cycle; ++k) {
      if (start_[k + 1] < start_[k]) throw py::value_error("program_start: expected non-decreasing offsets");
      check_program(k);
    }
    check_sections(cycle);
    rows(logits_view, n_classes, "logits_view");
    if (n_classes > vocab_) throw py::value_error("n_classes: sampled tokens would pass the embedding's " + std::to_string(vocab_) + " rows");
  }

  // Runs `steps` steps from phase `phase`; returns the first step whose logits could
  // not be sampled (not finite), or -1.
  int64_t run(int64_t phase, int64_t steps, py::handle token_, py::handle tokens_in_,
              py::handle uniforms_, py::handle samples_, py::handle logits_, double temperature,
              double top_p) {
    const int64_t cycle = int64_t(start_.size()) - 1;
    if (phase < 0 || phase >= cycle) throw py::value_error("phase: expected 0 <= phase < " + std::to_string(cycle) + ", got " + std::to_string(phase));
    if (steps < 0) throw py::value_error("steps: expected >= 0, got " + std::to_string(steps));
    check_draw_options(temperature, top_p);
    const Array token = view(token_, "token");
    io(token, "int64", {batch_}, "(batch,)", true);
    check_tokens(static_cast<const int64_t*>(token.data), batch_, "token");
    EngineParams p;
    Array tokens_in, uniforms, samples, logits;
    if (!tokens_in_.is_none()) {
      tokens_in = view(tokens_in_, "tokens_in");
      io(tokens_in, "int64", {steps, batch_}, "(steps, batch)", false);
      check_tokens(static_cast<const int64_t*>(tokens_in.data), steps * batch_, "tokens_in");
      p.tokens_in = static_cast<const int64_t*>(tokens_in.data);
    }
    if (!uniforms_.is_none()) {
      uniforms = view(uniforms_, "uniforms");
      io(uniforms, "float64", {steps, batch_}, "(steps, batch)", false);
      samples = view(samples_, "samples");
      io(samples, "int64", {steps, batch_}, "(steps, batch)", true);
      p.uniforms = static_cast<const double*>(uniforms.data);
      p.samples = static_cast<int64_t*>(samples.data);
    }
    if (!logits_.is_none()) {
      logits = view(logits_, "logits");
      io(logits, "float32", {steps, batch_, n_classes_}, "(steps, batch, n_classes)", true);
      p.logits_out = static_cast<float*>(logits.data);
    }
    p.batch = batch_, p.steps = steps, p.cycle = cycle, p.phase = phase, p.threads = num_threads();
    p.code = code_.data(), p.program_start = start_.data();
    p.view_ptr = ptr_.data(), p.view_stride = stride_.data();
    p.logits_view = logits_view_, p.n_classes = n_classes_;
    p.token = static_cast<int64_t*>(token.data);
    p.temperature = temperature, p.top_p = top_p;
    int64_t bad = -1;
    p.bad_step = &bad;
    p.split_marks = split_marks_.data(), p.split_team = &split_team_;
    if (!section_.empty()) p.section = section_.data(), p.async_joins = async_joins_.data();
    {
      py::gil_scoped_release nogil;
      // One run at a time: runs share the state arrays and the split plan. (Locked
      // without the GIL: a waiting caller must not hold it while this run finishes.)
      std::lock_guard<std::mutex> one_run(run_mutex_);
      engine_run_cpu(p);
    }
    return bad;
  }

 private:
  std::vector<Array> buffers_;
  std::vector<int64_t> code_, start_;
  std::vector<float*> ptr_;
  std::vector<int64_t> stride_, view_buffer_, view_end_;
  int64_t batch_, logits_view_, n_classes_;
  int64_t vocab_ = std::numeric_limits<int64_t>::max();
  std::vector<uint8_t> split_marks_ = std::vector<uint8_t>(code_.size() + 1);  // EngineParams::split_marks
  int64_t split_team_ = 0;                                                      // EngineParams::split_team
  std::vector<int64_t> section_;                                                // EngineParams::section (empty: none)
  std::vector<uint8_t> async_joins_ = std::vector<uint8_t>(code_.size() + 1);   // EngineParams::async_joins
  std::mutex run_mutex_;

  void view_index(int64_t v, const std::string& what) const {
    if (v < 0 || v >= int64_t(ptr_.size()))
      throw py::value_error(what + ": expected a view index below " + std::to_string(ptr_.size()) + ", got " + std::to_string(v));
  }
  // A per-row operand: batch rows of `width` floats, rows apart (no overlap).
  void rows(int64_t v, int64_t width, const std::string& what) const {
    view_index(v, what);
    if (width < 1) throw py::value_error(what + ": expected a positive width, got " + std::to_string(width));
    if (stride_[v] < width || (batch_ - 1) * stride_[v] + width > view_end_[v])
      throw py::value_error(what + ": " + std::to_string(batch_) + " rows of " + std::to_string(width) +
                            " floats with row stride " + std::to_string(stride_[v]) + " do not fit in its buffer");
  }
  void rows_exact(int64_t v, int64_t width, const std::string& what) const {
    rows(v, width, what);
    if (stride_[v] != width) throw py::value_error(what + ": expected contiguous rows (stride " + std::to_string(width) + ")");
  }
  // A parameter: n floats, the same for every row (optional: -1 is none).
  void param(int64_t v, int64_t n, const std::string& what, bool optional = false) const {
    if (optional && v == -1) return;
    view_index(v, what);
    if (n < 0 || n > view_end_[v]) throw py::value_error(what + ": " + std::to_string(n) + " floats do not fit in its buffer");
  }
  void distinct(int64_t a, int64_t b, const std::string& what) const {
    if (view_buffer_[a] == view_buffer_[b]) throw py::value_error(what + ": the input and the output must be different buffers");
  }
  // sections: none, or (begin, end) per program, each -1, -1 or a run of whole
  // instructions of that program.
  void check_sections(int64_t cycle) const {
    if (section_.empty()) return;
    if (int64_t(section_.size()) != 2 * cycle)
      throw py::value_error("sections: expected none or 2 offsets per program (" + std::to_string(2 * cycle) + "), got " +
                            std::to_string(section_.size()));
    for (int64_t k = 0; k < cycle; ++k) {
      const int64_t b = section_[2 * k], e = section_[2 * k + 1];
      const std::string at = "sections of program " + std::to_string(k);
      if (b == -1 && e == -1) continue;
      bool begins = false, ends = false;
      for (int64_t i = start_[k]; i <= start_[k + 1]; i += i < start_[k + 1] ? kEngineOpLength[code_[i]] : 1)
        begins = begins || i == b, ends = ends || i == e;
      if (!(begins && ends && b < e)) throw py::value_error(at + ": expected instruction boundaries begin < end within the program, or -1, -1");
    }
  }
  void check_program(int64_t k) {
    for (int64_t i = start_[k]; i < start_[k + 1];) {
      const int64_t op = code_[i];
      const std::string at = "program " + std::to_string(k) + ", instruction at " + std::to_string(i);
      if (op < kEngineEmbed || op > kEngineNormLinear) throw py::value_error(at + ": unknown opcode " + std::to_string(op));
      if (i + kEngineOpLength[op] > start_[k + 1]) throw py::value_error(at + ": truncated instruction");
      const int64_t* c = code_.data() + i;
      switch (op) {
        case kEngineEmbed:
          rows(c[1], c[3], at);
          if (c[4] < 1) throw py::value_error(at + ": expected a positive vocabulary size");
          param(c[2], c[3] * c[4], at);
          vocab_ = std::min(vocab_, c[4]);
          break;
        case kEngineLayerNorm:
          rows(c[1], c[5], at), rows(c[2], c[5], at), param(c[3], c[5], at), param(c[4], c[5], at);
          break;
        case kEngineLinear:
        case kEngineNormLinear:
          rows(c[1], c[5], at), rows(c[2], c[6], at), distinct(c[1], c[2], at);
          param(c[3], c[5] * c[6], at), param(c[4], c[6], at, true);
          if (op == kEngineNormLinear) param(c[7], c[5], at), param(c[8], c[5], at);
          break;
        case kEngineGelu:
          rows(c[1], c[2], at);
          break;
        case kEngineGlu:
          rows(c[1], 2 * c[3], at), rows(c[2], c[3], at), distinct(c[1], c[2], at);
          break;
        case kEngineAdd:
          rows(c[1], c[4], at), rows(c[2], c[4], at), rows(c[3], c[4], at);
          break;
        case kEngineCopy:
          rows(c[1], c[3], at), rows(c[2], c[3], at);
          break;
        case kEngineDplrStep:
        case kEngineDiagStep: {
          const bool dplr = op == kEngineDplrStep;
          const int64_t H = dplr ? c[11] : c[8], N = dplr ? c[12] : c[9], r = dplr ? c[13] : 0;
          if (H < 1 || N < 1 || r < 0 || r > 64) throw py::value_error(at + ": expected H, N >= 1 and 0 <= r <= 64");
          rows_exact(c[1], 2 * H * N, at), rows_exact(c[2], H, at), rows_exact(c[3], H, at);
          distinct(c[2], c[3], at);
          if (dplr) {
            for (int j : {4, 5, 9}) param(c[j], 2 * H * N, at);
            param(c[6], 2 * H * r * N, at), param(c[7], 2 * H * r * N, at), param(c[8], H * r * r, at);
            param(c[10], H, at, true);
          } else {
            for (int j : {4, 5, 6}) param(c[j], 2 * H * N, at);
            param(c[7], H, at, true);
          }
          break;
        }
      }
      i += kEngineOpLength[op];
    }
  }
  static void io(const Array& a, const char* dtype, const std::vector<int64_t>& shape,
                 const char* layout, bool output) {
    if (a.device_type != 1) throw py::value_error(a.name + ": expected a CPU array, got one on " + a.device());
    if (a.dtype != dtype) throw py::type_error(a.name + ": expected " + dtype + ", got " + a.dtype);
    require_shape(a, shape, layout);
    require_contiguous(a);
    if (output && a.read_only) throw py::value_error(a.name + ": expected a writable array, got a read-only one");
  }
  void check_tokens(const int64_t* t, int64_t n, const std::string& name) const {
    for (int64_t i = 0; i < n; ++i)
      if (t[i] < 0 || t[i] >= std::min(vocab_, n_classes_))
        throw py::value_error(name + ": expected token ids in [0, " + std::to_string(std::min(vocab_, n_classes_)) +
                              "), got " + std::to_string(t[i]));
  }
};

// logits (rows, n) float32, uniforms (rows,) float64 -> out (rows,) int64: the engine's
// draw (softmax / temperature, top_p nucleus, inverse CDF in double precision).
void sample_tokens(py::handle logits_, py::handle uniforms_, double temperature, double top_p,
                   py::handle out_) {
  const Array logits = view(logits_, "logits"), u = view(uniforms_, "uniforms"), out = view(out_, "out");
  if (logits.device_type != 1 || logits.kind != Kind::float32 || logits.ndim() != 2 || !logits.contiguous())
    throw py::value_error("logits: expected a contiguous CPU float32 array (rows, n), got " + logits.dtype + " " + logits.shape_str());
  const int64_t rows = logits.shape[0], n = logits.shape[1];
  if (n < 1) throw py::value_error("logits: expected at least one class");
  if (u.device_type != 1 || u.kind != Kind::float64 || u.shape != std::vector<int64_t>{rows} || !u.contiguous())
    throw py::value_error("uniforms: expected a contiguous CPU float64 array (rows,), got " + u.dtype + " " + u.shape_str());
  if (out.device_type != 1 || out.dtype != "int64" || out.shape != std::vector<int64_t>{rows} || !out.contiguous() || out.read_only)
    throw py::value_error("out: expected a writable contiguous CPU int64 array (rows,), got " + out.dtype + " " + out.shape_str());
  check_draw_options(temperature, top_p);
  std::vector<double> work(3 * n);
  const float* l = static_cast<const float*>(logits.data);
  const double* uu = static_cast<const double*>(u.data);
  int64_t* o = static_cast<int64_t*>(out.data);
  for (int64_t r = 0; r < rows; ++r) {
    o[r] = sample_token_cpu(l + r * n, n, temperature, top_p, uu[r], work.data());
    if (o[r] < 0) throw py::value_error("logits: row " + std::to_string(r) + " is not finite (NaN or Inf): nothing to sample");
  }
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
  d["cuda_requested"] = SSMKIT_CUDA_REQUESTED;  // SSMKIT_CUDA at build time: AUTO, ON or OFF
  d["sanitizers"] = SSMKIT_SANITIZERS;  // "" in a normal build
  d["cuda_compiled"] = cuda_compiled();
  d["cuda_version"] = cuda_version();
  d["cuda_architectures"] = cuda_architectures();
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ssmkit compiled core (CPU kernels, CUDA kernels when built with CUDA)";
  m.def("cauchy", &cauchy, py::arg("v"), py::arg("z"), py::arg("w"), py::arg("out"),
        py::arg("conj_pairs") = true, py::arg("stream") = 0,
        "out[..., l] = sum_n v/(z_l - w_n) (+ conjugate pairs) into the preallocated out");
  m.def("cauchy_backward", &cauchy_backward, py::arg("grad"), py::arg("v"), py::arg("z"),
        py::arg("w"), py::arg("dv"), py::arg("dz"), py::arg("dw"), py::arg("conj_pairs") = true, py::arg("stream") = 0,
        "Gradients of cauchy into preallocated dv, dz, dw (each may be None)");
  m.def("discretize", &discretize, py::arg("dt"), py::arg("A"), py::arg("B"), py::arg("dA"),
        py::arg("dB"), py::arg("method"), py::arg("stream") = 0, "Discretize a diagonal SSM into preallocated dA, dB");
  m.def("discretize_backward", &discretize_backward, py::arg("dt"), py::arg("A"), py::arg("B"),
        py::arg("gdA"), py::arg("gdB"), py::arg("gdt"), py::arg("gA"), py::arg("gB"),
        py::arg("method"), py::arg("stream") = 0, "Gradients of discretize (outputs may be None)");
  m.def("ssm_step", &ssm_step, py::arg("state"), py::arg("u"), py::arg("dA"), py::arg("dB"),
        py::arg("dC"), py::arg("D"), py::arg("y"), py::arg("new_state"), py::arg("stream") = 0,
        "One step of the diagonal SSM into y and new_state (which may be state)");
  m.def("ssm_scan", &ssm_scan, py::arg("u"), py::arg("dA"), py::arg("dB"), py::arg("dC"),
        py::arg("D"), py::arg("state0"), py::arg("y"), py::arg("state"), py::arg("stream") = 0,
        "The diagonal SSM over a sequence into y and the final state");
  m.def("ssm_scan_backward", &ssm_scan_backward, py::arg("u"), py::arg("dA"), py::arg("dB"),
        py::arg("dC"), py::arg("D"), py::arg("state0"), py::arg("gy"), py::arg("gstate"),
        py::arg("gu"), py::arg("gdA"), py::arg("gdB"), py::arg("gdC"), py::arg("gD"),
        py::arg("gstate0"), py::arg("stream") = 0, "Gradients of ssm_scan by a reverse scan (per batch element)");
  m.def("dplr_step", &dplr_step, py::arg("state"), py::arg("u"), py::arg("dA"), py::arg("dB"),
        py::arg("P"), py::arg("Pd"), py::arg("R"), py::arg("C"), py::arg("D"), py::arg("y"),
        py::arg("new_state"), py::arg("stream") = 0, "One bilinear DPLR step from dplr_setup's factors");
  m.def("vandermonde", &vandermonde, py::arg("v"), py::arg("x"), py::arg("L"), py::arg("out"),
        py::arg("conj_pairs") = true, py::arg("stream") = 0,
        "out[..., l] = sum_n v_n exp(x_n l), l < L (2 Re(...) with conj_pairs) into out");
  m.def("vandermonde_backward", &vandermonde_backward, py::arg("grad"), py::arg("v"),
        py::arg("x"), py::arg("dv"), py::arg("dx"), py::arg("conj_pairs") = true, py::arg("stream") = 0,
        "Gradients of vandermonde into preallocated dv, dx (each may be None)");
  m.def("vandermonde_transpose", &vandermonde_transpose, py::arg("u"), py::arg("v"),
        py::arg("x"), py::arg("out"), py::arg("stream") = 0,
        "out[..., n] = v_n sum_l u_l exp(x_n l) into the preallocated out");
  m.def("vandermonde_transpose_backward", &vandermonde_transpose_backward, py::arg("grad"),
        py::arg("u"), py::arg("v"), py::arg("x"), py::arg("du"), py::arg("dv"), py::arg("dx"), py::arg("stream") = 0,
        "Gradients of vandermonde_transpose into preallocated du, dv, dx (each may be None)");
  py::class_<StepEngine>(m, "StepEngine",
                         "Straight-line step programs run many steps per call (EngineParams in ssmkit.h)")
      .def(py::init<py::list, std::vector<int64_t>, std::vector<int64_t>, std::vector<std::vector<int64_t>>,
                    int64_t, int64_t, int64_t, std::vector<int64_t>>(),
           py::arg("buffers"), py::arg("code"), py::arg("program_start"), py::arg("views"),
           py::arg("batch"), py::arg("logits_view"), py::arg("n_classes"), py::arg("sections") = std::vector<int64_t>())
      .def("run", &StepEngine::run, py::arg("phase"), py::arg("steps"), py::arg("token"),
           py::arg("tokens_in"), py::arg("uniforms"), py::arg("samples"), py::arg("logits"),
           py::arg("temperature") = 1.0, py::arg("top_p") = 1.0,
           "Run steps; returns the first step whose logits were not finite, or -1");
  m.attr("engine_ops") = py::dict(
      py::arg("embed") = int64_t(kEngineEmbed), py::arg("layer_norm") = int64_t(kEngineLayerNorm),
      py::arg("linear") = int64_t(kEngineLinear), py::arg("gelu") = int64_t(kEngineGelu),
      py::arg("glu") = int64_t(kEngineGlu), py::arg("add") = int64_t(kEngineAdd),
      py::arg("copy") = int64_t(kEngineCopy), py::arg("dplr_step") = int64_t(kEngineDplrStep),
      py::arg("diag_step") = int64_t(kEngineDiagStep), py::arg("norm_linear") = int64_t(kEngineNormLinear));
  m.attr("engine_op_lengths") = py::tuple(py::cast(std::vector<int64_t>(std::begin(kEngineOpLength), std::end(kEngineOpLength))));
  m.def("sample_tokens", &sample_tokens, py::arg("logits"), py::arg("uniforms"),
        py::arg("temperature"), py::arg("top_p"), py::arg("out"),
        "One token per row of logits from its uniform (the step engine's draw)");
  m.def("build_info", &build_info, "How this build was made and what it runs with");
  m.def("cuda_devices", &cuda_devices, "CUDA devices visible to ssmkit's CUDA runtime");
  m.def(
      "cuda_device_facts",
      [](int index) {
        const CudaDeviceFacts f = cuda_device_facts(index);
        py::dict d;
        d["sm_count"] = f.sm_count, d["major"] = f.major, d["minor"] = f.minor;
        d["clock_khz"] = f.clock_khz, d["memory_clock_khz"] = f.memory_clock_khz;
        d["memory_bus_bits"] = f.memory_bus_bits;
        return d;
      },
      py::arg("index"), "SM count, compute capability, clocks and memory bus width of a CUDA device");
  m.def("get_num_threads", &num_threads, "Threads the CPU kernels use");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the threads the CPU kernels use (for calls from this thread)");
}
