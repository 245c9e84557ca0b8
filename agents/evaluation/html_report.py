"""``evaluate.py --report``: one self-contained ``report.html`` to send to a colleague.

The table (the same cells as the terminal's, every column), the figures embedded as base64 PNGs, the scenario's
description and every parameter, the machine, the date and the command. Drawn with a Jinja2 template
(``templates/report.html.j2``), autoescaped; nothing to serve, nothing fetched when it is opened.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from payroute_env.scenario import Scenario

from .report import COLUMNS, HEADERS, table_caption, table_rows, table_title
from .runner import EvaluationResult

__all__ = ["REPORT_FILE", "write_report"]

REPORT_FILE = "report.html"


def _parameters(scenario: Scenario) -> str:
    """Every parameter of the scenario, as indented JSON (infinities as strings: JSON has none)."""

    def plain(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return json.dumps(plain(dataclasses.asdict(scenario)), indent=1, default=str)


def write_report(
    result: EvaluationResult,
    scenario: Scenario,
    figures: Sequence[Path],
    path: str | Path,
    command: str = "",
) -> Path:
    """Write the report of ``result`` on ``scenario`` to ``path``, embedding the PNG ``figures``; return ``path``."""
    columns = [c for c in COLUMNS if result.reference is not None or c not in ("vs_ref", "better")]
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        (resources.files("agents.evaluation") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    )
    html = template.render(
        title=table_title(result),
        description=scenario.description,
        scenario_name=scenario.name,
        date=result.meta.get("date", ""),
        machine=result.meta.get("machine", ""),
        command=command,
        caption=table_caption(result),
        headers=[HEADERS[c] for c in columns],
        rows=[(label, [cells[c] for c in columns], best) for label, cells, best in table_rows(result)],
        bound=None if result.bound is None else f"{100 * result.bound['failed_payment_rate']:.2f}",
        figures=[(f.name, base64.b64encode(f.read_bytes()).decode("ascii")) for f in figures],
        parameters=_parameters(scenario),
    )
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path
