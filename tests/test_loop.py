"""The optimisation loop: snapshots, stopping, determinism, EMA, backtracking, early stopping."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import DEVICE

from napari_dip.core import acceleration, loop
from napari_dip.core.loop import Problem, data_term
from napari_dip.core.networks import NetworkSpec
from napari_dip.core.presets import Settings
from napari_dip.core.stopping import EarlyStopping, MovingVariance

TINY = NetworkSpec(kind="skip", down=(8, 16), up=(8, 16), skip=(2, 2))


def fit(*args, **kwargs):
    """The loop on the test device (conftest.DEVICE)."""
    return loop.fit(*args, device=DEVICE, **kwargs)


def _problem(seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand((1, 1, size, size), generator=g)
    return Problem(target=target, out_channels=1, out_spatial=(size, size))


def _settings(**kw):
    base = dict(network=TINY, input_channels=4, iterations=40, snapshot_every=10, ema=None,
                backtracking=False, early_stopping=False, lr=0.01)
    base.update(kw)
    return Settings(**base)


def test_snapshots_come_every_k_iterations_and_once_at_the_end():
    states = list(fit(_problem(), _settings(iterations=35, snapshot_every=10)))
    assert [s.iteration for s in states] == [10, 20, 30, 35]
    assert [s.done for s in states] == [False, False, False, True]
    assert states[-1].stop_reason == "completed 35 iterations"


def test_a_stop_request_is_honoured_within_one_interval():
    stop = {"now": False}
    states = []
    for state in fit(_problem(), _settings(iterations=1000), should_stop=lambda: stop["now"]):
        states.append(state)
        stop["now"] = True
    assert len(states) == 2
    assert states[-1].done and states[-1].stop_reason == "stopped by user"
    assert states[-1].iteration <= states[0].iteration + 10


def test_same_seed_same_result_and_another_seed_differs():
    def final(seed):  # on the CPU: CUDA runs are not bit-repeatable (atomics in cuDNN, docs/user-guide)
        return list(loop.fit(_problem(), _settings(reg_noise_std=0.05), seed=seed, device="cpu"))[-1].estimate.numpy()
    np.testing.assert_array_equal(final(3), final(3))
    assert not np.allclose(final(3), final(4))


def test_fit_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(fit(_problem(), _settings(iterations=2)))
    torch.testing.assert_close(torch.rand(3), expected)


def test_estimate_is_the_exponential_moving_average_of_outputs():
    w = 0.7
    outputs, estimates = [], []
    for state in fit(_problem(), _settings(iterations=12, snapshot_every=1, ema=w)):
        outputs.append(state.output.clone())
        estimates.append(state.estimate.clone())
    average = outputs[0]
    for out, est in zip(outputs[1:], estimates[1:]):
        average = w * average + (1 - w) * out
        torch.testing.assert_close(est, average)


def test_backtracking_restores_the_weights_after_an_injected_loss_jump():
    def corrupt(iteration, net):
        if iteration == 25:
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(-30.0).add_(5.0)

    settings = _settings(iterations=40, snapshot_every=1, backtracking=True, backtrack_every=1, lr=0.001)
    states = list(fit(_problem(), settings, on_iteration=corrupt))
    final = states[-1]
    assert final.backtracks == 1
    before = next(s.loss for s in states if s.iteration == 23)
    assert final.loss < 2 * before  # back where it was, not at the corrupted loss
    # without backtracking the same fault ruins the fit
    broken = list(fit(_problem(), dataclasses.replace(settings, backtracking=False), on_iteration=corrupt))
    assert broken[-1].loss > 2 * before


def test_moving_variance_matches_numpy_over_the_window():
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.random((4, 4))) for _ in range(37)]
    mv = MovingVariance(window=10)
    values = [mv.update(x) for x in xs]
    assert values[8] is None and values[9] is not None
    for t in (9, 20, 36):
        window = np.stack([x.cpu().numpy() for x in xs[t - 9:t + 1]])
        assert np.isclose(float(values[t]), window.var(axis=0).mean(), rtol=1e-4)


def test_early_stopping_fires_after_patience_past_the_variance_minimum():
    # iterates whose spread shrinks until t=300, then grows: the minimum window ends at 300
    rng = np.random.default_rng(0)
    stopper = EarlyStopping(window=20, patience=100)
    stopped_at = None
    for t in range(1, 2000):
        amplitude = abs(t - 300) + 1.0
        stopper.update(torch.tensor(t), torch.from_numpy(rng.standard_normal(8) * amplitude))
        stopper.sync()
        if stopper.should_stop(t):
            stopped_at = t
            break
    assert 290 <= stopper.best_iteration <= 320
    assert stopped_at == stopper.best_iteration + 100


def test_early_stopping_ends_a_run_and_returns_the_best_iterate():
    settings = _settings(iterations=3000, snapshot_every=50, early_stopping=True, es_window=10, es_patience=40,
                         lr=0.05)
    states = list(fit(_problem(), settings))
    final = states[-1]
    assert final.iteration < 3000
    assert final.stop_reason.startswith("early stopping")
    # the stop is read on the host every sync interval (every iteration on the CPU, up to 25 on a GPU)
    every = acceleration.sync_interval(settings, torch.device(DEVICE))
    assert final.best_iteration + 40 <= final.iteration < final.best_iteration + 40 + every


def test_poisson_data_term_is_zero_at_the_data_and_positive_elsewhere():
    y = torch.tensor([0.0, 0.5, 2.0])
    assert float(data_term(y, y, None, "poisson")) < 1e-6
    assert float(data_term(y + 0.1, y, None, "poisson")) > 0
    known = torch.tensor([1.0, 0.0, 1.0])
    assert float(data_term(torch.tensor([0.0, 9.0, 2.0]), y, known, "gaussian")) == 0.0


def test_ema_warmup_weights_recent_outputs_early_in_the_run():
    w = 0.99
    outputs, estimates = [], []
    for state in fit(_problem(), _settings(iterations=30, snapshot_every=1, ema=w, ema_warmup=True)):
        outputs.append(state.output.clone())
        estimates.append(state.estimate.clone())
    average = outputs[0]
    for t, (out, est) in enumerate(zip(outputs[1:], estimates[1:]), start=2):
        weight = min(w, t / (t + 10))
        average = weight * average + (1 - weight) * out
        torch.testing.assert_close(est, average)


def test_a_warm_start_continues_from_the_neighbours_weights_and_skips_the_coarse_stages():
    light = NetworkSpec(kind="light", channels=8, levels=2)
    settings = _settings(network=light, iterations=30, coarse_to_fine=((10, 2),))
    first = list(fit(_problem(seed=0), settings))[-1]
    assert first.fitted is not None and len(first.fitted.optimiser["state"]) > 0  # Adam's moments come along
    seen = {}

    def look(iteration, net):  # called before each step: step 1's resolution shows at step 2
        if iteration == 1:
            seen["weights"] = {k: v.clone() for k, v in net.state_dict().items()}
        if iteration == 2:
            seen["skipped"] = net.skipped_upsamples

    list(fit(_problem(seed=1), settings, start_from=first.fitted, on_iteration=look))
    for name, value in first.fitted.weights.items():
        torch.testing.assert_close(seen["weights"][name].cpu(), value)
    assert seen["skipped"] == 0  # full resolution from the first step
    cold = {}
    list(fit(_problem(seed=1), settings, on_iteration=lambda i, net: cold.setdefault(i, net.skipped_upsamples)))
    assert cold[2] == 1  # a cold start begins at the coarse stage


def test_a_warm_start_hands_on_the_kept_iterates_network_and_its_place_in_the_coarse_to_fine_plan():
    from napari_dip.core.quality import heldout_mask

    light = NetworkSpec(kind="light", channels=8, levels=2)
    settings = _settings(network=light, iterations=60, coarse_to_fine=((40, 2),), auto_stop=True, warm_start=True,
                         stop_patience=200, snapshot_every=5)
    g = torch.Generator().manual_seed(5)
    target = (torch.rand((1, 1, 16, 16), generator=g) < 0.5).float()  # noise: the held-out error soon rises
    problem = Problem(target=target, out_channels=1, out_spatial=(16, 16),
                      heldout=heldout_mask((16, 16), 0.2, seed=0), noise_variance=0.0)
    weights_after = {}  # step k's weights, seen before step k + 1

    def look(iteration, net):
        weights_after[iteration - 1] = {k: v.clone() for k, v in net.state_dict().items()}

    final = list(fit(problem, settings, on_iteration=look))[-1]
    chosen = final.best_iteration
    assert 0 < chosen < 59 and final.fitted.position == chosen
    for name, value in final.fitted.weights.items():
        torch.testing.assert_close(value, weights_after[chosen][name].cpu())
    seen = {}
    list(fit(_problem(seed=1), settings, start_from=final.fitted,
             on_iteration=lambda i, net: seen.setdefault(i, net.skipped_upsamples)))
    # called before each step: step k's resolution shows at step k + 1
    assert seen[2] == (1 if chosen < 40 else 0)  # the plan goes on from the kept iterate's stage
    if chosen < 39:
        assert seen[40 - chosen + 1] == 1 and seen[40 - chosen + 2] == 0


def test_channels_last_auto_is_on_for_the_cpu_only():
    assert acceleration.uses_channels_last("auto", torch.device("cpu")) is True
    assert acceleration.uses_channels_last("auto", torch.device("cuda")) is False  # slower there: docs/benchmarks.md
    assert acceleration.uses_channels_last(True, torch.device("cuda")) is True
    assert acceleration.uses_channels_last(False, torch.device("cpu")) is False


def test_a_failed_compile_runs_eagerly_and_says_so(monkeypatch):
    import contextlib

    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(acceleration.torch, "compile", broken)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no C compiler"):
        forward, failure = acceleration.maybe_compile(net, torch.zeros(1, 1, 8, 8), torch.device("cuda"), True,
                                               contextlib.nullcontext())
    assert forward is net and "ran eagerly" in failure
    assert acceleration.maybe_compile(net, None, torch.device("cpu"), True, contextlib.nullcontext()) == (net, None)
