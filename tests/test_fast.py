"""The compiled kernel (payroute_env/_fast.py) and the numpy reference (core.step_numpy) agree bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from payroute_env import BUILTIN_SCENARIOS, actions, core, load_scenario

pytest.importorskip("numba")


def _assert_same(a: core.CoreState, b: core.CoreState, where: str) -> None:
    for f in dataclasses.fields(core.CoreState):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype, f"{where}: {f.name} dtype {x.dtype} != {y.dtype}"
        assert np.array_equal(x, y), f"{where}: {f.name} differs at {np.argwhere(x != y)[:3].tolist()}"


@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_compiled_step_matches_numpy_reference(name: str) -> None:
    sc = load_scenario(name)
    params = core.make_params(sc)
    n_envs, n_banks = 3, sc.n_banks
    ref = fast = core.reset(params, seeds=np.arange(n_envs) + 11)
    rng = np.random.default_rng(7)
    for t in range(params.n_steps):
        raw = rng.random((n_envs, 4 * n_banks)).astype(np.float32)
        if t % 4 == 0:  # mix in the status quo so banks overload, collapse and recover
            raw[:] = actions.status_quo("continuous", n_banks)
        if t % 9 == 0:
            raw[:, 0::4] = 0.0  # throttle everything now and then
        admit, route = actions.decode("continuous", raw, n_banks, ref.admit, ref.route)
        ref, ref_counts = core.step_numpy(params, ref, admit, route)
        fast, fast_counts = core.step_compiled(params, fast, admit, route)
        _assert_same(ref, fast, f"{name} step {t}")
        for f in ("arrived", "succeeded", "lost", "attempts", "failed_attempts", "truncated"):
            assert np.array_equal(getattr(ref_counts, f), getattr(fast_counts, f)), f"{name} step {t}: {f}"
    assert ref.lost.sum() > 0 and ref.succeeded.sum() > 0


def test_parallel_kernel_matches_serial() -> None:
    params = core.make_params(load_scenario("double11_2013"))
    n = core._PARALLEL_FROM  # the smallest batch that takes the threaded kernel
    admit = np.ones((n, 6))
    route = np.tile(actions.ROUTE_PRESETS[2], (n, 6, 1))
    batch = core.reset(params, seeds=np.arange(n))
    alone = core.reset(params, seeds=[n - 1])
    for _ in range(120):
        batch, _ = core.step_compiled(params, batch, admit, route)
        alone, _ = core.step_compiled(params, alone, admit[:1], route[:1])
    # the last environment of the threaded batch equals the same environment stepped alone (serial kernel)
    for f in dataclasses.fields(core.CoreState):
        assert np.array_equal(getattr(batch, f.name)[-1], getattr(alone, f.name)[0]), f.name
