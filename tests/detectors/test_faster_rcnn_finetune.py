"""Fine-tuning a FasterRCNN from torchvision-format weights: validation during training keeps
the best weights, the frozen-then-trained backbone schedule, and a run killed after the switch
resumes to the uninterrupted run's model and validation curve."""

import pytest
import torch

from pydetect import data, engine, models
from pydetect.detectors import FastRCNN, FasterRCNN, YOLO
from pydetect.engine import loop as training_loop
from pydetect.eval import coco_evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(pretrain=None, train_seconds=1e6, batch_size=1, image_scale=0.5, progress=False, num_threads=1,
            rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50), augment=None,
            representation_size=32)  # checkpoints of ~200 MB (a ResNet-18 and its AdamW moments) are the cost


@pytest.fixture(scope="module")
def splits():
    return (data.digits_in_clutter("train", n_images=3, seed=0),
            data.digits_in_clutter("val", n_images=2, seed=0))


def classification_weights(path):
    """A torchvision-layout ResNet-18 classification state dict (fc head included), saved with torch.save."""
    torch.manual_seed(5)
    body = models.resnet("resnet18", trainable_layers=5, frozen_bn=False)
    state = dict(body.state_dict(), **{"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    torch.save(state, path)
    return state


def kill_at(monkeypatch, iteration):
    """Interrupts training when it reaches ``iteration`` (as Ctrl-C or a kill would)."""
    original = training_loop.schedule_fraction

    def schedule_fraction(it, *args):
        if it == iteration:
            raise KeyboardInterrupt("simulated kill")
        return original(it, *args)
    monkeypatch.setattr(training_loop, "schedule_fraction", schedule_fraction)


def test_validation_keeps_the_best_weights_and_a_run_killed_after_the_unfreeze_resumes_exactly(
        splits, tmp_path, monkeypatch):
    train, val = splits
    weights = tmp_path / "resnet18.pth"
    state = classification_weights(weights)
    params = dict(backbone="resnet18_fpn", weights=str(weights), trainable_layers=2, freeze_backbone_fraction=0.3,
                  max_iter=6, eval_every=3, **FAST)
    straight = FasterRCNN(checkpoint_dir=str(tmp_path / "a"), **params).fit(train, val_dataset=val)
    hist = straight.history_
    assert hist["unfrozen_at"] == 2 and hist["resumed_from"] is None
    assert [v["iteration"] for v in hist["val"]] == [3, 6]
    best = max(hist["val"], key=lambda v: (v["AP"], -v["iteration"]))
    assert hist["best"] == best
    # The model holds the best weights the checkpoint kept, and scores what was recorded.
    saved = engine.load_checkpoint(tmp_path / "a" / "faster_rcnn.ckpt")
    assert saved["best"]["entry"] == best
    for k, v in straight.model_.state_dict().items():
        assert torch.equal(v, saved["best"]["state"][k]), k
    assert coco_evaluate(val, straight.predict_batch([im for im, _ in val]))["AP"] == pytest.approx(best["AP"])
    # After the switch the stages trainable_layers selects trained; the others kept the file's weights.
    body = straight.model_.backbone.body.state_dict()
    assert not torch.equal(saved["model"]["backbone.body.layer4.0.conv1.weight"], state["layer4.0.conv1.weight"])
    assert torch.equal(body["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert [n for n, p in straight.model_.backbone.body.named_parameters() if p.requires_grad][0].startswith("layer3")

    # Killed at iteration 4: the checkpoint after the evaluation at 3 is past the switch (2).
    kill_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        FasterRCNN(checkpoint_dir=str(tmp_path / "b"), **params).fit(train, val_dataset=val)
    partial = engine.load_checkpoint(tmp_path / "b" / "faster_rcnn.ckpt")
    assert partial["iteration"] == 3 and partial["unfrozen_at"] == 2
    monkeypatch.undo()
    resumed = FasterRCNN(checkpoint_dir=str(tmp_path / "b"), **params).fit(train, val_dataset=val)
    assert resumed.history_["resumed_from"] == 3 and resumed.history_["unfrozen_at"] == 2
    assert resumed.history_["val"] == hist["val"] and resumed.history_["best"] == hist["best"]
    for (k, v), w in zip(straight.model_.state_dict().items(), resumed.model_.state_dict().values()):
        assert torch.equal(v, w), k
    # The model file keeps the curve.
    path = tmp_path / "model.pd"
    resumed.save(path)
    assert FasterRCNN.load(path).history_["val"] == hist["val"]


def test_the_body_is_frozen_before_the_switch(splits, tmp_path, monkeypatch):
    train, val = splits
    weights = tmp_path / "resnet18.pth"
    state = classification_weights(weights)
    kill_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        FasterRCNN(backbone="resnet18_fpn", weights=str(weights), freeze_backbone_fraction=0.75, max_iter=4,
                   checkpoint_dir=str(tmp_path), eval_every=2, **FAST).fit(train, val_dataset=val)
    saved = engine.load_checkpoint(tmp_path / "faster_rcnn.ckpt")
    assert saved["iteration"] == 2 and saved["unfrozen_at"] is None
    for k, v in state.items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):  # frozen batch norm has none
            assert torch.equal(saved["model"]["backbone.body." + k], v), k


@pytest.mark.parametrize("params, error, fragment", [
    (dict(backbone="vgg", freeze_backbone_fraction=0.5), ValueError, "torchvision-layout"),
    (dict(backbone="resnet18_fpn", trainable_layers=0, freeze_backbone_fraction=0.5), ValueError,
     "trainable_layers=0"),
    (dict(freeze_backbone_fraction=1.0), ValueError, r"freeze_backbone_fraction must be in \[0, 1\)"),
    (dict(eval_every=0), ValueError, "eval_every must be >= 1"),
    (dict(val_metric="AR100"), ValueError, "val_metric must be one of 'AP', 'AP50'"),
])
def test_bad_fine_tuning_parameters_are_refused_before_training(splits, params, error, fragment):
    with pytest.raises(error, match=fragment):
        FasterRCNN(**dict(FAST, max_iter=1, **params)).fit(splits[0])


def test_val_dataset_checks(splits):
    train, val = splits
    other = data.DetectionDataset([val[0][0]], [val.target(0)], [f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match="class_names"):
        FasterRCNN(**dict(FAST, max_iter=1)).fit(train, val_dataset=other)
    with pytest.raises(TypeError, match="takes no val_dataset"):
        YOLO(progress=False).fit(train, val_dataset=val)
    assert FastRCNN._EVALUATES_DURING_TRAINING


def test_fast_rcnn_scores_a_val_dataset_on_proposals_computed_once(splits, tmp_path, monkeypatch):
    train, val = splits
    calls = []
    search = FastRCNN._search

    def counted(self, image, n):
        calls.append(n)
        return search(self, image, n)
    monkeypatch.setattr(FastRCNN, "_search", counted)
    det = FastRCNN(pretrain=None, max_iter=4, eval_every=2, val_metric="AP50", train_proposals=50, test_proposals=20,
                   progress=False, num_threads=1, checkpoint_dir=str(tmp_path)).fit(train, val_dataset=val)
    assert [v["iteration"] for v in det.history_["val"]] == [2, 4]
    assert calls.count(20) == len(val)  # the validation images' proposals: once, not per evaluation
    best = max(det.history_["val"], key=lambda v: (v["AP50"], -v["iteration"]))
    assert det.history_["best"] == best
    assert coco_evaluate(val, det.predict_batch([im for im, _ in val]))["AP50"] == pytest.approx(best["AP50"])
