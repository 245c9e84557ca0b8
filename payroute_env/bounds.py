"""The fluid lower bound: the fewest intents any policy could lose, as a linear program.

The LP is a *relaxation* of the simulation in ``core.py`` taken in the fluid limit (expected values): every
quantity the platform controls is a free non-negative flow, and everything it does not control is replaced
by the most favourable case. Its optimum is therefore no larger than the expected number of intents lost by
any policy, heuristic or learned, on the same scenario. ``docs/MODEL.md (section 8)`` lists the assumptions.

Time-expanded network, one layer per simulation step ``t`` (``dt`` seconds), per user *pool* ``p``
(bank b quick-enabled, bank b online-banking-only, balance payers), per attempt number ``k < K`` and per
*lane* ``l`` (a pool's path to a channel: quick, switch or netbank for quick-enabled users, netbank for
netbank-only users, balance for balance payers). Variables, all ``>= 0``:

=====  =======================================================================================
A      attempts admitted into lane ``l`` at step ``t`` (attempt ``k``)
H      attempts throttled ("busy, try later") in pool ``p``
S      attempts served by the channel (they then succeed with the lane's base probability)
X      attempts failed out of the queue (a timeout the platform may schedule at any time)
Q      attempts still queued at the end of the step
F      failed attempts of pool ``p`` (throttled + declined + timed out)
R      users waiting to make attempt ``k + 1`` (the retry backlog) at the end of the step
=====  =======================================================================================

Constraints (``a_tp`` expected new intents, ``c_c`` true capacity, ``tau_c`` timeout, ``s_l`` base success,
``rho = 1 - exp(-dt / retry_delay)``; ``pa`` abandon and ``ps`` switch probability, ``M`` where switchers go)::

    offer      sum_{l in p} A[t,l,k] + H[t,p,k] = a_tp            (k = 0)
                                              = G[t,p,k]          (k >= 1: users back from the backlog)
    queue      Q[t,l,k] = Q[t-1,l,k] + A[t,l,k] - S[t,l,k] - X[t,l,k]
    capacity   sum_{l in c, k} S[t,l,k] <= c_c dt
    deadline   sum_{l in c, k} Q[t,l,k] <= c_c tau_c
    queue age  sum_{l in c, k} Q[t,l,k] <= attempts admitted into c in the last ceil(tau_c / dt) steps
    failures   F[t,p,k] = H[t,p,k] + sum_{l in p} ((1 - s_l) S[t,l,k] + X[t,l,k])
    backlog    R[t,q,k] = R[t-1,q,k] - G[t,q,k] + sum_p ((1 - pa - ps) [p = q] + ps M[p,q]) F[t,p,k-1]
    release    G[t,q,k] = rho R[t-1,q,k]
    minimise   sum_t ( pa sum_{p, k < K-1} F[t,p,k] + sum_p F[t,p,K-1] )     (intents lost)

With ``no_collapse`` (policies that never overload a bank into an outage) a stress ``Z[t,s] in [0, 1]`` per
bounded server, with ``U`` the load admitted into its channels, ``cap`` their capacity, ``g`` / ``r`` its
growth / relaxation rate, ``gl`` its goodput loss and ``m`` the layer's steps::

    stress     Z[t] >= Z[t-1] + g (U[t] / cap - m dt),   Z[t] >= Z[t-1] + r (U[t] / cap - m dt)
    health     sum_{l in c, k} S[t] <= c_c dt (m - gl (m Z[t-1] - r dt m (m - 1) / 2))

and with ``bank_throttle`` ``H[t,2b,0] / frac_2b = H[t,2b+1,0] / frac_2b+1`` (one admit rate per bank).

The result is reported as ``lost / arrived`` (expected intents), the fluid limit of the failed-payment rate.
Layers of several steps (``layer_s``, default 60 s) keep the LP a relaxation and make it solve in seconds
(about 28k variables for the 744 steps of ``double11_2013``); see :func:`fluid_bound` and docs/MODEL.md (section 8).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from . import core
from .scenario import Randomize, Scenario, load_scenario

__all__ = ["BoundError", "BoundResult", "fluid_bound", "nominal_state"]
_DISP = False


@dataclass(frozen=True)
class BoundResult:
    """The LP optimum in expected intents over one episode of the scenario."""

    scenario: str
    failed_payment_rate: float  # lost / arrived: no policy can have a lower expected failed-payment rate
    arrived: float  # expected intents arriving in the episode
    lost: float  # fewest intents lost
    succeeded: float  # intents paid in the optimal fluid plan
    pending: float  # intents still queued or waiting to retry at the end
    paid_by_channel: dict[str, float]  # successes of the optimal plan by channel kind
    n_variables: int
    n_constraints: int
    solve_seconds: float
    status: str
    # the optimal fluid plan, per LP layer (``layer_steps`` simulation steps each; the last may be shorter)
    layer_steps: int = 1
    lane_admitted: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))  # [layers, L]
    pool_throttled: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))  # [layers, P]
    queued_at_end: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))  # [K] by attempt number
    # the plan's state at the end of each layer, in intents (what ``from_now`` would start from there)
    queued: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0, 0)))  # [layers, L, K]
    waiting: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0, 0)))  # [layers, P, K-1]
    stress: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))  # [layers, S] (no_collapse)
    lost_by_layer: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))  # [layers] intents lost


class BoundError(RuntimeError):
    """The LP could not be solved (should not happen: the LP is always feasible, throttling everything is)."""


def nominal_state(scenario: Scenario) -> core.CoreState:
    """Reset state with the scenario's nominal (not randomised) per-episode parameters: what ``fluid_bound``
    uses without a ``state``, and a starting point for an edited one (``agents.analysis.open_loop`` plans with less
    capacity this way)."""
    nominal = dataclasses.replace(scenario, randomize=Randomize())
    return core.reset(core.make_params(nominal), seeds=np.array([0]))


def fluid_bound(
    scenario: str | Path | Scenario,
    state: core.CoreState | None = None,
    env_index: int = 0,
    layer_s: float = 60.0,
    method: str = "highs-ipm",
    tolerance: float = 1e-7,
    no_collapse: bool = False,
    bank_throttle: bool = False,
    pending_counts_as_lost: bool = False,
    from_now: bool = False,
) -> BoundResult:
    """Solve the fluid LP of ``scenario``: the minimum failed-payment rate any policy can reach in the fluid limit.

    ``state`` (a reset ``CoreState``, or with ``from_now`` a running one) supplies the per-episode parameters of
    environment ``env_index`` (true capacities, pool shares, switch destinations and peak scale, which a randomised
    scenario draws at reset); by default the scenario's nominal figures are used. The state's shapes are checked and
    the figures read must be finite and >= 0: it must come from this scenario (or be a deliberate edit of such a
    state, such as a capacity margin).

    ``layer_s`` merges simulation steps into LP layers of about that many seconds (``round(layer_s / dt)``
    steps, at least 1). Merging keeps the LP a relaxation of the step-by-step LP (arrivals and capacity are
    summed over the layer; a layer's retry releases may fall anywhere between the least and the most the
    step-by-step dynamics could give; the queue-age window is rounded up to whole layers), so the result
    stays a valid lower bound, slightly looser: on the built-in scenarios 60 s layers are within about 0.05
    percentage points of 30 s layers and solve in about 4 s instead of 20 s (docs/MODEL.md (section 8)). ``layer_s``
    at most ``dt`` gives the step-by-step LP. ``method`` is a scipy HiGHS method; the interior-point solver
    is several times faster than dual simplex on this staircase-structured LP.

    Two optional cuts narrow the class of policies the bound speaks for (docs/MODEL.md, section 8, "Policies
    that never collapse a bank"):

    - ``bank_throttle``: the admit rate is one number per bank, so a bank's two pools lose the same expected
      share of their first attempts to throttling (valid for every policy of the env's action spaces).
    - ``no_collapse``: the fluid stress of every server whose stress linear rows can bound from below
      (stress grows at least as fast as it relaxes, one step at the core's overload cap collapses it, no
      exogenous outages) stays below the collapse threshold, and such a server's channels serve only what
      their stressed health allows. The bound then holds for policies that never overload such a server
      into an outage, not for all policies.

    ``pending_counts_as_lost`` charges every intent still queued or waiting to retry at the end like a lost
    one; ``failed_payment_rate`` is then ``(lost + pending) / arrived``, a lower bound on every policy's
    share of intents lost or unresolved at the end (the KPI leaves pending intents out; the plain LP parks
    some at no cost).

    ``from_now`` plans the rest of the episode from the state's current step and contents: its queues, retry backlog
    and server stress are the LP's starting point; a server in an outage serves nothing and rejects its bank's
    switch lanes until the outage ends (a lane down for a whole layer holds no queue at its end), and then warms up
    as in the core (no new outage is foreseen); attempts queued before now may stay queued as long as the queue-age
    window reaches back before now. ``arrived`` then counts the intents still to arrive, ``lost`` the intents lost
    from now on, and ``failed_payment_rate`` is ``lost`` (``lost + pending`` with ``pending_counts_as_lost``) over
    the arrivals still to come plus the intents in flight now. With the true state it is still a relaxation of the
    rest of that episode; ``agents.analysis.mpc`` uses it as a planner, re-solved as the episode goes.
    """
    sc = load_scenario(scenario)
    params = core.make_params(sc)
    number = isinstance(layer_s, int | float) and not isinstance(layer_s, bool)
    if not number or not 0 < layer_s < math.inf:
        raise ValueError(f"layer_s = {layer_s!r}: expected a finite number of seconds > 0")
    if not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise ValueError(f"tolerance = {tolerance!r}: expected a number in (0, 1)")
    if state is None:
        if env_index != 0:
            raise ValueError(
                f"env_index = {env_index!r} needs a state (without one the scenario's nominal figures are used)"
            )
        state = nominal_state(sc)
    n_envs = int(np.shape(state.peak_scale)[0])
    if isinstance(env_index, bool) or not isinstance(env_index, int | np.integer) or not 0 <= env_index < n_envs:
        raise ValueError(f"env_index = {env_index!r}: expected a whole number in [0, {n_envs}) for this state")
    if np.shape(state.capacity)[1:] != np.shape(params.declared) or np.shape(state.pool_frac)[1:] != (params.n_pools,):
        raise ValueError(f"state does not belong to scenario {sc.name!r}: its channels or user pools differ")
    read = ("peak_scale", "capacity", "pool_frac", "dest", "grow_rate")
    for name in read + (("queue", "backlog", "stress", "down_left", "warm") if from_now else ()):
        values = np.asarray(getattr(state, name)[env_index], dtype=np.float64)
        if not (np.isfinite(values).all() and (values >= 0).all()):
            raise ValueError(f"state.{name} of environment {env_index} must be finite and >= 0")
    B, K = params.n_banks, params.max_attempts
    P, L, C, S = params.n_pools, params.n_lanes, params.n_channels, params.n_servers
    now = int(state.t[env_index]) if from_now else 0
    if not 0 <= now < params.n_steps:
        raise ValueError(f"the state is at step {now}: expected a step in [0, {params.n_steps}) to plan from")
    n_steps = params.n_steps - now

    # layers of m steps each (the last one may be shorter), from step ``now`` on
    bucket = max(1, min(round(layer_s / params.dt), n_steps))  # a layer longer than the night is the whole night
    m = np.full(-(-n_steps // bucket), bucket, dtype=np.int64)
    m[-1] = n_steps - bucket * (len(m) - 1)
    T = len(m)
    ends = np.cumsum(m)  # step index (exclusive, counted from now) where each layer ends
    starts = ends - m  # its first step (for np.*.reduceat over steps)
    layer_of_step = np.repeat(np.arange(T), m)

    expected = params.base_per_step + float(state.peak_scale[env_index]) * params.surge_per_step  # [n_steps]
    per_layer = np.bincount(layer_of_step, weights=expected[now:], minlength=T)
    unit = params.norm  # flows are solved in units of the busiest step's intents (a well-scaled LP)
    arrivals = per_layer[:, None] * state.pool_frac[env_index][None, :] / unit  # [T, P]
    capacity = np.asarray(state.capacity[env_index], dtype=np.float64) / unit  # [C] true capacity, healthy
    initial = _Start.of(state, env_index, unit) if from_now else _Start.empty(params)
    # each server's health step by step: 0 for the rest of an outage in progress, then its warm-up (at a reset: 1)
    health = _outage_health(params, initial, n_steps)  # [n_steps, S]
    up = health > 0  # (a scenario's warm_start is > 0, so a server that is up has some capacity)
    server_steps = np.add.reduceat(health, starts, axis=0)  # [T, S] healthy steps in each layer
    dest = state.dest[env_index]  # [P, P]
    stay = float(np.exp(-params.dt / params.retry_delay_s))  # chance a waiting user is still waiting a step later
    rho = 1.0 - stay**m  # [T] release probability over a layer for users waiting at its start
    phi = 1.0 - stay ** (m - 1)  # [T] most of a layer's new backlog that can come back within the layer
    exact = bool((m == 1).all())

    lane_pool = np.empty(L, dtype=np.int64)
    lane_pool[: 4 * B] = np.repeat(np.arange(B) * 2, 4) + np.tile([0, 0, 0, 1], B)
    lane_pool[4 * B] = 2 * B
    lane_channel = params.lane_channel
    fail_after_service = 1.0 - params.success  # [L]

    pa = params.p_abandon
    ps = params.p_switch_given_stay * (1.0 - pa)
    p_retry = 1.0 - pa - ps
    to_bal = params.p_to_balance
    move = (1.0 - to_bal)[:, None] * dest
    move[:, 2 * B] += to_bal
    coef = p_retry * np.eye(P) + ps * move  # [p, q]: share of pool p's failures that wait in pool q

    # ---- variable layout -----------------------------------------------------------------------------
    K1 = max(K - 1, 0)
    blocks = {
        "A": (L, K),
        "H": (P, K),
        "S": (L, K),
        "X": (L, K),
        "Q": (L, K),
        "F": (P, K),
        "R": (P, K1),  # backlog at the end of the layer, waiting for attempt j + 2
        "G": (P, K1),  # users released from the backlog during the layer (they make attempt j + 2)
        "M": (C, 1),  # attempts admitted into each channel (for the queue-age constraint)
        "Z": (S if no_collapse else 0, 1),  # server stress at the end of the layer (only with ``no_collapse``)
    }
    offsets, n_var = {}, 0
    for name, shape in blocks.items():
        offsets[name] = n_var
        n_var += T * int(np.prod(shape))

    def var(name: str, t: np.ndarray, i: np.ndarray, k: np.ndarray) -> np.ndarray:
        n_i, n_k = blocks[name]
        return offsets[name] + (t * n_i + i) * n_k + k

    eq, ub = _Rows(), _Rows()
    t_ = np.arange(T)
    tp, pp, kp = np.meshgrid(t_, np.arange(P), np.arange(K), indexing="ij")  # pool grid
    tl, ll, kl = np.meshgrid(t_, np.arange(L), np.arange(K), indexing="ij")  # lane grid

    # offer: sum_{l in p} A + H - G = arrivals (k = 0) or 0 (k >= 1: the released users)
    r0 = offer_r0 = eq.reserve(T * P * K)
    rows = r0 + (tp * P + pp) * K + kp
    eq.add(rows, var("H", tp, pp, kp), 1.0)
    eq.add(r0 + (tl * P + lane_pool[ll]) * K + kl, var("A", tl, ll, kl), 1.0)
    rhs = np.zeros((T, P, K))
    rhs[:, :, 0] = arrivals
    eq.rhs(r0, rhs)

    # queue: Q[t] - Q[t-1] - A + S + X = 0
    r0 = eq.reserve(T * L * K)
    rows = r0 + (tl * L + ll) * K + kl
    for name, sign in (("Q", 1.0), ("A", -1.0), ("S", 1.0), ("X", 1.0)):
        eq.add(rows, var(name, tl, ll, kl), sign)
    eq.add(rows[1:], var("Q", tl[1:] - 1, ll[1:], kl[1:]), -1.0)
    eq.rhs(r0, initial.queue)  # Q[-1]: attempts queued now (layer 0's rows come first)

    # failures: F - H - sum_{l in p} ((1 - s_l) S + X) = 0
    r0 = eq.reserve(T * P * K)
    eq.add(r0 + (tp * P + pp) * K + kp, var("F", tp, pp, kp), 1.0)
    eq.add(r0 + (tp * P + pp) * K + kp, var("H", tp, pp, kp), -1.0)
    rows_l = r0 + (tl * P + lane_pool[ll]) * K + kl
    eq.add(rows_l, var("S", tl, ll, kl), -fail_after_service[ll])
    eq.add(rows_l, var("X", tl, ll, kl), -1.0)

    if K > 1:
        tb, qb, jb = np.meshgrid(t_, np.arange(P), np.arange(K1), indexing="ij")
        pi, qi = np.nonzero(coef)
        tf, nf, jf = np.meshgrid(t_, np.arange(len(pi)), np.arange(K1), indexing="ij")
        inflow_rows = (tf * P + qi[nf]) * K1 + jf  # row offsets of "inflow into pool q"
        inflow_cols = var("F", tf, pi[nf], jf)
        inflow_vals = coef[pi[nf], qi[nf]]
        # the released users make their next attempt: they enter the offer rows (attempt j + 2 = index j + 1)
        eq.add(offer_r0 + (tb * P + qb) * K + jb + 1, var("G", tb, qb, jb), -1.0)
        # backlog: R[t] - R[t-1] + G[t] - inflow[t] = 0
        r0 = eq.reserve(T * P * K1)
        rows = r0 + (tb * P + qb) * K1 + jb
        eq.add(rows, var("R", tb, qb, jb), 1.0)
        eq.add(rows[1:], var("R", tb[1:] - 1, qb[1:], jb[1:]), -1.0)
        eq.add(rows, var("G", tb, qb, jb), 1.0)
        eq.add(r0 + inflow_rows, inflow_cols, -inflow_vals)
        eq.rhs(r0, initial.backlog)  # R[-1]: users waiting to retry now
        released_now = rho[0] * initial.backlog  # rho R[-1] of layer 0
        if exact:
            # one step per layer: G[t] = rho R[t-1]
            r0 = eq.reserve(T * P * K1)
            rows = r0 + (tb * P + qb) * K1 + jb
            eq.add(rows, var("G", tb, qb, jb), 1.0)
            eq.add(rows[1:], var("R", tb[1:] - 1, qb[1:], jb[1:]), -rho[tb[1:]])
            eq.rhs(r0, released_now)
        else:
            # a layer of m steps: rho_t R[t-1] <= G[t] <= rho_t R[t-1] + phi_t inflow[t]
            r0 = ub.reserve(T * P * K1)
            rows = r0 + (tb * P + qb) * K1 + jb
            ub.add(rows, var("G", tb, qb, jb), -1.0)
            ub.add(rows[1:], var("R", tb[1:] - 1, qb[1:], jb[1:]), rho[tb[1:]])
            ub.rhs(r0, -released_now)
            r0 = ub.reserve(T * P * K1)
            rows = r0 + (tb * P + qb) * K1 + jb
            ub.add(rows, var("G", tb, qb, jb), 1.0)
            ub.add(rows[1:], var("R", tb[1:] - 1, qb[1:], jb[1:]), -rho[tb[1:]])
            ub.add(r0 + inflow_rows, inflow_cols, -phi[tf] * inflow_vals)
            ub.rhs(r0, released_now)

    # capacity and queue size per channel and layer: sum S <= c dt, sum Q <= c tau
    ch_rows = tl * C + lane_channel[ll]
    r0 = ub.reserve(T * C)
    ub.add(r0 + ch_rows, var("S", tl, ll, kl), 1.0)
    ub.rhs(r0, server_steps[:, params.channel_server] * params.dt * capacity[None, :])
    # a lane whose issuer is down is rejected (the switch lanes of a bank in an outage): it serves only while
    # both its issuer is up and its channel's server serves
    for lane in np.flatnonzero((params.lane_origin != params.lane_server) & (initial.down_s[params.lane_origin] > 0)):
        srv, origin = params.lane_server[lane], params.lane_origin[lane]
        lane_steps = np.add.reduceat(health[:, srv] * up[:, origin], starts)  # [T]
        r0 = ub.reserve(T)
        ub.add(r0 + tl[:, lane, :], var("S", tl[:, lane, :], ll[:, lane, :], kl[:, lane, :]), 1.0)
        ub.rhs(r0, lane_steps * params.dt * capacity[lane_channel[lane]])
    r0 = ub.reserve(T * C)
    ub.add(r0 + ch_rows, var("Q", tl, ll, kl), 1.0)
    ub.rhs(r0, np.tile(capacity * params.timeout_s, T))
    # queue age: what is queued at the end of a layer arrived in the last ``window_c`` layers
    # (M[t, c] = attempts admitted into channel c in layer t, an auxiliary variable)
    r0 = eq.reserve(T * C)
    eq.add(r0 + ch_rows, var("A", tl, ll, kl), 1.0)
    tc, cc = np.meshgrid(t_, np.arange(C), indexing="ij")
    eq.add(r0 + tc * C + cc, var("M", tc, cc, 0), -1.0)
    # (every layer that overlaps the last ceil(tau_c / dt) steps before the layer's end counts)
    r0 = ub.reserve(T * C)
    ub.add(r0 + ch_rows, var("Q", tl, ll, kl), 1.0)
    age_steps = np.ceil(params.timeout_s / params.dt - 1e-9).astype(np.int64)  # [C]
    first_step = ends[tc] - age_steps[cc]  # [T, C] earliest step still allowed in the queue
    for lag in range(T):
        keep = (tc >= lag) & (ends[np.maximum(tc - lag, 0)] > first_step)
        if not keep.any():
            break
        ub.add(r0 + tc[keep] * C + cc[keep], var("M", tc[keep] - lag, cc[keep], 0), -1.0)
    # attempts queued now were admitted before now: they count while the window reaches back that far
    queued_now = np.bincount(lane_channel, weights=initial.queue.reshape(L, K).sum(1), minlength=C)  # [C]
    ub.rhs(r0, np.where(first_step <= -1, queued_now[None, :], 0.0))

    if bank_throttle:
        # the admit rate is per bank and is chosen before the step's arrivals are drawn, so a bank's two
        # pools lose the same expected share of their first attempts: H[t,2b,0] / frac_2b = H[t,2b+1,0] / frac_2b+1
        frac = state.pool_frac[env_index]
        r0 = eq.reserve(T * B)
        tt, bb = np.meshgrid(t_, np.arange(B), indexing="ij")
        eq.add(r0 + tt * B + bb, var("H", tt, 2 * bb, 0), frac[2 * bb + 1])
        eq.add(r0 + tt * B + bb, var("H", tt, 2 * bb + 1, 0), -frac[2 * bb])
    stress_bounded = np.zeros(S, dtype=bool)
    if no_collapse:
        stress_bounded = _add_stress_rows(ub, var, params, state, env_index, capacity, m, tl, ll, kl, initial, health)
        _add_stressed_capacity_rows(ub, var, params, stress_bounded, capacity, m, tl, ll, kl, initial)

    # objective: intents lost
    cost = np.zeros(n_var)
    f_cost = np.full(K, pa)
    f_cost[K - 1] = 1.0
    cost[var("F", tp, pp, kp).ravel()] = f_cost[kp.ravel()]
    if pending_counts_as_lost:  # what is queued or waiting at the end of the last layer
        cost[var("Q", np.full((L, K), T - 1), np.arange(L)[:, None], np.arange(K)[None, :]).ravel()] = 1.0
        if K > 1:
            cost[var("R", np.full((P, K1), T - 1), np.arange(P)[:, None], np.arange(K1)[None, :]).ravel()] = 1.0

    # balance payers are never throttled (the core always admits them)
    bounds = np.zeros((n_var, 2))
    bounds[:, 1] = np.inf
    bounds[var("H", t_[:, None], np.full((1, 1), 2 * B), np.arange(K)[None, :]).ravel(), 1] = 0.0
    # a lane whose server or issuer is down for a whole layer holds nothing at its end: the core rejects what
    # waits there, what was queued before the outage included
    lane_up = up[:, params.lane_server] & up[:, params.lane_origin]  # [n_steps, L]
    blocked_layer = ~np.logical_or.reduceat(lane_up, starts, axis=0)  # [T, L]
    tb_, lb_ = np.nonzero(blocked_layer)
    bounds[var("Q", tb_[:, None], lb_[:, None], np.arange(K)[None, :]).ravel(), 1] = 0.0
    # no collapse: a bounded server's stress stays below the collapse threshold
    bounds[var("Z", t_[:, None], np.flatnonzero(stress_bounded)[None, :], 0).ravel(), 1] = 1.0

    A_eq, b_eq = eq.build(n_var)
    A_ub, b_ub = ub.build(n_var)
    start = time.perf_counter()
    options: dict[str, float | bool] = {"disp": _DISP}
    if method == "highs-ipm":
        options["ipm_optimality_tolerance"] = tolerance
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method=method, options=options)
    elapsed = time.perf_counter() - start
    if res.status != 0 or res.x is None:
        raise BoundError(f"fluid LP for {sc.name} failed: {res.message}")
    x = res.x * unit

    def block(name: str) -> np.ndarray:
        n = T * int(np.prod(blocks[name]))
        return x[offsets[name] : offsets[name] + n].reshape(T, *blocks[name])

    served = block("S")
    paid_lane = (served * params.success[None, :, None]).sum((0, 2))
    paid_by = {c: float(paid_lane[params.lane_kind == i].sum()) for i, c in enumerate(core.PAID_CHANNELS)}
    arrived = float(arrivals.sum() * unit)
    pending = float(block("Q")[-1].sum() + (block("R")[-1].sum() if K > 1 else 0.0))
    objective = float(res.fun * unit)  # lost, or lost + pending when pending intents count as lost
    lost = objective - pending if pending_counts_as_lost else objective
    at_stake = arrived + float(initial.queue.sum() + initial.backlog.sum()) * unit  # + intents in flight now
    return BoundResult(
        scenario=sc.name,
        failed_payment_rate=objective / at_stake if at_stake > 0 else 0.0,
        arrived=arrived,
        lost=lost,
        succeeded=float(sum(paid_by.values())),
        pending=pending,
        paid_by_channel=paid_by,
        n_variables=n_var,
        n_constraints=eq.n + ub.n,
        solve_seconds=elapsed,
        status=str(res.message),
        layer_steps=bucket,
        lane_admitted=block("A").sum(2),
        pool_throttled=block("H").sum(2),
        queued_at_end=block("Q")[-1].sum(0),
        queued=block("Q"),
        waiting=block("R"),
        stress=block("Z")[..., 0] / unit,  # stress is not a flow: undo the unit scaling of ``x``
        lost_by_layer=(block("F") * f_cost[None, None, :]).sum((1, 2)),
    )


def _add_stress_rows(
    ub: _Rows,
    var: Callable[..., np.ndarray],
    params: core.CoreParams,
    state: core.CoreState,
    env_index: int,
    capacity: np.ndarray,
    m: np.ndarray,
    tl: np.ndarray,
    ll: np.ndarray,
    kl: np.ndarray,
    start: _Start,
    health: np.ndarray,
) -> np.ndarray:
    """Stress rows ``Z[t] >= Z[t-1] + g (U_t / cap - m_t dt)`` for ``g`` = grow and relax rate; return which
    servers got them (their ``Z`` is then capped at 1, the collapse threshold).

    ``U_t`` is the load admitted into the server's channels in layer ``t`` and ``cap`` its healthy capacity
    per second. Per step the core's stress drift is ``g (rho - 1)`` above capacity and ``r (rho - 1)`` below
    it. When ``g >= r`` that is ``max(g, r) (rho - 1)``, convex in ``rho``, so by Jensen the drift summed over
    a layer (and averaged over episodes) is at least the drift of the mean load: the rows are a relaxation.
    They need the core's cap on ``rho`` (``RHO_MAX``) never to bind before a collapse (``g dt (RHO_MAX - 1)
    >= 1``: one step that far overloaded collapses the server from zero stress), and no exogenous outage,
    which would reset the stress. A server that fails any of these tests, or has no capacity, is left free.
    Stress starts at the start's (``Z[-1]``: 0 at a reset, and during an outage). While a server warms up after
    an outage its capacity is ``warm`` times the healthy one, so its true ``rho`` is at least ``U / (cap w)``
    with ``w`` the most warm-up factor of the layer's up steps: ``cap`` is scaled by ``w``.
    """
    B, dt = params.n_banks, params.dt
    T = len(m)
    grow = np.asarray(state.grow_rate[env_index], dtype=np.float64)
    relax = np.asarray(params.relax_rate, dtype=np.float64)
    cap = core._channels_to_servers(capacity[None, :], B)[0]  # [S] per second, in LP units
    bounded = (grow >= relax) & (grow * dt * (core.RHO_MAX - 1.0) >= 1.0) & (params.hazard_p == 0) & (cap > 0)
    bounded &= start.stress < 1.0
    # most capacity factor over each layer's up steps (1 where the layer has none: nothing is served then)
    warm_max = np.maximum.reduceat(health, np.cumsum(m) - m, axis=0)  # [T, S]
    warm_max = np.where(warm_max > 0, warm_max, 1.0)
    bounded[B + 1] = False  # balance never degrades
    t = np.arange(T)
    for srv in np.flatnonzero(bounded):
        on_srv = params.lane_server[ll] == srv
        for rate in (grow[srv], relax[srv]):
            r0 = ub.reserve(T)  # rate / cap * U_t - Z[t] + Z[t-1] <= rate * m_t dt
            scale = rate / (cap[srv] * warm_max[tl[on_srv], srv])
            ub.add(r0 + tl[on_srv], var("A", tl[on_srv], ll[on_srv], kl[on_srv]), scale)
            ub.add(r0 + t, var("Z", t, np.full(T, srv), 0), -1.0)
            ub.add(r0 + t[1:], var("Z", t[:-1], np.full(T - 1, srv), 0), 1.0)
            ub.rhs(r0, rate * m * dt - np.where(t == 0, start.stress[srv], 0.0))
    return bounded


def _add_stressed_capacity_rows(
    ub: _Rows,
    var: Callable[..., np.ndarray],
    params: core.CoreParams,
    bounded: np.ndarray,
    capacity: np.ndarray,
    m: np.ndarray,
    tl: np.ndarray,
    ll: np.ndarray,
    kl: np.ndarray,
    start: _Start,
) -> None:
    """A stressed server serves less: ``sum S[t] <= c dt (m_t - gl (m_t Z[t-1] - r dt m_t (m_t - 1) / 2))``.

    A channel serves ``c (1 - gl s) dt`` per step at stress ``s < 1`` (``gl`` = goodput loss). Within a layer
    stress falls by at most ``r dt`` per step (``r`` = relaxation rate), so at the layer's ``j``-th step it is
    at least ``Z[t-1] - r dt j``; summing over the layer's steps gives the row, linear in ``Z``. Only for
    channels of servers with stress rows, from the second layer on, and in the first when the start is stressed
    (then ``Z[-1]`` is the start's stress).
    """
    T, dt = len(m), params.dt
    for c in np.flatnonzero(bounded[params.channel_server]):
        srv = params.channel_server[c]
        gl, r = float(params.goodput_loss[srv]), float(params.relax_rate[srv])
        first = 0 if start.stress[srv] > 0 else 1
        t = np.arange(first, T)
        if len(t) == 0:
            continue
        on_c = (params.lane_channel[ll] == c) & (tl >= first)
        r0 = ub.reserve(len(t)) - first  # so that layer t's row is r0 + t
        ub.add(r0 + tl[on_c], var("S", tl[on_c], ll[on_c], kl[on_c]), 1.0)
        later = t[t >= 1]
        ub.add(r0 + later, var("Z", later - 1, np.full(len(later), srv), 0), capacity[c] * dt * gl * m[later])
        z_before = np.where(t == 0, start.stress[srv], 0.0)  # Z[-1] is a constant, not a variable
        ub.rhs(r0 + first, capacity[c] * dt * (m[t] - gl * m[t] * z_before + gl * r * dt * m[t] * (m[t] - 1) / 2.0))


@dataclass(frozen=True)
class _Start:
    """Where the LP starts, in LP units: a reset (all empty) or the contents of a running episode's state."""

    queue: np.ndarray  # [L * K] attempts queued now (Q[-1]), flattened like the queue rows
    backlog: np.ndarray  # [P * (K - 1)] users waiting to make attempt k + 2 (R[-1])
    stress: np.ndarray  # [S] server stress now (Z[-1])
    down_s: np.ndarray  # [S] seconds of outage left
    warm: np.ndarray  # [S] capacity factor while warming up after an outage (1 = fully warm)

    @classmethod
    def empty(cls, params: core.CoreParams) -> _Start:
        K1 = max(params.max_attempts - 1, 0)
        return cls(
            np.zeros(params.n_lanes * params.max_attempts),
            np.zeros(params.n_pools * K1),
            np.zeros(params.n_servers),
            np.zeros(params.n_servers),
            np.ones(params.n_servers),
        )

    @classmethod
    def of(cls, state: core.CoreState, env_index: int, unit: float) -> _Start:
        return cls(
            np.asarray(state.queue[env_index], dtype=np.float64).ravel() / unit,
            np.asarray(state.backlog[env_index], dtype=np.float64)[:, 1:].ravel() / unit,  # core's k = LP's k + 1
            np.asarray(state.stress[env_index], dtype=np.float64).copy(),
            np.asarray(state.down_left[env_index], dtype=np.float64).copy(),
            np.minimum(np.asarray(state.warm[env_index], dtype=np.float64), 1.0),
        )


def _outage_health(params: core.CoreParams, start: _Start, n_steps: int) -> np.ndarray:
    """``[n_steps, S]`` capacity factor of each server at each step from the start, as the core's step 6 gives
    it when no new outage begins: 0 while the outage in progress lasts, then the warm-up factor rising by
    ``dt * warm_rate`` a step to 1 (all ones at a reset)."""
    health = np.ones((n_steps, params.n_servers))
    if not (start.down_s > 0).any() and (start.warm >= 1.0).all():
        return health
    down_left, warm = start.down_s, start.warm
    for j in range(n_steps):
        health[j] = np.where(down_left > 0, 0.0, warm)
        down_left, warm = core.outage_clock(params, down_left, warm)
    return health


class _Rows:
    """Sparse constraint rows collected as (row, column, value) triplets."""

    def __init__(self) -> None:
        self.n = 0
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.b: dict[int, np.ndarray] = {}

    def reserve(self, n: int) -> int:
        first, self.n = self.n, self.n + n
        return first

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray | float) -> None:
        rows, cols, vals = np.broadcast_arrays(rows, cols, np.asarray(vals, dtype=np.float64))
        self.rows.append(rows.ravel())
        self.cols.append(cols.ravel())
        self.vals.append(vals.ravel())

    def rhs(self, first: int, values: np.ndarray) -> None:
        self.b[first] = np.asarray(values, dtype=np.float64).ravel()

    def build(self, n_var: int) -> tuple[sparse.csr_matrix, np.ndarray]:
        b = np.zeros(self.n)
        for first, values in self.b.items():
            b[first : first + len(values)] = values
        if not self.rows:
            return sparse.csr_matrix((self.n, n_var)), b
        m = sparse.csr_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))), shape=(self.n, n_var)
        )
        return m, b
