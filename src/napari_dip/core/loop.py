"""The DIP optimisation as a generator of loop states.

``fit`` builds the network and input, then runs Adam on the data term
``E(A(f(z + jitter)); x0)``. It yields a :class:`LoopState` every
``snapshot_every`` iterations and once more at the end. Between yields it keeps
the exponential moving average of outputs, backtracks when the fit collapses,
and watches the windowed moving variance of the iterates for early stopping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .inputs import input_channels, make_input
from .networks import build_network
from .noise import NoiseModel, get_noise_model, masked_mean
from .operators import IdentityOperator, Operator
from .presets import Settings
from .quality import AutoStop, RunningMinimum


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
class LoopState:
    """What the loop reports; tensors are detached, on the run's device, in normalised units."""

    iteration: int
    total: int
    loss: float
    output: torch.Tensor  # f(z) at this iteration
    estimate: torch.Tensor  # the result if the run stopped now (EMA and early stopping applied)
    seconds: float
    backtracks: int = 0
    best_iteration: int | None = None  # early stopping: the chosen iteration so far (held-out minimum or ES-WMV)
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


def data_term(prediction, target, known, noise: str | NoiseModel):
    """Mean data fidelity over the measured pixels under the noise model ``noise`` (a model or its name)."""
    return get_noise_model(noise).data_term(prediction, target, known)


class ReferenceMix:
    """Mixes each iterate x with a classical estimate r as r + w·(x − r), w in [0, 1] least-squares at the held-out
    pixels (core/reference.py says why). ``reference_measured`` is A(r') for the r' made without the held-out
    pixels; the mixed iterate's held-out error is kept beside its weight, for the iterate the loop keeps."""

    def __init__(self, reference, reference_measured, target, scored):
        self.reference = reference
        self.reference_measured = reference_measured
        self.residual = target - reference_measured  # what the reference misses, at the measurements
        self.scored = scored
        self.current = None
        self._now = None  # (weight, held-out error) of the latest iterate, 0-d tensors on the device
        self._kept = None

    def mix(self, iterate, iterate_measured):
        """The mixed iterate (kept as ``current``); weight and held-out error stay on the device."""
        difference = iterate_measured - self.reference_measured
        weight = (masked_mean(difference * self.residual, self.scored)
                  / masked_mean(difference * difference, self.scored).clamp_min(1e-12)).clamp(0.0, 1.0)
        error = masked_mean((weight * difference - self.residual) ** 2, self.scored)
        self._now = torch.stack([weight, error])
        self.current = self.reference + weight * (iterate - self.reference)
        return self.current

    def keep(self, improved):
        """Remember the weight and error of the iterate that the stopping rule keeps (``improved``: 0-d bool)."""
        self._kept = self._now if self._kept is None else torch.where(improved, self._now, self._kept)

    def weight(self, best: bool = False) -> float | None:
        value = self._kept if best else self._now
        return None if value is None else float(value[0])

    def error(self, best: bool = False) -> float | None:
        value = self._kept if best else self._now
        return None if value is None else float(value[1])


class MovingVariance:
    """Variance of the last ``window`` iterates, averaged over pixels.

    Running sums make each update O(pixels); they are recomputed exactly once per
    window so float rounding cannot accumulate.
    """

    def __init__(self, window: int):
        self.window = window
        self.buffer: list[torch.Tensor] = []
        self.sum = None
        self.sum_sq = None
        self.count = 0

    def update(self, x: torch.Tensor) -> float | None:
        """Add an iterate; returns the window's variance once the window is full."""
        var = self.update_tensor(x)
        return None if var is None else float(var)

    def update_tensor(self, x: torch.Tensor) -> torch.Tensor | None:
        """As :meth:`update`, but the variance stays a 0-d tensor on the iterate's device (no host sync)."""
        x = x.detach().float()
        self.count += 1
        if self.sum is None:
            self.sum = torch.zeros_like(x)
            self.sum_sq = torch.zeros_like(x)
        self.buffer.append(x)
        self.sum += x
        self.sum_sq += x * x
        if len(self.buffer) > self.window:
            old = self.buffer.pop(0)
            self.sum -= old
            self.sum_sq -= old * old
        if self.count % self.window == 0:
            stack = torch.stack(self.buffer)
            self.sum = stack.sum(0)
            self.sum_sq = (stack * stack).sum(0)
        if len(self.buffer) < self.window:
            return None
        mean = self.sum / self.window
        return (self.sum_sq / self.window - mean * mean).clamp_min(0).mean()


class EarlyStopping:
    """ES-WMV (Wang et al., TMLR 2023): stop when the moving variance of the iterates
    has not reached a new minimum for ``patience`` iterations; the iterate at the
    minimum is the result.
    """

    def __init__(self, window: int = 100, patience: int = 1000):
        self.variance = MovingVariance(window)
        self.patience = patience
        self.best_variance = math.inf
        self.best_iteration: int | None = None

    def update(self, iteration: int, iterate: torch.Tensor) -> bool:
        """Record an iterate; True when it sets a new variance minimum (keep it as the best)."""
        var = self.variance.update(iterate)
        if var is not None and var < self.best_variance:
            self.best_variance, self.best_iteration = var, iteration
            return True
        return False

    def should_stop(self, iteration: int) -> bool:
        return self.best_iteration is not None and iteration - self.best_iteration >= self.patience

    # Device-side variant used by ``fit``: the minimum and its iteration stay tensors, so a GPU
    # is not stalled by a host read every iteration; ``sync`` brings ``best_iteration`` to the host.
    _minimum = None

    def update_on_device(self, iteration: torch.Tensor, iterate: torch.Tensor) -> torch.Tensor | None:
        """Record an iterate; returns a 0-d bool tensor, True when it sets a new variance minimum.

        ``iteration`` is a 0-d integer tensor on the iterate's device.
        """
        var = self.variance.update_tensor(iterate)
        if var is None:
            return None
        if self._minimum is None:
            self._minimum = RunningMinimum()
        return self._minimum.update(iteration, var)

    def sync(self) -> None:
        """Copy the device-side minimum to ``best_variance`` and ``best_iteration`` (one host read)."""
        found = self._minimum.read() if self._minimum is not None else None
        if found is not None:
            self.best_variance, self.best_iteration = found


def _cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _autocast(device: torch.device, enabled: bool, cpu_bf16: bool = False):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if cpu_bf16 and device.type == "cpu" and _cpu_has_native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def learning_rate(settings: Settings, iteration: int, total: int) -> float:
    """The learning rate at ``iteration`` (1-based) of ``total`` under ``settings.lr_schedule``."""
    schedule = getattr(settings, "lr_schedule", "constant")
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
    plan = tuple(getattr(settings, "coarse_to_fine", ()) or ())
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


def _maybe_compile(net, z, device: torch.device, enabled: bool, autocast):
    """torch.compile on CUDA when asked; the eager network when not, or when compiling fails.

    One forward and backward pass on ``z`` under ``autocast`` triggers the compilation here,
    so that a failure (no compiler, an unsupported operation) falls back before the loop starts.
    Not measured yet: no GPU was available when this was written (docs/benchmarks.md).
    """
    if not enabled or device.type != "cuda" or not hasattr(torch, "compile"):
        return net
    try:
        compiled = torch.compile(net)
        with autocast:
            out = compiled(z)
        out.float().mean().backward()
        net.zero_grad(set_to_none=True)
        return compiled
    except Exception:  # noqa: BLE001 - any failure means: run eagerly
        net.zero_grad(set_to_none=True)
        return net


def _optimiser(params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam; the fused CUDA kernel where available (one launch for all parameters)."""
    params = list(params)
    if device.type == "cuda":
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr)


def _sync_interval(settings: Settings, device: torch.device) -> int:
    """Iterations between host reads of the early-stopping and backtracking checks.

    On the CPU a read costs nothing, so every iteration (exactly the rule as written);
    on a GPU every read stalls the queue of kernels, so every ``snapshot_every`` at most 25.
    """
    every = getattr(settings, "sync_every", 0) or 0
    if every > 0:
        return every
    return 1 if device.type == "cpu" else max(1, min(25, settings.snapshot_every))


def fit(problem: Problem, settings: Settings, *, seed: int = 0, device: torch.device | str = "cpu",
        should_stop: Callable[[], bool] = lambda: False, on_iteration: Callable | None = None):
    """Run the optimisation; a generator of :class:`LoopState`.

    ``should_stop`` is polled every iteration: when it returns True the loop ends
    and yields its final state at once. ``on_iteration(iteration, network)`` is
    called before each step (used by tests to inject faults).
    """
    device = torch.device(device)
    noise = get_noise_model(problem.noise)
    dims = problem.dims
    guide_channels = problem.guide.shape[1] if problem.guide is not None else None
    n_in = input_channels(settings.input, settings.input_channels, dims, guide_channels)
    noise_gen = torch.Generator().manual_seed(seed)
    # Seed the global generator only inside this block so the caller's random state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        members = max(1, int(getattr(settings, "ensemble", 1) or 1))
        net = build_network(settings.network, n_in, problem.out_channels, dims, members=members,
                            spatial=problem.out_spatial)
    spatial = problem.out_spatial
    if settings.network.kind == "light":
        spatial = net.input_shape(spatial)
    if members > 1 and settings.input == "noise":
        z = make_input(settings.input, n_in * members, spatial, noise_gen).to(device)
    else:
        z = make_input(settings.input, n_in, spatial, noise_gen, problem.guide).to(device)
        if members > 1:
            z = z.repeat(1, members, *([1] * dims))
    net = net.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # same sizes every iteration: pick the fastest kernels once
    if getattr(settings, "channels_last", False) and dims == 2:
        # NHWC: faster convolutions with oneDNN on CPUs and with tensor cores on GPUs
        net = net.to(memory_format=torch.channels_last)
        z = z.contiguous(memory_format=torch.channels_last)
    target = problem.target.to(device)
    known = problem.known.to(device) if problem.known is not None else None
    heldout = problem.heldout.to(device) if problem.heldout is not None else None
    scored = None  # weight of the held-out pixels in the score
    if heldout is not None:
        scored = heldout if known is None else known * heldout
        known = (1.0 - heldout) if known is None else known * (1.0 - heldout)  # never in the data term
    noise_variance = problem.noise_variance
    if isinstance(noise_variance, torch.Tensor):
        noise_variance = noise_variance.to(device)
    operator = problem.operator.to(device)
    # the jitter comes from its own seeded generator, on the device, so runs repeat
    jitter_gen = torch.Generator(device=device).manual_seed(seed + 1)

    optimiser = _optimiser(net.parameters(), learning_rate(settings, 1, settings.iterations), device)
    sync_every = _sync_interval(settings, device)
    backtrack_every = settings.backtrack_every if sync_every == 1 else max(settings.backtrack_every, sync_every)
    step_counter = torch.zeros((), dtype=torch.long, device=device)  # the iteration, on the device
    start = time.perf_counter()
    total = settings.iterations
    stages = coarse_stages(settings, net, total)
    cpu_bf16 = getattr(settings, "cpu_bf16", False)
    forward = _maybe_compile(net, z, device, getattr(settings, "compile", False),
                             _autocast(device, settings.amp, cpu_bf16))
    average = None
    stopper = EarlyStopping(settings.es_window, settings.es_patience) if settings.early_stopping else None
    auto = None
    if settings.auto_stop and scored is not None:
        auto = AutoStop(settings.stop_patience, settings.stop_patience_growth)
        stopper = None  # one rule chooses the result
    variance_term = None  # mean noise variance at the held-out pixels: fixed for the run, read once
    if scored is not None and noise_variance is not None:
        variance_term = float(masked_mean(noise_variance, scored)) if isinstance(noise_variance, torch.Tensor) \
            else float(noise_variance)
    mixer = None
    if scored is not None and problem.reference is not None:
        mixer = ReferenceMix(problem.reference.to(device), operator(problem.reference_scored.to(device)), target,
                             scored)
    score = None
    best_estimate = None
    last_good = [p.detach().clone() for p in net.parameters()] if settings.backtracking else None
    last_good_fidelity = None
    backtracks = 0
    loss_value = float("nan")
    output = None
    stop_reason = f"completed {total} iterations"
    iteration = 0

    def latest():
        return average if average is not None else output

    def estimate():
        return best_estimate if best_estimate is not None else latest()

    def judged():
        """The iterate the held-out score judges: the latest one, mixed with the reference when there is one."""
        return mixer.current if mixer is not None and mixer.current is not None else latest()

    def mix_weights():
        return {} if mixer is None else {"mix_weight": mixer.weight(), "best_mix_weight": mixer.weight(best=True)}

    def chosen_iteration():
        if auto is not None:
            return auto.best_iteration
        return stopper.best_iteration if stopper is not None else None

    def scores():
        """(estimated MSE now, estimated MSE of the chosen iteration, raw held-out error now)."""
        if score is None:
            return None, None, None
        if mixer is not None:  # the estimate is of the mixed result
            raw, best = mixer.error(), mixer.error(best=True)
        else:
            raw = float(score)
            best = auto.best_score if auto is not None and math.isfinite(auto.best_score) else None
        if variance_term is None:
            return None, None, raw
        return raw - variance_term, None if best is None else best - variance_term, raw

    while iteration < total:
        if should_stop():
            stop_reason = "stopped by user"
            break
        if on_iteration is not None:
            on_iteration(iteration + 1, net)
        if stages:
            skipped = next((k for end, k in stages if iteration < end), 0)
            net.skipped_upsamples = skipped
        if settings.lr_schedule != "constant":
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(settings, iteration + 1, total)
        net_input = z
        if settings.reg_noise_std > 0:
            jitter = torch.randn(z.shape, generator=jitter_gen, device=device, dtype=z.dtype)
            net_input = z + settings.reg_noise_std * jitter
        with _autocast(device, settings.amp, cpu_bf16):
            out = forward(net_input)
        out = out.float()
        if members > 1:  # the ensemble's outputs as a batch: the data term averages over its members
            out = out.reshape(members, problem.out_channels, *out.shape[2:])
        if stages and out.shape[2:] != tuple(problem.out_spatial):
            out = torch.nn.functional.interpolate(out, size=tuple(problem.out_spatial),
                                                  mode="bilinear" if dims == 2 else "trilinear", align_corners=False)
        prediction = operator(out)
        loss = noise.data_term(prediction, target, known)

        if settings.backtracking and (iteration + 1) % backtrack_every == 0:
            # PSNR(data, output) dropping by d dB is the MSE growing by 10^(d/10): the squared error, in every model.
            fidelity = float(masked_mean((prediction.detach() - target) ** 2, known))
            jumped = last_good_fidelity is not None and (
                not math.isfinite(fidelity) or fidelity > last_good_fidelity * 10 ** (settings.backtrack_drop_db / 10))
            if jumped:
                with torch.no_grad():
                    for p, saved in zip(net.parameters(), last_good):
                        p.copy_(saved)
                backtracks += 1
                iteration += 1
                continue
            with torch.no_grad():
                for p, saved in zip(net.parameters(), last_good):
                    saved.copy_(p)
            last_good_fidelity = fidelity

        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        iteration += 1
        output = out.detach() if members == 1 else out.detach().mean(0, keepdim=True)
        if settings.ema is not None:
            weight = min(settings.ema, iteration / (iteration + 10)) if settings.ema_warmup else settings.ema
            average = output.clone() if average is None else average.mul_(weight).add_(output, alpha=1 - weight)
        if scored is not None:
            step_counter.fill_(iteration)
            current = latest()
            with torch.no_grad():
                measured = operator(current)
                score = noise.heldout_score(measured, target, scored)
                if mixer is not None:
                    # the network's own held-out error picks the iterate; the mix is the result at that iterate
                    current = mixer.mix(current, measured)
            if auto is not None:
                improved = auto.update(step_counter, score)
                if mixer is not None:
                    mixer.keep(improved)
                best_estimate = current.clone() if best_estimate is None else torch.where(
                    improved, current, best_estimate)
                if iteration % sync_every == 0 or iteration % settings.snapshot_every == 0:
                    auto.sync()
                    if auto.should_stop(iteration, full_resolution_from=stages[-1][0] if stages else 0):
                        stop_reason = (f"automatic stop: the held-out error was lowest at iteration "
                                       f"{auto.best_iteration} and did not improve for "
                                       f"{iteration - auto.best_iteration} iterations")
                        break
        if stopper is not None and not (stages and net.skipped_upsamples):  # ES-WMV at full resolution only
            step_counter.fill_(iteration)
            current = latest()
            improved = stopper.update_on_device(step_counter, output)
            if improved is not None:
                # keep the iterate at the variance minimum without reading the decision on the host
                best_estimate = current.clone() if best_estimate is None else torch.where(
                    improved, current, best_estimate)
            if iteration % sync_every == 0 or iteration % settings.snapshot_every == 0:
                stopper.sync()
                if stopper.should_stop(iteration):
                    stop_reason = f"early stopping (ES-WMV): best at iteration {stopper.best_iteration}"
                    break
        if iteration % settings.snapshot_every == 0 and iteration < total:
            loss_value = float(loss.detach())
            yield LoopState(iteration, total, loss_value, output, estimate(), time.perf_counter() - start,
                            backtracks, chosen_iteration(), *scores(), current=judged(), **mix_weights())

    if stopper is not None:
        stopper.sync()
    if auto is not None:
        auto.sync()
    if output is None:  # stopped before the first step: report the untrained network's output
        with torch.no_grad():
            output = net(z).float()
            if members > 1:
                output = output.reshape(members, problem.out_channels, *output.shape[2:]).mean(0, keepdim=True)
    else:
        loss_value = float(loss.detach())
    if auto is not None and auto.best_iteration is not None and stop_reason.startswith("completed"):
        stop_reason += f"; the held-out error was lowest at iteration {auto.best_iteration}"
    yield LoopState(iteration, total, loss_value, output, estimate(), time.perf_counter() - start,
                    backtracks, chosen_iteration(), *scores(), current=judged(), **mix_weights(),
                    stop_reason=stop_reason, done=True)
