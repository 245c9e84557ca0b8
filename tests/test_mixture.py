"""Training on a mixture of worlds (agents.training.mixture): the file, the share of environments, the
concatenated VecEnv (each member as it would run alone) and train.py end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evaluate
import train
from agents.analysis.reward_spread import main as reward_spread_main
from agents.analysis.reward_spread import reward_spread
from agents.deciders import load_policy
from agents.studies.spec import StudyError, load_study
from agents.training import TrainRequest, UsageError, resolve_config
from agents.training.mixture import ConcatVecEnv, MixtureError, split_envs, training_worlds
from agents.training.run import make_env
from payroute_env.sb3_vec_env import make_sb3_vec_env

ROOT = Path(__file__).resolve().parents[1]

QUIET = """
extends = "steady"
name = "tiny_quiet"
description = "the first 150 seconds of an ordinary evening"
end_s = 150.0
"""


def _mixture(folder: Path, members: str) -> str:
    path = folder / "mix.toml"
    path.write_text(f'name = "mix"\ndescription = "two short worlds"\n{members}')
    return str(path)


@pytest.fixture()
def mix(tiny: str, tmp_path: Path) -> str:
    """``tiny`` (weight 2) and ``tiny_quiet`` (weight 1), files relative to the mixture."""
    (tmp_path / "quiet.toml").write_text(QUIET)
    members = '[[members]]\nscenario = "tiny.toml"\nweight = 2\n\n[[members]]\nscenario = "quiet.toml"\nweight = 1\n'
    return _mixture(tmp_path, members)


def test_the_shipped_generalist_mixture_loads_with_six_banks_in_one_order() -> None:
    worlds = training_worlds(ROOT / "agents" / "scenarios" / "generalist_mix.toml")
    names = [m.name for m in worlds.members]
    assert names[0] == "wide_fragile_icbc_cmb_boc" and "steady" in names and "outage_drill" in names
    assert "wide_fragile_ccb_cib_psbc" not in names  # the held-out family stays out of training
    assert {tuple(b.name for b in m.banks) for m in worlds.members} == {tuple(b.name for b in worlds.members[0].banks)}
    assert split_envs(worlds.weights, 16) == [6, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("name", ["generalist_mix_scaled", "generalist_mix_loud"])
def test_the_scaled_mixtures_keep_the_held_out_family_out_and_scale_only_the_quiet_nights(name: str) -> None:
    worlds = training_worlds(ROOT / "agents" / "scenarios" / f"{name}.toml")
    names = [m.name for m in worlds.members]
    plain = training_worlds(ROOT / "agents" / "scenarios" / "generalist_mix.toml")
    assert names == [m.name for m in plain.members]  # the same worlds, only louder: the held-out family stays out
    assert worlds.reward_scales is not None
    scale = dict(zip(names, worlds.reward_scales, strict=True))
    assert scale["steady"] > scale["double11_2016"] > 1 and scale["wide_fragile_icbc_cmb_boc"] == 1


def test_a_plain_scenario_is_a_mixture_of_one(tiny: str) -> None:
    worlds = training_worlds(tiny)
    assert worlds.is_single and worlds.name == "tiny" and worlds.weights == (1.0,)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=8), st.integers(1, 64))
def test_environments_are_shared_by_weight_and_every_member_gets_one(weights: list[float], n: int) -> None:
    if n < len(weights):
        with pytest.raises(MixtureError, match="fewer than the mixture's"):
            split_envs(weights, n)
        return
    counts = split_envs(weights, n)
    assert sum(counts) == n and min(counts) >= 1
    quotas = [n * w / sum(weights) for w in weights]
    for count, quota in zip(counts, quotas, strict=True):
        if quota >= 1:  # no member was topped up from it beyond one environment
            assert abs(count - quota) < len(weights)


def test_split_is_exact_when_the_weights_divide_the_environments() -> None:
    assert split_envs([2, 1, 1], 8) == [4, 2, 2]
    assert split_envs([1, 1, 1], 7) == [3, 2, 2]  # ties go to the earlier member
    assert split_envs([100, 1, 1], 3) == [1, 1, 1]


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ("", "members must be a non-empty list"),
        ('[[members]]\nscenario = "double11_2013"\nweight = 0\n', r"members\[0\]\.weight = 0: expected a positive"),
        ('[[members]]\nscenario = "double11_2013"\nweight = true\n', r"weight = True: expected a positive number"),
        ('[[members]]\nscenario = "steady"\nreward_scale = -2\n', r"\[0\]\.reward_scale = -2: expected a positive"),
        ('[[members]]\nscenario = "steady"\nreward_scale = "x"\n', r"reward_scale = 'x': expected a positive number"),
        ('[[members]]\nscenario = "steady"\nreward_scale = nan\n', r"reward_scale = nan: expected a positive number"),
        ('[[members]]\nscenario = "no_such_world"\n', r"members\[0\]\.scenario: .*no_such_world"),
        ('[[members]]\nscenario = "steady"\nshare = 2\n', r"keys scenario, weight, reward_scale, got scenario, share"),
        ('[[members]]\nscenario = "steady"\n\n[[members]]\nscenario = "steady"\n', "steady listed twice"),
        ('[[members]]\nscenario = "mix.toml"\n', "is itself a mixture"),
        ('seed = 3\n[[members]]\nscenario = "steady"\n', "unknown key.*seed"),
    ],
)
def test_a_bad_mixture_is_refused_naming_the_member_and_field(members: str, message: str, tmp_path: Path) -> None:
    path = _mixture(tmp_path, members) if members else _mixture(tmp_path, "members = []\n")
    with pytest.raises(MixtureError, match=message):
        training_worlds(path)


def test_members_with_other_banks_are_refused(tmp_path: Path) -> None:
    """steady with its banks in reverse order: a valid scenario, but not the same observation space."""
    head, *banks = (ROOT / "payroute_env" / "scenarios" / "steady.toml").read_text().split("[[banks]]")
    reversed_text = head.replace('name = "steady"', 'name = "steady_reversed"') + "".join(
        f"[[banks]]{block.rstrip()}\n\n" for block in reversed(banks)
    )
    (tmp_path / "reversed.toml").write_text(reversed_text)
    assert training_worlds(tmp_path / "reversed.toml").members[0].banks[0].name == "PSBC"
    path = _mixture(tmp_path, '[[members]]\nscenario = "steady"\n[[members]]\nscenario = "reversed.toml"\n')
    with pytest.raises(MixtureError, match="same banks in the same order"):
        training_worlds(path)


def _config(scenario: str, **extra: object) -> dict:
    request = TrainRequest(scenario=scenario, n_envs=3, hyperparams=["eval_episodes=2", "normalize=false"], **extra)
    return resolve_config(request)


def test_the_concatenated_env_steps_each_member_exactly_as_it_runs_alone(mix: str, tmp_path: Path) -> None:
    """Environments 0-1 play tiny seeded 7, 8; environment 2 plays tiny_quiet seeded 9: bit for bit the
    trajectories of the members built alone, through their different episode lengths and autoresets."""
    config = _config(mix)
    env = make_env(config, 3, seed=7, training=True)
    assert isinstance(env.venv, ConcatVecEnv) and env.num_envs == 3  # under one VecMonitor
    assert [s.name for s in env.get_attr("scenario")] == ["tiny", "tiny", "tiny_quiet"]
    assert [s.name for s in env.get_attr("scenario", [2, 0])] == ["tiny_quiet", "tiny"]
    members = training_worlds(mix).members
    kwargs = config["env_kwargs"]
    alone = [make_sb3_vec_env(w, n, seed=s, **kwargs) for w, n, s in zip(members, (2, 1), (7, 9), strict=True)]
    obs = env.reset()
    np.testing.assert_array_equal(obs, np.concatenate([a.reset() for a in alone]))
    rng = np.random.default_rng(0)
    finished = [0, 0, 0]
    for _ in range(70):  # tiny ends after 40 steps, tiny_quiet after 30: both reset at least once
        actions = rng.uniform(0, 1, (3, *env.action_space.shape)).astype(np.float32)
        got = env.step(actions)
        want = [a.step(part) for a, part in zip(alone, (actions[:2], actions[2:]), strict=True)]
        for k in range(3):
            np.testing.assert_array_equal(got[k], np.concatenate([w[k] for w in want]))
        infos = [info for w in want for info in w[3]]
        for i, (mine, theirs) in enumerate(zip(got[3], infos, strict=True)):
            assert mine.keys() == theirs.keys()
            if "episode_kpis" in mine:
                finished[i] += 1
                assert mine["episode_kpis"] == theirs["episode_kpis"]
    assert finished[0] >= 1 and finished[2] >= 2
    kpis = env.env_method("episode_kpis", indices=[2])
    assert kpis == alone[1].env_method("episode_kpis")


def test_a_reward_scale_multiplies_that_members_training_rewards_only(mix: str) -> None:
    """tiny_quiet's rewards count 4 times in training; the episode statistics and evaluation stay unscaled."""
    text = Path(mix).read_text()
    assert training_worlds(mix).reward_scales is None  # no scale given: the rewards pass through untouched
    scaled = str(Path(mix).with_name("scaled.toml"))
    Path(scaled).write_text(text.replace("weight = 1\n", "weight = 1\nreward_scale = 4\n"))
    assert training_worlds(scaled).reward_scales == (1.0, 4.0)
    envs = {
        (path, training): make_env(_config(path), 3, seed=7, training=training)
        for path in (mix, scaled)
        for training in (True, False)
    }
    for env in envs.values():
        env.reset()
    rng = np.random.default_rng(1)
    returns = {key: [] for key in envs}
    for _ in range(45):  # past tiny_quiet's 30-step episode
        actions = rng.uniform(-1, 1, (3, *envs[mix, True].action_space.shape)).astype(np.float32)
        steps = {key: env.step(actions) for key, env in envs.items()}
        plain = steps[mix, True][1]
        assert (plain != 0).any()
        np.testing.assert_array_equal(steps[scaled, True][1], plain * np.array([1, 1, 4], dtype=plain.dtype))
        np.testing.assert_array_equal(steps[scaled, False][1], plain)  # evaluation: unscaled
        for key, (_, _, _, infos) in steps.items():
            returns[key] += [info["episode"]["r"] for info in infos if "episode" in info]
    assert returns[mix, True] and len(set(map(len, returns.values()))) == 1
    for key in returns:  # VecMonitor sits under the scaling: the logged returns are the world's own
        assert returns[key] == returns[mix, True]


def test_a_quiet_evening_speaks_far_more_softly_than_a_surge_in_the_training_rewards() -> None:
    """The measurement behind generalist_mix_scaled's reward scales (docs/TRAINING.md)."""
    (surge,) = reward_spread("double11_2013", "success_rate_router", episodes=2)
    (quiet,) = reward_spread("steady", "success_rate_router", episodes=2)
    assert (surge.steps, quiet.steps) == (744, 360)
    assert 0 < quiet.step_std < surge.step_std / 10
    assert surge.return_mean < quiet.return_mean < 0  # rewards are minus the cost of failed payments
    with pytest.raises(ValueError, match="episodes = 1: expected at least 2"):
        reward_spread("steady", "admit_all", episodes=1)


def test_reward_spread_prints_each_member_with_its_scale(mix: str, capsys) -> None:
    scaled = Path(mix).with_name("scaled.toml")
    scaled.write_text(Path(mix).read_text().replace("weight = 1\n", "weight = 1\nreward_scale = 4\n"))
    assert reward_spread_main([str(scaled), "--policy", "admit_all", "--episodes", "2"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [(r[0], r[5]) for r in rows] == [("| tiny", "1"), ("| tiny_quiet", "4")]
    assert float(rows[1][6].rstrip(" |")) == pytest.approx(4 * float(rows[1][2]), abs=2.5e-4)  # printed to 4 places
    assert reward_spread_main([str(scaled), "--policy", "nope"]) == 2
    assert "policy 'nope': expected a heuristic" in capsys.readouterr().err


def test_evaluate_py_refuses_a_mixture_naming_what_it_is(mix: str, capsys) -> None:
    assert evaluate.main(["--scenario", mix, "--policies", "admit_all", "--episodes", "1", "--no-bound"]) == 2
    assert "is a mixture of worlds, for train.py only; name one of its members" in capsys.readouterr().err


def test_a_mixture_needs_an_environment_per_member(mix: str) -> None:
    with pytest.raises(UsageError, match="--n-envs 1 is fewer than the mixture's 2 members"):
        resolve_config(TrainRequest(scenario=mix, n_envs=1))
    with pytest.raises(UsageError, match="eval_episodes 1 is fewer than the mixture's 2 members"):
        resolve_config(TrainRequest(scenario=mix, n_envs=2, hyperparams=["eval_episodes=1"]))


def test_train_py_trains_on_a_mixture_and_tables_each_member(mix: str, tmp_path: Path, capsys) -> None:
    """With a reward scale on one member, through periodic evaluations (whose wrappers must match training's)."""
    Path(mix).write_text(Path(mix).read_text().replace("weight = 1\n", "weight = 1\nreward_scale = 4\n"))
    out = tmp_path / "runs"
    argv = ["--scenario", mix, "--timesteps", "192", "--n-envs", "3", "--out", str(out), "--eval-freq", "96"]
    argv += ["--eval-episodes", "2", "--no-progress", "--hyperparams", "n_steps=32", "batch_size=48",
             "eval_episodes=2", "--residual", "success_rate_router"]  # fmt: skip
    assert train.main(argv) == 0
    printed = capsys.readouterr().out
    assert "tiny (member of mix)" in printed and "tiny_quiet (member of mix)" in printed
    run = out / "ppo-mix-seed0"
    assert json.loads((run / "config.json").read_text())["scenario_name"] == "mix"
    for member in ("tiny", "tiny_quiet"):
        results = json.loads((run / "evaluation" / member / "results.json").read_text())
        assert results["scenario"] == member
        assert str(run / "model.zip") in [p["name"] for p in results["policies"]]
    # the model is one policy for any member world, its residual heuristic rebuilt for the world it meets
    policy = load_policy(run, ROOT / "payroute_env" / "scenarios" / "steady.toml")
    assert policy.name.endswith("model.zip")


def test_a_study_may_train_on_a_mixture(mix: str, tmp_path: Path) -> None:
    study = tmp_path / "study.yml"
    text = f"name: s\nalgorithms: [ppo]\ntrain:\n  scenarios: [{mix}]\n  seeds: [0]\n  timesteps: 64\n"
    study.write_text(text + "evaluate:\n  worlds: [double11_2013]\n  episodes: 1\n")
    assert load_study(study).scenarios == (mix,)
    study.write_text(text.replace(mix, str(tmp_path / "missing.toml")) + "evaluate:\n  worlds: [steady]\n")
    with pytest.raises(StudyError, match="train.scenarios"):
        load_study(study)
