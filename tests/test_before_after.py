"""The engine's results on a few tasks are those it gave before it was reorganised (tests/data/before_after.npz,
written by tests/data/make_before_after.py: the single-unit cases with the engine of commit 99f3ee5, the tiled
frame and the warm-started stack with that of 166e279; one torch thread).

They are bit-identical where the same CPU kernels run; the tolerance (a thousandth of an intensity unit, on images
of range ~160) leaves room for rounding only. Other vector instructions (AVX-512 against the AVX2 that wrote them)
take other kernels, whose rounding the fit's iterations grow into visibly different results (up to 27 intensity
units, seen on a GPU machine's CPU). So on a CPU that runs other kernels the results are computed in a child
process told to use AVX2's (torch and oneDNN read that from the environment); a CPU without AVX2 skips, saying why.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.join(os.path.dirname(__file__), "data")
WRITTEN_ON = "AVX2"  # torch.backends.cpu.get_cpu_capability() where the results were written and checked
AS_WRITTEN = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}  # the kernels that wrote them
CHILD = """
import sys, numpy as np, torch, importlib.util
spec = importlib.util.spec_from_file_location("make_before_after", sys.argv[1])
maker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(maker)
print(torch.backends.cpu.get_cpu_capability())
np.savez(sys.argv[2], **maker.results())
"""


def _maker():
    spec = importlib.util.spec_from_file_location("make_before_after", os.path.join(HERE, "make_before_after.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results_now(tmp_path_factory):
    """The engine's results now with AVX2's kernels: None where this process runs them (each case runs in the
    test), else every case's, from a child process."""
    import torch

    if torch.backends.cpu.get_cpu_capability() == WRITTEN_ON:
        return None
    out = tmp_path_factory.mktemp("before_after") / "now.npz"
    child = subprocess.run([sys.executable, "-c", CHILD, os.path.join(HERE, "make_before_after.py"), str(out)],
                           env={**os.environ, **AS_WRITTEN}, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    capability = child.stdout.strip().splitlines()[0]
    if capability != WRITTEN_ON:
        pytest.skip(f"the results were written with {WRITTEN_ON} kernels; this CPU runs {capability} ones, whose "
                    "rounding grows over the iterations")
    return dict(np.load(out))


@pytest.mark.parametrize("name", sorted(_maker().cases()))
def test_results_are_those_from_before_the_reorganisation(name, results_now):
    import napari_dip

    stored = np.load(os.path.join(HERE, "before_after.npz"))[name]
    if results_now is None:
        args, kwargs = _maker().cases()[name]
        result = napari_dip.restore(*args, **kwargs).image
    else:
        result = results_now[name]
    np.testing.assert_allclose(result, stored, rtol=0, atol=1e-3)
