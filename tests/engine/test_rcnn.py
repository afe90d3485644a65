"""FasterRCNN estimator: input checks, persistence, checkpoints/resume, NaN guard, learning."""


import numpy as np
import pytest

torch = pytest.importorskip("torch")

import _reference_rcnn as ref  # noqa: E402
from _learning import CHECK_AUGMENT  # noqa: E402
from pydetect.data import DetectionDataset, digits_in_clutter  # noqa: E402
from pydetect.detectors import RCNN, FasterRCNN, NotFittedError, Pretraining  # noqa: E402
from pydetect import engine  # noqa: E402
from pydetect.engine import loop as training_loop  # noqa: E402
from pydetect.engine import pretrain as pretraining  # noqa: E402
from pydetect.engine.crops import _native_crop  # noqa: E402
from pydetect.models.anchors import fit_anchors  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_detector(**kw):
    params = dict(pretrain=None, max_iter=3, batch_size=1, progress=False, seed=0,
                  rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50))
    params.update(kw)
    return FasterRCNN(**params)


@pytest.fixture(scope="module")
def tiny_data():
    return digits_in_clutter("train", n_images=4, seed=3)


@pytest.fixture(scope="module")
def tiny_fitted(tiny_data):
    return tiny_detector().fit(tiny_data)


def test_bad_datasets():
    img = np.zeros((40, 40, 3), np.uint8)
    ds = DetectionDataset([img], [{"boxes": [[5, 5, 5, 20]], "labels": [0]}], ["a"])  # x2 == x1
    with pytest.raises(ValueError, match="x2 <= x1"):
        tiny_detector().fit(ds)
    with pytest.raises(ValueError, match="labels"):
        DetectionDataset([img], [{"boxes": [[5, 5, 9, 20]], "labels": [3]}], ["a"])
    with pytest.raises(TypeError, match="DetectionDataset"):
        tiny_detector().fit([(img, {"boxes": np.zeros((0, 4)), "labels": np.zeros(0)})])


def test_predict_checks(tiny_fitted):
    with pytest.raises(NotFittedError):
        tiny_detector().predict(np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        tiny_fitted.predict(np.zeros((30, 30, 4), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        tiny_fitted.predict(np.zeros((30, 30, 3), np.complex64))
    d = tiny_fitted.predict(np.zeros((30, 37), np.uint8))  # grey is accepted
    assert d.boxes.shape[1] == 4 and len(d) <= 100
    assert ((d.labels >= 0) & (d.labels < 10)).all()


def test_save_load_predicts_the_same(tiny_fitted, tiny_data, tmp_path):
    path = tmp_path / "frcnn.pkl"
    tiny_fitted.save(path)
    loaded = FasterRCNN.load(path)
    img = tiny_data[0][0]
    a, b = tiny_fitted.predict(img), loaded.predict(img)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert loaded.get_params() == tiny_fitted.get_params()


# ----------------------------------------------------------------------------- training loop
class ToyModel(torch.nn.Module):
    """A loss-dict model: least squares with a BN layer and a random draw per step."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.bn = torch.nn.BatchNorm1d(3)

    def forward(self, x, y):
        noise = torch.randn(len(x)) * 0.01  # uses torch's RNG: restored on resume
        return {"loss_mse": ((self.lin(self.bn(x)).squeeze(1) + noise - y) ** 2).mean()}


def toy_batches(fail_at=None, nan_at=None):
    def sample(it, rank, world, rng):
        if it == fail_at:
            raise KeyboardInterrupt("simulated interruption")
        x = torch.from_numpy(rng.normal(size=(8, 3))).float()
        y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
        if it == nan_at:
            y[0] = float("nan")
        return x, y
    return sample


def run_toy(tmp_path, **kw):
    torch.manual_seed(0)
    model = ToyModel()
    params = dict(max_iter=30, seconds=1e9, lr=0.1, seed=1, checkpoint_path=tmp_path / "toy.ckpt",
                  checkpoint_every=2)
    params.update(kw)
    sample = params.pop("sample", toy_batches())
    return model, engine.train_loop(model, sample, **params)


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_continues_exactly(tmp_path, ema_decay):
    straight, hist = run_toy(tmp_path / "a", ema_decay=ema_decay)
    assert hist["iterations"] == 30 and hist["resumed_from"] is None
    with pytest.raises(KeyboardInterrupt):
        run_toy(tmp_path / "b", sample=toy_batches(fail_at=17), ema_decay=ema_decay)
    state = torch.load(tmp_path / "b" / "toy.ckpt", weights_only=True)
    assert state["iteration"] == 16
    resumed, hist = run_toy(tmp_path / "b", ema_decay=ema_decay)
    assert hist["resumed_from"] == 16 and hist["iterations"] == 30
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)


class FakeClock:
    """Stands in for the ``time`` module of the code under test: each reading is one second
    after the previous one, so time budgets end at a deterministic point."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


def test_time_budget_counts_across_resumes(tmp_path, monkeypatch):
    """A run killed and resumed trains about as long in all as one uninterrupted run."""
    monkeypatch.setattr(training_loop, "time", FakeClock())
    _, straight = run_toy(tmp_path / "a", max_iter=1000, seconds=20)
    assert 5 < straight["iterations"] < 1000 and 20 <= straight["seconds"] <= 21  # the budget ended it
    with pytest.raises(KeyboardInterrupt):
        run_toy(tmp_path / "b", max_iter=1000, seconds=20, sample=toy_batches(fail_at=7))
    _, resumed = run_toy(tmp_path / "b", max_iter=1000, seconds=20)
    assert resumed["resumed_from"] == 6
    assert 20 <= resumed["seconds"] <= 22
    assert abs(resumed["iterations"] - straight["iterations"]) <= 1


class CountingBackbone(torch.nn.Module):
    """A one-conv backbone that counts its training forward passes (optimiser steps)."""

    out_channels = 4

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.steps = 0

    def forward(self, x):
        self.steps += self.training
        return {"0": self.conv(x)}


def test_pretraining_time_budget_counts_across_resumes(tmp_path, monkeypatch):
    """Crop pretraining checkpoints every epoch; killed after its second checkpoint and
    resumed, it takes about as many steps in all, in the same recorded time, as one run."""
    monkeypatch.setattr(pretraining, "time", FakeClock())
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (44, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 44)
    params = dict(seconds=30, max_epochs=100, batch_size=8, seed=0)

    def pretrain(path, backbone):
        return engine.pretrain_backbone(backbone, crops, labels, 3, checkpoint_path=path, **params)

    straight, reached = CountingBackbone(), {}
    engine.pretrain_backbone(straight, crops, labels, 3, checkpoint_path=tmp_path / "a.ckpt", stats=reached,
                             **params)
    done = engine.load_checkpoint(tmp_path / "a.ckpt")
    assert 10 < straight.steps < 5 * 100 and 30 <= done["seconds"] <= 33
    # How far it went: 40 training crops in batches of 8 are 5 steps an epoch.
    assert reached["steps"] == straight.steps and reached["epochs"] == straight.steps / 5
    assert reached["seconds"] == pytest.approx(done["seconds"], abs=1.5)
    # A run its time ended is over: resuming from its last checkpoint trains no further step.
    after = CountingBackbone()
    pretrain(tmp_path / "a.ckpt", after)
    assert after.steps == 0

    save, saves = pretraining.save_checkpoint, []

    def save_then_die(path, state):
        save(path, state)
        saves.append(state["step"])
        if len(saves) == 2:
            raise KeyboardInterrupt("killed after the second epoch's checkpoint")

    monkeypatch.setattr(pretraining, "save_checkpoint", save_then_die)
    first = CountingBackbone()
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "b.ckpt", first)
    monkeypatch.setattr(pretraining, "save_checkpoint", save)
    assert first.steps == saves[1] == 2 * 5
    second = CountingBackbone()
    pretrain(tmp_path / "b.ckpt", second)
    resumed = engine.load_checkpoint(tmp_path / "b.ckpt")
    assert 30 <= resumed["seconds"] <= 33
    assert abs(first.steps + second.steps - straight.steps) <= 1


def test_pretraining_reports_the_epochs_its_count_ended_at():
    """A budget of epochs that the time never reaches: exactly that many epochs are trained,
    and the stats say so."""
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (44, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 44)
    backbone, reached = CountingBackbone(), {}
    engine.pretrain_backbone(backbone, crops, labels, 3, seconds=1e9, max_epochs=3, batch_size=8, seed=0,
                             stats=reached)
    assert backbone.steps == reached["steps"] == 3 * 5 and reached["epochs"] == 3.0


# A GPU run's checkpoint also holds its device's CUDA generator ("cuda_rng", 16 bytes: seed and
# offset of torch's Philox generator), which dropout on the GPU draws from.
GPU_RNG_STATE = torch.arange(16, dtype=torch.uint8)


def refuse_cuda_rng(*args, **kwargs):
    raise AssertionError("a run on the CPU set the CUDA random state")


def test_a_cpu_checkpoint_has_no_cuda_rng_and_one_from_a_gpu_resumes_on_the_cpu(tmp_path, monkeypatch):
    """train_loop: a CPU run saves no CUDA random state; a checkpoint that has one (as a GPU
    run writes) resumes on the CPU exactly as without it, the state ignored."""
    straight, _ = run_toy(tmp_path / "a")
    assert "cuda_rng" not in engine.load_checkpoint(tmp_path / "a" / "toy.ckpt")
    with pytest.raises(KeyboardInterrupt):
        run_toy(tmp_path / "b", sample=toy_batches(fail_at=17))
    path = tmp_path / "b" / "toy.ckpt"
    state = engine.load_checkpoint(path)
    assert "cuda_rng" not in state
    torch.save({**state, "cuda_rng": GPU_RNG_STATE}, path)
    monkeypatch.setattr(torch.cuda, "set_rng_state", refuse_cuda_rng)
    resumed, hist = run_toy(tmp_path / "b")
    assert hist["resumed_from"] == 16
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    assert "cuda_rng" not in engine.load_checkpoint(path)  # rewritten by a CPU run


def test_pretraining_resumes_on_the_cpu_from_a_checkpoint_with_cuda_rng(tmp_path, monkeypatch):
    """pretrain_backbone: the same, from a checkpoint written after the second epoch."""
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (44, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 44)

    def pretrain(path, **kw):
        torch.manual_seed(0)  # the classifier's initial weights
        _, classifier = engine.pretrain_backbone(CountingBackbone(), crops, labels, 3, checkpoint_path=path,
                                                   seconds=1e9, max_epochs=4, batch_size=8, seed=0,
                                                   hflip_aug=True, return_classifier=True, **kw)
        return classifier

    straight = pretrain(tmp_path / "a.ckpt")
    assert "cuda_rng" not in engine.load_checkpoint(tmp_path / "a.ckpt")
    again = pretrain(tmp_path / "b.ckpt")  # uninterrupted runs are identical
    save, saves = pretraining.save_checkpoint, []

    def save_then_die(path, state):
        saves.append(state["step"])
        if len(saves) == 2:
            save(path, {**state, "cuda_rng": GPU_RNG_STATE})
            raise KeyboardInterrupt("killed after the second epoch's checkpoint")
        save(path, state)

    monkeypatch.setattr(pretraining, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "c.ckpt")
    monkeypatch.setattr(pretraining, "save_checkpoint", save)
    monkeypatch.setattr(torch.cuda, "set_rng_state", refuse_cuda_rng)
    resumed = pretrain(tmp_path / "c.ckpt")
    assert saves[1] == 2 * 5 and engine.load_checkpoint(tmp_path / "c.ckpt")["step"] == 4 * 5
    for p, q, r in zip(straight.state_dict().values(), resumed.state_dict().values(),
                       again.state_dict().values()):
        assert torch.equal(p, q) and torch.equal(p, r)
    assert "cuda_rng" not in engine.load_checkpoint(tmp_path / "c.ckpt")


class DropoutToyModel(torch.nn.Module):
    """A loss-dict model whose only randomness is dropout, on the model's device (on a GPU it
    draws from that device's CUDA generator, not from the CPU's)."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(3, 64)
        self.drop = torch.nn.Dropout(0.5)
        self.out = torch.nn.Linear(64, 1)

    def forward(self, x, y):
        return {"loss_mse": ((self.out(self.drop(torch.relu(self.hidden(x)))).squeeze(1) - y) ** 2).mean()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_resumed_gpu_run_continues_the_cuda_random_stream(tmp_path, monkeypatch):
    """On a GPU, train_loop's checkpoints keep the device's CUDA random state: a run killed and
    resumed draws the same dropout masks, so its losses and weights are an uninterrupted
    run's. Without restoring that state (the check that this test can fail) they are not.
    pretrain_backbone on a GPU saves the state too and restores it on resume."""
    batches = toy_batches()

    def on_gpu(fail_at=None):
        def sample(it, rank, world, rng):
            if it == fail_at:
                raise KeyboardInterrupt("simulated interruption")
            return tuple(t.cuda() for t in batches(it, rank, world, rng))
        return sample

    def run(path, sample):
        torch.manual_seed(0)
        model = DropoutToyModel().cuda()
        hist = engine.train_loop(model, sample, max_iter=12, seconds=1e9, lr=0.01, seed=1,
                                   checkpoint_path=path, checkpoint_every=2)
        return model, hist

    straight, hist = run(tmp_path / "a.ckpt", on_gpu())
    state = engine.load_checkpoint(tmp_path / "a.ckpt")
    assert state["cuda_rng"].dtype == torch.uint8 and state["cuda_rng"].device.type == "cpu"
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.ckpt", on_gpu(fail_at=7))
    killed = tmp_path / "b.ckpt.killed"
    killed.write_bytes((tmp_path / "b.ckpt").read_bytes())
    resumed, resumed_hist = run(tmp_path / "b.ckpt", on_gpu())
    assert resumed_hist["resumed_from"] == 6
    assert resumed_hist["losses"] == hist["losses"][6:]
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    # Resumed without the CUDA state, the dropout masks (and so the losses) differ.
    (tmp_path / "b.ckpt").write_bytes(killed.read_bytes())
    monkeypatch.setattr(training_loop, "restore_cuda_rng", lambda state, device: None)
    _, unrestored = run(tmp_path / "b.ckpt", on_gpu())
    assert unrestored["resumed_from"] == 6 and unrestored["losses"] != hist["losses"][6:]
    monkeypatch.undo()

    # pretrain_backbone: the state of the device it trains on is saved, and set on resume.
    rng = np.random.default_rng(0)
    crops, labels = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8), rng.integers(0, 3, 20)
    path = tmp_path / "pretrain.ckpt"
    engine.pretrain_backbone(CountingBackbone(), crops, labels, 3, checkpoint_path=path, seconds=1e9,
                               max_epochs=1, batch_size=8, device="cuda")
    saved = engine.load_checkpoint(path)["cuda_rng"]
    assert saved.dtype == torch.uint8
    restored = []
    set_state = torch.cuda.set_rng_state
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": (restored.append(s.clone()),
                                                                                set_state(s, device)))
    engine.pretrain_backbone(CountingBackbone(), crops, labels, 3, checkpoint_path=path, seconds=1e9,
                               max_epochs=2, batch_size=8, device="cuda")
    assert len(restored) == 1 and torch.equal(restored[0], saved)


def test_weight_average_is_the_ramped_exponential_average(tmp_path):
    """The weights handed back are the EMA of the live weights after every step (brute force),
    batch-norm statistics included; the checkpoint keeps the live weights."""
    decay, snapshots = 0.8, []
    batches = toy_batches()

    def sample(it, rank, world, rng):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return batches(it, rank, world, rng)

    torch.manual_seed(0)
    model = ToyModel()
    # prefetch=0: `sample` records the weights each step starts from, so it must run right
    # before that step, not ahead of it on the prefetching thread.
    engine.train_loop(model, sample, max_iter=12, seconds=1e9, lr=0.1, seed=1, ema_decay=decay,
                      checkpoint_path=tmp_path / "toy.ckpt", prefetch=0)
    live = torch.load(tmp_path / "toy.ckpt", weights_only=True)["model"]
    history = snapshots + [live]  # weights after 0, 1, ..., 12 optimiser steps
    final = model.state_dict()
    for key, value in final.items():
        if not value.is_floating_point():
            assert torch.equal(value, live[key])
            continue
        avg = history[0][key].double()
        for n in range(1, len(history)):
            d = min(decay, (1 + n) / (10 + n))
            avg = d * avg + (1 - d) * history[n][key].double()
        torch.testing.assert_close(value.double(), avg, rtol=1e-5, atol=1e-6)
        assert not torch.equal(value, live[key])
    with pytest.raises(ValueError, match="ema_decay"):
        engine.train_loop(ToyModel(), batches, max_iter=2, seconds=1e9, lr=0.1, ema_decay=1.0)


def test_nan_loss_stops_with_checkpoint_intact(tmp_path):
    with pytest.raises(FloatingPointError, match="iteration 5.*last checkpoint"):
        run_toy(tmp_path, sample=toy_batches(nan_at=5))
    state = torch.load(tmp_path / "toy.ckpt", weights_only=True)
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_lr_schedule():
    assert engine.lr_factor(0.0, 0.1) == pytest.approx(0.1)
    assert engine.lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert engine.lr_factor(1.0, 0.1) == pytest.approx(0.02)
    f = [engine.lr_factor(t / 100, 0.1) for t in range(10, 101)]
    assert all(a >= b for a, b in zip(f, f[1:]))


def test_fit_anchors_follow_the_boxes():
    targets = [{"boxes": np.array([[0, 0, 10, 20], [0, 0, 40, 80], [0, 0, 20, 40]], float)}]
    sizes, ratios = fit_anchors(targets, n_sizes=3)
    assert ratios == (2.0,)
    assert sizes[0] == pytest.approx(np.sqrt(200) * 1.0, rel=0.2) and sizes[-1] < np.sqrt(3200)


def test_bad_scale_jitter_and_augment_are_rejected_before_training():
    one = digits_in_clutter("train", n_images=1, seed=0)
    with pytest.raises(ValueError, match="scale_jitter"):
        tiny_detector(scale_jitter=(1.2, 0.8)).fit(one)
    with pytest.raises(ValueError, match="augment"):
        tiny_detector(augment={"colour": 0.3, "sharpen": 1.0}).fit(one)
    with pytest.raises(ValueError, match="augment"):
        tiny_detector(augment={"blur": 1.5}).fit(one)
    with pytest.raises(ValueError, match="augment"):
        RCNN(augment="strong").fit(one)


def test_crops_follow_the_image_scale():
    # A 10 px object in a 48 px crop: 10 px at scale 1, 20 px at scale 2 (the detector's view
    # of an image resized by 2); a 60 px object needs 78 px with its context and is shrunk
    # to fit either way.
    img = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    ds = DetectionDataset([img], [{"boxes": [[50, 50, 60, 60], [100, 100, 160, 160]], "labels": [0, 1]}],
                          ["a", "b"])
    widths = {}
    for scale in (1.0, 2.0):
        crops, labels, inner = engine.extract_crops(ds, copies=1, jitter=0.0, backgrounds_per_image=2,
                                                      scale=scale, seed=0)
        assert crops.shape[1:] == (48, 48, 3) and list(labels[:2]) == [1, 2] and (labels[2:] == 0).all()
        widths[scale] = inner[:2, 2] - inner[:2, 0]
    np.testing.assert_allclose(widths[1.0], [10, 60 * 48 / 78], rtol=1e-4)
    np.testing.assert_allclose(widths[2.0], [20, 60 * 48 / 78], rtol=1e-4)
    with pytest.raises(ValueError, match="image_scale"):
        tiny_detector(image_scale=0).fit(ds)
    with pytest.raises(ValueError, match=r"pretrain\.copies must be >= 1"):
        tiny_detector(pretrain=Pretraining(copies=0)).fit(ds)
    with pytest.raises(ValueError, match=r"pretrain\.stretch"):
        tiny_detector(pretrain=Pretraining(stretch=(2.0, 1.0))).fit(ds)
    with pytest.raises(ValueError, match=r"pretrain\.stretch"):
        tiny_detector(pretrain=Pretraining(stretch="wide")).fit(ds)
    with pytest.raises(ValueError, match=r"pretrain\.shear must be in \[0, 1\]"):
        tiny_detector(pretrain=Pretraining(shear=-0.1)).fit(ds)
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_detector(ema_decay=1.0).fit(ds)


@pytest.mark.parametrize("shear", [0.0, 0.3, -0.2])
def test_sheared_crops_slant_the_object_about_its_centre(shear):
    # A vertical bar: in the crop its centre line must run with slope du/dv = -shear through
    # the centre of the returned box, whose width and height are the stretched object's.
    img = np.zeros((200, 200, 3), np.uint8)
    img[60:140, 98:102] = 255
    crop, box = _native_crop(img, np.array([90.0, 60, 110, 140]), 48, 1.3, (0.0, 0.0),
                                      stretch=(1.2, 0.9), shear=shear)
    a = 48 / (80 * 0.9 * 1.3)
    np.testing.assert_allclose([box[2] - box[0], box[3] - box[1]], [20 * 1.2 * a, 80 * 0.9 * a], rtol=1e-5)
    uc, vc = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    gray = crop[..., 0].astype(float)
    rows = [v for v in range(48) if box[1] + 3 <= v + 0.5 <= box[3] - 3]
    centres = [(gray[v] * np.arange(48)).sum() / gray[v].sum() for v in rows]
    slope, offset = np.polyfit(np.array(rows) + 0.5, np.array(centres) + 0.5, 1)
    assert slope == pytest.approx(-shear, abs=0.02)
    assert slope * vc + offset == pytest.approx(uc, abs=0.1)


# ----------------------------------------------------------------------------- learning checks
@pytest.fixture(scope="module")
def digits_small():
    """A small built-in split: 80 training images, 40 val images (held-out digits and backgrounds)."""
    return digits_in_clutter("train", n_images=80, seed=7), digits_in_clutter("val", n_images=40, seed=7)


def test_faster_rcnn_learns_digits(digits_small):
    """A real learning check of the whole pipeline (crop pretraining, RPN, RoI heads, NMS) on
    the built-in digits_in_clutter data: 80 training images, crop pretraining for 8 epochs over
    8 stretched, slanted copies of each object, then 400 iterations of 2 images at lr 1e-3
    (~105 s with torch at 1 thread), must reach AP50 >= 0.08 on 40 held-out images (0.114
    measured; the
    constants below). An untrained
    or broken detector (wrong box coding, labels, anchors or RoI pooling) scores ~0 there.

    Fixed epoch / iteration counts (not time budgets) keep it deterministic.
    """
    train, test = digits_small
    det = FasterRCNN(pretrain=Pretraining(seconds=1e9, epochs=PRETRAIN_EPOCHS), train_seconds=1e9,
                     max_iter=FASTER_ITERS, batch_size=2, lr=1e-3, progress=False, seed=0,
                     augment=CHECK_AUGMENT)
    det.fit(train)
    dets = det.predict_batch([test[i][0] for i in range(len(test))])
    ap = ref.ap50(test, dets)
    print(f"FasterRCNN digits AP50 {ap:.3f}, crop accuracy {det.pretrain_accuracy_:.2f}")
    assert ap >= FASTER_DIGITS_FLOOR, f"AP50 {ap:.3f} (crop accuracy {det.pretrain_accuracy_:.2f})"


@pytest.mark.slow
def test_faster_rcnn_learns_shapes():
    """~45 s of training on 40 synthetic images of squares and discs reaches AP50 >= 0.62 on
    15 held-out images (0.765 with the default augmentation, 0.945 without, 2026-12-02; the
    floor is 80% of the measured value, the rule for slow checks). Slow: the digits check
    above replaced it in the default run."""
    import _shapes

    train, test = _shapes.shapes(40, seed=1), _shapes.shapes(15, seed=2)
    det = FasterRCNN(pretrain=Pretraining(seconds=1e9, epochs=5, copies=2, stretch=None, shear=0.0),
                     balance_objects=False, train_seconds=1e9, max_iter=80, batch_size=2,
                     progress=False, seed=0, augment=CHECK_AUGMENT)
    det.fit(train)
    dets = det.predict_batch([test[i][0] for i in range(len(test))])
    ap = ref.ap50(test, dets)
    print(f"FasterRCNN shapes AP50 {ap:.3f}")
    assert ap >= 0.62, f"AP50 {ap:.3f} (crop accuracy {det.pretrain_accuracy_:.2f})"


# Measured (torch at 1 thread, 2-core machine) on the val split (unseen digits and background
# photos), 2026-12-02: 80 train images, 8 pretraining epochs over 8 stretched, slanted copies
# per object, 400 iterations: AP50 0.123 without augmentation, 0.286 with the default
# augmentation (crop accuracy 0.89; ~110 s on a quiet machine). Earlier, on the old test split
# (shared backgrounds): 0.114-0.156. The floor is about half the measured value (the project's
# rule for in-suite checks); a planted bug (RoI labels without the background offset) scored
# 0.043 (benchmarks/RESULTS.md). "The default augmentation" is the default of that date, which
# the checks keep (CHECK_AUGMENT, tests/_learning.py: 0.287 again on 2026-12-03; today's
# default, with colour turns, 0.085 in this budget).
PRETRAIN_EPOCHS = 8
FASTER_ITERS = 400
FASTER_DIGITS_FLOOR = 0.15


def test_resnet18_fpn_variant_runs(tiny_data):
    """The ResNet-18 + FPN configuration (MultiScaleRoIAlign over 3 levels) trains and predicts."""
    det = tiny_detector(backbone="resnet18", fpn=True, max_iter=2).fit(tiny_data)
    assert len(det.anchor_sizes_) == 6
    assert det.model_.rpn.anchor_generator.num_anchors_per_location() == [2 * len(det.aspect_ratios_)] * 3
    d = det.predict(tiny_data[0][0])
    assert d.boxes.shape[1] == 4
    with pytest.raises(ValueError, match="fpn"):
        tiny_detector(fpn=True).fit(tiny_data)  # the VGG-style backbone has one level
