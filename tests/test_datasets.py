"""Minari datasets: ``python -m agents.datasets`` records any policy's episodes; Minari reads them back, rebuilds
the environment, and a replay of the recorded actions gives every recorded transition again."""

from __future__ import annotations

from pathlib import Path

import minari
import numpy as np
import pytest

from agents.datasets import DatasetError, record_dataset
from agents.datasets.__main__ import main
from agents.deciders import load_policy
from payroute_env import BUILTIN_SCENARIOS, ENV_IDS


@pytest.fixture
def datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))  # never the user's ~/.minari
    return root


def replay_matches(dataset: minari.MinariDataset, first_seed: int) -> int:
    """Replay every episode's actions in the recovered env from its reset seed; return the steps checked."""
    env = dataset.recover_environment()
    checked = 0
    for i, episode in enumerate(dataset.iterate_episodes()):
        obs, _ = env.reset(seed=first_seed + i)
        np.testing.assert_array_equal(obs, episode.observations[0])
        for t, action in enumerate(episode.actions):
            obs, reward, terminated, truncated, _ = env.step(action)
            np.testing.assert_array_equal(obs, episode.observations[t + 1])
            assert reward == episode.rewards[t]
            assert terminated == episode.terminations[t] and truncated == episode.truncations[t]
            checked += 1
        assert episode.truncations[-1]  # the episode ran to its end
    return checked


def test_a_recorded_mix_of_heuristic_and_random_actions_replays_step_for_step(tiny: str, datasets: Path) -> None:
    dataset = record_dataset(tiny, "sre_throttle", episodes=2, seed=7, random_share=0.3)
    assert dataset.spec.dataset_id == "payroute/tiny/sre_throttle-random30-v0"
    loaded = minari.load_dataset(dataset.spec.dataset_id)
    meta = loaded.storage.metadata
    assert loaded.spec.total_episodes == 2 and meta["algorithm_name"] == "sre_throttle"
    assert meta["author"] == {"payroute"} or meta["author"] == "payroute"
    assert "sre_throttle" in meta["description"] and "7..8" in meta["description"]
    assert replay_matches(loaded, first_seed=7) == loaded.spec.total_steps > 0
    # about 30% of the actions are random: the heuristic, fed the recorded observations, would have sent the
    # rest (its memory depends on the observations alone)
    policy = load_policy("sre_throttle", tiny)
    ours, steps = 0, 0
    for episode in loaded.iterate_episodes():
        policy.reset(1)
        state, start = None, np.ones(1, dtype=bool)
        for obs, action in zip(episode.observations[:-1], episode.actions, strict=True):
            own, state = policy.predict(obs[None], state, episode_start=start, deterministic=True)
            ours += np.array_equal(np.asarray(own, dtype=action.dtype)[0], action)
            steps, start = steps + 1, np.zeros(1, dtype=bool)
    assert 0.6 < ours / steps < 0.8


def test_the_same_call_records_the_same_dataset(tiny: str, datasets: Path) -> None:
    a = record_dataset(tiny, "random", episodes=1, seed=3, random_share=0.5, dataset_id="payroute/tiny/a-v0")
    b = record_dataset(tiny, "random", episodes=1, seed=3, random_share=0.5, dataset_id="payroute/tiny/b-v0")
    (ea,), (eb,) = list(a.iterate_episodes()), list(b.iterate_episodes())
    np.testing.assert_array_equal(ea.actions, eb.actions)
    np.testing.assert_array_equal(ea.observations, eb.observations)


@pytest.mark.parametrize("scenario", BUILTIN_SCENARIOS)
def test_every_builtin_world_recovers_its_registered_env(datasets: Path, scenario: str) -> None:
    dataset = record_dataset(scenario, "aimd", episodes=1, seed=11)
    env = dataset.recover_environment()
    assert ENV_IDS[env.spec.id] == scenario
    assert env.action_space == dataset.spec.action_space
    assert replay_matches(dataset, first_seed=11) == dataset.spec.total_steps


def test_the_command_line_records_and_refuses_in_one_line(tiny: str, datasets: Path, capsys) -> None:
    assert main(["--scenario", tiny, "--policy", "admit_all", "--episodes", "1"]) == 0
    assert "recorded 1 episodes" in capsys.readouterr().out
    assert "payroute/tiny/admit_all-v0" in minari.list_local_datasets()
    for argv, message in [
        (["--scenario", tiny, "--policy", "admit_all", "--episodes", "1"], "exists already"),
        (["--episodes", "0"], "--episodes must be at least 1"),
        (["--random-share", "1.5"], "--random-share must be in [0, 1]"),
        (["--root", ""], "--root is empty"),
        (["--policy", "nope"], "unknown policy 'nope'"),
        (["--scenario", "nowhere"], "nowhere"),
        (["--dataset-id", "a b"], "--dataset-id must read"),
        (["--dataset-id", "payroute/no-version"], "--dataset-id must read"),  # Minari raised a TypeError
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)


def test_bad_share_is_refused_before_anything_runs(datasets: Path) -> None:
    with pytest.raises(DatasetError, match="random-share"):
        record_dataset("steady", "admit_all", random_share=-0.1)
    assert not datasets.exists()
