// Split mode's barrier plan (ssmkit/engine.h, EnginePlan): what the planner
// (planner.h) works out once from the fixed programs, kept by the caller between runs.
// The same type for every instruction set (outside the per-ISA namespace).
#pragma once
#include <cstdint>
#include <vector>

#include "ssmkit/engine.h"

namespace ssmkit {

struct EnginePlan {
  // The team size it was made for (0: none yet; minus the size: that team cannot
  // split the programs).
  int64_t team = 0;
  // One byte per code word and one more: 1 where the team meets after the instruction
  // starting there; the last byte: after each step's draw.
  std::vector<uint8_t> marks;
  // With sections (EngineParams::section), one byte per code word: 1 at the
  // instructions that touch what a section touches, where thread 0, running alone,
  // meets the others.
  std::vector<uint8_t> joins;
};

}  // namespace ssmkit
