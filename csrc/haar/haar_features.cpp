#include "haar/haar_features.h"

#include <algorithm>
#include <cmath>

#include "cascade/cascade.h"
#include "common/check.h"
#include "integral/integral.h"
#include "common/parallel.h"

namespace pydetect {
namespace haar {
namespace {

Feature make(int32_t type, bool tilted, Rect a, Rect b, Rect c = Rect{0, 0, 0, 0, 0.0f}) {
  Feature f;
  f.rect[0] = a;
  f.rect[1] = b;
  f.rect[2] = c;
  f.type = type;
  f.tilted = tilted;
  return f;
}

// Appends a feature, refusing to grow the bank past kMaxFeatures.
void add(std::vector<Feature>& out, const Feature& f) {
  PD_CHECK(static_cast<int64_t>(out.size()) < kMaxFeatures, "the bank would hold more than ",
           kMaxFeatures, " features; use a smaller window or mode");
  out.push_back(f);
}

// The enumerations visit W * H * W * H (x, y, dx, dy) tuples whatever they keep; the window
// area bound keeps that under a second (and every coordinate sum far from overflow).
void check_window(int W, int H) {
  PD_CHECK(W >= 1 && H >= 1, "window must be at least 1x1, got ", W, "x", H);
  PD_CHECK(int64_t(W) * H <= kMaxWindowArea, "window must have at most ", kMaxWindowArea,
           " pixels to enumerate its features, got ", W, "x", H);
}

}  // namespace

std::vector<Feature> enumerate_opencv(int W, int H, OpenCVMode mode) {
  check_window(W, H);
  const bool core = mode != OpenCVMode::Basic, all = mode == OpenCVMode::All;
  std::vector<Feature> out;
  for (int x = 0; x < W; ++x) {
    for (int y = 0; y < H; ++y) {
      for (int dx = 1; dx <= W; ++dx) {
        for (int dy = 1; dy <= H; ++dy) {
          if (x + 2 * dx <= W && y + dy <= H)
            add(out, make(kHaarX2, false, {x, y, 2 * dx, dy, -1.f}, {x + dx, y, dx, dy, 2.f}));
          if (x + dx <= W && y + 2 * dy <= H)
            add(out, make(kHaarY2, false, {x, y, dx, 2 * dy, -1.f}, {x, y + dy, dx, dy, 2.f}));
          if (x + 3 * dx <= W && y + dy <= H)
            add(out, make(kHaarX3, false, {x, y, 3 * dx, dy, -1.f}, {x + dx, y, dx, dy, 3.f}));
          if (x + dx <= W && y + 3 * dy <= H)
            add(out, make(kHaarY3, false, {x, y, dx, 3 * dy, -1.f}, {x, y + dy, dx, dy, 3.f}));
          if (core) {
            if (x + 4 * dx <= W && y + dy <= H)
              add(out, make(kHaarX4, false, {x, y, 4 * dx, dy, -1.f}, {x + dx, y, 2 * dx, dy, 2.f}));
            if (x + dx <= W && y + 4 * dy <= H)
              add(out, make(kHaarY4, false, {x, y, dx, 4 * dy, -1.f}, {x, y + dy, dx, 2 * dy, 2.f}));
          }
          if (x + 2 * dx <= W && y + 2 * dy <= H)
            add(out, make(kX2Y2, false, {x, y, 2 * dx, 2 * dy, -1.f}, {x, y, dx, dy, 2.f},
                               {x + dx, y + dy, dx, dy, 2.f}));
          if (core && x + 3 * dx <= W && y + 3 * dy <= H)
            add(out, make(kPoint, false, {x, y, 3 * dx, 3 * dy, -1.f}, {x + dx, y + dy, dx, dy, 9.f}));
          if (all) {
            if (x + 2 * dx <= W && y + 2 * dx + dy <= H && x - dy >= 0)
              add(out, make(kTiltedX2, true, {x, y, 2 * dx, dy, -1.f}, {x, y, dx, dy, 2.f}));
            if (x + dx <= W && y + dx + 2 * dy <= H && x - 2 * dy >= 0)
              add(out, make(kTiltedY2, true, {x, y, dx, 2 * dy, -1.f}, {x, y, dx, dy, 2.f}));
            if (x + 3 * dx <= W && y + 3 * dx + dy <= H && x - dy >= 0)
              add(out, make(kTiltedX3, true, {x, y, 3 * dx, dy, -1.f}, {x + dx, y + dx, dx, dy, 3.f}));
            if (x + dx <= W && y + dx + 3 * dy <= H && x - 3 * dy >= 0)
              add(out, make(kTiltedY3, true, {x, y, dx, 3 * dy, -1.f}, {x - dy, y + dy, dx, dy, 3.f}));
            if (x + 4 * dx <= W && y + 4 * dx + dy <= H && x - dy >= 0)
              add(out, make(kTiltedX4, true, {x, y, 4 * dx, dy, -1.f}, {x + dx, y + dx, 2 * dx, dy, 2.f}));
            if (x + dx <= W && y + dx + 4 * dy <= H && x - 4 * dy >= 0)
              add(out, make(kTiltedY4, true, {x, y, dx, 4 * dy, -1.f}, {x - dy, y + dy, dx, 2 * dy, 2.f}));
          }
        }
      }
    }
  }
  return out;
}

std::vector<Feature> enumerate_skimage(int W, int H, unsigned type_mask) {
  check_window(W, H);
  std::vector<Feature> out;
  for (int t = 0; t < 5; ++t) {
    if (!(type_mask & (1u << t))) continue;
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) {
        for (int dy = 1; dy <= H; ++dy) {
          for (int dx = 1; dx <= W; ++dx) {
            switch (t) {
              case 0:  // right - left
                if (y + dy <= H && x + 2 * dx <= W)
                  add(out, make(kSkType2X, false, {x, y, 2 * dx, dy, -1.f}, {x + dx, y, dx, dy, 2.f}));
                break;
              case 1:  // bottom - top
                if (y + 2 * dy <= H && x + dx <= W)
                  add(out, make(kSkType2Y, false, {x, y, dx, 2 * dy, -1.f}, {x, y + dy, dx, dy, 2.f}));
                break;
              case 2:  // -left + middle - right
                if (y + dy <= H && x + 3 * dx <= W)
                  add(out, make(kSkType3X, false, {x, y, 3 * dx, dy, -1.f}, {x + dx, y, dx, dy, 2.f}));
                break;
              case 3:  // -top + middle - bottom
                if (y + 3 * dy <= H && x + dx <= W)
                  add(out, make(kSkType3Y, false, {x, y, dx, 3 * dy, -1.f}, {x, y + dy, dx, dy, 2.f}));
                break;
              default:  // -TL + TR - BR + BL = whole - 2 TL - 2 BR
                if (y + 2 * dy <= H && x + 2 * dx <= W)
                  add(out, make(kSkType4, false, {x, y, 2 * dx, 2 * dy, 1.f}, {x, y, dx, dy, -2.f},
                                     {x + dx, y + dy, dx, dy, -2.f}));
                break;
            }
          }
        }
      }
    }
  }
  return out;
}

void check_features(const Feature* features, int64_t n, int W, int H) {
  for (int64_t i = 0; i < n; ++i) {
    const Feature& f = features[i];
    PD_CHECK(f.rect[0].weight != 0.0f, "feature ", i, " has no rectangle (first weight is 0)");
    for (int r = 0; r < kMaxRects; ++r) {
      const Rect& q = f.rect[r];
      PD_CHECK(std::isfinite(q.weight), "feature ", i, " rectangle ", r, " has a weight of ",
               q.weight, "; weights must be finite");
      if (q.weight == 0.0f) continue;
      // int64: an int32 x + w near INT_MAX would wrap and pass.
      const int64_t x = q.x, y = q.y, w = q.w, h = q.h;
      PD_CHECK(w > 0 && h > 0, "feature ", i, " rectangle ", r, " has a non-positive size ", w,
               "x", h);
      if (!f.tilted) {
        PD_CHECK(x >= 0 && y >= 0 && x + w <= W && y + h <= H, "feature ", i, " rectangle ", r,
                 " (", x, ", ", y, ", ", w, ", ", h, ") leaves the ", W, "x", H, " window");
      } else {
        PD_CHECK(x - h >= 0 && y >= 0 && x + w <= W && y + w + h <= H, "feature ", i,
                 " tilted rectangle ", r, " (", x, ", ", y, ", ", w, ", ", h, ") leaves the ",
                 W, "x", H, " window");
      }
    }
  }
}

namespace {

// A feature compiled as the detector compiles it (detect.cpp's make_engine): offsets into
// one per-window buffer holding the sum table, then the squared and tilted tables.
cascade::CompiledHaar compile(const Feature& f, int64_t stride, int64_t tilted_offset) {
  cascade::CompiledHaar c;
  for (int r = 0; r < kMaxRects; ++r) {
    const Rect& q = f.rect[r];
    c.weight[r] = q.weight;
    if (q.weight == 0.0f) {  // unused slot: any coordinates, read at offset 0 (weight 0)
      c.rect[r] = RectOffsets{0, 0, 0, 0};
    } else if (!f.tilted) {
      c.rect[r] = upright_rect_offsets(q.x, q.y, q.w, q.h, stride);
    } else {
      c.rect[r] = tilted_rect_offsets(q.x, q.y, q.w, q.h, stride);
      c.rect[r].o0 += tilted_offset, c.rect[r].o1 += tilted_offset, c.rect[r].o2 += tilted_offset,
          c.rect[r].o3 += tilted_offset;
    }
  }
  return c;
}

}  // namespace

void compute_features(const uint8_t* windows, int64_t num_windows, int h, int w,
                      const Feature* features, int64_t num_features, bool normalize,
                      float* values) {
  PD_CHECK(h >= 1 && w >= 1, "windows must be at least 1x1, got ", w, "x", h);
  PD_CHECK(!normalize || (h >= 3 && w >= 3),
           "normalisation needs windows of at least 3x3 (OpenCV's rectangle (1, 1, w-2, h-2)), got ",
           w, "x", h);
  check_features(features, num_features, w, h);
  if (num_windows == 0 || num_features == 0) return;
  bool any_tilted = false;
  for (int64_t i = 0; i < num_features; ++i) any_tilted = any_tilted || features[i].tilted;
  // Per-window buffer: sum | sqsum (when normalising) | tilted (when any feature is), each
  // (h + 1) x (w + 1) int32 in OpenCV's layout, as the detector lays out a pyramid level.
  const int64_t stride = w + 1, table = (h + 1) * stride;
  const int64_t sq_offset = table, tilted_offset = (normalize ? 2 : 1) * table;
  const size_t buffer = static_cast<size_t>(tilted_offset + (any_tilted ? table : 0));
  std::vector<cascade::CompiledHaar> compiled(static_cast<size_t>(num_features));
  for (int64_t i = 0; i < num_features; ++i) compiled[i] = compile(features[i], stride, tilted_offset);
  const RectOffsets norm = upright_rect_offsets(1, 1, w - 2, h - 2, stride);
  const double norm_area = double(w - 2) * double(h - 2);
  // Cache blocking: the compiled bank (~110 bytes a feature) is far larger than the cache
  // for full banks, so each thread takes up to kBatch windows, builds their tables, and
  // sweeps the bank in blocks of kBlock features over all of them.
  constexpr int64_t kBatch = 16, kBlock = 1024;
  const int64_t grain = std::min<int64_t>(
      kBatch, std::max<int64_t>(1, num_windows / (4 * static_cast<int64_t>(get_num_threads()))));
  parallel_for(0, num_windows, grain, [&](int64_t lo, int64_t hi) {
    std::vector<int32_t> buf(static_cast<size_t>(std::min(hi - lo, kBatch)) * buffer);
    float vnf[kBatch];
    for (int64_t b0 = lo; b0 < hi; b0 += kBatch) {
      const int64_t nb = std::min(kBatch, hi - b0);
      for (int64_t k = 0; k < nb; ++k) {
        const uint8_t* img = windows + (b0 + k) * static_cast<int64_t>(h) * w;
        int32_t* sum = buf.data() + k * buffer;
        integral_image<uint8_t, int32_t, int32_t>(img, h, w, w, sum,
                                                  normalize ? sum + sq_offset : nullptr,
                                                  any_tilted ? sum + tilted_offset : nullptr, stride);
        vnf[k] = 1.0f;
        if (normalize) {
          // The detector's haar_norm_factor for this window at scale 1, without its
          // flat-window rejection (a flat window still gets values; 0 when constant).
          vnf[k] = cascade::haar_window_vnf(sum, sq_offset, norm, norm_area);
        }
      }
      for (int64_t f0 = 0; f0 < num_features; f0 += kBlock) {
        const int64_t f1 = std::min(num_features, f0 + kBlock);
        for (int64_t k = 0; k < nb; ++k) {
          const int32_t* sum = buf.data() + k * buffer;
          float* out = values + (b0 + k) * num_features;
          if (normalize) {
            const float nf = vnf[k];
            for (int64_t i = f0; i < f1; ++i) out[i] = cascade::haar_value(compiled[i], sum) * nf;
          } else {
            for (int64_t i = f0; i < f1; ++i) out[i] = cascade::haar_value(compiled[i], sum);
          }
        }
      }
    }
  });
}

}  // namespace haar
}  // namespace pydetect
