"""The memory a training run will need, estimated from its settings before anything is built.

A run holds its training environments and the periodic evaluation's, and the algorithm's buffer:
stable-baselines3's rollout buffer (``n_steps x n_envs`` rows of float32 observation, action and six
scalars, copied once more when it is flattened into minibatches) or its replay buffer (``buffer_size`` rows
of observation, next observation, action and three scalars). The networks themselves are small. A run beyond
the machine's memory is refused with one line naming the setting to lower (``payroute_env.memory``).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from agents.algorithms import ALGOS, algo_class
from payroute_env import actions, observations
from payroute_env.memory import MemoryLimitError, require, simulator_bytes

from .config import UsageError
from .mixture import split_envs, training_worlds

__all__ = ["check_training_memory", "training_memory"]

FLOAT = 4  # SB3's buffers store float32


def _setting(algo: str, config: dict[str, Any], name: str) -> Any:
    """A hyper-parameter of the run: the configured value, else the algorithm class's default."""
    if name in config["algo_kwargs"]:
        return config["algo_kwargs"][name]
    default = inspect.signature(algo_class(algo)).parameters.get(name)
    return None if default is None else default.default


def training_memory(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The run's peak memory, part by part: ``(what, bytes)``, each ``what`` naming the settings it grows with."""
    algo, n_envs = config["algo"], config["n_envs"]
    worlds = training_worlds(config["scenario"])  # one scenario, or a mixture's members sharing the environments
    sc = worlds.members[0]
    internal = bool(config["env_kwargs"].get("observe_internal", False))
    obs = observations.size(sc.n_banks, internal)
    space = actions.action_space(config["action_mode"], sc.n_banks)
    act = int(np.prod(space.shape)) if space.shape else 1
    periodic = config["periodic_eval_episodes"]

    def environments(n: int) -> int:
        shares = split_envs(worlds.weights, n)
        return sum(simulator_bytes(m, k, internal) for m, k in zip(worlds.members, shares, strict=True))

    parts = [
        (f"--n-envs {n_envs} training environments", environments(n_envs)),
        (f"eval_episodes {periodic} periodic evaluation environments", environments(periodic)),
    ]
    if ALGOS[algo].on_policy:
        n_steps = int(_setting(algo, config, "n_steps"))
        row = obs + act + 6  # observation, action; reward, return, start flag, value, log-probability, advantage
        policy_kwargs = config["policy_kwargs"] if isinstance(config["policy_kwargs"], dict) else {}
        if algo == "recurrent_ppo":  # hidden and cell states of the actor's and the critic's LSTM, per step
            hidden = int(policy_kwargs.get("lstm_hidden_size", 256)) * int(policy_kwargs.get("n_lstm_layers", 1))
            row += 4 * hidden
        parts.append((f"rollout buffer of n_steps {n_steps} x --n-envs {n_envs}", 2 * n_steps * n_envs * row * FLOAT))
    else:
        buffer_size = int(_setting(algo, config, "buffer_size"))
        copies = 1 if _setting(algo, config, "optimize_memory_usage") else 2  # next observations kept apart
        row = copies * obs + act + 3  # observations, action; reward, done, timeout
        parts.append((f"replay buffer of buffer_size {buffer_size}", buffer_size * row * FLOAT))
    return parts


def check_training_memory(config: dict[str, Any]) -> None:
    """Refuse (``UsageError``) a run that would need more memory than this machine has available."""
    parts = training_memory(config)
    largest = max(parts, key=lambda part: part[1])[0]
    if largest.startswith("replay"):
        advice = "lower buffer_size (--hyperparams buffer_size=...)"
    elif largest.startswith("rollout"):
        advice = "lower --n-envs or n_steps (--hyperparams n_steps=...)"
    elif largest.startswith("eval_episodes"):
        advice = "lower eval_episodes (--hyperparams eval_episodes=...)"
    else:
        advice = "lower --n-envs"
    try:
        require(parts, advice)
    except MemoryLimitError as exc:
        raise UsageError(str(exc)) from None
