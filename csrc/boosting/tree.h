// OpenCV's weak-tree layout, shared by the booster (which grows trees), its decision function
// and the cascade scan (which evaluates them on image windows).
//
// A tree of K internal nodes has K + 1 leaves. Node k sends a sample to left[k] when its test
// holds, else to right[k]; a reference > 0 is a later node of the same tree, <= 0 is leaf
// -ref. A stump is {left 0, right -1}. What the test is (a feature value below a threshold,
// an LBP code in a category subset) is the caller's: these functions only walk and check
// the layout.
#pragma once

#include <cstdint>

#include "common/check.h"
#include "common/host_device.h"

namespace pydetect {
namespace boosting {

// The leaf a sample reaches: next(k) returns the reference node k sends it to. A checked
// tree (check_tree) always ends, since every reference > 0 points to a later node.
template <class Next>
HOST_DEVICE int32_t descend_tree(const Next& next) {
  int32_t ref = 0;
  do {
    ref = next(ref);
  } while (ref > 0);
  return -ref;
}

// Throws std::invalid_argument unless every child reference of the `num_nodes` nodes is a
// later node of the tree or one of its num_nodes + 1 leaves (a reference back would loop for
// ever). `tree` names the tree in the message.
inline void check_tree(const int32_t* left, const int32_t* right, int64_t num_nodes, int64_t tree) {
  PD_CHECK(num_nodes >= 1, "tree ", tree, " needs at least one node, got ", num_nodes);
  for (int64_t k = 0; k < num_nodes; ++k) {
    for (const int64_t child : {int64_t(left[k]), int64_t(right[k])}) {
      PD_CHECK(child < num_nodes && -child <= num_nodes, "tree ", tree, ": child index ", child,
               " out of range for a tree of ", num_nodes, " nodes");
      PD_CHECK(child <= 0 || child > k, "tree ", tree, ": node ", k, " points back to node ", child);
    }
  }
}

}  // namespace boosting
}  // namespace pydetect
