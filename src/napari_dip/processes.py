"""Work units fitted side by side in worker processes with one torch thread each: how a CPU job with several
units uses every core.

Two torch threads on one unit scale poorly on these small convolutions and collapse beside a busy process
(core/threads.py); processes with one thread each do neither. Measured on a quiet 2-core machine, four
planes fitted by two one-thread processes took 0.74–0.82 of the time one two-thread process took
(docs/benchmarks.md). Units that warm-start from each other form a *chain* fitted in order, each unit
starting from the network the one before had at its kept result; chains run side by side. The main process
reads each unit when it is handed out (a lazy input stays lazy), writes the results and keeps the record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import queue
import sys
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

WORKER_SETUP_BYTES = 6e8  # a worker's own memory before its unit: Python, torch and napari-dip imported
# 'auto' starts workers only for jobs of at least this many output pixels × iterations (about 30 s on one
# core): starting a worker takes a few seconds (it imports torch), which a smaller job would not win back
MIN_WORK = 1e7


@dataclass
class Progress:
    """A worker's report on its unit: a step of the fit, or (``finished``) the unit's result and record entry."""

    unit: int  # the unit's number
    image: np.ndarray  # the unit's result so far, laid out as its result
    iteration: int = 0
    total: int = 0
    loss: float = float("nan")
    metrics: dict = dataclasses.field(default_factory=dict)
    quality: dict = dataclasses.field(default_factory=dict)
    backtracks: int = 0
    entry: dict | None = None  # set when the unit is finished (restored, skipped or stopped)
    fitted: object = None  # a finished unit's core.loop.FittedState, where the next unit of its chain starts


def chains_of(units: list, warm_start: bool, workers: int) -> list[list]:
    """The units grouped into chains fitted in order. With warm starts: a tile place's units across the planes
    (tiles of one plane differ too much to help each other), or, untiled, ``workers`` runs of neighbouring
    planes (the first of each run starts from scratch). Without: every unit alone."""
    if not warm_start:
        return [[unit] for unit in units]
    if units[0].tile is not None:
        places = {}
        for unit in units:
            places.setdefault(unit.place, []).append(unit)
        return list(places.values())
    runs = np.array_split(np.arange(len(units)), min(workers, len(units)))
    return [[units[i] for i in run] for run in runs]


def worker_count(requested, ceiling: int, chains: int, unit_bytes: float, free_bytes: float,
                 others_busy: float = 0.0, work: float = math.inf) -> tuple[int, str]:
    """How many worker processes, and why. ``requested``: 'auto' or a whole number (1: no worker processes);
    ``ceiling``: the cores the run may use (torch's thread count when it began); ``chains``: how many can run at
    once; ``unit_bytes``: one unit's memory; ``others_busy``: cores' worth of CPU other processes use now;
    ``work``: the job's output pixels × iterations."""
    if requested == 1:
        return 1, "one process (workers=1)"
    if chains < 2:
        return 1, "one process (one unit at a time)"
    if requested == "auto" and work < MIN_WORK:
        return 1, "one process (too small a job to win back the workers' start)"
    if multiprocessing.current_process().daemon:  # e.g. a dask worker: it may not start processes
        return 1, "one process (this is a daemon process, which may not start workers)"
    by_memory = max(1, int(free_bytes // (WORKER_SETUP_BYTES + unit_bytes)))
    if requested == "auto":
        free_cores = max(1, math.floor(ceiling - others_busy + 0.25))
        count = min(free_cores, chains, by_memory)
        why = (f"{count} worker processes with one thread each (cores free: {free_cores}, units that can run at "
               f"once: {chains}, room in memory for {by_memory})")
        return (count, why) if count > 1 else (1, "one process (" + why.split("(", 1)[1])
    count = min(int(requested), chains)
    return count, f"{count} worker processes with one thread each (workers={requested})"


WORKER_LOST = ("a worker process ended unexpectedly (out of memory, or killed): pass workers=1 to fit in this "
               "process, or a smaller tile_size")

# ---------------------------------------------------------------------------------------------
# in a worker process

_stop = None  # the run's stop flag
_reports = None  # the queue the worker reports on


def _start_worker(stop, reports):
    import torch

    global _stop, _reports
    torch.set_num_threads(1)
    os.environ["NUMBA_NUM_THREADS"] = "1"  # block matching (bmnd, on numba) too: read when numba is first imported
    _stop, _reports = stop, reports


def _fit_in_worker(spec, unit, pieces, normalisation, start_from, entry, kind):
    """Fit one unit and report each step, and the result, on the queue."""
    import torch

    from .executor import fit_steps

    for progress in fit_steps(spec, unit, pieces, normalisation, start_from, entry, torch.device("cpu"),
                              _stop.is_set, kind):
        _reports.put(progress)


# ---------------------------------------------------------------------------------------------
# in the main process


@contextlib.contextmanager
def _caller_script_hidden():
    """While workers start: a spawned process runs the caller's script again (as ``__mp_main__``) before its work,
    and a script without an ``if __name__ == '__main__':`` guard would restore its image again there. Workers
    need nothing from the script, so they start as from a notebook, which has no script file."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def fit_in_processes(spec, chains: list[list], read, normalisation, workers: int, stop_requested, entry_of,
                     kind: str):
    """Fit the chains' units in ``workers`` processes; yields each worker's :class:`Progress` as it comes.

    ``read(unit)`` gives a unit's pieces; ``entry_of(unit)`` the start of its record entry; ``kind`` what a unit
    is, in a word;
    ``stop_requested()`` is polled: once true, running units end with their best result so far and the
    units not yet handed out are left to the caller (a finished :class:`Progress` never comes for them)."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe beside torch's and Qt's threads
    stop, reports = context.Event(), context.Queue()
    bare = dataclasses.replace(spec, sources={})  # a worker gets each unit's pieces, not the whole input
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(stop, reports))
    next_in_chain = [0] * len(chains)
    fitted = [None] * len(chains)  # per chain: (unit number, FittedState) of its latest unit, or None
    running = {}  # unit number → (chain, future)

    def hand_out():
        # the waiting unit with the lowest number first: planes finish roughly in order
        while len(running) < workers and not stop.is_set():
            waiting = [c for c in range(len(chains)) if next_in_chain[c] < len(chains[c])
                       and not any(c == chain for chain, _ in running.values())]
            if not waiting:
                return
            c = min(waiting, key=lambda c: chains[c][next_in_chain[c]].number)
            unit = chains[c][next_in_chain[c]]
            pieces = read(unit)
            with _caller_script_hidden():
                future = pool.submit(_fit_in_worker, bare, unit, pieces, normalisation, fitted[c], entry_of(unit),
                                     kind)
            running[unit.number] = (c, future)

    try:
        hand_out()
        while running:
            if stop_requested() and not stop.is_set():
                stop.set()
            try:
                progress = reports.get(timeout=0.2)
            except queue.Empty:
                for _, future in running.values():
                    failure = future.exception() if future.done() else None
                    if isinstance(failure, BrokenProcessPool):
                        raise RuntimeError(WORKER_LOST) from failure
                    if failure is not None:
                        raise failure from None
                continue
            yield progress
            if progress.entry is None:
                continue
            c, _ = running.pop(progress.unit)
            fitted[c] = None if progress.fitted is None else (progress.unit, progress.fitted)
            progress.fitted = None
            next_in_chain[c] += 1
            hand_out()
    finally:
        stop.set()  # a closed or failed run ends its units at once
        pool.shutdown(wait=True, cancel_futures=True)
