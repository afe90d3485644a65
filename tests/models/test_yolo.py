"""YOLO: YOLOv1's loss and cell assignment, the anchor form's prior assignment and loss,
checked against hand-computed values and brute-force Python on tiny inputs."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydetect.models import VGGStyle, YOLONet, YOLOv1Net  # noqa: E402
from pydetect.models.dense import flatten_levels, grid_priors  # noqa: E402
from pydetect.models.yolo import paired_iou, yolo_assign, yolov1_loss, yolov1_targets  # noqa: E402


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


# ----------------------------------------------------------------------------- YOLOv1
def test_yolov1_targets_centre_cell_and_largest_object_keeps_a_shared_cell():
    # stride 10, grid 3 x 4: centres (15, 5) -> cell (0, 1); (12, 8) -> (0, 1) too, smaller;
    # (35, 25) -> (2, 3); a centre beyond the grid is clamped to the last cell.
    boxes = torch.tensor([[10., 0, 20, 10], [11, 7, 13, 9], [30, 20, 40, 30], [50, 50, 60, 60]])
    labels = torch.tensor([0, 1, 2, 3])
    cells, b, lab = yolov1_targets(boxes, labels, 10, (3, 4))
    got = sorted(zip(cells.tolist(), lab.tolist()))
    # (35, 25) and (55, 55) both fall in cell 11 (row 2, col 3); equal areas: the first stays.
    assert got == [(1, 0), (11, 2)]
    assert torch.equal(b[lab == 0][0], boxes[0])


def test_yolov1_loss_matches_hand_computation_one_object_one_cell():
    # One image, a 2 x 2 grid of 16-pixel cells, B = 2 predictors, K = 2 classes.
    stride, norm, k, b = 16.0, 32.0, 2, 2
    pred = torch.zeros(1, 2, 2, 5 * b + k, dtype=torch.float64)
    # Cell (row 1, col 0) holds the object [4, 20, 20, 36] (centre (12, 28), 16 x 16).
    # Predictor 0: centre offset logits 0 -> (0.5, 0.5) -> centre (8, 24), sqrt size 0.5 -> 8 x 8.
    # Predictor 1: logits giving offsets (0.75, 0.75) -> centre (12, 28), sqrt size 0.7 -> 15.68.
    logit75 = math.log(3.0)
    pred[0, 1, 0, 0:5] = torch.tensor([0.0, 0.0, 0.5, 0.5, 0.3], dtype=torch.float64)
    pred[0, 1, 0, 5:10] = torch.tensor([logit75, logit75, 0.7, 0.7, -0.2], dtype=torch.float64)
    pred[0, 1, 0, 10:12] = torch.tensor([1.0, 0.0])  # class scores (softmax)
    pred[0, 0, 1, 4] = 0.8                            # another cell's predictor 0 confidence
    t = [_target([[4, 20, 20, 36]], [1])]
    got = yolov1_loss(pred, t, stride, norm, k, lambda_coord=5.0, lambda_noobj=0.5)

    gt = [4, 20, 20, 36]
    box0 = [8 - 4, 24 - 4, 8 + 4, 24 + 4]
    s1 = 0.7 ** 2 * norm
    box1 = [12 - s1 / 2, 28 - s1 / 2, 12 + s1 / 2, 28 + s1 / 2]
    iou0, iou1 = _iou(box0, gt), _iou(box1, gt)
    assert iou1 > iou0  # predictor 1 is responsible
    coord = (0.75 - 0.75) ** 2 * 2 + 2 * (0.7 - math.sqrt(16 / norm)) ** 2
    conf = (_sigmoid(-0.2) - iou1) ** 2
    # Every other predictor: predictor 0 of this cell, the two of the other three cells.
    others = [_sigmoid(0.3), _sigmoid(0.8)] + [_sigmoid(0.0)] * 5
    noobj = sum(c ** 2 for c in others)
    p1 = math.exp(1) / (math.exp(1) + 1)
    cls = (p1 - 0) ** 2 + ((1 - p1) - 1) ** 2
    assert got["loss_coord"].item() == pytest.approx(5.0 * coord, abs=1e-9)
    assert got["loss_conf"].item() == pytest.approx(conf, abs=1e-9)
    assert got["loss_noobj"].item() == pytest.approx(0.5 * noobj, abs=1e-9)
    assert got["loss_class"].item() == pytest.approx(cls, abs=1e-9)


def test_yolov1_loss_divides_by_images_and_is_differentiable():
    pred = torch.randn(2, 3, 3, 12, dtype=torch.float64, requires_grad=True)
    t = [_target([[2, 2, 20, 30]], [0]), _target(np.zeros((0, 4)), [])]
    one = yolov1_loss(pred[:1], t[:1], 10, 40, 2)
    two = yolov1_loss(torch.cat([pred[:1], pred[:1]]), [t[0], t[0]], 10, 40, 2)
    for key in one:
        assert two[key].item() == pytest.approx(one[key].item())
    sum(yolov1_loss(pred, t, 10, 40, 2).values()).backward()
    assert torch.isfinite(pred.grad).all()


# ----------------------------------------------------------------------------- anchors
def _layout(anchors_per_level, strides, sizes):
    counts = [h * w * a for (h, w), a in zip(sizes, anchors_per_level)]
    return [sum(counts[:i]) for i in range(len(counts))]


def test_yolo_assign_picks_best_anchor_at_its_level_and_cell():
    shapes = torch.tensor([[10., 10], [20, 40], [40, 40], [80, 80]])
    level = torch.tensor([0, 0, 1, 1])
    strides, sizes, per = (8, 16), [(8, 8), (4, 4)], [2, 2]
    offsets = _layout(per, strides, sizes)
    # Box 36 x 36 centred (40, 24): best shape 40 x 40 (level 1, anchor 0), cell (1, 2) of stride 16.
    # Box 18 x 42 centred (12, 30): best 20 x 40 (level 0, anchor 1), cell (3, 1) of stride 8.
    boxes = torch.tensor([[22., 6, 58, 42], [3, 9, 21, 51]])
    prior, obj = yolo_assign(boxes, shapes, level, strides, sizes, offsets, per)
    expected = {offsets[1] + (1 * 4 + 2) * 2 + 0: 0, offsets[0] + (3 * 8 + 1) * 2 + 1: 1}
    assert dict(zip(prior.tolist(), obj.tolist())) == expected


def test_yolo_assign_threshold_adds_anchors_and_shared_prior_keeps_best_fit():
    shapes = torch.tensor([[10., 10], [12, 12], [40, 40]])
    level = torch.tensor([0, 0, 0])
    strides, sizes, per = (8,), [(4, 4)], [3]
    offsets = [0]
    # Both boxes centre in cell (0, 0); 11 x 11 fits 10 x 10 (0.826) and 12 x 12 (0.840) best;
    # 12 x 12 fits 12 x 12 exactly.
    boxes = torch.tensor([[-1.5, -1.5, 9.5, 9.5], [-2., -2, 10, 10]])
    prior, obj = yolo_assign(boxes, shapes, level, strides, sizes, offsets, per)
    assert dict(zip(prior.tolist(), obj.tolist())) == {1: 1}  # both want anchor 1; box 1 fits it better
    prior, obj = yolo_assign(boxes, shapes, level, strides, sizes, offsets, per, assign_iou=0.8)
    assert dict(zip(prior.tolist(), obj.tolist())) == {0: 0, 1: 1}  # anchor 0 reaches 0.8 for box 0
    empty = yolo_assign(torch.zeros(0, 4), shapes, level, strides, sizes, offsets, per)
    assert empty[0].numel() == 0


def _tiny_yolo(anchors, strides):
    torch.manual_seed(0)
    return YOLONet(VGGStyle(widths=(4, 4, 4, 4)), 2, anchors, strides, ignore_iou=0.5).double()


def test_yolo_anchor_loss_matches_brute_force_on_one_object():
    net = _tiny_yolo([[[16., 16]], [[32., 48]]], (8, 16))
    feats = [torch.zeros(1, 4, 4, 4, dtype=torch.float64), torch.zeros(1, 4, 2, 2, dtype=torch.float64)]
    rng = np.random.default_rng(0)
    outs = [torch.tensor(rng.normal(0, 0.5, (1, 7, 4, 4))), torch.tensor(rng.normal(0, 0.5, (1, 7, 2, 2)))]
    gt = [4.0, 6.0, 34.0, 50.0]  # 30 x 44, centre (19, 28): anchor 32 x 48 at stride 16, cell (1, 1)
    got = net.loss(outs, feats, [_target([gt], [1])], [(32, 32)], (32, 32))

    # Brute force over every prior.
    priors = []
    for lvl, (s, (h, w), (aw, ah)) in enumerate(zip((8, 16), ((4, 4), (2, 2)), ((16, 16), (32, 48)))):
        for i in range(h):
            for j in range(w):
                priors.append((lvl, i, j, s, aw, ah, outs[lvl][0, :, i, j].tolist()))
    resp = [p for p in priors if p[0] == 1 and p[1] == 1 and p[2] == 1]
    assert len(resp) == 1
    obj_loss = 0.0
    for lvl, i, j, s, aw, ah, r in priors:
        cx, cy = (j + _sigmoid(r[0])) * s, (i + _sigmoid(r[1])) * s
        w, h = aw * math.exp(r[2]), ah * math.exp(r[3])
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        p = _sigmoid(r[4])
        if (lvl, i, j) == (1, 1, 1):
            obj_loss += -math.log(p)
        elif _iou(box, gt) <= 0.5:
            obj_loss += -math.log(1 - p)
    r = resp[0][6]
    fx, fy = 19 / 16 - 1, 28 / 16 - 1

    def bce(logit, target):
        q = _sigmoid(logit)
        return -(target * math.log(q) + (1 - target) * math.log(1 - q))

    box_loss = bce(r[0], fx) + bce(r[1], fy) + (r[2] - math.log(30 / 32)) ** 2 + (r[3] - math.log(44 / 48)) ** 2
    cls_loss = -(r[6] - math.log(math.exp(r[5]) + math.exp(r[6])))
    assert got["loss_obj"].item() == pytest.approx(obj_loss, rel=1e-9)
    assert got["loss_box"].item() == pytest.approx(box_loss, rel=1e-9)
    assert got["loss_class"].item() == pytest.approx(cls_loss, rel=1e-9)


def test_flatten_levels_follows_grid_priors_order():
    shapes = torch.tensor([[4., 6], [8, 8]])
    pri = grid_priors(shapes, 8, 2, 3)
    assert pri.shape == (12, 4)
    # Prior p = (row * 3 + col) * 2 + a, centred on ((col + .5) 8, (row + .5) 8).
    p = (1 * 3 + 2) * 2 + 1
    assert pri[p].tolist() == [20 - 4, 12 - 4, 20 + 4, 12 + 4]
    out = torch.arange(2 * 5 * 2 * 3, dtype=torch.float32).reshape(1, 2 * 5, 2, 3)
    flat = flatten_levels([out], [2], 5)
    assert flat.shape == (1, 12, 5)
    assert flat[0, p].tolist() == out[0, 5:10, 1, 2].tolist()


def test_paired_iou():
    a = torch.tensor([[0., 0, 10, 10], [0, 0, 0, 0]])
    b = torch.tensor([[5., 5, 15, 15], [0, 0, 0, 0]])
    assert paired_iou(a, b).tolist() == pytest.approx([25 / 175, 0.0])


def test_yolov1net_and_yolonet_shapes_and_image_coordinates():
    torch.manual_seed(0)
    ims = [torch.rand(3, 37, 50), torch.rand(3, 64, 29)]
    for net in (YOLOv1Net(VGGStyle(widths=(4, 4, 4, 4)), 3, 16, score_thresh=0.0),
                _tiny_yolo([[[8., 8]], [[20., 20]]], (8, 16)).float()):
        net.score_thresh = 0.0
        net.eval()
        with torch.no_grad():
            dets = net(ims)
        for d, im in zip(dets, ims):
            h, w = im.shape[-2:]
            assert len(d["boxes"]) > 0
            assert (d["boxes"][:, 0] >= 0).all() and (d["boxes"][:, 2] <= w).all()
            assert (d["boxes"][:, 1] >= 0).all() and (d["boxes"][:, 3] <= h).all()
            assert d["labels"].max() < 3 if isinstance(net, YOLOv1Net) else d["labels"].max() < 2
