"""Model files that load without running code from them, written so that a kill never leaves half a file.

A stable-baselines3 ``.zip`` stores its network weights as tensors (read with ``torch.load(weights_only=True)``)
and its settings as JSON, but every setting that is an object (the policy class, the spaces, schedules, the
buffer class) as a cloudpickle: loading it with ``PPO.load`` runs whatever code the file carries. VecNormalize
statistics (``vecnormalize.pkl``) and replay buffers are whole pickles. Users share trained agents, so payroute
reads none of that without ``trust=True`` (``--trust-model`` on the command line):

- every model payroute saves also carries ``payroute/blueprint.json``: the policy class by name, the spaces,
  the network options and schedules as data (:func:`blueprint_of`). Loading rebuilds every pickled setting from
  it and hands the rebuilt objects to SB3 as ``custom_objects``, so SB3 never unpickles one; a pickled setting
  the blueprint cannot rebuild refuses the file (:class:`UntrustedModelError`).
- the VecNormalize statistics live in the same zip as ``payroute/vecnormalize.json`` (numbers only), so a
  model and its statistics are one file, committed together;
- replay buffers are ``.npz`` arrays (``allow_pickle=False``).

Every file is written to a temporary name in its folder, flushed to disk and renamed (:func:`write_atomically`):
a kill leaves the old file or the new one, never a torn one. The file stays a valid SB3 zip: SB3 users who
trust it may still ``PPO.load`` it. Files from before (no blueprint, ``.pkl`` statistics) load with
``trust=True``, or once converted with ``python -m agents.deciders.convert PATH``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from agents.algorithms import ALGOS, algo_class, load_model
from payroute_env._cli import one_line

if TYPE_CHECKING:  # the heavy libraries load when a model does (``agents.deciders`` stays light), as in algorithms
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

__all__ = [
    "BLUEPRINT_ENTRY",
    "STATISTICS_ENTRY",
    "TRUST_HELP",
    "ModelFileError",
    "UntrustedModelError",
    "apply_statistics",
    "blueprint_of",
    "load_replay_buffer",
    "load_trained_model",
    "read_statistics",
    "save_model",
    "read_pickled_replay_buffer",
    "save_replay_buffer",
    "write_replay_buffer",
    "statistics_of",
    "vecnormalize_from",
    "write_atomically",
]

BLUEPRINT_ENTRY = "payroute/blueprint.json"
STATISTICS_ENTRY = "payroute/vecnormalize.json"
FORMAT = 1


# the --trust-model flag of every command that loads a model file
TRUST_HELP = "load model files whose pickles run code as they load (older files, other tools); only files you trust"


class ModelFileError(ValueError):
    """A model, statistics or replay-buffer file that cannot be read (damaged, foreign, another version)."""


class UntrustedModelError(ModelFileError):
    """A file that could only be read by running code from it (pickle), and the caller did not trust it."""


# ------------------------------------------------------------------------------------------------ writing files
@contextmanager
def write_atomically(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success flush it to disk and rename it to ``path``.

    A kill mid-write leaves the previous ``path`` (or none) and a ``*.partial*`` file, never a torn ``path``.
    ``suffix`` ends the temporary name (SB3 appends ``.zip`` to a name without it).
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial{suffix}")
    try:
        yield partial
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    with write_atomically(path) as partial:
        partial.write_text(json.dumps(data, indent=2, default=str))


def write_npz(path: str | Path, **arrays: Any) -> None:
    """``np.savez`` at ``path``, atomically."""
    with write_atomically(path, ".npz") as partial:
        np.savez(partial, **arrays)


def save_model(
    model: BaseAlgorithm, path: str | Path, env: VecEnv | None = None, statistics: dict[str, Any] | None = None
) -> Path:
    """Save ``model`` with its blueprint, and the statistics of ``env`` if it is a VecNormalize (or
    ``statistics`` as :func:`read_statistics` gives them), as one file."""
    path = Path(path)
    blueprint = json.dumps(blueprint_of(model), indent=2)
    if env is not None and hasattr(env, "obs_rms") and hasattr(env, "norm_obs"):  # a VecNormalize
        statistics = read_statistics(statistics_of(env), "the environment's VecNormalize")
    stats = json.dumps(_statistics_data(statistics), indent=2) if statistics is not None else None
    with write_atomically(path, ".zip") as partial:
        model.save(partial)
        with zipfile.ZipFile(partial, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(BLUEPRINT_ENTRY, blueprint)
            if stats is not None:
                zf.writestr(STATISTICS_ENTRY, stats)
    return path


# ------------------------------------------------------------------------------------ settings as data and back
def _attr(module: str, name: str) -> Any:
    """``module.name``, imported when first needed (a model's loading is when torch and SB3 load)."""
    return getattr(importlib.import_module(module), name)


# the classes a blueprint names, by the names the hyper-parameter files use (agents/hyperparams/*.yml)
ACTIVATIONS: dict[str, tuple[str, str]] = {"tanh": ("torch.nn", "Tanh"), "relu": ("torch.nn", "ReLU"),
                                           "elu": ("torch.nn", "ELU"), "leaky_relu": ("torch.nn", "LeakyReLU"),
                                           "gelu": ("torch.nn", "GELU"), "silu": ("torch.nn", "SiLU")}  # fmt: skip
EXTRACTORS: dict[str, tuple[str, str]] = {"per_bank": ("agents.training.networks", "PerBankExtractor")}
OPTIMIZERS: dict[str, tuple[str, str]] = {
    "adam": ("torch.optim", "Adam"),
    "rmsprop": ("torch.optim", "RMSprop"),
}  # A2C's
_BUFFERS: dict[str, tuple[str, str]] = {
    name: ("stable_baselines3.common.buffers", name)
    for name in ("ReplayBuffer", "DictReplayBuffer", "NStepReplayBuffer", "RolloutBuffer", "DictRolloutBuffer")
}
_SB3_UTILS = "stable_baselines3.common.utils"
_SB3_NOISE = "stable_baselines3.common.noise"
_SB3_TYPES = "stable_baselines3.common.type_aliases"
# SB3 keeps these as pickles but rebuilds them from other settings (or the environment) when a model loads
_REBUILT_BY_SB3 = ("lr_schedule", "exploration_schedule", "_last_obs", "_last_episode_starts", "_last_original_obs",
                   "ep_info_buffer", "ep_success_buffer")  # fmt: skip


def _name_of(cls: Any, table: dict[str, tuple[str, str]], what: str) -> str:
    for name, (module, attr) in table.items():
        if cls is _attr(module, attr):  # a model exists, so torch and SB3 are loaded already
            return name
    raise ModelFileError(f"{what} {cls!r} cannot be written as data; payroute knows {', '.join(table)}")


def class_named(name: Any, table: dict[str, tuple[str, str]], what: str) -> type:
    """The class a blueprint or hyper-parameter file names (``ValueError`` naming ``what`` if unknown)."""
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{what} = {name!r}; choose from {', '.join(table)}")
    return _attr(*table[name])


class LinearSchedule:
    """``progress_remaining`` (1 -> 0) times the start value: RL Zoo's ``lin_<start>``."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.start


def schedule_from(value: Any, what: str) -> Any:
    """A number as it is, RL Zoo's ``lin_<start>`` as a :class:`LinearSchedule` (``ValueError`` naming ``what``)."""
    if isinstance(value, str):
        try:
            return LinearSchedule(float(value.removeprefix("lin_"))) if value.startswith("lin_") else float(value)
        except ValueError:
            raise ValueError(f"{what} = {value!r}: expected a number or lin_<number>") from None
    return value


def _data_of(value: Any, what: str) -> Any:
    """A setting as JSON data; a class or callable payroute cannot name is a ``ModelFileError``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | np.integer | np.floating):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, list | tuple):
        return [_data_of(v, what) for v in value]
    if isinstance(value, dict):
        return {str(k): _data_of(v, f"{what}.{k}") for k, v in value.items()}
    raise ModelFileError(f"{what} = {value!r} cannot be written as data")


def _schedule_data(value: Any, what: str) -> Any:
    """A number, ``lin_<start>`` (agents.training.hyperparams' linear decay) or ``None``."""
    if type(value).__name__ == "FloatSchedule":  # SB3 wraps what it was given
        value = value.value_schedule
    if type(value).__name__ == "ConstantSchedule":
        value = value.val
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, LinearSchedule):
        return f"lin_{value.start!r}"
    raise ModelFileError(f"{what} = {value!r} cannot be written as data (a number or lin_<number>)")


def _space_data(space: spaces.Space) -> dict[str, Any]:
    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(), "dtype": str(space.dtype)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise ModelFileError(f"space {space} cannot be written as data (Box, MultiDiscrete or Discrete)")


def _space_from(data: Any, what: str) -> spaces.Space:
    try:
        kind = data["type"]
        if kind == "Box":
            dtype = np.dtype(data["dtype"])
            if dtype.kind != "f":
                raise ValueError(f"dtype {dtype}")
            return spaces.Box(np.array(data["low"], dtype=dtype), np.array(data["high"], dtype=dtype), dtype=dtype)
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(np.array(data["nvec"], dtype=np.int64))
        if kind == "Discrete":
            return spaces.Discrete(int(data["n"]), start=int(data["start"]))
        raise ValueError(f"type {kind!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{what}: not a space payroute can rebuild ({exc})") from None


def _noise_data(noise: Any) -> Any:
    if noise is None:
        return None
    noise = getattr(noise, "base_noise", noise)  # one per environment (VectorizedActionNoise): SB3 wraps it again
    if isinstance(noise, _attr(_SB3_NOISE, "OrnsteinUhlenbeckActionNoise")):
        return {"type": "ornstein-uhlenbeck", "mean": noise._mu.tolist(), "sigma": noise._sigma.tolist(),
                "theta": noise._theta, "dt": noise._dt}  # fmt: skip
    if isinstance(noise, _attr(_SB3_NOISE, "NormalActionNoise")):
        return {"type": "normal", "mean": noise._mu.tolist(), "sigma": noise._sigma.tolist()}
    raise ModelFileError(f"action noise {noise!r} cannot be written as data (normal or ornstein-uhlenbeck)")


def _noise_from(data: Any) -> Any:
    if data is None:
        return None
    mean, sigma = np.array(data["mean"], dtype=np.float64), np.array(data["sigma"], dtype=np.float64)
    if data["type"] == "normal":
        return _attr(_SB3_NOISE, "NormalActionNoise")(mean, sigma)
    if data["type"] == "ornstein-uhlenbeck":
        noise = _attr(_SB3_NOISE, "OrnsteinUhlenbeckActionNoise")
        return noise(mean, sigma, theta=float(data["theta"]), dt=float(data["dt"]))
    raise ValueError(f"action noise type {data['type']!r}")


def _policy_kwargs_data(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    if "activation_fn" in out:
        out["activation_fn"] = _name_of(out["activation_fn"], ACTIVATIONS, "policy_kwargs.activation_fn")
    if "features_extractor_class" in out:
        extractor = out["features_extractor_class"]
        out["features_extractor_class"] = _name_of(extractor, EXTRACTORS, "policy_kwargs.features_extractor_class")
    if "optimizer_class" in out:
        out["optimizer_class"] = _name_of(out["optimizer_class"], OPTIMIZERS, "policy_kwargs.optimizer_class")
    return _data_of(out, "policy_kwargs")


def _policy_kwargs_from(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    named = (("activation_fn", ACTIVATIONS), ("features_extractor_class", EXTRACTORS), ("optimizer_class", OPTIMIZERS))
    for key, table in named:
        if key in out:
            out[key] = class_named(out[key], table, f"policy_kwargs.{key}")
    return out


def blueprint_of(model: BaseAlgorithm) -> dict[str, Any]:
    """What rebuilds ``model``'s pickled settings, as data: written into every zip :func:`save_model` saves."""
    algo = next((name for name in ALGOS if type(model) is algo_class(name)), None)
    if algo is None:
        raise ModelFileError(f"{type(model).__name__} is not one of payroute's algorithms ({', '.join(ALGOS)})")
    policy = next((name for name, cls in model.policy_aliases.items() if cls is model.policy_class), None)
    if policy is None:
        raise ModelFileError(f"policy class {model.policy_class.__name__} has no name in {algo}'s policy aliases")
    blueprint: dict[str, Any] = {
        "format": FORMAT,
        "algo": algo,
        "policy": policy,
        "observation_space": _space_data(model.observation_space),
        "action_space": _space_data(model.action_space),
        "policy_kwargs": _policy_kwargs_data(model.policy_kwargs),
        "learning_rate": _schedule_data(model.learning_rate, "learning_rate"),
        "action_noise": _noise_data(getattr(model, "action_noise", None)),
    }
    for key in ("clip_range", "clip_range_vf"):
        if hasattr(model, key):
            blueprint[key] = _schedule_data(getattr(model, key), key)
    freq = getattr(model, "train_freq", None)
    if freq is not None and hasattr(freq, "frequency"):  # SB3's TrainFreq(frequency, unit)
        blueprint["train_freq"] = [int(freq.frequency), str(freq.unit.value)]
    for key in ("replay_buffer_class", "rollout_buffer_class"):
        cls = getattr(model, key, None)
        if cls is not None:
            blueprint[key] = _name_of(cls, _BUFFERS, key)
    return blueprint


def _custom_objects(blueprint: dict[str, Any], algo: str) -> dict[str, Any]:
    """Every pickled setting of a payroute zip, rebuilt from its blueprint (``ModelFileError`` if it cannot be)."""
    if blueprint.get("format") != FORMAT:
        raise ModelFileError(f"blueprint format {blueprint.get('format')!r}; this payroute reads format {FORMAT}")
    if blueprint.get("algo") != algo:
        raise ModelFileError(f"the blueprint says {blueprint.get('algo')!r}, the file was opened as {algo}")
    cls = algo_class(algo)
    if blueprint.get("policy") not in cls.policy_aliases:
        known = ", ".join(cls.policy_aliases)
        raise ModelFileError(f"policy {blueprint.get('policy')!r} is not one of {algo}'s ({known})")
    try:
        objects: dict[str, Any] = {}
        for key in ("learning_rate", "clip_range", "clip_range_vf"):
            if key in blueprint:
                objects[key] = schedule_from(blueprint[key], key)
        for key in ("clip_range", "clip_range_vf"):  # what PPO's own setup makes of them
            if objects.get(key) is not None:
                objects[key] = _attr(_SB3_UTILS, "FloatSchedule")(objects[key])
        if "train_freq" in blueprint:
            n, unit = blueprint["train_freq"]
            unit = _attr(_SB3_TYPES, "TrainFrequencyUnit")(unit)
            objects["train_freq"] = _attr(_SB3_TYPES, "TrainFreq")(int(n), unit)
        objects["policy_class"] = cls.policy_aliases[blueprint["policy"]]
        objects["observation_space"] = _space_from(blueprint["observation_space"], "observation_space")
        objects["action_space"] = _space_from(blueprint["action_space"], "action_space")
        objects["policy_kwargs"] = _policy_kwargs_from(blueprint["policy_kwargs"])
        objects["action_noise"] = _noise_from(blueprint.get("action_noise"))
        for key in ("replay_buffer_class", "rollout_buffer_class"):
            if key in blueprint:
                objects[key] = class_named(blueprint[key], _BUFFERS, key)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"blueprint cannot be rebuilt: {exc}") from None
    objects.update(dict.fromkeys(_REBUILT_BY_SB3))
    return objects


# ---------------------------------------------------------------------------------------------- reading models
def _read_entries(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """The zip's ``data`` JSON, blueprint and statistics (``None`` where absent); ``ModelFileError`` if torn."""
    try:
        with zipfile.ZipFile(path) as zf:
            damaged = zf.testzip()  # every entry's CRC: a torn or altered file fails here
            if damaged is not None:
                raise ModelFileError(f"{path}: damaged zip entry {damaged}")
            names = set(zf.namelist())
            data = json.loads(zf.read("data"))
            blueprint = json.loads(zf.read(BLUEPRINT_ENTRY)) if BLUEPRINT_ENTRY in names else None
            stats = json.loads(zf.read(STATISTICS_ENTRY)) if STATISTICS_ENTRY in names else None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        why = f"{type(exc).__name__}: {one_line(exc, limit=200)}"
        raise ModelFileError(f"{path}: not a readable stable-baselines3 model file ({why})") from None
    if not isinstance(data, dict) or not (blueprint is None or isinstance(blueprint, dict)):
        raise ModelFileError(f"{path}: not a stable-baselines3 model file")
    return data, blueprint, stats


def pickled_settings(data: dict[str, Any]) -> list[str]:
    """The settings of an SB3 ``data`` JSON stored as cloudpickles (loading them runs code)."""
    return [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]


def load_trained_model(
    path: str | Path, algo: str, trust: bool = False, **kwargs: Any
) -> tuple[BaseAlgorithm, dict[str, Any] | None]:
    """``(model, statistics)`` from a zip; statistics as :func:`read_statistics` gives them, or ``None``.

    Without ``trust``, the model is rebuilt from its blueprint and SB3 unpickles nothing; a file without a
    blueprint, or with a pickled setting the blueprint does not rebuild, is an :class:`UntrustedModelError`.
    With ``trust``, SB3 reads the file its own way (pickles included). ``kwargs`` go to SB3's ``load``.
    """
    path = Path(path)
    data, blueprint, stats = _read_entries(path)
    if not trust:
        pickled = pickled_settings(data)
        if blueprint is None:
            raise UntrustedModelError(
                f"{path}: saved without payroute's blueprint, so loading it would unpickle code "
                f"({', '.join(pickled[:4]) or 'its settings'}); pass --trust-model (trust=True) only if you trust "
                "its source, or convert it once with python -m agents.deciders.convert"
            )
        try:
            objects = _custom_objects(blueprint, algo)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        unknown = [k for k in pickled if k not in objects]
        if unknown:
            raise UntrustedModelError(
                f"{path}: carries pickled settings payroute does not rebuild ({', '.join(unknown)}); pass "
                "--trust-model (trust=True) only if you trust its source"
            )
        kwargs["custom_objects"] = {k: v for k, v in objects.items() if k in data}
    try:
        model = load_model(algo, path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - tensors that do not fit, spaces that do not match, a torn pickle
        why = f"{type(exc).__name__}: {one_line(exc, limit=200)}"
        raise ModelFileError(f"{path}: cannot load as {algo}: {why}") from None
    return model, (read_statistics(stats, f"{path}:{STATISTICS_ENTRY}") if stats is not None else None)


# --------------------------------------------------------------------------------------- VecNormalize statistics
def statistics_of(env: VecNormalize) -> dict[str, Any]:
    """VecNormalize's statistics and options as JSON data (what its pickle holds, without code)."""

    def rms(r: Any) -> dict[str, Any]:
        return {"mean": np.asarray(r.mean).tolist(), "var": np.asarray(r.var).tolist(), "count": float(r.count)}

    return {
        "format": FORMAT,
        "norm_obs": bool(env.norm_obs),
        "norm_reward": bool(env.norm_reward),
        "clip_obs": float(env.clip_obs),
        "clip_reward": float(env.clip_reward),
        "gamma": float(env.gamma),
        "epsilon": float(env.epsilon),
        "obs_rms": rms(env.obs_rms),
        "ret_rms": rms(env.ret_rms),
    }


def _statistics_data(stats: dict[str, Any]) -> dict[str, Any]:
    """:func:`read_statistics`'s form back to the file's."""
    data: dict[str, Any] = {"format": FORMAT}
    data.update({k: stats[k] for k in ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")})
    for part in ("obs", "ret"):
        rms = {"mean": stats[f"{part}_mean"].tolist(), "var": stats[f"{part}_var"].tolist()}
        data[f"{part}_rms"] = {**rms, "count": stats[f"{part}_count"]}
    return data


def read_statistics(data: Any, where: str) -> dict[str, Any]:
    """Checked statistics: ``obs_mean``, ``obs_var``, ``obs_count``, ``ret_*`` arrays and the options."""
    try:
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        out = {key: data[key] for key in ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")}
        for part in ("obs", "ret"):
            rms = data[f"{part}_rms"]
            out[f"{part}_mean"] = np.array(rms["mean"], dtype=np.float64)
            out[f"{part}_var"] = np.array(rms["var"], dtype=np.float64)
            out[f"{part}_count"] = float(rms["count"])
        numbers = [out[f"{p}_{k}"] for p in ("obs", "ret") for k in ("mean", "var")]
        if not all(np.isfinite(a).all() for a in numbers) or (out["obs_var"] < 0).any() or out["obs_count"] <= 0:
            raise ValueError("non-finite or negative statistics")
        if not all(isinstance(out[k], bool) for k in ("norm_obs", "norm_reward")):
            raise ValueError("norm_obs and norm_reward must be true or false")
        if not all(isinstance(out[k], int | float) and math.isfinite(out[k]) for k in ("clip_obs", "gamma", "epsilon")):
            raise ValueError("clip_obs, gamma and epsilon must be numbers")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: not payroute's VecNormalize statistics ({exc})") from None
    return out


def read_statistics_file(path: Path, trust: bool = False) -> dict[str, Any]:
    """Statistics from a ``.json`` file, or (``trust`` only) from a VecNormalize ``.pkl`` as SB3 writes it."""
    if path.suffix == ".json":
        try:
            return read_statistics(json.loads(path.read_text()), str(path))
        except (OSError, ValueError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"{path}: cannot read VecNormalize statistics ({type(exc).__name__})") from None
    if not trust:
        raise UntrustedModelError(
            f"{path}: VecNormalize statistics as a pickle, which runs code when read; pass --trust-model "
            "(trust=True) only if you trust its source, or convert it once with python -m agents.deciders.convert"
        )
    try:
        with open(path, "rb") as fh:
            vn = pickle.load(fh)  # noqa: S301 - the caller trusts this file
        env_like = type("Stats", (), {})()
        for key in ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "obs_rms", "ret_rms"):
            setattr(env_like, key, getattr(vn, key))
        return read_statistics(statistics_of(env_like), str(path))  # type: ignore[arg-type]
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle can raise almost anything
        raise ModelFileError(f"{path}: cannot read VecNormalize statistics: {type(exc).__name__}") from None


def apply_statistics(env: VecNormalize, stats: dict[str, Any], where: str) -> None:
    """Give a VecNormalize the running means and variances of ``stats`` (its own options stay)."""
    if env.obs_rms.mean.shape != stats["obs_mean"].shape:
        raise ModelFileError(
            f"{where}: statistics of shape {stats['obs_mean'].shape} do not fit observations of shape "
            f"{env.obs_rms.mean.shape}"
        )
    env.obs_rms.mean, env.obs_rms.var, env.obs_rms.count = stats["obs_mean"], stats["obs_var"], stats["obs_count"]
    env.ret_rms.mean, env.ret_rms.var, env.ret_rms.count = stats["ret_mean"], stats["ret_var"], stats["ret_count"]


def vecnormalize_from(stats: dict[str, Any], venv: VecEnv, training: bool) -> VecNormalize:
    """A VecNormalize around ``venv`` holding ``stats`` (from :func:`read_statistics`)."""
    env = _attr("stable_baselines3.common.vec_env", "VecNormalize")(
        venv,
        training=training,
        norm_obs=stats["norm_obs"],
        norm_reward=stats["norm_reward"] and training,
        clip_obs=stats["clip_obs"],
        clip_reward=stats["clip_reward"],
        gamma=stats["gamma"],
        epsilon=stats["epsilon"],
    )
    apply_statistics(env, stats, "statistics")
    return env


# ------------------------------------------------------------------------------------------------ replay buffers
def save_replay_buffer(model: BaseAlgorithm, path: str | Path) -> None:
    """The model's replay buffer as ``.npz`` arrays (its arrays and counters; no objects), atomically."""
    write_replay_buffer(model.replay_buffer, path)


def read_pickled_replay_buffer(path: str | Path) -> Any:
    """A replay buffer SB3 pickled (``model.save_replay_buffer``): reading it runs its pickles; trusted files only."""
    try:
        return _attr("stable_baselines3.common.save_util", "load_from_pkl")(path)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign pickle: one line naming the file
        raise ModelFileError(f"{path}: not a readable replay buffer ({type(exc).__name__})") from None


def write_replay_buffer(rb: Any, path: str | Path) -> None:
    """A replay buffer object (SB3's ``ReplayBuffer``) as :func:`save_replay_buffer` writes it."""
    arrays = {k: v for k, v in vars(rb).items() if isinstance(v, np.ndarray)}
    counters = {k: v for k, v in vars(rb).items() if isinstance(v, bool | int | float) and not k.startswith("__")}
    write_npz(path, **arrays, **{f"counter.{k}": np.asarray(v) for k, v in counters.items()})


def load_replay_buffer(model: BaseAlgorithm, path: str | Path) -> None:
    """Fill the model's (freshly built) replay buffer from :func:`save_replay_buffer`'s file."""
    rb = model.replay_buffer
    try:
        with np.load(path, allow_pickle=False) as saved:
            values = {k: saved[k] for k in saved.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        why = f"{type(exc).__name__}: {one_line(exc, limit=200)}"
        raise ModelFileError(f"{path}: not a readable replay buffer ({why})") from None
    for key, value in values.items():
        name = key.removeprefix("counter.")
        ours = getattr(rb, name, None)
        if key.startswith("counter."):
            if not isinstance(ours, bool | int | float) or ours is None:
                raise ModelFileError(f"{path}: replay buffer counter {name!r} does not fit this model's buffer")
            setattr(rb, name, type(ours)(value.item()))
        else:
            if not isinstance(ours, np.ndarray) or ours.shape != value.shape or ours.dtype != value.dtype:
                raise ModelFileError(f"{path}: replay buffer array {name!r} {value.shape} does not fit this model's")
            setattr(rb, name, value)
