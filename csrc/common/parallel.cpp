#include "common/parallel.h"

#include "common/check.h"

namespace pydetect {
namespace {

int default_num_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min<unsigned>(n, kMaxNumThreads));
}

std::atomic<int> g_num_threads{default_num_threads()};

}  // namespace

int get_num_threads() { return g_num_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  PD_CHECK(n <= kMaxNumThreads, "the number of threads must be <= ", kMaxNumThreads, ", got ", n);
  g_num_threads.store(n <= 0 ? default_num_threads() : n, std::memory_order_relaxed);
}

}  // namespace pydetect
