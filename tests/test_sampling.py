"""Counter-based sampling: uniforms, Poisson and binomial counts, exact splitting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from payroute_env import physics, sampling
from payroute_env.sampling import key_from_seed, next_key, uniforms


# The samplers are scalar compiled functions (the kernel calls them one count at a time); these loops
# apply them element-wise to arrays, so the tests can draw hundreds of thousands of counts at once.
@njit
def _poisson_each(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    out = np.empty(lam.shape[0])
    for i in range(lam.shape[0]):
        out[i] = sampling.poisson(lam[i], u[i])
    return out


@njit
def _binomial_each(n: np.ndarray, p: np.ndarray, u: np.ndarray) -> np.ndarray:
    out = np.empty(n.shape[0])
    for i in range(n.shape[0]):
        out[i] = sampling.binomial(n[i], p[i], u[i])
    return out


@njit
def _split_each(total: np.ndarray, weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    n, m = weights.shape
    out = np.zeros((m, n))  # physics.split adds into column k of a [parts, columns] array
    cum = np.empty(m)
    for i in range(n):
        physics.cumulative_shares(weights, i, cum)
        physics.split(total[i], cum, u[i], out, i)
    return out.T.copy()


def _flat(*arrays: object) -> list[np.ndarray]:
    return [np.ascontiguousarray(a, dtype=np.float64).ravel() for a in np.broadcast_arrays(*arrays)]


def poisson(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    lam_b, u_b = np.broadcast_arrays(np.asarray(lam, dtype=np.float64), np.asarray(u, dtype=np.float64))
    return _poisson_each(*_flat(lam_b, u_b)).reshape(lam_b.shape)


def binomial(n: np.ndarray, p: np.ndarray | float, u: np.ndarray) -> np.ndarray:
    n_b, p_b, u_b = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (n, p, u)))
    return _binomial_each(*_flat(n_b, p_b, u_b)).reshape(n_b.shape)


def split(total: np.ndarray, weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(weights, dtype=np.float64)
    m = w.shape[-1]
    flat_total, flat_u = _flat(total, u)
    return _split_each(flat_total, w.reshape(-1, m), flat_u).reshape(w.shape)


DRAWS = 200_000


def _u(n: int, seed: int = 0) -> np.ndarray:
    """``n`` uniforms from the module itself (one key, one step, n columns)."""
    return uniforms(key_from_seed(np.array([seed])), np.array([0]), n)[0]


def _check_mean_var(x: np.ndarray, mean: float, var: float, mu4: float, extra_var: float = 0.0) -> None:
    """Sample mean within 5 standard errors; sample variance within 5 SE (+ a documented allowance)."""
    n = x.size
    se_mean = np.sqrt(max(var, 1e-12) / n)
    assert abs(x.mean() - mean) <= 5 * se_mean + 1e-12, (x.mean(), mean)
    se_var = np.sqrt(max(mu4 - var**2, 1e-12) / n)
    assert abs(x.var() - var) <= 5 * se_var + extra_var + 1e-12, (x.var(), var)


# ------------------------------------------------------------------------------------------ uniforms


def test_uniforms_are_strictly_inside_the_unit_interval_and_uniform() -> None:
    keys = np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
    steps = np.array([0, 1, 2**31 - 1, 10**9], dtype=np.int64)
    u = uniforms(keys, steps, 50_000)
    assert u.shape == (4, 50_000) and u.dtype == np.float64
    assert (u > 0).all() and (u < 1).all()
    flat = u.ravel()
    assert abs(flat.mean() - 0.5) < 5 * np.sqrt(1 / 12 / flat.size)
    assert abs(flat.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / flat.size)
    # each decile holds about a tenth
    hist = np.histogram(flat, bins=10, range=(0, 1))[0] / flat.size
    assert np.all(np.abs(hist - 0.1) < 5 * np.sqrt(0.09 / flat.size))


def test_uniforms_are_a_pure_function_of_key_step_and_column() -> None:
    keys = key_from_seed(np.arange(5))
    steps = np.array([0, 3, 3, 7, 100])
    a = uniforms(keys, steps, 40)
    b = uniforms(keys.copy(), steps.copy(), 40)
    assert a.tobytes() == b.tobytes()
    # a prefix of columns does not depend on how many columns are drawn
    assert np.array_equal(uniforms(keys, steps, 10), a[:, :10])


def test_a_keys_row_does_not_depend_on_the_rest_of_the_batch() -> None:
    keys = key_from_seed(np.array([11, 12, 13, 14]))
    steps = np.array([5, 0, 5, 9])
    batch = uniforms(keys, steps, 30)
    for i in range(4):
        alone = uniforms(keys[i : i + 1], steps[i : i + 1], 30)
        assert np.array_equal(alone[0], batch[i])
    # and in a different order or next to other keys
    perm = [2, 0, 3, 1]
    assert np.array_equal(uniforms(keys[perm], steps[perm], 30), batch[perm])


def test_uniforms_differ_between_keys_steps_and_columns() -> None:
    keys = key_from_seed(np.arange(20))
    u_steps = np.concatenate([uniforms(keys, np.full(20, s), 50).ravel() for s in range(20)])
    assert np.unique(u_steps).size == u_steps.size  # no repeats across 20 keys x 20 steps x 50 columns


def test_keys_from_seeds_are_distinct_and_next_key_moves_on() -> None:
    keys = key_from_seed(np.arange(10_000))
    assert keys.dtype == np.uint64
    assert np.unique(keys).size == keys.size
    assert np.array_equal(key_from_seed(np.arange(10_000)), keys)
    nxt = next_key(keys)
    assert np.unique(nxt).size == nxt.size
    assert not np.any(nxt == keys)
    assert np.array_equal(next_key(keys), nxt)


# ------------------------------------------------------------------------------------------ poisson


@pytest.mark.parametrize("lam", [0.05, 0.7, 3.0, 11.5, 12.0, 30.0, 400.0, 1e5])
def test_poisson_mean_and_variance(lam: float) -> None:
    x = poisson(np.full(DRAWS, lam), _u(DRAWS, seed=int(lam * 100)))
    assert (x >= 0).all() and np.array_equal(x, np.round(x))
    # mu4 of a Poisson is lam (1 + 3 lam); the normal approximation for large means rounds to integers,
    # which adds up to 1/12 to the variance (documented: "the same mean and variance" to within rounding)
    _check_mean_var(x, lam, lam, lam * (1 + 3 * lam), extra_var=1 / 12)


def test_poisson_small_means_are_exact() -> None:
    lam = 2.0
    x = poisson(np.full(DRAWS, lam), _u(DRAWS, seed=7))
    k = np.arange(8)
    pmf = np.exp(-lam) * lam**k / np.cumprod(np.concatenate([[1], np.arange(1, 8)]))
    freq = np.array([(x == i).mean() for i in k])
    assert np.all(np.abs(freq - pmf) < 5 * np.sqrt(pmf * (1 - pmf) / DRAWS))


def test_poisson_of_zero_is_zero_and_shapes_are_kept() -> None:
    lam = np.array([[0.0, 5.0, 50.0], [0.0, 1e6, 2.5]])
    u = np.full(lam.shape, 0.999999)
    x = poisson(lam, u)
    assert x.shape == lam.shape
    assert x[0, 0] == 0 and x[1, 0] == 0


# ------------------------------------------------------------------------------------------ binomial


@pytest.mark.parametrize(
    ("n", "p"),
    [(1, 0.3), (1, 0.97), (10, 0.5), (40, 0.5), (300, 0.02), (1000, 0.5), (50_000, 0.3), (10**7, 0.999)],
)
def test_binomial_mean_and_variance(n: int, p: float) -> None:
    x = binomial(np.full(DRAWS, float(n)), p, _u(DRAWS, seed=n))
    assert (x >= 0).all() and (x <= n).all() and np.array_equal(x, np.round(x))
    var = n * p * (1 - p)
    mu4 = var * (1 + 3 * (n - 2) * p * (1 - p))  # fourth central moment of a binomial
    _check_mean_var(x, n * p, var, mu4, extra_var=1 / 12)


@pytest.mark.parametrize(("n", "p"), [(5, 0.1), (3, 0.2), (10**6, 1e-7), (2, 0.5)])
def test_binomial_tiny_variance_keeps_the_mean_and_the_range(n: int, p: float) -> None:
    """Tiny variances (exact inversion): unbiased, within [0, n], variance no larger than the binomial's."""
    x = binomial(np.full(DRAWS, float(n)), p, _u(DRAWS, seed=3))
    assert (x >= 0).all() and (x <= n).all() and np.array_equal(x, np.round(x))
    var = n * p * (1 - p)
    assert abs(x.mean() - n * p) <= 5 * np.sqrt(var / DRAWS)
    assert x.var() <= var + 5 * np.sqrt(var / DRAWS)


def test_binomial_edges() -> None:
    n = np.array([0.0, 7.0, 7.0, 1e6, 1e6, 3.0])
    p = np.array([0.5, 0.0, 1.0, 0.0, 1.0, 1.0])
    for u in (1e-12, 0.5, 1 - 1e-9):
        x = binomial(n, p, np.full(n.shape, u))
        assert np.array_equal(x, np.array([0.0, 0.0, 7.0, 0.0, 1e6, 3.0]))


@settings(max_examples=50, deadline=None)
@given(
    n=st.lists(st.integers(0, 10**9), min_size=1, max_size=20),
    p=st.floats(0.0, 1.0),
    u=st.floats(1e-15, 1 - 1e-6),
)
def test_binomial_stays_in_range_and_whole(n: list[int], p: float, u: float) -> None:
    nn = np.array(n, dtype=np.float64)
    x = binomial(nn, p, np.full(nn.shape, u))
    assert np.all(x >= 0) and np.all(x <= nn)
    assert np.array_equal(x, np.round(x))


@settings(max_examples=50, deadline=None)
@given(lam=st.lists(st.floats(0.0, 1e9), min_size=1, max_size=20), u=st.floats(1e-15, 1 - 1e-15))
def test_poisson_is_whole_and_non_negative(lam: list[float], u: float) -> None:
    x = poisson(np.array(lam), np.full(len(lam), u))
    assert np.all(np.isfinite(x)) and np.all(x >= 0) and np.array_equal(x, np.round(x))


# ------------------------------------------------------------------------------------------ split

weights_st = st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1e6)), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(total=st.integers(0, 10**12), weights=weights_st, u=st.floats(0.0, 0.999))
def test_split_sums_exactly_and_each_part_is_within_one_of_its_share(
    total: int, weights: list[float], u: float
) -> None:
    w = np.array(weights)
    parts = split(np.array([float(total)]), w[None], np.array([u]))[0]
    assert parts.shape == w.shape
    assert parts.sum() == total
    assert np.array_equal(parts, np.round(parts)) and (parts >= 0).all()
    if w.sum() > 0:
        share = total * w / w.sum()
        assert np.all(np.abs(parts - share) <= 1 + 1e-6 * max(1.0, total / 1e9))
        assert np.all(parts[w == 0] == 0)
    else:
        assert parts[0] == total


def test_split_batched_shapes_and_unbiased() -> None:
    n = 100_000
    total = np.full(n, 7.0)
    w = np.broadcast_to(np.array([1.0, 2.0, 0.0, 4.0]), (n, 4))
    parts = split(total, w, _u(n, seed=5))
    assert parts.shape == (n, 4)
    assert np.all(parts.sum(1) == 7)
    share = 7 * np.array([1, 2, 0, 4]) / 7
    assert np.allclose(parts.mean(0), share, atol=5 * 0.5 / np.sqrt(n))
    assert np.all(np.abs(parts - share) < 1)


def test_split_all_zero_and_negative_weights() -> None:
    total = np.array([5.0, 9.0])
    w = np.array([[0.0, 0.0, 0.0], [-1.0, 0.0, 3.0]])
    parts = split(total, w, np.array([0.3, 0.9]))
    assert np.array_equal(parts[0], [5.0, 0.0, 0.0])
    assert np.array_equal(parts[1], [0.0, 0.0, 9.0])


# --- regressions: bugs found by the test review -------------------------------------------------------------


def test_binomial_never_exceeds_n_when_p_is_one() -> None:
    n = np.array([1e9, 2.0**40])
    x = binomial(n, 1.0, np.full(2, 1 - 2.0**-25))  # a value uniforms() can return
    assert np.all(x <= n), x - n


@pytest.mark.parametrize(("n", "p"), [(12, 0.9), (20, 0.9), (20, 0.1), (30, 0.05), (50, 0.97), (3, 0.5), (1, 0.999)])
def test_binomial_mean_and_variance_are_exact_for_small_n_and_extreme_p(n: int, p: float) -> None:
    draws = 400_000
    u = uniforms(key_from_seed(np.array([1])), np.array([0]), draws)[0]
    x = binomial(np.full(draws, float(n)), p, u)
    var = n * p * (1 - p)
    assert abs(x.mean() - n * p) <= 5 * np.sqrt(var / draws), (x.mean(), n * p)
    # the sample variance has variance (mu4 - var^2) / draws, with the binomial mu4 = n p q (1 + 3 (n - 2) p q)
    mu4 = var * (1 + 3 * (n - 2) * p * (1 - p))
    assert abs(x.var() - var) <= 5 * np.sqrt((mu4 - var**2) / draws), (x.var(), var)
    assert ((x >= 0) & (x <= n) & (x == np.floor(x))).all()


@pytest.mark.parametrize("weights", [[0.0, 0.0], [1.0, 0.0], [2.0, 3.0, 0.0]])
def test_split_parts_are_never_negative_when_u_is_close_to_one(weights: list[float]) -> None:
    parts = split(np.array([5.0]), np.array([weights]), np.array([1 - 2.0**-54]))  # max of uniforms()
    assert parts.sum() == 5
    assert (parts >= 0).all(), parts
