// One bilinear step of a DPLR system, A = diag(Lambda) - P P^* (rank r) with
// conjugate-pair storage, in O(N r) per channel from the factors of ops.dplr_setup.
// Included inside the per-ISA namespace.
//
// Derivation (full 2N space, then the stored half): with E = diag(2/dt - Lambda),
// I - dt/2 A = dt/2 (E + P P^*), and Woodbury gives
//   (E + P P^*)^-1 = E^-1 - E^-1 P R P^* E^-1,  R = (I_r + P^* E^-1 P)^-1.
// For conjugate-pair vectors v, P^* v = 2 Re(sum_n conj(P_n) v_n) is real, so R is a
// real r x r matrix and the step is
//   s = 2 Re(P^* x),  w = a x + b u - Pd^T s,  t = 2 Re(P^* w),  x' = w - Pd^T (R t)
// with a = (2/dt + Lambda)/(2/dt - Lambda), b = 2 B/(2/dt - Lambda), Pd = P/(2/dt - Lambda).
#pragma once

constexpr int64_t kMaxDplrRank = 64;  // per-task stack arrays for s, t, R t

template <typename T>
inline T dot(const T* p, const T* q, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += p[i] * q[i];
  return acc;
}

template <typename T>
inline void axpy(T alpha, const T* p, T* w, int64_t n) {  // w += alpha p
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) w[i] += alpha * p[i];
}

// w = a x + b u on interleaved complex arrays of n2 reals (whole of them in SIMD vectors).
template <typename T>
inline void complex_axpy(const T* a, const T* x, const T* b, T u, int64_t whole, int64_t n2, T* w) {
  using S = Simd<T>;
  using V = typename S::V;
  const V uv = S::splat(u), minus_plus = alternate(T(-1), T(1));
  for (int64_t i = 0; i < whole; i += S::W) {
    const V xv = S::load(x + i), av = S::load(a + i);
    const V ar = real_parts_twice(av), ai = imag_parts_twice(av);
    S::store(w + i, S::load(b + i) * uv + ar * xv + (ai * minus_plus) * swap_pairs(xv));
  }
  for (int64_t i = whole; i < n2; i += 2) {
    w[i] = a[i] * x[i] - a[i + 1] * x[i + 1] + b[i] * u;
    w[i + 1] = a[i] * x[i + 1] + a[i + 1] * x[i] + b[i + 1] * u;
  }
}

template <typename T>
void dplr_step_impl(const DplrStepParams& p) {
  const int64_t N = p.N, H = p.H, r = p.r;
  const T* u = static_cast<const T*>(p.u);
  const T* D = static_cast<const T*>(p.D);
  const T* Rm = static_cast<const T*>(p.R);
  T* y = static_cast<T*>(p.y);
  struct Local : Scratch<T> {
    using Scratch<T>::Scratch;
  };
  parallel_tasks(
      p.batch * H, p.batch * H * N * (r + 1), [&] { return Local(2 * N); },
      [&](Local& buf, int64_t row) {
        using S = Simd<T>;
        using V = typename S::V;
        constexpr int W = S::W;
        const int64_t h = row % H, n2 = 2 * N, whole = n2 / W * W;
        const T* a = static_cast<const T*>(p.a) + 2 * h * N;
        const T* b = static_cast<const T*>(p.b) + 2 * h * N;
        const T* c = static_cast<const T*>(p.C) + 2 * h * N;
        const T* P = static_cast<const T*>(p.P) + 2 * h * r * N;
        const T* Pd = static_cast<const T*>(p.Pd) + 2 * h * r * N;
        const T* R = Rm + h * r * r;
        const T* x = static_cast<const T*>(p.state) + 2 * row * N;
        T* xo = static_cast<T*>(p.new_state) + 2 * row * N;  // may be x itself
        T* w = buf.p;  // w: (N) complex
        const T uu = u[row];
        T s[kMaxDplrRank], t[kMaxDplrRank], rt[kMaxDplrRank];
        // Re(conj(p) v) summed over n is the plain dot product of the interleaved
        // (re, im) arrays, so the rank-r passes run over 2N reals.
        for (int64_t k = 0; k < r; ++k) s[k] = 2 * dot(P + k * n2, x, n2);  // s = 2 Re(P^* x)
        complex_axpy(a, x, b, uu, whole, n2, w);                         // w = a x + b u
        for (int64_t k = 0; k < r; ++k) axpy(-s[k], Pd + k * n2, w, n2);  // w -= Pd_k s_k
        for (int64_t k = 0; k < r; ++k) t[k] = 2 * dot(P + k * n2, w, n2);  // t = 2 Re(P^* w)
        for (int64_t i = 0; i < r; ++i) {                                 // R t
          T acc = 0;
          for (int64_t j = 0; j < r; ++j) acc += R[i * r + j] * t[j];
          rt[i] = acc;
        }
        for (int64_t k = 0; k < r; ++k) axpy(-rt[k], Pd + k * n2, w, n2);  // w -= Pd_k (R t)_k
        // x' = w, y = 2 Re(C x') + D u
        const V plus_minus = alternate(T(1), T(-1));
        V acc = S::zero();
        for (int64_t i = 0; i < whole; i += W) {
          const V wv = S::load(w + i);
          S::store(xo + i, wv);
          acc += (S::load(c + i) * wv) * plus_minus;
        }
        T sum = S::hsum(acc);
        for (int64_t i = whole; i < n2; i += 2) {
          xo[i] = w[i], xo[i + 1] = w[i + 1];
          sum += c[i] * w[i] - c[i + 1] * w[i + 1];
        }
        y[row] = D ? 2 * sum + D[h] * uu : 2 * sum;  // no D: no D u term (0 * NaN would be NaN)
      });
}
