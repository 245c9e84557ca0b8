"""PaymentRoutingVectorEnv equals num_envs single PaymentRoutingEnv seeded s, s+1, ..., bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.passive_env_checker import check_obs
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import payroute_env
from payroute_env import ENV_IDS, PaymentRoutingEnv
from payroute_env.metrics import batch_counters
from payroute_env.vector_env import PaymentRoutingVectorEnv

MODES = ("continuous", "multidiscrete", "discrete")
N_ENVS = 3
SEED = 11


@pytest.fixture(scope="module")
def short_scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scenarios of a few steps so that a test crosses several episode ends."""
    folder = tmp_path_factory.mktemp("scenarios")
    texts = {
        # the 2013 midnight surge with per-episode randomisation (peak, capacities, shares, fragility): 12 steps
        "surge": 'extends = "randomized"\nname = "short_surge"\nstart_s = -20.0\nend_s = 40.0\n',
        # an ordinary evening: 7 steps
        "steady": 'extends = "steady"\nname = "short_steady"\nend_s = 35.0\n',
    }
    paths = {}
    for name, text in texts.items():
        paths[name] = folder / f"{name}.toml"
        paths[name].write_text(text)
    return paths


def random_actions(space: gym.Space, rng: np.random.Generator, n_envs: int) -> np.ndarray:
    """A batch of valid single-env actions (continuous ones also outside [0, 1], which the env clips)."""
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(-0.2, 1.2, (n_envs, *space.shape)).astype(np.float32)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, (n_envs, *space.nvec.shape))
    assert isinstance(space, gym.spaces.Discrete)
    return rng.integers(0, space.n, n_envs)


def assert_same(a: Any, b: Any, where: str) -> None:
    """Recursive exact equality of infos (arrays bit for bit, NaN equal to NaN)."""
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict), where
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
        return
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    assert a_arr.dtype == b_arr.dtype, f"{where}: dtype {a_arr.dtype} != {b_arr.dtype}"
    assert a_arr.shape == b_arr.shape, f"{where}: shape {a_arr.shape} != {b_arr.shape}"
    equal_nan = a_arr.dtype.kind == "f"
    assert np.array_equal(a_arr, b_arr, equal_nan=equal_nan), f"{where}: {a_arr} != {b_arr}"


def unbatch(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Environment ``i``'s info out of Gymnasium vector infos (keys whose mask marks ``i``)."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_") or not infos[f"_{key}"][i]:
            continue
        out[key] = unbatch(value, i) if isinstance(value, dict) else value[i].item()
    return out


# ------------------------------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", ["surge", "steady"])
def test_vector_equals_single_envs_across_autoresets(
    short_scenarios: dict[str, Path], mode: str, scenario: str
) -> None:
    """Next-step autoreset reproduced by hand with single envs: obs, rewards, flags and infos, 3+ episodes."""
    path = short_scenarios[scenario]
    venv = PaymentRoutingVectorEnv(N_ENVS, path, action_mode=mode)
    singles = [PaymentRoutingEnv(path, action_mode=mode) for _ in range(N_ENVS)]
    obs, infos = venv.reset(seed=SEED)
    assert obs.dtype == np.float32 and obs.shape == (N_ENVS, *venv.single_observation_space.shape)
    for i, env in enumerate(singles):
        o, info = env.reset(seed=SEED + i)
        assert np.array_equal(obs[i], o)
        assert unbatch(infos, i) == info
    rng = np.random.default_rng(0)
    prev_done = np.zeros(N_ENVS, dtype=bool)
    n_steps = venv.sim.params.n_steps
    episodes_ended = 0
    for t in range(3 * (n_steps + 1) + 2):
        actions = random_actions(venv.single_action_space, rng, N_ENVS)
        obs, reward, terminated, truncated, infos = venv.step(actions)
        assert obs.dtype == np.float32 and reward.dtype == np.float64
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
        for i, env in enumerate(singles):
            if prev_done[i]:
                o, info = env.reset()
                r, te, tr = 0.0, False, False
            else:
                o, r, te, tr, info = env.step(actions[i])
            where = f"step {t} env {i}"
            assert np.array_equal(obs[i], o), where
            assert reward[i] == r, where
            assert terminated[i] == te and truncated[i] == tr, where
            got = unbatch(infos, i)
            assert sorted(got) == sorted(info), where
            assert_same(got, info, where)
            prev_done[i] = te or tr
        episodes_ended += int(truncated.sum())
    assert episodes_ended >= 3 * N_ENVS


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("observe_internal", [False, True])
def test_vector_equals_sync_vector_env_with_partial_resets(
    short_scenarios: dict[str, Path], mode: str, observe_internal: bool
) -> None:
    """Against Gymnasium's own SyncVectorEnv (next-step autoreset) over single envs, whole infos compared.

    ``reset_mask`` desynchronises the episodes, so some steps autoreset only part of the batch.
    """
    path = short_scenarios["surge"]
    n = 4
    kwargs = {"action_mode": mode, "observe_internal": observe_internal}
    venv = PaymentRoutingVectorEnv(n, path, **kwargs)
    sync = SyncVectorEnv([lambda: PaymentRoutingEnv(path, **kwargs) for _ in range(n)])
    assert sync.metadata["autoreset_mode"] == venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert venv.single_observation_space == sync.single_observation_space
    assert venv.single_action_space == sync.single_action_space
    assert venv.observation_space == sync.observation_space
    assert venv.action_space == sync.action_space

    def compare(a: tuple, b: tuple, where: str) -> None:
        assert len(a) == len(b)
        for x, y, name in zip(a, b, ("obs", "reward", "terminated", "truncated", "infos")[: len(a)], strict=True):
            assert_same(x, y, f"{where} {name}")

    compare(venv.reset(seed=SEED), sync.reset(seed=SEED), "reset")
    rng = np.random.default_rng(1)
    partial_autoresets = rejected = 0
    ending = np.zeros(n, dtype=bool)  # the environments this step will autoreset
    n_steps = venv.sim.params.n_steps
    for t in range(4 * n_steps):
        if t in (3, 8, 20):  # reset some envs mid-episode (with seeds, then continuing their streams)
            mask = np.zeros(n, dtype=bool)
            mask[[t % n, (t + 1) % n]] = True
            seed = None if t == 20 else 100 + t
            compare(
                venv.reset(seed=seed, options={"reset_mask": mask}),
                sync.reset(seed=seed, options={"reset_mask": mask.copy()}),
                f"reset_mask step {t}",
            )
        actions = random_actions(venv.single_action_space, rng, n)
        if 0 < ending.sum() < n:
            # a malformed batch on a partial-autoreset step is refused and changes nothing (the comparison
            # with SyncVectorEnv, which never sees it, goes on holding)
            with pytest.raises(ValueError, match="shape"):
                venv.step(actions[:-1])
            if mode == "continuous":
                bad = actions.copy()
                bad[np.flatnonzero(~ending)[0], 0] = np.nan
                with pytest.raises(ValueError, match="NaN"):
                    venv.step(bad)
            rejected += 1
        got, want = venv.step(actions), sync.step(actions)
        compare(got, want, f"step {t}")
        ending = got[3]
        partial_autoresets += int(0 < got[3].sum() < n)
    assert partial_autoresets > 0 and rejected > 0, "the test never exercised a partial autoreset"


def test_seed_none_continues_each_stream(short_scenarios: dict[str, Path]) -> None:
    """reset() without a seed after a seeded episode equals single envs' reset() without a seed."""
    path = short_scenarios["surge"]
    venv = PaymentRoutingVectorEnv(2, path)
    singles = [PaymentRoutingEnv(path) for _ in range(2)]
    venv.reset(seed=[3, 40])
    singles[0].reset(seed=3)
    singles[1].reset(seed=40)
    obs, _ = venv.reset()
    for i, env in enumerate(singles):
        assert np.array_equal(obs[i], env.reset()[0])
    action = np.tile(singles[0].action_space.sample(), (2, 1))
    obs, reward, *_ = venv.step(action)
    for i, env in enumerate(singles):
        o, r, *_ = env.step(action[i])
        assert np.array_equal(obs[i], o) and reward[i] == r
    # different seeds give different episodes (the comparison above is not vacuous)
    assert not np.array_equal(obs[0], obs[1])


def test_same_seed_same_trajectory_and_fresh_arrays(short_scenarios: dict[str, Path]) -> None:
    path = short_scenarios["surge"]
    a, b = PaymentRoutingVectorEnv(4, path), PaymentRoutingVectorEnv(4, path)
    oa, _ = a.reset(seed=0)
    ob, _ = b.reset(seed=0)
    assert np.array_equal(oa, ob)
    previous = oa
    for _ in range(15):
        act = a.action_space.sample()
        ra, rb = a.step(act), b.step(act)
        for x, y in zip(ra[:4], rb[:4], strict=True):
            assert np.array_equal(x, y)
        assert ra[0] is not previous and not np.shares_memory(ra[0], previous)
        previous = ra[0]


def test_batch_counters_match_metrics(short_scenarios: dict[str, Path]) -> None:
    venv = PaymentRoutingVectorEnv(3, short_scenarios["surge"])
    venv.reset(seed=1)
    for _ in range(5):
        venv.step(venv.action_space.sample())
    batched = batch_counters(venv.state)
    for i in range(3):
        assert {k: int(v[i]) for k, v in batched.items()} == venv.sim.counters(i)
    assert batched["arrived"].sum() > 0


# ------------------------------------------------------------------------------------------ spaces, make_vec


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("observe_internal", [False, True])
def test_spaces_contain_observations_and_actions(
    short_scenarios: dict[str, Path], mode: str, observe_internal: bool
) -> None:
    n = 5
    venv = PaymentRoutingVectorEnv(n, short_scenarios["surge"], action_mode=mode, observe_internal=observe_internal)
    single = PaymentRoutingEnv(short_scenarios["surge"], action_mode=mode, observe_internal=observe_internal)
    assert venv.single_observation_space == single.observation_space
    assert venv.single_action_space == single.action_space
    assert venv.observation_space == gym.vector.utils.batch_space(single.observation_space, n)
    assert venv.action_space == gym.vector.utils.batch_space(single.action_space, n)
    obs, _ = venv.reset(seed=0)
    check_obs(obs, venv.observation_space, "reset")
    venv.action_space.seed(0)
    for _ in range(venv.sim.params.n_steps + 3):
        actions = venv.action_space.sample()
        assert venv.action_space.contains(actions)
        obs, reward, terminated, truncated, _ = venv.step(actions)
        check_obs(obs, venv.observation_space, "step")
        assert reward.shape == terminated.shape == truncated.shape == (n,)
        assert np.isfinite(reward).all()


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_make_vec_vector_entry_point(short_scenarios: dict[str, Path], env_id: str) -> None:
    kwargs: dict[str, Any] = {"action_mode": "multidiscrete", "observe_internal": True}
    if ENV_IDS[env_id] is None:
        kwargs["scenario"] = str(short_scenarios["steady"])
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(venv, PaymentRoutingVectorEnv)
    assert venv.num_envs == 3 and venv.action_mode == "multidiscrete" and venv.observe_internal
    assert venv.spec is not None and venv.spec.id == env_id
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    expected = ENV_IDS[env_id] or "short_steady"
    assert venv.scenario.name == expected
    obs, _ = venv.reset(seed=0)
    single = gym.make(env_id, **kwargs).unwrapped
    o, _ = single.reset(seed=1)
    assert np.array_equal(obs[1], o)
    obs, *_ = venv.step(venv.action_space.sample())
    assert venv.observation_space.contains(obs)
    venv.close()


def test_make_vec_default_mode_uses_vector_entry_point() -> None:
    venv = gym.make_vec("payroute/Steady-v0", num_envs=2)
    assert isinstance(venv, PaymentRoutingVectorEnv)


def test_every_registration_has_the_vector_entry_point() -> None:
    for env_id in ENV_IDS:
        assert gym.spec(env_id).vector_entry_point == "payroute_env.vector_env:PaymentRoutingVectorEnv"
    assert payroute_env.__version__


# ------------------------------------------------------------------------------------------ misc API


def test_render_ansi_matches_single_env(short_scenarios: dict[str, Path]) -> None:
    path = short_scenarios["surge"]
    venv = PaymentRoutingVectorEnv(2, path, render_mode="ansi")
    single = PaymentRoutingEnv(path, render_mode="ansi")
    venv.reset(seed=4)
    single.reset(seed=5)
    action = venv.action_space.sample()
    venv.step(action)
    single.step(action[1])
    frames = venv.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    assert frames[1] == single.render()
    assert PaymentRoutingVectorEnv(2, path).render() is None


def test_errors(short_scenarios: dict[str, Path]) -> None:
    path = short_scenarios["surge"]
    venv = PaymentRoutingVectorEnv(3, path)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(venv.action_space.sample())
    with pytest.raises(RuntimeError, match="reset every environment"):
        venv.reset(options={"reset_mask": np.array([True, False, False])})
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.zeros(3, dtype=bool)})
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": [True, True, True]})
    with pytest.raises(ValueError, match="options"):
        venv.reset(options={"low": 0})
    with pytest.raises(ValueError, match="one seed per environment"):
        venv.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((2, venv.single_action_space.shape[0]), dtype=np.float32))
    with pytest.raises(ValueError, match="render_mode"):
        PaymentRoutingVectorEnv(2, path, render_mode="human")
    with pytest.raises(ValueError, match="num_envs"):
        PaymentRoutingVectorEnv(0, path)


def test_gymnasium_vector_wrappers_compose(short_scenarios: dict[str, Path]) -> None:
    """Gymnasium's vector wrappers see next-step autoresets and dict infos as they expect."""
    from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

    venv = PaymentRoutingVectorEnv(2, short_scenarios["steady"], action_mode="discrete")
    env = DictInfoToList(RecordEpisodeStatistics(venv))
    env.reset(seed=0)
    n_steps = venv.sim.params.n_steps
    returns = np.zeros(2)
    for t in range(n_steps):
        _, reward, _, truncated, infos = env.step(np.array([t % 25, (3 * t) % 25]))
        returns += reward
    assert truncated.all()
    for i in range(2):
        assert infos[i]["episode"]["l"] == n_steps
        assert infos[i]["episode"]["r"] == pytest.approx(returns[i])
        assert infos[i]["episode_kpis"]["arrived"] == infos[i]["arrived"] > 0
