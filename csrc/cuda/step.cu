// Discretization, ssm_step, ssm_scan (forward and reverse-scan backward) and the DPLR
// step on the GPU (definitions in ssmkit.h; the CPU twins in csrc/cpu/step.h, dplr.h).
//
// discretize: one thread per (h, n), scalar complex math in the kernel's precision
// (once per forward; not worth more). The backward's gdt sums over n: one thread per h.
// dt <= 0 cannot be refused without reading dt on the host (a sync), so on the GPU
// such channels give NaN (a NaN dt already gives NaN on the CPU).
//
// Scan and step: a group of G lanes (a power of two <= 32) owns one (batch, h) and
// walks l sequentially; each lane keeps NB states, their dA, dB, dC in registers, so a
// step is register FMAs plus a log2(G)-shuffle sum for y. u[b, l, h] is read by the
// whole group at once (one broadcast) and y written by its first lane. For N > 32 NB
// the group makes several passes over l, each adding its states' share into y. The
// step is the scan with L = 1 (u (batch, H) is u (batch, 1, H)); it reads each state
// before writing it, in the same thread, so it is safe in place.
//
// Backward: the same groups. A forward walk stores the state every kCkpt = 64 steps
// in stream-ordered scratch; the reverse walk recomputes each segment's states from
// its checkpoint into a per-thread array (local memory) and runs the CPU's recurrence
// for lambda. Sums over l are per segment, then added up (as on the CPU).
//
// dplr_step: one warp per (batch, h); lanes own n = lane + 32 i. The rank-r
// projections sigma = 2 Re(Q^* x) are warp sums (all of x read before any x' is
// written), then x' = a x + b u - Pd^T sigma as on the CPU (csrc/cpu/dplr.h), so it is
// safe in place too.
#include "common.cuh"

#include "ssmkit/discretize_math.h"  // phi1 and the per-element math, shared with the CPU

namespace ssmkit {
namespace {
using namespace cuda;

template <typename T>
__global__ void discretize_kernel(DiscretizeParams p) {
  const T* dt = static_cast<const T*>(p.dt);
  for (int64_t i = grid_thread(); i < p.H * p.N; i += grid_stride()) {
    discretize_at(p, step_size(dt, i / p.N), i);
  }
}

// One thread per h (the sum of gdt over n stays in one thread).
template <typename T>
__global__ void discretize_backward_kernel(DiscretizeBackwardParams p) {
  const T* dt = static_cast<const T*>(p.dt);
  for (int64_t h = grid_thread(); h < p.H; h += grid_stride()) {
    const T s = step_size(dt, h);
    T gdt = 0;
    for (int64_t n = 0; n < p.N; ++n) gdt += discretize_backward_at(p, s, h * p.N + n);
    if (p.gdt) static_cast<T*>(p.gdt)[h] = gdt;
  }
}

// ---- scan and step ----

constexpr int kScanThreads = 128;
constexpr int64_t kCkpt = 64;  // backward: a checkpoint every kCkpt steps

// Lanes per (batch, h) group: enough for N with NB states per lane, a power of two <= 32.
inline int group_width(int64_t N, int NB) {
  int g = 1;
  while (g < 32 && int64_t(g) * NB < N) g *= 2;
  return g;
}

// Where a thread sits: its (batch, h) row, its lane in the group, and whether the row
// exists (threads past the last row still run the loops, for the warp shuffles).
struct Slot {
  int64_t row;
  int lane;
  bool valid;
};
__device__ inline Slot slot_of(int64_t thread, int G, int64_t rows) {
  const int64_t row = thread / G;
  return {row < rows ? row : 0, static_cast<int>(thread % G), row < rows};
}
// Grid-stride loop bound, rounded to whole warps so every lane of a warp iterates alike.
__host__ __device__ inline int64_t padded_threads(int64_t rows, int G) { return ceil_div(rows * G, 32) * 32; }

template <typename T, int NB>
__global__ void __launch_bounds__(kScanThreads) scan_kernel(ScanParams p, int G, int passes) {
  const int64_t rows = p.batch * p.H, total = padded_threads(rows, G);
  const T* u = static_cast<const T*>(p.u);
  T* y = static_cast<T*>(p.y);
  for (int64_t th = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       th - threadIdx.x % 32 < total; th += int64_t(gridDim.x) * blockDim.x) {
    const Slot s = slot_of(th, G, rows);
    const bool valid = s.valid && th < total;
    const int64_t bi = s.row / p.H, h = s.row % p.H;
    const T d = (p.D && valid) ? static_cast<const T*>(p.D)[h] : T(0);
    for (int pass = 0; pass < passes; ++pass) {
      Cx<T> a[NB], b[NB], c[NB], x[NB];
#pragma unroll
      for (int i = 0; i < NB; ++i) {
        const int64_t n = (int64_t(pass) * G + s.lane) * NB + i;
        const bool in = valid && n < p.N;
        a[i] = in ? cx_load<T>(p.dA, h * p.N + n) : Cx<T>{0, 0};
        b[i] = in ? cx_load<T>(p.dB, h * p.N + n) : Cx<T>{0, 0};
        c[i] = in ? T(2) * cx_load<T>(p.dC, h * p.N + n) : Cx<T>{0, 0};  // y = 2 Re(...)
        x[i] = (in && p.state0) ? cx_load<T>(p.state0, s.row * p.N + n) : Cx<T>{0, 0};
      }
#pragma unroll 4
      for (int64_t l = 0; l < p.L; ++l) {
        const int64_t iu = (bi * p.L + l) * p.H + h;
        const T uu = valid ? u[iu] : T(0);
        T acc = 0;
#pragma unroll
        for (int i = 0; i < NB; ++i) {
          x[i] = a[i] * x[i] + uu * b[i];
          acc += c[i].re * x[i].re - c[i].im * x[i].im;
        }
        acc = group_sum(acc, G);
        if (valid && s.lane == 0) y[iu] = (pass == 0 ? d * uu : y[iu]) + acc;
      }
#pragma unroll
      for (int i = 0; i < NB; ++i) {
        const int64_t n = (int64_t(pass) * G + s.lane) * NB + i;
        if (valid && n < p.N) cx_store(p.state, s.row * p.N + n, x[i]);
      }
    }
  }
}

template <typename T>
__host__ __device__ constexpr int scan_nb() { return sizeof(T) == 4 ? 8 : 4; }
template <typename T>
__host__ __device__ constexpr int scan_bwd_nb() { return sizeof(T) == 4 ? 4 : 2; }

template <typename T>
void scan_t(const ScanParams& p, cudaStream_t stream, const char* op) {
  constexpr int NB = scan_nb<T>();
  const int64_t rows = p.batch * p.H;
  if (rows == 0) return;
  const int G = group_width(p.N, NB);
  const int passes = static_cast<int>(p.N > 0 ? ceil_div(p.N, int64_t(G) * NB) : 1);
  scan_kernel<T, NB><<<grid_for(padded_threads(rows, G), kScanThreads), kScanThreads, 0, stream>>>(
      p, G, passes);
  SSMKIT_CUDA_CHECK_LAUNCH(op);
}

// Reverse scan (the CPU's ssm_scan_backward_impl, per lane for its NB states):
//   lambda_l = 2 g_l conj(dC) + (l == L-1 ? gstate : conj(dA) lambda_{l+1})
//   g_u[l] = sum_n Re(lambda_l conj(dB)) + D g_l,  g_dA += conj(state_{l-1}) lambda_l,
//   g_dB += u_l lambda_l,  g_dC += 2 g_l conj(state_l),  g_D += g_l u_l,
//   g_state0 = conj(dA) lambda_0.
template <typename T, int NB>
__global__ void __launch_bounds__(kScanThreads)
    scan_backward_kernel(ScanBackwardParams p, int G, int passes, Cx<T>* ckpt) {
  const int64_t rows = p.batch * p.H, total = padded_threads(rows, G);
  const int64_t L = p.L, H = p.H, N = p.N, segs = ceil_div(L, kCkpt);
  const T* u = static_cast<const T*>(p.u);
  const T* gy = static_cast<const T*>(p.gy);
  T* gu = static_cast<T*>(p.gu);
  for (int64_t th = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       th - threadIdx.x % 32 < total; th += int64_t(gridDim.x) * blockDim.x) {
    const Slot s = slot_of(th, G, rows);
    const bool valid = s.valid && th < total;
    const int64_t bi = s.row / H, h = s.row % H;
    const T d = (p.D && valid) ? static_cast<const T*>(p.D)[h] : T(0);
    T gd = 0;  // lane 0 of pass 0 only
    for (int pass = 0; pass < passes; ++pass) {
      Cx<T> a[NB], b[NB], c[NB], x[NB], lam[NB];
      bool in[NB];
#pragma unroll
      for (int i = 0; i < NB; ++i) {
        const int64_t n = (int64_t(pass) * G + s.lane) * NB + i;
        in[i] = valid && n < N;
        a[i] = in[i] ? cx_load<T>(p.dA, h * N + n) : Cx<T>{0, 0};
        b[i] = in[i] ? cx_load<T>(p.dB, h * N + n) : Cx<T>{0, 0};
        c[i] = in[i] ? cx_load<T>(p.dC, h * N + n) : Cx<T>{0, 0};
        x[i] = (in[i] && p.state0) ? cx_load<T>(p.state0, s.row * N + n) : Cx<T>{0, 0};
        lam[i] = (in[i] && p.gstate) ? cx_load<T>(p.gstate, s.row * N + n) : Cx<T>{0, 0};
      }
      // Forward: checkpoint k holds the state before step k * kCkpt.
      for (int64_t sg = 0; sg < segs; ++sg) {
#pragma unroll
        for (int i = 0; i < NB; ++i) {
          const int64_t n = (int64_t(pass) * G + s.lane) * NB + i;
          if (in[i]) ckpt[(sg * rows + s.row) * N + n] = x[i];
        }
        const int64_t l0 = sg * kCkpt, l1 = l0 + kCkpt < L ? l0 + kCkpt : L;
        for (int64_t l = l0; l < l1; ++l) {
          const T uu = valid ? u[(bi * L + l) * H + h] : T(0);
#pragma unroll
          for (int i = 0; i < NB; ++i) x[i] = a[i] * x[i] + uu * b[i];
        }
      }
      Cx<T> tot_a[NB], tot_b[NB], tot_c[NB];
#pragma unroll
      for (int i = 0; i < NB; ++i) tot_a[i] = tot_b[i] = tot_c[i] = Cx<T>{0, 0};
      Cx<T> seg[kCkpt][NB];  // states before each step of one segment (local memory)
      for (int64_t sg = segs - 1; sg >= 0; --sg) {
        const int64_t l0 = sg * kCkpt, nl = (l0 + kCkpt < L ? l0 + kCkpt : L) - l0;
#pragma unroll
        for (int i = 0; i < NB; ++i) {
          const int64_t n = (int64_t(pass) * G + s.lane) * NB + i;
          seg[0][i] = in[i] ? ckpt[(sg * rows + s.row) * N + n] : Cx<T>{0, 0};
        }
        for (int64_t j = 0; j + 1 < nl; ++j) {
          const T uu = valid ? u[(bi * L + l0 + j) * H + h] : T(0);
#pragma unroll
          for (int i = 0; i < NB; ++i) seg[j + 1][i] = a[i] * seg[j][i] + uu * b[i];
        }
        Cx<T> pa[NB], pb[NB], pc[NB];
#pragma unroll
        for (int i = 0; i < NB; ++i) pa[i] = pb[i] = pc[i] = Cx<T>{0, 0};
        T sd = 0;
        for (int64_t j = nl - 1; j >= 0; --j) {
          const int64_t iu = (bi * L + l0 + j) * H + h;
          const T uu = valid ? u[iu] : T(0), g = valid ? gy[iu] : T(0), g2 = 2 * g;
          T acc = 0;
#pragma unroll
          for (int i = 0; i < NB; ++i) {
            const Cx<T> prev = seg[j][i];
            const Cx<T> lm = lam[i] + g2 * conj(c[i]);  // lambda_l
            acc += lm.re * b[i].re + lm.im * b[i].im;
            pa[i] = pa[i] + conj(prev) * lm;
            pb[i] = pb[i] + uu * lm;
            const Cx<T> xl = a[i] * prev + uu * b[i];  // state_l
            pc[i] = pc[i] + g2 * conj(xl);
            lam[i] = conj(a[i]) * lm;
          }
          acc = group_sum(acc, G);
          if (valid && s.lane == 0) {
            if (gu) gu[iu] = (pass == 0 ? d * g : gu[iu]) + acc;
            if (pass == 0) sd += g * uu;
          }
        }
#pragma unroll
        for (int i = 0; i < NB; ++i)
          tot_a[i] = tot_a[i] + pa[i], tot_b[i] = tot_b[i] + pb[i], tot_c[i] = tot_c[i] + pc[i];
        gd += sd;
      }
#pragma unroll
      for (int i = 0; i < NB; ++i) {
        const int64_t n = (int64_t(pass) * G + s.lane) * NB + i;
        if (!in[i]) continue;
        const int64_t o = s.row * N + n;
        if (p.gdA) cx_store(p.gdA, o, tot_a[i]);
        if (p.gdB) cx_store(p.gdB, o, tot_b[i]);
        if (p.gdC) cx_store(p.gdC, o, tot_c[i]);
        if (p.gstate0) cx_store(p.gstate0, o, lam[i]);
      }
    }
    if (valid && s.lane == 0 && p.gD) static_cast<T*>(p.gD)[s.row] = gd;
  }
}

template <typename T>
void scan_backward_t(const ScanBackwardParams& p, cudaStream_t stream) {
  const char* op = "ssm_scan_backward";
  constexpr int NB = scan_bwd_nb<T>();
  const int64_t rows = p.batch * p.H;
  if (rows == 0) return;
  const int G = group_width(p.N, NB);
  const int passes = static_cast<int>(p.N > 0 ? ceil_div(p.N, int64_t(G) * NB) : 1);
  Scratch ckpt(sizeof(Cx<T>) * ceil_div(p.L, kCkpt) * rows * p.N, stream, op);
  scan_backward_kernel<T, NB>
      <<<grid_for(padded_threads(rows, G), kScanThreads), kScanThreads, 0, stream>>>(
          p, G, passes, ckpt.as<Cx<T>>());
  SSMKIT_CUDA_CHECK_LAUNCH(op);
}

// ---- DPLR step: one warp per (batch, h) ----

constexpr int kMaxRank = 64;  // as on the CPU (the binding refuses larger r)

template <typename T>
__global__ void dplr_step_kernel(DplrStepParams p) {
  const int64_t rows = p.batch * p.H, N = p.N, r = p.r;
  const int lane = threadIdx.x % 32;
  const T* u = static_cast<const T*>(p.u);
  const T* Pd = static_cast<const T*>(p.Pd);
  const T* Q = static_cast<const T*>(p.Q);
  T* xo = static_cast<T*>(p.new_state);
  const T* x = static_cast<const T*>(p.state);
  for (int64_t w0 = grid_thread() / 32; w0 < rows; w0 += grid_stride() / 32) {  // uniform per warp
    const int64_t row = w0, h = row % p.H;
    const T* a = static_cast<const T*>(p.a) + 2 * h * N;
    const T* b = static_cast<const T*>(p.b) + 2 * h * N;
    const T* C = static_cast<const T*>(p.C) + 2 * h * N;
    const T* Pdh = Pd + 2 * h * r * N;
    const T* Qh = Q + 2 * h * r * N;
    const T* xr = x + 2 * row * N;
    T* wo = xo + 2 * row * N;  // may be xr itself
    const T uu = u[row];
    T sigma[kMaxRank];
    for (int64_t k = 0; k < r; ++k) {  // sigma = 2 Re(Q^* x)
      T acc = 0;
      for (int64_t n = lane; n < N; n += 32)
        acc += Qh[2 * (k * N + n)] * xr[2 * n] + Qh[2 * (k * N + n) + 1] * xr[2 * n + 1];
      sigma[k] = 2 * group_sum(acc, 32);
    }
    T acc = 0;
    for (int64_t n = lane; n < N; n += 32) {  // x' = a x + b u - Pd^T sigma (x_n read first), y
      T wr = b[2 * n] * uu, wi = b[2 * n + 1] * uu;
      for (int64_t k = 0; k < r; ++k) {
        wr -= Pdh[2 * (k * N + n)] * sigma[k];
        wi -= Pdh[2 * (k * N + n) + 1] * sigma[k];
      }
      const T xre = xr[2 * n], xim = xr[2 * n + 1];
      wr = (wr - a[2 * n + 1] * xim) + a[2 * n] * xre;
      wi = (wi + a[2 * n + 1] * xre) + a[2 * n] * xim;
      wo[2 * n] = wr;
      wo[2 * n + 1] = wi;
      acc += C[2 * n] * wr - C[2 * n + 1] * wi;
    }
    acc = group_sum(acc, 32);
    if (lane == 0)  // no D: no D u term (0 * NaN is NaN), as on the CPU
      static_cast<T*>(p.y)[row] = p.D ? 2 * acc + static_cast<const T*>(p.D)[h] * uu : 2 * acc;
  }
}

template <typename T>
void discretize_t(const DiscretizeParams& p, cudaStream_t stream) {
  if (p.H * p.N == 0) return;
  discretize_kernel<T><<<grid_for(p.H * p.N, 256), 256, 0, stream>>>(p);
  SSMKIT_CUDA_CHECK_LAUNCH("discretize");
}
template <typename T>
void discretize_backward_t(const DiscretizeBackwardParams& p, cudaStream_t stream) {
  if (p.H == 0) return;
  discretize_backward_kernel<T><<<grid_for(p.H, 128), 128, 0, stream>>>(p);
  SSMKIT_CUDA_CHECK_LAUNCH("discretize_backward");
}
template <typename T>
void dplr_step_t(const DplrStepParams& p, cudaStream_t stream) {
  const int64_t rows = p.batch * p.H;
  if (rows == 0) return;
  dplr_step_kernel<T><<<grid_for(rows * 32, 128), 128, 0, stream>>>(p);
  SSMKIT_CUDA_CHECK_LAUNCH("dplr_step");
}
}  // namespace

void discretize_cuda(const DiscretizeParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, discretize_t<T>(p, as_stream(s)));
}
void discretize_backward_cuda(const DiscretizeBackwardParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, discretize_backward_t<T>(p, as_stream(s)));
}
void ssm_scan_cuda(const ScanParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, scan_t<T>(p, as_stream(s), "ssm_scan"));
}
void ssm_scan_backward_cuda(const ScanBackwardParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, scan_backward_t<T>(p, as_stream(s)));
}
void dplr_step_cuda(const DplrStepParams& p, void* s) {
  SSMKIT_DTYPE_SWITCH(p.dtype, T, dplr_step_t<T>(p, as_stream(s)));
}

// One step is the scan with L = 1: u (batch, H) and y (batch, H) have the layout of
// (batch, 1, H); the final state is new_state.
void ssm_step_cuda(const StepParams& p, void* s) {
  ScanParams q;
  static_cast<DiagonalSSM&>(q) = p;
  q.L = 1, q.u = p.u, q.state0 = p.state, q.y = p.y, q.state = p.new_state;
  SSMKIT_DTYPE_SWITCH(p.dtype, T, scan_t<T>(q, as_stream(s), "ssm_step"));
}

}  // namespace ssmkit
