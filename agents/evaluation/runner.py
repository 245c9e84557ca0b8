"""The reusable evaluator: every policy on the same seeds, batched through the core, against the fluid bound.

``evaluate_policies`` builds one ``Simulator`` of ``episodes`` environments per policy (in the action mode
the policy declares), resets it with seeds ``seed, seed + 1, ...`` (common random numbers: every policy
meets the same arrivals and user draws), runs the episodes to truncation and collects the episode KPIs of
``payroute_env.metrics``. Results aggregate to the mean and a 95% percentile-bootstrap confidence interval
of the failed-payment rate (plus the interquartile mean), the other KPIs' means, the gap to the fluid
lower bound (``payroute_env.bounds``) and a paired comparison with a reference policy (by default the best
heuristic evaluated): because every policy meets the same episodes, the per-episode differences give a far
tighter interval than two separate CIs. The first seed also records a per-step timeline.

``train.py`` and notebooks reuse the same pieces: ``run_policy`` (the batched loop) and ``evaluate_policies``
here, the statistics in ``agents.evaluation.stats`` and the table and files in ``agents.evaluation.report``.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agents.deciders import HEURISTICS, Policy, load_policy
from agents.deciders.trained import policy_spaces_match
from payroute_env import render
from payroute_env.bounds import BoundError, BoundResult, fluid_bound
from payroute_env.memory import require, simulator_bytes
from payroute_env.scenario import Scenario, load_scenario
from payroute_env.simulator import Simulator

from .names import short_names, slug
from .stats import bootstrap_ci, interquartile_mean, paired_comparison
from .stats import isnan as _isnan
from .video import VideoWriter

__all__ = [
    "SCALAR_KPIS", "EvaluationResult", "PolicyResult", "evaluate_policies", "evaluation_memory", "machine_description",
    "run_policy",
]  # fmt: skip

# per-episode KPIs summarised by their mean (the failed-payment rate also gets a CI and an IQM)
SCALAR_KPIS: tuple[str, ...] = (
    "failed_payment_rate",
    "attempt_failure_rate",
    "successful_payments_per_s",
    "median_time_to_success_s",
    "p95_time_to_success_s",
    "outage_minutes",
    "pending_at_end",
    "return",
    "arrived",
    "succeeded",
    "lost",
)


@dataclass
class PolicyResult:
    """Everything measured for one policy."""

    name: str
    description: str
    action_mode: str
    episodes: list[dict[str, Any]]  # one flat dict of KPIs per episode (with its seed)
    summary: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, Any] | None = None  # per-step record of the first seed
    seconds: float = 0.0


@dataclass
class EvaluationResult:
    """The comparison of several policies on one scenario and one set of seeds."""

    scenario: str
    seeds: list[int]
    policies: list[PolicyResult]
    bound: dict[str, Any] | None
    best: str | None
    meta: dict[str, Any]
    reference: str | None = None  # the policy every other is compared with, episode by episode

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seeds": self.seeds,
            "best": self.best,
            "reference": self.reference,
            "bound": self.bound,
            "meta": self.meta,
            "policies": [
                {
                    "name": p.name,
                    "description": p.description,
                    "action_mode": p.action_mode,
                    "summary": p.summary,
                    "episodes": p.episodes,
                    "seconds": p.seconds,
                }
                for p in self.policies
            ],
        }


def _summarise(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"episodes": len(episodes)}
    for key in SCALAR_KPIS:
        vals = [e[key] for e in episodes if e.get(key) is not None and not _isnan(e[key])]
        out[key] = float(np.mean(vals)) if vals else math.nan
    fpr = [e["failed_payment_rate"] for e in episodes]
    out["failed_payment_rate_ci"] = list(bootstrap_ci(fpr))
    out["failed_payment_rate_iqm"] = interquartile_mean(fpr)
    out["failed_payment_rate_std"] = float(np.std(fpr, ddof=1)) if len(fpr) > 1 else 0.0
    banks = episodes[0]["failed_payment_rate_by_bank"].keys()
    out["failed_payment_rate_by_bank"] = {
        b: float(np.mean([e["failed_payment_rate_by_bank"][b] for e in episodes])) for b in banks
    }
    out["outage_minutes_by_bank"] = {
        b: float(np.mean([e["outage_minutes_by_bank"][b] for e in episodes])) for b in banks
    }
    chans = episodes[0]["paid_share_by_channel"].keys()
    out["paid_share_by_channel"] = {c: float(np.mean([e["paid_share_by_channel"][c] for e in episodes])) for c in chans}
    return out


# ------------------------------------------------------------------------------------------ running


def run_policy(
    policy: Policy,
    scenario: str | Path | Scenario,
    seeds: Sequence[int],
    timeline: bool = True,
    on_step: Callable[[int], None] | None = None,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> PolicyResult:
    """Run ``policy`` for one episode per seed, all batched through one ``Simulator``; return its results.

    ``on_step(n)`` is called after each step (for progress bars). The first seed's per-step record is kept
    in ``timeline`` when asked. ``on_frame(frame)`` gets the first seed's ``rgb_array`` dashboard after the
    reset and after every step (``evaluate.py --video``).
    """
    sc = load_scenario(scenario)
    n = len(seeds)
    if n < 1:
        raise ValueError("need at least one seed")
    sim = Simulator(sc, n, action_mode=policy.action_mode, observe_internal=policy.observe_internal)
    p = sim.params
    B = p.n_banks
    obs = sim.reset(seeds=[int(s) for s in seeds])
    policy.reset(n)
    state: Any = None
    episode_start = np.ones(n, dtype=bool)
    returns = np.zeros(n)
    T = p.n_steps
    rec = None
    if timeline:
        rec = {
            "arrived": np.zeros(T),
            "succeeded": np.zeros(T),
            "lost": np.zeros(T),
            "down": np.zeros((T, B + 1), dtype=bool),
            "admit": np.zeros((T, B)),
            "route": np.zeros((T, B, 3)),
            "in_flight": np.zeros(T),
        }
    timelines = render.FailedRateTimelines(1, T) if on_frame is not None else None
    if timelines is not None:
        on_frame(timelines.frame(p, sim.state, 0))
    start = time.perf_counter()
    for t in range(T):
        actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        obs, reward, truncated, counts = sim.step(actions)
        if timelines is not None:
            on_frame(timelines.frame(p, sim.state, 0))
        returns += reward
        episode_start = truncated
        if rec is not None:
            s = sim.state
            assert s is not None
            rec["arrived"][t] = counts.arrived[0]
            rec["succeeded"][t] = counts.succeeded[0]
            rec["lost"][t] = counts.lost[0]
            rec["down"][t] = s.down_left[0, : B + 1] > 0
            rec["admit"][t] = s.admit[0]
            rec["route"][t] = s.route[0]
            rec["in_flight"][t] = s.in_flight[0]
        if on_step is not None:
            on_step(1)
    elapsed = time.perf_counter() - start
    episodes = []
    for i, seed in enumerate(seeds):
        k = sim.kpis(i)
        outage = {b: v / 60.0 for b, v in k["outage_seconds"].items()}
        episodes.append(
            {
                "seed": int(seed),
                "failed_payment_rate": k["failed_payment_rate"],
                "attempt_failure_rate": k["attempt_failure_rate"],
                "successful_payments_per_s": k["successful_payments_per_s"],
                "median_time_to_success_s": k["median_time_to_success_s"],
                "p95_time_to_success_s": k["p95_time_to_success_s"],
                "outage_minutes": float(sum(outage.values()) + k["switch_outage_seconds"] / 60.0),
                "outage_minutes_by_bank": outage,
                "switch_outage_minutes": k["switch_outage_seconds"] / 60.0,
                "pending_at_end": k["pending_at_end"],
                "return": float(returns[i]),
                "arrived": k["arrived"],
                "succeeded": k["succeeded"],
                "lost": k["lost"],
                "failed_payment_rate_by_bank": k["failed_payment_rate_by_bank"],
                "paid_share_by_channel": k["paid_share_by_channel"],
            }
        )
    result = PolicyResult(
        name=policy.name,
        description=policy.describe(),
        action_mode=policy.action_mode,
        episodes=episodes,
        seconds=elapsed,
    )
    result.summary = _summarise(episodes)
    if rec is not None:
        rec["t_s"] = sc.start_s + (np.arange(T) + 1) * p.dt
        rec["seed"] = int(seeds[0])
        rec["bank_names"] = list(sc.bank_names)
        result.timeline = rec
    return result


def _bounds(sc: Scenario, seeds: Sequence[int], layer_s: float, progress: bool = False) -> dict[str, Any]:
    """The fluid bound: once for fixed scenarios, per episode (its drawn parameters) for randomised ones."""
    if not sc.randomize.active:
        b = fluid_bound(sc, layer_s=layer_s)
        return _bound_dict([b] * len(seeds), per_episode=False)
    sim = Simulator(sc, len(seeds))
    sim.reset(seeds=[int(s) for s in seeds])
    episodes = tqdm(range(len(seeds)), desc="bound per episode", disable=not progress, file=sys.stderr, leave=False)
    return _bound_dict([fluid_bound(sc, state=sim.state, env_index=i, layer_s=layer_s) for i in episodes], True)


def _bound_dict(results: list[BoundResult], per_episode: bool) -> dict[str, Any]:
    """The bound of each episode (one LP repeated for a fixed scenario): rates per episode, the rest as means.

    ``failed_payment_rate`` is the mean of the episodes' rates, like a policy's. ``arrived = lost +
    succeeded + pending`` in expected intents: the plan's own accounting. ``pending`` is what the optimal
    plan leaves queued or waiting to retry at the end, neither paid nor lost.
    """
    rates = [r.failed_payment_rate for r in results]
    shares = [{k: v / r.succeeded if r.succeeded else 0.0 for k, v in r.paid_by_channel.items()} for r in results]
    return {
        "failed_payment_rate": float(np.mean(rates)),
        "per_episode": rates,
        "per_episode_parameters": per_episode,
        "layer_seconds": None,
        "solve_seconds": float(sum(r.solve_seconds for r in (results if per_episode else results[:1]))),
        "status": "; ".join(sorted({r.status for r in results})),
        "arrived": float(np.mean([r.arrived for r in results])),
        "lost": float(np.mean([r.lost for r in results])),
        "succeeded": float(np.mean([r.succeeded for r in results])),
        "pending": float(np.mean([r.pending for r in results])),
        "paid_share_by_channel": {k: float(np.mean([sh[k] for sh in shares])) for k in shares[0]},
    }


def machine_description() -> str:
    """A short line naming the machine (for README tables and results.json)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


RECORD_BYTES = 4 * 2**10  # one policy's KPI record of one episode (dicts of floats: about 2 KB measured)
DECIDER_BYTES = 8 * 2**10  # a policy's working arrays per environment (a 256x256 network: about 1.4 KB measured)


def evaluation_memory(scenario: Scenario, episodes: int, policies: Sequence[Policy]) -> list[tuple[str, int]]:
    """What an evaluation of ``policies`` on ``episodes`` episodes holds at its peak, part by part (bytes): the
    batch of environments of one policy at a time, every policy's episode records, a policy's working arrays."""
    internal = any(p.observe_internal for p in policies)
    return [
        (f"{episodes} environments of {scenario.name}", simulator_bytes(scenario, episodes, internal)),
        (f"records of {episodes} episodes x {len(policies)} policies", episodes * len(policies) * RECORD_BYTES),
        (f"a policy's working arrays for {episodes} episodes", episodes * DECIDER_BYTES),
    ]


def evaluate_policies(
    scenario: str | Path | Scenario,
    policies: Sequence[str | Path | Policy],
    episodes: int = 20,
    seed: int = 1000,
    bound: bool = True,
    bound_layer_s: float = 60.0,
    progress: bool = True,
    timeline: bool = True,
    reference: str | None = None,
    video_dir: str | Path | None = None,
    trust_models: bool = False,
) -> EvaluationResult:
    """Evaluate every policy on seeds ``seed .. seed + episodes - 1`` of ``scenario``.

    ``policies`` are heuristic names, model paths or ``Policy`` objects; all are loaded (and checked
    against the scenario's spaces) before anything runs, so bad input fails fast with ``PolicyError``.
    ``reference`` names the policy every policy is compared with episode by episode (``summary["vs_reference"]``,
    see ``paired_comparison``), as written in ``policies`` or as shown in the table; by default the best of the
    built-in heuristics evaluated (on a tie, the first listed), or none if no heuristic is among ``policies``.
    ``video_dir``: also write each policy's first episode as ``video_<policy>.mp4`` there (``agents.evaluation.video``).
    ``trust_models``: load model files that carry pickles (code), e.g. from before ``agents.model_files``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1; got {episodes!r}")
    sc = load_scenario(scenario)
    loaded = []
    for spec in policies:
        pol = load_policy(spec, sc, trust=trust_models)
        policy_spaces_match(pol, sc)
        loaded.append(pol)
    names = [p.name for p in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"each policy may appear once; got {', '.join(names)}")
    if reference is not None:
        # the reference may be named as the user wrote the policy (a run folder, "ppo:path") or as it is shown
        as_written = {str(spec).strip(): pol.name for spec, pol in zip(policies, loaded, strict=True)}
        reference = as_written.get(reference.strip(), reference.strip())
        if reference not in names:
            raise ValueError(f"reference {reference!r} is not among the policies evaluated ({', '.join(names)})")
    require(evaluation_memory(sc, episodes, loaded), "lower --episodes")  # before anything is allocated
    seeds = list(range(int(seed), int(seed) + episodes))
    results: list[PolicyResult] = []
    total = len(loaded) * sc.n_steps
    shown = short_names(names)  # video files are named as the plots are
    with tqdm(total=total, disable=not progress, file=sys.stderr, unit="step", leave=False) as bar:
        for pol in loaded:
            bar.set_description(f"{pol.name} x{episodes}")
            if video_dir is None:
                results.append(run_policy(pol, sc, seeds, timeline=timeline, on_step=bar.update))
                continue
            with VideoWriter(Path(video_dir) / f"video_{slug(shown[pol.name])}.mp4") as write:
                results.append(run_policy(pol, sc, seeds, timeline=timeline, on_step=bar.update, on_frame=write))
    bound_info = None
    if bound:
        if progress:
            print(f"solving the fluid bound for {sc.name} ...", file=sys.stderr)
        try:
            bound_info = _bounds(sc, seeds, bound_layer_s, progress)
        except BoundError as exc:  # should not happen (the LP is always feasible); report without a bound
            print(f"warning: {exc}", file=sys.stderr)
    if bound_info is not None:
        bound_info["layer_seconds"] = bound_layer_s
        for r in results:
            gaps = [e["failed_payment_rate"] - b for e, b in zip(r.episodes, bound_info["per_episode"], strict=True)]
            for e, g in zip(r.episodes, gaps, strict=True):
                e["gap_to_bound"] = g
            r.summary["gap_to_bound"] = float(np.mean(gaps))
    best = min(results, key=lambda r: r.summary["failed_payment_rate"]).name if results else None
    if reference is None:
        heuristics = [r for r, pol in zip(results, loaded, strict=True) if _is_heuristic(pol)]
        if heuristics:
            reference = min(heuristics, key=lambda r: r.summary["failed_payment_rate"]).name
    if reference is not None:
        ref = next(r for r in results if r.name == reference)
        ref_rates = [e["failed_payment_rate"] for e in ref.episodes]
        for r in results:
            comparison = paired_comparison([e["failed_payment_rate"] for e in r.episodes], ref_rates)
            r.summary["vs_reference"] = {"reference": reference, **comparison}
    meta = {
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "episodes": episodes,
        "seed": seed,
        "steps_per_episode": sc.n_steps,
        "dt_s": sc.dt_s,
        "scenario_description": sc.description,
    }
    return EvaluationResult(
        scenario=sc.name, seeds=seeds, policies=results, bound=bound_info, best=best, meta=meta, reference=reference
    )


def _is_heuristic(policy: Policy) -> bool:
    """One of the built-in hand-written policies (not a trained model, a plan or a planner)."""
    return type(policy) in HEURISTICS.values()
