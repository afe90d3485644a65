// CUDA kernels of box_iou and of the NMS suppression mask: launch and indexing only; the IoU
// is box_math.h's, the same expression in the same order as the CPU loops (box_ops.cpp,
// nms.cpp), so that with --fmad=false the values and the suppression decisions are the CPU's.
#include "boxes/box_ops_cuda.h"

#include "boxes/box_math.h"
#include "common/cuda_check.h"

namespace pydetect {
namespace gpu {
namespace {

template <class T>
__global__ void box_iou_kernel(const T* a, const T* b, int64_t m, int64_t total, T* out) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const T* p = a + 4 * (idx / m);
    const T* q = b + 4 * (idx % m);
    const T inter = intersection_area(p[0], p[1], p[2], p[3], q[0], q[1], q[2], q[3]);
    out[idx] = iou_from_areas(inter, box_area(p[0], p[1], p[2], p[3]), box_area(q[0], q[1], q[2], q[3]));
  }
}

// torchvision's nms_kernel layout: block (column block x, row block y) of 64 threads; thread t
// compares row box (y * 64 + t) with the up to 64 boxes of column block x, staged in shared
// memory, and writes one mask word. The earlier box (the row) comes first in the IoU, as the
// kept box does on the CPU, so that even the intersection of a box with a NaN coordinate is
// the CPU's (hd_max / hd_min pick a side of a NaN comparison).
template <class T>
__global__ void nms_mask_kernel(const T* boxes, int64_t n, T threshold, uint64_t* mask) {
  const int64_t words = (n + kNmsBlock - 1) / kNmsBlock;
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  const int row_size = static_cast<int>(hd_min(n - row_block * kNmsBlock, kNmsBlock));
  const int col_size = static_cast<int>(hd_min(n - col_block * kNmsBlock, kNmsBlock));
  const int t = threadIdx.x;
  const int64_t row = row_block * kNmsBlock + t;
  if (row_block > col_block) {
    // Lower triangle: all bits 0 (j < i), never read by the greedy pass, written so that
    // the whole mask is defined. Uniform per block, so no thread misses the barrier below.
    if (t < row_size) mask[row * words + col_block] = 0;
    return;
  }
  __shared__ T cols[kNmsBlock * 4];
  if (t < col_size) {
    for (int k = 0; k < 4; ++k) cols[t * 4 + k] = boxes[(col_block * kNmsBlock + t) * 4 + k];
  }
  __syncthreads();
  if (t >= row_size) return;
  const T* b = boxes + row * 4;
  const T x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3];
  const T area = box_area(x1, y1, x2, y2);
  uint64_t bits = 0;
  for (int j = row_block == col_block ? t + 1 : 0; j < col_size; ++j) {
    const T* c = cols + j * 4;
    const T inter = intersection_area(x1, y1, x2, y2, c[0], c[1], c[2], c[3]);
    if (iou_from_areas(inter, area, box_area(c[0], c[1], c[2], c[3])) > threshold) bits |= uint64_t(1) << j;
  }
  mask[row * words + col_block] = bits;
}

}  // namespace

template <class T>
void box_iou(const T* a, int64_t n, const T* b, int64_t m, T* out, cudaStream_t stream) {
  const int64_t total = n * m;
  if (total == 0) return;  // a launch of 0 blocks is an error
  box_iou_kernel<T><<<grid_size(total), kThreadsPerBlock, 0, stream>>>(a, b, m, total, out);
  cuda_check(cudaGetLastError(), "box_iou kernel launch");
}

template <class T>
void nms_mask(const T* boxes, int64_t n, double iou_threshold, uint64_t* mask, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned words = static_cast<unsigned>((n + kNmsBlock - 1) / kNmsBlock);
  nms_mask_kernel<T><<<dim3(words, words), static_cast<unsigned>(kNmsBlock), 0, stream>>>(
      boxes, n, threshold_in<T>(iou_threshold), mask);
  cuda_check(cudaGetLastError(), "nms_mask kernel launch");
}

template void box_iou<float>(const float*, int64_t, const float*, int64_t, float*, cudaStream_t);
template void box_iou<double>(const double*, int64_t, const double*, int64_t, double*, cudaStream_t);
template void nms_mask<float>(const float*, int64_t, double, uint64_t*, cudaStream_t);
template void nms_mask<double>(const double*, int64_t, double, uint64_t*, cudaStream_t);

}  // namespace gpu
}  // namespace pydetect
