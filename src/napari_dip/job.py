"""One restoration job: its checked definition, and each work unit's preparation and fit.

:func:`define_job` checks the arguments against the arrays' shapes and dtypes (no pixel is read
from a lazy array) and returns a :class:`JobSpec`. The executor (``executor.py``) cuts the job into
work units (a plane, a tile, a plane × tile, a volume), reads each unit's pixels, and calls
:func:`prepare_unit` then :func:`fit_units_together`. No napari and no Qt here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .core import data, reference
from .core.speckle import SPECKLE_KINDS
from .core.tasks import get_task
from .errors import DIPInputError, DIPMemoryError
from .intensities import fit_intensities
from .metrics import unit_metrics
from .unit_reference import classical_estimate

if TYPE_CHECKING:  # torch is imported when a job runs, not when this module is
    from .core.operators import Operator
    from .core.presets import Settings
    from .core.tasks import Task
    from .options import RestoreOptions

MIN_SIDE = 8  # smallest image side (pixels) that a run accepts
MIN_PLANES = 3  # fewest Z planes that a volumetric run accepts (more where the network's filters need them)
# "auto": chosen from the image's mean-variance relation when the run starts (core/noise_fit.py)
NOISE_MODELS = ("auto", "gaussian", "poisson", "poisson-gaussian", "speckle")
# classical estimates a result may be mixed with (core/reference.py)
MIX_METHODS = ("biharmonic", "nl-means", "block-matching", "richardson-lucy")
NORMALISE_CHOICES = ("joint", "per-unit")  # one intensity mapping for the whole data, or one per work unit


@dataclass(kw_only=True)
class JobSpec:
    """Everything about a job that holds for all of its work units, checked before anything runs."""

    task: Task  # the registry entry (core/tasks.py)
    preset: str
    settings: Settings
    layout: data.PlaneLayout  # of the whole input
    factor: int
    axis_factors: tuple[int, ...]  # per spatial axis: how many times larger the result is
    operator: Operator
    noise: str  # one of NOISE_MODELS
    camera: dict[str, float | None]  # gain, offset, read_noise (None: estimated) for noise='poisson-gaussian'
    seed: int
    percentiles: tuple[float, float]
    normalise: str  # one of NORMALISE_CHOICES
    sources: dict[str, data.ArraySource]  # image, and the mask, guide and ground_truth given
    output_shape: tuple[int, ...]
    parameters: dict  # for the record
    noise_fit: dict | None = None  # noise='auto': the mean-variance fit that chose the model (NoiseFit.as_dict)
    # noise='speckle' (or 'auto', should it choose speckle): the data's kind (amplitude or intensity) and the
    # number of looks (None: estimated from the data)
    speckle: dict = field(default_factory=lambda: {"kind": "amplitude", "looks": None})

    @property
    def name(self) -> str:
        return self.task.name


def check_task(task):
    """The registered task called ``task``; DIPInputError naming the choices if there is none."""
    try:
        return get_task(task)
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None


def define_job(image, options: RestoreOptions) -> JobSpec:
    """Check a restoration's options against the arrays' shapes; DIPInputError says what to change."""
    spec = check_task(options.task)
    image = data.check_array(image)
    noise, camera, speckle = _noise_choice(options)
    if options.normalise not in NORMALISE_CHOICES:
        raise DIPInputError(f"normalise must be 'joint' (one intensity mapping for all the data) or 'per-unit' "
                            f"(one per plane or tile); got {options.normalise!r}")
    try:
        factor = spec.factor(options.factor)
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None
    volumetric = bool(options.volumetric or spec.volumetric)
    settings = task_settings(spec, options.preset, factor, options)
    layout = _job_layout(tuple(int(s) for s in image.shape), options.channel_axis, volumetric, spec, settings)
    axis_factors = spec.axis_factors(factor, layout.spatial_dims)
    output_shape = layout.output_shape(axis_factors)
    sources = _job_sources(image, options, spec, layout, output_shape, axis_factors, factor)
    psf_description, operator = _job_operator(options, spec, layout, axis_factors)
    _check_values(sources, spec, noise, layout.channel_axis)
    parameters = {
        "settings": settings.as_dict(), "factor": factor, "noise": noise, "channel_axis": layout.channel_axis,
        "volumetric": volumetric, "seed": options.seed, "psf": psf_description, "operator": operator.describe(),
        "normalise": options.normalise, "enlarged": dict(zip("ZYX"[-layout.spatial_dims:], axis_factors)),
    }
    if noise == "speckle":
        parameters["speckle"] = dict(speckle)
    return JobSpec(task=spec, preset=options.preset, settings=settings, layout=layout, factor=factor,
                   axis_factors=axis_factors, operator=operator, noise=noise, camera=camera, seed=options.seed,
                   percentiles=tuple(float(p) for p in options.percentiles), normalise=options.normalise,
                   sources=sources, output_shape=output_shape, parameters=parameters, speckle=speckle)


def _noise_choice(options: RestoreOptions) -> tuple[str, dict, dict]:
    """The noise model asked for (camera settings or a number of looks say which, under 'auto'), the camera
    and the speckle settings, checked."""
    noise = options.noise
    if noise not in NOISE_MODELS:
        raise DIPInputError(f"unknown noise model {noise!r}; use one of: {', '.join(NOISE_MODELS)}")
    camera = {"gain": options.gain, "offset": options.offset, "read_noise": options.read_noise}
    if noise == "auto" and any(v is not None for v in camera.values()):
        noise = "poisson-gaussian"  # camera settings say what the noise is
    if noise != "poisson-gaussian" and any(v is not None for v in camera.values()):
        raise DIPInputError("gain, offset and read_noise describe a camera: use them with noise='poisson-gaussian'")
    speckle = _check_speckle(options, noise)
    if noise == "auto" and options.looks is not None:
        noise = "speckle"  # a number of looks says what the noise is
    if options.gain is not None and not options.gain > 0:
        raise DIPInputError(f"the camera gain (ADU per photon) must be positive; got {options.gain}")
    if options.read_noise is not None and not options.read_noise >= 0:
        raise DIPInputError(f"the read noise σ (ADU) must be ≥ 0; got {options.read_noise}")
    return noise, camera, speckle


def _job_layout(shape: tuple, channel_axis, volumetric: bool, spec, settings) -> data.PlaneLayout:
    """How the image's axes are read, checked against the sizes the network needs."""
    channel_axis = data.normalise_channel_axis(channel_axis, len(shape))
    spatial_dims = 3 if volumetric else 2
    if len(shape) < spatial_dims + (channel_axis is not None):
        what = "a volume (Z, Y, X)" if volumetric else "an image (Y, X)"
        raise DIPInputError(f"expected {what}{' with a channel axis' if channel_axis is not None else ''}; "
                            f"got an array of shape {shape}"
                            + (f" ({spec.title} restores volumes)" if spec.volumetric else ""))
    layout = data.PlaneLayout(shape, channel_axis, spatial_dims)
    small = [s for s in layout.spatial_shape[-2:] if s < MIN_SIDE]
    if small:
        hint = ""
        if channel_axis is None and len(shape) >= 3 and shape[-1] in (3, 4):
            hint = " It looks like an RGB(A) image: pass channel_axis=-1."
        raise DIPInputError(f"the image is too small to restore: Y/X size {layout.spatial_shape[-2:]}, "
                            f"need at least {MIN_SIDE} pixels per side.{hint}")
    if volumetric:
        needed = max(MIN_PLANES, settings.network.coarsest_side)
        if layout.spatial_shape[0] < needed:
            raise DIPInputError(f"a volumetric run needs at least {needed} planes along Z; this volume has "
                                f"{layout.spatial_shape[0]} (Z, Y, X: {layout.spatial_shape}). Restore its planes "
                                "one by one instead (volumetric=False)")
    return layout


def _job_sources(image, options: RestoreOptions, spec, layout, output_shape: tuple, axis_factors: tuple,
                 factor: int) -> dict:
    """The arrays read with the image, unit by unit: the image, and the mask, guide and ground truth given."""
    channel_axis, spatial_dims, yx_scale = layout.channel_axis, layout.spatial_dims, axis_factors[-2:]
    sources = {"image": data.ArraySource.of(image, channel_axis, spatial_dims)}
    if options.mask is not None:
        sources["mask"] = _mask_source(data.check_array(options.mask, "mask"), layout.shape, channel_axis,
                                       spatial_dims)
    if "guide" in spec.accepts:
        if options.guide is None:
            raise DIPInputError("guided restoration needs a guide image (the flash photo, or the panchromatic band)")
        sources["guide"] = _guide_source(data.check_array(options.guide, "guide"), output_shape, channel_axis,
                                         spatial_dims, yx_scale, factor)
    elif options.guide is not None:
        raise DIPInputError(f"task {spec.name!r} takes no guide; use task='guided'")
    if options.ground_truth is not None:
        truth = data.check_array(options.ground_truth, "ground_truth")
        if tuple(truth.shape) != output_shape:
            raise DIPInputError(f"ground_truth has shape {tuple(truth.shape)} but the result will have shape "
                                f"{output_shape}")
        sources["ground_truth"] = data.ArraySource.of(truth, channel_axis, spatial_dims, yx_scale)
    return sources


def _job_operator(options: RestoreOptions, spec, layout, axis_factors: tuple):
    """(the PSF's description or None, the task's forward operator)."""
    psf_array, psf_description = None, None
    volumetric = layout.spatial_dims == 3
    if "psf" in spec.accepts:
        psf_array, psf_description = _psf(options.psf, options.psf_sigma, layout.spatial_dims, volumetric)
        hr_spatial = tuple(s * f for s, f in zip(layout.spatial_shape, axis_factors))
        if any(p > s for p, s in zip(psf_array.shape[::-1], hr_spatial[::-1])):
            raise DIPInputError(f"the PSF ({psf_array.shape}) is larger than the image ({hr_spatial}); "
                                "crop the PSF to its central part")
    try:
        return psf_description, spec.operator(axis_factors, layout.spatial_dims, psf_array)
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None


def task_settings(spec: Task, preset: str, factor: int, options: RestoreOptions) -> Settings:
    """The preset's settings with the options' and the caller's changes, checked; ``mix_with='auto'`` resolved to
    the strongest classical estimate installed."""
    from .core.presets import apply_overrides, get_settings

    try:
        settings = get_settings(spec.name, preset, factor)
        changes = dict(options.settings)
        for key, value in (("auto_stop", options.auto_stop), ("holdout_fraction", options.holdout_fraction),
                           ("iterations", options.iterations), ("snapshot_every", options.snapshot_every),
                           ("early_stopping", options.early_stopping)):
            if value is not None:
                changes[key] = bool(value) if key in ("auto_stop", "early_stopping") else value
        settings = apply_overrides(settings, changes)
    except ValueError as exc:
        raise DIPInputError(str(exc)) from None
    check_settings(settings)
    if settings.mix_with in ("auto", "block-matching"):
        available = reference.block_matching_available()  # a module attribute: tests replace it
        if settings.mix_with == "auto":  # the strongest classical denoiser installed (docs/benchmarks.md)
            settings = dataclasses.replace(settings, mix_with="block-matching" if available else "nl-means")
        elif settings.auto_stop and not available:
            raise DIPInputError("mix_with='block-matching' needs the bmnd package, which is not installed or does "
                                "not load: pip install bmnd (or mix_with='nl-means')")
    return settings


POSITIVE_SETTINGS = {"lr": "the learning rate, e.g. 0.01", "iterations": "a ceiling on the fit's steps",
                     "snapshot_every": "iterations between looks at the result",
                     "ensemble": "networks averaged", "student_steps": "the student's training steps"}


def check_settings(settings: Settings) -> None:
    """DIPInputError for a setting outside what the engine can run (before torch sees it), saying what is allowed."""
    for name, what in POSITIVE_SETTINGS.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise DIPInputError(f"{name} ({what}) must be positive; got {value!r}")
    for name in ("reg_noise_std", "stop_margin", "amortise_margin"):
        value = getattr(settings, name)
        if not isinstance(value, (int, float)) or not value >= 0:
            raise DIPInputError(f"{name} must be 0 or more; got {value!r}")
    if settings.ema is not None and not 0.0 <= settings.ema < 1.0:
        raise DIPInputError(f"ema is the weight of the running average of outputs: it must lie in [0, 1), e.g. "
                            f"0.99, or be None (off); got {settings.ema!r}")
    if not 0.0 < settings.holdout_fraction < 0.5:
        raise DIPInputError(f"holdout_fraction is the share of measured pixels kept out of the fit to judge it: "
                            f"it must lie in (0, 0.5), e.g. 0.05; got {settings.holdout_fraction}")
    if settings.mix_with not in (None, "auto", *MIX_METHODS):
        raise DIPInputError(f"mix_with must be one of auto, {', '.join(MIX_METHODS)} or None; "
                            f"got {settings.mix_with!r}")
    if settings.photon_loss not in ("deviance", "stabilised"):
        raise DIPInputError(f"photon_loss must be 'deviance' or 'stabilised'; got {settings.photon_loss!r}")
    if settings.channels_last not in (True, False, "auto"):
        raise DIPInputError(f"channels_last must be true, false or auto; got {settings.channels_last!r}")
    if settings.auto_stop and settings.early_stopping:
        raise DIPInputError("choose one stopping rule: auto_stop (held-out pixels) or early_stopping (ES-WMV)")


def _check_speckle(options: RestoreOptions, noise: str) -> dict:
    """The speckle options (kind, looks) checked: DIPInputError says what to change."""
    if options.speckle not in SPECKLE_KINDS:
        raise DIPInputError(f"speckle must be 'amplitude' (the magnitude of the radar signal) or 'intensity' (its "
                            f"square, power); got {options.speckle!r}")
    looks = options.looks
    if looks is not None:
        if noise not in ("auto", "speckle"):
            raise DIPInputError("looks= is the number of looks of radar speckle: use it with noise='speckle'")
        if not (isinstance(looks, (int, float)) and np.isfinite(looks) and looks >= 1):
            raise DIPInputError(f"looks must be a number ≥ 1 (1 for single-look data; None: estimated from the "
                                f"image); got {looks!r}")
        looks = float(looks)
    return {"kind": options.speckle, "looks": looks}


def _psf(psf, psf_sigma, spatial_dims, volumetric):
    """The PSF array and its description for the record."""
    from .core.operators import gaussian_psf

    if psf is None and psf_sigma is None:
        raise DIPInputError("deconvolution needs a PSF: pass psf=array or psf_sigma=pixels")
    if psf is not None:
        psf_array = data.as_image(psf, "psf").astype(np.float64)
        if psf_array.ndim not in (2, spatial_dims):
            raise DIPInputError(f"the PSF must be 2D{' or 3D' if volumetric else ''}; got shape {psf_array.shape}")
        return psf_array, f"array {psf_array.shape}"
    if psf_sigma <= 0:
        raise DIPInputError(f"psf_sigma must be positive; got {psf_sigma}")
    return gaussian_psf(psf_sigma, 2), f"gaussian sigma {psf_sigma}"


def _without(shape, axis):
    return tuple(s for i, s in enumerate(shape) if i != axis)


def _mask_source(mask, image_shape, channel_axis, spatial_dims):
    """How the mask's axes map onto the image's: its whole shape, or without the channel axis, or fewer
    leading axes (one mask for every plane)."""
    shape = tuple(mask.shape)
    if shape == image_shape:
        return data.ArraySource.of(mask, channel_axis, spatial_dims)
    without_channels = _without(image_shape, channel_axis)
    if spatial_dims <= len(shape) <= len(without_channels) and without_channels[len(without_channels)
                                                                                - len(shape):] == shape:
        return data.ArraySource.of(mask, None, spatial_dims)
    raise DIPInputError(f"the mask has shape {shape} but the image has shape {image_shape}; "
                        f"the mask must have shape {without_channels} (or {image_shape})")


def _guide_source(guide, output_shape, channel_axis, spatial_dims, yx_scale, factor):
    """How the guide's axes map onto the result's grid: without channels, or with a channel axis of its own
    (last, or where the image has its); fewer leading axes apply to every plane."""
    shape = tuple(guide.shape)
    out_without_channels = _without(output_shape, channel_axis)

    def covers(candidate):  # a suffix of the result's grid that includes every spatial axis
        n = len(candidate)
        return spatial_dims <= n <= len(out_without_channels) and out_without_channels[-n:] == candidate

    if covers(shape):
        return data.ArraySource.of(guide, None, spatial_dims, yx_scale)
    if len(shape) > spatial_dims and covers(shape[:-1]):
        return data.ArraySource.of(guide, len(shape) - 1, spatial_dims, yx_scale)
    if channel_axis is not None and len(shape) == len(output_shape) and _without(shape, channel_axis) == \
            out_without_channels:
        return data.ArraySource.of(guide, channel_axis, spatial_dims, yx_scale)
    raise DIPInputError(f"the guide has shape {shape}; it must cover the result's grid {out_without_channels} "
                        f"(optionally with a channel axis)" + (f", i.e. {factor}x the image's Y/X size"
                                                               if factor > 1 else ""))


def _check_values(sources, spec, noise, channel_axis):
    """The checks that need pixel values, on arrays held in memory (a lazy array is checked unit by unit)."""
    image = sources["image"].array
    mask = sources.get("mask")
    if data.is_lazy(image) or (mask is not None and data.is_lazy(mask.array)):
        return
    values = image.astype(np.float32, copy=False)
    finite = np.isfinite(values)
    if not finite.any():
        raise DIPInputError("the image has no finite pixel (all NaN or inf): nothing is left to restore from; "
                            "check that the right image or layer was passed (NaN marks missing pixels, so some "
                            "must be measured)")
    missing = ~finite
    if mask is not None:
        marked = np.asarray(mask.array)
        if marked.dtype.kind in "fc" and np.isnan(marked).any():
            raise DIPInputError("the mask has NaN values: a mask holds 0 for measured pixels and nonzero values for "
                                "the pixels to fill; to mark missing pixels by NaN, put the NaN in the image instead "
                                "and pass no mask")
        marked = marked != 0
        if mask.channel_axis is None and channel_axis is not None:
            from_end = channel_axis - values.ndim  # the channel axis, counted from the end
            if -from_end <= marked.ndim + 1:
                marked = np.expand_dims(marked, from_end)
        missing = missing | np.broadcast_to(marked, missing.shape)
    if "mask" in spec.needs and not missing.any():
        raise DIPInputError(NOTHING_TO_FILL)
    if missing.all():
        raise DIPInputError("the mask hides every pixel: nothing is left to fit; "
                            "nonzero mask values mark the pixels to fill, so invert your mask")
    check_not_negative(noise, values[~missing])


def check_not_negative(noise: str, measured: np.ndarray) -> None:
    """DIPInputError for negative ``measured`` values where the noise model needs values ≥ 0."""
    if noise in NEGATIVE_VALUES and measured.size and measured.min() < 0:
        raise DIPInputError(NEGATIVE_VALUES[noise])


NOTHING_TO_FILL = "the mask marks no pixel as missing: paint the region to fill (nonzero = missing) or pass NaN pixels"
# the noise models whose values cannot be negative, and what to do when they are
NEGATIVE_VALUES = {
    "poisson": "the Poisson noise model needs photon counts ≥ 0, but the image has negative values; for camera data "
               "(ADU) use noise='poisson-gaussian', else noise='gaussian'",
    "speckle": "the speckle noise model needs amplitudes or intensities ≥ 0, but the image has negative values; pass "
               "the magnitude of complex data (np.abs) or undo a log (dB) scale: 10 ** (dB / 10) gives intensity",
}


# ---------------------------------------------------------------------------------------------
# intensities: one mapping for the whole data (from a sample) or one per unit


def unit_layout(spec: JobSpec, piece: np.ndarray) -> data.PlaneLayout:
    """The layout of a unit's piece as the executor reads it: spatial axes, then channels (if any)."""
    channel_axis = piece.ndim - 1 if spec.layout.channel_axis is not None else None
    return data.PlaneLayout(piece.shape, channel_axis, spec.layout.spatial_dims)


def missing_planes(spec: JobSpec, pieces: dict) -> tuple[data.PlaneLayout, np.ndarray, np.ndarray]:
    """The unit's layout, its planes (P, C, *spatial) float32 and where they are missing (non-finite or masked)."""
    layout = unit_layout(spec, pieces["image"])
    planes = layout.to_planes(pieces["image"])  # a new float32 array: the caller's image is not touched
    missing = ~np.isfinite(planes)
    if "mask" in pieces:
        mask = pieces["mask"] != 0
        if mask.shape == pieces["image"].shape:
            missing = missing | (layout.to_planes(mask) > 0)
        else:
            mask_layout = data.PlaneLayout(mask.shape, None, layout.spatial_dims)
            missing = missing | (mask_layout.to_planes(mask) > 0)
    return layout, planes, missing


# ---------------------------------------------------------------------------------------------
# one unit


@dataclass
class UnitJob:
    """One work unit, ready to fit: its planes normalised, its missing pixels known."""

    spec: JobSpec
    plane: int  # the unit's plane number in the whole job (seeds its held-out pixels)
    layout: data.PlaneLayout  # of the unit's piece (channels last)
    planes: np.ndarray  # (1, C, *spatial) normalised measurement, 0 where missing
    known: np.ndarray | None  # (1, 1 or C, *spatial) 1 = measured
    normalisation: data.Normalisation
    noise_estimate: dict
    guide_planes: np.ndarray | None
    ground_truth: np.ndarray | None  # the unit's truth, laid out as its result
    input_image: np.ndarray
    missing_pixels: int
    device: object = None


@dataclass(frozen=True)
class Skipped:
    """A unit that is not restored, and why (for the record); ``error`` is what a job of this unit alone says."""

    reason: str
    error: str


NO_MEASURED_PIXEL = Skipped("no measured pixel here: not restored (the input is kept, missing pixels as the mean)",
                            "the image has no measured pixel (all NaN, inf or masked): nothing is left to fit")


def prepare_unit(spec: JobSpec, pieces: dict, plane: int, normalisation=None) -> UnitJob | Skipped:
    """A :class:`UnitJob` from the unit's pieces (as ``ArraySource.read`` returns them), or :class:`Skipped`
    when the unit needs no run. ``normalisation``: (Normalisation, noise-estimate dict) fitted on the
    whole data, or None to fit this unit's own."""
    layout, planes, missing = missing_planes(spec, pieces)
    if missing.all():
        return NO_MEASURED_PIXEL
    if "mask" in spec.task.needs and not missing.any():
        return Skipped("nothing to fill here", NOTHING_TO_FILL)
    check_not_negative(spec.noise, planes[~missing])
    known = None if not missing.any() else (~missing).astype(np.float32)
    if known is not None and known.shape[1] > 1 and (known == known[:, :1]).all():
        known = known[:, :1].copy()

    normalisation, estimate = normalisation if normalisation is not None else fit_intensities(spec, planes, missing)
    estimate = dict(estimate)
    planes = normalisation.forward(planes)
    if spec.noise in ("poisson", "poisson-gaussian"):
        np.clip(planes, 0.0, None, out=planes)  # read noise can dip below the offset; counts cannot
    planes[missing] = 0.0
    if spec.noise == "gaussian":
        from .core.quality import gaussian_noise

        sigma, variance_relative_se = gaussian_noise(planes, None if not missing.any() else
                                                     (~missing).astype(np.float32))
        estimate.update({"sigma": sigma * normalisation.span, "sigma_normalised": sigma,
                         "how": "wavelet median (finest diagonal Haar band)",
                         "variance_relative_se": variance_relative_se})

    guide_planes = None
    if "guide" in pieces:
        guide = pieces["guide"]
        guide_layout = data.PlaneLayout(guide.shape, guide.ndim - 1 if guide.ndim > layout.spatial_dims else None,
                                        layout.spatial_dims)
        guide_planes = guide_layout.to_planes(guide)
        if not np.isfinite(guide_planes).all():
            raise DIPInputError("the guide has NaN or inf pixels; fill them first")
        guide_planes = data.fit_normalisation(guide_planes).forward(guide_planes)
    truth = pieces["ground_truth"].astype(np.float32) if "ground_truth" in pieces else None
    return UnitJob(spec, plane, layout, planes, known, normalisation, estimate, guide_planes, truth,
                   pieces["image"], int(missing.sum()) if known is not None else 0)


def fallback(spec: JobSpec, pieces: dict) -> np.ndarray:
    """What a unit shows before, or without, its restoration: the input, missing pixels as the mean of the
    measured ones (0 if none), enlarged by repetition where the result is larger; laid out as its result."""
    layout, planes, missing = missing_planes(spec, pieces)
    measured = planes[~missing]
    planes[missing] = measured.mean() if measured.size else 0.0
    for axis, f in enumerate(spec.axis_factors):
        if f > 1:
            planes = np.repeat(planes, f, axis=2 + axis)
    return layout.from_planes(planes)


@dataclass
class UnitStep:
    """One look at a unit's fit: the loop state and the unit's result so far, laid out as its result."""

    state: object
    image: np.ndarray
    metrics: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    mixing: dict | None = None


def fit_units_together(jobs: list[UnitJob], should_stop, start_from=None):
    """Fit one unit, or several of one job side by side in one network (core/loop.py ``fit_units``: units of one
    shape, the light decoder); yields (index in ``jobs``, :class:`UnitStep`) per loop state, a unit's last with
    ``state.done``. ``start_from``: for one unit, a fitted neighbour's ``core.loop.FittedState`` to start from
    instead of a random initialisation."""
    from .core.loop import fit_units

    made = [_problem(job) for job in jobs]
    job = jobs[0]
    try:
        for unit, state in fit_units([problem for problem, _, _ in made], job.spec.settings, seed=job.spec.seed,
                                     device=job.device, should_stop=should_stop, start_from=start_from):
            problem, as_result, mixing = made[unit]
            yield unit, _step(jobs[unit], state, as_result, mixing, problem.reference)
    except Exception as exc:  # out of memory becomes a message that says what to do
        _raise_if_out_of_memory(exc, job, len(jobs))
        raise


def _problem(job: UnitJob):
    """The unit's ``core.loop.Problem``, the function that lays a network output out as the unit's result, and
    the mixing record."""
    import torch

    from .core.loop import Problem
    from .core.noise import PoissonNoise, SpeckleNoise, StabilisedPoissonNoise, get_noise_model

    spec, layout, settings = job.spec, job.layout, job.spec.settings
    noise = get_noise_model(spec.noise)
    if isinstance(noise, SpeckleNoise):
        noise = SpeckleNoise(job.normalisation.span, job.noise_estimate["looks"])
    if settings.photon_loss == "stabilised" and isinstance(noise, PoissonNoise):
        noise = StabilisedPoissonNoise(job.noise_estimate["photons_at_1"], noise.name)
    axis_factor = spec.axis_factors
    # pad the measurement so that factor × its size suits the network (per axis: a thin Z is halved less often)
    sizes = settings.network.padding(tuple(n * f for n, f in zip(layout.spatial_shape, axis_factor)))
    meas_pads = [data.pad_amounts((n,), max(1, multiple // f), -(-minimum // f))[0]
                 for n, f, (multiple, minimum) in zip(layout.spatial_shape, axis_factor, sizes)]
    out_pads = [(b * f, a * f) for (b, a), f in zip(meas_pads, axis_factor)]

    target = data.pad_reflect(job.planes, meas_pads)
    known = data.pad_reflect(job.known, meas_pads) if job.known is not None else None
    guide = data.pad_reflect(job.guide_planes, out_pads) if job.guide_planes is not None else None
    heldout, known = _heldout(job, meas_pads, known)
    reference, reference_scored, mixing = classical_estimate(job, heldout, meas_pads, out_pads)
    problem = Problem(
        target=torch.from_numpy(target), out_channels=layout.channels,
        out_spatial=tuple(s * f for s, f in zip(target.shape[2:], axis_factor)),
        operator=spec.operator, known=None if known is None else torch.from_numpy(known),
        noise=noise, guide=None if guide is None else torch.from_numpy(guide), heldout=heldout,
        noise_variance=_as_tensor(noise.variance(target, job.noise_estimate)),
        reference=reference, reference_scored=reference_scored)
    return problem, _result_maker(job, out_pads), mixing


def _step(job: UnitJob, state, as_result, mixing, reference=None) -> UnitStep:
    """A loop state as a :class:`UnitStep`: the result so far laid out as the unit's, scored against the truth when
    there is one (and, where a classical estimate r was mixed in, the network's own x of the kept r + w·(x − r))."""
    result = as_result(state.estimate)
    metrics = {}
    if job.ground_truth is not None:
        metrics = unit_metrics(result, job)
        if state.best_iteration is not None and state.current is not None:
            # the iterate the estimate judges, so that estimate and truth can be compared
            metrics["psnr_current"] = unit_metrics(as_result(state.current), job, ssim=False)["psnr"]
        weight = getattr(state, "best_mix_weight", None)
        if reference is not None and weight:  # what the network alone gave, to show what the mix added
            kept = state.estimate.detach().float().cpu()
            network = reference + (kept - reference) / weight
            metrics["psnr_network"] = unit_metrics(as_result(network), job, ssim=False)["psnr"]
    return UnitStep(state, job.layout.from_planes(result[None]), metrics, _quality(state, result, job), mixing)


def _heldout(job: UnitJob, pads, known_padded):
    """The held-out pixels on the padded grid, and the known mask without their mirror images.

    Reflection padding copies pixels into the border; the copies of held-out pixels must not be fitted
    either, or their noise would leak into the fit.
    """
    import torch

    from .core.quality import heldout_mask

    settings = job.spec.settings
    if not settings.auto_stop:
        return None, known_padded
    plane_known = None if job.known is None else torch.from_numpy(job.known)
    mask = heldout_mask(job.planes.shape[2:], settings.holdout_fraction, job.spec.seed + job.plane,
                        plane_known).numpy()
    scored = np.pad(mask, [(0, 0), (0, 0)] + list(pads))
    mirrored = data.pad_reflect(mask, pads) - scored
    if mirrored.any():
        base = np.ones_like(scored) if known_padded is None else known_padded
        known_padded = (base * (1.0 - mirrored)).astype(np.float32)
    return torch.from_numpy(scored.astype(np.float32)), known_padded


def _result_maker(job: UnitJob, out_pads):
    """A function from a loop tensor (1, C, *padded) to the unit's result (C, *spatial), in the input's units.

    With ``keep_measured`` (inpainting), the measured pixels keep their measured values: only the missing ones
    are the network's.
    """
    measured = None
    if job.spec.settings.keep_measured and job.known is not None and all(f == 1 for f in job.spec.axis_factors):
        measured = np.broadcast_to(job.known[0] > 0, job.planes[0].shape)
        original = job.normalisation.inverse(job.planes[0])

    def as_result(tensor):
        plane = job.normalisation.inverse(data.crop(tensor.detach().float().cpu().numpy(), out_pads)[0])
        return plane if measured is None else np.where(measured, original, plane)

    return as_result


def _as_tensor(value):
    """A per-pixel numpy array as a tensor (the loop moves it to the device); a number as it is."""
    import torch

    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _quality(state, result: np.ndarray, job: UnitJob) -> dict:
    """The ground-truth-free estimate of a loop state, in the input's units.

    ``estimated_psnr`` takes the result's own intensity range as the peak (as the PSNR against a ground truth
    takes the truth's): the estimated MSE is of the measurement's grid (see core/quality.py).
    """
    from .core.quality import estimated_psnr

    if state.heldout_error is None:
        return {}
    span = job.normalisation.span
    peak = float(np.nanmax(result) - np.nanmin(result)) or span
    out = {"heldout_error": job.normalisation.mse_in_units(state.heldout_error, result),
           "chosen_iteration": state.best_iteration}
    if state.lowest_error_iteration is not None:
        out["lowest_error_iteration"] = state.lowest_error_iteration
    if state.best_mix_weight is not None:
        out["network_weight"] = state.best_mix_weight
    floor = resolvable_mse(job.noise_estimate)
    for key, mse in (("", state.estimated_mse), ("chosen_", state.best_estimated_mse)):
        if mse is not None:
            in_units = job.normalisation.mse_in_units(mse, result)
            out[f"{key}estimated_rmse"] = float(np.sqrt(max(in_units, 0.0)))
            out[f"{key}estimated_psnr"] = estimated_psnr(in_units, peak) if mse > floor else None
    if state.best_estimated_mse is not None and state.best_estimated_mse <= floor:
        out["estimate_note"] = NO_ESTIMATE
    return out


# the held-out error minus the noise variance came out below what the noise variance's own uncertainty resolves
# (docs/quality.md: seen on real fluorescence frames, and on smooth stacks at high noise, off by up to 11 dB)
NO_ESTIMATE = ("no estimated PSNR: the result's error is smaller than the uncertainty of the noise variance it is "
               "told apart from")
RESOLVED_SE = 2.0  # an estimated MSE is shown where it exceeds this many standard errors of the noise variance


def resolvable_mse(noise_estimate: dict) -> float:
    """The smallest estimated MSE (normalised units) worth a PSNR: :data:`RESOLVED_SE` standard errors of the
    noise variance subtracted from the held-out error (where that uncertainty is known: the Gaussian σ's); 0
    elsewhere."""
    relative = noise_estimate.get("variance_relative_se")
    if relative is None or "sigma_normalised" not in noise_estimate:
        return 0.0
    return RESOLVED_SE * float(relative) * float(noise_estimate["sigma_normalised"]) ** 2


def unit_quality(step: UnitStep) -> dict:
    """The record's word on how a unit's result was chosen (automatic stopping), from its last step."""
    quality, state = step.quality, step.state
    entry = {"chosen_iteration": quality.get("chosen_iteration"),
             "lowest_error_iteration": quality.get("lowest_error_iteration"), "iterations": state.iteration,
             "estimated_psnr": quality.get("chosen_estimated_psnr"),
             "estimated_rmse": quality.get("chosen_estimated_rmse"), "stop_reason": state.stop_reason}
    if "estimate_note" in quality:
        entry["estimate_note"] = quality["estimate_note"]
    if step.mixing is not None:
        mixing = step.mixing
        if mixing["used"]:
            mixing = dict(mixing, network_weight=quality.get("network_weight"))
        entry["mixed_with"] = mixing
    return entry


def _raise_if_out_of_memory(exc: Exception, job: UnitJob, units: int = 1):
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
        f"{shape} image with the {job.spec.preset!r} preset"
        + (f", {units} units fitted together. Try units_together=1, " if units > 1 else ". Try ")
        + "preset='fast', restore a smaller region, use tiling, or device='cpu' (slower, but has more memory).") \
        from None
