"""Plain stable-baselines3 PPO, as a new user runs it: default settings, no train.py, against the status quo.

The check behind the continuous action's convention (``Box(-1, 1)``, the zero action the 2013 status quo): a
fresh PPO starts from what the platform did, and learns from there rather than from "admit nothing". It trains
``PPO("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), seed=seed)`` for ``--timesteps`` steps and
prints the failed-payment rate of the status quo, of the fresh policy and of the trained one (deterministic and
sampled actions) on the same evaluation seeds::

    python -m agents.analysis.plain_sb3 --timesteps 20000 --seed 0
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from payroute_env import ENV_IDS
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run
from payroute_env.actions import status_quo
from payroute_env.scenario import load_scenario
from payroute_env.simulator import Simulator

__all__ = ["failed_rate", "plain_ppo"]

PROG = "python -m agents.analysis.plain_sb3"


def failed_rate(act: Callable[[np.ndarray], np.ndarray], scenario: str, seeds: Sequence[int]) -> float:
    """The mean failed-payment rate of ``act(observations) -> actions`` over the episodes of ``seeds``."""
    sim = Simulator(scenario, num_envs=len(seeds))
    obs = sim.reset(seeds=list(seeds))
    for _ in range(sim.params.n_steps):
        obs, *_ = sim.step(act(obs))
    return float(np.mean([sim.kpis(i)["failed_payment_rate"] for i in range(len(seeds))]))


def plain_ppo(env_id: str, timesteps: int, seed: int, seeds: Sequence[int]) -> dict[str, float]:
    """Failed-payment rates of the status quo and of plain PPO before and after ``timesteps`` steps."""
    scenario = ENV_IDS[env_id]
    model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, device="cpu")
    same = status_quo("continuous", load_scenario(scenario).n_banks)
    rates = {
        "status_quo": failed_rate(lambda o: np.tile(same, (len(o), 1)), scenario, seeds),
        "fresh": failed_rate(lambda o: model.predict(o, deterministic=True)[0], scenario, seeds),
    }
    start = time.perf_counter()
    model.learn(timesteps)
    rates["seconds"] = time.perf_counter() - start
    rates["trained"] = failed_rate(lambda o: model.predict(o, deterministic=True)[0], scenario, seeds)
    rates["trained_sampled"] = failed_rate(lambda o: model.predict(o, deterministic=False)[0], scenario, seeds)
    return rates


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n")[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--env", default="payroute/Double11-2013-v0", help="a built-in payroute id")
    p.add_argument("--timesteps", type=int, default=20_000, help="training steps")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--eval-seeds", type=int, nargs="+", default=list(range(1000, 1020)), help="evaluation seeds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.env not in ENV_IDS or ENV_IDS[args.env] is None:
        builtin = ", ".join(k for k, v in ENV_IDS.items() if v is not None)
        return fail(PROG, f"--env {args.env!r}: expected a built-in payroute id ({builtin})")
    if args.timesteps < 1 or not 0 <= args.seed < 2**32 or not all(0 <= s < 2**64 for s in args.eval_seeds):
        return fail(PROG, "--timesteps must be >= 1, --seed in [0, 2**32) (SB3's seeds), --eval-seeds in [0, 2**64)")
    r = plain_ppo(args.env, args.timesteps, args.seed, args.eval_seeds)
    print(
        f"{args.env}, {len(args.eval_seeds)} episodes: status quo {100 * r['status_quo']:.2f}%, fresh PPO "
        f"{100 * r['fresh']:.2f}%, after {args.timesteps:,} steps ({r['seconds']:.0f} s) {100 * r['trained']:.2f}% "
        f"(sampled actions {100 * r['trained_sampled']:.2f}%) failed payments"
    )
    return 0


if __name__ == "__main__":
    run(main, PROG)
