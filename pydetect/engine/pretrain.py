"""Crop pretraining: a detector's backbone first trained as a (K + 1)-way classifier of
object and background crops (the offline analogue of ImageNet pretraining), which is what
makes a from-scratch CNN detector learn within a CPU budget (benchmarks/RESULTS.md).

Glossary of shape letters: M crops; S crop side; K classes.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from pydetect._io import atomic_write
from pydetect.engine.augment import build_augmentation
from pydetect.engine.checkpoint import cuda_rng_state, load_checkpoint, restore_cuda_rng, restoring, save_checkpoint
from pydetect.engine.crops import extract_crops
from pydetect.engine.devices import distributed_info
from pydetect.engine.inputs import crops_to_tensor
from pydetect.engine.loop import lr_factor, schedule_fraction
from pydetect.engine.progress import progress_bar
from pydetect.models.backbones import CropClassifier

__all__ = ["pretrain_backbone", "pretrain_detector_backbone"]


def pretrain_backbone(backbone, crops, labels, num_classes, *, boxes=None, seconds=90.0, max_epochs=30,
                      batch_size=64, lr=3e-3, hflip_aug=False, augment=None, seed=0, progress=False,
                      return_classifier=False, checkpoint_path=None, resume=True, device="cpu", stats=None):
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

    ``stats``, a dict, is filled with how far the training went: ``steps`` (optimiser steps),
    ``epochs`` (steps over steps per epoch: below ``max_epochs`` when ``seconds`` ended it) and
    ``seconds`` (wall time, a resumed run's earlier time included).
    """
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
    step, elapsed_before, out_of_time = 0, 0.0, False
    if checkpoint_path is not None and resume and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        with restoring(checkpoint_path):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step, elapsed_before = int(state["step"]), float(state["seconds"])
            out_of_time = bool(state.get("out_of_time", False))
            g.set_state(state["generator"])
            aug_rng.bit_generator.state = state["augment_rng"]
            restore_cuda_rng(state, device)

    def checkpoint(elapsed):
        if checkpoint_path is not None and distributed_info(device)[0] == 0:
            save_checkpoint(checkpoint_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                               "step": step, "seconds": elapsed, "out_of_time": out_of_time,
                                               "generator": g.get_state(),
                                               "augment_rng": aug_rng.bit_generator.state,
                                               **cuda_rng_state(device)})

    start = time.perf_counter()
    bar = progress_bar(total, "pretrain backbone", progress)
    if bar is not None and step:
        bar.update(step)
    model.train()
    while step < total and not out_of_time:
        order = torch.randperm(len(xt), generator=g)
        for j in range(steps_per_epoch):
            frac = schedule_fraction(step, total, elapsed_before + time.perf_counter() - start, seconds)
            if frac >= 1:
                out_of_time = True
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
    if stats is not None:
        stats.update(steps=step, epochs=step / steps_per_epoch, seconds=elapsed_before + time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        scores = model(xv.to(device), bv.to(device) if bv is not None else None)
        acc = float((scores.argmax(1).cpu() == yv).float().mean())
    model.to(memory_format=torch.contiguous_format)
    backbone.train()
    return (acc, model) if return_classifier else acc


def pretrain_detector_backbone(body, dataset, num_classes, *, seconds, epochs, copies=8, stretch=None, shear=0.0,
                               scale=1.0, hflip=False, augment=None, seed=0, progress=False, resume=True,
                               checkpoint_dir=None, device="cpu", stats=None):
    """A CNN detector's crop pretraining (the offline analogue of ImageNet pretraining),
    resumable: :func:`extract_crops` of ``dataset`` then :func:`pretrain_backbone` of ``body``
    as a ``num_classes + 1``-way classifier for ``seconds``.

    With a ``checkpoint_dir``, the pretrained body and its classifier are kept there
    (``backbone_pretrained.pt``, written by rank 0) and, with ``resume``, loaded instead of
    pretraining again; the pretraining itself checkpoints to ``backbone_pretraining.ckpt``.

    Returns (held-out crop accuracy, the classifier's ``torch.nn.Linear``); ``stats`` as in
    :func:`pretrain_backbone` (kept with the pretrained body, so a resumed fit reports them too).
    """
    path = os.path.join(checkpoint_dir, "backbone_pretrained.pt") if checkpoint_dir else None
    crop_fc = torch.nn.Linear(body.out_channels, num_classes + 1)
    if path and resume and os.path.exists(path):
        saved = load_checkpoint(path)
        with restoring(path):
            body.load_state_dict(saved["state"])
            crop_fc.load_state_dict(saved["fc"])
            if stats is not None:
                stats.update(saved.get("stats", {}))
            return float(saved["accuracy"]), crop_fc
    crops, labels, inner = extract_crops(dataset, copies=copies, stretch_range=stretch, shear_range=shear,
                                         scale=scale, seed=seed)
    reached = stats if stats is not None else {}
    accuracy, clf = pretrain_backbone(
        body, crops, labels, num_classes + 1, boxes=inner, seconds=seconds, max_epochs=epochs, hflip_aug=hflip,
        augment=build_augmentation(augment, geometric=False), seed=seed, progress=progress,
        return_classifier=True, resume=resume,
        checkpoint_path=os.path.join(checkpoint_dir, "backbone_pretraining.ckpt") if checkpoint_dir else None,
        device=device, stats=reached)
    if path and distributed_info(device)[0] == 0:
        with atomic_write(path, "wb") as f:
            torch.save({"state": body.state_dict(), "fc": clf.fc.state_dict(), "accuracy": accuracy,
                        "stats": reached}, f)
    return accuracy, clf.fc
