"""Radar speckle: its statistics (core/speckle.py), the log normalisation, the likelihood, the classical estimate in
the likelihood, the choice by noise='auto', and runs through the API and the command line."""

import json

import numpy as np
import pytest
import torch
from conftest import DEVICE
from skimage import data as images

import napari_dip
from napari_dip import DIPInputError, cli
from napari_dip.core import reference, speckle
from napari_dip.core.data import LogNormalisation, fit_log_normalisation
from napari_dip.core.noise import SpeckleNoise
from napari_dip.core.noise_fit import fit_noise
from napari_dip.io import write_image

TINY = dict(iterations=3, device=DEVICE, network_channels=8, ensemble=1)


def _scene(side=96):
    """A clean amplitude scene: the camera photo's centre, kept away from 0 as radar backscatter is."""
    photo = images.camera()[128:128 + side, 160:160 + side] / 255.0
    return (photo * 0.9 + 0.1) * 100.0


@pytest.mark.parametrize("looks", [1, 2, 4])
def test_log_moments_are_those_of_the_gamma_speckle(looks):
    samples = np.log(np.random.default_rng(looks).gamma(looks, 1.0 / looks, 400_000))
    mean, variance = speckle.log_moments(looks)
    assert mean == pytest.approx(samples.mean(), abs=0.01) and variance == pytest.approx(samples.var(), rel=0.02)
    if looks == 1:  # the closed forms: −γ and π²/6
        assert mean == pytest.approx(-np.euler_gamma) and variance == pytest.approx(np.pi ** 2 / 6)


@pytest.mark.parametrize("kind", speckle.SPECKLE_KINDS)
def test_simulated_speckle_has_the_theoretical_ratio_statistics(kind):
    clean = np.full((256, 256), 50.0)
    noisy = speckle.simulate(clean, 1, kind, np.random.default_rng(0))
    stats = speckle.ratio_statistics(noisy, clean, 1, kind)
    assert stats["ratio_mean"] == pytest.approx(stats["ratio_mean_theory"], rel=0.02)
    assert stats["ratio_cv"] == pytest.approx(stats["ratio_cv_theory"], rel=0.03)
    if kind == "amplitude":  # Rayleigh: √(4/π − 1)
        assert stats["ratio_cv_theory"] == pytest.approx(np.sqrt(4 / np.pi - 1))


@pytest.mark.parametrize("looks", [1, 2, 4])
@pytest.mark.parametrize("kind", speckle.SPECKLE_KINDS)
def test_the_looks_are_estimated_from_the_image(looks, kind):
    noisy = speckle.simulate(_scene(256), looks, kind, np.random.default_rng(looks))
    found, how = speckle.estimate_looks(speckle.intensity(noisy, kind))
    assert found == pytest.approx(looks, rel=0.12) and ("blocks" in how or "Haar" in how)
    # a texture everywhere leaves no homogeneous block (the blocks' spread said 1 look for brick at 4 looks): the
    # finest detail of the logarithm still finds the speckle
    brick = 10.0 + images.brick()[:256, :256] / 255.0 * 90.0
    textured = speckle.simulate(brick, looks, kind, np.random.default_rng(looks))
    assert speckle.estimate_looks(speckle.intensity(textured, kind))[0] == pytest.approx(looks, rel=0.12)
    # and the measure of a result: pure speckle of L looks has an equivalent number of looks near L in its most
    # homogeneous block, a smoothed one far more
    flat = speckle.simulate(np.full((240, 240), 10.0), looks, kind, np.random.default_rng(7))
    assert 0.5 * looks < speckle.equivalent_looks(speckle.intensity(flat, kind)) < 2.5 * looks


def test_the_log_normalisation_maps_zeros_and_inverts_to_the_reflectivity():
    planes = np.array([[[[0.0, 1.0], [4.0, 9.0]]]])
    norm = fit_log_normalisation(planes, np.zeros(planes.shape, bool), power=2.0, bias=-0.5)
    units = norm.forward(planes)
    assert np.isfinite(units).all()  # the zero is put at half the smallest positive value
    x = np.array([1.0, 2.0, 30.0])
    # a pixel's own estimate of the reflectivity is its log less the speckle's mean: x · exp(−bias / power)
    assert np.allclose(norm.inverse(norm.forward(x)), x * np.exp(0.5 / 2), rtol=1e-5)
    assert np.allclose(norm.inverse(norm.forward_result(x)), x, rtol=1e-5)  # a result has no speckle
    # a small log error δ is a relative amplitude error δ / 2
    assert norm.mse_in_units(1e-4, np.full(4, 3.0)) == pytest.approx(1e-4 * norm.span ** 2 * 9 / 4)
    assert isinstance(norm, LogNormalisation)


def test_the_speckle_likelihood_is_least_at_the_reflectivity_and_its_heldout_score_is_unbiased():
    looks, span = 1.0, 8.0
    model = SpeckleNoise(span, looks)
    truth = 0.4  # log reflectivity in the network's units
    log_speckle = np.log(np.random.default_rng(3).gamma(looks, 1 / looks, 200_000))
    target = torch.from_numpy(truth + (log_speckle - model.bias) / span)  # as LogNormalisation lays data out
    candidates = np.linspace(truth - 0.1, truth + 0.1, 81)
    terms = [float(model.data_term(torch.full_like(target, c), target, None)) for c in candidates]
    assert candidates[int(np.argmin(terms))] == pytest.approx(truth, abs=0.005)
    # the held-out score at the truth is the noise variance the loop subtracts: the estimate of the error is ≈ 0
    score = float(model.heldout_score(torch.full_like(target, truth), target, torch.ones_like(target)))
    assert score == pytest.approx(model.variance(None, {}), rel=0.02)
    # far off, the data term stays finite
    assert np.isfinite(float(model.data_term(torch.full_like(target, -20.0), target, None)))


def test_block_matching_in_the_likelihood_beats_the_homomorphic_estimate_on_one_look():
    clean = _scene(128)
    noisy = speckle.simulate(clean, 1, "amplitude", np.random.default_rng(4))
    bias, variance = speckle.log_moments(1)
    planes = noisy[None, None].astype(np.float64)
    norm = fit_log_normalisation(planes, np.zeros(planes.shape, bool), 2.0, bias)
    units = norm.forward(noisy)[None]
    homomorphic = reference.block_matching(units, np.sqrt(variance) / norm.span)
    likelihood = reference.speckle_block_matching(units, np.ones_like(units), 1.0, norm.span,
                                                  reference.block_matching)

    def psnr(estimate):
        amplitude = norm.inverse(estimate[0])
        return 10 * np.log10(np.ptp(clean) ** 2 / np.mean((amplitude - clean) ** 2))

    assert psnr(likelihood) > psnr(homomorphic) + 0.5


@pytest.mark.parametrize("looks, kind", [(1, "amplitude"), (2, "intensity")])
def test_auto_recognises_speckle(looks, kind):
    noisy = speckle.simulate(_scene(256), looks, kind, np.random.default_rng(5))
    fitted = fit_noise(noisy[None, None])
    assert fitted.model == "speckle" and "proportion" in fitted.reason


def test_photon_counts_with_an_offset_are_not_speckle():
    # a camera's dark offset makes the variance rise steeply above it (Var = a · (mean − offset)): a line, not
    # the square of the mean (benchmarks/noise_choice.py checks the whole grid)
    photons = _scene(256) / 100.0 * 8  # 1 to 8 photons
    rng = np.random.default_rng(6)
    adu = 2.0 * rng.poisson(photons) + 100.0 + rng.normal(0, 1.0, photons.shape)
    assert fit_noise(adu[None, None]).model == "poisson-gaussian"


def test_a_speckled_image_is_restored_and_the_record_says_how():
    clean = _scene(64)
    noisy = speckle.simulate(clean, 1, "amplitude", np.random.default_rng(8))
    restored = napari_dip.restore(noisy, noise="speckle", ground_truth=clean, **TINY)
    parameters = restored.record.parameters
    assert parameters["noise"] == "speckle" and parameters["speckle"]["kind"] == "amplitude"
    assert parameters["speckle"]["looks"] >= 1 and parameters["speckle"]["looks_estimated"]
    assert np.isfinite(restored.image).all() and restored.image.min() > 0
    assert "speckle (amplitude" in napari_dip.api.noise_summary(parameters)
    given = napari_dip.restore(noisy, noise="auto", looks=2, **TINY).record.parameters
    assert given["noise"] == "speckle" and given["speckle"]["looks"] == 2  # looks say what the noise is


def test_complex_data_are_restored_as_their_amplitude():
    rng = np.random.default_rng(9)
    amplitude = _scene(64)
    field = amplitude * (rng.normal(size=amplitude.shape) + 1j * rng.normal(size=amplitude.shape)) / np.sqrt(2)
    before = field.copy()
    restored = napari_dip.restore(field, **TINY)
    assert restored.record.parameters["noise"] == "speckle"
    assert "amplitude" in restored.record.parameters["complex_input"]
    assert restored.image.dtype == np.float32 and np.isrealobj(restored.image)
    assert np.array_equal(field, before)  # the user's data are not touched
    with pytest.raises(DIPInputError, match="complex"):
        napari_dip.restore(field, noise="gaussian", **TINY)


@pytest.mark.parametrize("options, message", [
    (dict(noise="speckle", looks=0.5), "looks must be a number ≥ 1"),
    (dict(noise="gaussian", looks=1), "use it with noise='speckle'"),
    (dict(noise="speckle", speckle="power"), "amplitude"),
])
def test_bad_speckle_options_say_what_to_do(options, message):
    with pytest.raises(DIPInputError, match=message):
        napari_dip.restore(_scene(32), **options, **TINY)


def test_negative_values_are_not_speckle():
    image = _scene(32) - 50.0
    with pytest.raises(DIPInputError, match="dB"):
        napari_dip.restore(image, noise="speckle", **TINY)


def test_the_command_line_takes_looks_and_the_kind(tmp_path):
    noisy = speckle.simulate(_scene(48), 1, "intensity", np.random.default_rng(10))
    write_image(tmp_path / "sar.tif", noisy)
    code = cli.main(["restore", str(tmp_path / "sar.tif"), "-o", str(tmp_path / "out.tif"), "--noise", "speckle",
                     "--looks", "1", "--speckle", "intensity", "--iterations", "3", "--device", DEVICE, "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["parameters"]["speckle"] == {"kind": "intensity", "looks": 1.0, "looks_estimated": None}


def test_looks_below_one_from_texture_fall_back_to_one_look_and_say_so():
    # pure texture at every scale: no homogeneous block, the blocks' spread overstates the speckle
    texture = np.random.default_rng(11).gamma(0.7, 1.0, (128, 128)) + 0.05
    noisy = speckle.simulate(texture, 1, "intensity", np.random.default_rng(12))
    record = napari_dip.restore(noisy, noise="speckle", speckle="intensity", **TINY).record.parameters
    assert record["speckle"]["looks"] == 1.0 and "one look assumed" in record["speckle"]["looks_estimated"]


def test_an_amortised_speckle_run_teaches_the_reflectivity_not_the_speckles_mean():
    from test_amortised import QUICK

    clean = np.stack([_scene(96), _scene(96)[::-1]])
    noisy = speckle.simulate(clean, 1, "amplitude", np.random.default_rng(13))
    options = dict(QUICK, iterations=200)
    run = napari_dip.restore_iter(noisy, noise="speckle", amortise=True, student_steps=60,
                                  amortise_margin=50.0, **options)
    list(run)
    record = run.result.record
    assert record.amortised["used"] and record.parameters["noise"] == "speckle"
    # the looks it found and ran with, in the record
    assert record.parameters["speckle"]["looks"] == pytest.approx(1.0, abs=0.2)
    assert record.parameters["speckle"]["looks_estimated"]
    # a teacher's result is a reflectivity, with no log-speckle mean to take out: taught as the noisy data are, the
    # student would come out brighter by exp(γ / 2) ≈ 1.33
    assert np.mean(run.result.image) == pytest.approx(np.mean(clean), rel=0.1)
    # a 60-step student is far from DIP; block matching in the speckle likelihood, mixed in after it with the
    # weight the judge crop's hidden pixels choose, takes most of the weight
    mixed = record.amortised["mixed_with"]
    assert mixed["method"] == "block matching in the speckle likelihood" and mixed["used"]
    assert mixed["network_weight"] < 0.5
    assert mixed["predicted_gain_db"] is None or mixed["predicted_gain_db"] > 1.0

    def psnr(image):
        return 10 * np.log10(np.ptp(clean) ** 2 / np.mean((image - clean) ** 2))

    assert psnr(run.result.image) > psnr(noisy) + 8.0
