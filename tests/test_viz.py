import numpy as np
import pytest

from pydetect import Detections
from pydetect import eval as pdeval
from pydetect import viz
from pydetect.data import DetectionDataset

pytest.importorskip("matplotlib", reason="plot_pr draws with matplotlib")
cv2 = pytest.importorskip("cv2", reason="images are decoded with OpenCV")


def test_draw_detections_colours_box_edges():
    img = np.zeros((60, 80, 3), np.uint8)
    d = Detections([[10, 20, 50, 50], [0, 0, 5, 5]], [0.9, 0.1], [1, 0])
    out = viz.draw_detections(img, d, ["a", "b"], score_threshold=0.5, thickness=1)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert img.max() == 0  # input untouched
    color = viz.class_color(1)
    # Left and bottom edges of the kept box carry the class colour; the low-score box is not drawn.
    assert tuple(out[35, 10]) == color and tuple(out[49, 30]) == color
    assert out[:5, :5].max() == 0
    grey = viz.draw_detections(np.zeros((30, 30), np.float32), {"boxes": [[2, 2, 20, 20]], "labels": [0]})
    assert grey.shape == (30, 30, 3) and tuple(grey[10, 2]) == viz.class_color(0)


def test_plot_pr_writes_png(tmp_path):
    img = np.zeros((40, 40), np.uint8)
    ds = DetectionDataset([img, img], [{"boxes": [[0, 0, 10, 10]], "labels": [0]},
                                       {"boxes": [[5, 5, 30, 30]], "labels": [1]}], ["a", "b"])
    dets = [Detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 0]), Detections([[5, 5, 30, 29]], [0.5], [1])]
    for res in (pdeval.voc_evaluate(ds, dets), pdeval.coco_evaluate(ds, dets, return_arrays=True),
                {"x": ([0.5, 1.0], [1.0, 0.5])}):
        path = viz.plot_pr(res, tmp_path / "pr.png", title="t")
        png = cv2.imread(str(path))
        assert png is not None and png.shape[0] > 100 and png.std() > 0
    with pytest.raises(TypeError):
        viz.plot_pr([1, 2], tmp_path / "x.png")
