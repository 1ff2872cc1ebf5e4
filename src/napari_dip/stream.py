"""Restoring a lazy stack (dask, zarr, a memory map) one plane at a time.

:func:`napari_dip.restore_iter` reads the whole stack into memory and
normalises all planes together. For a stack that lives on disk or is computed
on demand, :func:`restore_stream_iter` reads one plane (or one volume) at a
time, restores it with ``restore_iter`` and writes it into the output, so the
input is never loaded whole. Each plane then gets its own intensity
normalisation (the record says so).
"""

from __future__ import annotations

import datetime
import itertools
import time

import numpy as np

from .api import Restoration, RestorationRun, Snapshot, restore_iter
from .core.data import normalise_channel_axis
from .errors import DIPInputError

# arguments that may carry one value per plane: cut like the stack when they have its leading axes
PER_PLANE_ARGUMENTS = ("mask", "ground_truth", "guide")


def is_lazy(array) -> bool:
    """True for array-likes that read their values on demand (dask, zarr, h5py …), not numpy arrays."""
    return not isinstance(array, np.ndarray) and hasattr(array, "shape") and hasattr(array, "__getitem__")


def leading_axes(ndim: int, channel_axis: int | None, volumetric: bool) -> list[int]:
    """Axes that are neither channels nor the last two (three for volumes) spatial axes."""
    axes = [a for a in range(ndim) if a != channel_axis]
    return axes[:-(3 if volumetric else 2)]


class _StreamRun(RestorationRun):
    """A run over planes; stopping it stops the plane being restored and the planes after it."""

    current: RestorationRun | None = None

    def stop(self):
        super().stop()
        if self.current is not None:
            self.current.stop()


def restore_stream_iter(stack, task: str = "denoise", *, channel_axis: int | None = None,
                        volumetric: bool = False, out=None, **kwargs) -> RestorationRun:
    """Like :func:`napari_dip.restore_iter`, reading ``stack`` one plane at a time.

    ``stack`` is any array-like with ``shape`` and slicing (a numpy array works
    too). ``mask``, ``ground_truth`` and ``guide`` with the stack's leading axes
    are cut per plane; smaller ones apply to every plane. ``out``, optional,
    receives the result (an array of the output's shape, e.g. a zarr array);
    by default a float32 numpy array. Each snapshot's ``image`` is that output
    array itself, updated in place: planes not yet restored hold 0. Copy it to
    keep a frame.
    """
    shape = tuple(int(s) for s in stack.shape)
    ndim = len(shape)
    channel_axis = normalise_channel_axis(channel_axis, ndim)
    lead = leading_axes(ndim, channel_axis, volumetric)
    if not lead:
        raise DIPInputError(f"an array of shape {shape} has no planes to stream; use napari_dip.restore_iter")
    plane_channel_axis = None if channel_axis is None else channel_axis - sum(a < channel_axis for a in lead)
    indices = list(itertools.product(*(range(shape[a]) for a in lead)))
    per_plane = {name: kwargs.pop(name) for name in PER_PLANE_ARGUMENTS if kwargs.get(name) is not None}

    def plane_region(index, axes=lead, axes_ndim=ndim):
        region = [slice(None)] * axes_ndim
        for axis, i in zip(axes, index):
            region[axis] = i
        return tuple(region)

    # the leading axes of a mask, truth or guide without the channel axis
    lead_without_channels = [a - (channel_axis is not None and a > channel_axis) for a in lead]
    lead_shape = tuple(shape[a] for a in lead)

    def plane_arguments(index):
        arguments = dict(kwargs)
        for name, value in per_plane.items():
            value = value if is_lazy(value) else np.asarray(value)
            if len(value.shape) == ndim and tuple(value.shape[a] for a in lead) == lead_shape:
                value = value[plane_region(index)]
            elif (channel_axis is not None and len(value.shape) == ndim - 1
                  and tuple(value.shape[a] for a in lead_without_channels) == lead_shape):
                value = value[plane_region(index, lead_without_channels, ndim - 1)]
            arguments[name] = np.asarray(value)  # anything else applies to every plane
        return arguments

    def start_plane(index):
        return restore_iter(np.asarray(stack[plane_region(index)]), task, channel_axis=plane_channel_axis,
                            volumetric=volumetric, **plane_arguments(index))

    first = start_plane(indices[0])  # checks the arguments before anything runs
    return _StreamRun(lambda run: _snapshots(run, first, start_plane, indices, plane_region, lead, shape, out, task),
                      len(indices), first.iterations, first.device_description)


def _snapshots(run: _StreamRun, first: RestorationRun, start_plane, indices, plane_region, lead, shape, out, task):
    start = time.perf_counter()
    records: list[dict] = []
    planes = len(indices)
    plane_run = first
    for p, index in enumerate(indices):
        if p > 0:
            if run.stop_requested:
                break
            plane_run = start_plane(index)
        run.current = plane_run
        if run.stop_requested:
            plane_run.stop()
        for snapshot in plane_run:
            if out is None:
                output_shape = list(shape)
                # the plane's output sizes (enlarged for super-resolution) on the stack's other axes
                free_axes = [a for a in range(len(shape)) if a not in set(lead)]
                for axis, size in zip(free_axes, snapshot.image.shape):
                    output_shape[axis] = size
                out = np.zeros(output_shape, np.float32)
            out[plane_region(index)] = snapshot.image
            if snapshot.done:
                records.append(snapshot.record)
                if p < planes - 1 and not run.stop_requested:
                    snapshot = Snapshot(snapshot.iteration, snapshot.total, snapshot.loss, out,
                                        time.perf_counter() - start, p, planes, snapshot.metrics,
                                        snapshot.backtracks, quality=snapshot.quality)
                    yield snapshot
                break
            yield Snapshot(snapshot.iteration, snapshot.total, snapshot.loss, out, time.perf_counter() - start,
                           p, planes, snapshot.metrics, snapshot.backtracks, quality=snapshot.quality)
    run.current = None
    record = _combined_record(records, planes, time.perf_counter() - start, run.stop_requested, shape, out, task)
    run.result = Restoration(out, record)
    last = records[-1]
    yield Snapshot(last["iterations"], last["iterations"], snapshot.loss, out, record["seconds"],
                   len(records) - 1, planes, record["metrics"], record["backtracks"], True, record["stop_reason"],
                   record, snapshot.quality)


def _combined_record(records, planes, seconds, stopped, shape, out, task) -> dict:
    """One record for the stack: the first plane's settings, and what each plane did."""
    from .tiled import combined_quality

    first = records[0]
    per_plane_metrics = [r["metrics"] for r in records]
    metrics = {}
    for key in ("psnr", "ssim"):
        values = [m[key] for m in per_plane_metrics if m.get(key) is not None]
        if values:
            metrics[key] = float(np.mean(values))  # the mean over the planes restored
    stop_reason = records[-1]["stop_reason"]
    if stopped and len(records) < planes:
        stop_reason = f"stopped by user at plane {len(records)} of {planes}"
    return {
        "task": task, "preset": first["preset"], "parameters": first["parameters"],
        "iterations": int(sum(r["iterations"] for r in records)),
        "iterations_per_plane": [int(r["iterations"]) for r in records],
        "planes": planes, "planes_restored": len(records), "stop_reason": stop_reason,
        "backtracks": int(sum(r["backtracks"] for r in records)), "seconds": round(seconds, 3),
        "device": first["device"], "version": first["version"], "metrics": metrics,
        "metrics_per_plane": per_plane_metrics,
        "noise_estimate_per_plane": [r["parameters"].get("noise_estimate") for r in records],
        "quality": combined_quality([{"quality": r.get("quality"), "plane": p} for p, r in enumerate(records)],
                                    "plane", "plane"),
        "streamed": "one plane at a time from a lazy array; each plane normalised on its own",
        "input": {"shape": list(shape)}, "output": {"shape": list(out.shape), "dtype": str(out.dtype)},
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
