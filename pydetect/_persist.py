"""Model files without pickle: a JSON header plus numpy arrays, in one zip archive.

An archive holds ``header.json`` (UTF-8 JSON) and ``arrays/<i>.npy``, the arrays the header
refers to in numpy's ``.npy`` format, read back with ``allow_pickle=False``. Reading builds
only JSON values, numpy arrays and torch tensors: nothing in the file can name code to run.

JSON lacks a few of the types a fitted model holds; :func:`encode` writes them as tagged
objects, the only JSON objects whose keys start with ``"__"``:

=============================  ==============================================================
``{"__array__": i}``           numpy array ``i`` (a numpy scalar is a 0-d array, read back as
                               a scalar of the same dtype)
``{"__tensor__": i}``          a CPU torch tensor stored as array ``i``
``{"__tuple__": [...]}``       a tuple
``{"__items__": [[k, v]]}``    a dict whose keys are not all strings (or start with ``"__"``)
``{"__path__": "..."}``        a filesystem path (``pathlib.Path``)
=============================  ==============================================================
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import zipfile

import numpy as np
import torch

from pydetect._io import atomic_write

__all__ = ["encode", "decode", "write_archive", "read_archive", "is_zip_file"]

_ZIP_MAGIC = b"PK\x03\x04"


def _is_tensor(value) -> bool:
    return isinstance(value, torch.Tensor)


def encode(value, arrays: list, where: str):
    """``value`` as JSON, its arrays and tensors appended to ``arrays``; ``where`` names the
    value in the TypeError raised for a type a model file cannot hold."""
    if isinstance(value, (np.ndarray, np.generic)):  # first: np.float64 is also a float
        if value.dtype.hasobject:
            raise TypeError(f"{where}: an object array cannot be stored in a model file")
        arrays.append(np.asarray(value))
        return {"__array__": len(arrays) - 1}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if _is_tensor(value):
        arrays.append(value.detach().cpu().numpy())
        return {"__tensor__": len(arrays) - 1}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v, arrays, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__items__": [[encode(k, arrays, f"{where} key"), encode(v, arrays, f"{where}[{k!r}]")]
                              for k, v in value.items()]}
    if isinstance(value, os.PathLike):
        return {"__path__": os.fspath(value)}
    raise TypeError(f"{where}: a {type(value).__name__} cannot be stored in a model file")


def decode(value, arrays: list):
    """Inverse of :func:`encode`, ``arrays`` being the list it filled. Raises ValueError on
    anything :func:`encode` does not write."""
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if not any(k.startswith("__") for k in value):
        return {k: decode(v, arrays) for k, v in value.items()}
    if len(value) != 1:
        raise ValueError(f"malformed tagged value with keys {sorted(value)}")
    (tag, body), = value.items()
    if tag in ("__array__", "__tensor__"):
        if not isinstance(body, int) or isinstance(body, bool) or not 0 <= body < len(arrays):
            raise ValueError(f"array reference {body!r} is not one of the archive's {len(arrays)} arrays")
        a = arrays[body]
        if tag == "__tensor__":
            return torch.from_numpy(a)
        return a[()] if a.ndim == 0 else a
    if tag == "__tuple__" and isinstance(body, list):
        return tuple(decode(v, arrays) for v in body)
    if tag == "__items__" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
        return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in body}
    if tag == "__path__" and isinstance(body, str):
        return pathlib.Path(body)
    raise ValueError(f"malformed tagged value {tag!r}")


def _hashable(key):
    try:
        hash(key)
    except TypeError:
        raise ValueError(f"a dict key of type {type(key).__name__} is not hashable") from None
    return key


def write_archive(path, header: dict, arrays: list) -> None:
    """Writes ``header.json`` and ``arrays/<i>.npy`` to a zip archive at ``path``, atomically."""
    with atomic_write(path, "wb") as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr("header.json", json.dumps(header))
            for i, a in enumerate(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
                z.writestr(f"arrays/{i}.npy", buf.getvalue())


def is_zip_file(path) -> bool:
    """Whether the file at ``path`` starts like a zip archive (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        return f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC


def read_archive(path):
    """The parsed ``header.json`` and the list of arrays of the archive at ``path`` (arrays
    read with ``allow_pickle=False``). Malformed content raises ValueError naming ``path``."""
    try:
        with zipfile.ZipFile(path) as z:
            try:
                header = json.loads(z.read("header.json").decode("utf-8"))
            except KeyError:
                raise ValueError("no header.json in the archive") from None
            if not isinstance(header, dict):
                raise ValueError("header.json does not hold a JSON object")
            names, arrays = set(z.namelist()), []
            while f"arrays/{len(arrays)}.npy" in names:
                with z.open(f"arrays/{len(arrays)}.npy") as f:
                    arrays.append(np.lib.format.read_array(f, allow_pickle=False))
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable pydetect model file ({exc})") from None
    return header, arrays
