// OpenCV's bit-exact bilinear resize (cv::resize with INTER_LINEAR_EXACT) of a one-channel
// uint8 image, the resize detectMultiScale shrinks its pyramid levels with, so that the
// cascade can build its levels in its own parallel pass and still scan OpenCV's pixels.
//
// OpenCV (imgproc/src/resize.cpp, resize_bitExact with interpolationLinear): for a
// destination index d along an axis of scale s = src / dst (softdouble = IEEE double
// arithmetic), f = s * (d + 0.5) - 0.5, i = floor(f); the weights of source i and i + 1 are
// (256 - c, c) with c = round_half_even((f - i) * 256), 8-bit fixed point; an index left of
// the image (i < 0) takes source 0, one at or past the last source takes the last source
// (weights (256, 0)). Rows are interpolated horizontally to 16-bit values h, then
// vertically: out = (h0 * w0 + h1 * w1 + 2^15) >> 16 (border rows: (h + 2^7) >> 8, the same
// value). Every term before that final rounding is an exact integer, sum over the 2 x 2
// neighbours of wx * wy * pixel, so the vertical pass may run first (contiguous, vector
// code) and the horizontal one second: the result is bit-identical. (OpenCV's INTER_AREA
// shortcut for an exact factor 2 averages 2 x 2 pixels with rounding: the same value again.)
#pragma once

#include <cstdint>
#include <vector>

namespace pydetect {
namespace cascade {

// src (sh x sw, rows src_stride bytes apart) resized to dst (dh x dw, rows dst_stride
// apart). `row` is scratch of at least sw + 1 uint16. All sizes >= 1.
void resize_linear_exact(const uint8_t* src, int sw, int sh, int64_t src_stride, uint8_t* dst, int dw, int dh,
                         int64_t dst_stride, uint16_t* row);

}  // namespace cascade
}  // namespace pydetect
