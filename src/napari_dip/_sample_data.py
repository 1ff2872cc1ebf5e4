"""Sample data for File → Open Sample → napari-dip, made without network access.

Each function returns napari layer data tuples: the degraded image to restore,
the mask where the task needs one, and the clean image as a hidden layer so
that it can be chosen as the ground truth (PSNR and SSIM then update live).
Images are kept at 256 × 256 or smaller so that a run on a CPU takes minutes.
"""

from __future__ import annotations

import numpy as np
from skimage import data, transform

SIDE = 256


def _rng(seed):
    return np.random.default_rng(seed)


def _hidden_truth(image, name, **kwargs):
    return (image, {"name": name, "visible": False, **kwargs}, "image")


def noisy_camera():
    """The cameraman at 256 × 256 with Gaussian noise σ = 25 (of 255)."""
    clean = transform.resize(data.camera(), (SIDE, SIDE), anti_aliasing=True, preserve_range=True).astype(np.float32)
    noisy = clean + _rng(0).normal(0, 25, clean.shape).astype(np.float32)
    return [
        _hidden_truth(clean, "camera (clean)", contrast_limits=(0, 255)),
        (noisy, {"name": "camera (noisy, σ=25)", "contrast_limits": (0, 255)}, "image"),
    ]


def text_mask(shape, text="DEEP IMAGE PRIOR", rows=5, font_size=None):
    """A boolean mask of lines of text drawn over an image of ``shape`` (Y, X)."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = shape
    font_size = font_size or max(10, height // 14)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1 has a single bitmap size
        font = ImageFont.load_default()
    for row in range(rows):
        y = int((row + 0.5) * height / rows) - font_size // 2
        draw.text((width // 20 + (row % 2) * width // 10, y), text, fill=255, font=font)
    return np.asarray(canvas) > 0


def astronaut_with_text():
    """The astronaut at 256 × 256 (RGB) with text written over it, and the text mask as Labels."""
    clean = transform.resize(data.astronaut(), (SIDE, SIDE), anti_aliasing=True, preserve_range=True)
    clean = clean.astype(np.uint8)
    mask = text_mask((SIDE, SIDE))
    corrupted = clean.copy()
    corrupted[mask] = (255, 255, 255)
    return [
        _hidden_truth(clean, "astronaut (clean)", rgb=True),
        (corrupted, {"name": "astronaut with text", "rgb": True}, "image"),
        (mask.astype(np.uint8), {"name": "text mask", "opacity": 0.5}, "labels"),
    ]


def low_resolution_cat(factor=4):
    """Chelsea the cat, 256 × 256 cropped, shrunk ×4 to 64 × 64 (RGB); the original is the ground truth."""
    cat = data.chelsea()[20:276, 100:356]
    small = transform.resize(cat, (SIDE // factor, SIDE // factor), anti_aliasing=True, preserve_range=True)
    return [
        _hidden_truth(cat, "chelsea (high resolution)", rgb=True, scale=(1 / factor, 1 / factor),
                      translate=(-(factor - 1) / (2 * factor),) * 2),
        (small.astype(np.uint8), {"name": f"chelsea (low resolution, 1/{factor})", "rgb": True}, "image"),
    ]


def _gaussian_psf(sigma, size):
    y, x = np.mgrid[-(size // 2):size // 2 + 1, -(size // 2):size // 2 + 1]
    psf = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return (psf / psf.sum()).astype(np.float32)


def fluorescence_poisson(peak_photons=20, psf_sigma=1.5):
    """Synthetic cells (blobs) and filaments, blurred by a Gaussian PSF, with Poisson photon noise.

    The layers hold photon counts. The hidden layers are the sharp object, the
    blurred expected counts (the ground truth for denoising) and the PSF (for
    deconvolution).
    """
    from scipy import ndimage

    rng = _rng(1)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    obj = np.zeros((SIDE, SIDE), np.float32)
    for _ in range(12):  # cells: bright rims, dimmer inside
        cy, cx = rng.uniform(20, SIDE - 20, 2)
        radius = rng.uniform(8, 20)
        distance = np.hypot(y - cy, x - cx)
        obj += 0.3 * (distance < radius) + 0.7 * (np.abs(distance - radius) < 1.5)
    for _ in range(10):  # filaments: thin random curves
        t = np.linspace(0, 1, 400)
        start, bend, end = rng.uniform(0, SIDE, (3, 2))
        curve = np.outer((1 - t) ** 2, start) + np.outer(2 * t * (1 - t), bend) + np.outer(t**2, end)
        rows, cols = np.clip(curve.astype(int), 0, SIDE - 1).T
        obj[rows, cols] += 1.0
    obj = np.clip(obj, 0, 1.5) / 1.5 + 0.05  # a little background
    psf = _gaussian_psf(psf_sigma, 15)
    expected = ndimage.convolve(obj, psf, mode="reflect") * peak_photons
    counts = rng.poisson(expected).astype(np.float32)
    return [
        _hidden_truth((obj * peak_photons).astype(np.float32), "fluorescence (sharp object)", colormap="magma"),
        _hidden_truth(expected.astype(np.float32), "fluorescence (expected counts)", colormap="magma"),
        _hidden_truth(psf, "PSF (Gaussian σ=1.5)", colormap="magma"),
        (counts, {"name": "fluorescence (Poisson noise)", "colormap": "magma"}, "image"),
    ]


def pansharpening_pair(factor=4):
    """Four bands at 1/4 resolution, (4, 64, 64), and a sharp panchromatic band, (256, 256), of one scene.

    For the Guided restoration widget: channel axis 0, guide 'panchromatic',
    factor ×4. The full-resolution bands are the hidden ground truth.
    """
    rgb = transform.resize(data.coffee()[:, 100:500], (SIDE, SIDE), anti_aliasing=True).astype(np.float32)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    near_infrared = np.clip(0.6 * green + 0.5 * red - 0.3 * blue + 0.2, 0, 1)
    bands = np.stack([blue, green, red, near_infrared])
    panchromatic = bands[:3].mean(axis=0)
    small = transform.resize(bands, (4, SIDE // factor, SIDE // factor), anti_aliasing=True).astype(np.float32)
    # the fine grid is drawn so that each block of factor × factor pixels covers one coarse pixel
    offset = -(factor - 1) / (2 * factor)
    fine = {"scale": (1 / factor, 1 / factor), "translate": (offset, offset)}
    return [
        _hidden_truth(bands, "bands (full resolution)", scale=(1,) + fine["scale"],
                      translate=(0,) + fine["translate"]),
        (panchromatic, {"name": "panchromatic", **fine}, "image"),
        (small, {"name": f"bands (1/{factor} resolution)", "metadata": {"bands": ["blue", "green", "red", "nir"]}},
         "image"),
    ]


def scan_line_gaps(shape, period=16, seed=2):
    """A Landsat-7-SLC-off-like gap mask: tilted stripes, no gap at the centre column, widest at the edges."""
    height, width = shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    offset = _rng(seed).uniform(0, period)
    # the gap width grows linearly with the distance from the centre of the scene
    gap_width = 0.45 * period * np.abs(x - width / 2) / (width / 2)
    phase = np.mod(y + 0.08 * x + offset, period)
    return phase < gap_width


def multispectral_scan_line_gaps():
    """Four bands (blue, green, red, synthetic near-infrared) of shape (4, 256, 256), with scan-line gaps = 0.

    Choose channel axis 0 in the Inpaint widget. The gap mask is also given as Labels.
    """
    rgb = transform.resize(data.coffee()[:, 100:500], (SIDE, SIDE), anti_aliasing=True).astype(np.float32)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    near_infrared = np.clip(0.6 * green + 0.5 * red - 0.3 * blue + 0.2, 0, 1)  # plausible-looking fourth band
    bands = (np.stack([blue, green, red, near_infrared]) * 10000).astype(np.uint16)  # reflectance × 10⁴
    gaps = scan_line_gaps((SIDE, SIDE))
    with_gaps = bands.copy()
    with_gaps[:, gaps] = 0  # Landsat's fill value
    return [
        _hidden_truth(bands, "multispectral (complete)"),
        (with_gaps, {"name": "multispectral (SLC-off gaps)", "metadata": {"bands": ["blue", "green", "red", "nir"]}},
         "image"),
        (gaps.astype(np.uint8), {"name": "scan-line gaps", "opacity": 0.5}, "labels"),
    ]
