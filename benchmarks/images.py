"""Test images and degradations shared by the benchmarks (scikit-image's bundled images only).

Every degradation is seeded, so two runs of a benchmark restore the same
inputs. Intensities stay in 0…255 float32 (unclipped noise, as in the sample
data), so PSNR uses a data range of 255.
"""

from __future__ import annotations

import numpy as np

IMAGES = ("camera", "astronaut", "coffee", "chelsea", "text")
SIGMA = 25.0  # Gaussian noise, of 255


def load(name: str, size: int = 256, gray: bool = False) -> np.ndarray:
    """The central square of a bundled image, resized to ``size`` × ``size``; float32 in 0…255.

    RGB images keep their colour axis last unless ``gray``.
    """
    from skimage import color, data, transform

    image = getattr(data, name)()
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top:top + side, left:left + side]
    if gray and image.ndim == 3:
        image = color.rgb2gray(image) * 255.0
    shape = (size, size) + image.shape[2:]
    image = transform.resize(image.astype(np.float64), shape, anti_aliasing=True, preserve_range=True)
    return image.astype(np.float32)


def psnr(truth: np.ndarray, image: np.ndarray, data_range: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(truth, np.float64) - np.asarray(image, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range ** 2 / mse)


def degrade(task: str, clean: np.ndarray, seed: int = 0) -> dict:
    """The degraded input and the ``restore`` keyword arguments for one task.

    Returns a dict with ``input`` (the array to restore), ``kwargs`` for
    :func:`napari_dip.restore`, ``baseline`` (a classical method's result at
    the output's size, for comparison) and ``baseline_name``.
    """
    from scipy import ndimage
    from skimage import transform
    from skimage.restoration import inpaint_biharmonic

    rng = np.random.default_rng(seed)
    channel_axis = -1 if clean.ndim == 3 else None
    kwargs = dict(channel_axis=channel_axis)
    if task == "denoise":
        noisy = (clean + rng.normal(0, SIGMA, clean.shape)).astype(np.float32)
        return dict(input=noisy, kwargs=kwargs, baseline=nl_means(noisy, channel_axis),
                    baseline_name="non-local means", input_psnr=psnr(clean, noisy))
    if task == "inpaint":
        missing = rng.random(clean.shape[:2]) < 0.5  # half the pixels lost
        damaged = clean.copy()
        damaged[missing] = 0
        filled = inpaint_biharmonic(damaged / 255.0, missing, channel_axis=channel_axis) * 255.0
        kwargs["mask"] = missing
        return dict(input=damaged.astype(np.float32), kwargs=kwargs, baseline=filled.astype(np.float32),
                    baseline_name="biharmonic inpainting", input_psnr=psnr(clean, damaged))
    if task == "superres":
        import torch

        from napari_dip.core.operators import DownsampleOperator

        factor = 4
        x = torch.from_numpy(np.moveaxis(clean, -1, 0)[None] if clean.ndim == 3 else clean[None, None])
        small = DownsampleOperator(factor)(x)[0].numpy()
        small = np.moveaxis(small, 0, -1) if clean.ndim == 3 else small[0]
        bicubic = transform.resize(small, clean.shape, order=3, preserve_range=True).astype(np.float32)
        kwargs["factor"] = factor
        return dict(input=small.astype(np.float32), kwargs=kwargs, baseline=bicubic, baseline_name="bicubic",
                    input_psnr=psnr(clean, bicubic))
    if task == "deconvolve":
        sigma_psf, sigma_noise = 2.0, 2.55  # Gaussian blur σ = 2 px, 1 % noise
        blur_sigma = (sigma_psf, sigma_psf, 0) if clean.ndim == 3 else sigma_psf
        blurred = ndimage.gaussian_filter(clean.astype(np.float64), blur_sigma, mode="reflect")
        observed = (blurred + rng.normal(0, sigma_noise, clean.shape)).astype(np.float32)
        kwargs["psf_sigma"] = sigma_psf
        return dict(input=observed, kwargs=kwargs, baseline=richardson_lucy(observed, sigma_psf, channel_axis),
                    baseline_name="Richardson-Lucy, 20 iterations", input_psnr=psnr(clean, observed))
    if task == "guided":
        noisy = (clean + rng.normal(0, SIGMA, clean.shape)).astype(np.float32)
        gray = clean.mean(axis=-1) if clean.ndim == 3 else clean
        flash = (255.0 * (gray / 255.0) ** 0.7).astype(np.float32)  # same scene, other lighting, no noise
        if clean.ndim == 3:
            flash = np.repeat(flash[..., None], 3, axis=-1)
        kwargs["guide"] = flash
        return dict(input=noisy, kwargs=kwargs, baseline=nl_means(noisy, channel_axis),
                    baseline_name="non-local means (no guide)", input_psnr=psnr(clean, noisy))
    raise ValueError(task)


def nl_means(noisy: np.ndarray, channel_axis=None, scale: float = 255.0) -> np.ndarray:
    """scikit-image's non-local means, tuned as its gallery recommends (h = 0.8 σ̂, 5×5 patches, distance 6).

    σ̂ is the wavelet median estimate (napari_dip.core.quality.estimate_gaussian_sigma, as scikit-image's
    ``estimate_sigma`` without PyWavelets). ``scale`` maps the intensities to about 0…1.
    """
    from skimage.restoration import denoise_nl_means

    x = noisy / scale
    sigma = _sigma(x, channel_axis)
    out = denoise_nl_means(x, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6,
                           channel_axis=channel_axis)
    return (out * scale).astype(np.float32)


def _sigma(x: np.ndarray, channel_axis=None) -> float:
    from napari_dip.core.quality import estimate_gaussian_sigma

    planes = np.moveaxis(x, channel_axis, 0) if channel_axis is not None else x[None]
    return estimate_gaussian_sigma(planes[None])


def tv(noisy: np.ndarray, channel_axis=None, scale: float = 255.0) -> np.ndarray:
    """Chambolle total variation with the weight set to the estimated σ (in 0…1 units)."""
    from skimage.restoration import denoise_tv_chambolle

    x = noisy / scale
    out = denoise_tv_chambolle(x, weight=_sigma(x, channel_axis), channel_axis=channel_axis)
    return (out * scale).astype(np.float32)


def bm3d_denoise(noisy: np.ndarray, channel_axis=None, scale: float = 255.0) -> np.ndarray | None:
    """BM3D (the ``bm3d`` package, a benchmark-only dependency) with σ estimated; None if not installed."""
    try:
        import bm3d
    except ImportError:
        return None
    x = noisy / scale
    sigma = _sigma(x, channel_axis)
    if channel_axis is None:
        out = bm3d.bm3d(x, sigma_psd=sigma)
    else:
        out = np.stack([bm3d.bm3d(c, sigma_psd=sigma) for c in np.moveaxis(x, channel_axis, 0)], axis=-1)
    return (np.asarray(out) * scale).astype(np.float32)


def anscombe(counts: np.ndarray, denoise) -> np.ndarray | None:
    """Poisson counts through the Anscombe transform, a Gaussian denoiser (σ = 1 there) and back
    (napari_dip.core.reference.anscombe); None when the denoiser is not installed (returns None)."""
    from napari_dip.core.reference import anscombe as transform

    unavailable = []

    def checked(a):
        d = denoise(a)
        if d is None:
            unavailable.append(True)
            return a
        return d

    result = transform(counts, checked)
    return None if unavailable else result


def synthetic_cells(size: int, seed: int = 0, cells: int | None = None) -> np.ndarray:
    """Smooth, low-contrast fluorescence-like content: blurred ellipses of varied brightness on a dim
    background, 0…255 float32. Seeded."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.full((size, size), 20.0)
    for _ in range(cells or max(6, size // 12)):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(size / 20, size / 7, 2)
        angle = rng.uniform(0, np.pi)
        c, s = np.cos(angle), np.sin(angle)
        u = ((yy - cy) * c + (xx - cx) * s) / ry
        v = (-(yy - cy) * s + (xx - cx) * c) / rx
        inside = u * u + v * v
        image += rng.uniform(60, 180) * np.exp(-np.clip(inside, 0, 50) ** 2)
        nucleus = inside < 0.25
        image[nucleus] += rng.uniform(10, 40)
    image = ndimage.gaussian_filter(image, size / 128.0)
    return (255.0 * image / image.max()).astype(np.float32)


def richardson_lucy(observed: np.ndarray, sigma_psf: float, channel_axis=None, iterations: int = 20) -> np.ndarray:
    """scikit-image's Richardson–Lucy deconvolution with the true PSF (intensities shifted to be ≥ 0)."""
    from skimage.restoration import richardson_lucy as rl

    from napari_dip.core.operators import gaussian_psf

    psf = gaussian_psf(sigma_psf, 2)
    planes = [observed] if channel_axis is None else [observed[..., c] for c in range(observed.shape[-1])]
    out = []
    for plane in planes:
        lo, hi = float(plane.min()), float(plane.max())
        pad = psf.shape[0]  # reflect-pad so that the zero padding of RL's convolutions stays off the image
        padded = np.pad((plane - lo) / (hi - lo), pad, mode="reflect")
        restored = rl(padded, psf, num_iter=iterations, clip=False)[pad:-pad, pad:-pad]
        out.append(restored * (hi - lo) + lo)
    return (out[0] if channel_axis is None else np.stack(out, axis=-1)).astype(np.float32)
