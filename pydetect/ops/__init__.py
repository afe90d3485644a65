"""Functional operators: validated wrappers over pydetect's C++ kernels.

Each accepts numpy arrays or CPU torch tensors and returns the kind it was given.
"""

from pydetect.ops.boxes import box_area, box_convert, box_iou, clip_boxes, remove_small_boxes
from pydetect.ops.nms import batched_nms, nms, soft_nms

__all__ = [
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes",
    "remove_small_boxes",
    "nms",
    "batched_nms",
    "soft_nms",
]

from pydetect.ops.roi import roi_align, roi_pool  # noqa: E402
from pydetect.ops import roi as _roi  # noqa: E402

__all__ += ["roi_align", "roi_pool", "RoIAlign", "RoIPool", "MultiScaleRoIAlign"]


def __getattr__(name):
    # RoIAlign, RoIPool, MultiScaleRoIAlign subclass torch.nn.Module: built on first use.
    if name in ("RoIAlign", "RoIPool", "MultiScaleRoIAlign"):
        return getattr(_roi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from pydetect.ops.integral import integral_image  # noqa: E402  (issue 4)

__all__.append("integral_image")
from pydetect.ops.segmentation import felzenszwalb, selective_search  # noqa: E402

__all__ += ["felzenszwalb", "selective_search"]
