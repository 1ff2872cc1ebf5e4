"""Radar speckle: its statistics, the number of looks, and the checks that need no reference.

A speckled intensity is ``I = R · S``: ``R`` the scene's reflectivity, ``S`` the speckle, Gamma-distributed with
shape ``L`` (the number of looks) and mean 1; single-look intensity speckle is exponential, and the amplitude
``A = √I`` of single-look data Rayleigh-distributed. The logarithm makes it additive, ``log I = log R + log S``,
with ``log S`` of mean ``ψ(L) − log L`` and variance ``ψ′(L)`` (ψ the digamma function) whatever ``R`` is: the
restoration works on ``log I`` (``data.LogNormalisation``, ``noise.SpeckleNoise``). Amplitude data are squared
into intensity first (``power`` 2), so one set of formulas serves both.
"""

from __future__ import annotations

import functools

import numpy as np

SPECKLE_KINDS = ("amplitude", "intensity")
POWER = {"amplitude": 2.0, "intensity": 1.0}  # what turns the data into intensity: x ** power
ESTIMATE_BLOCK = 16  # side of the blocks whose intensity statistics estimate the looks


def log_moments(looks: float) -> tuple[float, float]:
    """(mean, variance) of ``log S`` for intensity speckle of ``looks`` looks: ``ψ(L) − log L`` and ``ψ′(L)``.

    >>> mean, variance = log_moments(1)  # one look: −γ (Euler's constant) and π²/6
    >>> round(mean, 4), round(variance, 4)
    (-0.5772, 1.6449)
    """
    from scipy.special import polygamma, psi

    return float(psi(looks) - np.log(looks)), float(polygamma(1, looks))


def ratio_cv(looks: float, kind: str) -> float:
    """The coefficient of variation of pure speckle, ``observed / reflectivity`` in the data's own units (amplitude:
    ``A / √R``; √(4/π − 1) ≈ 0.523 for one look; intensity: ``1 / √L``).

    >>> round(ratio_cv(1, "amplitude"), 3), ratio_cv(4, "intensity")
    (0.523, 0.5)
    """
    if kind == "intensity":
        return float(1.0 / np.sqrt(looks))
    return float(np.sqrt(1.0 / ratio_mean(looks, kind) ** 2 - 1.0))  # E[S] = 1


def ratio_mean(looks: float, kind: str) -> float:
    """The mean of pure speckle, ``observed / reflectivity`` in the data's units: 1 for intensity, ``E[√S] =
    Γ(L + ½) / (Γ(L) √L)`` for amplitude."""
    from scipy.special import gammaln

    if kind == "intensity":
        return 1.0
    return float(np.exp(gammaln(looks + 0.5) - gammaln(looks)) / np.sqrt(looks))


def simulate(reflectivity: np.ndarray, looks: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Speckled data of a clean image: ``reflectivity`` is the clean intensity for ``kind='intensity'`` and the clean
    amplitude (√R) for ``kind='amplitude'``; returns the same kind, float32 (benchmarks and tests)."""
    clean = np.asarray(reflectivity, np.float64)
    speckle = rng.gamma(looks, 1.0 / looks, clean.shape)
    return (clean * (np.sqrt(speckle) if kind == "amplitude" else speckle)).astype(np.float32)


def intensity(values: np.ndarray, kind: str) -> np.ndarray:
    """The data as intensity (amplitude squared), float64."""
    return np.asarray(values, np.float64) ** POWER[kind]


def block_cv2(intensity_image: np.ndarray, missing: np.ndarray | None = None,
              block: int = ESTIMATE_BLOCK) -> np.ndarray:
    """Per non-overlapping ``block``² block of an intensity image (…, Y, X) with no missing pixel and a positive
    mean: its variance over its mean squared. Over a homogeneous block that is the speckle's ``1 / L``; texture and
    edges add to it."""
    x = np.asarray(intensity_image, np.float64)
    x = x.reshape(-1, *x.shape[-2:])
    h, w = (x.shape[1] // block) * block, (x.shape[2] // block) * block
    if h == 0 or w == 0:
        return np.zeros(0)

    def as_blocks(a):  # (blocks, block²)
        return a[:, :h, :w].reshape(a.shape[0], h // block, block, w // block, block).swapaxes(2, 3).reshape(
            -1, block * block)

    blocks = as_blocks(x)
    usable = np.ones(len(blocks), bool)
    if missing is not None:
        usable = ~as_blocks(np.asarray(missing, bool).reshape(x.shape)).any(axis=1)
    mean = blocks.mean(axis=1)
    usable &= mean > 0
    return blocks[usable].var(axis=1, ddof=1) / mean[usable] ** 2


def estimate_looks(intensity_image: np.ndarray, missing: np.ndarray | None = None) -> tuple[float | None, str]:
    """The equivalent number of looks of speckled intensity data (…, Y, X), and how it was found.

    Two estimates, each of which texture can only lower (it adds to the spread that speckle explains): the most
    common block ``1 / CV²`` (homogeneous blocks share it), and the median size of the finest diagonal Haar detail
    of the logarithm, matched to that of pure log-speckle (texture is mostly coarser than a pixel). The larger is
    kept. None, with the reason, where too few blocks can be measured."""
    cv2 = block_cv2(intensity_image, missing)
    cv2 = cv2[np.isfinite(cv2) & (cv2 > 0)]
    if cv2.size < 8:
        return None, f"fewer than 8 measurable {ESTIMATE_BLOCK}² blocks"
    logs = np.log(cv2)
    counts, edges = np.histogram(logs, bins=max(8, min(40, cv2.size // 8)))
    top = int(np.argmax(counts))
    # the mode's bin and its neighbours, averaged: steadier than a bin centre
    near = (logs >= edges[max(top - 1, 0)]) & (logs <= edges[min(top + 2, len(edges) - 1)])
    from_blocks = float(1.0 / np.exp(np.median(logs[near])))
    from_detail = _looks_from_detail(intensity_image, missing)
    if from_detail is not None and from_detail > from_blocks:
        return from_detail, "the median finest diagonal Haar detail of the logarithm, against pure log-speckle's"
    return from_blocks, f"the most common 1/CV² of {cv2.size} blocks of {ESTIMATE_BLOCK}² pixels"


_DETAIL_LOOKS = np.geomspace(0.5, 64.0, 48)


@functools.cache
def _median_detail_table() -> np.ndarray:
    """The median |diagonal Haar detail| of pure log-speckle at each of ``_DETAIL_LOOKS`` (seeded simulation)."""
    from .quality import diagonal_detail

    rng = np.random.default_rng(0)
    return np.array([np.median(np.abs(diagonal_detail(np.log(rng.gamma(looks, 1.0, (2, 256, 256))))))
                     for looks in _DETAIL_LOOKS])


def _looks_from_detail(intensity_image, missing) -> float | None:
    from .quality import diagonal_detail

    x = np.asarray(intensity_image, np.float64)
    usable = x > 0 if missing is None else (x > 0) & ~np.asarray(missing, bool)
    detail = np.abs(diagonal_detail(np.log(np.where(usable, x, 1.0)), usable))
    if detail.size < 256:
        return None
    table = _median_detail_table()  # falls as the looks grow
    return float(np.exp(np.interp(-np.median(detail), -table, np.log(_DETAIL_LOOKS))))


def equivalent_looks(intensity_image: np.ndarray, block: int = 24) -> float:
    """ENL of a result (no reference needed): mean² / variance of its most homogeneous ``block``² block, in
    intensity (the larger, the smoother; pure speckle of L looks gives about L)."""
    cv2 = block_cv2(intensity_image, None, block)
    cv2 = cv2[np.isfinite(cv2) & (cv2 > 0)]
    return float(1.0 / cv2.min()) if cv2.size else float("nan")


def ratio_statistics(observed: np.ndarray, restored: np.ndarray, looks: float, kind: str) -> dict:
    """The ratio image ``observed / restored`` in the data's units: its mean and coefficient of variation beside
    pure speckle's (1 for intensity; E[√S] for amplitude, and :func:`ratio_cv`). A result that keeps speckle
    leaves too little in the ratio (CV below theory); one that removes structure leaves structure in it."""
    observed, restored = np.asarray(observed, np.float64), np.asarray(restored, np.float64)
    usable = restored > 0
    ratio = observed[usable] / restored[usable]
    return {"ratio_mean": float(ratio.mean()), "ratio_mean_theory": ratio_mean(looks, kind),
            "ratio_cv": float(ratio.std() / ratio.mean()), "ratio_cv_theory": ratio_cv(looks, kind)}
