"""Reference heuristics from industry practice, batched over environments (numpy, no per-env loops).

Every heuristic reads only the observation (what a platform sees: per bank and channel the attempts sent,
successes, declines, timeouts, rejects, queue and wait of the last step) and the scenario's *published*
figures (declared capacities, channel timeouts, the step length and the observation scale). None reads true
capacities, stress or outage timers. Each decides per bank an admit rate and route shares (quick, switch,
netbank), output as ``continuous`` actions through ``payroute_env.actions.encode`` (``Box(-1, 1)``, zero = the
status quo).

=====================  ===================================================================================
``admit_all``          the 2013 status quo: admit everything, quick-enabled cards to ``quick``
``static_capacity``    admit and split by the published declared capacities
``sre_throttle``       Google SRE client-side adaptive throttling, K = 2 over 2 minutes
``aimd``               Netflix concurrency-limits AIMDLimit (additive increase, backoff 0.9 on drops)
``circuit_breaker``    Hystrix circuit breaker defaults (10 s window, 20 calls, 50% errors, 5 s open, probe)
``success_rate_router``  Juspay-style success-rate routing (last 200 transactions, 5% hedging, prior 0.5)
                       with SRE throttling
``unthrottled_router`` the same routing, admitting everything (no throttle memory to outlive an outage)
``random``             uniform random controls (a sanity floor)
=====================  ===================================================================================

Sources and figures: the project's ``SOURCES.md`` ("Overload and control practice"; outside this repository),
repeated in each class docstring. Units: the heuristics work in attempts per step (``Observed`` undoes the observation
scaling) and attempts per second for capacities and limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from payroute_env import observations as env_observations
from payroute_env.actions import encode
from payroute_env.scenario import Scenario, load_scenario

from .policy import Policy

__all__ = [
    "HEURISTICS",
    "AIMD",
    "AdmitAll",
    "CircuitBreaker",
    "HeuristicPolicy",
    "Observed",
    "Published",
    "RandomPolicy",
    "SREThrottle",
    "StaticCapacity",
    "SuccessRateRouter",
    "UnthrottledRouter",
    "sre_reject_probability",
]

QUICK, SWITCH, NETBANK = 0, 1, 2
_N_BANK = len(env_observations.BANK_FEATURES)  # 28 values per bank
_FIELDS = ("sent", "succeeded", "declined", "timed_out", "rejected", "queue", "wait")


@dataclass(frozen=True)
class Published:
    """What the platform knows without observing: contracts (declared capacities) and the setup."""

    n_banks: int
    bank_names: tuple[str, ...]
    dt: float  # seconds per step
    norm: float  # observation scale: counts are observed as count * n_banks / norm
    quick: np.ndarray  # [B] declared quick capacity, attempts/s
    netbank: np.ndarray  # [B] declared netbank capacity, attempts/s
    switch: float  # declared switch capacity, attempts/s
    timeout_s: np.ndarray  # [3] timeout of quick, switch, netbank

    @classmethod
    def from_scenario(cls, scenario: str | Scenario) -> Published:
        sc = load_scenario(scenario)
        return cls(
            n_banks=sc.n_banks,
            bank_names=sc.bank_names,
            dt=sc.dt_s,
            norm=sc.peak_intents_per_step,
            quick=np.array([b.quick_declared for b in sc.banks], dtype=np.float64),
            netbank=np.array([b.netbank_declared for b in sc.banks], dtype=np.float64),
            switch=float(sc.switch.declared),
            timeout_s=np.array([sc.quick.timeout_s, sc.switch.timeout_s, sc.netbank.timeout_s]),
        )

    @property
    def bank(self) -> np.ndarray:
        """[B] declared capacity of each bank core (quick + netbank), attempts/s."""
        return self.quick + self.netbank


@dataclass(frozen=True)
class Observed:
    """One batch of observations in attempts per step (the observation's ``B / norm`` scaling undone).

    ``sent`` ... ``queue`` are ``[N, B, 3]`` per route (quick, switch for the bank's cards, netbank);
    ``wait`` is the queue wait as a fraction of the route's timeout.
    """

    offered: np.ndarray  # [N, B] attempts offered (new and retrying) in the last step
    throttled: np.ndarray  # [N, B]
    backlog: np.ndarray  # [N, B] users known to be waiting to retry
    sent: np.ndarray
    succeeded: np.ndarray
    declined: np.ndarray
    timed_out: np.ndarray
    rejected: np.ndarray
    queue: np.ndarray
    wait: np.ndarray
    admit: np.ndarray  # [N, B] admit rate applied in the last step
    route: np.ndarray  # [N, B, 3] route split applied in the last step
    progress: np.ndarray  # [N]

    @classmethod
    def parse(cls, obs: np.ndarray, pub: Published) -> Observed:
        obs = np.asarray(obs, dtype=np.float64)
        N, B = obs.shape[0], pub.n_banks
        if obs.shape[1] < _N_BANK * B + len(env_observations.GLOBAL_FEATURES):
            raise ValueError(f"observation of shape {obs.shape} is too short for {B} banks")
        unscale = pub.norm / B
        bank = obs[:, : _N_BANK * B].reshape(N, B, _N_BANK)
        ch = bank[:, :, 3:24].reshape(N, B, 3, 7)
        counts = ch[..., :6] * unscale
        return cls(
            offered=bank[:, :, 0] * unscale,
            throttled=bank[:, :, 1] * unscale,
            backlog=bank[:, :, 2] * unscale,
            sent=counts[..., 0],
            succeeded=counts[..., 1],
            declined=counts[..., 2],
            timed_out=counts[..., 3],
            rejected=counts[..., 4],
            queue=counts[..., 5],
            wait=ch[..., 6],
            admit=bank[:, :, 24],
            route=bank[:, :, 25:28],
            progress=obs[:, _N_BANK * B + 3],
        )

    @property
    def resolved(self) -> np.ndarray:
        """[N, B, 3] attempts whose outcome was known in the last step (succeeded, declined, timed out, rejected)."""
        return self.succeeded + self.declined + self.timed_out + self.rejected

    @property
    def errors(self) -> np.ndarray:
        """[N, B, 3] overload errors: timeouts and rejects (a decline is the bank's answer, not an error)."""
        return self.timed_out + self.rejected


def sre_reject_probability(requests: np.ndarray, accepts: np.ndarray, k: float = 2.0) -> np.ndarray:
    """Google SRE client-side throttling: ``max(0, (requests - K * accepts) / (requests + 1))``."""
    return np.maximum(0.0, (requests - k * accepts) / (requests + 1.0))


class HeuristicPolicy(Policy):
    """Base class: parses observations, keeps per-environment memory, encodes continuous actions.

    Subclasses implement ``_act(observed) -> (admit [N, B], route [N, B, 3])`` and, if they remember
    anything, ``_fresh(n) -> dict`` of arrays with a leading env axis (reset per environment on
    ``episode_start``).
    """

    action_mode = "continuous"
    observe_internal = False

    def __init__(self, scenario: str | Scenario, seed: int = 0) -> None:
        self.scenario = load_scenario(scenario)
        self.pub = Published.from_scenario(self.scenario)
        self.seed = seed
        self.num_envs = 0
        self.mem: dict[str, np.ndarray] = {}

    # memory ------------------------------------------------------------------------------------------
    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {}

    def reset(self, num_envs: int) -> None:
        self.num_envs = int(num_envs)
        self.mem = self._fresh(self.num_envs)

    def _forget(self, mask: np.ndarray) -> None:
        fresh = self._fresh(int(mask.sum()))
        for key, value in fresh.items():
            self.mem[key][mask] = value

    # SB3-style predict ---------------------------------------------------------------------------------
    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        obs = np.asarray(observation)
        single = obs.ndim == 1
        if single:
            obs = obs[None]
        if obs.shape[0] != self.num_envs:
            self.reset(obs.shape[0])
        elif episode_start is not None:
            mask = np.asarray(episode_start, dtype=bool).reshape(-1)
            if mask.any():
                self._forget(mask)
        admit, route = self._act(Observed.parse(obs, self.pub))
        action = encode(admit, route)
        return (action[0] if single else action), state

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # helpers -----------------------------------------------------------------------------------------
    def _quick_route(self, n: int) -> np.ndarray:
        route = np.zeros((n, self.pub.n_banks, 3))
        route[:, :, QUICK] = 1.0
        return route

    def _steps(self, seconds: float) -> int:
        return max(1, int(round(seconds / self.pub.dt)))


class AdmitAll(HeuristicPolicy):
    """Status quo of 2013: admit every attempt, quick-enabled cards to the bank's quick channel.

    No throttling and no rerouting (netbank-only users go to online banking, as the core always does).
    """

    name = "admit_all"

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        n = o.offered.shape[0]
        return np.ones((n, self.pub.n_banks)), self._quick_route(n)


class RandomPolicy(HeuristicPolicy):
    """Uniform random controls: admit rate and route weights each uniform in [0, 1] (a sanity floor).

    Seeded (``seed``), one stream per environment of the batch, so environment ``i`` acts the same however
    many environments run beside it (an episode's result does not depend on ``--episodes``); the draw does
    not depend on the observation.
    """

    name = "random"

    def reset(self, num_envs: int) -> None:
        super().reset(num_envs)
        self.rngs = [np.random.default_rng([self.seed, i]) for i in range(num_envs)]

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        n, B = o.offered.shape
        if len(getattr(self, "rngs", [])) != n:
            self.reset(n)
        a = np.stack([rng.random((B, 4)) for rng in self.rngs])
        return a[:, :, 0], a[:, :, 1:]


class StaticCapacity(HeuristicPolicy):
    """Admit and split by the published (declared) capacities: the contract-based plan.

    Per bank, with ``O`` the attempts offered in the last step and ``q`` the share of them from quick-enabled
    cards (measured from what was sent to quick and switch), every step:

    * the quick-enabled overflow ``max(0, q O - quick_declared dt)`` of all banks shares the switch's declared
      capacity in proportion to each bank's overflow (``switch_b``);
    * admit rate ``min(1, (quick_declared + netbank_declared) dt + switch_b) / O)``;
    * admitted quick-enabled attempts go to ``quick`` up to its declared capacity, then to ``switch`` up to
      ``switch_b``, then to ``netbank`` up to the netbank capacity left by netbank-only users.

    It trusts the contracts: where a bank really carries less than it declared (CCB and CMB in 2013) it
    overloads that bank. Parameter ``headroom`` scales the declared figures (1 = take them at face value).
    """

    name = "static_capacity"

    def __init__(self, scenario: str | Scenario, seed: int = 0, headroom: float = 1.0) -> None:
        super().__init__(scenario, seed)
        self.headroom = float(headroom)

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        pub, dt, h = self.pub, self.pub.dt, self.headroom
        n, B = o.offered.shape
        quick_cap = h * pub.quick * dt  # [B] attempts per step
        net_cap = h * pub.netbank * dt
        switch_cap = h * pub.switch * dt
        # quick-enabled share of the bank's attempts, from what its route sent to quick and switch
        sent = o.sent.sum(2)
        qs = o.sent[:, :, QUICK] + o.sent[:, :, SWITCH]
        w_qs = o.route[:, :, QUICK] + o.route[:, :, SWITCH]
        qe = np.where(w_qs > 0.05, np.divide(qs, w_qs, out=qs.copy(), where=w_qs > 0.05), qs)
        q_share = np.clip(np.divide(qe, sent, out=np.ones_like(sent), where=sent > 0), 0.0, 1.0)
        demand_q = q_share * o.offered
        demand_n = o.offered - demand_q
        overflow = np.maximum(demand_q - quick_cap, 0.0)
        total_overflow = overflow.sum(1, keepdims=True)
        switch_b = np.minimum(
            overflow,
            np.divide(switch_cap * overflow, total_overflow, out=np.zeros_like(overflow), where=total_overflow > 0),
        )
        capacity = quick_cap + net_cap + switch_b
        admit = np.minimum(1.0, np.divide(capacity, o.offered, out=np.ones_like(capacity), where=o.offered > 0))
        adm_q, adm_n = admit * demand_q, admit * demand_n
        to_quick = np.minimum(adm_q, quick_cap)
        to_switch = np.minimum(adm_q - to_quick, switch_b)
        to_net = np.minimum(adm_q - to_quick - to_switch, np.maximum(net_cap - adm_n, 0.0))
        rest = adm_q - to_quick - to_switch - to_net  # beyond every declared figure: stays with quick
        route = np.stack([to_quick + rest, to_switch, to_net], axis=2)
        empty = route.sum(2) <= 0
        route[empty] = (1.0, 0.0, 0.0)
        return admit, route


class SREThrottle(HeuristicPolicy):
    """Google SRE client-side adaptive throttling per bank; quick-enabled cards stay on ``quick``.

    Source: Beyer et al., *Site Reliability Engineering*, ch. 21 "Handling Overload" (sre.google/sre-book/
    handling-overload/): each client tracks over the last two minutes ``requests`` (attempts the application
    made, including those it rejected itself) and ``accepts`` (requests the backend accepted) and rejects
    locally with probability ``max(0, (requests - K * accepts) / (requests + 1))``, K = 2.

    Here the client is the platform's connection to one bank: ``requests`` = attempts offered to the bank
    (new and retrying, before throttling), ``accepts`` = attempts the bank completed successfully on any
    route (``accepts="succeeded"``, the default); ``accepts="served"`` also counts declines (the bank
    answered, just with a no). Window ``window_s`` = 120 s, ``k`` = 2.
    """

    name = "sre_throttle"

    def __init__(
        self,
        scenario: str | Scenario,
        seed: int = 0,
        k: float = 2.0,
        window_s: float = 120.0,
        accepts: str = "succeeded",
    ) -> None:
        super().__init__(scenario, seed)
        if accepts not in ("succeeded", "served"):
            raise ValueError(f"accepts must be 'succeeded' or 'served'; got {accepts!r}")
        self.k, self.window = float(k), self._steps(window_s)
        self.accepts = accepts

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        B, W = self.pub.n_banks, self.window
        return {"requests": np.zeros((n, W, B)), "accepts": np.zeros((n, W, B)), "pos": np.zeros(n, dtype=np.int64)}

    def _accepted(self, o: Observed) -> np.ndarray:
        ok = o.succeeded if self.accepts == "succeeded" else o.succeeded + o.declined
        return ok.sum(2)

    def sre_admit(self, o: Observed) -> np.ndarray:
        """Record the last step in the 2-minute window and return ``1 - p_reject`` per bank ``[N, B]``."""
        m = self.mem
        rows = np.arange(o.offered.shape[0])
        m["requests"][rows, m["pos"]] = o.offered
        m["accepts"][rows, m["pos"]] = self._accepted(o)
        m["pos"] = (m["pos"] + 1) % self.window
        p = sre_reject_probability(m["requests"].sum(1), m["accepts"].sum(1), self.k)
        return 1.0 - p

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        return self.sre_admit(o), self._quick_route(o.offered.shape[0])


class AIMD(HeuristicPolicy):
    """Netflix concurrency-limits ``AIMDLimit`` per bank, turned into an admit rate; quick-enabled cards on ``quick``.

    Source: github.com/Netflix/concurrency-limits, ``AIMDLimit``: on a drop
    ``L = max(min_limit, min(L - 1, backoff * L))`` with backoff 0.9; otherwise, if the limit is in use
    (``inflight * 2 >= L``), additive increase. Here the limit ``L`` is the bank's admitted attempts per
    second (by Little's law the concurrency over a fixed latency), updated once per step: a *drop* is any
    timeout or reject seen at the bank's channels (above ``drop_tolerance`` of what was sent) or a queue
    wait above ``wait_limit`` of the channel timeout (AIMDLimit also treats a slow response as a drop); the
    additive increase is ``increase`` x the bank's declared capacity per step. ``L`` starts at the declared
    capacity. Admit rate = ``min(1, L dt / offered)``.
    """

    name = "aimd"

    def __init__(
        self,
        scenario: str | Scenario,
        seed: int = 0,
        backoff: float = 0.9,
        increase: float = 0.005,
        min_limit: float = 1.0,
        drop_tolerance: float = 0.001,
        wait_limit: float = 1.0,
        initial: float = 1.0,
    ) -> None:
        super().__init__(scenario, seed)
        self.backoff, self.increase, self.min_limit = float(backoff), float(increase), float(min_limit)
        self.drop_tolerance, self.wait_limit, self.initial = float(drop_tolerance), float(wait_limit), float(initial)

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {"limit": np.tile(self.initial * self.pub.bank, (n, 1))}

    def update_limit(self, o: Observed) -> np.ndarray:
        """Apply one AIMD update from the last step's observation; return the limits ``[N, B]`` (attempts/s)."""
        L = self.mem["limit"]
        sent = o.sent.sum(2)
        errors = o.errors.sum(2)
        used = o.sent > 0
        slow = (np.where(used, o.wait, 0.0) >= self.wait_limit).any(2)
        drop = (errors > self.drop_tolerance * np.maximum(sent, 1.0)) | slow
        in_use = 2.0 * sent / self.pub.dt >= L
        decreased = np.maximum(self.min_limit, np.minimum(L - 1.0, self.backoff * L))
        increased = L + self.increase * self.pub.bank
        L = np.where(drop, decreased, np.where(in_use, increased, L))
        self.mem["limit"] = L
        return L

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        L = self.update_limit(o)
        allowed = L * self.pub.dt
        admit = np.minimum(1.0, np.divide(allowed, o.offered, out=np.ones_like(allowed), where=o.offered > 0))
        return admit, self._quick_route(o.offered.shape[0])


CLOSED, OPEN, HALF_OPEN = 0, 1, 2


class CircuitBreaker(HeuristicPolicy):
    """Hystrix circuit breaker per bank (and one for the shared switch), with its default settings.

    Source: Netflix Hystrix wiki, "How it Works" / "Configuration": rolling window 10 s, at least 20
    requests in the window, error percentage >= 50% trips the breaker open; after a 5 s sleep window one
    trial request is let through (half-open); success closes the breaker, failure re-opens it.

    Errors are timeouts and rejects (a decline is a business answer, like Hystrix's ``BadRequest``, and
    does not count). The bank breaker watches the bank's own channels (quick and netbank); the switch
    breaker watches every bank's switch traffic. Fallback while a bank's breaker is open: its quick-enabled
    cards go to the switch (if the switch breaker is closed) and only ``open_admit`` of its attempts are
    admitted. Half-open: a trial step at admit ``probe_admit`` on the bank's own channels; the trial closes
    the breaker if its error share is below the threshold.
    """

    name = "circuit_breaker"

    def __init__(
        self,
        scenario: str | Scenario,
        seed: int = 0,
        window_s: float = 10.0,
        min_calls: float = 20.0,
        error_threshold: float = 0.5,
        sleep_s: float = 5.0,
        execution_timeout_s: float = 1.0,
        open_admit: float = 0.5,
        probe_admit: float = 0.1,
    ) -> None:
        super().__init__(scenario, seed)
        self.window = self._steps(window_s)
        self.execution_timeout_s = float(execution_timeout_s)
        self.min_calls, self.error_threshold, self.sleep_s = float(min_calls), float(error_threshold), float(sleep_s)
        self.open_admit, self.probe_admit = float(open_admit), float(probe_admit)

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        B, W = self.pub.n_banks, self.window
        return {
            "calls": np.zeros((n, W, B + 1)),  # last column: the switch
            "errors": np.zeros((n, W, B + 1)),
            "pos": np.zeros(n, dtype=np.int64),
            "state": np.zeros((n, B + 1), dtype=np.int64),
            "open_left": np.zeros((n, B + 1)),
        }

    def update(self, o: Observed) -> np.ndarray:
        """Advance every breaker by one step of observations; return the states ``[N, B + 1]``."""
        m = self.mem
        n = o.offered.shape[0]
        own = [QUICK, NETBANK]
        resolved = o.resolved
        slow = o.wait * self.pub.timeout_s > self.execution_timeout_s  # [N, B, 3] queue wait over the timeout
        errs = np.where(slow, resolved, o.errors)
        calls = np.concatenate([resolved[:, :, own].sum(2), resolved[:, :, SWITCH].sum(1, keepdims=True)], 1)
        errors = np.concatenate([errs[:, :, own].sum(2), errs[:, :, SWITCH].sum(1, keepdims=True)], 1)
        rows = np.arange(n)
        m["calls"][rows, m["pos"]] = calls
        m["errors"][rows, m["pos"]] = errors
        m["pos"] = (m["pos"] + 1) % self.window
        win_calls, win_errors = m["calls"].sum(1), m["errors"].sum(1)
        err_share = np.divide(win_errors, win_calls, out=np.zeros_like(win_calls), where=win_calls > 0)
        trial_share = np.divide(errors, calls, out=np.ones_like(calls), where=calls > 0)
        state, left = m["state"], m["open_left"] - self.pub.dt
        trip = (state == CLOSED) & (win_calls >= self.min_calls) & (err_share >= self.error_threshold)
        wake = (state == OPEN) & (left <= 0)
        trial_ok = (state == HALF_OPEN) & (calls > 0) & (trial_share < self.error_threshold)
        trial_bad = (state == HALF_OPEN) & ~trial_ok
        new = state.copy()
        new[trip | trial_bad] = OPEN
        new[wake] = HALF_OPEN
        new[trial_ok] = CLOSED
        left = np.where(trip | trial_bad, self.sleep_s, left)
        # a breaker that closes starts a fresh window
        cleared = trial_ok[:, None, :] & np.ones((1, self.window, 1), dtype=bool)
        m["calls"][cleared] = 0.0
        m["errors"][cleared] = 0.0
        m["state"], m["open_left"] = new, left
        return new

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        state = self.update(o)
        n, B = o.offered.shape
        bank, switch_closed = state[:, :B], state[:, B:] == CLOSED
        admit = np.select([bank == OPEN, bank == HALF_OPEN], [self.open_admit, self.probe_admit], 1.0)
        route = self._quick_route(n)
        fallback = (bank == OPEN) & switch_closed
        route[fallback] = (0.0, 1.0, 0.0)
        return admit, route


class SuccessRateRouter(SREThrottle):
    """Juspay-style success-rate routing of quick-enabled cards over quick / switch / netbank, with SRE throttling.

    Source: Juspay decision engine (github.com/juspay/decision-engine) success-rate based routing: each
    gateway's success rate over its last ``window_txns`` = 200 transactions, a default (prior) success rate
    0.5 for a gateway with no data, and ``hedging`` = 5% of the traffic spread over the other gateways
    for exploration. Here the gateways of a bank's quick-enabled cards are its ``quick`` channel, the
    ``switch`` and its ``netbank`` channel (routes with no declared capacity are never used). The best
    route gets 95%, the other usable routes share 5%. Admission is SRE adaptive throttling (K = 2, 2 min),
    as in :class:`SREThrottle`.
    """

    name = "success_rate_router"

    def __init__(
        self,
        scenario: str | Scenario,
        seed: int = 0,
        window_txns: float = 200.0,
        hedging: float = 0.05,
        prior: float = 0.5,
        k: float = 2.0,
        window_s: float = 120.0,
        accepts: str = "succeeded",
        memory_s: float = 120.0,
    ) -> None:
        super().__init__(scenario, seed, k=k, window_s=window_s, accepts=accepts)
        self.window_txns, self.hedging, self.prior = float(window_txns), float(hedging), float(prior)
        self.memory = self._steps(memory_s)
        declared = np.stack([self.pub.quick, np.full(self.pub.n_banks, self.pub.switch), self.pub.netbank], 1)
        self.usable = declared > 0  # [B, 3]

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        mem = super()._fresh(n)
        B, W = self.pub.n_banks, self.memory
        mem["succ"] = np.zeros((n, W, B, 3))  # most recent step first
        mem["done"] = np.zeros((n, W, B, 3))
        return mem

    def success_rates(self, o: Observed) -> np.ndarray:
        """Record the last step and return each route's success rate over its last ``window_txns`` ``[N, B, 3]``."""
        m = self.mem
        m["succ"] = np.concatenate([o.succeeded[:, None], m["succ"][:, :-1]], axis=1)
        m["done"] = np.concatenate([o.resolved[:, None], m["done"][:, :-1]], axis=1)
        done, succ = m["done"], m["succ"]
        before = np.cumsum(done, axis=1) - done  # transactions more recent than each step
        take = np.clip(np.divide(self.window_txns - before, done, out=np.zeros_like(done), where=done > 0), 0, 1)
        n_txn, n_ok = (take * done).sum(1), (take * succ).sum(1)
        return np.divide(n_ok, n_txn, out=np.full_like(n_txn, self.prior), where=n_txn > 0)

    def route_by_success(self, rates: np.ndarray) -> np.ndarray:
        """Best usable route gets ``1 - hedging``; the other usable routes share ``hedging`` ``[N, B, 3]``."""
        usable = np.broadcast_to(self.usable, rates.shape)
        score = np.where(usable, rates, -np.inf)
        best = score.argmax(2)
        is_best = np.arange(3)[None, None, :] == best[:, :, None]
        others = usable & ~is_best
        n_others = others.sum(2, keepdims=True)
        share = np.divide(self.hedging, n_others, out=np.zeros(n_others.shape), where=n_others > 0)
        route = np.where(is_best, 1.0 - np.where(n_others > 0, self.hedging, 0.0), np.where(others, share, 0.0))
        return route

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        admit = self.sre_admit(o)
        return admit, self.route_by_success(self.success_rates(o))


class UnthrottledRouter(SuccessRateRouter):
    """:class:`SuccessRateRouter`'s routing with every payment admitted: the router without its throttle.

    SRE throttling remembers two minutes of accepts; after a bank's outage it keeps rejecting payments until that
    window has refilled (``python -m agents.analysis.throttle_memory``: on ``outage_drill`` the router fails 21.1%,
    this 12.1%). Routing by success rate already moves quick-enabled cards off a failing channel, so on worlds
    where a bank comes back the router is better without the throttle, and a correction learned on top of a base
    (``train.py --residual``) does not inherit a memory it cannot observe.
    """

    name = "unthrottled_router"

    def _act(self, o: Observed) -> tuple[np.ndarray, np.ndarray]:
        return np.ones(o.offered.shape), self.route_by_success(self.success_rates(o))


HEURISTICS: dict[str, type[HeuristicPolicy]] = {
    "admit_all": AdmitAll,
    "static_capacity": StaticCapacity,
    "sre_throttle": SREThrottle,
    "aimd": AIMD,
    "circuit_breaker": CircuitBreaker,
    "success_rate_router": SuccessRateRouter,
    "unthrottled_router": UnthrottledRouter,
    "random": RandomPolicy,
}
