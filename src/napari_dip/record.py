"""The run record: how a result was made, typed, built by the engine and written beside the result as JSON.

Readers use attributes (``record.stop_reason``, ``record.units[0].iterations``); :meth:`RunRecord.as_dict` gives
the JSON. The sections whose content depends on the task and the noise model (``parameters``, ``metrics``,
``quality``, ``amortised``, ``tiling``) stay dictionaries: docs/api.md § The run record lists their keys.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field

import numpy as np

from . import __version__

# A unit's fields that are left out of the JSON when they do not apply (a lone unit has no plane, an untiled
# plane no tile, a unit not restored no noise estimate …), as the record has always had them.
_OPTIONAL_UNIT_KEYS = ("plane", "tile", "y", "x", "started_from", "fitted_with", "noise_estimate",
                       "missing_pixels", "metrics", "normalisation")


@dataclass(kw_only=True)
class UnitRecord:
    """One work unit (a plane, a tile, a volume) of a run: where it is, whether DIP restored it, and how."""

    unit: int  # its number in the job, from 0
    plane: int | None = None  # where a job has several planes and several units
    tile: int | None = None  # the tile's index, and its rows and columns [start, stop), where the plane is tiled
    y: list[int] | None = None
    x: list[int] | None = None
    restored: bool = False  # False: the input (or its fallback) stands in (nothing to fit, or stopped before it)
    iterations: int = 0
    stop_reason: str = ""
    seconds: float = 0.0
    started_from: str | None = None  # 'random initialisation' or the unit whose fit it started from
    fitted_with: list[int] | None = None  # the units fitted together with it in one network
    noise_estimate: dict | None = None
    missing_pixels: int | None = None
    metrics: dict | None = None
    normalisation: dict | None = None  # the unit's own intensity mapping, where the job has none
    quality: dict | None = None  # how its result was chosen: written under the record's ``quality``, not here

    @classmethod
    def where(cls, unit: int, plane: int | None = None, tile=None) -> UnitRecord:
        """A unit's entry before its fit: where it is (``tile``: a core.tiling.Tile, or None)."""
        if tile is None:
            return cls(unit=unit, plane=plane)
        return cls(unit=unit, plane=plane, tile=tile.index, y=list(tile.y), x=list(tile.x))

    def as_dict(self) -> dict:
        entry = dataclasses.asdict(self)
        del entry["quality"]
        return {k: v for k, v in entry.items() if v is not None or k not in _OPTIONAL_UNIT_KEYS}


@dataclass(kw_only=True)
class RunRecord:
    """A run's record. ``units`` is empty for an amortised run (its teacher crops are under ``amortised``)."""

    task: str
    preset: str
    parameters: dict  # the job's settings, the intensity mapping, the noise estimate (docs/api.md)
    iterations: int  # over all units
    iterations_per_unit: list[int]
    planes: int
    work_unit: str  # what a unit is, in a word: 'image', 'plane', 'tile', 'volume', 'teacher crop' …
    units_restored: int
    stop_reason: str
    backtracks: int
    seconds: float
    device: str
    version: dict
    metrics: dict  # against a ground truth, where one was given
    quality: dict  # how each unit's result was chosen, and the estimate of its quality
    input: dict  # shape and dtype
    output: dict
    units: list[UnitRecord] = field(default_factory=list)
    units_together: dict | None = None  # how many units were fitted in one network, and why
    cpu_threads: dict | None = None  # the CPU's threads and worker processes, and why
    tiling: dict | None = None
    amortised: dict | None = None  # taught once (or why not): amortised.py
    finished: str = field(default_factory=lambda: datetime.datetime.now().astimezone().isoformat(timespec="seconds"))

    def as_dict(self) -> dict:
        """The record as JSON-ready dictionaries; a section that does not apply is left out."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["units"] = [unit.as_dict() for unit in self.units]
        return {k: v for k, v in record.items() if v is not None}

    @classmethod
    def from_dict(cls, record: dict) -> RunRecord:
        """A record read back from its JSON; keys added beside the record (the command line's ``files``,
        ``command`` …) are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in record.items() if k in names}
        fields["units"] = [UnitRecord(**unit) for unit in record.get("units", [])]
        return cls(**fields)


def versions() -> dict:
    """The versions of the packages that made a result."""
    import torch  # only once a run has started: importing the record stays light

    return {"napari_dip": __version__, "torch": torch.__version__, "numpy": np.__version__}


def input_entry(spec) -> dict:
    """The record's word on a job's (a job.JobSpec's) input."""
    return {"shape": list(spec.layout.shape), "dtype": str(np.dtype(spec.sources["image"].array.dtype))}


def output_entry(spec) -> dict:
    """The record's word on a job's output (float32, in the input's layout and units)."""
    return {"shape": list(spec.output_shape), "dtype": "float32"}
