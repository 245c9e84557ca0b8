"""Compiled twin of ``core.step`` (numba), producing bit-identical results.

``core.step`` is the readable reference; this module repeats its arithmetic per environment in the same
order so that compiled and numpy runs give the same trajectories, bit for bit (``tests/test_fast.py`` checks
it on every scenario). numpy spends most of a small step in per-call overhead; one compiled call per step
removes it. If numba is missing (or ``PAYROUTE_NUMBA=0``), ``core.step`` uses the numpy code.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import sampling

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_U30, _U27, _U31, _U11, _U32 = (np.uint64(s) for s in (30, 27, 31, 11, 32))
_TO_UNIT = 2.0**-53
_TABLE = sampling.NORMAL_TABLE
_TABLE_SIZE = float(_TABLE.shape[0])
_TABLE_LAST = float(_TABLE.shape[0] - 2)
_EXP_TERMS = sampling._EXP_TERMS
_POISSON_NORMAL_FROM = sampling.POISSON_NORMAL_FROM
_BINOMIAL_NORMAL_FROM = sampling.BINOMIAL_NORMAL_FROM
_INVERSION_STEPS = sampling._INVERSION_STEPS


@njit(inline="always")
def _mix(x: np.uint64) -> np.uint64:
    x = (x ^ (x >> _U30)) * _M1
    x = (x ^ (x >> _U27)) * _M2
    return x ^ (x >> _U31)


@njit(inline="always")
def _uniform(key: np.uint64, base: np.uint64, col: int) -> float:
    ctr = base + np.uint64(col)
    x = _mix(key ^ _mix(ctr * _GOLDEN + _GOLDEN))
    return (np.float64(x >> _U11) + 0.5) * _TO_UNIT


@njit(inline="always")
def _normal(u: float, table: np.ndarray) -> float:
    x = u * _TABLE_SIZE - 0.5
    i = min(max(np.floor(x), 0.0), _TABLE_LAST)
    f = min(max(x - i, 0.0), 1.0)
    j = int(i)
    lo = table[j]
    hi = table[j + 1]
    return lo + f * (hi - lo)


@njit(inline="always")
def _binomial(n: float, p: float, u: float, table: np.ndarray) -> float:
    rare_is_failure = p > 0.5
    q_rare = 1.0 - p if rare_is_failure else p
    if n > 0 and n * q_rare < _BINOMIAL_NORMAL_FROM:
        ratio = q_rare / (1.0 - q_rare)
        # (1 - q_rare) ** n by repeated squaring, as sampling._int_power
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
    v = np.rint(mean + np.sqrt(var) * _normal(u, table))
    return min(max(v, 0.0), n)


@njit(inline="always")
def _binomial_at(n: float, p: float, key: np.uint64, base: np.uint64, col: int, table: np.ndarray) -> float:
    """``_binomial`` drawing its uniform only when it matters: with n = 0, p = 0 or p = 1 the result is
    0, 0 or n whatever the uniform, so the hash is skipped."""
    if n <= 0.0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return n
    return _binomial(n, p, _uniform(key, base, col), table)


@njit(inline="always")
def _exp_neg(x: float) -> float:
    y = x / 16.0
    r = 1.0
    for j in range(_EXP_TERMS, 0, -1):
        r = 1.0 - y * r / j
    for _ in range(4):
        r = r * r
    return r


@njit(inline="always")
def _poisson(lam: float, u: float, table: np.ndarray) -> float:
    if lam < _POISSON_NORMAL_FROM:
        k = 0.0
        p = _exp_neg(lam)
        cdf = p
        for i in range(1, 80):
            if u > cdf:
                k += 1.0
            else:
                break
            p = p * lam / i
            cdf += p
        return k
    return max(np.rint(lam + np.sqrt(lam) * _normal(u, table)), 0.0)


@njit(cache=True)
def _step_env(
    i, B, K, dt, n_steps, base, surge, lane_channel, lane_server, lane_origin, lane_kind, channel_server,
    timeout, inter, success, p_release, p_abandon, p_switch, p_to_balance, retry_delay,
    relax, goodput_loss, decline_gain, out_min, out_max, warm_start, warm_rate, hazard, rho_max, off, table,
    key, t, backlog, queue, stress, down_left, warm, peak_scale, capacity, pool_frac, dest, grow,
    arrived, succeeded, lost, attempts, failed, entered, lost_pool, outage, paid_by, hist,
    admit, route,
    o_backlog, o_queue, o_stress, o_down_left, o_warm, o_seen_bank, o_seen_channel, o_seen_balance,
    o_arrived, o_succeeded, o_lost, o_attempts, o_failed, o_entered, o_lost_pool, o_outage, o_paid_by, o_hist,
    o_step,
):  # fmt: skip
    P, L, C, S = 2 * B + 1, 4 * B + 1, 2 * B + 2, B + 2
    kk = key[i]
    cb = np.uint64(t[i]) << _U32
    (o_arr, o_rel, o_adm, o_rq, o_rs, o_srv, o_to, o_suc, o_ab, o_sw, o_tb, o_dst, o_hz, o_ol) = (
        off[0], off[1], off[2], off[3], off[4], off[5], off[6], off[7], off[8], off[9], off[10], off[11],
        off[12], off[13],
    )  # fmt: skip

    # 1. arrivals and returning users
    tt = min(t[i], n_steps - 1)
    expected = base[tt] + peak_scale[i] * surge[tt]
    arrivals = np.empty(P)
    released = np.empty((P, K))
    offered = np.empty((P, K))
    for p in range(P):
        lam = expected * pool_frac[i, p]
        arrivals[p] = _poisson(lam, _uniform(kk, cb, o_arr + p), table) if lam > 0 else 0.0
        for k in range(K):
            released[p, k] = _binomial_at(backlog[i, p, k], p_release, kk, cb, o_rel + p * K + k, table)
            offered[p, k] = released[p, k]
        offered[p, 0] += arrivals[p]

    # 2. throttle
    admitted = np.empty((P, K))
    throttled = np.empty((P, K))
    for p in range(P):
        a = admit[i, p // 2] if p < 2 * B else 1.0
        for k in range(K):
            admitted[p, k] = _binomial_at(offered[p, k], a, kk, cb, o_adm + p * K + k, table)
            throttled[p, k] = offered[p, k] - admitted[p, k]

    # 3. route
    lane_in = np.empty((L, K))
    for b in range(B):
        rest_w = route[i, b, 1] + route[i, b, 2]
        sw_share = route[i, b, 1] / rest_w if rest_w > 0 else 0.0
        for k in range(K):
            adm_q = admitted[2 * b, k]
            to_quick = _binomial_at(adm_q, route[i, b, 0], kk, cb, o_rq + b * K + k, table)
            rest = adm_q - to_quick
            to_switch = _binomial_at(rest, sw_share, kk, cb, o_rs + b * K + k, table)
            lane_in[4 * b, k] = to_quick
            lane_in[4 * b + 1, k] = to_switch
            lane_in[4 * b + 2, k] = rest - to_switch
            lane_in[4 * b + 3, k] = admitted[2 * b + 1, k]
    for k in range(K):
        lane_in[4 * B, k] = admitted[2 * B, k]

    # 4. channels
    down = np.empty(S, dtype=np.bool_)
    stress1 = np.empty(S)
    health = np.empty(S)
    for s in range(S):
        down[s] = down_left[i, s] > 0
        stress1[s] = min(stress[i, s], 1.0)
        health[s] = 0.0 if down[s] else (1.0 - goodput_loss[s] * stress1[s]) * warm[i, s]
    cap_rate = np.empty(C)
    cap_step = np.empty(C)
    for c in range(C):
        cap_rate[c] = capacity[i, c] * health[channel_server[c]]
        cap_step[c] = cap_rate[c] * dt

    blocked = np.empty(L, dtype=np.bool_)
    q = np.empty((L, K))
    rejected = np.empty((L, K))
    q_ch = np.zeros(C)
    for l in range(L):  # noqa: E741
        blocked[l] = down[lane_server[l]] or down[lane_origin[l]]
        for k in range(K):
            waiting = queue[i, l, k] + lane_in[l, k]
            rejected[l, k] = waiting if blocked[l] else 0.0
            q[l, k] = waiting - rejected[l, k]
            q_ch[lane_channel[l]] += q[l, k]
    serve_frac = np.empty(C)
    for c in range(C):
        serve_frac[c] = min(1.0, cap_step[c] / q_ch[c]) if q_ch[c] > 0 else 1.0
    served = np.empty((L, K))
    remain = np.empty((L, K))
    r_ch = np.zeros(C)
    for l in range(L):  # noqa: E741
        for k in range(K):
            served[l, k] = _binomial_at(q[l, k], serve_frac[lane_channel[l]], kk, cb, o_srv + l * K + k, table)
            remain[l, k] = q[l, k] - served[l, k]
            r_ch[lane_channel[l]] += remain[l, k]
    timeout_frac = np.empty(C)
    for c in range(C):
        excess = max(r_ch[c] - cap_rate[c] * timeout[c], 0.0)
        timeout_frac[c] = excess / r_ch[c] if r_ch[c] > 0 else 0.0
    timed_out = np.empty((L, K))
    new_queue = o_queue[i]
    succ = np.empty((L, K))
    declined = np.empty((L, K))
    for l in range(L):  # noqa: E741
        srv = lane_server[l]
        p_succ = success[l] * (1.0 - decline_gain[srv] * stress1[srv])
        for k in range(K):
            timed_out[l, k] = _binomial_at(remain[l, k], timeout_frac[lane_channel[l]], kk, cb, o_to + l * K + k, table)
            new_queue[l, k] = remain[l, k] - timed_out[l, k]
            succ[l, k] = _binomial_at(served[l, k], p_succ, kk, cb, o_suc + l * K + k, table)
            declined[l, k] = served[l, k] - succ[l, k]

    # 5. users after a failure
    pool_fail = np.empty((P, K))
    for k in range(K):
        for b in range(B):
            f_quick = (declined[4 * b, k] + timed_out[4 * b, k]) + rejected[4 * b, k]
            f_switch = (declined[4 * b + 1, k] + timed_out[4 * b + 1, k]) + rejected[4 * b + 1, k]
            f_netq = (declined[4 * b + 2, k] + timed_out[4 * b + 2, k]) + rejected[4 * b + 2, k]
            f_netn = (declined[4 * b + 3, k] + timed_out[4 * b + 3, k]) + rejected[4 * b + 3, k]
            pool_fail[2 * b, k] = f_quick + f_switch + f_netq + throttled[2 * b, k]
            pool_fail[2 * b + 1, k] = f_netn + throttled[2 * b + 1, k]
        f_bal = (declined[4 * B, k] + timed_out[4 * B, k]) + rejected[4 * B, k]
        pool_fail[2 * B, k] = f_bal + throttled[2 * B, k]

    new_backlog = o_backlog[i]
    for p in range(P):
        for k in range(K):
            new_backlog[p, k] = backlog[i, p, k] - released[p, k]
    moved = np.zeros((P, K))
    lost_step = np.zeros(P)
    cum = np.empty(P)
    for p in range(P):
        for k in range(K - 1):
            f = pool_fail[p, k]
            col = p * (K - 1) + k
            ab = _binomial_at(f, p_abandon, kk, cb, o_ab + col, table)
            sw = _binomial_at(f - ab, p_switch, kk, cb, o_sw + col, table)
            rt = f - ab - sw
            tb = _binomial_at(sw, p_to_balance[p], kk, cb, o_tb + col, table)
            to_banks = sw - tb
            new_backlog[p, k + 1] += rt
            moved[2 * B, k] += tb
            lost_step[p] += ab
            # systematic split of to_banks over destination pools (sampling.split)
            u = _uniform(kk, cb, o_dst + col)
            acc = 0.0
            for q2 in range(P):
                acc += max(dest[i, p, q2], 0.0)
                cum[q2] = acc
            wsum = cum[P - 1]
            prev = 0.0
            for q2 in range(P):
                frac = cum[q2] / wsum if wsum > 0 else 1.0
                edge = to_banks if q2 == P - 1 else min(np.floor(frac * to_banks + u), to_banks)
                moved[q2, k] += edge - prev
                prev = edge
        lost_step[p] += pool_fail[p, K - 1]
    for p in range(P):
        for k in range(K - 1):
            new_backlog[p, k + 1] += moved[p, k]

    # 6. servers
    load_ch = np.zeros(C)
    for l in range(L):  # noqa: E741
        if not blocked[l]:
            for k in range(K):
                load_ch[lane_channel[l]] += lane_in[l, k]
    for s in range(S):
        if s < B:
            load = load_ch[s] + load_ch[B + s]
            cap_srv = cap_step[s] + cap_step[B + s]
        else:
            load = load_ch[s + B]
            cap_srv = cap_step[s + B]
        if cap_srv > 0:
            rho = min(load / cap_srv, rho_max)
        else:
            rho = rho_max if load > 0 else 0.0
        drift = grow[i, s] * max(rho - 1.0, 0.0) - relax[s] * max(1.0 - rho, 0.0)
        st = 0.0 if down[s] else max(stress[i, s] + dt * drift, 0.0)
        trigger = (not down[s]) and (st >= 1.0 or _uniform(kk, cb, o_hz + s) < hazard[s])
        length = out_min[s] + _uniform(kk, cb, o_ol + s) * (out_max[s] - out_min[s])
        dl = length if trigger else max(down_left[i, s] - dt, 0.0)
        o_down_left[i, s] = dl
        o_stress[i, s] = 0.0 if trigger else st
        if trigger:
            o_warm[i, s] = warm_start[s]
        elif dl > 0:
            o_warm[i, s] = warm[i, s]
        else:
            o_warm[i, s] = min(warm[i, s] + dt * warm_rate[s], 1.0)
        o_outage[i, s] = outage[i, s] + dt * (1.0 if down[s] else 0.0)

    # 7. observations and counters
    q_end = np.zeros(C)
    for l in range(L):  # noqa: E741
        for k in range(K):
            q_end[lane_channel[l]] += new_queue[l, k]
    wait_ch = np.empty(C)
    for c in range(C):
        w = q_end[c] / cap_rate[c] if cap_rate[c] > 0 else 0.0
        w = min(w, timeout[c])
        if cap_rate[c] <= 0 and q_end[c] > 0:
            w = timeout[c]
        wait_ch[c] = w
    for b in range(B):
        for r in range(3):
            lanes = (4 * b + 2, 4 * b + 3) if r == 2 else (4 * b + r, -1)
            sent = 0.0
            ok = 0.0
            dec = 0.0
            tmo = 0.0
            rej = 0.0
            qq = 0.0
            for l in lanes:  # noqa: E741
                if l < 0:
                    continue
                s_sent = 0.0
                s_ok = 0.0
                s_dec = 0.0
                s_tmo = 0.0
                s_rej = 0.0
                s_q = 0.0
                for k in range(K):
                    s_sent += lane_in[l, k]
                    s_ok += succ[l, k]
                    s_dec += declined[l, k]
                    s_tmo += timed_out[l, k]
                    s_rej += rejected[l, k]
                    s_q += new_queue[l, k]
                sent += s_sent
                ok += s_ok
                dec += s_dec
                tmo += s_tmo
                rej += s_rej
                qq += s_q
            o_seen_channel[i, b, r, 0] = sent
            o_seen_channel[i, b, r, 1] = ok
            o_seen_channel[i, b, r, 2] = dec
            o_seen_channel[i, b, r, 3] = tmo
            o_seen_channel[i, b, r, 4] = rej
            o_seen_channel[i, b, r, 5] = qq
        o_seen_channel[i, b, 0, 6] = wait_ch[b]
        o_seen_channel[i, b, 1, 6] = wait_ch[2 * B]
        o_seen_channel[i, b, 2, 6] = wait_ch[B + b]
        off_b = 0.0
        thr_b = 0.0
        back_b = 0.0
        for p in (2 * b, 2 * b + 1):
            s_off = 0.0
            s_thr = 0.0
            s_back = 0.0
            for k in range(K):
                s_off += offered[p, k]
                s_thr += throttled[p, k]
                s_back += new_backlog[p, k]
            off_b += s_off
            thr_b += s_thr
            back_b += s_back
        o_seen_bank[i, b, 0] = off_b
        o_seen_bank[i, b, 1] = thr_b
        o_seen_bank[i, b, 2] = back_b
    bal_sent = 0.0
    bal_ok = 0.0
    bal_q = 0.0
    for k in range(K):
        bal_sent += lane_in[4 * B, k]
        bal_ok += succ[4 * B, k]
        bal_q += new_queue[4 * B, k]
    o_seen_balance[i, 0] = bal_sent
    o_seen_balance[i, 1] = bal_ok
    o_seen_balance[i, 2] = bal_q

    nbins = hist.shape[1]
    for j in range(nbins):
        o_hist[i, j] = hist[i, j]
    for j in range(paid_by.shape[1]):
        o_paid_by[i, j] = paid_by[i, j]
    step_succ = 0.0
    for l in range(L):  # noqa: E741
        c = lane_channel[l]
        wb = q_ch[c] / cap_rate[c] if cap_rate[c] > 0 else 0.0
        wb = min(wb, timeout[c])
        s_ok = 0.0
        for k in range(K):
            lat = (wb + inter[l]) + k * (retry_delay + inter[l])
            bin_ = min(int(lat / 5.0), nbins - 1)
            o_hist[i, bin_] += succ[l, k]
            s_ok += succ[l, k]
        o_paid_by[i, lane_kind[l]] += s_ok
        step_succ += s_ok

    step_arr = 0.0
    step_lost = 0.0
    step_att = 0.0
    step_fail = 0.0
    for p in range(P):
        step_arr += arrivals[p]
        step_lost += lost_step[p]
        s_moved = 0.0
        for k in range(K):
            step_att += offered[p, k]
            step_fail += pool_fail[p, k]
        for k in range(K - 1):
            s_moved += moved[p, k]
        o_entered[i, p] = (entered[i, p] + arrivals[p]) + s_moved
        o_lost_pool[i, p] = lost_pool[i, p] + lost_step[p]
    o_arrived[i] = arrived[i] + step_arr
    o_succeeded[i] = succeeded[i] + step_succ
    o_lost[i] = lost[i] + step_lost
    o_attempts[i] = attempts[i] + step_att
    o_failed[i] = failed[i] + step_fail
    o_step[i, 0] = step_arr
    o_step[i, 1] = step_succ
    o_step[i, 2] = step_lost
    o_step[i, 3] = step_att
    o_step[i, 4] = step_fail


def _make_batch(parallel: bool):
    @njit(cache=True, parallel=parallel)
    def run(args_params, args_state, admit, route, outs):  # pragma: no cover - compiled
        n = args_state[0].shape[0]
        for i in prange(n):
            _step_env(i, *args_params, *args_state, admit, route, *outs)

    return run


step_serial = _make_batch(False)
step_parallel = _make_batch(True)
