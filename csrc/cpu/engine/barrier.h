// Split mode's barrier: the threads of one team meet between instructions.
#pragma once
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ssmkit {
namespace SSMKIT_ISA {
namespace {

// A barrier for a team that meets many thousand times a second (between instructions
// of a step: microseconds apart). Each thread counts its arrivals in its own cache
// line and waits until every thread's count has reached its own: a meeting costs
// each thread one line written and the others' read (a shared counter would add an
// atomic read-modify-write and a second line). Counts only grow, so nothing is
// reset. Waiters spin briefly (the partner is normally microseconds away), then
// yield the core, so a partner descheduled by other load costs little (OpenMP's
// barriers spin long, which is what makes busy machines slow).
class SpinBarrier {
 public:
  explicit SpinBarrier(int64_t threads) : arrived_(threads) {}
  void set_team(int64_t n) { n_ = n; }  // threads [0, n) take part, n <= the constructor's
  // Thread tid's next meeting; round: its count of meetings so far (start at 0).
  void wait(int64_t tid, int64_t& round) {
    ++round;
    // release: this thread's writes reach whoever sees the count (acquire below)
    arrived_[tid].count.store(round, std::memory_order_release);
    for (int64_t t = 0; t < n_; ++t)
      for (int spins = 0; arrived_[t].count.load(std::memory_order_acquire) < round; ++spins) {
        if (spins < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
          _mm_pause();
#endif
        } else {
          std::this_thread::yield();
        }
      }
  }

 private:
  static constexpr int kSpins = 4000;  // about 20-100 us of pause instructions
  struct alignas(64) Slot {
    std::atomic<int64_t> count{0};
  };
  std::vector<Slot> arrived_;
  int64_t n_ = 1;
};

}  // namespace
}  // namespace SSMKIT_ISA
}  // namespace ssmkit
