#include "haar/haar_features.h"

#include <algorithm>

#include "common/check.h"
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

}  // namespace

std::vector<Feature> enumerate_opencv(int W, int H, OpenCVMode mode) {
  PD_CHECK(W >= 1 && H >= 1, "window must be at least 1x1, got ", W, "x", H);
  const bool core = mode != OpenCVMode::Basic, all = mode == OpenCVMode::All;
  std::vector<Feature> out;
  for (int x = 0; x < W; ++x) {
    for (int y = 0; y < H; ++y) {
      for (int dx = 1; dx <= W; ++dx) {
        for (int dy = 1; dy <= H; ++dy) {
          if (x + 2 * dx <= W && y + dy <= H)
            out.push_back(make(kHaarX2, false, {x, y, 2 * dx, dy, -1.f}, {x + dx, y, dx, dy, 2.f}));
          if (x + dx <= W && y + 2 * dy <= H)
            out.push_back(make(kHaarY2, false, {x, y, dx, 2 * dy, -1.f}, {x, y + dy, dx, dy, 2.f}));
          if (x + 3 * dx <= W && y + dy <= H)
            out.push_back(make(kHaarX3, false, {x, y, 3 * dx, dy, -1.f}, {x + dx, y, dx, dy, 3.f}));
          if (x + dx <= W && y + 3 * dy <= H)
            out.push_back(make(kHaarY3, false, {x, y, dx, 3 * dy, -1.f}, {x, y + dy, dx, dy, 3.f}));
          if (core) {
            if (x + 4 * dx <= W && y + dy <= H)
              out.push_back(make(kHaarX4, false, {x, y, 4 * dx, dy, -1.f}, {x + dx, y, 2 * dx, dy, 2.f}));
            if (x + dx <= W && y + 4 * dy <= H)
              out.push_back(make(kHaarY4, false, {x, y, dx, 4 * dy, -1.f}, {x, y + dy, dx, 2 * dy, 2.f}));
          }
          if (x + 2 * dx <= W && y + 2 * dy <= H)
            out.push_back(make(kX2Y2, false, {x, y, 2 * dx, 2 * dy, -1.f}, {x, y, dx, dy, 2.f},
                               {x + dx, y + dy, dx, dy, 2.f}));
          if (core && x + 3 * dx <= W && y + 3 * dy <= H)
            out.push_back(make(kPoint, false, {x, y, 3 * dx, 3 * dy, -1.f}, {x + dx, y + dy, dx, dy, 9.f}));
          if (all) {
            if (x + 2 * dx <= W && y + 2 * dx + dy <= H && x - dy >= 0)
              out.push_back(make(kTiltedX2, true, {x, y, 2 * dx, dy, -1.f}, {x, y, dx, dy, 2.f}));
            if (x + dx <= W && y + dx + 2 * dy <= H && x - 2 * dy >= 0)
              out.push_back(make(kTiltedY2, true, {x, y, dx, 2 * dy, -1.f}, {x, y, dx, dy, 2.f}));
            if (x + 3 * dx <= W && y + 3 * dx + dy <= H && x - dy >= 0)
              out.push_back(make(kTiltedX3, true, {x, y, 3 * dx, dy, -1.f}, {x + dx, y + dx, dx, dy, 3.f}));
            if (x + dx <= W && y + dx + 3 * dy <= H && x - 3 * dy >= 0)
              out.push_back(make(kTiltedY3, true, {x, y, dx, 3 * dy, -1.f}, {x - dy, y + dy, dx, dy, 3.f}));
            if (x + 4 * dx <= W && y + 4 * dx + dy <= H && x - dy >= 0)
              out.push_back(make(kTiltedX4, true, {x, y, 4 * dx, dy, -1.f}, {x + dx, y + dx, 2 * dx, dy, 2.f}));
            if (x + dx <= W && y + dx + 4 * dy <= H && x - 4 * dy >= 0)
              out.push_back(make(kTiltedY4, true, {x, y, dx, 4 * dy, -1.f}, {x - dy, y + dy, dx, 2 * dy, 2.f}));
          }
        }
      }
    }
  }
  return out;
}

std::vector<Feature> enumerate_skimage(int W, int H, unsigned type_mask) {
  PD_CHECK(W >= 1 && H >= 1, "window must be at least 1x1, got ", W, "x", H);
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
                  out.push_back(make(kSkType2X, false, {x, y, 2 * dx, dy, -1.f}, {x + dx, y, dx, dy, 2.f}));
                break;
              case 1:  // bottom - top
                if (y + 2 * dy <= H && x + dx <= W)
                  out.push_back(make(kSkType2Y, false, {x, y, dx, 2 * dy, -1.f}, {x, y + dy, dx, dy, 2.f}));
                break;
              case 2:  // -left + middle - right
                if (y + dy <= H && x + 3 * dx <= W)
                  out.push_back(make(kSkType3X, false, {x, y, 3 * dx, dy, -1.f}, {x + dx, y, dx, dy, 2.f}));
                break;
              case 3:  // -top + middle - bottom
                if (y + 3 * dy <= H && x + dx <= W)
                  out.push_back(make(kSkType3Y, false, {x, y, dx, 3 * dy, -1.f}, {x, y + dy, dx, dy, 2.f}));
                break;
              default:  // -TL + TR - BR + BL = whole - 2 TL - 2 BR
                if (y + 2 * dy <= H && x + 2 * dx <= W)
                  out.push_back(make(kSkType4, false, {x, y, 2 * dx, 2 * dy, 1.f}, {x, y, dx, dy, -2.f},
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
      if (q.weight == 0.0f) continue;
      PD_CHECK(q.w > 0 && q.h > 0, "feature ", i, " rectangle ", r, " has a non-positive size ", q.w,
               "x", q.h);
      if (!f.tilted) {
        PD_CHECK(q.x >= 0 && q.y >= 0 && q.x + q.w <= W && q.y + q.h <= H, "feature ", i,
                 " rectangle ", r, " (", q.x, ", ", q.y, ", ", q.w, ", ", q.h, ") leaves the ", W,
                 "x", H, " window");
      } else {
        PD_CHECK(q.x - q.h >= 0 && q.y >= 0 && q.x + q.w <= W && q.y + q.w + q.h <= H, "feature ", i,
                 " tilted rectangle ", r, " (", q.x, ", ", q.y, ", ", q.w, ", ", q.h,
                 ") leaves the ", W, "x", H, " window");
      }
    }
  }
}

void window_integrals(const uint8_t* img, int h, int w, int32_t* sum, int32_t* tilted) {
  const int s = w + 1;
  for (int x = 0; x <= w; ++x) sum[x] = 0;
  for (int y = 0; y < h; ++y) {
    int32_t row = 0;
    sum[(y + 1) * s] = 0;
    for (int x = 0; x < w; ++x) {
      row += img[y * w + x];
      sum[(y + 1) * s + x + 1] = sum[y * s + x + 1] + row;
    }
  }
  if (!tilted) return;
  // tilted(X, Y) = sum of img(x, y) over y < Y, |x - X + 1| <= Y - 1 - y (cv2.integral3).
  // Recurrence on a table padded by h + 1 columns on each side (the triangles widen upwards
  // past the window's edges):
  //   T(X, Y) = T(X-1, Y-1) + T(X+1, Y-1) - T(X, Y-2) + img(X-1, Y-1) + img(X-1, Y-2).
  const int pad = h + 1, pw = w + 1 + 2 * pad;
  std::vector<int32_t> t(static_cast<size_t>(pw) * (h + 1), 0);
  auto px = [&](int x, int y) -> int32_t {
    return (x >= 0 && x < w && y >= 0 && y < h) ? img[y * w + x] : 0;
  };
  for (int Y = 1; Y <= h; ++Y) {
    for (int X = -pad + 1; X < w + 1 + pad - 1; ++X) {
      const int c = X + pad;
      int32_t v = t[(Y - 1) * pw + c - 1] + t[(Y - 1) * pw + c + 1] + px(X - 1, Y - 1);
      if (Y >= 2) v += px(X - 1, Y - 2) - t[(Y - 2) * pw + c];
      t[Y * pw + c] = v;
    }
  }
  for (int Y = 0; Y <= h; ++Y)
    for (int X = 0; X <= w; ++X) tilted[Y * s + X] = t[Y * pw + X + pad];
}

namespace {

struct Compiled {
  int32_t p[kMaxRects][4];
  float weight[kMaxRects];
  bool tilted;
};

Compiled compile(const Feature& f, int stride) {
  Compiled c;
  for (int r = 0; r < kMaxRects; ++r) {
    const Rect& q = f.rect[r];
    c.weight[r] = q.weight;
    if (q.weight == 0.0f) {
      c.p[r][0] = c.p[r][1] = c.p[r][2] = c.p[r][3] = 0;
    } else if (!f.tilted) {  // OpenCV's CV_SUM_OFFSETS
      c.p[r][0] = q.x + stride * q.y;
      c.p[r][1] = q.x + q.w + stride * q.y;
      c.p[r][2] = q.x + stride * (q.y + q.h);
      c.p[r][3] = q.x + q.w + stride * (q.y + q.h);
    } else {  // OpenCV's CV_TILTED_OFFSETS
      c.p[r][0] = q.x + stride * q.y;
      c.p[r][1] = q.x - q.h + stride * (q.y + q.h);
      c.p[r][2] = q.x + q.w + stride * (q.y + q.w);
      c.p[r][3] = q.x + q.w - q.h + stride * (q.y + q.w + q.h);
    }
  }
  c.tilted = f.tilted;
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
  const int stride = w + 1;
  std::vector<Compiled> compiled(static_cast<size_t>(num_features));
  bool any_tilted = false;
  for (int64_t i = 0; i < num_features; ++i) {
    compiled[i] = compile(features[i], stride);
    any_tilted = any_tilted || features[i].tilted;
  }
  const size_t table = static_cast<size_t>(h + 1) * stride;
  parallel_for(0, num_windows, 1, [&](int64_t lo, int64_t hi) {
    std::vector<int32_t> sum(table), tilted(any_tilted ? table : 0);
    for (int64_t n = lo; n < hi; ++n) {
      const uint8_t* img = windows + n * static_cast<int64_t>(h) * w;
      window_integrals(img, h, w, sum.data(), any_tilted ? tilted.data() : nullptr);
      float nf = 1.0f;
      if (normalize) {
        int64_t s = 0, q = 0;
        for (int y = 1; y < h - 1; ++y)
          for (int x = 1; x < w - 1; ++x) {
            const int64_t v = img[y * w + x];
            s += v;
            q += v * v;
          }
        nf = norm_factor(s, q, static_cast<int64_t>(h - 2) * (w - 2));
      }
      float* out = values + n * num_features;
      const int32_t* up = sum.data();
      const int32_t* tl = any_tilted ? tilted.data() : up;
      for (int64_t i = 0; i < num_features; ++i) {
        const Compiled& c = compiled[i];
        const int32_t* ii = c.tilted ? tl : up;
        float v = c.weight[0] * static_cast<float>(rect_sum(ii, c.p[0][0], c.p[0][1], c.p[0][2], c.p[0][3])) +
                  c.weight[1] * static_cast<float>(rect_sum(ii, c.p[1][0], c.p[1][1], c.p[1][2], c.p[1][3]));
        if (c.weight[2] != 0.0f)
          v += c.weight[2] * static_cast<float>(rect_sum(ii, c.p[2][0], c.p[2][1], c.p[2][2], c.p[2][3]));
        if (normalize) v = nf != 0.0f ? v / nf : 0.0f;
        out[i] = v;
      }
    }
  });
}

}  // namespace haar
}  // namespace pydetect
