"""A job's noise model and intensity mapping, from a sample of its measurements: the model that 'auto'
chooses, the looks of speckle, the camera's gain and offset, and the mapping to the network's units with its
noise estimate."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from .core import data, speckle
from .core.noise_fit import fit_noise
from .errors import DIPInputError

if TYPE_CHECKING:
    from .job import JobSpec


def choose_noise(spec: JobSpec, planes: np.ndarray, missing: np.ndarray) -> JobSpec:
    """``spec`` with noise='auto' replaced by the model the planes' mean-variance fit chooses (core/noise_fit.py);
    other specs as they are."""
    if spec.noise != "auto":
        return spec
    fitted = fit_noise(planes, missing)
    return dataclasses.replace(spec, noise=fitted.model, noise_fit=fitted.as_dict(),
                               parameters=dict(spec.parameters, noise=fitted.model, noise_fit=fitted.as_dict()))


def with_speckle_looks(spec: JobSpec, estimate: dict) -> JobSpec:
    """``spec`` with the looks of its speckle noise estimate in the record's parameters (estimated ones say how);
    other specs as they are."""
    if spec.noise != "speckle":
        return spec
    speckle = dict(spec.speckle, looks=estimate["looks"])
    recorded = dict(speckle, looks_estimated=estimate.get("looks_estimated"))
    return dataclasses.replace(spec, speckle=speckle, parameters=dict(spec.parameters, speckle=recorded))


def fit_intensities(spec: JobSpec, planes: np.ndarray, missing: np.ndarray):
    """The normalisation of ``planes`` (and the camera model for Poisson-Gaussian data) as a noise-estimate dict."""
    values = planes[~missing]
    estimate = {"model": spec.noise}
    if spec.noise == "gaussian":
        return data.fit_normalisation(values, spec.percentiles), estimate
    if spec.noise == "speckle":
        return _speckle_model(spec, planes, missing)
    camera = _camera_model(planes, missing, **spec.camera, fitted=spec.noise_fit) \
        if spec.noise == "poisson-gaussian" else {"gain": 1.0, "effective_offset": 0.0}
    normalisation = data.fit_normalisation(values, spec.percentiles, zero_low=True)
    # photon counts c = (y − effective offset) / gain map to c / (counts at 1) in the network's units
    normalisation = data.Normalisation(camera["effective_offset"],
                                       max(normalisation.high, camera["effective_offset"] + camera["gain"]))
    estimate.update(camera)
    estimate["photons_at_1"] = normalisation.span / camera["gain"]
    return normalisation, estimate


def _speckle_model(spec: JobSpec, planes: np.ndarray, missing: np.ndarray):
    """The log normalisation of speckled data, and the speckle's kind and looks (given, else estimated)."""
    kind, looks = spec.speckle["kind"], spec.speckle["looks"]
    estimate = {"model": "speckle", "speckle": kind}
    if looks is None:
        found, how = speckle.estimate_looks(speckle.intensity(np.where(missing, 0.0, planes), kind), missing)
        if found is None:
            looks, how = 1.0, f"{how}: one look assumed (pass looks= if you know it)"
        elif found < 1.0:
            looks, how = 1.0, f"{how} gave {found:.2f}, under one look (texture): one look assumed"
        else:
            looks = found
        estimate.update(looks=round(looks, 3), looks_estimated=how)
    else:
        estimate["looks"] = looks
    bias, variance = speckle.log_moments(looks)
    normalisation = data.fit_log_normalisation(planes, missing, speckle.POWER[kind], bias, spec.percentiles)
    estimate.update(log_bias=bias, log_variance=variance)
    return normalisation, estimate


def _camera_model(planes, missing, gain, offset, read_noise, fitted: dict | None = None) -> dict:
    """Gain and effective offset of Poisson-Gaussian camera data: the user's values, else estimated. With
    noise='auto' (``fitted``: the NoiseFit.as_dict that chose the model), where the camera estimate finds no rising
    variance (it fills masked pixels, which gaps can upset), the chosen model's own variance line gives them."""
    from .core.quality import estimate_camera_gain_offset

    values = planes[~missing]
    model = {"gain": gain, "offset": offset, "read_noise": read_noise, "estimated": []}
    if gain is None or offset is None:
        filled = np.where(missing, np.median(values), planes)
        try:
            fitted_gain, fitted_offset = estimate_camera_gain_offset(filled)
        except ValueError as exc:
            if not fitted:
                raise DIPInputError(str(exc)) from None
            fitted_gain, fitted_offset = _line_camera(fitted)
        if gain is None:
            model["gain"], gain = fitted_gain, fitted_gain
            model["estimated"].append("gain")
        if offset is None:
            # the fitted line's zero already folds the read noise in (offset − read_noise² / gain)
            model["estimated"].append("offset")
            model["effective_offset"] = fitted_offset
    if offset is not None:
        if offset >= float(values.max()):
            raise DIPInputError(f"the camera offset {offset} is at or above every pixel value (max "
                                f"{float(values.max()):.4g}): nothing would be left to count; check the offset")
        model["effective_offset"] = offset - (read_noise or 0.0) ** 2 / gain
    if float(np.median(values)) <= model["effective_offset"]:
        raise DIPInputError(f"half the pixels lie below the camera offset ({model['effective_offset']:.4g}): "
                            "check offset= (the dark level, in ADU) or use noise='gaussian'")
    return model


def _line_camera(fitted: dict) -> tuple[float, float]:
    """(gain, effective offset) of the variance line var = slope · mean + intercept: the slope, and where the line
    meets zero; over the channels whose variance rises, their median."""
    rising = [(a, b) for a, b in zip(fitted["slope"], fitted["intercept"]) if a > 0]
    if not rising:
        raise DIPInputError("the image's variance does not grow with its intensity: use noise='gaussian'")
    gain = float(np.median([a for a, _ in rising]))
    return gain, float(-np.median([b for _, b in rising]) / gain)
