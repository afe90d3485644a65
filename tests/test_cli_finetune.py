"""`pydetect train faster_rcnn --dataset COCO_JSON --backbone ... --weights ...`: fine-tuning
from torchvision-format weights on a COCO folder made by `pydetect export-dataset`, killed and
resumed by running the same command again, reporting AP on the validation set."""

import re

import pytest

torch = pytest.importorskip("torch")

from pydetect import data, models  # noqa: E402
from pydetect.cli import main  # noqa: E402
from pydetect.detectors import FasterRCNN  # noqa: E402
from pydetect.engine import loop as training_loop  # noqa: E402
from pydetect.eval import coco_evaluate  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_from_torchvision_weights_on_a_coco_folder_killed_and_resumed(tmp_path, capsys, monkeypatch):
    for split, n in (("train", 3), ("val", 2)):
        assert main(["export-dataset", "digits", "--split", split, "--n-images", str(n),
                     "--out", str(tmp_path / split)]) == 0
    # A whole detection model's state dict (keys backbone.body..., backbone.fpn...), as torch.save writes it.
    torch.manual_seed(3)
    weights = tmp_path / "detector.pth"
    torch.save({f"backbone.{k}": v for k, v in models.resnet_fpn_backbone("resnet18").state_dict().items()}, weights)
    argv = ["train", "faster_rcnn", "--dataset", str(tmp_path / "train" / "annotations.json"),
            "--val-dataset", str(tmp_path / "val" / "annotations.json"), "--backbone", "resnet18_fpn",
            "--weights", str(weights), "--checkpoint-dir", str(tmp_path / "ckpt"), "--eval-every", "2",
            "--out", str(tmp_path / "model.pd"), "--no-progress",
            "--set", "max_iter=4", "--set", "batch_size=1", "--set", "image_scale=0.5",
            "--set", "representation_size=32", "--set", "freeze_backbone_fraction=0.25"]
    original = training_loop.schedule_fraction

    def killed_at_3(it, *args):
        if it == 3:
            raise KeyboardInterrupt
        return original(it, *args)

    capsys.readouterr()
    monkeypatch.setattr(training_loop, "schedule_fraction", killed_at_3)
    assert main(argv) == 130  # interrupted after the checkpoint of iteration 2
    assert "interrupted" in capsys.readouterr().err and not (tmp_path / "model.pd").exists()
    monkeypatch.undo()
    assert main(argv) == 0  # the same command resumes
    out = capsys.readouterr().out
    assert "resumed from the checkpoint of iteration 2" in out
    assert re.search(r"validation during training: iteration 2 AP [\d.]+ AP50 [\d.]+, iteration 4 AP", out)
    kept = re.search(r"kept the weights of iteration (\d) \(val AP ([\d.]+)", out)
    reported = re.search(r"validation set \(2 images\): COCO AP ([\d.]+)  AP50 ([\d.]+)", out)
    assert kept and reported and kept.group(2) == reported.group(1), out
    model = FasterRCNN.load(tmp_path / "model.pd")
    assert model.backbone == "resnet18_fpn" and model.history_["best"]["iteration"] == int(kept.group(1))
    val = data.load_coco(tmp_path / "val" / "annotations.json")
    ap = coco_evaluate(val, model.predict_batch([im for im, _ in val]))["AP"]
    assert f"{ap:.3f}" == reported.group(1)


@pytest.mark.parametrize("extra, fragment", [
    (["--eval-every", "2"], "--eval-every needs --val-dataset"),
    (["--backbone", "resnet18_fpn", "--set", "backbone='vgg'"], "backbone given both as a flag and with --set"),
    (["--weights", "w.pth"], "has no parameter 'weights'"),
])
def test_train_flag_errors(tmp_path, capsys, extra, fragment):
    detector = "yolo" if "--weights" in extra else "faster_rcnn"
    assert main(["train", detector, "--out", str(tmp_path / "m"), "--n-train", "1", "--n-eval", "1"] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("pydetect: error:") and fragment in err, err
