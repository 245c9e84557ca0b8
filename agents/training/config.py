"""A training run's settings: what a request (the command line, or a notebook) resolves to, checked before training.

``resolve_config`` merges ``agents/hyperparams/<algo>.yml``, the request's ``hyperparams`` overrides and its
options into one flat configuration (the run's ``config.json``); ``resumed_config`` gives a resumed run its own
saved settings back. Every problem is a :class:`UsageError` with a one-line message naming the setting.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.algorithms import ALGOS, COMPATIBLE_MODES
from agents.deciders import PolicyError, model_file
from agents.deciders.residual import check_residual
from payroute_env import ScenarioError
from payroute_env._cli import one_line

from .hyperparams import (
    HyperparamError,
    action_noise,
    apply_overrides,
    check_hyperparams,
    check_normalize,
    is_whole_number,
    load_hyperparams,
    payroute_hooks,
    read_zoo_expression,
)
from .mixture import MixtureError, split_envs, training_worlds

__all__ = [
    "FINAL_EVAL_EPISODES",
    "FINAL_EVAL_SEED",
    "PERIODIC_EVAL_SEED",
    "TrainRequest",
    "UsageError",
    "check_seeds",
    "resolve_config",
    "resumed_config",
]

PERIODIC_EVAL_SEED = 2_000_000  # periodic evaluation seeds start here (training uses seed .. seed + n_envs)
FINAL_EVAL_SEED, FINAL_EVAL_EPISODES = 1000, 20  # the final table's seeds by default: 1000-1019


class UsageError(Exception):
    """Bad settings (or a run folder that cannot take this run): one line for the user; train.py exits 2."""


MAX_THREADS = 1024  # torch threads: more than any CPU machine this trains on has cores


@dataclass
class TrainRequest:
    """What to train: train.py's command-line options, one field each (``None``: the YAML file's value).

    ``hyperparams`` are ``key=value`` overrides of the YAML settings (dotted keys reach into mappings).
    From Python: ``run_training(TrainRequest(algo="ppo", timesteps=100_000, out="runs"))``.
    """

    algo: str = "ppo"
    scenario: str = "double11_2013"
    timesteps: float | None = None
    n_envs: int | None = None
    seed: int = 0
    out: str = "runs"
    action_mode: str | None = None
    hyperparams: list[str] = field(default_factory=list)
    resume: bool = False
    init_model: str | None = None
    eval_freq: int | None = None
    eval_episodes: int = FINAL_EVAL_EPISODES
    eval_seed: int = FINAL_EVAL_SEED
    no_eval: bool = False
    no_progress: bool = False
    threads: int = 1
    residual: str | None = None  # train a correction to this heuristic (agents.deciders.residual)
    residual_scale: float | None = None  # its scale in (0, 1] (default 1)
    trust_model: bool = False  # --init-model / --resume may read files whose pickles run code (agents.model_files)


def _named_folder(folder: str, flag: str) -> str:
    """``folder``, unless empty (``Path("")`` is the current folder: never what was meant)."""
    if not str(folder).strip():
        raise UsageError(f"{flag} is empty; name the folder for runs")
    return folder


def resolve_config(args: TrainRequest) -> dict[str, Any]:
    """Every setting of the run, from the YAML file, the overrides and the request (the command line)."""
    if args.algo not in ALGOS:
        raise UsageError(f"unknown algorithm {args.algo!r}; choose from {', '.join(ALGOS)}")
    try:  # a scenario, or a mixture of them (agents.training.mixture)
        scenario = training_worlds(args.scenario)
        hp = apply_overrides(load_hyperparams(args.algo, scenario.name), args.hyperparams)
    except (ScenarioError, MixtureError, HyperparamError) as exc:
        raise UsageError(str(exc)) from None
    env_kwargs = hp.pop("env_kwargs", {})
    if not isinstance(env_kwargs, dict):
        raise UsageError(f"env_kwargs = {env_kwargs!r}: expected a mapping (e.g. env_kwargs.beta=0.0)")
    env_kwargs = dict(env_kwargs)
    yaml_mode = env_kwargs.pop("action_mode", None)  # RL Zoo passes env_kwargs to the env, action mode included
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
    if args.threads > MAX_THREADS:  # torch.set_num_threads overflows past a C int, and spawns what it is told to
        raise UsageError(f"--threads must be at most {MAX_THREADS}, got {args.threads}")
    if args.eval_freq is not None and args.eval_freq < 1:
        raise UsageError(f"--eval-freq must be >= 1 environment step, got {args.eval_freq}")
    noise_type, noise_std = hp.pop("noise_type", None), hp.pop("noise_std", None)
    try:
        action_noise(args.algo, noise_type, noise_std)
    except HyperparamError as exc:
        raise UsageError(str(exc)) from None
    try:  # payroute's own settings ride on RL Zoo's hooks
        hooks = payroute_hooks(hp.pop("callback", None), hp.pop("vec_env_wrapper", None))
    except HyperparamError as exc:
        raise UsageError(str(exc)) from None
    residual = args.residual if args.residual is not None else hooks.residual
    if residual is None and args.residual_scale is not None:
        raise UsageError(f"--residual-scale {args.residual_scale:g} needs --residual (the heuristic to correct)")
    residual_scale = args.residual_scale if args.residual_scale is not None else hooks.residual_scale
    if residual is not None:
        if action_mode != "continuous":
            raise UsageError(f"residual = {residual!r} needs the continuous action mode; this run uses {action_mode!r}")
        try:
            check_residual(residual, residual_scale)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    init_model = None
    if args.init_model is not None:
        if args.resume:
            raise UsageError("--init-model starts a new run from another model; --resume continues this run")
        try:  # a train.py run folder stands for its model.zip, as in evaluate.py
            init_model = str(model_file(args.init_model))
        except PolicyError as exc:
            raise UsageError(f"--init-model: {exc}") from None
        if not Path(init_model).is_file():
            raise UsageError(f"--init-model {init_model}: model file not found")
    yaml_freq, periodic_episodes = hp.pop("eval_freq", None), hp.pop("eval_episodes", 8)
    eval_freq = args.eval_freq or yaml_freq or max(int(timesteps) // 10, n_envs)
    for key, value in (("eval_freq", eval_freq), ("eval_episodes", periodic_episodes)):
        if not is_whole_number(value, 1):
            raise UsageError(f"{key} = {value!r}: expected a whole number >= 1")
    for what, count in (("--n-envs", n_envs), ("eval_episodes", periodic_episodes)):
        try:  # every member of a mixture needs an environment, in training and in the periodic evaluations
            split_envs(scenario.weights, int(count), what)
        except MixtureError as exc:
            raise UsageError(str(exc)) from None
    if not args.resume:  # a resumed run checks with its own settings (resumed_config)
        check_seeds(args.seed, int(n_envs), args.eval_seed, args.eval_episodes, int(periodic_episodes))
    policy_name = hp.pop("policy", "MlpPolicy")
    raw_policy_kwargs = hp.pop("policy_kwargs", {})
    normalize = hp.pop("normalize", False)
    status_quo = hooks.start_at_status_quo
    try:  # what is left in hp goes to the algorithm
        if _zoo_form(raw_policy_kwargs):  # RL Zoo's "dict(...)" form, read without running it
            raw_policy_kwargs = read_zoo_expression(raw_policy_kwargs, "policy_kwargs")
        if _zoo_form(normalize):
            normalize = read_zoo_expression(normalize, "normalize")
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
        "run_dir": str(Path(_named_folder(args.out, "--out")) / run_name),
        "policy": policy_name,
        "policy_kwargs": raw_policy_kwargs,
        "normalize": normalize,
        "env_kwargs": env_kwargs,
        # a residual policy starts at its heuristic (zero correction), not at the status quo
        "start_at_status_quo": status_quo and residual is None,
        "residual": residual,
        "residual_scale": float(residual_scale) if residual is not None else None,
        "init_model": init_model,
        "noise_type": noise_type,
        "noise_std": noise_std,
        "algo_kwargs": hp,
        "eval_freq": int(eval_freq),
        "periodic_eval_episodes": int(periodic_episodes),
        "periodic_eval_seed": PERIODIC_EVAL_SEED,
        "final_eval_episodes": args.eval_episodes,
        "final_eval_seed": args.eval_seed,
        "threads": args.threads,
        "trust_model": args.trust_model,
    }


def _zoo_form(value: Any) -> bool:
    """Whether a setting is written the way RL Zoo writes mappings: a ``dict(...)`` or ``{...}`` string."""
    return isinstance(value, str) and value.strip().startswith(("dict(", "{"))


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


def resumed_config(config: dict[str, Any], args: TrainRequest) -> dict[str, Any]:
    """The configuration of a resumed run: its own ``config.json``, with what the command decides now.

    From the command: the folder (a run may have been moved), the scenario file, the final table's seeds,
    the threads, and the timestep target if ``--timesteps`` is given. A training setting the command gives
    (``--hyperparams``, ``--n-envs``, ``--action-mode``, ``--eval-freq``) must repeat the run's own value:
    a run is one configuration; ``--init-model`` starts a new one. Settings the command leaves out come
    from ``config.json``, whatever the YAML files say now.
    """
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
    # hooks and flags stand for the resolved settings they set (only the keys of ``given`` matter below)
    hooks = {key: given.pop(key) for key in ("callback", "vec_env_wrapper") if key in given}
    if "callback" in hooks or args.residual is not None:
        given["start_at_status_quo"] = True
    if "vec_env_wrapper" in hooks or args.residual is not None:
        given["residual"] = given["residual_scale"] = True
    if args.residual_scale is not None:
        given["residual_scale"] = True
    if isinstance(given.get("env_kwargs"), dict) and "action_mode" in given["env_kwargs"]:
        given["action_mode"] = given["env_kwargs"].pop("action_mode")
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
    here = {
        k: config[k]
        for k in ("run_dir", "scenario", "final_eval_episodes", "final_eval_seed", "threads", "trust_model")
    }
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
