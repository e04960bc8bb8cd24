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
      p.batch * H, [&] { return Local(2 * N); },
      [&](Local& buf, int64_t row) {
        const int64_t h = row % H;
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
        for (int64_t k = 0; k < r; ++k) {  // s = 2 Re(P^* x)
          const T* pk = P + 2 * k * N;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t n = 0; n < N; ++n) acc += pk[2 * n] * x[2 * n] + pk[2 * n + 1] * x[2 * n + 1];
          s[k] = 2 * acc;
        }
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) {  // w = a x + b u
          w[2 * n] = a[2 * n] * x[2 * n] - a[2 * n + 1] * x[2 * n + 1] + b[2 * n] * uu;
          w[2 * n + 1] = a[2 * n] * x[2 * n + 1] + a[2 * n + 1] * x[2 * n] + b[2 * n + 1] * uu;
        }
        for (int64_t k = 0; k < r; ++k) {  // w -= Pd_k s_k
          const T* pk = Pd + 2 * k * N;
          const T sk = s[k];
#pragma omp simd
          for (int64_t n = 0; n < 2 * N; ++n) w[n] -= pk[n] * sk;
        }
        for (int64_t k = 0; k < r; ++k) {  // t = 2 Re(P^* w)
          const T* pk = P + 2 * k * N;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t n = 0; n < N; ++n) acc += pk[2 * n] * w[2 * n] + pk[2 * n + 1] * w[2 * n + 1];
          t[k] = 2 * acc;
        }
        for (int64_t i = 0; i < r; ++i) {  // R t
          T acc = 0;
          for (int64_t j = 0; j < r; ++j) acc += R[i * r + j] * t[j];
          rt[i] = acc;
        }
        for (int64_t k = 0; k < r; ++k) {  // w -= Pd_k (R t)_k
          const T* pk = Pd + 2 * k * N;
          const T q = rt[k];
#pragma omp simd
          for (int64_t n = 0; n < 2 * N; ++n) w[n] -= pk[n] * q;
        }
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {  // x' = w, y = 2 Re(C x') + D u
          xo[2 * n] = w[2 * n];
          xo[2 * n + 1] = w[2 * n + 1];
          acc += c[2 * n] * w[2 * n] - c[2 * n + 1] * w[2 * n + 1];
        }
        y[row] = D ? 2 * acc + D[row % H] * uu : 2 * acc;  // no D: no term (0 * NaN is NaN)
      });
}
