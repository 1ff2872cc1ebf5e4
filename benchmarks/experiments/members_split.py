"""Ensemble members as one grouped convolution (as the light decoder runs them) against one convolution per member.

    python benchmarks/experiments/members_split.py [--sizes 128,256] [--threads 2]

Times a step (forward, backward, Adam) of the `fast` denoising network (two members) at full resolution, in NCHW
and channels-last, with its grouped convolutions as they are and split into one convolution per member (the same
arithmetic). Prints milliseconds per step. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from napari_dip.core.networks import build_network  # noqa: E402
from napari_dip.core.presets import get_settings  # noqa: E402


class PerMember(torch.nn.Module):
    """A grouped 2D convolution computed one group at a time."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c = self.conv
        parts = zip(x.chunk(c.groups, 1), c.weight.chunk(c.groups, 0), c.bias.chunk(c.groups, 0))
        return torch.cat([F.conv2d(xi, wi, bi, c.stride, c.padding) for xi, wi, bi in parts], 1)


def split_members(net):
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Conv2d) and child.groups > 1:
                setattr(module, name, PerMember(child))
    layers = list(net.net)
    net._body, net._output = layers[:len(net._body)], layers[len(net._body):]
    return net


def step_ms(size: int, members: int, channels_last: bool, split: bool, steps: int = 15) -> float:
    settings = get_settings("denoise", "fast")
    torch.manual_seed(0)
    net = build_network(settings.network, 64, 1, 2, members=members, spatial=(size, size))
    if split:
        net = split_members(net)
    z = torch.rand(1, 64 * members, size // 16, size // 16)
    if channels_last:
        net, z = net.to(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(net.parameters(), 0.01)
    target = torch.rand(members, 1, size, size)
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        loss = ((net(z).float().reshape(members, 1, size, size) - target) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 1000 * sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for size in map(int, args.sizes.split(",")):
        for channels_last in (False, True):
            one = step_ms(size, 1, channels_last, False)
            grouped = step_ms(size, 2, channels_last, False)
            split = step_ms(size, 2, channels_last, True)
            print(f"{size}², {'channels-last' if channels_last else 'NCHW'}: one member {one:.1f} ms, two grouped "
                  f"{grouped:.1f} ms, two split {split:.1f} ms ({split / grouped:.2f})", flush=True)


if __name__ == "__main__":
    main()
