"""The CUDA path, checked on a GPU: every task and preset runs, CUDA against the CPU, out of memory.

    python benchmarks/gpu_check.py [--device cuda] [--json gpu_check.json]

Not part of the test suite (CI has no GPU); the engine tests themselves run on a GPU with
``NAPARI_DIP_TEST_DEVICE=cuda python -m pytest -m "not gui" tests``. Sections:

* ``tasks``: every task with every preset, a few iterations on a small image: the result is finite, has the
  right shape, and the record names the GPU; plus a tiled run, a warm-started stack, a 3D network and
  stacks whose planes are fitted together (``units_together``).
* ``agreement``: one denoising fit on the CPU and on the GPU from the same seed: the relative difference
  ``‖gpu − cpu‖ / ‖cpu‖`` of the output after 1 and after 60 iterations, in FP32 with TF32 off, in FP32 with
  TF32 on (PyTorch's default for convolutions) and under bf16 autocast (the engine's default on CUDA). Then the
  ``fast`` preset with automatic stopping on a 128² photo, on both devices: PSNR, the kept iteration and the
  mixing weight, which should agree up to the rounding differences.
* ``memory``: a frame far too large for the GPU without tiles must raise ``DIPMemoryError`` with advice, and
  the GPU must run a small job afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def photo(side: int, seed: int = 0, sigma: float = 0.1):
    from skimage import data, transform

    clean = transform.resize(data.camera() / 255.0, (side, side), anti_aliasing=True).astype(np.float32)
    noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape).astype(np.float32)
    return clean, noisy


def psnr(x, truth) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - truth) ** 2)))


def check_tasks(device: str) -> list[dict]:
    import napari_dip
    from napari_dip.core.presets import PRESETS

    _, image = photo(64)
    smooth = np.random.default_rng(1).random((12, 32, 32)).astype(np.float32)
    extra = {"inpaint": dict(mask=np.pad(np.ones((16, 16), bool), 24)), "deconvolve": dict(psf_sigma=1.0),
             "guided": dict(guide=image), "superres": dict(factor=2), "axial-superres": dict(factor=2)}
    runs = [(task, preset, {}) for task, presets in PRESETS.items() for preset in presets]
    runs += [("denoise", "fast", dict(tile_size=48, overlap=8, label="tiled 2×2")),
             ("denoise", "fast", dict(stack=True, label="4-plane stack, warm starts")),
             ("denoise", "fast", dict(volumetric=True, label="3D network")),
             ("superres", "fast", dict(stack=True, units_together="auto", label="4-plane stack, units together")),
             ("denoise", "fast", dict(stack=True, units_together=4, label="4 planes fitted together"))]
    rows = []
    for task, preset, options in runs:
        options = dict(options)
        label = options.pop("label", "")
        stack = options.pop("stack", False)
        volumetric = options.get("volumetric", False)
        data = smooth if task == "axial-superres" or volumetric else image
        if stack:
            data = np.stack([image] * 4)
        if task == "denoise" and preset == "fast" and not label:
            data = np.stack([image, image])  # two planes: the warm start between them runs too
        row = dict(task=task, preset=preset, case=label)
        start = time.perf_counter()
        try:
            result = napari_dip.restore(data, task, preset=preset, iterations=30, snapshot_every=10, device=device,
                                        seed=0, **extra.get(task, {}), **options)
            row.update(ok=bool(np.isfinite(result.image).all()), shape=list(result.image.shape),
                       device=result.record.device, units=len(result.record.units),
                       started_from=[u.started_from for u in result.record.units],
                       units_together=result.record.units_together)
        except Exception as exc:  # noqa: BLE001 - a failing case is a finding, the others still run
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-1500:])
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
    return rows


def _outputs(device: str, iterations: int, amp: bool, tf32: bool):
    import torch

    from napari_dip.core.loop import Problem, fit
    from napari_dip.core.presets import apply_overrides, get_settings

    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    _, noisy = photo(64, seed=2)
    settings = apply_overrides(get_settings("denoise", "fast"), dict(
        iterations=iterations, auto_stop=False, coarse_to_fine=(), amp=amp, cpu_bf16=False, snapshot_every=10 ** 6,
        ensemble=1))
    problem = Problem(target=torch.from_numpy(noisy)[None, None], out_channels=1, out_spatial=(64, 64))
    state = list(fit(problem, settings, seed=0, device=device))[-1]
    return state.output.double().cpu()


def check_agreement(device: str) -> dict:
    import napari_dip

    rows = {}
    for iterations in (1, 60):
        cpu = _outputs("cpu", iterations, amp=False, tf32=False)
        for label, amp, tf32 in (("fp32", False, False), ("fp32+tf32", False, True), ("bf16 autocast", True, True)):
            gpu = _outputs(device, iterations, amp=amp, tf32=tf32)
            rows[f"{label}, {iterations} it"] = float((gpu - cpu).norm() / cpu.norm())
            print(f"agreement {label:>14}, {iterations:>2} iterations: relative difference "
                  f"{rows[f'{label}, {iterations} it']:.2e}", flush=True)
    clean, noisy = photo(128, seed=3)
    automatic = {}
    for name in ("cpu", device):
        start = time.perf_counter()
        result = napari_dip.restore(noisy, "denoise", device=name, seed=0)
        quality = result.record.quality or {}
        automatic[name] = dict(psnr=round(psnr(result.image, clean), 2), seconds=round(time.perf_counter() - start, 1),
                               iterations=result.record.iterations, stop_reason=result.record.stop_reason,
                               device=result.record.device, mixed_with=quality.get("mixed_with"),
                               **{k: quality.get(k) for k in (
                                   "chosen_iteration", "estimated_psnr", "network_weight")})
        print(f"automatic fast denoise 128² on {name}: {json.dumps(automatic[name])}", flush=True)
    return dict(relative_difference=rows, automatic=automatic)


def check_memory(device: str) -> dict:
    import torch

    import napari_dip
    from napari_dip import DIPMemoryError

    # the paper network keeps about 7.6 kB per pixel (NetworkSpec.memory_model): 8000² needs about 480 GB, more
    # than any one GPU has; the noise is named so that the check spends its time on the GPU, not on the fit
    huge = np.random.default_rng(0).random((8000, 8000), dtype=np.float32)
    row = {}
    start = time.perf_counter()
    try:
        napari_dip.restore(huge, "denoise", preset="paper", iterations=2, tile_size=None, device=device,
                           noise="gaussian")
        row["raised"] = None
    except DIPMemoryError as exc:
        row["raised"] = "DIPMemoryError"
        row["message"] = str(exc)
    except Exception as exc:  # noqa: BLE001
        row["raised"] = f"{type(exc).__name__}: {exc}"[:800]
    row["seconds"] = round(time.perf_counter() - start, 1)
    del huge
    torch.cuda.empty_cache()
    _, small = photo(64)
    after = napari_dip.restore(small, "denoise", iterations=20, device=device)
    row["small_job_after"] = bool(np.isfinite(after.image).all())
    print(f"memory: {json.dumps(row)}", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sections", default="tasks,agreement,memory")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import torch

    from napari_dip.core.device import describe_device

    report = dict(device=describe_device(torch.device(args.device)), torch=torch.__version__,
                  cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    print(json.dumps(report), flush=True)
    checks = dict(tasks=check_tasks, agreement=check_agreement, memory=check_memory)
    for name in args.sections.split(","):
        try:
            report[name] = checks[name](args.device)
        except Exception:  # noqa: BLE001 - report and go on to the next section
            report[name] = dict(error=traceback.format_exc()[-3000:])
            print(report[name]["error"], flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
    tasks = report.get("tasks")
    if isinstance(tasks, list):
        failed = [f"{r['task']}/{r['preset']} {r['case']}".strip() for r in tasks if not r.get("ok")]
        print(f"tasks: {len(tasks) - len(failed)} of {len(tasks)} ran; failed: {', '.join(failed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
