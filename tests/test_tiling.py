"""Tiled restoration: tile plans, blending windows, and runs with no seams."""

from dataclasses import dataclass

import numpy as np
import pytest
from conftest import DEVICE
from scipy import ndimage

import napari_dip.executor as executor
import napari_dip.unit_fit as unit_fit
from napari_dip import restore, restore_iter
from napari_dip.core.tiling import auto_tile_size, plan_tiles
from napari_dip.errors import DIPInputError
from napari_dip.job import UnitStep

# a tiny skip network with the paper's loop settings, pinned so that retuning the CPU presets
# does not change what these tests measure
TINY = dict(network_kind="skip", network_down=(8, 16), network_up=(8, 16), network_skip=(2, 2), input_channels=4,
            reg_noise_std=1 / 30, backtracking=True, ema_warmup=True, cpu_bf16=False, device=DEVICE)


@pytest.mark.parametrize("shape", [(7, 5), (64, 64), (100, 37), (131, 257)])
@pytest.mark.parametrize("tile_size, overlap", [(16, 0), (16, 1), (32, 8), (48, 31), (33, 12)])
@pytest.mark.parametrize("factor", [1, 2, 4])
def test_windows_sum_to_one_everywhere(shape, tile_size, overlap, factor):
    plan = plan_tiles(shape, tile_size, overlap, factor)
    total = np.zeros((shape[0] * factor, shape[1] * factor))
    for tile in plan.tiles:
        ys, xs = tile.slices(factor)
        window = plan.window(tile)
        assert window.shape == total[ys, xs].shape and window.min() >= 0
        total[ys, xs] += window
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_tiles_cover_the_image_with_the_overlap_asked_for():
    plan = plan_tiles((1000, 700), 256, 64)
    assert plan.grid == (5, 4)
    rows = [t.y for t in plan.tiles if t.col == 0]
    assert rows[0][0] == 0 and rows[-1][1] == 1000
    assert all(b - a == 256 for a, b in rows)
    assert all(a[1] - b[0] >= 64 for a, b in zip(rows, rows[1:]))
    assert plan_tiles((100, 80), 512, 64).grid == (1, 1)  # small images are one tile


def test_window_gives_no_weight_near_inner_tile_edges():
    plan = plan_tiles((200, 200), 100, 40)
    window = plan.window(plan.tiles[0])
    assert window[:, -10:].max() == 0 and window[-10:, :].max() == 0  # a quarter of the overlap is dropped
    assert window[0, 0] == 1  # the image border keeps full weight


@dataclass
class FinishedState:
    """The last loop state of a fake fit."""

    iteration: int = 1
    total: int = 1
    loss: float = 0.0
    backtracks: int = 0
    done: bool = True
    stop_reason: str = "fake"
    fitted: object = None  # nothing for a neighbour to start from


def fake_fit(process, calls=None):
    """A stand-in for the executor's fit: per unit one final step whose result is ``process(unit's input, job)``."""
    def fit_units_together(jobs, should_stop, start_from=None):
        for index, job in enumerate(jobs):
            if calls is not None:
                calls.append(job)
            yield index, UnitStep(FinishedState(), process(job.input_image.astype(np.float32), job))
    return fit_units_together


def seam_and_inside_masks(shape, plan, width=2, rim=10):
    """Pixels within ``width`` of an inner tile edge, and all other pixels, both away from the image rim."""
    border = np.zeros(shape, bool)
    for tile in plan.tiles:
        for edge in tile.y:
            if 0 < edge < shape[0]:
                border[max(edge - width, 0):edge + width] = True
        for edge in tile.x:
            if 0 < edge < shape[1]:
                border[:, max(edge - width, 0):edge + width] = True
    away = np.zeros(shape, bool)
    away[rim:-rim, rim:-rim] = True
    return border & away, ~border & away


def test_blending_hides_the_edge_artefacts_of_each_tile(monkeypatch):
    # a "restorer" with strong edge artefacts: a blur that pads with a constant
    blur = fake_fit(lambda tile, job: ndimage.gaussian_filter(tile, 2, mode="constant", cval=tile.mean()))
    monkeypatch.setattr(unit_fit, "fit_units_together", blur)
    y, x = np.mgrid[0:100, 0:140].astype(np.float32)
    gradient = 50 + y + 2 * x  # smooth: the blur is exact on it away from any edge

    hard = restore(gradient, tile_size=48, overlap=0)
    border, inside = seam_and_inside_masks(gradient.shape, plan_tiles(gradient.shape, 48, 0))
    error = np.abs(hard.image - gradient)
    assert error[border].mean() > 10 * (error[inside].mean() + 0.01)  # without overlap the seams show

    blended = restore(gradient, tile_size=48, overlap=32)
    border, inside = seam_and_inside_masks(gradient.shape, plan_tiles(gradient.shape, 48, 32))
    error = np.abs(blended.image - gradient)
    assert error[border].max() <= error[inside].max() + 1e-3
    assert error[border | inside].max() < 1e-3


def test_identity_restorer_gives_back_the_image_and_cuts_every_array(monkeypatch):
    calls = []
    monkeypatch.setattr(unit_fit, "fit_units_together", fake_fit(lambda tile, job: tile, calls))
    image = np.random.default_rng(0).random((50, 70, 3)).astype(np.float32)
    mask = np.zeros((50, 70), np.uint8)
    mask[10:12, 10:60] = 1
    result = restore(image, "denoise", channel_axis=-1, mask=mask, ground_truth=image,
                                 tile_size=32, overlap=8)
    np.testing.assert_allclose(result.image, image, atol=1e-5)
    assert len(calls) == len(result.record.tiling["tiles"]) == len(result.record.units) == 6
    for job, entry in zip(calls, result.record.tiling["tiles"]):
        height, width = entry["y"][1] - entry["y"][0], entry["x"][1] - entry["x"][0]
        assert job.input_image.shape == (height, width, 3) and job.ground_truth.shape == (height, width, 3)
        expected_missing = mask[slice(*entry["y"]), slice(*entry["x"])].sum()
        assert job.missing_pixels == 3 * expected_missing  # the mask is cut with the tile, for every channel
    assert image.flags.writeable and mask.sum() == 100  # the caller's arrays are untouched


def test_tiles_with_nothing_to_fit_or_nothing_to_fill_are_not_run(monkeypatch):
    calls = []
    monkeypatch.setattr(unit_fit, "fit_units_together", fake_fit(lambda tile, job: tile, calls))
    image = np.random.default_rng(3).random((40, 120)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[:, :45] = True  # tiles start at columns 0, 27, 53, 80: the first has no measured pixel,
    result = restore(image, "inpaint", mask=mask, tile_size=40, overlap=8)  # the last two no hole
    reasons = [u.stop_reason for u in result.record.units]
    assert reasons[0].startswith("no measured pixel") and reasons[2:] == ["nothing to fill here"] * 2
    assert len(calls) == 1 and np.isfinite(result.image).all()


def test_super_resolution_tiles_are_factor_times_larger_in_the_output(monkeypatch):
    calls = []
    enlarge = fake_fit(lambda tile, job: tile.repeat(2, 0).repeat(2, 1), calls)
    monkeypatch.setattr(unit_fit, "fit_units_together", enlarge)
    image = np.random.default_rng(1).random((40, 60)).astype(np.float32)
    guide = np.zeros((80, 120), np.float32)
    result = restore(image, "guided", factor=2, guide=guide, tile_size=24, overlap=8)
    np.testing.assert_allclose(result.image, image.repeat(2, 0).repeat(2, 1), atol=1e-5)
    assert all(job.guide_planes.shape[2:] == tuple(2 * n for n in job.input_image.shape) for job in calls)


def test_tiles_can_be_read_from_and_written_to_zarr(monkeypatch, tmp_path):
    zarr = pytest.importorskip("zarr")
    monkeypatch.setattr(unit_fit, "fit_units_together", fake_fit(lambda tile, job: tile * 2))
    image = np.random.default_rng(2).random((2, 60, 50)).astype(np.float32)
    source = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=image.shape, chunks=(1, 16, 16),
                             dtype="f4")
    source[...] = image
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="w", shape=image.shape, dtype="f4", fill_value=0)
    result = restore(source, out=out, tile_size=32, overlap=8)
    assert result.image is out
    np.testing.assert_allclose(out[...], 2 * image, atol=1e-5)


def test_wrong_shapes_are_refused_before_any_run():
    with pytest.raises(DIPInputError, match="mask"):
        restore(np.zeros((40, 40)), "inpaint", mask=np.zeros((40, 41)), tile_size=16, overlap=4)
    with pytest.raises(DIPInputError, match="overlap"):
        restore(np.zeros((40, 40)), tile_size=16, overlap=16)


def test_a_real_tiled_run_shows_no_seam():
    y, x = np.mgrid[0:64, 0:128].astype(np.float32)
    clean = 100 + y + 2 * x
    noisy = clean + np.random.default_rng(0).normal(0, 10, clean.shape).astype(np.float32)
    result = restore(noisy, tile_size=64, overlap=32, iterations=10, seed=3, **TINY)
    assert result.image.shape == clean.shape and np.isfinite(result.image).all()
    record = result.record
    assert record.tiling["grid"] == [1, 3] and record.iterations == 30
    # every tile ran its 10 iterations (their kept iterations may differ)
    assert record.parameters["seed"] == 3 and "completed 10 iterations" in record.stop_reason
    assert "automatic stop" not in record.stop_reason
    plan = plan_tiles(clean.shape, 64, 32)
    border, inside = seam_and_inside_masks(clean.shape, plan, rim=4)
    error = np.abs(result.image - clean)
    assert error[border].mean() <= error[inside].mean()


def test_stop_ends_the_current_tile_and_leaves_the_rest_as_the_input():
    image = np.random.default_rng(0).random((40, 80)).astype(np.float32)
    run = restore_iter(image, tile_size=40, overlap=8, iterations=50, snapshot_every=2, **TINY)
    assert run.tiling == {"tiles": 3, "grid": (1, 3), "tile_size": (40, 40), "overlap": 8}
    first = next(run)
    assert first.image.shape == image.shape and first.planes == 3 and first.plane == 0
    run.stop()
    snapshots = list(run)
    assert snapshots[-1].done
    record = run.result.record
    assert [u.stop_reason for u in record.units] == [
        "stopped by user", "stopped by user before this tile", "stopped by user before this tile"]
    assert record.iterations < 10
    np.testing.assert_allclose(run.result.image[:, -20:], image[:, -20:], atol=1e-5)


def test_auto_tile_size_tiles_only_what_does_not_fit():
    assert auto_tile_size((512, 512), 1, 1800, 16e9) is None
    side = auto_tile_size((4000, 4000), 1, 1800, 16e9)
    assert side % 16 == 0 and side * side * 1800 <= 0.25 * 16e9
    assert auto_tile_size((4000, 4000), 4, 1800, 16e9) <= side // 4 + 64
    assert restore_iter(np.zeros((64, 64)), device=DEVICE).tiling is None


@pytest.mark.parametrize("memory", [2e9, 4e9, 8e9, 16e9])
def test_automatic_tiles_of_a_2048_frame_fit_at_most_1_3_times_its_pixels(memory):
    # issue 28: a 2048² frame was cut into 2 × 2 tiles of 1984² (3.75× its pixels); the side now shrinks to the
    # smallest that covers the frame with as many tiles as the largest side that fits needs
    side = auto_tile_size((2048, 2048), 1, 1200, memory, overlap=64)
    assert side is not None  # the frame needs 5 GB in one run: over a quarter of each memory here
    largest = auto_tile_size((2048, 2048), 1, 1200, memory, overlap=10_000)  # no shrinking: the memory's side
    plan = plan_tiles((2048, 2048), side, 64)
    fitted = sum((t.y[1] - t.y[0]) * (t.x[1] - t.x[0]) for t in plan.tiles)
    assert side <= largest and side * side * 1200 <= 0.25 * memory
    assert fitted <= 1.3 * 2048 ** 2, (side, plan.grid, fitted / 2048 ** 2)


def test_automatic_stopping_in_tiles_is_recorded_per_tile():
    image = np.random.default_rng(0).random((32, 64)).astype(np.float32)
    options = dict(auto_stop=True, holdout_fraction=0.1, **TINY)
    run = restore_iter(image, tile_size=40, overlap=16, iterations=6, snapshot_every=3, **options)
    snapshots = list(run)
    assert all("chosen_iteration" in s.quality for s in snapshots)
    record = run.result.record
    quality = record.quality
    assert quality["automatic_stopping"] is True and record.work_unit == "tile"
    assert [u["tile"] for u in quality["units"]] == [t["index"] for t in record.tiling["tiles"]]
    assert all(1 <= u["chosen_iteration"] <= 6 and u["iterations"] == 6 for u in quality["units"])
    assert all("sigma" in u.noise_estimate for u in record.units)  # each tile estimates its noise


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_automatic_tiles_are_planned_with_the_memory_model_of_the_network_that_runs(preset):
    import torch

    from napari_dip.job import define_job
    from napari_dip.options import RestoreOptions

    image = np.zeros((512, 512), np.float32)
    spec = define_job(image, RestoreOptions.from_keywords(preset=preset, device="cpu"))
    settings = spec.settings
    model = settings.network.memory_model(settings.input_channels, 1, 2, settings.ensemble)
    one_run = model.bytes(512 * 512)
    cpu = torch.device("cpu")
    # a quarter of the memory is the budget, after the weights and Adam's moments
    assert executor.auto_tile_size(spec, cpu, memory_limit=4 * one_run * 1.05) is None
    side = executor.auto_tile_size(spec, cpu, memory_limit=4 * one_run / 4)
    # a quarter of the pixels: the largest side that fits is ~256; it shrinks to the smallest that covers 512 as well
    assert side is not None and side % 16 == 0 and 128 <= side <= 256
