"""The state and parameters of payroute, laid out for the compiled dynamics, and each episode's world at reset.

The dynamics themselves are in ``physics.py`` (one compiled source). This module says where everything is:
the state of ``N`` environments is one numpy structured array (``CoreState``, a record per environment,
fields readable as ``state.queue [N, L, K]``; the kernel reads the same memory through views); the kernel's
parameters (``CoreParams.kernel``, a ``physics.Params``) sit beside the frozen ``CoreParams`` that Python
code reads. ``reset`` draws each episode's world (the scenario
generation: randomised peaks, capacities, shares, fragility) in numpy, once per episode; ``step`` advances
a batch through the kernel and returns a new state (the ``Simulator`` steps in place instead).

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

Counts are float64 holding whole numbers, so ``arrived == succeeded + lost + in_flight`` holds exactly at
every step.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from . import physics
from .actions import ADMIT_LEVELS, ROUTE_PRESETS
from .sampling import key_from_seed, uniforms
from .scenario import Fragility, Scenario

__all__ = [
    "CoreParams",
    "CoreState",
    "StepCounts",
    "in_flight",
    "make_params",
    "replicate",
    "reset",
    "state_dtype",
    "step",
]

N_ROUTES = 3  # quick, switch, netbank
ROUTE_NAMES = ("quick", "switch", "netbank")
PAID_CHANNELS = ("quick", "switch", "netbank", "balance")
RHO_MAX = 100.0  # load / capacity is capped here (it only sets how fast stress grows)
LATENCY_BIN_S = physics.LATENCY_BIN_S
LATENCY_BINS = physics.N_LATENCY_BINS  # 0 .. 480 s; the last bin collects anything longer
_RESET_STREAM = 2**31 - 1  # "step" index of the draws made at reset (steps never get there)
# the random draws of one step, in the order of their columns (``physics.D_*`` index this tuple)
_DRAW_ORDER = (
    "arrivals",
    "release",
    "admit",
    "route",
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
    # what the kernel reads of the above (``physics.Params``), and the traffic [2, n_steps]
    kernel: physics.Params = dataclasses.field(repr=False, compare=False)
    traffic: np.ndarray = dataclasses.field(repr=False, compare=False)

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


class CoreState(np.ndarray):
    """State of ``N`` environments: one record per environment (``state_dtype``), fields read as arrays with a
    leading env axis (``state.queue [N, L, K]``, settable: ``state.capacity = ...``). The kernel updates the
    records in place. ``state[mask]`` and ``state[i:j]`` are states too; ``state[i]`` is one numpy record,
    whose fields are read by name (``state[i]["queue"]``).

    ===================  ==========================================================================
    ``key`` ``t``        the episode's random stream (uint64) and the steps taken
    ``backlog``          ``[P, K]`` users waiting to make attempt k+1 (k >= 1 used)
    ``queue``            ``[L, K]`` attempts waiting at a channel
    ``stress``           ``[S]`` server stress; ``down_left`` seconds of outage left (0 = up);
    ``warm``             ``[S]`` capacity factor while warming up after an outage
    ``admit`` ``route``  ``[B]``, ``[B, 3]`` the control applied in the last step
    per-episode world    ``peak_scale``, ``capacity [C]``, ``pool_frac [P]``, ``dest [P, P]`` (where a card
                         switcher of each pool goes), ``grow_rate [S]`` (randomised scenarios draw them)
    last step, seen      ``seen_bank [B, 3]`` offered, throttled, retry backlog; ``seen_channel [B, 3, 7]``
                         per route ``SEEN_FIELDS``; ``seen_balance [3]`` sent, succeeded, queue
    episode counters     ``arrived``, ``succeeded``, ``lost``, ``in_flight`` (intents waiting to retry or
                         queued after the last step), ``attempts``, ``failed_attempts`` (side by side in
                         this order: the single env's info reads them in one go), ``entered_pool [P]``,
                         ``lost_pool [P]``, ``outage_s [S]``, ``paid_by [4]``, ``latency_hist [LATENCY_BINS]``
    last step, out       ``step_arrived`` .. ``step_failed`` (the step's counts), ``reward``,
                         ``truncated``, ``obs [D]`` (float32, the internal features last)
    ===================  ==========================================================================
    """

    @property
    def num_envs(self) -> int:
        return int(self.shape[0])


def _field(name: str) -> property:
    """``state.<name>``: the field as a plain array with the env axis first (a view), settable."""

    def get(self: CoreState) -> np.ndarray:
        return np.ndarray.__getitem__(self, name).view(np.ndarray)

    def set(self: CoreState, value: Any) -> None:
        np.ndarray.__setitem__(self, name, value)

    return property(get, set, doc=f"``{name}`` of every environment (see ``CoreState``)")


# Named fields as properties (numpy's recarray looks every attribute up through a slow __getattribute__).
for _name in physics.STATE_FIELDS:
    setattr(CoreState, _name, _field(_name))


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

    # columns of one step's draws; (.., 2): a count, then the uniform that spreads it over attempt numbers
    draw_shapes = {
        "arrivals": (P,),
        "release": (P, 2),
        "admit": (P,),
        "route": (B, 2),  # quick, then switch among the rest
        "serve": (C,),
        "timeout": (C,),
        "success": (L, 2),
        "abandon": (P, 2),
        "switch": (P, 2),
        "to_balance": (P, 2),
        "dest": (P,),
        "hazard": (S,),
        "outage_len": (S,),
    }
    assert tuple(draw_shapes) == _DRAW_ORDER
    draws, offset = {}, 0
    for name, shape in draw_shapes.items():
        draws[name] = (offset, shape)
        offset += int(np.prod(shape))

    abandon = sc.users.abandon
    fields: dict[str, Any] = dict(
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
    return CoreParams(**fields, kernel=_kernel_params(fields), traffic=np.ascontiguousarray(np.stack([base, surge])))


def _kernel_params(fields: dict[str, Any]) -> physics.Params:
    """What the kernel reads of the parameters (``physics.Params``), from ``make_params``'s fields."""
    B, K = fields["n_banks"], fields["max_attempts"]
    timeout = fields["timeout_s"]
    count_scale = B / fields["norm"]
    # observation multipliers per (bank, route, SEEN_FIELDS): counts by B / norm, waits by 1 / timeout
    channel_scale = np.full((B, N_ROUTES, len(SEEN_FIELDS)), count_scale)
    route_timeout = np.stack([timeout[:B], np.repeat(timeout[2 * B], B), timeout[B : 2 * B]], axis=1)
    channel_scale[:, :, SEEN_FIELDS.index("wait_s")] = 1.0 / route_timeout
    dtype = _state_dtype(B, K)
    assert dtype.names == physics.STATE_FIELDS  # the kernel reads the fields by position
    scalars = {"n_banks": int, "max_attempts": int}  # the other scalar fields are floats
    values: dict[str, Any] = {name: fields[name] for name in physics.Params._fields if name in fields}
    values.update(
        rho_max=RHO_MAX,
        count_scale=count_scale,
        channel_scale=channel_scale,
        draw_offset=np.array([fields["draws"][name][0] for name in _DRAW_ORDER], dtype=np.int64),
        admit_levels=ADMIT_LEVELS,
        route_presets=ROUTE_PRESETS,
        state_offsets=np.array([dtype.fields[name][1] for name in dtype.names], dtype=np.int64),
    )
    for name, value in values.items():
        arr = np.asarray(value)
        if arr.ndim == 0:  # numba compiles for int and float scalars, so each is one or the other
            values[name] = scalars.get(name, float)(value)
        else:
            values[name] = np.ascontiguousarray(arr, dtype=np.int64 if arr.dtype.kind in "iu" else np.float64)
    return physics.Params(**values)


def state_dtype(params: CoreParams) -> np.dtype:
    """The record of one environment's state (see ``CoreState``); it depends on B and K only."""
    return _state_dtype(params.n_banks, params.max_attempts)


def state_bytes(n_banks: int, max_attempts: int) -> int:
    """Bytes of one environment's state record (``payroute_env.memory`` estimates runs from it)."""
    return _state_dtype(n_banks, max_attempts).itemsize


# The episode counters of every step's info, side by side in a record in this order (read in one go).
COUNTER_FIELDS: tuple[str, ...] = ("arrived", "succeeded", "lost", "in_flight", "attempts", "failed_attempts")


def _state_dtype(B: int, K: int) -> np.dtype:
    P, L, C, S = 2 * B + 1, 4 * B + 1, 2 * B + 2, B + 2
    f8 = np.float64
    dtype = np.dtype(
        [
            ("key", np.uint64), ("t", np.int64), ("backlog", f8, (P, K)), ("queue", f8, (L, K)),
            ("stress", f8, (S,)), ("down_left", f8, (S,)), ("warm", f8, (S,)), ("admit", f8, (B,)),
            ("route", f8, (B, N_ROUTES)), ("peak_scale", f8), ("capacity", f8, (C,)), ("pool_frac", f8, (P,)),
            ("dest", f8, (P, P)), ("grow_rate", f8, (S,)), ("seen_bank", f8, (B, 3)),
            ("seen_channel", f8, (B, N_ROUTES, len(SEEN_FIELDS))), ("seen_balance", f8, (3,)),
            ("arrived", f8), ("succeeded", f8), ("lost", f8), ("in_flight", f8), ("attempts", f8),
            ("failed_attempts", f8),
            ("entered_pool", f8, (P,)), ("lost_pool", f8, (P,)), ("outage_s", f8, (S,)),
            ("paid_by", f8, (len(PAID_CHANNELS),)), ("latency_hist", f8, (LATENCY_BINS,)),
            ("step_arrived", f8), ("step_succeeded", f8), ("step_lost", f8), ("step_attempts", f8),
            ("step_failed", f8), ("reward", f8), ("truncated", np.bool_),
            ("obs", np.float32, (OBS_BANK * B + OBS_GLOBAL + OBS_INTERNAL_BANK * B + OBS_INTERNAL_SWITCH,)),
        ],
        align=True,
    )  # fmt: skip
    first = dtype.fields[COUNTER_FIELDS[0]][1]
    assert [dtype.fields[name][1] for name in COUNTER_FIELDS] == [first + 8 * j for j in range(len(COUNTER_FIELDS))]
    return dtype


# observation sizes: per bank, global, and the internal (hidden) features per bank and of the switch
OBS_BANK, OBS_GLOBAL, OBS_INTERNAL_BANK, OBS_INTERNAL_SWITCH = 3 + N_ROUTES * 7 + 4, 4, 6, 5
assert OBS_BANK + OBS_INTERNAL_BANK == 34 and OBS_GLOBAL + OBS_INTERNAL_SWITCH == 9  # physics.env_state's n_obs
assert len(PAID_CHANNELS) == physics.N_PAID_KINDS and len(SEEN_FIELDS) == physics.N_SEEN


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
    N, B = keys.shape[0], p.n_banks
    C, S = p.n_channels, p.n_servers
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
        cols = np.cumsum([0, 1, B, C, S, B, 1, 1, B, 1])
        u = uniforms(keys, np.full(N, _RESET_STREAM), int(cols[-1]))
        pm = 2.0 * u - 1.0  # uniform in (-1, 1) for the multipliers
        peak_scale = 1.0 + rz.peak * pm[:, 0]
        shares = shares * (1.0 + rz.shares * pm[:, cols[1] : cols[2]])
        shares = shares / shares.sum(1, keepdims=True)
        cap_mult = 1.0 + rz.capacity * pm[:, cols[2] : cols[3]]
        cap_mult[:, -1] = 1.0  # the platform's own balance system is not randomised
        capacity = capacity * cap_mult
        if rz.shuffle_fragility > 0 or rz.fragile_banks:  # deal the banks' collapse speeds out in a random order
            shuffled = u[:, cols[6]] < rz.shuffle_fragility
            order = np.where(shuffled[:, None], np.argsort(u[:, cols[7] : cols[8]], axis=1), np.arange(B))
            if rz.fragile_banks:
                _deal_fastest_to(order, p.grow_rate[:B], rz.fragile_banks, sc.bank_names, u[:, cols[8]])
            grow_rate[:, :B] = np.take_along_axis(grow_rate[:, :B], order, axis=1)
        grow_rate = grow_rate * (1.0 + rz.fragility * pm[:, cols[3] : cols[4]])
        quick = np.minimum(quick * (1.0 + rz.quick_share * pm[:, cols[4] : cols[5]]), 1.0)
        if rz.balance_share_max > sc.balance.share:
            balance = sc.balance.share + (rz.balance_share_max - sc.balance.share) * u[:, cols[5]]

    state = np.zeros(N, dtype=state_dtype(p)).view(CoreState)
    state.key = keys
    state.warm = 1.0
    state.admit = 1.0
    state.route[:, :, 0] = 1.0
    state.peak_scale = peak_scale
    state.capacity = capacity
    state.pool_frac = _pool_fractions(shares, quick, balance)
    state.dest = _switch_destinations(shares, quick)
    state.grow_rate = grow_rate
    observe_in_place(p, state)
    return state


def _deal_fastest_to(
    order: np.ndarray, grow_rate: np.ndarray, allowed: tuple[str, ...], names: tuple[str, ...], u: np.ndarray
) -> None:
    """Make every deal (bank ``j`` gets the collapse speed of bank ``order[:, j]``) give the fastest speed to one of
    the ``allowed`` banks: where it landed elsewhere, swap it with an allowed bank drawn from ``u`` (uniform).

    The fastest is the first bank with the highest stress growth rate. After a uniform deal each allowed bank gets
    it with probability 1/B, plus (1 - A/B)/A from the swaps: 1/A, uniform over the A allowed banks.
    """
    allowed_index = np.array([names.index(n) for n in allowed])
    landed = np.argmax(order == int(np.argmax(grow_rate)), axis=1)  # the bank holding the fastest speed
    rows = np.nonzero(~np.isin(landed, allowed_index))[0]
    pick = allowed_index[np.minimum((u[rows] * len(allowed_index)).astype(np.int64), len(allowed_index) - 1)]
    order[rows, landed[rows]], order[rows, pick] = order[rows, pick], order[rows, landed[rows]]


def replicate(state: CoreState, i: int, keys: np.ndarray) -> CoreState:
    """``len(keys)`` copies of environment ``i``'s state, copy ``j`` drawing its future from stream ``keys[j]``.

    A copy given environment ``i``'s own key replays its future exactly (the streams are counter-based:
    a draw depends only on the key and the step). Used to look ahead from a state (``agents.analysis.rollout``).
    """
    if not 0 <= i < state.num_envs:
        raise ValueError(f"environment index {i} out of range for {state.num_envs} environments")
    keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
    n = keys.shape[0]
    copies = np.repeat(state[i : i + 1], n).view(CoreState)
    copies.key = keys
    return copies


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

    @classmethod
    def of(cls, state: CoreState) -> StepCounts:
        """The counts of the last step of every environment in ``state`` (copies)."""
        return cls(
            arrived=state.step_arrived.copy(),
            succeeded=state.step_succeeded.copy(),
            lost=state.step_lost.copy(),
            attempts=state.step_attempts.copy(),
            failed_attempts=state.step_failed.copy(),
            truncated=state.truncated.copy(),
        )


PARALLEL_FROM = 64  # batches at least this large are spread over the cores (numba threads)


def step_in_place(
    params: CoreParams,
    state: CoreState,
    actions: np.ndarray,
    mode: int,
    lost_weight: float = 1.0,
    beta: float = 0.1,
    frozen: np.ndarray | None = None,
) -> None:
    """Advance every environment of ``state`` one step, in place, in one compiled call.

    ``actions`` is ``float64 [N, A]``, C-contiguous, already checked (``actions.check``), read as ``mode``
    (``physics.CONTINUOUS`` ...; ``physics.CONTROL`` takes ``[admit, route_quick, route_switch, route_netbank]``
    per bank). Environments in ``frozen`` are not stepped (reward 0, observation rewritten). The kernel writes
    each environment's observation, reward, truncation and step counts into its record. If an environment not
    frozen has already taken its episode's last step, nothing is stepped and ``RuntimeError`` is raised.
    """
    n = state.num_envs
    if actions.dtype != np.float64 or actions.shape[0] != n or actions.ndim != 2 or not actions.flags.c_contiguous:
        raise ValueError(f"actions must be C-contiguous float64 [{n}, A] (actions.check makes them)")
    if frozen is None:
        frozen = _nothing_frozen(n)
    elif frozen.dtype != np.bool_ or frozen.shape != (n,):
        raise ValueError(f"frozen must be bool [{n}]")
    args = (params.kernel, params.traffic, _records(state), actions, int(mode), float(lost_weight), float(beta), frozen)
    if n >= PARALLEL_FROM:  # a few chunks per thread, so a slow chunk does not hold the others up
        args = (*args, min(n, 4 * numba.get_num_threads()))
        over = _entry_point(physics.step_batch_parallel, args)(*args)
    else:
        over = _entry_point(physics.step_batch_serial, args)(*args)
    if over:
        raise RuntimeError(f"{over} episode(s) are over (truncated); reset them before stepping again")


@functools.lru_cache(maxsize=16)
def _nothing_frozen(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.bool_)  # shared between calls: the kernel only reads it


def observe_in_place(params: CoreParams, state: CoreState) -> None:
    """Rewrite every environment's observation from its state (after a reset or an edit of the state)."""
    args = (params.kernel, _records(state), int(params.n_steps))
    _entry_point(physics.observe_batch, args)(*args)


def _records(state: CoreState) -> np.ndarray:
    """The state's records as rows of bytes ``uint8 [N, itemsize]``, the same memory (the kernel's view)."""
    if not state.flags.c_contiguous:
        raise ValueError("the kernel takes a C-contiguous state (core.reset, replicate or .copy())")
    return state.view(np.ndarray).view(np.uint8).reshape(state.shape[0], state.dtype.itemsize)


_ENTRY_POINTS: dict[Any, Any] = {}


def _entry_point(kernel: Any, args: tuple) -> Any:
    """The compiled function behind ``kernel``, called without numba's dispatcher.

    numba's dispatcher finds the types of the arguments at every call, which costs more than a small batch's
    step. Here the types never change: the parameters are a ``physics.Params``, the state a ``uint8 [N, itemsize]``
    view, actions ``float64 [N, A]`` from ``actions.check``, ``frozen`` a ``bool [N]``, all C-contiguous and
    built by this package, whatever the scenario (no shapes in the types). So the kernel is compiled (or loaded
    from numba's on-disk cache) once, for the types of the first call, and its entry point kept. Without numba's
    JIT (``NUMBA_DISABLE_JIT=1``) the kernel is a Python function and is returned as it is.
    """
    entry = _ENTRY_POINTS.get(kernel)
    if entry is None:
        if not hasattr(kernel, "overloads"):
            return kernel
        for a in args:
            if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
                raise ValueError("the kernel takes C-contiguous arrays")
        signature = tuple(kernel.typeof_pyval(a) for a in args)
        kernel.compile(signature)  # or loads it from numba's on-disk cache; nothing runs
        entry = _ENTRY_POINTS[kernel] = kernel.overloads[signature].entry_point
    return entry


def step(params: CoreParams, state: CoreState, admit: np.ndarray, route: np.ndarray) -> tuple[CoreState, StepCounts]:
    """Advance every environment by one step under a decoded control; return a new state (the input is kept).

    ``admit`` ``[N, B]`` in [0, 1] and ``route`` ``[N, B, 3]`` (non-negative, rows summing to 1), as
    ``actions.decode`` gives them. For analyses that branch from a state; the ``Simulator`` steps in place.
    """
    new = state.copy()
    N, B = new.num_envs, params.n_banks
    control = np.concatenate([np.asarray(admit, dtype=np.float64)[:, :, None], np.asarray(route, dtype=np.float64)], 2)
    step_in_place(params, new, np.ascontiguousarray(control.reshape(N, 4 * B)), physics.CONTROL)
    return new, StepCounts.of(new)


def outage_clock(p: CoreParams, down_left: np.ndarray, warm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``physics.outage_clock`` for every server: ``down_left [..., S]`` and ``warm [..., S]`` one step on."""
    down_left, warm = np.broadcast_arrays(np.asarray(down_left, dtype=np.float64), np.asarray(warm, dtype=np.float64))
    down_next, warm_next = np.empty_like(down_left), np.empty_like(warm)
    for idx in np.ndindex(down_left.shape):
        down_next[idx], warm_next[idx] = physics.outage_clock(
            float(down_left[idx]), float(warm[idx]), p.dt, float(p.warm_rate[idx[-1]])
        )
    return down_next, warm_next


def _channels_to_servers(x: np.ndarray, B: int) -> np.ndarray:
    """``[N, C]`` to ``[N, S]``: a bank core serves its quick and netbank channels (added in that order)."""
    return np.concatenate([x[:, :B] + x[:, B : 2 * B], x[:, 2 * B :]], axis=1)
