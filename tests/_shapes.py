"""A tiny synthetic detection set for fast learning checks: squares and discs on noise."""

import numpy as np

from pydetect.data import DetectionDataset


def shapes(n_images, seed=0, size=128):
    import cv2

    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n_images):
        img = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, 4))):
            s = int(rng.integers(16, 41))
            for _ in range(20):
                x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
                b = np.array([x, y, x + s, y + s], float)
                if all(min(b[2], o[2]) <= max(b[0], o[0]) or min(b[3], o[3]) <= max(b[1], o[1]) for o in boxes):
                    break
            else:
                continue
            color = tuple(int(c) for c in rng.integers(140, 256, 3))
            k = int(rng.integers(0, 2))
            if k == 0:
                cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), color, -1)
            else:
                cv2.circle(img, (x + s // 2, y + s // 2), s // 2, color, -1)
            boxes.append(b)
            labels.append(k)
        images.append(img)
        targets.append({"boxes": np.array(boxes).reshape(-1, 4), "labels": np.array(labels, np.int64)})
    return DetectionDataset(images, targets, ["square", "disc"])
