"""Untrained torchvision detectors that behave like trained ones, for the parity tests and the
benchmarks that compare pydetect's converted Faster R-CNN with torchvision's (nothing can be
downloaded, so the weights are random). Needs torchvision (a peer, not a dependency)."""

from __future__ import annotations

import torch

__all__ = ["calibrated_detector"]


def _freeze_batch_norm(module):
    """Every BatchNorm2d replaced by torchvision's FrozenBatchNorm2d with its statistics, as
    torchvision's detectors have when built with pretrained weights."""
    import torchvision

    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = torchvision.ops.FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.load_state_dict({k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"})
            setattr(module, name, frozen)
        else:
            _freeze_batch_norm(child)
    return module


def calibrated_detector(model, image_size=(200, 260), seed=5):
    """A torchvision detection model (random weights) in eval mode, its backbone's batch-norm
    statistics estimated (cumulative average) on 4 random images of ``image_size`` and then
    frozen: activations then neither vanish nor explode through ResNet-50 / MobileNetV3, and the
    RPN's scores are spread as a trained model's are, not all ties."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.backbone.train()
    with torch.no_grad():
        batch, _ = model.transform([torch.rand(3, *image_size, generator=g) for _ in range(4)])
        model.backbone(batch.tensors)
    return _freeze_batch_norm(model).eval()
