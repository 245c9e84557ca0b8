"""The compiled dynamics (payroute_env/physics.py): how counts are split, and that one source gives one
trajectory whichever way it runs (threaded or not, compiled or plain Python)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from payroute_env import core, physics
from payroute_env.sampling import key_from_seed, step_counter
from payroute_env.simulator import Simulator


def same_state(a: np.ndarray, b: np.ndarray) -> bool:
    """Every field equal (not ``tobytes``: an aligned record's padding bytes are not copied)."""
    return a.shape == b.shape and all(np.array_equal(a[f], b[f]) for f in a.dtype.names)


@njit
def _take(cells: np.ndarray, num: float, den: float, u: float) -> np.ndarray:
    out = np.empty((1, cells.shape[0]))
    physics.take(cells.reshape(1, -1), 0, out, 0, cells.shape[0], num, den, u)
    return out[0]


@njit
def _binomial_cells(cells: np.ndarray, p: float, keys: np.ndarray) -> np.ndarray:
    """``binomial_cells`` of one row under many keys: ``[len(keys), len(cells)]``."""
    n = cells.shape[0]
    src = cells.reshape(1, -1)
    out = np.empty((keys.shape[0], n))
    for i in range(keys.shape[0]):
        physics.binomial_cells(src, 0, out, i, n, p, keys[i], step_counter(3), 7)
    return out


cells_st = st.lists(st.integers(0, 10**9).map(float), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(cells=cells_st, share=st.floats(0.0, 1.0), u=st.floats(0.0, 1 - 2.0**-53))
def test_take_stays_within_one_of_its_share_and_never_takes_more_than_a_cell_holds(
    cells: list[float], share: float, u: float
) -> None:
    c = np.array(cells)
    taken = _take(c, share, 1.0, u)
    assert np.array_equal(taken, np.floor(taken)) and (taken >= 0).all() and (taken <= c).all()
    assert np.all(np.abs(taken - share * c) <= 1 + 1e-9 * c)
    assert abs(taken.sum() - share * c.sum()) <= 1 + 1e-9 * c.sum()


@pytest.mark.parametrize("cells", [[7.0, 0.0, 3.0], [1.0, 1.0, 1.0, 1.0], [0.0, 5.0]])
@pytest.mark.parametrize("share", [0.0, 0.13, 0.5, 0.999, 1.0])
def test_take_is_unbiased_over_its_uniform(cells: list[float], share: float) -> None:
    c = np.array(cells)
    grid = (np.arange(4096) + 0.5) / 4096  # u uniform over (0, 1), finely gridded
    mean = np.mean([_take(c, share, 1.0, u) for u in grid], axis=0)
    assert np.allclose(mean, share * c, atol=1e-3)


def test_take_of_a_whole_count_over_its_total_takes_it_exactly() -> None:
    """Spreading a count m over a row of total n (share m / n) gives exactly m, whatever the uniform."""
    c = np.array([3.0, 999_999_937.0, 12.0])
    for m in (0.0, 1.0, 77.0, c.sum() - 1, c.sum()):
        for u in (0.0, 0.3, 1 - 2.0**-53):
            assert _take(c, m, c.sum(), u).sum() == m


@pytest.mark.parametrize(("cells", "p"), [([0.0, 40.0, 25.0], 0.3), ([0.0, 4000.0, 2500.0], 0.15), ([9.0], 0.5)])
def test_binomial_cells_row_total_is_binomial_and_cells_get_their_share(cells: list[float], p: float) -> None:
    c = np.array(cells)
    draws = 100_000
    out = _binomial_cells(c, p, key_from_seed(np.arange(draws)))
    assert (out >= 0).all() and (out <= c).all() and np.array_equal(out, np.floor(out))
    total = out.sum(1)
    n = c.sum()
    var = n * p * (1 - p)
    assert abs(total.mean() - n * p) <= 5 * np.sqrt(var / draws)
    assert abs(total.var() / var - 1) <= 5 * np.sqrt(2 / draws) + 2e-3  # + the normal table's tails
    assert np.allclose(out.mean(0), p * c, atol=5 * np.sqrt(var / draws) + 1e-3)


def test_a_channel_serves_its_capacity_and_the_rest_waits_or_times_out() -> None:
    """2.4 as documented: served = min(Q, c h dt) (within one, by rounding), timed out = max(left - c h T, 0)."""
    sim = Simulator("double11_2013", num_envs=4)
    sim.reset(list(range(4)))
    status_quo = np.zeros((4, 24), dtype=np.float32)
    params = sim.params
    B = params.n_banks
    congested = 0
    for _ in range(200):
        before = sim.state.copy()
        sim.step(status_quo)
        after = sim.state
        # CMB's quick channel (bank 2): one lane, its queue before plus what was sent to it this step
        quick = after.seen_channel[:, 2, 0]
        sent, served = quick[:, 0], quick[:, 1] + quick[:, 2]  # succeeded + declined
        queue_before = before.queue[:, 4 * 2].sum(1)
        up = (before.down_left[:, 2] == 0) & (after.seen_channel[:, 2, 0, 4] == 0)
        stress = np.minimum(before.stress[:, 2], 1.0)
        health = (1 - params.scenario.banks[2].fragility.goodput_loss * stress) * before.warm[:, 2]
        capacity = after.capacity[:, 2] * health * params.dt
        expected = np.minimum(queue_before + sent, capacity)
        assert np.all(np.abs(served - expected)[up] <= 1), (served, expected)
        congested += int((up & (queue_before + sent > capacity)).sum())
    assert congested > 50 and B == 6


def test_parallel_kernel_matches_serial() -> None:
    """The threaded batch (chunks over the cores) equals each environment stepped alone (serial kernel)."""
    n = core.PARALLEL_FROM + 3  # uneven chunks
    batch, alone = Simulator("double11_2013", num_envs=n), Simulator("double11_2013", num_envs=1)
    batch.reset(list(range(n)))
    alone.reset([n - 1])
    act = np.tile(np.array([0.9, 0.5, 0.5, 0.2], dtype=np.float32), (n, 6))
    for _ in range(120):
        batch.step(act)
        alone.step(act[:1])
    assert same_state(batch.state[-1:], alone.state)


def test_kernel_runs_as_plain_python_with_numba_disabled() -> None:
    """``NUMBA_DISABLE_JIT=1`` runs the same source as Python (for a debugger) and gives the same trajectory."""
    script = (
        "import numpy as np; from payroute_env.simulator import Simulator\n"
        "sim = Simulator('double11_2013', num_envs=2); sim.reset([5, 6])\n"
        "act = np.tile(np.array([0.8, 1, 0.3, 0.1], dtype=np.float32), (2, 6))\n"
        "for _ in range(3): sim.step(act)\n"
        "import sys; sys.stdout.write(repr([sim.state[f].tolist() for f in sim.state.dtype.names]))\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    sim = Simulator("double11_2013", num_envs=2)
    sim.reset([5, 6])
    act = np.tile(np.array([0.8, 1, 0.3, 0.1], dtype=np.float32), (2, 6))
    for _ in range(3):
        sim.step(act)
    assert out.stdout == repr([sim.state[f].tolist() for f in sim.state.dtype.names])


def test_pure_step_keeps_its_input_and_matches_the_simulator() -> None:
    sim = Simulator("randomized", num_envs=4)
    sim.reset(list(range(4)))
    params = sim.params
    state = sim.state.copy()
    admit = np.full((4, 6), 0.75)
    route = np.tile(np.array([0.5, 0.3, 0.2]), (4, 6, 1))
    # the same control as a continuous action (admit 1 - 0.25, quick weight 1 - 0.5: exact in binary)
    control = np.tile(np.array([-0.25, -0.5, 0.3, 0.2]), (4, 6))
    for _ in range(100):
        before = state.copy()
        new, _ = core.step(params, state, admit, route)
        assert same_state(state, before)  # the input is kept
        state = new
        sim.step(control)
    assert same_state(state, sim.state)
