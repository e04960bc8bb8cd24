// The step engine: straight-line programs of primitive instructions over float32
// arrays, one program per phase of a cycle, run for many steps with no caller in
// between (SaShiMi generation: python/ssmkit/models/sashimi_engine.py builds the
// programs). Operands are views: a base pointer and a row stride in floats (0 for
// parameters, the same for every row). Each instruction runs over rows (batch streams)
// independently, so rows can be split over threads with no synchronisation; with fewer
// rows than threads, the threads split each instruction's output columns instead
// (csrc/cpu/engine/scheduler.h, split mode), with the same results. The instructions
// and their operands: ssmkit/engine_isa.h.
#pragma once
#include <cstdint>
#include <memory>

#include "ssmkit/engine_isa.h"

namespace ssmkit {

// Split mode's barrier plan (batch < threads), worked out from the fixed programs at the
// first run with a team and kept by the caller between runs of the same programs.
struct EnginePlan;  // csrc/cpu/engine/plan.h
struct EnginePlanDelete {
  void operator()(EnginePlan* plan) const;
};
using EnginePlanHandle = std::unique_ptr<EnginePlan, EnginePlanDelete>;
EnginePlanHandle make_engine_plan();  // an empty plan: made at the first split run

// One run of `steps` steps. Step i runs program (phase + i) % cycle on the token of
// each row: tokens_in[i, row] when given (teacher forcing), else token[row]. After
// it, the logits (the logits view, n_classes wide) are copied to logits_out[i, row]
// when given, and when uniforms are given a token is drawn from
// softmax(logits / temperature) restricted to the top_p nucleus, by inverse CDF in
// double precision at uniforms[i, row]; it goes to samples[i, row] and token[row].
struct EngineParams {
  int64_t batch = 0, steps = 0, cycle = 1, phase = 0, threads = 1;
  const int64_t* code = nullptr;           // all programs' instructions, back to back
  const int64_t* program_start = nullptr;  // (cycle + 1): program k is code[start[k], start[k+1])
  float* const* view_ptr = nullptr;        // per view: base pointer (row 0)
  const int64_t* view_stride = nullptr;    // per view: floats from one row to the next
  int64_t logits_view = 0, n_classes = 0;
  int64_t* token = nullptr;                // (batch,) in/out
  const int64_t* tokens_in = nullptr;      // (steps, batch) or null
  const double* uniforms = nullptr;        // (steps, batch) or null: no sampling
  int64_t* samples = nullptr;              // (steps, batch) out, with uniforms
  float* logits_out = nullptr;             // (steps, batch, n_classes) out, or null
  double temperature = 1, top_p = 1;
  int64_t* bad_step = nullptr;             // out: the first step whose logits could not be sampled (NaN, Inf), or -1
  EnginePlan* plan = nullptr;              // in/out, needed in split mode: these programs' plan (make_engine_plan)
  // Optional, per program: [section[2k], section[2k+1]), code offsets of a run of
  // instructions that nothing else in the program after it needs soon (SaShiMi: the
  // innermost stage and its up-pooling, first read a few steps later); -1, -1: none.
  // In split mode one thread runs the section on its own while thread 0 runs on, alone,
  // until an instruction that touches what the section touches (the plan marks them),
  // where the team meets and splits again.
  const int64_t* section = nullptr;
};

void engine_run_cpu(const EngineParams& p);

// Draws one token from logits (n floats) as EngineParams describes; -1 when the
// logits are not finite. work: 3n doubles of scratch.
int64_t sample_token_cpu(const float* logits, int64_t n, double temperature, double top_p,
                         double u, double* work);

}  // namespace ssmkit
