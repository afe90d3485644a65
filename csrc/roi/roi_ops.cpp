#include "roi/roi_ops.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common/check.h"
#include "common/parallel.h"
#include "roi/roi_math.h"

namespace pydetect {
namespace {

// Channels handled together by one backward task: the sample table of a RoI is read
// once per block instead of once per channel, and a block of 16 gradient planes of a
// typical 50x68 map (~220 KB in float32) stays in L2.
constexpr int64_t kChannelBlock = 16;

// RoI indices of each image; checks that every batch index is an integer in [0, n).
template <class T>
std::vector<std::vector<int64_t>> rois_by_image(const T* rois, int64_t k, int64_t n) {
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(n));
  for (int64_t r = 0; r < k; ++r) {
    const T b = rois[r * 5];
    PD_CHECK(b >= T(0) && b < T(n) && b == std::floor(b), "rois[", r,
             ", 0] must be an image index in [0, ", n, "), got ", b);
    groups[static_cast<size_t>(b)].push_back(r);
  }
  return groups;
}

int64_t batch_index(double b) { return static_cast<int64_t>(b); }

// Sample table of one RoI: PH * PW bins, each with grid_h * grid_w bilinear samples whose
// weights are pre-divided by the sample count (the average of the bin). Forward and
// backward both read this table, so they use exactly the same weights.
template <class T>
int64_t align_samples(const T* roi, int64_t h, int64_t w, T spatial_scale, int64_t ph_n,
                      int64_t pw_n, int64_t sampling_ratio, bool aligned,
                      std::vector<Bilinear<T>>* table) {
  const AlignGeometry<T> g = align_geometry(roi, spatial_scale, ph_n, pw_n, sampling_ratio, aligned);
  const int64_t per_bin = g.grid_h * g.grid_w;
  const T inv_count = T(1) / T(std::max<int64_t>(per_bin, 1));
  table->resize(static_cast<size_t>(ph_n * pw_n * per_bin));
  Bilinear<T>* s = table->data();
  for (int64_t ph = 0; ph < ph_n; ++ph) {
    for (int64_t pw = 0; pw < pw_n; ++pw) {
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const T y = align_sample_y(g, ph, iy);
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          *s = bilinear_weights(y, align_sample_x(g, pw, ix), h, w);
          for (int i = 0; i < 4; ++i) s->weight[i] *= inv_count;
          ++s;
        }
      }
    }
  }
  return per_bin;
}

}  // namespace

template <class T>
void roi_align_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                       const T* rois, int64_t k, T spatial_scale, int64_t pooled_h,
                       int64_t pooled_w, int64_t sampling_ratio, bool aligned, T* output) {
  PD_CHECK(h * w < (int64_t(1) << 31), "feature planes must have fewer than 2^31 pixels, got ", h, "x", w);
  rois_by_image(rois, k, n);  // validates batch indices
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  parallel_for(0, k, 1, [&](int64_t lo, int64_t hi) {
    std::vector<Bilinear<T>> table;
    for (int64_t r = lo; r < hi; ++r) {
      const T* roi = rois + r * 5;
      const int64_t per_bin = align_samples(roi + 1, h, w, spatial_scale, pooled_h, pooled_w,
                                            sampling_ratio, aligned, &table);
      const T* image = input + batch_index(double(roi[0])) * c * plane;
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* in = image + ch * plane;
        T* out = output + (r * c + ch) * bins;
        const Bilinear<T>* s = table.data();
        for (int64_t b = 0; b < bins; ++b) {
          T sum = T(0);
          for (int64_t i = 0; i < per_bin; ++i, ++s) {
            sum += s->weight[0] * in[s->offset[0]] + s->weight[1] * in[s->offset[1]] +
                   s->weight[2] * in[s->offset[2]] + s->weight[3] * in[s->offset[3]];
          }
          out[b] = sum;
        }
      }
    }
  });
}

template <class T>
void roi_align_backward(const T* grad_output, const T* rois, int64_t k, int64_t n, int64_t c,
                        int64_t h, int64_t w, T spatial_scale, int64_t pooled_h,
                        int64_t pooled_w, int64_t sampling_ratio, bool aligned, T* grad_input) {
  PD_CHECK(h * w < (int64_t(1) << 31), "feature planes must have fewer than 2^31 pixels, got ", h, "x", w);
  const auto groups = rois_by_image(rois, k, n);
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  // 1. Sample tables of all RoIs (in parallel over RoIs).
  std::vector<std::vector<Bilinear<T>>> tables(static_cast<size_t>(k));
  std::vector<int64_t> per_bin(static_cast<size_t>(k));
  parallel_for(0, k, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      per_bin[r] = align_samples(rois + r * 5 + 1, h, w, spatial_scale, pooled_h, pooled_w,
                                 sampling_ratio, aligned, &tables[r]);
    }
  });
  // 2. Scatter, one task per (image, block of channels): each plane has one writer.
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  parallel_for(0, n * blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t img = task / blocks;
      const int64_t c0 = (task % blocks) * kChannelBlock, c1 = std::min(c, c0 + kChannelBlock);
      T* gin = grad_input + (img * c + c0) * plane;
      std::fill(gin, gin + (c1 - c0) * plane, T(0));
      for (const int64_t r : groups[img]) {
        const Bilinear<T>* table = tables[r].data();
        const int64_t m = per_bin[r];
        for (int64_t ch = c0; ch < c1; ++ch) {
          T* g_plane = grad_input + (img * c + ch) * plane;
          const T* gout = grad_output + (r * c + ch) * bins;
          const Bilinear<T>* s = table;
          for (int64_t b = 0; b < bins; ++b) {
            const T g = gout[b];
            for (int64_t i = 0; i < m; ++i, ++s) {
              g_plane[s->offset[0]] += s->weight[0] * g;
              g_plane[s->offset[1]] += s->weight[1] * g;
              g_plane[s->offset[2]] += s->weight[2] * g;
              g_plane[s->offset[3]] += s->weight[3] * g;
            }
          }
        }
      }
    }
  });
}

template <class T>
void roi_pool_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                      const T* rois, int64_t k, T spatial_scale, int64_t pooled_h,
                      int64_t pooled_w, T* output, int64_t* argmax) {
  rois_by_image(rois, k, n);
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  parallel_for(0, k, 1, [&](int64_t lo, int64_t hi) {
    std::vector<PoolWindow> windows(static_cast<size_t>(bins));
    for (int64_t r = lo; r < hi; ++r) {
      const T* roi = rois + r * 5;
      for (int64_t ph = 0; ph < pooled_h; ++ph)
        for (int64_t pw = 0; pw < pooled_w; ++pw)
          windows[ph * pooled_w + pw] = pool_window(roi + 1, spatial_scale, pooled_h, pooled_w, ph, pw, h, w);
      const T* image = input + batch_index(double(roi[0])) * c * plane;
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* in = image + ch * plane;
        T* out = output + (r * c + ch) * bins;
        int64_t* arg = argmax + (r * c + ch) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          const PoolWindow& win = windows[b];
          const bool empty = win.h1 <= win.h0 || win.w1 <= win.w0;
          // torchvision starts from -FLT_MAX for both float types.
          T best = empty ? T(0) : T(-std::numeric_limits<float>::max());
          int64_t best_at = -1;
          for (int64_t y = win.h0; y < win.h1; ++y)
            for (int64_t x = win.w0; x < win.w1; ++x)
              if (in[y * w + x] > best) {
                best = in[y * w + x];
                best_at = y * w + x;
              }
          out[b] = best;
          arg[b] = best_at;
        }
      }
    }
  });
}

template <class T>
void roi_pool_backward(const T* grad_output, const int64_t* argmax, const T* rois, int64_t k,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t pooled_h,
                       int64_t pooled_w, T* grad_input) {
  const auto groups = rois_by_image(rois, k, n);
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  // One task per (image, channel plane): each plane has one writer.
  parallel_for(0, n * c, kChannelBlock, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t img = task / c, ch = task % c;
      T* g_plane = grad_input + task * plane;
      std::fill(g_plane, g_plane + plane, T(0));
      for (const int64_t r : groups[img]) {
        const T* gout = grad_output + (r * c + ch) * bins;
        const int64_t* arg = argmax + (r * c + ch) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          PD_CHECK(arg[b] >= -1 && arg[b] < plane, "argmax out of range: ", arg[b]);
          if (arg[b] >= 0) g_plane[arg[b]] += gout[b];
        }
      }
    }
  });
}

#define PD_INSTANTIATE_ROI(T)                                                                \
  template void roi_align_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const T*, \
                                     int64_t, T, int64_t, int64_t, int64_t, bool, T*);       \
  template void roi_align_backward<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                      int64_t, T, int64_t, int64_t, int64_t, bool, T*);      \
  template void roi_pool_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const T*,  \
                                    int64_t, T, int64_t, int64_t, T*, int64_t*);             \
  template void roi_pool_backward<T>(const T*, const int64_t*, const T*, int64_t, int64_t,   \
                                     int64_t, int64_t, int64_t, int64_t, int64_t, T*);

PD_INSTANTIATE_ROI(float)
PD_INSTANTIATE_ROI(double)

}  // namespace pydetect
