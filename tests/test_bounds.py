"""The fluid lower bound: hand-computable tiny scenarios, relaxation properties, and built-in scenarios."""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import pytest

from agents.deciders import load_policy
from agents.evaluation import run_policy
from payroute_env.bounds import fluid_bound
from payroute_env.scenario import BUILTIN_SCENARIOS, scenario_from_dict

FRAGILITY = {
    "collapse_s": 600.0,
    "relax_s": 120.0,
    "goodput_loss": 0.3,
    "decline_gain": 0.2,
    "outage_min_s": 900.0,
    "outage_max_s": 1800.0,
    "warm_start": 0.33,
    "warmup_s": 300.0,
    "hazard_per_hour": 0.0,
}


def tiny(**over: Any) -> dict[str, Any]:
    """One bank, no balance payers, quick channel only unless overridden; one attempt, no declines."""
    d: dict[str, Any] = {
        "name": "tiny",
        "description": "hand-computable",
        "dt_s": 5.0,
        "start_s": 0.0,
        "end_s": 600.0,
        "max_attempts": 1,
        "traffic": {"base_rate": 100.0},
        "users": {"abandon": 0.0, "switch": 0.0, "switch_to_balance": 0.0, "retry_delay_s": 1.0},
        "quick": {"interaction_s": 15.0, "timeout_s": 10.0},
        "netbank": {"interaction_s": 60.0, "timeout_s": 10.0},
        "balance": {"share": 0.0, "capacity": 0.0, "success": 1.0, "interaction_s": 5.0, "timeout_s": 10.0},
        "switch": {
            "capacity": 0.0,
            "declared": 0.0,
            "success_factor": 1.0,
            "interaction_s": 20.0,
            "timeout_s": 10.0,
        },
        "fragility": FRAGILITY,
        "banks": [
            {
                "name": "A",
                "share": 1.0,
                "quick_share": 1.0,
                "quick_success": 1.0,
                "netbank_success": 1.0,
                "quick_capacity": 60.0,
                "quick_declared": 60.0,
                "netbank_capacity": 0.0,
                "netbank_declared": 0.0,
            }
        ],
    }
    d = copy.deepcopy(d)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    return d


def bank(**over: Any) -> list[dict[str, Any]]:
    b = tiny()["banks"][0]
    b.update(over)
    return [b]


def solve(d: dict[str, Any], layer_s: float = 5.0) -> Any:
    return fluid_bound(scenario_from_dict(d, "tiny"), layer_s=layer_s)


def test_capacity_limit_with_deadline_queue() -> None:
    # 100/s for 600 s against 60/s: 36,000 served, 600 (= 60/s x 10 s timeout) may still queue at the end.
    r = solve(tiny())
    assert r.arrived == pytest.approx(60_000)
    assert r.lost == pytest.approx(60_000 - 36_000 - 600, rel=1e-6)
    assert r.failed_payment_rate == pytest.approx(23_400 / 60_000, rel=1e-6)
    # the optimal plan: the 600 queued at the end, everything offered admitted or throttled per layer
    np.testing.assert_allclose(r.queued_at_end, [600.0], rtol=1e-6)
    assert r.pending == pytest.approx(600.0, rel=1e-6)
    assert r.lane_admitted.shape[0] == r.pool_throttled.shape[0] == 600 // 5  # 5 s layers
    offered = r.lane_admitted.sum(1) + r.pool_throttled.sum(1)
    np.testing.assert_allclose(offered, 100.0 * 5, rtol=1e-6)  # 100 intents/s, one attempt each


def test_pending_counts_as_lost_removes_the_end_of_night_parking() -> None:
    # the same 100/s against 60/s: charged for them, the LP no longer parks 600 attempts in the queue
    r = fluid_bound(scenario_from_dict(tiny(), "tiny"), layer_s=5.0, pending_counts_as_lost=True)
    assert r.lost + r.pending == pytest.approx(60_000 - 36_000, rel=1e-6)
    assert r.failed_payment_rate == pytest.approx(24_000 / 60_000, rel=1e-6)
    assert r.lost + r.succeeded + r.pending == pytest.approx(r.arrived, rel=1e-6)


def test_queue_holds_only_recent_attempts() -> None:
    # 10/s against 60/s, half declined, one attempt: every attempt is served (or waits) and half of the served
    # fail. At the end the queue may hold only what arrived within the 10 s timeout (2 steps = 100 intents),
    # not the 600 the queue has room for: 0.5 x (6,000 - 100) lost.
    r = solve(tiny(traffic={"base_rate": 10.0}, banks=bank(quick_success=0.5)))
    assert r.lost == pytest.approx(0.5 * (6_000 - 100), rel=1e-6)


def test_overflow_uses_switch_and_netbank_only_where_allowed() -> None:
    # Quick-enabled half (50/s) fits quick 60/s; netbank-only half (50/s) has netbank 20/s and may not use the
    # switch: it loses 30/s, less the 20/s x 10 s it may hold queued at the end.
    d = tiny(banks=bank(quick_share=0.5, netbank_capacity=20.0, netbank_declared=20.0))
    d["switch"]["capacity"] = 100.0
    r = solve(d)
    assert r.lost == pytest.approx(30 * 600 - 20 * 10, rel=1e-6)
    # with the switch, quick-enabled overflow is carried: 100/s quick-enabled against 60 quick + 40 switch
    d = tiny(banks=bank(quick_capacity=60.0))
    d["switch"]["capacity"] = 40.0
    r = solve(d)
    assert r.failed_payment_rate == pytest.approx(0.0, abs=1e-9)
    assert r.paid_by_channel["switch"] > 0


def pulse(rate: float, until_s: float) -> dict[str, Any]:
    """Traffic of ``rate`` intents/s from 0 to ``until_s``, nothing afterwards."""
    surge = {
        "start_s": 0.0,
        "peak_rate": rate,
        "jump_s": 1e-6,
        "jump_fraction": 1.0,
        "peak_at_s": 1e-6,
        "peak_until_s": until_s,
        "half_life_s": 1e-6,
    }
    return {"base_rate": 0.0, "surges": [surge]}


def test_patience_window_after_a_pulse() -> None:
    # 100/s for 50 s, capacity 50/s, timeout 30 s, one attempt: 2,500 served during the pulse and at most
    # 50 x 30 = 1,500 queued (each served within its 30 s), so 1,000 of 5,000 are lost.
    d = tiny(
        traffic=pulse(100.0, 50.0),
        quick={"interaction_s": 15.0, "timeout_s": 30.0},
        banks=bank(quick_capacity=50.0),
        end_s=300.0,
    )
    r = solve(d)
    assert r.arrived == pytest.approx(5_000)
    assert r.lost == pytest.approx(1_000, rel=1e-6)


def test_decline_floor_with_retries() -> None:
    # Unlimited capacity, success 0.8, abandon 0.2, three attempts: an intent is lost if attempt 1 fails and the
    # user abandons, or 1 fails, retries, 2 fails and abandons, or all three fail.
    s, a = 0.8, 0.2
    f = 1 - s
    expected = f * a + f * (1 - a) * f * a + f * (1 - a) * f * (1 - a) * f
    # Traffic stops half-way, so every intent is resolved before the end (nothing left pending).
    d = tiny(
        max_attempts=3,
        traffic=pulse(100.0, 300.0),
        users={"abandon": a, "switch": 0.0, "switch_to_balance": 0.0, "retry_delay_s": 1.0},
        banks=bank(quick_capacity=1e5, quick_success=s),
    )
    r = solve(d)
    assert r.pending == pytest.approx(0.0, abs=1e-3)
    assert r.failed_payment_rate == pytest.approx(expected, rel=1e-6)
    # switching to another card works like a retry when there is no other bank; to balance it pays surely
    d["users"] = {"abandon": a, "switch": 0.4, "switch_to_balance": 1.0, "retry_delay_s": 1.0}
    d["balance"] = {"share": 0.0, "capacity": 1e5, "success": 1.0, "interaction_s": 5.0, "timeout_s": 10.0}
    r = solve(d)
    retry = 1 - a - 0.4
    assert r.failed_payment_rate == pytest.approx(f * a + f * retry * f * a + f * retry * f * retry * f, rel=1e-6)


def test_coarser_layers_relax_the_step_lp() -> None:
    d = tiny(
        max_attempts=3,
        users={"abandon": 0.25, "switch": 0.0, "switch_to_balance": 0.0, "retry_delay_s": 30.0},
        banks=bank(quick_success=0.9),
    )
    fine = solve(d, layer_s=5.0)
    coarse = solve(d, layer_s=60.0)
    for r in (fine, coarse):  # every expected intent is paid, lost or still pending at the end
        assert r.lost + r.succeeded + r.pending == pytest.approx(r.arrived, rel=1e-6)
    assert coarse.lost <= fine.lost + 1e-6 * fine.arrived
    assert coarse.lost >= 0.8 * fine.lost  # a relaxation, not a different model


def test_a_layer_longer_than_the_night_is_the_whole_night() -> None:
    # 1e308 s overflowed the step count (a 21-line OverflowError from evaluate.py): it is one layer of 600 s
    whole = solve(tiny(), layer_s=600.0)
    assert whole.lane_admitted.shape[0] == 1
    huge = solve(tiny(), layer_s=1e308)
    assert huge.lane_admitted.shape[0] == 1 and huge.failed_payment_rate == whole.failed_payment_rate


def test_more_capacity_never_raises_the_bound() -> None:
    lo = solve(tiny(banks=bank(quick_capacity=60.0)), layer_s=30.0)
    hi = solve(tiny(banks=bank(quick_capacity=80.0)), layer_s=30.0)
    assert hi.lost < lo.lost


@functools.cache
def plain_and_cut_bounds(scenario: str) -> tuple[Any, Any]:
    """A built-in scenario's bound without and with both cuts (the slow LPs, solved once for the tests below)."""
    return fluid_bound(scenario), fluid_bound(scenario, no_collapse=True, bank_throttle=True)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_bound_below_evaluated_heuristics(scenario: str) -> None:
    seeds = [7, 8]
    bound, cut = plain_and_cut_bounds(scenario)
    assert bound.status and 0.0 < bound.failed_payment_rate < 1.0
    # the plan's own bookkeeping: every expected intent is paid, lost or still pending at the end
    assert bound.succeeded > 0 and bound.pending >= -1e-6 * bound.arrived
    assert bound.lost + bound.succeeded + bound.pending == pytest.approx(bound.arrived, rel=1e-6)
    # with the cuts, the bound speaks for policies that never collapse a bank: check it against those
    assert cut.failed_payment_rate >= bound.failed_payment_rate - 1e-9
    for name in ("admit_all", "aimd", "success_rate_router"):
        result = run_policy(load_policy(name, scenario), scenario, seeds, timeline=False)
        mean = result.summary["failed_payment_rate"]
        assert bound.failed_payment_rate <= mean, (scenario, name, bound.failed_payment_rate, mean)
        if all(e["outage_minutes"] == 0 for e in result.episodes):
            assert cut.failed_payment_rate <= mean, (scenario, name, cut.failed_payment_rate, mean)


def test_bound_accepts_per_episode_parameters() -> None:
    from payroute_env.simulator import Simulator

    sim = Simulator("randomized", 2)
    sim.reset(seeds=[3, 4])
    rates = [fluid_bound("randomized", state=sim.state, env_index=i, layer_s=120).failed_payment_rate for i in range(2)]
    assert rates[0] != rates[1]
    assert all(0.0 < r < 1.0 for r in rates)
    assert np.isfinite(rates).all()


# ---- cuts for policies that never collapse a bank (docs/MODEL.md, section 8) ---------------------------------
FAST_COLLAPSE = {**FRAGILITY, "collapse_s": 5.0}  # 5 s at twice the capacity; relaxes in 120 s


def solve_cut(d: dict[str, Any], layer_s: float = 5.0, **cuts: bool) -> Any:
    return fluid_bound(scenario_from_dict(d, "tiny"), layer_s=layer_s, **cuts)


@pytest.mark.parametrize("layer_s", [5.0, 60.0])
def test_no_collapse_limits_the_overload_budget(layer_s: float) -> None:
    # 100/s offered to a 60/s channel for 600 s, one attempt each. Without the cut the LP serves 60/s and
    # parks a full timeout's worth (60/s x 10 s) in the queue at the end. Stress may only grow by
    # (load / capacity - 1) / collapse_s summed to below 1: 60 x 5 = 300 attempts over capacity in all, so
    # only 300 can be parked.
    d = tiny(fragility=FAST_COLLAPSE)
    arrived = 100.0 * 600.0
    assert solve_cut(d, layer_s).lost == pytest.approx(arrived - 60.0 * 600.0 - 60.0 * 10.0, rel=1e-6)
    cut = solve_cut(d, layer_s, no_collapse=True)
    assert cut.lost == pytest.approx(arrived - 60.0 * 600.0 - 60.0 * 5.0, rel=1e-6)
    assert cut.lost + cut.succeeded + cut.pending == pytest.approx(cut.arrived, rel=1e-6)


def test_no_collapse_charges_the_capacity_stress_costs() -> None:
    # 100/s for 300 s, then 50/s for 300 s, against 60/s. With the cut, overloading by 300 attempts before
    # traffic drops leaves stress near 1; with a goodput loss the stressed channel then serves less than the
    # 50/s still arriving, so the cut LP overloads less and loses more. Without the cut stress is free.
    surge = {"start_s": 0.0, "peak_rate": 50.0, "jump_s": 1.0, "jump_fraction": 1.0, "peak_at_s": 1.0,
             "peak_until_s": 300.0, "half_life_s": 0.5}  # fmt: skip
    lost = {}
    for gl in (0.0, 0.3):
        d = tiny(fragility={**FAST_COLLAPSE, "goodput_loss": gl}, traffic={"base_rate": 50.0, "surges": [surge]})
        for cut in (False, True):
            for layer_s in (5.0, 60.0):
                lost[gl, cut, layer_s] = solve_cut(d, layer_s, no_collapse=cut).lost
    for layer_s in (5.0, 60.0):
        assert lost[0.3, False, layer_s] == pytest.approx(lost[0.0, False, layer_s], rel=1e-9)
        assert lost[0.0, True, layer_s] > lost[0.0, False, layer_s] + 250  # the 300-attempt overload budget
        assert lost[0.3, True, layer_s] > lost[0.0, True, layer_s] + 5
    assert lost[0.3, True, 60.0] <= lost[0.3, True, 5.0] + 1e-6  # layers relax the step-by-step rows


@pytest.mark.parametrize(
    "fragility",
    [
        {"collapse_s": 200.0},  # stress grows more slowly than it relaxes (120 s): drift concave in the load
        {"collapse_s": 600.0, "relax_s": 1000.0},  # one step at the core's rho cap cannot collapse it
        {"collapse_s": 5.0, "hazard_per_hour": 1.0},  # exogenous outages reset stress
    ],
)
def test_no_collapse_leaves_servers_it_cannot_bound_free(fragility: dict[str, float]) -> None:
    d = tiny(fragility={**FRAGILITY, **fragility})
    assert solve_cut(d, no_collapse=True).lost == pytest.approx(solve_cut(d).lost, rel=1e-9)


def test_bank_throttle_ties_the_pools_of_a_bank() -> None:
    # Half the users can only pay by online banking, whose channel has no capacity; the bank core's
    # capacity is the quick channel's 60/s. Stress forbids loading the core with more than 60/s (+ 300).
    # Throttling only the online-banking users keeps every quick-enabled user (30/s) paid; with one admit
    # rate per bank the core's load (1 - h) 100/s must stay under 60/s, so only 60% of quick users pay.
    d = tiny(fragility=FAST_COLLAPSE, banks=bank(quick_share=0.5))
    arrived = 100.0 * 600.0
    for cuts in ({}, {"no_collapse": True}, {"bank_throttle": True}):
        assert solve_cut(d, **cuts).lost == pytest.approx(arrived / 2, rel=1e-6), cuts
    both = solve_cut(d, no_collapse=True, bank_throttle=True)
    assert both.lost == pytest.approx(arrived - (60.0 * 600.0 + 60.0 * 5.0) / 2, rel=1e-6)


@pytest.mark.slow
def test_cuts_only_raise_the_bound_on_double11_2013() -> None:
    plain, cut = plain_and_cut_bounds("double11_2013")
    assert plain.failed_payment_rate <= cut.failed_payment_rate <= plain.failed_payment_rate + 0.005
    assert cut.n_variables == plain.n_variables + cut.lane_admitted.shape[0] * 8  # one stress per server and layer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer_s": float("inf")}, "layer_s = inf: expected a finite number of seconds > 0"),
        ({"layer_s": "60"}, "layer_s = '60': expected a finite number"),
        ({"layer_s": 0.0}, "layer_s = 0.0"),
        ({"tolerance": -1.0}, "tolerance = -1.0: expected a number in \\(0, 1\\)"),
        ({"env_index": 5}, "env_index = 5 needs a state"),
    ],
)
def test_bad_arguments_are_named_before_any_lp_is_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fluid_bound("steady", **kwargs)


def test_a_state_must_fit_the_scenario_and_env_index_must_be_in_it() -> None:
    from payroute_env.simulator import Simulator

    sim = Simulator("steady", 2)
    sim.reset(seeds=[0, 1])
    for index in (2, -1, True):
        with pytest.raises(ValueError, match="expected a whole number in \\[0, 2\\)"):
            fluid_bound("steady", state=sim.state, env_index=index)
    one_bank = tiny()
    with pytest.raises(ValueError, match="state does not belong to scenario"):
        fluid_bound(scenario_from_dict(one_bank), state=sim.state)


# ---- planning from a running episode's state (from_now) --------------------------------------------------------
@pytest.fixture()
def peak_slice(tiny: str) -> str:  # conftest's ``tiny`` fixture (a 200-second slice of the 2013 peak), renamed
    return tiny  # here, where ``tiny()`` builds the one-bank scenario


def test_from_now_at_a_reset_is_the_whole_episode(peak_slice: str) -> None:
    from payroute_env.simulator import Simulator

    sim = Simulator(peak_slice, 1)
    sim.reset(seeds=[0])
    for cuts in ({}, {"no_collapse": True, "bank_throttle": True, "pending_counts_as_lost": True}):
        whole = fluid_bound(peak_slice, state=sim.state, layer_s=20.0, **cuts)
        now = fluid_bound(peak_slice, state=sim.state, layer_s=20.0, from_now=True, **cuts)
        assert now.failed_payment_rate == pytest.approx(whole.failed_payment_rate, rel=1e-9), cuts
        assert now.arrived == whole.arrived


def test_from_now_starts_from_the_queues_and_backlog_and_plans_the_rest(peak_slice: str) -> None:
    from agents.deciders.heuristics import AdmitAll
    from payroute_env.simulator import Simulator

    sim = Simulator(peak_slice, 1)
    sim.reset(seeds=[0])
    policy = AdmitAll(peak_slice)
    for _ in range(20):  # half the 200-second slice: queues and retry backlog are full
        sim.step(policy.predict(sim.observations())[0])
    state = sim.state
    in_flight = float(state.queue[0].sum() + state.backlog[0].sum())
    assert in_flight > 1000
    params = sim.params
    rest = (params.base_per_step + float(state.peak_scale[0]) * params.surge_per_step)[20:].sum()
    b = fluid_bound(peak_slice, state=state, layer_s=20.0, from_now=True)
    assert b.arrived == pytest.approx(rest, rel=1e-9)
    # every intent arriving from now on or in flight now is paid, lost or still pending at the end
    assert b.lost + b.succeeded + b.pending == pytest.approx(b.arrived + in_flight, rel=1e-6)


def test_from_now_is_below_the_expected_rest_of_a_good_policy(peak_slice: str) -> None:
    from agents.deciders import load_policy
    from payroute_env import core
    from payroute_env.simulator import Simulator

    router = load_policy("success_rate_router", peak_slice)
    sim = Simulator(peak_slice, 1)
    sim.reset(seeds=[0])
    router.reset(1)
    obs = sim.observations()
    for _ in range(20):
        obs, *_ = sim.step(router.predict(obs)[0])
    bound = fluid_bound(peak_slice, state=sim.state, layer_s=20.0, from_now=True)
    futures = Simulator(peak_slice, 8)
    futures.state = core.replicate(sim.state, 0, np.arange(1, 9, dtype=np.uint64))
    lost_now = futures.state.lost.copy()
    router.reset(8)  # the router's memory starts afresh in the copies
    obs = futures.observations()
    while futures.state.t[0] < futures.params.n_steps:  # the rest of the episode, from copies of the state
        obs, *_ = futures.step(router.predict(obs)[0])
    assert bound.lost <= float((futures.state.lost - lost_now).mean())


def surge_with_retries(**fragility: float) -> Any:
    """The one-bank case with a 300-second surge to 100/s over 50/s, three attempts and retries after 30 s."""
    surge = {"start_s": 0.0, "peak_rate": 50.0, "jump_s": 1.0, "jump_fraction": 1.0, "peak_at_s": 1.0,
             "peak_until_s": 300.0, "half_life_s": 0.001}  # fmt: skip
    users = {"abandon": 0.2, "switch": 0.0, "switch_to_balance": 0.0, "retry_delay_s": 30.0}
    d = tiny(fragility={**FAST_COLLAPSE, **fragility}, traffic={"base_rate": 50.0, "surges": [surge]})
    return scenario_from_dict({**d, "max_attempts": 3, "users": users}, "tiny")


@pytest.mark.parametrize("cuts", [False, True])
@pytest.mark.parametrize(("layer_s", "layer"), [(5.0, 50), (5.0, 61), (5.0, 100), (30.0, 9), (60.0, 5)])
def test_from_now_continues_the_whole_plan(layer_s: float, layer: int, cuts: bool) -> None:
    # Bellman's principle of optimality: started from the state the whole-episode plan reaches after a layer
    # (its queues, retry backlog and stress), the best plan for the rest costs what the whole plan's rest costs
    from payroute_env import core
    from payroute_env.bounds import nominal_state

    sc = surge_with_retries()
    options = {"no_collapse": True, "bank_throttle": True, "pending_counts_as_lost": True} if cuts else {}
    whole = fluid_bound(sc, layer_s=layer_s, **options)
    state = nominal_state(sc)
    state.t[0] = layer * whole.layer_steps
    state.queue[0] = np.maximum(whole.queued[layer - 1], 0.0)  # the solver's round-off can be a hair below 0
    state.backlog[0, :, 1:] = np.maximum(whole.waiting[layer - 1], 0.0)
    if cuts:
        state.stress[0] = np.maximum(whole.stress[layer - 1], 0.0)
    rest = fluid_bound(sc, state=state, layer_s=layer_s, from_now=True, **options)
    whole_rest = whole.lost_by_layer[layer:].sum() + (whole.pending if cuts else 0.0)
    assert rest.lost + (rest.pending if cuts else 0.0) == pytest.approx(whole_rest, rel=1e-5, abs=1e-3)
    params = core.make_params(sc)
    to_come = (params.base_per_step + params.surge_per_step)[state.t[0] :].sum()
    assert rest.arrived == pytest.approx(to_come, rel=1e-9) and rest.arrived < whole.arrived


def test_a_server_down_now_serves_nothing_until_it_is_back() -> None:
    # 100/s against a 60/s channel for 600 s, one attempt each; the bank is down for the first 300 s. It
    # then serves 60/s for 300 s and parks a timeout's worth (60/s x 10 s) at the end.
    from payroute_env import core
    from payroute_env.bounds import nominal_state

    sc = scenario_from_dict(tiny(), "tiny")
    state = nominal_state(sc)
    state.down_left[0, 0] = 300.0
    b = fluid_bound(sc, state=state, layer_s=5.0, from_now=True)
    assert b.lost == pytest.approx(100.0 * 600.0 - 60.0 * 300.0 - 60.0 * 10.0, rel=1e-6)
    assert core.make_params(sc).channel_server[0] == 0  # the quick channel belongs to the bank's server


def test_a_bank_down_now_rejects_its_switch_lane_too() -> None:
    # As above, but the bank's users can only go through the switch (60/s; the bank's own quick channel has
    # no capacity). The switch stays up, yet the core rejects a down bank's switch lane: 300 s of service.
    from payroute_env.bounds import nominal_state

    d = tiny(banks=bank(quick_capacity=0.0, quick_declared=0.0))
    d["switch"].update(capacity=60.0, declared=60.0)
    sc = scenario_from_dict(d, "tiny")
    state = nominal_state(sc)
    up = fluid_bound(sc, state=state, layer_s=5.0, from_now=True)
    assert up.lost == pytest.approx(100.0 * 600.0 - 60.0 * 600.0 - 60.0 * 10.0, rel=1e-6)
    state.down_left[0, 0] = 300.0  # the bank's server; the switch is server 1
    down = fluid_bound(sc, state=state, layer_s=5.0, from_now=True)
    assert down.lost == pytest.approx(100.0 * 600.0 - 60.0 * 300.0 - 60.0 * 10.0, rel=1e-6)


def test_what_waits_at_a_down_bank_is_rejected_not_kept() -> None:
    # 30/s against a 60/s channel, one attempt each; 600 attempts queued and the bank down for one more step.
    # The core rejects the queue and the step's 150 arrivals; afterwards every arrival is paid. Keeping the
    # queue through the outage and serving it afterwards would lose fewer.
    from payroute_env.bounds import nominal_state

    sc = scenario_from_dict(tiny(traffic={"base_rate": 30.0}), "tiny")
    state = nominal_state(sc)
    state.down_left[0, 0] = 5.0
    state.queue[0, 0, 0] = 600.0
    b = fluid_bound(sc, state=state, layer_s=5.0, from_now=True)
    assert b.lost == pytest.approx(600.0 + 30.0 * 5.0, rel=1e-6)


def test_a_server_back_from_an_outage_warms_up_as_in_the_core() -> None:
    # Just back from an outage at a third of its capacity, the 60/s channel regains warm_rate a second.
    from payroute_env import core
    from payroute_env.bounds import nominal_state

    sc = scenario_from_dict(tiny(), "tiny")
    params = core.make_params(sc)
    state = nominal_state(sc)
    state.warm[0, 0] = params.warm_start[0]
    b = fluid_bound(sc, state=state, layer_s=60.0, from_now=True)
    steps = np.arange(params.n_steps)
    health = np.minimum(params.warm_start[0] + steps * params.dt * params.warm_rate[0], 1.0)
    served = (60.0 * params.dt * health).sum()
    assert health[0] < 0.5 and health[-1] == 1.0
    assert b.lost == pytest.approx(100.0 * 600.0 - served - 60.0 * 10.0, rel=1e-6)


def test_a_stressed_start_leaves_less_overload_budget() -> None:
    # With no goodput loss only the overload budget changes: from zero stress 300 attempts beyond capacity
    # may be parked at the end (test_no_collapse_limits_the_overload_budget); from stress 0.5, 150.
    from payroute_env.bounds import nominal_state

    sc = scenario_from_dict(tiny(fragility={**FAST_COLLAPSE, "goodput_loss": 0.0}), "tiny")
    state = nominal_state(sc)
    fresh = fluid_bound(sc, state=state, layer_s=5.0, from_now=True, no_collapse=True)
    state.stress[0, 0] = 0.5
    stressed = fluid_bound(sc, state=state, layer_s=5.0, from_now=True, no_collapse=True)
    assert stressed.lost == pytest.approx(fresh.lost + 150.0, rel=1e-6)
    # with a goodput loss a stressed start also serves less at first
    sc = scenario_from_dict(tiny(fragility=FAST_COLLAPSE), "tiny")
    state = nominal_state(sc)
    state.stress[0, 0] = 0.5
    assert fluid_bound(sc, state=state, layer_s=5.0, from_now=True, no_collapse=True).lost > stressed.lost + 150.0


def test_attempts_queued_now_may_wait_out_their_deadline_and_no_longer() -> None:
    # Two steps left, 600 attempts queued now (a full 60/s x 10 s queue), 20/s arriving, one attempt each.
    # A FIFO channel serves 300 a step, so the 600 are served within their 10 s deadline: nothing is lost,
    # and all 200 newer arrivals are still queued at the end. The LP may keep the attempts queued now
    # past the first step (they are at most 10 s old then) but not past the second.
    from payroute_env import core
    from payroute_env.bounds import nominal_state

    sc = scenario_from_dict(tiny(traffic={"base_rate": 20.0}), "tiny")
    state = nominal_state(sc)
    state.t[0] = core.make_params(sc).n_steps - 2
    state.queue[0, 0, 0] = 600.0
    b = fluid_bound(sc, state=state, layer_s=5.0, from_now=True)
    assert b.lost == pytest.approx(0.0, abs=1e-3)
    assert b.pending == pytest.approx(200.0, rel=1e-6)


def test_a_stressed_start_serves_less_from_the_first_step() -> None:
    # Two steps left, stress 0.9 with goodput loss 0.9, 600 queued now, 10/s arriving, one attempt each.
    # Step 1 serves 300 (1 - 0.9 x 0.9) = 57. Unloaded beyond its 50 arrivals, stress relaxes at 1/120 per
    # second of spare capacity: 0.9 - (5 - 50/60) / 120 before step 2, which serves 300 (1 - 0.9 x that). (The
    # LP measures the load against the healthy 60/s, the core against the stressed capacity, under which
    # stress would relax a little less: the LP's rows are a relaxation.)
    # Only the 100 arrivals may still be queued at the end (the 600 are past their 10 s deadline), so the
    # rest of the 700 is lost. (Throttling the arrivals would relax stress a little more, but each
    # throttled attempt is lost while each admitted one can stay queued: admitting them all is optimal.)
    from payroute_env import core
    from payroute_env.bounds import nominal_state

    gl, s0, relax_s = 0.9, 0.9, 120.0
    sc = scenario_from_dict(
        tiny(fragility={**FAST_COLLAPSE, "goodput_loss": gl, "relax_s": relax_s}, traffic={"base_rate": 10.0}), "tiny"
    )
    state = nominal_state(sc)
    state.t[0] = core.make_params(sc).n_steps - 2
    state.queue[0, 0, 0] = 600.0
    state.stress[0, 0] = s0
    b = fluid_bound(sc, state=state, layer_s=5.0, from_now=True, no_collapse=True)
    stress_before_step_2 = s0 - (5.0 - 50.0 / 60.0) / relax_s
    served = 300.0 * (1 - gl * s0) + 300.0 * (1 - gl * stress_before_step_2)
    assert b.lost == pytest.approx(700.0 - served - 100.0, rel=1e-6)
    assert b.pending == pytest.approx(100.0, rel=1e-6)


def test_from_now_at_the_end_of_the_episode_is_a_clear_error() -> None:
    from payroute_env.bounds import nominal_state

    sc = scenario_from_dict(tiny(), "tiny")
    state = nominal_state(sc)
    state.t[0] = 120
    with pytest.raises(ValueError, match=r"the state is at step 120: expected a step in \[0, 120\) to plan from"):
        fluid_bound(sc, state=state, from_now=True)


@pytest.mark.parametrize(("field", "value"), [("capacity", -1.0), ("pool_frac", np.nan), ("queue", np.inf)])
def test_a_state_with_impossible_figures_is_named(field: str, value: float) -> None:
    from payroute_env.bounds import nominal_state

    sc = scenario_from_dict(tiny(), "tiny")
    state = nominal_state(sc)
    getattr(state, field)[0].flat[0] = value
    with pytest.raises(ValueError, match=f"state.{field} of environment 0 must be finite and >= 0"):
        fluid_bound(sc, state=state, from_now=True)
