"""Streaming a lazy stack plane by plane: same result as restoring each plane, and never read whole."""

import numpy as np
import pytest

from napari_dip import restore
from napari_dip.errors import DIPInputError
from napari_dip.stream import is_lazy, restore_stream_iter

SETTINGS = dict(iterations=4, snapshot_every=2, seed=0, device="cpu", tile_size=None)


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


def test_each_plane_matches_restoring_that_plane_alone(tiny_network):
    stack = noisy_stack()
    lazy = RecordingArray(stack)
    run = restore_stream_iter(lazy, "denoise", **SETTINGS, **tiny_network)
    snapshots = [(s.plane, s.iteration, s.done) for s in run]
    assert snapshots == [(0, 2, False), (0, 4, False), (1, 2, False), (1, 4, False), (2, 2, False), (2, 4, True)]
    assert lazy.reads == [(24, 24)] * 3  # one plane at a time, each once
    for t in range(3):
        alone = restore(stack[t], "denoise", **SETTINGS, **tiny_network).image
        np.testing.assert_allclose(run.result.image[t], alone, rtol=1e-5, atol=1e-4)
    record = run.result.record
    assert record["planes"] == record["planes_restored"] == 3 and record["iterations_per_plane"] == [4, 4, 4]
    assert "one plane at a time" in record["streamed"]


def test_dask_stack_with_channels_per_plane_truth_and_superres(tiny_network):
    da = pytest.importorskip("dask.array")
    truth = noisy_stack((2, 3, 32, 32), seed=1)  # (T, C, Y, X)
    small = truth[..., ::2, ::2]
    lazy = da.from_array(small, chunks=(1, 3, 16, 16))
    assert is_lazy(lazy) and not is_lazy(small)
    run = restore_stream_iter(lazy, "superres", factor=2, channel_axis=1, ground_truth=truth,
                              **SETTINGS, **tiny_network)
    for _ in run:
        pass
    out = run.result.image
    assert out.shape == (2, 3, 32, 32)
    per_plane = run.result.record["metrics_per_plane"]
    for t in range(2):
        mse = np.mean((out[t].astype(np.float64) - truth[t]) ** 2)
        rng = truth[t].max() - truth[t].min()
        assert per_plane[t]["psnr"] == pytest.approx(10 * np.log10(rng ** 2 / mse), abs=0.05)


def test_per_plane_mask_is_cut_and_a_2d_mask_applies_to_every_plane(tiny_network):
    stack = noisy_stack((2, 24, 24))
    masks = np.zeros(stack.shape, bool)
    masks[0, :4] = True
    masks[1, -4:] = True
    run = restore_stream_iter(RecordingArray(stack), "inpaint", mask=masks, **SETTINGS, **tiny_network)
    for _ in run:
        pass
    for t in range(2):
        alone = restore(stack[t], "inpaint", mask=masks[t], **SETTINGS, **tiny_network).image
        np.testing.assert_allclose(run.result.image[t], alone, rtol=1e-5, atol=1e-4)
    one = restore_stream_iter(RecordingArray(stack), "inpaint", mask=masks[0], **SETTINGS, **tiny_network)
    for _ in one:
        pass
    assert one.result.record["planes_restored"] == 2


def test_stop_keeps_the_planes_done_and_says_where(tiny_network):
    lazy = RecordingArray(noisy_stack())
    run = restore_stream_iter(lazy, "denoise", **dict(SETTINGS, iterations=20), **tiny_network)
    for snapshot in run:
        if snapshot.plane == 1 and not snapshot.done:
            run.stop()
    record = run.result.record
    assert record["planes_restored"] == 2 and record["stop_reason"] == "stopped by user at plane 2 of 3"
    assert len(lazy.reads) == 2  # the third plane was never read
    assert np.all(run.result.image[2] == 0) and np.all(np.isfinite(run.result.image[:2]))
    assert np.any(run.result.image[1] != 0)


def test_bad_plane_arguments_fail_before_anything_runs(tiny_network):
    with pytest.raises(DIPInputError, match="no planes"):
        restore_stream_iter(RecordingArray(noisy_stack((24, 24))), "denoise", **SETTINGS)
    with pytest.raises(DIPInputError, match="too small"):
        restore_stream_iter(RecordingArray(noisy_stack((3, 4, 4))), "denoise", **SETTINGS)


def test_automatic_stopping_is_recorded_per_plane(tiny_network):
    run = restore_stream_iter(RecordingArray(noisy_stack((2, 24, 24))), "denoise", auto_stop=True,
                              holdout_fraction=0.1, **SETTINGS, **tiny_network)
    snapshots = list(run)
    assert all("chosen_iteration" in s.quality for s in snapshots)
    quality = run.result.record["quality"]
    assert quality["automatic_stopping"] is True and quality["unit"] == "plane"
    assert [u["plane"] for u in quality["units"]] == [0, 1]
    assert all(1 <= u["chosen_iteration"] <= 4 for u in quality["units"])

    run = restore_stream_iter(noisy_stack((2, 24, 24)), "denoise", auto_stop=False, **SETTINGS, **tiny_network)
    list(run)
    assert run.result.record["quality"]["automatic_stopping"] is False
