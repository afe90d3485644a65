"""Detection datasets: the DetectionDataset container, file formats and built-in datasets."""

from pydetect.data.builtin import DEFAULT_N_IMAGES, digit_indices, digits_in_clutter, face_indices, faces_in_clutter
from pydetect.data.dataset import DetectionDataset, read_image

__all__ = [
    "DetectionDataset",
    "read_image",
    "digits_in_clutter",
    "faces_in_clutter",
    "digit_indices",
    "face_indices",
    "DEFAULT_N_IMAGES",
]
