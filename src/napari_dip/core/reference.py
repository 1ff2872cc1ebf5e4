"""Classical estimates mixed into the network's result: a biharmonic fill, non-local means, block matching (and,
for speckle, block matching inside the speckle likelihood), Richardson–Lucy deconvolution.

A small network fitted for a minute on a CPU is not best everywhere: biharmonic
interpolation of scattered missing pixels is hard to beat on smooth content, and
non-local means on some textures, while the network wins elsewhere. Their errors
differ, so the loop mixes them: result = reference + w·(network − reference), with
the weight w in [0, 1] that minimises the squared error at the held-out pixels (a
least-squares stacking of two estimators: one parameter fitted on hundreds of
pixels or more). For that choice to be fair, the reference that is judged never
sees the held-out pixels either: the fill treats them as missing, and non-local
means sees them replaced by the mean of their measured neighbours. The result then
uses the estimate made from every measured pixel. For the fill that is a little
better than the judged one; for non-local means it can be better (textures) or
worse (smooth images at low noise), so there the weight is approximate.

Held-out pixels are scattered, so for inpainting they judge how well each
estimator fills small gaps. Large holes (a painted region) are another problem,
where biharmonic fills are smooth and wrong: there no fill is mixed in (see
:func:`mean_gap_distance`).
"""

from __future__ import annotations

import contextlib

import numpy as np

# Held-out pixels stand for gaps up to about this mean distance to the nearest measured pixel (in pixels):
# 1.0 for half the pixels missing at random, 1.3 for 80 %, 1.7 for 90 %; thin lines and dead pixels are
# near 1; a painted hole of radius r is about r / 3.
MAX_SCATTERED_GAP = 2.0


def gap_distances(known: np.ndarray) -> np.ndarray:
    """Distance (pixels) from each missing pixel to the nearest measured one; ``known`` is (C, *spatial). A pixel
    counts as missing when no channel of it is measured. Empty when nothing is missing."""
    from scipy.ndimage import distance_transform_edt

    missing = np.asarray(known).max(axis=0) <= 0
    return distance_transform_edt(missing)[missing] if missing.any() else np.zeros(0)


def mean_gap_distance(known: np.ndarray) -> float:
    """Mean of :func:`gap_distances`; 0 when nothing is missing."""
    distances = gap_distances(known)
    return float(distances.mean()) if distances.size else 0.0


def biharmonic_fill(plane: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``plane`` (C, *spatial) with the pixels where ``known`` (1 or C, *spatial) is 0 filled by biharmonic
    interpolation of the measured ones (scikit-image), channel by channel. A new float32 array."""
    from skimage.restoration import inpaint_biharmonic

    plane = np.asarray(plane, dtype=np.float64)
    known = np.broadcast_to(np.asarray(known) > 0, plane.shape)
    filled = plane.copy()
    for c in range(plane.shape[0]):
        missing = ~known[c]
        if missing.any() and not missing.all():
            filled[c] = inpaint_biharmonic(plane[c], missing)
    return filled.astype(np.float32)


def neighbour_mean_fill(plane: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """``plane`` (C, *spatial) with the pixels where ``excluded`` (1 or C, *spatial) is nonzero replaced by the
    mean of the other pixels in their 3×3 (3×3×3) neighbourhood, so that nothing computed from the result
    depends on the replaced values. A new float32 array."""
    from scipy.ndimage import uniform_filter

    plane = np.asarray(plane, dtype=np.float64)
    weight = np.broadcast_to(np.asarray(excluded) == 0, plane.shape).astype(np.float64)
    size = (1,) + (3,) * (plane.ndim - 1)
    total = uniform_filter(plane * weight, size=size, mode="mirror")
    count = uniform_filter(weight, size=size, mode="mirror")
    mean = total / np.maximum(count, 1e-12)
    # a pixel whose whole neighbourhood is excluded takes the plane's mean of the kept pixels
    mean = np.where(count > 1e-9, mean, (plane * weight).sum() / max(weight.sum(), 1.0))
    return np.where(weight > 0, plane, mean).astype(np.float32)


def nl_means(plane: np.ndarray, sigma: float) -> np.ndarray:
    """scikit-image's non-local means of ``plane`` (C, *spatial) with noise σ ``sigma`` (its units), set as
    its gallery recommends: h = 0.8 σ, 5-pixel patches, search distance 6. A new float32 array."""
    from skimage.restoration import denoise_nl_means

    sigma = max(float(sigma), 1e-6)
    channels_last = np.moveaxis(np.asarray(plane, dtype=np.float64), 0, -1)
    out = denoise_nl_means(channels_last, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                           patch_distance=6, channel_axis=-1)
    # scikit-image drops a single channel axis from its result
    return np.moveaxis(np.asarray(out, dtype=np.float32).reshape(channels_last.shape), -1, 0)


def block_matching(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Block matching and collaborative filtering (BM3D's method, from the MIT-licensed ``bmnd`` package; BM4D's
    for a volume) of each channel of ``plane`` (C, *spatial) with Gaussian noise σ ``sigma`` (its units). A new
    float32 array. Where ``bmnd`` does not load (its numba), :func:`block_matching_available` says so.
    Volumes thinner than :data:`BLOCK_MATCHING_MIN_SIDE` go plane by plane; smaller images get non-local means."""
    from bmnd import BM3DProfile, BM4DProfile, bmnd

    sigma = max(float(sigma), 1e-6)

    def filtered(channel):
        if min(channel.shape) < BLOCK_MATCHING_MIN_SIDE:
            if channel.ndim == 3 and min(channel.shape[1:]) >= BLOCK_MATCHING_MIN_SIDE:
                return np.stack([filtered(z) for z in channel])  # a thin volume: plane by plane
            return nl_means(channel[None], sigma)[0]  # smaller than one block
        if channel.ndim == 2:
            profile = BM3DProfile()
            # one grid of reference blocks, not bmnd's two shifted ones: half the time for 0.03 dB on average
            # (block matching alone on 8 W2S frames and 9 noisy photos, docs/benchmarks.md)
            profile.reference_shift_density, profile.reference_schedule_density = 1.0, 1
        else:
            profile = BM4DProfile()
        return bmnd(np.ascontiguousarray(channel, dtype=np.float32), profile, sigma=sigma)

    with _torch_threads_kept():
        return np.stack([filtered(channel) for channel in np.asarray(plane)]).astype(np.float32)


# BM3D's and BM4D's blocks are 8 and 4 pixels a side; volumes thinner than this go plane by plane, and images
# smaller than it are left to non-local means
BLOCK_MATCHING_MIN_SIDE = 8


@contextlib.contextmanager
def _torch_threads_kept():
    """The bmnd package runs on numba, whose OpenMP threads are torch's too: a parallel numba call leaves torch
    with numba's thread count (all cores), which undoes the thread governor's count and the test suite's one
    thread, and makes repeated runs differ in their last bits. So numba runs with torch's count, which is put
    back after."""
    import numba
    import torch

    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def block_matching_available() -> bool:
    """Whether the ``bmnd`` package (a dependency, on numba) is installed and loads."""
    try:
        from bmnd import bmnd  # noqa: F401
    except ImportError:
        return False
    return True


# Richardson–Lucy runs at most this many iterations; the held-out pixels choose how many (later ones sharpen
# more and amplify more noise)
RICHARDSON_LUCY_MAX_ITERATIONS = 100


def richardson_lucy(plane: np.ndarray, known: np.ndarray, excluded: np.ndarray, psf: np.ndarray):
    """Richardson–Lucy deconvolution of ``plane`` (C, *spatial) blurred by ``psf`` (unit sum, odd sides; a 2D PSF
    blurs each plane of a volume), from the pixels where ``known`` (1 or C, *spatial) is nonzero.

    Run twice: first without the ``excluded`` (held-out) pixels, which chooses the iteration count whose blurred
    estimate is closest to the held-out measurements; then from every measured pixel for that count. Returns
    (the estimate from every measured pixel, the one without the held-out pixels, the count); float32 arrays.
    The update is multiplicative and needs positive values, so the intensities are shifted above zero first: a
    blur of unit sum maps a constant to itself, so the shift comes off the estimate unchanged.
    """
    import torch

    from .operators import BlurOperator

    blur = BlurOperator(psf)
    adjoint = BlurOperator(np.flip(blur.psf_array))  # correlation with the PSF: the blur's transpose
    y = torch.from_numpy(np.asarray(plane, np.float32))[None]
    known = torch.from_numpy(np.broadcast_to(np.asarray(known) > 0, plane.shape).astype(np.float32))[None]
    held_out = known * torch.from_numpy(np.broadcast_to(np.asarray(excluded) > 0, plane.shape).astype(np.float32))
    measured = y[(known - held_out) > 0]  # the judged run's shift must not depend on the held-out values
    y_low, y_high = (float(measured.min()), float(measured.max())) if measured.numel() else (0.0, 1.0)
    shift = -y_low + 0.01 * max(y_high - y_low, 1e-6)
    y = (y + shift).clamp_min(1e-6)

    def run(weights, count, judge=None):
        """``count`` iterations from the pixels where ``weights`` is 1; ``judge(i, x, blur(x))`` sees each
        estimate (its blur is the next update's, so it is computed once)."""
        x = torch.full_like(y, float((y * weights).sum() / weights.sum().clamp_min(1.0)))
        norm = adjoint(weights).clamp_min(1e-6)
        blurred = blur(x)
        for i in range(1, count + 1):
            x = x * adjoint(weights * y / blurred.clamp_min(1e-6)) / norm
            blurred = blur(x)
            if judge is not None:
                judge(i, x, blurred)
        return x

    best = {"error": float("inf"), "count": 1, "estimate": None}

    def judge(i, x, blurred):
        error = float((held_out * (blurred - y) ** 2).sum())
        if error < best["error"]:
            best.update(error=error, count=i, estimate=x)

    with torch.no_grad():
        run(known - held_out, RICHARDSON_LUCY_MAX_ITERATIONS, judge)
        count, judged = best["count"], best["estimate"]
        full = run(known, count)
    return ((full - shift)[0].numpy().astype(np.float32), (judged - shift)[0].numpy().astype(np.float32),
            count)


def anscombe(counts: np.ndarray, denoise) -> np.ndarray:
    """Poisson ``counts`` through the Anscombe transform, ``denoise`` (a function; σ = 1 there) and back.

    The inverse is the closed-form approximation of the exact unbiased inverse (Mäkitalo & Foi, 2011).
    """
    a = 2.0 * np.sqrt(np.maximum(counts, 0.0) + 3.0 / 8.0)
    d = np.maximum(np.asarray(denoise(a), np.float64), 1e-3)
    inverse = (0.25 * d ** 2 + 0.25 * np.sqrt(1.5) / d - 11.0 / 8.0 / d ** 2 + 0.625 * np.sqrt(1.5) / d ** 3
               - 0.125)
    return np.maximum(inverse, 0.0).astype(np.float32)


def under_noise(gaussian, noise: str, sigma: float | None = None, photons: float | None = None):
    """The function x (normalised) → ``gaussian(x, σ)``'s estimate under the noise model ``noise``:
    with ``sigma`` for Gaussian noise; for photon counts through Anscombe's transform (σ = 1 there), ``photons``
    counts at 1 in the normalised units."""
    if noise == "gaussian":
        return lambda x: gaussian(x, sigma)
    return lambda x: anscombe(x * photons, lambda a: gaussian(a, 1.0)) / photons


# speckle: ADMM rounds, and the penalty in units of the log-speckle's inverse variance (benchmarks/speckle.py chose
# 6 over 1 to 4 on photos at 1 and 4 looks: 1 lost to the homomorphic start, 6 gained most)
SPECKLE_ROUNDS = 6
SPECKLE_PENALTY = 6.0
NEWTON_STEPS = 10


def speckle_block_matching(plane: np.ndarray, known: np.ndarray, looks: float, span: float, denoise) -> np.ndarray:
    """Speckle removed by a Gaussian denoiser inside the speckle likelihood: plug-and-play ADMM on the log intensity
    (MuLoG, Deledalle et al., IEEE TCI 2017), started from the homomorphic estimate (the denoiser on the logs alone).

    ``plane`` (C, *spatial) is in the network's units of ``data.LogNormalisation`` (the log-speckle's mean taken
    out; ``span`` log units per unit), 0 where ``known`` (1 or C, *spatial) is 0; ``denoise(x, sigma)`` is a
    Gaussian denoiser (σ in the same units). Each round solves, per pixel by Newton's method, the Gamma likelihood
    of ``looks`` looks plus a quadratic pull to the denoiser's last estimate, then denoises that. Where the log
    data's noise is far from Gaussian (one look) this gains 1–3 dB over the homomorphic estimate; at 4 looks
    0–0.6 dB. Returns the estimate in the network's units."""
    from .speckle import log_moments

    bias, variance = log_moments(looks)
    penalty = SPECKLE_PENALTY / variance  # in log units⁻²
    measured = np.broadcast_to(known > 0, plane.shape)
    data = plane.astype(np.float64) * span + bias  # the measured log intensity (less the range's low end)
    z = denoise(plane, float(np.sqrt(variance)) / span).astype(np.float64) * span
    x, dual = z.copy(), np.zeros_like(z)
    for _ in range(SPECKLE_ROUNDS):
        pull = z - dual
        for _ in range(NEWTON_STEPS):  # the likelihood and the pull are convex in x: Newton converges
            ratio = np.where(measured, np.exp(np.clip(data - x, -50.0, 50.0)), 0.0)
            gradient = looks * (np.where(measured, 1.0, 0.0) - ratio) + penalty * (x - pull)
            x -= gradient / (looks * ratio + penalty)
        z = denoise(((x + dual) / span).astype(np.float32), float(1.0 / np.sqrt(penalty)) / span).astype(
            np.float64) * span
        dual += x - z
    return (z / span).astype(np.float32)
