"""Residual policies: the agent learns a correction to a hand-written heuristic instead of a policy from scratch.

Residual policy learning (Silver et al. 2018, Johannink et al. 2019): the action sent to the environment is

    action = clip(heuristic_action + scale * clip(correction, -1, 1), -1, 1)

per component of the continuous action (admit rate, then the quick / switch / netbank weights of each bank,
which the environment normalises). The agent's own action space is the correction, ``Box(-1, 1)``; a fresh
SB3 Gaussian policy outputs a mean correction near 0, so training starts from the heuristic's behaviour
(for payroute, a strong router) rather than from the status quo, and the heuristic keeps working in worlds
the agent never saw wherever the learned correction stays small.

Training wraps the vector environment in ``agents.training.residual.ResidualVecEnv`` (the heuristic sees the
raw observations, before ``VecNormalize``). The residual settings are stored inside the model's zip (the
``payroute_residual`` attribute, saved with every checkpoint and ``best_model.zip``), so
:func:`agents.deciders.load_policy` rebuilds the same heuristic + correction for evaluation:
:class:`ResidualPolicy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .heuristics import HEURISTICS
from .policy import Policy, PolicyError

__all__ = ["MODEL_ATTRIBUTE", "ResidualPolicy", "check_residual", "combine", "make_base"]

MODEL_ATTRIBUTE = "payroute_residual"  # {"base": heuristic name, "scale": float}, saved in the model's zip


def check_residual(base: Any, scale: Any) -> None:
    """Raise ``ValueError`` naming the setting unless ``base`` is a heuristic name and ``scale`` is in (0, 1]."""
    if not isinstance(base, str) or base not in HEURISTICS:
        raise ValueError(f"residual = {base!r}: expected a heuristic name ({', '.join(HEURISTICS)})")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
        raise ValueError(f"residual_scale = {scale!r}: expected a number in (0, 1]")


def make_base(base: str, scenario: Any) -> Policy:
    """The heuristic named ``base``, reading the published figures of ``scenario``."""
    return HEURISTICS[base](scenario)


def combine(base_action: np.ndarray, correction: np.ndarray, scale: float) -> np.ndarray:
    """``clip(base + scale * clip(correction, -1, 1), -1, 1)`` as float32; shapes must match."""
    base_action = np.asarray(base_action, dtype=np.float64)
    correction = np.asarray(correction, dtype=np.float64)
    if base_action.shape != correction.shape:
        raise ValueError(f"correction of shape {correction.shape} does not fit actions of shape {base_action.shape}")
    if not np.isfinite(correction).all():
        raise ValueError("residual correction contains NaN or inf")
    out = base_action + scale * np.clip(correction, -1.0, 1.0)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


class ResidualPolicy(Policy):
    """A trained correction (an SB3 policy) on top of a heuristic, for the evaluator."""

    action_mode = "continuous"

    def __init__(self, correction: Policy, base: Policy, scale: float) -> None:
        if correction.action_mode != "continuous":
            raise PolicyError(f"{correction.name}: a residual correction must have continuous actions")
        self.correction, self.base, self.scale = correction, base, float(scale)
        self.name = correction.name
        self.observe_internal = correction.observe_internal

    def reset(self, num_envs: int) -> None:
        self.base.reset(num_envs)
        self.correction.reset(num_envs)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        base_action, _ = self.base.predict(observation, episode_start=episode_start, deterministic=True)
        correction, state = self.correction.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )
        return combine(base_action, correction, self.scale), state

    def describe(self) -> str:
        return f"{self.correction.describe()} as a correction (x{self.scale:g}) to {self.base.name}"
