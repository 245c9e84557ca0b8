"""Record a Minari dataset from a payroute policy: a heuristic, a trained model, or either mixed with random
actions for coverage.

The episodes run in the Gymnasium environment of the scenario (its registered id for a built-in one,
``payroute/PaymentRouting-v0`` with ``scenario=PATH`` for a TOML file), with the policy's own action mode and
observation, so ``dataset.recover_environment()`` rebuilds exactly the environment that was recorded.
Episode ``i`` is reset with seed ``seed + i``; a random action replaces the policy's with probability
``random_share``, drawn from generators seeded with ``seed``: the same call records the same dataset.

Infos are not recorded: the last step's carries the episode's KPIs (a nested dict of another shape), which
Minari's fixed-layout info storage refuses. Everything in them follows from a replay of the recorded actions.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from minari.dataset.minari_dataset import parse_dataset_id

from agents.deciders import Policy, PolicyError, load_policy
from agents.evaluation.names import short_names, slug
from payroute_env import ENV_IDS, env_id_for
from payroute_env.scenario import BUILTIN_SCENARIOS, Scenario, ScenarioError, load_scenario

__all__ = ["AUTHOR", "DatasetError", "default_dataset_id", "make_recording_env", "record_dataset"]

AUTHOR = "payroute"


class DatasetError(ValueError):
    """A dataset that cannot be recorded; the message is one line naming the setting."""


def make_recording_env(scenario: str | Path, policy: Policy) -> gym.Env:
    """The Gymnasium environment a policy's episodes are recorded in (registered id, so Minari stores its spec)."""
    kwargs = {"action_mode": policy.action_mode, "observe_internal": policy.observe_internal}
    env_id = env_id_for(str(scenario))
    if ENV_IDS[env_id] is not None:  # a built-in scenario: its id says it all
        return gym.make(env_id, **kwargs)
    # a TOML file: by its absolute path, so that recover_environment works from any folder on this machine
    return gym.make(env_id, scenario=str(Path(scenario).resolve()), **kwargs)


def default_dataset_id(scenario: str | Path, policy: str, random_share: float) -> str:
    """``payroute/<scenario>/<policy>-v0``, ``<policy>-random<percent>-v0`` when random actions are mixed in
    (Minari's names take letters, digits, ``_`` and ``-``: ``-random10`` is a share of 0.1)."""
    name = str(scenario) if str(scenario) in BUILTIN_SCENARIOS else Path(scenario).stem
    mix = f"-random{round(100 * random_share)}" if random_share > 0 else ""
    return f"payroute/{_name(name)}/{_name(short_names([policy])[policy])}{mix}-v0"


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", slug(text))


def record_dataset(
    scenario: str | Path,
    policy: str | Path,
    *,
    episodes: int = 10,
    seed: int = 0,
    random_share: float = 0.0,
    dataset_id: str | None = None,
    root: str | Path | None = None,
    trust_model: bool = False,
) -> minari.MinariDataset:
    """Record ``episodes`` episodes of ``policy`` on ``scenario`` (seeds ``seed .. seed + episodes - 1``) as the
    Minari dataset ``dataset_id`` (default :func:`default_dataset_id`) under ``root`` (default: Minari's own,
    ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``); return it. ``trust_model``: a model file may run code
    as it loads (its pickles)."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise DatasetError(f"--episodes must be at least 1; got {episodes}")
    if not 0 <= seed <= 2**32 - episodes:  # Gymnasium's reset takes seeds numpy's generators accept
        raise DatasetError(f"--seed must be in [0, 2**32 - {episodes}]; got {seed}")
    if not 0.0 <= random_share <= 1.0:
        raise DatasetError(f"--random-share must be in [0, 1]; got {random_share:g}")
    if isinstance(root, str) and not root.strip():  # Path("") is the current folder: never what was meant
        raise DatasetError("--root is empty; name the datasets folder or leave it out")
    try:
        checked: Scenario = load_scenario(scenario)
        decider = load_policy(policy, checked, seed=seed, trust=trust_model)
    except (PolicyError, ScenarioError) as exc:
        raise DatasetError(str(exc)) from None
    dataset_id = dataset_id or default_dataset_id(scenario, str(policy), random_share)
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # Minari's parser raises TypeError on an id without -v<version>
        raise DatasetError(f"--dataset-id must read (namespace/)name-v<version>; got {dataset_id!r}") from None
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())  # where minari reads it, at each call
    if dataset_id in minari.list_local_datasets():
        raise DatasetError(f"dataset {dataset_id} exists already: pass another --dataset-id or delete it")

    env = make_recording_env(scenario, decider)
    collector = minari.DataCollector(env, record_infos=False)
    env.action_space.seed(seed)  # the random actions, and the coin that picks them, repeat with the seed
    coin = np.random.default_rng(seed)
    for episode in range(episodes):
        obs, _ = collector.reset(seed=seed + episode)
        decider.reset(1)
        state, start, done = None, np.ones(1, dtype=bool), False
        while not done:
            action, state = decider.predict(obs[None], state, episode_start=start, deterministic=True)
            action = np.asarray(action)[0]
            if random_share > 0 and coin.random() < random_share:
                action = env.action_space.sample()
            obs, _, terminated, truncated, _ = collector.step(action)
            start, done = np.zeros(1, dtype=bool), terminated or truncated
    mix = f", {random_share:.0%} of the actions random" if random_share > 0 else ""
    description = (
        f"payroute: {episodes} episodes of policy {policy} on scenario {checked.name} "
        f"(reset seeds {seed}..{seed + episodes - 1}{mix}). {checked.description}"
    )
    try:
        with warnings.catch_warnings():  # recover_environment() rebuilds env.spec: the registered id and kwargs above
            # recorded offline, on purpose without a permalink or an e-mail: Minari's reminders say nothing new
            warnings.filterwarnings("ignore", message="`(code_permalink|author_email)` is set to None")
            return collector.create_dataset(
                dataset_id=dataset_id,
                eval_env=env.spec,
                algorithm_name=str(policy),
                author=AUTHOR,
                code_permalink=None,  # recorded offline: no permalink to give
                description=description,
            )
    finally:
        collector.close()
