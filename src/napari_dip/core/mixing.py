"""Mixing a classical estimate into each iterate, with the weight that the held-out pixels choose
(core/reference.py makes the classical estimates)."""

from __future__ import annotations

import torch

from .noise import masked_mean


class ReferenceMix:
    """Mixes each iterate x with a classical estimate r as r + w·(x − r), w in [0, 1] least-squares at the held-out
    pixels (core/reference.py says why). ``reference_measured`` is A(r') for the r' made without the held-out
    pixels; the mixed iterate's held-out error is kept beside its weight, for the iterate the loop keeps."""

    def __init__(self, reference, reference_measured, target, scored, shrink: bool = False):
        self.reference = reference
        self.reference_measured = reference_measured
        self.residual = target - reference_measured  # what the reference misses, at the measurements
        self.scored = scored
        # ``shrink``: the weight is pulled towards the reference by its own uncertainty, w·(1 − s.e.² / w²)⁺ (one
        # parameter's positive-part James–Stein rule), where the noise at the held-out pixels dwarfs the
        # difference between the two estimates (speckle: core/noise.py SpeckleNoise)
        self.shrink = shrink
        self.count = scored.expand_as(target).sum().clamp_min(1) if shrink else None
        self.current = None
        self._now = None  # (weight, held-out error) of the latest iterate, 0-d tensors on the device
        self._kept = None

    def mix(self, iterate, iterate_measured):
        """The mixed iterate (kept as ``current``); weight and held-out error stay on the device."""
        difference = iterate_measured - self.reference_measured
        spread = masked_mean(difference * difference, self.scored).clamp_min(1e-12)
        weight = (masked_mean(difference * self.residual, self.scored) / spread).clamp(0.0, 1.0)
        if self.shrink:
            variance = masked_mean((weight * difference - self.residual) ** 2, self.scored) / (self.count * spread)
            weight = weight * (1.0 - variance / (weight * weight).clamp_min(1e-12)).clamp(0.0, 1.0)
        error = masked_mean((weight * difference - self.residual) ** 2, self.scored)
        self._now = torch.stack([weight, error])
        self.current = self.reference + weight * (iterate - self.reference)
        return self.current

    def keep(self, improved):
        """Remember the weight and error of the iterate that the stopping rule keeps (``improved``: 0-d bool)."""
        self._kept = self._now if self._kept is None else torch.where(improved, self._now, self._kept)

    def weight(self, best: bool = False) -> float | None:
        value = self._kept if best else self._now
        return None if value is None else float(value[0])

    def error(self, best: bool = False) -> float | None:
        value = self._kept if best else self._now
        return None if value is None else float(value[1])
