"""A classical estimate mixed into a denoising student's result, r + w·(s − r), with the weight w that the judge
crop's hidden pixels choose, as the engine mixes one into DIP's iterates (core/mixing.py). Where the student
falls short of block matching (textured photos, real noise) the mix takes the better of the two; where the
student is the better (smooth content) w comes out near 1 and nothing more runs.

Super-resolution was tried with its cubic spline: the weight, which sees the two only through the downsampling,
came out at 1.00 on a photo where the student is 1.07 dB below the spline (docs/benchmarks.md), so it is not
offered."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core import reference

# a network weight above this moves the result by under 5 % of the two estimates' difference: not worth a
# whole-frame block matching (2.5 minutes at 2048² on 2 cores)
SKIP_ABOVE = 0.95


def classical_for(spec, noise_estimate: dict, planes: np.ndarray) -> tuple[str, Callable] | None:
    """(its name, the classical estimate: planes (C, H, W, normalised) → estimate) for the job, the noise measured
    on ``planes`` (the judge crop's) where the model needs it; None where there is none to mix: not denoising
    (deconvolution's Richardson–Lucy stays far below its student), a volume, radar speckle (its estimate lives in
    the likelihood, on the logarithm), or no ``bmnd``."""
    if spec.name != "denoise" or spec.layout.spatial_dims == 3 or spec.noise == "speckle" \
            or not reference.block_matching_available():
        return None
    sigma, photons = None, noise_estimate.get("photons_at_1")
    if spec.noise == "gaussian":
        from .core.quality import gaussian_noise  # torch: only once a run has started (the widgets import this)

        sigma = gaussian_noise(planes)[0]
    return "block-matching", reference.under_noise(reference.block_matching, spec.noise, sigma, photons)


def mix_weight(student, estimate: Callable, planes: np.ndarray, hidden: np.ndarray) -> float:
    """The weight w in [0, 1] of the student in r + w·(s − r) that predicts the judge crop's hidden pixels best,
    from a student's result and a classical estimate that neither saw them (the hidden pixels filled by their
    neighbours' mean in the input of both): there the noise is independent of both, so least squares against
    the noisy pixels is least squares against the truth plus a constant. ``student``: planes → result."""
    filled = reference.neighbour_mean_fill(np.where(hidden, 0.0, planes), hidden)
    s, r = student(filled), estimate(filled)
    at = np.broadcast_to(hidden, planes.shape)
    difference, residual = (s - r)[at], (planes - r)[at]
    return float(np.clip(np.dot(difference, residual) / max(float(np.dot(difference, difference)), 1e-12), 0.0, 1.0))


def mixed(student_result: np.ndarray, estimate: Callable, planes: np.ndarray, weight: float) -> np.ndarray:
    """R + w·(s − r) for a plane's student result, r its classical estimate from ``planes``."""
    r = estimate(planes)
    return (r + weight * (student_result - r)).astype(np.float32)
