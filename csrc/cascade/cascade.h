// Viola-Jones cascades of boosted trees over Haar or multi-block LBP features, evaluated
// exactly as OpenCV's CascadeClassifier (objdetect/src/cascadedetect.cpp) does, so that the
// detections are identical.
//
// The model is flat: stages -> weak trees -> nodes (left, right, feature, threshold or an
// 8 x 32-bit category subset for LBP) and leaves; a child index <= 0 is the leaf -index.
// Features are "compiled" once per image into int32 offsets, relative to a window's origin,
// into one buffer holding the integral tables of every pyramid level with a common row
// stride, so one compiled feature serves every level (OpenCV does the same).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "boosting/tree.h"
#include "common/host_device.h"
#include "integral/integral.h"

namespace pydetect {
namespace cascade {

enum FeatureType { kHaar = 0, kLbp = 1 };

// Integral-table buffer kept between calls (allocating and faulting in tens of MB per
// image costs as much as scanning it). One caller at a time uses it; a concurrent
// caller allocates its own.
struct Workspace {
  std::mutex mutex;
  std::unique_ptr<int32_t[]> data;
  size_t size = 0;
  std::unique_ptr<uint8_t[]> pixels;  // the levels detect_candidates resizes itself
  size_t pixels_size = 0;
};

// Everything the file holds, as flat arrays (the bindings copy them in).
struct Model {
  int feature_type = kHaar;
  int window_width = 0, window_height = 0;
  std::vector<float> stage_threshold;  // as written in the file
  std::vector<int32_t> stage_num_weak;  // weak trees per stage
  std::vector<int32_t> weak_num_nodes;  // internal nodes per tree (leaves = nodes + 1)
  std::vector<int32_t> node_left, node_right, node_feature;
  std::vector<float> node_threshold;   // Haar
  std::vector<int32_t> node_subset;    // LBP: 8 words per node (bit c set -> left)
  std::vector<float> leaves;
  // Features: Haar has up to 3 weighted rectangles (x, y, w, h) per feature, a tilted
  // flag; LBP has one block rectangle (the 3 x 3 grid is 3w x 3h).
  std::vector<int32_t> rects;    // (F, 3, 4)
  std::vector<float> weights;    // (F, 3)
  std::vector<uint8_t> tilted;   // (F,)
  std::shared_ptr<Workspace> workspace = std::make_shared<Workspace>();

  int num_features() const { return static_cast<int>(tilted.size()); }
  int max_nodes_per_tree() const;
  bool has_tilted() const;
  // Throws std::invalid_argument when indices or rectangles are out of range.
  void validate() const;
};

// One pyramid level: a grey image shrunk by 1 / scale. Either the caller resized it
// (source_width == 0: `pixels` is the level), or `pixels` is the image it is shrunk from,
// source_width x source_height with rows `stride` bytes apart, and detect_candidates
// resizes it (resize_linear_exact, OpenCV's INTER_LINEAR_EXACT) in its parallel pass.
struct Level {
  const uint8_t* pixels;
  int width, height;
  int64_t stride;
  float scale;
  int source_width = 0, source_height = 0;
};

// A window that passed every stage, in original-image pixels, with OpenCV's reject level
// (number of stages) and the last stage's sum. A raw window also says where the scan found
// it: the index of its pyramid level and its origin in that level's pixels (training crops
// hard negatives there); a grouped rectangle has -1 there.
struct Candidate {
  int x, y, width, height;
  int level;
  double weight;
  int source_level = -1, source_x = -1, source_y = -1;
};

// detectMultiScaleNoGrouping on prepared levels. Candidates come in (level, y, x) order.
// `positions`, when given, receives the number of window positions the scan visits (its
// step rule and rows; a position skipped after a first-stage rejection counts too): the
// denominator of training's negative acceptance ratio.
std::vector<Candidate> detect_candidates(const Model& model, const std::vector<Level>& levels,
                                         int64_t* positions = nullptr);

// Whether each of `count` windows (window_height x window_width uint8, rows of `stride`
// bytes, windows `window_stride` bytes apart) passes every stage: the scan above run on
// each window as a level of its own, so training (which asks this of its positives and
// negatives) and detection evaluate a window with the same code and agree exactly.
std::vector<uint8_t> accepts_windows(const Model& model, const uint8_t* windows, int64_t count,
                                     int64_t stride, int64_t window_stride);

// Whether each of `count` width x height uint8 windows (rows `stride` bytes apart, windows
// `window_stride` bytes apart) is flat by the rule above (haar_window_rejected): the windows
// no Haar cascade accepts, which training therefore never uses.
std::vector<uint8_t> flat_windows(const uint8_t* windows, int64_t count, int width, int height, int64_t stride,
                                  int64_t window_stride);

// groupRectangles(eps) with OpenCV's partition and averaging; `neighbours[i]` gets the
// cluster size, `levels` / `weights` the cluster's best reject level and weight.
// group_threshold <= 0 returns the candidates unchanged with neighbours 1.
void group_rectangles(std::vector<Candidate>* rects, std::vector<int>* neighbours,
                      int group_threshold, double eps);

// Keeps the parts of rectangles inside [0, width) x [0, height) with a positive area.
void clip_candidates(std::vector<Candidate>* rects, std::vector<int>* neighbours, int width,
                     int height);

// ---- per-window math, shared by every loop ----

// OpenCV's cvRound for float / double under the default rounding mode: half to even.
HOST_DEVICE int round_half_even(double v) {
  return static_cast<int>(__builtin_nearbyint(v));
}
HOST_DEVICE int round_half_even(float v) {
  return static_cast<int>(__builtin_nearbyintf(v));
}

// The value of a Haar feature, written once for every loop that evaluates one (the feature
// bank, the scan's stumps and tree nodes, and its four-window vector path, where V is a
// vector of four floats): sum_k weight[k] * rect(k), in float, in OpenCV's order of
// operations, the third rectangle only when its weight is nonzero. rect(k) returns the k-th
// rectangle's sum converted to V.
template <class V, class Rect>
HOST_DEVICE V weighted_rects(const float* weight, const Rect& rect) {
  V v = weight[0] * rect(0) + weight[1] * rect(1);
  if (weight[2] != 0.0f) v += weight[2] * rect(2);
  return v;
}

// A Haar feature compiled to corner offsets.
struct CompiledHaar {
  RectOffsets rect[3];
  float weight[3];
};

HOST_DEVICE float haar_value(const CompiledHaar& f, const int32_t* window) {
  return weighted_rects<float>(f.weight, [&](int k) { return static_cast<float>(rect_sum(window, f.rect[k])); });
}

// Variance normalisation of a Haar window (OpenCV's HaarEvaluator::setWindow), over the
// rectangle (1, 1, w - 2, h - 2) of `area` pixels with pixel sum `sum` and sum of squares
// `sqsum`: vnf = float(1 / sqrt(area * sqsum - sum^2)), i.e. 1 / (area * stddev), or 0 when
// that variance term is not positive. A node compares haar_value(...) * vnf (in float)
// with its threshold; training values are normalised by the same product.
HOST_DEVICE float haar_vnf(double area, double sum, double sqsum) {
  const double v = area * sqsum - sum * sum;
  return v > 0. ? static_cast<float>(1. / std::sqrt(v)) : 0.f;
}

// The detector's flat-window rule: a window with vnf == 0 or area * vnf >= 0.1 (pixel
// standard deviation <= 10) is rejected before the first stage.
HOST_DEVICE bool haar_window_rejected(double area, float vnf) {
  return !(vnf != 0.f && area * vnf < 1e-1);
}

// haar_vnf of the window whose sum-table origin is p (the squared-sum table lies sq_offset
// elements after it, in uint32 wrap-around), over the rectangle `norm` of `area` pixels.
HOST_DEVICE float haar_window_vnf(const int32_t* p, int64_t sq_offset, const RectOffsets& norm, double area) {
  const int32_t s = rect_sum(p, norm);
  const uint32_t sq = static_cast<uint32_t>(rect_sum(p + sq_offset, norm));
  return haar_vnf(area, double(s), double(sq));
}

// A multi-block LBP feature: the 4 x 4 grid of corners of its 3 x 3 blocks.
struct CompiledLbp {
  int32_t corner[16];
};

// The nine block sums of a feature from the values t[0..15] of its 4 x 4 corner grid (row
// major): the centre block first, then the outer blocks in the code's bit order, clockwise
// from the top-left one, most significant bit first (OpenCV's order). Written once for the
// one-window code below and the scan's four-window code (U = uint32 or a vector of uint32
// lanes: wrap-around sums, exact whenever the true sum fits, like four_corner_sum). Each
// block is the difference of two row differences, (t[i+1][j+1] - t[i+1][j]) - (t[i][j+1] -
// t[i][j]): the same value modulo 2^32 as four_corner_sum, and each row difference serves
// two blocks (21 operations instead of 27).
template <class U>
HOST_DEVICE void lbp_block_sums(const U* t, U* block) {
  U d[4][3];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) d[i][j] = t[4 * i + j + 1] - t[4 * i + j];
  constexpr int kRow[9] = {1, 0, 0, 0, 1, 2, 2, 2, 1}, kCol[9] = {1, 0, 1, 2, 2, 2, 1, 0, 0};
  for (int b = 0; b < 9; ++b) block[b] = d[kRow[b] + 1][kCol[b]] - d[kRow[b]][kCol[b]];
}

// 8-bit code: each outer block compared (>=, as int32) with the centre block (bit 7 - i for
// outer block i).
HOST_DEVICE int lbp_code(const CompiledLbp& f, const int32_t* p) {
  uint32_t t[16], block[9];
  for (int k = 0; k < 16; ++k) t[k] = static_cast<uint32_t>(p[f.corner[k]]);
  lbp_block_sums(t, block);
  const int32_t c = static_cast<int32_t>(block[0]);
  int code = 0;
  for (int i = 0; i < 8; ++i) code |= static_cast<int32_t>(block[1 + i]) >= c ? (128 >> i) : 0;
  return code;
}

// Whether an LBP node sends code c left (1) or right (0): bit c of its 256-bit category subset,
// held as 8 int32 words; `word` is subset[c >> 5].
HOST_DEVICE int32_t lbp_subset_bit(int32_t word, int c) {
  return (word >> (c & 31)) & 1;
}

}  // namespace cascade
}  // namespace pydetect
