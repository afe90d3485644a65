// RoI align and RoI max pooling, forward and backward, over raw row-major arrays.
//   input        (N, C, H, W)       feature maps
//   rois         (K, 5)             batch index, x1, y1, x2, y2 (input-image coordinates)
//   output       (K, C, PH, PW)     pooled features
// Backward kernels overwrite grad_input (N, C, H, W). They run in parallel over blocks of
// channel planes, so every plane is written by one thread only: no atomics, no races, and
// results do not depend on the thread count. roi_align_forward with 8 or more channels works
// on a transposed copy of one image at a time (C * H * W values of scratch).
#pragma once

#include <cstdint>

namespace pydetect {

template <class T>
void roi_align_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                       const T* rois, int64_t k, T spatial_scale, int64_t pooled_h,
                       int64_t pooled_w, int64_t sampling_ratio, bool aligned, T* output);

template <class T>
void roi_align_backward(const T* grad_output, const T* rois, int64_t k, int64_t n, int64_t c,
                        int64_t h, int64_t w, T spatial_scale, int64_t pooled_h,
                        int64_t pooled_w, int64_t sampling_ratio, bool aligned, T* grad_input);

// argmax (K, C, PH, PW): plane offset y * W + x of each maximum, -1 for an empty bin.
template <class T>
void roi_pool_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                      const T* rois, int64_t k, T spatial_scale, int64_t pooled_h,
                      int64_t pooled_w, T* output, int64_t* argmax);

template <class T>
void roi_pool_backward(const T* grad_output, const int64_t* argmax, const T* rois, int64_t k,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t pooled_h,
                       int64_t pooled_w, T* grad_input);

}  // namespace pydetect
