#include "boxes/nms.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "boxes/box_math.h"
#include "common/parallel.h"

namespace pydetect {
namespace {

// Remaining candidates as structure-of-arrays, so the IoU pass over them vectorises.
template <class T>
struct Candidates {
  std::vector<T> x1, y1, x2, y2, area;
  std::vector<int64_t> index;

  Candidates(const T* boxes, const int64_t* order, int64_t count)
      : x1(count), y1(count), x2(count), y2(count), area(count), index(order, order + count) {
    for (int64_t k = 0; k < count; ++k) {
      const T* b = boxes + 4 * order[k];
      x1[k] = b[0], y1[k] = b[1], x2[k] = b[2], y2[k] = b[3];
      area[k] = box_area(b[0], b[1], b[2], b[3]);
    }
  }

  void move(int64_t from, int64_t to) {
    x1[to] = x1[from], y1[to] = y1[from], x2[to] = x2[from], y2[to] = y2[from];
    area[to] = area[from], index[to] = index[from];
  }

  // IoU of candidate k with every candidate in [begin, end), written to iou[begin, end).
  void iou_with(int64_t k, int64_t begin, int64_t end, T* iou) const {
    const T kx1 = x1[k], ky1 = y1[k], kx2 = x2[k], ky2 = y2[k], karea = area[k];
    for (int64_t j = begin; j < end; ++j) {
      const T inter = intersection_area(kx1, ky1, kx2, ky2, x1[j], y1[j], x2[j], y2[j]);
      iou[j] = iou_from_areas(inter, karea, area[j]);
    }
  }
};

// Greedy NMS over candidates already in visiting order (decreasing score), by compaction.
// The front candidate is kept, the rest are filtered against it and compacted, so every
// kept box only looks at the boxes that are still alive: the cost is the sum over kept
// boxes of the survivors, not kept x n as in a scan over suppression flags.
template <class T>
std::vector<int64_t> nms_by_compaction(const T* boxes, const int64_t* order, int64_t count,
                                       double iou_threshold) {
  std::vector<int64_t> keep;
  if (count == 0) return keep;
  Candidates<T> c(boxes, order, count);
  std::vector<T> iou(count);
  const T threshold = threshold_in<T>(iou_threshold);
  while (count > 0) {
    keep.push_back(c.index[0]);
    c.iou_with(0, 1, count, iou.data());
    int64_t alive = 0;
    for (int64_t j = 1; j < count; ++j) {
      if (!(iou[j] > threshold)) c.move(j, alive++);
    }
    count = alive;
  }
  return keep;
}

// Greedy NMS with a uniform grid over the kept boxes. A box is kept iff no already kept box
// has IoU > threshold with it; since threshold >= 0, that needs an intersection of positive
// area, and two such boxes always share a grid cell (cell indices are a monotone function of
// the coordinates). So each box is checked only against the kept boxes in its own cells,
// with the same IoU expression as the scan: the result is identical, the cost is
// n x (kept boxes nearby) instead of kept x survivors.
template <class T>
std::vector<int64_t> nms_by_grid(const T* boxes, const int64_t* order, int64_t count,
                                 double iou_threshold) {
  std::vector<int64_t> keep;
  if (count == 0) return keep;
  const T threshold = threshold_in<T>(iou_threshold);

  // Cell size: half the median box side, so a typical box covers at most 3 x 3 cells and a
  // cell holds few kept boxes (half the median was 2-4x faster than the full median at
  // 10k-50k clustered boxes in bench_ops.py).
  std::vector<T> sides;
  sides.reserve(count);
  T min_x = std::numeric_limits<T>::max(), min_y = min_x;
  T max_x = std::numeric_limits<T>::lowest(), max_y = max_x;
  for (int64_t k = 0; k < count; ++k) {
    const T* b = boxes + 4 * order[k];
    if (!(b[2] > b[0] && b[3] > b[1])) continue;  // empty boxes never interact
    sides.push_back(std::max(b[2] - b[0], b[3] - b[1]));
    min_x = std::min(min_x, b[0]), min_y = std::min(min_y, b[1]);
    max_x = std::max(max_x, b[2]), max_y = std::max(max_y, b[3]);
  }
  if (sides.empty()) {  // only empty boxes: nothing can suppress anything
    keep.assign(order, order + count);
    return keep;
  }
  std::nth_element(sides.begin(), sides.begin() + sides.size() / 2, sides.end());
  double cell = 0.5 * static_cast<double>(sides[sides.size() / 2]);
  const double span_x = static_cast<double>(max_x) - min_x, span_y = static_cast<double>(max_y) - min_y;
  // float64 boxes near +-1e308 can make a side or a span overflow to infinity: no finite
  // cell size fits them, and the scan gives the same result without a grid.
  if (!std::isfinite(cell) || !std::isfinite(span_x) || !std::isfinite(span_y)) {
    return nms_by_compaction(boxes, order, count, iou_threshold);
  }
  // Bound the grid to a few cells per box (sparse outliers would otherwise blow it up).
  const double max_cells = 4.0 * static_cast<double>(count) + 64.0;
  if ((span_x / cell + 1) * (span_y / cell + 1) > max_cells) {
    cell = std::max(cell, std::sqrt(span_x * span_y / max_cells) + std::max(span_x, span_y) / max_cells);
  }
  const double inv_cell = 1.0 / cell;
  // Cell index of a coordinate, clamped to [0, n) in double before the conversion (a
  // product of huge spans can round outside the grid). Monotone in v, which is all the
  // correctness argument above needs.
  auto cell_of = [inv_cell](double v, double origin, int64_t n) {
    const double c = (v - origin) * inv_cell;
    if (!(c > 0.0)) return int64_t(0);
    return c < double(n - 1) ? static_cast<int64_t>(c) : n - 1;
  };
  const int64_t cols = cell_of(max_x, min_x, int64_t(max_cells)) + 1;
  const int64_t rows = cell_of(max_y, min_y, int64_t(max_cells)) + 1;

  // A box covering more than this many cells is kept in one list that every query scans.
  constexpr int64_t kMaxCellsPerBox = 16;
  std::vector<std::vector<int32_t>> grid(static_cast<size_t>(rows * cols));
  std::vector<int32_t> large;
  std::vector<T> kx1, ky1, kx2, ky2, karea;
  std::vector<int64_t> stamp;  // last candidate that examined each kept box
  for (int64_t k = 0; k < count; ++k) {
    const int64_t i = order[k];
    const T* b = boxes + 4 * i;
    if (!(b[2] > b[0] && b[3] > b[1])) {
      keep.push_back(i);
      continue;
    }
    const T x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3];
    const T area = box_area(x1, y1, x2, y2);
    const int64_t c0 = cell_of(x1, min_x, cols), c1 = cell_of(x2, min_x, cols);
    const int64_t r0 = cell_of(y1, min_y, rows), r1 = cell_of(y2, min_y, rows);
    auto suppresses = [&](int32_t kept) {
      if (stamp[kept] == k) return false;
      stamp[kept] = k;
      const T inter = intersection_area(kx1[kept], ky1[kept], kx2[kept], ky2[kept], x1, y1, x2, y2);
      return iou_from_areas(inter, karea[kept], area) > threshold;
    };
    bool suppressed = false;
    for (int32_t kept : large) {
      if ((suppressed = suppresses(kept))) break;
    }
    for (int64_t r = r0; r <= r1 && !suppressed; ++r) {
      for (int64_t c = c0; c <= c1 && !suppressed; ++c) {
        for (int32_t kept : grid[r * cols + c]) {
          if ((suppressed = suppresses(kept))) break;
        }
      }
    }
    if (suppressed) continue;
    const int32_t slot = static_cast<int32_t>(kx1.size());
    kx1.push_back(x1), ky1.push_back(y1), kx2.push_back(x2), ky2.push_back(y2);
    karea.push_back(area), stamp.push_back(-1);
    keep.push_back(i);
    if ((r1 - r0 + 1) * (c1 - c0 + 1) > kMaxCellsPerBox) {
      large.push_back(slot);
    } else {
      for (int64_t r = r0; r <= r1; ++r)
        for (int64_t c = c0; c <= c1; ++c) grid[r * cols + c].push_back(slot);
    }
  }
  return keep;
}

// Below this many boxes the compaction scan wins (no grid to build); chosen with
// benchmarks/bench_ops.py --crossover (RESULTS.md, "NMS algorithm crossover").
constexpr int64_t kGridNmsMinBoxes = 400;

template <class T>
std::vector<int64_t> nms_in_order(const T* boxes, const int64_t* order, int64_t count,
                                  double iou_threshold, NmsAlgorithm algorithm) {
  if (algorithm == NmsAlgorithm::Auto) {
    algorithm = count >= kGridNmsMinBoxes ? NmsAlgorithm::Grid : NmsAlgorithm::Compaction;
  }
  return algorithm == NmsAlgorithm::Grid ? nms_by_grid(boxes, order, count, iou_threshold)
                                         : nms_by_compaction(boxes, order, count, iou_threshold);
}

template <class T>
std::vector<int64_t> order_by_decreasing_score(const T* scores, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [scores](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return order;
}

}  // namespace

template <class T>
std::vector<int64_t> nms(const T* boxes, const T* scores, int64_t n, double iou_threshold,
                         NmsAlgorithm algorithm) {
  const std::vector<int64_t> order = order_by_decreasing_score(scores, n);
  return nms_in_order(boxes, order.data(), n, iou_threshold, algorithm);
}

template <class T>
std::vector<int64_t> batched_nms(const T* boxes, const T* scores, const int64_t* labels, int64_t n,
                                 double iou_threshold, NmsAlgorithm algorithm) {
  // One sort groups the labels and orders each group by decreasing score, lower index first.
  std::vector<int64_t> order = order_by_decreasing_score(scores, n);
  std::stable_sort(order.begin(), order.end(),
                   [labels](int64_t a, int64_t b) { return labels[a] < labels[b]; });
  std::vector<int64_t> group_start;
  for (int64_t k = 0; k < n; ++k) {
    if (k == 0 || labels[order[k]] != labels[order[k - 1]]) group_start.push_back(k);
  }
  group_start.push_back(n);
  const int64_t num_groups = static_cast<int64_t>(group_start.size()) - 1;

  std::vector<std::vector<int64_t>> kept(std::max<int64_t>(num_groups, 0));
  parallel_for(0, num_groups, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t g = lo; g < hi; ++g) {
      kept[g] = nms_in_order(boxes, order.data() + group_start[g],
                             group_start[g + 1] - group_start[g], iou_threshold, algorithm);
    }
  });

  std::vector<int64_t> keep;
  for (const auto& group : kept) keep.insert(keep.end(), group.begin(), group.end());
  std::sort(keep.begin(), keep.end(), [scores](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  return keep;
}

std::vector<int64_t> nms_reduce_mask(const uint64_t* mask, int64_t n) {
  const int64_t words = (n + 63) / 64;
  std::vector<uint64_t> removed(static_cast<size_t>(words), 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / 64;
    if (removed[block] >> (i % 64) & 1) continue;
    keep.push_back(i);
    const uint64_t* row = mask + i * words;
    for (int64_t j = block; j < words; ++j) removed[j] |= row[j];
  }
  return keep;
}

template <class T>
void soft_nms(const T* boxes, const T* scores, int64_t n, double iou_threshold, double sigma,
              double score_threshold, SoftNmsMethod method, std::vector<int64_t>* keep,
              std::vector<T>* kept_scores) {
  keep->clear();
  kept_scores->clear();
  // Candidates stay in index order, so the first maximum found is the lowest index.
  std::vector<int64_t> alive_index;
  for (int64_t i = 0; i < n; ++i) {
    if (scores[i] >= score_threshold) alive_index.push_back(i);
  }
  int64_t count = static_cast<int64_t>(alive_index.size());
  if (count == 0) return;
  Candidates<T> c(boxes, alive_index.data(), count);
  std::vector<T> score(count), iou(count);
  for (int64_t k = 0; k < count; ++k) score[k] = scores[c.index[k]];
  const T linear_threshold = threshold_in<T>(iou_threshold);
  const T inv_sigma = T(1) / static_cast<T>(sigma);

  int64_t best = std::max_element(score.begin(), score.begin() + count) - score.begin();
  while (count > 0) {
    keep->push_back(c.index[best]);
    kept_scores->push_back(score[best]);
    c.iou_with(best, 0, count, iou.data());
    // Decay, drop and compact in one pass, finding the next maximum on the way.
    int64_t alive = 0, next_best = -1;
    for (int64_t j = 0; j < count; ++j) {
      if (j == best) continue;
      T s = score[j];
      const T overlap = iou[j];
      if (overlap > T(0)) {  // also false for NaN (two zero-area boxes): no decay
        if (method == SoftNmsMethod::Gaussian) {
          s *= std::exp(-(overlap * overlap) * inv_sigma);
        } else if (overlap > linear_threshold) {
          s *= T(1) - overlap;
        }
      }
      if (!(s >= score_threshold)) continue;
      c.move(j, alive);
      score[alive] = s;
      if (next_best < 0 || s > score[next_best]) next_best = alive;
      ++alive;
    }
    count = alive;
    best = next_best;
  }
}

#define PD_INSTANTIATE(T)                                                                     \
  template std::vector<int64_t> nms<T>(const T*, const T*, int64_t, double, NmsAlgorithm);    \
  template std::vector<int64_t> batched_nms<T>(const T*, const T*, const int64_t*, int64_t,   \
                                               double, NmsAlgorithm);                         \
  template void soft_nms<T>(const T*, const T*, int64_t, double, double, double, SoftNmsMethod, \
                            std::vector<int64_t>*, std::vector<T>*);
PD_INSTANTIATE(float)
PD_INSTANTIATE(double)
#undef PD_INSTANTIATE

}  // namespace pydetect
