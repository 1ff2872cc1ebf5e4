"""Deconvolution with and without Richardson–Lucy mixed into the result (``mix_with="richardson-lucy"``).

Run from the repository root (not part of the test suite; about 15 minutes on 2 cores)::

    python benchmarks/experiments/deconvolution_mix.py [--json benchmarks/results/deconvolution_mix.json]
        [--only coffee,σ=3]

A grid of blurred images nobody tuned on: smooth synthetic cells (32², 64², 128²), photos (gray and RGB,
64² and 128²), Gaussian blur σ = 1, 2 or 3 px with 1–2 % Gaussian noise, and photon counts (Poisson, 50 photons
at the brightest). Each case is restored with the ``fast`` deconvolution preset on the CPU, once with mixing off
and once with Richardson–Lucy mixed in (its iteration count and the weight chosen at the held-out pixels).
References: scikit-image's Richardson–Lucy with the true PSF at 20 iterations, and the best of 10–200
iterations against the ground truth (an oracle count). PSNR with the clean image's range as the peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import images  # noqa: E402
from self_tuning import clean_image  # noqa: E402

# (image, side, colour, blur σ, noise: Gaussian σ as a fraction of 255, or ("poisson", photons at the brightest))
CASES = [("cells", 32, False, 2.0, 0.01), ("cells", 64, False, 2.0, 0.01), ("cells", 128, False, 2.0, 0.01),
         ("cells", 128, False, 1.0, 0.02), ("camera", 64, False, 2.0, 0.01), ("camera", 128, False, 2.0, 0.01),
         ("camera", 128, False, 3.0, 0.01), ("coffee", 128, False, 2.0, 0.02), ("astronaut", 128, True, 2.0, 0.01),
         ("cells", 128, False, 2.0, ("poisson", 50))]


def degrade(clean: np.ndarray, blur: float, noise, seed: int = 0):
    """(observed, restore() keyword arguments, the peak for PSNR, the truth on the observed scale)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    sigma = (blur, blur, 0) if clean.ndim == 3 else blur
    blurred = ndimage.gaussian_filter(clean.astype(np.float64), sigma, mode="reflect")
    kwargs = {"psf_sigma": blur, "channel_axis": -1 if clean.ndim == 3 else None}
    if isinstance(noise, tuple):
        photons = noise[1] / 255.0
        kwargs["noise"] = "poisson"
        return (rng.poisson(blurred * photons).astype(np.float32), kwargs, float(noise[1]),
                (clean * photons).astype(np.float32))
    observed = blurred + rng.normal(0, noise * 255.0, clean.shape)
    return observed.astype(np.float32), kwargs, 255.0, clean


def richardson_lucy_references(observed, truth, peak, blur, channel_axis) -> dict:
    scores = {n: images.psnr(truth, images.richardson_lucy(observed, blur, channel_axis, iterations=n), peak)
              for n in (10, 20, 50, 100, 200)}
    return {"Richardson-Lucy 20": scores[20], "Richardson-Lucy, oracle count": max(scores.values())}


def restore(observed, kwargs, truth, peak, mix_with) -> dict:
    import napari_dip

    start = time.perf_counter()
    result = napari_dip.restore(observed, "deconvolve", preset="fast", device="cpu", seed=0, mix_with=mix_with,
                                **kwargs)
    quality = result.record.quality or {}
    return {"psnr": images.psnr(truth, result.image, peak), "seconds": round(time.perf_counter() - start, 1),
            "chosen_iteration": quality.get("chosen_iteration"), "mixed_with": quality.get("mixed_with")}


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", default=None, help="comma-separated words: only the cases whose label has one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name, side, colour, blur, noise in CASES:
        clean = clean_image(name, side, colour)
        observed, kwargs, peak, truth = degrade(clean, blur, noise)
        label = (f"{name} {side}² {'RGB' if colour else 'gray'} blur σ={blur:g}, "
                 + (f"Poisson {noise[1]} ph" if isinstance(noise, tuple) else f"{noise:.0%} noise"))
        if args.only and not any(word in label for word in args.only.split(",")):
            continue
        row = {"case": label, "references": richardson_lucy_references(observed, truth, peak, blur,
                                                                       kwargs["channel_axis"])}
        row["network alone"] = restore(observed, kwargs, truth, peak, None)
        row["Richardson-Lucy mixed"] = restore(observed, kwargs, truth, peak, "richardson-lucy")
        rows.append(row)
        mixed = row["Richardson-Lucy mixed"]
        print(f"{label}: alone {row['network alone']['psnr']:.2f} dB ({row['network alone']['seconds']} s), "
              f"mixed {mixed['psnr']:.2f} dB ({mixed['seconds']} s; RL {mixed['mixed_with'].get('iterations')} it., "
              f"weight {mixed['mixed_with'].get('network_weight', float('nan')):.2f}), "
              + ", ".join(f"{k} {v:.2f}" for k, v in row["references"].items()), flush=True)
    gains = [r["Richardson-Lucy mixed"]["psnr"] - r["network alone"]["psnr"] for r in rows]
    print(f"mixed − alone: mean {np.mean(gains):+.2f} dB, worst {min(gains):+.2f}, best {max(gains):+.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": "python " + " ".join(sys.argv), "threads": args.threads,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
