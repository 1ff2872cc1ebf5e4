"""Fitting one work unit (a tile, a plane, a volume), or several of one shape side by side, as a stream of
:class:`Progress` reports: used in the caller's process (``executor.py``) and in worker processes
(``processes.py``) alike, so that neither imports the other's internals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .job import JobSpec, Skipped, fallback, fit_units_together, prepare_unit, unit_quality
from .record import UnitRecord

if TYPE_CHECKING:
    from .executor import Unit


@dataclass
class Progress:
    """A report on a unit: a step of its fit, or, once it has an ``entry``, its result and record entry."""

    unit: int  # the unit's number
    image: np.ndarray  # the unit's result so far, laid out as its result
    iteration: int = 0
    total: int = 0
    loss: float = float("nan")
    metrics: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    backtracks: int = 0
    entry: UnitRecord | None = None  # set when the unit is finished (restored, skipped or stopped)
    fitted: object = None  # a finished unit's core.loop.FittedState, where later units may start (WarmStarts)



def fit_steps(spec: JobSpec, unit: Unit, pieces: dict, normalisation, start_from, entry: UnitRecord, device,
              should_stop, kind: str, job=None):
    """Prepare (unless ``job`` is given) and fit one unit. Yields a :class:`Progress` per step of the fit; the
    last one is finished: it has the unit's record ``entry``, its result and its fitted state. A unit that is
    not restored (nothing to fit there, or the run stopped before it) finishes at once, the input standing in.
    ``start_from``: (unit number, FittedState) of the neighbour to start from, or None for a cold start."""
    yield from fit_group_steps(spec, [unit], [pieces], normalisation, start_from, [entry], device, should_stop, kind,
                               [job])


def fit_group_steps(spec: JobSpec, units: list[Unit], pieces: list[dict], normalisation, start_from,
                    entries: list[UnitRecord], device, should_stop, kind: str, jobs: list | None = None):
    """As :func:`fit_steps` for several units fitted together in one network (those of one shape; a unit of
    another shape is fitted after them); a unit finishes when its own stopping rule says so."""
    ready = []  # (index in units, UnitJob)
    for i, (unit, job) in enumerate(zip(units, jobs or [None] * len(units))):
        if should_stop():
            job = Skipped(f"stopped by user before this {kind}", "")
        elif job is None:
            job = prepare_unit(spec, pieces[i], unit.plane, normalisation)
        if isinstance(job, Skipped):
            yield Progress(unit.number, fallback(spec, pieces[i]),
                           entry=replace(entries[i], iterations=0, stop_reason=job.reason, seconds=0.0))
            continue
        job.device = device
        ready.append((i, job))
    shapes = {}
    for i, job in ready:
        shapes.setdefault(job.planes.shape, []).append((i, job))
    for group in shapes.values():
        group_start = time.perf_counter()
        for i, _ in group:
            entries[i].started_from = "random initialisation" if start_from is None else \
                f"{kind} {start_from[0] + 1}"
            if len(group) > 1:
                entries[i].fitted_with = [units[j].number for j, _ in group if j != i]
        for index, step in fit_units_together([job for _, job in group], should_stop,
                                              None if start_from is None else start_from[1]):
            i, job = group[index]
            state = step.state
            progress = Progress(units[i].number, step.image, state.iteration, state.total, state.loss, step.metrics,
                                step.quality, state.backtracks)
            if state.done:
                progress.entry = replace(
                    entries[i], restored=True, iterations=state.iteration, stop_reason=state.stop_reason,
                    seconds=round(time.perf_counter() - group_start, 3), noise_estimate=job.noise_estimate,
                    missing_pixels=job.missing_pixels, metrics=step.metrics, quality=unit_quality(step),
                    **({"normalisation": normalisation_entry(job.normalisation, spec)}
                       if normalisation is None else {}))
                progress.fitted = state.fitted
            yield progress


def normalisation_entry(normalisation, spec: JobSpec) -> dict:
    """The record's word on a unit's (or the job's) intensity mapping."""
    return {"low": normalisation.low, "high": normalisation.high, "percentiles": list(spec.percentiles)}
