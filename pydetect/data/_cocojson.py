"""Reading and checking COCO JSON (ground truth and results) into flat numpy arrays.

Shared by :func:`pydetect.data.load_coco` and :func:`pydetect.eval.coco_evaluate`. Every
problem is reported as a ``ValueError`` naming the file (or "ground truth"/"results" for
in-memory dicts) and the offending field, e.g. ``gt.json: annotations[3]['bbox'] ...``.
"""

from __future__ import annotations

import json
import math
import numbers
import os

import numpy as np

__all__ = ["read_json", "parse_gt", "parse_results"]


def read_json(source, what: str):
    """Returns ``(obj, name)``: ``source`` parsed if it is a path, else itself."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f), path
        except FileNotFoundError:
            raise FileNotFoundError(f"{what} file not found: {path}") from None
        except ValueError as exc:  # malformed JSON or text, or an integer of more than 4300 digits
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        except RecursionError:
            raise ValueError(f"{path}: not valid COCO JSON (nested too deeply)") from None
    return source, what


_INT64_MAX = 2**63 - 1


def _is_id(v) -> bool:
    """A COCO id or size: an integer in [0, 2**63), int64's range (a bool is not an integer here)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= _INT64_MAX


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_box(v, where: str):
    if not (isinstance(v, (list, tuple)) and len(v) == 4 and all(_is_num(x) for x in v)):
        raise ValueError(f"{where} must be a list [x, y, w, h] of 4 finite numbers, got {v!r}")
    if v[2] < 0 or v[3] < 0:
        raise ValueError(f"{where} has a negative width or height: {v!r}")


def _list_field(obj: dict, key: str, name: str) -> list:
    if key not in obj:
        raise ValueError(f"{name}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, list):
        raise ValueError(f"{name}: field '{key}' must be a list, got {type(value).__name__}")
    return value


_PLAIN_NUMBER = (int, float)


def _fast_annotations(anns, image_ids, category_ids):
    """Vectorised parse of valid annotations; None if anything is off (the slow pass names it)."""
    n = len(anns)
    try:
        if not all(type(a) is dict and type(a["image_id"]) is int and type(a["category_id"]) is int
                   and type(a["id"]) is int and type(a["bbox"]) is list and len(a["bbox"]) == 4
                   and all(type(v) in _PLAIN_NUMBER for v in a["bbox"])
                   and type(a.get("area", 0.0)) in _PLAIN_NUMBER
                   and a.get("iscrowd", 0) in (0, 1) and a.get("difficult", 0) in (0, 1) for a in anns):
            return None
        out = {
            "image_id": np.fromiter((a["image_id"] for a in anns), np.int64, n),
            "category_id": np.fromiter((a["category_id"] for a in anns), np.int64, n),
            "id": np.fromiter((a["id"] for a in anns), np.int64, n),
            "bbox": np.array([a["bbox"] for a in anns], np.float64).reshape(n, 4),
            "iscrowd": np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), bool, n),
            "difficult": np.fromiter((bool(a.get("difficult", 0)) for a in anns), bool, n),
        }
        area = np.fromiter((a.get("area", np.nan) for a in anns), np.float64, n)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    box = out["bbox"]
    missing = np.isnan(area)
    area[missing] = box[missing, 2] * box[missing, 3]
    out["area"] = area
    if not (np.isfinite(box).all() and (box[:, 2:] >= 0).all() and np.isfinite(area).all() and (area >= 0).all()):
        return None
    if n and not (np.isin(out["image_id"], np.fromiter(image_ids, np.int64)).all()
                  and np.isin(out["category_id"], np.fromiter(category_ids, np.int64)).all()
                  and np.unique(out["id"]).size == n and out["id"].min() >= 0):
        return None
    return out


def parse_gt(source) -> dict:
    """Parses COCO ground truth (a path or a dict) into arrays.

    Returns a dict with ``images`` (list of dicts with id, file_name, height, width),
    ``categories`` (list of (id, name), sorted by id) and per-annotation arrays
    ``image_id, category_id`` (int64), ``bbox`` (N, 4) float64 xywh, ``area`` float64,
    ``iscrowd`` bool, ``id`` int64, in file order.
    """
    obj, name = read_json(source, "ground truth")
    if not isinstance(obj, dict):
        raise ValueError(f"{name}: COCO ground truth must be a JSON object, got {type(obj).__name__}")
    images = _list_field(obj, "images", name)
    anns = _list_field(obj, "annotations", name)
    cats = _list_field(obj, "categories", name)

    img_out, seen = [], set()
    for i, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or not _is_id(im["id"]):
            got = im.get("id", "nothing") if isinstance(im, dict) else im
            raise ValueError(f"{name}: images[{i}]['id'] must be an integer in [0, 2**63), got {got!r}")
        if im["id"] in seen:
            raise ValueError(f"{name}: images[{i}]['id'] = {im['id']} is a duplicate")
        seen.add(im["id"])
        for key in ("height", "width"):
            if key in im and not (_is_id(im[key]) and im[key] > 0):
                raise ValueError(f"{name}: images[{i}]['{key}'] must be a positive integer, got {im[key]!r}")
        if "file_name" in im and not isinstance(im["file_name"], str):
            raise ValueError(f"{name}: images[{i}]['file_name'] must be a string")
        img_out.append(im)

    cat_out, cseen = [], set()
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c or not _is_id(c["id"]):
            got = c.get("id", "nothing") if isinstance(c, dict) else c
            raise ValueError(f"{name}: categories[{i}]['id'] must be an integer in [0, 2**63), got {got!r}")
        if c["id"] in cseen:
            raise ValueError(f"{name}: categories[{i}]['id'] = {c['id']} is a duplicate")
        cseen.add(c["id"])
        cat_out.append((int(c["id"]), str(c.get("name", c["id"]))))
    cat_out.sort()

    n = len(anns)
    out = {
        "image_id": np.zeros(n, np.int64), "category_id": np.zeros(n, np.int64),
        "bbox": np.zeros((n, 4), np.float64), "area": np.zeros(n, np.float64),
        "iscrowd": np.zeros(n, bool), "id": np.zeros(n, np.int64),
        "difficult": np.zeros(n, bool),  # not COCO: a VOC flag save_coco writes when set
    }
    fast = _fast_annotations(anns, seen, cseen)
    if fast is not None:
        out.update(fast)
        anns = ()  # all checked: skip the entry-by-entry pass
    ids = set()
    for i, a in enumerate(anns):
        where = f"{name}: annotations[{i}]"
        if not isinstance(a, dict):
            raise ValueError(f"{where} must be an object")
        for key in ("image_id", "category_id", "id"):
            if key not in a or not _is_id(a[key]):
                raise ValueError(f"{where}['{key}'] must be an integer in [0, 2**63), got {a.get(key, 'nothing')!r}")
        if a["image_id"] not in seen:
            raise ValueError(f"{where}['image_id'] = {a['image_id']} is not in 'images'")
        if a["category_id"] not in cseen:
            raise ValueError(f"{where}['category_id'] = {a['category_id']} is not in 'categories'")
        if a["id"] in ids:
            raise ValueError(f"{where}['id'] = {a['id']} is a duplicate")
        ids.add(a["id"])
        if "bbox" not in a:
            raise ValueError(f"{where} has no 'bbox'")
        _check_box(a["bbox"], f"{where}['bbox']")
        bb = a["bbox"]
        if "area" in a:
            if not _is_num(a["area"]) or a["area"] < 0:
                raise ValueError(f"{where}['area'] must be a non-negative number, got {a['area']!r}")
            area = a["area"]
        else:
            area = bb[2] * bb[3]
        for key in ("iscrowd", "difficult"):
            if a.get(key, 0) not in (0, 1):  # True and False compare equal to 1 and 0
                raise ValueError(f"{where}['{key}'] must be 0 or 1, got {a[key]!r}")
        crowd = a.get("iscrowd", 0)
        out["image_id"][i] = a["image_id"]
        out["category_id"][i] = a["category_id"]
        out["bbox"][i] = bb
        out["area"][i] = area
        out["iscrowd"][i] = bool(crowd)
        out["id"][i] = a["id"]
        out["difficult"][i] = bool(a.get("difficult", 0))
    out["images"] = img_out
    out["categories"] = cat_out
    return out


def parse_results(source, image_ids=None, category_ids=None) -> dict:
    """Parses COCO bbox results (a path or a list of dicts) into arrays.

    Returns ``image_id, category_id`` (int64), ``bbox`` (N, 4) float64 xywh and ``score``
    float64, in file order. With ``image_ids`` / ``category_ids`` given, entries referring
    to others raise ``ValueError``.
    """
    obj, name = read_json(source, "results")
    if isinstance(obj, dict) and "annotations" in obj:
        obj = obj["annotations"]
    if not isinstance(obj, (list, tuple)):
        raise ValueError(f"{name}: COCO results must be a JSON list of objects, got {type(obj).__name__}")
    n = len(obj)
    out = {"image_id": np.zeros(n, np.int64), "category_id": np.zeros(n, np.int64),
           "bbox": np.zeros((n, 4), np.float64), "score": np.zeros(n, np.float64)}
    try:  # fast path; on any problem, the loop below finds and names it
        out["image_id"] = np.fromiter((r["image_id"] for r in obj), np.int64, n)
        out["category_id"] = np.fromiter((r["category_id"] for r in obj), np.int64, n)
        out["score"] = np.fromiter((r["score"] for r in obj), np.float64, n)
        box = np.array([r["bbox"] for r in obj], np.float64).reshape(n, 4)
        # numpy would also convert strings and bools: only JSON numbers take the fast path.
        ok = (all(type(r["image_id"]) is int and type(r["category_id"]) is int
                  and type(r["score"]) in _PLAIN_NUMBER and type(r["bbox"]) is list
                  and all(type(v) in _PLAIN_NUMBER for v in r["bbox"]) for r in obj)
              and np.isfinite(out["score"]).all() and np.isfinite(box).all()
              and (box[:, 2:] >= 0).all() and (out["image_id"] >= 0).all() and (out["category_id"] >= 0).all())
        out["bbox"] = box
    except (KeyError, TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        for i, r in enumerate(obj):
            where = f"{name}: [{i}]"
            if not isinstance(r, dict):
                raise ValueError(f"{where} must be an object")
            for key in ("image_id", "category_id"):
                if key not in r or not _is_id(r[key]):
                    raise ValueError(f"{where}['{key}'] must be an integer in [0, 2**63), "
                                     f"got {r.get(key, 'nothing')!r}")
            if "score" not in r or not _is_num(r["score"]):
                raise ValueError(f"{where}['score'] must be a finite number, got {r.get('score', 'nothing')!r}")
            if "bbox" not in r:
                raise ValueError(f"{where} has no 'bbox'")
            _check_box(r["bbox"], f"{where}['bbox']")
        # All valid (e.g. numpy integers in an in-memory list): convert entry by entry.
        out["image_id"] = np.array([int(r["image_id"]) for r in obj], np.int64).reshape(n)
        out["category_id"] = np.array([int(r["category_id"]) for r in obj], np.int64).reshape(n)
        out["score"] = np.array([float(r["score"]) for r in obj], np.float64).reshape(n)
        out["bbox"] = np.array([[float(v) for v in r["bbox"]] for r in obj], np.float64).reshape(n, 4)
    for key, allowed, label in (("image_id", image_ids, "an image"), ("category_id", category_ids, "a category")):
        if allowed is not None and n:
            bad = ~np.isin(out[key], np.asarray(list(allowed), np.int64))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name}: [{i}]['{key}'] = {out[key][i]} is not {label} of the ground truth")
    return out
