"""Units fitted together (one network call for several units of a job): each unit gets what it gets alone."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import DEVICE

from napari_dip.core import loop
from napari_dip.core.loop import Problem
from napari_dip.core.presets import get_settings
from napari_dip.core.quality import heldout_mask


def _noisy_problem(seed, size=32):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clean = 0.5 + 0.3 * torch.sin(6 * xx + seed) * torch.cos(4 * yy)
    target = (clean + 0.1 * torch.randn((size, size), generator=g))[None, None]
    return Problem(target=target, out_channels=1, out_spatial=(size, size),
                   heldout=heldout_mask((size, size), 0.1, seed), noise_variance=0.01)


def _settings(**changes):
    settings = get_settings("denoise", "fast")  # light decoder, two members, held-out stop, coarse-to-fine
    return dataclasses.replace(settings, **dict(dict(iterations=300, snapshot_every=50, mix_with=None,
                                                     channels_last=False), **changes))


def _finals(states):
    return {unit: state for unit, state in states if state.done}


@pytest.mark.parametrize("changes", [{}, {"stop_patience": 40, "coarse_to_fine": ((30, 4), (30, 2))}])
def test_units_fitted_together_match_each_unit_fitted_alone(changes):
    settings = _settings(**changes)
    problems = [_noisy_problem(seed) for seed in (1, 2, 3)]
    together = _finals(loop.fit_units(problems, settings, device=DEVICE))
    assert sorted(together) == [0, 1, 2]
    for unit, problem in enumerate(problems):
        alone = list(loop.fit(problem, settings, device=DEVICE))[-1]
        both = together[unit]
        # the same stop (the held-out rule sees the same errors, to rounding) and the same result
        assert both.iteration == alone.iteration and both.best_iteration == alone.best_iteration
        assert both.stop_reason == alone.stop_reason
        assert torch.allclose(both.estimate, alone.estimate, atol=2e-4)
        # the fitted state is the unit's own, shaped as one unit's network holds it (the counters are shared)
        for name, weights in alone.fitted.weights.items():
            assert both.fitted.weights[name].shape == weights.shape
            if weights.dim() == 0:
                continue
            assert torch.allclose(both.fitted.weights[name], weights, atol=2e-3), name


def test_a_unit_that_stops_early_leaves_the_others_running():
    settings = _settings(stop_patience=40, coarse_to_fine=((30, 4), (30, 2)), iterations=600)
    problems = [_noisy_problem(1), _noisy_problem(2, size=32)]
    problems[1].target = problems[1].target * 0 + 0.5  # a flat unit: its held-out error stops improving early
    finals = list(loop.fit_units(problems, settings, device=DEVICE))
    order = [unit for unit, state in finals if state.done]
    stopped = _finals(finals)
    assert set(order) == {0, 1}
    assert stopped[0].iteration != stopped[1].iteration  # each unit stops by its own rule
    later = max(stopped, key=lambda u: stopped[u].iteration)
    assert order[-1] == later
    # snapshots after a unit's stop are of the units still running
    first_done = next(i for i, (_, s) in enumerate(finals) if s.done)
    assert all(unit == later for unit, _ in finals[first_done + 1:])


def test_units_fitted_together_need_one_shape_and_the_light_decoder():
    settings = _settings()
    with pytest.raises(ValueError, match="one shape"):
        list(loop.fit_units([_noisy_problem(1, 32), _noisy_problem(2, 16)], settings, device=DEVICE))
    with pytest.raises(ValueError, match="light"):
        list(loop.fit_units([_noisy_problem(1), _noisy_problem(2)], get_settings("inpaint", "fast"),
                            device=DEVICE))


def test_a_stop_ends_every_unit_with_its_last_result():
    settings = _settings(auto_stop=False, iterations=1000)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 20

    finals = _finals(loop.fit_units([_noisy_problem(1), _noisy_problem(2)], settings, device=DEVICE,
                                    should_stop=stop))
    assert {u: s.iteration for u, s in finals.items()} == {0: 20, 1: 20}
    assert all(s.stop_reason == "stopped by user" for s in finals.values())
    assert not np.allclose(finals[0].estimate.cpu().numpy(), finals[1].estimate.cpu().numpy())


LIGHT = dict(network_kind="light", network_channels=8, network_levels=2, network_head_channels=4, input_channels=4,
             coarse_to_fine=(), iterations=40, snapshot_every=10, seed=0, device="cpu", tile_size=None,
             noise="gaussian", workers=1, mix_with=None)


def _stack(planes=3, side=32):
    rng = np.random.default_rng(5)
    return (rng.random((planes, side, side)) * 0.5 + 0.25).astype(np.float32)


def test_a_stack_fitted_together_gives_each_plane_its_own_fit():
    from napari_dip import restore, restore_iter

    data = _stack()
    alone = restore(data, warm_start=False, units_together=1, **LIGHT)
    run = restore_iter(data, warm_start=False, units_together=3, **LIGHT)
    counted = [snapshot.plane for snapshot in run]
    together = run.result
    assert counted == sorted(counted)  # progress counts finished units: the widget's plane count never goes back
    np.testing.assert_allclose(together.image, alone.image, rtol=0, atol=2e-3)
    assert [u.iterations for u in together.record.units] == [u.iterations for u in alone.record.units]
    assert together.record.units_together["count"] == 3 and alone.record.units_together["count"] == 1
    assert together.record.units[0].fitted_with == [1, 2]
    # with warm starts asked for, units fitted together still start from scratch, and the record says so
    warm = restore(data, warm_start=True, units_together=2, **LIGHT)
    assert [u.started_from for u in warm.record.units] == ["random initialisation"] * 3
    assert [u.fitted_with for u in warm.record.units] == [[1], [0], None]
    assert np.array_equal(data, _stack())  # the caller's array is untouched


def test_units_together_on_the_cpu_by_default_is_one_and_bad_values_are_clear_errors():
    from napari_dip import restore, restore_iter
    from napari_dip.errors import DIPInputError

    assert restore(_stack(2, 16), warm_start=False, **dict(LIGHT, iterations=2)).record.units_together[
        "count"] == 1
    with pytest.raises(DIPInputError, match="units_together must be 'auto'"):
        restore_iter(_stack(), units_together=0, **LIGHT)
    with pytest.raises(DIPInputError, match="light network"):
        hole = np.zeros((3, 32, 32), bool)
        hole[:, 10:14, 10:20] = True
        restore_iter(_stack(), task="inpaint", mask=hole, units_together=2,
                     **{k: v for k, v in LIGHT.items() if not k.startswith("network") and k != "coarse_to_fine"})


def test_out_of_memory_with_units_together_says_to_fit_fewer(monkeypatch):
    from napari_dip import restore
    from napari_dip.core import loop
    from napari_dip.errors import DIPMemoryError

    def exhausted(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")
        yield

    monkeypatch.setattr(loop, "fit_units", exhausted)
    with pytest.raises(DIPMemoryError, match=r"3 units fitted together. Try units_together=1"):
        restore(_stack(), warm_start=False, units_together=3, **LIGHT)
