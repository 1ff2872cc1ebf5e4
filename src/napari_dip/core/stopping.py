"""The stopping rules: which iterate a fit keeps and when it ends (the held-out automatic stop, ES-WMV, or none)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .presets import Settings
from .quality import AutoStop, RunningMinimum

if TYPE_CHECKING:
    from .heldout import HeldOutScore
    from .loop import KeptIterate, KeptNetwork, NetworkFit, Schedule


class MovingVariance:
    """Variance of the last ``window`` iterates, averaged over pixels.

    Running sums make each update O(pixels); they are recomputed exactly once per
    window so float rounding cannot accumulate.
    """

    def __init__(self, window: int):
        self.window = window
        self.buffer: list[torch.Tensor] = []
        self.sum = None
        self.sum_sq = None
        self.count = 0

    def update(self, x: torch.Tensor) -> torch.Tensor | None:
        """Add an iterate; once the window is full, its variance as a 0-d tensor on the iterate's device (no host
        read, so that a GPU is not stalled every iteration)."""
        x = x.detach().float()
        self.count += 1
        if self.sum is None:
            self.sum = torch.zeros_like(x)
            self.sum_sq = torch.zeros_like(x)
        self.buffer.append(x)
        self.sum += x
        self.sum_sq += x * x
        if len(self.buffer) > self.window:
            old = self.buffer.pop(0)
            self.sum -= old
            self.sum_sq -= old * old
        if self.count % self.window == 0:
            stack = torch.stack(self.buffer)
            self.sum = stack.sum(0)
            self.sum_sq = (stack * stack).sum(0)
        if len(self.buffer) < self.window:
            return None
        mean = self.sum / self.window
        return (self.sum_sq / self.window - mean * mean).clamp_min(0).mean()


class EarlyStopping:
    """ES-WMV (Wang et al., TMLR 2023): stop when the moving variance of the iterates
    has not reached a new minimum for ``patience`` iterations; the iterate at the
    minimum is the result.
    """

    def __init__(self, window: int = 100, patience: int = 1000):
        self.variance = MovingVariance(window)
        self.patience = patience
        self.best_variance = math.inf
        self.best_iteration: int | None = None

    def should_stop(self, iteration: int) -> bool:
        return self.best_iteration is not None and iteration - self.best_iteration >= self.patience

    # the minimum and its iteration stay tensors on the device, so that a GPU is not stalled by a host read every
    # iteration; ``sync`` brings ``best_iteration`` to the host
    _minimum = None

    def update(self, iteration: torch.Tensor, iterate: torch.Tensor) -> torch.Tensor | None:
        """Record an iterate; returns a 0-d bool tensor, True when it sets a new variance minimum (keep it as the
        best). ``iteration`` is a 0-d integer tensor on the iterate's device."""
        var = self.variance.update(iterate)
        if var is None:
            return None
        if self._minimum is None:
            self._minimum = RunningMinimum()
        return self._minimum.update(iteration, var)

    def sync(self) -> None:
        """Copy the device-side minimum to ``best_variance`` and ``best_iteration`` (one host read)."""
        found = self._minimum.read() if self._minimum is not None else None
        if found is not None:
            self.best_variance, self.best_iteration = found


class StoppingRule:
    """Chooses the kept iterate and when the run ends. ``observe`` sees each iterate after its step and returns the
    stop reason once the run should end; decisions are read on the host every ``sync_every`` iterations and at
    snapshots only. ``tracker`` (AutoStop or EarlyStopping) holds the minimum on the device; None: no rule."""

    tracker = None
    best_score: float | None = None
    lowest_error_iteration: int | None = None  # held-out rule: the minimum's iteration (the kept one may be later)

    def observe(self, iteration: int, counter, output, latest, judged, score, check: bool) -> str | None:
        return None

    def finish(self) -> None:
        if self.tracker is not None:
            self.tracker.sync()

    @property
    def chosen_iteration(self) -> int | None:
        return self.tracker.best_iteration if self.tracker is not None else None


class HeldOutStop(StoppingRule):
    """Automatic stopping: keep the iterate with the lowest held-out error; stop when it has not improved for the
    patience (core/quality.py AutoStop), counted from the full-resolution stage at the earliest."""

    def __init__(self, settings: Settings, scorer: HeldOutScore, kept: KeptIterate, full_resolution_from: int,
                 kept_network: KeptNetwork | None = None):
        self.auto = self.tracker = AutoStop(settings.stop_patience, settings.stop_patience_growth,
                                            settings.stop_margin)
        self.scorer, self.kept, self.full_resolution_from = scorer, kept, full_resolution_from
        self.kept_network = kept_network  # with warm starts: the network at the kept iterate, for the next unit

    def observe(self, iteration, counter, output, latest, judged, score, check):
        improved = self.auto.update(counter, score, self.scorer.errors, self.scorer.measurement.scored)
        self.scorer.keep(improved)
        self.kept.keep(judged, improved)
        if self.kept_network is not None:
            self.kept_network.keep(improved)
        if check:
            self.auto.sync()
            if self.auto.should_stop(iteration, full_resolution_from=self.full_resolution_from):
                return (f"automatic stop: the held-out error was lowest at iteration {self.auto.best_iteration} and "
                        f"did not improve for {iteration - self.auto.best_iteration} iterations")
        return None

    def finish(self) -> None:
        super().finish()
        self.lowest_error_iteration = self.auto.best_iteration

    def kept_note(self) -> str:
        """Why the kept iterate is not the lowest-error one, for the stop reason ('' when it is)."""
        kept, lowest = self.auto.kept_iteration, self.auto.best_iteration
        if kept is None or kept == lowest:
            return ""
        errors = "standard error" if self.auto.margin == 1 else "standard errors"
        return f"; kept iteration {kept}, as good as iteration {lowest} within {self.auto.margin:g} {errors}"

    @property
    def chosen_iteration(self) -> int | None:
        return self.auto.kept_iteration

    @property
    def best_score(self):
        return self.auto.kept_score if math.isfinite(self.auto.kept_score) else None


class VarianceStop(StoppingRule):
    """ES-WMV: keep the iterate at the minimum of the iterates' moving variance, at full resolution only."""

    def __init__(self, settings: Settings, kept: KeptIterate, schedule: Schedule, fitting: NetworkFit):
        self.stopper = self.tracker = EarlyStopping(settings.es_window, settings.es_patience)
        self.kept, self.schedule, self.fitting = kept, schedule, fitting

    def observe(self, iteration, counter, output, latest, judged, score, check):
        if self.schedule.coarse(self.fitting):
            return None
        counter.fill_(iteration)
        improved = self.stopper.update(counter, output)
        if improved is not None:
            self.kept.keep(latest, improved)
        if check:
            self.stopper.sync()
            if self.stopper.should_stop(iteration):
                return f"early stopping (ES-WMV): best at iteration {self.stopper.best_iteration}"
        return None
