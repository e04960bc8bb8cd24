// The interpreter: runs the instructions of a program, each over rows, whole or
// this thread's part of its columns.
#pragma once
#include <cstdint>
#include <cstring>

#include "barrier.h"
#include "../dplr.h"  // the S4 step kernels
#include "../simd.h"
#include "../step.h"
#include "primitives.h"
#include "ssmkit/engine_isa.h"
#include "vector_math.h"

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

// The instructions [c, stop) of a program that ends at `end` (linears look at the
// instruction after them), over rows [r0, r1), this thread's part of each instruction's
// columns (the whole of each when parts = 1). token: per row (absolute row index). normed:
// this thread's scratch, (r1 - r0) rows of engine_norm_width floats. With parts > 1
// the team meets at `barrier` after the instructions that sync marks (sync[i] for
// the instruction at c + i, c the first one run; see engine_barriers).
inline void engine_program(const int64_t* c, const int64_t* stop, const int64_t* end, const EngineRows& v,
                           int64_t r0, int64_t r1, const int64_t* token, const Part& part,
                           float* normed, SpinBarrier* barrier, const uint8_t* sync, int64_t& round) {
  const int64_t* const begin = c;
  using S = Simd<float>;
  constexpr int W = S::W;
  int64_t lo, hi;  // this thread's columns (channels) of the instruction
  while (c < stop) {
    switch (c[0]) {
      case kEngineEmbed: {
        const auto op = engine_decode<EngineEmbed>(c);
        const float* table = v.param(op.table);
        part.range(op.width, lo, hi);
        for (int64_t r = r0; r < r1; ++r)
          std::memcpy(v.at(op.out, r) + lo, table + token[r] * op.width + lo, sizeof(float) * (hi - lo));
        break;
      }
      case kEngineLayerNorm: {
        const auto op = engine_decode<EngineLayerNorm>(c);
        const double eps = engine_f64(op.eps);
        part.range(op.width, lo, hi);
        for (int64_t r = r0; r < r1; ++r)
          engine_layer_norm(v.at(op.x, r), v.at(op.out, r), v.param(op.weight), v.param(op.bias), op.width,
                            float(eps), lo, hi);
        break;
      }
      case kEngineLinear: {
        const auto op = engine_decode<EngineLinear>(c);
        int64_t los[2], his[2];
        const int ranges = linear_ranges(op, c + kEngineOpLength[kEngineLinear], end, part, los, his);
        for (int k = 0; k < ranges; ++k)
          engine_linear(v.at(op.x, r0), v.stride[op.x], v.at(op.out, r0), v.stride[op.out], v.param(op.Wt),
                        v.param(op.bias), op.n_in, op.n_out, r1 - r0, los[k], his[k]);
        break;
      }
      case kEngineNormLinear: {  // every thread normalises whole rows (as one would), then its columns
        const auto op = engine_decode<EngineNormLinear>(c);
        const double eps = engine_f64(op.eps);
        const int64_t n_in = op.n_in;
        for (int64_t r = r0; r < r1; ++r)
          engine_layer_norm(v.at(op.x, r), normed + (r - r0) * n_in, v.param(op.norm_weight), v.param(op.norm_bias),
                            n_in, float(eps), 0, n_in);
        int64_t los[2], his[2];
        const int ranges = linear_ranges(op, c + kEngineOpLength[kEngineNormLinear], end, part, los, his);
        for (int k = 0; k < ranges; ++k)
          engine_linear(normed, n_in, v.at(op.out, r0), v.stride[op.out], v.param(op.Wt), v.param(op.bias), n_in,
                        op.n_out, r1 - r0, los[k], his[k]);
        break;
      }
      case kEngineGelu: {
        const auto op = engine_decode<EngineGelu>(c);
        part.range(op.width, lo, hi);
        for (int64_t r = r0; r < r1; ++r) engine_gelu(v.at(op.x, r) + lo, hi - lo);
        break;
      }
      case kEngineGlu: {
        const auto op = engine_decode<EngineGlu>(c);
        part.range(op.width, lo, hi);
        for (int64_t r = r0; r < r1; ++r) engine_glu(v.at(op.x, r), v.at(op.out, r), op.width, lo, hi);
        break;
      }
      case kEngineAdd: {
        const auto op = engine_decode<EngineAdd>(c);
        part.range(op.width, lo, hi);
        for (int64_t r = r0; r < r1; ++r) {
          const float *a = v.at(op.a, r), *b = v.at(op.b, r);
          float* o = v.at(op.out, r);
          int64_t i = lo;
          for (; i + W <= hi; i += W) S::store(o + i, S::load(a + i) + S::load(b + i));
          for (; i < hi; ++i) o[i] = a[i] + b[i];
        }
        break;
      }
      case kEngineCopy: {
        const auto op = engine_decode<EngineCopy>(c);
        part.range(op.width, lo, hi);
        for (int64_t r = r0; r < r1; ++r)
          std::memmove(v.at(op.out, r) + lo, v.at(op.x, r) + lo, sizeof(float) * (hi - lo));
        break;
      }
      case kEngineDplrStep: {
        const auto op = engine_decode<EngineDplrStep>(c);
        const int64_t N = op.N, rank = op.r, n2 = 2 * N;
        part.range(op.H, lo, hi);
        const float* D = v.param(op.D);
        DplrStepParams p;
        p.dtype = DType::complex64;
        p.N = N, p.r = rank;
        p.a = v.param(op.a) + lo * n2, p.b = v.param(op.b) + lo * n2;
        p.Pd = v.param(op.Pd) + lo * rank * n2, p.Q = v.param(op.Q) + lo * rank * n2;
        p.C = v.param(op.C) + lo * n2;
        p.D = D ? D + lo : nullptr;
        engine_s4_step(p, v, op, r0, r1, part.parts == 1, lo, hi, n2, dplr_step_impl<float>);
        break;
      }
      case kEngineDiagStep: {  // as the DPLR step
        const auto op = engine_decode<EngineDiagStep>(c);
        const int64_t N = op.N, n2 = 2 * N;
        part.range(op.H, lo, hi);
        const float* D = v.param(op.D);
        StepParams p;
        p.dtype = DType::complex64;
        p.N = N;
        p.dA = v.param(op.dA) + lo * n2, p.dB = v.param(op.dB) + lo * n2, p.dC = v.param(op.dC) + lo * n2;
        p.D = D ? D + lo : nullptr;
        engine_s4_step(p, v, op, r0, r1, part.parts == 1, lo, hi, n2, ssm_step_impl<float>);
        break;
      }
      default:
        return;  // unreachable: the binding checks every opcode before a run
    }
    if (barrier && sync[c - begin]) barrier->wait(part.part, round);
    c += kEngineOpLength[c[0]];
  }
}

}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
