"""Round trips between the user's arrays and the network's tensors.

Layout: the channel axis (if any) moves last, then every axis in front of the
spatial ones (Y, X; or Z, Y, X for volumes) becomes a list of planes. Intensities
are mapped to [0, 1] by percentiles and mapped back afterwards. Sides are padded
by reflection to what the network needs and cropped back, so no row is lost.
Nothing here modifies the caller's arrays.
"""

from __future__ import annotations

import itertools
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

    @property
    def leads(self) -> list[tuple]:
        """Each plane's index on the leading axes, in plane order."""
        return list(itertools.product(*(range(n) for n in self.lead_shape)))

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

    def output_shape(self, factor=1) -> tuple:
        """The shape of a result ``factor`` times larger in Y and X, or per spatial axis for a tuple."""
        factors = factor if isinstance(factor, tuple) else (1,) * (self.spatial_dims - 2) + (factor, factor)
        spatial = tuple(s * f for s, f in zip(self.spatial_shape, factors))
        return self.from_planes(np.empty((self.planes, self.channels) + spatial, dtype=np.uint8)).shape

    @property
    def axes(self) -> dict:
        """The array's axes by role: 'lead' (a list, the axes that number the planes), 'spatial' (Z, Y, X
        or Y, X) and 'channel' (or None)."""
        others = [a for a in range(len(self.shape)) if a != self.channel_axis]
        return {"lead": others[:-self.spatial_dims], "spatial": others[-self.spatial_dims:],
                "channel": self.channel_axis}


def normalise_channel_axis(channel_axis: int | None, ndim: int) -> int | None:
    """``channel_axis`` as an index in 0…ndim-1 (None stays None); DIPInputError when it is out of range."""
    if channel_axis is None:
        return None
    if not -ndim <= channel_axis < ndim:
        raise DIPInputError(f"channel_axis={channel_axis} is out of range for an image with {ndim} axes")
    return channel_axis % ndim


def is_lazy(array) -> bool:
    """True for array-likes that read their values on demand (dask, zarr, h5py …), not numpy arrays."""
    return not isinstance(array, np.ndarray) and hasattr(array, "shape") and hasattr(array, "__getitem__")


def check_array(array, name: str = "image"):
    """Like :func:`as_image`, but a lazy array is checked from its shape and dtype and returned unread."""
    if not is_lazy(array):
        return as_image(array, name)
    dtype = np.dtype(array.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b") or np.issubdtype(dtype, np.complexfloating):
        raise DIPInputError(f"{name} must hold real numbers; got dtype {dtype}")
    if int(np.prod(array.shape)) == 0:
        raise DIPInputError(f"{name} is empty (shape {tuple(array.shape)})")
    return array


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

    def forward_result(self, x: np.ndarray) -> np.ndarray:
        """A restored (noise-free) image in the network's units: :meth:`forward`'s inverse (a teacher's result taught
        to a student)."""
        return self.forward(x)

    def mse_in_units(self, mse: float, result: np.ndarray) -> float:
        """A mean squared error in the normalised units as one in the input's (``result``: in the input's units)."""
        return mse * self.span ** 2


@dataclass
class LogNormalisation(Normalisation):
    """Speckled data (core/speckle.py) to the network's units: ``(power · log x − bias − low) / (high − low)``.

    ``power`` turns the data into intensity (2 for amplitude); ``bias`` is the mean of the log-speckle, so that the
    noise is zero-mean in the network's units and each pixel is its own unbiased estimate of the log reflectivity;
    ``floor`` stands in for zero pixels, whose logarithm is not finite. :meth:`inverse` maps a log reflectivity back
    to the data's units (``√R`` for amplitude), so ``inverse(forward(x))`` is ``x · exp(−bias / power)``.
    """

    power: float = 1.0
    bias: float = 0.0
    floor: float = 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # NaN stays NaN: missing pixels are handled by the caller
            logs = self.power * np.log(np.maximum(np.asarray(x, np.float64), self.floor))
        return ((logs - self.bias - self.low) / self.span).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return np.exp((np.asarray(x, np.float64) * self.span + self.low) / self.power).astype(np.float32)

    def forward_result(self, x: np.ndarray) -> np.ndarray:
        # a result has no speckle, so no log-speckle mean to take out
        return self.forward(x) + np.float32(self.bias / self.span)

    def mse_in_units(self, mse: float, result: np.ndarray) -> float:
        # a small log-intensity error δ is a relative intensity error δ, an amplitude one δ / 2
        return mse * self.span ** 2 * float(np.nanmean(np.asarray(result, np.float64) ** 2)) / self.power ** 2


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


def fit_log_normalisation(planes: np.ndarray, missing: np.ndarray, power: float, bias: float,
                          percentiles=(0.0, 100.0)) -> LogNormalisation:
    """A :class:`LogNormalisation` for speckled data ``planes`` (P, C, *spatial), ≥ 0, with ``missing`` pixels.

    Zeros are put at half the smallest positive value. The range covers ``percentiles`` of the logarithms averaged
    over 5 × 5 pixels, widened by :data:`LOG_MARGIN` of it at each end: single pixels' log-speckle reaches far below
    the scene (a look's 0.5 % quantile is 5.3 below its mean), and a range spanning it would leave the scene a thin
    slice of the network's output (the network alone on a 256² photo at one look: 21.73 dB after 4000 iterations
    that way, 23.06 at 1000 this way; docs/benchmarks.md § Radar speckle)."""
    from scipy import ndimage

    values = np.asarray(planes, np.float64)[~missing]
    positive = values[values > 0]
    if positive.size == 0:
        raise DIPInputError("speckled data need positive values (amplitude or intensity); every pixel is 0 or "
                            "missing")
    floor = float(positive.min()) / 2  # also for zeros in parts of the data this sample did not see
    logs = power * np.log(np.maximum(np.where(missing, np.median(values), planes), floor)) - bias
    averaged = ndimage.uniform_filter(logs, (1,) * (logs.ndim - 2) + (5, 5), mode="reflect")[~missing]
    low, high = np.percentile(averaged, percentiles)
    margin = LOG_MARGIN * max(high - low, 1e-6)
    return LogNormalisation(float(low - margin), float(high + margin), power=float(power), bias=float(bias),
                            floor=floor)


LOG_MARGIN = 0.1


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


@dataclass
class ArraySource:
    """An array read, or added into, one work unit at a time: one plane, a Y/X region, channels last.

    ``lead_axes`` number the planes; an array with fewer of them than the image's applies to every
    plane along the missing ones (a 2D mask for a whole stack). ``yx_scale``: the array's pixels per
    input pixel along Y and X (the factor, for arrays on the result's grid). Reads are copies: the
    caller's array is never changed by a read.
    """

    array: object
    lead_axes: tuple
    yx_axes: tuple
    channel_axis: int | None
    yx_scale: tuple = (1, 1)

    @classmethod
    def of(cls, array, channel_axis, spatial_dims, yx_scale=(1, 1)) -> ArraySource:
        layout = PlaneLayout(tuple(array.shape), channel_axis, spatial_dims)
        axes = layout.axes
        return cls(array, tuple(axes["lead"]), tuple(axes["spatial"][-2:]), channel_axis, tuple(yx_scale))

    def _index(self, lead, y, x):
        index = [slice(None)] * len(self.array.shape)
        own = tuple(lead)[len(lead) - len(self.lead_axes):] if self.lead_axes else ()
        for axis, i in zip(self.lead_axes, own):
            index[axis] = int(i)
        for axis, span, scale in zip(self.yx_axes, (y, x), self.yx_scale):
            if span is not None:
                index[axis] = slice(span[0] * scale, span[1] * scale)
        return tuple(index)

    def _channel_in_piece(self):
        if self.channel_axis is None:
            return None
        return self.channel_axis - sum(a < self.channel_axis for a in self.lead_axes)

    def read(self, lead=(), y=None, x=None) -> np.ndarray:
        """The unit's piece (a copy): the plane ``lead``, rows ``y`` and columns ``x`` (None: all), channels last."""
        piece = np.array(self.array[self._index(lead, y, x)])
        channel = self._channel_in_piece()
        return piece if channel is None else np.moveaxis(piece, channel, -1)

    def add(self, values: np.ndarray, lead=(), y=None, x=None):
        """Add a piece laid out as :meth:`read` returns it into the array (which must be writable)."""
        channel = self._channel_in_piece()
        if channel is not None:
            values = np.moveaxis(values, -1, channel)
        index = self._index(lead, y, x)
        self.array[index] = np.asarray(self.array[index]) + values

    def write(self, values: np.ndarray, lead=(), y=None, x=None):
        """Write a piece laid out as :meth:`read` returns it into the array (replacing what was there)."""
        channel = self._channel_in_piece()
        self.array[self._index(lead, y, x)] = values if channel is None else np.moveaxis(values, -1, channel)
