"""Does automatic stopping find the right result on images and noise levels nobody tuned it on?

Run from the repository root (not part of the test suite; about an hour on 2 cores)::

    pip install bm3d PyWavelets        # optional: BM3D as a reference (benchmark only)
    python benchmarks/self_tuning.py                 # the whole grid, table to stdout and results/self_tuning.json
    python benchmarks/self_tuning.py --grid quick    # a handful of cases
    python benchmarks/self_tuning.py --grid small --fixed-max-size 256   # 32² and 64² inputs, every task
    python benchmarks/self_tuning.py --only denoise --set stop_patience=200

Every case is restored with the same defaults (``preset='fast'`` on the CPU)
as a user would (automatic stopping on). When that run stops before its
ceiling, a second run with automatic stopping off gives the fixed-length result
(on images up to ``--fixed-max-size``); when it reaches the ceiling, its own
last iterate is the fixed-length result. Per case:

- **auto**: PSNR of the automatic result, and seconds to it;
- **oracle**: the best PSNR of any iterate of the runs (snapshots every 25
  iterations, judged against the ground truth the runs never see);
- **fixed**: PSNR after the full ceiling of iterations;
- the classical references: non-local means and total variation with σ
  estimated, BM3D (if the ``bm3d`` package is installed), Anscombe + NLM /
  BM3D for Poisson counts, biharmonic inpainting, bicubic, Richardson–Lucy.

PSNR uses the clean image's range (255 for photos, the peak photon count for
Poisson cases). Degradations are seeded, so every run restores the same inputs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import images  # noqa: E402

# (task, image, size, colour, degradation, level)
GRIDS = {
    "quick": [
        ("denoise", "cells", 128, False, "gaussian", 25),
        ("denoise", "camera", 128, False, "gaussian", 50),
        ("denoise", "cells", 128, False, "poisson", 5),
        ("denoise", "astronaut", 128, True, "gaussian", 10),
        ("inpaint", "camera", 128, False, "missing", 0.5),
    ],
}
GRIDS["full"] = (
    # Gaussian denoising: smooth (synthetic cells, blurred coffee) and textured photos (camera, text),
    # four levels, gray and colour, two sizes
    [("denoise", name, 128, False, "gaussian", s) for name in ("cells", "camera", "text") for s in (5, 10, 25, 50)]
    + [("denoise", "chelsea", 128, True, "gaussian", 10), ("denoise", "astronaut", 128, True, "gaussian", 50),
       ("denoise", "coffee-blurred", 128, True, "gaussian", 25)]
    + [("denoise", name, 256, False, "gaussian", 25) for name in ("camera", "astronaut", "coffee")]
    # Poisson photon counts
    + [("denoise", "cells", 128, False, "poisson", peak) for peak in (5, 20, 100)]
    + [("denoise", "camera", 128, False, "poisson", 20)]
    # scattered missing pixels
    + [("inpaint", "camera", 128, False, "missing", 0.5), ("inpaint", "cells", 128, False, "missing", 0.5),
       ("inpaint", "text", 128, False, "missing", 0.5), ("inpaint", "astronaut", 256, True, "missing", 0.5),
       ("inpaint", "chelsea", 128, False, "missing", 0.8), ("inpaint", "coffee-blurred", 128, True, "missing", 0.8)]
    # super-resolution ×4 and deconvolution
    + [("superres", "camera", 256, False, "lanczos", 4), ("deconvolve", "camera", 128, False, "blur", 2.55)]
)

# small inputs, every task (issue 18 item 6): 32² and 64² measurements, where the held-out score rests on a few
# hundred pixels; super-resolution ×4 measures a quarter of the side (128 → 32², 256 → 64²)
GRIDS["small"] = (
    [("denoise", name, size, False, "gaussian", 25) for name in ("camera", "cells") for size in (32, 64)]
    + [("denoise", "text", 64, False, "gaussian", 10), ("denoise", "astronaut", 64, True, "gaussian", 50),
       ("denoise", "cells", 64, False, "poisson", 20)]
    + [("inpaint", "camera", 64, False, "missing", 0.5), ("inpaint", "cells", 32, False, "missing", 0.5)]
    + [("superres", name, 128, False, "lanczos", 4) for name in ("camera", "coffee", "astronaut")]
    + [("superres", "chelsea", 256, False, "lanczos", 4)]
    + [("deconvolve", "camera", 64, False, "blur", 2.55), ("deconvolve", "cells", 32, False, "blur", 2.55)]
)


def clean_image(name: str, size: int, colour: bool) -> np.ndarray:
    """0…255 float32: a bundled photo, a blurred one (smooth content) or synthetic cells."""
    from scipy import ndimage

    if name == "cells":
        image = images.synthetic_cells(size, seed=size)
        return np.repeat(image[..., None], 3, axis=-1) if colour else image
    if name.endswith("-blurred"):
        image = images.load(name[:-len("-blurred")], size, gray=not colour)
        sigma = (2.0, 2.0, 0) if image.ndim == 3 else 2.0
        return ndimage.gaussian_filter(image, sigma).astype(np.float32)
    return images.load(name, size, gray=not colour)


def make_case(task, name, size, colour, kind, level, seed=0) -> dict:
    """Degraded input, restore() arguments, ground truth, its PSNR range and the references' results."""
    rng = np.random.default_rng(seed)
    clean = clean_image(name, size, colour)
    channel_axis = -1 if clean.ndim == 3 else None
    kwargs = dict(channel_axis=channel_axis)
    refs = {}
    peak = 255.0
    if kind == "gaussian":
        noisy = (clean + rng.normal(0, level, clean.shape)).astype(np.float32)
        refs["NLM"] = images.nl_means(noisy, channel_axis)
        refs["TV"] = images.tv(noisy, channel_axis)
        bm = images.bm3d_denoise(noisy, channel_axis)
        if bm is not None:
            refs["BM3D"] = bm
        return dict(input=noisy, kwargs=kwargs, truth=clean, peak=peak, refs=refs)
    if kind == "poisson":
        photons = clean / 255.0 * level
        counts = rng.poisson(photons).astype(np.float32)
        kwargs["noise"] = "poisson"
        refs["Anscombe+NLM"] = images.anscombe(counts, lambda x: images.nl_means(x, channel_axis, scale=1.0))
        bm = images.anscombe(counts, lambda x: images.bm3d_denoise(x, channel_axis, scale=1.0))
        if bm is not None and np.isfinite(bm).all():
            refs["Anscombe+BM3D"] = bm
        return dict(input=counts, kwargs=kwargs, truth=photons.astype(np.float32), peak=float(level), refs=refs)
    if kind == "missing":
        from skimage.restoration import inpaint_biharmonic

        missing = rng.random(clean.shape[:2]) < level
        damaged = clean.copy()
        damaged[missing] = 0
        refs["biharmonic"] = (inpaint_biharmonic(damaged / 255.0, missing, channel_axis=channel_axis) * 255.0)
        kwargs["mask"] = missing
        return dict(input=damaged.astype(np.float32), kwargs=kwargs, truth=clean, peak=peak, refs=refs)
    if kind in ("lanczos", "blur"):
        task_name = "superres" if kind == "lanczos" else "deconvolve"
        case = images.degrade(task_name, clean, seed)
        refs[case["baseline_name"].split(",")[0]] = case["baseline"]
        return dict(input=case["input"], kwargs=case["kwargs"], truth=clean, peak=peak, refs=refs)
    raise ValueError(kind)


def run_dip(case: dict, task: str, overrides: dict, auto: bool) -> dict:
    import napari_dip

    start = time.perf_counter()
    run = napari_dip.restore_iter(case["input"], task, preset="fast", device="cpu", ground_truth=case["truth"],
                                  seed=0, snapshot_every=25, auto_stop=auto, **case["kwargs"], **overrides)
    best_current = -np.inf
    curve = []
    last = None
    for snap in run:
        current = snap.metrics.get("psnr_current")
        if current is None:  # automatic stopping off: the snapshot is the current iterate
            current = images.psnr(case["truth"], snap.image, case["peak"])
        else:  # psnr_current uses the truth's range; rescale to the benchmark's peak
            current += 20 * np.log10(case["peak"] / _range(case["truth"]))
        best_current = max(best_current, current)
        last = float(current)
        if not snap.done:
            curve.append((snap.iteration, round(float(current), 3), snap.quality.get("estimated_psnr")))
    seconds = time.perf_counter() - start
    result = run.result
    out = {"psnr": images.psnr(case["truth"], result.image, case["peak"]), "seconds": round(seconds, 2),
           "iterations": result.record.iterations, "stop_reason": result.record.stop_reason,
           "best_current": float(best_current), "last_iterate": last, "curve": curve}
    quality = result.record.quality
    if quality.get("automatic_stopping"):
        out.update(chosen_iteration=quality.get("chosen_iteration"), estimated_psnr=quality.get("estimated_psnr"))
    out["noise_estimate"] = result.record.parameters.get("noise_estimate")
    return out


def _range(truth):
    return float(truth.max() - truth.min()) or 1.0


def run_case(spec, overrides: dict, fixed: bool = True) -> dict:
    task, name, size, colour, kind, level = spec
    case = make_case(task, name, size, colour, kind, level)
    row = {"task": task, "image": name, "size": size, "colour": colour, "degradation": kind, "level": level,
           "input_psnr": images.psnr(case["truth"], np.nan_to_num(case["input"]), case["peak"])
           if case["input"].shape == case["truth"].shape else None,
           "references": {k: images.psnr(case["truth"], v, case["peak"]) for k, v in case["refs"].items()}}
    row["auto"] = run_dip(case, task, overrides, auto=True)
    if row["auto"]["stop_reason"].startswith("completed"):
        # the run reached its ceiling: its last iterate is the fixed-length result
        row["fixed"] = {"psnr": row["auto"]["last_iterate"], "best_current": row["auto"]["last_iterate"],
                        "same_run": True}
    elif fixed:
        row["fixed"] = run_dip(case, task, overrides, auto=False)
    candidates = [row["auto"]["best_current"], row["auto"]["psnr"]]
    if "fixed" in row:
        candidates += [row["fixed"]["best_current"], row["fixed"]["psnr"]]
    row["oracle"] = float(max(candidates))
    return row


def label(row) -> str:
    kind, level = row["degradation"], row["level"]
    what = {"gaussian": f"σ={level:g}", "poisson": f"Poisson {level:g} ph", "missing": f"{level:.0%} missing",
            "lanczos": f"×{level}", "blur": "blur σ=2, 1 % noise"}[kind]
    return f"{row['task']} {row['image']} {row['size']}² {'RGB' if row['colour'] else 'gray'} {what}"


def table(rows) -> str:
    lines = ["| case | auto (s) | oracle | auto − oracle | fixed | best reference | auto − reference |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        refs = row["references"]
        ref_name = max(refs, key=refs.get) if refs else None
        ref_txt = ", ".join(f"{k} {v:.2f}" for k, v in refs.items())
        auto = row["auto"]
        fixed = f"{row['fixed']['psnr']:.2f}" if "fixed" in row else "—"
        lines.append(f"| {label(row)} | {auto['psnr']:.2f} "
                     f"({auto['seconds']:.0f} s, it {auto.get('chosen_iteration')}) "
                     f"| {row['oracle']:.2f} | {auto['psnr'] - row['oracle']:+.2f} | {fixed} | {ref_txt} "
                     f"| {auto['psnr'] - refs[ref_name]:+.2f} ({ref_name}) |" if ref_name else "| — |")
    return "\n".join(lines)


def summary(rows) -> str:
    gaps = [r["auto"]["psnr"] - r["oracle"] for r in rows]
    out = [f"cases: {len(rows)}; auto − oracle: mean {np.mean(gaps):+.2f} dB, worst {min(gaps):+.2f} dB; "
           f"within 0.5 dB: {sum(g >= -0.5 for g in gaps)}/{len(rows)}"]
    for ref in ("NLM", "BM3D", "Anscombe+NLM", "Anscombe+BM3D", "biharmonic", "bicubic", "Richardson-Lucy"):
        d = [r["auto"]["psnr"] - r["references"][ref] for r in rows if ref in r["references"]]
        if d:
            out.append(f"auto − {ref}: mean {np.mean(d):+.2f} dB, worst {min(d):+.2f} dB, "
                       f"at least as good in {sum(x >= 0 for x in d)}/{len(d)}")
    t = [r["auto"]["seconds"] for r in rows if r["task"] == "denoise" and r["size"] == 256 and not r["colour"]
         and r["degradation"] == "gaussian" and r["level"] == 25]
    if t:
        out.append(f"256² gray σ=25: median seconds to the automatic result {np.median(t):.1f} (n={len(t)})")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--only", help="comma-separated tasks to keep")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every case (Python literal), e.g. stop_patience=200")
    parser.add_argument("--no-fixed", action="store_true", help="skip the fixed-length runs (faster)")
    parser.add_argument("--fixed-max-size", type=int, default=128,
                        help="run the fixed-length comparison only on images up to this side (default 128)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "self_tuning.json"))
    args = parser.parse_args(argv)
    import ast

    import torch

    torch.set_num_threads(args.threads)
    overrides = {}
    for pair in args.set:
        key, value = pair.split("=", 1)
        overrides[key] = ast.literal_eval(value)
    specs = GRIDS[args.grid]
    if args.only:
        keep = set(args.only.split(","))
        specs = [s for s in specs if s[0] in keep]
    rows = []
    for spec in specs:
        row = run_case(spec, overrides, fixed=not args.no_fixed and spec[2] <= args.fixed_max_size)
        rows.append(row)
        a = row["auto"]
        print(f"{label(row)}: auto {a['psnr']:.2f} ({a['seconds']:.0f} s, it {a.get('chosen_iteration')}, "
              f"est {a.get('estimated_psnr') or float('nan'):.2f}) oracle {row['oracle']:.2f} "
              + (f"fixed {row['fixed']['psnr']:.2f} " if "fixed" in row else "")
              + " ".join(f"{k} {v:.2f}" for k, v in row["references"].items()), flush=True)
        _save(args, overrides, rows)  # after every case: a long run that is cut short keeps what it measured
    print()
    print(table(rows))
    print()
    print(summary(rows))
    return 0


def _save(args, overrides, rows):
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"date": datetime.date.today().isoformat(), "grid": args.grid, "overrides": overrides,
                   "threads": args.threads, "cpu": os.cpu_count(), "rows": rows}, f, indent=1, default=str)


if __name__ == "__main__":
    sys.exit(main())
