"""Action spaces and their decoding into the control the core understands: ``admit [N, B]``, ``route [N, B, 3]``.

============== ======================================================= ==========================================
mode           space                                                   meaning per bank
============== ======================================================= ==========================================
continuous     ``Box(0, 1, (4B,), float32)``, bank-major               ``[admit_rate, w_quick, w_switch,
                                                                       w_netbank]``; weights are normalised, all
                                                                       zero = quick; values outside [0, 1] are
                                                                       clipped
multidiscrete  ``MultiDiscrete([11, 5] * B)``                          admit level ``i / 10``; route preset
                                                                       (see ``ROUTE_PRESETS``)
discrete       ``Discrete(1 + 4B)``                                    0 = no change; ``1 + 4b + j``: j = 0 raise
                                                                       bank b's admit rate by 0.1, 1 lower it,
                                                                       2 next route preset, 3 previous preset
============== ======================================================= ==========================================

Route weights only matter for quick-enabled users; online-banking-only users always go to ``netbank``.
``[1, 1, 0, 0]`` for every bank is the 2013 status quo: admit all, quick-enabled users to ``quick``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from gymnasium import spaces

__all__ = ["ACTION_MODES", "ADMIT_LEVELS", "ROUTE_PRESETS", "ActionMode", "action_space", "decode", "status_quo"]

ActionMode = Literal["continuous", "multidiscrete", "discrete"]
ACTION_MODES: tuple[str, ...] = ("continuous", "multidiscrete", "discrete")
ADMIT_LEVELS = np.linspace(0.0, 1.0, 11)
ADMIT_STEP = 0.1
# quick / switch / netbank shares for quick-enabled users
ROUTE_PRESETS = np.array(
    [
        [1.0, 0.0, 0.0],  # all quick (status quo)
        [0.75, 0.25, 0.0],
        [0.5, 0.5, 0.0],
        [0.0, 1.0, 0.0],  # all switch
        [0.0, 0.0, 1.0],  # all online banking
    ]
)


def check_mode(mode: str) -> str:
    if mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {', '.join(ACTION_MODES)}; got {mode!r}")
    return mode


def action_space(mode: str, n_banks: int) -> spaces.Space:
    """The single-environment action space for ``mode``."""
    check_mode(mode)
    if mode == "continuous":
        return spaces.Box(0.0, 1.0, (n_banks * 4,), dtype=np.float32)
    if mode == "multidiscrete":
        return spaces.MultiDiscrete(np.tile([len(ADMIT_LEVELS), len(ROUTE_PRESETS)], n_banks))
    return spaces.Discrete(1 + 4 * n_banks)


def status_quo(mode: str, n_banks: int) -> np.ndarray:
    """The single-env action meaning "admit all, quick-enabled users to quick" (no change for discrete)."""
    check_mode(mode)
    if mode == "continuous":
        return np.tile(np.array([1, 1, 0, 0], dtype=np.float32), n_banks)
    if mode == "multidiscrete":
        return np.tile(np.array([len(ADMIT_LEVELS) - 1, 0], dtype=np.int64), n_banks)
    return np.array(0, dtype=np.int64)


def decode(
    mode: str, actions: np.ndarray, n_banks: int, admit: np.ndarray, route: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Batched ``actions`` (leading env axis) to ``(admit [N, B], route [N, B, 3])``.

    ``admit`` and ``route`` are the control applied in the previous step (used by ``discrete``).
    Raises ``ValueError`` naming the expected shape or range when the action is malformed.
    """
    N = admit.shape[0]
    a = np.asarray(actions)
    if mode == "continuous":
        _expect(a, (N, 4 * n_banks), "continuous")
        if a.dtype.kind not in "biuf":  # strings, complex numbers, None: refused rather than coerced
            raise ValueError(f"continuous action must hold real numbers in [0, 1]; got dtype {a.dtype}")
        a = np.array(a, dtype=np.float64)  # a private copy, clipped in place
        if not np.isfinite(a).all():
            raise ValueError("continuous action contains NaN or inf; expected finite values in [0, 1]")
        a = np.clip(a, 0.0, 1.0, out=a).reshape(N, n_banks, 4)
        weights = a[:, :, 1:]
        total = weights.sum(2, keepdims=True)
        new_route = np.divide(
            weights, total, out=np.broadcast_to(ROUTE_PRESETS[0], weights.shape).copy(), where=total > 0
        )
        return a[:, :, 0], new_route
    if mode == "multidiscrete":
        _expect(a, (N, 2 * n_banks), "multidiscrete")
        idx = _integers(a, "multidiscrete").reshape(N, n_banks, 2)
        if (idx < 0).any() or (idx[:, :, 0] >= len(ADMIT_LEVELS)).any() or (idx[:, :, 1] >= len(ROUTE_PRESETS)).any():
            raise ValueError(
                f"multidiscrete action out of range: admit level must be in [0, {len(ADMIT_LEVELS) - 1}], "
                f"route preset in [0, {len(ROUTE_PRESETS) - 1}]; got {a.tolist()}"
            )
        return ADMIT_LEVELS[idx[:, :, 0]], ROUTE_PRESETS[idx[:, :, 1]]
    if mode == "discrete":
        _expect(a, (N,), "discrete")
        idx = _integers(a, "discrete")
        if (idx < 0).any() or (idx > 4 * n_banks).any():
            raise ValueError(f"discrete action must be in [0, {4 * n_banks}]; got {a.tolist()}")
        new_admit = admit.copy()
        preset = preset_index(route)
        rows = np.flatnonzero(idx > 0)
        bank, what = np.divmod(idx[rows] - 1, 4)
        delta_admit = np.select([what == 0, what == 1], [ADMIT_STEP, -ADMIT_STEP], 0.0)
        new_admit[rows, bank] = np.clip(np.round((admit[rows, bank] + delta_admit) * 10) / 10, 0.0, 1.0)
        delta_preset = np.select([what == 2, what == 3], [1, -1], 0)
        preset[rows, bank] = np.clip(preset[rows, bank] + delta_preset, 0, len(ROUTE_PRESETS) - 1)
        return new_admit, ROUTE_PRESETS[preset]
    raise ValueError(check_mode(mode))


def preset_index(route: np.ndarray) -> np.ndarray:
    """Index of the route preset closest to each ``route[N, B, 3]`` row."""
    dist = ((route[:, :, None, :] - ROUTE_PRESETS[None, None]) ** 2).sum(-1)
    return dist.argmin(-1)


def _expect(a: np.ndarray, shape: tuple[int, ...], mode: str) -> None:
    if a.shape != shape:
        raise ValueError(
            f"{mode} action must have shape {shape[1:] if len(shape) > 1 else ()} per env "
            f"(batched {shape}); got shape {a.shape}"
        )


def _integers(a: np.ndarray, mode: str) -> np.ndarray:
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.isfinite(a).all() and (a == np.round(a)).all():
        return a.astype(np.int64)
    raise ValueError(f"{mode} action must hold integers; got {a.tolist()}")
