"""Axial super-resolution with the defaults a user gets, over volumes, factors and noise levels nobody tuned it on.

Run from the repository root (not part of the test suite; about half an hour on 2 cores)::

    python benchmarks/axial_superres.py                  # the grid, table to stdout and results/axial_superres.json
    python benchmarks/axial_superres.py --grid quick     # two cases
    python benchmarks/axial_superres.py --set coarse_to_fine=None --out /tmp/plain.json   # a setting changed

Each synthetic volume is measured with the task's own forward model (a Lanczos-2 weighted mean
over ``factor`` fine planes, one measured plane per ``factor``) plus Gaussian noise, then restored with
``restore(stack, "axial-superres", factor=F)`` and nothing else: the ``fast`` preset on the CPU with
automatic stopping. Per case:

- **auto**: PSNR of the result the run keeps, and seconds to it;
- **oracle**: the best PSNR of any snapshot (every 25 iterations) against the truth the run never sees;
- **linear**, **cubic**: interpolation along Z alone, the classical answer.

PSNR uses the truth's range. Volumes and noise are seeded, so every run restores the same inputs.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

# the forward model, the interpolations and PSNR are the test's, so that both measure the same thing
from test_axial_superres import interpolate_z, measure, psnr  # noqa: E402

# (volume, fine shape (Z, Y, X), factor, noise σ as a fraction of the range)
GRIDS = {"quick": [("spheres", (32, 32, 32), 2, 0.01), ("filaments", (32, 32, 32), 4, 0.05)]}
GRIDS["full"] = (
    [(name, (32, 32, 32), factor, sigma) for name in ("spheres", "filaments", "layers")
     for factor in (2, 4) for sigma in (0.01, 0.05)]
    + [("spheres", (64, 48, 48), 4, 0.02), ("filaments", (64, 48, 48), 4, 0.02)]
)


def volume(name: str, shape: tuple, seed: int = 1) -> np.ndarray:
    """A synthetic fluorescence-like volume in [0, 1].

    spheres: smooth blobs; filaments: thin random tubes (fine structure in every direction);
    layers: tilted sheets with a textured modulation (structure that changes fastest along Z).
    """
    rng = np.random.default_rng(seed)
    grid = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float32)
    size = np.array(shape, np.float32)
    out = np.zeros(shape, np.float32)
    if name == "spheres":
        for _ in range(int(np.prod(size) / 3000)):
            centre, radius = rng.uniform(4, size - 4), rng.uniform(3, 7)
            distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
            out += rng.uniform(0.5, 1.0) / (1 + np.exp((distance - radius) / 0.7))
    elif name == "filaments":
        points = np.zeros(shape, np.float32)
        for _ in range(int(np.prod(size) / 2000)):
            start, direction = rng.uniform(0, size), rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            for t in np.linspace(-max(shape), max(shape), 8 * max(shape)):
                index = np.round(start + t * direction).astype(int)
                if np.all(index >= 0) and np.all(index < shape):
                    points[tuple(index)] = rng.uniform(0.5, 1.0)
        out = ndimage.gaussian_filter(points, 0.9)
    elif name == "layers":
        normal = np.array([1.0, 0.3, 0.2]) / np.linalg.norm([1.0, 0.3, 0.2])
        depth = sum(g * n for g, n in zip(grid, normal))
        texture = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), 1.5)
        out = (0.5 + 0.5 * np.sin(2 * np.pi * depth / 7.0)) * (0.6 + 4 * (texture - texture.mean()))
    else:
        raise ValueError(f"unknown volume {name!r}")
    out -= out.min()
    return (out / out.max()).astype(np.float32)


def run_case(name: str, shape: tuple, factor: int, sigma: float, overrides: dict) -> dict:
    import napari_dip

    truth = volume(name, shape)
    stack = measure(truth, factor, noise=sigma)
    start = time.perf_counter()
    run = napari_dip.restore_iter(stack, "axial-superres", factor=factor, device="cpu", ground_truth=truth,
                                   **overrides)
    oracle, oracle_iteration = -np.inf, 0
    for snapshot in run:
        metrics = snapshot.metrics or {}
        for key in ("psnr", "psnr_current"):
            if metrics.get(key, -np.inf) > oracle:
                oracle, oracle_iteration = metrics[key], snapshot.iteration
    seconds = time.perf_counter() - start
    result = run.result
    quality = result.record.quality
    return {
        "volume": name, "shape": list(shape), "factor": factor, "sigma": sigma,
        "auto": psnr(result.image, truth), "seconds": seconds,
        "iterations": result.record.iterations, "chosen_iteration": quality.get("chosen_iteration"),
        "oracle": float(oracle), "oracle_iteration": oracle_iteration,
        "linear": psnr(interpolate_z(stack, factor, 1), truth), "cubic": psnr(interpolate_z(stack, factor, 3), truth),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every case (Python literal), e.g. coarse_to_fine=None")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "axial_superres.json")
    args = parser.parse_args(argv)
    overrides = {key: ast.literal_eval(value) for key, value in (pair.split("=", 1) for pair in args.set)}
    rows = []
    header = f"{'volume':<10} {'shape':<10} {'F':>2} {'σ':>5} {'auto':>6} {'oracle':>6} {'linear':>6} {'cubic':>6} " \
             f"{'its':>5} {'s':>5}"
    print(header, flush=True)
    for case in GRIDS[args.grid]:
        row = run_case(*case, overrides)
        rows.append(row)
        print(f"{row['volume']:<10} {'×'.join(map(str, row['shape'])):<10} {row['factor']:>2} {row['sigma']:>5} "
              f"{row['auto']:6.2f} {row['oracle']:6.2f} {row['linear']:6.2f} {row['cubic']:6.2f} "
              f"{row['iterations'] or 0:>5} {row['seconds']:5.0f}", flush=True)
    best_classical = [max(r["linear"], r["cubic"]) for r in rows]
    summary = {
        "auto_beats_classical": sum(r["auto"] > c for r, c in zip(rows, best_classical)),
        "mean_auto_minus_classical": float(np.mean([r["auto"] - c for r, c in zip(rows, best_classical)])),
        "mean_auto_minus_oracle": float(np.mean([r["auto"] - r["oracle"] for r in rows])),
        "worst_auto_minus_oracle": float(min(r["auto"] - r["oracle"] for r in rows)),
        "cases": len(rows),
    }
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "grid": args.grid,
                                    "threads": os.environ.get("OMP_NUM_THREADS"), "overrides": overrides,
                                    "summary": summary,
                                    "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
