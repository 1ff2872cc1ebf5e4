"""The restoration tasks as registered objects: the one place that says what each task takes.

Plain data, without torch at import, so that the command line can list the tasks quickly
(``--help``): each task's forward operator is built by a function of this module that imports
``core/operators.py`` only when called. Each task's settings are built in ``core/presets.py``.
Adding a task means adding an entry here (with its operator builder), a widget and its docs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _identity(factors, spatial_dims, psf=None):
    """Denoising, inpainting (the held-out and missing pixels are left out of the data term instead)."""
    from .operators import IdentityOperator

    return IdentityOperator()


def _downsample(factors, spatial_dims, psf=None):
    """Lanczos-2 downsampling of Y and X by the factor (the identity for factor 1)."""
    from .operators import DownsampleOperator, IdentityOperator

    factor = factors[-1]
    return IdentityOperator() if factor == 1 else DownsampleOperator(factor, spatial_dims)


def _downsample_z(factors, spatial_dims, psf=None):
    """Lanczos-2 downsampling of Z alone by the factor (axial resolution of a stack)."""
    from .operators import AxialDownsampleOperator

    return AxialDownsampleOperator(factors[0])


def _blur_then_downsample(factors, spatial_dims, psf=None):
    """Blur by the PSF, then (factor > 1) downsample Y and X."""
    from .operators import BlurOperator, ComposedOperator

    blur = BlurOperator(psf)
    factor = factors[-1]
    return blur if factor == 1 else ComposedOperator(blur, _downsample(factors, spatial_dims))

# every factor the engine can downsample by; 1 = the result has the input's size
ENGINE_FACTORS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Task:
    """One restoration task.

    ``factors`` are the enlargement factors the task accepts ((1,): none, the result has the
    input's size); ``default_factor`` is used when none is asked for. ``needs`` names the extra
    arguments of which one is required (a mask for ``inpaint`` may be replaced by NaN pixels);
    ``accepts`` names every extra array argument the task uses besides ``mask``, which all take.
    ``operator`` builds the forward operator A from the per-axis factors, the number of spatial
    axes and the PSF (an array, or None). ``enlarges`` names the spatial axes the factor enlarges
    ("yx", or "z" for axial resolution). ``volumetric`` True: the task needs (Z, Y, X) volumes.
    ``settings_like`` names the task whose presets it uses (None: its own, in core/presets.py).
    """

    name: str
    title: str  # in words, for messages: "super-resolution"
    summary: str  # one line: the forward operator A, i.e. what the task undoes
    presets: tuple  # preset names; the first is the default
    default_factor: int = 1
    factors: tuple = (1,)
    needs: tuple = ()
    accepts: tuple = ()
    operator: Callable = field(default=_identity, compare=False)
    enlarges: str = "yx"
    volumetric: bool = False
    settings_like: str | None = None

    @property
    def takes_factor(self) -> bool:
        """Whether the task can enlarge the image (a factor other than 1)."""
        return self.factors != (1,)

    def factor(self, requested=None) -> int:
        """The effective factor for ``requested`` (None: the default); raises ValueError if not allowed."""
        if requested is None:
            return self.default_factor
        if requested not in ENGINE_FACTORS:
            raise ValueError(f"factor must be 2, 4 or 8; got {requested!r}")
        if requested not in self.factors:
            if not self.takes_factor:
                raise ValueError(f"task {self.name!r} takes no factor; use task='superres' to enlarge the image")
            raise ValueError(f"{self.title} needs factor "
                             f"{', '.join(map(str, self.factors[:-1]))} or {self.factors[-1]}")
        return int(requested)

    def axis_factors(self, factor: int, spatial_dims: int) -> tuple:
        """How many times larger the result is than the input along each spatial axis (Z, Y, X or Y, X).

        >>> get_task("superres").axis_factors(4, 2), get_task("axial-superres").axis_factors(2, 3)
        ((4, 4), (2, 1, 1))
        """
        axes = "zyx"[-spatial_dims:]
        return tuple(factor if axis in self.enlarges else 1 for axis in axes)


TASKS = {task.name: task for task in (
    Task("denoise", "denoising", "identity (also JPEG deblocking)",
         presets=("fast", "paper", "paper-sigma50", "jpeg")),
    Task("inpaint", "inpainting", "a mask of missing pixels (nonzero = missing)",
         presets=("fast", "paper", "text", "large-hole", "region", "missing-pixels"), needs=("mask",)),
    Task("superres", "super-resolution", "Lanczos-2 downsampling ×2/×4/×8",
         presets=("fast", "paper"), default_factor=4, factors=(2, 4, 8), operator=_downsample),
    Task("deconvolve", "deconvolution", "blur by a PSF, optionally then downsampling",
         presets=("fast", "paper"), factors=ENGINE_FACTORS, needs=("psf", "psf_sigma"), accepts=("psf", "psf_sigma"),
         operator=_blur_then_downsample),
    Task("guided", "guided restoration", "identity (or downsampling); the guide image is the network input",
         presets=("fast", "paper"), factors=ENGINE_FACTORS, needs=("guide",), accepts=("guide",),
         operator=_downsample),
    Task("axial-superres", "axial super-resolution", "Lanczos-2 downsampling of Z alone ×2/×4/×8 (a volume)",
         presets=("fast", "paper"), default_factor=2, factors=(2, 4, 8), operator=_downsample_z, enlarges="z",
         volumetric=True, settings_like="superres"),
)}


def get_task(name: str) -> Task:
    """The registered task called ``name``; raises ValueError naming the choices."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def default_factor(name: str) -> int:
    """The factor ``name`` uses when none is given; 1 for an unknown name (it is rejected elsewhere)."""
    task = TASKS.get(name) if isinstance(name, str) else None
    return task.default_factor if task else 1
