"""Noise models E: how the measurement's noise turns a misfit into a loss.

Each model gives the loop two things: its ``data_term``, the loss the network
minimises over the measured pixels, and its ``heldout_score``, the error at the
held-out pixels by which the loop judges an iterate (core/quality.py says why).
``Problem.noise`` in core/loop.py takes a model or its name.
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the pixels ``weight`` selects (all pixels when None), as a 0-d tensor."""
    if weight is None:
        return values.mean()
    w = weight.expand_as(values)
    return (values * w).sum() / w.sum().clamp_min(1)


class NoiseModel:
    """Base class; ``name`` is what users pass to choose the model."""

    name: str = ""
    # pull the classical estimate's mixing weight towards the estimate by the weight's uncertainty (core/mixing.py
    # ReferenceMix): for noise so strong at the held-out pixels that the least-squares weight is mostly chance
    shrink_mix: bool = False

    def data_term(self, prediction: torch.Tensor, target: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
        """Mean data fidelity of ``prediction`` = A(f(z)) to the measurement over the pixels ``known`` selects."""
        raise NotImplementedError

    def heldout_score(self, prediction: torch.Tensor, target: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """Mean squared error at the held-out pixels ``scored`` selects, a 0-d tensor.

        Squared error for every model: for any zero-mean noise its expectation is the
        result's own squared error plus the noise variance, so the score minus the mean
        noise variance estimates the result's error (the loop subtracts it).
        """
        return masked_mean(self.heldout_errors(prediction, target), scored)

    def heldout_errors(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The squared error per pixel that :meth:`heldout_score` averages (its spread says how sure the score
        is: core/quality.py AutoStop)."""
        return (prediction - target) ** 2

    def variance(self, target, estimate: dict):
        """The measurement's noise variance in normalised units, from the run's noise estimate: a number,
        or an array like ``target`` where it varies per pixel."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GaussianNoise(NoiseModel):
    """Additive Gaussian noise: the data term is the mean squared error."""

    name = "gaussian"

    def data_term(self, prediction, target, known):
        return masked_mean((prediction - target) ** 2, known)

    def variance(self, target, estimate):
        return float(estimate["sigma_normalised"]) ** 2  # σ̂ estimated from the image (core/quality.py)


class PoissonNoise(NoiseModel):
    """Photon counts: the data term is the Poisson deviance / 2, ``a − y − y·log(a / y)``.

    That is the negative log-likelihood minus its minimum, so it is 0 for a perfect fit.
    """

    name = "poisson"
    eps = 1e-6  # keeps the logarithm finite where the prediction or the count is 0

    def data_term(self, prediction, target, known):
        eps = self.eps
        per_pixel = prediction - target - target * torch.log((prediction + eps) / (target + eps))
        return masked_mean(per_pixel, known)

    def variance(self, target, estimate):
        # a count c has variance c; in normalised units (c / photons at 1) that is y / photons at 1
        return target / float(estimate["photons_at_1"])


class PoissonGaussianNoise(PoissonNoise):
    """Camera values (ADU): photon counts times a gain, plus an offset and Gaussian read noise.

    The run maps ADU to counts with the gain and the effective offset (offset − read noise² / gain,
    which folds the read noise into the counts' variance) before fitting, so the data term and
    the variance are then the Poisson model's.
    """

    name = "poisson-gaussian"


class StabilisedPoissonNoise(PoissonNoise):
    """Photon counts fitted by squared error after the Anscombe transform, ``2·√(c + 3/8)``, which makes the
    counts' variance about 1 (Settings.photon_loss = "stabilised"; the other way to put the data term in the
    photon-count model, benchmarks/real_noise.py compares them).

    ``photons_at_1``: the counts at normalised value 1. The loss is scaled by 2 / photons_at_1 so that near a fit
    it equals the deviance's, ``(a − y)² / 2a``, and the learning rate means the same.
    """

    def __init__(self, photons_at_1: float, name: str = "poisson"):
        self.photons_at_1 = float(photons_at_1)
        self.name = name

    def data_term(self, prediction, target, known):
        p = self.photons_at_1
        stabilised = torch.sqrt(prediction.clamp_min(0) * p + 0.375) - torch.sqrt(target.clamp_min(0) * p + 0.375)
        return masked_mean(stabilised ** 2, known) * (2.0 / p)

    def __repr__(self) -> str:
        return f"StabilisedPoissonNoise(photons_at_1={self.photons_at_1:g})"


class SpeckleNoise(NoiseModel):
    """Radar speckle (core/speckle.py), fitted in the log domain: the target is the data's log intensity less the
    log-speckle's mean (``data.LogNormalisation``), so the noise there is additive and zero-mean.

    The data term is the Gamma likelihood of ``looks`` looks written in logs, ``e^d − d − 1`` per pixel with ``d``
    the measured log intensity less the predicted one, minus its minimum (0 at d = 0); bright speckle then weighs
    exponentially and dark speckle only linearly, as the likelihood says. Scaled by 2 / span² so that near a fit it
    equals the squared error in the network's units and the learning rate means the same. The held-out score is the
    squared error, unbiased there because the noise is zero-mean; its variance is ``ψ′(L)`` (in logs).

    ``span``: log intensity per network unit (``LogNormalisation.span``); ``looks``: the number of looks.
    """

    name = "speckle"
    # at one or two looks the weight's standard error was 0.1–0.2: unshrunk, weights of 0.3–0.4 lost up to 0.4 dB
    # to the classical estimate alone (benchmarks/speckle.py)
    shrink_mix = True
    max_exponent = 30.0  # keeps e^d finite while a fit is far off (a pixel 10¹³ times brighter than predicted)

    def __init__(self, span: float = 1.0, looks: float = 1.0):
        from .speckle import log_moments

        self.span, self.looks = float(span), float(looks)
        self.bias, self.log_variance = log_moments(self.looks)

    def data_term(self, prediction, target, known):
        d = (self.span * (target - prediction) + self.bias).clamp(max=self.max_exponent)
        return masked_mean((torch.exp(d) - d - 1.0) * (2.0 / self.span ** 2), known)

    def variance(self, target, estimate):
        return self.log_variance / self.span ** 2

    def __repr__(self) -> str:
        return f"SpeckleNoise(span={self.span:g}, looks={self.looks:g})"


NOISE_MODELS = {model.name: model for model in (GaussianNoise, PoissonNoise, PoissonGaussianNoise, SpeckleNoise)}


def get_noise_model(name_or_model: str | NoiseModel) -> NoiseModel:
    """The noise model of that name ('gaussian', 'poisson', 'poisson-gaussian' or 'speckle', with one look and
    span 1: ``SpeckleNoise(span, looks)`` for a run's); a model instance is returned as it is."""
    if isinstance(name_or_model, NoiseModel):
        return name_or_model
    model = NOISE_MODELS.get(name_or_model)
    if model is None:
        raise ValueError(f"unknown noise model {name_or_model!r}; use one of: {', '.join(NOISE_MODELS)}")
    return model()
