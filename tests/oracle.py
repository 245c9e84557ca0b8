"""The numpy implementation of one step as it was before the dynamics moved into one compiled source.

A test oracle only (``tests/test_physics.py``): ``payroute_env/physics.py`` must reproduce it bit for bit, which
proves that the move changed no trajectory and so no figure in README or docs/. It is not part of the package
and is not to be read as the model (``physics.py`` is); when the model changes on purpose, this file goes.
"""

# ruff: noqa
from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from payroute_env.core import (
    LATENCY_BIN_S, LATENCY_BINS, N_ROUTES, PAID_CHANNELS, RHO_MAX, SEEN_FIELDS, CoreParams, CoreState,
)
from payroute_env.observations import BANK_FEATURES, GLOBAL_FEATURES, INTERNAL_BANK, INTERNAL_SWITCH, OBS_HIGH

ADMIT_LEVELS = np.linspace(0.0, 1.0, 11)
ADMIT_STEP = 0.1
ROUTE_PRESETS = np.array([[1.0, 0.0, 0.0], [0.75, 0.25, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
_WAIT = SEEN_FIELDS.index("wait_s")

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


def step_numpy(params: CoreParams, state: CoreState, admit: np.ndarray, route: np.ndarray) -> tuple[dict, dict]:
    """The reference implementation of ``step`` in numpy: the code to read."""
    p, s = params, state
    N, B, K = s.num_envs, p.n_banks, p.max_attempts
    P, L = p.n_pools, p.n_lanes
    dt = p.dt
    u_all = uniforms(s.key, s.t, p.n_draws)

    def u(name: str) -> np.ndarray:
        off, shape = p.draws[name]
        return u_all[:, off : off + int(np.prod(shape))].reshape(N, *shape)

    # 1. arrivals and returning users --------------------------------------------------------------
    t = np.minimum(s.t, p.n_steps - 1)
    expected = p.base_per_step[t] + s.peak_scale * p.surge_per_step[t]
    arrivals = poisson(expected[:, None] * s.pool_frac, u("arrivals"))  # [N, P]
    released = binomial(s.backlog, p.p_release, u("release"))  # [N, P, K]
    offered = released.copy()
    offered[:, :, 0] += arrivals

    # 2. throttle: a bank's admit rate applies to both its pools; balance is always admitted --------
    admit_pool = np.concatenate([np.repeat(admit, 2, axis=1), np.ones((N, 1))], axis=1)
    admitted = binomial(offered, admit_pool[:, :, None], u("admit"))
    throttled = offered - admitted

    # 3. route quick-enabled attempts over quick / switch / netbank ----------------------------------
    adm_quick = admitted[:, 0 : 2 * B : 2]  # [N, B, K]
    to_quick = binomial(adm_quick, route[:, :, 0:1], u("route_quick"))
    rest = adm_quick - to_quick
    rest_w = route[:, :, 1] + route[:, :, 2]
    sw_share = np.divide(route[:, :, 1], rest_w, out=np.zeros_like(rest_w), where=rest_w > 0)
    to_switch = binomial(rest, sw_share[:, :, None], u("route_switch"))
    bank_lanes = np.stack([to_quick, to_switch, rest - to_switch, admitted[:, 1 : 2 * B : 2]], axis=2)
    lane_in = np.concatenate([bank_lanes.reshape(N, 4 * B, K), admitted[:, 2 * B :]], axis=1)

    # 4. channels: reject at down servers, serve FIFO up to capacity, time out, succeed or decline ----
    down = s.down_left > 0  # [N, S]
    stress1 = np.minimum(s.stress, 1.0)
    health = np.where(down, 0.0, (1.0 - p.goodput_loss * stress1) * s.warm)
    cap_rate = s.capacity * health[:, p.channel_server]  # [N, C] attempts/s now
    cap_step = cap_rate * dt

    blocked = (down[:, p.lane_server] | down[:, p.lane_origin])[:, :, None]  # [N, L, 1]
    waiting = s.queue + lane_in
    rejected = np.where(blocked, waiting, 0.0)
    q = waiting - rejected
    q_ch = q.sum(2) @ p.lane_to_channel  # [N, C]
    serve_frac = np.minimum(1.0, np.divide(cap_step, q_ch, out=np.ones_like(q_ch), where=q_ch > 0))
    served = binomial(q, serve_frac[:, p.lane_channel, None], u("serve"))
    remain = q - served
    r_ch = remain.sum(2) @ p.lane_to_channel
    # FIFO with a deadline: the queue can hold only what the channel serves within the timeout.
    excess = np.maximum(r_ch - cap_rate * p.timeout_s, 0.0)
    timeout_frac = np.divide(excess, r_ch, out=np.zeros_like(r_ch), where=r_ch > 0)
    timed_out = binomial(remain, timeout_frac[:, p.lane_channel, None], u("timeout"))
    queue = remain - timed_out

    p_success = p.success * (1.0 - p.decline_gain[p.lane_server] * stress1[:, p.lane_server])  # [N, L]
    succeeded = binomial(served, p_success[:, :, None], u("success"))
    declined = served - succeeded

    # 5. users after a failure: abandon, switch or retry; the K-th failure loses the intent ----------
    lane_fail = declined + timed_out + rejected
    pool_fail = _lanes_to_pools(lane_fail, B) + throttled  # [N, P, K]
    can_retry = pool_fail[:, :, : K - 1]
    abandon = binomial(can_retry, p.p_abandon, u("abandon"))
    switch = binomial(can_retry - abandon, p.p_switch_given_stay, u("switch"))
    retry = can_retry - abandon - switch
    to_balance = binomial(switch, p.p_to_balance[None, :, None], u("to_balance"))
    to_banks = switch - to_balance
    # each origin pool's card switchers spread over the other banks' pools (exact totals)
    spread = split(to_banks, np.broadcast_to(s.dest[:, :, None, :], (*to_banks.shape, P)), u("dest"))
    moved = spread.sum(1).transpose(0, 2, 1)  # [N, P (destination), K-1]
    moved[:, 2 * B, :] += to_balance.sum(1)
    backlog = s.backlog - released
    backlog[:, :, 1:] += retry + moved
    lost_pool = abandon.sum(2) + pool_fail[:, :, K - 1]

    # 6. server stress, outages and warm-up ---------------------------------------------------------
    load = _channels_to_servers((lane_in * ~blocked).sum(2) @ p.lane_to_channel, B)  # [N, S]
    cap_srv = _channels_to_servers(cap_step, B)
    # load / capacity, capped: a server with (almost) no capacity under load is simply far overloaded
    rho = np.minimum(np.divide(load, cap_srv, out=np.where(load > 0, RHO_MAX, 0.0), where=cap_srv > 0), RHO_MAX)
    drift = s.grow_rate * np.maximum(rho - 1.0, 0.0) - p.relax_rate * np.maximum(1.0 - rho, 0.0)
    stress = np.where(down, 0.0, np.maximum(s.stress + dt * drift, 0.0))
    trigger = ~down & ((stress >= 1.0) | (u("hazard") < p.hazard_p))
    length = p.outage_min_s + u("outage_len") * (p.outage_max_s - p.outage_min_s)
    down_next = np.maximum(s.down_left - p.dt, 0.0)
    warm_next = np.where(down_next > 0, s.warm, np.minimum(s.warm + p.dt * p.warm_rate, 1.0))
    down_left = np.where(trigger, length, down_next)
    stress = np.where(trigger, 0.0, stress)
    warm = np.where(trigger, p.warm_start, warm_next)

    # 7. what the platform sees, and the episode counters ----------------------------------------
    wait_ch = np.minimum(
        np.divide(queue.sum(2) @ p.lane_to_channel, cap_rate, out=np.zeros_like(cap_rate), where=cap_rate > 0),
        p.timeout_s,
    )
    wait_ch = np.where((cap_rate <= 0) & (queue.sum(2) @ p.lane_to_channel > 0), p.timeout_s, wait_ch)
    seen_channel = np.stack(
        [
            _lanes_to_routes(lane_in.sum(2), B),
            _lanes_to_routes(succeeded.sum(2), B),
            _lanes_to_routes(declined.sum(2), B),
            _lanes_to_routes(timed_out.sum(2), B),
            _lanes_to_routes(rejected.sum(2), B),
            _lanes_to_routes(queue.sum(2), B),
            _channels_to_routes(wait_ch, B),
        ],
        axis=-1,
    )
    pool_off, pool_thr = offered.sum(2), throttled.sum(2)
    seen_bank = np.stack(
        [
            pool_off[:, 0 : 2 * B : 2] + pool_off[:, 1 : 2 * B : 2],
            pool_thr[:, 0 : 2 * B : 2] + pool_thr[:, 1 : 2 * B : 2],
            backlog[:, : 2 * B].sum(2).reshape(N, B, 2).sum(2),
        ],
        axis=-1,
    )
    seen_balance = np.stack([lane_in[:, L - 1].sum(1), succeeded[:, L - 1].sum(1), queue[:, L - 1].sum(1)], 1)

    # Estimated time to success: wait in the queue this step + the channel's user time + for each earlier
    # attempt one retry delay and one interaction (docs/MODEL.md, "time to success").
    wait_before = np.minimum(np.divide(q_ch, cap_rate, out=np.zeros_like(q_ch), where=cap_rate > 0), p.timeout_s)[
        :, p.lane_channel
    ]
    k = np.arange(K)
    latency = (wait_before + p.interaction_s)[:, :, None] + k * (p.retry_delay_s + p.interaction_s[:, None])
    bins = np.minimum((latency / LATENCY_BIN_S).astype(np.int64), LATENCY_BINS - 1)
    flat = (np.arange(N)[:, None, None] * LATENCY_BINS + bins).ravel()
    hist = np.bincount(flat, weights=succeeded.ravel(), minlength=N * LATENCY_BINS).reshape(N, LATENCY_BINS)
    paid_lane = succeeded.sum(2)
    paid_by = np.stack([paid_lane[:, p.lane_kind == i].sum(1) for i in range(len(PAID_CHANNELS))], axis=1)

    counts = dict(
        arrived=arrivals.sum(1),
        succeeded=paid_lane.sum(1),
        lost=lost_pool.sum(1),
        attempts=offered.sum((1, 2)),
        failed_attempts=pool_fail.sum((1, 2)),
        truncated=s.t + 1 >= p.n_steps,
    )
    new_state = dict(
        key=s.key,
        t=s.t + 1,
        backlog=backlog,
        queue=queue,
        stress=stress,
        down_left=down_left,
        warm=warm,
        admit=admit,
        route=route,
        peak_scale=s.peak_scale,
        capacity=s.capacity,
        pool_frac=s.pool_frac,
        dest=s.dest,
        grow_rate=s.grow_rate,
        seen_bank=seen_bank,
        seen_channel=seen_channel,
        seen_balance=seen_balance,
        arrived=s.arrived + counts["arrived"],
        succeeded=s.succeeded + counts["succeeded"],
        lost=s.lost + counts["lost"],
        attempts=s.attempts + counts["attempts"],
        failed_attempts=s.failed_attempts + counts["failed_attempts"],
        entered_pool=s.entered_pool + arrivals + moved.sum(2),
        lost_pool=s.lost_pool + lost_pool,
        outage_s=s.outage_s + dt * down,
        paid_by=s.paid_by + paid_by,
        latency_hist=s.latency_hist + hist,
    )
    return new_state, counts



def _lanes_to_pools(x: np.ndarray, B: int) -> np.ndarray:
    """``[N, L, ...]`` lane counts to ``[N, P, ...]`` pool counts (quick-enabled lanes 0-2, netbank-only 3)."""
    banks = x[:, : 4 * B].reshape(x.shape[0], B, 4, *x.shape[2:])
    pools = np.stack([banks[:, :, :3].sum(2), banks[:, :, 3]], axis=2).reshape(x.shape[0], 2 * B, *x.shape[2:])
    return np.concatenate([pools, x[:, 4 * B :]], axis=1)


def _channels_to_servers(x: np.ndarray, B: int) -> np.ndarray:
    """``[N, C]`` to ``[N, S]``: a bank core serves its quick and netbank channels (added in that order)."""
    return np.concatenate([x[:, :B] + x[:, B : 2 * B], x[:, 2 * B :]], axis=1)


def _lanes_to_routes(x: np.ndarray, B: int) -> np.ndarray:
    """``[N, L]`` to ``[N, B, 3]`` per bank: quick, switch (this bank's cards), netbank (both classes)."""
    banks = x[:, : 4 * B].reshape(x.shape[0], B, 4)
    return np.stack([banks[:, :, 0], banks[:, :, 1], banks[:, :, 2] + banks[:, :, 3]], axis=2)


def _channels_to_routes(x: np.ndarray, B: int) -> np.ndarray:
    """``[N, C]`` to ``[N, B, 3]``: the bank's quick channel, the shared switch, the bank's netbank."""
    return np.stack([x[:, :B], np.repeat(x[:, 2 * B : 2 * B + 1], B, axis=1), x[:, B : 2 * B]], axis=2)


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
    raise ValueError(mode)


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
