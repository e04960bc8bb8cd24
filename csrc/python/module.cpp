// ssmkit._C: the Python binding of the compiled core. Arrays come in through DLPack
// or the buffer protocol (arrays.h), are checked there, and the kernels run with the
// GIL released. Outputs are allocated by the caller (the Python layer).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "arrays.h"
#include "op_args.h"
#include "ssmkit/ssmkit.h"

namespace py = pybind11;
using namespace ssmkit;
using namespace ssmkit::py_arrays;

void register_engine(py::module_& m);  // engine.cpp: the step engine
namespace ssmkit::ffi {
void register_ffi(py::module_& m);  // csrc/ffi/handlers.cpp: the XLA FFI handlers, for JAX
}

namespace {

// Runs op P on the arrays `handles` (its array arguments in OpArgs<P>::arrays' order;
// None for an absent optional one) after its checks, with the GIL released: on the CPU,
// or on the CUDA device of the first array (made current for the call) on `stream` (a
// cudaStream_t as an integer, 0 = the legacy default stream; ignored for CPU arrays).
template <typename P>
void call(std::initializer_list<py::handle> handles, const Options& o, int64_t stream) {
  const std::vector<ArrayArg>& args = OpArgs<P>::arrays;
  std::vector<Array> a;
  a.reserve(args.size());
  auto h = handles.begin();
  for (const ArrayArg& arg : args) {
    a.push_back(arg.optional && h->is_none() ? Array{} : view(*h, arg.name));
    ++h;
  }
  P p;
  OpArgs<P>::prepare(a.data(), o, p);
  const Array& ref = a[0];
  py::gil_scoped_release nogil;
  if (ref.is_cuda()) {
    CudaDeviceGuard device(ref.device_id);
    run_op(p, true, reinterpret_cast<void*>(static_cast<intptr_t>(stream)));
  } else {
    run_op(p, false, nullptr);
  }
}

Options conj(bool conj_pairs) {
  Options o;
  o.conj_pairs = conj_pairs;
  return o;
}

Options method(const std::string& m) {
  Options o;
  o.method = m;
  return o;
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
  m.def(
      "cauchy",
      [](py::handle v, py::handle z, py::handle w, py::handle out, bool conj_pairs, int64_t stream) {
        call<CauchyParams>({v, z, w, out}, conj(conj_pairs), stream);
      },
      py::arg("v"), py::arg("z"), py::arg("w"), py::arg("out"),
      py::arg("conj_pairs") = true, py::arg("stream") = 0,
      "out[..., l] = sum_n v/(z_l - w_n) (+ conjugate pairs) into the preallocated out");
  m.def(
      "cauchy_backward",
      [](py::handle grad, py::handle v, py::handle z, py::handle w, py::handle dv, py::handle dz,
         py::handle dw, bool conj_pairs, int64_t stream) {
        call<CauchyBackwardParams>({grad, v, z, w, dv, dz, dw}, conj(conj_pairs), stream);
      },
      py::arg("grad"), py::arg("v"), py::arg("z"),
      py::arg("w"), py::arg("dv"), py::arg("dz"), py::arg("dw"), py::arg("conj_pairs") = true, py::arg("stream") = 0,
      "Gradients of cauchy into preallocated dv, dz, dw (each may be None)");
  m.def(
      "discretize",
      [](py::handle dt, py::handle A, py::handle B, py::handle dA, py::handle dB, const std::string& m,
         int64_t stream) { call<DiscretizeParams>({dt, A, B, dA, dB}, method(m), stream); },
      py::arg("dt"), py::arg("A"), py::arg("B"), py::arg("dA"),
      py::arg("dB"), py::arg("method"), py::arg("stream") = 0, "Discretize a diagonal SSM into preallocated dA, dB");
  m.def(
      "discretize_backward",
      [](py::handle dt, py::handle A, py::handle B, py::handle gdA, py::handle gdB, py::handle gdt,
         py::handle gA, py::handle gB, const std::string& m, int64_t stream) {
        call<DiscretizeBackwardParams>({dt, A, B, gdA, gdB, gdt, gA, gB}, method(m), stream);
      },
      py::arg("dt"), py::arg("A"), py::arg("B"),
      py::arg("gdA"), py::arg("gdB"), py::arg("gdt"), py::arg("gA"), py::arg("gB"),
      py::arg("method"), py::arg("stream") = 0, "Gradients of discretize (outputs may be None)");
  m.def(
      "ssm_step",
      [](py::handle state, py::handle u, py::handle dA, py::handle dB, py::handle dC, py::handle D,
         py::handle y, py::handle new_state, int64_t stream) {
        call<StepParams>({state, u, dA, dB, dC, D, y, new_state}, {}, stream);
      },
      py::arg("state"), py::arg("u"), py::arg("dA"), py::arg("dB"),
      py::arg("dC"), py::arg("D"), py::arg("y"), py::arg("new_state"), py::arg("stream") = 0,
      "One step of the diagonal SSM into y and new_state (which may be state)");
  m.def(
      "ssm_scan",
      [](py::handle u, py::handle dA, py::handle dB, py::handle dC, py::handle D, py::handle state0,
         py::handle y, py::handle state, int64_t stream) {
        call<ScanParams>({u, dA, dB, dC, D, state0, y, state}, {}, stream);
      },
      py::arg("u"), py::arg("dA"), py::arg("dB"), py::arg("dC"),
      py::arg("D"), py::arg("state0"), py::arg("y"), py::arg("state"), py::arg("stream") = 0,
      "The diagonal SSM over a sequence into y and the final state");
  m.def(
      "ssm_scan_backward",
      [](py::handle u, py::handle dA, py::handle dB, py::handle dC, py::handle D, py::handle state0,
         py::handle gy, py::handle gstate, py::handle gu, py::handle gdA, py::handle gdB,
         py::handle gdC, py::handle gD, py::handle gstate0, int64_t stream) {
        call<ScanBackwardParams>({u, dA, dB, dC, D, state0, gy, gstate, gu, gdA, gdB, gdC, gD, gstate0},
                                 {}, stream);
      },
      py::arg("u"), py::arg("dA"), py::arg("dB"),
      py::arg("dC"), py::arg("D"), py::arg("state0"), py::arg("gy"), py::arg("gstate"),
      py::arg("gu"), py::arg("gdA"), py::arg("gdB"), py::arg("gdC"), py::arg("gD"),
      py::arg("gstate0"), py::arg("stream") = 0, "Gradients of ssm_scan by a reverse scan (per batch element)");
  m.def(
      "dplr_step",
      [](py::handle state, py::handle u, py::handle a, py::handle b, py::handle Pd, py::handle Q,
         py::handle C, py::handle D, py::handle y, py::handle new_state, int64_t stream) {
        call<DplrStepParams>({state, u, a, b, Pd, Q, C, D, y, new_state}, {}, stream);
      },
      py::arg("state"), py::arg("u"), py::arg("dA"), py::arg("dB"),
      py::arg("Pd"), py::arg("Q"), py::arg("C"), py::arg("D"), py::arg("y"),
      py::arg("new_state"), py::arg("stream") = 0, "One bilinear DPLR step from dplr_setup's factors");
  m.def(
      "dplr_untruncated_C",
      [](py::handle dt, py::handle Lambda, py::handle P, py::handle C, int64_t L, py::handle out, int64_t stream) {
        Options o;
        o.L = L;
        call<DplrUntruncatedCParams>({dt, Lambda, P, C, out}, o, stream);
      },
      py::arg("dt"), py::arg("Lambda"), py::arg("P"), py::arg("C"), py::arg("L"), py::arg("out"),
      py::arg("stream") = 0, "C~ (I - dA^L)^{-1} of a DPLR system (the step's C) into the preallocated out");
  m.def(
      "vandermonde",
      [](py::handle v, py::handle x, int64_t L, py::handle out, bool conj_pairs, int64_t stream) {
        Options o = conj(conj_pairs);
        o.L = L;
        call<VandermondeParams>({v, x, out}, o, stream);
      },
      py::arg("v"), py::arg("x"), py::arg("L"), py::arg("out"),
      py::arg("conj_pairs") = true, py::arg("stream") = 0,
      "out[..., l] = sum_n v_n exp(x_n l), l < L (2 Re(...) with conj_pairs) into out");
  m.def(
      "vandermonde_backward",
      [](py::handle grad, py::handle v, py::handle x, py::handle dv, py::handle dx, bool conj_pairs,
         int64_t stream) { call<VandermondeBackwardParams>({grad, v, x, dv, dx}, conj(conj_pairs), stream); },
      py::arg("grad"), py::arg("v"),
      py::arg("x"), py::arg("dv"), py::arg("dx"), py::arg("conj_pairs") = true, py::arg("stream") = 0,
      "Gradients of vandermonde into preallocated dv, dx (each may be None)");
  m.def(
      "vandermonde_transpose",
      [](py::handle u, py::handle v, py::handle x, py::handle out, int64_t stream) {
        call<VandermondeTransposeParams>({u, v, x, out}, {}, stream);
      },
      py::arg("u"), py::arg("v"),
      py::arg("x"), py::arg("out"), py::arg("stream") = 0,
      "out[..., n] = v_n sum_l u_l exp(x_n l) into the preallocated out");
  m.def(
      "vandermonde_transpose_backward",
      [](py::handle grad, py::handle u, py::handle v, py::handle x, py::handle du, py::handle dv,
         py::handle dx, int64_t stream) {
        call<VandermondeTransposeBackwardParams>({grad, u, v, x, du, dv, dx}, {}, stream);
      },
      py::arg("grad"),
      py::arg("u"), py::arg("v"), py::arg("x"), py::arg("du"), py::arg("dv"), py::arg("dx"), py::arg("stream") = 0,
      "Gradients of vandermonde_transpose into preallocated du, dv, dx (each may be None)");
  m.def(
      "fft_conv",
      [](py::handle u, py::handle k, py::handle y, int64_t stream) { call<FftConvParams>({u, k, y}, {}, stream); },
      py::arg("u"), py::arg("k"), py::arg("y"), py::arg("stream") = 0,
      "Causal convolution of u (batch, L, H) with k (c, H, L) along L into the preallocated y");
  m.def(
      "fft_conv_backward",
      [](py::handle u, py::handle k, py::handle gy, py::handle du, py::handle dk, int64_t stream) {
        call<FftConvBackwardParams>({u, k, gy, du, dk}, {}, stream);
      },
      py::arg("u"), py::arg("k"), py::arg("gy"), py::arg("du"), py::arg("dk"), py::arg("stream") = 0,
      "Gradients of fft_conv into preallocated du, dk (each may be None)");
  register_engine(m);
  ssmkit::ffi::register_ffi(m);
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
