"""What runs beside ``model.learn``: checkpoints, and periodic evaluations that track the failed-payment rate."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from tqdm import tqdm

from agents.deciders.residual import MODEL_ATTRIBUTE
from agents.model_files import save_model, write_npz

from .checkpoints import save_checkpoint
from .residual import ResidualVecEnv
from .status_quo import start_at_status_quo

__all__ = [
    "EVALUATIONS",
    "Checkpoints",
    "CtrlCStops",
    "KpiEvalCallback",
    "RecordResidual",
    "SaveBest",
    "StartAtStatusQuo",
    "TrainingProgress",
    "ctrl_c_ignored",
    "kpi_eval_callback",
    "planned_steps",
]

EVALUATIONS = "evaluations.npz"  # SB3's name for the periodic evaluations (timesteps, results, ep_lengths)


class Checkpoints(BaseCallback):
    """Call ``save_checkpoint`` every ``every`` calls (one call = one step of every env)."""

    def __init__(self, env: VecEnv, run_dir: Path, every: int) -> None:
        super().__init__()
        self.env, self.run_dir, self.every = env, run_dir, every

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            save_checkpoint(self.model, self.env, self.run_dir)
        return True


class CtrlCStops(BaseCallback):
    """Ctrl-C ends ``model.learn`` at the next step instead of raising inside it.

    Python raises ``KeyboardInterrupt`` wherever the main thread happens to be: inside numba's compiler (which
    can swallow it, so training goes on), a TensorBoard write, or a half-written file. Used as a context
    manager around ``learn``, this callback makes the first Ctrl-C only set ``requested``; ``_on_step`` then
    stops training at a step boundary, and the caller saves. A second Ctrl-C raises ``KeyboardInterrupt`` as
    usual, for a run that does not reach its next step. Outside the main thread (where signal handlers cannot
    be installed) it does nothing and Ctrl-C behaves as Python's default.
    """

    def __init__(self) -> None:
        super().__init__()
        self.requested = False
        self._previous: Any = None

    def _on_ctrl_c(self, signum: int, frame: object) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the second Ctrl-C interrupts at once
        print("\nCtrl-C: stopping at the next step to save a checkpoint (Ctrl-C again to abort at once)", flush=True)

    def __enter__(self) -> CtrlCStops:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_ctrl_c)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _on_step(self) -> bool:
        return not self.requested


@contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Ctrl-C does nothing inside the block (a save it interrupted would leave a torn file); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class KpiEvalCallback(EvalCallback):
    """SB3's EvalCallback (best_model.zip, evaluations.npz) that also tracks the failed-payment rate.

    Every evaluation replays the episodes seeded from ``periodic_eval_seed``. The rate of each evaluation
    (mean over its episodes, from ``info["episode_kpis"]``) goes to TensorBoard as ``eval/failed_payment_rate``
    and to ``<run_dir>/learning_curve.npz`` (timesteps, rates) for the plot.
    """

    def __init__(self, *args: Any, run_dir: Path, periodic_eval_seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_dir, self.periodic_eval_seed = run_dir, periodic_eval_seed
        # SB3 records evaluations only with a log_path, and writes them there in place, where a kill can tear
        # them: it writes a scratch copy, and _on_step writes evaluations.npz whole (write_npz) instead
        if self.log_path is not None:
            self.log_path = str(run_dir / ".evaluations.sb3")
        self._saved_evaluations = 0
        self._rates: list[float] = []
        self.curve_steps: list[int] = []
        self.curve_rates: list[float] = []

    def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        super()._log_success_callback(locals_, globals_)
        info = locals_["info"]
        if locals_["done"] and "episode_kpis" in info:
            self._rates.append(float(info["episode_kpis"]["failed_payment_rate"]))

    def _on_step(self) -> bool:
        self._rates = []
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            # every evaluation plays the same episodes (the same worlds, on a randomised scenario), so that
            # evaluations compare the policy and not the draw; otherwise the env continues its random stream
            self.eval_env.seed(self.periodic_eval_seed)
        keep_going = super()._on_step()
        if self._rates:
            rate = float(np.mean(self._rates))
            self.logger.record("eval/failed_payment_rate", rate)
            self.curve_steps.append(self.num_timesteps)
            self.curve_rates.append(rate)
            curve = {"timesteps": self.curve_steps, "failed_payment_rate": self.curve_rates}
            write_npz(self.run_dir / "learning_curve.npz", **curve)
        if len(self.evaluations_timesteps) != self._saved_evaluations:
            self._saved_evaluations = len(self.evaluations_timesteps)
            Path(self.log_path + ".npz").unlink(missing_ok=True)  # SB3's copy, written in place (see __init__)
            write_npz(
                self.run_dir / EVALUATIONS,
                timesteps=self.evaluations_timesteps,
                results=self.evaluations_results,
                ep_lengths=self.evaluations_length,
            )
        return keep_going

    def restore(self, resumed_at: int) -> None:
        """Load a resumed run's earlier evaluations (files that are missing are skipped).

        The curve and ``evaluations.npz`` keep those up to the checkpoint's timestep ``resumed_at``, and
        ``best_model.zip`` is replaced only by a model that beats every earlier evaluation.
        """
        curve_file, evals_file = self.run_dir / "learning_curve.npz", self.run_dir / EVALUATIONS
        try:
            if curve_file.exists():
                with np.load(curve_file, allow_pickle=False) as curve:
                    keep = curve["timesteps"] <= resumed_at
                    self.curve_steps = [int(t) for t in curve["timesteps"][keep]]
                    self.curve_rates = [float(r) for r in curve["failed_payment_rate"][keep]]
        except Exception as exc:  # noqa: BLE001 - torn or foreign: the curve goes on from here
            print(f"--resume: {curve_file.name} is unreadable ({type(exc).__name__}); the learning curve restarts here")
            self.curve_steps, self.curve_rates = [], []
        try:
            if evals_file.exists():
                with np.load(evals_file, allow_pickle=False) as evals:
                    means = evals["results"].mean(axis=1)
                    keep = evals["timesteps"] <= resumed_at
                    timesteps = [int(t) for t in evals["timesteps"][keep]]
                    results = [list(r) for r in evals["results"][keep]]
                    lengths = [list(n) for n in evals["ep_lengths"][keep]]
                if (self.run_dir / "best_model.zip").exists() and len(means):
                    self.best_mean_reward = float(means.max())  # the score of the best_model.zip on disk
                self.evaluations_timesteps, self.evaluations_results = timesteps, results
                self.evaluations_length = lengths
        except Exception as exc:  # noqa: BLE001 - torn or foreign: earlier evaluations are left out
            print(f"--resume: {evals_file.name} is unreadable ({type(exc).__name__}); earlier evaluations are left out")


class SaveBest(BaseCallback):
    """Save every new ``best_model.zip`` with the VecNormalize statistics of that moment inside (they drift as
    training goes on), as one file renamed into place."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def _on_step(self) -> bool:
        save_model(self.model, self.run_dir / "best_model.zip", self.model.get_vec_normalize_env())
        return True


def kpi_eval_callback(
    eval_env: VecEnv, run_dir: Path, config: dict[str, Any], resumed_at: int | None = None
) -> KpiEvalCallback:
    """The run's periodic evaluation (``config``'s episodes and frequency); ``resumed_at`` (the checkpoint's
    timestep on ``--resume``) carries the run's earlier evaluations on."""
    callback = KpiEvalCallback(
        eval_env,
        run_dir=run_dir,
        periodic_eval_seed=config["periodic_eval_seed"],
        callback_on_new_best=SaveBest(run_dir),
        n_eval_episodes=config["periodic_eval_episodes"],
        eval_freq=max(config["eval_freq"] // config["n_envs"], 1),
        best_model_save_path=None,  # SaveBest writes it whole, with its statistics
        log_path=str(run_dir),
        deterministic=True,
        verbose=0,
    )
    if resumed_at is not None:
        callback.restore(resumed_at)
    return callback


def planned_steps(model: Any, remaining: int) -> int:
    """How many steps ``model.learn(remaining)`` will take: SB3 finishes the rollout (on-policy: ``n_steps`` of
    every env) or the ``train_freq`` block of steps it is in, so a target is rounded up to whole ones."""
    block = model.n_envs
    if isinstance(model, OnPolicyAlgorithm):
        block *= model.n_steps
    elif isinstance(model, OffPolicyAlgorithm) and model.train_freq.unit == TrainFrequencyUnit.STEP:
        block *= model.train_freq.frequency
    return math.ceil(remaining / block) * block


def _duration(seconds: float) -> str:
    """``45 s``, ``12.3 min`` or ``2.1 h``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class TrainingProgress(BaseCallback):
    """Where the run is: a progress bar on a terminal, else a line at every periodic evaluation (steps, speed,
    time elapsed and left, the evaluation's failed-payment rate), so a run under ``nohup``, in CI or piped to
    a file shows it is alive. The bar counts to the steps the run will really take (``planned_steps``)."""

    def __init__(self, evaluation: KpiEvalCallback, planned: int, label: str, bar: bool) -> None:
        super().__init__()
        self.evaluation, self.planned, self.label, self.bar = evaluation, planned, label, bar
        self._bar: Any = None

    def _on_training_start(self) -> None:
        self._start_time, self._start_steps = time.perf_counter(), self.model.num_timesteps
        self._end = self._start_steps + self.planned
        self._evaluations = len(self.evaluation.curve_steps)
        if self.bar:
            self._bar = tqdm(total=self._end, initial=self._start_steps, unit="step", unit_scale=True,
                             desc=self.label, dynamic_ncols=True)  # fmt: skip

    def _on_step(self) -> bool:
        if self._bar is not None:
            self._bar.update(self.model.num_timesteps - self._bar.n)
        elif len(self.evaluation.curve_steps) > self._evaluations:
            self._evaluations = len(self.evaluation.curve_steps)
            print(self.line(self.evaluation.curve_rates[-1]), flush=True)
        return True

    def line(self, rate: float) -> str:
        """``ppo on double11_2013: 1,204,224/6,004,736 steps (20%), 15,230 steps/s, 1.3 min, 5.2 min left;
        evaluation: 6.12% failed``."""
        steps, elapsed = self.model.num_timesteps, time.perf_counter() - self._start_time
        speed = (steps - self._start_steps) / elapsed if elapsed > 0 else 0.0
        left = (self._end - steps) / speed if speed > 0 else math.nan
        return (
            f"{self.label}: {steps:,}/{self._end:,} steps ({100 * steps / self._end:.0f}%), {speed:,.0f} steps/s, "
            f"{_duration(elapsed)}, {_duration(left)} left; evaluation: {100 * rate:.2f}% failed"
        )

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.total = max(self._bar.total, self._bar.n)
            self._bar.close()


# ------------------------------------------------------------------------- hooks a hyper-parameter file names
# RL Zoo builds these from a file's ``callback`` key; train.py reads the same key and does the same itself.


def _untrained(model: Any) -> bool:
    """A model no gradient step has touched yet (not one loaded to continue: RL Zoo's ``--trained-agent``)."""
    return getattr(model, "_n_updates", 0) == 0


class StartAtStatusQuo(BaseCallback):
    """Before a fresh model's first step, centre its policy on the 2013 status quo (``start_at_status_quo``)."""

    def _on_training_start(self) -> None:
        if _untrained(self.model):
            n_banks = self.training_env.get_attr("scenario")[0].n_banks
            start_at_status_quo(self.model, n_banks)

    def _on_step(self) -> bool:
        return True


class RecordResidual(BaseCallback):
    """Save the residual's settings (its heuristic and scale) in the model trained through a ``ResidualVecEnv``,
    so that ``agents.deciders.load_policy`` rebuilds heuristic + correction from the model file alone."""

    def _on_training_start(self) -> None:
        env = self.training_env
        while isinstance(env, VecEnvWrapper) and not isinstance(env, ResidualVecEnv):
            env = env.venv
        if not isinstance(env, ResidualVecEnv) or env.base_name is None:
            raise ValueError("RecordResidual needs the vec_env_wrapper agents.training.residual.ResidualVecEnv")
        setattr(self.model, MODEL_ATTRIBUTE, {"base": env.base_name, "scale": env.scale})

    def _on_step(self) -> bool:
        return True
