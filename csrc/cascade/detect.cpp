#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cascade/cascade.h"
#include "cascade/resize.h"
#include "common/check.h"
#include "common/parallel.h"
#include "common/simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

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

namespace {

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

}  // namespace

// Every sum below is taken in int64: the values are arbitrary int32 from a file, and an
// int32 x + w near INT_MAX would wrap and pass the window bounds.
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
  PD_CHECK(all_finite(stage_threshold), "stage thresholds must be finite");
  PD_CHECK(all_finite(node_threshold), "node thresholds must be finite");
  PD_CHECK(all_finite(leaves), "leaf values must be finite");
  PD_CHECK(all_finite(weights), "rectangle weights must be finite");
  const int nf = num_features();
  PD_CHECK(rects.size() == static_cast<size_t>(nf) * 12 &&
               weights.size() == static_cast<size_t>(nf) * 3,
           "feature arrays must be (F, 3, 4) and (F, 3)");
  // Trees: node indices stay inside the tree, leaves inside its nodes + 1 leaves.
  size_t node = 0;
  for (size_t t = 0; t < weak_num_nodes.size(); ++t) {
    const int32_t n = weak_num_nodes[t];
    boosting::check_tree(&node_left[node], &node_right[node], n, static_cast<int64_t>(t));
    for (int32_t k = 0; k < n; ++k, ++node) {
      PD_CHECK(node_feature[node] >= 0 && node_feature[node] < nf, "feature index ",
               node_feature[node], " out of range [0, ", nf, ")");
    }
  }
  const int64_t W = window_width, H = window_height;
  for (int f = 0; f < nf; ++f) {
    const int32_t* q = &rects[static_cast<size_t>(f) * 12];
    if (feature_type == kLbp) {
      const int64_t x = q[0], y = q[1], w = q[2], h = q[3];
      PD_CHECK(x >= 0 && y >= 0 && w > 0 && h > 0 && x + 3 * w <= W && y + 3 * h <= H,
               "LBP feature ", f, " (", x, " ", y, " ", w, " ", h, ") does not fit the ", W,
               "x", H, " window");
      continue;
    }
    for (int k = 0; k < 3; ++k, q += 4) {
      // The scan reads the first two rectangles whatever their weights (times 0 when
      // unused) and skips a third one of weight 0, so only that one may hold anything.
      if (k == 2 && weights[static_cast<size_t>(f) * 3 + k] == 0.0f) continue;
      const int64_t x = q[0], y = q[1], w = q[2], h = q[3];
      const bool ok = w >= 0 && h >= 0 && y >= 0 &&
                      (tilted[f] ? x - h >= 0 && x + w <= W && y + w + h <= H
                                 : x >= 0 && x + w <= W && y + h <= H);
      PD_CHECK(ok, "Haar feature ", f, " rectangle ", k, " (", x, " ", y, " ", w, " ", h,
               tilted[f] ? ", tilted" : "", ") does not fit the ", W, "x", H, " window");
    }
  }
}

namespace {

constexpr float kThresholdEps = 1e-5f;  // OpenCV's THRESHOLD_EPS, subtracted in float

// Haar trees with more nodes per tree are not batched (the four-window path evaluates every
// node of a tree and selects among 2^nodes leaves).
constexpr int kMaxBatchedNodes = 4;

struct Stump {
  int32_t feature;
  float threshold;
  float left, right;
  int32_t node;  // index of the node (subset lookup for LBP)
};

// A Haar stump with its feature compiled inline, in evaluation order: the scan reads
// the stumps of a stage sequentially. Offsets are int32 (the buffer size is checked).
// leaf[1] is taken when the value is below the threshold (branch-free selection).
struct HaarStump {
  int32_t ofs[3][4];
  float weight[3];
  float threshold;
  double leaf[2];  // {right, left}, widened once here (exact) instead of per window
};

// A Haar tree node with its feature inline; child[1] is taken below the threshold,
// a child <= 0 is the tree's leaf -child.
struct HaarNode {
  int32_t ofs[3][4];
  float weight[3];
  float threshold;
  int32_t child[2];  // {right, left}
};

// An LBP stump with its feature's 16 corners and category subset inline.
struct LbpStump {
  CompiledLbp feature;
  int32_t subset[8];
  double leaf[2];  // {right, left}: left when bit `code` of the subset is set (widened once, exact)
};

// A Haar feature inline in a stump or node (int32 corner offsets of its three rectangles).
inline float haar_value(const int32_t (*ofs)[4], const float* weight, const int32_t* p) {
  return weighted_rects<float>(weight, [&](int k) { return static_cast<float>(rect_sum(p, ofs[k])); });
}

// The model rearranged for the scan, with features compiled for one buffer stride.
struct Engine {
  std::vector<HaarStump> haar_stump;      // Haar cascades of stumps
  std::vector<LbpStump> lbp_stump;        // LBP cascades of stumps
  std::vector<HaarNode> haar_node;        // Haar cascades of trees, all nodes in order
  // Haar trees, per tree in order: the leaf value reached for each combination of its nodes'
  // outcomes (2^nodes entries, bit j set: node j sends left), so that four windows select
  // their leaves with vector blends instead of walking the tree one window at a time.
  std::vector<float> tree_outcome_leaf;
  std::vector<int32_t> tree_outcome_begin;  // (trees + 1): each tree's first entry
  const Model* model = nullptr;
  bool stumps = false;
  std::vector<float> stage_threshold;
  std::vector<int32_t> weak_begin;        // (stages + 1): index of each stage's first weak tree
  std::vector<int32_t> node_begin;        // (stages + 1): index of each stage's first tree node
  std::vector<Stump> stump;               // one per weak classifier when stumps
  std::vector<CompiledHaar> haar;
  std::vector<CompiledLbp> lbp;
  RectOffsets norm{};
  double norm_area = 0;
  int64_t sq_offset = 0;                  // from a sum-table element to its squared twin
};

// split_half > 0: LBP offsets for a level whose table rows are split by column parity (see
// split_columns): column c of a window at an even x lies c / 2 elements after the window's
// origin when c is even, split_half + c / 2 (rounded down) when odd.
Engine make_engine(const Model& m, int64_t stride, int64_t tilted_offset, int64_t sq_offset,
                   int64_t split_half = 0) {
  Engine e;
  e.model = &m;
  e.stumps = m.max_nodes_per_tree() == 1;
  for (float t : m.stage_threshold) e.stage_threshold.push_back(t - kThresholdEps);
  e.weak_begin.assign(1, 0);
  e.node_begin.assign(1, 0);
  for (int32_t n_weak : m.stage_num_weak) {
    const int32_t w0 = e.weak_begin.back();
    int32_t nodes = 0;
    for (int32_t w = w0; w < w0 + n_weak; ++w) nodes += m.weak_num_nodes[w];
    e.weak_begin.push_back(w0 + n_weak);
    e.node_begin.push_back(e.node_begin.back() + nodes);
  }
  if (e.stumps) {
    for (size_t i = 0; i < m.node_feature.size(); ++i) {
      e.stump.push_back({m.node_feature[i], m.feature_type == kHaar ? m.node_threshold[i] : 0.f,
                         m.leaves[2 * i], m.leaves[2 * i + 1], static_cast<int32_t>(i)});
    }
  }
  const int nf = m.num_features();
  if (m.feature_type == kHaar) {
    e.haar.resize(nf);
    e.haar_stump.reserve(e.stump.size());
    for (int f = 0; f < nf; ++f) {
      for (int k = 0; k < 3; ++k) {
        const float weight = m.weights[static_cast<size_t>(f) * 3 + k];
        e.haar[f].weight[k] = weight;
        // A third rectangle of weight 0 is never read (validate() does not check it): it
        // keeps zero offsets. The loops skip the term when the weight is 0, as OpenCV does
        // (skipping measured faster than adding a zero term: most features have two).
        if (k == 2 && weight == 0.0f) {
          e.haar[f].rect[k] = RectOffsets{0, 0, 0, 0};
          continue;
        }
        const int32_t* r = &m.rects[(static_cast<size_t>(f) * 3 + k) * 4];
        RectOffsets o = m.tilted[f] ? tilted_rect_offsets(r[0], r[1], r[2], r[3], stride)
                                    : upright_rect_offsets(r[0], r[1], r[2], r[3], stride);
        if (m.tilted[f]) {
          o.o0 += tilted_offset, o.o1 += tilted_offset, o.o2 += tilted_offset,
              o.o3 += tilted_offset;
        }
        e.haar[f].rect[k] = o;
      }
    }
    // Offsets fit int32: they lie inside the integral buffer, whose size is checked.
    auto fill = [&](const CompiledHaar& f, int32_t (*ofs)[4], float* weight) {
      for (int k = 0; k < 3; ++k) {
        ofs[k][0] = static_cast<int32_t>(f.rect[k].o0);
        ofs[k][1] = static_cast<int32_t>(f.rect[k].o1);
        ofs[k][2] = static_cast<int32_t>(f.rect[k].o2);
        ofs[k][3] = static_cast<int32_t>(f.rect[k].o3);
        weight[k] = f.weight[k];
      }
    };
    if (!e.stumps) {
      for (size_t i = 0; i < m.node_feature.size(); ++i) {
        HaarNode h{};
        fill(e.haar[m.node_feature[i]], h.ofs, h.weight);
        h.threshold = m.node_threshold[i];
        h.child[0] = m.node_right[i];
        h.child[1] = m.node_left[i];
        e.haar_node.push_back(h);
      }
      // The outcome tables (only for trees the four-window path takes: 2^nodes entries).
      if (m.max_nodes_per_tree() <= kMaxBatchedNodes) {
        size_t node = 0, leaf = 0;
        for (const int32_t n : m.weak_num_nodes) {
          e.tree_outcome_begin.push_back(static_cast<int32_t>(e.tree_outcome_leaf.size()));
          for (int32_t mask = 0; mask < (1 << n); ++mask) {
            const int32_t reached = boosting::descend_tree([&](int32_t k) {
              return (mask >> k) & 1 ? m.node_left[node + k] : m.node_right[node + k];
            });
            e.tree_outcome_leaf.push_back(m.leaves[leaf + reached]);
          }
          node += n;
          leaf += n + 1;
        }
        e.tree_outcome_begin.push_back(static_cast<int32_t>(e.tree_outcome_leaf.size()));
      }
    }
    for (const Stump& st : e.stump) {
      HaarStump h{};
      fill(e.haar[st.feature], h.ofs, h.weight);
      h.threshold = st.threshold;
      h.leaf[0] = st.right;
      h.leaf[1] = st.left;
      e.haar_stump.push_back(h);
    }
    e.norm = upright_rect_offsets(1, 1, m.window_width - 2, m.window_height - 2, stride);
    e.norm_area = double(m.window_width - 2) * double(m.window_height - 2);
    e.sq_offset = sq_offset;
  } else {
    e.lbp.resize(nf);
    for (int f = 0; f < nf; ++f) {
      const int32_t* r = &m.rects[static_cast<size_t>(f) * 12];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          const int64_t c = r[0] + j * r[2];
          const int64_t col = split_half == 0 ? c : (c & 1 ? split_half : 0) + c / 2;
          e.lbp[f].corner[i * 4 + j] = static_cast<int32_t>(col + stride * (r[1] + i * r[3]));
        }
    }
    for (const Stump& st : e.stump) {
      LbpStump l{};
      l.feature = e.lbp[st.feature];
      for (int k = 0; k < 8; ++k) l.subset[k] = m.node_subset[static_cast<size_t>(st.node) * 8 + k];
      l.leaf[0] = st.right;
      l.leaf[1] = st.left;
      e.lbp_stump.push_back(l);
    }
  }
  return e;
}

// OpenCV's HaarEvaluator::setWindow: variance normalisation over the rectangle
// (1, 1, w - 2, h - 2); a window whose pixel standard deviation is <= 10 (or whose
// variance is not positive) is rejected. Returns 0 for a rejected window.
inline float haar_norm_factor(const Engine& e, const int32_t* p) {
  const float vnf = haar_window_vnf(p, e.sq_offset, e.norm, e.norm_area);
  return haar_window_rejected(e.norm_area, vnf) ? 0.f : vnf;
}

// The per-window loops below return OpenCV's runAt result for the stages from `first_stage`
// on (the earlier ones passed): 1 = passed every stage, -k = rejected by stage k (0 for stage
// 0); *sum gets the last stage's sum.

// The hot loop for Haar stump cascades (most shipped cascades): each stump's value
// (haar_value), times the window's normalisation factor, compared in float.
inline int run_haar_stumps(const Engine& e, const int32_t* p, float vnf, double* sum, int first_stage = 0) {
  const int n_stages = static_cast<int>(e.stage_threshold.size());
  const int32_t* n_weak = e.model->stage_num_weak.data();
  const HaarStump* s = e.haar_stump.data() + e.weak_begin[first_stage];
  double tmp = 0;
  for (int si = first_stage; si < n_stages; ++si) {
    tmp = 0;
    const HaarStump* end = s + n_weak[si];
    for (; s != end; ++s) {
      tmp += s->leaf[(haar_value(s->ofs, s->weight, p) * vnf) < s->threshold];
    }
    if (tmp < e.stage_threshold[si]) {
      *sum = tmp;
      return -si;
    }
  }
  *sum = tmp;
  return 1;
}

inline int run_haar_trees(const Engine& e, const int32_t* p, float vnf, double* out_sum, int first_stage = 0) {
  const Model& m = *e.model;
  const int n_stages = static_cast<int>(e.stage_threshold.size());
  const HaarNode* nodes = e.haar_node.data() + e.node_begin[first_stage];
  const float* leaves = m.leaves.data() + e.node_begin[first_stage] + e.weak_begin[first_stage];
  const int32_t* n_nodes = m.weak_num_nodes.data() + e.weak_begin[first_stage];
  double sum = 0;
  for (int si = first_stage; si < n_stages; ++si) {
    sum = 0;
    const int nw = m.stage_num_weak[si];
    for (int w = 0; w < nw; ++w, ++n_nodes) {
      sum += leaves[boosting::descend_tree([&](int32_t k) {
        const HaarNode& n = nodes[k];
        return n.child[(haar_value(n.ofs, n.weight, p) * vnf) < n.threshold];
      })];
      nodes += *n_nodes;
      leaves += *n_nodes + 1;
    }
    if (sum < e.stage_threshold[si]) {
      *out_sum = sum;
      return -si;
    }
  }
  *out_sum = sum;
  return 1;
}

inline int run_lbp_stumps(const Engine& e, const int32_t* p, double* sum, int first_stage = 0) {
  const int n_stages = static_cast<int>(e.stage_threshold.size());
  const LbpStump* s = e.lbp_stump.data() + e.weak_begin[first_stage];
  const int32_t* n_weak = e.model->stage_num_weak.data();
  double tmp = 0;
  for (int si = first_stage; si < n_stages; ++si) {
    tmp = 0;
    const LbpStump* end = s + n_weak[si];
    for (; s != end; ++s) {
      const int c = lbp_code(s->feature, p);
      tmp += s->leaf[lbp_subset_bit(s->subset[c >> 5], c)];
    }
    if (tmp < e.stage_threshold[si]) {
      *sum = tmp;
      return -si;
    }
  }
  *sum = tmp;
  return 1;
}

// The cascades the four-window path handles (others scan one window at a time).
enum class Batch { kNone, kHaarStumps, kHaarTrees, kLbpStumps };

inline Batch batch_kind(const Engine& e) {
  const Model& m = *e.model;
  if (m.feature_type == kHaar) {
    if (e.stumps) return Batch::kHaarStumps;
    return m.max_nodes_per_tree() <= kMaxBatchedNodes ? Batch::kHaarTrees : Batch::kNone;
  }
  return e.stumps ? Batch::kLbpStumps : Batch::kNone;
}

// run_* from `first_stage` for a cascade of kind K.
template <Batch K>
inline int run_from(const Engine& e, const int32_t* p, float vnf, double* sum, int first_stage) {
  if (K == Batch::kHaarStumps) return run_haar_stumps(e, p, vnf, sum, first_stage);
  if (K == Batch::kHaarTrees) return run_haar_trees(e, p, vnf, sum, first_stage);
  return run_lbp_stumps(e, p, sum, first_stage);
}

// ---- four windows at once (GCC/Clang vector extensions, SSE2 or NEON) ----
// Needs __builtin_shufflevector / __builtin_convertvector (GCC >= 12, Clang). Other
// compilers build without it and scan one window at a time, with the same results.
// (-DPD_CASCADE_BATCHED=0 forces the one-window path, to test it.)
#ifndef PD_CASCADE_BATCHED
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) && __has_builtin(__builtin_convertvector)
#define PD_CASCADE_BATCHED 1
#endif
#endif
#endif
#ifndef PD_CASCADE_BATCHED
#define PD_CASCADE_BATCHED 0
#endif
constexpr int64_t kBatchPad = 32;  // spare table elements read by the lanes past a row end (at most 16)

#if PD_CASCADE_BATCHED
// Lanes are the windows x, x + step, x + 2 step, x + 3 step of one row: for step 1 a
// corner's four values are one unaligned load, for step 2 the even elements of two.
// The stages of the four windows run together while at least kMinAlive of them are alive
// (most windows fall in the first stages, where the cost is); a window still alive then
// finishes alone. Every lane does the one-window path's exact operations (int32 wrap-around sums,
// float products and sums, the float comparison, double accumulation of the leaves in tree
// order), so the results are bit-identical. Lanes past the row end read neighbouring buffer
// elements (kBatchPad spare ones at the end) and are ignored.
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef float v4f __attribute__((vector_size(16)));
typedef float v2f __attribute__((vector_size(8)));
typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2l __attribute__((vector_size(16)));
constexpr int kLanes = 4;

inline v4u load4(const int32_t* p) {
  v4u v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <int Step>
inline v4u lanes(const int32_t* p) {
  if (Step == 1) return load4(p);
  const v4u a = load4(p), b = load4(p + 4);
  return __builtin_shufflevector(a, b, 0, 2, 4, 6);
}

// The rectangle sums of four windows (as unsigned lanes: wrap-around, like the tables).
template <int Step>
inline v4u rect4(const int32_t* p, const int32_t* o) {
  return four_corner_sum(lanes<Step>(p + o[0]), lanes<Step>(p + o[1]), lanes<Step>(p + o[2]), lanes<Step>(p + o[3]));
}

inline v4i as_signed(v4u v) {
  v4i s;
  std::memcpy(&s, &v, sizeof(s));
  return s;
}

// haar_norm_factor of four windows: vnf[k] = 0 for a rejected (flat) window.
template <int Step>
inline void haar_norm_factor_x4(const Engine& e, const int32_t* p0, float* vnf) {
  int32_t s[kLanes];
  uint32_t q[kLanes];
  const int32_t o[4] = {static_cast<int32_t>(e.norm.o0), static_cast<int32_t>(e.norm.o1),
                        static_cast<int32_t>(e.norm.o2), static_cast<int32_t>(e.norm.o3)};
  const v4u sv = rect4<Step>(p0, o);
  const v4u qv = rect4<Step>(p0 + e.sq_offset, o);
  std::memcpy(s, &sv, sizeof(s));
  std::memcpy(q, &qv, sizeof(q));
  for (int k = 0; k < kLanes; ++k) {
    const float f = haar_vnf(e.norm_area, double(s[k]), double(q[k]));
    vnf[k] = haar_window_rejected(e.norm_area, f) ? 0.f : f;
  }
}

// haar_value of four windows times their normalisation factors.
template <int Step>
inline v4f haar_value_x4(const int32_t (*ofs)[4], const float* weight, const int32_t* p0, v4f scale) {
  const v4f v = weighted_rects<v4f>(weight, [&](int k) {
    return __builtin_convertvector(as_signed(rect4<Step>(p0, ofs[k])), v4f);
  });
  return v * scale;
}

// Per lane, `if_true` where `mask` is -1 and `if_false` where it is 0 (bitwise: exact floats).
inline v4f select_x4(v4i mask, v4f if_true, v4f if_false) {
  v4i t, f;
  std::memcpy(&t, &if_true, sizeof(t));
  std::memcpy(&f, &if_false, sizeof(f));
  const v4i bits = (mask & t) | (~mask & f);
  v4f out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// Adds each lane's float leaf, widened to double, to the running sums lo (lanes 0, 1) and hi
// (lanes 2, 3): each lane adds its leaf in double, in tree order, as the one-window loops do.
inline void add_leaves_x4(v4f leaf, v2d* lo, v2d* hi) {
  *lo += __builtin_convertvector(__builtin_shufflevector(leaf, leaf, 0, 1), v2d);
  *hi += __builtin_convertvector(__builtin_shufflevector(leaf, leaf, 2, 3), v2d);
}

inline v4f splat_x4(float v) { return v4f{v, v, v, v}; }

// The leaf each lane reaches in a tree of N nodes: left[j] is node j's outcome per lane (-1:
// left), outcome_leaf[mask] the leaf reached when node j's outcome is bit j of mask (the
// Engine's table, built with descend_tree). A binary tree of 2^N - 1 blends over the
// outcome bits, highest node first, leaves the selected entry in v[0].
template <int N>
inline v4f tree_leaf_x4(const v4i* left, const float* outcome_leaf) {
  v4f v[1 << N];
  for (int mask = 0; mask < (1 << N); ++mask) v[mask] = splat_x4(outcome_leaf[mask]);
  for (int j = N - 1; j >= 0; --j)
    for (int mask = 0; mask < (1 << j); ++mask) v[mask] = select_x4(left[j], v[mask | (1 << j)], v[mask]);
  return v[0];
}

// Stage si's sums of four windows: Haar stumps.
template <int Step>
inline void haar_stump_stage_x4(const Engine& e, int si, const int32_t* p0, v4f scale, v2d* sums_lo, v2d* sums_hi) {
  v2d lo = {0., 0.}, hi = {0., 0.};
  const HaarStump* st = e.haar_stump.data() + e.weak_begin[si];
  const HaarStump* end = e.haar_stump.data() + e.weak_begin[si + 1];
  for (; st != end; ++st) {
    const v4i left = haar_value_x4<Step>(st->ofs, st->weight, p0, scale) < st->threshold;  // -1: leaf[1]
    // the leaves are floats (widened to double exactly): blend floats, widen after
    add_leaves_x4(select_x4(left, splat_x4(static_cast<float>(st->leaf[1])), splat_x4(static_cast<float>(st->leaf[0]))),
                  &lo, &hi);
  }
  *sums_lo = lo, *sums_hi = hi;
}

// The leaf of one tree of N nodes for four windows: every node evaluated in the four lanes,
// then each lane's leaf selected branch-free.
template <int Step, int N>
inline v4f haar_tree_leaf_x4(const HaarNode* nodes, const float* outcome_leaf, const int32_t* p0, v4f scale) {
  v4i left[N];
  for (int j = 0; j < N; ++j)
    left[j] = haar_value_x4<Step>(nodes[j].ofs, nodes[j].weight, p0, scale) < nodes[j].threshold;
  return tree_leaf_x4<N>(left, outcome_leaf);
}

// Stage si's sums of four windows: Haar trees (at most kMaxBatchedNodes nodes each; the switch
// on the node count is predictable, a cascade's trees usually all having the same size).
template <int Step>
inline void haar_tree_stage_x4(const Engine& e, int si, const int32_t* p0, v4f scale, v2d* sums_lo, v2d* sums_hi) {
  const int32_t* n_nodes = e.model->weak_num_nodes.data();
  const int w0 = e.weak_begin[si], w1 = e.weak_begin[si + 1];
  const HaarNode* nodes = e.haar_node.data() + e.node_begin[si];
  const float* outcome_leaf = e.tree_outcome_leaf.data() + e.tree_outcome_begin[w0];
  v2d lo = {0., 0.}, hi = {0., 0.};
  for (int w = w0; w < w1; ++w) {
    const int n = n_nodes[w];
    v4f leaf;
    switch (n) {
      case 1: leaf = haar_tree_leaf_x4<Step, 1>(nodes, outcome_leaf, p0, scale); break;
      case 2: leaf = haar_tree_leaf_x4<Step, 2>(nodes, outcome_leaf, p0, scale); break;
      case 3: leaf = haar_tree_leaf_x4<Step, 3>(nodes, outcome_leaf, p0, scale); break;
      default: leaf = haar_tree_leaf_x4<Step, kMaxBatchedNodes>(nodes, outcome_leaf, p0, scale); break;
    }
    add_leaves_x4(leaf, &lo, &hi);
    nodes += n;
    outcome_leaf += 1 << n;
  }
  *sums_lo = lo, *sums_hi = hi;
}

// lbp_code of four windows.
template <int Step>
inline v4i lbp_code_x4(const CompiledLbp& f, const int32_t* p0) {
  v4u t[16], block[9];
  for (int k = 0; k < 16; ++k) t[k] = lanes<Step>(p0 + f.corner[k]);
  lbp_block_sums(t, block);
  const v4i c = as_signed(block[0]);
  v4i code = {0, 0, 0, 0};
  for (int i = 0; i < 8; ++i) code |= (as_signed(block[1 + i]) >= c) & (128 >> i);
  return code;
}

// Stage si's sums of four windows: LBP stumps. The subset lookup and the leaf's addition stay
// per lane (a vector blend of the looked-up bits measured slower: the lookup is a gather).
template <int Step>
inline void lbp_stump_stage_x4(const Engine& e, int si, const int32_t* p0, v2d* sums_lo, v2d* sums_hi) {
  const LbpStump* st = e.lbp_stump.data() + e.weak_begin[si];
  const LbpStump* end = e.lbp_stump.data() + e.weak_begin[si + 1];
  double acc[kLanes] = {0., 0., 0., 0.};
  for (; st != end; ++st) {
    int32_t code[kLanes];
    const v4i cv = lbp_code_x4<Step>(st->feature, p0);
    std::memcpy(code, &cv, sizeof(code));
    for (int k = 0; k < kLanes; ++k) {
      const int c = code[k];
      acc[k] += st->leaf[lbp_subset_bit(st->subset[c >> 5], c)];
    }
  }
  const v2d lo = {acc[0], acc[1]}, hi = {acc[2], acc[3]};
  *sums_lo = lo, *sums_hi = hi;
}

template <int Step, Batch K>
inline void stage_sums_x4(const Engine& e, int si, const int32_t* p0, v4f scale, v2d* lo, v2d* hi) {
  if (K == Batch::kHaarStumps) haar_stump_stage_x4<Step>(e, si, p0, scale, lo, hi);
  else if (K == Batch::kHaarTrees) haar_tree_stage_x4<Step>(e, si, p0, scale, lo, hi);
  else lbp_stump_stage_x4<Step>(e, si, p0, lo, hi);
}

// A lane mask (-1 / 0 per int32 lane) as masks of the double lanes 0, 1 and 2, 3, and back.
inline void widen_mask_x4(v4i mask, v2l* lo, v2l* hi) {
  const v4i l = __builtin_shufflevector(mask, mask, 0, 0, 1, 1), h = __builtin_shufflevector(mask, mask, 2, 2, 3, 3);
  std::memcpy(lo, &l, sizeof(l));
  std::memcpy(hi, &h, sizeof(h));
}
inline v4i narrow_mask_x4(v2l lo, v2l hi) {
  v4i l, h;
  std::memcpy(&l, &lo, sizeof(l));
  std::memcpy(&h, &hi, sizeof(h));
  return __builtin_shufflevector(l, h, 0, 2, 4, 6);
}
inline v2d select_x2(v2l mask, v2d if_true, v2d if_false) {
  v2l t, f;
  std::memcpy(&t, &if_true, sizeof(t));
  std::memcpy(&f, &if_false, sizeof(f));
  const v2l bits = (mask & t) | (~mask & f);
  v2d out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}
// Number of lanes set in a lane mask.
inline int count_x4(v4i mask) {
  const v4i a = mask + __builtin_shufflevector(mask, mask, 2, 3, 0, 1);
  return -(a[0] + a[1]);
}

// The four windows run their stages together while at least this many are alive; a window
// still alive after that finishes alone. Measured: 2 for stumps (one live lane in four costs
// more than the one-window loop), 1 for trees (the one-window loop walks each tree with
// data-dependent branches, the lanes select leaves branch-free).
template <Batch K>
constexpr int kMinAlive = K == Batch::kHaarTrees ? 1 : 2;

// One row of windows, four at a time, with OpenCV's rules: a flat window is skipped (-1), a
// window rejected by the first stage also skips the next position (0).
template <int Step, Batch K, class Emit>
inline void scan_row_x4(const Engine& e, const int32_t* row, int work_w, const Emit& emit) {
  const int n_stages = static_cast<int>(e.stage_threshold.size());
  int x = 0;
  while (x < work_w) {
    const int32_t* p0 = row + x;
    const int n = std::min(kLanes, (work_w - x + Step - 1) / Step);  // lanes inside the row
    float vnf[kLanes] = {1.f, 1.f, 1.f, 1.f};
    if (K != Batch::kLbpStumps) haar_norm_factor_x4<Step>(e, p0, vnf);
    // The stage bookkeeping of the four lanes is vector code, without a branch per lane (a
    // lane's pass or fail is data: a branch on it is mispredicted often).
    v4i passed_v, alive_v;  // stages passed so far (-1: flat); -1 while alive
    for (int k = 0; k < kLanes; ++k) {
      passed_v[k] = vnf[k] == 0.f ? -1 : 0;
      alive_v[k] = k < n && vnf[k] != 0.f ? -1 : 0;
    }
    int n_alive = count_x4(alive_v);
    v2d sum_lo = {0., 0.}, sum_hi = {0., 0.};  // each lane's last stage sum
    v4f scale;
    std::memcpy(&scale, vnf, sizeof(scale));
    for (int si = 0; si < n_stages && n_alive >= kMinAlive<K>; ++si) {
      v2d lo, hi;
      stage_sums_x4<Step, K>(e, si, p0, scale, &lo, &hi);
      v2l alive_lo, alive_hi;
      widen_mask_x4(alive_v, &alive_lo, &alive_hi);
      sum_lo = select_x2(alive_lo, lo, sum_lo);
      sum_hi = select_x2(alive_hi, hi, sum_hi);
      const v2d threshold = {e.stage_threshold[si], e.stage_threshold[si]};
      alive_v &= ~narrow_mask_x4(lo < threshold, hi < threshold);  // rejected: s < threshold
      passed_v -= alive_v;  // passed stage si: si + 1
      n_alive = count_x4(alive_v);
    }
    int passed[kLanes];
    bool alive[kLanes];
    const double sum[kLanes] = {sum_lo[0], sum_lo[1], sum_hi[0], sum_hi[1]};
    for (int k = 0; k < kLanes; ++k) passed[k] = passed_v[k], alive[k] = alive_v[k] != 0;
    int k = 0;
    while (k < n) {
      if (passed[k] < 0) {
        k += 1;  // flat window (-1): next position
      } else if (!alive[k]) {
        k += passed[k] == 0 ? 2 : 1;  // rejected by stage passed[k]; by the first: skip one
      } else {
        const int xx = x + k * Step;
        double out = sum[k];
        const int result = passed[k] == n_stages ? 1 : run_from<K>(e, row + xx, vnf[k], &out, passed[k]);
        if (result == 1) emit(xx, out);
        k += result == 0 ? 2 : 1;
      }
    }
    x += k * Step;
  }
}

// scan_row_x4 for the cascade's kind and the level's step.
template <class Emit>
inline void scan_row_batched(const Engine& e, Batch kind, int step, const int32_t* row, int work_w, const Emit& emit) {
  switch (kind) {
    case Batch::kHaarStumps:
      return step == 1 ? scan_row_x4<1, Batch::kHaarStumps>(e, row, work_w, emit)
                       : scan_row_x4<2, Batch::kHaarStumps>(e, row, work_w, emit);
    case Batch::kHaarTrees:
      return step == 1 ? scan_row_x4<1, Batch::kHaarTrees>(e, row, work_w, emit)
                       : scan_row_x4<2, Batch::kHaarTrees>(e, row, work_w, emit);
    case Batch::kLbpStumps:
      return step == 1 ? scan_row_x4<1, Batch::kLbpStumps>(e, row, work_w, emit)
                       : scan_row_x4<2, Batch::kLbpStumps>(e, row, work_w, emit);
    case Batch::kNone:
      return;
  }
}

// ---- LBP stumps, eight windows at once (AVX2, chosen at run time) ----
// The four-window path above spends about half its time on the per-lane subset lookups
// (extract the code, load the word, a variable shift). With AVX2 the whole 256-bit subset of a
// stump is one register: vpermd picks each lane's word (code >> 5), vpsrlvd its bit, and each
// lane's leaf is selected with a blend and added to a double lane, so a stump costs a few
// vector instructions for eight windows. Same lane rules as scan_row_x4 (lanes x + k * Step,
// lanes past the row end ignored, a window still alive when fewer than kMinAliveX8 are
// finishes alone in run_lbp_stumps) and the same exact operations per lane (int32
// wrap-around block sums, the leaf float widened to double, added in stump order), so the
// results are bit-identical to the other paths.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(PD_CASCADE_NO_AVX2)
#define PD_CASCADE_AVX2 1
#define PD_TARGET_AVX2 __attribute__((target("avx2")))
#define PD_INLINE_AVX2 __attribute__((target("avx2"), always_inline)) inline
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v8f __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));
constexpr int kLanesX8 = 8;

// The lanes run together while at least this many of the eight windows are alive. Measured
// (LBP 640x480, 1 thread, ratios to cv2 in one process on a loaded machine): 1 and 4 slower,
// 2 and 3 alike.
constexpr int kMinAliveX8 = 2;

template <int Step>
PD_INLINE_AVX2 v8u lanes_x8(const int32_t* p) {
  v8u a;
  std::memcpy(&a, p, sizeof(a));
  if (Step == 1) return a;
  v8u b;
  std::memcpy(&b, p + 8, sizeof(b));
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
}

template <class To, class From>
PD_INLINE_AVX2 To bits_as(From v) {
  static_assert(sizeof(To) == sizeof(From), "same width");
  To t;
  std::memcpy(&t, &v, sizeof(t));
  return t;
}

// Whether each lane's code is in the stump's subset (-1) or not (0).
PD_INLINE_AVX2 v8i lbp_in_subset_x8(const v8i subset, v8i code) {
  const __m256i word = _mm256_permutevar8x32_epi32(bits_as<__m256i>(subset), bits_as<__m256i>(code >> 5));
  // the bit moved to the sign position, then spread over the lane
  const v8i top = bits_as<v8i>(_mm256_sllv_epi32(word, bits_as<__m256i>(31 - (code & 31))));
  return top >> 31;
}

// lbp_code of eight windows.
template <int Step>
PD_INLINE_AVX2 v8i lbp_code_x8(const CompiledLbp& f, const int32_t* p0) {
  v8u t[16], block[9];
  for (int k = 0; k < 16; ++k) t[k] = lanes_x8<Step>(p0 + f.corner[k]);
  lbp_block_sums(t, block);
  const v8i c = bits_as<v8i>(block[0]);
  v8i code = {};
  for (int i = 0; i < 8; ++i) code |= (bits_as<v8i>(block[1 + i]) >= c) & (128 >> i);
  return code;
}

// Stage si's sums of eight windows, lanes 0-3 in lo and 4-7 in hi.
template <int Step>
PD_INLINE_AVX2 void lbp_stump_stage_x8(const Engine& e, int si, const int32_t* p0, v4d* sums_lo, v4d* sums_hi) {
  const LbpStump* st = e.lbp_stump.data() + e.weak_begin[si];
  const LbpStump* end = e.lbp_stump.data() + e.weak_begin[si + 1];
  v4d lo = {}, hi = {};
  for (; st != end; ++st) {
    v8i subset;
    std::memcpy(&subset, st->subset, sizeof(subset));
    const v8i left = lbp_in_subset_x8(subset, lbp_code_x8<Step>(st->feature, p0));
    const float l = static_cast<float>(st->leaf[1]), r = static_cast<float>(st->leaf[0]);
    const v8f leaf = bits_as<v8f>((left & bits_as<v8i>(v8f{l, l, l, l, l, l, l, l})) |
                                  (~left & bits_as<v8i>(v8f{r, r, r, r, r, r, r, r})));
    lo += __builtin_convertvector(__builtin_shufflevector(leaf, leaf, 0, 1, 2, 3), v4d);
    hi += __builtin_convertvector(__builtin_shufflevector(leaf, leaf, 4, 5, 6, 7), v4d);
  }
  *sums_lo = lo, *sums_hi = hi;
}

// scan_row_x4's loop for LBP stumps, eight windows at a time. kSplit (Step 2): the row is
// split by column parity (split_columns, the Engine compiled for it), window x's origin is
// row + x / 2 and each corner's eight lane values are contiguous: one load.
template <int Step, bool kSplit, class Emit>
PD_TARGET_AVX2 void scan_row_lbp_x8(const Engine& e, const int32_t* row, int work_w, const Emit& emit) {
  static_assert(!kSplit || Step == 2, "split rows serve step-2 levels");
  constexpr int kLoadStep = kSplit ? 1 : Step;
  const int n_stages = static_cast<int>(e.stage_threshold.size());
  int x = 0;
  while (x < work_w) {
    const int32_t* p0 = row + (kSplit ? x / 2 : x);
    const int n = std::min(kLanesX8, (work_w - x + Step - 1) / Step);  // lanes inside the row
    v8i passed_v = {}, alive_v;  // stages passed so far; -1 while alive
    for (int k = 0; k < kLanesX8; ++k) alive_v[k] = k < n ? -1 : 0;
    int n_alive = n;
    v4d sum_lo = {}, sum_hi = {};  // each lane's last stage sum
    for (int si = 0; si < n_stages && n_alive >= kMinAliveX8; ++si) {
      v4d lo, hi;
      lbp_stump_stage_x8<kLoadStep>(e, si, p0, &lo, &hi);
      const v4l alive_lo = bits_as<v4l>(__builtin_shufflevector(alive_v, alive_v, 0, 0, 1, 1, 2, 2, 3, 3));
      const v4l alive_hi = bits_as<v4l>(__builtin_shufflevector(alive_v, alive_v, 4, 4, 5, 5, 6, 6, 7, 7));
      sum_lo = bits_as<v4d>((alive_lo & bits_as<v4l>(lo)) | (~alive_lo & bits_as<v4l>(sum_lo)));
      sum_hi = bits_as<v4d>((alive_hi & bits_as<v4l>(hi)) | (~alive_hi & bits_as<v4l>(sum_hi)));
      const double t = e.stage_threshold[si];
      const v4d threshold = {t, t, t, t};
      const v8i fail_lo = bits_as<v8i>(lo < threshold), fail_hi = bits_as<v8i>(hi < threshold);
      alive_v &= ~__builtin_shufflevector(fail_lo, fail_hi, 0, 2, 4, 6, 8, 10, 12, 14);
      passed_v -= alive_v;  // passed stage si: si + 1
      n_alive = __builtin_popcount(_mm256_movemask_ps(bits_as<__m256>(alive_v)));
    }
    int k = 0;
    while (k < n) {
      const int passed = passed_v[k];
      if (alive_v[k] == 0) {
        k += passed == 0 ? 2 : 1;  // rejected by stage `passed`; by the first: skip one
      } else {
        const int xx = x + k * Step;
        double out = k < 4 ? sum_lo[k] : sum_hi[k - 4];
        const int result = passed == n_stages ? 1 : run_lbp_stumps(e, row + (kSplit ? xx / 2 : xx), &out, passed);
        if (result == 1) emit(xx, out);
        k += result == 0 ? 2 : 1;
      }
    }
    x += k * Step;
  }
}
#endif
#endif  // PD_CASCADE_BATCHED
#ifndef PD_CASCADE_AVX2
#define PD_CASCADE_AVX2 0
#endif

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
      sum += m.leaves[leaf_ofs + boosting::descend_tree([&](int32_t k) {
        const int node = node_ofs + k;
        return go_left(node) ? m.node_left[node] : m.node_right[node];
      })];
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
    return e.stumps ? run_haar_stumps(e, p, vnf, sum) : run_haar_trees(e, p, vnf, sum);
  }
  const CompiledLbp* lbp = e.lbp.data();
  const int32_t* subsets = m.node_subset.data();
  auto in_subset = [&](int node, int c) {
    return lbp_subset_bit(subsets[node * 8 + (c >> 5)], c) != 0;
  };
  if (e.stumps) return run_lbp_stumps(e, p, sum);
  return run_trees(e, [&](int node) {
    return in_subset(node, lbp_code(lbp[m.node_feature[node]], p));
  }, sum);
}

struct Task {
  int level, y0, y1;
};

// Splits each of `rows` table rows (n elements, `stride` apart) in place by column parity:
// the (n + 1) / 2 even columns first, then the odd ones. The eight-lane LBP path scans its
// step-2 levels from such rows: windows x, x + 2, ..., x + 14 then read each corner with one
// load instead of two loads and a shuffle (the engine's offsets follow, make_engine).
void split_columns(int32_t* table, int64_t n, int64_t rows, int64_t stride, std::vector<int32_t>* tmp) {
  tmp->resize(static_cast<size_t>(n));
  const int64_t half = (n + 1) / 2;
  for (int64_t y = 0; y < rows; ++y) {
    int32_t* r = table + y * stride;
    std::memcpy(tmp->data(), r, static_cast<size_t>(n) * sizeof(int32_t));
    for (int64_t x = 0; x < half; ++x) r[x] = (*tmp)[2 * x];
    for (int64_t x = 0; x < n / 2; ++x) r[half + x] = (*tmp)[2 * x + 1];
  }
}

}  // namespace

std::vector<Candidate> detect_candidates(const Model& m, const std::vector<Level>& levels, int64_t* positions) {
  std::vector<Candidate> out;
  if (positions) *positions = 0;
  if (levels.empty()) return out;
  const bool haar = m.feature_type == kHaar;
  const bool tilted = haar && m.has_tilted();
  // One buffer: [sum tables of all levels | tilted tables | squared tables], common row
  // stride. Levels are packed side by side in bands as wide as the largest level (as
  // OpenCV packs its layers), which halves the memory of a stack of full-width rows.
  int64_t stride = 0, rows = 0;
  for (const Level& L : levels) {
    PD_CHECK(L.width >= 0 && L.height >= 0, "negative level size");
    stride = std::max<int64_t>(stride, L.width + 1);
  }
  std::vector<int64_t> level_origin(levels.size());  // element offset of each level's (0, 0)
  {
    int64_t band_top = 0, band_height = 0, x = 0;
    for (size_t i = 0; i < levels.size(); ++i) {
      const int64_t w = levels[i].width + 1, h = levels[i].height + 1;
      if (x + w > stride) {  // start a new band
        band_top += band_height;
        band_height = 0;
        x = 0;
      }
      level_origin[i] = band_top * stride + x;
      band_height = std::max(band_height, h);
      x += w;
    }
    rows = band_top + band_height;
  }
  const int64_t table = stride * rows;
  const int64_t n_tables = haar ? (tilted ? 3 : 2) : 1;
  PD_CHECK(table * n_tables < std::numeric_limits<int32_t>::max(),
           "image too large for the cascade's int32 offsets: ", table * n_tables,
           " integral elements");
  // Every element a window reads is written below, so the buffer needs no zeroing.
  const size_t needed = static_cast<size_t>(table * n_tables + kBatchPad);
  std::unique_lock<std::mutex> lock(m.workspace->mutex, std::try_to_lock);
  std::unique_ptr<int32_t[]> own;
  int32_t* buf_data;
  if (lock.owns_lock()) {
    Workspace& ws = *m.workspace;
    if (ws.size < needed) {
      ws.data.reset();
      ws.data.reset(new int32_t[needed]());  // zeroed once: lanes past a row read defined data
      ws.size = needed;
    }
    buf_data = ws.data.get();
  } else {
    own.reset(new int32_t[needed]());
    buf_data = own.get();
  }
  struct {
    int32_t* p;
    int32_t* data() const { return p; }
  } buf{buf_data};
  const int64_t tofs = tilted ? table : 0;
  const int64_t sqofs = haar ? (tilted ? 2 * table : table) : 0;

  // The levels to resize here (each shrunk from the image by its own resize, so they are
  // independent), resized into the workspace's pixel area and their tables built, level by
  // level in parallel: the biggest levels come first, which keeps the threads balanced.
  std::vector<int64_t> pixel_origin(levels.size(), -1);
  int64_t n_pixels = 0, row_scratch = 0;
  for (size_t i = 0; i < levels.size(); ++i) {
    const Level& L = levels[i];
    if (L.source_width == 0) continue;
    PD_CHECK(L.width >= 1 && L.height >= 1 && L.source_width >= 1 && L.source_height >= 1,
             "a level to resize needs positive sizes");
    pixel_origin[i] = n_pixels;
    n_pixels += int64_t(L.width) * L.height;
    row_scratch = std::max<int64_t>(row_scratch, L.source_width + 1);
  }
  std::unique_ptr<uint8_t[]> own_pixels;
  uint8_t* pixels = nullptr;
  if (n_pixels > 0) {
    if (lock.owns_lock()) {
      Workspace& ws = *m.workspace;
      if (ws.pixels_size < static_cast<size_t>(n_pixels)) {
        ws.pixels.reset();
        ws.pixels.reset(new uint8_t[n_pixels]);
        ws.pixels_size = static_cast<size_t>(n_pixels);
      }
      pixels = ws.pixels.get();
    } else {
      own_pixels.reset(new uint8_t[n_pixels]);
      pixels = own_pixels.get();
    }
  }
  // The eight-lane LBP path (AVX2) reads its step-2 levels (scale < 2) from tables split by
  // column parity.
#if PD_CASCADE_AVX2
  const bool lbp_x8 = m.feature_type == kLbp && m.max_nodes_per_tree() == 1 && simd_level() >= SimdLevel::kAvx2;
#else
  const bool lbp_x8 = false;
#endif
  auto split_level = [&](size_t i) { return lbp_x8 && !(levels[i].scale >= 2.f); };
  parallel_for(0, static_cast<int64_t>(levels.size()), 1, [&](int64_t lo, int64_t hi) {
    std::vector<uint16_t> row;
    std::vector<int32_t> split_tmp;
    for (int64_t i = lo; i < hi; ++i) {
      const Level& L = levels[i];
      const uint8_t* src = L.pixels;
      int64_t src_stride = L.stride;
      if (L.source_width != 0) {
        row.resize(static_cast<size_t>(row_scratch));
        uint8_t* dst = pixels + pixel_origin[i];
        resize_linear_exact(L.pixels, L.source_width, L.source_height, L.stride, dst, L.width, L.height, L.width,
                            row.data());
        src = dst, src_stride = L.width;
      }
      int32_t* sum = buf.data() + level_origin[i];
      uint32_t* sq = haar ? reinterpret_cast<uint32_t*>(sum + sqofs) : nullptr;
      int32_t* tl = tilted ? sum + tofs : nullptr;
      integral_image<uint8_t, int32_t, uint32_t>(src, L.height, L.width, src_stride, sum, sq, tl, stride);
      if (split_level(i)) split_columns(sum, L.width + 1, L.height + 1, stride, &split_tmp);
    }
  });

  const Engine e = make_engine(m, stride, tofs, sqofs);
  std::vector<Engine> split_engine(levels.size());
  for (size_t i = 0; i < levels.size(); ++i)
    if (split_level(i)) split_engine[i] = make_engine(m, stride, tofs, sqofs, (levels[i].width + 2) / 2);
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
    if (positions) {
      const int64_t work_w = std::max(levels[i].width + 1 - ww, 0);
      *positions += ((work_h + step - 1) / step) * ((work_w + step - 1) / step);
    }
  }
  std::vector<std::vector<Candidate>> found(tasks.size());
  // The four-window path is vector code (SSE2 on x86): PYDETECT_SIMD=scalar scans one
  // window at a time (same results).
  [[maybe_unused]] const Batch batch =
      PD_CASCADE_BATCHED && simd_level() != SimdLevel::kScalar ? batch_kind(e) : Batch::kNone;
  // LBP stumps take the eight-window path where the CPU has AVX2 (PYDETECT_SIMD=sse2: four).
  parallel_for(0, static_cast<int64_t>(tasks.size()), 4, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const Task& task = tasks[t];
      const Level& L = levels[task.level];
      const float scale = L.scale;
      const int step = scale >= 2.f ? 1 : 2;
      const int work_w = std::max(L.width + 1 - ww, 0);
      const int win_w = round_half_even(float(ww) * scale);
      const int win_h = round_half_even(float(wh) * scale);
      const int32_t* base = buf.data() + level_origin[task.level];
      for (int y = task.y0; y < task.y1; y += step) {
        const int32_t* row = base + int64_t(y) * stride;
#if PD_CASCADE_BATCHED
        if (batch != Batch::kNone) {
          auto emit = [&](int x, double sum) {
            found[t].push_back({round_half_even(float(x) * scale),
                                round_half_even(float(y) * scale), win_w, win_h,
                                static_cast<int>(m.stage_threshold.size()), sum, task.level,
                                x, y});
          };
#if PD_CASCADE_AVX2
          if (lbp_x8) {
            if (step == 1) scan_row_lbp_x8<1, false>(e, row, work_w, emit);
            else scan_row_lbp_x8<2, true>(split_engine[task.level], row, work_w, emit);
            continue;
          }
#endif
          scan_row_batched(e, batch, step, row, work_w, emit);
          continue;
        }
#endif
        for (int x = 0; x < work_w; x += step) {
          double sum = 0;
          const int result = run_window(e, row + x, &sum);
          if (result == 1) {
            found[t].push_back({round_half_even(float(x) * scale),
                                round_half_even(float(y) * scale), win_w, win_h,
                                static_cast<int>(m.stage_threshold.size()), sum, task.level,
                                x, y});
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

std::vector<uint8_t> accepts_windows(const Model& m, const uint8_t* windows, int64_t count,
                                     int64_t stride, int64_t window_stride) {
  PD_CHECK(count >= 0 && stride >= m.window_width && window_stride >= 0,
           "accepts_windows: bad window layout");
  std::vector<uint8_t> out(static_cast<size_t>(count), 0);
  // Chunks bound the integral buffer (a chunk of windows is one pyramid of scale-1 levels,
  // each scanned at its single position (0, 0)).
  constexpr int64_t kChunk = 4096;
  for (int64_t lo = 0; lo < count; lo += kChunk) {
    const int64_t hi = std::min(count, lo + kChunk);
    std::vector<Level> levels;
    levels.reserve(static_cast<size_t>(hi - lo));
    for (int64_t i = lo; i < hi; ++i)
      levels.push_back({windows + i * window_stride, m.window_width, m.window_height, stride, 1.f});
    for (const Candidate& c : detect_candidates(m, levels)) out[lo + c.source_level] = 1;
  }
  return out;
}

std::vector<uint8_t> flat_windows(const uint8_t* windows, int64_t count, int width, int height, int64_t stride,
                                  int64_t window_stride) {
  PD_CHECK(count >= 0 && width >= 3 && height >= 3 && stride >= width && window_stride >= 0,
           "flat_windows: bad window layout");
  std::vector<uint8_t> out(static_cast<size_t>(count), 0);
  const double area = double(width - 2) * double(height - 2);
  parallel_for(0, count, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      // The sums the scan reads from the window's tables (int32 and uint32, wrapping alike),
      // taken directly over the pixels of (1, 1, width - 2, height - 2).
      uint32_t s = 0, sq = 0;
      for (int y = 1; y < height - 1; ++y) {
        const uint8_t* row = windows + i * window_stride + y * stride;
        for (int x = 1; x < width - 1; ++x) s += row[x], sq += uint32_t(row[x]) * row[x];
      }
      out[i] = haar_window_rejected(area, haar_vnf(area, double(static_cast<int32_t>(s)), double(sq)));
    }
  });
  return out;
}

}  // namespace cascade
}  // namespace pydetect
