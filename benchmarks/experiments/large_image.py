"""A large image through tiles: peak memory, time and quality of one tiled restoration.

Run from the repository root (not part of the test suite)::

    python benchmarks/experiments/large_image.py                                   # 4000², fast denoise, 512² tiles
    python benchmarks/experiments/large_image.py --size 4000 --iterations 30 --tile-size 512 --json large.json
    python benchmarks/experiments/large_image.py --normalise per-unit              # each tile mapped on its own

The image is a smooth pattern with edges (sines and discs, 0…255) plus
Gaussian noise σ = 25, made here (no download). It is restored with
``napari_dip.restore(noisy, "denoise", tile_size=..., overlap=...)`` and the
``fast`` preset on the chosen device. ``--normalise per-unit`` maps each tile's
intensities on its own, as the earlier ``napari_dip.tiled.restore_tiled`` did
(the figures in docs/large-images.md were measured with it).
Reported: tiles, wall time, the peak resident memory of this process
(``ru_maxrss``, which includes the input, the output and every tile's run)
and the PSNR before and after. With
``--iterations`` below the preset's, each tile is fitted for fewer
iterations: memory does not depend on that number, time does (roughly in
proportion).
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

from images import psnr  # noqa: E402


def test_scene(size: int, seed: int = 0):
    """(clean, noisy) float32 images of ``size`` × ``size`` in 0…255."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    clean = 128 + 60 * np.sin(12 * np.pi * x) * np.cos(8 * np.pi * y)
    rng = np.random.default_rng(seed)
    for _ in range(40):  # discs: sharp edges that a smoother would blur
        cy, cx, r = rng.random(3) * np.array([1, 1, 0.05]) + np.array([0, 0, 0.01])
        clean[(y - cy) ** 2 + (x - cx) ** 2 < r ** 2] = rng.uniform(20, 235)
    clean = np.clip(clean, 0, 255).astype(np.float32)
    noisy = (clean + rng.normal(0, 25, clean.shape)).astype(np.float32)
    return clean, noisy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=30, help="per tile (the preset's: 1500)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--normalise", choices=("joint", "per-unit"), default="joint",
                        help="one intensity mapping for the whole image, or one per tile")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    import napari_dip

    def rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    clean, noisy = test_scene(args.size)
    before = rss_mib()
    start = time.perf_counter()
    result = napari_dip.restore(noisy, "denoise", preset="fast", iterations=args.iterations, device=args.device,
                                tile_size=args.tile_size, overlap=args.overlap, normalise=args.normalise)
    seconds = time.perf_counter() - start
    tiles = len(result.record.tiling["tiles"])
    row = dict(date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               command=" ".join(["python"] + sys.argv), torch=torch.__version__, device=result.record.device,
               size=args.size, tile_size=args.tile_size, overlap=args.overlap, normalise=args.normalise,
               iterations_per_tile=args.iterations,
               tiles=tiles, seconds=round(seconds, 1), seconds_per_tile=round(seconds / tiles, 2),
               peak_rss_mib=round(rss_mib()), rss_before_run_mib=round(before),
               input_psnr=round(psnr(clean, noisy), 2), output_psnr=round(psnr(clean, result.image), 2),
               finite=bool(np.isfinite(result.image).all()))
    for key, value in row.items():
        print(f"{key:>20}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
