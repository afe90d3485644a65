// The one switch of the SIMD code paths. Every kernel that has a vector path and a plain
// C++ one asks simd_level() which to run, so that the portable paths can be forced (and
// tested) on a machine whose CPU would never take them: the environment variable
// PYDETECT_SIMD = auto (default) | avx2 | sse2 | scalar, read once per process.
#pragma once

#include <string>

namespace pydetect {

// Ordered: a kernel runs the widest path it has at or below the active level.
// kSse2 is the 128-bit vector level: SSE2 on x86, and on other CPUs the 128-bit vector
// code the compiler targets (the cascade's generic-vector path, e.g. NEON).
enum class SimdLevel : int { kScalar = 0, kSse2 = 1, kAvx2 = 2 };

struct SimdConfig {
  SimdLevel level;        // the active level: min(requested, what the CPU has)
  SimdLevel cpu;          // the widest level this CPU and build support
  std::string requested;  // PYDETECT_SIMD as found ("" when unset)
  bool valid;             // false when PYDETECT_SIMD held an unknown value (then: auto)
};

// Read on first use and fixed for the life of the process (thread-safe).
const SimdConfig& simd_config();

inline SimdLevel simd_level() { return simd_config().level; }

const char* simd_level_name(SimdLevel level);

}  // namespace pydetect
