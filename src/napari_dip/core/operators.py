"""Forward operators A: what the degradation does to a clean image.

Every task is ``E(A(f(z)); x0)``: the loop never special-cases a task, it only
applies the operator it is given. Operators act on tensors shaped
(N, C, H, W) or, for volumes, (N, C, D, H, W).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _like(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The kernel in ``x``'s dtype and on its device (a no-op when they match).

    The dtype follows the input under mixed precision; the device too, so that an
    operator another run moved to a GPU still applies to tensors on the CPU.
    """
    return kernel.to(dtype=x.dtype, device=x.device)


class Operator(nn.Module):
    """Base class: ``A(x)``. ``scale`` is output size over input size per spatial axis.

    A ``torch.nn.Module``: kernels are buffers, so ``operator.to(device)`` moves them.
    """

    scale: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        return self.describe()


class IdentityOperator(Operator):
    """Denoising and JPEG deblocking: the measurement is the image itself."""

    def forward(self, x):
        return x

    def describe(self):
        return "identity"


def _sinc(x: np.ndarray) -> np.ndarray:
    return np.sinc(x)  # numpy's sinc is the normalised sin(pi x) / (pi x)


def lanczos2_kernel(factor: int) -> np.ndarray:
    """1D Lanczos-2 anti-aliasing kernel for downsampling by ``factor``.

    The paper's super-resolution downsampler: Lanczos with support 2, phase 0.5
    (the kernel is centred between two samples, so an even-sized kernel of
    4·factor taps is symmetric about the centre of each low-resolution pixel),
    normalised to sum to one.
    """
    size = 4 * factor
    # tap positions in low-resolution pixel units, symmetric about 0
    t = (np.arange(size) - (size - 1) / 2.0) / factor
    k = _sinc(t) * _sinc(t / 2.0)
    k[np.abs(t) >= 2] = 0.0
    return (k / k.sum()).astype(np.float64)


class DownsampleOperator(Operator):
    """Super-resolution: Lanczos-2 anti-aliased downsampling by an integer factor.

    Separable kernel of 4·factor taps, stride = factor, replication padding of
    1.5·factor on each side, so an H×W image becomes exactly H/factor × W/factor
    and each low-resolution pixel is centred on its factor×factor block.
    """

    def __init__(self, factor: int, dims: int = 2):
        if factor < 2 or factor & (factor - 1):
            raise ValueError(f"factor must be a power of two ≥ 2, got {factor}")
        super().__init__()
        self.factor = factor
        self.scale = 1.0 / factor
        self.dims = dims
        self.register_buffer("kernel1d", torch.from_numpy(lanczos2_kernel(factor)).float(), persistent=False)

    def forward(self, x):
        f = self.factor
        pad = 3 * f // 2
        channels = x.shape[1]
        k = _like(self.kernel1d, x)
        spatial = x.ndim - 2
        # Only the last two axes (Y, X) are downsampled, also for volumes.
        if spatial == 3:
            n, c, d, h, w = x.shape
            x = x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w)
        x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        ky = k.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
        kx = k.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
        x = F.conv2d(x, ky, stride=(f, 1), groups=channels)
        x = F.conv2d(x, kx, stride=(1, f), groups=channels)
        if spatial == 3:
            x = x.reshape(n, d, c, x.shape[-2], x.shape[-1]).permute(0, 2, 1, 3, 4)
        return x

    def describe(self):
        return f"lanczos2-downsample x{self.factor}"


class AxialDownsampleOperator(Operator):
    """Axial super-resolution: Lanczos-2 anti-aliased downsampling of Z alone by an integer factor.

    A microscope stack whose Z step is ``factor`` times its XY pixel: each measured plane is the
    Lanczos-2 weighted mean of the ``factor`` fine planes it covers and their neighbours (the same kernel,
    phase and replication padding as :class:`DownsampleOperator` along Y/X), so a (Z·factor, Y, X) volume
    becomes (Z, Y, X) with each plane centred on its block. Y and X are left as they are.
    """

    def __init__(self, factor: int):
        if factor < 2 or factor & (factor - 1):
            raise ValueError(f"factor must be a power of two ≥ 2, got {factor}")
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel1d", torch.from_numpy(lanczos2_kernel(factor)).float(), persistent=False)

    def forward(self, x):
        if x.ndim != 5:
            raise ValueError(f"axial downsampling needs volumes (N, C, Z, Y, X); got shape {tuple(x.shape)}")
        f, channels = self.factor, x.shape[1]
        pad = 3 * f // 2
        x = F.pad(x, (0, 0, 0, 0, pad, pad), mode="replicate")
        kz = _like(self.kernel1d, x).view(1, 1, -1, 1, 1).repeat(channels, 1, 1, 1, 1)
        return F.conv3d(x, kz, stride=(f, 1, 1), groups=channels)

    def describe(self):
        return f"lanczos2-downsample of Z x{self.factor}"


def gaussian_psf(sigma: float, dims: int = 2) -> np.ndarray:
    """Normalised Gaussian point-spread function, odd size 2·ceil(3σ)+1."""
    if sigma <= 0:
        raise ValueError("PSF sigma must be positive")
    radius = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    psf = g
    for _ in range(dims - 1):
        psf = np.multiply.outer(psf, g)
    return psf / psf.sum()


def prepare_psf(psf: np.ndarray) -> np.ndarray:
    """Normalise a PSF to unit sum and make each side odd.

    An even side gets one zero row or column at its end, which keeps the
    centre at index size//2 (scipy.ndimage's convention).
    """
    psf = np.asarray(psf, dtype=np.float64)
    pad = [(0, 1 - s % 2) for s in psf.shape]
    psf = np.pad(psf, pad)
    total = psf.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the PSF must have a positive, finite sum")
    return psf / total


class BlurOperator(Operator):
    """Deconvolution: convolution with a point-spread function, same output size.

    True convolution (the PSF is flipped, as in scipy.ndimage.convolve) with
    reflect padding at the image borders. A 2D PSF on a volume blurs each plane;
    a 3D PSF blurs the volume.
    """

    def __init__(self, psf: np.ndarray):
        super().__init__()
        self.psf_array = prepare_psf(psf)
        flipped = np.ascontiguousarray(self.psf_array[(slice(None, None, -1),) * self.psf_array.ndim])
        self.register_buffer("kernel", torch.from_numpy(flipped).float(), persistent=False)

    def forward(self, x):
        k = _like(self.kernel, x)
        channels = x.shape[1]
        spatial = x.ndim - 2
        if k.ndim == 2 and spatial == 3:  # plane-wise blur of a volume
            n, c, d, h, w = x.shape
            y = self._conv(x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w), k, channels)
            return y.reshape(n, d, c, h, w).permute(0, 2, 1, 3, 4)
        return self._conv(x, k, channels)

    @staticmethod
    def _conv(x, k, channels):
        pads = []
        for size in reversed(k.shape):
            pads += [size // 2, size // 2]
        x = F.pad(x, pads, mode="reflect")
        weight = k.view(1, 1, *k.shape).repeat(channels, *([1] * (k.ndim + 1)))
        conv = F.conv2d if k.ndim == 2 else F.conv3d
        return conv(x, weight, groups=channels)

    def describe(self):
        return f"blur psf {'x'.join(map(str, self.psf_array.shape))}"


class ComposedOperator(Operator):
    """``A = outer ∘ inner``, e.g. blur then downsample."""

    def __init__(self, *operators: Operator):
        super().__init__()
        self.operators = nn.ModuleList(operators)  # registered, so .to() moves their kernels too
        self.scale = float(np.prod([op.scale for op in operators]))

    def forward(self, x):
        for op in self.operators:
            x = op(x)
        return x

    def describe(self):
        return " then ".join(op.describe() for op in self.operators)
