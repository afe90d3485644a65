// Haar-like feature bank: enumeration (opencv_traincascade's BASIC / CORE / ALL sets and
// scikit-image's five types) and evaluation over many equally sized sample windows.
//
// A feature is up to three rectangles with weights, the representation OpenCV's cascade
// files use: value = sum_i weight_i * rectsum_i. Upright rectangles are (x, y, w, h) in
// window pixels; a tilted one (Lienhart & Maydt, ICIP 2002) is OpenCV's 45-degree rectangle
// whose top corner is at (x, y), read from the tilted integral image.
#pragma once

#include <cstdint>
#include <vector>

#include "common/host_device.h"

namespace pydetect {
namespace haar {

constexpr int kMaxRects = 3;
// Bounds of the enumerations (ValueError beyond): a window of at most 2^14 pixels (128 x 128)
// and a bank of at most 2^24 features (about 1 GiB as Python arrays; 64 x 64 "all" has 13M).
constexpr int64_t kMaxWindowArea = int64_t(1) << 14;
constexpr int64_t kMaxFeatures = int64_t(1) << 24;

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

// scikit-image's five types, in its FEATURE_TYPE order: bit i of enumerate_skimage's
// type_mask is type i.
enum class SkimageType : int { Type2X = 0, Type2Y = 1, Type3X = 2, Type3Y = 3, Type4 = 4 };

// Features in opencv_traincascade's order (CvHaarEvaluator::generateFeatures): loops
// x, y, dx, dy; per position the types x2, y2, x3, y3, [x4, y4], x2y2, [point], [tilted...].
// 24x24: 162,336 (BASIC), 261,600 (ALL).
// Throws std::invalid_argument beyond kMaxWindowArea / kMaxFeatures.
std::vector<Feature> enumerate_opencv(int width, int height, OpenCVMode mode);

// scikit-image's haar_like_feature_coord order: for each requested type (bit i of
// type_mask = FEATURE_TYPE[i] of 'type-2-x', 'type-2-y', 'type-3-x', 'type-3-y', 'type-4'),
// loops y, x, dy, dx. Weights reproduce skimage's values exactly (e.g. type-2-x =
// right - left, type-4 = -TL + TR - BR + BL).
std::vector<Feature> enumerate_skimage(int width, int height, unsigned type_mask);

// Throws std::invalid_argument when a rectangle leaves a width x height window.
void check_features(const Feature* features, int64_t num_features, int width, int height);

// values[n * num_features + f] = feature f on window n (windows: n x h x w uint8, C order).
// Values are cascade::haar_value over the window's integral_image tables. normalize:
// multiplied by cascade::haar_vnf of the rectangle (1, 1, w - 2, h - 2), i.e. bit-identical
// to the value the detector compares with a node threshold on that window at scale 1
// (flat windows, which the detector rejects, are not rejected here). Parallel over windows.
void compute_features(const uint8_t* windows, int64_t num_windows, int h, int w,
                      const Feature* features, int64_t num_features, bool normalize,
                      float* values);

}  // namespace haar
}  // namespace pydetect
