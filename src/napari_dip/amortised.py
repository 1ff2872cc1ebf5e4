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
import datetime
import math
import time
from dataclasses import dataclass

import numpy as np

from .core import data
from .errors import DIPInputError
from .executor import Restoration, RestorationRun, Snapshot, measurement_sample, read_unit
from .job import JobSpec, choose_noise, fit_intensities, missing_planes, whole_metric_pair

AMORTISE_WORDS = {"auto": "auto", "on": True, "off": False}  # the command line's and the widgets' words for them
# 'auto' amortises jobs of at least this many output pixels (all planes): the teacher and the student cost
# about as much as per-unit DIP on 0.6 megapixels on 2 cores, so below 1 megapixel there is little to gain
# (docs/benchmarks.md § Teach once, apply everywhere)
AUTO_MIN_PIXELS = 16 * 256 * 256
TEACHER_SIDE = 256  # side of a teacher crop (smaller planes: the whole plane)
FIRST_TEACHERS = 3  # crops the student learns from in the first round; each later round adds as many
MAX_TEACHER_SHARE = 0.5  # more teachers than this share of the data's crops: per-unit fitting instead
JUDGE_FRACTION = 0.2  # of the judge crop's measured pixels (2 × 2 blocks), left out of its teacher's fit to score both
APPLY_TILE = 512  # the student restores planes in tiles of this side (memory stays flat)
DERIVATIVE_PROBES = 16  # Monte-Carlo probes of the student's derivative on the judge crop (a pass each)
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
    """A teacher candidate: a Y/X window of one plane (``lead`` its index on the leading axes)."""

    plane: int
    lead: tuple
    y: tuple[int, int]
    x: tuple[int, int]

    @property
    def yx(self) -> tuple:
        """The (Y, X) ranges, as a work unit's (``executor.read_unit`` reads either)."""
        return self.y, self.x

    def as_dict(self) -> dict:
        return {"plane": self.plane, "y": list(self.y), "x": list(self.x)}


def check_amortise(value):
    """``value`` if it is 'auto', True or False, else a DIPInputError that lists them."""
    if isinstance(value, str) and value == "auto" or value is True or value is False:
        return value
    raise DIPInputError(f"amortise must be 'auto' (a student network restores large jobs), True or False (every "
                        f"unit fitted by DIP); got {value!r}")


def unsupported(spec: JobSpec, options) -> str | None:
    """Why this job cannot be amortised yet, or None."""
    if spec.name != "denoise":
        return f"amortised restoration is built for denoising so far, not {spec.name!r}"
    if spec.layout.spatial_dims != 2:
        return "amortised restoration is built for 2D planes so far, not volumes (volumetric=True)"
    if options.out is not None:
        return "amortised restoration keeps the result in memory: it does not write into out="
    return None


def decide(spec: JobSpec, options) -> Decision:
    """'auto': amortise supported jobs of at least :data:`AUTO_MIN_PIXELS` output pixels; True: amortise (an error
    where it cannot); False: per-unit fitting."""
    requested = check_amortise(options.amortise)
    if requested is False:
        return Decision(False, "amortise=False: every unit fitted by DIP")
    why_not = unsupported(spec, options)
    if why_not is not None:
        if requested is True:
            raise DIPInputError(f"{why_not}: pass amortise=False (or 'auto')")
        return Decision(False, why_not)
    height, width = spec.layout.spatial_shape[-2:]
    pixels = spec.layout.planes * height * width
    if requested is True:
        return Decision(True, "amortise=True")
    if pixels < AUTO_MIN_PIXELS:
        return Decision(False, f"{pixels:,} pixels: small enough for DIP on every unit (a student pays from "
                               f"{AUTO_MIN_PIXELS:,})")
    return Decision(True, f"{pixels:,} pixels: DIP teaches a few crops, a student restores the rest")


# ---------------------------------------------------------------------------------------------
# which crops teach


def candidate_crops(spec: JobSpec, side: int = TEACHER_SIDE) -> list[Crop]:
    """Crops of ``side`` (or the whole plane where smaller) tiling every plane, evenly spread, the last at the
    border."""
    height, width = spec.layout.spatial_shape[-2:]
    sy, sx = min(side, height), min(side, width)
    ys = np.linspace(0, height - sy, math.ceil(height / sy)).round().astype(int)
    xs = np.linspace(0, width - sx, math.ceil(width / sx)).round().astype(int)
    return [Crop(p, lead, (int(y), int(y) + sy), (int(x), int(x) + sx))
            for p, lead in enumerate(spec.layout.leads) for y in ys for x in xs]


def crop_features(spec: JobSpec, crops: list[Crop], normalisation) -> np.ndarray:
    """Per crop: its mean, spread and edge strength (on 2×2 means, so that noise counts less), and its place
    (plane, Y, X as fractions), each scaled to unit spread over the crops; the place weighs half."""
    height, width = spec.layout.spatial_shape[-2:]
    rows = []
    for crop in crops:
        values = student_input(spec, read_unit(spec, crop), normalisation)[0].mean(axis=0)
        h, w = values.shape[0] // 2 * 2, values.shape[1] // 2 * 2
        coarse = values[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        edges = np.abs(np.diff(coarse, axis=0)).mean() + np.abs(np.diff(coarse, axis=1)).mean()
        place = (crop.plane / max(spec.layout.planes - 1, 1), (crop.y[0] + crop.y[1]) / 2 / height,
                 (crop.x[0] + crop.x[1]) / 2 / width)
        rows.append([values.mean(), values.std(), edges, *place])
    features = np.asarray(rows, np.float64)
    spread = features.std(axis=0)
    features = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    features[:, 3:] *= 0.5
    return features


def spread_choice(features: np.ndarray, count: int, chosen: list[int] | None = None) -> list[int]:
    """``count`` more crops by farthest-point sampling: each the crop farthest from those chosen (in content and
    place), the first the most typical one (nearest the mean)."""
    chosen = list(chosen or [])
    distance = np.full(len(features), np.inf)
    for i in chosen:
        distance = np.minimum(distance, np.linalg.norm(features - features[i], axis=1))
    while len(chosen) < len(features) and count > 0:
        i = int(np.argmin(np.linalg.norm(features, axis=1))) if not chosen else int(np.argmax(distance))
        chosen.append(i)
        distance = np.minimum(distance, np.linalg.norm(features - features[i], axis=1))
        distance[chosen] = -1.0
        count -= 1
    return chosen


def typical_untaught(features: np.ndarray, taught: list[int]) -> int:
    """The judge: of the crops not taught, the one whose distance to its nearest taught crop is the median of
    theirs, so that it is as new to the student as the typical crop the student restores untaught (the farthest
    would overstate the loss, the nearest understate it)."""
    rest = [i for i in range(len(features)) if i not in taught]
    novelty = [min(np.linalg.norm(features[i] - features[j]) for j in taught) for i in rest]
    return rest[int(np.argsort(novelty)[len(rest) // 2])]


# ---------------------------------------------------------------------------------------------
# the student's input: the degraded pixels in the job's one intensity mapping


def student_input(spec: JobSpec, pieces: dict, normalisation):
    """(planes (C, H, W) normalised, missing pixels (1, H, W)) of a unit; missing pixels filled by their
    neighbours' mean."""
    from .core.reference import neighbour_mean_fill

    _, planes, missing = missing_planes(spec, pieces)
    planes = normalisation[0].forward(planes[0])
    if spec.noise != "gaussian":
        np.clip(planes, 0.0, None, out=planes)
    missing = missing[0].any(axis=0, keepdims=True)
    if missing.any():
        planes = neighbour_mean_fill(np.where(missing, 0.0, planes), missing)
    return planes.astype(np.float32), missing


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
    fitting, which can take hours)."""
    return verdict["judged_gap_db"] - verdict.get("judged_gap_se_db", 0.0) <= margin


class _Teaching:
    """What an amortised run has learned so far: the candidate crops, the teacher's results, the student, the
    verdict of each round (one round: DIP on the new crops, the student trained on, the judge)."""

    def __init__(self, spec: JobSpec, options, normalisation, device, student_spec):
        from .core.student import StudentTraining, make_student

        self.spec, self.options, self.normalisation, self.device = spec, options, normalisation, device
        self.margin = float(spec.settings.amortise_margin)
        self.crops = candidate_crops(spec)
        self.features = crop_features(spec, self.crops, normalisation)
        self.limit = max(int(MAX_TEACHER_SHARE * len(self.crops)), 2)  # teacher crops, the judge's included
        self.training = spread_choice(self.features, min(FIRST_TEACHERS, self.limit - 1))
        self.judge = typical_untaught(self.features, self.training)
        self.results, self.entries, self.rounds, self.taught = {}, [], [], set()
        channels = spec.layout.channels
        self.student = StudentTraining(make_student(channels, channels, student_spec, spec.seed), [], student_spec,
                                       spec.seed, device)

    def round(self, run, preview, clock, step_seconds: float):
        """One round, with its snapshots; the verdict is appended to ``rounds`` (nothing when stopped)."""
        new = [i for i in self.training + [self.judge] if i not in self.results]
        clock.enter("teacher")
        yield from _teach(run, self.spec, self.options, [self.crops[i] for i in new],
                          new.index(self.judge) if self.judge in new else None, self.normalisation, self.results,
                          self.entries, new, preview, clock)
        if run.stop_requested:
            return
        self.student.add_pairs([(student_input(self.spec, self.results[i]["pieces"], self.normalisation)[0],
                                 self.results[i]["target"]) for i in self.training if i not in self.taught])
        self.taught.update(self.training)
        steps = self.student.spec.steps if not self.rounds else self.student.spec.steps // 2
        clock.enter("student", steps * step_seconds)
        yield from _train(run, self.student, steps, clock, preview)
        if run.stop_requested:
            return
        verdict = judge_student(self.student.net, self.results[self.judge], self.spec, self.device)
        self.rounds.append(dict(verdict, teacher_crops=len(self.training), student_steps=self.student.steps_done))

    @property
    def accepted(self) -> bool:
        return bool(self.rounds) and passes(self.rounds[-1], self.margin)

    def more_crops(self) -> list[int]:
        """The next round's new teacher crops: none when the student passed, or when they would be too many."""
        if self.accepted:
            return []
        more = spread_choice(self.features, FIRST_TEACHERS, self.training + [self.judge])[len(self.training) + 1:]
        return more if len(self.training) + len(more) + 1 <= self.limit else []

    def verdict_line(self, more: list[int]) -> str:
        gap, error = self.rounds[-1]["judged_gap_db"], self.rounds[-1]["judged_gap_se_db"]
        then = "it restores every plane" if self.accepted else \
            f"{len(more)} more teacher crops" if more else "per-unit fitting takes over"
        return (f"the student is {gap:+.2f} ± {error:.2f} dB from DIP on the judge crop (margin {self.margin} dB): "
                f"{then}")

    def summary(self, why: str) -> dict:
        return {"used": True, "why": why, "margin_db": self.margin,
                "teacher_crops": [self.crops[i].as_dict() for i in self.training],
                "judge_crop": self.crops[self.judge].as_dict(), "candidates": len(self.crops),
                "rounds": self.rounds, "student": self.student.spec.as_dict(), "teacher_units": self.entries}


def _snapshots(run: RestorationRun, image, options, spec: JobSpec, device, decision: Decision):
    """Teacher → student → judge, in rounds, then application, with snapshots all along; falls back to per-unit
    fitting where the judge still finds the student more than the margin below DIP after the last round."""
    from .core.student import StudentSpec

    student_spec = StudentSpec(steps=int(spec.settings.student_steps))
    sample = measurement_sample(spec)
    spec = choose_noise(spec, *sample)
    normalisation = fit_intensities(spec, *sample)
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
        more = teaching.more_crops()
        yield _progress(clock, float("nan"), preview.image, "judge", teaching.verdict_line(more), {})
        if not more:
            break
        teaching.training = teaching.training + more
    summary = teaching.summary(decision.why)
    gap, margin = teaching.rounds[-1]["judged_gap_db"], teaching.margin
    if not teaching.accepted:
        summary["choice"] = (f"per-unit fitting: the student stayed {gap:.2f} dB below DIP on the judge crop with "
                             f"{len(teaching.training)} teacher crops (margin {margin} dB)")
        yield from _fall_back(run, image, options, summary)
        return
    summary["choice"] = f"student: {gap:+.2f} dB from DIP on the judge crop (margin {margin} dB" + \
        (", within the judge's standard error)" if gap > margin else ")")
    clock.enter("apply", pass_seconds * spec.layout.planes)
    yield from _apply(run, teaching.student.net, spec, normalisation, device, preview, clock)
    reason = "stopped by user while the student restored the planes" if run.stop_requested else \
        "the student restored every plane"
    yield _final(run, spec, preview.image, summary, clock, normalisation, reason)


def _calibrate(spec: JobSpec, student_spec, device) -> tuple[float, float]:
    """Seconds of one training step and of one pass over a plane, timed on throwaway data, for the time left."""
    from .core.student import StudentTraining, apply_student, make_student

    channels = spec.layout.channels
    side = student_spec.crop
    pair = (np.zeros((channels, side, side), np.float32), np.zeros((channels, side, side), np.float32))
    trainer = StudentTraining(make_student(channels, channels, student_spec), [pair], student_spec, 0, device)
    trainer.step()
    start = time.perf_counter()
    trainer.step()
    step_seconds = time.perf_counter() - start
    probe = np.zeros((channels, 128, 128), np.float32)
    start = time.perf_counter()
    apply_student(trainer.net, probe, device=device)
    height, width = spec.layout.spatial_shape[-2:]
    return step_seconds, (time.perf_counter() - start) * height * width / 128 ** 2


def _teach(run, spec, options, crops, judge_index, normalisation, results, entries, indices, preview, clock):
    """DIP on ``crops`` (one run of the engine over them as a stack, the judge crop with its hidden pixels
    masked); results[index] = {'target' (normalised), 'pieces', 'hidden', 'normalisation', 'truth_result'}."""
    from .api import start_restoration

    pieces = [read_unit(spec, crop) for crop in crops]
    stack = np.stack([p["image"] for p in pieces])
    height, width = stack.shape[1:3]
    masks = np.zeros((len(crops), height, width), np.uint8)
    hidden = None
    for i, p in enumerate(pieces):
        missing = missing_planes(spec, p)[2][0].any(axis=0)
        masks[i] = missing
        if i == judge_index:
            hidden = hidden_blocks(missing, JUDGE_FRACTION, spec.seed + 31)[None]
            masks[i] |= hidden[0]
    truth = np.stack([p["ground_truth"] for p in pieces]) if "ground_truth" in spec.sources else None
    camera = {}
    if spec.noise == "poisson-gaussian":
        estimate = normalisation[1]
        camera = {"gain": float(estimate["gain"]), "offset": float(estimate["effective_offset"])}
    teacher_options = dataclasses.replace(
        options, amortise=False, tile_size=None, out=None, mask=masks if masks.any() else None, ground_truth=truth,
        channel_axis=_channels_last(spec), noise=spec.noise, volumetric=False,
        gain=camera.get("gain"), offset=camera.get("offset"), read_noise=None,
        settings=dict(options.settings, warm_start=False))  # crops far apart: a warm start did not help
    teacher = start_restoration(stack, teacher_options)
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
    for i, (crop, index) in enumerate(zip(crops, indices)):
        entry = dict(result.record["units"][i], crop=crop.as_dict(), role="judge" if i == judge_index else "teacher")
        entry.pop("unit", None)
        entries.append(entry)
        target = normalisation[0].forward(data.PlaneLayout(result.image[i].shape, _channels_last(spec),
                                                           2).to_planes(result.image[i])[0])
        results[index] = {"target": target, "pieces": pieces[i], "hidden": hidden if i == judge_index else None,
                          "normalisation": normalisation, "truth_result": result.image[i]}


def hidden_blocks(missing: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A random ``fraction`` of the (Y, X) plane in 2 × 2 blocks of measured pixels (True = hidden): neighbours
    hidden together let the judge measure the teacher's error without the noise variance (:func:`judge_student`)."""
    height, width = missing.shape
    cells = np.random.default_rng(seed).random((-(-height // 2), -(-width // 2))) < fraction
    padded = np.pad(missing, ((0, height % 2), (0, width % 2)))
    cells &= ~padded.reshape(cells.shape[0], 2, cells.shape[1], 2).any(axis=(1, 3))  # a block with a missing pixel
    return np.repeat(np.repeat(cells, 2, axis=0), 2, axis=1)[:height, :width]


def neighbour_products(residual: np.ndarray, hidden: np.ndarray) -> tuple[float, float]:
    """Mean product (and its standard error) of ``residual`` (C, H, W) at horizontally and vertically neighbouring
    hidden pixels (H, W).

    At hidden pixels the residual y − t is the noise minus the estimate's error, and neither estimate saw that
    noise: noise at two pixels is independent, so the product's mean is the error's covariance at one pixel apart,
    about its variance (its mean squared error) for errors smoother than a pixel, and a little less otherwise.
    No noise variance enters, so none has to be estimated and subtracted."""
    products = []
    for axis in (1, 2):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
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


def judge_student(net, judge: dict, spec: JobSpec, device) -> dict:
    """The student against DIP on the judge crop, at its hidden pixels (left out of the teacher's fit).

    There y = x + n, and the teacher never saw n: E(y − t)² = MSE(t) + v. The student sees the whole crop, so its
    output at a pixel leans on that pixel's own noise: E(y − s)² = MSE(s) + v − 2·v·∂s/∂y (Stein's lemma, as in
    SURE), with the derivative of its output by its own input measured by Monte-Carlo probes. So the difference of
    the squared errors plus 2·v·∂s/∂y measures MSE(s) − MSE(t): the noise variance only enters times the small
    derivative. The teacher's own error comes from neighbouring hidden pixels (:func:`neighbour_products`) and turns
    the difference into decibels; for Gaussian noise v is the teacher's squared error there minus that error.
    """
    from .core.student import apply_student

    spec_normalisation = judge["normalisation"]
    hidden = judge["hidden"]
    planes, missing = student_input(spec, judge["pieces"], spec_normalisation)
    teacher = judge["target"]
    at = np.broadcast_to(hidden, planes.shape)
    teacher_mse, standard_error = neighbour_products(planes - teacher, hidden[0])
    if spec.noise == "gaussian":
        # the noise variance at the hidden pixels themselves: the teacher's squared error there minus its own
        # error; a wavelet estimate counts texture as noise, and its few per cent would dominate the derivative term
        variance = max(float(((planes - teacher)[at] ** 2).mean()) - max(teacher_mse, 0.0), 1e-12)
    else:  # photon counts: a pixel's variance is its mean, c / photons at 1 in the normalised units
        variance = np.clip(teacher, 0.0, None) / float(spec_normalisation[1]["photons_at_1"])
    student = apply_student(net, planes, APPLY_TILE, device=device)
    derivative = self_derivative(net, planes, student, spec.seed, device)
    squared = (planes - student) ** 2 - (planes - teacher) ** 2 + 2.0 * variance * derivative
    difference = float(squared[at].mean())
    # hidden pixels come in 2 × 2 blocks whose terms share noise: count the blocks, not the pixels
    difference_error = float(squared[at].std() / math.sqrt(max(at.sum() / 4, 1)))
    # where DIP is far better than the input its error is below what one crop can measure: then the judge takes
    # the largest error the crop allows (two standard errors), which understates the gap rather than sending a job
    # that the student does well to hours of per-unit fitting (docs/quality.md § The judge)
    measured = teacher_mse > 2.0 * standard_error
    teacher_mse = max(teacher_mse, 2.0 * standard_error, 1e-12)
    student_mse = max(teacher_mse + difference, 0.1 * teacher_mse)
    gap = 10.0 * math.log10(student_mse / teacher_mse)
    # its standard error, from the difference's and (where measured) the teacher's error's
    relative = [difference_error / student_mse,
                (difference / student_mse) * (standard_error / teacher_mse if measured else 0.0)]
    verdict = {"judged_gap_db": round(gap, 3),
               "judged_gap_se_db": round(10.0 / math.log(10.0) * math.hypot(*relative), 3),
               "hidden_pixels": int(hidden.sum()),
               "teacher_estimated_psnr": round(10.0 * math.log10(1.0 / teacher_mse), 2),
               "teacher_error_measured": bool(measured)}
    if "ground_truth" in judge["pieces"]:  # for benchmarks: the true gap on the same crop
        truth = judge["pieces"]["ground_truth"].astype(np.float32)
        unmasked = spec_normalisation[0].inverse(student)
        as_truth = data.PlaneLayout(truth.shape, _channels_last(spec), 2)
        student_image = as_truth.from_planes(unmasked[None])
        from .job import metric_pair

        psnr_student = metric_pair(student_image, truth, None, ssim=False)["psnr"]
        psnr_teacher = metric_pair(judge["truth_result"].astype(np.float32), truth, None, ssim=False)["psnr"]
        if psnr_student is not None and psnr_teacher is not None:
            verdict.update(true_gap_db=round(psnr_teacher - psnr_student, 3), teacher_psnr=round(psnr_teacher, 2),
                           student_psnr=round(psnr_student, 2))
    return verdict


def self_derivative(net, planes: np.ndarray, output: np.ndarray, seed: int, device, probes: int = DERIVATIVE_PROBES):
    """Per pixel, the derivative of the student's output by its own input (summed over channels), estimated
    Monte-Carlo style (as SURE's divergence): ±1 at every pixel, a small step, the response times the sign; the
    other pixels' signs average out over the probes and over the judge's pixels."""
    from .core.student import apply_student

    rng = np.random.default_rng(seed + 57)
    step = 1e-3  # the student is piecewise linear: a small step measures its derivative
    total = np.zeros_like(planes)
    for _ in range(probes):
        sign = rng.choice(np.array([-1.0, 1.0], np.float32), size=planes.shape)
        total += sign * (apply_student(net, planes + step * sign, APPLY_TILE, device=device) - output) / step
    return total / probes


def _apply(run, net, spec: JobSpec, normalisation, device, preview, clock):
    """The student over every plane, tile by tile, into the preview (which is the result)."""
    from .core.student import apply_student
    from .executor import read_measurement

    planes = spec.layout.leads
    for p, lead in enumerate(planes):
        if run.stop_requested:
            return
        planes_in, _ = student_input(spec, read_measurement(spec, lead), normalisation)

        def on_tile(done, total, p=p):
            clock.fraction = (p + done / total) / len(planes)

        restored = apply_student(net, planes_in, APPLY_TILE, device=device, on_tile=on_tile)
        preview.write_plane(lead, normalisation[0].inverse(restored))
        yield _progress(clock, float("nan"), preview.image, "apply",
                        f"student: plane {p + 1} of {len(planes)}" if len(planes) > 1 else "student: the frame", {})


def _fall_back(run, image, options, summary: dict):
    """Per-unit fitting of the whole job (the engine as without amortisation), its record saying why."""
    from .api import start_restoration

    inner = start_restoration(image, dataclasses.replace(options, amortise=False))
    inner.record_extra["amortised"] = dict(summary, used=False)
    for snapshot in inner:
        if run.stop_requested:
            inner.stop()
        yield dataclasses.replace(snapshot, stage="per-unit fit")
    run.result = inner.result


def _progress(clock, loss, image, stage: str, what: str, quality: dict) -> Snapshot:
    return Snapshot(clock.permille(), 1000, loss, image.copy(), clock.seconds(), quality=quality or {},
                    stage=stage, stage_detail=what, seconds_left=clock.seconds_left())


def _final(run, spec: JobSpec, image, summary: dict, clock, normalisation, stop_reason: str) -> Snapshot:
    import torch

    from . import __version__
    from .executor import _normalisation_entry

    metrics = {}
    if "ground_truth" in spec.sources:
        truth = np.asarray(spec.sources["ground_truth"].array, np.float32)
        metrics = whole_metric_pair(image, truth, spec.layout)
    teacher_iterations = [int(e.get("iterations", 0)) for e in summary["teacher_units"]]
    record = {
        "task": spec.name, "preset": spec.preset,
        "parameters": dict(spec.parameters, normalisation=_normalisation_entry(normalisation[0], spec),
                           noise_estimate=dict(normalisation[1], per_unit="see amortised.teacher_units")),
        "iterations": int(sum(teacher_iterations)), "iterations_per_unit": teacher_iterations,
        "planes": spec.layout.planes, "work_unit": "teacher crop", "units_restored": len(teacher_iterations),
        "stop_reason": stop_reason, "backtracks": 0, "seconds": round(clock.seconds(), 3),
        "device": run.device_description,
        "version": {"napari_dip": __version__, "torch": torch.__version__, "numpy": np.__version__},
        "metrics": metrics,
        # the teacher crops' own choices are under amortised.teacher_units; the result is the student's
        "quality": {"automatic_stopping": spec.settings.auto_stop, "units": [],
                    "method": "the judge: the student against DIP on a crop it never saw (amortised.rounds)"},
        "input": {"shape": list(spec.layout.shape), "dtype": str(np.dtype(spec.sources["image"].array.dtype))},
        "output": {"shape": list(spec.output_shape), "dtype": "float32"},
        "units": [], "amortised": summary,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    run.result = Restoration(image, record)
    return Snapshot(1000, 1000, float("nan"), image, record["seconds"], 0, 1, metrics, 0, True, stop_reason,
                    record, stage="done", stage_detail=summary["choice"], seconds_left=0.0)


class _Preview:
    """The whole result so far in the input's layout: the input (missing pixels as the mean), then the teacher's
    crops, then the student's planes."""

    def __init__(self, spec: JobSpec):
        from .executor import read_measurement
        from .job import fallback

        self.spec = spec
        self.image = np.zeros(spec.output_shape, np.float32)
        self.target = data.ArraySource.of(self.image, spec.layout.channel_axis, 2)
        for lead in spec.layout.leads:
            self.target.write(fallback(spec, read_measurement(spec, lead)), lead)

    def place(self, crop: Crop, piece: np.ndarray):
        """A teacher crop's result (channels last, as the teacher's stack holds it)."""
        self.target.write(piece, crop.lead, crop.y, crop.x)

    def write_plane(self, lead: tuple, planes: np.ndarray):
        """A plane (C, H, W) of the student's result."""
        piece = np.moveaxis(planes, 0, -1) if self.spec.layout.channel_axis is not None else planes[0]
        self.target.write(piece, lead)


def amortised_summary(record: dict) -> str:
    """The amortised part of a run in one line, from a record ('' when the run was not amortised), e.g.
    'amortised: DIP on 3 teacher crops of 64 and a judge crop, a student of 1200 steps, judged gap +0.47 dB; student:
    +0.47 dB from DIP on the judge crop (margin 0.2 dB, within the judge's standard error)'."""
    summary = record.get("amortised") or {}
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
    return text + f"; {summary.get('choice', '')}"
