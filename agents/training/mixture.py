"""Training on a mixture of worlds: several scenarios at once, each played by its share of the environments.

A mixture file is a TOML file in ``agents/scenarios/`` (a training distribution, never a built-in world):

    name = "generalist_mix"
    description = "what the mixture is for"

    [[members]]
    scenario = "wide_fragile_icbc_cmb_boc.toml"   # a built-in name, or a file relative to this one
    weight = 4                                     # its share of the training environments

    [[members]]
    scenario = "steady"
    weight = 1
    reward_scale = 30                              # optional: its training rewards count 30 times (default 1)

``python train.py --scenario agents/scenarios/<mixture>.toml`` gives each member ``weight / total`` of
``--n-envs`` (rounded by largest remainder, at least one environment each) and of the periodic evaluations.
The members are stepped side by side as one SB3 ``VecEnv`` (:class:`ConcatVecEnv`): every environment keeps
its own scenario, its own episode length and its own random stream (environment ``i`` of the run is seeded
``seed + i``, whichever member it plays). The final table evaluates the agent on each member in turn.

``reward_scale`` multiplies a member's training rewards before ``VecNormalize`` (:class:`ScaleRewards`): worlds
whose policies differ by little in absolute terms (an ordinary evening fails about 1% of payments, a fragile
bank's collapse ten times that) then weigh in the shared policy's gradient as much as the surge worlds. A
constant factor leaves each world's best policy unchanged; it only changes how the one network trades the
worlds off. The episode statistics (``VecMonitor``) and every evaluation stay in unscaled rewards.

All members must have the same banks in the same order: they share one observation and action space.
A plain scenario is a mixture of one member (``training_worlds``), so train.py has one code path.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from payroute_env.scenario import Scenario, ScenarioError, load_scenario

__all__ = [
    "ConcatVecEnv",
    "Mixture",
    "MixtureError",
    "ScaleRewards",
    "is_mixture_file",
    "split_envs",
    "training_worlds",
]

MIXTURE_KEYS = ("name", "description", "members")
MEMBER_KEYS = ("scenario", "weight", "reward_scale")


class MixtureError(ValueError):
    """A mixture file that cannot be trained on; the message names the file, the member and the field."""


@dataclass(frozen=True)
class Mixture:
    """Scenarios to train on together, with their shares of the environments (a plain scenario: one member)."""

    name: str
    description: str
    members: tuple[Scenario, ...]
    weights: tuple[float, ...]
    reward_scales: tuple[float, ...] | None = None  # None: every member's rewards as they are

    @property
    def is_single(self) -> bool:
        return len(self.members) == 1


def is_mixture_file(scenario: Any) -> bool:
    """Whether ``scenario`` names a mixture file (a ``.toml`` file with a ``members`` list)."""
    return _mixture_table(scenario) is not None


def _mixture_table(scenario: Any) -> dict[str, Any] | None:
    """The parsed TOML of a mixture file, or None for anything else (``load_scenario`` judges the rest)."""
    if isinstance(scenario, Scenario) or not str(scenario).endswith(".toml"):
        return None
    path = Path(scenario)
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # load_scenario reports what is wrong with the file
    return data if "members" in data else None


def training_worlds(scenario: str | Path | Scenario) -> Mixture:
    """The worlds a run trains on: a mixture file's members, or ``scenario`` alone (checked once, here).

    Raises :class:`MixtureError` for a bad mixture file and ``ScenarioError`` for a bad scenario.
    """
    data = _mixture_table(scenario)
    if data is None:
        sc = load_scenario(scenario)
        return Mixture(sc.name, sc.description, (sc,), (1.0,))
    return _load_mixture(Path(scenario), data)


def _load_mixture(path: Path, data: dict[str, Any]) -> Mixture:
    """Check the mixture file ``path`` (parsed: ``data``) and load its members."""
    unknown = sorted(set(data) - set(MIXTURE_KEYS))
    if unknown:
        raise MixtureError(f"{path}: unknown key(s) {', '.join(unknown)}; a mixture has {', '.join(MIXTURE_KEYS)}")
    name, description, members = data.get("name"), data.get("description", ""), data["members"]
    if not isinstance(name, str) or not name.strip():
        raise MixtureError(f"{path}: name = {name!r}: expected a non-empty string")
    if not isinstance(description, str):
        raise MixtureError(f"{path}: description = {description!r}: expected a string")
    if not isinstance(members, list) or not members:
        raise MixtureError(f"{path}: members must be a non-empty list of [[members]] tables")
    scenarios, weights, scales = [], [], []
    for k, member in enumerate(members):
        where = f"{path}: members[{k}]"
        if not isinstance(member, dict):
            raise MixtureError(f"{where} must be a table with {', '.join(MEMBER_KEYS)}")
        unknown = sorted(set(member) - set(MEMBER_KEYS))
        if unknown or "scenario" not in member:
            raise MixtureError(f"{where}: expected the keys {', '.join(MEMBER_KEYS)}, got {', '.join(sorted(member))}")
        ref, weight = member["scenario"], member.get("weight", 1.0)
        if not isinstance(ref, str) or not ref.strip():
            raise MixtureError(f"{where}.scenario = {ref!r}: expected a built-in name or a .toml file")
        scale = member.get("reward_scale", 1.0)
        for field, value in (("weight", weight), ("reward_scale", scale)):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise MixtureError(f"{where}.{field} = {value!r}: expected a positive number")
        if ref.endswith(".toml") and not Path(ref).is_absolute():
            ref = str(path.parent / ref)  # files are relative to the mixture, as a scenario's ``extends``
        if is_mixture_file(ref):
            raise MixtureError(f"{where}.scenario = {member['scenario']!r} is itself a mixture; list its members")
        try:
            scenarios.append(load_scenario(ref))
        except ScenarioError as exc:
            raise MixtureError(f"{where}.scenario: {exc}") from None
        weights.append(float(weight))
        scales.append(float(scale))
    names = [sc.name for sc in scenarios]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MixtureError(f"{path}: scenario(s) {', '.join(twice)} listed twice; give one member a larger weight")
    banks = [tuple(b.name for b in sc.banks) for sc in scenarios]
    for sc, order in zip(scenarios, banks, strict=True):
        if order != banks[0]:
            raise MixtureError(
                f"{path}: {sc.name} has the banks {', '.join(order)}, {scenarios[0].name} has {', '.join(banks[0])}; "
                "every member needs the same banks in the same order (they share one observation space)"
            )
    given = any(s != 1.0 for s in scales)
    return Mixture(name.strip(), description, tuple(scenarios), tuple(weights), tuple(scales) if given else None)


def split_envs(weights: Sequence[float], n_envs: int, what: str = "--n-envs") -> list[int]:
    """``n_envs`` environments shared in proportion to ``weights`` (largest remainder, ties to the earlier
    member), then any member left without one takes it from the member with the most; in member order."""
    k = len(weights)
    if n_envs < k:
        raise MixtureError(f"{what} {n_envs} is fewer than the mixture's {k} members; each needs an environment")
    total = float(sum(weights))
    quotas = [n_envs * w / total for w in weights]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(k), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: n_envs - sum(counts)]:
        counts[i] += 1
    for i in range(k):
        if counts[i] == 0:
            counts[max(range(k), key=lambda j: (counts[j], -j))] -= 1
            counts[i] = 1
    return counts


class ConcatVecEnv(VecEnv):
    """Several SB3 ``VecEnv`` with the same spaces, stepped as one: environment ``i`` of the whole is
    environment ``i - offset`` of the member it falls in. Each member autoresets its own environments."""

    def __init__(self, envs: Sequence[VecEnv]) -> None:
        if not envs:
            raise ValueError("ConcatVecEnv needs at least one VecEnv")
        first = envs[0]
        for env in envs[1:]:
            if env.observation_space != first.observation_space or env.action_space != first.action_space:
                raise ValueError(
                    f"every member needs the same spaces; got {env.observation_space} / {env.action_space} "
                    f"and {first.observation_space} / {first.action_space}"
                )
        self.envs = list(envs)
        self.offsets = np.cumsum([0] + [e.num_envs for e in self.envs]).tolist()
        super().__init__(self.offsets[-1], first.observation_space, first.action_space)

    def _split(self, indices: VecEnvIndices) -> list[tuple[int, list[int], list[int]]]:
        """``(member, local indices, positions in the answer)`` for each member that ``indices`` touches."""
        wanted = [int(i) % self.num_envs for i in self._get_indices(indices)]
        out = []
        for m in range(len(self.envs)):
            lo, hi = self.offsets[m], self.offsets[m + 1]
            where = [p for p, i in enumerate(wanted) if lo <= i < hi]
            if where:
                out.append((m, [wanted[p] - lo for p in where], where))
        return out

    def _gather(self, indices: VecEnvIndices, ask: Any) -> list[Any]:
        n = len(list(self._get_indices(indices)))
        answer: list[Any] = [None] * n
        for m, local, where in self._split(indices):
            for p, value in zip(where, ask(self.envs[m], local), strict=True):
                answer[p] = value
        return answer

    def seed(self, seed: int | None = None) -> Sequence[None | int]:  # type: ignore[override]
        """Environment ``i`` of the whole gets ``seed + i`` at the next reset, as in SB3."""
        for env, offset in zip(self.envs, self.offsets[:-1], strict=True):
            env.seed(None if seed is None else seed + offset)
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        if isinstance(options, list):
            for m, env in enumerate(self.envs):
                env.set_options(options[self.offsets[m] : self.offsets[m + 1]])
        else:
            for env in self.envs:
                env.set_options(options)

    def reset(self) -> np.ndarray:
        obs = np.concatenate([env.reset() for env in self.envs])
        self.reset_infos = [info for env in self.envs for info in env.reset_infos]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        for m, env in enumerate(self.envs):
            env.step_async(actions[self.offsets[m] : self.offsets[m + 1]])

    def step_wait(self) -> VecEnvStepReturn:
        results = [env.step_wait() for env in self.envs]
        obs = np.concatenate([r[0] for r in results])
        rewards = np.concatenate([r[1] for r in results])
        dones = np.concatenate([r[2] for r in results])
        infos = [info for r in results for info in r[3]]
        self.reset_infos = [info for env in self.envs for info in env.reset_infos]
        return obs, rewards, dones, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._gather(indices, lambda env, local: env.get_attr(attr_name, local))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for m, local, _ in self._split(indices):
            env = self.envs[m]
            env.set_attr(attr_name, value, None if len(local) == env.num_envs else local)

    def env_method(self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list[Any]:
        return self._gather(indices, lambda env, local: env.env_method(method_name, *args, indices=local, **kwargs))

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return self._gather(indices, lambda env, local: env.env_is_wrapped(wrapper_class, local))

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [image for env in self.envs for image in env.get_images()]


class ScaleRewards(VecEnvWrapper):
    """Multiply environment ``i``'s rewards by ``scales[i]`` (a mixture member's ``reward_scale``)."""

    def __init__(self, venv: VecEnv, scales: Sequence[float]) -> None:
        if len(scales) != venv.num_envs:
            raise ValueError(f"{len(scales)} reward scales for {venv.num_envs} environments")
        super().__init__(venv)
        self.scales = np.asarray(scales, dtype=np.float64)

    def reset(self) -> np.ndarray:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs, (rewards * self.scales).astype(rewards.dtype), dones, infos
