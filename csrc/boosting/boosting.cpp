#include "boosting/boosting.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/check.h"
#include "common/parallel.h"

namespace pydetect {
namespace boosting {
namespace {

// Quality of a split whose left leaf holds positive / negative weight (lp, ln) out of the
// node's (tp, tn), as a fraction num / den to maximise (den > 0):
//   Discrete: minus the weighted misclassification, -(min(lp, ln) + min(rp, rn));
//   Real:     minus Schapire & Singer's Z, -2 (sqrt(lp ln) + sqrt(rp rn));
//   Gentle:   the weighted squared error of the leaf means is W - (sl^2 / wl + sr^2 / wr)
//             (s = sum of y w, w = sum of w), so maximise (sl^2 wr + sr^2 wl) / (wl wr). The
//             fraction is compared by cross-multiplying: no division in the scan. For Gentle
//             the running sums are (sl, wl) and the node totals (S, W) instead of (lp, ln)
//             and (tp, tn): fewer operations per candidate.
struct Score {
  double num, den;
};

template <Algorithm A>
inline Score split_score(double lp, double ln, double tp, double tn) {
  if (A == Algorithm::Gentle) {  // (lp, ln, tp, tn) hold (sl, wl, S, W)
    const double sl = lp, wl = ln, sr = tp - lp, wr = tn - ln;
    if (wl > 0 && wr > 0) return {sl * sl * wr + sr * sr * wl, wl * wr};
    if (wl > 0) return {sl * sl, wl};  // an empty (zero-weight) leaf adds nothing
    if (wr > 0) return {sr * sr, wr};
    return {0.0, 1.0};
  }
  const double rp = std::max(tp - lp, 0.0), rn = std::max(tn - ln, 0.0);  // sums may round below 0
  if (A == Algorithm::Discrete) return {-(std::min(lp, ln) + std::min(rp, rn)), 1.0};
  return {-2.0 * (std::sqrt(lp * ln) + std::sqrt(rp * rn)), 1.0};
}

inline Score split_score(Algorithm a, double lp, double ln, double tp, double tn) {
  switch (a) {
    case Algorithm::Discrete: return split_score<Algorithm::Discrete>(lp, ln, tp, tn);
    case Algorithm::Real: return split_score<Algorithm::Real>(lp, ln, tp, tn);
    default: return split_score<Algorithm::Gentle>(lp, ln, tp, tn);
  }
}

// a strictly better than b
inline bool better(const Score& a, double b_num, double b_den) {
  return a.num * b_den > b_num * a.den;
}

// Leaf output before the Discrete scaling: +-1 (Discrete), half log-odds (Real) smoothed by
// eps (Schapire & Singer 1999, sec. 4.2, advise eps of the order of 1/N), weighted mean of y
// (Gentle).
inline double leaf_value(Algorithm a, double wp, double wn, double eps) {
  switch (a) {
    case Algorithm::Discrete: return wp >= wn ? 1.0 : -1.0;
    case Algorithm::Real: return 0.5 * std::log((wp + eps) / (wn + eps));
    default: {
      const double w = wp + wn;
      return w > 0 ? (wp - wn) / w : 0.0;
    }
  }
}

// Midpoint threshold a < t <= b (OpenCV's (a + b) / 2), nudged to b if rounding hit a.
inline float midpoint(float a, float b) {
  const float t = (a + b) * 0.5f;
  return t > a ? t : b;
}

// Maps a float to a uint32 whose unsigned order is the float order (-0 and +0 tie).
inline uint32_t ordered_bits(float v) {
  if (v == 0.0f) v = 0.0f;
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

}  // namespace

Booster::Booster(const float* x, int64_t n, int64_t f, const int8_t* y, const double* w, Params p)
    : n_(n), f_(f), params_(p) {
  PD_CHECK(n >= 1, "boosting needs at least one sample, got ", n);
  PD_CHECK(f >= 1, "boosting needs at least one feature, got ", f);
  PD_CHECK(n <= int64_t(std::numeric_limits<uint32_t>::max()), "too many samples: ", n);
  PD_CHECK(p.max_depth == 1 || p.max_depth == 2, "max_depth must be 1 or 2, got ", p.max_depth);
  y_.assign(y, y + n);
  for (int64_t i = 0; i < n; ++i) PD_CHECK(y_[i] == 1 || y_[i] == -1, "labels must be +1 or -1, got ", int(y_[i]));
  weights_.resize(n);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    weights_[i] = w ? w[i] : 1.0 / double(n);
    PD_CHECK(weights_[i] >= 0 && std::isfinite(weights_[i]), "sample weights must be finite and >= 0");
    total += weights_[i];
  }
  PD_CHECK(total > 0, "sample weights sum to 0");
  for (auto& v : weights_) v /= total;
  scores_.assign(n, 0.0);
  mask_.assign(n, 1);

  sorted_values_.resize(static_cast<size_t>(f) * n);
  sorted_index_.resize(static_cast<size_t>(f) * n);
  // Blocks of features: read rows of x contiguously, then sort each feature.
  constexpr int64_t kBlock = 64;
  parallel_for(0, (f + kBlock - 1) / kBlock, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> column(static_cast<size_t>(kBlock) * n);
    std::vector<uint64_t> order(n);
    for (int64_t b = lo; b < hi; ++b) {
      const int64_t f0 = b * kBlock, f1 = std::min(f, f0 + kBlock);
      for (int64_t i = 0; i < n; ++i) {
        const float* row = x + i * f;
        for (int64_t j = f0; j < f1; ++j) column[(j - f0) * n + i] = row[j];
      }
      for (int64_t j = f0; j < f1; ++j) {
        const float* col = column.data() + (j - f0) * n;
        // One integer key per sample: order-preserving float bits, then the index (ties
        // keep index order), sorted with plain integer compares.
        for (int64_t i = 0; i < n; ++i) order[i] = (uint64_t(ordered_bits(col[i])) << 32) | uint64_t(i);
        std::sort(order.begin(), order.end());
        float* sv = sorted_values_.data() + j * n;
        uint32_t* si = sorted_index_.data() + j * n;
        for (int64_t i = 0; i < n; ++i) {
          si[i] = uint32_t(order[i] & 0xffffffffu);
          sv[i] = col[si[i]];
        }
      }
    }
  });
}

void Booster::trim() {
  // OpenCV's CvBoost::trim_weights: drop the lightest samples until their weights add up to
  // at least 1 - rate; samples tied with the lightest kept weight stay, and so does the
  // heaviest sample (OpenCV would keep none when it alone holds more than rate).
  const double rate = params_.weight_trim_rate;
  if (!(rate > 0.0 && rate < 1.0)) {
    std::fill(mask_.begin(), mask_.end(), 1);
    return;
  }
  std::vector<double> sorted(weights_);
  std::sort(sorted.begin(), sorted.end());
  double sum = 1.0 - rate;
  int64_t i = 0;
  for (; i < n_; ++i) {
    if (sum <= 0) break;
    sum -= sorted[i];
  }
  const double threshold = sorted[std::min(i, n_ - 1)];
  for (int64_t k = 0; k < n_; ++k) mask_[k] = weights_[k] >= threshold;
}

namespace {

struct ScanInput {
  const float* sorted_values;
  const uint32_t* sorted_index;
  int64_t n;
  const int8_t* node_of;
  const double *wpos, *wneg;
  double tp, tn;
};

// Best split of feature j over the samples of node 0 (the root), in two passes. Pass 1 walks
// the sorted order of the kept samples and, at every candidate cut (a value above the previous
// kept one), records the running sums before that sample and the two values around the cut,
// writing unconditionally and advancing the count by 0 or 1 (no unpredictable branch). Pass 2
// scores the candidates (independent of each other) and keeps the first best in the same
// order as a single scan: same sums, same scores, same comparisons, so the same split.
struct RootScratch {
  std::vector<double> lp, ln;
  std::vector<float> lo, hi;
  explicit RootScratch(int64_t n) : lp(n + 1), ln(n + 1), lo(n + 1), hi(n + 1) {}
};

template <Algorithm A>
Booster::Split scan_root(const ScanInput& in, int64_t j, RootScratch& s) {
  const float* sv = in.sorted_values + j * in.n;
  const uint32_t* si = in.sorted_index + j * in.n;
  double lp = 0, ln = 0;
  float prev = -std::numeric_limits<float>::infinity();
  int64_t m = 0;
  bool seen = false;
  double* cl = s.lp.data();
  double* cn = s.ln.data();
  float* clo = s.lo.data();
  float* chi = s.hi.data();
  for (int64_t k = 0; k < in.n; ++k) {
    const uint32_t i = si[k];
    if (in.node_of[i] < 0) continue;
    const float v = sv[k];
    cl[m] = lp;
    cn[m] = ln;
    clo[m] = prev;
    chi[m] = v;
    m += (seen & (v > prev)) ? 1 : 0;
    lp += in.wpos[i];
    ln += in.wneg[i];
    prev = v;
    seen = true;
  }
  Booster::Split out;
  if (m == 0) return out;
  Score best = split_score<A>(cl[0], cn[0], in.tp, in.tn);
  int64_t best_c = 0;
  for (int64_t c = 1; c < m; ++c) {
    const Score sc = split_score<A>(cl[c], cn[c], in.tp, in.tn);
    if (better(sc, best.num, best.den)) {
      best = sc;
      best_c = c;
    }
  }
  out = Booster::Split{true, int32_t(j), midpoint(clo[best_c], chi[best_c]), best.num, best.den};
  return out;
}

}  // namespace

std::vector<Booster::Split> Booster::best_splits(const std::vector<int8_t>& node_of,
                                                  int num_nodes) const {
  const Algorithm algo = params_.algorithm;
  // Totals per node.
  std::vector<double> tp(num_nodes, 0.0), tn(num_nodes, 0.0);
  for (int64_t i = 0; i < n_; ++i) {
    const int node = node_of[i];
    if (node < 0) continue;
    if (algo == Algorithm::Gentle) {
      tp[node] += double(y_[i]) * weights_[i];
      tn[node] += weights_[i];
    } else {
      (y_[i] > 0 ? tp : tn)[node] += weights_[i];
    }
  }
  // Per-feature best, then a deterministic reduction in feature order.
  std::vector<Split> per_feature(static_cast<size_t>(f_) * num_nodes);
  // Per-sample positive / negative weight (0 for the other class) and node.
  std::vector<double> wpos(n_), wneg(n_);
  for (int64_t i = 0; i < n_; ++i) {
    if (algo == Algorithm::Gentle) {  // running (sum of y w, sum of w)
      wpos[i] = double(y_[i]) * weights_[i];
      wneg[i] = weights_[i];
    } else {
      wpos[i] = y_[i] > 0 ? weights_[i] : 0.0;
      wneg[i] = y_[i] > 0 ? 0.0 : weights_[i];
    }
  }
  if (num_nodes == 1) {
    // Root: one node, everything in registers, the loss inlined per algorithm.
    const ScanInput in{sorted_values_.data(), sorted_index_.data(), n_, node_of.data(),
                       wpos.data(), wneg.data(), tp[0], tn[0]};
    parallel_for(0, f_, 256, [&](int64_t lo, int64_t hi) {
      RootScratch scratch(n_);
      for (int64_t j = lo; j < hi; ++j) {
        switch (algo) {
          case Algorithm::Discrete: per_feature[j] = scan_root<Algorithm::Discrete>(in, j, scratch); break;
          case Algorithm::Real: per_feature[j] = scan_root<Algorithm::Real>(in, j, scratch); break;
          default: per_feature[j] = scan_root<Algorithm::Gentle>(in, j, scratch); break;
        }
      }
    });
  } else {
    parallel_for(0, f_, 256, [&](int64_t lo, int64_t hi) {
      std::vector<double> lp(num_nodes), ln(num_nodes);
      std::vector<float> prev(num_nodes);
      std::vector<uint8_t> seen(num_nodes);
      for (int64_t j = lo; j < hi; ++j) {
        std::fill(lp.begin(), lp.end(), 0.0);
        std::fill(ln.begin(), ln.end(), 0.0);
        std::fill(seen.begin(), seen.end(), 0);
        Split* best = per_feature.data() + j * num_nodes;
        const float* sv = sorted_values_.data() + j * n_;
        const uint32_t* si = sorted_index_.data() + j * n_;
        for (int64_t k = 0; k < n_; ++k) {
          const uint32_t i = si[k];
          const int node = node_of[i];
          if (node < 0) continue;
          const float v = sv[k];
          if (seen[node] && v > prev[node]) {
            const Score sc = split_score(algo, lp[node], ln[node], tp[node], tn[node]);
            Split& b = best[node];
            if (!b.valid || better(sc, b.num, b.den)) {
              b.valid = true;
              b.num = sc.num;
              b.den = sc.den;
              b.feature = int32_t(j);
              b.threshold = midpoint(prev[node], v);
            }
          }
          lp[node] += wpos[i];
          ln[node] += wneg[i];
          prev[node] = v;
          seen[node] = 1;
        }
      }
    });
  }
  std::vector<Split> out(num_nodes);
  for (int64_t j = 0; j < f_; ++j)
    for (int node = 0; node < num_nodes; ++node) {
      const Split& s = per_feature[j * num_nodes + node];
      if (s.valid && (!out[node].valid || better(Score{s.num, s.den}, out[node].num, out[node].den)))
        out[node] = s;
    }
  return out;
}

void Booster::feature_values(int32_t feature, std::vector<float>* out) const {
  out->resize(n_);
  const float* sv = sorted_values_.data() + int64_t(feature) * n_;
  const uint32_t* si = sorted_index_.data() + int64_t(feature) * n_;
  for (int64_t k = 0; k < n_; ++k) (*out)[si[k]] = sv[k];
}

Tree Booster::add_tree() {
  const Algorithm algo = params_.algorithm;
  trim();
  std::vector<int8_t> node_of(n_);
  for (int64_t i = 0; i < n_; ++i) node_of[i] = mask_[i] ? 0 : -1;

  Tree tree;
  // Leaf assignment of every sample (all of them, trimmed or not) and leaf weights from the
  // kept ones.
  std::vector<int32_t> leaf_of(n_, 0);
  const Split root = best_splits(node_of, 1)[0];
  if (!root.valid) {
    // No feature separates the kept samples: a constant tree (a stump whose two leaves agree).
    tree.left = {0};
    tree.right = {-1};
    tree.feature = {0};
    tree.threshold = {0.0f};
    tree.leaves.assign(2, 0.0);
  } else {
    std::vector<float> root_values;
    feature_values(root.feature, &root_values);
    std::vector<int8_t> side(n_);
    for (int64_t i = 0; i < n_; ++i) side[i] = root_values[i] < root.threshold ? 0 : 1;
    Split child[2];
    if (params_.max_depth >= 2) {
      for (int64_t i = 0; i < n_; ++i) node_of[i] = mask_[i] ? side[i] : -1;
      const std::vector<Split> c = best_splits(node_of, 2);
      child[0] = c[0];
      child[1] = c[1];
    }
    tree.left = {0};
    tree.right = {0};
    tree.feature = {root.feature};
    tree.threshold = {root.threshold};
    int32_t next_leaf = 0;
    for (int s = 0; s < 2; ++s) {
      int32_t ref;
      if (child[s].valid) {
        const int32_t node = int32_t(tree.feature.size());
        tree.feature.push_back(child[s].feature);
        tree.threshold.push_back(child[s].threshold);
        tree.left.push_back(-next_leaf);
        tree.right.push_back(-(next_leaf + 1));
        std::vector<float> values;
        feature_values(child[s].feature, &values);
        for (int64_t i = 0; i < n_; ++i)
          if (side[i] == s) leaf_of[i] = next_leaf + (values[i] < child[s].threshold ? 0 : 1);
        next_leaf += 2;
        ref = node;
      } else {
        for (int64_t i = 0; i < n_; ++i)
          if (side[i] == s) leaf_of[i] = next_leaf;
        ref = -next_leaf;
        next_leaf += 1;
      }
      (s == 0 ? tree.left[0] : tree.right[0]) = ref;
    }
    tree.leaves.assign(next_leaf, 0.0);
  }
  // Leaf values from the kept samples.
  const size_t num_leaves = tree.leaves.size();
  std::vector<double> wp(num_leaves, 0.0), wn(num_leaves, 0.0);
  for (int64_t i = 0; i < n_; ++i)
    if (mask_[i]) (y_[i] > 0 ? wp : wn)[leaf_of[i]] += weights_[i];
  for (size_t l = 0; l < num_leaves; ++l) tree.leaves[l] = leaf_value(algo, wp[l], wn[l], 0.5 / double(n_));
  if (!root.valid) tree.leaves[1] = tree.leaves[0];  // constant tree: both leaves agree

  // Weight update over all samples (OpenCV's CvCascadeBoost::update_weights).
  double total = 0;
  if (algo == Algorithm::Discrete) {
    double err = 0, sum = 0;
    for (int64_t i = 0; i < n_; ++i) {
      sum += weights_[i];
      if (tree.leaves[leaf_of[i]] != double(y_[i])) err += weights_[i];
    }
    err = sum > 0 ? err / sum : 0.0;
    constexpr double eps = 1e-5;  // OpenCV's logRatio clamp
    err = std::min(std::max(err, eps), 1.0 - eps);
    const double c = std::log((1.0 - err) / err);
    const double up = std::exp(c);
    for (int64_t i = 0; i < n_; ++i) {
      const bool wrong = tree.leaves[leaf_of[i]] != double(y_[i]);
      if (wrong) weights_[i] *= up;
      total += weights_[i];
    }
    for (auto& v : tree.leaves) v *= c;
    for (int64_t i = 0; i < n_; ++i) scores_[i] += tree.leaves[leaf_of[i]];
  } else {
    for (int64_t i = 0; i < n_; ++i) {
      const double h = tree.leaves[leaf_of[i]];
      scores_[i] += h;
      weights_[i] *= std::exp(-double(y_[i]) * h);
      total += weights_[i];
    }
  }
  if (total > 0)
    for (auto& v : weights_) v /= total;
  return tree;
}

void decision_function(const std::vector<Tree>& trees, const float* x, int64_t n, int64_t f, double* out) {
  for (size_t t = 0; t < trees.size(); ++t) {
    const Tree& tree = trees[t];
    const size_t k = tree.left.size();
    PD_CHECK(tree.right.size() == k && tree.feature.size() == k && tree.threshold.size() == k,
             "tree ", t, ": left, right, feature and threshold must have one length");
    check_tree(tree.left.data(), tree.right.data(), static_cast<int64_t>(k), static_cast<int64_t>(t));
    PD_CHECK(tree.leaves.size() == k + 1, "tree ", t, " has ", k, " nodes, so needs ", k + 1, " leaves, got ",
             tree.leaves.size());
    for (int32_t feature : tree.feature)
      PD_CHECK(feature >= 0 && feature < f, "tree ", t, ": feature index ", feature, " out of range [0, ", f, ")");
  }
  parallel_for(0, n, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* row = x + i * f;
      double sum = 0.0;
      for (const Tree& tree : trees) sum += tree_value(tree, [row](int32_t j) { return row[j]; });
      out[i] = sum;
    }
  });
}

}  // namespace boosting
}  // namespace pydetect
