"""Generator networks f_θ: the paper's skip encoder-decoder, the hourglass, a light decoder.

All work in 2D (Conv2d) or 3D (Conv3d) through ``dims``. The structure follows
Ulyanov et al. (2018), supplementary material: stride-2 convolutions go down,
bilinear or nearest upsampling goes up, BatchNorm and LeakyReLU(0.2) after every
convolution, optional skip branches of 1×1 convolutions, a 1×1 convolution after
each up block and a sigmoid output.

Strides may differ per axis (``halvings``): a volume's Z axis, often only a few
planes, is halved at the finest levels only, as long as it has room
(:meth:`NetworkSpec.halvings`), and upsampling mirrors the strides.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch
from torch import nn


def _layers(dims: int):
    if dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.ReflectionPad2d, nn.ReplicationPad2d
    if dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.ReflectionPad3d, nn.ReplicationPad3d
    raise ValueError(f"dims must be 2 or 3, got {dims}")


def _conv(dims, c_in, c_out, kernel, stride=1, pad="reflection", groups=1):
    conv, _, reflect, replicate = _layers(dims)
    layers = []
    amount = (kernel - 1) // 2
    if amount and pad in ("reflection", "replication"):
        layers.append((reflect if pad == "reflection" else replicate)(amount))
        amount = 0
    layers.append(conv(c_in, c_out, kernel, stride=stride, padding=amount, bias=True, groups=groups))
    return layers


def _block(dims, c_in, c_out, kernel, stride=1, pad="reflection"):
    """Conv → BatchNorm → LeakyReLU(0.2)."""
    _, bn, _, _ = _layers(dims)
    return _conv(dims, c_in, c_out, kernel, stride, pad) + [bn(c_out), nn.LeakyReLU(0.2, inplace=True)]


def _level_factor(halvings, level: int):
    """Stride of one level (finest is 0), and the upsampling that undoes it: 2 along the axes that are still
    halved there, 1 along the others. A single int when all axes agree, as in 2D."""
    factors = [2 if level < h else 1 for h in halvings]
    return factors[0] if len(set(factors)) == 1 else tuple(factors)


def _upsample_mode(mode: str, dims: int) -> str:
    if mode == "bilinear" and dims == 3:
        return "trilinear"
    return mode


class _Level(nn.Module):
    """One level of the skip net: skip branch ‖ (down, deeper, up), then the up convolutions."""

    def __init__(self, dims, c_in, down, up, skip, deeper_out, deeper, k_down, k_up, k_skip, upsample, pad,
                 stride=2):
        super().__init__()
        _, bn, _, _ = _layers(dims)
        self.skip = nn.Sequential(*_block(dims, c_in, skip, k_skip, pad=pad)) if skip else None
        down_layers = (_block(dims, c_in, down, k_down, stride=stride, pad=pad)
                       + _block(dims, down, down, k_down, pad=pad))
        if deeper is not None:
            down_layers.append(deeper)
        mode = _upsample_mode(upsample, dims)
        align = False if mode in ("bilinear", "trilinear") else None
        down_layers.append(nn.Upsample(scale_factor=stride, mode=mode, align_corners=align))
        self.deeper = nn.Sequential(*down_layers)
        merged = skip + deeper_out
        self.merge = nn.Sequential(
            bn(merged),
            *_block(dims, merged, up, k_up, pad=pad),
            *_block(dims, up, up, 1, pad=pad),
        )

    def forward(self, x):
        deep = self.deeper(x)
        if self.skip is not None:
            deep = torch.cat([self.skip(x), deep], dim=1)
        return self.merge(deep)


def in_full_precision(layers, x: torch.Tensor) -> torch.Tensor:
    """The output ``layers`` (in order) in float32, also under mixed precision: a bfloat16 output would round the
    image to 8 bits of mantissa (steps of 1/256 near full scale, 256 ADU of a 16-bit camera; seen on a GPU). They
    are one thin convolution and a sigmoid, so this costs next to nothing."""
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        for layer in layers:
            x = layer(x)
        return x


class SkipNet(nn.Module):
    """The paper's encoder-decoder with skip connections (``skip`` in the official code).

    ``down``, ``up`` and ``skip`` give the channels per level (finest first);
    ``skip`` entries of 0 remove that skip branch, so all-zero skips give the
    hourglass. ``upsample`` is one mode or one per level. ``halvings`` says how
    many levels halve each spatial axis (the finest ones; default: all levels,
    every axis). Each side must be divisible by 2**(its halvings).
    """

    def __init__(self, in_channels, out_channels, down=(128,) * 5, up=(128,) * 5, skip=(4,) * 5,
                 filter_down=3, filter_up=3, filter_skip=1, upsample="bilinear", pad="reflection",
                 dims=2, sigmoid=True, halvings=None):
        super().__init__()
        if not (len(down) == len(up) == len(skip)):
            raise ValueError("down, up and skip need one entry per level")
        self.levels = len(down)
        self.dims = dims
        self.halvings = (self.levels,) * dims if halvings is None else tuple(halvings)
        modes = (upsample,) * self.levels if isinstance(upsample, str) else tuple(upsample)
        level = None
        # build from the coarsest level outwards so each level can hold the one below
        for i in reversed(range(self.levels)):
            c_in = in_channels if i == 0 else down[i - 1]
            deeper_out = down[i] if level is None else up[i + 1]
            level = _Level(dims, c_in, down[i], up[i], skip[i], deeper_out, level,
                           filter_down, filter_up, filter_skip, modes[i], pad, _level_factor(self.halvings, i))
        self.body = level
        out = _conv(dims, up[0], out_channels, 1, pad=pad)
        if sigmoid:
            out.append(nn.Sigmoid())
        self.head = nn.Sequential(*out)

    @property
    def multiple(self) -> int:
        """Input sides halved at every level must be multiples of this."""
        return 2 ** self.levels

    def forward(self, z):
        return in_full_precision(self.head, self.body(z))


class LightDecoder(nn.Module):
    """Under-parameterised decoder in the style of the Deep Decoder (Heckel & Hand, ICLR 2019).

    A small input tensor at 1/2**levels of the output size goes through
    ``levels`` blocks of [1×1 conv → upsample ×2 → ReLU → BatchNorm], then a
    1×1 convolution and a sigmoid. With few channels it has fewer weights than
    the image has pixels, so it cannot fit the noise: cheap on a CPU and hard
    to over-fit.

    ``head_channels`` and ``head_kernel`` (0 = ``channels`` and ``kernel``) set
    the full-resolution part: the last block's convolution narrows to
    ``head_channels`` before the last upsampling, and the convolution at full
    resolution has ``head_kernel`` taps per axis. A thin 3×3 head (e.g. 32
    channels) lets edges sharpen at pixel level, which 1×1 convolutions after a
    bilinear upsampling cannot, and costs less than a wide 1×1 one.

    ``members`` > 1 builds that many independent decoders side by side as one
    network with grouped convolutions (BatchNorm is per channel, so nothing is
    shared): input and output have ``members`` times the channels, member k
    owning the k-th block. Averaging their outputs is the paper's "average of
    several runs" at the cost of one wider network.

    ``halvings`` says how many of the levels (the finest ones) upsample each
    spatial axis; by default all of them, every axis. :meth:`input_shape` gives
    the input's size for an output size.
    """

    def __init__(self, in_channels, out_channels, channels=64, levels=4, upsample="bilinear", dims=2,
                 sigmoid=True, kernel=1, head_channels=0, head_kernel=0, members=1, halvings=None):
        super().__init__()
        k = members
        conv, bn, _, _ = _layers(dims)
        mode = _upsample_mode(upsample, dims)
        align = False if mode in ("bilinear", "trilinear") else None
        head_channels = head_channels or channels
        head_kernel = head_kernel or kernel
        self.halvings = (levels,) * dims if halvings is None else tuple(halvings)
        layers = []
        c = in_channels
        for level in range(levels):  # coarsest first: an axis halved h times is upsampled in the last h levels
            width = head_channels if level == levels - 1 else channels
            layers += _conv(dims, c * k, width * k, kernel, pad="reflection", groups=k)
            scale = _level_factor(self.halvings, levels - 1 - level)
            layers += [nn.Upsample(scale_factor=scale, mode=mode, align_corners=align), nn.ReLU(inplace=True),
                       bn(width * k)]
            c = width
        layers += _conv(dims, c * k, head_channels * k, head_kernel, pad="reflection", groups=k)
        layers += [nn.ReLU(inplace=True), bn(head_channels * k)]
        layers += _conv(dims, head_channels * k, out_channels * k, 1, groups=k)
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        # the body, and the output layers (the last convolution and the sigmoid) that run in float32: plain lists
        # of the same modules, split once here rather than at every iteration
        output_from = len(layers) - (2 if sigmoid else 1)
        self._body, self._output = layers[:output_from], layers[output_from:]
        self.levels = levels
        self.dims = dims
        self.members = members
        self._upsamplers = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Upsample)]
        self.skipped_upsamples = 0  # coarse-to-fine: leave out the last k upsamplings (output 2**k smaller)

    @property
    def multiple(self) -> int:
        return 2 ** self.levels

    def input_shape(self, spatial) -> tuple:
        """The input's spatial size for an output of size ``spatial`` (per axis: 2**halvings smaller)."""
        return tuple(s // 2 ** h for s, h in zip(spatial, self.halvings))

    def forward(self, z):
        skipped = set(self._upsamplers[len(self._upsamplers) - self.skipped_upsamples:]) if self.skipped_upsamples \
            else set()
        for i, layer in enumerate(self._body):
            if i not in skipped:
                z = layer(z)
        return in_full_precision(self._output, z)


@dataclass
class NetworkSpec:
    """What network to build; part of the settings and of the run record."""

    kind: str = "skip"  # skip | hourglass | light
    down: tuple = (128,) * 5
    up: tuple = (128,) * 5
    skip: tuple = (4,) * 5
    filter_down: int = 3
    filter_up: int = 3
    filter_skip: int = 1
    upsample: str | tuple = "bilinear"  # one mode, or one per level (finest first)
    pad: str = "reflection"
    channels: int = 64  # light decoder width
    levels: int = 4  # light decoder depth
    kernel: int = 1  # light decoder filter size
    head_channels: int = 0  # light decoder: width at full resolution (0 = channels)
    head_kernel: int = 0  # light decoder: filter size at full resolution (0 = kernel)

    @property
    def depth(self) -> int:
        """Levels: halvings of the skip net and hourglass, upsamplings of the light decoder."""
        return self.levels if self.kind == "light" else len(self.down)

    @property
    def multiple(self) -> int:
        """Y and X sides must be multiples of this (see :meth:`padding` for every axis)."""
        return 2 ** self.depth

    @property
    def coarsest_side(self) -> int:
        """Fewest samples an axis may have at the coarsest level: reflection padding for a k-tap filter
        needs more than k // 2 of them."""
        if self.kind == "light":
            kernels = (self.kernel, self.head_kernel or self.kernel)
        else:
            kernels = (self.filter_down, self.filter_up, self.filter_skip)
        return max(kernels) // 2 + 1

    def halvings(self, spatial) -> tuple:
        """How many levels halve each axis of the output grid ``spatial`` (the finest levels do).

        Y and X (the last two axes) take every level; their sides are padded to suit. A volume's Z is
        halved only while ``coarsest_side`` planes remain, so a thin stack (microscopy's Z: often a few
        planes) keeps its planes instead of being padded to 2**depth times as many.
        """
        out = []
        for axis, n in enumerate(spatial):
            halvings = self.depth
            if axis < len(spatial) - 2:
                halvings = 0
                while halvings < self.depth and n // 2 ** (halvings + 1) >= self.coarsest_side:
                    halvings += 1
            out.append(halvings)
        return tuple(out)

    def padding(self, spatial) -> list[tuple[int, int]]:
        """(multiple, minimum) per axis: the sizes to pad the output grid ``spatial`` to for this network.

        A network built for the padded grid may halve Z once more than ``spatial`` would; the padded
        size is then divisible by that power of two as well.
        """
        return [(2 ** h, 2 ** h * self.coarsest_side) for h in self.halvings(spatial)]

    def memory_model(self, in_channels: int, out_channels: int, dims: int = 2, members: int = 1,
                     planes: int | None = None) -> MemoryModel:
        """Training memory of this network as it runs (kind, widths, members, 2D or 3D), in FP32: measured once
        per configuration on a small probe, see :class:`MemoryModel`. ``planes``: a 3D output's Z size (it
        decides how often Z is halved). Under bf16 autocast a run needs 0.6-0.9 of it."""
        return _measure_memory(dataclasses.astuple(self), in_channels, out_channels, dims, members, planes)

    def as_dict(self) -> dict:
        if self.kind == "light":
            return {"kind": self.kind, "channels": self.channels, "levels": self.levels,
                    "kernel": self.kernel, "head_channels": self.head_channels or self.channels,
                    "head_kernel": self.head_kernel or self.kernel, "upsample": self.upsample}
        return {"kind": self.kind, "down": list(self.down), "up": list(self.up), "skip": list(self.skip),
                "filter_down": self.filter_down, "filter_up": self.filter_up,
                "filter_skip": self.filter_skip,
                "upsample": self.upsample if isinstance(self.upsample, str) else list(self.upsample), "pad": self.pad}


@dataclass(frozen=True)
class MemoryModel:
    """Training memory of one network: a fixed part (weights, their gradients and Adam's two moments) and a part
    per output pixel (the activations autograd keeps for the backward pass, the gradients of the two largest
    while it runs, and the engine's own per-pixel images: input, measurement, masks, averages).

    Measured, not guessed: :meth:`NetworkSpec.memory_model` runs one forward pass of the network on a small probe
    and counts the bytes of the tensors autograd saves. They grow in proportion to the pixels, so the probe's
    bytes per pixel hold at any size (tests/test_networks.py checks the model against a run's measured peak).
    """

    fixed_bytes: float
    bytes_per_pixel: float

    def bytes(self, pixels: float, units: int = 1) -> float:
        """The memory of ``units`` fits of ``pixels`` output pixels each, run together."""
        return units * (self.fixed_bytes + self.bytes_per_pixel * pixels)


ENGINE_IMAGES = 12  # per output pixel and channel: measurement, masks, output, average, kept iterate, reference…


@functools.lru_cache(maxsize=64)
def _measure_memory(spec_fields: tuple, in_channels: int, out_channels: int, dims: int, members: int,
                    planes: int | None) -> MemoryModel:
    spec = NetworkSpec(*spec_fields)
    side = max(64, 2 * spec.multiple)
    probe = (side,) * dims
    if dims == 3:
        z_halvings = spec.halvings((planes or side, side, side))[0]
        probe = (max(2 ** z_halvings * spec.coarsest_side, min(planes or side, 32)) // 2 ** z_halvings
                 * 2 ** z_halvings, side, side)
    with torch.random.fork_rng(devices=[]):
        net = build_network(spec, in_channels, out_channels, dims, members=members, spatial=probe)
    shape = net.input_shape(probe) if hasattr(net, "input_shape") else probe
    z = torch.rand((1, in_channels * members, *shape))
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        net(z).mean()
    pixels = float(torch.tensor(probe).prod())
    largest = sorted(saved.values())[-2:]
    per_pixel = (sum(saved.values()) + sum(largest)) / pixels
    per_pixel += 4 * (ENGINE_IMAGES * out_channels + in_channels * members * z[0, 0].numel() / pixels)
    parameters = sum(p.numel() for p in net.parameters())
    return MemoryModel(fixed_bytes=4.0 * 4 * parameters, bytes_per_pixel=per_pixel)


def build_network(spec: NetworkSpec, in_channels: int, out_channels: int, dims: int = 2,
                  members: int = 1, spatial: tuple | None = None) -> nn.Module:
    """Build the generator a spec describes; ``members`` > 1 (light decoder only) builds an ensemble.

    ``spatial``, the (padded) output grid, sets the strides per axis (:meth:`NetworkSpec.halvings`);
    without it every axis is halved at every level.
    """
    if members > 1 and spec.kind != "light":
        raise ValueError(f"an ensemble of networks (members={members}) needs the 'light' network kind")
    if spatial is not None and len(spatial) != dims:
        raise ValueError(f"spatial {tuple(spatial)} needs {dims} sizes for a {dims}D network")
    halvings = None if spatial is None else spec.halvings(spatial)
    if spec.kind in ("skip", "hourglass"):
        skip = spec.skip if spec.kind == "skip" else (0,) * len(spec.down)
        return SkipNet(in_channels, out_channels, spec.down, spec.up, skip, spec.filter_down,
                       spec.filter_up, spec.filter_skip, spec.upsample, spec.pad, dims, halvings=halvings)
    if spec.kind == "light":
        return LightDecoder(in_channels, out_channels, spec.channels, spec.levels, spec.upsample, dims,
                            kernel=spec.kernel, head_channels=spec.head_channels, head_kernel=spec.head_kernel,
                            members=members, halvings=halvings)
    raise ValueError(f"unknown network kind {spec.kind!r}; use 'skip', 'hourglass' or 'light'")


def count_parameters(net: nn.Module) -> int:
    """The number of parameter values (weights, biases, normalisation scales) of ``net``."""
    return sum(p.numel() for p in net.parameters())
