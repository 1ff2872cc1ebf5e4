"""Axial super-resolution: a stack with a coarse Z step restored to a finer one, from the API, CLI and a widget."""

import json

import numpy as np
import pytest
import torch
from conftest import DEVICE
from scipy import ndimage

import napari_dip
from napari_dip import cli
from napari_dip.core.operators import AxialDownsampleOperator, lanczos2_kernel
from napari_dip.errors import DIPInputError
from napari_dip.io import read_image, write_image

FACTOR = 2


def spheres(shape=(32, 32, 32), count=10, seed=1) -> np.ndarray:
    """A volume of soft-edged spheres in [0, 1]: structure that changes along Z as fast as along Y and X."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float32)
    volume = np.zeros(shape, np.float32)
    for _ in range(count):
        centre = rng.uniform(4, np.array(shape) - 4)
        radius = rng.uniform(3, 7)
        distance = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
        volume += rng.uniform(0.5, 1.0) / (1 + np.exp((distance - radius) / 0.7))
    return volume / volume.max()


def measure(volume: np.ndarray, factor: int = FACTOR, noise: float = 0.01, seed: int = 2) -> np.ndarray:
    """The stack a microscope with a ``factor`` times coarser Z step records: the task's own forward model."""
    coarse = AxialDownsampleOperator(factor)(torch.from_numpy(volume)[None, None])[0, 0].numpy()
    return coarse + np.random.default_rng(seed).normal(0, noise, coarse.shape).astype(np.float32)


def interpolate_z(stack: np.ndarray, factor: int, order: int) -> np.ndarray:
    """Spline interpolation along Z alone onto the fine grid (measured plane k sits at fine (k + ½)·f − ½)."""
    fine_z = (np.arange(stack.shape[0] * factor) + 0.5) / factor - 0.5
    z, y, x = np.meshgrid(fine_z, np.arange(stack.shape[1]), np.arange(stack.shape[2]), indexing="ij")
    return ndimage.map_coordinates(stack, [z, y, x], order=order, mode="nearest")


def psnr(result, truth) -> float:
    return float(10 * np.log10((truth.max() - truth.min()) ** 2 / np.mean((result - truth) ** 2)))


def test_the_operator_is_a_lanczos_weighted_mean_along_z_alone():
    volume = spheres((16, 8, 8))
    coarse = AxialDownsampleOperator(FACTOR)(torch.from_numpy(volume)[None, None])[0, 0].numpy()
    assert coarse.shape == (8, 8, 8)
    # the definition: plane k = Σ_t kernel[t] · fine plane (k·f + t − 3f/2), the ends repeated
    kernel, pad = lanczos2_kernel(FACTOR), 3 * FACTOR // 2
    padded = np.concatenate([volume[:1]] * pad + [volume] + [volume[-1:]] * pad)
    expected = np.stack([np.tensordot(kernel, padded[k * FACTOR:k * FACTOR + kernel.size], 1) for k in range(8)])
    np.testing.assert_allclose(coarse, expected, atol=1e-5)
    with pytest.raises(ValueError, match="volumes"):
        AxialDownsampleOperator(FACTOR)(torch.ones(1, 1, 8, 8))


def test_dip_beats_linear_and_cubic_interpolation_along_z():
    truth = spheres()
    stack = measure(truth)
    result = napari_dip.restore(stack, "axial-superres", factor=FACTOR, iterations=200, seed=0, device=DEVICE,
                                auto_stop=False, network_down=(16, 16, 16), network_up=(16, 16, 16),
                                network_skip=(4, 4, 4), input_channels=8)
    assert result.image.shape == truth.shape
    linear, cubic = (psnr(interpolate_z(stack, FACTOR, order), truth) for order in (1, 3))
    dip = psnr(result.image, truth)
    assert dip > max(linear, cubic) + 0.5, (dip, linear, cubic)
    parameters = result.record.parameters
    assert parameters["enlarged"] == {"Z": FACTOR, "Y": 1, "X": 1} and parameters["volumetric"] is True
    assert result.record.task == "axial-superres" and "of Z" in parameters["operator"]


def test_stacks_of_volumes_planes_and_bad_input(tiny_network):
    volumes = np.random.default_rng(0).random((2, 4, 16, 16)).astype(np.float32)  # (T, Z, Y, X)
    result = napari_dip.restore(volumes, "axial-superres", factor=FACTOR, iterations=2, device=DEVICE,
                                **tiny_network)
    assert result.image.shape == (2, 8, 16, 16) and result.record.work_unit == "volume"
    with pytest.raises(DIPInputError, match="restores volumes"):
        napari_dip.restore(volumes[0, 0], "axial-superres", iterations=2, device=DEVICE)
    with pytest.raises(DIPInputError, match="needs factor 2, 4 or 8"):
        napari_dip.restore(volumes[0], "axial-superres", factor=1, iterations=2, device=DEVICE)


def test_command_line_divides_the_z_pixel_size(tmp_path, tiny_network):
    stack = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    write_image(tmp_path / "stack.tif", stack, {"axes": "ZYX", "pixel_size": {"Z": 1.0, "Y": 0.25, "X": 0.25},
                                                 "unit": "um"})
    network = [f"--set={key}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
               for key, value in tiny_network.items()]
    code = cli.main(["restore", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "fine.tif"), "--task",
                     "axial-superres", "--factor", str(FACTOR), "--iterations", "2", "--device", DEVICE, "-q",
                     *network])
    assert code == 0
    result, metadata = read_image(tmp_path / "fine.tif")
    assert result.shape == (8, 16, 16)
    assert metadata["pixel_size"] == pytest.approx({"Z": 0.5, "Y": 0.25, "X": 0.25})
    assert json.loads((tmp_path / "fine.json").read_text())["parameters"]["enlarged"]["Z"] == FACTOR


@pytest.mark.gui
def test_widget_makes_a_finer_z_layer(make_napari_viewer, monkeypatch, tiny_network):
    monkeypatch.setenv("NAPARI_DIP_SYNC", "1")
    viewer = make_napari_viewer()
    stack = (np.random.default_rng(0).random((4, 16, 16)) * 100).astype(np.float32)
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Axial super-resolve")
    widget.extra_settings = dict(tiny_network)
    widget.iterations.value = 2
    assert not widget.planes.visible  # the whole stack is one volume: no plane choice
    widget.factor_choice.value = FACTOR
    widget.run_restoration()
    result = viewer.layers[f"stack [axial ×{FACTOR}]"]
    assert result.data.shape == (8, 16, 16)
    assert tuple(result.scale) == pytest.approx((2.0 / FACTOR, 0.5, 0.5))
    # fine plane j is centred at (j + ½)/f − ½ coarse planes: the layers overlap exactly
    assert result.translate[0] == pytest.approx(-2.0 * (FACTOR - 1) / (2 * FACTOR))
    np.testing.assert_array_equal(viewer.layers["stack"].data, stack)
