"""Cascade model and OpenCV XML reading/writing."""

import glob
import os

import numpy as np
import pytest

import _reference_cascade as ref
from pydetect.cascade import Cascade, CascadeDetector, HaarFeature, LBPFeature, Stage, WeakTree

cv2 = pytest.importorskip("cv2", reason="the cascades under test ship with OpenCV")
skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the LBP cascade")

HAAR_FILES = sorted(glob.glob(os.path.join(cv2.data.haarcascades, "*.xml")))
ARRAYS = ("stage_threshold", "stage_num_weak", "weak_num_nodes", "node_left", "node_right",
          "node_feature", "node_threshold", "node_subset", "leaves", "rects", "weights",
          "tilted")


def lbp_path():
    return skdata.lbp_frontal_face_cascade_filename()


def fixed_lbp_copy(tmp_path):
    """scikit-image's LBP file with its <featuhreParams> typo fixed, which cv2 needs."""
    p = tmp_path / "lbp_fixed.xml"
    p.write_text(open(lbp_path()).read().replace("featuhreParams", "featureParams"))
    return str(p)


def small_gray():
    img = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(img, (200, 200), interpolation=cv2.INTER_AREA)


def assert_same_cascade(a, b):
    assert a.feature_type == b.feature_type and a.window_size == b.window_size
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_load_frontalface_default_structure():
    c = Cascade.load(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    assert c.feature_type == "HAAR" and c.window_size == (24, 24)
    assert c.num_stages == 25 and c.stage_num_weak[0] == 9 and c.stage_num_weak.sum() == 2913
    assert c.num_features == 2913 and c.max_nodes_per_tree == 1
    # first stump of the file: "0 -1 0 -3.1511999666690826e-02", leaves 2.0875... -2.2172...
    st = c.stages[0]
    assert np.isclose(st.threshold, -5.0425500869750977)
    t = st.weak[0]
    assert (t.left[0], t.right[0], t.feature[0]) == (0, -1, 0)
    assert t.threshold[0] == np.float32(-3.1511999666690826e-02)
    np.testing.assert_array_equal(t.leaves, np.float32([2.0875380039215088, -2.2172100543975830]))
    f = c.features[0]
    np.testing.assert_array_equal(f.rects, [[6, 4, 12, 9], [6, 7, 12, 3]])
    np.testing.assert_array_equal(f.weights, [-1, 3])
    assert not f.tilted
    assert "stages=25" in repr(c)


def test_load_lbp_structure():
    c = Cascade.load(lbp_path())
    assert c.feature_type == "LBP" and c.window_size == (24, 24) and c.num_stages == 20
    assert c.node_subset.shape == (c.node_left.shape[0], 8)
    assert isinstance(c.features[0], LBPFeature) and len(c.features[0].rect) == 4


def test_tilted_and_tree_cascades_are_read():
    alt = Cascade.load(os.path.join(cv2.data.haarcascades, "haarcascade_upperbody.xml"))
    assert alt.tilted.any()
    tree = Cascade.load(os.path.join(cv2.data.haarcascades,
                                     "haarcascade_eye_tree_eyeglasses.xml"))
    assert tree.max_nodes_per_tree > 1
    # every tree has nodes + 1 leaves and its children point inside it
    for st in tree.stages:
        for t in st.weak:
            assert len(t.leaves) == len(t.left) + 1
            assert all(-len(t.left) <= v < len(t.left) for v in np.r_[t.left, t.right])


@pytest.mark.parametrize("path", HAAR_FILES + [None], ids=lambda p: os.path.basename(p) if p else "lbp")
def test_save_roundtrip_and_cv2_loads_it(tmp_path, path):
    path = path or lbp_path()
    c = Cascade.load(path)
    out = tmp_path / "saved.xml"
    c.save(out)
    assert_same_cascade(c, Cascade.load(out))
    # cv2 reads the saved file and detects exactly what it detects with the original
    original = path if "featuhre" not in open(path).read() else fixed_lbp_copy(tmp_path)
    img = small_gray()
    a = cv2.CascadeClassifier(original).detectMultiScale(img, 1.1, 0)
    b = cv2.CascadeClassifier(str(out)).detectMultiScale(img, 1.1, 0)
    assert not cv2.CascadeClassifier(str(out)).empty()
    np.testing.assert_array_equal(np.sort(np.asarray(a).reshape(-1, 4), 0),
                                  np.sort(np.asarray(b).reshape(-1, 4), 0))


@pytest.mark.parametrize("name", ["haarcascade_eye_tree_eyeglasses.xml",  # trees, tilted
                                  "haarcascade_frontalface_alt2.xml"])  # 2-node trees
def test_old_format_with_trees(tmp_path, name):
    """The old opencv-haar-classifier layout (inline leaves, left_node/right_node) gives the
    same model, and the same detections as cv2 loading that old file."""
    c = Cascade.load(os.path.join(cv2.data.haarcascades, name))
    old = tmp_path / "old.xml"
    ref.write_old_format(c, old)
    c_old = Cascade.load(old)
    assert_same_cascade(c, c_old)
    img = small_gray()
    got = CascadeDetector(c_old).detect(img, 1.1, 0).boxes.astype(int)
    want = np.asarray(cv2.CascadeClassifier(str(old)).detectMultiScale(img, 1.1, 0)).reshape(-1, 4)
    want = want.copy()
    want[:, 2:] += want[:, :2]
    np.testing.assert_array_equal(np.sort(got, 0), np.sort(want, 0))


def test_shipped_old_format_file():
    c = Cascade.load(os.path.join(cv2.data.haarcascades,
                                  "haarcascade_license_plate_rus_16stages.xml"))
    assert c.window_size == tuple(cv2.CascadeClassifier(os.path.join(
        cv2.data.haarcascades, "haarcascade_license_plate_rus_16stages.xml")).getOriginalWindowSize())


def test_from_lists_hand_built(tmp_path):
    feats = [HaarFeature(np.array([[0, 0, 4, 2], [0, 2, 4, 2]]), np.array([-1.0, 1.0]))]
    tree = WeakTree(np.array([0]), np.array([-1]), np.array([0]), np.array([0.0], np.float32),
                    np.zeros((0, 8), np.int32), np.array([-1.0, 1.0], np.float32))
    c = Cascade.from_lists("HAAR", (4, 4), [Stage(0.5, [tree])], feats)
    c.save(tmp_path / "c.xml")
    assert_same_cascade(c, Cascade.load(tmp_path / "c.xml"))
    assert not cv2.CascadeClassifier(str(tmp_path / "c.xml")).empty()


BAD = {
    "not_xml": ("this is not xml <", "not a readable XML"),
    "no_cascade": ("<opencv_storage><foo>1</foo></opencv_storage>", "neither"),
    "hog": ("<opencv_storage><cascade><stageType>BOOST</stageType><featureType>HOG"
            "</featureType></cascade></opencv_storage>", "HOG"),
    "stage_type": ("<opencv_storage><cascade><stageType>TREE</stageType><featureType>HAAR"
                   "</featureType></cascade></opencv_storage>", "stageType"),
    "feature_type": ("<opencv_storage><cascade><stageType>BOOST</stageType><featureType>SURF"
                     "</featureType></cascade></opencv_storage>", "featureType"),
    "missing_stages": ("<opencv_storage><cascade><stageType>BOOST</stageType><featureType>HAAR"
                       "</featureType><width>4</width><height>4</height><featureParams>"
                       "<maxCatCount>0</maxCatCount></featureParams></cascade></opencv_storage>",
                       "stages"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_raise_value_error_naming_file(tmp_path, case):
    text, reason = BAD[case]
    p = tmp_path / f"{case}.xml"
    p.write_text(text)
    with pytest.raises(ValueError, match=reason) as info:
        Cascade.load(p)
    assert str(p) in str(info.value)


def test_out_of_window_feature_rejected(tmp_path):
    src = open(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")).read()
    p = tmp_path / "bad.xml"
    p.write_text(src.replace("6 4 12 9 -1.", "16 4 12 9 -1.", 1))
    with pytest.raises(ValueError, match="does not fit"):
        Cascade.load(p)
    p.write_text(src.replace("0 -1 0 -3.1511999666690826e-02", "0 -1 99999 -3.15e-02", 1))
    with pytest.raises(ValueError, match="feature index"):
        Cascade.load(p)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        Cascade.load("/nonexistent/cascade.xml")
