// Per-box and per-box-pair formulas, written once and shared by every box kernel.
// Boxes are (x1, y1, x2, y2) in continuous pixel coordinates: width = x2 - x1, no +1.
// The operation order matches torchvision's so that float32 results agree bit for bit.
#pragma once

#include <cmath>
#include <limits>

#include "common/host_device.h"

namespace pydetect {

template <class T>
HOST_DEVICE T box_area(T x1, T y1, T x2, T y2) {
  return (x2 - x1) * (y2 - y1);
}

template <class T>
HOST_DEVICE T intersection_area(T ax1, T ay1, T ax2, T ay2, T bx1, T by1, T bx2, T by2) {
  const T w = hd_max(T(0), hd_min(ax2, bx2) - hd_max(ax1, bx1));
  const T h = hd_max(T(0), hd_min(ay2, by2) - hd_max(ay1, by1));
  return w * h;
}

// IoU from the intersection and both areas. Two zero-area boxes give 0/0 = NaN, which
// compares false against any threshold: such a box never suppresses nor is suppressed,
// exactly as in torchvision.
template <class T>
HOST_DEVICE T iou_from_areas(T inter, T area_a, T area_b) {
  return inter / (area_a + area_b - inter);
}

// The T value c such that, for every T value v, (double(v) > threshold) == (v > c).
// torchvision compares a float IoU against a double threshold; comparing against c in T
// gives the same decision while keeping inner loops in one precision (and vectorisable).
// Host only: the CUDA launcher computes c once and passes it to the kernel.
template <class T>
inline T threshold_in(double threshold) {
  T c = static_cast<T>(threshold);
  if (static_cast<double>(c) > threshold) c = std::nextafter(c, -std::numeric_limits<T>::infinity());
  return c;
}

}  // namespace pydetect
