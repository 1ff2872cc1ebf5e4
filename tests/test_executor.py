"""The one executor: a stack in memory or on disk, plane by plane, read lazily, stopped and recorded alike."""

import json

import numpy as np
import pytest
from conftest import DEVICE

from napari_dip import restore, restore_iter
from napari_dip.core.data import is_lazy
from napari_dip.errors import DIPInputError
from napari_dip.io import write_json
from napari_dip.record import RunRecord

SETTINGS = dict(iterations=4, snapshot_every=2, seed=0, device=DEVICE, tile_size=None)
# exact repeats (a plane alone, the first plane of a warm stack) and CPU threads: CPU properties (on a GPU, atomic
# additions make runs differ by rounding; conftest.DEVICE)
CPU = dict(SETTINGS, device="cpu")


class RecordingArray:
    """An on-disk-like array: counts what each read asks for."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.reads = []

    def __getitem__(self, region):
        part = self.array[region]
        self.reads.append(part.shape)
        return part


def noisy_stack(shape=(3, 24, 24), seed=0):
    return (np.random.default_rng(seed).random(shape) * 100).astype(np.float32)


def test_each_plane_matches_restoring_that_plane_alone_with_per_unit_normalisation(tiny_network):
    stack = noisy_stack()
    lazy = RecordingArray(stack)
    run = restore_iter(lazy, "denoise", normalise="per-unit", **SETTINGS, **tiny_network)
    assert lazy.reads == [(24, 24)]  # the first plane is read (and checked) before anything runs
    snapshots = [(s.plane, s.iteration, s.done) for s in run]
    assert snapshots == [(0, 2, False), (0, 4, False), (1, 2, False), (1, 4, False), (2, 2, False), (2, 4, True)]
    assert lazy.reads == [(24, 24)] * 3  # one plane at a time, each once
    record = run.result.record
    assert record.planes == record.units_restored == 3 and record.iterations_per_unit == [4, 4, 4]
    assert record.work_unit == "plane" and len({u.normalisation["high"] for u in record.units}) == 3


def test_a_stack_in_memory_and_the_same_stack_on_disk_give_the_same_result(tiny_network):
    da = pytest.importorskip("dask.array")
    stack = noisy_stack((3, 24, 24), seed=4)
    stack[1] *= 3  # planes of different brightness: joint and per-unit mappings differ
    for normalise in ("joint", "per-unit"):
        in_memory = restore(stack, "denoise", normalise=normalise, **SETTINGS, **tiny_network)
        on_disk = restore(da.from_array(stack, chunks=(1, 12, 24)), "denoise", normalise=normalise, **SETTINGS,
                          **tiny_network)
        np.testing.assert_array_equal(in_memory.image, on_disk.image)
        assert in_memory.record.parameters["normalise"] == normalise
    joint = restore(stack, "denoise", **SETTINGS, **tiny_network).record
    assert joint.parameters["normalisation"]["high"] == pytest.approx(float(stack.max()))  # one mapping, all data
    assert all(u.normalisation is None for u in joint.units)


def test_plane_seeds_and_normalisation_make_a_plane_of_a_stack_the_plane_alone(tiny_network):
    stack = noisy_stack()
    run = restore(RecordingArray(stack), "denoise", normalise="per-unit", **CPU, auto_stop=False,
                  warm_start=False, **tiny_network)
    # without held-out pixels (seeded per plane) and warm starts, a plane's run depends on its pixels only
    for t in range(3):
        alone = restore(stack[t], "denoise", **CPU, auto_stop=False, **tiny_network).image
        np.testing.assert_allclose(run.image[t], alone, rtol=1e-5, atol=1e-4)


def test_dask_stack_with_channels_per_plane_truth_and_superres(tiny_network):
    da = pytest.importorskip("dask.array")
    truth = noisy_stack((2, 3, 32, 32), seed=1)  # (T, C, Y, X)
    small = truth[..., ::2, ::2]
    lazy = da.from_array(small, chunks=(1, 3, 16, 16))
    assert is_lazy(lazy) and not is_lazy(small)
    run = restore_iter(lazy, "superres", factor=2, channel_axis=1, ground_truth=truth, **SETTINGS, **tiny_network)
    for _ in run:
        pass
    out = run.result.image
    assert out.shape == (2, 3, 32, 32)
    units = run.result.record.units
    for t in range(2):
        mse = np.mean((out[t].astype(np.float64) - truth[t]) ** 2)
        rng = truth[t].max() - truth[t].min()
        assert units[t].metrics["psnr"] == pytest.approx(10 * np.log10(rng ** 2 / mse), abs=0.05)


def test_per_plane_mask_is_cut_and_a_2d_mask_applies_to_every_plane(tiny_network):
    stack = noisy_stack((2, 24, 24))
    masks = np.zeros(stack.shape, bool)
    masks[0, :4] = True
    masks[1, -4:] = True
    settings = dict(CPU, normalise="per-unit", auto_stop=False)
    run = restore(RecordingArray(stack), "inpaint", mask=masks, **settings, **tiny_network)
    for t in range(2):
        alone = restore(stack[t], "inpaint", mask=masks[t], **settings, **tiny_network).image
        np.testing.assert_allclose(run.image[t], alone, rtol=1e-5, atol=1e-4)
    one = restore(RecordingArray(stack), "inpaint", mask=masks[0], **settings, **tiny_network)
    assert one.record.units_restored == 2
    assert [u.missing_pixels for u in one.record.units] == [4 * 24] * 2


def test_stop_keeps_the_planes_done_and_says_where(tiny_network, tmp_path):
    lazy = RecordingArray(noisy_stack())
    run = restore_iter(lazy, "denoise", **dict(SETTINGS, iterations=20), **tiny_network)
    for snapshot in run:
        if snapshot.plane == 1 and not snapshot.done:
            run.stop()
    record = run.result.record
    assert record.units_restored == 2 and record.stop_reason == "stopped by user at plane 2 of 3"
    assert record.units[2].stop_reason == "stopped by user before this plane"
    assert [u.restored for u in record.units] == [True, True, False]
    # the JSON keeps the record whole: read back, it writes the same JSON
    write_json(tmp_path / "record.json", record.as_dict())
    written = json.loads((tmp_path / "record.json").read_text())
    assert written["units"][2] == {"unit": 2, "plane": 2, "restored": False, "iterations": 0,
                                   "stop_reason": "stopped by user before this plane", "seconds": 0.0}
    write_json(tmp_path / "again.json", RunRecord.from_dict(written).as_dict())
    assert (tmp_path / "again.json").read_text() == (tmp_path / "record.json").read_text()
    # a plane not restored holds the input, as a tile or an in-memory plane does
    np.testing.assert_array_equal(run.result.image[2], lazy.array[2])
    assert np.all(np.isfinite(run.result.image[:2])) and np.any(run.result.image[1] != lazy.array[1])


def test_bad_arguments_fail_before_anything_is_read(tiny_network):
    lazy = RecordingArray(noisy_stack((3, 4, 4)))
    with pytest.raises(DIPInputError, match="too small"):
        restore_iter(lazy, "denoise", **SETTINGS)
    lazy = RecordingArray(noisy_stack((3, 24, 24)))
    with pytest.raises(DIPInputError, match="mask"):
        restore_iter(lazy, "inpaint", mask=np.zeros((2, 24, 24)), **SETTINGS)
    assert lazy.reads == []


def test_automatic_stopping_is_recorded_per_plane(tiny_network):
    run = restore_iter(RecordingArray(noisy_stack((2, 24, 24))), "denoise", auto_stop=True,
                       holdout_fraction=0.1, **SETTINGS, **tiny_network)
    snapshots = list(run)
    assert all("chosen_iteration" in s.quality for s in snapshots)
    quality = run.result.record.quality
    assert quality["automatic_stopping"] is True and run.result.record.work_unit == "plane"
    assert [u["plane"] for u in quality["units"]] == [0, 1]
    assert all(1 <= u["chosen_iteration"] <= 4 for u in quality["units"])

    run = restore_iter(noisy_stack((2, 24, 24)), "denoise", auto_stop=False, **SETTINGS, **tiny_network)
    list(run)
    assert run.result.record.quality["automatic_stopping"] is False


def test_warm_starts_follow_the_planes_and_the_record_says_where_each_unit_began(tiny_network):
    stack = noisy_stack((3, 24, 24), seed=2)
    warm = restore(stack, "denoise", warm_start=True, **CPU, **tiny_network).record
    assert [u.started_from for u in warm.units] == ["random initialisation", "plane 1", "plane 2"]
    assert warm.parameters["settings"]["warm_start"] is True
    cold = restore(stack, "denoise", warm_start=False, **CPU, **tiny_network)
    assert {u.started_from for u in cold.record.units} == {"random initialisation"}
    warm_image = restore(stack, "denoise", warm_start=True, **CPU, **tiny_network).image
    np.testing.assert_array_equal(warm_image[0], cold.image[0])  # the first plane starts cold either way
    assert not np.allclose(warm_image[1], cold.image[1])  # the second plane's fit began elsewhere


def test_tiles_of_one_plane_start_cold_and_a_stacks_tiles_from_the_same_tile_of_the_plane_before(tiny_network):
    frame = noisy_stack((40, 40), seed=3)
    record = restore(frame, "denoise", warm_start=True, **dict(SETTINGS, tile_size=24), overlap=8,
                     **tiny_network).record
    assert [u.started_from for u in record.units] == ["random initialisation"] * 4
    stack = noisy_stack((2, 40, 40), seed=3)
    record = restore(stack, "denoise", warm_start=True, **dict(SETTINGS, tile_size=24), overlap=8,
                     **tiny_network).record
    assert [u.started_from for u in record.units] == ["random initialisation"] * 4 + [
        "unit 1", "unit 2", "unit 3", "unit 4"]


def test_the_record_says_how_many_cpu_threads_ran(tiny_network):
    import torch

    record = restore(noisy_stack((24, 24)), "denoise", **CPU, **tiny_network).record
    assert record.cpu_threads["most"] == torch.get_num_threads()
