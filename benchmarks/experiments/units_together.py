"""Units fitted together in one network call (core/loop.py fit_units) against the same units one after the other.

    python benchmarks/experiments/units_together.py [--threads 2] [--sizes 64,128,256] [--units 1,2,4,8]
        [--iterations 60]
                                        [--device cpu] [--dims 2] [--out FILE]

Per unit size and count: the `fast` denoising network (light decoder, two members) at full resolution for a fixed
number of iterations (no stopping rule, no coarse stages, so both ways do the same steps), timed after a few
warm-up steps; seconds per unit-iteration, together and in turn, and their ratio. Run it on a quiet machine (on the
CPU nothing else running: torch's threads collapse when another process competes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from napari_dip.core import loop  # noqa: E402
from napari_dip.core.loop import Problem  # noqa: E402
from napari_dip.core.presets import get_settings  # noqa: E402


def problems(units: int, size: int, dims: int) -> list[Problem]:
    shape = (size,) * 2 if dims == 2 else (max(8, size // 8), size, size)
    generator = torch.Generator().manual_seed(0)
    return [Problem(target=torch.rand((1, 1, *shape), generator=generator), out_channels=1, out_spatial=shape)
            for _ in range(units)]


def seconds_per_iteration(group: list[Problem], settings, device: str, warm_up: int = 5) -> float:
    """Seconds for one iteration of every unit in ``group`` fitted together, after ``warm_up`` steps."""
    times = []
    last = None

    def tick(iteration, network):
        nonlocal last
        if device == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if last is not None and iteration > warm_up:
            times.append(now - last)
        last = now

    for _ in loop.fit_units(group, settings, device=device, on_iteration=tick):
        pass
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--units", default="1,2,4,8")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dims", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = dataclasses.replace(get_settings("denoise", "fast"), iterations=args.iterations, auto_stop=False,
                                   early_stopping=False, coarse_to_fine=(), snapshot_every=10 ** 6)
    rows = []
    for size in map(int, args.sizes.split(",")):
        one = seconds_per_iteration(problems(1, size, args.dims), settings, args.device)
        for units in map(int, args.units.split(",")):
            together = seconds_per_iteration(problems(units, size, args.dims), settings, args.device) / units
            row = {"size": size, "dims": args.dims, "units": units, "threads": args.threads, "device": args.device,
                   "seconds_per_unit_iteration_in_turn": round(one, 5),
                   "seconds_per_unit_iteration_together": round(together, 5),
                   "together_over_in_turn": round(together / one, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out is not None:
                args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
