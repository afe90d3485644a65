"""Training utilities shared by the R-CNN detectors: data checks, crops, loops, checkpoints.

Glossary of shape letters: N images per minibatch; M crops; S crop side; K classes; G
ground-truth boxes of one image.

The recipe that works on a CPU budget (measured, see the REFERENCES notes): a small
BN conv backbone first trained for a minute or two as a (K + 1)-way classifier on object and
background crops of the training set (the offline analogue of ImageNet pretraining), then
trained end to end with AdamW, a warm-up + cosine learning-rate schedule, and checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from pydetect import ops
from pydetect._io import atomic_write
from pydetect._validation import as_image, check_device, check_fraction

__all__ = ["check_detection_dataset", "image_to_tensor", "extract_crops", "pretrain_backbone",
           "fit_anchors", "pretrain_detector_backbone", "train_loop", "lr_factor", "distributed_info", "resolve_device", "load_checkpoint",
           "restoring"]


# ----------------------------------------------------------------------------- data
def check_detection_dataset(dataset):
    """Validates a sequence of (image, target) with ``class_names``; returns (class_names, targets).

    Raises ValueError for an empty dataset, boxes with x2 <= x1 or y2 <= y1, or labels
    outside ``[0, len(class_names))``.
    """
    class_names = getattr(dataset, "class_names", None)
    if class_names is None:
        raise TypeError("dataset must be a pydetect.data.DetectionDataset (or have class_names)")
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    targets = dataset.targets if hasattr(dataset, "targets") else [t for _, t in dataset]
    k = len(class_names)
    for i, t in enumerate(targets):
        b = np.asarray(t["boxes"], np.float64).reshape(-1, 4)
        lab = np.asarray(t["labels"]).reshape(-1)
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"dataset target {i}: box {j} = {b[j].tolist()} has x2 <= x1 or y2 <= y1")
        if lab.size and (lab.min() < 0 or lab.max() >= k):
            raise ValueError(f"dataset target {i}: labels must lie in [0, {k}), got {lab.tolist()}")
    return list(class_names), targets


def image_to_tensor(image) -> torch.Tensor:
    """(H, W) or (H, W, 3) uint8 / float image -> (3, H, W) float32 in [0, 1]."""
    img = as_image(image, "image")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def _log_uniform_pair(rng, scale_range):
    """Two independent factors (x, y), log-uniform in ``scale_range`` = (lo, hi)."""
    lo, hi = scale_range
    return tuple(np.exp(rng.uniform(np.log(lo), np.log(hi), 2)))


#: The CNN detectors' default photometric augmentation (``augment="default"``), the keyword
#: arguments of :func:`pydetect.data.transforms.detection_augmentation` besides the geometric
#: ``hflip`` and ``scale_range``, which the detectors' ``hflip`` and ``scale_jitter`` give.
#: Chosen on the digits ``val`` split (benchmarks/RESULTS.md, "Augmentation").
DEFAULT_AUGMENT = {"colour": 0.3, "invert": 0.0, "grey": 0.1, "blur": 0.2, "noise": 0.2, "shear": 0.0}
_AUGMENT_KEYS = tuple(DEFAULT_AUGMENT)


def check_augment(augment) -> dict | None:
    """The ``augment`` parameter of the CNN detectors as detection_augmentation settings.

    ``"default"`` is :data:`DEFAULT_AUGMENT`; None (or False) turns the photometric steps and
    the shear off; a dict overrides some of the defaults.
    """
    if augment is None or augment is False:
        return None
    if isinstance(augment, str):
        if augment != "default":
            raise ValueError(f"augment must be 'default', None or a dict, got {augment!r}")
        return dict(DEFAULT_AUGMENT)
    if not isinstance(augment, dict):
        raise TypeError(f"augment must be 'default', None or a dict, got {type(augment).__name__}")
    unknown = sorted(set(augment) - set(_AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"augment: unknown setting(s) {unknown}; known: {list(_AUGMENT_KEYS)}")
    settings = {**DEFAULT_AUGMENT, **augment}
    for name, value in settings.items():
        check_fraction(value, f"augment[{name!r}]")
    return settings


def build_augmentation(augment, *, hflip=False, scale_jitter=None, geometric=True):
    """The training augmentation (a :class:`pydetect.data.transforms.Compose`) or None.

    ``geometric=False`` leaves out the steps that change the image size or move boxes (for
    fixed-size crops, whose flips the crop loop does itself).
    """
    from pydetect.data.transforms import detection_augmentation

    settings = check_augment(augment)
    if settings is None:
        settings = dict.fromkeys(_AUGMENT_KEYS, 0.0)
    if not geometric:
        settings["shear"] = 0.0
    pipeline = detection_augmentation(hflip=bool(hflip) and geometric,
                                      scale_range=scale_jitter if geometric else None, **settings)
    return pipeline if pipeline.transforms else None


def fit_anchors(targets, n_sizes=4, ratio_quantiles=(0.1, 0.5, 0.9)):
    """Anchor sizes and aspect ratios fitted to the training boxes (quantiles).

    Sizes: quantiles of sqrt(w h) spread from the 3rd to the 97th percentile; ratios (h / w)
    at ``ratio_quantiles``, rounded to 0.05 and deduplicated.
    """
    b = np.concatenate([np.asarray(t["boxes"], np.float64).reshape(-1, 4) for t in targets])
    if len(b) == 0:
        return (32.0, 64.0, 128.0), (0.5, 1.0, 2.0)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    sizes = np.quantile(np.sqrt(w * h), np.linspace(0.03, 0.97, n_sizes))
    ratios = np.unique(np.round(np.quantile(h / w, ratio_quantiles) * 20) / 20)
    return tuple(float(round(s, 1)) for s in sizes), tuple(float(r) for r in ratios)


def _native_crop(image, box, size, context, shift, scale=1.0, stretch=(1.0, 1.0), shear=0.0):
    """A square window around ``box`` at ``scale`` times native scale (shrunk only if the
    object needs more than ``size`` pixels with its context), resized to size x size, the
    image first stretched by ``stretch`` = (sx, sy) and slanted by ``shear`` (x moves by
    ``shear`` times the height above the box centre); returns (crop, box in crop)."""
    import cv2

    x1, y1, x2, y2 = box
    sx, sy = stretch
    # Work in the stretched image's pixels: the object is (sx w, sy h) there.
    side = max(float(size) / scale, max((x2 - x1) * sx, (y2 - y1) * sy) * context)
    a = size / side
    ax, ay = a * sx, a * sy
    ox, oy = (x1 + x2) / 2, (y1 + y2) / 2
    cx, cy = ox + shift[0] * side / sx, oy + shift[1] * side / sy
    # u = ax (x - cx) - shear ay (y - oy) + size / 2,  v = ay (y - cy) + size / 2
    m = np.array([[ax, -shear * ay, size / 2 - ax * cx + shear * ay * oy],
                  [0, ay, size / 2 - ay * cy]], np.float32)
    # m maps continuous coordinates (pixel i spans [i, i + 1]); cv2 puts pixel centres at
    # integer indices, so it gets m conjugated by the half-pixel shift.
    m_index = m.copy()
    m_index[:, 2] += m[:, :2].sum(1) * 0.5 - 0.5
    crop = cv2.warpAffine(image, m_index, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # The slanted box's corners spread by shear * height / 2 on each side; the box keeps
    # its width (the pooled box follows the object's centre line, not its hull).
    u1, u2 = ax * (x1 - cx) + size / 2, ax * (x2 - cx) + size / 2
    inside = np.array([u1, ay * (y1 - cy) + size / 2, u2, ay * (y2 - cy) + size / 2], np.float32)
    return crop, inside


def extract_crops(dataset, *, size=48, context=1.3, copies=2, backgrounds_per_image=3, jitter=0.1,
                  scale=1.0, stretch_range=None, shear_range=0.0, seed=0):
    """Object crops (label + 1) and background crops (label 0) at the scale the detector sees.

    Each crop is a size x size window around a box at the image's native scale (objects
    larger than ``size / context`` are shrunk to fit), so that the backbone learns features
    at the scales it meets in whole images; the box inside the crop is returned with it
    (the classifier pools that box, as the detector's RoI head does). Each object gives
    ``copies`` crops, its box jittered by up to ``jitter`` of its size and the window
    shifted by up to 15%; background boxes have the sizes of the dataset's objects and
    IoU < 0.2 with every object. ``scale`` is the detector's ``image_scale``: crops are cut
    at ``scale`` times native scale, as the detector's backbone sees the images. With
    ``stretch_range`` = (lo, hi), each object crop is cut from the image stretched by
    independent log-uniform factors along x and y, as :class:`pydetect.data.transforms.RandomScale` does to whole
    training images; with ``shear_range`` = s > 0, each object crop is also slanted by a
    uniform shear in [-s, s] about the box centre (the box keeps its width and height).

    Returns
    -------
    crops : (M, S, S, 3) uint8
    labels : (M,) int64
    boxes : (M, 4) float32, the pooled box inside each crop
    """
    rng = np.random.default_rng(seed)
    crops, labels, inner = [], [], []
    all_sizes = []
    for i in range(len(dataset)):
        image, t = dataset[i]
        boxes = np.asarray(t["boxes"], np.float64).reshape(-1, 4)
        h, w = image.shape[:2]
        for box, lab in zip(boxes, np.asarray(t["labels"]).reshape(-1)):
            bw, bh = box[2] - box[0], box[3] - box[1]
            all_sizes.append(np.sqrt(bw * bh))
            for _ in range(copies):
                jittered = box + rng.uniform(-jitter, jitter, 4) * [bw, bh, bw, bh]
                stretch = (1.0, 1.0) if stretch_range is None else \
                    _log_uniform_pair(rng, stretch_range)
                shear = rng.uniform(-shear_range, shear_range) if shear_range else 0.0
                crop, b = _native_crop(image, jittered, size, context, rng.uniform(-0.15, 0.15, 2), scale,
                                       stretch, shear)
                crops.append(crop)
                inner.append(b)
                labels.append(int(lab) + 1)
        sizes = all_sizes[-20:] or [min(h, w) / 4]
        made = 0
        for _ in range(50 * backgrounds_per_image):
            if made >= backgrounds_per_image:
                break
            s = float(rng.choice(sizes)) * rng.uniform(0.7, 1.4)
            bw = min(s * rng.uniform(0.7, 1.0), w - 1)
            bh = min(s * rng.uniform(1.0, 1.5), h - 1)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cand = np.array([[x, y, x + bw, y + bh]])
            if len(boxes) and np.nanmax(ops.box_iou(cand, boxes)) >= 0.2:
                continue
            crop, b = _native_crop(image, cand[0], size, context, rng.uniform(-0.15, 0.15, 2), scale)
            crops.append(crop)
            inner.append(b)
            labels.append(0)
            made += 1
    return np.stack(crops), np.asarray(labels, np.int64), np.stack(inner).astype(np.float32)


def crops_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(M, S, S, 3) uint8 crops -> (M, 3, S, S) float32, normalised as the crop classifier expects."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5).div_(0.25)


def pretrain_backbone(backbone, crops, labels, num_classes, *, boxes=None, seconds=90.0, max_epochs=30,
                      batch_size=64, lr=3e-3, hflip_aug=False, augment=None, seed=0, progress=False,
                      return_classifier=False, checkpoint_path=None, resume=True, device="cpu"):
    """Trains ``backbone`` as a crop classifier (AdamW, cosine schedule); returns crop accuracy
    (and the :class:`CropClassifier`, whose ``fc`` can initialise a detector's classifier, if
    ``return_classifier``).

    ``seconds`` caps the wall time; the schedule follows ``max(epoch progress, time progress)``.
    The returned accuracy is measured on 10% of the (shuffled) crops, held out (copies of
    one object may fall on both sides). With ``boxes`` (M, 4), the classifier pools that box
    of each crop's feature map (RoIAlign) instead of the whole map. ``augment`` (a transform
    ``t(image, target, rng)`` that keeps the size, e.g. ``build_augmentation(...,
    geometric=False)``) is applied to each training crop of each batch.

    With a ``checkpoint_path``, the classifier, optimiser, step, elapsed time and random
    states (``device``'s CUDA generator's too, on a GPU) are written there (atomically)
    after every epoch and at the end; with ``resume``, an existing checkpoint is loaded and
    training continues from it, its elapsed time counting towards ``seconds``. The same
    crops must be given again.

    The classifier (and so ``backbone``) is trained on ``device`` (a torch.device or its
    name) and left there; the crops stay on the CPU, where they are drawn, augmented and
    flipped exactly as on a CPU run, and each batch is copied to ``device``.
    """
    from pydetect.models.backbones import CropClassifier

    g = torch.Generator().manual_seed(seed)
    aug_rng = np.random.default_rng([seed, 1])
    x = crops_to_tensor(crops)
    y = torch.from_numpy(labels)
    b = torch.from_numpy(boxes) if boxes is not None else None
    perm = torch.randperm(len(x), generator=g)
    n_val = max(len(x) // 10, 1)
    xv, yv, xt, yt = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
    bv, bt = (b[perm[:n_val]], b[perm[n_val:]]) if b is not None else (None, None)
    # Channels-last convolutions: 64 -> 53 ms per 64-crop step on 2 cores, so ~20% more
    # epochs fit in the time budget. The backbone is handed back in the default layout.
    model = CropClassifier(backbone, num_classes).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(len(xt) // batch_size, 1)
    total = steps_per_epoch * max_epochs
    step, elapsed_before = 0, 0.0
    if checkpoint_path is not None and resume and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        with restoring(checkpoint_path):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step, elapsed_before = int(state["step"]), float(state["seconds"])
            g.set_state(state["generator"])
            aug_rng.bit_generator.state = state["augment_rng"]
            _restore_cuda_rng(state, device)

    def checkpoint(elapsed):
        if checkpoint_path is not None and distributed_info(device)[0] == 0:
            _save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                               "step": step, "seconds": elapsed, "generator": g.get_state(),
                                               "augment_rng": aug_rng.bit_generator.state,
                                               **_cuda_rng_state(device)})

    start = time.perf_counter()
    bar = _bar(total, "pretrain backbone", progress)
    if bar is not None and step:
        bar.update(step)
    model.train()
    while step < total:
        order = torch.randperm(len(xt), generator=g)
        for j in range(steps_per_epoch):
            frac = max(step / total, (elapsed_before + time.perf_counter() - start) / seconds)
            if frac >= 1:
                step = total
                break
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(frac, 0.05)
            idx = order[j * batch_size:(j + 1) * batch_size]
            if augment is None:
                xb = xt[idx]
            else:  # from the uint8 crops, through the augmentation
                raw = crops[perm[n_val:][idx].numpy()]
                no_boxes = {"boxes": np.zeros((0, 4), np.float32)}
                xb = crops_to_tensor(np.stack([augment(c, no_boxes, aug_rng)[0] for c in raw]))
            xb = xb.contiguous(memory_format=torch.channels_last)
            bb = bt[idx].clone() if bt is not None else None
            if hflip_aug:
                flip = torch.rand(len(xb), generator=g) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                if bb is not None:
                    w = xb.shape[-1]
                    bb[flip] = torch.stack([w - bb[flip, 2], bb[flip, 1], w - bb[flip, 0], bb[flip, 3]], 1)
            if bb is not None:
                bb = bb.to(device)
            loss = F.cross_entropy(model(xb.to(device), bb), yt[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        # After each epoch (its generator state starts the next one on resume) and at the end.
        checkpoint(elapsed_before + time.perf_counter() - start)
    if bar is not None:
        bar.close()
    model.eval()
    with torch.no_grad():
        scores = model(xv.to(device), bv.to(device) if bv is not None else None)
        acc = float((scores.argmax(1).cpu() == yv).float().mean())
    model.to(memory_format=torch.contiguous_format)
    backbone.train()
    return (acc, model) if return_classifier else acc


def pretrain_detector_backbone(body, dataset, num_classes, *, seconds, epochs, copies=8, stretch=None, shear=0.0,
                               scale=1.0, hflip=False, augment=None, seed=0, progress=False, resume=True,
                               checkpoint_dir=None, device="cpu"):
    """A CNN detector's crop pretraining (the offline analogue of ImageNet pretraining),
    resumable: :func:`extract_crops` of ``dataset`` then :func:`pretrain_backbone` of ``body``
    as a ``num_classes + 1``-way classifier for ``seconds``.

    With a ``checkpoint_dir``, the pretrained body and its classifier are kept there
    (``backbone_pretrained.pt``, written by rank 0) and, with ``resume``, loaded instead of
    pretraining again; the pretraining itself checkpoints to ``backbone_pretraining.ckpt``.

    Returns (held-out crop accuracy, the classifier's ``torch.nn.Linear``).
    """
    path = os.path.join(checkpoint_dir, "backbone_pretrained.pt") if checkpoint_dir else None
    crop_fc = torch.nn.Linear(body.out_channels, num_classes + 1)
    if path and resume and os.path.exists(path):
        saved = load_checkpoint(path)
        with restoring(path):
            body.load_state_dict(saved["state"])
            crop_fc.load_state_dict(saved["fc"])
            return float(saved["accuracy"]), crop_fc
    crops, labels, inner = extract_crops(dataset, copies=copies, stretch_range=stretch, shear_range=shear,
                                         scale=scale, seed=seed)
    accuracy, clf = pretrain_backbone(
        body, crops, labels, num_classes + 1, boxes=inner, seconds=seconds, max_epochs=epochs, hflip_aug=hflip,
        augment=build_augmentation(augment, geometric=False), seed=seed, progress=progress,
        return_classifier=True, resume=resume,
        checkpoint_path=os.path.join(checkpoint_dir, "backbone_pretraining.ckpt") if checkpoint_dir else None,
        device=device)
    if path and distributed_info(device)[0] == 0:
        with atomic_write(path, "wb") as f:
            torch.save({"state": body.state_dict(), "fc": clf.fc.state_dict(), "accuracy": accuracy}, f)
    return accuracy, clf.fc


# ----------------------------------------------------------------------------- loop
def lr_factor(frac: float, warmup: float = 0.02) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to 2%."""
    if frac < warmup:
        return 0.1 + 0.9 * frac / warmup
    t = min((frac - warmup) / max(1 - warmup, 1e-9), 1.0)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))


@contextlib.contextmanager
def torch_threads(n):
    """Runs the block with ``torch.set_num_threads(n)`` (``None``: unchanged), then restores it."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cached_proposals(images, search, checkpoint_dir=None, resume=False, progress=False) -> list:
    """Proposals of every image as (P, 4) float32 arrays, ``search(image)`` per image.

    With a ``checkpoint_dir`` they are saved there (``proposals.npz``, atomically) and, when
    ``resume`` is set and the file exists, loaded instead of recomputed: selective search is
    the slowest step of R-CNN and Fast R-CNN training.
    """
    path = os.path.join(checkpoint_dir, "proposals.npz") if checkpoint_dir else None
    if path and resume and os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            return [z[f"p{i}"] for i in range(len(images))]
    bar = _bar(len(images), "selective search", progress)
    props = []
    for image in images:
        props.append(np.asarray(search(image), np.float32).reshape(-1, 4))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if path:
        with atomic_write(path, "wb") as f:
            np.savez(f, **{f"p{i}": p for i, p in enumerate(props)})
    return props


def _bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def distributed_info(device=None):
    """(rank, world_size); under torchrun, starts the process group when needed: NCCL when
    training on a GPU (``device`` of type cuda, which becomes the process's current CUDA
    device: :func:`resolve_device` makes ``"cuda"`` cuda:LOCAL_RANK), gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        if device is not None and torch.device(device).type == "cuda":
            torch.cuda.set_device(torch.device(device))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def resolve_device(device, name="device") -> torch.device:
    """The torch.device a CNN detector's ``device`` parameter names, checked for use now.

    ``"cuda"`` without an index is the process's GPU: cuda:LOCAL_RANK under torchrun (one
    GPU per process), else torch's current CUDA device.

    Raises
    ------
    TypeError, ValueError
        Not a device name or torch.device (:func:`pydetect._validation.check_device`); a
        CUDA device when torch sees no GPU, or one beyond the GPUs it sees.
    """
    d = check_device(device, name)
    if d.type != "cuda":
        return d
    if not torch.cuda.is_available():
        raise ValueError(f"{name}={device!r} but CUDA is not available (torch.cuda.is_available() is False: "
                         f"no GPU or driver, or a CPU-only torch build); use {name}='cpu'")
    index = d.index
    if index is None:
        local_rank = os.environ.get("LOCAL_RANK")
        index = int(local_rank) if local_rank is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise ValueError(f"{name}={device!r} names CUDA device {index}, but torch sees {count} "
                         f"(cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def _save_checkpoint(path, state):
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def _cuda_rng_state(device) -> dict:
    """``{"cuda_rng": state}`` of ``device``'s CUDA generator (dropout and other random ops
    on the GPU draw from it, not from the CPU's) when training on a GPU; ``{}`` otherwise."""
    device = torch.device(device)
    return {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}


def _restore_cuda_rng(state, device) -> None:
    """Restores a checkpoint's ``"cuda_rng"`` onto ``device`` when it trains on a GPU. A
    checkpoint from a CPU run has none (the device's generator keeps its state), and on a CPU
    one from a GPU run is ignored: there the GPU's random stream is not used."""
    device = torch.device(device)
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def load_checkpoint(path) -> dict:
    """A checkpoint of this module (or the pretrained backbone of a detector), read with
    ``torch.load(weights_only=True)``: tensors, numbers, strings and plain containers only,
    so a crafted file cannot run code. Raises ValueError for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # torch.load's errors on a malformed file are of many undocumented types
        raise ValueError(f"{path}: not a pydetect checkpoint ({type(exc).__name__}); only tensors and plain "
                         "containers are read from checkpoints, so nothing in the file was run") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a pydetect checkpoint (holds a {type(state).__name__}, not a dict)")
    return state


@contextlib.contextmanager
def restoring(path):
    """Turns a checkpoint that does not fit what is resumed (missing keys, other shapes)
    into a ValueError naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        detail = " ".join(str(exc).split())  # torch's load_state_dict errors span lines
        raise ValueError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}: {detail}); "
                         "delete it or pass resume=False to start afresh") from None


def check_ema_decay(value):
    """``None`` or a decay strictly between 0 and 1 (what :class:`WeightAverage` accepts)."""
    if value is not None and not 0.0 < check_fraction(value, "ema_decay") < 1.0:
        raise ValueError(f"ema_decay must be None or in (0, 1), got {value!r}")
    return value


class WeightAverage:
    """Exponential moving average of a model's floating-point state (parameters and batch-norm
    statistics), updated after each optimiser step (Polyak averaging).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates so that the
    first iterations, whose weights are far from the final ones, fade out quickly.
    """

    def __init__(self, model, decay):
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = model.state_dict()
        keys = list(self.state)
        torch._foreach_lerp_([self.state[k] for k in keys], [live[k].detach() for k in keys], 1.0 - d)

    def copy_to(self, model):
        """Loads the averaged state into ``model`` (integer buffers are left as they are)."""
        model.load_state_dict(self.state, strict=False)

    def state_dict(self):
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, saved):
        """Restores :meth:`state_dict`'s values onto the model's device (checkpoints load on
        the CPU); a key the model lacks is a KeyError."""
        self.decay, self.updates = float(saved["decay"]), int(saved["updates"])
        self.state = {k: v.to(self.state[k].device, copy=True) for k, v in saved["state"].items()}


def train_loop(model, sample_batch, *, max_iter, seconds, lr, weight_decay=1e-4, warmup=0.02,
               seed=0, checkpoint_path=None, checkpoint_every=100, resume=True, progress=False,
               clip_grad=10.0, ema_decay=None, desc="train"):
    """Trains ``model`` (a loss-dict module) with AdamW on minibatches from ``sample_batch``.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(*batch) -> dict of losses``, on the device to train on (its parameters'; under
        torchrun a CUDA model trains with NCCL, a CPU one with gloo).
    sample_batch : callable (iteration, rank, world_size, numpy Generator) -> tuple of args
        on the model's device
    max_iter : int
        Iterations (the schedule's length); ``seconds`` caps the wall time too, and the
        schedule follows ``max(iteration / max_iter, elapsed / seconds)``.
    checkpoint_path : path, optional
        Written atomically every ``checkpoint_every`` iterations and at the end (model,
        optimiser, iteration, elapsed time, random states, the model's GPU's too when it
        trains on one: tensors and plain values only, read back by :func:`load_checkpoint`).
        With ``resume``, an existing checkpoint is loaded and training continues from it, its
        elapsed time counting towards ``seconds``.
    ema_decay : float in (0, 1), optional
        Keep a :class:`WeightAverage` of the weights and load it into ``model`` when
        training ends (the checkpoint keeps the live weights and the average, so a resumed
        run continues both).

    Returns
    -------
    history : dict  {"iterations", "seconds", "losses" (last 50 totals), "resumed_from"}

    Raises
    ------
    FloatingPointError
        On a NaN or infinite loss; the last checkpoint (if any) is left intact.
    """
    device = next(model.parameters()).device
    rank, world = distributed_info(device)
    train_model = model
    if world > 1:
        # On GPUs, one device per process (NCCL); on CPUs, device_ids must be None (gloo).
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)
    rng = np.random.default_rng([seed, rank])
    torch.manual_seed(seed)
    check_ema_decay(ema_decay)
    it, elapsed_before, resumed_from, saved_average = 0, 0.0, None, None
    if checkpoint_path is not None and resume and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        with restoring(checkpoint_path):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            it, elapsed_before = int(state["iteration"]), float(state["seconds"])
            if rank < len(state["numpy_rng"]):
                rng.bit_generator.state = state["numpy_rng"][rank]
            torch.set_rng_state(state["torch_rng"])
            _restore_cuda_rng(state, device)
            saved_average = state.get("ema")
        resumed_from = it
    # Built after a resume so that, without a saved average, it starts from the loaded weights.
    average = WeightAverage(model, ema_decay) if ema_decay is not None else None
    if average is not None and saved_average is not None:
        with restoring(checkpoint_path):
            average.load_state_dict(saved_average)

    def checkpoint(elapsed):
        if checkpoint_path is None or rank != 0:
            return
        rng_states = [rng.bit_generator.state]
        _save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                           "iteration": it, "seconds": elapsed,
                                           "numpy_rng": rng_states, "torch_rng": torch.get_rng_state(),
                                           "ema": average.state_dict() if average is not None else None,
                                           **_cuda_rng_state(device)})

    start = time.perf_counter()
    losses_hist = []
    bar = _bar(max_iter, desc, progress and rank == 0)
    if bar is not None and it:
        bar.update(it)
    train_model.train()
    while it < max_iter:
        elapsed = elapsed_before + time.perf_counter() - start
        frac = max(it / max_iter, elapsed / seconds)
        if frac >= 1:
            break
        for group in opt.param_groups:
            group["lr"] = lr * lr_factor(frac, warmup)
        batch = sample_batch(it, rank, world, rng)
        losses = train_model(*batch)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            where = (f"the last checkpoint {checkpoint_path!s} is intact" if checkpoint_path
                     else "no checkpoint was written (pass checkpoint_dir to keep one)")
            raise FloatingPointError(f"non-finite training loss at iteration {it} ({detail}); "
                                     f"lower the learning rate; {where}")
        opt.zero_grad()
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        if average is not None:
            average.update(model)
        it += 1
        losses_hist.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k[5:]: f"{float(v):.3f}" for k, v in losses.items()})
        if checkpoint_every and it % checkpoint_every == 0:
            checkpoint(elapsed_before + time.perf_counter() - start)
    total = elapsed_before + time.perf_counter() - start
    checkpoint(total)
    if bar is not None:
        bar.close()
    if average is not None:
        average.copy_to(model)
    model.eval()
    return {"iterations": it, "seconds": total, "losses": losses_hist[-50:], "resumed_from": resumed_from}
