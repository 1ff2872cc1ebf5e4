"""The one way a restoration runs: work units, read lazily, fitted one at a time, written into an output.

A job (``job.py``) is cut into work units: a plane (or a volume) of a stack, a Y/X tile of a large
plane, or a plane × tile. :func:`start` returns a :class:`RestorationRun` whose generator reads each
unit from the input (a NumPy array, or a lazy dask, zarr or memory-mapped one: only the unit is
read), fits it, blends tiles with raised-cosine windows that sum to 1, adds the result into the output
(a new NumPy array, or any array that supports slicing and assignment, e.g. a zarr array on disk),
emits snapshots with whole-job progress, honours ``stop()`` and writes one run record.

Intensities are normalised jointly (one mapping, fitted on a sample of the whole data: the same for
a stack in memory and the same stack on disk) or per unit, as the job says. A unit that is not
restored (stopped before it, or nothing to fit there) holds the input, missing pixels as the mean.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .core import data
from .core.threads import ThreadGovernor, cores_used_by_others, usable_cores
from .core.tiling import Tile, TilePlan, plan_tiles
from .core.tiling import auto_tile_size as side_for
from .errors import DIPInputError
from .intensities import choose_noise, fit_intensities, with_speckle_looks
from .job import JobSpec, Skipped, fallback, missing_planes, prepare_unit
from .metrics import whole_metric_pair
from .options import RestoreOptions
from .processes import WarmStarts, WorkerPlan, at_once, fit_in_processes, plan_workers
from .record import RunRecord, UnitRecord, input_entry, output_entry, versions
from .unit_fit import fit_group_steps, fit_steps, normalisation_entry

SAMPLE_VALUES = 2 ** 26  # joint normalisation: data up to this many values is read whole, larger data sampled
SAMPLE_PLANES = 16  # … from this many planes, evenly spaced


@dataclass(kw_only=True)
class Snapshot:
    """One look at a running restoration.

    ``image`` is the whole result so far in the input's layout and intensity units (float32; units not
    yet restored hold the input, enlarged for super-resolution), or, when the output is an array of
    the caller's (``out=``), the current unit's result only. ``plane`` and ``planes`` count work units
    (planes, tiles, planes × tiles); ``iteration`` and ``total`` count within the current unit.
    """

    iteration: int
    total: int
    loss: float
    image: np.ndarray
    seconds: float
    plane: int = 0
    planes: int = 1
    metrics: dict = field(default_factory=dict)
    backtracks: int = 0
    done: bool = False
    stop_reason: str | None = None
    record: RunRecord | None = None
    # ground-truth-free estimate (automatic stopping): estimated_psnr, estimated_rmse (input units),
    # heldout_error, chosen_iteration and the chosen result's chosen_estimated_psnr / _rmse; {} when off
    quality: dict = field(default_factory=dict)
    # amortised runs (amortised.py): the stage ('teacher', 'student', 'apply', 'done'; '' for per-unit fitting),
    # what it is doing in words, and the estimated seconds left for the whole run (None: not known yet);
    # ``iteration`` / ``total`` are then the whole run's thousandths done
    stage: str = ""
    stage_detail: str = ""
    seconds_left: float | None = None


@dataclass
class Restoration:
    """The result: ``image`` (float32, input units) and the run ``record``."""

    image: np.ndarray
    record: RunRecord


class RestorationRun:
    """An iterable of snapshots with ``stop()``; ``result`` is set once it is exhausted.

    ``planes`` is the number of work units, ``iterations`` the iterations per unit; ``tiling`` (or None)
    says how each plane is cut (tiles, grid, tile_size, overlap), for a user interface to show; ``processes``
    how many worker processes fit the units side by side (1: none).
    """

    def __init__(self, snapshots_factory, planes: int, iterations: int, device_description: str,
                 tiling: dict | None = None, processes: int = 1):
        self._stop = threading.Event()
        self.processes = processes
        self.planes = planes
        self.iterations = iterations
        self.device_description = device_description
        self.tiling = tiling
        self.stages: tuple = ()  # an amortised run's stages (amortised.STAGES); () for per-unit fitting
        self.amortised: dict | None = None  # the record's ``amortised``: why the run was (not) taught once
        self.result: Restoration | None = None
        self.last: Snapshot | None = None
        self._gen = snapshots_factory(self)

    def stop(self):
        """Ask the run to end; a final snapshot with the best result so far follows within one iteration."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def __iter__(self):
        return self

    def __next__(self) -> Snapshot:
        snapshot = next(self._gen)
        self.last = snapshot
        return snapshot

    def close(self):
        self._gen.close()


@dataclass(frozen=True)
class Unit:
    """One work unit: a plane (``lead``: its index on the leading axes; ``plane``: its number) and a tile."""

    number: int
    plane: int
    lead: tuple
    tile: Tile | None  # None: the whole plane

    @property
    def place(self) -> int | None:
        """Where the unit lies within its plane: its tile's index, or None for the whole plane."""
        return self.tile.index if self.tile is not None else None

    @property
    def yx(self) -> tuple:
        """The tile's (Y, X) ranges, or (None, None) for the whole plane."""
        return (self.tile.y, self.tile.x) if self.tile is not None else (None, None)


def plan_units(spec: JobSpec, tile_side: int | None, overlap: int) -> tuple[list[Unit], TilePlan | None]:
    """The work units of a job: every plane, each cut into tiles when a side exceeds ``tile_side``."""
    layout = spec.layout
    height, width = layout.spatial_shape[-2:]
    plan = None
    if tile_side is not None and max(height, width) > tile_side:
        try:
            plan = plan_tiles((height, width), tile_side, overlap, spec.axis_factors[-1])
        except ValueError as exc:
            raise DIPInputError(str(exc)) from None
    tiles = plan.tiles if plan is not None else [None]
    pairs = itertools.product(enumerate(layout.leads), tiles)
    units = [Unit(i, p, lead, tile) for i, ((p, lead), tile) in enumerate(pairs)]
    return units, plan


def unit_kind(spec: JobSpec, units: list[Unit], plan: TilePlan | None) -> str:
    """What a work unit is, in a word, for records and messages."""
    planes = spec.layout.planes
    if plan is not None:
        return "tile" if planes == 1 else "unit"
    if planes > 1:
        return "volume" if spec.layout.spatial_dims == 3 else "plane"
    return "volume" if spec.layout.spatial_dims == 3 else "image"


def read_unit(spec: JobSpec, unit: Unit) -> dict:
    """The unit's pieces of every array of the job (copies, channels last)."""
    return {name: source.read(unit.lead, *unit.yx) for name, source in spec.sources.items()}


def read_measurement(spec: JobSpec, lead: tuple) -> dict:
    """One whole plane of the image and, if given, of the mask (channels last)."""
    return {name: source.read(lead) for name, source in spec.sources.items() if name in ("image", "mask")}


def measurement_sample(spec: JobSpec) -> tuple[np.ndarray, np.ndarray]:
    """(planes, missing) of the whole data when it holds up to ``SAMPLE_VALUES`` values, else of ``SAMPLE_PLANES``
    evenly spaced planes read with a stride. The sample depends on the shape only, so a stack in memory and the
    same stack on disk give the same intensity mapping and the same noise model."""
    layout = spec.layout
    total = int(np.prod(layout.shape, dtype=np.int64))
    planes = list(range(layout.planes))
    stride = 1
    if total > SAMPLE_VALUES:
        planes = sorted(set(np.linspace(0, layout.planes - 1, min(SAMPLE_PLANES, layout.planes)).round().astype(int)))
        per_plane = total // layout.planes * len(planes)
        stride = int(np.ceil(np.sqrt(per_plane / SAMPLE_VALUES)))
    leads = layout.leads
    sampled_planes, sampled_missing = [], []
    yx = tuple([slice(None)] * (layout.spatial_dims - 2) + [slice(None, None, stride)] * 2)  # spatial axes first
    for p in planes:
        pieces = {name: piece[yx] for name, piece in read_measurement(spec, leads[p]).items()}
        _, values, missing = missing_planes(spec, pieces)
        sampled_planes.append(values)
        sampled_missing.append(missing)
    values, missing = np.concatenate(sampled_planes), np.concatenate(sampled_missing)
    if missing.all():
        raise DIPInputError("the image has no measured pixel (all NaN, inf or masked) in the sample read to "
                            "fit the intensity range; check the image and the mask")
    return values, missing


def start(spec: JobSpec, units: list[Unit], plan: TilePlan | None, device, options: RestoreOptions
          ) -> RestorationRun:
    """The run of ``units``: the first unit is read and prepared now, so that its errors come before anything
    runs. Of the ``options``: ``out``, an array of the output's shape to add the result into (zero-filled), or
    None; ``workers``, worker processes for the units on a CPU ('auto': one per free core, as memory allows; 1:
    none); ``units_together``, units fitted together in one network call (:func:`choose_units_together`);
    ``memory_limit``."""
    from .core.device import describe_device

    out, memory_limit = options.out, options.memory_limit

    if out is not None and tuple(out.shape) != spec.output_shape:
        raise DIPInputError(f"out has shape {tuple(out.shape)}; the result needs {spec.output_shape}")
    normalisation, first_pieces = None, None
    if spec.normalise == "joint":
        sample = measurement_sample(spec)
        spec = choose_noise(spec, *sample)  # one noise model for every unit
        normalisation = fit_intensities(spec, *sample)
        spec = with_speckle_looks(spec, normalisation[1])
    elif spec.noise == "auto":  # one mapping per unit: the first unit's noise model for all, each unit read once
        first_pieces = read_unit(spec, units[0])
        spec = choose_noise(spec, *missing_planes(spec, first_pieces)[1:])
    first = _prepare(spec, units[0], normalisation, alone=len(units) == 1, pieces=first_pieces)
    tiling = None if plan is None else {"tiles": len(plan.tiles), "grid": plan.grid, "tile_size": plan.tile_size,
                                        "overlap": plan.overlap}
    description = describe_device(device)
    together = choose_units_together(options.units_together, spec, units, device, memory_limit)
    if together[0] > 1:
        import torch

        workers = WorkerPlan(1, torch.get_num_threads(), "one process (its units are fitted together)")
    else:
        workers = choose_workers(options.workers, spec, units, device, memory_limit)
    return RestorationRun(lambda run: _run(run, spec, units, plan, device, out, normalisation, first, workers,
                                           together),
                          len(units), spec.settings.iterations, description, tiling, workers.processes)


def choose_units_together(requested, spec: JobSpec, units: list[Unit], device, memory_limit: float | None = None
                          ) -> tuple[int, str]:
    """How many units are fitted together in one network call (core/loop.py ``fit_units``), and why, for the record.

    'auto': on a GPU, as many units as half the free memory holds (by the memory model of the network that runs),
    unless the units warm-start from each other (a stack's planes, denoising); on a CPU one, since worker processes
    fill the cores and a 128² unit ran no faster together there (docs/benchmarks.md). Only the light decoder
    without backtracking fits units together; an explicit number for another network is an error."""
    settings = spec.settings
    if requested == 1 or len(units) == 1:
        return 1, "one unit at a time" + (" (units_together=1)" if requested == 1 else "")
    if settings.network.kind != "light" or settings.backtracking:
        if requested == "auto":
            return 1, "one unit at a time (this preset's network fits one unit per call)"
        raise DIPInputError(f"units_together={requested} needs a preset with the light network and no backtracking "
                            f"('fast' for denoise, superres, deconvolve, axial-superres); this job runs the "
                            f"{settings.network.kind!r} network{' with backtracking' if settings.backtracking else ''}"
                            f": pass units_together=1")
    if requested == "auto":
        if device.type != "cuda":
            return 1, "one unit at a time (on a CPU worker processes share the cores out instead)"
        warm = WarmStarts(units, settings.warm_start)
        if any(parent is not None for parent in warm.parent.values()):
            return 1, "one unit at a time (each plane starts from the plane before)"
        requested = len(units)
    import torch

    unit_bytes = _unit_bytes(spec, units[0])
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else _cpu_memory(memory_limit)
    by_memory = max(1, int(free / 2 // unit_bytes))
    count = min(int(requested), len(units), by_memory)
    return count, f"{count} units at a time (asked: {requested}; room in memory for {by_memory})"


def _unit_bytes(spec: JobSpec, unit: Unit) -> float:
    """The memory of one unit's fit, by the memory model of the network the job runs: its weights and Adam's
    moments, and its per-pixel part for the unit's output pixels (a volume's every plane)."""
    model, planes = _memory_model(spec)
    tile = unit.tile
    height, width = (tile.y[1] - tile.y[0], tile.x[1] - tile.x[0]) if tile is not None else \
        spec.layout.spatial_shape[-2:]
    return model.bytes(height * width * spec.axis_factors[-1] ** 2 * (planes or 1))


def choose_workers(requested, spec: JobSpec, units: list[Unit], device, memory_limit: float | None = None
                   ) -> WorkerPlan:
    """The worker processes of a run (processes.py): several only on a CPU, for units worth fitting side by side,
    one per core that other processes leave free (and torch's thread count allows), as many as memory holds."""
    import torch

    ceiling = min(torch.get_num_threads(), usable_cores())
    if device.type != "cpu":
        return WorkerPlan(1, ceiling, "one process (the units share the device)")
    # asked for a number: as many as there are units; 'auto': as many as are worth fitting side by side
    side_by_side = at_once(units, spec.settings.warm_start) if requested == "auto" else len(units)
    work = float(np.prod(spec.output_shape, dtype=np.float64) / max(1, spec.layout.channels)) * \
        spec.settings.iterations

    def measure():
        return cores_used_by_others(), _unit_bytes(spec, units[0]), _cpu_memory(memory_limit)

    return plan_workers(requested, ceiling, side_by_side, measure, work)


def _prepare(spec, unit, normalisation, alone, pieces=None):
    """The unit's pieces (read now unless given) and its UnitJob, or the reason it is not restored; a lone unit's
    reason is an error."""
    pieces = read_unit(spec, unit) if pieces is None else pieces
    job = prepare_unit(spec, pieces, unit.plane, normalisation)
    if isinstance(job, Skipped) and alone:
        raise DIPInputError(job.error)
    return pieces, job


class _Output:
    """Where results go. Held in memory (no ``out``): a preview that is the whole result so far (the input
    where no unit is done yet), and for tiles the window-weighted sum and the weights of each plane whose tiles
    are not all in (units may finish out of order in worker processes).
    The caller's ``out``: results are added into it, window-weighted, and there is no preview."""

    def __init__(self, spec: JobSpec, plan: TilePlan | None, out):
        self.spec, self.plan = spec, plan
        layout = spec.layout
        spatial = layout.axes["spatial"]
        places = (tuple(layout.axes["lead"]), tuple(spatial[-2:]), layout.channel_axis, spec.axis_factors[-2:])
        self.preview = self.shown = None
        self.coverage = {}  # tiles in memory: a plane's lead → (its weights so far, how many tiles are in)
        if out is None:
            self.preview = np.zeros(spec.output_shape, np.float32)
            self.shown = data.ArraySource(self.preview, *places)
            if not any(data.is_lazy(s.array) for name, s in spec.sources.items() if name in ("image", "mask")):
                for lead in layout.leads:
                    self.shown.write(fallback(spec, read_measurement(spec, lead)), lead)
        if out is None and plan is None:
            self.target = None  # the preview is the output
            return
        self.array = np.zeros(spec.output_shape, np.float32) if out is None else out
        self.target = data.ArraySource(self.array, *places)
        self.coverage_shape = None
        if out is None:
            self.coverage_shape = [1] * len(spec.output_shape)
            for axis in spatial[-2:]:
                self.coverage_shape[axis] = spec.output_shape[axis]

    def _piece_shaped(self, yx_weights: np.ndarray, piece_ndim: int) -> np.ndarray:
        """(Y, X) weights shaped to broadcast against a unit's piece (spatial axes, then channels)."""
        spatial_dims = self.spec.layout.spatial_dims
        shape = [1] * piece_ndim
        shape[spatial_dims - 2], shape[spatial_dims - 1] = yx_weights.shape
        return yx_weights.reshape(shape)

    def show(self, unit: Unit, piece: np.ndarray):
        """The unit's result so far in the preview (nothing when the output is the caller's)."""
        if self.shown is not None:
            self.shown.write(piece, unit.lead, *unit.yx)

    def add(self, unit: Unit, piece: np.ndarray):
        """The unit's final result into the output, weighted by its window; the preview shows the blend so far."""
        y, x = unit.yx
        if self.target is None:
            self.shown.write(piece, unit.lead, y, x)
            return
        window = self.plan.window(unit.tile) if unit.tile is not None else None
        self.target.add(piece if window is None else piece * self._piece_shaped(window, piece.ndim), unit.lead, y, x)
        if self.coverage_shape is None:
            return
        coverage, tiles_in = self.coverage.get(unit.lead) or (np.zeros(self.coverage_shape, np.float32), 0)
        index = [slice(None)] * coverage.ndim
        for axis, part in zip(self.target.yx_axes, unit.tile.slices(self.spec.axis_factors[-1])):
            index[axis] = part
        region = tuple(index)
        coverage[region] += window.reshape(coverage[region].shape)
        weights = coverage[region].reshape(window.shape)
        self.shown.write(self.target.read(unit.lead, y, x) / np.maximum(self._piece_shaped(weights, piece.ndim),
                                                                          1e-12), unit.lead, y, x)
        if tiles_in + 1 < len(self.plan.tiles):
            self.coverage[unit.lead] = (coverage, tiles_in + 1)
        else:
            self.coverage.pop(unit.lead, None)  # the plane is whole

    def finish(self):
        """The output: in memory, the preview (for tiles the weighted sum over the weights: exact where rounding
        leaves the windows' sum a hair off 1); else the caller's array."""
        return self.preview if self.preview is not None else self.array


def _run(run: RestorationRun, spec: JobSpec, units: list[Unit], plan, device, out, normalisation, first, workers,
         together=(1, "one unit at a time")):
    # worker processes set their own one thread; one process adapts its threads to the machine's load
    governor = ThreadGovernor().start() if device.type == "cpu" and workers.processes == 1 else None
    try:
        yield from _run_units(run, spec, units, plan, device, out, normalisation, first, governor, workers, together)
    finally:
        if governor is not None:
            governor.finish()


def _fit_in_order(spec, units, read, normalisation, device, should_stop, entry_of, kind, first_job, together=1):
    """The units fitted one after the other in this process, each warm-started from the plane before at its place
    when the settings say so (:class:`WarmStarts`); or, with ``together`` > 1, that many at a time in one
    network, each from a random start."""
    if together > 1:
        for first in range(0, len(units), together):
            group = units[first:first + together]
            yield from fit_group_steps(spec, group, [read(unit) for unit in group], normalisation, None,
                                       [entry_of(unit) for unit in group], device, should_stop, kind,
                                       [first_job if unit.number == 0 else None for unit in group])
        return
    warm = WarmStarts(units, spec.settings.warm_start)
    for unit in units:
        for progress in fit_steps(spec, unit, read(unit), normalisation, warm.start_from(unit.number),
                                  entry_of(unit), device, should_stop, kind,
                                  first_job if unit.number == 0 else None):
            yield progress
        warm.finish(unit.number, progress.fitted)
        progress.fitted = None


def _run_units(run: RestorationRun, spec: JobSpec, units: list[Unit], plan, device, out, normalisation, first,
               governor, workers, together):
    def should_stop():  # polled every iteration
        if governor is not None:
            governor.poll()
        return run.stop_requested

    def read(unit):  # the unit's pieces, its input shown until its first step
        pieces = first[0] if unit.number == 0 else read_unit(spec, unit)
        output.show(unit, fallback(spec, pieces))
        return pieces

    def entry_of(unit):
        return UnitRecord.where(unit.number, unit.plane if len(units) > 1 and spec.layout.planes > 1 else None,
                                unit.tile)

    start_time = time.perf_counter()
    output = _Output(spec, plan, out)
    kind = unit_kind(spec, units, plan)
    processes = workers.processes
    if processes > 1:
        reports = fit_in_processes(spec, units, read, normalisation, workers, should_stop, entry_of, kind)
    else:
        reports = _fit_in_order(spec, units, read, normalisation, device, should_stop, entry_of, kind, first[1],
                                together[0])
    entries, latest, backtracks = {}, None, 0
    in_turn = processes == 1 and together[0] == 1  # else units interleave: count the finished ones
    for progress in reports:
        unit = units[progress.unit]
        if progress.entry is None:
            output.show(unit, progress.image)
        else:
            output.add(unit, progress.image)
            entries[unit.number] = progress.entry
            backtracks += progress.backtracks
            if not progress.entry.restored:
                continue  # not restored: no snapshot, as the run went straight on
        latest = progress
        if progress.entry is not None and (len(entries) == len(units) or run.stop_requested):
            continue  # the final snapshot follows
        yield Snapshot(iteration=progress.iteration, total=progress.total, loss=progress.loss,
                       image=_shown(output, progress.image), seconds=time.perf_counter() - start_time,
                       plane=progress.unit if in_turn else len(entries), planes=len(units), metrics=progress.metrics,
                       backtracks=backtracks + (0 if progress.entry else progress.backtracks),
                       quality=progress.quality)
    for unit in units:  # with worker processes, the units a stop left unhanded
        if unit.number not in entries:
            output.add(unit, fallback(spec, read_unit(spec, unit)))
            entries[unit.number] = dataclasses.replace(entry_of(unit), stop_reason=f"stopped by user before this "
                                                                                        f"{kind}")
    entries = [entries[unit.number] for unit in units]

    image = output.finish()
    restored = [e for e in entries if e.restored]
    stop_reason = _job_stop_reason(entries, kind, len(restored), run.stop_requested)
    single = (latest.metrics or {}) if latest is not None and len(entries) == 1 else {}
    metrics = _metrics(spec, image, output, entries, single)
    parameters = _job_parameters(spec, entries, restored, normalisation)
    settings = spec.settings
    cpu = dict(governor.describe(), processes=1, why=workers.why) if governor is not None else \
        {"policy": "worker processes", "processes": processes, "threads_each": workers.threads, "why": workers.why} \
        if device.type == "cpu" else None
    record = RunRecord(
        task=spec.name, preset=spec.preset, parameters=parameters,
        iterations=int(sum(e.iterations for e in entries)), iterations_per_unit=[int(e.iterations) for e in entries],
        planes=spec.layout.planes, work_unit=kind, units_restored=len(restored),
        units_together={"count": together[0], "why": together[1]}, stop_reason=stop_reason, backtracks=backtracks,
        seconds=round(time.perf_counter() - start_time, 3), device=run.device_description, cpu_threads=cpu,
        version=versions(), metrics=metrics, quality=_quality_record(entries, settings), input=input_entry(spec),
        output=output_entry(spec), units=entries,
        tiling=_tiling_entry(plan) if plan is not None else None, amortised=run.amortised)
    run.result = Restoration(image, record)
    yield Snapshot(iteration=entries[-1].iterations, total=settings.iterations,
                   loss=latest.loss if latest is not None else float("nan"), image=image, seconds=record.seconds,
                   plane=len(units) - 1, planes=len(units), metrics=metrics, backtracks=backtracks, done=True,
                   stop_reason=stop_reason, record=record, quality=latest.quality if latest is not None else {})


def _job_parameters(spec: JobSpec, entries: list[UnitRecord], restored: list[UnitRecord], normalisation) -> dict:
    """The record's parameters: the job's, the missing pixels, and the intensity mapping and noise estimate (the
    unit's where there is one unit, else a pointer to the units')."""
    parameters = dict(spec.parameters, missing_pixels=int(sum(e.missing_pixels or 0 for e in entries)))
    if normalisation is not None:
        parameters["normalisation"] = normalisation_entry(normalisation[0], spec)
    if len(restored) == 1 and len(entries) == 1:
        parameters["noise_estimate"] = restored[0].noise_estimate
        parameters.setdefault("normalisation", restored[0].normalisation)
    else:
        parameters["noise_estimate"] = {"model": spec.noise, "per_unit": "see the record's units"}
    return parameters


def _job_stop_reason(entries: list[UnitRecord], kind: str, restored: int, stopped: bool) -> str:
    """The job's stop reason from its units' ("per plane: 3 × …; 1 × …" where they differ)."""
    if len(entries) == 1:
        return entries[0].stop_reason
    if stopped:
        return f"stopped by user at {kind} {max(1, restored)} of {len(entries)}"
    reasons = sorted({e.stop_reason for e in entries}, key=str)
    return reasons[0] if len(reasons) == 1 else f"per {kind}: " + "; ".join(
        f"{sum(e.stop_reason == r for e in entries)} × {r}" for r in reasons)


def _tiling_entry(plan: TilePlan) -> dict:
    """The record's word on the tiles."""
    return {"tile_size": list(plan.tile_size), "overlap": plan.overlap, "grid": list(plan.grid),
            "window": "raised cosine across each overlap; the windows sum to 1",
            "tiles": [{"index": t.index, "y": list(t.y), "x": list(t.x)} for t in plan.tiles]}


def _shown(output: _Output, unit_image: np.ndarray) -> np.ndarray:
    """A snapshot's image: a copy of the whole result so far, or the unit's result when the output is the caller's."""
    return output.preview.copy() if output.preview is not None else unit_image


def _metrics(spec: JobSpec, image, output: _Output, entries, single: dict) -> dict:
    """PSNR/SSIM of the whole result against the ground truth (with the input's beside it), when both are in
    memory; else the mean over the units. ``single``: a lone unit's last metrics (its last iterate's PSNR and the
    network's before a mix are kept), or {}."""
    source = spec.sources.get("ground_truth")
    if source is None:
        return {}
    if output.preview is None or data.is_lazy(source.array):
        metrics = {}
        for key in ("psnr", "ssim"):
            values = [e.metrics[key] for e in entries if (e.metrics or {}).get(key) is not None]
            if values:
                metrics[key] = float(np.mean(values))  # the mean over the units restored
        return metrics
    truth = np.asarray(source.array, np.float32)
    metrics = whole_metric_pair(image.astype(np.float32), truth, spec.layout)
    degraded = spec.sources["image"].array
    if not data.is_lazy(degraded) and tuple(degraded.shape) == truth.shape:
        degraded = np.asarray(degraded, np.float32)
        if np.isfinite(degraded).all():
            base = whole_metric_pair(degraded, truth, spec.layout)
            metrics.update({"psnr_input": base["psnr"], "ssim_input": base["ssim"]})
    for key in ("psnr_current", "psnr_network"):  # the last iterate's, and the network's before the mix
        if key in single:
            metrics[key] = single[key]
    return metrics


def _quality_record(entries: list[UnitRecord], settings) -> dict:
    """The record's ``quality`` entry: how each unit's result was chosen, and the estimate there."""
    if not settings.auto_stop:
        return {"automatic_stopping": False}
    units = [dict(e.quality, unit=e.unit, **{k: getattr(e, k) for k in ("plane", "tile") if getattr(e, k) is not None})
             for e in entries if e.quality]
    quality = {"automatic_stopping": True, "holdout_fraction": settings.holdout_fraction,
               "method": "held-out pixels (squared error minus the noise variance)", "units": units}
    if len(entries) == 1 and units:
        quality.update({k: v for k, v in units[0].items() if k not in ("stop_reason", "unit")})
    return quality


# ---------------------------------------------------------------------------------------------
# how large a unit may be


def auto_tile_size(spec: JobSpec, device, memory_limit: float | None = None, overlap: int = 64) -> int | None:
    """The tile side for ``tile_size='auto'``: None when a plane fits one run, else a side whose run needs at
    most a quarter of the device's free memory, by the memory model of the network that runs
    (:meth:`NetworkSpec.memory_model`: its kind, widths, ensemble members, 2D or 3D).

    ``memory_limit`` (bytes) caps the CPU memory counted as free, e.g. a dask worker's share.
    """
    import torch

    model, planes = _memory_model(spec)
    layout = spec.layout
    per_pixel = model.bytes_per_pixel * (planes or 1)  # per Y/X output pixel: a volume's every plane
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = _cpu_memory(memory_limit)
    # side_for budgets a quarter of the memory it is given: the weights and Adam's moments come out of it first
    budget_base = max(free - model.fixed_bytes, 0.0)
    return side_for(layout.spatial_shape[-2:], spec.axis_factors[-1], per_pixel, budget_base, overlap=overlap)


def _memory_model(spec: JobSpec):
    """The memory model of the network the job runs, and the planes of its output volume (None in 2D)."""
    from .core.inputs import input_channels

    settings, layout = spec.settings, spec.layout
    dims = layout.spatial_dims
    planes = layout.spatial_shape[0] * spec.axis_factors[0] if dims == 3 else None
    members = max(1, int(settings.ensemble or 1))
    model = settings.network.memory_model(
        input_channels(settings.input, settings.input_channels, dims, layout.channels), layout.channels, dims,
        members, planes=planes)
    return model, planes


def _cpu_memory(memory_limit: float | None) -> float:
    """Bytes of CPU memory a run may count as free: what is available, at most ``memory_limit``."""
    return min(available_memory(), memory_limit or float("inf"))


def available_memory() -> float:
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
