"""Training a stable-baselines3 agent end to end: build the environments and the model (or resume one), learn with
checkpoints and periodic evaluations, save the agent, then evaluate it against every heuristic and the bound.

``run_training(TrainRequest(...))`` is all of ``python train.py``, callable from a notebook; ``train`` and
``final_table`` are its two halves.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from agents.algorithms import algo_class
from agents.deciders import HEURISTICS, PolicyError, SB3Policy
from agents.deciders.residual import MODEL_ATTRIBUTE, make_base
from agents.deciders.trained import NORMALISED_OBS_ATTRIBUTE, normalises_observations
from agents.evaluation import evaluate_policies, print_results_table, write_results
from agents.evaluation.plots import plot_learning_curve
from agents.model_files import ModelFileError, apply_statistics, save_model, write_json
from payroute_env._cli import one_line
from payroute_env.sb3_vec_env import make_sb3_vec_env

from .callbacks import Checkpoints, CtrlCStops, TrainingProgress, ctrl_c_ignored, kpi_eval_callback, planned_steps
from .checkpoints import (
    checkpoint_file,
    continue_replay_buffer,
    first_new_folder,
    last_checkpoint,
    prepare_run_dir,
    remove_partial_files,
    save_checkpoint,
)
from .config import FINAL_EVAL_EPISODES, FINAL_EVAL_SEED, TrainRequest, UsageError, resolve_config, resumed_config
from .hyperparams import action_noise, policy_kwargs, schedules
from .memory import check_training_memory
from .mixture import ConcatVecEnv, ScaleRewards, split_envs, training_worlds
from .residual import ResidualVecEnv
from .status_quo import start_at_status_quo

__all__ = ["final_table", "make_env", "run_training", "start_from", "train"]


def make_env(config: dict[str, Any], n_envs: int, seed: int, training: bool) -> VecEnv:
    """SB3 vector env over the batched core, VecMonitor'ed, and normalised when the config says so.

    On a mixture (``agents.training.mixture``) each member scenario gets its share of the ``n_envs``
    environments (seeded ``seed + i`` in the order of the whole) and its own residual heuristic; they are
    stepped as one ``ConcatVecEnv`` and normalised together; training rewards are scaled per member first where
    the mixture gives a ``reward_scale``.
    """
    worlds = training_worlds(config["scenario"])
    counts = split_envs(worlds.weights, n_envs)
    members = []
    for scenario, count, offset in zip(worlds.members, counts, np.cumsum([0, *counts]).tolist(), strict=False):
        env = make_sb3_vec_env(scenario, count, seed=seed + offset, action_mode=config["action_mode"],
                               monitor=worlds.is_single, **config.get("env_kwargs", {}))  # fmt: skip
        if config.get("residual"):  # actions become corrections to the heuristic's (agents.deciders.residual)
            env = ResidualVecEnv(env, make_base(config["residual"], scenario), config["residual_scale"])
        members.append(env)
    env = members[0] if worlds.is_single else VecMonitor(ConcatVecEnv(members))  # SB3 looks for it on top
    if worlds.reward_scales is not None:  # after the monitor: its episode returns stay unscaled
        # evaluation keeps the rewards as they are, under the same wrapper: SB3's EvalCallback copies the
        # normalisation statistics by walking the training and evaluation wrappers side by side
        scales = np.repeat(worlds.reward_scales, counts) if training else np.ones(sum(counts))
        env = ScaleRewards(env, scales.tolist())
    norm = config["normalize"]
    if norm:
        opts = {"norm_obs": True, "norm_reward": True} if norm is True else dict(norm)
        if not training:
            opts["norm_reward"] = False
        env = VecNormalize(env, training=training, gamma=config["algo_kwargs"].get("gamma", 0.99), **opts)
    return env


def start_from(model: BaseAlgorithm, env: VecEnv, path: Path, trust: bool = False) -> None:
    """Give a fresh ``model`` the weights (and ``env`` the VecNormalize statistics) of the model at ``path``.

    The two must be the same algorithm with the same network, spaces and residual settings; anything else
    is a ``UsageError`` naming the difference. ``trust``: the file may run code as it loads (its pickles).
    """
    try:  # the evaluator's loader: it detects the algorithm and finds the statistics saved with the model
        loaded = SB3Policy(path, trust=trust)
    except PolicyError as exc:
        raise UsageError(f"--init-model: {exc}") from None
    source = loaded.model
    if type(source) is not type(model):
        theirs, ours = type(source).__name__, type(model).__name__
        raise UsageError(f"--init-model: {path} is a {theirs} model; this run trains {ours}")
    theirs, ours = getattr(source, MODEL_ATTRIBUTE, None), getattr(model, MODEL_ATTRIBUTE, None)
    if theirs != ours:
        raise UsageError(f"--init-model: {path} was trained with residual settings {theirs}, this run uses {ours}")
    if source.observation_space != model.observation_space or source.action_space != model.action_space:
        raise UsageError(
            f"--init-model: {path} sees {source.observation_space} and acts in {source.action_space}; "
            f"this run sees {model.observation_space} and acts in {model.action_space}"
        )
    theirs, ours = loaded.obs_rms is not None, isinstance(env, VecNormalize) and bool(env.norm_obs)
    if theirs != ours:  # the weights were fitted to the other kind of input
        said = {True: "normalised", False: "raw"}
        raise UsageError(
            f"--init-model: {path} was trained on {said[theirs]} observations; this run feeds {said[ours]} ones "
            "(set normalize as that run did)"
        )
    try:
        model.set_parameters(source.get_parameters(), exact_match=True, device="cpu")
    except Exception as exc:  # another net_arch or policy: the tensors do not fit
        raise UsageError(f"--init-model: {path} does not fit this run's network: {one_line(exc)}") from None
    if isinstance(env, VecNormalize) and loaded.statistics is not None:
        apply_statistics(env, loaded.statistics, str(loaded.vecnormalize_path))


def train(config: dict[str, Any], resume: bool, progress: bool) -> Path:
    """Train (or resume) the agent; return the run folder. Raises KeyboardInterrupt after saving on Ctrl-C."""
    torch.set_num_threads(config["threads"])
    run_dir = prepare_run_dir(config, resume)
    algo = algo_class(config["algo"])
    try:
        env = make_env(config, config["n_envs"], config["seed"], training=True)
        eval_env = make_env(config, config["periodic_eval_episodes"], config["periodic_eval_seed"], training=False)
    except (TypeError, ValueError) as exc:  # e.g. a negative reward weight, or a bad normalize option
        where = f"env_kwargs {config['env_kwargs']!r}, normalize {config['normalize']!r}"
        raise UsageError(f"cannot build the environments ({where}): {one_line(exc)}") from None
    done_steps = 0
    trust = bool(config.get("trust_model"))
    if resume:
        for leftover in remove_partial_files(run_dir):
            print(f"removed {leftover.name}, a file a kill left half-written")
        normalised = isinstance(env, VecNormalize)
        found = last_checkpoint(run_dir, config["algo"], normalised, trust, env=env, device="cpu",
                                tensorboard_log=str(run_dir / "tb"))  # fmt: skip
        for damaged, why in found.skipped:
            print(f"--resume: passed over {damaged.name}: {why}")
        model, done_steps = found.model, found.steps
        if normalised and found.statistics is not None:
            apply_statistics(env, found.statistics, str(found.path))
        note = ""
        if getattr(model, "replay_buffer", None) is not None:
            try:
                transitions = continue_replay_buffer(model, run_dir, done_steps, trust)
            except ModelFileError as exc:
                raise UsageError(f"--resume: {one_line(exc, limit=200)}") from None
            if transitions is None:  # e.g. the checkpoint before a damaged one: its buffer was not kept
                buffer = checkpoint_file(run_dir, done_steps, "replay_buffer")
                note = f"; no replay buffer saved with it ({buffer.name}), so the buffer starts empty"
            else:
                note = f", with its replay buffer of {transitions} transitions"
        print(f"resuming {run_dir} from {found.path.name} ({done_steps} steps){note}")
    if config["timesteps"] >= done_steps:  # resume: the new target (a finished run keeps its own)
        write_json(run_dir / "config.json", config)
    if not resume:
        extra = {}
        if config.get("noise_type"):
            n_actions = int(env.action_space.shape[0])
            extra["action_noise"] = action_noise(config["algo"], config["noise_type"], config["noise_std"], n_actions)
        try:  # SB3 checks the rest of the settings as it builds the model, before any training
            model = algo(
                config["policy"],
                env,
                seed=config["seed"],
                device="cpu",
                verbose=0,
                tensorboard_log=str(run_dir / "tb"),
                policy_kwargs=policy_kwargs(config["policy_kwargs"]),
                **schedules(config["algo_kwargs"]),
                **extra,
            )
        except (TypeError, ValueError, AssertionError, KeyError) as exc:
            raise UsageError(f"{config['algo']} rejects these settings: {one_line(exc)}") from None
        if config.get("start_at_status_quo"):
            start_at_status_quo(model, env.get_attr("n_banks")[0])
        if config.get("residual"):  # saved inside every zip, so agents.deciders.load_policy rebuilds the pair
            setattr(model, MODEL_ATTRIBUTE, {"base": config["residual"], "scale": config["residual_scale"]})
        if config.get("init_model"):
            start_from(model, env, Path(config["init_model"]), trust)
    setattr(model, NORMALISED_OBS_ATTRIBUTE, normalises_observations(config["normalize"]))  # saved in every zip
    remaining = config["timesteps"] - done_steps
    planned = planned_steps(model, remaining) if remaining > 0 else 0
    label = f"{config['algo']} on {config['scenario_name']}"
    evaluation = kpi_eval_callback(eval_env, run_dir, config, resumed_at=done_steps if resume else None)
    ctrl_c = CtrlCStops()
    callbacks = CallbackList(
        [
            ctrl_c,  # after a Ctrl-C its False ends learn() at this step (the others still see the step)
            Checkpoints(env, run_dir, every=max(config["eval_freq"] // config["n_envs"], 1)),
            evaluation,
            TrainingProgress(evaluation, planned, label, bar=progress),  # after the evaluation: it reports it
        ]
    )
    if remaining > 0:
        whole = f" ({planned:,} in whole rollouts)" if planned != remaining else ""
        print(f"training {label} for {remaining:,} steps{whole} -> {run_dir}", flush=True)
    else:  # a finished run resumed without a new --timesteps: keep it, re-save it, and show its table again
        print(f"{run_dir} already has {done_steps} steps (target {config['timesteps']}): nothing to train", flush=True)
    start = time.perf_counter()
    try:
        if remaining > 0:
            with ctrl_c:
                model.learn(
                    total_timesteps=remaining,
                    callback=callbacks,
                    reset_num_timesteps=not resume,
                    progress_bar=False,  # TrainingProgress: a bar to the steps SB3 will take, or lines
                    tb_log_name="run",
                )
        if ctrl_c.requested:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        with ctrl_c_ignored():
            path = save_checkpoint(model, env, run_dir)
        scenario, out = shlex.quote(str(config["scenario"])), shlex.quote(str(run_dir.parent))
        seed = config["seed"]
        again = f"python train.py --algo {config['algo']} --scenario {scenario} --seed {seed} --out {out} --resume"
        for flag, key, default in (
            ("--eval-seed", "final_eval_seed", FINAL_EVAL_SEED),
            ("--eval-episodes", "final_eval_episodes", FINAL_EVAL_EPISODES),
        ):
            if config[key] != default:  # the final table's seeds come from the command, not config.json
                again += f" {flag} {config[key]}"
        print(f"\ninterrupted at {model.num_timesteps} steps; checkpoint saved to {path}; continue with: {again}")
        raise
    minutes = (time.perf_counter() - start) / 60
    save_model(model, run_dir / "model.zip", env)  # with its statistics inside, as one file
    save_checkpoint(model, env, run_dir)
    if remaining > 0:
        steps, where = model.num_timesteps, run_dir / "model.zip"
        print(f"trained {config['algo']} for {steps} steps in {minutes:.1f} min; saved {where}")
    return run_dir


def final_table(config: dict[str, Any], run_dir: Path) -> None:
    """Evaluate the trained agent (``model.zip``, and ``best_model.zip`` if periodic evaluation kept one)
    against every heuristic and the bound on the final-table seeds; on a mixture, on each member in turn.

    The same evaluator as ``evaluate.py`` (``agents.evaluation``); results go to ``<run>/evaluation/``
    (``<run>/evaluation/<member>/`` on a mixture) and the learning curve, with the status quo, the best
    heuristic and the bound of a single scenario, to ``learning_curve.png``.
    """
    models = [str(run_dir / "model.zip")]
    if (run_dir / "best_model.zip").exists():  # the best periodic evaluation, with its own statistics
        models.append(str(run_dir / "best_model.zip"))
    worlds = training_worlds(config["scenario"])
    files: list[Path] = []
    references: dict[str, float] = {}
    for scenario in worlds.members:
        if not worlds.is_single:
            print(f"\n{scenario.name} (member of {worlds.name})")
        result = evaluate_policies(
            scenario,
            [*models, *HEURISTICS],
            episodes=config["final_eval_episodes"],
            seed=config["final_eval_seed"],
            progress=sys.stderr.isatty(),
            trust_models=bool(config.get("trust_model")),
        )
        print_results_table(result)
        files += write_results(result, run_dir / "evaluation" / ("" if worlds.is_single else scenario.name))
        if worlds.is_single:  # a mixture's curve pools its members: no one world's references fit it
            rates = {r.name: r.summary["failed_payment_rate"] for r in result.policies}
            best = result.reference  # the best heuristic: every policy is compared with it episode by episode
            references = {"admit_all": rates["admit_all"], f"best heuristic ({best})": rates[best]}
            if result.bound is not None:
                references["fluid bound"] = result.bound["failed_payment_rate"]
    curve_file = run_dir / "learning_curve.npz"
    try:
        with np.load(curve_file, allow_pickle=False) as curve:
            points = (curve["timesteps"], curve["failed_payment_rate"])
    except FileNotFoundError:
        points = None
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: the table stands without the plot
        print(f"{curve_file} is unreadable ({type(exc).__name__}); no learning-curve plot")
        points = None
    if points is not None:
        label = f"{config['algo']} (periodic evaluation)"
        title = f"{config['algo']} on {config['scenario_name']}"
        files.append(plot_learning_curve({label: points}, run_dir / "learning_curve.png", references, title))
    print(f"wrote {', '.join(str(f) for f in files)}")


def run_training(request: TrainRequest) -> Path:
    """Everything ``python train.py`` does: resolve the settings, train (or resume), then the final table.

    Returns the run folder. Bad settings raise :class:`UsageError` before anything trains, and a refused run
    leaves no folder behind; Ctrl-C saves a checkpoint and raises ``KeyboardInterrupt``.
    """
    config: dict[str, Any] | None = None
    new_folder: Path | None = None
    try:
        config = resolve_config(request)
        if request.resume:
            config = resumed_config(config, request)
        check_training_memory(config)  # before any folder, environment or buffer exists
        new_folder = first_new_folder(Path(config["run_dir"]))
        run_dir = train(config, request.resume, progress=not request.no_progress and sys.stderr.isatty())
    except UsageError:
        if new_folder is not None and config is not None and not any(Path(config["run_dir"], "checkpoints").glob("*")):
            shutil.rmtree(new_folder, ignore_errors=True)  # a refused run leaves no folder behind
        raise
    if not request.no_eval:
        final_table(config, run_dir)
    return run_dir
