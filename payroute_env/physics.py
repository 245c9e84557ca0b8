"""The dynamics of payroute: one source, compiled with numba, read top to bottom like docs/MODEL.md section 2.

This is the only place where the model moves. ``core.py`` lays out the parameters and the state and draws
each episode's world at reset; ``Simulator`` calls ``step_batch`` once per step for a whole batch. Each phase
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
things: ``p``, the scenario's parameters (one record, ``core.params_dtype``); ``s``, the environment's state
(one record of ``core.state_dtype``, updated in place); ``w``, scratch arrays reused from one environment to
the next (``Scratch``). Counts are float64 holding whole numbers, so ``arrived == succeeded + lost +
in_flight`` holds exactly.

Random draws: draw ``j`` of kind ``D_*`` for environment state ``s`` at its step ``s.t`` is
``uniform(s.key, step_counter(s.t), p.draw_offset[D_*] + j)``; a trajectory depends only on its own key.

With ``NUMBA_DISABLE_JIT=1`` this module runs as plain Python (slowly), for stepping through it in a debugger.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .sampling import binomial_at, poisson, step_counter, uniform

# Kinds of random draw, in the order of their columns (``core.DRAW_SHAPES`` gives their sizes).
D_ARRIVALS, D_RELEASE, D_ADMIT, D_ROUTE_QUICK, D_ROUTE_SWITCH = 0, 1, 2, 3, 4
D_SERVE, D_TIMEOUT, D_SUCCESS = 5, 6, 7
D_ABANDON, D_SWITCH, D_TO_BALANCE, D_DEST = 8, 9, 10, 11
D_HAZARD, D_OUTAGE_LEN = 12, 13

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
    down: np.ndarray  # [S] bool, server down at the start of the step
    stress1: np.ndarray  # [S] stress capped at 1
    cap_rate: np.ndarray  # [C] attempts/s the channel processes now
    cap_step: np.ndarray  # [C] attempts it processes this step
    blocked: np.ndarray  # [L] bool, the lane's server or issuing bank is down
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


@njit(cache=True)
def new_scratch(P: int, L: int, C: int, S: int, K: int) -> Scratch:
    """Scratch arrays for one worker (one per thread; each environment overwrites what it uses)."""
    e = np.empty
    return Scratch(
        e(P), e((P, K)), e((P, K)), e((P, K)), e((P, K)), e((L, K)),
        e(S, dtype=np.bool_), e(S), e(C), e(C), e(L, dtype=np.bool_), e((L, K)), e((L, K)), e(C),
        e((L, K)), e((L, K)), e(C), e((L, K)), e((L, K)), e((L, K)), e((P, K)), e((P, K)), e(P), e(P), e(C),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ the phases


@njit
def arrivals_and_returns(p, traffic, s, w, key, ctr):
    """2.1, 2.2: Poisson arrivals around the surge curve; each waiting user comes back w.p. ``p_release``."""
    P, K = w.released.shape
    tt = min(s.t, traffic.shape[1] - 1)
    expected = traffic[0, tt] + s.peak_scale * traffic[1, tt]
    for pool in range(P):
        lam = expected * s.pool_frac[pool]
        w.arrivals[pool] = poisson(lam, uniform(key, ctr, p.draw_offset[D_ARRIVALS] + pool)) if lam > 0 else 0.0
        for k in range(K):
            col = p.draw_offset[D_RELEASE] + pool * K + k
            w.released[pool, k] = binomial_at(s.backlog[pool, k], p.p_release, key, ctr, col)
            w.offered[pool, k] = w.released[pool, k]
        w.offered[pool, 0] += w.arrivals[pool]


@njit
def throttle(p, s, w, key, ctr):
    """2.2: a bank's admit rate applies to both its pools; balance payers are always admitted."""
    P, K = w.offered.shape
    B = p.n_banks
    for pool in range(P):
        rate = s.admit[pool // 2] if pool < 2 * B else 1.0
        for k in range(K):
            col = p.draw_offset[D_ADMIT] + pool * K + k
            w.admitted[pool, k] = binomial_at(w.offered[pool, k], rate, key, ctr, col)
            w.throttled[pool, k] = w.offered[pool, k] - w.admitted[pool, k]


@njit
def route(p, s, w, key, ctr):
    """2.3: quick-enabled attempts go quick, then switch or netbank (two chained binomials); netbank-only
    attempts go to netbank, balance to balance. Lane ``4b + r``: r = 0 quick, 1 switch, 2 and 3 netbank."""
    B, K = p.n_banks, w.admitted.shape[1]
    for b in range(B):
        rest_w = s.route[b, 1] + s.route[b, 2]
        switch_share = s.route[b, 1] / rest_w if rest_w > 0 else 0.0
        for k in range(K):
            quick_enabled = w.admitted[2 * b, k]
            to_quick = binomial_at(quick_enabled, s.route[b, 0], key, ctr, p.draw_offset[D_ROUTE_QUICK] + b * K + k)
            rest = quick_enabled - to_quick
            to_switch = binomial_at(rest, switch_share, key, ctr, p.draw_offset[D_ROUTE_SWITCH] + b * K + k)
            w.lane_in[4 * b, k] = to_quick
            w.lane_in[4 * b + 1, k] = to_switch
            w.lane_in[4 * b + 2, k] = rest - to_switch
            w.lane_in[4 * b + 3, k] = w.admitted[2 * b + 1, k]
    for k in range(K):
        w.lane_in[4 * B, k] = w.admitted[2 * B, k]


@njit
def channels(p, s, w, key, ctr):
    """2.4: FIFO queues with a deadline. Attempts at a down server (or, on the switch, for a down issuer) are
    rejected, queued ones included; each channel serves ``capacity * health * dt``; what it could not serve
    within the timeout times out; served attempts succeed or are declined (more declines under stress)."""
    L, K = w.lane_in.shape
    C, S = w.cap_rate.shape[0], w.down.shape[0]
    for srv in range(S):
        w.down[srv] = s.down_left[srv] > 0
        w.stress1[srv] = min(s.stress[srv], 1.0)
    for c in range(C):
        srv = p.channel_server[c]
        health = 0.0 if w.down[srv] else (1.0 - p.goodput_loss[srv] * w.stress1[srv]) * s.warm[srv]
        w.cap_rate[c] = s.capacity[c] * health
        w.cap_step[c] = w.cap_rate[c] * p.dt
        w.q_ch[c] = 0.0
        w.r_ch[c] = 0.0

    for lane in range(L):
        w.blocked[lane] = w.down[p.lane_server[lane]] or w.down[p.lane_origin[lane]]
        for k in range(K):
            arriving = s.queue[lane, k] + w.lane_in[lane, k]
            w.rejected[lane, k] = arriving if w.blocked[lane] else 0.0
            w.waiting[lane, k] = arriving - w.rejected[lane, k]
            w.q_ch[p.lane_channel[lane]] += w.waiting[lane, k]

    for lane in range(L):  # serve: every lane and attempt number of a channel gets the same share
        c = p.lane_channel[lane]
        serve_frac = min(1.0, w.cap_step[c] / w.q_ch[c]) if w.q_ch[c] > 0 else 1.0
        for k in range(K):
            col = p.draw_offset[D_SERVE] + lane * K + k
            w.served[lane, k] = binomial_at(w.waiting[lane, k], serve_frac, key, ctr, col)
            w.remain[lane, k] = w.waiting[lane, k] - w.served[lane, k]
            w.r_ch[c] += w.remain[lane, k]

    for lane in range(L):  # deadline: the queue holds only what the channel serves within the timeout
        c = p.lane_channel[lane]
        excess = max(w.r_ch[c] - w.cap_rate[c] * p.timeout_s[c], 0.0)
        timeout_frac = excess / w.r_ch[c] if w.r_ch[c] > 0 else 0.0
        srv = p.lane_server[lane]
        p_success = p.success[lane] * (1.0 - p.decline_gain[srv] * w.stress1[srv])
        for k in range(K):
            col = lane * K + k
            timeout_col, success_col = p.draw_offset[D_TIMEOUT] + col, p.draw_offset[D_SUCCESS] + col
            w.timed_out[lane, k] = binomial_at(w.remain[lane, k], timeout_frac, key, ctr, timeout_col)
            s.queue[lane, k] = w.remain[lane, k] - w.timed_out[lane, k]
            w.succeeded[lane, k] = binomial_at(w.served[lane, k], p_success, key, ctr, success_col)
            w.declined[lane, k] = w.served[lane, k] - w.succeeded[lane, k]


@njit
def _lane_fail(w, lane, k):
    return (w.declined[lane, k] + w.timed_out[lane, k]) + w.rejected[lane, k]


@njit
def users_after_failure(p, s, w, key, ctr):
    """2.6: after a failed attempt (declined, timed out, rejected or throttled) the user abandons, switches
    (to balance, or to another bank's card picked by card share) or retries later; the K-th failure loses
    the intent."""
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
    for pool in range(P):
        for k in range(K - 1):
            failed = w.pool_fail[pool, k]
            col = pool * (K - 1) + k
            abandon = binomial_at(failed, p.p_abandon, key, ctr, p.draw_offset[D_ABANDON] + col)
            switch = binomial_at(failed - abandon, p.p_switch_given_stay, key, ctr, p.draw_offset[D_SWITCH] + col)
            retry = failed - abandon - switch
            to_balance = binomial_at(switch, p.p_to_balance[pool], key, ctr, p.draw_offset[D_TO_BALANCE] + col)
            s.backlog[pool, k + 1] += retry
            w.moved[2 * B, k] += to_balance
            w.lost[pool] += abandon
            split(switch - to_balance, s.dest[pool], uniform(key, ctr, p.draw_offset[D_DEST] + col), w.cum, w.moved, k)
        w.lost[pool] += w.pool_fail[pool, K - 1]
    for pool in range(P):
        for k in range(K - 1):
            s.backlog[pool, k + 1] += w.moved[pool, k]


@njit
def split(total, weights, u, cum, into, k):
    """Add ``total`` split over ``weights`` to ``into[:, k]`` exactly, by systematic rounding (one uniform
    ``u``): parts are within one of ``total * w / sum(w)``, unbiased, and sum to ``total``."""
    n = weights.shape[0]
    acc = 0.0
    for j in range(n):
        acc += max(weights[j], 0.0)
        cum[j] = acc
    wsum = cum[n - 1]
    prev = 0.0
    for j in range(n):
        frac = cum[j] / wsum if wsum > 0 else 1.0
        # min(): floor(total + u) can round up to total + 1 when u is within an ulp of 1
        edge = total if j == n - 1 else min(np.floor(frac * total + u), total)
        into[j, k] += edge - prev
        prev = edge


@njit
def outage_clock(down_left, warm, dt, warm_rate):
    """One step of a server's outage timer and warm-up when no new outage starts: an outage runs down by
    ``dt``; a server that is up (after this step) regains ``dt * warm_rate`` of capacity, up to 1.
    (``fluid_bound(..., from_now=True)`` replays it to foresee when a server is back.)"""
    down_next = max(down_left - dt, 0.0)
    return down_next, (warm if down_next > 0 else min(warm + dt * warm_rate, 1.0))


@njit
def servers(p, s, w, key, ctr):
    """2.5: stress grows while load exceeds capacity and relaxes otherwise; stress reaching 1 (or an exogenous
    hazard) starts an outage of random length, after which the server warms up from reduced capacity."""
    L, K = w.lane_in.shape
    C, S, B = w.cap_rate.shape[0], w.down.shape[0], p.n_banks
    for c in range(C):
        w.load_ch[c] = 0.0
    for lane in range(L):
        if not w.blocked[lane]:
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
        hazard = uniform(key, ctr, p.draw_offset[D_HAZARD] + srv) < p.hazard_p[srv]
        trigger = (not w.down[srv]) and (stress >= 1.0 or hazard)
        length = p.outage_min_s[srv] + uniform(key, ctr, p.draw_offset[D_OUTAGE_LEN] + srv) * (
            p.outage_max_s[srv] - p.outage_min_s[srv]
        )
        down_next, warm_next = outage_clock(s.down_left[srv], s.warm[srv], p.dt, p.warm_rate[srv])
        s.down_left[srv] = length if trigger else down_next
        s.stress[srv] = 0.0 if trigger else stress
        s.warm[srv] = p.warm_start[srv] if trigger else warm_next
        s.outage_s[srv] += p.dt * (1.0 if w.down[srv] else 0.0)


@njit
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
            queued_ch = 0.0
            for lane in range(L):
                if p.lane_channel[lane] == c:
                    queued_ch += _sum_k(s.queue, lane)
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
            s.latency_hist[min(int(latency / LATENCY_BIN_S), n_bins - 1)] += w.succeeded[lane, k]
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
    s.step_arrived = arrived
    s.step_succeeded = paid
    s.step_lost = lost
    s.step_attempts = attempts
    s.step_failed = failed
    s.arrived += arrived
    s.succeeded += paid
    s.lost += lost
    s.attempts += attempts
    s.failed_attempts += failed


@njit
def _sum_k(x, row):
    total = 0.0
    for k in range(x.shape[1]):
        total += x[row, k]
    return total


# ------------------------------------------------------------------------------- control and observation


@njit
def decode(admit, route, action, mode, admit_levels, route_presets):
    """Set one environment's control ``admit [B]``, ``route [B, 3]`` from one (already checked) action row.

    continuous: per bank ``[admit, w_quick, w_switch, w_netbank]`` clipped to [0, 1], weights normalised
    (all zero = quick); multidiscrete: per bank ``[admit level, route preset]``; discrete: ``[index]``, one
    change of one bank; CONTROL: per bank ``[admit, route_quick, route_switch, route_netbank]`` as given.
    """
    B = admit.shape[0]
    if mode == CONTINUOUS or mode == CONTROL:
        for b in range(B):
            if mode == CONTROL:
                admit[b] = action[4 * b]
                for r in range(3):
                    route[b, r] = action[4 * b + 1 + r]
                continue
            admit[b] = min(max(action[4 * b], 0.0), 1.0)
            total = 0.0
            for r in range(3):
                total += min(max(action[4 * b + 1 + r], 0.0), 1.0)
            for r in range(3):
                weight = min(max(action[4 * b + 1 + r], 0.0), 1.0)
                route[b, r] = weight / total if total > 0 else route_presets[0, r]
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
    obs[o + 3] = _clip_obs(min(s.t / n_steps, 1.0))
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


@njit
def step_env(p, traffic, s, w, action, mode, lost_weight, beta):
    """One environment, one step: decode the action, run the phases, observe, reward."""
    decode(s.admit, s.route, action, mode, p.admit_levels, p.route_presets)
    key, ctr = s.key, step_counter(s.t)
    arrivals_and_returns(p, traffic, s, w, key, ctr)
    throttle(p, s, w, key, ctr)
    route(p, s, w, key, ctr)
    channels(p, s, w, key, ctr)
    users_after_failure(p, s, w, key, ctr)
    servers(p, s, w, key, ctr)
    what_the_platform_sees(p, s, w)
    s.t += 1
    n_steps = traffic.shape[1]
    s.truncated = s.t >= n_steps
    s.reward = -(lost_weight * s.step_lost + beta * s.step_failed) / p.norm
    observe(p, s, n_steps)


@njit
def _step_range(params, traffic, states, actions, mode, lost_weight, beta, frozen, lo, hi):
    p = params[0]
    K = states[0].backlog.shape[1]
    P, L, C, S = states[0].backlog.shape[0], states[0].queue.shape[0], p.declared.shape[0], states[0].stress.shape[0]
    w = new_scratch(P, L, C, S, K)
    for i in range(lo, hi):
        s = states[i]
        if frozen[i]:  # an environment being reset this step: nothing happens to it
            s.reward = 0.0
            s.truncated = False
            s.step_arrived = s.step_succeeded = s.step_lost = s.step_attempts = s.step_failed = 0.0
            observe(p, s, traffic.shape[1])
        else:
            step_env(p, traffic, s, w, actions[i], mode, lost_weight, beta)


@njit(cache=True)
def step_batch_serial(params, traffic, states, actions, mode, lost_weight, beta, frozen):
    """``step_env`` for every environment not ``frozen``, in one thread (small batches)."""
    _step_range(params, traffic, states, actions, mode, lost_weight, beta, frozen, 0, states.shape[0])


@njit(cache=True, parallel=True)
def step_batch_parallel(params, traffic, states, actions, mode, lost_weight, beta, frozen, n_chunks):
    """``step_env`` for every environment not ``frozen``, the batch cut into ``n_chunks`` chunks spread over the
    cores (each chunk with its own scratch arrays).

    A separate function from ``step_batch_serial`` (not one function compiled twice), so numba's on-disk
    cache keeps both. ``n_chunks`` comes from the caller: ``numba.get_num_threads()`` in here would keep the
    kernel out of numba's cache.
    """
    n = states.shape[0]
    for c in prange(n_chunks):
        lo, hi = c * n // n_chunks, (c + 1) * n // n_chunks
        _step_range(params, traffic, states, actions, mode, lost_weight, beta, frozen, lo, hi)


@njit(cache=True)
def observe_batch(params, states, n_steps):
    """``observe`` every environment (after a reset)."""
    p = params[0]
    for i in range(states.shape[0]):
        observe(p, states[i], n_steps)
