"""One trial of a study: one ``train.py`` run through the library, then its model on every evaluation world.

``trial_request`` turns a trial's settings (what Ray Tune hands the trial) into the ``TrainRequest`` that
``python train.py`` would build from the equivalent command line, which ``train_command`` prints, so that any
trial can be re-run alone. ``run_trial`` is the function Tune runs: it trains (same configuration resolution,
same run folder, same final table), evaluates the model on the study's worlds on the study's own seeds and
reports the per-episode failed-payment rates. A trial interrupted after a checkpoint continues from it
(``train.py --resume``) when its study is resumed.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from agents.evaluation import evaluate_policies
from agents.training import TrainRequest, resolve_config, run_training

from .spec import RESIDUAL_HEURISTIC, RESIDUAL_PREFIX

__all__ = ["run_trial", "train_command", "trial_request"]


def trial_request(settings: dict[str, Any], out: str | Path) -> TrainRequest:
    """The ``TrainRequest`` of a trial: ``settings`` holds ``algorithm``, ``scenario``, ``seed``, ``timesteps``,
    ``n_envs``, ``eval_episodes`` and ``hyperparams`` (the study's and the search's, merged)."""
    algorithm = settings["algorithm"]
    residual = algorithm.startswith(RESIDUAL_PREFIX)
    return TrainRequest(
        algo=algorithm.removeprefix(RESIDUAL_PREFIX),
        scenario=settings["scenario"],
        timesteps=None if settings["timesteps"] is None else float(settings["timesteps"]),
        n_envs=None if settings["n_envs"] is None else int(settings["n_envs"]),
        seed=int(settings["seed"]),
        out=str(out),
        hyperparams=[f"{key}={json.dumps(value)}" for key, value in sorted(settings["hyperparams"].items())],
        residual=RESIDUAL_HEURISTIC if residual else None,
        eval_episodes=int(settings["eval_episodes"]),
        no_progress=True,
        threads=1,
    )


def train_command(request: TrainRequest) -> str:
    """The ``python train.py`` command line that runs ``request``."""
    argv = ["python", "train.py", "--algo", request.algo, "--scenario", request.scenario]
    if request.timesteps is not None:
        argv += ["--timesteps", f"{request.timesteps:g}"]
    if request.n_envs is not None:
        argv += ["--n-envs", str(request.n_envs)]
    argv += ["--seed", str(request.seed), "--eval-episodes", str(request.eval_episodes), "--out", request.out]
    if request.residual:
        argv += ["--residual", request.residual]
    if request.hyperparams:
        argv += ["--hyperparams", *request.hyperparams]
    return shlex.join(argv)


def run_trial(settings: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Train one agent and measure it; the returned metrics are what the trial reports to Tune.

    ``failed_payment_rate`` is the model's rate on train.py's final table (the training scenario, seeds 1000
    on): what a search compares, never the worlds' episodes, which only the study's aggregate reads.
    """
    request = trial_request(settings, out)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "command.txt").write_text(train_command(request) + "\n", encoding="utf-8")
    run_dir = Path(resolve_config(request)["run_dir"])
    if (run_dir / "config.json").exists():  # the trial was interrupted (the study is resumed): continue it
        if any((run_dir / "checkpoints").glob("*.zip")):
            request.resume = True
        else:  # stopped before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
    run_dir = run_training(request)
    model = run_dir / "model.zip"
    table = json.loads((run_dir / "evaluation" / "results.json").read_text(encoding="utf-8"))
    trained = next(p for p in table["policies"] if p["name"] == _model_name(model, table))
    worlds = {}
    for world in settings["worlds"]:
        result = evaluate_policies(
            world, [str(model)], episodes=int(settings["episodes"]), seed=int(settings["eval_seed"]),
            bound=False, progress=False, timeline=False,
        )  # fmt: skip
        worlds[world] = [e["failed_payment_rate"] for e in result.policies[0].episodes]
    return {
        "failed_payment_rate": trained["summary"]["failed_payment_rate"],
        "worlds": worlds,
        "run_dir": str(run_dir),
    }


def _model_name(model: Path, table: dict[str, Any]) -> str:
    """The final table's name for the run's model (the evaluator names a model by its path)."""
    names = [p["name"] for p in table["policies"]]
    for name in names:
        if name.endswith(str(model)) or name.endswith(model.name) and "best_model" not in name:
            return name
    raise ValueError(f"{model} is not in its run's final table ({', '.join(names)})")
