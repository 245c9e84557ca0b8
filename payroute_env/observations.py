"""Observation layout and construction: what the platform sees, as one float32 vector per environment.

Counts are scaled by ``B / norm`` (``norm`` = expected intents in the busiest step) so that an average
bank at peak reads about 1; waits are divided by the channel timeout. See ``PaymentRoutingEnv`` for the table.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from .core import N_ROUTES, ROUTE_NAMES, SEEN_FIELDS, CoreParams, CoreState

__all__ = [
    "BANK_FEATURES",
    "GLOBAL_FEATURES",
    "INTERNAL_BANK",
    "INTERNAL_SWITCH",
    "build",
    "feature_names",
    "observation_space",
    "scales",
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
_WAIT = SEEN_FIELDS.index("wait_s")


def feature_names(n_banks: int, bank_names: tuple[str, ...], observe_internal: bool) -> list[str]:
    """Name of every observation index, in order."""
    names = [f"{bank}.{f}" for bank in bank_names[:n_banks] for f in BANK_FEATURES] + list(GLOBAL_FEATURES)
    if observe_internal:
        names += [f"{bank}.{f}" for bank in bank_names[:n_banks] for f in INTERNAL_BANK] + list(INTERNAL_SWITCH)
    return names


OBS_HIGH = 1e6  # observations are clipped here: far beyond any real load, but finite for the checkers


def observation_space(n_banks: int, observe_internal: bool) -> spaces.Box:
    n = n_banks * len(BANK_FEATURES) + len(GLOBAL_FEATURES)
    if observe_internal:
        n += n_banks * len(INTERNAL_BANK) + len(INTERNAL_SWITCH)
    return spaces.Box(0.0, OBS_HIGH, (n,), dtype=np.float32)


def scales(params: CoreParams) -> tuple[np.ndarray, float]:
    """Multipliers of the raw counters: per (bank, route, field) of ``seen_channel`` (``B / norm`` for counts,
    1 / timeout for waits), and ``B / norm`` for the other counts. Compute once per ``params``."""
    B = params.n_banks
    count_scale = B / params.norm
    channel = np.full((B, N_ROUTES, len(SEEN_FIELDS)), count_scale)
    t = params.timeout_s
    channel[:, :, _WAIT] = 1.0 / np.stack([t[:B], np.repeat(t[2 * B], B), t[B : 2 * B]], axis=1)
    return channel, count_scale


def build(
    params: CoreParams,
    state: CoreState,
    observe_internal: bool,
    scales_of_params: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
    """``[N, obs_dim]`` float32 observations of every environment (layout in ``BANK_FEATURES`` order).

    ``scales_of_params`` is ``scales(params)``, computed once by the caller (recomputed when ``None``).
    """
    p, s = params, state
    N, B = s.num_envs, p.n_banks
    channel_scale, scale = scales(p) if scales_of_params is None else scales_of_params
    n_bank = len(BANK_FEATURES)
    n_base = B * n_bank + len(GLOBAL_FEATURES)
    out = np.empty((N, n_base + (B * len(INTERNAL_BANK) + len(INTERNAL_SWITCH) if observe_internal else 0)))
    per_bank = out[:, : B * n_bank].reshape(N, B, n_bank)
    n_seen = N_ROUTES * len(SEEN_FIELDS)
    np.multiply(s.seen_bank, scale, out=per_bank[:, :, 0:3])
    np.multiply(s.seen_channel, channel_scale, out=per_bank[:, :, 3 : 3 + n_seen].reshape(N, B, N_ROUTES, -1))
    per_bank[:, :, 3 + n_seen] = s.admit
    per_bank[:, :, 4 + n_seen :] = s.route
    np.multiply(s.seen_balance, scale, out=out[:, B * n_bank : B * n_bank + 3])
    out[:, n_base - 1] = np.minimum(s.t / p.n_steps, 1.0)
    if observe_internal:
        ratio = s.capacity / np.where(p.declared > 0, p.declared, 1.0)
        srv = np.stack([s.stress, (s.down_left > 0).astype(np.float64), s.down_left / 3600.0, s.warm], axis=2)
        banks = np.concatenate([srv[:, :B], ratio[:, :B, None], ratio[:, B : 2 * B, None]], axis=2)
        out[:, n_base:] = np.concatenate([banks.reshape(N, -1), srv[:, B], ratio[:, 2 * B : 2 * B + 1]], axis=1)
    return np.clip(out, 0.0, OBS_HIGH, out=out).astype(np.float32)
