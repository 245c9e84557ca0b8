"""Counter-based random numbers and count samplers, compiled (numba) and written once.

Every environment owns a 64-bit key. The uniform number for (key, step, draw index) is a SplitMix64 hash of
the three, so an environment's randomness depends only on its own key and step, never on which other
environments share the batch. That is what makes ``N`` batched environments seeded ``s, s+1, ...`` equal
to ``N`` single environments, bit for bit, and what gives every policy the same arrivals and user choices
on the same seed (common random numbers).

Counts are sampled from one uniform each (the kernel's ``physics.binomial_cells`` draws one count for a row
of attempt numbers and spreads it over them with a second uniform):

* ``poisson``: exact inversion for small means, normal approximation ``round(lam + sqrt(lam) z)`` (same mean
  and variance) for means >= 12, where the two are indistinguishable for this model.
* ``binomial``: exact inversion when the rarer outcome's mean is below 10; otherwise the normal
  approximation with mean ``n p`` and variance ``n p (1-p)``, rounded and clipped to [0, n].
* ``physics.split`` (systematic rounding) splits a whole total into parts proportional to weights.

The normal quantile ``z`` comes from two small tables with linear interpolation (a 4,096-point grid, and a
grid 4,096 times finer below 1/4096 and above 1 - 1/4096; tails held beyond 5.4 standard deviations) and
``exp`` for small Poisson means from a fixed series: only +, -, *, /, sqrt, floor and rint are used (powers
by repeated squaring), which IEEE arithmetic rounds the same everywhere.

Counts are float64 holding whole numbers (exact below 2**53), which keeps arithmetic cheap. The functions
are scalar and compiled; the array helpers at the end (``key_from_seed``, ``next_key``, ``uniforms``) loop
over them so that Python code (``core.reset``) draws exactly what the kernel would. With
``NUMBA_DISABLE_JIT=1`` everything runs as plain Python, for debugging.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.special import ndtri

__all__ = [
    "CENTRE_TABLE",
    "TAIL_TABLE",
    "binomial",
    "binomial_at",
    "exp_neg",
    "key_from_seed",
    "next_key",
    "normal_quantile",
    "poisson",
    "uniform",
    "uniforms",
]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S32 = (np.uint64(s) for s in (30, 27, 31, 11, 32))
_THREE = np.uint64(3)
_TO_UNIT = 2.0**-53
# The normal quantile from two small tables (about 48 KB together, so they stay in the core's cache), linearly
# interpolated: ``CENTRE_TABLE`` holds ndtri at the midpoints (i + 0.5) / 4096 of the lower half, ``TAIL_TABLE``
# the same for u below 1 / 4096 on a 4096 times finer grid (down to 3e-8, 5.4 standard deviations). The upper
# half is the mirror image. A single 65,536-point table (512 KB) cost a cache miss on most draws.
_GRID = 4096
CENTRE_TABLE = ndtri((np.arange(_GRID // 2 + 1) + 0.5) / _GRID)
TAIL_TABLE = ndtri((np.arange(_GRID + 1) + 0.5) / _GRID**2)
_GRID_F = float(_GRID)
_TAIL_SCALE = float(_GRID) ** 2
POISSON_NORMAL_FROM = 12.0  # the normal approximation is used for means at least this
BINOMIAL_NORMAL_FROM = 10.0  # ... and when n p and n (1 - p) are both at least this
_EXP_TERMS = 18
_INVERSION_STEPS = 80  # enough for means below 12 (P(X >= 80) < 1e-40)


# ------------------------------------------------------------------------------------------ uniforms


@njit(inline="always")
def mix(x: np.uint64) -> np.uint64:
    """SplitMix64 finaliser (uint64 arithmetic wraps modulo 2**64 by design)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@njit(inline="always")
def step_counter(t: int) -> np.uint64:
    """The counter base of step ``t``: draw ``j`` of the step is ``uniform(key, step_counter(t), j)``."""
    return np.uint64(t) << _S32


@njit(inline="always")
def uniform(key: np.uint64, base: np.uint64, col: int) -> float:
    """The uniform in (0, 1) of draw ``col`` at counter ``base`` of stream ``key``."""
    x = mix(key ^ mix((base + np.uint64(col)) * _GOLDEN + _GOLDEN))
    return (np.float64(x >> _S11) + 0.5) * _TO_UNIT


# ------------------------------------------------------------------------------------------ samplers


@njit(inline="always")
def normal_quantile(u: float) -> float:
    """Standard normal quantile of ``u`` in (0, 1) from ``CENTRE_TABLE`` and ``TAIL_TABLE`` (linear
    interpolation between grid midpoints; below the first midpoint of the tail grid the value is held)."""
    lower = u < 0.5
    v = u if lower else 1.0 - u  # exact for u >= 0.5
    if v * _GRID_F >= 1.0:
        table = CENTRE_TABLE
        x = v * _GRID_F - 0.5
    else:
        table = TAIL_TABLE
        x = v * _TAIL_SCALE - 0.5
    i = min(max(np.floor(x), 0.0), float(table.shape[0] - 2))
    f = min(max(x - i, 0.0), 1.0)
    j = int(i)
    z = table[j] + f * (table[j + 1] - table[j])
    return z if lower else -z


@njit(inline="always")
def exp_neg(x: float) -> float:
    """``exp(-x)`` for 0 <= x < 16 with basic arithmetic only (series for x/16, then squared 4 times)."""
    y = x / 16.0
    r = 1.0
    for j in range(_EXP_TERMS, 0, -1):
        r = 1.0 - y * r / j
    for _ in range(4):
        r = r * r
    return r


@njit(inline="always")
def poisson(lam: float, u: float) -> float:
    """A Poisson count with mean ``lam`` from the uniform ``u``."""
    if lam < POISSON_NORMAL_FROM:
        k = 0.0
        p = exp_neg(lam)
        cdf = p
        for i in range(1, _INVERSION_STEPS):
            if not u > cdf:
                break
            k += 1.0
            p = p * lam / i
            cdf += p
        return k
    return max(np.rint(lam + np.sqrt(lam) * normal_quantile(u)), 0.0)


@njit(inline="always")
def binomial(n: float, p: float, u: float) -> float:
    """A Binomial(n, p) count (``n`` a whole number as a float) from the uniform ``u``.

    Exact inversion when ``min(n p, n (1-p)) < 10`` (counting the rarer outcome), the normal approximation
    ``clip(round(n p + sqrt(n p (1-p)) z), 0, n)`` otherwise (clipping cuts beyond 3 standard deviations, so
    the mean stays unbiased to a few parts in ten thousand of a standard deviation).
    """
    rare_is_failure = p > 0.5
    q_rare = 1.0 - p if rare_is_failure else p
    if n > 0 and n * q_rare < BINOMIAL_NORMAL_FROM:
        ratio = q_rare / (1.0 - q_rare)
        # (1 - q_rare) ** n by repeated squaring: multiplications only
        pk = 1.0
        b = 1.0 - q_rare
        e = np.int64(n)
        while e > 0:
            if e & 1:
                pk = pk * b
            b = b * b
            e = e >> 1
        cdf = pk
        x = 0.0
        for i in range(1, _INVERSION_STEPS):
            if not u > cdf:
                break
            x += 1.0
            pk = pk * (n - (i - 1)) / i * ratio
            cdf += pk
        x = min(x, n)
        return n - x if rare_is_failure else x
    mean = n * p
    var = mean * (1.0 - p)
    v = np.rint(mean + np.sqrt(var) * normal_quantile(u))
    return min(max(v, 0.0), n)


@njit(inline="always")
def binomial_at(n: float, p: float, key: np.uint64, base: np.uint64, col: int) -> float:
    """``binomial`` drawing its uniform only when it matters: with n = 0, p = 0 or p = 1 the result is
    0, 0 or n whatever the uniform, so the hash is skipped."""
    if n <= 0.0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return n
    return binomial(n, p, uniform(key, base, col))


# ------------------------------------------------------------------------------- array helpers (Python)


@njit(cache=True)
def _keys_from_seeds(seeds: np.ndarray) -> np.ndarray:
    out = np.empty(seeds.shape[0], dtype=np.uint64)
    for i in range(seeds.shape[0]):
        out[i] = mix(mix(seeds[i] + _GOLDEN))
    return out


@njit(cache=True)
def _next_keys(keys: np.ndarray) -> np.ndarray:
    out = np.empty(keys.shape[0], dtype=np.uint64)
    for i in range(keys.shape[0]):
        out[i] = mix(keys[i] + _GOLDEN * _THREE)
    return out


@njit(cache=True)
def _uniforms(keys: np.ndarray, steps: np.ndarray, n: int) -> np.ndarray:
    out = np.empty((keys.shape[0], n))
    for i in range(keys.shape[0]):
        base = step_counter(steps[i])
        for j in range(n):
            out[i, j] = uniform(keys[i], base, j)
    return out


def key_from_seed(seed: int | np.ndarray) -> np.ndarray:
    """64-bit environment keys from integer seeds (any non-negative int, scalar or array)."""
    s = np.asarray(seed, dtype=np.uint64)
    return _keys_from_seeds(s.reshape(-1)).reshape(s.shape)


def next_key(key: np.ndarray) -> np.ndarray:
    """The key of the next episode when reset is called without a seed."""
    k = np.asarray(key, dtype=np.uint64)
    return _next_keys(k.reshape(-1)).reshape(k.shape)


def uniforms(keys: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:
    """``(len(keys), n)`` uniforms in (0, 1), a pure function of each (key, step, column)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    return _uniforms(keys, np.ascontiguousarray(step, dtype=np.int64), int(n))
