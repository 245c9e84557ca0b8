"""Reinforcement-learning training: the hyper-parameter files (``hyperparams``), the run's settings
(``config``), networks, residual corrections, where a fresh policy starts (``status_quo``), run folders and
checkpoints, callbacks, and the whole run (``run``: ``run_training`` is ``python train.py`` from Python)."""

from .config import FINAL_EVAL_EPISODES, FINAL_EVAL_SEED, PERIODIC_EVAL_SEED, TrainRequest, UsageError, resolve_config
from .run import final_table, run_training, train

__all__ = [
    "FINAL_EVAL_EPISODES",
    "FINAL_EVAL_SEED",
    "PERIODIC_EVAL_SEED",
    "TrainRequest",
    "UsageError",
    "final_table",
    "resolve_config",
    "run_training",
    "train",
]
