"""Quality without a ground truth: held-out measurements, automatic stopping, noise levels.

A random few per cent of the measured pixels are left out of the data term. The
network never sees their noise, so the squared error of the result there is, on
average, the true squared error plus the noise variance:

    E[(A(x̂) − y)²] = (A(x̂) − A(x))² + Var(y)   at a held-out pixel.

Subtracting an estimate of the noise variance (σ² for Gaussian noise; y itself
for Poisson counts, since E[y] = Var(y)) gives an unbiased estimate of the mean
squared error of the result in the measurement's space, for every task: at
known pixels for denoising and inpainting, at the low-resolution pixels for
super-resolution, at the blurred pixels for deconvolution. This is the idea
behind Noise2Self and the "self-validation" early stopping of DIP
(Li et al., 2021). The variance term is the same at every iteration, so the
iteration with the lowest held-out error is the best estimated one whatever
the noise level; the noise level only matters for the absolute figure.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def heldout_mask(spatial: tuple, fraction: float, seed: int, known: torch.Tensor | None = None) -> torch.Tensor:
    """1 at a random ``fraction`` of the measured pixels (all channels of a pixel together), else 0.

    Shape (1, 1, *spatial), float32. Pixels that are not measured (``known`` == 0
    in every channel) are never chosen.
    """
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"the held-out fraction must lie in (0, 0.5); got {fraction}")
    generator = torch.Generator().manual_seed(seed + 7919)  # its own stream: the weights' draws stay as they were
    chosen = torch.rand((1, 1, *spatial), generator=generator) < fraction
    if known is not None:
        measured = known.detach().cpu().amax(dim=1, keepdim=True) > 0
        chosen = chosen & measured.expand_as(chosen)
    return chosen.float()


def estimated_psnr(mse: float, peak: float = 1.0) -> float | None:
    """PSNR in dB for an estimated MSE; None when the estimate is not positive (too noisy to say).

    >>> estimated_psnr(0.001), estimated_psnr(-1e-5) is None
    (30.0, True)
    """
    if mse is None or not math.isfinite(mse) or mse <= 0:
        return None
    return 10.0 * math.log10(peak * peak / mse)


class RunningMinimum:
    """The minimum of a value over iterations and where it came, kept on the device (no host read per update)."""

    def __init__(self):
        self._best = None
        self._at = None

    def update(self, iteration: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Record a value (0-d tensors); returns a 0-d bool tensor, True on a new minimum."""
        if self._best is None:
            self._best = torch.full_like(value, math.inf)
            self._at = torch.zeros_like(iteration)
        improved = value < self._best
        self._best = torch.where(improved, value, self._best)
        self._at = torch.where(improved, iteration, self._at)
        return improved

    @property
    def value(self) -> torch.Tensor | None:
        """The minimum so far as a 0-d tensor on the device (inf before a finite value; None before any)."""
        return self._best

    @property
    def at(self) -> torch.Tensor | None:
        """The minimum's iteration as a 0-d tensor on the device."""
        return self._at

    def read(self) -> tuple[float, int] | None:
        """(minimum, its iteration) on the host, one read; None before the first finite value."""
        if self._best is None:
            return None
        best, at = torch.stack([self._best.double(), self._at.double()]).tolist()
        return (best, int(at)) if math.isfinite(best) else None


class AutoStop:
    """Stop when the held-out error has clearly passed its minimum, and keep the latest iterate that the held-out
    pixels cannot tell from the best.

    The run ends when no new minimum has come for ``patience`` iterations,
    where patience = max(``min_patience``, ``growth`` × the minimum's
    iteration): a late optimum needs a longer look past it, since the curves
    get flatter as the run goes on. In a coarse-to-fine run the patience
    counts from the start of the full-resolution stage at the earliest: the
    plateau of a coarse stage says nothing about the full-resolution fit to come.

    The kept iterate: the minimum's, unless a later one's error exceeds the minimum by at most ``margin``
    standard errors of that difference (its spread over the held-out pixels, over the square root of their
    number). With few held-out pixels (a 32² measurement has about 100) the minimum is often an early, coarse
    iterate that won by chance; later ones have fitted more of the measurement (docs/quality.md).
    """

    def __init__(self, min_patience: int = 150, growth: float = 0.5, margin: float = 0.0):
        if min_patience < 1:
            raise ValueError(f"the stopping patience must be at least 1 iteration; got {min_patience}")
        if growth < 0:
            raise ValueError(f"the patience growth must be ≥ 0; got {growth}")
        if margin < 0:
            raise ValueError(f"the stopping margin must be ≥ 0 standard errors; got {margin}")
        self.min_patience, self.growth, self.margin = min_patience, growth, margin
        self.best_score = self.kept_score = math.inf  # the minimum, and the kept iterate's score (host copies)
        self.best_iteration: int | None = None
        self.kept_iteration: int | None = None
        self._minimum = RunningMinimum()
        self._best_errors = self._kept = self._kept_at = self._count = None  # on the device

    def update(self, iteration: torch.Tensor, score: torch.Tensor, errors: torch.Tensor | None = None,
               scored: torch.Tensor | None = None) -> torch.Tensor:
        """Record a score (0-d tensors) and, for the margin, the squared errors it averages at the pixels
        ``scored`` selects; returns a 0-d bool tensor, True when this iterate is now the kept one. No host read."""
        from .noise import masked_mean

        if self._kept is None:
            self._kept = torch.full_like(score, math.inf)
            self._kept_at = torch.zeros_like(iteration)
        new_minimum = keep = self._minimum.update(iteration, score)
        if self.margin > 0 and errors is not None:
            errors = errors.detach()
            if self._best_errors is None:
                self._best_errors = errors.clone()
                # the held-out pixels are fixed for the run: count them once
                self._count = (scored.sum() if scored is not None
                               else torch.tensor(float(errors[0, 0].numel()))).clamp_min(2)
            difference = errors - self._best_errors
            mean = masked_mean(difference, scored)
            spread = (masked_mean(difference * difference, scored) - mean * mean).clamp_min(0)
            keep = keep | (score <= self._minimum.value + self.margin * torch.sqrt(spread / (self._count - 1)))
            self._best_errors = torch.where(new_minimum, errors, self._best_errors)
        self._kept = torch.where(keep, score, self._kept)
        self._kept_at = torch.where(keep, iteration, self._kept_at)
        return keep

    def sync(self) -> None:
        """Bring the minimum, the kept iterate and their iterations to the host (one read)."""
        if self._kept is None:
            return
        best, best_at, kept, kept_at = torch.stack([self._minimum.value.double(), self._minimum.at.double(),
                                                    self._kept.double(), self._kept_at.double()]).tolist()
        if math.isfinite(best):
            self.best_score, self.best_iteration = best, int(best_at)
            self.kept_score, self.kept_iteration = kept, int(kept_at)

    def patience(self) -> int:
        return max(self.min_patience, int(self.growth * (self.best_iteration or 0)))

    def should_stop(self, iteration: int, full_resolution_from: int = 0) -> bool:
        """True once the patience has run out since the minimum, or since the full-resolution stage began if
        that came later: a coarse-to-fine run is never judged before its full-resolution fit has had a chance."""
        if self.best_iteration is None:
            return False
        return iteration - max(self.best_iteration, full_resolution_from) >= self.patience()


# ---------------------------------------------------------------------------------------------
# noise levels


def estimate_gaussian_sigma(planes: np.ndarray, known: np.ndarray | None = None) -> float:
    """Gaussian noise σ of (P, C, *spatial) planes, in their units, by the wavelet median rule.

    Donoho's estimate: the median absolute value of the finest diagonal Haar
    wavelet band, over 0.6745 (the median of |N(0, 1)|). Over 2×2 blocks
    (a − b − c + d) / 2 has the noise's σ and cancels flat and linear signal.
    Blocks that touch a missing pixel are left out. It overestimates slightly on
    strongly textured images, where detail leaks into the finest band.
    """
    return gaussian_noise(planes, known)[0]


def gaussian_noise(planes: np.ndarray, known: np.ndarray | None = None) -> tuple[float, float]:
    """(σ̂ as :func:`estimate_gaussian_sigma` gives it, the relative standard error of σ̂²
    (:func:`median_variance_relative_se`)), from one pass over the diagonal details."""
    diagonal = diagonal_detail(planes, known)
    if diagonal.size == 0:
        return 0.0, median_variance_relative_se(0)
    return float(np.median(np.abs(diagonal)) / 0.6745), median_variance_relative_se(diagonal.size)


def median_variance_relative_se(coefficients: int) -> float:
    """The relative standard error of σ̂² from the median absolute value of ``coefficients`` Gaussian wavelet
    details (σ̂ = median|d| / 0.6745): the sample median's variance 1 / (4·n·f(m)²) at the half-normal's median
    m = 0.6745σ, where f(m) = 2φ(0.6745)/σ, gives var(σ̂)/σ² = 1.36/n, so σ̂² is within 2·√(1.36/n) = 2.33/√n.

    >>> round(median_variance_relative_se(4096), 3)  # a 128² plane: 64² diagonal details
    0.036
    """
    return 2.0 * math.sqrt(1.0 / (4.0 * (2.0 * 0.31777) ** 2 * 0.6745 ** 2)) / math.sqrt(max(coefficients, 1))


def diagonal_detail(x: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """The finest diagonal Haar details ``(a − b − c + d) / 2`` of the 2×2 blocks of ``x`` (…, Y, X), float64; with
    ``known`` (nonzero = measured, broadcast to ``x``) only those of blocks whose four pixels are measured, flat."""
    x = np.asarray(x, np.float64)
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    x = x[..., :h, :w]
    diagonal = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    if known is not None:
        k = np.broadcast_to(np.asarray(known)[..., :h, :w] > 0, x.shape)
        whole = k[..., 0::2, 0::2] & k[..., 0::2, 1::2] & k[..., 1::2, 0::2] & k[..., 1::2, 1::2]
        diagonal = diagonal[whole]
    return diagonal


def estimate_camera_gain_offset(image: np.ndarray, bins: int = 16) -> tuple[float, float]:
    """Gain (ADU per photon) and effective offset (ADU) of Poisson-Gaussian camera data.

    A camera's pixel values are ``y = gain · Poisson(λ) + offset + N(0, σ_read²)``,
    so their variance is linear in their mean: ``Var = gain · (mean − offset) + σ_read²``
    (Foi et al., 2008). The fit of that line over the image gives the gain (its
    slope) and the *effective offset* ``offset − σ_read² / gain`` (where the line
    meets zero variance): (y − effective offset) / gain is then approximately a
    Poisson count (the shifted-Poisson approximation), which is all the
    Poisson model needs.

    Local means come from a 3×3 mean filter; local variances from the residual
    against the mean of the 4 neighbours (variance 5/4 of the noise's where the
    signal is locally flat), binned by mean with a median per bin so that edges
    and texture do not count.
    """
    from .noise_fit import mean_variance_points

    points = mean_variance_points(image, bins)
    if points is None:
        raise ValueError("the image has too few distinct intensities to estimate a camera gain; pass gain= and offset=")
    centres, levels, counts = points
    if len(centres) < 2:
        raise ValueError("the image is too small to estimate a camera gain; pass gain= and offset=")
    slope, intercept = np.polyfit(centres, levels, 1, w=np.sqrt(counts))
    if slope <= 0:
        raise ValueError("the image's variance does not grow with its intensity, as photon counts' does; "
                         "pass gain= and offset=, or use noise='gaussian'")
    return float(slope), float(-intercept / slope)
