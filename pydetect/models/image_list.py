"""A batch of images of different sizes as one padded tensor, and the sizes it holds.

Glossary of shape letters: N images; H_i, W_i size of image i; H, W the padded batch size,
multiples of ``size_divisible`` (the coarsest stride the network reads, so that every
feature map covers the batch exactly).
"""

from __future__ import annotations

from typing import List, NamedTuple, Tuple

import torch

from pydetect.models.backbones import IMAGE_MEAN, IMAGE_STD, normalize_images

__all__ = ["ImageList", "batch_images", "pad_images"]


class ImageList(NamedTuple):
    """A padded batch (as detectron2's ``ImageList``): ``tensor`` (N, 3, H, W) and
    ``image_sizes``, the true (H_i, W_i) of each image. It unpacks as ``(tensor, image_sizes)``."""

    tensor: torch.Tensor
    image_sizes: List[Tuple[int, int]]

    @property
    def padded_shape(self) -> Tuple[int, int]:
        """(H, W) of the padded batch."""
        return int(self.tensor.shape[-2]), int(self.tensor.shape[-1])


def pad_images(images, size_divisible) -> ImageList:
    """Zero-pads N (3, H_i, W_i) tensors (at the bottom and right) into one (N, 3, H, W) batch,
    H and W rounded up to multiples of ``size_divisible``."""
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    d = int(size_divisible)
    h = -(-max(s[0] for s in sizes) // d) * d
    w = -(-max(s[1] for s in sizes) // d) * d
    batch = images[0].new_zeros((len(images), 3, h, w))
    for i, im in enumerate(images):
        batch[i, :, :im.shape[-2], :im.shape[-1]] = im
    return ImageList(batch, sizes)


def batch_images(images, size_divisible, mean=IMAGE_MEAN, std=IMAGE_STD) -> ImageList:
    """Normalises N (3, H_i, W_i) 0-1 images (:func:`pydetect.models.backbones.normalize_images`)
    and pads them with zeros (after normalisation; :func:`pad_images`) into one channels-last
    (N, 3, H, W) batch."""
    batch = pad_images([normalize_images(im, mean, std) for im in images], size_divisible)
    return batch._replace(tensor=batch.tensor.contiguous(memory_format=torch.channels_last))
