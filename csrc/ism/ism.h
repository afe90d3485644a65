// Implicit Shape Model kernels: probabilistic Hough vote accumulation and scale-adaptive
// (balloon) mean-shift over weighted (x, y, scale) votes.
// Leibe, Leonardis & Schiele, "Robust Object Detection with Interleaved Categorization
// and Segmentation", IJCV 77 (2008).
#pragma once

#include <cstdint>
#include <vector>

namespace pydetect {
namespace ism {

// Votes of F features. Feature f (row of `features`: x, y, scale) activates codebook
// entries match_entry[match_ptr[f] .. match_ptr[f+1]) with weights p(entry | feature)
// match_weight[...]. Entry e has occurrences occ_ptr[e] .. occ_ptr[e+1] (rows of `occ`:
// offset x, offset y, object scale, all relative to the feature scale) with weights
// p(occurrence | entry) occ_weight[...]. Each (feature, entry, occurrence) triple casts one
// vote of weight entry_weight * occ_weight at cast_vote(...).
// Outputs (resized here): votes (V, 3), weights (V), feature index, occurrence index.
template <class T>
void accumulate_votes(const T* features, int64_t num_features, const int64_t* match_ptr,
                      const int64_t* match_entry, const T* match_weight, int64_t num_matches,
                      const int64_t* occ_ptr, int64_t num_entries, const T* occ,
                      const T* occ_weight, int64_t num_occ, std::vector<T>* votes,
                      std::vector<T>* weights, std::vector<int64_t>* vote_feature,
                      std::vector<int64_t>* vote_occurrence);

// Profiles of the mean-shift score (the values MeanShiftParams::kernel holds).
enum class MeanShiftKernel : int { Flat = 0, Epanechnikov = 1 };

struct MeanShiftParams {
  double bandwidth_xy = 1.0;
  double bandwidth_scale = 1.0;
  bool adaptive = true;       // balloon kernel: window half-widths proportional to the scale
  int kernel = 0;             // 0 = flat, 1 = Epanechnikov
  int max_iter = 300;
  double tol = 1e-3;          // stop when the normalised shift is <= tol
  double merge = 1.0;         // modes within merge * window of a stronger mode are dropped
  double min_score = 0.0;     // modes with vote mass below this are dropped
};

// Mean-shift from each seed over weighted votes (V, 3). Returns the distinct modes
// (K, 3) by decreasing score, their scores (vote mass: sum of weights of the votes inside
// the window at the mode) and, per mode, the number of seeds that converged to it.
// Same iteration and merging rule as scikit-learn's MeanShift (flat kernel, fixed
// bandwidth, unit weights) when adaptive = false and bandwidth_xy = bandwidth_scale.
template <class T>
void mean_shift(const T* votes, const T* weights, int64_t num_votes, const T* seeds,
                int64_t num_seeds, const MeanShiftParams& params, std::vector<T>* modes,
                std::vector<T>* scores, std::vector<int64_t>* counts);

}  // namespace ism
}  // namespace pydetect
