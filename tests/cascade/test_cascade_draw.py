import os

import numpy as np
import pytest

from pydetect import ops
from pydetect.cascade import Cascade, HaarFeature, LBPFeature, draw_feature
from pydetect.cascade.draw import feature_mask

cv2 = pytest.importorskip("cv2", reason="the cascades ship with OpenCV")


def test_tilted_rect_mask_is_a_rotated_rectangle():
    # A tilted w x h rectangle covers 2 * w * h pixels (Lienhart & Maydt 2002), rows widen
    # by one pixel on each side until a corner is reached.
    f = HaarFeature(np.array([[6, 0, 3, 2]]), np.array([1.0]), tilted=True)
    m = feature_mask(f, (12, 8))
    assert m.sum() == 2 * 3 * 2
    rows = [np.flatnonzero(r).tolist() for r in m]
    # table corner (6, 0) is the top of pixel 5: one pixel, then the rows widen
    assert rows[:5] == [[5], [4, 5, 6], [4, 5, 6, 7], [5, 6, 7], [6]]


def test_mask_values_equal_integral_sums(rng):
    """(mask * window).sum() equals the feature's rectangle sums read from the tables."""
    c = Cascade.load(os.path.join(cv2.data.haarcascades, "haarcascade_upperbody.xml"))
    ww, wh = c.window_size
    win = rng.integers(0, 256, (wh, ww), dtype=np.uint8)
    s, t = ops.integral_image(win, tilted=True)
    s, t = s.astype(np.int64), t.astype(np.int64)
    n_tilted = 0
    for f in c.features[:300]:
        total = 0.0
        for (x, y, w, h), wt in zip(f.rects, f.weights):
            if f.tilted:
                v = t[y, x] - t[y + h, x - h] - t[y + w, x + w] + t[y + w + h, x + w - h]
            else:
                v = s[y + h, x + w] - s[y, x + w] - s[y + h, x] + s[y, x]
            total += float(wt) * v
        n_tilted += f.tilted
        assert (feature_mask(f, (ww, wh)) * win).sum() == pytest.approx(total)
    assert n_tilted > 0


def test_draw_feature_images():
    c = Cascade.load(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    img = draw_feature(c, 0, scale=4)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    # feature 0: rects (6,4,12,9) weight -1 and (6,7,12,3) weight 3: net +2 in the middle
    assert img[4 * 8, 4 * 10, 0] > img[4 * 8, 4 * 10, 2]   # positive: red
    assert img[4 * 5, 4 * 10, 2] > img[4 * 5, 4 * 10, 0]   # negative: blue
    assert (img[0, 0] == 128).all()                        # untouched background
    lbp = draw_feature(LBPFeature((2, 2, 3, 3)), scale=2)
    assert lbp.shape == (22, 22, 3)
    with pytest.raises(ValueError, match="index"):
        draw_feature(c)
    with pytest.raises(TypeError):
        draw_feature("feature")
