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

void register_engine(py::module_& m);  // engine.cpp: the step engine

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
  register_engine(m);
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
  m.def(
      "cpu_peaks",
      [](int64_t fma_iterations, int64_t stream_floats) {
        CpuPeaks r;
        {
          py::gil_scoped_release release;
          r = measure_cpu_peaks(fma_iterations, stream_floats);
        }
        py::dict d;
        d["flop"] = r.flops, d["byte"] = r.bytes_per_s, d["threads"] = r.threads;
        return d;
      },
      py::arg("fma_iterations"), py::arg("stream_floats"),
      "Measured FP32 FMA throughput (flop/s) and STREAM triad bandwidth (byte/s) on the kernels' threads");
  m.def("get_num_threads", &num_threads, "Threads the CPU kernels use");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the threads the CPU kernels use (for calls from this thread)");
}
