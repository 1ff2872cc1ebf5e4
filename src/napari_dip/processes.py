"""Work units fitted side by side in worker processes with one torch thread each: how a CPU job with several
units uses every core.

Two torch threads on one unit scale poorly on these small convolutions and collapse beside a busy process
(core/threads.py); processes with one thread each do neither. Measured on a quiet 2-core machine, an 8-plane
time-lapse took 0.68 of one two-thread process's time; on 16 cores, 16 independent planes 0.17
(docs/benchmarks.md). A unit that warm-starts from another waits until that one is finished
(:class:`WarmStarts`). The main process reads each unit when it is handed out (a lazy input stays lazy), writes
the results and keeps the record.
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
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from .unit_fit import fit_steps

WORKER_SETUP_BYTES = 6e8  # a worker's own memory before its unit: Python, torch and napari-dip imported
# 'auto' starts workers only for jobs of at least this many output pixels × iterations (about 30 s on one
# core): starting a worker takes a few seconds (it imports torch), which a smaller job would not win back
MIN_WORK = 1e7
# a warm-started stack gets a worker per this many planes at most (at_once): the first plane of each run of
# neighbouring planes starts from scratch, and a run's later planes are what warm starts make cheap
MIN_CHAIN = 4


class WarmStarts:
    """Which finished unit each unit starts from, and the fitted states kept until the units that start from them
    have started.

    With warm starts, a unit starts from the plane just before it at the same place (tiles of one plane hold
    different content at the same place of the network's input, so they do not help each other). With several
    workers and fewer places than workers, each place's planes are cut into ``runs`` runs of neighbouring planes
    fitted side by side, the first plane of each run from scratch: a plane learns most from the plane just before
    it, which has itself come through the planes before (measured: planes that all started from the first plane
    of a 16-plane time-lapse took 1.39 times as long as the planes fitted in turn). Without warm starts every
    unit starts from scratch.
    """

    def __init__(self, units: list, warm_start: bool, workers: int = 1):
        places = {}
        for unit in units:
            places.setdefault(unit.place, []).append(unit.number)
        runs = max(1, -(-workers // len(places)))
        self.parent = {}
        for line in places.values():
            starts = {int(run[0]) for run in np.array_split(np.arange(len(line)), min(runs, len(line)))}
            for i, number in enumerate(line):
                self.parent[number] = line[i - 1] if warm_start and i not in starts else None
        self.waiting = Counter(p for p in self.parent.values() if p is not None)  # starts still to come per parent
        self.finished = set()
        self.states = {}  # unit number → its FittedState, while a unit still to start needs it

    def ready(self, number: int) -> bool:
        parent = self.parent[number]
        return parent is None or parent in self.finished

    def start_from(self, number: int):
        """(parent's number, its FittedState) for the unit starting now, or None: a cold start (no parent, or the
        parent was not restored)."""
        parent = self.parent[number]
        if parent is None:
            return None
        state = self.states.get(parent)
        self.waiting[parent] -= 1
        if self.waiting[parent] == 0:
            self.states.pop(parent, None)
        return None if state is None else (parent, state)

    def finish(self, number: int, fitted) -> None:
        self.finished.add(number)
        if fitted is not None and self.waiting[number] > 0:
            self.states[number] = fitted


@dataclass(frozen=True)
class WorkerPlan:
    """How a CPU job runs: ``processes`` worker processes (1: none, the job runs in this process) with ``threads``
    torch threads each, and why, for the record."""

    processes: int
    threads: int
    why: str


def at_once(units: list, warm_start: bool) -> int:
    """How many of ``units`` are worth fitting side by side: all, unless they warm-start from each other; then
    one per tile place and per ``MIN_CHAIN`` planes, since a plane that starts from one far before it gains
    little over a start from scratch."""
    if not warm_start:
        return len(units)
    places = len({unit.place for unit in units})
    return places * max(1, len(units) // places // MIN_CHAIN)


def plan_workers(requested, ceiling: int, side_by_side: int, measure, work: float = math.inf) -> WorkerPlan:
    """The worker processes for a job. ``requested``: 'auto' or a whole number (1: no worker processes);
    ``ceiling``: the cores the run may use (torch's thread count when it began); ``side_by_side``: how many units
    are worth fitting at once (:func:`at_once`); ``measure()``: (cores' worth of CPU that other processes use
    now, one unit's memory, the free memory) in bytes, called only where workers may run; ``work``: the job's
    output pixels × iterations. The cores are shared out between the processes."""
    if requested == 1:
        return WorkerPlan(1, ceiling, "one process (workers=1)")
    if side_by_side < 2:
        return WorkerPlan(1, ceiling, "one process (one unit at a time)")
    if requested == "auto" and work < MIN_WORK:
        return WorkerPlan(1, ceiling, "one process (too small a job to win back the workers' start)")
    if multiprocessing.current_process().daemon:  # e.g. a dask worker: it may not start processes
        return WorkerPlan(1, ceiling, "one process (this is a daemon process, which may not start workers)")
    if requested != "auto":
        count = min(int(requested), side_by_side)
        return WorkerPlan(count, max(1, ceiling // count), f"{count} worker processes (workers={requested})")
    if ceiling < 2:
        return WorkerPlan(1, ceiling, "one process (torch may use one core)")
    others_busy, unit_bytes, free_bytes = measure()
    free_cores = max(1, math.floor(ceiling - others_busy + 0.25))
    by_memory = max(1, int(free_bytes // (WORKER_SETUP_BYTES + unit_bytes)))
    count = min(free_cores, side_by_side, by_memory)
    why = f"cores free: {free_cores}, units worth fitting at once: {side_by_side}, room in memory for {by_memory}"
    if count < 2:
        return WorkerPlan(1, ceiling, f"one process ({why})")
    return WorkerPlan(count, free_cores // count, f"{count} worker processes ({why})")


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


def _fit_in_worker(spec, unit, pieces, normalisation, start_from, entry, kind, threads):
    """Fit one unit with ``threads`` torch threads (more than one while it has the machine to itself) and report
    each step, and the result, on the queue."""
    import torch

    torch.set_num_threads(threads)
    try:
        for progress in fit_steps(spec, unit, pieces, normalisation, start_from, entry, torch.device("cpu"),
                                  _stop.is_set, kind):
            _reports.put(progress)
    finally:
        torch.set_num_threads(1)


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


def fit_in_processes(spec, units: list, read, normalisation, plan: WorkerPlan, stop_requested, entry_of,
                     kind: str):
    """Fit ``units`` in the plan's worker processes; yields each worker's :class:`Progress` as it comes.

    A unit is handed out once the unit it warm-starts from (:class:`WarmStarts`) is finished, the lowest number
    first, so that planes finish roughly in order. Units handed out while nothing else runs share all the
    workers' threads. ``read(unit)`` gives a unit's pieces;
    ``entry_of(unit)`` the start of its record entry; ``kind`` what a unit is, in a word; ``stop_requested()`` is
    polled: once true, running units end with their best result so far, and the units not yet handed out are left
    to the caller (no finished :class:`Progress` comes for them)."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe beside torch's and Qt's threads
    stop, reports = context.Event(), context.Queue()
    bare = dataclasses.replace(spec, sources={})  # a worker gets each unit's pieces, not the whole input
    workers = plan.processes
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(stop, reports))
    warm = WarmStarts(units, spec.settings.warm_start, workers)
    waiting = list(units)
    running = {}  # unit number → its future

    def hand_out():
        if stop.is_set():
            return
        ready = [unit for unit in waiting if warm.ready(unit.number)][:workers - len(running)]
        threads = workers * plan.threads // len(ready) if ready and not running else plan.threads
        for unit in ready:
            waiting.remove(unit)
            pieces = read(unit)
            with _caller_script_hidden():
                running[unit.number] = pool.submit(_fit_in_worker, bare, unit, pieces, normalisation,
                                                   warm.start_from(unit.number), entry_of(unit), kind, threads)

    try:
        hand_out()
        while running:
            if stop_requested() and not stop.is_set():
                stop.set()
            try:
                progress = reports.get(timeout=0.2)
            except queue.Empty:
                for future in running.values():
                    failure = future.exception() if future.done() else None
                    if isinstance(failure, BrokenProcessPool):
                        raise RuntimeError(WORKER_LOST) from failure
                    if failure is not None:
                        raise failure from None
                continue
            if progress.entry is not None:
                running.pop(progress.unit)
                warm.finish(progress.unit, progress.fitted)
                progress.fitted = None
                hand_out()
            yield progress
    finally:
        stop.set()  # a closed or failed run ends its units at once
        pool.shutdown(wait=True, cancel_futures=True)
