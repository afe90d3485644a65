// Implicit Shape Model kernels: vote accumulation and balloon mean-shift (see ism.h).
#include "ism/ism.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/check.h"
#include "common/host_device.h"
#include "common/parallel.h"
#include "ism/ism_math.h"

namespace pydetect {
namespace ism {

template <class T>
void accumulate_votes(const T* features, int64_t num_features, const int64_t* match_ptr,
                      const int64_t* match_entry, const T* match_weight, int64_t num_matches,
                      const int64_t* occ_ptr, int64_t num_entries, const T* occ,
                      const T* occ_weight, int64_t num_occ, std::vector<T>* votes,
                      std::vector<T>* weights, std::vector<int64_t>* vote_feature,
                      std::vector<int64_t>* vote_occurrence) {
  PD_CHECK(match_ptr[0] == 0 && match_ptr[num_features] == num_matches,
           "match_ptr must start at 0 and end at the number of matches (", num_matches,
           "), got ", match_ptr[0], " and ", match_ptr[num_features]);
  PD_CHECK(occ_ptr[0] == 0 && occ_ptr[num_entries] == num_occ,
           "occ_ptr must start at 0 and end at the number of occurrences (", num_occ,
           "), got ", occ_ptr[0], " and ", occ_ptr[num_entries]);
  for (int64_t e = 0; e < num_entries; ++e) {
    PD_CHECK(occ_ptr[e] <= occ_ptr[e + 1], "occ_ptr must be non-decreasing (entry ", e, ")");
  }
  // Pass 1: votes per feature (serial checks, cheap), then offsets.
  std::vector<int64_t> offset(static_cast<size_t>(num_features) + 1, 0);
  for (int64_t f = 0; f < num_features; ++f) {
    PD_CHECK(match_ptr[f] <= match_ptr[f + 1], "match_ptr must be non-decreasing (feature ", f, ")");
    int64_t n = 0;
    for (int64_t k = match_ptr[f]; k < match_ptr[f + 1]; ++k) {
      const int64_t e = match_entry[k];
      PD_CHECK(e >= 0 && e < num_entries, "match_entry[", k, "] = ", e, " is not an entry index in [0, ",
               num_entries, ")");
      n += occ_ptr[e + 1] - occ_ptr[e];
    }
    offset[f + 1] = offset[f] + n;
  }
  const int64_t num_votes = offset[num_features];
  votes->assign(static_cast<size_t>(num_votes) * 3, T(0));
  weights->assign(static_cast<size_t>(num_votes), T(0));
  vote_feature->assign(static_cast<size_t>(num_votes), 0);
  vote_occurrence->assign(static_cast<size_t>(num_votes), 0);
  T* pv = votes->data();
  T* pw = weights->data();
  int64_t* pf = vote_feature->data();
  int64_t* po = vote_occurrence->data();
  // Pass 2: every feature writes its own slice.
  parallel_for(0, num_features, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t f = lo; f < hi; ++f) {
      const double fx = features[3 * f], fy = features[3 * f + 1], fs = features[3 * f + 2];
      int64_t v = offset[f];
      for (int64_t k = match_ptr[f]; k < match_ptr[f + 1]; ++k) {
        const int64_t e = match_entry[k];
        const double we = match_weight[k];
        for (int64_t o = occ_ptr[e]; o < occ_ptr[e + 1]; ++o, ++v) {
          double vx, vy, vs;
          cast_vote(fx, fy, fs, occ[3 * o], occ[3 * o + 1], occ[3 * o + 2], &vx, &vy, &vs);
          pv[3 * v] = T(vx);
          pv[3 * v + 1] = T(vy);
          pv[3 * v + 2] = T(vs);
          pw[v] = T(we * double(occ_weight[o]));
          pf[v] = f;
          po[v] = o;
        }
      }
    }
  });
}

namespace {

// floor(offset / cell) clamped to [0, n) before the conversion to an integer: offsets
// and cells may be huge or infinite (votes spread over +-1e308), and NaN (inf / inf, the
// log of a non-positive scale) maps to cell 0.
int64_t cell_index(double offset, double cell, int64_t n) {
  const double c = std::floor(offset / cell);
  if (!(c > 0)) return 0;
  return c < double(n - 1) ? int64_t(c) : n - 1;
}

// A uniform 3-D grid over the votes, cells in CSR layout, so that a window visits only
// the votes of the cells it overlaps. Axes: x, y and u = log(s) (adaptive windows span a
// fixed range of log-scale) or u = s (fixed windows).
struct Grid {
  double lo[3] = {0, 0, 0}, cell[3] = {1, 1, 1};
  int64_t n[3] = {1, 1, 1};
  std::vector<int64_t> start;  // (nx * ny * nu + 1)
  std::vector<int64_t> index;  // vote indices grouped by cell

  int64_t at(int d, double v) const { return cell_index(v - lo[d], cell[d], n[d]); }
};

HOST_DEVICE double grid_u(bool adaptive, double s) { return adaptive ? std::log(s) : s; }

template <class T>
Grid build_grid(const T* votes, int64_t num, double cell_xy, double cell_u, bool adaptive) {
  Grid g;
  double hi[3] = {0, 0, 0};
  for (int64_t i = 0; i < num; ++i) {
    const double v[3] = {double(votes[3 * i]), double(votes[3 * i + 1]), grid_u(adaptive, votes[3 * i + 2])};
    for (int d = 0; d < 3; ++d) {
      if (i == 0 || v[d] < g.lo[d]) g.lo[d] = v[d];
      if (i == 0 || v[d] > hi[d]) hi[d] = v[d];
    }
  }
  // At most 1024 cells along x and y and 64 along u; cells no smaller than the hints.
  const double extent_xy = std::max(hi[0] - g.lo[0], hi[1] - g.lo[1]);
  g.cell[0] = g.cell[1] = std::max({cell_xy, extent_xy / 1024.0, 1e-12});
  g.cell[2] = std::max({cell_u, (hi[2] - g.lo[2]) / 64.0, 1e-12});
  // Cells per axis: the cell sizes above give at most 1025 (x, y) and 65 (u); an extent
  // that overflowed to infinity (votes at -1e308 and 1e308) gives an infinite cell and
  // one cell.
  const int64_t max_cells[3] = {1025, 1025, 65};
  auto count_cells = [&] {
    for (int d = 0; d < 3; ++d) g.n[d] = cell_index(hi[d] - g.lo[d], g.cell[d], max_cells[d]) + 1;
    return g.n[0] * g.n[1] * g.n[2];
  };
  // Keep the cell table no larger than ~4M entries.
  int64_t total = count_cells();
  while (total > (int64_t(1) << 22)) {
    for (int d = 0; d < 3; ++d) g.cell[d] *= 2;
    total = count_cells();
  }
  g.start.assign(static_cast<size_t>(total + 1), 0);
  std::vector<int64_t> cell_of(static_cast<size_t>(num));
  for (int64_t i = 0; i < num; ++i) {
    cell_of[i] = (g.at(2, grid_u(adaptive, votes[3 * i + 2])) * g.n[1] + g.at(1, votes[3 * i + 1])) * g.n[0] +
                 g.at(0, votes[3 * i]);
    ++g.start[cell_of[i] + 1];
  }
  std::partial_sum(g.start.begin(), g.start.end(), g.start.begin());
  g.index.resize(static_cast<size_t>(num));
  std::vector<int64_t> fill(g.start.begin(), g.start.end() - 1);
  for (int64_t i = 0; i < num; ++i) g.index[fill[cell_of[i]]++] = i;
  return g;
}

// Kernel-weighted sums over the votes inside the window at m: returns the score (vote
// mass under the kernel profile) and, through `mean`, the flat-window weighted mean.
template <class T>
double window_sums(const T* votes, const T* weights, const Grid& g, const MeanShiftParams& p,
                   const double m[3], double mean[3], double* flat_mass) {
  const Window w = window_at(m[2], p.bandwidth_xy, p.bandwidth_scale, p.adaptive);
  const double r = 1.0 / w.inv_hxy, rs = 1.0 / w.inv_hs;
  const int64_t ax = g.at(0, m[0] - r), bx = g.at(0, m[0] + r);
  const int64_t ay = g.at(1, m[1] - r), by = g.at(1, m[1] + r);
  const int64_t au = g.at(2, grid_u(p.adaptive, m[2] - rs)), bu = g.at(2, grid_u(p.adaptive, m[2] + rs));
  double sx = 0, sy = 0, ss = 0, sw = 0, score = 0;
  for (int64_t cu = au; cu <= bu; ++cu) {
    for (int64_t cy = ay; cy <= by; ++cy) {
      const int64_t row = (cu * g.n[1] + cy) * g.n[0];
      for (int64_t k = g.start[row + ax]; k < g.start[row + bx + 1]; ++k) {
        const int64_t i = g.index[k];
        const double x = votes[3 * i], y = votes[3 * i + 1], s = votes[3 * i + 2];
        const double d2 = window_distance2(w, m[0], m[1], m[2], x, y, s);
        if (!(d2 <= 1.0)) continue;  // also NaN: inf - inf at the ends of the float64 range
        // Offsets from the centre, bounded by the window: sums of votes near 1e308 would
        // overflow.
        const double wi = weights[i];
        sx += wi * (x - m[0]);
        sy += wi * (y - m[1]);
        ss += wi * (s - m[2]);
        sw += wi;
        score += wi * kernel_profile(p.kernel, d2);
      }
    }
  }
  *flat_mass = sw;
  if (sw > 0) {
    mean[0] = m[0] + sx / sw;
    mean[1] = m[1] + sy / sw;
    mean[2] = m[2] + ss / sw;
  }
  return score;
}

}  // namespace

template <class T>
void mean_shift(const T* votes, const T* weights, int64_t num_votes, const T* seeds,
                int64_t num_seeds, const MeanShiftParams& p, std::vector<T>* modes,
                std::vector<T>* scores, std::vector<int64_t>* counts) {
  PD_CHECK(p.bandwidth_xy > 0 && p.bandwidth_scale > 0, "bandwidths must be > 0, got ",
           p.bandwidth_xy, " and ", p.bandwidth_scale);
  PD_CHECK(p.kernel == 0 || p.kernel == 1, "kernel must be 0 (flat) or 1 (Epanechnikov), got ", p.kernel);
  PD_CHECK(p.max_iter >= 1, "max_iter must be >= 1, got ", p.max_iter);
  PD_CHECK(p.tol >= 0 && p.merge >= 0, "tol and merge must be >= 0");
  for (int64_t i = 0; i < num_votes; ++i) {
    PD_CHECK(std::isfinite(double(votes[3 * i])) && std::isfinite(double(votes[3 * i + 1])) &&
                 std::isfinite(double(votes[3 * i + 2])) && std::isfinite(double(weights[i])),
             "votes and weights must be finite (vote ", i, ")");
    PD_CHECK(weights[i] >= 0, "weights must be >= 0, got ", weights[i], " at vote ", i);
    PD_CHECK(!p.adaptive || votes[3 * i + 2] > 0, "vote scales must be > 0 for the adaptive kernel, got ",
             votes[3 * i + 2], " at vote ", i);
  }
  for (int64_t i = 0; i < num_seeds; ++i) {
    PD_CHECK(!p.adaptive || seeds[3 * i + 2] > 0, "seed scales must be > 0 for the adaptive kernel, got ",
             seeds[3 * i + 2], " at seed ", i);
  }
  modes->clear();
  scores->clear();
  counts->clear();
  if (num_votes == 0 || num_seeds == 0) return;

  // Cell sizes: the window half-width at the median vote scale (the typical query), and
  // the window's log-scale (adaptive) or scale extent.
  double cell_xy = p.bandwidth_xy, cell_u = p.bandwidth_scale;
  if (p.adaptive) {
    std::vector<double> s(static_cast<size_t>(num_votes));
    for (int64_t i = 0; i < num_votes; ++i) s[i] = votes[3 * i + 2];
    std::nth_element(s.begin(), s.begin() + num_votes / 2, s.end());
    cell_xy = p.bandwidth_xy * s[num_votes / 2];
    cell_u = std::log1p(p.bandwidth_scale);
  }
  const Grid grid = build_grid(votes, num_votes, cell_xy, cell_u, p.adaptive);

  // Converge every seed independently.
  std::vector<double> conv(static_cast<size_t>(num_seeds) * 3);
  std::vector<double> conv_score(static_cast<size_t>(num_seeds), -1.0);
  parallel_for(0, num_seeds, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      double m[3] = {double(seeds[3 * i]), double(seeds[3 * i + 1]), double(seeds[3 * i + 2])};
      bool alive = true;
      for (int it = 0; it < p.max_iter; ++it) {
        double mean[3], mass;
        window_sums(votes, weights, grid, p, m, mean, &mass);
        if (!(mass > 0)) {
          alive = false;
          break;
        }
        const Window w = window_at(m[2], p.bandwidth_xy, p.bandwidth_scale, p.adaptive);
        const double shift2 = window_distance2(w, m[0], m[1], m[2], mean[0], mean[1], mean[2]);
        m[0] = mean[0];
        m[1] = mean[1];
        m[2] = mean[2];
        if (std::sqrt(shift2) <= p.tol) break;
        if (p.adaptive && !(m[2] > 0)) {
          alive = false;
          break;
        }
      }
      if (!alive) continue;
      double mean[3], mass;
      const double score = window_sums(votes, weights, grid, p, m, mean, &mass);
      if (!(mass > 0)) continue;
      conv[3 * i] = m[0];
      conv[3 * i + 1] = m[1];
      conv[3 * i + 2] = m[2];
      conv_score[i] = score;
    }
  });

  // Strongest first (ties: larger coordinates first, as scikit-learn's sort), then drop
  // modes inside the (merge-scaled) window of a stronger kept mode.
  std::vector<int64_t> order;
  for (int64_t i = 0; i < num_seeds; ++i)
    if (conv_score[i] >= 0 && conv_score[i] >= p.min_score) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (conv_score[a] != conv_score[b]) return conv_score[a] > conv_score[b];
    for (int d = 0; d < 3; ++d)
      if (conv[3 * a + d] != conv[3 * b + d]) return conv[3 * a + d] > conv[3 * b + d];
    return a < b;
  });
  std::vector<int64_t> kept;
  for (const int64_t i : order) {
    bool merged = false;
    for (size_t k = 0; k < kept.size(); ++k) {
      const int64_t j = kept[k];
      const Window w = window_at(conv[3 * j + 2], p.bandwidth_xy * p.merge, p.bandwidth_scale * p.merge,
                                 p.adaptive);
      if (p.merge > 0 ? window_distance2(w, conv[3 * j], conv[3 * j + 1], conv[3 * j + 2], conv[3 * i],
                                         conv[3 * i + 1], conv[3 * i + 2]) <= 1.0
                      : (conv[3 * j] == conv[3 * i] && conv[3 * j + 1] == conv[3 * i + 1] &&
                         conv[3 * j + 2] == conv[3 * i + 2])) {
        ++(*counts)[k];
        merged = true;
        break;
      }
    }
    if (merged) continue;
    kept.push_back(i);
    counts->push_back(1);
    for (int d = 0; d < 3; ++d) modes->push_back(T(conv[3 * i + d]));
    scores->push_back(T(conv_score[i]));
  }
}

#define PD_INSTANTIATE_ISM(T)                                                                     \
  template void accumulate_votes<T>(const T*, int64_t, const int64_t*, const int64_t*, const T*,  \
                                    int64_t, const int64_t*, int64_t, const T*, const T*, int64_t, \
                                    std::vector<T>*, std::vector<T>*, std::vector<int64_t>*,        \
                                    std::vector<int64_t>*);                                         \
  template void mean_shift<T>(const T*, const T*, int64_t, const T*, int64_t,                     \
                              const MeanShiftParams&, std::vector<T>*, std::vector<T>*,           \
                              std::vector<int64_t>*);
PD_INSTANTIATE_ISM(float)
PD_INSTANTIATE_ISM(double)
#undef PD_INSTANTIATE_ISM

}  // namespace ism
}  // namespace pydetect
