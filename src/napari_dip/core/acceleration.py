"""How a fit runs fast on its device, the result unchanged: mixed precision, torch.compile, the memory layout,
the fused optimiser and how often the host reads the device's decisions (measured in docs/benchmarks.md)."""

from __future__ import annotations

import warnings

import torch

from .presets import Settings


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (oneDNN); elsewhere bf16 autocast would only be slower."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, enabled: bool, cpu_bf16: bool = False):
    """The autocast context of a fit: bf16 (fp16 where bf16 is missing) on CUDA when ``enabled``, bf16 on a CPU
    that computes it natively when ``cpu_bf16``, else full precision."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if cpu_bf16 and device.type == "cpu" and cpu_has_native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def maybe_compile(net, z, device: torch.device, enabled: bool | str, precision) -> tuple:
    """(the network to call, why compiling failed or None): torch.compile on CUDA when asked (True, or the name of a
    mode such as 'max-autotune'); the eager network when not, or when compiling fails (a warning, and the unit's
    stop reason says so).

    One forward and backward pass on ``z`` under ``precision`` (the fit's :func:`autocast`) triggers the
    compilation here, so that a failure (no compiler, an unsupported operation) falls back before the loop starts.
    """
    if not enabled or device.type != "cuda" or not hasattr(torch, "compile"):
        return net, None
    try:
        compiled = torch.compile(net, mode=enabled if isinstance(enabled, str) else None)
        with precision:
            out = compiled(z)
        out.float().mean().backward()
        net.zero_grad(set_to_none=True)
        return compiled, None
    except Exception as exc:  # noqa: BLE001 - any failure means: run eagerly, and say so
        failure = f"torch.compile failed, the network ran eagerly (same result, slower): {type(exc).__name__}: {exc}"
        warnings.warn(failure, RuntimeWarning, stacklevel=2)
        net.zero_grad(set_to_none=True)
        return net, failure


def uses_channels_last(setting: bool | str, device: torch.device) -> bool:
    """Whether a 2D network runs in NHWC layout: as set, or with "auto" on the CPU only (measured in
    docs/benchmarks.md: oneDNN's NHWC kernels win on CPUs, cuDNN's NCHW ones under bf16 on an H200)."""
    if setting == "auto":
        return device.type == "cpu"
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"channels_last must be True, False or 'auto'; got {setting!r}")


def adam(params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam; the fused CUDA kernel where available (one launch for all parameters)."""
    params = list(params)
    if device.type == "cuda":
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr)


def sync_interval(settings: Settings, device: torch.device) -> int:
    """Iterations between host reads of the early-stopping and backtracking checks.

    On the CPU a read costs nothing, so every iteration (exactly the rule as written);
    on a GPU every read stalls the queue of kernels, so every ``snapshot_every`` at most 25.
    """
    every = settings.sync_every or 0
    if every > 0:
        return every
    return 1 if device.type == "cpu" else max(1, min(25, settings.snapshot_every))
