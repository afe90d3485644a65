// Per-sample math of RoI align and RoI pool, written once and shared by every loop
// (forward and backward, CPU and CUDA). Semantics follow
// torchvision.ops.roi_align / roi_pool (He et al., "Mask R-CNN", ICCV 2017, for
// RoIAlign; Girshick, "Fast R-CNN", ICCV 2015, for RoI max pooling).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace pydetect {

// Whether the batch-index column of a RoI names an image of the batch: an integer in [0, n)
// (NaN is not).
template <class T>
HOST_DEVICE bool valid_batch_index(T b, int64_t n) {
  return b >= T(0) && b < T(n) && b == std::floor(b);
}

// Bilinear interpolation is separable: a sample at (y, x) reads rows y_low, y_high and
// columns x_low, x_high with weights (w_low or w_high along y) * (w_low or w_high along x).
// AxisTaps is one axis of a sample: its two taps and their weights, with torchvision's border
// rules: a coordinate up to one pixel outside [0, size - 1] is clamped onto the border;
// further out (or NaN: the comparison is written so that NaN counts as outside, the guard
// torchvision has in one of its copies only) the axis is not valid, and a sample with an
// invalid axis contributes nothing, forward or backward.
template <class T>
struct AxisTaps {
  int64_t low, high;
  T w_low, w_high;
  bool valid;
};

template <class T>
HOST_DEVICE AxisTaps<T> axis_taps(T v, int64_t size) {
  AxisTaps<T> a;
  a.valid = v >= T(-1) && v <= T(size);
  if (!a.valid) {
    a.low = a.high = 0;
    a.w_low = a.w_high = T(0);
    return a;
  }
  if (v <= T(0)) v = T(0);
  a.low = static_cast<int64_t>(v);
  if (a.low >= size - 1) {
    a.high = a.low = size - 1;
    v = T(a.low);
  } else {
    a.high = a.low + 1;
  }
  const T l = v - T(a.low);
  a.w_low = T(1) - l;
  a.w_high = l;
  return a;
}

// The bilinear value of a sample whose axes are both valid: its four taps in torchvision's
// order, each weighted by the product of its two axis weights.
template <class T>
HOST_DEVICE T bilinear_value(const T* plane, int64_t width, const AxisTaps<T>& ay, const AxisTaps<T>& ax) {
  const T* lo = plane + ay.low * width;
  const T* hi = plane + ay.high * width;
  return (ay.w_low * ax.w_low) * lo[ax.low] + (ay.w_low * ax.w_high) * lo[ax.high] +
         (ay.w_high * ax.w_low) * hi[ax.low] + (ay.w_high * ax.w_high) * hi[ax.high];
}

// Largest number of samples per bin along each axis, explicit or adaptive. torchvision
// has no bound: its adaptive count ceil(bin size) overflows for finite but huge boxes (a
// 1e30-pixel box) and its sample table then writes out of bounds. Bins up to this many
// feature pixels wide keep torchvision's exact semantics; wider bins (absurd for detection:
// a box spanning 1800+ pixels of a stride-1 map pooled to 7x7) are averaged over this many
// samples per axis, which bounds work and memory to 65536 samples per bin. An explicit
// sampling_ratio above it is refused (pydetect.ops.roi.MAX_SAMPLING_RATIO mirrors it).
constexpr int64_t kMaxSamplingRatio = 256;

// Samples per bin along one axis: sampling_ratio if > 0, else ceil(bin size) clamped to
// [0, kMaxSamplingRatio], decided in floating point before any conversion (a NaN, negative
// or zero bin size gives 0 samples: an empty grid).
template <class T>
HOST_DEVICE int64_t align_grid_count(T bin_size, int64_t sampling_ratio) {
  if (sampling_ratio > 0) return hd_min(sampling_ratio, kMaxSamplingRatio);
  if (!(bin_size > T(0))) return 0;
  const T samples = std::ceil(bin_size);
  return samples < T(kMaxSamplingRatio) ? static_cast<int64_t>(samples) : kMaxSamplingRatio;
}

// Geometry of one RoI for RoIAlign: where its bins start, their size, and how many
// samples per bin along each axis (see align_grid_count).
template <class T>
struct AlignGeometry {
  T start_y, start_x, bin_h, bin_w;
  int64_t grid_h, grid_w;
};

template <class T>
HOST_DEVICE AlignGeometry<T> align_geometry(const T* roi /* x1 y1 x2 y2 */, T spatial_scale,
                                            int64_t pooled_h, int64_t pooled_w,
                                            int64_t sampling_ratio, bool aligned) {
  const T offset = aligned ? T(0.5) : T(0);
  AlignGeometry<T> g;
  g.start_x = roi[0] * spatial_scale - offset;
  g.start_y = roi[1] * spatial_scale - offset;
  T roi_w = roi[2] * spatial_scale - offset - g.start_x;
  T roi_h = roi[3] * spatial_scale - offset - g.start_y;
  if (!aligned) {  // legacy behaviour: RoIs at least one pixel wide and tall
    roi_w = roi_w > T(1) ? roi_w : T(1);
    roi_h = roi_h > T(1) ? roi_h : T(1);
  }
  g.bin_h = roi_h / T(pooled_h);
  g.bin_w = roi_w / T(pooled_w);
  g.grid_h = align_grid_count(g.bin_h, sampling_ratio);
  g.grid_w = align_grid_count(g.bin_w, sampling_ratio);
  return g;
}

// Position of sample i of bin p along one axis whose bins start at `start` and are `bin`
// long, with `grid` samples per bin.
template <class T>
HOST_DEVICE T align_sample_pos(T start, T bin, int64_t p, int64_t i, int64_t grid) {
  return start + T(p) * bin + (T(i) + T(0.5)) * bin / T(grid);
}

// 1 / (samples per bin): a bin's value is the average of its samples (valid or not, as in
// torchvision). An empty grid (0 samples) divides by 1; its bins are 0 as there is nothing
// to add.
template <class T>
HOST_DEVICE T align_inv_count(const AlignGeometry<T>& g) {
  return T(1) / T(hd_max<int64_t>(g.grid_h * g.grid_w, 1));
}

// One row (or column) that the samples of a bin read along one axis, with the sum of the
// weights of every tap of the bin's valid samples on it.
template <class T>
struct AxisWeight {
  int64_t index;
  T weight;
};

// The distinct taps of the `grid` samples of bin p along one axis (the bins start at
// `start`, are `bin` long, the plane is `size` long), each index once with the sum of its
// tap weights in sample order, written to out (room for 2 * grid entries); returns how
// many. Samples whose axis is invalid are left out; taps of weight 0 of valid samples are
// kept (their pixel is still multiplied: 0 * inf is NaN, as in torchvision).
//
// Because the bilinear weights are separable, a bin's samples read exactly the pixels
// rows x columns of these two lists, and
//   bin value = sum_rows w_row * sum_cols w_col * pixel(row, col) / samples,
// so a bin costs (distinct rows) x (distinct columns) reads or writes per channel instead
// of 4 per sample: 2 x 2 samples of a bin under two pixels wide read 9 pixels, not 16, and
// a 15 x 15 grid reads ~16 x 16, not 900.
template <class T>
HOST_DEVICE int64_t bin_axis_weights(T start, T bin, int64_t p, int64_t grid, int64_t size, AxisWeight<T>* out) {
  int64_t n = 0;
  for (int64_t i = 0; i < grid; ++i) {
    const AxisTaps<T> a = axis_taps(align_sample_pos(start, bin, p, i, grid), size);
    if (!a.valid) continue;
    const int64_t idx[2] = {a.low, a.high};
    const T wt[2] = {a.w_low, a.w_high};
    for (int t = 0; t < 2; ++t) {
      // Sample positions are monotonic in i (bins of positive size): a repeated index is
      // almost always among the last two entries, so search from the end.
      int64_t j = n - 1;
      while (j >= 0 && out[j].index != idx[t]) --j;
      if (j >= 0) {
        out[j].weight += wt[t];
      } else {
        out[n].index = idx[t];
        out[n].weight = wt[t];
        ++n;
      }
    }
  }
  return n;
}

// RoI max pooling: the window [h0, h1) x [w0, w1) of bin (ph, pw), clipped to the plane.
struct PoolWindow {
  int64_t h0, h1, w0, w1;
};

// floor / ceil of a window edge (in double: exact for every edge an int64 can hold) plus
// the rounded RoI start, clipped to [0, size] before the conversion to an integer, so that
// huge or infinite edges (a 1e30 box, a huge spatial_scale) clip instead of overflowing;
// NaN (inf - inf) clips to 0, an empty window.
HOST_DEVICE int64_t clip_edge(double edge, double start, int64_t size) {
  const double v = edge + start;
  if (!(v > 0.0)) return 0;
  return v < double(size) ? static_cast<int64_t>(v) : size;
}

template <class T>
HOST_DEVICE PoolWindow pool_window(const T* roi /* x1 y1 x2 y2 */, T spatial_scale,
                                   int64_t pooled_h, int64_t pooled_w, int64_t ph, int64_t pw,
                                   int64_t height, int64_t width) {
  // torchvision rounds the corners to integers; here they stay integer-valued doubles.
  const double rx0 = std::round(roi[0] * spatial_scale);
  const double ry0 = std::round(roi[1] * spatial_scale);
  const double rx1 = std::round(roi[2] * spatial_scale);
  const double ry1 = std::round(roi[3] * spatial_scale);
  const double roi_w = rx1 - rx0 + 1.0 > 1.0 ? rx1 - rx0 + 1.0 : 1.0;
  const double roi_h = ry1 - ry0 + 1.0 > 1.0 ? ry1 - ry0 + 1.0 : 1.0;
  const T bin_h = T(roi_h) / T(pooled_h), bin_w = T(roi_w) / T(pooled_w);
  PoolWindow w;
  w.h0 = clip_edge(std::floor(T(ph) * bin_h), ry0, height);
  w.h1 = clip_edge(std::ceil(T(ph + 1) * bin_h), ry0, height);
  w.w0 = clip_edge(std::floor(T(pw) * bin_w), rx0, width);
  w.w1 = clip_edge(std::ceil(T(pw + 1) * bin_w), rx0, width);
  return w;
}

// The maximum of a window of `plane` (row stride `width`) and its plane offset y * width + x
// (the first one in row-major order on ties); an empty window gives 0 and offset -1. As in
// torchvision the running maximum starts at -FLT_MAX for both float types, and a NaN pixel
// never wins (NaN > best is false).
template <class T>
HOST_DEVICE T pool_max(const T* plane, int64_t width, const PoolWindow& win, int64_t* offset) {
  const bool empty = win.h1 <= win.h0 || win.w1 <= win.w0;
  T best = empty ? T(0) : T(-FLT_MAX);
  int64_t best_at = -1;
  for (int64_t y = win.h0; y < win.h1; ++y)
    for (int64_t x = win.w0; x < win.w1; ++x)
      if (plane[y * width + x] > best) {
        best = plane[y * width + x];
        best_at = y * width + x;
      }
  *offset = best_at;
  return best;
}

}  // namespace pydetect
