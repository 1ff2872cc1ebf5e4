"""One quality check per task: a short run with a small network must beat the degraded input clearly.

These are the method's defining property, measured: each test degrades a crop of a bundled
scikit-image photo in a known way and asserts the PSNR gain of the restoration in dB.
"""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from scipy import ndimage
from skimage import data, draw, transform
from skimage.metrics import peak_signal_noise_ratio

import napari_dip
from napari_dip.core.operators import DownsampleOperator, gaussian_psf

pytestmark = pytest.mark.slow

# A small skip network with the paper's loop settings, pinned here so that retuning the CPU presets
# does not change what these tests measure.
SMALL = dict(network_kind="skip", network_down=(16, 32, 64), network_up=(16, 32, 64), network_skip=(4, 4, 4),
             input_channels=8, reg_noise_std=1 / 30, lr=0.01, lr_schedule="constant", ema_warmup=True,
             cpu_bf16=False, device=DEVICE, seed=0, auto_stop=False)


@pytest.fixture(scope="module")
def clean():
    return data.camera()[100:164, 180:244].astype(np.float32)


@pytest.fixture(scope="module")
def cells():
    """Synthetic fluorescence-like image: bright discs with soft edges on a dim background."""
    rng = np.random.default_rng(0)
    img = np.full((64, 64), 20.0)
    for _ in range(7):
        centre, radius = rng.uniform(6, 58, 2), rng.uniform(3, 9)
        rr, cc = draw.disk(tuple(centre), radius, shape=img.shape)
        img[rr, cc] += rng.uniform(60, 150)
    return ndimage.gaussian_filter(img, 0.7).astype(np.float32)


def psnr(truth, image, data_range=255):
    return peak_signal_noise_ratio(truth, image, data_range=data_range)


def test_denoise_gaussian_gains_4_db(clean):
    noisy = clean + np.random.default_rng(0).normal(0, 25, clean.shape).astype(np.float32)
    result = napari_dip.restore(noisy, "denoise", iterations=300, early_stopping=False, **SMALL)
    assert psnr(clean, result.image) > psnr(clean, noisy) + 4


def test_denoise_poisson_counts_gains_3_db(clean):
    rate = clean / 255 * 20 + 1  # a dim acquisition: 1 to 21 photons per pixel
    counts = np.random.default_rng(1).poisson(rate).astype(np.uint16)
    result = napari_dip.restore(counts, "denoise", noise="poisson", iterations=300, early_stopping=False, **SMALL)
    gain = peak_signal_noise_ratio(rate, result.image, data_range=20) - peak_signal_noise_ratio(
        rate, counts.astype(np.float32), data_range=20)
    assert gain > 3


def test_inpaint_half_the_pixels_missing_gains_10_db(clean):
    missing = np.random.default_rng(2).random(clean.shape) < 0.5
    damaged = np.where(missing, 0, clean).astype(np.float32)
    result = napari_dip.restore(damaged, "inpaint", mask=missing, iterations=300, **SMALL)
    assert psnr(clean, result.image) > psnr(clean, damaged) + 10
    # the known pixels are fitted, not replaced
    assert np.abs(result.image[~missing] - clean[~missing]).mean() < 8


def test_guided_restoration_with_a_flash_image_gains_5_db(clean):
    noisy = clean + np.random.default_rng(3).normal(0, 25, clean.shape).astype(np.float32)
    flash = np.clip(clean * 1.2 + 10, 0, 255)  # same scene, other lighting, no noise
    result = napari_dip.restore(noisy, "guided", guide=flash, iterations=200, **SMALL)
    assert psnr(clean, result.image) > psnr(clean, noisy) + 5


def test_superres_x2_beats_bicubic_and_nearest_enlargement(cells):
    low = DownsampleOperator(2)(torch.from_numpy(cells)[None, None])[0, 0].numpy()
    result = napari_dip.restore(low, "superres", factor=2, iterations=400, **SMALL)
    span = float(np.ptp(cells))
    nearest = np.repeat(np.repeat(low, 2, 0), 2, 1)
    bicubic = transform.resize(low, cells.shape, order=3, mode="edge")
    assert psnr(cells, result.image, span) > psnr(cells, nearest, span) + 5
    assert psnr(cells, result.image, span) > psnr(cells, bicubic, span) + 1


def test_deconvolve_gaussian_blur_gains_3_db(cells):
    blurred = ndimage.convolve(cells, gaussian_psf(2.0), mode="mirror")
    blurred = blurred + np.random.default_rng(4).normal(0, 1, cells.shape).astype(np.float32)
    result = napari_dip.restore(blurred, "deconvolve", psf_sigma=2.0, iterations=400, ema=None,
                                backtracking=False, **SMALL)
    span = float(np.ptp(cells))
    assert psnr(cells, result.image, span) > psnr(cells, blurred, span) + 3
