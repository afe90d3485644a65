#include "integral/integral.h"

#include <algorithm>
#include <vector>

namespace pydetect {

template <class In, class S, class Q>
void integral_image(const In* src, int64_t h, int64_t w, int64_t src_stride, S* sum, Q* sqsum,
                    S* tilted, int64_t out_stride) {
  using SA = integral_acc_t<S>;
  using QA = integral_acc_t<Q>;
  // Row 0 of every table is zero.
  if (sum) std::fill(sum, sum + w + 1, S(0));
  if (sqsum) std::fill(sqsum, sqsum + w + 1, Q(0));
  if (tilted) std::fill(tilted, tilted + w + 1, S(0));
  std::vector<SA> prefix, p_prev, p_next, q_prev, q_next;
  if (tilted) {
    prefix.assign(w + 1, SA(0));
    p_prev.assign(w + 2, SA(0));
    p_next.assign(w + 2, SA(0));
    q_prev.assign(w + 1, SA(0));
    q_next.assign(w + 1, SA(0));
  }
  for (int64_t y = 0; y < h; ++y) {
    const In* row = src + y * src_stride;
    if (sum) {
      const S* up = sum + y * out_stride;
      S* out = sum + (y + 1) * out_stride;
      out[0] = S(0);
      SA s = SA(0);
      for (int64_t x = 0; x < w; ++x) {
        s += static_cast<SA>(row[x]);
        out[x + 1] = static_cast<S>(SA(up[x + 1]) + s);
      }
    }
    if (sqsum) {
      const Q* up = sqsum + y * out_stride;
      Q* out = sqsum + (y + 1) * out_stride;
      out[0] = Q(0);
      QA s = QA(0);
      for (int64_t x = 0; x < w; ++x) {
        const QA v = static_cast<QA>(row[x]);
        s += v * v;
        out[x + 1] = static_cast<Q>(QA(up[x + 1]) + s);
      }
    }
    if (tilted) {
      // prefix[k] = S_y(k); P and Q carried from the previous row (see integral.h).
      SA s = SA(0);
      prefix[0] = SA(0);
      for (int64_t x = 0; x < w; ++x) {
        s += static_cast<SA>(row[x]);
        prefix[x + 1] = s;
      }
      S* out = tilted + (y + 1) * out_stride;
      for (int64_t X = 0; X <= w; ++X) {
        p_next[X] = p_prev[X + 1] + prefix[X];
        q_next[X] = X == 0 ? SA(0) : q_prev[X - 1] + prefix[X - 1];
        out[X] = static_cast<S>(p_next[X] - q_next[X]);
      }
      p_next[w + 1] = p_prev[w + 1] + prefix[w];
      std::swap(p_prev, p_next);
      std::swap(q_prev, q_next);
    }
  }
}

template void integral_image<uint8_t, int32_t, double>(const uint8_t*, int64_t, int64_t, int64_t,
                                                        int32_t*, double*, int32_t*, int64_t);
template void integral_image<uint8_t, double, double>(const uint8_t*, int64_t, int64_t, int64_t,
                                                       double*, double*, double*, int64_t);
template void integral_image<uint8_t, int32_t, int32_t>(const uint8_t*, int64_t, int64_t, int64_t,
                                                         int32_t*, int32_t*, int32_t*, int64_t);
template void integral_image<uint8_t, int32_t, uint32_t>(const uint8_t*, int64_t, int64_t,
                                                          int64_t, int32_t*, uint32_t*, int32_t*,
                                                          int64_t);
template void integral_image<float, double, double>(const float*, int64_t, int64_t, int64_t,
                                                     double*, double*, double*, int64_t);
template void integral_image<double, double, double>(const double*, int64_t, int64_t, int64_t,
                                                      double*, double*, double*, int64_t);

}  // namespace pydetect
