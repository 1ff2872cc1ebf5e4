"""The generators: the paper's parameter count, shapes, 2D and 3D."""

import pytest
import torch

from napari_dip.core.networks import NetworkSpec, SkipNet, build_network, count_parameters


def test_default_skip_net_has_the_official_parameter_count():
    # 32 input channels, 128 channels x 5 levels, 4 skip channels, 3 outputs: 2,217,831 in the paper's code
    assert count_parameters(SkipNet(32, 3)) == 2_217_831


def test_skip_net_keeps_the_size_and_ends_in_a_sigmoid():
    net = SkipNet(4, 2, down=(8, 16), up=(8, 16), skip=(2, 2))
    y = net(torch.randn(1, 4, 32, 32) * 10)
    assert y.shape == (1, 2, 32, 32)
    assert y.min() >= 0 and y.max() <= 1


def test_hourglass_has_no_skip_branches():
    spec = NetworkSpec(kind="hourglass", down=(8, 16), up=(8, 16), skip=(4, 4))
    net = build_network(spec, 2, 1)
    assert all(level.skip is None for level in [net.body, net.body.deeper[-2]])
    assert net(torch.rand(1, 2, 16, 16)).shape == (1, 1, 16, 16)


def test_light_decoder_upsamples_its_small_input_and_is_small():
    net = build_network(NetworkSpec(kind="light", channels=16, levels=3), 8, 1)
    assert net(torch.rand(1, 8, 8, 8)).shape == (1, 1, 64, 64)
    assert count_parameters(net) < 64 * 64  # fewer weights than output pixels


def test_three_dimensional_skip_net():
    net = build_network(NetworkSpec(down=(4, 8), up=(4, 8), skip=(2, 2)), 3, 1, dims=3)
    assert net(torch.rand(1, 3, 8, 16, 16)).shape == (1, 1, 8, 16, 16)


def test_per_level_upsampling_modes():
    net = SkipNet(2, 1, down=(4, 4), up=(4, 4), skip=(0, 0), upsample=("nearest", "bilinear"))
    modes = [m.mode for m in net.modules() if isinstance(m, torch.nn.Upsample)]
    assert sorted(modes) == ["bilinear", "nearest"]


def test_unknown_network_kind_is_refused():
    with pytest.raises(ValueError, match="unknown network kind"):
        build_network(NetworkSpec(kind="transformer"), 1, 1)
