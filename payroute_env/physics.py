"""The dynamics of payroute: one source, compiled with numba, read top to bottom like docs/MODEL.md section 2.

This is the only place where the model moves. ``core.py`` lays out the parameters and the state and draws
each episode's world at reset; ``core.step_in_place`` calls ``step_batch_serial`` or ``step_batch_parallel``
once per step for a whole batch. Each phase
below is one subsection of docs/MODEL.md section 2 and works on one environment:

=================================  ===========================================================================
``arrivals_and_returns``           2.1 and 2.2: new intents arrive, users waiting to retry come back
``throttle``                       2.2: the admit rate lets a share of each bank's attempts through
``route``                          2.3: admitted quick-enabled attempts split over quick / switch / netbank
``channels``                       2.4: reject at down servers, serve FIFO up to capacity, time out, decline
``users_after_failure``            2.6: every failed attempt's user abandons, switches or retries later
``servers``                        2.5: stress follows load, collapse into an outage, warm up after it
``what_the_platform_sees``         2.9: the per-step counters the observation is made of, and the KPIs
=================================  ===========================================================================

then ``observe`` writes the observation vector and ``step_env`` the reward. Every step runs on three
things: ``p``, the scenario's parameters (``Params``, built once by ``core.make_params``); ``s``, the
environment's state (``EnvState``: views into its record of ``core.state_dtype``, updated in place); ``w``,
scratch arrays reused from one environment to the next (``Scratch``). Counts are float64 holding whole
numbers, so ``arrived == succeeded + lost + in_flight`` holds exactly.

Random draws: draw ``j`` of kind ``D_*`` for environment state ``s`` at its step ``t`` is
``uniform(key, step_counter(t), p.draw_offset[D_*] + j)``; a trajectory depends only on its own key.

With ``NUMBA_DISABLE_JIT=1`` this module runs as plain Python (slowly), for stepping through it in a debugger.

The batch kernels are compiled once per checkout and kept in numba's on-disk cache (``__pycache__``; the first
step of a fresh checkout compiles the serial kernel, about 100 s on the 2-core machine, the first batch large
enough for threads the parallel one, about 20 s more). Their types do not depend on the scenario, so every
scenario of any size shares them. numba checks only this file's time stamp: after editing ``sampling.py``
alone, delete ``payroute_env/__pycache__/*.nbi`` and ``*.nbc`` (or touch this file).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import carray, njit, prange, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from .sampling import binomial_at, poisson, step_counter, uniform

# Kinds of random draw, in the order of their columns (``CoreParams.draws`` gives their columns and shapes).
D_ARRIVALS, D_RELEASE, D_ADMIT, D_ROUTE = 0, 1, 2, 3
D_SERVE, D_TIMEOUT, D_SUCCESS = 4, 5, 6
D_ABANDON, D_SWITCH, D_TO_BALANCE, D_DEST = 7, 8, 9, 10
D_HAZARD, D_OUTAGE_LEN = 11, 12

# How an action row is read (``actions.MODE_CODES``); CONTROL is the decoded control itself: admit, route.
CONTINUOUS, MULTIDISCRETE, DISCRETE, CONTROL = 0, 1, 2, 3
ADMIT_STEP = 0.1  # one discrete action moves an admit rate by this much
OBS_HIGH = 1e6  # observations are clipped here: far beyond any real load, but finite for the checkers
LATENCY_BIN_S = 5.0


class Scratch(NamedTuple):
    """What one environment's step computes on the way (whole-number counts, float64), reused between envs.

    Shapes: P pools, L lanes, C channels, S servers, K attempt numbers (``core.py`` has the index maps).
    """

    arrivals: np.ndarray  # [P] new intents
    released: np.ndarray  # [P, K] users back from the retry backlog
    offered: np.ndarray  # [P, K] attempts made this step (new and returning)
    admitted: np.ndarray  # [P, K]
    throttled: np.ndarray  # [P, K] "busy, try later"
    lane_in: np.ndarray  # [L, K] attempts sent to each lane
    down: np.ndarray  # [S] 1.0 if the server is down at the start of the step, else 0.0
    stress1: np.ndarray  # [S] stress capped at 1
    cap_rate: np.ndarray  # [C] attempts/s the channel processes now
    cap_step: np.ndarray  # [C] attempts it processes this step
    blocked: np.ndarray  # [L] 1.0 if the lane's server or issuing bank is down, else 0.0
    waiting: np.ndarray  # [L, K] queue after rejections
    rejected: np.ndarray  # [L, K]
    q_ch: np.ndarray  # [C] attempts waiting per channel
    served: np.ndarray  # [L, K]
    remain: np.ndarray  # [L, K] waiting, not served
    r_ch: np.ndarray  # [C]
    timed_out: np.ndarray  # [L, K]
    succeeded: np.ndarray  # [L, K]
    declined: np.ndarray  # [L, K]
    pool_fail: np.ndarray  # [P, K] failed attempts per pool
    moved: np.ndarray  # [P, K] card switchers arriving in each pool
    lost: np.ndarray  # [P] intents lost this step
    cum: np.ndarray  # [P] cumulative weights for a split
    load_ch: np.ndarray  # [C] attempts that reached the channel
    not_quick: np.ndarray  # [B, K] admitted quick-enabled attempts not routed to quick
    abandon: np.ndarray  # [P, K] failures (k < K - 1) whose user abandons
    stay: np.ndarray  # [P, K] ... who does not
    switched: np.ndarray  # [P, K] ... who switches card or method
    to_balance: np.ndarray  # [P, K] ... who switches to balance
    ch_num: np.ndarray  # [C] a channel's systematic sampling (``_walk``): take num / den of its queue
    ch_den: np.ndarray  # [C]
    ch_u: np.ndarray  # [C] its uniform
    ch_pos: np.ndarray  # [C] position along the queue so far
    ch_edge: np.ndarray  # [C] attempts taken so far
    q_left: np.ndarray  # [C] attempts left in the queue after the step


# ------------------------------------------------------------------------------------------ views
# The kernel reads the state records and its scratch space through views that do not own memory. numba
# reference-counts every array view it makes (two atomic operations each); an environment's step makes
# dozens, which cost about as much as a phase. ``field`` makes a view that holds no reference: whoever calls
# the kernel keeps the memory alive (the caller's state array; ``_step_range``'s scratch buffer).


@intrinsic
def _address(typingctx, arr, offset):
    """The address ``offset`` bytes into ``arr``'s data (numba only)."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        data = builder.bitcast(ary.data, context.get_value_type(types.voidptr))
        return builder.gep(data, [args[1]])

    return types.voidptr(arr, offset), codegen


def field(buf: np.ndarray, start: int, n: int, dtype: type) -> np.ndarray:
    """``n`` values of ``dtype`` from byte ``start`` of the contiguous array ``buf``, as a view of it (plain
    Python: with ``NUMBA_DISABLE_JIT=1``; compiled, the view holds no reference, see above)."""
    raw = buf.reshape(-1).view(np.uint8)
    return raw[start : start + n * np.dtype(dtype).itemsize].view(dtype)


@overload(field)
def _field_compiled(buf, start, n, dtype):
    np_dtype = as_dtype(dtype.dtype)

    def impl(buf, start, n, dtype):
        return carray(_address(buf, start), (n,), np_dtype)

    return impl


# shapes of the Scratch fields, in order: rows (0 = P, 1 = L, 2 = C, 3 = S, 4 = B), then 1 or K columns
_SCRATCH_ROWS = np.array([0, 0, 0, 0, 0, 1, 3, 3, 2, 2, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 0, 0, 0, 0, 2, 4, 0, 0, 0, 0,
                          2, 2, 2, 2, 2, 2])  # fmt: skip
_SCRATCH_BY_K = np.array([0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1,
                          0, 0, 0, 0, 0, 0])  # fmt: skip


@njit(inline="always")
def _scratch_shape(j, P, L, C, S, K):
    code = _SCRATCH_ROWS[j]
    rows = P if code == 0 else (L if code == 1 else (C if code == 2 else (S if code == 3 else (P - 1) // 2)))
    return rows, (K if _SCRATCH_BY_K[j] == 1 else 1)


@njit
def scratch_size(P: int, L: int, C: int, S: int, K: int) -> int:
    """How many float64 a worker's scratch arrays take (``scratch_views``)."""
    total = 0
    for j in range(36):
        rows, cols = _scratch_shape(j, P, L, C, S, K)
        total += rows * cols
    return total


@njit
def scratch_views(buf: np.ndarray, P: int, L: int, C: int, S: int, K: int) -> Scratch:
    """A worker's scratch arrays (each environment overwrites what it uses) as views of ``buf``
    (``scratch_size`` float64), which the caller keeps alive while they are used."""
    at = np.zeros(37, dtype=np.int64)
    for j in range(36):
        rows, cols = _scratch_shape(j, P, L, C, S, K)
        at[j + 1] = at[j] + rows * cols

    def m(j: int) -> np.ndarray:  # matrix j
        rows, cols = _scratch_shape(j, P, L, C, S, K)
        return field(buf, 8 * at[j], rows * cols, np.float64).reshape((rows, cols))

    def v(j: int) -> np.ndarray:  # vector j
        return field(buf, 8 * at[j], at[j + 1] - at[j], np.float64)

    return Scratch(
        v(0), m(1), m(2), m(3), m(4), m(5), v(6), v(7), v(8), v(9), v(10), m(11), m(12), v(13), m(14), m(15),
        v(16), m(17), m(18), m(19), m(20), m(21), v(22), v(23), v(24), m(25), m(26), m(27), m(28), m(29),
        v(30), v(31), v(32), v(33), v(34), v(35),
    )  # fmt: skip


class Params(NamedTuple):
    """The scenario's parameters as the kernel reads them (``core.make_params`` fills it; ``CoreParams``
    documents each field). Arrays, not a record with fixed-size fields, so the compiled kernel is the same
    for every number of banks and attempts: numba compiles a function once per argument *type*, and an
    array's type does not include its shape."""

    n_banks: int
    max_attempts: int
    dt: float
    norm: float
    p_release: float
    p_abandon: float
    p_switch_given_stay: float
    retry_delay_s: float
    rho_max: float
    count_scale: float
    lane_channel: np.ndarray  # int64 [L]
    lane_server: np.ndarray  # int64 [L]
    lane_origin: np.ndarray  # int64 [L]
    lane_kind: np.ndarray  # int64 [L]
    channel_server: np.ndarray  # int64 [C]
    declared: np.ndarray  # [C]
    timeout_s: np.ndarray  # [C]
    interaction_s: np.ndarray  # [L]
    success: np.ndarray  # [L]
    p_to_balance: np.ndarray  # [P]
    relax_rate: np.ndarray  # [S]
    goodput_loss: np.ndarray  # [S]
    decline_gain: np.ndarray  # [S]
    outage_min_s: np.ndarray  # [S]
    outage_max_s: np.ndarray  # [S]
    warm_start: np.ndarray  # [S]
    warm_rate: np.ndarray  # [S]
    hazard_p: np.ndarray  # [S]
    channel_scale: np.ndarray  # [B, 3, 7] observation multipliers of ``seen_channel``
    draw_offset: np.ndarray  # int64 [kinds of draw] first column of each kind
    admit_levels: np.ndarray  # [11]
    route_presets: np.ndarray  # [5, 3]
    state_offsets: np.ndarray  # int64 [len(STATE_FIELDS)] byte offset of each field in a state record


# The fields of an environment's state record (``core.state_dtype``), in their order. The kernel gets the
# records as rows of bytes and reads each one through ``EnvState``'s views at ``Params.state_offsets``.
STATE_FIELDS = (
    "key", "t", "backlog", "queue", "stress", "down_left", "warm", "admit", "route", "peak_scale", "capacity",
    "pool_frac", "dest", "grow_rate", "seen_bank", "seen_channel", "seen_balance", "arrived", "succeeded", "lost",
    "in_flight", "attempts", "failed_attempts", "entered_pool", "lost_pool", "outage_s", "paid_by", "latency_hist",
    "step_arrived", "step_succeeded", "step_lost", "step_attempts", "step_failed", "reward", "truncated", "obs",
)  # fmt: skip


class EnvState(NamedTuple):
    """One environment's state: views into its record (``core.CoreState`` documents the fields). Scalar fields
    are one-element arrays (``s.t[0]``) so that the kernel can write them."""

    key: np.ndarray
    t: np.ndarray
    backlog: np.ndarray
    queue: np.ndarray
    stress: np.ndarray
    down_left: np.ndarray
    warm: np.ndarray
    admit: np.ndarray
    route: np.ndarray
    peak_scale: np.ndarray
    capacity: np.ndarray
    pool_frac: np.ndarray
    dest: np.ndarray
    grow_rate: np.ndarray
    seen_bank: np.ndarray
    seen_channel: np.ndarray
    seen_balance: np.ndarray
    arrived: np.ndarray
    succeeded: np.ndarray
    lost: np.ndarray
    in_flight: np.ndarray  # intents waiting to retry or queued after the last step
    attempts: np.ndarray
    failed_attempts: np.ndarray
    entered_pool: np.ndarray
    lost_pool: np.ndarray
    outage_s: np.ndarray
    paid_by: np.ndarray
    latency_hist: np.ndarray
    step_arrived: np.ndarray
    step_succeeded: np.ndarray
    step_lost: np.ndarray
    step_attempts: np.ndarray
    step_failed: np.ndarray
    reward: np.ndarray
    truncated: np.ndarray
    obs: np.ndarray


N_PAID_KINDS = 4  # quick, switch, netbank, balance (core.PAID_CHANNELS)
N_LATENCY_BINS = 96  # 0 .. 480 s in LATENCY_BIN_S bins; the last collects anything longer
N_SEEN = 7  # counters per bank and route (core.SEEN_FIELDS)


@njit(inline="always")
def _f8(row, o, j, n):
    return field(row, o[j], n, np.float64)


@njit(inline="always")
def env_state(row, p):
    """The views of one environment's record (``row``: its bytes)."""
    B, K = p.n_banks, p.max_attempts
    P, L, C, S = 2 * B + 1, 4 * B + 1, 2 * B + 2, B + 2
    o = p.state_offsets
    n_obs = 34 * B + 9  # what observe writes: core.OBS_BANK * B + OBS_GLOBAL + OBS_INTERNAL_BANK * B + 5
    return EnvState(
        field(row, o[0], 1, np.uint64), field(row, o[1], 1, np.int64),
        _f8(row, o, 2, P * K).reshape((P, K)), _f8(row, o, 3, L * K).reshape((L, K)),
        _f8(row, o, 4, S), _f8(row, o, 5, S), _f8(row, o, 6, S), _f8(row, o, 7, B),
        _f8(row, o, 8, B * 3).reshape((B, 3)), _f8(row, o, 9, 1), _f8(row, o, 10, C), _f8(row, o, 11, P),
        _f8(row, o, 12, P * P).reshape((P, P)), _f8(row, o, 13, S), _f8(row, o, 14, B * 3).reshape((B, 3)),
        _f8(row, o, 15, B * 3 * N_SEEN).reshape((B, 3, N_SEEN)), _f8(row, o, 16, 3),
        _f8(row, o, 17, 1), _f8(row, o, 18, 1), _f8(row, o, 19, 1), _f8(row, o, 20, 1), _f8(row, o, 21, 1),
        _f8(row, o, 22, 1),
        _f8(row, o, 23, P), _f8(row, o, 24, P), _f8(row, o, 25, S), _f8(row, o, 26, N_PAID_KINDS),
        _f8(row, o, 27, N_LATENCY_BINS),
        _f8(row, o, 28, 1), _f8(row, o, 29, 1), _f8(row, o, 30, 1), _f8(row, o, 31, 1), _f8(row, o, 32, 1),
        _f8(row, o, 33, 1), field(row, o[34], 1, np.bool_), field(row, o[35], n_obs, np.float32),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ splitting counts
# Rows of whole counts, one cell per attempt number, are read as ``src[i, :n]`` and written as ``dst[j, :n]``
# (indices, not slices: the kernel passes its arrays down, and each helper is one loop without branches
# around it, which is what numba compiles into tight code).


@njit(inline="always")
def _edge(x, u):
    """``floor(x + u)`` for ``x >= 0`` and ``u`` in [0, 1), computed so that it never rounds up: ``x + u`` in
    floating point becomes the next whole number when u is within an ulp of 1 (then a whole x would gain one)."""
    whole = np.floor(x)
    return whole + (1.0 if x - whole >= 1.0 - u else 0.0)


@njit(inline="always")
def take(src, i, dst, j, n, num, den, u):
    """Take ``share = num / den`` (at most 1) of the attempts in row ``src[i, :n]`` into ``dst[j, :n]`` by
    systematic sampling with one uniform ``u``: the cells are laid end to end and an attempt is taken each
    time ``share * position + u`` crosses a whole number. Each cell gets within one of ``share`` of its
    content, unbiased over ``u``, never more than it holds; the row gets within one of ``share`` of its total.
    With a share of 0 or 1, or a row with one filled cell and a whole result, ``u`` does not matter (0 is
    passed and no uniform is drawn).

    This is how the platform applies its own decisions (it lets through exactly the admit rate and route
    split it chose, up to rounding), how a channel serves its capacity, and how a row's binomial count is
    spread over attempt numbers (``binomial_cells``).
    """
    pos = 0.0
    edge_before = 0.0
    for k in range(n):
        pos += src[i, k]
        edge = _edge(num * (pos / den), u)  # exactly num at pos = den (num / den * pos is not)
        dst[j, k] = min(max(edge - edge_before, 0.0), src[i, k])
        edge_before = edge


@njit(inline="always")
def take_at(src, i, dst, j, n, share, key, ctr, col):
    """``take`` of ``share`` with its uniform (draw ``col``) drawn only when it can matter."""
    u = uniform(key, ctr, col) if 0.0 < share < 1.0 else 0.0
    take(src, i, dst, j, n, min(max(share, 0.0), 1.0), 1.0, u)


@njit(inline="always")
def binomial_cells(src, i, dst, j, n, p, key, ctr, col):
    """Each attempt of row ``src[i, :n]`` does something with probability ``p``: ``dst[j, :n]`` gets how many,
    per cell. The row's total is Binomial(sum, p) (draw ``col``), spread over the cells in proportion to their
    content by ``take`` (draw ``col + 1``, only when more than one cell holds attempts).

    One binomial per row instead of one per cell: the row total has exactly the binomial distribution and
    each cell gets its share of it (unbiased, within one).
    """
    total = 0.0
    filled = 0
    for k in range(n):
        total += src[i, k]
        filled += 1 if src[i, k] > 0.0 else 0
    m = binomial_at(total, p, key, ctr, col)
    u = uniform(key, ctr, col + 1) if (filled > 1 and 0.0 < m < total) else 0.0
    take(src, i, dst, j, n, m, total if total > 0.0 else 1.0, u)


# ------------------------------------------------------------------------------------------ the phases


@njit(inline="always")
def arrivals_and_returns(p, traffic, s, w, key, ctr):
    """2.1, 2.2: Poisson arrivals around the surge curve; each waiting user comes back w.p. ``p_release``."""
    P, K = w.released.shape
    tt = min(s.t[0], traffic.shape[1] - 1)
    expected = traffic[0, tt] + s.peak_scale[0] * traffic[1, tt]
    for pool in range(P):
        lam = expected * s.pool_frac[pool]
        w.arrivals[pool] = poisson(lam, uniform(key, ctr, p.draw_offset[D_ARRIVALS] + pool)) if lam > 0 else 0.0
        col = p.draw_offset[D_RELEASE] + 2 * pool
        binomial_cells(s.backlog, pool, w.released, pool, K, p.p_release, key, ctr, col)
        for k in range(K):
            w.offered[pool, k] = w.released[pool, k]
        w.offered[pool, 0] += w.arrivals[pool]


@njit(inline="always")
def throttle(p, s, w, key, ctr):
    """2.2: a bank's admit rate applies to both its pools (exactly that share of each attempt number, up to
    rounding: ``take``); balance payers are always admitted."""
    P, K = w.offered.shape
    B = p.n_banks
    for pool in range(P):
        rate = s.admit[pool // 2] if pool < 2 * B else 1.0
        take_at(w.offered, pool, w.admitted, pool, K, rate, key, ctr, p.draw_offset[D_ADMIT] + pool)
        for k in range(K):
            w.throttled[pool, k] = w.offered[pool, k] - w.admitted[pool, k]


@njit(inline="always")
def route(p, s, w, key, ctr):
    """2.3: quick-enabled attempts split over quick / switch / netbank by the route weights (the quick share,
    then the switch share of the rest, each taken exactly up to rounding); netbank-only attempts go to
    netbank, balance to balance. Lane ``4b + r``: r = 0 quick, 1 switch, 2 and 3 netbank."""
    B, K = p.n_banks, w.admitted.shape[1]
    for b in range(B):
        rest_w = s.route[b, 1] + s.route[b, 2]
        switch_share = s.route[b, 1] / rest_w if rest_w > 0 else 0.0
        col = p.draw_offset[D_ROUTE] + 2 * b
        take_at(w.admitted, 2 * b, w.lane_in, 4 * b, K, s.route[b, 0], key, ctr, col)
        for k in range(K):
            w.not_quick[b, k] = w.admitted[2 * b, k] - w.lane_in[4 * b, k]
        take_at(w.not_quick, b, w.lane_in, 4 * b + 1, K, switch_share, key, ctr, col + 1)
        for k in range(K):
            w.lane_in[4 * b + 2, k] = w.not_quick[b, k] - w.lane_in[4 * b + 1, k]
            w.lane_in[4 * b + 3, k] = w.admitted[2 * b + 1, k]
    for k in range(K):
        w.lane_in[4 * B, k] = w.admitted[2 * B, k]


@njit(inline="always")
def channels(p, s, w, key, ctr):
    """2.4: FIFO queues with a deadline. Attempts at a down server (or, on the switch, for a down issuer) are
    rejected, queued ones included; each channel serves ``capacity * health * dt``; what it could not serve
    within the timeout times out; served attempts succeed or are declined (more declines under stress).

    Serving and timing out are what the channel does with its whole queue: the served (and the timed-out)
    attempts are spread over the channel's lanes and attempt numbers in proportion to their content, by
    systematic sampling along the channel's queue (one uniform per channel, ``w.ch_u``).
    """
    L, K = w.lane_in.shape
    C, S = w.cap_rate.shape[0], w.down.shape[0]
    for srv in range(S):
        w.down[srv] = 1.0 if s.down_left[srv] > 0 else 0.0
        w.stress1[srv] = min(s.stress[srv], 1.0)
    for c in range(C):
        srv = p.channel_server[c]
        health = 0.0 if w.down[srv] else (1.0 - p.goodput_loss[srv] * w.stress1[srv]) * s.warm[srv]
        w.cap_rate[c] = s.capacity[c] * health
        w.cap_step[c] = w.cap_rate[c] * p.dt
        w.q_ch[c] = 0.0
        w.r_ch[c] = 0.0

    for lane in range(L):
        w.blocked[lane] = max(w.down[p.lane_server[lane]], w.down[p.lane_origin[lane]])
        for k in range(K):
            arriving = s.queue[lane, k] + w.lane_in[lane, k]
            w.rejected[lane, k] = arriving if w.blocked[lane] else 0.0
            w.waiting[lane, k] = arriving - w.rejected[lane, k]
            w.q_ch[p.lane_channel[lane]] += w.waiting[lane, k]

    # serve: each channel serves min(queue, capacity this step)
    for c in range(C):
        _start_channel_walk(w, c, w.cap_step[c], w.q_ch[c], key, ctr, p.draw_offset[D_SERVE] + c)
    for lane in range(L):
        c = p.lane_channel[lane]
        for k in range(K):
            w.served[lane, k] = _walk(w, c, w.waiting[lane, k])
            w.remain[lane, k] = w.waiting[lane, k] - w.served[lane, k]
            w.r_ch[c] += w.remain[lane, k]

    # deadline: the queue holds only what the channel serves within the timeout
    for c in range(C):
        excess = max(w.r_ch[c] - w.cap_rate[c] * p.timeout_s[c], 0.0)
        _start_channel_walk(w, c, excess, w.r_ch[c], key, ctr, p.draw_offset[D_TIMEOUT] + c)
        w.q_left[c] = 0.0
    for lane in range(L):
        c = p.lane_channel[lane]
        for k in range(K):
            w.timed_out[lane, k] = _walk(w, c, w.remain[lane, k])
            s.queue[lane, k] = w.remain[lane, k] - w.timed_out[lane, k]
            w.q_left[c] += s.queue[lane, k]

    # served attempts succeed or are declined: one binomial per lane, spread over its attempt numbers
    for lane in range(L):
        srv = p.lane_server[lane]
        p_success = p.success[lane] * (1.0 - p.decline_gain[srv] * w.stress1[srv])
        col = p.draw_offset[D_SUCCESS] + 2 * lane
        binomial_cells(w.served, lane, w.succeeded, lane, K, p_success, key, ctr, col)
        for k in range(K):
            w.declined[lane, k] = w.served[lane, k] - w.succeeded[lane, k]


@njit(inline="always")
def _start_channel_walk(w, c, amount, content, key, ctr, col):
    """Prepare ``_walk`` to take ``min(amount, content)`` of channel ``c``'s ``content`` attempts."""
    if content <= 0.0 or amount <= 0.0:
        w.ch_num[c], w.ch_den[c], w.ch_u[c] = 0.0, 1.0, 0.0
    elif amount >= content:
        w.ch_num[c], w.ch_den[c], w.ch_u[c] = 1.0, 1.0, 0.0
    else:
        w.ch_num[c], w.ch_den[c], w.ch_u[c] = amount, content, uniform(key, ctr, col)
    w.ch_pos[c] = 0.0
    w.ch_edge[c] = 0.0


@njit(inline="always")
def _walk(w, c, cell):
    """The next cell of channel ``c``'s queue in the systematic sampling started by ``_start_channel_walk``
    (``take``, with the cells of one channel spread over several lanes): how many of its ``cell`` attempts
    are taken."""
    w.ch_pos[c] += cell
    edge = _edge(w.ch_num[c] * (w.ch_pos[c] / w.ch_den[c]), w.ch_u[c])
    taken = min(max(edge - w.ch_edge[c], 0.0), cell)
    w.ch_edge[c] = edge
    return taken


@njit(inline="always")
def _lane_fail(w, lane, k):
    return (w.declined[lane, k] + w.timed_out[lane, k]) + w.rejected[lane, k]


@njit(inline="always")
def users_after_failure(p, s, w, key, ctr):
    """2.6: after a failed attempt (declined, timed out, rejected or throttled) the user abandons, switches
    (to balance, or to another bank's card picked by card share) or retries later; the K-th failure loses
    the intent. Each choice is one binomial over a pool's failures, spread over their attempt numbers."""
    P, K = w.pool_fail.shape
    B = p.n_banks
    for k in range(K):
        for b in range(B):
            quick_enabled = _lane_fail(w, 4 * b, k) + _lane_fail(w, 4 * b + 1, k) + _lane_fail(w, 4 * b + 2, k)
            w.pool_fail[2 * b, k] = quick_enabled + w.throttled[2 * b, k]
            w.pool_fail[2 * b + 1, k] = _lane_fail(w, 4 * b + 3, k) + w.throttled[2 * b + 1, k]
        w.pool_fail[2 * B, k] = _lane_fail(w, 4 * B, k) + w.throttled[2 * B, k]

    for pool in range(P):
        w.lost[pool] = 0.0
        for k in range(K):
            s.backlog[pool, k] -= w.released[pool, k]
            w.moved[pool, k] = 0.0
    n = K - 1  # a failure of the last attempt is a loss, whatever the user would do
    for pool in range(P):
        col = p.draw_offset[D_ABANDON] + 2 * pool
        binomial_cells(w.pool_fail, pool, w.abandon, pool, n, p.p_abandon, key, ctr, col)
        for k in range(n):
            w.stay[pool, k] = w.pool_fail[pool, k] - w.abandon[pool, k]
        col = p.draw_offset[D_SWITCH] + 2 * pool
        binomial_cells(w.stay, pool, w.switched, pool, n, p.p_switch_given_stay, key, ctr, col)
        col = p.draw_offset[D_TO_BALANCE] + 2 * pool
        binomial_cells(w.switched, pool, w.to_balance, pool, n, p.p_to_balance[pool], key, ctr, col)
        to_cards = 0.0
        for k in range(n):
            s.backlog[pool, k + 1] += w.stay[pool, k] - w.switched[pool, k]  # retry the same card
            w.moved[2 * B, k] += w.to_balance[pool, k]
            w.lost[pool] += w.abandon[pool, k]
            to_cards += w.switched[pool, k] - w.to_balance[pool, k]
        if to_cards > 0:  # card switchers go to other banks' pools by card share (s.dest)
            u = uniform(key, ctr, p.draw_offset[D_DEST] + pool)
            cumulative_shares(s.dest, pool, w.cum)
            for k in range(n):
                to_card = w.switched[pool, k] - w.to_balance[pool, k]
                if to_card > 0:
                    split(to_card, w.cum, u, w.moved, k)
        w.lost[pool] += w.pool_fail[pool, K - 1]
    for pool in range(P):
        for k in range(K - 1):
            s.backlog[pool, k + 1] += w.moved[pool, k]


@njit(inline="always")
def cumulative_shares(weights, row, cum):
    """``cum[j]``: the share of ``weights[row, :j + 1]`` in the row's total (negative weights count as 0; an
    all-zero row puts everything in the first part). Computed once, used by ``split`` for several totals."""
    n = weights.shape[1]
    acc = 0.0
    for j in range(n):
        acc += max(weights[row, j], 0.0)
        cum[j] = acc
    wsum = cum[n - 1]
    for j in range(n):
        cum[j] = cum[j] / wsum if wsum > 0 else 1.0


@njit(inline="always")
def split(total, cum, u, into, k):
    """Add ``total`` split by the cumulative shares ``cum`` (``cumulative_shares``) to ``into[:, k]`` exactly,
    by systematic rounding (one uniform ``u``): parts are within one of ``total * w / sum(w)``, unbiased, and
    sum to ``total``."""
    n = into.shape[0]
    prev = 0.0
    for j in range(n):
        # min(): floor(total + u) can round up to total + 1 when u is within an ulp of 1
        edge = total if j == n - 1 else min(np.floor(cum[j] * total + u), total)
        into[j, k] += edge - prev
        prev = edge


@njit(inline="always")
def outage_clock(down_left, warm, dt, warm_rate):
    """One step of a server's outage timer and warm-up when no new outage starts: an outage runs down by
    ``dt``; a server that is up (after this step) regains ``dt * warm_rate`` of capacity, up to 1.
    (``fluid_bound(..., from_now=True)`` replays it to foresee when a server is back.)"""
    down_next = max(down_left - dt, 0.0)
    return down_next, (warm if down_next > 0 else min(warm + dt * warm_rate, 1.0))


@njit(inline="always")
def servers(p, s, w, key, ctr):
    """2.5: stress grows while load exceeds capacity and relaxes otherwise; stress reaching 1 (or an exogenous
    hazard) starts an outage of random length, after which the server warms up from reduced capacity."""
    L, K = w.lane_in.shape
    C, S, B = w.cap_rate.shape[0], w.down.shape[0], p.n_banks
    for c in range(C):
        w.load_ch[c] = 0.0
    for lane in range(L):
        if w.blocked[lane] == 0.0:
            for k in range(K):
                w.load_ch[p.lane_channel[lane]] += w.lane_in[lane, k]
    for srv in range(S):
        if srv < B:  # a bank core serves its quick and netbank channels
            load = w.load_ch[srv] + w.load_ch[B + srv]
            capacity = w.cap_step[srv] + w.cap_step[B + srv]
        else:
            load = w.load_ch[srv + B]
            capacity = w.cap_step[srv + B]
        if capacity > 0:  # load / capacity, capped: it only sets how fast stress grows
            rho = min(load / capacity, p.rho_max)
        else:
            rho = p.rho_max if load > 0 else 0.0
        drift = s.grow_rate[srv] * max(rho - 1.0, 0.0) - p.relax_rate[srv] * max(1.0 - rho, 0.0)
        stress = 0.0 if w.down[srv] else max(s.stress[srv] + p.dt * drift, 0.0)
        # the hazard and the outage length are drawn only where they can matter (each has its own column)
        hazard = p.hazard_p[srv] > 0 and uniform(key, ctr, p.draw_offset[D_HAZARD] + srv) < p.hazard_p[srv]
        trigger = w.down[srv] == 0.0 and (stress >= 1.0 or hazard)
        down_next, warm_next = outage_clock(s.down_left[srv], s.warm[srv], p.dt, p.warm_rate[srv])
        if trigger:
            u = uniform(key, ctr, p.draw_offset[D_OUTAGE_LEN] + srv)
            down_next = p.outage_min_s[srv] + u * (p.outage_max_s[srv] - p.outage_min_s[srv])
        s.down_left[srv] = down_next
        s.stress[srv] = 0.0 if trigger else stress
        s.warm[srv] = p.warm_start[srv] if trigger else warm_next
        s.outage_s[srv] += p.dt * (1.0 if w.down[srv] else 0.0)


@njit(inline="always")
def what_the_platform_sees(p, s, w):
    """2.9 and 3: the step's counters per bank and route (``seen_*``), and the episode's counters and KPIs."""
    L, K = w.lane_in.shape
    P, B = w.arrivals.shape[0], p.n_banks
    for b in range(B):
        for r in range(3):  # quick, switch (this bank's cards), netbank (both user classes)
            sent = 0.0
            ok = 0.0
            declined = 0.0
            timed_out = 0.0
            rejected = 0.0
            queued = 0.0
            for lane in range(4 * b + r, 4 * b + 4 if r == 2 else 4 * b + r + 1):  # netbank: lanes 2 and 3
                sent += _sum_k(w.lane_in, lane)
                ok += _sum_k(w.succeeded, lane)
                declined += _sum_k(w.declined, lane)
                timed_out += _sum_k(w.timed_out, lane)
                rejected += _sum_k(w.rejected, lane)
                queued += _sum_k(s.queue, lane)
            seen = s.seen_channel[b, r]  # fields as core.SEEN_FIELDS
            seen[0] = sent
            seen[1] = ok
            seen[2] = declined
            seen[3] = timed_out
            seen[4] = rejected
            seen[5] = queued
        for r, c in ((0, b), (1, 2 * B), (2, B + b)):  # the queue's wait, from the channel's content
            queued_ch = w.q_left[c]
            wait = min(queued_ch / w.cap_rate[c] if w.cap_rate[c] > 0 else 0.0, p.timeout_s[c])
            s.seen_channel[b, r, 6] = p.timeout_s[c] if w.cap_rate[c] <= 0 and queued_ch > 0 else wait
        s.seen_bank[b, 0] = _sum_k(w.offered, 2 * b) + _sum_k(w.offered, 2 * b + 1)
        s.seen_bank[b, 1] = _sum_k(w.throttled, 2 * b) + _sum_k(w.throttled, 2 * b + 1)
        s.seen_bank[b, 2] = _sum_k(s.backlog, 2 * b) + _sum_k(s.backlog, 2 * b + 1)
    s.seen_balance[0] = _sum_k(w.lane_in, 4 * B)
    s.seen_balance[1] = _sum_k(w.succeeded, 4 * B)
    s.seen_balance[2] = _sum_k(s.queue, 4 * B)

    # Estimated time to success: wait in the queue this step + the channel's user time + for each earlier
    # attempt one retry delay and one interaction (docs/MODEL.md, "time to success").
    n_bins = s.latency_hist.shape[0]
    paid = 0.0
    for lane in range(L):
        c = p.lane_channel[lane]
        wait_before = min(w.q_ch[c] / w.cap_rate[c] if w.cap_rate[c] > 0 else 0.0, p.timeout_s[c])
        paid_lane = 0.0
        for k in range(K):
            latency = (wait_before + p.interaction_s[lane]) + k * (p.retry_delay_s + p.interaction_s[lane])
            # clamped before the conversion: int() of a float beyond int64 (or of inf) is undefined in numba
            s.latency_hist[int(min(latency / LATENCY_BIN_S, n_bins - 1.0))] += w.succeeded[lane, k]
            paid_lane += w.succeeded[lane, k]
        s.paid_by[p.lane_kind[lane]] += paid_lane
        paid += paid_lane

    arrived = 0.0
    lost = 0.0
    attempts = 0.0
    failed = 0.0
    for pool in range(P):
        arrived += w.arrivals[pool]
        lost += w.lost[pool]
        for k in range(K):
            attempts += w.offered[pool, k]
            failed += w.pool_fail[pool, k]
        moved = 0.0
        for k in range(K - 1):
            moved += w.moved[pool, k]
        s.entered_pool[pool] = (s.entered_pool[pool] + w.arrivals[pool]) + moved
        s.lost_pool[pool] += w.lost[pool]
    pending = 0.0  # waiting to retry or queued: neither paid nor lost
    for pool in range(P):
        pending += _sum_k(s.backlog, pool)
    for lane in range(L):
        pending += _sum_k(s.queue, lane)
    s.in_flight[0] = pending
    s.step_arrived[0] = arrived
    s.step_succeeded[0] = paid
    s.step_lost[0] = lost
    s.step_attempts[0] = attempts
    s.step_failed[0] = failed
    s.arrived[0] += arrived
    s.succeeded[0] += paid
    s.lost[0] += lost
    s.attempts[0] += attempts
    s.failed_attempts[0] += failed


@njit(inline="always")
def _sum_k(x, row):
    total = 0.0
    for k in range(x.shape[1]):
        total += x[row, k]
    return total


# ------------------------------------------------------------------------------- control and observation


@njit
def decode(admit, route, action, mode, admit_levels, route_presets):
    """Set one environment's control ``admit [B]``, ``route [B, 3]`` from one (already checked) action row.

    continuous: per bank ``[a_admit, a_quick, a_switch, a_netbank]`` in [-1, 1], zero the status quo:
    ``admit = clip(1 + a_admit, 0, 1)``; route weights ``clip(1 + a_quick, 0, 2)``, ``clip(a_switch, 0, 1)``,
    ``clip(a_netbank, 0, 1)``, normalised (all zero = quick) (``actions`` module docstring); multidiscrete: per
    bank ``[admit level, route preset]``; discrete: ``[index]``, one change of one bank; CONTROL: per bank
    ``[admit, route_quick, route_switch, route_netbank]`` as given.
    """
    B = admit.shape[0]
    if mode == CONTINUOUS or mode == CONTROL:
        for b in range(B):
            if mode == CONTROL:
                admit[b] = action[4 * b]
                for r in range(3):
                    route[b, r] = action[4 * b + 1 + r]
                continue
            admit[b] = min(max(1.0 + action[4 * b], 0.0), 1.0)
            quick = min(max(1.0 + action[4 * b + 1], 0.0), 2.0)
            switch = min(max(action[4 * b + 2], 0.0), 1.0)
            netbank = min(max(action[4 * b + 3], 0.0), 1.0)
            total = quick + switch + netbank
            if total > 0:
                route[b, 0], route[b, 1], route[b, 2] = quick / total, switch / total, netbank / total
            else:
                for r in range(3):
                    route[b, r] = route_presets[0, r]
    elif mode == MULTIDISCRETE:
        for b in range(B):
            admit[b] = admit_levels[int(action[2 * b])]
            for r in range(3):
                route[b, r] = route_presets[int(action[2 * b + 1]), r]
    else:  # index 0 changes nothing; 1 + 4b + j: j = 0 raise, 1 lower bank b's admit rate, 2/3 next/previous preset
        index = int(action[0])
        target, what = (index - 1) // 4, (index - 1) % 4
        for b in range(B):
            preset = nearest_preset(route[b], route_presets)  # routes are presets in this mode; snap in case not
            if index > 0 and b == target:
                delta = ADMIT_STEP if what == 0 else (-ADMIT_STEP if what == 1 else 0.0)
                admit[b] = min(max(np.rint((admit[b] + delta) * 10) / 10, 0.0), 1.0)  # stays on the 0.1 grid
                shift = 1 if what == 2 else (-1 if what == 3 else 0)
                preset = min(max(preset + shift, 0), route_presets.shape[0] - 1)
            for r in range(3):
                route[b, r] = route_presets[preset, r]


@njit
def nearest_preset(route_b, route_presets):
    """Index of the route preset closest to one bank's route (the first on a tie)."""
    best, best_d = 0, np.inf
    for j in range(route_presets.shape[0]):
        d = 0.0
        for r in range(3):
            diff = route_b[r] - route_presets[j, r]
            d += diff * diff
        if d < best_d:
            best, best_d = j, d
    return best


@njit(cache=True)
def decode_batch(admit, route, actions, mode, admit_levels, route_presets):
    """``decode`` every row of a batch (``actions.decode`` for Python callers)."""
    for i in range(admit.shape[0]):
        decode(admit[i], route[i], actions[i], mode, admit_levels, route_presets)


@njit
def observe(p, s, n_steps):
    """Write ``s.obs``: what the platform sees (``observations.BANK_FEATURES`` order), scaled, then the hidden
    server state (used only with ``observe_internal``). Counts are scaled by ``B / norm``, waits divided by
    the channel timeout; everything clipped to [0, OBS_HIGH]."""
    B = p.n_banks
    n_bank = 3 + 3 * 7 + 4
    obs = s.obs
    for b in range(B):
        o = b * n_bank
        for f in range(3):
            obs[o + f] = _clip_obs(s.seen_bank[b, f] * p.count_scale)
        for r in range(3):
            for f in range(7):
                obs[o + 3 + 7 * r + f] = _clip_obs(s.seen_channel[b, r, f] * p.channel_scale[b, r, f])
        obs[o + 24] = _clip_obs(s.admit[b])
        for r in range(3):
            obs[o + 25 + r] = _clip_obs(s.route[b, r])
    o = B * n_bank
    for f in range(3):
        obs[o + f] = _clip_obs(s.seen_balance[f] * p.count_scale)
    obs[o + 3] = _clip_obs(min(s.t[0] / n_steps, 1.0))
    o += 4
    for srv in range(B + 1):  # the banks, then the switch
        obs[o] = _clip_obs(s.stress[srv])
        obs[o + 1] = 1.0 if s.down_left[srv] > 0 else 0.0
        obs[o + 2] = _clip_obs(s.down_left[srv] / 3600.0)
        obs[o + 3] = _clip_obs(s.warm[srv])
        if srv < B:
            obs[o + 4] = _clip_obs(s.capacity[srv] / _declared(p, srv))
            obs[o + 5] = _clip_obs(s.capacity[B + srv] / _declared(p, B + srv))
            o += 6
        else:
            obs[o + 4] = _clip_obs(s.capacity[2 * B] / _declared(p, 2 * B))


@njit(inline="always")
def _clip_obs(x):
    return np.float32(min(max(x, 0.0), OBS_HIGH))


@njit(inline="always")
def _declared(p, c):
    return p.declared[c] if p.declared[c] > 0 else 1.0


# ------------------------------------------------------------------------------------------ one step


@njit(inline="always")
def step_env(p, traffic, s, w, action, mode, lost_weight, beta):
    """One environment, one step: decode the action, run the phases, observe, reward."""
    decode(s.admit, s.route, action, mode, p.admit_levels, p.route_presets)
    key, ctr = s.key[0], step_counter(s.t[0])
    arrivals_and_returns(p, traffic, s, w, key, ctr)
    throttle(p, s, w, key, ctr)
    route(p, s, w, key, ctr)
    channels(p, s, w, key, ctr)
    users_after_failure(p, s, w, key, ctr)
    servers(p, s, w, key, ctr)
    what_the_platform_sees(p, s, w)
    s.t[0] += 1
    n_steps = traffic.shape[1]
    s.truncated[0] = s.t[0] >= n_steps
    s.reward[0] = -(lost_weight * s.step_lost[0] + beta * s.step_failed[0]) / p.norm
    observe(p, s, n_steps)


@njit
def _step_range(p, traffic, states, actions, mode, lost_weight, beta, frozen, lo, hi):
    B, K = p.n_banks, p.max_attempts
    P, L, C, S = 2 * B + 1, 4 * B + 1, 2 * B + 2, B + 2
    buf = np.empty(scratch_size(P, L, C, S, K))
    w = scratch_views(buf, P, L, C, S, K)
    for i in range(lo, hi):
        s = env_state(states[i], p)
        if frozen[i]:  # an environment being reset this step: nothing happens to it
            s.reward[0] = 0.0
            s.truncated[0] = False
            s.step_arrived[0], s.step_succeeded[0], s.step_lost[0] = 0.0, 0.0, 0.0
            s.step_attempts[0], s.step_failed[0] = 0.0, 0.0
            observe(p, s, traffic.shape[1])
        else:
            step_env(p, traffic, s, w, actions[i], mode, lost_weight, beta)
    buf[0] = 0.0  # the scratch views hold no reference to buf: this use keeps it alive until here


@njit(inline="always")
def _episodes_over(p, traffic, states, frozen):
    """How many environments not ``frozen`` have taken their episode's last step (a batch with any is not
    stepped: the caller refuses it before anything changes)."""
    over = 0
    for i in range(states.shape[0]):
        if not frozen[i] and field(states[i], p.state_offsets[1], 1, np.int64)[0] >= traffic.shape[1]:
            over += 1
    return over


@njit(cache=True)
def step_batch_serial(params, traffic, states, actions, mode, lost_weight, beta, frozen):
    """``step_env`` for every environment not ``frozen``, in one thread (small batches). Returns the number of
    environments whose episode was already over; if there are any, nothing is stepped."""
    over = _episodes_over(params, traffic, states, frozen)
    if over == 0:
        _step_range(params, traffic, states, actions, mode, lost_weight, beta, frozen, 0, states.shape[0])
    return over


@njit(cache=True, parallel=True)
def step_batch_parallel(params, traffic, states, actions, mode, lost_weight, beta, frozen, n_chunks):
    """``step_batch_serial`` on each of ``n_chunks`` chunks of the batch, spread over the cores (each chunk with
    its own scratch arrays).

    A separate function from ``step_batch_serial`` (not one function compiled twice), so numba's on-disk
    cache keeps both. It calls the serial kernel, compiled once, on slices: calling ``_step_range`` from the
    parallel loop instead compiled the whole step a second time (108 s on a cold cache against 20 s, on the
    2-core machine; the same trajectories and speed). ``n_chunks`` comes from the caller:
    ``numba.get_num_threads()`` in here would keep the kernel out of numba's cache. Returns what
    ``step_batch_serial`` returns.
    """
    over = _episodes_over(params, traffic, states, frozen)
    if over == 0:
        n = states.shape[0]
        for c in prange(n_chunks):
            lo, hi = c * n // n_chunks, (c + 1) * n // n_chunks
            step_batch_serial(params, traffic, states[lo:hi], actions[lo:hi], mode, lost_weight, beta, frozen[lo:hi])
    return over


@njit(cache=True)
def observe_batch(p, states, n_steps):
    """``observe`` every environment (after a reset)."""
    for i in range(states.shape[0]):
        observe(p, env_state(states[i], p), n_steps)
