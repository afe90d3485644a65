"""Tile geometry: where the tiles of a large image lie.

Tiles advance by ``stride = tile - round(overlap * tile)`` pixels; the last tile of a row
or column is shifted inwards so that it ends at the image border. No tile is padded and no
tile is smaller than ``tile`` unless the image itself is (then the tile is the image's full
extent along that axis). The last tile therefore overlaps its neighbour by at least
``round(overlap * tile)`` pixels, often more.

An object no longer than ``round(overlap * tile)`` pixels along an axis lies wholly inside at
least one tile along that axis: choose ``overlap * tile`` at least the size of the largest
object the tiles should see whole.
"""

from __future__ import annotations

import numpy as np

from pydetect._validation import check_fraction, check_size

__all__ = ["tile_starts", "tile_grid", "check_tiling"]


def check_tiling(tile, overlap) -> tuple:
    """``(tile_h, tile_w), overlap`` checked: tile an int or (height, width) >= 1, overlap in [0, 1)."""
    tile = check_size(tile, "tile")
    overlap = check_fraction(overlap, "overlap")
    if overlap >= 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return tile, overlap


def tile_starts(length: int, tile: int, overlap: float) -> np.ndarray:
    """Start offsets of the tiles along one axis of ``length`` pixels (int64, increasing).

    One tile (start 0) when ``length <= tile``; otherwise starts ``0, stride, 2 stride, ...``
    with the last one moved to ``length - tile``.
    """
    if length <= tile:
        return np.zeros(1, np.int64)
    stride = max(1, tile - round(overlap * tile))
    n = -(-(length - tile) // stride) + 1  # ceil division: the last start reaches length - tile
    starts = np.arange(n, dtype=np.int64) * stride
    starts[-1] = length - tile
    return starts


def tile_grid(image_size, tile, overlap: float = 0.2) -> np.ndarray:
    """The tiles covering an image, row by row.

    Parameters
    ----------
    image_size : (int, int)
        ``(height, width)`` of the image.
    tile : int or (int, int)
        Tile ``(height, width)``; an int is a square tile.
    overlap : float in [0, 1)
        Overlap between neighbouring tiles as a fraction of the tile size.

    Returns
    -------
    tiles : (T, 4) int64 ndarray
        ``(x0, y0, x1, y1)`` of each tile (``x1`` exclusive), top row first, left to right.

    Examples
    --------
    >>> tile_grid((100, 250), 100, 0.2).tolist()
    [[0, 0, 100, 100], [80, 0, 180, 100], [150, 0, 250, 100]]
    """
    height, width = check_size(image_size, "image_size")
    (tile_h, tile_w), overlap = check_tiling(tile, overlap)
    ys = tile_starts(height, tile_h, overlap)
    xs = tile_starts(width, tile_w, overlap)
    y0, x0 = (a.reshape(-1) for a in np.meshgrid(ys, xs, indexing="ij"))
    return np.stack([x0, y0, np.minimum(x0 + tile_w, width), np.minimum(y0 + tile_h, height)], axis=1)
