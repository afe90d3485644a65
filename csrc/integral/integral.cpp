#include "integral/integral.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/simd.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
// AVX2 kernels are compiled for that target only (the build stays portable: no -mavx2) and
// chosen at run time when the CPU has it. Which of the AVX2, SSE2 and plain loops runs is
// simd_level()'s choice (PYDETECT_SIMD can force the narrower ones).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(PD_INTEGRAL_NO_AVX2)
#include <immintrin.h>
#define PD_INTEGRAL_AVX2 1
#define PD_TARGET_AVX2 __attribute__((target("avx2")))
#endif

namespace pydetect {
namespace {

// ---- uint8 images: one pass over the rows, prefix sums in SIMD registers -------------------
//
// Row y + 1 of a sum table is the row above plus the running (prefix) sum of image row y.
// The running sum is a serial chain, so 16 pixels are summed at a time inside one register
// (a log-step scan: add the vector shifted by 1, 2, 4 lanes), then the carry of the previous
// 16 is added: one add and one shuffle of latency per 16 pixels instead of one add per
// pixel. Every value is an integer: the 32-bit tables wrap modulo 2^32 like OpenCV's, the
// float64 tables hold exact integers (< 2^53), so the order of the additions does not
// change a bit of the result.

// out[1..w] = up[1..w] + running sum of row[x] (or row[x]^2), modulo 2^32. kSse2 = false
// runs the plain loop over the whole row.
template <bool kSquare, bool kSse2>
void row_u32(const uint8_t* row, int64_t w, const uint32_t* up, uint32_t* out) {
  int64_t x = 0;
  uint32_t carry = 0;
#if defined(__SSE2__)
  if constexpr (kSse2) {
    const __m128i z = _mm_setzero_si128();
    __m128i c = z;  // carry in every lane
    for (; x + 16 <= w; x += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + x));
      __m128i lo = _mm_unpacklo_epi8(v, z), hi = _mm_unpackhi_epi8(v, z);
      __m128i a0, a1, a2, a3;
      if (kSquare) {
        // 255^2 fits in 16 bits; 16 of them do not, so the scan runs on 32-bit lanes.
        lo = _mm_mullo_epi16(lo, lo);
        hi = _mm_mullo_epi16(hi, hi);
        a0 = _mm_unpacklo_epi16(lo, z);
        a1 = _mm_unpackhi_epi16(lo, z);
        a2 = _mm_unpacklo_epi16(hi, z);
        a3 = _mm_unpackhi_epi16(hi, z);
        a0 = _mm_add_epi32(a0, _mm_slli_si128(a0, 4));
        a1 = _mm_add_epi32(a1, _mm_slli_si128(a1, 4));
        a2 = _mm_add_epi32(a2, _mm_slli_si128(a2, 4));
        a3 = _mm_add_epi32(a3, _mm_slli_si128(a3, 4));
        a0 = _mm_add_epi32(a0, _mm_slli_si128(a0, 8));
        a1 = _mm_add_epi32(a1, _mm_slli_si128(a1, 8));
        a2 = _mm_add_epi32(a2, _mm_slli_si128(a2, 8));
        a3 = _mm_add_epi32(a3, _mm_slli_si128(a3, 8));
        a1 = _mm_add_epi32(a1, _mm_shuffle_epi32(a0, 0xFF));
        a3 = _mm_add_epi32(a3, _mm_shuffle_epi32(a2, 0xFF));
        const __m128i t1 = _mm_shuffle_epi32(a1, 0xFF);
        a2 = _mm_add_epi32(a2, t1);
        a3 = _mm_add_epi32(a3, t1);
      } else {
        // 16 * 255 fits in 16 bits: scan 8 lanes of 16 bits, then widen.
        lo = _mm_add_epi16(lo, _mm_slli_si128(lo, 2));
        hi = _mm_add_epi16(hi, _mm_slli_si128(hi, 2));
        lo = _mm_add_epi16(lo, _mm_slli_si128(lo, 4));
        hi = _mm_add_epi16(hi, _mm_slli_si128(hi, 4));
        lo = _mm_add_epi16(lo, _mm_slli_si128(lo, 8));
        hi = _mm_add_epi16(hi, _mm_slli_si128(hi, 8));
        hi = _mm_add_epi16(hi, _mm_shuffle_epi32(_mm_shufflehi_epi16(lo, 0xFF), 0xFF));
        a0 = _mm_unpacklo_epi16(lo, z);
        a1 = _mm_unpackhi_epi16(lo, z);
        a2 = _mm_unpacklo_epi16(hi, z);
        a3 = _mm_unpackhi_epi16(hi, z);
      }
      a0 = _mm_add_epi32(a0, c);
      a1 = _mm_add_epi32(a1, c);
      a2 = _mm_add_epi32(a2, c);
      a3 = _mm_add_epi32(a3, c);
      c = _mm_shuffle_epi32(a3, 0xFF);
      const __m128i* u = reinterpret_cast<const __m128i*>(up + x + 1);
      __m128i* o = reinterpret_cast<__m128i*>(out + x + 1);
      _mm_storeu_si128(o + 0, _mm_add_epi32(a0, _mm_loadu_si128(u + 0)));
      _mm_storeu_si128(o + 1, _mm_add_epi32(a1, _mm_loadu_si128(u + 1)));
      _mm_storeu_si128(o + 2, _mm_add_epi32(a2, _mm_loadu_si128(u + 2)));
      _mm_storeu_si128(o + 3, _mm_add_epi32(a3, _mm_loadu_si128(u + 3)));
    }
    carry = static_cast<uint32_t>(_mm_cvtsi128_si32(c));
  }
#endif
  for (; x < w; ++x) {
    const uint32_t v = row[x];
    carry += kSquare ? v * v : v;
    out[x + 1] = up[x + 1] + carry;
  }
}

// The same into float64 tables (exact integers).
template <bool kSquare, bool kSse2>
void row_f64(const uint8_t* row, int64_t w, const double* up, double* out) {
  int64_t x = 0;
  double carry = 0.0;
#if defined(__SSE2__)
  if constexpr (kSse2) {
    const __m128i z = _mm_setzero_si128();
    __m128d c = _mm_setzero_pd();
    for (; x + 16 <= w; x += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + x));
      __m128i lo = _mm_unpacklo_epi8(v, z), hi = _mm_unpackhi_epi8(v, z);
      if (kSquare) {
        lo = _mm_mullo_epi16(lo, lo);
        hi = _mm_mullo_epi16(hi, hi);
      }
      // Scan of the 16 values on 32-bit lanes (at most 16 * 255^2 < 2^31).
      __m128i a[4] = {_mm_unpacklo_epi16(lo, z), _mm_unpackhi_epi16(lo, z),
                      _mm_unpacklo_epi16(hi, z), _mm_unpackhi_epi16(hi, z)};
      for (int k = 0; k < 4; ++k) {
        a[k] = _mm_add_epi32(a[k], _mm_slli_si128(a[k], 4));
        a[k] = _mm_add_epi32(a[k], _mm_slli_si128(a[k], 8));
      }
      a[1] = _mm_add_epi32(a[1], _mm_shuffle_epi32(a[0], 0xFF));
      a[3] = _mm_add_epi32(a[3], _mm_shuffle_epi32(a[2], 0xFF));
      const __m128i t1 = _mm_shuffle_epi32(a[1], 0xFF);
      a[2] = _mm_add_epi32(a[2], t1);
      a[3] = _mm_add_epi32(a[3], t1);
      const double* u = up + x + 1;
      double* o = out + x + 1;
      for (int k = 0; k < 4; ++k) {
        const __m128d d0 = _mm_add_pd(c, _mm_cvtepi32_pd(a[k]));
        const __m128d d1 = _mm_add_pd(c, _mm_cvtepi32_pd(_mm_shuffle_epi32(a[k], 0xEE)));
        _mm_storeu_pd(o + 4 * k, _mm_add_pd(_mm_loadu_pd(u + 4 * k), d0));
        _mm_storeu_pd(o + 4 * k + 2, _mm_add_pd(_mm_loadu_pd(u + 4 * k + 2), d1));
      }
      c = _mm_add_pd(c, _mm_cvtepi32_pd(_mm_shuffle_epi32(a[3], 0xFF)));
    }
    carry = _mm_cvtsd_f64(c);
  }
#endif
  for (; x < w; ++x) {
    const double v = row[x];
    carry += kSquare ? v * v : v;
    out[x + 1] = up[x + 1] + carry;
  }
}

// Widest row whose running sum of squares fits in int32 (255^2 * 33025 < 2^31).
constexpr int64_t kInt32Row = 33025;

#if defined(PD_INTEGRAL_AVX2)
// AVX2 versions of row_u32 / row_f64: 16 pixels per step in 256-bit registers. The scan
// runs inside each 128-bit half (byte shifts do not cross halves), then the low half's
// total is added to the high half. The carry of the row so far is updated with the block
// total computed off the dependency chain: one add of latency per 16 pixels.

// 16 pixels -> two vectors of 8 uint32 prefix sums (of the values or their squares).
template <bool kSquare>
PD_TARGET_AVX2 inline void scan16_avx2(const uint8_t* p, __m256i& a0, __m256i& a1) {
  __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  if (kSquare) {
    v = _mm256_mullo_epi16(v, v);  // 255^2 < 2^16
    a0 = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(v));
    a1 = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(v, 1));
    a0 = _mm256_add_epi32(a0, _mm256_slli_si256(a0, 4));
    a1 = _mm256_add_epi32(a1, _mm256_slli_si256(a1, 4));
    a0 = _mm256_add_epi32(a0, _mm256_slli_si256(a0, 8));
    a1 = _mm256_add_epi32(a1, _mm256_slli_si256(a1, 8));
    const __m256i t0 = _mm256_shuffle_epi32(a0, 0xFF), t1 = _mm256_shuffle_epi32(a1, 0xFF);
    a0 = _mm256_add_epi32(a0, _mm256_permute2x128_si256(t0, t0, 0x08));
    a1 = _mm256_add_epi32(a1, _mm256_permute2x128_si256(t1, t1, 0x08));
    a1 = _mm256_add_epi32(a1, _mm256_permutevar8x32_epi32(a0, _mm256_set1_epi32(7)));
  } else {
    // 8 * 255 < 2^16: scan each half on 16-bit lanes, widen, add the low half's total.
    v = _mm256_add_epi16(v, _mm256_slli_si256(v, 2));
    v = _mm256_add_epi16(v, _mm256_slli_si256(v, 4));
    v = _mm256_add_epi16(v, _mm256_slli_si256(v, 8));
    a0 = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(v));
    a1 = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(v, 1));
    a1 = _mm256_add_epi32(a1, _mm256_permutevar8x32_epi32(a0, _mm256_set1_epi32(7)));
  }
}

// Squares of 16 pixels -> their uint32 prefix sums as four 128-bit quarters in order
// (pixels 0-3, 4-7, 8-11, 12-15); *total: the sum of the 16 in every lane. Scans the 8
// sums of adjacent pairs (one multiply-add) and recovers the even prefixes by subtracting
// the odd pixel's square: fewer shuffles than scanning 16 widened squares, and the float64
// tables convert by quarters anyway.
PD_TARGET_AVX2 inline void scan16_sq_quarters(const uint8_t* p, __m128i q[4], __m256i* total) {
  const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  // pair k of each 128-bit half: x(2k)^2 + x(2k+1)^2 (< 2^17)
  __m256i odd_prefix = _mm256_madd_epi16(v, v);
  odd_prefix = _mm256_add_epi32(odd_prefix, _mm256_slli_si256(odd_prefix, 4));
  odd_prefix = _mm256_add_epi32(odd_prefix, _mm256_slli_si256(odd_prefix, 8));
  const __m256i t = _mm256_shuffle_epi32(odd_prefix, 0xFF);
  odd_prefix = _mm256_add_epi32(odd_prefix, _mm256_permute2x128_si256(t, t, 0x08));
  // 16-bit squares (255^2 < 2^16); the high half of each 32-bit lane is x(2k+1)^2.
  const __m256i odd_sq = _mm256_srli_epi32(_mm256_mullo_epi16(v, v), 16);
  const __m256i even_prefix = _mm256_sub_epi32(odd_prefix, odd_sq);
  const __m256i a = _mm256_unpacklo_epi32(even_prefix, odd_prefix);  // [0-3 | 8-11]
  const __m256i b = _mm256_unpackhi_epi32(even_prefix, odd_prefix);  // [4-7 | 12-15]
  *total = _mm256_permutevar8x32_epi32(odd_prefix, _mm256_set1_epi32(7));
  q[0] = _mm256_castsi256_si128(a);
  q[1] = _mm256_castsi256_si128(b);
  q[2] = _mm256_extracti128_si256(a, 1);
  q[3] = _mm256_extracti128_si256(b, 1);
}

template <bool kSquare>
PD_TARGET_AVX2 void row_u32_avx2(const uint8_t* row, int64_t w, const uint32_t* up,
                                 uint32_t* out) {
  // Scalar steps up to a 32-byte aligned output address (a split store costs two).
  uint32_t carry0 = 0;
  int64_t x = 0;
  for (; x < w && (reinterpret_cast<uintptr_t>(out + x + 1) & 31) != 0; ++x) {
    const uint32_t v = row[x];
    carry0 += kSquare ? v * v : v;
    out[x + 1] = up[x + 1] + carry0;
  }
  const __m256i last = _mm256_set1_epi32(7);
  __m256i c = _mm256_set1_epi32(static_cast<int32_t>(carry0));
  for (; x + 16 <= w; x += 16) {
    __m256i a0, a1;
    scan16_avx2<kSquare>(row + x, a0, a1);
    const __m256i total = _mm256_permutevar8x32_epi32(a1, last);
    const __m256i* u = reinterpret_cast<const __m256i*>(up + x + 1);
    __m256i* o = reinterpret_cast<__m256i*>(out + x + 1);
    _mm256_storeu_si256(o, _mm256_add_epi32(_mm256_add_epi32(a0, c), _mm256_loadu_si256(u)));
    _mm256_storeu_si256(o + 1,
                        _mm256_add_epi32(_mm256_add_epi32(a1, c), _mm256_loadu_si256(u + 1)));
    c = _mm256_add_epi32(c, total);
  }
  uint32_t carry = static_cast<uint32_t>(_mm256_cvtsi256_si32(c));
  for (; x < w; ++x) {
    const uint32_t v = row[x];
    carry += kSquare ? v * v : v;
    out[x + 1] = up[x + 1] + carry;
  }
}

// int64 sum tables, rows narrower than kUint32Row (their running sum is exact in uint32): the
// uint32 scan of row_u32_avx2, widened to uint64 and added to the row above. kStream: the row
// above is `column` (kept in cache and updated in place) and the row goes to `out` with
// non-temporal stores (see kStreamBytes); else the row above is `up` and `out` is stored as usual.
template <bool kStream>
PD_TARGET_AVX2 void row_u64_avx2(const uint8_t* row, int64_t w, const uint64_t* up, uint64_t* column,
                                 uint64_t* out) {
  uint64_t* dst = kStream ? column : out;
  uint32_t carry0 = 0;
  int64_t x = 0;
  for (; x < w && (reinterpret_cast<uintptr_t>(out + x + 1) & 31) != 0; ++x) {
    carry0 += row[x];
    dst[x + 1] = up[x + 1] + carry0;
    if (kStream) out[x + 1] = dst[x + 1];
  }
  const __m256i last = _mm256_set1_epi32(7);
  __m256i c = _mm256_set1_epi32(static_cast<int32_t>(carry0));
  for (; x + 16 <= w; x += 16) {
    __m256i a0, a1;
    scan16_avx2<false>(row + x, a0, a1);
    const __m256i total = _mm256_permutevar8x32_epi32(a1, last);
    const __m256i s0 = _mm256_add_epi32(a0, c), s1 = _mm256_add_epi32(a1, c);
    const __m256i wide[4] = {_mm256_cvtepu32_epi64(_mm256_castsi256_si128(s0)),
                             _mm256_cvtepu32_epi64(_mm256_extracti128_si256(s0, 1)),
                             _mm256_cvtepu32_epi64(_mm256_castsi256_si128(s1)),
                             _mm256_cvtepu32_epi64(_mm256_extracti128_si256(s1, 1))};
    for (int k = 0; k < 4; ++k) {
      const __m256i v = _mm256_add_epi64(wide[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(up + x + 1 + 4 * k)));
      if (kStream) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(column + x + 1 + 4 * k), v);
        _mm256_stream_si256(reinterpret_cast<__m256i*>(out + x + 1 + 4 * k), v);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + x + 1 + 4 * k), v);
      }
    }
    c = _mm256_add_epi32(c, total);
  }
  uint32_t carry = static_cast<uint32_t>(_mm256_cvtsi256_si32(c));
  for (; x < w; ++x) {
    carry += row[x];
    dst[x + 1] = up[x + 1] + carry;
    if (kStream) out[x + 1] = dst[x + 1];
  }
}

template <bool kSquare>
PD_TARGET_AVX2 void row_f64_avx2(const uint8_t* row, int64_t w, const double* up, double* out) {
  const __m256i last = _mm256_set1_epi32(7);
  int64_t x = 0;
  if (w <= kInt32Row) {
    // The whole row's running sum fits in int32: carry it in integer lanes and convert
    // once per value (one float add per value instead of two).
    __m256i c = _mm256_setzero_si256();
    for (; x + 16 <= w; x += 16) {
      __m128i q[4];
      __m256i total;
      if (kSquare) {
        scan16_sq_quarters(row + x, q, &total);
      } else {
        __m256i a0, a1;
        scan16_avx2<false>(row + x, a0, a1);
        total = _mm256_permutevar8x32_epi32(a1, last);
        q[0] = _mm256_castsi256_si128(a0);
        q[1] = _mm256_extracti128_si256(a0, 1);
        q[2] = _mm256_castsi256_si128(a1);
        q[3] = _mm256_extracti128_si256(a1, 1);
      }
      const __m128i c4 = _mm256_castsi256_si128(c);
      for (int k = 0; k < 4; ++k) q[k] = _mm_add_epi32(q[k], c4);
      c = _mm256_add_epi32(c, total);
      const double* u = up + x + 1;
      double* o = out + x + 1;
      for (int k = 0; k < 4; ++k) {
        _mm256_storeu_pd(o + 4 * k,
                         _mm256_add_pd(_mm256_loadu_pd(u + 4 * k), _mm256_cvtepi32_pd(q[k])));
      }
    }
    int32_t carry = _mm256_cvtsi256_si32(c);
    for (; x < w; ++x) {
      const int32_t v = row[x];
      carry += kSquare ? v * v : v;
      out[x + 1] = up[x + 1] + double(carry);
    }
    return;
  }
  __m256d c = _mm256_setzero_pd();
  for (; x + 16 <= w; x += 16) {
    __m256i a0, a1;
    scan16_avx2<kSquare>(row + x, a0, a1);  // < 16 * 255^2 < 2^31: exact as int32
    const __m256d total = _mm256_cvtepi32_pd(
        _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(a1, last)));
    const double* u = up + x + 1;
    double* o = out + x + 1;
    const __m128i q[4] = {_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1),
                          _mm256_castsi256_si128(a1), _mm256_extracti128_si256(a1, 1)};
    for (int k = 0; k < 4; ++k) {
      const __m256d d = _mm256_add_pd(c, _mm256_cvtepi32_pd(q[k]));
      _mm256_storeu_pd(o + 4 * k, _mm256_add_pd(_mm256_loadu_pd(u + 4 * k), d));
    }
    c = _mm256_add_pd(c, total);
  }
  double carry = _mm256_cvtsd_f64(c);
  for (; x < w; ++x) {
    const double v = row[x];
    carry += kSquare ? v * v : v;
    out[x + 1] = up[x + 1] + carry;
  }
}

// Sum (int32) and squared sum (float64) rows in one pass over the pixels, for rows of at
// most kInt32Row pixels (both running sums fit in int32).
PD_TARGET_AVX2 void row_sum_sqsum_avx2(const uint8_t* row, int64_t w, const uint32_t* up_s,
                                       uint32_t* out_s, const double* up_q, double* out_q) {
  const __m256i last = _mm256_set1_epi32(7);
  __m256i cs = _mm256_setzero_si256(), cq = _mm256_setzero_si256();
  int64_t x = 0;
  for (; x + 16 <= w; x += 16) {
    __m256i s0, s1, tq;
    __m128i q[4];
    scan16_avx2<false>(row + x, s0, s1);
    scan16_sq_quarters(row + x, q, &tq);
    const __m256i ts = _mm256_permutevar8x32_epi32(s1, last);
    s0 = _mm256_add_epi32(s0, cs);
    s1 = _mm256_add_epi32(s1, cs);
    const __m128i cq4 = _mm256_castsi256_si128(cq);
    for (int k = 0; k < 4; ++k) q[k] = _mm_add_epi32(q[k], cq4);
    cs = _mm256_add_epi32(cs, ts);
    cq = _mm256_add_epi32(cq, tq);
    const __m256i* us = reinterpret_cast<const __m256i*>(up_s + x + 1);
    __m256i* os = reinterpret_cast<__m256i*>(out_s + x + 1);
    _mm256_storeu_si256(os, _mm256_add_epi32(s0, _mm256_loadu_si256(us)));
    _mm256_storeu_si256(os + 1, _mm256_add_epi32(s1, _mm256_loadu_si256(us + 1)));
    const double* uq = up_q + x + 1;
    double* oq = out_q + x + 1;
    for (int k = 0; k < 4; ++k) {
      _mm256_storeu_pd(oq + 4 * k,
                       _mm256_add_pd(_mm256_loadu_pd(uq + 4 * k), _mm256_cvtepi32_pd(q[k])));
    }
  }
  uint32_t carry_s = static_cast<uint32_t>(_mm256_cvtsi256_si32(cs));
  int32_t carry_q = _mm256_cvtsi256_si32(cq);
  for (; x < w; ++x) {
    const int32_t v = row[x];
    carry_s += static_cast<uint32_t>(v);
    carry_q += v * v;
    out_s[x + 1] = up_s[x + 1] + carry_s;
    out_q[x + 1] = up_q[x + 1] + double(carry_q);
  }
}
#endif

// Row kernels of one SIMD level (without AVX2 kernels in the build, kAvx2 runs SSE2's).
template <bool kSquare, SimdLevel kLevel>
void table_row(const uint8_t* row, int64_t w, const uint32_t* up, uint32_t* out) {
#if defined(PD_INTEGRAL_AVX2)
  if constexpr (kLevel == SimdLevel::kAvx2) return row_u32_avx2<kSquare>(row, w, up, out);
#endif
  row_u32<kSquare, kLevel != SimdLevel::kScalar>(row, w, up, out);
}
template <bool kSquare, SimdLevel kLevel>
void table_row(const uint8_t* row, int64_t w, const int32_t* up, int32_t* out) {
  table_row<kSquare, kLevel>(row, w, reinterpret_cast<const uint32_t*>(up),
                             reinterpret_cast<uint32_t*>(out));
}
// int64 tables (images of 8.4M pixels and more): the row's running sum, at most 255 * w, is
// exact in uint32 for rows narrower than kUint32Row, so it comes from the uint32 row kernel
// (on a zero row above) into `prefix`; widening and adding the row above is a plain loop the
// compiler vectorises. One extra pass over a row that stays in L1, instead of the scalar
// chain of one 64-bit add per pixel.
constexpr int64_t kUint32Row = 16843009;  // 255 * 16843009 < 2^32
template <bool kSquare, SimdLevel kLevel>
void table_row_i64(const uint8_t* row, int64_t w, const uint64_t* up, uint64_t* out, const uint32_t* zeros,
                   uint32_t* prefix) {
  static_assert(!kSquare, "int64 tables hold sums (squares are float64)");
  table_row<false, kLevel>(row, w, zeros, prefix);
  for (int64_t x = 1; x <= w; ++x) out[x] = up[x] + uint64_t(prefix[x]);
}

// Large int64 sum tables in memory written before (`sum_resident`, a caller's table) are written
// with non-temporal (streaming) stores: a plain store first
// reads the line it writes into the cache (read for ownership), so a 134 MB table costs 134 MB of
// reads on top of its writes, and the next row reads its row above back from memory. Instead the
// column sums (the row above) stay in a cache-resident row, `column`, updated in place, and each
// finished row is streamed out. Only past kStreamBytes: a table that fits the caches is read
// back soonest from them (the caller's next step), which streaming would defeat. Never into
// fresh pages: the kernel zeroes each on first touch, which leaves its lines in the cache, where
// plain stores then hit and streaming ones must evict them (4096x4096: 21 ms plain, 40 ms
// streamed into a new table; 15 ms plain, 7.5 ms streamed into a table written before).
constexpr int64_t kStreamBytes = int64_t(32) << 20;

void add_prefix_u64(uint64_t* column, const uint32_t* prefix, int64_t w) {
  for (int64_t x = 1; x <= w; ++x) column[x] += uint64_t(prefix[x]);
}

template <SimdLevel kLevel>
void stream_row_u64(const uint64_t* from, uint64_t* to, int64_t n) {
#if defined(__SSE2__)
  if constexpr (kLevel != SimdLevel::kScalar) {
    int64_t x = 0;
    for (; x < n && (reinterpret_cast<uintptr_t>(to + x) & 15) != 0; ++x) to[x] = from[x];
    for (; x + 2 <= n; x += 2) {
      _mm_stream_si128(reinterpret_cast<__m128i*>(to + x), _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + x)));
    }
    for (; x < n; ++x) to[x] = from[x];
    return;
  }
#endif
  std::copy(from, from + n, to);
}

template <bool kSquare, SimdLevel kLevel>
void table_row(const uint8_t* row, int64_t w, const double* up, double* out) {
#if defined(PD_INTEGRAL_AVX2)
  if constexpr (kLevel == SimdLevel::kAvx2) return row_f64_avx2<kSquare>(row, w, up, out);
#endif
  row_f64<kSquare, kLevel != SimdLevel::kScalar>(row, w, up, out);
}

// Row Y >= 2 of the tilted table from rows Y - 1 and Y - 2 and image rows Y - 1, Y - 2
// (Lienhart & Maydt's recurrence; the triangles of T(X - 1, Y - 1) and T(X + 1, Y - 1)
// overlap in that of T(X, Y - 2) and miss pixels (X - 1, Y - 1) and (X - 1, Y - 2)):
//
//   T(X, Y) = T(X - 1, Y - 1) + T(X + 1, Y - 1) - T(X, Y - 2) + I(X - 1, Y - 1) + I(X - 1, Y - 2)
//
// Triangles clipped at the image border: T(0, Y) = T(1, Y - 1) and T(w + 1, Y - 1) =
// T(w, Y - 2). No dependence along the row, so the loop vectorises. w >= 1.
template <class A>
inline __attribute__((always_inline)) void tilted_row_body(const uint8_t* r1, const uint8_t* r2,
                                                           int64_t w, const A* t1, const A* t2,
                                                           A* out) {
  out[0] = t1[1];
  for (int64_t x = 1; x < w; ++x) {
    out[x] = t1[x - 1] + t1[x + 1] - t2[x] + A(r1[x - 1]) + A(r2[x - 1]);
  }
  out[w] = t1[w - 1] + A(r1[w - 1]) + A(r2[w - 1]);
}

template <class A>
void tilted_row_base(const uint8_t* r1, const uint8_t* r2, int64_t w, const A* t1, const A* t2,
                     A* out) {
  tilted_row_body(r1, r2, w, t1, t2, out);
}

#if defined(PD_INTEGRAL_AVX2)
// The same loop, auto-vectorised for AVX2.
template <class A>
PD_TARGET_AVX2 void tilted_row_avx2(const uint8_t* r1, const uint8_t* r2, int64_t w, const A* t1,
                                    const A* t2, A* out) {
  tilted_row_body(r1, r2, w, t1, t2, out);
}
#endif

// The SSE2 and scalar levels share the plain loop (it has no hand-written SSE2 version).
template <SimdLevel kLevel, class A>
void tilted_row(const uint8_t* r1, const uint8_t* r2, int64_t w, const A* t1, const A* t2,
                A* out) {
#if defined(PD_INTEGRAL_AVX2)
  if constexpr (kLevel == SimdLevel::kAvx2) return tilted_row_avx2<A>(r1, r2, w, t1, t2, out);
#endif
  tilted_row_base<A>(r1, r2, w, t1, t2, out);
}

template <class S>
using tilted_acc_t = typename std::conditional<std::is_integral<S>::value, integral_acc_t<S>, S>::type;

template <SimdLevel kLevel, class S, class Q>
void integral_u8(const uint8_t* src, int64_t h, int64_t w, int64_t src_stride, S* sum, Q* sqsum,
                 S* tilted, int64_t out_stride, bool sum_resident) {
  static_assert(!std::is_integral<S>::value || sizeof(S) == 4 || sizeof(S) == 8, "32-bit, 64-bit or float64 tables");
  constexpr bool kWide = std::is_integral<S>::value && sizeof(S) == 8;
  using TA = tilted_acc_t<S>;
  // int64 sums: a zero row and the row's running sum in uint32 (table_row_i64).
  std::vector<uint32_t> zeros, prefix;
  std::vector<uint64_t> column;  // the row above of a streamed table (kStreamBytes)
  const bool stream = kWide && sum && sum_resident && (h + 1) * (w + 1) * int64_t(sizeof(S)) >= kStreamBytes;
  if (kWide && sum) {
    zeros.assign(static_cast<size_t>(w + 1), 0u);
    prefix.assign(static_cast<size_t>(w + 1), 0u);
  }
  if (stream) column.assign(static_cast<size_t>(w + 1), 0u);
  TA* tl = reinterpret_cast<TA*>(tilted);
  // One pass for both tables: int32 sum, float64 squares, rows short enough for int32 carries.
  constexpr bool kFusable = kLevel == SimdLevel::kAvx2 && std::is_same<S, int32_t>::value &&
                            std::is_same<Q, double>::value;
  const bool fused = kFusable && w <= kInt32Row;
  (void)fused;
  if (sum) std::fill(sum, sum + w + 1, S(0));
  if (sqsum) std::fill(sqsum, sqsum + w + 1, Q(0));
  if (tilted) std::fill(tilted, tilted + w + 1, S(0));
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = src + y * src_stride;
    const int64_t o = (y + 1) * out_stride;
    if (sum) sum[o] = S(0);
    if (sqsum) sqsum[o] = Q(0);
    bool done = false;
#if defined(PD_INTEGRAL_AVX2)
    if constexpr (kFusable) {
      if (fused && sum && sqsum) {
        row_sum_sqsum_avx2(row, w, reinterpret_cast<const uint32_t*>(sum + o - out_stride),
                           reinterpret_cast<uint32_t*>(sum + o), sqsum + o - out_stride,
                           sqsum + o);
        done = true;
      }
    }
#endif
    if (!done) {
      if constexpr (kWide) {
        bool wide_done = false;
#if defined(PD_INTEGRAL_AVX2)
        if constexpr (kLevel == SimdLevel::kAvx2) {
          if (sum) {
            uint64_t* out = reinterpret_cast<uint64_t*>(sum + o);
            if (stream) {
              row_u64_avx2<true>(row, w, column.data(), column.data(), out);
            } else {
              row_u64_avx2<false>(row, w, reinterpret_cast<const uint64_t*>(sum + o - out_stride), nullptr, out);
            }
            wide_done = true;
          }
        }
#endif
        if (wide_done) {
        } else if (stream) {
          table_row<false, kLevel>(row, w, zeros.data(), prefix.data());
          add_prefix_u64(column.data(), prefix.data(), w);
          stream_row_u64<kLevel>(column.data(), reinterpret_cast<uint64_t*>(sum + o), w + 1);
        } else if (sum) {
          table_row_i64<false, kLevel>(row, w, reinterpret_cast<const uint64_t*>(sum + o - out_stride),
                                       reinterpret_cast<uint64_t*>(sum + o), zeros.data(), prefix.data());
        }
      } else {
        if (sum) table_row<false, kLevel>(row, w, sum + o - out_stride, sum + o);
      }
      if (sqsum) table_row<true, kLevel>(row, w, sqsum + o - out_stride, sqsum + o);
    }
    if (tilted) {
      TA* out = tl + o;
      if (w == 0) {
        out[0] = TA(0);
      } else if (y == 0) {
        out[0] = TA(0);
        for (int64_t x = 1; x <= w; ++x) out[x] = TA(row[x - 1]);
      } else {
        tilted_row<kLevel, TA>(row, row - src_stride, w, out - out_stride, out - 2 * out_stride, out);
      }
    }
  }
#if defined(__SSE2__)
  if (stream) _mm_sfence();  // the streamed rows are visible before the caller reads the table
#endif
}

}  // namespace

template <class In, class S, class Q>
void integral_image(const In* src, int64_t h, int64_t w, int64_t src_stride, S* sum, Q* sqsum,
                    S* tilted, int64_t out_stride, bool sum_resident) {
  // uint8 images take the row kernels (SIMD prefix sums). int64 tables (uint8 images whose
  // sum may pass 2^31, from 8.4M pixels on) do too while a row's running sum fits in uint32
  // (table_row_i64); wider rows (16.8M pixels and more) take the generic loops below.
  if constexpr (std::is_same<In, uint8_t>::value) {
    if (!std::is_same<S, int64_t>::value || w < kUint32Row) {
      const SimdLevel level = simd_level();
#if defined(PD_INTEGRAL_AVX2)
      if (level == SimdLevel::kAvx2) {
        integral_u8<SimdLevel::kAvx2, S, Q>(src, h, w, src_stride, sum, sqsum, tilted, out_stride, sum_resident);
        return;
      }
#endif
      if (level != SimdLevel::kScalar) {
        integral_u8<SimdLevel::kSse2, S, Q>(src, h, w, src_stride, sum, sqsum, tilted, out_stride, sum_resident);
        return;
      }
      integral_u8<SimdLevel::kScalar, S, Q>(src, h, w, src_stride, sum, sqsum, tilted, out_stride, sum_resident);
      return;
    }
  }
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
                                                        int32_t*, double*, int32_t*, int64_t, bool);
template void integral_image<uint8_t, int64_t, double>(const uint8_t*, int64_t, int64_t, int64_t,
                                                        int64_t*, double*, int64_t*, int64_t, bool);
template void integral_image<uint8_t, double, double>(const uint8_t*, int64_t, int64_t, int64_t,
                                                       double*, double*, double*, int64_t, bool);
template void integral_image<uint8_t, int32_t, int32_t>(const uint8_t*, int64_t, int64_t, int64_t,
                                                         int32_t*, int32_t*, int32_t*, int64_t, bool);
template void integral_image<uint8_t, int32_t, uint32_t>(const uint8_t*, int64_t, int64_t,
                                                          int64_t, int32_t*, uint32_t*, int32_t*,
                                                          int64_t, bool);
template void integral_image<float, double, double>(const float*, int64_t, int64_t, int64_t,
                                                     double*, double*, double*, int64_t, bool);
template void integral_image<double, double, double>(const double*, int64_t, int64_t, int64_t,
                                                      double*, double*, double*, int64_t, bool);

}  // namespace pydetect
