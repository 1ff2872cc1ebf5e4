"""Memory layout of 2D networks: NCHW against channels-last (NHWC), per task's ``fast`` preset, on the CPU.

    python benchmarks/experiments/layout.py [--threads 2] [--sizes 128,256] [--iterations 30]

Each task's ``fast`` preset runs a fixed number of full-resolution iterations (automatic stopping and coarse
stages off, so every iteration costs the same) with ``channels_last`` off and on; the seconds per iteration
are the median over the iterations after the first five. The layout is a speed setting: the table also gives
the largest difference between the two results, which should be rounding. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

TASK_INPUTS = {"denoise": {}, "inpaint": "mask", "superres": dict(factor=2), "deconvolve": dict(psf_sigma=1.0),
               "guided": "guide"}


def run(task: str, side: int, iterations: int, channels_last: bool) -> tuple[float, np.ndarray]:
    import napari_dip

    image = np.random.default_rng(0).random((side, side)).astype(np.float32)
    extra = TASK_INPUTS[task]
    if extra == "mask":
        extra = dict(mask=np.pad(np.ones((side // 4, side // 4), bool), 3 * side // 8))
    elif extra == "guide":
        extra = dict(guide=image)
    states = list(napari_dip.restore_iter(
        image, task, device="cpu", seed=0, iterations=iterations, snapshot_every=1, auto_stop=False,
        coarse_to_fine=(), tile_size=None, channels_last=channels_last, **extra))
    steps = np.diff([s.seconds for s in states if s.iteration >= 5])
    return statistics.median(steps), states[-1].image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'task':<12}{'size':>6}{'NCHW s/it':>11}{'NHWC s/it':>11}{'NHWC/NCHW':>11}{'max |diff|':>12}")
    for side in (int(s) for s in args.sizes.split(",")):
        for task in TASK_INPUTS:
            nchw, a = run(task, side, args.iterations, False)
            nhwc, b = run(task, side, args.iterations, True)
            row = dict(task=task, size=side, nchw_s=round(nchw, 4), nhwc_s=round(nhwc, 4),
                       ratio=round(nhwc / nchw, 3), max_difference=float(np.max(np.abs(a - b))))
            rows.append(row)
            print(f"{task:<12}{side:>6}{nchw:>11.4f}{nhwc:>11.4f}{nhwc / nchw:>11.3f}{row['max_difference']:>12.2e}",
                  flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"NHWC/NCHW: geometric mean {float(np.exp(np.mean(np.log(ratios)))):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f} ({torch.get_num_threads()} threads, torch {torch.__version__})")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(threads=args.threads, torch=torch.__version__, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
