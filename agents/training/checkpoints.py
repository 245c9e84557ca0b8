"""A run folder on disk: creating it, its checkpoints (model, VecNormalize statistics, replay buffer), finding the
newest one to resume from.

A run lives in ``<out>/<algo>-<scenario>-seed<seed>/``: ``config.json`` (every resolved setting),
``model.zip`` (the final agent, its VecNormalize statistics inside), ``best_model.zip`` (best periodic evaluation),
``checkpoints/``, ``tb/`` (TensorBoard), ``evaluations.npz`` and ``learning_curve.npz``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from agents.model_files import (
    ModelFileError,
    UntrustedModelError,
    load_replay_buffer,
    load_trained_model,
    read_statistics_file,
    save_model,
    save_replay_buffer,
)
from payroute_env._cli import one_line

from .config import UsageError

__all__ = [
    "Checkpoint",
    "checkpoint_file",
    "continue_replay_buffer",
    "first_new_folder",
    "last_checkpoint",
    "prepare_run_dir",
    "remove_partial_files",
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
    """A checkpoint's file at ``steps``: the model with its statistics (``part`` empty) or its ``replay_buffer``
    (``.npz``), named as SB3's CheckpointCallback names them (``agents.deciders`` reads that naming)."""
    name = f"rl_model_{part}_{steps}_steps.npz" if part else f"rl_model_{steps}_steps.zip"
    return run_dir / "checkpoints" / name


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint that loads: its model and statistics (``None``: the run does not normalise), its steps, and
    the damaged newer checkpoints passed over to reach it (``(file, why)``)."""

    model: BaseAlgorithm
    statistics: dict[str, Any] | None
    steps: int
    path: Path
    skipped: tuple[tuple[Path, str], ...]


def _steps_of(path: Path) -> int | None:
    m = re.fullmatch(r"rl_model_(\d+)_steps\.zip", path.name)
    return int(m.group(1)) if m else None


def last_checkpoint(run_dir: Path, algo: str, normalised: bool, trust: bool, **load_kwargs: Any) -> Checkpoint:
    """The newest checkpoint of a run that loads whole, with its statistics if the run normalises.

    A kill can no longer tear a checkpoint (each is one file, renamed into place whole), but a disk can, and
    files from before the blueprint need ``trust``: a checkpoint that fails is reported and the one before it
    tried. ``load_kwargs`` go to SB3's ``load`` (the environment, the TensorBoard folder).
    """
    found = sorted(
        ((s, p) for p in (run_dir / "checkpoints").glob("rl_model_*_steps.zip") if (s := _steps_of(p)) is not None),
        reverse=True,
    )
    if not found:
        raise UsageError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    skipped: list[tuple[Path, str]] = []
    for steps, path in found:
        try:
            model, stats = load_trained_model(path, algo, trust=trust, **load_kwargs)
            if stats is None and normalised:
                stats = _statistics_beside(run_dir, steps, trust)
        except ModelFileError as exc:
            skipped.append((path, one_line(exc, limit=200)))
            if isinstance(exc, UntrustedModelError):  # every older checkpoint is of the same kind: say why now
                raise UsageError(f"--resume: {one_line(exc, limit=300)}") from None
            continue
        return Checkpoint(model, stats, steps, path, tuple(skipped))
    raise UsageError(f"--resume: no checkpoint in {run_dir / 'checkpoints'} loads; the newest: {skipped[0][1]}")


def _statistics_beside(run_dir: Path, steps: int, trust: bool) -> dict[str, Any]:
    """A checkpoint's statistics saved beside it (``.pkl``, before they went inside the zip); missing ones make
    the checkpoint unusable: resuming with fresh statistics would feed the network inputs it never saw."""
    pkl = run_dir / "checkpoints" / f"rl_model_vecnormalize_{steps}_steps.pkl"
    if not pkl.exists():
        raise ModelFileError(
            f"{run_dir / 'checkpoints'}: the checkpoint at {steps} steps has no VecNormalize statistics"
        )
    return read_statistics_file(pkl, trust=trust)


def save_checkpoint(model: BaseAlgorithm, env: VecEnv, run_dir: Path) -> Path:
    """Save the model with its VecNormalize statistics under checkpoints/ at the current timestep, as one file.

    Off-policy algorithms (SAC, TD3, DQN) also save their replay buffer, so that ``--resume`` continues
    learning from the same experience. A buffer takes hundreds of MB, so only the newest is kept. Every file is
    written whole and renamed into place (``agents.model_files.write_atomically``): a kill leaves no torn file.
    """
    steps = model.num_timesteps
    path = save_model(model, checkpoint_file(run_dir, steps), env)
    if getattr(model, "replay_buffer", None) is not None:
        buffer = checkpoint_file(run_dir, steps, "replay_buffer")
        save_replay_buffer(model, buffer)
        for older in (run_dir / "checkpoints").glob("rl_model_replay_buffer_*_steps.*"):
            if older != buffer:
                older.unlink()
    return path


def continue_replay_buffer(model: BaseAlgorithm, run_dir: Path, steps: int, trust: bool) -> int | None:
    """Load the replay buffer saved with the checkpoint at ``steps`` into ``model``; return how many transitions
    it holds, or ``None`` if there is none (the buffer then starts empty).

    The newest transition of each environment was cut off by the checkpoint, not ended: it is marked as a
    time-out, so that n-step returns (``NStepReplayBuffer``) do not run on into the fresh episodes that the
    resumed run appends after it (SB3 marks that row only while it samples, for the newest row of the run).
    """
    buffer = checkpoint_file(run_dir, steps, "replay_buffer")
    pickled = buffer.with_suffix(".pkl")  # written before agents.model_files
    if buffer.exists():
        load_replay_buffer(model, buffer)
    elif pickled.exists():
        if not trust:
            raise UntrustedModelError(
                f"{pickled}: a pickled replay buffer, which runs code when read; pass --trust-model if it is yours, "
                "or delete it to resume with an empty buffer"
            )
        model.load_replay_buffer(pickled)
    else:
        return None
    rb = model.replay_buffer
    if rb.pos > 0 or rb.full:
        last = (rb.pos - 1) % rb.buffer_size
        rb.timeouts[last] = np.logical_or(rb.timeouts[last], np.logical_not(rb.dones[last]))
    return rb.size() * rb.n_envs


def remove_partial_files(run_dir: Path) -> list[Path]:
    """Delete what a killed write left (``.<name>.partial*``, see ``write_atomically``); return them."""
    partial = [p for p in run_dir.rglob(".*.partial*") if p.is_file()]
    for p in partial:
        p.unlink()
    return partial


def first_new_folder(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what a refused run must remove), or ``None``."""
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path
