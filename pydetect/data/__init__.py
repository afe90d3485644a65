"""Detection datasets: the DetectionDataset container, COCO / VOC files, transforms, built-in datasets."""

from pydetect.data.builtin import (DEFAULT_N_IMAGES, background_names, digit_indices, digits_in_clutter, face_indices,
                                   faces_in_clutter)
from pydetect.data.dataset import DetectionDataset, read_image
from pydetect.data.formats import VOC_CLASSES, export_coco, load_coco, load_voc, save_coco, save_coco_results
from pydetect.data import transforms

__all__ = [
    "DetectionDataset",
    "read_image",
    "load_coco",
    "save_coco",
    "save_coco_results",
    "export_coco",
    "load_voc",
    "VOC_CLASSES",
    "transforms",
    "digits_in_clutter",
    "faces_in_clutter",
    "digit_indices",
    "face_indices",
    "background_names",
    "DEFAULT_N_IMAGES",
]
