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
from pydetect.ops.integral import integral_image  # noqa: E402  (issue 4)

__all__.append("integral_image")
