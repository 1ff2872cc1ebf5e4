"""Reading the part of a layer to restore, and where its result goes in the world.

No maths on pixel values here: only which axes are which, which plane the
viewer shows, and how the result layer lines up with its input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.data import PlaneLayout, is_lazy
from ..errors import DIPInputError

CURRENT_PLANE = "current plane"
ALL_PLANES = "all planes, one by one"
VOLUME = "volume (3D network)"
PLANE_MODES = (CURRENT_PLANE, ALL_PLANES, VOLUME)


@dataclass
class InputSelection:
    """The array handed to the engine and how it sits in the input layer.

    ``region`` indexes the layer's data (a slice per axis): the current-plane mode
    keeps each leading axis at length 1, so the result layer has the input's
    number of dimensions and shows up on the right slice.
    """

    layer: object
    data: np.ndarray
    region: tuple
    channel_axis: int | None
    volumetric: bool
    streamed: bool = False  # a lazy stack: the engine reads it plane by plane

    @property
    def region_without_channels(self) -> tuple:
        if self.channel_axis is None:
            return self.region
        return self.region[:self.channel_axis] + self.region[self.channel_axis + 1:]

    @property
    def shape_without_channels(self) -> tuple:
        shape = self.data.shape
        if self.channel_axis is None:
            return shape
        return shape[:self.channel_axis] + shape[self.channel_axis + 1:]


def layer_array(layer) -> np.ndarray | object:
    """The layer's data; refuses multiscale pyramids, which DIP cannot restore whole."""
    if getattr(layer, "multiscale", False):
        raise DIPInputError(f"layer {layer.name!r} is a multiscale pyramid; open one resolution level "
                            "as a plain image layer (e.g. viewer.add_image(layer.data[1])) and restore that")
    return layer.data


def spatial_axes(ndim: int, channel_axis: int | None, volumetric: bool) -> list[int]:
    """The last two (or three for volumes) axes that are not the channel axis."""
    axes = [a for a in range(ndim) if a != channel_axis]
    return axes[-(3 if volumetric else 2):]


def select_input(layer, viewer, plane_mode: str, channel_axis: int | None) -> InputSelection:
    """What part of ``layer`` to restore: the plane on screen, every plane, or the volume."""
    data = layer_array(layer)
    ndim = len(data.shape)
    if layer.rgb:
        channel_axis = ndim - 1
    elif channel_axis is not None and not -ndim <= channel_axis < ndim:
        raise DIPInputError(f"channel axis {channel_axis} does not exist in a {ndim}D layer")
    elif channel_axis is not None:
        channel_axis %= ndim
    volumetric = plane_mode == VOLUME
    lead = PlaneLayout(tuple(data.shape), channel_axis, 3 if volumetric else 2).axes["lead"]
    region = [slice(None)] * ndim
    if plane_mode == CURRENT_PLANE:
        # the data index of each axis at the viewer's current position (rgb layers have one axis fewer)
        position = np.round(layer.world_to_data(viewer.dims.point)).astype(int)
        for axis in lead:
            index = int(np.clip(position[axis], 0, data.shape[axis] - 1))
            region[axis] = slice(index, index + 1)
    region = tuple(region)
    if is_lazy(data) and plane_mode != CURRENT_PLANE and int(np.prod([data.shape[a] for a in lead])) > 1:
        # a dask or zarr stack stays on disk: the run reads one plane at a time
        return InputSelection(layer, data, region, channel_axis, volumetric, streamed=True)
    array = np.asarray(data[region])  # reads only the chosen plane of lazy (dask, zarr) data
    return InputSelection(layer, array, region, channel_axis, volumetric)


def companion_array(array, selection: InputSelection) -> np.ndarray:
    """The part of a mask, ground truth or guide that goes with the selected input.

    An array with the input's axes is cut like the input; one with fewer axes (a
    single 2D mask for a whole stack) is repeated over the leading axes.
    """
    array = np.asarray(array)
    with_channels = selection.channel_axis is not None and array.ndim == selection.data.ndim
    region = selection.region if with_channels else selection.region_without_channels
    if array.ndim == len(region):
        return array[region]
    if array.ndim < len(region):
        lead = selection.shape_without_channels[:len(region) - array.ndim]
        return np.broadcast_to(array, lead + array.shape)
    return array  # the engine says what does not fit


@dataclass
class Placement:
    """Where and how the result layer is drawn: the input's world geometry, adjusted for the factor."""

    name: str
    scale: tuple
    translate: tuple
    units: tuple | None
    axis_labels: tuple | None
    rgb: bool
    contrast_limits: tuple
    colormap: str | None


def result_placement(selection: InputSelection, name: str, factors=1) -> Placement:
    """The result lines up with its input: same scale and translate, and along each spatial axis enlarged
    by a factor > 1 (``factors``: per spatial axis, or one int for Y and X), pixels that many times smaller
    whose blocks cover the input pixels exactly."""
    layer = selection.layer
    scale = np.array(layer.scale, dtype=float)
    translate = np.array(layer.translate, dtype=float)
    # rgb layers have no world axis for their colour channels, so layer axes = data axes minus the last
    for axis, part in enumerate(selection.region[:len(scale)]):
        if part.start:
            translate[axis] += part.start * scale[axis]
    axes = spatial_axes(selection.data.ndim, selection.channel_axis, selection.volumetric)
    if isinstance(factors, int):
        factors = (1,) * (len(axes) - 2) + (factors, factors)
    for axis, factor in zip(axes, factors):
        if factor > 1:
            # centre of output pixel j = input origin + (j + 1/2)/factor − 1/2 input pixels
            translate[axis] -= scale[axis] * (factor - 1) / (2 * factor)
            scale[axis] /= factor
    return Placement(
        name=name, scale=tuple(scale), translate=tuple(translate),
        units=tuple(str(u) for u in layer.units) if getattr(layer, "units", None) is not None else None,
        axis_labels=tuple(layer.axis_labels) if getattr(layer, "axis_labels", None) is not None else None,
        rgb=bool(layer.rgb), contrast_limits=tuple(layer.contrast_limits),
        colormap=None if layer.rgb else layer.colormap.name,
    )
