"""Each forward operator against its definition, and as a torch module."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_dip.core.operators import (
    BlurOperator,
    ComposedOperator,
    DownsampleOperator,
    IdentityOperator,
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


def test_blur_of_a_delta_is_the_psf_itself_not_its_mirror_image():
    # an asymmetric PSF tells convolution from correlation
    psf = np.zeros((3, 5), np.float32)
    psf[0, 1], psf[1, 2], psf[2, 4] = 0.25, 0.5, 0.25
    delta = torch.zeros(1, 1, 15, 15)
    delta[0, 0, 7, 7] = 1.0
    got = BlurOperator(psf)(delta)[0, 0].numpy()
    expected = np.zeros((15, 15), np.float32)
    expected[6:9, 5:10] = psf
    np.testing.assert_array_equal(got, expected)


def test_a_2d_psf_blurs_each_plane_of_a_volume_and_a_3d_psf_blurs_across_planes():
    delta = torch.zeros(1, 1, 7, 15, 15)
    delta[0, 0, 3, 7, 7] = 1.0
    psf2 = gaussian_psf(1.0).astype(np.float32)  # 7 x 7
    planewise = BlurOperator(psf2)(delta)[0, 0].numpy()
    np.testing.assert_array_equal(planewise[[0, 1, 2, 4, 5, 6]], 0.0)
    np.testing.assert_array_equal(planewise[3, 4:11, 4:11], psf2)
    psf3 = gaussian_psf(0.5, dims=3).astype(np.float32)  # 5 x 5 x 5
    volume = BlurOperator(psf3)(delta)[0, 0].numpy()
    np.testing.assert_array_equal(volume[1:6, 5:10, 5:10], psf3)


@pytest.mark.parametrize("make", [IdentityOperator, lambda: DownsampleOperator(2),
                                  lambda: BlurOperator(gaussian_psf(1.0)),
                                  lambda: ComposedOperator(BlurOperator(gaussian_psf(1.0)), DownsampleOperator(2))])
def test_operators_are_torch_modules_whose_kernels_move_with_them(make):
    op = make()
    assert isinstance(op, torch.nn.Module)
    assert op.state_dict() == {}  # the kernels follow from the constructor's arguments: nothing to save
    assert op.to(torch.float64) is op  # torch's own .to, in place
    assert all(b.dtype == torch.float64 for b in op.buffers())
    expected = len(op.operators) if isinstance(op, ComposedOperator) else int(not isinstance(op, IdentityOperator))
    assert len(list(op.buffers())) == expected


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_the_kernels_follow_the_input_dtype(dtype):
    x = torch.rand(1, 2, 16, 16)
    for op in (DownsampleOperator(2), BlurOperator(gaussian_psf(1.0))):
        y = op(x.to(dtype))
        assert y.dtype == dtype
        # the float32 kernel cast to the input's dtype: float64 agrees with float32 to float32 precision
        tolerance = 1e-6 if dtype == torch.float64 else 2e-2
        torch.testing.assert_close(y.float(), op(x), atol=tolerance, rtol=tolerance)


def test_describe_and_scale():
    blur, down = BlurOperator(np.ones((4, 6))), DownsampleOperator(4)
    assert IdentityOperator().describe() == "identity" and IdentityOperator().scale == 1.0
    assert blur.describe() == "blur psf 5x7" and blur.scale == 1.0
    assert down.describe() == "lanczos2-downsample x4" and down.scale == 0.25
    composed = ComposedOperator(blur, down)
    assert composed.describe() == "blur psf 5x7 then lanczos2-downsample x4" and composed.scale == 0.25
