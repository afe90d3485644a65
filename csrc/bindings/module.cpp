// The only file that includes pybind11. Each binding checks shapes (stating what it got),
// allocates outputs while holding the GIL, then releases the GIL around the kernel call.
// Input validation with user-facing messages lives in pydetect/_validation.py; the checks
// here are the last line of defence for callers of the private module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "boxes/box_ops.h"
#include "boxes/nms.h"
#include "common/parallel.h"
#include "roi/roi_ops.h"
#include "segmentation/felzenszwalb.h"
#include "selective_search/selective_search.h"

namespace py = pybind11;

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_of(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s << (d ? ", " : "") << a.shape(d);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

int64_t num_boxes(const py::array& a, const char* name) {
  if (a.ndim() != 2 || a.shape(1) != 4) {
    throw py::value_error(std::string(name) + " must have shape (N, 4), got " + shape_of(a));
  }
  return a.shape(0);
}

void check_length(const py::array& a, int64_t n, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != n) {
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(n) +
                          ",), got " + shape_of(a));
  }
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), out.mutable_data());
  return out;
}

// ----------------------------------------------------------------------------- boxes
template <class T>
void bind_boxes(py::module_& m) {
  m.def("box_area", [](const CArray<T>& boxes) {
    const int64_t n = num_boxes(boxes, "boxes");
    py::array_t<T> out(n);
    const T* in = boxes.data();
    T* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::box_area(in, n, o);
    return out;
  }, py::arg("boxes"), "Areas (x2 - x1) * (y2 - y1) of (N, 4) boxes.");

  m.def("box_iou", [](const CArray<T>& a, const CArray<T>& b) {
    const int64_t n = num_boxes(a, "boxes1"), k = num_boxes(b, "boxes2");
    py::array_t<T> out({n, k});
    const T *pa = a.data(), *pb = b.data();
    T* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::box_iou(pa, n, pb, k, o);
    return out;
  }, py::arg("boxes1"), py::arg("boxes2"), "Pairwise IoU, (N, 4) x (M, 4) -> (N, M).");

  m.def("box_convert", [](const CArray<T>& boxes, int from, int to) {
    const int64_t n = num_boxes(boxes, "boxes");
    if (from < 0 || from > 2 || to < 0 || to > 2) throw py::value_error("unknown box format code");
    py::array_t<T> out({n, int64_t(4)});
    const T* in = boxes.data();
    T* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::box_convert(in, n, pydetect::BoxFormat(from), pydetect::BoxFormat(to), o);
    return out;
  }, py::arg("boxes"), py::arg("in_fmt"), py::arg("out_fmt"),
     "Converts boxes between formats 0 = xyxy, 1 = xywh, 2 = cxcywh.");

  m.def("clip_boxes", [](const CArray<T>& boxes, double height, double width) {
    const int64_t n = num_boxes(boxes, "boxes");
    py::array_t<T> out({n, int64_t(4)});
    const T* in = boxes.data();
    T* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::clip_boxes(in, n, T(height), T(width), o);
    return out;
  }, py::arg("boxes"), py::arg("height"), py::arg("width"),
     "Clamps x to [0, width] and y to [0, height].");

  m.def("remove_small_boxes", [](const CArray<T>& boxes, double min_size) {
    const int64_t n = num_boxes(boxes, "boxes");
    const T* in = boxes.data();
    std::vector<int64_t> keep;
    {
      py::gil_scoped_release release;
      keep = pydetect::remove_small_boxes(in, n, T(min_size));
    }
    return to_array(keep);
  }, py::arg("boxes"), py::arg("min_size"),
     "Indices of boxes with width and height >= min_size.");

  m.def("nms", [](const CArray<T>& boxes, const CArray<T>& scores, double iou_threshold) {
    const int64_t n = num_boxes(boxes, "boxes");
    check_length(scores, n, "scores");
    const T *pb = boxes.data(), *ps = scores.data();
    std::vector<int64_t> keep;
    {
      py::gil_scoped_release release;
      keep = pydetect::nms(pb, ps, n, iou_threshold);
    }
    return to_array(keep);
  }, py::arg("boxes"), py::arg("scores"), py::arg("iou_threshold"),
     "Greedy NMS; kept indices by decreasing score (torchvision's result).");

  m.def("batched_nms", [](const CArray<T>& boxes, const CArray<T>& scores,
                          const CArray<int64_t>& labels, double iou_threshold) {
    const int64_t n = num_boxes(boxes, "boxes");
    check_length(scores, n, "scores");
    check_length(labels, n, "labels");
    const T *pb = boxes.data(), *ps = scores.data();
    const int64_t* pl = labels.data();
    std::vector<int64_t> keep;
    {
      py::gil_scoped_release release;
      keep = pydetect::batched_nms(pb, ps, pl, n, iou_threshold);
    }
    return to_array(keep);
  }, py::arg("boxes"), py::arg("scores"), py::arg("labels"), py::arg("iou_threshold"),
     "NMS per label; kept indices by decreasing score.");

  m.def("soft_nms", [](const CArray<T>& boxes, const CArray<T>& scores, double iou_threshold,
                       double sigma, double score_threshold, int method) {
    const int64_t n = num_boxes(boxes, "boxes");
    check_length(scores, n, "scores");
    if (method != 0 && method != 1) throw py::value_error("method must be 0 (linear) or 1 (gaussian)");
    if (!(sigma > 0)) throw py::value_error("sigma must be > 0");
    const T *pb = boxes.data(), *ps = scores.data();
    std::vector<int64_t> keep;
    std::vector<T> kept_scores;
    {
      py::gil_scoped_release release;
      pydetect::soft_nms(pb, ps, n, iou_threshold, sigma, score_threshold,
                         pydetect::SoftNmsMethod(method), &keep, &kept_scores);
    }
    return py::make_tuple(to_array(keep), to_array(kept_scores));
  }, py::arg("boxes"), py::arg("scores"), py::arg("iou_threshold"), py::arg("sigma"),
     py::arg("score_threshold"), py::arg("method"),
     "Soft-NMS (method 0 = linear, 1 = gaussian) -> (kept indices, scores at selection).");
}

// ----------------------------------------------------------------------------- roi
// RoI align / RoI max pool forward and backward. Python's torch.autograd.Function in
// pydetect/ops/roi.py calls these on zero-copy numpy views of CPU tensors.
void check_roi_args(const py::array& input, const py::array& rois, int64_t pooled_h,
                    int64_t pooled_w) {
  if (input.ndim() != 4) throw py::value_error("input must have shape (N, C, H, W), got " + shape_of(input));
  if (rois.ndim() != 2 || rois.shape(1) != 5) throw py::value_error("rois must have shape (K, 5), got " + shape_of(rois));
  if (pooled_h <= 0 || pooled_w <= 0) throw py::value_error("output_size must be positive");
}

void check_grad_shape(const py::array& grad, const py::array& rois, int64_t c, int64_t pooled_h,
                      int64_t pooled_w) {
  if (grad.ndim() != 4 || grad.shape(0) != rois.shape(0) || grad.shape(1) != c ||
      grad.shape(2) != pooled_h || grad.shape(3) != pooled_w) {
    throw py::value_error("grad_output must have shape (K, C, PH, PW) = (" +
                          std::to_string(rois.shape(0)) + ", " + std::to_string(c) + ", " +
                          std::to_string(pooled_h) + ", " + std::to_string(pooled_w) + "), got " +
                          shape_of(grad));
  }
}

template <class T>
void bind_roi(py::module_& m) {
  m.def("roi_align_forward", [](const CArray<T>& input, const CArray<T>& rois, double spatial_scale,
                                int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
    check_roi_args(input, rois, pooled_h, pooled_w);
    const int64_t n = input.shape(0), c = input.shape(1), h = input.shape(2), w = input.shape(3);
    const int64_t k = rois.shape(0);
    py::array_t<T> out({k, c, pooled_h, pooled_w});
    const T *pi = input.data(), *pr = rois.data();
    T* po = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::roi_align_forward(pi, n, c, h, w, pr, k, T(spatial_scale), pooled_h, pooled_w,
                                sampling_ratio, aligned, po);
    return out;
  }, py::arg("input"), py::arg("rois"), py::arg("spatial_scale"), py::arg("pooled_h"),
     py::arg("pooled_w"), py::arg("sampling_ratio"), py::arg("aligned"),
     "RoIAlign forward: (N, C, H, W), (K, 5) -> (K, C, PH, PW).");

  m.def("roi_align_backward", [](const CArray<T>& grad, const CArray<T>& rois, double spatial_scale,
                                 int64_t pooled_h, int64_t pooled_w, int64_t n, int64_t c, int64_t h,
                                 int64_t w, int64_t sampling_ratio, bool aligned) {
    if (rois.ndim() != 2 || rois.shape(1) != 5) throw py::value_error("rois must have shape (K, 5), got " + shape_of(rois));
    if (n < 0 || c < 0 || h <= 0 || w <= 0) throw py::value_error("input shape must be positive");
    check_grad_shape(grad, rois, c, pooled_h, pooled_w);
    const int64_t k = rois.shape(0);
    py::array_t<T> out({n, c, h, w});
    const T *pg = grad.data(), *pr = rois.data();
    T* po = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::roi_align_backward(pg, pr, k, n, c, h, w, T(spatial_scale), pooled_h, pooled_w,
                                 sampling_ratio, aligned, po);
    return out;
  }, py::arg("grad_output"), py::arg("rois"), py::arg("spatial_scale"), py::arg("pooled_h"),
     py::arg("pooled_w"), py::arg("n"), py::arg("c"), py::arg("h"), py::arg("w"),
     py::arg("sampling_ratio"), py::arg("aligned"),
     "RoIAlign backward: gradient (N, C, H, W) of the input.");

  m.def("roi_pool_forward", [](const CArray<T>& input, const CArray<T>& rois, double spatial_scale,
                               int64_t pooled_h, int64_t pooled_w) {
    check_roi_args(input, rois, pooled_h, pooled_w);
    const int64_t n = input.shape(0), c = input.shape(1), h = input.shape(2), w = input.shape(3);
    const int64_t k = rois.shape(0);
    py::array_t<T> out({k, c, pooled_h, pooled_w});
    py::array_t<int64_t> argmax({k, c, pooled_h, pooled_w});
    const T *pi = input.data(), *pr = rois.data();
    T* po = out.mutable_data();
    int64_t* pa = argmax.mutable_data();
    {
      py::gil_scoped_release release;
      pydetect::roi_pool_forward(pi, n, c, h, w, pr, k, T(spatial_scale), pooled_h, pooled_w, po, pa);
    }
    return py::make_tuple(out, argmax);
  }, py::arg("input"), py::arg("rois"), py::arg("spatial_scale"), py::arg("pooled_h"),
     py::arg("pooled_w"),
     "RoI max pool forward -> (output (K, C, PH, PW), argmax plane offsets, -1 if empty).");

  m.def("roi_pool_backward", [](const CArray<T>& grad, const CArray<int64_t>& argmax,
                                const CArray<T>& rois, int64_t n, int64_t c, int64_t h, int64_t w) {
    if (rois.ndim() != 2 || rois.shape(1) != 5) throw py::value_error("rois must have shape (K, 5), got " + shape_of(rois));
    if (n < 0 || c < 0 || h <= 0 || w <= 0) throw py::value_error("input shape must be positive");
    if (grad.ndim() != 4) throw py::value_error("grad_output must have shape (K, C, PH, PW), got " + shape_of(grad));
    const int64_t pooled_h = grad.shape(2), pooled_w = grad.shape(3);
    check_grad_shape(grad, rois, c, pooled_h, pooled_w);
    check_grad_shape(argmax, rois, c, pooled_h, pooled_w);
    const int64_t k = rois.shape(0);
    py::array_t<T> out({n, c, h, w});
    const T *pg = grad.data(), *pr = rois.data();
    const int64_t* pa = argmax.data();
    T* po = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::roi_pool_backward(pg, pa, pr, k, n, c, h, w, pooled_h, pooled_w, po);
    return out;
  }, py::arg("grad_output"), py::arg("argmax"), py::arg("rois"), py::arg("n"), py::arg("c"),
     py::arg("h"), py::arg("w"), "RoI max pool backward: gradient (N, C, H, W) of the input.");
}

// ----------------------------------------------------------------------------- segmentation
// Felzenszwalb segmentation and selective search (csrc/segmentation, csrc/selective_search).
void bind_segmentation(py::module_& m) {
  // (H, W) or (H, W, C) -> sizes; C is 1 for a 2-D array.
  auto image_dims = [](const py::array& a, const char* name, int64_t* h, int64_t* w, int64_t* c) {
    if (a.ndim() != 2 && a.ndim() != 3) {
      throw py::value_error(std::string(name) + " must have shape (H, W) or (H, W, C), got " + shape_of(a));
    }
    *h = a.shape(0);
    *w = a.shape(1);
    *c = a.ndim() == 3 ? a.shape(2) : 1;
    if (*h == 0 || *w == 0 || *c == 0) throw py::value_error(std::string(name) + " must not be empty, got " + shape_of(a));
  };
  auto labels_of = [](const CArray<int32_t>& labels, int64_t h, int64_t w) {
    if (labels.ndim() != 2 || labels.shape(0) != h || labels.shape(1) != w) {
      throw py::value_error("labels must have shape (" + std::to_string(h) + ", " + std::to_string(w) + "), got " +
                            shape_of(labels));
    }
    int32_t n = 0;
    for (py::ssize_t i = 0; i < labels.size(); ++i) {
      if (labels.data()[i] < 0) throw py::value_error("labels must be >= 0");
      n = std::max(n, labels.data()[i] + 1);
    }
    return n;
  };

  m.def("felzenszwalb", [image_dims](const CArray<float>& image, double scale, double sigma, int64_t min_size) {
    int64_t h, w, c;
    image_dims(image, "image", &h, &w, &c);
    py::array_t<int32_t> labels({h, w});
    const float* in = image.data();
    int32_t* out = labels.mutable_data();
    py::gil_scoped_release release;
    pydetect::felzenszwalb(in, h, w, c, scale, sigma, min_size, out);
    return labels;
  }, py::arg("image"), py::arg("scale"), py::arg("sigma"), py::arg("min_size"),
     "Felzenszwalb-Huttenlocher segmentation of a float (H, W[, C]) image on the [0, 1] scale "
     "-> (H, W) int32 labels 0..n-1 numbered in raster order of first appearance.");

  m.def("ss_convert_color", [](const CArray<uint8_t>& rgb, int space) {
    if (rgb.ndim() != 3 || rgb.shape(2) != 3) throw py::value_error("image must have shape (H, W, 3), got " + shape_of(rgb));
    if (space < 0 || space > 4) throw py::value_error("unknown colour space code");
    const auto cs = pydetect::ColorSpace(space);
    const int64_t h = rgb.shape(0), w = rgb.shape(1), c = pydetect::color_space_channels(cs);
    py::array_t<float> out({h, w, c});
    const uint8_t* in = rgb.data();
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::convert_color(in, h * w, cs, o);
    return out;
  }, py::arg("image"), py::arg("space"),
     "RGB uint8 (H, W, 3) -> (H, W, C) float32 on [0, 1]; space 0 HSV, 1 Lab, 2 rgI, 3 H, 4 I.");

  m.def("ss_region_features", [image_dims, labels_of](const CArray<float>& image, const CArray<int32_t>& labels) {
    int64_t h, w, c;
    image_dims(image, "image", &h, &w, &c);
    const int32_t n = labels_of(labels, h, w);
    pydetect::RegionSet r;
    {
      py::gil_scoped_release release;
      const pydetect::PixelBins bins = pydetect::compute_pixel_bins(image.data(), h, w, int(c));
      r = pydetect::build_regions(bins, labels.data(), n, h, w);
    }
    py::array_t<float> color({int64_t(n), int64_t(pydetect::kColorBins * c)});
    py::array_t<float> texture({int64_t(n), int64_t(pydetect::kTextureBins * pydetect::kOrientations * c)});
    py::array_t<int32_t> boxes({int64_t(n), int64_t(4)});
    std::copy(r.color.begin(), r.color.end(), color.mutable_data());
    std::copy(r.texture.begin(), r.texture.end(), texture.mutable_data());
    std::copy(r.box.begin(), r.box.end(), boxes.mutable_data());
    py::list neighbours;
    for (const auto& nb : r.neighbours) {
      std::vector<int32_t> sorted(nb);
      std::sort(sorted.begin(), sorted.end());
      neighbours.append(to_array(sorted));
    }
    return py::make_tuple(to_array(r.size), boxes, color, texture, neighbours);
  }, py::arg("image"), py::arg("labels"),
     "Selective-search region features of a converted (H, W, C) image and its (H, W) labels -> "
     "(sizes, inclusive boxes, colour histograms, texture histograms, neighbour lists).");

  m.def("ss_hierarchy", [image_dims, labels_of](const CArray<float>& image, const CArray<int32_t>& labels, int terms) {
    int64_t h, w, c;
    image_dims(image, "image", &h, &w, &c);
    const int32_t n = labels_of(labels, h, w);
    if (terms <= 0 || terms > 15) throw py::value_error("terms must be a non-empty mask of 1|2|4|8");
    pydetect::Hierarchy hier;
    {
      py::gil_scoped_release release;
      const pydetect::PixelBins bins = pydetect::compute_pixel_bins(image.data(), h, w, int(c));
      hier = pydetect::group_regions(pydetect::build_regions(bins, labels.data(), n, h, w), terms);
    }
    const int64_t steps = int64_t(hier.similarity.size()), count = int64_t(hier.boxes.size() / 4);
    py::array_t<int32_t> merges({steps, int64_t(2)});
    py::array_t<int32_t> boxes({count, int64_t(4)});
    std::copy(hier.merges.begin(), hier.merges.end(), merges.mutable_data());
    std::copy(hier.boxes.begin(), hier.boxes.end(), boxes.mutable_data());
    return py::make_tuple(merges, to_array(hier.similarity), boxes);
  }, py::arg("image"), py::arg("labels"), py::arg("terms"),
     "Hierarchical grouping -> (merges (S, 2), similarities (S,), inclusive boxes of all regions).");

  m.def("selective_search", [](const CArray<uint8_t>& rgb, const std::vector<int>& spaces, const std::vector<double>& ks,
                               const std::vector<int>& strategies, int64_t min_size, double sigma, uint64_t seed,
                               int64_t max_size, int64_t max_boxes) {
    if (rgb.ndim() != 3 || rgb.shape(2) != 3) throw py::value_error("image must have shape (H, W, 3), got " + shape_of(rgb));
    std::vector<pydetect::ColorSpace> cs;
    for (int s : spaces) {
      if (s < 0 || s > 4) throw py::value_error("unknown colour space code");
      cs.push_back(pydetect::ColorSpace(s));
    }
    for (int t : strategies)
      if (t <= 0 || t > 15) throw py::value_error("strategy must be a non-empty mask of 1|2|4|8");
    const uint8_t* in = rgb.data();
    const int64_t h = rgb.shape(0), w = rgb.shape(1);
    std::vector<float> boxes;
    {
      py::gil_scoped_release release;
      boxes = pydetect::selective_search(in, h, w, cs, ks, strategies, min_size, sigma, seed, max_size, max_boxes);
    }
    py::array_t<float> out({int64_t(boxes.size() / 4), int64_t(4)});
    std::copy(boxes.begin(), boxes.end(), out.mutable_data());
    return out;
  }, py::arg("image"), py::arg("spaces"), py::arg("ks"), py::arg("strategies"), py::arg("min_size"),
     py::arg("sigma"), py::arg("seed"), py::arg("max_size"), py::arg("max_boxes"),
     "Selective search on an RGB uint8 (H, W, 3) image -> (N, 4) float32 xyxy boxes, best-ranked first.");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pydetect's private C++ kernels. Use the validated wrappers in pydetect.ops.";

  m.def("get_num_threads", &pydetect::get_num_threads,
        "Number of threads the kernels use.");
  m.def("set_num_threads", &pydetect::set_num_threads, py::arg("n"),
        "Sets the number of threads the kernels use (n <= 0: all hardware threads).");

  // float32 first, then float64: an exact-dtype contiguous array (what the Python
  // wrappers pass) matches its overload in pybind11's first, no-conversion pass.
  bind_boxes<float>(m);
  bind_boxes<double>(m);
  bind_roi<float>(m);
  bind_roi<double>(m);
  bind_segmentation(m);
}
