"""Judging each iterate at the held-out pixels, without a ground truth (core/quality.py has the statistics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .mixing import ReferenceMix
from .noise import masked_mean

if TYPE_CHECKING:
    from .loop import Measurement, Problem


class HeldOutScore:
    """Judges each iterate at the held-out pixels (core/quality.py), mixed with a classical estimate if there is
    one; gives the estimated error of the result now and of the kept one."""

    def __init__(self, problem: Problem, measurement: Measurement, device: torch.device):
        self.measurement = measurement
        scored = measurement.scored
        variance = measurement.variance
        # the mean noise variance at the held-out pixels: fixed for the run, read once
        self.variance_term = None
        if variance is not None:
            self.variance_term = float(masked_mean(variance, scored)) if isinstance(variance, torch.Tensor) \
                else float(variance)
        self.mixer = None
        if problem.reference is not None:
            self.mixer = ReferenceMix(problem.reference.to(device),
                                      measurement.operator(problem.reference_scored.to(device)),
                                      measurement.target, scored, shrink=measurement.noise.shrink_mix)
        self.score = self.errors = None

    def judge(self, current: torch.Tensor) -> torch.Tensor:
        """Score ``current`` (kept as ``score``, on the device, with the squared ``errors`` it averages); returns
        the iterate judged: mixed, or itself (the score: core/noise.py NoiseModel.heldout_score)."""
        m = self.measurement
        with torch.no_grad():
            measured = m.operator(current)
            self.errors = m.noise.heldout_errors(measured, m.target)
            self.score = masked_mean(self.errors, m.scored)
            if self.mixer is not None:
                # the network's own held-out error picks the iterate; the mix is the result at that iterate
                current = self.mixer.mix(current, measured)
        return current

    def keep(self, improved: torch.Tensor) -> None:
        if self.mixer is not None:
            self.mixer.keep(improved)

    def judged(self, latest: torch.Tensor) -> torch.Tensor:
        return self.mixer.current if self.mixer is not None and self.mixer.current is not None else latest

    def scores(self, best_score: float | None):
        """(estimated MSE now, estimated MSE of the kept iterate, raw held-out error now)."""
        if self.score is None:
            return None, None, None
        if self.mixer is not None:  # the estimate is of the mixed result
            raw, best = self.mixer.error(), self.mixer.error(best=True)
        else:
            raw, best = float(self.score), best_score
        if self.variance_term is None:
            return None, None, raw
        return raw - self.variance_term, None if best is None else best - self.variance_term, raw

    def mix_weights(self) -> dict:
        return {} if self.mixer is None else {"mix_weight": self.mixer.weight(),
                                              "best_mix_weight": self.mixer.weight(best=True)}
