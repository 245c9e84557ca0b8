"""Each heuristic's defining behaviour on hand-made observations (and the shared Policy mechanics)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.deciders import load_policy
from agents.deciders.heuristics import (
    AIMD,
    HEURISTICS,
    AdmitAll,
    CircuitBreaker,
    Observed,
    Published,
    RandomPolicy,
    SREThrottle,
    StaticCapacity,
    SuccessRateRouter,
    sre_reject_probability,
)
from payroute_env import actions as env_actions
from payroute_env.observations import observation_space
from payroute_env.simulator import Simulator

SC = "double11_2013"
PUB = Published.from_scenario(SC)
B = PUB.n_banks
FIELDS = ("sent", "succeeded", "declined", "timed_out", "rejected", "queue", "wait")


def make_obs(n: int = 1, **values: object) -> np.ndarray:
    """Observations from values in attempts per step (``offered``, ``throttled``, ``backlog`` per bank;
    ``sent`` ... ``queue`` per bank and route; ``wait`` as a fraction of the timeout; ``admit``; ``route``)."""
    obs = np.zeros((n, observation_space(B, False).shape[0]), dtype=np.float64)
    bank = obs[:, : 28 * B].reshape(n, B, 28)
    scale = B / PUB.norm
    for i, name in enumerate(("offered", "throttled", "backlog")):
        if name in values:
            bank[:, :, i] = np.broadcast_to(values[name], (n, B)) * scale
    ch = bank[:, :, 3:24].reshape(n, B, 3, 7)
    for f, name in enumerate(FIELDS):
        if name in values:
            v = np.broadcast_to(values[name], (n, B, 3))
            ch[..., f] = v if name == "wait" else v * scale
    bank[:, :, 3:24] = ch.reshape(n, B, 21)
    bank[:, :, 24] = np.broadcast_to(values.get("admit", 1.0), (n, B))
    bank[:, :, 25:28] = np.broadcast_to(values.get("route", (1.0, 0.0, 0.0)), (n, B, 3))
    obs[:, : 28 * B] = bank.reshape(n, -1)
    return obs.astype(np.float32)


def split(action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The admit rates ``[N, B]`` and route shares ``[N, B, 3]`` an action means, as the kernel decodes it."""
    n = action.shape[0]
    return env_actions.decode("continuous", action, B, np.ones((n, B)), np.zeros((n, B, 3)))


def per_route(quick: float = 0.0, switch: float = 0.0, netbank: float = 0.0) -> np.ndarray:
    return np.broadcast_to(np.array([quick, switch, netbank]), (B, 3)).copy()


def test_observed_parse_round_trip() -> None:
    obs = make_obs(2, offered=1000.0, sent=per_route(600, 100, 300), timed_out=per_route(5, 0, 0), wait=0.25)
    o = Observed.parse(obs, PUB)
    assert o.offered == pytest.approx(np.full((2, B), 1000.0), rel=1e-5)
    assert o.sent[:, :, 1] == pytest.approx(np.full((2, B), 100.0), rel=1e-5)
    assert o.errors[:, :, 0] == pytest.approx(np.full((2, B), 5.0), rel=1e-5)
    assert o.wait == pytest.approx(np.full((2, B, 3), 0.25))


def test_admit_all_is_the_status_quo() -> None:
    pol = AdmitAll(SC)
    action, _ = pol.predict(make_obs(3, offered=1e6, timed_out=per_route(1e5, 1e5, 1e5)))
    assert action.shape == (3, 4 * B) and action.dtype == np.float32
    assert np.array_equal(action, np.zeros((3, 4 * B), dtype=np.float32))  # the zero action: the status quo
    admit, route = split(action)
    assert (admit == 1).all() and (route == [1, 0, 0]).all()
    single, _ = pol.predict(make_obs(1)[0])
    assert single.shape == (4 * B,)


def test_static_capacity_admits_declared_capacity_and_sends_overflow_to_switch() -> None:
    pol = StaticCapacity(SC)
    dt = PUB.dt
    # below every declared figure: admit all, all quick
    admit, route = split(pol.predict(make_obs(offered=PUB.bank * dt * 0.5, sent=per_route(1, 0, 0)))[0])
    assert admit == pytest.approx(np.ones((1, B)))
    assert route[:, :, 0] == pytest.approx(np.ones((1, B)))
    # only bank 0 (ICBC) is offered twice its declared capacity, all quick-enabled (netbank sent 0)
    offered = np.zeros(B)
    offered[0] = 2 * PUB.bank[0] * dt
    sent = np.zeros((B, 3))
    sent[0, 0] = 1.0
    admit, route = split(pol.predict(make_obs(offered=offered, sent=sent))[0])
    overflow = offered[0] - PUB.quick[0] * dt
    switch_b = min(overflow, PUB.switch * dt)
    cap = (PUB.quick[0] + PUB.netbank[0]) * dt + switch_b
    assert admit[0, 0] == pytest.approx(min(1.0, cap / offered[0]), rel=1e-5)
    adm = admit[0, 0] * offered[0]
    assert route[0, 0, 0] * adm == pytest.approx(PUB.quick[0] * dt, rel=1e-4)  # quick up to its declared figure
    assert route[0, 0, 1] * adm == pytest.approx(switch_b, rel=1e-4)  # then the switch
    assert route[0, 0, 2] * adm == pytest.approx(adm - PUB.quick[0] * dt - switch_b, rel=1e-4)  # then netbank


def test_static_capacity_shares_switch_in_proportion_to_overflow() -> None:
    pol = StaticCapacity(SC)
    dt = PUB.dt
    offered = PUB.quick * dt  # no overflow ...
    offered[1] += 3000 * dt  # ... except CCB by 3000/s and CMB by 1000/s: the 2500/s switch splits 3:1
    offered[2] += 1000 * dt
    admit, route = split(pol.predict(make_obs(offered=offered, sent=per_route(1, 0, 0)))[0])
    to_switch = route[0, :, 1] * admit[0] * offered
    assert to_switch[1] == pytest.approx(0.75 * PUB.switch * dt, rel=1e-4)
    assert to_switch[2] == pytest.approx(0.25 * PUB.switch * dt, rel=1e-4)
    assert to_switch[[0, 3, 4, 5]] == pytest.approx(np.zeros(4), abs=0.01)  # float32 observation round-off


def test_sre_formula() -> None:
    assert sre_reject_probability(np.array(100.0), np.array(50.0)) == 0.0
    assert sre_reject_probability(np.array(100.0), np.array(20.0)) == pytest.approx(60 / 101)
    assert sre_reject_probability(np.array(100.0), np.array(0.0)) == pytest.approx(100 / 101)
    assert sre_reject_probability(np.array(100.0), np.array(30.0), k=3) == pytest.approx(10 / 101)
    assert sre_reject_probability(np.array(100.0), np.array(34.0), k=3) == 0.0


def test_sre_throttle_uses_a_two_minute_window_with_k_2() -> None:
    pol = SREThrottle(SC)
    window = int(120 / PUB.dt)
    assert pol.window == window
    ok = make_obs(offered=1000.0, succeeded=per_route(600, 0, 0))  # accepts 60% of requests: never throttled
    bad = make_obs(offered=1000.0, succeeded=per_route(100, 0, 0))  # accepts 10%
    admit, _ = split(pol.predict(ok)[0])
    assert admit == pytest.approx(np.ones((1, B)))
    for _ in range(window):
        action, _ = pol.predict(bad)
    admit, route = split(action)
    req, acc = 1000.0 * window, 100.0 * window
    assert admit[0] == pytest.approx(np.full(B, 1 - (req - 2 * acc) / (req + 1)), rel=1e-4)
    assert route[0, :, 0] == pytest.approx(np.ones(B))
    # the bad minutes leave the window after two minutes of healthy traffic
    for _ in range(window):
        action, _ = pol.predict(ok)
    assert split(action)[0] == pytest.approx(np.ones((1, B)))


def test_aimd_backs_off_on_drops_and_increases_additively() -> None:
    pol = AIMD(SC)
    dt = PUB.dt
    full = PUB.bank * dt  # offered = declared capacity: the limit is in use
    healthy = make_obs(offered=full, sent=per_route(1, 0, 0) * full[:, None])
    pol.predict(healthy)
    L0 = pol.mem["limit"].copy()
    assert L0[0] == pytest.approx(PUB.bank * (1 + pol.increase))
    # a timeout at bank 0 only: bank 0 backs off by 0.9, the others keep increasing
    timed_out = np.zeros((B, 3))
    timed_out[0, 0] = 50.0
    drop = make_obs(offered=full * 2, sent=per_route(1, 0, 0) * full[:, None], timed_out=timed_out)
    action, _ = pol.predict(drop)
    L1 = pol.mem["limit"]
    assert L1[0, 0] == pytest.approx(0.9 * L0[0, 0])
    assert L1[0, 1:] == pytest.approx(L0[0, 1:] + pol.increase * PUB.bank[1:])
    admit, _ = split(action)
    assert admit[0] == pytest.approx(np.minimum(1, L1[0] * dt / (full * 2)), rel=1e-5)
    # a full queue (wait at the timeout) is also a drop; an idle bank (limit not in use) does not grow
    slow = np.zeros((B, 3))
    slow[1, 0] = 1.0
    pol.predict(make_obs(offered=full, sent=per_route(1, 0, 0) * full[:, None], wait=slow))
    assert pol.mem["limit"][0, 1] == pytest.approx(0.9 * L1[0, 1])
    before = pol.mem["limit"].copy()
    pol.predict(make_obs(offered=1.0, sent=per_route(1, 0, 0)))
    assert pol.mem["limit"] == pytest.approx(before)


def test_circuit_breaker_opens_at_half_errors_then_probes() -> None:
    pol = CircuitBreaker(SC)
    calls = per_route(100, 0, 0)
    closed = make_obs(succeeded=calls * 0.51, timed_out=calls * 0.49)
    tripping = np.zeros((B, 3))
    tripping[3, 0] = 100.0  # BOC: 100 calls, 50% errors
    action, _ = pol.predict(make_obs(succeeded=per_route(50, 0, 0), timed_out=tripping * 0.5))
    admit, route = split(action)
    assert admit[0, 3] == pytest.approx(pol.open_admit)
    assert route[0, 3] == pytest.approx([0, 1, 0])  # quick-enabled cards fall back to the switch
    assert admit[0, [0, 1, 2, 4, 5]] == pytest.approx(np.ones(5))
    # after the 5 s sleep window: half-open, a small probe on the bank's own channels
    action, _ = pol.predict(closed)
    admit, route = split(action)
    assert admit[0, 3] == pytest.approx(pol.probe_admit) and route[0, 3] == pytest.approx([1, 0, 0])
    # the probe succeeds: closed again
    action, _ = pol.predict(make_obs(succeeded=per_route(10, 0, 0)))
    admit, route = split(action)
    assert admit[0, 3] == 1.0 and route[0, 3] == pytest.approx([1, 0, 0])


def test_circuit_breaker_needs_twenty_calls_and_a_failed_probe_reopens() -> None:
    pol = CircuitBreaker(SC)
    few = make_obs(timed_out=per_route(5, 0, 0))  # 100% errors but 2 x 5 = 10 calls in the window
    action, _ = pol.predict(few)
    action, _ = pol.predict(few)
    assert split(action)[0] == pytest.approx(np.ones((1, B)))
    down = make_obs(rejected=per_route(100, 0, 0))
    pol.predict(down)  # open
    action, _ = pol.predict(down)  # half-open probe
    assert split(action)[0][0] == pytest.approx(np.full(B, pol.probe_admit))
    action, _ = pol.predict(down)  # the probe was rejected: open again
    assert split(action)[0][0] == pytest.approx(np.full(B, pol.open_admit))


def test_circuit_breaker_counts_slow_calls_as_errors() -> None:
    pol = CircuitBreaker(SC)  # Hystrix's 1 s execution timeout: a 3 s queue wait fails every call
    action, _ = pol.predict(make_obs(succeeded=per_route(100, 0, 0), wait=per_route(0.1, 0, 0)))
    assert split(action)[0] == pytest.approx(np.full((1, B), pol.open_admit))


def test_success_rate_router_sends_95_percent_to_the_best_route() -> None:
    pol = SuccessRateRouter(SC)
    succ = per_route(50, 90, 60)
    done = per_route(100, 100, 100)
    action, _ = pol.predict(make_obs(offered=300.0, succeeded=succ, declined=done - succ))
    admit, route = split(action)
    assert route[0] == pytest.approx(np.tile([0.025, 0.95, 0.025], (B, 1)), rel=1e-5)
    assert admit == pytest.approx(np.ones((1, B)))  # SRE: accepts 200 of 300 requests, no throttling
    # SRE throttling: 1000 more requests with 20 accepts -> reject (1300 - 2 x 220) / 1301
    action, _ = pol.predict(make_obs(offered=1000.0, succeeded=per_route(20, 0, 0), declined=per_route(80, 0, 0)))
    assert split(action)[0] == pytest.approx(np.full((1, B), 1 - (1300 - 440) / 1301), rel=1e-4)


def test_success_rate_router_window_is_the_last_200_transactions_with_prior() -> None:
    pol = SuccessRateRouter(SC)
    # an old step where quick was perfect, then a recent step with 200 quick transactions at 40%
    old = make_obs(succeeded=per_route(1000, 0, 0))
    pol.predict(old)
    new = make_obs(succeeded=per_route(80, 0, 0), declined=per_route(120, 0, 0))
    pol.predict(new)
    rates = pol.success_rates(Observed.parse(make_obs(), PUB))  # an empty step adds nothing
    assert rates[0, :, 0] == pytest.approx(np.full(B, 0.4))
    assert rates[0, :, 1:] == pytest.approx(np.full((B, 2), 0.5))  # no data yet: the prior


def test_random_policy_is_seeded_and_in_range() -> None:
    a1, _ = RandomPolicy(SC, seed=3).predict(make_obs(4))
    a2, _ = RandomPolicy(SC, seed=3).predict(make_obs(4))
    a3, _ = RandomPolicy(SC, seed=4).predict(make_obs(4))
    assert a1.shape == (4, 4 * B) and (a1 >= -1).all() and (a1 <= 1).all()
    assert np.array_equal(a1, a2) and not np.array_equal(a1, a3)
    # one stream per environment: the first two act the same in a batch of 2 as in a batch of 4, step after step
    big, small = RandomPolicy(SC, seed=3), RandomPolicy(SC, seed=3)
    for _ in range(3):
        np.testing.assert_array_equal(big.predict(make_obs(4))[0][:2], small.predict(make_obs(2))[0])


def test_episode_start_resets_only_flagged_environments() -> None:
    pol = AIMD(SC)
    full = PUB.bank * PUB.dt
    drop = make_obs(2, offered=full, sent=per_route(1, 0, 0) * full[:, None], timed_out=per_route(100, 0, 0))
    pol.predict(drop, episode_start=np.array([True, True]))
    pol.predict(drop)
    low = pol.mem["limit"].copy()
    pol.predict(make_obs(2), episode_start=np.array([False, True]))
    assert pol.mem["limit"][0] == pytest.approx(low[0])
    assert pol.mem["limit"][1] == pytest.approx(PUB.bank)


@pytest.mark.parametrize("name", sorted(HEURISTICS))
def test_heuristics_are_batched_and_match_single_env_runs(name: str) -> None:
    """Environments in a batch get the actions they would get alone (no cross-talk) over a real episode."""
    seeds = [11, 12, 13]
    sim = Simulator(SC, 3)
    obs = sim.reset(seeds=seeds)
    pol = load_policy(name, SC, seed=5)
    solo = [load_policy(name, SC, seed=5) for _ in seeds]
    sims = [Simulator(SC, 1) for _ in seeds]
    solo_obs = [s.reset(seeds=[seed]) for s, seed in zip(sims, seeds, strict=True)]
    for _ in range(60):
        act, _ = pol.predict(obs)
        assert act.shape == (3, 4 * B) and np.isfinite(act).all() and (act >= -1).all() and (act <= 1).all()
        if name != "random":  # random draws a stream per batch position (test_random_policy_is_seeded...)
            for i in range(3):
                a_i, _ = solo[i].predict(solo_obs[i])
                np.testing.assert_allclose(a_i[0], act[i], rtol=1e-5, atol=1e-6)
                solo_obs[i] = sims[i].step(a_i)[0]
        else:
            for i in range(3):
                solo_obs[i] = sims[i].step(act[i : i + 1])[0]
        obs = sim.step(act)[0]
