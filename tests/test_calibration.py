"""Calibration against the seed story (DESIGN.md sections 1-2), with the 2013 status quo and simple controls."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from conftest import bank, builtin_dict, run_episode, scenario_dict, status_quo_policy, with_users

from payroute_env import PaymentRoutingEnv
from payroute_env.actions import status_quo
from payroute_env.core import SEEN_FIELDS
from payroute_env.scenario import Scenario, scenario_from_dict

SEEDS = (0, 1, 2)
B = 6
CCB, CMB, ICBC = 1, 2, 0
F = {name: i for i, name in enumerate(SEEN_FIELDS)}


def episode(scenario, seed: int, policy=None) -> tuple[dict, np.ndarray]:
    """Run one episode; return the final info and the episode total of ``seen_channel`` [B, 3, fields]."""
    env = PaymentRoutingEnv(scenario)
    totals = []
    base = policy or status_quo_policy("continuous", env.scenario.n_banks)

    def tracking(env, t):
        if t > 0:
            totals.append(env.state.seen_channel[0].copy())
        return base(env, t)

    traj = run_episode(env, seed, tracking)
    totals.append(env.state.seen_channel[0].copy())
    return traj[-1][4], np.sum(totals, axis=0)


@cache
def status_quo_2013(seed: int) -> tuple[dict, np.ndarray]:
    return episode("double11_2013", seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_2013_status_quo_ccb_collapses(seed: int) -> None:
    kpis = status_quo_2013(seed)[0]["episode_kpis"]
    assert kpis["outage_seconds"]["CCB"] > 0
    # ICBC holds
    assert kpis["outage_seconds"]["ICBC"] == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_2013_status_quo_cmb_congests(seed: int) -> None:
    _, seen = status_quo_2013(seed)
    cmb = seen[CMB]  # [route, field]
    sent = cmb[:, F["sent"]].sum()
    failed_fast = cmb[:, F["timed_out"]].sum() + cmb[:, F["rejected"]].sum()
    assert sent > 0
    assert failed_fast / sent >= 0.05, failed_fast / sent
    # ICBC has room: few of its attempts time out or are rejected
    icbc = seen[ICBC]
    assert (icbc[:, F["timed_out"]].sum() + icbc[:, F["rejected"]].sum()) / icbc[:, F["sent"]].sum() < 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_2013_status_quo_icbc_fails_least_and_the_night_fails_a_lot(seed: int) -> None:
    kpis = status_quo_2013(seed)[0]["episode_kpis"]
    by_bank = kpis["failed_payment_rate_by_bank"]
    assert min(by_bank, key=by_bank.get) == "ICBC", by_bank
    assert kpis["failed_payment_rate"] > 0.10
    assert max(by_bank, key=by_bank.get) == "CCB", by_bank


@pytest.mark.parametrize("seed", SEEDS)
def test_steady_status_quo_fails_almost_nothing(seed: int) -> None:
    info, _ = episode("steady", seed)
    kpis = info["episode_kpis"]
    assert kpis["failed_payment_rate"] < 0.02
    assert all(v == 0 for v in kpis["outage_seconds"].values())
    assert info["arrived"] > 0


# ------------------------------------------------------------------------------------------ retry storm


def fragile_single_bank(abandon: float) -> Scenario:
    """New intents alone stay just under the bank's capacity; retries push it over.

    Switchers all pay with the platform balance, so the only difference between ``abandon = 0.22`` and
    ``abandon = 0.6`` (with ``switch = 0.4``) is whether 38% of failed users retry the bank or nobody does.
    """
    banks = [
        bank(
            "F",
            1.0,
            quick_share=1.0,
            quick_success=0.3,
            quick_capacity=1000.0,
            netbank_capacity=0.0,
            fragility={"collapse_s": 60.0, "relax_s": 120.0, "goodput_loss": 0.3, "decline_gain": 0.2},
        )
    ]
    data = scenario_dict(
        banks,
        dt_s=5.0,
        end_s=1800.0,
        traffic={"base_rate": 950.0, "surges": []},
        users={"abandon": abandon, "switch": 0.4, "switch_to_balance": 1.0, "retry_delay_s": 30.0},
    )
    data["balance"]["capacity"] = 1e5
    return scenario_from_dict(data)


def total_outage(info: dict) -> float:
    return sum(info["episode_kpis"]["outage_seconds"].values())


@pytest.mark.parametrize("seed", SEEDS)
def test_retry_storm_collapses_a_bank_that_new_traffic_alone_does_not(seed: int) -> None:
    on, _ = episode(fragile_single_bank(0.22), seed, status_quo_policy("continuous", 1))
    off, _ = episode(fragile_single_bank(0.60), seed, status_quo_policy("continuous", 1))
    assert off["attempts"] < on["attempts"]
    assert total_outage(off) == 0
    assert total_outage(on) > 0


def test_retry_storm_on_double11_2013() -> None:
    """The 2013 night with its 38% retry share versus the same night where failed users never retry."""
    on_data = with_users(builtin_dict("double11_2013"), abandon=0.22, switch=0.4)
    off_data = with_users(builtin_dict("double11_2013"), abandon=0.6, switch=0.4)
    on_sc, off_sc = scenario_from_dict(on_data), scenario_from_dict(off_data)
    on = [total_outage(episode(on_sc, s)[0]) for s in SEEDS]
    off = [total_outage(episode(off_sc, s)[0]) for s in SEEDS]
    assert sum(on) > sum(off)


# ------------------------------------------------------------------------------------------ throttling


def ccb_throttle(fraction: float = 0.9):
    """Each step admit CCB at ``fraction`` of its true capacity over what it was offered in the last step."""
    action = status_quo("continuous", B).copy()

    def policy(env, t: int) -> np.ndarray:
        a = action.copy()
        cap = env.state.capacity[0, [CCB, B + CCB]].sum()  # true quick + netbank attempts/s
        offered = env.state.seen_bank[0, CCB, 0]
        admit = 1.0 if offered <= 0 else min(1.0, fraction * cap * env.scenario.dt_s / offered)
        a[4 * CCB] = admit - 1.0  # the continuous action's admit component: 0 admits all, -1 nothing
        return a

    return policy


@pytest.mark.parametrize("seed", SEEDS)
def test_throttling_ccb_to_its_capacity_prevents_its_collapse(seed: int) -> None:
    info, seen = episode("double11_2013", seed, ccb_throttle())
    kpis = info["episode_kpis"]
    assert kpis["outage_seconds"]["CCB"] == 0
    assert status_quo_2013(seed)[0]["episode_kpis"]["outage_seconds"]["CCB"] > 0
    # it really throttled, and CCB kept serving all night
    assert seen[CCB, :, F["succeeded"]].sum() > status_quo_2013(seed)[1][CCB, :, F["succeeded"]].sum()
    assert seen[CCB, :, F["rejected"]].sum() == 0


def test_the_throttle_controller_is_not_a_no_op() -> None:
    env = PaymentRoutingEnv("double11_2013")
    policy = ccb_throttle()
    env.reset(seed=0)
    admits = []
    for t in range(200):
        env.step(policy(env, t))
        admits.append(env.state.admit[0, CCB])
    assert min(admits) < 0.7
    assert admits[0] == 1.0
