import numpy as np
import pytest
import torch

import pydetect
from pydetect import Detections


def make():
    return Detections([[0, 0, 10, 10], [5, 5, 20, 25], [1, 2, 3, 4]], scores=[0.9, 0.2, 0.5],
                      labels=[1, 0, 1], level=np.array([3, 1, 2]))


def test_fields_and_dtypes():
    d = make()
    assert len(d) == 3
    assert d.boxes.dtype == np.float32 and d.scores.dtype == np.float32 and d.labels.dtype == np.int64
    assert d.extra_fields == ("level",)
    np.testing.assert_array_equal(d.level, [3, 1, 2])


def test_indexing_filters_every_field():
    d = make()
    hi = d[d.scores > 0.4]
    np.testing.assert_array_equal(hi.labels, [1, 1])
    np.testing.assert_array_equal(hi.level, [3, 2])
    np.testing.assert_array_equal(d[1].boxes, [[5, 5, 20, 25]])
    np.testing.assert_array_equal(d[-1].scores, [0.5])
    np.testing.assert_array_equal(d[[2, 0]].level, [2, 3])
    np.testing.assert_array_equal(d[torch.tensor([True, False, True])].labels, [1, 1])
    assert len(d[:0]) == 0
    with pytest.raises(IndexError):
        d[np.array([True, False])]


def test_sorted_concat_and_defaults():
    d = make().sorted()
    np.testing.assert_array_equal(d.scores, np.float32([0.9, 0.5, 0.2]))
    both = Detections.concat([d, d])
    assert len(both) == 6 and both.extra_fields == ("level",)
    e = Detections()
    assert len(e) == 0 and e.boxes.shape == (0, 4)
    plain = Detections([[0, 0, 1, 1]])
    assert plain.scores.tolist() == [1.0] and plain.labels.tolist() == [0]
    with pytest.raises(ValueError, match="cannot concatenate"):
        Detections.concat([d, plain])


def test_to_coco():
    d = Detections([[10, 20, 30, 60]], scores=[0.25], labels=[1])
    assert d.to_coco(7, category_ids=[5, 9]) == [
        {"image_id": 7, "category_id": 9, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.25}]


def test_immutable_and_bad_input():
    d = make()
    with pytest.raises(AttributeError, match="immutable"):
        d.scores = None
    with pytest.raises(AttributeError, match="no field"):
        d.masks
    with pytest.raises(ValueError, match=r"scores must have shape \(1,\)"):
        Detections([[0, 0, 1, 1]], scores=[1, 2])
    with pytest.raises(ValueError, match="first dimension 1"):
        Detections([[0, 0, 1, 1]], extra=np.zeros(3))
    with pytest.raises(ValueError, match="reserved"):
        Detections([[0, 0, 1, 1]], _fields=np.zeros(1))
    with pytest.raises(ValueError, match="finite"):
        Detections([[0, 0, np.nan, 1]])


def test_num_threads():
    before = pydetect.get_num_threads()
    try:
        pydetect.set_num_threads(1)
        assert pydetect.get_num_threads() == 1
        with pytest.raises(ValueError, match="n must be >= 1"):
            pydetect.set_num_threads(0)
        with pytest.raises(TypeError, match="n must be an integer"):
            pydetect.set_num_threads(1.5)
    finally:
        pydetect.set_num_threads(before)
    assert pydetect.__version__
