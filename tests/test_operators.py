"""Each forward operator against its definition."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_dip.core.operators import (
    BlurOperator,
    ComposedOperator,
    DownsampleOperator,
    IdentityOperator,
    MaskOperator,
    gaussian_psf,
    lanczos2_kernel,
)


def test_identity_returns_its_input():
    x = torch.rand(1, 2, 8, 8)
    assert torch.equal(IdentityOperator()(x), x)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsampler_keeps_a_constant_image_constant(factor):
    x = torch.full((1, 3, 64, 64), 0.37)
    y = DownsampleOperator(factor)(x)
    assert y.shape == (1, 3, 64 // factor, 64 // factor)
    torch.testing.assert_close(y, torch.full_like(y, 0.37))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lanczos_kernel_is_normalised_symmetric_and_of_4f_taps(factor):
    k = lanczos2_kernel(factor)
    assert k.shape == (4 * factor,)
    assert np.isclose(k.sum(), 1.0)
    np.testing.assert_allclose(k, k[::-1])
    # Lanczos-2 weights: sinc(t) sinc(t/2) at the tap positions
    t = (np.arange(4 * factor) - (4 * factor - 1) / 2) / factor
    expected = np.sinc(t) * np.sinc(t / 2)
    np.testing.assert_allclose(k, expected / expected.sum())


def test_downsampler_is_the_separable_kernel_at_stride_factor():
    factor = 2
    rng = np.random.default_rng(0)
    img = rng.random((16, 16))
    k = lanczos2_kernel(factor)
    padded = np.pad(img, 3, mode="edge")
    # direct sum over the 8x8 window starting at the stride position
    direct = np.array([[np.sum(padded[i * 2:i * 2 + 8, j * 2:j * 2 + 8] * np.outer(k, k))
                        for j in range(8)] for i in range(8)])
    got = DownsampleOperator(factor)(torch.from_numpy(img)[None, None].float())[0, 0].numpy()
    np.testing.assert_allclose(got, direct, atol=1e-5)


def test_downsampler_on_a_volume_leaves_z_alone():
    x = torch.rand(1, 1, 5, 16, 16)
    y = DownsampleOperator(4, dims=3)(x)
    assert y.shape == (1, 1, 5, 4, 4)
    torch.testing.assert_close(y[0, 0, 2], DownsampleOperator(4)(x[:, :, 2])[0, 0])


def test_mask_zeroes_exactly_the_masked_pixels():
    x = torch.rand(1, 3, 8, 8) + 0.5  # no zeros of its own
    known = (torch.rand(1, 1, 8, 8) > 0.3).float()
    y = MaskOperator(known)(x)
    assert torch.all(y[known.expand_as(y) == 0] == 0)
    assert torch.equal(y[known.expand_as(y) == 1], x[known.expand_as(x) == 1])


@pytest.mark.parametrize("shape", [(5, 5), (7, 3), (4, 6)])
def test_blur_matches_direct_convolution(shape):
    rng = np.random.default_rng(1)
    img = rng.random((20, 24))
    psf = rng.random(shape)
    psf_norm = psf / psf.sum()
    got = BlurOperator(psf)(torch.from_numpy(img)[None, None].float())[0, 0].numpy()
    # even sides: centre at size//2, scipy's convention; torch 'reflect' is scipy 'mirror'
    expected = ndimage.convolve(img, psf_norm, mode="mirror")
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_gaussian_psf_is_normalised_and_odd():
    psf = gaussian_psf(1.5)
    assert psf.shape == (11, 11) and np.isclose(psf.sum(), 1.0)
    assert np.unravel_index(psf.argmax(), psf.shape) == (5, 5)


def test_blur_then_downsample_composes_in_order():
    x = torch.rand(1, 1, 32, 32)
    blur, down = BlurOperator(gaussian_psf(1.0)), DownsampleOperator(2)
    torch.testing.assert_close(ComposedOperator(blur, down)(x), down(blur(x)))
