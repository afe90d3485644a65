// Non-maximum suppression: greedy (torchvision's result), class-batched, and soft (Bodla et al.).
#pragma once

#include <cstdint>
#include <vector>

namespace pydetect {

// How greedy NMS finds the kept boxes; every choice gives the same result.
//   Compaction: each kept box is compared with the boxes still alive (no set-up cost).
//   Grid:       each box is compared with the kept boxes in its cells of a uniform grid.
//   Auto:       Compaction for small inputs, Grid above a measured crossover.
enum class NmsAlgorithm { Auto = 0, Compaction = 1, Grid = 2 };

// Greedy NMS. Boxes are visited by decreasing score (equal scores: lower index first);
// a box is dropped when its IoU with an already kept box is > iou_threshold.
// Returns the kept indices in that visiting order.
template <class T>
std::vector<int64_t> nms(const T* boxes, const T* scores, int64_t n, double iou_threshold,
                         NmsAlgorithm algorithm = NmsAlgorithm::Auto);

// NMS run independently per label; the union of the kept indices sorted by decreasing
// score (equal scores: lower index first). Labels are processed in parallel.
template <class T>
std::vector<int64_t> batched_nms(const T* boxes, const T* scores, const int64_t* labels, int64_t n,
                                 double iou_threshold, NmsAlgorithm algorithm = NmsAlgorithm::Auto);

// The greedy pass of the bitmask NMS that CUDA kernels compute (torchvision's nms_kernel):
// boxes are in visiting order (decreasing score) and row i of `mask` (n rows of
// words = ceil(n / 64) uint64) has bit j % 64 of word j / 64 set when box i suppresses box j
// (IoU > threshold, j > i). Box i is kept unless a kept box suppresses it. Only the words
// from row i's own block on are read (the kernel writes the upper triangle). Returns the
// kept positions in visiting order.
std::vector<int64_t> nms_reduce_mask(const uint64_t* mask, int64_t n);

enum class SoftNmsMethod { Linear = 0, Gaussian = 1 };

// Soft-NMS (Bodla et al., ICCV 2017). Repeatedly selects the highest current score
// (equal scores: lower index first) and decays the others: gaussian by exp(-iou^2 / sigma),
// linear by (1 - iou) when iou > iou_threshold. A box whose score is below
// score_threshold (initially or after a decay) is dropped. Fills the selected indices in
// selection order and their scores at selection.
template <class T>
void soft_nms(const T* boxes, const T* scores, int64_t n, double iou_threshold, double sigma,
              double score_threshold, SoftNmsMethod method, std::vector<int64_t>* keep,
              std::vector<T>* kept_scores);

}  // namespace pydetect
