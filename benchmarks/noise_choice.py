"""What noise='auto' chooses, against what the noise is: a grid of images whose noise is known.

    python benchmarks/noise_choice.py [--data ../shared/realdata] [--json FILE] [--restore-misses]

The choice (core/noise_fit.py) is Gaussian, Poisson-Gaussian or speckle. Each case's truth is the ratio of the
true noise variance at its bright pixels (the 90th percentile of the clean image) to that at its dark ones (the 10th): a
case is signal-dependent when that ratio is at least ``SIGNAL_DEPENDENT``, as the rule means it. Cases:

* Gaussian noise on photos (smooth and textured, gray and RGB; 64², 128², 256²) at σ = 1 to 50 of 255;
* Gaussian noise on synthetic volumes (smooth spheres, thin filaments, textured layers; 32 × 64²), and the axial
  ×2 stacks of the scale benchmark's case (d) (σ = 1 % and 5 %);
* Poisson-Gaussian noise (gain 2, offset 100, read noise 2 ADU) on the same photos, synthetic cells and volumes
  at 5 to 1000 photons at the brightest;
* radar speckle (amplitude and intensity, 1, 2, 4 and 8 looks) on photos and textures (64², 256²): its truth is
  speckle, whatever the ratio;
* with ``--data``, the W2S raw frames (truth from their 400-frame average: the variance of raw − average, by
  intensity) and the PN2V EMCCD frames (signal-dependent: electron multiplication).

It prints each wrong choice and the count per family, also among the clear cases alone (true ratio at most 1.1
or at least 3: where the model matters; between them either model fits about as well). Quick (seconds);
deterministic.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import images  # noqa: E402
from axial_superres import volume  # noqa: E402

from napari_dip.core.noise_fit import SIGNAL_DEPENDENT, fit_noise  # noqa: E402

PHOTOS = ("camera", "coins", "moon", "text", "brick", "grass", "gravel", "astronaut", "coffee", "chelsea")
SIGMAS = (1, 2, 5, 10, 25, 50)  # of 255
PHOTONS = (5, 20, 100, 1000)  # at the brightest
GAIN, OFFSET, READ_NOISE = 2.0, 100.0, 2.0
CLEAN_ADU = {}  # Poisson-Gaussian case name -> its noise-free frame in ADU (for --restore-misses)


def true_ratio(variance: np.ndarray, clean: np.ndarray) -> float:
    """The true noise variance near the clean image's 90th percentile over that near its 10th."""
    lo, hi = np.quantile(clean, [0.1, 0.9])
    near = lambda q: np.abs(clean - q) <= 0.05 * (clean.max() - clean.min()) + 1e-9  # noqa: E731
    return float(np.mean(variance[near(hi)]) / np.mean(variance[near(lo)]))


def planes_of(image: np.ndarray, colour: bool) -> np.ndarray:
    """(P, C, Y, X) as the engine passes them to the fit."""
    if colour:
        return np.moveaxis(image, -1, 0)[None]
    return image.reshape(-1, 1, *image.shape[-2:])


def gaussian_cases():
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        for size in (64, 128, 256):
            colour = name in ("astronaut", "coffee", "chelsea") and size == 128
            clean = images.load(name, size, gray=not colour)
            for sigma in SIGMAS:
                noisy = clean + rng.normal(0, sigma, clean.shape)
                yield "gaussian 2D", f"{name} {size}² σ={sigma}", planes_of(noisy, colour), 1.0
    for name in ("spheres", "filaments", "layers"):
        clean = volume(name, (32, 64, 64), seed=3)
        for sigma in (0.01, 0.02, 0.05, 0.1):
            noisy = clean + rng.normal(0, sigma, clean.shape)
            yield "gaussian 3D", f"{name} 32×64² σ={sigma}", planes_of(noisy, False), 1.0
    from test_axial_superres import measure

    for sigma in (0.01, 0.05):
        for seed in (9, 10):
            truth = volume("spheres", (32, 64, 64), seed=seed)
            yield "gaussian 3D", f"axial ×2 spheres seed {seed} σ={sigma}", \
                planes_of(measure(truth, 2, noise=sigma), False), 1.0


def poisson_cases():
    rng = np.random.default_rng(1)
    clean_images = [(f"{name} {size}²", images.load(name, size, gray=True))
                    for name in ("camera", "moon", "brick", "coins") for size in (64, 256)]
    clean_images += [(f"cells {size}²", images.synthetic_cells(size, seed=2)) for size in (64, 256)]
    clean_images += [(f"{name} 32×64²", 255 * volume(name, (32, 64, 64), seed=4))
                     for name in ("spheres", "filaments")]
    for label, clean in clean_images:
        for peak in PHOTONS:
            photons = clean / 255.0 * peak
            adu = GAIN * rng.poisson(photons) + OFFSET + rng.normal(0, READ_NOISE, photons.shape)
            variance = GAIN ** 2 * photons + READ_NOISE ** 2
            CLEAN_ADU[f"{label} {peak} photons"] = GAIN * photons + OFFSET
            yield "poisson-gaussian", f"{label} {peak} photons", planes_of(adu, False), true_ratio(variance, clean)


def speckle_cases():
    from napari_dip.core.speckle import simulate

    rng = np.random.default_rng(2)
    for name in ("camera", "moon", "brick", "coins", "grass"):
        for size in (64, 256):
            clean = 10.0 + images.load(name, size, gray=True) / 255.0 * 90.0  # backscatter is never 0
            for looks in (1, 2, 4, 8):
                for kind in ("amplitude", "intensity"):
                    yield "speckle", f"{name} {size}² {kind} {looks} look{'s' if looks > 1 else ''}", \
                        planes_of(simulate(clean, looks, kind, rng), False), float("inf")


def real_cases(folder: str):
    import tifffile
    from scipy import ndimage

    for path in sorted(glob.glob(os.path.join(folder, "w2s", "input_avg1_*.tif"))):
        raw = tifffile.imread(path).astype(np.float64)
        average = tifffile.imread(path.replace("input_avg1_", "target_avg400_")).astype(np.float64)
        # the 8-bit pair may be stretched apart: map the average onto the raw frame's scale first
        slope, intercept = np.polyfit(average.ravel(), raw.ravel(), 1)
        mean = slope * average + intercept
        variance = ndimage.uniform_filter((raw - mean) ** 2, 15)
        yield "real", "W2S " + os.path.basename(path)[len("input_avg1_"):-4], planes_of(raw, False), \
            true_ratio(variance, mean)
    for path in sorted(glob.glob(os.path.join(folder, "pn2v", "*.tif"))):
        frame = tifffile.imread(path).astype(np.float64)
        yield "real", "PN2V " + os.path.basename(path), planes_of(frame.reshape(-1, *frame.shape[-2:])[:1], False), \
            float("inf")


def restore_both(noisy: np.ndarray, clean: np.ndarray) -> dict:
    """PSNR (dB, the clean frame's range as the peak) of the default denoising (noise="auto") and of the photon
    model, with the camera estimated and with the true camera named."""
    import torch

    import napari_dip

    torch.set_num_threads(2)
    runs = {"default (auto)": {}, "poisson-gaussian, estimated": {"noise": "poisson-gaussian"},
            "poisson-gaussian, true camera": {"noise": "poisson-gaussian", "gain": GAIN, "offset": OFFSET,
                                              "read_noise": READ_NOISE}}
    scores = {}
    for label, options in runs.items():
        try:
            result = napari_dip.restore(noisy, "denoise", seed=0, **options).image
        except napari_dip.DIPInputError as error:  # e.g. the camera cannot be estimated: the run says so
            scores[label] = str(error)
            continue
        scores[label] = round(images.psnr(clean, result, float(clean.max() - clean.min())), 2)
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="the real-data folder (../shared/realdata)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--all", action="store_true", help="print every case, not only the wrong choices")
    parser.add_argument("--restore-misses", action="store_true",
                        help="denoise each clear 2D photon-count case called Gaussian with the default and with the "
                             "photon model (about 5 minutes on 2 cores): what the wrong choice costs")
    args = parser.parse_args(argv)
    cases = [*gaussian_cases(), *poisson_cases(), *speckle_cases(), *(real_cases(args.data) if args.data else ())]
    rows, tally, clear = [], {}, {}
    for family, name, planes, ratio in cases:
        fitted = fit_noise(planes)
        truth = "speckle" if family == "speckle" else "poisson-gaussian" if ratio >= SIGNAL_DEPENDENT else "gaussian"
        right = fitted.model == truth
        rows.append({"family": family, "case": name, "true_ratio": round(ratio, 2), "truth": truth,
                     "chosen": fitted.model, "fitted_ratio": [round(r, 2) for r in fitted.ratios]})
        good, count = tally.get(family, (0, 0))
        tally[family] = (good + right, count + 1)
        if ratio <= 1.1 or ratio >= 3:
            good, count = clear.get(family, (0, 0))
            clear[family] = (good + right, count + 1)
        if args.restore_misses and not right and truth == "poisson-gaussian" and ratio >= 3 \
                and planes.shape[0] == 1:
            rows[-1]["restored"] = restore_both(planes[0, 0], CLEAN_ADU[name])
            print(name, rows[-1]["restored"], flush=True)
        if args.all or not right:
            print(f"{'ok   ' if right else 'WRONG'} {family:<17}{name:<40} true {ratio:7.2f}  fitted "
                  f"{max(fitted.ratios):7.2f}  chose {fitted.model}")
    for family, (good, count) in tally.items():
        print(f"{family:<17} right on {good} of {count}; on the clear cases {clear[family][0]} of "
              f"{clear[family][1]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(["python"] + sys.argv), "rows": rows,
                                               "tally": tally, "clear": clear}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
