"""pydetect's Faster R-CNN converted from torchvision's computes torchvision's outputs, stage by stage.

torchvision is a peer, not a dependency: these tests skip without it (.ci/run runs them in its
torchvision environment). Nothing can be downloaded, so the torchvision models have random
weights from a fixed seed; their batch-norm statistics are estimated on a few random images
first, so that activations neither vanish nor explode through ResNet-50 / MobileNetV3 and the
RPN's scores are not all ties (which would make top-k and NMS choose arbitrarily).
"""

import numpy as np
import pytest
import torch

from pydetect import engine, models
from pydetect.bench.torchvision_models import calibrated_detector
from pydetect.detectors import FasterRCNN

torchvision = pytest.importorskip("torchvision", reason="torchvision (a peer) is not installed")
detection = pytest.importorskip("torchvision.models.detection")

pytestmark = pytest.mark.slow  # ResNet-50 forward passes: about a minute in all on 2 cores

BOX_ATOL = 1e-3   # pixels
SCORE_ATOL = 1e-5


def _torchvision_detector(arch, **kwargs):
    torch.manual_seed(0)
    build = {"resnet50": detection.fasterrcnn_resnet50_fpn,
             "mobilenet": detection.fasterrcnn_mobilenet_v3_large_fpn}[arch]
    # Five classes and a low score threshold: a random predictor's scores (about 1 / 5) then pass it.
    settings = dict(weights=None, weights_backbone=None, num_classes=5, min_size=320, max_size=512,
                    box_score_thresh=0.001)
    settings.update(kwargs)
    return calibrated_detector(build(**settings))


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 240, 320, generator=g), torch.rand(3, 300, 200, generator=g),
            torch.rand(3, 97, 150, generator=g)]


def _same_set(a, b, atol):
    """Every row of a has a row of b within atol (max-abs), and the reverse; same count."""
    assert a.shape == b.shape
    if len(a) == 0:
        return
    d = (a[:, None, :] - b[None, :, :]).abs().amax(-1)
    assert float(d.min(1).values.max()) <= atol
    assert float(d.min(0).values.max()) <= atol


def _same_detections(theirs, ours):
    """Same detections up to the order of (near-)equal scores: each of one has one of the other
    with the same label (torchvision's minus one), its score within SCORE_ATOL and its box within
    BOX_ATOL."""
    assert len(ours["boxes"]) == len(theirs["boxes"]) > 0
    a = torch.cat([theirs["boxes"], theirs["scores"][:, None] * (BOX_ATOL / SCORE_ATOL),
                   (theirs["labels"][:, None] - 1).float() * 1e6], 1)
    b = torch.cat([ours["boxes"], ours["scores"][:, None] * (BOX_ATOL / SCORE_ATOL),
                   ours["labels"][:, None].float() * 1e6], 1)
    _same_set(a, b, BOX_ATOL * 1.0001)


@pytest.mark.parametrize("arch", ["resnet50", "mobilenet"])
def test_converted_model_computes_torchvisions_function_stage_by_stage(arch):
    tv = _torchvision_detector(arch)
    ours = models.from_torchvision(tv)
    images = _images()
    with torch.no_grad():
        # 1. Normalise, resize, pad: the same batch, the same sizes.
        theirs_batch, _ = tv.transform(images)
        (x, sizes), _, _, originals = ours.preprocess(images)
        assert sizes == theirs_batch.image_sizes
        assert originals == [tuple(im.shape[-2:]) for im in images]
        torch.testing.assert_close(x, theirs_batch.tensors, rtol=0, atol=1e-6)
        # 2. Backbone + FPN.
        theirs_f = tv.backbone(theirs_batch.tensors)
        ours_f = ours.backbone(x)
        assert list(ours_f) == list(theirs_f)
        for k in theirs_f:
            torch.testing.assert_close(ours_f[k], theirs_f[k], rtol=1e-4, atol=1e-4 * float(theirs_f[k].abs().max()))
        # 3. RPN on the same features: the same proposals (as sets: equal scores may come in either order).
        theirs_p, _ = tv.rpn(theirs_batch, theirs_f)
        ours_p, _ = ours.rpn(tuple(x.shape[-2:]), sizes, list(theirs_f.values()))
        for a, b in zip(theirs_p, ours_p):
            assert len(a) > 100
            _same_set(a, b, BOX_ATOL)
        # 4. RoI heads on the same features and proposals.
        theirs_d, _ = tv.roi_heads(theirs_f, theirs_p, theirs_batch.image_sizes)
        ours_d, _ = ours.roi_heads(theirs_f, theirs_p, sizes)
        for a, b in zip(theirs_d, ours_d):
            _same_detections(a, b)
        # 5. End to end, postprocessing (boxes in the input's pixels) included.
        for a, b in zip(tv(images), ours(images)):
            _same_detections(a, b)


def test_estimator_from_a_module_and_from_a_state_dict_file(tmp_path):
    tv = _torchvision_detector("resnet50", min_size=256, max_size=400)
    est = FasterRCNN.from_torchvision(tv, class_names=["a", "b", "c", "d"])
    assert est.compat == "torchvision" and est.min_size == (256,) and est.max_size == 400
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), rng.integers(0, 256, (150, 120, 3), dtype=np.uint8)]
    dets = est.predict_batch(images)
    with torch.no_grad():
        theirs = tv([engine.image_to_tensor(im) for im in images])
    for d, t in zip(dets, theirs):
        _same_detections(t, {k: torch.as_tensor(v) for k, v in
                             (("boxes", d.boxes), ("scores", d.scores), ("labels", d.labels))})
    # A saved model reloads to the same detections.
    est.save(tmp_path / "model.json")
    again = FasterRCNN.load(tmp_path / "model.json").predict_batch(images)
    for d, e in zip(dets, again):
        np.testing.assert_array_equal(d.boxes, e.boxes)
    # A state dict file: the detector's defaults, overridden where this one differs.
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    from_file = FasterRCNN.from_torchvision(tmp_path / "tv.pth", min_size=256, max_size=400, box_score_thresh=0.001)
    assert from_file.class_names_ == ["1", "2", "3", "4"]
    for d, e in zip(dets, from_file.predict_batch(images)):
        np.testing.assert_array_equal(d.boxes, e.boxes)


def test_resnet18_detector_assembled_by_hand_converts():
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
    tv = calibrated_detector(detection.FasterRCNN(backbone, num_classes=3, min_size=192, max_size=320,
                                          box_score_thresh=0.001))
    settings = models.torchvision_compat.torchvision_settings(tv)
    assert settings["backbone"] == "resnet18_fpn" and settings["num_classes"] == 2
    ours = models.from_torchvision(tv)
    images = _images()[:2]
    with torch.no_grad():
        for a, b in zip(tv(images), ours(images)):
            _same_detections(a, b)


def test_v2_detector_is_refused_by_name():
    tv = detection.fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=3)
    with pytest.raises(ValueError, match="v2"):
        models.from_torchvision(tv)
