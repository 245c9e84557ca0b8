"""How loudly each world of a mixture speaks in training: the spread of its per-step training rewards.

One ``VecNormalize`` divides every member's rewards by the same running figure, so a world whose rewards
hardly vary (an ordinary evening) moves the shared policy's gradient far less than a fragile bank's collapse.
This measures, per member and under a heuristic (the residual base the agent starts from), the standard
deviation of the per-step training reward and the episode return, and the ``reward_scale`` that would give
the member the same per-step spread as the loudest one (docs/TRAINING.md, "Training on a mixture of worlds").

    python -m agents.analysis.reward_spread agents/scenarios/generalist_mix.toml --policy success_rate_router
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.deciders.heuristics import HEURISTICS
from agents.training.mixture import MixtureError, training_worlds
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run
from payroute_env.sb3_vec_env import make_sb3_vec_env
from payroute_env.scenario import ScenarioError

__all__ = ["Spread", "main", "reward_spread"]

PROG = "python -m agents.analysis.reward_spread"


@dataclass(frozen=True)
class Spread:
    """One member's training rewards under one policy."""

    world: str
    step_std: float  # standard deviation of the per-step reward over every step of every episode
    return_mean: float
    return_std: float  # over episodes (seeds)
    steps: int  # per episode


def reward_spread(mixture: str, policy: str, episodes: int = 8, seed: int = 5_000_000) -> list[Spread]:
    """Play ``episodes`` seeded episodes of each member of ``mixture`` (or of one scenario) with the heuristic
    ``policy`` and return each member's reward spread, in member order."""
    if policy not in HEURISTICS:
        raise ValueError(f"policy {policy!r}: expected a heuristic ({', '.join(HEURISTICS)})")
    if episodes < 2:
        raise ValueError(f"episodes = {episodes}: expected at least 2 (a spread over episodes)")
    rows = []
    for scenario in training_worlds(mixture).members:
        env = make_sb3_vec_env(scenario, episodes, seed=seed, monitor=False)
        decider = HEURISTICS[policy](scenario)
        decider.reset(episodes)
        obs, start = env.reset(), np.ones(episodes, dtype=bool)
        rewards, done = [], np.zeros(episodes, dtype=bool)
        while not done.all():
            action, _ = decider.predict(obs, episode_start=start, deterministic=True)
            obs, reward, start, _ = env.step(action)
            rewards.append(reward)
            if start.any() and not start.all():  # the next episodes would mix into these returns
                raise ValueError(f"{scenario.name}: its episodes end at different steps; measure it alone")
            done |= start
        per_step = np.stack(rewards)  # [steps, episodes]
        returns = per_step.sum(axis=0)
        rows.append(Spread(scenario.name, float(per_step.std()), float(returns.mean()), float(returns.std()),
                           len(rewards)))  # fmt: skip
        env.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    about = __doc__.split("\n\n")[0]
    parser = OneLineArgumentParser(prog=PROG, description=about, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("mixture", help="a mixture file (or one scenario)")
    parser.add_argument("--policy", default="success_rate_router", help="the heuristic that plays every member")
    parser.add_argument("--episodes", type=int, default=8, help="seeded episodes per member")
    parser.add_argument("--seed", type=int, default=5_000_000, help="first episode's seed (away from evaluation's)")
    args = parser.parse_args(argv)
    try:
        rows = reward_spread(args.mixture, args.policy, args.episodes, args.seed)
    except (ValueError, MixtureError, ScenarioError) as exc:
        return fail(PROG, exc)
    worlds = training_worlds(args.mixture)
    scales = worlds.reward_scales or (1.0,) * len(rows)
    loudest = max(r.step_std for r in rows)
    print(f"{args.policy}, {args.episodes} episodes from seed {args.seed}")
    print("| world | steps | per-step std | episode return | scale to the loudest | its reward_scale | std scaled |")
    print("|---|---|---|---|---|---|---|")
    for r, scale in zip(rows, scales, strict=True):
        equal = f"{loudest / r.step_std:.0f}" if r.step_std > 0 else "-"
        print(f"| {r.world} | {r.steps} | {r.step_std:.4f} | {r.return_mean:.2f} ± {r.return_std:.2f} | {equal} "
              f"| {scale:g} | {r.step_std * scale:.4f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    run(main, PROG)
