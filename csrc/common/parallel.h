// The one parallel-for of the library. Its width is set process-wide by
// pydetect.set_num_threads(n); kernels never start threads of their own.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace pydetect {

// Most threads a kernel may use: far above any core count these kernels scale to, and low
// enough that a typo (set_num_threads(10**6)) cannot ask the system for a million threads.
constexpr int kMaxNumThreads = 1024;

int get_num_threads();
// n <= 0 restores the default (all hardware threads, at most kMaxNumThreads); n above
// kMaxNumThreads throws std::invalid_argument.
void set_num_threads(int n);

// Calls body(lo, hi) on disjoint chunks [lo, hi) of at most `grain` items covering
// [begin, end). Chunks are handed out dynamically, so uneven work (image pyramid levels,
// classes of very different sizes) balances itself. Runs inline when one thread suffices.
// The first exception thrown by a body is rethrown in the caller after all threads join.
// If the system refuses a thread (std::system_error: thread limit, no memory for a stack),
// the threads already running and the caller share the remaining chunks: fewer threads,
// same result, never std::terminate.
template <class Body>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const Body& body) {
  if (end <= begin) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t num_chunks = (end - begin + grain - 1) / grain;
  const int64_t num_workers = std::min<int64_t>(get_num_threads(), num_chunks);
  if (num_workers <= 1) {
    body(begin, end);
    return;
  }
  std::atomic<int64_t> next_chunk{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&]() {
    for (;;) {
      const int64_t chunk = next_chunk.fetch_add(1, std::memory_order_relaxed);
      if (chunk >= num_chunks) return;
      const int64_t lo = begin + chunk * grain;
      const int64_t hi = std::min(end, lo + grain);
      try {
        body(lo, hi);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next_chunk.store(num_chunks, std::memory_order_relaxed);  // stop handing out work
      }
    }
  };
  std::vector<std::thread> helpers;
  helpers.reserve(static_cast<size_t>(num_workers - 1));
  for (int64_t t = 1; t < num_workers; ++t) {
    try {
      helpers.emplace_back(work);
    } catch (const std::system_error&) {
      break;
    }
  }
  work();
  for (auto& helper : helpers) helper.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace pydetect
