"""Running the engine off the GUI thread.

The generator :func:`restoration_steps` wraps ``start_restoration``: it yields
tagged items, ``(RUN, run)`` first (so the run can be stopped), then
``(SNAPSHOT, snapshot)`` for every snapshot. Input errors come back as a
``(FAILED, message)`` item rather than an exception, so the widget shows one
readable notification; anything unexpected is raised and napari shows it with
its traceback. The run controller (controller.py) routes the items by their tag.

``NAPARI_DIP_SYNC=1`` runs everything in the calling thread (for tests and
scripts, like stardist-napari's switch).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DIPInputError, DIPMemoryError

SYNC_ENV = "NAPARI_DIP_SYNC"


# the tags of restoration_steps' items
RUN = "run"
SNAPSHOT = "snapshot"
FAILED = "failed"


def synchronous() -> bool:
    """True when ``NAPARI_DIP_SYNC`` (1, true or yes) asks to run in the calling thread."""
    return os.environ.get(SYNC_ENV, "").strip().lower() in ("1", "true", "yes")


def restoration_steps(image, options):
    """Yields ``(RUN, RestorationRun)``, then ``(SNAPSHOT, snapshot)`` for each; ``(FAILED, message)`` on a
    user error. ``options``: a :class:`napari_dip.RestoreOptions`."""
    from ..api import start_restoration

    try:
        # a lazy stack (dask, zarr) is read one plane at a time, never whole
        run = start_restoration(image, options)
        yield RUN, run
        for snapshot in run:
            yield SNAPSHOT, snapshot
    except (DIPInputError, DIPMemoryError) as exc:
        yield FAILED, str(exc)


def start(function, *args, on_yielded=None, on_returned=None, on_finished=None):
    """Run ``function(*args)`` (a generator or a plain function) in a napari thread worker.

    Returns the worker, or None when it ran synchronously (see ``NAPARI_DIP_SYNC``).
    ``on_finished`` is always called, also after an error.
    """
    if synchronous():
        try:
            result = function(*args)
            if on_yielded is not None:
                for item in result:
                    on_yielded(item)
            elif on_returned is not None:
                on_returned(result)
        except Exception as exc:  # same as a thread worker: napari shows it with its traceback
            from napari.utils.notifications import notification_manager

            notification_manager.receive_error(type(exc), exc, exc.__traceback__)
        finally:
            if on_finished is not None:
                on_finished()
        return None

    from napari.qt.threading import create_worker

    worker = create_worker(function, *args, _start_thread=False)
    if on_yielded is not None:
        worker.yielded.connect(on_yielded)
    if on_returned is not None:
        worker.returned.connect(on_returned)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


ESTIMATE_SIDE = 128  # timing runs on at most 128 × 128 pixels (32 × 64 × 64 for volumes) …
ESTIMATE_VOLUME = (32, 64, 64)


def seconds_per_iteration(task: str, preset: str, factor: int | None, overrides: dict, output_shape: tuple,
                          channels: int, device: str) -> tuple[float, str]:
    """Time three iterations of the task's network on a random image of (at most) the output's size.

    … and scale by the pixel count, since a convolutional network's cost grows
    with it. Returns (seconds per iteration, device description). It is an
    estimate: the first iterations and small images run less efficiently.
    """
    from ..api import restore_iter
    from ..core.presets import get_settings

    settings = get_settings(task, preset, factor)
    cap = ESTIMATE_VOLUME if len(output_shape) == 3 else (ESTIMATE_SIDE, ESTIMATE_SIDE)
    crop = tuple(min(s, c) for s, c in zip(output_shape, cap[-len(output_shape):]))
    image = np.random.default_rng(0).random(crop + ((channels,) if channels > 1 else ()), dtype=np.float32)
    # the same network as the real run; 'denoise' so that no mask, guide or PSF is needed
    network = {"network": settings.network.as_dict(), "input_channels": settings.input_channels}
    network.update({k: v for k, v in overrides.items() if k.startswith("network_") or k == "input_channels"})
    run = restore_iter(
        image, "denoise", device=device, iterations=4, snapshot_every=1, early_stopping=False,
        channel_axis=-1 if channels > 1 else None, volumetric=len(output_shape) == 3, ema=None,
        backtracking=False, input="noise", amp=settings.amp, **network)
    times = [snapshot.seconds for snapshot in run]
    per_iteration = (times[-1] - times[1]) / (len(times) - 2)  # leave out the warm-up iteration
    scale = float(np.prod(output_shape)) / float(np.prod(crop))
    return per_iteration * scale, run.device_description
