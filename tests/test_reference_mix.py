"""Classical estimates mixed into the result (core/reference.py): the weight, what the judged estimate sees,
measured pixels kept, and what the record says."""

import numpy as np
import pytest
import torch
from conftest import DEVICE

import napari_dip
from napari_dip.core import reference
from napari_dip.core.mixing import ReferenceMix
from napari_dip.core.noise import masked_mean
from napari_dip.errors import DIPInputError

TINY = dict(preset="fast", device=DEVICE, iterations=60, snapshot_every=20, cpu_bf16=False)


def _smooth(side=48, seed=0):
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rng = np.random.default_rng(seed)
    return (100 + 60 * np.sin(3 * x + rng.random()) * np.cos(2 * y) + 40 * x).astype(np.float32)


def test_mixing_weight_is_least_squares_and_never_worse_than_either_estimate():
    rng = np.random.default_rng(1)
    truth = torch.from_numpy(rng.random((1, 1, 32, 32)).astype(np.float32))
    target = truth + 0.05 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(2))
    scored = (torch.rand((1, 1, 32, 32), generator=torch.Generator().manual_seed(3)) < 0.2).float()
    ref = truth + 0.2 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(4))
    iterate = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(5))
    mix = ReferenceMix(ref, ref, target, scored)
    mixed = mix.mix(iterate, iterate)
    w, error = mix.weight(), mix.error()
    assert 0.0 <= w <= 1.0
    assert torch.allclose(mixed, ref + w * (iterate - ref))
    # the least-squares weight: no other weight has a lower held-out error
    for other in np.linspace(0, 1, 21):
        assert error <= float(masked_mean((ref + other * (iterate - ref) - target) ** 2, scored)) + 1e-7
    # a perfect iterate takes all the weight; one no better than the reference at the held-out pixels, none
    mix.mix(target, target)
    assert mix.weight() == pytest.approx(1.0)
    mix.mix(ref + 1.0, ref + 1.0)
    assert mix.weight() == pytest.approx(0.0)


def test_judged_references_never_see_the_held_out_values():
    rng = np.random.default_rng(0)
    plane = rng.random((1, 40, 40)).astype(np.float32)
    held = (rng.random((1, 40, 40)) < 0.1).astype(np.float32)
    changed = np.where(held > 0, rng.random(plane.shape) * 10, plane).astype(np.float32)
    a = reference.nl_means(reference.neighbour_mean_fill(plane, held), 0.2)
    b = reference.nl_means(reference.neighbour_mean_fill(changed, held), 0.2)
    assert np.array_equal(a, b)
    known = (rng.random((1, 40, 40)) > 0.5).astype(np.float32)
    fitted = known * (1 - held)
    assert np.array_equal(reference.biharmonic_fill(plane, fitted), reference.biharmonic_fill(changed, fitted))
    # and the unjudged ones do see them (the test can fail)
    assert not np.array_equal(reference.nl_means(plane, 0.2), reference.nl_means(changed, 0.2))


def test_nl_means_keeps_the_channels_first_layout():
    rng = np.random.default_rng(0)
    for shape in [(1, 24, 32), (3, 24, 32), (1, 6, 24, 32)]:
        plane = rng.random(shape).astype(np.float32)
        assert reference.nl_means(plane, 0.1).shape == shape
    one = rng.random((1, 24, 32)).astype(np.float32)
    from skimage.restoration import denoise_nl_means
    expected = denoise_nl_means(one[0].astype(np.float64), h=0.08, sigma=0.1, fast_mode=True, patch_size=5,
                                patch_distance=6)
    assert np.allclose(reference.nl_means(one, 0.1)[0], expected, atol=1e-6)


def test_gap_distance_tells_scattered_pixels_from_a_hole():
    rng = np.random.default_rng(0)
    scattered = (rng.random((1, 64, 64)) > 0.5).astype(np.float32)
    hole = np.ones((1, 64, 64), np.float32)
    hole[0, 16:48, 16:48] = 0
    assert reference.mean_gap_distance(scattered) <= reference.MAX_SCATTERED_GAP
    assert reference.mean_gap_distance(hole) > reference.MAX_SCATTERED_GAP
    assert reference.mean_gap_distance(np.ones((1, 8, 8))) == 0.0


def test_inpainting_keeps_measured_pixels_and_reports_the_fill_weight():
    clean = _smooth()
    missing = np.random.default_rng(1).random(clean.shape) < 0.5
    damaged = np.where(missing, 0, clean).astype(np.float32)
    before = damaged.copy()
    result = napari_dip.restore(damaged, "inpaint", mask=missing, **TINY)
    assert np.array_equal(damaged, before)  # the input is not touched
    assert np.array_equal(result.image[~missing], damaged[~missing])  # measured pixels kept as measured
    mixed = result.record.quality["mixed_with"]
    assert mixed["used"] and mixed["method"] == "biharmonic" and 0.0 <= mixed["network_weight"] <= 1.0
    # on smooth content a short fit alone is far below the biharmonic fill; the mix is close to the fill
    from skimage.restoration import inpaint_biharmonic
    fill = inpaint_biharmonic(damaged, missing)
    alone = napari_dip.restore(damaged, "inpaint", mask=missing, mix_with=None, **TINY)

    def psnr(x):
        return 10 * np.log10(np.ptp(clean) ** 2 / np.mean((x - clean) ** 2))

    assert psnr(result.image) >= psnr(fill) - 1.0 and psnr(result.image) > psnr(alone.image) + 3.0


def test_a_wide_hole_gets_no_fill_and_the_record_says_why():
    clean = _smooth()
    hole = np.zeros(clean.shape, bool)
    hole[12:36, 12:36] = True
    result = napari_dip.restore(np.where(hole, 0, clean), "inpaint", mask=hole, **TINY)
    mixed = result.record.quality["mixed_with"]
    assert not mixed["used"] and "wide" in mixed["why"] and "network_weight" not in mixed


def test_denoising_mixes_the_strongest_installed_denoiser_for_both_noise_models(monkeypatch):
    assert reference.block_matching_available()  # bmnd is a dependency: installed with napari-dip
    clean = _smooth()
    rng = np.random.default_rng(2)
    gaussian = napari_dip.restore(clean + rng.normal(0, 10, clean.shape).astype(np.float32), "denoise", **TINY)
    counts = rng.poisson(clean / clean.max() * 20).astype(np.float32)
    poisson = napari_dip.restore(counts, "denoise", noise="poisson", **TINY)
    for result in (gaussian, poisson):
        mixed = result.record.quality["mixed_with"]
        # mix_with="auto": block matching (bmnd)
        expected = "block-matching"
        assert mixed["used"] and mixed["method"] == expected and 0.0 <= mixed["network_weight"] <= 1.0
        assert np.isfinite(result.image).all()
        # the CLI's summary line and the widget's status name the mix and its weight
        assert f"mixed with {expected} (network weight {mixed['network_weight']:.2f})" in \
            napari_dip.api.kept_summary(result.record.quality)
    # where bmnd does not load (its numba), non-local means takes its place
    monkeypatch.setattr(reference, "block_matching_available", lambda: False)
    fallback = napari_dip.restore(clean + rng.normal(0, 10, clean.shape).astype(np.float32), "denoise", **TINY)
    assert fallback.record.quality["mixed_with"]["method"] == "nl-means"
    # turned off: nothing mixed, nothing said
    plain = napari_dip.restore(clean, "denoise", mix_with=None, **TINY)
    assert "mixed_with" not in plain.record.quality


def test_unknown_mixing_method_is_a_clear_error():
    with pytest.raises(DIPInputError, match="mix_with"):
        napari_dip.restore(_smooth(), "denoise", mix_with="bm3d", **TINY)


def test_block_matching_without_its_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(reference, "block_matching_available", lambda: False)
    with pytest.raises(DIPInputError, match=r"pip install bmnd \(or mix_with='nl-means'\)"):
        napari_dip.restore(_smooth(), "denoise", mix_with="block-matching", **TINY)


def test_block_matching_denoises_and_is_mixed_in():
    clean = _smooth()
    noisy = clean + np.random.default_rng(3).normal(0, 10, clean.shape).astype(np.float32)
    denoised = reference.block_matching(noisy[None], 10.0)[0]
    assert denoised.shape == noisy.shape
    assert np.mean((denoised - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)
    result = napari_dip.restore(noisy, "denoise", noise="gaussian", mix_with="block-matching", **TINY)
    mixed = result.record.quality["mixed_with"]
    assert mixed["used"] and mixed["method"] == "block-matching" and 0.0 <= mixed["network_weight"] <= 1.0


def test_block_matching_leaves_torch_threads_alone_and_runs_repeat_exactly():
    # numba's OpenMP threads are torch's: bmnd once left torch on every core, undoing the thread governor's count
    # and making a second run in the same process differ from the first in its last bits, then in its stopping point
    import torch

    before = torch.get_num_threads()
    reference.block_matching(_smooth()[None], 10.0)
    assert torch.get_num_threads() == before
    stack = np.stack([_smooth() + np.random.default_rng(s).normal(0, 10, _smooth().shape) for s in range(3)])
    settings = dict(TINY, device="cpu", noise="gaussian", mix_with="block-matching", warm_start=False, workers=1)
    first, second = (napari_dip.restore(stack.astype(np.float32), "denoise", **settings) for _ in range(2))
    np.testing.assert_array_equal(first.image, second.image)


def _blurred_cells(side=40, seed=0, sigma_noise=1.0):
    """A piecewise-smooth image, its blur (Gaussian PSF σ = 1.5, reflect borders) with noise, and the PSF."""
    from napari_dip.core.operators import BlurOperator, gaussian_psf, prepare_psf

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    clean = np.full((side, side), 20.0, np.float32)
    for cy, cx, r, v in rng.uniform((0, 0, 3, 80), (side, side, 8, 200), (6, 4)):
        clean[(y - cy) ** 2 + (x - cx) ** 2 < r * r] += v
    psf = prepare_psf(gaussian_psf(1.5, 2))
    blurred = BlurOperator(psf)(torch.from_numpy(clean)[None, None])[0].numpy()
    return clean, (blurred + rng.normal(0, sigma_noise, blurred.shape)).astype(np.float32), psf


def test_richardson_lucy_deconvolves_and_its_judged_run_never_sees_the_held_out_values():
    clean, observed, psf = _blurred_cells()
    known = np.ones_like(observed)
    held = (np.random.default_rng(1).random(observed.shape) < 0.1).astype(np.float32)
    full, judged, count = reference.richardson_lucy(observed, known, held, psf)
    assert full.shape == judged.shape == observed.shape and full.dtype == np.float32
    assert 1 <= count <= reference.RICHARDSON_LUCY_MAX_ITERATIONS
    # sharper than the blurred measurement it started from
    assert np.mean((full - clean) ** 2) < 0.6 * np.mean((observed - clean) ** 2)
    changed = np.where(held > 0, observed + 50.0, observed).astype(np.float32)
    full_changed, judged_changed, count_changed = reference.richardson_lucy(changed, known, held, psf)
    assert count_changed == count and np.array_equal(judged_changed, judged)
    assert not np.array_equal(full_changed, full)  # the estimate from every pixel does see them


def test_richardson_lucy_moves_with_the_intensities_offset_and_takes_volumes():
    # the update needs positive values: the shift it makes comes off again, so an offset passes through
    _, observed, psf = _blurred_cells()
    held = (np.random.default_rng(2).random(observed.shape) < 0.1).astype(np.float32)
    low = reference.richardson_lucy(observed - 300.0, np.ones_like(observed), held, psf)
    high = reference.richardson_lucy(observed, np.ones_like(observed), held, psf)
    assert low[2] == high[2]
    np.testing.assert_allclose(low[0] + 300.0, high[0], atol=1e-2)
    volume = np.stack([observed[0]] * 4)[None]  # (C, Z, Y, X): a 2D PSF blurs each plane
    full, judged, _ = reference.richardson_lucy(volume, np.ones_like(volume), np.stack([held[0]] * 4)[None], psf)
    assert full.shape == volume.shape and np.isfinite(full).all()


def test_deconvolution_mixes_richardson_lucy_and_other_tasks_say_why_not():
    clean, observed, _ = _blurred_cells()
    result = napari_dip.restore(observed[0], "deconvolve", psf_sigma=1.5, **TINY)
    mixed = result.record.quality["mixed_with"]
    assert mixed["used"] and mixed["method"] == "richardson-lucy"
    assert 1 <= mixed["iterations"] <= reference.RICHARDSON_LUCY_MAX_ITERATIONS
    assert 0.0 <= mixed["network_weight"] <= 1.0 and np.isfinite(result.image).all()
    assert f"mixed with richardson-lucy (network weight {mixed['network_weight']:.2f})" in \
        napari_dip.api.kept_summary(result.record.quality)
    denoised = napari_dip.restore(observed[0], "denoise", mix_with="richardson-lucy", **TINY)
    note = denoised.record.quality["mixed_with"]
    assert not note["used"] and "blur" in note["why"]


def test_deconvolution_mixes_nothing_into_a_hole_the_psf_cannot_reach():
    clean, observed, _ = _blurred_cells()
    image = observed[0].copy()
    image[10:30, 10:30] = np.nan  # 10 px from the nearest measured pixel at its centre; the PSF reaches 5
    mixed = napari_dip.restore(image, "deconvolve", psf_sigma=1.5, **TINY).record.quality["mixed_with"]
    assert not mixed["used"] and "farther than the PSF reaches" in mixed["why"]
    image = observed[0].copy()
    image[10:13, 10:30] = np.nan  # a 3-row gap: within reach
    assert napari_dip.restore(image, "deconvolve", psf_sigma=1.5, **TINY).record.quality["mixed_with"]["used"]


def test_the_network_alone_is_taken_back_out_of_the_kept_mix_and_reported_beside_the_result():
    from types import SimpleNamespace

    from skimage.metrics import peak_signal_noise_ratio

    from napari_dip import job as job_module
    from napari_dip.core.data import PlaneLayout

    rng = np.random.default_rng(0)
    truth = rng.random((16, 16)).astype(np.float32)
    network = torch.from_numpy(truth + rng.normal(0, 0.05, truth.shape).astype(np.float32))[None, None]
    classical = torch.from_numpy(truth + rng.normal(0, 0.1, truth.shape).astype(np.float32))[None, None]
    weight = 0.3
    kept = classical + weight * (network - classical)  # what the loop keeps: r + w·(x − r)
    unit = SimpleNamespace(ground_truth=truth, layout=PlaneLayout(truth.shape, None, 2))
    state = SimpleNamespace(estimate=kept, best_iteration=None, current=None, best_mix_weight=weight,
                            heldout_error=None)
    step = job_module._step(unit, state, lambda t: t.numpy()[0], {"used": True}, classical)
    assert step.metrics["psnr"] == pytest.approx(peak_signal_noise_ratio(truth, kept.numpy()[0, 0],
                                                                         data_range=np.ptp(truth)), abs=1e-3)
    assert step.metrics["psnr_network"] == pytest.approx(
        peak_signal_noise_ratio(truth, network.numpy()[0, 0], data_range=np.ptp(truth)), abs=1e-3)
    # a run with block matching mixed in says what the network gave before the mix; one without, nothing
    clean = _smooth()
    noisy = clean + np.random.default_rng(3).normal(0, 10, clean.shape).astype(np.float32)
    mixed = napari_dip.restore(noisy, "denoise", noise="gaussian", mix_with="block-matching", ground_truth=clean,
                               **TINY)
    assert mixed.record.quality["mixed_with"]["used"] and np.isfinite(mixed.record.metrics["psnr_network"])
    alone = napari_dip.restore(noisy, "denoise", noise="gaussian", mix_with=None, ground_truth=clean, **TINY)
    assert "psnr_network" not in alone.record.metrics
