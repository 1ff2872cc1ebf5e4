"""Jobs of several units: one process (torch threads on each unit in turn) against worker processes with one thread
each (processes.py), alone and beside one busy process.

    python benchmarks/experiments/workers.py [--threads 2] [--cases stack,tiles,planes] [--planes 8] [--photos 4]
        [--no-busy]

Cases, restored with the defaults as a user would call them (only ``workers`` changes):
stack: scale.py's time-lapse (b) as ``--planes`` planes of 128² (Poisson counts, warm starts between planes);
tiles: scale.py's frame (a) shrunken to 256², cut into 2 × 2 tiles of 160 (overlap 32);
planes: ``--photos`` unrelated 128² photo crops with Gaussian noise (σ = 25 of 255) as one stack.
Per case: seconds and PSNR with ``workers=1`` (the thread governor: as many threads as free cores) and with
``workers='auto'``, each alone and beside one busy process (a Python loop). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import images  # noqa: E402
import scale  # noqa: E402


def case_planes(planes: int) -> dict:
    names = ("camera", "astronaut", "coffee", "chelsea")
    crops = [images.load(n, 128, gray=True) for n in names]  # 4 photos, then their four quarters of 256²
    crops += [images.load(n, 256, gray=True)[y:y + 128, x:x + 128] for n in names for y in (0, 128) for x in (0, 128)]
    clean = np.stack(crops[:planes]).astype(np.float32)
    noisy = (clean + np.random.default_rng(11).normal(0, 25, clean.shape)).astype(np.float32)
    return dict(name=f"{len(clean)} unrelated 128² photos, σ = 25", input=noisy, truth=clean, kwargs={},
                data_range=255.0)


def case_tiles(shrink: int) -> dict:
    case = scale.case_frame(8)
    case.update(name="256² frame, Poisson-Gaussian, 2 × 2 tiles of 160",
                kwargs=dict(case["kwargs"], tile_size=160, overlap=32))
    return case


def run(case: dict, workers) -> dict:
    import napari_dip

    start = time.perf_counter()
    result = napari_dip.restore(case["input"], case.get("task", "denoise"), device="cpu", seed=0, workers=workers,
                                **case["kwargs"])
    seconds = time.perf_counter() - start
    truth = case["truth"]
    data_range = case.get("data_range", float(truth.max() - truth.min()))
    mse = float(np.mean((result.image.astype(np.float64) - truth) ** 2))
    return {"seconds": round(seconds, 1), "psnr": round(10 * np.log10(data_range ** 2 / mse), 2),
            "iterations": result.record.iterations, "cpu": result.record.cpu_threads,
            "started_from": [u.started_from for u in result.record.units]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="stack,tiles,planes")
    parser.add_argument("--planes", type=int, default=8, help="planes of the stack case")
    parser.add_argument("--photos", type=int, default=4, help="planes of the planes case (at most 20)")
    parser.add_argument("--no-busy", action="store_true", help="leave out the runs beside a busy process")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "workers.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    makers = {"stack": lambda: scale.case_stack(4, planes=4 * args.planes), "tiles": lambda: case_tiles(8),
              "planes": lambda: case_planes(args.photos)}
    rows = []
    for key in args.cases.split(","):
        case = makers[key]()
        row = {"case": case["name"]}
        for busy in (False,) if args.no_busy else (False, True):
            competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            if busy:
                time.sleep(1.0)
            try:
                for workers in (1, "auto"):
                    label = f"{'busy' if busy else 'alone'}, workers={workers}"
                    row[label] = run(case, workers)
                    print(f"{case['name']}: {label}: {row[label]}", flush=True)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
        one, auto = row["alone, workers=1"]["seconds"], row["alone, workers=auto"]["seconds"]
        row["auto_over_one_alone"] = round(auto / one, 2)
        if not args.no_busy:
            row["busy_over_alone"] = {w: round(row[f"busy, workers={w}"]["seconds"] / row[f"alone, workers={w}"][
                "seconds"], 2) for w in (1, "auto")}
        print(f"  auto / one process, alone: {row['auto_over_one_alone']}; busy / alone: "
              f"{row.get('busy_over_alone')}", flush=True)
        rows.append(row)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(["python"] + sys.argv), "threads": args.threads,
                       "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
