"""The engine's results on a few tasks are those it gave before it was reorganised (tests/data/before_after.npz,
written by tests/data/make_before_after.py with the engine of commit 99f3ee5, one torch thread).

On the machine that wrote them the results are bit-identical; the tolerance (a thousandth of an intensity unit,
on images of range ~160) leaves room for another CPU's rounding only.
"""

import importlib.util
import os

import numpy as np
import pytest

HERE = os.path.join(os.path.dirname(__file__), "data")


def _maker():
    spec = importlib.util.spec_from_file_location("make_before_after", os.path.join(HERE, "make_before_after.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(_maker().cases()))
def test_results_are_those_from_before_the_reorganisation(name):
    import napari_dip

    stored = np.load(os.path.join(HERE, "before_after.npz"))[name]
    args, kwargs = _maker().cases()[name]
    result = napari_dip.restore(*args, **kwargs).image
    np.testing.assert_allclose(result, stored, rtol=0, atol=1e-3)
