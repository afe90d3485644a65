// Integral images in OpenCV's layout: for an h x w image, (h + 1) x (w + 1) tables whose
// first row and column are zero.
//
//   sum(X, Y)    = sum_{y < Y, x < X} I(x, y)
//   sqsum(X, Y)  = sum_{y < Y, x < X} I(x, y)^2
//   tilted(X, Y) = sum_{y < Y, |x - X + 1| <= Y - y - 1} I(x, y)     (Lienhart & Maydt 2002)
//
// The tilted table sums the triangle that opens upwards from pixel (X - 1, Y - 1) at 45
// degrees. With S_y(k) = sum_{x < k} I(x, y) (the prefix sum of row y, clamped to [0, w]),
//
//   tilted(X, Y) = sum_{y < Y} S_y(X + Y - 1 - y) - S_y(X - Y + y)  =  P(X, Y) - Q(X, Y)
//   P(X, Y) = P(X + 1, Y - 1) + S_{Y-1}(min(X, w)),   P(X, Y) = total of rows < Y for X >= w
//   Q(X, Y) = Q(X - 1, Y - 1) + S_{Y-1}(X - 1),       Q(0, Y) = 0
//
// so each row of the tilted table costs O(w) with two O(w) carried rows (P, Q): the order
// used for float images. uint8 images, whose tables are integers (exact in any order), use
// Lienhart & Maydt's recurrence instead, which has no dependence along a row:
//
//   tilted(X, Y) = tilted(X - 1, Y - 1) + tilted(X + 1, Y - 1) - tilted(X, Y - 2)
//                  + I(X - 1, Y - 1) + I(X - 1, Y - 2)
//
// and build the sum tables with SIMD prefix sums (AVX2 chosen at run time, else SSE2; the
// plain loops when PYDETECT_SIMD=scalar, see common/simd.h).
// The tilted table's first column is not zero (tilted(0, Y) = tilted(1, Y - 1)).
//
// Integer tables are accumulated modulo 2^bits (unsigned arithmetic, no undefined
// overflow), exactly like OpenCV's int32 tables: a rectangle sum read back from a wrapped
// table is still exact whenever the true value fits in the type.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/host_device.h"

namespace pydetect {

// Accumulator of an integral table of type T: unsigned of the same width for integers.
template <class T, bool = std::is_integral<T>::value>
struct IntegralAcc {
  using type = T;
};
template <class T>
struct IntegralAcc<T, true> {
  using type = typename std::make_unsigned<T>::type;
};
template <class T>
using integral_acc_t = typename IntegralAcc<T>::type;

// Offsets (in elements, relative to a window origin in a table of row stride `step`) of
// the four corners of the upright rectangle (x, y, w, h): sum = t[o0] - t[o1] - t[o2] + t[o3].
struct RectOffsets {
  int64_t o0, o1, o2, o3;
};

HOST_DEVICE RectOffsets upright_rect_offsets(int x, int y, int w, int h, int64_t step) {
  return {x + step * y, (x + w) + step * y, x + step * (y + h), (x + w) + step * (y + h)};
}

// Corners of the 45-degree rectangle whose top corner is pixel (x, y), extending w pixels
// down-right and h pixels down-left (OpenCV / Lienhart tilted Haar rectangles), in the
// tilted table.
HOST_DEVICE RectOffsets tilted_rect_offsets(int x, int y, int w, int h, int64_t step) {
  return {x + step * y, (x - h) + step * (y + h), (x + w) + step * (y + w),
          (x + w - h) + step * (y + w + h)};
}

// The four-corner rule of an integral table, written once for every reader: the sum of a
// rectangle is t[o0] - t[o1] - t[o2] + t[o3] over its corner values. U is the accumulator
// (unsigned for integer tables, so that wrapped tables still give exact sums) or a vector
// of them (the cascade scan evaluates four windows at once).
template <class U>
HOST_DEVICE U four_corner_sum(U t0, U t1, U t2, U t3) {
  return t0 - t1 - t2 + t3;
}

// Sum of a rectangle from its corner offsets, with wrap-around arithmetic for integers.
template <class T>
HOST_DEVICE T rect_sum(const T* table, const RectOffsets& o) {
  using A = integral_acc_t<T>;
  return static_cast<T>(four_corner_sum(A(table[o.o0]), A(table[o.o1]), A(table[o.o2]), A(table[o.o3])));
}

// The same for corner offsets held as four int32 (the cascade scan's compact layout).
template <class T>
HOST_DEVICE T rect_sum(const T* table, const int32_t* o) {
  using A = integral_acc_t<T>;
  return static_cast<T>(four_corner_sum(A(table[o[0]]), A(table[o[1]]), A(table[o[2]]), A(table[o[3]])));
}

// Computes any of the three tables of an h x w image `src` whose rows are `src_stride`
// elements apart. Each output has (h + 1) rows of `out_stride` >= w + 1 elements; a null
// pointer skips that table. Usable on any raw buffer (a window of a larger image, a pyramid
// level). Supported types: In uint8_t with S int32_t / int64_t / double and Q double /
// int32_t / uint32_t (S = int64_t: Q = double only); In float or double with S = Q = double.
// `sum_resident`: the sum table's memory was written before (a caller's array used again), not
// fresh pages: a large int64 sum table is then written with non-temporal stores (integral.cpp,
// kStreamBytes), which halves the time into such memory but doubles it into fresh pages, whose
// lines the kernel has just zeroed into the cache.
template <class In, class S, class Q>
void integral_image(const In* src, int64_t h, int64_t w, int64_t src_stride, S* sum, Q* sqsum,
                    S* tilted, int64_t out_stride, bool sum_resident = false);

}  // namespace pydetect
