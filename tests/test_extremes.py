"""Every numeric field of a scenario at its extremes (the reliability issue's grid).

Each field of a built-in scenario is set, alone, to every value of a grid from -inf to +inf (subnormals, 0,
1e308, ...). A value is either refused with a ``ScenarioError`` that names the field, or it runs: finite
observations, rewards and figures at every step, every intent accounted for, every success in the latency
histogram. The compiled kernel and the plain-Python oracle (``NUMBA_DISABLE_JIT=1``, the same source run by
Python, where an index out of bounds raises) give the same trajectory bit for bit on the grid's extremes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from payroute_env import load_scenario
from payroute_env.scenario import Scenario, ScenarioError, scenario_from_dict
from payroute_env.simulator import Simulator

FLOATS = [
    -math.inf, -1e308, -1e20, -1.0, -1e-310, 0.0, 1e-310, 1e-9, 1e-3, 0.5, 1.0, 2.0, 1e9, 1e20, 1e308, math.inf,
]  # fmt: skip
INTEGERS = [-1, 0, 1, 10, 11, 2**63, 10**30]
# three controls the kernel must survive: the status quo, admit nothing, admit all and route away from quick
ACTIONS = [[0.0, 0.0, 0.0, 0.0], [-1.0, 1.0, -1.0, 1.0], [1.0, -1.0, 1.0, -1.0]]
STEPS = 120  # from 23:58 through midnight's jump into the surge (double11_2013 steps every 5 s)
ORACLE_STEPS = 12  # plain Python is about a thousand times slower: a short horizon across midnight
LATENCY_FIGURES = {"median_time_to_success_s", "p95_time_to_success_s"}  # undefined when nothing succeeded


def base_scenario(name: str, start_s: float | None = None) -> dict[str, Any]:
    """A built-in (its ``extends`` resolved) as a plain table, cut to ``STEPS`` steps."""
    data = dataclasses.asdict(load_scenario(name))
    if start_s is not None:
        data["start_s"] = start_s
    data["end_s"] = data["start_s"] + STEPS * data["dt_s"]
    return data


def numeric_fields(table: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every number in ``table``; of a list of tables (banks, surges) the first two."""
    paths = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths += numeric_fields(value, path + ".")
        elif isinstance(value, list | tuple) and value and isinstance(value[0], dict):
            for i, item in enumerate(value[:2]):
                paths += numeric_fields(item, f"{path}.{i}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            paths.append(path)
    return paths


def with_value(table: dict[str, Any], path: str, value: float) -> dict[str, Any]:
    table = copy.deepcopy(table)
    *parents, key = path.split(".")
    inner = table
    for part in parents:
        inner = inner[int(part)] if part.isdigit() else inner[part]
    inner[key] = value
    return table


def grid(table: dict[str, Any]) -> list[tuple[str, float]]:
    cases = []
    for path in numeric_fields(table):
        values = INTEGERS if path == "max_attempts" else FLOATS
        cases += [(path, value) for value in values]
    return cases


def run(sc: Scenario, steps: int, num_envs: int = 2) -> str:
    """Play ``steps`` steps, checking every invariant on the way; the digest of the whole final state."""
    sim = Simulator(sc, num_envs=num_envs)
    obs = sim.reset(list(range(num_envs)))
    assert np.isfinite(obs).all(), "observation at reset"
    digest = hashlib.sha256(obs.tobytes())
    for t in range(min(steps, sc.n_steps)):
        obs, reward, _, _ = sim.step(np.tile(ACTIONS[t % len(ACTIONS)], (num_envs, sc.n_banks)))
        assert np.isfinite(obs).all() and np.isfinite(reward).all(), f"step {t}"
        st = sim.state
        assert (st.arrived == st.succeeded + st.lost + st.in_flight).all(), f"accounting at step {t}"
        assert (st.in_flight >= 0).all() and (st.lost >= 0).all(), f"negative counts at step {t}"
        digest.update(obs.tobytes() + reward.tobytes())
    st = sim.state
    assert np.array_equal(st.latency_hist.sum(1), st.succeeded), "successes missing from the latency histogram"
    for i in range(num_envs):
        for name, figure in sim.kpis(i).items():
            if isinstance(figure, float) and not (name in LATENCY_FIGURES and st.succeeded[i] == 0):
                assert math.isfinite(figure), f"{name} = {figure}"
    digest.update(st.tobytes())
    return digest.hexdigest()


def outcome(table: dict[str, Any], path: str, value: float, steps: int, num_envs: int = 2) -> str | None:
    """The trajectory's digest, or None when the scenario is refused (then the error names the field)."""
    try:
        sc = scenario_from_dict(with_value(table, path, value), "extreme")
    except ScenarioError as err:
        assert path.split(".")[-1] in str(err), (path, value, str(err))
        return None
    try:
        return run(sc, steps, num_envs)
    except AssertionError as err:
        raise AssertionError(f"{path} = {value!r}: {err}") from None


@pytest.mark.parametrize(
    "name",
    [
        "double11_2013",
        pytest.param("randomized", marks=pytest.mark.slow),
        pytest.param("flash_sales", marks=pytest.mark.slow),
    ],
)
def test_every_numeric_field_is_refused_naming_it_or_runs_whole(name: str) -> None:
    table = base_scenario(name)
    accepted = [case for case in grid(table) if outcome(table, *case, steps=STEPS) is not None]
    assert len(numeric_fields(table)) >= 55  # the grid reaches every table: banks, surges, fragility, randomize
    assert 0 < len(accepted) < len(grid(table))  # both sides of every range are exercised somewhere


def oracle_cases(table: dict[str, Any]) -> list[tuple[str, float]]:
    """Per field, the accepted values at the grid's extremes: the smallest, the largest, the tiniest."""
    cases = []
    for path in numeric_fields(table):
        values = [v for p, v in grid(table) if p == path and _accepted(table, p, v)]
        if values:
            tiny = [v for v in values if 0 < abs(v) < 1e-6]
            cases += [(path, v) for v in sorted({min(values), max(values), *tiny})]
    return cases


def _accepted(table: dict[str, Any], path: str, value: float) -> bool:
    try:
        scenario_from_dict(with_value(table, path, value), "extreme")
    except ScenarioError:
        return False
    return True


def oracle_digests(cases_file: str) -> None:
    """The oracle's side, run in a process with ``NUMBA_DISABLE_JIT=1``: one digest per case, as JSON."""
    table = base_scenario("double11_2013", start_s=-20.0)
    cases = json.loads(Path(cases_file).read_text())
    sys.stdout.write(json.dumps([outcome(table, path, value, ORACLE_STEPS, num_envs=1) for path, value in cases]))


@pytest.mark.slow
def test_the_compiled_kernel_and_the_oracle_agree_on_the_extremes(tmp_path: Path) -> None:
    table = base_scenario("double11_2013", start_s=-20.0)  # four quiet steps, then midnight
    cases = oracle_cases(table)
    assert len(cases) > 60
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_extremes as t; "
    script += f"t.oracle_digests({str(tmp_path / 'cases.json')!r})"
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    oracle = json.loads(out.stdout)
    compiled = [outcome(table, path, value, ORACLE_STEPS, num_envs=1) for path, value in cases]
    differ = [case for case, a, b in zip(cases, compiled, oracle, strict=True) if a != b]
    assert not differ, f"{len(differ)} of {len(cases)} extremes differ between the kernel and the oracle: {differ}"
