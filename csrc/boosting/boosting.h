// AdaBoost over presorted feature values: Discrete (Freund & Schapire 1997), Real and Gentle
// (Friedman, Hastie & Tibshirani, Ann. Statist. 2000) boosting of stumps and depth-2 trees,
// with OpenCV's weight trimming. Trees use OpenCV's cascade layout so they export directly.
//
// Samples x features come in as an (N, F) float32 matrix. The constructor sorts every feature
// once (F x N values and sample indices, 8 bytes per entry); each round then finds the best
// split of every feature in one linear scan of its sorted order.
#pragma once

#include <cstdint>
#include <vector>

#include "boosting/tree.h"

namespace pydetect {
namespace boosting {

enum class Algorithm { Discrete = 0, Real = 1, Gentle = 2 };

struct Params {
  Algorithm algorithm = Algorithm::Gentle;
  int max_depth = 1;               // 1 (stumps) or 2
  double weight_trim_rate = 0.95;  // <= 0 or >= 1: no trimming
};

// A weak tree in OpenCV's layout (boosting/tree.h) whose node k tests x[feature[k]] <
// threshold[k] (true: left).
struct Tree {
  std::vector<int32_t> left, right, feature;
  std::vector<float> threshold;
  std::vector<double> leaves;
};

// Value of a tree for one sample whose features are read by get(feature index).
template <class Get>
double tree_value(const Tree& t, const Get& get) {
  return t.leaves[descend_tree([&](int32_t k) { return get(t.feature[k]) < t.threshold[k] ? t.left[k] : t.right[k]; })];
}

// out[i] = the sum of the trees' values on row i of x (n, f), tree after tree: what the
// booster's training scores hold for its own samples. Throws std::invalid_argument for a
// malformed tree (check_tree), arrays of inconsistent lengths or a feature outside [0, f).
void decision_function(const std::vector<Tree>& trees, const float* x, int64_t n, int64_t f, double* out);

class Booster {
 public:
  // x: (n, f) C order, finite; y: +1 / -1; w: initial weights (nullptr: uniform 1/n).
  Booster(const float* x, int64_t n, int64_t f, const int8_t* y, const double* w, Params params);

  // One boosting round: trims the weights, fits a tree on the kept samples, adds it to the
  // training scores and updates (and renormalises) the weights. Deterministic: ties go to
  // the lowest feature index, then the lowest threshold.
  Tree add_tree();

  int64_t num_samples() const { return n_; }
  int64_t num_features() const { return f_; }
  const std::vector<double>& scores() const { return scores_; }    // sum of tree values
  const std::vector<double>& weights() const { return weights_; }  // current, sum 1

 public:
  struct Split {
    bool valid = false;
    int32_t feature = -1;
    float threshold = 0.0f;
    double num = 0.0, den = 1.0;  // split quality num / den, larger is better
  };

 private:
  void trim();
  // Best split of the samples with node_of[i] == node for each node in [0, num_nodes).
  std::vector<Split> best_splits(const std::vector<int8_t>& node_of, int num_nodes) const;
  void feature_values(int32_t feature, std::vector<float>* out) const;

  int64_t n_, f_;
  Params params_;
  std::vector<float> sorted_values_;    // f x n
  std::vector<uint32_t> sorted_index_;  // f x n
  std::vector<int8_t> y_;
  std::vector<double> weights_, scores_;
  std::vector<uint8_t> mask_;  // samples kept by the last trimming
};

}  // namespace boosting
}  // namespace pydetect
