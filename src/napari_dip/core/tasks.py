"""The restoration tasks as registered objects: the one place that says what each task takes.

Plain data, without torch, so that the command line can list the tasks quickly (``--help``).
Each task's settings are built in ``core/presets.py``; its forward operator in ``api._prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass

# every factor the engine can downsample by; 1 = the result has the input's size
ENGINE_FACTORS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Task:
    """One restoration task.

    ``factors`` are the enlargement factors the task accepts ((1,): none, the result has the
    input's size); ``default_factor`` is used when none is asked for. ``needs`` names the extra
    arguments of which one is required (a mask for ``inpaint`` may be replaced by NaN pixels);
    ``accepts`` names every extra array argument the task uses besides ``mask``, which all take.
    """

    name: str
    title: str  # in words, for messages: "super-resolution"
    summary: str  # one line: the forward operator A, i.e. what the task undoes
    presets: tuple  # preset names; the first is the default
    default_factor: int = 1
    factors: tuple = (1,)
    needs: tuple = ()
    accepts: tuple = ()

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


TASKS = {task.name: task for task in (
    Task("denoise", "denoising", "identity (also JPEG deblocking)",
         presets=("fast", "paper", "paper-sigma50", "jpeg")),
    Task("inpaint", "inpainting", "a mask of missing pixels (nonzero = missing)",
         presets=("fast", "paper", "text", "large-hole", "region", "missing-pixels"), needs=("mask",)),
    Task("superres", "super-resolution", "Lanczos-2 downsampling ×2/×4/×8",
         presets=("fast", "paper"), default_factor=4, factors=(2, 4, 8)),
    Task("deconvolve", "deconvolution", "blur by a PSF, optionally then downsampling",
         presets=("fast", "paper"), factors=ENGINE_FACTORS, needs=("psf", "psf_sigma"), accepts=("psf", "psf_sigma")),
    Task("guided", "guided restoration", "identity (or downsampling); the guide image is the network input",
         presets=("fast", "paper"), factors=ENGINE_FACTORS, needs=("guide",), accepts=("guide",)),
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
