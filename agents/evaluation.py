"""The reusable evaluator: every policy on the same seeds, batched through the core, against the fluid bound.

``evaluate_policies`` builds one ``Simulator`` of ``episodes`` environments per policy (in the action mode
the policy declares), resets it with seeds ``seed, seed + 1, ...`` (common random numbers: every policy
meets the same arrivals and user draws), runs the episodes to truncation and collects the episode KPIs of
``payroute_env.metrics``. Results aggregate to the mean and a 95% percentile-bootstrap confidence interval
of the failed-payment rate (plus the interquartile mean), the other KPIs' means, the gap to the fluid
lower bound (``payroute_env.bounds``) and a paired comparison with a reference policy (by default the best
heuristic evaluated): because every policy meets the same episodes, the per-episode differences give a far
tighter interval than two separate CIs. The first seed also records a per-step timeline.

``train.py`` and notebooks reuse the same pieces: ``run_policy`` (the batched loop), ``evaluate_policies``,
``results_table`` (the rich table, ``print_results_table`` to print it) and ``write_results``.
"""

from __future__ import annotations

import csv
import json
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

from payroute_env.bounds import BoundError, BoundResult, fluid_bound
from payroute_env.scenario import Scenario, load_scenario
from payroute_env.simulator import Simulator

from .policies import Policy, load_policy, policy_spaces_match

__all__ = [
    "EvaluationResult",
    "PolicyResult",
    "bootstrap_ci",
    "evaluate_policies",
    "interquartile_mean",
    "machine_description",
    "paired_comparison",
    "print_results_table",
    "results_table",
    "run_policy",
    "write_results",
]

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


# ------------------------------------------------------------------------------------------ statistics


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (a single value gives a zero-width interval)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    (means,) = _resampled_means([x], n_boot, seed)
    return _percentile_interval(means, level)


def _resampled_means(columns: Sequence[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """The mean of each column over ``n_boot`` resamples of its entries, the same resampled indices for every
    column (so that paired columns stay paired)."""
    n = columns[0].size
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    return [c[idx].mean(1) for c in columns]


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def paired_comparison(
    values: Sequence[float], reference: Sequence[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """Compare two policies' per-episode rates on the same episodes (same seeds, in the same order).

    Returns the mean difference ``mean(values) - mean(reference)`` and the relative change
    ``mean(values) / mean(reference) - 1``, each with a percentile-bootstrap interval that resamples
    *episodes* (both policies' values of an episode together). Sharing the episodes removes what makes
    episodes differ from each other (a randomised world's drawn capacities, the surge's noise), so the interval
    is much narrower than the two policies' own CIs when they are compared side by side. Also returns in how
    many episodes ``values`` is lower (``better_episodes``) and higher (``worse_episodes``): a mean can hide one
    bad episode among many good ones.

    The intervals are percentile bootstraps, like ``bootstrap_ci``: approximate. With 20 episodes of which a
    few dominate the mean (a randomised world), such an interval covers the true value about 90% of the time
    rather than 95%. They cover the evaluation episodes only, not the spread between training runs.
    """
    x = np.asarray(values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if x.shape != r.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(
            f"paired_comparison needs two equally long, non-empty lists; got shapes {x.shape} and {r.shape}"
        )
    difference = float(x.mean() - r.mean())
    relative = float(x.mean() / r.mean() - 1.0) if r.mean() > 0 else math.nan
    if x.size == 1:
        difference_ci, relative_ci = (difference, difference), (relative, relative)
    else:
        xm, rm = _resampled_means([x, r], n_boot, seed)
        difference_ci = _percentile_interval(xm - rm, level)
        relative_ci = _percentile_interval(xm / rm - 1.0, level) if np.all(rm > 0) else (math.nan, math.nan)
    return {
        "difference": difference,
        "difference_ci": list(difference_ci),
        "relative": relative,
        "relative_ci": list(relative_ci),
        "better_episodes": int(np.sum(x < r)),
        "worse_episodes": int(np.sum(x > r)),
    }


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle 50% of the values (Agarwal et al. 2021, rliable)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        return math.nan
    n = x.size
    lo, hi = int(np.floor(n * 0.25)), int(np.ceil(n * 0.75))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())


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


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


# ------------------------------------------------------------------------------------------ running


def run_policy(
    policy: Policy,
    scenario: str | Path | Scenario,
    seeds: Sequence[int],
    timeline: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> PolicyResult:
    """Run ``policy`` for one episode per seed, all batched through one ``Simulator``; return its results.

    ``on_step(n)`` is called after each step (for progress bars). The first seed's per-step record is kept
    in ``timeline`` when asked.
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
    start = time.perf_counter()
    for t in range(T):
        actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
        obs, reward, truncated, counts = sim.step(actions)
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
    from tqdm import tqdm

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
) -> EvaluationResult:
    """Evaluate every policy on seeds ``seed .. seed + episodes - 1`` of ``scenario``.

    ``policies`` are heuristic names, model paths or ``Policy`` objects; all are loaded (and checked
    against the scenario's spaces) before anything runs, so bad input fails fast with ``PolicyError``.
    ``reference`` names the policy every policy is compared with episode by episode (``summary["vs_reference"]``,
    see ``paired_comparison``), as written in ``policies`` or as shown in the table; by default the best of the
    built-in heuristics evaluated (on a tie, the first listed), or none if no heuristic is among ``policies``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1; got {episodes!r}")
    sc = load_scenario(scenario)
    loaded = []
    for spec in policies:
        pol = load_policy(spec, sc)
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
    seeds = list(range(int(seed), int(seed) + episodes))
    results: list[PolicyResult] = []
    from tqdm import tqdm

    total = len(loaded) * sc.n_steps
    with tqdm(total=total, disable=not progress, file=sys.stderr, unit="step", leave=False) as bar:
        for pol in loaded:
            bar.set_description(f"{pol.name} x{episodes}")
            results.append(run_policy(pol, sc, seeds, timeline=timeline, on_step=bar.update))
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
    from .baselines import HEURISTICS

    return type(policy) in HEURISTICS.values()


# ------------------------------------------------------------------------------------------ reporting


def _pct(x: float) -> str:
    return "-" if _isnan(x) else f"{100 * x:.2f}"


def results_table(result: EvaluationResult) -> Any:
    """A rich ``Table``: one row per policy (best marked) and the fluid bound.

    It needs ``TABLE_WIDTH`` columns; in a narrower console rich squeezes the policy names out of sight, so
    print it with ``print_results_table`` (or a ``Console(width=TABLE_WIDTH)``)."""
    from rich.table import Table

    n = len(result.seeds)
    caption = "failed % = lost / arrived intents (* = best); CI = 95% bootstrap of the mean; gap = mean - bound"
    if result.reference is not None:
        caption += (
            f"; vs ref = relative change of failed % from {result.reference}'s, on the same episodes, with the 95% "
            "bootstrap of the paired episodes; better in = episodes with fewer failed payments than it (ties count as "
            "neither)"
        )
    table = Table(
        title=f"{result.scenario}: {n} episode{'s' if n != 1 else ''}, seeds {result.seeds[0]}-{result.seeds[-1]}",
        caption=caption,
    )
    # Numbers never shrink or wrap (a cut figure would be lost from the log); a long policy name (a model's
    # path) folds onto more lines instead.
    table.add_column("policy", overflow="fold", min_width=24)
    headers = ["failed\n%", "95% CI", "attempts\nfailed %", "paid/s", "p95 time\nto pay s", "outage\nmin"]
    headers += ["gap to\nbound pp"]
    if result.reference is not None:
        headers += ["vs ref\n%", "better\nin"]
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for r in result.policies:
        s = r.summary
        lo, hi = s["failed_payment_rate_ci"]
        best = r.name == result.best
        gap = s.get("gap_to_bound")
        table.add_row(
            f"* {r.name}" if best else r.name,
            _pct(s["failed_payment_rate"]),
            f"[{_pct(lo)}, {_pct(hi)}]",
            _pct(s["attempt_failure_rate"]),
            f"{s['successful_payments_per_s']:.0f}",
            f"{s['p95_time_to_success_s']:.0f}",
            f"{s['outage_minutes']:.1f}",
            "-" if gap is None else f"{100 * gap:.2f}",
            *(_versus(r, result.reference, n) if result.reference is not None else []),
            style="bold green" if best else None,
        )
    if result.bound is not None:
        table.add_row("fluid bound (LP)", _pct(result.bound["failed_payment_rate"]), style="italic")
    return table


TABLE_WIDTH = 150  # columns: every figure of ``results_table`` fits whole beside a 24-character policy name


def print_results_table(result: EvaluationResult) -> None:
    """Print ``results_table`` at least ``TABLE_WIDTH`` wide (a log file or a narrow terminal gets it whole)."""
    from rich.console import Console

    Console(width=max(Console().width, TABLE_WIDTH)).print(results_table(result))


def _versus(r: PolicyResult, reference: str, episodes: int) -> list[str]:
    """``-7.5 [-7.7, -7.3]``, ``18/20``: the relative change from the reference with its paired interval, in
    percent, and the episodes in which ``r`` failed fewer payments."""
    if r.name == reference:
        return ["ref", ""]
    vs = r.summary["vs_reference"]
    lo, hi = vs["relative_ci"]
    if _isnan(vs["relative"]):
        relative = "-"
    elif _isnan(lo) or _isnan(hi):  # some resample's reference failed nothing: no relative interval
        relative = f"{100 * vs['relative']:+.1f}"
    else:
        relative = f"{100 * vs['relative']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return [relative, f"{vs['better_episodes']}/{episodes}"]


CSV_COLUMNS: tuple[str, ...] = (
    "policy",
    "row",
    "seed",
    "failed_payment_rate",
    "failed_payment_rate_ci_low",
    "failed_payment_rate_ci_high",
    "failed_payment_rate_iqm",
    *SCALAR_KPIS[1:],
    "gap_to_bound",
    "reference",
    "relative_to_reference",
    "relative_ci_low",
    "relative_ci_high",
    "better_episodes",
    "worse_episodes",
    "difference_to_reference",
    "difference_ci_low",
    "difference_ci_high",
)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_results(result: EvaluationResult, out_dir: str | Path) -> list[Path]:
    """Write ``results.json`` (everything, timelines included) and ``results.csv`` (episodes and aggregates)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    data["timelines"] = {p.name: p.timeline for p in result.policies if p.timeline is not None}
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_finite(data), default=_json_default, indent=1), encoding="utf-8")
    csv_path = out / "results.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for p in result.policies:
            for e in p.episodes:
                w.writerow({"policy": p.name, "row": "episode", **e})
            s = p.summary
            lo, hi = s["failed_payment_rate_ci"]
            vs = s.get("vs_reference")
            w.writerow(
                {
                    "policy": p.name,
                    "row": "mean",
                    **{k: s.get(k) for k in SCALAR_KPIS},
                    "failed_payment_rate_ci_low": lo,
                    "failed_payment_rate_ci_high": hi,
                    "failed_payment_rate_iqm": s["failed_payment_rate_iqm"],
                    "gap_to_bound": s.get("gap_to_bound"),
                    **(
                        {
                            "reference": vs["reference"],
                            "relative_to_reference": vs["relative"],
                            "relative_ci_low": vs["relative_ci"][0],
                            "relative_ci_high": vs["relative_ci"][1],
                            "better_episodes": vs["better_episodes"],
                            "worse_episodes": vs["worse_episodes"],
                            "difference_to_reference": vs["difference"],
                            "difference_ci_low": vs["difference_ci"][0],
                            "difference_ci_high": vs["difference_ci"][1],
                        }
                        if vs is not None
                        else {}
                    ),
                }
            )
        if result.bound is not None:
            w.writerow(
                {"policy": "fluid_bound", "row": "bound", "failed_payment_rate": result.bound["failed_payment_rate"]}
            )
    return [json_path, csv_path]


def _finite(obj: Any) -> Any:
    """NaN and inf become null so results.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return _finite(obj.tolist())
    return obj
