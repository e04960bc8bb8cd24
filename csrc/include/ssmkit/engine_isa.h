// The step engine's instruction set, defined once. A program is int64 words: each
// instruction is its opcode, then its operands in the order of its row below. From this
// one table follow the opcodes (EngineOp), the instruction lengths (kEngineOpLength),
// one struct of named operands per instruction (EngineLinear: x, out, Wt, ...), which
// the interpreter decodes (csrc/cpu/engine/interpreter.h), the binding's validation
// and the planner's parameter accesses (both loop over the operands by role), and the
// Python emitter (_C.engine_instructions, python/ssmkit/engine.py).
#pragma once
#include <cstdint>
#include <cstring>

namespace ssmkit {

// What an operand is. Views index the engine's views: a row view has its own floats per
// row (batch stream), a parameter view the same floats for every row.
enum class EngineRole : int64_t {
  rows_in,     // a row view the instruction reads
  rows_out,    // a row view it writes
  rows_inout,  // a row view it reads and writes in place
  param,       // a parameter view it reads
  param_opt,   // a parameter view it reads, or -1: none
  integer,     // a size
  f64,         // a double, as its bits
};
constexpr const char* kEngineRoleName[] = {"rows_in", "rows_out", "rows_inout", "param",
                                          "param_opt", "integer", "f64"};
static_assert(sizeof(kEngineRoleName) / sizeof(kEngineRoleName[0]) == int64_t(EngineRole::f64) + 1,
              "a name for every role");

// Each instruction's operands, in word order: O(name, role, extent), where extent is
// the floats a view spans (per row for row views, in all for parameters), written in
// the instruction's integer operands (0 for the integers themselves).
//
// embed: out = table[token]
#define SSMKIT_ENGINE_EMBED(O) \
  O(out, rows_out, width) O(table, param, width * vocab) O(width, integer, 0) O(vocab, integer, 0)
// layer_norm: out = layer norm of x (over width), times weight, plus bias
#define SSMKIT_ENGINE_LAYER_NORM(O)                                                       \
  O(x, rows_in, width) O(out, rows_out, width) O(weight, param, width) O(bias, param, width) \
  O(width, integer, 0) O(eps, f64, 0)
// linear: out = x Wt + bias, with Wt (n_in, n_out) packed in column blocks of 32: block
// o0 is Wt[:, o0:o0+32] (n_in, <= 32) contiguous at offset o0 n_in
#define SSMKIT_ENGINE_LINEAR(O)                                                              \
  O(x, rows_in, n_in) O(out, rows_out, n_out) O(Wt, param, n_in * n_out) O(bias, param_opt, n_out) \
  O(n_in, integer, 0) O(n_out, integer, 0)
// gelu: x = GELU(x) (exact, erf), in place
#define SSMKIT_ENGINE_GELU(O) O(x, rows_inout, width) O(width, integer, 0)
// glu: out = x[:width] * sigmoid(x[width:])
#define SSMKIT_ENGINE_GLU(O) O(x, rows_in, 2 * width) O(out, rows_out, width) O(width, integer, 0)
// add: out = a + b
#define SSMKIT_ENGINE_ADD(O) \
  O(a, rows_in, width) O(b, rows_in, width) O(out, rows_out, width) O(width, integer, 0)
// copy: out = x
#define SSMKIT_ENGINE_COPY(O) O(x, rows_in, width) O(out, rows_out, width) O(width, integer, 0)
// dplr_step: one DPLR step (DplrStepParams), the state updated in place
#define SSMKIT_ENGINE_DPLR_STEP(O)                                                                \
  O(state, rows_inout, 2 * H * N) O(u, rows_in, H) O(y, rows_out, H) O(a, param, 2 * H * N)       \
  O(b, param, 2 * H * N) O(Pd, param, 2 * H * r * N) O(Q, param, 2 * H * r * N) O(C, param, 2 * H * N) \
  O(D, param_opt, H) O(H, integer, 0) O(N, integer, 0) O(r, integer, 0)
// diag_step: one diagonal SSM step (StepParams), the state updated in place
#define SSMKIT_ENGINE_DIAG_STEP(O)                                                           \
  O(state, rows_inout, 2 * H * N) O(u, rows_in, H) O(y, rows_out, H) O(dA, param, 2 * H * N) \
  O(dB, param, 2 * H * N) O(dC, param, 2 * H * N) O(D, param_opt, H) O(H, integer, 0) O(N, integer, 0)
// norm_linear: the linear of the layer norm of x (layer_norm then linear, the same
// bits, with no array in between: split mode needs no barrier between the two)
#define SSMKIT_ENGINE_NORM_LINEAR(O)                                                         \
  O(x, rows_in, n_in) O(out, rows_out, n_out) O(Wt, param, n_in * n_out) O(bias, param_opt, n_out) \
  O(n_in, integer, 0) O(n_out, integer, 0) O(norm_weight, param, n_in) O(norm_bias, param, n_in)  \
  O(eps, f64, 0)

// I(opcode, name, Name, OPERANDS): the instructions, opcodes 1, 2, ... in order.
#define SSMKIT_ENGINE_INSTRUCTIONS(I)                       \
  I(1, embed, Embed, SSMKIT_ENGINE_EMBED)                   \
  I(2, layer_norm, LayerNorm, SSMKIT_ENGINE_LAYER_NORM)     \
  I(3, linear, Linear, SSMKIT_ENGINE_LINEAR)                \
  I(4, gelu, Gelu, SSMKIT_ENGINE_GELU)                      \
  I(5, glu, Glu, SSMKIT_ENGINE_GLU)                         \
  I(6, add, Add, SSMKIT_ENGINE_ADD)                         \
  I(7, copy, Copy, SSMKIT_ENGINE_COPY)                      \
  I(8, dplr_step, DplrStep, SSMKIT_ENGINE_DPLR_STEP)        \
  I(9, diag_step, DiagStep, SSMKIT_ENGINE_DIAG_STEP)        \
  I(10, norm_linear, NormLinear, SSMKIT_ENGINE_NORM_LINEAR)

#define SSMKIT_ENGINE_OPCODE(opcode, name, Name, OPERANDS) kEngine##Name = opcode,
enum EngineOp : int64_t { SSMKIT_ENGINE_INSTRUCTIONS(SSMKIT_ENGINE_OPCODE) };
#undef SSMKIT_ENGINE_OPCODE

// One struct per instruction, its operands by name (EngineLinear{x, out, Wt, bias,
// n_in, n_out}). operands(f) calls f(name, role, value, extent) for each, in word order.
#define SSMKIT_ENGINE_FIELD(name, role, extent) int64_t name;
#define SSMKIT_ENGINE_VISIT(name, role, extent) f(#name, EngineRole::role, name, int64_t(extent));
#define SSMKIT_ENGINE_LOAD(name, role, extent) op.name = *words++;
#define SSMKIT_ENGINE_STRUCT(opcode, name_, Name, OPERANDS)       \
  struct Engine##Name {                                           \
    static constexpr EngineOp kOp = kEngine##Name;                \
    static constexpr const char* kName = #name_;                  \
    OPERANDS(SSMKIT_ENGINE_FIELD)                                 \
    static Engine##Name decode(const int64_t* words) {            \
      Engine##Name op;                                            \
      OPERANDS(SSMKIT_ENGINE_LOAD)                                \
      return op;                                                  \
    }                                                             \
    template <typename F>                                         \
    void operands(F&& f) const {                                  \
      OPERANDS(SSMKIT_ENGINE_VISIT)                               \
    }                                                             \
  };
SSMKIT_ENGINE_INSTRUCTIONS(SSMKIT_ENGINE_STRUCT)
#undef SSMKIT_ENGINE_STRUCT
#undef SSMKIT_ENGINE_VISIT
#undef SSMKIT_ENGINE_LOAD
#undef SSMKIT_ENGINE_FIELD

// Words per instruction, the opcode included, by opcode (0: not an opcode).
#define SSMKIT_ENGINE_LENGTH(opcode, name, Name, OPERANDS) 1 + int64_t(sizeof(Engine##Name) / sizeof(int64_t)),
constexpr int64_t kEngineOpLength[] = {0, SSMKIT_ENGINE_INSTRUCTIONS(SSMKIT_ENGINE_LENGTH)};
#undef SSMKIT_ENGINE_LENGTH
constexpr int64_t kEngineOpEnd = sizeof(kEngineOpLength) / sizeof(kEngineOpLength[0]);  // opcodes: [1, end)

#define SSMKIT_ENGINE_OPCODE_OF(opcode, name, Name, OPERANDS) opcode,
constexpr bool engine_opcodes_in_order() {
  const int64_t opcodes[] = {SSMKIT_ENGINE_INSTRUCTIONS(SSMKIT_ENGINE_OPCODE_OF)};
  for (int64_t i = 0; i < int64_t(sizeof(opcodes) / sizeof(opcodes[0])); ++i)
    if (opcodes[i] != i + 1) return false;
  return true;
}
#undef SSMKIT_ENGINE_OPCODE_OF
static_assert(engine_opcodes_in_order(), "opcodes must be 1, 2, ... in table order (kEngineOpLength is indexed by them)");

// The instruction at c (c[0] its opcode), its operands by name: each field loaded from
// its word (Op::decode), so the fields a caller does not use compile away.
template <typename Op>
inline Op engine_decode(const int64_t* c) {
  return Op::decode(c + 1);
}

inline double engine_f64(int64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

// f(decoded instruction) for the instruction at c; false when c[0] is not an opcode.
template <typename F>
inline bool engine_visit(const int64_t* c, F&& f) {
#define SSMKIT_ENGINE_CASE(opcode, name, Name, OPERANDS) \
  case opcode:                                           \
    f(engine_decode<Engine##Name>(c));                   \
    return true;
  switch (c[0]) {
    SSMKIT_ENGINE_INSTRUCTIONS(SSMKIT_ENGINE_CASE)
    default:
      return false;
  }
#undef SSMKIT_ENGINE_CASE
}

// f(Op{}) for every instruction, in opcode order (for tables of names and roles).
template <typename F>
inline void engine_each_instruction(F&& f) {
#define SSMKIT_ENGINE_EACH(opcode, name, Name, OPERANDS) f(Engine##Name{});
  SSMKIT_ENGINE_INSTRUCTIONS(SSMKIT_ENGINE_EACH)
#undef SSMKIT_ENGINE_EACH
}

}  // namespace ssmkit
