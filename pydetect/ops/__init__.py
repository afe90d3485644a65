"""Functional operators: validated wrappers over pydetect's C++ kernels.

Each accepts numpy arrays or torch tensors and returns the kind it was given. ``nms``,
``batched_nms``, ``box_iou``, ``roi_align`` and ``roi_pool`` call registered torch ops for
tensors (``torch.ops.pydetect.*``, see :mod:`pydetect.ops._library`): they, and the
RoIAlign / RoIPool / MultiScaleRoIAlign modules, work with torch.jit.script, torch.fx,
torch.compile, torch.export, autograd and autocast, and on CUDA tensors where pydetect has
CUDA kernels. ``box_area`` and ``box_convert`` of tensors work with torch.jit.script, torch.fx,
torch.jit.trace and torch.compile too (computed with torch's ops there, on any device; eagerly
they take CPU tensors). The other functions take numpy arrays or CPU tensors.
"""

import torch.fx

from pydetect.ops import _library  # noqa: F401  (registers torch.ops.pydetect.*)
from pydetect.ops.boxes import box_area, box_convert, box_iou, clip_boxes, remove_small_boxes
from pydetect.ops.nms import batched_nms, nms, soft_nms
from pydetect.ops.roi import MultiScaleRoIAlign, RoIAlign, RoIPool, roi_align, roi_pool
from pydetect.ops.integral import integral_image
from pydetect.ops.segmentation import felzenszwalb, selective_search
from pydetect.ops._runtime import simd_level

__all__ = [
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes",
    "remove_small_boxes",
    "nms",
    "batched_nms",
    "soft_nms",
    "roi_align",
    "roi_pool",
    "RoIAlign",
    "RoIPool",
    "MultiScaleRoIAlign",
    "integral_image",
    "felzenszwalb",
    "selective_search",
    "simd_level",
]

# torch.fx records calls made as `ops.nms(...)` from other modules as single nodes too (each
# function is also wrapped where it is defined, for calls from that module).
for _name in ("box_area", "box_convert", "box_iou", "nms", "batched_nms", "roi_align", "roi_pool"):
    torch.fx.wrap(_name)
del _name
