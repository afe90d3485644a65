// Separable filtering shared by Felzenszwalb's smoothing and selective search's texture
// derivatives: scipy.ndimage's "reflect" border, Gaussian taps truncated at 4 sigma, and
// float accumulation in tap order (the order the Felzenszwalb reference mirrors exactly).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/check.h"

namespace pydetect {

// scipy.ndimage "reflect": half-sample symmetric, periodic with period 2n.
inline int64_t reflect_index(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// Largest Gaussian sigma: a radius of 4000 pixels, wider than any image these filters are
// meant for, and 8001 taps per pixel and pass. Without a bound a huge sigma overflows the
// tap count (or allocates it). pydetect.ops.felzenszwalb refuses larger values.
constexpr double kMaxGaussianSigma = 1000.0;

// Normalised Gaussian taps G(t), t = -r..r with r = int(4 sigma + 0.5), summed in order.
inline std::vector<double> gaussian_taps(double sigma) {
  PD_CHECK(sigma > 0.0 && sigma <= kMaxGaussianSigma, "sigma must be in (0, ", kMaxGaussianSigma, "], got ", sigma);
  const int64_t r = static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<double> k(static_cast<size_t>(2 * r + 1));
  double sum = 0.0;
  for (int64_t t = -r; t <= r; ++t) sum += (k[static_cast<size_t>(t + r)] = std::exp(-0.5 * double(t * t) / (sigma * sigma)));
  for (double& v : k) v /= sum;
  return k;
}

// Correlates every row of an interleaved (h, w, c) image with kernel k (odd length).
inline void filter_rows(const float* in, int64_t h, int64_t w, int64_t c, const std::vector<float>& k,
                        float* out) {
  const int64_t r = static_cast<int64_t>(k.size() / 2), wc = w * c;
  std::vector<float> pad(static_cast<size_t>((w + 2 * r) * c));
  for (int64_t y = 0; y < h; ++y) {
    const float* row = in + y * wc;
    for (int64_t x = -r; x < w + r; ++x)
      std::copy(row + reflect_index(x, w) * c, row + reflect_index(x, w) * c + c, pad.begin() + (x + r) * c);
    float* orow = out + y * wc;
    std::fill(orow, orow + wc, 0.f);
    for (int64_t t = 0; t <= 2 * r; ++t) {
      const float kt = k[static_cast<size_t>(t)];
      const float* src = pad.data() + t * c;
      for (int64_t i = 0; i < wc; ++i) orow[i] += kt * src[i];
    }
  }
}

// Correlates every column of an interleaved (h, w, c) image with kernel k (odd length).
inline void filter_cols(const float* in, int64_t h, int64_t w, int64_t c, const std::vector<float>& k,
                        float* out) {
  const int64_t r = static_cast<int64_t>(k.size() / 2), wc = w * c;
  for (int64_t y = 0; y < h; ++y) {
    float* orow = out + y * wc;
    std::fill(orow, orow + wc, 0.f);
    for (int64_t t = -r; t <= r; ++t) {
      const float kt = k[static_cast<size_t>(t + r)];
      const float* row = in + reflect_index(y + t, h) * wc;
      for (int64_t i = 0; i < wc; ++i) orow[i] += kt * row[i];
    }
  }
}

}  // namespace pydetect
