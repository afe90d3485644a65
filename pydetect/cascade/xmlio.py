"""OpenCV cascade XML: the current ``opencv-cascade-classifier`` format (read and write)
and the old ``opencv-haar-classifier`` format (read).

Numbers are read as OpenCV reads them: every real as a double rounded to float32, so a
cascade saved here and loaded by ``cv2.CascadeClassifier`` holds the same float values.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET

import numpy as np

from pydetect._io import atomic_write
from pydetect._validation import INT32_MAX, INT32_MIN
from pydetect.cascade.model import Cascade, HaarFeature, Stage, WeakTree, _register_xml_io

__all__ = ["load_cascade", "save_cascade"]


class _Bad(Exception):
    pass


def _child(node, name, where):
    c = node.find(name)
    if c is None:
        raise _Bad(f"missing <{name}> in {where}")
    return c


def _text(node, name, where):
    return (_child(node, name, where).text or "").strip()


def _number(t, what):
    """A finite real from the text of ``what``."""
    try:
        v = float(t)
    except ValueError:
        raise _Bad(f"{what} must be a number, got {t.strip()[:60]!r}") from None
    if not math.isfinite(v):
        raise _Bad(f"{what} must be finite, got {t.strip()[:60]!r}")
    return v


def _round(v, what):
    """An int32 from a real, rounded half to even as OpenCV's cvRound."""
    i = round(v)
    if not INT32_MIN <= i <= INT32_MAX:
        raise _Bad(f"{what} must be an int32, got {v!r}")
    return i


def _real(node, name, where):
    return _number(_text(node, name, where), f"<{name}> in {where}")


def _int(node, name, where):
    return _round(_real(node, name, where), f"<{name}> in {where}")


def _numbers(text, where):
    return [_number(v, f"a value in {where}") for v in (text or "").split()]


def _ints(values, what):
    return [_round(v, what) for v in values]


def _flag(fn, where):
    """The optional <tilted> flag: absent or empty means 0."""
    t = fn.find("tilted")
    return t is not None and (t.text or "").strip() != "" and _int(fn, "tilted", where) != 0


def _items(node):
    return [c for c in node if c.tag == "_"]


def load_cascade(path) -> Cascade:
    path = os.fspath(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise
    except (ET.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable XML file ({exc})") from None
    try:
        node = root if root.tag != "opencv_storage" else next(iter(root), None)
        if node is None:
            raise _Bad("empty <opencv_storage>")
        if node.find("stageType") is not None or node.find("featureType") is not None:
            return _load_new(node)
        if node.find("size") is not None and node.find("stages") is not None:
            return _load_old(node)
        raise _Bad(f"<{node.tag}> is neither an OpenCV cascade (no <stageType>) nor an "
                   "old opencv-haar-classifier (no <size>/<stages>)")
    except _Bad as exc:
        raise ValueError(f"{path}: {exc}") from None


def _load_new(node) -> Cascade:
    stage_type = _text(node, "stageType", "the cascade")
    if stage_type != "BOOST":
        raise _Bad(f"unsupported stageType {stage_type!r} (only BOOST cascades exist)")
    ftype = _text(node, "featureType", "the cascade")
    if ftype == "HOG":
        raise _Bad("HOG cascades are not supported (OpenCV dropped them in 3.0)")
    if ftype not in ("HAAR", "LBP"):
        raise _Bad(f"unsupported featureType {ftype!r} (expected HAAR or LBP)")
    width, height = _int(node, "width", "the cascade"), _int(node, "height", "the cascade")
    fp = node.find("featureParams")
    if fp is None:
        # scikit-image's lbpcascade_frontalface_opencv.xml spells it <featuhreParams>
        # (cv2 refuses that file); it is accepted here as the same field.
        fp = _child(node, "featuhreParams", "the cascade") if node.find(
            "featuhreParams") is not None else _child(node, "featureParams", "the cascade")
    ncat = _int(fp, "maxCatCount", "<featureParams>")
    if ftype == "HAAR" and ncat != 0:
        raise _Bad(f"a HAAR cascade must have maxCatCount 0, got {ncat}")
    if ftype == "LBP" and ncat != 256:
        raise _Bad(f"an LBP cascade must have maxCatCount 256, got {ncat}")
    max_depth = None
    sp = node.find("stageParams")
    if sp is not None and sp.find("maxDepth") is not None:
        max_depth = _int(sp, "maxDepth", "<stageParams>")
    node_step = 3 + (8 if ncat else 1)

    thr, nweak, nnodes, left, right, feat, nthr, subs, leaves = ([] for _ in range(9))
    stages = _items(_child(node, "stages", "the cascade"))
    if not stages:
        raise _Bad("the cascade has no stages")
    for si, st in enumerate(stages):
        where = f"stage {si}"
        thr.append(_real(st, "stageThreshold", where))
        weak = _items(_child(st, "weakClassifiers", where))
        if not weak:
            raise _Bad(f"{where} has no weak classifiers")
        nweak.append(len(weak))
        for wi, w in enumerate(weak):
            wh = f"{where}, weak classifier {wi}"
            vals = _numbers(_text(w, "internalNodes", wh), wh)
            lv = _numbers(_text(w, "leafValues", wh), wh)
            if not vals or len(vals) % node_step:
                raise _Bad(f"{wh}: internalNodes must hold groups of {node_step} numbers, "
                           f"got {len(vals)}")
            k = len(vals) // node_step
            if len(lv) != k + 1:
                raise _Bad(f"{wh}: {k} nodes need {k + 1} leaf values, got {len(lv)}")
            nnodes.append(k)
            for j in range(k):
                g = vals[j * node_step:(j + 1) * node_step]
                ints = _ints(g[:node_step if ncat else 3], f"{wh}, node {j}: an index or "
                             "subset word")
                left.append(ints[0])
                right.append(ints[1])
                feat.append(ints[2])
                if ncat:
                    subs.append(ints[3:])
                    nthr.append(0.0)
                else:
                    nthr.append(g[3])
            leaves.extend(lv)

    fnodes = _items(_child(node, "features", "the cascade"))
    f = len(fnodes)
    rects = np.zeros((f, 3, 4), np.int32)
    weights = np.zeros((f, 3))  # float64: Cascade refuses what float32 cannot hold
    tilted = np.zeros(f, bool)
    for i, fn in enumerate(fnodes):
        where = f"feature {i}"
        if ftype == "LBP":
            r = _numbers(_text(fn, "rect", where), where)
            if len(r) != 4:
                raise _Bad(f"{where}: <rect> must hold x y w h, got {len(r)} numbers")
            rects[i, 0] = _ints(r, f"{where}: a <rect> value")
            continue
        rs = _items(_child(fn, "rects", where))
        if not 1 <= len(rs) <= 3:
            raise _Bad(f"{where}: a Haar feature has 1 to 3 rectangles, got {len(rs)}")
        for k, rn in enumerate(rs):
            r = _numbers(rn.text, where)
            if len(r) != 5:
                raise _Bad(f"{where}: a rectangle is 'x y w h weight', got {len(r)} numbers")
            rects[i, k] = _ints(r[:4], f"{where}, rectangle {k}: a coordinate")
            weights[i, k] = r[4]
        tilted[i] = _flag(fn, where)
    subset = np.asarray(subs, np.int32).reshape(-1, 8) if ncat else None
    try:
        return Cascade(feature_type=ftype, window_size=(width, height), stage_threshold=thr,
                       stage_num_weak=nweak, weak_num_nodes=nnodes, node_left=left,
                       node_right=right, node_feature=feat, node_threshold=nthr,
                       node_subset=subset, leaves=leaves, rects=rects, weights=weights,
                       tilted=tilted, max_depth=max_depth)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _load_old(node) -> Cascade:
    size = _numbers(_text(node, "size", "the cascade"), "<size>")
    if len(size) != 2:
        raise _Bad(f"<size> must be 'width height', got {size}")
    features, stages = [], []
    for si, st in enumerate(_items(_child(node, "stages", "the cascade"))):
        where = f"stage {si}"
        weak = []
        for ti, tree in enumerate(_items(_child(st, "trees", where))):
            wh = f"{where}, tree {ti}"
            left, right, feat, nthr, leaves = [], [], [], [], []
            for ni, nd in enumerate(_items(tree)):
                nw = f"{wh}, node {ni}"
                fn = _child(nd, "feature", nw)
                rs = _items(_child(fn, "rects", nw))
                if not 1 <= len(rs) <= 3:
                    raise _Bad(f"{nw}: a Haar feature has 1 to 3 rectangles, got {len(rs)}")
                r = [_numbers(rn.text, nw) for rn in rs]
                if any(len(v) != 5 for v in r):
                    raise _Bad(f"{nw}: a rectangle is 'x y w h weight'")
                feat.append(len(features))
                features.append(HaarFeature(
                    np.array([_ints(q[:4], f"{nw}: a rectangle coordinate") for q in r], np.int32),
                    np.array([q[4] for q in r]), _flag(fn, nw)))
                nthr.append(_real(nd, "threshold", nw))
                for side, out in (("left", left), ("right", right)):
                    val = nd.find(f"{side}_val")
                    if val is not None:
                        out.append(-len(leaves))
                        leaves.extend(_numbers(val.text, nw)[:1])
                    else:
                        out.append(_int(nd, f"{side}_node", nw))
            if not left:
                raise _Bad(f"{wh} has no nodes")
            weak.append(WeakTree(np.array(left), np.array(right), np.array(feat),
                                 np.array(nthr), np.zeros((0, 8), np.int32),
                                 np.array(leaves)))
        if not weak:
            raise _Bad(f"{where} has no trees")
        stages.append(Stage(_real(st, "stage_threshold", where), weak))
    if not stages:
        raise _Bad("the cascade has no stages")
    try:
        return Cascade.from_lists("HAAR", tuple(_ints(size, "<size>")), stages, features)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _num(v) -> str:
    # The exact double of a float32: parsing it back and rounding to float32 is lossless.
    return repr(float(v))


def save_cascade(cascade: Cascade, path) -> None:
    c = cascade
    lbp = c.feature_type == "LBP"
    depth = c.max_depth if c.max_depth is not None else (1 if c.max_nodes_per_tree <= 1 else
                                                         c.max_nodes_per_tree)
    out = ['<?xml version="1.0"?>', "<opencv_storage>",
           '<cascade type_id="opencv-cascade-classifier">',
           "  <stageType>BOOST</stageType>",
           f"  <featureType>{c.feature_type}</featureType>",
           f"  <height>{c.window_size[1]}</height>",
           f"  <width>{c.window_size[0]}</width>",
           "  <stageParams>",
           f"    <maxDepth>{depth}</maxDepth>",
           f"    <maxWeakCount>{int(c.stage_num_weak.max())}</maxWeakCount></stageParams>",
           "  <featureParams>",
           f"    <maxCatCount>{256 if lbp else 0}</maxCatCount></featureParams>"]
    out += [f"  <stageNum>{c.num_stages}</stageNum>", "  <stages>"]
    for si, st in enumerate(c.stages):
        out += ["    <_>", f"      <maxWeakCount>{len(st.weak)}</maxWeakCount>",
                f"      <stageThreshold>{_num(st.threshold)}</stageThreshold>",
                "      <weakClassifiers>"]
        for w in st.weak:
            vals = []
            for j in range(len(w.left)):
                vals += [str(int(w.left[j])), str(int(w.right[j])), str(int(w.feature[j]))]
                if lbp:
                    vals += [str(int(v)) for v in w.subset[j]]
                else:
                    vals.append(_num(w.threshold[j]))
            out += ["        <_>", "          <internalNodes>",
                    "            " + " ".join(vals) + "</internalNodes>",
                    "          <leafValues>",
                    "            " + " ".join(_num(v) for v in w.leaves) + "</leafValues></_>"]
        out += ["      </weakClassifiers></_>"]
    out += ["  </stages>", "  <features>"]
    for f in c.features:
        if lbp:
            out += ["    <_>", "      <rect>", "        " + " ".join(str(v) for v in f.rect) +
                    "</rect></_>"]
            continue
        out += ["    <_>", "      <rects>"]
        for r, w in zip(f.rects, f.weights):
            out += ["        <_>", "          " + " ".join(str(int(v)) for v in r) + " " +
                    _num(w) + "</_>"]
        out += ["      </rects>"]
        if f.tilted:
            out += ["      <tilted>1</tilted>"]
        out += ["    </_>"]
    out += ["  </features>", "</cascade>", "</opencv_storage>", ""]
    with atomic_write(path, "w", encoding="ascii") as fh:
        fh.write("\n".join(out))


# Cascade.load / Cascade.save call these; model.py does not import this module (see there).
_register_xml_io(load_cascade, save_cascade)
