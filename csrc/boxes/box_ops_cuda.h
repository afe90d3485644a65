// CUDA launchers of the box kernels (box_ops_cuda.cu): pairwise IoU and the suppression mask of
// bitmask NMS. Arguments are device pointers to C-contiguous arrays, as in box_ops.h / nms.h;
// each call is asynchronous on `stream`, for the current device, and throws std::runtime_error
// when the launch fails. Sizes are validated by the caller (csrc/bindings/module_cuda.cpp).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace pydetect {
namespace gpu {

// Boxes per NMS block, and bits per mask word.
constexpr int64_t kNmsBlock = 64;

// out (n, m): IoU of every a-box with every b-box, the same values as pydetect::box_iou.
template <class T>
void box_iou(const T* a, int64_t n, const T* b, int64_t m, T* out, cudaStream_t stream);

// mask (n, ceil(n / 64)) uint64 for boxes (n, 4) already in visiting order (decreasing
// score): bit j % 64 of word j / 64 of row i is set when j > i and IoU(i, j) > iou_threshold
// (torchvision's double comparison, see threshold_in); every other bit is 0. The greedy pass
// is pydetect::nms_reduce_mask, on the host. n <= 65535 * 64 (the grid's y extent).
template <class T>
void nms_mask(const T* boxes, int64_t n, double iou_threshold, uint64_t* mask, cudaStream_t stream);

}  // namespace gpu
}  // namespace pydetect
