"""Shared helpers: hand-made scenarios, builtin TOML text and episode runners."""

from __future__ import annotations

import copy
import math
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

import payroute_env
from payroute_env.env import PaymentRoutingEnv
from payroute_env.scenario import Scenario, scenario_from_dict

N_BUILTIN_BANKS = 6


def builtin_text(name: str) -> str:
    """The TOML text of a built-in scenario, as shipped in the package."""
    return (resources.files("payroute_env") / "scenarios" / f"{name}.toml").read_text(encoding="utf-8")


def builtin_dict(name: str) -> dict[str, Any]:
    return tomllib.loads(builtin_text(name))


def fragility(**overrides: Any) -> dict[str, Any]:
    """A sturdy server: never collapses from load, no hazard."""
    base = {
        "collapse_s": math.inf,
        "relax_s": 60.0,
        "goodput_loss": 0.0,
        "decline_gain": 0.0,
        "outage_min_s": 60.0,
        "outage_max_s": 120.0,
        "warm_start": 0.5,
        "warmup_s": 60.0,
        "hazard_per_hour": 0.0,
    }
    base.update(overrides)
    return base


def bank(name: str = "A", share: float = 1.0, **overrides: Any) -> dict[str, Any]:
    """One bank table; ``fragility`` overrides go in ``fragility={...}``."""
    frag = overrides.pop("fragility", {})
    table = {
        "name": name,
        "share": share,
        "quick_share": 1.0,
        "quick_success": 1.0,
        "netbank_success": 1.0,
        "quick_capacity": 1000.0,
        "quick_declared": 1000.0,
        "netbank_capacity": 1000.0,
        "netbank_declared": 1000.0,
        "fragility": fragility(**frag),
    }
    table.update(overrides)
    return table


def scenario_dict(banks: list[dict[str, Any]] | None = None, **top: Any) -> dict[str, Any]:
    """A small valid scenario as a dict: one sturdy bank, no balance share, 1 s steps, 60 steps.

    Keyword arguments replace top-level entries; nested tables can be replaced whole (``users={...}``).
    """
    data: dict[str, Any] = {
        "name": "handmade",
        "description": "a small hand-made scenario for tests",
        "dt_s": 1.0,
        "start_s": 0.0,
        "end_s": 60.0,
        "max_attempts": 3,
        "traffic": {"base_rate": 100.0, "surges": []},
        "users": {"abandon": 0.2, "switch": 0.4, "switch_to_balance": 0.0, "retry_delay_s": 10.0},
        "quick": {"interaction_s": 15.0, "timeout_s": 30.0},
        "netbank": {"interaction_s": 60.0, "timeout_s": 60.0},
        "switch": {
            "capacity": 1000.0,
            "declared": 1000.0,
            "success_factor": 1.0,
            "interaction_s": 20.0,
            "timeout_s": 30.0,
            "fragility": fragility(),
        },
        "balance": {"share": 0.0, "capacity": 1000.0, "success": 1.0, "interaction_s": 5.0, "timeout_s": 10.0},
        "banks": banks if banks is not None else [bank()],
    }
    for key, value in top.items():
        data[key] = copy.deepcopy(value)
    return data


def make_scenario(banks: list[dict[str, Any]] | None = None, **top: Any) -> Scenario:
    return scenario_from_dict(scenario_dict(banks, **top))


def with_users(data: dict[str, Any], **users: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    out["users"] = {**out["users"], **users}
    return out


def run_episode(env: PaymentRoutingEnv | Any, seed: int | None, policy: Any) -> list[tuple]:
    """Run one episode; ``policy(env, t)`` returns the action. Returns [(obs, reward, term, trunc, info)]."""
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info)]
    t = 0
    while True:
        obs, reward, term, trunc, info = env.step(policy(env, t))
        out.append((obs, reward, term, trunc, info))
        t += 1
        if term or trunc:
            return out


def status_quo_policy(mode: str = "continuous", n_banks: int = N_BUILTIN_BANKS):
    action = payroute_env.actions.status_quo(mode, n_banks)
    return lambda env, t: action


def assert_same_info(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Dict equality that treats NaN as equal to NaN (p95 of an episode without successes)."""
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            assert_same_info(x, y)
        elif isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), key
        else:
            assert x == y, (key, x, y)
            assert type(x) is type(y), key


def assert_same_trajectory(ta: list[tuple], tb: list[tuple]) -> None:
    assert len(ta) == len(tb)
    for (oa, ra, terma, trunca, ia), (ob, rb, termb, truncb, ib) in zip(ta, tb, strict=True):
        assert oa.dtype == ob.dtype and oa.tobytes() == ob.tobytes()
        assert ra == rb or (math.isnan(ra) and math.isnan(rb))
        assert (terma, trunca) == (termb, truncb)
        assert_same_info(ia, ib)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


# Deterministic Hypothesis runs in CI; PAYROUTE_HYPOTHESIS_PROFILE=explore searches with fresh randomness.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("PAYROUTE_HYPOTHESIS_PROFILE", "ci"))


# A short overload for training tests: a 200-second slice of the 2013 peak, 40 steps per episode.
TINY_SCENARIO = """
extends = "double11_2013"
name = "tiny"
description = "a 200-second slice of the 2013 peak"
start_s = 300.0
end_s = 500.0
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> str:
    """Path of the ``tiny`` scenario TOML (``TINY_SCENARIO``) in the test's temporary folder."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SCENARIO)
    return str(path)
