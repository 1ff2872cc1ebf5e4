"""Network inputs z: fixed uniform noise, a meshgrid, or a guide image."""

from __future__ import annotations

import torch


def noise_input(channels: int, spatial: tuple, generator: torch.Generator, scale: float = 0.1) -> torch.Tensor:
    """U(0, 1)·scale with ``channels`` channels, as in the paper (scale 0.1)."""
    return torch.rand((1, channels, *spatial), generator=generator) * scale


def meshgrid_input(spatial: tuple) -> torch.Tensor:
    """One channel per spatial axis, each a ramp from 0 to 1 (2 channels in 2D).

    The paper uses it for large holes: a smooth input makes the network prefer
    smooth fills.
    """
    axes = [torch.linspace(0, 1, n) for n in spatial]
    grids = torch.meshgrid(*axes, indexing="ij")
    # the last axis (X) first, as in the paper's implementation
    return torch.stack(list(reversed(grids)), dim=0)[None].float()


def guide_input(guide: torch.Tensor) -> torch.Tensor:
    """The guide image itself (normalised, channels first) is the network input."""
    return guide.float()


def make_input(kind: str, channels: int, spatial: tuple, generator: torch.Generator,
               guide: torch.Tensor | None = None) -> torch.Tensor:
    """The network input z of ``kind``: 'noise', 'meshgrid' or 'guide' (which needs ``guide``)."""
    if kind == "noise":
        return noise_input(channels, spatial, generator)
    if kind == "meshgrid":
        return meshgrid_input(spatial)
    if kind == "guide":
        if guide is None:
            raise ValueError("input 'guide' needs a guide image")
        return guide_input(guide)
    raise ValueError(f"unknown network input {kind!r}; use 'noise', 'meshgrid' or 'guide'")


def input_channels(kind: str, channels: int, dims: int, guide_channels: int | None = None) -> int:
    """Channels of the network input: one per spatial axis for 'meshgrid', the guide's for 'guide', else
    ``channels``."""
    if kind == "meshgrid":
        return dims
    if kind == "guide":
        return guide_channels
    return channels
