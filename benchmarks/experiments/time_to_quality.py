"""Time to quality: automatic early stopping (ES-WMV) against a fixed-length run.

Run from the repository root (not part of the test suite)::

    python benchmarks/experiments/time_to_quality.py --device cuda  # paper preset, 512² RGB, 3000 iterations
    python benchmarks/experiments/time_to_quality.py --device cpu --preset fast --size 256 --gray

Both runs restore the same noisy image (σ = 25, the central square of
scikit-image's astronaut resized to ``--size``). The fixed run has early
stopping off and ``--iterations`` iterations; its best PSNR over the snapshots
is the reference P*. Reported: the seconds the fixed run needed to first come
within 0.5 dB of P*, its total seconds, and for the run with early stopping on:
when it stopped, at which iteration, and its result's PSNR against P* − 0.5 dB.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import images  # noqa: E402


def curve_of(noisy, clean, channel_axis, preset, device, iterations, early_stopping, snapshot_every):
    import napari_dip

    start = time.perf_counter()
    run = napari_dip.restore_iter(noisy, "denoise", preset=preset, device=device, ground_truth=clean,
                                  channel_axis=channel_axis, iterations=iterations, early_stopping=early_stopping,
                                  snapshot_every=snapshot_every, seed=0)
    curve = [(s.iteration, time.perf_counter() - start, s.metrics["psnr"]) for s in run if "psnr" in s.metrics]
    return curve, run.result.record.as_dict()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default=None, help="default: paper on CUDA, fast elsewhere")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--gray", action="store_true", help="grayscale instead of RGB")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--snapshot-every", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    from napari_dip.core.device import describe_device, resolve_device

    device = resolve_device(args.device)
    preset = args.preset or ("paper" if device.type == "cuda" else "fast")
    clean = images.load("astronaut", args.size, gray=args.gray)
    noisy = images.degrade("denoise", clean)["input"]
    channel_axis = None if clean.ndim == 2 else -1
    print(f"time to quality — {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; "
          f"{describe_device(device)}; torch {torch.__version__}; load {os.getloadavg()[0]:.2f}")
    print(f"astronaut {args.size}² {'gray' if args.gray else 'RGB'}, σ=25, preset {preset!r}, "
          f"fixed run {args.iterations} iterations")

    fixed, fixed_record = curve_of(noisy, clean, channel_axis, preset, str(device), args.iterations, False,
                                   args.snapshot_every)
    best = max(p for _, _, p in fixed)
    within = next((t, i) for i, t, p in fixed if p >= best - 0.5)
    es, es_record = curve_of(noisy, clean, channel_axis, preset, str(device), args.iterations, True,
                             args.snapshot_every)
    es_psnr = es_record["metrics"]["psnr"]
    print(f"fixed run: best PSNR P* = {best:.2f} dB; within 0.5 dB of P* after {within[0]:.1f} s "
          f"(iteration {within[1]}); whole run {fixed_record['seconds']:.1f} s, final {fixed[-1][2]:.2f} dB")
    print(f"early stopping: stopped after {es_record['seconds']:.1f} s at iteration {es_record['iterations']} "
          f"({es_record['stop_reason']}); result {es_psnr:.2f} dB = P* {es_psnr - best:+.2f} dB "
          f"({'within' if es_psnr >= best - 0.5 else 'NOT within'} 0.5 dB)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), device=describe_device(device),
            torch=torch.__version__, preset=preset, size=args.size, gray=args.gray, iterations=args.iterations,
            best=best, seconds_to_within_half_db=within[0], fixed_seconds=fixed_record["seconds"],
            fixed_curve=fixed, es_seconds=es_record["seconds"], es_iterations=es_record["iterations"],
            es_psnr=es_psnr, es_stop_reason=es_record["stop_reason"], es_curve=es), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
