"""The SB3 adapter equals SB3's DummyVecEnv over single PaymentRoutingEnv, and SB3 algorithms train on it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from payroute_env import PaymentRoutingEnv
from payroute_env.sb3_vec_env import PaymentRoutingSB3VecEnv, make_sb3_vec_env

MODES = ("continuous", "multidiscrete", "discrete")


@pytest.fixture(scope="module")
def short_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The randomised 2013 surge cut to 12 steps."""
    path = tmp_path_factory.mktemp("sb3") / "short_surge.toml"
    path.write_text('extends = "randomized"\nname = "short_surge"\nstart_s = -20.0\nend_s = 40.0\n')
    return path


def sb3_actions(space: gym.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    """Actions as SB3 passes them: float32 boxes, int64 (multi)discrete."""
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(0.0, 1.0, (n, *space.shape)).astype(np.float32)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, (n, *space.nvec.shape))
    return rng.integers(0, space.n, n)


def assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict), where
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
        return
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    assert a_arr.dtype == b_arr.dtype and a_arr.shape == b_arr.shape, where
    assert np.array_equal(a_arr, b_arr, equal_nan=a_arr.dtype.kind == "f"), f"{where}: {a} != {b}"


def dummy(path: Path, n: int, mode: str) -> DummyVecEnv:
    return DummyVecEnv([lambda: PaymentRoutingEnv(path, action_mode=mode) for _ in range(n)])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("info_counters", [True, False])
def test_adapter_matches_dummy_vec_env(short_scenario: Path, mode: str, info_counters: bool) -> None:
    n, seed = 3, 21
    ours = PaymentRoutingSB3VecEnv(n, short_scenario, action_mode=mode, info_counters=info_counters)
    ref = dummy(short_scenario, n, mode)
    assert ours.observation_space == ref.observation_space and ours.action_space == ref.action_space
    assert ours.seed(seed) == ref.seed(seed) == [seed + i for i in range(n)]
    assert_same(ours.reset(), ref.reset(), "reset")
    assert_same(ours.reset_infos, ref.reset_infos, "reset_infos")
    rng = np.random.default_rng(3)
    n_steps = ours.params.n_steps
    dones_seen = 0
    for t in range(3 * n_steps + 4):
        actions = sb3_actions(ours.action_space, rng, n)
        obs, rew, dones, infos = ours.step(actions)
        r_obs, r_rew, r_dones, r_infos = ref.step(actions)
        where = f"step {t}"
        assert_same(obs, r_obs, f"{where} obs")
        assert_same(rew, r_rew, f"{where} rewards")
        assert_same(dones, r_dones, f"{where} dones")
        for i in range(n):
            if info_counters:
                assert_same(infos[i], r_infos[i], f"{where} info {i}")
            elif dones[i]:
                keys = ("terminal_observation", "TimeLimit.truncated", "episode_kpis")
                assert_same(infos[i], {k: r_infos[i][k] for k in keys}, f"{where} info {i}")
            else:
                assert infos[i] == {}
        if dones.any():
            assert_same(ours.reset_infos, ref.reset_infos, f"{where} reset_infos")
        dones_seen += int(dones.sum())
    assert dones_seen >= 3 * n


def test_reset_without_seed_continues_streams(short_scenario: Path) -> None:
    ours = PaymentRoutingSB3VecEnv(2, short_scenario)
    ref = dummy(short_scenario, 2, "continuous")
    ours.seed(7)
    ref.seed(7)
    ours.reset()
    ref.reset()
    assert_same(ours.reset(), ref.reset(), "second reset")  # no seed: the next episode of each stream
    action = np.full((2, ours.action_space.shape[0]), 0.5, dtype=np.float32)
    assert_same(ours.step(action)[0], ref.step(action)[0], "step after reset")


def test_attributes_methods_and_render(short_scenario: Path) -> None:
    env = PaymentRoutingSB3VecEnv(3, short_scenario, action_mode="discrete", render_mode="ansi")
    assert env.get_attr("render_mode") == ["ansi"] * 3
    assert [s.name for s in env.get_attr("scenario", indices=[0, 2])] == ["short_surge"] * 2
    assert env.get_attr("action_mode", indices=1) == ["discrete"]
    assert env.has_attr("observe_internal") and not env.has_attr("no_such_thing")
    with pytest.raises(AttributeError, match="no_such_thing"):
        env.get_attr("no_such_thing")
    env.set_attr("beta", 0.5)
    assert env.get_attr("beta") == [0.5] * 3 and env.sim.beta == 0.5
    with pytest.raises(ValueError, match="shared"):
        env.set_attr("beta", 0.2, indices=[0])
    with pytest.raises(AttributeError):
        env.set_attr("scenario", None)
    with pytest.raises(ValueError):
        env.set_attr("lost_weight", -1.0)
    assert env.env_is_wrapped(Monitor) == [False] * 3
    env.seed(0)
    env.reset()
    env.step(np.array([1, 2, 3]))
    single = PaymentRoutingEnv(short_scenario, action_mode="discrete", render_mode="ansi")
    single.reset(seed=2)
    single.step(3)
    assert env.env_method("render", indices=[2]) == [single.render()]
    assert env.env_method("counters", indices=2) == [single.sim.counters(0)]
    kpis = env.env_method("episode_kpis")
    assert len(kpis) == 3
    assert_same(kpis[2], single.sim.kpis(0), "episode_kpis")
    with pytest.raises(AttributeError, match="no environment method"):
        env.env_method("explode")
    text = env.render()
    assert isinstance(text, str) and text.count("[env ") == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert PaymentRoutingSB3VecEnv(2, short_scenario).render() is None


def test_rgb_array_frames_are_the_single_envs_and_render_tiles_them(short_scenario: Path) -> None:
    env = PaymentRoutingSB3VecEnv(3, short_scenario, render_mode="rgb_array")
    env.seed(0)
    env.reset()
    single = PaymentRoutingEnv(short_scenario, render_mode="rgb_array")
    single.reset(seed=1)
    images = env.get_images()
    assert len(images) == 3 and images[1].tobytes() == single.render().tobytes()
    h, w, _ = images[0].shape
    grid = env.render()
    assert grid.dtype == np.uint8 and grid.shape == (2 * h, 2 * w, 3)  # SB3 tiles 3 frames in a 2 x 2 grid
    assert grid[:h, w:].tobytes() == images[1].tobytes()
    with pytest.warns(UserWarning, match="rgb_array"):
        assert PaymentRoutingSB3VecEnv(1, short_scenario, render_mode="ansi").get_images() == [None]


def test_make_sb3_vec_env_monitors_episodes(short_scenario: Path) -> None:
    env = make_sb3_vec_env(short_scenario, n_envs=2, seed=4, action_mode="multidiscrete")
    assert isinstance(env, VecMonitor) and isinstance(env.unwrapped, PaymentRoutingSB3VecEnv)
    plain = make_sb3_vec_env(short_scenario, n_envs=2, seed=4, action_mode="multidiscrete", monitor=False)
    assert isinstance(plain, PaymentRoutingSB3VecEnv)
    assert np.array_equal(env.reset(), plain.reset())
    total = np.zeros(2)
    for _ in range(env.unwrapped.params.n_steps):
        actions = np.tile(np.array([10, 0] * 6), (2, 1))
        _, rew, dones, infos = env.step(actions)
        total += rew
    assert dones.all()
    for i in range(2):
        assert infos[i]["episode"]["l"] == env.unwrapped.params.n_steps
        assert infos[i]["episode"]["r"] == pytest.approx(total[i], rel=1e-5)


def _parameters(model: PPO | DQN) -> list[np.ndarray]:
    return [p.detach().clone().numpy() for p in model.policy.parameters()]


@pytest.mark.parametrize("mode", ["continuous", "multidiscrete"])
def test_ppo_trains_on_the_adapter(short_scenario: Path, mode: str) -> None:
    """SB3 runs its whole loop on the adapter: episodes reported, gradient steps taken on its data. (Whether
    an agent learns is checked in test_train.py: a short PPO run beats random.)"""
    env: VecEnv = make_sb3_vec_env(short_scenario, n_envs=4, seed=0, action_mode=mode)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    before = _parameters(model)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    assert len(model.ep_info_buffer) > 0  # VecMonitor reported finished episodes to SB3
    after = _parameters(model)
    assert model._n_updates > 0 and any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_dqn_trains_on_the_adapter(short_scenario: Path) -> None:
    env: VecEnv = make_sb3_vec_env(short_scenario, n_envs=2, seed=0, action_mode="discrete")
    model = DQN("MlpPolicy", env, learning_starts=64, buffer_size=1000, batch_size=32, seed=0, device="cpu")
    before = _parameters(model)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    assert len(model.ep_info_buffer) > 0
    assert model.replay_buffer.size() > 0
    after = _parameters(model)
    assert model._n_updates > 0 and any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
