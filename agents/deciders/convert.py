"""Convert model files saved before ``agents.model_files`` (pickled settings, ``.pkl`` statistics) once, so that
they load without ``--trust-model`` from then on.

    python -m agents.deciders.convert runs/ppo-double11_2013-seed0        # every model of a run folder
    python -m agents.deciders.convert models/ppo.zip other/best_model.zip

Each model is read the old way (its pickles run: convert only files you trust), then written back in place with
its blueprint and its VecNormalize statistics inside (``agents.model_files.save_model``), whole or not at all.
The ``.pkl`` files beside it are left where they are and no longer read; delete them when you like. A run
folder's pickled replay buffers (``checkpoints/rl_model_replay_buffer_<steps>_steps.pkl``) are written beside
them as the ``.npz`` arrays that ``train.py --resume`` reads without trust.
"""

from __future__ import annotations

from pathlib import Path

from agents.model_files import ModelFileError, read_pickled_replay_buffer, save_model, write_replay_buffer
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run

from .policy import PolicyError
from .trained import SB3Policy

__all__ = ["convert", "main", "models_in", "replay_buffers_in"]


def models_in(path: Path) -> list[Path]:
    """``path`` itself if a file, else a train.py run folder's models (final, best, every checkpoint)."""
    if not path.is_dir():
        return [path]
    found = [p for p in (path / "model.zip", path / "best_model.zip") if p.is_file()]
    found += sorted((path / "checkpoints").glob("rl_model_*_steps.zip"))
    if not found:
        raise PolicyError(f"{path}: a folder without model.zip, best_model.zip or checkpoints/*.zip")
    return found


def replay_buffers_in(path: Path) -> list[Path]:
    """A run folder's pickled replay buffers not converted yet (none for a model file)."""
    if not path.is_dir():
        return []
    pickled = sorted((path / "checkpoints").glob("rl_model_replay_buffer_*_steps.pkl"))
    return [p for p in pickled if not p.with_suffix(".npz").exists()]


def convert(path: str | Path) -> list[Path]:
    """Rewrite every model at ``path`` (a zip or a run folder) in the format that loads without trust, and write
    a run folder's pickled replay buffers as arrays; return the files written."""
    written = []
    for model_path in models_in(Path(path)):
        policy = SB3Policy(model_path, trust=True)
        save_model(policy.model, model_path, statistics=policy.statistics)
        written.append(model_path)
    for pickled in replay_buffers_in(Path(path)):
        try:
            buffer = read_pickled_replay_buffer(pickled)
        except ModelFileError as exc:
            raise PolicyError(str(exc)) from None
        write_replay_buffer(buffer, pickled.with_suffix(".npz"))
        written.append(pickled.with_suffix(".npz"))
    return written


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(
        prog="python -m agents.deciders.convert",
        description="Convert model files once so that they load without --trust-model (their pickles run now).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("paths", nargs="+", help="model .zip files or train.py run folders")
    args = p.parse_args(argv)
    try:
        for path in args.paths:
            for done in convert(path):
                print(f"converted {done}")
    except PolicyError as exc:
        return fail("python -m agents.deciders.convert", exc)
    return 0


if __name__ == "__main__":
    run(main, "python -m agents.deciders.convert")
