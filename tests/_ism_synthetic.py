"""A tiny synthetic shape class for the ISM learning check: a cross of four blobs.

Each object is four dark Gaussian blobs above, below, left and right of its centre on a
noisy bright background; clutter is single blobs of the same look scattered at random,
so only the spatial configuration of the parts tells an object from clutter.
"""

import numpy as np


class ListDataset(list):
    """(image, target) pairs with class_names, the minimal DetectionDataset interface."""

    def __init__(self, items, class_names):
        super().__init__(items)
        self.class_names = list(class_names)


def _blob(canvas, x, y, sigma, amplitude):
    h, w = canvas.shape
    yy, xx = np.mgrid[0:h, 0:w]
    canvas -= amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def cross_image(rng, size=(128, 128), n_objects=1, scale_range=(28, 44), n_clutter=4):
    h, w = size
    canvas = 200 + rng.normal(0, 4, size)
    boxes = []
    for _ in range(n_objects):
        for _attempt in range(50):
            s = rng.uniform(*scale_range)
            cx, cy = rng.uniform(s / 2 + 2, w - s / 2 - 2), rng.uniform(s / 2 + 2, h - s / 2 - 2)
            box = [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]
            if all(box[0] > b[2] + 4 or box[2] < b[0] - 4 or box[1] > b[3] + 4 or box[3] < b[1] - 4 for b in boxes):
                break
        boxes.append(box)
        d, sig = 0.33 * s, 0.1 * s
        for dx, dy in ((0, -d), (0, d), (-d, 0), (d, 0)):
            _blob(canvas, cx + dx, cy + dy, sig, 120)
    for _ in range(n_clutter):
        s = rng.uniform(*scale_range)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if any(b[0] - 4 < x < b[2] + 4 and b[1] - 4 < y < b[3] + 4 for b in boxes):
            continue
        _blob(canvas, x, y, 0.1 * s, 120)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    target = {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "labels": np.zeros(len(boxes), np.int64)}
    return image, target


def cross_dataset(n_images, seed, **kwargs):
    rng = np.random.default_rng(seed)
    return ListDataset([cross_image(rng, **kwargs) for _ in range(n_images)], ["cross"])
