"""Tiled inference: a detector run over the tiles of a large image at full resolution.

Small objects that a detector finds in an image of its working size vanish when a huge
image is shrunk to that size; tiling keeps the resolution and bounds memory by the tile
(see :mod:`pydetect.inference.sources` for which inputs are read lazily).
"""

from __future__ import annotations

import numpy as np

from pydetect._validation import check_bool, check_int
from pydetect.inference.merge import merge_detections
from pydetect.inference.sources import open_image, read_downscaled
from pydetect.inference.tiling import check_tiling, tile_grid
from pydetect.structures import Detections

__all__ = ["predict_tiled", "batch_predictor"]


def batch_predictor(detector):
    """``images -> list of Detections`` for a detector: its ``predict_batch``, else its
    ``predict`` image by image, else the detector itself called on each image.

    Raises
    ------
    TypeError
        If the detector has none of these, or (when called) returns anything but one
        Detections per image.
    """
    if hasattr(detector, "predict_batch"):
        run = detector.predict_batch
    elif hasattr(detector, "predict"):
        def run(images):
            return [detector.predict(image) for image in images]
    elif callable(detector):
        def run(images):
            return [detector(image) for image in images]
    else:
        raise TypeError("detector must have predict_batch(images) or predict(image), or be a callable "
                        f"image -> Detections; got {type(detector).__name__}")

    def checked(images):
        out = list(run(images))
        if len(out) != len(images) or not all(isinstance(d, Detections) for d in out):
            kinds = sorted({type(d).__name__ for d in out})
            raise TypeError(f"detector must return one pydetect.Detections per image; for {len(images)} "
                            f"images it returned {len(out)} objects of types {kinds}")
        return out
    return checked


def _shifted(dets: Detections, dx: float, dy: float, sx: float = 1.0, sy: float = 1.0):
    """(boxes, scores, labels) of ``dets`` mapped to image coordinates: scaled, then shifted."""
    boxes = dets.boxes.astype(np.float64) * np.array([sx, sy, sx, sy]) + np.array([dx, dy, dx, dy])
    return boxes, dets.scores, dets.labels


def predict_tiled(detector, image, tile=(512, 512), overlap: float = 0.2, merge: str = "greedy",
                  iou: float = 0.5, match=None, full_image_pass: bool = False, full_image_size=None,
                  batch_size: int = 4) -> Detections:
    """Runs a detector on the overlapping tiles of an image and merges their detections.

    Parameters
    ----------
    detector : detector or callable
        Anything with ``predict_batch(images) -> list[Detections]`` (used, ``batch_size`` tiles
        at a time) or ``predict(image) -> Detections``, or a callable ``image -> Detections``.
        It is given uint8 tiles, (h, w, 3) RGB or (h, w) grey like the image.
    image : array, numpy.memmap or path
        ``(H, W)`` or ``(H, W, 3)``; a path to a ``.npy`` file is read tile by tile, a path to
        another image file is decoded whole by OpenCV (see
        :mod:`pydetect.inference.sources`).
    tile : int or (int, int), default (512, 512)
        Tile ``(height, width)``. Tiles never extend past the image: the last row and column
        are shifted inwards, and a tile is smaller only where the image is
        (:func:`pydetect.inference.tiling.tile_grid`).
    overlap : float in [0, 1), default 0.2
        Overlap of neighbouring tiles, as a fraction of the tile. An object no larger than
        ``overlap * tile`` lies wholly in at least one tile.
    merge : {"greedy", "nms", "wbf"}, default "greedy"
        How duplicates across tiles are merged (:mod:`pydetect.inference.merge`): SAHI's greedy
        non-maximum merging (the union of the matched boxes, the best score), NMS, or weighted
        boxes fusion (whose score rescaling counts the tiles containing each fused box).
    iou : float in [0, 1], default 0.5
        Matching threshold (of the IoU or the IOS, as ``match`` says).
    match : {"iou", "ios"}, optional
        Default ``"ios"`` (intersection over the smaller box: a box cut by a tile border is
        contained in the object's full box) for greedy and WBF; NMS matches by IoU only.
    full_image_pass : bool, default False
        Also run the detector once on the whole image downscaled so that its longer side is
        ``full_image_size``, for objects too large for a tile; its boxes are scaled back and
        merged with the tiles'. Skipped when the image is a single tile.
    full_image_size : int, optional
        Longer side of that downscaled image. Default: the tile's longer side.
    batch_size : int, default 4
        Tiles per ``predict_batch`` call (at most this many tiles are in memory at once).

    Returns
    -------
    Detections
        Boxes in image pixels, scores and labels (a detector's extra fields are not kept), by
        decreasing score.

    Examples
    --------
    >>> import cv2
    >>> from pydetect.detectors import ViolaJonesDetector
    >>> det = ViolaJonesDetector.from_cascade(
    ...     cv2.data.haarcascades + "haarcascade_frontalface_default.xml", class_name="face")
    >>> dets = predict_tiled(det, "huge.npy", tile=512, overlap=0.2)  # doctest: +SKIP
    """
    (tile_h, tile_w), overlap = check_tiling(tile, overlap)
    full_image_pass = check_bool(full_image_pass, "full_image_pass")
    full_size = max(tile_h, tile_w) if full_image_size is None else check_int(full_image_size, "full_image_size",
                                                                                minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    # Check the merge settings before any tile is run.
    merge_detections(Detections(), merge, iou, match)
    predict = batch_predictor(detector)
    source = open_image(image)
    try:
        tiles = tile_grid(source.size, (tile_h, tile_w), overlap)
        parts = []
        # The whole-image boxes go first: at equal scores they lead the merges (a large object's
        # whole box absorbs the pieces the tiles saw).
        if full_image_pass and len(tiles) > 1:
            small, (sy, sx) = read_downscaled(source, full_size)
            parts.append(_shifted(predict([small])[0], 0.0, 0.0, sx, sy))
            del small
        for start in range(0, len(tiles), batch_size):
            batch = tiles[start:start + batch_size]
            images = [source.read(*(int(v) for v in t)) for t in batch]
            for (x0, y0, _, _), dets in zip(batch, predict(images)):
                parts.append(_shifted(dets, float(x0), float(y0)))
            del images
    finally:
        source.close()
    boxes, scores, labels = (np.concatenate(v) for v in zip(*parts))
    found = Detections(boxes.astype(np.float32), scores=scores, labels=labels)
    return merge_detections(found, merge, iou, match, views=tiles)
