#include "boxes/box_ops.h"

#include <algorithm>
#include <vector>

#include "boxes/box_math.h"
#include "common/check.h"
#include "common/parallel.h"

namespace pydetect {

template <class T>
void box_area(const T* boxes, int64_t n, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const T* b = boxes + 4 * i;
    out[i] = box_area(b[0], b[1], b[2], b[3]);
  }
}

template <class T>
void box_iou(const T* a, int64_t n, const T* b, int64_t m, T* out) {
  if (n == 0 || m == 0) return;
  // b as structure-of-arrays so the inner loop over j is a straight vectorisable pass.
  std::vector<T> bx1(m), by1(m), bx2(m), by2(m), b_area(m);
  for (int64_t j = 0; j < m; ++j) {
    bx1[j] = b[4 * j];
    by1[j] = b[4 * j + 1];
    bx2[j] = b[4 * j + 2];
    by2[j] = b[4 * j + 3];
    b_area[j] = box_area(bx1[j], by1[j], bx2[j], by2[j]);
  }
  // About 64k pairs per chunk: large enough to amortise a thread hand-off.
  const int64_t grain = std::max<int64_t>(1, 65536 / m);
  parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T ax1 = a[4 * i], ay1 = a[4 * i + 1], ax2 = a[4 * i + 2], ay2 = a[4 * i + 3];
      const T a_area = box_area(ax1, ay1, ax2, ay2);
      T* row = out + i * m;
      for (int64_t j = 0; j < m; ++j) {
        const T inter = intersection_area(ax1, ay1, ax2, ay2, bx1[j], by1[j], bx2[j], by2[j]);
        row[j] = iou_from_areas(inter, a_area, b_area[j]);
      }
    }
  });
}

namespace {

template <class T>
void to_xyxy(const T* in, BoxFormat from, T* out) {
  switch (from) {
    case BoxFormat::XYXY:
      out[0] = in[0], out[1] = in[1], out[2] = in[2], out[3] = in[3];
      break;
    case BoxFormat::XYWH:
      out[0] = in[0], out[1] = in[1], out[2] = in[0] + in[2], out[3] = in[1] + in[3];
      break;
    case BoxFormat::CXCYWH:
      out[0] = in[0] - T(0.5) * in[2];
      out[1] = in[1] - T(0.5) * in[3];
      out[2] = in[0] + T(0.5) * in[2];
      out[3] = in[1] + T(0.5) * in[3];
      break;
  }
}

template <class T>
void from_xyxy(const T* in, BoxFormat to, T* out) {
  switch (to) {
    case BoxFormat::XYXY:
      out[0] = in[0], out[1] = in[1], out[2] = in[2], out[3] = in[3];
      break;
    case BoxFormat::XYWH:
      out[0] = in[0], out[1] = in[1], out[2] = in[2] - in[0], out[3] = in[3] - in[1];
      break;
    case BoxFormat::CXCYWH:
      out[0] = (in[0] + in[2]) / T(2);
      out[1] = (in[1] + in[3]) / T(2);
      out[2] = in[2] - in[0];
      out[3] = in[3] - in[1];
      break;
  }
}

}  // namespace

template <class T>
void box_convert(const T* in, int64_t n, BoxFormat from, BoxFormat to, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    T xyxy[4];
    to_xyxy(in + 4 * i, from, xyxy);
    from_xyxy(xyxy, to, out + 4 * i);
  }
}

template <class T>
void clip_boxes(const T* in, int64_t n, T height, T width, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const T* b = in + 4 * i;
    T* o = out + 4 * i;
    o[0] = std::min(std::max(b[0], T(0)), width);
    o[1] = std::min(std::max(b[1], T(0)), height);
    o[2] = std::min(std::max(b[2], T(0)), width);
    o[3] = std::min(std::max(b[3], T(0)), height);
  }
}

template <class T>
std::vector<int64_t> remove_small_boxes(const T* boxes, int64_t n, T min_size) {
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const T* b = boxes + 4 * i;
    if (b[2] - b[0] >= min_size && b[3] - b[1] >= min_size) keep.push_back(i);
  }
  return keep;
}

#define PD_INSTANTIATE(T)                                                              \
  template void box_area<T>(const T*, int64_t, T*);                                    \
  template void box_iou<T>(const T*, int64_t, const T*, int64_t, T*);                  \
  template void box_convert<T>(const T*, int64_t, BoxFormat, BoxFormat, T*);           \
  template void clip_boxes<T>(const T*, int64_t, T, T, T*);                            \
  template std::vector<int64_t> remove_small_boxes<T>(const T*, int64_t, T);
PD_INSTANTIATE(float)
PD_INSTANTIATE(double)
#undef PD_INSTANTIATE

}  // namespace pydetect
