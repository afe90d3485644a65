import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pydetect import models, ops  # noqa: E402
from pydetect.models.rpn import _flatten  # noqa: E402


# ----------------------------------------------------------------------------- BoxCoder
def test_box_coder_hand_worked():
    coder = models.BoxCoder()
    p = torch.tensor([[0.0, 0, 10, 10]])
    g = torch.tensor([[5.0, 0, 15, 20]])  # centre +5 x, +5 y; width x1, height x2
    d = coder.encode(g, p)
    torch.testing.assert_close(d, torch.tensor([[0.5, 0.5, 0.0, math.log(2.0)]]))
    d10 = models.BoxCoder((10, 10, 5, 5)).encode(g, p)
    torch.testing.assert_close(d10, torch.tensor([[5.0, 5.0, 0.0, 5 * math.log(2.0)]]))
    torch.testing.assert_close(coder.decode(d, p), g)


def test_box_coder_round_trip_and_clip():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    p = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    xy = torch.rand(50, 2, generator=g) * 100
    t = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    coder = models.BoxCoder((10, 10, 5, 5))
    torch.testing.assert_close(coder.decode(coder.encode(t, p), p), t, atol=1e-3, rtol=1e-4)
    # Class-specific deltas (R, 4K) decode to (R, 4K); huge dw is clipped, no inf.
    d = torch.zeros(1, 8)
    d[0, 6] = 1e4
    out = coder.decode(d, torch.tensor([[0.0, 0, 10, 10]]))
    assert out.shape == (1, 8) and torch.isfinite(out).all()
    torch.testing.assert_close(out[0, :4], torch.tensor([0.0, 0, 10, 10]))


# ----------------------------------------------------------------------------- Matcher
def test_matcher_hand_worked():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    boxes = torch.tensor([[0.0, 0, 10, 10],     # IoU 1 with gt 0 -> 0
                          [0.0, 0, 10, 5],      # IoU 0.5 -> between
                          [50.0, 50, 60, 60],   # IoU 0 -> below
                          [20.0, 20, 30, 24]])  # IoU 0.4 with gt 1 -> between (best for gt 1)
    m = models.Matcher(0.7, 0.3)(gt, boxes)
    assert m.tolist() == [0, -2, -1, -2]
    m = models.Matcher(0.7, 0.3, allow_low_quality_matches=True)(gt, boxes)
    assert m.tolist() == [0, -2, -1, 1]
    assert models.Matcher(0.5, 0.5)(torch.zeros(0, 4), boxes).tolist() == [-1] * 4
    assert models.Matcher(0.5, 0.5)(gt, torch.zeros(0, 4)).shape == (0,)
    with pytest.raises(ValueError):
        models.Matcher(0.3, 0.7)


# ----------------------------------------------------------------------------- sampler
def test_balanced_sampler_counts():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    pos, neg = models.BalancedSampler(16, 0.25)(labels, torch.Generator().manual_seed(0))
    assert int(pos.sum()) == 4 and int(neg.sum()) == 12
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    # Few positives: negatives fill the batch; ignored boxes are never drawn.
    labels = torch.tensor([2] + [0] * 30 + [-1] * 30)
    pos, neg = models.BalancedSampler(16, 0.5)(labels)
    assert int(pos.sum()) == 1 and int(neg.sum()) == 15 and not (pos | neg)[31:].any()
    # Same generator seed, same draw.
    a = models.BalancedSampler(8, 0.5)(labels, torch.Generator().manual_seed(3))
    b = models.BalancedSampler(8, 0.5)(labels, torch.Generator().manual_seed(3))
    assert torch.equal(a[1], b[1])


def test_balanced_sampler_groups_share_the_positives():
    # One object with 1 positive box, one with 9; 2 positives drawn. Uniformly, the lone box
    # is drawn with probability 1 - (9/10)(8/9) = 0.2; with group balancing the first draw
    # is a fair coin between the objects, then 1 / (1 + 8/9): 0.5 + 0.5 * 9/17 = 0.765.
    labels = torch.tensor([1] * 10 + [0] * 20)
    groups = torch.tensor([0] + [1] * 9 + [-1] * 20)
    sampler, g = models.BalancedSampler(8, 0.25), torch.Generator().manual_seed(0)
    trials = 4000
    hits = sum(bool(sampler(labels, g, groups)[0][0]) for _ in range(trials))
    assert abs(hits / trials - (0.5 + 0.5 * 9 / 17)) < 0.03
    hits = sum(bool(sampler(labels, g)[0][0]) for _ in range(trials))
    assert abs(hits / trials - 0.2) < 0.03
    pos, neg = sampler(labels, g, groups)
    assert int(pos.sum()) == 2 and int(neg.sum()) == 6 and not (pos & neg).any()


# ----------------------------------------------------------------------------- anchors
def test_anchor_shapes_and_order():
    gen = models.AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),))
    cell = gen.cell_anchors(0)
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    torch.testing.assert_close(torch.sqrt(w * h), torch.tensor([16.0, 32, 16, 32, 16, 32]))
    torch.testing.assert_close(h / w, torch.tensor([0.5, 0.5, 1, 1, 2, 2]))
    anchors = gen.grid_anchors([(3, 4)], [(8, 8)])
    assert anchors.shape == (3 * 4 * 6, 4)
    # The RPN head's flattened outputs follow the same (row, column, anchor) order.
    logits = torch.zeros(1, 6, 3, 4)
    deltas = torch.zeros(1, 24, 3, 4)
    for a in range(6):
        for y in range(3):
            for x in range(4):
                logits[0, a, y, x] = 100 * y + 10 * x + a
    flat_l, flat_d = _flatten([logits], [deltas])
    for i in (0, 7, 30, 71):
        code = int(flat_l[0, i])
        y, x, a = code // 100, (code // 10) % 10, code % 10
        cx, cy = (anchors[i, 0] + anchors[i, 2]) / 2, (anchors[i, 1] + anchors[i, 3]) / 2
        assert (float(cx), float(cy)) == pytest.approx(((x + 0.5) * 8, (y + 0.5) * 8))
        torch.testing.assert_close(anchors[i] - torch.tensor([cx, cy, cx, cy]), cell[a])
    assert flat_d.shape == (1, 72, 4)


# ----------------------------------------------------------------------------- RPN
def tiny_rpn(**kw):
    gen = models.AnchorGenerator(((8, 16),), ((1.0,),))
    head = models.RPNHead(4, 2)
    for p in head.parameters():
        torch.nn.init.zeros_(p)
    return models.RegionProposalNetwork(gen, head, **kw)


def test_rpn_losses_hand_worked():
    rpn = tiny_rpn(batch_size_per_image=32, positive_fraction=0.5)
    rpn.train()
    feats = [torch.randn(1, 4, 4, 4)]
    gt = torch.tensor([[4.0, 4, 12, 12]])  # exactly the size-8 anchor of cell (1, 1)... centred at 8, 8
    proposals, losses = rpn((32, 32), [(32, 32)], feats, [{"boxes": gt, "labels": torch.tensor([0])}])
    # Zero head: every logit is 0, so BCE is log 2 whatever the labels.
    assert losses["loss_objectness"].item() == pytest.approx(math.log(2.0), rel=1e-6)
    # Zero deltas: the box loss is the smooth L1 of the positives' targets.
    anchors = rpn.anchor_generator((32, 32), feats)
    m = rpn.matcher(gt, anchors)
    pos = m >= 0
    targets = rpn.box_coder.encode(gt[m[pos]], anchors[pos])
    n_sampled = min(int(pos.sum()), 16) + min(32 - min(int(pos.sum()), 16), int((m == -1).sum()))
    expected = models.smooth_l1(torch.zeros_like(targets), targets, 1 / 9) / n_sampled
    assert losses["loss_rpn_box_reg"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert len(proposals) == 1 and proposals[0].shape[1] == 4


def test_rpn_filter_proposals_clips_and_suppresses():
    rpn = tiny_rpn(nms_thresh=0.5, post_nms_top_n={"training": 3, "testing": 3})
    rpn.eval()
    boxes = torch.tensor([[[-5.0, -5, 10, 10], [0, 0, 10, 10.5], [20, 20, 40, 40], [0, 0, 0.0001, 5]]])
    logits = torch.tensor([[3.0, 2.0, 1.0, 5.0]])
    out = rpn.filter_proposals(boxes, logits, [(32, 32)], [4])[0]
    # Box 3 is too thin, box 1 overlaps box 0 (clipped to 0..10), box 2 is clipped to 32.
    torch.testing.assert_close(out, torch.tensor([[0.0, 0, 10, 10], [20, 20, 32, 32]]))


# ----------------------------------------------------------------------------- RoI heads
def test_fastrcnn_loss_hand_worked():
    logits = torch.zeros(4, 3)
    reg = torch.zeros(4, 12)
    labels = torch.tensor([0, 2, 1, 0])
    targets = torch.tensor([[0.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0.05, 0, 0], [9, 9, 9, 9]])
    cls, box = models.fastrcnn_loss(logits, reg, labels, targets)
    assert cls.item() == pytest.approx(math.log(3))
    # |1| >= 1/9: 1 - 1/18; |0.05| < 1/9: 0.5 * 0.05^2 * 9; background rows ignored; / 4 RoIs.
    assert box.item() == pytest.approx((1 - 1 / 18 + 0.5 * 0.05 ** 2 * 9) / 4, rel=1e-6)


def test_roi_heads_postprocess_hand_worked():
    heads = models.RoIHeads(None, None, None, score_thresh=0.1, nms_thresh=0.5)
    props = [torch.tensor([[10.0, 10, 30, 30], [12, 12, 30, 30], [50, 50, 60, 60]])]
    logits = torch.tensor([[0.0, 0, 5], [0.0, 0, 4], [5.0, 0, 0]])
    out = heads.postprocess(logits, torch.zeros(3, 12), props, [(64, 64)])[0]
    # Class 2 (label 1 without background) wins for the two overlapping boxes; NMS keeps one.
    s = math.exp(5) / (2 + math.exp(5))
    keep = out["scores"] > 0.5
    torch.testing.assert_close(out["boxes"][keep], torch.tensor([[10.0, 10, 30, 30]]))
    assert out["labels"][keep].tolist() == [1]
    assert out["scores"][keep].item() == pytest.approx(s, rel=1e-6)
    # The background-dominated box yields no score above 0.1 x ... except its class scores.
    assert not ((out["boxes"][:, 0] == 50) & (out["scores"] > 0.1)).any()


# ----------------------------------------------------------------------------- backbones
def test_backbones_shapes():
    x = torch.randn(2, 3, 64, 96)
    vgg = models.VGGStyle()
    f = vgg(x)["0"]
    assert f.shape == (2, vgg.out_channels, 8, 12) and vgg.stride == 8
    assert sum(p.numel() for p in vgg.parameters()) < 1_000_000
    res = models.ResNet18Style(widths=(8, 16, 32, 64), return_layers=(2, 3, 4))
    out = res(x)
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(8, 12), (4, 6), (2, 3)]
    fpn = models.BackboneWithFPN(res, 16)
    assert [v.shape[1] for v in fpn(x).values()] == [16, 16, 16]
    full = models.ResNet18Style()
    n = sum(p.numel() for p in full.parameters())
    assert 11_000_000 < n < 11_300_000  # ResNet-18 without its fc layer: 11.18 M
    clf = models.CropClassifier(models.VGGStyle(), 11)
    assert clf(torch.randn(3, 3, 40, 40)).shape == (3, 11)


def test_roi_pooler_scale_is_the_backbone_stride_or_inferred_from_the_image_sizes():
    torch.manual_seed(0)
    f = torch.randn(1, 4, 10, 12)  # a stride-8 map of an 80 x 96 padded batch holding a 50 x 60 image
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 56.0]])]
    fixed = models.RoIPooler("0", 3, spatial_scale=1 / 8)({"0": f}, boxes, [(50, 60)])
    assert torch.equal(fixed, ops.roi_align(f, boxes, 3, 1 / 8, 2, True))
    # Inferred: 2 ** round(log2(10 / 50)) = 1/4, wrong here because padding adds 60% to the image.
    inferred = models.RoIPooler("0", 3)({"0": f}, boxes, [(50, 60)])
    assert torch.equal(inferred, ops.roi_align(f, boxes, 3, 1 / 4, 2, True))
    assert torch.equal(models.RoIPooler("0", 3)({"0": f}, boxes, [(80, 96)]), fixed)
    for bad in (0, -0.5, 2.0):
        with pytest.raises(ValueError, match="spatial_scale"):
            models.RoIPooler("0", 3, spatial_scale=bad)


def test_two_stage_detectors_pool_at_their_backbone_stride():
    from pydetect.detectors import FastRCNN
    from pydetect.detectors.two_stage import backbone_scale

    for backbone, stride in ((models.VGGStyle(), 8), (models.ResNet18Style(return_layers=(3,)), 16)):
        assert backbone_scale(backbone) == 1 / stride
        assert FastRCNN()._build(backbone, 3).roi_heads.box_roi_pool.spatial_scale == 1 / stride
    assert backbone_scale(torch.nn.Conv2d(3, 3, 1)) is None


# ----------------------------------------------------------------------------- whole model
def small_model(num_classes=3):
    bb = models.VGGStyle(widths=(8, 8, 16, 16), depths=(1, 1, 1, 1))
    rpn = models.RegionProposalNetwork(models.AnchorGenerator(((16, 32),), ((1.0,),)),
                                       models.RPNHead(16, 2), batch_size_per_image=32)
    heads = models.RoIHeads(models.RoIPooler("0", 4), models.TwoMLPHead(16 * 16, 32),
                            models.FastRCNNPredictor(32, num_classes + 1), batch_size_per_image=16)
    return models.GeneralizedRCNN(bb, rpn, heads, size_divisible=8)


def test_generalized_rcnn_image_scale_is_resizing_outside_the_model():
    # A model with image_scale=2 must equal the same weights at scale 1 fed with images
    # resized by 2 (targets and proposals too), its boxes divided by 2.
    torch.manual_seed(0)
    scaled = small_model()
    scaled.image_scale = 2.0
    plain = small_model()
    plain.load_state_dict(scaled.state_dict())
    imgs = [torch.rand(3, 40, 48), torch.rand(3, 24, 32)]
    big = [torch.nn.functional.interpolate(im[None], size=(2 * im.shape[1], 2 * im.shape[2]), mode="bilinear",
                                           align_corners=False)[0] for im in imgs]
    scaled.eval(), plain.eval()
    with torch.no_grad():
        a, b = scaled(imgs), plain(big)
        pa = scaled(imgs, proposals=[torch.tensor([[2.0, 3, 20, 30]]), torch.tensor([[1.0, 1, 9, 12]])])
        pb = plain(big, proposals=[torch.tensor([[4.0, 6, 40, 60]]), torch.tensor([[2.0, 2, 18, 24]])])
    for x, y in list(zip(a, b)) + list(zip(pa, pb)):
        torch.testing.assert_close(x["boxes"], y["boxes"] / 2)
        torch.testing.assert_close(x["scores"], y["scores"])
        assert torch.equal(x["labels"], y["labels"])
    assert sum(len(x["boxes"]) for x in a + pa) > 0
    targets = [{"boxes": torch.tensor([[5.0, 5, 25, 30]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[2.0, 4, 12, 20]]), "labels": torch.tensor([0])}]
    scaled.train(), plain.train()
    torch.manual_seed(1)
    la = scaled(imgs, targets)
    torch.manual_seed(1)
    lb = plain(big, [dict(t, boxes=t["boxes"] * 2) for t in targets])
    for k in lb:
        torch.testing.assert_close(la[k], lb[k])
    with pytest.raises(ValueError, match="image_scale"):
        models.GeneralizedRCNN(scaled.backbone, scaled.rpn, scaled.roi_heads, image_scale=0)


def test_generalized_rcnn_train_and_eval_with_empty_images():
    torch.manual_seed(0)
    model = small_model()
    imgs = [torch.rand(3, 40, 50), torch.rand(3, 33, 47)]
    targets = [{"boxes": torch.tensor([[5.0, 5, 25, 30]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    model.train()
    losses = model(imgs, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        out = model(imgs)
    assert len(out) == 2 and all(set(o) == {"boxes", "scores", "labels"} for o in out)
    for o, im in zip(out, imgs):
        assert (o["boxes"][:, 2] <= im.shape[2]).all() and (o["labels"] < 3).all()
    # Precomputed proposals (Fast R-CNN) bypass the RPN.
    with torch.no_grad():
        out = model(imgs, proposals=[torch.tensor([[0.0, 0, 20, 20]]), torch.zeros(0, 4)])
    assert len(out) == 2
    with pytest.raises(ValueError, match="targets"):
        model.train()(imgs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cached_proposals_saves_and_resumes_without_searching(tmp_path):
    from pydetect.engine import cached_proposals

    images = [np.zeros((8, 8, 3), np.uint8), np.ones((6, 9, 3), np.uint8)]
    calls = []

    def search(image):
        calls.append(image.shape)
        return [[0, 0, image.shape[1], image.shape[0]], [1, 1, 3, 3]]

    first = cached_proposals(images, search, str(tmp_path), resume=True)
    assert len(calls) == 2 and (tmp_path / "proposals.npz").exists()
    again = cached_proposals(images, search, str(tmp_path), resume=True)
    assert len(calls) == 2  # loaded, not searched again
    for a, b in zip(first, again):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    np.testing.assert_array_equal(again[1], [[0, 0, 9, 6], [1, 1, 3, 3]])
    cached_proposals(images, search, str(tmp_path), resume=False)
    assert len(calls) == 4  # resume=False recomputes
