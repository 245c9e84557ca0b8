"""A study's results aggregated the way RL papers report them, with ``rliable`` (Agarwal et al. 2021).

Per (policy, world) the scores are a matrix of runs x episodes: a trained policy's runs are its training seeds,
a heuristic is one run (it does not train); the episodes are the study's evaluation seeds, the same for every
policy (common random numbers). ``aggregate`` computes, per (policy, world):

=================  ================================================================================
``iqm``            interquartile mean of the failed-payment rate over runs and episodes
``iqm_ci``         its 95% stratified-bootstrap interval (runs resampled within each episode; a
                   heuristic's single run gives a zero-width interval: only training seeds vary)
``mean``           mean failed-payment rate
``p_improvement``  probability that a run fails fewer payments than the best heuristic on an episode,
                   averaged over episodes (rliable's ``probability_of_improvement``), with its interval
``vs_best``        paired comparison with the best heuristic, episode by episode (``paired_comparison``
                   of the per-episode mean over runs): relative change and its 95% interval
``gap_closed``     share of the best heuristic's gap to the fluid bound that the policy closes
=================  ================================================================================

and a performance profile per world (the share of runs x episodes with a failed-payment rate at most tau).
``write_aggregate`` writes ``study.json``, ``study.csv``, ``study.md`` and the figures.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rliable import library as rly  # noqa: E402
from rliable import metrics  # noqa: E402

from agents.evaluation.stats import gap_closed, paired_comparison  # noqa: E402

__all__ = ["aggregate", "markdown_table", "probability_of_improvement", "write_aggregate"]

BOOTSTRAP_REPS = 2000  # rliable's default is 50,000; 2,000 keep the intervals' ends within a few per mille
CSV_COLUMNS = ("world", "policy", "kind", "runs", "episodes", "iqm", "iqm_low", "iqm_high", "mean",
               "p_improvement", "p_low", "p_high", "vs_best", "vs_best_low", "vs_best_high", "gap_closed")  # fmt: skip


def _paid(rates: np.ndarray) -> np.ndarray:
    """Higher is better for rliable's improvement and profiles: the share of intents that did not fail."""
    return 1.0 - rates


def aggregate(
    trained: Mapping[str, Mapping[str, np.ndarray]],
    heuristics: Mapping[str, Mapping[str, Sequence[float]]],
    bounds: Mapping[str, float],
    seed: int = 0,
) -> dict[str, Any]:
    """Aggregate ``trained[world][policy]`` (runs x episodes failed-payment rates) and
    ``heuristics[world][policy]`` (one rate per episode) against ``bounds[world]`` (the fluid bound's mean)."""
    with warnings.catch_warnings():  # rliable hands arch a RandomState, which arch says it will stop taking
        warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
        return _aggregate(trained, heuristics, bounds, seed)


def _aggregate(
    trained: Mapping[str, Mapping[str, np.ndarray]],
    heuristics: Mapping[str, Mapping[str, Sequence[float]]],
    bounds: Mapping[str, float],
    seed: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"worlds": {}}
    for world in heuristics:
        scores = {name: np.asarray(rates, dtype=np.float64)[None, :] for name, rates in heuristics[world].items()}
        kinds = dict.fromkeys(scores, "heuristic")
        for name, matrix in trained.get(world, {}).items():
            scores[name] = np.asarray(matrix, dtype=np.float64)
            kinds[name] = "trained"
        best = min(heuristics[world], key=lambda name: float(np.mean(heuristics[world][name])))
        state = np.random.RandomState(seed)
        iqm, iqm_ci = rly.get_interval_estimates(
            scores, lambda m: np.array([metrics.aggregate_iqm(m)]), reps=BOOTSTRAP_REPS, random_state=state
        )
        pairs = {name: (_paid(scores[name]), _paid(scores[best])) for name in scores if name != best}
        improvement, improvement_ci = rly.get_interval_estimates(
            pairs, probability_of_improvement, reps=BOOTSTRAP_REPS, random_state=state
        )
        best_mean, bound = float(scores[best].mean()), float(bounds[world])
        rows = {}
        for name, matrix in scores.items():
            row: dict[str, Any] = {
                "kind": kinds[name],
                "runs": int(matrix.shape[0]),
                "episodes": int(matrix.shape[1]),
                "iqm": float(iqm[name][0]),
                "iqm_ci": [float(v) for v in iqm_ci[name][:, 0]],
                "mean": float(matrix.mean()),
                "gap_closed": gap_closed(float(matrix.mean()), best_mean, bound),
            }
            if name != best:
                row["p_improvement"] = float(np.ravel(improvement[name])[0])
                row["p_improvement_ci"] = [float(v) for v in np.ravel(improvement_ci[name])]
                paired = paired_comparison(matrix.mean(0), scores[best][0])
                row["vs_best"], row["vs_best_ci"] = paired["relative"], paired["relative_ci"]
            rows[name] = row
        out["worlds"][world] = {"best_heuristic": best, "fluid_bound": bound, "policies": rows}
        out["worlds"][world]["profile"] = _profile(scores)
    return out


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's ``metrics.probability_of_improvement`` (the Mann-Whitney U statistic per task over
    ``runs_x * runs_y``, averaged over tasks), computed for all tasks at once.

    rliable calls ``scipy.stats.mannwhitneyu`` once per task and bootstrap replicate: about 0.1 ms each, so a
    study of 6 worlds x 20 episodes x 2,000 replicates x 8 policies took tens of minutes. U counts the pairs in
    which x is greater plus half the ties, which is what this counts; a test checks the two agree."""
    greater = (scores_x[:, None, :] > scores_y[None, :, :]).mean(axis=(0, 1))
    ties = (scores_x[:, None, :] == scores_y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def _profile(scores: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Share of runs x episodes failing at most tau of their payments, for tau over the observed range."""
    low = min(float(m.min()) for m in scores.values())
    high = max(float(m.max()) for m in scores.values())
    taus = np.linspace(low, high, 201)
    # rliable counts scores above tau: a failed rate at most tau is a negated rate above -tau (a hair below it)
    profiles, _ = rly.create_performance_profile({k: -v for k, v in scores.items()}, -taus - 1e-12, reps=1)
    return {"tau": taus.tolist(), "share": {k: np.asarray(v).tolist() for k, v in profiles.items()}}


def markdown_table(result: Mapping[str, Any]) -> str:
    """The aggregate as one markdown table per world (failed payments in %, the best heuristic marked)."""
    lines = []
    for world, entry in result["worlds"].items():
        lines += [
            f"### {world}",
            "",
            "| policy | runs x episodes | IQM failed % | 95% CI | mean failed % | P(better than best heuristic) "
            "| vs best heuristic % | gap to bound closed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in entry["policies"].items():
            shown = f"**{name}** (best heuristic)" if name == entry["best_heuristic"] else name
            lo, hi = row["iqm_ci"]
            p = "" if "p_improvement" not in row else _interval(row["p_improvement"], row["p_improvement_ci"], 1, 2)
            vs = "ref" if "vs_best" not in row else _interval(row["vs_best"], row["vs_best_ci"], 100, 1, "+")
            closed = "" if row["gap_closed"] is None else f"{100 * row['gap_closed']:.0f}%"
            lines.append(
                f"| {shown} | {row['runs']} x {row['episodes']} | {100 * row['iqm']:.2f} | "
                f"[{100 * lo:.2f}, {100 * hi:.2f}] | {100 * row['mean']:.2f} | {p} | {vs} | {closed} |"
            )
        lines += [f"| fluid lower bound (LP) | | | | {100 * entry['fluid_bound']:.2f} | | | |", ""]
    return "\n".join(lines)


def _interval(value: float, ci: Sequence[float], scale: float, digits: int, sign: str = "") -> str:
    return f"{scale * value:{sign}.{digits}f} [{scale * ci[0]:{sign}.{digits}f}, {scale * ci[1]:{sign}.{digits}f}]"


def write_aggregate(result: Mapping[str, Any], folder: Path) -> list[Path]:
    """``study.json``, ``study.csv``, ``study.md`` and a profile figure per world in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "study.json", folder / "study.csv", folder / "study.md"]
    files[0].write_text(json.dumps(result, indent=1), encoding="utf-8")
    with files[1].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for world, entry in result["worlds"].items():
            for name, row in entry["policies"].items():
                p_ci, vs_ci = row.get("p_improvement_ci", [None, None]), row.get("vs_best_ci", [None, None])
                writer.writerow({
                    "world": world, "policy": name, "kind": row["kind"], "runs": row["runs"],
                    "episodes": row["episodes"], "iqm": row["iqm"], "iqm_low": row["iqm_ci"][0],
                    "iqm_high": row["iqm_ci"][1], "mean": row["mean"], "p_improvement": row.get("p_improvement"),
                    "p_low": p_ci[0], "p_high": p_ci[1], "vs_best": row.get("vs_best"), "vs_best_low": vs_ci[0],
                    "vs_best_high": vs_ci[1], "gap_closed": row["gap_closed"],
                })  # fmt: skip
    files[2].write_text(markdown_table(result), encoding="utf-8")
    for world, entry in result["worlds"].items():
        fig, ax = plt.subplots(figsize=(6, 4))
        taus = 100 * np.asarray(entry["profile"]["tau"])
        for name, share in entry["profile"]["share"].items():
            ax.plot(taus, share, label=name, linestyle="--" if entry["policies"][name]["kind"] == "heuristic" else "-")
        ax.axvline(100 * entry["fluid_bound"], color="grey", linewidth=0.8, label="fluid bound (mean)")
        ax.set_xlabel("failed payments, % (tau)")
        ax.set_ylabel("share of runs x episodes failing at most tau")
        ax.set_title(f"performance profile: {world}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"profile_{world}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    return files
