"""The public API: layouts, dtypes, padding, records, stopping and every bad input."""

import os

import numpy as np
import pytest
from conftest import DEVICE

import napari_dip
from napari_dip import DIPInputError, DIPMemoryError

# a tiny network and few iterations: these tests check plumbing, not quality
TINY = dict(network_down=(8, 16), network_up=(8, 16), network_skip=(2, 2), input_channels=4,
            iterations=4, snapshot_every=2, device=DEVICE)


def _image(shape=(24, 40), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 200).astype(dtype)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, napari_dip; print('torch' in sys.modules)"
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")  # also when not installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env).stdout.strip() == "False"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_any_numeric_dtype_gives_float32_in_input_units(dtype):
    img = _image(dtype=dtype)
    result = napari_dip.restore(img, **TINY)
    assert result.image.dtype == np.float32 and result.image.shape == img.shape
    # the output lives in the input's intensity range (sigmoid output mapped back)
    assert result.image.min() >= img.min() - 1e-3 and result.image.max() <= img.max() + 1e-3


def test_sides_that_are_not_multiples_of_32_come_back_whole():
    img = _image((37, 53))
    assert napari_dip.restore(img, **TINY).image.shape == (37, 53)


def test_the_callers_arrays_are_not_modified():
    img = _image()
    img[3, 4] = np.nan
    mask = np.zeros(img.shape, np.uint8)
    mask[5:9, 5:9] = 1
    img_copy, mask_copy = img.copy(), mask.copy()
    napari_dip.restore(img, "inpaint", mask=mask, **TINY)
    np.testing.assert_array_equal(img, img_copy)
    np.testing.assert_array_equal(mask, mask_copy)


def test_channels_anywhere_and_many_bands():
    rgb = _image((24, 32, 3))
    assert napari_dip.restore(rgb, channel_axis=-1, **TINY).image.shape == (24, 32, 3)
    bands = _image((8, 24, 32))  # 8-band multispectral, channels first
    assert napari_dip.restore(bands, channel_axis=0, **TINY).image.shape == (8, 24, 32)


def test_a_stack_is_restored_plane_by_plane_with_progress_over_planes():
    stack = _image((3, 24, 24))
    snapshots = list(napari_dip.restore_iter(stack, **TINY))
    assert sorted({s.plane for s in snapshots}) == [0, 1, 2]
    assert all(s.planes == 3 for s in snapshots)
    final = snapshots[-1]
    assert final.done and final.image.shape == (3, 24, 24)
    assert final.record.iterations_per_unit == [4, 4, 4] and final.record.work_unit == "plane"


def test_a_volume_is_restored_with_a_3d_network():
    vol = _image((16, 16, 16))
    result = napari_dip.restore(vol, volumetric=True, **TINY)
    assert result.image.shape == vol.shape and result.record.planes == 1


def test_nan_pixels_are_treated_as_missing():
    img = _image()
    img[2:6, 2:6] = np.nan
    result = napari_dip.restore(img, **TINY)
    assert np.isfinite(result.image).all()
    assert result.record.parameters["missing_pixels"] == 16


def test_superres_multiplies_y_and_x_by_the_factor():
    img = _image((20, 12, 3))
    result = napari_dip.restore(img, "superres", factor=2, channel_axis=-1, **TINY)
    assert result.image.shape == (40, 24, 3)


def test_deconvolve_guided_and_poisson_run():
    img = _image()
    assert napari_dip.restore(img, "deconvolve", psf_sigma=1.0, **TINY).image.shape == img.shape
    guide = _image(seed=3)
    assert napari_dip.restore(img, "guided", guide=guide, **TINY).image.shape == img.shape
    pan = _image((48, 80), seed=4)  # pansharpening: guide at twice the resolution
    assert napari_dip.restore(img, "guided", guide=pan, factor=2, **TINY).image.shape == (48, 80)
    counts = np.random.default_rng(0).poisson(5, (24, 24)).astype(np.uint16)
    assert napari_dip.restore(counts, noise="poisson", **TINY).image.shape == counts.shape


def test_record_says_how_the_result_was_made():
    img = _image()
    result = napari_dip.restore(img, ground_truth=img, seed=7, **TINY)
    record = result.record
    for key in ("task", "preset", "parameters", "iterations", "stop_reason", "seconds", "device", "version",
                "metrics"):
        assert key in record.as_dict()
    assert record.task == "denoise" and record.preset == "fast" and record.iterations == 4
    assert record.parameters["seed"] == 7 and record.parameters["settings"]["iterations"] == 4
    assert set(record.metrics) >= {"psnr", "ssim", "psnr_input"}
    assert record.version["napari_dip"] == napari_dip.__version__


def test_same_seed_same_result_through_the_api():
    img = _image()
    # exact repeats: a CPU property (on a GPU, atomic additions make runs differ by rounding; conftest.DEVICE)
    a = napari_dip.restore(img, seed=1, **dict(TINY, device="cpu")).image
    b = napari_dip.restore(img, seed=1, **dict(TINY, device="cpu")).image
    np.testing.assert_array_equal(a, b)


def test_stop_keeps_the_best_result_so_far():
    img = _image()
    run = napari_dip.restore_iter(img, **{**TINY, "iterations": 1000, "snapshot_every": 2})
    snapshots = []
    for snapshot in run:
        snapshots.append(snapshot)
        run.stop()
    assert len(snapshots) == 2 and snapshots[-1].done
    assert snapshots[-1].stop_reason == "stopped by user"
    assert run.result.image.shape == img.shape and np.isfinite(run.result.image).all()


# ---- bad input: a clear DIPInputError, never a traceback from torch

@pytest.mark.parametrize("image, match", [
    (np.zeros((0, 5)), "empty"),
    (np.zeros((1, 1)), "too small"),
    (np.zeros(10), "expected an image"),
    (np.array([["a", "b"]]), "numbers"),
    (np.zeros((64, 64, 3)), "channel_axis=-1"),
])
def test_bad_images(image, match):
    with pytest.raises(DIPInputError, match=match):
        napari_dip.restore(image, **TINY)


@pytest.mark.parametrize("image, match", [
    (None, r"no image was given.*pass the image as an array"),
    ("cells.tif", r"file name.*read the file first"),
    ([[1.0, 2.0], [3.0]], "could not be read as an array"),
    (np.float32(3.0), "expected an image"),
])
def test_no_image_or_not_an_array(image, match):
    # with the default tile_size='auto' these used to fail inside the tiling decision (max() of nothing)
    with pytest.raises(DIPInputError, match=match):
        napari_dip.restore(image, **TINY)


@pytest.mark.parametrize("arguments, match", [
    (dict(tile_size="big"), r"tile_size must be 'auto'.*pixels such as 512.*None"),
    (dict(tile_size=4.5), "tile_size must be"),
    (dict(tile_size=True), "tile_size must be"),
    (dict(tile_size=16, overlap="wide"), r"overlap must be a whole number of pixels ≥ 0"),
    (dict(tile_size=16, overlap=-1), "overlap must be"),
    (dict(percentiles=(90, 10)), r"percentiles must be two numbers \(low, high\) with 0 ≤ low < high ≤ 100"),
    (dict(percentiles=(50, 50)), "percentiles must be"),
    (dict(percentiles=(0, 200)), "percentiles must be"),
    (dict(percentiles=(1, 2, 3)), "percentiles must be"),
    (dict(percentiles="1,99"), "percentiles must be"),
])
def test_bad_tiling_and_percentiles(arguments, match):
    with pytest.raises(DIPInputError, match=match):
        napari_dip.restore(_image(), **TINY, **arguments)


def test_an_all_nan_image_is_not_blamed_on_a_mask():
    nan = np.full((24, 40), np.nan, np.float32)
    for task in ("denoise", "inpaint"):
        with pytest.raises(DIPInputError, match=r"no finite pixel \(all NaN or inf\)") as caught:
            napari_dip.restore(nan, task, **TINY)
        assert "mask" not in str(caught.value)


def test_bad_masks():
    img = _image()
    with pytest.raises(DIPInputError, match="mask has shape"):
        napari_dip.restore(img, "inpaint", mask=np.ones((5, 5)), **TINY)
    with pytest.raises(DIPInputError, match="hides every pixel"):
        napari_dip.restore(img, "inpaint", mask=np.ones(img.shape), **TINY)
    with pytest.raises(DIPInputError, match="marks no pixel"):
        napari_dip.restore(img, "inpaint", mask=np.zeros(img.shape), **TINY)
    # a NaN mask is not read as "every pixel missing": it is told how masks and NaN pixels work
    with pytest.raises(DIPInputError, match="mask has NaN values.*put the NaN in the image"):
        napari_dip.restore(img, "inpaint", mask=np.full(img.shape, np.nan), **TINY)


@pytest.mark.parametrize("setting, match", [
    (dict(lr=-1), r"lr \(the learning rate, e.g. 0.01\) must be positive; got -1"),
    (dict(lr="fast"), "lr .* must be positive"),
    (dict(ensemble=0), "ensemble .* must be positive"),
    (dict(student_steps=0), "student_steps .* must be positive"),
    (dict(reg_noise_std=-0.1), "reg_noise_std must be 0 or more"),
    (dict(ema=1.5), r"ema .* must lie in \[0, 1\)"),
])
def test_settings_out_of_range_are_input_errors_that_say_what_is_allowed(setting, match):
    with pytest.raises(DIPInputError, match=match):
        napari_dip.restore(_image(), **dict(TINY, **setting))


def test_bad_factors_psfs_names_and_devices():
    img = _image()
    with pytest.raises(DIPInputError, match="factor must be 2, 4 or 8"):
        napari_dip.restore(img, "superres", factor=3, **TINY)
    with pytest.raises(DIPInputError, match="takes no factor"):
        napari_dip.restore(img, "denoise", factor=2, **TINY)
    with pytest.raises(DIPInputError, match="too small"):
        napari_dip.restore(_image((6, 40)), "superres", factor=8, **TINY)
    with pytest.raises(DIPInputError, match="larger than the image"):
        napari_dip.restore(img, "deconvolve", psf=np.ones((31, 31)), **TINY)
    with pytest.raises(DIPInputError, match="needs a PSF"):
        napari_dip.restore(img, "deconvolve", **TINY)
    with pytest.raises(DIPInputError, match="unknown task"):
        napari_dip.restore(img, "sharpen", **TINY)
    with pytest.raises(DIPInputError, match="unknown preset"):
        napari_dip.restore(img, preset="slow", **TINY)
    with pytest.raises(DIPInputError, match="unknown setting"):
        napari_dip.restore(img, learning_rate=0.1, **TINY)
    with pytest.raises(DIPInputError, match="channels_last must be true, false or auto"):
        napari_dip.restore(img, channels_last="nhwc", **TINY)
    with pytest.raises(DIPInputError, match="guide"):
        napari_dip.restore(img, "guided", **TINY)
    with pytest.raises(DIPInputError, match="guide has shape"):
        napari_dip.restore(img, "guided", guide=np.ones((5, 5)), **TINY)
    with pytest.raises(DIPInputError, match="ground_truth has shape"):
        napari_dip.restore(img, ground_truth=np.ones((5, 5)), **TINY)
    with pytest.raises(DIPInputError, match="negative"):
        napari_dip.restore(img - 100, noise="poisson", **TINY)
    with pytest.raises(DIPInputError, match="unknown device"):
        napari_dip.restore(img, **{**TINY, "device": "tpu"})


def test_out_of_memory_says_how_much_and_what_to_try(monkeypatch):
    from napari_dip.core import loop

    def exhausted(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.50 GiB (GPU 0; 8.00 GiB total capacity)")
        yield

    monkeypatch.setattr(loop, "fit_units", exhausted)
    with pytest.raises(DIPMemoryError, match=r"2\.50 GiB.*preset='fast'.*tiling"):
        napari_dip.restore(_image(), **TINY)


def test_tiling_on_request_and_never_when_the_image_fits():
    img = _image((24, 100))
    tiled = napari_dip.restore(img, tile_size=48, overlap=16, **TINY)
    # 100 pixels in tiles of 48 that share 16: three tiles side by side
    tiling = tiled.record.tiling
    assert tiled.image.shape == img.shape and tiling["grid"] == [1, 3] and len(tiling["tiles"]) == 3
    whole = napari_dip.restore(img, **TINY)  # 'auto': a small image is one run
    assert whole.record.tiling is None and "tiling" not in whole.record.as_dict()


def test_channels_per_level_on_a_light_preset_mean_a_skip_network():
    from napari_dip.core.networks import NetworkSpec
    from napari_dip.core.presets import Settings, apply_overrides

    light = Settings(network=NetworkSpec(kind="light", channels=16, levels=3), ensemble=2)  # pinned: no preset
    changed = apply_overrides(light, {"network_down": (8, 16), "network_up": (8, 16), "network_skip": (2, 2)})
    assert changed.network.kind == "skip" and changed.ensemble == 1
    assert apply_overrides(light, {"network_kind": "hourglass"}).ensemble == 1


def test_options_are_one_typed_object_and_other_keywords_are_settings():
    import inspect

    from napari_dip.options import RestoreOptions

    options = RestoreOptions.from_keywords(task="inpaint", preset="fast", lr=0.002, network_kind="light",
                                           tile_size=None)
    assert options.task == "inpaint" and options.tile_size is None and options.overlap == 64
    assert options.settings == {"lr": 0.002, "network_kind": "light"}
    signature = inspect.signature(napari_dip.restore_iter)
    fields = [f for f in RestoreOptions.__dataclass_fields__ if f != "settings"]
    assert list(signature.parameters) == ["image", *fields, "settings"]
    assert signature.parameters["preset"].default == "fast" and signature.parameters["overlap"].default == 64
    with pytest.raises(DIPInputError, match="unknown setting"):
        napari_dip.restore(np.zeros((16, 16), np.float32), "denoise", not_a_setting=1)
