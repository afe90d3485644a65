"""Slow, obviously-correct RoI align / RoI pool, written from the definitions.

RoIAlign (He et al. 2017): each output bin averages grid_h x grid_w bilinear samples at
regularly spaced points; a point more than one pixel outside the map contributes 0, a
point within one pixel of the border is clamped onto it. RoI pool (Girshick 2015): the
maximum over the integer window of each bin. Conventions are torchvision's.
"""

import math

import numpy as np


def bilinear(plane, y, x):
    h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y = min(max(y, 0.0), h - 1.0)
    x = min(max(x, 0.0), w - 1.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * plane[y0, x0] + (1 - ly) * lx * plane[y0, x1]
            + ly * (1 - lx) * plane[y1, x0] + ly * lx * plane[y1, x1])


def roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """input (N, C, H, W), rois (K, 5) -> (K, C, PH, PW), float64."""
    input = np.asarray(input, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    ph_n, pw_n = output_size
    out = np.zeros((len(rois), input.shape[1], ph_n, pw_n))
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sx, sy = x1 * spatial_scale - off, y1 * spatial_scale - off
        rw, rh = x2 * spatial_scale - off - sx, y2 * spatial_scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(bh)), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(bw)), 0)
        count = max(gh * gw, 1)
        for c in range(input.shape[1]):
            plane = input[int(b), c]
            for ph in range(ph_n):
                for pw in range(pw_n):
                    total = 0.0
                    for iy in range(gh):
                        y = sy + ph * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            x = sx + pw * bw + (ix + 0.5) * bw / gw
                            total += bilinear(plane, y, x)
                    out[k, c, ph, pw] = total / count
    return out


def roi_pool(input, rois, output_size, spatial_scale=1.0):
    """input (N, C, H, W), rois (K, 5) -> (K, C, PH, PW) maxima, float64."""
    input = np.asarray(input, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    h, w = input.shape[2:]
    ph_n, pw_n = output_size
    out = np.zeros((len(rois), input.shape[1], ph_n, pw_n))
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        # C's round(): halves away from zero (numpy's round is to even).
        r = [int(math.floor(abs(v * spatial_scale) + 0.5)) * (1 if v >= 0 else -1) for v in (x1, y1, x2, y2)]
        rw, rh = max(r[2] - r[0] + 1, 1), max(r[3] - r[1] + 1, 1)
        bh, bw = rh / ph_n, rw / pw_n
        for ph in range(ph_n):
            h0 = min(max(int(math.floor(ph * bh)) + r[1], 0), h)
            h1 = min(max(int(math.ceil((ph + 1) * bh)) + r[1], 0), h)
            for pw in range(pw_n):
                w0 = min(max(int(math.floor(pw * bw)) + r[0], 0), w)
                w1 = min(max(int(math.ceil((pw + 1) * bw)) + r[0], 0), w)
                if h1 <= h0 or w1 <= w0:
                    continue
                out[k, :, ph, pw] = input[int(b), :, h0:h1, w0:w1].max(axis=(1, 2))
    return out


def bilinear_taps(h, w, y, x):
    """The four (row, column, weight) taps of a bilinear sample, [] when it is more than one
    pixel outside the map (it then contributes nothing, forward or backward)."""
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return []
    y = min(max(y, 0.0), h - 1.0)
    x = min(max(x, 0.0), w - 1.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return [(y0, x0, (1 - ly) * (1 - lx)), (y0, x1, (1 - ly) * lx), (y1, x0, ly * (1 - lx)), (y1, x1, ly * lx)]


def roi_align_backward(grad, rois, input_shape, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """Gradient of roi_align's input: each bin's gradient, divided by its sample count, spread
    on the taps of its samples with their bilinear weights. grad (K, C, PH, PW) -> (N, C, H, W)."""
    grad = np.asarray(grad, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    out = np.zeros(input_shape)
    h, w = input_shape[2:]
    ph_n, pw_n = grad.shape[2:]
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sx, sy = x1 * spatial_scale - off, y1 * spatial_scale - off
        rw, rh = x2 * spatial_scale - off - sx, y2 * spatial_scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(bh)), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(bw)), 0)
        count = max(gh * gw, 1)
        for ph in range(ph_n):
            for pw in range(pw_n):
                for iy in range(gh):
                    y = sy + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sx + pw * bw + (ix + 0.5) * bw / gw
                        for yy, xx, wt in bilinear_taps(h, w, y, x):
                            out[int(b), :, yy, xx] += grad[k, :, ph, pw] * wt / count
    return out


def roi_pool_backward(input, grad, rois, spatial_scale=1.0):
    """Gradient of roi_pool's input: each bin's gradient goes to the first maximum of its window
    in row-major order (none for an empty window). grad (K, C, PH, PW) -> (N, C, H, W)."""
    input = np.asarray(input, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64)
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    out = np.zeros(input.shape)
    h, w = input.shape[2:]
    ph_n, pw_n = grad.shape[2:]
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        r = [int(math.floor(abs(v * spatial_scale) + 0.5)) * (1 if v >= 0 else -1) for v in (x1, y1, x2, y2)]
        rw, rh = max(r[2] - r[0] + 1, 1), max(r[3] - r[1] + 1, 1)
        bh, bw = rh / ph_n, rw / pw_n
        for ph in range(ph_n):
            h0 = min(max(int(math.floor(ph * bh)) + r[1], 0), h)
            h1 = min(max(int(math.ceil((ph + 1) * bh)) + r[1], 0), h)
            for pw in range(pw_n):
                w0 = min(max(int(math.floor(pw * bw)) + r[0], 0), w)
                w1 = min(max(int(math.ceil((pw + 1) * bw)) + r[0], 0), w)
                if h1 <= h0 or w1 <= w0:
                    continue
                for c in range(input.shape[1]):
                    window = input[int(b), c, h0:h1, w0:w1]
                    yy, xx = np.unravel_index(np.argmax(window), window.shape)  # first maximum
                    out[int(b), c, h0 + yy, w0 + xx] += grad[k, c, ph, pw]
    return out
