"""Anchor boxes tiled over feature maps (Ren et al. 2015, section 3.1).

Glossary of shape letters: N images; L feature levels; A anchors per location of a level
(``len(sizes[l]) * len(aspect_ratios[l])``, or ``len(shapes[l])``); H_l, W_l feature-map
size of level l; the anchors of one image are ``sum_l H_l W_l A``, ordered level, row,
column, anchor — the order of the RPN head's flattened outputs.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["AnchorGenerator", "fit_anchors"]


class AnchorGenerator:
    """Anchors of given sizes and aspect ratios, or of given shapes, centred on every feature-map cell.

    Parameters
    ----------
    sizes : tuple of tuple of float, default ((32, 64, 128),)
        Per level, anchor sizes in input pixels (the square root of the anchor area).
    aspect_ratios : tuple of tuple of float, default ((0.5, 1.0, 2.0),)
        Per level, height / width ratios; one entry is broadcast to all levels. An anchor
        of size s and ratio r is ``s / sqrt(r)`` wide and ``s * sqrt(r)`` high.
    shapes : tuple of sequences of (float, float), optional
        Per level, explicit anchor (width, height) pairs in input pixels, in the order the
        RPN head's outputs take (e.g. shapes clustered by
        :func:`pydetect.models.kmeans_anchors`). They replace sizes x aspect_ratios, so
        neither may be given with them; ``sizes`` and ``aspect_ratios`` are then None.

    torchvision_grid : bool, default False
        False: anchors are centred on the cell centre ``(i + 0.5) * stride`` with
        ``stride = image size / feature size``, and their corners are not rounded. True:
        torchvision's grid, for models converted from it: centres at the cell corner
        ``i * stride`` with the integer ``stride = image size // feature size``, and the
        origin-centred anchors rounded to integers (half to even) before shifting.
    """

    def __init__(self, sizes=None, aspect_ratios=None, *, shapes=None, torchvision_grid=False):
        self.torchvision_grid = bool(torchvision_grid)
        if shapes is not None:
            if sizes is not None or aspect_ratios is not None:
                raise ValueError("give either shapes or sizes and aspect_ratios, not both")
            self.shapes = self._check_shapes(shapes)
            self.sizes = self.aspect_ratios = None
            return
        self.shapes = None
        if sizes is None:
            sizes = ((32, 64, 128),)
        if aspect_ratios is None:
            aspect_ratios = ((0.5, 1.0, 2.0),)
        sizes = tuple(tuple(float(s) for s in level) for level in sizes)
        if len(aspect_ratios) == 1 and len(sizes) > 1:
            aspect_ratios = tuple(aspect_ratios) * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise ValueError(f"aspect_ratios has {len(aspect_ratios)} levels, sizes {len(sizes)}")
        if any(s <= 0 for level in sizes for s in level) or any(r <= 0 for lv in aspect_ratios for r in lv):
            raise ValueError("anchor sizes and aspect ratios must be positive")
        self.sizes = sizes
        self.aspect_ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)

    @staticmethod
    def _check_shapes(shapes):
        out = []
        for level, pairs in enumerate(shapes):
            try:
                pairs = tuple((float(w), float(h)) for w, h in pairs)
            except (TypeError, ValueError):
                raise ValueError(f"shapes[{level}] must be a sequence of (width, height) pairs, "
                                 f"got {pairs!r}") from None
            if not pairs:
                raise ValueError(f"shapes[{level}] is empty: each level needs at least one anchor shape")
            if not all(0 < v < float("inf") for pair in pairs for v in pair):
                raise ValueError(f"shapes[{level}] must hold positive finite widths and heights, got {pairs}")
            out.append(pairs)
        if not out:
            raise ValueError("shapes must give at least one level")
        return tuple(out)

    @property
    def num_levels(self) -> int:
        return len(self.shapes if self.shapes is not None else self.sizes)

    def num_anchors_per_location(self) -> list:
        if self.shapes is not None:
            return [len(level) for level in self.shapes]
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def cell_anchors(self, level: int, device=None) -> torch.Tensor:
        """(A, 4) anchors centred at the origin: the shapes in their order, else ratio-major then size."""
        if self.shapes is not None:
            wh = torch.tensor(self.shapes[level], dtype=torch.float32, device=device)
            w, h = wh[:, 0], wh[:, 1]
            cell = torch.stack([-w, -h, w, h], dim=1) / 2
        else:
            ratios = torch.tensor(self.aspect_ratios[level], dtype=torch.float32, device=device)
            sizes = torch.tensor(self.sizes[level], dtype=torch.float32, device=device)
            h = torch.sqrt(ratios)[:, None] * sizes[None, :]
            w = (1.0 / torch.sqrt(ratios))[:, None] * sizes[None, :]
            cell = torch.stack([-w, -h, w, h], dim=2).reshape(-1, 4) / 2
        return cell.round() if self.torchvision_grid else cell

    def grid_anchors(self, feature_shapes, strides, device=None) -> torch.Tensor:
        """Anchors (sum_l H_l W_l A, 4) for feature maps ``(H_l, W_l)`` of given strides, on
        ``device`` (default: the CPU)."""
        if len(feature_shapes) != self.num_levels:
            raise ValueError(f"{len(feature_shapes)} feature maps for {self.num_levels} anchor levels")
        out = []
        offset = 0.0 if self.torchvision_grid else 0.5
        for level, ((h, w), (sy, sx)) in enumerate(zip(feature_shapes, strides)):
            ys = (torch.arange(h, dtype=torch.float32, device=device) + offset) * sy
            xs = (torch.arange(w, dtype=torch.float32, device=device) + offset) * sx
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack([cx, cy, cx, cy], dim=2).reshape(-1, 1, 4)
            out.append((shifts + self.cell_anchors(level, device)[None]).reshape(-1, 4))
        return torch.cat(out, 0)

    def __call__(self, image_shape, features) -> torch.Tensor:
        """Anchors for a padded image batch of ``image_shape`` (H, W) and a list of (N, C, H_l, W_l),
        on the features' device."""
        shapes = [tuple(f.shape[-2:]) for f in features]
        if self.torchvision_grid:
            strides = [(image_shape[0] // h, image_shape[1] // w) for h, w in shapes]
        else:
            strides = [(image_shape[0] / h, image_shape[1] / w) for h, w in shapes]
        return self.grid_anchors(shapes, strides, features[0].device)


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
