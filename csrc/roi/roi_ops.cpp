#include "roi/roi_ops.h"

#include <algorithm>
#include <cfloat>
#include <type_traits>
#include <vector>

#include "common/check.h"
#include "common/parallel.h"
#include "common/simd.h"
#include "roi/roi_math.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
// The AVX2 kernels (RoI pool's column maxima, RoIAlign's channel loops) are compiled for that
// target only (the build stays portable) and chosen at run time, as in integral.cpp;
// PYDETECT_SIMD=sse2 / scalar force the others.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PD_ROI_AVX2 1
#define PD_TARGET_AVX2 __attribute__((target("avx2")))
#endif

namespace pydetect {
namespace {

// Channels handled together by one backward task: the sample table of a RoI is built
// once per block instead of once per channel, and a block of 16 gradient planes of a
// typical 50x68 map (~220 KB in float32) stays in L2.
constexpr int64_t kChannelBlock = 16;

// RoI indices of each image; checks that every batch index is an integer in [0, n).
template <class T>
std::vector<std::vector<int64_t>> rois_by_image(const T* rois, int64_t k, int64_t n) {
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(n));
  for (int64_t r = 0; r < k; ++r) {
    const T b = rois[r * 5];
    PD_CHECK(valid_batch_index(b, n), "rois[", r, ", 0] must be an image index in [0, ", n, "), got ", b);
    groups[static_cast<size_t>(b)].push_back(r);
  }
  return groups;
}

int64_t batch_index(double b) { return static_cast<int64_t>(b); }

// The separable sample table of one RoI (see bin_axis_weights): for each bin row ph, the
// rows its samples read and their summed weights (already divided by the sample count, so
// a bin's value is sum_rows w_row * sum_cols w_col * pixel), and for each bin column pw the
// columns and their weights. Entries of bin row ph are rows[row_at[ph], row_at[ph + 1]).
// At most 2 * 256 entries per bin row or column whatever the RoI, so the table is small
// (a few hundred bytes for 7x7 bins of 2x2 samples) and is rebuilt where needed instead of
// being kept for every RoI.
template <class T>
struct AxisTable {
  std::vector<AxisWeight<T>> rows, cols;
  std::vector<int64_t> row_at, col_at;

  void build(const AlignGeometry<T>& g, int64_t pooled_h, int64_t pooled_w, int64_t h, int64_t w) {
    rows.resize(static_cast<size_t>(pooled_h * 2 * g.grid_h));
    cols.resize(static_cast<size_t>(pooled_w * 2 * g.grid_w));
    row_at.resize(static_cast<size_t>(pooled_h + 1));
    col_at.resize(static_cast<size_t>(pooled_w + 1));
    const T inv_count = align_inv_count(g);
    row_at[0] = 0;
    for (int64_t ph = 0; ph < pooled_h; ++ph) {
      AxisWeight<T>* out = rows.data() + row_at[ph];
      const int64_t m = bin_axis_weights(g.start_y, g.bin_h, ph, g.grid_h, h, out);
      for (int64_t i = 0; i < m; ++i) out[i].weight *= inv_count;
      row_at[ph + 1] = row_at[ph] + m;
    }
    col_at[0] = 0;
    for (int64_t pw = 0; pw < pooled_w; ++pw)
      col_at[pw + 1] = col_at[pw] + bin_axis_weights(g.start_x, g.bin_w, pw, g.grid_w, w, cols.data() + col_at[pw]);
  }
};

// Planes of 2^31 pixels or more are refused (the CUDA bindings check the same limit), and
// sampling ratios above kMaxSamplingRatio.
void check_align_args(int64_t h, int64_t w, int64_t sampling_ratio) {
  PD_CHECK(h * w < (int64_t(1) << 31), "feature planes must have fewer than 2^31 pixels, got ", h, "x", w);
  PD_CHECK(sampling_ratio <= kMaxSamplingRatio, "sampling_ratio must be <= ", kMaxSamplingRatio, ", got ",
           sampling_ratio);
}

// ---- RoIAlign forward over channel vectors -------------------------------------------------
// Every channel of a RoI reads the same pixels with the same weights. With the image's
// features transposed to (H, W, C), a tap is a contiguous run of channels, so all channels of
// a bin are computed together in vector registers instead of channel by channel with scalar
// loads from planes H * W apart (benchmarks/RESULTS.md, issue 23). Per channel the terms are
// added in the order of the plane-by-plane loop (align_bins_plane), so both give the same bits.

// The (H, W, C) copy pads channel blocks to a multiple of this (8 floats or 4 doubles: one AVX2
// register) with zeros, so that the channel loops have no remainder.
template <class T>
constexpr int64_t kAlignLanes = 32 / sizeof(T);

// RoIAlign of one RoI from its AxisTable, for a block of channels: `hwc` is (H, W, cp) (cp a
// multiple of kAlignLanes, channels from c on zero), the first c are written to out (c, bins)
// with rows bins apart; acc and sum hold cp values each. Bin by bin, each tap adds a
// contiguous run of cp channels (adjacent bins reusing it from L1) to the bin's sums.
template <class T>
inline __attribute__((always_inline)) void align_roi_hwc_body(const T* __restrict hwc, int64_t w, int64_t c,
                                                              int64_t cp, const AxisTable<T>& t, int64_t pooled_h,
                                                              int64_t pooled_w, T* __restrict out,
                                                              T* __restrict acc, T* __restrict sum) {
  const int64_t bins = pooled_h * pooled_w;
  for (int64_t ph = 0; ph < pooled_h; ++ph) {
    const AxisWeight<T>* r0 = t.rows.data() + t.row_at[ph];
    const AxisWeight<T>* r1 = t.rows.data() + t.row_at[ph + 1];
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      const AxisWeight<T>* x0 = t.cols.data() + t.col_at[pw];
      const AxisWeight<T>* x1 = t.cols.data() + t.col_at[pw + 1];
      for (int64_t j = 0; j < cp; ++j) sum[j] = T(0);
      for (const AxisWeight<T>* y = r0; y < r1; ++y) {
        const T* line = hwc + y->index * w * cp;
        for (int64_t j = 0; j < cp; ++j) acc[j] = T(0);
        for (const AxisWeight<T>* x = x0; x < x1; ++x) {
          const T* __restrict px = line + x->index * cp;
          const T wx = x->weight;
          for (int64_t j = 0; j < cp; ++j) acc[j] += wx * px[j];
        }
        const T wy = y->weight;
        for (int64_t j = 0; j < cp; ++j) sum[j] += wy * acc[j];
      }
      T* o = out + ph * pooled_w + pw;
      for (int64_t j = 0; j < c; ++j) o[j * bins] = sum[j];
    }
  }
}

// GCC's -O3 jams two taps into one channel loop (unroll-and-jam) and then leaves that loop
// scalar: most of the time went there (perf). One tap per loop vectorises.
#if defined(__GNUC__) && !defined(__clang__)
#define PD_NO_JAM __attribute__((optimize("no-loop-unroll-and-jam")))
#else
#define PD_NO_JAM
#endif

template <class T>
PD_NO_JAM void align_roi_hwc(const T* hwc, int64_t w, int64_t c, int64_t cp, const AxisTable<T>& t, int64_t pooled_h,
                             int64_t pooled_w, T* out, T* acc, T* sum) {
  align_roi_hwc_body(hwc, w, c, cp, t, pooled_h, pooled_w, out, acc, sum);
}

#if defined(PD_ROI_AVX2)
// The same loops compiled for AVX2 (8 floats or 4 doubles per register).
template <class T>
PD_TARGET_AVX2 PD_NO_JAM void align_roi_hwc_avx2(const T* hwc, int64_t w, int64_t c, int64_t cp, const AxisTable<T>& t,
                                       int64_t pooled_h, int64_t pooled_w, T* out, T* acc, T* sum) {
  align_roi_hwc_body(hwc, w, c, cp, t, pooled_h, pooled_w, out, acc, sum);
}
#endif

template <class T>
using AlignRoiFn = void (*)(const T*, int64_t, int64_t, int64_t, const AxisTable<T>&, int64_t, int64_t, T*, T*, T*);

// The backward pass of one RoI for a block of channels, into an (H, W, cp) gradient block
// `ghwc`: the bin's output gradients of the block's c channels are gathered into g (lanes from
// c on stay 0), then each tap adds g * w_row * w_col to a contiguous run of cp channels. Per
// channel the terms are those of the plane-by-plane loop, added in the same order.
template <class T>
inline __attribute__((always_inline)) void align_roi_hwc_backward_body(const T* __restrict gout, int64_t c,
                                                                       int64_t cp, int64_t w, const AxisTable<T>& t,
                                                                       int64_t pooled_h, int64_t pooled_w,
                                                                       T* __restrict ghwc, T* __restrict g,
                                                                       T* __restrict gy) {
  const int64_t bins = pooled_h * pooled_w;
  for (int64_t ph = 0; ph < pooled_h; ++ph) {
    const AxisWeight<T>* r0 = t.rows.data() + t.row_at[ph];
    const AxisWeight<T>* r1 = t.rows.data() + t.row_at[ph + 1];
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      const AxisWeight<T>* x0 = t.cols.data() + t.col_at[pw];
      const AxisWeight<T>* x1 = t.cols.data() + t.col_at[pw + 1];
      if (r0 == r1 || x0 == x1) continue;  // no sample of the bin inside the map
      const int64_t b = ph * pooled_w + pw;
      for (int64_t j = 0; j < c; ++j) g[j] = gout[j * bins + b];
      for (const AxisWeight<T>* y = r0; y < r1; ++y) {
        const T wy = y->weight;
        for (int64_t j = 0; j < cp; ++j) gy[j] = g[j] * wy;
        T* line = ghwc + y->index * w * cp;
        for (const AxisWeight<T>* x = x0; x < x1; ++x) {
          T* __restrict px = line + x->index * cp;
          const T wx = x->weight;
          for (int64_t j = 0; j < cp; ++j) px[j] += gy[j] * wx;
        }
      }
    }
  }
}

template <class T>
PD_NO_JAM void align_roi_hwc_backward(const T* gout, int64_t c, int64_t cp, int64_t w, const AxisTable<T>& t,
                                      int64_t pooled_h, int64_t pooled_w, T* ghwc, T* g, T* gy) {
  align_roi_hwc_backward_body(gout, c, cp, w, t, pooled_h, pooled_w, ghwc, g, gy);
}

#if defined(PD_ROI_AVX2)
template <class T>
PD_TARGET_AVX2 PD_NO_JAM void align_roi_hwc_backward_avx2(const T* gout, int64_t c, int64_t cp, int64_t w,
                                                          const AxisTable<T>& t, int64_t pooled_h, int64_t pooled_w,
                                                          T* ghwc, T* g, T* gy) {
  align_roi_hwc_backward_body(gout, c, cp, w, t, pooled_h, pooled_w, ghwc, g, gy);
}
#endif

template <class T>
using AlignRoiBackwardFn = void (*)(const T*, int64_t, int64_t, int64_t, const AxisTable<T>&, int64_t, int64_t, T*,
                                    T*, T*);

template <class T>
AlignRoiBackwardFn<T> align_roi_hwc_backward_for(SimdLevel level) {
#if defined(PD_ROI_AVX2)
  if (level >= SimdLevel::kAvx2) return align_roi_hwc_backward_avx2<T>;
#endif
  (void)level;
  return align_roi_hwc_backward<T>;
}

template <class T>
AlignRoiFn<T> align_roi_hwc_for(SimdLevel level) {
#if defined(PD_ROI_AVX2)
  if (level >= SimdLevel::kAvx2) return align_roi_hwc_avx2<T>;
#endif
  (void)level;
  return align_roi_hwc<T>;
}

// Channels from which the forward pass goes through the (H, W, C) copy: below, the copy
// (one pass over the image) is not repaid by vectors that would be mostly empty.
constexpr int64_t kAlignHwcMinChannels = 8;

// Channels per block of the (H, W, C) copy: 64 floats or 32 doubles (256 bytes a pixel), so
// that a block of a 50 x 68 map (870 KB) stays in a 2 MB L2 while its RoIs are pooled; the
// whole (H, W, C) image (3.5 MB for 256 channels) would be read from L3, tap by tap.
template <class T>
constexpr int64_t kAlignBlock = 256 / sizeof(T);

// dst (blocks, H * W, cb) = src (C, H * W) for the pixels of pixel blocks [lo, hi) (kHwcPixels
// each): channel b * cb + j of pixel p at dst[(b * hw + p) * cb + j], channels from C on zero.
// A block of pixels is read while its channel-interleaved writes stay in cache.
constexpr int64_t kHwcPixels = 64;

template <class T>
void to_hwc_blocks(const T* src, int64_t c, int64_t cb, int64_t blocks, int64_t hw, T* dst, int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    const int64_t p0 = i * kHwcPixels, p1 = std::min(hw, p0 + kHwcPixels);
    for (int64_t b = 0; b < blocks; ++b) {
      T* d = dst + b * hw * cb;
      const int64_t c0 = b * cb, c1 = std::min(c, c0 + cb);
      for (int64_t ch = c0; ch < c1; ++ch) {
        const T* s = src + ch * hw;
        for (int64_t p = p0; p < p1; ++p) d[p * cb + (ch - c0)] = s[p];
      }
      for (int64_t p = p0; p < p1; ++p) std::fill(d + p * cb + (c1 - c0), d + (p + 1) * cb, T(0));
    }
  }
}

// Scratch of the forward pass's (H, W, C) copies: images are transposed and pooled in groups
// whose copies fit in this many bytes (at least one image), so that a call has two parallel
// regions per group (each a join where, on a busy machine, a descheduled thread holds the
// others up) and its extra memory stays bounded.
constexpr int64_t kAlignScratchBytes = int64_t(64) << 20;

// Scratch of one backward task (an (H, W, cb) gradient block), per thread.
constexpr int64_t kAlignBackwardScratchBytes = int64_t(32) << 20;

// dst (c, H * W) = the first c channels of src (H * W, cb), in blocks of pixels so that the
// strided reads of a block stay in cache.
template <class T>
void from_hwc_block(const T* src, int64_t c, int64_t cb, int64_t hw, T* dst) {
  constexpr int64_t kPixels = 64;
  for (int64_t p0 = 0; p0 < hw; p0 += kPixels) {
    const int64_t p1 = std::min(hw, p0 + kPixels);
    for (int64_t ch = 0; ch < c; ++ch) {
      T* d = dst + ch * hw;
      for (int64_t p = p0; p < p1; ++p) d[p] = src[p * cb + ch];
    }
  }
}

// ---- RoI max pooling by columns ----------------------------------------------------------
// Row index of a column maximum, as wide as T so that one compare mask selects both.
template <class T>
using PoolRow = typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type;

// One row of a band: where line[x] > col_max[x] (NaN never is), col_max[x] = line[x] and
// col_row[x] = y, for x in [x0, x1). Top to bottom with a strict >, col_row keeps the first
// row that holds the column's maximum (pool_max's rule, column by column). The plain loop
// branches on data (a new column maximum is a coin toss on the band's second row), so the
// vector versions select with masks instead.
template <class T>
void column_max_scalar(const T* line, T* col_max, PoolRow<T>* col_row, int64_t x0, int64_t x1, PoolRow<T> y) {
  for (int64_t x = x0; x < x1; ++x) {
    if (line[x] > col_max[x]) {
      col_max[x] = line[x];
      col_row[x] = y;
    }
  }
}

#if defined(__SSE2__)
void column_max_sse2(const float* line, float* cm, int32_t* cr, int64_t x0, int64_t x1, int32_t y) {
  const __m128i yy = _mm_set1_epi32(y);
  int64_t x = x0;
  for (; x + 4 <= x1; x += 4) {
    const __m128 v = _mm_loadu_ps(line + x), m = _mm_loadu_ps(cm + x);
    const __m128 gt = _mm_cmpgt_ps(v, m);  // false for NaN
    const __m128i g = _mm_castps_si128(gt);
    const __m128i r = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cr + x));
    _mm_storeu_ps(cm + x, _mm_or_ps(_mm_and_ps(gt, v), _mm_andnot_ps(gt, m)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cr + x), _mm_or_si128(_mm_and_si128(g, yy), _mm_andnot_si128(g, r)));
  }
  column_max_scalar<float>(line, cm, cr, x, x1, y);
}
void column_max_sse2(const double* line, double* cm, int64_t* cr, int64_t x0, int64_t x1, int64_t y) {
  const __m128i yy = _mm_set1_epi64x(y);
  int64_t x = x0;
  for (; x + 2 <= x1; x += 2) {
    const __m128d v = _mm_loadu_pd(line + x), m = _mm_loadu_pd(cm + x);
    const __m128d gt = _mm_cmpgt_pd(v, m);
    const __m128i g = _mm_castpd_si128(gt);
    const __m128i r = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cr + x));
    _mm_storeu_pd(cm + x, _mm_or_pd(_mm_and_pd(gt, v), _mm_andnot_pd(gt, m)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cr + x), _mm_or_si128(_mm_and_si128(g, yy), _mm_andnot_si128(g, r)));
  }
  column_max_scalar<double>(line, cm, cr, x, x1, y);
}
#endif

#if defined(PD_ROI_AVX2)
PD_TARGET_AVX2 void column_max_avx2(const float* line, float* cm, int32_t* cr, int64_t x0, int64_t x1, int32_t y) {
  const __m256i yy = _mm256_set1_epi32(y);
  int64_t x = x0;
  for (; x + 8 <= x1; x += 8) {
    const __m256 v = _mm256_loadu_ps(line + x), m = _mm256_loadu_ps(cm + x);
    const __m256 gt = _mm256_cmp_ps(v, m, _CMP_GT_OQ);  // ordered: false for NaN
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cr + x));
    _mm256_storeu_ps(cm + x, _mm256_blendv_ps(m, v, gt));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(cr + x), _mm256_blendv_epi8(r, yy, _mm256_castps_si256(gt)));
  }
  column_max_scalar<float>(line, cm, cr, x, x1, y);
}
PD_TARGET_AVX2 void column_max_avx2(const double* line, double* cm, int64_t* cr, int64_t x0, int64_t x1,
                                    int64_t y) {
  const __m256i yy = _mm256_set1_epi64x(y);
  int64_t x = x0;
  for (; x + 4 <= x1; x += 4) {
    const __m256d v = _mm256_loadu_pd(line + x), m = _mm256_loadu_pd(cm + x);
    const __m256d gt = _mm256_cmp_pd(v, m, _CMP_GT_OQ);
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cr + x));
    _mm256_storeu_pd(cm + x, _mm256_blendv_pd(m, v, gt));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(cr + x), _mm256_blendv_epi8(r, yy, _mm256_castpd_si256(gt)));
  }
  column_max_scalar<double>(line, cm, cr, x, x1, y);
}
#endif

template <class T>
using ColumnMaxFn = void (*)(const T*, T*, PoolRow<T>*, int64_t, int64_t, PoolRow<T>);

// The widest vector column_max the CPU and PYDETECT_SIMD allow; null at the scalar level
// (the plain loop's data-dependent branches make the column pass slower than the windows).
template <class T>
ColumnMaxFn<T> column_max_for(SimdLevel level) {
#if defined(PD_ROI_AVX2)
  if (level >= SimdLevel::kAvx2) return static_cast<ColumnMaxFn<T>>(column_max_avx2);
#endif
#if defined(__SSE2__)
  if (level >= SimdLevel::kSse2) return static_cast<ColumnMaxFn<T>>(column_max_sse2);
#endif
  (void)level;
  return nullptr;
}

// RoIs whose bins average at least this many columns are pooled by columns (one vector pass
// per band of rows), narrower ones window by window (pool_max): on 256 x 50 x 68 float maps
// (pydetect bench ops, roi section) the column pass halved the time of RoIs wider than the
// map (~15-column bins) and doubled that of 1-4-column bins, where each band is a
// function call and a vector or two.
constexpr int64_t kPoolColumnsMinWidth = 8;

}  // namespace

// One RoI's bins of one channel plane (the loop for few channels; align_lanes computes the
// same sums, in the same order, for many).
template <class T>
void align_bins_plane(const T* in, int64_t w, const AxisTable<T>& t, int64_t pooled_h, int64_t pooled_w, T* out) {
  for (int64_t ph = 0; ph < pooled_h; ++ph) {
    const AxisWeight<T>* r0 = t.rows.data() + t.row_at[ph];
    const AxisWeight<T>* r1 = t.rows.data() + t.row_at[ph + 1];
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      const AxisWeight<T>* c0 = t.cols.data() + t.col_at[pw];
      const AxisWeight<T>* c1 = t.cols.data() + t.col_at[pw + 1];
      T sum = T(0);
      for (const AxisWeight<T>* y = r0; y < r1; ++y) {
        const T* line = in + y->index * w;
        T acc = T(0);
        for (const AxisWeight<T>* x = c0; x < c1; ++x) acc += x->weight * line[x->index];
        sum += y->weight * acc;
      }
      out[ph * pooled_w + pw] = sum;
    }
  }
}

template <class T>
void roi_align_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                       const T* rois, int64_t k, T spatial_scale, int64_t pooled_h,
                       int64_t pooled_w, int64_t sampling_ratio, bool aligned, T* output) {
  check_align_args(h, w, sampling_ratio);
  const auto groups = rois_by_image(rois, k, n);  // validates batch indices
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  auto table = [&](int64_t r, AxisTable<T>* t) {
    t->build(align_geometry(rois + r * 5 + 1, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned), pooled_h,
             pooled_w, h, w);
  };
  if (c < kAlignHwcMinChannels) {
    parallel_for(0, k, 1, [&](int64_t lo, int64_t hi) {
      AxisTable<T> t;
      for (int64_t r = lo; r < hi; ++r) {
        table(r, &t);
        const T* image = input + batch_index(double(rois[r * 5])) * c * plane;
        for (int64_t ch = 0; ch < c; ++ch)
          align_bins_plane(image + ch * plane, w, t, pooled_h, pooled_w, output + (r * c + ch) * bins);
      }
    });
    return;
  }
  // Groups of images: their features as (H, W, C) in blocks of channels (one parallel
  // region), then tasks (image, channel block, RoI), block by block so that a block stays in
  // L2 while its RoIs are pooled (a second region), all channels of a bin together.
  const AlignRoiFn<T> align_roi = align_roi_hwc_for<T>(simd_level());
  const int64_t cb = std::min(kAlignBlock<T>, (c + kAlignLanes<T> - 1) / kAlignLanes<T> * kAlignLanes<T>);
  const int64_t blocks = (c + cb - 1) / cb, per_image = blocks * plane * cb;
  const int64_t pixel_blocks = (plane + kHwcPixels - 1) / kHwcPixels;
  const int64_t group = std::max<int64_t>(1, kAlignScratchBytes / static_cast<int64_t>(per_image * sizeof(T)));
  std::vector<T> hwc;
  std::vector<int64_t> first_task;  // task index of each image's first (block, RoI) in the group
  for (int64_t g0 = 0; g0 < n; g0 += group) {
    const int64_t g1 = std::min(n, g0 + group);
    hwc.resize(static_cast<size_t>((g1 - g0) * per_image));
    parallel_for(0, (g1 - g0) * pixel_blocks, 4, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi;) {
        const int64_t img = i / pixel_blocks, end = std::min(hi, (img + 1) * pixel_blocks);
        to_hwc_blocks(input + (g0 + img) * c * plane, c, cb, blocks, plane, hwc.data() + img * per_image,
                      i - img * pixel_blocks, end - img * pixel_blocks);
        i = end;
      }
    });
    first_task.assign(1, 0);
    for (int64_t img = g0; img < g1; ++img)
      first_task.push_back(first_task.back() + blocks * static_cast<int64_t>(groups[img].size()));
    parallel_for(0, first_task.back(), 4, [&](int64_t lo, int64_t hi) {
      AxisTable<T> t;
      std::vector<T> sums(static_cast<size_t>(2 * cb));
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t img = std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin() - 1;
        const std::vector<int64_t>& mine = groups[g0 + img];
        const int64_t local = task - first_task[img], m = static_cast<int64_t>(mine.size());
        const int64_t b = local / m, r = mine[local % m];
        const int64_t c0 = b * cb;
        table(r, &t);
        align_roi(hwc.data() + img * per_image + b * plane * cb, w, std::min(cb, c - c0), cb, t, pooled_h, pooled_w,
                  output + (r * c + c0) * bins, sums.data(), sums.data() + cb);
      }
    });
  }
}

template <class T>
void roi_align_backward(const T* grad_output, const T* rois, int64_t k, int64_t n, int64_t c,
                        int64_t h, int64_t w, T spatial_scale, int64_t pooled_h,
                        int64_t pooled_w, int64_t sampling_ratio, bool aligned, T* grad_input) {
  check_align_args(h, w, sampling_ratio);
  const auto groups = rois_by_image(rois, k, n);  // validates batch indices
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  auto table = [&](int64_t r, AxisTable<T>* t) {
    t->build(align_geometry(rois + r * 5 + 1, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned), pooled_h,
             pooled_w, h, w);
    return t->row_at[pooled_h] > 0 && t->col_at[pooled_w] > 0;  // some sample inside the map
  };
  // One task per (image, block of channels): each gradient plane has one writer, which adds
  // the RoIs of its image in RoI order, so the result does not depend on the thread count.
  // Each task rebuilds the (small) tables of its image's RoIs: cheap next to the scatter.
  // As the forward pass: the block's gradient as (H, W, cb) (per task), all its channels of a
  // tap in vectors, then back to (C, H, W). Each thread holds one such block: blocks are
  // narrowed (in whole vectors) so that it stays under kAlignBackwardScratchBytes, and maps
  // too large for even one vector of channels take the plane-by-plane loop.
  const int64_t lanes = kAlignLanes<T>, plane_bytes = plane * static_cast<int64_t>(sizeof(T));
  const int64_t fit = kAlignBackwardScratchBytes / std::max<int64_t>(plane_bytes, 1) / lanes * lanes;
  if (c >= kAlignHwcMinChannels && fit >= lanes) {
    const AlignRoiBackwardFn<T> align_back = align_roi_hwc_backward_for<T>(simd_level());
    const int64_t cb = std::min({kAlignBlock<T>, fit, (c + lanes - 1) / lanes * lanes});
    const int64_t blocks = (c + cb - 1) / cb;
    parallel_for(0, n * blocks, 1, [&](int64_t lo, int64_t hi) {
      AxisTable<T> t;
      std::vector<T> ghwc(static_cast<size_t>(plane * cb)), g(static_cast<size_t>(cb), T(0)), gy(g);
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t img = task / blocks, c0 = (task % blocks) * cb, nc = std::min(cb, c - c0);
        std::fill(ghwc.begin(), ghwc.end(), T(0));
        std::fill(g.begin() + nc, g.end(), T(0));  // lanes past the block's channels
        for (const int64_t r : groups[img]) {
          if (table(r, &t)) {
            align_back(grad_output + (r * c + c0) * bins, nc, cb, w, t, pooled_h, pooled_w, ghwc.data(), g.data(),
                       gy.data());
          }
        }
        from_hwc_block(ghwc.data(), nc, cb, plane, grad_input + (img * c + c0) * plane);
      }
    });
    return;
  }
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  parallel_for(0, n * blocks, 1, [&](int64_t lo, int64_t hi) {
    AxisTable<T> t;
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t img = task / blocks;
      const int64_t ch0 = (task % blocks) * kChannelBlock, ch1 = std::min(c, ch0 + kChannelBlock);
      std::fill(grad_input + (img * c + ch0) * plane, grad_input + (img * c + ch1) * plane, T(0));
      for (const int64_t r : groups[img]) {
        if (!table(r, &t)) continue;
        for (int64_t ch = ch0; ch < ch1; ++ch) {
          T* g_plane = grad_input + (img * c + ch) * plane;
          const T* gout = grad_output + (r * c + ch) * bins;
          for (int64_t ph = 0; ph < pooled_h; ++ph) {
            const AxisWeight<T>* r0 = t.rows.data() + t.row_at[ph];
            const AxisWeight<T>* r1 = t.rows.data() + t.row_at[ph + 1];
            for (int64_t pw = 0; pw < pooled_w; ++pw) {
              const AxisWeight<T>* c0 = t.cols.data() + t.col_at[pw];
              const AxisWeight<T>* c1 = t.cols.data() + t.col_at[pw + 1];
              const T g = gout[ph * pooled_w + pw];
              for (const AxisWeight<T>* y = r0; y < r1; ++y) {
                T* line = g_plane + y->index * w;
                const T gy = g * y->weight;
                for (const AxisWeight<T>* x = c0; x < c1; ++x) line[x->index] += gy * x->weight;
              }
            }
          }
        }
      }
    }
  });
}

// RoI max pooling window by window (pool_max) for the c channel planes of `image`: out and
// arg are (c, bins). Kept out of line with its windows precomputed: written inside
// roi_pool_forward's channel loop next to the column pass, it ran 11% slower than the old
// loop on roi_problem's 1024 RoIs (CPU time, A/B); this way it runs 2% faster.
template <class T>
__attribute__((noinline)) void pool_windows(const T* image, int64_t c, int64_t plane, int64_t w,
                                            const PoolWindow* windows, int64_t bins, T* out, int64_t* arg) {
  for (int64_t ch = 0; ch < c; ++ch) {
    const T* in = image + ch * plane;
    for (int64_t b = 0; b < bins; ++b) out[ch * bins + b] = pool_max(in, w, windows[b], &arg[ch * bins + b]);
  }
}

template <class T>
void roi_pool_forward(const T* input, int64_t n, int64_t c, int64_t h, int64_t w,
                      const T* rois, int64_t k, T spatial_scale, int64_t pooled_h,
                      int64_t pooled_w, T* output, int64_t* argmax) {
  rois_by_image(rois, k, n);
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  using Row = PoolRow<T>;
  const ColumnMaxFn<T> column_max = column_max_for<T>(simd_level());
  parallel_for(0, k, 1, [&](int64_t lo, int64_t hi) {
    // pool_window's rows depend on ph only and its columns on pw only.
    std::vector<PoolWindow> by_row(static_cast<size_t>(pooled_h)), by_col(static_cast<size_t>(pooled_w));
    std::vector<PoolWindow> windows(static_cast<size_t>(bins));
    std::vector<T> col_max(static_cast<size_t>(w));
    std::vector<Row> col_row(static_cast<size_t>(w));
    for (int64_t r = lo; r < hi; ++r) {
      const T* roi = rois + r * 5;
      for (int64_t ph = 0; ph < pooled_h; ++ph)
        by_row[ph] = pool_window(roi + 1, spatial_scale, pooled_h, pooled_w, ph, 0, h, w);
      for (int64_t pw = 0; pw < pooled_w; ++pw)
        by_col[pw] = pool_window(roi + 1, spatial_scale, pooled_h, pooled_w, 0, pw, h, w);
      // Columns any bin reads (window edges grow with pw).
      const int64_t x0 = by_col[0].w0, x1 = std::max(x0, by_col[pooled_w - 1].w1);
      const bool by_columns = column_max != nullptr && x1 - x0 >= kPoolColumnsMinWidth * pooled_w;
      const T* image = input + batch_index(double(roi[0])) * c * plane;
      if (!by_columns) {
        for (int64_t ph = 0; ph < pooled_h; ++ph)
          for (int64_t pw = 0; pw < pooled_w; ++pw)
            windows[ph * pooled_w + pw] = PoolWindow{by_row[ph].h0, by_row[ph].h1, by_col[pw].w0, by_col[pw].w1};
        pool_windows(image, c, plane, w, windows.data(), bins, output + r * c * bins, argmax + r * c * bins);
        continue;
      }
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* in = image + ch * plane;
        T* out = output + (r * c + ch) * bins;
        int64_t* arg = argmax + (r * c + ch) * bins;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          const int64_t y0 = by_row[ph].h0, y1 = by_row[ph].h1;
          // The maximum of each column over the bin row's rows and the first row holding it
          // (column_max), for all bins of the row in one pass over the band: contiguous runs
          // of columns in vector registers instead of one scalar scan per bin window.
          for (int64_t x = x0; x < x1; ++x) {
            col_max[x] = T(-FLT_MAX);
            col_row[x] = Row(-1);
          }
          for (int64_t y = y0; y < y1; ++y) column_max(in + y * w, col_max.data(), col_row.data(), x0, x1, Row(y));
          for (int64_t pw = 0; pw < pooled_w; ++pw) {
            const int64_t w0 = by_col[pw].w0, w1 = by_col[pw].w1;
            const int64_t b = ph * pooled_w + pw;
            if (y1 <= y0 || w1 <= w0) {  // empty window: 0, no argmax (pool_max)
              out[b] = T(0);
              arg[b] = -1;
              continue;
            }
            // The window's maximum and its first pixel in row-major order: the smallest row,
            // then the smallest column, among the columns whose maximum it is. Columns that
            // never beat -FLT_MAX keep row -1 and never win either.
            T best = T(-FLT_MAX);
            int64_t best_row = -1, best_col = -1;
            for (int64_t x = w0; x < w1; ++x) {
              if (col_max[x] > best || (col_max[x] == best && col_row[x] < best_row)) {
                best = col_max[x];
                best_row = col_row[x];
                best_col = x;
              }
            }
            out[b] = best;
            arg[b] = best_row < 0 ? -1 : best_row * w + best_col;
          }
        }
      }
    }
  });
}

template <class T>
void roi_pool_backward(const T* grad_output, const int64_t* argmax, const T* rois, int64_t k,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t pooled_h,
                       int64_t pooled_w, T* grad_input) {
  const auto groups = rois_by_image(rois, k, n);
  const int64_t plane = h * w, bins = pooled_h * pooled_w;
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  // One task per (image, block of channels): each plane has one writer, and a RoI's
  // gradient and argmax for the block are contiguous (kChannelBlock * bins values) instead of
  // bins values a RoI's stride (C * bins) apart.
  parallel_for(0, n * blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t img = task / blocks;
      const int64_t ch0 = (task % blocks) * kChannelBlock, ch1 = std::min(c, ch0 + kChannelBlock);
      std::fill(grad_input + (img * c + ch0) * plane, grad_input + (img * c + ch1) * plane, T(0));
      for (const int64_t r : groups[img]) {
        for (int64_t ch = ch0; ch < ch1; ++ch) {
          T* g_plane = grad_input + (img * c + ch) * plane;
          const T* gout = grad_output + (r * c + ch) * bins;
          const int64_t* arg = argmax + (r * c + ch) * bins;
          for (int64_t b = 0; b < bins; ++b) {
            PD_CHECK(arg[b] >= -1 && arg[b] < plane, "argmax out of range: ", arg[b]);
            if (arg[b] >= 0) g_plane[arg[b]] += gout[b];
          }
        }
      }
    }
  });
}

#define PD_INSTANTIATE_ROI(T)                                                                \
  template void roi_align_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const T*, \
                                     int64_t, T, int64_t, int64_t, int64_t, bool, T*);       \
  template void roi_align_backward<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                      int64_t, T, int64_t, int64_t, int64_t, bool, T*);      \
  template void roi_pool_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, const T*,  \
                                    int64_t, T, int64_t, int64_t, T*, int64_t*);             \
  template void roi_pool_backward<T>(const T*, const int64_t*, const T*, int64_t, int64_t,   \
                                     int64_t, int64_t, int64_t, int64_t, int64_t, T*);

PD_INSTANTIATE_ROI(float)
PD_INSTANTIATE_ROI(double)

}  // namespace pydetect
