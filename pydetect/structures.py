"""Detections: the result type every detector returns.

A :class:`Detections` holds equal-length fields for the N detections of one image —
``boxes`` (N, 4) float32 xyxy, ``scores`` (N,) float32, ``labels`` (N,) int64 — plus any
extra per-detection fields a detector adds (a cascade's reject levels, an ISM's masks).
Indexing filters every field at once, as detectron2's ``Instances`` does::

    confident = dets[dets.scores > 0.5]
"""

from __future__ import annotations

import numpy as np

from pydetect._validation import as_boxes, as_int64, as_labels, as_vector, check_int, to_numpy

__all__ = ["Detections"]

_CORE = ("boxes", "scores", "labels")


class Detections:
    """Boxes, scores and labels of the detections in one image.

    Parameters
    ----------
    boxes : array or Tensor, shape (N, 4)
        ``(x1, y1, x2, y2)`` in pixels; stored as float32.
    scores : array or Tensor, shape (N,), optional
        Stored as float32. Default: ones.
    labels : integer array or Tensor, shape (N,), optional
        Class indices (0-based, into the dataset's ``class_names``). Default: zeros.
    **fields : arrays with first dimension N
        Extra per-detection data, available as attributes and filtered with the rest.

    Examples
    --------
    >>> d = Detections([[0, 0, 10, 10], [5, 5, 20, 20]], scores=[0.9, 0.3], labels=[1, 0])
    >>> len(d[d.scores > 0.5])
    1
    """

    def __init__(self, boxes=None, scores=None, labels=None, **fields):
        boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes
        b, _ = as_boxes(boxes, "boxes", dtype=np.float32)
        n = b.shape[0]
        s = np.ones(n, np.float32) if scores is None else as_vector(scores, n, "scores", dtype=np.float32)[0]
        lab = np.zeros(n, np.int64) if labels is None else as_labels(labels, n, "labels")
        extra = {}
        for name, value in fields.items():
            if name in _CORE or name.startswith("_"):
                raise ValueError(f"field name {name!r} is reserved")
            arr, _ = to_numpy(value, name)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ValueError(f"field {name!r} must have first dimension {n}, got shape {arr.shape}")
            extra[name] = arr
        object.__setattr__(self, "_fields", {"boxes": b, "scores": s, "labels": lab, **extra})

    # Field access -------------------------------------------------------------------
    def __getattr__(self, name):
        fields = self.__dict__.get("_fields")
        if fields is not None and name in fields:
            return fields[name]
        raise AttributeError(f"Detections has no field {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("Detections is immutable: build a new one (Detections(**d.fields(), ...))")

    def fields(self) -> dict:
        """All fields as a dict of arrays (a shallow copy of the mapping)."""
        return dict(self._fields)

    @property
    def extra_fields(self) -> tuple:
        """Names of the fields beyond boxes, scores and labels."""
        return tuple(k for k in self._fields if k not in _CORE)

    def __len__(self) -> int:
        return self._fields["boxes"].shape[0]

    def __getitem__(self, key) -> "Detections":
        """Filters every field: an int, a slice, a boolean mask or an index array."""
        n = len(self)
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -n <= key < n:
                raise IndexError(f"index {key} out of range for {n} detections")
            key = slice(int(key) % n, int(key) % n + 1)  # keeps the result a Detections
        elif not isinstance(key, slice):
            key, _ = to_numpy(key, "index")
            if key.dtype == bool:
                if key.shape != (n,):
                    raise IndexError(f"boolean index must have shape ({n},), got {key.shape}")
            elif key.dtype.kind in "iu" or key.size == 0:
                if key.ndim > 1:
                    raise IndexError(f"an index array must be 1-D, got shape {key.shape}")
                key = as_int64(key, "index").reshape(-1)
                if key.size and not (-n <= key.min() and key.max() < n):
                    raise IndexError(f"index array holds values in [{key.min()}, {key.max()}], out of range "
                                     f"for {n} detections")
            else:
                raise TypeError(f"index must be an int, a slice, a boolean mask or an integer array, "
                                f"got dtype {key.dtype}")
        return Detections._from_fields({k: v[key] for k, v in self._fields.items()})

    @classmethod
    def _from_fields(cls, fields: dict) -> "Detections":
        out = cls.__new__(cls)
        object.__setattr__(out, "_fields", fields)
        return out

    def __repr__(self) -> str:
        extra = f", extra={list(self.extra_fields)}" if self.extra_fields else ""
        return f"Detections(n={len(self)}{extra})"

    # Conversions --------------------------------------------------------------------
    def sorted(self) -> "Detections":
        """The detections by decreasing score (stable: equal scores keep their order)."""
        return self[np.argsort(-self.scores, kind="stable")]

    @classmethod
    def concat(cls, parts) -> "Detections":
        """Concatenates Detections that have the same fields."""
        parts = list(parts)
        if not parts:
            return cls()
        for i, p in enumerate(parts):
            if not isinstance(p, Detections):
                raise TypeError(f"parts[{i}] must be a Detections, got {type(p).__name__}")
        names = list(parts[0]._fields)
        for p in parts[1:]:
            if list(p._fields) != names:
                raise ValueError(f"cannot concatenate Detections with fields {names} and {list(p._fields)}")
        return cls._from_fields({k: np.concatenate([p._fields[k] for p in parts]) for k in names})

    def to_coco(self, image_id, category_ids=None) -> list:
        """COCO results entries ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

        Parameters
        ----------
        image_id : int
        category_ids : sequence or dict, optional
            Maps a label to its COCO category id; default: the label itself.
        """
        image_id = check_int(image_id, "image_id", minimum=0)
        b = self.boxes.astype(np.float64)
        xywh = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
        out = []
        for box, score, label in zip(xywh.tolist(), self.scores.tolist(), self.labels.tolist()):
            if label < 0:
                raise ValueError(f"labels must be >= 0 to map to COCO categories, got {label}")
            if category_ids is None:
                cat = label
            else:
                try:
                    cat = check_int(category_ids[label], f"category_ids[{label}]", minimum=0)
                except (IndexError, KeyError):
                    raise ValueError(f"category_ids has no entry for label {label}") from None
            out.append({"image_id": image_id, "category_id": cat,
                        "bbox": [round(v, 3) for v in box], "score": float(score)})
        return out


def check_detections(detections, n_images: int, n_classes: int) -> list:
    """Validates per-image detections against a dataset's size; returns them as a list.

    Shared by the evaluators and the result writers (:func:`pydetect.eval.voc_evaluate`,
    :func:`pydetect.data.save_coco_results`). It needs only the dataset's counts, so this
    module stays independent of :mod:`pydetect.data`; the caller checks the dataset itself.

    Parameters
    ----------
    detections : iterable of Detections
        One per dataset image.
    n_images : int
        Number of images in the dataset.
    n_classes : int
        Number of dataset classes; every label must lie in ``[0, n_classes)``.

    Returns
    -------
    list of Detections

    Raises
    ------
    TypeError
        ``detections`` is not iterable, or an item is not a :class:`Detections`.
    ValueError
        Wrong count, a label out of range, or a non-finite box or score.
    """
    if not hasattr(detections, "__iter__"):
        raise TypeError(f"detections must be a list of Detections, got {type(detections).__name__}")
    detections = list(detections)
    if len(detections) != n_images:
        raise ValueError(f"detections must hold one Detections per dataset image ({n_images}), "
                         f"got {len(detections)}")
    for i, d in enumerate(detections):
        if not isinstance(d, Detections):
            raise TypeError(f"detections[{i}] must be a Detections, got {type(d).__name__}")
        if len(d) and (d.labels.min() < 0 or d.labels.max() >= n_classes):
            raise ValueError(f"detections[{i}].labels must lie in [0, {n_classes}) (the dataset's classes), "
                             f"got values in [{d.labels.min()}, {d.labels.max()}]")
        if len(d) and not (np.isfinite(d.boxes).all() and np.isfinite(d.scores).all()):
            raise ValueError(f"detections[{i}] has non-finite boxes or scores")
    return detections
