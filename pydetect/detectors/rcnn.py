"""R-CNN (Girshick, Donahue, Darrell, Malik, CVPR 2014) as a pydetect estimator.

Selective-search proposals are dilated to give 16 pixels of context at the warp size
(227 in the paper: the box grows by 227 / 195), warped anisotropically to a fixed square,
and described by a CNN (the backbone trained as a classifier on the dataset's warped object
and background crops, the offline stand-in for ImageNet pretraining + fine-tuning). Per
class, a linear SVM (scikit-learn) is trained on ground-truth positives and proposals with
IoU < 0.3 as negatives, with hard-negative mining; a ridge regressor per class refines the
boxes (appendix C); per-class NMS (IoU 0.3) gives the detections.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.svm import LinearSVC

from pydetect import engine, models, ops
from pydetect._params import Choice, Fraction, Group, Int, NonNegative, OneOf, Optional, Positive, Real
from pydetect.detectors.cnn import MODULE, CNNEstimator
from pydetect.detectors.pretraining import WarpPretraining
from pydetect.structures import Detections

__all__ = ["RCNN"]

_CONTEXT = 227.0 / (227.0 - 2 * 16)  # 16 px of context at a 227 px warp
_MAX_CROP_SIZE = 1024  # 300 test proposals warped to 1024 x 1024 RGB already take 0.9 GB


def _warp(image, boxes, size):
    """Anisotropic warps of (R, 4) boxes, each dilated by the R-CNN context, to size x size."""
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        w, h = max(x2 - x1, 1.0) * _CONTEXT, max(y2 - y1, 1.0) * _CONTEXT
        ax, ay = size / w, size / h
        m = np.array([[ax, 0, size / 2 - ax * cx], [0, ay, size / 2 - ay * cy]], np.float32)
        out[i] = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def _sklearn_state(model):
    """A fitted LinearSVC or Ridge (or None) as plain values: class, parameters, fitted arrays."""
    if model is None:
        return None
    return {"class": type(model).__name__, "params": model.get_params(),
            "fitted": {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}}


def _sklearn_from_state(state):
    """Inverse of :func:`_sklearn_state`; only the two classes R-CNN fits are accepted."""
    if state is None:
        return None
    classes = {"LinearSVC": LinearSVC, "Ridge": Ridge}
    if state["class"] not in classes:
        raise ValueError(f"scikit-learn model {state['class']!r} is not one of {sorted(classes)}")
    model = classes[state["class"]](**state["params"])
    vars(model).update(state["fitted"])
    return model


class RCNN(CNNEstimator):
    """R-CNN: warped selective-search regions, CNN features, per-class linear SVMs.

    Parameters
    ----------
    backbone : {"vgg"} or torch.nn.Module, default "vgg"
        Feature extractor; features are its last map, average- and max-pooled.
    crop_size : int, default 32
        Warp size (the paper's 227, scaled to the small backbone and 16-80 px objects).
    proposal_mode : {"single", "fast", "quality"}, default "fast"
    train_proposals, test_proposals : int, default 200, 300
    pretrain : WarpPretraining or None, default WarpPretraining()
        Crop-classifier training of the backbone on the warped objects and proposals
        (:class:`pydetect.detectors.WarpPretraining`: 120 s, at most 40 epochs); None or
        ``seconds=0`` skips it.
    svm_C : float, default 0.01
    hard_negative_rounds : int, default 2
    neg_iou : float, default 0.3
        Proposals below this IoU with every object of a class are its negatives.
    bbox_reg_iou, bbox_reg_alpha : float, default 0.6, 1000
        Proposals with IoU >= bbox_reg_iou train the ridge regressors (``alpha`` = the
        paper's lambda).
    nms_thresh, score_thresh, detections_per_img : default 0.3, -1.0, 100
        ``score_thresh`` is on the SVM margin.
    hflip, augment, seed, checkpoint_dir, resume, progress, num_threads
        As in :class:`FasterRCNN` (hflip flips and ``augment`` jitters the pretraining crops;
        the SVMs see the images as they are).
    device : "cpu", "cuda", "cuda:N" or torch.device, default "cpu"
        Where the CNN runs (pretraining and features; the warps, SVMs and regressors stay on
        the CPU). As in :class:`FasterRCNN`: checked at fit and predict, and a loaded model
        moves to it at its first prediction (``RCNN.load(path, device="cpu")`` overrides it).

    Attributes
    ----------
    backbone_ : torch.nn.Module
    svms_ : list of K sklearn LinearSVC
    regressors_ : list of K sklearn Ridge (or None for a class with no training pairs)
    feature_mean_, feature_scale_ : arrays (F,)
    class_names_ : list of str
    pretrain_accuracy_, proposal_recall_ : float
    pretrain_epochs_ : float or None
        Epochs of crop pretraining trained (fewer than ``pretrain.epochs`` when
        ``pretrain.seconds`` ran out first; None without pretraining).
    """

    #: 2: the pretraining settings became one ``pretrain`` parameter (CNNEstimator._upgrade).
    _STATE_VERSION = 2
    _PARAMS = {
        "backbone": OneOf(Choice("vgg"), MODULE),
        "crop_size": Int(minimum=8, maximum=_MAX_CROP_SIZE),
        "proposal_mode": Choice("single", "fast", "quality"),
        "train_proposals": Int(minimum=1),
        "test_proposals": Int(minimum=1),
        "pretrain": Optional(Group(WarpPretraining)),
        "svm_C": Positive(),
        "hard_negative_rounds": Int(minimum=0),
        "neg_iou": Fraction(),
        "bbox_reg_iou": Fraction(),
        "bbox_reg_alpha": NonNegative(),
        "nms_thresh": Fraction(),
        "score_thresh": Real(),
        "detections_per_img": Int(minimum=1),
    }

    def __init__(self, *, backbone="vgg", crop_size=32, proposal_mode="fast", train_proposals=200,
                 test_proposals=300, pretrain=WarpPretraining(), svm_C=0.01,
                 hard_negative_rounds=2, neg_iou=0.3, bbox_reg_iou=0.6, bbox_reg_alpha=1000.0,
                 nms_thresh=0.3, score_thresh=-1.0, detections_per_img=100, hflip=False, augment="default",
                 seed=0, checkpoint_dir=None, resume=True, progress=True, num_threads=None, device="cpu"):
        self.backbone = backbone
        self.crop_size = crop_size
        self.proposal_mode = proposal_mode
        self.train_proposals = train_proposals
        self.test_proposals = test_proposals
        self.pretrain = pretrain
        self.svm_C = svm_C
        self.hard_negative_rounds = hard_negative_rounds
        self.neg_iou = neg_iou
        self.bbox_reg_iou = bbox_reg_iou
        self.bbox_reg_alpha = bbox_reg_alpha
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.detections_per_img = detections_per_img
        self.hflip = hflip
        self.augment = augment
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.num_threads = num_threads
        self.device = device

    def _new_backbone(self):
        if isinstance(self.backbone, torch.nn.Module):
            return self.backbone
        if self.backbone == "vgg":
            return models.VGGStyle()
        raise ValueError(f"backbone must be 'vgg' or a torch module, got {self.backbone!r}")

    # ------------------------------------------------------------------------- persistence
    def _get_state(self) -> dict:
        return dict(super()._get_state(), backbone_=self.backbone_.state_dict(),
                    svms_=[_sklearn_state(m) for m in self.svms_],
                    regressors_=[_sklearn_state(m) for m in self.regressors_])

    def _set_state(self, state: dict) -> None:
        """Rebuilds the backbone (on the CPU: the first prediction moves it to ``device``)
        and the scikit-learn models."""
        state = dict(state)
        weights = state.pop("backbone_")
        svms, regressors = state.pop("svms_"), state.pop("regressors_")
        vars(self).update(state)
        with torch.random.fork_rng(devices=[]):  # the throwaway initial weights draw from torch's RNG
            backbone = self._new_backbone()
        backbone.load_state_dict(weights)
        self.backbone_ = backbone.eval()
        self.svms_ = [_sklearn_from_state(m) for m in svms]
        self.regressors_ = [_sklearn_from_state(m) for m in regressors]

    # ------------------------------------------------------------------------- features
    def _features(self, crops, device, batch=256):
        """(M, S, S, 3) uint8 -> (M, 2 C) float32: global average and max of the last map,
        computed on ``device`` (where the backbone is)."""
        feats = []
        self.backbone_.eval()
        with torch.no_grad():
            for s in range(0, len(crops), batch):
                x = torch.from_numpy(crops[s:s + batch]).to(device)
                x = x.permute(0, 3, 1, 2).float().div_(255).sub_(0.5).div_(0.25)
                f = list(self.backbone_(x).values())[-1]
                feats.append(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1).cpu().numpy())
        c = 2 * self.backbone_.out_channels
        return np.concatenate(feats) if feats else np.zeros((0, c), np.float32)

    def _search(self, image, n):
        boxes = np.asarray(ops.selective_search(image, self.proposal_mode, seed=self.seed, max_boxes=int(n)),
                           np.float32).reshape(-1, 4)
        return boxes[((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)]

    # ------------------------------------------------------------------------- training
    def _fit(self, dataset, class_names, targets, device):
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.backbone_ = self._new_backbone().to(device)
        k = len(class_names)
        images = [dataset[i][0] for i in range(len(dataset))]
        # 1. Proposals (cached) and warped crops for pretraining.
        props = engine.cached_proposals(images, lambda im: self._search(im, self.train_proposals),
                                   self.checkpoint_dir, self.resume, self.progress)
        crops, labels, gts = [], [], []
        for im, t, p in zip(images, targets, props):
            gt = np.asarray(t["boxes"], np.float32).reshape(-1, 4)
            lab = np.asarray(t["labels"], np.int64).reshape(-1)
            gts.append((gt, lab))
            crops.append(_warp(im, gt, self.crop_size))
            labels.append(lab + 1)
            if len(p):
                iou = np.asarray(ops.box_iou(p, gt)) if len(gt) else np.zeros((len(p), 0))
                best = iou.max(1) if iou.shape[1] else np.zeros(len(p))
                bg = p[best < 0.3]
                bg = bg[rng.permutation(len(bg))[:4]]
                crops.append(_warp(im, bg, self.crop_size))
                labels.append(np.zeros(len(bg), np.int64))
                fg = best >= 0.5  # fine-tuning positives of the paper (IoU >= 0.5)
                if fg.any():
                    sel = np.flatnonzero(fg)[rng.permutation(int(fg.sum()))[:2]]
                    crops.append(_warp(im, p[sel], self.crop_size))
                    labels.append(lab[iou[sel].argmax(1)] + 1)
        crops, labels = np.concatenate(crops), np.concatenate(labels)
        self.pretrain_accuracy_, self.pretrain_epochs_ = None, None
        pre = self.pretrain
        if isinstance(self.backbone, str) and pre is not None and pre.seconds > 0:
            reached = {}
            self.pretrain_accuracy_ = engine.pretrain_backbone(
                self.backbone_, crops, labels, k + 1, seconds=pre.seconds, max_epochs=pre.epochs, hflip_aug=self.hflip,
                augment=engine.build_augmentation(self.augment, geometric=False), seed=self.seed,
                progress=self.progress, resume=self.resume,
                checkpoint_path=os.path.join(self.checkpoint_dir, "backbone_pretraining.ckpt")
                if self.checkpoint_dir else None, device=device, stats=reached)
            self.pretrain_epochs_ = reached["epochs"]
        # 2. Features of every proposal and ground truth.
        feats, owners = [], []
        for i, (im, p, (gt, lab)) in enumerate(zip(images, props, gts)):
            boxes = np.concatenate([gt, p]) if len(p) else gt
            feats.append(self._features(_warp(im, boxes, self.crop_size), device))
            owners.append((boxes, len(gt)))
        allf = np.concatenate(feats)
        self.feature_mean_ = allf.mean(0)
        self.feature_scale_ = allf.std(0) + 1e-6
        feats = [(f - self.feature_mean_) / self.feature_scale_ for f in feats]
        hit = total = 0
        for (boxes, n_gt), (gt, lab) in zip(owners, gts):
            total += n_gt
            if n_gt and len(boxes) > n_gt:
                hit += int((np.asarray(ops.box_iou(gt, boxes[n_gt:])).max(1) >= 0.5).sum())
        self.proposal_recall_ = hit / max(total, 1)
        # 3. Per-class SVMs with hard-negative mining, and ridge box regressors.
        coder = models.BoxCoder()
        self.svms_, self.regressors_ = [], []
        for c in range(k):
            pos, negs, reg_x, reg_y = [], [], [], []
            for f, (boxes, n_gt), (gt, lab) in zip(feats, owners, gts):
                gc = gt[lab == c]
                pos.append(f[:n_gt][lab == c])
                p = boxes[n_gt:]
                fp = f[n_gt:]
                if len(gc):
                    iou = np.asarray(ops.box_iou(p, gc)) if len(p) else np.zeros((0, len(gc)))
                    best = iou.max(1) if len(p) else np.zeros(0)
                    negs.append(fp[best < self.neg_iou])
                    sel = best >= self.bbox_reg_iou
                    if sel.any():
                        reg_x.append(fp[sel])
                        tgt = torch.from_numpy(gc[iou[sel].argmax(1)])
                        reg_y.append(coder.encode(tgt, torch.from_numpy(p[sel])).numpy())
                else:
                    negs.append(fp)
            pos, negs = np.concatenate(pos), np.concatenate(negs)
            # A class without a training box (or without negatives) cannot be learned: it is
            # never predicted (svm None) rather than failing the whole fit.
            svm = self._train_svm(LinearSVC, pos, negs, rng) if len(pos) and len(negs) else None
            self.svms_.append(svm)
            if reg_x:
                self.regressors_.append(Ridge(alpha=self.bbox_reg_alpha).fit(np.concatenate(reg_x),
                                                                           np.concatenate(reg_y)))
            else:
                self.regressors_.append(None)
        self.class_names_ = class_names
        return self

    def _train_svm(self, LinearSVC, pos, negs, rng):
        """Linear SVM with hard-negative mining: start from a random cache of negatives, then
        add the negatives inside the margin (score > -1) and retrain."""
        cache = negs[rng.permutation(len(negs))[:max(5 * len(pos), 200)]]
        svm = None
        for _ in range(1 + self.hard_negative_rounds):
            x = np.concatenate([pos, cache])
            y = np.concatenate([np.ones(len(pos)), np.zeros(len(cache))])
            svm = LinearSVC(C=self.svm_C, class_weight={1: 2.0, 0: 1.0}, max_iter=5000).fit(x, y)
            hard = negs[svm.decision_function(negs) > -1.0] if len(negs) else negs
            if len(hard) == 0:
                break
            cache = np.unique(np.concatenate([cache, hard[:5000]]), axis=0)
        return svm

    # ------------------------------------------------------------------------- inference
    def predict(self, image) -> Detections:
        """Detections of one image; scores are SVM margins (higher is more confident)."""
        self._check_fitted()
        device = engine.resolve_device(self.device)
        self.backbone_.to(device)
        img = (engine.image_to_tensor(image) * 255).round().byte().permute(1, 2, 0).numpy().copy()
        h, w = img.shape[:2]
        boxes = self._search(img, self.test_proposals)
        if len(boxes) == 0:
            return Detections()
        f = self._features(_warp(img, boxes, self.crop_size), device)
        f = (f - self.feature_mean_) / self.feature_scale_
        coder = models.BoxCoder()
        out_b, out_s, out_l = [], [], []
        for c, (svm, reg) in enumerate(zip(self.svms_, self.regressors_)):
            if svm is None:
                continue
            s = svm.decision_function(f).astype(np.float32)
            keep = s > self.score_thresh
            if not keep.any():
                continue
            b = torch.from_numpy(boxes[keep])
            if reg is not None:
                b = coder.decode(torch.from_numpy(reg.predict(f[keep]).astype(np.float32)), b)
            b = ops.clip_boxes(b, (h, w)).numpy()
            out_b.append(b)
            out_s.append(s[keep])
            out_l.append(np.full(int(keep.sum()), c, np.int64))
        if not out_b:
            return Detections()
        b, s, lab = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l)
        ok = ((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0)
        b, s, lab = b[ok], s[ok], lab[ok]
        keep = np.asarray(ops.batched_nms(b, s, lab, self.nms_thresh))[:self.detections_per_img]
        return Detections(b[keep], s[keep], lab[keep])
