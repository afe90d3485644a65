"""CascadeDetector against cv2.CascadeClassifier.detectMultiScale (exact parity) and a
plain-numpy window evaluator."""

import glob
import os

import numpy as np
import pytest

import _reference_cascade as ref
import pydetect
from pydetect.cascade import Cascade, CascadeDetector, group_rectangles, pyramid_scales

cv2 = pytest.importorskip("cv2", reason="OpenCV's CascadeClassifier is the peer")
skdata = pytest.importorskip("skimage.data", reason="test images and the LBP cascade")

HAAR_FILES = sorted(glob.glob(os.path.join(cv2.data.haarcascades, "*.xml")))
IMAGE_NAMES = ["astronaut", "chelsea", "coffee", "camera", "lfw_collage"]


def load_gray(name, max_side=None):
    img = ref.lfw_collage() if name == "lfw_collage" else getattr(skdata, name)()
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if max_side and max(img.shape) > max_side:
        f = max_side / max(img.shape)
        img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


@pytest.fixture(scope="module")
def lbp_file(tmp_path_factory):
    """scikit-image's LBP cascade with its <featuhreParams> typo fixed, for cv2."""
    p = tmp_path_factory.mktemp("lbp") / "lbpcascade_frontalface.xml"
    p.write_text(open(skdata.lbp_frontal_face_cascade_filename()).read()
                 .replace("featuhreParams", "featureParams"))
    return str(p)


def cv2_boxes(classifier, img, min_neighbors, **kw):
    r = np.asarray(classifier.detectMultiScale(img, 1.1, min_neighbors, **kw)).reshape(-1, 4)
    r = r.astype(np.int64)
    r[:, 2:] += r[:, :2]
    return r


def as_sorted(boxes):
    b = np.asarray(boxes).reshape(-1, 4).astype(np.int64)
    return b[np.lexsort(b.T[::-1])] if len(b) else b


def check_parity(path, images, cv2_path=None):
    det = CascadeDetector(path)
    cc = cv2.CascadeClassifier(cv2_path or path)
    assert not cc.empty()
    for name, img in images.items():
        for mn in (0, 3):
            got = det.detect(img, 1.1, mn).boxes
            assert np.array_equal(got, np.rint(got)), "boxes are whole pixels"
            want = cv2_boxes(cc, img, mn)
            np.testing.assert_array_equal(as_sorted(got), as_sorted(want),
                                          err_msg=f"{os.path.basename(path)} {name} mn={mn}")


@pytest.fixture(scope="module")
def small_images():
    return {n: load_gray(n, max_side=220) for n in IMAGE_NAMES}


@pytest.mark.parametrize("path", HAAR_FILES, ids=os.path.basename)
def test_haar_parity_small(path, small_images):
    """Every Haar cascade OpenCV ships, on downscaled test images: identical boxes."""
    check_parity(path, small_images)


def test_lbp_parity_small(lbp_file, small_images):
    check_parity(skdata.lbp_frontal_face_cascade_filename(), small_images, cv2_path=lbp_file)


@pytest.mark.slow
@pytest.mark.parametrize("path", HAAR_FILES + [None], ids=lambda p: os.path.basename(p) if p else "lbp")
def test_parity_full_resolution(path, lbp_file):
    images = {n: load_gray(n) for n in IMAGE_NAMES}
    if path is None:
        check_parity(skdata.lbp_frontal_face_cascade_filename(), images, cv2_path=lbp_file)
    else:
        check_parity(path, images)


def test_parity_full_resolution_frontalface(small_images):
    """One full-size image in the default run (astronaut, 512 x 512)."""
    check_parity(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"),
                 {"astronaut": load_gray("astronaut")})


@pytest.mark.parametrize("name", ["haarcascade_frontalface_alt.xml", "haarcascade_smile.xml"])
def test_levels_match_detect_multiscale3(name):
    """return_levels gives detectMultiScale3's reject levels and stage sums; the scores
    are detectMultiScale2's neighbour counts."""
    path = os.path.join(cv2.data.haarcascades, name)
    img = load_gray("camera", 256)
    cc = cv2.CascadeClassifier(path)
    det = CascadeDetector(path)
    for mn in (0, 3):
        d = det.detect(img, 1.1, mn, return_levels=True)
        r, levels, weights = cc.detectMultiScale3(img, 1.1, mn, outputRejectLevels=True)
        r = np.asarray(r).reshape(-1, 4)
        got = {tuple(b): (int(l), float(w)) for b, l, w in
               zip(d.boxes.astype(int).tolist(), d.reject_levels, d.level_weights)}
        want = {(x, y, x + w, y + h): (int(l), float(wt)) for (x, y, w, h), l, wt in
                zip(r.tolist(), np.ravel(levels), np.ravel(weights))}
        assert got.keys() == want.keys()
        for k in got:
            assert got[k][0] == want[k][0]
            # stage sums: the same float leaves added in the same order
            assert got[k][1] == pytest.approx(want[k][1], rel=1e-12, abs=1e-12)
        r2, counts = cc.detectMultiScale2(img, 1.1, mn)
        want_n = {(x, y, x + w, y + h): int(n) for (x, y, w, h), n in
                  zip(np.asarray(r2).reshape(-1, 4).tolist(), np.ravel(counts))}
        assert {tuple(b): int(s) for b, s in zip(d.boxes.astype(int).tolist(), d.scores)} == want_n


def test_min_max_size_and_scale_factor():
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    img = load_gray("astronaut", 300)
    cc, det = cv2.CascadeClassifier(path), CascadeDetector(path)
    for kw in [dict(minSize=(40, 40)), dict(maxSize=(60, 60)), dict(minSize=(30, 30), maxSize=(30, 30)),
               dict(minSize=(31, 31), maxSize=(31, 31))]:
        mine = {"min_size": kw.get("minSize"), "max_size": kw.get("maxSize")}
        np.testing.assert_array_equal(as_sorted(det.detect(img, 1.1, 0, **mine).boxes),
                                      as_sorted(cv2_boxes(cc, img, 0, **kw)), err_msg=str(kw))
    for sf in (1.05, 1.3, 2.0):
        got = det.detect(img, sf, 1).boxes
        want = np.asarray(cc.detectMultiScale(img, sf, 1)).reshape(-1, 4).astype(int)
        want[:, 2:] += want[:, :2]
        np.testing.assert_array_equal(as_sorted(got), as_sorted(want), err_msg=str(sf))


def test_threads_give_identical_output():
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_alt2.xml")
    img = load_gray("astronaut", 300)
    det = CascadeDetector(path)
    n = pydetect.get_num_threads()
    try:
        pydetect.set_num_threads(1)
        a = det.detect(img, 1.1, 0, return_levels=True)
        pydetect.set_num_threads(2)
        b = det.detect(img, 1.1, 0, return_levels=True)
    finally:
        pydetect.set_num_threads(n)
    np.testing.assert_array_equal(a.boxes, b.boxes)  # same order too: (scale, y, x)
    np.testing.assert_array_equal(a.level_weights, b.level_weights)


def test_windows_match_plain_reference():
    """Every window of the first five pyramid levels: the engine's raw detections equal a plain numpy
    evaluation of OpenCV's rules (tilted features, trees and LBP included)."""
    g = load_gray("astronaut")
    eyes = cv2.resize(g[90:150, 180:290], None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    face = cv2.resize(g[30:210, 140:320], None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    for path, img in [
            (os.path.join(cv2.data.haarcascades, "haarcascade_eye_tree_eyeglasses.xml"), eyes),
            (os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_alt2.xml"), face),
            (skdata.lbp_frontal_face_cascade_filename(), face)]:
        c = Cascade.load(path)
        det = CascadeDetector(c)
        ww, wh = c.window_size
        got = det.detect(img, 1.1, 0, return_levels=True)
        got = {tuple(b): w for b, w in zip(got.boxes.astype(int).tolist(), got.level_weights)}
        scales = pyramid_scales(c.window_size, img.shape[::-1], 1.1)
        want = {}
        for s in scales[:5]:
            lw, lh = int(np.rint(np.float32(img.shape[1]) / s)), int(np.rint(np.float32(img.shape[0]) / s))
            lev = img if (lw, lh) == img.shape[::-1] else cv2.resize(
                img, (lw, lh), fx=1 / float(s), fy=1 / float(s), interpolation=cv2.INTER_LINEAR_EXACT)
            win = (int(np.rint(np.float32(ww) * s)), int(np.rint(np.float32(wh) * s)))
            step = 1 if s >= 2 else 2
            for y in range(0, lh + 1 - wh, step):
                x = 0
                while x < lw + 1 - ww:
                    res, total = ref.run_window(c, lev, x, y)
                    if res == 1:
                        x0, y0 = int(np.rint(np.float32(x) * s)), int(np.rint(np.float32(y) * s))
                        want[(x0, y0, x0 + win[0], y0 + win[1])] = total
                    x += 2 * step if res == 0 else step
        first = {k: v for k, v in got.items() if k[2] - k[0] in
                 {int(np.rint(np.float32(ww) * s)) for s in scales[:5]}}
        assert want, "the test needs windows that pass every stage"
        assert first.keys() == want.keys()
        for k in want:
            assert first[k] == pytest.approx(want[k], abs=1e-9)


@pytest.mark.parametrize("name", ["haarcascade_frontalface_default.xml", "haarcascade_eye_tree_eyeglasses.xml",
                                  "lbp"])
def test_accepts_and_accepted_windows_agree_with_opencv_and_the_reference(name):
    """`Cascade.accepts` (what training asks) and `accepted_windows` (the pixels training mines)
    say of each window what OpenCV's detectMultiScale and the plain numpy reference say."""
    path = (skdata.lbp_frontal_face_cascade_filename() if name == "lbp"
            else os.path.join(cv2.data.haarcascades, name))
    c = Cascade.load(path)
    det = CascadeDetector(c)
    g = load_gray("astronaut")
    if "eye" in name:
        g = cv2.resize(g[90:150, 180:290], None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    else:
        g = cv2.resize(g[30:210, 140:320], None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    ww, wh = c.window_size
    windows, boxes = det.accepted_windows(g, 1.1)
    assert len(windows) > 0, "the test needs accepted windows"
    raw = det.detect(g, 1.1, 0).boxes
    np.testing.assert_array_equal(as_sorted(boxes), as_sorted(raw))  # the same windows detect() finds
    assert c.accepts(windows).all()
    rng = np.random.default_rng(3)
    ys = rng.integers(0, g.shape[0] - wh + 1, 150)
    xs = rng.integers(0, g.shape[1] - ww + 1, 150)
    crops = np.concatenate([windows[:150], np.stack([g[y:y + wh, x:x + ww] for y, x in zip(ys, xs)])])
    got = c.accepts(crops)
    reference = np.array([ref.run_window(c, w, 0, 0)[0] == 1 for w in crops])
    np.testing.assert_array_equal(got, reference)
    if name != "lbp":  # cv2 reads the LBP file only with its typo fixed (lbp_file); the reference covers it
        cc = cv2.CascadeClassifier(path)
        peer = np.array([len(cv2_boxes(cc, np.ascontiguousarray(w), 0)) > 0 for w in crops])
        np.testing.assert_array_equal(got, peer)
    assert got.any() and (~got).any()


def test_accepts_rejects_bad_windows():
    c = Cascade.load(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    with pytest.raises(ValueError, match=r"windows must have shape \(N, 24, 24\)"):
        c.accepts(np.zeros((3, 20, 24), np.uint8))
    with pytest.raises(TypeError, match="windows must be uint8"):
        c.accepts(np.zeros((3, 24, 24), np.float32))
    assert c.accepts(np.zeros((0, 24, 24), np.uint8)).shape == (0,)
    assert not c.accepts(np.full((2, 24, 24), 128, np.uint8)).any()  # flat windows never pass


def test_group_rectangles_matches_cv2(rng):
    for _ in range(5):
        base = rng.integers(0, 200, (6, 2))
        rects = []
        for b in base:
            for _ in range(int(rng.integers(1, 8))):
                s = int(rng.integers(20, 60))
                rects.append([b[0] + int(rng.integers(-4, 5)), b[1] + int(rng.integers(-4, 5)), s, s])
        rects = np.array(rects, np.int32)
        for mn in (1, 2, 3):
            got, counts, _, _ = group_rectangles(rects, mn)
            want, wcounts = cv2.groupRectangles(rects.tolist(), mn, 0.2)
            want = np.asarray(want).reshape(-1, 4)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(counts, np.ravel(wcounts) if len(want) else counts)


def test_rgb_input_and_conversions():
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    rgb = skdata.astronaut()[::2, ::2].copy()
    det = CascadeDetector(path)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(det.detect(rgb).boxes, det.detect(gray).boxes)
    np.testing.assert_array_equal(det.detect(gray / 255.0).boxes, det.detect(gray).boxes)
    torch = pytest.importorskip("torch", reason="tensor input")
    np.testing.assert_array_equal(det.detect(torch.from_numpy(gray)).boxes, det.detect(gray).boxes)


def test_resize_linear_exact_matches_cv2():
    """detect() builds its pyramid levels with its own resize: bit-identical to cv2.resize
    with INTER_LINEAR_EXACT (the levels detectMultiScale scans and pyramid_levels returns) on
    random and smooth images of many sizes, pyramid sizes and arbitrary ones, exact factor 2
    (OpenCV's area shortcut) and 1-pixel sides included."""
    from pydetect.cascade.pyramid import level_sizes, pyramid_levels
    from pydetect.ops._cascade import resize_linear_exact

    rng = np.random.default_rng(3)
    cases = [((w, h), (dw, dh)) for w, h in [(1, 1), (1, 9), (9, 1), (2, 2), (3, 7), (640, 480)]
             for dw, dh in [(1, 1), (max(1, w // 2), max(1, h // 2)), (w, h)]]
    for _ in range(400):
        w, h = (int(v) for v in rng.integers(1, 90, 2))
        cases.append(((w, h), (int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1)))))
    for (w, h), (dw, dh) in cases:
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (5, 5), 2)
        np.testing.assert_array_equal(resize_linear_exact(img, dw, dh),
                                      cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR_EXACT),
                                      err_msg=f"{w}x{h} -> {dw}x{dh}")
    img = load_gray("astronaut")
    scales, levels = pyramid_levels(img, (24, 24), 1.1)
    for (dw, dh), level in zip(level_sizes(img.shape[::-1], scales), levels):
        np.testing.assert_array_equal(resize_linear_exact(img, dw, dh), level)
    with pytest.raises(ValueError, match="shape"):
        resize_linear_exact(np.zeros((2, 2, 2), np.uint8), 1, 1)
    with pytest.raises(ValueError, match="size"):
        resize_linear_exact(img, 0, 5)


def test_bad_input_and_edge_cases():
    det = CascadeDetector(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    img = load_gray("camera", 100)
    for sf in (1.0, 0.5, float("nan")):
        with pytest.raises(ValueError, match="scale_factor"):
            det.detect(img, scale_factor=sf)
    with pytest.raises(TypeError):
        det.detect(img.astype(bool))
    with pytest.raises(ValueError, match="shape"):
        det.detect(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(TypeError):
        det.detect(img, min_size="big")
    with pytest.raises(TypeError):
        CascadeDetector(42)
    small = det.detect(np.zeros((10, 30), np.uint8))
    assert len(small) == 0 and small.boxes.shape == (0, 4)
    flat = det.detect(np.full((100, 100), 77, np.uint8), min_neighbors=0)
    assert len(flat) == 0  # flat windows are rejected by the variance test


def test_example_script_writes_annotated_png(tmp_path):
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/cascade/ -> repo
    spec = importlib.util.spec_from_file_location(
        "detect_faces", os.path.join(root, "examples", "detect_faces.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "faces.png"
    assert mod.main(["astronaut", "-o", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (512, 512, 3)
    # the face box (177, 66)-(272, 161) is drawn in green
    assert tuple(img[100, 177]) == (0, 255, 0)
