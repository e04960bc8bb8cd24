// ssmkit._C's step engine (ssmkit/engine.h): StepEngine, which checks a program once
// and runs it, the engine's draw (sample_tokens), and its instruction set for the
// Python emitter (engine_instructions, python/ssmkit/engine.py).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "arrays.h"
#include "ssmkit/engine.h"
#include "ssmkit/ssmkit.h"

namespace py = pybind11;
using namespace ssmkit;
using namespace ssmkit::py_arrays;

namespace {

// The draw's options, as StepEngine.run and sample_tokens take them.
void check_draw_options(double temperature, double top_p) {
  if (!(temperature > 0) || !std::isfinite(temperature)) throw py::value_error("temperature: expected a positive number");
  if (!(top_p > 0 && top_p <= 1)) throw py::value_error("top_p: expected a probability in (0, 1]");
}

// Everything a program can touch is checked once here, when the engine is built: each
// operand's rows (or parameter extent, from the instruction table, ssmkit/engine_isa.h)
// lie inside its array, so a run cannot read or write out of bounds whatever the
// program says.
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
    p.plan = plan_.get();
    if (!section_.empty()) p.section = section_.data();
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
  std::vector<int64_t> section_;                   // EngineParams::section (empty: none)
  EnginePlanHandle plan_ = make_engine_plan();     // EngineParams::plan
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
  // Rows already checked by rows(): these are also contiguous.
  void contiguous(int64_t v, int64_t width, const std::string& what) const {
    if (stride_[v] != width)
      throw py::value_error(what + ": expected contiguous rows (stride " + std::to_string(width) + "), got stride " +
                            std::to_string(stride_[v]));
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
  // Each instruction: its sizes, then every view operand by its role and extent, then
  // what its kernels assume of the operands' layout. Messages name the program, the
  // instruction, and the operand with its value.
  void check_program(int64_t k) {
    for (int64_t i = start_[k]; i < start_[k + 1];) {
      const int64_t op = code_[i];
      const std::string at = "program " + std::to_string(k) + ", instruction at " + std::to_string(i);
      if (op < 1 || op >= kEngineOpEnd) throw py::value_error(at + ": unknown opcode " + std::to_string(op));
      if (i + kEngineOpLength[op] > start_[k + 1]) throw py::value_error(at + ": truncated instruction");
      engine_visit(code_.data() + i, [&](const auto& ins) { check_instruction(ins, at + " (" + ins.kName + ")"); });
      i += kEngineOpLength[op];
    }
  }
  template <typename Op>
  void check_instruction(const Op& op, const std::string& at) {
    check_sizes(op, at);
    op.operands([&](const char* name, EngineRole role, int64_t value, int64_t extent) {
      const std::string what = at + ", operand " + name + " = " + std::to_string(value);
      switch (role) {
        case EngineRole::rows_in:
        case EngineRole::rows_out:
        case EngineRole::rows_inout:
          rows(value, extent, what);
          break;
        case EngineRole::param:
          param(value, extent, what);
          break;
        case EngineRole::param_opt:
          param(value, extent, what, true);
          break;
        case EngineRole::integer:
        case EngineRole::f64:
          break;
      }
    });
    check_layout(op, at);
  }
  // Sizes the extents do not check (every view's extent is checked positive or fitting).
  template <typename Op>
  void check_sizes(const Op&, const std::string&) {}
  void check_sizes(const EngineEmbed& op, const std::string& at) {
    if (op.vocab < 1) throw py::value_error(at + ", operand vocab = " + std::to_string(op.vocab) + ": expected a positive vocabulary size");
    vocab_ = std::min(vocab_, op.vocab);
  }
  void check_sizes(const EngineDplrStep& op, const std::string& at) { step_sizes(op.H, op.N, op.r, at); }
  void check_sizes(const EngineDiagStep& op, const std::string& at) { step_sizes(op.H, op.N, 0, at); }
  static void step_sizes(int64_t H, int64_t N, int64_t r, const std::string& at) {
    if (H < 1 || N < 1 || r < 0 || r > 64)
      throw py::value_error(at + ": expected H, N >= 1 and 0 <= r <= 64, got H = " + std::to_string(H) + ", N = " +
                            std::to_string(N) + ", r = " + std::to_string(r));
  }
  // What the kernels assume: a linear's or GLU's output is not its input's buffer; the
  // S4 steps take contiguous rows, and u and y apart.
  template <typename Op>
  void check_layout(const Op&, const std::string&) {}
  void check_layout(const EngineLinear& op, const std::string& at) { distinct(op.x, op.out, at + ", operands x and out"); }
  void check_layout(const EngineNormLinear& op, const std::string& at) { distinct(op.x, op.out, at + ", operands x and out"); }
  void check_layout(const EngineGlu& op, const std::string& at) { distinct(op.x, op.out, at + ", operands x and out"); }
  void check_layout(const EngineDplrStep& op, const std::string& at) { step_layout(op, at); }
  void check_layout(const EngineDiagStep& op, const std::string& at) { step_layout(op, at); }
  template <typename Step>
  void step_layout(const Step& op, const std::string& at) {
    contiguous(op.state, 2 * op.H * op.N, at + ", operand state = " + std::to_string(op.state));
    contiguous(op.u, op.H, at + ", operand u = " + std::to_string(op.u));
    contiguous(op.y, op.H, at + ", operand y = " + std::to_string(op.y));
    distinct(op.u, op.y, at + ", operands u and y");
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

// The instruction table (ssmkit/engine_isa.h) for the Python emitter.
py::dict engine_instructions() {
  py::dict instructions;
  engine_each_instruction([&](const auto& ins) {
    py::list operands;
    ins.operands([&](const char* name, EngineRole role, int64_t, int64_t) {
      operands.append(py::make_tuple(name, kEngineRoleName[int64_t(role)]));
    });
    instructions[ins.kName] = py::make_tuple(int64_t(ins.kOp), py::tuple(operands));
  });
  return instructions;
}

}  // namespace

void register_engine(py::module_& m) {
  py::class_<StepEngine>(m, "StepEngine",
                         "Straight-line step programs run many steps per call (EngineParams in ssmkit/engine.h)")
      .def(py::init<py::list, std::vector<int64_t>, std::vector<int64_t>, std::vector<std::vector<int64_t>>,
                    int64_t, int64_t, int64_t, std::vector<int64_t>>(),
           py::arg("buffers"), py::arg("code"), py::arg("program_start"), py::arg("views"),
           py::arg("batch"), py::arg("logits_view"), py::arg("n_classes"), py::arg("sections") = std::vector<int64_t>())
      .def("run", &StepEngine::run, py::arg("phase"), py::arg("steps"), py::arg("token"),
           py::arg("tokens_in"), py::arg("uniforms"), py::arg("samples"), py::arg("logits"),
           py::arg("temperature") = 1.0, py::arg("top_p") = 1.0,
           "Run steps; returns the first step whose logits were not finite, or -1");
  py::dict ops;
  engine_each_instruction([&](const auto& ins) { ops[ins.kName] = int64_t(ins.kOp); });
  m.attr("engine_ops") = ops;
  m.attr("engine_op_lengths") = py::tuple(py::cast(std::vector<int64_t>(std::begin(kEngineOpLength), std::end(kEngineOpLength))));
  m.def("engine_instructions", &engine_instructions,
        "The step engine's instruction set: {name: (opcode, ((operand, role), ...))}, operands in word order "
        "(ssmkit/engine_isa.h)");
  m.def("sample_tokens", &sample_tokens, py::arg("logits"), py::arg("uniforms"),
        py::arg("temperature"), py::arg("top_p"), py::arg("out"),
        "One token per row of logits from its uniform (the step engine's draw)");
}
