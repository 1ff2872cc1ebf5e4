"""Public Python API: ``restore`` and ``restore_iter``.

Both take the same arguments. ``restore_iter`` returns a :class:`RestorationRun`:
iterate it for :class:`Snapshot` objects (one every ``snapshot_every``
iterations, and a final one), call ``run.stop()`` to end early, and read
``run.result`` afterwards. Inputs are checked before anything runs, and the
caller's arrays are never modified.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import DIPInputError, DIPMemoryError

MIN_SIDE = 8  # smallest image side (pixels) that a run accepts
MIN_PLANES = 3  # fewest Z planes that a volumetric run accepts (more where the network's filters need them)
NOISE_MODELS = ("gaussian", "poisson", "poisson-gaussian")
MIX_METHODS = ("biharmonic", "nl-means")  # classical estimates a result may be mixed with (core/reference.py)


@dataclass
class Snapshot:
    """One look at a running restoration.

    ``image`` is the whole result so far in the input's layout and intensity
    units (float32; planes not yet processed hold the input, enlarged by
    ``factor`` for super-resolution). ``iteration`` and ``total`` count within
    the current plane.
    """

    iteration: int
    total: int
    loss: float
    image: np.ndarray
    seconds: float
    plane: int = 0
    planes: int = 1
    metrics: dict = field(default_factory=dict)
    backtracks: int = 0
    done: bool = False
    stop_reason: str | None = None
    record: dict | None = None
    # ground-truth-free estimate (automatic stopping): estimated_psnr, estimated_rmse (input units),
    # heldout_error, chosen_iteration and the chosen result's chosen_estimated_psnr / _rmse; {} when off
    quality: dict = field(default_factory=dict)


@dataclass
class Restoration:
    """The result: ``image`` (float32, input units) and the run ``record``."""

    image: np.ndarray
    record: dict


class RestorationRun:
    """An iterable of snapshots with ``stop()``; ``result`` is set once it is exhausted."""

    def __init__(self, snapshots_factory, planes: int, iterations: int, device_description: str):
        self._stop = threading.Event()
        self.planes = planes
        self.iterations = iterations
        self.device_description = device_description
        self.result: Restoration | None = None
        self.last: Snapshot | None = None
        self._gen = snapshots_factory(self)

    def stop(self):
        """Ask the run to end; a final snapshot with the best result so far follows within one iteration."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def __iter__(self):
        return self

    def __next__(self) -> Snapshot:
        snapshot = next(self._gen)
        self.last = snapshot
        return snapshot

    def close(self):
        self._gen.close()


def restore(image, task: str = "denoise", **kwargs) -> Restoration:
    """Restore ``image`` by Deep Image Prior and return a :class:`Restoration`.

    Parameters
    ----------
    image : array_like
        The degraded image, any numeric dtype: (Y, X), (Y, X) with a channel axis,
        or a stack (…, Y, X) restored plane by plane (``volumetric=True`` for
        (…, Z, Y, X) volumes). NaN and inf pixels are treated as missing.
    task : {'denoise', 'inpaint', 'superres', 'deconvolve', 'guided'}
    preset : str, default 'fast'
        Named settings; see ``napari_dip.core.presets.PRESETS``. 'paper'
        reproduces the official implementation (a GPU setting).
    mask : array_like, optional
        Nonzero = missing pixel to fill. Shape of the image without its channel
        axis, or of the whole image. Required for 'inpaint' unless the image has
        NaN pixels; optional elsewhere (the pixels are left out of the fit).
    factor : int, optional
        Super-resolution factor 2, 4 or 8 (default 4 for 'superres'); for
        'deconvolve' and 'guided', the measurement is also downsampled.
    psf : array_like, optional
        Point-spread function for 'deconvolve' (normalised to unit sum).
    psf_sigma : float, optional
        Gaussian PSF standard deviation in pixels, instead of ``psf``.
    guide : array_like, optional
        Guide image for 'guided' (flash photo; panchromatic band). It is the
        network input and must have the output's Y/X size.
    noise : {'gaussian', 'poisson'}
        Noise model: squared error, or Poisson likelihood for photon counts.
    channel_axis : int, optional
        Axis of colour channels or bands; None means no channel axis.
    volumetric : bool
        Restore (…, Z, Y, X) with a 3D network instead of plane by plane.
    iterations : int, optional
        Overrides the preset's iteration count.
    seed : int
        Seeds the network weights, input and jitter: the same seed gives the
        same result on the CPU.
    device : str
        'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'.
    ground_truth : array_like, optional
        Clean image of the output's shape: PSNR and SSIM are then reported.
    snapshot_every : int, optional
        Iterations between snapshots.
    early_stopping : bool, optional
        Turn ES-WMV automatic early stopping on or off.
    percentiles : (float, float)
        Intensity percentiles mapped to 0 and 1 for the network.
    tile_size : 'auto', int or None
        Restore Y/X in overlapping tiles of this side (input pixels), blended
        without seams. 'auto' tiles only when one run would need more than a
        quarter of the device's free memory; None never tiles. The record's
        ``tiling`` entry lists the tiles.
    overlap : int
        Pixels shared by neighbouring tiles.
    **settings
        Any field of :class:`napari_dip.core.presets.Settings` (``lr``,
        ``reg_noise_std``, ``ema``, ``network_kind``, ``network_down`` …).

    Returns
    -------
    Restoration
        ``.image``: float32 in the input's units and layout (×factor in Y/X
        for super-resolution); ``.record``: how it was made.
    """
    run = restore_iter(image, task, **kwargs)
    for _ in run:
        pass
    return run.result


def restore_iter(image, task: str = "denoise", *, preset: str = "fast", mask=None, factor: int | None = None,
                 psf=None, psf_sigma: float | None = None, guide=None, noise: str = "gaussian",
                 channel_axis: int | None = None, volumetric: bool = False, iterations: int | None = None,
                 seed: int = 0, device: str = "auto", ground_truth=None, snapshot_every: int | None = None,
                 early_stopping: bool | None = None, auto_stop: bool | None = None,
                 holdout_fraction: float | None = None, gain: float | None = None, offset: float | None = None,
                 read_noise: float | None = None, percentiles=(0.0, 100.0), tile_size="auto",
                 overlap: int = 64, **settings) -> RestorationRun:
    """Like :func:`restore`, but returns a :class:`RestorationRun` that yields snapshots."""
    from .core.device import describe_device, resolve_device

    _check_arguments(image, tile_size, overlap, percentiles)
    if tile_size is not None and len(np.shape(image)) >= 2:  # with fewer axes, _prepare says what is wrong
        from .tiled import auto_tile_size, restore_tiled_iter

        arguments = dict(preset=preset, mask=mask, factor=factor, psf=psf, psf_sigma=psf_sigma, guide=guide,
                         noise=noise, channel_axis=channel_axis, volumetric=volumetric, iterations=iterations,
                         seed=seed, device=device, ground_truth=ground_truth, snapshot_every=snapshot_every,
                         early_stopping=early_stopping, auto_stop=auto_stop, holdout_fraction=holdout_fraction,
                         gain=gain, offset=offset, read_noise=read_noise, percentiles=percentiles, **settings)
        shape = np.shape(image)
        if tile_size == "auto":
            _check_task(task)
            side = auto_tile_size(shape, task, **arguments)
        else:
            side = int(tile_size)
        axis = None if channel_axis is None or not shape else channel_axis % len(shape)
        yx = [s for i, s in enumerate(shape) if i != axis][-2:]
        if side is not None and len(yx) == 2 and max(yx) > side:
            return restore_tiled_iter(image, task, tile_size=side, overlap=overlap, **arguments)

    job = _prepare(image, task, preset=preset, mask=mask, factor=factor, psf=psf, psf_sigma=psf_sigma,
                   guide=guide, noise=noise, channel_axis=channel_axis, volumetric=volumetric,
                   iterations=iterations, seed=seed, ground_truth=ground_truth, snapshot_every=snapshot_every,
                   early_stopping=early_stopping, auto_stop=auto_stop, holdout_fraction=holdout_fraction,
                   gain=gain, offset=offset, read_noise=read_noise, percentiles=percentiles, overrides=settings)
    torch_device = resolve_device(device)
    job.device = torch_device
    description = describe_device(torch_device)
    return RestorationRun(lambda run: _snapshots(job, run, description), job.layout.planes,
                          job.settings.iterations, description)


# ---------------------------------------------------------------------------------------------
# preparation: every check happens here, before any optimisation starts


@dataclass
class _Job:
    task: str
    preset: str
    settings: object
    layout: object
    planes: np.ndarray  # (P, C, *spatial) normalised measurement, NaN where missing
    known: np.ndarray | None  # (P, 1 or C, *spatial) 1 = measured
    normalisation: object
    factor: int
    operator: object
    noise: str
    seed: int
    guide_planes: np.ndarray | None
    ground_truth: np.ndarray | None
    input_image: np.ndarray
    parameters: dict
    noise_estimate: dict = field(default_factory=dict)
    device: object = None


def _check_task(task):
    """The registered task called ``task``; DIPInputError naming the choices if there is none."""
    from .core.tasks import get_task

    try:
        return get_task(task)
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None


def _check_arguments(image, tile_size, overlap, percentiles):
    """The arguments that decide how a run is set up (tiling, intensity range), checked before anything else:
    tiling is decided before the image is read."""
    if image is None:
        raise DIPInputError("no image was given (image is None): pass the image as an array, e.g. "
                            "napari_dip.restore(tifffile.imread('cells.tif'))")
    if isinstance(image, (str, os.PathLike)):
        raise DIPInputError(f"the image is a file name ({str(image)!r}): read the file first, e.g. "
                            "napari_dip.io.read_image(path)[0], and pass the array")
    try:
        np.shape(image)
    except ValueError as exc:  # e.g. nested lists of unequal lengths
        raise DIPInputError(f"image could not be read as an array: {exc}") from None
    whole = (int, np.integer)
    if not (tile_size is None or (isinstance(tile_size, str) and tile_size == "auto")
            or (isinstance(tile_size, whole) and not isinstance(tile_size, bool))):
        raise DIPInputError(f"tile_size must be 'auto' (tile only what would not fit in memory), a tile side in "
                            f"pixels such as 512, or None (never tile); got {tile_size!r}")
    if not isinstance(overlap, whole) or isinstance(overlap, bool) or overlap < 0:
        raise DIPInputError(f"overlap must be a whole number of pixels ≥ 0, such as 64; got {overlap!r}")
    try:
        low, high = (float(p) for p in percentiles) if not isinstance(percentiles, str) else (None, None)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not 0.0 <= low < high <= 100.0:
        raise DIPInputError(f"percentiles must be two numbers (low, high) with 0 ≤ low < high ≤ 100, the "
                            f"intensity percentiles mapped to 0 and 1, e.g. (0.5, 99.5), or (0, 100) for the "
                            f"full range; got {percentiles!r}")


def _prepare(image, task, *, preset, mask, factor, psf, psf_sigma, guide, noise, channel_axis, volumetric,
             iterations, seed, ground_truth, snapshot_every, early_stopping, auto_stop=None, holdout_fraction=None,
             gain=None, offset=None, read_noise=None, percentiles=(0.0, 100.0), overrides=None) -> _Job:
    from .core import data
    from .core.operators import BlurOperator, ComposedOperator, DownsampleOperator, IdentityOperator, gaussian_psf
    from .core.presets import apply_overrides, get_settings

    spec = _check_task(task)
    image = data.as_image(image)
    if noise not in NOISE_MODELS:
        raise DIPInputError(f"unknown noise model {noise!r}; use one of: {', '.join(NOISE_MODELS)}")
    camera = {"gain": gain, "offset": offset, "read_noise": read_noise}
    if noise != "poisson-gaussian" and any(v is not None for v in camera.values()):
        raise DIPInputError("gain, offset and read_noise describe a camera: use them with noise='poisson-gaussian'")
    if gain is not None and not gain > 0:
        raise DIPInputError(f"the camera gain (ADU per photon) must be positive; got {gain}")
    if read_noise is not None and not read_noise >= 0:
        raise DIPInputError(f"the read noise σ (ADU) must be ≥ 0; got {read_noise}")

    # --- factor
    try:
        factor = spec.factor(factor)
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None

    # --- settings
    try:
        settings = get_settings(task, preset, factor)
        changes = dict(overrides or {})
        if auto_stop is not None:
            changes["auto_stop"] = bool(auto_stop)
        if holdout_fraction is not None:
            changes["holdout_fraction"] = holdout_fraction
        if iterations is not None:
            changes["iterations"] = iterations
        if snapshot_every is not None:
            changes["snapshot_every"] = snapshot_every
        if early_stopping is not None:
            changes["early_stopping"] = bool(early_stopping)
        settings = apply_overrides(settings, changes)
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None
    if settings.iterations < 1:
        raise DIPInputError(f"iterations must be at least 1; got {settings.iterations}")
    if settings.snapshot_every < 1:
        raise DIPInputError(f"snapshot_every must be at least 1; got {settings.snapshot_every}")
    if not 0.0 < settings.holdout_fraction < 0.5:
        raise DIPInputError(f"holdout_fraction is the share of measured pixels kept out of the fit to judge it: "
                            f"it must lie in (0, 0.5), e.g. 0.05; got {settings.holdout_fraction}")
    if settings.mix_with not in (None, *MIX_METHODS):
        raise DIPInputError(f"mix_with must be one of {', '.join(MIX_METHODS)} or None; got {settings.mix_with!r}")
    if settings.auto_stop and settings.early_stopping:
        raise DIPInputError("choose one stopping rule: auto_stop (held-out pixels) or early_stopping (ES-WMV)")

    # --- layout
    channel_axis = data.normalise_channel_axis(channel_axis, image.ndim)
    spatial_dims = 3 if volumetric else 2
    needed = spatial_dims + (channel_axis is not None)
    if image.ndim < needed:
        what = "a volume (Z, Y, X)" if volumetric else "an image (Y, X)"
        raise DIPInputError(f"expected {what}{' with a channel axis' if channel_axis is not None else ''}; "
                            f"got an array of shape {image.shape}")
    layout = data.PlaneLayout(image.shape, channel_axis, spatial_dims)
    small = [s for s in layout.spatial_shape[-2:] if s < MIN_SIDE]
    if small:
        hint = ""
        if channel_axis is None and image.ndim >= 3 and image.shape[-1] in (3, 4):
            hint = " It looks like an RGB(A) image: pass channel_axis=-1."
        raise DIPInputError(f"the image is too small to restore: Y/X size {layout.spatial_shape[-2:]}, "
                            f"need at least {MIN_SIDE} pixels per side.{hint}")
    if volumetric:
        needed = max(MIN_PLANES, settings.network.coarsest_side)
        if layout.spatial_shape[0] < needed:
            raise DIPInputError(f"a volumetric run needs at least {needed} planes along Z; this volume has "
                                f"{layout.spatial_shape[0]} (Z, Y, X: {layout.spatial_shape}). Restore its planes "
                                "one by one instead (volumetric=False)")

    # --- missing pixels: the mask and non-finite values
    planes = layout.to_planes(image)  # new float32 array: the caller's image is not touched
    missing = ~np.isfinite(planes)
    if mask is not None:
        mask_planes = _mask_planes(mask, image.shape, layout, channel_axis)
        missing = missing | mask_planes
    if "mask" in spec.needs and not missing.any():
        raise DIPInputError("the mask marks no pixel as missing: paint the region to fill "
                            "(nonzero = missing) or pass NaN pixels")
    if not np.isfinite(planes).any():
        raise DIPInputError("the image has no finite pixel (all NaN or inf): nothing is left to restore from; "
                            "check that the right image or layer was passed (NaN marks missing pixels, so some "
                            "must be measured)")
    if missing.all():
        raise DIPInputError("the mask hides every pixel: nothing is left to fit; "
                            "nonzero mask values mark the pixels to fill, so invert your mask")
    known = None if not missing.any() else (~missing).astype(np.float32)
    if known is not None and known.shape[1] > 1 and (known == known[:, :1]).all():
        known = known[:, :1].copy()

    # --- intensities
    values = planes[~missing]
    if noise == "poisson" and values.size and values.min() < 0:
        raise DIPInputError("the Poisson noise model needs photon counts ≥ 0, but the image has negative "
                            "values; for camera data (ADU) use noise='poisson-gaussian', else noise='gaussian'")
    noise_estimate = {"model": noise}
    if noise == "gaussian":
        normalisation = data.fit_normalisation(values, percentiles)
    else:
        camera = _camera_model(planes, missing, gain, offset, read_noise) if noise == "poisson-gaussian" else \
            {"gain": 1.0, "effective_offset": 0.0}
        normalisation = data.fit_normalisation(values, percentiles, zero_low=True)
        # photon counts c = (y − effective offset) / gain map to c / (counts at 1) in the network's units
        normalisation = data.Normalisation(camera["effective_offset"],
                                           max(normalisation.high, camera["effective_offset"] + camera["gain"]))
        noise_estimate.update(camera)
        noise_estimate["photons_at_1"] = normalisation.span / camera["gain"]
    planes = normalisation.forward(planes)
    if noise != "gaussian":
        np.clip(planes, 0.0, None, out=planes)  # read noise can dip below the offset; counts cannot
    planes[missing] = 0.0
    if noise == "gaussian":
        from .core.quality import estimate_gaussian_sigma

        known_planes = None if not missing.any() else (~missing).astype(np.float32)
        sigma = estimate_gaussian_sigma(planes, known_planes)
        noise_estimate.update({"sigma": sigma * normalisation.span, "sigma_normalised": sigma,
                               "how": "wavelet median (finest diagonal Haar band)"})

    # --- operator
    operator = IdentityOperator()
    psf_description = None
    if "psf" in spec.accepts:
        if psf is None and psf_sigma is None:
            raise DIPInputError("deconvolution needs a PSF: pass psf=array or psf_sigma=pixels")
        if psf is not None:
            psf_array = data.as_image(psf, "psf").astype(np.float64)
            if psf_array.ndim not in (2, spatial_dims):
                raise DIPInputError(f"the PSF must be 2D{' or 3D' if volumetric else ''}; got shape {psf_array.shape}")
            psf_description = f"array {psf_array.shape}"
        else:
            if psf_sigma <= 0:
                raise DIPInputError(f"psf_sigma must be positive; got {psf_sigma}")
            psf_array = gaussian_psf(psf_sigma, 2)
            psf_description = f"gaussian sigma {psf_sigma}"
        hr_spatial = tuple(s * (factor if i >= spatial_dims - 2 else 1) for i, s in enumerate(layout.spatial_shape))
        if any(p > s for p, s in zip(psf_array.shape[::-1], hr_spatial[::-1])):
            raise DIPInputError(f"the PSF ({psf_array.shape}) is larger than the image ({hr_spatial}); "
                                "crop the PSF to its central part")
        try:
            operator = BlurOperator(psf_array)
        except ValueError as exc:
            raise DIPInputError(str(exc)) from None
    if factor > 1:
        down = DownsampleOperator(factor, spatial_dims)
        operator = down if isinstance(operator, IdentityOperator) else ComposedOperator(operator, down)

    out_shape = layout.output_shape(factor)

    # --- guide
    guide_planes = None
    if "guide" in spec.accepts:
        if guide is None:
            raise DIPInputError("guided restoration needs a guide image (the flash photo, or the panchromatic band)")
        guide_planes = _guide_planes(data.as_image(guide, "guide"), layout, out_shape, channel_axis, factor)
    elif guide is not None:
        raise DIPInputError(f"task {task!r} takes no guide; use task='guided'")

    # --- ground truth
    truth = None
    if ground_truth is not None:
        truth = data.as_image(ground_truth, "ground_truth")
        if truth.shape != out_shape:
            raise DIPInputError(f"ground_truth has shape {truth.shape} but the result will have shape {out_shape}")
        truth = truth.astype(np.float32)

    parameters = {
        "settings": settings.as_dict(), "factor": factor, "noise": noise, "channel_axis": channel_axis,
        "volumetric": volumetric, "seed": seed, "psf": psf_description, "operator": operator.describe(),
        "missing_pixels": int(missing.sum()) if known is not None else 0,
        "normalisation": {"low": normalisation.low, "high": normalisation.high, "percentiles": list(percentiles)},
        "noise_estimate": noise_estimate,
    }
    return _Job(task, preset, settings, layout, planes, known, normalisation, factor, operator, noise, seed,
                guide_planes, truth, image, parameters, noise_estimate)


def _camera_model(planes, missing, gain, offset, read_noise) -> dict:
    """Gain and effective offset of Poisson-Gaussian camera data: the user's values, else estimated."""
    from .core.quality import estimate_camera_gain_offset

    values = planes[~missing]
    model = {"gain": gain, "offset": offset, "read_noise": read_noise, "estimated": []}
    if gain is None or offset is None:
        filled = np.where(missing, np.median(values), planes)
        try:
            fitted_gain, fitted_offset = estimate_camera_gain_offset(filled)
        except ValueError as exc:
            raise DIPInputError(str(exc)) from None
        if gain is None:
            model["gain"], gain = fitted_gain, fitted_gain
            model["estimated"].append("gain")
        if offset is None:
            # the fitted line's zero already folds the read noise in (offset − read_noise² / gain)
            model["estimated"].append("offset")
            model["effective_offset"] = fitted_offset
    if offset is not None:
        if offset >= float(values.max()):
            raise DIPInputError(f"the camera offset {offset} is at or above every pixel value (max "
                                f"{float(values.max()):.4g}): nothing would be left to count; check the offset")
        model["effective_offset"] = offset - (read_noise or 0.0) ** 2 / gain
    if float(np.median(values)) <= model["effective_offset"]:
        raise DIPInputError(f"half the pixels lie below the camera offset ({model['effective_offset']:.4g}): "
                            "check offset= (the dark level, in ADU) or use noise='gaussian'")
    return model


def _mask_planes(mask, image_shape, layout, channel_axis):
    from .core import data

    mask = data.as_image(mask, "mask")
    if mask.shape == image_shape:
        return layout.to_planes(mask != 0) > 0
    without_channels = tuple(s for i, s in enumerate(image_shape) if i != channel_axis)
    if mask.shape == without_channels:
        mask_layout = data.PlaneLayout(mask.shape, None, layout.spatial_dims)
        return mask_layout.to_planes(mask != 0) > 0
    raise DIPInputError(f"the mask has shape {mask.shape} but the image has shape {image_shape}; "
                        f"the mask must have shape {without_channels} (or {image_shape})")


def _guide_planes(guide, layout, out_shape, channel_axis, factor):
    from .core import data

    out_without_channels = tuple(s for i, s in enumerate(out_shape) if i != channel_axis)
    if guide.shape == out_without_channels:
        guide_layout = data.PlaneLayout(guide.shape, None, layout.spatial_dims)
    elif guide.ndim == len(out_without_channels) + 1 and (
            guide.shape[:-1] == out_without_channels or (channel_axis is not None and guide.shape[
                :channel_axis] + guide.shape[channel_axis + 1:] == out_without_channels)):
        axis = -1 if guide.shape[:-1] == out_without_channels else channel_axis
        guide_layout = data.PlaneLayout(guide.shape, axis % guide.ndim, layout.spatial_dims)
    else:
        raise DIPInputError(f"the guide has shape {guide.shape}; it must cover the result's grid "
                            f"{out_without_channels} (optionally with a channel axis)"
                            + (f", i.e. {factor}x the image's Y/X size" if factor > 1 else ""))
    planes = guide_layout.to_planes(guide)
    if guide_layout.planes != layout.planes:
        raise DIPInputError("the guide must have as many planes as the image")
    if not np.isfinite(planes).all():
        raise DIPInputError("the guide has NaN or inf pixels; fill them first")
    return data.fit_normalisation(planes).forward(planes)


# ---------------------------------------------------------------------------------------------
# running


def _heldout(job: _Job, p: int, pads, known_padded):
    """The held-out pixels of plane ``p`` on the padded grid, and the known mask without their mirror images.

    Reflection padding copies pixels into the border; the copies of held-out pixels must not be fitted
    either, or their noise would leak into the fit.
    """
    import torch

    from .core import data
    from .core.quality import heldout_mask

    if not job.settings.auto_stop:
        return None, known_padded
    plane_known = None if job.known is None else torch.from_numpy(job.known[p:p + 1])
    mask = heldout_mask(job.planes.shape[2:], job.settings.holdout_fraction, job.seed + p, plane_known).numpy()
    scored = np.pad(mask, [(0, 0), (0, 0)] + list(pads))
    mirrored = data.pad_reflect(mask, pads) - scored
    if mirrored.any():
        base = np.ones_like(scored) if known_padded is None else known_padded
        known_padded = (base * (1.0 - mirrored)).astype(np.float32)
    return torch.from_numpy(scored.astype(np.float32)), known_padded


def _result_maker(job: _Job, p: int, out_pads):
    """A function from a loop tensor (1, C, *padded) to plane ``p`` of the result, in the input's units.

    With ``keep_measured`` (inpainting), the measured pixels keep their measured values: only the missing ones
    are the network's.
    """
    from .core import data

    measured = None
    if job.settings.keep_measured and job.known is not None and job.factor == 1:
        measured = np.broadcast_to(job.known[p] > 0, job.planes[p].shape)
        original = job.normalisation.inverse(job.planes[p])

    def as_result(tensor):
        plane = job.normalisation.inverse(data.crop(tensor.detach().float().cpu().numpy(), out_pads)[0])
        return plane if measured is None else np.where(measured, original, plane)

    return as_result


def _reference(job: _Job, p: int, heldout, meas_pads, out_pads):
    """The classical estimate of plane ``p`` to mix into the result (core/reference.py), if the settings ask.

    Returns (the estimate from every measured pixel, the same without the held-out pixels' values, a note for the
    record), padded like the network's output; the estimates are None, and the note says why, where none is used.
    """
    import torch

    from .core import data, reference
    from .core.operators import IdentityOperator

    method = job.settings.mix_with
    if method is None:
        return None, None, None
    if heldout is None or not isinstance(job.operator, IdentityOperator):
        return None, None, {"used": False, "method": method,
                            "why": "needs automatic stopping, and no resampling or blur in the task"}
    plane = job.planes[p]
    known = job.known[p] if job.known is not None else np.ones((1,) + plane.shape[1:], np.float32)
    excluded = data.crop(heldout.numpy(), meas_pads)[0]
    note = {"used": True, "method": method}
    if method == "biharmonic":
        gap = reference.mean_gap_distance(known)
        note["gap_distance"] = round(gap, 2)
        if job.known is None:
            return None, None, dict(note, used=False, why="no pixel is missing")
        if gap > reference.MAX_SCATTERED_GAP:
            return None, None, dict(note, used=False, why=(
                f"the gaps are wide (mean distance to a measured pixel {gap:.1f} px, more than "
                f"{reference.MAX_SCATTERED_GAP:g}): held-out pixels cannot judge a fill there"))
        estimates = [reference.biharmonic_fill(plane, k) for k in (known, known * (1.0 - excluded))]
    else:
        def denoise(x):
            if job.noise == "gaussian":
                return reference.nl_means(x, float(job.noise_estimate["sigma_normalised"]))
            # photon counts: Anscombe's transform makes the noise Gaussian with σ = 1
            photons = float(job.noise_estimate["photons_at_1"])
            return reference.anscombe(x * photons, lambda a: reference.nl_means(a, 1.0)) / photons

        unmeasured = 1.0 - known
        estimates = [denoise(reference.neighbour_mean_fill(plane, hidden))
                     for hidden in (unmeasured, np.maximum(unmeasured, excluded))]
    padded = [torch.from_numpy(data.pad_reflect(e[None], out_pads)) for e in estimates]
    return padded[0], padded[1], note


def _noise_variance(job: _Job, target: np.ndarray):
    """The measurement's noise variance in normalised units: σ̂² (Gaussian), or y / photons at 1 (Poisson)."""
    import torch

    estimate = job.noise_estimate
    if job.noise == "gaussian":
        return float(estimate["sigma_normalised"]) ** 2
    return torch.from_numpy(target / float(estimate["photons_at_1"]))


def _snapshots(job: _Job, run: RestorationRun, device_description: str):
    import torch

    from . import __version__
    from .core import data
    from .core.loop import Problem, fit

    layout, settings, factor = job.layout, job.settings, job.factor
    spatial_dims = layout.spatial_dims
    axis_factor = [factor if i >= spatial_dims - 2 else 1 for i in range(spatial_dims)]
    # pad the measurement so that factor × its size suits the network (per axis: a thin Z is halved less often)
    sizes = settings.network.padding(tuple(n * f for n, f in zip(layout.spatial_shape, axis_factor)))
    meas_pads = []
    for n, f, (multiple, minimum) in zip(layout.spatial_shape, axis_factor, sizes):
        meas_pads.append(data.pad_amounts((n,), max(1, multiple // f), -(-minimum // f))[0])
    out_pads = [(b * f, a * f) for (b, a), f in zip(meas_pads, axis_factor)]

    # the result so far: the input (enlarged for super-resolution) until a plane is restored
    current = job.normalisation.inverse(job.planes.copy())
    if job.known is not None:
        current = np.where(job.known > 0, current, np.nan)
        current = np.where(np.isnan(current), np.nanmean(current) if np.isfinite(current).any() else 0, current)
    for axis, f in enumerate(axis_factor):
        if f > 1:
            current = np.repeat(current, f, axis=2 + axis)
    current = current.astype(np.float32)

    start = time.perf_counter()
    iterations_done = []
    plane_quality = []
    stop_reason = None
    backtracks = 0
    metrics = {}
    for p in range(layout.planes):
        target = data.pad_reflect(job.planes[p:p + 1], meas_pads)
        known = data.pad_reflect(job.known[p:p + 1], meas_pads) if job.known is not None else None
        guide = data.pad_reflect(job.guide_planes[p:p + 1], out_pads) if job.guide_planes is not None else None
        heldout, known = _heldout(job, p, meas_pads, known)
        reference, reference_scored, mixing = _reference(job, p, heldout, meas_pads, out_pads)
        problem = Problem(
            target=torch.from_numpy(target), out_channels=layout.channels,
            out_spatial=tuple(s * f for s, f in zip(target.shape[2:], axis_factor)),
            operator=job.operator, known=None if known is None else torch.from_numpy(known),
            noise="gaussian" if job.noise == "gaussian" else "poisson",
            guide=None if guide is None else torch.from_numpy(guide), heldout=heldout,
            noise_variance=_noise_variance(job, target), reference=reference, reference_scored=reference_scored)
        states = fit(problem, settings, seed=job.seed, device=job.device, should_stop=lambda: run.stop_requested)
        as_result = _result_maker(job, p, out_pads)
        try:
            for state in states:
                current[p] = as_result(state.estimate)
                image = layout.from_planes(current).copy()
                metrics = _metrics(current[p], job, layout, p) if job.ground_truth is not None else {}
                if metrics and state.best_iteration is not None and state.current is not None:
                    # the iterate the estimate judges, so that estimate and truth can be compared
                    metrics["psnr_current"] = _metrics(as_result(state.current), job, layout, p, ssim=False)["psnr"]
                quality = _quality(state, current[p], job)
                snapshot = Snapshot(state.iteration, state.total, state.loss, image,
                                    time.perf_counter() - start, p, layout.planes, metrics,
                                    backtracks + state.backtracks, quality=quality)
                if state.done:
                    plane_quality.append(dict(quality, iteration=state.iteration, stop_reason=state.stop_reason,
                                              mixing=mixing))
                    iterations_done.append(state.iteration)
                    backtracks += state.backtracks
                    stop_reason = state.stop_reason
                    if run.stop_requested or p == layout.planes - 1:
                        break
                yield snapshot
        except Exception as exc:  # out of memory becomes a message that says what to do
            _raise_if_out_of_memory(exc, job)
            raise
        if run.stop_requested:
            if layout.planes > 1:
                stop_reason = f"stopped by user at plane {p + 1} of {layout.planes}"
            break

    image = layout.from_planes(current).copy()
    if job.ground_truth is not None:
        latest = metrics.get("psnr_current")
        metrics = _metrics_all(image, job)
        if latest is not None and layout.planes == 1:
            metrics["psnr_current"] = latest  # the last iterate's, beside the kept result's
    record = {
        "task": job.task, "preset": job.preset, "parameters": job.parameters,
        "iterations": int(sum(iterations_done)), "iterations_per_plane": iterations_done,
        "planes": layout.planes, "stop_reason": stop_reason, "backtracks": backtracks,
        "seconds": round(time.perf_counter() - start, 3), "device": device_description,
        "version": {"napari_dip": __version__, "torch": torch.__version__, "numpy": np.__version__},
        "metrics": metrics, "quality": _quality_record(plane_quality, settings),
        "input": {"shape": list(job.input_image.shape), "dtype": str(job.input_image.dtype)},
        "output": {"shape": list(image.shape), "dtype": "float32"},
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    run.result = Restoration(image, record)
    yield Snapshot(iterations_done[-1] if iterations_done else 0, settings.iterations, snapshot.loss, image,
                   record["seconds"], snapshot.plane, layout.planes,
                   metrics, backtracks, True, stop_reason, record, snapshot.quality)


def _quality(state, plane_result: np.ndarray, job: _Job) -> dict:
    """The ground-truth-free estimate of a loop state, in the input's units.

    ``estimated_psnr`` takes the result's own intensity range as the peak (as the PSNR against a ground truth
    takes the truth's): the estimated MSE is of the measurement's grid (see core/quality.py).
    """
    from .core.quality import estimated_psnr

    if state.heldout_error is None:
        return {}
    span = job.normalisation.span
    peak = float(np.nanmax(plane_result) - np.nanmin(plane_result)) or span
    out = {"heldout_error": state.heldout_error * span ** 2, "chosen_iteration": state.best_iteration}
    if state.best_mix_weight is not None:
        out["network_weight"] = state.best_mix_weight
    for key, mse in (("", state.estimated_mse), ("chosen_", state.best_estimated_mse)):
        if mse is not None:
            out[f"{key}estimated_rmse"] = float(np.sqrt(max(mse, 0.0))) * span
            out[f"{key}estimated_psnr"] = estimated_psnr(mse * span ** 2, peak)
    return out


def _quality_record(plane_quality: list, settings) -> dict:
    """The record's ``quality`` entry: how the result was chosen, per plane, and the estimate there."""
    if not settings.auto_stop:
        return {"automatic_stopping": False}
    planes = [{"chosen_iteration": q.get("chosen_iteration"), "iterations": q.get("iteration"),
               "estimated_psnr": q.get("chosen_estimated_psnr"), "estimated_rmse": q.get("chosen_estimated_rmse"),
               "stop_reason": q.get("stop_reason"), **_mixing(q)} for q in plane_quality]
    entry = {"automatic_stopping": True, "holdout_fraction": settings.holdout_fraction,
             "method": "held-out pixels (squared error minus the noise variance)", "planes": planes}
    if len(planes) == 1:
        entry.update({k: v for k, v in planes[0].items() if k != "stop_reason"})
    return entry


def kept_summary(record_quality: dict | None) -> str:
    """How the kept result was chosen, in words, from a record's ``quality`` entry.

    E.g. 'iteration 27, estimated PSNR 25.2 dB, mixed with nl-means (network weight 0.62)', or
    'iterations 310, 420 (one per plane or tile)'; '' when automatic stopping was off.
    """
    quality = record_quality or {}
    if not quality.get("automatic_stopping", True):
        return ""
    units = quality.get("units") or quality.get("planes") or []
    if quality.get("chosen_iteration") is None and len(units) == 1:
        quality = units[0]
    if quality.get("chosen_iteration") is None:
        chosen = [u["chosen_iteration"] for u in units if u.get("chosen_iteration") is not None]
        if not chosen:
            return ""
        return "iterations " + ", ".join(map(str, chosen[:5])) + (", …" if len(chosen) > 5 else "") + \
            " (one per plane or tile)"
    text = f"iteration {quality['chosen_iteration']}"
    if quality.get("estimated_psnr") is not None:
        text += f", estimated PSNR {quality['estimated_psnr']:.1f} dB"
    mixed = quality.get("mixed_with") or {}
    if mixed.get("used") and mixed.get("network_weight") is not None:
        text += f", mixed with {mixed['method']} (network weight {mixed['network_weight']:.2f})"
    return text


def _mixing(plane_quality: dict) -> dict:
    """The record's word on the classical estimate mixed into a plane's result: {} when the settings ask for none."""
    mixing = plane_quality.get("mixing")
    if mixing is None:
        return {}
    if mixing["used"]:
        mixing = dict(mixing, network_weight=plane_quality.get("network_weight"))
    return {"mixed_with": mixing}


def _metric_pair(result, truth, channel_axis, ssim: bool = True):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    data_range = float(truth.max() - truth.min()) or 1.0
    with np.errstate(divide="ignore"):
        psnr = peak_signal_noise_ratio(truth, result, data_range=data_range)
    psnr = None if not np.isfinite(psnr) else float(psnr)  # identical images: JSON has no infinity
    if not ssim:
        return {"psnr": psnr}
    min_side = min(truth.shape[-2:]) if channel_axis is None else min(
        s for i, s in enumerate(truth.shape) if i != channel_axis % truth.ndim)
    win = min(7, min_side if min_side % 2 else min_side - 1)
    similarity = structural_similarity(truth, result, data_range=data_range, channel_axis=channel_axis,
                                       win_size=win)
    return {"psnr": psnr, "ssim": float(similarity)}


def _metrics(plane_result, job, layout, p, ssim: bool = True):
    """PSNR/SSIM (or PSNR alone) of one plane (C, *spatial) against the same plane of the ground truth."""
    truth = layout.to_planes(job.ground_truth)[p]
    if layout.spatial_dims == 2:
        return _metric_pair(plane_result, truth, 0, ssim)
    return _metric_pair(plane_result[0], truth[0], None, ssim)  # volumes: the first channel


def _metrics_all(image, job):
    truth = job.ground_truth
    channel_axis = job.layout.channel_axis
    metrics = _metric_pair(image.astype(np.float32), truth, channel_axis)
    if job.input_image.shape == truth.shape:
        degraded = job.input_image.astype(np.float32)
        finite = np.isfinite(degraded)
        if finite.all():
            base = _metric_pair(degraded, truth, channel_axis)
            metrics.update({"psnr_input": base["psnr"], "ssim_input": base["ssim"]})
    return metrics


def _raise_if_out_of_memory(exc: Exception, job: _Job):
    text = str(exc)
    if not ("out of memory" in text.lower() or "can't allocate memory" in text.lower()
            or type(exc).__name__ == "OutOfMemoryError"):
        return
    needed = None
    match = re.search(r"Tried to allocate ([\d.]+ [KMGT]i?B)", text)
    if match:
        needed = match.group(1)
    match = re.search(r"you tried to allocate (\d+) bytes", text)
    if match:
        needed = f"{int(match.group(1)) / 2**30:.2f} GiB"
    shape = "x".join(map(str, job.layout.spatial_shape))
    raise DIPMemoryError(
        f"out of memory on {job.device}: one more block of {needed or 'unknown size'} was needed for a "
        f"{shape} image with the {job.preset!r} preset. Try preset='fast', restore a smaller region, "
        f"use tiling, or device='cpu' (slower, but has more memory).") from None
