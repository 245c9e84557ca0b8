"""The statistics payroute reports: percentile-bootstrap intervals, paired comparisons, the interquartile mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "gap_closed", "interquartile_mean", "isnan", "paired_comparison"]


RESAMPLE_BLOCK = 2**21  # resampled indices held at a time (16 MiB), however many episodes


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (a single value gives a zero-width interval)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    (means,) = _resampled_means([x], n_boot, seed)
    return _percentile_interval(means, level)


def _resampled_means(columns: Sequence[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """The mean of each column over ``n_boot`` resamples of its entries, the same resampled indices for every
    column (so that paired columns stay paired)."""
    n = columns[0].size
    rng = np.random.default_rng(seed)
    # Drawn a block of resamples at a time: one (n_boot, n) index array is 80 KB per episode, 240 GB for three
    # million episodes. The blocks draw the same stream in the same order, so the intervals are unchanged.
    rows = max(1, RESAMPLE_BLOCK // n)
    means = [np.empty(n_boot) for _ in columns]
    for start in range(0, n_boot, rows):
        idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
        for mean, c in zip(means, columns, strict=True):
            mean[start : start + len(idx)] = c[idx].mean(1)
    return means


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def paired_comparison(
    values: Sequence[float], reference: Sequence[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """Compare two policies' per-episode rates on the same episodes (same seeds, in the same order).

    Returns the mean difference ``mean(values) - mean(reference)`` and the relative change
    ``mean(values) / mean(reference) - 1``, each with a percentile-bootstrap interval that resamples
    *episodes* (both policies' values of an episode together). Sharing the episodes removes what makes
    episodes differ from each other (a randomised world's drawn capacities, the surge's noise), so the interval
    is much narrower than the two policies' own CIs when they are compared side by side. Also returns in how
    many episodes ``values`` is lower (``better_episodes``) and higher (``worse_episodes``): a mean can hide one
    bad episode among many good ones.

    The intervals are percentile bootstraps, like ``bootstrap_ci``: approximate. With 20 episodes of which a
    few dominate the mean (a randomised world), such an interval covers the true value about 90% of the time
    rather than 95%. They cover the evaluation episodes only, not the spread between training runs.
    """
    x = np.asarray(values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if x.shape != r.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(
            f"paired_comparison needs two equally long, non-empty lists; got shapes {x.shape} and {r.shape}"
        )
    difference = float(x.mean() - r.mean())
    relative = float(x.mean() / r.mean() - 1.0) if r.mean() > 0 else math.nan
    if x.size == 1:
        difference_ci, relative_ci = (difference, difference), (relative, relative)
    else:
        xm, rm = _resampled_means([x, r], n_boot, seed)
        difference_ci = _percentile_interval(xm - rm, level)
        relative_ci = _percentile_interval(xm / rm - 1.0, level) if np.all(rm > 0) else (math.nan, math.nan)
    return {
        "difference": difference,
        "difference_ci": list(difference_ci),
        "relative": relative,
        "relative_ci": list(relative_ci),
        "better_episodes": int(np.sum(x < r)),
        "worse_episodes": int(np.sum(x > r)),
    }


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle 50% of the values (Agarwal et al. 2021, rliable)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        return math.nan
    n = x.size
    lo, hi = int(np.floor(n * 0.25)), int(np.ceil(n * 0.75))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())


def gap_closed(policy: float, best_heuristic: float, bound: float) -> float | None:
    """The share of the best heuristic's gap to the fluid bound that a policy closes (1: it reaches the bound,
    0: no better than the heuristic, negative: worse); ``None`` where the heuristic is already at the bound."""
    return (best_heuristic - policy) / (best_heuristic - bound) if best_heuristic > bound else None


def isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
