// HOST_DEVICE marks math that every loop (the CPU kernels and the CUDA kernels) shares.
// Per-pixel and per-box-pair formulas are written once, in headers, behind it.
#pragma once

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__ inline
#else
#define HOST_DEVICE inline
#endif

namespace pydetect {

// std::min / std::max are host-only constexpr functions (device code could call them only
// with nvcc's --expt-relaxed-constexpr). These have exactly their definitions, so that a
// NaN argument picks the same side on the CPU and on the GPU: hd_max(a, b) is
// (a < b) ? b : a and hd_min(a, b) is (b < a) ? b : a, as in the standard library.
template <class T>
HOST_DEVICE T hd_max(T a, T b) {
  return (a < b) ? b : a;
}
template <class T>
HOST_DEVICE T hd_min(T a, T b) {
  return (b < a) ? b : a;
}

}  // namespace pydetect
