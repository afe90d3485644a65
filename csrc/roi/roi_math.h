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

// The four taps of one bilinear sample: plane offsets (y * width + x) and weights.
// A sample outside [-1, H] x [-1, W] (or at a NaN position) has all weights 0.
template <class T>
struct Bilinear {
  int32_t offset[4];
  T weight[4];
};

// Bilinear weights of the point (y, x) in a height x width plane, with torchvision's
// border rules: points up to one pixel outside are clamped onto the border; further
// out they contribute nothing. The comparison is written so that NaN counts as outside
// (the guard torchvision has in one of its copies only).
template <class T>
HOST_DEVICE Bilinear<T> bilinear_weights(T y, T x, int64_t height, int64_t width) {
  Bilinear<T> b;
  if (!(y >= T(-1) && y <= T(height) && x >= T(-1) && x <= T(width))) {
    for (int i = 0; i < 4; ++i) {
      b.offset[i] = 0;
      b.weight[i] = T(0);
    }
    return b;
  }
  if (y <= T(0)) y = T(0);
  if (x <= T(0)) x = T(0);
  int64_t y_low = static_cast<int64_t>(y);
  int64_t x_low = static_cast<int64_t>(x);
  int64_t y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = T(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = T(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - T(y_low), lx = x - T(x_low);
  const T hy = T(1) - ly, hx = T(1) - lx;
  b.offset[0] = static_cast<int32_t>(y_low * width + x_low);
  b.offset[1] = static_cast<int32_t>(y_low * width + x_high);
  b.offset[2] = static_cast<int32_t>(y_high * width + x_low);
  b.offset[3] = static_cast<int32_t>(y_high * width + x_high);
  b.weight[0] = hy * hx;
  b.weight[1] = hy * lx;
  b.weight[2] = ly * hx;
  b.weight[3] = ly * lx;
  return b;
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

// Position of sample (iy, ix) of bin (ph, pw).
template <class T>
HOST_DEVICE T align_sample_y(const AlignGeometry<T>& g, int64_t ph, int64_t iy) {
  return g.start_y + T(ph) * g.bin_h + (T(iy) + T(0.5)) * g.bin_h / T(g.grid_h);
}
template <class T>
HOST_DEVICE T align_sample_x(const AlignGeometry<T>& g, int64_t pw, int64_t ix) {
  return g.start_x + T(pw) * g.bin_w + (T(ix) + T(0.5)) * g.bin_w / T(g.grid_w);
}

// 1 / (samples per bin): a bin's value is the average of its samples. An empty grid (0
// samples) divides by 1; its bins are 0 as there is nothing to add.
template <class T>
HOST_DEVICE T align_inv_count(const AlignGeometry<T>& g) {
  return T(1) / T(hd_max<int64_t>(g.grid_h * g.grid_w, 1));
}

// The taps of sample (iy, ix) of bin (ph, pw) in a height x width plane, their weights
// pre-multiplied by inv_count (align_inv_count): the forward pass sums bilinear_sum over
// a bin's samples, the backward pass scatters weight * gradient, so both use the same
// weights.
template <class T>
HOST_DEVICE Bilinear<T> align_sample(const AlignGeometry<T>& g, int64_t ph, int64_t pw, int64_t iy,
                                     int64_t ix, int64_t height, int64_t width, T inv_count) {
  Bilinear<T> b = bilinear_weights(align_sample_y(g, ph, iy), align_sample_x(g, pw, ix), height, width);
  for (int i = 0; i < 4; ++i) b.weight[i] *= inv_count;
  return b;
}

// The weighted sum of the four taps of a sample in `plane`, in tap order.
template <class T>
HOST_DEVICE T bilinear_sum(const T* plane, const Bilinear<T>& s) {
  return s.weight[0] * plane[s.offset[0]] + s.weight[1] * plane[s.offset[1]] +
         s.weight[2] * plane[s.offset[2]] + s.weight[3] * plane[s.offset[3]];
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
