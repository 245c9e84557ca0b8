"""Trained stable-baselines3 agents behind the :class:`~agents.deciders.policy.Policy` interface.

:class:`SB3Policy` reads a model ``.zip`` saved by any of payroute's algorithms (PPO, A2C, SAC, TD3, DQN, or
RecurrentPPO from sb3-contrib; the algorithm is read from the file unless given). VecNormalize statistics
saved beside the model (``<model>_vecnormalize.pkl``, ``<model>.vecnormalize.pkl``, RL Zoo's
``<model>/vecnormalize.pkl``, SB3 checkpoint naming ``rl_model_vecnormalize_<N>_steps.pkl``, or
``vecnormalize.pkl`` in the same folder) are applied to observations. Anything wrong raises
:class:`~agents.deciders.policy.PolicyError` with a one-line message.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from agents.algorithms import AlgorithmError, algo_class, load_model
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
    return f"{checkpoint[1]}_vecnormalize_{checkpoint[2]}_steps.pkl" if checkpoint else None


def _vecnormalize_path(model_path: Path, own_only: bool = False) -> Path | None:
    """VecNormalize statistics saved beside a model, if any (first match wins).

    ``own_only``: not the folder's ``vecnormalize.pkl``, which in a train.py run belongs to the final model
    (RL Zoo's folders share it between ``best_model.zip`` and the final model, so it is a fallback there).
    """
    stem = model_path.with_suffix("")
    # train.py's and SB3's names beside the model; RL Zoo keeps them in a folder named as the model
    candidates = [Path(f"{stem}_vecnormalize.pkl"), Path(f"{stem}.vecnormalize.pkl"), stem / "vecnormalize.pkl"]
    checkpoint = _checkpoint_stats_name(model_path)
    if checkpoint:
        candidates.append(model_path.parent / checkpoint)
    elif not own_only:
        candidates.append(model_path.parent / "vecnormalize.pkl")
    for candidate in candidates:
        if candidate.is_file():
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

    def __init__(self, path: str | Path, algorithm: str | None = None, device: str = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PolicyError(f"model file not found: {self.path}")
        self.algorithm = (algorithm or _detect_algorithm(self.path)).lower()
        _algorithm_class(self.algorithm)  # an unknown algorithm is a PolicyError naming it
        try:
            self.model = load_model(self.algorithm, self.path, device=device)
        except Exception as exc:  # noqa: BLE001 - any failure to unpickle/load is a bad model file
            msg = one_line(exc, limit=200)
            raise PolicyError(f"{self.path}: cannot load as {self.algorithm}: {type(exc).__name__}: {msg}") from None
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
        recorded = getattr(self.model, NORMALISED_OBS_ATTRIBUTE, None)  # None: not saved by today's train.py
        own_only = recorded is not None and self.path.name == "best_model.zip"  # train.py saves its own stats
        self.vecnormalize_path = _vecnormalize_path(self.path, own_only)
        if self.vecnormalize_path is not None:
            self._load_vecnormalize(self.vecnormalize_path, shape)
        elif recorded is True or (recorded is None and _trained_with_normalisation(self.path)):
            said = "the model records it" if recorded else "its config.json says so"
            wanted = _checkpoint_stats_name(self.path) or f"{self.path.stem}_vecnormalize.pkl" + (
                "" if own_only else " or vecnormalize.pkl"
            )
            raise PolicyError(
                f"{self.path}: its train.py run normalised observations ({said}) but the statistics saved "
                f"with this model are missing; put {wanted} beside it"
            )

    def _load_vecnormalize(self, path: Path, shape: tuple[int, ...] | None) -> None:
        try:
            with open(path, "rb") as fh:
                vn = pickle.load(fh)
        except Exception as exc:  # noqa: BLE001 - a corrupt pickle can raise almost anything
            raise PolicyError(f"{path}: cannot read VecNormalize statistics: {type(exc).__name__}") from None
        rms = getattr(vn, "obs_rms", None)
        if rms is None or not hasattr(rms, "mean"):
            raise PolicyError(f"{path}: not a VecNormalize statistics file")
        if getattr(vn, "norm_obs", True):
            if np.shape(rms.mean) != tuple(shape or ()):
                raise PolicyError(
                    f"{path}: VecNormalize statistics of shape {np.shape(rms.mean)} do not fit the model's "
                    f"observations {shape}"
                )
            self.obs_rms = rms
        self.clip_obs = float(getattr(vn, "clip_obs", 10.0))
        self.epsilon = float(getattr(vn, "epsilon", 1e-8))

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
        norm = f", VecNormalize {self.vecnormalize_path.name}" if self.vecnormalize_path else ""
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
