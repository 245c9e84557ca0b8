"""``PaymentRoutingVectorEnv``: ``num_envs`` payroute environments in one set of arrays (Gymnasium ``VectorEnv``).

The environments are advanced together by one :class:`~payroute_env.simulator.Simulator` (the batched core), not
by a Python loop over single environments. Environment ``i`` of a vector environment reset with ``seed=s`` follows
exactly, bit for bit, the trajectory of a single :class:`~payroute_env.PaymentRoutingEnv` reset with ``seed=s + i``,
across episode ends: an autoreset continues the environment's own random stream, as a single environment's
``reset()`` without a seed does.

Autoreset follows Gymnasium's default ``AutoresetMode.NEXT_STEP`` (``metadata["autoreset_mode"]``): the ``step``
after an environment's last step ignores that environment's action, resets it and returns its first observation
with reward 0 and ``terminated = truncated = False``.

Infos are Gymnasium vector infos (a dict of arrays, each key ``k`` with a boolean mask ``_k`` of the environments
that have it), the same as ``SyncVectorEnv`` over single environments produces:

* every ``reset`` and ``step``: the integer episode counters ``arrived``, ``succeeded``, ``lost``, ``in_flight``,
  ``attempts``, ``failed_attempts`` (``int64 [num_envs]``; after ``reset`` with ``options["reset_mask"]`` only the
  reset environments are marked);
* the step that ends an episode: ``episode_kpis``, a dict of arrays (nested dicts for per-bank figures) with the
  mask ``_episode_kpis``; see :func:`payroute_env.metrics.episode_kpis`.

Create it with ``gymnasium.make_vec("payroute/Double11-2013-v0", num_envs=1024,
vectorization_mode="vector_entry_point", action_mode="discrete")`` or directly. That mode takes the
environment's own options only; per-environment wrappers (``max_episode_steps``, ``wrappers=[...]``) need
``vectorization_mode="sync"``, which steps single environments one by one (Gymnasium's rule for vector entry
points).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import core, render
from .metrics import batch_counters
from .scenario import Scenario
from .simulator import RewardWeights, Simulator

__all__ = ["PaymentRoutingVectorEnv"]


def seed_list(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None]:
    """Gymnasium's vector seeding: ``None`` for all, ``s`` gives ``s, s+1, ...``, or one seed per environment."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(num_envs)]
    seeds = list(seed)  # type: ignore[arg-type]
    if len(seeds) != num_envs:
        raise ValueError(f"a list of seeds must have one seed per environment ({num_envs}); got {len(seeds)}")
    return seeds


class PaymentRoutingVectorEnv(RewardWeights, VectorEnv):
    """``num_envs`` payment-routing environments stepped as one batch (see the module docstring).

    Options are those of :class:`~payroute_env.PaymentRoutingEnv` (``scenario``, ``action_mode``,
    ``observe_internal``, ``beta``, ``lost_weight``, ``render_mode``), shared by all environments. Spaces:
    ``single_observation_space`` / ``single_action_space`` are the single environment's, ``observation_space``
    / ``action_space`` their batches (``gymnasium.vector.utils.batch_space``): observations ``float32
    [num_envs, D]``; actions ``float32 [num_envs, 4B]`` (continuous), ``int [num_envs, 2B]`` (multidiscrete)
    or ``int [num_envs]`` (discrete).

    ``reset(seed=s)`` seeds environment ``i`` with ``s + i`` (a list gives one seed each; ``None`` continues
    every environment's stream). ``options={"reset_mask": mask}`` resets only the environments in ``mask``
    (a boolean array), like ``SyncVectorEnv``; other options are rejected.
    """

    metadata: dict[str, Any] = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | Path | Scenario = "double11_2013",
        action_mode: str = "continuous",
        observe_internal: bool = False,
        beta: float = 0.1,
        lost_weight: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None, 'ansi' or 'rgb_array'; got {render_mode!r}")
        self.sim = Simulator(scenario, num_envs, action_mode, observe_internal, beta, lost_weight)
        self.num_envs = self.sim.num_envs
        self.scenario = self.sim.scenario
        self.action_mode = self.sim.action_mode
        self.observe_internal = self.sim.observe_internal
        self.render_mode = render_mode
        self._timelines = None  # the frames' failed-rate timeline, kept only when frames are drawn
        if render_mode == "rgb_array":
            self._timelines = render.FailedRateTimelines(self.num_envs, self.sim.params.n_steps)
        self.single_observation_space = self.sim.single_observation_space
        self.single_action_space = self.sim.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    @property
    def params(self) -> core.CoreParams:
        """The core parameters of the scenario (shared by all environments)."""
        return self.sim.params

    @property
    def state(self) -> core.CoreState | None:
        """The batched core state (``None`` before the first ``reset``)."""
        return self.sim.state

    # ------------------------------------------------------------------------------------------ API

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all environments (or those in ``options["reset_mask"]``); return observations and infos."""
        if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
            super().reset(seed=int(seed))
        seeds = seed_list(seed, self.num_envs)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"reset takes no options other than 'reset_mask'; got {sorted(options)}")
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        else:
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},)")
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one environment")
            if self.sim.state is None and not mask.all():
                raise RuntimeError("reset every environment once before resetting a subset with 'reset_mask'")
        chosen = [s for s, m in zip(seeds, mask, strict=True) if m]
        obs = self.sim.reset(chosen, mask=mask, entropy=self.np_random)
        infos: dict[str, Any] = {}
        for key, value in batch_counters(self.sim.state).items():
            infos[key] = np.where(mask, value, 0)
            infos[f"_{key}"] = mask.copy()
        return obs, infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every environment one step (environments whose episode ended last step are reset instead)."""
        sim = self.sim
        obs, reward, truncated, _ = sim.step_or_reset(actions)  # environments past their end start anew
        terminated = np.zeros(self.num_envs, dtype=bool)

        infos: dict[str, Any] = {}
        everyone = np.ones(self.num_envs, dtype=bool)
        for key, value in batch_counters(sim.state).items():
            infos[key] = value
            infos[f"_{key}"] = everyone.copy()
        for i in np.flatnonzero(truncated):
            infos = self._add_info(infos, {"episode_kpis": sim.kpis(int(i))}, int(i))
        return obs, reward, terminated, truncated, infos

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        """The dashboard of the last step of every environment, one per environment (as ``SyncVectorEnv``
        gives them): text with ``render_mode="ansi"``, ``uint8 [H, W, 3]`` frames with ``"rgb_array"``."""
        if self.render_mode is None:
            return None
        if self.sim.state is None:
            raise RuntimeError("call reset() before render()")
        draw = self._timelines.frame if self.render_mode == "rgb_array" else render.ansi
        return tuple(draw(self.params, self.sim.state, i) for i in range(self.num_envs))

    def counters(self) -> dict[str, np.ndarray]:
        """Integer episode counters of every environment, ``int64 [num_envs]`` each."""
        if self.sim.state is None:
            raise RuntimeError("call reset() before counters()")
        return batch_counters(self.sim.state)
