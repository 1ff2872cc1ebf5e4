"""Real microscope noise: the default restoration and variants of it, against variance-stabilised classical
pipelines.

    python benchmarks/real_noise.py --data ../shared/realdata [--synthetic] [--crop 256] [--fields 8] [--json FILE]

The data folder is passed, never copied (its README gives the sources and licences):

* ``w2s/``: wide-field fluorescence (W2S), one raw frame (``input_avg1_*``) against the average of 400 frames
  of the same field (``target_avg400_*``); the central ``--crop`` square of each. Every method is scored by
  PSNR and SSIM after its own least-squares affine fit to the average (the 8-bit pairs may have been
  contrast-stretched apart), with the average's range as the peak.
* ``pn2v/``: single EMCCD frames with no reference: the noise fit only (what ``noise='auto'`` chooses).
* ``landsat7/``: Landsat-7 SLC-off crops (central ``--crop`` square) with their real scan-line gaps. The gaps
  have no truth, so the score is on artificial stripes of the gaps' own shape: the gap mask shifted along X
  (by the shift that overlaps the real gaps least) and kept where pixels were measured. Inpainting by default
  and the biharmonic fill each fill the real gaps and the artificial stripes; PSNR (peak 255) at the stripes.

Methods (``--variants``, :data:`VARIANTS`): ``restore(image)`` (the default: ``noise='auto'``, block matching
mixed in), and with one option changed: non-local means mixed in instead (what runs where ``bmnd`` does not
load), ``noise='gaussian'``, or ``photon_loss='stabilised'``. The classical references: non-local means with one
σ, and the generalised Anscombe transform with the image's fitted variance line (``var = a·mean + b``,
core/noise_fit.py) followed by non-local means, BM3D or BMND's block matching (σ = 1 there) and the closed-form
unbiased inverse. BM3D comes from the ``bm3d`` package (free for non-commercial use only: a benchmark
reference, not a dependency of napari-dip); its rows are left out when it is not installed. Each run also gives
the estimate of its own PSNR (the held-out pixels) beside the true one.

``--synthetic`` adds camera frames with known noise (:data:`SYNTHETIC`: smooth cells and a photo, 20 and 200
photons at the brightest, read noise 2 and 12 ADU), scored the same way against the clean frame. ``--device``
runs the restorations elsewhere (for their PSNR only: the seconds are then not the CPU's). Run it on a quiet
machine: nothing else running.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import images  # noqa: E402


def affine_map(result: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares affine map a·result + b onto ``reference``."""
    x, y = result.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    return tuple(np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)[0])


def affine_scores(result: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of ``result`` after the least-squares affine map a·result + b onto ``reference``."""
    from skimage.metrics import structural_similarity

    a, b = affine_map(result, reference)
    fitted = (a * result + b).astype(np.float64)
    peak = float(reference.max() - reference.min())
    mse = float(np.mean((fitted - reference) ** 2))
    ssim = float(structural_similarity(fitted, reference.astype(np.float64), data_range=peak))
    return 10 * np.log10(peak ** 2 / mse), ssim


def gat(image: np.ndarray, denoise) -> np.ndarray:
    """The generalised Anscombe transform with the image's fitted variance line, ``denoise`` (σ = 1 there) and
    the closed-form unbiased inverse: counts c = (a·y + b) / a² have variance ≈ mean, so Anscombe's transform
    of them is the generalised one of y."""
    from napari_dip.core.noise_fit import fit_noise
    from napari_dip.core.reference import anscombe

    fitted = fit_noise(image[None, None])
    a, b = fitted.slopes[0], fitted.intercepts[0]
    if a <= 0:
        raise ValueError("the variance does not grow with the signal: no Anscombe transform")
    counts = (a * image.astype(np.float64) + b) / a ** 2
    return (anscombe(counts, denoise) * a ** 2 - b) / a


def nlm(x: np.ndarray, sigma: float) -> np.ndarray:
    from napari_dip.core.reference import nl_means

    return nl_means(x[None], sigma)[0]


def bm3d_or_none():
    try:
        import bm3d
    except ImportError:
        return None
    return lambda x, sigma: np.asarray(bm3d.bm3d(x, sigma_psd=sigma), np.float32)


def classical_methods(noisy: np.ndarray, bm3d) -> dict:
    """The classical references for one image, by name: functions of no argument."""
    from napari_dip.core.reference import block_matching, block_matching_available

    sigma = images._sigma(noisy)  # the wavelet estimate the other benchmarks' references use
    methods = {"NLM, one σ": lambda: nlm(noisy, sigma), "GAT + NLM": lambda: gat(noisy, lambda z: nlm(z, 1.0))}
    if bm3d is not None:
        methods["BM3D, one σ"] = lambda: bm3d(noisy, sigma)
        methods["GAT + BM3D"] = lambda: gat(noisy, lambda z: bm3d(z, 1.0))
    if block_matching_available():  # bmnd (MIT): what mix_with='block-matching' runs
        methods["GAT + BMND"] = lambda: gat(noisy, lambda z: block_matching(z[None], 1.0)[0])
    return methods


DEVICE = "cpu"  # --device


def restore(image: np.ndarray, **options) -> tuple[np.ndarray, dict, float]:
    import napari_dip

    start = time.perf_counter()
    result = napari_dip.restore(image, device=DEVICE, seed=0, **options)
    return result.image, result.record.as_dict(), time.perf_counter() - start


def estimated_psnr(record: dict, image: np.ndarray, result: np.ndarray, reference: np.ndarray):
    """The run's own estimate of its PSNR, put on the reference's scale: the record's estimated RMSE is in the
    input's units, so it goes through the same affine map as the result."""
    quality = record.get("quality") or {}
    rmse = quality.get("estimated_rmse")  # of the kept result
    if rmse is None or quality.get("estimated_psnr") is None:  # none given: the difference was not positive
        return None
    a = affine_map(result, reference)[0]
    peak = float(reference.max() - reference.min())
    return float(20 * np.log10(peak / (abs(a) * rmse)))


def self_tuning_choices() -> list[dict]:
    """What noise='auto' chooses on the self-tuning grid's Gaussian-noise inputs (benchmarks/self_tuning.py; its
    Poisson cases name their model): where it says 'gaussian', those runs are the same as before."""
    import self_tuning

    from napari_dip.core.noise_fit import fit_noise

    rows = []
    for task, name, size, colour, kind, level in self_tuning.GRIDS["full"]:
        if kind != "gaussian":
            continue
        noisy = self_tuning.make_case(task, name, size, colour, kind, level)["input"]
        planes = np.moveaxis(noisy, -1, 0)[None] if noisy.ndim == 3 else noisy[None, None]
        fitted = fit_noise(planes)
        rows.append({"case": f"{name} {size}² σ={level}", "chosen": fitted.model,
                     "bright_over_dark_variance": [round(r, 2) for r in fitted.ratios]})
    return rows


# the restorations compared (--variants), by name: the options given to restore()
VARIANTS = {"auto": ("DIP, default", {}), "nlm": ("DIP, NLM mixed", {"mix_with": "nl-means"}),
            "gaussian": ("DIP, noise=gaussian", {"noise": "gaussian"}),
            "stabilised": ("DIP, stabilised loss", {"photon_loss": "stabilised"})}
# synthetic camera frames: (content, photons at the brightest pixel, read noise σ in ADU), at 4 ADU per photon
# and a dark offset of 100 ADU, i.e. var = 4·mean + σ² − 400
SYNTHETIC = [(content, photons, read) for content in ("cells", "camera") for photons in (20, 200)
             for read in (2.0, 12.0)]
GAIN, OFFSET = 4.0, 100.0


def synthetic_frames(side: int):
    """(name, noisy ADU frame, clean ADU frame) for each :data:`SYNTHETIC` case, seeded."""
    for i, (content, photons, read) in enumerate(SYNTHETIC):
        rng = np.random.default_rng(100 + i)
        clean01 = (images.synthetic_cells(side, seed=i) if content == "cells"
                   else images.load("camera", side, gray=True)).astype(np.float64) / 255.0
        counts = clean01 * photons + 0.5  # a dim background glow keeps the dark end above the offset
        noisy = GAIN * rng.poisson(counts) + OFFSET + rng.normal(0, read, counts.shape)
        yield f"{content} {photons} ph, read σ {read:g}", noisy.astype(np.float32), GAIN * counts + OFFSET


def scored_row(name: str, noisy: np.ndarray, reference: np.ndarray, bm3d, variants: list[str],
               classical: bool = True) -> dict:
    """Every method's PSNR / SSIM (after the affine fit to ``reference``) and seconds on one frame."""
    row = {"field": name, "methods": {}}
    for method, run in (classical_methods(noisy, bm3d).items() if classical else ()):
        start = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - start
        row["methods"][method] = dict(zip(("psnr", "ssim"), affine_scores(out, reference)), seconds=seconds)
    for key in variants:
        method, options = VARIANTS[key]
        out, record, seconds = restore(noisy, **options)
        psnr, ssim = affine_scores(out, reference)
        row["methods"][method] = dict(psnr=psnr, ssim=ssim, seconds=seconds,
                                      estimated_psnr=estimated_psnr(record, noisy, out, reference),
                                      noise=record["parameters"]["noise"])
    row["input_psnr"] = affine_scores(noisy, reference)[0]
    print(json.dumps(row), flush=True)
    return row


def print_table(title: str, rows: list[dict]):
    """The rows' PSNR / SSIM per method, their means, the default against the best classical pipeline, and how
    far the default's estimate of its PSNR is from the true one."""
    methods = list(rows[0]["methods"])
    print(f"\n{title}")
    print(f"{'case':<28}{'input':>7}" + "".join(f"{m:>22}" for m in methods))
    for row in rows:
        cells = "".join(f"{row['methods'][m]['psnr']:>14.2f} / {row['methods'][m]['ssim']:.3f}" for m in methods)
        print(f"{row['field']:<28}{row['input_psnr']:>7.2f}{cells}")
    mean = {m: float(np.mean([r["methods"][m]["psnr"] for r in rows])) for m in methods}
    print(f"{'mean':<28}{np.mean([r['input_psnr'] for r in rows]):>7.2f}" + "".join(f"{mean[m]:>22.2f}"
                                                                                  for m in methods))
    default = VARIANTS["auto"][0]
    best = next((m for m in ("GAT + BM3D", "GAT + NLM") if m in methods), None)
    if default in methods and best:
        gap = [r["methods"][default]["psnr"] - r["methods"][best]["psnr"] for r in rows]
        print(f"default − {best}: mean {np.mean(gap):+.2f} dB, worst {min(gap):+.2f}, best {max(gap):+.2f}")
    if default in methods:
        estimates = [(r["methods"][default]["estimated_psnr"], r["methods"][default]["psnr"]) for r in rows]
        errors = [e - t for e, t in estimates if e is not None]
        print(f"estimated − true PSNR of the default: present on {len(errors)} of {len(rows)}; "
              + (f"mean {np.mean(errors):+.2f} dB, largest {max(errors, key=abs):+.2f}" if errors else ""))
    seconds = {m: float(np.mean([r["methods"][m]["seconds"] for r in rows])) for m in methods}
    print("mean seconds: " + ", ".join(f"{m} {s:.1f}" for m, s in seconds.items()))


def artificial_stripes(gaps: np.ndarray) -> np.ndarray:
    """Stripes of the real gaps' shape in measured pixels: ``gaps`` shifted along X by the shift (3 to 40
    pixels) whose stripes fall least on real gaps, less the real gaps."""
    best = min(range(3, 41), key=lambda shift: (np.roll(gaps, shift, axis=1) & gaps).sum())
    return np.roll(gaps, best, axis=1) & ~gaps


def landsat_rows(folder: str, side: int) -> list[dict]:
    import imageio.v3 as iio
    from skimage.restoration import inpaint_biharmonic

    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*_gapmask.png"))):
        name = os.path.basename(path)[: -len("_gapmask.png")]
        image = crop(np.moveaxis(iio.imread(path.replace("_gapmask.png", ".bmp")), -1, 0), side).astype(np.float32)
        gaps = crop(iio.imread(path), side) > 0
        stripes = artificial_stripes(gaps)
        missing = gaps | stripes
        row = {"scene": name, "gaps": float(gaps.mean()), "stripes": float(stripes.mean()), "methods": {}}
        start = time.perf_counter()
        filled = inpaint_biharmonic(np.moveaxis(np.where(missing, 0, image), 0, -1), missing, channel_axis=-1)
        row["methods"]["biharmonic"] = {"seconds": time.perf_counter() - start, "out": np.moveaxis(filled, -1, 0)}
        out, record, seconds = restore(np.moveaxis(image, 0, -1), task="inpaint", mask=missing, channel_axis=-1)
        row["methods"]["DIP, noise=auto"] = {"seconds": seconds, "out": np.moveaxis(out, -1, 0),
                                             "noise": record["parameters"]["noise"]}
        for method in row["methods"].values():
            error = (method.pop("out") - image)[:, stripes]
            method["psnr"] = float(10 * np.log10(255.0 ** 2 / np.mean(error ** 2)))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def crop(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return image[..., top:top + side, left:left + side]


def main(argv=None) -> int:
    import tifffile
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the real-data folder (../shared/realdata)")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--fields", type=int, default=8, help="how many W2S fields of view")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--only-landsat", action="store_true", help="only the Landsat-7 scan-line gaps")
    parser.add_argument("--self-tuning-grid", action="store_true",
                        help="only print what noise='auto' chooses on the self-tuning grid's Gaussian inputs")
    parser.add_argument("--variants", default="auto,nlm",
                        help=f"comma-separated restorations to run, of: {', '.join(VARIANTS)}")
    parser.add_argument("--synthetic", action="store_true", help="add the synthetic camera frames")
    parser.add_argument("--only-synthetic", action="store_true", help="only the synthetic camera frames")
    parser.add_argument("--no-classical", action="store_true", help="leave out the classical references")
    parser.add_argument("--device", default="cpu", help="where the restorations run (quality only off the CPU)")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if args.self_tuning_grid:
        choices = self_tuning_choices()
        for row in choices:
            print(json.dumps(row))
        print(f"gaussian on {sum(r['chosen'] == 'gaussian' for r in choices)} of {len(choices)}")
        return 0
    torch.set_num_threads(args.threads)
    if args.only_landsat:
        gaps = landsat_rows(os.path.join(args.data, "landsat7"), args.crop)
        for row in gaps:
            print(f"{row['scene']}: " + ", ".join(f"{m} {v['psnr']:.2f} dB ({v['seconds']:.0f} s)"
                                                  for m, v in row["methods"].items()))
        if args.json:
            Path(args.json).write_text(json.dumps({"command": " ".join(["python"] + sys.argv), "crop": args.crop,
                                                   "landsat7": gaps}, indent=1))
        return 0
    bm3d = bm3d_or_none()
    variants = [v for v in args.variants.split(",") if v]
    rows, fits, synthetic = [], [], []
    inputs = sorted(glob.glob(os.path.join(args.data, "w2s", "input_avg1_*.tif")))[: args.fields]
    if not inputs and not args.only_synthetic:
        parser.error(f"no W2S pairs (w2s/input_avg1_*.tif) under {args.data}")
    for path in [] if args.only_synthetic else inputs:
        name = os.path.basename(path)[len("input_avg1_"):-4]
        noisy = crop(tifffile.imread(path).astype(np.float32), args.crop)
        reference = crop(tifffile.imread(path.replace("input_avg1_", "target_avg400_")).astype(np.float32),
                         args.crop)
        rows.append(scored_row(name, noisy, reference, bm3d, variants, classical=not args.no_classical))
    for path in [] if args.only_synthetic else sorted(glob.glob(os.path.join(args.data, "pn2v", "*.tif"))):
        from napari_dip.core.noise_fit import fit_noise

        frame = tifffile.imread(path).astype(np.float64)
        frame = frame.reshape(-1, *frame.shape[-2:])[0]
        fitted = fit_noise(frame[None, None])
        fits.append({"file": os.path.basename(path), **fitted.as_dict()})
        print(json.dumps(fits[-1]), flush=True)
    if args.synthetic or args.only_synthetic:
        synthetic = [scored_row(name, noisy, clean, bm3d, variants, classical=not args.no_classical)
                     for name, noisy, clean in synthetic_frames(args.crop)]
    where = f"{args.threads} torch threads" if DEVICE == "cpu" else DEVICE
    if rows:
        print_table(f"W2S, {len(rows)} fields, central {args.crop}² crops; PSNR (dB) / SSIM after an affine fit to "
                    f"the 400-frame average; {where}", rows)
    if synthetic:
        print_table(f"Synthetic camera frames, {args.crop}², {GAIN:g} ADU per photon, offset {OFFSET:g}; PSNR (dB) / "
                    f"SSIM against the clean frame (after an affine fit); {where}", synthetic)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(["python"] + sys.argv), "crop": args.crop,
                                               "threads": args.threads, "device": DEVICE, "w2s": rows,
                                               "synthetic": synthetic, "pn2v_fits": fits}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
