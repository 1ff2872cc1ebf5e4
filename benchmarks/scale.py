"""Real-sized data: seconds to result and PSNR, cold start against the current default, with a classical reference.

    python benchmarks/scale.py [--shrink 4] [--threads 2] [--cases a,b,c,d] [--device cpu]
    python benchmarks/scale.py --shrink 1 --device cuda --cases a,b,c,d,e --skip-reference   # on a GPU

The four cases of issue 17, at their full sizes with ``--shrink 1``:
(a) a 2048² 16-bit synthetic fluorescence frame with Poisson-Gaussian noise (gain 2 ADU/photon, offset 100 ADU,
    read noise 2 ADU, up to 40 photons), restored with ``noise='poisson-gaussian'``; reference: generalised
    Anscombe + non-local means with the true camera;
(b) a 32-plane 512² time-lapse-like stack: cells drifting one pixel per plane with a slow brightness change and
    independent Poisson noise (30 photons at the brightest); reference: Anscombe + non-local means per plane;
(c) a 32 × 256 × 256 volume of smooth blobs with Gaussian noise (σ = 5 % of the range), denoised with a 3D
    network (``volumetric=True``); reference: 3D Gaussian smoothing with the best σ against the truth (an oracle);
(d) axial ×2 of a 32 × 256 × 256 volume (16 planes measured, σ = 1 %); reference: cubic interpolation along Z;
(e) a 64-plane 256² stack made as (b) (the GPU issue's stack).

``--shrink s`` divides every side (and the stack's plane count) by s, so that the grid runs in minutes on two
cores. Each case is restored with warm starts off (cold: every unit from scratch, the behaviour before issue 17)
and with the defaults; where the defaults start nothing warm (one unit) the run is the same and is not repeated.
To say what the full size would take, one full-resolution iteration is timed at the full size (auto stop off,
no coarse stages) and multiplied by the iterations the shrunken run needed: an over-estimate where coarse
stages ran (they cost a fraction of a full iteration); at ``--shrink 1`` the seconds are measured, not estimated.
``--skip-reference`` leaves out the classical references (CPU work that a GPU machine's lease should not pay
for; run them on any machine), ``--defaults-only`` the cold-start runs. Run it on a quiet machine: nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
import images  # noqa: E402
from axial_superres import volume  # noqa: E402
from test_axial_superres import interpolate_z, measure, psnr  # noqa: E402

TARGET_SECONDS = {"a": 300, "b": 600, "c": 600, "d": 600}  # issue 17, on 2 CPU cores
GPU_TARGET_SECONDS = {"a": 20, "e": 30}  # issue 19, on one H100
GAIN, OFFSET, READ_NOISE, PEAK_PHOTONS = 2.0, 100.0, 2.0, 40.0


def anscombe_nlm(counts: np.ndarray) -> np.ndarray:
    """Photon counts through Anscombe's transform, non-local means (σ = 1 there) and back, per plane."""
    planes = counts if counts.ndim == 3 else counts[None]
    out = [images.anscombe(np.clip(p, 0, None), lambda a: images.nl_means(a, scale=1.0)) for p in planes]
    return np.stack(out).reshape(counts.shape)


def case_frame(shrink: int) -> dict:
    side = 2048 // shrink
    photons = images.synthetic_cells(side, seed=3) / 255.0 * PEAK_PHOTONS + 1.0
    rng = np.random.default_rng(4)
    adu = GAIN * rng.poisson(photons) + OFFSET + rng.normal(0, READ_NOISE, photons.shape)
    frame = np.clip(np.round(adu), 0, 65535).astype(np.uint16)
    truth = (GAIN * photons + OFFSET).astype(np.float32)
    reference = lambda: anscombe_nlm((frame.astype(np.float32) - OFFSET) / GAIN) * GAIN + OFFSET  # noqa: E731
    return dict(name=f"(a) {side}² 16-bit frame, Poisson-Gaussian", full=(2048, 2048), input=frame, truth=truth,
                kwargs=dict(noise="poisson-gaussian"), reference=("Anscombe + NLM", lambda: psnr(reference(), truth)))


def case_stack(shrink: int, planes: int = 32, side: int = 512, label: str = "(b)") -> dict:
    side, planes = side // shrink, max(1, planes // shrink)
    big = images.synthetic_cells(2 * side, seed=5)
    clean = np.stack([big[side // 2 + p:side // 2 + p + side, side // 2 + p:side // 2 + p + side] * (1 + 0.01 * p)
                      for p in range(planes)])
    photons = (clean / clean.max() * 30.0).astype(np.float32)
    counts = np.random.default_rng(6).poisson(photons).astype(np.float32)
    return dict(name=f"{label} {planes} × {side}² time-lapse, Poisson", full=(planes * shrink, side * shrink,
                                                                           side * shrink),
                input=counts, truth=photons, kwargs=dict(noise="poisson"),
                reference=("Anscombe + NLM per plane", lambda: psnr(anscombe_nlm(counts), photons)))


def case_long_stack(shrink: int) -> dict:
    return case_stack(shrink, planes=64, side=256, label="(e)")


def case_volume(shrink: int) -> dict:
    shape = (32 // shrink, 256 // shrink, 256 // shrink)
    truth = volume("spheres", shape, seed=7)
    noisy = (truth + np.random.default_rng(8).normal(0, 0.05, shape)).astype(np.float32)
    best = lambda: max(psnr(ndimage.gaussian_filter(noisy, s), truth) for s in (0.5, 0.75, 1.0, 1.5, 2.0))  # noqa
    return dict(name=f"(c) {shape[0]} × {shape[1]}² volume, 3D denoise", full=(32, 256, 256), input=noisy,
                truth=truth, kwargs=dict(volumetric=True), reference=("3D Gaussian, best σ (oracle)", best))


def case_axial(shrink: int) -> dict:
    shape = (32 // shrink, 256 // shrink, 256 // shrink)
    truth = volume("spheres", shape, seed=9)
    stack = measure(truth, 2, noise=0.01)
    return dict(name=f"(d) axial ×2 to {shape[0]} × {shape[1]}²", full=(16, 256, 256), input=stack, truth=truth,
                task="axial-superres", kwargs=dict(factor=2),
                reference=("cubic along Z", lambda: psnr(interpolate_z(stack, 2, 3), truth)))


CASES = {"a": case_frame, "b": case_stack, "c": case_volume, "d": case_axial, "e": case_long_stack}


def restore(case: dict, device: str = "cpu", **overrides) -> dict:
    import napari_dip

    start = time.perf_counter()
    run = napari_dip.restore_iter(case["input"], case.get("task", "denoise"), device=device, seed=0,
                                  **case["kwargs"], **overrides)
    unit = 0
    for snapshot in run:  # a unit's end, as it comes: a run cut short by a time limit still says how far it got
        if snapshot.plane != unit and snapshot.planes > 1:
            print(f"  {case['name']}: {snapshot.plane} of {snapshot.planes} units done at "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
            unit = snapshot.plane
    seconds = time.perf_counter() - start
    result = run.result
    record = result.record.as_dict()
    return {"seconds": round(seconds, 1), "psnr": round(psnr(result.image, case["truth"]), 2),
            "iterations": record["iterations"], "units": len(record["units"]),
            "started_from": [u.get("started_from") for u in record["units"]], "device": record["device"]}


def full_size_iteration_seconds(case: dict, key: str) -> float:
    """Seconds of one full-resolution iteration of the case's default network on the full-size input."""
    import napari_dip

    # an iteration's cost does not depend on the pixels' values, nor on the noise model's data term (to rounding)
    image = np.random.default_rng(0).random(case["full"]).astype(np.float32) * 50
    kwargs = {k: v for k, v in case["kwargs"].items() if k != "noise"}
    lead = image[0] if key == "b" else image  # one unit: a plane of the stack
    run = napari_dip.restore_iter(lead, case.get("task", "denoise"), device="cpu", iterations=4, snapshot_every=1,
                                  auto_stop=False, coarse_to_fine=(), tile_size=None, **kwargs)
    times = [s.seconds for s in run]
    return (times[-1] - times[1]) / (len(times) - 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shrink", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="a,b,c,d")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--skip-reference", action="store_true", help="leave out the classical references")
    parser.add_argument("--defaults-only", action="store_true",
                        help="only the defaults, no cold-start run (a GPU lease's time)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for key in args.cases.split(","):
        case = CASES[key](args.shrink)
        label, reference = case["reference"]
        row = {"case": case["name"], "reference": None if args.skip_reference else (label, reference())}
        if args.defaults_only:
            row["default"] = restore(case, args.device)
        else:
            row["cold"] = restore(case, args.device, warm_start=False)
            units = row["cold"]["units"]
            row["default"] = restore(case, args.device) if units > 1 else dict(row["cold"], same_run=True)
        if args.shrink > 1:
            per_iteration = full_size_iteration_seconds(case, key)
            units_full = case["full"][0] if key in ("b", "e") else 1
            for name in ("cold", "default"):
                if name not in row:
                    continue
                r = row[name]
                # iterations per unit at the shrunken size × one full-size iteration × the full size's units
                r["full_size_estimate_s"] = round(r["iterations"] / r["units"] * units_full * per_iteration, 0)
            row["full_size_iteration_s"] = round(per_iteration, 3)
        row["target_s"] = (GPU_TARGET_SECONDS if args.device.startswith("cuda") else TARGET_SECONDS).get(key)
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"command": " ".join(["python"] + sys.argv), "threads": args.threads, "shrink": args.shrink,
                   "device": args.device,
                   "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
