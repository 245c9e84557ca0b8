"""Any payroute policy by name: a heuristic, a shipped pretrained agent, an SB3 model ``.zip`` or a run folder.

``load_policy`` takes a heuristic name (see ``agents.deciders.heuristics.HEURISTICS``), ``pretrained:<name>``
for an agent shipped in ``agents/pretrained/`` (``agents.deciders.pretrained``), or the path of an SB3
model ``.zip`` (the algorithm is read from the file, or forced with a prefix such as ``a2c:models/run.zip``),
or a train.py run folder (its ``model.zip``). A model trained as a correction to a heuristic comes back
with that heuristic (:class:`~agents.deciders.residual.ResidualPolicy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.algorithms import ALGOS
from payroute_env import observations as env_observations
from payroute_env.scenario import Scenario, load_scenario

from . import residual
from .heuristics import HEURISTICS
from .policy import Policy, PolicyError, first_line
from .pretrained import PREFIX, pretrained_agents, pretrained_model
from .trained import SB3Policy, model_file, policy_spaces_match

__all__ = ["ALGORITHMS", "available_policies", "load_policy"]

ALGORITHMS: tuple[str, ...] = tuple(ALGOS)  # ppo, a2c, sac, td3, dqn, recurrent_ppo (agents.algorithms)


def available_policies() -> dict[str, str]:
    """Heuristic and shipped pretrained agents' names, with one-line descriptions."""
    heuristics = {name: first_line(cls.__doc__ or name) for name, cls in HEURISTICS.items()}
    return heuristics | {PREFIX + name: text for name, text in pretrained_agents().items()}


def load_policy(
    spec: str | Path | Policy,
    scenario: str | Path | Scenario,
    seed: int = 0,
    device: str = "cpu",
    *,
    trust: bool = False,
    **kwargs: Any,
) -> Policy:
    """The policy named by ``spec``: a heuristic name, ``pretrained:<name>`` (a shipped agent), a path to an SB3
    model ``.zip``, or a train.py run folder (its ``model.zip``).

    ``scenario`` gives heuristics the published (declared) capacities and checks that a model's spaces fit.
    ``seed`` seeds random policies; ``kwargs`` override a heuristic's parameters. A ``Policy`` passes through.
    ``trust``: a model file may run code as it loads (its pickles); without it, such files are refused.
    """
    sc = load_scenario(scenario)
    if isinstance(spec, Policy):
        return spec
    text = str(spec).strip()
    if text in HEURISTICS:
        try:
            return HEURISTICS[text](sc, seed=seed, **kwargs)
        except TypeError as exc:
            raise PolicyError(f"bad parameters for {text}: {exc}") from None
    if text.startswith(PREFIX):
        name = text[len(PREFIX) :]
        policy = _load_model(pretrained_model(name), None, sc, device, trust)
        policy.name = text  # tables and plots name it as the user did, not by its path inside the package
        return policy
    algorithm = None
    head, sep, tail = text.partition(":")
    if sep and head.lower() in ALGORITHMS:
        algorithm, text = head.lower(), tail
    elif sep and not Path(text).exists() and Path(tail).is_file():
        raise PolicyError(f"unknown algorithm prefix {head!r} in {text!r}; choose from {', '.join(ALGORITHMS)}")
    path = model_file(text)
    if not path.is_file() and path.suffix != ".zip" and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")  # SB3 adds .zip when saving; accept the name without it
    if not path.suffix == ".zip" and not path.is_file():
        raise PolicyError(
            f"unknown policy {str(spec)!r}: not a heuristic ({', '.join(HEURISTICS)}), a model .zip file or a run "
            "folder"
        )
    return _load_model(path, algorithm, sc, device, trust)


def _load_model(path: Path, algorithm: str | None, sc: Scenario, device: str, trust: bool) -> Policy:
    policy = SB3Policy(path, algorithm=algorithm, device=device, trust=trust)
    internal_shape = env_observations.observation_space(sc.n_banks, True).shape
    policy.observe_internal = policy.model.observation_space.shape == internal_shape
    policy_spaces_match(policy, sc)
    return _with_residual_base(policy, sc)


def _with_residual_base(policy: SB3Policy, scenario: Scenario) -> Policy:
    """A model trained as a correction to a heuristic (``agents.deciders.residual``) comes back with its heuristic."""
    settings = getattr(policy.model, residual.MODEL_ATTRIBUTE, None)
    if settings is None:
        return policy
    try:
        base, scale = settings["base"], settings["scale"]
        residual.check_residual(base, scale)
    except (TypeError, KeyError, ValueError) as exc:
        raise PolicyError(f"{policy.path}: bad residual settings {settings!r} ({exc})") from None
    return residual.ResidualPolicy(policy, residual.make_base(base, scenario), scale)
