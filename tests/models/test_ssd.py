"""SSD: default boxes (the paper's eq. 4), matching, and the loss with hard negative mining,
against hand-computed values and brute-force Python on tiny inputs."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydetect.models import BoxCoder, SSDNet, VGGStyle  # noqa: E402
from pydetect.models.ssd import default_box_shapes, ssd_loss, ssd_match  # noqa: E402


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_default_box_shapes_follow_the_paper():
    shapes = default_box_shapes([20.0, 40.0, 80.0], (2.0,))
    assert [len(s) for s in shapes] == [4, 4, 4]
    r2 = math.sqrt(2)
    expected0 = [(20 * r2, 20 / r2), (20, 20), (20 / r2, 20 * r2), (math.sqrt(20 * 40),) * 2]
    np.testing.assert_allclose(shapes[0].numpy(), np.array(expected0), rtol=1e-6)
    # The last level's extra square uses the next scale it would have had (80 * 80 / 40).
    np.testing.assert_allclose(shapes[2][-1].numpy(), [math.sqrt(80 * 160)] * 2, rtol=1e-6)
    assert len(default_box_shapes([10.0], (2.0, 3.0))[0]) == 6


def test_ssd_match_forces_each_objects_best_box_then_thresholds():
    priors = torch.tensor([[0., 0, 10, 10], [0, 0, 20, 20], [30, 30, 40, 40], [31, 31, 41, 41], [100, 100, 110, 110]])
    gt = torch.tensor([[0., 0, 12, 12], [60, 60, 90, 90]])
    m = ssd_match(gt, priors, 0.5)
    # Object 0: IoU 100/144 = 0.69 with prior 0, 144/400 = 0.36 with prior 1. Object 1 overlaps
    # nothing: its best prior (the first of the zero-IoU ties, prior 0) is forced, and wins.
    ious = [[_iou(g, p) for p in priors.tolist()] for g in gt.tolist()]
    best1 = int(np.argmax(ious[1]))
    expected = [-1] * 5
    for p in range(5):
        j = int(np.argmax([ious[0][p], ious[1][p]]))
        if max(ious[0][p], ious[1][p]) >= 0.5:
            expected[p] = j
    expected[int(np.argmax(ious[0]))] = 0
    expected[best1] = 1
    assert m.tolist() == expected
    assert ssd_match(torch.zeros(0, 4), priors).tolist() == [-1] * 5


def test_ssd_loss_hard_negatives_match_brute_force():
    rng = np.random.default_rng(0)
    priors = torch.tensor([[0., 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20],
                           [20, 0, 30, 10], [20, 10, 30, 20], [0, 20, 10, 30], [10, 20, 20, 30]],
                          dtype=torch.float64)
    cls = torch.tensor(rng.normal(0, 1, (2, 8, 3)))
    deltas = torch.tensor(rng.normal(0, 0.3, (2, 8, 4)))
    targets = [{"boxes": torch.tensor([[1., 1, 11, 11]], dtype=torch.float64), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4, dtype=torch.float64), "labels": torch.zeros(0, dtype=torch.int64)}]
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    got = ssd_loss(cls, deltas, priors, targets, coder, 0.5, 3)

    def ce(logits, label):
        return -(logits[label] - math.log(sum(math.exp(v) for v in logits)))

    # Image 0: prior 0 (IoU 81/119 = 0.68) is its only match; 3 hard negatives among the other 7.
    pos_ce = ce(cls[0, 0].tolist(), 2)
    neg0 = sorted((ce(cls[0, p].tolist(), 0) for p in range(1, 8)), reverse=True)[:3]
    # Image 1 has no object: it still mines neg_pos_ratio (3) hard negatives.
    neg1 = sorted((ce(cls[1, p].tolist(), 0) for p in range(8)), reverse=True)[:3]
    tgt = coder.encode(targets[0]["boxes"], priors[:1])[0].tolist()
    loc = 0.0
    for d, t in zip(deltas[0, 0].tolist(), tgt):
        x = abs(d - t)
        loc += 0.5 * x * x if x < 1 else x - 0.5
    assert got["loss_class"].item() == pytest.approx(pos_ce + sum(neg0) + sum(neg1), rel=1e-9)
    assert got["loss_box"].item() == pytest.approx(loc, rel=1e-9)


def test_ssdnet_predicts_clipped_boxes_for_any_image_size():
    torch.manual_seed(0)
    net = SSDNet(VGGStyle(widths=(4, 4, 4, 4)), 2, default_box_shapes([8.0, 16.0, 32.0], (2.0,)), (8, 16, 32),
                 score_thresh=0.0)
    ims = [torch.rand(3, 41, 23), torch.rand(3, 70, 90)]
    net.train()
    losses = net(ims, [{"boxes": torch.tensor([[2., 3, 20, 30]]), "labels": torch.tensor([1])},
                       {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])
    assert set(losses) == {"loss_class", "loss_box"} and all(torch.isfinite(v) for v in losses.values())
    net.eval()
    with torch.no_grad():
        dets = net(ims)
    for d, im in zip(dets, ims):
        h, w = im.shape[-2:]
        assert 0 < len(d["boxes"]) <= 100
        assert (d["boxes"] >= 0).all() and (d["boxes"][:, [0, 2]] <= w).all() and (d["boxes"][:, [1, 3]] <= h).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()
