import json
import os

import numpy as np
import pytest

from pydetect import Detections
from pydetect import eval as pdeval
from pydetect.data import DetectionDataset, export_coco, load_coco, load_voc, save_coco, save_coco_results

cv2 = pytest.importorskip("cv2", reason="images are written and read with OpenCV")


def _small_dataset():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(30 + 5 * i, 40, 3), dtype=np.uint8) for i in range(3)]
    targets = [
        {"boxes": [[1.5, 2.25, 10, 12], [0, 0, 40, 30]], "labels": [1, 0], "iscrowd": [False, True]},
        {"boxes": np.zeros((0, 4)), "labels": []},
        {"boxes": [[5, 5, 6, 7]], "labels": [2], "difficult": [True], "area": [0.75]},
    ]
    return DetectionDataset(images, targets, ["cat", "dog", "bird"], image_ids=[7, 3, 11], category_ids=[5, 1, 9])


def test_coco_round_trip(tmp_path):
    ds = _small_dataset()
    ann = export_coco(ds, tmp_path / "out")
    assert os.path.exists(ann) and len(os.listdir(tmp_path / "out" / "images")) == 3
    back = load_coco(ann)
    assert back.class_names == ["dog", "cat", "bird"]  # sorted by category id
    assert back.category_ids == [1, 5, 9] and back.image_ids == [7, 3, 11]
    for i in range(3):
        (a, ta), (b, tb) = ds[i], back[i]
        np.testing.assert_array_equal(a, b)  # PNG is lossless, RGB order kept
        np.testing.assert_array_equal(ta["boxes"], tb["boxes"])
        names_a = [ds.class_names[j] for j in ta["labels"]]
        names_b = [back.class_names[j] for j in tb["labels"]]
        assert names_a == names_b
        np.testing.assert_array_equal(ta["iscrowd"], tb["iscrowd"])
        np.testing.assert_array_equal(ta["difficult"], tb["difficult"])
    assert back.target(2)["area"].tolist() == [0.75] and back.target(0)["area"][0] == pytest.approx(8.5 * 9.75)
    # Without an image directory only the JSON is written, and no temporary files are left.
    save_coco(ds, tmp_path / "gt.json")
    assert sorted(os.listdir(tmp_path)) == ["gt.json", "out"]


def test_results_round_trip_through_evaluation(tmp_path):
    ds = _small_dataset()
    dets = [Detections([[1.5, 2.25, 10, 12]], [0.9], [1]), Detections(), Detections([[5, 5, 6, 7]], [0.3], [2])]
    res = save_coco_results(dets, ds, tmp_path / "res.json")
    assert res[0] == {"image_id": 7, "category_id": 1, "bbox": [1.5, 2.25, 8.5, 9.75], "score": pytest.approx(0.9)}
    save_coco(ds, tmp_path / "gt.json")
    a = pdeval.coco_evaluate(tmp_path / "gt.json", tmp_path / "res.json")
    b = pdeval.coco_evaluate(ds, dets)
    np.testing.assert_array_equal(a["stats"], b["stats"])


@pytest.mark.parametrize("mutate, field", [
    (lambda g: g["annotations"][0].pop("bbox"), r"annotations\[0\].*bbox"),
    (lambda g: g["annotations"][0].update(bbox=[0, 0, "a", 1]), r"annotations\[0\]\['bbox'\]"),
    (lambda g: g["annotations"][0].update(image_id=999), r"annotations\[0\]\['image_id'\]"),
    (lambda g: g["annotations"][0].update(category_id=999), r"annotations\[0\]\['category_id'\]"),
    (lambda g: g["annotations"][1].update(id=1), r"annotations\[1\]\['id'\].*duplicate"),
    (lambda g: g["images"][0].pop("id"), r"images\[0\]\['id'\]"),
    (lambda g: g.pop("categories"), "categories"),
    (lambda g: g["annotations"][0].update(iscrowd=5), "iscrowd"),
])
def test_malformed_coco_names_file_and_field(tmp_path, mutate, field):
    gt = save_coco(_small_dataset(), tmp_path / "gt.json")
    mutate(gt)
    (tmp_path / "bad.json").write_text(json.dumps(gt))
    with pytest.raises(ValueError, match="bad.json.*" + field if "bad" not in field else field):
        load_coco(tmp_path / "bad.json")


def test_coco_boxes_outside_image_clipped_with_warning(tmp_path):
    ds = _small_dataset()
    gt = save_coco(ds, tmp_path / "gt.json")
    gt["annotations"][0]["bbox"] = [-3, 0, 100, 5]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.warns(UserWarning, match="clipped"):
        back = load_coco(tmp_path / "gt.json", image_dir=tmp_path)
    np.testing.assert_array_equal(back.target(0)["boxes"][0], [0, 0, 40, 5])


_VOC_XML = """<annotation>
  <folder>VOC2007</folder><filename>{id}.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  {objects}
</annotation>"""
_VOC_OBJ = """<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{diff}</difficult>
  <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def _write_voc(root, items, split="trainval"):
    os.makedirs(root / "Annotations", exist_ok=True)
    os.makedirs(root / "ImageSets" / "Main", exist_ok=True)
    os.makedirs(root / "JPEGImages", exist_ok=True)
    for vid, (h, w), objs in items:
        objects = "\n".join(_VOC_OBJ.format(name=n, diff=d, x1=a, y1=b, x2=c, y2=e) for n, d, (a, b, c, e) in objs)
        (root / "Annotations" / f"{vid}.xml").write_text(_VOC_XML.format(id=vid, w=w, h=h, objects=objects))
        cv2.imwrite(str(root / "JPEGImages" / f"{vid}.jpg"), np.full((h, w, 3), 128, np.uint8))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(v for v, _, _ in items) + "\n")


def test_load_voc(tmp_path):
    _write_voc(tmp_path, [("000005", (50, 60), [("dog", 0, (1, 1, 60, 50)), ("person", 1, (10, 20, 30, 40))]),
                          ("000007", (40, 30), [("chair", 0, (5, 6, 7, 8))])])
    ds = load_voc(tmp_path, "trainval")
    assert len(ds) == 2 and ds.image_ids == [5, 7] and len(ds.class_names) == 20
    img, t = ds[0]
    assert img.shape == (50, 60, 3)
    np.testing.assert_array_equal(t["boxes"], [[0, 0, 60, 50], [9, 19, 30, 40]])
    assert [ds.class_names[j] for j in t["labels"]] == ["dog", "person"]
    assert t["difficult"].tolist() == [False, True]
    assert len(load_voc(tmp_path, "trainval", keep_difficult=False).target(0)["boxes"]) == 1
    custom = load_voc(tmp_path, "trainval", class_names=["chair", "dog", "person"])
    assert custom.target(1)["labels"].tolist() == [0]


def test_load_voc_errors(tmp_path):
    _write_voc(tmp_path, [("a", (20, 20), [("unicorn", 0, (1, 1, 5, 5))])])
    with pytest.raises(ValueError, match=r"a\.xml.*<name> 'unicorn'"):
        load_voc(tmp_path)
    _write_voc(tmp_path, [("a", (20, 20), [("dog", 0, (1, 1, "x", 5))])])
    with pytest.raises(ValueError, match=r"a\.xml.*<xmax>"):
        load_voc(tmp_path)
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"a\.xml: malformed XML"):
        load_voc(tmp_path)
    with pytest.raises(FileNotFoundError, match="test.txt"):
        load_voc(tmp_path, "test")
