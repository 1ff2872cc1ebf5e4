"""The examples in the package's docstrings run and show what they say (doctest)."""

import doctest
import importlib
import pkgutil

import pytest

import napari_dip


def _modules_with_examples():
    names = [info.name for info in pkgutil.walk_packages(napari_dip.__path__, "napari_dip.")
             if ".widgets" not in info.name and not info.name.endswith("__main__")]
    return [name for name in names if ">>>" in open(importlib.import_module(name).__file__).read()]


def test_some_docstrings_show_an_example():
    assert len(_modules_with_examples()) >= 5


@pytest.mark.parametrize("name", _modules_with_examples())
def test_the_docstring_examples_hold(name):
    failed, attempted = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0
