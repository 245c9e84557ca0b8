"""A study file: which agents to train, on what, how many times, and where to measure them.

A study is a YAML file (``agents/studies/quick.yml`` is the smallest)::

    name: quick
    algorithms: [ppo, a2c]            # train.py's --algo; "residual_ppo" is PPO with --residual success_rate_router
    train:
      scenarios: [double11_2013]      # train.py's --scenario, one trial per scenario
      seeds: [0, 1]                   # train.py's --seed, one trial per seed
      timesteps: 4096                 # left out: each algorithm's hyper-parameter file decides
      n_envs: 4                       # (the same)
      eval_episodes: 5                # train.py's final table (its seeds, 1000 on, never the study's below)
      hyperparams: {}                 # train.py's --hyperparams, for every trial
    search:                           # optional: a hyper-parameter space
      grid: {ent_coef: [0.0, 0.01]}   # every value is trained (Tune's grid_search)
      sample:                         # drawn per trial: loguniform / uniform [low, high], or choice [values]
        learning_rate: {loguniform: [1.0e-4, 1.0e-3]}
      samples: 2                      # draws of the sampled space (per point of the grid), each on every seed
      seed: 0                         # of the draws
      searcher: random                # or optuna: Tune's OptunaSearch picks one draw per algorithm and scenario
                                      # (samples trials on the first seed, scored on train.py's table; no grid),
                                      # then every seed trains that choice
    evaluate:
      worlds: [double11_2013, steady] # every trained agent, every heuristic and the fluid bound on each
      episodes: 5
      seed: 5000                      # first evaluation seed: apart from training's and train.py's table

Every trial is one ``train.py`` run (``agents.training.run_training``), then an evaluation of its model on every
world. ``load_study`` checks everything before Ray starts; a problem is a :class:`StudyError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.algorithms import ALGOS
from agents.training.mixture import MixtureError, training_worlds
from payroute_env import ScenarioError, load_scenario

__all__ = ["RESIDUAL_PREFIX", "SearchSpace", "StudyError", "StudySpec", "load_study"]

RESIDUAL_PREFIX = "residual_"  # "residual_ppo": the algorithm learns a correction to the router (train.py --residual)
RESIDUAL_HEURISTIC = "success_rate_router"
SAMPLERS = ("loguniform", "uniform", "choice")
TOP_LEVEL = ("name", "description", "algorithms", "train", "search", "evaluate")
TRAIN_KEYS = ("scenarios", "seeds", "timesteps", "n_envs", "eval_episodes", "hyperparams")
SEARCH_KEYS = ("grid", "sample", "samples", "seed", "searcher")
SEARCHERS = ("random", "optuna")
EVALUATE_KEYS = ("worlds", "episodes", "seed")


class StudyError(ValueError):
    """A study file that cannot run; the message names the file and the field."""


@dataclass(frozen=True)
class SearchSpace:
    """Hyper-parameters to vary: ``grid`` (every value) and ``sample`` (``samples`` draws of distributions)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    sample: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)  # key -> (sampler, its arguments)
    samples: int = 1
    seed: int = 0  # of the draws (and of Optuna's sampler)
    searcher: str = "random"  # random: every draw on every seed; optuna: a search, then its choice on every seed


@dataclass(frozen=True)
class StudySpec:
    """A checked study file."""

    name: str
    description: str
    algorithms: tuple[str, ...]
    scenarios: tuple[str, ...]
    seeds: tuple[int, ...]
    timesteps: int | None  # None: the hyper-parameter file's n_timesteps
    n_envs: int | None  # None: the hyper-parameter file's n_envs
    eval_episodes: int
    hyperparams: dict[str, Any]
    search: SearchSpace
    worlds: tuple[str, ...]
    episodes: int
    seed: int
    source: str = "<dict>"

    @property
    def trials(self) -> int:
        """Trials the study runs: algorithms x scenarios x seeds x grid points x samples; with Optuna, the
        search's samples per algorithm and scenario, then its choice on every seed."""
        pairs = len(self.algorithms) * len(self.scenarios)
        if self.search.searcher == "optuna":
            return pairs * (self.search.samples + len(self.seeds))
        grid = math.prod(len(values) for values in self.search.grid.values())
        return pairs * len(self.seeds) * grid * self.search.samples


def load_study(path: str | Path) -> StudySpec:
    """Read and check a study file (a path, or the name of a shipped one: ``quick``, ``paper``)."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path = Path(__file__).parent / f"{path}.yml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not a text file (a study file is UTF-8 YAML)") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not YAML ({' '.join(str(exc).split())})") from None
    return study_from_dict(data, str(path))


def study_from_dict(data: Any, source: str = "<dict>") -> StudySpec:
    """Check a study given as a mapping (what ``load_study`` reads from YAML)."""

    def bad(message: str) -> StudyError:
        return StudyError(f"{source}: {message}")

    table = _table(data, "the study", TOP_LEVEL, bad)
    for key in ("name", "algorithms", "train", "evaluate"):
        if key not in table:
            raise bad(f"missing field {key!r}")
    name = table["name"]
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise bad(f"name = {name!r}: expected a non-empty folder name")
    algorithms = _names(table["algorithms"], "algorithms", bad)
    for algo in algorithms:
        base = algo.removeprefix(RESIDUAL_PREFIX)
        if base not in ALGOS:
            known = ", ".join([*ALGOS, *(f"{RESIDUAL_PREFIX}{a}" for a in ALGOS)])
            raise bad(f"algorithms: unknown algorithm {algo!r}; choose from {known}")
    train = _table(table["train"], "train", TRAIN_KEYS, bad)
    scenarios = _names(train.get("scenarios", ["double11_2013"]), "train.scenarios", bad)
    for scenario in scenarios:
        _world(scenario, "train.scenarios", bad, training=True)
    seeds = _whole_list(train.get("seeds", [0]), "train.seeds", bad)
    # left out (or null): the algorithm's hyper-parameter file decides, as train.py does without the flag
    timesteps = None if train.get("timesteps") is None else _whole(train["timesteps"], "train.timesteps", 1, bad)
    n_envs = None if train.get("n_envs") is None else _whole(train["n_envs"], "train.n_envs", 1, bad)
    eval_episodes = _whole(train.get("eval_episodes", 20), "train.eval_episodes", 1, bad)
    hyperparams = train.get("hyperparams") or {}
    if not isinstance(hyperparams, dict):
        raise bad(f"train.hyperparams = {hyperparams!r}: expected a mapping of train.py --hyperparams settings")
    search = _search(table.get("search") or {}, bad)
    evaluate = _table(table["evaluate"], "evaluate", EVALUATE_KEYS, bad)
    if "worlds" not in evaluate:
        raise bad("missing field 'evaluate.worlds'")
    worlds = _names(evaluate["worlds"], "evaluate.worlds", bad)
    for world in worlds:
        _world(world, "evaluate.worlds", bad)
    episodes = _whole(evaluate.get("episodes", 20), "evaluate.episodes", 1, bad)
    seed = _whole(evaluate.get("seed", 5000), "evaluate.seed", 0, bad)
    return StudySpec(
        name=name.strip(),
        description=str(table.get("description", "")),
        algorithms=tuple(algorithms),
        scenarios=tuple(scenarios),
        seeds=tuple(seeds),
        timesteps=timesteps,
        n_envs=n_envs,
        eval_episodes=eval_episodes,
        hyperparams=dict(hyperparams),
        search=search,
        worlds=tuple(worlds),
        episodes=episodes,
        seed=seed,
        source=source,
    )


def _search(data: Any, bad: Any) -> SearchSpace:
    table = _table(data, "search", SEARCH_KEYS, bad)
    grid = table.get("grid") or {}
    if not isinstance(grid, dict):
        raise bad(f"search.grid = {grid!r}: expected a mapping of setting -> list of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise bad(f"search.grid.{key} = {values!r}: expected a non-empty list of values (an empty space)")
    sample = table.get("sample") or {}
    if not isinstance(sample, dict):
        raise bad(f"search.sample = {sample!r}: expected a mapping of setting -> {{sampler: arguments}}")
    draws: dict[str, tuple[str, list[Any]]] = {}
    for key, spec in sample.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
            raise bad(f"search.sample.{key} = {spec!r}: expected one of {{{': ..., '.join(SAMPLERS)}: ...}}")
        sampler, args = next(iter(spec.items()))
        if sampler == "choice":
            if not isinstance(args, list) or not args:
                raise bad(f"search.sample.{key}.choice = {args!r}: expected a non-empty list (an empty space)")
        else:
            numbers = isinstance(args, list) and len(args) == 2 and all(_is_number(a) for a in args)
            if not numbers or not args[0] < args[1] or (sampler == "loguniform" and args[0] <= 0):
                least = " > 0" if sampler == "loguniform" else ""
                raise bad(f"search.sample.{key}.{sampler} = {args!r}: expected [low, high] with low < high{least}")
        draws[key] = (sampler, list(args))
    overlap = sorted(set(grid) & set(draws))
    if overlap:
        raise bad(f"search: {overlap[0]!r} is both in search.grid and in search.sample")
    samples = _whole(table.get("samples", 1), "search.samples", 1, bad)
    if samples > 1 and not draws:
        raise bad(f"search.samples = {samples}: without search.sample every sample would train the same settings")
    seed = _whole(table.get("seed", 0), "search.seed", 0, bad)
    searcher = table.get("searcher", "random")
    if searcher not in SEARCHERS:
        raise bad(f"search.searcher = {searcher!r}; choose from {', '.join(SEARCHERS)}")
    if searcher == "optuna" and (grid or not draws):
        raise bad("search.searcher = 'optuna' searches search.sample (which must not be empty), not search.grid")
    return SearchSpace(
        grid={k: list(v) for k, v in grid.items()}, sample=draws, samples=samples, seed=seed, searcher=searcher
    )


def _table(data: Any, where: str, allowed: tuple[str, ...], bad: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise bad(f"{where} must be a mapping, got {data!r}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        prefix = "" if where == "the study" else f"{where}."
        raise bad(f"unknown field {prefix}{unknown[0]!r}; allowed: {', '.join(allowed)}")
    return data


def _names(value: Any, where: str, bad: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise bad(f"{where} = {value!r}: expected a non-empty list of names")
    if len(set(value)) != len(value):
        raise bad(f"{where} = {value!r}: each name may appear once")
    return [v.strip() for v in value]


def _world(name: str, where: str, bad: Any, training: bool = False) -> None:
    """Refuse a world that does not load; ``training`` worlds may also be mixtures (agents.training.mixture)."""
    try:
        if training:
            training_worlds(name)
        else:
            load_scenario(name)
    except (ScenarioError, MixtureError) as exc:
        raise bad(f"{where}: {' '.join(str(exc).split())}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, where: str, least: int, bad: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise bad(f"{where} = {value!r}: expected a whole number >= {least}")
    return value


def _whole_list(value: Any, where: str, bad: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise bad(f"{where} = {value!r}: expected a non-empty list of whole numbers")
    seeds = [_whole(v, f"{where}[{i}]", 0, bad) for i, v in enumerate(value)]
    if len(set(seeds)) != len(seeds):
        raise bad(f"{where} = {value!r}: each seed may appear once")
    return seeds
