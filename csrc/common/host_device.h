// HOST_DEVICE marks math that every loop (CPU today, CUDA if it ever exists) shares.
// Per-pixel and per-box-pair formulas are written once, in headers, behind it.
#pragma once

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__ inline
#else
#define HOST_DEVICE inline
#endif
