"""Amortised restoration: DIP restores a few units, a student network learns from them and restores them all.

Per-unit DIP costs units × iterations × pixels: hours for a 2048² frame or a long time-lapse on a CPU. Here the
engine (``executor.py``, unchanged) restores a few *teacher* crops chosen to cover the data, a small U-Net
(``core/student.py``) learns degraded crop → DIP's result on them, and one forward pass restores every plane: the
cost stops growing with the data. A *judge* crop that the student never learned from is restored by the teacher
too, with a fifth of its pixels left out of the teacher's fit; the two results' squared errors at those pixels,
corrected for the student's lean on each pixel's own noise, say without a ground truth how much the student
loses against DIP (:func:`judge_student`). Where it loses more than a margin, more teachers are added; where that
does not help, the job falls back to per-unit fitting and says so. docs/large-images.md § Teach once, apply
everywhere; docs/quality.md § The judge.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass

import numpy as np

from . import student_mix
from .core import data
from .core.reference import biharmonic_fill, neighbour_mean_fill
from .errors import DIPInputError
from .executor import Restoration, RestorationRun, Snapshot, measurement_sample, read_unit
from .intensities import choose_noise, fit_intensities, with_speckle_looks
from .job import JobSpec, missing_planes
from .metrics import metric_pair, whole_metric_pair
from .record import RunRecord, input_entry, output_entry, versions

AMORTISE_WORDS = {"auto": "auto", "on": True, "off": False}  # the command line's and the widgets' words for them
# 'auto' amortises jobs of at least this many output pixels or voxels (all planes): the teacher and the student
# cost about as much as per-unit DIP on 0.6 megapixels on 2 cores; on a 16 × 128² volume (a quarter of a million
# voxels) the student took two thirds of per-unit 3D DIP's time, 0.5 dB below it on one volume and 0.2 above on
# another: below a megapixel there is little to gain (docs/benchmarks.md § Teach once, apply everywhere)
AUTO_MIN_PIXELS = 16 * 256 * 256
TEACHER_SIDE = 256  # side of a teacher crop (smaller planes: the whole plane)
TEACHER_VOLUME = (8, 64)  # a volume's teacher crops: planes along Z and Y/X side (smaller volumes: all of it)
FIRST_TEACHERS = {2: 3, 3: 2}  # by spatial dims: crops learned from in the first round; later rounds add as many
MAX_TEACHER_SHARE = 0.5  # more teachers than this share of the data's crops: per-unit fitting instead
JUDGE_FRACTION = 0.2  # of the judge crop's measured pixels (2 × 2 blocks), left out of its teacher's fit to score both
APPLY_TILE = 512  # the student restores planes in tiles of this side (memory stays flat)
DERIVATIVE_PROBES = 16  # Monte-Carlo probes of the student's derivative on the judge crop (a pass each)
# DIP's network weight in its classical mix on every crop it restored at most this: its results there are the
# classical estimate, which a student could only learn to imitate, so the job takes the estimate alone (a 1024²
# speckled scene: 740 s through a student whose mix weight came out 0.00, docs/benchmarks.md § Radar speckle)
NO_NETWORK_WEIGHT = 0.1
# the engine's name, by task, of the classical estimate that can then restore the job alone
ALONE_METHODS = {"denoise": "block-matching", "inpaint": "biharmonic"}
STAGES = ("teacher", "student", "apply")  # with a 'judge' snapshot between a round's student and what follows


@dataclass(frozen=True)
class Decision:
    """Whether a job is restored by a student, and why (for the record and the messages)."""

    amortise: bool
    why: str

    def as_dict(self) -> dict:
        return {"used": self.amortise, "why": self.why}


@dataclass(frozen=True)
class Crop:
    """A teacher candidate: a Y/X window of one plane (``lead`` its index on the leading axes); in a volume, of
    the planes ``z`` along Z."""

    plane: int
    lead: tuple
    y: tuple[int, int]
    x: tuple[int, int]
    z: tuple[int, int] | None = None

    @property
    def yx(self) -> tuple:
        """The (Y, X) ranges, as a work unit's (``executor.read_unit`` reads either)."""
        return self.y, self.x

    def overlaps(self, other: Crop) -> bool:
        """Whether the two crops share a pixel (a judge that shares one with a teacher saw part of its noise)."""
        ranges = [(self.y, other.y), (self.x, other.x), (self.z or (0, 1), other.z or (0, 1))]
        return self.plane == other.plane and all(a[0] < b[1] and b[0] < a[1] for a, b in ranges)

    def as_dict(self) -> dict:
        place = {"plane": self.plane, "y": list(self.y), "x": list(self.x)}
        return place if self.z is None else dict(place, z=list(self.z))


def check_amortise(value):
    """``value`` if it is 'auto', True or False, else a DIPInputError that lists them."""
    if isinstance(value, str) and value == "auto" or value is True or value is False:
        return value
    raise DIPInputError(f"amortise must be 'auto' (a student network restores large jobs), True or False (every "
                        f"unit fitted by DIP); got {value!r}")


AMORTISED_TASKS = ("denoise", "inpaint", "superres", "axial-superres", "deconvolve")


def unsupported(spec: JobSpec, options) -> str | None:
    """Why this job cannot be amortised yet, or None."""
    if spec.name not in AMORTISED_TASKS:
        return (f"amortised restoration is built for denoising, inpainting, super-resolution and deconvolution, "
                f"not {spec.name!r}")
    if options.out is not None:
        return "amortised restoration keeps the result in memory: it does not write into out="
    if spec.name == "inpaint" and spec.layout.spatial_dims == 3:
        return "amortised inpainting is built for 2D planes, not volumes"
    if len(candidate_crops(spec)) < 2:
        return "the data is one teacher crop: a student needs a crop to learn from and another to be judged on"
    return None


def decide(spec: JobSpec, options) -> Decision:
    """'auto': amortise supported jobs of at least :data:`AUTO_MIN_PIXELS` output pixels; True: amortise (an error
    where it cannot); False: per-unit fitting."""
    requested = check_amortise(options.amortise)
    if requested is False:
        return Decision(False, "amortise=False: every unit fitted by DIP")
    why_not = unsupported(spec, options)
    gaps = None  # inpainting: the crops with a gap, read once for the check and the count below
    if why_not is None and spec.name == "inpaint":
        gaps = len(crops_with_gaps(spec, candidate_crops(spec)))
        if gaps < 2:
            why_not = "the missing pixels lie within one teacher crop: DIP restores it directly"
    if why_not is not None:
        if requested is True:
            raise DIPInputError(f"{why_not}: pass amortise=False (or 'auto')")
        return Decision(False, why_not)
    pixels = spec.layout.planes * math.prod(spec.layout.spatial_shape) * math.prod(spec.axis_factors)  # the result's
    if requested is True:
        return Decision(True, "amortise=True")
    word = "voxels" if spec.layout.spatial_dims == 3 else "pixels"
    if gaps is not None:  # per-unit fitting copies a tile with nothing to fill: count the crops with a gap
        pixels = pixels * gaps // len(candidate_crops(spec))
        word = "pixels in crops with a gap"
    if pixels < AUTO_MIN_PIXELS:
        return Decision(False, f"{pixels:,} {word}: small enough for DIP on every unit (a student pays from "
                               f"{AUTO_MIN_PIXELS:,})")
    return Decision(True, f"{pixels:,} {word}: DIP teaches a few crops, a student restores the rest")


# ---------------------------------------------------------------------------------------------
# which crops teach


def candidate_crops(spec: JobSpec) -> list[Crop]:
    """Crops of :data:`TEACHER_SIDE` result pixels (volumes: :data:`TEACHER_VOLUME`; the whole extent where
    smaller) tiling every plane, evenly spread, the last at the border; in input pixels (a super-resolution
    crop of the input is its factor times smaller, so that every teacher costs about the same)."""
    def starts(extent: int, size: int) -> list[tuple[int, int]]:
        size = min(size, extent)
        return [(int(a), int(a) + size) for a in np.linspace(0, extent - size, math.ceil(extent / size)).round()]

    shape = spec.layout.spatial_shape
    depth, side = TEACHER_VOLUME if spec.layout.spatial_dims == 3 else (None, TEACHER_SIDE // spec.axis_factors[-1])
    zs = starts(shape[0], depth) if depth else [None]
    return [Crop(p, lead, y, x, z) for p, lead in enumerate(spec.layout.leads) for z in zs
            for y in starts(shape[-2], side) for x in starts(shape[-1], side)]


def crops_with_gaps(spec: JobSpec, crops: list[Crop]) -> list[int]:
    """The crops (their indices) with a missing pixel: an inpainting student learns from those, and is judged on
    one (a crop without a gap teaches it nothing the mask asks for)."""
    return [i for i, crop in enumerate(crops) if missing_planes(spec, read_crop(spec, crop))[2].any()]


def read_crop(spec: JobSpec, crop: Crop) -> dict:
    """The crop's pieces of every array of the job (copies, channels last), as :func:`executor.read_unit`'s."""
    pieces = read_unit(spec, crop)
    if crop.z is None:
        return pieces
    # Z leads a volume's pieces; the ground truth is on the result's grid (finer along Z for axial resolution)
    return {name: piece[slice(*result_z(spec, crop.z) if name == "ground_truth" else crop.z)]
            for name, piece in pieces.items()}


def result_z(spec: JobSpec, z: tuple[int, int]) -> tuple[int, int]:
    """Planes ``z`` of the input as planes of the result."""
    return z[0] * spec.axis_factors[0], z[1] * spec.axis_factors[0]


def crop_features(spec: JobSpec, crops: list[Crop], normalisation) -> np.ndarray:
    """Per crop: its mean, spread and edge strength (on 2×2 means, so that noise counts less), and its place
    (plane, Y, X as fractions), each scaled to unit spread over the crops; the place weighs half. For inpainting,
    also the share of its pixels that are missing (teachers with thin and wide gaps alike)."""
    shape = spec.layout.spatial_shape
    rows = []
    for crop in crops:
        values, missing = measured_planes(spec, read_crop(spec, crop), normalisation)
        values = values.mean(axis=0)
        values = values.reshape(-1, *values.shape[-2:])  # (planes along Z, H, W)
        h, w = values.shape[1] // 2 * 2, values.shape[2] // 2 * 2
        coarse = values[:, :h, :w].reshape(-1, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
        edges = np.abs(np.diff(coarse, axis=1)).mean() + np.abs(np.diff(coarse, axis=2)).mean()
        depth = (crop.z[0] + crop.z[1]) / 2 / shape[0] if crop.z is not None else 0.5
        place = (crop.plane / max(spec.layout.planes - 1, 1), depth, (crop.y[0] + crop.y[1]) / 2 / shape[-2],
                 (crop.x[0] + crop.x[1]) / 2 / shape[-1])
        rows.append([values.mean(), values.std(), edges, *place] + ([missing.mean()] if spec.name == "inpaint" else []))
    features = np.asarray(rows, np.float64)
    spread = features.std(axis=0)
    features = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    features[:, 3:7] *= 0.5
    return features


def spread_choice(features: np.ndarray, count: int, chosen: list[int] | None = None,
                  excluded: tuple = ()) -> list[int]:
    """``count`` more crops by farthest-point sampling: each the crop farthest from those chosen (in content and
    place), the first the most typical one (nearest the mean); never one of ``excluded``."""
    chosen = list(chosen or [])
    distance = np.full(len(features), np.inf)
    for i in chosen:
        distance = np.minimum(distance, np.linalg.norm(features - features[i], axis=1))
    distance[list(excluded)] = -1.0
    while count > 0 and distance.max() >= 0:
        i = int(np.argmin(np.linalg.norm(features, axis=1))) if not chosen else int(np.argmax(distance))
        chosen.append(i)
        distance = np.minimum(distance, np.linalg.norm(features - features[i], axis=1))
        distance[chosen + list(excluded)] = -1.0
        count -= 1
    return chosen


def typical_untaught(features: np.ndarray, taught: list[int], crops: list[Crop] | None = None) -> int:
    """The judge: of the crops not taught (and, where there are such, sharing no pixel with a taught one), the one
    whose distance to its nearest taught crop is the median of theirs, so that it is as new to the student as the
    typical crop the student restores untaught (the farthest would overstate the loss, the nearest understate it)."""
    rest = [i for i in range(len(features)) if i not in taught]
    apart = [i for i in rest if crops is None or not any(crops[i].overlaps(crops[j]) for j in taught)]
    rest = apart or rest
    novelty = [min(np.linalg.norm(features[i] - features[j]) for j in taught) for i in rest]
    return rest[int(np.argsort(novelty)[len(rest) // 2])]


# ---------------------------------------------------------------------------------------------
# the student's input: the degraded pixels in the job's one intensity mapping


def student_input(spec: JobSpec, pieces: dict, normalisation) -> np.ndarray:
    """What the student sees of a unit: its measured planes (:func:`measured_planes`) on the result's grid
    (:func:`on_result_grid`), (C, *result spatial); for inpainting, :func:`inpainting_input`."""
    planes, missing = measured_planes(spec, pieces, normalisation)
    if spec.name == "inpaint":
        return inpainting_input(planes, missing)
    return on_result_grid(spec, planes)


def inpainting_input(planes: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """An inpainting student's input: the planes (C, H, W) with their missing pixels (1, H, W) filled by biharmonic
    interpolation (the start its correction adds to: with a Gaussian-weighted fill instead the student stayed 2.6 dB
    below the biharmonic fill in round holes, docs/benchmarks.md), and the mask as one more channel, so that it
    knows which pixels to fill and which to keep; (C + 1, H, W)."""
    return np.concatenate([biharmonic_fill(planes, 1.0 - missing), missing.astype(np.float32)])


def kept_measured(spec: JobSpec, restored: np.ndarray, planes_in: np.ndarray) -> np.ndarray:
    """Inpainting keeps the measured pixels as the user measured them (as the engine does): the student's result
    where the mask (the input's last channel) says missing, the measurement elsewhere; other tasks as they are."""
    if spec.name != "inpaint":
        return restored
    channels = restored.shape[0]
    return np.where(planes_in[channels:channels + 1] > 0, restored, planes_in[:channels]).astype(np.float32)


def on_result_grid(spec: JobSpec, planes: np.ndarray) -> np.ndarray:
    """Measured planes (C, *spatial) interpolated to the result's grid by a cubic spline along each enlarged axis
    (Z for axial resolution, Y and X for super-resolution), each result pixel at its place in the measured
    pixel's block, as the task's downsampling centres them; as they are for denoising."""
    if all(f == 1 for f in spec.axis_factors):
        return planes
    from scipy.ndimage import zoom

    return zoom(planes, (1, *spec.axis_factors), order=3, mode="nearest", grid_mode=True).astype(np.float32)


def as_measured(spec: JobSpec, planes: np.ndarray) -> np.ndarray:
    """What the task's forward operator makes of planes (C, *result spatial) on the result's grid: the
    measurement they predict (the planes themselves for denoising)."""
    import torch

    from .core.operators import IdentityOperator

    if isinstance(spec.operator, IdentityOperator):
        return planes
    with torch.no_grad():
        return spec.operator(torch.from_numpy(np.ascontiguousarray(planes[None], np.float32))).numpy()[0]


def measured_planes(spec: JobSpec, pieces: dict, normalisation):
    """(planes (C, *spatial) normalised, missing pixels (1, *spatial)) of a unit; missing pixels filled by their
    neighbours' mean."""
    _, planes, missing = missing_planes(spec, pieces)
    planes = normalisation[0].forward(planes[0])
    if spec.noise in ("poisson", "poisson-gaussian"):
        np.clip(planes, 0.0, None, out=planes)
    missing = missing[0].any(axis=0, keepdims=True)
    if missing.any():
        planes = neighbour_mean_fill(np.where(missing, 0.0, planes), missing)
    return planes.astype(np.float32), missing


def student_channels(spec: JobSpec, student_spec) -> tuple[int, int]:
    """The student's input and output channels: the data's, times the planes it sees at once in a volume."""
    channels = spec.layout.channels
    if spec.name == "inpaint":  # and the mask
        return channels + 1, channels
    return (channels * (2 * student_spec.reach + 1) if spec.layout.spatial_dims == 3 else channels), channels


def training_pairs(planes: np.ndarray, target: np.ndarray, reach: int) -> list:
    """The student's (input, target) pairs from a teacher crop: the crop itself, or a volume's planes each with
    its neighbours (core/student.py's ``context_planes``)."""
    from .core.student import context_planes

    if planes.ndim == 3:
        return [(planes, target)]
    return [(context_planes(planes, z, reach), target[:, z]) for z in range(planes.shape[1])]


def student_output(net, planes: np.ndarray, device, on_part=None) -> np.ndarray:
    """The student's result for a unit's planes (C, H, W) or a volume's (C, Z, H, W); ``on_part(done, total)``
    after each tile (plane of a volume)."""
    from .core.student import apply_student, apply_student_volume

    if planes.ndim == 4:
        return apply_student_volume(net, planes, APPLY_TILE, device=device, on_plane=on_part)
    return apply_student(net, planes, APPLY_TILE, device=device, on_tile=on_part)


# ---------------------------------------------------------------------------------------------
# the run


def start_amortised(image, options, spec: JobSpec, device, decision: Decision) -> RestorationRun:
    """The amortised run of a checked job (:func:`decide` said yes)."""
    from .core.device import describe_device

    run = RestorationRun(lambda run: _snapshots(run, image, options, spec, device, decision),
                         1, 1000, describe_device(device))
    run.stages = STAGES
    return run


class _Clock:
    """Whole-run progress in thousandths and the time left, from each stage's fraction done and its estimate."""

    def __init__(self, estimates: dict):
        self.start = time.perf_counter()
        self.estimates = dict(estimates)  # stage → seconds (None: not known yet)
        self.stage, self.stage_start, self.fraction = STAGES[0], self.start, 0.0
        self.shown = 0  # thousandths shown so far: progress never goes back when an estimate changes

    def enter(self, stage: str, estimate: float | None = None):
        self.stage, self.stage_start, self.fraction = stage, time.perf_counter(), 0.0
        if estimate is not None:
            self.estimates[stage] = estimate

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def seconds_left(self) -> float | None:
        spent = time.perf_counter() - self.stage_start
        if self.fraction >= 0.02:
            here = spent * (1.0 - self.fraction) / self.fraction
        elif self.estimates.get(self.stage) is not None:
            here = max(self.estimates[self.stage] - spent, 0.0)
        else:
            return None
        later = [self.estimates.get(s) for s in STAGES[STAGES.index(self.stage) + 1:]]
        return None if any(v is None for v in later) else here + sum(later)

    def permille(self) -> int:
        left = self.seconds_left()
        if left is None:  # the teacher stage before it can say: its share of the stages
            value = int(1000 * self.fraction / len(STAGES))
        else:
            value = int(min(999, 1000 * self.seconds() / max(self.seconds() + left, 1e-9)))
        self.shown = max(self.shown, value)
        return self.shown


def passes(verdict: dict, margin: float) -> bool:
    """Whether the judge lets the student restore the job: unless its gap exceeds the margin by more than the
    judge's own standard error (a gap within the judge's noise of the margin does not send a job to per-unit
    fitting, which can take hours). Where a classical estimate is mixed in after the student, the mixed result's
    gap may pass instead."""
    def within(gaps: dict) -> bool:
        return gaps["judged_gap_db"] - gaps.get("judged_gap_se_db", 0.0) <= margin

    mix = verdict.get("mix") or {}
    return within(verdict) or bool(mix.get("used")) and "judged_gap_db" in mix and within(mix)


def stalled(rounds: list[dict]) -> bool:
    """Whether the last round's teachers left the student no closer to DIP on the judge crop (the same crop and
    hidden pixels each round, so the two gaps share most of their sampling error): more teachers will not help."""
    return len(rounds) >= 2 and rounds[-1]["judged_gap_db"] >= rounds[-2]["judged_gap_db"]


class _Teaching:
    """What an amortised run has learned so far: the candidate crops, the teacher's results, the student, the
    verdict of each round (one round: DIP on the new crops, the student trained on, the judge)."""

    def __init__(self, spec: JobSpec, options, normalisation, device, student_spec):
        from .core.student import StudentTraining, make_student

        self.spec, self.options, self.normalisation, self.device = spec, options, normalisation, device
        self.margin = float(spec.settings.amortise_margin)
        self.crops = candidate_crops(spec)
        if spec.name == "inpaint":
            self.crops = [self.crops[i] for i in crops_with_gaps(spec, self.crops)]
        self.features = crop_features(spec, self.crops, normalisation)
        self.limit = max(int(MAX_TEACHER_SHARE * len(self.crops)), 2)  # teacher crops, the judge's included
        self.first = FIRST_TEACHERS[spec.layout.spatial_dims]
        self.training = spread_choice(self.features, min(self.first, self.limit - 1))
        self.judge = typical_untaught(self.features, self.training, self.crops)
        self.results, self.entries, self.rounds, self.taught = {}, [], [], set()
        self.student = StudentTraining(make_student(*student_channels(spec, student_spec), student_spec, spec.seed),
                                       [], student_spec, spec.seed, device)

    def round(self, run, preview, clock, step_seconds: float):
        """One round, with its snapshots; the verdict is appended to ``rounds`` (nothing when stopped)."""
        new = [i for i in self.training + [self.judge] if i not in self.results]
        clock.enter("teacher")
        yield from self.teach(run, new, preview, clock)
        if run.stop_requested or self.network_unused:
            return
        for i in self.training:
            if i not in self.taught:
                self.student.add_pairs(self.pairs(i))
        self.taught.update(self.training)
        steps = self.student.spec.steps if not self.rounds else self.student.spec.steps // 2
        clock.enter("student", steps * step_seconds)
        yield from _train(run, self.student, steps, clock, preview)
        if run.stop_requested:
            return
        verdict = judge_student(self.student.net, self.results[self.judge], self.spec, self.device,
                                self.classical)
        self.rounds.append(dict(verdict, teacher_crops=len(self.training), student_steps=self.student.steps_done))

    def pairs(self, i: int) -> list:
        """The student's training pairs from teacher crop ``i``; for inpainting also the crop with 2 × 2 blocks of
        its measured pixels marked missing as the judge hides them, their measured values the target (DIP kept
        them as measured), so that small gaps are not new to the student where the judge scores it."""
        result = self.results[i]
        if self.spec.name != "inpaint":
            planes = student_input(self.spec, result["pieces"], self.normalisation)
            return training_pairs(planes, result["target"], self.student.spec.reach)
        measured, missing = measured_planes(self.spec, result["pieces"], self.normalisation)
        extra = hidden_blocks(missing[0], JUDGE_FRACTION, self.spec.seed + 37 + i)[None]
        return [(inpainting_input(measured, gaps), result["target"]) for gaps in (missing, missing | extra)]

    def teach(self, run, new: list[int], preview, clock):
        """DIP on the crops ``new`` (one run of the engine over them as a stack, the judge crop with its hidden
        pixels masked), with its snapshots; results[i] = {'target' (normalised), 'pieces', 'hidden',
        'normalisation', 'truth_result'}."""
        from .api import start_restoration

        spec, crops = self.spec, [self.crops[i] for i in new]
        pieces = [read_crop(spec, crop) for crop in crops]
        stack = np.stack([p["image"] for p in pieces])
        masks = np.zeros(stack.shape[:1 + spec.layout.spatial_dims], np.uint8)
        hidden = None
        for i, p in enumerate(pieces):
            missing = missing_planes(spec, p)[2][0].any(axis=0)
            masks[i] = missing
            if new[i] == self.judge:
                hidden = hidden_blocks(missing, JUDGE_FRACTION, spec.seed + 31)[None]
                masks[i] |= hidden[0]
        truth = np.stack([p["ground_truth"] for p in pieces]) if "ground_truth" in spec.sources else None
        teacher = start_restoration(stack, self._teacher_options(masks if masks.any() else None, truth))
        for snapshot in teacher:
            if run.stop_requested and not teacher.stop_requested:
                teacher.stop()
            done = snapshot.plane + (snapshot.iteration / max(snapshot.total, 1) if not snapshot.done else 0.0)
            clock.fraction = min(done / len(crops), 1.0) if not snapshot.done else 1.0
            for i, crop in enumerate(crops):
                preview.place(crop, snapshot.image[i])
            yield _progress(clock, snapshot.loss, preview.image, "teacher",
                            f"DIP on teacher crop {min(snapshot.plane + 1, len(crops))} of {len(crops)}",
                            snapshot.quality)
        result = teacher.result
        for i, (crop, index) in enumerate(zip(crops, new)):
            role = "judge" if index == self.judge else "teacher"
            unit = result.record.units[i]
            entry = dict(unit.as_dict(), crop=crop.as_dict(), role=role)
            entry.pop("unit", None)
            if (unit.quality or {}).get("mixed_with") is not None:  # the classical mix DIP chose there
                entry["mixed_with"] = unit.quality["mixed_with"]
            self.entries.append(entry)
            layout = data.PlaneLayout(result.image[i].shape, _channels_last(spec), spec.layout.spatial_dims)
            target = self.normalisation[0].forward_result(layout.to_planes(result.image[i])[0])
            self.results[index] = {"target": target, "pieces": pieces[i],
                                   "hidden": hidden if role == "judge" else None,
                                   "normalisation": self.normalisation, "truth_result": result.image[i]}

    def _teacher_options(self, mask, truth):
        """The engine's options for the teacher crops: per-unit fitting of the stack of crops, in the job's noise
        model as fitted on the whole data (the camera, the looks), the judge's hidden pixels in the mask."""
        spec, estimate = self.spec, self.normalisation[1]
        camera = {"gain": float(estimate["gain"]), "offset": float(estimate["effective_offset"])} \
            if spec.noise == "poisson-gaussian" else {}
        return dataclasses.replace(
            self.options, amortise=False, tile_size=None, out=None, mask=mask, ground_truth=truth,
            channel_axis=_channels_last(spec), noise=spec.noise, volumetric=spec.layout.spatial_dims == 3,
            gain=camera.get("gain"), offset=camera.get("offset"), read_noise=None, looks=estimate.get("looks"),
            speckle=spec.speckle["kind"],
            settings=dict(self.options.settings, warm_start=False))  # crops far apart: a warm start did not help

    @functools.cached_property
    def classical(self) -> student_mix.Classical | None:
        """The classical estimate to mix in after the student (student_mix.py), its noise measured on the judge
        crop (taught by then); None where there is none."""
        judge = self.results[self.judge]
        planes = measured_planes(self.spec, judge["pieces"], self.normalisation)[0]
        return student_mix.classical_for(self.spec, self.normalisation[1], planes, self.normalisation[0].span)

    @functools.cached_property
    def alone(self) -> student_mix.Classical | None:
        """The classical estimate that restores the job where DIP gives its network no weight (:attr:`network_unused`):
        the block matching mixed in after a denoising student, the biharmonic fill for inpainting; else None."""
        return student_mix.biharmonic() if self.spec.name == "inpaint" else self.classical

    def network_weights(self) -> list:
        """DIP's network weight in its mix with :data:`ALONE_METHODS`' estimate on each crop restored so far (None
        where it mixed in nothing, or another estimate)."""
        mixes = [e.get("mixed_with") or {} for e in self.entries]
        return [m.get("network_weight") if m.get("used") and m.get("method") == ALONE_METHODS.get(self.spec.name)
                else None for m in mixes]

    @property
    def network_unused(self) -> bool:
        """Whether, before any student, DIP gave its network at most :data:`NO_NETWORK_WEIGHT` on every crop it
        restored and the same classical estimate can restore the job."""
        weights = self.network_weights()
        return not self.rounds and bool(weights) and all(w is not None and w <= NO_NETWORK_WEIGHT for w in weights) \
            and self.alone is not None

    @property
    def accepted(self) -> bool:
        return bool(self.rounds) and passes(self.rounds[-1], self.margin)

    @property
    def stalled(self) -> bool:
        return stalled(self.rounds)

    def more_crops(self) -> list[int]:
        """The next round's new teacher crops: none when the student passed, when the last round did not bring it
        closer, or when they would be too many."""
        if self.accepted or self.stalled:
            return []
        judge = self.crops[self.judge]
        near_judge = tuple(i for i, c in enumerate(self.crops) if i != self.judge and c.overlaps(judge))
        more = spread_choice(self.features, self.first, self.training + [self.judge],
                             near_judge)[len(self.training) + 1:]
        return more if len(self.training) + len(more) + 1 <= self.limit else []

    def verdict_line(self, more: list[int]) -> str:
        gap, error = self.rounds[-1]["judged_gap_db"], self.rounds[-1]["judged_gap_se_db"]
        mix = self.rounds[-1].get("mix") or {}
        mixed = f", {mix['judged_gap_db']:+.2f} ± {mix['judged_gap_se_db']:.2f} dB with {mix['method']} mixed in" \
            if "judged_gap_db" in mix else ""
        then = "it restores every plane" if self.accepted else \
            f"{len(more)} more teacher crops" if more else \
            "more teachers did not bring it closer: per-unit fitting takes over" if self.stalled else \
            "per-unit fitting takes over"
        return (f"the student is {gap:+.2f} ± {error:.2f} dB from DIP on the judge crop{mixed} (margin "
                f"{self.margin} dB): {then}")

    def summary(self, why: str) -> dict:
        return {"used": True, "why": why, "margin_db": self.margin,
                "teacher_crops": [self.crops[i].as_dict() for i in self.training],
                "judge_crop": self.crops[self.judge].as_dict(), "candidates": len(self.crops),
                "rounds": self.rounds, "student": self.student.spec.as_dict(), "teacher_units": self.entries}


def _snapshots(run: RestorationRun, image, options, spec: JobSpec, device, decision: Decision):
    """Teacher → student → judge, in rounds, then application, with snapshots all along; falls back to per-unit
    fitting where the judge still finds the student more than the margin below DIP after the last round."""
    from .core.student import StudentSpec

    # an input enlarged in Y/X, or blurred, lacks the detail DIP adds: the student sees it at DIP's scale (axial
    # super-resolution went 0.1 dB lower with it, denoising 0.9; deconvolution 17 dB higher: docs/benchmarks.md
    # § Teach once, apply everywhere)
    enlarged = spec.task.enlarges == "yx" and spec.axis_factors[-1] > 1
    student_spec = StudentSpec(steps=int(spec.settings.student_steps), detail=enlarged or "psf" in spec.task.accepts)
    sample = measurement_sample(spec)
    spec = choose_noise(spec, *sample)
    normalisation = fit_intensities(spec, *sample)
    spec = with_speckle_looks(spec, normalisation[1])  # the looks found, in the record
    preview = _Preview(spec)
    teaching = _Teaching(spec, options, normalisation, device, student_spec)
    step_seconds, pass_seconds = _calibrate(spec, student_spec, device)
    clock = _Clock({"teacher": None, "student": student_spec.steps * step_seconds,
                    "apply": pass_seconds * spec.layout.planes})
    while True:
        yield from teaching.round(run, preview, clock, step_seconds)
        if run.stop_requested:
            summary = dict(teaching.summary(decision.why),
                           choice="stopped by user: the teacher's crops are restored, the rest keeps the input")
            yield _final(run, spec, preview.image, summary, clock, normalisation, "stopped by user")
            return
        if teaching.network_unused:
            yield from _classical_alone(run, spec, teaching, normalisation, preview, clock, decision)
            return
        more = teaching.more_crops()
        yield _progress(clock, float("nan"), preview.image, "judge", teaching.verdict_line(more), {})
        if not more:
            break
        teaching.training = teaching.training + more
    summary = teaching.summary(decision.why)
    gap, margin = teaching.rounds[-1]["judged_gap_db"], teaching.margin
    mix = teaching.rounds[-1].get("mix") or {}
    if not teaching.accepted:
        mixed = f", {mix['judged_gap_db']:.2f} dB with {mix['method']} mixed in" if "judged_gap_db" in mix else ""
        summary["choice"] = (f"per-unit fitting: the student stayed {gap:.2f} dB below DIP on the judge crop"
                             f"{mixed}, with {len(teaching.training)} teacher crops (margin {margin} dB)")
        yield from _fall_back(run, image, options, summary)
        return
    if gap > margin and "judged_gap_db" in mix and mix["judged_gap_db"] < gap:  # the mix let it pass
        gap, what = mix["judged_gap_db"], f"student with {mix['method']} mixed in"
    else:
        what = "student"
    summary["choice"] = f"{what}: {gap:+.2f} dB from DIP on the judge crop (margin {margin} dB" + \
        (", within the judge's standard error)" if gap > margin else ")")
    estimate, weight, summary["mixed_with"] = _classical_mix(teaching)
    clock.enter("apply", pass_seconds * spec.layout.planes)
    yield from _apply(run, teaching.student.net, spec, normalisation, device, preview, clock, (estimate, weight))
    reason = "stopped by user while the student restored the planes" if run.stop_requested else \
        "the student restored every plane"
    yield _final(run, spec, preview.image, summary, clock, normalisation, reason)


def _classical_alone(run, spec: JobSpec, teaching: _Teaching, normalisation, preview, clock, decision: Decision):
    """The job restored by the classical estimate alone, plane by plane: DIP gave its network no weight on the
    crops it restored (:attr:`_Teaching.network_unused`), so no student is trained and none judged."""
    from .executor import read_measurement

    classical = teaching.alone
    weights = teaching.network_weights()
    summary = dict(teaching.summary(decision.why), mixed_with={
        "used": True, "method": classical.name, "network_weight": 0.0, "teacher_network_weights": weights,
        "why": f"DIP gave its network a weight of at most {max(weights):.2f} in its mix on the {len(weights)} crops "
               f"it restored"})
    summary["choice"] = (f"{classical.name} alone: DIP gave its network a weight of at most {max(weights):.2f} on "
                         f"the {len(weights)} crops it restored, so a student would only imitate the estimate")
    clock.enter("apply")
    clock.estimates["apply"] = None  # not the student's pass: the estimate's time is known once a plane is done
    leads = spec.layout.leads
    for p, lead in enumerate(leads):
        if run.stop_requested:
            break
        planes, missing = measured_planes(spec, read_measurement(spec, lead), normalisation)
        preview.write_plane(lead, normalisation[0].inverse(classical.estimate(planes, missing)))
        clock.fraction = (p + 1) / len(leads)
        yield _progress(clock, float("nan"), preview.image, "apply",
                        f"{classical.name}: plane {p + 1} of {len(leads)}", {})
    reason = f"stopped by user while {classical.name} restored the planes" if run.stop_requested else \
        f"{classical.name} restored every plane"
    yield _final(run, spec, preview.image, summary, clock, normalisation, reason)


def _calibrate(spec: JobSpec, student_spec, device) -> tuple[float, float]:
    """Seconds of one training step and of one pass over a plane, timed on throwaway data, for the time left."""
    from .core.student import StudentTraining, apply_student, make_student

    seen, channels = student_channels(spec, student_spec)
    side = student_spec.crop
    pair = (np.zeros((seen, side, side), np.float32), np.zeros((channels, side, side), np.float32))
    trainer = StudentTraining(make_student(seen, channels, student_spec), [pair], student_spec, 0, device)
    trainer.step()
    start = time.perf_counter()
    trainer.step()
    step_seconds = time.perf_counter() - start
    probe = np.zeros((seen, 128, 128), np.float32)
    start = time.perf_counter()
    apply_student(trainer.net, probe, device=device)
    result_pixels = math.prod(spec.layout.spatial_shape) * math.prod(spec.axis_factors)
    return step_seconds, (time.perf_counter() - start) * result_pixels / 128 ** 2


def hidden_blocks(missing: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A random ``fraction`` of the (Y, X) plane (each plane of a (Z, Y, X) volume) in 2 × 2 blocks of measured
    pixels (True = hidden): neighbours hidden together let the judge measure the teacher's error without the noise
    variance (:func:`judge_student`)."""
    if missing.ndim == 3:
        return np.stack([hidden_blocks(plane, fraction, seed + 7919 * z) for z, plane in enumerate(missing)])
    height, width = missing.shape
    cells = np.random.default_rng(seed).random((-(-height // 2), -(-width // 2))) < fraction
    padded = np.pad(missing, ((0, height % 2), (0, width % 2)))
    cells &= ~padded.reshape(cells.shape[0], 2, cells.shape[1], 2).any(axis=(1, 3))  # a block with a missing pixel
    return np.repeat(np.repeat(cells, 2, axis=0), 2, axis=1)[:height, :width]


def neighbour_products(residual: np.ndarray, hidden: np.ndarray) -> tuple[float, float]:
    """Mean product (and its standard error) of ``residual`` (C, *spatial) at horizontally and vertically
    neighbouring hidden pixels (*spatial).

    At hidden pixels the residual y − t is the noise minus the estimate's error, and neither estimate saw that
    noise: noise at two pixels is independent, so the product's mean is the error's covariance at one pixel apart,
    about its variance (its mean squared error) for errors smoother than a pixel, and a little less otherwise.
    No noise variance enters, so none has to be estimated and subtracted."""
    products = []
    for axis in (-2, -1):
        a = [slice(None)] * residual.ndim
        b = [slice(None)] * residual.ndim
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        pair = hidden[tuple(a)[1:]] & hidden[tuple(b)[1:]]
        products.append((residual[tuple(a)] * residual[tuple(b)])[:, pair].ravel())
    values = np.concatenate(products)
    if not values.size:
        return float("nan"), float("inf")
    # a pixel takes part in about two pairs: half as many independent products as pairs
    return float(values.mean()), float(values.std() / math.sqrt(max(values.size / 2, 1)))


def _channels_last(spec: JobSpec) -> int | None:
    """The channel axis of a unit's piece as the engine reads it (channels last), or None."""
    return -1 if spec.layout.channel_axis is not None else None


def _train(run, training, steps: int, clock, preview):
    """``steps`` Adam steps of the student, a snapshot every twentieth of them."""
    every = max(steps // 20, 1)
    losses = []
    for step in range(steps):
        if run.stop_requested:
            return
        losses.append(training.step())
        clock.fraction = (step + 1) / steps
        if (step + 1) % every == 0 or step + 1 == steps:
            yield _progress(clock, float(np.mean(losses[-every:])), preview.image, "student",
                            f"student: step {step + 1} of {steps}", {})


def judge_student(net, judge: dict, spec: JobSpec, device, classical: student_mix.Classical | None = None) -> dict:
    """The student against DIP on the judge crop, at its hidden pixels (left out of the teacher's fit); with a
    ``classical`` estimate, also the student mixed with it (``verdict["mix"]``, :func:`judge_mix`).

    There y = x + n, and the teacher never saw n: E(y − t)² = MSE(t) + v. (For a task with a forward operator A,
    axial resolution, all of this holds for the measurements A·s and A·t that the two results predict: the judge
    measures the gap in what was measured, blind to what A removes.) The student sees the whole crop, so its
    output at a pixel leans on that pixel's own noise: E(y − s)² = MSE(s) + v − 2·v·∂s/∂y (Stein's lemma, as in
    SURE), with the derivative of its output by its own input measured by Monte-Carlo probes. So the difference of
    the squared errors plus 2·v·∂s/∂y measures MSE(s) − MSE(t): the noise variance only enters times the small
    derivative. The teacher's own error comes from neighbouring hidden pixels (:func:`neighbour_products`) and turns
    the difference into decibels; for Gaussian noise v is the teacher's squared error there minus that error.
    An inpainting student is told that the hidden pixels are missing, so it is as blind to them as DIP: no Stein
    term, and the hidden pixels measure how well each fills a gap.
    """
    spec_normalisation = judge["normalisation"]
    hidden = judge["hidden"]
    planes, missing = measured_planes(spec, judge["pieces"], spec_normalisation)
    teacher = as_measured(spec, judge["target"])
    at = np.broadcast_to(hidden, planes.shape)
    teacher_mse, standard_error = neighbour_products(planes - teacher, hidden[0])
    if spec.name == "inpaint":
        # the student is told that the hidden pixels are missing too: blind to them, as DIP was, its output there
        # does not lean on their noise, and Stein's term is zero
        blind_input = inpainting_input(planes, missing | hidden)
        result = kept_measured(spec, student_output(net, blind_input, device), blind_input)
        student, derivative, variance = result, np.zeros_like(planes), 0.0
    else:
        if spec.noise in ("gaussian", "speckle"):  # speckle: additive and zero-mean in the log units
            # the noise variance at the hidden pixels themselves: the teacher's squared error there minus its own
            # error; a wavelet estimate counts texture as noise, and its few per cent would dominate the derivative
            variance = max(float(((planes - teacher)[at] ** 2).mean()) - max(teacher_mse, 0.0), 1e-12)
        else:  # photon counts: a pixel's variance is its mean, c / photons at 1 in the normalised units
            variance = np.clip(teacher, 0.0, None) / float(spec_normalisation[1]["photons_at_1"])
        result = student_output(net, on_result_grid(spec, planes), device)
        student = as_measured(spec, result)
        # a step well within the student's linear pieces, however much it magnifies its input
        step = 1e-3 / max(getattr(net, "input_gain", 1.0), 1.0)
        derivative = self_derivative(lambda x: as_measured(spec, student_output(net, on_result_grid(spec, x), device)),
                                     planes, student, spec.seed, step=step)
    # where DIP is far better than the input its error is below what one crop can measure: then the judge takes
    # the largest error the crop allows (two standard errors), which understates the gap rather than sending a job
    # that the student does well to hours of per-unit fitting (docs/quality.md § The judge)
    crop = _JudgeCrop(planes, at, teacher, max(teacher_mse, 2.0 * standard_error, 1e-12),
                      standard_error if teacher_mse > 2.0 * standard_error else None, variance)
    verdict = dict(crop.gap(student, derivative), hidden_pixels=int(hidden.sum()),
                   teacher_estimated_psnr=round(10.0 * math.log10(1.0 / crop.teacher_mse), 2),
                   teacher_error_measured=crop.teacher_error is not None)
    if spec.name != "inpaint" and all(f == 1 for f in spec.axis_factors) and "psf" not in spec.task.accepts:
        # recorded beside the call, not yet used by it: the student blind to the hidden pixels (filled by their
        # neighbours' mean), judged as the mix is, with no noise model (on real frames Stein's term rests on a
        # fitted camera, docs/benchmarks.md); blind, the student is a little worse than the one delivered
        blind_input = neighbour_mean_fill(np.where(hidden, 0.0, planes), hidden)
        verdict["blind"] = crop.squared_gap((planes - student_output(net, blind_input, device)) ** 2
                                            - (planes - teacher) ** 2)
    if "ground_truth" in judge["pieces"]:  # for benchmarks: the true gap on the same crop
        psnr_student = _true_psnr(judge, spec, result)
        psnr_teacher = metric_pair(judge["truth_result"].astype(np.float32),
                                   judge["pieces"]["ground_truth"].astype(np.float32), None, ssim=False)["psnr"]
        if psnr_student is not None and psnr_teacher is not None:
            verdict.update(true_gap_db=round(psnr_teacher - psnr_student, 3), teacher_psnr=round(psnr_teacher, 2),
                           student_psnr=round(psnr_student, 2))
    if classical is not None:
        verdict["mix"] = judge_mix(lambda x: student_output(net, x, device), judge, spec, classical, crop, result,
                                   verdict)
    return verdict


@dataclass(frozen=True)
class _JudgeCrop:
    """The judge crop in the network's units: its planes, the hidden pixels (``at``, broadcast to the planes), DIP's
    result there, DIP's error (at least what the crop can measure), its standard error (None where DIP's error was
    below what the crop measures) and the noise variance at the hidden pixels."""

    planes: np.ndarray
    at: np.ndarray
    teacher: np.ndarray
    teacher_mse: float
    teacher_error: float | None
    variance: float | np.ndarray

    def gap(self, estimate: np.ndarray, derivative: np.ndarray) -> dict:
        """An estimate's gap to DIP in dB and its standard error; ``derivative``: of the estimate at each pixel by
        that pixel's own input (Stein's term)."""
        return self.squared_gap((self.planes - estimate) ** 2 - (self.planes - self.teacher) ** 2
                                + 2.0 * self.variance * derivative)

    def squared_gap(self, squared: np.ndarray) -> dict:
        """:meth:`in_db` of per-pixel squared-error differences to DIP, taken at the hidden pixels."""
        # hidden pixels come in 2 × 2 blocks whose terms share noise: count the blocks, not the pixels
        return self.in_db(float(squared[self.at].mean()),
                          float(squared[self.at].std() / math.sqrt(max(self.at.sum() / 4, 1))))

    def in_db(self, difference: float, difference_error: float) -> dict:
        """A squared-error difference to DIP (and its standard error) as a gap in dB and its standard error, which
        takes in the teacher's own error's where that was measured."""
        estimate_mse = max(self.teacher_mse + difference, 0.1 * self.teacher_mse)
        relative = [difference_error / estimate_mse, (difference / estimate_mse) * (
            self.teacher_error / self.teacher_mse if self.teacher_error is not None else 0.0)]
        return {"judged_gap_db": round(10.0 * math.log10(estimate_mse / self.teacher_mse), 3),
                "judged_gap_se_db": round(10.0 / math.log(10.0) * math.hypot(*relative), 3)}


def _true_psnr(judge: dict, spec: JobSpec, planes: np.ndarray) -> float | None:
    """PSNR against the judge crop's ground truth of a result on it in the network's units (for benchmarks)."""
    truth = judge["pieces"]["ground_truth"].astype(np.float32)
    image = judge["normalisation"][0].inverse(planes)
    as_truth = data.PlaneLayout(truth.shape, _channels_last(spec), spec.layout.spatial_dims)
    return metric_pair(as_truth.from_planes(image[None]), truth, None, ssim=False)["psnr"]


def judge_mix(student, judge: dict, spec: JobSpec, classical, crop: _JudgeCrop, result, verdict: dict) -> dict:
    """The student mixed with ``classical`` after it (student_mix.py) against DIP on the judge crop: the weight
    and the predicted gain from the hidden pixels, with both estimates blind to them, and where the mix is
    delivered its gap to DIP there: the blind mix's squared error at the hidden pixels less DIP's (DIP is blind to
    them too, and the noise cancels), over DIP's error. Blind, the mix is a little worse than the delivered one,
    which sees every pixel; judging the delivered mix by Stein's term instead (its own-pixel derivative, block
    matching's by probes) said +3.7 dB on the real W2S frames where the blind mix said +0.6 and the truth on other
    planes is at or below 0 (docs/benchmarks.md), so the blind one is kept. ``student``: planes → its output;
    ``result``: its output on the crop, for the true gap where there is a truth."""
    weighed = student_mix.mix_weight(student, classical, crop.planes, judge["hidden"], crop.teacher)
    w, gain = weighed.weight, weighed.predicted_gain_db
    mix = {"method": classical.name, "network_weight": round(w, 3),
           "predicted_gain_db": round(gain, 3) if np.isfinite(gain) else None,
           "used": bool(gain >= student_mix.MIN_GAIN_DB)}
    if mix["used"]:  # in dB as the student's gap is, the teacher's own error's uncertainty included
        mix.update(crop.in_db(weighed.excess_over_teacher, weighed.excess_standard_error))
    if "teacher_psnr" in verdict:  # for benchmarks: the delivered mix's true gap on the same crop
        psnr = _true_psnr(judge, spec, student_mix.mixed(result, classical.estimate, crop.planes, w))
        if psnr is not None:
            mix["true_gap_db"] = round(verdict["teacher_psnr"] - psnr, 3)
    return mix


def self_derivative(respond, planes: np.ndarray, output: np.ndarray, seed: int, probes: int = DERIVATIVE_PROBES,
                    step: float = 1e-3):
    """Per pixel, the derivative of ``respond(planes)`` (= ``output``), the student's prediction of each measured
    pixel, by that pixel (summed over channels), estimated
    Monte-Carlo style (as SURE's divergence): ±1 at every pixel, a small step, the response times the sign; the
    other pixels' signs average out over the probes and over the judge's pixels."""
    rng = np.random.default_rng(seed + 57)  # the student is piecewise linear: a small step measures its derivative
    total = np.zeros_like(planes)
    for _ in range(probes):
        sign = rng.choice(np.array([-1.0, 1.0], np.float32), size=planes.shape)
        total += sign * (respond(planes + step * sign) - output) / step
    return total / probes


def _classical_mix(teaching: _Teaching) -> tuple:
    """(the classical estimate to mix into the student's planes or None, the student's weight, the record's
    note), from the last round's judge (student_mix.py)."""
    classical, mix = teaching.classical, teaching.rounds[-1].get("mix")
    if classical is None or mix is None:
        return None, 1.0, {"used": False, "why": "block matching is mixed into denoising students of 2D data "
                                                 "(where bmnd is installed)"}
    note = dict(mix, weighed=f"at the judge crop's hidden pixels, the student and the {classical.name} blind to "
                             "them")
    if not mix["used"]:
        gain = mix["predicted_gain_db"]
        return None, 1.0, dict(note, why=f"the mix (student's weight {mix['network_weight']:.2f}) is predicted to "
                                         f"gain {gain:.2f} dB, under {student_mix.MIN_GAIN_DB} dB: not worth a "
                                         "whole-frame block matching")
    return classical.estimate, mix["network_weight"], note


def _apply(run, net, spec: JobSpec, normalisation, device, preview, clock, mix=(None, 1.0)):
    """The student over every plane, tile by tile, into the preview (which is the result); ``mix``: (a classical
    estimate, the student's weight) mixed in, or (None, 1)."""
    from .executor import read_measurement

    planes = spec.layout.leads
    for p, lead in enumerate(planes):
        if run.stop_requested:
            return
        planes_in = student_input(spec, read_measurement(spec, lead), normalisation)

        def on_tile(done, total, p=p):
            clock.fraction = (p + done / total) / len(planes)

        restored = kept_measured(spec, student_output(net, planes_in, device, on_tile), planes_in)
        if mix[0] is not None:
            restored = student_mix.mixed(restored, mix[0], planes_in, mix[1])
        preview.write_plane(lead, normalisation[0].inverse(restored))
        yield _progress(clock, float("nan"), preview.image, "apply",
                        f"student: plane {p + 1} of {len(planes)}" if len(planes) > 1 else "student: the frame", {})


def _fall_back(run, image, options, summary: dict):
    """Per-unit fitting of the whole job (the engine as without amortisation), its record saying why."""
    from .api import start_restoration

    inner = start_restoration(image, dataclasses.replace(options, amortise=False))
    inner.amortised = dict(summary, used=False)
    for snapshot in inner:
        if run.stop_requested:
            inner.stop()
        yield dataclasses.replace(snapshot, stage="per-unit fit")
    run.result = inner.result


def _progress(clock, loss, image, stage: str, what: str, quality: dict) -> Snapshot:
    return Snapshot(iteration=clock.permille(), total=1000, loss=loss, image=image.copy(), seconds=clock.seconds(),
                    quality=quality or {}, stage=stage, stage_detail=what, seconds_left=clock.seconds_left())


def _final(run, spec: JobSpec, image, summary: dict, clock, normalisation, stop_reason: str) -> Snapshot:
    from .unit_fit import normalisation_entry

    metrics = {}
    if "ground_truth" in spec.sources:
        truth = np.asarray(spec.sources["ground_truth"].array, np.float32)
        metrics = whole_metric_pair(image, truth, spec.layout)
    teacher_iterations = [int(e.get("iterations", 0)) for e in summary["teacher_units"]]
    record = RunRecord(
        task=spec.name, preset=spec.preset,
        parameters=dict(spec.parameters, normalisation=normalisation_entry(normalisation[0], spec),
                        noise_estimate=dict(normalisation[1], per_unit="see amortised.teacher_units")),
        iterations=int(sum(teacher_iterations)), iterations_per_unit=teacher_iterations,
        planes=spec.layout.planes, work_unit="teacher crop", units_restored=len(teacher_iterations),
        stop_reason=stop_reason, backtracks=0, seconds=round(clock.seconds(), 3), device=run.device_description,
        version=versions(), metrics=metrics,
        # the teacher crops' own choices are under amortised.teacher_units; the result is the student's
        quality={"automatic_stopping": spec.settings.auto_stop, "units": [],
                 "method": "the judge: the student against DIP on a crop it never saw (amortised.rounds)"
                 if summary["rounds"] else "no student: the classical estimate alone (amortised.choice)"},
        input=input_entry(spec), output=output_entry(spec), amortised=summary)
    run.result = Restoration(image, record)
    return Snapshot(iteration=1000, total=1000, loss=float("nan"), image=image, seconds=record.seconds,
                    metrics=metrics, done=True, stop_reason=stop_reason, record=record, stage="done",
                    stage_detail=summary["choice"], seconds_left=0.0)


class _Preview:
    """The whole result so far in the input's layout: the input (missing pixels as the mean), then the teacher's
    crops, then the student's planes."""

    def __init__(self, spec: JobSpec):
        from .executor import read_measurement
        from .job import fallback

        self.spec = spec
        self.image = np.zeros(spec.output_shape, np.float32)
        self.target = data.ArraySource.of(self.image, spec.layout.channel_axis, spec.layout.spatial_dims,
                                          spec.axis_factors[-2:])
        for lead in spec.layout.leads:
            self.target.write(fallback(spec, read_measurement(spec, lead)), lead)

    def place(self, crop: Crop, piece: np.ndarray):
        """A teacher crop's result (channels last, as the teacher's stack holds it)."""
        if crop.z is not None:  # the crop's planes of the volume's Y/X window
            whole = self.target.read(crop.lead, crop.y, crop.x)
            whole[slice(*result_z(self.spec, crop.z))] = piece
            piece = whole
        self.target.write(piece, crop.lead, crop.y, crop.x)

    def write_plane(self, lead: tuple, planes: np.ndarray):
        """A plane (C, H, W) or volume (C, Z, H, W) of the student's result."""
        piece = np.moveaxis(planes, 0, -1) if self.spec.layout.channel_axis is not None else planes[0]
        self.target.write(piece, lead)


def amortised_summary(record: RunRecord) -> str:
    """The amortised part of a run in one line, from a record ('' when the run was not amortised), e.g.
    'amortised: DIP on 3 teacher crops of 64 and a judge crop, a student of 1200 steps, judged gap +0.47 dB; student:
    +0.47 dB from DIP on the judge crop (margin 0.2 dB, within the judge's standard error)'."""
    summary = record.amortised or {}
    if not summary.get("rounds") and not summary.get("choice"):
        return ""
    rounds = summary.get("rounds") or []
    taught = len(summary.get("teacher_crops", []))
    text = f"amortised: DIP on {taught} teacher crops of {summary.get('candidates')} and a judge crop"
    if rounds:
        last = rounds[-1]
        text += f", a student of {last['student_steps']} steps, judged gap {last['judged_gap_db']:+.2f} dB"
        if "true_gap_db" in last:
            text += f" (true {last['true_gap_db']:+.2f})"
    mixed = summary.get("mixed_with") or {}
    if mixed.get("used") and rounds:  # without rounds the estimate stands alone: the choice says so
        gain = mixed.get("predicted_gain_db")
        text += f", mixed with {mixed['method']} (student's weight {mixed['network_weight']:.2f}" + \
            (f", predicted gain {gain:+.2f} dB)" if gain is not None else ")")
    return text + f"; {summary.get('choice', '')}"
