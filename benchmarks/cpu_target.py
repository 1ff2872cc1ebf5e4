"""The CPU target: does the ``fast`` preset beat a classical method within 60 seconds?

Run from the repository root (not part of the test suite)::

    python benchmarks/cpu_target.py                       # denoising on camera, astronaut, coffee
    python benchmarks/cpu_target.py --tasks all --images camera
    python benchmarks/cpu_target.py --threads 2 --budget 60 --json cpu_target.json

Each run restores a 256×256 grayscale image (the central square of a bundled
scikit-image photo, resized) with ``napari_dip.restore_iter(..., preset='fast',
device='cpu')`` and a ground truth, reads the PSNR of the result so far at every
snapshot, and stops at the time budget. It reports the best PSNR reached within
the budget, the time at which the PSNR first reached the classical method's,
and what the whole preset run gives. Reference methods (``images.degrade``):
denoise and guided, scikit-image's non-local means tuned as its gallery
recommends; inpaint (50 % missing pixels), biharmonic inpainting; superres ×4,
bicubic; deconvolve (Gaussian blur σ=2 px, 1 % noise), Richardson–Lucy.

Times are wall-clock seconds of the whole ``restore_iter`` run on this machine,
snapshots and metrics included; on a shared machine they depend on the load,
which is printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import images  # noqa: E402

TASKS = ("denoise", "inpaint", "superres", "deconvolve", "guided")


def run_one(task: str, name: str, budget: float, size: int = 256, full: bool = True, overrides=None) -> dict:
    import napari_dip

    clean = images.load(name, size, gray=True)
    case = images.degrade(task, clean)
    reference = images.psnr(clean, case["baseline"])
    kwargs = dict(case["kwargs"])
    kwargs.update(overrides or {})
    start = time.perf_counter()
    run = napari_dip.restore_iter(case["input"], task, preset="fast", device="cpu", ground_truth=clean, seed=0,
                                  **kwargs)
    curve = []
    reached = None
    best_in_budget = None
    for snap in run:
        elapsed = time.perf_counter() - start
        p = snap.metrics.get("psnr")
        if p is None:
            continue
        curve.append((snap.iteration, round(elapsed, 2), round(p, 3)))
        if elapsed <= budget:
            best_in_budget = p if best_in_budget is None else max(best_in_budget, p)
        if reached is None and p >= reference:
            reached = elapsed
        if not full and elapsed > budget:
            run.stop()
    record = run.result.record.as_dict()
    final = record["metrics"]["psnr"]
    return dict(task=task, image=name, size=size, input_psnr=case["input_psnr"], reference=case["baseline_name"],
                reference_psnr=reference, best_psnr_in_budget=best_in_budget, seconds_to_reference=reached,
                final_psnr=final, final_seconds=record["seconds"], iterations=record["iterations"],
                stop_reason=record["stop_reason"],
                seconds_per_iteration=record["seconds"] / max(1, record["iterations"]),
                device=record["device"], curve=curve)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="denoise", help="comma-separated, or 'all'")
    parser.add_argument("--images", default="camera,astronaut,coffee")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--stop-at-budget", action="store_true", help="stop each run at the budget")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting on top of the preset, as in napari-dip restore --set (repeatable)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from napari_dip.cli import parse_settings

    overrides = parse_settings(args.set)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = TASKS if args.tasks == "all" else tuple(t.strip() for t in args.tasks.split(","))
    names = [n.strip() for n in args.images.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"napari-dip CPU target — {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average at start {load:.2f}; budget {args.budget:g} s; {args.size}² grayscale"
          + (f"; settings {overrides}" if overrides else ""))
    rows = []
    header = (f"{'task':<11}{'image':<10}{'input':>7}{'reference':>11}{'best≤budget':>12}{'t→ref s':>9}"
              f"{'final':>8}{'iters':>7}{'s total':>9}{'s/iter':>8}  reference method")
    print(header)
    for task in tasks:
        for name in names:
            r = run_one(task, name, args.budget, args.size, full=not args.stop_at_budget, overrides=overrides)
            r["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            rows.append(r)
            best = "—" if r["best_psnr_in_budget"] is None else f"{r['best_psnr_in_budget']:.2f}"
            reach = "never" if r["seconds_to_reference"] is None else f"{r['seconds_to_reference']:.1f}"
            print(f"{task:<11}{name:<10}{r['input_psnr']:>7.2f}{r['reference_psnr']:>11.2f}{best:>12}{reach:>9}"
                  f"{r['final_psnr']:>8.2f}{r['iterations']:>7}{r['final_seconds']:>9.1f}"
                  f"{r['seconds_per_iteration']:>8.3f}  {r['reference']}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), torch=torch.__version__,
            threads=torch.get_num_threads(), budget=args.budget, command=" ".join(["python"] + sys.argv),
            rows=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
