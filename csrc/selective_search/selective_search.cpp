#include "selective_search/selective_search.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <unordered_set>

#include "common/check.h"
#include "common/parallel.h"
#include "segmentation/felzenszwalb.h"
#include "segmentation/filters.h"

namespace pydetect {
namespace {

// Gaussian G(t) and its derivative kernel D(t) = t / sigma^2 G(t), for correlation:
// correlating a ramp f(x) = x with D gives ~1.
void gaussian_kernels(double sigma, std::vector<float>* g, std::vector<float>* d) {
  const std::vector<double> taps = gaussian_taps(sigma);
  const int64_t r = static_cast<int64_t>(taps.size() / 2);
  g->resize(taps.size());
  d->resize(taps.size());
  for (int64_t t = -r; t <= r; ++t) {
    const double gt = taps[static_cast<size_t>(t + r)];
    (*g)[static_cast<size_t>(t + r)] = static_cast<float>(gt);
    (*d)[static_cast<size_t>(t + r)] = static_cast<float>(double(t) / (sigma * sigma) * gt);
  }
}

// Area-averaging shrink of an interleaved (h, w, 3) uint8 image to (oh, ow, 3).
std::vector<uint8_t> shrink(const uint8_t* in, int64_t h, int64_t w, int64_t oh, int64_t ow) {
  std::vector<uint8_t> out(static_cast<size_t>(oh * ow * 3));
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t y0 = oy * h / oh, y1 = std::max(y0 + 1, (oy + 1) * h / oh);
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t x0 = ox * w / ow, x1 = std::max(x0 + 1, (ox + 1) * w / ow);
      double acc[3] = {0, 0, 0};
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x)
          for (int c = 0; c < 3; ++c) acc[c] += in[(y * w + x) * 3 + c];
      const double n = double((y1 - y0) * (x1 - x0));
      for (int c = 0; c < 3; ++c) out[static_cast<size_t>((oy * ow + ox) * 3 + c)] = static_cast<uint8_t>(std::lround(acc[c] / n));
    }
  }
  return out;
}

// splitmix64: a small, portable generator (std distributions differ between libraries).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
};

}  // namespace

void convert_color(const uint8_t* rgb, int64_t n_pixels, ColorSpace cs, float* out) {
  if (cs == ColorSpace::Lab) {  // same formula, with the sRGB linearisation tabulated per byte
    float linear[256];
    for (int i = 0; i < 256; ++i) linear[i] = srgb_to_linear(i / 255.f);
    for (int64_t p = 0; p < n_pixels; ++p) {
      const uint8_t* px = rgb + 3 * p;
      float* o = out + 3 * p;
      linear_rgb_to_lab01(linear[px[0]], linear[px[1]], linear[px[2]], o);
      for (int i = 0; i < 3; ++i) o[i] = std::min(1.f, std::max(0.f, o[i]));
    }
    return;
  }
  const int c = color_space_channels(cs);
  for (int64_t p = 0; p < n_pixels; ++p) convert_pixel(rgb + 3 * p, cs, out + c * p);
}

PixelBins compute_pixel_bins(const float* image, int64_t h, int64_t w, int channels) {
  PixelBins bins;
  bins.channels = channels;
  const int64_t hw = h * w;
  bins.color.resize(static_cast<size_t>(hw * channels));
  bins.texture.resize(static_cast<size_t>(hw * channels * kOrientations));
  for (int64_t i = 0; i < hw * channels; ++i)
    bins.color[static_cast<size_t>(i)] = static_cast<uint8_t>(std::min<int>(kColorBins - 1, int(image[i] * kColorBins)));
  std::vector<float> g, d;
  gaussian_kernels(kTextureSigma, &g, &d);
  std::vector<float> plane(static_cast<size_t>(hw)), gx(static_cast<size_t>(hw)), gy(static_cast<size_t>(hw)),
      rg(static_cast<size_t>(hw)), rd(static_cast<size_t>(hw));
  float cs[kOrientations], sn[kOrientations];
  for (int o = 0; o < kOrientations; ++o) {
    cs[o] = static_cast<float>(std::cos(o * M_PI / 4));
    sn[o] = static_cast<float>(std::sin(o * M_PI / 4));
  }
  for (int c = 0; c < channels; ++c) {
    for (int64_t p = 0; p < hw; ++p) plane[static_cast<size_t>(p)] = image[p * channels + c];
    filter_rows(plane.data(), h, w, 1, d, rd.data());  // d/dx along rows
    filter_rows(plane.data(), h, w, 1, g, rg.data());  // smoothing along rows
    filter_cols(rd.data(), h, w, 1, g, gx.data());
    filter_cols(rg.data(), h, w, 1, d, gy.data());
    float mx = 0.f;
    for (int64_t p = 0; p < hw; ++p) mx = std::max(mx, std::sqrt(gx[p] * gx[p] + gy[p] * gy[p]));
    const float scale = mx > 0.f ? kTextureBins / mx : 0.f;
    for (int o = 0; o < kOrientations; ++o) {
      uint8_t* out = bins.texture.data() + (c * kOrientations + o) * hw;
      const float co = cs[o] * scale, so = sn[o] * scale;
      for (int64_t p = 0; p < hw; ++p) {
        const float v = std::min(float(kTextureBins - 1), std::max(0.f, gx[p] * co + gy[p] * so));
        out[p] = static_cast<uint8_t>(v);
      }
    }
  }
  return bins;
}

RegionSet build_regions(const PixelBins& bins, const int32_t* labels, int64_t n, int64_t h, int64_t w) {
  RegionSet r;
  const int C = bins.channels;
  // int64: region index x histogram length passes 2^31 from ~9M regions (min_size 1, big
  // images), where int32 products would wrap.
  const int64_t dc = kColorBins * C, dt = kTextureBins * kOrientations * C;
  r.n = n;
  r.image_area = h * w;
  r.channels = C;
  r.size.assign(static_cast<size_t>(n), 0);
  r.box.resize(static_cast<size_t>(4 * n));
  for (int64_t i = 0; i < n; ++i) {
    r.box[4 * i] = r.box[4 * i + 1] = INT32_MAX;
    r.box[4 * i + 2] = r.box[4 * i + 3] = -1;
  }
  std::vector<uint32_t> ccount(static_cast<size_t>(n * dc), 0), tcount(static_cast<size_t>(n * dt), 0);
  r.neighbours.assign(static_cast<size_t>(n), {});
  const int64_t hw = h * w;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x;
      const int32_t l = labels[p];
      PD_CHECK(l >= 0 && l < n, "selective search: label ", l, " out of range [0, ", n, ")");
      ++r.size[l];
      int32_t* b = &r.box[4 * int64_t(l)];
      b[0] = std::min<int32_t>(b[0], int32_t(x));
      b[1] = std::min<int32_t>(b[1], int32_t(y));
      b[2] = std::max<int32_t>(b[2], int32_t(x));
      b[3] = std::max<int32_t>(b[3], int32_t(y));
      for (int c = 0; c < C; ++c) ++ccount[static_cast<size_t>(l * dc + c * kColorBins + bins.color[p * C + c])];
      uint32_t* tc = &tcount[static_cast<size_t>(l * dt)];
      for (int co = 0; co < C * kOrientations; ++co) ++tc[co * kTextureBins + bins.texture[co * hw + p]];
    }
  }
  // Adjacency over the 8-neighbourhood (right, down, down-right, down-left pairs).
  std::vector<std::pair<int32_t, int32_t>> pairs;
  std::pair<int32_t, int32_t> last{-1, -1};  // boundaries repeat the same pair along a row
  auto link = [&](int32_t a, int32_t b) {
    if (a == b) return;
    const std::pair<int32_t, int32_t> pr{std::min(a, b), std::max(a, b)};
    if (pr != last) pairs.push_back(last = pr);
  };
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int32_t l = labels[y * w + x];
      if (x + 1 < w) link(l, labels[y * w + x + 1]);
      if (y + 1 < h) {
        link(l, labels[(y + 1) * w + x]);
        if (x + 1 < w) link(l, labels[(y + 1) * w + x + 1]);
        if (x > 0) link(l, labels[(y + 1) * w + x - 1]);
      }
    }
  }
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  for (const auto& pr : pairs) {
    r.neighbours[pr.first].push_back(pr.second);
    r.neighbours[pr.second].push_back(pr.first);
  }
  r.color.resize(static_cast<size_t>(n * dc));
  r.texture.resize(static_cast<size_t>(n * dt));
  for (int64_t i = 0; i < n; ++i) {
    const float nc = 1.f / float(r.size[i] * C), nt = 1.f / float(r.size[i] * C * kOrientations);
    for (int k = 0; k < dc; ++k) r.color[static_cast<size_t>(i * dc + k)] = ccount[static_cast<size_t>(i * dc + k)] * nc;
    for (int k = 0; k < dt; ++k) r.texture[static_cast<size_t>(i * dt + k)] = tcount[static_cast<size_t>(i * dt + k)] * nt;
  }
  return r;
}

Hierarchy group_regions(const RegionSet& init, int terms) {
  Hierarchy out;
  const int64_t n = init.n;
  if (n <= 0) return out;
  const int64_t total = 2 * n - 1;
  const int C = init.channels;
  // int64: region index x histogram length passes 2^31 from ~9M regions (min_size 1, big
  // images), where int32 products would wrap.
  const int64_t dc = kColorBins * C, dt = kTextureBins * kOrientations * C;
  const bool use_c = terms & kColour, use_t = terms & kTexture;
  std::vector<int64_t> size(init.size);
  size.resize(static_cast<size_t>(total));
  out.boxes = init.box;
  out.boxes.resize(static_cast<size_t>(4 * total));
  std::vector<float> color, texture;
  if (use_c) {
    color = init.color;
    color.resize(static_cast<size_t>(total * dc));
  }
  if (use_t) {
    texture = init.texture;
    texture.resize(static_cast<size_t>(total * dt));
  }
  std::vector<std::vector<int32_t>> nb(init.neighbours);
  nb.resize(static_cast<size_t>(total));
  std::vector<char> alive(static_cast<size_t>(total), 0);
  std::fill(alive.begin(), alive.begin() + n, 1);
  const double area = double(init.image_area);

  auto intersection = [](const float* a, const float* b, int d) {
    float s = 0.f;
    for (int k = 0; k < d; ++k) s += std::min(a[k], b[k]);
    return s;
  };
  auto similarity = [&](int32_t i, int32_t j) {
    double s = 0.0;
    if (use_c) s += intersection(&color[static_cast<size_t>(i * dc)], &color[static_cast<size_t>(j * dc)], dc);
    if (use_t) s += intersection(&texture[static_cast<size_t>(i * dt)], &texture[static_cast<size_t>(j * dt)], dt);
    if (terms & kSize) s += 1.0 - double(size[i] + size[j]) / area;
    if (terms & kFill) {
      const int32_t *a = &out.boxes[4 * int64_t(i)], *b = &out.boxes[4 * int64_t(j)];
      const double bw = std::max(a[2], b[2]) - std::min(a[0], b[0]) + 1;
      const double bh = std::max(a[3], b[3]) - std::min(a[1], b[1]) + 1;
      s += 1.0 - (bw * bh - double(size[i] + size[j])) / area;
    }
    return static_cast<float>(s);
  };
  struct Entry {
    float s;
    int32_t a, b;  // a < b
    bool operator<(const Entry& o) const {  // max-heap: highest s, then lowest (a, b)
      if (s != o.s) return s < o.s;
      if (a != o.a) return a > o.a;
      return b > o.b;
    }
  };
  std::priority_queue<Entry> heap;
  for (int32_t a = 0; a < n; ++a)
    for (int32_t b : nb[a])
      if (a < b) heap.push({similarity(a, b), a, b});
  std::vector<int32_t> stamp(static_cast<size_t>(total), -1);
  int32_t next = static_cast<int32_t>(n);
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    if (!alive[e.a] || !alive[e.b]) continue;
    const int32_t t = next++, a = e.a, b = e.b;
    size[t] = size[a] + size[b];
    const double wa = double(size[a]) / double(size[t]), wb = double(size[b]) / double(size[t]);
    if (use_c)
      for (int k = 0; k < dc; ++k)
        color[static_cast<size_t>(t * dc + k)] = float(wa * color[static_cast<size_t>(a * dc + k)] + wb * color[static_cast<size_t>(b * dc + k)]);
    if (use_t)
      for (int k = 0; k < dt; ++k)
        texture[static_cast<size_t>(t * dt + k)] = float(wa * texture[static_cast<size_t>(a * dt + k)] + wb * texture[static_cast<size_t>(b * dt + k)]);
    int32_t* bt = &out.boxes[4 * int64_t(t)];
    const int32_t *ba = &out.boxes[4 * int64_t(a)], *bb = &out.boxes[4 * int64_t(b)];
    bt[0] = std::min(ba[0], bb[0]);
    bt[1] = std::min(ba[1], bb[1]);
    bt[2] = std::max(ba[2], bb[2]);
    bt[3] = std::max(ba[3], bb[3]);
    alive[a] = alive[b] = 0;
    alive[t] = 1;
    out.merges.push_back(a);
    out.merges.push_back(b);
    out.similarity.push_back(e.s);
    std::vector<int32_t>& merged = nb[t];
    stamp[a] = stamp[b] = t;
    for (int32_t part : {a, b})
      for (int32_t m : nb[part])
        if (stamp[m] != t) {
          stamp[m] = t;
          merged.push_back(m);
        }
    for (int32_t m : merged) {
      auto& list = nb[m];
      list.erase(std::remove_if(list.begin(), list.end(), [&](int32_t v) { return v == a || v == b; }), list.end());
      list.push_back(t);
      heap.push({similarity(m, t), m, t});
    }
    std::vector<int32_t>().swap(nb[a]);
    std::vector<int32_t>().swap(nb[b]);
  }
  out.boxes.resize(static_cast<size_t>(4 * next));
  return out;
}

std::vector<float> selective_search(const uint8_t* rgb, int64_t h, int64_t w, const std::vector<ColorSpace>& spaces,
                                    const std::vector<double>& ks, const std::vector<int>& strategies, int64_t min_size,
                                    double sigma, uint64_t seed, int64_t max_size, int64_t max_boxes) {
  PD_CHECK(h > 0 && w > 0, "selective_search: image must not be empty, got ", h, "x", w);
  PD_CHECK(max_size >= 1 && max_size <= 65535, "selective_search: max_size must be in [1, 65535], got ", max_size);
  PD_CHECK(!spaces.empty() && !ks.empty() && !strategies.empty(), "selective_search: empty strategy set");
  // Working resolution.
  int64_t ph = h, pw = w;
  std::vector<uint8_t> small;
  const uint8_t* img = rgb;
  if (std::max(h, w) > max_size) {
    const double f = double(max_size) / double(std::max(h, w));
    ph = std::max<int64_t>(1, std::llround(h * f));
    pw = std::max<int64_t>(1, std::llround(w * f));
    small = shrink(rgb, h, w, ph, pw);
    img = small.data();
  }
  const int64_t hw = ph * pw;
  const int64_t ns = static_cast<int64_t>(spaces.size()), nk = static_cast<int64_t>(ks.size()),
                nt = static_cast<int64_t>(strategies.size());
  // 1. Colour conversion, one colour space per task.
  std::vector<std::vector<float>> converted(static_cast<size_t>(ns));
  parallel_for(0, ns, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t s = lo; s < hi; ++s) {
      converted[s].resize(static_cast<size_t>(hw * color_space_channels(spaces[s])));
      convert_color(img, hw, spaces[s], converted[s].data());
    }
  });
  // 2. Independent tasks: per-pixel bins of each colour space, and one segmentation per
  // (colour space, k).
  std::vector<PixelBins> bins(static_cast<size_t>(ns));
  std::vector<std::vector<int32_t>> labels(static_cast<size_t>(ns * nk));
  std::vector<int32_t> n_labels(static_cast<size_t>(ns * nk));
  parallel_for(0, ns + ns * nk, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      if (task < ns) {
        bins[task] = compute_pixel_bins(converted[task].data(), ph, pw, color_space_channels(spaces[task]));
        continue;
      }
      const int64_t i = task - ns, s = i / nk;
      const double k = ks[i % nk];
      const int64_t ms = min_size > 0 ? min_size : std::max<int64_t>(1, std::llround(k));
      labels[i].resize(static_cast<size_t>(hw));
      n_labels[i] = felzenszwalb(converted[s].data(), ph, pw, color_space_channels(spaces[s]), k, sigma, ms,
                                 labels[i].data());
    }
  });
  // Regions and their features per (colour space, k).
  std::vector<RegionSet> regions(static_cast<size_t>(ns * nk));
  parallel_for(0, ns * nk, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      regions[i] = build_regions(bins[i / nk], labels[i].data(), n_labels[i], ph, pw);
      std::vector<int32_t>().swap(labels[i]);
    }
  });
  // 3. One hierarchy per (colour space, k, similarity strategy).
  struct Ranked {
    double priority;
    int64_t task, order;
    int32_t box[4];
  };
  std::vector<std::vector<Ranked>> ranked(static_cast<size_t>(ns * nk * nt));
  parallel_for(0, ns * nk * nt, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const Hierarchy hier = group_regions(regions[i / nt], strategies[i % nt]);
      const int64_t count = static_cast<int64_t>(hier.boxes.size() / 4);
      SplitMix64 rng{seed * 0x100000001B3ull + uint64_t(i) * 0x9E3779B97F4A7C15ull + 1};
      auto& out = ranked[i];
      out.resize(static_cast<size_t>(count));
      for (int64_t r = 0; r < count; ++r) {
        // Position in the hierarchy: the last merge is 1, the first initial region `count`.
        const double position = double(count - r);
        out[r].priority = position * rng.uniform();
        out[r].task = i;
        out[r].order = r;
        std::copy(&hier.boxes[4 * r], &hier.boxes[4 * r] + 4, out[r].box);
      }
    }
  });
  std::vector<Ranked> all;
  for (auto& v : ranked) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end(), [](const Ranked& a, const Ranked& b) {
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.task != b.task) return a.task < b.task;
    return a.order < b.order;
  });
  std::unordered_set<uint64_t> seen;
  seen.reserve(all.size());
  std::vector<float> boxes;
  const double sx = double(w) / double(pw), sy = double(h) / double(ph);
  for (const Ranked& r : all) {
    if (max_boxes >= 0 && int64_t(boxes.size() / 4) >= max_boxes) break;
    const uint64_t key = (uint64_t(r.box[0]) << 48) | (uint64_t(r.box[1]) << 32) | (uint64_t(r.box[2]) << 16) | uint64_t(r.box[3]);
    if (!seen.insert(key).second) continue;
    boxes.push_back(static_cast<float>(std::min(double(w), r.box[0] * sx)));
    boxes.push_back(static_cast<float>(std::min(double(h), r.box[1] * sy)));
    boxes.push_back(static_cast<float>(std::min(double(w), (r.box[2] + 1) * sx)));
    boxes.push_back(static_cast<float>(std::min(double(h), (r.box[3] + 1) * sy)));
  }
  return boxes;
}

}  // namespace pydetect
