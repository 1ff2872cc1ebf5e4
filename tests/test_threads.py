"""The CPU thread governor (core/threads.py): threads from the cores other processes leave free."""

import pytest
import torch

from napari_dip.core import threads


class FakeUse:
    """Reports the other processes' CPU use from a list, one value per measurement."""

    def __init__(self, values):
        self.values = list(values)

    def others(self):
        return self.values.pop(0)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("free, ceiling, expected", [(2.0, 2, 2), (1.8, 2, 2), (1.33, 2, 1), (0.2, 2, 1),
                                                     (7.9, 4, 4), (3.0, 8, 3), (2.7, 8, 2)])
def test_threads_for_counts_cores_three_quarters_free(free, ceiling, expected):
    assert threads.threads_for(free, ceiling) == expected


def test_governor_follows_the_load_and_puts_the_count_back(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    governor = threads.ThreadGovernor(interval=0.0, first_look=0.0, use=FakeUse([0.0, 0.7, 0.7, 0.05]))
    governor.start()
    assert torch.get_num_threads() == 2  # quiet machine: both cores
    governor.poll()
    assert torch.get_num_threads() == 1  # one busy process took a core's share
    governor.poll()
    assert torch.get_num_threads() == 1
    governor.poll()
    assert torch.get_num_threads() == 2  # it left
    assert governor.describe()["changes"] == 2
    torch.set_num_threads(1)
    governor.finish()
    assert torch.get_num_threads() == 2


def test_governor_never_exceeds_the_count_it_found():
    before = torch.get_num_threads()
    governor = threads.ThreadGovernor(interval=0.0, first_look=0.0, use=FakeUse([0.0] * 5)).start()
    governor.poll()
    assert torch.get_num_threads() == before == governor.describe()["most"]

