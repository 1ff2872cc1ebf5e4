"""Which noise an image has: the fit of its variance against its mean, and the model chosen from it.

Camera and photon-counting data have a variance that grows with the signal, ``Var = a · mean + b`` (Poisson-Gaussian:
``a`` the gain, ``b`` the read noise's variance less ``a`` times the dark offset; Foi et al., 2008); additive noise
has a flat one (``a = 0``). :func:`fit_noise` fits that line to an image, per channel, and chooses the Gaussian
model when the variance stays within a factor :data:`SIGNAL_DEPENDENT` across the image's intensities, else the
Poisson-Gaussian one. It is what ``noise="auto"`` runs (not the default: low-noise images with fine bright
structure can be called Poisson-Gaussian, docs/benchmarks.md § Real microscope noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# the variance at bright pixels over the variance at dark ones above which the noise is called signal-dependent
SIGNAL_DEPENDENT = 1.5


def mean_variance_points(image: np.ndarray, bins: int = 16):
    """(local means, noise variances, pixels) per intensity bin of ``image`` (…, Y, X), or None when the image
    has too few distinct intensities to bin (the camera gain estimate, core/quality.py).

    Local means come from a 3×3 mean filter; local variances from the residual against the mean of the 4
    neighbours (variance 5/4 of the noise's where the signal is locally flat), binned by mean with a median per
    bin so that edges and texture do not count.
    """
    from scipy import ndimage

    x = np.asarray(image, np.float64)
    slices = x.reshape(-1, *x.shape[-2:])
    means, variances = [], []
    neighbours = np.array([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]])
    for s in slices[:: max(1, len(slices) // 16)]:
        residual = s - ndimage.convolve(s, neighbours, mode="reflect")
        local_mean = ndimage.uniform_filter(s, 3, mode="reflect")
        means.append(local_mean[1:-1, 1:-1].ravel())
        variances.append(residual[1:-1, 1:-1].ravel() ** 2 / 1.25)
    return _binned(np.concatenate(means), np.concatenate(variances), bins)


def haar_points(image: np.ndarray, bins: int = 16, usable: np.ndarray | None = None):
    """Like :func:`mean_variance_points`, from 2×2 blocks: the block's mean, and the square of its diagonal
    detail (a − b − c + d) / 2, whose variance is the noise's and which edges and texture reach less than the
    4-neighbour residual (on a grid of textured photos it called Gaussian noise signal-dependent less often).
    ``usable`` (boolean, like ``image``) leaves out the blocks that hold an unusable pixel (clipped or missing)."""
    x = np.asarray(image, np.float64)
    slices = x.reshape(-1, *x.shape[-2:])
    keep = None if usable is None else np.asarray(usable, bool).reshape(slices.shape)
    h, w = (slices.shape[1] // 2) * 2, (slices.shape[2] // 2) * 2
    a, b, c, d = (slices[:, i:h:2, j:w:2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    mean = ((a + b + c + d) / 4).ravel()
    square = (((a - b - c + d) / 2) ** 2).ravel()
    if keep is not None:
        k = np.logical_and.reduce([keep[:, i:h:2, j:w:2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1))]).ravel()
        mean, square = mean[k], square[k]
    return _binned(mean, square, bins)


def _binned(mean: np.ndarray, square: np.ndarray, bins: int):
    """Per bin of ``mean`` (quantile edges; bins of under 50 samples left out): the median mean, the variance
    that the median of the squared noise samples gives, and the samples; None when they cannot be binned."""
    if mean.size == 0:
        return None
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return None
    centres, levels, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (mean >= lo) & (mean < hi) if hi < edges[-1] else (mean >= lo) & (mean <= hi)
        if inside.sum() < 50:
            continue
        centres.append(float(np.median(mean[inside])))
        # median of a σ²·χ²(1) variable is 0.4549 σ²
        levels.append(float(np.median(square[inside])) / 0.4549)
        counts.append(float(inside.sum()))
    return np.array(centres), np.array(levels), np.array(counts)


@dataclass
class NoiseFit:
    """The fitted variance line per channel and the model chosen from it (for the record: :meth:`as_dict`)."""

    model: str  # "gaussian" or "poisson-gaussian"
    slopes: list  # a per channel: variance per unit of mean (a camera's gain, in its units)
    intercepts: list  # b per channel: the variance at mean 0
    ratios: list  # per channel: the fitted variance at bright pixels over that at dark ones
    reason: str

    def as_dict(self) -> dict:
        return {"chosen": self.model, "variance_line": "var = slope · mean + intercept (per channel)",
                "slope": [round(v, 6) for v in self.slopes], "intercept": [round(v, 6) for v in self.intercepts],
                "bright_over_dark_variance": [round(v, 3) for v in self.ratios], "reason": self.reason}


def clipped(values: np.ndarray) -> np.ndarray:
    """True at values equal to the data's lowest or highest value, when that value is frequent (over 0.5 % of the
    pixels, as where a detector saturates or an 8-bit range is cut): their variance is not the noise's."""
    flat = values[np.isfinite(values)]
    out = np.zeros(values.shape, bool)
    for end in (flat.min(), flat.max()) if flat.size else ():
        at_end = values == end
        if at_end.mean() > 0.005:
            out |= at_end
    return out


def fit_noise(planes: np.ndarray, missing: np.ndarray | None = None) -> NoiseFit:
    """Fit ``Var = a · mean + b`` to ``planes`` (P, C, *spatial) per channel and choose the noise model.

    Poisson-Gaussian when, in some channel, the line is rising and its variance at the bright end of the image's
    intensities (the second-highest bin) is at least :data:`SIGNAL_DEPENDENT` times that at the dark end (the
    second-lowest); Gaussian otherwise, and when the image is too small or too flat to tell.
    """
    planes = np.asarray(planes, np.float64)
    unusable = clipped(planes) | (np.zeros(planes.shape, bool) if missing is None else np.asarray(missing, bool))
    slopes, intercepts, ratios = [], [], []
    for c in range(planes.shape[1]):
        points = haar_points(np.where(unusable[:, c], 0.0, planes[:, c]), usable=~unusable[:, c])
        if points is None or len(points[0]) < 4:
            slopes.append(0.0), intercepts.append(0.0), ratios.append(1.0)
            continue
        centres, levels, counts = points
        slope, intercept = np.polyfit(centres, levels, 1, w=np.sqrt(counts))
        dark, bright = (slope * centres[i] + intercept for i in (1, -2))
        ratio = float(bright / dark) if dark > 0 else float("inf") if bright > 0 else 1.0
        slopes.append(float(slope)), intercepts.append(float(intercept)), ratios.append(ratio)
    rising = [r for a, r in zip(slopes, ratios) if a > 0]
    if rising and max(rising) >= SIGNAL_DEPENDENT:
        return NoiseFit("poisson-gaussian", slopes, intercepts, ratios,
                        f"the variance grows with the signal: {max(rising):.3g}× from dark to bright pixels")
    return NoiseFit("gaussian", slopes, intercepts, ratios,
                    f"the variance is about the same at every intensity (at most {max(ratios):.3g}× from dark to "
                    f"bright pixels; signal-dependent from {SIGNAL_DEPENDENT}×)")
