"""The noise models (core/noise.py) against their definitions, and in the loop."""

import numpy as np
import pytest
import torch
from conftest import DEVICE
from scipy import stats

import napari_dip
from napari_dip import job
from napari_dip.core.loop import Problem, fit
from napari_dip.core.networks import NetworkSpec
from napari_dip.core.noise import (
    NOISE_MODELS,
    GaussianNoise,
    PoissonGaussianNoise,
    PoissonNoise,
    StabilisedPoissonNoise,
    get_noise_model,
    masked_mean,
)
from napari_dip.core.presets import Settings


def test_models_are_found_by_name_and_instances_pass_through():
    assert isinstance(get_noise_model("gaussian"), GaussianNoise) and GaussianNoise.name == "gaussian"
    assert isinstance(get_noise_model("poisson"), PoissonNoise) and PoissonNoise.name == "poisson"
    model = PoissonNoise()
    assert get_noise_model(model) is model


def test_the_api_offers_exactly_the_core_models():
    # job.py keeps the names as plain strings so that importing napari_dip does not import torch
    assert job.NOISE_MODELS == ("auto", *NOISE_MODELS)  # auto: one of them, chosen from the image
    assert isinstance(get_noise_model("poisson-gaussian"), PoissonGaussianNoise)


def test_variance_is_sigma_squared_or_the_normalised_counts():
    target = np.array([[0.5, 2.0]])
    assert GaussianNoise().variance(target, {"sigma_normalised": 0.1}) == pytest.approx(0.01)
    # a count c has variance c; y = c / photons_at_1, so var(y) = c / photons_at_1² = y / photons_at_1
    np.testing.assert_allclose(PoissonNoise().variance(target, {"photons_at_1": 100.0}), target / 100.0)


def test_an_unknown_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown noise model 'laplace'; use one of: gaussian, poisson"):
        get_noise_model("laplace")


def test_masked_mean_averages_over_the_selected_pixels_only():
    values = torch.tensor([[1.0, 2.0], [3.0, 10.0]])
    assert float(masked_mean(values, None)) == 4.0
    assert float(masked_mean(values, torch.tensor([1.0, 0.0]))) == 2.0  # broadcast: the first column
    assert float(masked_mean(values, torch.zeros(2, 2))) == 0.0  # nothing selected: no division by zero


def test_gaussian_data_term_is_the_mean_squared_error_over_the_known_pixels():
    rng = np.random.default_rng(0)
    prediction, target = rng.random(50), rng.random(50)
    known = rng.random(50) > 0.3
    got = GaussianNoise().data_term(torch.from_numpy(prediction), torch.from_numpy(target),
                                    torch.from_numpy(known.astype(np.float64)))
    assert np.isclose(float(got), np.mean((prediction[known] - target[known]) ** 2), rtol=1e-12)


def test_poisson_data_term_is_the_negative_log_likelihood_minus_its_minimum():
    rng = np.random.default_rng(1)
    counts = rng.poisson(20.0, 40).astype(np.float64)
    rate = counts + rng.normal(0, 3, 40).clip(-15, None)
    # -log p(y | a) + log p(y | y): the likelihood is highest where the rate is the count
    expected = np.mean(stats.poisson.logpmf(counts, counts) - stats.poisson.logpmf(counts, rate))
    got = PoissonNoise().data_term(torch.from_numpy(rate), torch.from_numpy(counts), None)
    assert np.isclose(float(got), expected, rtol=1e-6)
    y = torch.tensor([0.0, 0.5, 2.0])
    assert abs(float(PoissonNoise().data_term(y, y, None))) < 1e-6


def test_the_stabilised_data_term_is_the_squared_error_after_anscombe_and_near_a_fit_the_deviance():
    photons_at_1 = 50.0
    rng = np.random.default_rng(2)
    target = torch.from_numpy(rng.uniform(0.2, 1.0, 200))  # 10-50 photons, in normalised units
    prediction = target * torch.from_numpy(rng.uniform(0.8, 1.2, 200))
    model = StabilisedPoissonNoise(photons_at_1)
    anscombe = lambda x: 2 * np.sqrt(x.numpy() * photons_at_1 + 3 / 8)  # noqa: E731
    # the squared error of the transformed counts (variance about 1), scaled by 1 / (2 · photons at 1)
    expected = np.mean((anscombe(prediction) - anscombe(target)) ** 2) / (2 * photons_at_1)
    assert float(model.data_term(prediction, target, None)) == pytest.approx(expected, rel=1e-9)
    assert float(model.data_term(target, target, None)) == 0.0
    # near a fit it is the deviance's (a − y)² / 2a, so the learning rate means the same for either loss
    close = target * 1.01
    ratio = float(model.data_term(close, target, None)) / float(PoissonNoise().data_term(close, target, None))
    assert ratio == pytest.approx(1.0, abs=0.02)


def test_photon_loss_chooses_the_data_term_of_photon_counts_and_refuses_others():
    counts = np.random.default_rng(3).poisson(np.full((32, 32), 20.0)).astype(np.float32)
    runs = {loss: napari_dip.restore(counts, noise="poisson", photon_loss=loss, iterations=3, auto_stop=False,
                                     device="cpu", seed=0) for loss in ("deviance", "stabilised")}
    assert runs["stabilised"].record.parameters["settings"]["photon_loss"] == "stabilised"
    assert not np.array_equal(runs["stabilised"].image, runs["deviance"].image)  # same seed: the loss differs
    with pytest.raises(napari_dip.DIPInputError, match="photon_loss must be 'deviance' or 'stabilised'"):
        napari_dip.restore(counts, noise="poisson", photon_loss="anscombe", iterations=2, device=DEVICE)


@pytest.mark.parametrize("model", [GaussianNoise(), PoissonNoise()])
def test_heldout_score_is_the_squared_error_at_the_scored_pixels(model):
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    prediction = torch.tensor([1.5, 2.0, 100.0, 3.0])
    scored = torch.tensor([1.0, 1.0, 0.0, 1.0])
    assert np.isclose(float(model.heldout_score(prediction, target, scored)), (0.25 + 0.0 + 1.0) / 3)


def test_heldout_score_minus_the_noise_variance_estimates_the_true_error():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(200_000, generator=generator)
    sigma = 0.1
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
    result = clean + 0.05  # true squared error 0.0025
    estimated = float(GaussianNoise().heldout_score(result, noisy, torch.ones_like(clean))) - sigma ** 2
    assert abs(estimated - 0.0025) < 1e-4


def _fit(noise, device=DEVICE, **problem):
    target = torch.rand((1, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 4
    settings = Settings(network=NetworkSpec(kind="skip", down=(8, 16), up=(8, 16), skip=(2, 2)), input_channels=4,
                        iterations=20, snapshot_every=10, ema=None, backtracking=False, early_stopping=False, lr=0.01)
    return list(fit(Problem(target=target, out_channels=1, out_spatial=(16, 16), noise=noise, **problem), settings,
                    device=device))


def test_the_loop_takes_a_model_or_its_name_alike():
    heldout = (torch.rand((1, 1, 16, 16), generator=torch.Generator().manual_seed(1)) < 0.1).float()
    for name, model in (("gaussian", GaussianNoise()), ("poisson", PoissonNoise())):
        # exact repeats: a CPU property (on a GPU, atomic additions make runs differ by rounding)
        by_name, by_model = _fit(name, "cpu", heldout=heldout)[-1], _fit(model, "cpu", heldout=heldout)[-1]
        assert torch.equal(by_name.estimate, by_model.estimate)
        assert by_name.heldout_error == by_model.heldout_error is not None
    gaussian, poisson = _fit("gaussian")[-1], _fit("poisson")[-1]
    assert not torch.equal(gaussian.output, poisson.output)  # the data term is the model's


def test_the_loop_refuses_an_unknown_noise_model():
    with pytest.raises(ValueError, match="unknown noise model"):
        _fit("laplace")


def test_a_custom_model_drives_the_loop():
    class AbsoluteError(GaussianNoise):
        name = "absolute"
        calls = 0

        def data_term(self, prediction, target, known):
            self.calls += 1
            return masked_mean((prediction - target).abs(), known)

    model = AbsoluteError()
    _fit(model)
    assert model.calls == 20
