"""FasterRCNN on the torchvision-layout backbones: torchvision-format weights load before
training (frozen stages keep them exactly), training runs, a saved model reloads without the
weights file, and weights that do not fit are refused before any training."""

import numpy as np
import pytest
import torch

from pydetect import data, models
from pydetect.detectors import FasterRCNN

FAST = dict(pretrain=None, max_iter=4, train_seconds=120, batch_size=1, progress=False, num_threads=1,
            rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50))


@pytest.fixture(scope="module")
def train():
    return data.digits_in_clutter("train", n_images=3, seed=0)


def _classification_weights(tmp_path, name="resnet18"):
    """A file as torchvision's ResNet classification weights are laid out (fc head included)."""
    torch.manual_seed(5)
    body = models.resnet(name, trainable_layers=5, frozen_bn=False)
    with torch.no_grad():
        for p in body.parameters():
            p.add_(0.01)
    state = dict(body.state_dict(), **{"fc.weight": torch.zeros(1000, body.out_channels), "fc.bias": torch.zeros(1000)})
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return path, state


def test_weights_load_frozen_stages_keep_them_and_the_model_reloads_without_the_file(train, tmp_path):
    path, state = _classification_weights(tmp_path)
    det = FasterRCNN(backbone="resnet18_fpn", weights=str(path), trainable_layers=2, **FAST).fit(train)
    body = det.model_.backbone.body
    assert det.model_.image_mean == models.IMAGENET_MEAN
    for name, value in body.state_dict().items():
        frozen = not (name.startswith("layer3") or name.startswith("layer4"))
        if frozen:  # conv1, bn1, layer1, layer2: exactly the file's (batch norm frozen too)
            torch.testing.assert_close(value, state[name], rtol=0, atol=0, msg=name)
    trained = [n for n, p in body.named_parameters() if p.requires_grad]
    assert trained and all(n.startswith(("layer3", "layer4")) for n in trained)
    assert any(not torch.equal(body.state_dict()[n], state[n]) for n in trained)  # they did train
    image = train[0][0]
    before = det.predict(image)
    saved = tmp_path / "det.model"
    det.save(saved)
    path.unlink()  # the weights file is not needed any more
    again = FasterRCNN.load(saved)
    after = again.predict(image)
    np.testing.assert_array_equal(after.boxes, before.boxes)
    np.testing.assert_array_equal(after.scores, before.scores)


def test_a_detection_model_state_dict_gives_its_backbone(train, tmp_path):
    torch.manual_seed(1)
    source = models.mobilenet_v3_fpn_backbone(trainable_layers=6)
    path = tmp_path / "detector.pth"
    torch.save({f"backbone.{k}": v for k, v in source.state_dict().items()}, path)
    # The loading itself: every key of the backbone and its pyramid comes from the file.
    loaded = models.load_backbone_weights(models.mobilenet_v3_fpn_backbone(), str(path))
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[name], rtol=0, atol=0, msg=name)
    # In training, trainable_layers=0 freezes the whole body (the pyramid trains, as in torchvision).
    det = FasterRCNN(backbone="mobilenet_v3_large_fpn", weights=str(path), trainable_layers=0, **FAST).fit(train)
    for name, value in det.model_.backbone.body.state_dict().items():
        torch.testing.assert_close(value, source.body.state_dict()[name], rtol=0, atol=0, msg=name)
    assert len(det.anchor_sizes_) == 3  # one size per level: "0", "1", "pool"


def test_weights_that_do_not_fit_are_refused_before_training(train, tmp_path):
    path, _ = _classification_weights(tmp_path, "resnet34")
    with pytest.raises(ValueError, match="missing keys"):
        FasterRCNN(backbone="resnet18_fpn", weights=str(path), **FAST).fit(train)
    with pytest.raises(ValueError, match="torchvision-format weights"):
        FasterRCNN(backbone="vgg", weights=str(path), **FAST).fit(train)
    with pytest.raises(ValueError, match="anchors"):
        FasterRCNN(backbone="resnet50_fpn", anchors="kmeans", **FAST).fit(train)
    with pytest.raises(ValueError, match="trainable_layers"):
        FasterRCNN(backbone="resnet18_fpn", trainable_layers=6, **FAST).fit(train)
