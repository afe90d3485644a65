"""Slow, obviously-correct references for integral images and cascades (issue 4)."""

from __future__ import annotations

import numpy as np


def integral_tables(img):
    """(sum, squared, tilted) straight from the definitions, (H+1, W+1) int64/float64."""
    img = np.asarray(img)
    h, w = img.shape
    v = img.astype(np.float64) if img.dtype.kind == "f" else img.astype(np.int64)
    s = np.zeros((h + 1, w + 1), v.dtype)
    q = np.zeros((h + 1, w + 1), np.float64)
    t = np.zeros((h + 1, w + 1), v.dtype)
    s[1:, 1:] = v.cumsum(0).cumsum(1)
    q[1:, 1:] = (v.astype(np.float64) ** 2).cumsum(0).cumsum(1)
    xs = np.arange(w)
    for Y in range(h + 1):
        for X in range(w + 1):
            total = 0
            for y in range(Y):
                m = np.abs(xs - X + 1) <= Y - y - 1
                total += v[y, m].sum()
            t[Y, X] = total
    return s, q, t


def run_window(cascade, level_img, x, y, trace=False):
    """OpenCV's runAt for one window of a pyramid level, written plainly with numpy
    scalars in OpenCV's precisions. Returns (result, last stage sum[, trace])."""
    f32 = np.float32
    img = np.asarray(level_img)
    ww, wh = cascade.window_size
    win = img[y:y + wh, x:x + ww].astype(np.int64)
    log = []
    vnf = f32(1)
    if cascade.feature_type == "HAAR":
        n = win[1:wh - 1, 1:ww - 1]
        area = float(n.size)
        s, sq = int(n.sum()), int((n * n).sum())
        nf = area * sq - float(s) * s
        if not nf > 0:
            return -1, 0.0
        vnf = f32(1.0 / np.sqrt(nf))
        if not area * float(vnf) < 0.1:
            return -1, 0.0
        masks = _masks_of(cascade)

    features, stages = _views_of(cascade)

    def value(fi):
        if cascade.feature_type == "HAAR":
            f = features[fi]
            parts = [int((win * m).sum()) for m in masks[fi]]
            v = f32(f.weights[0]) * f32(parts[0]) + f32(f.weights[1]) * f32(parts[1])
            if len(parts) > 2 and f.weights[2] != 0:
                v = f32(v + f32(f.weights[2]) * f32(parts[2]))
            return f32(f32(v) * vnf)
        bx, by, bw, bh = features[fi].rect
        blocks = [[int(win[by + i * bh:by + (i + 1) * bh, bx + j * bw:bx + (j + 1) * bw].sum())
                   for j in range(3)] for i in range(3)]
        c = blocks[1][1]
        order = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
        code = 0
        for k, (i, j) in enumerate(order):
            code |= (blocks[i][j] >= c) << (7 - k)
        return code

    total = 0.0
    for si, st in enumerate(stages):
        total = 0.0
        for t in st.weak:
            idx = 0
            while True:
                v = value(int(t.feature[idx]))
                if cascade.feature_type == "HAAR":
                    go_left = v < f32(t.threshold[idx])
                    log.append((si, float(v), float(t.threshold[idx])))
                else:
                    go_left = bool(int(t.subset[idx][v >> 5]) & (1 << (v & 31)))
                idx = int(t.left[idx] if go_left else t.right[idx])
                if idx <= 0:
                    break
            total += float(t.leaves[-idx])
        if total < float(f32(f32(st.threshold) - f32(1e-5))):
            return (-si, total, log) if trace else (-si, total)
    return (1, total, log) if trace else (1, total)


_MASKS = {}
_VIEWS = {}


def _views_of(cascade):
    key = id(cascade)
    if key not in _VIEWS:
        _VIEWS[key] = (cascade, cascade.features, cascade.stages)
    return _VIEWS[key][1:]


def _masks_of(cascade):
    key = id(cascade)
    if key not in _MASKS:
        ww, wh = cascade.window_size
        _MASKS[key] = (cascade, [_feature_mask_ref(f, ww, wh) for f in _views_of(cascade)[0]])
    return _MASKS[key][1]


def _feature_mask_ref(f, ww, wh):
    """Per-rectangle pixel masks of a Haar feature (tilted ones from the table formula)."""
    out = []
    ys, xs = np.mgrid[0:wh, 0:ww]

    def tri(X, Y):
        return ((ys < Y) & (np.abs(xs - X + 1) <= Y - ys - 1)).astype(np.int64)

    for (x, y, w, h) in f.rects:
        if f.tilted:
            out.append(tri(x, y) - tri(x - h, y + h) - tri(x + w, y + w) + tri(x + w - h, y + w + h))
        else:
            m = np.zeros((wh, ww), np.int64)
            m[y:y + h, x:x + w] = 1
            out.append(m)
    return out


def write_old_format(cascade, path):
    """Writes a HAAR cascade in the old ``opencv-haar-classifier`` format (trees of
    nodes with inline leaves), the way OpenCV 1.x files look."""
    w, h = cascade.window_size
    feats = cascade.features
    out = ['<?xml version="1.0"?>', "<opencv_storage>",
           '<old_cascade type_id="opencv-haar-classifier">', f"  <size>{w} {h}</size>",
           "  <stages>"]
    for si, st in enumerate(cascade.stages):
        out.append("    <_>")
        out.append("      <trees>")
        for t in st.weak:
            out.append("        <_>")
            for j in range(len(t.left)):
                f = feats[int(t.feature[j])]
                out.append("          <_>")
                out.append("            <feature>")
                out.append("              <rects>")
                for r, wt in zip(f.rects, f.weights):
                    out.append(f"                <_>{r[0]} {r[1]} {r[2]} {r[3]} {float(wt)!r}</_>")
                out.append("              </rects>")
                out.append(f"              <tilted>{int(f.tilted)}</tilted></feature>")
                out.append(f"            <threshold>{float(t.threshold[j])!r}</threshold>")
                for side, child in (("left", t.left[j]), ("right", t.right[j])):
                    if child > 0:
                        out.append(f"            <{side}_node>{int(child)}</{side}_node>")
                    else:
                        out.append(f"            <{side}_val>{float(t.leaves[-child])!r}</{side}_val>")
                out.append("          </_>")
            out.append("        </_>")
        out.append("      </trees>")
        out.append(f"      <stage_threshold>{float(st.threshold)!r}</stage_threshold>")
        out.append(f"      <parent>{si - 1}</parent>")
        out.append("      <next>-1</next></_>")
    out += ["  </stages>", "</old_cascade>", "</opencv_storage>", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(out))


def lfw_collage(n_faces=24, face=60, cols=6, gap=10):
    """LFW faces from scikit-image, upscaled and tiled on a grey background (uint8)."""
    import cv2
    from skimage import data

    faces = data.lfw_subset()[:n_faces]
    rows = (n_faces + cols - 1) // cols
    cell = face + gap
    img = np.full((rows * cell + gap, cols * cell + gap), 128, np.uint8)
    for i, f in enumerate(faces):
        r, c = divmod(i, cols)
        tile = cv2.resize(np.rint(f * 255).astype(np.uint8), (face, face),
                          interpolation=cv2.INTER_LINEAR)
        img[gap + r * cell:gap + r * cell + face, gap + c * cell:gap + c * cell + face] = tile
    return img
