// What the interpreter, the planner and the schedulers share: the views, a thread's
// part of an instruction's columns, and the pieces of instructions that the
// interpreter runs and the planner accounts for alike.
#pragma once
#include <cstdint>

#include "../simd.h"  // imin
#include "ssmkit/engine_isa.h"
#include "vector_math.h"  // kLinearBlock

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

struct EngineRows {
  float* const* ptr;
  const int64_t* stride;
  float* at(int64_t view, int64_t row) const { return ptr[view] + row * stride[view]; }
  const float* param(int64_t view) const { return view < 0 ? nullptr : ptr[view]; }
};

// Thread `part` of `parts`: its columns [lo, hi) of [0, n), in whole units of
// kLinearBlock (the last may be short), contiguous and in order, so that the parts
// cover [0, n) once. One unit for every instruction: a linear's output blocks, and
// elementwise ops and S4 channels on the same width get the same ranges, so that one
// thread reads what it wrote itself and no barrier is needed in between (see
// engine_barriers). kLinearBlock is a multiple of the vector width: each column takes
// the vector or scalar path it takes in a whole row.
struct Part {
  int64_t part = 0, parts = 1;
  void range(int64_t n, int64_t& lo, int64_t& hi) const {
    const int64_t units = (n + kLinearBlock - 1) / kLinearBlock;
    lo = imin(n, units * part / parts * kLinearBlock);
    hi = imin(n, units * (part + 1) / parts * kLinearBlock);
  }
};

// A linear (EngineLinear or EngineNormLinear) whose output the next instruction's GLU
// takes (x = [a, b], out = a sigmoid(b)) is split as that GLU is: each thread computes
// its columns of both halves, so the GLU reads only what its own thread wrote and
// needs no barrier before it. next: the instruction after the linear, end: its
// program's end. Returns the number of column ranges (1 or 2) put in lo, hi.
template <typename Linear>
inline int linear_ranges(const Linear& op, const int64_t* next, const int64_t* end, const Part& part,
                         int64_t lo[2], int64_t hi[2]) {
  const int64_t half = op.n_out / 2;
  if (next < end && next[0] == kEngineGlu) {
    const auto glu = engine_decode<EngineGlu>(next);
    if (glu.x == op.out && glu.width == half && half % kLinearBlock == 0) {
      part.range(half, lo[0], hi[0]);
      lo[1] = lo[0] + half, hi[1] = hi[0] + half;
      return 2;
    }
  }
  part.range(op.n_out, lo[0], hi[0]);
  return 1;
}

// An S4 step instruction (EngineDplrStep or EngineDiagStep) on channels [lo, hi) of
// rows [r0, r1), p holding the parameters already offset to channel lo. Channels are
// independent: channels [lo, hi) of a row are the sub-problem with H = hi - lo at
// offset pointers (with a split, rows one at a time: their channel ranges are not
// evenly spaced). Per channel the kernel's arithmetic is the same whatever H and the
// rows, so the split gives the same bits.
template <typename Params, typename Step, typename Kernel>
inline void engine_s4_step(Params& p, const EngineRows& v, const Step& op, int64_t r0, int64_t r1,
                           bool whole, int64_t lo, int64_t hi, int64_t n2, Kernel kernel) {
  p.batch = whole ? r1 - r0 : 1, p.H = hi - lo;
  for (int64_t r = r0; r < r1 && lo < hi; r += p.batch) {
    p.state = p.new_state = v.at(op.state, r) + lo * n2;
    p.u = v.at(op.u, r) + lo, p.y = v.at(op.y, r) + lo;
    kernel(p);
  }
}

// The widest input of a norm_linear instruction in code [c, end) (0: none): the
// floats per row of the thread's scratch for its normalised rows.
inline int64_t engine_norm_width(const int64_t* c, const int64_t* end) {
  int64_t width = 0;
  for (; c < end; c += kEngineOpLength[c[0]])
    if (c[0] == kEngineNormLinear) {
      const int64_t n_in = engine_decode<EngineNormLinear>(c).n_in;
      width = width > n_in ? width : n_in;
    }
  return width;
}

}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
