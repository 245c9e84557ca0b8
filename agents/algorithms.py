"""The stable-baselines3 algorithms payroute knows: their classes and the action modes they can drive.

Shared by both rooms that meet SB3 models: ``agents.deciders`` loads a saved model with its class and
``agents.training`` builds one. The class is imported by name when first asked for (``sb3_contrib`` holds
RecurrentPPO), so that naming an algorithm does not load torch.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ALGOS", "COMPATIBLE_MODES", "AlgoSpec", "AlgorithmError", "algo_class", "load_model"]


class AlgorithmError(ValueError):
    """An algorithm name payroute does not know; the message names the choices."""


@dataclass(frozen=True)
class AlgoSpec:
    """How to build an algorithm: its class location and the action mode it needs."""

    module: str
    cls: str
    action_mode: str
    on_policy: bool


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec("stable_baselines3", "PPO", "continuous", True),
    "a2c": AlgoSpec("stable_baselines3", "A2C", "continuous", True),
    "sac": AlgoSpec("stable_baselines3", "SAC", "continuous", False),
    "td3": AlgoSpec("stable_baselines3", "TD3", "continuous", False),
    "dqn": AlgoSpec("stable_baselines3", "DQN", "discrete", False),
    # the platform sees only partial state: a recurrent policy can remember what it saw
    "recurrent_ppo": AlgoSpec("sb3_contrib", "RecurrentPPO", "continuous", True),
}
# which action modes each algorithm can drive
COMPATIBLE_MODES: dict[str, tuple[str, ...]] = {
    "ppo": ("continuous", "multidiscrete", "discrete"),
    "a2c": ("continuous", "multidiscrete", "discrete"),
    "sac": ("continuous",),
    "td3": ("continuous",),
    "dqn": ("discrete",),
    "recurrent_ppo": ("continuous", "multidiscrete", "discrete"),
}


def algo_class(name: str) -> type:
    """The SB3 class of algorithm ``name``."""
    if name not in ALGOS:
        raise AlgorithmError(f"unknown algorithm {name!r}; choose from {', '.join(ALGOS)}")
    spec = ALGOS[name]
    return getattr(importlib.import_module(spec.module), spec.cls)


def load_model(name: str, path: str | Path, **kwargs: Any) -> Any:
    """``algo_class(name).load(path, **kwargs)``, without SB3's false alarm about n-step returns.

    A model trained with ``n_steps > 1`` (SAC, TD3, DQN) saves the ``NStepReplayBuffer`` SB3 chose for it, and
    on loading SB3 warns that ``n_steps`` "is ignored because a custom replay_buffer_class was passed",
    although the loaded model does use n-step returns (its buffer keeps ``n_steps`` and ``gamma``).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`n_steps=\d+` is ignored .* \(`NStepReplayBuffer`\)")
        return algo_class(name).load(str(path), **kwargs)
