// Portable SIMD for the CPU kernels: GCC/Clang vector extensions, so one source
// compiles to AVX-512, AVX2, SSE2 or NEON depending on the flags of its translation
// unit (see cmake/SsmkitCPU.cmake). In the per-ISA namespace ssmkit::SSMKIT_ISA.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#ifndef SSMKIT_ISA
#error "SSMKIT_ISA must name the instruction set of this translation unit (cmake/SsmkitCPU.cmake)"
#endif

#if defined(__AVX512F__)
#define SSMKIT_VEC_BYTES 64
#elif defined(__AVX2__)
#define SSMKIT_VEC_BYTES 32
#else
#define SSMKIT_VEC_BYTES 16
#endif

namespace ssmkit {
namespace SSMKIT_ISA {

#if SSMKIT_VEC_BYTES >= 32
// The sum of a 256-bit vector's lanes, halves added first: the order of Simd::hsum.
inline float hsum256(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
inline double hsum256(__m256d v) {
  __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
#endif

template <typename T>
struct Simd {
  static constexpr int W = SSMKIT_VEC_BYTES / sizeof(T);  // lanes
  typedef T V __attribute__((vector_size(SSMKIT_VEC_BYTES)));

  static inline V zero() { return V{}; }
  // x - 0 is x for every x, -0 included, so this is one broadcast (V{} + x would
  // turn -0 into +0, with an add; a per-lane loop compiles to lane inserts).
  static inline V splat(T x) { return x - V{}; }
  static inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static inline void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  // Sum of the lanes, pairwise (halves added until one lane is left): a chain of
  // log2(W) adds, not W, and no less accurate.
  static inline T hsum(V v) {
#if SSMKIT_VEC_BYTES == 64  // halves in registers (the loop below goes through memory)
    if constexpr (sizeof(T) == 4)
      return hsum256(_mm256_add_ps(_mm512_castps512_ps256((__m512)v), _mm512_extractf32x8_ps((__m512)v, 1)));
    else
      return hsum256(_mm256_add_pd(_mm512_castpd512_pd256((__m512d)v), _mm512_extractf64x4_pd((__m512d)v, 1)));
#elif SSMKIT_VEC_BYTES == 32
    if constexpr (sizeof(T) == 4)
      return hsum256((__m256)v);
    else
      return hsum256((__m256d)v);
#else
    T b[W];
    std::memcpy(b, &v, sizeof(V));
    for (int w = W / 2; w > 0; w /= 2)  // the same order as hsum256
      for (int i = 0; i < w; ++i) b[i] += b[i + w];
    return b[0];
#endif
  }
  // True if every lane of the comparison result m is set.
  template <typename M>
  static inline bool all_true(M m) {
#if SSMKIT_VEC_BYTES == 64
    if constexpr (sizeof(T) == 4)
      return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) == 0xFFFF;
    else
      return _mm512_test_epi64_mask((__m512i)m, (__m512i)m) == 0xFF;
#elif SSMKIT_VEC_BYTES == 32
    if constexpr (sizeof(T) == 4)
      return _mm256_movemask_ps((__m256)m) == 0xFF;
    else
      return _mm256_movemask_pd((__m256d)m) == 0xF;
#elif defined(__SSE2__)
    if constexpr (sizeof(T) == 4)
      return _mm_movemask_ps((__m128)m) == 0xF;
    else
      return _mm_movemask_pd((__m128d)m) == 0x3;
#else
    bool all = true;
    for (int i = 0; i < W; ++i) all &= m[i] != 0;
    return all;
#endif
  }
  // Lanes [0, n) keep x, the others become 0: used on a tail vector.
  static inline V keep_first(V x, int n) {
    for (int i = n; i < W; ++i) x[i] = 0;
    return x;
  }
};

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Per-thread scratch memory, 64-byte aligned. Plain malloc/free: no std containers
// in ISA-specific code, whose out-of-line copies could be shared between ISAs.
template <typename T>
struct Scratch {
  T* p = nullptr;
  explicit Scratch(int64_t n) {
    size_t bytes = static_cast<size_t>(round_up(n > 0 ? n : 1, 16)) * sizeof(T);
    p = static_cast<T*>(std::aligned_alloc(64, round_up(static_cast<int64_t>(bytes), 64)));
  }
  ~Scratch() { std::free(p); }
  bool ok() const { return p != nullptr; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
