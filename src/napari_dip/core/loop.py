"""The DIP optimisation as a generator of loop states.

``fit`` runs Adam on the data term ``E(A(f(z + jitter)); x0)`` and yields a :class:`LoopState` every
``snapshot_every`` iterations and once more at the end. It is a short loop over parts with one job each:
:class:`NetworkFit` (the network, its input z and its optimiser), :class:`Measurement` (the data term),
:class:`Schedule` (coarse-to-fine stages, learning rate), :class:`Backtracking`, :class:`OutputAverage` (the
exponential moving average of outputs), :class:`HeldOutScore` (the ground-truth-free estimate, mixed with a
classical estimate if there is one), a :class:`StoppingRule` (held-out automatic stop, ES-WMV, or none) and the
:class:`KeptIterate`. The held-out score (core/heldout.py), the classical mix (core/mixing.py), the stopping
rules (core/stopping.py) and the device plumbing (core/acceleration.py) are modules of their own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .acceleration import adam, autocast, maybe_compile, sync_interval, uses_channels_last
from .heldout import HeldOutScore
from .inputs import input_channels, make_input
from .networks import build_network
from .noise import NoiseModel, get_noise_model, masked_mean
from .operators import IdentityOperator, Operator
from .presets import Settings
from .stopping import HeldOutStop, StoppingRule, VarianceStop


@dataclass
class Problem:
    """One restoration problem in normalised units, channels first, with a batch axis of 1."""

    target: torch.Tensor  # measurement x0, (1, C, *spatial of the measurement)
    out_channels: int
    out_spatial: tuple  # network output size (padded)
    operator: Operator = field(default_factory=IdentityOperator)
    known: torch.Tensor | None = None  # 1 where x0 was measured, broadcastable to target
    noise: str | NoiseModel = "gaussian"  # a model from core/noise.py, or its name: gaussian | poisson
    guide: torch.Tensor | None = None  # network input for guided restoration, (1, Cg, *out_spatial)
    # automatic stopping: 1 at the measured pixels left out of the data term, (1, 1, *spatial of the measurement)
    heldout: torch.Tensor | None = None
    # variance of the measurement's noise in normalised units (a number, or per pixel like target):
    # subtracted from the held-out squared error to estimate the result's own error
    noise_variance: torch.Tensor | float | None = None
    # a classical estimate to mix into the result (core/fill.py), on the output grid like the network's output:
    # ``reference`` made from every measured pixel, ``reference_scored`` from those the fit sees (the mixing
    # weight is chosen at the held-out pixels, so the estimate judged there must not have seen them either)
    reference: torch.Tensor | None = None
    reference_scored: torch.Tensor | None = None

    @property
    def dims(self) -> int:
        return len(self.out_spatial)


@dataclass
class FittedState:
    """A finished fit's network weights and Adam moments (CPU copies; at the kept iterate when the run kept one for
    warm starts) and its place in the coarse-to-fine plan: where a neighbouring unit of the same job starts
    instead of from scratch (a warm start; docs/benchmarks.md measures it against cold starts)."""

    weights: dict
    optimiser: dict
    position: int = 0  # where in the coarse-to-fine plan they are from (iterations since the plan began)

    @classmethod
    def of(cls, net, optimiser, position: int = 0, unit: int = 0, units: int = 1) -> FittedState:
        """The state of unit ``unit`` of ``units`` fitted together (as one unit's network would hold it)."""
        return cls(_cpu_copy(net.state_dict(), unit, units), _cpu_copy(optimiser.state_dict(), unit, units),
                   position)


def unit_part(tensor: torch.Tensor, unit: int, units: int) -> torch.Tensor:
    """Unit ``unit``'s part (a view) of a tensor of a network that fits ``units`` units side by side: every such
    tensor (grouped convolutions, BatchNorm, Adam's moments) holds the units one after the other along its first
    axis; a 0-d tensor (Adam's step count) is shared."""
    if units == 1 or tensor.dim() == 0:
        return tensor
    size = tensor.shape[0] // units
    return tensor[unit * size:(unit + 1) * size]


def _cpu_copy(value, unit: int = 0, units: int = 1):
    """A copy of nested dicts and lists of tensors, the tensors on the CPU (unit ``unit``'s part of them)."""
    if isinstance(value, torch.Tensor):
        return unit_part(value.detach(), unit, units).to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v, unit, units) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v, unit, units) for v in value)
    return value


@dataclass
class LoopState:
    """What the loop reports; tensors are detached, on the run's device, in normalised units."""

    iteration: int
    total: int
    loss: float
    output: torch.Tensor  # f(z) at this iteration
    estimate: torch.Tensor  # the result if the run stopped now (EMA and early stopping applied)
    seconds: float
    backtracks: int = 0
    best_iteration: int | None = None  # early stopping: the chosen iteration so far (held-out rule or ES-WMV)
    # automatic stopping: estimated mean squared error (normalised units, measurement space) of the
    # current result and of the chosen one; None without held-out pixels or a noise variance
    estimated_mse: float | None = None
    best_estimated_mse: float | None = None
    heldout_error: float | None = None  # raw held-out squared error of the current result
    current: torch.Tensor | None = None  # the iterate the estimate judges (EMA of outputs, or the output)
    # with a reference: the network's weight w in the result reference + w·(network − reference), now and as chosen
    mix_weight: float | None = None
    best_mix_weight: float | None = None
    stop_reason: str | None = None  # set on the final state only
    done: bool = False
    fitted: FittedState | None = None  # final state only: to warm-start a neighbouring unit
    lowest_error_iteration: int | None = None  # final state, held-out rule: where the held-out error was lowest


def data_term(prediction, target, known, noise: str | NoiseModel):
    """Mean data fidelity over the measured pixels under the noise model ``noise`` (a model or its name)."""
    return get_noise_model(noise).data_term(prediction, target, known)


def learning_rate(settings: Settings, iteration: int, total: int) -> float:
    """The learning rate at ``iteration`` (1-based) of ``total`` under ``settings.lr_schedule``."""
    schedule = settings.lr_schedule
    if schedule == "constant":
        return settings.lr
    if schedule == "cosine-tail":
        start = total * (1.0 - settings.lr_decay_fraction)
        if iteration <= start or total <= start:
            return settings.lr
        progress = min(1.0, (iteration - start) / (total - start))
        final = settings.lr * settings.lr_final
        return final + (settings.lr - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_schedule {schedule!r}; use 'constant' or 'cosine-tail'")


def coarse_stages(settings: Settings, net, total: int) -> list[tuple[int, int]]:
    """Coarse-to-fine plan: [(last iteration, upsamplings left out), ...] before full resolution."""
    plan = tuple(settings.coarse_to_fine or ())
    if not plan or not hasattr(net, "skipped_upsamples"):
        return []
    stages, end = [], 0.0
    for fraction, downscale in plan:
        downscale = int(downscale)
        skipped = downscale.bit_length() - 1
        if downscale < 2 or downscale != 2 ** skipped or skipped > net.levels:
            raise ValueError(f"coarse_to_fine downscale must be a power of two from 2 to {2 ** net.levels}; "
                             f"got {downscale}")
        # below 1: a share of the iterations; from 1 up: a number of iterations (a ceiling need not stretch it)
        end += float(fraction) * total if fraction < 1 else float(fraction)
        stages.append((int(round(end)), skipped))
    return stages


class NetworkFit:
    """The generator, its fixed input z and its optimiser: one step of the fit at a time.

    With ``members`` > 1 (an ensemble of light decoders) each output is the members' outputs as a batch; the data
    term averages over them and the result is their mean. With ``units`` > 1 the network fits that many units of one
    job side by side in one call (the light decoder's grouped convolutions, as for members): each unit's network
    starts as one unit's would, with the same weights and input, and owns its own part of every tensor.
    """

    def __init__(self, problem: Problem, settings: Settings, seed: int, device: torch.device,
                 start_from: FittedState | None, units: int = 1):
        self.settings, self.device = settings, device
        self.out_channels, self.out_spatial = problem.out_channels, tuple(problem.out_spatial)
        dims = problem.dims
        guide_channels = problem.guide.shape[1] if problem.guide is not None else None
        n_in = input_channels(settings.input, settings.input_channels, dims, guide_channels)
        noise_gen = torch.Generator().manual_seed(seed)
        self.members = max(1, int(settings.ensemble or 1))
        self.units = units
        if units > 1 and (settings.network.kind != "light" or start_from is not None):
            raise ValueError("units are fitted together with the 'light' network kind, from a random start only")
        # Seed the global generator only inside this block so the caller's random state is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_network(settings.network, n_in, problem.out_channels, dims, members=self.members,
                                spatial=problem.out_spatial)
            if units > 1:  # every unit's part starts as the one-unit network
                one = net.state_dict()
                net = build_network(settings.network, n_in, problem.out_channels, dims,
                                    members=self.members * units, spatial=problem.out_spatial)
                net.load_state_dict({k: v if v.dim() == 0 else v.repeat(units, *([1] * (v.dim() - 1)))
                                     for k, v in one.items()})
        spatial = net.input_shape(problem.out_spatial) if settings.network.kind == "light" else problem.out_spatial
        if self.members > 1 and settings.input == "noise":
            z = make_input(settings.input, n_in * self.members, spatial, noise_gen)
        else:
            z = make_input(settings.input, n_in, spatial, noise_gen, problem.guide)
            if self.members > 1:
                z = z.repeat(1, self.members, *([1] * dims))
        if units > 1:
            z = z.repeat(1, units, *([1] * dims))
        if start_from is not None:
            net.load_state_dict(start_from.weights)
        net, z = net.to(device), z.to(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # same sizes every iteration: pick the fastest kernels once
        if uses_channels_last(settings.channels_last, device) and dims == 2:
            net = net.to(memory_format=torch.channels_last)
            z = z.contiguous(memory_format=torch.channels_last)
        self.net, self.z = net, z
        # the jitter comes from its own seeded generator, on the device, so runs repeat
        self.jitter_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.optimiser = adam(net.parameters(), learning_rate(settings, 1, settings.iterations), device)
        if start_from is not None:
            # the moments too: a fresh Adam's first steps are full-size and would shake the fitted network loose
            self.optimiser.load_state_dict(start_from.optimiser)
        self.cpu_bf16 = settings.cpu_bf16
        self.forward, self.compile_failure = maybe_compile(net, z, device, settings.compile,
                                                            autocast(device, settings.amp, self.cpu_bf16))

    def outputs(self) -> list[torch.Tensor]:
        """f(z + jitter) on the output grid, per unit (members, C, *out_spatial): a coarse stage's output is
        upsampled."""
        net_input = self.z
        if self.settings.reg_noise_std > 0:
            jitter = torch.randn(self.z.shape, generator=self.jitter_gen, device=self.device, dtype=self.z.dtype)
            net_input = self.z + self.settings.reg_noise_std * jitter
        with autocast(self.device, self.settings.amp, self.cpu_bf16):
            out = self.forward(net_input)
        out = out.float()
        if self.members * self.units > 1:  # the members' outputs as a batch: the data term averages over them
            out = out.reshape(self.members * self.units, self.out_channels, *out.shape[2:])
        if out.shape[2:] != self.out_spatial:
            mode = "bilinear" if len(self.out_spatial) == 2 else "trilinear"
            out = torch.nn.functional.interpolate(out, size=self.out_spatial, mode=mode, align_corners=False)
        return [out] if self.units == 1 else list(out.split(self.members))

    def step(self, loss: torch.Tensor) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The result of a unit's output: detached, the members' mean."""
        return out.detach() if self.members == 1 else out.detach().mean(0, keepdim=True)

    def untrained_output(self, unit: int = 0) -> torch.Tensor:
        """The network's output for unit ``unit`` before any step (a run stopped before its first)."""
        with torch.no_grad():
            output = self.net(self.z).float()
        output = output.reshape(self.members * self.units, self.out_channels, *output.shape[2:])
        return output[unit * self.members:(unit + 1) * self.members].mean(0, keepdim=True)

    def fitted(self, position: int, unit: int = 0) -> FittedState:
        return FittedState.of(self.net, self.optimiser, position, unit, self.units)


class Measurement:
    """The measurement on the device and how an output is compared with it: the operator A, the noise model, the
    pixels in the data term (``known``) and the held-out ones that judge the result (``scored``)."""

    def __init__(self, problem: Problem, device: torch.device):
        self.noise = get_noise_model(problem.noise)
        self.target = problem.target.to(device)
        known = problem.known.to(device) if problem.known is not None else None
        heldout = problem.heldout.to(device) if problem.heldout is not None else None
        self.scored = None  # weight of the held-out pixels in the score
        if heldout is not None:
            self.scored = heldout if known is None else known * heldout
            known = (1.0 - heldout) if known is None else known * (1.0 - heldout)  # never in the data term
        self.known = known
        self.operator = problem.operator.to(device)
        self.variance = problem.noise_variance
        if isinstance(self.variance, torch.Tensor):
            self.variance = self.variance.to(device)

    def loss(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A(out), the data term at the pixels in the fit)."""
        prediction = self.operator(out)
        return prediction, self.noise.data_term(prediction, self.target, self.known)


class Schedule:
    """The coarse-to-fine stages and the learning rate along the run, from ``position`` in the coarse-to-fine plan
    (a warm start's: its neighbour's kept iterate; 0 for a cold start)."""

    def __init__(self, settings: Settings, net, total: int, position: int = 0):
        self.settings, self.total = settings, total
        # a warm start continues its neighbour's plan from where the neighbour's kept iterate was
        self.stages = [(end - position, k) for end, k in coarse_stages(settings, net, total) if end > position]
        self.full_resolution_from = self.stages[-1][0] if self.stages else 0

    def apply(self, iteration: int, fitting: NetworkFit) -> None:
        """Set the network's resolution and the optimiser's rate for step ``iteration + 1``."""
        if self.stages:
            fitting.net.skipped_upsamples = next((k for end, k in self.stages if iteration < end), 0)
        if self.settings.lr_schedule != "constant":
            for group in fitting.optimiser.param_groups:
                group["lr"] = learning_rate(self.settings, iteration + 1, self.total)

    def coarse(self, fitting: NetworkFit) -> bool:
        return bool(self.stages and fitting.net.skipped_upsamples)


class Backtracking:
    """The paper's safeguard: when the fit collapses (its squared error at the measurements jumps by more than
    ``backtrack_drop_db``), reload the last good weights and skip the step."""

    def __init__(self, settings: Settings, sync_every: int, net):
        self.drop_db = settings.backtrack_drop_db
        self.every = settings.backtrack_every if sync_every == 1 else max(settings.backtrack_every, sync_every)
        self.saved = [p.detach().clone() for p in net.parameters()]
        self.last_fidelity = None
        self.count = 0

    def jumped(self, step: int, prediction: torch.Tensor, measurement: Measurement, net) -> bool:
        """True when step ``step`` collapsed and the weights were reloaded; else the weights may be saved."""
        if step % self.every:
            return False
        # PSNR(data, output) dropping by d dB is the MSE growing by 10^(d/10): the squared error, in every model.
        fidelity = float(masked_mean((prediction.detach() - measurement.target) ** 2, measurement.known))
        jumped = self.last_fidelity is not None and (
            not math.isfinite(fidelity) or fidelity > self.last_fidelity * 10 ** (self.drop_db / 10))
        with torch.no_grad():
            for p, saved in zip(net.parameters(), self.saved):
                if jumped:
                    p.copy_(saved)
                else:
                    saved.copy_(p)
        if jumped:
            self.count += 1
        else:
            self.last_fidelity = fidelity
        return jumped


class OutputAverage:
    """The exponential moving average of the outputs (or, without one, the latest output)."""

    def __init__(self, settings: Settings):
        self.weight, self.warmup = settings.ema, settings.ema_warmup
        self.average = None
        self.output = None

    def update(self, output: torch.Tensor, iteration: int) -> None:
        self.output = output
        if self.weight is None:
            return
        weight = min(self.weight, iteration / (iteration + 10)) if self.warmup else self.weight
        self.average = output.clone() if self.average is None else self.average.mul_(weight).add_(
            output, alpha=1 - weight)

    @property
    def latest(self):
        return self.average if self.average is not None else self.output


class KeptNetwork:
    """The network's weights and Adam's moments at the kept iterate, updated on the device: a warm-started neighbour
    continues from the result that was kept, not from the iterates past it (docs/benchmarks.md: on smooth stacks
    the final weights lost 0.3 dB to a cold start; the kept ones gained 0.5)."""

    def __init__(self, fitting: NetworkFit, unit: int = 0):
        self.fitting, self.unit = fitting, unit
        self.live = self.kept = None  # the tensors of the fit's state, and their copies at the kept iterate

    def _live(self) -> list[torch.Tensor]:
        """The tensors that make the unit's state (its parts of the network's), in a fixed order. The optimiser
        updates them in place, and Adam's moments exist from its first step on: read once, at the first iterate.
        Units fitted together share the 0-d counters (Adam's step), which one unit must not put back."""
        fitting = self.fitting
        tensors = list(fitting.net.state_dict().values())
        for p in fitting.net.parameters():
            tensors += [v for v in fitting.optimiser.state.get(p, {}).values() if isinstance(v, torch.Tensor)]
        if fitting.units == 1:
            return tensors
        return [unit_part(t, self.unit, fitting.units) for t in tensors if t.dim() > 0]

    def keep(self, improved: torch.Tensor) -> None:
        if self.kept is None:  # the first iterate: kept whatever ``improved`` says, as by KeptIterate
            self.live = self._live()
            self.kept = [t.detach().clone() for t in self.live]
            return
        with torch.no_grad():
            for kept, now in zip(self.kept, self.live):
                kept.copy_(torch.where(improved, now, kept))

    def restore(self) -> None:
        """Put the kept state back into the network and the optimiser (the run is over)."""
        with torch.no_grad():
            for now, kept in zip(self.live, self.kept):
                now.copy_(kept)


class KeptIterate:
    """The result a stopping rule keeps: updated on the device, without reading its decision on the host."""

    def __init__(self):
        self.tensor = None

    def keep(self, candidate: torch.Tensor, improved: torch.Tensor) -> None:
        self.tensor = candidate.clone() if self.tensor is None else torch.where(improved, candidate, self.tensor)


class UnitTrack:
    """One unit's part of a fit: its measurement, output average, held-out score, stopping rule and kept iterate.
    Units fitted together share the network, its input, the optimiser and the schedule; each has a track."""

    def __init__(self, problem: Problem, settings: Settings, fitting: NetworkFit, unit: int, schedule: Schedule,
                 sync_every: int, device: torch.device):
        self.unit, self.fitting = unit, fitting
        self.measurement = Measurement(problem, device)
        self.backtracking = Backtracking(settings, sync_every, fitting.net) if settings.backtracking else None
        self.average = OutputAverage(settings)
        self.scorer = HeldOutScore(problem, self.measurement, device) if self.measurement.scored is not None \
            else None
        self.kept = KeptIterate()
        self.rule = StoppingRule()  # automatic stopping (held-out pixels) and ES-WMV are one rule or the other
        # warm starts hand on the kept iterate's network, which only the held-out rule chooses
        self.kept_network = None
        if settings.auto_stop and self.scorer is not None:
            self.kept_network = KeptNetwork(fitting, unit) if settings.warm_start else None
            self.rule = HeldOutStop(settings, self.scorer, self.kept, schedule.full_resolution_from,
                                    self.kept_network)
        elif settings.early_stopping:
            self.rule = VarianceStop(settings, self.kept, schedule, fitting)
        self.loss = None

    def observe(self, iteration: int, counter, output: torch.Tensor, check: bool) -> str | None:
        """Average and judge the unit's output after step ``iteration``; the stop reason once the unit is done."""
        self.average.update(self.fitting.mean(output), iteration)
        judged = None
        if self.scorer is not None:
            counter.fill_(iteration)
            judged = self.scorer.judge(self.average.latest)
        return self.rule.observe(iteration, counter, self.average.output, self.average.latest, judged,
                                 self.scorer.score if self.scorer is not None else None, check)

    def state(self, iteration: int, total: int, seconds: float, **final) -> LoopState:
        average, scorer, rule = self.average, self.scorer, self.rule
        latest = average.latest
        scores = scorer.scores(rule.best_score) if scorer is not None else (None, None, None)
        judged = scorer.judged(latest) if scorer is not None else latest
        return LoopState(iteration, total, float("nan") if self.loss is None else float(self.loss.detach()),
                         average.output, self.kept.tensor if self.kept.tensor is not None else latest,
                         seconds, self.backtracking.count if self.backtracking else 0,
                         rule.chosen_iteration, *scores, current=judged,
                         lowest_error_iteration=rule.lowest_error_iteration,
                         **(scorer.mix_weights() if scorer is not None else {}), **final)

    def finish(self, iteration: int, total: int, seconds: float, stop_reason: str, position: int) -> LoopState:
        """The unit's final state; its network and optimiser put back to the kept iterate where warm starts use
        it. ``position``: where in the coarse-to-fine plan the fit began."""
        rule = self.rule
        rule.finish()
        if self.average.output is None:  # stopped before the first step: report the untrained network's output
            self.average.output = self.fitting.untrained_output(self.unit)
            self.loss = None
        if isinstance(rule, HeldOutStop) and rule.lowest_error_iteration is not None:
            if stop_reason.startswith("completed"):
                stop_reason += f"; the held-out error was lowest at iteration {rule.lowest_error_iteration}"
            stop_reason += rule.kept_note()
        if self.fitting.compile_failure:
            stop_reason += f"; {self.fitting.compile_failure}"
        if self.kept_network is not None and rule.chosen_iteration is not None:
            self.kept_network.restore()
            position += rule.chosen_iteration
        else:
            position += iteration
        return self.state(iteration, total, seconds, stop_reason=stop_reason, done=True,
                          fitted=self.fitting.fitted(position, self.unit))


def fit_units(problems: list[Problem], settings: Settings, *, seed: int = 0, device: torch.device | str = "cpu",
              should_stop: Callable[[], bool] = lambda: False, on_iteration: Callable | None = None,
              start_from: FittedState | None = None):
    """Run the optimisation for one or several units fitted together; a generator of (unit, :class:`LoopState`).

    Units fitted together (the ``problems``, of one shape; the light decoder) advance in one network call, each
    with its own part of the network, its own data term and stopping rule: each unit gets what it would get
    alone, up to rounding. A unit that stops yields its final state then, while the others go on; a unit's
    finished part keeps being computed (its data term left out) until every unit has stopped.

    ``should_stop`` is polled every iteration: when it returns True the loop ends and yields every unit's final
    state at once. ``on_iteration(iteration, network)`` is called before each step (used by tests to inject
    faults). ``start_from`` (one unit only): a neighbour's final :class:`FittedState` to continue from (warm
    start: its weights, Adam's moments and the rest of its coarse-to-fine plan) instead of a random
    initialisation.
    """
    device = torch.device(device)
    problems = list(problems)
    if len(problems) > 1 and settings.backtracking:
        raise ValueError("units fitted together cannot backtrack (it reloads the whole network): "
                         "fit them one at a time, or turn backtracking off")
    if len({(tuple(p.target.shape), tuple(p.out_spatial)) for p in problems}) > 1:
        raise ValueError("units fitted together must have one shape")
    fitting = NetworkFit(problems[0], settings, seed, device, start_from, units=len(problems))
    total = settings.iterations
    position = start_from.position if start_from is not None else 0
    schedule = Schedule(settings, fitting.net, total, position)
    sync_every = sync_interval(settings, device)
    tracks = [UnitTrack(problem, settings, fitting, unit, schedule, sync_every, device)
              for unit, problem in enumerate(problems)]
    counter = torch.zeros((), dtype=torch.long, device=device)  # the iteration, on the device
    start = time.perf_counter()
    iteration, stop_reason = 0, f"completed {total} iterations"
    active = list(tracks)
    while iteration < total and active:
        if should_stop():
            stop_reason = "stopped by user"
            break
        if on_iteration is not None:
            on_iteration(iteration + 1, fitting.net)
        schedule.apply(iteration, fitting)
        outputs = fitting.outputs()
        for track in active:
            prediction, track.loss = track.measurement.loss(outputs[track.unit])
        track = active[0]  # backtracking: one unit only
        if track.backtracking is not None and track.backtracking.jumped(iteration + 1, prediction,
                                                                        track.measurement, fitting.net):
            iteration += 1
            continue
        # the units' parts of the network are disjoint: the sum's gradient is each unit's own
        fitting.step(track.loss if len(active) == 1 else torch.stack([t.loss for t in active]).sum())
        iteration += 1
        check = iteration % sync_every == 0 or iteration % settings.snapshot_every == 0
        for track in list(active):
            reason = track.observe(iteration, counter, outputs[track.unit], check)
            if reason is not None:
                active.remove(track)
                yield track.unit, track.finish(iteration, total, time.perf_counter() - start, reason, position)
        if iteration % settings.snapshot_every == 0 and iteration < total:
            for track in active:
                yield track.unit, track.state(iteration, total, time.perf_counter() - start)
    for track in active:
        yield track.unit, track.finish(iteration, total, time.perf_counter() - start, stop_reason, position)


def fit(problem: Problem, settings: Settings, *, seed: int = 0, device: torch.device | str = "cpu",
        should_stop: Callable[[], bool] = lambda: False, on_iteration: Callable | None = None,
        start_from: FittedState | None = None):
    """Run the optimisation for one unit; a generator of :class:`LoopState` (:func:`fit_units` says more)."""
    for _, state in fit_units([problem], settings, seed=seed, device=device, should_stop=should_stop,
                              on_iteration=on_iteration, start_from=start_from):
        yield state
