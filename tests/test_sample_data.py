"""Sample data: made offline, the right kinds of layers, masks that match their images."""

import numpy as np
import pytest

from napari_dip import _sample_data as samples


def by_name(layer_data):
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layer_data}


def test_noisy_camera_has_a_hidden_clean_twin():
    layers = by_name(samples.noisy_camera())
    noisy, clean = layers["camera (noisy, σ=25)"][0], layers["camera (clean)"][0]
    assert noisy.shape == clean.shape == (256, 256)
    assert layers["camera (clean)"][1]["visible"] is False
    assert 20 < np.std(noisy - clean) < 30


def test_astronaut_text_mask_covers_the_text():
    layers = by_name(samples.astronaut_with_text())
    image, mask = layers["astronaut with text"][0], layers["text mask"][0]
    assert layers["text mask"][2] == "labels" and mask.shape == image.shape[:2]
    assert 0.02 < (mask > 0).mean() < 0.2
    assert (image[mask > 0] == 255).all()


def test_low_resolution_cat_aligns_with_its_ground_truth():
    layers = by_name(samples.low_resolution_cat())
    small, _, _ = layers["chelsea (low resolution, 1/4)"]
    big, kwargs, _ = layers["chelsea (high resolution)"]
    assert big.shape == (small.shape[0] * 4, small.shape[1] * 4, 3)
    assert kwargs["scale"] == (0.25, 0.25)


def test_fluorescence_is_photon_counts():
    layers = by_name(samples.fluorescence_poisson())
    counts = layers["fluorescence (Poisson noise)"][0]
    assert counts.min() >= 0 and np.array_equal(counts, np.round(counts))
    assert abs(layers["PSF (Gaussian σ=1.5)"][0].sum() - 1) < 1e-5


def test_scan_line_gaps_are_zero_in_every_band():
    layers = by_name(samples.multispectral_scan_line_gaps())
    bands, gaps = layers["multispectral (SLC-off gaps)"][0], layers["scan-line gaps"][0] > 0
    assert bands.shape == (4, 256, 256) and gaps.shape == (256, 256)
    assert (bands[:, gaps] == 0).all()
    assert not gaps[:, 126:130].any()  # no gap at the centre of the scene, as with SLC-off
    assert 0.1 < gaps.mean() < 0.35


def test_pansharpening_guide_covers_the_fine_grid():
    layers = by_name(samples.pansharpening_pair())
    small, guide = layers["bands (1/4 resolution)"][0], layers["panchromatic"][0]
    truth = layers["bands (full resolution)"][0]
    assert small.shape == (4, 64, 64) and guide.shape == (256, 256) and truth.shape == (4, 256, 256)


@pytest.mark.gui
@pytest.mark.parametrize("key", ["noisy_camera", "astronaut_text", "low_resolution", "fluorescence",
                                 "scan_line_gaps", "pansharpening"])
def test_samples_open_in_napari(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dip", key)
    assert len(viewer.layers) >= 2
