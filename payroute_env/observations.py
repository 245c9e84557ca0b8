"""Observation layout: what the platform sees, as one float32 vector per environment.

The kernel writes every environment's observation into its state record (``physics.observe``, in the order
below); this module names the indices and builds the space. Counts are scaled by ``B / norm`` (``norm`` =
expected intents in the busiest step) so that an average bank at peak reads about 1; waits are divided by
the channel timeout. See ``PaymentRoutingEnv`` for the table.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .core import OBS_BANK, OBS_GLOBAL, OBS_INTERNAL_BANK, OBS_INTERNAL_SWITCH, ROUTE_NAMES, SEEN_FIELDS, CoreState
from .physics import OBS_HIGH

__all__ = [
    "BANK_FEATURES",
    "GLOBAL_FEATURES",
    "INTERNAL_BANK",
    "INTERNAL_SWITCH",
    "OBS_HIGH",
    "build",
    "feature_names",
    "observation_space",
    "size",
]

BANK_FEATURES: tuple[str, ...] = (
    ("offered", "throttled", "retry_backlog")
    + tuple(f"{r}_{f}" for r in ROUTE_NAMES for f in SEEN_FIELDS)
    + ("admit_rate", "w_quick", "w_switch", "w_netbank")
)
GLOBAL_FEATURES: tuple[str, ...] = ("balance_sent", "balance_succeeded", "balance_queue", "progress")
INTERNAL_BANK: tuple[str, ...] = (
    "stress",
    "down",
    "outage_left_h",
    "warm",
    "quick_capacity_ratio",
    "netbank_capacity_ratio",
)
INTERNAL_SWITCH: tuple[str, ...] = (
    "switch_stress",
    "switch_down",
    "switch_outage_left_h",
    "switch_warm",
    "switch_capacity_ratio",
)
# the kernel's layout (physics.observe) and these names must agree
assert (len(BANK_FEATURES), len(GLOBAL_FEATURES)) == (OBS_BANK, OBS_GLOBAL)
assert (len(INTERNAL_BANK), len(INTERNAL_SWITCH)) == (OBS_INTERNAL_BANK, OBS_INTERNAL_SWITCH)


def feature_names(n_banks: int, bank_names: tuple[str, ...], observe_internal: bool) -> list[str]:
    """Name of every observation index, in order."""
    names = [f"{bank}.{f}" for bank in bank_names[:n_banks] for f in BANK_FEATURES] + list(GLOBAL_FEATURES)
    if observe_internal:
        names += [f"{bank}.{f}" for bank in bank_names[:n_banks] for f in INTERNAL_BANK] + list(INTERNAL_SWITCH)
    return names


def size(n_banks: int, observe_internal: bool) -> int:
    """Length of the observation vector."""
    n = n_banks * OBS_BANK + OBS_GLOBAL
    return n + (n_banks * OBS_INTERNAL_BANK + OBS_INTERNAL_SWITCH if observe_internal else 0)


def observation_space(n_banks: int, observe_internal: bool) -> spaces.Box:
    return spaces.Box(0.0, OBS_HIGH, (size(n_banks, observe_internal),), dtype=np.float32)


def build(state: CoreState, n_banks: int, observe_internal: bool) -> np.ndarray:
    """``[N, obs_dim]`` float32 observations of every environment: a fresh copy of what the kernel wrote last
    (never a view of the state, which the next step overwrites)."""
    return np.array(state.obs[:, : size(n_banks, observe_internal)], order="C", copy=True)
