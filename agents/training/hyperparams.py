"""The hyper-parameter files of payroute's stable-baselines3 algorithms: reading, overriding and checking them.

Hyper-parameters live in ``agents/hyperparams/<algo>.yml`` in RL Zoo's format, and RL Zoo 3 trains on them
unmodified: one mapping per Gymnasium id (``payroute/Double11-2013-v0``) or ``default``, holding ``n_envs``,
``n_timesteps``, ``policy``, ``policy_kwargs``, ``normalize``, ``env_kwargs`` (to the training environments:
the reward weights ``beta`` and ``lost_weight``, the ``action_mode``), ``noise_type`` / ``noise_std`` (TD3 and
SAC exploration noise) and the algorithm's own keyword arguments. ``policy_kwargs`` is a YAML mapping
(``activation_fn`` by name: ``tanh``, ``relu``; ``features_extractor_class: per_bank`` for
``agents.training.networks.PerBankExtractor``) or RL Zoo's ``"dict(...)"`` string, which is read, never run.

payroute's own settings ride on RL Zoo's hooks, so that both tools do the same: ``callback:
agents.training.callbacks.StartAtStatusQuo`` centres a fresh policy on "admit all, quick";
``vec_env_wrapper: {agents.training.residual.ResidualVecEnv: {base: <heuristic>, scale: <x>}}`` with
``callback: agents.training.callbacks.RecordResidual`` trains a correction to that heuristic instead of a
policy from scratch (``agents.deciders.residual``). train.py runs these hooks itself and no other class a file
names (``payroute_hooks``). ``check_hyperparams`` rejects, before anything is built, what SB3 would only choke
on later (unknown keys, out-of-range or non-finite values, counts that are not whole numbers, bad network
options).
"""

from __future__ import annotations

import ast
import copy
import inspect
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

from agents.algorithms import ALGOS, AlgorithmError, algo_class
from agents.deciders.residual import check_residual
from agents.model_files import ACTIVATIONS, EXTRACTORS, LinearSchedule, class_named, schedule_from
from payroute_env import env_id_for, load_scenario
from payroute_env.sb3_vec_env import PaymentRoutingSB3VecEnv

__all__ = [
    "HyperparamError",
    "action_noise",
    "apply_overrides",
    "check_hyperparams",
    "check_normalize",
    "is_whole_number",
    "load_hyperparams",
    "policy_kwargs",
    "schedules",
]

NOISE_TYPES = ("normal", "ornstein-uhlenbeck")


class HyperparamError(ValueError):
    """A hyper-parameter file or override is invalid."""


# YAML 1.1 (PyYAML) reads 5e-4 or 1e6 as strings: a float needs a dot there. Read them as the numbers they are.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _numbers(value: Any) -> Any:
    """``value`` with every string that spells a number turned into one (``5e-4`` a float, ``1e6`` an int)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        whole = number.is_integer() and "." not in value and abs(number) < 2**53  # 1e4 counts, 5e-4 rates
        return int(number) if whole else number  # (1e308 stays a float, not a 309-digit int)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def load_hyperparams(algo: str, scenario: str) -> dict[str, Any]:
    """The hyper-parameters of ``algo`` for ``scenario``: its env-id entry, else ``default``."""
    if algo not in ALGOS:
        raise HyperparamError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGOS)}")
    text = (resources.files("agents") / "hyperparams" / f"{algo}.yml").read_text(encoding="utf-8")
    table = yaml.safe_load(text) or {}
    env_id = env_id_for(scenario if isinstance(scenario, str) else load_scenario(scenario).name)
    entry = table.get(env_id, table.get("default"))
    if not isinstance(entry, dict):
        raise HyperparamError(f"agents/hyperparams/{algo}.yml has no entry for {env_id} and no default")
    return _numbers(copy.deepcopy(entry))


def apply_overrides(hyperparams: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key=value`` overrides (values parsed as YAML; dotted keys reach into mappings)."""
    out = copy.deepcopy(hyperparams)
    given: dict[str, str] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise HyperparamError(f"--hyperparams expects key=value, got {item!r}")
        if key in given:  # which one was meant? (a silent "last wins" hides typos in long commands)
            raise HyperparamError(f"--hyperparams sets {key} twice ({given[key]!r}, then {raw!r}); keep one")
        given[key] = raw
        try:
            value = _numbers(yaml.safe_load(raw))
        except yaml.YAMLError as exc:
            raise HyperparamError(f"--hyperparams {item!r}: value is not valid YAML ({exc})") from None
        target = out
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise HyperparamError(f"--hyperparams {item!r}: {part} is not a mapping")
        target[leaf] = value
    return out


def schedules(algo_kwargs: dict[str, Any]) -> dict[str, Any]:
    """RL Zoo's ``lin_<value>`` for ``learning_rate`` / ``clip_range`` / ``clip_range_vf`` (linear decay from
    value to 0), and its ``train_freq: [n, step|episode]`` as the tuple SB3 wants."""
    out = dict(algo_kwargs)
    freq = out.get("train_freq")
    if isinstance(freq, list | tuple):
        ok = len(freq) == 2 and isinstance(freq[0], int | float) and freq[0] >= 1 and freq[0] == int(freq[0])
        if not ok or freq[1] not in ("step", "episode"):
            raise HyperparamError(f"train_freq = {freq!r}: expected a whole number or [n, step] / [n, episode]")
        out["train_freq"] = (int(freq[0]), freq[1])
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        value = out.get(key)
        if isinstance(value, str):
            if not value.startswith("lin_"):
                raise HyperparamError(f"{key} = {value!r}: expected a number or lin_<number>")
            try:
                out[key] = schedule_from(value, key)
            except ValueError as exc:
                raise HyperparamError(str(exc)) from None
    return out


_LinearSchedule = LinearSchedule  # the name models pickled before agents.model_files name it by


def action_noise(algo: str, noise_type: Any, noise_std: Any, n_actions: int | None = None) -> Any:
    """RL Zoo's ``noise_type`` / ``noise_std`` as an SB3 action-noise object (``None`` without ``noise_type``).

    Exploration noise for the deterministic off-policy actors (TD3; SAC accepts it too). ``noise_std`` is in
    SB3's scaled action units ([-1, 1] for the whole box). With ``n_actions=None`` only the values are
    checked (raises ``HyperparamError``), so bad settings fail before training starts.
    """
    if noise_type is None:
        if noise_std is not None:
            raise HyperparamError("noise_std needs noise_type (normal or ornstein-uhlenbeck)")
        return None
    if algo not in ("sac", "td3"):
        raise HyperparamError(f"noise_type applies to sac and td3, not {algo}")
    if noise_type not in NOISE_TYPES:
        raise HyperparamError(f"noise_type = {noise_type!r}; choose from {', '.join(NOISE_TYPES)}")
    if isinstance(noise_std, bool) or not isinstance(noise_std, int | float) or not 0 < noise_std <= 2:
        raise HyperparamError(f"noise_std = {noise_std!r}; expected a number in (0, 2]")
    if n_actions is None:
        return None
    cls = NormalActionNoise if noise_type == "normal" else OrnsteinUhlenbeckActionNoise
    return cls(mean=np.zeros(n_actions), sigma=float(noise_std) * np.ones(n_actions))


def policy_kwargs(raw: dict[str, Any] | None) -> dict[str, Any]:
    """YAML policy_kwargs to SB3's: ``activation_fn`` and ``features_extractor_class`` by name become classes."""
    kwargs = dict(raw or {})
    for key, table in (("features_extractor_class", EXTRACTORS), ("activation_fn", ACTIVATIONS)):
        if isinstance(kwargs.get(key), str):  # the same names a saved model's blueprint uses
            try:
                kwargs[key] = class_named(kwargs[key], table, f"policy_kwargs.{key}")
            except ValueError as exc:
                raise HyperparamError(str(exc)) from None
    return kwargs


# settings whose range SB3 does not check before it trains on them (gamma 1.5 gives NaN tensors mid-run)
_RANGES: dict[str, tuple[float, float, bool]] = {  # key: (low, high, low is allowed); values must be finite
    "gamma": (0.0, 1.0, True),
    "gae_lambda": (0.0, 1.0, True),
    "learning_rate": (0.0, math.inf, True),  # 0 freezes the policy (a fine use in tests and ablations)
    "clip_range": (0.0, math.inf, False),
    "ent_coef": (0.0, math.inf, True),
    "vf_coef": (0.0, math.inf, True),
    "max_grad_norm": (0.0, math.inf, False),
    "tau": (0.0, 1.0, True),
    "target_kl": (0.0, math.inf, False),
    "clip_range_vf": (0.0, math.inf, False),
    "exploration_fraction": (0.0, 1.0, True),
    "exploration_initial_eps": (0.0, 1.0, True),
    "exploration_final_eps": (0.0, 1.0, True),
    "target_policy_noise": (0.0, math.inf, True),
    "target_noise_clip": (0.0, math.inf, True),
}
_MAY_BE_NONE = {"target_kl", "clip_range_vf"}  # SB3's default None switches them off
# whole-number settings and their least value (YAML's 1e4 arrives as a float; SB3 needs an int)
_INTEGERS = {"n_steps": 1, "batch_size": 1, "n_epochs": 1, "buffer_size": 1, "learning_starts": 0, "gradient_steps": -1,
             "target_update_interval": 1, "policy_delay": 1, "sde_sample_freq": -1, "stats_window_size": 1}  # fmt: skip
# set by train.py itself: where to set them instead
_RESERVED = {"seed": "--seed", "verbose": None, "device": None, "tensorboard_log": None, "_init_setup_model": None,
             "action_noise": "noise_type and noise_std"}  # fmt: skip


def is_finite_number(value: Any) -> bool:
    """``value`` is an int or a finite float, not a bool (YAML's ``true`` is an int to Python)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float (YAML reads 1 followed by 400 zeros as one)
        return False


def is_whole_number(value: Any, least: int) -> bool:
    """``value`` is a finite whole number (int, or a float such as YAML's ``1e4``) of at least ``least``."""
    return is_finite_number(value) and value == int(value) and value >= least


def check_hyperparams(
    algo: str, algo_kwargs: dict[str, Any], policy: Any, raw_policy_kwargs: Any, env_kwargs: Any
) -> None:
    """Raise ``HyperparamError`` (one line) for settings the algorithm, its policy or the env would choke on.

    ``algo_kwargs`` are what train.py passes to the algorithm's constructor. Whole-number settings given as
    whole floats (``n_steps=6.4e1``) become ints in place.
    """
    try:
        cls = algo_class(algo)
    except AlgorithmError as exc:
        raise HyperparamError(str(exc)) from None
    for key in sorted(set(algo_kwargs) & set(_RESERVED)):
        where = f"; use {_RESERVED[key]}" if _RESERVED[key] else ""
        raise HyperparamError(f"{key} is set by train.py itself, not by --hyperparams{where}")
    for key in sorted(set(algo_kwargs) & set(_MOVED)):
        raise HyperparamError(f"{key} is no longer a setting of its own; it is now {_MOVED[key]}")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "policy", "env"}
    unknown = sorted(set(algo_kwargs) - accepted)
    if unknown:
        raise HyperparamError(f"{algo} has no setting {', '.join(unknown)} (from --hyperparams or agents/hyperparams/)")
    if not isinstance(policy, str) or policy not in getattr(cls, "policy_aliases", {policy: None}):
        raise HyperparamError(f"policy = {policy!r}: {algo} takes {', '.join(cls.policy_aliases)}")
    for key, value in algo_kwargs.items():
        if key == "ent_coef" and isinstance(value, str) and algo == "sac" and value.startswith("auto"):
            continue  # SAC learns its entropy coefficient ("auto" or "auto_<start>")
        if key in ("learning_rate", "clip_range", "clip_range_vf") and isinstance(value, str):
            continue  # lin_<x> schedules: checked by schedules() below
        if key in _INTEGERS:
            if not is_whole_number(value, _INTEGERS[key]):
                raise HyperparamError(f"{key} = {value!r}: expected a whole number >= {_INTEGERS[key]}")
            algo_kwargs[key] = int(value)
        elif key in _RANGES and not (value is None and key in _MAY_BE_NONE):
            low, high, low_ok = _RANGES[key]
            if not is_finite_number(value) or not (low <= value <= high and (low_ok or value > low)):
                interval = f"{'[' if low_ok else '('}{low:g}, {'inf)' if high == math.inf else f'{high:g}]'}"
                raise HyperparamError(f"{key} = {value!r}: expected a finite number in {interval}")
    if not isinstance(raw_policy_kwargs, dict) or not isinstance(env_kwargs, dict):
        raise HyperparamError("policy_kwargs and env_kwargs must be mappings (e.g. policy_kwargs.net_arch=[64, 64])")
    env_accepted = set(inspect.signature(PaymentRoutingSB3VecEnv.__init__).parameters)
    env_accepted -= {"self", "num_envs", "scenario", "action_mode"}  # the run sets these itself
    unknown = sorted(set(env_kwargs) - env_accepted)
    if unknown:
        takes = ", ".join(sorted(env_accepted))
        raise HyperparamError(f"env_kwargs has no setting {', '.join(unknown)}; the env takes {takes}")
    schedules(algo_kwargs)
    _check_policy_kwargs(raw_policy_kwargs)
    policy_kwargs(raw_policy_kwargs)


_NORMALIZE_FLAGS = ("norm_obs", "norm_reward")
_NORMALIZE_NUMBERS = ("clip_obs", "clip_reward", "epsilon")  # each > 0 (a clip of -1 would pin every value)


def check_normalize(value: Any) -> None:
    """``normalize`` is true, false or a mapping of VecNormalize options; raise ``HyperparamError`` otherwise."""
    if isinstance(value, bool):
        return
    allowed = ", ".join(_NORMALIZE_FLAGS + _NORMALIZE_NUMBERS)
    if not isinstance(value, dict):
        raise HyperparamError(f"normalize = {value!r}: expected true, false or a mapping of {allowed}")
    for key, option in value.items():
        if key in _NORMALIZE_FLAGS:
            ok = isinstance(option, bool)
            expected = "true or false"
        elif key in _NORMALIZE_NUMBERS:
            ok = is_finite_number(option) and option > 0
            expected = "a finite number > 0"
        elif key == "gamma":  # train.py passes the algorithm's own, so returns are discounted alike
            raise HyperparamError("normalize.gamma is the algorithm's gamma; set gamma instead")
        else:
            raise HyperparamError(f"normalize has no option {key!r}; it takes {allowed}")
        if not ok:
            raise HyperparamError(f"normalize.{key} = {option!r}: expected {expected}")


def _check_policy_kwargs(raw: dict[str, Any]) -> None:
    """Network sizes must be whole numbers >= 1 and every number finite: torch would fail deep inside, or
    (``log_std_init=nan``) only once training has started. Whole sizes given as floats become ints in place."""

    def finite(value: Any, where: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise HyperparamError(f"policy_kwargs.{where} = {value!r}: expected a finite number")
        if isinstance(value, dict):
            for k, v in value.items():
                finite(v, f"{where}.{k}")
        if isinstance(value, list):
            for i, v in enumerate(value):
                finite(v, f"{where}[{i}]")

    for key, value in raw.items():
        finite(value, key)
    # SAC clamps its log std to [-20, 2]; above 2 (a spread of 7 on a box of width 1) no algorithm explores usefully
    log_std = raw.get("log_std_init", -1.0)
    if isinstance(log_std, bool) or not isinstance(log_std, int | float) or not -20 <= log_std <= 2:
        raise HyperparamError(f"policy_kwargs.log_std_init = {log_std!r}: expected a number in [-20, 2]")
    for key in ("net_arch", "lstm_hidden_size", "n_lstm_layers"):
        if key not in raw:
            continue
        value = raw[key]
        layers = [value] if key != "net_arch" else value if isinstance(value, list) else None
        if isinstance(value, dict):  # {pi: [...], vf: [...]} (on-policy) or {pi: [...], qf: [...]} (SAC, TD3)
            layers = [size for sizes in value.values() for size in (sizes if isinstance(sizes, list) else [None])]
            if not set(value) <= {"pi", "vf", "qf"}:  # SB3 ignores any other key without a word
                layers = None
        if layers is None or not all(is_whole_number(size, 1) for size in layers):
            expected = "a whole number >= 1"
            if key == "net_arch":
                expected = "a list of layer sizes >= 1, or {pi: [...], vf: [...]} ({pi: [...], qf: [...]} for sac, td3)"
            raise HyperparamError(f"policy_kwargs.{key} = {value!r}: expected {expected}")
        raw[key] = _as_ints(value)  # YAML's 6.4e1 is a float; torch needs int layer sizes


def _as_ints(value: Any) -> Any:
    """Whole-number layer sizes (already checked) as ints, in lists and mappings alike."""
    if isinstance(value, dict):
        return {k: _as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_ints(v) for v in value]
    return int(value)


# ------------------------------------------------------------------------------------- RL Zoo's formats and hooks

# payroute's own settings ride on RL Zoo's hooks, so that RL Zoo trains on the same files (it imports these by name)
STATUS_QUO_CALLBACK = "agents.training.callbacks.StartAtStatusQuo"
RECORD_RESIDUAL_CALLBACK = "agents.training.callbacks.RecordResidual"
RESIDUAL_WRAPPER = "agents.training.residual.ResidualVecEnv"
# what an older file's keys became (named in the error, so that such a file is easy to bring up to date)
_MOVED = {
    "start_at_status_quo": f"callback: {STATUS_QUO_CALLBACK}",
    "residual": f"--residual, or vec_env_wrapper {RESIDUAL_WRAPPER} {{base: ...}} with its callback",
    "residual_scale": "--residual-scale, or the scale option of the vec_env_wrapper",
    "action_mode": "env_kwargs.action_mode, or --action-mode",
}


@dataclass(frozen=True)
class Hooks:
    """What a file's RL Zoo hooks (``callback``, ``vec_env_wrapper``) ask of a payroute run."""

    start_at_status_quo: bool = False
    residual: str | None = None
    residual_scale: float = 1.0


def _hook_entries(value: Any, key: str) -> list[tuple[str, dict[str, Any]]]:
    """RL Zoo's forms of a hook: a class name, ``{name: {options}}``, or a list of those."""
    if value is None:
        return []
    entries = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            entries.append((item, {}))
            continue
        if isinstance(item, dict) and len(item) == 1:
            ((name, options),) = item.items()
            options = {} if options is None else options
            if isinstance(name, str) and isinstance(options, dict):
                entries.append((name, options))
                continue
        raise HyperparamError(f"{key} = {value!r}: expected a class name, {{name: {{options}}}} or a list of those")
    return entries


def payroute_hooks(callback: Any, vec_env_wrapper: Any) -> Hooks:
    """Read the hooks train.py runs: the status-quo start (a callback) and a residual policy (a wrapper with the
    callback that records it in the model). Anything else is a ``HyperparamError``: train.py imports no class
    a file names."""
    callbacks = _hook_entries(callback, "callback")
    known = (STATUS_QUO_CALLBACK, RECORD_RESIDUAL_CALLBACK)
    for name, options in callbacks:
        if name not in known:
            raise HyperparamError(f"callback {name!r}: train.py runs payroute's own callbacks ({', '.join(known)})")
        if options:
            raise HyperparamError(f"callback {name} takes no options; got {options!r}")
    residual, scale = None, 1.0
    for name, options in _hook_entries(vec_env_wrapper, "vec_env_wrapper"):
        if name != RESIDUAL_WRAPPER:
            raise HyperparamError(f"vec_env_wrapper {name!r}: train.py applies {RESIDUAL_WRAPPER} only")
        unknown = sorted(set(options) - {"base", "scale"})
        if unknown or "base" not in options:
            raise HyperparamError(f"vec_env_wrapper {name} takes base (a heuristic) and scale; got {options!r}")
        residual, scale = options["base"], options.get("scale", 1.0)
        try:
            check_residual(residual, scale)
        except ValueError as exc:
            raise HyperparamError(f"vec_env_wrapper {name}: {exc}") from None
    recorded = RECORD_RESIDUAL_CALLBACK in (name for name, _ in callbacks)
    if recorded != (residual is not None):
        raise HyperparamError(
            f"vec_env_wrapper {RESIDUAL_WRAPPER} and callback {RECORD_RESIDUAL_CALLBACK} go together: the callback "
            "saves the heuristic's name in the model, so that evaluation rebuilds heuristic + correction"
        )
    started = STATUS_QUO_CALLBACK in (name for name, _ in callbacks)
    return Hooks(started, residual, float(scale))


_ZOO_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu", "LeakyReLU": "leaky_relu", "GELU": "gelu",
                    "SiLU": "silu"}  # fmt: skip
_ZOO_NAMES = {f"{where}.{cls}": name for cls, name in _ZOO_ACTIVATIONS.items() for where in ("nn", "th.nn", "torch.nn")}


def read_zoo_expression(text: str, key: str) -> Any:
    """RL Zoo's Python-expression settings (``policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``)
    read without running them: numbers, strings, lists, ``dict(...)`` / ``{...}`` and ``nn.<activation>``
    (as its name, e.g. ``relu``). RL Zoo ``eval``s these strings; train.py never runs code from a file."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            number = value(node.operand)
            if isinstance(number, int | float) and not isinstance(number, bool):
                return -number if isinstance(node.op, ast.USub) else number
        if isinstance(node, ast.List | ast.Tuple):
            return [value(item) for item in node.elts]
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
            keys = [value(k) for k in node.keys]  # type: ignore[arg-type]
            if all(isinstance(k, str) for k in keys):
                return dict(zip(keys, (value(v) for v in node.values), strict=True))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            if all(kw.arg is not None for kw in node.keywords):
                return {kw.arg: value(kw.value) for kw in node.keywords}
        dotted = ast.unparse(node)
        if dotted in _ZOO_NAMES:
            return _ZOO_NAMES[dotted]
        raise HyperparamError(
            f"{key}: {dotted!r} is not something train.py reads (numbers, strings, lists, dict(...), nn.<activation>); "
            "write it as a YAML mapping"
        )

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise HyperparamError(f"{key} = {text!r}: neither a YAML mapping nor an expression RL Zoo reads") from None
    return value(tree.body)
