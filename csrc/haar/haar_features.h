// Haar-like feature bank: enumeration (opencv_traincascade's BASIC / CORE / ALL sets and
// scikit-image's five types) and evaluation over many equally sized sample windows.
//
// A feature is up to three rectangles with weights, the representation OpenCV's cascade
// files use: value = sum_i weight_i * rectsum_i. Upright rectangles are (x, y, w, h) in
// window pixels; a tilted one (Lienhart & Maydt, ICIP 2002) is OpenCV's 45-degree rectangle
// whose top corner is at (x, y), read from the tilted integral image.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/host_device.h"

namespace pydetect {
namespace haar {

constexpr int kMaxRects = 3;

struct Rect {
  int32_t x, y, w, h;
  float weight;  // 0 marks an unused slot
};

struct Feature {
  Rect rect[kMaxRects];
  int32_t type;  // see FeatureType
  bool tilted;
};

// Type codes, stable (they are exposed to Python as names).
enum FeatureType : int32_t {
  kHaarX2 = 0, kHaarY2, kHaarX3, kHaarY3, kHaarX4, kHaarY4, kX2Y2, kPoint,
  kTiltedX2, kTiltedY2, kTiltedX3, kTiltedY3, kTiltedX4, kTiltedY4,
  kSkType2X, kSkType2Y, kSkType3X, kSkType3Y, kSkType4,
  kNumFeatureTypes
};

enum class OpenCVMode { Basic = 0, Core = 1, All = 2 };

// Features in opencv_traincascade's order (CvHaarEvaluator::generateFeatures): loops
// x, y, dx, dy; per position the types x2, y2, x3, y3, [x4, y4], x2y2, [point], [tilted...].
// 24x24: 162,336 (BASIC), 261,600 (ALL).
std::vector<Feature> enumerate_opencv(int width, int height, OpenCVMode mode);

// scikit-image's haar_like_feature_coord order: for each requested type (bit i of
// type_mask = FEATURE_TYPE[i] of 'type-2-x', 'type-2-y', 'type-3-x', 'type-3-y', 'type-4'),
// loops y, x, dy, dx. Weights reproduce skimage's values exactly (e.g. type-2-x =
// right - left, type-4 = -TL + TR - BR + BL).
std::vector<Feature> enumerate_skimage(int width, int height, unsigned type_mask);

// Throws std::invalid_argument when a rectangle leaves a width x height window.
void check_features(const Feature* features, int64_t num_features, int width, int height);

// OpenCV's variance-normalisation factor of a window (calcNormFactor / HaarEvaluator):
// sqrt(area * sqsum - sum^2) over the rectangle (1, 1, w - 2, h - 2). Returned as float,
// as opencv_traincascade stores it.
HOST_DEVICE float norm_factor(int64_t sum, int64_t sqsum, int64_t area) {
  const double a = static_cast<double>(area), s = static_cast<double>(sum);
  const double q = static_cast<double>(sqsum);
  const double v = a * q - s * s;
  return v > 0 ? static_cast<float>(std::sqrt(v)) : 0.0f;
}

// Sum over an integral-image rectangle given its four corner offsets (OpenCV's p0..p3).
HOST_DEVICE int32_t rect_sum(const int32_t* ii, int32_t p0, int32_t p1, int32_t p2, int32_t p3) {
  // Unsigned arithmetic: the result is exact even when the partial sums wrap.
  return static_cast<int32_t>(static_cast<uint32_t>(ii[p0]) - static_cast<uint32_t>(ii[p1]) -
                              static_cast<uint32_t>(ii[p2]) + static_cast<uint32_t>(ii[p3]));
}

// Per-window integral images of a h x w uint8 window (layout of cv2.integral3, (h+1) x (w+1)
// int32): `sum` always, `tilted` when non-null.
void window_integrals(const uint8_t* window, int h, int w, int32_t* sum, int32_t* tilted);

// values[n * num_features + f] = feature f on window n (windows: n x h x w uint8, C order).
// normalize: divide by norm_factor (0 when the factor is 0), exactly as opencv_traincascade
// computes training values. Parallel over windows.
void compute_features(const uint8_t* windows, int64_t num_windows, int h, int w,
                      const Feature* features, int64_t num_features, bool normalize,
                      float* values);

}  // namespace haar
}  // namespace pydetect
