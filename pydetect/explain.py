"""Which image parts drove a CNN's decision: class activation maps and Grad-CAM.

- :func:`class_activation_map` (Zhou, Khosla, Lapedriza, Oliva, Torralba, CVPR 2016): for a
  network that ends in global average pooling and a linear layer, the score of class c is
  the average over positions of ``sum_k w[c, k] F_k(x, y)``; that sum, kept per position,
  is the map.
- :func:`grad_cam` (Selvaraju et al., ICCV 2017): for any network and any of its layers,
  the layer's channels weighted by the spatial mean of the class score's gradient, summed,
  and clipped at zero. For a global-average-pooling + linear network and its last feature
  layer, Grad-CAM is the ReLU of the CAM divided by the number of positions.

Both take the same ``image``: an (H, W, 3) or (H, W) uint8 array (or float in [0, 1], as
everywhere in pydetect), normalised as pydetect's
crop classifiers expect for pydetect's own modules and scaled to [0, 1] for any other module,
or a float (C, H, W) tensor used as given; both return an (H, W) float32 numpy map,
upsampled bilinearly from the feature resolution (pixel centres aligned). Draw them with
:func:`pydetect.viz.overlay_heatmap`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pydetect import engine
from pydetect._validation import as_image, check_int
from pydetect.models.backbones import CropClassifier

__all__ = ["class_activation_map", "grad_cam"]


def _is_pydetect_module(model) -> bool:
    return type(model).__module__.startswith("pydetect.")


def _input(model, image):
    """(1, C, H, W) float tensor on the model's device, and (H, W)."""

    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or not image.is_floating_point():
            raise ValueError(f"image: a tensor must be a float (C, H, W) tensor, got {image.dtype} of shape "
                             f"{tuple(image.shape)}")
        return image[None].to(device), tuple(image.shape[-2:])
    img = as_image(image, "image")  # uint8, or float in [0, 1] rounded to uint8 as everywhere in pydetect
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if _is_pydetect_module(model):
        x = engine.crops_to_tensor(np.ascontiguousarray(img[None]))
    else:
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float().div_(255.0)
    return x.to(device), img.shape[:2]


def _check_class(index, n, name="class_index"):
    index = check_int(index, name, minimum=0)
    if index >= n:
        raise ValueError(f"{name} must lie in [0, {n}), the model's outputs, got {index}")
    return index


def _upsample(cam, size):
    return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def _gap_linear(model):
    """(feature function x -> (N, C, h, w), linear layer) of a network ending in global
    average pooling + linear: pydetect's CropClassifier, or any module whose last
    ``AdaptiveAvgPool2d(1)`` feeds its last ``Linear``."""

    if isinstance(model, CropClassifier):
        return (lambda x: list(model.backbone(x).values())[-1]), model.fc
    pools = [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)
             and m.output_size in (1, (1, 1))]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not pools or not linears:
        raise TypeError(f"class_activation_map needs a network ending in global average pooling + linear "
                        f"(an AdaptiveAvgPool2d(1) and a Linear; {type(model).__name__} lacks "
                        f"{'the pooling' if not pools else 'the linear layer'}); use grad_cam for other networks")
    pool, fc = pools[-1], linears[-1]

    def features(x):
        seen = []
        handle = pool.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
        try:
            model(x)
        finally:
            handle.remove()
        return seen[-1]

    return features, fc


def class_activation_map(model, image, class_index) -> np.ndarray:
    """The class activation map of ``class_index`` for one image.

    Parameters
    ----------
    model : torch.nn.Module
        Ends in global average pooling + a linear layer: :class:`pydetect.models.CropClassifier`
        or a module with an ``AdaptiveAvgPool2d(1)`` feeding its last ``Linear`` (e.g. a
        torchvision ResNet).
    image : (H, W[, 3]) uint8 array or float (C, H, W) tensor
        See the module docstring.
    class_index : int
        The output whose map is wanted.

    Returns
    -------
    (H, W) float32 array
        ``sum_k w[class_index, k] F_k``, upsampled to the image (the bias is left out: it
        does not vary with position). Larger means more evidence for the class.
    """
    features, fc = _gap_linear(model)
    class_index = _check_class(class_index, fc.out_features)
    x, size = _input(model, image)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            f = features(x)
            if f.ndim != 4 or f.shape[1] != fc.in_features:
                raise TypeError(f"the pooled features have {tuple(f.shape)}, but the linear layer reads "
                                f"{fc.in_features} channels: not a global-average-pooling + linear network")
            cam = torch.einsum("k,khw->hw", fc.weight[class_index].to(f.dtype), f[0])
            return _upsample(cam, size).float().cpu().numpy()
    finally:
        model.train(was_training)


def grad_cam(model, layer, image, class_index) -> np.ndarray:
    """Grad-CAM of ``class_index`` at ``layer`` for one image.

    Parameters
    ----------
    model : torch.nn.Module
        Any network whose output is class scores (N, K), or a tuple / list whose first
        element is (e.g. :class:`pydetect.models.OverFeatNet`'s (scores, deltas)).
    layer : torch.nn.Module
        A submodule of ``model`` with a 4-d output (N, C, h, w), usually the last
        convolutional stage; its output must not be changed in place afterwards (hook a
        whole conv-BN-ReLU block, not a conv followed by an in-place ReLU).
    image : (H, W[, 3]) uint8 array or float (C, H, W) tensor
    class_index : int

    Returns
    -------
    (H, W) float32 array
        ``ReLU(sum_k a_k A_k)`` with ``a_k`` the mean over positions of d score / d A_k,
        upsampled to the image.
    """
    if not isinstance(layer, torch.nn.Module) or not any(m is layer for m in model.modules()):
        raise ValueError("layer must be a submodule of model")
    x, size = _input(model, image)
    x = x.detach().clone().requires_grad_(True)  # the layer's output needs a gradient even if no weight trains
    acts = []

    def keep(module, inputs, out):
        out.retain_grad()
        acts.append(out)

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            out = model(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                raise TypeError(f"grad_cam needs a model whose output is (N, K) class scores (or a tuple "
                                f"starting with them), got {type(out).__name__}")
            class_index = _check_class(class_index, out.shape[1])
            if not acts or acts[-1].ndim != 4:
                raise ValueError("layer must run in the model's forward pass with a 4-d (N, C, h, w) output")
            a = acts[-1]
            model.zero_grad(set_to_none=True)
            out[0, class_index].backward()
        weights = a.grad[0].mean((1, 2))
        cam = torch.relu(torch.einsum("k,khw->hw", weights, a[0].detach()))
        return _upsample(cam, size).float().cpu().numpy()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
