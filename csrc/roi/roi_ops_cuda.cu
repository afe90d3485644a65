// CUDA kernels of RoI align and RoI max pooling: launch and indexing only. The geometry,
// the bilinear taps and weights (axis_taps, bilinear_value), the pool windows and the window
// maximum are roi_math.h's, as in the CPU loops (roi_ops.cpp). A RoIAlign forward thread sums
// its bin's valid samples one by one (the CPU loop sums the same taps grouped by row and
// column, bin_axis_weights: equal up to rounding); the RoI pool forward visits its window in
// the CPU's order, so outputs and argmax are the CPU's bit for bit. Backward threads add
// weight * gradient atomically.
#include <cmath>

#include "common/cuda_check.h"
#include "roi/roi_math.h"
#include "roi/roi_ops_cuda.h"

namespace pydetect {
namespace gpu {
namespace {

// Output element idx of a (K, C, PH, PW) array: RoI r, channel ch, bin (ph, pw).
struct Bin {
  int64_t r, ch, ph, pw;
};

__device__ inline Bin bin_of(int64_t idx, int64_t c, int64_t pooled_h, int64_t pooled_w) {
  Bin b;
  b.pw = idx % pooled_w;
  b.ph = (idx / pooled_w) % pooled_h;
  b.ch = (idx / (pooled_w * pooled_h)) % c;
  b.r = idx / (pooled_w * pooled_h * c);
  return b;
}

#define PD_GRID_STRIDE_LOOP(idx, total)                                                  \
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < (total); \
       idx += int64_t(blockDim.x) * gridDim.x)

template <class T>
__global__ void roi_align_forward_kernel(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                                         const T* rois, T spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                         int64_t sampling_ratio, bool aligned, int64_t total, T* output) {
  PD_GRID_STRIDE_LOOP(idx, total) {
    const Bin b = bin_of(idx, c, pooled_h, pooled_w);
    const T* roi = rois + b.r * 5;
    if (!valid_batch_index(roi[0], n)) {
      output[idx] = T(NAN);
      continue;
    }
    const AlignGeometry<T> g = align_geometry(roi + 1, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned);
    const T* plane = input + (static_cast<int64_t>(roi[0]) * c + b.ch) * h * w;
    T sum = T(0);
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const AxisTaps<T> ay = axis_taps(align_sample_pos(g.start_y, g.bin_h, b.ph, iy, g.grid_h), h);
      if (!ay.valid) continue;  // outside the map: contributes nothing
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const AxisTaps<T> ax = axis_taps(align_sample_pos(g.start_x, g.bin_w, b.pw, ix, g.grid_w), w);
        if (ax.valid) sum += bilinear_value(plane, w, ay, ax);
      }
    }
    sum *= align_inv_count(g);
    output[idx] = sum;
  }
}

template <class T>
__global__ void roi_align_backward_kernel(const T* grad_output, const T* rois, int64_t n, int64_t c, int64_t h,
                                          int64_t w, T spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                          int64_t sampling_ratio, bool aligned, int64_t total, T* grad_input) {
  PD_GRID_STRIDE_LOOP(idx, total) {
    const Bin b = bin_of(idx, c, pooled_h, pooled_w);
    const T* roi = rois + b.r * 5;
    if (!valid_batch_index(roi[0], n)) continue;
    const AlignGeometry<T> g = align_geometry(roi + 1, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned);
    T* plane = grad_input + (static_cast<int64_t>(roi[0]) * c + b.ch) * h * w;
    const T grad = grad_output[idx] * align_inv_count(g);
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const AxisTaps<T> ay = axis_taps(align_sample_pos(g.start_y, g.bin_h, b.ph, iy, g.grid_h), h);
      if (!ay.valid) continue;  // outside the map: no gradient, as in torchvision
      const T gy[2] = {grad * ay.w_low, grad * ay.w_high};
      const int64_t row[2] = {ay.low * w, ay.high * w};
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const AxisTaps<T> ax = axis_taps(align_sample_pos(g.start_x, g.bin_w, b.pw, ix, g.grid_w), w);
        if (!ax.valid) continue;
        // All four taps, zero weights included, as the CPU loop adds them (0 * inf is NaN).
        for (int i = 0; i < 2; ++i) {
          atomicAdd(plane + row[i] + ax.low, gy[i] * ax.w_low);
          atomicAdd(plane + row[i] + ax.high, gy[i] * ax.w_high);
        }
      }
    }
  }
}

template <class T>
__global__ void roi_pool_forward_kernel(const T* input, int64_t n, int64_t c, int64_t h, int64_t w, const T* rois,
                                        T spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t total,
                                        T* output, int64_t* argmax) {
  PD_GRID_STRIDE_LOOP(idx, total) {
    const Bin b = bin_of(idx, c, pooled_h, pooled_w);
    const T* roi = rois + b.r * 5;
    if (!valid_batch_index(roi[0], n)) {
      output[idx] = T(NAN);
      argmax[idx] = -1;
      continue;
    }
    const PoolWindow win = pool_window(roi + 1, spatial_scale, pooled_h, pooled_w, b.ph, b.pw, h, w);
    const T* plane = input + (static_cast<int64_t>(roi[0]) * c + b.ch) * h * w;
    int64_t at;
    output[idx] = pool_max(plane, w, win, &at);
    argmax[idx] = at;
  }
}

template <class T>
__global__ void roi_pool_backward_kernel(const T* grad_output, const int64_t* argmax, const T* rois, int64_t n,
                                         int64_t c, int64_t h, int64_t w, int64_t pooled_h, int64_t pooled_w,
                                         int64_t total, T* grad_input) {
  PD_GRID_STRIDE_LOOP(idx, total) {
    const Bin b = bin_of(idx, c, pooled_h, pooled_w);
    const T* roi = rois + b.r * 5;
    const int64_t at = argmax[idx];
    // -1: an empty bin; anything else outside the plane cannot come from roi_pool_forward.
    if (at < 0 || at >= h * w || !valid_batch_index(roi[0], n)) continue;
    atomicAdd(grad_input + (static_cast<int64_t>(roi[0]) * c + b.ch) * h * w + at, grad_output[idx]);
  }
}

#undef PD_GRID_STRIDE_LOOP

}  // namespace

template <class T>
void roi_align_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w, const T* rois, int64_t k,
                       T spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                       T* output, cudaStream_t stream) {
  const int64_t total = k * c * pooled_h * pooled_w;
  if (total == 0) return;  // a launch of 0 blocks is an error
  roi_align_forward_kernel<T><<<grid_size(total), kThreadsPerBlock, 0, stream>>>(
      input, n, c, h, w, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned, total, output);
  cuda_check(cudaGetLastError(), "roi_align_forward kernel launch");
}

template <class T>
void roi_align_backward(const T* grad_output, const T* rois, int64_t k, int64_t n, int64_t c, int64_t h, int64_t w,
                        T spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                        T* grad_input, cudaStream_t stream) {
  const int64_t total = k * c * pooled_h * pooled_w;
  if (total == 0) return;
  roi_align_backward_kernel<T><<<grid_size(total), kThreadsPerBlock, 0, stream>>>(
      grad_output, rois, n, c, h, w, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned, total, grad_input);
  cuda_check(cudaGetLastError(), "roi_align_backward kernel launch");
}

template <class T>
void roi_pool_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w, const T* rois, int64_t k,
                      T spatial_scale, int64_t pooled_h, int64_t pooled_w, T* output, int64_t* argmax,
                      cudaStream_t stream) {
  const int64_t total = k * c * pooled_h * pooled_w;
  if (total == 0) return;
  roi_pool_forward_kernel<T><<<grid_size(total), kThreadsPerBlock, 0, stream>>>(
      input, n, c, h, w, rois, spatial_scale, pooled_h, pooled_w, total, output, argmax);
  cuda_check(cudaGetLastError(), "roi_pool_forward kernel launch");
}

template <class T>
void roi_pool_backward(const T* grad_output, const int64_t* argmax, const T* rois, int64_t k, int64_t n, int64_t c,
                       int64_t h, int64_t w, int64_t pooled_h, int64_t pooled_w, T* grad_input,
                       cudaStream_t stream) {
  const int64_t total = k * c * pooled_h * pooled_w;
  if (total == 0) return;
  roi_pool_backward_kernel<T><<<grid_size(total), kThreadsPerBlock, 0, stream>>>(
      grad_output, argmax, rois, n, c, h, w, pooled_h, pooled_w, total, grad_input);
  cuda_check(cudaGetLastError(), "roi_pool_backward kernel launch");
}

#define PD_INSTANTIATE_ROI_CUDA(T)                                                                            \
  template void roi_align_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const T*, int64_t, T,     \
                                     int64_t, int64_t, int64_t, bool, T*, cudaStream_t);                     \
  template void roi_align_backward<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, T,    \
                                      int64_t, int64_t, int64_t, bool, T*, cudaStream_t);                    \
  template void roi_pool_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const T*, int64_t, T,      \
                                    int64_t, int64_t, T*, int64_t*, cudaStream_t);                           \
  template void roi_pool_backward<T>(const T*, const int64_t*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                     int64_t, int64_t, int64_t, T*, cudaStream_t);
PD_INSTANTIATE_ROI_CUDA(float)
PD_INSTANTIATE_ROI_CUDA(double)
#undef PD_INSTANTIATE_ROI_CUDA

}  // namespace gpu
}  // namespace pydetect
