"""Inference on very large images (tiles) and on very many images (streaming, Ray).

``predict_tiled(detector, image, tile, overlap, merge)`` runs any pydetect detector (or a
callable ``image -> Detections``) over the overlapping tiles of an image at full resolution
and merges the boxes cut by tile borders; ``detect_folder(model, inputs, out)`` streams a
folder, a glob or a list of images through a saved model in worker processes (or on a Ray
cluster), writing COCO results as it goes and resuming where a killed run stopped.
"""

from pydetect.inference.merge import MATCHES, MERGES, box_overlap, greedy_nmm, merge_detections, weighted_boxes_fusion
from pydetect.inference.sources import open_image, read_downscaled
from pydetect.inference.stream import detect_folder, expand_inputs
from pydetect.inference.tiled import predict_tiled
from pydetect.inference.tiling import tile_grid

__all__ = ["predict_tiled", "detect_folder", "expand_inputs", "tile_grid", "merge_detections", "greedy_nmm",
           "weighted_boxes_fusion", "box_overlap", "open_image", "read_downscaled", "MERGES", "MATCHES"]
