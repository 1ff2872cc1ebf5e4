"""The run state of a dock widget: one controller owns the worker, stop, and the one-run-at-a-time rule.

A widget owns one :class:`RunController` and subscribes its parts (run button,
progress bar, plot, result layer) to the controller's signals; the controller
never touches the widget. It holds no maths either: the engine runs in
:func:`~napari_dip.widgets.worker.restoration_steps`, whose tagged items the
controller routes to its signals.

Status: IDLE → RUNNING (→ STOPPING after ``stop``) → DONE when the final
snapshot arrived, FAILED when the run ended without it (a user error, an
unexpected error, or an abort). The status leaves RUNNING/STOPPING only once the
worker's thread has ended, so ``busy`` and the one-run rule always agree.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import ClassVar

from napari.utils import progress
from psygnal import Signal

from ..options import RestoreOptions
from .worker import FAILED, RUN, SNAPSHOT, restoration_steps, start


class RunStatus(enum.Enum):
    """Where a controller's run stands; see the module's docstring for the transitions."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"


class RunRefused(RuntimeError):
    """``start`` was called while another run is active (ask ``refusal()`` first)."""


class RunController:
    """Starts, stops and reports one restoration run at a time.

    Signals, emitted in the GUI thread and in the worker's order:

    - ``status_changed(RunStatus)``
    - ``started(RestorationRun)``: the engine has built the run; ``total`` is now known
    - ``snapshot(Snapshot)``: ``steps`` already counts it
    - ``failed(str)``: a user error (bad input, not enough memory) to show
    - ``finished()``: the run is over, whatever the outcome (after the last status change)

    ``alive`` tells whether the subscribers still exist; once it is False (or
    after ``abort``) the controller keeps its own books but emits nothing.
    """

    status_changed = Signal(object)
    started = Signal(object)
    snapshot = Signal(object)
    failed = Signal(str)
    finished = Signal()

    # Runs in progress in this process, across all widgets: one at a time, since two runs would share
    # the same CPU cores or GPU and both crawl.
    _active: ClassVar[list[RunController]] = []

    def __init__(self, alive: Callable[[], bool] = lambda: True):
        self._alive = alive
        self._detached = False
        self.status = RunStatus.IDLE
        self.description = ""
        self.worker = None
        self.run = None  # the engine's RestorationRun, once it is built
        self.stop_requested = False
        self.total = 0  # nominal iterations of the run: planes × iterations
        self.steps = 0  # nominal iterations done (the total once the final snapshot arrived)
        self._completed = False
        self._activity = None  # the run's bar in napari's activity dock
        self._routes = {RUN: self._on_run, SNAPSHOT: self._on_snapshot, FAILED: self._on_failed,
                        _END: self._on_end}

    @classmethod
    def active(cls) -> tuple[RunController, ...]:
        """The controllers whose run has not ended yet, in this process."""
        return tuple(cls._active)

    @property
    def busy(self) -> bool:
        return self.status in (RunStatus.RUNNING, RunStatus.STOPPING)

    def refusal(self) -> str | None:
        """Why a run cannot start now ('… is still running'), or None when it can."""
        if not self._active:
            return None
        return (f"napari-dip: {self._active[0].description} is still running; stop it first "
                "(one run at a time: two would share the same processor and both crawl)")

    def start(self, description: str, image, options: RestoreOptions):
        """Run the restoration of ``image`` with ``options`` in a thread worker (synchronously with
        NAPARI_DIP_SYNC)."""
        message = self.refusal()
        if message is not None:
            raise RunRefused(message)
        self.description = description
        self.run = self.worker = None
        self.stop_requested = self._completed = False
        self.total = self.steps = 0
        self._active.append(self)
        self._set_status(RunStatus.RUNNING)
        deliver = InOrder(self._route)
        self.worker = start(restoration_steps, image, options, on_yielded=deliver,
                            on_finished=lambda: self._on_thread_end(deliver))

    def stop(self):
        """The engine finishes the current iteration and sends its final, best snapshot."""
        if not self.busy or self.stop_requested:
            return
        self.stop_requested = True
        if self.run is not None:
            self.run.stop()
        self._set_status(RunStatus.STOPPING)

    def abort(self, *_):
        """The widget is going away (its viewer closes, the app quits): stop, and send nothing more."""
        self._detached = True
        if self.busy:
            self.stop()
            if self.worker is not None:
                self.worker.quit()

    # ----------------------------------------------------------------------------------------------

    def _emit(self, signal, *args):
        if not self._detached and self._alive():
            signal.emit(*args)

    def _set_status(self, status: RunStatus):
        self.status = status
        self._emit(self.status_changed, status)

    def _route(self, item):
        kind, payload = item
        self._routes[kind](payload)

    def _on_run(self, run):
        self.run = run
        if self.stop_requested:  # Stop came before the engine had built the run
            run.stop()
        self.total = run.planes * run.iterations
        self._activity = progress(total=self.total, desc=f"napari-dip: {self.description}")
        self._emit(self.started, run)

    def _on_snapshot(self, snapshot):
        nominal = self.total if snapshot.done else snapshot.plane * self.run.iterations + snapshot.iteration
        step, self.steps = max(nominal - self.steps, 0), nominal
        self._completed = self._completed or snapshot.done
        if self._activity is not None:
            self._activity.update(step)
        self._emit(self.snapshot, snapshot)

    def _on_failed(self, message: str):
        self._emit(self.failed, message)

    def _on_thread_end(self, deliver):
        # the books first, outside the ordered delivery: a subscriber's error must not keep the run listed
        if self in self._active:
            self._active.remove(self)
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        deliver((_END, None))

    def _on_end(self, _):
        self._set_status(RunStatus.DONE if self._completed else RunStatus.FAILED)
        self._emit(self.finished)


_END = "end"  # the controller's own last item: the worker's thread has ended


class InOrder:
    """Hands worker items to ``handle`` one at a time, in order.

    Showing an item calls napari (adding a layer, moving a progress bar), which
    may process Qt events and so deliver the next item in the middle of this
    one; the next item waits here instead.
    """

    def __init__(self, handle):
        self.handle = handle
        self.waiting: list = []
        self.busy = False

    def __call__(self, item):
        self.waiting.append(item)
        if self.busy:
            return
        self.busy = True
        try:
            while self.waiting:
                self.handle(self.waiting.pop(0))
        finally:
            self.busy = False
