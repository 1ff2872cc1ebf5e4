"""Quality table: PSNR of the degraded input and of the ``fast`` preset, per task and image.

Run from the repository root (not part of the test suite)::

    python benchmarks/quality.py                      # 128×128, all tasks, all five images, CPU
    python benchmarks/quality.py --size 256 --markdown quality.md
    python benchmarks/quality.py --presets fast,paper --device cuda

Images: the central square of scikit-image's camera, astronaut, coffee,
chelsea and text, resized to ``--size`` (colour kept for the RGB ones).
Degradations (seeded, ``images.degrade``): denoise σ=25; inpaint 50 % of the
pixels missing (input PSNR with the missing pixels at 0); superres ×4 with the
engine's Lanczos-2 downsampler (input PSNR of bicubic upsampling); deconvolve
Gaussian blur σ=2 px + 1 % noise; guided σ=25 noise with a noiseless
differently-lit guide (a gamma of the clean image's gray level). A preset that
cannot run here (``paper`` without a GPU) is listed as not measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import images  # noqa: E402

TASKS = ("denoise", "inpaint", "superres", "deconvolve", "guided")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--images", default=",".join(images.IMAGES))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--presets", default="fast,paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", default=None, help="also write the Markdown table here")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    import napari_dip
    from napari_dip.core.device import describe_device, resolve_device

    device = resolve_device(args.device)
    presets = [p.strip() for p in args.presets.split(",")]
    gpu = device.type == "cuda"
    rows = []
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"napari-dip quality table — {stamp}; torch {torch.__version__}; {describe_device(device)}")
    head = "| task | image | size | input PSNR | reference | " + " | ".join(
        f"`{p}` PSNR | `{p}` iterations | `{p}` s/iter" for p in presets) + " |"
    print(head)
    print("|" + "---|" * (5 + 3 * len(presets)))
    for task in [t.strip() for t in args.tasks.split(",")]:
        for name in [n.strip() for n in args.images.split(",")]:
            clean = images.load(name, args.size)
            case = images.degrade(task, clean)
            row = dict(task=task, image=name, size=args.size, channels=1 if clean.ndim == 2 else clean.shape[-1],
                       input_psnr=case["input_psnr"], reference=case["baseline_name"],
                       reference_psnr=images.psnr(clean, case["baseline"]), device=describe_device(device))
            cells = []
            for preset in presets:
                if preset == "paper" and not gpu:
                    row[preset] = None
                    cells += ["not measured (no GPU)", "", ""]
                    continue
                start = time.perf_counter()
                result = napari_dip.restore(case["input"], task, preset=preset, device=args.device,
                                            ground_truth=clean, seed=0, **case["kwargs"])
                rec = result.record.as_dict()
                row[preset] = dict(psnr=rec["metrics"]["psnr"], iterations=rec["iterations"], seconds=rec["seconds"],
                                   seconds_per_iteration=rec["seconds"] / max(1, rec["iterations"]),
                                   stop_reason=rec["stop_reason"], wall=time.perf_counter() - start)
                cells += [f"{rec['metrics']['psnr']:.2f}", str(rec["iterations"]),
                          f"{row[preset]['seconds_per_iteration']:.3f}"]
            rows.append(row)
            line = (f"| {task} | {name} | {args.size}² {'RGB' if row['channels'] == 3 else 'gray'} "
                    f"| {row['input_psnr']:.2f} | {row['reference_psnr']:.2f} ({row['reference']}) | "
                    + " | ".join(cells) + " |")
            print(line, flush=True)
            row["markdown"] = line
    if args.markdown:
        Path(args.markdown).write_text("\n".join([head, "|" + "---|" * (5 + 3 * len(presets))]
                                                 + [r["markdown"] for r in rows]) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(date=stamp, torch=torch.__version__,
                                                   device=describe_device(device), rows=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
