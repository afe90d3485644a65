"""Large synthetic images: built-in dataset images pasted into a grid on a big canvas.

Shared by tests/test_inference_tiled.py and benchmarks/bench_inference.py.
"""

from __future__ import annotations

import numpy as np


def mosaic(dataset, size, seed: int = 0, fill: int = 110):
    """One ``size = (height, width)`` RGB image holding the dataset's images (reused in turn)
    at random places in the cells of a grid, one per cell; cells as large as the largest image.

    Returns
    -------
    image : (H, W, 3) uint8
    boxes : (K, 4) float32, the pasted images' boxes shifted to the canvas
    labels : (K,) int64
    """
    rng = np.random.default_rng(seed)
    height, width = size
    cell_h = max(img.shape[0] for img, _ in dataset)
    cell_w = max(img.shape[1] for img, _ in dataset)
    canvas = np.full((height, width, 3), fill, np.uint8)
    boxes, labels = [], []
    k = 0
    for y in range(0, height - cell_h + 1, cell_h):
        for x in range(0, width - cell_w + 1, cell_w):
            img, target = dataset[k % len(dataset)]
            k += 1
            h, w = img.shape[:2]
            dy, dx = int(rng.integers(cell_h - h + 1)), int(rng.integers(cell_w - w + 1))
            canvas[y + dy:y + dy + h, x + dx:x + dx + w] = img
            boxes.append(np.asarray(target["boxes"], np.float32) + np.float32([x + dx, y + dy, x + dx, y + dy]))
            labels.append(np.asarray(target["labels"], np.int64))
    return canvas, np.concatenate(boxes).reshape(-1, 4), np.concatenate(labels)
