"""Which noise an image has: the fit of its variance against its mean, and the model chosen from it.

Camera and photon-counting data have a variance that grows with the signal, ``Var = a · mean + b`` (Poisson-Gaussian:
``a`` the gain, ``b`` the read noise's variance less ``a`` times the dark offset; Foi et al., 2008); additive noise
has a flat one (``a = 0``). :func:`fit_noise` fits that line to an image, per channel, and chooses the Gaussian
model when the variance stays within a factor :data:`SIGNAL_DEPENDENT` across the image's intensities, else the
Poisson-Gaussian one. Radar speckle is multiplicative: its variance grows with the *square* of the mean,
``Var = c · mean²`` (core/speckle.py); where that one-parameter curve fits the points better than the line does
(and the noise is strong: the coefficient of variation at least :data:`SPECKLE_MIN_CV`), the choice is speckle.
It is what ``noise="auto"``, the default, runs. How often it is right on images whose noise
is known: ``python benchmarks/noise_choice.py`` (docs/benchmarks.md § Which noise model).
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
    """Like :func:`mean_variance_points`, from 2×2 blocks and from the blocks where the signal is flat.

    Per block: its mean, and the square of its diagonal detail (a − b − c + d) / 2, whose variance is the noise's.
    Structure also reaches that detail (bright ridges and spots most, so that fine bright structure looks like
    signal-dependent noise), so each bin keeps only its flat blocks: those whose horizontal and vertical details
    and two second differences of the neighbouring block means stay within :data:`FLAT_BOUND` times the bin's
    noise variance (re-estimated from the blocks kept, :data:`FLAT_ROUNDS` times). For white noise these are
    independent of the diagonal detail, so choosing blocks by them does not bias the variance. A bin where under
    :data:`FLAT_SHARE` of the blocks are flat is structure and is left out.
    ``usable`` (boolean, like ``image``) leaves out the blocks that hold an unusable pixel (clipped or missing)."""
    x = np.asarray(image, np.float64)
    slices = x.reshape(-1, *x.shape[-2:])
    h, w = (slices.shape[1] // 2) * 2, (slices.shape[2] // 2) * 2
    corners = ((0, 0), (0, 1), (1, 0), (1, 1))
    a, b, c, d = (slices[:, i:h:2, j:w:2] for i, j in corners)
    block_mean = (a + b + c + d) / 4
    whole = np.ones(block_mean.shape, bool)  # the blocks of usable pixels only
    if usable is not None:
        keep = np.asarray(usable, bool).reshape(slices.shape)
        whole = np.logical_and.reduce([keep[:, i:h:2, j:w:2] for i, j in corners])

    pad = ((0, 0), (1, 1), (1, 1))
    means, usable_blocks = np.pad(block_mean, pad, mode="reflect"), np.pad(whole, pad, mode="reflect")

    def second_difference(offsets):
        """(n1 + n2 − n3 − n4)² of the neighbouring block means at ``offsets``; 0 where one is unusable (the
        guard is then left out rather than failing the block)."""
        ny, nx = block_mean.shape[1:]
        at = [(slice(None), slice(1 + dy, 1 + dy + ny), slice(1 + dx, 1 + dx + nx)) for dy, dx in offsets]
        value = means[at[0]] + means[at[1]] - means[at[2]] - means[at[3]]
        return np.where(np.logical_and.reduce([usable_blocks[i] for i in at]), value ** 2, 0.0)

    # each has the noise's variance for white noise (two differences of two pixels, or of four block means of
    # variance σ²/4), is independent of the diagonal detail, and none of the second differences uses the block
    structure = np.maximum.reduce([
        ((a + b - c - d) / 2) ** 2, ((a - b + c - d) / 2) ** 2,
        second_difference(((0, -1), (0, 1), (-1, 0), (1, 0))),
        second_difference(((-1, -1), (1, 1), (-1, 1), (1, -1)))])[whole]
    mean = block_mean[whole]
    square = (((a - b - c + d) / 2) ** 2)[whole]
    return _binned(mean, square, bins, structure)


FLAT_BOUND = 6.63  # the 99th percentile of χ²(1): 96 % of pure-noise blocks count as flat
FLAT_ROUNDS = 4
# under this share of flat blocks a bin is structure (pure noise: 0.96; the bright bins of thin filaments at 1 %
# noise: 0.01-0.02); benchmarks/noise_choice.py chose it over 0.2 and 0.3
FLAT_SHARE = 0.5
# median of a σ²·χ²(1) variable is 0.4549 σ²
CHI2_MEDIAN = 0.4549
# speckle: the smallest noise spread over mean (√c) called speckle (amplitude of 10 looks is 0.16), and how much
# closer to the points the curve must come than the line (RMS of log variance, a ratio)
SPECKLE_MIN_CV = 0.14
SPECKLE_BETTER = 0.5
SPECKLE_POWER = 0.3  # how far the fitted exponent of Var ∝ meanᵖ may lie from 2


def _flat_variance(square: np.ndarray, structure: np.ndarray) -> float | None:
    """The noise variance from the flat blocks of one bin (:func:`haar_points`); None where the bin is structure.

    The median finds the flat blocks (robust to the structure among them); the variance is then their mean
    square, which is right for any noise distribution: the median's χ² factor holds for Gaussian noise only,
    and photon counts of a few photons per pixel made it 3-8 % high (docs/benchmarks.md § Which noise model)."""
    level = float(np.median(square)) / CHI2_MEDIAN
    for _ in range(FLAT_ROUNDS):
        flat = structure <= FLAT_BOUND * level
        if flat.sum() < 25 or flat.mean() < FLAT_SHARE:
            return None
        level = float(np.median(square[flat])) / CHI2_MEDIAN
    return float(np.mean(square[structure <= FLAT_BOUND * level]))


def _binned(mean: np.ndarray, square: np.ndarray, bins: int, structure: np.ndarray | None = None):
    """Per bin of ``mean`` (quantile edges; bins of under 50 samples left out): the median mean, the variance
    that the median of the squared noise samples gives (of the flat ones, given ``structure``: :func:`haar_points`),
    and the samples; None when they cannot be binned."""
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
        if structure is None:
            level = float(np.median(square[inside])) / CHI2_MEDIAN
        else:
            level = _flat_variance(square[inside], structure[inside])
            if level is None:
                continue
        centres.append(float(np.median(mean[inside])))
        levels.append(level)
        counts.append(float(inside.sum()))
    return np.array(centres), np.array(levels), np.array(counts)


@dataclass
class NoiseFit:
    """The fitted variance line per channel and the model chosen from it (for the record: :meth:`as_dict`)."""

    model: str  # "gaussian", "poisson-gaussian" or "speckle"
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


def speckle_fit(centres, levels, counts, slope, intercept) -> float | None:
    """The coefficient of variation of multiplicative noise, ``Var = c · mean²`` (√c), where the points follow that
    curve: a power law fitted to them has an exponent within :data:`SPECKLE_POWER` of 2 (photon counts: 1), the curve
    comes at most :data:`SPECKLE_BETTER` times as far (RMS in log) as the line ``slope · mean + intercept`` wherever
    the line is positive, and √c is at least :data:`SPECKLE_MIN_CV`; else None. Means must be positive and span at
    least a factor 2, or the two cannot be told apart."""
    if centres.min() <= 0 or centres.max() < 2 * centres.min() or levels.min() <= 0:
        return None
    weight = counts / counts.sum()
    log_means, log_levels = np.log(centres), np.log(levels)
    power = np.polyfit(log_means, log_levels, 1, w=np.sqrt(weight))[0]
    log_c = float(np.sum(weight * (log_levels - 2 * log_means)))
    cv = float(np.exp(log_c / 2))
    if abs(power - 2) > SPECKLE_POWER or cv < SPECKLE_MIN_CV:
        return None
    line = slope * centres + intercept
    if line.min() > 0:
        curve_error = np.sqrt(np.sum(weight * (log_levels - log_c - 2 * log_means) ** 2))
        line_error = np.sqrt(np.sum(weight * (log_levels - np.log(line)) ** 2))
        if curve_error > SPECKLE_BETTER * line_error:
            return None
    return cv


def fit_noise(planes: np.ndarray, missing: np.ndarray | None = None) -> NoiseFit:
    """Fit ``Var = a · mean + b`` to ``planes`` (P, C, *spatial) per channel and choose the noise model.

    Poisson-Gaussian when, in some channel, the line is rising and its variance at the bright end of the image's
    intensities (the second-highest bin) is at least :data:`SIGNAL_DEPENDENT` times that at the dark end (the
    second-lowest); Gaussian otherwise, and when the image is too small, too flat or too textured to tell.
    """
    planes = np.asarray(planes, np.float64)
    clipped_values = clipped(planes)
    unusable = clipped_values | (np.zeros(planes.shape, bool) if missing is None else np.asarray(missing, bool))
    slopes, intercepts, ratios, fitted, speckled = [], [], [], 0, []
    ends = [np.unique(planes[:, c][clipped_values[:, c]]) for c in range(planes.shape[1])]
    for c in range(planes.shape[1]):
        points = haar_points(np.where(unusable[:, c], 0.0, planes[:, c]), usable=~unusable[:, c])
        if points is None or len(points[0]) < 4:
            slopes.append(0.0), intercepts.append(0.0), ratios.append(1.0)
            continue
        centres, levels, counts = points
        # next to a clipped end, only the blocks whose noise stayed inside the range are left: too little variance
        inside = [all(abs(m - end) > 3 * np.sqrt(v) for end in ends[c]) for m, v in zip(centres, levels)]
        centres, levels, counts = centres[inside], levels[inside], counts[inside]
        if len(centres) < 4:
            slopes.append(0.0), intercepts.append(0.0), ratios.append(1.0)
            continue
        fitted += 1
        slope, intercept = np.polyfit(centres, levels, 1, w=np.sqrt(counts))
        dark, bright = (slope * centres[i] + intercept for i in (1, -2))
        ratio = float(bright / dark) if dark > 0 else float("inf") if bright > 0 else 1.0
        slopes.append(float(slope)), intercepts.append(float(intercept)), ratios.append(ratio)
        speckled.append(speckle_fit(centres, levels, counts, slope, intercept))
    rising = [r for a, r in zip(slopes, ratios) if a > 0]
    if rising and max(rising) >= SIGNAL_DEPENDENT:
        if all(cv is not None for cv in speckled):
            return NoiseFit("speckle", slopes, intercepts, ratios,
                            f"the noise grows in proportion to the signal (spread {np.median(speckled):.2f} × the "
                            f"mean at every intensity): multiplicative speckle")
        return NoiseFit("poisson-gaussian", slopes, intercepts, ratios,
                        f"the variance grows with the signal: {max(rising):.3g}× from dark to bright pixels")
    if not fitted:
        return NoiseFit("gaussian", slopes, intercepts, ratios,
                        "too few flat regions at enough intensities to see how the noise changes with the signal "
                        "(texture or a small image): Gaussian; name the model if you know it")
    return NoiseFit("gaussian", slopes, intercepts, ratios,
                    f"the variance is about the same at every intensity (at most {max(ratios):.3g}× from dark to "
                    f"bright pixels; signal-dependent from {SIGNAL_DEPENDENT}×)")
