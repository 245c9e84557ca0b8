"""Trained stable-baselines3 agents behind the :class:`~agents.deciders.policy.Policy` interface.

:class:`SB3Policy` reads a model ``.zip`` saved by any of payroute's algorithms (PPO, A2C, SAC, TD3, DQN, or
RecurrentPPO from sb3-contrib; the algorithm is read from the file unless given). VecNormalize statistics
inside the zip (``agents.model_files``: payroute saves a model and its statistics as one file) or beside it
(``<model>_vecnormalize.json`` or ``.pkl``, ``<model>.vecnormalize.*``, RL Zoo's ``<model>/vecnormalize.*``, SB3
checkpoint naming ``rl_model_vecnormalize_<N>_steps.*``, or ``vecnormalize.*`` in the same folder) are applied
to observations. Nothing in a file runs as code unless ``trust=True`` (``--trust-model``): pickled settings and
``.pkl`` statistics are refused without it. Anything wrong raises :class:`~agents.deciders.policy.PolicyError`
with a one-line message.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from gymnasium import spaces

from agents.algorithms import AlgorithmError, algo_class
from agents.model_files import ModelFileError, load_trained_model, read_statistics_file
from payroute_env import actions as env_actions
from payroute_env import observations as env_observations
from payroute_env._cli import one_line
from payroute_env.scenario import Scenario

from .policy import Policy, PolicyError

__all__ = [
    "NORMALISED_OBS_ATTRIBUTE",
    "SB3Policy",
    "model_file",
    "normalises_observations",
    "policy_spaces_match",
]


# train.py records in every saved model whether its observations were normalised, so a model moved away from its
# run folder (and its config.json) is still refused without its VecNormalize statistics
NORMALISED_OBS_ATTRIBUTE = "payroute_normalised_observations"


def _algorithm_class(name: str) -> Any:
    try:
        return algo_class(name.lower())
    except AlgorithmError as exc:
        raise PolicyError(str(exc)) from None


def _detect_algorithm(path: Path) -> str:
    """Which SB3 algorithm saved ``path``, from the ``data`` JSON inside the zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise PolicyError(f"{path}: not a stable-baselines3 model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "policy_class" not in data:
        raise PolicyError(f"{path}: not a stable-baselines3 model file (no policy_class in its data)")
    policy_class = data.get("policy_class")
    module = policy_class.get("__module__", "") if isinstance(policy_class, dict) else ""
    if "recurrent" in module:
        return "recurrent_ppo"
    for algo in ("sac", "td3", "dqn"):
        if f".{algo}." in module:
            return algo
    if "policy_delay" in data:
        return "td3"
    if "target_entropy" in data:
        return "sac"
    if "exploration_rate" in data:
        return "dqn"
    return "ppo" if "clip_range" in data else "a2c"


def _checkpoint_stats_name(model_path: Path) -> str | None:
    """The statistics file SB3's CheckpointCallback saves with ``<prefix>_<N>_steps.zip``, else ``None``."""
    checkpoint = re.fullmatch(r"(.*)_(\d+)_steps", model_path.with_suffix("").name)
    return f"{checkpoint[1]}_vecnormalize_{checkpoint[2]}_steps" if checkpoint else None


def _vecnormalize_path(model_path: Path, own_only: bool = False) -> Path | None:
    """VecNormalize statistics saved beside a model, if any (first match wins).

    ``own_only``: not the folder's ``vecnormalize.pkl``, which in a train.py run belongs to the final model
    (RL Zoo's folders share it between ``best_model.zip`` and the final model, so it is a fallback there).
    """
    stem = model_path.with_suffix("")
    # train.py's and SB3's names beside the model; RL Zoo keeps them in a folder named as the model
    names = [Path(f"{stem}_vecnormalize"), Path(f"{stem}.vecnormalize"), stem / "vecnormalize"]
    checkpoint = _checkpoint_stats_name(model_path)
    if checkpoint:
        names.append(model_path.parent / checkpoint)
    elif not own_only:
        names.append(model_path.parent / "vecnormalize")
    for name in names:
        for suffix in (".json", ".pkl"):  # the data file before the pickle
            if (candidate := name.with_name(name.name + suffix)).is_file():
                return candidate
    return None


def normalises_observations(normalize: Any) -> bool:
    """Whether a train.py ``normalize`` setting (true, false or VecNormalize options) normalises observations."""
    return normalize is True or (isinstance(normalize, dict) and normalize.get("norm_obs", True) is not False)


def _trained_with_normalisation(model_path: Path) -> bool:
    """Whether the train.py run folder holding ``model_path`` (its config.json) says observations were normalised
    (for models saved before train.py recorded it in the model itself)."""
    run = model_path.parent.parent if model_path.parent.name == "checkpoints" else model_path.parent
    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or not {"algo", "algo_kwargs", "normalize"} <= set(config):
        return False  # not a train.py run folder
    return normalises_observations(config["normalize"])


def _mode_of(action_space: Any) -> str | None:
    if isinstance(action_space, spaces.Box):
        return "continuous"
    if isinstance(action_space, spaces.MultiDiscrete):
        return "multidiscrete"
    if isinstance(action_space, spaces.Discrete):
        return "discrete"
    return None


def policy_spaces_match(policy: Policy, scenario: Scenario) -> None:
    """Raise :class:`PolicyError` unless a model's spaces are those the scenario gives for its settings."""
    if not isinstance(policy, SB3Policy):
        return
    B = scenario.n_banks
    want_obs = env_observations.observation_space(B, policy.observe_internal).shape
    want_act = env_actions.action_space(policy.action_mode, B)
    model = policy.model
    if model.observation_space.shape != want_obs:
        raise PolicyError(
            f"{policy.path}: model expects observations of shape {model.observation_space.shape}, but scenario "
            f"{scenario.name!r} ({B} banks) gives {want_obs}"
        )
    got = model.action_space
    same = getattr(got, "shape", None) == want_act.shape and (
        getattr(got, "n", None) == getattr(want_act, "n", None)
        and np.array_equal(np.asarray(getattr(got, "nvec", 0)), np.asarray(getattr(want_act, "nvec", 0)))
    )
    if not same:
        raise PolicyError(
            f"{policy.path}: model's action space {got} does not fit scenario {scenario.name!r} "
            f"({policy.action_mode} actions for {B} banks are {want_act})"
        )


class SB3Policy(Policy):
    """A trained stable-baselines3 model (observations normalised with its VecNormalize statistics if saved)."""

    def __init__(
        self, path: str | Path, algorithm: str | None = None, device: str = "cpu", trust: bool = False
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PolicyError(f"model file not found: {self.path}")
        self.algorithm = (algorithm or _detect_algorithm(self.path)).lower()
        _algorithm_class(self.algorithm)  # an unknown algorithm is a PolicyError naming it
        self.trust = trust
        try:
            self.model, inside = load_trained_model(self.path, self.algorithm, trust=trust, device=device)
        except ModelFileError as exc:
            raise PolicyError(one_line(exc, limit=400)) from None
        mode = _mode_of(self.model.action_space)
        if mode is None:
            raise PolicyError(f"{self.path}: unsupported action space {self.model.action_space}")
        if _previous_encoding(self.model.action_space):
            raise PolicyError(
                f"{self.path}: trained with payroute's previous continuous actions, Box(0, 1) with [admit, w_quick, "
                "w_switch, w_netbank]; actions are now Box(-1, 1) with the zero action the status quo "
                "(payroute_env.actions); retrain it"
            )
        self.action_mode = mode
        self.name = str(path)
        shape = getattr(self.model.observation_space, "shape", None)
        self.observe_internal = _is_internal_shape(shape)
        self.obs_rms: Any = None
        self.clip_obs, self.epsilon = 10.0, 1e-8
        self.statistics: dict[str, Any] | None = None  # agents.model_files.read_statistics's, if any
        self.vecnormalize_path: Path | None = None  # where they came from: this zip, or a file beside it
        recorded = getattr(self.model, NORMALISED_OBS_ATTRIBUTE, None)  # None: not saved by today's train.py
        own_only = recorded is not None and self.path.name == "best_model.zip"  # train.py saves its own stats
        beside = None if inside is not None else _vecnormalize_path(self.path, own_only)
        if inside is not None or beside is not None:
            try:
                stats = inside if inside is not None else read_statistics_file(beside, trust=trust)
            except ModelFileError as exc:
                raise PolicyError(one_line(exc, limit=400)) from None
            self._use_statistics(stats, self.path if inside is not None else beside, shape)
        elif recorded is True or (recorded is None and _trained_with_normalisation(self.path)):
            said = "the model records it" if recorded else "its config.json says so"
            wanted = _checkpoint_stats_name(self.path) or f"{self.path.stem}_vecnormalize" + (
                "" if own_only else " or vecnormalize"
            )
            raise PolicyError(
                f"{self.path}: its train.py run normalised observations ({said}) but the statistics saved "
                f"with this model are missing (not inside it, no {wanted}.json or .pkl beside it)"
            )

    def _use_statistics(self, stats: dict[str, Any], source: Path, shape: tuple[int, ...] | None) -> None:
        if stats["norm_obs"]:
            if stats["obs_mean"].shape != tuple(shape or ()):
                raise PolicyError(
                    f"{source}: VecNormalize statistics of shape {stats['obs_mean'].shape} do not fit the model's "
                    f"observations {shape}"
                )
            self.obs_rms = SimpleNamespace(mean=stats["obs_mean"], var=stats["obs_var"])
        self.clip_obs, self.epsilon = float(stats["clip_obs"]), float(stats["epsilon"])
        self.statistics, self.vecnormalize_path = stats, source

    def normalize(self, observation: np.ndarray) -> np.ndarray:
        if self.obs_rms is None:
            return observation
        z = (observation - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(z, -self.clip_obs, self.clip_obs).astype(np.float32)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        obs = self.normalize(np.asarray(observation, dtype=np.float32))
        return self.model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)

    def describe(self) -> str:
        where = self.vecnormalize_path
        norm = "" if where is None else f", VecNormalize {'inside' if where == self.path else where.name}"
        return f"{self.algorithm} model {self.path} ({self.action_mode} actions{norm})"


def _previous_encoding(space: Any) -> bool:
    """A continuous space of the retired encoding: ``Box(0, 1)`` on every coordinate (a residual's corrections are
    ``Box(-1, 1)`` in both, and mean the same in both but for a clip)."""
    return isinstance(space, spaces.Box) and bool(np.all(space.low == 0.0) and np.all(space.high == 1.0))


def _is_internal_shape(shape: tuple[int, ...] | None) -> bool:
    """Whether an observation shape is the ``observe_internal=True`` layout (for some number of banks)."""
    if not shape or len(shape) != 1:
        return False
    n = shape[0]
    plain = len(env_observations.BANK_FEATURES)
    internal = plain + len(env_observations.INTERNAL_BANK)
    extra_plain = len(env_observations.GLOBAL_FEATURES)
    extra_internal = extra_plain + len(env_observations.INTERNAL_SWITCH)
    fits_plain = (n - extra_plain) % plain == 0 and n > extra_plain
    fits_internal = (n - extra_internal) % internal == 0 and n > extra_internal
    return fits_internal and not fits_plain


def model_file(path: str | Path) -> Path:
    """``path`` itself, or for a train.py run folder its final agent, ``model.zip`` (a ``PolicyError`` if it
    has none)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model.zip").is_file():
            raise PolicyError(f"{path} is a folder without model.zip; name a model .zip file or a train.py run folder")
        path = path / "model.zip"
    return path
