// The only file that includes pybind11. Each binding checks shapes (stating what it got),
// allocates outputs while holding the GIL, then releases the GIL around the kernel call.
// Input validation with user-facing messages lives in pydetect/_validation.py; the checks
// here are the last line of defence for callers of the private module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <type_traits>
#include <string>
#include <vector>

#include "boxes/box_ops.h"
#include "boxes/nms.h"
#include "common/parallel.h"
#include "common/simd.h"
#include "roi/roi_math.h"
#include "roi/roi_ops.h"
#include "haar/haar_features.h"
#include "boosting/boosting.h"
#include "integral/integral.h"
#include "cascade/cascade.h"
#include "cascade/resize.h"
#include "segmentation/felzenszwalb.h"
#include "segmentation/filters.h"
#include "selective_search/selective_search.h"
#include "ism/ism.h"

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

// Dtype of an integral image's sum and tilted tables.
enum class IntegralSum : int { Int32 = 0, Int64 = 1, Float64 = 2 };

// ----------------------------------------------------------------------------- enums
// Every choice among named alternatives crosses the boundary as one of these enums, never
// as an integer code or a string: a wrong value fails in pybind11's argument matching
// (TypeError) instead of meaning something else. The Python wrappers (pydetect/ops) map
// the public strings to them.
void bind_enums(py::module_& m) {
  py::enum_<pydetect::BoxFormat>(m, "BoxFormat")
      .value("XYXY", pydetect::BoxFormat::XYXY)
      .value("XYWH", pydetect::BoxFormat::XYWH)
      .value("CXCYWH", pydetect::BoxFormat::CXCYWH);
  py::enum_<pydetect::NmsAlgorithm>(m, "NmsAlgorithm",
                                    "Greedy NMS implementations (same result): AUTO picks by size.")
      .value("AUTO", pydetect::NmsAlgorithm::Auto)
      .value("COMPACTION", pydetect::NmsAlgorithm::Compaction)
      .value("GRID", pydetect::NmsAlgorithm::Grid);
  py::enum_<pydetect::SoftNmsMethod>(m, "SoftNmsMethod")
      .value("LINEAR", pydetect::SoftNmsMethod::Linear)
      .value("GAUSSIAN", pydetect::SoftNmsMethod::Gaussian);
  py::enum_<pydetect::haar::OpenCVMode>(m, "HaarMode", "opencv_traincascade's Haar feature sets.")
      .value("BASIC", pydetect::haar::OpenCVMode::Basic)
      .value("CORE", pydetect::haar::OpenCVMode::Core)
      .value("ALL", pydetect::haar::OpenCVMode::All);
  py::enum_<pydetect::haar::SkimageType>(m, "HaarSkimageType",
                                         "scikit-image's Haar-like feature types, in its order.")
      .value("TYPE_2_X", pydetect::haar::SkimageType::Type2X)
      .value("TYPE_2_Y", pydetect::haar::SkimageType::Type2Y)
      .value("TYPE_3_X", pydetect::haar::SkimageType::Type3X)
      .value("TYPE_3_Y", pydetect::haar::SkimageType::Type3Y)
      .value("TYPE_4", pydetect::haar::SkimageType::Type4);
  py::enum_<pydetect::boosting::Algorithm>(m, "BoostAlgorithm")
      .value("DISCRETE", pydetect::boosting::Algorithm::Discrete)
      .value("REAL", pydetect::boosting::Algorithm::Real)
      .value("GENTLE", pydetect::boosting::Algorithm::Gentle);
  py::enum_<IntegralSum>(m, "IntegralSum", "Dtype of an integral image's sum and tilted tables.")
      .value("INT32", IntegralSum::Int32)
      .value("INT64", IntegralSum::Int64)
      .value("FLOAT64", IntegralSum::Float64);
  py::enum_<pydetect::cascade::FeatureType>(m, "CascadeFeatureType")
      .value("HAAR", pydetect::cascade::kHaar)
      .value("LBP", pydetect::cascade::kLbp);
  py::enum_<pydetect::ColorSpace>(m, "ColorSpace", "Selective search's colour spaces.")
      .value("HSV", pydetect::ColorSpace::HSV)
      .value("LAB", pydetect::ColorSpace::Lab)
      .value("RGI", pydetect::ColorSpace::rgI)
      .value("H", pydetect::ColorSpace::H)
      .value("I", pydetect::ColorSpace::I);
  py::enum_<pydetect::SimilarityTerm>(m, "SimilarityTerm",
                                      "Selective search's similarity terms; a strategy is a list of them.")
      .value("COLOUR", pydetect::kColour)
      .value("TEXTURE", pydetect::kTexture)
      .value("SIZE", pydetect::kSize)
      .value("FILL", pydetect::kFill);
  py::enum_<pydetect::ism::MeanShiftKernel>(m, "MeanShiftKernel")
      .value("FLAT", pydetect::ism::MeanShiftKernel::Flat)
      .value("EPANECHNIKOV", pydetect::ism::MeanShiftKernel::Epanechnikov);
  py::enum_<pydetect::SimdLevel>(m, "SimdLevel", "Widest SIMD code path the kernels run (see simd_level).")
      .value("SCALAR", pydetect::SimdLevel::kScalar)
      .value("SSE2", pydetect::SimdLevel::kSse2)
      .value("AVX2", pydetect::SimdLevel::kAvx2);
}

// The bit mask of similarity terms the kernels take.
int terms_mask(const std::vector<pydetect::SimilarityTerm>& terms) {
  int mask = 0;
  for (const auto t : terms) {
    if (t != pydetect::kColour && t != pydetect::kTexture && t != pydetect::kSize && t != pydetect::kFill)
      throw py::value_error("unknown similarity term " + std::to_string(static_cast<int>(t)));
    mask |= static_cast<int>(t);
  }
  if (mask == 0) throw py::value_error("a similarity strategy must name at least one term");
  return mask;
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

  m.def("box_convert", [](const CArray<T>& boxes, pydetect::BoxFormat from, pydetect::BoxFormat to) {
    const int64_t n = num_boxes(boxes, "boxes");
    for (const auto f : {from, to})
      if (static_cast<int>(f) < 0 || static_cast<int>(f) > 2) throw py::value_error("unknown box format");
    py::array_t<T> out({n, int64_t(4)});
    const T* in = boxes.data();
    T* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::box_convert(in, n, from, to, o);
    return out;
  }, py::arg("boxes"), py::arg("in_fmt"), py::arg("out_fmt"),
     "Converts (N, 4) boxes between two BoxFormats.");

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

  auto nms = [](const CArray<T>& boxes, const CArray<T>& scores, double iou_threshold,
                pydetect::NmsAlgorithm algorithm) {
    const int64_t n = num_boxes(boxes, "boxes");
    check_length(scores, n, "scores");
    if (static_cast<int>(algorithm) < 0 || static_cast<int>(algorithm) > 2)
      throw py::value_error("algorithm must be NmsAlgorithm.AUTO, COMPACTION or GRID (0, 1 or 2)");
    const T *pb = boxes.data(), *ps = scores.data();
    std::vector<int64_t> keep;
    {
      py::gil_scoped_release release;
      keep = pydetect::nms(pb, ps, n, iou_threshold, algorithm);
    }
    return to_array(keep);
  };
  m.def("nms", nms, py::arg("boxes"), py::arg("scores"), py::arg("iou_threshold"),
        py::arg("algorithm") = pydetect::NmsAlgorithm::Auto,
        "Greedy NMS; kept indices by decreasing score (torchvision's result). Every NmsAlgorithm "
        "gives the same result (COMPACTION and GRID are for tests and benchmarks).");

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
                       double sigma, double score_threshold, pydetect::SoftNmsMethod method) {
    const int64_t n = num_boxes(boxes, "boxes");
    check_length(scores, n, "scores");
    if (method != pydetect::SoftNmsMethod::Linear && method != pydetect::SoftNmsMethod::Gaussian)
      throw py::value_error("method must be SoftNmsMethod.LINEAR or GAUSSIAN");
    if (!(sigma > 0)) throw py::value_error("sigma must be > 0");
    const T *pb = boxes.data(), *ps = scores.data();
    std::vector<int64_t> keep;
    std::vector<T> kept_scores;
    {
      py::gil_scoped_release release;
      pydetect::soft_nms(pb, ps, n, iou_threshold, sigma, score_threshold, method, &keep,
                         &kept_scores);
    }
    return py::make_tuple(to_array(keep), to_array(kept_scores));
  }, py::arg("boxes"), py::arg("scores"), py::arg("iou_threshold"), py::arg("sigma"),
     py::arg("score_threshold"), py::arg("method"),
     "Soft-NMS (a SoftNmsMethod) -> (kept indices, scores at selection).");
}

// ----------------------------------------------------------------------------- roi
// RoI align / RoI max pool forward and backward. Python's torch.autograd.Function in
// pydetect/ops/roi.py calls these on zero-copy numpy views of CPU tensors.
void check_output_size(int64_t pooled_h, int64_t pooled_w) {
  // Below 2^31 each: keeps PH * PW (and the offsets built from it) far from int64 overflow.
  if (pooled_h <= 0 || pooled_w <= 0 || pooled_h > INT32_MAX || pooled_w > INT32_MAX) {
    throw py::value_error("output_size must be in [1, 2^31) along each axis, got (" + std::to_string(pooled_h) +
                          ", " + std::to_string(pooled_w) + ")");
  }
}

void check_roi_args(const py::array& input, const py::array& rois, int64_t pooled_h,
                    int64_t pooled_w) {
  if (input.ndim() != 4) throw py::value_error("input must have shape (N, C, H, W), got " + shape_of(input));
  if (rois.ndim() != 2 || rois.shape(1) != 5) throw py::value_error("rois must have shape (K, 5), got " + shape_of(rois));
  check_output_size(pooled_h, pooled_w);
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
    check_output_size(pooled_h, pooled_w);
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

// ----------------------------------------------------------------------------- haar
// Features cross the boundary as arrays: rects (F, 3, 4) int32 x y w h, weights (F, 3)
// float32 (0 = unused slot), tilted (F,) uint8, types (F,) int32.
py::dict haar_features_to_arrays(const std::vector<pydetect::haar::Feature>& feats) {
  const auto f = static_cast<py::ssize_t>(feats.size());
  py::array_t<int32_t> rects({f, py::ssize_t(3), py::ssize_t(4)});
  py::array_t<float> weights({f, py::ssize_t(3)});
  py::array_t<uint8_t> tilted(f);
  py::array_t<int32_t> types(f);
  int32_t* r = rects.mutable_data();
  float* w = weights.mutable_data();
  for (py::ssize_t i = 0; i < f; ++i) {
    for (int k = 0; k < 3; ++k) {
      const auto& q = feats[i].rect[k];
      r[(i * 3 + k) * 4 + 0] = q.x;
      r[(i * 3 + k) * 4 + 1] = q.y;
      r[(i * 3 + k) * 4 + 2] = q.w;
      r[(i * 3 + k) * 4 + 3] = q.h;
      w[i * 3 + k] = q.weight;
    }
    tilted.mutable_data()[i] = feats[i].tilted;
    types.mutable_data()[i] = feats[i].type;
  }
  py::dict out;
  out["rects"] = rects;
  out["weights"] = weights;
  out["tilted"] = tilted;
  out["types"] = types;
  return out;
}

std::vector<pydetect::haar::Feature> haar_features_from_arrays(const CArray<int32_t>& rects,
                                                               const CArray<float>& weights,
                                                               const CArray<uint8_t>& tilted) {
  if (rects.ndim() != 3 || rects.shape(1) != 3 || rects.shape(2) != 4)
    throw py::value_error("rects must have shape (F, 3, 4), got " + shape_of(rects));
  const int64_t f = rects.shape(0);
  if (weights.ndim() != 2 || weights.shape(0) != f || weights.shape(1) != 3)
    throw py::value_error("weights must have shape (" + std::to_string(f) + ", 3), got " + shape_of(weights));
  check_length(tilted, f, "tilted");
  std::vector<pydetect::haar::Feature> feats(static_cast<size_t>(f));
  const int32_t* r = rects.data();
  const float* w = weights.data();
  for (int64_t i = 0; i < f; ++i) {
    for (int k = 0; k < 3; ++k) {
      auto& q = feats[i].rect[k];
      q.x = r[(i * 3 + k) * 4 + 0];
      q.y = r[(i * 3 + k) * 4 + 1];
      q.w = r[(i * 3 + k) * 4 + 2];
      q.h = r[(i * 3 + k) * 4 + 3];
      q.weight = w[i * 3 + k];
    }
    feats[i].tilted = tilted.data()[i] != 0;
    feats[i].type = -1;
  }
  return feats;
}

void bind_haar(py::module_& m) {
  m.def("haar_enumerate_opencv", [](int width, int height, pydetect::haar::OpenCVMode mode) {
    if (static_cast<int>(mode) < 0 || static_cast<int>(mode) > 2)
      throw py::value_error("mode must be HaarMode.BASIC, CORE or ALL");
    std::vector<pydetect::haar::Feature> feats;
    {
      py::gil_scoped_release release;
      feats = pydetect::haar::enumerate_opencv(width, height, mode);
    }
    return haar_features_to_arrays(feats);
  }, py::arg("width"), py::arg("height"), py::arg("mode"),
     "opencv_traincascade's Haar features of a HaarMode set -> dict of arrays "
     "rects (F, 3, 4) int32, weights (F, 3) float32, tilted (F,) uint8, types (F,) int32.");

  m.def("haar_enumerate_skimage", [](int width, int height, pydetect::haar::SkimageType type) {
    const int bit = static_cast<int>(type);
    if (bit < 0 || bit > 4) throw py::value_error("type must be a HaarSkimageType");
    std::vector<pydetect::haar::Feature> feats;
    {
      py::gil_scoped_release release;
      feats = pydetect::haar::enumerate_skimage(width, height, 1u << bit);
    }
    return haar_features_to_arrays(feats);
  }, py::arg("width"), py::arg("height"), py::arg("type"),
     "scikit-image's Haar-like features of one HaarSkimageType in haar_like_feature_coord's "
     "order -> dict of arrays as haar_enumerate_opencv.");

  m.def("haar_check_features", [](const CArray<int32_t>& rects, const CArray<float>& weights,
                                  const CArray<uint8_t>& tilted, int width, int height) {
    const auto feats = haar_features_from_arrays(rects, weights, tilted);
    pydetect::haar::check_features(feats.data(), static_cast<int64_t>(feats.size()), width, height);
  }, py::arg("rects"), py::arg("weights"), py::arg("tilted"), py::arg("width"), py::arg("height"),
     "Raises ValueError unless every weighted rectangle lies inside the width x height window "
     "and every weight is finite (the check haar_compute makes).");

  m.def("haar_compute", [](const CArray<uint8_t>& windows, const CArray<int32_t>& rects,
                           const CArray<float>& weights, const CArray<uint8_t>& tilted,
                           bool normalize) {
    if (windows.ndim() != 3)
      throw py::value_error("windows must have shape (N, h, w), got " + shape_of(windows));
    const auto feats = haar_features_from_arrays(rects, weights, tilted);
    const int64_t n = windows.shape(0), f = static_cast<int64_t>(feats.size());
    const int h = static_cast<int>(windows.shape(1)), w = static_cast<int>(windows.shape(2));
    py::array_t<float> out({n, f});
    const uint8_t* in = windows.data();
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::haar::compute_features(in, n, h, w, feats.data(), f, normalize, o);
    return out;
  }, py::arg("windows"), py::arg("rects"), py::arg("weights"), py::arg("tilted"),
     py::arg("normalize"),
     "Feature values (N, F) float32 of uint8 windows (N, h, w); normalize multiplies by the "
     "detector's variance-normalisation factor (cascade::haar_vnf).");
}

// ----------------------------------------------------------------------------- boosting
py::tuple tree_to_tuple(const pydetect::boosting::Tree& t) {
  return py::make_tuple(to_array(t.left), to_array(t.right), to_array(t.feature),
                        to_array(t.threshold), to_array(t.leaves));
}

// (left, right, feature, threshold, leaves) arrays -> a Tree (lengths are checked by the kernel).
pydetect::boosting::Tree tree_from_tuple(const py::handle& obj) {
  const auto parts = obj.cast<py::tuple>();
  if (parts.size() != 5) throw py::value_error("a tree is (left, right, feature, threshold, leaves)");
  auto vec = [](const py::handle& a, auto zero) {
    using T = decltype(zero);
    const auto arr = a.cast<CArray<T>>();
    return std::vector<T>(arr.data(), arr.data() + arr.size());
  };
  return {vec(parts[0], int32_t()), vec(parts[1], int32_t()), vec(parts[2], int32_t()), vec(parts[3], float()),
          vec(parts[4], double())};
}

void bind_boosting(py::module_& m) {
  m.def("boosted_decision", [](const CArray<float>& x, const py::list& tree_list) {
    if (x.ndim() != 2) throw py::value_error("X must have shape (N, F), got " + shape_of(x));
    std::vector<pydetect::boosting::Tree> trees;
    for (const auto& t : tree_list) trees.push_back(tree_from_tuple(t));
    const int64_t n = x.shape(0), f = x.shape(1);
    py::array_t<double> out(n);
    double* po = out.mutable_data();
    const float* px = x.data();
    {
      py::gil_scoped_release release;
      pydetect::boosting::decision_function(trees, px, n, f, po);
    }
    return out;
  }, py::arg("X"), py::arg("trees"),
     "Sum of the trees (each (left, right, feature, threshold, leaves)) on each row of X (N, F) -> (N,) float64.");

  using pydetect::boosting::Booster;
  py::class_<Booster>(m, "Booster",
                      "AdaBoost state over presorted features (see csrc/boosting/boosting.h).")
      .def(py::init([](const CArray<float>& x, const CArray<int8_t>& y, py::object w,
                       pydetect::boosting::Algorithm algorithm, int max_depth, double weight_trim_rate) {
             if (x.ndim() != 2) throw py::value_error("X must have shape (N, F), got " + shape_of(x));
             const int64_t n = x.shape(0), f = x.shape(1);
             check_length(y, n, "y");
             if (static_cast<int>(algorithm) < 0 || static_cast<int>(algorithm) > 2)
               throw py::value_error("algorithm must be BoostAlgorithm.DISCRETE, REAL or GENTLE");
             CArray<double> wa;
             const double* pw = nullptr;
             if (!w.is_none()) {
               wa = w.cast<CArray<double>>();
               check_length(wa, n, "sample_weight");
               pw = wa.data();
             }
             pydetect::boosting::Params p;
             p.algorithm = algorithm;
             p.max_depth = max_depth;
             p.weight_trim_rate = weight_trim_rate;
             const float* px = x.data();
             const int8_t* py_ = y.data();
             py::gil_scoped_release release;
             return new Booster(px, n, f, py_, pw, p);
           }),
           py::arg("X"), py::arg("y"), py::arg("sample_weight"), py::arg("algorithm"),
           py::arg("max_depth"), py::arg("weight_trim_rate"))
      .def("add_tree", [](Booster& b) {
             pydetect::boosting::Tree t;
             {
               py::gil_scoped_release release;
               t = b.add_tree();
             }
             return tree_to_tuple(t);
           },
           "Runs one round -> (left, right, feature, threshold, leaves) in OpenCV's tree layout.")
      .def_property_readonly("scores", [](const Booster& b) { return to_array(b.scores()); })
      .def_property_readonly("weights", [](const Booster& b) { return to_array(b.weights()); })
      .def_property_readonly("num_samples", &Booster::num_samples)
      .def_property_readonly("num_features", &Booster::num_features);
}

// ----------------------------------------------------------------------------- integral
// A caller's table to write into: a writeable, C-contiguous (h + 1, w + 1) array of exactly T
// (never a converted copy, which would leave the caller's array unwritten); else ValueError.
template <class T>
py::array_t<T> out_table(const py::object& obj, int64_t h, int64_t w, const char* name) {
  if (!py::isinstance<py::array_t<T>>(obj)) {
    throw py::value_error(std::string(name) + " must be a numpy array of dtype " +
                          py::str(py::dtype::of<T>()).cast<std::string>());
  }
  auto a = py::reinterpret_borrow<py::array_t<T>>(obj);
  if (a.ndim() != 2 || a.shape(0) != h + 1 || a.shape(1) != w + 1 || !(a.flags() & py::array::c_style) ||
      !a.writeable()) {
    throw py::value_error(std::string(name) + " must be a writeable C-contiguous (" + std::to_string(h + 1) + ", " +
                          std::to_string(w + 1) + ") array, got " + shape_of(a));
  }
  return a;
}

// integral_image(img (H, W), squared, tilted, sum_type, out_sum=None, out_squared=None,
// out_tilted=None) -> (sum, sqsum or None, tilted or None), each (H + 1, W + 1). sum_type
// (IntegralSum INT32, INT64 or FLOAT64; float input: FLOAT64 only) is the dtype of sum and
// tilted. sqsum is float64. A table given as out_* is written in place and returned (the
// caller checks it does not overlap the image); the others are new arrays.
template <class In>
void bind_integral_for(py::module_& m) {
  m.def("integral_image", [](const CArray<In>& img, bool squared, bool tilted, IntegralSum sum_type,
                             const py::object& out_sum, const py::object& out_sq, const py::object& out_tilted) {
    if (img.ndim() != 2) {
      throw py::value_error("image must have shape (H, W), got " + shape_of(img));
    }
    const bool integer_sum = sum_type == IntegralSum::Int32 || sum_type == IntegralSum::Int64;
    if (!(sum_type == IntegralSum::Float64 || (integer_sum && std::is_same<In, uint8_t>::value))) {
      throw py::value_error("sum_type must be IntegralSum.INT32, INT64 (uint8 images) or FLOAT64");
    }
    const int64_t h = img.shape(0), w = img.shape(1);
    const In* src = img.data();
    py::array_t<double> sq;
    if (squared) {
      sq = out_sq.is_none() ? py::array_t<double>({h + 1, w + 1}) : out_table<double>(out_sq, h, w, "out_squared");
    }
    double* psq = squared ? sq.mutable_data() : nullptr;
    auto run = [&](auto tag) -> py::tuple {
      using S = decltype(tag);
      py::array_t<S> sum = out_sum.is_none() ? py::array_t<S>({h + 1, w + 1}) : out_table<S>(out_sum, h, w, "out_sum");
      py::array_t<S> tl;
      if (tilted) {
        tl = out_tilted.is_none() ? py::array_t<S>({h + 1, w + 1}) : out_table<S>(out_tilted, h, w, "out_tilted");
      }
      S* ps = sum.mutable_data();
      S* pt = tilted ? tl.mutable_data() : nullptr;
      {
        py::gil_scoped_release release;
        // A caller's table has been written before: large int64 ones are streamed (integral.h).
        pydetect::integral_image<In, S, double>(src, h, w, w, ps, psq, pt, w + 1, !out_sum.is_none());
      }
      return py::make_tuple(sum, squared ? py::object(sq) : py::object(py::none()),
                            tilted ? py::object(tl) : py::object(py::none()));
    };
    if constexpr (std::is_same<In, uint8_t>::value) {
      if (sum_type == IntegralSum::Int32) return run(int32_t{});
      if (sum_type == IntegralSum::Int64) return run(int64_t{});
    }
    return run(double{});
  }, py::arg("image"), py::arg("squared"), py::arg("tilted"), py::arg("sum_type"), py::arg("out_sum") = py::none(),
     py::arg("out_squared") = py::none(), py::arg("out_tilted") = py::none(),
     "OpenCV-layout integral images (sum, squared sum or None, tilted sum or None), optionally into given arrays.");
}

void bind_integral(py::module_& m) {
  bind_integral_for<uint8_t>(m);
  bind_integral_for<float>(m);
  bind_integral_for<double>(m);
}

// ----------------------------------------------------------------------------- cascade
// CascadeModel: an opaque, validated copy of a cascade's flat arrays (pydetect.cascade
// builds it once per detector). cascade_detect runs the scan on pyramid levels that
// Python resized, then groups like cv2.CascadeClassifier.detectMultiScale.
template <class T>
std::vector<T> to_vector(const CArray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

void bind_cascade(py::module_& m) {
  using pydetect::cascade::Model;
  py::class_<Model>(m, "CascadeModel")
      .def(py::init([](pydetect::cascade::FeatureType feature_type, int window_width, int window_height,
                       const CArray<float>& stage_threshold, const CArray<int32_t>& stage_num_weak,
                       const CArray<int32_t>& weak_num_nodes, const CArray<int32_t>& node_left,
                       const CArray<int32_t>& node_right, const CArray<int32_t>& node_feature,
                       const CArray<float>& node_threshold, const CArray<int32_t>& node_subset,
                       const CArray<float>& leaves, const CArray<int32_t>& rects,
                       const CArray<float>& weights, const CArray<uint8_t>& tilted) {
             Model model;
             model.feature_type = feature_type;
             model.window_width = window_width;
             model.window_height = window_height;
             model.stage_threshold = to_vector(stage_threshold);
             model.stage_num_weak = to_vector(stage_num_weak);
             model.weak_num_nodes = to_vector(weak_num_nodes);
             model.node_left = to_vector(node_left);
             model.node_right = to_vector(node_right);
             model.node_feature = to_vector(node_feature);
             model.node_threshold = to_vector(node_threshold);
             model.node_subset = to_vector(node_subset);
             model.leaves = to_vector(leaves);
             model.rects = to_vector(rects);
             model.weights = to_vector(weights);
             model.tilted = to_vector(tilted);
             model.validate();
             return model;
           }),
           py::arg("feature_type"), py::arg("window_width"), py::arg("window_height"),
           py::arg("stage_threshold"), py::arg("stage_num_weak"), py::arg("weak_num_nodes"),
           py::arg("node_left"), py::arg("node_right"), py::arg("node_feature"),
           py::arg("node_threshold"), py::arg("node_subset"), py::arg("leaves"),
           py::arg("rects"), py::arg("weights"), py::arg("tilted"),
           "A validated cascade (a CascadeFeatureType); see pydetect.cascade.Cascade.");

  // Pyramid levels as the scan takes them (the arrays outlive the call).
  auto to_levels = [](const std::vector<CArray<uint8_t>>& images, const std::vector<float>& scales) {
    if (images.size() != scales.size()) {
      throw py::value_error("got " + std::to_string(images.size()) + " pyramid levels but " +
                            std::to_string(scales.size()) + " scales");
    }
    std::vector<pydetect::cascade::Level> levels;
    for (size_t i = 0; i < images.size(); ++i) {
      if (images[i].ndim() != 2) {
        throw py::value_error("pyramid level must have shape (H, W), got " + shape_of(images[i]));
      }
      levels.push_back({images[i].data(), static_cast<int>(images[i].shape(1)),
                        static_cast<int>(images[i].shape(0)), images[i].shape(1), scales[i]});
    }
    return levels;
  };

  m.def("cascade_scan", [to_levels](const Model& model, const std::vector<CArray<uint8_t>>& images,
                                    const std::vector<float>& scales) {
    const auto levels = to_levels(images, scales);
    std::vector<pydetect::cascade::Candidate> found;
    int64_t positions = 0;
    {
      py::gil_scoped_release release;
      found = pydetect::cascade::detect_candidates(model, levels, &positions);
    }
    const int64_t n = static_cast<int64_t>(found.size());
    py::array_t<int32_t> where({n, int64_t(3)});
    py::array_t<double> w(n);
    auto r = where.mutable_unchecked<2>();
    for (int64_t i = 0; i < n; ++i) {
      r(i, 0) = found[i].source_level, r(i, 1) = found[i].source_x, r(i, 2) = found[i].source_y;
      w.mutable_data()[i] = found[i].weight;
    }
    return py::make_tuple(where, w, positions);
  }, py::arg("model"), py::arg("levels"), py::arg("scales"),
     "The raw windows that pass every stage, ungrouped: ((N, 3) int32 (level index, x, y in "
     "that level's pixels), last stage sums, number of window positions scanned).");

  m.def("cascade_flat_windows", [](const CArray<uint8_t>& windows) {
    if (windows.ndim() != 3 || windows.shape(1) < 3 || windows.shape(2) < 3) {
      throw py::value_error("windows must have shape (N, h, w) with h, w >= 3, got " + shape_of(windows));
    }
    const int64_t n = windows.shape(0);
    std::vector<uint8_t> flat;
    {
      py::gil_scoped_release release;
      flat = pydetect::cascade::flat_windows(windows.data(), n, static_cast<int>(windows.shape(2)),
                                             static_cast<int>(windows.shape(1)), windows.shape(2),
                                             windows.shape(1) * windows.shape(2));
    }
    py::array_t<bool> out(n);
    for (int64_t i = 0; i < n; ++i) out.mutable_data()[i] = flat[i] != 0;
    return out;
  }, py::arg("windows"),
     "Whether each window (N, h, w) uint8 is flat by the Haar detector's rule (pixel deviation <= 10).");

  m.def("cascade_accepts", [](const Model& model, const CArray<uint8_t>& windows) {
    if (windows.ndim() != 3 || windows.shape(1) != model.window_height ||
        windows.shape(2) != model.window_width) {
      throw py::value_error("windows must have shape (N, " + std::to_string(model.window_height) +
                            ", " + std::to_string(model.window_width) + ") (the cascade's window), got " +
                            shape_of(windows));
    }
    const int64_t n = windows.shape(0);
    std::vector<uint8_t> ok;
    {
      py::gil_scoped_release release;
      ok = pydetect::cascade::accepts_windows(model, windows.data(), n, windows.shape(2),
                                              windows.shape(1) * windows.shape(2));
    }
    py::array_t<bool> out(n);
    for (int64_t i = 0; i < n; ++i) out.mutable_data()[i] = ok[i] != 0;
    return out;
  }, py::arg("model"), py::arg("windows"),
     "Whether each window (N, h, w) uint8 passes every stage, evaluated by the scan itself.");

  // The image and each level's size: levels of another size than the image are resized
  // (OpenCV's INTER_LINEAR_EXACT) inside the scan's parallel pass.
  auto image_levels = [](const CArray<uint8_t>& image, const std::vector<std::pair<int, int>>& sizes,
                         const std::vector<float>& scales) {
    if (image.ndim() != 2) throw py::value_error("image must have shape (H, W), got " + shape_of(image));
    if (sizes.size() != scales.size()) {
      throw py::value_error("got " + std::to_string(sizes.size()) + " level sizes but " +
                            std::to_string(scales.size()) + " scales");
    }
    const int w = static_cast<int>(image.shape(1)), h = static_cast<int>(image.shape(0));
    std::vector<pydetect::cascade::Level> levels;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const auto [lw, lh] = sizes[i];
      if (lw < 1 || lh < 1 || lw > w || lh > h) {
        throw py::value_error("level size (" + std::to_string(lw) + ", " + std::to_string(lh) +
                              ") must be within [1, image size (" + std::to_string(w) + ", " +
                              std::to_string(h) + ")]");
      }
      pydetect::cascade::Level L{image.data(), lw, lh, image.shape(1), scales[i]};
      if (lw != w || lh != h) L.source_width = w, L.source_height = h;
      levels.push_back(L);
    }
    return levels;
  };

  m.def("resize_linear_exact", [](const CArray<uint8_t>& image, int width, int height) {
    if (image.ndim() != 2) throw py::value_error("image must have shape (H, W), got " + shape_of(image));
    if (image.shape(0) < 1 || image.shape(1) < 1 || width < 1 || height < 1) {
      throw py::value_error("resize_linear_exact needs a non-empty image and a size >= 1");
    }
    py::array_t<uint8_t> out({int64_t(height), int64_t(width)});
    uint8_t* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      std::vector<uint16_t> row(static_cast<size_t>(image.shape(1)) + 1);
      pydetect::cascade::resize_linear_exact(image.data(), static_cast<int>(image.shape(1)),
                                             static_cast<int>(image.shape(0)), image.shape(1), dst, width, height,
                                             width, row.data());
    }
    return out;
  }, py::arg("image"), py::arg("width"), py::arg("height"),
     "uint8 (H, W) image resized to (height, width) exactly as cv2.resize with INTER_LINEAR_EXACT.");

  m.def("cascade_detect", [image_levels](const Model& model, const CArray<uint8_t>& image,
                                         const std::vector<std::pair<int, int>>& sizes,
                                         const std::vector<float>& scales, int width, int height,
                                         int min_neighbors, double eps) {
    const auto levels = image_levels(image, sizes, scales);
    std::vector<pydetect::cascade::Candidate> found;
    std::vector<int> neighbours;
    {
      py::gil_scoped_release release;
      found = pydetect::cascade::detect_candidates(model, levels);
      pydetect::cascade::group_rectangles(&found, &neighbours, min_neighbors, eps);
      pydetect::cascade::clip_candidates(&found, &neighbours, width, height);
    }
    const int64_t n = static_cast<int64_t>(found.size());
    py::array_t<int32_t> rects({n, int64_t(4)});
    py::array_t<int32_t> counts(n), rej(n);
    py::array_t<double> w(n);
    auto r = rects.mutable_unchecked<2>();
    for (int64_t i = 0; i < n; ++i) {
      r(i, 0) = found[i].x, r(i, 1) = found[i].y, r(i, 2) = found[i].width,
      r(i, 3) = found[i].height;
      counts.mutable_data()[i] = neighbours[i];
      rej.mutable_data()[i] = found[i].level;
      w.mutable_data()[i] = found[i].weight;
    }
    return py::make_tuple(rects, counts, rej, w);
  }, py::arg("model"), py::arg("image"), py::arg("sizes"), py::arg("scales"), py::arg("width"), py::arg("height"),
     py::arg("min_neighbors"), py::arg("eps"),
     "Scans the pyramid levels of a uint8 (H, W) image (level k: the image resized to sizes[k] "
     "= (w, h), shrunk by 1/scales[k], as cv2.resize INTER_LINEAR_EXACT), groups and clips: "
     "(rects (N, 4) int32 xywh, neighbours, reject levels, last stage sums).");

  m.def("cascade_group", [](const CArray<int32_t>& rects, const CArray<int32_t>& levels,
                            const CArray<double>& weights, int min_neighbors, double eps) {
    const int64_t n = num_boxes(rects, "rects");
    check_length(levels, n, "levels");
    check_length(weights, n, "weights");
    std::vector<pydetect::cascade::Candidate> c(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int32_t* r = rects.data() + 4 * i;
      c[i] = {r[0], r[1], r[2], r[3], levels.data()[i], weights.data()[i]};
    }
    std::vector<int> neighbours;
    {
      py::gil_scoped_release release;
      pydetect::cascade::group_rectangles(&c, &neighbours, min_neighbors, eps);
    }
    const int64_t k = static_cast<int64_t>(c.size());
    py::array_t<int32_t> out({k, int64_t(4)});
    py::array_t<int32_t> counts(k), rej(k);
    py::array_t<double> w(k);
    for (int64_t i = 0; i < k; ++i) {
      int32_t* r = out.mutable_data() + 4 * i;
      r[0] = c[i].x, r[1] = c[i].y, r[2] = c[i].width, r[3] = c[i].height;
      counts.mutable_data()[i] = neighbours[i];
      rej.mutable_data()[i] = c[i].level;
      w.mutable_data()[i] = c[i].weight;
    }
    return py::make_tuple(out, counts, rej, w);
  }, py::arg("rects"), py::arg("levels"), py::arg("weights"), py::arg("min_neighbors"),
     py::arg("eps"), "cv::groupRectangles on (N, 4) int32 xywh rectangles.");
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
    // Labels index per-region tables: bounded by the pixel count, so that a stray huge
    // label cannot size them (and INT32_MAX + 1 cannot wrap).
    int64_t n = 0;
    for (py::ssize_t i = 0; i < labels.size(); ++i) {
      const int64_t l = labels.data()[i];
      if (l < 0 || l >= h * w) {
        throw py::value_error("labels must be in [0, H * W) = [0, " + std::to_string(h * w) + "), got " +
                              std::to_string(l));
      }
      n = std::max(n, l + 1);
    }
    return static_cast<int32_t>(n);
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

  m.def("ss_convert_color", [](const CArray<uint8_t>& rgb, pydetect::ColorSpace cs) {
    if (rgb.ndim() != 3 || rgb.shape(2) != 3) throw py::value_error("image must have shape (H, W, 3), got " + shape_of(rgb));
    if (static_cast<int>(cs) < 0 || static_cast<int>(cs) > 4) throw py::value_error("unknown colour space");
    const int64_t h = rgb.shape(0), w = rgb.shape(1), c = pydetect::color_space_channels(cs);
    py::array_t<float> out({h, w, c});
    const uint8_t* in = rgb.data();
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    pydetect::convert_color(in, h * w, cs, o);
    return out;
  }, py::arg("image"), py::arg("space"),
     "RGB uint8 (H, W, 3) -> (H, W, C) float32 on [0, 1] in a ColorSpace (C = 1 for H and I).");

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

  m.def("ss_hierarchy", [image_dims, labels_of](const CArray<float>& image, const CArray<int32_t>& labels,
                                                const std::vector<pydetect::SimilarityTerm>& strategy) {
    int64_t h, w, c;
    image_dims(image, "image", &h, &w, &c);
    const int32_t n = labels_of(labels, h, w);
    const int terms = terms_mask(strategy);
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
  }, py::arg("image"), py::arg("labels"), py::arg("strategy"),
     "Hierarchical grouping with the similarity of a list of SimilarityTerms -> (merges (S, 2), "
     "similarities (S,), inclusive boxes of all regions).");

  m.def("selective_search", [](const CArray<uint8_t>& rgb, const std::vector<pydetect::ColorSpace>& cs,
                               const std::vector<double>& ks,
                               const std::vector<std::vector<pydetect::SimilarityTerm>>& strategy_terms,
                               int64_t min_size, double sigma, uint64_t seed, int64_t max_size, int64_t max_boxes) {
    if (rgb.ndim() != 3 || rgb.shape(2) != 3) throw py::value_error("image must have shape (H, W, 3), got " + shape_of(rgb));
    for (const auto s : cs)
      if (static_cast<int>(s) < 0 || static_cast<int>(s) > 4) throw py::value_error("unknown colour space");
    std::vector<int> strategies;
    for (const auto& terms : strategy_terms) strategies.push_back(terms_mask(terms));
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
     "Selective search on an RGB uint8 (H, W, 3) image over ColorSpaces x ks x strategies (each a "
     "list of SimilarityTerms) -> (N, 4) float32 xyxy boxes, best-ranked first.");
}

// ----------------------------------------------------------------------------- ism
// Implicit Shape Model: Hough vote accumulation and balloon mean-shift (csrc/ism/).
template <class T>
void bind_ism(py::module_& m) {
  m.def("ism_accumulate_votes", [](const CArray<T>& features, const CArray<int64_t>& match_ptr,
                                   const CArray<int64_t>& match_entry, const CArray<T>& match_weight,
                                   const CArray<int64_t>& occ_ptr, const CArray<T>& occ,
                                   const CArray<T>& occ_weight) {
    if (features.ndim() != 2 || features.shape(1) != 3)
      throw py::value_error("features must have shape (F, 3), got " + shape_of(features));
    const int64_t nf = features.shape(0);
    check_length(match_ptr, nf + 1, "match_ptr");
    if (match_entry.ndim() != 1) throw py::value_error("match_entry must be 1-D, got " + shape_of(match_entry));
    const int64_t nm = match_entry.shape(0);
    check_length(match_weight, nm, "match_weight");
    if (occ.ndim() != 2 || occ.shape(1) != 3)
      throw py::value_error("occurrences must have shape (O, 3), got " + shape_of(occ));
    const int64_t no = occ.shape(0);
    check_length(occ_weight, no, "occ_weight");
    if (occ_ptr.ndim() != 1 || occ_ptr.shape(0) < 1)
      throw py::value_error("occ_ptr must have shape (E + 1,), got " + shape_of(occ_ptr));
    const int64_t ne = occ_ptr.shape(0) - 1;
    std::vector<T> votes, weights;
    std::vector<int64_t> vf, vo;
    {
      py::gil_scoped_release release;
      pydetect::ism::accumulate_votes(features.data(), nf, match_ptr.data(), match_entry.data(),
                                      match_weight.data(), nm, occ_ptr.data(), ne, occ.data(),
                                      occ_weight.data(), no, &votes, &weights, &vf, &vo);
    }
    py::array_t<T> v = to_array(votes);
    return py::make_tuple(v.reshape({static_cast<py::ssize_t>(weights.size()), py::ssize_t(3)}),
                          to_array(weights), to_array(vf), to_array(vo));
  }, py::arg("features"), py::arg("match_ptr"), py::arg("match_entry"), py::arg("match_weight"),
     py::arg("occ_ptr"), py::arg("occurrences"), py::arg("occ_weight"),
     "Probabilistic Hough votes (x, y, scale) of matched features -> (votes (V, 3), weights, "
     "feature index, occurrence index).");

  m.def("ism_mean_shift", [](const CArray<T>& votes, const CArray<T>& weights, const CArray<T>& seeds,
                             double bandwidth_xy, double bandwidth_scale, bool adaptive,
                             pydetect::ism::MeanShiftKernel kernel,
                             int max_iter, double tol, double merge, double min_score) {
    if (votes.ndim() != 2 || votes.shape(1) != 3)
      throw py::value_error("votes must have shape (V, 3), got " + shape_of(votes));
    if (seeds.ndim() != 2 || seeds.shape(1) != 3)
      throw py::value_error("seeds must have shape (S, 3), got " + shape_of(seeds));
    const int64_t nv = votes.shape(0), ns = seeds.shape(0);
    check_length(weights, nv, "weights");
    pydetect::ism::MeanShiftParams p;
    p.bandwidth_xy = bandwidth_xy;
    p.bandwidth_scale = bandwidth_scale;
    p.adaptive = adaptive;
    p.kernel = static_cast<int>(kernel);
    p.max_iter = max_iter;
    p.tol = tol;
    p.merge = merge;
    p.min_score = min_score;
    std::vector<T> modes, scores;
    std::vector<int64_t> counts;
    {
      py::gil_scoped_release release;
      pydetect::ism::mean_shift(votes.data(), weights.data(), nv, seeds.data(), ns, p, &modes, &scores,
                                &counts);
    }
    py::array_t<T> mo = to_array(modes);
    return py::make_tuple(mo.reshape({static_cast<py::ssize_t>(scores.size()), py::ssize_t(3)}),
                          to_array(scores), to_array(counts));
  }, py::arg("votes"), py::arg("weights"), py::arg("seeds"), py::arg("bandwidth_xy"),
     py::arg("bandwidth_scale"), py::arg("adaptive"), py::arg("kernel"), py::arg("max_iter"),
     py::arg("tol"), py::arg("merge"), py::arg("min_score"),
     "Balloon mean-shift over weighted (x, y, scale) votes -> (modes (K, 3), scores, seed counts).");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pydetect's private C++ kernels. Use the validated wrappers in pydetect.ops.";
  bind_enums(m);

  const pydetect::SimdConfig& simd = pydetect::simd_config();
  if (!simd.valid) {
    const std::string message = "PYDETECT_SIMD must be one of auto, avx2, sse2, scalar; got '" + simd.requested +
                                "', using auto (" + pydetect::simd_level_name(simd.level) + ")";
    if (PyErr_WarnEx(PyExc_RuntimeWarning, message.c_str(), 1) < 0) throw py::error_already_set();
  }
  m.def("simd_level", &pydetect::simd_level,
        "The widest SIMD code path the kernels run: the CPU's, or less as PYDETECT_SIMD (auto | avx2 | "
        "sse2 | scalar, read once per process) asks.");

  m.attr("ROI_MAX_SAMPLING_RATIO") = pydetect::kMaxSamplingRatio;
  m.attr("MAX_GAUSSIAN_SIGMA") = pydetect::kMaxGaussianSigma;
  m.def("get_num_threads", &pydetect::get_num_threads,
        "Number of threads the kernels use.");
  m.attr("MAX_NUM_THREADS") = pydetect::kMaxNumThreads;
  m.def("set_num_threads", &pydetect::set_num_threads, py::arg("n"),
        "Sets the number of threads the kernels use (n <= 0: all hardware threads; at most MAX_NUM_THREADS).");

  m.def("nms_reduce_mask", [](const py::array& bits) {
    // The words are bit patterns: uint64, or int64 (torch's 64-bit type) read as uint64.
    const char kind = bits.dtype().kind();
    const int64_t n = bits.ndim() == 2 ? bits.shape(0) : -1;
    if (n < 0 || bits.shape(1) != (n + 63) / 64 || bits.itemsize() != 8 || (kind != 'u' && kind != 'i')) {
      throw py::value_error("mask must be a uint64 or int64 array of shape (n, ceil(n / 64)), got " +
                            std::string(py::str(bits.dtype())) + " " + shape_of(bits));
    }
    const CArray<uint64_t> mask = CArray<uint64_t>::ensure(bits);
    const uint64_t* pm = mask.data();
    std::vector<int64_t> keep;
    {
      py::gil_scoped_release release;
      keep = pydetect::nms_reduce_mask(pm, n);
    }
    return to_array(keep);
  }, py::arg("mask"),
     "Greedy pass of bitmask NMS: mask uint64 (n, ceil(n / 64)) from _C_cuda.nms_mask (boxes in "
     "decreasing-score order; bit j of row i set when box i suppresses box j > i) -> int64 kept "
     "positions in that order.");

  // float32 first, then float64: an exact-dtype contiguous array (what the Python
  // wrappers pass) matches its overload in pybind11's first, no-conversion pass.
  bind_boxes<float>(m);
  bind_boxes<double>(m);
  bind_roi<float>(m);
  bind_roi<double>(m);
  bind_haar(m);
  bind_boosting(m);
  bind_integral(m);
  bind_cascade(m);
  bind_segmentation(m);
  bind_ism<float>(m);  // ism
  bind_ism<double>(m);
}
