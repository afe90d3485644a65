// Selective search: hierarchical grouping of an over-segmentation into object proposals
// (Uijlings, van de Sande, Gevers & Smeulders, "Selective Search for Object Recognition",
// IJCV 2013).
#pragma once

#include <cstdint>
#include <vector>

#include "selective_search/color.h"

namespace pydetect {

constexpr int kColorBins = 25;    // per channel (paper §3.2)
constexpr int kOrientations = 8;  // Gaussian-derivative orientations per channel
constexpr int kTextureBins = 10;  // per orientation and channel
constexpr double kTextureSigma = 1.0;

// Similarity terms, combined as a bit mask: the paper's strategies are
// C|T|S|F, T|S|F, F and S.
enum SimilarityTerm : int { kColour = 1, kTexture = 2, kSize = 4, kFill = 8 };

// (n_pixels, 3) RGB -> (n_pixels, color_space_channels(cs)) floats on [0, 1].
void convert_color(const uint8_t* rgb, int64_t n_pixels, ColorSpace cs, float* out);

// Histogram bin of every pixel of a converted (H, W, C) image: colour bins (H*W*C, 0..24,
// floor(25 * value)) and texture bins (H*W*C*8, 0..9). The texture response of orientation
// o = 0..7 is the rectified directional Gaussian derivative (sigma = 1, radius 4, "reflect"
// border) max(0, gx cos(o pi/4) + gy sin(o pi/4)), binned in 10 equal bins over
// [0, largest gradient magnitude of that channel in the image].
struct PixelBins {
  int channels = 0;
  std::vector<uint8_t> color, texture;
};
PixelBins compute_pixel_bins(const float* image, int64_t height, int64_t width, int channels);

// The regions of a segmentation: sizes, inclusive boxes (x1, y1, x2, y2), L1-normalised
// colour (n, 25C) and texture (n, 80C) histograms, and 8-neighbour adjacency.
struct RegionSet {
  int64_t n = 0, image_area = 0;
  int channels = 0;
  std::vector<int64_t> size;
  std::vector<int32_t> box;
  std::vector<float> color, texture;
  std::vector<std::vector<int32_t>> neighbours;
};
RegionSet build_regions(const PixelBins& bins, const int32_t* labels, int64_t n_labels, int64_t height,
                        int64_t width);

// Greedy grouping: repeatedly merges the most similar pair of neighbouring regions (equal
// similarity: lowest region ids) until none is left. Merged region number n + s (step s)
// gets the size-weighted mean of its parts' histograms. merges holds (a, b) per step,
// boxes the inclusive boxes of all 2n - 1 regions (fewer if the graph is disconnected).
struct Hierarchy {
  std::vector<int32_t> merges, boxes;
  std::vector<float> similarity;
};
Hierarchy group_regions(const RegionSet& regions, int terms);

// The whole method. Images whose longer side exceeds max_size are first shrunk (area
// averaging) to that size and boxes mapped back. For each colour space x k (Felzenszwalb
// segmentation with sigma and min component size min_size, or k when min_size <= 0) x
// similarity strategy, a hierarchy is built (in parallel); every region gets the priority
// (position in its hierarchy, 1 = the last merge) x U(0, 1), the random number drawn from a
// generator seeded by (seed, strategy index). Boxes are pooled by increasing priority, exact
// duplicates dropped (first kept), and at most max_boxes (< 0: all) returned as float xyxy
// (x2 - x1 = width) in the input image's pixels.
std::vector<float> selective_search(const uint8_t* rgb, int64_t height, int64_t width,
                                    const std::vector<ColorSpace>& spaces, const std::vector<double>& ks,
                                    const std::vector<int>& strategies, int64_t min_size, double sigma,
                                    uint64_t seed, int64_t max_size, int64_t max_boxes);

}  // namespace pydetect
