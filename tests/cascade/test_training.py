"""Cascade training: stage targets, hard negatives, OpenCV export, resume, ViolaJonesDetector."""

import numpy as np
import pytest

from pydetect.cascade.haar_features import HaarFeatures
from pydetect.cascade.training import augment_positives, train_cascade

WIN = 16


def _pattern(rng, size=WIN):
    """A synthetic 'face': bright oval-ish square, two dark eyes, a dark mouth, noise."""
    img = np.full((size, size), rng.uniform(60, 110))
    img[2:-2, 2:-2] = rng.uniform(150, 200)
    e = size // 4
    img[e + 1:e + 3, e:e + 3] -= 90
    img[e + 1:e + 3, size - e - 3:size - e] -= 90
    img[size - e - 2:size - e, e + 1:size - e - 1] -= 70
    img += rng.normal(0, 8, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _clutter(rng, shape=(90, 120)):
    img = np.full(shape, rng.uniform(40, 200))
    for _ in range(25):
        y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(3, 30, size=2)
        img[y:y + h, x:x + w] = rng.uniform(0, 255)
    img += rng.normal(0, 12, shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _scene(rng, n_objects=2):
    import cv2

    img = _clutter(rng, (120, 160))
    for _ in range(n_objects):
        s = int(rng.integers(WIN, 40))
        y, x = int(rng.integers(0, 120 - s)), int(rng.integers(0, 160 - s))
        img[y:y + s, x:x + s] = cv2.resize(_pattern(rng), (s, s), interpolation=cv2.INTER_LINEAR)
    return img


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    pos = np.stack([_pattern(rng) for _ in range(150)])
    bgs = [_clutter(rng) for _ in range(40)]
    test_pos = np.stack([_pattern(rng) for _ in range(200)])
    test_neg = np.concatenate([_clutter(rng, (WIN, WIN))[None] for _ in range(400)])
    return pos, bgs, test_pos, test_neg


PARAMS = dict(num_stages=4, max_weak_count=15, num_pos=300, num_neg=300, max_features=3000,
              progress=False, random_state=0)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    pos, bgs, _, _ = data
    ckpt = tmp_path_factory.mktemp("ckpt")
    cascade, log = train_cascade(pos, bgs, checkpoint_dir=str(ckpt), return_log=True, **PARAMS)
    return cascade, log, ckpt


def test_stage_targets_and_generalisation(trained, data):
    cascade, log, _ = trained
    _, _, test_pos, test_neg = data
    assert cascade.num_stages == len(log) >= 2
    for rec in log:
        assert rec["hit_rate"] >= 0.995
        assert rec["false_alarm"] <= 0.5 or rec["weak"] == PARAMS["max_weak_count"]
        assert 0 < rec["acceptance_ratio"] <= 1
    # acceptance ratios of mined negatives fall stage after stage
    ratios = [r["acceptance_ratio"] for r in log]
    assert ratios[-1] < ratios[0]
    assert cascade.accepts(test_pos).mean() > 0.9
    flat = test_neg.reshape(len(test_neg), -1).std(1) <= 10
    assert cascade.accepts(test_neg[~flat]).mean() < 0.25


def test_export_runs_in_opencv_with_same_boxes(trained, tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV's CascadeClassifier must load the export")
    from pydetect.cascade import Cascade, CascadeDetector

    cascade, _, _ = trained
    path = str(tmp_path / "trained.xml")
    cascade.save(path)
    peer = cv2.CascadeClassifier(path)
    assert not peer.empty()
    ours = CascadeDetector(Cascade.load(path))
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(4):
        img = _scene(rng)
        for mn in (0, 3):
            a = np.asarray(ours.detect(img, scale_factor=1.1, min_neighbors=mn).boxes)
            b = peer.detectMultiScale(img, scaleFactor=1.1, minNeighbors=mn)
            b = np.zeros((0, 4)) if len(b) == 0 else np.asarray(b, np.float64)
            b[:, 2:] += b[:, :2]
            np.testing.assert_array_equal(np.sort(a, axis=0), np.sort(b, axis=0))
            found += len(a)
    assert found > 0


def test_detector_agrees_with_training_evaluation(trained, data):
    from pydetect.cascade import CascadeDetector

    cascade, _, _ = trained
    _, _, test_pos, test_neg = data
    windows = np.concatenate([test_pos, test_neg])  # flat windows included: both must reject them
    train_says = cascade.accepts(windows)
    det = CascadeDetector(cascade)
    detector_says = np.array([len(det.detect(w, min_neighbors=0)) > 0 for w in windows])
    assert train_says.any() and (~train_says).any()
    np.testing.assert_array_equal(train_says, detector_says)


def test_hard_negatives_are_windows_the_detector_accepts(trained, data):
    """Mining cuts the exact pixels the scan accepted: every mined window passes the cascade
    that mined it, and each is a window of a background at a pyramid level the detector scans."""
    from pydetect.cascade.training import _NegativeMiner

    _, bgs, _, _ = data
    cascade, _, _ = trained
    miner = _NegativeMiner(bgs, (WIN, WIN), 1.2, seed=0)
    neg, scanned, accepted = miner.hard_windows(cascade, 200, 50)
    assert 0 < len(neg) <= 200 and len(neg) <= accepted <= scanned
    assert cascade.accepts(neg).all()


def test_resume_continues_identically(trained, data):
    pos, bgs, _, _ = data
    cascade, _, ckpt = trained
    import shutil
    import tempfile

    from pydetect.cascade import Cascade

    with tempfile.TemporaryDirectory() as tmp:
        # keep only the first 2 stages of the checkpoint, then resume to the full count
        short = Cascade.load(str(ckpt / "cascade.xml")).first_stages(2)
        shutil.copy(ckpt / "training.json", tmp)
        short.save(f"{tmp}/cascade.xml")
        resumed = train_cascade(pos, bgs, checkpoint_dir=tmp, resume=True, **PARAMS)
    for name in ("stage_threshold", "stage_num_weak", "node_feature", "node_threshold", "leaves"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(cascade, name))


def test_resume_refuses_changed_parameters(trained, data):
    pos, bgs, _, _ = data
    _, _, ckpt = trained
    params = dict(PARAMS, max_features=2000)
    with pytest.raises(ValueError, match="max_features"):
        train_cascade(pos, bgs, checkpoint_dir=str(ckpt), resume=True, **params)


def test_time_limit_counts_across_resumes(data, tmp_path, monkeypatch):
    """Killed after its second stage and resumed, training stops where one uninterrupted run
    with the same time limit does, having recorded about that limit in all."""
    import json

    from pydetect.cascade import training as ct

    class FakeClock:  # each reading one second after the previous: a deterministic budget
        now = 0.0

        def perf_counter(self):
            self.now += 1.0
            return self.now

    monkeypatch.setattr(ct, "time", FakeClock())
    pos, bgs, _, _ = data
    params = dict(PARAMS, num_stages=20, time_limit=10)
    straight, log = train_cascade(pos, bgs, checkpoint_dir=str(tmp_path / "a"), return_log=True, **params)
    assert log.stop_reason == "time limit of 10 s reached" and straight.num_stages >= 3
    save = ct._save_checkpoint

    def save_then_die(directory, model, *args):
        save(directory, model, *args)
        if len(model.stages) == 2:
            raise KeyboardInterrupt("killed after the second stage's checkpoint")

    monkeypatch.setattr(ct, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_cascade(pos, bgs, checkpoint_dir=str(tmp_path / "b"), **params)
    monkeypatch.setattr(ct, "_save_checkpoint", save)
    resumed, log = train_cascade(pos, bgs, checkpoint_dir=str(tmp_path / "b"), resume=True, return_log=True,
                                 **params)
    assert log.stop_reason == "time limit of 10 s reached"
    assert resumed.num_stages == straight.num_stages
    recorded = json.loads((tmp_path / "b" / "training.json").read_text())["seconds"]
    assert recorded <= 10 + 4  # the last stage started within the limit and took a few readings


def test_augment_positives(data):
    pos = data[0][:10]
    out = augment_positives(pos, 50, seed=1)
    assert out.shape == (50, WIN, WIN) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:10], pos)
    np.testing.assert_array_equal(out[10:20], pos[:, :, ::-1])
    np.testing.assert_array_equal(out, augment_positives(pos, 50, seed=1))


def test_bad_input(data):
    pos, bgs, _, _ = data
    with pytest.raises(TypeError, match="uint8"):
        train_cascade(pos.astype(np.float32), bgs)
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        train_cascade(pos[0], bgs)
    with pytest.raises(ValueError, match="no background image"):
        train_cascade(pos, [])
    with pytest.raises(ValueError, match="no background image"):
        train_cascade(pos, [np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="max_false_alarm_rate"):
        train_cascade(pos, bgs, max_false_alarm_rate=1.0)
    with pytest.raises(ValueError, match="mode"):
        train_cascade(pos, bgs, mode="tilted")
    with pytest.raises(ValueError, match="deviation"):
        train_cascade(np.full((5, WIN, WIN), 100, np.uint8), bgs)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        train_cascade(pos, bgs, resume=True)


def test_flat_backgrounds_stop_with_a_message(data):
    pos = data[0]
    with pytest.raises(ValueError, match="no stage could be trained: the backgrounds yield only 0"):
        train_cascade(pos, [np.full((60, 60), 128, np.uint8)], progress=False, num_stages=2)


def test_feature_bank_from_cascade(trained):
    cascade, _, _ = trained
    w, h = cascade.window_size
    bank = HaarFeatures.from_arrays((h, w), cascade.rects, cascade.weights, cascade.tilted)
    assert len(bank) == cascade.num_features
    assert bank.compute(np.zeros((2, h, w), np.uint8)).shape == (2, cascade.num_features)


# ----------------------------------------------------------------------------- detector
def test_viola_jones_detector_small(tmp_path):
    data_mod = pytest.importorskip("pydetect.data")
    cv2 = pytest.importorskip("cv2")
    from pydetect.detectors.viola_jones import ViolaJonesDetector

    train = data_mod.faces_in_clutter("train", n_images=20)
    test = data_mod.faces_in_clutter("val", n_images=3)
    det = ViolaJonesDetector(num_stages=2, max_weak_count=8, num_pos=150, num_neg=150,
                             max_features=2000, progress=False)
    assert det.fit(train) is det
    assert det.cascade_.num_stages >= 1 and det.class_name_ == train.class_names[0]
    img = test[0][0]
    d = det.predict(img)
    assert d.boxes.shape[1] == 4 and (np.diff(d.scores) <= 0).all()
    path = tmp_path / "vj.pkl"
    det.save(path)
    again = ViolaJonesDetector.load(path)
    d2 = again.predict(img)
    np.testing.assert_array_equal(d.boxes, d2.boxes)
    np.testing.assert_array_equal(d.scores, d2.scores)
    xml = str(tmp_path / "vj.xml")
    det.cascade_.save(xml)
    assert not cv2.CascadeClassifier(xml).empty()
    with pytest.raises(ValueError, match="class_name"):
        ViolaJonesDetector().fit(train, class_name="cat")


# Measured on the val split: see benchmarks/RESULTS.md ("Learning checks").
VJ_FACES_FLOOR = 0.80


@pytest.mark.slow
def test_viola_jones_faces_ap50():
    data_mod = pytest.importorskip("pydetect.data")
    from pydetect import eval as pdeval
    from pydetect.detectors.viola_jones import ViolaJonesDetector

    det = ViolaJonesDetector(progress=False).fit(data_mod.faces_in_clutter("train"))
    val = data_mod.faces_in_clutter("val")
    dets = [det.predict(img) for img, _ in val]
    ap = pdeval.voc_evaluate(val, dets, iou_threshold=0.5)["mAP"]
    print(f"ViolaJonesDetector faces AP50 {ap:.3f}")
    assert ap >= VJ_FACES_FLOOR, f"AP50 {ap:.3f}"


def test_viola_jones_one_cascade_per_class_equals_single_class_fits():
    """A fit on several classes is the one-class fits side by side: same cascades, same boxes."""
    data_mod = pytest.importorskip("pydetect.data")
    from pydetect.detectors.viola_jones import ViolaJonesDetector

    full = data_mod.digits_in_clutter("train", n_images=16)
    keep = [0, 1, 3]  # three classes keep the test short; "2" has no box in these images
    images, targets = [], []
    for image, target in full:
        m = np.isin(target["labels"], keep)
        images.append(image)
        targets.append({"boxes": target["boxes"][m], "labels": target["labels"][m]})
    train = data_mod.DetectionDataset(images, targets, full.class_names[:4])
    params = dict(window=(24, 16), num_stages=1, max_weak_count=3, num_pos=40, num_neg=40,
                  max_features=300, augment=False, time_limit=None, progress=False)
    with pytest.warns(UserWarning, match="no training box for classes \\['2'\\]"):
        multi = ViolaJonesDetector(**params).fit(train)
    assert multi.labels_ == [0, 1, 3] and len(multi.cascades_) == 3
    assert not hasattr(multi, "cascade_")  # the one-class aliases are not set
    image = full[0][0]
    got = multi.predict(image)
    assert len(got) > 0 and set(got.labels.tolist()) <= set(keep)
    singles = [ViolaJonesDetector(**params).fit(train, class_name=str(k)).predict(image) for k in keep]
    for k, single in zip(keep, singles):
        mine = got[got.labels == k]
        assert len(mine) == len(single)
        np.testing.assert_array_equal(mine.sorted().boxes, single.sorted().boxes)
    assert (np.diff(got.scores) <= 0).all()


def test_viola_jones_from_cascade_is_the_cascade_detector(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from pydetect.cascade import Cascade, CascadeDetector
    from pydetect.detectors.viola_jones import ViolaJonesDetector
    from skimage import data as skdata

    xml = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    grey = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)
    det = ViolaJonesDetector.from_cascade(xml, class_name="face", min_neighbors=3)
    d = det.predict(grey)
    ref = CascadeDetector(Cascade.load(xml)).detect(grey, scale_factor=1.1, min_neighbors=3)
    np.testing.assert_array_equal(np.sort(d.boxes, axis=0), np.sort(np.asarray(ref.boxes, np.float32), axis=0))
    assert det.class_name_ == "face" and len(d) >= 1
    det.save(tmp_path / "face.pkl")
    np.testing.assert_array_equal(ViolaJonesDetector.load(tmp_path / "face.pkl").predict(grey).boxes, d.boxes)
