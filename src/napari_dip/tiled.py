"""Tiled restoration: images larger than one run can hold, restored tile by tile.

``restore_tiled_iter`` cuts the Y/X plane into overlapping tiles
(:mod:`napari_dip.core.tiling`), restores each with
:func:`napari_dip.api.restore_iter` (same arguments, same seed for every tile),
and blends the results with raised-cosine windows that sum to 1, so no seam
shows. Masks, guides and ground truths are cut with the image. Only one tile's
run is alive at a time: memory is bounded by the tile size, plus the output.

The output can be a NumPy array (default) or any array that supports slicing
and assignment, e.g. a zarr array on disk for data larger than memory (``out=``);
the input may be lazy as well (zarr, dask): only one tile is read at a time.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .api import Restoration, RestorationRun, Snapshot, restore_iter
from .core import data
from .core.tasks import default_factor
from .core.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, Tile, plan_tiles
from .errors import DIPInputError


def restore_tiled(image, task: str = "denoise", *, tile_size=DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                  out=None, **kwargs) -> Restoration:
    """Restore ``image`` tile by tile; takes the arguments of :func:`napari_dip.restore`.

    Parameters
    ----------
    tile_size : int, (int, int) or 'auto'
        Tile side in pixels of the input (the output tiles are ``factor`` times
        larger for super-resolution). Sides no larger than this are not cut.
        'auto': see :func:`auto_tile_size` (one tile when the image fits).
    overlap : int
        Pixels shared by neighbouring tiles, blended smoothly. Make it larger
        than the PSF for deconvolution and than the holes for inpainting.
    out : array_like, optional
        Zero-filled float32 array of the output's shape to accumulate into, e.g.
        ``zarr.zeros(...)``; by default a new NumPy array.

    Returns
    -------
    Restoration
        ``.record`` is a run record whose ``tiling`` entry lists every tile.
    """
    run = restore_tiled_iter(image, task, tile_size=tile_size, overlap=overlap, out=out, preview=False, **kwargs)
    for _ in run:
        pass
    return run.result


def restore_tiled_iter(image, task: str = "denoise", *, tile_size=DEFAULT_TILE_SIZE,
                       overlap: int = DEFAULT_OVERLAP, out=None, preview: bool = True, **kwargs) -> RestorationRun:
    """Like :func:`restore_tiled`, but returns a :class:`~napari_dip.api.RestorationRun` of snapshots.

    Snapshots count tiles as planes: ``plane`` is ``tile × planes_per_tile +
    plane`` and ``planes`` is ``tiles × planes_per_tile``, so progress is
    ``(plane × total + iteration) / (planes × total)`` as for a stack. With
    ``preview=True`` (and no ``out``) each snapshot's ``image`` is the whole
    result so far; otherwise it is the current tile's result only, to save a
    copy of the whole image per snapshot. The final snapshot holds the result.
    ``run.stop()`` ends the current tile early and leaves the remaining tiles
    as the input (enlarged for super-resolution). ``run.tiling`` says how the
    image is cut (tiles, grid, tile_size, overlap), for a user interface to show.
    """
    from .core.device import describe_device, resolve_device

    job = _TiledJob(image, task, tile_size, overlap, out, kwargs)
    description = describe_device(resolve_device(kwargs.get("device", "auto")))
    run = RestorationRun(lambda run: job.snapshots(run, preview and out is None),
                         len(job.plan.tiles) * job.layout.planes, job.iterations(), description)
    plan = job.plan
    run.tiling = {"tiles": len(plan.tiles), "grid": plan.grid, "tile_size": plan.tile_size, "overlap": plan.overlap}
    return run


def auto_tile_size(image_shape, task: str = "denoise", *, channel_axis=None, volumetric: bool = False,
                   preset: str = "fast", factor=None, device="auto", memory_limit: float | None = None,
                   **settings) -> int | None:
    """The tile side for ``tile_size='auto'``: None when the image fits one run, else a side whose run
    needs at most a quarter of the device's free memory (estimated from the network's widths).

    Takes the arguments of :func:`napari_dip.restore` (those that do not change the size are ignored).
    ``memory_limit`` (bytes) caps the CPU memory counted as free, e.g. a dask worker's share.
    """
    import torch

    from .core.device import resolve_device
    from .core.presets import apply_overrides, get_settings
    from .core.tiling import auto_tile_size as side_for
    from .core.tiling import estimate_bytes_per_pixel

    factor = int(factor or default_factor(task))
    network_settings = {k: v for k, v in settings.items() if k.startswith("network")}
    try:
        network = apply_overrides(get_settings(task, preset, factor), network_settings).network
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None
    per_pixel = estimate_bytes_per_pixel(network.down, network.up, network.skip)
    layout = data.PlaneLayout(tuple(image_shape), data.normalise_channel_axis(channel_axis, len(image_shape)),
                              3 if volumetric else 2)
    if volumetric:
        per_pixel *= layout.spatial_shape[0]
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        free = torch.cuda.mem_get_info(torch_device)[0]
    else:
        free = min(_available_memory(), memory_limit or float("inf"))
    return side_for(layout.spatial_shape[-2:], factor, per_pixel, free)


def _available_memory() -> float:
    """Bytes of memory available to a new run (psutil when installed, else free pages, else 4 GB)."""
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # free pages only: on the safe side
    except (ValueError, OSError, AttributeError):
        return 4e9


class _TiledJob:
    """The checked inputs of a tiled run and the generator that runs it."""

    def __init__(self, image, task, tile_size, overlap, out, kwargs):
        if not hasattr(image, "shape") or not hasattr(image, "__getitem__"):
            image = np.asarray(image)
        kwargs = dict(kwargs)
        self.image, self.task = image, task
        channel_axis = data.normalise_channel_axis(kwargs.get("channel_axis"), image.ndim)
        spatial_dims = 3 if kwargs.get("volumetric") else 2
        if image.ndim < spatial_dims + (channel_axis is not None):
            raise DIPInputError(f"cannot tile an array of shape {image.shape}: it needs Y and X axes")
        self.layout = data.PlaneLayout(tuple(image.shape), channel_axis, spatial_dims)
        self.factor = int(kwargs.get("factor") or default_factor(task))
        self.yx = _yx_axes(image.ndim, channel_axis)
        height, width = (image.shape[a] for a in self.yx)
        if tile_size == "auto":  # one tile when the whole image fits
            tile_size = auto_tile_size(image.shape, task, **kwargs) or max(height, width)
        try:
            self.plan = plan_tiles((height, width), tile_size, overlap, self.factor)
        except ValueError as exc:
            raise DIPInputError(str(exc)) from None
        self.out_shape = self.layout.output_shape(self.factor)
        if out is not None and tuple(out.shape) != self.out_shape:
            raise DIPInputError(f"out has shape {tuple(out.shape)}; the result needs {self.out_shape}")
        self.out = out
        # the arrays cut with the image, and the Y/X axes of each
        self.cut = {}
        for name, expected in (("mask", (height, width)), ("guide", (height * self.factor, width * self.factor)),
                               ("ground_truth", (height * self.factor, width * self.factor))):
            if kwargs.get(name) is not None:
                array = kwargs.pop(name)
                array = array if hasattr(array, "shape") else np.asarray(array)
                axes = self._aux_axes(name, array)
                if tuple(array.shape[a] for a in axes) != expected:
                    raise DIPInputError(f"{name} has shape {tuple(array.shape)}; its Y/X size must be {expected} "
                                        f"to match the {'result' if name != 'mask' else 'image'}")
                self.cut[name] = (array, axes)
        self.kwargs = kwargs

    def iterations(self) -> int:
        """Iterations per tile and plane: the option, or the preset's (0 when the preset is unknown: the
        first tile's run reports it)."""
        from .core.presets import get_settings

        if self.kwargs.get("iterations"):
            return int(self.kwargs["iterations"])
        try:
            return get_settings(self.task, self.kwargs.get("preset", "fast"), self.factor).iterations
        except ValueError:
            return 0

    def _aux_axes(self, name, array):
        """Y/X axes of a mask (image layout, or without the channel axis), guide (output grid, own channel
        axis or none) or ground truth (output layout)."""
        channel_axis = self.layout.channel_axis
        if name == "ground_truth" or array.ndim == self.image.ndim:
            return self.yx if array.ndim == self.image.ndim else _yx_axes(array.ndim, None)
        if name == "guide" and array.ndim == self.image.ndim + (channel_axis is None):
            return _yx_axes(array.ndim, array.ndim - 1)  # a guide with its own trailing channel axis
        return _yx_axes(array.ndim, None)

    def _region(self, array, axes, tile: Tile, factor: int):
        index = [slice(None)] * array.ndim
        index[axes[0]], index[axes[1]] = tile.slices(factor)
        return tuple(index)

    def _read(self, tile: Tile):
        """The tile of the image and of every array cut with it, as NumPy arrays (copies)."""
        pieces = {"image": np.array(self.image[self._region(self.image, self.yx, tile, 1)])}
        for name, (array, axes) in self.cut.items():
            pieces[name] = np.array(array[self._region(array, axes, tile, 1 if name == "mask" else self.factor)])
        return pieces

    def _fallback(self, tile_image):
        """What a tile shows before (or without) its restoration: the input, missing pixels filled with the
        mean, enlarged by repetition for super-resolution."""
        values = tile_image.astype(np.float32)
        finite = np.isfinite(values)
        values[~finite] = values[finite].mean() if finite.any() else 0.0
        for axis in self.yx:
            values = np.repeat(values, self.factor, axis=axis)
        return values

    def _skip_reason(self, pieces) -> str | None:
        """Why a tile needs no run: inpainting with nothing missing, or nothing measured at all."""
        missing = ~np.isfinite(pieces["image"].astype(np.float32))
        if self.layout.channel_axis is not None:
            missing = missing.any(axis=self.layout.channel_axis)
        if "mask" in pieces:
            mask = pieces["mask"] != 0
            if mask.ndim == self.image.ndim and self.layout.channel_axis is not None:
                mask = mask.any(axis=self.layout.channel_axis)
            missing = missing | mask
        if missing.all():
            return "no measured pixel in this tile: not restored (left as the input; NaN as 0)"
        if self.task == "inpaint" and not missing.any():
            return "nothing to fill in this tile"
        return None

    def _add(self, target, tile: Tile, values):
        index = self._region(target, self.yx, tile, self.factor)
        target[index] = np.asarray(target[index]) + values

    def snapshots(self, run: RestorationRun, preview: bool):
        start = time.perf_counter()
        plan, layout = self.plan, self.layout
        out = self.out if self.out is not None else np.zeros(self.out_shape, np.float32)
        shape_yx = [1] * len(self.out_shape)
        for axis in self.yx:
            shape_yx[axis] = self.out_shape[axis]
        # summed weights: 1 everywhere once every tile is in (the windows sum to 1), kept to show partial results
        coverage = np.zeros(shape_yx, np.float32) if self.out is None else None
        shown = None
        if preview:
            shown = np.empty(self.out_shape, np.float32)
            for tile in plan.tiles:
                shown[self._region(shown, self.yx, tile, self.factor)] = self._fallback(self._read(tile)["image"])

        entries, record, metrics, backtracks, quality = [], None, {}, 0, {}
        for tile in plan.tiles:
            pieces = self._read(tile)
            window = self._window(tile)
            entry = {"index": tile.index, "y": list(tile.y), "x": list(tile.x)}
            reason = "stopped by user before this tile" if run.stop_requested else self._skip_reason(pieces)
            if reason is not None:
                result = self._fallback(pieces["image"])
                entry.update(iterations=0, stop_reason=reason, seconds=0.0)
            else:
                tile_start = time.perf_counter()
                tile_run = restore_iter(pieces.pop("image"), self.task, tile_size=None, **pieces, **self.kwargs)
                tile_run._stop = run._stop  # one stop request ends the current tile at its next iteration
                for snap in tile_run:
                    if snap.done:
                        break
                    image = snap.image
                    if shown is not None:
                        image = shown.copy()
                        image[self._region(image, self.yx, tile, self.factor)] = snap.image
                    yield Snapshot(snap.iteration, snap.total, snap.loss, image, time.perf_counter() - start,
                                   tile.index * layout.planes + snap.plane, len(plan.tiles) * layout.planes,
                                   snap.metrics, backtracks + snap.backtracks, quality=snap.quality)
                quality = snap.quality  # the tile's final estimate (the loop ends at its final snapshot)
                for _ in tile_run:  # the final snapshot sets the result
                    pass
                result, tile_record = tile_run.result.image, tile_run.result.record
                record = record or tile_record
                backtracks += tile_record["backtracks"]
                metrics = tile_record["metrics"]
                entry.update(iterations=tile_record["iterations"], stop_reason=tile_record["stop_reason"],
                             seconds=round(time.perf_counter() - tile_start, 3),
                             normalisation=tile_record["parameters"]["normalisation"])
                # each tile is normalised, judged and stopped on its own
                entry["noise_estimate"] = tile_record["parameters"].get("noise_estimate")
                entry["quality"] = tile_record.get("quality")
            self._add(out, tile, result * window)
            if coverage is not None:
                self._add(coverage, tile, window)
                if shown is not None:
                    index = self._region(shown, self.yx, tile, self.factor)
                    shown[index] = out[index] / np.maximum(coverage[index], 1e-12)
            entries.append(entry)
            del result, pieces

        if coverage is not None:  # exact normalisation (the windows already sum to 1 up to rounding)
            out /= np.maximum(coverage, 1e-12)
        final = self._record(record, entries, out, backtracks, time.perf_counter() - start, run.device_description)
        run.result = Restoration(out, final)
        last = entries[-1]
        yield Snapshot(last["iterations"], last["iterations"], float("nan"), out, final["seconds"],
                       len(plan.tiles) * layout.planes - 1, len(plan.tiles) * layout.planes,
                       final["metrics"] or metrics, backtracks, True, final["stop_reason"], final, quality)

    def _window(self, tile: Tile):
        window = self.plan.window(tile)
        shape = [1] * len(self.out_shape)
        shape[self.yx[0]], shape[self.yx[1]] = window.shape
        return window.reshape(shape)

    def _record(self, tile_record, entries, out, backtracks, seconds, device):
        """The run record of the whole image: the settings of the tiles' runs and one entry per tile."""
        import datetime

        import torch

        from . import __version__

        record = dict(tile_record or {"task": self.task, "preset": self.kwargs.get("preset", "fast"),
                                      "parameters": {}})
        record.pop("iterations_per_plane", None)
        parameters = {k: v for k, v in record["parameters"].items()
                      if k not in ("normalisation", "missing_pixels", "noise_estimate")}
        reasons = sorted({e["stop_reason"] for e in entries})
        stop_reason = reasons[0] if len(reasons) == 1 else "per tile: " + "; ".join(
            f"{sum(e['stop_reason'] == r for e in entries)} × {r}" for r in reasons)
        metrics = {}
        if "ground_truth" in self.cut and self.out is None:
            from .api import _metric_pair

            truth = np.asarray(self.cut["ground_truth"][0], np.float32)
            metrics = _metric_pair(out, truth, self.layout.channel_axis)
        plan = self.plan
        record.update({
            "parameters": parameters,
            "iterations": int(sum(e["iterations"] for e in entries)),
            "planes": self.layout.planes, "stop_reason": stop_reason,
            "backtracks": backtracks, "seconds": round(seconds, 3), "device": device,
            "version": {"napari_dip": __version__, "torch": torch.__version__, "numpy": np.__version__},
            "metrics": metrics, "quality": combined_quality(entries, "tile", "index"),
            "input": {"shape": list(self.image.shape), "dtype": str(self.image.dtype)},
            "output": {"shape": list(self.out_shape), "dtype": "float32"},
            "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "tiling": {"tile_size": list(plan.tile_size), "overlap": plan.overlap, "grid": list(plan.grid),
                       "window": "raised cosine across each overlap; the windows sum to 1",
                       "tiles": [{k: v for k, v in e.items() if k != "quality"} for e in entries]},
        })
        return record


def combined_quality(entries: list, unit: str, key: str) -> dict:
    """The ``quality`` entry of a record made of several runs (tiles, planes): each run's ``quality``
    under ``units`` (with the ``unit``'s number taken from ``entry[key]``); ``automatic_stopping`` is
    True when every run that ran used it."""
    units = [dict(e["quality"], **{unit: e[key]}) for e in entries if e.get("quality")]
    return {"automatic_stopping": bool(units) and all(u.get("automatic_stopping") for u in units),
            "unit": unit, "units": units}


def _yx_axes(ndim: int, channel_axis: int | None) -> tuple[int, int]:
    """The Y and X axes: the last two axes that are not the channel axis."""
    axes = [a for a in range(ndim) if a != channel_axis]
    return axes[-2], axes[-1]
