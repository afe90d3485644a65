"""Bad input gets a ValueError / TypeError naming the argument, never an OverflowError,
IndexError, KeyError, cv2.error or a hang from the internals; the CLI turns every failure into
one line on stderr.

Each test feeds one class of bad input to the public API (or the CLI, in a subprocess) and
checks the kind of error and that its message names the culprit.
"""

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from _isolated import run_isolated
from pydetect import Detections, set_num_threads
from pydetect import _validation as V
from pydetect.data import DetectionDataset, load_coco, load_voc, read_image, save_coco, transforms as T
from pydetect.eval import coco_evaluate, voc_evaluate
from pydetect.eval.voc import proposal_recall, voc_ap

cv2 = pytest.importorskip("cv2")

HUGE = 10**400  # an int no float holds


# ----------------------------------------------------------------------------- files
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height RGB pixels but holds (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b""))
            + _png_chunk(b"IEND", b""))


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header claiming width x height pixels, with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def good_png() -> bytes:
    image = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


BAD_IMAGES = {
    "empty": b"",
    "random": np.random.default_rng(1).bytes(3000),
    "truncated": good_png()[:300],
    "huge_png": png_header(100_000, 100_000),
    "huge_png_under_opencv_limit": png_header(30_000, 30_000),  # 0.9 Gpx: OpenCV alone would allocate it
    "huge_bmp": bmp_header(100_000, 100_000),
}


# ----------------------------------------------------------------------------- validation helpers
@pytest.mark.parametrize("check", ["check_positive", "check_fraction", "check_real"])
def test_reals_beyond_the_float_range_are_value_errors(check):
    with pytest.raises(ValueError, match="^x must be finite"):
        getattr(V, check)(HUGE, "x")


@pytest.mark.parametrize("value", [2**63, -2**63 - 1, 10**30, HUGE])
def test_integers_beyond_int64_are_refused(value):
    with pytest.raises(ValueError, match="^n must be"):
        V.check_int(value, "n")
    assert V.check_int(2**63 - 1, "n") == 2**63 - 1


def test_uint64_labels_are_not_wrapped_to_negative():
    with pytest.raises(ValueError, match="labels must be <= 9223372036854775807"):
        Detections([[0, 0, 1, 1]], labels=np.array([2**63], np.uint64))
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] must be <= 9223372036854775807"):
        DetectionDataset([np.zeros((8, 8, 3), np.uint8)],
                         [{"boxes": [[0, 0, 2, 2]], "labels": np.array([2**63], np.uint64)}], ["a"])


def test_set_num_threads_is_capped():
    # torch segfaults when asked for 100,000 threads; pydetect refuses more than MAX_THREADS.
    with pytest.raises(ValueError, match="n must be <= 1024"):
        set_num_threads(10**6)


# ----------------------------------------------------------------------------- Detections
def test_detections_indexing_out_of_range_or_by_floats():
    d = Detections([[0, 0, 1, 1], [1, 1, 2, 2]], scores=[0.5, 0.25])
    assert d[-1].scores.tolist() == [0.25] and d[1].scores.tolist() == [0.25]
    for key in (2, -3, 2**63, np.array([0, 5])):
        with pytest.raises(IndexError, match="out of range for 2 detections"):
            d[key]
    with pytest.raises(TypeError, match="index must be"):
        d[np.array([0.5])]
    with pytest.raises(TypeError, match=r"parts\[1\] must be a Detections"):
        Detections.concat([d, 1])


def test_to_coco_checks_its_ids():
    d = Detections([[0, 0, 1, 1]], labels=[1])
    with pytest.raises(TypeError, match="image_id"):
        d.to_coco("7")
    with pytest.raises(ValueError, match="image_id"):
        d.to_coco(2**63)
    with pytest.raises(ValueError, match="category_ids has no entry for label 1"):
        d.to_coco(1, category_ids=[5])
    with pytest.raises(ValueError, match="category_ids has no entry for label 1"):
        d.to_coco(1, category_ids={0: 5})
    with pytest.raises(ValueError, match="labels must be >= 0"):
        Detections([[0, 0, 1, 1]], labels=[-1]).to_coco(1, category_ids=[3, 4])


# ----------------------------------------------------------------------------- DetectionDataset
IMG = np.zeros((10, 10, 3), np.uint8)
TGT = {"boxes": [[0, 0, 5, 5]], "labels": [0]}


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(image_ids=[2**63]), ValueError, r"image_ids\[0\] must be <="),
    (dict(image_ids=[-1]), ValueError, r"image_ids\[0\] must be >= 0"),
    (dict(image_ids=["a"]), TypeError, r"image_ids\[0\] must be an integer"),
    (dict(image_ids=[1.5]), TypeError, r"image_ids\[0\] must be an integer"),
    (dict(image_ids=5), TypeError, "image_ids must be a sequence"),
    (dict(category_ids=[2**63]), ValueError, r"category_ids\[0\] must be <="),
    (dict(category_ids=["x"]), TypeError, r"category_ids\[0\] must be an integer"),
    (dict(image_sizes=[(float("inf"), 3)]), TypeError, r"image_sizes\[0\] height must be an integer"),
    (dict(image_sizes=[(0, 3)]), ValueError, r"image_sizes\[0\] height must be >= 1"),
    (dict(image_sizes=["ab"]), TypeError, r"image_sizes\[0\] height must be an integer"),
])
def test_dataset_ids_and_sizes(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        DetectionDataset(["a.png"], [TGT], ["a"], **kwargs)


@pytest.mark.parametrize("area, error, fragment", [
    (["x"], TypeError, "must hold real numbers"),
    ([float("nan")], ValueError, "must be finite"),
    ([-5.0], ValueError, "must be >= 0"),
])
def test_dataset_area(area, error, fragment):
    with pytest.raises(error, match=r"targets\[0\]\['area'\] " + fragment):
        DetectionDataset([IMG], [{**TGT, "area": area}], ["a"])


@pytest.mark.parametrize("args, fragment", [
    ((None, [TGT], ["a"]), "images must be a sequence"),
    (([IMG], 5, ["a"]), "targets must be a sequence"),
    (([IMG], [TGT], None), "class_names must be a sequence"),
])
def test_dataset_arguments_that_are_not_sequences(args, fragment):
    with pytest.raises(TypeError, match=fragment):
        DetectionDataset(*args)


def test_dataset_index_methods_name_the_range():
    ds = DetectionDataset([IMG, IMG], [TGT, TGT], ["a"])
    for call in (lambda: ds.target(5), lambda: ds.image_size(5), lambda: ds.load_image(-3),
                 lambda: ds.image_path(2), lambda: ds[2**63]):
        with pytest.raises(IndexError, match="out of range for a dataset of 2 images"):
            call()
    with pytest.raises(IndexError, match=r"indices\[1\] 5 out of range"):
        ds.subset([0, 5])
    with pytest.raises(TypeError, match=r"indices\[0\] must be an integer"):
        ds.subset(["a"])
    with pytest.raises(TypeError, match="index must be an integer"):
        ds[True]
    assert ds.subset([-1]).image_ids == [1]


def test_dataset_size_mismatch_names_the_file(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(good_png())  # 32 x 40
    ds = DetectionDataset([str(path)], [TGT], ["a"], image_sizes=[(10, 10)])
    with pytest.raises(ValueError, match=f"image file {path} has size"):
        ds[0]


# ----------------------------------------------------------------------------- read_image
@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_read_image_refuses_bad_files_with_a_value_error(tmp_path, name):
    path = tmp_path / f"{name}.png"
    path.write_bytes(BAD_IMAGES[name])
    with pytest.raises(ValueError, match=f"image file {path}"):
        read_image(path)


@pytest.mark.parametrize("name", ["huge_png", "huge_png_under_opencv_limit", "huge_bmp"])
def test_huge_headers_are_refused_before_decoding(tmp_path, name):
    path = tmp_path / f"{name}.img"
    path.write_bytes(BAD_IMAGES[name])
    with pytest.raises(ValueError, match="PYDETECT_MAX_IMAGE_PIXELS"):
        read_image(path)


def test_the_pixel_cap_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    path.write_bytes(good_png())
    assert read_image(path).shape == (32, 40, 3)
    monkeypatch.setenv("PYDETECT_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ValueError, match="40x32 pixels exceeds the limit of 1000 pixels"):
        read_image(path)
    monkeypatch.setenv("PYDETECT_MAX_IMAGE_PIXELS", "many")
    with pytest.raises(ValueError, match="PYDETECT_MAX_IMAGE_PIXELS must be a positive integer"):
        read_image(path)


def test_read_image_of_a_directory(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        read_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_image(tmp_path / "missing.png")


# ----------------------------------------------------------------------------- transforms
NO_OBJECTS = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}


def test_resize_to_sizes_opencv_cannot_make():
    with pytest.raises(ValueError, match="size of 1099511627776x1099511627776 pixels exceeds"):
        T.Resize(size=(2**40, 2**40))
    with pytest.raises(ValueError, match="size height must be <="):
        T.Resize(size=(10**30, 5))
    with pytest.raises(ValueError, match="the resized 10x10 image of .* pixels exceeds"):
        T.Resize(min_size=10**9)(IMG, NO_OBJECTS)
    with pytest.raises(ValueError, match="image must not be empty"):
        T.Resize(size=(4, 4))(np.zeros((0, 5, 3), np.uint8), NO_OBJECTS)
    assert T.Resize(size=6)(IMG, NO_OBJECTS)[0].shape == (6, 6, 3)  # an int is a square size


def test_transform_parameters():
    with pytest.raises(ValueError, match="min_scale must be finite"):
        T.RandomCrop(min_scale=HUGE)
    with pytest.raises(TypeError, match="^seed must be an integer"):
        T.RandomHorizontalFlip(seed="a")
    with pytest.raises(ValueError, match="^seed must be >= 0"):
        T.RandomHorizontalFlip(seed=-1)
    with pytest.raises(TypeError, match=r"transforms\[0\] must be callable"):
        T.Compose([5])


# ----------------------------------------------------------------------------- built-in datasets
def test_builtin_datasets_refuse_absurd_sizes_instead_of_hanging():
    run_isolated("""
        import pytest
        from pydetect import data
        for make in (data.digits_in_clutter, data.faces_in_clutter):
            for n in (10**30, 2**63, 10**6):
                with pytest.raises(ValueError, match="n_images must be <= 100000"):
                    make("test", n_images=n)
            with pytest.raises(ValueError, match="seed must be <="):
                make("test", n_images=1, seed=2**64)
    """, timeout=120)


# ----------------------------------------------------------------------------- eval
def test_eval_arguments():
    ds = DetectionDataset([IMG, IMG], [TGT, TGT], ["a"])
    with pytest.raises(TypeError, match="recall must hold real numbers"):
        voc_ap(["a"], [1.0])
    with pytest.raises(ValueError, match="precision must be finite"):
        voc_ap([0.5], [float("nan")])
    with pytest.raises(ValueError, match="iou_thresholds must not be empty"):
        proposal_recall([np.zeros((0, 4))] * 2, ds, iou_thresholds=[])
    with pytest.raises(TypeError, match="proposals must be a list"):
        proposal_recall(None, ds)
    with pytest.raises(TypeError, match="dataset must be a DetectionDataset"):
        voc_evaluate(None, [])
    with pytest.raises(TypeError, match="detections must be a list of Detections"):
        voc_evaluate(ds, None)
    with pytest.raises(ValueError, match="image_ids"):  # the ids are refused where they are given
        coco_evaluate(DetectionDataset([IMG], [TGT], ["a"], image_ids=[2**63]), [Detections()])


# ----------------------------------------------------------------------------- viz
def test_draw_detections_arguments():
    from pydetect import viz

    d = Detections([[1, 1, 5, 5]], labels=[1])
    with pytest.raises(TypeError, match="thickness must be an integer"):
        viz.draw_detections(IMG, d, thickness=1.5)
    with pytest.raises(ValueError, match="thickness must be <= 32767"):
        viz.draw_detections(IMG, d, thickness=10**9)
    with pytest.raises(ValueError, match="labels must lie in \\[0, 1\\) to index class_names"):
        viz.draw_detections(IMG, d, ["a"])
    with pytest.raises(ValueError, match="labels must lie in"):
        viz.draw_detections(IMG, Detections([[1, 1, 5, 5]], labels=[-1]), ["a", "b"])
    with pytest.raises(ValueError, match="'labels' entry"):
        viz.draw_detections(IMG, {"boxes": [[1, 1, 5, 5]]})
    with pytest.raises(ValueError, match=r"detections\['boxes'\] must be finite"):
        viz.draw_detections(IMG, {"boxes": [[1, 1, float("nan"), 5]], "labels": [0]})
    with pytest.raises(TypeError, match="detections must be a Detections"):
        viz.draw_detections(IMG, None)
    with pytest.raises(TypeError, match="score_threshold"):
        viz.draw_detections(IMG, d, score_threshold="a")
    with pytest.raises(ValueError, match="label must be"):
        viz.class_color(HUGE)


def test_boxes_far_outside_draw_like_boxes_just_outside():
    from pydetect import viz

    img = np.full((30, 40, 3), 90, np.uint8)
    for far, near in [([2, 3, 1e30, 1e30], [2, 3, 60, 50]), ([-3e9, -3e9, 20, 25], [-100, -100, 20, 25])]:
        drawn = viz.draw_detections(img, Detections([far], scores=[0.8]))
        expected = viz.draw_detections(img, Detections([near], scores=[0.8]))
        np.testing.assert_array_equal(drawn, expected)
        assert (drawn != img).any()


def test_plot_pr_dpi(tmp_path):
    from pydetect import viz

    for dpi, error in [(10**9, ValueError), (0, ValueError), (float("nan"), TypeError)]:
        with pytest.raises(error, match="dpi"):
            viz.plot_pr({}, tmp_path / "pr.png", dpi=dpi)


# ----------------------------------------------------------------------------- COCO files
def _gt(**changes) -> dict:
    gt = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 20}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}],
          "categories": [{"id": 3, "name": "cat"}]}
    for key, (index, field, value) in changes.items():
        gt[key][index][field] = value
    return gt


def _result(**changes) -> dict:
    return {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.9, **changes}


@pytest.mark.parametrize("changes, fragment", [
    (dict(score="abc"), r"\['score'\] must be a finite number, got 'abc'"),
    (dict(score="0.5"), r"\['score'\] must be a finite number, got '0.5'"),
    (dict(score=True), r"\['score'\] must be a finite number, got True"),
    (dict(score=None), r"\['score'\] must be a finite number, got None"),
    (dict(bbox=["1", 1, 5, 5]), r"\['bbox'\] must be a list \[x, y, w, h\] of 4 finite numbers"),
    (dict(bbox=[1, 1, True, 5]), r"\['bbox'\] must be a list"),
    (dict(image_id=2**63), r"\['image_id'\] must be an integer in \[0, 2\*\*63\)"),
    (dict(category_id=-3), r"\['category_id'\] must be an integer in \[0, 2\*\*63\)"),
    (dict(image_id=1.0), r"\['image_id'\] must be an integer"),
    (dict(image_id=7), r"\['image_id'\] = 7 is not an image of the ground truth"),
    (dict(category_id=4), r"\['category_id'\] = 4 is not a category of the ground truth"),
])
def test_coco_results_file_fields(tmp_path, changes, fragment):
    (tmp_path / "gt.json").write_text(json.dumps(_gt()))
    (tmp_path / "results.json").write_text(json.dumps([_result(), _result(**changes)]))
    with pytest.raises(ValueError, match=r"results.json: \[1\]" + fragment):
        coco_evaluate(str(tmp_path / "gt.json"), str(tmp_path / "results.json"))


def test_coco_results_nan_score_from_a_file(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(_gt()))
    (tmp_path / "results.json").write_text('[{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], '
                                           '"score": NaN}]')
    with pytest.raises(ValueError, match=r"results.json: \[0\]\['score'\] must be a finite number, got nan"):
        coco_evaluate(str(tmp_path / "gt.json"), str(tmp_path / "results.json"))


@pytest.mark.parametrize("changes, fragment", [
    (dict(images=(0, "id", 2**63)),
     r"images\[0\]\['id'\] must be an integer in \[0, 2\*\*63\), got 9223372036854775808"),
    (dict(images=(0, "id", -1)), r"images\[0\]\['id'\] must be an integer in \[0, 2\*\*63\)"),
    (dict(images=(0, "width", 2**64)), r"images\[0\]\['width'\] must be a positive integer"),
    (dict(categories=(0, "id", -3)), r"categories\[0\]\['id'\] must be an integer in \[0, 2\*\*63\)"),
    (dict(annotations=(0, "id", -5)), r"annotations\[0\]\['id'\] must be an integer in \[0, 2\*\*63\)"),
    (dict(annotations=(0, "image_id", 2**63)), r"annotations\[0\]\['image_id'\] must be an integer"),
    (dict(annotations=(0, "difficult", "yes")), r"annotations\[0\]\['difficult'\] must be 0 or 1"),
])
def test_coco_ground_truth_file_ids(tmp_path, changes, fragment):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_gt(**changes)))
    with pytest.raises(ValueError, match=f"gt.json: {fragment}"):
        load_coco(path)
    with pytest.raises(ValueError, match=f"gt.json: {fragment}"):
        coco_evaluate(str(path), [])


@pytest.mark.parametrize("text, fragment", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"images": [{"id": ' + "9" * 5000 + "}]}", "not valid JSON"),
])
def test_coco_json_that_python_cannot_parse(tmp_path, text, fragment):
    path = tmp_path / "gt.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"gt.json: .*{fragment}"):
        load_coco(path)


def test_save_coco_needs_a_dataset(tmp_path):
    with pytest.raises(TypeError, match="dataset must be a DetectionDataset"):
        save_coco(None, tmp_path / "gt.json")


@pytest.mark.parametrize("field, text, fragment", [
    ("xmin", "nan", "<xmin> must be a finite number, got 'nan'"),
    ("xmax", "inf", "<xmax> must be a finite number, got 'inf'"),
    ("height", "inf", "<height> must be a finite number, got 'inf'"),
    ("height", "1e300", "<size> of 20x1000000.* pixels is not an image size"),
])
def test_voc_numbers_name_the_file(tmp_path, field, text, fragment):
    values = {"height": "20", "width": "20", "xmin": "2", "ymin": "2", "xmax": "9", "ymax": "9", field: text}
    xml = ("<annotation><filename>1.jpg</filename><size><width>{width}</width><height>{height}</height></size>"
           "<object><name>cat</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
           "<ymax>{ymax}</ymax></bndbox></object></annotation>").format(**values)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations" / "1.xml").write_text(xml)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("1\n")
    with pytest.raises(ValueError, match=f"1.xml: .*{fragment}"):
        load_voc(tmp_path, "train", class_names=["cat"])


# ----------------------------------------------------------------------------- detectors
@pytest.fixture(scope="module")
def tiny_data():
    from pydetect.data import digits_in_clutter

    return digits_in_clutter("train", n_images=1, seed=0)


# Cheap budgets: before the checks existed, these fits ran to the end (or failed deep inside).
CHEAP = dict(pretrain=None, max_iter=1, batch_size=1, progress=False)


@pytest.mark.parametrize("cls_name, params, error, fragment", [
    ("FasterRCNN", dict(lr=float("nan")), ValueError, "lr must be finite"),
    ("FasterRCNN", dict(seed=-1), ValueError, "seed must be >= 0"),
    ("FasterRCNN", dict(train_seconds=0), ValueError, "train_seconds must be > 0"),
    ("FasterRCNN", dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    ("FasterRCNN", dict(detections_per_img=0), ValueError, "detections_per_img must be >= 1"),
    ("FasterRCNN", dict(box_nms_thresh=float("inf")), ValueError, "box_nms_thresh must be finite"),
    ("FasterRCNN", dict(representation_size=10**9), ValueError, "representation_size must be <="),
    ("FasterRCNN", dict(anchor_sizes=(32, 0)), ValueError, r"anchor_sizes\[1\] must be > 0"),
    ("FasterRCNN", dict(aspect_ratios=5), TypeError, "aspect_ratios must be None or a non-empty sequence"),
    ("FasterRCNN", dict(rpn_pre_nms_top_n=5), ValueError, "rpn_pre_nms_top_n must be a pair"),
    ("FasterRCNN", dict(rpn_post_nms_top_n=(10, 0)), ValueError, r"rpn_post_nms_top_n \(testing\) must be >= 1"),
    ("FasterRCNN", dict(scale_jitter=(0.5, HUGE)), ValueError, "scale_jitter hi must be finite"),
    ("FasterRCNN", dict(scale_jitter=(0.5, 1e6)), ValueError, "scale_jitter must satisfy"),
    ("FastRCNN", dict(proposal_mode="best"), ValueError, "proposal_mode must be one of"),
    ("FastRCNN", dict(train_proposals=0), ValueError, "train_proposals must be >= 1"),
    ("RCNN", dict(crop_size=10**5), ValueError, "crop_size must be <= 1024"),
    ("RCNN", dict(svm_C=float("nan")), ValueError, "svm_C must be finite"),
    ("RCNN", dict(score_thresh="low"), TypeError, "score_thresh must be a real number"),
])
def test_cnn_detector_parameters_are_checked_before_training(tiny_data, cls_name, params, error, fragment):
    from pydetect import detectors

    cls = getattr(detectors, cls_name)
    cheap = {k: v for k, v in CHEAP.items() if k in cls._param_defaults()}
    with pytest.raises(error, match=fragment):
        cls(**{**cheap, **params}).fit(tiny_data)


def test_num_threads_is_checked_before_torch_sees_it(tiny_data):
    # torch.set_num_threads(10**6) followed by work segfaults: isolated in case the check regresses.
    run_isolated("""
        import pytest
        from pydetect.data import digits_in_clutter
        from pydetect.detectors import FasterRCNN
        data = digits_in_clutter("train", n_images=1, seed=0)
        with pytest.raises(ValueError, match="num_threads must be <= 1024"):
            FasterRCNN(pretrain=None, max_iter=1, progress=False, num_threads=10**6).fit(data)
    """)


def test_predict_batch_size(tiny_data):
    from pydetect.detectors import FasterRCNN

    det = FasterRCNN(**CHEAP, rpn_pre_nms_top_n=(50, 50), rpn_post_nms_top_n=(10, 10)).fit(tiny_data)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        det.predict_batch([tiny_data[0][0]], batch_size=0)


@pytest.mark.parametrize("params, error, fragment", [
    (dict(scale_factor=float("nan")), ValueError, "scale_factor must be finite"),
    (dict(scale_factor=1.0), ValueError, "scale_factor must be > 1"),
    (dict(min_neighbors=-1), ValueError, "min_neighbors must be >= 0"),
    (dict(min_size="x"), TypeError, "min_size must be None, an int or a"),
    (dict(time_limit=HUGE), ValueError, "time_limit must be finite"),
])
def test_viola_jones_parameters_are_checked_in_fit(tiny_data, params, error, fragment):
    from pydetect.detectors import ViolaJonesDetector

    with pytest.raises(error, match=fragment):
        ViolaJonesDetector(num_stages=1, progress=False, **params).fit(tiny_data, class_name="0")


@pytest.mark.parametrize("params, error, fragment", [
    (dict(upscale=1e308), ValueError, "upscaled by 1e\\+308 .* exceeds the limit"),
    (dict(dense_scales=5), TypeError, "dense_scales must be a non-empty sequence"),
    (dict(cluster_threshold=2.0), ValueError, "cluster_threshold must be <= 1 with descriptor='patch'"),
])
def test_ism_parameters(tiny_data, params, error, fragment):
    from pydetect.detectors import ImplicitShapeModel

    with pytest.raises(error, match=fragment):
        ImplicitShapeModel(progress=False, **params).fit(tiny_data, class_name="0")


# ----------------------------------------------------------------------------- CLI
def run_cli(args, cwd, env, timeout=120):
    done = subprocess.run([sys.executable, "-m", "pydetect", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
    return done.returncode, done.stderr


def assert_one_line_error(code, err, fragment=""):
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pydetect: error: "), err
    assert fragment in lines[0], err


@pytest.fixture
def bad_files(tmp_path):
    for name, data in BAD_IMAGES.items():
        (tmp_path / f"{name}.png").write_bytes(data)
    (tmp_path / "huge_bmp.png").rename(tmp_path / "huge.bmp")
    (tmp_path / "folder.png").mkdir()
    return tmp_path


def test_cli_detect_bad_images(bad_files, subprocess_env):
    xml = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    for name in [*(f"{n}.png" for n in BAD_IMAGES if n != "huge_bmp"), "huge.bmp", "missing.png", "folder.png"]:
        code, err = run_cli(["detect", "--cascade", xml, name, "--out", "out"], bad_files, subprocess_env)
        assert_one_line_error(code, err, name)
        assert code == 2


def test_cli_detect_crafted_model_files(tmp_path, subprocess_env):
    (tmp_path / "x.png").write_bytes(good_png())
    models = {
        "empty.pkl": b"",
        "garbage.pkl": b"not a model",
        # Unpickling calls divmod(1, 0): a ZeroDivisionError from inside the loader.
        "crafted.pkl": b"cbuiltins\ndivmod\n(I1\nI0\ntR.",
    }
    for name, data in models.items():
        (tmp_path / name).write_bytes(data)
        code, err = run_cli(["detect", "--model", name, "x.png", "--out", "out"], tmp_path, subprocess_env)
        assert_one_line_error(code, err)


def test_cli_eval_bad_json(tmp_path, subprocess_env):
    (tmp_path / "gt.json").write_text(json.dumps(_gt()))
    files = {"malformed.json": "{not json", "empty.json": "", "deep.json": "[" * 100_000 + "]" * 100_000,
             "big_id.json": json.dumps([_result(image_id=2**64)])}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        code, err = run_cli(["eval", "--gt", "gt.json", "--results", name], tmp_path, subprocess_env)
        assert_one_line_error(code, err, name)
    code, err = run_cli(["eval", "--gt", "missing.json", "--results", "gt.json"], tmp_path, subprocess_env)
    assert_one_line_error(code, err, "missing.json")


def test_cli_train_on_corrupt_images(bad_files, subprocess_env):
    images = [{"id": i, "file_name": "truncated.png", "height": 32, "width": 40} for i in (1, 2, 3)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 20, 20]} for i in (1, 2, 3)]
    (bad_files / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                   "categories": [{"id": 1, "name": "a"}]}))
    code, err = run_cli(["train", "viola_jones", "--dataset", "gt.json", "--out", "m.pkl", "--no-progress",
                         "--set", "num_stages=1"], bad_files, subprocess_env)
    assert_one_line_error(code, err, "truncated.png")


@pytest.mark.parametrize("args, fragment", [
    (["export-dataset", "digits", "--n-images", 10**30, "--out", "x"], "n_images must be <= 100000"),
    (["export-dataset", "digits", "--n-images", 2, "--out", "plain_file"], "plain_file"),
    (["bench", "detectors", "--n-eval", -1], "n_eval must be >= 1"),
    (["bench", "detectors", "--dataset", "missing.json"], "missing.json"),
    (["train", "faster_rcnn", "--set", "lr=-1", "--n-train", 2, "--n-eval", 2, "--out", "m.pkl"], "lr must be > 0"),
    (["--threads", 10**6, "eval", "--gt", "a", "--results", "b"], "--threads must be <= 1024"),
    (["detect", "--cascade", "plain_file", "x.png", "--out", "o"], "plain_file"),
    (["detect", "--cascade", "a.xml", "x.png", "--out", "o", "--score-threshold", "nan"], "--score-threshold"),
])
def test_cli_bad_arguments_are_one_line(tmp_path, subprocess_env, args, fragment):
    (tmp_path / "plain_file").write_text("not a directory, not XML")
    code, err = run_cli(args, tmp_path, subprocess_env)
    assert_one_line_error(code, err, fragment)


def test_cli_traceback_switch(tmp_path, subprocess_env):
    (tmp_path / "empty.png").write_bytes(b"")
    xml = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    code, err = run_cli(["--traceback", "detect", "--cascade", xml, "empty.png", "--out", "o"], tmp_path,
                        subprocess_env)
    assert code != 0 and "Traceback" in err and "ValueError" in err and "empty.png: it is empty" in err
    help_text = subprocess.run([sys.executable, "-m", "pydetect", "--help"], capture_output=True, text=True,
                               cwd=tmp_path, env=subprocess_env).stdout
    assert "--traceback" in help_text and "PYDETECT_MAX_IMAGE_PIXELS" in help_text


@pytest.mark.parametrize("name, value, error", [
    ("num_pos", float("inf"), TypeError), ("num_pos", float("nan"), TypeError), ("num_pos", "x", TypeError),
    ("num_pos", 0, ValueError), ("num_neg", 10**30, ValueError), ("max_features", float("inf"), TypeError),
    ("max_features", -1, ValueError), ("max_features", "x", TypeError), ("weight_trim_rate", float("nan"), ValueError),
    ("time_limit", -1.0, ValueError), ("acceptance_ratio_break_value", 2.0, ValueError),
])
def test_train_cascade_counts_and_limits_are_checked_first(name, value, error):
    # Each used to reach int() (OverflowError for inf) or numpy (a message without the name).
    from pydetect.cascade import train_cascade

    rng = np.random.default_rng(0)
    pos = rng.integers(0, 256, (8, 24, 24), dtype=np.uint8)
    bgs = [rng.integers(0, 256, (64, 64), dtype=np.uint8)]
    with pytest.raises(error, match=name):
        train_cascade(pos, bgs, num_stages=1, **{name: value})
