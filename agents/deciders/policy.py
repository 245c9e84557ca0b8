"""The one interface every payroute decider follows: hand-written heuristics and trained agents alike.

A :class:`Policy` is batched and follows the stable-baselines3 ``predict`` signature, so the evaluator (and
anything else) can drive heuristics and trained models the same way::

    policy = load_policy("sre_throttle", "double11_2013")        # or load_policy("models/ppo.zip", ...)
    sim = Simulator("double11_2013", num_envs=20, action_mode=policy.action_mode,
                    observe_internal=policy.observe_internal)
    obs = sim.reset(seeds=range(1000, 1020)); policy.reset(20)
    state, start = None, np.ones(20, dtype=bool)
    for _ in range(sim.params.n_steps):
        actions, state = policy.predict(obs, state, episode_start=start, deterministic=True)
        obs, reward, truncated, counts = sim.step(actions)
        start = truncated
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Policy", "PolicyError", "first_line"]


class PolicyError(ValueError):
    """A policy cannot be built or loaded; the message is one line meant for the user."""


class Policy:
    """A batched policy with the stable-baselines3 ``predict`` signature.

    ``action_mode`` (``continuous``, ``multidiscrete`` or ``discrete``) and ``observe_internal`` tell the
    evaluator which ``Simulator`` to build for it. ``reset(num_envs)`` forgets any memory before a batch of
    episodes; ``predict`` also forgets the memory of environments flagged in ``episode_start``.
    """

    name: str = "policy"
    action_mode: str = "continuous"
    observe_internal: bool = False

    def reset(self, num_envs: int) -> None:
        """Prepare for ``num_envs`` environments starting new episodes."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Actions for a batch of observations ``[N, obs_dim]`` (a single ``[obs_dim]`` also works)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line saying what the policy is (shown by ``evaluate.py --list``)."""
        return first_line(self.__doc__ or self.name)


def first_line(doc: str) -> str:
    """The first line of a docstring, without reStructuredText's double backquotes."""
    return doc.strip().splitlines()[0].replace("``", "")
