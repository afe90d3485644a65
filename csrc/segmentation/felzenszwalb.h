// Graph-based image segmentation (Felzenszwalb & Huttenlocher, IJCV 2004).
#pragma once

#include <cstdint>

namespace pydetect {

// Separable Gaussian smoothing of an interleaved (H, W, C) float image, per channel, with
// scipy.ndimage's conventions: kernel radius int(4 * sigma + 0.5), "reflect" border
// (d c b a | a b c d | d c b a). sigma <= 0 copies the input.
void gaussian_smooth(const float* in, int64_t height, int64_t width, int64_t channels, double sigma,
                     float* out);

// Segments an interleaved (H, W, C) float image whose values are on the [0, 1] scale.
// Steps: Gaussian smoothing (sigma); an 8-neighbour grid graph weighted by the Euclidean
// colour distance; edges visited by increasing weight (equal weights: right, down,
// down-right, up-right edges, each in raster order of their first pixel); two components
// merge when the weight is < min(Int(C_i) + tau(C_i)) with tau(C) = (scale / 255) / |C|
// (scale is skimage's `scale`, the paper's k for 0..255 intensities); then, in the same
// edge order, components smaller than min_size are merged with their neighbour.
// Writes labels 0..n-1 numbered by first appearance in raster order; returns n.
int32_t felzenszwalb(const float* image, int64_t height, int64_t width, int64_t channels, double scale,
                     double sigma, int64_t min_size, int32_t* labels);

}  // namespace pydetect
