"""Train a stable-baselines3 agent to route and throttle payments during the surge.

    python train.py                                   # PPO on double11_2013, then the evaluation table
    python train.py --algo ppo --scenario double11_2013 --timesteps 1e6 --n-envs 16 --seed 0 --out short/
    python train.py --algo dqn --hyperparams learning_rate=5e-4 exploration_fraction=0.2
    python train.py --out short/ --resume             # continue the same run from its last checkpoint
    python train.py --scenario double11_2016 --init-model runs/ppo-double11_2013-seed0 --out ft/
    python train.py --residual success_rate_router --residual-scale 0.3   # a correction to the router's actions

A run lives in ``<out>/<algo>-<scenario>-seed<seed>/``: ``config.json`` (every resolved setting),
``model.zip`` and ``vecnormalize.pkl`` (the final agent), ``best_model.zip`` (best periodic evaluation),
``checkpoints/``, ``tb/`` (TensorBoard) and ``evaluations.npz``. Hyper-parameters come from
``agents/hyperparams/<algo>.yml`` (RL Zoo's format: RL Zoo trains on the same files); ``--hyperparams
key=value`` overrides them. Training environments are
seeded ``seed .. seed + n_envs - 1``; periodic evaluation uses seeds from 2,000,000 and the final table seeds
from ``--eval-seed`` (1000), all disjoint. Ctrl-C saves a checkpoint and exits; ``--resume`` picks it up.
"""

from __future__ import annotations

import argparse
import os

from agents.algorithms import ALGOS
from agents.training import FINAL_EVAL_EPISODES, FINAL_EVAL_SEED, TrainRequest, UsageError, run_training
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--algo", default="ppo", help=f"one of {', '.join(ALGOS)}")
    p.add_argument("--scenario", default="double11_2013",
                   help="built-in scenario name or TOML path; a mixture file trains on several (docs/TRAINING.md)")
    p.add_argument("--timesteps", type=float, default=None, help="total environment steps (default: YAML)")
    p.add_argument("--n-envs", type=int, default=None, help="parallel environments (default: YAML)")
    p.add_argument("--seed", type=int, default=0, help="training seed (environments seed .. seed+n_envs-1)")
    p.add_argument("--out", default="runs", help="folder for runs")
    p.add_argument("--action-mode", default=None, help="continuous, multidiscrete or discrete (default: algo's)")
    p.add_argument("--hyperparams", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="override YAML settings (may be given more than once)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument(
        "--init-model",
        default=None,
        metavar="PATH",
        help="start a new run from this model's weights and VecNormalize statistics (fine-tuning, curricula)",
    )
    p.add_argument(
        "--residual",
        default=None,
        metavar="HEURISTIC",
        help="learn a correction to this heuristic's actions instead of a policy from scratch (success_rate_router)",
    )
    p.add_argument("--residual-scale", type=float, default=None, metavar="X",
                   help="largest correction, in (0, 1] (default 1)")  # fmt: skip
    p.add_argument("--eval-freq", type=int, default=None,
                   help="env steps between evaluations (default: YAML, or a tenth of the run)")  # fmt: skip
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=FINAL_EVAL_EPISODES,
        help="episodes in the final table",
    )
    p.add_argument(
        "--eval-seed",
        type=int,
        default=FINAL_EVAL_SEED,
        help="first seed of the final table",
    )
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the envs use the other core)")
    p.add_argument(
        "--trust-model",
        action="store_true",
        help="let --init-model / --resume read files whose pickles run code (older runs, other tools); only yours",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_training(TrainRequest(**vars(args)))
    except UsageError as exc:
        return fail("train.py", exc)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run(main, "train.py")
