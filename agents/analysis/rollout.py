"""Rollout improvement: how much could one step of lookahead on the true model improve a trained policy?

An analysis, not a policy a platform could run: at the start of every block of ``block_s`` seconds the
controller copies the episode's **true** state (hidden server state included) into ``candidates x futures``
environments, plays each candidate correction to the base policy's action for one block and the base policy
alone for the rest of ``horizon_s``, and applies the correction whose futures lose the fewest intents on
average. Every candidate meets the same ``futures`` random streams (common random numbers), drawn afresh at
each decision and never the episode's own, so the controller does not see the real future. This is the
rollout algorithm (Bertsekas & Castanon 1999; Bertsekas, *Rollout, Policy Iteration, and Distributed
Reinforcement Learning*, 2020). With exact expectations over the whole rest of the episode it would do at
least as well as its base (the cost improvement property); sampled futures and a finite horizon make that
approximate.

What it tells: if lookahead with a perfect model and full state barely improves the base, no small
correction of the base's decisions, one block at a time, pays off, and the base is close to a local optimum
of the closed-loop problem (not only of open-loop schedules, which ``agents.analysis.open_loop`` searches).

The corrections (``corrections``): the base action itself, and per bank, admit rate -0.1 or -0.3, switch
weight +-0.2, netbank weight +0.1, quick weight -0.2 (weights are renormalised by the environment).

    python -m agents.analysis.rollout --base runs/ppo-double11_2013-seed0 --seeds 1000 1001 1002

The base must be memoryless (its action depends on the observation alone: a non-recurrent SB3 model that
is not a correction to a heuristic, or ``admit_all``), because its copies start from the episode's state
without the memory it built up.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.deciders import Policy, PolicyError, SB3Policy, load_policy
from agents.deciders.heuristics import AdmitAll
from agents.evaluation.stats import bootstrap_ci
from agents.model_files import TRUST_HELP
from payroute_env import core, memory
from payroute_env._cli import OneLineArgumentParser, fail, run
from payroute_env.scenario import Scenario, load_scenario
from payroute_env.simulator import Simulator

__all__ = ["RolloutResult", "corrections", "rollout_episode"]

# (action index within a bank's [admit, quick, switch, netbank], change) of each per-bank correction
_CHANGES = ((0, -0.1), (0, -0.3), (2, 0.2), (2, -0.2), (3, 0.1), (1, -0.2))


def corrections(n_banks: int) -> np.ndarray:
    """``[1 + 6 n_banks, 4 n_banks]`` additive changes to a continuous action: none first, then per bank."""
    out = np.zeros((1 + len(_CHANGES) * n_banks, 4 * n_banks))
    row = 1
    for b in range(n_banks):
        for index, change in _CHANGES:
            out[row, 4 * b + index] = change
            row += 1
    return out


@dataclass(frozen=True)
class RolloutResult:
    """One episode of the base policy and of its rollout improvement, on the same seed."""

    seed: int
    base_failed_rate: float
    rollout_failed_rate: float
    corrected_blocks: int  # blocks where a correction beat the base action
    blocks: int
    seconds: float


def _memoryless(policy: Policy) -> bool:
    if isinstance(policy, AdmitAll):
        return True
    return type(policy) is SB3Policy and policy.algorithm != "recurrent_ppo" and policy.action_mode == "continuous"


def _act(policy: Policy, obs: np.ndarray) -> np.ndarray:
    actions, _ = policy.predict(obs, None, None, True)
    return np.asarray(actions, dtype=np.float64)


def rollout_episode(
    base: Policy,
    scenario: str | Path | Scenario,
    seed: int,
    horizon_s: float = 600.0,
    block_s: float = 60.0,
    futures: int = 8,
) -> RolloutResult:
    """Play the episode of ``seed`` with the base policy, then with its rollout improvement; return both."""
    if not _memoryless(base):
        raise PolicyError(
            f"{base.name}: the rollout needs a memoryless continuous policy (see agents.analysis.rollout)"
        )
    sc = load_scenario(scenario)
    finite = all(math.isfinite(x) for x in (horizon_s, block_s))
    if not finite or not sc.dt_s <= block_s <= horizon_s or isinstance(futures, bool) or futures < 1:
        raise ValueError(
            f"need dt_s ({sc.dt_s:g}) <= block_s <= horizon_s, both finite, and futures >= 1; "
            f"got block_s {block_s}, horizon_s {horizon_s}, futures {futures}"
        )
    start = time.perf_counter()
    block, horizon = round(block_s / sc.dt_s), round(horizon_s / sc.dt_s)  # in whole steps
    deltas = corrections(sc.n_banks)
    m = deltas.shape[0]
    lookahead_bytes = memory.simulator_bytes(sc, m * futures, base.observe_internal)
    memory.require([(f"{m} candidates x {futures} futures in the lookahead", lookahead_bytes)], "lower --futures")
    lookahead = Simulator(sc, m * futures, observe_internal=base.observe_internal)
    candidate_deltas = np.repeat(deltas, futures, axis=0)  # candidate c: rows c*futures .. (c+1)*futures - 1

    base_run = Simulator(sc, 1, observe_internal=base.observe_internal)
    obs = base_run.reset([seed])
    while base_run.state.t[0] < base_run.params.n_steps:
        obs, *_ = base_run.step(_act(base, obs))

    real = Simulator(sc, 1, observe_internal=base.observe_internal)
    rng = np.random.default_rng([seed, 0x5EED])  # the futures' streams: never the episode's own
    obs = real.reset([seed])
    n_steps, blocks, corrected = real.params.n_steps, 0, 0
    while (t := int(real.state.t[0])) < n_steps:
        future_keys = rng.integers(0, 2**63, futures, dtype=np.uint64)  # the same futures for every candidate
        lookahead.state = core.replicate(real.state, 0, np.tile(future_keys, m))
        lost_before = lookahead.state.lost.copy()
        look_obs = lookahead.observations()
        for k in range(min(horizon, n_steps - t)):
            action = _act(base, look_obs)
            if k < block:
                action = np.clip(action + candidate_deltas, -1.0, 1.0)
            look_obs, *_ = lookahead.step(action)
        expected_lost = (lookahead.state.lost - lost_before).reshape(m, futures).mean(1)
        best = int(np.argmin(expected_lost))  # ties go to the base action (row 0)
        blocks, corrected = blocks + 1, corrected + int(best != 0)
        for _ in range(min(block, n_steps - t)):
            obs, *_ = real.step(np.clip(_act(base, obs) + deltas[best], -1.0, 1.0))
    return RolloutResult(
        seed=int(seed),
        base_failed_rate=float(base_run.kpis(0)["failed_payment_rate"]),
        rollout_failed_rate=float(real.kpis(0)["failed_payment_rate"]),
        corrected_blocks=corrected,
        blocks=blocks,
        seconds=time.perf_counter() - start,
    )


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="python -m agents.analysis.rollout", description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="a memoryless policy: an SB3 model .zip or run folder, or admit_all")
    p.add_argument("--scenario", default="double11_2013", help="built-in scenario name or TOML path")
    p.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002], help="one episode per seed")
    p.add_argument(
        "--horizon-s", type=float, default=600.0, help="lookahead in seconds, rounded to steps (default 600)"
    )
    p.add_argument(
        "--block-s", type=float, default=60.0, help="seconds between decisions, rounded to steps (default 60)"
    )
    p.add_argument("--futures", type=int, default=8, help="random futures per candidate (default 8)")
    p.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    negative = [seed for seed in args.seeds if seed < 0]
    if negative:  # checked before the first (minute-long) episode runs
        return fail("python -m agents.analysis.rollout", f"--seeds must be >= 0; got {negative[0]}")
    try:
        base = load_policy(args.base, args.scenario, trust=args.trust_model)
        results = []
        for seed in args.seeds:
            r = rollout_episode(base, args.scenario, seed, args.horizon_s, args.block_s, args.futures)
            results.append(r)
            print(
                f"seed {r.seed}: base {100 * r.base_failed_rate:.3f}%  rollout {100 * r.rollout_failed_rate:.3f}%  "
                f"(corrected {r.corrected_blocks} of {r.blocks} blocks, {r.seconds:.0f} s)",
                flush=True,
            )
    except (PolicyError, ValueError, OSError) as exc:
        return fail("python -m agents.analysis.rollout", exc)
    gain = [100 * (r.base_failed_rate - r.rollout_failed_rate) for r in results]
    lo, hi = bootstrap_ci(gain)
    print(f"mean gain {np.mean(gain):.3f} points of failed payments, 95% CI [{lo:.3f}, {hi:.3f}], {len(gain)} seeds")
    return 0


if __name__ == "__main__":
    run(main, "python -m agents.analysis.rollout")
