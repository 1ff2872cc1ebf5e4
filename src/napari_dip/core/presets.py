"""Per-task settings: ``paper`` reproduces the official implementation, ``fast`` is for CPUs.

Figures for ``paper`` come from the official code (DmitryUlyanov/deep-image-prior),
summarised in the table of docs/presets.md. ``fast`` presets trade the paper's
big networks for small ones that finish in about a minute on a laptop CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .networks import NetworkSpec
from .tasks import TASKS as _REGISTRY

TASKS = tuple(_REGISTRY)  # the task names, in the registry's order (core/tasks.py)


@dataclass
class Settings:
    """Everything that drives one optimisation. Saved whole in the run record."""

    network: NetworkSpec = field(default_factory=NetworkSpec)
    input: str = "noise"  # noise | meshgrid | guide
    input_channels: int = 32
    reg_noise_std: float = 1.0 / 30.0  # input jitter σ added to z at each iteration
    lr: float = 0.01
    iterations: int = 3000
    ema: float | None = 0.99  # weight of the exponential moving average of outputs; None = off
    # Warm-up: weight min(ema, t / (t + 10)) at iteration t, so the average spans about a tenth of
    # the run so far and the poor first outputs do not drag short runs down.
    ema_warmup: bool = False
    backtracking: bool = True  # reload the last good weights when the fit collapses
    backtrack_drop_db: float = 5.0  # ... i.e. when PSNR(data, output) drops by more than this
    backtrack_every: int = 1  # check every this many iterations
    early_stopping: bool = False  # ES-WMV (Wang et al. 2023)
    es_window: int = 100  # iterations in the moving-variance window
    es_patience: int = 1000  # iterations without a new variance minimum before stopping
    # automatic stopping (docs/quality.md): a random holdout_fraction of the measured pixels is left out of
    # the data term; the run keeps the result where their error was lowest and ends once no new minimum has
    # come for max(stop_patience, stop_patience_growth × that iteration) iterations; iterations is a ceiling
    auto_stop: bool = False
    holdout_fraction: float = 0.1
    stop_patience: int = 150
    stop_patience_growth: float = 0.5
    # keep the latest iterate whose held-out error is within this many standard errors of the lowest (0: the
    # lowest itself); the standard error of the difference, from its spread over the held-out pixels. 1 where
    # later iterates fit more of the image (inpainting, super-resolution, deconvolution); 0 for denoising, whose
    # later iterates fit more noise (docs/benchmarks.md § Automatic stopping on small inputs)
    stop_margin: float = 0.0
    # with automatic stopping: mix a classical estimate r into the result, r + w·(network − r), w chosen at the
    # held-out pixels (core/reference.py): "biharmonic" (a fill of missing pixels in small gaps), "nl-means"
    # (non-local means, Anscombe-transformed for photon counts), "block-matching" (likewise), "auto" (block
    # matching, or non-local means where bmnd does not load), "richardson-lucy" (deconvolution), or None
    mix_with: str | None = None
    # how photon counts (noise 'poisson', 'poisson-gaussian') enter the data term: "deviance", the Poisson
    # likelihood, or "stabilised", squared error after the Anscombe transform (core/noise.py)
    photon_loss: str = "deviance"
    keep_measured: bool = False  # the result keeps the measured pixels as they are; the network fills the rest
    # warm starts across the work units of one job (planes, tiles): each unit starts from the weights of
    # a fitted neighbour (the same tile of the previous plane, else the previous unit) instead of from scratch
    warm_start: bool = False
    # amortised restoration (amortised.py): the student's Adam steps per round, and how far (dB) the judge may find
    # it below DIP before more teacher crops, then per-unit fitting, take over
    student_steps: int = 1200
    amortise_margin: float = 0.2
    snapshot_every: int = 50
    amp: bool = True  # mixed precision where the device supports it (CUDA)
    # --- schedules (defaults keep the paper's plain loop)
    # learning rate: "constant", or "cosine-tail": constant, then a half-cosine down to lr × lr_final
    # over the last lr_decay_fraction of the iterations (a calm last stretch for the result)
    lr_schedule: str = "constant"
    lr_final: float = 0.1
    lr_decay_fraction: float = 0.4
    # coarse-to-fine (light decoder only): ((fraction of the iterations, downscale), ...) fitted first
    # with the output downscale times smaller (its last upsamplings left out) and upsampled for the data
    # term, e.g. ((0.3, 4), (0.3, 2)); the rest of the iterations run at full resolution
    coarse_to_fine: tuple = ()
    # light decoder only: fit this many independent networks at once (grouped convolutions) and take
    # the mean of their outputs, the paper's "average of several runs" (+0.4 dB for two on camera)
    ensemble: int = 1
    # --- speed only: the result stays the same up to rounding
    # NHWC memory layout for 2D networks: True, False or "auto" (on the CPU, where oneDNN's NHWC kernels are 9 %
    # faster across the fast presets; not on CUDA, where NCHW was 1.2x faster under bf16; docs/benchmarks.md)
    channels_last: bool | str = "auto"
    cpu_bf16: bool = False  # bfloat16 autocast on CPUs with native bf16 (AVX512-BF16 / AMX); else ignored
    # torch.compile the network on CUDA (True, or a mode: 'max-autotune', ...), falling back to eager on any failure
    compile: bool | str = False
    sync_every: int = 0  # iterations between host reads of early stopping / backtracking; 0 = auto

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["network"] = self.network.as_dict()
        return d


_SKIP_PAPER = dict(kind="skip", down=(128,) * 5, up=(128,) * 5, skip=(4,) * 5)
# Small skip net for CPUs: a quarter of the paper's widths at the fine levels.
_SKIP_FAST = dict(kind="skip", down=(16, 32, 64, 64, 128), up=(16, 32, 64, 64, 128), skip=(4, 4, 4, 4, 4))
# CPU super-resolution and deconvolution (docs/benchmarks.md): a light decoder (1×1 convolutions, bilinear
# upsampling, 128 channels, 4 levels) with a thin 3×3 head of 16 channels at full resolution; fitted
# coarse-to-fine (a third of the iterations at 1/4, a third at 1/2 of the size), three members averaged,
# bf16 on CPUs that have it.
_LIGHT_FAST = dict(kind="light", channels=128, levels=4, head_channels=16, head_kernel=3)
_FAST_SCHEDULE = dict(input_channels=64, reg_noise_std=0.0, coarse_to_fine=((0.33, 4), (0.33, 2)), ensemble=3,
                      cpu_bf16=True, ema=0.99, ema_warmup=True, backtracking=False, snapshot_every=25,
                      auto_stop=True)
# Denoising: 3×3 convolutions at every level (sharper than 1×1, so fewer channels and members suffice):
# +0.2 to +0.3 dB over the 1×1 decoder on the 256² CPU target, in about 45 s (docs/benchmarks.md).
_LIGHT_DENOISE = dict(_LIGHT_FAST, channels=64, kernel=3)


def _net(**kw) -> NetworkSpec:
    return NetworkSpec(**kw)


def _denoise(name: str, factor: int | None) -> Settings:
    if name == "paper":
        return Settings(network=_net(**_SKIP_PAPER), iterations=3000)
    if name == "paper-sigma50":
        return Settings(network=_net(**_SKIP_PAPER), iterations=3000, reg_noise_std=1.0 / 20.0)
    if name == "jpeg":
        return Settings(network=_net(kind="skip", down=(8, 16, 32, 64, 128), up=(8, 16, 32, 64, 128),
                                     skip=(0, 0, 0, 4, 4)), input_channels=3, iterations=2400)
    if name == "fast":
        # automatic stopping chooses the result; iterations is a ceiling that low noise levels need (their
        # best comes late) and high ones never reach. The coarse stages have fixed lengths so that a higher
        # ceiling does not stretch them: smooth images are often best at the end of a coarse stage.
        return Settings(network=_net(**_LIGHT_DENOISE), iterations=2000, mix_with="auto", warm_start=True,
                        **dict(_FAST_SCHEDULE, ensemble=2, coarse_to_fine=((250, 4), (250, 2))))
    raise KeyError(name)


def _inpaint(name: str, factor: int | None) -> Settings:
    # inpainting fills the missing pixels and leaves the measured ones as the user measured them
    common = dict(reg_noise_std=0.03, ema=None, backtracking=False, keep_measured=True)
    if name in ("paper", "text"):
        return Settings(network=_net(kind="skip", down=(128,) * 5, up=(128,) * 5, skip=(128,) * 5,
                                     upsample="nearest"), iterations=6001, **common)
    if name == "large-hole":
        return Settings(network=_net(kind="hourglass", down=(128,) * 5, up=(128,) * 5, skip=(0,) * 5,
                                     upsample="nearest"), input="meshgrid", input_channels=2,
                        iterations=5001, **common)
    if name == "region":
        depth6 = (16, 32, 64, 128, 128, 128)
        return Settings(network=_net(kind="hourglass", down=depth6, up=depth6, skip=(0,) * 6, filter_down=5),
                        input_channels=1, iterations=3001, reg_noise_std=0.0, ema=None, backtracking=False,
                        keep_measured=True)
    if name == "missing-pixels":
        return Settings(network=_net(**_SKIP_PAPER), iterations=11000, lr=0.001, reg_noise_std=0.03,
                        ema=None, backtracking=True, backtrack_every=50, keep_measured=True)
    if name == "fast":
        return Settings(network=_net(kind="skip", down=(16, 32, 64, 64, 128), up=(16, 32, 64, 64, 128),
                                     skip=(16, 16, 16, 16, 16), upsample="nearest"),
                        input_channels=8, iterations=1000, snapshot_every=25, auto_stop=True, mix_with="biharmonic",
                        stop_margin=1.0, **common)
    raise KeyError(name)


def _superres(name: str, factor: int | None) -> Settings:
    factor = factor or _REGISTRY["superres"].default_factor
    if name == "paper":
        return Settings(network=_net(**_SKIP_PAPER), reg_noise_std=0.05 if factor >= 8 else 0.03,
                        iterations=4000 if factor >= 8 else 2000, ema=None, backtracking=False)
    if name == "fast":
        return Settings(network=_net(**_LIGHT_FAST), iterations=900, stop_margin=1.0, **_FAST_SCHEDULE)
    raise KeyError(name)


def _deconvolve(name: str, factor: int | None) -> Settings:
    # Not in the paper: the denoising settings, since deconvolution inverts a blur
    # and must not fit the noise it amplifies.
    if name == "paper":
        return Settings(network=_net(**_SKIP_PAPER), iterations=3000)
    if name == "fast":
        # one member, twice the iterations: the sharp details come late, and on the 256² CPU target
        # 1800 iterations of one member beat 900 of three in less time (docs/benchmarks.md)
        # Richardson–Lucy mixed in: the network alone fell 3.5–7.4 dB below it on smooth cells (docs/benchmarks.md)
        return Settings(network=_net(**_LIGHT_FAST), iterations=1800, early_stopping=False, stop_margin=1.0,
                        mix_with="richardson-lucy", **dict(_FAST_SCHEDULE, ensemble=1))
    raise KeyError(name)


def _guided(name: str, factor: int | None) -> Settings:
    common = dict(input="guide", reg_noise_std=0.0, ema=None, backtracking=False)
    if name == "paper":
        # flash/no-flash: nearest upsampling in the two coarsest levels, bilinear elsewhere
        return Settings(network=_net(**_SKIP_PAPER,
                                     upsample=("nearest", "nearest", "bilinear", "bilinear", "bilinear")),
                        lr=0.1, iterations=601, snapshot_every=25, **common)
    if name == "fast":
        return Settings(network=_net(**_SKIP_FAST), lr=0.01, iterations=400, snapshot_every=25, auto_stop=True,
                        **common)
    raise KeyError(name)


_BUILDERS = {"denoise": _denoise, "inpaint": _inpaint, "superres": _superres,
             "deconvolve": _deconvolve, "guided": _guided}

PRESETS = {name: task.presets for name, task in _REGISTRY.items()}
assert {t.settings_like or t.name for t in _REGISTRY.values()} <= set(_BUILDERS), \
    "every registered task needs a settings builder"


def get_settings(task: str, preset: str = "fast", factor: int | None = None) -> Settings:
    """The settings of a named preset; raises ValueError naming the choices."""
    if task not in _REGISTRY:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if preset not in PRESETS[task]:
        raise ValueError(f"unknown preset {preset!r} for task {task!r}; choose one of: {', '.join(PRESETS[task])}")
    return _BUILDERS[_REGISTRY[task].settings_like or task](preset, factor)


def apply_overrides(settings: Settings, overrides: dict) -> Settings:
    """Replace settings fields by name; network fields may be given as ``network_<field>`` or in ``network``."""
    net_changes = dict(overrides.pop("network", {}) or {})
    for key in list(overrides):
        if key.startswith("network_"):
            net_changes[key[len("network_"):]] = overrides.pop(key)
    valid = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}")
    valid_net = {f.name for f in dataclasses.fields(NetworkSpec)}
    bad_net = set(net_changes) - valid_net
    if bad_net:
        raise ValueError(f"unknown network setting(s) {', '.join(sorted(bad_net))}; "
                         f"valid: {', '.join(sorted(valid_net))}")
    if "kind" not in net_changes and settings.network.kind == "light" and {"down", "up", "skip"} & set(net_changes):
        net_changes["kind"] = "skip"  # channels per level describe a skip network, not the light decoder
    if net_changes.get("kind", settings.network.kind) != "light" and "ensemble" not in overrides:
        overrides["ensemble"] = 1  # ensembles exist for the light decoder only
    net = dataclasses.replace(settings.network, **{k: tuple(v) if isinstance(v, list) else v
                                                   for k, v in net_changes.items()})
    return dataclasses.replace(settings, network=net, **overrides)


def _stopping(s: Settings) -> str:
    if s.auto_stop:
        kept = f"; the latest within {s.stop_margin:g} s.e. of the lowest" if s.stop_margin else ""
        return f"automatic ({s.holdout_fraction:.0%} held out{kept}; {s.iterations} is a ceiling)"
    return "ES-WMV" if s.early_stopping else "fixed length"


def _result(s: Settings) -> str:
    parts = ["the network's output"]
    if s.mix_with and s.auto_stop:
        mixed = {"biharmonic": "a biharmonic fill (small gaps)", "nl-means": "non-local means",
                 "block-matching": "block matching (bmnd)",
                 "auto": "block matching (non-local means where bmnd does not load)",
                 "richardson-lucy": "Richardson–Lucy deconvolution"}[s.mix_with]
        parts = [f"mixed with {mixed}"]
    if s.keep_measured:
        parts.append("measured pixels kept")
    if s.warm_start:
        parts.append("each plane warm-started from the plane before")
    return ", ".join(parts)


def preset_table() -> str:
    """The presets as a Markdown table (docs/presets.md is made from it)."""
    rows = ["| task | preset | network | input z | jitter σ | LR | iterations | EMA | backtracking | stopping "
            "| result |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, names in PRESETS.items():
        for name in names:
            s = get_settings(task, name, 4)
            net = s.network
            if net.kind == "light":
                arch = f"light, {net.channels} channels × {net.levels} levels, {net.kernel}×{net.kernel} convolutions"
                if net.head_channels or net.head_kernel:
                    k = net.head_kernel or net.kernel
                    arch += f", {net.head_channels or net.channels}-channel {k}×{k} head"
                if s.coarse_to_fine:
                    arch += ", coarse-to-fine " + " → ".join(f"1/{d}" for _, d in s.coarse_to_fine) + " → 1"
                if s.ensemble > 1:
                    arch += f", mean of {s.ensemble}"
            else:
                up = net.upsample if isinstance(net.upsample, str) else "/".join(net.upsample)
                arch = f"{net.kind}, down {list(net.down)}, skip {list(net.skip)}, {up}"
            z = f"noise, {s.input_channels} ch" if s.input == "noise" else s.input
            rows.append(f"| {task} | {name} | {arch} | {z} | {s.reg_noise_std:.3g} | {s.lr:g} | {s.iterations} "
                        f"| {s.ema if s.ema is not None else 'off'} | {'yes' if s.backtracking else 'no'} "
                        f"| {_stopping(s)} | {_result(s)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(preset_table())
