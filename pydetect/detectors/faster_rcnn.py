"""Faster R-CNN (Ren, He, Girshick, Sun, NeurIPS 2015) as a pydetect estimator.

An RPN and a Fast R-CNN head share one backbone and are trained end to end. Built from
:mod:`pydetect.models`; the RoI features come from pydetect's C++ RoIAlign.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from pydetect import models, ops
from pydetect._params import Bool, Check, Choice, Fraction, Int, OneOf, Optional, Path, Positive, Real, Sequence
from pydetect._validation import MAX_SCALE, as_float_array, check_int
from pydetect.detectors.cnn import MODULE
from pydetect.detectors.pretraining import Pretraining
from pydetect.detectors.two_stage import TwoStageEstimator, backbone_scale
from pydetect.models.anchors import fit_anchors
from pydetect.models.generalized_rcnn import resized_size
from pydetect.models.resnet import load_weights
from pydetect.models.torchvision_compat import (architecture_defaults, build_torchvision_faster_rcnn,
                                                check_anchor_count, torchvision_settings, torchvision_state_dict)
from pydetect.models.kmeans import kmeans_anchors

__all__ = ["FasterRCNN"]


def _check_anchors(value, fpn=False):
    """None, "kmeans", or a (k, 2) float64 array of positive finite (width, height) shapes
    (with ``fpn``, k a multiple of 3)."""
    if value is None or (isinstance(value, str) and value == "kmeans"):
        return value
    expected = "None, 'kmeans' or a (k, 2) sequence of positive (width, height) anchor shapes"
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        raise ValueError(f"anchors must be {expected}, got {value!r}")
    try:
        arr, _ = as_float_array(value, "anchors", dtype=np.float64)
    except TypeError as exc:
        raise ValueError(f"anchors must be {expected} ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(f"anchors must be {expected}, got an array of shape {tuple(arr.shape)}")
    if (arr <= 0).any():
        raise ValueError(f"anchors must hold positive widths and heights, got {arr.tolist()}")
    if fpn and arr.shape[0] % 3:
        raise ValueError(f"with fpn=True the number of anchor shapes must be a multiple of 3 (the same "
                         f"number on each of the 3 levels), got {arr.shape[0]}")
    return arr


def _check_anchor_form(value, name):
    """The ``anchors`` spec: its form alone (the FPN's multiple of 3 is checked with ``fpn``)."""
    _check_anchors(value)
    return value


_FLAT_SIZES = Sequence(Positive(), min_length=1, of="positive numbers")
_LEVEL_SIZES = Sequence(Sequence(Positive(), min_length=1, of="positive numbers"), min_length=1,
                        of="per-level sequences of positive numbers")


def _check_anchor_sizes(value, name):
    """Sizes, or per-level tuples of sizes: the form the first item shows is checked, so that the
    error names the item at fault (``anchor_sizes[1] must be > 0``)."""
    try:
        nested = len(value) > 0 and not isinstance(value[0], numbers.Real) and not isinstance(value[0], str)
    except TypeError:
        nested = False
    return (_LEVEL_SIZES if nested else _FLAT_SIZES).check(value, name)


def _check_int_pair(value, name):
    """A (training, testing) pair of ints >= 1."""
    try:
        train, test = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (training, testing), got {value!r}") from None
    check_int(train, f"{name} (training)", minimum=1)
    check_int(test, f"{name} (testing)", minimum=1)
    return value


class FasterRCNN(TwoStageEstimator):
    """Faster R-CNN trained from scratch on a pydetect dataset.

    Training: the backbone is first pretrained as a (K + 1)-way classifier on object and
    background crops of the training set for ``pretrain.seconds`` (the offline analogue of
    ImageNet pretraining, without which from-scratch training on a CPU budget fails), then
    the whole detector is trained end to end with AdamW, warm-up and cosine decay, for
    ``max_iter`` iterations or ``train_seconds``, whichever comes first.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default "vgg"
        "vgg": pydetect's small VGG-style net (0.29 M parameters, stride 8).
        "resnet18": the ResNet-18 layout (stride 16, or FPN levels with ``fpn=True``).
        "resnet18_fpn", "resnet34_fpn", "resnet50_fpn", "mobilenet_v3_large_fpn": torchvision's
        layouts and parameter names with a feature pyramid (as in ``fasterrcnn_resnet50_fpn`` /
        ``fasterrcnn_mobilenet_v3_large_fpn``; frozen batch norm, ImageNet normalisation, one
        anchor size per level, no crop pretraining), for ``weights``.
        A module must return a dict of feature maps and have ``out_channels``.
    weights : path, optional
        torchvision-format weights for a torchvision-layout backbone, loaded before training: a
        classification network's (its body), a backbone-with-FPN's, or a whole detection
        model's (its backbone) state dict (:func:`pydetect.models.load_backbone_weights`; read
        with ``weights_only=True``). A model file saved after fitting holds the trained weights
        and does not need this file.
    trainable_layers : int, default 3
        For a torchvision-layout backbone, how many of its stages train, from the top (ResNet:
        0..5, MobileNetV3: 0..6), as torchvision's detectors count them.
    freeze_backbone_fraction : float in [0, 1), default 0.0
        For a torchvision-layout backbone: the whole body (every stage; its batch norm is
        frozen throughout) stays frozen for this share of the schedule (iterations, or time
        once it leads: :func:`pydetect.engine.schedule_fraction`) while the pyramid, RPN and
        box head train from the weights, then the stages ``trainable_layers`` selects train
        too. The optimiser holds them from the start (their AdamW moments start at the switch)
        and checkpoints record the switch, so a run resumed after it trains them
        (``history_["unfrozen_at"]``: the iteration of the switch). 0: they train throughout.
    fpn : bool, default False
    image_scale : float, default 1.0
        Images are resized by this factor inside the model (training and inference; boxes are
        returned in the input's pixels), and the pretraining crops are cut at that scale. Each
        iteration costs about ``image_scale ** 2`` as much; 1.0 because a larger scale lost AP50
        at equal training time (benchmarks/RESULTS.md, "Parameter evidence (moved from the
        docstrings)").
    min_size, max_size : int (or tuple of int for min_size) or None, default None
        Torchvision's resize policy, for the torchvision-layout backbones (with ``image_scale``
        1): each image is resized so that its shorter side is ``min_size``, unless its longer
        side would then exceed ``max_size`` (:func:`pydetect.models.generalized_rcnn.resized_size`);
        a tuple of min sizes: training draws one per image, inference uses the last.
        Boxes are returned in the input's pixels; anchor sizes are then in the resized
        images' pixels (fitted ones are fitted to the resized boxes). None: no resizing.
    compat : None or "torchvision", default None
        "torchvision": the network is torchvision's FasterRCNN on the torchvision-layout
        backbone, computing its function (anchors on its integer grid, RoIAlign with
        ``aligned=False``, its two-layer box head of ``representation_size`` without pydetect's
        pooled-feature branch, its normalisation and padding;
        :mod:`pydetect.models.torchvision_compat`). ``weights`` may then be a whole
        torchvision detection model's state dict: its RPN and box head load too, and its
        class predictor when it has as many classes. :meth:`from_torchvision` sets it.
    anchor_sizes, aspect_ratios : tuple of float, optional
        Default: fitted to the training boxes (size quantiles; h / w quantiles); with
        ``compat="torchvision"``, torchvision's for the backbone. Sizes are
        in the input's pixels. With a torchvision-layout backbone, one size per pyramid level
        (finest first), or one tuple of sizes per level (as many on each; torchvision's
        MobileNetV3 detector has ``((32, 64, 128, 256, 512),) * 3``).
    anchors : None, "kmeans" or (k, 2) array-like, default None
        Anchor shapes in place of sizes x aspect ratios. ``"kmeans"`` clusters the training
        boxes' (width, height) with :func:`pydetect.models.kmeans_anchors` (YOLOv2's
        dimension clusters, ``seed``) into as many shapes as the sizes x ratios would give
        (4 sizes, 6 with ``fpn=True``, times the ratios: 12 and 18 with three ratios); an
        array gives the (width, height) shapes in the input's pixels, in the RPN's order.
        With ``fpn=True`` the shapes are sorted by area and split evenly over the three
        levels, the smallest on the finest (so k must be a multiple of 3).
    pretrain : Pretraining or None, default Pretraining()
        Crop pretraining of the backbone (:class:`pydetect.detectors.Pretraining`: time,
        epochs, copies, stretch and shear of the crops; its defaults are this detector's);
        None or ``seconds=0`` skips it, and a module backbone is never pretrained.
    train_seconds : float, default 780
        With the 90 s of pretraining and data preparation: under a 15-minute budget.
    max_iter : int, default 7000
        A cap above what the time budget allows on 2 cores (~6,000 iterations in 780 s),
        so that the time, not the count, ends training.
    batch_size : int, default 2
        Images per iteration (per process under torchrun).
    lr, weight_decay : float, default 2e-3, 1e-4
        AdamW; rates above the default erode the pretrained features
        (benchmarks/RESULTS.md, "Parameter evidence (moved from the docstrings)").
    eval_every : int, optional
        With ``fit(dataset, val_dataset)``: iterations between evaluations on ``val_dataset``
        (COCO AP, :func:`pydetect.eval.coco_evaluate`); None evaluates once, when training
        ends. Each evaluation also writes a checkpoint; its time counts towards
        ``train_seconds``. Without a ``val_dataset``, nothing is evaluated.
    val_metric : {"AP", "AP50"}, default "AP"
        The validation score that picks the weights kept (the best, the earliest on a tie;
        with ``ema_decay`` the averaged weights are scored and kept): COCO's AP at IoU
        0.50:0.95 by default, the usual model selection of a fine-tuning run; "AP50" where
        localisation matters less.
    ema_decay : float in (0, 1) or None, default None
        Keep an exponential moving average of the weights (and batch-norm statistics) and use it
        for inference (:class:`pydetect.engine.WeightAverage`); off by default because
        it raised AP and AP75 but not AP50 (benchmarks/RESULTS.md, "Parameter evidence (moved
        from the docstrings)").
    rpn_batch_size_per_image, roi_batch_size_per_image : int, default 128, 64
    balance_objects : bool, default True
        The RoI head's foreground samples are drawn so that each object gets the same expected
        share (:class:`pydetect.models.BalancedSampler` with groups), so that small objects,
        which have fewer good proposals, are not under-trained; on by default because it raised
        AP50 (benchmarks/RESULTS.md, "Parameter evidence (moved from the docstrings)").
    rpn_pre_nms_top_n, rpn_post_nms_top_n : (train, test) ints, default (1000, 500), (300, 150)
    rpn_nms_thresh, rpn_score_thresh : float, default 0.7, 0.0
        The proposals' NMS IoU and minimum objectness probability.
    representation_size : int, default 256
    box_score_thresh, box_nms_thresh, detections_per_img : default 0.05, 0.5, 100
    hflip : bool, default False
        Horizontal-flip augmentation (off by default: digits are not mirror symmetric).
    scale_jitter : (float, float) or None, default None
        Each training image is resized by independent log-uniform x and y factors in this
        range (:class:`pydetect.data.transforms.RandomScale`; boxes stay exact).
    augment : "default", dict or None, default "default"
        Photometric augmentation of the training images and pretraining crops (colour
        jitter, random turns of the colour space, grey, blur, noise; optionally ink inversion
        and shear):
        :data:`pydetect.engine.DEFAULT_AUGMENT`, or a dict overriding some of its
        settings, or None for none (:func:`pydetect.data.transforms.detection_augmentation`).
    seed : int, default 0
    checkpoint_dir : path, optional
        Where the pretrained backbone and training checkpoints go (resumable).
    resume : bool, default True
    progress : bool, default True
    num_threads : int, optional
        torch intra-op threads during fit (default: leave torch's setting); on a loaded
        machine 1 can be much faster than oversubscribed OpenMP threads
        (benchmarks/RESULTS.md, "Parameter evidence (moved from the docstrings)").
    device : "cpu", "cuda", "cuda:N" or torch.device, default "cpu"
        Where fit and predict run the network: the model, images, targets, proposals and
        pretraining crops go there (the numpy augmentation stays on the CPU). ``"cuda"`` is
        the current GPU, or cuda:LOCAL_RANK under torchrun, where GPU processes synchronise
        with NCCL (CPU ones with gloo). Checked when used: a GPU that torch cannot see is a
        ValueError at fit or predict. A model file keeps the weights on the CPU; a loaded
        model moves to ``device`` at its first prediction, and ``FasterRCNN.load(path,
        device="cpu")`` overrides the saved device.

    Methods
    -------
    fit(dataset, val_dataset=None)
        ``val_dataset`` (same ``class_names``): scored during training (``eval_every``), the
        best weights kept (``val_metric``); the checkpoint holds the scores and the best
        weights, so a resumed run ends with the same model.

    Attributes
    ----------
    model_ : pydetect.models.GeneralizedRCNN
    class_names_ : list of str
    anchor_sizes_, aspect_ratios_ : tuples
        None when ``anchors`` gives the shapes.
    anchor_shapes_ : tuple of (float, float) or None
        The (width, height) anchor shapes from ``anchors``, in the input's pixels (None
        when ``anchors`` is None).
    pretrain_accuracy_, pretrain_epochs_ : float or None
        Held-out crop accuracy after pretraining, and the epochs of it trained (fewer than
        ``pretrain.epochs`` when ``pretrain.seconds`` ran out first).
    history_ : dict
        Iterations, seconds, last losses, ``unfrozen_at``; with a ``val_dataset``, ``"val"``:
        ``[{"iteration": i, "AP": ..., "AP50": ..., ...}]`` (the 12 COCO stats of each
        evaluation) and ``"best"``: the entry whose weights ``model_`` holds.
    """

    def __init__(self, *, backbone="vgg", weights=None, trainable_layers=3, fpn=False, image_scale=1.0,
                 min_size=None, max_size=None, compat=None, anchor_sizes=None, aspect_ratios=None,
                 anchors=None, pretrain=Pretraining(), train_seconds=780.0, max_iter=7000,
                 batch_size=2, lr=2e-3, ema_decay=None,
                 freeze_backbone_fraction=0.0, eval_every=None, val_metric="AP",
                 weight_decay=1e-4, rpn_batch_size_per_image=128, roi_batch_size_per_image=64, balance_objects=True,
                 rpn_pre_nms_top_n=(1000, 500), rpn_post_nms_top_n=(300, 150), rpn_nms_thresh=0.7,
                 rpn_score_thresh=0.0, representation_size=256,
                 box_score_thresh=0.05, box_nms_thresh=0.5, detections_per_img=100, hflip=False, scale_jitter=None,
                 augment="default", seed=0, checkpoint_dir=None, resume=True, progress=True, num_threads=None,
                 device="cpu"):
        self.backbone = backbone
        self.weights = weights
        self.trainable_layers = trainable_layers
        self.fpn = fpn
        self.image_scale = image_scale
        self.min_size = min_size
        self.max_size = max_size
        self.compat = compat
        self.anchor_sizes = anchor_sizes
        self.aspect_ratios = aspect_ratios
        self.anchors = anchors
        self.pretrain = pretrain
        self.train_seconds = train_seconds
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.lr = lr
        self.ema_decay = ema_decay
        self.freeze_backbone_fraction = freeze_backbone_fraction
        self.eval_every = eval_every
        self.val_metric = val_metric
        self.weight_decay = weight_decay
        self.rpn_batch_size_per_image = rpn_batch_size_per_image
        self.roi_batch_size_per_image = roi_batch_size_per_image
        self.balance_objects = balance_objects
        self.rpn_pre_nms_top_n = rpn_pre_nms_top_n
        self.rpn_post_nms_top_n = rpn_post_nms_top_n
        self.rpn_nms_thresh = rpn_nms_thresh
        self.rpn_score_thresh = rpn_score_thresh
        self.representation_size = representation_size
        self.box_score_thresh = box_score_thresh
        self.box_nms_thresh = box_nms_thresh
        self.detections_per_img = detections_per_img
        self.hflip = hflip
        self.scale_jitter = scale_jitter
        self.augment = augment
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.num_threads = num_threads
        self.device = device

    #: Models saved before k-means anchors existed have sizes x ratios, no explicit shapes. (Files
    #: older than ``weights`` and ``trainable_layers`` need no entry: their constructor defaults,
    #: no weights and 3, are what those files meant, and only torchvision-layout backbones use them.)
    _LEGACY_VALUES = {**TwoStageEstimator._LEGACY_VALUES, "anchor_shapes_": None}

    def _torchvision_layout(self) -> bool:
        return isinstance(self.backbone, str) and self.backbone in models.TORCHVISION_BACKBONES

    def _levels(self) -> int:
        """Feature levels of a torchvision-layout backbone (its FPN's outputs, ``"pool"`` included)."""
        return 3 if self.backbone == "mobilenet_v3_large_fpn" else 5

    def _uses_fpn(self) -> bool:
        return bool(self.fpn) or self._torchvision_layout()

    def _new_backbone(self, with_weights):
        if not self._torchvision_layout():
            return super()._new_backbone(with_weights)
        backbone = models.build_backbone(self.backbone, trainable_layers=self.trainable_layers)
        if with_weights and self.weights is not None:
            models.load_backbone_weights(backbone, self.weights)
        return backbone

    def _load_head_weights(self, model):
        # A whole torchvision detection model's weights: its RPN and box head too, and its class
        # predictor when it has as many classes (else that layer starts fresh: fine-tuning).
        if self.compat != "torchvision" or self.weights is None:
            return
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        state = torchvision_state_dict(state)
        if not any(k.startswith("roi_heads.") for k in state):
            return  # backbone-only weights (loaded with the backbone)
        load_weights(model.rpn, state, prefix="rpn.", ignore=())
        load_weights(model.roi_heads.box_head, state, prefix="roi_heads.box_head.", ignore=())
        predictor = model.roi_heads.box_predictor
        theirs = state.get("roi_heads.box_predictor.cls_score.weight")
        if theirs is not None and tuple(theirs.shape) == tuple(predictor.cls_score.weight.shape):
            load_weights(predictor, state, prefix="roi_heads.box_predictor.", ignore=())

    @classmethod
    def from_torchvision(cls, source, class_names=None, **params):
        """A fitted FasterRCNN computing what a torchvision FasterRCNN computes.

        Parameters
        ----------
        source : torchvision FasterRCNN module, its state dict, or a path to one
            (read with ``torch.load(weights_only=True)``). A module gives its settings
            (resize, anchors, thresholds); a state dict the defaults of the torchvision
            detector its keys show (:func:`pydetect.models.torchvision_compat.torchvision_settings`).
        class_names : list of K str, optional
            Names of torchvision's labels 1..K, which are pydetect's 0..K-1. Default: the
            torchvision label numbers as strings ("1", "2", ...).
        **params
            Other FasterRCNN parameters (e.g. ``box_score_thresh``, ``device``), overriding
            the settings read from ``source``.

        Returns
        -------
        FasterRCNN
            With ``compat="torchvision"``, ``model_`` holding ``source``'s weights; ``predict``,
            ``save`` and ``load`` work as after ``fit``. ``fit`` would train a new network:
            to fine-tune, pass the weights file as ``weights`` with ``compat="torchvision"``.

        Raises
        ------
        ValueError
            For a detector pydetect does not reproduce (the ``_v2`` layouts, another
            normalisation), weights that do not fit (naming the keys), or class names
            that do not match the predictor.
        """
        if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            source = torch.load(source, map_location="cpu", weights_only=True)
        settings = torchvision_settings(source)
        state = torchvision_state_dict(source.state_dict() if isinstance(source, torch.nn.Module) else source)
        num_classes = settings.pop("num_classes")
        anchor_sizes, ratios = settings.pop("anchor_sizes"), settings.pop("aspect_ratios")
        settings.update(anchor_sizes=anchor_sizes, aspect_ratios=ratios, compat="torchvision", pretrain=None,
                        balance_objects=False)
        settings.update(params)
        check_anchor_count(state, settings["anchor_sizes"], settings["aspect_ratios"])
        est = cls(**settings)
        est._validate_params()
        if class_names is None:
            class_names = [str(k) for k in range(1, num_classes + 1)]
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names, the model predicts {num_classes} classes")
        est._prepare(None)
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten
            model = est._build(est._new_backbone(with_weights=False), num_classes)
        load_weights(model, state, ignore=())
        est.model_ = model.eval()
        est.class_names_ = class_names
        est.pretrain_accuracy_ = est.pretrain_epochs_ = None
        est.history_ = {"iterations": 0, "source": "torchvision"}
        return est

    def _frozen_schedule(self, model):
        if not self.freeze_backbone_fraction:
            return (), 0.0
        body = [p for p in model.backbone.body.parameters() if p.requires_grad]
        return body, float(self.freeze_backbone_fraction)

    def _crop_pretrains(self) -> bool:
        # The torchvision-layout backbones start from weights (or train from scratch end to end).
        return super()._crop_pretrains() and not self._torchvision_layout()

    def _image_scale(self) -> float:
        return float(self.image_scale)

    # ------------------------------------------------------------------------- building
    def _level_sizes(self):
        """The fitted anchor sizes per pyramid level of a torchvision-layout backbone (one size per
        level, finest first, or a tuple of sizes per level)."""
        sizes = self.anchor_sizes_
        if all(isinstance(s, numbers.Real) for s in sizes):
            return tuple((float(s),) for s in sorted(sizes))
        return tuple(tuple(float(v) for v in level) for level in sizes)

    def _build(self, backbone, num_classes):
        if self.compat == "torchvision":
            return build_torchvision_faster_rcnn(
                backbone, num_classes, anchor_sizes=self._level_sizes(), aspect_ratios=tuple(self.aspect_ratios_),
                min_size=self._min_sizes(), max_size=self.max_size, rpn_pre_nms_top_n=tuple(self.rpn_pre_nms_top_n),
                rpn_post_nms_top_n=tuple(self.rpn_post_nms_top_n), rpn_nms_thresh=self.rpn_nms_thresh,
                rpn_score_thresh=self.rpn_score_thresh, rpn_batch_size_per_image=self.rpn_batch_size_per_image,
                roi_batch_size_per_image=self.roi_batch_size_per_image,
                representation_size=self.representation_size, box_score_thresh=self.box_score_thresh,
                box_nms_thresh=self.box_nms_thresh, detections_per_img=self.detections_per_img,
                balance_objects=self.balance_objects)
        # Anchor sizes and shapes are in the input's pixels; the RPN sees images resized by image_scale.
        c = backbone.out_channels
        shapes = self.anchor_shapes_
        if shapes is not None:
            shapes = [(w * self.image_scale, h * self.image_scale) for w, h in shapes]
            if self.fpn:
                # Three levels (strides 8, 16, 32), k / 3 shapes each, smallest areas first.
                shapes = sorted(shapes, key=lambda s: s[0] * s[1])
                per = len(shapes) // 3
                anchor_gen = models.AnchorGenerator(shapes=[shapes[per * i:per * (i + 1)] for i in range(3)])
            else:
                anchor_gen = models.AnchorGenerator(shapes=[shapes])
        else:
            sizes = tuple(a * self.image_scale for a in self.anchor_sizes_)
            ratios = self.aspect_ratios_
            if self.fpn:
                # Three levels (strides 8, 16, 32), two anchor sizes each, smallest first.
                sizes = sorted(sizes)
                per = tuple(tuple(sizes[2 * i:2 * i + 2]) for i in range(3))
                anchor_gen = models.AnchorGenerator(per, (ratios,))
            else:
                anchor_gen = models.AnchorGenerator((sizes,), (ratios,))
        mean, std = models.IMAGE_MEAN, models.IMAGE_STD
        if self._torchvision_layout():
            # One anchor size per pyramid level (finest first), every ratio on each; RoIs pooled
            # from the levels below "pool" with torchvision's level rule; ImageNet normalisation.
            anchor_gen = models.AnchorGenerator(self._level_sizes(), (tuple(ratios),))
            names = [n for n in backbone.level_names if n != "pool"]
            pooler = ops.MultiScaleRoIAlign(names, 7, 2, canonical_scale=224, canonical_level=4, aligned=True)
            mean, std = models.IMAGENET_MEAN, models.IMAGENET_STD
        elif self.fpn:
            pooler = ops.MultiScaleRoIAlign(["0", "1", "2"], 7, 2, canonical_scale=64, canonical_level=4,
                                            aligned=True)
        else:
            pooler = models.RoIPooler("0", 7, kind="align", sampling_ratio=2, aligned=True,
                                      spatial_scale=backbone_scale(backbone))
        num_anchors = anchor_gen.num_anchors_per_location()[0]
        rpn = models.RegionProposalNetwork(
            anchor_gen, models.RPNHead(c, num_anchors),
            batch_size_per_image=self.rpn_batch_size_per_image,
            pre_nms_top_n={"training": self.rpn_pre_nms_top_n[0], "testing": self.rpn_pre_nms_top_n[1]},
            post_nms_top_n={"training": self.rpn_post_nms_top_n[0], "testing": self.rpn_post_nms_top_n[1]},
            nms_thresh=self.rpn_nms_thresh, score_thresh=self.rpn_score_thresh)
        heads = models.RoIHeads(pooler, models.TwoMLPHead(c * 49, self.representation_size, pooled_branch=True),
                                models.FastRCNNPredictor(self.representation_size + c, num_classes + 1),
                                batch_size_per_image=self.roi_batch_size_per_image,
                                score_thresh=self.box_score_thresh, nms_thresh=self.box_nms_thresh,
                                detections_per_img=self.detections_per_img,
                                balance_objects=self.balance_objects)
        divisible = 32 if (self._uses_fpn() or self.backbone == "resnet18") else 8
        return models.GeneralizedRCNN(backbone, rpn, heads, image_mean=mean, image_std=std, size_divisible=divisible,
                                      image_scale=self.image_scale, min_size=self._min_sizes(), max_size=self.max_size)

    def _min_sizes(self):
        m = self.min_size
        return None if m is None else (int(m),) if isinstance(m, numbers.Integral) else tuple(int(v) for v in m)

    _checkpoint_name = "faster_rcnn.ckpt"
    _PARAMS = {
        "backbone": OneOf(Choice("vgg", "resnet18", *models.TORCHVISION_BACKBONES), MODULE),
        "weights": Optional(Path()),
        "trainable_layers": Int(minimum=0, maximum=6),
        "freeze_backbone_fraction": Real(0, 1, closed="left"),
        "fpn": Bool(),
        "image_scale": Real(0, MAX_SCALE, closed="right"),
        "min_size": Optional(OneOf(Int(minimum=1), Sequence(Int(minimum=1), min_length=1, of="integers >= 1"))),
        "max_size": Optional(Int(minimum=1)),
        "compat": Optional(Choice("torchvision")),
        "anchor_sizes": Optional(Check(_check_anchor_sizes, "a non-empty sequence of positive numbers, or of "
                                                            "per-level sequences of them")),
        "aspect_ratios": Optional(Sequence(Positive(), min_length=1, of="positive numbers")),
        "anchors": Check(_check_anchor_form, "None, 'kmeans' or a (k, 2) sequence of positive (width, height) "
                                             "anchor shapes"),
        "rpn_batch_size_per_image": Int(minimum=1),
        "rpn_pre_nms_top_n": Check(_check_int_pair, "a pair (training, testing) of integers >= 1"),
        "rpn_post_nms_top_n": Check(_check_int_pair, "a pair (training, testing) of integers >= 1"),
        "rpn_nms_thresh": Fraction(),
        "rpn_score_thresh": Fraction(),
    }

    def _check_param_combinations(self):
        tv_layout = self._torchvision_layout()
        if self.compat is not None and not tv_layout:
            raise ValueError(f"compat={self.compat!r} needs one of {list(models.TORCHVISION_BACKBONES)} as backbone, "
                             f"got {self.backbone!r}")
        if self.min_size is not None and not tv_layout:
            raise ValueError(f"min_size (torchvision's resize policy) needs one of {list(models.TORCHVISION_BACKBONES)} "
                             f"as backbone (use image_scale with {self.backbone!r})")
        if self.max_size is not None and self.min_size is None:
            raise ValueError("max_size caps the longer side of min_size's resize: give min_size too")
        if self.min_size is not None and self.image_scale != 1.0:
            raise ValueError("give image_scale or min_size (and max_size), not both")
        if self.weights is not None and not tv_layout:
            raise ValueError(f"weights are torchvision-format weights for one of {list(models.TORCHVISION_BACKBONES)}, "
                             f"but backbone is {self.backbone!r}")
        if self._torchvision_layout():
            if self.anchors is not None:
                raise ValueError(f"anchors (shapes or 'kmeans') are not available with backbone={self.backbone!r}: "
                                 "give anchor_sizes (one per level) and aspect_ratios, or leave them None")
            if self.backbone != "mobilenet_v3_large_fpn" and self.trainable_layers > 5:
                raise ValueError(f"trainable_layers must be in 0..5 for a ResNet, got {self.trainable_layers}")
            if self.freeze_backbone_fraction > 0 and self.trainable_layers == 0:
                raise ValueError(f"freeze_backbone_fraction={self.freeze_backbone_fraction} unfreezes the stages "
                                 "trainable_layers selects, but trainable_layers=0 keeps the whole body frozen: "
                                 "give trainable_layers >= 1 or freeze_backbone_fraction=0")
        elif self.freeze_backbone_fraction > 0:
            raise ValueError(f"freeze_backbone_fraction needs a torchvision-layout backbone (one of "
                             f"{list(models.TORCHVISION_BACKBONES)}), whose frozen batch norm keeps the body "
                             f"unchanged while frozen; backbone is {self.backbone!r}")
        if self.fpn and self.backbone == "vgg":
            raise ValueError("fpn=True needs backbone='resnet18' (the VGG-style backbone has one level)")
        anchors = _check_anchors(self.anchors, self.fpn)
        if isinstance(anchors, np.ndarray) and (self.anchor_sizes is not None or self.aspect_ratios is not None):
            raise ValueError("anchors gives the anchor shapes: leave anchor_sizes and aspect_ratios as None")

    def _anchor_targets(self, dataset, targets):
        """With ``min_size``, the boxes scaled as inference resizes each image (the last min
        size): anchor sizes are in the resized images' pixels, as torchvision's are."""
        min_sizes = self._min_sizes()
        if min_sizes is None:
            return targets
        out = []
        for i, t in enumerate(targets):
            h, w = dataset.image_size(i) if hasattr(dataset, "image_size") else dataset[i][0].shape[:2]
            nh, nw = resized_size(int(h), int(w), min_size=min_sizes[-1], max_size=self.max_size)
            boxes = np.asarray(t["boxes"], np.float64).reshape(-1, 4) * [nw / w, nh / h, nw / w, nh / h]
            out.append(dict(t, boxes=boxes))
        return out

    def _prepare(self, targets):
        anchors = _check_anchors(self.anchors, self.fpn)
        if isinstance(anchors, np.ndarray):
            self.anchor_shapes_ = tuple((float(w), float(h)) for w, h in anchors)
            self.anchor_sizes_ = self.aspect_ratios_ = None
            return
        levels = self._levels() if self._torchvision_layout() else None
        if self.compat == "torchvision":  # torchvision's anchors, which its weights were trained with
            defaults = architecture_defaults(self.backbone)
            sizes, ratios = defaults["anchor_sizes"], defaults["aspect_ratios"]
        elif self.anchor_sizes is None or self.aspect_ratios is None:
            sizes, ratios = fit_anchors(targets, n_sizes=levels or (6 if self.fpn else 4))
        sizes = self.anchor_sizes or sizes
        nested = not all(isinstance(v, numbers.Real) for v in sizes)
        sizes = tuple(tuple(float(v) for v in level) for level in sizes) if nested else tuple(sizes)
        if levels is not None and len(sizes) != levels:
            raise ValueError(f"with backbone={self.backbone!r} give {levels} anchor_sizes (one per level, or one "
                             f"tuple of sizes per level), got {sizes}")
        if nested and (levels is None or len({len(level) for level in sizes}) != 1):
            raise ValueError(f"anchor_sizes per level (tuples) need a torchvision-layout backbone and as many sizes "
                             f"on every level, got {sizes}")
        if levels is None and self.fpn and len(sizes) != 6:
            raise ValueError(f"with fpn=True give 6 anchor_sizes (2 per level), got {sizes}")
        ratios = tuple(self.aspect_ratios or ratios)
        if anchors is None:
            self.anchor_sizes_, self.aspect_ratios_, self.anchor_shapes_ = sizes, ratios, None
            return
        # "kmeans": as many clustered shapes as sizes x ratios anchors.
        k = len(sizes) * len(ratios)
        b = np.concatenate([np.asarray(t["boxes"], np.float64).reshape(-1, 4) for t in targets])
        wh = b[:, 2:] - b[:, :2]
        distinct = len(np.unique(wh, axis=0))
        if distinct < k:
            raise ValueError(f"anchors='kmeans' clusters the training boxes into {k} shapes "
                             f"({len(sizes)} sizes x {len(ratios)} ratios), but the training set has "
                             f"{distinct} distinct box shapes")
        shapes, _ = kmeans_anchors(wh, k, seed=self.seed)
        self.anchor_shapes_ = tuple((float(w), float(h)) for w, h in shapes)
        self.anchor_sizes_ = self.aspect_ratios_ = None
