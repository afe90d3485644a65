"""Box parametrisation shared by the RPN and the RoI heads (R-CNN, Girshick et al. 2014, appendix C).

Glossary of shape letters: R boxes (anchors or proposals); K classes (heads predict 4 deltas
per class, so a regression output is (R, 4 K)).

A box ``p`` and its target ``g`` are related by the deltas
``dx = wx (g_cx - p_cx) / p_w``, ``dy = wy (g_cy - p_cy) / p_h``,
``dw = ww log(g_w / p_w)``, ``dh = wh log(g_h / p_h)``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["BoxCoder"]


class BoxCoder:
    """Encodes target boxes as deltas relative to reference boxes, and decodes them back.

    Parameters
    ----------
    weights : tuple of 4 floats, default (1, 1, 1, 1)
        ``(wx, wy, ww, wh)``; the RoI heads of Fast/Faster R-CNN use (10, 10, 5, 5).
    clip : float, default log(1000 / 16)
        Upper bound on ``dw`` and ``dh`` when decoding, so that ``exp`` cannot overflow.
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), clip=math.log(1000.0 / 16)):
        if len(weights) != 4 or any(float(w) <= 0 for w in weights):
            raise ValueError(f"weights must be 4 positive numbers, got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.clip = float(clip)

    def encode(self, targets: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Deltas (R, 4) taking ``boxes`` (R, 4) onto ``targets`` (R, 4)."""
        wx, wy, ww, wh = self.weights
        pw, ph = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        px, py = boxes[:, 0] + 0.5 * pw, boxes[:, 1] + 0.5 * ph
        gw, gh = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
        gx, gy = targets[:, 0] + 0.5 * gw, targets[:, 1] + 0.5 * gh
        return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                            ww * torch.log(gw / pw), wh * torch.log(gh / ph)], dim=1)

    def decode(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (R, 4 K) from deltas (R, 4 K) applied to ``boxes`` (R, 4)."""
        wx, wy, ww, wh = self.weights
        boxes = boxes.to(deltas.dtype)
        pw, ph = boxes[:, 2:3] - boxes[:, 0:1], boxes[:, 3:4] - boxes[:, 1:2]
        px, py = boxes[:, 0:1] + 0.5 * pw, boxes[:, 1:2] + 0.5 * ph
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.clip)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.clip)
        cx, cy = dx * pw + px, dy * ph + py
        w, h = torch.exp(dw) * pw, torch.exp(dh) * ph
        out = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=2)
        return out.reshape(deltas.shape)  # (R, K, 4) -> (R, 4 K); R = 0 included
