"""The student of amortised restoration: a small image-to-image network taught by DIP's results.

Deep Image Prior maps a fixed code to *one* image, so what it learns on one tile or plane cannot be used on the
next. The student takes the degraded image itself as input: trained on random crops of a few units that DIP
restored (degraded crop → DIP's result), it restores every unit in one forward pass (docs/large-images.md §
Teach once, apply everywhere). torch and numpy only: the job's side (which units teach, the judge) is ``amortised.py``.

The network is a compact U-Net (Ronneberger et al. 2015): two 3×3 convolutions with ReLU per level, max-pooling
down, bilinear upsampling up with the encoder's features concatenated, and a 1×1 head that adds its output to the
degraded input's own channels (residual learning: the student learns what DIP changed). No normalisation layers,
so a crop and a whole frame go through the same function.

Where the input is interpolated onto a finer Y/X grid (super-resolution), the network also sees its fine detail (the
input less a Gaussian blur of it) divided by ``detail_scale``, the size of what DIP changed on the teacher crops
(:meth:`StudentTraining.add_pairs` sets it), so that what it must correct reaches it at unit scale: without it, a
student could not learn a correction of half a per cent of the range (super-resolution stayed at its cubic input);
for denoising it cost 0.9 dB on smooth cells, for axial super-resolution 0.1 dB (docs/benchmarks.md § Teach
once, apply everywhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class StudentSpec:
    """The student's network and training: widths, depth, crop side, batch, steps and learning rate."""

    channels: int = 32  # at full resolution; doubled at each level below
    levels: int = 1  # halvings (one: +0.8 dB over two at the same training time on a 768² frame, docs/benchmarks.md)
    crop: int = 64  # side of the random training crops
    batch: int = 8
    steps: int = 1200  # Adam steps (docs/benchmarks.md § Teach once, apply everywhere sized it)
    lr: float = 1e-3  # constant, then a half-cosine down to a tenth over the last third of the steps
    reach: int = 2  # for volumes: the planes on each side of a plane that the student sees with it
    detail: bool = False  # also see the input's fine detail at the scale of DIP's change (interpolated inputs)

    @property
    def multiple(self) -> int:
        """Sides the network takes without cropping its features: multiples of 2**levels."""
        return 2 ** self.levels

    def as_dict(self) -> dict:
        return {"network": f"U-Net, {self.levels} levels, {self.channels} channels at full resolution",
                "crop": self.crop, "batch": self.batch, "steps": self.steps, "lr": self.lr,
                "volume_planes_seen": 2 * self.reach + 1, "sees_detail": self.detail}


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="reflect"), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="reflect"), nn.ReLU(inplace=True))


class StudentNet(nn.Module):
    """U-Net from (N, in_channels, H, W) to (N, out_channels, H, W); H and W multiples of 2**levels.

    The first ``out_channels`` input channels are the degraded image on the result's grid: the output is them plus
    the network's correction.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 32, levels: int = 1,
                 detail: bool = False):
        super().__init__()
        widths = [channels * 2 ** i for i in range(levels + 1)]
        self.in_channels, self.out_channels, self.sees_detail = in_channels, out_channels, detail
        if detail:
            self.register_buffer("detail_scale", torch.ones(()))
            self.register_buffer("blur", _gaussian_kernel(DETAIL_SIGMA).repeat(in_channels, 1, 1, 1))
        self.down = nn.ModuleList([_double_conv(2 * in_channels if detail else in_channels, widths[0])] +
                                  [_double_conv(widths[i], widths[i + 1]) for i in range(levels)])
        self.up = nn.ModuleList([_double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels))])
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        nn.init.zeros_(self.head.weight)  # starts as the identity: the degraded input itself
        nn.init.zeros_(self.head.bias)

    @property
    def input_gain(self) -> float:
        """How much the network magnifies a change of its input before its first layer: 1, or 1 / ``detail_scale``
        where it sees the input's detail (the judge keeps its probes well within the linear pieces by it)."""
        return 1.0 / float(self.detail_scale) if self.sees_detail else 1.0

    def detail(self, x: torch.Tensor) -> torch.Tensor:
        """The input less its Gaussian blur, over ``detail_scale``."""
        reach = self.blur.shape[-1] // 2
        mode = "reflect" if min(x.shape[-2:]) > reach else "replicate"
        low = F.conv2d(F.pad(x, (reach,) * 4, mode=mode), self.blur, groups=self.in_channels)
        return (x - low) / self.detail_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        h = torch.cat([x, self.detail(x)], dim=1) if self.sees_detail else x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            features.append(h)
        for block, skip in zip(self.up, reversed(features[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return x[:, :self.out_channels] + self.head(h)


DETAIL_SIGMA = 2.0  # pixels: the blur whose residue is the fine detail the student sees at unit scale


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 2D Gaussian, (1, 1, k, k), k = 2·⌈3σ⌉ + 1."""
    reach = math.ceil(3 * sigma)
    line = torch.exp(-0.5 * (torch.arange(-reach, reach + 1, dtype=torch.float32) / sigma) ** 2)
    line = line / line.sum()
    return (line[:, None] * line[None, :])[None, None]


def make_student(in_channels: int, out_channels: int, spec: StudentSpec, seed: int = 0) -> StudentNet:
    """A freshly initialised student (the same ``seed`` gives the same weights)."""
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        return StudentNet(in_channels, out_channels, spec.channels, spec.levels, spec.detail)


class StudentTraining:
    """Adam on random crops of (input, target) pairs, one :meth:`step` at a time (so a caller can show progress,
    stop, or add pairs between steps).

    ``pairs``: (input (C_in, H, W), target (C_out, H, W)) float32 arrays, the target on the input's grid. Each
    step draws ``spec.batch`` crops, a pair at a time in proportion to its pixels, at random places, flipped and
    turned by a random multiple of 90° (the degradations the student learns are the same in every direction).
    """

    def __init__(self, net: StudentNet, pairs: list, spec: StudentSpec, seed: int = 0, device="cpu"):
        self.net = net.to(device)
        self.spec = spec
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed + 104729)
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=spec.lr)
        self.steps_done = 0
        self.pairs: list = []
        self.add_pairs(pairs)

    def add_pairs(self, pairs: list):
        """More (input, target) pairs to draw crops from (a crop is never larger than its pair). For a network that
        sees the input's detail, the first pairs set its ``detail_scale``: the root mean square of what the targets
        change in their inputs."""
        first = not self.pairs
        for x, y in pairs:
            if x.shape[-2:] != y.shape[-2:]:
                raise ValueError(f"input {x.shape} and target {y.shape} must share Y/X")
            self.pairs.append((torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                               torch.from_numpy(np.ascontiguousarray(y, np.float32))))
        if first and self.pairs and self.net.sees_detail:
            change = [float(((y - x[:y.shape[0]]) ** 2).mean()) for x, y in self.pairs]
            self.net.detail_scale.fill_(max(math.sqrt(float(np.mean(change))), 1e-6))
        self.crop = min([self.spec.crop] + [min(x.shape[-2:]) for x, _ in self.pairs])
        self.crop -= self.crop % self.spec.multiple
        if self.pairs and self.crop < self.spec.multiple:
            raise ValueError(f"training pairs of {self.crop} pixels are too small for the student")

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = np.array([x.shape[-1] * x.shape[-2] for x, _ in self.pairs], np.float64)
        chosen = self.rng.choice(len(self.pairs), size=self.spec.batch, p=sizes / sizes.sum())
        inputs, targets = [], []
        c = self.crop
        for i in chosen:
            x, y = self.pairs[i]
            top = int(self.rng.integers(0, x.shape[-2] - c + 1))
            left = int(self.rng.integers(0, x.shape[-1] - c + 1))
            a, b = x[:, top:top + c, left:left + c], y[:, top:top + c, left:left + c]
            turns = int(self.rng.integers(0, 4))
            if turns:
                a, b = torch.rot90(a, turns, (1, 2)), torch.rot90(b, turns, (1, 2))
            if self.rng.random() < 0.5:
                a, b = torch.flip(a, (2,)), torch.flip(b, (2,))
            inputs.append(a)
            targets.append(b)
        return torch.stack(inputs).to(self.device), torch.stack(targets).to(self.device)

    def learning_rate(self, step: int) -> float:
        """Constant, then a half-cosine to a tenth over the last third of ``spec.steps``."""
        spec = self.spec
        tail_start = 2 * spec.steps / 3
        if step < tail_start:
            return spec.lr
        t = min(1.0, (step - tail_start) / max(spec.steps - tail_start, 1.0))
        return spec.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))

    def step(self) -> float:
        """One Adam step; the batch's mean squared error before it."""
        for group in self.optimiser.param_groups:
            group["lr"] = self.learning_rate(self.steps_done)
        inputs, targets = self._batch()
        self.net.train()
        loss = F.mse_loss(self.net(inputs), targets)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.steps_done += 1
        return float(loss.detach())


@torch.no_grad()
def apply_student(net: StudentNet, image: np.ndarray, tile: int = 512, overlap: int = 32, device="cpu",
                  on_tile=None) -> np.ndarray:
    """The student's output for ``image`` (C_in, H, W): (C_out, H, W) float32, computed in overlapping tiles of at
    most ``tile`` pixels blended without seams (core/tiling.py's windows), so memory does not grow with the frame.
    ``on_tile(done, total)`` is called after each tile."""
    from .tiling import plan_tiles

    net.eval()
    height, width = image.shape[-2:]
    multiple = 2 ** (len(net.down) - 1)
    plan = plan_tiles((height, width), tile, min(overlap, tile // 4)) if max(height, width) > tile else None
    tiles = plan.tiles if plan is not None else [None]
    out = np.zeros((net.out_channels, height, width), np.float32)
    for done, part in enumerate(tiles, 1):
        ys, xs = (slice(*part.y), slice(*part.x)) if part is not None else (slice(None), slice(None))
        piece = image[:, ys, xs]
        h, w = piece.shape[-2:]
        pad = ((0, 0), (0, -h % multiple), (0, -w % multiple))
        padded = np.pad(piece, pad, mode="reflect" if min(h, w) > multiple else "edge")
        result = net(torch.from_numpy(np.ascontiguousarray(padded, np.float32))[None].to(device))
        result = result[0, :, :h, :w].float().cpu().numpy()
        if part is None:
            out[:] = result
        else:
            out[:, ys, xs] += result * plan.window(part)
        if on_tile is not None:
            on_tile(done, len(tiles))
    return out


def context_planes(volume: np.ndarray, z: int, reach: int) -> np.ndarray:
    """The student's input for plane ``z`` of ``volume`` (C, Z, H, W): that plane's channels first (the output adds
    to them), then planes z − reach … z + reach without z, mirrored at the volume's ends; (C·(2·reach + 1), H, W).

    A 2D network that sees its neighbours along Z restores a volume for a fraction of a 3D network's cost, and
    learns from the 3D teacher what Z tells about a plane (docs/large-images.md § Teach once, apply everywhere)."""
    depth = volume.shape[1]
    order = [z] + [z + d for d in range(-reach, reach + 1) if d != 0]
    if depth == 1:
        order = [0] * len(order)
    else:  # mirrored without repeating the end plane, folded back for volumes thinner than the reach
        period = 2 * (depth - 1)
        order = [(i % period) if (i % period) < depth else period - (i % period) for i in order]
    return np.ascontiguousarray(volume[:, order].swapaxes(0, 1).reshape(-1, *volume.shape[2:]))


def apply_student_volume(net: StudentNet, volume: np.ndarray, tile: int = 512, device="cpu",
                         on_plane=None) -> np.ndarray:
    """The student's output for ``volume`` (C, Z, H, W), plane by plane with its neighbours
    (:func:`context_planes`); (C_out, Z, H, W) float32. ``on_plane(done, total)`` after each plane."""
    reach = (net.in_channels // volume.shape[0] - 1) // 2
    out = np.empty((net.out_channels,) + volume.shape[1:], np.float32)
    for z in range(volume.shape[1]):
        out[:, z] = apply_student(net, context_planes(volume, z, reach), tile, device=device)
        if on_plane is not None:
            on_plane(z + 1, volume.shape[1])
    return out
