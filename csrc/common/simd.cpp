#include "common/simd.h"

#include <cstdlib>

namespace pydetect {
namespace {

SimdLevel cpu_level() {
#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) || defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return SimdLevel::kAvx2;
#endif
#if defined(__SSE2__)
  return SimdLevel::kSse2;
#else
  return SimdLevel::kScalar;
#endif
#else
  // No AVX2 code outside x86; the generic 128-bit vector code exists everywhere the
  // compiler has vector extensions.
  return SimdLevel::kSse2;
#endif
}

SimdConfig read_config() {
  SimdConfig c;
  c.cpu = cpu_level();
  c.level = c.cpu;
  c.valid = true;
  const char* env = std::getenv("PYDETECT_SIMD");
  c.requested = env ? env : "";
  if (c.requested.empty() || c.requested == "auto") return c;
  SimdLevel want;
  if (c.requested == "avx2") {
    want = SimdLevel::kAvx2;
  } else if (c.requested == "sse2") {
    want = SimdLevel::kSse2;
  } else if (c.requested == "scalar") {
    want = SimdLevel::kScalar;
  } else {
    c.valid = false;
    return c;
  }
  // A level the CPU lacks falls back to the widest one it has.
  if (static_cast<int>(want) < static_cast<int>(c.cpu)) c.level = want;
  return c;
}

}  // namespace

const SimdConfig& simd_config() {
  static const SimdConfig config = read_config();
  return config;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kSse2: return "sse2";
    case SimdLevel::kScalar: break;
  }
  return "scalar";
}

}  // namespace pydetect
