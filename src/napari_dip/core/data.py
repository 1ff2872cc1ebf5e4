"""Round trips between the user's arrays and the network's tensors.

Layout: the channel axis (if any) moves last, then every axis in front of the
spatial ones (Y, X; or Z, Y, X for volumes) becomes a list of planes. Intensities
are mapped to [0, 1] by percentiles and mapped back afterwards. Sides are padded
by reflection to what the network needs and cropped back, so no row is lost.
Nothing here modifies the caller's arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DIPInputError


@dataclass
class PlaneLayout:
    """How an array maps to planes shaped (C, *spatial) and back."""

    shape: tuple
    channel_axis: int | None
    spatial_dims: int  # 2, or 3 for volumetric runs

    @property
    def _moved_shape(self):
        if self.channel_axis is None:
            return self.shape + (1,)
        shape = list(self.shape)
        channels = shape.pop(self.channel_axis)
        return tuple(shape) + (channels,)

    @property
    def lead_shape(self) -> tuple:
        return self._moved_shape[: -(self.spatial_dims + 1)]

    @property
    def spatial_shape(self) -> tuple:
        return self._moved_shape[-(self.spatial_dims + 1):-1]

    @property
    def channels(self) -> int:
        return self._moved_shape[-1]

    @property
    def planes(self) -> int:
        return int(np.prod(self.lead_shape, dtype=np.int64))

    def to_planes(self, array: np.ndarray) -> np.ndarray:
        """(…, spatial, [C]) → (P, C, *spatial), a new float32 array."""
        a = np.asarray(array)
        a = a[..., None] if self.channel_axis is None else np.moveaxis(a, self.channel_axis, -1)
        a = a.reshape((self.planes,) + a.shape[-(self.spatial_dims + 1):])
        return np.ascontiguousarray(np.moveaxis(a, -1, 1), dtype=np.float32)

    def from_planes(self, planes: np.ndarray) -> np.ndarray:
        """(P, C, *spatial_out) → the original layout with the output's spatial size."""
        a = np.moveaxis(planes, 1, -1)
        a = a.reshape(self.lead_shape + a.shape[1:])
        if self.channel_axis is None:
            return a[..., 0]
        return np.moveaxis(a, -1, self.channel_axis)

    def output_shape(self, factor: int = 1) -> tuple:
        spatial = tuple(s * factor if i >= self.spatial_dims - 2 else s
                        for i, s in enumerate(self.spatial_shape))
        return self.from_planes(np.empty((self.planes, self.channels) + spatial, dtype=np.uint8)).shape


def normalise_channel_axis(channel_axis: int | None, ndim: int) -> int | None:
    """``channel_axis`` as an index in 0…ndim-1 (None stays None); DIPInputError when it is out of range."""
    if channel_axis is None:
        return None
    if not -ndim <= channel_axis < ndim:
        raise DIPInputError(f"channel_axis={channel_axis} is out of range for an image with {ndim} axes")
    return channel_axis % ndim


def as_image(image, name: str = "image") -> np.ndarray:
    """Check that ``image`` is a non-empty numeric array; returns a read-only view or a copy."""
    try:
        a = np.asarray(image)
    except Exception as exc:  # e.g. ragged lists
        raise DIPInputError(f"{name} could not be read as an array: {exc}") from None
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not (np.issubdtype(a.dtype, np.number)):
        raise DIPInputError(f"{name} must hold numbers; got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise DIPInputError(f"{name} is complex; pass its magnitude (np.abs) or real part")
    if a.size == 0:
        raise DIPInputError(f"{name} is empty (shape {a.shape})")
    return a


@dataclass
class Normalisation:
    """Linear map of intensities to [0, 1]: ``(x − low) / (high − low)``."""

    low: float
    high: float

    @property
    def span(self) -> float:
        return self.high - self.low if self.high > self.low else 1.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.low) / self.span).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return (x * self.span + self.low).astype(np.float32)


def fit_normalisation(values: np.ndarray, percentiles=(0.0, 100.0), zero_low: bool = False) -> Normalisation:
    """Percentile normalisation over finite values.

    The default (0, 100) keeps every intensity representable: the networks end
    in a sigmoid, so anything mapped above 1 would be clipped in the result.
    ``zero_low`` keeps 0 at 0 (photon counts for the Poisson model).
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise DIPInputError("the image has no finite pixel values (all NaN or inf)")
    low, high = np.percentile(finite.astype(np.float64), percentiles)
    if zero_low:
        low = 0.0
    return Normalisation(float(low), float(high))


def pad_amounts(spatial: tuple, multiple: int, minimum: int) -> list[tuple[int, int]]:
    """Padding (before, after) per axis so each side is a multiple of ``multiple`` and ≥ ``minimum``.

    Split evenly between both ends so a border does not all fall on one side.
    """
    out = []
    for n in spatial:
        target = max(int(math.ceil(n / multiple)) * multiple, minimum)
        extra = target - n
        out.append((extra // 2, extra - extra // 2))
    return out


def pad_reflect(planes: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """Pad the spatial axes of (P, C, *spatial) by reflection (repeated for pads larger than the side)."""
    widths = [(0, 0), (0, 0)] + list(pads)
    if any(n == 1 for n in planes.shape[2:]):
        return np.pad(planes, widths, mode="edge")
    return np.pad(planes, widths, mode="reflect")


def crop(planes: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """Undo :func:`pad_reflect`: cut ``pads`` (before, after) off the spatial axes of (P, C, *spatial)."""
    index = [slice(None), slice(None)] + [slice(b, planes.shape[2 + i] - a) for i, (b, a) in enumerate(pads)]
    return planes[tuple(index)]
