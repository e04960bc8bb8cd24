// The long convolution of the S4 layer (FftConvParams in ssmkit.h), forward and
// backward, compiled once per instruction set into namespace ssmkit::<isa>.
//
// A power-of-two FFT of length N >= 2L (so the circular convolution is the linear one)
// whose every element is a SIMD vector of W channels: u (batch, L, H) is read in its
// own layout, a row of W channels at a time, never transposed. Per block of W channels:
// - forward transforms are decimation in frequency (natural order in, bit-reversed out)
//   and inverse ones decimation in time (bit-reversed in, natural out), so spectra are
//   only multiplied pointwise and no permutation is ever made;
// - the upper half of every input is zero, so the first forward stage reads L rows and
//   writes x and x w^n; the last inverse stage computes only the L outputs kept;
// - two batch elements travel as one complex signal (u[2i] + i u[2i+1]): the kernels
//   are real, so the product with their spectrum keeps the two apart (real and
//   imaginary part of the result). dk's sum over the batch is taken on the spectra,
//   Re of (G conj U) of the packed signals being the sum of the two correlations;
// - the kernel's spectrum is computed once per block and call, and the backward
//   transforms gy once for du and dk.
// Twiddles are rounded from double precision. Threads take blocks of channels; each
// block's outputs (dk's sum over the batch included, in batch order) belong to one
// task, so results do not depend on the thread count. A NaN or Inf spreads over the
// whole transform: to every output of its channel, in its batch element and in the one
// packed with it (2i and 2i+1).
#include <cmath>

#include "common.h"
#include "simd.h"
#include "ssmkit/cpu_kernels.h"
#include "ssmkit/static_switch.h"

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

template <typename T>
struct FftConv {
  using S = Simd<T>;
  using V = typename S::V;
  static constexpr int W = S::W;

  const FftConvInputs& p;
  int64_t N;     // transform length, a power of two >= 2L
  const T* tw;   // tw[2j], tw[2j+1]: cos and -sin of 2 pi j / N, j < N/2
  T scale;       // 1/N, exact

  // A buffer holds N elements; element n is W real parts then W imaginary parts.
  static V re(const T* x, int64_t n) { return S::load(x + 2 * W * n); }
  static V im(const T* x, int64_t n) { return S::load(x + 2 * W * n + W); }
  static void put(T* x, int64_t n, V r, V i) {
    S::store(x + 2 * W * n, r);
    S::store(x + 2 * W * n + W, i);
  }

  // (r, i) times tw[j], or its conjugate (kConj: the inverse transform).
  template <bool kConj>
  void rotate(int64_t j, V& r, V& i) const {
    const V c = S::splat(tw[2 * j]), s = S::splat(kConj ? -tw[2 * j + 1] : tw[2 * j + 1]);
    const V r2 = r * c - i * s;
    i = r * s + i * c;
    r = r2;
  }

  // Lanes [0, w) of a row of channels; the others are 0 on load and not written on store.
  static V load_row(const T* a, int w) {
    if (w == W) return S::load(a);
    V v = S::zero();
    for (int i = 0; i < w; ++i) v[i] = a[i];
    return v;
  }
  static void store_row(T* a, V v, int w) {
    if (w == W) return S::store(a, v);
    for (int i = 0; i < w; ++i) a[i] = v[i];
  }

  // ---- the transforms ----

  // Forward stage of half-size h (decimation in frequency) over the whole buffer.
  void dif2(T* x, int64_t h) const {
    const int64_t s = N / (2 * h);
    for (int64_t j = 0; j < N; j += 2 * h)
      for (int64_t n = 0; n < h; ++n) {
        V ar = re(x, j + n), ai = im(x, j + n), br = re(x, j + n + h), bi = im(x, j + n + h);
        V dr = ar - br, di = ai - bi;
        rotate<false>(n * s, dr, di);
        put(x, j + n, ar + br, ai + bi);
        put(x, j + n + h, dr, di);
      }
  }

  // The stages of half-size h and h/2 in one pass (the same arithmetic as dif2(h), dif2(h/2)).
  void dif4(T* x, int64_t h) const {
    const int64_t s = N / (2 * h), q = h / 2;
    for (int64_t j = 0; j < N; j += 2 * h)
      for (int64_t n = 0; n < q; ++n) {
        const int64_t i0 = j + n, i1 = i0 + q, i2 = i0 + h, i3 = i1 + h;
        V x0r = re(x, i0), x0i = im(x, i0), x1r = re(x, i1), x1i = im(x, i1);
        V x2r = re(x, i2), x2i = im(x, i2), x3r = re(x, i3), x3i = im(x, i3);
        V a0r = x0r + x2r, a0i = x0i + x2i, a2r = x0r - x2r, a2i = x0i - x2i;
        V a1r = x1r + x3r, a1i = x1i + x3i, a3r = x1r - x3r, a3i = x1i - x3i;
        rotate<false>(n * s, a2r, a2i);
        rotate<false>((n + q) * s, a3r, a3i);
        V b1r = a0r - a1r, b1i = a0i - a1i, b3r = a2r - a3r, b3i = a2i - a3i;
        rotate<false>(2 * n * s, b1r, b1i);
        rotate<false>(2 * n * s, b3r, b3i);
        put(x, i0, a0r + a1r, a0i + a1i);
        put(x, i1, b1r, b1i);
        put(x, i2, a2r + a3r, a2i + a3i);
        put(x, i3, b3r, b3i);
      }
  }

  // Inverse stage of half-size h (decimation in time, conjugate twiddles, unscaled).
  void dit2(T* x, int64_t h) const {
    const int64_t s = N / (2 * h);
    for (int64_t j = 0; j < N; j += 2 * h)
      for (int64_t n = 0; n < h; ++n) {
        V ar = re(x, j + n), ai = im(x, j + n), br = re(x, j + n + h), bi = im(x, j + n + h);
        rotate<true>(n * s, br, bi);
        put(x, j + n, ar + br, ai + bi);
        put(x, j + n + h, ar - br, ai - bi);
      }
  }

  // The stages of half-size h and 2h in one pass (the same arithmetic as dit2(h), dit2(2h)).
  void dit4(T* x, int64_t h) const {
    const int64_t s1 = N / (2 * h), s2 = s1 / 2;
    for (int64_t j = 0; j < N; j += 4 * h)
      for (int64_t n = 0; n < h; ++n) {
        const int64_t i0 = j + n, i1 = i0 + h, i2 = i1 + h, i3 = i2 + h;
        V x0r = re(x, i0), x0i = im(x, i0), x1r = re(x, i1), x1i = im(x, i1);
        V x2r = re(x, i2), x2i = im(x, i2), x3r = re(x, i3), x3i = im(x, i3);
        rotate<true>(n * s1, x1r, x1i);
        rotate<true>(n * s1, x3r, x3i);
        V a0r = x0r + x1r, a0i = x0i + x1i, a1r = x0r - x1r, a1i = x0i - x1i;
        V a2r = x2r + x3r, a2i = x2i + x3i, a3r = x2r - x3r, a3i = x2i - x3i;
        rotate<true>(n * s2, a2r, a2i);
        rotate<true>((n + h) * s2, a3r, a3i);
        put(x, i0, a0r + a2r, a0i + a2i);
        put(x, i1, a1r + a3r, a1i + a3i);
        put(x, i2, a0r - a2r, a0i - a2i);
        put(x, i3, a1r - a3r, a1i - a3i);
      }
  }

  // Forward stages of half-size N/4 down to 1 (after the first, N/2).
  void dif_rest(T* x) const {
    int64_t h = N / 4;
    for (; h >= 2; h /= 4) dif4(x, h);
    if (h == 1) dif2(x, 1);
  }

  // Inverse stages of half-size 1 up to N/4 (before the last, N/2).
  void dit_rest(T* x) const {
    int64_t h = 1;
    for (; 4 * h <= N / 2; h *= 4) dit4(x, h);
    if (2 * h == N / 2) dit2(x, h);
  }

  // The spectrum of two rows of signals of length L, zero above: row(t, r, i) gives
  // the real and imaginary lanes at time t < L. The first stage (half-size N/2) pairs
  // x[n] with a zero: it writes x[n] and x[n] w^n.
  template <typename Row>
  void forward(T* x, Row row) const {
    const int64_t half = N / 2;
    for (int64_t n = 0; n < half; ++n) {
      V r = S::zero(), i = S::zero();
      if (n < p.L) row(n, r, i);
      put(x, n, r, i);
      rotate<false>(n, r, i);
      put(x, n + half, r, i);
    }
    dif_rest(x);
  }

  // The inverse transform of x (scaled by 1/N); out(t, r, i) receives output t for
  // t < L, and out(N - 1 - j, ...) for j < L as well when `anticausal`.
  template <typename Out>
  void inverse(T* x, bool anticausal, Out out) const {
    dit_rest(x);
    const int64_t half = N / 2;
    const V sc = S::splat(scale);
    for (int64_t n = 0; n < half; ++n) {
      const bool lo = n < p.L, hi = anticausal && n + half >= N - p.L;
      if (!lo && !hi) continue;
      const V ar = re(x, n), ai = im(x, n);
      V br = re(x, n + half), bi = im(x, n + half);
      rotate<true>(n, br, bi);
      if (lo) out(n, (ar + br) * sc, (ai + bi) * sc);
      if (hi) out(n + half, (ar - br) * sc, (ai - bi) * sc);
    }
  }

  // The spectrum of the kernels of channels [h0, h0 + w): k[0] at times 0..L-1, k[1]
  // (anticausal) reversed at N-1 down to N-L. Real; the imaginary part is zero.
  void kernel_spectrum(T* x, int64_t h0, int w) const {
    const T* k = static_cast<const T*>(p.k);
    for (int64_t n = 0; n < N; ++n) put(x, n, S::zero(), S::zero());
    for (int64_t c = 0; c < p.c; ++c)
      for (int i = 0; i < w; ++i) {
        const T* row = k + (c * p.H + h0 + i) * p.L;
        for (int64_t t = 0; t < p.L; ++t) x[2 * W * (c ? N - 1 - t : t) + i] = row[t];
      }
    dif2(x, N / 2);
    dif_rest(x);
  }

  // Rows of a (batch, L, H) array for the batch pair (b, b + 1) and channels [h0, h0 + w).
  auto pair_rows(const void* a, int64_t b, int64_t h0, int w) const {
    const T* r0 = static_cast<const T*>(a) + b * p.L * p.H + h0;
    const T* r1 = b + 1 < p.batch ? r0 + p.L * p.H : nullptr;
    const int64_t H = p.H;
    return [=](int64_t t, V& r, V& i) {
      r = load_row(r0 + t * H, w);
      if (r1) i = load_row(r1 + t * H, w);
    };
  }
  auto pair_out(void* a, int64_t b, int64_t h0, int w) const {
    T* r0 = static_cast<T*>(a) + b * p.L * p.H + h0;
    T* r1 = b + 1 < p.batch ? r0 + p.L * p.H : nullptr;
    const int64_t H = p.H;
    return [=](int64_t t, V r, V i) {
      store_row(r0 + t * H, r, w);
      if (r1) store_row(r1 + t * H, i, w);
    };
  }

  // x *= y, or x *= conj(y), pointwise.
  template <bool kConj>
  void multiply(T* x, const T* y) const {
    for (int64_t n = 0; n < N; ++n) {
      const V xr = re(x, n), xi = im(x, n), yr = re(y, n), yi = kConj ? -im(y, n) : im(y, n);
      put(x, n, xr * yr - xi * yi, xr * yi + xi * yr);
    }
  }
  // acc += x conj(y), pointwise.
  void accumulate(T* acc, const T* x, const T* y) const {
    for (int64_t n = 0; n < N; ++n) {
      const V xr = re(x, n), xi = im(x, n), yr = re(y, n), yi = im(y, n);
      put(acc, n, re(acc, n) + (xr * yr + xi * yi), im(acc, n) + (xi * yr - xr * yi));
    }
  }

  // ---- the ops ----

  int64_t blocks() const { return ceil_div(p.H, W); }
  int64_t elems() const { return 2 * W * N; }  // T values per buffer
  int width(int64_t blk) const { return static_cast<int>(imin(W, p.H - blk * W)); }

  void run_forward(const FftConvParams& fp, T* K, T* X, int64_t blk) const {
    const int64_t h0 = blk * W;
    const int w = width(blk);
    kernel_spectrum(K, h0, w);
    for (int64_t b = 0; b < p.batch; b += 2) {
      forward(X, pair_rows(p.u, b, h0, w));
      multiply<false>(X, K);
      inverse(X, false, pair_out(fp.y, b, h0, w));
    }
  }

  void run_backward(const FftConvBackwardParams& bp, T* K, T* G, T* X, T* A, int64_t blk) const {
    const int64_t h0 = blk * W;
    const int w = width(blk);
    if (bp.du) kernel_spectrum(K, h0, w);
    if (bp.dk)
      for (int64_t n = 0; n < N; ++n) put(A, n, S::zero(), S::zero());
    for (int64_t b = 0; b < p.batch; b += 2) {
      forward(G, pair_rows(bp.gy, b, h0, w));
      if (bp.dk) {
        forward(X, pair_rows(p.u, b, h0, w));
        accumulate(A, G, X);
      }
      if (bp.du) {
        multiply<true>(G, K);
        inverse(G, false, pair_out(bp.du, b, h0, w));
      }
    }
    if (bp.dk) {
      T* dk = static_cast<T*>(bp.dk);
      const int64_t L = p.L, H = p.H;
      inverse(A, p.c == 2, [&](int64_t t, V r, V) {
        // output t < L is lag t of k[0]; output N-1-j is lag j of k[1]
        const bool causal = t < L;
        T* row = dk + ((causal ? 0 : H) + h0) * L + (causal ? t : N - 1 - t);
        for (int i = 0; i < w; ++i) row[i * L] = r[i];
      });
    }
  }
};

// The twiddles of a length-N transform, from double precision.
template <typename T>
void make_twiddles(T* tw, int64_t N) {
  const double step = 2 * 3.14159265358979323846 / static_cast<double>(N);
  for (int64_t j = 0; j < N / 2; ++j) {
    tw[2 * j] = static_cast<T>(std::cos(step * j));
    tw[2 * j + 1] = static_cast<T>(-std::sin(step * j));
  }
}

int64_t transform_length(int64_t L) {
  int64_t N = 2;
  while (N < 2 * L) N *= 2;
  return N;
}

// Runs body(conv, buffers, block) over the blocks of channels with `nbuf` buffers per thread.
template <typename T, typename Body>
void over_blocks(const FftConvInputs& p, int nbuf, Body body) {
  const int64_t N = transform_length(p.L);
  Scratch<T> tw(N);
  if (!tw.ok()) throw std::bad_alloc();
  make_twiddles(tw.p, N);
  const FftConv<T> conv{p, N, tw.p, T(1) / static_cast<T>(N)};
  const int64_t work = p.batch * p.H * N;
  parallel_tasks(
      conv.blocks(), work, [&] { return Scratch<T>(nbuf * conv.elems()); },
      [&](Scratch<T>& s, int64_t blk) { body(conv, s.p, blk); });
}

template <typename T>
void fft_conv_t(const FftConvParams& p) {
  if (p.L == 0 || p.batch == 0 || p.H == 0) return;
  over_blocks<T>(p, 2, [&](const FftConv<T>& conv, T* s, int64_t blk) {
    conv.run_forward(p, s, s + conv.elems(), blk);
  });
}

template <typename T>
void fft_conv_backward_t(const FftConvBackwardParams& p) {
  if (p.dk && (p.batch == 0 || p.L == 0)) zero_fill<T>(p.dk, p.c * p.H * p.L);
  if (p.L == 0 || p.batch == 0 || p.H == 0 || (!p.du && !p.dk)) return;
  over_blocks<T>(p, 4, [&](const FftConv<T>& conv, T* s, int64_t blk) {
    const int64_t e = conv.elems();
    conv.run_backward(p, s, s + e, s + 2 * e, s + 3 * e, blk);
  });
}

}  // namespace

void fft_conv(const FftConvParams& p) { SSMKIT_DTYPE_SWITCH(p.dtype, T, fft_conv_t<T>(p)); }
void fft_conv_backward(const FftConvBackwardParams& p) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, fft_conv_backward_t<T>(p));
}

}  // namespace SSMKIT_ISA
}  // namespace ssmkit
