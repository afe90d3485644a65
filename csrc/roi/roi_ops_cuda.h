// CUDA launchers of RoI align and RoI max pooling (roi_ops_cuda.cu): the layouts and
// semantics of roi_ops.h on device pointers, one thread per output element (RoI, channel,
// bin). Each call is asynchronous on `stream`, for the current device, and throws
// std::runtime_error when the launch fails. Sizes are validated by the caller
// (csrc/bindings/module_cuda.cpp); so are the RoIs' batch indices (pydetect.ops, as for the
// CPU kernels, which check them again): a kernel cannot raise, so a RoI whose batch index is
// not an image of the batch only reads and writes nothing out of bounds: its outputs are NaN
// (argmax -1) and it adds no gradient.
// The backward launchers ADD into grad_input, which the caller zero-fills: overlapping RoIs
// (and bins) hit the same pixels, so they use atomic adds, whose order, and so the last bits
// of the sums, varies from run to run.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace pydetect {
namespace gpu {

template <class T>
void roi_align_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w, const T* rois, int64_t k,
                       T spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                       T* output, cudaStream_t stream);

template <class T>
void roi_align_backward(const T* grad_output, const T* rois, int64_t k, int64_t n, int64_t c, int64_t h, int64_t w,
                        T spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                        T* grad_input, cudaStream_t stream);

template <class T>
void roi_pool_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w, const T* rois, int64_t k,
                      T spatial_scale, int64_t pooled_h, int64_t pooled_w, T* output, int64_t* argmax,
                      cudaStream_t stream);

template <class T>
void roi_pool_backward(const T* grad_output, const int64_t* argmax, const T* rois, int64_t k, int64_t n, int64_t c,
                       int64_t h, int64_t w, int64_t pooled_h, int64_t pooled_w, T* grad_input,
                       cudaStream_t stream);

}  // namespace gpu
}  // namespace pydetect
