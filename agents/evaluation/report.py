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

from .names import short_names
from .runner import SCALAR_KPIS, EvaluationResult, PolicyResult
from .stats import isnan as _isnan

__all__ = [
    "COLUMNS",
    "CSV_COLUMNS",
    "HEADERS",
    "print_results_table",
    "results_table",
    "short_names",
    "table_caption",
    "table_rows",
    "table_title",
    "write_results",
]


def _pct(x: float) -> str:
    return "-" if _isnan(x) else f"{100 * x:.2f}"


# columns after the policy's name, most wanted first: a narrow terminal loses the last ones
_COLUMNS: tuple[str, ...] = ("failed", "ci", "vs_ref", "better", "gap", "attempts", "paid", "p95", "outage")
_HEADERS = {"failed": "failed\n%", "ci": "95% CI", "vs_ref": "vs ref\n%", "better": "better\nin",
            "gap": "gap to\nbound pp", "attempts": "attempts\nfailed %", "paid": "paid/s",
            "p95": "p95 time\nto pay s", "outage": "outage\nmin"}  # fmt: skip


COLUMNS, HEADERS = _COLUMNS, _HEADERS  # for other drawings of the same table (the HTML report)


def results_table(result: EvaluationResult, width: int | None = None) -> Any:
    """A rich ``Table``: one row per policy (best marked) and the fluid bound.

    ``width`` (a terminal's): leave out the lowest-priority columns until the table fits, and say so in the
    caption; the files (``write_results``) always hold every figure. Without ``width`` every column is there,
    and no figure is ever cut or wrapped: a name too long for its column folds onto more lines.
    """
    columns = [c for c in _COLUMNS if result.reference is not None or c not in ("vs_ref", "better")]
    table = _table(result, columns)
    while width is not None and len(columns) > 2 and _width(table) > width:
        columns.pop()
        table = _table(result, columns, left_out=True)
    return table


def _width(table: Table) -> int:
    console = Console(width=10_000)
    return console.measure(table).maximum


def _table(result: EvaluationResult, columns: list[str], left_out: bool = False) -> Table:
    caption = table_caption(result, versus="vs_ref" in columns)
    if left_out:
        caption += "; columns left out to fit the terminal are in results.csv"
    table = Table(title=table_title(result), caption=caption)
    # Numbers never shrink or wrap (a cut figure would be lost from the log); a long policy name folds instead.
    table.add_column("policy", overflow="fold")
    for column in columns:
        table.add_column(_HEADERS[column], justify="right", no_wrap=True)
    for label, cells, best in table_rows(result):
        style = "bold green" if best else None
        table.add_row(f"* {label}" if best else label, *(cells[c] for c in columns), style=style)
    if result.bound is not None:
        table.add_row("fluid bound (LP)", _pct(result.bound["failed_payment_rate"]), style="italic")
    return table


def table_title(result: EvaluationResult) -> str:
    n = len(result.seeds)
    return f"{result.scenario}: {n} episode{'s' if n != 1 else ''}, seeds {result.seeds[0]}-{result.seeds[-1]}"


def table_caption(result: EvaluationResult, versus: bool = True) -> str:
    """What the columns mean (``versus``: including the two that compare with the reference)."""
    caption = "failed % = lost / arrived intents (* = best); CI = 95% bootstrap of the mean; gap = mean - bound"
    if result.reference is not None and versus:
        caption += (
            f"; vs ref = relative change of failed % from {result.reference}'s, on the same episodes, with the 95% "
            "bootstrap of the paired episodes; better in = episodes with fewer failed payments than it (ties count as "
            "neither)"
        )
    return caption


def table_rows(result: EvaluationResult) -> list[tuple[str, dict[str, str], bool]]:
    """Each policy's row as the table shows it: its short name, its cells by column (``_COLUMNS``), and
    whether it is the best; the terminal table and the HTML report both draw these."""
    n = len(result.seeds)
    names = short_names([r.name for r in result.policies])
    rows = []
    for r in result.policies:
        s = r.summary
        lo, hi = s["failed_payment_rate_ci"]
        gap = s.get("gap_to_bound")
        versus = _versus(r, result.reference, n) if result.reference is not None else ["", ""]
        cells = {
            "failed": _pct(s["failed_payment_rate"]),
            "ci": f"[{_pct(lo)}, {_pct(hi)}]",
            "vs_ref": versus[0],
            "better": versus[1],
            "gap": "-" if gap is None else f"{100 * gap:.2f}",
            "attempts": _pct(s["attempt_failure_rate"]),
            "paid": f"{s['successful_payments_per_s']:.0f}",
            "p95": f"{s['p95_time_to_success_s']:.0f}",
            "outage": f"{s['outage_minutes']:.1f}",
        }
        rows.append((names[r.name], cells, r.name == result.best))
    return rows


def print_results_table(result: EvaluationResult, console: Console | None = None) -> None:
    """Print ``results_table``: fitted to a terminal's width; whole, however wide, into a file or a pipe."""
    console = console or Console()
    if console.is_terminal:
        console.print(results_table(result, width=console.width))
        return
    table = results_table(result)
    Console(file=console.file, width=max(console.width, _width(table))).print(table)


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
    """Write ``results.json`` (summaries and episodes), ``results.csv`` (episodes and aggregates) and, if any
    policy recorded one, ``timelines.npz`` (the per-step series of the first seed: ``<policy>/<series>``, with
    ``policies`` listing the names; bulky, so kept out of the JSON)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_finite(result.to_dict()), default=_json_default, indent=1), encoding="utf-8")
    files = [json_path, _write_csv(result, out / "results.csv")]
    timelines = {p.name: p.timeline for p in result.policies if p.timeline is not None}
    if timelines:
        series = {f"{name}/{key}": np.asarray(value) for name, tl in timelines.items() for key, value in tl.items()}
        np.savez_compressed(out / "timelines.npz", policies=np.array(list(timelines)), **series)
        files.append(out / "timelines.npz")
    return files


def _write_csv(result: EvaluationResult, csv_path: Path) -> Path:
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
    return csv_path


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
