"""The batched core: exact accounting, invariants and every mechanism of DESIGN.md section 1."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import bank, builtin_dict, fragility, make_scenario, scenario_dict, with_users
from hypothesis import given, settings
from hypothesis import strategies as st

from payroute_env import BUILTIN_SCENARIOS, core
from payroute_env.actions import ACTION_MODES, encode, status_quo
from payroute_env.core import SEEN_FIELDS
from payroute_env.scenario import Scenario, load_scenario, scenario_from_dict
from payroute_env.simulator import Simulator

F = {name: i for i, name in enumerate(SEEN_FIELDS)}
# every field of an environment's state record (the layout depends on B and K only, not the values)
FIELDS: tuple[str, ...] = core.state_dtype(core.make_params(load_scenario("double11_2013"))).names
QUICK, SWITCH, NETBANK = 0, 1, 2


# ------------------------------------------------------------------------------------------ helpers


def check_state(params: core.CoreParams, state: core.CoreState) -> None:
    """Invariants that must hold after every step, for every environment of the batch."""
    K = params.max_attempts
    in_flight = core.in_flight(state)
    # every intent is in exactly one place
    assert np.array_equal(state.arrived, state.succeeded + state.lost + in_flight)
    assert np.array_equal(state.in_flight, in_flight)  # the kernel's own count (info's "in_flight") agrees
    # every attempt made failed, succeeded or is still queued at a channel
    assert np.array_equal(state.attempts, state.failed_attempts + state.succeeded + state.queue.sum((1, 2)))
    # no intent makes more than max_attempts attempts
    assert np.all(state.attempts <= K * state.arrived)
    for name in (
        "backlog",
        "queue",
        "arrived",
        "succeeded",
        "lost",
        "attempts",
        "failed_attempts",
        "entered_pool",
        "lost_pool",
        "paid_by",
        "latency_hist",
        "seen_bank",
        "seen_balance",
    ):
        arr = getattr(state, name)
        assert np.all(np.isfinite(arr)), name
        assert np.all(arr >= 0), (name, arr.min())
        assert np.array_equal(arr, np.round(arr)), name
    seen = state.seen_channel
    assert np.all(np.isfinite(seen)) and np.all(seen >= 0)
    counts = seen[..., : F["wait_s"]]
    assert np.array_equal(counts, np.round(counts))
    assert np.array_equal(state.lost_pool.sum(1), state.lost)
    assert np.array_equal(state.paid_by.sum(1), state.succeeded)
    assert np.array_equal(state.latency_hist.sum(1), state.succeeded)
    assert np.all(state.stress >= 0) and np.all(np.isfinite(state.stress))
    assert np.all(state.down_left >= 0) and np.all(np.isfinite(state.down_left))
    assert np.all(state.warm > 0) and np.all(state.warm <= 1)
    assert np.all(state.outage_s >= 0)
    assert np.allclose(state.route.sum(2), 1.0)
    assert np.all((state.admit >= 0) & (state.admit <= 1))


def random_actions(mode: str, n_banks: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if mode == "continuous":
        a = rng.uniform(0, 1, (n, 4 * n_banks)).astype(np.float32)
        a[rng.uniform(size=a.shape) < 0.1] = 0.0  # some all-zero weights and zero admit rates
        return a
    if mode == "multidiscrete":
        return rng.integers(0, np.tile([11, 5], n_banks), size=(n, 2 * n_banks))
    return rng.integers(0, 1 + 4 * n_banks, size=n)


def run_sim(
    sim: Simulator,
    seeds: list[int],
    action: Callable[[Simulator, int], Any],
    steps: int | None = None,
    check: bool = True,
) -> list[tuple[core.CoreState, core.StepCounts]]:
    """Step a Simulator; return (state after the step, counts) per step, checking invariants on the way."""
    sim.reset(seeds)
    out = []
    steps = sim.params.n_steps if steps is None else steps
    for t in range(steps):
        before = sim.state.copy()  # the simulator steps its state in place: keep each step's own copy
        obs, reward, trunc, counts = sim.step(action(sim, t))
        after = sim.state.copy()
        if check:
            check_state(sim.params, after)
            assert np.array_equal(after.arrived - before.arrived, counts.arrived)
            assert np.array_equal(after.lost - before.lost, counts.lost)
            assert np.array_equal(after.succeeded - before.succeeded, counts.succeeded)
            assert np.array_equal(after.attempts - before.attempts, counts.attempts)
            assert np.array_equal(after.failed_attempts - before.failed_attempts, counts.failed_attempts)
            assert np.all(np.isfinite(obs)) and np.all(np.isfinite(reward))
            assert obs.dtype == np.float32
            for row in obs:
                assert sim.single_observation_space.contains(row)
            assert np.array_equal(trunc, np.full(sim.num_envs, t + 1 == sim.params.n_steps))
        out.append((after, counts))
    return out


def fixed(admit: float = 1.0, route: tuple[float, float, float] = (1.0, 0.0, 0.0), n_banks: int = 1):
    """A constant continuous batch action: this admit rate and these route weights for every bank."""
    per_bank = encode(np.array([[admit]]), np.array([[route]], dtype=np.float64))[0]

    def policy(sim: Simulator, t: int) -> np.ndarray:
        return np.tile(per_bank, (sim.num_envs, n_banks))

    return policy


# ------------------------------------------------------------------------------------------ accounting


@pytest.mark.parametrize("mode", ACTION_MODES)
@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_batch_accounting_every_step_random_actions(name: str, mode: str) -> None:
    sim = Simulator(name, num_envs=2, action_mode=mode)
    rng = np.random.default_rng(hash((name, mode)) % 2**32)
    run_sim(sim, [3, 4], lambda s, t: random_actions(mode, s.n_banks, s.num_envs, rng))
    assert np.all(sim.state.arrived > 0)


@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_batch_accounting_status_quo(name: str) -> None:
    sim = Simulator(name, num_envs=2)
    act = np.tile(status_quo("continuous", 6), (2, 1))
    run_sim(sim, [0, 1], lambda s, t: act)
    assert np.all(sim.state.succeeded > 0)


@st.composite
def fragilities(draw: st.DrawFn) -> dict[str, float]:
    lo = draw(st.sampled_from([0.0, 5.0, 300.0]))
    return fragility(
        collapse_s=draw(st.sampled_from([math.inf, 1.0, 60.0, 3000.0])),
        relax_s=draw(st.sampled_from([1.0, 120.0])),
        goodput_loss=draw(st.sampled_from([0.0, 0.5, 1.0])),
        decline_gain=draw(st.sampled_from([0.0, 0.5, 1.0])),
        outage_min_s=lo,
        outage_max_s=lo + draw(st.sampled_from([0.0, 10.0, 900.0])),
        warm_start=draw(st.sampled_from([1e-3, 0.33, 1.0])),
        warmup_s=draw(st.sampled_from([1.0, 300.0])),
        hazard_per_hour=draw(st.sampled_from([0.0, 0.0, 10.0, 1e4])),
    )


capacities = st.sampled_from([0.0, 0.0, 1.0, 50.0, 1000.0, 1e6])
probabilities = st.sampled_from([0.0, 0.3, 0.9, 1.0])


@st.composite
def valid_scenarios(draw: st.DrawFn) -> Scenario:
    n_banks = draw(st.integers(1, 4))
    raw = [draw(st.sampled_from([0.0, 0.1, 1.0, 3.0])) for _ in range(n_banks)]
    if sum(raw) == 0:
        raw = [1.0] * n_banks
    shares = [r / sum(raw) for r in raw]
    banks = [
        bank(
            f"B{i}",
            shares[i],
            quick_share=draw(probabilities),
            quick_success=draw(probabilities),
            netbank_success=draw(probabilities),
            quick_capacity=draw(capacities),
            quick_declared=draw(capacities),
            netbank_capacity=draw(capacities),
            netbank_declared=draw(capacities),
            fragility=draw(fragilities()),
        )
        for i in range(n_banks)
    ]
    abandon = draw(st.sampled_from([0.0, 0.22, 0.6, 1.0]))
    switch = draw(st.sampled_from([0.0, 0.4, 1.0])) * (1.0 - abandon)
    dt = draw(st.sampled_from([0.1, 1.0, 5.0, 60.0, 600.0]))
    n_steps = draw(st.integers(1, 25))
    start = draw(st.sampled_from([-120.0, 0.0]))
    surges = []
    if draw(st.booleans()):
        jump = draw(st.sampled_from([1.0, 60.0]))
        peak_at = jump + draw(st.sampled_from([0.0, 240.0]))
        surges.append(
            {
                "start_s": draw(st.sampled_from([-10.0, 0.0, 30.0])),
                "peak_rate": draw(st.sampled_from([0.0, 1e3, 1e6])),
                "jump_s": jump,
                "jump_fraction": draw(probabilities),
                "peak_at_s": peak_at,
                "peak_until_s": peak_at + draw(st.sampled_from([0.0, 300.0])),
                "half_life_s": draw(st.sampled_from([1.0, 900.0])),
            }
        )
    data = scenario_dict(
        banks,
        dt_s=dt,
        start_s=start,
        end_s=start + n_steps * dt,
        max_attempts=draw(st.integers(1, 5)),
        traffic={"base_rate": draw(st.sampled_from([0.0, 0.5, 100.0, 1e4, 1e6])), "surges": surges},
        users={
            "abandon": abandon,
            "switch": switch,
            "switch_to_balance": draw(probabilities),
            "retry_delay_s": draw(st.sampled_from([0.5, 30.0, 600.0])),
        },
        quick={"interaction_s": 15.0, "timeout_s": draw(st.sampled_from([0.1, 30.0, 600.0]))},
        netbank={"interaction_s": 60.0, "timeout_s": draw(st.sampled_from([0.1, 60.0]))},
        switch={
            "capacity": draw(capacities),
            "declared": draw(capacities),
            "success_factor": draw(probabilities),
            "interaction_s": 20.0,
            "timeout_s": 30.0,
            "fragility": draw(fragilities()),
        },
        balance={
            "share": draw(probabilities),
            "capacity": draw(capacities),
            "success": draw(probabilities),
            "interaction_s": 5.0,
            "timeout_s": draw(st.sampled_from([0.1, 10.0])),
        },
    )
    randomize = draw(st.sampled_from(["none", "multipliers", "wide"]))
    if randomize != "none":
        data["randomize"] = {"peak": 0.4, "capacity": 0.9, "shares": 0.4, "fragility": 0.9}
    if randomize == "wide":
        top = 0.95 if data["balance"]["share"] <= 0.95 else 0.0
        data["randomize"].update(quick_share=0.9, balance_share_max=top, shuffle_fragility=1.0)
    return scenario_from_dict(data)


@settings(max_examples=25, deadline=None)
@given(sc=valid_scenarios(), mode=st.sampled_from(ACTION_MODES), seed=st.integers(0, 2**31 - 1))
def test_accounting_holds_for_generated_scenarios(sc: Scenario, mode: str, seed: int) -> None:
    sim = Simulator(sc, num_envs=2, action_mode=mode)
    rng = np.random.default_rng(seed)
    run_sim(sim, [seed, seed + 1], lambda s, t: random_actions(mode, s.n_banks, s.num_envs, rng))


@settings(max_examples=25, deadline=None)
@given(sc=valid_scenarios(), seed=st.integers(0, 2**31 - 1))
def test_accounting_holds_for_generated_scenarios_under_status_quo(sc: Scenario, seed: int) -> None:
    sim = Simulator(sc, num_envs=2)
    act = np.tile(status_quo("continuous", sc.n_banks), (2, 1))
    run_sim(sim, [seed, seed + 7], lambda s, t: act)


def test_step_is_pure() -> None:
    """``core.step`` returns a new state and leaves its input untouched."""
    params = core.make_params(load_scenario("double11_2013"))
    state = core.reset(params, seeds=np.array([1, 2]))
    admit = np.full((2, 6), 0.7)
    route = np.tile(np.array([0.5, 0.3, 0.2]), (2, 6, 1))
    for _ in range(130):  # into the surge, with queues and stress
        state, _ = core.step(params, state, admit, route)
    snapshot = {f: np.copy(state[f]) for f in FIELDS}
    new, _ = core.step(params, state, admit, route)
    for name, value in snapshot.items():
        assert np.array_equal(getattr(state, name), value), name
    again, _ = core.step(params, state, admit, route)
    for f in FIELDS:
        assert np.array_equal(new[f], again[f]), f
    assert new.t[0] == state.t[0] + 1


def test_a_masked_reset_replaces_only_the_masked_envs() -> None:
    sim = Simulator("double11_2013", num_envs=3)
    act = np.tile(status_quo("continuous", 6), (3, 1))
    sim.reset([1, 2, 3])
    for _ in range(50):
        sim.step(act)
    before = sim.state.copy()  # the simulator resets in place
    sim.reset([9], mask=np.array([False, True, False]))
    after = sim.state
    assert after.t.tolist() == [50, 0, 50]
    assert after.arrived[1] == 0
    for f in FIELDS:
        a, b = before[f], after[f]
        assert np.array_equal(a[[0, 2]], b[[0, 2]]), f
    fresh = core.reset(sim.params, seeds=np.array([9]))
    for f in FIELDS:
        assert np.array_equal(after[f][1], fresh[f][0]), f


def test_randomized_scenario_draws_per_episode_parameters() -> None:
    params = core.make_params(load_scenario("randomized"))
    state = core.reset(params, seeds=np.arange(40))
    ratio = state.capacity / params.capacity
    assert np.all(ratio[:, :-1] >= 0.6 - 1e-12) and np.all(ratio[:, :-1] <= 1.4 + 1e-12)
    assert np.all(ratio[:, -1] == 1.0)  # the platform's own balance is not randomised
    assert np.unique(ratio[:, 0]).size == 40
    assert np.all((state.peak_scale >= 0.6) & (state.peak_scale <= 1.4))
    assert np.allclose(state.pool_frac.sum(1), 1.0)
    again = core.reset(params, seeds=np.arange(40))
    assert np.array_equal(again.capacity, state.capacity)
    fixed_sc = core.reset(core.make_params(load_scenario("double11_2013")), seeds=np.arange(3))
    assert np.all(fixed_sc.peak_scale == 1.0)


WIDE = Path(__file__).resolve().parent.parent / "agents" / "scenarios" / "randomized_wide.toml"


def test_wide_randomization_draws_quick_and_balance_shares_and_deals_fragility() -> None:
    sc = load_scenario(WIDE)
    base = load_scenario("double11_2013")
    params = core.make_params(sc)
    state = core.reset(params, seeds=np.arange(200))
    B = sc.n_banks
    balance = state.pool_frac[:, -1]
    assert np.all((balance >= base.balance.share) & (balance <= sc.randomize.balance_share_max))
    assert balance.min() < 0.2 and balance.max() > 0.55  # the range is used, 2016's 55% included
    bank_side = state.pool_frac[:, : 2 * B].reshape(-1, B, 2)
    quick = bank_side[:, :, 0] / bank_side.sum(2)
    nominal_quick = np.array([b.quick_share for b in base.banks])
    w = sc.randomize.quick_share
    assert np.all(quick >= nominal_quick * (1 - w) - 1e-12)
    assert np.all(quick <= np.minimum(nominal_quick * (1 + w), 1.0) + 1e-12)
    assert np.allclose(state.pool_frac.sum(1), 1.0) and np.allclose(state.dest.sum(-1), 1.0)
    # switchers land on quick-enabled cards at the episode's quick share, not the nominal one
    ccb_dest = state.dest[:, 0, 2:4]  # an ICBC quick user switching to CCB: quick / netbank-only pool
    assert np.allclose(ccb_dest[:, 0] / ccb_dest.sum(1), quick[:, 1])
    # dealt fragility: without the +-50% multiplier the banks' collapse speeds are a permutation of 2013's
    dealt = dataclasses.replace(sc, randomize=dataclasses.replace(sc.randomize, fragility=0.0))
    grow = core.reset(core.make_params(dealt), seeds=np.arange(200)).grow_rate[:, :B]
    nominal = core.make_params(base).grow_rate[:B]
    assert np.allclose(np.sort(grow, 1), np.sort(nominal)[None, :])
    moved = ~np.all(grow == nominal[None, :], axis=1)
    assert 0.35 < moved.mean() < 0.65  # shuffle_fragility = 0.5 (a shuffle may also leave the order as it was)
    fragile = grow.argmax(1)  # the bank with the fastest collapse
    assert len(set(fragile.tolist())) == B  # every bank is the fragile one in some episodes


def test_new_randomize_fields_leave_the_older_draws_unchanged() -> None:
    """Older draws keep their values when a scenario adds the newer kinds, so old runs replay."""
    narrow = load_scenario("randomized")
    wide = dataclasses.replace(narrow, randomize=dataclasses.replace(narrow.randomize, quick_share=0.3))
    a = core.reset(core.make_params(narrow), seeds=np.arange(20))
    b = core.reset(core.make_params(wide), seeds=np.arange(20))
    assert np.array_equal(a.capacity, b.capacity) and np.array_equal(a.peak_scale, b.peak_scale)
    assert np.array_equal(a.grow_rate, b.grow_rate)
    assert not np.array_equal(a.pool_frac, b.pool_frac)


FAMILIES = {
    name: Path(__file__).resolve().parent.parent / "agents" / "scenarios" / f"wide_fragile_{name}.toml"
    for name in ("icbc_cmb_boc", "ccb_cib_psbc")
}


def test_world_families_deal_the_fragile_bank_only_within_the_family() -> None:
    """The training and evaluation families are disjoint: the fastest collapse speed (2013's CCB) goes only to
    a bank of the family's list, uniformly; the other draws of the wide world are left as they were."""
    wide = load_scenario(WIDE)
    seen = {}
    for name, path in FAMILIES.items():
        sc = load_scenario(path)
        state = core.reset(core.make_params(sc), seeds=np.arange(3000))
        fragile = state.grow_rate[:, : sc.n_banks].argmax(1)
        allowed = [sc.bank_names.index(b) for b in sc.randomize.fragile_banks]
        share = np.bincount(fragile, minlength=sc.n_banks)[allowed] / 3000
        assert set(fragile.tolist()) == set(allowed)
        assert np.all(np.abs(share - 1 / 3) < 0.03), share  # 3.5 binomial standard deviations
        seen[name] = set(fragile.tolist())
        # the deal only moves collapse speeds: capacities, peak, shares are the wide world's, draw for draw
        same = core.reset(core.make_params(wide), seeds=np.arange(3000))
        assert np.array_equal(state.capacity, same.capacity) and np.array_equal(state.pool_frac, same.pool_frac)
        assert np.array_equal(state.peak_scale, same.peak_scale)
    assert not seen["icbc_cmb_boc"] & seen["ccb_cib_psbc"]


def test_a_fragile_bank_list_moves_only_the_fastest_speed() -> None:
    """Without shuffling or multipliers, the 2013 speeds stay where they are except that CCB's 90 s swaps with
    the drawn allowed bank: every episode's speeds are 2013's, permuted by one swap."""
    base = load_scenario("double11_2013")
    sc = scenario_from_dict({**builtin_dict("double11_2013"), "randomize": {"fragile_banks": ["CMB", "PSBC"]}})
    grow = core.reset(core.make_params(sc), seeds=np.arange(400)).grow_rate[:, : sc.n_banks]
    nominal = core.make_params(base).grow_rate[: sc.n_banks]
    changed = grow != nominal[None, :]
    assert np.all(changed.sum(1) == 2) and np.all(changed[:, 1])  # CCB and one other bank, in every episode
    assert set(grow.argmax(1).tolist()) == {2, 5}  # CMB or PSBC now collapses fastest
    assert np.allclose(np.sort(grow, 1), np.sort(nominal)[None, :])


def test_wide_randomization_accounts_for_every_intent() -> None:
    sim = Simulator(WIDE, num_envs=3)
    rng = np.random.default_rng(5)
    run_sim(sim, [0, 1, 2], lambda s, t: random_actions("continuous", s.n_banks, s.num_envs, rng))
    assert np.all(sim.state.arrived > 0)


# ------------------------------------------------------------------------------------------ mechanisms


def two_banks() -> list[dict[str, Any]]:
    return [bank("A", 0.5, quick_share=0.6), bank("B", 0.5, quick_share=0.6)]


def test_admit_zero_throttles_everything() -> None:
    sc = make_scenario(two_banks(), end_s=120.0, traffic={"base_rate": 200.0, "surges": []})
    sim = Simulator(sc, num_envs=2)
    steps = run_sim(sim, [0, 1], fixed(admit=0.0, n_banks=2))
    for state, counts in steps:
        assert np.array_equal(counts.failed_attempts, counts.attempts)
        assert np.all(counts.succeeded == 0)
        assert np.array_equal(state.seen_bank[:, :, 1], state.seen_bank[:, :, 0])  # throttled == offered
        assert np.all(state.seen_channel[..., F["sent"]] == 0)
        assert np.all(state.stress == 0)
    final = steps[-1][0]
    assert np.all(final.attempts > 0)
    assert np.all(final.paid_by == 0)
    assert np.all(final.failed_attempts == final.attempts)


def test_admit_zero_for_one_bank_only() -> None:
    sc = make_scenario(two_banks(), end_s=60.0, traffic={"base_rate": 200.0, "surges": []})
    sim = Simulator(sc, num_envs=1)
    act = np.array([[-1.0, 0, 0, 0, 0.0, 0, 0, 0]], dtype=np.float32)  # bank A admits nothing, bank B all
    steps = run_sim(sim, [5], lambda s, t: act)
    for state, _ in steps:
        assert np.array_equal(state.seen_bank[0, 0, 1], state.seen_bank[0, 0, 0])
        assert np.all(state.seen_channel[0, 0, :, F["sent"]] == 0)
        assert state.seen_bank[0, 1, 1] == 0
    assert sum(s.seen_channel[0, 1, :, F["succeeded"]].sum() for s, _ in steps) > 0


def test_admit_rate_lets_through_that_share() -> None:
    sc = make_scenario(two_banks(), end_s=200.0, traffic={"base_rate": 500.0, "surges": []})
    sim = Simulator(sc, num_envs=4)
    steps = run_sim(sim, [0, 1, 2, 3], fixed(admit=0.3, n_banks=2), check=False)
    offered = sum(s.seen_bank[:, :, 0].sum() for s, _ in steps)
    throttled = sum(s.seen_bank[:, :, 1].sum() for s, _ in steps)
    admitted_share = 1 - throttled / offered
    assert abs(admitted_share - 0.3) < 5 * math.sqrt(0.3 * 0.7 / offered) + 1e-3


@pytest.mark.parametrize("quick_share", [0.0, 0.5, 1.0])
def test_route_all_to_switch(quick_share: float) -> None:
    """Weights [0, 1, 0]: quick-enabled attempts go to the switch; netbank-only users still go to netbank."""
    banks = [bank("A", 0.5, quick_share=quick_share), bank("B", 0.5, quick_share=quick_share)]
    sc = make_scenario(banks, end_s=60.0, traffic={"base_rate": 300.0, "surges": []})
    sim = Simulator(sc, num_envs=2)
    steps = run_sim(sim, [0, 1], fixed(route=(0.0, 1.0, 0.0), n_banks=2))
    for state, _ in steps:
        sent = state.seen_channel[..., F["sent"]]  # [N, B, route]
        assert np.all(sent[:, :, QUICK] == 0)
        # admit 1: everything offered is sent, to the switch or (netbank-only users) to netbank
        assert np.array_equal(sent[:, :, SWITCH] + sent[:, :, NETBANK], state.seen_bank[:, :, 0])
        if quick_share == 1.0:
            assert np.all(sent[:, :, NETBANK] == 0)
        if quick_share == 0.0:
            assert np.all(sent[:, :, SWITCH] == 0)
        assert np.all(state.route[:, :] == [0.0, 1.0, 0.0])
    final = steps[-1][0]
    total = sum(s.seen_channel[..., F["sent"]].sum((0, 1)) for s, _ in steps)
    assert final.paid_by[:, 0].sum() == 0  # nothing paid through quick
    if quick_share > 0:
        assert total[SWITCH] > 0 and final.paid_by[:, 1].sum() > 0
    if quick_share < 1:
        assert total[NETBANK] > 0 and final.paid_by[:, 2].sum() > 0
    if quick_share == 0.5:
        assert total[SWITCH] / (total[SWITCH] + total[NETBANK]) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [((1.0, 1.0, 0.0), (0.5, 0.5, 0.0)), ((1.0, 1.0, 1.0), (1 / 3, 1 / 3, 1 / 3)), ((0.0, 0.0, 1.0), (0, 0, 1))],
)
def test_route_weights_split_quick_enabled_attempts(weights: tuple, expected: tuple) -> None:
    sc = make_scenario([bank("A", 1.0, quick_share=1.0)], end_s=100.0, traffic={"base_rate": 400.0, "surges": []})
    sim = Simulator(sc, num_envs=2)
    steps = run_sim(sim, [0, 1], fixed(route=weights))
    total = sum(s.seen_channel[:, 0, :, F["sent"]].sum(0) for s, _ in steps)
    share = total / total.sum()
    assert np.allclose(share, expected, atol=0.01)
    for state, _ in steps:
        assert np.allclose(state.route[:, 0], expected)


def test_zero_capacity_channel_only_times_out() -> None:
    """A channel with no capacity serves nothing: every attempt sent there times out (sturdy server)."""
    banks = [bank("A", 1.0, quick_share=0.5, quick_capacity=0.0, netbank_capacity=0.0)]
    sc = make_scenario(banks, end_s=60.0, traffic={"base_rate": 200.0, "surges": []})
    sim = Simulator(sc, num_envs=2)
    steps = run_sim(sim, [0, 1], fixed(route=(1.0, 0.0, 0.0)))
    for state, _ in steps:
        for r in (QUICK, NETBANK):
            ch = state.seen_channel[:, 0, r]
            assert np.array_equal(ch[:, F["timed_out"]], ch[:, F["sent"]])
            assert np.all(ch[:, [F["succeeded"], F["declined"], F["rejected"], F["queue"]]] == 0)
        assert np.all(state.down_left == 0)
    final = steps[-1][0]
    assert np.all(final.succeeded == 0)
    total = sum(s.seen_channel[:, 0, :, F["timed_out"]].sum() for s, _ in steps)
    assert total > 0


def test_zero_capacity_quick_but_healthy_netbank_and_switch() -> None:
    banks = [bank("A", 1.0, quick_share=1.0, quick_capacity=0.0)]
    sc = make_scenario(banks, end_s=60.0, traffic={"base_rate": 200.0, "surges": []})
    sim = Simulator(sc, num_envs=1)
    steps = run_sim(sim, [0], fixed(route=(1.0, 1.0, 1.0)))
    total = sum(s.seen_channel[0, 0] for s, _ in steps)
    assert total[QUICK, F["succeeded"]] == 0 and total[QUICK, F["timed_out"]] == total[QUICK, F["sent"]] > 0
    assert total[SWITCH, F["succeeded"]] > 0 and total[NETBANK, F["succeeded"]] > 0
    assert total[SWITCH, F["timed_out"]] == 0 and total[NETBANK, F["timed_out"]] == 0


def one_fragile_bank(load: float, capacity: float = 1000.0, dt: float = 1.0, end_s: float = 300.0, **frag: Any):
    """One bank whose core (quick channel only) sees ``load`` new attempts/s; nobody retries."""
    banks = [
        bank(
            "F",
            1.0,
            quick_capacity=capacity,
            netbank_capacity=0.0,
            fragility={"goodput_loss": 0.0, "decline_gain": 0.0, **frag},
        )
    ]
    return make_scenario(
        banks,
        dt_s=dt,
        end_s=end_s,
        traffic={"base_rate": load, "surges": []},
        users={"abandon": 1.0, "switch": 0.0, "switch_to_balance": 0.0, "retry_delay_s": 10.0},
    )


@pytest.mark.parametrize(("rho", "collapse_s"), [(2.0, 60.0), (4.0, 60.0), (2.0, 20.0)])
def test_stress_grows_with_overload_until_an_outage(rho: float, collapse_s: float) -> None:
    """collapse_s is the time to an outage at twice the capacity: stress grows at (rho - 1) / collapse_s."""
    sc = one_fragile_bank(rho * 1000.0, collapse_s=collapse_s, outage_min_s=1000.0, outage_max_s=1000.0)
    sim = Simulator(sc, num_envs=3)
    steps = run_sim(sim, [0, 1, 2], fixed(), steps=150)
    down = np.array([s.down_left[:, 0] > 0 for s, _ in steps])  # [T, N]
    expected = collapse_s / (rho - 1.0)
    for i in range(3):
        first = int(np.argmax(down[:, i])) + 1  # steps taken when the outage started
        assert down[:, i].any()
        assert expected - 2 <= first * sc.dt_s <= expected + 2
        stress_before = np.array([s.stress[i, 0] for s, _ in steps[: first - 1]])
        assert np.all(stress_before < 1.0)
        assert np.all(np.diff(stress_before) > 0)
        assert steps[first - 1][0].stress[i, 0] == 0.0  # reset when the outage starts


def test_no_outage_below_capacity() -> None:
    sc = one_fragile_bank(800.0, collapse_s=5.0)
    sim = Simulator(sc, num_envs=3)
    steps = run_sim(sim, [0, 1, 2], fixed())
    assert all(np.all(s.down_left == 0) and np.all(s.stress == 0) for s, _ in steps)
    assert np.all(steps[-1][0].outage_s == 0)


def test_outage_rejects_everything_for_its_duration_then_warms_up_from_warm_start() -> None:
    o_min, o_max, warm_start, warmup = 30.0, 60.0, 0.25, 20_000.0
    sc = one_fragile_bank(
        5000.0, collapse_s=10.0, outage_min_s=o_min, outage_max_s=o_max, warm_start=warm_start, warmup_s=warmup
    )
    n = 12
    sim = Simulator(sc, num_envs=n)
    steps = run_sim(sim, list(range(n)), fixed(route=(0.5, 0.5, 0.0)), steps=150)
    states = [core.reset(sim.params, seeds=np.arange(n))] + [s for s, _ in steps]
    cap = sc.banks[0].quick_capacity
    dt = sc.dt_s
    durations = []
    for i in range(n):
        down_during = np.array([s.down_left[i, 0] > 0 for s in states[:-1]])  # down while taking step t
        starts = np.flatnonzero(down_during[1:] & ~down_during[:-1]) + 1
        assert starts.size > 0
        t0 = starts[0]
        t1 = t0 + int(np.argmin(down_during[t0:]))  # first step up again
        assert t1 > t0
        durations.append((t1 - t0) * dt)
        assert o_min <= (t1 - t0) * dt <= o_max + dt
        for t in range(t0, t1):
            ch = states[t + 1].seen_channel[i, 0]
            queued_before = states[t].seen_channel[i, 0, :, F["queue"]]
            for r in (QUICK, SWITCH):  # the switch rejects a down issuer's cards too
                # what arrives and what was queued is rejected at once
                assert ch[r, F["rejected"]] == ch[r, F["sent"]] + queued_before[r]
                assert ch[r, F["succeeded"]] == ch[r, F["declined"]] == ch[r, F["timed_out"]] == 0
            assert ch[QUICK, F["queue"]] == 0
            assert states[t + 1].outage_s[i, 0] - states[t].outage_s[i, 0] == dt
        # back up at about warm_start of capacity (stress is 0 after an outage)
        warm = states[t1].warm[i, 0]
        assert warm_start <= warm <= warm_start + 2 * dt * (1 - warm_start) / warmup
        served = states[t1 + 1].seen_channel[i, 0, QUICK, [F["succeeded"], F["declined"]]].sum()
        quick_share_of_capacity = served / (warm * cap * dt)
        assert quick_share_of_capacity == pytest.approx(1.0, abs=5 / math.sqrt(warm * cap * dt))
    assert min(durations) < max(durations)  # outage length is random


def test_warm_up_is_linear_to_full_capacity() -> None:
    warm_start, warmup = 0.4, 30.0
    sc = one_fragile_bank(
        5000.0, collapse_s=5.0, outage_min_s=10.0, outage_max_s=10.0, warm_start=warm_start, warmup_s=warmup
    )
    sim = Simulator(sc, num_envs=1)
    sim.reset([0])
    load_on = np.array([[0.0, 0, 0, 0]], dtype=np.float32)  # the status quo
    load_off = np.array([[-1.0, 0, 0, 0]], dtype=np.float32)  # admit nothing
    while sim.state.down_left[0, 0] == 0:
        sim.step(load_on)
    while sim.state.down_left[0, 0] > 0:
        sim.step(load_off)
    warms = [sim.state.warm[0, 0]]
    for _ in range(40):
        sim.step(load_off)
        warms.append(sim.state.warm[0, 0])
    rate = (1 - warm_start) / warmup
    assert warms[0] == pytest.approx(warm_start + rate * sc.dt_s)  # the outage's last step already warms
    diffs = np.diff(warms)
    rising = diffs[np.array(warms[1:]) < 1.0]
    assert np.allclose(rising, rate * sc.dt_s)
    assert warms[-1] == 1.0
    first_full = int(np.argmax(np.array(warms) >= 1.0))
    assert abs(first_full * sc.dt_s - (warmup - sc.dt_s)) <= sc.dt_s


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_every_intent_is_lost_after_exactly_max_attempts_when_all_are_declined(k: int) -> None:
    surge = {
        "start_s": 0.0,
        "peak_rate": 200.0,
        "jump_s": 1.0,
        "jump_fraction": 1.0,
        "peak_at_s": 1.0,
        "peak_until_s": 10.0,
        "half_life_s": 0.5,
    }
    banks = [bank("A", 1.0, quick_share=0.5, quick_success=0.0, netbank_success=0.0)]
    sc = make_scenario(
        banks,
        end_s=300.0,
        max_attempts=k,
        traffic={"base_rate": 0.0, "surges": [surge]},
        users={"abandon": 0.0, "switch": 0.0, "switch_to_balance": 0.0, "retry_delay_s": 2.0},
    )
    sim = Simulator(sc, num_envs=3)
    steps = run_sim(sim, [0, 1, 2], fixed())
    final = steps[-1][0]
    assert np.all(final.arrived > 1000)
    assert np.all(core.in_flight(final) == 0)
    assert np.array_equal(final.lost, final.arrived)
    assert np.array_equal(final.attempts, k * final.arrived)
    assert np.array_equal(final.failed_attempts, final.attempts)


def test_switching_card_does_not_reset_the_attempt_count() -> None:
    surge = {
        "start_s": 0.0,
        "peak_rate": 200.0,
        "jump_s": 1.0,
        "jump_fraction": 1.0,
        "peak_at_s": 1.0,
        "peak_until_s": 10.0,
        "half_life_s": 0.5,
    }
    banks = [
        bank("A", 0.5, quick_share=0.5, quick_success=0.0, netbank_success=0.0),
        bank("B", 0.5, quick_share=0.5, quick_success=0.0, netbank_success=0.0),
    ]
    data = scenario_dict(
        banks,
        end_s=300.0,
        max_attempts=3,
        traffic={"base_rate": 0.0, "surges": [surge]},
        users={"abandon": 0.0, "switch": 1.0, "switch_to_balance": 0.5, "retry_delay_s": 2.0},
    )
    data["balance"]["success"] = 0.0
    sim = Simulator(scenario_from_dict(data), num_envs=2)
    steps = run_sim(sim, [0, 1], fixed(n_banks=2))
    final = steps[-1][0]
    assert np.all(core.in_flight(final) == 0)
    assert np.array_equal(final.attempts, 3 * final.arrived)
    assert np.all(final.entered_pool.sum(1) > final.arrived)  # people did switch
    assert np.all(final.seen_balance.sum() >= 0)


def hazard_scenario(hazard_per_hour: float, n_steps: int = 200, dt: float = 5.0) -> Scenario:
    frag = {"hazard_per_hour": hazard_per_hour, "outage_min_s": 10.0, "outage_max_s": 10.0, "collapse_s": 60.0}
    banks = [bank(n, 1 / 3, fragility=frag) for n in ("A", "B", "C")]
    data = scenario_dict(banks, dt_s=dt, end_s=n_steps * dt, traffic={"base_rate": 0.0, "surges": []})
    return scenario_from_dict(data)


def test_exogenous_hazard_causes_outages_at_zero_load() -> None:
    sc = hazard_scenario(360.0)
    n = 10
    sim = Simulator(sc, num_envs=n)
    states = [core.reset(sim.params, seeds=np.arange(n))] + [
        s for s, _ in run_sim(sim, list(range(n)), fixed(n_banks=3))
    ]
    assert np.all(states[-1].arrived == 0)
    assert np.all(states[-1].outage_s[:, :3] > 0)
    up_steps = triggers = 0
    for prev, cur in zip(states[:-1], states[1:], strict=True):
        was_up = prev.down_left[:, :3] == 0
        up_steps += was_up.sum()
        triggers += (was_up & (cur.down_left[:, :3] > 0)).sum()
    p = -math.expm1(-360.0 * sc.dt_s / 3600.0)
    assert triggers / up_steps == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / up_steps))


def test_no_hazard_no_load_no_outage() -> None:
    sim = Simulator(hazard_scenario(0.0), num_envs=3)
    steps = run_sim(sim, [0, 1, 2], fixed(n_banks=3))
    assert np.all(steps[-1][0].outage_s == 0)


def test_arrivals_follow_the_surge_curve() -> None:
    sc = load_scenario("double11_2013")
    n = 20
    sim = Simulator(sc, num_envs=n)
    steps = run_sim(sim, list(range(n)), fixed(n_banks=6), check=False)
    arrivals = np.array([c.arrived for _, c in steps])  # [T, N]
    expected = sc.intent_rate(sc.step_midpoints()) * sc.dt_s
    z = (arrivals.mean(1) - expected) / np.sqrt(expected / n)
    assert np.all(np.abs(z) < 5), np.abs(z).max()
    assert arrivals.sum() == pytest.approx(n * expected.sum(), rel=5 / math.sqrt(n * expected.sum()))
    # the busiest steps are in minutes 5-10 after midnight
    t_peak = sc.step_midpoints()[np.argmax(arrivals.mean(1))]
    assert 280 <= t_peak <= 620


def test_arrivals_split_over_banks_by_card_share() -> None:
    data = with_users(builtin_dict("double11_2013"), abandon=1.0, switch=0.0)  # nobody moves between pools
    sc = scenario_from_dict(data)
    sim = Simulator(sc, num_envs=4)
    run_sim(sim, [0, 1, 2, 3], fixed(n_banks=6), steps=150, check=False)
    s = sim.state
    assert np.array_equal(s.entered_pool.sum(1), s.arrived)
    frac = s.entered_pool.sum(0) / s.arrived.sum()
    bal = sc.balance.share
    for b, bk in enumerate(sc.banks):
        assert frac[2 * b] == pytest.approx((1 - bal) * bk.share * bk.quick_share, abs=1e-3)
        assert frac[2 * b + 1] == pytest.approx((1 - bal) * bk.share * (1 - bk.quick_share), abs=1e-3)
    assert frac[-1] == pytest.approx(bal, abs=1e-3)


def test_throttled_users_retry_later() -> None:
    """A throttle reply is a failed attempt: users come back (backlog) unless they abandon."""
    sc = make_scenario(
        end_s=30.0,
        max_attempts=10,
        users={"abandon": 0.0, "switch": 0.0, "switch_to_balance": 0.0, "retry_delay_s": 1e3},
    )
    sim = Simulator(sc, num_envs=1)
    steps = run_sim(sim, [0], fixed(admit=0.0))
    final = steps[-1][0]
    assert final.lost[0] == 0  # nobody gives up, retries are slow
    assert final.backlog.sum() == final.arrived[0]
    assert final.seen_bank[0, 0, 2] == final.backlog[0, :2].sum()  # the platform sees the retry backlog


@pytest.mark.parametrize(
    "kwargs",
    [{"num_envs": 0}, {"num_envs": 1.5}, {"num_envs": True}, {"beta": -1.0}, {"lost_weight": math.nan}],
)
def test_simulator_rejects_bad_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Simulator("steady", **kwargs)


def test_simulator_reset_needs_one_seed_per_env_and_valid_seeds() -> None:
    sim = Simulator("steady", num_envs=2)
    with pytest.raises(ValueError, match="seed"):
        sim.reset([1])
    with pytest.raises(ValueError, match="seed"):
        sim.reset([1, -2])
    with pytest.raises(RuntimeError):
        Simulator("steady").step(np.zeros((1, 24), dtype=np.float32))


def test_tiny_positive_capacity_keeps_the_state_finite() -> None:
    """Regression: load over a capacity of 1e-306 made rho infinite and stress NaN (0 * inf)."""
    sc = make_scenario(
        [bank("A", 1.0, quick_capacity=1e-306, netbank_capacity=0.0)],
        traffic={"base_rate": 1e4, "surges": []},
        end_s=10.0,
    )
    sim = Simulator(sc, num_envs=1, observe_internal=True)
    sim.reset([0])
    for _ in range(sim.params.n_steps):
        obs, reward, _, _ = sim.step(np.zeros((1, 4), dtype=np.float32))
        s = sim.state
        assert np.all(np.isfinite(s.stress)), s.stress
        assert np.all(np.isfinite(obs)) and np.all(np.isfinite(reward))
        assert s.arrived[0] == s.succeeded[0] + s.lost[0] + core.in_flight(s)[0]


def test_replicate_with_the_own_key_replays_the_future_and_other_keys_do_not() -> None:
    sim = Simulator("randomized", num_envs=2)  # randomised: per-episode parameters must be copied too
    sim.reset(seeds=[5, 6])
    rng = np.random.default_rng(0)
    for _ in range(40):
        sim.step(rng.uniform(0.5, 1.0, (2, 24)))
    own = sim.state.key[1]
    copies = Simulator("randomized", num_envs=3)
    copies.state = core.replicate(sim.state, 1, np.array([own, own, own ^ np.uint64(12345)], dtype=np.uint64))
    for f in FIELDS:  # the copies start as environment 1
        assert np.array_equal(copies.state[f][0], sim.state[f][1]), f
    for _ in range(200):
        action = rng.uniform(0.5, 1.0, 24)
        sim.step(np.stack([action, action]))
        copies.step(np.stack([action, action, action]))
    for f in FIELDS:
        original = sim.state[f][1]
        assert np.array_equal(copies.state[f][0], original), f
        assert np.array_equal(copies.state[f][1], original), f
    assert copies.state.arrived[2] != sim.state.arrived[1]  # another stream: another future
    with pytest.raises(ValueError, match="out of range"):
        core.replicate(sim.state, 2, np.array([own]))
