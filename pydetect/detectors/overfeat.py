"""OverFeat (Sermanet, Eigen, Zhang, Mathieu, Fergus, LeCun, ICLR 2014) as a pydetect estimator.

The step between Viola-Jones' sliding window and region proposals: a CNN classifier is
trained on fixed-size windows (object crops and a background class), its fully connected
layers are then read as convolutions (:class:`pydetect.models.OverFeatNet`), so that one
pass over an image of any size gives a class score map with a value at every window
position, and one pass per pyramid scale covers every window size. A regression head
predicts each window's box; boxes are merged across positions and scales.

Training, as in the paper but at the scale of the built-in data:

1. Window crops at the detector's own pyramid: each training object, with its pyramid
   scale and position jittered by up to half a scale step and half a stride (the grid the
   dense evaluation will see), is a positive of its class; windows at random pyramid
   positions whose centre box overlaps no object (IoU < 0.3) are background.
2. The classifier (softmax over K + 1) trains on these for most of ``train_seconds``.
3. ``mining_rounds`` rounds of bootstrapping: the dense classifier runs over every training
   image, its highest-scoring windows that overlap no object (IoU < 0.3) join the background
   set (``mined_per_image`` per image and round), and training continues.
4. With the features fixed, a class-specific box regressor (two fully connected layers of
   its own on the features, as in the paper; smooth L1 on Fast R-CNN's (10, 10, 5, 5)-weighted
   deltas from the window's centre box, where the paper used l2 on the edges) trains on the
   positive windows.

At test time each cell of each scale's score map gives, per class whose probability exceeds
``score_thresh``, the regressed box; ``merge="nms"`` keeps per-class non-maximum
suppression's survivors, ``merge="greedy"`` is the paper's merging in the form of greedy
clustering: the best remaining box absorbs every box of its class that overlaps it by
``merge_iou`` and is replaced by their score-weighted mean (score: the best one's).
"""

from __future__ import annotations

import dataclasses
import math
import os

import cv2
import numpy as np
import torch

from pydetect import engine, models, ops
from pydetect._params import Choice, Fraction, Int, NonNegative, Positive, Real, Sequence
from pydetect._validation import check_int
from pydetect.detectors.cnn import CNNEstimator
from pydetect.models.overfeat import BoxRegressionLoss, OverFeatNet, WindowClassifierLoss
from pydetect.structures import Detections

__all__ = ["OverFeat", "ScoreMap"]

_NEG_IOU = 0.3       # windows whose centre box overlaps every object less are background
_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_MAX_WINDOW = 256
_MAX_SCALES = 64


@dataclasses.dataclass
class ScoreMap:
    """The dense output of one pyramid scale.

    ``scores[c, i, j]`` is the probability of class ``c`` (0 background, ``c`` = label + 1)
    for the window whose top-left corner in image pixels is
    ``(offset[0] + stride[0] * j, offset[1] + stride[1] * i)`` and whose size is ``window``
    (width, height); ``scale`` = (sx, sy) is the factor the image was resized by.
    """

    scores: np.ndarray
    scale: tuple
    stride: tuple
    offset: tuple
    window: tuple

    def windows(self) -> np.ndarray:
        """(H' W', 4) windows of the cells in image pixels, row-major (x1, y1, x2, y2)."""
        h, w = self.scores.shape[1:]
        jj, ii = np.meshgrid(np.arange(w), np.arange(h))
        x1 = self.offset[0] + self.stride[0] * jj.ravel()
        y1 = self.offset[1] + self.stride[1] * ii.ravel()
        return np.stack([x1, y1, x1 + self.window[0], y1 + self.window[1]], 1).astype(np.float64)


def _as_rgb_uint8(image):
    """Any image pydetect accepts -> (H, W, 3) uint8 (as the CNN detectors read it)."""
    return (engine.image_to_tensor(image) * 255).round().byte().permute(1, 2, 0).numpy().copy()


def _rescale(image, scale, pad):
    """``image`` resized by ``scale`` (area averaging when shrinking, bilinear when growing)
    and padded by ``pad`` pixels of its border on each side; returns (level, (sx, sy)),
    the factors actual after rounding the size."""
    h, w = image.shape[:2]
    nw, nh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
    level = cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return level, (nw / w, nh / h)


class OverFeat(CNNEstimator):
    """OverFeat: a window classifier evaluated densely over an image pyramid, with box regression.

    Parameters
    ----------
    window : int, default 44
        Side of the classifier's square window (pixels of a pyramid level).
    context : float, default 1.4
        Window side / the object's longer side: the pyramid brings each object to
        ``window / context`` pixels.
    widths : tuple of int, default (16, 32, 64)
        Feature stages of :class:`pydetect.models.OverFeatNet` (stride ``2 ** len(widths)``).
    hidden : int, default 128
        Width of the fully connected layers.
    scales_per_octave : int, default 3
        Pyramid density; the scales span the 3rd to 97th percentile of the training objects'
        sizes (stored as ``scales_``).
    copies : int, default 4
        Positive windows per training object (jittered in scale and position).
    negatives_per_image : int, default 8
        Random background windows per training image.
    mining_rounds : int, default 2
        Bootstrapping rounds (0: random negatives only).
    mined_per_image : int, default 4
        Hardest false-positive windows added per training image and round.
    train_seconds : float, default 300
        Wall-clock budget of the classifier's training (60% before mining, the rest shared by
        the mining rounds); the mining passes and the regressor come on top.
    max_iter : int, default 12000
        Classifier iterations, shared as ``train_seconds`` is.
    regression_seconds : float, default 45
    regression_iter : int, default 2000
    batch_size : int, default 64
        Windows per iteration.
    positive_fraction : float, default 0.33
        Share of object windows in a batch.
    lr, weight_decay : float, default 3e-3, 1e-4
        AdamW; mining rounds continue at a third of ``lr``.
    merge : {"greedy", "nms"}, default "greedy"
        How window boxes become detections: "greedy" clusters overlapping boxes of a class
        (``merge_iou``) into their score-weighted mean, "nms" keeps the best of overlapping
        boxes by per-class NMS (``nms_thresh``); "greedy" because the averaged boxes are placed
        better (benchmarks/RESULTS.md, "Parameter evidence (moved from the docstrings)").
    nms_thresh : float, default 0.3
        IoU of per-class NMS (``merge="nms"``).
    merge_iou : float, default 0.5
        Overlap that joins a box to a cluster (``merge="greedy"``).
    score_thresh : float, default 0.05
        Least class probability of a window to become a detection.
    detections_per_img : int, default 100
    hflip : bool, default False
        Also train on mirrored windows (faces; not digits).
    augment, seed, checkpoint_dir, resume, progress, num_threads, device
        As in :class:`FasterRCNN`; ``augment`` applies the photometric steps to each window.
        Checkpoints: ``classifier-<round>.ckpt`` and ``regressor.ckpt``.

    Attributes
    ----------
    net_ : OverFeatNet
    class_names_ : list of str
    scales_ : list of float
        The pyramid's scale factors, largest first.
    centre_box_ : tuple (w, h)
        Size in window pixels of the box a window stands for before regression (the training
        objects' median aspect ratio, longer side ``window / context``).
    history_ : dict
        ``iterations`` (classifier iterations, all rounds), ``rounds`` (one train_loop history
        each), ``mined`` (negatives added per round), ``regression``, ``window_accuracy``
        (held-out positive and random windows, after training).
    """

    def __init__(self, *, window=44, context=1.4, widths=(16, 32, 64), hidden=128, scales_per_octave=3,
                 copies=4, negatives_per_image=8, mining_rounds=2, mined_per_image=4, train_seconds=300.0,
                 max_iter=12000, regression_seconds=45.0, regression_iter=2000, batch_size=64,
                 positive_fraction=0.33, lr=3e-3, weight_decay=1e-4, merge="greedy", nms_thresh=0.3, merge_iou=0.5,
                 score_thresh=0.05, detections_per_img=100, hflip=False, augment="default", seed=0,
                 checkpoint_dir=None, resume=True, progress=True, num_threads=None, device="cpu"):
        self.window = window
        self.context = context
        self.widths = widths
        self.hidden = hidden
        self.scales_per_octave = scales_per_octave
        self.copies = copies
        self.negatives_per_image = negatives_per_image
        self.mining_rounds = mining_rounds
        self.mined_per_image = mined_per_image
        self.train_seconds = train_seconds
        self.max_iter = max_iter
        self.regression_seconds = regression_seconds
        self.regression_iter = regression_iter
        self.batch_size = batch_size
        self.positive_fraction = positive_fraction
        self.lr = lr
        self.weight_decay = weight_decay
        self.merge = merge
        self.nms_thresh = nms_thresh
        self.merge_iou = merge_iou
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

    # ------------------------------------------------------------------------- parameters
    _PARAMS = {
        "window": Int(minimum=1, maximum=_MAX_WINDOW),
        "context": Real(1, 4),
        "widths": Sequence(Int(minimum=1, maximum=4096), min_length=1, max_length=6, of="channel counts"),
        "hidden": Int(minimum=1, maximum=8192),
        "scales_per_octave": Int(minimum=1, maximum=16),
        "copies": Int(minimum=1),
        "negatives_per_image": Int(minimum=0),
        "mining_rounds": Int(minimum=0, maximum=20),
        "mined_per_image": Int(minimum=1),
        "train_seconds": Positive(),
        "max_iter": Int(minimum=1),
        "regression_seconds": NonNegative(),
        "regression_iter": Int(minimum=0),
        "batch_size": Int(minimum=2),
        "positive_fraction": Real(0, 1, closed="neither"),
        "lr": Positive(),
        "weight_decay": NonNegative(),
        "merge": Choice("greedy", "nms"),
        "nms_thresh": Fraction(),
        "merge_iou": Fraction(),
        "score_thresh": Fraction(),
        "detections_per_img": Int(minimum=1),
    }

    def _check_param_combinations(self):
        # Each feature stage halves the map: the window must leave the classifier a 1x1 output.
        check_int(self.window, "window", minimum=OverFeatNet.min_window(len(self.widths)), maximum=_MAX_WINDOW)

    def _new_net(self, num_classes):
        return OverFeatNet(num_classes, self.window, tuple(int(w) for w in self.widths), int(self.hidden))

    @property
    def _pad(self) -> int:
        """Border added around each pyramid level, a whole number of strides: windows centred
        on the image's edge pixels exist, so objects at the border are found."""
        stride = 2 ** len(self.widths)
        return stride * math.ceil(self.window / 2 / stride)

    # ------------------------------------------------------------------------- geometry
    def _centre_boxes(self, cx, cy, sx, sy):
        """Image-pixel boxes a window stands for, from window centres (cx, cy) in level pixels
        (padding included) of a level scaled by (sx, sy)."""
        cw, ch = self.centre_box_
        x, y = (np.asarray(cx, np.float64) - self._pad) / sx, (np.asarray(cy, np.float64) - self._pad) / sy
        return np.stack([x - cw / 2 / sx, y - ch / 2 / sy, x + cw / 2 / sx, y + ch / 2 / sy], -1)

    def _window_centre_box(self):
        cw, ch = self.centre_box_
        s = self.window / 2
        return np.array([s - cw / 2, s - ch / 2, s + cw / 2, s + ch / 2], np.float32)

    # ------------------------------------------------------------------------- training data
    def _pyramid_scales(self, sizes):
        target = self.window / self.context
        lo, hi = np.quantile(sizes, [0.03, 0.97]) if len(sizes) else (target, target)
        s_max, s_min = target / max(lo, 1.0), target / max(hi, 1.0)
        step = 2.0 ** (-1.0 / self.scales_per_octave)
        n = int(math.floor(math.log(s_min / s_max) / math.log(step) + 1e-9)) + 1
        if n > _MAX_SCALES:
            raise ValueError(f"the training objects span {s_max / s_min:.0f}x in size: {n} pyramid scales at "
                             f"scales_per_octave={self.scales_per_octave} (at most {_MAX_SCALES})")
        scales = [s_max * step ** k for k in range(n)]
        if scales[-1] > s_min * 1.0001:  # one more level so that the largest objects are reached
            scales.append(s_max * step ** n)
        return [float(s) for s in scales]

    def _positive_windows(self, images, targets, rng):
        """(crops, labels, deltas): ``copies`` jittered windows per object."""

        w = self.window
        step = 2.0 ** (1.0 / self.scales_per_octave)
        stride = 2 ** len(self.widths)
        target = w / self.context
        coder = models.BoxCoder(_BOX_WEIGHTS)
        centre = self._window_centre_box()
        crops, labels, gts = [], [], []
        for image, t in zip(images, targets):
            for box, lab in zip(t["boxes"], t["labels"]):
                size = max(box[2] - box[0], box[3] - box[1], 1.0)
                for _ in range(self.copies):
                    scale = target / size * step ** rng.uniform(-0.5, 0.5)
                    level, (sx, sy) = _rescale(image, scale, self._pad)
                    b = np.array([box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]) + self._pad
                    cx, cy = (b[0] + b[2]) / 2 + rng.uniform(-0.5, 0.5) * stride, \
                        (b[1] + b[3]) / 2 + rng.uniform(-0.5, 0.5) * stride
                    x0 = int(np.clip(round(cx - w / 2), 0, level.shape[1] - w))
                    y0 = int(np.clip(round(cy - w / 2), 0, level.shape[0] - w))
                    crops.append(level[y0:y0 + w, x0:x0 + w])
                    labels.append(int(lab) + 1)
                    gts.append(b - [x0, y0, x0, y0])
        if not crops:
            raise ValueError("the dataset has no objects: OverFeat needs positive windows")
        gts = torch.tensor(np.asarray(gts), dtype=torch.float32)
        deltas = coder.encode(gts, torch.from_numpy(np.repeat(centre[None], len(gts), 0))).numpy()
        return np.stack(crops), np.asarray(labels, np.int64), deltas.astype(np.float32)

    def _levels(self, image):
        """The padded pyramid levels of one image with their (sx, sy)."""
        return [_rescale(image, s, self._pad) for s in self.scales_]

    def _cell_grid(self, level_shape):
        """Window centres (level pixels) of every cell of a level, row-major, and the map size."""
        stride, w = 2 ** len(self.widths), self.window
        mh, mw = self.net_.output_size(*level_shape[:2])
        jj, ii = np.meshgrid(np.arange(mw), np.arange(mh))
        return stride * jj.ravel() + w / 2, stride * ii.ravel() + w / 2, (mh, mw)

    def _cut(self, level, x0, y0):
        """The window at (x0, y0) of a level; where it reaches past the level (by pixels
        the classifier does not read, see OverFeatNet.output_size) the border is repeated."""
        w = self.window
        crop = level[y0:y0 + w, x0:x0 + w]
        if crop.shape[:2] != (w, w):
            crop = np.pad(crop, ((0, w - crop.shape[0]), (0, w - crop.shape[1]), (0, 0)), mode="edge")
        return crop

    def _random_negatives(self, images, targets, rng):
        w = self.window
        crops = []
        for image, t in zip(images, targets):
            if self.negatives_per_image == 0:
                break
            levels = self._levels(image)
            grids = [self._cell_grid(level.shape) for level, _ in levels]
            made = 0
            for _ in range(20 * self.negatives_per_image):
                if made >= self.negatives_per_image:
                    break
                li = rng.integers(len(levels))
                (level, (sx, sy)), (cx, cy, _) = levels[li], grids[li]
                k = rng.integers(len(cx))
                box = self._centre_boxes(cx[k], cy[k], sx, sy)[None]
                if len(t["boxes"]) and np.asarray(ops.box_iou(box, t["boxes"])).max() >= _NEG_IOU:
                    continue
                crops.append(self._cut(level, int(cx[k] - w / 2), int(cy[k] - w / 2)))
                made += 1
        return np.stack(crops) if crops else np.zeros((0, w, w, 3), np.uint8)

    def _mine(self, images, targets, device):
        """The ``mined_per_image`` highest-scoring windows per image whose centre box overlaps
        no object (IoU < 0.3), among those the classifier calls an object with probability
        above 0.1, after suppressing windows that overlap a better one by 0.5."""
        w = self.window
        crops = []
        for image, t in zip(images, targets):
            cands = []  # (score, level index, x0, y0, box)
            levels = self._levels(image)
            for li, (level, (sx, sy)) in enumerate(levels):
                probs, _ = self._dense(level, device)
                fg = probs[1:].max(0).ravel()
                cx, cy, _ = self._cell_grid(level.shape)
                keep = np.flatnonzero(fg > 0.1)
                if not len(keep):
                    continue
                boxes = self._centre_boxes(cx[keep], cy[keep], sx, sy)
                if len(t["boxes"]):
                    ok = np.asarray(ops.box_iou(boxes, t["boxes"])).max(1) < _NEG_IOU
                    keep, boxes = keep[ok], boxes[ok]
                for k, b in zip(keep, boxes):
                    cands.append((float(fg[k]), li, int(cx[k] - w / 2), int(cy[k] - w / 2), b))
            if not cands:
                continue
            scores = np.array([c[0] for c in cands], np.float32)
            boxes = np.array([c[4] for c in cands], np.float32)
            chosen = np.asarray(ops.nms(boxes, scores, 0.5))[:self.mined_per_image]
            for k in chosen:
                _, li, x0, y0, _ = cands[int(k)]
                crops.append(self._cut(levels[li][0], x0, y0))
        return np.stack(crops) if crops else np.zeros((0, w, w, 3), np.uint8)

    # ------------------------------------------------------------------------- training
    def _fit(self, dataset, class_names, targets, device):
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        if self.checkpoint_dir is not None:
            os.makedirs(self.checkpoint_dir, exist_ok=True)
        images = [_as_rgb_uint8(dataset[i][0]) for i in range(len(dataset))]
        tgts = [{"boxes": np.asarray(t["boxes"], np.float64).reshape(-1, 4),
                 "labels": np.asarray(t["labels"], np.int64).reshape(-1)} for t in targets]
        allb = np.concatenate([t["boxes"] for t in tgts])
        if not len(allb):
            raise ValueError("the dataset has no objects: OverFeat needs positive windows")
        bw, bh = allb[:, 2] - allb[:, 0], allb[:, 3] - allb[:, 1]
        self.scales_ = self._pyramid_scales(np.maximum(bw, bh))
        aspect = float(np.median(bh / bw))
        side = self.window / self.context
        self.centre_box_ = (side / aspect, side) if aspect >= 1 else (side, side * aspect)
        self.class_names_ = class_names
        # Channels-last convolutions train faster on a CPU; the net is handed back in the
        # default layout.
        net = self._new_net(len(class_names)).to(device, memory_format=torch.channels_last)
        self.net_ = net
        pos, pos_labels, pos_deltas = self._positive_windows(images, tgts, rng)
        negatives = [self._random_negatives(images, tgts, rng)]
        # Held out: 5% of the positive and random windows, for the reported window accuracy
        # (other copies of a held-out object may train: it measures fit more than generalisation).
        held = rng.permutation(len(pos))[:max(len(pos) // 20, 1)]
        held_neg = rng.permutation(len(negatives[0]))[:max(len(negatives[0]) // 20, 1)]
        train_pos = np.setdiff1d(np.arange(len(pos)), held)
        held_negatives = negatives[0][held_neg] if len(negatives[0]) > 1 else negatives[0][:0]
        if len(held_negatives):
            negatives[0] = np.delete(negatives[0], held_neg, 0)
        augment = engine.build_augmentation(self.augment, geometric=False)
        rounds = []
        mined = []
        shares = [0.6] + [0.4 / self.mining_rounds] * self.mining_rounds if self.mining_rounds else [1.0]
        for r, share in enumerate(shares):
            if r > 0:
                extra = self._mine(images, tgts, device)
                mined.append(len(extra))
                negatives.append(extra)
            neg = np.concatenate(negatives)
            loss_model = WindowClassifierLoss(net)
            sample = self._window_sampler(pos[train_pos], pos_labels[train_pos], neg, augment, device)
            path = os.path.join(self.checkpoint_dir, f"classifier-{r}.ckpt") if self.checkpoint_dir else None
            rounds.append(engine.train_loop(loss_model, sample, max_iter=max(int(self.max_iter * share), 1),
                                       seconds=self.train_seconds * share, lr=self.lr * (1.0 if r == 0 else 1 / 3),
                                       weight_decay=self.weight_decay, seed=self.seed + r, checkpoint_path=path,
                                       resume=self.resume, progress=self.progress, desc=f"OverFeat round {r}"))
        net.eval()
        net.to(memory_format=torch.contiguous_format)
        regression = None
        if self.regression_iter > 0 and self.regression_seconds > 0:
            regression = self._fit_regressor(pos[train_pos], pos_labels[train_pos], pos_deltas[train_pos], device)
        net.eval()
        accuracy = self._window_accuracy(pos[held], pos_labels[held], held_negatives, device)
        self.history_ = {"iterations": int(sum(h["iterations"] for h in rounds)), "rounds": rounds,
                         "mined": mined, "regression": regression, "window_accuracy": accuracy}
        return self

    def _window_sampler(self, pos, pos_labels, neg, augment, device):
        n_pos = max(1, int(round(self.batch_size * self.positive_fraction)))
        n_neg = self.batch_size - n_pos if len(neg) else 0
        hflip = bool(self.hflip)

        def sample(it, rank, world, rng):
            i = rng.integers(len(pos), size=n_pos)
            j = rng.integers(len(neg), size=n_neg) if n_neg else np.zeros(0, np.int64)
            raw = np.concatenate([pos[i], neg[j]])
            if augment is not None:
                none = {"boxes": np.zeros((0, 4), np.float32)}
                raw = np.stack([augment(c, none, rng)[0] for c in raw])
            if hflip:
                flip = rng.random(len(raw)) < 0.5
                raw = np.where(flip[:, None, None, None], raw[:, :, ::-1], raw)
            labels = np.concatenate([pos_labels[i], np.zeros(len(j), np.int64)])
            x = engine.crops_to_tensor(np.ascontiguousarray(raw)).contiguous(memory_format=torch.channels_last)
            return x.to(device), torch.from_numpy(labels).to(device)

        return sample

    def _fit_regressor(self, pos, labels, deltas, device):
        net = self.net_
        trainable = {id(p) for p in (*net.reg_fc.parameters(), *net.reg.parameters())}
        saved = {n: p.requires_grad for n, p in net.named_parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in trainable)
        loss_model = BoxRegressionLoss(net)
        batch = self.batch_size

        def sample(it, rank, world, rng):
            i = rng.integers(len(pos), size=batch)
            return (engine.crops_to_tensor(np.ascontiguousarray(pos[i])).to(device),
                    torch.from_numpy(labels[i]).to(device), torch.from_numpy(deltas[i]).to(device))

        path = os.path.join(self.checkpoint_dir, "regressor.ckpt") if self.checkpoint_dir else None
        try:
            return engine.train_loop(loss_model, sample, max_iter=self.regression_iter, seconds=self.regression_seconds,
                                lr=self.lr, weight_decay=self.weight_decay, seed=self.seed, checkpoint_path=path,
                                resume=self.resume, progress=self.progress, desc="OverFeat box regressor")
        finally:
            for n, p in net.named_parameters():
                p.requires_grad_(saved[n])

    def _window_accuracy(self, pos, pos_labels, neg, device):
        crops = np.concatenate([pos, neg]) if len(neg) else pos
        labels = np.concatenate([pos_labels, np.zeros(len(neg), np.int64)])
        with torch.no_grad():
            scores = torch.cat([self.net_(engine.crops_to_tensor(np.ascontiguousarray(crops[s:s + 512])).to(device))[0]
                                for s in range(0, len(crops), 512)])
        return float((scores.argmax(1).cpu().numpy() == labels).mean())

    # ------------------------------------------------------------------------- persistence
    def _get_state(self) -> dict:
        return dict(super()._get_state(), net_=self.net_.state_dict())

    def _set_state(self, state: dict) -> None:
        """Rebuilds the network from the parameters and loads its weights (on the CPU: the
        first prediction moves it to ``device``)."""
        state = dict(state)
        weights = state.pop("net_")
        vars(self).update(state)
        self.centre_box_ = tuple(float(v) for v in self.centre_box_)
        self.scales_ = [float(s) for s in self.scales_]
        with torch.random.fork_rng(devices=[]):  # the throwaway initial weights draw from torch's RNG
            net = self._new_net(len(self.class_names_))
        net.load_state_dict(weights)
        self.net_ = net.eval()

    # ------------------------------------------------------------------------- inference
    def _dense(self, level, device):
        """Softmax scores (K + 1, H', W') and deltas (4 K, H', W') of one padded level."""

        with torch.no_grad():
            x = engine.crops_to_tensor(np.ascontiguousarray(level[None])).to(device)
            scores, deltas = self.net_.dense(x)
            return torch.softmax(scores[0], 0).cpu().numpy(), deltas[0].cpu().numpy()

    def _ready(self):
        self._check_fitted()
        device = engine.resolve_device(self.device)
        self.net_.to(device).eval()
        return device

    def predict_score_maps(self, image) -> list:
        """The class score map of every pyramid scale (a :class:`ScoreMap` each, largest
        scale first): one dense pass of the classifier per scale."""
        device = self._ready()
        img = _as_rgb_uint8(image)
        stride = 2 ** len(self.widths)
        out = []
        with _threads(self.num_threads):
            for level, (sx, sy) in self._levels(img):
                probs, _ = self._dense(level, device)
                out.append(ScoreMap(probs, (sx, sy), (stride / sx, stride / sy), (-self._pad / sx, -self._pad / sy),
                                    (self.window / sx, self.window / sy)))
        return out

    def predict(self, image) -> Detections:
        """Detections of one image (H, W) or (H, W, 3); labels index ``class_names_``."""

        device = self._ready()
        img = _as_rgb_uint8(image)
        h, w = img.shape[:2]
        k = len(self.class_names_)
        coder = models.BoxCoder(_BOX_WEIGHTS)
        boxes, scores, labels = [], [], []
        with _threads(self.num_threads):
            for level, (sx, sy) in self._levels(img):
                probs, deltas = self._dense(level, device)
                cx, cy, (mh, mw) = self._cell_grid(level.shape)
                fg = probs[1:].reshape(k, -1)
                cls, cell = np.nonzero(fg > self.score_thresh)
                if not len(cls):
                    continue
                centre = self._centre_boxes(cx[cell], cy[cell], sx, sy)
                d = deltas.reshape(k, 4, -1)[cls, :, cell]
                boxes.append(coder.decode(torch.from_numpy(d.astype(np.float32)),
                                          torch.from_numpy(centre.astype(np.float32))).numpy())
                scores.append(fg[cls, cell])
                labels.append(cls)
        if not boxes:
            return Detections()
        b = np.asarray(ops.clip_boxes(np.concatenate(boxes), (h, w)), np.float32)
        s, lab = np.concatenate(scores).astype(np.float32), np.concatenate(labels).astype(np.int64)
        ok = ((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0)
        b, s, lab = b[ok], s[ok], lab[ok]
        if self.merge == "nms":
            keep = np.asarray(ops.batched_nms(b, s, lab, self.nms_thresh))[:self.detections_per_img]
            return Detections(b[keep], s[keep], lab[keep])
        b, s, lab = greedy_merge(b, s, lab, self.merge_iou)
        return Detections(b[:self.detections_per_img], s[:self.detections_per_img], lab[:self.detections_per_img])


def greedy_merge(boxes, scores, labels, iou):
    """OverFeat-style merging as greedy clustering, per label: the best remaining box takes
    every box of its label overlapping it by ``iou`` or more; the cluster becomes the
    score-weighted mean of its boxes with the best score. Returns (boxes, scores, labels)
    ordered by score."""
    out_b, out_s, out_l = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        b, s = boxes[idx].astype(np.float64), scores[idx].astype(np.float64)
        overlap = np.asarray(ops.box_iou(b, b))
        alive = np.ones(len(b), bool)
        for i in range(len(b)):
            if not alive[i]:
                continue
            members = alive & (overlap[i] >= iou)
            members[i] = True
            weight = s[members]
            out_b.append((b[members] * weight[:, None]).sum(0) / weight.sum())
            out_s.append(s[i])
            out_l.append(c)
            alive &= ~members
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    order = np.argsort(-np.asarray(out_s), kind="stable")
    return (np.asarray(out_b, np.float32)[order], np.asarray(out_s, np.float32)[order],
            np.asarray(out_l, np.int64)[order])


def _threads(n):
    return engine.torch_threads(n)
