#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cascade/cascade.h"
#include "common/check.h"
#include "common/parallel.h"

namespace pydetect {
namespace cascade {

int Model::max_nodes_per_tree() const {
  int m = 0;
  for (int32_t n : weak_num_nodes) m = std::max<int>(m, n);
  return m;
}

bool Model::has_tilted() const {
  return std::any_of(tilted.begin(), tilted.end(), [](uint8_t t) { return t != 0; });
}

void Model::validate() const {
  PD_CHECK(feature_type == kHaar || feature_type == kLbp, "unknown feature type ", feature_type);
  PD_CHECK(window_width > 0 && window_height > 0, "window size must be positive, got ",
           window_width, "x", window_height);
  PD_CHECK(stage_threshold.size() == stage_num_weak.size(), "stage arrays differ in length");
  int64_t weaks = 0;
  for (int32_t n : stage_num_weak) {
    PD_CHECK(n >= 1, "every stage needs at least one weak classifier, got ", n);
    weaks += n;
  }
  PD_CHECK(weaks == static_cast<int64_t>(weak_num_nodes.size()), "stages list ", weaks,
           " weak classifiers but ", weak_num_nodes.size(), " trees were given");
  int64_t nodes = 0;
  for (int32_t n : weak_num_nodes) {
    PD_CHECK(n >= 1, "every tree needs at least one node, got ", n);
    nodes += n;
  }
  const size_t n_nodes = static_cast<size_t>(nodes);
  PD_CHECK(node_left.size() == n_nodes && node_right.size() == n_nodes &&
               node_feature.size() == n_nodes,
           "node arrays must hold ", nodes, " nodes");
  PD_CHECK(leaves.size() == n_nodes + weak_num_nodes.size(), "expected ",
           n_nodes + weak_num_nodes.size(), " leaves (nodes + 1 per tree), got ", leaves.size());
  if (feature_type == kHaar) {
    PD_CHECK(node_threshold.size() == n_nodes, "Haar nodes need thresholds");
  } else {
    PD_CHECK(node_subset.size() == n_nodes * 8, "LBP nodes need 8 subset words each");
  }
  const int nf = num_features();
  PD_CHECK(rects.size() == static_cast<size_t>(nf) * 12 &&
               weights.size() == static_cast<size_t>(nf) * 3,
           "feature arrays must be (F, 3, 4) and (F, 3)");
  // Trees: node indices stay inside the tree, leaves inside its nodes + 1 leaves.
  size_t node = 0;
  for (int32_t n : weak_num_nodes) {
    for (int32_t k = 0; k < n; ++k, ++node) {
      for (int32_t child : {node_left[node], node_right[node]}) {
        PD_CHECK(child < n && -child <= n, "tree child index ", child,
                 " out of range for a tree of ", n, " nodes");
        PD_CHECK(child <= 0 || child > k, "tree node ", k, " points back to node ", child);
      }
      PD_CHECK(node_feature[node] >= 0 && node_feature[node] < nf, "feature index ",
               node_feature[node], " out of range [0, ", nf, ")");
    }
  }
  for (int f = 0; f < nf; ++f) {
    const int32_t* r = &rects[static_cast<size_t>(f) * 12];
    if (feature_type == kLbp) {
      PD_CHECK(r[0] >= 0 && r[1] >= 0 && r[2] > 0 && r[3] > 0 &&
                   r[0] + 3 * r[2] <= window_width && r[1] + 3 * r[3] <= window_height,
               "LBP feature ", f, " (", r[0], " ", r[1], " ", r[2], " ", r[3],
               ") does not fit the ", window_width, "x", window_height, " window");
      continue;
    }
    for (int k = 0; k < 3; ++k, r += 4) {
      if (weights[static_cast<size_t>(f) * 3 + k] == 0.0f && r[2] == 0 && r[3] == 0) continue;
      const bool ok = tilted[f]
                          ? (r[2] >= 0 && r[3] >= 0 && r[0] - r[3] >= 0 && r[1] >= 0 &&
                             r[0] + r[2] <= window_width &&
                             r[1] + r[2] + r[3] <= window_height)
                          : (r[2] >= 0 && r[3] >= 0 && r[0] >= 0 && r[1] >= 0 &&
                             r[0] + r[2] <= window_width && r[1] + r[3] <= window_height);
      PD_CHECK(ok, "Haar feature ", f, " rectangle ", k, " (", r[0], " ", r[1], " ", r[2], " ",
               r[3], tilted[f] ? ", tilted" : "", ") does not fit the ", window_width, "x",
               window_height, " window");
    }
  }
}

namespace {

constexpr float kThresholdEps = 1e-5f;  // OpenCV's THRESHOLD_EPS, subtracted in float

struct Stump {
  int32_t feature;
  float threshold;
  float left, right;
  int32_t node;  // index of the node (subset lookup for LBP)
};

// The model rearranged for the scan, with features compiled for one buffer stride.
struct Engine {
  const Model* model = nullptr;
  bool stumps = false;
  std::vector<float> stage_threshold;
  std::vector<Stump> stump;               // one per weak classifier when stumps
  std::vector<CompiledHaar> haar;
  std::vector<CompiledLbp> lbp;
  RectOffsets norm{};
  double norm_area = 0;
  int64_t sq_offset = 0;                  // from a sum-table element to its squared twin
};

Engine make_engine(const Model& m, int64_t stride, int64_t tilted_offset, int64_t sq_offset) {
  Engine e;
  e.model = &m;
  e.stumps = m.max_nodes_per_tree() == 1;
  for (float t : m.stage_threshold) e.stage_threshold.push_back(t - kThresholdEps);
  if (e.stumps) {
    for (size_t i = 0; i < m.node_feature.size(); ++i) {
      e.stump.push_back({m.node_feature[i], m.feature_type == kHaar ? m.node_threshold[i] : 0.f,
                         m.leaves[2 * i], m.leaves[2 * i + 1], static_cast<int32_t>(i)});
    }
  }
  const int nf = m.num_features();
  if (m.feature_type == kHaar) {
    e.haar.resize(nf);
    for (int f = 0; f < nf; ++f) {
      for (int k = 0; k < 3; ++k) {
        const int32_t* r = &m.rects[(static_cast<size_t>(f) * 3 + k) * 4];
        RectOffsets o = m.tilted[f] ? tilted_rect_offsets(r[0], r[1], r[2], r[3], stride)
                                    : upright_rect_offsets(r[0], r[1], r[2], r[3], stride);
        if (m.tilted[f]) {
          o.o0 += tilted_offset, o.o1 += tilted_offset, o.o2 += tilted_offset,
              o.o3 += tilted_offset;
        }
        e.haar[f].rect[k] = o;
        e.haar[f].weight[k] = m.weights[static_cast<size_t>(f) * 3 + k];
      }
    }
    e.norm = upright_rect_offsets(1, 1, m.window_width - 2, m.window_height - 2, stride);
    e.norm_area = double(m.window_width - 2) * double(m.window_height - 2);
    e.sq_offset = sq_offset;
  } else {
    e.lbp.resize(nf);
    for (int f = 0; f < nf; ++f) {
      const int32_t* r = &m.rects[static_cast<size_t>(f) * 12];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          e.lbp[f].corner[i * 4 + j] =
              static_cast<int32_t>((r[0] + j * r[2]) + stride * (r[1] + i * r[3]));
    }
  }
  return e;
}

// OpenCV's HaarEvaluator::setWindow: variance normalisation over the rectangle
// (1, 1, w - 2, h - 2); a window whose pixel standard deviation is <= 10 (or whose
// variance is not positive) is rejected. Returns 0 for a rejected window.
inline float haar_norm_factor(const Engine& e, const int32_t* p) {
  const int32_t s = rect_sum(p, e.norm);
  const uint32_t sq = static_cast<uint32_t>(rect_sum(p + e.sq_offset, e.norm));
  double nf = e.norm_area * double(sq) - double(s) * double(s);
  if (!(nf > 0.)) return 0.f;
  nf = std::sqrt(nf);
  const float vnf = static_cast<float>(1. / nf);
  return e.norm_area * vnf < 1e-1 ? vnf : 0.f;
}

template <class Value>
inline int run_stumps(const Engine& e, const Value& value, double* sum) {
  const size_t n_stages = e.stage_threshold.size();
  const Stump* s = e.stump.data();
  const int32_t* n_weak = e.model->stage_num_weak.data();
  double tmp = 0;
  for (size_t si = 0; si < n_stages; ++si) {
    tmp = 0;
    const int nw = n_weak[si];
    for (int i = 0; i < nw; ++i, ++s) tmp += value(*s) ? s->left : s->right;
    if (tmp < e.stage_threshold[si]) {
      *sum = tmp;
      return -static_cast<int>(si);
    }
  }
  *sum = tmp;
  return 1;
}

template <class GoLeft>
inline int run_trees(const Engine& e, const GoLeft& go_left, double* out_sum) {
  const Model& m = *e.model;
  const size_t n_stages = e.stage_threshold.size();
  int node_ofs = 0, leaf_ofs = 0, weak = 0;
  double sum = 0;
  for (size_t si = 0; si < n_stages; ++si) {
    sum = 0;
    const int nw = m.stage_num_weak[si];
    for (int w = 0; w < nw; ++w, ++weak) {
      int idx = 0;
      do {
        const int node = node_ofs + idx;
        idx = go_left(node) ? m.node_left[node] : m.node_right[node];
      } while (idx > 0);
      sum += m.leaves[leaf_ofs - idx];
      node_ofs += m.weak_num_nodes[weak];
      leaf_ofs += m.weak_num_nodes[weak] + 1;
    }
    if (sum < e.stage_threshold[si]) {
      *out_sum = sum;
      return -static_cast<int>(si);
    }
  }
  *out_sum = sum;
  return 1;
}

// OpenCV's runAt: 1 = passed every stage, -k = rejected by stage k (0 for stage 0),
// -1 also for a flat window (Haar).
inline int run_window(const Engine& e, const int32_t* p, double* sum) {
  const Model& m = *e.model;
  if (m.feature_type == kHaar) {
    const float vnf = haar_norm_factor(e, p);
    if (vnf == 0.f) return -1;
    const CompiledHaar* haar = e.haar.data();
    if (e.stumps) {
      return run_stumps(e, [&](const Stump& s) {
        return haar_value(haar[s.feature], p) * vnf < s.threshold;
      }, sum);
    }
    return run_trees(e, [&](int node) {
      return haar_value(haar[m.node_feature[node]], p) * vnf < m.node_threshold[node];
    }, sum);
  }
  const CompiledLbp* lbp = e.lbp.data();
  const int32_t* subsets = m.node_subset.data();
  auto in_subset = [&](int node, int c) {
    return (subsets[node * 8 + (c >> 5)] & (1 << (c & 31))) != 0;
  };
  if (e.stumps) {
    return run_stumps(e, [&](const Stump& s) {
      return in_subset(s.node, lbp_code(lbp[s.feature], p));
    }, sum);
  }
  return run_trees(e, [&](int node) {
    return in_subset(node, lbp_code(lbp[m.node_feature[node]], p));
  }, sum);
}

struct Task {
  int level, y0, y1;
};

}  // namespace

std::vector<Candidate> detect_candidates(const Model& m, const std::vector<Level>& levels) {
  std::vector<Candidate> out;
  if (levels.empty()) return out;
  const bool haar = m.feature_type == kHaar;
  const bool tilted = haar && m.has_tilted();
  // One buffer: [sum tables of all levels | tilted tables | squared tables], common stride.
  int64_t stride = 0, rows = 0;
  std::vector<int64_t> level_row(levels.size());
  for (size_t i = 0; i < levels.size(); ++i) {
    PD_CHECK(levels[i].width >= 0 && levels[i].height >= 0, "negative level size");
    stride = std::max<int64_t>(stride, levels[i].width + 1);
    level_row[i] = rows;
    rows += levels[i].height + 1;
  }
  const int64_t table = stride * rows;
  const int64_t n_tables = haar ? (tilted ? 3 : 2) : 1;
  PD_CHECK(table * n_tables < std::numeric_limits<int32_t>::max(),
           "image too large for the cascade's int32 offsets: ", table * n_tables,
           " integral elements");
  std::vector<int32_t> buf(static_cast<size_t>(table * n_tables));
  const int64_t tofs = tilted ? table : 0;
  const int64_t sqofs = haar ? (tilted ? 2 * table : table) : 0;

  parallel_for(0, static_cast<int64_t>(levels.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const Level& L = levels[i];
      int32_t* sum = buf.data() + level_row[i] * stride;
      uint32_t* sq = haar ? reinterpret_cast<uint32_t*>(sum + sqofs) : nullptr;
      int32_t* tl = tilted ? sum + tofs : nullptr;
      integral_image<uint8_t, int32_t, uint32_t>(L.pixels, L.height, L.width, L.stride, sum, sq,
                                                 tl, stride);
    }
  });

  const Engine e = make_engine(m, stride, tofs, sqofs);
  const int ww = m.window_width, wh = m.window_height;
  // Row stripes of every level, in (level, y) order; each task collects its own hits.
  // OpenCV splits each level's rows into nstripes stripes of stripe_size rows, with
  // nstripes = ceil(working width of the first level / 32) and stripe_size rounded from
  // floor(working height / step): when that floor drops a row, the last row of windows is
  // never scanned. The same rows are scanned here.
  const int nstripes = static_cast<int>(
      std::ceil(std::max(levels[0].width + 1 - ww, 0) / 32.));
  std::vector<Task> tasks;
  for (size_t i = 0; i < levels.size(); ++i) {
    const int step = levels[i].scale >= 2.f ? 1 : 2;
    const int full_h = std::max(levels[i].height + 1 - wh, 0);
    const int stripe = std::max((full_h / step + nstripes - 1) / std::max(nstripes, 1), 1) * step;
    const int work_h = std::min(nstripes * stripe, full_h);
    const int rows_per_task = 8 * step;
    for (int y = 0; y < work_h; y += rows_per_task)
      tasks.push_back({static_cast<int>(i), y, std::min(y + rows_per_task, work_h)});
  }
  std::vector<std::vector<Candidate>> found(tasks.size());
  parallel_for(0, static_cast<int64_t>(tasks.size()), 4, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const Task& task = tasks[t];
      const Level& L = levels[task.level];
      const float scale = L.scale;
      const int step = scale >= 2.f ? 1 : 2;
      const int work_w = std::max(L.width + 1 - ww, 0);
      const int win_w = round_half_even(float(ww) * scale);
      const int win_h = round_half_even(float(wh) * scale);
      const int32_t* base = buf.data() + level_row[task.level] * stride;
      for (int y = task.y0; y < task.y1; y += step) {
        const int32_t* row = base + int64_t(y) * stride;
        for (int x = 0; x < work_w; x += step) {
          double sum = 0;
          const int result = run_window(e, row + x, &sum);
          if (result == 1) {
            found[t].push_back({round_half_even(float(x) * scale),
                                round_half_even(float(y) * scale), win_w, win_h,
                                static_cast<int>(m.stage_threshold.size()), sum});
          } else if (result == 0) {
            x += step;  // rejected by the first stage: skip the next position too
          }
        }
      }
    }
  });
  for (auto& f : found) out.insert(out.end(), f.begin(), f.end());
  return out;
}

}  // namespace cascade
}  // namespace pydetect
