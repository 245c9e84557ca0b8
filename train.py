"""Train a stable-baselines3 agent to route and throttle payments during the surge.

    python train.py                                   # PPO on double11_2013, then the evaluation table
    python train.py --algo ppo --scenario double11_2013 --timesteps 1e6 --n-envs 16 --seed 0 --out short/
    python train.py --algo dqn --hyperparams learning_rate=5e-4 exploration_fraction=0.2
    python train.py --out short/ --resume             # continue the same run from its last checkpoint
    python train.py --scenario double11_2016 --init-model runs/ppo-double11_2013-seed0 --out ft/

A run lives in ``<out>/<algo>-<scenario>-seed<seed>/``: ``config.json`` (every resolved setting),
``model.zip`` and ``vecnormalize.pkl`` (the final agent), ``best_model.zip`` (best periodic evaluation),
``checkpoints/``, ``tb/`` (TensorBoard) and ``evaluations.npz``. Hyper-parameters come from
``agents/hyperparams/<algo>.yml``; ``--hyperparams key=value`` overrides them. Training environments are
seeded ``seed .. seed + n_envs - 1``; periodic evaluation uses seeds from 2,000,000 and the final table seeds
from ``--eval-seed`` (1000), all disjoint. Ctrl-C saves a checkpoint and exits; ``--resume`` picks it up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from payroute_env._cli import OneLineArgumentParser, fail, one_line, run

PERIODIC_EVAL_SEED = 2_000_000  # periodic evaluation seeds start here (training uses seed .. seed + n_envs)
FINAL_EVAL = {"--eval-seed": 1000, "--eval-episodes": 20}  # the final table's seeds by default: 1000-1019


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from agents.sb3 import ALGOS

    p = OneLineArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="ppo", help=f"one of {', '.join(ALGOS)} (default ppo)")
    p.add_argument("--scenario", default="double11_2013", help="built-in scenario name or TOML path")
    p.add_argument("--timesteps", type=float, default=None, help="total environment steps (default: YAML)")
    p.add_argument("--n-envs", type=int, default=None, help="parallel environments (default: YAML)")
    p.add_argument("--seed", type=int, default=0, help="training seed (environments seed .. seed+n_envs-1)")
    p.add_argument("--out", default="runs", help="folder for runs (default runs/)")
    p.add_argument("--action-mode", default=None, help="continuous, multidiscrete or discrete (default: algo's)")
    p.add_argument("--hyperparams", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="override YAML settings (may be given more than once)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument(
        "--init-model",
        default=None,
        metavar="PATH",
        help="start a new run from this model's weights and VecNormalize statistics (fine-tuning, curricula)",
    )
    p.add_argument("--eval-freq", type=int, default=None, help="env steps between periodic evaluations")
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=FINAL_EVAL["--eval-episodes"],
        help="episodes in the final table (default %(default)s)",
    )
    p.add_argument(
        "--eval-seed",
        type=int,
        default=FINAL_EVAL["--eval-seed"],
        help="first seed of the final table (default %(default)s)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: envs use the other core)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- config


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of the run, from the YAML file, the overrides and the command line."""
    from agents.sb3 import (
        ALGOS,
        COMPATIBLE_MODES,
        HyperparamError,
        action_noise,
        apply_overrides,
        check_hyperparams,
        check_normalize,
        is_whole_number,
        load_hyperparams,
    )
    from payroute_env import ScenarioError, load_scenario

    if args.algo not in ALGOS:
        raise UsageError(f"unknown algorithm {args.algo!r}; choose from {', '.join(ALGOS)}")
    try:
        scenario = load_scenario(args.scenario)
        hp = apply_overrides(load_hyperparams(args.algo, scenario.name), args.hyperparams)
    except (ScenarioError, HyperparamError) as exc:
        raise UsageError(str(exc)) from None
    yaml_mode = hp.pop("action_mode", None)
    action_mode = args.action_mode or yaml_mode or ALGOS[args.algo].action_mode
    if action_mode not in COMPATIBLE_MODES[args.algo]:
        raise UsageError(
            f"--algo {args.algo} cannot use action mode {action_mode!r}; it works with "
            f"{', '.join(COMPATIBLE_MODES[args.algo])}"
        )
    timesteps = args.timesteps if args.timesteps is not None else hp.pop("n_timesteps", 1_000_000)
    hp.pop("n_timesteps", None)
    n_envs = args.n_envs if args.n_envs is not None else hp.pop("n_envs", 8)
    hp.pop("n_envs", None)
    if not (isinstance(timesteps, int | float) and math.isfinite(timesteps) and timesteps > 0
            and timesteps == int(timesteps)):  # fmt: skip
        name = "--timesteps" if args.timesteps is not None else "n_timesteps"
        raise UsageError(f"{name} must be a positive whole number, got {timesteps!r}")
    if not (isinstance(n_envs, int) and n_envs >= 1):
        name = "--n-envs" if args.n_envs is not None else "n_envs"
        raise UsageError(f"{name} must be an integer >= 1, got {n_envs!r}")
    for flag, value, least in (("--seed", args.seed, 0), ("--eval-seed", args.eval_seed, 0),
                               ("--eval-episodes", args.eval_episodes, 1), ("--threads", args.threads, 1)):  # fmt: skip
        if value < least:
            raise UsageError(f"{flag} must be >= {least}, got {value}")
    if args.eval_freq is not None and args.eval_freq < 1:
        raise UsageError(f"--eval-freq must be >= 1 environment step, got {args.eval_freq}")
    noise_type, noise_std = hp.pop("noise_type", None), hp.pop("noise_std", None)
    try:
        action_noise(args.algo, noise_type, noise_std)
    except HyperparamError as exc:
        raise UsageError(str(exc)) from None
    residual, residual_scale = hp.pop("residual", None), hp.pop("residual_scale", 1.0)
    if residual is None and residual_scale != 1.0:
        raise UsageError(f"residual_scale = {residual_scale!r} needs residual (the heuristic to correct)")
    if residual is not None:
        from agents.residual import check_residual

        if action_mode != "continuous":
            raise UsageError(f"residual = {residual!r} needs the continuous action mode; this run uses {action_mode!r}")
        try:
            check_residual(residual, residual_scale)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.init_model is not None:
        if args.resume:
            raise UsageError("--init-model starts a new run from another model; --resume continues this run")
        from agents.policies import PolicyError, model_file

        try:  # a train.py run folder stands for its model.zip, as in evaluate.py
            args.init_model = str(model_file(args.init_model))
        except PolicyError as exc:
            raise UsageError(f"--init-model: {exc}") from None
        if not Path(args.init_model).is_file():
            raise UsageError(f"--init-model {args.init_model}: model file not found")
    yaml_freq, periodic_episodes = hp.pop("eval_freq", None), hp.pop("eval_episodes", 8)
    eval_freq = args.eval_freq or yaml_freq or max(int(timesteps) // 10, n_envs)
    for key, value in (("eval_freq", eval_freq), ("eval_episodes", periodic_episodes)):
        if not is_whole_number(value, 1):
            raise UsageError(f"{key} = {value!r}: expected a whole number >= 1")
    if not args.resume:  # a resumed run checks with its own settings (resumed_config)
        check_seeds(args.seed, int(n_envs), args.eval_seed, args.eval_episodes, int(periodic_episodes))
    policy_name = hp.pop("policy", "MlpPolicy")
    raw_policy_kwargs = hp.pop("policy_kwargs", {})
    env_kwargs = hp.pop("env_kwargs", {})
    normalize = hp.pop("normalize", False)
    status_quo = hp.pop("start_at_status_quo", False)
    if not isinstance(status_quo, bool):
        raise UsageError(f"start_at_status_quo = {status_quo!r}: expected true or false")
    try:  # what is left in hp goes to the algorithm
        check_normalize(normalize)
        check_hyperparams(args.algo, hp, policy_name, raw_policy_kwargs, env_kwargs)
    except HyperparamError as exc:
        raise UsageError(str(exc)) from None
    scenario_arg = str(args.scenario)
    run_name = f"{args.algo}-{scenario.name}-seed{args.seed}"
    return {
        "algo": args.algo,
        "scenario": scenario_arg,
        "scenario_name": scenario.name,
        "action_mode": action_mode,
        "timesteps": int(timesteps),
        "n_envs": int(n_envs),
        "seed": args.seed,
        "run_dir": str(Path(args.out) / run_name),
        "policy": policy_name,
        "policy_kwargs": raw_policy_kwargs,
        "normalize": normalize,
        "env_kwargs": env_kwargs,
        # a residual policy starts at its heuristic (zero correction), not at the status quo
        "start_at_status_quo": status_quo and residual is None,
        "residual": residual,
        "residual_scale": float(residual_scale) if residual is not None else None,
        "init_model": args.init_model,
        "noise_type": noise_type,
        "noise_std": noise_std,
        "algo_kwargs": hp,
        "eval_freq": int(eval_freq),
        "periodic_eval_episodes": int(periodic_episodes),
        "periodic_eval_seed": PERIODIC_EVAL_SEED,
        "final_eval_episodes": args.eval_episodes,
        "final_eval_seed": args.eval_seed,
        "threads": args.threads,
    }


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
    ``replay_buffer``, named as SB3's CheckpointCallback names them (``agents.policies`` reads that naming)."""
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


def check_seeds(seed: int, n_envs: int, eval_seed: int, eval_episodes: int, periodic_episodes: int) -> None:
    """Training seeds, the final table's and the periodic evaluations' seeds: in range and all disjoint.

    Checked before training, so that a bad ``--eval-seed`` cannot cost a whole run at the final table.
    """
    training, final = range(seed, seed + n_envs), range(eval_seed, eval_seed + eval_episodes)
    periodic = range(PERIODIC_EVAL_SEED, PERIODIC_EVAL_SEED + periodic_episodes)

    def meet(a: range, b: range) -> bool:
        return a.start < b.stop and b.start < a.stop

    if seed + n_envs > PERIODIC_EVAL_SEED:
        raise UsageError(
            f"--seed must be at most {PERIODIC_EVAL_SEED - n_envs} with {n_envs} environments (seeds from "
            f"{PERIODIC_EVAL_SEED:,} are the periodic evaluations'), got {seed}"
        )
    if eval_seed + eval_episodes > 2**64:
        raise UsageError(f"--eval-seed must be at most 2**64 - {eval_episodes} (seeds are 64-bit), got {eval_seed}")
    if meet(training, final):
        raise UsageError(
            f"training seeds {seed}..{training[-1]} overlap the evaluation seeds {eval_seed}..{final[-1]}; "
            "pick another --seed or --eval-seed"
        )
    if meet(final, periodic):
        raise UsageError(
            f"the final table's seeds {eval_seed}..{final[-1]} overlap the periodic evaluations' "
            f"{periodic.start}..{periodic[-1]}; pick another --eval-seed"
        )


def resumed_config(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The configuration of a resumed run: its own ``config.json``, with what the command decides now.

    From the command: the folder (a run may have been moved), the scenario file, the final table's seeds,
    the threads, and the timestep target if ``--timesteps`` is given. A training setting the command gives
    (``--hyperparams``, ``--n-envs``, ``--action-mode``, ``--eval-freq``) must repeat the run's own value:
    a run is one configuration; ``--init-model`` starts a new one. Settings the command leaves out come
    from ``config.json``, whatever the YAML files say now.
    """
    from agents.sb3 import apply_overrides

    saved_file = Path(config["run_dir"]) / "config.json"
    if not saved_file.exists():
        return config  # no config.json: train() reports the missing checkpoint
    try:
        saved = json.loads(saved_file.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: cannot read {saved_file}: {one_line(exc)}") from None
    missing = [k for k in ("algo", "seed", "n_envs", "algo_kwargs") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise UsageError(f"--resume: {saved_file} is not a train.py configuration (no {', '.join(missing)})")
    given = apply_overrides({}, args.hyperparams)  # which settings the command sets (resolve_config checked them)
    target_given = given.pop("n_timesteps", None) is not None
    for key, value in (("n_envs", args.n_envs), ("action_mode", args.action_mode), ("eval_freq", args.eval_freq)):
        if value is not None:
            given[key] = value
    # compare what this command resolves to (e.g. start_at_status_quo is off for a residual run) with the run's
    now = _settings_of(json.loads(json.dumps(config, default=str)))
    changed = _differences(given, now, _settings_of(saved))
    if changed:
        raise UsageError(
            f"--resume continues {config['run_dir']} with its own settings; this command changes "
            f"{'; '.join(changed)} (start a new run with --init-model instead)"
        )
    here = {k: config[k] for k in ("run_dir", "scenario", "final_eval_episodes", "final_eval_seed", "threads")}
    if args.timesteps is not None or target_given:
        here["timesteps"] = config["timesteps"]
    resumed = {**saved, **here}
    check_seeds(
        resumed["seed"],
        resumed["n_envs"],
        resumed["final_eval_seed"],
        resumed["final_eval_episodes"],
        resumed.get("periodic_eval_episodes", 8),
    )
    return resumed


def _settings_of(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved configuration keyed the way ``--hyperparams`` names its settings."""
    names = ("policy", "policy_kwargs", "normalize", "env_kwargs", "start_at_status_quo", "residual",
             "residual_scale", "noise_type", "noise_std", "n_envs", "action_mode", "eval_freq")  # fmt: skip
    return {**config.get("algo_kwargs", {}), **{k: config.get(k) for k in names},
            "eval_episodes": config.get("periodic_eval_episodes")}  # fmt: skip


def _differences(paths: dict[str, Any], now: dict[str, Any], saved: dict[str, Any], prefix: str = "") -> list[str]:
    """``key saved -> now`` for every setting named in ``paths`` (nested: dotted keys) whose values differ."""
    out = []
    for key, sub in paths.items():
        ours, theirs = now.get(key), saved.get(key)
        if isinstance(sub, dict) and isinstance(ours, dict) and isinstance(theirs, dict):
            out += _differences(sub, ours, theirs, f"{prefix}{key}.")
        elif ours != theirs:
            out.append(f"{prefix}{key} {theirs!r} -> {ours!r}")
    return out


# ---------------------------------------------------------------------------------------------- training


def make_env(config: dict[str, Any], n_envs: int, seed: int, training: bool):
    """SB3 vector env over the batched core, VecMonitor'ed, and normalised when the config says so."""
    from stable_baselines3.common.vec_env import VecNormalize

    from payroute_env.sb3_vec_env import make_sb3_vec_env

    env = make_sb3_vec_env(
        config["scenario"], n_envs, seed=seed, action_mode=config["action_mode"], **config.get("env_kwargs", {})
    )
    if config.get("residual"):  # the agent's actions become corrections to the heuristic's (agents/residual.py)
        from agents.residual import ResidualVecEnv, make_base

        env = ResidualVecEnv(env, make_base(config["residual"], config["scenario"]), config["residual_scale"])
    norm = config["normalize"]
    if norm:
        opts = {"norm_obs": True, "norm_reward": True} if norm is True else dict(norm)
        if not training:
            opts["norm_reward"] = False
        env = VecNormalize(env, training=training, gamma=config["algo_kwargs"].get("gamma", 0.99), **opts)
    return env


def save_checkpoint(model, env, run_dir: Path) -> Path:
    """Save the model and VecNormalize statistics under checkpoints/ at the current timestep.

    Off-policy algorithms (SAC, TD3, DQN) also save their replay buffer, so that ``--resume`` continues
    learning from the same experience. A buffer takes hundreds of MB, so only the newest is kept.
    """
    from stable_baselines3.common.vec_env import VecNormalize

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


def continue_replay_buffer(model, buffer: Path) -> int:
    """Load a checkpoint's replay buffer into ``model``; return how many transitions it holds.

    The newest transition of each environment was cut off by the checkpoint, not ended: it is marked as a
    time-out, so that n-step returns (``NStepReplayBuffer``) do not run on into the fresh episodes that the
    resumed run appends after it (SB3 marks that row only while it samples, for the newest row of the run).
    """
    import numpy as np

    model.load_replay_buffer(buffer)
    rb = model.replay_buffer
    if rb.pos > 0 or rb.full:
        last = (rb.pos - 1) % rb.buffer_size
        rb.timeouts[last] = np.logical_or(rb.timeouts[last], np.logical_not(rb.dones[last]))
    return rb.size() * rb.n_envs


def checkpoint_callback(env, run_dir: Path, every: int):
    """A callback that calls ``save_checkpoint`` every ``every`` calls (one call = one step of every env)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoints(BaseCallback):
        def _on_step(self) -> bool:
            if self.n_calls % every == 0:
                save_checkpoint(self.model, env, run_dir)
            return True

    return Checkpoints()


BEST_STATS = "best_model_vecnormalize.pkl"  # agents.policies finds <model>_vecnormalize.pkl beside <model>.zip


def kpi_eval_callback(eval_env, run_dir: Path, config: dict[str, Any], resumed_at: int | None = None):
    """SB3's EvalCallback (best_model.zip, evaluations.npz) that also tracks the failed-payment rate.

    Every evaluation replays the episodes seeded from ``periodic_eval_seed``. The rate of each evaluation
    (mean over its episodes, from ``info["episode_kpis"]``) goes to TensorBoard
    as ``eval/failed_payment_rate`` and to ``learning_curve.npz`` (timesteps, rates) for the plot.

    ``resumed_at`` (the checkpoint's timestep on ``--resume``) carries the run's earlier evaluations on:
    the curve and ``evaluations.npz`` keep those up to the checkpoint, and ``best_model.zip`` is replaced
    only by a model that beats every earlier evaluation.
    """
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

    class KpiEvalCallback(EvalCallback):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
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
                self.eval_env.seed(config["periodic_eval_seed"])
            keep_going = super()._on_step()
            if self._rates:
                rate = float(np.mean(self._rates))
                self.logger.record("eval/failed_payment_rate", rate)
                self.curve_steps.append(self.num_timesteps)
                self.curve_rates.append(rate)
                curve = {"timesteps": self.curve_steps, "failed_payment_rate": self.curve_rates}
                np.savez(run_dir / "learning_curve.npz", **curve)
            return keep_going

    class SaveBestStats(BaseCallback):
        """Save the VecNormalize statistics with every new ``best_model.zip`` (they drift as training goes on)."""

        def _on_step(self) -> bool:
            stats = self.model.get_vec_normalize_env()
            if stats is not None:
                stats.save(str(run_dir / BEST_STATS))
            return True

    callback = KpiEvalCallback(
        eval_env,
        callback_on_new_best=SaveBestStats(),
        n_eval_episodes=config["periodic_eval_episodes"],
        eval_freq=max(config["eval_freq"] // config["n_envs"], 1),
        best_model_save_path=str(run_dir),
        log_path=str(run_dir),
        deterministic=True,
        verbose=0,
    )
    if resumed_at is not None:
        _restore_evaluations(callback, run_dir, resumed_at)
    return callback


def _restore_evaluations(callback: Any, run_dir: Path, resumed_at: int) -> None:
    """Load a resumed run's earlier evaluations into ``callback`` (files that are missing are skipped)."""
    import numpy as np

    curve_file, evals_file = run_dir / "learning_curve.npz", run_dir / "evaluations.npz"
    if curve_file.exists():
        with np.load(curve_file) as curve:
            keep = curve["timesteps"] <= resumed_at
            callback.curve_steps = [int(t) for t in curve["timesteps"][keep]]
            callback.curve_rates = [float(r) for r in curve["failed_payment_rate"][keep]]
    if evals_file.exists():
        with np.load(evals_file) as evals:
            means = evals["results"].mean(axis=1)
            if (run_dir / "best_model.zip").exists() and len(means):
                callback.best_mean_reward = float(means.max())  # the score of the best_model.zip on disk
            keep = evals["timesteps"] <= resumed_at
            callback.evaluations_timesteps = [int(t) for t in evals["timesteps"][keep]]
            callback.evaluations_results = [list(r) for r in evals["results"][keep]]
            callback.evaluations_length = [list(n) for n in evals["ep_lengths"][keep]]


def start_from(model, env, path: Path) -> None:
    """Give a fresh ``model`` the weights (and ``env`` the VecNormalize statistics) of the model at ``path``.

    The two must be the same algorithm with the same network, spaces and residual settings; anything else
    is a ``UsageError`` naming the difference.
    """
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.policies import PolicyError, SB3Policy
    from agents.residual import MODEL_ATTRIBUTE

    try:  # the evaluator's loader: it detects the algorithm and finds the statistics saved beside the model
        loaded = SB3Policy(path)
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
    if isinstance(env, VecNormalize) and loaded.vecnormalize_path is not None:
        stats = VecNormalize.load(str(loaded.vecnormalize_path), env.venv)
        env.obs_rms, env.ret_rms = stats.obs_rms, stats.ret_rms


def train(config: dict[str, Any], resume: bool, progress: bool) -> Path:
    """Train (or resume) the agent; return the run folder. Raises KeyboardInterrupt after saving on Ctrl-C."""
    import torch
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.policies import NORMALISED_OBS_ATTRIBUTE, normalises_observations
    from agents.sb3 import action_noise, algo_class, load_model, policy_kwargs, schedules, start_at_status_quo

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
    if resume:
        model_path, stats_path, done_steps = last_checkpoint(run_dir)
        if stats_path is not None and isinstance(env, VecNormalize):
            try:
                env = VecNormalize.load(str(stats_path), env.venv)
            except Exception as exc:  # a truncated or foreign pickle
                raise UsageError(f"--resume: cannot read {stats_path}: {exc}") from None
            env.training = True
        try:
            model = load_model(config["algo"], model_path, env=env, device="cpu", tensorboard_log=str(run_dir / "tb"))
        except Exception as exc:  # zip, pickle or space mismatch: all mean the checkpoint is unusable
            raise UsageError(f"--resume: cannot load checkpoint {model_path}: {exc}") from None
        buffer, note = checkpoint_file(run_dir, done_steps, "replay_buffer"), ""
        if getattr(model, "replay_buffer", None) is not None:
            if buffer.exists():
                try:
                    transitions = continue_replay_buffer(model, buffer)
                except Exception as exc:  # a foreign or damaged pickle
                    raise UsageError(
                        f"--resume: cannot read {buffer} ({one_line(exc, limit=120)}); delete it to resume with an "
                        "empty replay buffer"
                    ) from None
                note = f", with its replay buffer of {transitions} transitions"
            else:  # e.g. a run saved before buffers were kept: learning goes on, from fresh experience
                note = f"; no replay buffer saved with it ({buffer.name}), so the buffer starts empty"
        print(f"resuming {run_dir} from {model_path.name} ({done_steps} steps){note}")
    if config["timesteps"] >= done_steps:  # resume: the new target (a finished run keeps its own)
        (run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
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
        if config.get("residual"):  # saved inside every zip, so agents.policies.load_policy rebuilds the pair
            from agents.residual import MODEL_ATTRIBUTE

            setattr(model, MODEL_ATTRIBUTE, {"base": config["residual"], "scale": config["residual_scale"]})
        if config.get("init_model"):
            start_from(model, env, Path(config["init_model"]))
    setattr(model, NORMALISED_OBS_ATTRIBUTE, normalises_observations(config["normalize"]))  # saved in every zip
    n_envs = config["n_envs"]
    callbacks = CallbackList(
        [
            checkpoint_callback(env, run_dir, every=max(config["eval_freq"] // n_envs, 1)),
            kpi_eval_callback(eval_env, run_dir, config, resumed_at=done_steps if resume else None),
        ]
    )
    remaining = config["timesteps"] - done_steps
    if remaining > 0:
        print(f"training {config['algo']} on {config['scenario_name']} for {remaining} steps -> {run_dir}", flush=True)
    else:  # a finished run resumed without a new --timesteps: keep it, re-save it, and show its table again
        print(f"{run_dir} already has {done_steps} steps (target {config['timesteps']}): nothing to train", flush=True)
    start = time.perf_counter()
    try:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=callbacks,
                reset_num_timesteps=not resume,
                progress_bar=progress,
                tb_log_name="run",
            )
    except KeyboardInterrupt:
        path = save_checkpoint(model, env, run_dir)
        scenario, out = shlex.quote(str(config["scenario"])), shlex.quote(str(run_dir.parent))
        seed = config["seed"]
        again = f"python train.py --algo {config['algo']} --scenario {scenario} --seed {seed} --out {out} --resume"
        for flag, key in (("--eval-seed", "final_eval_seed"), ("--eval-episodes", "final_eval_episodes")):
            if config[key] != FINAL_EVAL[flag]:  # the final table's seeds come from the command, not config.json
                again += f" {flag} {config[key]}"
        print(f"\ninterrupted at {model.num_timesteps} steps; checkpoint saved to {path}; continue with: {again}")
        raise
    minutes = (time.perf_counter() - start) / 60
    model.save(run_dir / "model.zip")
    if isinstance(env, VecNormalize):
        env.save(str(run_dir / "vecnormalize.pkl"))
    save_checkpoint(model, env, run_dir)
    if remaining > 0:
        steps, where = model.num_timesteps, run_dir / "model.zip"
        print(f"trained {config['algo']} for {steps} steps in {minutes:.1f} min; saved {where}")
    return run_dir


def final_table(config: dict[str, Any], run_dir: Path) -> None:
    """Evaluate the trained agent (``model.zip``, and ``best_model.zip`` if periodic evaluation kept one)
    against every heuristic and the bound on the final-table seeds.

    The same evaluator as ``evaluate.py`` (``agents.evaluation``); results go to ``<run>/evaluation/`` and
    the learning curve, with the status quo, the best heuristic and the bound, to ``learning_curve.png``.
    """
    import numpy as np

    from agents.baselines import HEURISTICS
    from agents.evaluation import evaluate_policies, print_results_table, write_results
    from agents.plots import plot_learning_curve

    models = [str(run_dir / "model.zip")]
    if (run_dir / "best_model.zip").exists():  # the best periodic evaluation, with its own statistics
        models.append(str(run_dir / "best_model.zip"))
    result = evaluate_policies(
        config["scenario"],
        [*models, *HEURISTICS],
        episodes=config["final_eval_episodes"],
        seed=config["final_eval_seed"],
        progress=sys.stderr.isatty(),
    )
    print_results_table(result)
    files = write_results(result, run_dir / "evaluation")
    rates = {r.name: r.summary["failed_payment_rate"] for r in result.policies}
    best = result.reference  # the best heuristic: every policy is compared with it episode by episode
    references = {"admit_all": rates["admit_all"], f"best heuristic ({best})": rates[best]}
    if result.bound is not None:
        references["fluid bound"] = result.bound["failed_payment_rate"]
    curve_file = run_dir / "learning_curve.npz"
    if curve_file.exists():
        curve = np.load(curve_file)
        label = f"{config['algo']} (periodic evaluation)"
        title = f"{config['algo']} on {config['scenario_name']}"
        curves = {label: (curve["timesteps"], curve["failed_payment_rate"])}
        files.append(plot_learning_curve(curves, run_dir / "learning_curve.png", references, title))
    print(f"wrote {', '.join(str(f) for f in files)}")


def _first_new_folder(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what a refused run must remove), or ``None``."""
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    new_folder: Path | None = None
    try:
        config = resolve_config(args)
        if args.resume:
            config = resumed_config(config, args)
        new_folder = _first_new_folder(Path(config["run_dir"]))
        run_dir = train(config, args.resume, progress=not args.no_progress and sys.stderr.isatty())
    except UsageError as exc:
        if new_folder is not None and not any(Path(config["run_dir"], "checkpoints").glob("*")):
            shutil.rmtree(new_folder, ignore_errors=True)  # a refused run leaves no folder behind
        return fail("train.py", exc)
    except KeyboardInterrupt:
        return 130
    if not args.no_eval:
        final_table(config, run_dir)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run(main)
