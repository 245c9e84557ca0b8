"""An evaluation as people read it: the rich table (fitted to the terminal), results.json and results.csv."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .runner import SCALAR_KPIS, EvaluationResult, PolicyResult
from .stats import isnan as _isnan

__all__ = ["CSV_COLUMNS", "TABLE_WIDTH", "print_results_table", "results_table", "write_results"]


def _pct(x: float) -> str:
    return "-" if _isnan(x) else f"{100 * x:.2f}"


def results_table(result: EvaluationResult) -> Any:
    """A rich ``Table``: one row per policy (best marked) and the fluid bound.

    It needs ``TABLE_WIDTH`` columns; in a narrower console rich squeezes the policy names out of sight, so
    print it with ``print_results_table`` (or a ``Console(width=TABLE_WIDTH)``)."""
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
