"""Tile planning and blending windows for images larger than one run can hold.

numpy only. An image's Y/X plane is cut into overlapping tiles; each tile is
restored on its own and weighted by a window that is flat inside the tile and
rises as a raised cosine (sin²) across the overlap with each neighbour (flat up
to the image border). In each overlap one tile's window falls exactly as its
neighbour's rises, so the windows of all tiles sum to 1 at every pixel: the
blended image is a weighted sum with no seam, and the pixels nearest a tile's
edge, where a restoration is least reliable, get almost no weight.

For super-resolution tiles are planned on the measured image and the windows
are built on the output grid (``factor`` times larger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEFAULT_TILE_SIZE = 512  # pixels of the measured image, per side
DEFAULT_OVERLAP = 64


@dataclass(frozen=True)
class Tile:
    """One tile: ``y`` and ``x`` are (start, stop) on the measured image; ``row``/``col`` index the grid."""

    index: int
    row: int
    col: int
    y: tuple[int, int]
    x: tuple[int, int]

    def slices(self, factor: int = 1) -> tuple[slice, slice]:
        """Y and X slices of the tile on a grid ``factor`` times finer (the output for super-resolution)."""
        return slice(self.y[0] * factor, self.y[1] * factor), slice(self.x[0] * factor, self.x[1] * factor)


@dataclass
class TilePlan:
    """The tiles covering a (Y, X) plane and their blending windows."""

    shape: tuple[int, int]
    tile_size: tuple[int, int]
    overlap: int
    factor: int
    tiles: list[Tile]
    _weights: tuple[list[np.ndarray], list[np.ndarray]] = field(repr=False)

    @property
    def grid(self) -> tuple[int, int]:
        return len(self._weights[0]), len(self._weights[1])

    def window(self, tile: Tile) -> np.ndarray:
        """The tile's blending weights on the output grid, float32 of shape (tile Y·factor, tile X·factor)."""
        wy, wx = self._weights[0][tile.row], self._weights[1][tile.col]
        return np.outer(wy, wx).astype(np.float32)


def plan_tiles(shape, tile_size=DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP, factor: int = 1) -> TilePlan:
    """Cut a plane of ``shape`` (Y, X) into tiles of at most ``tile_size`` (an int or a (Y, X) pair).

    Neighbouring tiles share at least ``overlap`` pixels; tiles are spread evenly,
    so the first starts at 0 and the last ends at the border. An axis no longer
    than the tile size is one tile.

    >>> plan = plan_tiles((900, 300), tile_size=512, overlap=64)
    >>> plan.grid, [tile.y for tile in plan.tiles]
    ((2, 1), [(0, 512), (388, 900)])
    """
    shape = tuple(int(s) for s in shape[-2:])
    sizes = (tile_size, tile_size) if np.isscalar(tile_size) else tuple(tile_size)
    sizes = tuple(int(s) for s in sizes)
    if any(s < 2 for s in sizes):
        raise ValueError(f"tile size must be at least 2 pixels; got {tile_size}")
    if overlap < 0 or any(overlap >= s for s, n in zip(sizes, shape) if n > s):
        raise ValueError(f"overlap must be ≥ 0 and smaller than the tile size; got overlap {overlap}, "
                         f"tile size {tile_size}")
    segments = [_segments(n, min(s, n), overlap) for n, s in zip(shape, sizes)]
    weights = tuple(_axis_weights(seg, overlap, factor) for seg in segments)
    tiles = [Tile(r * len(segments[1]) + c, r, c, ys, xs)
             for r, ys in enumerate(segments[0]) for c, xs in enumerate(segments[1])]
    return TilePlan(shape, tuple(min(s, n) for s, n in zip(sizes, shape)), overlap, factor, tiles, weights)


def _segments(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    if length <= size:
        return [(0, length)]
    count = math.ceil((length - size) / (size - overlap)) + 1
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return [(s, s + size) for s in starts]


def _rise(width: int) -> np.ndarray:
    """Raised-cosine ramp from ~0 to ~1 over ``width`` pixels (sampled at pixel centres)."""
    t = (np.arange(width) + 0.5) / width
    return np.sin(0.5 * np.pi * t) ** 2


def _axis_weights(segments, overlap: int, factor: int) -> list[np.ndarray]:
    """1D windows on the output grid; between neighbours a ramp of width ≤ overlap, centred in their overlap."""
    weights = [np.ones((stop - start) * factor) for start, stop in segments]
    if len(segments) == 1:
        return weights
    min_step = min(b[0] - a[0] for a, b in zip(segments, segments[1:]))
    # The ramp is half the overlap, centred: the quarter of the overlap nearest each tile's edge, where
    # a restoration is least reliable, gets no weight. Ramps must not meet inside one tile: at most one
    # step wide (steps differ by at most a pixel).
    width = min(overlap, min_step - 1) * factor // 2
    for i, (a, b) in enumerate(zip(segments, segments[1:])):
        shared_start, shared_stop = b[0] * factor, a[1] * factor
        ramp = min(width, shared_stop - shared_start)  # 0: a hard cut in the middle of the shared pixels
        ramp_start = shared_start + (shared_stop - shared_start - ramp) // 2
        rise = _rise(ramp)
        left, right = weights[i], weights[i + 1]
        # falling edge of tile i: 1 before the ramp, 1 − rise on it, 0 after
        offset = ramp_start - a[0] * factor
        left[offset:offset + ramp] *= 1.0 - rise
        left[offset + ramp:] = 0.0
        # rising edge of tile i + 1: 0 before the ramp, rise on it
        offset = ramp_start - b[0] * factor
        right[:offset] = 0.0
        right[offset:offset + ramp] *= rise
    return weights


def auto_tile_size(image_yx, factor: int, bytes_per_pixel: float, memory_bytes: float,
                   fraction: float = 0.25, multiple: int = 64, largest: int = 2048,
                   overlap: int = DEFAULT_OVERLAP) -> int | None:
    """The tile side (measured pixels) whose run fits in ``fraction`` of ``memory_bytes``, or None if the
    whole image fits. The largest side that fits (a multiple of ``multiple``, at least ``multiple`` and at most
    ``largest``) sets how many tiles an axis needs; the side is then shrunk to the smallest that still covers the
    image with that many tiles and ``overlap`` (a multiple of 16), so that the tiles fit few pixels beyond the
    image's: a 2048² frame whose largest tile is 1984 gets 2 × 2 tiles of 1056, not of 1984 (1.06× its pixels
    instead of 3.75×).
    """
    budget = fraction * memory_bytes
    pixels = np.prod(image_yx, dtype=np.float64) * factor * factor
    if pixels * bytes_per_pixel <= budget and max(image_yx) <= largest:
        return None
    side = int(min(max(int(math.sqrt(budget / bytes_per_pixel) / factor) // multiple * multiple, multiple),
                   largest))
    if overlap >= side:
        return side
    needed = 16
    for length in image_yx:
        if length > side:
            count = math.ceil((length - overlap) / (side - overlap))
            needed = max(needed, math.ceil((length - overlap) / count) + overlap)
    return int(min(side, -(-needed // 16) * 16))
