"""Shared test set-up. Keep it small: several test modules rely on it."""

import os

import pytest

# torch must be imported before a QApplication exists (GUI tests), or it can crash on import
import torch

# One torch thread: faster for these small runs, and immune to a busy machine (a run's thread governor never goes
# above the count it finds, core/threads.py)
torch.set_num_threads(1)

# The device the engine tests run on: the CPU, or NAPARI_DIP_TEST_DEVICE=cuda on a machine with a GPU
# (docs/benchmarks.md § GPU says when the suite last ran there). Tests of CPU-only behaviour name the CPU.
DEVICE = os.environ.get("NAPARI_DIP_TEST_DEVICE", "cpu")

# A network small enough for a few CPU iterations in a second
TINY_NETWORK = dict(network_down=(8, 16), network_up=(8, 16), network_skip=(2, 2), input_channels=4)


@pytest.fixture
def tiny_network():
    return dict(TINY_NETWORK)
