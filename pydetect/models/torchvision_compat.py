"""torchvision's Faster R-CNN as a pydetect network: its settings, its weights, its function.

A torchvision ``FasterRCNN`` (``fasterrcnn_resnet50_fpn``, ``fasterrcnn_mobilenet_v3_large_fpn``
and the same layouts on ResNet-18/34) becomes a :class:`~pydetect.models.GeneralizedRCNN` that
computes the same outputs: same resize and padding, anchors on torchvision's integer grid,
RoIAlign with ``aligned=False``, the two-layer box head without pydetect's pooled-feature
branch, and torchvision's thresholds. Labels differ only in their origin: torchvision's label
``k`` (1..K, 0 being background) is pydetect's ``k - 1``.

Not converted (ValueError): the ``_v2`` detectors (batch norm in the FPN, a two-convolution RPN
head, a convolutional box head), other normalisations or paddings than torchvision's defaults.

Glossary: K object classes (the predictor's K + 1 outputs include background).
"""

from __future__ import annotations

import torch
from torch import nn

from pydetect import ops
from pydetect.models.anchors import AnchorGenerator
from pydetect.models.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from pydetect.models.generalized_rcnn import GeneralizedRCNN
from pydetect.models.resnet import load_weights
from pydetect.models.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from pydetect.models.rpn import RegionProposalNetwork, RPNHead

__all__ = ["TORCHVISION_DEFAULTS", "build_torchvision_faster_rcnn", "torchvision_settings",
           "torchvision_state_dict", "check_anchor_count", "architecture_defaults", "from_torchvision"]

#: torchvision's FasterRCNN defaults, as pydetect's FasterRCNN parameters name them (anchor sizes:
#: per pyramid level; the MobileNetV3 detector's differ, see :func:`architecture_defaults`).
TORCHVISION_DEFAULTS = {
    "anchor_sizes": ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,)),
    "aspect_ratios": (0.5, 1.0, 2.0),
    "min_size": (800,),
    "max_size": 1333,
    "rpn_pre_nms_top_n": (2000, 1000),
    "rpn_post_nms_top_n": (2000, 1000),
    "rpn_nms_thresh": 0.7,
    "rpn_score_thresh": 0.0,
    "rpn_batch_size_per_image": 256,
    "roi_batch_size_per_image": 512,
    "representation_size": 1024,
    "box_score_thresh": 0.05,
    "box_nms_thresh": 0.5,
    "detections_per_img": 100,
}


def build_torchvision_faster_rcnn(backbone, num_classes, *, anchor_sizes, aspect_ratios, min_size, max_size,
                                  rpn_pre_nms_top_n, rpn_post_nms_top_n, rpn_nms_thresh, rpn_score_thresh,
                                  rpn_batch_size_per_image, roi_batch_size_per_image, representation_size,
                                  box_score_thresh, box_nms_thresh, detections_per_img, balance_objects=False):
    """A GeneralizedRCNN laid out and computing as torchvision's FasterRCNN on a torchvision-layout
    FPN ``backbone`` (:func:`pydetect.models.build_backbone`), for ``num_classes`` object classes.

    ``anchor_sizes`` has one tuple of sizes per pyramid level (``"pool"`` included), each with as
    many sizes; the other arguments are :data:`TORCHVISION_DEFAULTS`' settings.
    """
    sizes = tuple(tuple(float(s) for s in level) for level in anchor_sizes)
    if len({len(level) for level in sizes}) != 1:
        raise ValueError(f"anchor_sizes must give every level as many sizes (one RPN head serves them all), "
                         f"got {sizes}")
    if len(sizes) != len(backbone.level_names):
        raise ValueError(f"anchor_sizes gives {len(sizes)} levels, the backbone has {len(backbone.level_names)} "
                         f"({backbone.level_names})")
    anchor_gen = AnchorGenerator(sizes, (tuple(aspect_ratios),), torchvision_grid=True)
    c = backbone.out_channels
    rpn = RegionProposalNetwork(
        anchor_gen, RPNHead(c, anchor_gen.num_anchors_per_location()[0]),
        batch_size_per_image=rpn_batch_size_per_image,
        pre_nms_top_n={"training": rpn_pre_nms_top_n[0], "testing": rpn_pre_nms_top_n[1]},
        post_nms_top_n={"training": rpn_post_nms_top_n[0], "testing": rpn_post_nms_top_n[1]},
        nms_thresh=rpn_nms_thresh, score_thresh=rpn_score_thresh)
    names = [n for n in backbone.level_names if n != "pool"]
    pooler = ops.MultiScaleRoIAlign(names, 7, 2)  # canonical 224 / level 4, aligned=False: torchvision's
    heads = RoIHeads(pooler, TwoMLPHead(c * 49, representation_size), FastRCNNPredictor(representation_size,
                                                                                         num_classes + 1),
                     batch_size_per_image=roi_batch_size_per_image, score_thresh=box_score_thresh,
                     nms_thresh=box_nms_thresh, detections_per_img=detections_per_img,
                     balance_objects=balance_objects)
    min_size = (min_size,) if isinstance(min_size, int) else tuple(min_size)
    return GeneralizedRCNN(backbone, rpn, heads, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
                           size_divisible=32, min_size=min_size, max_size=max_size, channels_last=False)


# ------------------------------------------------------------------------------------ reading
def _unwrap(state):
    for wrapper in ("model", "state_dict"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return state


def _architecture(state) -> str:
    """The pydetect backbone name of a torchvision detection state dict; ValueError for one
    pydetect does not convert."""
    keys = set(state)
    if "roi_heads.box_head.fc6.weight" not in keys or "rpn.head.cls_logits.weight" not in keys:
        raise ValueError("not a torchvision FasterRCNN state dict with a two-layer box head (keys "
                         "roi_heads.box_head.fc6.weight and rpn.head.cls_logits.weight are missing); the _v2 "
                         "detectors' convolutional box head is not supported")
    if "rpn.head.conv.1.0.weight" in keys:
        raise ValueError("an RPN head with two convolutions (fasterrcnn_resnet50_fpn_v2) is not supported")
    if "backbone.fpn.inner_blocks.0.1.weight" in keys:
        raise ValueError("an FPN with batch norm (fasterrcnn_resnet50_fpn_v2) is not supported")
    if "backbone.body.0.0.weight" in keys:  # MobileNetV3 features (IntermediateLayerGetter over them)
        return "mobilenet_v3_large_fpn"
    if "backbone.body.layer1.0.conv3.weight" in keys:
        return "resnet50_fpn"
    if "backbone.body.layer1.0.conv1.weight" in keys:
        return "resnet34_fpn" if "backbone.body.layer3.5.conv1.weight" in keys else "resnet18_fpn"
    raise ValueError("the state dict's backbone is neither a torchvision ResNet nor a MobileNetV3 with an FPN "
                     "(no backbone.body.layer1... or backbone.body.features... keys)")


def architecture_defaults(backbone: str) -> dict:
    """:data:`TORCHVISION_DEFAULTS` as torchvision's detector on ``backbone`` (a pydetect name) has them."""
    if backbone == "mobilenet_v3_large_fpn":  # torchvision's fasterrcnn_mobilenet_v3_large_fpn
        return dict(TORCHVISION_DEFAULTS, anchor_sizes=((32.0, 64.0, 128.0, 256.0, 512.0),) * 3,
                    rpn_score_thresh=0.05)
    return dict(TORCHVISION_DEFAULTS)


def torchvision_state_dict(state) -> dict:
    """A torchvision FasterRCNN state dict in pydetect's key names (the RPN head's convolution
    ``conv.0.0`` is pydetect's ``conv``; batch counters are dropped)."""
    out = {}
    for k, v in _unwrap(state).items():
        if k.endswith("num_batches_tracked"):
            continue
        out[k.replace("rpn.head.conv.0.0.", "rpn.head.conv.")] = v
    return out


def _num_classes(state) -> int:
    return int(state["roi_heads.box_predictor.cls_score.weight"].shape[0]) - 1


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"this torchvision model cannot be converted: {what}")


def torchvision_settings(source) -> dict:
    """pydetect FasterRCNN parameters that reproduce a torchvision FasterRCNN (a module: read from
    it; a state dict: the defaults of the detector its keys show), with ``backbone`` and
    ``num_classes`` (K, background excluded)."""
    if isinstance(source, nn.Module):
        state = torchvision_state_dict(source.state_dict())
    elif isinstance(source, dict):
        state = torchvision_state_dict(source)
    else:
        raise TypeError(f"source must be a torchvision FasterRCNN module or its state dict, got "
                        f"{type(source).__name__}")
    backbone = _architecture(state)
    settings = architecture_defaults(backbone)
    settings["backbone"] = backbone
    settings["num_classes"] = _num_classes(state)
    settings["representation_size"] = int(state["roi_heads.box_head.fc7.weight"].shape[0])
    if isinstance(source, nn.Module):
        settings.update(_module_settings(source))
    check_anchor_count(state, settings["anchor_sizes"], settings["aspect_ratios"])
    return settings


def check_anchor_count(state, anchor_sizes, aspect_ratios) -> None:
    """ValueError unless the RPN head of ``state`` predicts as many anchors per location as
    ``anchor_sizes`` (per level) x ``aspect_ratios`` give."""
    per_location = int(state["rpn.head.cls_logits.weight"].shape[0])
    anchors = len(anchor_sizes[0]) * len(aspect_ratios)
    if per_location != anchors:
        raise ValueError(f"the RPN head predicts {per_location} anchors per location, the anchor settings give "
                         f"{anchors} ({len(anchor_sizes[0])} sizes per level x {len(aspect_ratios)} ratios): pass "
                         f"anchor_sizes (per level) and aspect_ratios that match")


def _module_settings(model) -> dict:
    """Settings read from a torchvision FasterRCNN module, after checking what pydetect reproduces."""
    t, rpn, heads = model.transform, model.rpn, model.roi_heads
    _require(tuple(t.image_mean) == IMAGENET_MEAN and tuple(t.image_std) == IMAGENET_STD,
             f"image_mean / image_std {t.image_mean} / {t.image_std} are not ImageNet's")
    _require(t.size_divisible == 32 and getattr(t, "fixed_size", None) is None,
             "size_divisible must be 32 and fixed_size None")
    ratios = {tuple(float(r) for r in level) for level in rpn.anchor_generator.aspect_ratios}
    _require(len(ratios) == 1, "every level must have the same aspect ratios")
    _require((rpn.proposal_matcher.high_threshold, rpn.proposal_matcher.low_threshold) == (0.7, 0.3),
             "the RPN's matching thresholds must be 0.7 / 0.3")
    _require(rpn.fg_bg_sampler.positive_fraction == 0.5, "the RPN's positive fraction must be 0.5")
    _require(rpn.min_size == 1e-3, "the RPN's minimum proposal size must be 1e-3")
    pool = heads.box_roi_pool
    _require(tuple(pool.output_size) == (7, 7) and pool.sampling_ratio == 2,
             "the RoI pooler must be 7x7 with sampling ratio 2")
    _require((getattr(pool, "canonical_scale", 224), getattr(pool, "canonical_level", 4)) == (224, 4),
             "the RoI pooler's canonical scale and level must be 224 and 4")
    levels = [n for n in model.backbone.body.return_layers.values()] if hasattr(model.backbone.body, "return_layers") \
        else None
    _require(levels is None or [n for n in pool.featmap_names if n in levels] == list(levels),
             f"the RoI pooler must read every level below 'pool' ({levels}), reads {pool.featmap_names}")
    _require(type(heads.box_head).__name__ == "TwoMLPHead", "the box head must be a TwoMLPHead")
    _require(tuple(heads.box_coder.weights) == (10.0, 10.0, 5.0, 5.0), "box coder weights must be (10, 10, 5, 5)")
    _require((heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold) == (0.5, 0.5),
             "the RoI heads' matching thresholds must be 0.5 / 0.5")
    _require(heads.fg_bg_sampler.positive_fraction == 0.25, "the RoI heads' positive fraction must be 0.25")
    return {
        "anchor_sizes": tuple(tuple(float(s) for s in level) for level in rpn.anchor_generator.sizes),
        "aspect_ratios": ratios.pop(),
        "min_size": tuple(int(s) for s in t.min_size),
        "max_size": int(t.max_size),
        "rpn_pre_nms_top_n": (int(rpn._pre_nms_top_n["training"]), int(rpn._pre_nms_top_n["testing"])),
        "rpn_post_nms_top_n": (int(rpn._post_nms_top_n["training"]), int(rpn._post_nms_top_n["testing"])),
        "rpn_nms_thresh": float(rpn.nms_thresh),
        "rpn_score_thresh": float(rpn.score_thresh),
        "rpn_batch_size_per_image": int(rpn.fg_bg_sampler.batch_size_per_image),
        "roi_batch_size_per_image": int(heads.fg_bg_sampler.batch_size_per_image),
        "box_score_thresh": float(heads.score_thresh),
        "box_nms_thresh": float(heads.nms_thresh),
        "detections_per_img": int(heads.detections_per_img),
    }


def from_torchvision(source, **overrides):
    """A :class:`~pydetect.models.GeneralizedRCNN` computing what a torchvision FasterRCNN computes.

    Parameters
    ----------
    source : torchvision FasterRCNN module, or its state dict (a dict, or a path read with
        ``torch.load(weights_only=True)``)
        A module gives its settings (resize, anchors, thresholds); a state dict the defaults of
        the torchvision detector its keys show (``fasterrcnn_resnet50_fpn``,
        ``fasterrcnn_mobilenet_v3_large_fpn``, or a ResNet-18/34 on the same layout).
    **overrides
        Settings to use instead (:data:`TORCHVISION_DEFAULTS`' names), e.g. ``min_size=320``.

    Returns
    -------
    GeneralizedRCNN
        In eval mode, on the CPU. Its labels are torchvision's minus one.

    Raises
    ------
    ValueError
        For a detector pydetect does not reproduce (the ``_v2`` layouts, other normalisation),
        or weights that do not fit (naming the keys).
    """
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        source = torch.load(source, map_location="cpu", weights_only=True)
    settings = torchvision_settings(source)
    unknown = sorted(set(overrides) - set(TORCHVISION_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown settings {unknown}: expected some of {sorted(TORCHVISION_DEFAULTS)}")
    settings.update(overrides)
    state = source.state_dict() if isinstance(source, nn.Module) else source
    check_anchor_count(torchvision_state_dict(state), settings["anchor_sizes"], settings["aspect_ratios"])
    backbone_name, num_classes = settings.pop("backbone"), settings.pop("num_classes")
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave torch's RNG alone
        model = build_torchvision_faster_rcnn(build_backbone(backbone_name), num_classes, **settings)
    load_weights(model, torchvision_state_dict(state), ignore=())
    return model.eval()
