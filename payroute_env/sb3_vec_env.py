"""A Stable-Baselines3 ``VecEnv`` over the batched payroute core, and ``make_sb3_vec_env`` to build it.

:class:`PaymentRoutingSB3VecEnv` steps ``num_envs`` environments as one batch through the
:class:`~payroute_env.simulator.Simulator`; it does what SB3's ``DummyVecEnv`` over ``num_envs`` single
:class:`~payroute_env.PaymentRoutingEnv` does, without a Python loop over environments:

* SB3's same-step reset: when an episode ends, ``step_wait`` returns the next episode's first observation and
  the last one in ``infos[i]["terminal_observation"]``, with ``infos[i]["TimeLimit.truncated"] = True`` (episodes
  end only by truncation) and ``infos[i]["episode_kpis"]``; the next episode continues the environment's own
  random stream (a single environment's ``reset()`` without a seed).
* Seeding as in SB3: ``seed(s)`` makes the next ``reset()`` seed environment ``i`` with ``s + i``.
* Infos of environments whose episode goes on are empty dicts, which keeps a step cheap. With
  ``info_counters=True`` every info also carries the integer episode counters (and
  ``TimeLimit.truncated = False``), exactly as ``DummyVecEnv`` over single environments would.

``make_sb3_vec_env`` wraps the adapter in SB3's ``VecMonitor`` so SB3 logs episode returns and lengths.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from . import core, render
from .metrics import COUNTER_KEYS, batch_counters
from .scenario import Scenario
from .simulator import RewardWeights, Simulator

__all__ = ["PaymentRoutingSB3VecEnv", "make_sb3_vec_env"]

# Attributes that are the same for every environment of the batch (``get_attr`` answers them for any index).
SHARED_ATTRS: tuple[str, ...] = (
    "scenario",
    "action_mode",
    "observe_internal",
    "beta",
    "lost_weight",
    "render_mode",
    "params",
    "n_banks",
    "observation_space",
    "action_space",
    "metadata",
    "spec",
)
# Attributes ``set_attr`` may change (for all environments at once: they are shared).
SETTABLE_ATTRS: tuple[str, ...] = ("beta", "lost_weight")
# Methods ``env_method`` can call, per environment.
ENV_METHODS: tuple[str, ...] = ("render", "counters", "episode_kpis")
RENDER_MODES: tuple[str, ...] = ("ansi", "rgb_array")


class PaymentRoutingSB3VecEnv(RewardWeights, VecEnv):
    """``num_envs`` payroute environments as one SB3 ``VecEnv`` (see the module docstring).

    Options are those of :class:`~payroute_env.PaymentRoutingEnv`, shared by all environments, plus
    ``info_counters`` (add the episode counters to every step's infos; costs a Python loop per step).
    Observations are ``float32 [num_envs, D]``, rewards ``float32 [num_envs]``, dones ``bool [num_envs]``.
    """

    spec = None

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | Path | Scenario = "double11_2013",
        action_mode: str = "continuous",
        observe_internal: bool = False,
        beta: float = 0.1,
        lost_weight: float = 1.0,
        render_mode: str | None = None,
        info_counters: bool = False,
    ) -> None:
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be None, 'ansi' or 'rgb_array'; got {render_mode!r}")
        if not isinstance(info_counters, bool | np.bool_):  # "maybe" from a config file must not mean True
            raise ValueError(f"info_counters must be True or False; got {info_counters!r}")
        self.sim = Simulator(scenario, num_envs, action_mode, observe_internal, beta, lost_weight)
        self.num_envs = self.sim.num_envs
        self.render_mode = render_mode
        self._timelines = None  # the frames' failed-rate timeline, kept only when frames are drawn
        if render_mode == "rgb_array":
            self._timelines = render.FailedRateTimelines(self.num_envs, self.sim.params.n_steps)
        self.info_counters = bool(info_counters)
        self._actions: np.ndarray | None = None
        self._entropy = np.random.default_rng()
        super().__init__(self.sim.num_envs, self.sim.single_observation_space, self.sim.single_action_space)
        self.metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}
        self.closed = False

    # -------------------------------------------------------------------- shared environment attributes

    @property
    def scenario(self) -> Scenario:
        return self.sim.scenario

    @property
    def action_mode(self) -> str:
        return self.sim.action_mode

    @property
    def observe_internal(self) -> bool:
        return self.sim.observe_internal

    @property
    def params(self) -> core.CoreParams:
        return self.sim.params

    @property
    def n_banks(self) -> int:
        return self.sim.n_banks

    # ------------------------------------------------------------------------------------ VecEnv API

    def reset(self) -> np.ndarray:
        """Start new episodes in every environment, seeded by the last ``seed()`` call if any."""
        if any(self._options):
            raise ValueError(f"reset takes no options; got {self._options}")
        obs = self.sim.reset(list(self._seeds), entropy=self._entropy)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = _info_dicts(batch_counters(self.sim.state), range(self.num_envs))
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("call step_async() before step_wait()")
        sim = self.sim
        obs, reward, dones, _ = sim.step(self._actions)
        self._actions = None
        if self.info_counters:
            infos = _info_dicts(batch_counters(sim.state), range(self.num_envs))
            for info in infos:
                info["TimeLimit.truncated"] = False
        else:
            infos = [{} for _ in range(self.num_envs)]
        if dones.any():
            finished = np.flatnonzero(dones)
            for i in finished:
                info = infos[i]
                info["episode_kpis"] = sim.kpis(int(i))
                info["TimeLimit.truncated"] = True
                info["terminal_observation"] = obs[i].copy()
            obs = sim.reset(mask=dones)  # the next episode of each finished environment's own stream
            fresh = _info_dicts(batch_counters(sim.state), finished)
            for i, info in zip(finished, fresh, strict=True):
                self.reset_infos[i] = info
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.closed = True

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attributes shared by all environments (``SHARED_ATTRS``), one copy per index."""
        idx = self._indices(indices)
        if attr_name not in SHARED_ATTRS:
            raise AttributeError(
                f"{type(self).__name__} has no per-environment attribute {attr_name!r}; "
                f"available: {', '.join(SHARED_ATTRS)}"
            )
        value = getattr(self, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set a shared option (``beta``, ``lost_weight``); it applies to every environment of the batch."""
        idx = self._indices(indices)
        if attr_name not in SETTABLE_ATTRS:
            raise AttributeError(
                f"{type(self).__name__} cannot set {attr_name!r}; settable attributes: {', '.join(SETTABLE_ATTRS)}"
            )
        if sorted(idx) != list(range(self.num_envs)):
            raise ValueError(f"{attr_name!r} is shared by all environments of the batch; set it without indices")
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Per-environment ``render`` (text, an RGB frame or None, as ``render_mode``), ``counters`` and
        ``episode_kpis`` (KPIs so far)."""
        idx = self._indices(indices)
        if method_name not in ENV_METHODS:
            raise AttributeError(
                f"{type(self).__name__} has no environment method {method_name!r}; available: {', '.join(ENV_METHODS)}"
            )
        if method_args or method_kwargs:
            raise TypeError(f"{method_name}() takes no arguments")
        if self.sim.state is None:
            raise RuntimeError(f"call reset() before {method_name}()")
        if method_name == "render":
            if self.render_mode is None:
                return [None for _ in idx]
            draw = self._timelines.frame if self.render_mode == "rgb_array" else render.ansi
            return [draw(self.params, self.sim.state, i) for i in idx]
        if method_name == "counters":
            return [self.sim.counters(i) for i in idx]
        return [self.sim.kpis(i) for i in idx]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """No environment is wrapped (there are no per-environment ``gymnasium.Env`` objects)."""
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Every environment's RGB frame (``render_mode="rgb_array"``), as SB3's video recorder asks for them."""
        if self.render_mode != "rgb_array":
            warnings.warn(f"The render mode is {self.render_mode}; images need render_mode='rgb_array'.", stacklevel=2)
            return [None for _ in range(self.num_envs)]
        return self.env_method("render")

    def render(self, mode: str | None = None) -> str | np.ndarray | None:  # type: ignore[override]
        """The dashboards of every environment's last step: with ``render_mode="ansi"`` the texts one after
        another, with ``"rgb_array"`` the frames tiled in a grid (SB3's ``VecEnv.render``)."""
        mode = mode or self.render_mode
        if mode != self.render_mode or mode not in RENDER_MODES:
            warnings.warn(
                f"render({mode!r}) needs render_mode={mode!r} at construction (got {self.render_mode!r})",
                stacklevel=2,
            )
            return None
        if mode == "rgb_array":
            return super().render(mode)
        texts = self.env_method("render")
        return "".join(f"[env {i}] {text}" for i, text in enumerate(texts))

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        idx = [int(i) for i in self._get_indices(indices)]
        for i in idx:
            if not -self.num_envs <= i < self.num_envs:
                raise IndexError(f"environment index {i} out of range for {self.num_envs} environments")
        return [i % self.num_envs for i in idx]


def _info_dicts(counters: dict[str, np.ndarray], indices: Any) -> list[dict[str, Any]]:
    """One ``metrics.step_counters``-style dict of Python ints per index."""
    columns = [counters[k].tolist() for k in COUNTER_KEYS]
    return [{k: col[i] for k, col in zip(COUNTER_KEYS, columns, strict=True)} for i in indices]


def make_sb3_vec_env(
    scenario: str | Path | Scenario = "double11_2013",
    n_envs: int = 1,
    seed: int | None = None,
    action_mode: str = "continuous",
    observe_internal: bool = False,
    monitor: bool = True,
    **kwargs: Any,
) -> VecEnv:
    """A :class:`PaymentRoutingSB3VecEnv` of ``n_envs`` environments, wrapped in ``VecMonitor`` by default.

    ``seed`` seeds environment ``i`` with ``seed + i`` at the first ``reset()``; ``kwargs`` go to the adapter
    (``beta``, ``lost_weight``, ``render_mode``, ``info_counters``).
    """
    env: VecEnv = PaymentRoutingSB3VecEnv(
        n_envs, scenario, action_mode=action_mode, observe_internal=observe_internal, **kwargs
    )
    if seed is not None:
        env.seed(seed)
    if monitor:
        env = VecMonitor(env)
    return env
