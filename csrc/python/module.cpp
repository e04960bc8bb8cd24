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

// Runs the op where ref's data lives, with the GIL released: on the CPU, or on ref's
// CUDA device (made current for the call) on `stream` (a cudaStream_t as an integer,
// 0 = the legacy default stream; ignored for CPU arrays).
template <typename P>
void launch(const Array& ref, int64_t stream, void (*cpu)(const P&),
            void (*gpu)(const P&, void*), const P& p) {
  py::gil_scoped_release nogil;
  if (ref.is_cuda()) {
    CudaDeviceGuard device(ref.device_id);
    gpu(p, reinterpret_cast<void*>(static_cast<intptr_t>(stream)));
  } else {
    cpu(p);
  }
}

std::vector<int64_t> out_shape(const Batch& b, int64_t last) {
  std::vector<int64_t> s(b.shape, b.shape + b.ndim);
  s.push_back(last);
  return s;
}

// An output that may be None (not needed): checked like any output, its pointer
// stored in dst (left null for None). Returns the view, which keeps the array alive.
Array optional_output(py::handle obj, const char* name, const Array& like,
                      const std::vector<int64_t>& shape, void*& dst) {
  if (obj.is_none()) return Array{};
  Array a = view(obj, name);
  require_writable_output(a, like, shape);
  dst = a.data;
  return a;
}

void cauchy(py::handle v_, py::handle z_, py::handle w_, py::handle out_, bool conj_pairs,
            int64_t stream) {
  const Array v = view(v_, "v"), z = view(z_, "z"), w = view(w_, "w");
  CauchyParams p;
  check_cauchy_operands("cauchy", v, z, w, {}, p);
  p.conj_pairs = conj_pairs;
  p.v = as_in(v), p.z = as_in(z), p.w = as_in(w);
  broadcast_batch({&v, &z, &w}, p.batch, {&p.v, &p.z, &p.w});
  const Array out = view(out_, "out");
  require_writable_output(out, v, out_shape(p.batch, p.L));
  p.out = out.data;
  launch(v, stream, cauchy_cpu, cauchy_cuda, p);
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
  launch(v, stream, cauchy_backward_cpu, cauchy_backward_cuda, p);
}

// ---- discretization and stepping (issue 4) ----
// Every array is checked for device, dtype (complex operands share one dtype, real
// ones are its real partner), exact shape and contiguity, each error naming the
// argument. The optional ones may be None.

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
};

Array view_opt(py::handle obj, const char* name) {
  return obj.is_none() ? Array{} : view(obj, name);
}

Discretization method_of(const std::string& m) {
  if (m == "zoh") return Discretization::zoh;
  if (m == "bilinear") return Discretization::bilinear;
  throw py::value_error("method: expected \"zoh\" or \"bilinear\", got \"" + m + "\"");
}

// The complex operand A: (H, N), checked first; everything else follows it.
template <typename Params>
Checked check_discretize(const Array& dt, const Array& A, const Array& B, const char* op,
                         Params& p) {
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

void discretize(py::handle dt_, py::handle A_, py::handle B_, py::handle dA_, py::handle dB_,
                const std::string& method, int64_t stream) {
  const Array dt = view(dt_, "dt"), A = view(A_, "A"), B = view(B_, "B");
  DiscretizeParams p;
  p.method = method_of(method);
  const Checked c = check_discretize(dt, A, B, "discretize", p);
  const Array dA = view(dA_, "dA"), dB = view(dB_, "dB");
  c.out_(dA, A, A.shape);
  c.out_(dB, A, A.shape);
  p.dA = dA.data, p.dB = dB.data;
  launch(A, stream, discretize_cpu, discretize_cuda, p);
}

void discretize_backward(py::handle dt_, py::handle A_, py::handle B_, py::handle gdA_,
                         py::handle gdB_, py::handle gdt_, py::handle gA_, py::handle gB_,
                         const std::string& method, int64_t stream) {
  const Array dt = view(dt_, "dt"), A = view(A_, "A"), B = view(B_, "B");
  DiscretizeBackwardParams p;
  p.method = method_of(method);
  const Checked c = check_discretize(dt, A, B, "discretize_backward", p);
  const Array gdA = view_opt(gdA_, "gdA"), gdB = view_opt(gdB_, "gdB");
  const Array gdt = view_opt(gdt_, "gdt"), gA = view_opt(gA_, "gA"),
              gB = view_opt(gB_, "gB");
  if (!gdA.name.empty()) c.complex_(gdA, A.shape, "(H, N) like A"), p.gdA = gdA.data;
  if (!gdB.name.empty()) c.complex_(gdB, A.shape, "(H, N) like A"), p.gdB = gdB.data;
  if (!gdt.name.empty()) c.out_(gdt, dt, dt.shape), p.gdt = gdt.data;
  if (!gA.name.empty()) c.out_(gA, A, A.shape), p.gA = gA.data;
  if (!gB.name.empty()) c.out_(gB, A, A.shape), p.gB = gB.data;
  launch(A, stream, discretize_backward_cpu, discretize_backward_cuda, p);
}

// dA: (H, N) fixes H, N, dtype and device; dB, dC follow it; D: (H,) real or None.
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

void ssm_step(py::handle state_, py::handle u_, py::handle dA_, py::handle dB_, py::handle dC_,
              py::handle D_, py::handle y_, py::handle new_state_, int64_t stream) {
  const Array dA = view(dA_, "dA"), dB = view(dB_, "dB"), dC = view(dC_, "dC");
  const Array D = view_opt(D_, "D");
  const Checked c = check_params(dA, dB, dC, D, "ssm_step");
  const Array state = view(state_, "state"), u = view(u_, "u");
  const int64_t H = dA.shape[0], N = dA.shape[1];
  if (u.ndim() != 2 || u.shape[1] != H)
    throw py::value_error("u: expected shape (batch, H) with H = " + std::to_string(H) +
                          " as in dA, got " + u.shape_str());
  const int64_t batch = u.shape[0];
  c.real_(u, {batch, H}, "(batch, H)");
  c.complex_(state, {batch, H, N}, "(batch, H, N) with batch from u and H, N from dA");
  const Array y = view(y_, "y"), ns = view(new_state_, "out");
  c.out_(y, u, {batch, H});
  c.out_(ns, state, state.shape);
  StepParams p;
  p.dtype = dtype_of(dA);
  p.batch = batch, p.H = H, p.N = N;
  p.state = state.data, p.u = u.data, p.dA = dA.data, p.dB = dB.data, p.dC = dC.data;
  p.D = D.data, p.y = y.data, p.new_state = ns.data;
  launch(dA, stream, ssm_step_cpu, ssm_step_cuda, p);
}

void ssm_scan(py::handle u_, py::handle dA_, py::handle dB_, py::handle dC_, py::handle D_,
              py::handle state0_, py::handle y_, py::handle state_, int64_t stream) {
  const Array dA = view(dA_, "dA"), dB = view(dB_, "dB"), dC = view(dC_, "dC");
  const Array D = view_opt(D_, "D");
  const Checked c = check_params(dA, dB, dC, D, "ssm_scan");
  const Array u = view(u_, "u"), state0 = view_opt(state0_, "state");
  const int64_t H = dA.shape[0], N = dA.shape[1];
  if (u.ndim() != 3 || u.shape[2] != H)
    throw py::value_error("u: expected shape (batch, L, H) with H = " + std::to_string(H) +
                          " as in dA, got " + u.shape_str());
  const int64_t batch = u.shape[0], L = u.shape[1];
  c.real_(u, u.shape, "(batch, L, H)");
  if (!state0.name.empty()) c.complex_(state0, {batch, H, N}, "(batch, H, N) with batch from u");
  const Array y = view(y_, "y"), st = view(state_, "final_state");
  c.out_(y, u, u.shape);
  c.out_(st, dA, {batch, H, N});
  ScanParams p;
  p.dtype = dtype_of(dA);
  p.batch = batch, p.L = L, p.H = H, p.N = N;
  p.u = u.data, p.dA = dA.data, p.dB = dB.data, p.dC = dC.data, p.D = D.data;
  p.state0 = state0.data, p.y = y.data, p.state = st.data;
  launch(dA, stream, ssm_scan_cpu, ssm_scan_cuda, p);
}

void ssm_scan_backward(py::handle u_, py::handle dA_, py::handle dB_, py::handle dC_,
                       py::handle D_, py::handle state0_, py::handle gy_, py::handle gstate_,
                       py::handle gu_, py::handle gdA_, py::handle gdB_, py::handle gdC_,
                       py::handle gD_, py::handle gstate0_, int64_t stream) {
  const Array dA = view(dA_, "dA"), dB = view(dB_, "dB"), dC = view(dC_, "dC");
  const Array D = view_opt(D_, "D");
  const Checked c = check_params(dA, dB, dC, D, "ssm_scan_backward");
  const Array u = view(u_, "u"), state0 = view_opt(state0_, "state");
  const int64_t H = dA.shape[0], N = dA.shape[1];
  if (u.ndim() != 3 || u.shape[2] != H)
    throw py::value_error("u: expected shape (batch, L, H), got " + u.shape_str());
  const int64_t batch = u.shape[0], L = u.shape[1];
  const std::vector<int64_t> sshape{batch, H, N}, pshape{batch, H};
  c.real_(u, u.shape, "(batch, L, H)");
  if (!state0.name.empty()) c.complex_(state0, sshape, "(batch, H, N)");
  const Array gy = view(gy_, "gy"), gstate = view_opt(gstate_, "gstate");
  c.real_(gy, u.shape, "(batch, L, H) like u");
  if (!gstate.name.empty()) c.complex_(gstate, sshape, "(batch, H, N)");
  const Array gu = view_opt(gu_, "gu"), gdA = view_opt(gdA_, "gdA"), gdB = view_opt(gdB_, "gdB");
  const Array gdC = view_opt(gdC_, "gdC"), gD = view_opt(gD_, "gD");
  const Array gs0 = view_opt(gstate0_, "gstate0");
  ScanBackwardParams p;
  if (!gu.name.empty()) c.out_(gu, u, u.shape), p.gu = gu.data;
  if (!gdA.name.empty()) c.out_(gdA, dA, sshape), p.gdA = gdA.data;
  if (!gdB.name.empty()) c.out_(gdB, dA, sshape), p.gdB = gdB.data;
  if (!gdC.name.empty()) c.out_(gdC, dA, sshape), p.gdC = gdC.data;
  if (!gD.name.empty()) c.out_(gD, u, pshape), p.gD = gD.data;
  if (!gs0.name.empty()) c.out_(gs0, dA, sshape), p.gstate0 = gs0.data;
  p.dtype = dtype_of(dA);
  p.batch = batch, p.L = L, p.H = H, p.N = N;
  p.u = u.data, p.dA = dA.data, p.dB = dB.data, p.dC = dC.data, p.D = D.data;
  p.state0 = state0.data, p.gy = gy.data, p.gstate = gstate.data;
  launch(dA, stream, ssm_scan_backward_cpu, ssm_scan_backward_cuda, p);
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
  if (u.ndim() != 2 || u.shape[1] != H)
    throw py::value_error("u: expected shape (batch, H) with H = " + std::to_string(H) +
                          ", got " + u.shape_str());
  const int64_t batch = u.shape[0];
  c.real_(u, u.shape, "(batch, H)");
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
  launch(a, stream, dplr_step_cpu, dplr_step_cuda, p);
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
  launch(v, stream, vandermonde_cpu, vandermonde_cuda, p);
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
  launch(v, stream, vandermonde_backward_cpu, vandermonde_backward_cuda, p);
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
  const Array out = view(out_, "out");
  require_writable_output(out, v, out_shape(p.batch, p.N));
  p.out = out.data;
  launch(v, stream, vandermonde_transpose_cpu, vandermonde_transpose_cuda, p);
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
  launch(v, stream, vandermonde_transpose_backward_cpu, vandermonde_transpose_backward_cuda, p);
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
  m.def("get_num_threads", &num_threads, "Threads the CPU kernels use");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the threads the CPU kernels use (for calls from this thread)");
}
