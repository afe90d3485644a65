#include "roi/roi_ops.h"

#include <algorithm>
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
    PD_CHECK(valid_batch_index(b, n), "rois[", r, ", 0] must be an image index in [0, ", n, "), got ", b);
    groups[static_cast<size_t>(b)].push_back(r);
  }
  return groups;
}

int64_t batch_index(double b) { return static_cast<int64_t>(b); }

// Samples of the sample tables held at once: bins are tabulated in parts of at most this
// many samples (at least one bin), so that memory stays bounded whatever the output size
// and sample counts (up to 256 x 256 per bin). A typical call (512 RoIs, 7x7 bins, 2x2
// samples: 100k samples) fits in one part per RoI and one backward pass.
constexpr int64_t kTableSamples = int64_t(1) << 20;

// Bins per table part for a RoI with `per_bin` samples per bin.
int64_t bins_per_part(int64_t per_bin) { return std::max<int64_t>(1, kTableSamples / std::max<int64_t>(per_bin, 1)); }

// Sample table of bins [b0, b1) (row-major over the PH x PW bins) of one RoI: grid_h *
// grid_w bilinear samples per bin whose weights are pre-divided by the sample count (the
// average of the bin). Forward and backward both read these tables, so they use exactly
// the same weights.
template <class T>
void align_samples(const AlignGeometry<T>& g, int64_t pw_n, int64_t b0, int64_t b1, int64_t h,
                   int64_t w, std::vector<Bilinear<T>>* table) {
  const T inv_count = align_inv_count(g);
  table->resize(static_cast<size_t>((b1 - b0) * g.grid_h * g.grid_w));
  Bilinear<T>* s = table->data();
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t ph = b / pw_n, pw = b % pw_n;
    for (int64_t iy = 0; iy < g.grid_h; ++iy)
      for (int64_t ix = 0; ix < g.grid_w; ++ix) *s++ = align_sample(g, ph, pw, iy, ix, h, w, inv_count);
  }
}

// One table part: bins [b0, b1) of RoI `roi`.
struct TablePart {
  int64_t roi, b0, b1;
};

}  // namespace

template <class T>
void roi_align_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                       const T* rois, int64_t k, T spatial_scale, int64_t pooled_h,
                       int64_t pooled_w, int64_t sampling_ratio, bool aligned, T* output) {
  PD_CHECK(h * w < (int64_t(1) << 31), "feature planes must have fewer than 2^31 pixels, got ", h, "x", w);
  PD_CHECK(sampling_ratio <= kMaxSamplingRatio, "sampling_ratio must be <= ", kMaxSamplingRatio, ", got ",
           sampling_ratio);
  rois_by_image(rois, k, n);  // validates batch indices
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  parallel_for(0, k, 1, [&](int64_t lo, int64_t hi) {
    std::vector<Bilinear<T>> table;
    for (int64_t r = lo; r < hi; ++r) {
      const T* roi = rois + r * 5;
      const AlignGeometry<T> g = align_geometry(roi + 1, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned);
      const int64_t per_bin = g.grid_h * g.grid_w, part = bins_per_part(per_bin);
      const T* image = input + batch_index(double(roi[0])) * c * plane;
      for (int64_t b0 = 0; b0 < bins; b0 += part) {
        const int64_t b1 = std::min(bins, b0 + part);
        align_samples(g, pooled_w, b0, b1, h, w, &table);
        for (int64_t ch = 0; ch < c; ++ch) {
          const T* in = image + ch * plane;
          T* out = output + (r * c + ch) * bins;
          const Bilinear<T>* s = table.data();
          for (int64_t b = b0; b < b1; ++b) {
            T sum = T(0);
            for (int64_t i = 0; i < per_bin; ++i, ++s) sum += bilinear_sum(in, *s);
            out[b] = sum;
          }
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
  PD_CHECK(sampling_ratio <= kMaxSamplingRatio, "sampling_ratio must be <= ", kMaxSamplingRatio, ", got ",
           sampling_ratio);
  rois_by_image(rois, k, n);  // validates batch indices
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  // Table parts of all RoIs in (RoI, bin) order, grouped into passes of at most
  // kTableSamples samples (or one part). Each pass adds its parts in that order, so every
  // gradient element receives its terms in the same order whatever the number of passes.
  std::vector<AlignGeometry<T>> geometry(static_cast<size_t>(k));
  std::vector<TablePart> parts;
  std::vector<size_t> pass_start{0};
  int64_t pass_samples = 0;
  for (int64_t r = 0; r < k; ++r) {
    geometry[r] = align_geometry(rois + r * 5 + 1, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned);
    const int64_t per_bin = geometry[r].grid_h * geometry[r].grid_w, part = bins_per_part(per_bin);
    for (int64_t b0 = 0; b0 < bins; b0 += part) {
      const TablePart p{r, b0, std::min(bins, b0 + part)};
      const int64_t samples = (p.b1 - p.b0) * per_bin;
      if (pass_samples > 0 && pass_samples + samples > kTableSamples) {
        pass_start.push_back(parts.size());
        pass_samples = 0;
      }
      parts.push_back(p);
      pass_samples += samples;
    }
  }
  pass_start.push_back(parts.size());
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  std::vector<std::vector<Bilinear<T>>> tables;
  for (size_t pass = 0; pass + 1 < pass_start.size(); ++pass) {
    const int64_t first = static_cast<int64_t>(pass_start[pass]), last = static_cast<int64_t>(pass_start[pass + 1]);
    // 1. Sample tables of the pass's parts (in parallel over parts).
    tables.assign(static_cast<size_t>(last - first), {});
    parallel_for(first, last, 16, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const TablePart& p = parts[i];
        align_samples(geometry[p.roi], pooled_w, p.b0, p.b1, h, w, &tables[i - first]);
      }
    });
    // 2. Scatter, one task per (image, block of channels): each plane has one writer.
    parallel_for(0, n * blocks, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t img = task / blocks;
        const int64_t c0 = (task % blocks) * kChannelBlock, c1 = std::min(c, c0 + kChannelBlock);
        if (pass == 0) std::fill(grad_input + (img * c + c0) * plane, grad_input + (img * c + c1) * plane, T(0));
        for (int64_t i = first; i < last; ++i) {
          const TablePart& p = parts[i];
          if (batch_index(double(rois[p.roi * 5])) != img) continue;
          const int64_t m = geometry[p.roi].grid_h * geometry[p.roi].grid_w;
          for (int64_t ch = c0; ch < c1; ++ch) {
            T* g_plane = grad_input + (img * c + ch) * plane;
            const T* gout = grad_output + (p.roi * c + ch) * bins;
            const Bilinear<T>* s = tables[i - first].data();
            for (int64_t b = p.b0; b < p.b1; ++b) {
              const T g = gout[b];
              for (int64_t j = 0; j < m; ++j, ++s) {
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
        for (int64_t b = 0; b < bins; ++b) out[b] = pool_max(in, w, windows[b], &arg[b]);
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
