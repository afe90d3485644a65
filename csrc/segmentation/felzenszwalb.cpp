#include "segmentation/felzenszwalb.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "common/check.h"
#include "segmentation/filters.h"

namespace pydetect {
namespace {

// Stable LSD radix sort of 64-bit keys on bits [first_bit, 64), 11-bit digits (the
// 2048 counters stay in L1; 16-bit digits were slower on the scatter), skipping digits
// that are the same in every key.
void radix_sort(std::vector<uint64_t>& keys, int first_bit) {
  constexpr int kBits = 11;
  constexpr uint64_t kMask = (1u << kBits) - 1;
  std::vector<uint64_t> tmp(keys.size());
  std::vector<uint32_t> count(size_t(1) << kBits);
  for (int shift = first_bit; shift < 64; shift += kBits) {
    std::fill(count.begin(), count.end(), 0u);
    for (uint64_t k : keys) ++count[(k >> shift) & kMask];
    if (count[(keys[0] >> shift) & kMask] == keys.size()) continue;  // digit constant
    uint32_t total = 0;
    for (auto& c : count) {
      const uint32_t c0 = c;
      c = total;
      total += c0;
    }
    for (uint64_t k : keys) tmp[count[(k >> shift) & kMask]++] = k;
    keys.swap(tmp);
  }
}

// Union-find over pixels; a node's fields share one cache line (the sorted edges visit
// pixels in random order, so this loop is bound by memory latency).
struct DisjointSets {
  struct Node {
    int32_t parent, size;
    float threshold;  // Int(C) + tau(C), Int(C) the largest weight of C's MST (float, as skimage)
  };
  std::vector<Node> nodes;
  DisjointSets(int64_t n, float k) : nodes(static_cast<size_t>(n)) {
    for (int64_t i = 0; i < n; ++i) nodes[static_cast<size_t>(i)] = {static_cast<int32_t>(i), 1, k};
  }
  int32_t find(int32_t x) {
    while (nodes[x].parent != x) {
      nodes[x].parent = nodes[nodes[x].parent].parent;  // path halving
      x = nodes[x].parent;
    }
    return x;
  }
  int32_t join(int32_t a, int32_t b) {  // a, b roots
    if (nodes[a].size < nodes[b].size) std::swap(a, b);
    nodes[b].parent = a;
    nodes[a].size += nodes[b].size;
    return a;
  }
  void flatten() {  // every node points at its root
    for (size_t i = 0; i < nodes.size(); ++i) nodes[i].parent = nodes[nodes[i].parent].parent;
  }
};

}  // namespace

void gaussian_smooth(const float* in, int64_t h, int64_t w, int64_t c, double sigma, float* out) {
  const int64_t n = h * w * c;
  if (!(sigma > 0)) {
    std::memcpy(out, in, sizeof(float) * static_cast<size_t>(n));
    return;
  }
  const std::vector<double> taps = gaussian_taps(sigma);
  const std::vector<float> k(taps.begin(), taps.end());
  std::vector<float> tmp(static_cast<size_t>(n));
  filter_rows(in, h, w, c, k, tmp.data());
  filter_cols(tmp.data(), h, w, c, k, out);
}

int32_t felzenszwalb(const float* image, int64_t h, int64_t w, int64_t c, double scale, double sigma,
                     int64_t min_size, int32_t* labels) {
  PD_CHECK(h > 0 && w > 0 && c > 0, "felzenszwalb: image must not be empty, got ", h, "x", w, "x", c);
  const int64_t hw = h * w;
  PD_CHECK(4 * hw < (int64_t(1) << 32), "felzenszwalb: image too large (", h, "x", w, ")");
  std::vector<float> smooth(static_cast<size_t>(hw * c));
  gaussian_smooth(image, h, w, c, sigma, smooth.data());

  // Edge e = type * hw + p joins pixel p with p + offset[type]; type 0 right, 1 down,
  // 2 down-right, 3 up-right (p is the upper pixel (y, x + 1), its partner (y + 1, x)).
  const int64_t offset[4] = {1, w, w + 1, w - 1};
  std::vector<uint64_t> keys;
  keys.reserve(static_cast<size_t>(4 * hw));
  auto add = [&](int64_t type, int64_t p) {
    const float* a = smooth.data() + p * c;
    const float* b = smooth.data() + (p + offset[type]) * c;
    float d2 = 0.f;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float d = a[ch] - b[ch];
      d2 += d * d;
    }
    float cost = std::sqrt(d2);
    uint32_t bits;
    std::memcpy(&bits, &cost, sizeof bits);  // non-negative floats sort as their bits
    keys.push_back((uint64_t(bits) << 32) | uint64_t(type * hw + p));
  };
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x + 1 < w; ++x) add(0, y * w + x);
  for (int64_t y = 0; y + 1 < h; ++y)
    for (int64_t x = 0; x < w; ++x) add(1, y * w + x);
  for (int64_t y = 0; y + 1 < h; ++y)
    for (int64_t x = 0; x + 1 < w; ++x) add(2, y * w + x);
  for (int64_t y = 0; y + 1 < h; ++y)
    for (int64_t x = 1; x < w; ++x) add(3, y * w + x);
  // Keys are generated in increasing edge index, so a stable sort on the weight bits
  // alone orders equal weights by edge index.
  if (!keys.empty()) radix_sort(keys, 32);

  auto endpoints = [&](uint64_t key, int32_t* a, int32_t* b) {
    const int64_t e = static_cast<int64_t>(key & 0xFFFFFFFFu);
    const int64_t type = int64_t(e >= hw) + int64_t(e >= 2 * hw) + int64_t(e >= 3 * hw);  // no idiv
    const int64_t p = e - type * hw;
    *a = static_cast<int32_t>(p);
    *b = static_cast<int32_t>(p + offset[type]);
  };
  const double k = scale / 255.0;
  DisjointSets sets(hw, static_cast<float>(k));
  const size_t n_edges = keys.size();
  constexpr size_t kAhead = 16;  // prefetch distance: the loop is bound by memory latency
  for (size_t i = 0; i < n_edges; ++i) {
    if (i + kAhead < n_edges) {
      int32_t pa, pb;
      endpoints(keys[i + kAhead], &pa, &pb);
      __builtin_prefetch(&sets.nodes[pa]);
      __builtin_prefetch(&sets.nodes[pb]);
    }
    const uint64_t key = keys[i];
    int32_t a, b;
    endpoints(key, &a, &b);
    a = sets.find(a);
    b = sets.find(b);
    if (a == b) continue;
    uint32_t bits = static_cast<uint32_t>(key >> 32);
    float cost;
    std::memcpy(&cost, &bits, sizeof cost);
    if (cost < std::min(sets.nodes[a].threshold, sets.nodes[b].threshold)) {
      const int32_t r = sets.join(a, b);
      sets.nodes[r].threshold = static_cast<float>(double(cost) + k / sets.nodes[r].size);
    }
  }
  if (min_size > 1) {
    // One sweep of pointer jumping shortens the paths; find() completes what is left.
    sets.flatten();
    // Components still below min_size; the sweep stops once there are none.
    int64_t n_small = 0;
    for (int64_t p = 0; p < hw; ++p) n_small += sets.nodes[p].parent == p && sets.nodes[p].size < min_size;
    for (size_t i = 0; i < n_edges && n_small > 0; ++i) {
      if (i + kAhead < n_edges) {
        int32_t pa, pb;
        endpoints(keys[i + kAhead], &pa, &pb);
        __builtin_prefetch(&sets.nodes[pa]);
        __builtin_prefetch(&sets.nodes[pb]);
      }
      int32_t a, b;
      endpoints(keys[i], &a, &b);
      a = sets.find(a);
      b = sets.find(b);
      if (a == b) continue;
      const bool small_a = sets.nodes[a].size < min_size, small_b = sets.nodes[b].size < min_size;
      if (small_a || small_b) {
        const int32_t r = sets.join(a, b);
        n_small -= int64_t(small_a) + int64_t(small_b) - int64_t(sets.nodes[r].size < min_size);
      }
    }
  }
  std::vector<int32_t> label_of_root(static_cast<size_t>(hw), -1);
  int32_t n = 0;
  for (int64_t p = 0; p < hw; ++p) {
    const int32_t r = sets.find(static_cast<int32_t>(p));
    if (label_of_root[r] < 0) label_of_root[r] = n++;
    labels[p] = label_of_root[r];
  }
  return n;
}

}  // namespace pydetect
