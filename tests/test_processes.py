"""Units fitted in worker processes (processes.py): how units are grouped and counted, and runs that use them."""

import numpy as np
import pytest

from napari_dip import restore, restore_iter
from napari_dip.core.tiling import Tile
from napari_dip.errors import DIPInputError
from napari_dip.executor import Unit
from napari_dip.processes import MIN_CHAIN, MIN_WORK, WORKER_SETUP_BYTES, WarmStarts, at_once, plan_workers

CPU = dict(iterations=12, snapshot_every=4, seed=0, device="cpu", tile_size=None, noise="gaussian")


def stack(planes=4, side=32):
    rng = np.random.default_rng(3)
    return (rng.random((planes, side, side)) * 0.5 + 0.25).astype(np.float32)


def plane_units(planes):
    return [Unit(p, p, (p,), None) for p in range(planes)]


def test_warm_starts_follow_the_plane_before_within_runs_of_neighbouring_planes():
    assert WarmStarts(plane_units(4), True, 1).parent == {0: None, 1: 0, 2: 1, 3: 2}
    assert WarmStarts(plane_units(5), True, 2).parent == {0: None, 1: 0, 2: 1, 3: None, 4: 3}
    assert set(WarmStarts(plane_units(3), False, 2).parent.values()) == {None}
    tiles = [Tile(i, 0, i, (0, 8), (8 * i, 8 * i + 8)) for i in range(2)]
    units = [Unit(2 * p + i, p, (p,), tiles[i]) for p in range(3) for i in range(2)]
    # two tile places keep two workers busy: each tile starts from its place in the plane before
    assert WarmStarts(units, True, 2).parent == {0: None, 1: None, 2: 0, 3: 1, 4: 2, 5: 3}


def test_a_fitted_state_is_kept_until_the_unit_that_starts_from_it_has_started():
    warm = WarmStarts(plane_units(6), True, 2)  # runs 0-1-2 and 3-4-5
    assert warm.ready(0) and warm.ready(3) and not warm.ready(1)
    warm.finish(0, "state 0")
    assert warm.ready(1) and not warm.ready(2)
    assert warm.start_from(1) == (0, "state 0")
    assert 0 not in warm.states  # nobody else needs it
    warm.finish(1, None)  # not restored: the next plane starts from scratch
    assert warm.start_from(2) is None


def test_worker_plan_follows_free_cores_memory_and_the_size_of_the_job():
    room = 10 * (WORKER_SETUP_BYTES + 1e8)

    def machine(others=0.0, free=room):
        return lambda: (others, 1e8, free)

    plan = plan_workers("auto", 4, 8, machine(), work=MIN_WORK)
    assert (plan.processes, plan.threads) == (4, 1)
    assert plan_workers("auto", 4, 8, machine(others=1.0), work=MIN_WORK).processes == 3
    plan = plan_workers("auto", 4, 2, machine(), work=MIN_WORK)  # two units worth running at once: two cores each
    assert (plan.processes, plan.threads) == (2, 2)
    assert plan_workers("auto", 4, 8, machine(free=2 * (WORKER_SETUP_BYTES + 1e8)), work=MIN_WORK).processes == 2
    plan = plan_workers("auto", 4, 8, machine(), work=MIN_WORK / 2)
    assert plan.processes == 1 and "too small" in plan.why
    assert plan_workers(1, 4, 8, machine()).processes == 1
    assert plan_workers(3, 1, 8, machine()).processes == 3  # asked for: given, whatever the cores
    assert plan_workers(3, 4, 1, machine()).processes == 1


def test_warm_started_planes_are_worth_a_worker_per_few_planes_independent_units_each_one():
    assert at_once(plane_units(16), warm_start=False) == 16
    assert at_once(plane_units(16), warm_start=True) == 16 // MIN_CHAIN
    assert at_once(plane_units(3), warm_start=True) == 1
    tiles = [Tile(i, 0, i, (0, 8), (8 * i, 8 * i + 8)) for i in range(3)]
    assert at_once([Unit(i, 0, (0,), tiles[i]) for i in range(3)], warm_start=True) == 3


def test_bad_workers_is_a_clear_error():
    with pytest.raises(DIPInputError, match="workers must be 'auto'"):
        restore_iter(stack(), workers=0, **CPU)


def test_independent_units_give_the_same_result_in_workers_as_in_one_process(tiny_network):
    one = restore(stack(), workers=1, warm_start=False, **CPU, **tiny_network)
    two = restore(stack(), workers=2, warm_start=False, **CPU, **tiny_network)
    np.testing.assert_array_equal(two.image, one.image)
    assert two.record.cpu_threads["processes"] == 2 and one.record.cpu_threads["processes"] == 1
    assert [u.unit for u in two.record.units] == [0, 1, 2, 3] and two.record.units_restored == 4
    assert not np.allclose(two.image, stack())  # restored, not the input
    # tiles of two planes, finishing out of order in three workers, blend as they do in one process
    tiled = dict(CPU, tile_size=32, overlap=8)
    one = restore(stack(2, 48), workers=1, **tiled, **tiny_network)
    three = restore(stack(2, 48), workers=3, **tiled, **tiny_network)
    assert three.record.tiling["grid"] == [2, 2] and len(three.record.units) == 8
    # the same tiles, added in another order: the overlaps' weighted sums differ by rounding only
    np.testing.assert_allclose(three.image, one.image, rtol=0, atol=1e-6)


def test_warm_planes_run_in_chains_and_a_stop_keeps_what_was_done(tiny_network):
    warm = restore(stack(), workers=2, warm_start=True, **CPU, **tiny_network)
    assert [u.started_from for u in warm.record.units] == [
        "random initialisation", "plane 1", "random initialisation", "plane 3"]

    data = stack(6)
    run = restore_iter(data, workers=2, warm_start=True, **dict(CPU, iterations=400), **tiny_network)
    first = next(run)
    run.stop()
    snapshots = [first, *run]
    assert snapshots[-1].done and snapshots[-1].image.shape == data.shape
    record = run.result.record
    assert record.stop_reason.startswith("stopped by user at plane")
    reasons = [u.stop_reason for u in record.units]
    assert "stopped by user" in reasons and reasons[-1] == "stopped by user before this plane"
    assert record.iterations < 2 * 400
    np.testing.assert_allclose(run.result.image[-1], data[-1], atol=1e-5)  # not restored: the input stands in
    assert data.dtype == np.float32 and np.array_equal(data, stack(6))  # the caller's array is untouched
