"""The estimator layer of the two-stage detectors (FastRCNN, FasterRCNN): crop pretraining,
end-to-end training of a :class:`pydetect.models.GeneralizedRCNN`, persistence and batched
inference, with hooks for what differs (the network, and where the proposals come from).
"""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch

from pydetect import engine
from pydetect._params import Bool, Choice, Fraction, Group, Int, OneOf, Optional
from pydetect._validation import check_int, check_scale_range
from pydetect.detectors.cnn import END_TO_END_PARAMS, MODULE, CNNEstimator
from pydetect.detectors.pretraining import Pretraining
from pydetect.eval import COCO_STAT_NAMES, coco_evaluate
from pydetect.models.backbones import build_backbone
from pydetect.structures import Detections

__all__ = ["TwoStageEstimator", "backbone_scale"]

_MAX_REPRESENTATION = 16384  # the box head's first layer alone would hold 0.8 GB of weights


def backbone_scale(backbone):
    """The RoI pooler's spatial scale, ``1 / backbone.stride``, or None for a backbone without
    an integer ``stride`` (the pooler then infers it from the image sizes; a torch layer's
    ``stride`` is a tuple, not the output stride)."""
    stride = getattr(backbone, "stride", None)
    if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
        return None
    return 1.0 / int(stride)


class TwoStageEstimator(CNNEstimator):
    """Fit / predict shared by FastRCNN and FasterRCNN; subclasses give the hooks
    ``_prepare(targets)``, ``_build(backbone, num_classes)``, ``_training_proposals``,
    ``_test_proposals`` and ``_checkpoint_name``.

    ``fit(dataset, val_dataset)`` scores the network on ``val_dataset`` with COCO AP
    (:func:`pydetect.eval.coco_evaluate`, the 12 stats) every ``eval_every`` iterations and when
    training ends, records the curve in ``history_["val"]`` and keeps the weights with the best
    ``val_metric`` (``history_["best"]``), which the checkpoint holds too, so that a resumed run
    ends with the same model (:func:`pydetect.engine.train_loop`'s ``evaluate``)."""

    _EVALUATES_DURING_TRAINING = True

    _checkpoint_name = "rcnn.ckpt"
    #: 2: the crop-pretraining settings became one ``pretrain`` parameter (CNNEstimator._upgrade).
    _STATE_VERSION = 2
    #: Models saved before these parameters existed (state version 0) were trained with 2 crop
    #: copies, neither stretch nor shear, and unbalanced RoI sampling (the flat pretrain_* names
    #: of that time are folded into ``pretrain`` afterwards).
    _LEGACY_VALUES = {"pretrain_copies": 2, "pretrain_stretch": None, "pretrain_shear": 0.0,
                      "balance_objects": False}
    _PARAMS = {
        **END_TO_END_PARAMS,
        "backbone": OneOf(Choice("vgg", "resnet18"), MODULE),
        "pretrain": Optional(Group(Pretraining)),
        "roi_batch_size_per_image": Int(minimum=1),
        "balance_objects": Bool(),
        "representation_size": Int(minimum=1, maximum=_MAX_REPRESENTATION),
        "box_score_thresh": Fraction(),
        "box_nms_thresh": Fraction(),
        "eval_every": Optional(Int(minimum=1)),
        "val_metric": Choice("AP", "AP50"),
    }

    def _uses_fpn(self) -> bool:
        """Whether the backbone has a feature pyramid (FasterRCNN's ``fpn``)."""
        return False

    def _image_scale(self) -> float:
        """The factor the network resizes images by (FasterRCNN's ``image_scale``)."""
        return 1.0

    def _prepare(self, targets):
        pass

    def _load_head_weights(self, model):
        """Loads pretrained weights of the network beyond its backbone, if the parameters name
        any (FasterRCNN's whole torchvision detection models)."""

    def _anchor_targets(self, dataset, targets):
        """The training targets that anchors are fitted to (FasterRCNN's: in the pixels the RPN
        sees when images are resized by a per-image policy)."""
        return targets

    def _new_backbone(self, with_weights):
        """The backbone module to build the network on (``with_weights``: with any pretrained
        weights the parameters name; a model file's rebuild passes False: its own weights follow)."""
        return build_backbone(self.backbone, self._uses_fpn())

    def _crop_pretrains(self) -> bool:
        """Whether ``fit`` pretrains the backbone on object crops (a named backbone of pydetect's)."""
        pre = self.pretrain
        return isinstance(self.backbone, str) and pre is not None and pre.seconds > 0

    def _training_proposals(self, dataset, images):
        return None

    def _test_proposals(self, images):
        return None

    def _frozen_schedule(self, model):
        """(parameters, fraction): parameters frozen until that fraction of the schedule
        (FasterRCNN's ``freeze_backbone_fraction``); none by default."""
        return (), 0.0

    def _val_evaluation(self, val_dataset, device, batch_size=4):
        """The ``evaluate`` callable of :func:`pydetect.engine.train_loop`: the COCO stats of a
        network on ``val_dataset``, whose images are read ``batch_size`` at a time (a large
        validation set is never held decoded); FastRCNN's proposals are computed once."""
        proposals = {}

        def evaluate(model):
            dets = []
            for s in range(0, len(val_dataset), batch_size):
                images = [val_dataset[i][0] for i in range(s, min(s + batch_size, len(val_dataset)))]
                if s not in proposals:
                    proposals[s] = self._test_proposals(images)
                dets += self._run_model(model, images, batch_size, device, proposals[s])
            stats = coco_evaluate(val_dataset, dets)
            return {k: stats[k] for k in COCO_STAT_NAMES}
        return evaluate

    # ------------------------------------------------------------------------- training
    def _fit(self, dataset, class_names, targets, device, val_dataset=None):
        torch.manual_seed(self.seed)
        engine.distributed_info(device)  # under torchrun: joins the process group before any collective
        self._prepare(self._anchor_targets(dataset, targets))
        ckpt_dir = self.checkpoint_dir
        if ckpt_dir is not None:
            os.makedirs(ckpt_dir, exist_ok=True)
        fpn = self._uses_fpn()
        backbone = self._new_backbone(with_weights=True)
        self.pretrain_accuracy_, self.pretrain_epochs_ = None, None
        crop_fc = None
        if self._crop_pretrains():
            crop_fc = self._crop_pretrain(backbone.body if fpn else backbone, dataset, len(class_names), device,
                                          scale=self._image_scale())
        model = self._build(backbone, len(class_names))
        self._load_head_weights(model)
        if self.pretrain_accuracy_ is not None and not fpn:
            # The detector's classifier starts as the crop classifier (pooled-feature branch).
            model.roi_heads.box_predictor.init_from_crop_classifier(crop_fc)
        model.to(device)
        images = [dataset[i][0] for i in range(len(dataset))]
        tgts = [{"boxes": np.asarray(t["boxes"], np.float32).reshape(-1, 4),
                 "labels": np.asarray(t["labels"], np.int64).reshape(-1)} for t in targets]
        proposals = self._training_proposals(dataset, images)
        if proposals is not None:
            tgts = [dict(t, proposals=p.numpy()) for t, p in zip(tgts, proposals)]
        augment = engine.build_augmentation(self.augment, hflip=self.hflip,
                                       scale_jitter=check_scale_range(self.scale_jitter, "scale_jitter"))
        batch_size = self.batch_size

        def sample_batch(it, rank, world, rng):
            # Drawn and augmented on the CPU (numpy), then copied to the training device.
            idx = rng.choice(len(images), size=min(batch_size, len(images)), replace=False)
            ims, ts, ps = [], [], []
            for i in idx:
                im, t = images[i], tgts[i]
                if augment is not None:
                    im, t = augment(im, t, rng)
                ims.append(engine.image_to_tensor(im).to(device))
                ts.append({"boxes": torch.from_numpy(t["boxes"]).to(device),
                           "labels": torch.from_numpy(t["labels"]).to(device)})
                ps.append(torch.from_numpy(t["proposals"]).to(device) if proposals is not None else None)
            return (ims, ts) if proposals is None else (ims, ts, ps)

        ckpt = os.path.join(ckpt_dir, self._checkpoint_name) if ckpt_dir else None
        evaluate = self._val_evaluation(val_dataset, device) if val_dataset is not None else None
        frozen, frozen_until = self._frozen_schedule(model)
        self.history_ = engine.train_loop(model, sample_batch, max_iter=self.max_iter, seconds=self.train_seconds,
                                     lr=self.lr, weight_decay=self.weight_decay, seed=self.seed,
                                     checkpoint_path=ckpt, resume=self.resume, progress=self.progress,
                                     ema_decay=self.ema_decay, desc=type(self).__name__, evaluate=evaluate,
                                     eval_every=self.eval_every, best_metric=self.val_metric, frozen=frozen,
                                     frozen_until=frozen_until)
        model.eval()
        self.model_ = model
        self.class_names_ = class_names
        return self

    # ------------------------------------------------------------------------- persistence
    def _get_state(self) -> dict:
        return dict(super()._get_state(), model_=self.model_.state_dict())

    def _set_state(self, state: dict) -> None:
        """Rebuilds the network from the parameters and the fitted anchors, then loads its weights
        (on the CPU: the first prediction moves it to ``device``)."""
        state = dict(state)
        weights = state.pop("model_")
        vars(self).update(state)
        with torch.random.fork_rng(devices=[]):  # the throwaway initial weights draw from torch's RNG
            model = self._build(self._new_backbone(with_weights=False), len(self.class_names_))
        model.load_state_dict(weights)
        self.model_ = model.eval()

    def _set_pickled_state(self, state: dict) -> None:
        """Format 1 pickled the network itself, as the code of its day built it: rebuild it with
        this version's code and load the pickled weights."""
        self._set_state(dict(state, model_=state["model_"].state_dict()))

    # ------------------------------------------------------------------------- inference
    def predict(self, image) -> Detections:
        """Detections of one image (H, W) or (H, W, 3); labels index ``class_names_``."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images, batch_size=4) -> list:
        """Detections of each image, run ``batch_size`` images at a time on ``device``."""
        self._check_fitted()
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        device = engine.resolve_device(self.device)
        return self._run_model(self.model_.to(device), list(images), batch_size, device)

    def _run_model(self, model, images, batch_size, device, proposals=None):
        """Detections of ``images`` by ``model`` (on ``device``), ``batch_size`` at a time, on
        ``proposals`` (one tensor per image) or those of :meth:`_test_proposals`."""
        tensors = [engine.image_to_tensor(im) for im in images]
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(tensors), batch_size):
                chunk = [t.to(device) for t in tensors[s:s + batch_size]]
                props = (self._test_proposals(images[s:s + batch_size]) if proposals is None
                         else proposals[s:s + batch_size])
                if props is not None:
                    props = [p.to(device) for p in props]
                for d in model(chunk, proposals=props):
                    out.append(Detections(d["boxes"].cpu().numpy(), d["scores"].cpu().numpy(),
                                          d["labels"].cpu().numpy()))
        return out
