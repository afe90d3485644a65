"""OverFeat's network (Sermanet et al., ICLR 2014): a crop classifier whose fully connected
layers are re-cast as convolutions, so that one pass over an image of any size scores every
window at once.

Glossary of shape letters: N images or crops; S the window side (``window``); K classes
(K + 1 scores with background at 0, 4 K box deltas); C the last feature map's channels and
k its side for one window; H', W' the size of a dense map.

Why the conversion is exact: the feature layers are 3x3 convolutions *without padding*
and 2x2 max pools, so the features of a window depend on that window's pixels only, and a
window whose corner lies on a multiple of the total stride sees the same pooling grid in a
crop and in the whole image. The first fully connected layer reads the (C, k, k) features of
one window: written as a k x k convolution with the same weights, it reads every window's
features, stride 1 on the feature map = ``stride`` pixels on the image. The later fully
connected layers act on one vector per window and become 1 x 1 convolutions. The dense map's
cell (i, j) is therefore the classifier run on the window whose top-left pixel is
(``stride`` j, ``stride`` i), up to float rounding (tested in tests/detectors/test_overfeat.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OverFeatNet", "WindowClassifierLoss", "BoxRegressionLoss"]


class OverFeatNet(nn.Module):
    """Window classifier with a background class and a class-specific box regressor.

    Parameters
    ----------
    num_classes : int
        K object classes; the classifier has K + 1 outputs, background first.
    window : int, default 44
        Side of the square input window, in pixels.
    widths : tuple of int, default (16, 32, 64)
        Channels of the feature stages: each is a 3x3 convolution without padding, batch
        norm, ReLU and a 2x2 max pool, so the stride is ``2 ** len(widths)``.
    hidden : int, default 128
        Width of the two fully connected layers.
    dropout : float, default 0.3
        Dropout after each fully connected layer while training.

    ``forward(crops (N, 3, S, S)) -> (scores (N, K + 1), deltas (N, 4 K))``;
    ``dense(images (N, 3, H, W)) -> (scores (N, K + 1, H', W'), deltas (N, 4 K, H', W'))``
    with H' = (H - S) // stride + 1 (the same for W').
    """

    def __init__(self, num_classes: int, window: int = 44, widths=(16, 32, 64), hidden: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes!r}")
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty tuple of positive ints, got {widths!r}")
        side, layers, cin = int(window), [], 3
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            side = (side - 2) // 2
            cin = w
        if side < 1:
            raise ValueError(f"window {window} is too small for {len(widths)} stages of 3x3 conv + 2x2 pool "
                             f"(at least {self.min_window(len(widths))} pixels)")
        self.features = nn.Sequential(*layers)
        self.num_classes = int(num_classes)
        self.window = int(window)
        self.stride = 2 ** len(widths)
        self.feature_side = side
        self.fc1 = nn.Linear(cin * side * side, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.cls = nn.Linear(hidden, self.num_classes + 1)
        # The regression head reads the features, not the classifier's layers (as in the
        # paper): two fully connected layers of its own, trained after the classifier.
        self.reg_fc = nn.Linear(cin * side * side, hidden)
        self.reg = nn.Linear(hidden, 4 * self.num_classes)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def min_window(stages: int) -> int:
        """The smallest window that leaves a 1 x 1 feature map after ``stages`` stages."""
        side = 1
        for _ in range(stages):
            side = 2 * side + 2
        return side

    def output_size(self, height: int, width: int) -> tuple:
        """(H', W') of :meth:`dense` on an image of ``height`` x ``width``: the pools' floor
        may give a last cell whose window reaches past the image by pixels the window
        classifier never reads (its own pools drop them too)."""
        out = []
        for side in (int(height), int(width)):
            for _ in range(len(self.features) // 4):
                side = (side - 2) // 2
            out.append(max(side - self.feature_side + 1, 0))
        return tuple(out)

    def embed(self, crops: torch.Tensor):
        """(N, 3, S, S) crops -> ((N, hidden) classifier input, (N, hidden) regressor input)."""
        f = torch.flatten(self.features(crops), 1)
        h = self.dropout(F.relu(self.fc1(f)))
        return self.dropout(F.relu(self.fc2(h))), F.relu(self.reg_fc(f))

    def forward(self, crops: torch.Tensor):
        if crops.shape[-2:] != (self.window, self.window):
            raise ValueError(f"crops must be (N, 3, {self.window}, {self.window}), got {tuple(crops.shape)}; "
                             "use dense() for larger images")
        h, r = self.embed(crops)
        return self.cls(h), self.reg(r)

    def _dense_features(self, images):
        """``features(images)``; in eval mode each stage's batch norm is folded into its
        convolution and the ReLU applied after the pool (max and ReLU commute), in
        channels-last layout: the same values, computed with a quarter of the ReLU work and
        without a pass for the batch norm."""
        if self.training:
            return self.features(images)
        x = images.contiguous(memory_format=torch.channels_last)
        stages = list(self.features)
        for i in range(0, len(stages), 4):
            conv, bn = stages[i], stages[i + 1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = (conv.weight * scale[:, None, None, None]).contiguous(memory_format=torch.channels_last)
            x = F.relu(F.max_pool2d(F.conv2d(x, weight, bn.bias - bn.running_mean * scale), 2))
        return x

    def dense(self, images: torch.Tensor):
        """Scores and deltas of every window of ``images`` at once (the FC -> conv recast)."""
        if images.shape[-1] < self.window or images.shape[-2] < self.window:
            raise ValueError(f"images must be at least {self.window} x {self.window}, got {tuple(images.shape)}")
        f = self._dense_features(images)
        k = self.feature_side

        def window_layer(linear):  # reads one window's (C, k, k) features: a k x k convolution
            # (out, C k k) read as (out, C, k, k): torch.flatten of a (C, k, k) map is
            # channel-major, then row, then column, as view() unfolds it.
            return F.conv2d(f, linear.weight.view(-1, f.shape[1], k, k), linear.bias)

        def pointwise(linear, x):  # a layer on one window's vector: a 1 x 1 convolution
            return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)

        h = self.dropout(F.relu(window_layer(self.fc1)))
        h = self.dropout(F.relu(pointwise(self.fc2, h)))
        r = F.relu(window_layer(self.reg_fc))
        return pointwise(self.cls, h).contiguous(), pointwise(self.reg, r).contiguous()


class WindowClassifierLoss(nn.Module):
    """Training wrapper: softmax cross-entropy of the window classifier (K + 1 classes)."""

    def __init__(self, net: OverFeatNet):
        super().__init__()
        self.net = net

    def forward(self, crops, labels):
        scores, _ = self.net(crops)
        return {"loss_classifier": F.cross_entropy(scores, labels)}


class BoxRegressionLoss(nn.Module):
    """Training wrapper of the box regressor on fixed features: smooth L1 of the labelled
    class's deltas. The net stays in eval mode (batch-norm statistics and dropout as at test
    time) even while the wrapper trains; only ``net.reg_fc`` and ``net.reg`` should require
    gradients."""

    def __init__(self, net: OverFeatNet):
        super().__init__()
        self.net = net

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, crops, labels, deltas):
        with torch.no_grad():
            f = torch.flatten(self.net.features(crops), 1)
        pred = self.net.reg(F.relu(self.net.reg_fc(f))).view(len(crops), -1, 4)
        pred = pred[torch.arange(len(crops), device=crops.device), labels - 1]
        return {"loss_box_reg": F.smooth_l1_loss(pred, deltas, beta=1 / 9)}
