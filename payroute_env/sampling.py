"""Counter-based random numbers and count samplers, batched over environments.

Every environment owns a 64-bit key. The uniform number for (key, step, draw index) is a SplitMix64 hash of
the three, so an environment's randomness depends only on its own key and step, never on which other
environments share the batch. That is what makes ``N`` batched environments seeded ``s, s+1, ...`` equal
to ``N`` single environments, bit for bit, and lets one call draw every number a step needs.

Counts are sampled from uniforms:

* ``poisson``: exact inversion for small means, normal approximation ``round(lam + sqrt(lam) z)`` (same mean
  and variance) for means >= 12, where the two are indistinguishable for this model.
* ``binomial``: exact inversion when the rarer outcome's mean is below 10; otherwise the normal
  approximation with mean ``n p`` and variance ``n p (1-p)``, rounded and clipped to [0, n].
* ``split``: systematic rounding that splits an integer total into parts proportional to weights, summing
  exactly to the total (unbiased, lower variance than a multinomial).

The normal quantile ``z`` comes from a 65,536-point table with linear interpolation (tails truncated at
+-4.3 standard deviations) and ``exp`` for small Poisson means from a fixed series: only +, -, *, /, sqrt,
floor and rint are used (powers by repeated squaring), which IEEE arithmetic rounds the same everywhere.
That is what lets the compiled kernel (``payroute_env/_fast.py``) and this numpy code produce bit-identical
trajectories.

Counts are float64 arrays holding whole numbers (exact below 2**53), which keeps arithmetic cheap.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

__all__ = [
    "NORMAL_TABLE",
    "binomial",
    "exp_neg",
    "key_from_seed",
    "next_key",
    "normal_quantile",
    "poisson",
    "split",
    "uniforms",
]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S32 = (np.uint64(s) for s in (30, 27, 31, 11, 32))
_TO_UNIT = 2.0**-53
POISSON_NORMAL_FROM = 12.0
_TABLE_SIZE = 1 << 16
# ndtri at the midpoints (i + 0.5) / 65536: the normal quantile, linearly interpolated in between.
NORMAL_TABLE = ndtri((np.arange(_TABLE_SIZE) + 0.5) / _TABLE_SIZE)
_EXP_TERMS = 18


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (uint64 arithmetic wraps modulo 2**64 by design)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def key_from_seed(seed: int | np.ndarray) -> np.ndarray:
    """64-bit environment keys from integer seeds (any non-negative int, scalar or array)."""
    s = np.asarray(seed, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_mix(s + _GOLDEN))


def next_key(key: np.ndarray) -> np.ndarray:
    """The key of the next episode when reset is called without a seed."""
    with np.errstate(over="ignore"):
        return _mix(key + _GOLDEN * np.uint64(3))


def uniforms(keys: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:
    """``(len(keys), n)`` uniforms in (0, 1), a pure function of each (key, step, column)."""
    with np.errstate(over="ignore"):
        ctr = (step.astype(np.uint64)[:, None] << _S32) + np.arange(n, dtype=np.uint64)
        x = _mix(keys[:, None] ^ _mix(ctr * _GOLDEN + _GOLDEN))
    return ((x >> _S11).astype(np.float64) + 0.5) * _TO_UNIT


def normal_quantile(u: np.ndarray) -> np.ndarray:
    """Standard normal quantile of ``u`` in (0, 1) from ``NORMAL_TABLE`` (linear interpolation)."""
    x = u * _TABLE_SIZE - 0.5
    i = np.clip(np.floor(x), 0.0, _TABLE_SIZE - 2)
    f = np.clip(x - i, 0.0, 1.0)
    lo = NORMAL_TABLE[i.astype(np.int64)]
    hi = NORMAL_TABLE[i.astype(np.int64) + 1]
    return lo + f * (hi - lo)


def exp_neg(x: np.ndarray) -> np.ndarray:
    """``exp(-x)`` for 0 <= x < 16 with basic arithmetic only (series for x/16, then squared 4 times)."""
    y = x / 16.0
    r = np.ones_like(y)
    for j in range(_EXP_TERMS, 0, -1):
        r = 1.0 - y * r / j
    for _ in range(4):
        r = r * r
    return r


def poisson(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Poisson counts with means ``lam`` from uniforms ``u`` (same shape)."""
    out = np.maximum(np.rint(lam + np.sqrt(lam) * normal_quantile(u)), 0.0)
    small = lam < POISSON_NORMAL_FROM
    if small.any():
        ls, us = lam[small], u[small]
        k = np.zeros_like(ls)
        p = exp_neg(ls)
        cdf = p.copy()
        for i in range(1, 80):
            above = us > cdf
            if not above.any():
                break
            k += above
            p = p * ls / i
            cdf += p
        out[small] = k
    return out


BINOMIAL_NORMAL_FROM = 10.0  # the normal approximation is used when n p and n (1 - p) are both at least this
_INVERSION_STEPS = 80  # enough for means below 10 (P(X >= 80) < 1e-40)


def _int_power(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``base ** exponent`` for whole exponents by repeated squaring (multiplications only)."""
    result = np.ones_like(base)
    e = exponent.astype(np.int64)
    b = base.copy()
    while (e > 0).any():
        result = np.where(e & 1, result * b, result)
        b = b * b
        e = e >> 1
    return result


def binomial(n: np.ndarray, p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Binomial(n, p) counts (n whole numbers as floats) from uniforms ``u`` of n's shape.

    Exact inversion when ``min(n p, n (1-p)) < 10`` (counting the rarer outcome), the normal approximation
    ``clip(round(n p + sqrt(n p (1-p)) z), 0, n)`` otherwise (there clipping cuts beyond 3 standard
    deviations, so the mean stays unbiased to a few parts in ten thousand of a standard deviation).
    """
    n, p, u = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(p, dtype=np.float64), u)
    mean = n * p
    var = mean * (1.0 - p)
    out = np.clip(np.rint(mean + np.sqrt(var) * normal_quantile(u)), 0.0, n)
    rare_is_failure = p > 0.5
    q_rare = np.where(rare_is_failure, 1.0 - p, p)  # probability of the rarer outcome
    small = (n > 0) & (n * q_rare < BINOMIAL_NORMAL_FROM)
    if small.any():
        ns, qs, us = n[small], q_rare[small], u[small]
        ratio = qs / (1.0 - qs)
        pk = _int_power(1.0 - qs, ns)
        cdf = pk.copy()
        x = np.zeros_like(ns)
        for i in range(1, _INVERSION_STEPS):
            above = us > cdf
            if not above.any():
                break
            x += above
            pk = pk * (ns - (i - 1)) / i * ratio
            cdf += pk
        x = np.minimum(x, ns)
        out[small] = np.where(rare_is_failure[small], ns - x, x)
    return out


def split(total: np.ndarray, weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Split whole ``total[..., ]`` over the last axis of ``weights`` exactly (systematic rounding).

    ``weights`` has shape ``total.shape + (m,)``, ``u`` has ``total``'s shape. Parts are within one of
    ``total * w / sum(w)``, unbiased, and sum to ``total``. All-zero weights put everything in part 0.
    """
    w = np.maximum(weights, 0.0)
    cum = np.cumsum(w, axis=-1)
    wsum = cum[..., -1:]
    frac = np.divide(cum, wsum, out=np.ones_like(cum), where=wsum > 0)
    # min(): floor(total + u) can round up to total + 1 when u is within an ulp of 1
    edges = np.minimum(np.floor(frac * total[..., None] + u[..., None]), total[..., None])
    edges[..., -1] = total  # exact, whatever the float rounding of the last cumulative weight
    return np.diff(edges, axis=-1, prepend=np.zeros_like(edges[..., :1]))
