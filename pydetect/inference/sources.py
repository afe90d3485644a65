"""Image sources that hand out regions, so that tiled inference holds a tile, not the image.

:func:`open_image` accepts

- a numpy array (or a CPU torch tensor), ``(H, W)`` grey or ``(H, W, 3)`` RGB: tiles are
  slices of it;
- a path to a ``.npy`` file (C order): tiles are read from the file row by row, so the
  process holds one tile at a time (nothing is mapped);
- a C-ordered ``numpy.memmap`` that maps its file (e.g. ``np.load(path, mmap_mode="r")``):
  read from its file in the same way, since the pages a mapping touches stay resident (page
  cache the kernel reclaims, but counted in the process' memory) until the whole image is;
  a copy-on-write (``mode="c"``) memmap, whose changes are not in the file, or a view of a
  memmap is sliced like an array;
- a path to any other image file (PNG, JPEG, TIFF, ...): OpenCV decodes the whole image
  (these formats cannot be read by region through OpenCV), so memory is that of the image.

Values are checked and converted tile by tile with the rules of the library's images
(uint8 as is; floats in [0, 1] scaled by 255; other integers in [0, 255]); the conversion
is per pixel, so a tile of the converted image equals the converted tile.
"""

from __future__ import annotations

import mmap
import os

import cv2
import numpy as np

from pydetect._validation import as_image, check_int, to_numpy
from pydetect.data import read_image

__all__ = ["open_image", "ArraySource", "FileSource", "read_downscaled"]


def _check_layout(shape, dtype, name):
    if dtype.kind not in "uif" or dtype == np.bool_:
        raise TypeError(f"{name} must be a uint8 or float image, got dtype {dtype}")
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 3), got {tuple(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(shape)}")
    return tuple(int(v) for v in shape[:2])


class ArraySource:
    """Regions of an in-memory (or memory-mapped) array."""

    def __init__(self, array, name: str = "image"):
        arr, _ = to_numpy(array, name)
        self.size = _check_layout(arr.shape, arr.dtype, name)
        self._array = arr
        self._name = name

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The region ``[y0:y1, x0:x1]`` as a C-contiguous uint8 image."""
        return as_image(self._array[y0:y1, x0:x1], self._name)

    def close(self) -> None:
        self._array = None


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class FileSource:
    """Regions of a C-ordered array stored in a file from byte ``offset`` on, read row by row
    into the tile (one read per tile row)."""

    def __init__(self, path, offset: int, shape, dtype):
        self._path = os.fspath(path)
        self.size = _check_layout(shape, np.dtype(dtype), self._path)
        self._file = open(self._path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._offset = int(offset)
        self._dtype = np.dtype(dtype)
        self._row_items = int(np.prod(shape[1:]))
        self._pixel_items = self._row_items // shape[1]
        self._tail = tuple(int(v) for v in shape[2:])

    @classmethod
    def from_npy(cls, path):
        """The array of a ``.npy`` file (format 1.0 or 2.0, C order)."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in _NPY_HEADERS:
                raise ValueError(f"{path}: .npy format version {version} is not supported (1.0 and 2.0 are)")
            shape, fortran_order, dtype = _NPY_HEADERS[version](f)
            offset = f.tell()
        if fortran_order:
            raise ValueError(f"{path}: a Fortran-ordered .npy cannot be read by rows; save it in C "
                             "order (np.save(path, np.ascontiguousarray(a)))")
        return cls(path, offset, shape, dtype)

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        out = np.empty((y1 - y0, x1 - x0) + self._tail, self._dtype)
        rows = out.reshape(y1 - y0, -1)
        item = self._dtype.itemsize
        nbytes = rows.shape[1] * item
        for r in range(y1 - y0):
            self._file.seek(self._offset + ((y0 + r) * self._row_items + x0 * self._pixel_items) * item)
            if self._file.readinto(memoryview(rows[r]).cast("B")) != nbytes:
                raise ValueError(f"{self._path}: file ends before row {y0 + r} (truncated)")
        return as_image(out, self._path)

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:  # also when __init__ failed before open()
            self._file.close()
            self._file = None

    def __del__(self):
        self.close()


def _maps_its_file(array) -> bool:
    """A memmap whose data are its file's bytes as they are: not a view (whose filename and
    offset are its parent's), not copy-on-write, C order."""
    return (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.mode != "c"
            and array.filename is not None and array.flags.c_contiguous)


def open_image(image):
    """An image source for ``image``: an array, a memmap, or a path (see the module docstring).

    Returns
    -------
    ArraySource or FileSource
        With ``size == (height, width)``, ``read(x0, y0, x1, y1)`` returning a uint8 region and
        ``close()``.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise FileNotFoundError(f"image file not found: {path}")
        if path.lower().endswith(".npy"):
            return FileSource.from_npy(path)
        if os.path.getsize(path) == 0:  # OpenCV asserts (cv2.error) on an empty buffer
            raise ValueError(f"cannot decode image file {path}: it is empty")
        return ArraySource(read_image(path), path)
    if isinstance(image, (bytes, bytearray)):
        raise TypeError("image must be an array or a path (str / os.PathLike), got bytes")
    if _maps_its_file(image):
        return FileSource(image.filename, image.offset, image.shape, image.dtype)
    return ArraySource(image)


def read_downscaled(source, longer_side: int) -> tuple:
    """The whole image downscaled so that its longer side is ``longer_side`` (never upscaled).

    It is read in horizontal bands (each about as many input rows as one band of output
    rows needs), each band shrunk with OpenCV's area interpolation, so memory stays that of a
    band plus the output.

    Returns
    -------
    image : uint8 ndarray
    scale : (float, float)
        ``(sy, sx)``: input pixels per output pixel, to map boxes back.
    """
    longer_side = check_int(longer_side, "full_image_size", minimum=1)
    height, width = source.size
    factor = min(1.0, longer_side / max(height, width))
    out_h, out_w = max(1, round(height * factor)), max(1, round(width * factor))
    sy, sx = height / out_h, width / out_w
    # About 256 input rows per band; band edges fall on output rows.
    band = max(1, int(256 / sy))
    parts = []
    for o0 in range(0, out_h, band):
        o1 = min(out_h, o0 + band)
        y0, y1 = round(o0 * sy), round(o1 * sy)
        rows = source.read(0, y0, width, y1)
        parts.append(rows if (y1 - y0, width) == (o1 - o0, out_w)
                     else cv2.resize(rows, (out_w, o1 - o0), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(np.concatenate(parts, axis=0)), (sy, sx)
