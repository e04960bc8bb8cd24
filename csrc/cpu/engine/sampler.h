// The engine's draw: a token from logits by inverse CDF in double precision
// (EngineParams in ssmkit/engine.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../simd.h"  // imin

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

// A token's probability and index (as a double: exact below 2^53), for the nucleus sort.
struct TokenMass {
  double p, i;
};

// Plain double arithmetic, no a*b+c (so contraction into FMA cannot change it):
// the same operations in the same order as the float64 reference of the tests.
// work: 3n doubles (the probabilities, then n TokenMass).
inline int64_t draw_token(const float* logits, int64_t n, double temperature, double top_p,
                          double u, double* work) {
  double* p = work;
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    p[i] = double(logits[i]) / temperature;
    if (!(std::fabs(p[i]) <= std::numeric_limits<double>::max())) return -1;  // NaN, Inf
    m = p[i] > m ? p[i] : m;
  }
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    p[i] = std::exp(p[i] - m);
    total += p[i];
  }
  for (int64_t i = 0; i < n; ++i) p[i] /= total;
  if (top_p < 1) {
    // The nucleus: most likely first (ties: lower index first); a token stays while
    // the mass of the more likely ones is below top_p (the most likely always does).
    // The 16 most likely first (peaked distributions need no more), then the rest.
    TokenMass* order = reinterpret_cast<TokenMass*>(work + n);
    for (int64_t i = 0; i < n; ++i) order[i] = {p[i], double(i)};
    const auto more_likely = [](const TokenMass& a, const TokenMass& b) {
      return a.p > b.p || (a.p == b.p && a.i < b.i);
    };
    const int64_t first = imin(16, n);
    std::partial_sort(order, order + first, order + n, more_likely);
    int64_t j = 0;
    double before = 0;
    for (; j < first && before < top_p; ++j) before += order[j].p;
    if (before < top_p && first < n) {
      std::sort(order + first, order + n, more_likely);
      for (; j < n && before < top_p; ++j) before += order[j].p;
    }
    for (int64_t k = j; k < n; ++k) p[int64_t(order[k].i)] = 0;
  }
  double kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += p[i];
  const double target = u * kept;
  double acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] == 0) continue;
    acc += p[i];
    last = i;
    if (acc > target) return i;
  }
  return last;  // target rounded up to the whole mass
}

}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
