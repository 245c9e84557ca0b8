"""A run folder on disk: creating it, its checkpoints (model, VecNormalize statistics, replay buffer), finding the
newest one to resume from.

A run lives in ``<out>/<algo>-<scenario>-seed<seed>/``: ``config.json`` (every resolved setting),
``model.zip`` and ``vecnormalize.pkl`` (the final agent), ``best_model.zip`` (best periodic evaluation),
``checkpoints/``, ``tb/`` (TensorBoard), ``evaluations.npz`` and ``learning_curve.npz``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from .config import UsageError

__all__ = [
    "checkpoint_file",
    "continue_replay_buffer",
    "first_new_folder",
    "last_checkpoint",
    "prepare_run_dir",
    "save_checkpoint",
]


def prepare_run_dir(config: dict[str, Any], resume: bool) -> Path:
    run_dir = Path(config["run_dir"])
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to output folder {run_dir}: {exc.strerror or exc}") from None
    if not resume and (run_dir / "config.json").exists():
        if any((run_dir / "checkpoints").iterdir()):
            raise UsageError(f"{run_dir} already holds a run; use --resume to continue it or another --out/--seed")
        # a run killed before its first checkpoint: nothing to resume, and its logs must not mix with a new run's
        raise UsageError(
            f"{run_dir} holds a run stopped before its first checkpoint (nothing to resume); delete the folder "
            "or use another --out/--seed"
        )
    return run_dir


def checkpoint_file(run_dir: Path, steps: int, part: str = "") -> Path:
    """A checkpoint's file at ``steps``: the model (``part`` empty), or its ``vecnormalize`` statistics or
    ``replay_buffer``, named as SB3's CheckpointCallback names them (``agents.deciders`` reads that naming)."""
    name = f"rl_model_{part}_{steps}_steps.pkl" if part else f"rl_model_{steps}_steps.zip"
    return run_dir / "checkpoints" / name


def last_checkpoint(run_dir: Path) -> tuple[Path, Path | None, int]:
    """The newest checkpoint of a run: (model zip, VecNormalize pickle or None, its timestep count)."""
    found = []
    for path in (run_dir / "checkpoints").glob("rl_model_*_steps.zip"):
        m = re.fullmatch(r"rl_model_(\d+)_steps\.zip", path.name)
        if m:
            found.append((int(m.group(1)), path))
    if not found:
        raise UsageError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    steps, model_path = max(found)
    stats = checkpoint_file(run_dir, steps, "vecnormalize")
    return model_path, stats if stats.exists() else None, steps


def save_checkpoint(model: BaseAlgorithm, env: VecEnv, run_dir: Path) -> Path:
    """Save the model and VecNormalize statistics under checkpoints/ at the current timestep.

    Off-policy algorithms (SAC, TD3, DQN) also save their replay buffer, so that ``--resume`` continues
    learning from the same experience. A buffer takes hundreds of MB, so only the newest is kept.
    """
    steps = model.num_timesteps
    path = checkpoint_file(run_dir, steps)
    model.save(path)
    if isinstance(env, VecNormalize):
        env.save(str(checkpoint_file(run_dir, steps, "vecnormalize")))
    if getattr(model, "replay_buffer", None) is not None:
        buffer = checkpoint_file(run_dir, steps, "replay_buffer")
        partial = buffer.with_suffix(".tmp")  # written whole, then renamed: a kill mid-write leaves no torn file
        with open(partial, "wb") as fh:
            model.save_replay_buffer(fh)
        os.replace(partial, buffer)
        for older in (run_dir / "checkpoints").glob("rl_model_replay_buffer_*_steps.pkl"):
            if older != buffer:
                older.unlink()
    return path


def continue_replay_buffer(model: BaseAlgorithm, buffer: Path) -> int:
    """Load a checkpoint's replay buffer into ``model``; return how many transitions it holds.

    The newest transition of each environment was cut off by the checkpoint, not ended: it is marked as a
    time-out, so that n-step returns (``NStepReplayBuffer``) do not run on into the fresh episodes that the
    resumed run appends after it (SB3 marks that row only while it samples, for the newest row of the run).
    """
    model.load_replay_buffer(buffer)
    rb = model.replay_buffer
    if rb.pos > 0 or rb.full:
        last = (rb.pos - 1) % rb.buffer_size
        rb.timeouts[last] = np.logical_or(rb.timeouts[last], np.logical_not(rb.dones[last]))
    return rb.size() * rb.n_envs


def first_new_folder(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what a refused run must remove), or ``None``."""
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path
