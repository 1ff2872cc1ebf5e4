"""What a restoration is asked to do, besides the image: one typed object.

:class:`RestoreOptions` holds every option of :func:`napari_dip.restore` with its default; the API builds it
from the caller's keywords (those that are not options are settings of the preset) and passes it on to the
job's definition (``job.define_job``) and the executor. ``restore``'s and ``restore_iter``'s signatures are
made from it, so a new option is written once.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RestoreOptions:
    """The options of one restoration (restore()'s docstring says what each does)."""

    task: str = "denoise"
    preset: str = "fast"
    mask: Any = None
    factor: int | None = None
    psf: Any = None
    psf_sigma: float | None = None
    guide: Any = None
    noise: str = "auto"  # chosen from the image's mean-variance fit (core/noise_fit.py)
    # the axis of colour channels or bands, or None; a batch's options may say 'auto' (from each file's metadata),
    # which batch.py resolves before the job is defined
    channel_axis: int | str | None = None
    volumetric: bool = False
    iterations: int | None = None
    seed: int = 0
    device: str = "auto"
    ground_truth: Any = None
    snapshot_every: int | None = None
    early_stopping: bool | None = None
    auto_stop: bool | None = None
    holdout_fraction: float | None = None
    gain: float | None = None
    offset: float | None = None
    read_noise: float | None = None
    looks: float | None = None  # noise='speckle': the number of looks (None: estimated from the image)
    speckle: str = "amplitude"  # noise='speckle': what the data are, "amplitude" or "intensity" (core/speckle.py)
    percentiles: tuple = (0.0, 100.0)
    tile_size: int | str | None = "auto"
    overlap: int = 64
    normalise: str = "joint"
    out: Any = None
    memory_limit: float | None = None
    workers: int | str = "auto"  # CPU worker processes for the units of a stack or tiled image (processes.py)
    units_together: int | str = "auto"  # units fitted together in one network call (executor.choose_units_together)
    amortise: bool | str = "auto"  # DIP teaches a few crops, a student network restores the rest (amortised.py)
    settings: dict = field(default_factory=dict)  # fields of core.presets.Settings by name (``lr``, ``network_kind``)

    @classmethod
    def from_keywords(cls, **keywords) -> RestoreOptions:
        """The options from restore()'s keywords: the ones that are not options are settings.

        >>> options = RestoreOptions.from_keywords(task="superres", factor=2, lr=0.005)
        >>> options.task, options.factor, options.settings
        ('superres', 2, {'lr': 0.005})
        """
        return cls().updated(**keywords)

    def updated(self, **keywords) -> RestoreOptions:
        """These options with ``keywords`` applied: an option's name replaces that option, any other name is a
        setting (added to, or replacing one of, ``settings``).

        >>> options = RestoreOptions(task="inpaint").updated(preset="paper", lr=0.01)
        >>> options.task, options.preset, options.settings
        ('inpaint', 'paper', {'lr': 0.01})
        """
        names = {f.name for f in dataclasses.fields(self)} - {"settings"}
        settings = {name: keywords.pop(name) for name in list(keywords) if name not in names}
        return dataclasses.replace(self, **keywords, settings={**self.settings, **settings})


def signature(returns) -> inspect.Signature:
    """``restore(image, task='denoise', *, <every option>, **settings) -> returns``."""
    image = inspect.Parameter("image", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = [image]
    for option in dataclasses.fields(RestoreOptions):
        if option.name == "settings":
            continue
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if option.name == "task" else inspect.Parameter.KEYWORD_ONLY
        default = option.default if option.default is not dataclasses.MISSING else option.default_factory()
        parameters.append(inspect.Parameter(option.name, kind, default=default, annotation=option.type))
    parameters.append(inspect.Parameter("settings", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters, return_annotation=returns)
