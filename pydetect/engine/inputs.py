"""Inputs of the CNN detectors' training: dataset checks and images or crops as tensors."""

from __future__ import annotations

import numpy as np
import torch

from pydetect._validation import as_image
from pydetect.models.backbones import normalize_images

__all__ = ["check_detection_dataset", "image_to_tensor", "crops_to_tensor"]


def check_detection_dataset(dataset):
    """Validates a sequence of (image, target) with ``class_names``; returns (class_names, targets).

    Raises ValueError for an empty dataset, boxes with x2 <= x1 or y2 <= y1, or labels
    outside ``[0, len(class_names))``.
    """
    class_names = getattr(dataset, "class_names", None)
    if class_names is None:
        raise TypeError("dataset must be a pydetect.data.DetectionDataset (or have class_names)")
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    targets = dataset.targets if hasattr(dataset, "targets") else [t for _, t in dataset]
    k = len(class_names)
    for i, t in enumerate(targets):
        b = np.asarray(t["boxes"], np.float64).reshape(-1, 4)
        lab = np.asarray(t["labels"]).reshape(-1)
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"dataset target {i}: box {j} = {b[j].tolist()} has x2 <= x1 or y2 <= y1")
        if lab.size and (lab.min() < 0 or lab.max() >= k):
            raise ValueError(f"dataset target {i}: labels must lie in [0, {k}), got {lab.tolist()}")
    return list(class_names), targets


def image_to_tensor(image) -> torch.Tensor:
    """(H, W) or (H, W, 3) uint8 / float image -> (3, H, W) float32 in [0, 1]."""
    img = as_image(image, "image")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def crops_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(M, S, S, 3) uint8 crops -> (M, 3, S, S) float32, normalised as the backbones expect
    (:func:`pydetect.models.backbones.normalize_images`)."""
    return normalize_images(torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0))
