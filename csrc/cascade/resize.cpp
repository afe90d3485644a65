#include "cascade/resize.h"

#include <algorithm>
#include <cmath>

namespace pydetect {
namespace cascade {
namespace {

// One axis: destination d reads sources ofs[d] and ofs[d] + 1 with weights w0[d], w1[d]
// (w0 + w1 = 256). Border indices get (256, 0) on source 0 or the last source, so every
// index is one formula (the weight 0 term reads a defined neighbour: see the callers).
struct Axis {
  std::vector<int32_t> ofs;
  std::vector<uint32_t> w0, w1;
};

Axis linear_exact_axis(int src, int dst) {
  Axis a;
  a.ofs.resize(dst);
  a.w0.resize(dst);
  a.w1.resize(dst);
  // cv::resize: inv_scale = dsize / ssize, then interpolationLinear's scale = 1 / inv_scale
  // (the build has -ffp-contract=off: each operation rounds as OpenCV's softdouble does).
  const double inv_scale = static_cast<double>(dst) / static_cast<double>(src);
  const double scale = 1.0 / inv_scale;
  for (int d = 0; d < dst; ++d) {
    const double f = scale * (static_cast<double>(d) + 0.5) - 0.5;
    const double fl = std::floor(f);
    const int i = static_cast<int>(fl);
    if (i >= 0 && src > 1 && i < src - 1) {
      const uint32_t c = static_cast<uint32_t>(std::nearbyint((f - fl) * 256.0));  // half to even
      a.ofs[d] = i, a.w0[d] = 256 - c, a.w1[d] = c;
    } else {
      a.ofs[d] = i < 0 || src == 1 ? 0 : src - 1, a.w0[d] = 256, a.w1[d] = 0;
    }
  }
  return a;
}

}  // namespace

void resize_linear_exact(const uint8_t* src, int sw, int sh, int64_t src_stride, uint8_t* dst, int dw, int dh,
                         int64_t dst_stride, uint16_t* row) {
  const Axis ax = linear_exact_axis(sw, dw), ay = linear_exact_axis(sh, dh);
  row[sw] = 0;  // read with weight 0 by the last column's (256, 0)
  for (int dy = 0; dy < dh; ++dy) {
    const uint8_t* a = src + ay.ofs[dy] * src_stride;
    // a weight-0 second row is not read (it may lie past the image)
    const uint8_t* b = ay.w1[dy] != 0 ? a + src_stride : a;
    const uint16_t w0 = static_cast<uint16_t>(ay.w0[dy]), w1 = static_cast<uint16_t>(ay.w1[dy]);
    // vertical: exact 16-bit values (<= 255 * 256); vectorised by the compiler
    for (int x = 0; x < sw; ++x)
      row[x] = static_cast<uint16_t>(w0 * a[x] + w1 * b[x]);
    uint8_t* out = dst + dy * dst_stride;
    for (int dx = 0; dx < dw; ++dx) {
      const int32_t o = ax.ofs[dx];
      const uint32_t v = ax.w0[dx] * row[o] + ax.w1[dx] * row[o + 1];  // <= 255 * 2^16
      out[dx] = static_cast<uint8_t>((v + (1u << 15)) >> 16);
    }
  }
}

}  // namespace cascade
}  // namespace pydetect
