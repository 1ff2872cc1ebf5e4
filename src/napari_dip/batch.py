"""Batch restoration of many files (or every plane of a stack) on ``dask.distributed``.

One configuration, many inputs: each file, or each plane with ``split_planes``,
is one task submitted to a dask cluster: a ``LocalCluster`` of worker processes
by default, or an existing cluster given by its scheduler address (one started
by dask-jobqueue on an HPC system, one worker per GPU, ...). Workers read their
input themselves (lazily for TIFF and zarr), restore it, tile by tile when it
is large, and write the result and its JSON run record. Both are written to a
temporary name and then renamed, the record last: an output counts as done when
both exist, so rerunning the same command skips finished work and resumes a
killed or cancelled batch. A task that fails is reported in its row of the
summary and does not stop the others.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .core import data
from .core.tasks import get_task
from .errors import DIPInputError
from .io import (
    FORMATS,
    atomic_output,
    create_zarr,
    enlarged_metadata,
    format_for,
    read_image_lazy,
    write_image,
    write_json,
)
from .options import RestoreOptions

SUMMARY_COLUMNS = ("file", "status", "iterations", "stop reason", "seconds", "error")
BATCH_MODULES = ("dask", "distributed", "zarr")  # the ``batch`` extra of pyproject.toml


def require_batch_extra() -> None:
    """Raise ImportError, saying what to install, when the modules of the ``batch`` extra are missing."""
    missing = []
    for name in BATCH_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"batch runs need {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                          'installed: install the batch extra with pip install "napari-dip[batch]" (from a source '
                          'folder: pip install -e ".[batch]"), which adds dask[distributed] and zarr')


@dataclass(frozen=True)
class BatchTask:
    """One unit of work: a file, or one plane of it (``plane`` counts the planes of the stack in C order)."""

    source: str
    output: str
    plane: int | None = None

    @property
    def name(self) -> str:
        return Path(self.source).name + ("" if self.plane is None else f" [plane {self.plane}]")

    @property
    def record(self) -> str:
        return str(Path(self.output).with_suffix(".json"))  # as the restore command: out.tif -> out.json

    def is_done(self) -> bool:
        """Both the result and its record exist (the record is written last)."""
        return os.path.exists(self.output) and os.path.exists(self.record)


def _stem(name: str) -> str:
    """A file name without its format's extension ('a.ome.tif' -> 'a')."""
    lower = name.lower()
    for extension in sorted(FORMATS, key=len, reverse=True):
        if lower.endswith(extension):
            return name[: -len(extension)]
    return Path(name).stem


def expand_inputs(inputs) -> list[str]:
    """Files from files, folders (their image files, not recursive; a ``.zarr`` folder is one input) and
    glob patterns (``**`` recurses), in order, without repeats. A name that matches nothing is kept, so
    that its task reports it."""
    found = []
    for item in inputs:
        item = str(item)
        if os.path.isdir(item) and not item.rstrip("/").lower().endswith(".zarr"):
            found += sorted(str(p) for p in Path(item).iterdir() if _is_image_name(p.name))
        elif glob.has_magic(item):
            found += sorted(p for p in glob.glob(item, recursive=True) if _is_image_name(Path(p).name))
        else:
            found.append(item)
    return list(dict.fromkeys(os.path.normpath(f) for f in found))


def _is_image_name(name: str) -> bool:
    if name.startswith("."):
        return False
    try:
        format_for(name)
    except DIPInputError:
        return False
    return True


def output_name(source) -> str:
    """The result's file name: zarr stays zarr, OME-TIFF stays OME-TIFF, anything else becomes TIFF
    (float32 values; a GeoTIFF keeps its georeferencing)."""
    name = Path(source).name
    extension = ".zarr" if name.lower().rstrip("/").endswith(".zarr") else (
        ".ome.tif" if ".ome.tif" in name.lower() else ".tif")
    return _stem(name.rstrip("/")) + extension


def plan_tasks(inputs, outdir, *, split_planes: bool = False, channel_axis="auto", volumetric: bool = False):
    """The tasks for ``inputs`` (see :func:`expand_inputs`), results going into ``outdir``.

    With ``split_planes`` every plane (or time point) of a stack is its own task;
    the stack's shape is read from the file header (or, for small formats, the file).
    """
    files = expand_inputs(inputs)
    if not files:
        raise DIPInputError(f"no input files found in {' '.join(map(str, inputs))}")
    names = {}
    for source in files:
        names.setdefault(output_name(source), []).append(source)
    clashes = {n: s for n, s in names.items() if len(s) > 1}
    if clashes:
        text = "; ".join(f"{', '.join(s)} -> {n}" for n, s in clashes.items())
        raise DIPInputError(f"several inputs would write the same output: {text}; rename them or run "
                            "one batch per folder")
    tasks = []
    for source in files:
        output = Path(outdir) / output_name(source)
        if os.path.abspath(output) == os.path.abspath(source):
            raise DIPInputError(f"the result of {source} would replace it: choose another output folder")
        planes = _plane_count(source, channel_axis, volumetric) if split_planes else None
        if not planes or planes == 1:  # not split, a single plane, or unreadable (its task reports it)
            tasks.append(BatchTask(source, str(output)))
            continue
        stem, extension = _stem(output.name), output.name[len(_stem(output.name)):]
        tasks += [BatchTask(source, str(output.with_name(f"{stem}_p{p:04d}{extension}")), p)
                  for p in range(planes)]
    return tasks


def _plane_count(source, channel_axis, volumetric) -> int | None:
    try:
        image, metadata = read_image_lazy(source)
        return _layout(image.shape, metadata, channel_axis, volumetric).planes
    except (DIPInputError, ValueError):
        return None


def _layout(shape, metadata, channel_axis, volumetric):
    axis = metadata.get("channel_axis") if channel_axis == "auto" else channel_axis
    axis = data.normalise_channel_axis(axis, len(shape))
    return data.PlaneLayout(tuple(shape), axis, 3 if volumetric else 2)


def _plane(image, metadata, layout, plane):
    """One plane of a (lazy) stack and the metadata that describes it."""
    lead_axes = layout.axes["lead"]
    index = [slice(None)] * len(layout.shape)
    for axis, i in zip(lead_axes, np.unravel_index(plane, layout.lead_shape)):
        index[axis] = int(i)
    pixels = np.asarray(image[tuple(index)])
    metadata = dict(metadata, shape=list(pixels.shape))
    if metadata.get("axes") and len(metadata["axes"]) == len(layout.shape):
        metadata["axes"] = "".join(a for i, a in enumerate(metadata["axes"]) if i not in lead_axes)
    channel_axis = layout.channel_axis
    metadata["channel_axis"] = None if channel_axis is None else channel_axis - sum(a < channel_axis for a in lead_axes)
    return pixels, metadata


# ---------------------------------------------------------------------------------------------
# one task, on a worker


# tile_size's default in restore_file and run_batch: keep the options' own (a RestoreOptions' tile_size, 'auto' unless
# set; before, these functions' own 'auto' silently replaced it)
FROM_OPTIONS = "from-options"


def restore_file(task: BatchTask, options, *, tile_size=FROM_OPTIONS, overlap: int | None = None,
                 torch_threads: int | None = None, extra_record: dict | None = None) -> dict:
    """Restore one file or plane and write its result and run record; returns its summary row.

    Runs on a dask worker (or anywhere). ``options``: a :class:`RestoreOptions`, or a dict of
    :func:`napari_dip.restore`'s keywords; ``channel_axis='auto'`` (a dict's default) takes it from the file.
    ``tile_size`` is None (never tile), 'auto' (tile when the image would not
    fit a quarter of the device's memory) or a side in pixels; by default the
    options' own. ``overlap``: by default the options' own. Never raises: an
    error is returned in the row.
    """
    row = {"file": task.name, "status": "failed", "iterations": None, "stop reason": None, "seconds": None,
           "error": None, "output": task.output}
    start = time.perf_counter()
    try:
        _set_torch_threads(torch_threads)
        options = as_options(options)
        if options.device == "auto":
            options = dataclasses.replace(options, device=_worker_device())
        image, metadata = read_image_lazy(task.source)
        layout = _layout(image.shape, metadata, options.channel_axis, options.volumetric)
        if task.plane is not None:
            image, metadata = _plane(image, metadata, layout, task.plane)  # its metadata has the channel axis
            layout = _layout(image.shape, metadata, "auto", options.volumetric)
        options = dataclasses.replace(options, channel_axis=layout.channel_axis)
        result = _restore(image, task.output, metadata, options, tile_size, overlap)
        write_json(task.record, {**result.record.as_dict(), **(extra_record or {}),
                                 "files": {"input": task.source, "plane": task.plane, "output": task.output}})
        row.update(status="done", iterations=result.record.iterations, error=None,
                   **{"stop reason": result.record.stop_reason})
    except Exception as exc:  # one bad file must not stop the batch: report it in the row
        row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def as_options(options) -> RestoreOptions:
    """``options`` as a :class:`RestoreOptions`: a dict of restore()'s keywords has its channel axis taken from
    each file unless it says otherwise."""
    if isinstance(options, RestoreOptions):
        return options
    return RestoreOptions.from_keywords(**{"channel_axis": "auto", **options})


def _restore(image, output, metadata, options: RestoreOptions, tile_size, overlap):
    """Restore (the engine tiles what would not fit) and write the result to ``output``; returns the Restoration.

    A zarr output is written by the run itself, tile by tile, so a result larger than memory never is held whole.
    """
    from .api import restore_with

    task = get_task(options.task)
    volumetric = bool(options.volumetric or task.volumetric)
    axis_factors = task.axis_factors(int(options.factor or task.default_factor), 3 if volumetric else 2)
    # workers of one machine share its memory: count this worker's share only
    options = dataclasses.replace(options, tile_size=options.tile_size if tile_size == FROM_OPTIONS else tile_size,
                                  overlap=options.overlap if overlap is None else overlap,
                                  memory_limit=_worker_attribute("memory_limit", None))
    metadata = enlarged_metadata(metadata, dict(zip("ZYX"[-len(axis_factors):], axis_factors)))
    if format_for(output).name == "zarr":
        shape = data.PlaneLayout(tuple(image.shape), options.channel_axis,
                                 3 if volumetric else 2).output_shape(axis_factors)
        with atomic_output(output) as partial:
            return restore_with(image, dataclasses.replace(options, out=create_zarr(partial, shape, metadata)))
    result = restore_with(image, options)  # a lazy input is read unit by unit
    write_image(output, result.image, metadata)
    return result


def _set_torch_threads(threads: int | None):
    """Torch threads for this task: as given, else the CPUs of this process shared by the worker's threads.

    Dask starts worker processes with OMP_NUM_THREADS=1, so without this torch would use one core.
    """
    import torch

    if threads is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cpus // _worker_attribute("nthreads", 1))
    torch.set_num_threads(int(threads))


def _worker_device() -> str:
    """'auto' on a machine with several GPUs: the worker named N (a LocalCluster's) takes GPU N mod count."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    name = str(_worker_attribute("name", ""))
    if count > 1 and name.isdigit():
        return f"cuda:{int(name) % count}"
    return "auto"


def _worker_attribute(attribute, default):
    """``name``, ``nthreads`` or ``memory_limit`` of the dask worker running this task; ``default`` outside
    a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return default
    if attribute == "nthreads":
        return worker.state.nthreads
    if attribute == "memory_limit":
        return worker.memory_manager.memory_limit
    return getattr(worker, attribute)


# ---------------------------------------------------------------------------------------------
# the batch, from the client


def run_batch(tasks, options, *, scheduler: str | None = None, workers: int | None = None,
              threads_per_worker: int | None = None, tile_size=FROM_OPTIONS, overlap: int | None = None,
              progress: bool = True, extra_record: dict | None = None, write=print) -> list[dict]:
    """Run ``tasks`` (from :func:`plan_tasks`) on a dask cluster; returns one summary row per task.

    Parameters
    ----------
    options : RestoreOptions or dict
        The options shared by every task: a :class:`RestoreOptions`, or a dict
        of :func:`napari_dip.restore`'s keywords.
    scheduler : str, optional
        Address of an existing cluster's scheduler (``tcp://host:8786``). By
        default a ``LocalCluster`` of ``workers`` processes is started here and
        closed at the end.
    workers : int, optional
        Worker processes of the local cluster: by default one per GPU, or one
        per 4 CPUs on a machine without a GPU.
    threads_per_worker : int, optional
        Torch threads for each task (each worker runs one task at a time). By
        default the CPUs are shared out between the workers.
    tile_size, overlap
        Tiling of large images (see :func:`restore_file`).

    Examples
    --------
    Two files restored on a local cluster of one worker, each written with its run record beside it:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from napari_dip.io import write_image
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("a.tif", "b.tif"):
    ...     write_image(os.path.join(folder, "in", name), np.random.default_rng(0).random((16, 16), np.float32))
    >>> tasks = plan_tasks([os.path.join(folder, "in")], os.path.join(folder, "out"))
    >>> rows = run_batch(tasks, {"iterations": 5, "noise": "gaussian"}, workers=1, threads_per_worker=1,
    ...                  progress=False)
    >>> [(row["file"], row["status"], row["iterations"]) for row in rows]
    [('a.tif', 'done', 5), ('b.tif', 'done', 5)]
    >>> sorted(os.listdir(os.path.join(folder, "out")))
    ['a.json', 'a.tif', 'b.json', 'b.tif']
    """
    require_batch_extra()
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    rows = {task: _skipped_row(task) for task in tasks if task.is_done()}
    todo = [task for task in tasks if task not in rows]
    if rows:
        write(f"{len(rows)} of {len(tasks)} outputs are already done: skipping them")
    cluster = None
    if todo:
        if scheduler:
            client = Client(scheduler)
        else:
            workers = workers or _default_workers()
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
            if threads_per_worker is None:
                threads_per_worker = max(1, (os.cpu_count() or 1) // workers)
        try:
            futures = {client.submit(restore_file, task, options, tile_size=tile_size, overlap=overlap,
                                     torch_threads=threads_per_worker, extra_record=extra_record,
                                     pure=False, key=f"napari-dip-{i}-{Path(task.output).name}"): task
                       for i, task in enumerate(todo)}
            with tqdm(total=len(futures), desc="batch", unit="file", disable=not progress,
                      dynamic_ncols=True) as bar:
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        row = future.result()
                    except Exception as exc:  # the worker died (out of memory, killed): no row came back
                        row = {**_skipped_row(task), "status": "failed", "stop reason": None,
                               "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
                    rows[task] = row
                    if row["error"] and progress:
                        bar.write(f"failed: {row['file']}: {row['error']}")
                    bar.update()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return [rows[task] for task in tasks]


def _skipped_row(task: BatchTask) -> dict:
    return {"file": task.name, "status": "skipped (done)", "iterations": None, "stop reason": None,
            "seconds": None, "error": None, "output": task.output}


def _default_workers() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 1) // 4)


def format_summary(rows) -> str:
    """The rows as a plain-text table, one line per task, with a totals line."""
    def cell(row, column):
        value = row.get(column)
        return "" if value is None else str(value)

    widths = {c: max([len(c)] + [len(cell(r, c)) for r in rows]) for c in SUMMARY_COLUMNS}
    widths["error"] = len("error")  # the last column is not padded
    lines = ["  ".join(c.ljust(widths[c]) for c in SUMMARY_COLUMNS).rstrip()]
    lines += ["  ".join(cell(r, c).ljust(widths[c]) for c in SUMMARY_COLUMNS).rstrip() for r in rows]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped (done)", "failed")}
    lines.append(f"{counts['done']} restored, {counts['skipped (done)']} skipped (already done), "
                 f"{counts['failed']} failed, of {len(rows)}")
    return "\n".join(lines)
