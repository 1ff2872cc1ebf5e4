"""Warm starts across the units of one job (issue 17 called them amortised fitting): warm against cold starts,
over a grid of stacks and tiles.

    python benchmarks/experiments/amortise.py [--threads 2] [--planes 6] [--size 128] [--quick]

Each case is a stack (or a frame cut into tiles) with independent Gaussian or Poisson noise per plane; content
is smooth (synthetic cells) or textured (bundled photos), and consecutive planes change little (a slow drift of
one pixel per plane and a slow brightness change) or much (unrelated regions). Every case is restored twice
with the ``fast`` defaults, one run with every unit fitted from scratch (cold) and one with warm starts; both
report the seconds, the mean PSNR over the planes, the iterations per unit, the oracle (per unit the best
iterate's PSNR against the truth, means over units) and non-local means per plane. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCHMARKS)
import images  # noqa: E402


def source_image(content: str, side: int) -> np.ndarray:
    """A 0…255 float32 square of ``side`` pixels: synthetic cells (smooth) or a bundled photo (textured)."""
    if content == "smooth":
        return images.synthetic_cells(side, seed=side)
    return images.load({"textured": "camera", "textured2": "astronaut"}[content], side, gray=True)


def make_stack(content: str, change: str, planes: int, size: int, seed: int = 0) -> np.ndarray:
    """Clean (planes, size, size) stack: a window drifting one pixel per plane with a slow brightness change
    ('little'), or windows at unrelated places of a larger image ('much')."""
    rng = np.random.default_rng(seed)
    big = source_image(content, 3 * size)
    out = []
    for p in range(planes):
        if change == "little":
            y = x = size + p
            gain = 1.0 + 0.01 * p
        else:
            y, x = rng.integers(0, 2 * size, 2)
            gain = 1.0
        out.append(big[y:y + size, x:x + size] * gain)
    return np.clip(np.stack(out), 0, 255).astype(np.float32)


def degrade(clean: np.ndarray, noise: str, level: float, seed: int = 1):
    """(input, restore keyword arguments, truth, peak) for Gaussian σ = level or Poisson with level photons at 255."""
    rng = np.random.default_rng(seed)
    if noise == "gaussian":
        return (clean + rng.normal(0, level, clean.shape)).astype(np.float32), {}, clean, 255.0
    photons = clean / 255.0 * level
    return rng.poisson(photons).astype(np.float32), {"noise": "poisson"}, photons.astype(np.float32), float(level)


def reference(noisy: np.ndarray, noise: str, peak: float) -> np.ndarray:
    """Non-local means per plane (Anscombe-transformed for counts)."""
    planes = noisy if noisy.ndim == 3 else noisy[None]
    if noise == "gaussian":
        out = [images.nl_means(p) for p in planes]
    else:
        out = [images.anscombe(p, lambda a: images.nl_means(a, scale=1.0)) for p in planes]
    return np.stack(out).reshape(noisy.shape)


def mean_psnr(truth, image, peak):
    if truth.ndim == 2:
        return images.psnr(truth, image, peak)
    return float(np.mean([images.psnr(t, r, peak) for t, r in zip(truth, image)]))


def run(noisy, kwargs, truth, peak, warm: bool, tile_size, settings=None) -> dict:
    import napari_dip

    start = time.perf_counter()
    restore = napari_dip.restore_iter(noisy, "denoise", preset="fast", device="cpu", ground_truth=truth, seed=0,
                                      tile_size=tile_size, overlap=32, warm_start=warm, **kwargs,
                                      **(settings or {}))
    best = {}  # unit → best iterate's PSNR against the truth (the unit's own range, rescaled below)
    for snap in restore:
        current = snap.metrics.get("psnr_current")
        if current is not None and not snap.done:
            best[snap.plane] = max(best.get(snap.plane, -np.inf), current)
    seconds = time.perf_counter() - start
    record = restore.result.record.as_dict()
    units = record["units"]
    # psnr_current uses each unit's truth range as the peak; bring it to the benchmark's peak
    oracle = []
    for entry in units:
        unit_truth = truth[entry.get("plane", 0)] if truth.ndim == 3 else truth
        if "tile" in entry:
            unit_truth = unit_truth[slice(*entry["y"]), slice(*entry["x"])]
        shift = 20 * np.log10(peak / (float(unit_truth.max() - unit_truth.min()) or 1.0))
        final = entry["metrics"]["psnr"] + shift
        oracle.append(max(best.get(entry["unit"], -np.inf) + shift, final))
    return {"psnr": mean_psnr(truth, restore.result.image, peak), "seconds": round(seconds, 2),
            "oracle_per_unit": float(np.mean(oracle)),
            "iterations": [u["iterations"] for u in units], "started_from": [u["started_from"] for u in units]}


CASES = [  # (content, change, noise, level)
    ("smooth", "little", "gaussian", 25), ("textured", "little", "gaussian", 25),
    ("smooth", "much", "gaussian", 25), ("textured", "much", "gaussian", 25),
    ("textured", "little", "gaussian", 10), ("textured2", "little", "gaussian", 50),
    ("smooth", "little", "poisson", 20), ("textured", "much", "poisson", 20),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--planes", type=int, default=6)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--tiles", type=int, default=0, help="also: frames of this side cut into 128² tiles")
    parser.add_argument("--cases", default="all", help="comma-separated case numbers (0-based), or all")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for every run, a Python literal, e.g. --set stop_patience=100")
    parser.add_argument("--only", choices=("cold", "warm"), default=None, help="run one of the two")
    parser.add_argument("--json", default=os.path.join(BENCHMARKS, "results", "amortise.json"))
    args = parser.parse_args(argv)
    import ast

    import torch

    settings = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(args.threads)
    os.environ["NAPARI_DIP_THREADS"] = str(args.threads)
    chosen = range(len(CASES)) if args.cases == "all" else [int(c) for c in args.cases.split(",")]
    jobs = [("stack",) + CASES[i] for i in chosen]
    if args.tiles:
        jobs += [("frame", "textured", "-", "gaussian", 25), ("frame", "smooth", "-", "gaussian", 25)]
    rows = []
    print(f"torch {torch.__version__}, {args.threads} threads; {args.planes} planes of {args.size}²", flush=True)
    for kind, content, change, noise, level in jobs:
        if kind == "stack":
            clean = make_stack(content, change, args.planes, args.size)
            tile_size = None
        else:
            clean = source_image(content, args.tiles)
            tile_size = 128
        noisy, kwargs, truth, peak = degrade(clean, noise, level)
        ref = mean_psnr(truth, reference(noisy, noise, peak), peak)
        row = {"case": f"{kind} {content} {change} {noise} {level}", "nlm": round(ref, 2)}
        for name, warm in (("cold", False), ("warm", True)):
            if args.only in (None, name):
                row[name] = run(noisy, kwargs, truth, peak, warm, tile_size, settings)
        rows.append(row)
        if args.only:
            r = row[args.only]
            print(f"{row['case']:40s} NLM {ref:6.2f} | {args.only} {r['psnr']:6.2f} ({r['seconds']:6.1f} s, oracle "
                  f"{r['oracle_per_unit']:6.2f}) its {r['iterations']}", flush=True)
            continue
        c, w = row["cold"], row["warm"]
        print(f"{row['case']:40s} NLM {ref:6.2f} | cold {c['psnr']:6.2f} ({c['seconds']:6.1f} s, oracle "
              f"{c['oracle_per_unit']:6.2f}) | warm {w['psnr']:6.2f} ({w['seconds']:6.1f} s, oracle "
              f"{w['oracle_per_unit']:6.2f}) | time ×{w['seconds'] / c['seconds']:.2f} | its cold {c['iterations']}"
              f" warm {w['iterations']}", flush=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"command": " ".join(["python"] + sys.argv), "threads": args.threads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
