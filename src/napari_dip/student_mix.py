"""A classical estimate mixed into a denoising student's result, r + w·(s − r), with the weight w that the judge
crop's hidden pixels choose, as the engine mixes one into DIP's iterates (core/mixing.py). Where the student
falls short of block matching (textured photos, real noise, radar speckle) the mix takes the better of the two.
A whole-frame block matching is not cheap (2.5 minutes at 2048² on 2 cores, 7 minutes for 32 planes of 512²), so
it runs only where the same hidden pixels predict that the mix gains at least MIN_GAIN_DB over the student alone;
there the judge also weighs the mix against DIP, and the mix may let a student pass that alone would not.

Super-resolution was tried with its cubic spline: the weight, which sees the two only through the downsampling,
came out at 1.00 on a photo where the student is 1.07 dB below the spline (docs/benchmarks.md), so it is not
offered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .core import reference

# a predicted gain below this is not worth a whole-frame block matching: on the 32 × 512² time-lapse a weight of
# 0.90 cost 7 minutes and changed the result by −0.04 dB (docs/benchmarks.md)
MIN_GAIN_DB = 0.1


@dataclass(frozen=True)
class Classical:
    """A classical estimate to mix in: its name; ``estimate(planes, hidden)``, planes (C, H, W) in the network's
    units → the estimate, ``hidden`` (1, H, W, or None) pixels whose values it must not use (filled by their
    neighbours' mean in ``planes``); and the noise variance per pixel in those units given the signal there."""

    name: str
    estimate: Callable
    noise_variance: Callable


@dataclass(frozen=True)
class MixWeight:
    """The student's weight w in r + w·(s − r); the gain over the student alone that the hidden pixels predict for
    it, in dB (0 where the mix cannot gain; inf where the student's own error measures as none); and the mixed
    estimate's squared error at the hidden pixels less the teacher's there (the noise cancels from it), for the
    judge."""

    weight: float
    predicted_gain_db: float
    excess_over_teacher: float | None = None
    excess_standard_error: float | None = None


def classical_for(spec, noise_estimate: dict, planes: np.ndarray, span: float = 1.0) -> Classical | None:
    """The classical estimate for the job, the noise measured on ``planes`` (the judge crop's) where the model
    needs it (``span``: the log normalisation's, for speckle); None where there is none to mix: not denoising
    (deconvolution's Richardson–Lucy stays far below its student), a volume, or no ``bmnd``."""
    if spec.name != "denoise" or spec.layout.spatial_dims == 3 or not reference.block_matching_available():
        return None
    if spec.noise == "speckle":  # block matching inside the speckle likelihood, on the logarithm (as the engine)
        from .core.speckle import log_moments

        looks = float(noise_estimate["looks"])
        log_variance = log_moments(looks)[1] / span ** 2

        def in_likelihood(x, hidden=None):
            known = np.ones((1,) + x.shape[1:], np.float32) if hidden is None else (1.0 - hidden).astype(np.float32)
            return reference.speckle_block_matching(x, known, looks, span, reference.block_matching)

        return Classical("block matching in the speckle likelihood", in_likelihood,
                         lambda signal: np.full_like(signal, log_variance))
    sigma, photons = None, noise_estimate.get("photons_at_1")
    if spec.noise == "gaussian":
        from .core.quality import gaussian_noise  # torch: only once a run has started (the widgets import this)

        sigma = gaussian_noise(planes)[0]
        variance = lambda signal: np.full_like(signal, sigma ** 2)  # noqa: E731
    else:  # photon counts, c / photons in the network's units: the variance is the mean over the counts at 1
        variance = lambda signal: np.maximum(signal, 0.0) / photons  # noqa: E731
    under = reference.under_noise(reference.block_matching, spec.noise, sigma, photons)
    return Classical("block-matching", lambda x, hidden=None: under(x), variance)


def biharmonic() -> Classical:
    """Inpainting's classical estimate: the biharmonic fill of the pixels ``hidden`` marks (the missing ones), as the
    engine mixes it into DIP where the gaps are scattered; it stands alone where DIP gave its network no weight
    (amortised.py), and is not mixed into an inpainting student."""
    def fill(x, hidden=None):
        return x if hidden is None or not hidden.any() else reference.biharmonic_fill(x, 1.0 - hidden)

    return Classical("biharmonic fill", fill, lambda signal: np.zeros_like(signal))


def mix_weight(student, classical: Classical, planes: np.ndarray, hidden: np.ndarray,
               teacher: np.ndarray | None = None) -> MixWeight:
    """The weight w in [0, 1] of the student in r + w·(s − r) that predicts the judge crop's hidden pixels best,
    from a student's result and a classical estimate that neither saw them (the hidden pixels filled by their
    neighbours' mean in the input of both), and the gain it predicts. There the noise is independent of both, so
    least squares against the noisy pixels is least squares against the truth plus a constant; the mix's gain
    over the student, (1 − w)²·|s − r|², is then measured without the noise, and the student's own error is its
    distance to the noisy pixels less the noise variance. ``student``: planes → result; ``teacher``: DIP's result
    on the crop (blind to the hidden pixels too), to measure the mixed estimate against."""
    filled = reference.neighbour_mean_fill(np.where(hidden, 0.0, planes), hidden)
    s, r = student(filled), classical.estimate(filled, hidden)
    at = np.broadcast_to(hidden, planes.shape)
    difference, residual = (s - r)[at].astype(np.float64), (planes - r)[at].astype(np.float64)
    spread = float(np.dot(difference, difference))
    weight = float(np.clip(np.dot(difference, residual) / max(spread, 1e-12), 0.0, 1.0))
    excess = excess_error = None
    if teacher is not None:
        mixed_error = (residual - weight * difference) ** 2
        terms = mixed_error - (planes - teacher)[at].astype(np.float64) ** 2
        # hidden pixels come in 2 × 2 blocks whose terms share noise: count the blocks (as the judge does)
        excess, excess_error = float(terms.mean()), float(terms.std() / np.sqrt(max(terms.size / 4, 1)))
    student_error = float(np.mean((planes - s)[at] ** 2) - np.mean(classical.noise_variance(r[at])))
    gain = (1.0 - weight) ** 2 * spread / difference.size
    if gain <= 0.0:
        return MixWeight(weight, 0.0, excess, excess_error)
    if student_error <= gain:  # the noise estimate leaves the student no error to take away: nothing to predict
        return MixWeight(weight, float("inf"), excess, excess_error)
    return MixWeight(weight, float(10 * np.log10(student_error / (student_error - gain))), excess, excess_error)


def mixed(student_result: np.ndarray, estimate: Callable, planes: np.ndarray, weight: float) -> np.ndarray:
    """R + w·(s − r) for a plane's student result, r its classical estimate from ``planes``."""
    r = estimate(planes, None)
    return (r + weight * (student_result - r)).astype(np.float32)
