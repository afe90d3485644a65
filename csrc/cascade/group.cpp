// groupRectangles as OpenCV computes it: clusters are the connected components of the
// "similar" relation (all four edges within eps * (min width + min height) / 2), numbered
// in order of their first member; each is averaged with float rounding; small clusters
// and clusters inside a more populated one are dropped.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>

#include "cascade/cascade.h"

namespace pydetect {
namespace cascade {
namespace {

// Coordinates are any int32 (cv::groupRectangles takes any): sums and differences are
// taken in int64 so that they cannot wrap; the results are OpenCV's wherever its int
// arithmetic does not overflow.
bool similar(const Candidate& a, const Candidate& b, double eps) {
  const double delta =
      eps * (int64_t(std::min(a.width, b.width)) + std::min(a.height, b.height)) * 0.5;
  return std::abs(int64_t(a.x) - b.x) <= delta && std::abs(int64_t(a.y) - b.y) <= delta &&
         std::abs(int64_t(a.x) + a.width - b.x - b.width) <= delta &&
         std::abs(int64_t(a.y) + a.height - b.y - b.height) <= delta;
}

// saturate_cast<int>(float): the float rounded half to even, clamped to the int range (an
// average of int32 values can round to 2^31 in float).
int saturate_round(float v) {
  if (!(v < 2147483648.0f)) return std::numeric_limits<int>::max();
  if (v < -2147483648.0f) return std::numeric_limits<int>::min();
  return round_half_even(v);
}

int find_root(std::vector<int>& parent, int i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

// Component labels 0..K-1 numbered by first appearance; returns K.
//
// The components of the "similar" relation do not depend on the order pairs are visited, so
// instead of OpenCV's all-pairs loop (quadratic: seconds for the tens of thousands of raw
// windows a weak cascade accepts) pairs are found by a sweep over the candidates sorted by x:
// similar(a, b) needs |x_a - x_b| <= delta <= eps * (w_a + h_a) / 2, so from each candidate
// only the ones after it in x order up to that distance need testing. The labels (numbered by
// first member in the original order) are then exactly OpenCV's.
int partition(const std::vector<Candidate>& r, double eps, std::vector<int>* labels) {
  const int n = static_cast<int>(r.size());
  std::vector<int> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  std::vector<int> by_x(n);
  std::iota(by_x.begin(), by_x.end(), 0);
  std::stable_sort(by_x.begin(), by_x.end(), [&](int a, int b) { return r[a].x < r[b].x; });
  for (int s = 0; s < n; ++s) {
    const int i = by_x[s];
    const double reach = eps * (int64_t(r[i].width) + r[i].height) * 0.5;
    for (int t = s + 1; t < n; ++t) {
      const int j = by_x[t];
      if (int64_t(r[j].x) - r[i].x > reach) break;
      if (!similar(r[i], r[j], eps)) continue;
      const int a = find_root(parent, i), b = find_root(parent, j);
      if (a != b) parent[std::max(a, b)] = std::min(a, b);
    }
  }
  labels->assign(n, -1);
  std::vector<int> label_of_root(n, -1);
  int k = 0;
  for (int i = 0; i < n; ++i) {
    const int root = find_root(parent, i);
    if (label_of_root[root] < 0) label_of_root[root] = k++;
    (*labels)[i] = label_of_root[root];
  }
  return k;
}

}  // namespace

void group_rectangles(std::vector<Candidate>* rects, std::vector<int>* neighbours,
                      int group_threshold, double eps) {
  std::vector<Candidate>& list = *rects;
  if (group_threshold <= 0 || list.empty()) {
    neighbours->assign(list.size(), 1);
    return;
  }
  std::vector<int> labels;
  const int k = partition(list, eps, &labels);
  std::vector<int64_t> sx(k, 0), sy(k, 0), sw(k, 0), sh(k, 0);
  std::vector<int> count(k, 0), level(k, 0);
  std::vector<double> weight(k, DBL_MIN);
  for (size_t i = 0; i < list.size(); ++i) {
    const int c = labels[i];
    sx[c] += list[i].x, sy[c] += list[i].y, sw[c] += list[i].width, sh[c] += list[i].height;
    ++count[c];
    if (list[i].level > level[c]) {
      level[c] = list[i].level;
      weight[c] = list[i].weight;
    } else if (list[i].level == level[c] && list[i].weight > weight[c]) {
      weight[c] = list[i].weight;
    }
  }
  std::vector<Candidate> avg(k);
  for (int c = 0; c < k; ++c) {
    const float s = 1.f / static_cast<float>(count[c]);
    // OpenCV: saturate_cast<int>(int * float), i.e. a float product rounded half to even.
    avg[c] = {saturate_round(static_cast<float>(sx[c]) * s),
              saturate_round(static_cast<float>(sy[c]) * s),
              saturate_round(static_cast<float>(sw[c]) * s),
              saturate_round(static_cast<float>(sh[c]) * s), level[c], weight[c]};
  }
  std::vector<Candidate> out;
  std::vector<int> nb;
  for (int i = 0; i < k; ++i) {
    const Candidate& r1 = avg[i];
    const int n1 = count[i];
    if (n1 <= group_threshold) continue;
    bool inside = false;
    for (int j = 0; j < k && !inside; ++j) {
      const int n2 = count[j];
      if (j == i || n2 <= group_threshold) continue;
      const Candidate& r2 = avg[j];
      // OpenCV's cvRound(width * eps) kept as a double: it may exceed the int range, and
      // the sums below are exact in double (|values| < 2^53).
      const double dx = std::nearbyint(r2.width * eps);
      const double dy = std::nearbyint(r2.height * eps);
      inside = r1.x >= r2.x - dx && r1.y >= r2.y - dy &&
               double(r1.x) + r1.width <= double(r2.x) + r2.width + dx &&
               double(r1.y) + r1.height <= double(r2.y) + r2.height + dy &&
               (n2 > std::max(3, n1) || n1 < 3);
    }
    if (!inside) {
      out.push_back(r1);
      nb.push_back(n1);
    }
  }
  *rects = std::move(out);
  *neighbours = std::move(nb);
}

void clip_candidates(std::vector<Candidate>* rects, std::vector<int>* neighbours, int width,
                     int height) {
  size_t j = 0;
  for (size_t i = 0; i < rects->size(); ++i) {
    Candidate r = (*rects)[i];
    const int x1 = std::max(r.x, 0), y1 = std::max(r.y, 0);
    const int x2 = static_cast<int>(std::min<int64_t>(int64_t(r.x) + r.width, width));
    const int y2 = static_cast<int>(std::min<int64_t>(int64_t(r.y) + r.height, height));
    if (x2 <= x1 || y2 <= y1) continue;
    r.x = x1, r.y = y1, r.width = x2 - x1, r.height = y2 - y1;
    (*rects)[j] = r;
    (*neighbours)[j] = (*neighbours)[i];
    ++j;
  }
  rects->resize(j);
  neighbours->resize(j);
}

}  // namespace cascade
}  // namespace pydetect
