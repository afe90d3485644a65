// pydetect._C_cuda: the pybind11 bindings of the CUDA kernels (csrc/**/*_cuda.cu), a module of
// its own so that the main one builds without a CUDA toolkit. It links the CUDA runtime only,
// never libtorch: Python passes raw device pointers (tensor.data_ptr(), ints), sizes, the
// element type (the FloatType enum: FLOAT32 or FLOAT64) and the stream to launch on
// (torch.cuda.current_stream(device).cuda_stream, an int). Arrays are C-contiguous. Every
// function selects `device` (the tensors' device index), validates the sizes, releases the GIL,
// launches asynchronously (no synchronisation) and raises RuntimeError with CUDA's error string
// when a launch fails. Results are the CPU kernels' (module.cpp's roi_* / box_iou / nms).
#include <pybind11/pybind11.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

#include "boxes/box_ops_cuda.h"
#include "common/cuda_check.h"
#include "roi/roi_math.h"
#include "roi/roi_ops_cuda.h"

namespace py = pybind11;

namespace {

// ----------------------------------------------------------------------------- checks
void check_non_negative(int64_t value, const char* name) {
  if (value < 0) throw py::value_error(std::string(name) + " must be >= 0, got " + std::to_string(value));
}

// The product of non-negative sizes; ValueError if it overflows int64 (`what` names it).
int64_t checked_product(std::initializer_list<int64_t> sizes, const char* what) {
  int64_t product = 1;
  for (const int64_t s : sizes) {
    if (s != 0 && product > std::numeric_limits<int64_t>::max() / s) {
      throw py::value_error(std::string(what) + " has more elements than int64 can count");
    }
    product *= s;
  }
  return product;
}

// A device pointer of `count` elements of T: not null unless empty, aligned for T.
template <class T>
T* device_ptr(uintptr_t address, int64_t count, const char* name) {
  if (count > 0 && address == 0) throw py::value_error(std::string(name) + " is a null pointer");
  if (address % alignof(T) != 0) {
    throw py::value_error(std::string(name) + " is not aligned to " + std::to_string(alignof(T)) + " bytes");
  }
  return reinterpret_cast<T*>(address);
}

cudaStream_t as_stream(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// A device index as the CUDA runtime takes it.
int device_index(int64_t device) {
  if (device < 0 || device > std::numeric_limits<int>::max()) {
    throw py::value_error("device must be a CUDA device index >= 0, got " + std::to_string(device));
  }
  return static_cast<int>(device);
}

// Selects the device for the calling thread: this module links its own (static) CUDA runtime,
// whose current device is not torch's. Called with the GIL released.
void set_device(int device) { pydetect::cuda_check(cudaSetDevice(device), "cudaSetDevice"); }

// The element type of the tensors a kernel reads and writes (bound as the enum FloatType,
// so a wrong value is a TypeError at the boundary rather than an integer code).
enum class FloatType { Float32, Float64 };

// Calls f(T{}) with T the C++ type of `dtype`.
template <class F>
void with_dtype(FloatType dtype, F&& f) {
  if (dtype == FloatType::Float64) {
    f(double{});
  } else {
    f(float{});
  }
}

// The RoI arguments shared by the four RoI functions, checked as the CPU bindings check them.
struct RoiSizes {
  int64_t n, c, h, w, k, pooled_h, pooled_w;
  int64_t input_elements, output_elements;
};

RoiSizes roi_sizes(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t pooled_h, int64_t pooled_w) {
  check_non_negative(n, "N");
  check_non_negative(c, "C");
  check_non_negative(k, "R");
  if (h <= 0 || w <= 0) {
    throw py::value_error("H and W must be > 0, got " + std::to_string(h) + " and " + std::to_string(w));
  }
  // The CPU kernels' limit (roi_ops.cpp), so that both devices accept the same inputs.
  if (h > ((int64_t(1) << 31) - 1) / w) {
    throw py::value_error("feature planes must have fewer than 2^31 pixels, got " + std::to_string(h) + "x" +
                          std::to_string(w));
  }
  if (pooled_h <= 0 || pooled_w <= 0 || pooled_h > INT32_MAX || pooled_w > INT32_MAX) {
    throw py::value_error("pooled_h and pooled_w must be in [1, 2^31), got " + std::to_string(pooled_h) + " and " +
                          std::to_string(pooled_w));
  }
  checked_product({k, 5}, "rois (R, 5)");
  return {n, c, h, w, k, pooled_h, pooled_w, checked_product({n, c, h, w}, "input (N, C, H, W)"),
          checked_product({k, c, pooled_h, pooled_w}, "output (R, C, pooled_h, pooled_w)")};
}

void check_sampling_ratio(int64_t sampling_ratio) {
  if (sampling_ratio > pydetect::kMaxSamplingRatio) {
    throw py::value_error("sampling_ratio must be <= " + std::to_string(pydetect::kMaxSamplingRatio) + ", got " +
                          std::to_string(sampling_ratio));
  }
}

// ----------------------------------------------------------------------------- bindings
int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the error so that it does not resurface
    return 0;
  }
  return count;
}

void box_iou(int64_t device, uintptr_t a_ptr, int64_t n, uintptr_t b_ptr, int64_t m, uintptr_t out_ptr,
             FloatType dtype, uintptr_t stream) {
  const int dev = device_index(device);
  check_non_negative(n, "n");
  check_non_negative(m, "m");
  const int64_t pairs = checked_product({n, m}, "out (n, m)");
  checked_product({n, 4}, "boxes1 (n, 4)");
  checked_product({m, 4}, "boxes2 (m, 4)");
  with_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* a = device_ptr<const T>(a_ptr, n, "a_ptr");
    const T* b = device_ptr<const T>(b_ptr, m, "b_ptr");
    T* out = device_ptr<T>(out_ptr, pairs, "out_ptr");
    py::gil_scoped_release release;
    set_device(dev);
    pydetect::gpu::box_iou(a, n, b, m, out, as_stream(stream));
  });
}

void nms_mask(int64_t device, uintptr_t boxes_ptr, int64_t n, double iou_threshold, uintptr_t mask_ptr,
              FloatType dtype, uintptr_t stream) {
  const int dev = device_index(device);
  check_non_negative(n, "n");
  const int64_t words = (n + pydetect::gpu::kNmsBlock - 1) / pydetect::gpu::kNmsBlock;
  if (words > 65535) {  // the kernel's grid is words x words blocks; CUDA caps its y extent
    throw py::value_error("nms_mask handles at most 65535 * 64 = 4194240 boxes, got " + std::to_string(n));
  }
  with_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* boxes = device_ptr<const T>(boxes_ptr, n, "boxes_ptr");
    uint64_t* mask = device_ptr<uint64_t>(mask_ptr, n * words, "mask_ptr");
    py::gil_scoped_release release;
    set_device(dev);
    pydetect::gpu::nms_mask(boxes, n, iou_threshold, mask, as_stream(stream));
  });
}

void roi_align_forward(int64_t device, uintptr_t input_ptr, uintptr_t rois_ptr, uintptr_t out_ptr, FloatType dtype,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t pooled_h, int64_t pooled_w,
                       double spatial_scale, int64_t sampling_ratio, bool aligned, uintptr_t stream) {
  const int dev = device_index(device);
  const RoiSizes s = roi_sizes(n, c, h, w, k, pooled_h, pooled_w);
  check_sampling_ratio(sampling_ratio);
  with_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* input = device_ptr<const T>(input_ptr, s.input_elements, "input_ptr");
    const T* rois = device_ptr<const T>(rois_ptr, k, "rois_ptr");
    T* out = device_ptr<T>(out_ptr, s.output_elements, "out_ptr");
    py::gil_scoped_release release;
    set_device(dev);
    pydetect::gpu::roi_align_forward(input, n, c, h, w, rois, k, T(spatial_scale), pooled_h, pooled_w,
                                     sampling_ratio, aligned, out, as_stream(stream));
  });
}

void roi_align_backward(int64_t device, uintptr_t grad_out_ptr, uintptr_t rois_ptr, uintptr_t grad_in_ptr,
                        FloatType dtype, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t pooled_h,
                        int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, bool aligned,
                        uintptr_t stream) {
  const int dev = device_index(device);
  const RoiSizes s = roi_sizes(n, c, h, w, k, pooled_h, pooled_w);
  check_sampling_ratio(sampling_ratio);
  with_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* grad_out = device_ptr<const T>(grad_out_ptr, s.output_elements, "grad_out_ptr");
    const T* rois = device_ptr<const T>(rois_ptr, k, "rois_ptr");
    T* grad_in = device_ptr<T>(grad_in_ptr, s.input_elements, "grad_in_ptr");
    py::gil_scoped_release release;
    set_device(dev);
    pydetect::gpu::roi_align_backward(grad_out, rois, k, n, c, h, w, T(spatial_scale), pooled_h, pooled_w,
                                      sampling_ratio, aligned, grad_in, as_stream(stream));
  });
}

void roi_pool_forward(int64_t device, uintptr_t input_ptr, uintptr_t rois_ptr, uintptr_t out_ptr,
                      uintptr_t argmax_ptr, FloatType dtype, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                      int64_t pooled_h, int64_t pooled_w, double spatial_scale, uintptr_t stream) {
  const int dev = device_index(device);
  const RoiSizes s = roi_sizes(n, c, h, w, k, pooled_h, pooled_w);
  with_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* input = device_ptr<const T>(input_ptr, s.input_elements, "input_ptr");
    const T* rois = device_ptr<const T>(rois_ptr, k, "rois_ptr");
    T* out = device_ptr<T>(out_ptr, s.output_elements, "out_ptr");
    int64_t* argmax = device_ptr<int64_t>(argmax_ptr, s.output_elements, "argmax_ptr");
    py::gil_scoped_release release;
    set_device(dev);
    pydetect::gpu::roi_pool_forward(input, n, c, h, w, rois, k, T(spatial_scale), pooled_h, pooled_w, out, argmax,
                                    as_stream(stream));
  });
}

void roi_pool_backward(int64_t device, uintptr_t grad_out_ptr, uintptr_t argmax_ptr, uintptr_t rois_ptr,
                       uintptr_t grad_in_ptr, FloatType dtype, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                       int64_t pooled_h, int64_t pooled_w, uintptr_t stream) {
  const int dev = device_index(device);
  const RoiSizes s = roi_sizes(n, c, h, w, k, pooled_h, pooled_w);
  with_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* grad_out = device_ptr<const T>(grad_out_ptr, s.output_elements, "grad_out_ptr");
    const int64_t* argmax = device_ptr<const int64_t>(argmax_ptr, s.output_elements, "argmax_ptr");
    const T* rois = device_ptr<const T>(rois_ptr, k, "rois_ptr");
    T* grad_in = device_ptr<T>(grad_in_ptr, s.input_elements, "grad_in_ptr");
    py::gil_scoped_release release;
    set_device(dev);
    pydetect::gpu::roi_pool_backward(grad_out, argmax, rois, k, n, c, h, w, pooled_h, pooled_w, grad_in,
                                     as_stream(stream));
  });
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "pydetect's private CUDA kernels on raw device pointers. Use pydetect.ops.";

  py::enum_<FloatType>(m, "FloatType", "Element type of the tensors behind the raw pointers.")
      .value("FLOAT32", FloatType::Float32)
      .value("FLOAT64", FloatType::Float64);
  m.def("device_count", &device_count, "Number of CUDA devices (cudaGetDeviceCount); 0 without a driver or GPU.");
  m.def("box_iou", &box_iou, py::arg("device"), py::arg("a_ptr"), py::arg("n"), py::arg("b_ptr"), py::arg("m"),
        py::arg("out_ptr"), py::arg("dtype"), py::arg("stream"),
        "Pairwise IoU of boxes a (n, 4) and b (m, 4) into out (n, m).");
  m.def("nms_mask", &nms_mask, py::arg("device"), py::arg("boxes_ptr"), py::arg("n"), py::arg("iou_threshold"),
        py::arg("mask_ptr"), py::arg("dtype"), py::arg("stream"),
        "Suppression mask of bitmask NMS: boxes (n, 4) sorted by decreasing score -> mask uint64 "
        "(n, ceil(n / 64)), bit j of row i set when j > i and IoU(i, j) > iou_threshold (compared in double), "
        "all other bits 0. Reduce it on the host with pydetect._C.nms_reduce_mask.");
  m.def("roi_align_forward", &roi_align_forward, py::arg("device"), py::arg("input_ptr"), py::arg("rois_ptr"),
        py::arg("out_ptr"), py::arg("dtype"), py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("R"),
        py::arg("pooled_h"), py::arg("pooled_w"), py::arg("spatial_scale"), py::arg("sampling_ratio"),
        py::arg("aligned"), py::arg("stream"),
        "RoIAlign forward: input (N, C, H, W), rois (R, 5) [batch index, x1, y1, x2, y2] -> out "
        "(R, C, pooled_h, pooled_w).");
  m.def("roi_align_backward", &roi_align_backward, py::arg("device"), py::arg("grad_out_ptr"),
        py::arg("rois_ptr"), py::arg("grad_in_ptr"), py::arg("dtype"), py::arg("N"), py::arg("C"), py::arg("H"),
        py::arg("W"), py::arg("R"), py::arg("pooled_h"), py::arg("pooled_w"), py::arg("spatial_scale"),
        py::arg("sampling_ratio"), py::arg("aligned"), py::arg("stream"),
        "RoIAlign backward: adds the gradient of grad_out (R, C, pooled_h, pooled_w) into grad_in (N, C, H, W), "
        "which the caller zero-fills (atomic adds).");
  m.def("roi_pool_forward", &roi_pool_forward, py::arg("device"), py::arg("input_ptr"), py::arg("rois_ptr"),
        py::arg("out_ptr"), py::arg("argmax_ptr"), py::arg("dtype"), py::arg("N"), py::arg("C"), py::arg("H"),
        py::arg("W"), py::arg("R"), py::arg("pooled_h"), py::arg("pooled_w"), py::arg("spatial_scale"),
        py::arg("stream"),
        "RoI max pool forward: out (R, C, pooled_h, pooled_w) and argmax int64 (flat index into H * W, -1 for "
        "an empty bin).");
  m.def("roi_pool_backward", &roi_pool_backward, py::arg("device"), py::arg("grad_out_ptr"), py::arg("argmax_ptr"),
        py::arg("rois_ptr"), py::arg("grad_in_ptr"), py::arg("dtype"), py::arg("N"), py::arg("C"), py::arg("H"),
        py::arg("W"), py::arg("R"), py::arg("pooled_h"), py::arg("pooled_w"), py::arg("stream"),
        "RoI max pool backward: adds grad_out at each bin's argmax into grad_in (N, C, H, W), which the caller "
        "zero-fills (atomic adds).");
}
