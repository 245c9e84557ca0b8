"""Run a study on Ray Tune: every trial a ``train.py`` run, then the aggregate of ``agents.studies.aggregate``.

``run_study(spec)`` starts an embedded local Ray (``ray.init()`` on this machine, trials limited to its cores)
or joins a cluster (``address="auto"``, ``"ray://host:10001"``). The trials (``trial_points``: the sampled
settings drawn once, every seed training the same draw) are Tune's grid; a study folder that exists is
continued with ``resume=True`` (Tune's restore: finished trials are not run again). When the trials are done,
the heuristics and the fluid bound are measured on every world, on the same evaluation episodes, and the
aggregate is written beside the trials.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from agents.deciders import HEURISTICS
from agents.evaluation import evaluate_policies
from agents.evaluation.names import slug

from .aggregate import aggregate, markdown_table, write_aggregate
from .spec import StudyError, StudySpec
from .trial import run_trial

__all__ = ["connect", "run_study", "trial_points", "trial_settings"]

TOKEN_FILE = Path.home() / ".ray" / "auth_token"  # where ray start --head keeps its authentication token
REPORT_EVERY_S = 60  # the status table's period (and once at the end)


def trial_points(spec: StudySpec, chosen: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every trial of the study: algorithms x scenarios x grid points x sampled points x seeds.

    The sampled settings are drawn here, once per sample (from the study's own seeded generator), and every
    seed trains the same draw: a policy's runs differ by their seed only. ``chosen`` (an Optuna search's
    result, per algorithm and scenario) replaces the draws by one choice each.
    """
    rng = np.random.default_rng(spec.search.seed)
    draws = []
    for _ in range(spec.search.samples if chosen is None else 0):
        draw = {}
        for key, (sampler, args) in spec.search.sample.items():
            if sampler == "choice":
                draw[key] = args[int(rng.integers(len(args)))]
            elif sampler == "uniform":
                draw[key] = float(rng.uniform(args[0], args[1]))
            else:  # loguniform
                draw[key] = float(np.exp(rng.uniform(np.log(args[0]), np.log(args[1]))))
        draws.append(draw)
    grid = [
        dict(zip(spec.search.grid, values, strict=True)) for values in itertools.product(*spec.search.grid.values())
    ]
    points = []
    for algorithm, scenario, fixed, drawn, seed in itertools.product(
        spec.algorithms, spec.scenarios, grid, draws or [{}], spec.seeds
    ):
        if chosen is not None:
            drawn = chosen[(algorithm, scenario)]
        searched = {**fixed, **drawn}
        label = algorithm + (f"@{scenario}" if len(spec.scenarios) > 1 else "")
        if searched:
            label += "[" + ",".join(f"{k}={_short(v)}" for k, v in sorted(searched.items())) + "]"
        points.append(
            {"label": label, "algorithm": algorithm, "scenario": scenario, "seed": seed, "searched": searched}
        )
    return points


def trial_settings(point: dict[str, Any], spec: StudySpec) -> dict[str, Any]:
    """What ``run_trial`` needs: the trial's point and the study's fixed settings."""
    return {
        "algorithm": point["algorithm"], "scenario": point["scenario"], "seed": point["seed"],
        "timesteps": spec.timesteps, "n_envs": spec.n_envs, "eval_episodes": spec.eval_episodes,
        "hyperparams": {**spec.hyperparams, **point["searched"]}, "worlds": list(spec.worlds),
        "episodes": spec.episodes, "eval_seed": spec.seed,
    }  # fmt: skip


def _trial_name(trial: Any) -> str:
    """``ppo_learning_rate_0.000433_-seed0``: what Tune shows and names the trial's folder."""
    point = trial.config["trial"]
    return f"{slug(point['label'])}-seed{point['seed']}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def connect(address: str | None) -> None:
    """Start local Ray (``None``) or join the cluster at ``address``; an unreachable one is a ``StudyError``."""
    if address not in (None, "auto"):  # a host:port or ray://host:port: reachable? (Ray retries for minutes)
        parsed = urlparse(address if "://" in address else f"tcp://{address}")
        if not parsed.hostname or not parsed.port:
            raise StudyError(f"--address {address!r}: expected auto, host:port or ray://host:port")
        try:
            socket.create_connection((parsed.hostname, parsed.port), timeout=5).close()
        except OSError as exc:
            raise StudyError(f"--address {address}: cannot reach it ({exc.strerror or exc})") from None
    if ray.is_initialized():  # a notebook's (or an earlier study's) Ray
        return
    if address is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    try:  # the repository travels to the cluster's workers (they may not have payroute installed)
        root = Path(__file__).resolve().parents[2]
        runtime_env = {"working_dir": str(root), "excludes": ["runs/", "studies/", "results/", ".venv*/", ".git/"]}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = ""
        if address.startswith("ray://") and "RAY_AUTH_MODE" not in os.environ and TOKEN_FILE.exists():
            # ray start --head turns token authentication on when ~/.ray/auth_token exists, but a Ray client
            # sends the token only when told to (ray-project/ray#64755): its connection then times out
            hint = " (if the cluster uses token authentication, run with RAY_AUTH_MODE=token)"
        raise StudyError(f"--address {address}: {' '.join(str(exc).split())[:300]}{hint}") from None


def run_study(
    spec: StudySpec, out: str | Path = "studies", address: str | None = None, resume: bool = False
) -> tuple[dict[str, Any], list[Path]]:
    """Run (or with ``resume`` continue) ``spec``'s trials and write its aggregate into ``out/<name>/``.

    With ``search.searcher: optuna`` an Optuna search (Tune's ``OptunaSearch``) first picks, per algorithm and
    scenario, the sampled settings with the lowest failed-payment rate on train.py's own table (the first seed,
    ``search.samples`` trials); then every seed trains that choice. Returns the aggregate and the files written.
    """
    folder = Path(out).resolve() / spec.name
    recorded = folder / "spec.json"
    if recorded.exists() and not resume:
        raise StudyError(f"{folder} holds a study already: pass --resume to continue it, or another --out")
    if resume and not recorded.exists():
        raise StudyError(f"--resume: {folder} holds no study to continue")
    settings = {k: v for k, v in dataclasses.asdict(spec).items() if k != "source"}
    if resume:  # the same study, or the finished trials would be mixed with another study's
        before = json.loads(recorded.read_text(encoding="utf-8"))
        changed = sorted(k for k in settings if json.dumps(settings[k]) != json.dumps(before.get(k)))
        if changed:
            raise StudyError(f"--resume: {spec.source} differs from the study in {folder} ({', '.join(changed)})")
    connect(address)
    folder.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(settings, indent=1), encoding="utf-8")
    chosen = _optuna_choices(spec, folder) if spec.search.searcher == "optuna" else None
    grid = _fit(
        folder / "trials",
        lambda: tune.Tuner(
            _with_runs(spec, folder / "runs"),
            param_space={"trial": tune.grid_search(trial_points(spec, chosen))},
            tune_config=_tune_config(trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=_run_config(folder, "trials"),
        ),
        _with_runs(spec, folder / "runs"),
    )
    trained: dict[str, dict[str, list[list[float]]]] = {}
    # Tune lists the trials in the order they finished (which a resumed study changes): sort by seed so that a
    # policy's runs are rows in one order and the aggregate is the same however the trials were scheduled
    for result in sorted(grid, key=lambda r: (r.config["trial"]["label"], r.config["trial"]["seed"])):
        label = result.config["trial"]["label"]
        for world, rates in result.metrics["worlds"].items():
            trained.setdefault(world, {}).setdefault(label, []).append(list(rates))
    heuristics, bounds = {}, {}
    for world in spec.worlds:  # the heuristics and the bound, once per world, on the trials' episodes
        print(f"heuristics and the fluid bound on {world} ...", file=sys.stderr)
        measured = evaluate_policies(world, list(HEURISTICS), episodes=spec.episodes, seed=spec.seed, progress=False,
                                     timeline=False)  # fmt: skip
        heuristics[world] = {p.name: [e["failed_payment_rate"] for e in p.episodes] for p in measured.policies}
        bounds[world] = measured.bound["failed_payment_rate"] if measured.bound else float("nan")
    matrices = {w: {k: np.asarray(v) for k, v in by_label.items()} for w, by_label in trained.items()}
    result = aggregate(matrices, heuristics, bounds)
    result["study"] = {"name": spec.name, "source": spec.source, "trials": len(grid), "worlds": list(spec.worlds)}
    if chosen is not None:
        result["study"]["optuna_choices"] = [{"algorithm": a, "scenario": c, **v} for (a, c), v in chosen.items()]
    files = write_aggregate(result, folder)
    print(markdown_table(result))
    return result, files


def _with_runs(spec: StudySpec, runs: Path) -> Any:
    """The trainable Tune runs: one trial, its train.py run in ``runs/<label>/`` (one TensorBoard tree)."""

    def trainable(config: dict[str, Any]) -> None:
        point = config["trial"]
        tune.report(run_trial(trial_settings(point, spec), runs / slug(point["label"])))

    return tune.with_resources(trainable, {"cpu": 1})


def _tune_config(**kwargs: Any) -> Any:
    return tune.TuneConfig(metric="failed_payment_rate", mode="min", **kwargs)


def _run_config(folder: Path, name: str) -> Any:
    return tune.RunConfig(
        name=name,
        storage_path=str(folder),
        verbose=1,  # the study's status table only, not each trial's config and result
        progress_reporter=tune.CLIReporter(
            metric_columns={"failed_payment_rate": "failed", "time_total_s": "seconds"},
            parameter_columns=[],  # the trial's name says its algorithm, settings and seed
            max_report_frequency=REPORT_EVERY_S,
            print_intermediate_tables=False,
        ),
        failure_config=tune.FailureConfig(fail_fast=True),
        sync_config=tune.SyncConfig(sync_artifacts=False),  # the runs are written where they stay
    )


def _fit(path: Path, new_tuner: Any, trainable: Any) -> Any:
    """Fit the experiment at ``path``: restored if it was started (finished trials stay), else ``new_tuner()``."""
    # Tune's newer console output prints every trial's config and result as tables (25 lines a trial);
    # its CLIReporter (the output Ray client connections use anyway) prints the study's status once a minute
    engine = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = engine if engine is not None else "0"
    try:
        if tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        else:
            tuner = new_tuner()
        grid = tuner.fit()
    finally:
        if engine is None:
            del os.environ["RAY_AIR_NEW_OUTPUT"]
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise StudyError(f"{len(errors)} trial(s) failed; the first: {' '.join(str(errors[0]).split())[:300]}")
    return grid


def _optuna_choices(spec: StudySpec, folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (algorithm, scenario), the sampled settings an Optuna search found best on the first seed."""
    samplers = {"loguniform": tune.loguniform, "uniform": tune.uniform}
    chosen = {}
    for algorithm, scenario in itertools.product(spec.algorithms, spec.scenarios):
        name = f"search-{slug(algorithm)}-{slug(scenario)}"
        space = {
            key: tune.choice(args) if sampler == "choice" else samplers[sampler](*args)
            for key, (sampler, args) in spec.search.sample.items()
        }

        def trainable(config: dict[str, Any], algorithm: str = algorithm, scenario: str = scenario) -> None:
            searched = {key: config[key] for key in spec.search.sample}
            label = f"{algorithm}-search[{','.join(f'{k}={_short(v)}' for k, v in sorted(searched.items()))}]"
            point = {"label": label, "algorithm": algorithm, "scenario": scenario, "seed": spec.seeds[0],
                     "searched": searched}  # fmt: skip
            settings = {**trial_settings(point, spec), "worlds": []}  # the worlds' episodes stay unseen
            tune.report(run_trial(settings, folder / "search_runs" / slug(label)))

        resources = tune.with_resources(trainable, {"cpu": 1})
        grid = _fit(
            folder / name,
            lambda space=space, resources=resources, name=name: tune.Tuner(
                resources,
                param_space=space,
                tune_config=_tune_config(
                    search_alg=OptunaSearch(seed=spec.search.seed), num_samples=spec.search.samples
                ),
                run_config=_run_config(folder, name),
            ),
            resources,
        )
        best = grid.get_best_result(metric="failed_payment_rate", mode="min")
        chosen[(algorithm, scenario)] = {key: best.config[key] for key in spec.search.sample}
    return chosen
