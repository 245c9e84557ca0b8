"""The one simulation of payroute, batched over environments.

Every state array has a leading environment axis ``N``; ``step`` advances all environments by one step of
``dt`` seconds from their own state, action and random stream, and returns a new state. The single
environment, the vector environments and the evaluators all call this module: the dynamics exist once.

Who is where (B banks, K = max attempts; ``k`` below counts attempts already made):

=========  ==============================================================================================
pools      ``P = 2B + 1`` user groups the platform decides for: pool ``2b`` = bank b quick-enabled users,
           ``2b + 1`` = bank b online-banking-only users, ``2B`` = balance payers
lanes      ``L = 4B + 1`` (pool, channel) pairs with a queue: lane ``4b + r`` for r = 0 quick, 1 switch,
           2 netbank (quick-enabled user), 3 netbank (netbank-only user); lane ``4B`` = balance
channels   ``C = 2B + 2`` capacities: ``b`` = bank b quick, ``B + b`` = bank b netbank, ``2B`` = switch,
           ``2B + 1`` = balance
servers    ``S = B + 2`` health states (stress, outage, warm-up): bank b core, ``B`` = switch, ``B+1`` = balance
=========  ==============================================================================================

One step, in order (``docs/MODEL.md`` has the equations):

1. new intents arrive (Poisson around the surge curve) and users whose retry delay ends come back;
2. the action's admit rate lets a share of each bank's attempts through; the rest get "busy, try later";
3. admitted quick-enabled attempts are split over quick / switch / netbank by the route weights;
4. attempts at a down server (or, on the switch, for a down issuer) are rejected at once; the others join
   their channel's FIFO queue, which serves ``capacity * health * dt`` attempts; attempts that could not
   be served within the channel timeout time out; served attempts succeed or are declined;
5. every failed attempt's user abandons, switches (balance or another bank's card) or retries later;
   an intent whose ``max_attempts``-th attempt fails is lost;
6. server stress follows load / capacity; stress past 1 (or an exogenous hazard) starts an outage, after
   which the server warms up from reduced capacity.

Counts are float64 arrays holding whole numbers, so ``arrived == succeeded + lost + in_flight`` holds
exactly at every step.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from .sampling import NORMAL_TABLE, binomial, key_from_seed, poisson, split, uniforms
from .scenario import Fragility, Scenario

try:  # the compiled twin of step_numpy; PAYROUTE_NUMBA=0 forces the numpy code
    if os.environ.get("PAYROUTE_NUMBA", "1") == "0":
        raise ImportError("disabled by PAYROUTE_NUMBA=0")
    from . import _fast
except ImportError:  # pragma: no cover - depends on the installation
    _fast = None

__all__ = ["CoreParams", "CoreState", "in_flight", "make_params", "replicate", "reset", "reset_where", "step"]

N_ROUTES = 3  # quick, switch, netbank
ROUTE_NAMES = ("quick", "switch", "netbank")
PAID_CHANNELS = ("quick", "switch", "netbank", "balance")
RHO_MAX = 100.0  # load / capacity is capped here (it only sets how fast stress grows)
LATENCY_BIN_S = 5.0
LATENCY_BINS = 96  # 0 .. 480 s; the last bin collects anything longer (estimates stay under 5 min)
_RESET_STREAM = 2**31 - 1  # "step" index of the draws made at reset (steps never get there)
# the random draws of one step, in the order of their columns (the compiled kernel relies on it)
_DRAW_ORDER = (
    "arrivals",
    "release",
    "admit",
    "route_quick",
    "route_switch",
    "serve",
    "timeout",
    "success",
    "abandon",
    "switch",
    "to_balance",
    "dest",
    "hazard",
    "outage_len",
)


@dataclass(frozen=True)
class CoreParams:
    """Everything fixed for a scenario, as arrays (gymnax-style parameters for the pure step)."""

    scenario: Scenario
    n_banks: int
    max_attempts: int
    dt: float
    n_steps: int
    # traffic: expected intents per step (base part and surge part, so the peak can be randomised)
    base_per_step: np.ndarray  # [n_steps]
    surge_per_step: np.ndarray  # [n_steps]
    norm: float  # expected intents in the busiest step
    # index maps (see module docstring)
    lane_channel: np.ndarray  # [L] channel of each lane
    lane_server: np.ndarray  # [L] server whose health the lane's channel follows
    lane_origin: np.ndarray  # [L] server that must be up for the lane (issuer for switch lanes)
    lane_kind: np.ndarray  # [L] index into PAID_CHANNELS
    channel_server: np.ndarray  # [C]
    lane_to_channel: np.ndarray  # [L, C] 0/1
    # channels and lanes
    capacity: np.ndarray  # [C] true capacity, attempts/s
    declared: np.ndarray  # [C] declared capacity, attempts/s
    timeout_s: np.ndarray  # [C]
    interaction_s: np.ndarray  # [L]
    success: np.ndarray  # [L] base success probability of a served attempt
    # users
    pool_frac: np.ndarray  # [P] nominal share of intents arriving in each pool
    p_release: float  # chance a waiting user comes back this step
    p_abandon: float
    p_switch_given_stay: float  # P(switch | not abandon)
    p_to_balance: np.ndarray  # [P] P(balance | switch); 0 for the balance pool itself
    retry_delay_s: float
    # servers
    grow_rate: np.ndarray  # [S] 1 / collapse_s
    relax_rate: np.ndarray  # [S]
    goodput_loss: np.ndarray  # [S]
    decline_gain: np.ndarray  # [S]
    outage_min_s: np.ndarray  # [S]
    outage_max_s: np.ndarray  # [S]
    warm_start: np.ndarray  # [S]
    warm_rate: np.ndarray  # [S] warm-up per second
    hazard_p: np.ndarray  # [S] chance of an exogenous outage per step
    # random draws of one step: name -> (offset, shape after the env axis)
    draws: dict[str, tuple[int, tuple[int, ...]]]
    n_draws: int

    @property
    def n_pools(self) -> int:
        return 2 * self.n_banks + 1

    @property
    def n_lanes(self) -> int:
        return 4 * self.n_banks + 1

    @property
    def n_channels(self) -> int:
        return 2 * self.n_banks + 2

    @property
    def n_servers(self) -> int:
        return self.n_banks + 2


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs microseconds per step
class CoreState:
    """State of ``N`` environments as plain arrays with a leading env axis."""

    key: np.ndarray  # [N] uint64 random stream of the episode
    t: np.ndarray  # [N] int64 steps taken
    backlog: np.ndarray  # [N, P, K] users waiting to make attempt k+1 (k >= 1 used)
    queue: np.ndarray  # [N, L, K] attempts waiting at a channel
    stress: np.ndarray  # [N, S]
    down_left: np.ndarray  # [N, S] seconds of outage left (0 = up)
    warm: np.ndarray  # [N, S] capacity factor while warming up after an outage
    admit: np.ndarray  # [N, B] last admit rate applied
    route: np.ndarray  # [N, B, 3] last route split applied (sums to 1)
    # per-episode parameters (randomised scenarios draw them at reset)
    peak_scale: np.ndarray  # [N]
    capacity: np.ndarray  # [N, C]
    pool_frac: np.ndarray  # [N, P]
    dest: np.ndarray  # [N, P, P] where a card-switcher of each pool goes
    grow_rate: np.ndarray  # [N, S]
    # what the platform saw in the last step (feeds observations and render)
    seen_bank: np.ndarray  # [N, B, 3] offered, throttled, retry backlog
    seen_channel: np.ndarray  # [N, B, 3, 7] per route: sent, succeeded, declined, timed out, rejected, queue, wait_s
    seen_balance: np.ndarray  # [N, 3] sent, succeeded, queue
    # episode-cumulative counters
    arrived: np.ndarray  # [N]
    succeeded: np.ndarray  # [N]
    lost: np.ndarray  # [N]
    attempts: np.ndarray  # [N]
    failed_attempts: np.ndarray  # [N]
    entered_pool: np.ndarray  # [N, P] intents that arrived in or switched into each pool
    lost_pool: np.ndarray  # [N, P] intents lost in each pool
    outage_s: np.ndarray  # [N, S]
    paid_by: np.ndarray  # [N, 4] successes by PAID_CHANNELS
    latency_hist: np.ndarray  # [N, LATENCY_BINS] successes by estimated time to success

    @property
    def num_envs(self) -> int:
        return int(self.key.shape[0])


SEEN_FIELDS = ("sent", "succeeded", "declined", "timed_out", "rejected", "queue", "wait_s")


# ------------------------------------------------------------------------------------------ parameters


def make_params(scenario: Scenario) -> CoreParams:
    """Turn a validated scenario into the arrays the step uses."""
    sc = scenario
    B, K = sc.n_banks, sc.max_attempts
    P, L, C, S = 2 * B + 1, 4 * B + 1, 2 * B + 2, B + 2
    switch_ch, bal_ch, switch_srv, bal_srv = 2 * B, 2 * B + 1, B, B + 1

    lane_channel = np.empty(L, dtype=np.int64)
    lane_origin = np.empty(L, dtype=np.int64)
    lane_kind = np.empty(L, dtype=np.int64)
    interaction = np.empty(L)
    success = np.empty(L)
    for b, bank in enumerate(sc.banks):
        lane_channel[4 * b : 4 * b + 4] = (b, switch_ch, B + b, B + b)
        lane_origin[4 * b : 4 * b + 4] = b
        lane_kind[4 * b : 4 * b + 4] = (0, 1, 2, 2)
        interaction[4 * b : 4 * b + 4] = (
            sc.quick.interaction_s,
            sc.switch.interaction_s,
            sc.netbank.interaction_s,
            sc.netbank.interaction_s,
        )
        success[4 * b : 4 * b + 4] = (
            bank.quick_success,
            bank.quick_success * sc.switch.success_factor,
            bank.netbank_success,
            bank.netbank_success,
        )
    lane_channel[4 * B], lane_origin[4 * B], lane_kind[4 * B] = bal_ch, bal_srv, 3
    interaction[4 * B], success[4 * B] = sc.balance.interaction_s, sc.balance.success

    channel_server = np.concatenate([np.arange(B), np.arange(B), [switch_srv, bal_srv]]).astype(np.int64)
    lane_server = channel_server[lane_channel]
    lane_to_channel = np.zeros((L, C))
    lane_to_channel[np.arange(L), lane_channel] = 1.0

    capacity = np.array(
        [b.quick_capacity for b in sc.banks]
        + [b.netbank_capacity for b in sc.banks]
        + [sc.switch.capacity, sc.balance.capacity]
    )
    declared = np.array(
        [b.quick_declared for b in sc.banks]
        + [b.netbank_declared for b in sc.banks]
        + [sc.switch.declared, sc.balance.capacity]
    )
    timeout = np.array(
        [sc.quick.timeout_s] * B + [sc.netbank.timeout_s] * B + [sc.switch.timeout_s, sc.balance.timeout_s]
    )

    pool_frac = _pool_fractions(
        np.array([b.share for b in sc.banks]), np.array([b.quick_share for b in sc.banks]), np.array(sc.balance.share)
    )
    p_to_balance = np.full(P, sc.users.switch_to_balance)
    p_to_balance[2 * B] = 0.0

    # Balance is the platform's own system: it never collapses from load and has no outage hazard.
    never = Fragility(np.inf, 60.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0)
    frags = [b.fragility for b in sc.banks] + [sc.switch.fragility, never]

    def frag(name: str) -> np.ndarray:
        return np.array([getattr(f, name) for f in frags], dtype=np.float64)

    t_mid = sc.step_midpoints()
    base = np.full(sc.n_steps, sc.traffic.base_rate * sc.dt_s)
    surge = sc.intent_rate(t_mid) * sc.dt_s - base

    draw_shapes = {
        "arrivals": (P,),
        "release": (P, K),
        "admit": (P, K),
        "route_quick": (B, K),
        "route_switch": (B, K),
        "serve": (L, K),
        "timeout": (L, K),
        "success": (L, K),
        "abandon": (P, K - 1),
        "switch": (P, K - 1),
        "to_balance": (P, K - 1),
        "dest": (P, K - 1),
        "hazard": (S,),
        "outage_len": (S,),
    }
    assert tuple(draw_shapes) == _DRAW_ORDER
    draws, offset = {}, 0
    for name, shape in draw_shapes.items():
        draws[name] = (offset, shape)
        offset += int(np.prod(shape))

    abandon = sc.users.abandon
    return CoreParams(
        scenario=sc,
        n_banks=B,
        max_attempts=K,
        dt=sc.dt_s,
        n_steps=sc.n_steps,
        base_per_step=base,
        surge_per_step=surge,
        norm=sc.peak_intents_per_step,
        lane_channel=lane_channel,
        lane_server=lane_server,
        lane_origin=lane_origin,
        lane_kind=lane_kind,
        channel_server=channel_server,
        lane_to_channel=lane_to_channel,
        capacity=capacity,
        declared=declared,
        timeout_s=timeout,
        interaction_s=interaction,
        success=success,
        pool_frac=pool_frac,
        p_release=float(-np.expm1(-sc.dt_s / sc.users.retry_delay_s)),
        p_abandon=abandon,
        p_switch_given_stay=sc.users.switch / (1.0 - abandon) if abandon < 1.0 else 0.0,
        p_to_balance=p_to_balance,
        retry_delay_s=sc.users.retry_delay_s,
        grow_rate=1.0 / frag("collapse_s"),
        relax_rate=1.0 / frag("relax_s"),
        goodput_loss=frag("goodput_loss"),
        decline_gain=frag("decline_gain"),
        outage_min_s=frag("outage_min_s"),
        outage_max_s=frag("outage_max_s"),
        warm_start=frag("warm_start"),
        warm_rate=(1.0 - frag("warm_start")) / frag("warmup_s"),
        hazard_p=-np.expm1(-frag("hazard_per_hour") * sc.dt_s / 3600.0),
        draws=draws,
        n_draws=offset,
    )


def _pool_fractions(shares: np.ndarray, quick: np.ndarray, balance: np.ndarray) -> np.ndarray:
    """Share of new intents per pool: balance first, the rest by card share and quick-enabled share.

    ``shares`` and ``quick`` are ``[..., B]``, ``balance`` is ``[...]`` (the same leading env axes, or none).
    """
    bank_side = (1.0 - balance[..., None]) * shares
    pools = np.stack([bank_side * quick, bank_side * (1.0 - quick)], axis=-1)
    pools = pools.reshape(*shares.shape[:-1], -1)
    return np.concatenate([pools, balance[..., None]], axis=-1)


def _switch_destinations(shares: np.ndarray, quick: np.ndarray) -> np.ndarray:
    """``[..., P, P]``: where a user who switches to another bank's card goes, from each pool.

    Another bank is picked by card share among the other banks, then quick-enabled or not by that bank's
    quick share. Balance payers who switch pick any bank by share. With no other bank to switch to, the
    user stays in their own pool (it becomes a retry). ``shares`` and ``quick`` are ``[..., B]``.
    """
    B = shares.shape[-1]
    P = 2 * B + 1
    lead = shares.shape[:-1]
    dest = np.zeros((*lead, P, P))
    dest_share = shares[..., None, :]  # [..., 1 (origin), B (destination)]
    dest_quick = quick[..., None, :]
    to_pool = np.stack([dest_share * dest_quick, dest_share * (1 - dest_quick)], axis=-1)
    to_pool = np.broadcast_to(to_pool, (*lead, B, B, 2)).copy()  # [.., origin bank, dest bank, class]
    to_pool[..., np.arange(B), np.arange(B), :] = 0.0
    rows = to_pool.reshape(*lead, B, 2 * B)
    dest[..., 0 : 2 * B : 2, : 2 * B] = rows
    dest[..., 1 : 2 * B : 2, : 2 * B] = rows
    dest[..., 2 * B, : 2 * B] = (shares[..., :, None] * np.stack([quick, 1 - quick], -1)).reshape(*lead, 2 * B)
    total = dest.sum(-1, keepdims=True)
    eye = np.broadcast_to(np.eye(P), dest.shape)
    return np.where(total > 0, dest / np.where(total > 0, total, 1.0), eye)


# ------------------------------------------------------------------------------------------ reset


def reset(params: CoreParams, seeds: np.ndarray | None = None, keys: np.ndarray | None = None) -> CoreState:
    """Fresh state for ``len(seeds)`` environments (or from explicit 64-bit ``keys``)."""
    p = params
    if keys is None:
        if seeds is None:
            raise ValueError("reset needs seeds or keys")
        keys = key_from_seed(np.asarray(seeds, dtype=np.int64).astype(np.uint64))
    keys = np.asarray(keys, dtype=np.uint64)
    N, B, K = keys.shape[0], p.n_banks, p.max_attempts
    P, L, C, S = p.n_pools, p.n_lanes, p.n_channels, p.n_servers
    sc = p.scenario

    rz = sc.randomize
    shares = np.broadcast_to(np.array([b.share for b in sc.banks]), (N, B)).copy()
    quick = np.broadcast_to(np.array([b.quick_share for b in sc.banks]), (N, B)).copy()
    balance = np.full(N, sc.balance.share)
    peak_scale = np.ones(N)
    capacity = np.broadcast_to(p.capacity, (N, C)).copy()
    grow_rate = np.broadcast_to(p.grow_rate, (N, S)).copy()
    if rz.active:
        # one column per draw; new kinds of draw are appended so that older ones keep their values
        cols = np.cumsum([0, 1, B, C, S, B, 1, 1, B])
        u = uniforms(keys, np.full(N, _RESET_STREAM), int(cols[-1]))
        pm = 2.0 * u - 1.0  # uniform in (-1, 1) for the multipliers
        peak_scale = 1.0 + rz.peak * pm[:, 0]
        shares = shares * (1.0 + rz.shares * pm[:, cols[1] : cols[2]])
        shares = shares / shares.sum(1, keepdims=True)
        cap_mult = 1.0 + rz.capacity * pm[:, cols[2] : cols[3]]
        cap_mult[:, -1] = 1.0  # the platform's own balance system is not randomised
        capacity = capacity * cap_mult
        if rz.shuffle_fragility > 0:  # deal the banks' collapse speeds out in a random order
            shuffled = u[:, cols[6]] < rz.shuffle_fragility
            order = np.where(shuffled[:, None], np.argsort(u[:, cols[7] : cols[8]], axis=1), np.arange(B))
            grow_rate[:, :B] = np.take_along_axis(grow_rate[:, :B], order, axis=1)
        grow_rate = grow_rate * (1.0 + rz.fragility * pm[:, cols[3] : cols[4]])
        quick = np.minimum(quick * (1.0 + rz.quick_share * pm[:, cols[4] : cols[5]]), 1.0)
        if rz.balance_share_max > sc.balance.share:
            balance = sc.balance.share + (rz.balance_share_max - sc.balance.share) * u[:, cols[5]]

    z = np.zeros
    route = z((N, B, N_ROUTES))
    route[:, :, 0] = 1.0
    return CoreState(
        key=keys,
        t=z(N, dtype=np.int64),
        backlog=z((N, P, K)),
        queue=z((N, L, K)),
        stress=z((N, S)),
        down_left=z((N, S)),
        warm=np.ones((N, S)),
        admit=np.ones((N, B)),
        route=route,
        peak_scale=peak_scale,
        capacity=capacity,
        pool_frac=_pool_fractions(shares, quick, balance),
        dest=_switch_destinations(shares, quick),
        grow_rate=grow_rate,
        seen_bank=z((N, B, 3)),
        seen_channel=z((N, B, N_ROUTES, len(SEEN_FIELDS))),
        seen_balance=z((N, 3)),
        arrived=z(N),
        succeeded=z(N),
        lost=z(N),
        attempts=z(N),
        failed_attempts=z(N),
        entered_pool=z((N, P)),
        lost_pool=z((N, P)),
        outage_s=z((N, S)),
        paid_by=z((N, len(PAID_CHANNELS))),
        latency_hist=z((N, LATENCY_BINS)),
    )


def reset_where(params: CoreParams, state: CoreState, mask: np.ndarray, keys: np.ndarray) -> CoreState:
    """State with the environments in ``mask`` replaced by fresh ones keyed ``keys`` (len = mask.sum())."""
    fresh = reset(params, keys=keys)
    updates = {}
    for f in dataclasses.fields(CoreState):
        arr = getattr(state, f.name).copy()
        arr[mask] = getattr(fresh, f.name)
        updates[f.name] = arr
    return CoreState(**updates)


def replicate(state: CoreState, i: int, keys: np.ndarray) -> CoreState:
    """``len(keys)`` copies of environment ``i``'s state, copy ``j`` drawing its future from stream ``keys[j]``.

    A copy given environment ``i``'s own key replays its future exactly (the streams are counter-based:
    a draw depends only on the key and the step). Used to look ahead from a state (``agents.rollout``).
    """
    if not 0 <= i < state.num_envs:
        raise ValueError(f"environment index {i} out of range for {state.num_envs} environments")
    keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
    n = keys.shape[0]
    copies = {f.name: np.repeat(getattr(state, f.name)[i : i + 1], n, axis=0) for f in dataclasses.fields(CoreState)}
    copies["key"] = keys.copy()
    return CoreState(**copies)


def in_flight(state: CoreState) -> np.ndarray:
    """Intents neither paid nor lost: waiting to retry or queued at a channel. ``[N]``."""
    return state.backlog.sum((1, 2)) + state.queue.sum((1, 2))


# ------------------------------------------------------------------------------------------ step


@dataclass(slots=True)
class StepCounts:
    """What happened in one step, per environment (whole numbers)."""

    arrived: np.ndarray  # [N] new intents
    succeeded: np.ndarray  # [N]
    lost: np.ndarray  # [N] intents lost this step
    attempts: np.ndarray  # [N] attempts made (including throttled ones)
    failed_attempts: np.ndarray  # [N]
    truncated: np.ndarray  # [N] bool: the episode's last step was taken


def step(params: CoreParams, state: CoreState, admit: np.ndarray, route: np.ndarray) -> tuple[CoreState, StepCounts]:
    """Advance every environment by one step.

    ``admit`` ``[N, B]`` in [0, 1] and ``route`` ``[N, B, 3]`` (non-negative, rows summing to 1) are the
    decoded action (see ``actions.py``). Runs the compiled twin (``_fast.py``, bit-identical) when numba is
    available, else ``step_numpy``.
    """
    if _fast is not None:
        return step_compiled(params, state, admit, route)
    return step_numpy(params, state, admit, route)


def step_numpy(
    params: CoreParams, state: CoreState, admit: np.ndarray, route: np.ndarray
) -> tuple[CoreState, StepCounts]:
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
    down_next, warm_next = outage_clock(p, s.down_left, s.warm)
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

    counts = StepCounts(
        arrived=arrivals.sum(1),
        succeeded=paid_lane.sum(1),
        lost=lost_pool.sum(1),
        attempts=offered.sum((1, 2)),
        failed_attempts=pool_fail.sum((1, 2)),
        truncated=s.t + 1 >= p.n_steps,
    )
    new_state = CoreState(
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
        arrived=s.arrived + counts.arrived,
        succeeded=s.succeeded + counts.succeeded,
        lost=s.lost + counts.lost,
        attempts=s.attempts + counts.attempts,
        failed_attempts=s.failed_attempts + counts.failed_attempts,
        entered_pool=s.entered_pool + arrivals + moved.sum(2),
        lost_pool=s.lost_pool + lost_pool,
        outage_s=s.outage_s + dt * down,
        paid_by=s.paid_by + paid_by,
        latency_hist=s.latency_hist + hist,
    )
    return new_state, counts


_PARALLEL_FROM = 64  # batches at least this large use numba's threads


def step_compiled(
    params: CoreParams, state: CoreState, admit: np.ndarray, route: np.ndarray
) -> tuple[CoreState, StepCounts]:
    """``step`` through the compiled kernel: same arithmetic as ``step_numpy``, one call per step."""
    assert _fast is not None
    p, s = params, state
    N = s.num_envs
    e = np.empty_like
    out = CoreState(
        key=s.key,
        t=s.t + 1,
        backlog=e(s.backlog),
        queue=e(s.queue),
        stress=e(s.stress),
        down_left=e(s.down_left),
        warm=e(s.warm),
        admit=np.ascontiguousarray(admit, dtype=np.float64),
        route=np.ascontiguousarray(route, dtype=np.float64),
        peak_scale=s.peak_scale,
        capacity=s.capacity,
        pool_frac=s.pool_frac,
        dest=s.dest,
        grow_rate=s.grow_rate,
        seen_bank=e(s.seen_bank),
        seen_channel=e(s.seen_channel),
        seen_balance=e(s.seen_balance),
        arrived=e(s.arrived),
        succeeded=e(s.succeeded),
        lost=e(s.lost),
        attempts=e(s.attempts),
        failed_attempts=e(s.failed_attempts),
        entered_pool=e(s.entered_pool),
        lost_pool=e(s.lost_pool),
        outage_s=e(s.outage_s),
        paid_by=e(s.paid_by),
        latency_hist=e(s.latency_hist),
    )
    step_counts = np.empty((N, 5))
    kernel = _fast.step_parallel if N >= _PARALLEL_FROM else _fast.step_serial
    kernel(
        _kernel_params(p),
        (s.key, s.t, s.backlog, s.queue, s.stress, s.down_left, s.warm, s.peak_scale, s.capacity, s.pool_frac,
         s.dest, s.grow_rate, s.arrived, s.succeeded, s.lost, s.attempts, s.failed_attempts, s.entered_pool,
         s.lost_pool, s.outage_s, s.paid_by, s.latency_hist),
        out.admit,
        out.route,
        (out.backlog, out.queue, out.stress, out.down_left, out.warm, out.seen_bank, out.seen_channel,
         out.seen_balance, out.arrived, out.succeeded, out.lost, out.attempts, out.failed_attempts,
         out.entered_pool, out.lost_pool, out.outage_s, out.paid_by, out.latency_hist, step_counts),
    )  # fmt: skip
    counts = StepCounts(
        arrived=step_counts[:, 0],
        succeeded=step_counts[:, 1],
        lost=step_counts[:, 2],
        attempts=step_counts[:, 3],
        failed_attempts=step_counts[:, 4],
        truncated=out.t >= p.n_steps,
    )
    return out, counts


def _kernel_params(p: CoreParams) -> tuple:
    """The parameters as the kernel's positional arguments (built once per CoreParams object, kept on it: a
    module-level cache would keep every environment's parameters alive)."""
    cached = p.__dict__.get("_kernel_args")
    if cached is not None:
        return cached
    offsets = np.array([p.draws[name][0] for name in _DRAW_ORDER], dtype=np.int64)
    args = (
        p.n_banks, p.max_attempts, p.dt, p.n_steps, p.base_per_step, p.surge_per_step, p.lane_channel,
        p.lane_server, p.lane_origin, p.lane_kind, p.channel_server, p.timeout_s, p.interaction_s, p.success,
        p.p_release, p.p_abandon, p.p_switch_given_stay, p.p_to_balance, p.retry_delay_s, p.relax_rate,
        p.goodput_loss, p.decline_gain, p.outage_min_s, p.outage_max_s, p.warm_start, p.warm_rate, p.hazard_p,
        RHO_MAX, offsets, NORMAL_TABLE,
    )  # fmt: skip
    object.__setattr__(p, "_kernel_args", args)  # a frozen dataclass: not a field, so eq and repr ignore it
    return args


def _lanes_to_pools(x: np.ndarray, B: int) -> np.ndarray:
    """``[N, L, ...]`` lane counts to ``[N, P, ...]`` pool counts (quick-enabled lanes 0-2, netbank-only 3)."""
    banks = x[:, : 4 * B].reshape(x.shape[0], B, 4, *x.shape[2:])
    pools = np.stack([banks[:, :, :3].sum(2), banks[:, :, 3]], axis=2).reshape(x.shape[0], 2 * B, *x.shape[2:])
    return np.concatenate([pools, x[:, 4 * B :]], axis=1)


def outage_clock(p: CoreParams, down_left: np.ndarray, warm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of the servers' outage timers and warm-up when no new outage starts: an outage runs down by
    ``dt``; a server that is up (after this step) regains ``dt * warm_rate`` of capacity, up to 1.
    (``fluid_bound(..., from_now=True)`` replays it to foresee when a server is back.)"""
    down_next = np.maximum(down_left - p.dt, 0.0)
    return down_next, np.where(down_next > 0, warm, np.minimum(warm + p.dt * p.warm_rate, 1.0))


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
