// The barrier planner of split mode: where the team must meet, from each
// instruction's memory accesses by each thread (EnginePlan, plan.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "plan.h"
#include "primitives.h"
#include "ssmkit/engine.h"

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

// Where split mode needs barriers. Each instruction's accesses by each thread, as
// address intervals (the ranges engine_program uses, for every row): a barrier goes
// after instruction i when the next one has a thread touch memory that another thread
// wrote, or write memory another thread read, since the last barrier. After the last
// instruction of a program there is always one (then every thread reads the logits,
// which counts as pending at the start of each program; step_end says when that needs
// a barrier right after the sampling). Exact addresses, so views
// that alias (the pooling slots) are covered. Returns false when one instruction has
// such a conflict within itself (in place layer norm: its statistics read columns
// another thread writes): no barrier helps, and the run takes one thread.
struct EngineAccess {
  const float *lo, *hi;
  int64_t part;
  bool write;
};

// Row accesses of one instruction by thread `part`: add(view, a, b, write) for floats
// [a, b) of each row of a row view. An elementwise instruction (embed, gelu, add,
// copy) touches the thread's columns of its width in each row operand; the others
// say how they differ.
template <typename Op, typename Add>
inline void engine_row_accesses(const Op& op, const int64_t*, const int64_t*, const Part& part, Add&& add) {
  int64_t lo, hi;
  part.range(op.width, lo, hi);
  op.operands([&](const char*, EngineRole role, int64_t view, int64_t) {
    if (role == EngineRole::rows_in || role == EngineRole::rows_out || role == EngineRole::rows_inout)
      add(view, lo, hi, role != EngineRole::rows_in);
  });
}
template <typename Add>  // the statistics read all of x
inline void engine_row_accesses(const EngineLayerNorm& op, const int64_t*, const int64_t*, const Part& part, Add&& add) {
  int64_t lo, hi;
  part.range(op.width, lo, hi);
  add(op.x, 0, op.width, false), add(op.out, lo, hi, true);
}
template <typename Add>  // both halves of x
inline void engine_row_accesses(const EngineGlu& op, const int64_t*, const int64_t*, const Part& part, Add&& add) {
  int64_t lo, hi;
  part.range(op.width, lo, hi);
  add(op.x, lo, hi, false), add(op.x, op.width + lo, op.width + hi, false), add(op.out, lo, hi, true);
}
template <typename Linear, typename Add>  // all of x, the output columns of linear_ranges
inline void engine_linear_accesses(const Linear& op, const int64_t* next, const int64_t* end, const Part& part,
                                   Add&& add) {
  int64_t los[2], his[2];
  const int ranges = linear_ranges(op, next, end, part, los, his);
  add(op.x, 0, op.n_in, false);
  for (int k = 0; k < ranges; ++k) add(op.out, los[k], his[k], true);
}
template <typename Add>
inline void engine_row_accesses(const EngineLinear& op, const int64_t* next, const int64_t* end, const Part& part,
                                Add&& add) {
  engine_linear_accesses(op, next, end, part, add);
}
template <typename Add>  // (the normalised rows are the thread's own scratch)
inline void engine_row_accesses(const EngineNormLinear& op, const int64_t* next, const int64_t* end,
                                const Part& part, Add&& add) {
  engine_linear_accesses(op, next, end, part, add);
}
template <typename Step, typename Add>  // the thread's channels; the state, updated in place
inline void engine_step_accesses(const Step& op, const Part& part, Add&& add) {
  int64_t lo, hi;
  part.range(op.H, lo, hi);
  const int64_t n2 = 2 * op.N;
  add(op.state, lo * n2, hi * n2, true);
  add(op.u, lo, hi, false), add(op.y, lo, hi, true);
}
template <typename Add>
inline void engine_row_accesses(const EngineDplrStep& op, const int64_t*, const int64_t*, const Part& part, Add&& add) {
  engine_step_accesses(op, part, add);
}
template <typename Add>
inline void engine_row_accesses(const EngineDiagStep& op, const int64_t*, const int64_t*, const Part& part, Add&& add) {
  engine_step_accesses(op, part, add);
}

// The accesses of the instruction at c (its program ends at end) by thread `part`:
// its rows' as engine_row_accesses says, for every row, and with params, all of each
// parameter (only read: they matter only where some instruction writes their memory,
// see engine_params_written).
inline void engine_accesses(const int64_t* c, const int64_t* end, const EngineRows& v, int64_t batch,
                            const Part& part, bool params, std::vector<EngineAccess>& out) {
  const auto add = [&](const float* base, int64_t a, int64_t b, bool write) {
    if (a < b) out.push_back({base + a, base + b, part.part, write});
  };
  const auto rows = [&](int64_t view, int64_t a, int64_t b, bool write) {
    for (int64_t r = 0; r < batch; ++r) add(v.at(view, r), a, b, write);
  };
  engine_visit(c, [&](const auto& op) {
    engine_row_accesses(op, c + kEngineOpLength[c[0]], end, part, rows);
    if (params)
      op.operands([&](const char*, EngineRole role, int64_t view, int64_t extent) {
        if ((role == EngineRole::param || role == EngineRole::param_opt) && view >= 0)
          add(v.param(view), 0, extent, false);
      });
  });
}

// Whether any instruction writes memory that a parameter occupies (normally none:
// parameters and rows are different arrays). When none does, a parameter read never
// conflicts, and the planner leaves the parameters out: most of the accesses it would
// otherwise compare.
inline bool engine_params_written(const EngineParams& p) {
  const EngineRows v{p.view_ptr, p.view_stride};
  std::vector<EngineAccess> writes, params;
  for (int64_t k = 0; k < p.cycle; ++k)
    for (int64_t i = p.program_start[k]; i < p.program_start[k + 1]; i += kEngineOpLength[p.code[i]]) {
      params.clear();
      engine_accesses(p.code + i, p.code + p.program_start[k + 1], v, p.batch, Part{}, false, params);
      for (const auto& a : params)
        if (a.write) writes.push_back(a);
    }
  params.clear();
  for (int64_t i = 0; i < p.program_start[p.cycle]; i += kEngineOpLength[p.code[i]])
    engine_visit(p.code + i, [&](const auto& op) {
      op.operands([&](const char*, EngineRole role, int64_t view, int64_t extent) {
        if ((role == EngineRole::param || role == EngineRole::param_opt) && view >= 0)
          params.push_back({v.param(view), v.param(view) + extent, 0, false});
      });
    });
  // writes by start; reach[j]: the furthest end of writes [0, j]
  std::sort(writes.begin(), writes.end(), [](const EngineAccess& a, const EngineAccess& b) { return a.lo < b.lo; });
  std::vector<const float*> reach(writes.size());
  for (size_t j = 0; j < writes.size(); ++j) reach[j] = j && reach[j - 1] > writes[j].hi ? reach[j - 1] : writes[j].hi;
  for (const auto& q : params) {  // the writes starting before q ends: does one end after q starts?
    const size_t n = std::partition_point(writes.begin(), writes.end(),
                                          [&](const EngineAccess& w) { return w.lo < q.hi; }) - writes.begin();
    if (n && reach[n - 1] > q.lo) return true;
  }
  return false;
}

// Fills sync (code words + 1 bytes, see EnginePlan::marks); false when one
// instruction's parts would touch the same memory (no split gives one thread's bits).
inline bool engine_barriers(const EngineParams& p, int64_t parts, bool params, std::vector<uint8_t>& sync) {
  const EngineRows v{p.view_ptr, p.view_stride};
  const int64_t code_end = p.program_start[p.cycle];
  sync.assign(code_end + 1, 0);
  uint8_t& step_end = sync[code_end];
  std::vector<EngineAccess> since, next;  // since the last barrier; the next instruction's
  const auto conflict = [](const EngineAccess& a, const EngineAccess& b) {
    return a.part != b.part && (a.write || b.write) && a.lo < b.hi && b.lo < a.hi;
  };
  for (int64_t k = 0; k < p.cycle; ++k) {
    since.clear();
    for (int64_t t = 0; t < parts; ++t)  // every thread drew the last step's token from its logits
      for (int64_t r = 0; r < p.batch; ++r)
        since.push_back({v.at(p.logits_view, r), v.at(p.logits_view, r) + p.n_classes, t, false});
    int64_t prev = -1;
    for (int64_t i = p.program_start[k]; i < p.program_start[k + 1]; i += kEngineOpLength[p.code[i]]) {
      next.clear();
      for (int64_t t = 0; t < parts; ++t)
        engine_accesses(p.code + i, p.code + p.program_start[k + 1], v, p.batch, Part{t, parts}, params, next);
      for (const auto& a : next)
        for (const auto& b : next)
          if (conflict(a, b)) return false;
      bool wait = false;
      for (const auto& a : next) {
        for (const auto& b : since)
          if (conflict(a, b)) {
            wait = true;
            break;
          }
        if (wait) break;
      }
      if (wait) {
        if (prev >= 0) sync[prev] = 1;
        else step_end = 1;  // the first instruction writes the logits: a barrier after each step
        since.clear();
      }
      since.insert(since.end(), next.begin(), next.end());
      prev = i;
    }
    if (prev >= 0) sync[prev] = 1;
  }
  return true;
}

// Fills joins (code words bytes, EnginePlan::joins): 1 at the instructions that
// touch what a section writes or write what it reads, taken whole.
inline void engine_joins(const EngineParams& p, bool params, std::vector<uint8_t>& joins) {
  const EngineRows v{p.view_ptr, p.view_stride};
  joins.assign(p.program_start[p.cycle], 0);
  std::vector<EngineAccess> section, mine;
  for (int64_t k = 0; k < p.cycle; ++k)
    for (int64_t i = p.section[2 * k]; i >= 0 && i < p.section[2 * k + 1]; i += kEngineOpLength[p.code[i]])
      engine_accesses(p.code + i, p.code + p.program_start[k + 1], v, p.batch, Part{}, params, section);
  for (auto& a : section) a.part = 1;  // the section's thread; the others' accesses are part 0
  for (int64_t k = 0; k < p.cycle; ++k)
    for (int64_t i = p.program_start[k]; i < p.program_start[k + 1]; i += kEngineOpLength[p.code[i]]) {
      mine.clear();
      engine_accesses(p.code + i, p.code + p.program_start[k + 1], v, p.batch, Part{}, params, mine);
      for (const auto& a : mine)
        for (const auto& b : section)
          if ((a.write || b.write) && a.lo < b.hi && b.lo < a.hi) joins[i] = 1;
    }
}

// The plan for a team of `team` threads (EnginePlan): its barriers, or -team when the
// programs cannot be split, and with sections, where thread 0 meets the others.
inline void engine_make_plan(const EngineParams& p, int64_t team, EnginePlan& plan) {
  const bool params = engine_params_written(p);
  plan.team = engine_barriers(p, team, params, plan.marks) ? team : -team;
  if (p.section && plan.team == team) engine_joins(p, params, plan.joins);
}

}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
