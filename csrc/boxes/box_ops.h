// Elementwise box kernels and pairwise IoU. All take row-major (n, 4) boxes.
#pragma once

#include <cstdint>
#include <vector>

namespace pydetect {

enum class BoxFormat { XYXY = 0, XYWH = 1, CXCYWH = 2 };

template <class T>
void box_area(const T* boxes, int64_t n, T* out);

// out: (n, m) row-major IoU of every a-box with every b-box; rows run in parallel.
template <class T>
void box_iou(const T* a, int64_t n, const T* b, int64_t m, T* out);

template <class T>
void box_convert(const T* in, int64_t n, BoxFormat from, BoxFormat to, T* out);

// Clamps x to [0, width] and y to [0, height].
template <class T>
void clip_boxes(const T* in, int64_t n, T height, T width, T* out);

// Indices of boxes whose width and height are both >= min_size, in input order.
template <class T>
std::vector<int64_t> remove_small_boxes(const T* boxes, int64_t n, T min_size);

}  // namespace pydetect
