"""Model-predictive control with the fluid LP: re-plan the rest of the night from the true state every block.

An analysis, not a policy a platform could run (like ``agents.analysis.rollout``): at the start of every block of
``block_s`` seconds the controller reads the episode's **true** state (queues by attempt number, users waiting to
retry, hidden server stress, outages in progress and warm-up, true capacities), solves the fluid LP for the rest of
the episode from there (``agents.analysis.open_loop.plan_from_bound`` with that state, the no-collapse cuts and a
capacity margin), and plays the plan for the next ``block_s`` seconds. This is certainty-equivalent
model-predictive control (receding horizon): the open-loop plan of
``python -m agents.analysis.open_loop --init bound --bound-cuts`` plus feedback, so
randomness that pushes a bank towards collapse is seen and planned around at the next block.

What it tells: the open-loop plan needs a capacity margin to survive the simulation's randomness. If feedback
lets an omniscient planner run with a smaller margin and lose fewer intents, the agents' 5.4% is not what the
action space allows; if not, it is another route that ends where the agents end.

    python -m agents.analysis.mpc --seeds 1000 1001 1002 --capacity 0.9
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.evaluation.stats import bootstrap_ci
from payroute_env._cli import OneLineArgumentParser, fail, run
from payroute_env.scenario import Scenario, load_scenario
from payroute_env.simulator import Simulator

from .open_loop import continuous_actions, plan_from_bound

__all__ = ["MPCResult", "mpc_episode"]


@dataclass(frozen=True)
class MPCResult:
    """One episode under model-predictive control."""

    seed: int
    failed_rate: float
    outage_minutes: float  # summed over servers
    solves: int
    seconds: float


def mpc_episode(
    scenario: str | Path | Scenario,
    seed: int,
    capacity_factor: float = 0.9,
    block_s: float = 60.0,
    layer_s: float = 60.0,
) -> MPCResult:
    """Play the episode of ``seed``, re-planning with the fluid LP from the true state every ``block_s`` seconds."""
    sc = load_scenario(scenario)
    if not (math.isfinite(block_s) and sc.dt_s <= block_s):
        raise ValueError(f"block_s = {block_s!r}: expected a finite number of seconds >= dt_s ({sc.dt_s:g})")
    start = time.perf_counter()  # (plan_from_bound checks capacity_factor at the first re-plan)
    block = round(block_s / sc.dt_s)
    sim = Simulator(sc, 1)
    sim.reset([int(seed)])
    n_steps, solves = sim.params.n_steps, 0
    while (t := int(sim.state.t[0])) < n_steps:
        plan = plan_from_bound(sc, layer_s, capacity_factor, cuts=True, state=sim.state)
        solves += 1
        # the plan's blocks are LP layers counted from now: play them until the next re-plan
        for k in range(min(block, n_steps - t)):
            layer = min(k // plan.block_steps, plan.controls.shape[0] - 1)
            sim.step(continuous_actions(plan.controls[layer])[None, :])
    kpis = sim.kpis(0)
    return MPCResult(
        seed=int(seed),
        failed_rate=float(kpis["failed_payment_rate"]),
        outage_minutes=float(np.sum(sim.state.outage_s[0]) / 60.0),
        solves=solves,
        seconds=time.perf_counter() - start,
    )


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="python -m agents.analysis.mpc", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="double11_2013", help="built-in scenario name or TOML path")
    p.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002], help="one episode per seed")
    p.add_argument("--capacity", type=float, default=0.9, help="plan for this share of every capacity (0, 1]")
    p.add_argument("--block-s", type=float, default=60.0, help="seconds between re-plans (default 60)")
    p.add_argument("--layer-s", type=float, default=60.0, help="LP layer length in seconds (default 60)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prog = "python -m agents.analysis.mpc"
    negative = [seed for seed in args.seeds if seed < 0]
    if negative:
        return fail(prog, f"--seeds must be >= 0; got {negative[0]}")
    if not 0.0 < args.capacity <= 1.0:
        return fail(prog, f"--capacity must be in (0, 1]; got {args.capacity}")
    for flag, value in (("--block-s", args.block_s), ("--layer-s", args.layer_s)):
        if not (math.isfinite(value) and value > 0):
            return fail(prog, f"{flag} must be a finite number of seconds > 0; got {value}")
    try:
        results = []
        for seed in args.seeds:
            r = mpc_episode(args.scenario, seed, args.capacity, args.block_s, args.layer_s)
            results.append(r)
            print(
                f"seed {r.seed}: failed {100 * r.failed_rate:.3f}%  outage {r.outage_minutes:.1f} server-min  "
                f"({r.solves} LPs, {r.seconds:.0f} s)",
                flush=True,
            )
    except (ValueError, OSError) as exc:
        return fail(prog, exc)
    rates = [100 * r.failed_rate for r in results]
    lo, hi = bootstrap_ci(rates)
    print(f"mean failed {np.mean(rates):.3f}%, 95% CI [{lo:.3f}, {hi:.3f}], {len(rates)} seeds")
    return 0


if __name__ == "__main__":
    run(main, "python -m agents.analysis.mpc")
