"""Episode KPIs computed from the core state (the same numbers for the env's info and the evaluator)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import COUNTER_FIELDS, LATENCY_BIN_S, PAID_CHANNELS, CoreParams, CoreState

__all__ = ["COUNTER_KEYS", "batch_counters", "episode_kpis", "percentile_from_hist", "step_counters"]


COUNTER_KEYS: tuple[str, ...] = COUNTER_FIELDS  # the info's keys, in their order


def batch_counters(state: CoreState) -> dict[str, np.ndarray]:
    """Episode-cumulative integer counters of every environment, ``int64 [N]`` each."""
    return {
        "arrived": state.arrived.astype(np.int64),
        "succeeded": state.succeeded.astype(np.int64),
        "lost": state.lost.astype(np.int64),
        "in_flight": state.in_flight.astype(np.int64),  # written by the kernel (core.in_flight recounts it)
        "attempts": state.attempts.astype(np.int64),
        "failed_attempts": state.failed_attempts.astype(np.int64),
    }


def step_counters(state: CoreState, i: int) -> dict[str, int]:
    """The counters of environment ``i`` as Python ints (the per-step ``info`` of the single env)."""
    # one read of the six adjacent counters of record i (core.COUNTER_FIELDS) instead of six field reads
    offset = state.dtype.fields[COUNTER_KEYS[0]][1]
    values = np.frombuffer(state[i], np.float64, len(COUNTER_KEYS), offset).tolist()
    return {key: int(value) for key, value in zip(COUNTER_KEYS, values, strict=True)}


def percentile_from_hist(hist: np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0-100) of a latency histogram with ``LATENCY_BIN_S`` bins (bin midpoint)."""
    total = hist.sum()
    if total <= 0:
        return float("nan")
    idx = int(np.searchsorted(np.cumsum(hist), q / 100.0 * total))
    return (idx + 0.5) * LATENCY_BIN_S


def episode_kpis(params: CoreParams, state: CoreState, i: int) -> dict[str, Any]:
    """KPIs of environment ``i`` so far; at the final step these are the episode's KPIs.

    ``failed_payment_rate`` = lost / arrived intents (intents still in flight are neither). Per bank, the
    rate is intents lost at that bank over intents that tried that bank (arrived there or switched in).
    Times to success are estimates from a 5-second histogram (docs/MODEL.md).
    """
    p, s = params, state
    B = p.n_banks
    names = p.scenario.bank_names
    arrived, lost, succ = float(s.arrived[i]), float(s.lost[i]), float(s.succeeded[i])
    entered = s.entered_pool[i, : 2 * B].reshape(B, 2).sum(1)
    lost_bank = s.lost_pool[i, : 2 * B].reshape(B, 2).sum(1)
    duration = p.n_steps * p.dt if s.t[i] >= p.n_steps else max(float(s.t[i]) * p.dt, p.dt)
    paid_total = s.paid_by[i].sum()
    attempts = float(s.attempts[i])
    return {
        "failed_payment_rate": lost / arrived if arrived > 0 else 0.0,
        "failed_payment_rate_by_bank": {
            n: float(lost_bank[b] / entered[b]) if entered[b] > 0 else 0.0 for b, n in enumerate(names)
        },
        "attempt_failure_rate": float(s.failed_attempts[i]) / attempts if attempts > 0 else 0.0,
        "successful_payments_per_s": succ / duration,
        "median_time_to_success_s": percentile_from_hist(s.latency_hist[i], 50),
        "p95_time_to_success_s": percentile_from_hist(s.latency_hist[i], 95),
        "outage_seconds": {n: float(s.outage_s[i, b]) for b, n in enumerate(names)},
        "switch_outage_seconds": float(s.outage_s[i, B]),
        "paid_share_by_channel": {
            c: float(s.paid_by[i, j] / paid_total) if paid_total > 0 else 0.0 for j, c in enumerate(PAID_CHANNELS)
        },
        "pending_at_end": int(s.in_flight[i]),
        "arrived": int(arrived),
        "succeeded": int(succ),
        "lost": int(lost),
    }
