"""Volumes of a few planes, and tiny images: the network fits the grid instead of failing inside torch."""

import numpy as np
import pytest
from conftest import DEVICE

import napari_dip
from napari_dip import DIPInputError

# the paper's five levels, narrow: the depth is what matters for a thin Z, not the width
NARROW_PAPER = dict(preset="paper", network_down=(4,) * 5, network_up=(4,) * 5, network_skip=(2,) * 5,
                    input_channels=4)


def _volume(planes, side=16, seed=0):
    return (np.random.default_rng(seed).random((planes, side, side)) * 100).astype(np.float32)


@pytest.mark.parametrize("planes", [3, 5, 8, 16])
@pytest.mark.parametrize("preset", [dict(preset="fast"), NARROW_PAPER], ids=["fast", "paper"])
def test_a_thin_stack_is_restored_in_3d(planes, preset):
    # used to end in "RuntimeError: Padding size should be less than the corresponding input dimension"
    volume = _volume(planes)
    result = napari_dip.restore(volume, "denoise", volumetric=True, iterations=2, device=DEVICE, **preset)
    assert result.image.shape == volume.shape and np.isfinite(result.image).all()


def test_a_volume_of_too_few_planes_is_refused_with_what_to_do():
    with pytest.raises(DIPInputError, match=r"at least 3 planes along Z; this volume has 2.*volumetric=False"):
        napari_dip.restore(_volume(2), volumetric=True, iterations=2, device=DEVICE)


def test_a_tiny_image_with_the_fast_denoising_preset():
    # 8 x 8 was padded to 16 for the light decoder: a 1 x 1 input that its 3-tap filters cannot pad
    image = (np.random.default_rng(0).random((8, 8)) * 100).astype(np.float32)
    result = napari_dip.restore(image, "denoise", iterations=2, device=DEVICE)
    assert result.image.shape == (8, 8) and np.isfinite(result.image).all()
