"""The Gymnasium environment: info and KPIs, determinism, checkers, actions, rendering, registration."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    N_BUILTIN_BANKS,
    assert_same_info,
    assert_same_trajectory,
    builtin_text,
    run_episode,
    status_quo_policy,
)
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from test_core import valid_scenarios

import payroute_env
from payroute_env import BUILTIN_SCENARIOS, ENV_IDS, PaymentRoutingEnv
from payroute_env.actions import ACTION_MODES, ROUTE_PRESETS, encode, status_quo
from payroute_env.core import PARALLEL_FROM
from payroute_env.simulator import Simulator
from payroute_env.vector_env import PaymentRoutingVectorEnv

B = N_BUILTIN_BANKS
COUNTERS = ("arrived", "succeeded", "lost", "in_flight", "attempts", "failed_attempts")


def random_policy(seed: int):
    def policy(env, t: int):
        if t == 0:
            env.action_space.seed(seed)
        return env.action_space.sample()

    return policy


# ------------------------------------------------------------------------------------------ info and accounting


@pytest.mark.parametrize("mode", ACTION_MODES)
@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_info_accounting_every_step_random_actions(name: str, mode: str) -> None:
    env = PaymentRoutingEnv(name, action_mode=mode)
    traj = run_episode(env, seed=11, policy=random_policy(11))
    sc = env.scenario
    assert len(traj) == sc.n_steps + 1
    prev = traj[0][4]
    assert all(prev[k] == 0 for k in COUNTERS)
    for t, (obs, reward, term, trunc, info) in enumerate(traj[1:], start=1):
        for k in COUNTERS:
            assert type(info[k]) is int, k
            assert info[k] >= 0
        assert info["arrived"] == info["succeeded"] + info["lost"] + info["in_flight"]
        for k in ("arrived", "succeeded", "lost", "attempts", "failed_attempts"):
            assert info[k] >= prev[k], k  # episode-cumulative
        assert info["failed_attempts"] <= info["attempts"] <= sc.max_attempts * info["arrived"]
        assert obs.dtype == np.float32 and np.all(np.isfinite(obs))
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and math.isfinite(reward) and reward <= 0
        assert term is False
        assert trunc is (t == sc.n_steps)
        assert ("episode_kpis" in info) is (t == sc.n_steps)
        prev = info
    assert prev["arrived"] > 0


def test_reward_is_lost_and_failed_attempts_over_norm() -> None:
    beta, lost_weight = 0.37, 2.5
    env = PaymentRoutingEnv("double11_2013", beta=beta, lost_weight=lost_weight)
    traj = run_episode(env, seed=3, policy=random_policy(3))
    norm = env.scenario.peak_intents_per_step
    assert norm == pytest.approx(env.scenario.intent_rate(env.scenario.step_midpoints()).max() * 5.0)
    for (_, _, _, _, before), (_, reward, _, _, after) in zip(traj[:-1], traj[1:], strict=True):
        lost = after["lost"] - before["lost"]
        failed = after["failed_attempts"] - before["failed_attempts"]
        assert reward == pytest.approx(-(lost_weight * lost + beta * failed) / norm, rel=1e-9, abs=1e-12)
    rewards = np.array([r for _, r, *_ in traj[1:]])
    assert rewards.min() < -0.01  # the 2013 surge does cost something
    assert rewards.min() > -20  # and rewards are O(1)


@pytest.mark.parametrize("name", ["double11_2013", "steady", "outage_drill"])
def test_episode_kpis(name: str) -> None:
    env = PaymentRoutingEnv(name)
    traj = run_episode(env, seed=0, policy=status_quo_policy())
    info = traj[-1][4]
    kpis = info["episode_kpis"]
    names = env.scenario.bank_names
    assert isinstance(kpis["failed_payment_rate"], float)
    assert kpis["failed_payment_rate"] == pytest.approx(info["lost"] / info["arrived"])
    assert 0 <= kpis["failed_payment_rate"] <= 1
    for key in ("failed_payment_rate_by_bank", "outage_seconds"):
        assert isinstance(kpis[key], dict)
        assert tuple(kpis[key]) == names
        assert all(isinstance(v, float) and v >= 0 for v in kpis[key].values())
    assert all(v <= 1 for v in kpis["failed_payment_rate_by_bank"].values())
    assert all(v <= env.scenario.n_steps * env.scenario.dt_s for v in kpis["outage_seconds"].values())
    p95 = kpis["p95_time_to_success_s"]
    assert isinstance(p95, float) and math.isfinite(p95) and p95 > 0
    assert kpis["median_time_to_success_s"] <= p95
    shares = kpis["paid_share_by_channel"]
    assert set(shares) == {"quick", "switch", "netbank", "balance"}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(0 <= v <= 1 for v in shares.values())
    assert shares["quick"] > 0 and shares["switch"] == 0  # status quo never uses the switch
    assert kpis["pending_at_end"] == info["in_flight"]


def test_stepping_after_truncation_raises_and_reset_recovers() -> None:
    env = PaymentRoutingEnv("steady")
    run_episode(env, seed=0, policy=status_quo_policy())
    with pytest.raises(RuntimeError):
        env.step(status_quo("continuous", B))
    obs, info = env.reset(seed=0)
    assert info["arrived"] == 0
    env.step(status_quo("continuous", B))


def test_step_before_reset_raises() -> None:
    env = PaymentRoutingEnv("steady")
    with pytest.raises(RuntimeError):
        env.step(status_quo("continuous", B))


def test_reset_rejects_options() -> None:
    env = PaymentRoutingEnv("steady")
    with pytest.raises(ValueError, match="options"):
        env.reset(seed=0, options={"foo": 1})


def test_gym_make_episode_truncates_after_n_steps() -> None:
    env = gym.make("payroute/Steady-v0")
    env.reset(seed=0)
    n = payroute_env.load_scenario("steady").n_steps
    for t in range(1, n + 1):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        assert term is False
        assert trunc is (t == n)
    assert "episode_kpis" in info
    env.close()


# ------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize(("name", "mode"), [("double11_2013", "continuous"), ("randomized", "discrete")])
def test_same_seed_is_bit_identical(name: str, mode: str) -> None:
    a = run_episode(PaymentRoutingEnv(name, action_mode=mode), seed=42, policy=random_policy(5))
    b = run_episode(PaymentRoutingEnv(name, action_mode=mode), seed=42, policy=random_policy(5))
    assert_same_trajectory(a, b)


@pytest.mark.parametrize("name", ["double11_2013", "randomized", "outage_drill"])
def test_different_seeds_differ(name: str) -> None:
    a = run_episode(PaymentRoutingEnv(name), seed=1, policy=status_quo_policy())
    b = run_episode(PaymentRoutingEnv(name), seed=2, policy=status_quo_policy())
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a[1:], b[1:], strict=True))
    assert a[-1][4]["arrived"] != b[-1][4]["arrived"]


def test_reset_without_seed_continues_deterministically() -> None:
    def history() -> tuple[list, list, list]:
        env = PaymentRoutingEnv("steady")
        first = run_episode(env, seed=7, policy=random_policy(1))
        second = run_episode(env, seed=None, policy=random_policy(2))
        third = run_episode(env, seed=None, policy=random_policy(2))
        return first, second, third

    f1, s1, t1 = history()
    f2, s2, t2 = history()
    assert_same_trajectory(f1, f2)
    assert_same_trajectory(s1, s2)
    assert_same_trajectory(t1, t2)
    # the continued episodes are new episodes, not replays
    assert s1[-1][4]["arrived"] != f1[-1][4]["arrived"]
    assert t1[-1][4]["arrived"] != s1[-1][4]["arrived"]
    # and reseeding replays the first
    env = PaymentRoutingEnv("steady")
    run_episode(env, seed=3, policy=random_policy(1))
    assert_same_trajectory(run_episode(env, seed=7, policy=random_policy(1)), f1)


def test_reset_seed_through_gym_make_is_deterministic() -> None:
    trajs = []
    for _ in range(2):
        env = gym.make("payroute/Randomized-v0")
        trajs.append(run_episode(env, seed=9, policy=random_policy(9)))
        env.close()
    assert_same_trajectory(*trajs)


@pytest.mark.parametrize(("name", "mode"), [("double11_2013", "continuous"), ("randomized", "discrete")])
def test_batch_equals_single_envs(name: str, mode: str) -> None:
    s = 100
    seeds = [s, s + 1, s + 2]
    sim = Simulator(name, num_envs=3, action_mode=mode)
    envs = [PaymentRoutingEnv(name, action_mode=mode) for _ in seeds]
    batch_obs = sim.reset(seeds)
    for i, (env, seed) in enumerate(zip(envs, seeds, strict=True)):
        obs, info = env.reset(seed=seed)
        assert obs.tobytes() == batch_obs[i].tobytes()
        assert info == sim.counters(i)
    rng = np.random.default_rng(0)
    space = envs[0].action_space
    for _ in range(sim.params.n_steps):
        if mode == "continuous":
            acts = rng.uniform(-0.2, 1.2, (3, space.shape[0])).astype(np.float32)
        else:
            acts = rng.integers(0, space.n, 3)
        b_obs, b_rew, b_trunc, _ = sim.step(acts)
        for i, env in enumerate(envs):
            obs, reward, term, trunc, info = env.step(acts[i])
            assert obs.tobytes() == b_obs[i].tobytes()
            assert reward == float(b_rew[i])
            assert trunc == bool(b_trunc[i]) and term is False
            expected = sim.counters(i)
            if trunc:
                expected["episode_kpis"] = sim.kpis(i)
            assert_same_info(info, expected)
    assert all(b_trunc)


def test_a_refused_action_batch_moves_no_environment() -> None:
    """``check_actions`` only checks; a malformed batch given to ``step`` is refused before anything moves."""
    sim = Simulator("double11_2013", num_envs=2, action_mode="discrete")
    twin = Simulator("double11_2013", num_envs=2, action_mode="discrete")
    for s in (sim, twin):
        s.reset([5, 6])
    rng = np.random.default_rng(3)
    for _ in range(30):  # discrete actions are relative to the current control, so the state matters
        acts = rng.integers(0, sim.single_action_space.n, 2)
        before = sim.state.copy()
        sim.check_actions(acts)
        with pytest.raises(ValueError, match=r"must be in \[0, 24\]"):
            sim.step(np.array([0, 999]))
        assert all(np.array_equal(before[f], sim.state[f]) for f in before.dtype.names)
        a, b = sim.step(acts), twin.step(acts)
        assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert sim.state.admit.tobytes() == twin.state.admit.tobytes()


@pytest.mark.parametrize("num_envs", [3, PARALLEL_FROM])  # the serial and the parallel kernel
def test_a_batch_with_a_finished_episode_moves_no_environment(num_envs: int) -> None:
    """The kernel refuses a batch in which one episode is over before it steps any environment."""
    sim = Simulator("steady", num_envs=num_envs)
    sim.reset(list(range(num_envs)))
    sq = np.tile(status_quo("continuous", sim.n_banks), (num_envs, 1))
    for _ in range(5):
        sim.step(sq)
    sim.state.t[1] = sim.params.n_steps  # environment 1 has taken its last step
    before = sim.state.copy()
    with pytest.raises(RuntimeError, match="1 episode.* over .*reset"):
        sim.step(sq)
    assert all(before[f].tobytes() == sim.state[f].tobytes() for f in before.dtype.names)
    sim.reset([9], mask=np.arange(num_envs) == 1)
    sim.step(sq)  # once it is reset, the batch steps again
    assert (sim.state.t == np.where(np.arange(num_envs) == 1, 1, 6)).all()


def test_batch_partial_reset_equals_a_fresh_single_env() -> None:
    sim = Simulator("double11_2013", num_envs=3)
    sq = np.tile(status_quo("continuous", B), (3, 1))
    sim.reset([1, 2, 3])
    for _ in range(40):
        sim.step(sq)
    b_obs = sim.reset([77], mask=np.array([False, False, True]))
    env = PaymentRoutingEnv("double11_2013")
    obs, _ = env.reset(seed=77)
    assert obs.tobytes() == b_obs[2].tobytes()
    for _ in range(100):
        b_obs, b_rew, _, _ = sim.step(sq)
        obs, reward, *_ = env.step(sq[0])
        assert obs.tobytes() == b_obs[2].tobytes() and reward == float(b_rew[2])


# ------------------------------------------------------------------------------------------ checkers


CHECK_CASES = [(env_id, mode, internal) for env_id in ENV_IDS for mode in ACTION_MODES for internal in (False, True)]


@pytest.mark.parametrize(("env_id", "mode", "internal"), CHECK_CASES)
def test_gymnasium_and_sb3_checkers_pass(env_id: str, mode: str, internal: bool) -> None:
    kwargs = {"action_mode": mode, "observe_internal": internal}
    if ENV_IDS[env_id] is None:
        kwargs["scenario"] = "flash_sales"
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env.unwrapped)
        sb3_check_env(env)
    env.close()


def test_sb3_check_env_has_no_action_space_warning() -> None:
    """SB3 asks for a symmetric, normalised Box; the continuous action space is one (it warned on Box(0, 1))."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(gym.make("payroute/Double11-2013-v0"), warn=True)
    action_warnings = [w for w in caught if "action space" in str(w.message).lower()]
    assert action_warnings == [], [str(w.message) for w in action_warnings]
    with warnings.catch_warnings(record=True) as caught:  # the check itself can fail: the retired box warned
        warnings.simplefilter("always")
        env = gym.make("payroute/Double11-2013-v0")
        env.unwrapped.action_space = gym.spaces.Box(0.0, 1.0, (24,), dtype=np.float32)
        sb3_check_env(env.unwrapped, warn=True)
    assert any("symmetric and normalized" in str(w.message) for w in caught)


def test_checkers_pass_for_a_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(builtin_text("outage_drill"), encoding="utf-8")
    env = gym.make("payroute/PaymentRouting-v0", scenario=str(path))
    assert env.unwrapped.scenario == payroute_env.load_scenario("outage_drill")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env.unwrapped)
        sb3_check_env(env)


def test_every_id_is_registered_with_its_scenario() -> None:
    assert set(ENV_IDS) == {
        "payroute/Double11-2013-v0",
        "payroute/Double11-2016-v0",
        "payroute/Steady-v0",
        "payroute/FlashSales-v0",
        "payroute/OutageDrill-v0",
        "payroute/Randomized-v0",
        "payroute/PaymentRouting-v0",
    }
    for env_id, scenario in ENV_IDS.items():
        assert env_id in gym.registry
        env = gym.make(env_id)
        assert env.unwrapped.scenario.name == (scenario or "double11_2013")
        env.close()
    env = gym.make("payroute/PaymentRouting-v0", scenario="steady")
    assert env.unwrapped.scenario.name == "steady"


@pytest.mark.parametrize("internal", [False, True])
def test_observation_layout(internal: bool) -> None:
    env = PaymentRoutingEnv("double11_2013", observe_internal=internal)
    n = 28 * B + 4 + (6 * B + 5 if internal else 0)
    assert env.observation_space.shape == (n,)
    assert env.observation_space.dtype == np.float32
    names = payroute_env.observations.feature_names(B, env.scenario.bank_names, internal)
    assert len(names) == n and len(set(names)) == n
    obs, _ = env.reset(seed=0)
    a = np.tile(encode(np.array([[0.3]]), np.array([[[0.2, 0.6, 0.2]]]))[0], B)  # admit 0.3, 60% to the switch
    for _ in range(10):
        obs, *_ = env.step(a)
    idx = {name: i for i, name in enumerate(names)}
    assert obs[idx["CCB.admit_rate"]] == pytest.approx(0.3)
    assert obs[idx["CCB.w_switch"]] == pytest.approx(0.6)
    assert obs[idx["progress"]] == pytest.approx(10 / env.scenario.n_steps)
    assert obs[idx["ICBC.offered"]] > 0 and obs[idx["ICBC.throttled"]] > 0
    if internal:
        state = env.state
        assert obs[idx["CCB.stress"]] == pytest.approx(state.stress[0, 1], rel=1e-6)
        assert obs[idx["CCB.quick_capacity_ratio"]] == pytest.approx(1100 / 1800, rel=1e-6)
        assert obs[idx["ICBC.quick_capacity_ratio"]] == pytest.approx(3600 / 3000, rel=1e-6)
    else:
        assert not any("stress" in name or "capacity_ratio" in name for name in names)


# ------------------------------------------------------------------------------------------ actions


def test_action_spaces() -> None:
    cont = PaymentRoutingEnv("steady").action_space
    assert isinstance(cont, gym.spaces.Box) and cont.shape == (4 * B,) and cont.dtype == np.float32
    assert np.all(cont.low == -1) and np.all(cont.high == 1)  # SB3's convention: symmetric, normalised
    assert np.array_equal(status_quo("continuous", B), np.zeros(4 * B))  # the zero action is the status quo
    md = PaymentRoutingEnv("steady", action_mode="multidiscrete").action_space
    assert isinstance(md, gym.spaces.MultiDiscrete) and md.nvec.tolist() == [11, 5] * B
    disc = PaymentRoutingEnv("steady", action_mode="discrete").action_space
    assert isinstance(disc, gym.spaces.Discrete) and disc.n == 1 + 4 * B
    for mode in ACTION_MODES:
        assert PaymentRoutingEnv("steady", action_mode=mode).action_space.contains(status_quo(mode, B))
    with pytest.raises(ValueError, match="action_mode"):
        PaymentRoutingEnv("steady", action_mode="banana")


def test_status_quo_is_the_same_control_in_every_mode() -> None:
    trajs = [
        run_episode(PaymentRoutingEnv("double11_2013", action_mode=m), seed=4, policy=status_quo_policy(m))
        for m in ACTION_MODES
    ]
    assert_same_trajectory(trajs[0], trajs[1])
    assert_same_trajectory(trajs[0], trajs[2])


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (np.ones(4 * B - 1, dtype=np.float32), r"\(24,\)"),
        (np.ones((2, 4 * B), dtype=np.float32), r"\(24,\)"),
        (np.ones(4 * B + 1), r"\(24,\)"),
        (np.float32(1.0), r"\(24,\)"),
    ],
)
def test_continuous_wrong_shape_raises(bad: np.ndarray, expected: str) -> None:
    env = PaymentRoutingEnv("steady")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=expected) as exc:
        env.step(bad)
    assert "shape" in str(exc.value)
    assert f"got {np.shape(bad)}" in str(exc.value) and "batched" not in str(exc.value)  # the user's own shape


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_continuous_nan_or_inf_raises(value: float) -> None:
    env = PaymentRoutingEnv("steady")
    env.reset(seed=0)
    a = status_quo("continuous", B).copy()
    a[5] = value
    with pytest.raises(ValueError, match="NaN") as exc:
        env.step(a)
    assert "[-1, 1]" in str(exc.value)


@pytest.mark.parametrize(
    ("bad", "dtype"),
    [
        (np.array(["a"] * 4 * B), "<U1"),
        (np.ones(4 * B, dtype=complex), "complex128"),
        (np.array([None] * 4 * B), "object"),
    ],
)
def test_continuous_non_numbers_raise_naming_the_dtype(bad: np.ndarray, dtype: str) -> None:
    env = PaymentRoutingEnv("steady")
    env.reset(seed=0)
    before = env.sim.state.copy()
    with pytest.raises(ValueError, match=rf"must hold real numbers in \[-1, 1\]; got dtype {dtype}$"):
        env.step(bad)
    assert all(np.array_equal(before[f], env.sim.state[f]) for f in before.dtype.names)  # nothing moved
    env.step(np.ones(4 * B, dtype=bool))  # booleans are 0 and 1: accepted


@pytest.mark.parametrize(("out_of_range", "inside"), [(5.0, 1.0), (-3.0, -1.0)])
def test_out_of_range_continuous_actions_are_clipped(out_of_range: float, inside: float) -> None:
    def const(v: float):
        a = np.full(4 * B, v, dtype=np.float32)
        a[0::4] = 1.0  # keep admitting so something happens, unless the admit column is under test
        return lambda env, t: a

    a = run_episode(PaymentRoutingEnv("steady"), seed=1, policy=const(out_of_range))
    b = run_episode(PaymentRoutingEnv("steady"), seed=1, policy=const(inside))
    assert_same_trajectory(a, b)
    # and the admit column itself
    adm_out = np.tile(np.array([out_of_range, 0, 0, 0], dtype=np.float32), B)
    adm_in = np.tile(np.array([inside, 0, 0, 0], dtype=np.float32), B)
    a = run_episode(PaymentRoutingEnv("steady"), seed=1, policy=lambda env, t: adm_out)
    b = run_episode(PaymentRoutingEnv("steady"), seed=1, policy=lambda env, t: adm_in)
    assert_same_trajectory(a, b)


def test_random_out_of_range_actions_equal_their_clipped_version() -> None:
    rng = np.random.default_rng(0)
    acts = rng.uniform(-2, 3, (400, 4 * B)).astype(np.float32)
    a = run_episode(PaymentRoutingEnv("steady"), seed=2, policy=lambda env, t: acts[t])
    b = run_episode(PaymentRoutingEnv("steady"), seed=2, policy=lambda env, t: np.clip(acts[t], -1, 1))
    assert_same_trajectory(a, b)
    env = PaymentRoutingEnv("steady")
    env.reset(seed=0)
    env.step(acts[0])
    assert np.all((env.state.admit >= 0) & (env.state.admit <= 1))
    assert np.allclose(env.state.route.sum(2), 1)


def test_continuous_decoding_normalises_weights_and_zero_means_quick() -> None:
    env = PaymentRoutingEnv("steady")
    env.reset(seed=0)
    # admit 1 - 0.7; weights: quick 1 - 0.5, switch 0.25, netbank 0.25
    a = np.tile(np.array([-0.7, -0.5, 0.25, 0.25], dtype=np.float32), B)
    a[4:8] = [-0.3, -1.0, -0.5, 0.0]  # CCB: every weight clipped to zero
    a[8:12] = [0.8, 1.0, 1.0, 0.5]  # CMB: the largest weights: quick 2, switch 1, netbank 0.5
    env.step(a)
    assert env.state.admit[0].tolist() == pytest.approx([0.3, 0.7, 1.0, 0.3, 0.3, 0.3])
    assert env.state.route[0, 0].tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert env.state.route[0, 1].tolist() == [1.0, 0.0, 0.0]
    assert env.state.route[0, 2].tolist() == pytest.approx([2 / 3.5, 1 / 3.5, 0.5 / 3.5])
    # the corners reach every control: admit nothing, all to the switch, all to online banking
    for action, admit, route in (([-1, 0, 0, 0], 0.0, [1, 0, 0]), ([0, -1, 1, 0], 1.0, [0, 1, 0]),
                                 ([0, -1, 0, 1], 1.0, [0, 0, 1])):  # fmt: skip
        env.step(np.tile(np.array(action, dtype=np.float32), B))
        assert env.state.admit[0, 0] == admit and env.state.route[0, 0].tolist() == route


def test_all_zero_route_weights_behave_like_quick() -> None:
    zero = np.tile(np.array([0, -1, 0, 0], dtype=np.float32), B)  # every route weight zero
    quick = np.tile(np.array([0, 0, 0, 0], dtype=np.float32), B)
    a = run_episode(PaymentRoutingEnv("double11_2013"), seed=8, policy=lambda env, t: zero)
    b = run_episode(PaymentRoutingEnv("double11_2013"), seed=8, policy=lambda env, t: quick)
    assert_same_trajectory(a, b)


@pytest.mark.parametrize(
    "bad",
    [
        [11, 0] * B,
        [0, 5] * B,
        [-1, 0] * B,
        [10, 0] * (B - 1),
        [[10, 0] * B, [10, 0] * B],
    ],
)
def test_multidiscrete_out_of_range_or_wrong_shape_raises(bad: list) -> None:
    env = PaymentRoutingEnv("steady", action_mode="multidiscrete")
    env.reset(seed=0)
    with pytest.raises(ValueError) as exc:
        env.step(np.array(bad))
    assert "multidiscrete" in str(exc.value)
    assert "range" in str(exc.value) or "shape" in str(exc.value)


def test_multidiscrete_non_integer_raises() -> None:
    env = PaymentRoutingEnv("steady", action_mode="multidiscrete")
    env.reset(seed=0)
    a = np.array([10.0, 0.0] * B)
    a[2] = 4.5
    with pytest.raises(ValueError, match="integer"):
        env.step(a)


def test_multidiscrete_decoding() -> None:
    env = PaymentRoutingEnv("steady", action_mode="multidiscrete")
    env.reset(seed=0)
    a = np.array([[lvl, preset] for lvl, preset in zip([0, 3, 10, 7, 5, 1], [0, 1, 2, 3, 4, 0], strict=True)])
    env.step(a.ravel())
    assert env.state.admit[0].tolist() == pytest.approx([0.0, 0.3, 1.0, 0.7, 0.5, 0.1])
    assert np.allclose(env.state.route[0], ROUTE_PRESETS[[0, 1, 2, 3, 4, 0]])


@pytest.mark.parametrize("bad", [1 + 4 * B, -1, 100, np.array([0, 1]), 2.5])
def test_discrete_out_of_range_raises(bad) -> None:
    env = PaymentRoutingEnv("steady", action_mode="discrete")
    env.reset(seed=0)
    with pytest.raises(ValueError) as exc:
        env.step(bad)
    assert "discrete" in str(exc.value)


def test_discrete_actions_move_admit_by_a_tenth_and_route_presets() -> None:
    env = PaymentRoutingEnv("steady", action_mode="discrete")
    env.reset(seed=0)
    state = lambda: (env.state.admit[0].copy(), env.state.route[0].copy())  # noqa: E731
    raise_, lower, nxt, prev = (
        (lambda b: 1 + 4 * b),
        (lambda b: 2 + 4 * b),
        (lambda b: 3 + 4 * b),
        (lambda b: 4 + 4 * b),
    )

    env.step(0)
    admit, route = state()
    assert admit.tolist() == [1.0] * B and np.allclose(route, ROUTE_PRESETS[0])
    env.step(lower(1))  # CCB admit 1.0 -> 0.9
    admit, _ = state()
    assert admit[1] == pytest.approx(0.9) and np.delete(admit, 1).tolist() == [1.0] * (B - 1)
    env.step(lower(1))
    assert state()[0][1] == pytest.approx(0.8)
    env.step(raise_(1))
    assert state()[0][1] == pytest.approx(0.9)
    env.step(raise_(1))
    env.step(raise_(1))  # clipped at 1
    assert state()[0][1] == pytest.approx(1.0)
    for _ in range(12):  # clipped at 0
        env.step(lower(5))
    assert state()[0][5] == 0.0
    env.step(raise_(5))
    assert state()[0][5] == pytest.approx(0.1)
    # route presets of bank 2 (CMB)
    env.step(nxt(2))
    assert np.allclose(state()[1][2], ROUTE_PRESETS[1])
    env.step(nxt(2))
    assert np.allclose(state()[1][2], ROUTE_PRESETS[2])
    env.step(prev(2))
    assert np.allclose(state()[1][2], ROUTE_PRESETS[1])
    for _ in range(10):
        env.step(nxt(2))
    assert np.allclose(state()[1][2], ROUTE_PRESETS[-1])
    for _ in range(10):
        env.step(prev(2))
    assert np.allclose(state()[1][2], ROUTE_PRESETS[0])
    # no-op keeps everything; the other banks were never touched
    before = state()
    env.step(0)
    after = state()
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert np.allclose(after[1][[0, 1, 3, 4, 5]], ROUTE_PRESETS[0])


# ------------------------------------------------------------------------------------------ render


def bank_rows(text: str, names: tuple[str, ...]) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if first in names:
            assert first not in rows, f"two rows for {first}"
            rows[first] = line
    return rows


def test_render_ansi_shows_bank_states() -> None:
    env = PaymentRoutingEnv("double11_2013", render_mode="ansi")
    names = env.scenario.bank_names
    env.reset(seed=0)
    env.step(status_quo("continuous", B))
    text = env.render()
    assert isinstance(text, str)
    rows = bank_rows(text, names)
    assert set(rows) == set(names)
    assert all(row.split()[-1] == "up" for row in rows.values())
    seen = {"up": False, "degraded": False, "down": False}
    for _ in range(env.scenario.n_steps - 1):
        env.step(status_quo("continuous", B))
        rows = bank_rows(env.render(), names)
        assert set(rows) == set(names)
        for b, name in enumerate(names):
            status = rows[name].split()[-1]
            expected = (
                "down"
                if env.state.down_left[0, b] > 0
                else ("degraded" if env.state.stress[0, b] > 0.05 or env.state.warm[0, b] < 0.999 else "up")
            )
            assert status == expected, (name, status, expected)
            seen[status] = True
    assert all(seen.values()), seen  # the 2013 story shows all three states


def test_render_modes() -> None:
    assert PaymentRoutingEnv("steady").render() is None
    env = PaymentRoutingEnv("steady", render_mode="ansi")
    with pytest.raises(RuntimeError):
        env.render()
    with pytest.raises(ValueError, match="render_mode"):
        PaymentRoutingEnv("steady", render_mode="human")
    env = gym.make("payroute/Steady-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert "ICBC" in env.render()


def test_render_rgb_array_draws_each_banks_status_queues_and_control() -> None:
    """The frame's health strip is the text dashboard's status; its bars follow the queues, admit rate, route."""
    from payroute_env import render

    env = PaymentRoutingEnv("double11_2013", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.dtype == np.uint8 and first.shape == (render.FRAME_H, render.frame_width(B), 3)
    strip_y = render.MARGIN + render.STRIP_H // 2
    bar_bottom = render.MARGIN + render.STRIP_H + render.MARGIN + render.BAR_H - 1

    def strip(frame: np.ndarray, b: int) -> tuple[int, ...]:
        return tuple(frame[strip_y, b * render.PANEL_W + render.MARGIN + 1])

    seen, frames = set(), []
    half = np.tile([-0.5, -1.0, 1.0, 0.0], B)  # admit half, quick-enabled users to the switch
    for t in range(env.scenario.n_steps):
        env.step(half if t == 30 else status_quo("continuous", B))
        frame = env.render()
        frames.append(frame)
        for b in range(B):
            status = render.server_status(env.state, 0, b)
            assert strip(frame, b) == render._STATUS_RGB[status]
            seen.add(status)
        if t == 30:  # the admit bar is half full, the route bar all switch (purple)
            admit_x = render.MARGIN + render._ADMIT_X
            column = frame[render.MARGIN + render.STRIP_H + render.MARGIN :, admit_x][: render.BAR_H]
            assert (column == render._ADMIT_RGB).all(axis=1).sum() == render.BAR_H // 2
            route_x = render.MARGIN + render._ROUTE_X
            assert tuple(frame[bar_bottom, route_x]) == render._ROUTE_RGB[1]
    assert seen == {"up", "degraded", "down"}
    busiest = max(range(len(frames)), key=lambda t: (frames[t] == render._QUEUE_RGB).all(axis=2).sum())
    assert (frames[busiest] == render._QUEUE_RGB).all(axis=2).sum() > (first == render._QUEUE_RGB).all(axis=2).sum()
    again = PaymentRoutingEnv("double11_2013", render_mode="rgb_array")
    again.reset(seed=0)
    assert again.render().tobytes() == first.tobytes()


def test_sb3_make_vec_env_and_vector_env_render_rgb_frames() -> None:
    """SB3's ``make_vec_env`` asks every environment for ``render_mode="rgb_array"``."""
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("payroute/Double11-2013-v0", n_envs=2, seed=0)
    venv.reset()
    venv.step(np.stack([status_quo("continuous", B)] * 2))
    images = venv.get_images()
    assert len(images) == 2 and all(im.dtype == np.uint8 and im.ndim == 3 for im in images)
    vec = PaymentRoutingVectorEnv(2, "double11_2013", render_mode="rgb_array")
    vec.reset(seed=0)
    single = PaymentRoutingEnv("double11_2013", render_mode="rgb_array")
    single.reset(seed=1)
    frames = vec.render()
    assert len(frames) == 2 and frames[1].tobytes() == single.render().tobytes()


@settings(max_examples=25, deadline=None)
@given(sc=valid_scenarios(), mode=st.sampled_from(ACTION_MODES), seed=st.integers(0, 2**31 - 1))
def test_env_info_accounting_for_generated_scenarios(sc, mode: str, seed: int) -> None:
    env = PaymentRoutingEnv(sc, action_mode=mode, observe_internal=True)
    traj = run_episode(env, seed=seed, policy=random_policy(seed))
    assert len(traj) == sc.n_steps + 1
    for obs, reward, term, _, info in traj[1:]:
        assert info["arrived"] == info["succeeded"] + info["lost"] + info["in_flight"]
        assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
        assert math.isfinite(reward) and term is False
    kpis = traj[-1][4]["episode_kpis"]
    assert 0 <= kpis["failed_payment_rate"] <= 1
    assert tuple(kpis["outage_seconds"]) == sc.bank_names


def test_reset_rejects_seeds_beyond_64_bits_with_a_clear_error() -> None:
    env = PaymentRoutingEnv("steady")
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
        env.reset(seed=2**64 + 5)
    _, info = env.reset(seed=2**64 - 1)
    assert info["arrived"] == 0


def test_reward_weights_can_change_between_steps_on_every_front_end() -> None:
    """Setting ``beta`` on a running env gives the reward of an env built with that ``beta`` (e.g. annealing)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    action = np.full(4 * B, 0.5, dtype=np.float32)  # throttles: failed attempts, so beta matters

    def rewards(env: Any, steps: int = 30) -> list[float]:
        return [
            float(np.ravel(env.step(action if isinstance(env, gym.Env) else action[None])[1])[0]) for _ in range(steps)
        ]

    built = PaymentRoutingEnv("steady", beta=0.0)
    built.reset(seed=3)
    want = rewards(built)
    changed = gym.make("payroute/Steady-v0")
    changed.reset(seed=3)
    changed.unwrapped.beta = np.float32(0.0)  # numpy scalars are numbers too
    assert changed.unwrapped.beta == 0.0 and rewards(changed) == want
    # SB3's DummyVecEnv over single envs: set_attr reaches the reward (it used to set an unused attribute)
    dummy = DummyVecEnv([lambda: PaymentRoutingEnv("steady")])
    dummy.seed(3)
    dummy.reset()
    dummy.set_attr("beta", 0.0)
    assert np.array_equal(np.float32(rewards(dummy)), np.float32(want))  # DummyVecEnv keeps float32 rewards
    vec = PaymentRoutingVectorEnv(1, "steady")
    vec.reset(seed=3)
    vec.beta = 0.0
    assert rewards(vec) == want
    for bad in (-1.0, float("nan"), "0.1", True, None):
        with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
            changed.unwrapped.beta = bad
        with pytest.raises(ValueError, match="lost_weight must be a finite number >= 0"):
            PaymentRoutingEnv("steady", lost_weight=bad)
    assert changed.unwrapped.beta == 0.0  # a refused value changes nothing


@pytest.mark.parametrize("bad", ["false", "no", 1, None])
def test_observe_internal_must_be_a_bool(bad: Any) -> None:
    with pytest.raises(ValueError, match="observe_internal must be True or False"):
        PaymentRoutingEnv("steady", observe_internal=bad)


def test_a_deleted_env_frees_its_parameters() -> None:
    """Nothing module-level keeps an env's arrays alive (an observation-scale cache once did, per env built)."""
    import gc
    import weakref

    env = PaymentRoutingEnv("steady")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    params = weakref.ref(env.params)
    del env
    gc.collect()
    assert params() is None


def test_the_continuous_action_space_samples_what_gymnasiums_box_samples() -> None:
    """``BoundedBox.sample`` is a shortcut: the same numbers as ``gymnasium.spaces.Box.sample``, bit for bit."""
    from gymnasium import spaces

    from payroute_env.actions import BoundedBox, action_space

    ours = action_space("continuous", 6)
    assert isinstance(ours, BoundedBox) and isinstance(ours, spaces.Box)
    theirs = spaces.Box(-1.0, 1.0, (24,), dtype=np.float32)
    ours.seed(123)
    theirs.seed(123)
    for _ in range(200):
        a, b = ours.sample(), theirs.sample()
        assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()
        assert ours.contains(a)
    with pytest.raises(Exception, match="mask"):
        ours.sample(mask=np.ones(24))
    # other bounds too (the shortcut is low + range * u, with the bounds as the Box stores them)
    for low, high, dtype in [(0.0, 1.0, np.float32), (0.1, 0.7, np.float32), (-3.3, 2.9, np.float64)]:
        ours, theirs = BoundedBox(low, high, (7,), dtype), spaces.Box(low, high, (7,), dtype=dtype)
        ours.seed(5)
        theirs.seed(5)
        for _ in range(200):
            assert ours.sample().tobytes() == theirs.sample().tobytes()
    with pytest.raises(ValueError, match="finite"):
        BoundedBox(0.0, np.inf, (2,))


def test_the_frame_draws_the_failed_rate_so_far_on_a_timeline() -> None:
    """Under the panels: lost / arrived intents so far, one column per drawn step, cleared when a new episode
    starts."""
    from payroute_env import render

    env = PaymentRoutingEnv("double11_2013", render_mode="rgb_array")
    env.reset(seed=0)
    width = render.frame_width(B) - 2 * render.MARGIN
    for _ in range(120):
        env.step(status_quo("continuous", B))
        frame = env.render()
    area = frame[render._TIMELINE_Y : render._TIMELINE_Y + render.TIMELINE_H]
    red = (area == render._FAILED_RGB).all(axis=2)
    columns = np.flatnonzero(red.any(axis=0))
    last_x = render.MARGIN + 120 * (width - 1) // env.scenario.n_steps
    assert columns.min() >= render.MARGIN and columns.max() == last_x
    state = env.sim.state
    rate = float(state.lost[0] / state.arrived[0])
    assert 0.01 < rate < render.TIMELINE_MAX  # the 2013 status quo by 00:08
    assert red[:, last_x].sum() == round(rate / render.TIMELINE_MAX * render.TIMELINE_H)
    # drawn a column a step, the frame is the one drawn whole from the recorded rates
    whole = render.rgb_array(env.params, env.sim.state, 0, env._timelines.rates[0])
    assert np.array_equal(frame, whole)
    env.reset(seed=1)
    fresh = env.render()[render._TIMELINE_Y : render._TIMELINE_Y + render.TIMELINE_H]
    assert not (fresh == render._FAILED_RGB).all(axis=2)[:, render.MARGIN + 1 :].any()  # the old line is gone
