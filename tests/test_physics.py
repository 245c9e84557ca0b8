"""The compiled dynamics (payroute_env/physics.py) against the numpy implementation they replaced (tests/oracle.py).

Bit for bit on every built-in scenario, every state field, the observation and the counts: the move to one
compiled source changed no trajectory, so every figure in README and docs/ still holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import oracle
import pytest

from payroute_env import BUILTIN_SCENARIOS, actions, core, load_scenario
from payroute_env.simulator import Simulator

STATE_FIELDS = (
    "key", "t", "backlog", "queue", "stress", "down_left", "warm", "admit", "route", "peak_scale", "capacity",
    "pool_frac", "dest", "grow_rate", "seen_bank", "seen_channel", "seen_balance", "arrived", "succeeded", "lost",
    "attempts", "failed_attempts", "entered_pool", "lost_pool", "outage_s", "paid_by", "latency_hist",
)  # fmt: skip


def same_state(a: np.ndarray, b: np.ndarray) -> bool:
    """Every field equal (not ``tobytes``: an aligned record's padding bytes are not copied)."""
    return a.shape == b.shape and all(np.array_equal(a[f], b[f]) for f in a.dtype.names)


def _oracle_obs(params: core.CoreParams, fields: dict, observe_internal: bool) -> np.ndarray:
    view = SimpleNamespace(**fields, num_envs=fields["t"].shape[0])
    return oracle.build(params, view, observe_internal)


def _raw_actions(rng: np.random.Generator, mode: str, n: int, n_banks: int, t: int) -> np.ndarray:
    if mode == "continuous":
        raw = rng.random((n, 4 * n_banks)).astype(np.float32) * 1.4 - 0.2  # some outside [0, 1]: clipped
        if t % 4 == 0:  # the status quo now and then, so banks overload, collapse and recover
            raw[:] = actions.status_quo("continuous", n_banks)
        if t % 9 == 0:
            raw[:, 0::4] = 0.0
        if t % 13 == 0:
            raw[:, 1::4] = raw[:, 2::4] = raw[:, 3::4] = 0.0  # all-zero weights mean quick
        return raw
    if mode == "multidiscrete":
        return rng.integers(0, np.tile([11, 5], n_banks), size=(n, 2 * n_banks))
    return rng.integers(0, 1 + 4 * n_banks, size=n)


@pytest.mark.parametrize("mode", actions.ACTION_MODES)
@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_kernel_matches_the_numpy_oracle_bit_for_bit(name: str, mode: str) -> None:
    sim = Simulator(name, num_envs=3, action_mode=mode, observe_internal=True)
    params = sim.params
    sim.reset([11, 12, 13])
    ref = {f: np.copy(getattr(sim.state, f)) for f in STATE_FIELDS}
    rng = np.random.default_rng(7)
    steps = params.n_steps if mode == "continuous" else 200
    for t in range(steps):
        raw = _raw_actions(rng, mode, 3, sim.n_banks, t)
        admit, route = oracle.decode(mode, raw, sim.n_banks, ref["admit"], ref["route"])
        ref_state = SimpleNamespace(**ref, num_envs=3)
        ref, ref_counts = oracle.step_numpy(params, ref_state, admit, route)
        obs, reward, truncated, counts = sim.step(raw)
        for f in STATE_FIELDS:
            got, want = getattr(sim.state, f), ref[f]
            assert np.array_equal(got, want), f"{name} {mode} step {t}: {f} differs at {np.argwhere(got != want)[:3]}"
        assert np.array_equal(obs, _oracle_obs(params, ref, True)), f"{name} {mode} step {t}: observation"
        for f in ("arrived", "succeeded", "lost", "attempts", "failed_attempts", "truncated"):
            assert np.array_equal(getattr(counts, f), ref_counts[f]), f"{name} {mode} step {t}: {f}"
        want_reward = -(ref_counts["lost"] + 0.1 * ref_counts["failed_attempts"]) / params.norm
        assert np.array_equal(reward, want_reward) and np.array_equal(truncated, ref_counts["truncated"])
    assert ref["lost"].sum() > 0 and ref["succeeded"].sum() > 0


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


def test_decode_matches_the_oracle_for_every_mode() -> None:
    rng = np.random.default_rng(3)
    admit = rng.choice(actions.ADMIT_LEVELS, size=(50, 6))
    route = actions.ROUTE_PRESETS[rng.integers(0, 5, size=(50, 6))]
    for mode in actions.ACTION_MODES:
        for t in range(20):
            raw = _raw_actions(rng, mode, 50, 6, t)
            got = actions.decode(mode, raw, 6, admit, route)
            want = oracle.decode(mode, raw, 6, admit, route)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (mode, t)


def test_pure_step_matches_the_oracle_and_keeps_its_input() -> None:
    params = core.make_params(load_scenario("randomized"))
    state = core.reset(params, seeds=np.arange(4))
    admit = np.full((4, 6), 0.7)
    route = np.tile(np.array([0.5, 0.3, 0.2]), (4, 6, 1))
    for _ in range(100):
        before = state.copy()
        ref, _ = oracle.step_numpy(
            params, SimpleNamespace(**{f: state[f] for f in STATE_FIELDS}, num_envs=4), admit, route
        )
        new, _ = core.step(params, state, admit, route)
        assert same_state(state, before)  # the input is kept
        state = new
        for f in STATE_FIELDS:
            assert np.array_equal(getattr(state, f), ref[f]), f
