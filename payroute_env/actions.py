"""Action spaces and their decoding into the control the core understands: ``admit [N, B]``, ``route [N, B, 3]``.

============== ======================================================= ==========================================
mode           space                                                   meaning per bank
============== ======================================================= ==========================================
continuous     ``Box(-1, 1, (4B,), float32)``, bank-major, the zero    ``[a_admit, a_quick, a_switch,
               action is the status quo                                a_netbank]``, decoded as below; values
                                                                       outside [-1, 1] are clipped
multidiscrete  ``MultiDiscrete([11, 5] * B)``                          admit level ``i / 10``; route preset
                                                                       (see ``ROUTE_PRESETS``)
discrete       ``Discrete(1 + 4B)``                                    0 = no change; ``1 + 4b + j``: j = 0 raise
                                                                       bank b's admit rate by 0.1, 1 lower it,
                                                                       2 next route preset, 3 previous preset
============== ======================================================= ==========================================

Route weights only matter for quick-enabled users; online-banking-only users always go to ``netbank``.

The continuous action follows stable-baselines3's convention (a symmetric, normalised box) with the 2013 status
quo at its centre: the all-zero action admits everything and sends quick-enabled users to ``quick``, so a fresh
policy centred on zero starts from what the platform did, and the extremes reach every control:

=================  ========================================  ===========================================
component          decoded                                   at -1 / 0 / +1
=================  ========================================  ===========================================
``a_admit``        ``admit = clip(1 + a_admit, 0, 1)``        admit nothing / all / all
``a_quick``        weight ``clip(1 + a_quick, 0, 2)``          0 / 1 / 2
``a_switch``       weight ``clip(a_switch, 0, 1)``             0 / 0 / 1
``a_netbank``      weight ``clip(a_netbank, 0, 1)``            0 / 0 / 1
=================  ========================================  ===========================================

The three weights are normalised into the route shares (all zero: quick). Throttling and rerouting are each
one side of zero: the other side is the status quo's own value (admit all, no switch, no online banking), so a
small step from zero in any direction is a small change of control. ``encode`` is the inverse, for
hand-written policies: admit rate ``x`` is ``x - 1``, route shares ``(q, s, n)`` are ``(q - 1, s, n)``.
The previous encoding (``Box(0, 1)``, ``[admit, w_quick, w_switch, w_netbank]``) is retired; models trained
with it are refused on loading (docs/MODEL.md, section 7, decision 14).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from gymnasium import spaces

from . import physics

__all__ = [
    "ACTION_MODES",
    "ADMIT_LEVELS",
    "MODE_CODES",
    "ROUTE_PRESETS",
    "ActionMode",
    "BoundedBox",
    "action_space",
    "check",
    "decode",
    "encode",
    "status_quo",
]

ActionMode = Literal["continuous", "multidiscrete", "discrete"]
ACTION_MODES: tuple[str, ...] = ("continuous", "multidiscrete", "discrete")
ADMIT_LEVELS = np.linspace(0.0, 1.0, 11)
ADMIT_STEP = physics.ADMIT_STEP
# how the kernel reads an action row of each mode
MODE_CODES = {"continuous": physics.CONTINUOUS, "multidiscrete": physics.MULTIDISCRETE, "discrete": physics.DISCRETE}
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


class BoundedBox(spaces.Box):
    """A float ``Box`` bounded on every side, whose ``sample`` draws the same numbers as Gymnasium's, faster.

    ``Box.sample`` sorts every coordinate into bounded, half-bounded and unbounded ones at each call (35-45 us,
    longer than a payroute step); with every coordinate bounded it reduces to one uniform draw over the box,
    which is what this makes, from the same generator: the same samples, bit for bit (tested).
    """

    def __init__(self, low: float, high: float, shape: tuple[int, ...], dtype: type = np.float32) -> None:
        super().__init__(low, high, shape, dtype=dtype)
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()) or self.dtype.kind != "f":
            raise ValueError(f"BoundedBox takes finite float bounds; got [{low}, {high}] {self.dtype}")
        # numpy's uniform(low, high) is low + (high - low) * random() in float64, with the bounds as Box stores
        # them (in its dtype): the same numbers from two scalars
        self._low = float(self.low.flat[0])
        self._range = float(self.high.flat[0]) - self._low
        self._unit = self._low == 0.0 and self._range == 1.0

    def sample(self, mask: None = None, probability: None = None) -> np.ndarray:
        if mask is not None or probability is not None:
            return super().sample(mask, probability)  # Gymnasium's own error
        u = self.np_random.random(self.shape)
        return (u if self._unit else self._low + self._range * u).astype(self.dtype)


def action_space(mode: str, n_banks: int) -> spaces.Space:
    """The single-environment action space for ``mode``."""
    check_mode(mode)
    if mode == "continuous":
        return BoundedBox(-1.0, 1.0, (n_banks * 4,), dtype=np.float32)
    if mode == "multidiscrete":
        return spaces.MultiDiscrete(np.tile([len(ADMIT_LEVELS), len(ROUTE_PRESETS)], n_banks))
    return spaces.Discrete(1 + 4 * n_banks)


def status_quo(mode: str, n_banks: int) -> np.ndarray:
    """The single-env action meaning "admit all, quick-enabled users to quick" (no change for discrete)."""
    check_mode(mode)
    if mode == "continuous":
        return np.zeros(4 * n_banks, dtype=np.float32)
    if mode == "multidiscrete":
        return np.tile(np.array([len(ADMIT_LEVELS) - 1, 0], dtype=np.int64), n_banks)
    return np.array(0, dtype=np.int64)


def encode(admit: np.ndarray, route: np.ndarray) -> np.ndarray:
    """Controls to continuous actions: ``admit [N, B]`` rates and ``route [N, B, 3]`` amounts (quick, switch,
    netbank; normalised to shares, all zero = quick, so any non-negative amounts may be given) to ``[N, 4B]``
    float32 actions that decode back to them."""
    N, B = admit.shape
    route = np.maximum(route, 0.0)
    total = route.sum(2, keepdims=True)
    shares = np.where(total > 0, route / np.where(total > 0, total, 1.0), np.array([1.0, 0.0, 0.0]))
    out = np.concatenate([np.clip(admit, 0.0, 1.0)[:, :, None] - 1.0, shares - [1.0, 0.0, 0.0]], axis=2)
    return out.reshape(N, 4 * B).astype(np.float32)


def check(mode: str, actions: np.ndarray, n_banks: int, n_envs: int) -> np.ndarray:
    """Batched ``actions`` (leading env axis) checked and converted for the kernel: ``float64 [N, A]``, a fresh
    C-contiguous copy (``A`` = 1 for discrete). Raises ``ValueError`` naming the expected shape or range when
    the action is malformed; nothing is clipped or decoded here (the kernel does it, ``physics.decode``)."""
    a = np.asarray(actions)
    N = n_envs
    if mode == "continuous":
        _expect(a, (N, 4 * n_banks), "continuous")
        if a.dtype.kind not in "biuf":  # strings, complex numbers, None: refused rather than coerced
            raise ValueError(f"continuous action must hold real numbers in [-1, 1]; got dtype {a.dtype}")
        a = np.array(a, dtype=np.float64, order="C")
        if not np.isfinite(a).all():
            raise ValueError("continuous action contains NaN or inf; expected finite values in [-1, 1]")
        return a
    if mode == "multidiscrete":
        _expect(a, (N, 2 * n_banks), "multidiscrete")
        idx = _integers(a, "multidiscrete").reshape(N, n_banks, 2)
        if (idx < 0).any() or (idx[:, :, 0] >= len(ADMIT_LEVELS)).any() or (idx[:, :, 1] >= len(ROUTE_PRESETS)).any():
            raise ValueError(
                f"multidiscrete action out of range: admit level must be in [0, {len(ADMIT_LEVELS) - 1}], "
                f"route preset in [0, {len(ROUTE_PRESETS) - 1}]; got {a.tolist()}"
            )
        return idx.reshape(N, 2 * n_banks).astype(np.float64)
    if mode == "discrete":
        _expect(a, (N,), "discrete")
        idx = _integers(a, "discrete")
        if (idx < 0).any() or (idx > 4 * n_banks).any():
            raise ValueError(f"discrete action must be in [0, {4 * n_banks}]; got {a.tolist()}")
        return idx.astype(np.float64).reshape(N, 1)
    raise ValueError(check_mode(mode))


def decode(
    mode: str, actions: np.ndarray, n_banks: int, admit: np.ndarray, route: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Batched ``actions`` (leading env axis) to ``(admit [N, B], route [N, B, 3])``, as the kernel reads them.

    ``admit`` and ``route`` are the control applied in the previous step (used by ``discrete``; not changed).
    Raises ``ValueError`` naming the expected shape or range when the action is malformed.
    """
    checked = check(mode, actions, n_banks, admit.shape[0])
    new_admit = np.array(admit, dtype=np.float64, order="C")
    new_route = np.array(route, dtype=np.float64, order="C")
    physics.decode_batch(new_admit, new_route, checked, MODE_CODES[mode], ADMIT_LEVELS, ROUTE_PRESETS)
    return new_admit, new_route


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
