"""The ``napari-dip`` command line: ``restore`` an image file, or run the ``demo``.

Each subcommand is registered by a small ``add_*_command`` function that sets
the ``handler`` it runs. The options that control a restoration are added by
:func:`add_restore_options` and turned into one
:class:`napari_dip.RestoreOptions` by :func:`restore_options`, so that other
commands take the same options with the same meaning.

Exit codes: 0 done; 2 bad input or usage (one line on stderr, no traceback);
1 a file could not be written; 130 interrupted by Ctrl-C (after writing the
best result so far, when a run had started).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .amortised import AMORTISE_WORDS, amortised_summary
from .api import kept_summary, noise_summary, stage_line
from .core import reference
from .core.tasks import TASKS as TASK_REGISTRY
from .errors import DIPInputError, DIPMemoryError
from .io import enlarged_metadata, format_for, read_image, write_image, write_json
from .job import NOISE_MODELS
from .options import RestoreOptions

EXIT_ERROR = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

# From the task registry, which (unlike core.presets) does not import torch: quick to load for --help.
TASKS = tuple(TASK_REGISTRY)
DEMO_TASKS = tuple(name for name, task in TASK_REGISTRY.items() if not task.volumetric)  # the demo is a 2D photo


def _preset_names() -> str:
    """The presets of each task, for --help; tasks with the same presets share one entry."""
    by_presets: dict = {}
    for task in TASK_REGISTRY.values():
        by_presets.setdefault(task.presets, []).append(task.name)
    return "; ".join(f"{', '.join(names)}: {', '.join(presets)}" for presets, names in by_presets.items())


PRESET_NAMES = _preset_names()
# --set cannot pass arrays: these come from files through their own options
_ARRAY_ARGUMENTS = {"image": "INPUT", "mask": "--mask", "psf": "--psf", "guide": "--guide",
                    "ground_truth": "--ground-truth"}


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.handler(args)
    except (DIPInputError, DIPMemoryError) as exc:
        return _fail(exc, EXIT_INPUT)
    except OSError as exc:  # a folder that cannot be written to, a full disk
        return _fail(exc, EXIT_ERROR)
    except KeyboardInterrupt:  # before a run started, or a second Ctrl-C
        return _fail("interrupted", EXIT_INTERRUPTED)


def _fail(message, code: int) -> int:
    text = " ".join(str(message).split())  # one line, whatever the message held
    print(f"napari-dip: error: {text}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="napari-dip",
        description="Deep Image Prior restoration: denoising, inpainting, super-resolution, "
                    "deconvolution and guided restoration of one image, with no training data.")
    parser.add_argument("--version", action="version", version=f"napari-dip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_restore_command(commands)
    add_demo_command(commands)
    add_batch_command(commands)
    return parser


# ---------------------------------------------------------------------------------------------
# options shared by the commands that run a restoration


def add_run_options(parser) -> None:
    """Options of any run: preset, iterations, seed, device, extra settings, quiet."""
    parser.add_argument("--preset", default="fast",
                        help=f"named settings (default: fast, for CPUs). {PRESET_NAMES}")
    parser.add_argument("--iterations", type=int, metavar="N", help="iterations per plane (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same result "
                                                            "on the CPU (default: 0)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="any further setting of restore(), repeatable; values are Python literals, e.g. "
                             "--set lr=0.005 --set network_down=8,16 --set early_stopping=False "
                             "--set percentiles=1,99.5")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")


def add_restore_options(parser) -> None:
    """Every option that controls a restoration (not the input and output files)."""
    parser.add_argument("--task", choices=TASKS, default="denoise",
                        help="what to restore (default: denoise): " + "; ".join(
                            f"{t.name}: {t.title}" for t in TASK_REGISTRY.values()))
    parser.add_argument("--mask", metavar="FILE", help="missing pixels to fill: nonzero = missing "
                                                       "(required for inpaint unless the image has NaN pixels)")
    parser.add_argument("--factor", type=int, metavar="F", help="enlargement factor: " + "; ".join(
        f"{t.name} {', '.join(map(str, [f for f in t.factors if f > 1]))} (default {t.default_factor})"
        for t in TASK_REGISTRY.values() if t.takes_factor) + " (for deconvolve and guided, the measurement is "
        "also downsampled by F)")
    psf = parser.add_mutually_exclusive_group()
    psf.add_argument("--psf", metavar="FILE", help="point-spread function image for deconvolve")
    psf.add_argument("--psf-sigma", type=float, metavar="S", help="Gaussian PSF sigma in pixels, for deconvolve")
    parser.add_argument("--guide", metavar="FILE", help="guide image for guided (flash photo, panchromatic band), "
                                                        "at the result's size")
    parser.add_argument("--noise", choices=NOISE_MODELS, default="auto",
                        help="noise model: auto (default: gaussian, poisson-gaussian or speckle, chosen from how the "
                             "image's variance grows with its intensity), gaussian (squared error), poisson (photon "
                             "counts), poisson-gaussian (camera values in ADU: counts times a gain, plus an offset "
                             "and read noise) or speckle (radar: multiplicative, see --looks and --speckle)")
    parser.add_argument("--gain", type=float, metavar="G",
                        help="poisson-gaussian: camera gain in ADU per photon (default: estimated from the image)")
    parser.add_argument("--offset", type=float, metavar="ADU",
                        help="poisson-gaussian: camera offset (dark level) in ADU (default: estimated)")
    parser.add_argument("--read-noise", type=float, metavar="ADU",
                        help="poisson-gaussian: read-noise standard deviation in ADU (default: estimated with "
                             "the offset)")
    parser.add_argument("--looks", type=float, metavar="L",
                        help="speckle: the number of looks, 1 for single-look radar data (default: estimated from "
                             "the image's homogeneous regions)")
    parser.add_argument("--speckle", choices=("amplitude", "intensity"), default="amplitude",
                        help="speckle: what the data hold, the radar signal's magnitude (default) or its square")
    parser.add_argument("--no-auto-stop", dest="auto_stop", action="store_const", const=False, default=None,
                        help="run every iteration and keep the last result, instead of judging each iterate on "
                             "held-out pixels, keeping the best one and stopping once it no longer improves "
                             "(default: the preset's setting)")
    parser.add_argument("--holdout-fraction", type=float, metavar="F",
                        help="share of the measured pixels held out to judge the fit for automatic stopping, "
                             "in (0, 0.5) (default: the preset's, 0.1)")
    parser.add_argument("--channel-axis", type=_channel_axis, default="auto", metavar="N",
                        help="axis of colour channels or bands, or 'none' (default: from the file: the last "
                             "axis of RGB(A) PNG/JPEG, the S or C axis of a TIFF)")
    parser.add_argument("--volumetric", action="store_true",
                        help="restore (..., Z, Y, X) as volumes with a 3D network, not plane by plane")
    parser.add_argument("--ground-truth", metavar="FILE", help="clean image of the result's size: "
                                                               "PSNR and SSIM are reported")
    parser.add_argument("--tile-size", type=_tile_size, default="auto", metavar="PX",
                        help="restore images in tiles of PX x PX input pixels; 'auto' (default) tiles only "
                             "images too large for a quarter of the device's memory, 'none' never tiles")
    parser.add_argument("--overlap", type=int, default=64, metavar="PX",
                        help="pixels shared by neighbouring tiles, blended smoothly (default: 64)")
    parser.add_argument("--amortise", choices=tuple(AMORTISE_WORDS), default="auto",
                        help="teach once, apply everywhere: DIP restores a few crops, a student network learns "
                             "from them and restores every plane, judged on a crop it never saw (falls back to "
                             "per-unit fitting where it loses more than 0.2 dB); auto (default: denoising, and axial "
                             "super-resolution of volumes, with a megapixel or more in the result: 16 x 256^2), "
                             "on, off (every unit fitted by DIP)")
    add_run_options(parser)


def _channel_axis(text: str):
    """An axis number, None for 'none', or 'auto' (the default: from the file)."""
    if text.lower() in ("none", "auto"):
        return None if text.lower() == "none" else "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an axis number, 'none' or 'auto', got {text!r}") from None


def parse_settings(pairs) -> dict:
    """``['lr=0.005', 'network_kind=hourglass']`` -> ``{'lr': 0.005, 'network_kind': 'hourglass'}``."""
    settings = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not key:
            raise DIPInputError(f"--set takes KEY=VALUE, got {pair!r}")
        if key in _ARRAY_ARGUMENTS:
            raise DIPInputError(f"--set {key}: give it as a file with {_ARRAY_ARGUMENTS[key]}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):  # a plain word such as 'hourglass' is a string
            value = text.strip()
        settings[key] = value
    return settings


def run_options(args, **options) -> RestoreOptions:
    """The :class:`RestoreOptions` of ``options`` and of the options of :func:`add_run_options` (preset,
    iterations, seed, device and the ``--set`` pairs, which may name options or settings)."""
    return RestoreOptions(preset=args.preset, iterations=args.iterations, seed=args.seed, device=args.device,
                          **options).updated(**parse_settings(args.settings))


def restore_options(args, metadata: dict, files: dict) -> RestoreOptions:
    """The :class:`RestoreOptions` of the options of :func:`add_restore_options`.

    Reads the mask, PSF, guide and ground-truth files (adding their paths to
    ``files``) and takes the channel axis from the input's ``metadata`` unless
    ``--channel-axis`` was given.
    """
    arrays = {}
    for name in ("mask", "psf", "guide", "ground_truth"):
        path = getattr(args, name)
        if path is not None:
            arrays[name] = read_image(path)[0]
            files[name] = str(path)
    channel_axis = args.channel_axis
    if channel_axis == "auto":
        channel_axis = metadata.get("channel_axis")
        if channel_axis is not None and not args.quiet:
            print(f"note: {files['input']} has {metadata['shape'][channel_axis]} colour channels on axis "
                  f"{channel_axis}: restoring them together (--channel-axis none treats that axis as separate "
                  "planes)", file=sys.stderr)
    return run_options(args, task=args.task, factor=args.factor, psf_sigma=args.psf_sigma, noise=args.noise,
                       channel_axis=channel_axis, volumetric=args.volumetric, auto_stop=args.auto_stop,
                       holdout_fraction=args.holdout_fraction, gain=args.gain, offset=args.offset,
                       read_noise=args.read_noise, looks=args.looks, speckle=args.speckle,
                       amortise=AMORTISE_WORDS[args.amortise], **arrays)


# ---------------------------------------------------------------------------------------------
# running with a progress bar and Ctrl-C


def run_with_progress(image, options: RestoreOptions, *, label: str = "restoring", quiet: bool = False):
    """Run the restoration of ``image`` with ``options`` with a progress bar.

    The first Ctrl-C asks the run to stop, which then ends with the best result
    so far; a second one aborts at once (KeyboardInterrupt).

    Returns
    -------
    result : napari_dip.api.Restoration
    interrupted : bool
        Whether Ctrl-C ended the run early.
    """
    from tqdm import tqdm

    from .api import start_restoration

    run = start_restoration(image, options)
    tiling = getattr(run, "tiling", None)
    if tiling and not quiet:
        print(f"note: the image is restored in {tiling['tiles']} overlapping tiles of {tiling['tile_size']} "
              f"pixels (overlap {tiling['overlap']}); --tile-size sets the size", file=sys.stderr)
    if run.processes > 1 and not quiet:
        print(f"note: {run.planes} planes or tiles are fitted {run.processes} at a time in worker processes; "
              "--workers 1 fits them one after another in this process", file=sys.stderr)
    if run.stages and not quiet:
        print("note: amortised restoration: DIP restores a few crops, a student network learns from them and "
              "restores every plane (--amortise off fits every unit by DIP); the bar counts thousandths of the "
              "whole run", file=sys.stderr)
    total = run.planes * run.iterations
    with tqdm(total=total, desc=label, unit="‰" if run.stages else "it", disable=quiet, dynamic_ncols=True) \
            as bar, _stop_on_interrupt(run, bar) as interrupt:
        for snapshot in run:
            bar.n = snapshot.plane * snapshot.total + snapshot.iteration
            if snapshot.stage:
                bar.set_postfix_str(stage_line(snapshot), refresh=False)
                bar.refresh()
                continue
            postfix = {"loss": f"{snapshot.loss:.4g}"}
            if run.planes > 1:
                postfix["plane"] = f"{snapshot.plane + 1}/{snapshot.planes}"
            quality = snapshot.quality or {}
            if quality.get("estimated_psnr") is not None:
                postfix["est"] = f"{quality['estimated_psnr']:.1f}"
            if quality.get("chosen_iteration") is not None:
                postfix["keep"] = quality["chosen_iteration"]
            if "psnr" in snapshot.metrics:
                postfix["psnr"] = f"{snapshot.metrics['psnr']:.2f}"
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()
    return run.result, interrupt["requested"]


@contextlib.contextmanager
def _stop_on_interrupt(run, bar):
    """While inside, Ctrl-C calls ``run.stop()`` instead of raising, once."""
    interrupt = {"requested": False}

    def stop(signum, frame):
        # A KeyboardInterrupt raised inside the run would end it with no result: ask it to stop instead.
        interrupt["requested"] = True
        run.stop()
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C aborts at once
        bar.write("napari-dip: stopping; the best result so far will be written (Ctrl-C again to abort)",
                  file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, stop)
    except ValueError:  # not the main thread: signals cannot be caught here
        previous = None
    try:
        yield interrupt
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def record_path(output) -> Path:
    """Where the run record of ``output`` goes: ``out.tif`` -> ``out.json``."""
    return Path(output).with_suffix(".json")


def write_result(output, result, metadata: dict, record_extra: dict) -> Path:
    """Write ``result.image`` to ``output`` and its record (plus ``record_extra``) beside it."""
    metadata = enlarged_metadata(metadata, result.record.parameters.get("enlarged", {}))
    write_image(output, result.image, metadata)
    path = record_path(output)
    write_json(path, {**result.record.as_dict(), **record_extra})
    return path


def _summary(result) -> str:
    record = result.record
    text = f"{record.iterations} iterations in {record.seconds:.1f} s on {record.device} ({record.stop_reason})"
    kept = kept_summary(record.quality)
    if kept:
        text += f"; kept {kept}"
    text += f"; {noise_summary(record.parameters)}"
    amortised = amortised_summary(record)
    if amortised:
        text += f"; {amortised}"
    if "psnr" in record.metrics:
        text += f"; PSNR {record.metrics['psnr']:.2f} dB"
    return text


# ---------------------------------------------------------------------------------------------
# napari-dip restore


def add_restore_command(commands) -> None:
    """Register the ``restore`` subcommand: one image file in, its restoration and run record out."""
    parser = commands.add_parser(
        "restore", help="restore one image file",
        description="Restore INPUT (TIFF, PNG, JPEG or .npy) and write the result to OUTPUT, "
                    "with the run record beside it (OUTPUT with the suffix .json).")
    parser.add_argument("input", metavar="INPUT", help="the degraded image")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="result file; .tif keeps float32 values, .png/.jpg are rounded to integers")
    parser.add_argument("--workers", type=_workers, default="auto", metavar="N",
                        help="on the CPU, fit the planes or tiles side by side in N worker processes with one "
                             "thread each; 'auto' (default): one per free core, for jobs large enough to gain; "
                             "1: one process")
    parser.add_argument("--units-together", type=_units_together, default="auto", metavar="N",
                        help="fit N planes or tiles of one shape together in one network call (fills a GPU; "
                             "'fast' presets with the light network); 'auto' (default): on a GPU as many as "
                             "memory holds unless planes warm-start from each other, on a CPU 1")
    add_restore_options(parser)
    parser.set_defaults(handler=restore_command)


def restore_command(args) -> int:
    """Run ``napari-dip restore``: read INPUT, restore it, write OUTPUT and its record; return the exit code."""
    format_for(args.output)  # an unknown output type fails now, not after the run
    image, metadata = read_image(args.input)
    files = {"input": str(args.input), "output": str(args.output)}
    options = dataclasses.replace(restore_options(args, metadata, files), tile_size=args.tile_size,
                                  overlap=args.overlap, workers=args.workers,
                                  units_together=args.units_together)
    result, interrupted = run_with_progress(image, options, label=args.task, quiet=args.quiet)
    record = write_result(args.output, result, metadata,
                          {"files": files, "command": shlex.join(["napari-dip", *args.argv])})
    print(f"wrote {args.output} and {record}: {_summary(result)}")
    return EXIT_INTERRUPTED if interrupted else 0


# ---------------------------------------------------------------------------------------------
# napari-dip demo


def add_demo_command(commands) -> None:
    """Register the ``demo`` subcommand: restore a degraded crop of the bundled ``camera`` photo."""
    parser = commands.add_parser(
        "demo", help="restore a degraded crop of a bundled sample image (no download)",
        description="Degrade a crop of scikit-image's bundled 'camera' photo (for denoise: Gaussian "
                    "noise, sigma 25, seeded), restore it, and write into DIR the input, the result, "
                    "a side-by-side PNG with the PSNR in its title, and the run record.")
    parser.add_argument("-o", "--output", default="demo_output", metavar="DIR",
                        help="folder for the files (default: demo_output)")
    parser.add_argument("--task", choices=DEMO_TASKS, default="denoise",
                        help="what to demonstrate on a photo (default: denoise)")
    parser.add_argument("--size", type=int, default=128, metavar="PX",
                        help="side of the square crop, 16 to 512 (default: 128)")
    add_run_options(parser)
    parser.set_defaults(handler=demo_command)


def demo_command(args) -> int:
    """Run ``napari-dip demo``: degrade a crop, restore it, write the files and PSNRs; return the exit code."""
    from skimage.metrics import peak_signal_noise_ratio

    out = Path(args.output)
    demo = demo_problem(args.task, args.size, args.seed)
    options = run_options(args, task=args.task, ground_truth=demo["clean"]).updated(**demo["kwargs"])
    result, interrupted = run_with_progress(demo["degraded"], options, label=f"demo {args.task}", quiet=args.quiet)

    clean = demo["clean"]
    data_range = float(clean.max() - clean.min())
    psnr_input = float(peak_signal_noise_ratio(clean, demo["shown"], data_range=data_range))
    psnr_result = float(peak_signal_noise_ratio(clean, result.image, data_range=data_range))
    classical = classical_demo_result(args.task, demo)  # what a newcomer would compare DIP with
    if classical is not None:
        classical["psnr"] = float(peak_signal_noise_ratio(clean, classical.pop("image"), data_range=data_range))

    files = {"input": out / f"{args.task}_input.tif", "result": out / f"{args.task}_result.tif",
             "comparison": out / f"{args.task}_comparison.png"}
    for name, array in demo["kwargs"].items():  # the mask or guide: needed to re-run on these files
        if isinstance(array, np.ndarray):
            files[name] = out / f"{args.task}_{name}.tif"
            write_image(files[name], array)
    write_image(files["input"], demo["degraded"])
    title = (f"napari-dip demo: {args.task}, {args.preset} preset, {result.record.iterations} iterations "
             f"in {result.record.seconds:.0f} s\nPSNR {psnr_input:.2f} dB -> {psnr_result:.2f} dB")
    if classical is not None:
        title += f" ({classical['method']} alone: {classical['psnr']:.2f} dB in {classical['seconds']:.0f} s)"
    write_image(files["comparison"], side_by_side(
        [demo["shown"], result.image, clean],
        [f"{demo['shown_label']}: {psnr_input:.2f} dB", f"result: {psnr_result:.2f} dB", "clean"], title,
        display_range=(float(clean.min()), float(clean.max()))))
    demo_record = {"image": "skimage.data.camera()", "crop": demo["crop"], "degradation": demo["degradation"],
                   "psnr_input": psnr_input, "psnr_result": psnr_result, "input_shown": demo["shown_label"],
                   "psnr_network_alone": result.record.metrics.get("psnr_network"),
                   "classical": classical}
    record = write_result(files["result"], result, {},
                          {"files": {k: str(v) for k, v in files.items()}, "demo": demo_record,
                           "command": shlex.join(["napari-dip", *args.argv])})
    print(f"PSNR {psnr_input:.2f} dB ({demo['shown_label']}) -> {psnr_result:.2f} dB (result); "
          f"{_summary(result)}")
    network = result.record.metrics.get("psnr_network")
    if network is not None:  # a classical estimate was mixed in: what the network gave before it
        print(f"the network alone (before the mix): {network:.2f} dB")
    if classical is not None:
        print(f"for comparison, {classical['method']} alone (the truth's noise level given): "
              f"{classical['psnr']:.2f} dB in {classical['seconds']:.1f} s")
    print("wrote " + ", ".join(str(p) for p in [files["input"], files["result"], files["comparison"], record]))
    return EXIT_INTERRUPTED if interrupted else 0


def classical_demo_result(task: str, demo: dict) -> dict | None:
    """The classical method a newcomer would compare the demo's result with, run on the same input and told the
    true degradation: {'method', 'image', 'seconds'}; None for guided restoration (no classical counterpart here)
    and for super-resolution (the bicubic input shown is the comparison)."""
    degraded = demo["degraded"][None] / 255.0
    start = time.perf_counter()
    if task == "denoise":
        available = reference.block_matching_available()
        method = "BM3D (block matching)" if available else "non-local means"
        denoise = reference.block_matching if available else reference.nl_means
        image = denoise(degraded, DEMO_NOISE / 255.0)
    elif task == "inpaint":
        method, image = "biharmonic fill", reference.biharmonic_fill(degraded, 1 - demo["kwargs"]["mask"][None])
    elif task == "deconvolve":
        from .core.operators import gaussian_psf

        held_out = (np.random.default_rng(0).random(degraded.shape) < 0.1).astype(np.float32)
        image, _, count = reference.richardson_lucy(degraded, np.ones_like(degraded), held_out,
                                                    gaussian_psf(demo["kwargs"]["psf_sigma"]))
        method = f"Richardson-Lucy ({count} iterations, chosen on held-out pixels)"
    else:
        return None
    return {"method": method, "image": np.asarray(image)[0] * 255.0, "seconds": time.perf_counter() - start}


DEMO_NOISE = 25.0  # σ of the denoising demo's Gaussian noise, 8-bit units


def demo_problem(task: str, size: int = 128, seed: int = 0) -> dict:
    """A clean crop of ``skimage.data.camera()``, its degraded version for ``task`` and the arguments to restore it.

    Returns a dict: ``clean`` and ``degraded`` (float32, 0-255 units),
    ``kwargs`` for ``restore`` (mask, factor, psf_sigma or guide), ``shown``
    (the degraded image at the result's size, to compare against),
    ``shown_label``, ``degradation`` and ``crop`` (for the record).
    """
    from skimage import data, filters, transform

    if not 16 <= size <= 512:
        raise DIPInputError(f"--size must be between 16 and 512, got {size}")
    if task == "superres" and size % 4:
        raise DIPInputError(f"--size must be a multiple of 4 for superres, got {size}")
    photo = data.camera()
    # centred on the photographer's face and camera, moved inwards where the crop would leave the photo
    top = int(np.clip(128 - size // 2, 0, photo.shape[0] - size))
    left = int(np.clip(240 - size // 2, 0, photo.shape[1] - size))
    clean = photo[top:top + size, left:left + size].astype(np.float32)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, clean.shape).astype(np.float32)
    shown_label = "input"
    if task == "denoise":
        degraded, kwargs, degradation = clean + DEMO_NOISE * noise, {}, f"Gaussian noise, sigma {DEMO_NOISE:g}"
    elif task == "inpaint":
        mask = (rng.random(clean.shape) < 0.5).astype(np.uint8)  # nonzero = missing
        degraded, kwargs, degradation = np.where(mask > 0, 0, clean), {"mask": mask}, "50% of the pixels missing"
    elif task == "superres":
        degraded = transform.resize(clean, (size // 4, size // 4), anti_aliasing=True, preserve_range=True)
        kwargs, degradation = {"factor": 4}, "downsampled 4 times (anti-aliased)"
        shown_label = "bicubic x4"
        shown = transform.resize(degraded, clean.shape, order=3, preserve_range=True)
    elif task == "deconvolve":
        degraded = filters.gaussian(clean, sigma=2, preserve_range=True) + 2 * noise
        kwargs, degradation = {"psf_sigma": 2.0}, "Gaussian blur, sigma 2, and Gaussian noise, sigma 2"
    elif task == "guided":
        # flash/no-flash: a noisy, dim photo, and a clean one under other lighting as the guide
        degraded = 0.5 * clean + 15 * noise
        guide = 255 * (clean / 255) ** 0.5
        clean = 0.5 * clean
        kwargs, degradation = {"guide": guide.astype(np.float32)}, \
            "dimmed by half and Gaussian noise, sigma 15; guide: clean, gamma 0.5"
    else:
        raise DIPInputError(f"unknown task {task!r}; choose one of: {', '.join(DEMO_TASKS)}")
    degraded = degraded.astype(np.float32)
    if task != "superres":
        shown = degraded
    return {"clean": clean, "degraded": degraded, "kwargs": kwargs, "shown": shown.astype(np.float32),
            "shown_label": shown_label, "degradation": degradation,
            "crop": {"top": top, "left": left, "size": size}}


def side_by_side(images, labels, title: str, display_range) -> np.ndarray:
    """Grey images of one size in a row, each labelled, under a title of up to two lines: RGB uint8.

    ``display_range`` (low, high) is shown black to white in every panel, so they compare fairly.
    """
    from PIL import Image, ImageDraw, ImageFont

    low, high = display_range
    zoom = max(1, 256 // images[0].shape[0])  # small crops are enlarged (nearest) to be seen
    panels = [np.clip((np.asarray(im, np.float32) - low) / (high - low) * 255, 0, 255).astype(np.uint8)
              .repeat(zoom, 0).repeat(zoom, 1) for im in images]
    height, width = panels[0].shape
    gap, top, font_size = 8, 72, 14
    canvas = Image.new("RGB", (len(panels) * (width + gap) + gap, height + top + gap), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    draw.multiline_text((gap, 8), title, fill="black", font=font, spacing=6)
    for i, (panel, label) in enumerate(zip(panels, labels)):
        x = gap + i * (width + gap)
        draw.text((x, top - font_size - 8), label, fill="black", font=font)
        canvas.paste(Image.fromarray(panel).convert("RGB"), (x, top))
    return np.asarray(canvas)


# ---------------------------------------------------------------------------------------------
# napari-dip batch


def add_batch_command(commands) -> None:
    """Register the ``batch`` subcommand: many files, or every plane of a stack, on a dask cluster."""
    parser = commands.add_parser(
        "batch", help="restore many files, or every plane of a stack, on a dask cluster",
        description="Restore every INPUT with one configuration on dask.distributed: a local cluster by "
                    "default, or an existing one with --scheduler. Each result is written into OUTDIR as soon "
                    "as it is done, with its run record (.json); rerunning the command skips the finished "
                    "outputs, so a killed batch resumes. A summary table ends the run; the exit code is 1 if "
                    "any input failed. Large images are restored in overlapping tiles.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files (TIFF, OME-TIFF, GeoTIFF, zarr, PNG, JPEG, .npy), folders, or glob "
                             "patterns (quote them: 'data/**/*.tif')")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    parser.add_argument("--split-planes", action="store_true",
                        help="restore every plane (time point, Z slice) of a stack as its own task, written "
                             "as OUTDIR/NAME_p0000.tif, ...")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="address of a running dask scheduler, e.g. tcp://host:8786 (default: start a "
                             "local cluster)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes of the local cluster (default: one per GPU, else one per 4 CPUs)")
    parser.add_argument("--threads-per-worker", type=int, metavar="T",
                        help="torch threads of each task; a worker runs one task at a time (default: the CPUs "
                             "shared out between the workers)")
    add_restore_options(parser)
    parser.set_defaults(handler=batch_command)


def _tile_size(text: str):
    """A side in pixels, None for 'none', or 'auto': the same words as --channel-axis."""
    try:
        return _channel_axis(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a size in pixels, 'auto' or 'none', got {text!r}") from None


def _auto_or_count(text: str, what: str):
    """'auto' or a whole number ≥ 1."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 'auto' or a number of {what} ≥ 1, got {text!r}")


def _workers(text: str):
    return _auto_or_count(text, "processes")


def _units_together(text: str):
    return _auto_or_count(text, "units")


def batch_command(args) -> int:
    """Run ``napari-dip batch`` and print the summary table; return the exit code (1 if any input failed)."""
    from .batch import format_summary, plan_tasks, require_batch_extra, run_batch

    try:
        require_batch_extra()  # before any work, and without a traceback
    except ImportError as exc:
        return _fail(exc, EXIT_ERROR)
    files = {}
    # mask, PSF, guide: read once, shared by every task; channel axis 'auto': each file says where its channels are
    options = dataclasses.replace(restore_options(args, {}, files), channel_axis=args.channel_axis)
    tasks = plan_tasks(args.inputs, args.output, split_planes=args.split_planes, channel_axis=args.channel_axis,
                       volumetric=args.volumetric)
    if not args.quiet:
        print(f"{len(tasks)} task(s) from {len(args.inputs)} input argument(s) -> {args.output}")
    rows = run_batch(tasks, options, scheduler=args.scheduler, workers=args.workers,
                     threads_per_worker=args.threads_per_worker, tile_size=args.tile_size, overlap=args.overlap,
                     progress=not args.quiet,
                     extra_record={"command": shlex.join(["napari-dip", *args.argv]), "option_files": files},
                     write=(lambda text: None) if args.quiet else print)
    print(format_summary(rows))
    return EXIT_ERROR if any(row["status"] == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
