"""The generators: the paper's parameter count, shapes, 2D and 3D."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


# ---- anisotropic strides: a volume's Z is halved only while it has room

def test_z_is_halved_only_while_planes_remain_and_y_x_always():
    skip = NetworkSpec(down=(4,) * 5, up=(4,) * 5, skip=(2,) * 5)  # 3-tap filters: 2 planes at the coarsest
    assert skip.halvings((3, 64, 64)) == (0, 5, 5)
    assert skip.halvings((5, 64, 64)) == (1, 5, 5)
    assert skip.halvings((8, 64, 64)) == (2, 5, 5)
    assert skip.halvings((16, 64, 64)) == (3, 5, 5)
    assert skip.halvings((64, 64, 64)) == (5, 5, 5)
    assert skip.halvings((24, 40)) == (5, 5)  # 2D: every level, as before
    assert skip.padding((24, 40)) == [(32, 64), (32, 64)]  # unchanged: multiples of 32, at least 64
    assert skip.padding((5, 64, 64))[0] == (2, 4)  # Z: 5 planes become 6, not 64
    wide = NetworkSpec(kind="hourglass", down=(4,) * 6, up=(4,) * 6, skip=(0,) * 6, filter_down=5)
    assert wide.coarsest_side == 3 and wide.halvings((5, 64, 64))[0] == 0


@pytest.mark.parametrize("planes", [3, 5, 8, 16])
@pytest.mark.parametrize("spec", [
    NetworkSpec(down=(4, 4, 4, 4, 4), up=(4, 4, 4, 4, 4), skip=(2, 2, 2, 2, 2)),
    NetworkSpec(kind="light", channels=8, levels=4, kernel=3, head_channels=4, head_kernel=3),
], ids=["skip", "light"])
def test_a_thin_stack_goes_through_a_3d_network_padded_per_axis(spec, planes):
    from napari_dip.core import data

    spatial = (planes, 16, 16)
    pads = [data.pad_amounts((n,), multiple, minimum)[0]
            for n, (multiple, minimum) in zip(spatial, spec.padding(spatial))]
    padded = tuple(n + before + after for n, (before, after) in zip(spatial, pads))
    assert padded[0] < 2 * planes  # Z is not padded up to 2**levels planes
    net = build_network(spec, 2, 1, dims=3, spatial=padded)
    z = torch.rand(1, 2, *(net.input_shape(padded) if spec.kind == "light" else padded))
    out = net(z)
    assert out.shape == (1, 1) + padded and torch.isfinite(out).all()


def test_a_2d_network_does_not_depend_on_the_grid_it_is_told():
    spec = NetworkSpec(down=(4, 8), up=(4, 8), skip=(2, 2))
    z = torch.rand(1, 2, 16, 24)
    outputs = []
    for spatial in (None, (16, 24)):
        torch.manual_seed(0)
        outputs.append(build_network(spec, 2, 1, spatial=spatial)(z))
    assert torch.equal(*outputs)


@pytest.mark.parametrize("spec", [NetworkSpec(kind="skip", down=(8, 16), up=(8, 16), skip=(2, 2)),
                                  NetworkSpec(kind="light", channels=8, levels=2, kernel=3)])
def test_the_output_is_float32_under_mixed_precision(spec):
    # a bfloat16 output would round the image to 8 bits of mantissa (seen on a GPU, where autocast is the default)
    torch.manual_seed(0)
    net = build_network(spec, 4, 1, members=2 if spec.kind == "light" else 1, spatial=(32, 32))
    z = torch.rand((1, 4 * (2 if spec.kind == "light" else 1), *net.input_shape((32, 32))) if spec.kind == "light"
                   else (1, 4, 32, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(z)
    assert out.dtype == torch.float32
    assert (out.bfloat16().float() != out).float().mean() > 0.5  # finer than bfloat16's steps


MEASURE_PEAK = """
import json, sys
import torch
torch.set_num_threads(1)
from napari_dip.core.loop import Problem, fit
from napari_dip.core.presets import apply_overrides, get_settings
settings = apply_overrides(get_settings(sys.argv[1], "fast"), dict(iterations=2, auto_stop=False, coarse_to_fine=(),
                           snapshot_every=10 ** 6, cpu_bf16=False, mix_with=None))
peaks = []
for side in (256, 512):
    problem = Problem(target=torch.rand((1, 1, side, side)), out_channels=1, out_spatial=(side, side))
    list(fit(problem, settings))
    # the high-water mark of this process's memory (ru_maxrss would carry the parent's over from before exec)
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    peaks.append(int(status.split()[0]) * 1024)
model = settings.network.memory_model(settings.input_channels, 1, 2, settings.ensemble)
print(json.dumps([(peaks[1] - peaks[0]) / (512 ** 2 - 256 ** 2), model.bytes_per_pixel]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak memory from /proc")
@pytest.mark.parametrize("task", ["denoise", "inpaint"])  # the light decoder with two members; a skip network
def test_the_memory_model_matches_the_measured_peak_of_a_run(task):
    # the growth of a fresh process's peak memory from a 256² to a 512² fit is the bytes per pixel the model gives
    # (the process's fixed overhead cancels); measured 1.05x and 1.06x the model, 0.99x for the paper's network
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", MEASURE_PEAK, task], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=src)).stdout
    measured, model = json.loads(out.splitlines()[-1])
    assert 0.85 < measured / model < 1.2, (measured, model)
