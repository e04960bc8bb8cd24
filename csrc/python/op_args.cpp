#include "op_args.h"

#include <cmath>

namespace py = pybind11;

namespace ssmkit::py_arrays {

#define SSMKIT_DEFINE_RUN_OP(name, Params)                 \
  void run_op(const Params& p, bool cuda, void* stream) { \
    if (cuda)                                              \
      name##_cuda(p, stream);                              \
    else                                                   \
      name##_cpu(p);                                       \
  }
SSMKIT_OPS(SSMKIT_DEFINE_RUN_OP)
#undef SSMKIT_DEFINE_RUN_OP

namespace {

bool present(const Array& a) { return !a.name.empty(); }

std::vector<int64_t> out_shape(const Batch& b, int64_t last) {
  std::vector<int64_t> s(b.shape, b.shape + b.ndim);
  s.push_back(last);
  return s;
}

// An output that may be absent (not needed; dst left null): checked (like's dtype and
// device, the shape, contiguous, writable), its pointer stored in dst.
void output(const Array& a, const Array& like, const std::vector<int64_t>& shape, void*& dst) {
  if (!present(a)) return;
  require_writable_output(a, like, shape);
  dst = a.data;
}

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

// ---- discretization and stepping ----
// Every array is checked for device, dtype (complex operands share one dtype, real
// ones are its real partner), exact shape and contiguity, each error naming the
// argument. The optional ones may be absent.

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
  // An output that may be absent (not needed): checked as out_, its pointer stored in dst.
  void opt_out_(const Array& a, const Array& like, const std::vector<int64_t>& shape, void*& dst) const {
    if (present(a)) out_(a, like, shape), dst = a.data;
  }
  // A complex input that may be absent (null).
  void opt_complex_(const Array& a, const std::vector<int64_t>& shape, const char* layout,
                    const void*& dst) const {
    if (present(a)) complex_(a, shape, layout), dst = a.data;
  }
};

Discretization method_of(const std::string& m) {
  if (m == "zoh") return Discretization::zoh;
  if (m == "bilinear") return Discretization::bilinear;
  throw py::value_error("method: expected \"zoh\" or \"bilinear\", got \"" + m + "\"");
}

// dt (H,), already checked against the complex operand A: step sizes must be positive
// and finite. CUDA data cannot be read here without a sync (the kernels turn dt <= 0 into
// NaN instead); shapes checked without data (a JAX trace) have none to read.
void check_step_sizes(const Array& dt, const Array& A) {
  const bool readable = !A.is_cuda() && dt.data != nullptr;
  for (int64_t h = 0; h < (readable ? dt.shape[0] : 0); ++h) {
    const double v = A.kind == Kind::complex64 ? static_cast<const float*>(dt.data)[h]
                                               : static_cast<const double*>(dt.data)[h];
    if (!(v > 0) || std::isinf(v))
      throw py::value_error("dt: expected positive, finite step sizes, got dt[" + std::to_string(h) +
                            "] = " + std::to_string(v));
  }
}

// dt, A, B of discretize and its backward. The complex operand A: (H, N) is checked
// first; everything else follows it.
Checked check_discretize(const Array& dt, const Array& A, const Array& B, const std::string& method,
                         const char* op, DiscretizeInputs& p) {
  p.method = method_of(method);
  require_cpu_or_cuda_build(A, op);
  require_complex(A);
  if (A.ndim() != 2) throw py::value_error("A: expected shape (H, N), got " + A.shape_str());
  Checked c{&A, op};
  c.complex_(A, A.shape, "(H, N)");
  c.complex_(B, A.shape, "(H, N) like A");
  c.real_(dt, {A.shape[0]}, "(H,) like A's first dimension");
  p.dtype = dtype_of(A);
  p.H = A.shape[0], p.N = A.shape[1];
  p.dt = dt.data, p.A = A.data, p.B = B.data;
  check_step_sizes(dt, A);
  return c;
}

// dA: (H, N) fixes H, N, dtype and device; dB, dC follow it; D: (H,) real or absent.
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
  if (present(D)) c.real_(D, {dA.shape[0]}, "(H,) like dA's first dimension");
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

// The parameters of a diagonal SSM (dA, dB, dC, D) and the input u into p.
Checked check_diagonal(const Array& dA, const Array& dB, const Array& dC, const Array& D,
                       const Array& u, const char* op, int64_t u_ndim, DiagonalSSM& p) {
  const Checked c = check_params(dA, dB, dC, D, op);
  p.dtype = dtype_of(dA);
  p.H = dA.shape[0], p.N = dA.shape[1];
  check_u(c, u, p.H, u_ndim);
  p.batch = u.shape[0];
  p.dA = dA.data, p.dB = dB.data, p.dC = dC.data, p.D = D.data;
  return c;
}

// The inputs of a scan (forward or backward: u, dA, dB, dC, D, state0) into p.
Checked check_scan(const Array* a, const char* op, ScanInputs& p) {
  const Checked c = check_diagonal(a[1], a[2], a[3], a[4], a[0], op, 3, p);
  p.L = a[0].shape[1];
  p.u = a[0].data;
  c.opt_complex_(a[5], {p.batch, p.H, p.N}, "(batch, H, N) with batch from u", p.state0);
  return c;
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
  const Array& like = out;  // same dtype and device as out: only shape, contiguity, writability
  require_writable_output(out, like, shape);
  require_same_device(out, ref);
}

int64_t check_length(int64_t L) {
  if (L < 0) throw py::value_error("L: expected a non-negative length, got " + std::to_string(L));
  return L;
}

// u: real (batch, L, H) fixes dtype and device; k: (c, H, L) with c = 1 (causal) or 2
// (bidirectional) like u. Both contiguous (the Python layer copies).
void check_fft_conv(const Array& u, const Array& k, const char* op, FftConvInputs& p) {
  require_cpu_or_cuda_build(u, op);
  require_cpu_or_cuda_build(k, op);
  require_real(u);
  if (u.ndim() != 3) throw py::value_error("u: expected shape (batch, L, H), got " + u.shape_str());
  require_contiguous(u);
  require_same_dtype(k, u);
  require_same_device(k, u);
  if (k.ndim() != 3 || (k.shape[0] != 1 && k.shape[0] != 2) || k.shape[1] != u.shape[2] ||
      k.shape[2] != u.shape[1])
    throw py::value_error("k: expected shape (c, H, L) with c = 1 (causal) or 2 (bidirectional) and H = " +
                          std::to_string(u.shape[2]) + ", L = " + std::to_string(u.shape[1]) +
                          " as in u, got " + k.shape_str());
  require_contiguous(k);
  p.dtype = dtype_of(u);
  p.batch = u.shape[0], p.L = u.shape[1], p.H = u.shape[2], p.c = k.shape[0];
  p.u = u.data, p.k = k.data;
}

}  // namespace

#define SSMKIT_OP_ARGS(Params, inputs_, rank_, ...)                            \
  const std::vector<ArrayArg> OpArgs<Params>::arrays = {__VA_ARGS__};          \
  const int OpArgs<Params>::inputs = inputs_, OpArgs<Params>::rank = rank_;

SSMKIT_OP_ARGS(CauchyParams, 3, 0, {"v", false}, {"z", false}, {"w", false}, {"out", false})
void OpArgs<CauchyParams>::prepare(const Array* a, const Options& o, CauchyParams& p) {
  const Array &v = a[0], &z = a[1], &w = a[2];
  check_cauchy_operands(op, v, z, w, {}, p);
  p.conj_pairs = o.conj_pairs;
  p.v = as_in(v), p.z = as_in(z), p.w = as_in(w);
  broadcast_batch({&v, &z, &w}, p.batch, {&p.v, &p.z, &p.w});
  output(a[3], v, out_shape(p.batch, p.L), p.out);
}

SSMKIT_OP_ARGS(CauchyBackwardParams, 4, 0, {"grad", false}, {"v", false}, {"z", false},
               {"w", false}, {"dv", true}, {"dz", true}, {"dw", true})
void OpArgs<CauchyBackwardParams>::prepare(const Array* a, const Options& o, CauchyBackwardParams& p) {
  const Array &grad = a[0], &v = a[1], &z = a[2], &w = a[3];
  check_cauchy_operands(op, v, z, w, {&grad}, p);
  require_same_dtype(grad, v);
  require_same_device(grad, v);
  require_min_ndim(grad, 1, "(..., L)");
  require_last_dim(grad, p.L, "L", z);
  p.conj_pairs = o.conj_pairs;
  p.grad = as_in(grad), p.v = as_in(v), p.z = as_in(z), p.w = as_in(w);
  broadcast_batch({&grad, &v, &z, &w}, p.batch, {&p.grad, &p.v, &p.z, &p.w});
  // The gradients have the full broadcast batch shape.
  output(a[4], v, out_shape(p.batch, p.N), p.dv);
  output(a[5], v, out_shape(p.batch, p.L), p.dz);
  output(a[6], v, out_shape(p.batch, p.N), p.dw);
}

SSMKIT_OP_ARGS(DiscretizeParams, 3, 1, {"dt", false, 'H'}, {"A", false, 'H'}, {"B", false, 'H'}, {"dA", false, 'H'},
               {"dB", false, 'H'})
void OpArgs<DiscretizeParams>::prepare(const Array* a, const Options& o, DiscretizeParams& p) {
  const Checked c = check_discretize(a[0], a[1], a[2], o.method, op, p);
  c.out_(a[3], a[1], a[1].shape);
  c.out_(a[4], a[1], a[1].shape);
  p.dA = a[3].data, p.dB = a[4].data;
}

SSMKIT_OP_ARGS(DiscretizeBackwardParams, 5, 1, {"dt", false, 'H'}, {"A", false, 'H'}, {"B", false, 'H'},
               {"gdA", true, 'H'}, {"gdB", true, 'H'}, {"gdt", true, 'H'}, {"gA", true, 'H'}, {"gB", true, 'H'})
void OpArgs<DiscretizeBackwardParams>::prepare(const Array* a, const Options& o,
                                               DiscretizeBackwardParams& p) {
  const Array &dt = a[0], &A = a[1];
  const Checked c = check_discretize(dt, A, a[2], o.method, op, p);
  c.opt_complex_(a[3], A.shape, "(H, N) like A", p.gdA);
  c.opt_complex_(a[4], A.shape, "(H, N) like A", p.gdB);
  c.opt_out_(a[5], dt, dt.shape, p.gdt);
  c.opt_out_(a[6], A, A.shape, p.gA);
  c.opt_out_(a[7], A, A.shape, p.gB);
}

SSMKIT_OP_ARGS(StepParams, 6, 3, {"state", false, 'b'}, {"u", false, 'b'}, {"dA", false, 'H'}, {"dB", false, 'H'},
               {"dC", false, 'H'}, {"D", true, 'H'}, {"y", false, 'b'}, {"out", false, 'b'})
void OpArgs<StepParams>::prepare(const Array* a, const Options&, StepParams& p) {
  const Array &state = a[0], &u = a[1];
  const Checked c = check_diagonal(a[2], a[3], a[4], a[5], u, op, 2, p);
  c.complex_(state, {p.batch, p.H, p.N}, "(batch, H, N) with batch from u and H, N from dA");
  c.out_(a[6], u, u.shape);
  c.out_(a[7], state, state.shape);
  p.state = state.data, p.u = u.data, p.y = a[6].data, p.new_state = a[7].data;
}

SSMKIT_OP_ARGS(ScanParams, 6, 3, {"u", false, 'b'}, {"dA", false, 'H'}, {"dB", false, 'H'}, {"dC", false, 'H'},
               {"D", true, 'H'}, {"state", true, 'b'}, {"y", false, 'b'}, {"final_state", false, 'b'})
void OpArgs<ScanParams>::prepare(const Array* a, const Options&, ScanParams& p) {
  const Checked c = check_scan(a, op, p);
  c.out_(a[6], a[0], a[0].shape);
  c.out_(a[7], a[1], {p.batch, p.H, p.N});
  p.y = a[6].data, p.state = a[7].data;
}

SSMKIT_OP_ARGS(ScanBackwardParams, 8, 3, {"u", false, 'b'}, {"dA", false, 'H'}, {"dB", false, 'H'},
               {"dC", false, 'H'}, {"D", true, 'H'}, {"state", true, 'b'}, {"gy", false, 'b'}, {"gstate", true, 'b'},
               {"gu", true, 'b'}, {"gdA", true, 'b'}, {"gdB", true, 'b'}, {"gdC", true, 'b'}, {"gD", true, 'b'},
               {"gstate0", true, 'b'})
void OpArgs<ScanBackwardParams>::prepare(const Array* a, const Options&, ScanBackwardParams& p) {
  const Checked c = check_scan(a, op, p);
  const Array &u = a[0], &dA = a[1];
  const std::vector<int64_t> sshape{p.batch, p.H, p.N}, pshape{p.batch, p.H};
  c.real_(a[6], u.shape, "(batch, L, H) like u");
  p.gy = a[6].data;
  c.opt_complex_(a[7], sshape, "(batch, H, N)", p.gstate);
  c.opt_out_(a[8], u, u.shape, p.gu);
  c.opt_out_(a[9], dA, sshape, p.gdA);
  c.opt_out_(a[10], dA, sshape, p.gdB);
  c.opt_out_(a[11], dA, sshape, p.gdC);
  c.opt_out_(a[12], u, pshape, p.gD);
  c.opt_out_(a[13], dA, sshape, p.gstate0);
}

SSMKIT_OP_ARGS(DplrStepParams, 8, 3, {"state", false, 'b'}, {"u", false, 'b'}, {"dA", false, 'H'},
               {"dB", false, 'H'}, {"Pd", false, 'H'}, {"Q", false, 'H'}, {"C", false, 'H'}, {"D", true, 'H'},
               {"y", false, 'b'}, {"out", false, 'b'})
void OpArgs<DplrStepParams>::prepare(const Array* a, const Options&, DplrStepParams& p) {
  const Array &state = a[0], &u = a[1], &dA = a[2], &Pd = a[4], &D = a[7];
  const Checked c = check_params(dA, a[3], a[6], D, op);
  const int64_t H = dA.shape[0], N = dA.shape[1];
  if (Pd.ndim() != 3 || Pd.shape[0] != H || Pd.shape[2] != N)
    throw py::value_error("Pd: expected shape (H, r, N) with H, N as in dA, got " + Pd.shape_str());
  const int64_t r = Pd.shape[1];
  if (r > 64) throw py::value_error("Pd: ranks up to 64 are supported, got r = " + std::to_string(r));
  c.complex_(Pd, Pd.shape, "(H, r, N)");
  c.complex_(a[5], Pd.shape, "(H, r, N) like Pd");
  check_u(c, u, H, 2);
  const int64_t batch = u.shape[0];
  c.complex_(state, {batch, H, N}, "(batch, H, N) with batch from u and H, N from dA");
  c.out_(a[8], u, u.shape);
  c.out_(a[9], state, state.shape);
  p.dtype = dtype_of(dA);
  p.batch = batch, p.H = H, p.N = N, p.r = r;
  p.state = state.data, p.u = u.data, p.a = dA.data, p.b = a[3].data, p.Pd = Pd.data;
  p.Q = a[5].data, p.C = a[6].data, p.D = D.data, p.y = a[8].data;
  p.new_state = a[9].data;
}

SSMKIT_OP_ARGS(DplrUntruncatedCParams, 4, 1, {"dt", false, 'H'}, {"Lambda", false, 'H'}, {"P", false, 'H'},
               {"C", false, 'H'}, {"out", false, 'H'})
void OpArgs<DplrUntruncatedCParams>::prepare(const Array* a, const Options& o, DplrUntruncatedCParams& p) {
  const Array &dt = a[0], &Lambda = a[1], &P = a[2];
  require_cpu_or_cuda_build(Lambda, op);
  require_complex(Lambda);
  if (Lambda.ndim() != 2) throw py::value_error("Lambda: expected shape (H, N), got " + Lambda.shape_str());
  const Checked c{&Lambda, op};
  c.complex_(Lambda, Lambda.shape, "(H, N)");
  const int64_t H = Lambda.shape[0], N = Lambda.shape[1];
  if (P.ndim() != 3 || P.shape[0] != H || P.shape[2] != N)
    throw py::value_error("P: expected shape (H, r, N) with H, N as in Lambda, got " + P.shape_str());
  if (P.shape[1] > 64) throw py::value_error("P: ranks up to 64 are supported, got r = " + std::to_string(P.shape[1]));
  c.complex_(P, P.shape, "(H, r, N)");
  c.complex_(a[3], Lambda.shape, "(H, N) like Lambda");
  c.real_(dt, {H}, "(H,) like Lambda's first dimension");
  check_step_sizes(dt, Lambda);
  // L is no array's length, so nothing else bounds it; 2^32 keeps every size the kernels
  // derive from it far inside 64 bits (such a call fails to allocate, as it should).
  if (o.L < 1 || o.L > (int64_t(1) << 32))
    throw py::value_error("L: expected a kernel length from 1 to 2^32, got " + std::to_string(o.L));
  c.out_(a[4], Lambda, Lambda.shape);
  p.dtype = dtype_of(Lambda);
  p.H = H, p.N = N, p.r = P.shape[1], p.L = o.L;
  p.dt = dt.data, p.Lambda = Lambda.data, p.P = P.data, p.C = a[3].data, p.out = a[4].data;
}

SSMKIT_OP_ARGS(VandermondeParams, 2, 0, {"v", false}, {"x", false}, {"out", false})
void OpArgs<VandermondeParams>::prepare(const Array* a, const Options& o, VandermondeParams& p) {
  const Array &v = a[0], &x = a[1], &out = a[2];
  check_vandermonde_operands(op, v, x, {}, p);
  p.L = check_length(o.L);
  p.conj_pairs = o.conj_pairs;
  p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&v, &x}, p.batch, {&p.v, &p.x});
  if (o.conj_pairs)
    require_real_output(out, v, out_shape(p.batch, p.L));
  else
    require_writable_output(out, v, out_shape(p.batch, p.L));
  p.out = out.data;
}

SSMKIT_OP_ARGS(VandermondeBackwardParams, 3, 0, {"grad", false}, {"v", false}, {"x", false},
               {"dv", true}, {"dx", true})
void OpArgs<VandermondeBackwardParams>::prepare(const Array* a, const Options& o,
                                                VandermondeBackwardParams& p) {
  const Array &grad = a[0], &v = a[1], &x = a[2];
  check_vandermonde_operands(op, v, x, {&grad}, p);
  require_min_ndim(grad, 1, "(..., L)");
  if (check_real_or_like(grad, v) != o.conj_pairs)
    throw py::type_error(std::string("grad: expected a ") + (o.conj_pairs ? "real" : "complex") +
                         " gradient (conj_pairs=" + (o.conj_pairs ? "True" : "False") + "), got " +
                         grad.dtype);
  p.L = grad.size(-1);
  p.conj_pairs = o.conj_pairs;
  p.grad = as_in(grad), p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&grad, &v, &x}, p.batch, {&p.grad, &p.v, &p.x});
  output(a[3], v, out_shape(p.batch, p.N), p.dv);
  output(a[4], v, out_shape(p.batch, p.N), p.dx);
}

SSMKIT_OP_ARGS(VandermondeTransposeParams, 3, 0, {"u", false}, {"v", false}, {"x", false},
               {"out", false})
void OpArgs<VandermondeTransposeParams>::prepare(const Array* a, const Options&,
                                                 VandermondeTransposeParams& p) {
  const Array &u = a[0], &v = a[1], &x = a[2];
  check_vandermonde_operands(op, v, x, {&u}, p);
  require_min_ndim(u, 1, "(..., L)");
  p.u_real = check_real_or_like(u, v);
  p.L = u.size(-1);
  p.u = as_in(u), p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&u, &v, &x}, p.batch, {&p.u, &p.v, &p.x});
  output(a[3], v, out_shape(p.batch, p.N), p.out);
}

SSMKIT_OP_ARGS(VandermondeTransposeBackwardParams, 4, 0, {"grad", false}, {"u", false},
               {"v", false}, {"x", false}, {"du", true}, {"dv", true}, {"dx", true})
void OpArgs<VandermondeTransposeBackwardParams>::prepare(const Array* a, const Options&,
                                                         VandermondeTransposeBackwardParams& p) {
  const Array &grad = a[0], &u = a[1], &v = a[2], &x = a[3], &du = a[4];
  check_vandermonde_operands(op, v, x, {&u, &grad}, p);
  require_min_ndim(u, 1, "(..., L)");
  p.u_real = check_real_or_like(u, v);
  require_same_dtype(grad, v);
  require_same_device(grad, v);
  require_min_ndim(grad, 1, "(..., N)");
  require_last_dim(grad, p.N, "N", v);
  p.L = u.size(-1);
  p.grad = as_in(grad), p.u = as_in(u), p.v = as_in(v), p.x = as_in(x);
  broadcast_batch({&grad, &u, &v, &x}, p.batch, {&p.grad, &p.u, &p.v, &p.x});
  if (present(du)) {
    if (p.u_real)
      require_real_output(du, v, out_shape(p.batch, p.L));
    else
      require_writable_output(du, v, out_shape(p.batch, p.L));
    p.du = du.data;
  }
  output(a[5], v, out_shape(p.batch, p.N), p.dv);
  output(a[6], v, out_shape(p.batch, p.N), p.dx);
}

SSMKIT_OP_ARGS(FftConvParams, 2, 3, {"u", false, 'b'}, {"k", false}, {"y", false, 'b'})
void OpArgs<FftConvParams>::prepare(const Array* a, const Options&, FftConvParams& p) {
  check_fft_conv(a[0], a[1], op, p);
  output(a[2], a[0], a[0].shape, p.y);
}

SSMKIT_OP_ARGS(FftConvBackwardParams, 3, 3, {"u", false, 'b'}, {"k", false}, {"gy", false, 'b'},
               {"du", true, 'b'}, {"dk", true})
void OpArgs<FftConvBackwardParams>::prepare(const Array* a, const Options&, FftConvBackwardParams& p) {
  const Array &u = a[0], &gy = a[2];
  check_fft_conv(u, a[1], op, p);
  require_same_dtype(gy, u);
  require_same_device(gy, u);
  require_shape(gy, u.shape, "(batch, L, H) like u");
  require_contiguous(gy);
  p.gy = gy.data;
  output(a[3], u, u.shape, p.du);
  output(a[4], u, a[1].shape, p.dk);
}

#undef SSMKIT_OP_ARGS

}  // namespace ssmkit::py_arrays
