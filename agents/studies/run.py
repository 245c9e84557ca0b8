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

from agents.deciders import HEURISTICS
from agents.evaluation import evaluate_policies
from agents.evaluation.names import slug

from .aggregate import aggregate, markdown_table, write_aggregate
from .spec import StudyError, StudySpec
from .trial import run_trial

__all__ = ["connect", "run_study", "trial_points", "trial_settings"]


def trial_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Every trial of the study: algorithms x scenarios x grid points x sampled points x seeds.

    The sampled settings are drawn here, once per sample (from the study's own seeded generator), and every
    seed trains the same draw: a policy's runs differ by their seed only.
    """
    rng = np.random.default_rng(spec.search.seed)
    draws = []
    for _ in range(spec.search.samples):
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
        spec.algorithms, spec.scenarios, grid, draws, spec.seeds
    ):
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
    if ray.is_initialized():
        return
    if address is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    if address != "auto":  # a host:port or ray://host:port: reachable at all? (Ray itself retries for minutes)
        parsed = urlparse(address if "://" in address else f"tcp://{address}")
        if not parsed.hostname or not parsed.port:
            raise StudyError(f"--address {address!r}: expected auto, host:port or ray://host:port")
        try:
            socket.create_connection((parsed.hostname, parsed.port), timeout=5).close()
        except OSError as exc:
            raise StudyError(f"--address {address}: cannot reach it ({exc.strerror or exc})") from None
    try:  # the repository travels to the cluster's workers (they may not have payroute installed)
        root = Path(__file__).resolve().parents[2]
        runtime_env = {"working_dir": str(root), "excludes": ["runs/", "studies/", "results/", ".venv*/", ".git/"]}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StudyError(f"--address {address}: {' '.join(str(exc).split())[:300]}") from None


def run_study(
    spec: StudySpec, out: str | Path = "studies", address: str | None = None, resume: bool = False
) -> tuple[dict[str, Any], list[Path]]:
    """Run (or with ``resume`` continue) ``spec``'s trials and write its aggregate into ``out/<name>/``.

    Returns the aggregate (``agents.studies.aggregate``) and the files written.
    """
    folder = Path(out).resolve() / spec.name
    trials_dir = folder / "trials"
    if trials_dir.exists() and not resume:
        raise StudyError(f"{folder} holds a study already: pass --resume to continue it, or another --out")
    if resume and not tune.Tuner.can_restore(str(trials_dir)):
        raise StudyError(f"--resume: {folder} holds no study to continue")
    recorded = folder / "spec.json"
    settings = {k: v for k, v in dataclasses.asdict(spec).items() if k != "source"}
    if resume:  # the same study, or the finished trials would be mixed with another study's
        before = json.loads(recorded.read_text(encoding="utf-8")) if recorded.exists() else {}
        changed = sorted(k for k in settings if json.dumps(settings[k]) != json.dumps(before.get(k)))
        if changed:
            raise StudyError(f"--resume: {spec.source} differs from the study in {folder} ({', '.join(changed)})")
    connect(address)
    folder.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(settings, indent=1), encoding="utf-8")

    runs = folder / "runs"  # train.py run folders, one tree (tensorboard --logdir <study>/runs)

    def trainable(config: dict[str, Any]) -> None:
        point = config["trial"]
        tune.report(run_trial(trial_settings(point, spec), runs / slug(point["label"])))

    resources = tune.with_resources(trainable, {"cpu": 1})
    if resume:
        tuner = tune.Tuner.restore(str(trials_dir), resources, resume_errored=True)
    else:
        tuner = tune.Tuner(
            resources,
            param_space={"trial": tune.grid_search(trial_points(spec))},
            tune_config=tune.TuneConfig(
                metric="failed_payment_rate",
                mode="min",
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name="trials",
                storage_path=str(folder),
                verbose=1,
                failure_config=tune.FailureConfig(fail_fast=True),
                sync_config=tune.SyncConfig(sync_artifacts=False),  # the runs are written where they stay
            ),
        )
    grid = tuner.fit()
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise StudyError(f"{len(errors)} trial(s) failed; the first: {' '.join(str(errors[0]).split())[:300]}")
    trained: dict[str, dict[str, list[list[float]]]] = {}
    for result in grid:
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
    files = write_aggregate(result, folder)
    print(markdown_table(result))
    return result, files
