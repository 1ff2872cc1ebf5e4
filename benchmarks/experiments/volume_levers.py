"""Levers for 3D at real sizes (issue 17, item 6): the scale benchmark's volume cases, shrunken, restored with the
default and with cheaper variants; PSNR, seconds, iterations and one full-size iteration's seconds per variant.

    python benchmarks/experiments/volume_levers.py [--shrink 4] [--threads 2] [--cases c,d]
        [--variants default,one-member,...]

Variants (settings passed to ``restore`` on top of the case's own):
default: as the package runs; one-member: ``ensemble=1``; thin-body: 1×1×1 convolutions but the full-resolution
head (``network_kernel=1``); thin-one: both; planes: (c) only, the volume as a stack of 2D planes (``volumetric=False``:
the 2D network, each plane warm-started from the plane before). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import scale  # noqa: E402

VARIANTS = {
    "default": {},
    "one-member": {"ensemble": 1},
    "thin-body": {"network_kernel": 1},
    "thin-one": {"network_kernel": 1, "ensemble": 1},
    "planes": {"volumetric": False},
}


def full_iteration(case: dict, overrides: dict) -> float:
    import napari_dip

    image = np.random.default_rng(0).random(case["full"]).astype(np.float32)
    kwargs = dict(case["kwargs"], **overrides)
    planes = kwargs.get("volumetric") is False
    if planes:
        image = image[0]  # one plane: a unit of the stack
    kwargs = {k: v for k, v in kwargs.items() if k != "volumetric" or v}
    run = napari_dip.restore_iter(image, case.get("task", "denoise"), device="cpu", iterations=4, snapshot_every=1,
                                  auto_stop=False, coarse_to_fine=(), tile_size=None, workers=1, noise="gaussian",
                                  **kwargs)
    times = [s.seconds for s in run]
    per_unit = (times[-1] - times[1]) / (len(times) - 2)
    return per_unit * (case["full"][0] if planes else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shrink", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="c,d")
    parser.add_argument("--variants", default="default,one-member,thin-body,thin-one,planes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "volume_levers.json")
    args = parser.parse_args()
    import torch

    import napari_dip

    torch.set_num_threads(args.threads)
    rows = []
    for key in args.cases.split(","):
        case = scale.CASES[key](args.shrink)
        for name in args.variants.split(","):
            overrides = VARIANTS[name]
            if name == "planes" and key != "c":
                continue
            kwargs = dict(case["kwargs"], **overrides)
            start = time.perf_counter()
            result = napari_dip.restore(case["input"], case.get("task", "denoise"), device="cpu", seed=0, **kwargs)
            seconds = time.perf_counter() - start
            row = {"case": case["name"], "variant": name, "psnr": round(scale.psnr(result.image, case["truth"]), 2),
                   "seconds": round(seconds, 1), "iterations": result.record.iterations,
                   "units": len(result.record.units),
                   "full_size_iteration_s": round(full_iteration(case, overrides), 3)}
            # iterations per unit at the shrunken size × one full-size iteration (all units)
            row["full_size_estimate_s"] = round(row["iterations"] / row["units"] * row["full_size_iteration_s"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            args.out.write_text(json.dumps({"command": " ".join(["python"] + sys.argv), "shrink": args.shrink,
                                            "threads": args.threads, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
