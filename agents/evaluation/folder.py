"""``python evaluate.py`` from Python: check the request, evaluate, print the table, write a results folder.

:func:`evaluate_to_folder` finds out before a long evaluation that the results cannot be written, and a
refused or interrupted call leaves no empty folder behind. Bad input raises :class:`EvaluationError` with a
one-line message naming the setting.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agents.algorithms import ALGOS
from agents.deciders import Policy, PolicyError, available_policies
from payroute_env.scenario import BUILTIN_SCENARIOS, Scenario, ScenarioError, load_scenario

from .html_report import REPORT_FILE, write_report
from .plots import plot_all
from .report import print_results_table, write_results
from .runner import EvaluationResult, evaluate_policies

__all__ = ["EvaluationError", "evaluate_to_folder", "print_catalog"]


class EvaluationError(ValueError):
    """An evaluation that cannot run or whose results cannot be written; the message is one line."""


def _check(episodes: int, seed: int, bound_layer_s: float, policies: Sequence[object]) -> None:
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise EvaluationError(f"--episodes must be at least 1; got {episodes}")
    if not 0 <= seed <= 2**64 - episodes:  # seeds are 64-bit: the last episode's must fit too
        raise EvaluationError(
            f"--seed must be in [0, 2**64 - {episodes}] ({episodes} episode seeds from it); got {seed}"
        )
    if not 0 < bound_layer_s < math.inf:
        raise EvaluationError(f"--bound-layer-s must be a finite number of seconds > 0; got {bound_layer_s:g}")
    if not policies:
        raise EvaluationError("--policies is empty")


def _writable(out: Path) -> Path | None:
    """Create ``out`` (or raise); return the outermost folder created, to remove if nothing gets written."""
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out {out} exists and is not a folder")
    new_folder = None if out.exists() else out
    while new_folder is not None and not new_folder.parent.exists():
        new_folder = new_folder.parent
    try:  # find out now, not after a long evaluation, that the results cannot be written
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".payroute_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EvaluationError(f"cannot write results to {out}: {exc}") from None
    return new_folder


def evaluate_to_folder(
    scenario: str | Path | Scenario,
    policies: Sequence[str | Path | Policy],
    out: str | Path,
    *,
    episodes: int = 20,
    seed: int = 1000,
    bound: bool = True,
    bound_layer_s: float = 60.0,
    reference: str | None = None,
    plots: bool = True,
    progress: bool = True,
    show_table: bool = True,
    video: bool = False,
    report: bool = False,
    command: str = "",
    trust_models: bool = False,
) -> tuple[EvaluationResult, list[Path]]:
    """Evaluate ``policies`` on seeds ``seed .. seed + episodes - 1`` and write ``results.json``,
    ``results.csv``, (``plots``) the PNG figures, (``video``) each policy's first episode as
    ``video_<policy>.mp4`` and (``report``) ``report.html``, naming ``command``, into ``out``; return the
    result and the files written. The report embeds the figures, drawn for it even without ``plots``.
    ``trust_models``: load model files that carry pickles (code that runs as they load)."""
    _check(episodes, seed, bound_layer_s, policies)
    if isinstance(out, str) and not out.strip():  # Path("") is the current folder: never what was meant
        raise EvaluationError("--out is empty; name the folder for the results")
    try:
        checked = load_scenario(scenario)  # checked once, here; a Scenario passes through
    except ScenarioError as exc:
        raise EvaluationError(str(exc)) from None
    out = Path(out)
    new_folder = _writable(out)
    files: list[Path] = []
    try:
        try:
            result = evaluate_policies(
                checked,
                list(policies),
                episodes=episodes,
                seed=seed,
                bound=bound,
                bound_layer_s=bound_layer_s,
                progress=progress,
                reference=reference,
                video_dir=out if video else None,
                trust_models=trust_models,
            )
        except (PolicyError, ScenarioError, ValueError) as exc:
            raise EvaluationError(str(exc)) from None
        if show_table:
            print_results_table(result)
        try:
            files = write_results(result, out)
            if plots:
                files += plot_all(result, out)
            if report:
                with tempfile.TemporaryDirectory() as drawn:  # the plots above, or drawn for the report alone
                    figures = [f for f in (files if plots else plot_all(result, drawn)) if f.suffix == ".png"]
                    files.append(write_report(result, checked, figures, out / REPORT_FILE, command))
            if video:
                files += sorted(out.glob("video_*.mp4"))
        except OSError as exc:
            raise EvaluationError(f"cannot write results to {out}: {exc}") from None
    finally:
        if new_folder is not None and not files:  # a refused or interrupted call leaves no empty folders
            shutil.rmtree(new_folder, ignore_errors=True)
    return result, files


def print_catalog() -> None:
    """The built-in scenarios and policies, as ``evaluate.py --list`` shows them."""
    console = Console()
    t = Table(title="scenarios (--scenario NAME, or a path to a TOML file)")
    t.add_column("name")
    t.add_column("description")
    for name in BUILTIN_SCENARIOS:
        t.add_row(name, load_scenario(name).description)
    console.print(t)
    t = Table(title="policies (--policies a,b,c)")
    t.add_column("name")
    t.add_column("description")
    for name, desc in available_policies().items():
        t.add_row(name, desc)
    t.add_row("PATH.zip", f"a trained stable-baselines3 model ({', '.join(ALGOS)}); VecNormalize stats beside it")
    console.print(t)
