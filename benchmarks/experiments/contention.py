"""A run beside one competing CPU-bound process: the thread governor (core/threads.py) against fixed thread counts.

    python benchmarks/experiments/contention.py [--size 128] [--iterations 300] [--repeats 2]

The same fixed-length run (``fast`` denoising of a noisy camera crop, automatic stopping off) is timed alone and
beside one busy process (a Python loop), with torch's threads fixed at the machine's cores, fixed at one, and
chosen by the governor. The ratio busy / alone is what a user on a machine that is not idle feels; the
reference for "alone" is the governor's own run alone. Start it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCHMARKS)
import images  # noqa: E402


class NoMeasurement:
    """Stands in for core.threads.CpuUse: the governor then keeps the count it found (a fixed count)."""

    def others(self):
        return None


def timed_run(noisy, iterations: int, policy: str, cores: int) -> float:
    import torch

    import napari_dip
    from napari_dip.core import threads

    torch.set_num_threads(1 if policy == "1 thread" else cores)
    original = threads.CpuUse
    if policy != "governor":
        threads.CpuUse = NoMeasurement
    try:
        start = time.perf_counter()
        napari_dip.restore(noisy, "denoise", device="cpu", iterations=iterations, auto_stop=False, seed=0,
                           coarse_to_fine=())  # full resolution throughout: the per-iteration cost that matters
        return time.perf_counter() - start
    finally:
        threads.CpuUse = original


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the fastest counts")
    parser.add_argument("--json", default=os.path.join(BENCHMARKS, "results", "contention.json"))
    args = parser.parse_args(argv)
    from napari_dip.core.threads import usable_cores

    cores = usable_cores()
    clean = images.load("camera", args.size, gray=True)
    noisy = (clean + np.random.default_rng(0).normal(0, 25, clean.shape)).astype(np.float32)
    timed_run(noisy, 20, "governor", cores)  # warm-up: imports, first allocations
    policies = (f"{cores} threads", "1 thread", "governor")
    seconds = {}
    for busy in (False, True):
        competitor = None
        if busy:
            competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for policy in policies:
                seconds[(policy, busy)] = min(timed_run(noisy, args.iterations, policy, cores)
                                              for _ in range(args.repeats))
                print(f"{policy:10s} {'busy' if busy else 'alone'}: {seconds[(policy, busy)]:.2f} s", flush=True)
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    reference = seconds[("governor", False)]
    rows = [{"policy": p, "alone_s": round(seconds[(p, False)], 2), "busy_s": round(seconds[(p, True)], 2),
             "busy_over_own_alone": round(seconds[(p, True)] / seconds[(p, False)], 2),
             "busy_over_governor_alone": round(seconds[(p, True)] / reference, 2)} for p in policies]
    for row in rows:
        print(row)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"command": " ".join(["python"] + sys.argv), "cores": cores, "size": args.size,
                   "iterations": args.iterations, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
