"""Teach once, apply everywhere (issue 28): the amortised default against per-unit DIP and the classical reference.

    python benchmarks/teach_once.py [--cases smooth768,textured768,frame2048,timelapse,pn2v] [--per-unit]
                                    [--data ../shared/realdata] [--threads 2] [--json PATH]

Cases (Gaussian σ in 0…255 units unless said):
  smooth768, textured768  a 768² frame: synthetic cells / the bundled camera photo enlarged, σ = 25;
  poisson768              the cells as photon counts, 20 at the brightest;
  frame2048               benchmarks/scale.py's case (a): a 2048² 16-bit frame, Poisson-Gaussian camera noise;
  timelapse               scale.py's case (b): 32 × 512² drifting cells, Poisson (30 photons at the brightest);
  pn2v                    a real 1024² EMCCD frame from --data/pn2v (no ground truth: time and the judge only).
Per case: the amortised path, the student kept whatever the judge says (seconds, PSNR, the judge's gap and the true
gap on the judge crop, and the call the default margin of 0.2 dB would make: the student, or per-unit fitting after it);
with --per-unit, per-unit DIP (amortise=False) on the whole case, or for the time-lapse on 2 of its planes (the
student's PSNR on the same planes beside it); the classical reference (BM3D if the ``bm3d`` package is installed,
else BM3D's block matching from ``bmnd``; generalised-Anscombe-transformed for photon counts) with its seconds.
There is no oracle for the student (it keeps its last step); the teacher's own PSNR on the judge crop stands beside
it. Time it on a quiet machine: nothing else running.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
import images  # noqa: E402
import scale  # noqa: E402

DEFAULT_MARGIN = 0.2  # Settings.amortise_margin


def psnr(truth, image) -> float:
    peak = float(truth.max() - truth.min())
    return float(10 * np.log10(peak ** 2 / np.mean((np.asarray(image, np.float64) - truth) ** 2)))


def gaussian_reference(noisy: np.ndarray, sigma: float | None = None):
    """(name, function of no argument) of the strongest classical Gaussian denoiser installed, σ in image units."""
    from napari_dip.core.reference import block_matching

    sigma = sigma if sigma is not None else images._sigma(noisy / 255.0) * 255.0
    try:
        import bm3d

        return "BM3D", lambda x=noisy, s=sigma: np.asarray(bm3d.bm3d(x, sigma_psd=s), np.float32)
    except ImportError:
        return "BMND (BM3D's block matching)", lambda x=noisy, s=sigma: block_matching(x[None].astype(np.float32),
                                                                                          s)[0]


def counts_reference(counts: np.ndarray):
    """Anscombe's transform of photon counts, the Gaussian reference at σ = 1, and back; per plane."""
    from napari_dip.core.reference import anscombe

    name, _ = gaussian_reference(np.zeros((8, 8), np.float32), 1.0)

    def run():
        planes = counts if counts.ndim == 3 else counts[None]
        out = [anscombe(np.clip(p, 0, None), lambda a: gaussian_reference(a.astype(np.float32), 1.0)[1]())
               for p in planes]
        return np.stack(out).reshape(counts.shape)

    return f"Anscombe + {name}", run


def case_768(kind: str) -> dict:
    rng = np.random.default_rng(0)
    if kind == "poisson768":
        photons = (images.synthetic_cells(768, seed=3) / 255.0 * 20.0).astype(np.float32)
        counts = rng.poisson(photons).astype(np.float32)
        return dict(name="768² cells, Poisson (20 photons)", input=counts, truth=photons,
                    kwargs=dict(noise="poisson"), reference=counts_reference(counts))
    clean = images.synthetic_cells(768, seed=3) if kind == "smooth768" else images.load("camera", 768, gray=True)
    noisy = (clean + rng.normal(0, 25, clean.shape)).astype(np.float32)
    return dict(name=f"768² {'cells' if kind == 'smooth768' else 'camera'}, σ = 25", input=noisy, truth=clean,
                kwargs={}, reference=gaussian_reference(noisy, 25.0))


def case_frame2048() -> dict:
    case = scale.case_frame(1)
    frame = case["input"]
    counts_name, counts_run = counts_reference((frame.astype(np.float32) - scale.OFFSET) / scale.GAIN)
    return dict(name=case["name"], input=frame, truth=case["truth"], kwargs=case["kwargs"],
                reference=(counts_name + ", true camera", lambda: counts_run() * scale.GAIN + scale.OFFSET))


def case_timelapse() -> dict:
    case = scale.case_stack(1)
    return dict(name=case["name"], input=case["input"], truth=case["truth"], kwargs=case["kwargs"],
                reference=counts_reference(case["input"]), per_unit_planes=[5, 20])


def case_pn2v(folder: str) -> dict:
    import tifffile

    path = sorted(glob.glob(os.path.join(folder, "pn2v", "*.tif")))[0]
    frame = tifffile.imread(path)
    frame = frame[0] if frame.ndim == 3 else frame
    return dict(name=f"PN2V {os.path.basename(path)[:20]}…, {frame.shape[0]}² EMCCD", input=frame, truth=None,
                kwargs={}, reference=None)


def restore(case: dict, **overrides) -> tuple[np.ndarray, dict, float]:
    import napari_dip

    start = time.perf_counter()
    run = napari_dip.restore_iter(case["input"], "denoise", device="cpu", seed=0, **case["kwargs"], **overrides)
    stage = None
    for snapshot in run:
        if snapshot.stage != stage or snapshot.stage == "judge":
            stage = snapshot.stage
            print(f"  {time.perf_counter() - start:6.1f} s  {snapshot.stage_detail or stage}", flush=True)
    return run.result.image, run.result.record, time.perf_counter() - start


def measure(case: dict, per_unit: bool, reference: bool = True) -> dict:
    from napari_dip.amortised import passes

    truth = case["truth"]
    # the student is kept whatever the judge says (no per-unit fallback), so that its quality and the judge's call
    # are measured every time; the call at the default margin is reported beside it
    options = dict(amortise=True, amortise_margin=1e9, **({"ground_truth": truth} if truth is not None else {}))
    image, record, seconds = restore(case, **options)
    summary = record.get("amortised", {})
    row = {"case": case["name"], "amortised": {
        "seconds": round(seconds, 1), "psnr": None if truth is None else round(psnr(truth, image), 2),
        "rounds": summary.get("rounds"), "call_at_default_margin": (
            "student" if passes(summary["rounds"][-1], DEFAULT_MARGIN) else "more teachers, then per-unit fitting"),
        "teacher_crops": len(summary.get("teacher_crops", [])), "candidates": summary.get("candidates")}}
    print(json.dumps(row), flush=True)
    if per_unit and truth is not None:
        planes = case.get("per_unit_planes")
        sub = dict(case, input=case["input"][planes], truth=truth[planes]) if planes else case
        unit_image, unit_record, unit_seconds = restore(sub, amortise=False, ground_truth=sub["truth"])
        row["per_unit"] = {"seconds": round(unit_seconds, 1), "psnr": round(psnr(sub["truth"], unit_image), 2),
                           "planes": planes, "iterations": unit_record["iterations"]}
        if planes:
            row["per_unit"]["student_psnr_same_planes"] = round(psnr(truth[planes], image[planes]), 2)
            row["per_unit"]["full_estimate_s"] = round(unit_seconds / len(planes) * len(case["input"]), 0)
        print(json.dumps(row["per_unit"]), flush=True)
    if reference and case.get("reference") is not None:
        name, run = case["reference"]
        start = time.perf_counter()
        reference = run()
        row["reference"] = {"method": name, "seconds": round(time.perf_counter() - start, 1),
                            "psnr": round(psnr(truth, reference), 2)}
        print(json.dumps(row["reference"]), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="smooth768,textured768,poisson768,frame2048,timelapse,pn2v")
    parser.add_argument("--per-unit", action="store_true", help="also per-unit DIP (slow: minutes per 768² frame)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "realdata"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-reference", action="store_true", help="leave out the classical references")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "teach_once.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    makers = {"smooth768": lambda: case_768("smooth768"), "textured768": lambda: case_768("textured768"),
              "poisson768": lambda: case_768("poisson768"), "frame2048": case_frame2048,
              "timelapse": case_timelapse, "pn2v": lambda: case_pn2v(args.data)}
    rows = [measure(makers[key](), args.per_unit, not args.skip_reference) for key in args.cases.split(",")]
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"command": " ".join(["python"] + sys.argv), "threads": args.threads,
                   "machine": "quiet (nothing else running)", "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
