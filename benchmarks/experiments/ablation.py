"""What each speed setting buys on this machine, for a preset's network: time per iteration, one run.

Run from the repository root (not part of the test suite)::

    python benchmarks/experiments/ablation.py                         # fast denoise preset, 256² gray, CPU
    python benchmarks/experiments/ablation.py --task superres --size 256
    python benchmarks/experiments/ablation.py --device cuda --preset paper --size 512 --channels 3

Variants switch ``cpu_bf16`` / ``amp`` and ``channels_last`` on and off. They are
timed in interleaved rounds within one process (so that a busy machine slows
them alike) at full resolution (``coarse_to_fine`` off; the coarse stages cost
less), and the median time per iteration is reported with the ratio to the
all-off variant. Quality is not measured here: see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--task", default="denoise")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--size", type=int, default=256, help="output side")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from napari_dip.core.device import describe_device, resolve_device
    from napari_dip.core.loop import Problem, fit
    from napari_dip.core.operators import DownsampleOperator
    from napari_dip.core.presets import apply_overrides, get_settings

    device = resolve_device(args.device)
    precision = "cpu_bf16" if device.type == "cpu" else "amp"
    variants = [{precision: a, "channels_last": b} for a in (False, True) for b in (False, True)]
    base = get_settings(args.task, args.preset)
    gen = torch.Generator().manual_seed(0)
    factor = 4 if args.task == "superres" else 1
    target = torch.rand((1, args.channels, args.size // factor, args.size // factor), generator=gen)
    operator = DownsampleOperator(factor) if factor > 1 else None
    problem = Problem(target=target, out_channels=args.channels, out_spatial=(args.size, args.size),
                      **({"operator": operator} if operator else {}))
    times = {i: [] for i in range(len(variants))}
    print(f"ablation — {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; "
          f"{describe_device(device)}; torch {torch.__version__}; load {os.getloadavg()[0]:.2f}")
    print(f"{args.task} / {args.preset}: {base.network.kind} network, ensemble {base.ensemble}, "
          f"{args.size}² × {args.channels} channel(s), full resolution; "
          f"{args.rounds} rounds × {args.iterations} iterations")
    for _ in range(args.rounds):
        for i, variant in enumerate(variants):
            warmup = 2
            settings = apply_overrides(base, dict(variant, iterations=warmup + args.iterations, coarse_to_fine=(),
                                                  early_stopping=False, snapshot_every=10 ** 9))
            stamps = []

            def on_iteration(it, net, stamps=stamps, warmup=warmup):
                if it > warmup:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    stamps.append(time.perf_counter())

            for _ in fit(problem, settings, device=device, on_iteration=on_iteration):
                pass
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())
            times[i] += [b - a for a, b in zip(stamps, stamps[1:])]
    reference = statistics.median(times[0])
    for i, variant in enumerate(variants):
        med = statistics.median(times[i])
        label = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in variant.items())
        print(f"  {label:<34} median {med * 1000:8.1f} ms/iteration   speed-up ×{reference / med:.2f}")
    print(f"load at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
