"""``Simulator``: a batch of environments stepped in place by the compiled kernel, one call per step.

This is the one adapter every front end shares: ``PaymentRoutingEnv`` is a Simulator of one environment,
the vector environments and the evaluator use larger batches. It owns no dynamics (``physics.py`` does:
action decoding, the model, observations, rewards and counters all happen in one compiled call per step);
it checks actions, resets episodes (``core.reset`` draws each episode's world) and hands out copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import actions, core, memory, metrics, observations
from .sampling import key_from_seed, next_key
from .scenario import Scenario, load_scenario

__all__ = ["RewardWeights", "Simulator"]


class Simulator:
    """``num_envs`` payroute environments advanced together.

    Environment ``i`` reset with seed ``s`` follows exactly the trajectory of a single environment reset
    with seed ``s`` (each environment has its own counter-based random stream).
    """

    def __init__(
        self,
        scenario: str | Path | Scenario = "double11_2013",
        num_envs: int = 1,
        action_mode: str = "continuous",
        observe_internal: bool = False,
        beta: float = 0.1,
        lost_weight: float = 1.0,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1; got {num_envs!r}")
        if not isinstance(observe_internal, bool | np.bool_):  # "false" from a config file must not mean True
            raise ValueError(f"observe_internal must be True or False; got {observe_internal!r}")
        self.beta, self.lost_weight = beta, lost_weight  # checked by the setters below
        self.scenario = load_scenario(scenario)
        need = memory.simulator_bytes(self.scenario, int(num_envs), bool(observe_internal))
        memory.require([(f"num_envs = {int(num_envs)} environments", need)], "lower num_envs")
        self.num_envs = int(num_envs)
        self.action_mode = actions.check_mode(action_mode)
        self.observe_internal = bool(observe_internal)
        self.params = core.make_params(self.scenario)
        self.n_banks = self.scenario.n_banks
        self.single_action_space = actions.action_space(self.action_mode, self.n_banks)
        self.single_observation_space = observations.observation_space(self.n_banks, self.observe_internal)
        self._mode = actions.MODE_CODES[self.action_mode]
        self._state: core.CoreState | None = None

    @property
    def state(self) -> core.CoreState | None:
        """The batched core state, stepped in place (``None`` before the first ``reset``)."""
        return self._state

    @state.setter
    def state(self, value: core.CoreState) -> None:
        # The kernel trusts what it is given: a state of another layout or a strided view is refused here.
        expected = core.state_dtype(self.params)
        if not isinstance(value, np.ndarray) or value.dtype != expected or value.shape != (self.num_envs,):
            raise ValueError(f"state must be a core.CoreState of {self.num_envs} environments of this scenario")
        if not value.flags.c_contiguous or not value.flags.writeable:
            raise ValueError("state must be a C-contiguous, writeable array (core.reset, replicate or .copy())")
        self._state = value.view(core.CoreState)

    # -------------------------------------------------------------------------------------------- API

    def reset(
        self,
        seeds: Sequence[int | None] | None = None,
        mask: np.ndarray | None = None,
        entropy: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Start new episodes for the environments in ``mask`` (all by default); return all observations.

        ``seeds[j]`` seeds the j-th environment in the mask; ``None`` continues that environment's stream
        to its next episode (or draws a fresh key from ``entropy`` the very first time).
        """
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        n = int(mask.sum())
        seeds = [None] * n if seeds is None else list(seeds)
        if len(seeds) != n:
            raise ValueError(f"need one seed per environment reset ({n}); got {len(seeds)}")
        previous = None if self.state is None else self.state.key[mask]
        keys = np.empty(n, dtype=np.uint64)
        for j, seed in enumerate(seeds):
            if seed is not None:
                if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
                    raise ValueError(f"seed must be an integer in [0, 2**64) or None; got {seed!r}")
                keys[j] = key_from_seed(np.uint64(seed))
            elif previous is not None:
                keys[j] = next_key(previous[j : j + 1])[0]
            else:
                rng = entropy if entropy is not None else np.random.default_rng()
                keys[j] = rng.integers(0, 2**63, dtype=np.uint64)
        if self._state is None or mask.all():
            self._state = core.reset(self.params, keys=keys)
        else:
            self._state[mask] = core.reset(self.params, keys=keys)
        return self.observations()

    def step(self, actions_batch: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, core.StepCounts]:
        """Apply one batched action; return observations, rewards, truncations and the step's counts."""
        self.advance(actions_batch)
        return self._outcome(self._started())

    def advance(self, actions_batch: Any) -> None:
        """``step`` without copying anything out: the results are in ``state`` (``outcome(i)`` reads one
        environment's). ``RuntimeError`` if an episode is over, ``ValueError`` for a malformed action; either
        way no environment moves."""
        state = self._started()
        checked = self.check_actions(actions_batch)
        core.step_in_place(self.params, state, checked, self._mode, self._lost_weight, self._beta)

    def outcome(self, i: int) -> tuple[np.ndarray, float, bool, dict[str, int]]:
        """Environment ``i``'s last step as one Gymnasium env reports it: a copy of its observation, its reward,
        whether it was truncated, and its counters (``counters(i)``)."""
        record = self._started()[i]  # one record: its fields cost far less than slicing every field of the batch
        obs = record["obs"][: self.single_observation_space.shape[0]].copy()
        return obs, float(record["reward"]), bool(record["truncated"]), metrics.step_counters(self._state, i)

    def step_or_reset(self, actions_batch: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, core.StepCounts]:
        """``step``, except that environments whose episode is over start their next one instead (Gymnasium's
        next-step autoreset): their action is ignored, their reward is 0, they are not truncated, and the
        observation is the new episode's first. Their next episode continues their own random stream."""
        state = self._started()
        finished = state.t >= self.params.n_steps
        any_finished = bool(finished.any())
        batch = actions_batch
        if any_finished:
            # finished environments' actions are ignored: a malformed one there must not stop the others
            batch = np.array(actions_batch, copy=True)
            idle = actions.status_quo(self.action_mode, self.n_banks)
            if batch.shape[1:] == idle.shape and batch.shape[0] == self.num_envs:
                batch[finished] = idle
        checked = self.check_actions(batch)  # before anything changes: a malformed batch moves no environment
        if any_finished:
            state[finished] = core.reset(self.params, keys=next_key(state.key[finished]))
        core.step_in_place(self.params, state, checked, self._mode, self._lost_weight, self._beta, finished)
        return self._outcome(state)

    def check_actions(self, actions_batch: Any) -> np.ndarray:
        """One batched action checked and converted for the kernel (``actions.check``); changes nothing."""
        return actions.check(self.action_mode, actions_batch, self.n_banks, self.num_envs)

    def _started(self) -> core.CoreState:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        return self._state

    def _outcome(self, state: core.CoreState) -> tuple[np.ndarray, np.ndarray, np.ndarray, core.StepCounts]:
        return self.observations(), state.reward.copy(), state.truncated.copy(), core.StepCounts.of(state)

    @property
    def beta(self) -> float:
        """Reward weight of a failed attempt (settable between steps, e.g. to anneal it)."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = _reward_weight("beta", value)

    @property
    def lost_weight(self) -> float:
        """Reward weight of a lost intent (settable between steps)."""
        return self._lost_weight

    @lost_weight.setter
    def lost_weight(self, value: float) -> None:
        self._lost_weight = _reward_weight("lost_weight", value)

    def observations(self) -> np.ndarray:
        """``float32 [num_envs, obs_dim]``: a copy of every environment's latest observation."""
        return observations.build(self._started(), self.n_banks, self.observe_internal)

    def counters(self, i: int) -> dict[str, int]:
        """Integer episode-cumulative counters of environment ``i``."""
        assert self.state is not None
        return metrics.step_counters(self.state, i)

    def kpis(self, i: int) -> dict[str, Any]:
        """Episode KPIs of environment ``i`` so far."""
        assert self.state is not None
        return metrics.episode_kpis(self.params, self.state, i)


def _reward_weight(name: str, value: Any) -> float:
    """``value`` as a reward weight: a finite number >= 0 (numpy scalars too), else ``ValueError`` naming it."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
    if not ok or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


class RewardWeights:
    """The reward weights of a front end's ``sim``, readable and settable on the front end itself.

    Shared by the single, vector and SB3 environments, so that ``env.unwrapped.beta = 0.0``, a vector env's
    ``beta`` and SB3's ``set_attr("beta", 0.0)`` all change the reward the same way (and are checked the same way).
    """

    sim: Simulator

    @property
    def beta(self) -> float:
        """Reward weight of a failed attempt."""
        return self.sim.beta

    @beta.setter
    def beta(self, value: float) -> None:
        self.sim.beta = value

    @property
    def lost_weight(self) -> float:
        """Reward weight of a lost intent."""
        return self.sim.lost_weight

    @lost_weight.setter
    def lost_weight(self, value: float) -> None:
        self.sim.lost_weight = value
