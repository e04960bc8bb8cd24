// The schedulers: the steps of a run (EngineParams in ssmkit/engine.h), each one a
// program run by the interpreter, then its token drawn.
//
// Two ways to use threads. Rows (batch streams) are independent: when there are at
// least as many rows as threads, each thread owns a contiguous range of rows and runs
// every step for them, with no synchronisation. With fewer rows than threads (batch 1),
// the threads split each instruction by output columns (channels) instead and meet at
// a barrier between instructions: batch 1 is mat-vec work bound by reading the weights
// from L3, and two cores read twice as fast as one. Every output element is computed
// by the same arithmetic in both modes, so the results are the same bits.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "barrier.h"
#include "interpreter.h"
#include "../simd.h"  // imin
#include "plan.h"
#include "planner.h"
#include "primitives.h"
#include "sampler.h"
#include "ssmkit/engine.h"

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

// Split mode (batch < threads): one team for the whole run; every thread runs every
// step over all rows, its part of each instruction's columns; every thread draws
// each token itself, thread 0 writes the samples. A program's section (EngineParams::
// section) runs whole on thread 1 while thread 0 runs the instructions after it whole,
// step after step, up to the first one the plan's joins mark; there the team meets and
// goes on split from that instruction (the plan's barriers after it still hold: the
// meeting is one for everybody). Every instruction is computed whole or by columns,
// as always, so the bits are those of one thread.
inline void engine_run_split(const EngineParams& p, int64_t threads) {
  const EngineRows views{p.view_ptr, p.view_stride};
  const int64_t batch = p.batch;
  // Allocated before the team starts: a throw inside would leave the others waiting
  // at the barrier.
  Scratch<double> prob(threads * 3 * p.n_classes);  // each thread's
  Scratch<int64_t> tokens(threads * batch);  // each thread's copy of the step's tokens
  // (whole cache lines each: no line shared between threads)
  const int64_t norm_floats = round_up(batch * engine_norm_width(p.code, p.code + p.program_start[p.cycle]), 16);
  Scratch<float> normed(threads * norm_floats);  // each thread's normalised rows (norm_linear)
  if (!prob.ok() || !tokens.ok() || !normed.ok()) throw std::bad_alloc();
  SpinBarrier barrier(threads);
  EnginePlan* const plan = p.plan;  // none: one thread runs it all
  bool split = true;
  int64_t bad_step = -1;  // written by thread 0
  int64_t rejoin_step = 0, rejoin_at = -1;  // see meet() below
  std::atomic<bool> section_done{false};     // thread 1 has run the section and waits to meet
#pragma omp parallel num_threads(int(threads))
  {
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
    omp_set_num_threads(1);  // the step kernels called inside stay on their thread
#else
    const int64_t tid = 0, nt = 1;
#endif
    int64_t* token = tokens.p + tid * batch;
    for (int64_t r = 0; r < batch; ++r) token[r] = p.token[r];  // before single's barrier: before thread 0 writes p.token
    // The barrier plan for the team there is (OpenMP may give fewer threads than
    // asked), made at the first run with that team; single's own barrier publishes it.
    // No split possible: thread 0 runs it all.
#pragma omp single
    {
      if (plan && nt > 1 && plan->team != nt && plan->team != -nt) {
        try {
          engine_make_plan(p, nt, *plan);
        } catch (...) {  // out of memory: one thread needs no barriers (and no plan is kept)
          plan->team = 0;
        }
      }
      split = plan && nt > 1 && plan->team == nt;
      barrier.set_team(nt);
    }
    const Part part = split ? Part{tid, nt} : Part{};
    SpinBarrier* const team = split ? &barrier : nullptr;
    const bool sections = split && p.section;  // sections run on thread 1 (see EngineParams)
    const uint8_t* const marks = split ? plan->marks.data() : nullptr;
    const uint8_t* const joins = sections ? plan->joins.data() : nullptr;
    double* work = prob.p + tid * 3 * p.n_classes;
    int64_t round = 0, my_bad = -1;
    // Where thread 0 met the others after running alone: the step, the instruction
    // (-1: the run is over) and its tokens (token row 0 of `tokens`). Written before
    // the meeting, read after it.
    const auto meet = [&](int64_t& i, const int64_t*& c, int64_t& k) {
      team->wait(tid, round);
      i = rejoin_step, k = (p.phase + i) % p.cycle;
      c = rejoin_at < 0 ? nullptr : p.code + rejoin_at;
      for (int64_t r = 0; r < batch; ++r) token[r] = tokens.p[r];
    };
    bool alone = false;  // thread 0, while a section runs
    const int64_t* c = nullptr;  // the next instruction of step i (null: the step's first)
    int64_t k = 0;
    for (int64_t i = 0; i < p.steps && my_bad < 0 && (split || tid == 0);) {
      if (!c) {
        if (p.tokens_in)
          for (int64_t r = 0; r < batch; ++r) token[r] = p.tokens_in[i * batch + r];
        k = (p.phase + i) % p.cycle;
        c = p.code + p.program_start[k];
      }
      const int64_t* const end = p.code + p.program_start[k + 1];
      if (alone) {
        // Whole instructions, no barriers, up to the first that must wait for the
        // section, or until the section is done (then the team splits again at once).
        while (c < end && !joins[c - p.code] && !section_done.load(std::memory_order_acquire)) {
          const int64_t* next = c + kEngineOpLength[c[0]];
          engine_program(c, next, end, views, 0, batch, token, Part{}, normed.p, nullptr, nullptr, round);
          c = next;
        }
        if (c < end) {
          rejoin_step = i, rejoin_at = c - p.code;
          alone = false;
          meet(i, c, k);
          continue;
        }
      } else {
        const int64_t* section = sections && p.section[2 * k] >= 0 ? p.code + p.section[2 * k] : nullptr;
        const int64_t* stop = section && section >= c ? section : end;
        engine_program(c, stop, end, views, 0, batch, token, part, normed.p + tid * norm_floats, team,
                       split ? marks + (c - p.code) : nullptr, round);
        c = stop;
        if (c == section) {
          if (tid == 0) section_done.store(false, std::memory_order_relaxed);  // (published by the wait)
          team->wait(tid, round);  // the section's inputs are whole
          const int64_t* section_end = p.code + p.section[2 * k + 1];
          if (tid == 0) {
            alone = true, c = section_end;
          } else {
            if (tid == 1) {
              engine_program(section, section_end, end, views, 0, batch, token, Part{}, normed.p + tid * norm_floats,
                             nullptr, nullptr, round);
              section_done.store(true, std::memory_order_release);
            }
            meet(i, c, k);
            if (!c) break;  // thread 0 finished the run alone
          }
          continue;
        }
      }
      // After the last instruction's barrier the logits are whole. Every thread draws
      // the token itself (the same arithmetic on the same logits: the same token), so
      // no thread waits for another's draw; thread 0 writes the results.
      for (int64_t r = 0; r < batch; ++r) {
        const float* logits = views.at(p.logits_view, r);
        if (p.logits_out && tid == 0)
          std::memcpy(p.logits_out + (i * batch + r) * p.n_classes, logits, sizeof(float) * p.n_classes);
        if (p.uniforms) {
          const int64_t s = draw_token(logits, p.n_classes, p.temperature, p.top_p, p.uniforms[i * batch + r], work);
          if (s < 0) {  // every thread stops at this step
            my_bad = i;
            break;
          }
          token[r] = s;
          if (tid == 0) p.samples[i * batch + r] = s, p.token[r] = s;
        }
      }
      if (!alone && team && marks[p.program_start[p.cycle]]) team->wait(tid, round);  // see engine_barriers
      ++i, c = nullptr;
    }
    if (alone) {  // thread 0: the run is over (or stopped at a bad step); the others are waiting
      rejoin_at = -1;
      team->wait(tid, round);
    }
    if (tid == 0) bad_step = my_bad;
  }
  if (p.bad_step) *p.bad_step = bad_step;
}

inline void engine_run_impl(const EngineParams& p) {
  const EngineRows views{p.view_ptr, p.view_stride};
  const int64_t asked = p.threads > 1 ? p.threads : 1;
  if (p.batch < asked) return engine_run_split(p, asked);
#ifdef _OPENMP
  // The step kernels called inside stay on their thread: one thread, one row range.
  // (One thread runs outside any parallel region: a nested one would build an OpenMP
  // team at every kernel call.)
  const int saved_threads = omp_get_max_threads();
#endif
  const int64_t threads = imin(asked, p.batch);
  const int64_t batch = p.batch;
  bool failed = false;
  int64_t bad_step = -1;
#ifdef _OPENMP
  if (threads == 1) omp_set_num_threads(1);
#endif
#pragma omp parallel num_threads(int(threads)) if (threads > 1)
  {
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
    omp_set_num_threads(1);
#else
    const int64_t tid = 0, nt = 1;
#endif
    const int64_t r0 = batch * tid / nt, r1 = batch * (tid + 1) / nt;
    Scratch<double> prob(3 * p.n_classes);  // this thread's draw scratch
    Scratch<int64_t> token(batch);
    Scratch<float> normed((r1 - r0) * engine_norm_width(p.code, p.code + p.program_start[p.cycle]));
    int64_t my_bad = -1;
    try {
      if (!prob.ok() || !token.ok() || !normed.ok()) throw std::bad_alloc();
      for (int64_t i = 0; i < p.steps && r0 < r1 && my_bad < 0; ++i) {
        for (int64_t r = r0; r < r1; ++r) token.p[r] = p.tokens_in ? p.tokens_in[i * batch + r] : p.token[r];
        const int64_t k = (p.phase + i) % p.cycle;
        int64_t round = 0;  // no barrier: rows are independent
        const int64_t* end = p.code + p.program_start[k + 1];
        engine_program(p.code + p.program_start[k], end, end, views, r0, r1, token.p, Part{}, normed.p, nullptr,
                       nullptr, round);
        for (int64_t r = r0; r < r1; ++r) {
          const float* logits = views.at(p.logits_view, r);
          if (p.logits_out)
            std::memcpy(p.logits_out + (i * batch + r) * p.n_classes, logits, sizeof(float) * p.n_classes);
          if (p.uniforms) {
            const int64_t s = draw_token(logits, p.n_classes, p.temperature, p.top_p,
                                           p.uniforms[i * batch + r], prob.p);
            if (s < 0) {
              my_bad = i;
              break;
            }
            p.samples[i * batch + r] = s;
            p.token[r] = s;
          }
        }
      }
    } catch (...) {
#pragma omp atomic write
      failed = true;
    }
    if (my_bad >= 0) {
#pragma omp critical(ssmkit_engine_bad_step)
      bad_step = bad_step < 0 || my_bad < bad_step ? my_bad : bad_step;
    }
  }
#ifdef _OPENMP
  omp_set_num_threads(saved_threads);
#endif
  if (failed) throw std::bad_alloc();
  if (p.bad_step) *p.bad_step = bad_step;
}

}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
