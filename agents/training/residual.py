"""The training side of a residual policy: a vector env whose actions are corrections to a heuristic's.

See :mod:`agents.deciders.residual` for the idea and for the evaluation side (``ResidualPolicy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.deciders.policy import Policy
from agents.deciders.residual import check_residual, combine, make_base

__all__ = ["ResidualVecEnv"]


class ResidualVecEnv(VecEnvWrapper):
    """A continuous-action SB3 ``VecEnv`` whose actions are corrections to ``base``'s actions.

    ``base`` (a batched heuristic, or a heuristic's name for the env's scenario) is asked for its action on the
    last raw observation and forgets the memory of environments whose episode just ended, exactly as the
    evaluator drives it.
    """

    def __init__(self, venv: VecEnv, base: Policy | str, scale: float = 1.0) -> None:
        base_name = base if isinstance(base, str) else None
        if isinstance(base, str):  # a heuristic by name (RL Zoo's vec_env_wrapper), on the env's own scenario
            check_residual(base, scale)
            base = make_base(base, venv.get_attr("scenario")[0])
        if not isinstance(venv.action_space, spaces.Box):
            raise ValueError(f"a residual policy needs the continuous action mode; got {venv.action_space}")
        if base.action_mode != "continuous":
            raise ValueError(f"the residual's heuristic must give continuous actions; {base.name} does not")
        low = -np.ones(venv.action_space.shape, dtype=np.float32)
        super().__init__(venv, action_space=spaces.Box(low, -low, dtype=np.float32))
        self.base, self.base_name, self.scale = base, base_name, float(scale)
        self._obs: np.ndarray | None = None
        self._episode_start = np.ones(self.num_envs, dtype=bool)

    def reset(self) -> Any:
        obs = self.venv.reset()
        self.base.reset(self.num_envs)
        self._obs, self._episode_start = obs, np.ones(self.num_envs, dtype=bool)
        return obs

    def base_actions(self) -> np.ndarray:
        """What the heuristic would do now (``[num_envs, action_dim]``)."""
        if self._obs is None:
            raise RuntimeError("reset the environment before stepping it")
        action, _ = self.base.predict(self._obs, episode_start=self._episode_start, deterministic=True)
        return action

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(combine(self.base_actions(), actions, self.scale))

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._obs, self._episode_start = obs, np.asarray(dones, dtype=bool)
        return obs, rewards, dones, infos
