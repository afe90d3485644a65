// Host-side helpers of the CUDA launchers (csrc/**/*_cuda.cu) and of their bindings
// (csrc/bindings/module_cuda.cpp): error checks and launch sizes. Plain C++ over the CUDA
// runtime API, so that the bindings compile with the host compiler.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pydetect {

// Throws std::runtime_error (RuntimeError in Python) with CUDA's error string when a runtime
// call or a kernel launch failed; `what` names the call.
inline void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorName(status) + ": " +
                             cudaGetErrorString(status));
  }
}

// Element-wise kernels use grid-stride loops over int64 indices: 256 threads per block and at
// most 65535 blocks (16.7M threads, far above what any GPU keeps resident), so every total
// fits one launch.
constexpr int kThreadsPerBlock = 256;

inline unsigned grid_size(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + kThreadsPerBlock - 1) / kThreadsPerBlock, 65535));
}

}  // namespace pydetect
