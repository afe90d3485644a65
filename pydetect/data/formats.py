"""COCO and PASCAL VOC files <-> DetectionDataset.

COCO boxes are ``[x, y, w, h]`` in continuous pixels: ``(x, y, x + w, y + h)`` in pydetect.
VOC boxes are 1-based inclusive pixel indices: ``(xmin - 1, ymin - 1, xmax, ymax)`` in
pydetect (as detectron2 and torchvision read them).
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np

from pydetect._io import atomic_write
from pydetect.data._cocojson import parse_gt
from pydetect.data.dataset import DetectionDataset
from pydetect.structures import check_detections

__all__ = ["load_coco", "save_coco", "save_coco_results", "export_coco", "load_voc", "VOC_CLASSES"]

#: The 20 PASCAL VOC classes, in the devkit's order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)


# ---------------------------------------------------------------------------------------
# COCO
# ---------------------------------------------------------------------------------------
def load_coco(ann_json, image_dir=None) -> DetectionDataset:
    """Reads a COCO detection file (instances JSON) into a DetectionDataset.

    Parameters
    ----------
    ann_json : path or dict
        COCO ground truth: ``images`` (id, file_name, height, width), ``annotations``
        (id, image_id, category_id, bbox ``[x, y, w, h]``, optional area, iscrowd) and
        ``categories`` (id, name).
    image_dir : path, optional
        Directory holding the images' ``file_name``. Default: the JSON file's directory.

    Returns
    -------
    DetectionDataset
        Images in file order (read lazily), classes sorted by category id, ``category_ids``
        and ``image_ids`` kept; each target carries ``area`` from the file (COCO evaluation's
        size ranges use it) and ``iscrowd``. An extra ``difficult`` annotation field is read.

    Raises
    ------
    ValueError
        Malformed JSON, naming the file and the field.
    """
    gt = parse_gt(ann_json)
    if image_dir is None:
        image_dir = os.path.dirname(os.fspath(ann_json)) if isinstance(ann_json, (str, os.PathLike)) else "."
    image_dir = os.fspath(image_dir)
    cat_ids = [c for c, _ in gt["categories"]]
    names = [n for _, n in gt["categories"]]
    if len(set(names)) != len(names):  # class names must be unique: disambiguate with the id
        names = [f"{n}_{c}" if names.count(n) > 1 else n for c, n in gt["categories"]]
    if not cat_ids:
        where = os.fspath(ann_json) if isinstance(ann_json, (str, os.PathLike)) else "ground truth"
        raise ValueError(f"{where}: 'categories' is empty")
    label_of = {c: i for i, c in enumerate(cat_ids)}
    difficult = gt["difficult"]
    by_image = {}
    for j, img_id in enumerate(gt["image_id"].tolist()):
        by_image.setdefault(img_id, []).append(j)
    images, targets, ids, sizes = [], [], [], []
    for i, im in enumerate(gt["images"]):
        if "file_name" not in im:
            where = os.fspath(ann_json) if isinstance(ann_json, (str, os.PathLike)) else "ground truth"
            raise ValueError(f"{where}: images[{i}] has no 'file_name'")
        idx = np.asarray(by_image.get(im["id"], []), np.int64)
        bb = gt["bbox"][idx].reshape(-1, 4)
        boxes = np.column_stack([bb[:, 0], bb[:, 1], bb[:, 0] + bb[:, 2], bb[:, 1] + bb[:, 3]])
        targets.append({
            "boxes": boxes.astype(np.float32),
            "labels": np.array([label_of[c] for c in gt["category_id"][idx].tolist()], np.int64),
            "iscrowd": gt["iscrowd"][idx], "difficult": difficult[idx], "area": gt["area"][idx],
        })
        images.append(os.path.join(image_dir, im["file_name"]))
        ids.append(im["id"])
        sizes.append((im["height"], im["width"]) if "height" in im and "width" in im else None)
    return DetectionDataset(images, targets, names, image_ids=ids, image_sizes=sizes, category_ids=cat_ids)


def _check_dataset(dataset) -> None:
    if not isinstance(dataset, DetectionDataset):
        raise TypeError(f"dataset must be a DetectionDataset, got {type(dataset).__name__}")


def _coco_gt_dict(dataset: DetectionDataset, file_names) -> dict:
    images, anns = [], []
    for i, t in enumerate(dataset.targets):
        h, w = dataset.image_size(i)
        images.append({"id": int(dataset.image_ids[i]), "file_name": file_names[i], "height": int(h), "width": int(w)})
        b = t["boxes"].astype(np.float64)
        for j in range(b.shape[0]):
            bw, bh = b[j, 2] - b[j, 0], b[j, 3] - b[j, 1]
            ann = {"id": len(anns) + 1, "image_id": int(dataset.image_ids[i]),
                   "category_id": int(dataset.category_ids[t["labels"][j]]),
                   "bbox": [float(b[j, 0]), float(b[j, 1]), float(bw), float(bh)],
                   "area": float(t["area"][j]) if "area" in t else float(bw * bh),
                   "iscrowd": int(t["iscrowd"][j])}
            if t["difficult"][j]:
                ann["difficult"] = 1
            anns.append(ann)
    cats = [{"id": int(c), "name": n} for c, n in zip(dataset.category_ids, dataset.class_names)]
    return {"images": images, "annotations": anns, "categories": cats}


def save_coco(dataset: DetectionDataset, ann_json, image_dir=None) -> dict:
    """Writes a dataset as COCO ground truth (atomically), and optionally its images.

    Parameters
    ----------
    dataset : DetectionDataset
    ann_json : path
        The instances JSON to write.
    image_dir : path, optional
        If given, every image is written there as PNG (``<image_id>.png``, RGB) and
        ``file_name`` refers to it. Otherwise path images keep their file's base name and
        in-memory images get ``<image_id>.png`` (not written).

    Returns
    -------
    dict
        The COCO dict written.
    """
    _check_dataset(dataset)
    file_names = []
    for i in range(len(dataset)):
        path = dataset.image_path(i)
        if image_dir is not None or path is None:
            file_names.append(f"{dataset.image_ids[i]:06d}.png")
        else:
            file_names.append(os.path.basename(path))
    if image_dir is not None:
        for i in range(len(dataset)):
            img = dataset.load_image(i)
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
            if not ok:  # pragma: no cover (PNG encoding of uint8 RGB does not fail)
                raise ValueError(f"could not encode image {i} as PNG")
            with atomic_write(os.path.join(os.fspath(image_dir), file_names[i])) as f:
                f.write(buf.tobytes())
    out = _coco_gt_dict(dataset, file_names)
    with atomic_write(ann_json, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return out


def save_coco_results(detections, dataset: DetectionDataset, path=None) -> list:
    """COCO results (``image_id, category_id, bbox [x, y, w, h], score``) for per-image Detections.

    Parameters
    ----------
    detections : list of Detections
        One per dataset image; labels index ``dataset.class_names``.
    dataset : DetectionDataset
        Supplies ``image_ids`` and ``category_ids``.
    path : path, optional
        If given, the list is written there as JSON (atomically).

    Returns
    -------
    list of dict
    """
    _check_dataset(dataset)
    detections = check_detections(detections, len(dataset), len(dataset.class_names))
    out = []
    for i, d in enumerate(detections):
        b = d.boxes.astype(np.float64)
        for j in range(len(d)):
            out.append({"image_id": int(dataset.image_ids[i]), "category_id": int(dataset.category_ids[d.labels[j]]),
                        "bbox": [float(b[j, 0]), float(b[j, 1]), float(b[j, 2] - b[j, 0]), float(b[j, 3] - b[j, 1])],
                        "score": float(d.scores[j])})
    if path is not None:
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(out, f)
    return out


def export_coco(dataset: DetectionDataset, out_dir, ann_name: str = "annotations.json") -> str:
    """Exports a dataset to a COCO folder: ``out_dir/images/*.png`` and ``out_dir/<ann_name>``.

    Returns the path of the annotation file; :func:`load_coco` on it gives the dataset back.
    """
    _check_dataset(dataset)
    out_dir = os.fspath(out_dir)
    ann = os.path.join(out_dir, ann_name)
    save_coco(dataset, ann, os.path.join(out_dir, "images"))
    # file_name is relative to the JSON's directory (load_coco's default image_dir).
    with open(ann, encoding="utf-8") as f:
        obj = json.load(f)
    for im in obj["images"]:
        im["file_name"] = "images/" + im["file_name"]
    with atomic_write(ann, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    return ann


# ---------------------------------------------------------------------------------------
# PASCAL VOC
# ---------------------------------------------------------------------------------------
def _xml_text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _xml_number(node, tag: str, where: str) -> float:
    text = _xml_text(node, tag, where)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{where}: <{tag}> must be a finite number, got {text!r}")
    return value


def load_voc(root, split: str = "trainval", class_names=VOC_CLASSES, *, keep_difficult: bool = True) -> DetectionDataset:
    """Reads a PASCAL VOC-style dataset (VOC2007 layout).

    Parameters
    ----------
    root : path
        Folder with ``Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt`` and
        ``JPEGImages/`` (the image is ``JPEGImages/<filename>`` from the XML, else
        ``<id>.jpg``).
    split : str
        The image set, e.g. ``"train"``, ``"val"``, ``"trainval"``, ``"test"``.
    class_names : sequence of str
        Classes, in label order. Default: the 20 VOC classes.
    keep_difficult : bool
        Keep "difficult" objects (flagged in ``target["difficult"]``, ignored by
        :func:`~pydetect.eval.voc_evaluate`); False drops them.

    Returns
    -------
    DetectionDataset
        Boxes ``(xmin - 1, ymin - 1, xmax, ymax)``; image ids are the numeric VOC ids when
        all are numbers, else ``0..N-1``.

    Raises
    ------
    ValueError
        A malformed XML file or an unknown class, naming the file and the field.
    """
    root = os.fspath(root)
    list_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.exists(list_file):
        raise FileNotFoundError(f"VOC image set not found: {list_file}")
    with open(list_file, encoding="utf-8") as f:
        ids = [line.split()[0] for line in f if line.strip()]
    class_names = list(class_names)
    label_of = {n: i for i, n in enumerate(class_names)}
    images, targets, sizes = [], [], []
    for vid in ids:
        path = os.path.join(root, "Annotations", f"{vid}.xml")
        try:
            tree = ET.parse(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"VOC annotation not found: {path}") from None
        except ET.ParseError as exc:
            raise ValueError(f"{path}: malformed XML ({exc})") from None
        ann = tree.getroot()
        size = ann.find("size")
        hw = None
        if size is not None:
            hw = (int(_xml_number(size, "height", f"{path}: <size>")), int(_xml_number(size, "width", f"{path}: <size>")))
            if hw[0] <= 0 or hw[1] <= 0:
                hw = None  # some VOC files carry 0 x 0: read the image for its size
            elif max(hw) >= 2**31:
                raise ValueError(f"{path}: <size> of {hw[1]}x{hw[0]} pixels is not an image size")
        fname = ann.findtext("filename")
        images.append(os.path.join(root, "JPEGImages", fname.strip() if fname and fname.strip() else f"{vid}.jpg"))
        boxes, labels, difficult = [], [], []
        for k, obj in enumerate(ann.findall("object")):
            where = f"{path}: <object> {k}"
            name = _xml_text(obj, "name", where)
            if name not in label_of:
                raise ValueError(f"{where}: <name> {name!r} is not one of class_names")
            diff = obj.findtext("difficult")
            try:
                diff = bool(int(diff)) if diff is not None and diff.strip() else False
            except ValueError:
                raise ValueError(f"{where}: <difficult> must be 0 or 1, got {diff!r}") from None
            if diff and not keep_difficult:
                continue
            bnd = obj.find("bndbox")
            if bnd is None:
                raise ValueError(f"{where}: missing <bndbox>")
            x1, y1, x2, y2 = (_xml_number(bnd, t, f"{where} <bndbox>") for t in ("xmin", "ymin", "xmax", "ymax"))
            if x2 < x1 or y2 < y1:
                raise ValueError(f"{where}: <bndbox> has xmax < xmin or ymax < ymin")
            boxes.append((x1 - 1, y1 - 1, x2, y2))
            labels.append(label_of[name])
            difficult.append(diff)
        targets.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64),
                        "difficult": np.asarray(difficult, bool)})
        sizes.append(hw)
    # Numeric ids become the image ids when they are distinct and fit COCO's int64 ids.
    numeric = all(v.isascii() and v.isdigit() and int(v) < 2**63 for v in ids)
    image_ids = [int(v) for v in ids] if numeric and len(set(map(int, ids))) == len(ids) else None
    return DetectionDataset(images, targets, class_names, image_ids=image_ids, image_sizes=sizes)
