"""Public Python API: ``restore`` and ``restore_iter``.

Both take the same arguments. ``restore_iter`` returns a :class:`RestorationRun`:
iterate it for :class:`Snapshot` objects (one every ``snapshot_every``
iterations, and a final one), call ``run.stop()`` to end early, and read
``run.result`` afterwards. Inputs are checked before anything runs, and the
caller's arrays are never modified. The run itself is ``executor.py``'s: one
path for an image, a stack, tiles of a large image and lazy (dask, zarr) data.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from .errors import DIPInputError
from .executor import Restoration, RestorationRun, Snapshot
from .job import MIN_PLANES, MIN_SIDE, MIX_METHODS, NOISE_MODELS, NORMALISE_CHOICES
from .options import RestoreOptions, signature

__all__ = ["restore", "restore_iter", "restore_with", "start_restoration", "kept_summary", "RestoreOptions",
           "Restoration", "RestorationRun", "Snapshot",
           "MIN_SIDE", "MIN_PLANES", "NOISE_MODELS", "MIX_METHODS", "NORMALISE_CHOICES"]


def restore(image, task: str = "denoise", **options) -> Restoration:
    """Restore ``image`` by Deep Image Prior and return a :class:`Restoration`.

    The options are :class:`napari_dip.options.RestoreOptions`'s fields (``inspect.signature(restore)`` shows
    them with their defaults); any other keyword is a setting of the preset.

    Parameters
    ----------
    image : array_like
        The degraded image, any numeric dtype: (Y, X), (Y, X) with a channel axis,
        or a stack (…, Y, X) restored plane by plane (``volumetric=True`` for
        (…, Z, Y, X) volumes). NaN and inf pixels are treated as missing. A lazy
        array (dask, zarr, memory map) is read one plane or tile at a time.
    task : {'denoise', 'inpaint', 'superres', 'deconvolve', 'guided', 'axial-superres'}
        What degraded the image (core/tasks.py): noise; missing pixels; a lower
        resolution in Y/X; a blur; a guide image of the scene (flash photo,
        panchromatic band); a lower resolution along Z ('axial-superres' restores
        volumes).
    preset : str, default 'fast'
        Named settings; see ``napari_dip.core.presets.PRESETS``. 'paper'
        reproduces the official implementation (a GPU setting).
    mask : array_like, optional
        Nonzero = missing pixel to fill. Shape of the image without its channel
        axis, or of the whole image; fewer leading axes apply to every plane.
        Required for 'inpaint' unless the image has NaN pixels; optional
        elsewhere (the pixels are left out of the fit).
    factor : int, optional
        Super-resolution factor 2, 4 or 8 (default 4 for 'superres', 2 for
        'axial-superres'); for 'deconvolve' and 'guided', the measurement is
        also downsampled.
    psf : array_like, optional
        Point-spread function for 'deconvolve' (normalised to unit sum).
    psf_sigma : float, optional
        Gaussian PSF standard deviation in pixels, instead of ``psf``.
    guide : array_like, optional
        Guide image for 'guided' (flash photo; panchromatic band). It is the
        network input and must have the output's Y/X size.
    noise : {'auto', 'gaussian', 'poisson', 'poisson-gaussian', 'speckle'}
        Noise model, 'auto' by default: fit how the image's variance grows with
        its intensity in its flat regions and take 'speckle' when it grows with
        the square of the intensity, 'poisson-gaussian' when it rises, else
        'gaussian' (core/noise_fit.py; the record's ``parameters.noise_fit``
        says why). Or name one: squared error; Poisson likelihood for photon
        counts; camera data in ADU, counts = (ADU − offset) / gain plus
        Gaussian read noise, fitted as photon counts after that mapping; or
        radar speckle, the Gamma likelihood of the log intensity (``looks``,
        ``speckle``).
    channel_axis : int, optional
        Axis of colour channels or bands; None means no channel axis.
    volumetric : bool
        Restore (…, Z, Y, X) with a 3D network instead of plane by plane.
    iterations : int, optional
        Overrides the preset's iteration count (with automatic stopping, the
        ceiling).
    seed : int
        Seeds the network weights, input and jitter: the same seed gives the
        same result on the CPU.
    device : str
        'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'.
        On the CPU the run uses the cores other processes leave free, re-checked
        every two seconds, never more than ``torch.get_num_threads()``.
    ground_truth : array_like, optional
        Clean image of the output's shape: PSNR and SSIM are then reported.
    snapshot_every : int, optional
        Iterations between snapshots.
    early_stopping : bool, optional
        Turn ES-WMV early stopping (variance of the iterates) on or off.
    auto_stop : bool, optional
        Turn automatic stopping by held-out pixels on or off (on in the
        'fast' presets): the run keeps the result with the lowest estimated
        error and ends once it has clearly passed it.
    holdout_fraction : float, optional
        Share of the measured pixels left out of the fit to judge it, in
        (0, 0.5); default 0.1.
    gain, offset, read_noise : float, optional
        The camera of ``noise='poisson-gaussian'``: ADU per photon, the dark
        level in ADU and the read noise σ in ADU. Gain and offset are
        estimated from the image where not given.
    looks : float, optional
        The number of looks of ``noise='speckle'`` (1 for single-look radar
        data); estimated from the image's homogeneous regions where not
        given (the record says how).
    speckle : {'amplitude', 'intensity'}
        What speckled data hold: the radar signal's magnitude (default) or
        its square. Complex single-look data are accepted with
        ``noise='auto'`` or ``'speckle'``: their amplitude is restored.
    percentiles : (float, float)
        Intensity percentiles mapped to 0 and 1 for the network (of the
        logarithm, for speckle).
    tile_size : 'auto', int or None
        Restore Y/X in overlapping tiles of this side (input pixels), blended
        without seams. 'auto' tiles only when one run would need more than a
        quarter of the device's free memory; None never tiles. The record's
        ``tiling`` entry lists the tiles.
    overlap : int
        Pixels shared by neighbouring tiles. Make it larger than the PSF for
        deconvolution and than the holes for inpainting.
    normalise : {'joint', 'per-unit'}
        'joint': one intensity mapping for all planes and tiles, fitted on the
        whole data (on evenly spaced planes of data above 2**26 values), the
        same whether the data is in memory or on disk; 'per-unit': each plane
        or tile is mapped on its own.
    out : array_like, optional
        Zero-filled float32 array of the result's shape to add the result
        into, e.g. ``zarr.zeros(...)`` for a result larger than memory; the
        snapshots then show the current plane or tile only.
    memory_limit : float, optional
        Bytes of CPU memory counted as free by ``tile_size='auto'`` and
        ``workers='auto'`` (e.g. a dask worker's share).
    workers : 'auto' or int
        On the CPU, the planes or tiles of a job are fitted side by side in
        this many worker processes with one torch thread each (faster than
        one process with several threads, and steady beside other busy
        programs). 'auto': one per core that other processes leave free
        (at most ``torch.get_num_threads()``), as many as memory holds and
        as units can run at once; 1: one process. With ``warm_start``, the
        planes are split into one run of neighbouring planes per worker,
        the first of each starting from scratch. The record's
        ``cpu_threads`` says what ran.
    units_together : 'auto' or int
        Planes or tiles of one shape fitted together in one network call,
        each with its own part of the network, data term and automatic stop
        (as if fitted alone, to rounding; each from scratch). It fills a GPU
        that one small unit leaves idle. 'auto': on a GPU, as many as half the
        free memory holds, unless the planes warm-start from each other; on a
        CPU one (worker processes share the cores out instead). Needs a preset
        with the light network ('fast' for denoise, superres, deconvolve,
        axial-superres). The record's ``units_together`` says what ran.
    amortise : 'auto', True or False
        Teach once, apply everywhere (docs/large-images.md): DIP restores a
        few crops chosen to cover the data, a small U-Net learns degraded →
        restored from them and restores every plane in one pass, so the time
        stops growing with the data. A judge crop that the student never saw
        says how far it is below DIP; beyond ``amortise_margin`` (a setting,
        0.2 dB) more crops teach, then per-unit fitting takes over. 'auto':
        denoising, inpainting (2D), super-resolution and deconvolution, and
        axial super-resolution of volumes, with at least a megapixel (16 × 256²) in
        the result; True: amortise (an error where it
        cannot yet); False: every unit fitted by DIP. The record's ``amortised`` says what ran and why.
    **settings
        Any field of :class:`napari_dip.core.presets.Settings` (``lr``,
        ``reg_noise_std``, ``ema``, ``warm_start``, ``network_kind``,
        ``network_down`` …). ``warm_start`` (on in the 'fast' denoising
        preset): each plane of a stack (or each tile of a tiled stack) starts
        from the network that the same place of the plane before had at its
        kept result, instead of from scratch; the record's ``units`` say where
        each began.

    Returns
    -------
    Restoration
        ``.image``: float32 in the input's units and layout (×factor in Y/X
        for super-resolution); ``.record``: how it was made.

    Examples
    --------
    A noisy 32² image and a few iterations (a real run takes the preset's ceiling and stops by itself):

    >>> import numpy as np
    >>> import napari_dip
    >>> rng = np.random.default_rng(0)
    >>> clean = 100 + 80 * np.outer(np.hanning(32), np.hanning(32))
    >>> noisy = (clean + rng.normal(0, 10, clean.shape)).astype(np.float32)
    >>> result = napari_dip.restore(noisy, "denoise", noise="gaussian", iterations=20)
    >>> result.image.shape, result.image.dtype
    ((32, 32), dtype('float32'))
    >>> result.record.task, result.record.work_unit, result.record.iterations <= 20
    ('denoise', 'image', True)
    >>> result.record.parameters["noise"], result.record.units[0].restored
    ('gaussian', True)

    Super-resolution returns the larger image:

    >>> napari_dip.restore(noisy, "superres", factor=2, iterations=10).image.shape
    (64, 64)
    """
    return restore_with(image, RestoreOptions.from_keywords(task=task, **options))


def restore_with(image, options: RestoreOptions) -> Restoration:
    """:func:`restore` with its options as one :class:`RestoreOptions`."""
    run = start_restoration(image, options)
    for _ in run:
        pass
    return run.result


def restore_iter(image, task: str = "denoise", **options) -> RestorationRun:
    """Like :func:`restore`, but returns a :class:`RestorationRun` that yields snapshots.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_dip
    >>> noisy = np.random.default_rng(0).normal(100, 10, (32, 32)).astype(np.float32)
    >>> run = napari_dip.restore_iter(noisy, noise="gaussian", iterations=20, snapshot_every=5)
    >>> snapshots = list(run)  # or stop early: run.stop() keeps the best result so far
    >>> snapshots[0].image.shape, snapshots[-1].done, run.result.record.stop_reason.split(";")[0]
    ((32, 32), True, 'completed 20 iterations')
    """
    return start_restoration(image, RestoreOptions.from_keywords(task=task, **options))


def start_restoration(image, options: RestoreOptions) -> RestorationRun:
    """:func:`restore_iter` with its options as one :class:`RestoreOptions` (what the command line, the widgets
    and ``batch`` build)."""
    from .amortised import decide, start_amortised
    from .core.device import resolve_device
    from .executor import auto_tile_size, plan_units, start
    from .job import define_job

    _check_arguments(image, options)
    image, options, complex_note = complex_as_amplitude(image, options)
    spec = define_job(image, options)
    if complex_note:
        spec.parameters["complex_input"] = complex_note
    decision = decide(spec, options)
    torch_device = resolve_device(options.device)
    if decision.amortise:
        return start_amortised(image, options, spec, torch_device, decision)
    side = auto_tile_size(spec, torch_device, options.memory_limit, options.overlap) if options.tile_size == "auto" \
        else options.tile_size
    units, plan = plan_units(spec, side, options.overlap)
    run = start(spec, units, plan, torch_device, options)
    run.amortised = decision.as_dict()
    return run


restore_iter.__signature__ = signature(RestorationRun)
restore.__signature__ = signature(Restoration)


def complex_as_amplitude(image, options: RestoreOptions):
    """(image, options, note): complex radar data become their amplitude, restored with the speckle model; any
    other image as it is, with no note."""
    dtype = getattr(image, "dtype", None)
    if dtype is None or not np.issubdtype(np.dtype(dtype), np.complexfloating):
        return image, options, None
    if options.noise not in ("auto", "speckle"):
        raise DIPInputError(f"the image is complex: radar data are restored with noise='speckle' (their amplitude "
                            f"is taken); for other data pass its magnitude (np.abs) or real part. Got "
                            f"noise={options.noise!r}")
    options = dataclasses.replace(options, noise="speckle", speckle="amplitude")
    return abs(image), options, "complex: its amplitude |z| was restored, with the speckle model"


def _check_arguments(image, options: RestoreOptions):
    """The image, and the options that decide how a run is set up (tiling, workers, intensity range), checked
    before anything else: tiling is decided before the image is read."""
    tile_size, overlap, percentiles = options.tile_size, options.overlap, options.percentiles
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
    for name, value, auto, one in (("workers", options.workers, "one worker process per free core",
                                    "no worker processes"),
                                   ("units_together", options.units_together, "as many as memory holds on a GPU",
                                    "one unit at a time")):
        if not (value == "auto" or (isinstance(value, whole) and not isinstance(value, bool) and value >= 1)):
            raise DIPInputError(f"{name} must be 'auto' ({auto}) or a whole number ≥ 1 (1: {one}); got {value!r}")
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


def noise_summary(parameters: dict) -> str:
    """The noise model a run used, in words, from a record's ``parameters``: with noise='auto', why it was
    chosen, e.g. 'noise: poisson-gaussian, chosen from the image (the variance grows with the signal: 8.3× from
    dark to bright pixels)'."""
    fitted = parameters.get("noise_fit")
    text = f"noise: {parameters.get('noise')}"
    speckle = parameters.get("speckle") if parameters.get("noise") == "speckle" else None
    if speckle:
        looks = speckle.get("looks")
        if looks is None:
            said = "looks estimated per unit"
        else:
            said = f"{looks:.3g} look{'s' if looks != 1 else ''}"
            said += " estimated from the image" if speckle.get("looks_estimated") else ""
        text += f" ({speckle['kind']}, {said})"
    return text + (f", chosen from the image ({fitted['reason']})" if fitted else "")


def format_seconds(seconds: float) -> str:
    """A duration for people: '42 s', '3 min 05 s', '1 h 02 min'; '?' when it is not finite."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def stage_line(snapshot: Snapshot) -> str:
    """An amortised run's snapshot in words: its stage and the time left, e.g. 'student: step 300 of 1200 · about
    2 min 10 s left'."""
    text = snapshot.stage_detail or snapshot.stage
    if snapshot.seconds_left is not None and not snapshot.done:
        text += f" · about {format_seconds(snapshot.seconds_left)} left"
    return text


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
    elif quality.get("estimate_note"):
        text += f" ({quality['estimate_note']})"
    mixed = quality.get("mixed_with") or {}
    if mixed.get("used") and mixed.get("network_weight") is not None:
        text += f", mixed with {mixed['method']} (network weight {mixed['network_weight']:.2f})"
    return text
