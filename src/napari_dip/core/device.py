"""Choosing and describing the compute device."""

from __future__ import annotations

import torch

from ..errors import DIPInputError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit name must be available."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DIPInputError(f"unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DIPInputError("CUDA is not available on this machine; use device='auto' or 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DIPInputError(f"there is no CUDA device {device.index}; this machine has {torch.cuda.device_count()}")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DIPInputError("Apple MPS is not available on this machine; use device='auto' or 'cpu'")
    return device


def describe_device(device: torch.device) -> str:
    """A line for people: 'CUDA: NVIDIA H100', 'CPU, 2 threads', 'Apple MPS'."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"CUDA: {torch.cuda.get_device_name(index)}"
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"
