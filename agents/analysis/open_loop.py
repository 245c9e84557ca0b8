"""Open-loop plans: a control schedule indexed by time alone, and a cross-entropy search that improves one.

A *plan* fixes, for every block of ``block_steps`` simulation steps and every bank, the admit rate, the share
of quick-enabled attempts sent to ``quick`` and the share of the rest sent to ``switch`` (the remainder goes
to ``netbank``). It never looks at the observation. Two uses:

- **Is a learned policy locally optimal?** ``plan_from_policy`` records what a policy did on one episode
  (block averages of its admit and route), and ``cross_entropy_search`` perturbs that schedule on training
  seeds, keeping whatever loses fewer intents. If no nearby schedule beats it, the policy's behaviour is a
  local optimum of the schedule space, and the remaining gap to the fluid bound lies elsewhere (the bound's
  relaxations, or feedback the schedule cannot express).
- **A planning baseline**: the best plan found is a ``Policy`` (``PlanPolicy``) that ``agents.evaluation``
  scores on evaluation seeds disjoint from the search seeds, like any trained agent.
- **What an omniscient planner reaches**: ``plan_from_bound`` turns the fluid LP's optimal plan into a
  schedule, optionally one that keeps fragile banks below collapse, planned with a capacity margin.

Command line (prints the starting plan's and the searched plan's failed-payment rate on the evaluation
seeds)::

    python -m agents.analysis.open_loop --init runs/ppo-double11_2013-seed0/model.zip --iterations 30
    # the bound's no-collapse plan with a capacity margin per bank core and for the switch (margin_search)
    python -m agents.analysis.open_loop --init bound --bound-cuts --bound-capacity 0.9 --search-margins --sigma 0.06 \
        --population 16 --iterations 10

The search is the cross-entropy method (Rubinstein 1999; de Boer et al. 2005): sample a population around a
Gaussian mean, keep the elite fraction, move the mean and the spread towards the elite (with smoothing),
and remember the best candidate ever evaluated. Every candidate meets the same seeds (common random
numbers), so differences between candidates are differences between plans, not luck.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.deciders import Policy, PolicyError, load_policy
from agents.evaluation import bootstrap_ci, run_policy
from agents.evaluation.runner import evaluation_memory
from agents.model_files import TRUST_HELP
from payroute_env import core, memory
from payroute_env._cli import OneLineArgumentParser, fail, run
from payroute_env.actions import encode
from payroute_env.bounds import fluid_bound, nominal_state
from payroute_env.scenario import Scenario, load_scenario
from payroute_env.simulator import Simulator

__all__ = [
    "Plan",
    "PlanPolicy",
    "cross_entropy_search",
    "margin_search",
    "plan_failed_rates",
    "plan_from_bound",
    "plan_from_policy",
]


@dataclass(frozen=True)
class Plan:
    """A time-indexed control schedule: block ``j`` covers steps ``j * block_steps .. (j + 1) * block_steps - 1``.

    ``controls[j, b]`` = ``(admit rate, quick share, switch share of the rest)`` for bank ``b``, each in [0, 1].
    """

    block_steps: int
    controls: np.ndarray  # [n_blocks, B, 3]

    def __post_init__(self) -> None:
        c = np.asarray(self.controls, dtype=np.float64)
        if c.ndim != 3 or c.shape[2] != 3 or c.shape[0] < 1:
            raise ValueError(f"plan controls must have shape (n_blocks, n_banks, 3); got {c.shape}")
        if not np.isfinite(c).all() or (c < 0).any() or (c > 1).any():
            raise ValueError("plan controls must be finite and in [0, 1]")
        if isinstance(self.block_steps, bool) or not isinstance(self.block_steps, int) or self.block_steps < 1:
            raise ValueError(f"block_steps must be an integer >= 1; got {self.block_steps!r}")
        object.__setattr__(self, "controls", c)

    @property
    def n_banks(self) -> int:
        return self.controls.shape[1]

    def save(self, path: str | Path) -> None:
        np.savez(path, block_steps=self.block_steps, controls=self.controls)

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        with np.load(path) as data:
            return cls(int(data["block_steps"]), data["controls"])


def continuous_actions(controls: np.ndarray) -> np.ndarray:
    """``[..., B, 3]`` plan controls to continuous actions ``[..., 4B]`` (``payroute_env.actions.encode``)."""
    admit, quick, switch = controls[..., 0], controls[..., 1], controls[..., 2]
    rest = 1.0 - quick
    route = np.stack([quick, rest * switch, rest * (1.0 - switch)], axis=-1)
    B = controls.shape[-2]
    actions = encode(admit.reshape(-1, B), route.reshape(-1, B, 3))
    return actions.reshape(*controls.shape[:-2], 4 * B)


def controls_from_routes(admit: np.ndarray, routes: np.ndarray) -> np.ndarray:
    """Admit rates ``[..., B]`` and per-route amounts or shares ``[..., B, 3]`` (quick, switch, netbank) to
    plan controls ``[..., B, 3]``; nothing routed means quick, nothing beyond quick means switch."""
    total = routes.sum(-1)
    quick = np.divide(routes[..., 0], total, out=np.ones_like(total), where=total > 1e-9)
    rest = routes[..., 1] + routes[..., 2]
    switch = np.divide(routes[..., 1], rest, out=np.ones_like(rest), where=rest > 1e-9)
    return np.clip(np.stack([admit, quick, switch], axis=-1), 0.0, 1.0)


def _block(plan_blocks: int, block_steps: int, t: np.ndarray) -> np.ndarray:
    return np.minimum(t // block_steps, plan_blocks - 1)


class PlanPolicy(Policy):
    """An open-loop plan: the same schedule whatever happens (it counts steps, never reads the observation)."""

    name = "open_loop_plan"
    action_mode = "continuous"

    def __init__(self, plan: Plan, name: str = "open_loop_plan") -> None:
        self.plan = plan
        self.name = name
        self.t = np.zeros(0, dtype=np.int64)

    def reset(self, num_envs: int) -> None:
        self.t = np.zeros(int(num_envs), dtype=np.int64)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        obs = np.asarray(observation)
        single = obs.ndim == 1
        n = 1 if single else obs.shape[0]
        if self.t.shape[0] != n:
            self.reset(n)
        elif episode_start is not None:
            self.t[np.asarray(episode_start, dtype=bool).reshape(-1)] = 0
        blocks = _block(self.plan.controls.shape[0], self.plan.block_steps, self.t)
        actions = continuous_actions(self.plan.controls[blocks])
        self.t += 1
        return (actions[0] if single else actions), state

    def describe(self) -> str:
        return f"open-loop plan ({self.plan.controls.shape[0]} blocks of {self.plan.block_steps} steps)"


def plan_from_policy(
    policy: str | Path | Policy,
    scenario: str | Path | Scenario,
    seed: int = 0,
    block_steps: int = 12,
    trust: bool = False,
) -> Plan:
    """What ``policy`` did in the episode of ``seed``, averaged over blocks of ``block_steps`` steps.

    ``trust``: a model file may run code as it loads (its pickles; ``agents.model_files``)."""
    sc = load_scenario(scenario)
    pol = load_policy(policy, sc, trust=trust)
    timeline = run_policy(pol, sc, [seed], timeline=True).timeline
    assert timeline is not None
    admit, route = timeline["admit"], timeline["route"]  # [T, B], [T, B, 3]
    starts = np.arange(0, admit.shape[0], block_steps)
    steps = np.diff(np.append(starts, admit.shape[0]))[:, None]  # the last block may be shorter
    mean_admit = np.add.reduceat(admit, starts, axis=0) / steps
    mean_route = np.add.reduceat(route, starts, axis=0) / steps[:, :, None]
    return Plan(block_steps, controls_from_routes(mean_admit, mean_route))


def plan_from_bound(
    scenario: str | Path | Scenario,
    layer_s: float = 60.0,
    capacity_factor: float | Sequence[float] = 1.0,
    cuts: bool = False,
    state: core.CoreState | None = None,
    env_index: int = 0,
) -> Plan:
    """The fluid lower bound's optimal plan (``payroute_env.bounds``) as an open-loop plan.

    Per LP layer and bank: admit rate = attempts the LP admits for the bank's two pools over those offered (admitted
    + throttled); quick and switch shares from the LP's quick-enabled lanes. The LP knows the true capacities and
    ignores randomness (and, without ``cuts``, stress), so this is the certainty-equivalent plan of an omniscient
    planner; the simulation shows what it is worth once those come back. A layer where the LP sends nothing keeps
    the status quo (admit all, quick).

    Two knobs make the plan playable rather than merely optimal for the LP: ``cuts`` solves the LP with
    ``no_collapse``, ``bank_throttle`` and ``pending_counts_as_lost`` (a plan that keeps fragile banks below
    collapse and does not park attempts at the end), and ``capacity_factor`` (in (0, 1]) plans for that
    share of every true capacity, a safety margin against the randomness the fluid LP does not see. It is one
    number for every channel, or one per server (each bank's core, whose quick and online-banking channels share
    it, then the switch, then balance: ``B + 2`` numbers; ``margin_search`` looks for them).

    Without ``state`` the plan covers the whole episode from a reset with the scenario's nominal figures. With a
    running episode's ``state`` (environment ``env_index``) it covers the rest of that episode, from the state's
    step, queues, retry backlog, server stress, outages and warm-up (``fluid_bound(..., from_now=True)``): block 0
    of the plan is what to do now. ``agents.analysis.mpc`` re-plans this way every block.
    """
    sc = load_scenario(scenario)
    factor = _channel_factors(capacity_factor, core.make_params(sc))
    if state is None:
        state, env_index, from_now = nominal_state(sc), 0, False
    else:
        from_now = True
    # plan for a share of every true capacity (a copy: the running episode keeps its own)
    state = state.copy()
    state.capacity = state.capacity * factor
    options = dict(no_collapse=True, bank_throttle=True, pending_counts_as_lost=True) if cuts else {}
    b = fluid_bound(sc, state=state, env_index=env_index, layer_s=layer_s, from_now=from_now, **options)
    B = sc.n_banks
    lanes = b.lane_admitted[:, : 4 * B].reshape(-1, B, 4)  # quick-enabled on quick, switch, netbank; netbank-only
    throttled = b.pool_throttled[:, : 2 * B].reshape(-1, B, 2).sum(2)
    admitted = lanes.sum(2)
    admit = np.divide(admitted, admitted + throttled, out=np.ones_like(admitted), where=admitted + throttled > 1e-9)
    return Plan(b.layer_steps, controls_from_routes(admit, lanes[..., :3]))


def _channel_factors(capacity_factor: float | Sequence[float], params: core.CoreParams) -> np.ndarray:
    """``capacity_factor`` (one number, or one per server) as one factor per channel ``[C]``, checked."""
    S = params.n_servers
    scalar_error = ValueError(f"capacity_factor = {capacity_factor!r}: expected a number in (0, 1]")
    if isinstance(capacity_factor, str | bytes):  # numpy would read "0.5" as a number
        raise scalar_error
    try:
        factor = np.asarray(capacity_factor, dtype=np.float64)
    except (TypeError, ValueError):
        raise scalar_error from None
    if factor.ndim == 0:
        if not 0.0 < factor <= 1.0:  # NaN fails too
            raise scalar_error
        return np.full(len(params.channel_server), float(factor))
    if factor.shape != (S,) or not ((factor > 0.0) & (factor <= 1.0)).all():
        raise ValueError(
            f"capacity_factor = {factor.tolist()}: expected one number or {S} numbers (one per bank core, then the "
            "switch and balance), each in (0, 1]"
        )
    return factor[params.channel_server]


def plan_failed_rates(
    controls: np.ndarray, block_steps: int, scenario: str | Path | Scenario, seeds: Sequence[int]
) -> np.ndarray:
    """Mean failed-payment rate over ``seeds`` of each candidate plan ``controls[M, n_blocks, B, 3]`` (``[M]``).

    All ``M * len(seeds)`` episodes run as one batch; candidate ``i`` meets exactly the seeds of every other.
    """
    sc = load_scenario(scenario)
    controls = np.asarray(controls, dtype=np.float64)
    if controls.ndim != 4 or controls.shape[2:] != (sc.n_banks, 3):
        expected = f"(M, n_blocks, {sc.n_banks}, 3)"
        raise ValueError(f"candidate plans for {sc.name} need shape {expected}; got {controls.shape}")
    M, S = controls.shape[0], len(seeds)
    sim = Simulator(sc, M * S)
    sim.reset(seeds=[int(s) for s in seeds] * M)
    actions = continuous_actions(np.repeat(controls, S, axis=0))  # [M*S, n_blocks, 4B]
    n_blocks = controls.shape[1]
    for t in range(sim.params.n_steps):
        sim.step(actions[:, _block(n_blocks, block_steps, np.int64(t))])
    state = sim.state
    assert state is not None
    rates = state.lost / np.maximum(state.arrived, 1)
    return rates.reshape(M, S).mean(axis=1)


def cross_entropy_search(
    init: Plan,
    scenario: str | Path | Scenario,
    seeds: Sequence[int],
    iterations: int = 30,
    population: int = 64,
    elite_fraction: float = 0.125,
    sigma: float = 0.03,
    search_admit: bool = False,
    smoothing: float = 0.7,
    seed: int = 0,
    on_iteration: Callable[[int, float, float], None] | None = None,
) -> tuple[Plan, list[float]]:
    """Improve ``init`` on ``seeds``; return the best plan evaluated and the best rate after each iteration.

    The population always contains the current mean; ``sigma`` is the starting spread of the quick and
    switch shares (and of the admit rate when ``search_admit``; otherwise admit stays as in ``init``).
    ``on_iteration(i, best_rate, mean_rate)`` reports progress.
    """
    frozen = np.zeros(init.controls.shape, dtype=bool)
    if not search_admit:
        frozen[..., 0] = True

    def score(candidates: np.ndarray) -> np.ndarray:
        return plan_failed_rates(candidates, init.block_steps, scenario, seeds)

    best, history = _cross_entropy(
        init.controls, sigma, frozen, (0.0, 1.0), score, iterations, population, elite_fraction, smoothing, seed,
        on_iteration,
    )  # fmt: skip
    return Plan(init.block_steps, best), history


def margin_search(
    scenario: str | Path | Scenario,
    seeds: Sequence[int],
    start: float = 0.9,
    iterations: int = 10,
    population: int = 16,
    elite_fraction: float = 0.25,
    sigma: float = 0.06,
    layer_s: float = 60.0,
    smoothing: float = 0.7,
    seed: int = 0,
    on_iteration: Callable[[int, float, float], None] | None = None,
) -> tuple[np.ndarray, list[float]]:
    """Search a capacity margin per bank core and for the switch for the bound's no-collapse plan.

    ``plan_from_bound(cuts=True, capacity_factor=...)`` with one margin for every capacity guards every bank
    alike, though only the fragile ones risk collapse. This searches the ``B + 1`` margins (bank cores, then
    the switch; balance keeps 1) in [0.5, 1] with the cross-entropy method from ``start`` for all, one LP per
    candidate, each plan scored on ``seeds``. Returns the best margins found (``B + 2`` numbers, balance's
    included, as ``plan_from_bound`` takes them) and the best rate after each iteration.
    """
    if not 0.5 <= start <= 1.0:
        raise ValueError(f"start = {start!r}: the margins are searched in [0.5, 1]")
    sc = load_scenario(scenario)
    B = sc.n_banks

    def score(candidates: np.ndarray) -> np.ndarray:  # one LP per candidate; balance keeps its full capacity
        plans = [plan_from_bound(sc, layer_s, np.append(c, 1.0), cuts=True) for c in candidates]
        return plan_failed_rates(np.stack([p.controls for p in plans]), plans[0].block_steps, sc, seeds)

    best, history = _cross_entropy(
        np.full(B + 1, float(start)), sigma, np.zeros(B + 1, dtype=bool), (0.5, 1.0), score, iterations,
        population, elite_fraction, smoothing, seed, on_iteration,
    )  # fmt: skip
    return np.append(best, 1.0), history


def _cross_entropy(
    mean: np.ndarray,
    sigma: float,
    frozen: np.ndarray,
    bounds: tuple[float, float],
    score: Callable[[np.ndarray], np.ndarray],
    iterations: int,
    population: int,
    elite_fraction: float,
    smoothing: float,
    seed: int,
    on_iteration: Callable[[int, float, float], None] | None,
) -> tuple[np.ndarray, list[float]]:
    """The cross-entropy method over the numbers ``mean`` (those ``frozen`` stay put), each kept in ``bounds``;
    ``score`` maps candidates ``[population, *mean.shape]`` to rates, lower is better. Returns the best
    candidate ever scored and the best rate after each iteration."""
    if iterations < 1 or population < 2:
        raise ValueError(f"need iterations >= 1 and population >= 2; got {iterations}, {population}")
    if not 0 < elite_fraction <= 1 or not sigma >= 0 or not 0 <= smoothing <= 1:
        raise ValueError("elite_fraction must be in (0, 1], sigma >= 0 and smoothing in [0, 1]")
    rng = np.random.default_rng(seed)
    mean = np.array(mean, dtype=np.float64)
    spread = np.where(frozen, 0.0, float(sigma))
    n_elite = max(1, int(round(elite_fraction * population)))
    best, best_rate = mean.copy(), np.inf
    history: list[float] = []
    for i in range(iterations):
        noise = rng.standard_normal((population, *mean.shape))
        candidates = np.clip(mean + spread * noise, *bounds)
        candidates[0] = mean  # the population always contains the current mean
        rates = score(candidates)
        order = np.argsort(rates, kind="stable")
        if rates[order[0]] < best_rate:
            best_rate, best = float(rates[order[0]]), candidates[order[0]].copy()
        elite = candidates[order[:n_elite]]
        mean = smoothing * elite.mean(0) + (1 - smoothing) * mean
        spread = np.where(frozen, 0.0, smoothing * elite.std(0) + (1 - smoothing) * spread)
        history.append(best_rate)
        if on_iteration is not None:
            on_iteration(i, best_rate, float(rates[0]))
    return best, history


# ------------------------------------------------------------------------------------------------ CLI


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="python -m agents.analysis.open_loop", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="double11_2013", help="built-in scenario name or TOML path")
    p.add_argument(
        "--init",
        default="success_rate_router",
        help="policy whose behaviour starts the search, or 'bound' for the fluid LP's optimal plan",
    )
    p.add_argument(
        "--bound-cuts",
        action="store_true",
        help="with --init bound: solve the LP without collapse and charging pending intents as lost",
    )
    p.add_argument(
        "--bound-capacity",
        type=float,
        default=None,
        help="with --init bound: plan for this share of every true capacity, in (0, 1] (a margin)",
    )
    p.add_argument(
        "--search-margins",
        action="store_true",
        help="with --init bound --bound-cuts: search a capacity margin per bank core and for the switch, starting "
        "from --bound-capacity for all (margin_search), instead of the plan's shares",
    )
    p.add_argument("--init-seed", type=int, default=0, help="episode recorded to build the starting plan")
    p.add_argument("--block-s", type=float, default=60.0, help="seconds per plan block")
    p.add_argument("--search-seeds", type=int, default=4, help="seeds 7 .. 7+n-1 score the candidates")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--population", type=int, default=64)
    p.add_argument(
        "--sigma",
        type=float,
        default=0.03,
        help="starting spread of the route shares (of the margins with --search-margins)",
    )
    p.add_argument("--search-admit", action="store_true", help="also search the admit rates")
    p.add_argument("--seed", type=int, default=0, help="seed of the search's own sampling")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes (seeds eval-seed ..)")
    p.add_argument("--eval-seed", type=int, default=1000)
    p.add_argument("--out", default=None, help="save the best plan to this .npz file")
    p.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    return p


def _bad_argument(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, checked before any search runs (``None`` if nothing)."""
    least = {"iterations": 1, "population": 2, "search_seeds": 1, "episodes": 1, "seed": 0, "eval_seed": 0,
             "init_seed": 0}  # fmt: skip
    for name, low in least.items():
        if getattr(args, name) < low:
            return f"--{name.replace('_', '-')} must be >= {low}; got {getattr(args, name)}"
    if max(args.init_seed + 1, args.eval_seed + args.episodes, 7 + args.search_seeds) > 2**64:
        return "seeds must be below 2**64: lower --init-seed, --eval-seed, --episodes or --search-seeds"
    if not (math.isfinite(args.block_s) and args.block_s > 0):
        return f"--block-s must be a finite number of seconds > 0; got {args.block_s}"
    if not (math.isfinite(args.sigma) and args.sigma >= 0):
        return f"--sigma must be a finite number >= 0; got {args.sigma}"
    if args.bound_capacity is not None and not 0 < args.bound_capacity <= 1:  # NaN fails too
        return f"--bound-capacity must be a share of capacity in (0, 1]; got {args.bound_capacity}"
    if (args.bound_cuts or args.bound_capacity is not None) and args.init != "bound":
        return "--bound-cuts and --bound-capacity need --init bound"
    if args.search_margins and not (args.init == "bound" and args.bound_cuts):
        return "--search-margins needs --init bound --bound-cuts"
    if args.search_margins and args.search_admit:
        return "--search-admit searches a plan's admit rates; --search-margins searches margins instead: choose one"
    if args.search_margins and not 0.5 <= (args.bound_capacity or 1.0) <= 1.0:
        return f"--search-margins searches margins in [0.5, 1]; --bound-capacity {args.bound_capacity} is outside"
    if args.init != "bound" and args.eval_seed <= args.init_seed < args.eval_seed + args.episodes:
        return f"--init-seed {args.init_seed} is one of the evaluation seeds; choose another --init-seed"
    # seeds 7 .. 7+n-1 against eval_seed .. eval_seed+episodes-1, as intervals (never sets: n may be huge)
    if max(7, args.eval_seed) < min(7 + args.search_seeds, args.eval_seed + args.episodes):
        return (f"evaluation seeds {args.eval_seed}..{args.eval_seed + args.episodes - 1} overlap the search seeds "
                f"7..{6 + args.search_seeds}; choose another --eval-seed")  # fmt: skip
    if args.out:
        folder = Path(args.out).resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return f"--out {args.out}: folder {folder} does not exist or is not writable"
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problem = _bad_argument(args)
    if problem:
        return fail("python -m agents.analysis.open_loop", problem)
    margin = 1.0 if args.bound_capacity is None else args.bound_capacity  # of the bound's plan (and the margin search)
    try:
        sc = load_scenario(args.scenario)
        block_steps = min(sc.n_steps, max(1, round(args.block_s / sc.dt_s)))  # longer than the night: one block
        closed_loop = []
        if args.init == "bound":
            init = plan_from_bound(sc, layer_s=args.block_s, capacity_factor=margin, cuts=args.bound_cuts)
        else:
            init = plan_from_policy(args.init, sc, args.init_seed, block_steps, trust=args.trust_model)
            # loaded afresh, as the plan's was: a policy that draws (random) starts its stream again
            closed_loop = [(f"{args.init} (closed loop)", load_policy(args.init, sc, trust=args.trust_model))]
        # refused up front, not after the search: its batch (every candidate on every search seed) and the evaluation
        batch = args.population * args.search_seeds
        what = f"--population {args.population} x --search-seeds {args.search_seeds} episodes in one batch"
        memory.require([(what, memory.simulator_bytes(sc, batch))], "lower --population or --search-seeds")
        evaluated = [policy for _, policy in closed_loop] + [PlanPolicy(init)]
        memory.require(evaluation_memory(sc, args.episodes, evaluated), "lower --episodes")
    except (PolicyError, ValueError, OSError) as exc:
        return fail("python -m agents.analysis.open_loop", exc)
    search_seeds = list(range(7, 7 + args.search_seeds))
    start = time.perf_counter()

    def report(i: int, best: float, mean: float) -> None:
        print(
            f"iteration {i + 1:3d}: best {100 * best:.3f}%  mean plan {100 * mean:.3f}%  "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    if args.search_margins:
        margins, _ = margin_search(
            sc, search_seeds, margin, args.iterations, args.population, sigma=args.sigma,
            layer_s=args.block_s, seed=args.seed, on_iteration=report,
        )  # fmt: skip
        servers = [bank.name for bank in sc.banks] + ["switch", "balance"]
        print("margins found: " + ", ".join(f"{name} {m:.3f}" for name, m in zip(servers, margins, strict=True)))
        best = plan_from_bound(sc, layer_s=args.block_s, capacity_factor=margins, cuts=True)
    else:
        best, _ = cross_entropy_search(
            init,
            sc,
            search_seeds,
            args.iterations,
            args.population,
            sigma=args.sigma,
            search_admit=args.search_admit,
            seed=args.seed,
            on_iteration=report,
        )
    if args.out:
        best.save(args.out)
    eval_seeds = list(range(args.eval_seed, args.eval_seed + args.episodes))
    print(f"evaluation on seeds {eval_seeds[0]}..{eval_seeds[-1]} ({sc.name}):")
    for label, pol in (
        *closed_loop,
        ("its open-loop plan", PlanPolicy(init)),
        ("plan after the search", PlanPolicy(best)),
    ):
        rates = [e["failed_payment_rate"] for e in run_policy(pol, sc, eval_seeds, timeline=False).episodes]
        lo, hi = bootstrap_ci(rates)
        print(f"  {label:<40s} {100 * np.mean(rates):6.3f}%  [{100 * lo:.3f}, {100 * hi:.3f}]")
    return 0


if __name__ == "__main__":
    run(main, "python -m agents.analysis.open_loop")
