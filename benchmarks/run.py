"""Speed benchmark: the paper's denoising network, a plain PyTorch loop against the engine.

Run from the repository root (not part of the test suite)::

    python benchmarks/run.py                 # all cases on the best device (CUDA if present)
    python benchmarks/run.py --device cpu --quick
    python benchmarks/run.py --device cuda --json results.json

Cases (the official denoising configuration: skip network, 128 channels ×
5 levels, 4 skip channels, 32 input channels, bilinear upsampling, reflection
padding, Adam lr 0.01, MSE, input jitter σ = 1/30):

* ``2d-256``: a 256×256 RGB image (3 output channels)
* ``2d-512``: a 512×512 RGB image
* ``3d-64``: a 64×64×64 volume with the 3D skip network (1 output channel);
  ``--quick`` on a CPU uses 32³ instead and says so.

Variants, each in its own subprocess so peak memory is per variant:

* ``baseline``: a plain FP32 loop written the obvious way, here in this file:
  the engine's network builder for the same architecture, ``torch.optim.Adam``
  with default options, ``z + jitter`` each iteration, MSE, and ``loss.item()``
  each iteration for the loss curve (what nearly every DIP script does).
* ``engine``: ``napari_dip.core.loop.fit`` with the ``paper`` denoising settings
  as the widgets and CLI run them (it also keeps the EMA of outputs and checks
  for backtracking, which the baseline does not).

Timing: ``--warmup`` untimed iterations, then ``--iterations`` timed ones; on
CUDA the clock is read after ``torch.cuda.synchronize()``. Peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on the CPU the growth of the process's
peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over its
resident size just before the network was built (tracemalloc does not see
torch's allocations). FLOPs of one training iteration (forward + backward) are
counted with ``torch.utils.flop_counter.FlopCounterMode``; on CUDA the achieved
TFLOP/s is compared with the device's dense BF16 tensor-core peak (known
devices, or ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

# dense BF16 tensor-core peak, TFLOP/s (vendor data sheets)
PEAK_BF16_TFLOPS = {
    "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0,
    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "V100": 125.0,
    "T4": 65.0,
}

CASES = {
    "2d-256": dict(dims=2, shape=(256, 256), out_channels=3),
    "2d-512": dict(dims=2, shape=(512, 512), out_channels=3),
    "3d-64": dict(dims=3, shape=(64, 64, 64), out_channels=1),
}


def peak_tflops(name: str) -> float | None:
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def make_target(case: dict, seed: int = 0):
    """A noisy test image (σ = 25/255) in [0, 1]: astronaut for 2D, smooth blobs for 3D."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if case["dims"] == 2:
        from skimage import data, transform

        clean = transform.resize(data.astronaut() / 255.0, case["shape"] + (3,), anti_aliasing=True)
        clean = np.moveaxis(clean, -1, 0)[: case["out_channels"]]
    else:
        grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in case["shape"]], indexing="ij")
        clean = np.zeros(case["shape"])
        for _ in range(12):
            centre = rng.uniform(-0.7, 0.7, 3)
            radius = rng.uniform(0.1, 0.35)
            dist = sum((g - c) ** 2 for g, c in zip(grids, centre))
            clean += rng.uniform(0.3, 1.0) * np.exp(-dist / (2 * radius ** 2))
        clean = (clean / clean.max())[None]
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1)
    return clean.astype(np.float32)[None], noisy.astype(np.float32)[None]


def paper_settings(iterations: int, **overrides):
    from napari_dip.core.presets import apply_overrides, get_settings

    # one snapshot at the end only: snapshots copy the image to the caller
    return apply_overrides(get_settings("denoise", "paper"),
                           dict(iterations=iterations, snapshot_every=10 ** 9, **overrides))


def parse_variant(variant: str) -> tuple[str, dict]:
    """'engine' or 'engine:cpu_bf16=true,compile=true' -> ('engine', {...settings overrides})."""
    kind, _, rest = variant.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        value = {"true": True, "false": False}.get(value.lower(), value)
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        overrides[key] = value
    return kind, overrides


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _count_flops(net, z, target) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = net(z)
        ((out.float() - target) ** 2).mean().backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _psnr(output, clean) -> float:
    import numpy as np

    mse = float(np.mean((np.clip(output.detach().float().cpu().numpy(), 0, 1) - clean) ** 2))
    return 10 * np.log10(1.0 / mse)


def worker(case_name: str, variant: str, device_name: str, iterations: int, warmup: int, shape=None,
           quality: bool = False) -> dict:
    import psutil
    import torch

    from napari_dip.core.device import describe_device
    from napari_dip.core.networks import build_network, count_parameters

    device = torch.device(device_name)
    case = dict(CASES[case_name])
    if shape:
        case["shape"] = tuple(shape)
    clean, noisy = make_target(case)
    target = torch.from_numpy(noisy).to(device)
    kind, overrides = parse_variant(variant)
    settings = paper_settings(warmup + iterations, **overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        memory_before = torch.cuda.memory_allocated(device)
    rss_before = psutil.Process().memory_info().rss
    result = dict(case=case_name, variant=variant, shape=list(case["shape"]), device=describe_device(device),
                  iterations=iterations, warmup=warmup, threads=torch.get_num_threads())

    # FLOPs of one training iteration, counted on a separate copy of the network
    torch.manual_seed(0)
    spec = settings.network
    counting_net = build_network(spec, settings.input_channels, case["out_channels"], case["dims"]).to(device)
    z_count = torch.rand((1, settings.input_channels, *case["shape"]), device=device) * 0.1
    result["flops_per_iteration"] = _count_flops(counting_net, z_count, target)
    result["parameters"] = count_parameters(counting_net)
    del counting_net, z_count
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    stamps = []  # start of each timed iteration (CPU only: reading the clock on a GPU would need a sync)
    if kind == "baseline":
        torch.manual_seed(0)
        net = build_network(spec, settings.input_channels, case["out_channels"], case["dims"]).to(device)
        z = (torch.rand((1, settings.input_channels, *case["shape"])) * 0.1).to(device)
        optimiser = torch.optim.Adam(net.parameters(), lr=settings.lr)
        losses = []
        start = None
        for i in range(warmup + iterations):
            if i == warmup:
                _sync(device)
                start = time.perf_counter()
            if i >= warmup and device.type == "cpu":
                stamps.append(time.perf_counter())
            net_input = z + torch.randn_like(z) * settings.reg_noise_std
            out = net(net_input)
            loss = torch.nn.functional.mse_loss(out, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        _sync(device)
        seconds = time.perf_counter() - start
        result["final_loss"] = losses[-1]
        if quality:
            result["psnr_output"] = _psnr(out, clean)
    elif kind == "engine":
        from napari_dip.core.loop import Problem, fit

        problem = Problem(target=target.cpu(), out_channels=case["out_channels"], out_spatial=case["shape"])
        clock = {}

        def on_iteration(i, net):
            if i == warmup + 1:
                _sync(device)
                clock["start"] = time.perf_counter()
            if i > warmup and device.type == "cpu":
                stamps.append(time.perf_counter())

        for state in fit(problem, settings, seed=0, device=device, on_iteration=on_iteration):
            result["final_loss"] = state.loss  # the last state's loss is the one that stays
        _sync(device)
        seconds = time.perf_counter() - clock["start"]
        if quality:
            result["psnr_output"] = _psnr(state.output, clean)
            result["psnr_result"] = _psnr(state.estimate, clean)  # with the EMA of outputs
    else:
        raise ValueError(variant)

    result["seconds_per_iteration"] = seconds / iterations
    if len(stamps) >= 2:
        import statistics

        steps = [b - a for a, b in zip(stamps, stamps[1:] + [stamps[0] + seconds])]
        result["median_seconds_per_iteration"] = statistics.median(steps)
    result["iterations_per_second"] = iterations / seconds
    if device.type == "cuda":
        result["peak_memory_mib"] = (torch.cuda.max_memory_allocated(device) - memory_before) / 2 ** 20
        result["memory_method"] = "torch.cuda.max_memory_allocated"
        result["device_name"] = torch.cuda.get_device_name(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
        result["peak_memory_mib"] = max(0, peak - rss_before) / 2 ** 20
        result["memory_method"] = "ru_maxrss growth over RSS before the network was built"
        result["device_name"] = platform.processor() or platform.machine()
    result["tflops"] = result["flops_per_iteration"] * result["iterations_per_second"] / 1e12
    return result


def run_case(case: str, variant: str, device: str, iterations: int, warmup: int, shape=None,
             quality: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, variant, "--device", device,
           "--iterations", str(iterations), "--warmup", str(warmup)] + (["--psnr"] if quality else [])
    if shape:
        cmd += ["--shape", ",".join(map(str, shape))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return dict(case=case, variant=variant, error=tail[0])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    parser.add_argument("--quick", action="store_true", help="fewer iterations; on a CPU a 32³ volume")
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations per case")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations before timing")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak to compare with (CUDA)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated: baseline, engine, engine:SETTING=VALUE,... (default: baseline, "
                             "engine and, on a CPU, engine:cpu_bf16=true)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--psnr", action="store_true",
                        help="also the PSNR of the last output (and the engine's result) against the clean image: "
                             "with --iterations 2980 --warmup 20, the paper's 3000 iterations")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        shape = tuple(int(s) for s in args.shape.split(",")) if args.shape else None
        print(json.dumps(worker(*args.worker, device, args.iterations, args.warmup, shape, args.psnr)))
        return 0

    on_cpu = torch.device(device).type == "cpu"
    if on_cpu:
        iterations = args.iterations or (2 if args.quick else 5)
        warmup = args.warmup if args.warmup is not None else 1
    else:
        iterations = args.iterations or (20 if args.quick else 100)
        warmup = args.warmup if args.warmup is not None else (5 if args.quick else 20)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")

    if on_cpu:
        device_name = f"{cpu_name()}, {torch.get_num_threads()} threads"
    else:
        device_name = torch.cuda.get_device_name(torch.device(device))
    peak = args.peak_tflops or (None if on_cpu else peak_tflops(device_name))
    print(f"napari-dip speed benchmark — {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"device: {device_name}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"iterations: {warmup} warm-up + {iterations} timed per case and variant")
    print(f"command: python benchmarks/run.py {' '.join(sys.argv[1:])}".rstrip())
    print()

    variants = args.variants or ("baseline,engine,engine:cpu_bf16=true" if on_cpu else "baseline,engine")
    variants = [v.strip() for v in variants.split(",") if v.strip()]
    if variants[0] != "baseline":
        variants.insert(0, "baseline")
    rows = []
    for case in cases:
        shape = None
        if case == "3d-64" and on_cpu and args.quick:
            shape = (32, 32, 32)
        group = {}
        for variant in variants:
            print(f"  running {case} {variant} ...", file=sys.stderr, flush=True)
            group[variant] = run_case(case, variant, device, iterations, warmup, shape, args.psnr)
        rows.append(group)

    width = max(10, max(len(v) for v in variants) + 2)
    header = (f"{'case':<14}{'variant':<{width}}{'s/iter':>10}{'median':>9}{'it/s':>9}{'peak MiB':>10}"
              f"{'GFLOP/it':>10}{'TFLOP/s':>9}{'% peak':>8}")
    print(header)
    print("-" * len(header))
    for group in rows:
        for variant in variants:
            r = group[variant]
            label = r["case"] + (" (32³)" if r.get("shape") == [32] * 3 else "")
            if "error" in r:
                print(f"{label:<14}{variant:<{width}} FAILED: {r['error']}")
                continue
            pct = f"{100 * r['tflops'] / peak:.1f}" if peak else "n/a"
            median = r.get("median_seconds_per_iteration")
            median = f"{median:.4f}" if median is not None else "—"
            print(f"{label:<14}{variant:<{width}}{r['seconds_per_iteration']:>10.4f}{median:>9}"
                  f"{r['iterations_per_second']:>9.2f}{r['peak_memory_mib']:>10.0f}"
                  f"{r['flops_per_iteration'] / 1e9:>10.1f}{r['tflops']:>9.3f}{pct:>8}")
    print()
    print("ratios against the baseline (b / a; speed-up = a / b):")
    for group in rows:
        a = group["baseline"]
        for variant in variants[1:]:
            b = group[variant]
            if "error" in a or "error" in b:
                continue
            ta, tb = a["seconds_per_iteration"], b["seconds_per_iteration"]
            line = (f"  {a['case']:<8} {variant:<{width}} time per iteration {tb / ta:.3f} (speed-up ×{ta / tb:.2f})")
            if a.get("median_seconds_per_iteration") and b.get("median_seconds_per_iteration"):
                ma, mb = a["median_seconds_per_iteration"], b["median_seconds_per_iteration"]
                line += f", medians {mb / ma:.3f} (×{ma / mb:.2f})"
            line += f"; peak memory {b['peak_memory_mib'] / max(a['peak_memory_mib'], 1e-9):.2f}"
            print(line)
    if args.psnr:
        print("PSNR against the clean image after all iterations (output: the last f(z); result: the engine's, "
              "with its EMA of outputs):")
        for group in rows:
            for variant in variants:
                r = group[variant]
                if "psnr_output" in r:
                    result = f", result {r['psnr_result']:.2f} dB" if "psnr_result" in r else ""
                    print(f"  {r['case']:<8} {variant:<{width}} output {r['psnr_output']:.2f} dB{result}, "
                          f"{r['seconds_per_iteration'] * (r['iterations'] + r['warmup']):.1f} s in all "
                          f"(the warm-up counted at the timed rate)")
    memory_method = next((g[v]["memory_method"] for g in rows for v in g if "memory_method" in g[v]), "")
    print(f"peak memory: {memory_method}")
    if on_cpu:
        print("median: the median of the per-iteration times (robust to other processes on a shared machine)")
    if peak:
        print(f"% peak: achieved model TFLOP/s over the dense BF16 tensor peak, {peak:g} TFLOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), device=device_name,
            torch=torch.__version__, command=" ".join(["python", "benchmarks/run.py"] + sys.argv[1:]),
            peak_tflops=peak, results=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
